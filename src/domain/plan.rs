//! The sync planner (issue 6 §1): from a reconciliation and the snapshot it was made from, every
//! PSA write that brings what the PSA charges to Dicker Data's quantities — listed, with before
//! → after and its money, before anything is written. Pure: no I/O, no clock (`today` comes in).
//!
//! The rules, in the words of docs/sync.md:
//! - only lines of customers linked to a PSA record are planned; Dicker Data's confirmed
//!   quantity (none = 0) is the target of every line whose product carries a stock code;
//! - ConnectWise (§5.3): the line's additions are brought to the target — one addition keeps
//!   the quantity (the one closest to the target, then the lowest agreement id, then the lowest
//!   addition id), every other one charging seats is cancelled; a line the PSA does not bill
//!   gets a new addition on the customer's agreement;
//! - Autotask (§6.3): one adjustment per contract service (`unitChange` = target − units in
//!   force), the same keeper rule; a missing service is added to the customer's recurring
//!   contract and then adjusted;
//! - Xero (§7.6): per customer one DRAFT sales invoice and one DRAFT bill for the period;
//! - every write has a stable key (see [`Write::key`] and docs/sync.md "Keys").
//!
//! The planner reads the PSA records the same way the reconciliation does (`domain::psa`), so a
//! plan applied and fetched again reconciles in line and plans nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Datelike, Months, NaiveDate};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use super::mapping::{CustomerLink, PsaLink};
use super::model::{
    Billing, Line, PriceBook, ProductKey, PsaCustomerRef, PsaProductRef, Reconciliation, Status,
    Term, display_quantity, round_money,
};
use super::psa::{XeroLatestKey, cycle_months, xero_is_live, xero_latest_key};
use super::sync::{
    BillingStyle, BillingTiming, Caution, Op, Plan, PlanSummary, Skipped, SyncOptions, Write,
    XeroInvoiceKind, XeroLine,
};
use crate::api::autotask as at;
use crate::api::connectwise as cw;
use crate::api::error::Api;
use crate::api::xero as xe;
use crate::engine::fetch::{
    AutotaskSnapshot, ConnectWiseSnapshot, PsaSnapshot, Snapshot, XeroSnapshot,
};

/// Days from a sales invoice's date to its due date.
pub const INVOICE_DUE_DAYS: u64 = 14;
/// Days from a bill's date to its due date.
pub const BILL_DUE_DAYS: u64 = 30;

/// Why no plan could be made. Every message is one sentence saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The billing style is refused (arrears with prorate).
    #[error("{0}")]
    Style(String),
    #[error(
        "No PSA was reconciled, so there is nothing to sync: choose ConnectWise, Autotask or Xero in the setup and reconcile again."
    )]
    NoPsa,
    #[error("The PSA's data could not be read ({0}), so no sync can be planned: fetch again.")]
    PsaNotRead(String),
    #[error(
        "The reconciliation is of {rec} but the fetched data is of {snap}: reconcile the fetched data again before planning."
    )]
    PsaMismatch { rec: String, snap: String },
    /// A Xero choice of the setup is missing or no longer in Xero.
    #[error("{0}")]
    XeroSetup(String),
}

/// The billing period a plan is for (docs/sync.md "Billing style"): in advance the coming
/// calendar month (the month after `today`'s), in arrears the month just ended.
pub fn billing_period(style: BillingStyle, today: NaiveDate) -> (NaiveDate, NaiveDate) {
    let this_month = first_of_month(today);
    let start = match style.timing {
        BillingTiming::Advance => this_month.checked_add_months(Months::new(1)),
        BillingTiming::Arrears => this_month.checked_sub_months(Months::new(1)),
    }
    .unwrap_or(this_month);
    let end = start
        .checked_add_months(Months::new(1))
        .and_then(|d| d.pred_opt())
        .unwrap_or(start);
    (start, end)
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// The Xero `Reference` (ACCREC) / `InvoiceNumber` (ACCPAY) of cspsync's document for one
/// customer and period: `cspsync 2026-12 <tenant id>`.
pub fn xero_reference(tenant_id: &str, period_start: NaiveDate) -> String {
    format!(
        "cspsync {} {}",
        period_start.format("%Y-%m"),
        tenant_id.trim().to_ascii_lowercase()
    )
}

/// Plan the writes that bring the PSA to Dicker Data's quantities. `rec` must be the
/// reconciliation of `snap`; `prices` is Dicker Data's price list (the cost on Xero bills).
pub fn plan(
    rec: &Reconciliation,
    snap: &Snapshot,
    prices: &PriceBook,
    opts: &SyncOptions,
    today: NaiveDate,
) -> Result<Plan, PlanError> {
    opts.style.validate().map_err(PlanError::Style)?;
    let psa = match &snap.psa {
        None => return Err(PlanError::NoPsa),
        Some(Err(e)) => return Err(PlanError::PsaNotRead(e.to_string())),
        Some(Ok(p)) => p,
    };
    let api = match psa {
        PsaSnapshot::ConnectWise(_) => Api::ConnectWise,
        PsaSnapshot::Autotask(_) => Api::Autotask,
        PsaSnapshot::Xero(_) => Api::Xero,
    };
    match rec.summary.psa {
        Some(a) if a == api => {}
        other => {
            return Err(PlanError::PsaMismatch {
                rec: other.map(|a| a.display_name()).unwrap_or("no PSA").into(),
                snap: api.display_name().into(),
            });
        }
    }
    let (period_start, period_end) = billing_period(opts.style, today);
    let ctx = Ctx::new(rec, prices, opts, today, period_start, period_end);
    let mut out = Out::default();
    match psa {
        PsaSnapshot::ConnectWise(s) => ConnectWise::new(&ctx, s).plan(&mut out),
        PsaSnapshot::Autotask(s) => Autotask::new(&ctx, s).plan(&mut out),
        PsaSnapshot::Xero(s) => {
            let setup = XeroSetup::check(s, opts)?;
            XeroPlanner::new(&ctx, s, setup).plan(&mut out);
        }
    }
    Ok(out.finish(api, &ctx))
}

// ---------------------------------------------------------------------------------------------
// Shared context
// ---------------------------------------------------------------------------------------------

/// A PSA product mapped to a stock code, as the reconciliation's mapping lists it.
#[derive(Debug, Clone)]
struct MappedProduct {
    r: PsaProductRef,
    by_override: bool,
}

/// One customer: its link and its lines, in the reconciliation's order.
struct Customer<'a> {
    tenant_id: &'a str,
    name: &'a str,
    link: Option<&'a PsaLink>,
    lines: Vec<&'a Line>,
}

struct Ctx<'a> {
    rec: &'a Reconciliation,
    prices: &'a PriceBook,
    opts: &'a SyncOptions,
    today: NaiveDate,
    period_start: NaiveDate,
    period_end: NaiveDate,
    /// PSA product → the stock code it is mapped to (identifier or override).
    product_key: HashMap<PsaProductRef, ProductKey>,
    /// Stock code → the PSA products carrying it.
    products_of: BTreeMap<ProductKey, Vec<MappedProduct>>,
    customers: Vec<Customer<'a>>,
}

