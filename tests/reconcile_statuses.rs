//! Every status, the mapping rules, the money and the windows, on hand-built snapshots (the
//! records written the way each API sends them, decoded by the clients' own models).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use cspsync::api::error::{Api, ApiError, ErrorKind};
use cspsync::domain::{
    self, CustomerOverride, Field, Line, Options, Overrides, PriceBook, ProductOverride, PsaLink,
    PsaProductRef, Reconciliation, Status, Term,
};
use cspsync::engine::fetch::{
    AutotaskSnapshot, ConnectWiseSnapshot, CustomerFetch, GraphTenant, PsaSnapshot, Snapshot,
    XeroSnapshot,
};

const BP: &str = "CFQ7TTC0LCHC:0002";
const BP_SKU: &str = "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46";
const BP_P1Y: &str = "P1Y:CFQ7TTC0LCHC:0002:1:";
const BP_P1M: &str = "P1M:CFQ7TTC0LCHC:0002:1:";
const T1: &str = "b44bb1fb-c595-45b0-9e09-d657365580bf";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

fn de<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

// ----- Microsoft ------------------------------------------------------------------------------

struct Sub {
    id: &'static str,
    product: &'static str,
    qty: u32,
    status: &'static str,
    term: &'static str,
    cycle: &'static str,
    created: DateTime<Utc>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn sub(id: &'static str, qty: u32) -> Sub {
    Sub {
        id,
        product: BP,
        qty,
        status: "active",
        term: "P1Y",
        cycle: "monthly",
        created: now() - Duration::days(400),
        start: now() - Duration::days(35),
        end: now() + Duration::days(330),
    }
}

fn pc_sub(s: &Sub) -> cspsync::api::partnercenter::Subscription {
    de(json!({
        "id": s.id, "offerId": format!("{}:CFQ7TTC0K5DJ", s.product),
        "offerName": "Microsoft 365 Business Premium", "quantity": s.qty, "status": s.status,
        "billingCycle": s.cycle, "termDuration": s.term,
        "creationDate": ts(s.created), "effectiveStartDate": ts(s.start),
        "commitmentEndDate": ts(s.end), "actions": ["ChangeQuantity"]
    }))
}

struct Cust {
    tenant: &'static str,
    name: &'static str,
    domains: Vec<&'static str>,
    subs: Vec<Sub>,
    /// Graph: `None` = no GDAP; else consumed units of the Business Premium SKU.
    assigned: Option<i64>,
    subs_readable: bool,
}

fn cust(tenant: &'static str, name: &'static str, subs: Vec<Sub>, assigned: Option<i64>) -> Cust {
    Cust {
        tenant,
        name,
        domains: vec![],
        subs,
        assigned,
        subs_readable: true,
    }
}

fn customer_fetch(c: &Cust) -> CustomerFetch {
    let customer = de(json!({
        "id": c.tenant,
        "companyProfile": {"tenantId": c.tenant, "companyName": c.name, "domain": "x.onmicrosoft.com"},
        "customDomains": c.domains,
    }));
    let subs: Vec<_> = c.subs.iter().map(pc_sub).collect();
    let graph = match c.assigned {
        None => Err(ApiError::new(
            Api::Graph,
            ErrorKind::Forbidden,
            "cannot read the tenant: there is no GDAP relationship",
        )),
        Some(consumed) => Ok(GraphTenant {
            skus: vec![de(json!({
                "skuId": BP_SKU, "skuPartNumber": "SPB", "consumedUnits": consumed,
                "prepaidUnits": {"enabled": c.subs.iter().filter(|s| s.status == "active").map(|s| s.qty).sum::<u32>()}
            }))],
            subscriptions: c
                .subs
                .iter()
                .map(|s| {
                    de(
                        json!({"id": format!("dir-{}", s.id), "commerceSubscriptionId": s.id,
                              "skuId": BP_SKU, "skuPartNumber": "SPB", "status": "Enabled"}),
                    )
                })
                .collect(),
        }),
    };
    CustomerFetch {
        customer,
        subscriptions: if c.subs_readable {
            Ok(subs)
        } else {
            Err(ApiError::new(
                Api::PartnerCenter,
                ErrorKind::Forbidden,
                "the customer's subscriptions cannot be read",
            ))
        },
        graph,
    }
}

// ----- Dicker Data ----------------------------------------------------------------------------

fn dd(
    tenant: &str,
    sub: &str,
    code: &str,
    qty: u32,
    status: &str,
) -> cspsync::api::dickerdata::Subscription {
    de(json!({
        "TenantId": tenant, "SubscriptionReference": format!("R{}", &sub[..sub.len().min(6)]),
        "CompanyName": "ATLAS OUTSOURCING PTY LTD", "StockCode": code,
        "ManufacturerStockCode": BP, "SubscriptionId": sub, "Status": status,
        "BillingFrequency": "Monthly", "ConfirmedQuantity": qty,
        "ExpiryDate": "2027-10-17T00:00:00", "StockDescription": "MS NCE M365 BUSINESS PREMIUM 1 YR COMMIT"
    }))
}

// ----- ConnectWise ----------------------------------------------------------------------------

struct Cw {
    companies: Vec<Value>,
    agreements: Vec<Value>,
    additions: Vec<(u64, Value)>,
    catalog: Vec<Value>,
}

impl Cw {
    fn new() -> Cw {
        Cw {
            companies: vec![],
            agreements: vec![],
            additions: vec![],
            catalog: vec![
                json!({"id": 731, "identifier": "M365BP-P1Y", "description": "Microsoft 365 Business Premium (NCE, 1 year)",
                       "price": 32.90, "cost": 28.95, "manufacturerPartNumber": BP, "vendorSku": BP_P1Y}),
                json!({"id": 732, "identifier": "M365BP-P1M", "description": "Microsoft 365 Business Premium (NCE, monthly)",
                       "price": 39.48, "cost": 34.74, "manufacturerPartNumber": BP, "vendorSku": BP_P1M}),
            ],
        }
    }

