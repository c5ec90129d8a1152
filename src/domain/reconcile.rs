//! The reconciliation: from one [`Snapshot`] to lines, statuses, money and explanations.
//!
//! Pure: no I/O, no clock (the moment windows are measured from comes in [`Options::now`], by
//! default the end of the fetch). Every join is through an index (tenant id, subscription id,
//! stock code), so the work grows with the data, never with its square.
//!
//! The rules, in the words of docs/reconcile.md:
//! - a line is (customer, `PRODUCT:SKU`, term, billing); a Microsoft subscription gives the key
//!   from its offer id, term and billing cycle; a Dicker Data line billing a Microsoft
//!   subscription joins that subscription's line, and one billing nothing at Microsoft gives
//!   the key from its stock code; a PSA charge joins the line of its stock code;
//! - Dicker Data and Microsoft are compared per subscription (the Dicker Data line's
//!   `SubscriptionId`), so a subscription Microsoft has suspended is `billed_not_at_microsoft`,
//!   not also a quantity mismatch;
//! - assigned licences are per SKU: compared with the SKU's active purchased seats over all
//!   its lines, shown on each of them;
//! - the PSA is compared with Dicker Data (the source of truth for what the customer pays).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Months, Utc};
use rust_decimal::Decimal;

use super::mapping::{self, CustomerFacts, CustomerLink, KeyInUse, Mapping, PsaLink};
use super::model::{
    Billing, Explanation, Field, ImpactPart, Line, Options, PriceBook, ProductKey, PsaCustomerRef,
    PsaProductRef, Reconciliation, SourceRecord, Status, Suggestion, Summary, Term, display_money,
    display_quantity, product_id, round_money,
};
use super::names::distinctive_words;
use super::psa::{PsaCharge, PsaView};
use crate::api::dickerdata as dd;
use crate::api::error::{Api, ApiError};
use crate::api::graph::{CompanySubscription, SubscribedSku};
use crate::api::partnercenter as pc;
use crate::engine::fetch::{CustomerFetch, Snapshot};

/// The NCE cancellation window: 7 days from purchase or renewal (DESIGN.md §4).
pub const CANCEL_WINDOW_HOURS: i64 = 168;

/// Reconcile a fetched snapshot. Fails only when a whole source needed for every line could
/// not be read (Dicker Data, or the PSA when one was fetched): a partial answer there would
/// report every line as a mismatch. A customer that could not be read is left out and listed
/// in [`Summary::customers_not_read`].
pub fn reconcile(snap: &Snapshot, opts: &Options) -> Result<Reconciliation, ApiError> {
    reconcile_scoped(snap, &[], true, opts)
}

/// [`reconcile`] of a snapshot whose Microsoft side may be incomplete (docs/reconcile.md "While
/// the fetch runs"): `pending` are customers Partner Center listed whose data has not arrived;
/// with `listing_complete` false, a tenant only Dicker Data knows may still be one. Those
/// customers make no line — their Dicker Data lines and PSA charges wait for their data — but
/// take part in the customer mapping, so a link is decided exactly as it will be at the end.
/// With no pending customer and a complete listing this is [`reconcile`].
pub(crate) fn reconcile_scoped(
    snap: &Snapshot,
    pending: &[pc::Customer],
    listing_complete: bool,
    opts: &Options,
) -> Result<Reconciliation, ApiError> {
    let distributor = snap.dicker_data.as_ref().map_err(Clone::clone)?;
    let psa_snap = match &snap.psa {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return Err(e.clone()),
    };
    let now = opts.now.unwrap_or(snap.finished);
    let view = psa_snap.map(|p| PsaView::read(p, &opts.overrides, now));
    let mut r = Run::new(snap, distributor, view.as_ref(), opts, now);
    r.add_pending(pending, listing_complete);
    r.microsoft_and_distributor();
    let links = r.map_customers();
    r.psa_charges(&links);
    Ok(r.finish(links))
}

/// Every licence stock code a snapshot involves: Dicker Data's lines and those the Microsoft
/// subscriptions would be billed under — what to ask Dicker Data's price list for.
pub fn stock_codes(snap: &Snapshot) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(lines) = &snap.dicker_data {
        for l in lines {
            if let Some((k, None)) = dd_key(l)
                && let Some(code) = k.stock_code()
            {
                out.insert(code);
            }
        }
    }
    for c in &snap.customers {
        for s in c.subscriptions.iter().flatten() {
            if let (k, None) = ms_key(s)
                && let Some(code) = k.stock_code()
            {
                out.insert(code);
            }
        }
    }
    out
}

/// Graph data of one tenant, indexed.
struct GraphIdx<'a> {
    /// Commerce (Partner Center) subscription id → Graph sku id (lower case).
    sku_by_sub: HashMap<String, String>,
    dir_by_sub: HashMap<String, &'a CompanySubscription>,
    skus: HashMap<String, &'a SubscribedSku>,
}

struct Cust<'a> {
    tenant_id: String,
    name: String,
    at_microsoft: bool,
    fetch: Option<&'a CustomerFetch>,
    /// Why the Partner Center subscriptions could not be read.
    not_read: Option<String>,
    graph: Option<GraphIdx<'a>>,
    graph_problem: Option<String>,
    dd_name: Option<String>,
    domains: Vec<String>,
    /// Waiting for its Microsoft data (a partial reconciliation): makes no line yet.
    pending: bool,
    /// Active purchased seats per Graph sku.
    purchased_by_sku: HashMap<String, i64>,
    /// `PRODUCT:SKU` → Graph sku, from any linked subscription of the tenant.
    sku_by_product: HashMap<String, String>,
}

enum Finding {
    Mismatch {
        sub: String,
        dd: i64,
        ms: i64,
    },
    Missing {
        sub: String,
        ms: i64,
        why: String,
    },
    NotAtMicrosoft {
        sub: String,
        dd: i64,
        ms_status: Option<String>,
    },
}

#[derive(Default)]
struct Acc<'a> {
    ms: Vec<&'a pc::Subscription>,
    dd: Vec<&'a dd::Subscription>,
    findings: Vec<Finding>,
    charges: Vec<&'a PsaCharge>,
    /// Why the product could not be identified, when it could not.
    unknown_product: Option<String>,
    notes: Vec<String>,
}

