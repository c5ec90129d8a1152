//! Customer and product mapping.
//!
//! Customers: a Microsoft tenant is linked to Dicker Data by tenant id (always exact) and to a
//! PSA company / Xero contact automatically only when exactly one PSA record has the same
//! normalised name, or (ConnectWise, Autotask) exactly one has a website on one of the
//! customer's domains — and no other customer claims that record. Everything else is
//! unmapped, with ranked suggestions and their reasons; a suggestion is never applied.
//! Manual overrides win over both.
//!
//! Products: a PSA product is linked to a Dicker Data stock code by the identifier carrying the
//! code (ConnectWise `vendorSku`, Autotask service `sku`, Xero line `ItemCode`) or an override.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;
use serde::Serialize;

use super::model::{
    Billing, CustomerOverride, Overrides, ProductKey, ProductOverride, PsaCustomerRef,
    PsaProductRef, Suggestion, Term,
};
use super::names::{distinctive_words, normalise_domain, normalise_name};
use super::psa::{ProductVia, PsaView};
use crate::api::error::Api;

/// Most suggestions kept per unmapped item.
const MAX_SUGGESTIONS: usize = 5;

/// Why a customer is linked to its PSA record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum MatchReason {
    /// The normalised names are equal.
    Name { normalised: String },
    /// The PSA record's website is one of the customer's domains.
    Domain { domain: String },
    /// A manual override.
    Manual,
}

impl MatchReason {
    pub fn describe(&self) -> String {
        match self {
            MatchReason::Name { normalised } => {
                format!("the names are equal once normalised (`{normalised}`)")
            }
            MatchReason::Domain { domain } => {
                format!("its website is the customer's domain {domain}")
            }
            MatchReason::Manual => "linked by hand".to_string(),
        }
    }
}

/// A customer's link to the PSA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PsaLink {
    /// No PSA was reconciled.
    NoPsa,
    /// Deliberately not billed in the PSA (a manual override).
    NotBilled,
    Mapped {
        record: PsaCustomerRef,
        name: String,
        reason: MatchReason,
    },
    Unmapped {
        suggestions: Vec<Suggestion<PsaCustomerRef>>,
    },
}

impl PsaLink {
    pub fn record(&self) -> Option<&PsaCustomerRef> {
        match self {
            PsaLink::Mapped { record, .. } => Some(record),
            _ => None,
        }
    }

    pub fn is_unmapped(&self) -> bool {
        matches!(self, PsaLink::Unmapped { .. })
    }
}

/// One customer in the mapping view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerLink {
    pub tenant_id: String,
    pub name: String,
    /// Whether Partner Center lists the tenant as a customer.
    pub at_microsoft: bool,
    /// Dicker Data's name for the tenant, when it bills it.
    pub distributor_name: Option<String>,
    pub psa: PsaLink,
}

/// A PSA product mapped to a stock code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappedPsaProduct {
    pub product: PsaProductRef,
    pub name: String,
    /// `vendorSku P1Y:…`, or `override`.
    pub via: String,
}

/// A stock code in use and the PSA products that carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductLink {
    pub stock_code: Option<String>,
    pub product_id: String,
    pub term: Term,
    pub billing: Billing,
    pub product_name: String,
    /// Whether Dicker Data bills it for at least one customer.
    pub billed_by_distributor: bool,
    pub psa_products: Vec<MappedPsaProduct>,
}

/// A PSA product that charges customers but has no stock code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmappedPsaProduct {
    pub product: PsaProductRef,
    pub name: String,
    /// Why its identifier did not map, when it has one.
    pub problem: Option<String>,
    /// Charges under it, and the customers they are for.
    pub charges: usize,
    pub customers: usize,
    /// Ranked stock codes it may be.
    pub suggestions: Vec<Suggestion<String>>,
}

/// A PSA record with charges that no customer is linked to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnclaimedPsaCustomer {
    pub record: PsaCustomerRef,
    pub name: String,
    pub charges: usize,
}

/// A PSA record a customer can be linked to by hand: every company (ConnectWise, Autotask)
/// or contact (Xero) that is a candidate at all (not deleted, inactive or archived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PsaRecord {
    pub record: PsaCustomerRef,
    pub name: String,
}

/// The mapping view: what is linked, how, and what is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    pub psa: Option<Api>,
    pub customers: Vec<CustomerLink>,
    pub unmapped_customers: usize,
    pub products: Vec<ProductLink>,
    /// Stock codes Dicker Data bills that the PSA has no product for.
    pub stock_codes_without_psa_product: usize,
    pub unmapped_psa_products: Vec<UnmappedPsaProduct>,
    pub unclaimed_psa_customers: Vec<UnclaimedPsaCustomer>,
    /// Records the PSA reading left out, and why.
    pub notes: Vec<String>,
    /// Every PSA record a customer may be linked to by hand, by name (the manual override
    /// picker; the ids a hand-written `[mapping]` override needs).
    pub psa_records: Vec<PsaRecord>,
}