    /// A company with one Monthly agreement (id = company id + 1000).
    fn company(mut self, id: u64, name: &str, website: Option<&str>) -> Cw {
        self.companies.push(
            json!({"id": id, "identifier": format!("C{id}"), "name": name,
                                   "website": website, "types": [{"id": 1, "name": "Client"}]}),
        );
        self.agreements.push(json!({"id": id + 1000, "name": "Microsoft CSP", "company": {"id": id},
                                    "agreementStatus": "Active", "billingCycle": {"id": 1, "name": "Monthly"}}));
        self
    }

    fn addition(mut self, company: u64, id: u64, item: u64, qty: i64) -> Cw {
        self.additions.push((
            company + 1000,
            json!({"id": id, "product": {"id": item}, "quantity": qty, "unitPrice": 32.90,
                   "unitCost": 28.95, "billCustomer": "Billable", "agreementId": company + 1000}),
        ));
        self
    }

    fn snapshot(self) -> PsaSnapshot {
        let mut additions: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        for (a, v) in self.additions {
            additions.entry(a).or_default().push(de(v));
        }
        PsaSnapshot::ConnectWise(ConnectWiseSnapshot {
            companies: self.companies.into_iter().map(de).collect(),
            agreements: self.agreements.into_iter().map(de).collect(),
            additions,
            catalog: self.catalog.into_iter().map(de).collect(),
        })
    }
}

fn snapshot(
    custs: &[Cust],
    lines: Vec<cspsync::api::dickerdata::Subscription>,
    psa: Option<PsaSnapshot>,
) -> Snapshot {
    Snapshot {
        started: now() - Duration::seconds(5),
        finished: now(),
        customers: custs.iter().map(customer_fetch).collect(),
        gdap: Ok(vec![]),
        dicker_data: Ok(lines),
        psa: psa.map(Ok),
    }
}

fn prices() -> PriceBook {
    PriceBook {
        unit_costs: [
            (BP_P1Y.to_string(), Decimal::new(2895, 2)),
            (BP_P1M.to_string(), Decimal::new(3474, 2)),
        ]
        .into_iter()
        .collect(),
        fetched_at: Some(now()),
    }
}

fn run(snap: &Snapshot, overrides: Overrides) -> Reconciliation {
    domain::reconcile(
        snap,
        &Options {
            overrides,
            prices: prices(),
            now: None,
        },
    )
    .unwrap()
}

fn only_line(r: &Reconciliation) -> &Line {
    assert_eq!(r.lines.len(), 1, "{:#?}", r.lines);
    &r.lines[0]
}

fn money(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// The Atlas world: 25 seats everywhere.
fn atlas(ms: u32, dd_qty: u32, assigned: i64, cw_qty: i64) -> Snapshot {
    snapshot(
        &[cust(
            T1,
            "Atlas Outsourcing Pty Ltd",
            vec![sub("s1", ms)],
            Some(assigned),
        )],
        vec![dd(T1, "s1", BP_P1Y, dd_qty, "ACTIVE")],
        Some(
            Cw::new()
                .company(250, "Atlas Outsourcing Pty. Ltd.", None)
                .addition(250, 9012, 731, cw_qty)
                .snapshot(),
        ),
    )
}

// ----- Statuses -------------------------------------------------------------------------------

#[test]
fn in_line_when_every_system_agrees() {
    let r = run(&atlas(25, 25, 25, 25), Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::InLine]);
    assert_eq!(l.product_id, BP);
    assert_eq!(l.term, Term::P1Y);
    assert_eq!(l.stock_code.as_deref(), Some(BP_P1Y));
    assert_eq!(
        (l.distributor_qty, l.microsoft_qty, l.assigned, l.psa_qty),
        (Some(25), Some(25), Some(25), Some(Decimal::from(25)))
    );
    assert_eq!(l.monthly_impact, Decimal::ZERO);
    assert!(r.summary.all_clean());
    assert_eq!(r.summary.lines_audited, 1);
    assert_eq!(r.summary.in_line, 1);
}

#[test]
fn distributor_microsoft_mismatch_costs_the_gap_at_dicker_data_prices() {
    let r = run(&atlas(25, 27, 25, 27), Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::DistributorMicrosoftMismatch]);
    assert_eq!(l.monthly_impact, money("57.90")); // 2 × 28.95
    let e = l.explanation(Field::DistributorQty).unwrap();
    assert_eq!(e.sources[0].api, Api::DickerData);
    assert!(
        e.sources[0].detail.contains("ConfirmedQuantity 27"),
        "{e:?}"
    );
    assert!(!r.summary.all_clean());
}

