//! The reconciliation's vocabulary: statuses, product keys, lines, their explanations and the
//! summary. Everything here is plain data (serde), so the TUI, the exports and the tests share
//! one shape.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};

use crate::api::error::Api;

// ---------------------------------------------------------------------------------------------
// Statuses
// ---------------------------------------------------------------------------------------------

/// What a line's numbers say (issue 5 §3). A line may carry several; `InLine` only alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InLine,
    /// Dicker Data's confirmed quantity ≠ Microsoft's quantity on a subscription both have.
    DistributorMicrosoftMismatch,
    /// The PSA charges fewer seats than Dicker Data bills.
    PsaUnderbilled,
    /// The PSA charges more seats than Dicker Data bills.
    PsaOverbilled,
    /// Fewer licences of the SKU are assigned than purchased.
    UnassignedSeats,
    /// More licences of the SKU are assigned than purchased.
    OverAssigned,
    /// Microsoft has an active subscription that Dicker Data does not bill.
    MissingAtDistributor,
    /// Dicker Data bills a subscription Microsoft has suspended, deleted or never had.
    BilledNotAtMicrosoft,
    /// The customer has no PSA company / Xero contact, so the PSA cannot be checked.
    UnmappedCustomer,
    /// The PSA bills this customer under a product without a stock code, so the line's PSA
    /// quantity cannot be told (or a product identifier is not understood).
    UnmappedProduct,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::InLine,
        Status::DistributorMicrosoftMismatch,
        Status::PsaUnderbilled,
        Status::PsaOverbilled,
        Status::UnassignedSeats,
        Status::OverAssigned,
        Status::MissingAtDistributor,
        Status::BilledNotAtMicrosoft,
        Status::UnmappedCustomer,
        Status::UnmappedProduct,
    ];

    /// The stable name (JSON, CSV, issue 5 §3).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InLine => "in_line",
            Status::DistributorMicrosoftMismatch => "distributor_microsoft_mismatch",
            Status::PsaUnderbilled => "psa_underbilled",
            Status::PsaOverbilled => "psa_overbilled",
            Status::UnassignedSeats => "unassigned_seats",
            Status::OverAssigned => "over_assigned",
            Status::MissingAtDistributor => "missing_at_distributor",
            Status::BilledNotAtMicrosoft => "billed_not_at_microsoft",
            Status::UnmappedCustomer => "unmapped_customer",
            Status::UnmappedProduct => "unmapped_product",
        }
    }

    /// A short label for narrow tables.
    pub fn label(self) -> &'static str {
        match self {
            Status::InLine => "in line",
            Status::DistributorMicrosoftMismatch => "DD≠MS",
            Status::PsaUnderbilled => "underbilled",
            Status::PsaOverbilled => "overbilled",
            Status::UnassignedSeats => "unassigned",
            Status::OverAssigned => "over-assigned",
            Status::MissingAtDistributor => "not at DD",
            Status::BilledNotAtMicrosoft => "not at MS",
            Status::UnmappedCustomer => "unmapped customer",
            Status::UnmappedProduct => "unmapped product",
        }
    }

    /// One sentence for a person.
    pub fn describe(self) -> &'static str {
        match self {
            Status::InLine => "Dicker Data, Microsoft and the PSA agree.",
            Status::DistributorMicrosoftMismatch => {
                "Dicker Data confirms a different number of seats than Microsoft has."
            }
            Status::PsaUnderbilled => {
                "The PSA charges the customer for fewer seats than Dicker Data bills."
            }
            Status::PsaOverbilled => {
                "The PSA charges the customer for more seats than Dicker Data bills."
            }
            Status::UnassignedSeats => "Some purchased licences are not assigned to anyone.",
            Status::OverAssigned => "More licences are assigned than purchased.",
            Status::MissingAtDistributor => {
                "Microsoft has an active subscription that Dicker Data does not bill."
            }
            Status::BilledNotAtMicrosoft => {
                "Dicker Data bills a subscription that Microsoft has suspended, deleted or never had."
            }
            Status::UnmappedCustomer => {
                "The customer is not linked to a PSA company or Xero contact, so its billing cannot be checked."
            }
            Status::UnmappedProduct => {
                "The PSA bills this customer under a product without a stock code, so this line's PSA quantity cannot be told."
            }
        }
    }

    /// Parse the stable name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Product keys