impl<'a> Ctx<'a> {
    fn new(
        rec: &'a Reconciliation,
        prices: &'a PriceBook,
        opts: &'a SyncOptions,
        today: NaiveDate,
        period_start: NaiveDate,
        period_end: NaiveDate,
    ) -> Self {
        let mut product_key = HashMap::new();
        let mut products_of: BTreeMap<ProductKey, Vec<MappedProduct>> = BTreeMap::new();
        for p in &rec.mapping.products {
            let key = ProductKey {
                product_id: p.product_id.clone(),
                term: p.term,
                billing: p.billing,
            };
            for m in &p.psa_products {
                product_key.insert(m.product.clone(), key.clone());
                products_of
                    .entry(key.clone())
                    .or_default()
                    .push(MappedProduct {
                        r: m.product.clone(),
                        by_override: m.via == "override",
                    });
            }
        }
        let links: HashMap<String, &CustomerLink> = rec
            .mapping
            .customers
            .iter()
            .map(|c| (c.tenant_id.to_ascii_lowercase(), c))
            .collect();
        let mut customers: Vec<Customer<'a>> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for l in &rec.lines {
            let t = l.customer_tenant_id.to_ascii_lowercase();
            let i = *index.entry(t.clone()).or_insert_with(|| {
                customers.push(Customer {
                    tenant_id: &l.customer_tenant_id,
                    name: &l.customer_name,
                    link: links.get(&t).map(|c| &c.psa),
                    lines: Vec::new(),
                });
                customers.len() - 1
            });
            customers[i].lines.push(l);
        }
        // Grouped by customer name, then tenant id (the reconciliation's order already).
        customers.sort_by(|a, b| {
            (a.name.to_lowercase(), a.tenant_id).cmp(&(b.name.to_lowercase(), b.tenant_id))
        });
        Ctx {
            rec,
            prices,
            opts,
            today,
            period_start,
            period_end,
            product_key,
            products_of,
            customers,
        }
    }

    /// The per-customer price override for a stock code (per seat per month).
    fn override_price(&self, tenant_id: &str, code: &str) -> Option<Decimal> {
        let want = canonical_code(code);
        self.opts
            .price_overrides
            .iter()
            .find(|o| {
                o.tenant_id.trim().eq_ignore_ascii_case(tenant_id.trim())
                    && canonical_code(&o.stock_code) == want
            })
            .map(|o| o.unit_price)
    }

    /// The PSA products mapped to a stock code: overrides first, then by reference.
    fn products(&self, key: &ProductKey) -> Vec<&MappedProduct> {
        let mut v: Vec<&MappedProduct> = self
            .products_of
            .get(key)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| b.by_override.cmp(&a.by_override).then(a.r.cmp(&b.r)));
        v
    }
}

/// `P1Y:CFQ7TTC0LCHC:0002:1:` whatever the case and trailing colon.
fn canonical_code(code: &str) -> String {
    ProductKey::from_stock_code(code)
        .and_then(|k| k.stock_code())
        .unwrap_or_else(|| code.trim().to_ascii_uppercase())
}

/// What the plan does with one line.
enum Verdict {
    /// Nothing to write: the PSA already charges Dicker Data's quantity (or nothing is due).
    InLine,
    /// Not planned, with the reason.
    Skip(String),
    /// Bring the PSA to `target`.
    Sync {
        key: ProductKey,
        code: String,
        target: Decimal,
    },
}

/// Dicker Data's quantity: what the customer is charged (none = 0).
fn target(l: &Line) -> Decimal {
    Decimal::from(l.distributor_qty.unwrap_or(0).max(0))
}

/// What the PSA charges for the line now, as the reconciliation read it.
fn current(l: &Line) -> Decimal {
    l.psa_qty.unwrap_or_default()
}

fn line_key(l: &Line) -> ProductKey {
    ProductKey {
        product_id: l.product_id.clone(),
        term: l.term,
        billing: l.billing,
    }
}

/// How a line is named in the plan: product name and stock code (or product and term).
fn line_label(l: &Line) -> String {
    match &l.stock_code {
        Some(c) => format!("{} ({c})", l.product_name),
        None => format!("{} ({} {})", l.product_name, l.product_id, l.term.as_str()),
    }
}

/// The verdict for a line of a customer linked to the PSA.
fn verdict(l: &Line, psa: Api) -> Verdict {
    let differs = target(l) != current(l);
    if l.has(Status::UnmappedProduct) {
        if !differs {
            return Verdict::InLine;
        }
        // The reconciliation suggests the PSA records that may be these seats when the PSA
        // charges the customer under products without a stock code.
        return Verdict::Skip(if l.suggestions.is_empty() {
            "the product cannot be identified (its Partner Center offer or Dicker Data stock code is not understood), so no PSA write is planned for it".to_string()
        } else {
            format!(
                "{} charges the customer under a product without a stock code that may be these seats: map that product to {} first",
                psa.display_name(),
                l.stock_code.as_deref().unwrap_or(&l.product_id)
            )
        });
    }
    match &l.stock_code {
        None if differs => Verdict::Skip(
            "the product's term is not known, so it has no Dicker Data stock code to sync".into(),
        ),
        None => Verdict::InLine,
        Some(code) => Verdict::Sync {
            key: line_key(l),
            code: code.clone(),
            target: target(l),
        },
    }
}

/// What every write for one reconciled line carries (the customer, the product, the PSA, the
/// cautions of lowering it); [`LineWrites::write`] makes each.
struct LineWrites<'a> {
    tenant_id: &'a str,
    name: &'a str,
    line: &'a Line,
    code: &'a str,
    system: Api,
    cautions: Vec<Caution>,
}

impl LineWrites<'_> {
    /// A write of the line; the cautions go with it when it lowers the quantity.
    fn write(
        &self,
        target: String,
        before: Option<Decimal>,
        after: Option<Decimal>,
        change: Decimal,
        op: Op,
        key: String,
    ) -> Write {
        let lowers = matches!((before, after), (Some(b), Some(a)) if a < b);
        Write {
            key,
            customer_tenant_id: self.tenant_id.to_string(),
            customer_name: self.name.to_string(),
            system: self.system,
            target,
            product: self.line.product_name.clone(),
            stock_code: Some(self.code.to_string()),
            before,
            after,
            monthly_change: round_money(change),
            cautions: if lowers {
                self.cautions.clone()
            } else {
                Vec::new()
            },
            op,
        }
    }
}

/// Cautions for a line whose charge goes down (docs/sync.md "Cautions"): below the licences
/// assigned in the tenant (per SKU: the SKU's lines' targets together), or with no NCE
/// cancellation window open.
fn cautions(l: &Line, all: &[&Line]) -> Vec<Caution> {
    if target(l) >= current(l) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(assigned) = l.assigned {
        let sku_after: Decimal = all
            .iter()
            .filter(|o| o.product_id == l.product_id)
            .map(|o| target(o))
            .sum();
        if sku_after < Decimal::from(assigned) {
            out.push(Caution::BelowAssigned { assigned });
        }
    }
    if l.cancel_window_hours_left.is_none() {
        out.push(Caution::OutsideCancelWindow);
    }
    out
}

fn per_month(amount: Decimal, months: u32) -> Decimal {
    if months > 1 {
        amount / Decimal::from(months)
    } else {
        amount
    }
}

fn q(d: Decimal) -> String {
    display_quantity(d)
}

/// The plan being built.
#[derive(Default)]
struct Out {
    /// Customer by customer, each customer's in apply order.
    writes: Vec<Write>,
    skipped: Vec<Skipped>,
}

impl Out {
    fn skip(&mut self, c: &Customer<'_>, product: String, reason: String) {
        self.push_skip(c, product, None, reason);
    }

    /// A reconciliation line left alone: labelled with its product and stock code.
    fn skip_line(&mut self, c: &Customer<'_>, l: &Line, reason: String) {
        self.push_skip(c, line_label(l), l.stock_code.clone(), reason);
    }

    fn push_skip(
        &mut self,
        c: &Customer<'_>,
        product: String,
        stock_code: Option<String>,
        reason: String,
    ) {
        self.skipped.push(Skipped {
            customer_tenant_id: c.tenant_id.to_string(),
            customer_name: c.name.to_string(),
            product,
            stock_code,
            reason,
        });
    }

    fn finish(self, api: Api, ctx: &Ctx<'_>) -> Plan {
        let customers: BTreeSet<String> = self
            .writes
            .iter()
            .map(|w| w.customer_tenant_id.to_ascii_lowercase())
            .collect();
        let summary = PlanSummary {
            writes: self.writes.len(),
            customers: customers.len(),
            cautioned: self
                .writes
                .iter()
                .filter(|w| w.needs_confirmation())
                .count(),
            skipped: self.skipped.len(),
            monthly_change: round_money(self.writes.iter().map(|w| w.monthly_change).sum()),
        };
        Plan {
            psa: api,
            created_at: ctx.rec.now,
            style: ctx.opts.style,
            period_start: ctx.period_start,
            period_end: ctx.period_end,
            summary,
            writes: self.writes,
            skipped: self.skipped,
        }
    }
}