#[test]
fn psa_underbilled_and_overbilled_cost_the_gap_at_the_psa_price() {
    let r = run(&atlas(25, 25, 25, 20), Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::PsaUnderbilled]);
    assert_eq!(l.monthly_impact, money("164.50")); // 5 × 32.90
    let e = l.explanation(Field::PsaQty).unwrap();
    assert!(e.sources[0].id.contains("addition 9012"), "{e:?}");
    assert!(e.how.contains("names are equal"), "{}", e.how);

    let r = run(&atlas(25, 25, 25, 31), Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::PsaOverbilled]);
    assert_eq!(l.monthly_impact, money("197.40")); // 6 × 32.90
    assert_eq!(r.summary.monthly_at_risk, money("197.40"));
}

#[test]
fn unassigned_and_over_assigned_seats() {
    let r = run(&atlas(25, 25, 20, 25), Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::UnassignedSeats]);
    assert_eq!(l.monthly_impact, money("144.75")); // 5 × 28.95

    let r = run(&atlas(25, 25, 27, 25), Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::OverAssigned]);
    assert_eq!(l.monthly_impact, Decimal::ZERO);
}

#[test]
fn assigned_is_per_sku_shared_by_terms_and_costed_once() {
    let mut flex = sub("s2", 5);
    flex.term = "P1M";
    flex.end = now() + Duration::days(10);
    let snap = snapshot(
        &[cust(
            T1,
            "Atlas Outsourcing",
            vec![sub("s1", 20), flex],
            Some(22),
        )],
        vec![
            dd(T1, "s1", BP_P1Y, 20, "ACTIVE"),
            dd(T1, "s2", BP_P1M, 5, "ACTIVE"),
        ],
        None,
    );
    let r = run(&snap, Overrides::default());
    assert_eq!(r.lines.len(), 2, "different terms stay apart");
    for l in &r.lines {
        assert_eq!(l.statuses, vec![Status::UnassignedSeats]);
        assert_eq!((l.assigned, l.sku_purchased), (Some(22), Some(25)));
    }
    let total: Decimal = r.lines.iter().map(|l| l.monthly_impact).sum();
    // 3 unassigned seats, once, on the monthly line (the first of the SKU): 3 × 34.74.
    assert_eq!(total, money("104.22"));
    let p1m = r.lines.iter().find(|l| l.term == Term::P1M).unwrap();
    assert_eq!(p1m.monthly_impact, money("104.22"));
}