// ---------------------------------------------------------------------------------------------

/// Commitment term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Term {
    P1M,
    P1Y,
    P3Y,
    /// A term cspsync does not know (legacy subscriptions may have none).
    #[serde(rename = "unknown")]
    Unknown,
}

impl Term {
    pub fn parse(s: &str) -> Term {
        match s.trim().to_ascii_uppercase().as_str() {
            "P1M" => Term::P1M,
            "P1Y" => Term::P1Y,
            "P3Y" => Term::P3Y,
            _ => Term::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Term::P1M => "P1M",
            Term::P1Y => "P1Y",
            Term::P3Y => "P3Y",
            Term::Unknown => "unknown",
        }
    }

    /// Length in months (0 when unknown).
    pub fn months(self) -> u32 {
        match self {
            Term::P1M => 1,
            Term::P1Y => 12,
            Term::P3Y => 36,
            Term::Unknown => 0,
        }
    }
}

impl From<crate::api::dickerdata::Term> for Term {
    fn from(t: crate::api::dickerdata::Term) -> Term {
        match t {
            crate::api::dickerdata::Term::P1M => Term::P1M,
            crate::api::dickerdata::Term::P1Y => Term::P1Y,
            crate::api::dickerdata::Term::P3Y => Term::P3Y,
        }
    }
}

/// Billing frequency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Billing {
    Monthly,
    /// Paid upfront for the year (Dicker Data plan `Y`; Partner Center `annual`/`triennial`).
    Annual,
}

impl Billing {
    pub fn as_str(self) -> &'static str {
        match self {
            Billing::Monthly => "monthly",
            Billing::Annual => "annual",
        }
    }

    /// Partner Center `billingCycle` (§3.3); anything but annual/triennial counts as monthly.
    pub fn from_partner_center(cycle: Option<&str>) -> Billing {
        match cycle.map(|c| c.trim().to_ascii_lowercase()).as_deref() {
            Some("annual") | Some("triennial") => Billing::Annual,
            _ => Billing::Monthly,
        }
    }

    /// The fourth part of a Dicker Data stock code (§4.3: `1` monthly, `Y` annual upfront).
    pub fn plan_code(self) -> &'static str {
        match self {
            Billing::Monthly => "1",
            Billing::Annual => "Y",
        }
    }
}

impl From<crate::api::dickerdata::BillingPlan> for Billing {
    fn from(p: crate::api::dickerdata::BillingPlan) -> Billing {
        match p {
            crate::api::dickerdata::BillingPlan::Monthly => Billing::Monthly,
            crate::api::dickerdata::BillingPlan::AnnualUpfront => Billing::Annual,
        }
    }
}

/// A Microsoft product line's identity apart from the customer: `PRODUCT:SKU`, term and
/// billing — one Dicker Data stock code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductKey {
    /// `CFQ7TTC0LCHC:0002` (upper case).
    pub product_id: String,
    pub term: Term,
    pub billing: Billing,
}

impl ProductKey {
    /// The Dicker Data stock code `{term}:{product}:{sku}:{plan}:`, when the term is known.
    pub fn stock_code(&self) -> Option<String> {
        (self.term != Term::Unknown).then(|| {
            format!(
                "{}:{}:{}:",
                self.term.as_str(),
                self.product_id,
                self.billing.plan_code()
            )
        })
    }

    /// Parse a licence stock code (`P1Y:CFQ7TTC0LCHC:0002:1:`); `None` for Azure codes and
    /// anything else not in that shape.
    pub fn from_stock_code(code: &str) -> Option<ProductKey> {
        use crate::api::dickerdata::StockCode;
        match StockCode::parse(code) {
            Ok(StockCode::Licence(l)) => Some(ProductKey {
                product_id: product_id(&l.product, &l.sku),
                term: l.term.into(),
                billing: l.billing.into(),
            }),
            _ => None,
        }
    }
}

/// `PRODUCT:SKU` in the canonical (upper-case, trimmed) form.
pub fn product_id(product: &str, sku: &str) -> String {
    format!(
        "{}:{}",
        product.trim().to_ascii_uppercase(),
        sku.trim().to_ascii_uppercase()
    )
}