/// Walk every customer: unmapped ones get their billed lines skipped, mapped ones are handed
/// to `mapped` with their PSA record.
fn for_each_customer<'a, F>(ctx: &'a Ctx<'a>, out: &mut Out, api: Api, mut mapped: F)
where
    F: FnMut(&'a Customer<'a>, &'a PsaCustomerRef, &mut Out),
{
    for c in &ctx.customers {
        match c.link {
            Some(PsaLink::Mapped { record, .. }) => mapped(c, record, out),
            Some(PsaLink::Unmapped { suggestions }) => {
                let hint = suggestions
                    .first()
                    .map(|s| format!(" (suggestion: {})", s.label))
                    .unwrap_or_default();
                for l in c.lines.iter().filter(|l| target(l) > Decimal::ZERO) {
                    out.skip_line(
                        c,
                        l,
                        format!(
                            "the customer is not linked to a {} in {}: map it first{hint}",
                            if api == Api::Xero {
                                "contact"
                            } else {
                                "company"
                            },
                            api.display_name()
                        ),
                    );
                }
            }
            // Deliberately not billed in the PSA, or no link at all: nothing to sync.
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ConnectWise (§5.3)
// ---------------------------------------------------------------------------------------------

/// An addition the reconciliation counts.
struct CwAdd<'a> {
    agreement: &'a cw::Agreement,
    add: &'a cw::Addition,
    /// `quantity − lessIncluded`: what it charges.
    billed: Decimal,
    less_included: Decimal,
    /// Sell price per seat per month, if known.
    price: Option<Decimal>,
}

struct ConnectWise<'a> {
    ctx: &'a Ctx<'a>,
    catalog: HashMap<u64, &'a cw::CatalogItem>,
    /// Open agreements per company, by id.
    agreements: HashMap<u64, Vec<&'a cw::Agreement>>,
    /// Counted additions per (company, stock code).
    additions: HashMap<(u64, ProductKey), Vec<CwAdd<'a>>>,
    /// Every addition (cancelled too) per (agreement, stock code): the version of a create.
    ever: HashMap<(u64, ProductKey), usize>,
    /// Counted additions carrying a stock code, per agreement (where licences are billed).
    licence_additions: HashMap<u64, usize>,
}

impl<'a> ConnectWise<'a> {
    fn new(ctx: &'a Ctx<'a>, s: &'a ConnectWiseSnapshot) -> Self {
        let catalog: HashMap<u64, &cw::CatalogItem> = s.catalog.iter().map(|c| (c.id, c)).collect();
        let by_identifier: HashMap<String, &cw::CatalogItem> = s
            .catalog
            .iter()
            .map(|c| (c.identifier.to_ascii_lowercase(), c))
            .collect();
        let mut agreements: HashMap<u64, Vec<&cw::Agreement>> = HashMap::new();
        let mut additions: HashMap<(u64, ProductKey), Vec<CwAdd<'a>>> = HashMap::new();
        let mut ever: HashMap<(u64, ProductKey), usize> = HashMap::new();
        let mut licence_additions: HashMap<u64, usize> = HashMap::new();
        for a in s.agreements.iter().filter(|a| !a.is_closed()) {
            let Some(company) = a.company.as_ref().and_then(|c| c.id) else {
                continue;
            };
            agreements.entry(company).or_default().push(a);
            let months = cycle_months(a.billing_cycle.as_ref().and_then(|b| b.name.as_deref()));
            for add in s.additions.get(&a.id).map(Vec::as_slice).unwrap_or(&[]) {
                let item = add.product.as_ref().and_then(|p| {
                    p.id.and_then(|id| catalog.get(&id)).or_else(|| {
                        p.identifier
                            .as_deref()
                            .and_then(|i| by_identifier.get(&i.to_ascii_lowercase()))
                    })
                });
                let r = PsaProductRef::ConnectwiseCatalogItem(match item {
                    Some(i) => i.id,
                    None => add.product.as_ref().and_then(|p| p.id).unwrap_or(0),
                });
                let Some(key) = ctx.product_key.get(&r) else {
                    continue;
                };
                *ever.entry((a.id, key.clone())).or_default() += 1;
                // The reconciliation's rule (domain::psa): cancelled on or before now, or not
                // billable, is not counted.
                if add.cancelled_date.is_some_and(|d| d <= ctx.rec.now) {
                    continue;
                }
                if add
                    .bill_customer
                    .as_deref()
                    .is_some_and(|b| !b.eq_ignore_ascii_case("Billable"))
                {
                    continue;
                }
                *licence_additions.entry(a.id).or_default() += 1;
                let price = add
                    .unit_price
                    .or(item.and_then(|i| i.price))
                    .map(|p| per_month(p, months));
                additions
                    .entry((company, key.clone()))
                    .or_default()
                    .push(CwAdd {
                        agreement: a,
                        add,
                        billed: add.quantity.unwrap_or_default()
                            - add.less_included.unwrap_or_default(),
                        less_included: add.less_included.unwrap_or_default(),
                        price,
                    });
            }
        }
        for v in agreements.values_mut() {
            v.sort_by_key(|a| a.id);
        }
        for v in additions.values_mut() {
            v.sort_by_key(|x| (x.agreement.id, x.add.id));
        }
        ConnectWise {
            ctx,
            catalog,
            agreements,
            additions,
            ever,
            licence_additions,
        }
    }

    fn plan(&self, out: &mut Out) {
        for_each_customer(self.ctx, out, Api::ConnectWise, |c, record, out| {
            let PsaCustomerRef::ConnectwiseCompany(company) = record else {
                return;
            };
            for l in &c.lines {
                match verdict(l, Api::ConnectWise) {
                    Verdict::InLine => {}
                    Verdict::Skip(reason) => out.skip_line(c, l, reason),
                    Verdict::Sync { key, code, target } => {
                        self.line(c, *company, l, &key, &code, target, out);
                    }
                }
            }
        });
    }

    /// The agreement a new addition goes on: an open agreement of the company, preferring one
    /// that already bills licences, then the lowest id.
    fn agreement_for(&self, company: u64) -> Option<&'a cw::Agreement> {
        self.agreements.get(&company).and_then(|v| {
            v.iter()
                .max_by_key(|a| {
                    (
                        self.licence_additions.get(&a.id).copied().unwrap_or(0) > 0,
                        std::cmp::Reverse(a.id),
                    )
                })
                .copied()
        })
    }

    /// The catalog item a new addition is for: overrides first, active items, lowest id.
    fn item_for(&self, key: &ProductKey) -> Option<&'a cw::CatalogItem> {
        let items: Vec<&cw::CatalogItem> = self
            .ctx
            .products(key)
            .into_iter()
            .filter_map(|m| match m.r {
                PsaProductRef::ConnectwiseCatalogItem(id) => self.catalog.get(&id).copied(),
                _ => None,
            })
            .collect();
        items
            .iter()
            .find(|i| !i.inactive_flag.unwrap_or(false))
            .or(items.first())
            .copied()
    }

    #[allow(clippy::too_many_arguments)]
    fn line(
        &self,
        c: &Customer<'_>,
        company: u64,
        l: &Line,
        key: &ProductKey,
        code: &str,
        target: Decimal,
        out: &mut Out,
    ) {
        let adds: &[CwAdd<'_>] = self
            .additions
            .get(&(company, key.clone()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let now_total: Decimal = adds.iter().map(|a| a.billed).sum();
        if now_total == target {
            return;
        }
        let cautions = cautions(l, &c.lines);
        let writes = LineWrites {
            tenant_id: c.tenant_id,
            name: c.name,
            line: l,
            code,
            system: Api::ConnectWise,
            cautions,
        };
        if adds.is_empty() {
            let Some(agreement) = self.agreement_for(company) else {
                out.skip_line(
                    c,
                    l,
                    format!(
                        "{} has no open ConnectWise agreement: create an agreement for {} first",
                        c.name, c.name
                    ),
                );
                return;
            };
            let Some(item) = self.item_for(key) else {
                out.skip_line(
                    c,
                    l,
                    format!(
                        "no ConnectWise catalog item carries {code}: set an item's vendorSku to it or map a product to it first"
                    ),
                );
                return;
            };
            let months = cycle_months(
                agreement
                    .billing_cycle
                    .as_ref()
                    .and_then(|b| b.name.as_deref()),
            );
            // The override is per month; an addition's price is per billing period.
            let price = self
                .ctx
                .override_price(c.tenant_id, code)
                .map(|p| p * Decimal::from(months.max(1)))
                .or(item.price);
            let Some(price) = price else {
                out.skip_line(
                    c,
                    l,
                    format!(
                        "ConnectWise catalog item {} has no price: set a price for it (or a price override for this customer) first",
                        item.id
                    ),
                );
                return;
            };
            let base = if self.ctx.opts.style.prorate {
                self.ctx.today
            } else {
                first_of_month(self.ctx.today)
            };
            let effective = match agreement.start_date.map(|d| d.date_naive()) {
                Some(s) if s > base => s,
                _ => base,
            };
            let version = self
                .ever
                .get(&(agreement.id, key.clone()))
                .copied()
                .unwrap_or(0);
            let description = if item.description.trim().is_empty() {
                l.product_name.clone()
            } else {
                item.description.clone()
            };
            out.writes.push(writes.write(
                format!("agreement {} (new addition)", agreement.id),
                None,
                Some(target),
                target * per_month(price, months),
                Op::CwCreateAddition {
                    agreement_id: agreement.id,
                    catalog_item_id: item.id,
                    quantity: target,
                    unit_price: Some(price),
                    unit_cost: item.cost,
                    description,
                    effective_date: effective,
                },
                format!("cw:{}:add:{code}#{version}", agreement.id),
            ));
            return;
        }
        // The keeper: closest to the target, then the lowest agreement id and addition id.
        let keeper = if target > Decimal::ZERO {
            adds.iter()
                .enumerate()
                .min_by_key(|(_, a)| ((a.billed - target).abs(), a.agreement.id, a.add.id))
                .map(|(i, _)| i)
        } else {
            None
        };
        for (i, a) in adds.iter().enumerate() {
            let price = a.price.unwrap_or_default();
            let version = version_of(a.add.info.as_ref(), self.ctx.today);
            if Some(i) == keeper {
                if a.billed == target {
                    continue;
                }
                let quantity = target + a.less_included;
                out.writes.push(writes.write(
                    format!("addition {} on agreement {}", a.add.id, a.agreement.id),
                    Some(a.billed),
                    Some(target),
                    (target - a.billed) * price,
                    Op::CwSetQuantity {
                        agreement_id: a.agreement.id,
                        addition_id: a.add.id,
                        quantity,
                    },
                    format!(
                        "cw:{}:{}:qty:{}@{version}",
                        a.agreement.id,
                        a.add.id,
                        q(quantity)
                    ),
                ));
            } else if !a.billed.is_zero() {
                out.writes.push(writes.write(
                    format!("addition {} on agreement {}", a.add.id, a.agreement.id),
                    Some(a.billed),
                    Some(Decimal::ZERO),
                    -a.billed * price,
                    Op::CwCancelAddition {
                        agreement_id: a.agreement.id,
                        addition_id: a.add.id,
                        cancelled_date: self.ctx.today,
                    },
                    format!("cw:{}:{}:cancel@{version}", a.agreement.id, a.add.id),
                ));
            }
        }
    }
}

/// A record's version for a key: its `_info.lastUpdated` (a later change gives a new key),
/// else the day planned.
fn version_of(info: Option<&cw::Info>, today: NaiveDate) -> String {
    match info.and_then(|i| i.last_updated) {
        Some(t) => t.format("%Y%m%dT%H%M%SZ").to_string(),
        None => today.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Autotask (§6.3)
// ---------------------------------------------------------------------------------------------

/// A contract service the reconciliation counts.
struct AtCs<'a> {
    contract: &'a at::Contract,
    cs: &'a at::ContractService,
    service_id: i64,
    /// The unit record in force today, if any.
    unit: Option<&'a at::ContractServiceUnit>,
    units: Decimal,
    price: Option<Decimal>,
}

struct Autotask<'a> {
    ctx: &'a Ctx<'a>,
    services: HashMap<i64, &'a at::Service>,
    /// Active contracts per company, by id.
    contracts: HashMap<i64, Vec<&'a at::Contract>>,
    /// Counted contract services per (company, stock code).
    services_of: HashMap<(i64, ProductKey), Vec<AtCs<'a>>>,
    /// Contract services carrying a stock code, per contract.
    licence_services: HashMap<i64, usize>,
}

impl<'a> Autotask<'a> {
    fn new(ctx: &'a Ctx<'a>, s: &'a AutotaskSnapshot) -> Self {
        let services: HashMap<i64, &at::Service> = s.services.iter().map(|x| (x.id, x)).collect();
        // The unit record in force per contract service: the latest start among those
        // fetched (the fetch asks only for records covering its date) — as domain::psa.
        let mut units: HashMap<i64, &at::ContractServiceUnit> = HashMap::new();
        for u in &s.current_units {
            let e = units.entry(u.contract_service_id).or_insert(u);
            if (u.start_date, u.id) > (e.start_date, e.id) {
                *e = u;
            }
        }
        let active: HashMap<i64, &at::Contract> = s
            .contracts
            .iter()
            .filter(|k| k.status.is_none_or(|st| st == 1))
            .map(|k| (k.id, k))
            .collect();
        let mut contracts: HashMap<i64, Vec<&at::Contract>> = HashMap::new();
        for k in active.values() {
            if let Some(company) = k.company_id {
                contracts.entry(company).or_default().push(k);
            }
        }
        for v in contracts.values_mut() {
            v.sort_by_key(|k| k.id);
        }
        let mut services_of: HashMap<(i64, ProductKey), Vec<AtCs<'a>>> = HashMap::new();
        let mut licence_services: HashMap<i64, usize> = HashMap::new();
        for cs in &s.contract_services {
            let Some(contract) = cs.contract_id.and_then(|id| active.get(&id)) else {
                continue;
            };
            let Some(company) = contract.company_id else {
                continue;
            };
            let service_id = cs.service_id.unwrap_or(0);
            let Some(key) = ctx
                .product_key
                .get(&PsaProductRef::AutotaskService(service_id))
            else {
                continue;
            };
            *licence_services.entry(contract.id).or_default() += 1;
            let unit = units.get(&cs.id).copied();
            let price = cs
                .effective_price()
                .or(unit.and_then(|u| u.price))
                .or(services.get(&service_id).and_then(|x| x.unit_price));
            services_of
                .entry((company, key.clone()))
                .or_default()
                .push(AtCs {
                    contract,
                    cs,
                    service_id,
                    unit,
                    units: unit.map(|u| Decimal::from(u.units)).unwrap_or_default(),
                    price,
                });
        }
        for v in services_of.values_mut() {
            v.sort_by_key(|x| (x.contract.id, x.cs.id));
        }
        Autotask {
            ctx,
            services,
            contracts,
            services_of,
            licence_services,
        }
    }

    fn plan(&self, out: &mut Out) {
        for_each_customer(self.ctx, out, Api::Autotask, |c, record, out| {
            let PsaCustomerRef::AutotaskCompany(company) = record else {
                return;
            };
            for l in &c.lines {
                match verdict(l, Api::Autotask) {
                    Verdict::InLine => {}
                    Verdict::Skip(reason) => out.skip_line(c, l, reason),
                    Verdict::Sync { key, code, target } => {
                        self.line(c, *company, l, &key, &code, target, out);
                    }
                }
            }
        });
    }

    fn covers_today(&self, k: &at::Contract) -> bool {
        let t = self.ctx.today;
        k.start_date.is_none_or(|s| s <= t) && k.end_date.is_none_or(|e| e >= t)
    }

    /// The contract a new service goes on: an active recurring contract of the company,
    /// preferring one in force today, then one that already bills licences, then the lowest id.
    fn contract_for(&self, company: i64) -> Option<&'a at::Contract> {
        self.contracts.get(&company).and_then(|v| {
            v.iter()
                .filter(|k| k.contract_type.is_none_or(|t| t == 7))
                .max_by_key(|k| {
                    (
                        self.covers_today(k),
                        self.licence_services.get(&k.id).copied().unwrap_or(0) > 0,
                        std::cmp::Reverse(k.id),
                    )
                })
                .copied()
        })
    }

    fn service_for(&self, key: &ProductKey) -> Option<&'a at::Service> {
        let svcs: Vec<&at::Service> = self
            .ctx
            .products(key)
            .into_iter()
            .filter_map(|m| match m.r {
                PsaProductRef::AutotaskService(id) => self.services.get(&id).copied(),
                _ => None,
            })
            .collect();
        svcs.iter()
            .find(|s| s.is_active != Some(false))
            .or(svcs.first())
            .copied()
    }

    /// The adjustment's effective date: today when prorating, else the start of the current
    /// billing period — the unit record in force, or (a service not on the contract yet) the
    /// monthly period counted from the contract's start, as Autotask lays them out — clamped
    /// inside the contract's dates.
    fn effective_date(
        &self,
        contract: &at::Contract,
        unit: Option<&at::ContractServiceUnit>,
    ) -> NaiveDate {
        let today = self.ctx.today;
        let base = if self.ctx.opts.style.prorate {
            today
        } else {
            unit.and_then(|u| u.start_date)
                .filter(|s| *s <= today)
                .unwrap_or_else(|| match contract.start_date {
                    Some(start) => monthly_period_start(start, today),
                    None => first_of_month(today),
                })
        };
        clamp(base, contract.start_date, contract.end_date)
    }

    #[allow(clippy::too_many_arguments)]
    fn line(
        &self,
        c: &Customer<'_>,
        company: i64,
        l: &Line,
        key: &ProductKey,
        code: &str,
        target: Decimal,
        out: &mut Out,
    ) {
        let list: &[AtCs<'_>] = self
            .services_of
            .get(&(company, key.clone()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let now_total: Decimal = list.iter().map(|x| x.units).sum();
        if now_total == target {
            return;
        }
        let Some(target_units) = super::model::whole(target) else {
            return;
        };
        let cautions = cautions(l, &c.lines);
        let today = self.ctx.today;
        let writes = LineWrites {
            tenant_id: c.tenant_id,
            name: c.name,
            line: l,
            code,
            system: Api::Autotask,
            cautions,
        };
        if list.is_empty() {
            let Some(contract) = self.contract_for(company) else {
                out.skip_line(
                    c,
                    l,
                    format!(
                        "{} has no active Autotask Recurring Service contract: create one for {} first",
                        c.name, c.name
                    ),
                );
                return;
            };
            let Some(service) = self.service_for(key) else {
                out.skip_line(
                    c,
                    l,
                    format!(
                        "no Autotask service carries {code}: set a service's sku to it or map a service to it first"
                    ),
                );
                return;
            };
            let Some(price) = self
                .ctx
                .override_price(c.tenant_id, code)
                .or(service.unit_price)
            else {
                out.skip_line(
                    c,
                    l,
                    format!(
                        "Autotask service {} has no unit price: set a price for it (or a price override for this customer) first",
                        service.id
                    ),
                );
                return;
            };
            let effective = self.effective_date(contract, None);
            // Within a customer writes apply in plan order: the service is added first, and
            // the adjustment after it names no contract service (§6.3 finds it by contract
            // and service).
            out.writes.push(writes.write(
                format!("contract {} (new service {})", contract.id, service.id),
                None,
                Some(Decimal::ZERO),
                Decimal::ZERO,
                Op::AtAddContractService {
                    contract_id: contract.id,
                    service_id: service.id,
                    unit_price: Some(price),
                    invoice_description: format!(
                        "{} ({})",
                        l.product_name,
                        term_words(l.term, l.billing)
                    ),
                },
                format!("at:{}:{}:add", contract.id, service.id),
            ));
            out.writes.push(writes.write(
                format!(
                    "contract {} service {} (added above)",
                    contract.id, service.id
                ),
                Some(Decimal::ZERO),
                Some(target),
                target * price,
                Op::AtAdjustUnits {
                    contract_id: contract.id,
                    service_id: service.id,
                    contract_service_id: None,
                    unit_change: target_units,
                    effective_date: effective,
                    adjusted_unit_price: None,
                },
                format!(
                    "at:{}:{}:units:0->{target_units}:{effective}@{today}",
                    contract.id, service.id
                ),
            ));
            return;
        }
        let keeper = if target > Decimal::ZERO {
            list.iter()
                .enumerate()
                .min_by_key(|(_, x)| ((x.units - target).abs(), x.contract.id, x.cs.id))
                .map(|(i, _)| i)
        } else {
            None
        };
        for (i, x) in list.iter().enumerate() {
            let after = if Some(i) == keeper {
                target
            } else {
                Decimal::ZERO
            };
            if after == x.units {
                continue;
            }
            let (Some(before_units), Some(after_units)) =
                (super::model::whole(x.units), super::model::whole(after))
            else {
                continue;
            };
            let effective = self.effective_date(x.contract, x.unit);
            out.writes.push(writes.write(
                format!("contract service {} on contract {}", x.cs.id, x.contract.id),
                Some(x.units),
                Some(after),
                (after - x.units) * x.price.unwrap_or_default(),
                Op::AtAdjustUnits {
                    contract_id: x.contract.id,
                    service_id: x.service_id,
                    contract_service_id: Some(x.cs.id),
                    unit_change: after_units - before_units,
                    effective_date: effective,
                    adjusted_unit_price: None,
                },
                format!(
                    "at:{}:{}:units:{before_units}->{after_units}:{effective}@{today}",
                    x.contract.id, x.service_id
                ),
            ));
        }
    }
}

/// The start of the monthly period containing `today`, periods counted from `start` (a day
/// of month past the month's end falls on its last day); `start` itself when `today` is not
/// after it.
fn monthly_period_start(start: NaiveDate, today: NaiveDate) -> NaiveDate {
    if today <= start {
        return start;
    }
    let months = (today.year() - start.year()) * 12 + today.month() as i32 - start.month() as i32;
    let mut k = u32::try_from(months.max(0)).unwrap_or(0);
    loop {
        match start.checked_add_months(Months::new(k)) {
            Some(d) if d <= today => return d,
            _ if k == 0 => return start,
            _ => k -= 1,
        }
    }
}

fn clamp(d: NaiveDate, start: Option<NaiveDate>, end: Option<NaiveDate>) -> NaiveDate {
    let d = match start {
        Some(s) if d < s => s,
        _ => d,
    };
    match end {
        Some(e) if d > e => e,
        _ => d,
    }
}

fn term_words(term: Term, billing: Billing) -> String {
    let t = match term {
        Term::P1M => "monthly term",
        Term::P1Y => "1-year term",
        Term::P3Y => "3-year term",
        Term::Unknown => "term unknown",
    };
    let b = match billing {
        Billing::Monthly => "billed monthly",
        Billing::Annual => "billed annually",
    };
    format!("{t}, {b}")
}

// ---------------------------------------------------------------------------------------------
// Xero (§7.6)
// ---------------------------------------------------------------------------------------------

/// The Xero choices of the setup, checked against the organisation.
struct XeroSetup {
    revenue: String,
    expense: String,
    supplier: String,
}

impl XeroSetup {
    fn check(s: &XeroSnapshot, opts: &SyncOptions) -> Result<XeroSetup, PlanError> {
        let chosen = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
        };
        let revenue = chosen(&opts.xero_revenue_account).ok_or_else(|| {
            PlanError::XeroSetup(
                "No Xero Revenue account is chosen for sales invoice lines: choose one in the setup's Xero step first.".into(),
            )
        })?;
        let expense = chosen(&opts.xero_expense_account).ok_or_else(|| {
            PlanError::XeroSetup(
                "No Xero Expense account is chosen for Dicker Data's bills: choose one in the setup's Xero step first.".into(),
            )
        })?;
        let supplier = chosen(&opts.xero_supplier_contact_id).ok_or_else(|| {
            PlanError::XeroSetup(
                "No Xero contact is chosen for Dicker Data's bills: choose the supplier contact in the setup's Xero step first.".into(),
            )
        })?;
        for (code, what) in [(&revenue, "Revenue"), (&expense, "Expense")] {
            let found = s.accounts.iter().any(|a| {
                a.is_active()
                    && a.code
                        .as_deref()
                        .is_some_and(|c| c.trim().eq_ignore_ascii_case(code))
            });
            if !found {
                return Err(PlanError::XeroSetup(format!(
                    "The chosen {what} account {code} is not an active account in Xero: choose another in the setup's Xero step."
                )));
            }
        }
        let contact = s.contacts.iter().find(|c| {
            c.contact_id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(&supplier))
        });
        let supplier = match contact {
            Some(c) if c.contact_status != Some(xe::ContactStatus::Archived) => {
                c.contact_id.clone().unwrap_or(supplier)
            }
            _ => {
                return Err(PlanError::XeroSetup(
                    "The Xero contact chosen for Dicker Data's bills is archived or no longer in Xero: choose it again in the setup's Xero step.".into(),
                ));
            }
        };
        Ok(XeroSetup {
            revenue,
            expense,
            supplier,
        })
    }
}

fn contact_of(i: &xe::Invoice) -> Option<String> {
    i.contact
        .as_ref()
        .and_then(|c| c.contact_id.as_deref())
        .map(str::to_ascii_lowercase)
}

struct XeroPlanner<'a> {
    ctx: &'a Ctx<'a>,
    setup: XeroSetup,
    contacts: HashMap<String, &'a xe::Contact>,
    /// Live sales invoices per contact (lower case).
    sales: HashMap<String, Vec<&'a xe::Invoice>>,
    /// Live bills.
    bills: Vec<&'a xe::Invoice>,
    /// Latest sales line price per stock code, overall and per (contact, stock code).
    price: HashMap<ProductKey, (XeroLatestKey, Decimal)>,
    contact_price: HashMap<(String, ProductKey), (XeroLatestKey, Decimal)>,
    /// Latest bill line cost per stock code.
    cost: HashMap<ProductKey, (XeroLatestKey, Decimal)>,
}

/// Keep the value of the latest invoice per key.
fn newer<K: std::hash::Hash + Eq>(
    m: &mut HashMap<K, (XeroLatestKey, Decimal)>,
    k: K,
    lk: &XeroLatestKey,
    v: Decimal,
) {
    let e = m.entry(k).or_insert_with(|| (lk.clone(), v));
    if *lk > e.0 {
        *e = (lk.clone(), v);
    }
}

impl<'a> XeroPlanner<'a> {
    fn new(ctx: &'a Ctx<'a>, s: &'a XeroSnapshot, setup: XeroSetup) -> Self {
        let contacts = s
            .contacts
            .iter()
            .filter_map(|c| {
                c.contact_id
                    .as_deref()
                    .map(|id| (id.to_ascii_lowercase(), c))
            })
            .collect();
        let mut sales: HashMap<String, Vec<&xe::Invoice>> = HashMap::new();
        let mut bills = Vec::new();
        let mut price: HashMap<ProductKey, (XeroLatestKey, Decimal)> = HashMap::new();
        let mut contact_price: HashMap<(String, ProductKey), (XeroLatestKey, Decimal)> =
            HashMap::new();
        let mut cost: HashMap<ProductKey, (XeroLatestKey, Decimal)> = HashMap::new();
        for inv in s.invoices.iter().filter(|i| xero_is_live(i)) {
            let lk = xero_latest_key(inv);
            match inv.invoice_type {
                Some(xe::InvoiceType::AccRec) => {
                    let Some(contact) = contact_of(inv) else {
                        continue;
                    };
                    for line in &inv.line_items {
                        let (Some(k), Some(p)) = (xero_line_key(ctx, line), line.unit_amount)
                        else {
                            continue;
                        };
                        newer(&mut price, k.clone(), &lk, p);
                        newer(&mut contact_price, (contact.clone(), k), &lk, p);
                    }
                    sales.entry(contact).or_default().push(inv);
                }
                Some(xe::InvoiceType::AccPay) => {
                    for line in &inv.line_items {
                        let (Some(k), Some(p)) = (
                            line.item_code
                                .as_deref()
                                .and_then(ProductKey::from_stock_code),
                            line.unit_amount,
                        ) else {
                            continue;
                        };
                        newer(&mut cost, k, &lk, p);
                    }
                    bills.push(inv);
                }
                _ => {}
            }
        }
        XeroPlanner {
            ctx,
            setup,
            contacts,
            sales,
            bills,
            price,
            contact_price,
            cost,
        }
    }

    /// The sell price of a stock code for a customer: the override, else the customer's own
    /// latest invoice line for it, else the latest invoice line for it anywhere.
    fn sell_price(
        &self,
        tenant: &str,
        contact: &str,
        key: &ProductKey,
        code: &str,
    ) -> Option<Decimal> {
        self.ctx
            .override_price(tenant, code)
            .or_else(|| {
                self.contact_price
                    .get(&(contact.to_string(), key.clone()))
                    .map(|x| x.1)
            })
            .or_else(|| self.price.get(key).map(|x| x.1))
    }

    fn plan(&self, out: &mut Out) {
        for_each_customer(self.ctx, out, Api::Xero, |c, record, out| {
            let PsaCustomerRef::XeroContact(contact) = record else {
                return;
            };
            self.customer(c, &contact.to_ascii_lowercase(), out);
        });
    }

    /// cspsync's document for the period: the one with its reference (number), else — for
    /// sales invoices — one this app created for the contact dated inside the period.
    fn existing_invoice(&self, contact: &str, reference: &str) -> Option<&'a xe::Invoice> {
        let all = self.sales.get(contact).map(Vec::as_slice).unwrap_or(&[]);
        let by_ref: Vec<&xe::Invoice> = all
            .iter()
            .filter(|i| {
                i.reference
                    .as_deref()
                    .is_some_and(|r| r.trim().eq_ignore_ascii_case(reference))
            })
            .copied()
            .collect();
        let candidates = if by_ref.is_empty() {
            all.iter()
                .filter(|i| {
                    i.date
                        .is_some_and(|d| d >= self.ctx.period_start && d <= self.ctx.period_end)
                })
                .copied()
                .collect()
        } else {
            by_ref
        };
        candidates.into_iter().max_by_key(|i| xero_latest_key(i))
    }

    fn existing_bill(&self, reference: &str) -> Option<&'a xe::Invoice> {
        self.bills
            .iter()
            .filter(|i| {
                i.invoice_number
                    .as_deref()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case(reference))
                    && contact_of(i).is_some_and(|c| c.eq_ignore_ascii_case(&self.setup.supplier))
            })
            .max_by_key(|i| xero_latest_key(i))
            .copied()
    }

    fn customer(&self, c: &Customer<'_>, contact: &str, out: &mut Out) {
        let reference = xero_reference(c.tenant_id, self.ctx.period_start);
        let existing = self.existing_invoice(contact, &reference);
        let existing_bill = self.existing_bill(&reference);
        let ours = existing.is_some_and(|i| {
            i.reference
                .as_deref()
                .is_some_and(|r| r.trim().eq_ignore_ascii_case(&reference))
        }) || existing_bill.is_some();
        let on_existing: BTreeSet<String> = existing
            .map(|i| {
                i.line_items
                    .iter()
                    .filter_map(|l| l.item_code.as_deref().map(canonical_code))
                    .collect()
            })
            .unwrap_or_default();
        // Lines the invoice carries: what Dicker Data bills, and (at 0) what the latest
        // invoice still charges that Dicker Data no longer bills.
        let mut needs = ours;
        let mut held: Vec<(&Line, String)> = Vec::new();
        let mut lines: Vec<(&Line, ProductKey, String)> = Vec::new();
        for l in &c.lines {
            match verdict(l, Api::Xero) {
                Verdict::InLine => {}
                Verdict::Skip(reason) => {
                    if target(l) != current(l) {
                        needs = true;
                    }
                    if target(l) > Decimal::ZERO || current(l) > Decimal::ZERO {
                        held.push((*l, reason));
                    }
                }
                Verdict::Sync { key, code, target } => {
                    if target != current(l) {
                        needs = true;
                    }
                    // An ended product stays on the period's invoice at 0 while that invoice
                    // names it (so a re-run finds the invoice unchanged).
                    if target > Decimal::ZERO
                        || current(l) > Decimal::ZERO
                        || on_existing.contains(&canonical_code(&code))
                    {
                        lines.push((l, key, code));
                    }
                }
            }
        }
        if !needs {
            return;
        }
        let mut invoice_lines = Vec::new();
        let mut bill_lines = Vec::new();
        let mut change = Decimal::ZERO;
        let mut flags: Vec<Caution> = Vec::new();
        for (l, key, code) in &lines {
            let t = target(l);
            let Some(price) = self.sell_price(c.tenant_id, contact, key, code) else {
                held.push((
                    l,
                    format!(
                        "Xero has no earlier invoice line for {code} to take a price from: set a price override for this customer's {code} first"
                    ),
                ));
                continue;
            };
            change += (t - current(l)) * price;
            for k in cautions(l, &c.lines) {
                if !flags.contains(&k) {
                    flags.push(k);
                }
            }
            let period = self.ctx.period_start.format("%B %Y");
            invoice_lines.push(XeroLine {
                description: format!(
                    "{} ({}) - {period}",
                    l.product_name,
                    term_words(l.term, l.billing)
                ),
                item_code: Some(code.clone()),
                quantity: t,
                unit_amount: price,
                account_code: self.setup.revenue.clone(),
            });
            if t > Decimal::ZERO {
                let cost = self
                    .ctx
                    .prices
                    .get(code)
                    .or_else(|| self.cost.get(key).map(|x| x.1));
                match cost {
                    Some(cost) => bill_lines.push(XeroLine {
                        description: format!(
                            "{} - {} ({}) - {period}",
                            c.name,
                            l.product_name,
                            term_words(l.term, l.billing)
                        ),
                        item_code: Some(code.clone()),
                        quantity: t,
                        unit_amount: cost,
                        account_code: self.setup.expense.clone(),
                    }),
                    None => held.push((
                        l,
                        format!(
                            "no Dicker Data cost is known for {code} (neither the price list nor an earlier bill), so the bill is not drafted"
                        ),
                    )),
                }
            }
        }
        if !held.is_empty() {
            // A partial invoice could be approved as it stands and under-charge the customer:
            // the whole invoice and bill wait until every line can be drafted.
            let period = self.ctx.period_start.format("%Y-%m");
            let blockers: Vec<String> = held.iter().map(|h| line_label(h.0)).collect();
            for (l, reason) in held {
                out.skip_line(
                    c,
                    l,
                    format!(
                        "{reason} (the customer's Xero invoice for {period} is held until every line can be drafted)"
                    ),
                );
            }
            // The customer's other differences wait with it.
            for (l, _, _) in &lines {
                if target(l) != current(l) && !blockers.contains(&line_label(l)) {
                    out.skip_line(
                        c,
                        l,
                        format!(
                            "the customer's Xero invoice for {period} is held until {} can be drafted",
                            blockers.join(", ")
                        ),
                    );
                }
            }
            return;
        }
        if invoice_lines.is_empty() {
            return;
        }
        let contact_id = self
            .contacts
            .get(contact)
            .and_then(|x| x.contact_id.clone())
            .unwrap_or_else(|| contact.to_string());
        let contact_name = self
            .contacts
            .get(contact)
            .and_then(|x| x.name.clone())
            .unwrap_or_else(|| c.name.to_string());
        let before: Option<Decimal> = c
            .lines
            .iter()
            .any(|l| l.psa_qty.is_some())
            .then(|| c.lines.iter().map(|l| current(l)).sum());
        let (date, due) = self.dates(XeroInvoiceKind::SalesInvoice);
        let invoice = Draft {
            kind: XeroInvoiceKind::SalesInvoice,
            contact_id,
            reference: reference.clone(),
            date,
            due_date: due,
            lines: invoice_lines,
        };
        match self.draft_write(c, &invoice, existing, &contact_name, before, change, flags) {
            Ok(Some(w)) => out.writes.push(w),
            Ok(None) => {}
            Err(reason) => {
                out.skip(c, "Xero invoice and bill".into(), reason);
                return;
            }
        }
        if bill_lines.is_empty() {
            return;
        }
        let (date, due) = self.dates(XeroInvoiceKind::Bill);
        let bill = Draft {
            kind: XeroInvoiceKind::Bill,
            contact_id: self.setup.supplier.clone(),
            reference,
            date,
            due_date: due,
            lines: bill_lines,
        };
        let bill_before =
            existing_bill.map(|b| b.line_items.iter().filter_map(|l| l.quantity).sum());
        let supplier_name = self
            .contacts
            .get(&self.setup.supplier.to_ascii_lowercase())
            .and_then(|x| x.name.clone())
            .unwrap_or_else(|| "Dicker Data".into());
        match self.draft_write(
            c,
            &bill,
            existing_bill,
            &supplier_name,
            bill_before,
            Decimal::ZERO,
            Vec::new(),
        ) {
            Ok(Some(w)) => out.writes.push(w),
            Ok(None) => {}
            Err(reason) => out.skip(c, "Xero bill".into(), reason),
        }
    }

    /// Invoice date: the period's first day in advance, its last day in arrears.
    fn dates(&self, kind: XeroInvoiceKind) -> (NaiveDate, NaiveDate) {
        let date = match self.ctx.opts.style.timing {
            BillingTiming::Advance => self.ctx.period_start,
            BillingTiming::Arrears => self.ctx.period_end,
        };
        let days = match kind {
            XeroInvoiceKind::SalesInvoice => INVOICE_DUE_DAYS,
            XeroInvoiceKind::Bill => BILL_DUE_DAYS,
        };
        (
            date,
            date.checked_add_days(chrono::Days::new(days))
                .unwrap_or(date),
        )
    }

    /// The write for a draft: none when cspsync's document already says the same, an update
    /// of its DRAFT, or a create; `Err` when it is already approved.
    #[allow(clippy::too_many_arguments)]
    fn draft_write(
        &self,
        c: &Customer<'_>,
        d: &Draft,
        existing: Option<&xe::Invoice>,
        contact_name: &str,
        before: Option<Decimal>,
        change: Decimal,
        cautions: Vec<Caution>,
    ) -> Result<Option<Write>, String> {
        let kind_text = match d.kind {
            XeroInvoiceKind::SalesInvoice => "sales invoice",
            XeroInvoiceKind::Bill => "bill",
        };
        let code = match d.kind {
            XeroInvoiceKind::SalesInvoice => "ACCREC",
            XeroInvoiceKind::Bill => "ACCPAY",
        };
        let (invoice_id, version, target_text) = match existing {
            Some(inv) if d.same_as(inv) => return Ok(None),
            Some(inv) if inv.status == Some(xe::InvoiceStatus::Draft) => (
                inv.invoice_id.clone(),
                Some(
                    inv.updated_date_utc
                        .map(|t| t.timestamp().to_string())
                        .unwrap_or_else(|| self.ctx.today.to_string()),
                ),
                format!(
                    "DRAFT {kind_text} {} to {contact_name}",
                    inv.invoice_number.as_deref().unwrap_or("(no number)")
                ),
            ),
            Some(inv) => {
                return Err(format!(
                    "cspsync's {kind_text} {} for {} is {} in Xero: already approved, so it is not changed (adjust it in Xero by hand)",
                    inv.invoice_number.as_deref().unwrap_or("(no number)"),
                    self.ctx.period_start.format("%Y-%m"),
                    inv.status.map(|s| s.as_str()).unwrap_or("not a draft")
                ));
            }
            None => (
                None,
                None,
                format!("new DRAFT {kind_text} to {contact_name}"),
            ),
        };
        let tenant = if c.tenant_id.len() > 40 {
            short_hash(c.tenant_id)
        } else {
            c.tenant_id.to_ascii_lowercase()
        };
        let mut key = format!(
            "xero:{code}:{tenant}:{}:{}",
            self.ctx.period_start.format("%Y-%m"),
            d.hash()
        );
        if let Some(v) = version {
            key.push('@');
            key.push_str(&v);
        }
        let after: Decimal = d.lines.iter().map(|l| l.quantity).sum();
        Ok(Some(Write {
            key,
            customer_tenant_id: c.tenant_id.to_string(),
            customer_name: c.name.to_string(),
            system: Api::Xero,
            target: target_text,
            product: format!(
                "{} line{}",
                d.lines.len(),
                if d.lines.len() == 1 { "" } else { "s" }
            ),
            stock_code: None,
            before,
            after: Some(after),
            monthly_change: round_money(change),
            cautions,
            op: Op::XeroDraft {
                kind: d.kind,
                contact_id: d.contact_id.clone(),
                invoice_id,
                reference: d.reference.clone(),
                date: d.date,
                due_date: d.due_date,
                lines: d.lines.clone(),
            },
        }))
    }
}