impl Mapping {
    /// The unmapped product count: PSA products without a stock code, plus stock codes Dicker
    /// Data bills that the PSA has no product for.
    pub fn unmapped_products(&self) -> usize {
        self.unmapped_psa_products.len() + self.stock_codes_without_psa_product
    }

    /// The customer with this tenant id (any case).
    pub fn customer(&self, tenant_id: &str) -> Option<&CustomerLink> {
        let t = tenant_key(tenant_id);
        self.customers
            .iter()
            .find(|c| tenant_key(&c.tenant_id) == t)
    }

    /// The name of a PSA record, when the PSA has it.
    pub fn psa_record_name(&self, r: &PsaCustomerRef) -> Option<&str> {
        let r = override_ref(r);
        self.psa_records
            .iter()
            .find(|p| p.record == r)
            .map(|p| p.name.as_str())
    }

    /// The customers linked to a PSA record (normally at most one).
    pub fn customers_of(&self, r: &PsaCustomerRef) -> impl Iterator<Item = &CustomerLink> {
        let r = override_ref(r);
        self.customers
            .iter()
            .filter(move |c| c.psa.record() == Some(&r))
    }
}

// ---------------------------------------------------------------------------------------------
// Manual decisions
// ---------------------------------------------------------------------------------------------

/// Tenant ids compare trimmed and without case (as the reconciliation joins them).
fn tenant_key(t: &str) -> String {
    t.trim().to_ascii_lowercase()
}

/// PSA product references compare as the reconciliation reads overrides: Xero item codes
/// without case, Xero description prefixes trimmed and without case.
fn product_ref_key(r: &PsaProductRef) -> PsaProductRef {
    match r {
        PsaProductRef::XeroItemCode(c) => {
            PsaProductRef::XeroItemCode(c.trim().to_ascii_uppercase())
        }
        PsaProductRef::XeroDescription(d) => {
            PsaProductRef::XeroDescription(d.trim().to_lowercase())
        }
        other => other.clone(),
    }
}

/// Editing the manual decisions: one decision per tenant and per PSA product, replaced (never
/// duplicated) when it is made again. Each change returns whether anything changed.
impl Overrides {
    /// The manual decision for a customer, if there is one.
    pub fn customer(&self, tenant_id: &str) -> Option<&CustomerOverride> {
        let t = tenant_key(tenant_id);
        self.customers
            .iter()
            .find(|o| tenant_key(&o.tenant_id) == t)
    }

    /// Link a customer by hand to a PSA record (`Some`), or mark it not billed in the PSA
    /// (`None`) — e.g. accepting a [`Suggestion`]. Replaces any earlier decision for it.
    pub fn set_customer(&mut self, tenant_id: &str, psa: Option<PsaCustomerRef>) -> bool {
        let t = tenant_key(tenant_id);
        let psa = psa.as_ref().map(override_ref);
        let same = |o: &CustomerOverride| tenant_key(&o.tenant_id) == t;
        let existing: Vec<&CustomerOverride> = self.customers.iter().filter(|o| same(o)).collect();
        if existing.len() == 1 && existing[0].psa.as_ref().map(override_ref) == psa {
            return false;
        }
        let at = self.customers.iter().position(same);
        self.customers.retain(|o| !same(o));
        let o = CustomerOverride {
            tenant_id: tenant_id.trim().to_string(),
            psa,
        };
        match at {
            Some(i) => self.customers.insert(i.min(self.customers.len()), o),
            None => self.customers.push(o),
        }
        true
    }

    /// Forget the manual decision for a customer: back to automatic matching.
    pub fn remove_customer(&mut self, tenant_id: &str) -> bool {
        let t = tenant_key(tenant_id);
        let before = self.customers.len();
        self.customers.retain(|o| tenant_key(&o.tenant_id) != t);
        self.customers.len() != before
    }

    /// The manual stock code of a PSA product, if there is one.
    pub fn product(&self, r: &PsaProductRef) -> Option<&ProductOverride> {
        let k = product_ref_key(r);
        self.products
            .iter()
            .find(|o| product_ref_key(&o.psa_product) == k)
    }