#[test]
fn missing_at_distributor() {
    let snap = snapshot(
        &[cust(T1, "Atlas Outsourcing", vec![sub("s1", 25)], Some(25))],
        vec![],
        Some(Cw::new().company(250, "Atlas Outsourcing", None).snapshot()),
    );
    let r = run(&snap, Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::MissingAtDistributor]);
    assert_eq!((l.distributor_qty, l.psa_qty), (None, None));
    assert_eq!(l.monthly_impact, money("723.75")); // 25 × 28.95

    // A cancelled Dicker Data line bills nothing either.
    let snap = snapshot(
        &[cust(T1, "Atlas Outsourcing", vec![sub("s1", 25)], Some(25))],
        vec![dd(T1, "s1", BP_P1Y, 25, "CANCELLED")],
        None,
    );
    let r = run(&snap, Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::MissingAtDistributor]);
    assert_eq!(l.distributor_qty, Some(0));
}

#[test]
fn billed_not_at_microsoft_is_not_also_a_quantity_mismatch() {
    for status in ["suspended", "deleted"] {
        let mut s = sub("s1", 10);
        s.status = status;
        let snap = snapshot(
            &[cust(T1, "Atlas Outsourcing", vec![s], Some(0))],
            vec![dd(T1, "s1", BP_P1Y, 10, "ACTIVE")],
            Some(
                Cw::new()
                    .company(250, "Atlas Outsourcing", None)
                    .addition(250, 1, 731, 10)
                    .snapshot(),
            ),
        );
        let r = run(&snap, Overrides::default());
        let l = only_line(&r);
        assert_eq!(l.statuses, vec![Status::BilledNotAtMicrosoft], "{status}");
        assert_eq!(l.microsoft_qty, Some(0));
        assert_eq!(l.monthly_impact, money("289.50")); // 10 × 28.95
        let c = l.explanation(Field::Customer).unwrap();
        assert!(c.how.contains(status), "{}", c.how);
    }
    // A subscription Microsoft never had.
    let snap = snapshot(
        &[cust(T1, "Atlas Outsourcing", vec![], Some(0))],
        vec![dd(T1, "ghost", BP_P1Y, 4, "ACTIVE")],
        None,
    );
    let r = run(&snap, Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::BilledNotAtMicrosoft]);
    assert_eq!((l.microsoft_qty, l.distributor_qty), (None, Some(4)));
}

#[test]
fn a_tenant_partner_center_does_not_list_is_billed_not_at_microsoft() {
    let snap = snapshot(
        &[],
        vec![dd("other-tenant", "s9", BP_P1Y, 3, "ACTIVE")],
        None,
    );
    let r = run(&snap, Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::BilledNotAtMicrosoft]);
    assert_eq!(l.customer_name, "ATLAS OUTSOURCING PTY LTD");
    assert!(!r.mapping.customers[0].at_microsoft);
}

#[test]
fn unmapped_customer_gets_ranked_suggestions_and_no_psa_verdict() {
    let snap = snapshot(
        &[cust(
            T1,
            "Redgum Wealth Pty Ltd",
            vec![sub("s1", 7)],
            Some(7),
        )],
        vec![dd(T1, "s1", BP_P1Y, 7, "ACTIVE")],
        Some(
            Cw::new()
                .company(300, "City Wealth", Some("citywealth.net.au"))
                .addition(300, 1, 731, 7)
                .company(301, "Harbour Wealth Advisers", None)
                .snapshot(),
        ),
    );
    let r = run(&snap, Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::UnmappedCustomer]);
    assert_eq!(l.psa_qty, None);
    assert_eq!(r.summary.unmapped_customers, 1);
    let PsaLink::Unmapped { suggestions } = &r.mapping.customers[0].psa else {
        panic!("not unmapped: {:?}", r.mapping.customers[0].psa);
    };
    assert_eq!(suggestions[0].label, "City Wealth");
    assert!(
        suggestions[0]
            .reasons
            .iter()
            .any(|x| x.contains("same quantities")),
        "{suggestions:?}"
    );
    assert!(
        suggestions
            .iter()
            .any(|s| s.label == "Harbour Wealth Advisers")
    );
    assert!(suggestions[0].score > suggestions[1].score);
    assert_eq!(r.mapping.unclaimed_psa_customers.len(), 1);

    // Accepting the suggestion is a manual override: then the line is checked, and in line.
    let o = Overrides {
        customers: vec![CustomerOverride {
            tenant_id: T1.to_uppercase(),
            psa: Some(suggestions[0].target.clone()),
        }],
        products: vec![],
    };
    let r = run(&snap, o);
    assert_eq!(only_line(&r).statuses, vec![Status::InLine]);
    assert!(matches!(
        r.mapping.customers[0].psa,
        PsaLink::Mapped {
            reason: domain::MatchReason::Manual,
            ..
        }
    ));

    // Marked as not billed in the PSA: not unmapped, not checked.
    let o = Overrides {
        customers: vec![CustomerOverride {
            tenant_id: T1.into(),
            psa: None,
        }],
        products: vec![],
    };
    let r = run(&snap, o);
    assert_eq!(only_line(&r).statuses, vec![Status::InLine]);
    assert_eq!(r.summary.unmapped_customers, 0);
}