/// The stock code of a Xero line, as the reconciliation maps it (item code override, else the
/// item code read as a stock code).
fn xero_line_key(ctx: &Ctx<'_>, line: &xe::LineItem) -> Option<ProductKey> {
    let code = line
        .item_code
        .as_deref()
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty())?;
    ctx.product_key
        .get(&PsaProductRef::XeroItemCode(code.clone()))
        .cloned()
        .or_else(|| ProductKey::from_stock_code(&code))
}

struct Draft {
    kind: XeroInvoiceKind,
    contact_id: String,
    reference: String,
    date: NaiveDate,
    due_date: NaiveDate,
    lines: Vec<XeroLine>,
}

type LineTuple = (String, String, Decimal, Decimal, String);

fn tuple(
    description: &str,
    item: Option<&str>,
    qty: Decimal,
    unit: Decimal,
    account: &str,
) -> LineTuple {
    (
        description.trim().to_string(),
        item.map(canonical_code).unwrap_or_default(),
        qty.normalize(),
        unit.normalize(),
        account.trim().to_ascii_uppercase(),
    )
}

impl Draft {
    fn tuples(&self) -> Vec<LineTuple> {
        let mut v: Vec<LineTuple> = self
            .lines
            .iter()
            .map(|l| {
                tuple(
                    &l.description,
                    l.item_code.as_deref(),
                    l.quantity,
                    l.unit_amount,
                    &l.account_code,
                )
            })
            .collect();
        v.sort();
        v
    }