// ---------------------------------------------------------------------------------------------
// Mapping inputs (manual overrides) and references to PSA records
// ---------------------------------------------------------------------------------------------

/// A PSA record that stands for a customer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum PsaCustomerRef {
    ConnectwiseCompany(u64),
    AutotaskCompany(i64),
    XeroContact(String),
}

impl fmt::Display for PsaCustomerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PsaCustomerRef::ConnectwiseCompany(id) => write!(f, "ConnectWise company {id}"),
            PsaCustomerRef::AutotaskCompany(id) => write!(f, "Autotask company {id}"),
            PsaCustomerRef::XeroContact(id) => write!(f, "Xero contact {id}"),
        }
    }
}

/// A PSA product (or, in Xero, a kind of invoice line) that can be mapped to a stock code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum PsaProductRef {
    /// A ConnectWise catalog item id.
    ConnectwiseCatalogItem(u64),
    /// An Autotask service id.
    AutotaskService(i64),
    /// A Xero item code on invoice lines.
    XeroItemCode(String),
    /// Xero invoice lines without an item code whose description starts with this text
    /// (case-insensitive).
    XeroDescription(String),
}

impl fmt::Display for PsaProductRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PsaProductRef::ConnectwiseCatalogItem(id) => {
                write!(f, "ConnectWise catalog item {id}")
            }
            PsaProductRef::AutotaskService(id) => write!(f, "Autotask service {id}"),
            PsaProductRef::XeroItemCode(c) => write!(f, "Xero item code {c}"),
            PsaProductRef::XeroDescription(d) => write!(f, "Xero lines described \"{d}…\""),
        }
    }
}

/// A customer linked by hand (wins over automatic matching).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerOverride {
    pub tenant_id: String,
    /// The PSA record; `None` = the customer is deliberately not billed in the PSA (its lines
    /// are not checked against the PSA and it does not count as unmapped).
    pub psa: Option<PsaCustomerRef>,
}

/// A PSA product linked by hand to a Dicker Data stock code (wins over its identifiers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductOverride {
    pub psa_product: PsaProductRef,
    /// `P1Y:CFQ7TTC0LCHC:0002:1:`.
    pub stock_code: String,
}

/// Manual mapping decisions, e.g. from the settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    #[serde(default)]
    pub customers: Vec<CustomerOverride>,
    #[serde(default)]
    pub products: Vec<ProductOverride>,
}

/// Dicker Data's buy prices per seat per month, by stock code (`PricingRequest`, §4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceBook {
    /// Canonical stock code (upper case) → unit cost per seat per month.
    pub unit_costs: BTreeMap<String, Decimal>,
    pub fetched_at: Option<DateTime<Utc>>,
}

impl PriceBook {
    pub fn get(&self, stock_code: &str) -> Option<Decimal> {
        self.unit_costs
            .get(&stock_code.trim().to_ascii_uppercase())
            .copied()
    }
}

/// What the reconciliation is given besides the fetched data.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub overrides: Overrides,
    pub prices: PriceBook,
    /// The moment the cancellation windows are measured from; default: when the fetch ended.
    pub now: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------------------------------------
// "Explain this number"
// ---------------------------------------------------------------------------------------------

/// Which number of a line an explanation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    DistributorQty,
    MicrosoftQty,
    Assigned,
    PsaQty,
    MonthlyImpact,
    RenewalDate,
    CancelWindow,
    Customer,
}

/// One record a number was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceRecord {
    pub api: Api,
    /// What kind of record, e.g. `subscription`, `agreement addition`.
    pub record: String,
    /// Its id (and the ids that link it, e.g. `addition 9012 on agreement 77`).
    pub id: String,
    /// What was read from it, e.g. `ConfirmedQuantity 25, Status ACTIVE`.
    pub detail: String,
}

/// How one number of a line was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub field: Field,
    /// The number as shown.
    pub value: String,
    /// One or two sentences: the rule that made the number.
    pub how: String,
    pub sources: Vec<SourceRecord>,
    /// When the data was fetched.
    pub fetched_at: DateTime<Utc>,
}

