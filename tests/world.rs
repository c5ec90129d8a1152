//! The generated world: deterministic, sized as asked, and consistent everywhere except the
//! mismatches it records in `planted` — checked from the data alone, following the linking
//! conventions of docs/dataset.md (implemented again here, independently of the generator).
//!
//! `CSPSYNC_REGENERATE_ASSETS=1 cargo test --test world` rewrites assets/demo-world.json and
//! docs/dataset.schema.json from the code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use cspsync::sim::generate::{self, GenOptions, generate, staff_users, status};
use cspsync::sim::util::Rng;
use cspsync::sim::world::{Planted, World};
use rust_decimal::prelude::ToPrimitive;

const REGENERATE: &str = "CSPSYNC_REGENERATE_ASSETS";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
}

fn world(customers: usize, seed: u64) -> World {
    generate(&GenOptions::new(customers, seed, today()))
}

fn pretty(w: &World) -> String {
    serde_json::to_string_pretty(w).unwrap() + "\n"
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---------------------------------------------------------------------------------------------
// docs/dataset.md "Linking", read independently.

fn norm_name(s: &str) -> String {
    let spaced: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    spaced
        .split_whitespace()
        .filter(|w| !["pty", "ltd", "limited"].contains(w))
        .collect()
}

fn norm_domain(s: &str) -> String {
    let s = s.trim().to_lowercase();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(&s);
    let s = s.strip_prefix("www.").unwrap_or(s);
    s.split('/').next().unwrap_or("").to_string()
}

/// `{term}:{product}:{sku}:{plan}:` → (term, `product:sku`).
fn parse_stock_code(code: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = code.split(':').collect();
    if parts.len() != 5 || !parts[4].is_empty() || !["1", "Y"].contains(&parts[3]) {
        return None;
    }
    Some((parts[0].to_string(), format!("{}:{}", parts[1], parts[2])))
}

/// (customer tenant, `product:sku`, term)
type Key = (String, String, String);

const PSAS: [&str; 3] = ["connectwise", "autotask", "xero"];

#[derive(Default)]
struct View {
    /// Microsoft quantity of active subscriptions.
    ms: BTreeMap<Key, u32>,
    /// Every listed Microsoft subscription: id → (key, status).
    ms_subs: BTreeMap<String, (Key, String)>,
    dd: BTreeMap<Key, u32>,
    /// Microsoft subscription ids Dicker Data bills, per line.
    dd_sub_ids: BTreeMap<Key, Vec<String>>,
    /// (tenant, graph sku) → active purchased quantity.
    purchased: BTreeMap<(String, String), u32>,
    assigned: BTreeMap<(String, String), u32>,
    /// (tenant, product:sku) → graph sku.
    graph_sku: BTreeMap<(String, String), String>,
    psa: [BTreeMap<Key, u32>; 3],
    /// Tenants with a PSA line that carries no stock code.
    psa_unidentified: [BTreeSet<String>; 3],
    /// Tenant → how many records of each PSA match it.
    matches: [BTreeMap<String, usize>; 3],
}

/// Customers a PSA record (name, optional domain) matches by the conventions.
fn matcher(w: &World) -> impl Fn(&str, Option<&str>) -> Vec<String> + '_ {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &w.customers {
        by_name
            .entry(norm_name(&c.company_name))
            .or_default()
            .push(c.tenant_id.clone());
        for d in &c.custom_domains {
            by_domain
                .entry(d.to_lowercase())
                .or_default()
                .push(c.tenant_id.clone());
        }
    }
    move |name: &str, domain: Option<&str>| {
        let mut hits: BTreeSet<String> = BTreeSet::new();
        hits.extend(by_name.get(&norm_name(name)).into_iter().flatten().cloned());
        if let Some(d) = domain.map(norm_domain) {
            hits.extend(by_domain.get(&d).into_iter().flatten().cloned());
        }
        hits.into_iter().collect()
    }
}