#[test]
fn customers_map_by_domain_but_never_ambiguously() {
    let mut c = cust(T1, "Atlas Outsourcing Pty Ltd", vec![sub("s1", 5)], Some(5));
    c.domains = vec!["atlas.com.au"];
    let snap = |cw: Cw| {
        snapshot(
            &[c_clone(&c)],
            vec![dd(T1, "s1", BP_P1Y, 5, "ACTIVE")],
            Some(cw.snapshot()),
        )
    };
    // A different name, the customer's domain: linked by domain.
    let r = run(
        &snap(
            Cw::new()
                .company(250, "Atlas Group", Some("https://www.atlas.com.au/"))
                .addition(250, 1, 731, 5),
        ),
        Overrides::default(),
    );
    assert_eq!(only_line(&r).statuses, vec![Status::InLine]);
    assert!(matches!(
        &r.mapping.customers[0].psa,
        PsaLink::Mapped { reason: domain::MatchReason::Domain { domain }, .. } if domain == "atlas.com.au"
    ));
    // Two records with the same normalised name: neither is taken.
    let r = run(
        &snap(
            Cw::new()
                .company(250, "ATLAS OUTSOURCING", None)
                .addition(250, 1, 731, 5)
                .company(251, "Atlas Outsourcing Limited", None),
        ),
        Overrides::default(),
    );
    assert_eq!(only_line(&r).statuses, vec![Status::UnmappedCustomer]);
    let PsaLink::Unmapped { suggestions } = &r.mapping.customers[0].psa else {
        panic!()
    };
    assert_eq!(suggestions.len(), 2);
    assert!(
        suggestions
            .iter()
            .all(|s| s.reasons[0].contains("but so does"))
    );
    // Not fuzzy: "Atlas Outsourcing Services" is not "Atlas Outsourcing".
    let r = run(
        &snap(
            Cw::new()
                .company(250, "Atlas Outsourcing Services", None)
                .addition(250, 1, 731, 5),
        ),
        Overrides::default(),
    );
    assert_eq!(only_line(&r).statuses, vec![Status::UnmappedCustomer]);
}

fn c_clone(c: &Cust) -> Cust {
    Cust {
        tenant: c.tenant,
        name: c.name,
        domains: c.domains.clone(),
        subs: c
            .subs
            .iter()
            .map(|s| Sub {
                id: s.id,
                product: s.product,
                qty: s.qty,
                status: s.status,
                term: s.term,
                cycle: s.cycle,
                created: s.created,
                start: s.start,
                end: s.end,
            })
            .collect(),
        assigned: c.assigned,
        subs_readable: c.subs_readable,
    }
}

#[test]
fn unmapped_product_and_its_override() {
    let mut cw = Cw::new().company(250, "Atlas Outsourcing", None);
    cw.catalog.push(json!({"id": 747, "identifier": "LEGACY-M365BP",
                           "description": "Microsoft 365 Business Premium licences (legacy item)", "price": 32.90}));
    let cw = cw.addition(250, 1, 747, 25);
    let snap = snapshot(
        &[cust(T1, "Atlas Outsourcing", vec![sub("s1", 25)], Some(25))],
        vec![dd(T1, "s1", BP_P1Y, 25, "ACTIVE")],
        Some(cw.snapshot()),
    );
    let r = run(&snap, Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.statuses, vec![Status::UnmappedProduct]);
    assert_eq!(l.psa_qty, None);
    assert_eq!(
        l.suggestions[0].target,
        PsaProductRef::ConnectwiseCatalogItem(747)
    );
    assert_eq!(r.summary.unmapped_products, 1);
    let u = &r.mapping.unmapped_psa_products[0];
    assert_eq!(u.suggestions[0].target, BP_P1Y);

    let o = Overrides {
        customers: vec![],
        products: vec![ProductOverride {
            psa_product: PsaProductRef::ConnectwiseCatalogItem(747),
            stock_code: BP_P1Y.into(),
        }],
    };
    let r = run(&snap, o);
    assert_eq!(only_line(&r).statuses, vec![Status::InLine]);
    assert_eq!(r.summary.unmapped_products, 0);
}