    /// Map a PSA product by hand to a stock code (stored in its canonical form). Replaces any
    /// earlier decision for it. `false` when the code is not a licence stock code or the
    /// decision is already there.
    pub fn set_product(&mut self, r: &PsaProductRef, stock_code: &str) -> bool {
        let Some(code) = ProductKey::from_stock_code(stock_code).and_then(|k| k.stock_code())
        else {
            return false;
        };
        let k = product_ref_key(r);
        let same = |o: &ProductOverride| product_ref_key(&o.psa_product) == k;
        let existing: Vec<&ProductOverride> = self.products.iter().filter(|o| same(o)).collect();
        if existing.len() == 1
            && ProductKey::from_stock_code(&existing[0].stock_code).and_then(|k| k.stock_code())
                == Some(code.clone())
        {
            return false;
        }
        let at = self.products.iter().position(same);
        self.products.retain(|o| !same(o));
        let o = ProductOverride {
            psa_product: r.clone(),
            stock_code: code,
        };
        match at {
            Some(i) => self.products.insert(i.min(self.products.len()), o),
            None => self.products.push(o),
        }
        true
    }

    /// Forget the manual stock code of a PSA product: back to its own identifier.
    pub fn remove_product(&mut self, r: &PsaProductRef) -> bool {
        let k = product_ref_key(r);
        let before = self.products.len();
        self.products
            .retain(|o| product_ref_key(&o.psa_product) != k);
        self.products.len() != before
    }
}

/// Every PSA record a customer may be linked to, by name.
pub(crate) fn psa_records(view: Option<&PsaView>) -> Vec<PsaRecord> {
    let Some(view) = view else {
        return Vec::new();
    };
    let mut out: Vec<PsaRecord> = view
        .customers
        .iter()
        .map(|p| PsaRecord {
            record: p.r.clone(),
            name: p.name.clone(),
        })
        .collect();
    out.sort_by(|a, b| (a.name.to_lowercase(), &a.record).cmp(&(b.name.to_lowercase(), &b.record)));
    out.dedup_by(|a, b| a.record == b.record);
    out
}

// ---------------------------------------------------------------------------------------------
// Customers
// ---------------------------------------------------------------------------------------------

/// What the customer mapping needs to know about a customer.
#[derive(Debug, Clone, Default)]
pub(crate) struct CustomerFacts {
    pub tenant_id: String,
    pub name: String,
    /// Other names it is known by (Dicker Data's company name).
    pub other_names: Vec<String>,
    /// Verified domains (Partner Center custom domains and the initial domain).
    pub domains: Vec<String>,
    /// What Dicker Data bills it: stock code → confirmed quantity (for suggestions).
    pub billed: BTreeMap<ProductKey, Decimal>,
}

/// A PSA record reference in the form the reconciliation compares (Xero contact ids without
/// case), so a decision written by hand matches the record it names.
pub fn canonical_ref(r: &PsaCustomerRef) -> PsaCustomerRef {
    override_ref(r)
}

fn override_ref(r: &PsaCustomerRef) -> PsaCustomerRef {
    match r {
        PsaCustomerRef::XeroContact(id) => PsaCustomerRef::XeroContact(id.to_ascii_lowercase()),
        other => other.clone(),
    }
}

