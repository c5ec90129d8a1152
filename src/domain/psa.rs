//! One reading of whichever PSA was fetched: its customers (companies / contacts), the charges
//! it will make (ConnectWise additions, Autotask contract services with their current units,
//! the lines of each Xero contact's latest invoice) and the product each charge is for, mapped
//! to a Dicker Data stock code by the product's identifiers or a manual override.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::model::{
    Overrides, ProductKey, PsaCustomerRef, PsaProductRef, SourceRecord, display_quantity,
};
use super::names::{normalise_domain, normalise_name};
use crate::api::error::Api;
use crate::api::xero as xe;
use crate::engine::fetch::{AutotaskSnapshot, ConnectWiseSnapshot, PsaSnapshot, XeroSnapshot};

/// A PSA record that may stand for a customer.
#[derive(Debug, Clone)]
pub struct PsaCustomer {
    pub r: PsaCustomerRef,
    pub name: String,
    /// Normalised name.
    pub key: String,
    /// Normalised website domain (ConnectWise `website`, Autotask `webAddress`).
    pub domain: Option<String>,
}

/// How a PSA product got its stock code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductVia {
    /// The product's own identifier, e.g. `vendorSku P1Y:CFQ7TTC0LCHC:0002:1:`.
    Identifier(String),
    Override,
}

/// A PSA product as the reconciliation sees it.
#[derive(Debug, Clone)]
pub struct PsaProduct {
    pub r: PsaProductRef,
    pub name: String,
    pub key: Option<ProductKey>,
    pub via: Option<ProductVia>,
    /// `PRODUCT:SKU` the product names without a full stock code (ConnectWise
    /// `manufacturerPartNumber`), for suggestions.
    pub product_hint: Option<String>,
    /// Why its identifier was not understood, when it has one.
    pub problem: Option<String>,
}

/// One thing the PSA will charge a customer for.
#[derive(Debug, Clone)]
pub struct PsaCharge {
    pub customer: PsaCustomerRef,
    pub product: PsaProductRef,
    pub product_name: String,
    pub key: Option<ProductKey>,
    pub qty: Decimal,
    /// Sell price per seat per month.
    pub unit_price: Option<Decimal>,
    pub price_source: String,
    /// Buy cost per seat per month, as the PSA records it.
    pub unit_cost: Option<Decimal>,
    pub source: SourceRecord,
}

/// A price or cost known for a stock code outside any one charge (the catalogue).
#[derive(Debug, Clone)]
pub struct KnownAmount {
    pub amount: Decimal,
    pub source: String,
}

/// The whole PSA, read once.
#[derive(Debug, Clone)]
pub struct PsaView {
    pub api: Api,
    pub customers: Vec<PsaCustomer>,
    pub products: Vec<PsaProduct>,
    pub charges: Vec<PsaCharge>,
    pub catalog_price: BTreeMap<ProductKey, KnownAmount>,
    pub catalog_cost: BTreeMap<ProductKey, KnownAmount>,
    /// Notes about records left out (cancelled additions, non-billable lines, ...).
    pub notes: Vec<String>,
}

impl PsaView {
    pub fn read(snap: &PsaSnapshot, overrides: &Overrides, now: DateTime<Utc>) -> PsaView {
        let ov = ProductOverrides::new(overrides);
        match snap {
            PsaSnapshot::ConnectWise(s) => connectwise(s, &ov, now),
            PsaSnapshot::Autotask(s) => autotask(s, &ov),
            PsaSnapshot::Xero(s) => xero(s, &ov),
        }
    }
}

/// Product overrides, by reference; Xero description overrides by prefix.
struct ProductOverrides {
    exact: HashMap<PsaProductRef, ProductKey>,
    xero_prefixes: Vec<(String, ProductKey)>,
}

impl ProductOverrides {
    fn new(o: &Overrides) -> Self {
        let mut exact = HashMap::new();
        let mut xero_prefixes = Vec::new();
        for p in &o.products {
            let Some(key) = ProductKey::from_stock_code(&p.stock_code) else {
                continue;
            };
            match &p.psa_product {
                PsaProductRef::XeroDescription(d) => {
                    xero_prefixes.push((d.trim().to_lowercase(), key));
                }
                PsaProductRef::XeroItemCode(c) => {
                    exact.insert(
                        PsaProductRef::XeroItemCode(c.trim().to_ascii_uppercase()),
                        key,
                    );
                }
                other => {
                    exact.insert(other.clone(), key);
                }
            }
        }
        // Longest prefix first, so the most specific override wins.
        xero_prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        ProductOverrides {
            exact,
            xero_prefixes,
        }
    }