#[test]
fn an_underbilled_line_stays_underbilled_beside_an_unmapped_one() {
    let mut flex = sub("s2", 4);
    flex.term = "P1M";
    let mut cw = Cw::new().company(250, "Atlas Outsourcing", None);
    cw.catalog
        .push(json!({"id": 747, "identifier": "LEGACY", "description": "Legacy"}));
    let cw = cw.addition(250, 1, 731, 20).addition(250, 2, 747, 4);
    let snap = snapshot(
        &[cust(
            T1,
            "Atlas Outsourcing",
            vec![sub("s1", 25), flex],
            Some(29),
        )],
        vec![
            dd(T1, "s1", BP_P1Y, 25, "ACTIVE"),
            dd(T1, "s2", BP_P1M, 4, "ACTIVE"),
        ],
        Some(cw.snapshot()),
    );
    let r = run(&snap, Overrides::default());
    let by_term = |t: Term| r.lines.iter().find(|l| l.term == t).unwrap();
    assert_eq!(by_term(Term::P1Y).statuses, vec![Status::PsaUnderbilled]);
    assert_eq!(by_term(Term::P1M).statuses, vec![Status::UnmappedProduct]);
}

#[test]
fn subscriptions_of_one_product_and_term_add_up_and_terms_stay_apart() {
    let mut later = sub("s2", 5);
    later.created = now() - Duration::days(20);
    let mut monthly = sub("s3", 3);
    monthly.term = "P1M";
    let snap = snapshot(
        &[cust(
            T1,
            "Atlas Outsourcing",
            vec![sub("s1", 10), later, monthly],
            Some(18),
        )],
        vec![
            dd(T1, "s1", BP_P1Y, 10, "ACTIVE"),
            dd(T1, "s2", BP_P1Y, 5, "ACTIVE"),
            dd(T1, "s3", BP_P1M, 3, "ACTIVE"),
        ],
        None,
    );
    let r = run(&snap, Overrides::default());
    assert_eq!(r.lines.len(), 2);
    let y = r.lines.iter().find(|l| l.term == Term::P1Y).unwrap();
    let m = r.lines.iter().find(|l| l.term == Term::P1M).unwrap();
    assert_eq!((y.microsoft_qty, y.distributor_qty), (Some(15), Some(15)));
    assert_eq!((m.microsoft_qty, m.distributor_qty), (Some(3), Some(3)));
    assert!(y.is_in_line() && m.is_in_line());
    assert_eq!(y.explanation(Field::MicrosoftQty).unwrap().sources.len(), 2);
}

#[test]
fn cancellation_windows_and_renewal_dates() {
    // Bought 10 hours ago: 158 h left.
    let mut fresh = sub("s1", 5);
    fresh.created = now() - Duration::hours(10);
    fresh.start = fresh.created;
    fresh.end = now() + Duration::days(364);
    // A monthly term renewed 30 hours ago: its own window, 138 h left.
    let mut renewed = sub("s2", 3);
    renewed.term = "P1M";
    renewed.created = now() - Duration::days(300);
    renewed.start = now() - Duration::hours(30);
    // As Partner Center dates a term: one month from its start, less a day.
    renewed.end = renewed
        .start
        .checked_add_months(chrono::Months::new(1))
        .unwrap()
        - Duration::days(1);
    // Bought 200 hours ago: closed.
    let mut old = sub("s3", 2);
    old.term = "P3Y";
    old.cycle = "annual";
    old.created = now() - Duration::hours(200);
    old.start = old.created;
    let snap = snapshot(
        &[cust(
            T1,
            "Atlas Outsourcing",
            vec![fresh, renewed, old],
            Some(10),
        )],
        vec![],
        None,
    );
    let r = run(&snap, Overrides::default());
    let term = |t: Term| r.lines.iter().find(|l| l.term == t).unwrap();
    assert_eq!(term(Term::P1Y).cancel_window_hours_left, Some(158));
    assert_eq!(term(Term::P1M).cancel_window_hours_left, Some(138));
    assert_eq!(term(Term::P3Y).cancel_window_hours_left, None);
    assert_eq!(
        term(Term::P1M).renewal_date,
        Some(chrono::NaiveDate::from_ymd_opt(2026, 12, 19).unwrap())
    );
    assert_eq!(term(Term::P3Y).billing, domain::Billing::Annual);
    let e = term(Term::P1Y).explanation(Field::CancelWindow).unwrap();
    assert!(e.how.contains("seats were added"), "{}", e.how);
}