    /// Whether an invoice in Xero already says what this draft says.
    fn same_as(&self, inv: &xe::Invoice) -> bool {
        let mut theirs: Vec<LineTuple> = inv
            .line_items
            .iter()
            .map(|l| {
                tuple(
                    l.description.as_deref().unwrap_or(""),
                    l.item_code.as_deref(),
                    l.quantity.unwrap_or_default(),
                    l.unit_amount.unwrap_or_default(),
                    l.account_code.as_deref().unwrap_or(""),
                )
            })
            .collect();
        theirs.sort();
        let number = match self.kind {
            XeroInvoiceKind::SalesInvoice => inv.reference.as_deref(),
            XeroInvoiceKind::Bill => inv.invoice_number.as_deref(),
        };
        theirs == self.tuples()
            && number.is_some_and(|n| n.trim().eq_ignore_ascii_case(&self.reference))
            && inv.date == Some(self.date)
            && inv.due_date == Some(self.due_date)
    }

    /// A short digest of what the draft says (part of its key).
    fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "{:?}|{}|{}|{}|{}",
            self.kind,
            self.contact_id.to_ascii_lowercase(),
            self.reference,
            self.date,
            self.due_date
        ));
        for t in self.tuples() {
            h.update(format!("\n{}|{}|{}|{}|{}", t.0, t.1, t.2, t.3, t.4));
        }
        hex12(&h.finalize())
    }
}