    fn get(&self, r: &PsaProductRef) -> Option<ProductKey> {
        self.exact.get(r).cloned()
    }

    fn xero_description(&self, description: &str) -> Option<ProductKey> {
        let d = description.trim().to_lowercase();
        self.xero_prefixes
            .iter()
            .find(|(p, _)| !p.is_empty() && d.starts_with(p.as_str()))
            .map(|(_, k)| k.clone())
    }
}

/// Map a product: override first, else its stock-code identifier.
fn map_product(
    r: PsaProductRef,
    name: String,
    identifier: Option<(&str, &str)>,
    product_hint: Option<String>,
    ov: &ProductOverrides,
) -> PsaProduct {
    if let Some(key) = ov.get(&r) {
        return PsaProduct {
            r,
            name,
            key: Some(key),
            via: Some(ProductVia::Override),
            product_hint,
            problem: None,
        };
    }
    let (key, via, problem) = match identifier {
        Some((field, code)) if !code.trim().is_empty() => match ProductKey::from_stock_code(code) {
            Some(k) => (
                Some(k),
                Some(ProductVia::Identifier(format!("{field} {}", code.trim()))),
                None,
            ),
            None => (
                None,
                None,
                Some(format!(
                    "its {field} `{}` is not a licence stock code",
                    code.trim()
                )),
            ),
        },
        _ => (None, None, None),
    };
    PsaProduct {
        r,
        name,
        key,
        via,
        product_hint,
        problem,
    }
}

/// How many months one billing period of a ConnectWise agreement covers, from its billing
/// cycle's name (`Monthly`, `Quarterly`, `Semi-Annual`, `Annual`/`Yearly`); the sync planner
/// uses the same rule.
pub(super) fn cycle_months(name: Option<&str>) -> u32 {
    let n = name.unwrap_or("").to_ascii_lowercase();
    if n.contains("semi") || n.contains("half") {
        6
    } else if n.contains("quarter") {
        3
    } else if n.contains("annual") || n.contains("year") {
        12
    } else {
        1
    }
}

fn per_month(amount: Option<Decimal>, months: u32) -> Option<Decimal> {
    amount.map(|a| {
        if months > 1 {
            a / Decimal::from(months)
        } else {
            a
        }
    })
}