/// One part of a line's monthly money impact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImpactPart {
    pub status: Status,
    /// Seats the amount is for.
    pub seats: Decimal,
    /// Per seat per month; `None` when no price or cost was found (the part counts as 0).
    #[serde(serialize_with = "money_opt")]
    pub unit_amount: Option<Decimal>,
    /// Where the unit amount came from.
    pub unit_source: String,
    #[serde(serialize_with = "money")]
    pub amount: Decimal,
}

/// A ranked suggestion: a mapping a person may accept; never applied on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion<T> {
    pub target: T,
    /// The target as a person reads it (a company name, a stock code and its product name).
    pub label: String,
    /// Higher is better (only for ranking).
    pub score: u32,
    pub reasons: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------------------------

/// One reconciliation line: a customer's product on one term and billing frequency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub customer_tenant_id: String,
    pub customer_name: String,
    /// `CFQ7TTC0LCHC:0002`.
    pub product_id: String,
    pub product_name: String,
    pub term: Term,
    pub billing: Billing,
    /// The Dicker Data stock code of the line.
    pub stock_code: Option<String>,
    /// Dicker Data: confirmed quantity of ACTIVE lines; `None` = Dicker Data has no line.
    pub distributor_qty: Option<i64>,
    /// Partner Center: quantity of active subscriptions; `None` = no subscription at all.
    pub microsoft_qty: Option<i64>,
    /// Graph: licences of the SKU assigned (shared by every line of the SKU); `None` = not
    /// known (no GDAP, no Graph data for the SKU).
    pub assigned: Option<i64>,
    /// Purchased licences of the SKU across all its lines (what `assigned` is compared with).
    pub sku_purchased: Option<i64>,
    /// What the PSA will charge; `None` = the PSA has nothing for the line (or no PSA, or
    /// the customer is unmapped).
    #[serde(serialize_with = "quantity_opt")]
    pub psa_qty: Option<Decimal>,
    pub statuses: Vec<Status>,
    /// Money per month, 2 decimal places, never negative: see docs/reconcile.md.
    #[serde(serialize_with = "money")]
    pub monthly_impact: Decimal,
    /// The earliest commitment end of the line's active subscriptions.
    pub renewal_date: Option<NaiveDate>,
    /// Whole hours left in the soonest-closing open NCE cancellation window (168 h from
    /// purchase or renewal); `None` = no window open that the APIs show.
    pub cancel_window_hours_left: Option<i64>,
    pub impact: Vec<ImpactPart>,
    pub explain: Vec<Explanation>,
    /// For `unmapped_product` lines: the PSA records that may be this line's billing.
    pub suggestions: Vec<Suggestion<PsaProductRef>>,
}

impl Line {
    pub fn is_in_line(&self) -> bool {
        self.statuses == [Status::InLine]
    }

    pub fn has(&self, s: Status) -> bool {
        self.statuses.contains(&s)
    }

    /// The explanation of one number.
    pub fn explanation(&self, f: Field) -> Option<&Explanation> {
        self.explain.iter().find(|e| e.field == f)
    }
}

// ---------------------------------------------------------------------------------------------
// Summary and the whole result
// ---------------------------------------------------------------------------------------------

/// A customer whose data could not be (fully) read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerProblem {
    pub tenant_id: String,
    pub name: String,
    pub reason: String,
}

/// The numbers a summary bar shows. "0 lines audited" is never "all clean":
/// [`Summary::all_clean`] needs at least one line and a complete read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub psa: Option<Api>,
    pub customers: usize,
    pub lines_audited: usize,
    pub in_line: usize,
    pub mismatched: usize,
    /// Lines per status (every status listed, zeros included).
    pub by_status: BTreeMap<Status, usize>,
    /// Sum of the lines' monthly impact.
    #[serde(serialize_with = "money")]
    pub monthly_at_risk: Decimal,
    /// Lines with a money-bearing status whose price or cost was not found (counted as 0).
    pub lines_without_price: usize,
    pub unmapped_customers: usize,
    pub unmapped_products: usize,
    /// Customers whose Partner Center subscriptions could not be read: not audited at all.
    pub customers_not_read: Vec<CustomerProblem>,
    /// Customers without Graph data (e.g. no GDAP): their `assigned` is not audited.
    pub customers_without_graph: Vec<CustomerProblem>,
    /// Dicker Data lines skipped because they are not licences (Azure `DZH…` usage codes).
    pub distributor_lines_skipped: usize,
}