fn view(w: &World, today: NaiveDate) -> View {
    let mut v = View::default();
    for c in &w.customers {
        for s in &c.subscriptions {
            let key = (
                c.tenant_id.clone(),
                format!("{}:{}", s.product_id, s.sku_id),
                s.term_duration.clone(),
            );
            v.graph_sku
                .insert((c.tenant_id.clone(), key.1.clone()), s.graph_sku_id.clone());
            if s.status == "active" {
                *v.ms.entry(key.clone()).or_default() += s.quantity;
                *v.purchased
                    .entry((c.tenant_id.clone(), s.graph_sku_id.clone()))
                    .or_default() += s.quantity;
            }
            let prev = v.ms_subs.insert(s.id.clone(), (key, s.status.clone()));
            assert!(prev.is_none(), "subscription id {} listed twice", s.id);
        }
        for (sku, n) in &c.assigned {
            v.assigned.insert((c.tenant_id.clone(), sku.clone()), *n);
        }
    }
    for d in &w.dicker_data.subscriptions {
        if d.status != "ACTIVE" {
            continue;
        }
        let (term, product) = parse_stock_code(&d.stock_code)
            .unwrap_or_else(|| panic!("bad stock code {}", d.stock_code));
        assert_eq!(d.manufacturer_stock_code, product);
        let key = (d.tenant_id.clone(), product, term);
        *v.dd.entry(key.clone()).or_default() += d.confirmed_quantity;
        v.dd_sub_ids
            .entry(key)
            .or_default()
            .push(d.subscription_id.clone());
    }

    let find = matcher(w);

    // ConnectWise: company → agreement → addition → catalog item's vendorSku.
    let cw = &w.connectwise;
    let mut cw_company: BTreeMap<u64, String> = BTreeMap::new();
    for co in &cw.companies {
        let hits = find(&co.name, co.website.as_deref());
        assert!(hits.len() <= 1, "CW company {} matches {hits:?}", co.name);
        if let Some(t) = hits.first() {
            *v.matches[0].entry(t.to_string()).or_default() += 1;
            cw_company.insert(co.id, t.to_string());
        }
    }
    let agreements: BTreeMap<u64, u64> =
        cw.agreements.iter().map(|a| (a.id, a.company_id)).collect();
    let catalog: BTreeMap<u64, _> = cw.catalog.iter().map(|i| (i.id, i)).collect();
    for a in &cw.additions {
        let Some(tenant) = agreements
            .get(&a.agreement_id)
            .and_then(|c| cw_company.get(c))
        else {
            continue;
        };
        let item = catalog[&a.product_id];
        match item.vendor_sku.as_deref().and_then(parse_stock_code) {
            Some((term, product)) => {
                assert_eq!(
                    item.manufacturer_part_number.as_deref(),
                    Some(product.as_str())
                );
                *v.psa[0].entry((tenant.clone(), product, term)).or_default() +=
                    a.quantity.to_u32().unwrap();
            }
            None => {
                v.psa_unidentified[0].insert(tenant.clone());
            }
        }
    }

    // Autotask: company → contract → contract service → service sku; units of today.
    let at = &w.autotask;
    let mut at_company: BTreeMap<u64, String> = BTreeMap::new();
    for co in &at.companies {
        let hits = find(&co.company_name, co.web_address.as_deref());
        assert!(
            hits.len() <= 1,
            "AT company {} matches {hits:?}",
            co.company_name
        );
        if let Some(t) = hits.first() {
            *v.matches[1].entry(t.to_string()).or_default() += 1;
            at_company.insert(co.id, t.to_string());
        }
    }
    let contracts: BTreeMap<u64, u64> = at.contracts.iter().map(|c| (c.id, c.company_id)).collect();
    let services: BTreeMap<u64, _> = at.services.iter().map(|s| (s.id, s)).collect();
    let mut current_units: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for u in &at.contract_service_units {
        if u.start_date.unwrap() <= today && today <= u.end_date.unwrap() {
            current_units
                .entry(u.contract_service_id)
                .or_default()
                .push(u.units);
        }
    }
    for cs in &at.contract_services {
        let Some(tenant) = contracts
            .get(&cs.contract_id)
            .and_then(|c| at_company.get(c))
        else {
            continue;
        };
        let current = current_units.get(&cs.id).cloned().unwrap_or_default();
        assert_eq!(
            current.len(),
            1,
            "contract service {} has no single current period",
            cs.id
        );
        let units = u32::try_from(current[0]).unwrap();
        match services[&cs.service_id]
            .sku
            .as_deref()
            .and_then(parse_stock_code)
        {
            Some((term, product)) => {
                *v.psa[1].entry((tenant.clone(), product, term)).or_default() += units;
            }
            None => {
                v.psa_unidentified[1].insert(tenant.clone());
            }
        }
    }

    // Xero: contact (by name only) → its latest ACCREC invoice created by the app.
    for org in &w.xero.organisations {
        let mut contact: BTreeMap<&str, String> = BTreeMap::new();
        for ct in &org.contacts {
            let hits = find(&ct.name, None);
            assert!(hits.len() <= 1, "Xero contact {} matches {hits:?}", ct.name);
            if let Some(t) = hits.first() {
                *v.matches[2].entry(t.to_string()).or_default() += 1;
                contact.insert(&ct.contact_id, t.to_string());
            }
        }
        let mut latest: BTreeMap<&str, &cspsync::sim::world::XeroInvoice> = BTreeMap::new();
        for inv in &org.invoices {
            if inv.invoice_type != "ACCREC" || !inv.created_by_app {
                continue;
            }
            let e = latest.entry(&inv.contact_id).or_insert(inv);
            if inv.date > e.date {
                *e = inv;
            }
        }
        for (contact_id, inv) in latest {
            let Some(tenant) = contact.get(contact_id) else {
                continue;
            };
            assert_eq!(inv.reference.as_deref(), Some("CSP 2026-10"));
            for li in &inv.line_items {
                match li.item_code.as_deref().and_then(parse_stock_code) {
                    Some((term, product)) => {
                        *v.psa[2].entry((tenant.clone(), product, term)).or_default() +=
                            li.quantity.to_u32().unwrap();
                    }
                    None => {
                        v.psa_unidentified[2].insert(tenant.clone());
                    }
                }
            }
        }
    }
    v
}