#[test]
fn nothing_audited_is_never_all_clean() {
    let r = run(&snapshot(&[], vec![], None), Overrides::default());
    assert_eq!(r.summary.lines_audited, 0);
    assert!(!r.summary.all_clean());
    assert!(r.summary.headline().contains("nothing was checked"));
    let t = domain::export::to_table(&r, Default::default());
    assert!(t.contains("nothing was audited"), "{t}");
}

#[test]
fn a_customer_that_cannot_be_read_is_not_audited_and_not_clean() {
    let mut c = cust(T1, "Atlas Outsourcing", vec![sub("s1", 5)], Some(5));
    c.subs_readable = false;
    let ok = cust("t2", "Kauri Logistics", vec![sub("k1", 2)], Some(2));
    let snap = snapshot(
        &[c, ok],
        vec![
            dd(T1, "s1", BP_P1Y, 5, "ACTIVE"),
            dd("t2", "k1", BP_P1Y, 2, "ACTIVE"),
        ],
        None,
    );
    let r = run(&snap, Overrides::default());
    assert_eq!(r.lines.len(), 1, "only the readable customer has lines");
    assert_eq!(r.lines[0].customer_name, "Kauri Logistics");
    assert_eq!(r.summary.customers_not_read.len(), 1);
    assert!(!r.summary.all_clean());
    assert!(r.summary.headline().contains("NOT audited"));
}

#[test]
fn no_gdap_means_assigned_is_not_checked() {
    let snap = snapshot(
        &[cust(T1, "Atlas Outsourcing", vec![sub("s1", 5)], None)],
        vec![dd(T1, "s1", BP_P1Y, 5, "ACTIVE")],
        None,
    );
    let r = run(&snap, Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.assigned, None);
    assert!(l.is_in_line());
    assert_eq!(r.summary.customers_without_graph.len(), 1);
    assert!(l.explanation(Field::Assigned).unwrap().how.contains("GDAP"));
}

#[test]
fn a_source_that_failed_as_a_whole_fails_the_reconciliation() {
    let mut snap = atlas(5, 5, 5, 5);
    snap.dicker_data = Err(ApiError::new(
        Api::DickerData,
        ErrorKind::Unauthorized,
        "the Access Code was refused",
    ));
    let e = domain::reconcile(&snap, &Options::default()).unwrap_err();
    assert_eq!(e.api, Api::DickerData);
    let mut snap = atlas(5, 5, 5, 5);
    snap.psa = Some(Err(ApiError::new(
        Api::ConnectWise,
        ErrorKind::Forbidden,
        "no rights",
    )));
    assert!(domain::reconcile(&snap, &Options::default()).is_err());
}

#[test]
fn connectwise_skips_cancelled_additions_and_divides_annual_prices() {
    let mut cw = Cw::new().company(250, "Atlas Outsourcing", None);
    cw.agreements[0]["billingCycle"] = json!({"id": 4, "name": "Annual"});
    let mut cw = cw.addition(250, 1, 731, 20).addition(250, 2, 731, 5);
    cw.additions[0].1["unitPrice"] = json!(394.80);
    cw.additions[1].1["cancelledDate"] = json!("2026-10-01T00:00:00Z");
    let snap = snapshot(
        &[cust(T1, "Atlas Outsourcing", vec![sub("s1", 25)], Some(25))],
        vec![dd(T1, "s1", BP_P1Y, 25, "ACTIVE")],
        Some(cw.snapshot()),
    );
    let r = run(&snap, Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.psa_qty, Some(Decimal::from(20)));
    assert_eq!(l.statuses, vec![Status::PsaUnderbilled]);
    assert_eq!(l.monthly_impact, money("164.50")); // 5 × 394.80 / 12
    assert!(r.mapping.notes.iter().any(|n| n.contains("cancelled")));
}