fn connectwise(s: &ConnectWiseSnapshot, ov: &ProductOverrides, now: DateTime<Utc>) -> PsaView {
    let mut notes = Vec::new();
    let customers: Vec<PsaCustomer> = s
        .companies
        .iter()
        .filter(|c| !c.deleted_flag.unwrap_or(false))
        .map(|c| PsaCustomer {
            r: PsaCustomerRef::ConnectwiseCompany(c.id),
            name: c.name.clone(),
            key: normalise_name(&c.name),
            domain: c
                .website
                .as_deref()
                .map(normalise_domain)
                .filter(|d| !d.is_empty()),
        })
        .collect();
    let mut products: Vec<PsaProduct> = Vec::with_capacity(s.catalog.len());
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    let mut by_identifier: HashMap<String, usize> = HashMap::new();
    let mut catalog_price = BTreeMap::new();
    let mut catalog_cost = BTreeMap::new();
    for item in &s.catalog {
        let name = if item.description.trim().is_empty() {
            item.identifier.clone()
        } else {
            item.description.clone()
        };
        let p = map_product(
            PsaProductRef::ConnectwiseCatalogItem(item.id),
            name,
            item.vendor_sku.as_deref().map(|v| ("vendorSku", v)),
            item.manufacturer_part_number
                .as_deref()
                .map(|m| m.trim().to_ascii_uppercase())
                .filter(|m| !m.is_empty()),
            ov,
        );
        if let Some(k) = &p.key
            && !item.inactive_flag.unwrap_or(false)
        {
            if let Some(price) = item.price {
                catalog_price.entry(k.clone()).or_insert(KnownAmount {
                    amount: price,
                    source: format!("ConnectWise catalog item {} price", item.id),
                });
            }
            if let Some(cost) = item.cost {
                catalog_cost.entry(k.clone()).or_insert(KnownAmount {
                    amount: cost,
                    source: format!("ConnectWise catalog item {} cost", item.id),
                });
            }
        }
        by_id.insert(item.id, products.len());
        by_identifier.insert(item.identifier.to_ascii_lowercase(), products.len());
        products.push(p);
    }
    let mut charges = Vec::new();
    let (mut cancelled, mut not_billable) = (0usize, 0usize);
    for a in s.agreements.iter().filter(|a| !a.is_closed()) {
        let Some(company) = a.company.as_ref().and_then(|c| c.id) else {
            continue;
        };
        let months = cycle_months(a.billing_cycle.as_ref().and_then(|b| b.name.as_deref()));
        for add in s.additions.get(&a.id).map(Vec::as_slice).unwrap_or(&[]) {
            if add.cancelled_date.is_some_and(|d| d <= now) {
                cancelled += 1;
                continue;
            }
            if add
                .bill_customer
                .as_deref()
                .is_some_and(|b| !b.eq_ignore_ascii_case("Billable"))
            {
                not_billable += 1;
                continue;
            }
            let item = add.product.as_ref().and_then(|p| {
                p.id.and_then(|id| by_id.get(&id)).or_else(|| {
                    p.identifier
                        .as_deref()
                        .and_then(|i| by_identifier.get(&i.to_ascii_lowercase()))
                })
            });
            let (product, product_name, key) = match item.and_then(|&i| products.get(i)) {
                Some(p) => (p.r.clone(), p.name.clone(), p.key.clone()),
                None => {
                    let id = add.product.as_ref().and_then(|p| p.id).unwrap_or(0);
                    let r = PsaProductRef::ConnectwiseCatalogItem(id);
                    let key = ov.get(&r);
                    (r, add.description.clone().unwrap_or_default(), key)
                }
            };
            let qty = add.quantity.unwrap_or_default() - add.less_included.unwrap_or_default();
            let catalog = item.and_then(|&i| s.catalog.get(i));
            let (unit_price, price_source) = match (add.unit_price, catalog.and_then(|c| c.price)) {
                (Some(p), _) => (
                    Some(p),
                    format!("ConnectWise addition {} unitPrice", add.id),
                ),
                (None, Some(p)) => (
                    Some(p),
                    format!("ConnectWise catalog item {} price", product_id_of(&product)),
                ),
                (None, None) => (None, String::new()),
            };
            let price_source = if months > 1 && unit_price.is_some() {
                format!(
                    "{price_source} ÷ {months} (agreement {} bills every {months} months)",
                    a.id
                )
            } else {
                price_source
            };
            charges.push(PsaCharge {
                customer: PsaCustomerRef::ConnectwiseCompany(company),
                product,
                product_name,
                key,
                qty,
                unit_price: per_month(unit_price, months),
                price_source,
                unit_cost: per_month(add.unit_cost.or(catalog.and_then(|c| c.cost)), months),
                source: SourceRecord {
                    api: Api::ConnectWise,
                    record: "agreement addition".into(),
                    id: format!("addition {} on agreement {}", add.id, a.id),
                    detail: format!(
                        "quantity {}{}, product {}",
                        display_quantity(add.quantity.unwrap_or_default()),
                        match add.less_included {
                            Some(l) if !l.is_zero() =>
                                format!(" less included {}", display_quantity(l)),
                            _ => String::new(),
                        },
                        add.product
                            .as_ref()
                            .and_then(|p| p.identifier.clone().or(p.id.map(|i| i.to_string())))
                            .unwrap_or_else(|| "(none)".into())
                    ),
                },
            });
        }
    }
    if cancelled > 0 {
        notes.push(format!(
            "{cancelled} cancelled ConnectWise addition(s) are not counted"
        ));
    }
    if not_billable > 0 {
        notes.push(format!(
            "{not_billable} ConnectWise addition(s) marked DoNotBill/NoCharge are not counted"
        ));
    }
    PsaView {
        api: Api::ConnectWise,
        customers,
        products,
        charges,
        catalog_price,
        catalog_cost,
        notes,
    }
}