fn in_scope(row: &Planted, psa: usize) -> bool {
    row.psa.as_deref().is_none_or(|p| p == PSAS[psa])
}

/// Every line not planted is consistent in every system, and every planted row really differs
/// in the way it says.
fn check_world(w: &World) {
    let today = w.meta.today.unwrap();
    let v = view(w, today);
    let get = |m: &BTreeMap<Key, u32>, k: &Key| m.get(k).copied().unwrap_or(0);

    let mut line_rows: BTreeMap<Key, &Planted> = BTreeMap::new();
    let mut unmapped: BTreeSet<String> = BTreeSet::new();
    let mut sku_rows: BTreeSet<(String, String)> = BTreeSet::new();
    for row in &w.planted {
        assert!(
            status::ALL.contains(&row.status.as_str()),
            "unknown status {}",
            row.status
        );
        assert!(
            w.customers
                .iter()
                .any(|c| c.tenant_id == row.customer_tenant_id),
            "planted row for an unknown tenant"
        );
        if row.status == status::UNMAPPED_CUSTOMER {
            assert!(row.product_id.is_empty() && row.term.is_empty() && row.psa.is_none());
            assert!(
                unmapped.insert(row.customer_tenant_id.clone()),
                "customer unmapped twice"
            );
            continue;
        }
        let key = (
            row.customer_tenant_id.clone(),
            row.product_id.clone(),
            row.term.clone(),
        );
        assert!(
            line_rows.insert(key, row).is_none(),
            "two statuses on one line: {row:?}"
        );
        if [status::UNASSIGNED_SEATS, status::OVER_ASSIGNED].contains(&row.status.as_str()) {
            let sku =
                v.graph_sku[&(row.customer_tenant_id.clone(), row.product_id.clone())].clone();
            sku_rows.insert((row.customer_tenant_id.clone(), sku));
        }
    }

    // Customers map to exactly one record per PSA, except the unmapped ones (to none).
    for c in &w.customers {
        for p in 0..3 {
            let n = v.matches[p].get(&c.tenant_id).copied().unwrap_or(0);
            let want = if unmapped.contains(&c.tenant_id) {
                0
            } else {
                1
            };
            assert_eq!(n, want, "{} has {n} {} records", c.company_name, PSAS[p]);
        }
    }

    // Lines not planted agree everywhere.
    let keys: BTreeSet<Key> =
        v.ms.keys()
            .chain(v.dd.keys())
            .chain(v.psa.iter().flat_map(|m| m.keys()))
            .cloned()
            .collect();
    for k in &keys {
        if line_rows.contains_key(k) {
            continue;
        }
        let dd = get(&v.dd, k);
        assert_eq!(get(&v.ms, k), dd, "Microsoft vs Dicker Data on {k:?}");
        if !unmapped.contains(&k.0) {
            for p in 0..3 {
                assert_eq!(get(&v.psa[p], k), dd, "{} vs Dicker Data on {k:?}", PSAS[p]);
            }
        }
    }
    // Assigned equals purchased for every SKU not planted.
    let skus: BTreeSet<_> = v
        .purchased
        .keys()
        .chain(v.assigned.keys())
        .cloned()
        .collect();
    for s in &skus {
        if sku_rows.contains(s) {
            continue;
        }
        assert_eq!(
            v.assigned.get(s).copied().unwrap_or(0),
            v.purchased.get(s).copied().unwrap_or(0),
            "assigned vs purchased for {s:?}"
        );
    }
    // Lines a PSA cannot identify are planted.
    for p in 0..3 {
        for tenant in &v.psa_unidentified[p] {
            assert!(
                line_rows.iter().any(|(k, r)| &k.0 == tenant
                    && r.status == status::UNMAPPED_PRODUCT
                    && in_scope(r, p)),
                "{} has an unidentified line for {tenant} that is not planted",
                PSAS[p]
            );
        }
    }

    // Each planted row differs as recorded.
    for (k, row) in &line_rows {
        let (ms, dd) = (get(&v.ms, k), get(&v.dd, k));
        let psa = |p: usize| get(&v.psa[p], k);
        let psa_follows_dd = |except: &dyn Fn(usize) -> bool| {
            if unmapped.contains(&k.0) {
                return;
            }
            for p in 0..3 {
                if !except(p) {
                    assert_eq!(
                        psa(p),
                        dd,
                        "{} should equal Dicker Data on {row:?}",
                        PSAS[p]
                    );
                }
            }
        };
        let sku = || {
            let g = v.graph_sku[&(k.0.clone(), k.1.clone())].clone();
            let key = (k.0.clone(), g);
            (
                v.assigned.get(&key).copied().unwrap_or(0),
                v.purchased.get(&key).copied().unwrap_or(0),
            )
        };
        match row.status.as_str() {
            status::DISTRIBUTOR_MICROSOFT_MISMATCH => {
                assert!(ms > 0 && dd > 0 && ms != dd, "{row:?}: ms {ms} dd {dd}");
                psa_follows_dd(&|_| false);
            }
            status::PSA_UNDERBILLED | status::PSA_OVERBILLED => {
                assert!(
                    !unmapped.contains(&k.0),
                    "PSA status on an unmapped customer"
                );
                assert_eq!(ms, dd);
                let under = row.status == status::PSA_UNDERBILLED;
                for p in 0..3 {
                    if in_scope(row, p) {
                        let q = psa(p);
                        assert!(q > 0, "{row:?}");
                        assert!(
                            if under { q < dd } else { q > dd },
                            "{row:?}: {} {q} dd {dd}",
                            PSAS[p]
                        );
                    }
                }
                psa_follows_dd(&|p| in_scope(row, p));
            }
            status::UNASSIGNED_SEATS | status::OVER_ASSIGNED => {
                let (assigned, purchased) = sku();
                if row.status == status::UNASSIGNED_SEATS {
                    assert!(assigned < purchased, "{row:?}");
                } else {
                    assert!(assigned > purchased, "{row:?}");
                }
                assert_eq!(ms, dd);
                psa_follows_dd(&|_| false);
                let subs = w
                    .customers
                    .iter()
                    .find(|c| c.tenant_id == k.0)
                    .unwrap()
                    .subscriptions
                    .iter()
                    .filter(|s| v.graph_sku[&(k.0.clone(), k.1.clone())] == s.graph_sku_id)
                    .count();
                assert_eq!(
                    subs, 1,
                    "SKU status planted on a SKU with {subs} subscriptions"
                );
            }
            status::MISSING_AT_DISTRIBUTOR => {
                assert!(ms > 0 && dd == 0, "{row:?}");
                for p in 0..3 {
                    assert_eq!(psa(p), 0, "{row:?}");
                }
                let billed: BTreeSet<&String> = w
                    .dicker_data
                    .subscriptions
                    .iter()
                    .map(|d| &d.subscription_id)
                    .collect();
                for (id, (key, _)) in &v.ms_subs {
                    if key == k {
                        assert!(!billed.contains(id));
                    }
                }
            }
            status::BILLED_NOT_AT_MICROSOFT => {
                assert!(dd > 0 && ms == 0, "{row:?}");
                for id in &v.dd_sub_ids[k] {
                    assert!(v.ms_subs.get(id).is_none_or(|(_, st)| st != "active"));
                }
                psa_follows_dd(&|_| false);
            }
            status::UNMAPPED_PRODUCT => {
                assert!(
                    !unmapped.contains(&k.0),
                    "PSA status on an unmapped customer"
                );
                assert_eq!(ms, dd);
                for p in 0..3 {
                    if in_scope(row, p) {
                        assert_eq!(psa(p), 0, "{row:?}");
                        assert!(v.psa_unidentified[p].contains(&k.0), "{row:?}");
                    }
                }
                psa_follows_dd(&|p| in_scope(row, p));
            }
            other => panic!("unexpected line status {other}"),
        }
    }
    for tenant in &unmapped {
        assert!(
            v.dd.keys().any(|k| &k.0 == tenant),
            "unmapped customer bills nothing"
        );
    }
}