struct Run<'a> {
    snap: &'a Snapshot,
    distributor: &'a [dd::Subscription],
    view: Option<&'a PsaView>,
    prices: &'a PriceBook,
    overrides: &'a super::model::Overrides,
    now: DateTime<Utc>,
    custs: Vec<Cust<'a>>,
    by_tenant: HashMap<String, usize>,
    acc: BTreeMap<(usize, ProductKey), Acc<'a>>,
    skipped_azure: usize,
    /// PSA charges without a stock code, per customer.
    unmapped_charges: HashMap<usize, Vec<&'a PsaCharge>>,
    unclaimed: BTreeMap<PsaCustomerRef, usize>,
    /// Whether every Partner Center customer is known (else a tenant only Dicker Data knows
    /// is pending: it may still be listed).
    listing_complete: bool,
}

fn lower(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

fn is_active_dd(l: &dd::Subscription) -> bool {
    l.status
        .as_deref()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("ACTIVE"))
}

fn dd_qty(l: &dd::Subscription) -> i64 {
    if is_active_dd(l) {
        i64::from(l.confirmed_quantity.unwrap_or(0))
    } else {
        0
    }
}

fn dd_ref(l: &dd::Subscription) -> String {
    l.subscription_reference
        .clone()
        .or_else(|| l.subscription_id.clone())
        .unwrap_or_else(|| "(no reference)".into())
}

/// The line key of a Partner Center subscription, and why its product is unknown if it is.
fn ms_key(s: &pc::Subscription) -> (ProductKey, Option<String>) {
    let term = Term::parse(s.term_duration.as_deref().unwrap_or(""));
    let billing = Billing::from_partner_center(s.billing_cycle.as_deref());
    let offer = s.offer_id.as_deref().unwrap_or("").trim();
    let parts: Vec<&str> = offer.split(':').collect();
    let ident = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric());
    if parts.len() >= 2 && ident(parts[0]) && ident(parts[1]) {
        (
            ProductKey {
                product_id: product_id(parts[0], parts[1]),
                term,
                billing,
            },
            None,
        )
    } else {
        let id = if offer.is_empty() {
            s.id.as_str()
        } else {
            offer
        };
        (
            ProductKey {
                product_id: id.to_ascii_uppercase(),
                term,
                billing,
            },
            Some(format!(
                "Partner Center offer id `{offer}` is not in the product:sku:availability form"
            )),
        )
    }
}

/// The line key of a Dicker Data line from its stock code; `None` for Azure usage codes.
fn dd_key(l: &dd::Subscription) -> Option<(ProductKey, Option<String>)> {
    let code = l.stock_code.as_deref().unwrap_or("").trim();
    if code.len() >= 3 && code[..3].eq_ignore_ascii_case("DZH") {
        return None;
    }
    if let Some(k) = ProductKey::from_stock_code(code) {
        return Some((k, None));
    }
    let product = l
        .manufacturer_stock_code
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(code);
    let billing = match l.billing_frequency.as_deref().map(lower).as_deref() {
        Some("annual") | Some("annually") | Some("yearly") => Billing::Annual,
        _ => Billing::Monthly,
    };
    Some((
        ProductKey {
            product_id: product.to_ascii_uppercase(),
            term: Term::Unknown,
            billing,
        },
        Some(format!(
            "Dicker Data stock code `{code}` is not in the term:product:sku:plan: form"
        )),
    ))
}

/// Start of the subscription's current term: the latest of its purchase, its effective start
/// and its commitment end minus one term (the last renewal).
fn term_start(s: &pc::Subscription) -> Option<DateTime<Utc>> {
    let months = Term::parse(s.term_duration.as_deref().unwrap_or("")).months();
    let renewal = if months > 0 {
        s.commitment_end_date
            .and_then(|e| e.checked_sub_months(Months::new(months)))
    } else {
        None
    };
    [s.creation_date, s.effective_start_date, renewal]
        .into_iter()
        .flatten()
        .max()
}

/// Whole hours left in the subscription's purchase/renewal window, if it is open.
fn window_left(s: &pc::Subscription, now: DateTime<Utc>) -> Option<(i64, DateTime<Utc>)> {
    let t = term_start(s)?;
    let window = Duration::hours(CANCEL_WINDOW_HOURS);
    if t <= now && now - t < window {
        Some(((window - (now - t)).num_hours(), t))
    } else {
        None
    }
}

/// Whether Partner Center offers `Cancel` on the subscription (`actions`, §3.3).
fn offers_cancel(s: &pc::Subscription) -> bool {
    s.extra
        .get("actions")
        .and_then(|a| a.as_array())
        .is_some_and(|a| {
            a.iter()
                .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case("cancel")))
        })
}

fn sub_name(s: &pc::Subscription) -> Option<String> {
    s.offer_name
        .clone()
        .or_else(|| s.friendly_name.clone())
        .filter(|n| !n.trim().is_empty())
}

impl<'a> Run<'a> {
    fn new(
        snap: &'a Snapshot,
        distributor: &'a [dd::Subscription],
        view: Option<&'a PsaView>,
        opts: &'a Options,
        now: DateTime<Utc>,
    ) -> Self {
        let mut custs = Vec::with_capacity(snap.customers.len());
        let mut by_tenant = HashMap::with_capacity(snap.customers.len());
        for f in &snap.customers {
            let key = lower(&f.customer.id);
            if by_tenant.contains_key(&key) {
                continue;
            }
            let (graph, graph_problem) = match &f.graph {
                Ok(g) => {
                    let mut sku_by_sub = HashMap::new();
                    let mut dir_by_sub = HashMap::new();
                    for d in &g.subscriptions {
                        if let (Some(c), Some(sku)) = (&d.commerce_subscription_id, &d.sku_id) {
                            sku_by_sub.insert(lower(c), lower(sku));
                            dir_by_sub.insert(lower(c), d);
                        }
                    }
                    let skus = g.skus.iter().map(|s| (lower(&s.sku_id), s)).collect();
                    (
                        Some(GraphIdx {
                            sku_by_sub,
                            dir_by_sub,
                            skus,
                        }),
                        None,
                    )
                }
                Err(e) => (None, Some(e.to_string())),
            };
            let mut domains = f.customer.custom_domains.clone();
            if let Some(d) = f.customer.domain() {
                domains.push(d.to_string());
            }
            by_tenant.insert(key, custs.len());
            custs.push(Cust {
                tenant_id: f.customer.id.clone(),
                name: f.customer.name().to_string(),
                at_microsoft: true,
                fetch: Some(f),
                not_read: f.subscriptions.as_ref().err().map(ToString::to_string),
                graph,
                graph_problem,
                dd_name: None,
                domains,
                pending: false,
                purchased_by_sku: HashMap::new(),
                sku_by_product: HashMap::new(),
            });
        }
        Run {
            snap,
            distributor,
            view,
            prices: &opts.prices,
            overrides: &opts.overrides,
            now,
            custs,
            by_tenant,
            acc: BTreeMap::new(),
            skipped_azure: 0,
            unmapped_charges: HashMap::new(),
            unclaimed: BTreeMap::new(),
            listing_complete: true,
        }
    }