fn product_id_of(r: &PsaProductRef) -> String {
    match r {
        PsaProductRef::ConnectwiseCatalogItem(id) => id.to_string(),
        PsaProductRef::AutotaskService(id) => id.to_string(),
        PsaProductRef::XeroItemCode(c) | PsaProductRef::XeroDescription(c) => c.clone(),
    }
}

fn autotask(s: &AutotaskSnapshot, ov: &ProductOverrides) -> PsaView {
    let mut notes = Vec::new();
    let customers: Vec<PsaCustomer> = s
        .companies
        .iter()
        .filter(|c| c.is_active != Some(false))
        .map(|c| PsaCustomer {
            r: PsaCustomerRef::AutotaskCompany(c.id),
            name: c.company_name.clone(),
            key: normalise_name(&c.company_name),
            domain: c
                .web_address
                .as_deref()
                .map(normalise_domain)
                .filter(|d| !d.is_empty()),
        })
        .collect();
    let mut products = Vec::with_capacity(s.services.len());
    let mut by_id: HashMap<i64, usize> = HashMap::new();
    let mut catalog_price = BTreeMap::new();
    let mut catalog_cost = BTreeMap::new();
    for svc in &s.services {
        let p = map_product(
            PsaProductRef::AutotaskService(svc.id),
            svc.name.clone(),
            svc.sku.as_deref().map(|v| ("sku", v)),
            None,
            ov,
        );
        if let Some(k) = &p.key
            && svc.is_active != Some(false)
        {
            if let Some(price) = svc.unit_price {
                catalog_price.entry(k.clone()).or_insert(KnownAmount {
                    amount: price,
                    source: format!("Autotask service {} unitPrice", svc.id),
                });
            }
            if let Some(cost) = svc.unit_cost {
                catalog_cost.entry(k.clone()).or_insert(KnownAmount {
                    amount: cost,
                    source: format!("Autotask service {} unitCost", svc.id),
                });
            }
        }
        by_id.insert(svc.id, products.len());
        products.push(p);
    }
    // The unit record in force per contract service: the latest start among those fetched
    // (the fetch asks only for records covering its date, §6.3).
    let mut units: HashMap<i64, &crate::api::autotask::ContractServiceUnit> = HashMap::new();
    for u in &s.current_units {
        let e = units.entry(u.contract_service_id).or_insert(u);
        if (u.start_date, u.id) > (e.start_date, e.id) {
            *e = u;
        }
    }
    let contracts: HashMap<i64, &crate::api::autotask::Contract> = s
        .contracts
        .iter()
        .filter(|k| k.status.is_none_or(|st| st == 1))
        .map(|k| (k.id, k))
        .collect();
    let mut charges = Vec::new();
    let mut without_units = 0usize;
    for cs in &s.contract_services {
        let Some(contract) = cs.contract_id.and_then(|id| contracts.get(&id)) else {
            continue;
        };
        let Some(company) = contract.company_id else {
            continue;
        };
        let svc = cs
            .service_id
            .and_then(|id| by_id.get(&id))
            .and_then(|&i| products.get(i).map(|p: &PsaProduct| (p, s.services.get(i))));
        let (product, product_name, key, svc_rec) = match svc {
            Some((p, rec)) => (p.r.clone(), p.name.clone(), p.key.clone(), rec),
            None => {
                let r = PsaProductRef::AutotaskService(cs.service_id.unwrap_or(0));
                let key = ov.get(&r);
                (
                    r,
                    cs.invoice_description.clone().unwrap_or_default(),
                    key,
                    None,
                )
            }
        };
        let unit = units.get(&cs.id);
        if unit.is_none() {
            without_units += 1;
        }
        let qty = unit.map(|u| Decimal::from(u.units)).unwrap_or_default();
        let (unit_price, price_source) = if let Some(p) = cs.effective_price() {
            (
                Some(p),
                format!(
                    "Autotask contract service {} {}",
                    cs.id,
                    if cs.adjusted_price.is_some() {
                        "adjustedPrice"
                    } else {
                        "unitPrice"
                    }
                ),
            )
        } else if let Some(p) = unit.and_then(|u| u.price) {
            (
                Some(p),
                format!(
                    "Autotask unit record {} price",
                    unit.map(|u| u.id).unwrap_or(0)
                ),
            )
        } else if let Some(p) = svc_rec.and_then(|r| r.unit_price) {
            (
                Some(p),
                format!(
                    "Autotask service {} unitPrice",
                    svc_rec.map(|r| r.id).unwrap_or(0)
                ),
            )
        } else {
            (None, String::new())
        };
        let unit_cost = cs
            .unit_cost
            .or(unit.and_then(|u| u.cost))
            .or(svc_rec.and_then(|r| r.unit_cost));
        let detail = match unit {
            Some(u) => format!(
                "unit record {} ({} to {}): units {}",
                u.id,
                u.start_date.map(|d| d.to_string()).unwrap_or_default(),
                u.end_date.map(|d| d.to_string()).unwrap_or_default(),
                u.units
            ),
            None => "no unit record covers the fetch date: 0 units".to_string(),
        };
        charges.push(PsaCharge {
            customer: PsaCustomerRef::AutotaskCompany(company),
            product,
            product_name,
            key,
            qty,
            unit_price,
            price_source,
            unit_cost,
            source: SourceRecord {
                api: Api::Autotask,
                record: "contract service".into(),
                id: format!("contract service {} on contract {}", cs.id, contract.id),
                detail,
            },
        });
    }
    if without_units > 0 {
        notes.push(format!(
            "{without_units} Autotask contract service(s) have no unit record covering today and count as 0 units"
        ));
    }
    PsaView {
        api: Api::Autotask,
        customers,
        products,
        charges,
        catalog_price,
        catalog_cost,
        notes,
    }
}