fn statuses(w: &World) -> BTreeSet<String> {
    w.planted.iter().map(|p| p.status.clone()).collect()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn same_options_give_byte_identical_worlds() {
    assert_eq!(pretty(&world(30, 7)), pretty(&world(30, 7)));
    assert_ne!(pretty(&world(30, 7)), pretty(&world(30, 8)));
    let later = generate(&GenOptions::new(
        30,
        7,
        NaiveDate::from_ymd_opt(2027, 3, 2).unwrap(),
    ));
    assert_ne!(pretty(&world(30, 7)), pretty(&later));
}

#[test]
fn customers_keep_their_identity_as_the_world_grows() {
    let small = world(5, 3);
    let big = world(40, 3);
    for (a, b) in small.customers.iter().zip(&big.customers) {
        assert_eq!(a.tenant_id, b.tenant_id);
        assert_eq!(a.company_name, b.company_name);
    }
}

#[test]
fn worlds_have_the_sizes_asked_for() {
    let empty = world(0, 1);
    assert!(empty.customers.is_empty() && empty.planted.is_empty());
    assert!(!empty.msp.users.is_empty());

    for (n, seed) in [(1, 1), (1, 2), (12, 42), (1000, 9)] {
        let w = world(n, seed);
        assert_eq!(w.customers.len(), n);
        assert!((15..=40).contains(&w.msp.users.len()));
        for c in &w.customers {
            assert!((1..=300).contains(&c.user_count), "{} users", c.user_count);
            // Microsoft's subscriptions plus any Dicker Data bills that Microsoft no longer lists.
            let subs: BTreeSet<&String> = c
                .subscriptions
                .iter()
                .map(|s| &s.id)
                .chain(
                    w.dicker_data
                        .subscriptions
                        .iter()
                        .filter(|d| d.tenant_id == c.tenant_id)
                        .map(|d| &d.subscription_id),
                )
                .collect();
            assert!(
                (1..=10).contains(&subs.len()),
                "{} subscriptions",
                subs.len()
            );
            assert!(c.domain.ends_with(".onmicrosoft.com"));
            assert!(!c.custom_domains.is_empty());
            assert_eq!(c.relationship_to_partner, "reseller");
        }
        assert_eq!(w.connectwise.agreements.len(), n);
        assert_eq!(w.autotask.contracts.len(), n);
        let names: BTreeSet<String> = w
            .customers
            .iter()
            .map(|c| norm_name(&c.company_name))
            .collect();
        assert_eq!(
            names.len(),
            n,
            "customer names must be unique once normalised"
        );
        check_world(&w);
    }
    let w = world(1000, 9);
    assert!(w.customers.iter().any(|c| !c.gdap_active));
    assert!(w.customers.iter().any(|c| c.country == "NZ"));
}

#[test]
fn every_planted_kind_appears_and_the_data_agrees() {
    for n in [12, 200] {
        for seed in 1..=5 {
            let w = world(n, seed);
            let got = statuses(&w);
            for s in status::ALL {
                assert!(got.contains(s), "N={n} seed={seed}: no {s}");
            }
            check_world(&w);
        }
    }
}

#[test]
fn many_small_worlds_are_consistent() {
    for seed in 100..160 {
        let n = (seed % 25) as usize + 1;
        check_world(&world(n, seed));
    }
}

#[test]
fn roughly_a_sixth_of_lines_are_planted() {
    for seed in 1..=5 {
        let w = world(200, seed);
        let v = view(&w, today());
        let lines: BTreeSet<&Key> = v.ms.keys().chain(v.dd.keys()).collect();
        let ratio = w.planted.len() as f64 / lines.len() as f64;
        assert!(
            (0.08..=0.25).contains(&ratio),
            "seed {seed}: {ratio:.3} of lines planted"
        );
        // Some PSA rows concern one PSA only, the rest all three.
        if seed == 1 {
            assert!(w.planted.iter().any(|p| p.psa.is_none()));
        }
    }
    let scoped = (1..=5)
        .flat_map(|s| world(200, s).planted)
        .filter(|p| p.psa.is_some())
        .count();
    assert!(scoped > 0, "no PSA-specific planted row in 5 worlds");
}

#[test]
fn dates_are_relative_to_today_and_spread() {
    let w = world(200, 4);
    let today = today();
    let mut new_or_added = 0;
    let mut renew_soon = 0;
    let mut two_terms = 0;
    let mut two_subs_one_line = 0;
    for c in &w.customers {
        let mut per_sku: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut per_line: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for s in &c.subscriptions {
            let created = s.creation_date.unwrap().date_naive();
            let start = s.effective_start_date.unwrap().date_naive();
            let end = s.commitment_end_date.unwrap().date_naive();
            assert!(created <= start && start <= today && today <= end, "{s:?}");
            let recent = |d: NaiveDate| (today - d).num_days() < 7;
            if recent(created)
                || s.seat_additions
                    .iter()
                    .any(|a| recent(a.added.unwrap().date_naive()))
            {
                new_or_added += 1;
            }
            if (end - today).num_days() <= 30 && s.term_duration != "P1M" {
                renew_soon += 1;
            }
            let added: u32 = s.seat_additions.iter().map(|a| a.quantity).sum();
            assert!(added < s.quantity);
            per_sku
                .entry(&s.graph_sku_id)
                .or_default()
                .insert(&s.term_duration);
            *per_line
                .entry((&s.graph_sku_id, &s.term_duration))
                .or_default() += 1;
        }
        two_terms += per_sku.values().filter(|t| t.len() > 1).count();
        two_subs_one_line += per_line.values().filter(|&&n| n > 1).count();
    }
    assert!(new_or_added > 0, "no open cancellation window anywhere");
    assert!(
        renew_soon > 0,
        "no annual subscription renews within 30 days"
    );
    assert!(two_terms > 0, "no customer has one SKU on two terms");
    assert!(
        two_subs_one_line > 0,
        "no customer has two subscriptions of one product and term"
    );
}

#[test]
fn ids_are_unique() {
    fn unique<T: Ord + std::fmt::Debug>(what: &str, items: impl IntoIterator<Item = T>) {
        let mut seen = BTreeSet::new();
        for i in items {
            assert!(seen.insert(format!("{i:?}")), "duplicate {what}: {i:?}");
        }
    }
    let w = world(300, 11);
    unique(
        "tenant id",
        w.customers
            .iter()
            .map(|c| &c.tenant_id)
            .chain([&w.msp.tenant_id]),
    );
    unique("commerce id", w.customers.iter().map(|c| &c.commerce_id));
    unique("initial domain", w.customers.iter().map(|c| &c.domain));
    unique(
        "custom domain",
        w.customers.iter().flat_map(|c| &c.custom_domains),
    );
    let subs = || w.customers.iter().flat_map(|c| &c.subscriptions);
    unique("subscription id", subs().map(|s| &s.id));
    unique("directory id", subs().map(|s| &s.directory_id));
    unique("order id", subs().map(|s| &s.order_id));
    unique("user id", w.msp.users.iter().map(|u| &u.id));
    unique(
        "upn",
        w.msp
            .users
            .iter()
            .map(|u| u.user_principal_name.to_lowercase()),
    );
    let dd = &w.dicker_data.subscriptions;
    unique("DD reference", dd.iter().map(|d| &d.subscription_reference));
    unique("DD subscription id", dd.iter().map(|d| &d.subscription_id));
    let cw = &w.connectwise;
    unique("CW company", cw.companies.iter().map(|c| c.id));
    unique(
        "CW identifier",
        cw.companies.iter().map(|c| c.identifier.to_lowercase()),
    );
    unique("CW agreement", cw.agreements.iter().map(|c| c.id));
    unique("CW addition", cw.additions.iter().map(|c| c.id));
    unique("CW catalog", cw.catalog.iter().map(|c| c.id));
    unique(
        "CW catalog identifier",
        cw.catalog.iter().map(|c| &c.identifier),
    );
    let at = &w.autotask;
    unique("AT company", at.companies.iter().map(|c| c.id));
    unique("AT contract", at.contracts.iter().map(|c| c.id));
    unique("AT service", at.services.iter().map(|c| c.id));
    unique(
        "AT contract service",
        at.contract_services.iter().map(|c| c.id),
    );
    unique("AT unit", at.contract_service_units.iter().map(|c| c.id));
    let org = &w.xero.organisations[0];
    unique("Xero contact", org.contacts.iter().map(|c| &c.contact_id));
    unique("Xero account", org.accounts.iter().map(|c| &c.account_id));
    unique("Xero account code", org.accounts.iter().map(|c| &c.code));
    unique("Xero invoice", org.invoices.iter().map(|c| &c.invoice_id));
    unique(
        "Xero invoice number",
        org.invoices.iter().map(|c| &c.invoice_number),
    );
    unique(
        "Xero line",
        org.invoices
            .iter()
            .flat_map(|i| &i.line_items)
            .map(|l| &l.line_item_id),
    );
}

#[test]
fn the_systems_are_shaped_as_documented() {
    let w = world(12, 42);
    assert_eq!(w.dicker_data.access_key_lifetime_secs, 600);
    for d in &w.dicker_data.subscriptions {
        assert_eq!(d.subscription_reference.len(), 8);
        assert!(
            d.subscription_reference
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert_eq!(d.company_name, d.company_name.to_uppercase());
        assert!(d.tenant_description.ends_with(".onmicrosoft.com"));
        assert!(d.stock_description.starts_with("MS NCE "));
        let plan = d.stock_code.split(':').nth(3).unwrap();
        assert_eq!(
            d.billing_frequency,
            if plan == "Y" { "Annual" } else { "Monthly" }
        );
        assert!(d.unit_cost > rust_decimal::Decimal::ZERO);
    }
    for a in &w.connectwise.agreements {
        assert_eq!(
            (
                a.type_name.as_str(),
                a.agreement_status.as_str(),
                a.billing_cycle.as_str()
            ),
            ("Microsoft CSP", "Active", "Monthly")
        );
    }
    for c in &w.autotask.contracts {
        assert_eq!((c.contract_type, c.status), (7, 1));
        assert!(c.start_date.unwrap() <= today() && today() <= c.end_date.unwrap());
    }
    let org = &w.xero.organisations[0];
    assert!(org.name.ends_with(" (AU)"));
    assert!(
        org.contacts
            .iter()
            .any(|c| c.name == "Dicker Data Limited" && c.is_supplier)
    );
    let codes: BTreeMap<&str, &str> = org
        .accounts
        .iter()
        .map(|a| (a.code.as_str(), a.account_type.as_str()))
        .collect();
    assert_eq!(codes["200"], "REVENUE");
    assert_eq!(codes["310"], "DIRECTCOSTS");
    assert_eq!(codes["090"], "BANK");
    let bills: Vec<_> = org
        .invoices
        .iter()
        .filter(|i| i.invoice_type == "ACCPAY")
        .collect();
    assert_eq!(bills.len(), 1);
    assert!(bills[0].line_items.iter().all(
        |l| l.account_code.as_deref() == Some("310") && l.tax_type.as_deref() == Some("INPUT")
    ));
    let msp = &w.msp;
    assert_eq!(msp.country, "AU");
    assert!(msp.mpn_id.chars().all(|c| c.is_ascii_digit()));
    assert!(
        msp.verified_domains
            .iter()
            .any(|d| d.is_default && !d.name.ends_with(".onmicrosoft.com"))
    );
    assert!(
        msp.verified_domains
            .iter()
            .any(|d| d.is_initial && d.name.ends_with(".onmicrosoft.com"))
    );
}

#[test]
fn staff_users_cover_the_permission_cases_and_scale() {
    let check =
        |n: usize| {
            let users = staff_users(&mut Rng::new(5), n, "msp.com.au", "msp.onmicrosoft.com");
            assert_eq!(users.len(), n);
            let first = &users[0];
            assert!(first.partner_roles.contains(&"GlobalAdmin".to_string()));
            assert!(first.partner_roles.contains(&"AdminAgent".to_string()));
            assert!(
                first.mfa
                    && first.account_enabled
                    && first.user_principal_name.ends_with("@msp.com.au")
            );
            let ids: BTreeSet<_> = users.iter().map(|u| &u.id).collect();
            let upns: BTreeSet<_> = users
                .iter()
                .map(|u| u.user_principal_name.to_lowercase())
                .collect();
            assert_eq!((ids.len(), upns.len()), (n, n));
            let guests: Vec<_> = users.iter().filter(|u| u.user_type == "Guest").collect();
            assert!(guests.len() >= 2);
            assert!(
                guests
                    .iter()
                    .all(|u| u.user_principal_name.contains("#EXT#@msp.onmicrosoft.com"))
            );
            assert!(users.iter().filter(|u| !u.account_enabled).count() >= 2);
            let agents = users
                .iter()
                .filter(|u| u.partner_roles.contains(&"AdminAgent".to_string()));
            assert!(agents.count() >= 4);
            assert!(users.iter().any(|u| u.user_type == "Member"
                && u.user_principal_name.ends_with("@msp.onmicrosoft.com")));
            assert!(
                users
                    .iter()
                    .any(|u| u.partner_roles.contains(&"AdminAgent".to_string()) && !u.mfa)
            );
        };
    check(15);
    check(40);
    check(50_000);
    assert!(staff_users(&mut Rng::new(1), 0, "a", "b").is_empty());
    assert_eq!(staff_users(&mut Rng::new(1), 1, "a", "b").len(), 1);
}

#[test]
fn every_dataset_field_round_trips_through_json() {
    for w in [world(12, 42), world(60, 5)] {
        let text = pretty(&w);
        let back = World::from_json(&text).unwrap();
        assert_eq!(pretty(&back), text);
    }
}

#[test]
fn the_hand_written_example_in_the_docs_loads() {
    let doc = std::fs::read_to_string(repo_file("docs/dataset.md")).unwrap();
    let marker = "<!-- example-dataset -->";
    let start = doc
        .find(marker)
        .expect("docs/dataset.md has no example dataset marker");
    let rest = &doc[start..];
    let open = rest.find("```json\n").unwrap() + "```json\n".len();
    let close = rest[open..].find("```").unwrap();
    let w = World::from_json(&rest[open..open + close]).unwrap();
    assert_eq!(w.customers.len(), 1);
    assert_eq!(w.dicker_data.subscriptions.len(), 1);
    assert_eq!(w.connectwise.additions.len(), 1);
    assert!(!w.msp.users.is_empty());
}

/// Compare a committed file with what the code makes; rewrite it when asked to.
fn check_file(rel: &str, expected: &str) {
    let path = repo_file(rel);
    if std::env::var_os(REGENERATE).is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{rel} is out of date with the code; regenerate it with `{REGENERATE}=1 cargo test --test world`"
    );
}

#[test]
fn the_demo_asset_is_the_generated_demo_world() {
    let (y, m, d) = generate::DEMO_TODAY;
    let demo = generate::demo(NaiveDate::from_ymd_opt(y, m, d).unwrap());
    check_file("assets/demo-world.json", &pretty(&demo));
    check_world(&demo);
}

#[test]
fn the_schema_file_is_the_derived_schema() {
    let schema = serde_json::to_string_pretty(&World::json_schema()).unwrap() + "\n";
    check_file("docs/dataset.schema.json", &schema);
}