#[test]
fn autotask_counts_the_units_in_force() {
    let at = AutotaskSnapshot {
        companies: vec![de(
            json!({"id": 500, "companyName": "Atlas Outsourcing Pty Ltd", "isActive": true}),
        )],
        contracts: vec![de(
            json!({"id": 7001, "companyID": 500, "contractType": 7, "status": 1}),
        )],
        services: vec![de(
            json!({"id": 9001, "name": "M365 BP", "sku": BP_P1Y, "unitPrice": 32.90, "unitCost": 28.95}),
        )],
        contract_services: vec![de(
            json!({"id": 12001, "contractID": 7001, "serviceID": 9001, "unitPrice": 32.90, "adjustedPrice": 30.00}),
        )],
        current_units: vec![de(
            json!({"id": 1, "contractServiceID": 12001, "startDate": "2026-11-01", "endDate": "2026-11-30", "units": 22}),
        )],
    };
    let snap = snapshot(
        &[cust(T1, "Atlas Outsourcing", vec![sub("s1", 25)], Some(25))],
        vec![dd(T1, "s1", BP_P1Y, 25, "ACTIVE")],
        Some(PsaSnapshot::Autotask(at)),
    );
    let r = run(&snap, Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.psa_qty, Some(Decimal::from(22)));
    assert_eq!(l.statuses, vec![Status::PsaUnderbilled]);
    assert_eq!(l.monthly_impact, money("90.00")); // 3 × the adjusted 30.00
}

#[test]
fn xero_reads_the_latest_live_sales_invoice() {
    let contact = "0f3d2c1b-aaaa-bbbb-cccc-123456789abc";
    let inv = |id: &str, typ: &str, date: &str, status: &str, qty: i64| {
        json!({"InvoiceID": id, "Type": typ, "Contact": {"ContactID": contact}, "Date": date,
               "Status": status, "InvoiceNumber": id,
               "LineItems": [{"Description": "M365 BP", "Quantity": qty, "UnitAmount": 32.90, "ItemCode": BP_P1Y}]})
    };
    let x = XeroSnapshot {
        tenant_id: "org".into(),
        contacts: vec![de(
            json!({"ContactID": contact.to_uppercase(), "Name": "ATLAS OUTSOURCING LTD", "ContactStatus": "ACTIVE"}),
        )],
        accounts: vec![],
        invoices: vec![
            de(inv("INV-1", "ACCREC", "2026-09-30", "PAID", 10)),
            de(inv("INV-2", "ACCREC", "2026-10-31", "AUTHORISED", 24)),
            de(inv("INV-3", "ACCREC", "2026-11-15", "VOIDED", 99)),
            de(inv("BILL-1", "ACCPAY", "2026-11-16", "AUTHORISED", 77)),
        ],
    };
    let snap = snapshot(
        &[cust(T1, "Atlas Outsourcing", vec![sub("s1", 25)], Some(25))],
        vec![dd(T1, "s1", BP_P1Y, 25, "ACTIVE")],
        Some(PsaSnapshot::Xero(x)),
    );
    let r = run(&snap, Overrides::default());
    let l = only_line(&r);
    assert_eq!(l.psa_qty, Some(Decimal::from(24)));
    assert_eq!(l.statuses, vec![Status::PsaUnderbilled]);
    let e = l.explanation(Field::PsaQty).unwrap();
    assert!(e.sources[0].id.contains("INV-2"), "{e:?}");
}

#[test]
fn exports_carry_the_documented_columns() {
    let r = run(&atlas(25, 25, 25, 20), Overrides::default());
    let csv = domain::export::to_csv(&r);
    let mut rows = csv.split("\r\n");
    assert_eq!(rows.next().unwrap(), domain::export::CSV_COLUMNS.join(","));
    let row: Vec<&str> = rows.next().unwrap().split(',').collect();
    assert_eq!(row[0], T1);
    assert_eq!(row[2], BP);
    assert_eq!(
        &row[4..12],
        &[
            "P1Y",
            "monthly",
            "25",
            "25",
            "25",
            "20",
            "psa_underbilled",
            "164.50"
        ]
    );
    let j: Value = serde_json::from_str(&domain::export::to_json(&r)).unwrap();
    let l = &j["lines"][0];
    for k in domain::export::CSV_COLUMNS {
        assert!(l.get(k).is_some(), "JSON line lacks {k}");
    }
    assert_eq!(l["product_id"], BP);
    assert_eq!(l["billing"], "monthly");
    assert_eq!(l["psa_qty"], 20);
    assert_eq!(l["monthly_impact"], "164.50");
    assert_eq!(l["statuses"], json!(["psa_underbilled"]));
    assert_eq!(j["summary"]["lines_audited"], 1);
    assert_eq!(j["summary"]["monthly_at_risk"], "164.50");
    let t = domain::export::to_table(&r, Default::default());
    assert!(t.lines().all(|x| x.chars().count() <= 120), "{t}");
    assert!(t.contains("underbilled"), "{t}");
}