/// A Xero invoice that counts: neither deleted nor voided, nor refused.
pub(super) fn xero_is_live(i: &xe::Invoice) -> bool {
    !matches!(
        i.status,
        Some(xe::InvoiceStatus::Deleted) | Some(xe::InvoiceStatus::Voided)
    ) && !i.failed()
}

/// What orders a Xero invoice among others (the sync planner orders them the same way).
pub(super) type XeroLatestKey = (Option<chrono::NaiveDate>, Option<DateTime<Utc>>, String);

/// The order of "latest": date, then last update, then number.
pub(super) fn xero_latest_key(i: &xe::Invoice) -> XeroLatestKey {
    (
        i.date,
        i.updated_date_utc,
        i.invoice_number.clone().unwrap_or_default(),
    )
}

fn xero(s: &XeroSnapshot, ov: &ProductOverrides) -> PsaView {
    let customers: Vec<PsaCustomer> = s
        .contacts
        .iter()
        .filter(|c| c.contact_status != Some(xe::ContactStatus::Archived))
        .filter_map(|c| {
            let id = c.contact_id.clone()?;
            let name = c.name.clone().unwrap_or_default();
            Some(PsaCustomer {
                r: PsaCustomerRef::XeroContact(id.to_ascii_lowercase()),
                key: normalise_name(&name),
                name,
                // Xero contacts match by name only (docs/dataset.md "Linking").
                domain: None,
            })
        })
        .collect();
    // The latest live sales invoice per contact, and the latest bill line per item code.
    let mut latest: HashMap<String, &xe::Invoice> = HashMap::new();
    let mut bills: Vec<&xe::Invoice> = Vec::new();
    for inv in s.invoices.iter().filter(|i| xero_is_live(i)) {
        match inv.invoice_type {
            Some(xe::InvoiceType::AccRec) => {
                let Some(contact) = inv
                    .contact
                    .as_ref()
                    .and_then(|c| c.contact_id.as_deref())
                    .map(str::to_ascii_lowercase)
                else {
                    continue;
                };
                let e = latest.entry(contact).or_insert(inv);
                if xero_latest_key(inv) > xero_latest_key(e) {
                    *e = inv;
                }
            }
            Some(xe::InvoiceType::AccPay) => bills.push(inv),
            _ => {}
        }
    }
    let mut products: Vec<PsaProduct> = Vec::new();
    let mut seen: HashMap<PsaProductRef, usize> = HashMap::new();
    let mut product_for = |line: &xe::LineItem| -> PsaProduct {
        let code = line
            .item_code
            .as_deref()
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty());
        let description = line.description.clone().unwrap_or_default();
        let p = match &code {
            Some(c) => map_product(
                PsaProductRef::XeroItemCode(c.clone()),
                description.clone(),
                Some(("ItemCode", c.as_str())),
                None,
                ov,
            ),
            None => {
                let key = ov.xero_description(&description);
                PsaProduct {
                    r: PsaProductRef::XeroDescription(description.trim().to_string()),
                    name: description.clone(),
                    via: key.as_ref().map(|_| ProductVia::Override),
                    key,
                    product_hint: None,
                    problem: None,
                }
            }
        };
        if !seen.contains_key(&p.r) {
            seen.insert(p.r.clone(), products.len());
            products.push(p.clone());
        }
        p
    };
    let mut charges = Vec::new();
    let mut catalog_price: BTreeMap<ProductKey, (Option<chrono::NaiveDate>, KnownAmount)> =
        BTreeMap::new();
    let mut contacts: Vec<(&String, &&xe::Invoice)> = latest.iter().collect();
    contacts.sort_by(|a, b| a.0.cmp(b.0));
    for (contact, inv) in contacts {
        let number = inv.invoice_number.clone().unwrap_or_default();
        let id = inv.invoice_id.clone().unwrap_or_default();
        for (i, line) in inv.line_items.iter().enumerate() {
            let p = product_for(line);
            if let (Some(k), Some(price)) = (&p.key, line.unit_amount) {
                let newer = catalog_price.get(k).is_none_or(|(d, _)| inv.date > *d);
                if newer {
                    catalog_price.insert(
                        k.clone(),
                        (
                            inv.date,
                            KnownAmount {
                                amount: price,
                                source: format!("Xero invoice {number} UnitAmount"),
                            },
                        ),
                    );
                }
            }
            charges.push(PsaCharge {
                customer: PsaCustomerRef::XeroContact(contact.clone()),
                product: p.r.clone(),
                product_name: p.name.clone(),
                key: p.key.clone(),
                qty: line.quantity.unwrap_or_default(),
                unit_price: line.unit_amount,
                price_source: format!("Xero invoice {number} line UnitAmount"),
                unit_cost: None,
                source: SourceRecord {
                    api: Api::Xero,
                    record: "invoice line".into(),
                    id: format!(
                        "invoice {number} ({id}), line {}",
                        line.line_item_id.clone().unwrap_or_else(|| (i + 1).to_string())
                    ),
                    detail: format!(
                        "latest sales invoice of the contact, dated {}, {}: Quantity {}, ItemCode {}",
                        inv.date.map(|d| d.to_string()).unwrap_or_default(),
                        inv.status.map(|s| s.as_str()).unwrap_or("?"),
                        display_quantity(line.quantity.unwrap_or_default()),
                        line.item_code.as_deref().unwrap_or("(none)")
                    ),
                },
            });
        }
    }
    // Costs: the Dicker Data bills cspsync recorded (ACCPAY), latest first.
    bills.sort_by_key(|b| std::cmp::Reverse(xero_latest_key(b)));
    let mut catalog_cost = BTreeMap::new();
    for b in bills {
        for line in &b.line_items {
            let (Some(code), Some(cost)) = (line.item_code.as_deref(), line.unit_amount) else {
                continue;
            };
            if let Some(k) = ProductKey::from_stock_code(code) {
                catalog_cost.entry(k).or_insert(KnownAmount {
                    amount: cost,
                    source: format!(
                        "Xero bill {} UnitAmount",
                        b.invoice_number.clone().unwrap_or_default()
                    ),
                });
            }
        }
    }
    PsaView {
        api: Api::Xero,
        customers,
        products,
        charges,
        catalog_price: catalog_price
            .into_iter()
            .map(|(k, (_, a))| (k, a))
            .collect(),
        catalog_cost,
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_cycles_divide_prices_to_a_month() {
        assert_eq!(cycle_months(Some("Monthly")), 1);
        assert_eq!(cycle_months(Some("Annual")), 12);
        assert_eq!(cycle_months(Some("Yearly")), 12);
        assert_eq!(cycle_months(Some("Semi-Annual")), 6);
        assert_eq!(cycle_months(Some("Quarterly")), 3);
        assert_eq!(cycle_months(None), 1);
        assert_eq!(
            per_month(Some(Decimal::new(39480, 2)), 12),
            Some(Decimal::new(3290, 2))
        );
    }
}