impl Summary {
    /// True only when something was checked, everything was read and every line is in line.
    pub fn all_clean(&self) -> bool {
        self.lines_audited > 0 && self.mismatched == 0 && self.customers_not_read.is_empty()
    }

    /// The one-line text of the summary bar.
    pub fn headline(&self) -> String {
        if self.lines_audited == 0 {
            return "0 lines audited: nothing was checked".to_string();
        }
        let mut s = format!(
            "{} lines audited, {} in line, {} with mismatches; {} a month at risk",
            self.lines_audited,
            self.in_line,
            self.mismatched,
            display_money(self.monthly_at_risk)
        );
        if !self.customers_not_read.is_empty() {
            s.push_str(&format!(
                "; {} customer(s) NOT audited (could not be read)",
                self.customers_not_read.len()
            ));
        }
        s
    }
}

/// The result of a reconciliation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reconciliation {
    /// When the fetch started and ended.
    pub fetched_from: DateTime<Utc>,
    pub fetched_at: DateTime<Utc>,
    /// The moment cancellation windows were measured from.
    pub now: DateTime<Utc>,
    pub summary: Summary,
    pub lines: Vec<Line>,
    pub mapping: super::mapping::Mapping,
}

// ---------------------------------------------------------------------------------------------
// Serialisation helpers
// ---------------------------------------------------------------------------------------------

/// Money with exactly two decimal places (half away from zero).
pub fn round_money(d: Decimal) -> Decimal {
    let mut r = d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    r.rescale(2);
    r
}

/// `1234.50` for a person: two decimal places.
pub fn display_money(d: Decimal) -> String {
    round_money(d).to_string()
}

fn money<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&round_money(*d).to_string())
}

fn money_opt<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => money(d, s),
        None => s.serialize_none(),
    }
}

/// A quantity as a JSON number when whole, else as a decimal string (ConnectWise allows
/// fractional quantities; floats are never used).
fn quantity_opt<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        None => s.serialize_none(),
        Some(d) => match whole(*d) {
            Some(i) => s.serialize_i64(i),
            None => s.serialize_str(&d.normalize().to_string()),
        },
    }
}

/// The quantity as an integer when it is whole.
pub fn whole(d: Decimal) -> Option<i64> {
    use rust_decimal::prelude::ToPrimitive;
    if d.fract().is_zero() {
        d.to_i64()
    } else {
        None
    }
}

/// A quantity as text: `25`, or `2.5`.
pub fn display_quantity(d: Decimal) -> String {
    match whole(d) {
        Some(i) => i.to_string(),
        None => d.normalize().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_codes_round_trip() {
        let k = ProductKey::from_stock_code("p1y:cfq7ttc0lchc:0002:1:").unwrap();
        assert_eq!(k.product_id, "CFQ7TTC0LCHC:0002");
        assert_eq!(k.term, Term::P1Y);
        assert_eq!(k.billing, Billing::Monthly);
        assert_eq!(k.stock_code().unwrap(), "P1Y:CFQ7TTC0LCHC:0002:1:");
        let a = ProductKey::from_stock_code("P3Y:CFQ7TTC0LFLX:0002:Y").unwrap();
        assert_eq!(a.billing, Billing::Annual);
        assert!(ProductKey::from_stock_code("DZH318Z0BQ4L").is_none());
        assert!(ProductKey::from_stock_code("LEGACY-M365").is_none());
    }

    #[test]
    fn money_has_two_places_and_statuses_their_names() {
        assert_eq!(display_money(Decimal::new(5, 0)), "5.00");
        assert_eq!(display_money(Decimal::new(12345, 3)), "12.35");
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
    }

    #[test]
    fn zero_lines_is_never_all_clean() {
        let s = Summary {
            psa: None,
            customers: 0,
            lines_audited: 0,
            in_line: 0,
            mismatched: 0,
            by_status: BTreeMap::new(),
            monthly_at_risk: Decimal::ZERO,
            lines_without_price: 0,
            unmapped_customers: 0,
            unmapped_products: 0,
            customers_not_read: vec![],
            customers_without_graph: vec![],
            distributor_lines_skipped: 0,
        };
        assert!(!s.all_clean());
        assert!(s.headline().contains("nothing was checked"));
    }
}