    /// Customers listed whose data is still to come (a partial reconciliation).
    fn add_pending(&mut self, pending: &[pc::Customer], listing_complete: bool) {
        self.listing_complete = listing_complete;
        for c in pending {
            let key = lower(&c.id);
            if self.by_tenant.contains_key(&key) {
                continue;
            }
            let mut domains = c.custom_domains.clone();
            if let Some(d) = c.domain() {
                domains.push(d.to_string());
            }
            self.by_tenant.insert(key, self.custs.len());
            self.custs.push(Cust {
                tenant_id: c.id.clone(),
                name: c.name().to_string(),
                at_microsoft: true,
                fetch: None,
                not_read: None,
                graph: None,
                graph_problem: None,
                dd_name: None,
                domains,
                pending: true,
                purchased_by_sku: HashMap::new(),
                sku_by_product: HashMap::new(),
            });
        }
    }

    /// The customer of a Dicker Data tenant, added when Partner Center does not list it.
    fn customer_for_dd(&mut self, l: &dd::Subscription) -> usize {
        let tenant = l.tenant_id.clone().unwrap_or_default();
        let key = lower(&tenant);
        if let Some(&i) = self.by_tenant.get(&key) {
            if self.custs[i].dd_name.is_none() {
                self.custs[i].dd_name = l.company_name.clone();
            }
            return i;
        }
        let name = l
            .company_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| tenant.clone());
        self.by_tenant.insert(key, self.custs.len());
        self.custs.push(Cust {
            tenant_id: tenant,
            name,
            at_microsoft: false,
            fetch: None,
            not_read: None,
            graph: None,
            graph_problem: None,
            dd_name: l.company_name.clone(),
            domains: l.tenant_description.iter().cloned().collect(),
            pending: !self.listing_complete,
            purchased_by_sku: HashMap::new(),
            sku_by_product: HashMap::new(),
        });
        self.custs.len() - 1
    }

    /// Microsoft subscriptions and Dicker Data lines, compared per subscription.
    fn microsoft_and_distributor(&mut self) {
        let distributor = self.distributor;
        let mut dd_by_sub: HashMap<String, Vec<usize>> = HashMap::new();
        let mut dd_cust: Vec<usize> = Vec::with_capacity(distributor.len());
        for (i, l) in distributor.iter().enumerate() {
            dd_cust.push(self.customer_for_dd(l));
            if let Some(s) = l
                .subscription_id
                .as_deref()
                .filter(|s| !s.trim().is_empty())
            {
                dd_by_sub.entry(lower(s)).or_default().push(i);
            }
        }
        let mut linked: Vec<bool> = vec![false; distributor.len()];
        let mut deferred_ms: Vec<(usize, ProductKey, &'a pc::Subscription)> = Vec::new();
        for ci in 0..self.custs.len() {
            let Some(fetch) = self.custs[ci].fetch else {
                continue;
            };
            let Ok(subs) = &fetch.subscriptions else {
                continue;
            };
            for s in subs {
                let (key, unknown) = ms_key(s);
                let q = i64::from(s.quantity);
                // SKU facts for assigned.
                if let Some(g) = &self.custs[ci].graph
                    && let Some(sku) = g.sku_by_sub.get(&lower(&s.id)).cloned()
                {
                    let c = &mut self.custs[ci];
                    if s.is_active() {
                        *c.purchased_by_sku.entry(sku.clone()).or_default() += q;
                    }
                    c.sku_by_product
                        .entry(key.product_id.clone())
                        .or_insert(sku);
                }
                let idx: &[usize] = dd_by_sub.get(&lower(&s.id)).map_or(&[], Vec::as_slice);
                let mut lines: Vec<&'a dd::Subscription> = Vec::with_capacity(idx.len());
                for &i in idx {
                    if let (Some(l), Some(flag)) = (distributor.get(i), linked.get_mut(i)) {
                        *flag = true;
                        lines.push(l);
                    }
                }
                let billed: i64 = lines.iter().map(|l| dd_qty(l)).sum();
                let any_active = lines.iter().any(|l| is_active_dd(l));
                if !s.is_active() && !any_active {
                    deferred_ms.push((ci, key, s));
                    continue;
                }
                let acc = self.acc.entry((ci, key.clone())).or_default();
                if unknown.is_some() {
                    acc.unknown_product = unknown;
                }
                acc.ms.push(s);
                for l in &lines {
                    acc.dd.push(l);
                    if let Some((k, _)) = dd_key(l)
                        && k != key
                    {
                        acc.notes.push(format!(
                            "Dicker Data line {} has stock code {} while Microsoft's subscription is {} {} {}",
                            dd_ref(l),
                            l.stock_code.as_deref().unwrap_or(""),
                            key.product_id,
                            key.term.as_str(),
                            key.billing.as_str()
                        ));
                    }
                }
                if s.is_active() {
                    if !any_active {
                        let why = if lines.is_empty() {
                            "Dicker Data has no line for it".to_string()
                        } else {
                            format!(
                                "Dicker Data's line{} {} {}",
                                if lines.len() > 1 { "s" } else { "" },
                                lines
                                    .iter()
                                    .map(|l| dd_ref(l))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                lines
                                    .iter()
                                    .map(|l| l.status.clone().unwrap_or_default())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        };
                        acc.findings.push(Finding::Missing {
                            sub: s.id.clone(),
                            ms: q,
                            why,
                        });
                    } else if billed != q {
                        acc.findings.push(Finding::Mismatch {
                            sub: s.id.clone(),
                            dd: billed,
                            ms: q,
                        });
                    }
                } else if billed > 0 {
                    acc.findings.push(Finding::NotAtMicrosoft {
                        sub: s.id.clone(),
                        dd: billed,
                        ms_status: Some(s.status.clone().unwrap_or_else(|| "unknown".into())),
                    });
                }
            }
        }
        // Dicker Data lines billing no subscription Microsoft lists for a customer we read.
        let mut deferred_dd: Vec<(usize, ProductKey, &'a dd::Subscription)> = Vec::new();
        for ((l, &ci), &was_linked) in distributor.iter().zip(&dd_cust).zip(&linked) {
            if was_linked {
                continue;
            }
            // Not read, or (while the fetch runs) not in yet: its lines wait for its data.
            if self.custs[ci].not_read.is_some() || self.custs[ci].pending {
                continue;
            }
            let Some((key, unknown)) = dd_key(l) else {
                self.skipped_azure += 1;
                continue;
            };
            if !is_active_dd(l) {
                deferred_dd.push((ci, key, l));
                continue;
            }
            let acc = self.acc.entry((ci, key)).or_default();
            if unknown.is_some() {
                acc.unknown_product = unknown;
            }
            acc.dd.push(l);
            let q = dd_qty(l);
            if q > 0 {
                acc.findings.push(Finding::NotAtMicrosoft {
                    sub: l.subscription_id.clone().unwrap_or_default(),
                    dd: q,
                    ms_status: None,
                });
            }
        }
        // Inactive records only join lines that exist for another reason.
        for (ci, key, s) in deferred_ms {
            if let Some(acc) = self.acc.get_mut(&(ci, key)) {
                acc.ms.push(s);
            }
        }
        for (ci, key, l) in deferred_dd {
            if let Some(acc) = self.acc.get_mut(&(ci, key)) {
                acc.dd.push(l);
            }
        }
    }

    fn facts(&self) -> Vec<CustomerFacts> {
        let mut billed: Vec<BTreeMap<ProductKey, Decimal>> =
            vec![BTreeMap::new(); self.custs.len()];
        for l in self.distributor {
            let Some(&ci) = self
                .by_tenant
                .get(&lower(l.tenant_id.as_deref().unwrap_or("")))
            else {
                continue;
            };
            if let Some((k, None)) = dd_key(l) {
                let q = dd_qty(l);
                if q > 0 {
                    *billed[ci].entry(k).or_default() += Decimal::from(q);
                }
            }
        }
        self.custs
            .iter()
            .zip(billed)
            .map(|(c, billed)| CustomerFacts {
                tenant_id: c.tenant_id.clone(),
                name: c.name.clone(),
                other_names: c.dd_name.iter().cloned().collect(),
                domains: c.domains.clone(),
                billed,
            })
            .collect()
    }

    fn map_customers(&self) -> Vec<PsaLink> {
        mapping::map_customers(&self.facts(), self.view, self.overrides)
    }

    /// Attach every PSA charge to its customer's line.
    fn psa_charges(&mut self, links: &[PsaLink]) {
        let Some(view) = self.view else {
            return;
        };
        let by_ref: HashMap<&PsaCustomerRef, usize> = links
            .iter()
            .enumerate()
            .filter(|(ci, _)| self.custs[*ci].not_read.is_none() && !self.custs[*ci].pending)
            .filter_map(|(ci, l)| l.record().map(|r| (r, ci)))
            .collect();
        let mapped_anywhere: BTreeSet<&PsaCustomerRef> =
            links.iter().filter_map(PsaLink::record).collect();
        for c in &view.charges {
            match by_ref.get(&c.customer) {
                Some(&ci) => match &c.key {
                    Some(k) => self.acc.entry((ci, k.clone())).or_default().charges.push(c),
                    None => self.unmapped_charges.entry(ci).or_default().push(c),
                },
                None if !mapped_anywhere.contains(&c.customer) => {
                    *self.unclaimed.entry(c.customer.clone()).or_default() += 1;
                }
                None => {}
            }
        }
    }

    fn unit_cost(&self, key: &ProductKey, charges: &[&PsaCharge]) -> Option<(Decimal, String)> {
        if let Some(code) = key.stock_code()
            && let Some(c) = self.prices.get(&code)
        {
            return Some((
                c,
                format!("Dicker Data price list (PricingRequest) for {code}"),
            ));
        }
        if let Some(c) = charges.iter().find(|c| c.unit_cost.is_some()) {
            return c
                .unit_cost
                .map(|u| (u, format!("{} {}: unit cost", c.source.api, c.source.id)));
        }
        self.view
            .and_then(|v| v.catalog_cost.get(key))
            .map(|k| (k.amount, k.source.clone()))
    }

    fn unit_price(&self, key: &ProductKey, charges: &[&PsaCharge]) -> Option<(Decimal, String)> {
        if let Some(c) = charges.iter().find(|c| c.unit_price.is_some()) {
            return c.unit_price.map(|u| (u, c.price_source.clone()));
        }
        self.view
            .and_then(|v| v.catalog_price.get(key))
            .map(|k| (k.amount, k.source.clone()))
    }

    fn finish(self, links: Vec<PsaLink>) -> Reconciliation {
        let fetched_at = self.snap.finished;
        let explain =
            |field: Field, value: String, how: String, sources: Vec<SourceRecord>| Explanation {
                field,
                value,
                how,
                sources,
                fetched_at,
            };
        let psa_api = self.view.map(|v| v.api);
        let mut lines: Vec<Line> = Vec::with_capacity(self.acc.len());
        let mut sku_money_done: BTreeSet<(usize, String)> = BTreeSet::new();
        let mut short_lines: Vec<mapping::ShortLine> = Vec::new();
        let mut keys_in_use: BTreeMap<ProductKey, KeyInUse> = BTreeMap::new();

        for ((ci, key), acc) in &self.acc {
            let cust = &self.custs[*ci];
            let link = &links[*ci];
            let mut statuses: BTreeSet<Status> = BTreeSet::new();
            let mut impact: Vec<ImpactPart> = Vec::new();
            let mut ex: Vec<Explanation> = Vec::new();
            let mut suggestions: Vec<Suggestion<PsaProductRef>> = Vec::new();

            // --- Microsoft -------------------------------------------------------------------
            let microsoft_qty = (!acc.ms.is_empty()).then(|| {
                acc.ms
                    .iter()
                    .filter(|s| s.is_active())
                    .map(|s| i64::from(s.quantity))
                    .sum::<i64>()
            });
            ex.push(explain(
                Field::MicrosoftQty,
                opt_num(microsoft_qty),
                if acc.ms.is_empty() {
                    "Partner Center lists no subscription of this product and term for the customer.".into()
                } else {
                    "The sum of quantity over the customer's Partner Center subscriptions of this product, term and billing whose status is active.".into()
                },
                acc.ms
                    .iter()
                    .map(|s| SourceRecord {
                        api: Api::PartnerCenter,
                        record: "subscription".into(),
                        id: format!("subscription {} of customer {}", s.id, cust.tenant_id),
                        detail: format!(
                            "quantity {}, status {}, offer {}, term {}, billing {}{}",
                            s.quantity,
                            s.status.as_deref().unwrap_or("?"),
                            s.offer_id.as_deref().unwrap_or("?"),
                            s.term_duration.as_deref().unwrap_or("?"),
                            s.billing_cycle.as_deref().unwrap_or("?"),
                            if s.is_active() { "" } else { " (not counted)" }
                        ),
                    })
                    .collect(),
            ));

            // --- Dicker Data -----------------------------------------------------------------
            let distributor_qty =
                (!acc.dd.is_empty()).then(|| acc.dd.iter().map(|l| dd_qty(l)).sum::<i64>());
            ex.push(explain(
                Field::DistributorQty,
                opt_num(distributor_qty),
                if acc.dd.is_empty() {
                    "Dicker Data has no subscription line for this product and term of the customer.".into()
                } else {
                    "The sum of ConfirmedQuantity over the Dicker Data lines billing these subscriptions (or, with no Microsoft subscription, carrying this stock code for the tenant) whose Status is ACTIVE; other statuses count as 0.".into()
                },
                acc.dd
                    .iter()
                    .map(|l| SourceRecord {
                        api: Api::DickerData,
                        record: "CSP subscription line".into(),
                        id: format!(
                            "SubscriptionReference {} billing subscription {}",
                            dd_ref(l),
                            l.subscription_id.as_deref().unwrap_or("(none)")
                        ),
                        detail: format!(
                            "ConfirmedQuantity {}, Status {}, StockCode {}",
                            l.confirmed_quantity.unwrap_or(0),
                            l.status.as_deref().unwrap_or("?"),
                            l.stock_code.as_deref().unwrap_or("?")
                        ),
                    })
                    .collect(),
            ));

            // Per-subscription Dicker Data ↔ Microsoft findings.
            let (mut mismatch_seats, mut missing_seats, mut not_ms_seats) = (0i64, 0i64, 0i64);
            let mut finding_text: Vec<String> = Vec::new();
            for f in &acc.findings {
                match f {
                    Finding::Mismatch { sub, dd, ms } => {
                        statuses.insert(Status::DistributorMicrosoftMismatch);
                        mismatch_seats += (dd - ms).abs();
                        finding_text.push(format!(
                            "subscription {sub}: Dicker Data confirms {dd}, Microsoft has {ms}"
                        ));
                    }
                    Finding::Missing { sub, ms, why } => {
                        statuses.insert(Status::MissingAtDistributor);
                        missing_seats += ms;
                        finding_text.push(format!(
                            "subscription {sub} ({ms} seats) is active at Microsoft; {why}"
                        ));
                    }
                    Finding::NotAtMicrosoft { sub, dd, ms_status } => {
                        statuses.insert(Status::BilledNotAtMicrosoft);
                        not_ms_seats += dd;
                        finding_text.push(match ms_status {
                            Some(st) => format!(
                                "Dicker Data bills {dd} seats on subscription {sub}, which Microsoft shows as {st}"
                            ),
                            None => format!(
                                "Dicker Data bills {dd} seats on subscription {sub}, which Partner Center does not list for the customer"
                            ),
                        });
                    }
                }
            }
            if let Some(u) = &acc.unknown_product {
                statuses.insert(Status::UnmappedProduct);
                finding_text.push(u.clone());
            }

            // --- Assigned (Graph, per SKU) ---------------------------------------------------
            let mut assigned = None;
            let mut sku_purchased = None;
            let mut line_sku: Option<String> = None;
            match &cust.graph {
                Some(g) => {
                    let mut skus: BTreeSet<String> = acc
                        .ms
                        .iter()
                        .filter_map(|s| g.sku_by_sub.get(&lower(&s.id)).cloned())
                        .collect();
                    if skus.is_empty()
                        && let Some(s) = cust.sku_by_product.get(&key.product_id)
                    {
                        skus.insert(s.clone());
                    }
                    let found: Vec<&&SubscribedSku> =
                        skus.iter().filter_map(|s| g.skus.get(s)).collect();
                    if !found.is_empty() {
                        let a: i64 = found.iter().map(|s| s.consumed_units).sum();
                        let p: i64 = skus
                            .iter()
                            .map(|s| cust.purchased_by_sku.get(s).copied().unwrap_or(0))
                            .sum();
                        assigned = Some(a);
                        sku_purchased = Some(p);
                        line_sku = skus.iter().next().cloned();
                        if a < p {
                            statuses.insert(Status::UnassignedSeats);
                        } else if a > p {
                            statuses.insert(Status::OverAssigned);
                        }
                        let mut sources: Vec<SourceRecord> = found
                            .iter()
                            .map(|s| SourceRecord {
                                api: Api::Graph,
                                record: "subscribedSku".into(),
                                id: format!("skuId {} in tenant {}", s.sku_id, cust.tenant_id),
                                detail: format!(
                                    "{}: consumedUnits {}, prepaidUnits.enabled {}",
                                    s.sku_part_number, s.consumed_units, s.prepaid_units.enabled
                                ),
                            })
                            .collect();
                        for s in &acc.ms {
                            if let Some(d) = g.dir_by_sub.get(&lower(&s.id)) {
                                sources.push(SourceRecord {
                                    api: Api::Graph,
                                    record: "directory subscription".into(),
                                    id: format!("companySubscription {}", d.id),
                                    detail: format!(
                                        "commerceSubscriptionId {} → skuId {}",
                                        s.id,
                                        d.sku_id.as_deref().unwrap_or("?")
                                    ),
                                });
                            }
                        }
                        ex.push(explain(
                            Field::Assigned,
                            a.to_string(),
                            format!(
                                "Graph counts assigned licences per SKU (consumedUnits), so every line of the SKU shows the same number; it is compared with the SKU's {p} active purchased seats over all its lines and terms (Partner Center subscriptions linked to the SKU through Graph directory subscriptions)."
                            ),
                            sources,
                        ));
                    } else {
                        ex.push(explain(
                            Field::Assigned,
                            "-".into(),
                            "Graph lists no SKU for these subscriptions, so assignment is not checked.".into(),
                            Vec::new(),
                        ));
                    }
                }
                None => ex.push(explain(
                    Field::Assigned,
                    "-".into(),
                    format!(
                        "Not checked: {}",
                        cust.graph_problem
                            .clone()
                            .unwrap_or_else(|| "the tenant is not a Partner Center customer".into())
                    ),
                    Vec::new(),
                )),
            }

            // --- PSA -------------------------------------------------------------------------
            let dd_expected = Decimal::from(distributor_qty.unwrap_or(0));
            let mut psa_qty = None;
            let mut psa_gap = Decimal::ZERO;
            match (psa_api, link) {
                (None, _) | (_, PsaLink::NoPsa) => ex.push(explain(
                    Field::PsaQty,
                    "-".into(),
                    "No PSA was reconciled.".into(),
                    Vec::new(),
                )),
                (Some(api), PsaLink::NotBilled) => ex.push(explain(
                    Field::PsaQty,
                    "-".into(),
                    format!("The customer is marked as not billed in {api}."),
                    Vec::new(),
                )),
                (Some(api), PsaLink::Unmapped { suggestions: s }) => {
                    statuses.insert(Status::UnmappedCustomer);
                    ex.push(explain(
                        Field::PsaQty,
                        "-".into(),
                        format!(
                            "The customer is not linked to a {api} record, so what {api} charges cannot be told.{}",
                            match s.first() {
                                Some(top) => format!(
                                    " Best suggestion: {} ({}).",
                                    top.label,
                                    top.reasons.join("; ")
                                ),
                                None => String::new(),
                            }
                        ),
                        Vec::new(),
                    ));
                }
                (
                    Some(api),
                    PsaLink::Mapped {
                        record,
                        name,
                        reason,
                    },
                ) => {
                    let sum: Decimal = acc.charges.iter().map(|c| c.qty).sum();
                    psa_qty = (!acc.charges.is_empty()).then_some(sum);
                    let unmapped = self
                        .unmapped_charges
                        .get(ci)
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    let mut how = format!(
                        "{} ({record}), linked because {}. ",
                        name,
                        reason.describe()
                    );
                    how.push_str(match api {
                        Api::ConnectWise => "The sum of quantity less included over the additions (not cancelled, billable) of its agreements whose catalog item carries this stock code.",
                        Api::Autotask => "The sum, over the contract services of its active recurring-service contracts whose service carries this stock code, of the units of the unit record covering the fetch date.",
                        _ => "The sum of Quantity over the lines carrying this stock code on the contact's latest sales invoice created by cspsync.",
                    });
                    if sum < dd_expected {
                        psa_gap = dd_expected - sum;
                        // Underbilled when the PSA bills the line under a mapped product, or
                        // has nothing it could be billing it under; with no mapped charge but
                        // charges without a stock code, the line's PSA quantity is unknown.
                        if psa_qty.is_some() || unmapped.is_empty() {
                            statuses.insert(Status::PsaUnderbilled);
                        } else {
                            statuses.insert(Status::UnmappedProduct);
                            how.push_str(&format!(
                                " It charges the customer under {} product(s) without a stock code, which may be these {} seats.",
                                unmapped.len(),
                                display_quantity(psa_gap)
                            ));
                            suggestions = line_suggestions(unmapped, psa_gap, key, acc);
                            short_lines.push((
                                record.clone(),
                                cust.name.clone(),
                                key.clone(),
                                dd_expected,
                            ));
                        }
                    } else if sum > dd_expected {
                        psa_gap = sum - dd_expected;
                        statuses.insert(Status::PsaOverbilled);
                    }
                    let mut sources: Vec<SourceRecord> =
                        acc.charges.iter().map(|c| c.source.clone()).collect();
                    if statuses.contains(&Status::UnmappedProduct) {
                        sources.extend(unmapped.iter().map(|c| SourceRecord {
                            detail: format!("{} — no stock code: not counted", c.source.detail),
                            ..c.source.clone()
                        }));
                    }
                    ex.push(explain(
                        Field::PsaQty,
                        psa_qty.map(display_quantity).unwrap_or_else(|| "-".into()),
                        how,
                        sources,
                    ));
                }
            }

            // --- Money -----------------------------------------------------------------------
            let charges: &[&PsaCharge] = &acc.charges;
            let mut add_part = |status: Status, seats: Decimal, unit: Option<(Decimal, String)>| {
                if seats.is_zero() {
                    return;
                }
                let (unit_amount, unit_source) = match unit {
                    Some((u, s)) => (Some(u), s),
                    None => (None, "no price found: counted as 0".to_string()),
                };
                impact.push(ImpactPart {
                    status,
                    seats,
                    amount: round_money(unit_amount.map(|u| u * seats).unwrap_or_default()),
                    unit_amount,
                    unit_source,
                });
            };
            if statuses.contains(&Status::PsaUnderbilled) {
                add_part(
                    Status::PsaUnderbilled,
                    psa_gap,
                    self.unit_price(key, charges),
                );
            }
            if statuses.contains(&Status::PsaOverbilled) {
                add_part(
                    Status::PsaOverbilled,
                    psa_gap,
                    self.unit_price(key, charges),
                );
            }
            let cost = || self.unit_cost(key, charges);
            if mismatch_seats > 0 {
                add_part(
                    Status::DistributorMicrosoftMismatch,
                    Decimal::from(mismatch_seats),
                    cost(),
                );
            }
            if not_ms_seats > 0 {
                add_part(
                    Status::BilledNotAtMicrosoft,
                    Decimal::from(not_ms_seats),
                    cost(),
                );
            }
            if missing_seats > 0 {
                add_part(
                    Status::MissingAtDistributor,
                    Decimal::from(missing_seats),
                    cost(),
                );
            }
            let mut money_notes: Vec<String> = Vec::new();
            if statuses.contains(&Status::UnassignedSeats)
                && let (Some(a), Some(p), Some(sku)) = (assigned, sku_purchased, &line_sku)
            {
                if sku_money_done.insert((*ci, sku.clone())) {
                    add_part(Status::UnassignedSeats, Decimal::from(p - a), cost());
                } else {
                    money_notes.push(
                        "The unassigned seats are costed once per SKU, on its first line (the shortest term).".into(),
                    );
                }
            }
            if statuses.contains(&Status::OverAssigned) {
                money_notes.push(
                    "Over-assigned seats carry no money figure: nobody bills them until they are bought.".into(),
                );
            }
            if statuses.contains(&Status::UnmappedCustomer)
                || statuses.contains(&Status::UnmappedProduct)
            {
                money_notes.push(
                    "What the PSA charges is unknown here, so no money is counted for it.".into(),
                );
            }
            let monthly_impact = round_money(impact.iter().map(|p| p.amount).sum());
            let mut how = if impact.is_empty() {
                "No money-bearing difference.".to_string()
            } else {
                impact
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: {} seats × {} ({}) = {}",
                            p.status,
                            display_quantity(p.seats),
                            p.unit_amount
                                .map(display_money)
                                .unwrap_or_else(|| "?".into()),
                            p.unit_source,
                            display_money(p.amount)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            for n in &money_notes {
                how.push(' ');
                how.push_str(n);
            }
            ex.push(explain(
                Field::MonthlyImpact,
                display_money(monthly_impact),
                how,
                Vec::new(),
            ));

            // --- Renewal and the cancellation window ----------------------------------------
            let active: Vec<&&pc::Subscription> = acc.ms.iter().filter(|s| s.is_active()).collect();
            let renewal_date = active
                .iter()
                .filter_map(|s| s.commitment_end_date.map(|d| d.date_naive()))
                .min()
                .or_else(|| {
                    acc.dd
                        .iter()
                        .filter(|l| is_active_dd(l))
                        .filter_map(|l| l.expiry_date.map(|d| d.date_naive()))
                        .min()
                });
            ex.push(explain(
                Field::RenewalDate,
                renewal_date.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
                "The earliest commitmentEndDate of the line's active Partner Center subscriptions (else Dicker Data's ExpiryDate).".into(),
                Vec::new(),
            ));
            let mut window: Option<i64> = None;
            let mut wsources = Vec::new();
            let mut seat_hint = false;
            for s in &active {
                match window_left(s, self.now) {
                    Some((left, start)) => {
                        window = Some(window.map_or(left, |w: i64| w.min(left)));
                        wsources.push(SourceRecord {
                            api: Api::PartnerCenter,
                            record: "subscription".into(),
                            id: s.id.clone(),
                            detail: format!(
                                "current term started {} (creationDate {}, effectiveStartDate {}, commitmentEndDate {}): {left} h left",
                                start.format("%Y-%m-%d %H:%M UTC"),
                                fmt_time(s.creation_date),
                                fmt_time(s.effective_start_date),
                                fmt_time(s.commitment_end_date)
                            ),
                        });
                    }
                    None => seat_hint |= offers_cancel(s),
                }
            }
            let mut how = format!(
                "Hours left, measured at {}, in the 168-hour NCE window that opens at purchase or renewal (the latest of creationDate, effectiveStartDate and commitmentEndDate minus one term); with several subscriptions, the one closing first.",
                self.now.format("%Y-%m-%d %H:%M UTC")
            );
            how.push_str(" Seats added mid-term have their own window, but the APIs do not say when seats were added");
            if seat_hint {
                how.push_str(": Partner Center offers Cancel on a subscription of this line, so an added seat's window may be open.");
            } else {
                how.push('.');
            }
            ex.push(explain(
                Field::CancelWindow,
                window
                    .map(|w| format!("{w} h"))
                    .unwrap_or_else(|| "-".into()),
                how,
                wsources,
            ));

            // --- The customer, and notes -----------------------------------------------------
            let mut cnote = format!("Tenant {}", cust.tenant_id);
            if !cust.at_microsoft {
                cnote.push_str(", which Partner Center does not list as a customer (known from Dicker Data only)");
            }
            if let Some(n) = &cust.dd_name {
                cnote.push_str(&format!("; Dicker Data calls it {n}"));
            }
            cnote.push('.');
            for n in finding_text.iter().chain(acc.notes.iter()) {
                cnote.push(' ');
                cnote.push_str(n);
                cnote.push('.');
            }
            ex.push(explain(
                Field::Customer,
                cust.name.clone(),
                cnote,
                Vec::new(),
            ));

            let statuses: Vec<Status> = if statuses.is_empty() {
                vec![Status::InLine]
            } else {
                statuses.into_iter().collect()
            };
            let product_name = acc
                .ms
                .iter()
                .find_map(|s| sub_name(s))
                .or_else(|| {
                    acc.dd
                        .iter()
                        .find_map(|l| l.stock_description.clone().filter(|d| !d.trim().is_empty()))
                })
                .or_else(|| acc.charges.first().map(|c| c.product_name.clone()))
                .unwrap_or_else(|| key.product_id.clone());
            let k = keys_in_use.entry(key.clone()).or_default();
            if k.product_name.is_empty() {
                k.product_name = product_name.clone();
            }
            k.billed |= distributor_qty.unwrap_or(0) > 0;
            lines.push(Line {
                customer_tenant_id: cust.tenant_id.clone(),
                customer_name: cust.name.clone(),
                product_id: key.product_id.clone(),
                product_name,
                term: key.term,
                billing: key.billing,
                stock_code: key.stock_code(),
                distributor_qty,
                microsoft_qty,
                assigned,
                sku_purchased,
                psa_qty,
                statuses,
                monthly_impact,
                renewal_date,
                cancel_window_hours_left: window,
                impact,
                explain: ex,
                suggestions,
            });
        }
        lines.sort_by(|a, b| {
            (
                a.customer_name.to_lowercase(),
                &a.customer_tenant_id,
                a.product_name.to_lowercase(),
                &a.product_id,
                a.term,
                a.billing,
            )
                .cmp(&(
                    b.customer_name.to_lowercase(),
                    &b.customer_tenant_id,
                    b.product_name.to_lowercase(),
                    &b.product_id,
                    b.term,
                    b.billing,
                ))
        });

        // --- Mapping view and summary --------------------------------------------------------
        let (products, without, unmapped_psa_products) =
            mapping::map_products(self.view, &keys_in_use, &short_lines);
        let customers: Vec<CustomerLink> = self
            .custs
            .iter()
            .zip(links)
            .map(|(c, psa)| CustomerLink {
                tenant_id: c.tenant_id.clone(),
                name: c.name.clone(),
                at_microsoft: c.at_microsoft,
                distributor_name: c.dd_name.clone(),
                psa,
            })
            .collect();
        let unmapped_customers = customers.iter().filter(|c| c.psa.is_unmapped()).count();
        let unclaimed_psa_customers = match self.view {
            Some(v) => self
                .unclaimed
                .iter()
                .map(|(r, n)| mapping::UnclaimedPsaCustomer {
                    record: r.clone(),
                    name: v
                        .customers
                        .iter()
                        .find(|p| &p.r == r)
                        .map(|p| p.name.clone())
                        .unwrap_or_default(),
                    charges: *n,
                })
                .collect(),
            None => Vec::new(),
        };
        let mapping = Mapping {
            psa: psa_api,
            customers,
            unmapped_customers,
            products,
            stock_codes_without_psa_product: without,
            unmapped_psa_products,
            unclaimed_psa_customers,
            notes: self.view.map(|v| v.notes.clone()).unwrap_or_default(),
            psa_records: mapping::psa_records(self.view),
        };
        let mut by_status: BTreeMap<Status, usize> = Status::ALL.iter().map(|s| (*s, 0)).collect();
        for l in &lines {
            for s in &l.statuses {
                *by_status.entry(*s).or_default() += 1;
            }
        }
        let in_line = by_status.get(&Status::InLine).copied().unwrap_or(0);
        let problem = |c: &Cust, reason: &str| super::model::CustomerProblem {
            tenant_id: c.tenant_id.clone(),
            name: c.name.clone(),
            reason: reason.to_string(),
        };
        let summary = Summary {
            psa: psa_api,
            customers: self.custs.len(),
            lines_audited: lines.len(),
            in_line,
            mismatched: lines.len() - in_line,
            by_status,
            monthly_at_risk: round_money(lines.iter().map(|l| l.monthly_impact).sum()),
            lines_without_price: lines
                .iter()
                .filter(|l| l.impact.iter().any(|p| p.unit_amount.is_none()))
                .count(),
            unmapped_customers: mapping.unmapped_customers,
            unmapped_products: mapping.unmapped_products(),
            customers_not_read: self
                .custs
                .iter()
                .filter_map(|c| c.not_read.as_deref().map(|r| problem(c, r)))
                .collect(),
            customers_without_graph: self
                .custs
                .iter()
                .filter(|c| c.not_read.is_none() && c.at_microsoft)
                .filter_map(|c| c.graph_problem.as_deref().map(|r| problem(c, r)))
                .collect(),
            distributor_lines_skipped: self.skipped_azure,
        };
        Reconciliation {
            fetched_from: self.snap.started,
            fetched_at,
            now: self.now,
            summary,
            lines,
            mapping,
        }
    }
}

fn opt_num(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

/// The customer's charges without a stock code, ranked as this line's possible billing.
fn line_suggestions(
    unmapped: &[&PsaCharge],
    gap: Decimal,
    key: &ProductKey,
    acc: &Acc<'_>,
) -> Vec<Suggestion<PsaProductRef>> {
    let name = acc.ms.iter().find_map(|s| sub_name(s)).unwrap_or_default();
    let words: BTreeSet<String> = distinctive_words(&name).into_iter().collect();
    let mut best: BTreeMap<PsaProductRef, Suggestion<PsaProductRef>> = BTreeMap::new();
    for c in unmapped {
        let mut score = 0u32;
        let mut reasons = Vec::new();
        if c.qty == gap {
            score += 50;
            reasons.push(format!(
                "it charges {} seats, exactly the seats this line is short",
                display_quantity(c.qty)
            ));
        }
        let shared: Vec<String> = distinctive_words(&c.product_name)
            .into_iter()
            .filter(|w| words.contains(w))
            .collect();
        if !shared.is_empty() {
            score += (5 * u32::try_from(shared.len()).unwrap_or(4)).min(20);
            reasons.push(format!("its name shares '{}'", shared.join(" ")));
        }
        if let Some(code) = key.stock_code() {
            reasons.push(format!("map it to {code} to count it on this line"));
        }
        let s = Suggestion {
            target: c.product.clone(),
            label: format!("{} ({})", c.product_name, c.source.id),
            score,
            reasons,
        };
        match best.get(&c.product) {
            Some(b) if b.score >= s.score => {}
            _ => {
                best.insert(c.product.clone(), s);
            }
        }
    }
    let mut out: Vec<_> = best.into_values().collect();
    out.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.label.cmp(&b.label)));
    out.truncate(5);
    out
}