fn short_hash(s: &str) -> String {
    hex12(&Sha256::digest(s.trim().to_ascii_lowercase().as_bytes()))
}

fn hex12(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn advance_bills_the_coming_month_and_arrears_the_month_just_ended() {
        let advance = BillingStyle::default();
        let arrears = BillingStyle {
            timing: BillingTiming::Arrears,
            prorate: false,
        };
        assert_eq!(
            billing_period(advance, day("2026-01-31")),
            (day("2026-02-01"), day("2026-02-28"))
        );
        assert_eq!(
            billing_period(advance, day("2026-12-01")),
            (day("2027-01-01"), day("2027-01-31"))
        );
        assert_eq!(
            billing_period(arrears, day("2026-01-15")),
            (day("2025-12-01"), day("2025-12-31"))
        );
    }

    #[test]
    fn references_name_cspsync_the_period_and_the_tenant() {
        assert_eq!(
            xero_reference(" B44BB1FB-C595-45B0-9E09-D657365580BF ", day("2026-12-01")),
            "cspsync 2026-12 b44bb1fb-c595-45b0-9e09-d657365580bf"
        );
    }

    #[test]
    fn autotask_periods_count_from_the_contract_start() {
        let t = day("2026-11-21");
        assert_eq!(
            monthly_period_start(day("2025-01-01"), t),
            day("2026-11-01")
        );
        assert_eq!(
            monthly_period_start(day("2025-03-17"), t),
            day("2026-11-17")
        );
        assert_eq!(
            monthly_period_start(day("2025-03-22"), t),
            day("2026-10-22")
        );
        assert_eq!(
            monthly_period_start(day("2025-03-21"), t),
            day("2026-11-21")
        );
        assert_eq!(
            monthly_period_start(day("2026-01-31"), day("2026-03-01")),
            day("2026-02-28")
        );
        assert_eq!(
            monthly_period_start(day("2027-01-01"), t),
            day("2027-01-01")
        );
    }

    #[test]
    fn effective_dates_stay_inside_the_contract() {
        let d = day("2026-11-21");
        assert_eq!(clamp(d, Some(day("2026-12-01")), None), day("2026-12-01"));
        assert_eq!(clamp(d, None, Some(day("2026-11-15"))), day("2026-11-15"));
        assert_eq!(
            clamp(d, Some(day("2026-01-01")), Some(day("2027-01-01"))),
            d
        );
        assert_eq!(clamp(d, None, None), d);
    }

    #[test]
    fn stock_codes_compare_whatever_their_case_and_trailing_colon() {
        assert_eq!(
            canonical_code("p1y:cfq7ttc0lchc:0002:1"),
            "P1Y:CFQ7TTC0LCHC:0002:1:"
        );
        assert_eq!(canonical_code(" dzh318z0bq4l "), "DZH318Z0BQ4L");
    }

    #[test]
    fn a_drafts_digest_depends_on_what_it_says_not_on_line_order() {
        let line = |code: &str, qty: i64| XeroLine {
            description: format!("{code} - December 2026"),
            item_code: Some(code.into()),
            quantity: Decimal::from(qty),
            unit_amount: Decimal::new(3290, 2),
            account_code: "200".into(),
        };
        let draft = |lines| Draft {
            kind: XeroInvoiceKind::SalesInvoice,
            contact_id: "C".into(),
            reference: "cspsync 2026-12 t".into(),
            date: day("2026-12-01"),
            due_date: day("2026-12-15"),
            lines,
        };
        let a = draft(vec![line("A", 1), line("B", 2)]);
        let b = draft(vec![line("B", 2), line("A", 1)]);
        let c = draft(vec![line("A", 1), line("B", 3)]);
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.hash().len(), 12);
    }

    #[test]
    fn annual_agreements_divide_prices_to_a_month() {
        assert_eq!(cycle_months(Some("Annual")), 12);
        assert_eq!(cycle_months(Some("Quarterly")), 3);
        assert_eq!(cycle_months(None), 1);
        assert_eq!(per_month(Decimal::new(39480, 2), 12), Decimal::new(3290, 2));
    }
}