enum Tentative {
    None,
    Override(Option<PsaCustomerRef>),
    Auto(usize, MatchReason),
    Ambiguous(Vec<usize>, &'static str),
}

/// Link every customer to the PSA (see the module comment). `facts` and the result are
/// aligned.
pub(crate) fn map_customers(
    facts: &[CustomerFacts],
    view: Option<&PsaView>,
    overrides: &Overrides,
) -> Vec<PsaLink> {
    let Some(view) = view else {
        return facts.iter().map(|_| PsaLink::NoPsa).collect();
    };
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_domain: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_ref: HashMap<&PsaCustomerRef, usize> = HashMap::new();
    for (i, p) in view.customers.iter().enumerate() {
        if !p.key.is_empty() {
            by_name.entry(p.key.as_str()).or_default().push(i);
        }
        if let Some(d) = &p.domain {
            by_domain.entry(d.as_str()).or_default().push(i);
        }
        by_ref.insert(&p.r, i);
    }
    let manual: HashMap<String, Option<PsaCustomerRef>> = overrides
        .customers
        .iter()
        .map(|o| {
            (
                o.tenant_id.trim().to_ascii_lowercase(),
                o.psa.as_ref().map(override_ref),
            )
        })
        .collect();

    // 1. What each customer matches on its own.
    let mut tentative: Vec<Tentative> = Vec::with_capacity(facts.len());
    for f in facts {
        if let Some(o) = manual.get(&f.tenant_id.to_ascii_lowercase()) {
            tentative.push(Tentative::Override(o.clone()));
            continue;
        }
        let mut names: BTreeSet<usize> = BTreeSet::new();
        let mut key_used = String::new();
        for n in std::iter::once(&f.name).chain(f.other_names.iter()) {
            let key = normalise_name(n);
            if let Some(v) = by_name.get(key.as_str()) {
                names.extend(v.iter().copied());
                key_used = key;
            }
        }
        if names.len() == 1 {
            let i = names.into_iter().next().unwrap_or_default();
            tentative.push(Tentative::Auto(
                i,
                MatchReason::Name {
                    normalised: key_used,
                },
            ));
            continue;
        }
        if names.len() > 1 {
            tentative.push(Tentative::Ambiguous(names.into_iter().collect(), "name"));
            continue;
        }
        let mut domains: BTreeMap<usize, String> = BTreeMap::new();
        for d in &f.domains {
            let d = normalise_domain(d);
            if let Some(v) = by_domain.get(d.as_str()) {
                for &i in v {
                    domains.insert(i, d.clone());
                }
            }
        }
        match domains.len() {
            0 => tentative.push(Tentative::None),
            1 => {
                let (i, domain) = domains.into_iter().next().unwrap_or_default();
                tentative.push(Tentative::Auto(i, MatchReason::Domain { domain }));
            }
            _ => tentative.push(Tentative::Ambiguous(
                domains.into_keys().collect(),
                "domain",
            )),
        }
    }

    // 2. A record claimed by two customers is linked to neither (overrides excepted).
    let mut claims: HashMap<usize, Vec<usize>> = HashMap::new();
    for (ci, t) in tentative.iter().enumerate() {
        match t {
            Tentative::Auto(i, _) => claims.entry(*i).or_default().push(ci),
            Tentative::Override(Some(r)) => {
                if let Some(&i) = by_ref.get(r) {
                    claims.entry(i).or_default().push(ci);
                }
            }
            _ => {}
        }
    }
    let overridden: BTreeSet<usize> = tentative
        .iter()
        .filter_map(|t| match t {
            Tentative::Override(Some(r)) => by_ref.get(r).copied(),
            _ => None,
        })
        .collect();

    // Index of what each PSA record bills, and of the words of its name, for suggestions.
    let mut billed_by: HashMap<&PsaCustomerRef, BTreeMap<ProductKey, Decimal>> = HashMap::new();
    for c in &view.charges {
        if let Some(k) = &c.key {
            *billed_by
                .entry(&c.customer)
                .or_default()
                .entry(k.clone())
                .or_default() += c.qty;
        }
    }
    let n_keys: Vec<usize> = view
        .customers
        .iter()
        .map(|p| billed_by.get(&p.r).map_or(0, BTreeMap::len))
        .collect();
    let claimed =
        |i: usize| overridden.contains(&i) || claims.get(&i).is_some_and(|v| v.len() == 1);
    let mut by_pair: HashMap<(ProductKey, Decimal), Vec<usize>> = HashMap::new();
    let mut by_word: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, p) in view.customers.iter().enumerate() {
        if claimed(i) {
            continue;
        }
        if let Some(b) = billed_by.get(&p.r) {
            for (k, q) in b {
                by_pair
                    .entry((k.clone(), q.normalize()))
                    .or_default()
                    .push(i);
            }
        }
        for w in distinctive_words(&p.name) {
            by_word.entry(w).or_default().push(i);
        }
    }

    let mut out = Vec::with_capacity(facts.len());
    for (ci, (f, t)) in facts.iter().zip(tentative).enumerate() {
        let link = match t {
            Tentative::Override(None) => PsaLink::NotBilled,
            Tentative::Override(Some(r)) => {
                let name = by_ref
                    .get(&r)
                    .and_then(|&i| view.customers.get(i))
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| format!("{r} (not found in the PSA)"));
                PsaLink::Mapped {
                    record: r,
                    name,
                    reason: MatchReason::Manual,
                }
            }
            Tentative::Auto(i, reason) if claims.get(&i).is_some_and(|v| v.len() == 1) => {
                let p = &view.customers[i];
                PsaLink::Mapped {
                    record: p.r.clone(),
                    name: p.name.clone(),
                    reason,
                }
            }
            Tentative::Auto(i, reason) => {
                let others: Vec<String> = claims
                    .get(&i)
                    .map(|v| {
                        v.iter()
                            .filter(|&&o| o != ci)
                            .filter_map(|&o| facts.get(o).map(|x| x.name.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                let why = format!(
                    "{}, but it is also claimed by {}",
                    reason.describe(),
                    if others.is_empty() {
                        "a manual link".to_string()
                    } else {
                        others.join(", ")
                    }
                );
                PsaLink::Unmapped {
                    suggestions: suggest(f, view, &n_keys, &by_pair, &by_word, &[(i, 85, why)]),
                }
            }
            Tentative::Ambiguous(v, what) => {
                let names: Vec<&str> = v
                    .iter()
                    .filter_map(|&i| view.customers.get(i).map(|p| p.name.as_str()))
                    .collect();
                let seeds: Vec<(usize, u32, String)> = v
                    .iter()
                    .map(|&i| {
                        let others: Vec<&str> = names
                            .iter()
                            .copied()
                            .filter(|n| Some(*n) != view.customers.get(i).map(|p| p.name.as_str()))
                            .collect();
                        let why = if what == "name" {
                            format!(
                                "its name matches exactly once normalised, but so does {}",
                                others.join(", ")
                            )
                        } else {
                            format!(
                                "its website is one of the customer's domains, but so is that of {}",
                                others.join(", ")
                            )
                        };
                        (i, if what == "name" { 90 } else { 80 }, why)
                    })
                    .collect();
                PsaLink::Unmapped {
                    suggestions: suggest(f, view, &n_keys, &by_pair, &by_word, &seeds),
                }
            }
            Tentative::None => PsaLink::Unmapped {
                suggestions: suggest(f, view, &n_keys, &by_pair, &by_word, &[]),
            },
        };
        out.push(link);
    }
    out
}

/// Ranked PSA records a customer may be, with reasons.
fn suggest(
    f: &CustomerFacts,
    view: &PsaView,
    n_keys: &[usize],
    by_pair: &HashMap<(ProductKey, Decimal), Vec<usize>>,
    by_word: &HashMap<String, Vec<usize>>,
    seeds: &[(usize, u32, String)],
) -> Vec<Suggestion<PsaCustomerRef>> {
    let mut score: BTreeMap<usize, (u32, Vec<String>)> = BTreeMap::new();
    for (i, s, why) in seeds {
        let e = score.entry(*i).or_default();
        e.0 += s;
        e.1.push(why.clone());
    }
    // Billing: the same stock codes with the same quantities.
    let mut same: BTreeMap<usize, usize> = BTreeMap::new();
    for (k, q) in &f.billed {
        if let Some(v) = by_pair.get(&(k.clone(), q.normalize())) {
            for &i in v {
                *same.entry(i).or_default() += 1;
            }
        }
    }
    let n_c = f.billed.len();
    for (i, k) in same {
        if view.customers.get(i).is_none() {
            continue;
        }
        let n_p = n_keys.get(i).copied().unwrap_or(k).max(k);
        let denom = n_c.max(n_p).max(1);
        let e = score.entry(i).or_default();
        e.0 += u32::try_from(60 * k / denom).unwrap_or(60);
        e.1.push(if k == n_c && k == n_p {
            format!(
                "it is billed for exactly the customer's {k} Dicker Data stock code(s), with the same quantities"
            )
        } else {
            format!(
                "it is billed for {k} of the customer's {n_c} Dicker Data stock code(s) with the same quantities"
            )
        });
    }
    // Shared distinctive words.
    let mut words: BTreeSet<String> = distinctive_words(&f.name).into_iter().collect();
    for n in &f.other_names {
        words.extend(distinctive_words(n));
    }
    let mut shared: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for w in &words {
        if let Some(v) = by_word.get(w) {
            for &i in v {
                shared.entry(i).or_default().push(w.clone());
            }
        }
    }
    for (i, ws) in shared {
        let e = score.entry(i).or_default();
        e.0 += (15 * u32::try_from(ws.len()).unwrap_or(3)).min(45);
        e.1.push(format!(
            "its name shares the word{} {}",
            if ws.len() > 1 { "s" } else { "" },
            ws.iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut out: Vec<Suggestion<PsaCustomerRef>> = score
        .into_iter()
        .filter(|(_, (s, _))| *s > 0)
        .filter_map(|(i, (s, reasons))| {
            view.customers.get(i).map(|p| Suggestion {
                target: p.r.clone(),
                label: p.name.clone(),
                score: s,
                reasons,
            })
        })
        .collect();
    out.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.label.cmp(&b.label)));
    out.truncate(MAX_SUGGESTIONS);
    out
}

// ---------------------------------------------------------------------------------------------
// Products
// ---------------------------------------------------------------------------------------------

/// A stock code in use: its product name and whether Dicker Data bills it.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyInUse {
    pub product_name: String,
    pub billed: bool,
}

/// A line the PSA does not bill under a mapped product although Dicker Data bills it, for
/// product suggestions: (customer PSA record, customer name, line key, Dicker Data quantity).
pub(crate) type ShortLine = (PsaCustomerRef, String, ProductKey, Decimal);

/// The product half of the mapping view.
pub(crate) fn map_products(
    view: Option<&PsaView>,
    keys: &BTreeMap<ProductKey, KeyInUse>,
    short_lines: &[ShortLine],
) -> (Vec<ProductLink>, usize, Vec<UnmappedPsaProduct>) {
    let mut links = Vec::with_capacity(keys.len());
    let mut without = 0usize;
    for (k, info) in keys {
        let psa_products: Vec<MappedPsaProduct> = view
            .map(|v| {
                v.products
                    .iter()
                    .filter(|p| p.key.as_ref() == Some(k))
                    .map(|p| MappedPsaProduct {
                        product: p.r.clone(),
                        name: p.name.clone(),
                        via: match &p.via {
                            Some(ProductVia::Identifier(s)) => s.clone(),
                            Some(ProductVia::Override) => "override".to_string(),
                            None => String::new(),
                        },
                    })
                    .collect()
            })
            .unwrap_or_default();
        if view.is_some() && info.billed && psa_products.is_empty() {
            without += 1;
        }
        links.push(ProductLink {
            stock_code: k.stock_code(),
            product_id: k.product_id.clone(),
            term: k.term,
            billing: k.billing,
            product_name: info.product_name.clone(),
            billed_by_distributor: info.billed,
            psa_products,
        });
    }
    let Some(view) = view else {
        return (links, without, Vec::new());
    };
    // PSA products that charge someone but carry no stock code.
    let mut stats: BTreeMap<&PsaProductRef, (usize, BTreeSet<&PsaCustomerRef>)> = BTreeMap::new();
    for c in view.charges.iter().filter(|c| c.key.is_none()) {
        let e = stats.entry(&c.product).or_default();
        e.0 += 1;
        e.1.insert(&c.customer);
    }
    let mut unmapped = Vec::new();
    for (r, (n, custs)) in stats {
        let p = view.products.iter().find(|p| &p.r == r);
        let name = p
            .map(|p| p.name.clone())
            .or_else(|| {
                view.charges
                    .iter()
                    .find(|c| &c.product == r)
                    .map(|c| c.product_name.clone())
            })
            .unwrap_or_default();
        let mut score: BTreeMap<&ProductKey, (u32, Vec<String>)> = BTreeMap::new();
        if let Some(hint) = p.and_then(|p| p.product_hint.as_deref()) {
            for k in keys.keys().filter(|k| k.product_id == hint) {
                let e = score.entry(k).or_default();
                e.0 += 60;
                e.1.push(format!("its manufacturer part number is {hint}"));
            }
        }
        for c in view
            .charges
            .iter()
            .filter(|c| &c.product == r && c.key.is_none())
        {
            for (_, cname, k, dd) in short_lines.iter().filter(|s| s.0 == c.customer) {
                if *dd == c.qty {
                    let e = score.entry(k).or_default();
                    e.0 += 40;
                    e.1.push(format!(
                        "it bills {cname} {} seats, the Dicker Data quantity of a line the PSA bills under no mapped product",
                        super::model::display_quantity(c.qty)
                    ));
                }
            }
        }
        let pw: BTreeSet<String> = distinctive_words(&name).into_iter().collect();
        for (k, info) in keys {
            let shared: Vec<String> = distinctive_words(&info.product_name)
                .into_iter()
                .filter(|w| pw.contains(w))
                .collect();
            if shared.len() >= 2 {
                let e = score.entry(k).or_default();
                e.0 += (5 * u32::try_from(shared.len()).unwrap_or(4)).min(20);
                e.1.push(format!("its name shares '{}'", shared.join(" ")));
            }
        }
        let mut suggestions: Vec<Suggestion<String>> = score
            .into_iter()
            .filter_map(|(k, (s, reasons))| {
                let code = k.stock_code()?;
                let label = format!(
                    "{code} {}",
                    keys.get(k).map(|i| i.product_name.as_str()).unwrap_or("")
                );
                Some(Suggestion {
                    target: code,
                    label: label.trim().to_string(),
                    score: s,
                    reasons,
                })
            })
            .collect();
        suggestions.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.label.cmp(&b.label)));
        suggestions.truncate(MAX_SUGGESTIONS);
        unmapped.push(UnmappedPsaProduct {
            product: r.clone(),
            name,
            problem: p.and_then(|p| p.problem.clone()),
            charges: n,
            customers: custs.len(),
            suggestions,
        });
    }
    (links, without, unmapped)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{Duration, TimeZone, Utc};
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::model::{Options, Status};
    use crate::engine::fetch::{ConnectWiseSnapshot, CustomerFetch, PsaSnapshot, Snapshot};

    const T1: &str = "b44bb1fb-c595-45b0-9e09-d657365580bf";
    const BP_P1Y: &str = "P1Y:CFQ7TTC0LCHC:0002:1:";

    fn de<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    /// Redgum Wealth: 7 seats of Business Premium at Microsoft and Dicker Data; ConnectWise
    /// bills "City Wealth" 7 seats under the mapped catalog item 731 and 3 seats of an add-on
    /// under the unmapped legacy item 747. Nothing matches by name or domain.
    fn snapshot() -> Snapshot {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        let sub = |id: &str, offer: &str, qty: u32| {
            json!({"id": id, "offerId": format!("{offer}:CFQ7TTC0K5DJ"),
                   "offerName": "Microsoft 365 Business Premium", "quantity": qty, "status": "active",
                   "billingCycle": "monthly", "termDuration": "P1Y",
                   "creationDate": (now - Duration::days(400)).to_rfc3339(),
                   "effectiveStartDate": (now - Duration::days(35)).to_rfc3339(),
                   "commitmentEndDate": (now + Duration::days(330)).to_rfc3339()})
        };
        let customer = CustomerFetch {
            customer: de(json!({"id": T1, "companyProfile": {"tenantId": T1,
                "companyName": "Redgum Wealth Pty Ltd", "domain": "redgum.onmicrosoft.com"}})),
            subscriptions: Ok(vec![
                de(sub("s1", "CFQ7TTC0LCHC:0002", 7)),
                de(sub("s2", "CFQ7TTC0LDPB:0001", 3)),
            ]),
            graph: Ok(crate::engine::fetch::GraphTenant {
                skus: vec![],
                subscriptions: vec![],
            }),
        };
        let dd = |sub: &str, code: &str, qty: u32| {
            de(
                json!({"TenantId": T1, "SubscriptionReference": format!("R-{sub}"),
                      "CompanyName": "REDGUM WEALTH PTY LTD", "StockCode": code, "SubscriptionId": sub,
                      "Status": "ACTIVE", "BillingFrequency": "Monthly", "ConfirmedQuantity": qty}),
            )
        };
        let addition = |id: u64, item: u64, qty: i64| {
            de(
                json!({"id": id, "product": {"id": item}, "quantity": qty, "unitPrice": 32.90,
                      "billCustomer": "Billable", "agreementId": 1300}),
            )
        };
        let cw = ConnectWiseSnapshot {
            companies: vec![
                de(
                    json!({"id": 300, "identifier": "CITYW", "name": "City Wealth",
                          "types": [{"id": 1, "name": "Client"}]}),
                ),
                de(
                    json!({"id": 301, "identifier": "HARB", "name": "Harbour Wealth Advisers",
                          "types": [{"id": 1, "name": "Client"}]}),
                ),
            ],
            agreements: vec![de(
                json!({"id": 1300, "name": "Microsoft CSP", "company": {"id": 300},
                       "agreementStatus": "Active", "billingCycle": {"id": 1, "name": "Monthly"}}),
            )],
            additions: BTreeMap::from([(1300, vec![addition(1, 731, 7), addition(2, 747, 3)])]),
            catalog: vec![
                de(
                    json!({"id": 731, "identifier": "M365BP-P1Y", "price": 32.90,
                          "description": "Microsoft 365 Business Premium (NCE, 1 year)",
                          "vendorSku": BP_P1Y}),
                ),
                de(
                    json!({"id": 747, "identifier": "LEGACY-ADDON", "price": 5.00,
                          "description": "Legacy add-on licences"}),
                ),
            ],
        };
        Snapshot {
            started: now - Duration::seconds(5),
            finished: now,
            customers: vec![customer],
            gdap: Ok(vec![]),
            dicker_data: Ok(vec![
                dd("s1", BP_P1Y, 7),
                dd("s2", "P1Y:CFQ7TTC0LDPB:0001:1:", 3),
            ]),
            psa: Some(Ok(PsaSnapshot::ConnectWise(cw))),
        }
    }

    fn run(snap: &Snapshot, overrides: &Overrides) -> crate::domain::Reconciliation {
        crate::domain::reconcile(
            snap,
            &Options {
                overrides: overrides.clone(),
                ..Options::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn accepting_suggestions_maps_the_customer_and_product_on_the_next_reconcile() {
        let snap = snapshot();
        let mut overrides = Overrides::default();
        let r = run(&snap, &overrides);
        assert_eq!(r.summary.unmapped_customers, 1);
        assert!(r.lines.iter().all(|l| l.psa_qty.is_none()));
        assert!(r.lines.iter().all(|l| l.has(Status::UnmappedCustomer)));
        // Every candidate record is there for the manual picker, by name.
        let names: Vec<&str> = r
            .mapping
            .psa_records
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["City Wealth", "Harbour Wealth Advisers"]);

        // Accept the top suggestion (City Wealth: same stock code, same quantity).
        let c = r.mapping.customer(&T1.to_uppercase()).unwrap();
        let PsaLink::Unmapped { suggestions } = &c.psa else {
            panic!("not unmapped: {:?}", c.psa);
        };
        assert_eq!(suggestions[0].label, "City Wealth");
        assert!(overrides.set_customer(&c.tenant_id, Some(suggestions[0].target.clone())));
        // Accepting again (or with another case) changes nothing and never duplicates.
        assert!(!overrides.set_customer(&T1.to_uppercase(), Some(suggestions[0].target.clone())));
        assert_eq!(overrides.customers.len(), 1);

        let r = run(&snap, &overrides);
        assert_eq!(r.summary.unmapped_customers, 0);
        assert!(matches!(
            r.mapping.customer(T1).unwrap().psa,
            PsaLink::Mapped {
                reason: MatchReason::Manual,
                ..
            }
        ));
        let bp = r
            .lines
            .iter()
            .find(|l| l.stock_code.as_deref() == Some(BP_P1Y))
            .unwrap();
        assert_eq!(bp.psa_qty, Some(Decimal::from(7)));
        assert_eq!(bp.statuses, vec![Status::InLine]);
        // The add-on is billed under a product without a stock code, and its stock code has
        // no PSA product.
        assert_eq!(r.mapping.unmapped_psa_products.len(), 1);
        assert_eq!(r.mapping.stock_codes_without_psa_product, 1);
        assert_eq!(r.summary.unmapped_products, 2);
        let u = &r.mapping.unmapped_psa_products[0];
        assert_eq!(u.product, PsaProductRef::ConnectwiseCatalogItem(747));
        let code = u.suggestions[0].target.clone();
        assert_eq!(code, "P1Y:CFQ7TTC0LDPB:0001:1:");
        assert!(overrides.set_product(&u.product, &code.to_lowercase()));
        assert!(!overrides.set_product(&u.product, &code));
        assert_eq!(overrides.products[0].stock_code, code, "stored canonical");

        let r = run(&snap, &overrides);
        assert_eq!(r.summary.unmapped_products, 0);
        let addon = r
            .lines
            .iter()
            .find(|l| l.stock_code.as_deref() == Some(code.as_str()))
            .unwrap();
        assert_eq!(addon.psa_qty, Some(Decimal::from(3)));
        assert!(r.lines.iter().all(|l| l.is_in_line()), "{:#?}", r.lines);

        // Another PSA record replaces the decision; removing it goes back to automatic.
        assert!(overrides.set_customer(T1, Some(PsaCustomerRef::ConnectwiseCompany(301))));
        assert_eq!(overrides.customers.len(), 1);
        assert_eq!(
            overrides.customer(T1).unwrap().psa,
            Some(PsaCustomerRef::ConnectwiseCompany(301))
        );
        assert!(overrides.set_customer(T1, None));
        assert_eq!(overrides.customers.len(), 1);
        assert!(overrides.remove_customer(&T1.to_uppercase()));
        assert!(!overrides.remove_customer(T1));
        assert!(overrides.remove_product(&PsaProductRef::ConnectwiseCatalogItem(747)));
        assert_eq!(run(&snap, &overrides).summary.unmapped_customers, 1);
    }

    #[test]
    fn product_decisions_compare_as_the_reconciliation_reads_them() {
        let mut o = Overrides::default();
        assert!(!o.set_product(&PsaProductRef::XeroItemCode("X".into()), "LEGACY-M365"));
        assert!(
            o.products.is_empty(),
            "not a licence stock code: nothing stored"
        );
        assert!(o.set_product(&PsaProductRef::XeroItemCode("m365bp".into()), BP_P1Y));
        assert!(o.set_product(
            &PsaProductRef::XeroItemCode(" M365BP ".into()),
            "P1M:CFQ7TTC0LCHC:0002:1:"
        ));
        assert_eq!(o.products.len(), 1);
        assert!(
            o.product(&PsaProductRef::XeroItemCode("M365BP".into()))
                .is_some()
        );
        assert!(o.set_product(
            &PsaProductRef::XeroDescription("Microsoft 365".into()),
            BP_P1Y
        ));
        assert!(!o.set_product(
            &PsaProductRef::XeroDescription("microsoft 365 ".into()),
            BP_P1Y
        ));
        assert_eq!(o.products.len(), 2);
    }
}
