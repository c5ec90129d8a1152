//! End to end: the real Dicker Data and ConnectWise Manage clients (`src/api`) against the real
//! simulated world (`src/sim`) over loopback TCP. Both sides were written independently from
//! reference/external-apis.md (§4 Dicker Data, §5 ConnectWise); every assertion compares what a
//! client returns with the world the test handed to the sim, read independently here, or with
//! the sim's state dump (`GET {control}/state`) after a write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use cspsync::api::ErrorKind;
use cspsync::api::connectwise::{
    Addition, Agreement, BillCustomer, CatalogItem, Company, CondValue, Conditions,
    ConnectWiseClient, ConnectWiseCredentials, NewAddition, Op, Reference,
};
use cspsync::api::dickerdata::{
    BillingPlan, DickerDataClient, Price, StockCode, Subscription, SubscriptionType, Tenant, Term,
};
use cspsync::api::http::{RetryPolicy, build_client};
use cspsync::config::Endpoints;
use cspsync::secret::Secret;
use cspsync::sim::generate::{GenOptions, generate};
use cspsync::sim::world::{CwAddition, DdSubscription};
use cspsync::sim::{FaultSpec, SimHandle, World};
use rust_decimal::Decimal;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Small list pages so every list in a 12-customer world spans at least three pages.
const PAGE: u32 = 4;

struct Env {
    handle: SimHandle,
    endpoints: Endpoints,
    http: reqwest::Client,
    /// The world as handed to the sim (the test's independent copy).
    world: World,
}

fn today() -> NaiveDate {
    // The sim judges NCE reduction windows against the wall clock, so the world is generated
    // for the real today.
    Utc::now().date_naive()
}

fn gen_world() -> World {
    generate(&GenOptions::new(12, 42, today()))
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 12,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(5),
    }
}

async fn start(world: World, faults: FaultSpec) -> Env {
    let handle = cspsync::sim::start(world.clone(), faults, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let endpoints = Endpoints::from_sim(&handle.urls()).unwrap();
    Env {
        handle,
        endpoints,
        http: build_client(Duration::from_secs(10)),
        world,
    }
}

impl Env {
    fn dd_with(&self, account: &str, access_code: &str) -> DickerDataClient {
        DickerDataClient::new(
            self.endpoints.dickerdata.clone(),
            self.http.clone(),
            account.into(),
            Secret::new(access_code),
        )
        .with_retry(fast_retry())
    }

    fn dd(&self) -> DickerDataClient {
        let d = &self.world.dicker_data;
        self.dd_with(&d.account_code, &d.access_code)
    }

    fn cw_creds(&self) -> ConnectWiseCredentials {
        let c = &self.world.connectwise;
        ConnectWiseCredentials {
            company_id: c.company_id.clone(),
            public_key: c.public_key.clone(),
            private_key: Secret::new(c.private_key.clone()),
            client_id: c.client_ids[0].clone(),
        }
    }

    fn cw_with(&self, creds: ConnectWiseCredentials) -> ConnectWiseClient {
        ConnectWiseClient::new(
            self.endpoints.connectwise.clone().unwrap(),
            self.http.clone(),
            creds,
        )
        .with_retry(fast_retry())
        .with_page_size(PAGE)
    }

    fn cw(&self) -> ConnectWiseClient {
        self.cw_with(self.cw_creds())
    }

    fn control(&self, path: &str) -> String {
        format!("{}/{path}", self.handle.urls().control)
    }

    /// `GET {control}/state`: the world as the writes left it, plus runtime records.
    async fn state(&self) -> Value {
        let r = self.http.get(self.control("state")).send().await.unwrap();
        assert!(r.status().is_success());
        r.json().await.unwrap()
    }

    async fn state_world(&self) -> World {
        serde_json::from_value(self.state().await["world"].clone()).unwrap()
    }

    async fn post_control(&self, path: &str, body: &str) -> Value {
        let r = self
            .http
            .post(self.control(path))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    async fn reset_stats(&self) {
        let r = self
            .http
            .post(self.control("stats/reset"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// The sim's statistics for one endpoint key (`GET /connectwise/.../company/companies`).
    async fn endpoint_stats(&self, key: &str) -> Value {
        let r = self.http.get(self.control("stats")).send().await.unwrap();
        let all: Value = r.json().await.unwrap();
        all.get(key).cloned().unwrap_or(Value::Null)
    }

    /// Sum of one counter over every endpoint of an API (`/dickerdata/`, `/connectwise/`).
    async fn api_counter(&self, api_path: &str, counter: &str) -> u64 {
        let r = self.http.get(self.control("stats")).send().await.unwrap();
        let all: Value = r.json().await.unwrap();
        all.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.contains(api_path))
            .map(|(_, v)| v[counter].as_u64().unwrap_or(0))
            .sum()
    }
}

fn cw_list_key(path: &str) -> String {
    format!("GET /connectwise/v4_6_release/apis/3.0/{path}")
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> u64) -> Vec<u64> {
    items.iter().map(id).collect()
}

fn assert_unique(ids: &[u64], what: &str) {
    let set: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(set.len(), ids.len(), "{what}: an item came back twice");
}

// ---------------------------------------------------------------------------------------------
// Expected values, derived from the world alone
// ---------------------------------------------------------------------------------------------

/// What the client should read for one world line (§4.3, every field D3 lists).
fn expected_subscription(account_code: &str, w: &DdSubscription) -> Subscription {
    Subscription {
        account_code: Some(account_code.to_string()),
        tenant_id: Some(w.tenant_id.clone()),
        subscription_reference: Some(w.subscription_reference.clone()),
        company_name: Some(w.company_name.clone()),
        tenant_description: Some(w.tenant_description.clone()),
        stock_code: Some(w.stock_code.clone()),
        parent_subscription_id: w.parent_subscription_id.clone(),
        subscription_id: Some(w.subscription_id.clone()),
        status: Some(w.status.clone()),
        billing_frequency: Some(w.billing_frequency.clone()),
        last_billing_date: w.last_billing_date.map(midnight),
        next_billing_date: w.next_billing_date.map(midnight),
        confirmed_quantity: Some(w.confirmed_quantity),
        serials: None,
        expiry_date: w.expiry_date.map(midnight),
        stock_description: Some(w.stock_description.clone()),
        manufacturer_stock_code: Some(w.manufacturer_stock_code.clone()),
    }
}

fn expected_tenants(world: &World, tenant: Option<&str>) -> Vec<Tenant> {
    let mut seen = BTreeSet::new();
    world
        .dicker_data
        .subscriptions
        .iter()
        .filter(|s| tenant.is_none_or(|t| t.eq_ignore_ascii_case(&s.tenant_id)))
        .filter(|s| seen.insert(s.tenant_id.to_ascii_lowercase()))
        .map(|s| Tenant {
            tenant_id: Some(s.tenant_id.clone()),
            company_name: Some(s.company_name.clone()),
            tenant_description: Some(s.tenant_description.clone()),
        })
        .collect()
}

/// The stock code of a world line understood by the client, checked against the line's own
/// other fields (§4.3 convention `{term}:{product}:{sku}:{billing plan}:`).
fn check_stock_code(w: &DdSubscription) {
    let parsed = StockCode::parse(&w.stock_code)
        .unwrap_or_else(|e| panic!("generated stock code {} does not parse: {e}", w.stock_code));
    let StockCode::Licence(l) = parsed else {
        panic!("{} read as Azure", w.stock_code)
    };
    let term = w.stock_code.split(':').next().unwrap();
    assert_eq!(l.term.as_str(), term, "{}", w.stock_code);
    assert!(matches!(l.term, Term::P1M | Term::P1Y | Term::P3Y));
    assert_eq!(
        format!("{}:{}", l.product, l.sku),
        w.manufacturer_stock_code,
        "{}",
        w.stock_code
    );
    let plan = match w.billing_frequency.as_str() {
        "Monthly" => BillingPlan::Monthly,
        "Annual" => BillingPlan::AnnualUpfront,
        other => panic!("unexpected billing frequency {other}"),
    };
    assert_eq!(l.billing, plan, "{}", w.stock_code);
}

fn check_companies(world: &World, got: &[Company]) {
    // No orderBy: the list comes in id order.
    let mut want: Vec<&cspsync::sim::world::CwCompany> =
        world.connectwise.companies.iter().collect();
    want.sort_by_key(|c| c.id);
    assert_eq!(
        ids(got, |c| c.id),
        ids(&want, |c| c.id),
        "companies in id order"
    );
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.identifier, w.identifier, "company {}", w.id);
        assert_eq!(g.name, w.name, "company {}", w.id);
        assert_eq!(
            g.status.as_ref().and_then(|s| s.name.as_deref()),
            Some(w.status.as_str())
        );
        let types: Vec<&str> = g.types.iter().filter_map(|t| t.name.as_deref()).collect();
        assert_eq!(
            types,
            w.types.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(g.website, w.website, "company {}", w.id);
        assert_eq!(g.phone_number, w.phone_number, "company {}", w.id);
        assert_eq!(g.deleted_flag, Some(w.deleted_flag));
    }
}

fn check_agreements(world: &World, got: &[Agreement], want_ids: &[u64]) {
    assert_eq!(ids(got, |a| a.id), want_ids);
    for g in got {
        let w = world
            .connectwise
            .agreements
            .iter()
            .find(|a| a.id == g.id)
            .unwrap();
        let company = world
            .connectwise
            .companies
            .iter()
            .find(|c| c.id == w.company_id)
            .unwrap();
        assert_eq!(g.name, w.name);
        assert_eq!(
            g.agreement_type.as_ref().and_then(|t| t.name.as_deref()),
            Some(w.type_name.as_str())
        );
        let c = g.company.as_ref().unwrap();
        assert_eq!(c.id, Some(w.company_id));
        assert_eq!(c.identifier.as_deref(), Some(company.identifier.as_str()));
        assert_eq!(c.name.as_deref(), Some(company.name.as_str()));
        assert_eq!(
            g.agreement_status.as_deref(),
            Some(w.agreement_status.as_str())
        );
        assert_eq!(g.start_date, w.start_date.map(midnight));
        assert_eq!(g.end_date, w.end_date.map(midnight));
        assert_eq!(g.no_ending_date_flag, Some(w.no_ending_date_flag));
        assert_eq!(g.cancelled_flag, Some(w.cancelled_flag));
        assert_eq!(
            g.billing_cycle.as_ref().and_then(|b| b.name.as_deref()),
            Some(w.billing_cycle.as_str())
        );
    }
}

fn check_catalog(world: &World, got: &[CatalogItem], want_ids: &[u64]) {
    assert_eq!(ids(got, |c| c.id), want_ids);
    for g in got {
        let w = world
            .connectwise
            .catalog
            .iter()
            .find(|c| c.id == g.id)
            .unwrap();
        assert_eq!(g.identifier, w.identifier);
        assert_eq!(g.description, w.description);
        assert_eq!(g.customer_description, w.customer_description);
        assert_eq!(g.price, Some(w.price), "price of {}", w.identifier);
        assert_eq!(g.cost, Some(w.cost), "cost of {}", w.identifier);
        assert_eq!(g.inactive_flag, Some(w.inactive_flag));
        assert_eq!(g.product_class.as_deref(), Some(w.product_class.as_str()));
        assert_eq!(g.manufacturer_part_number, w.manufacturer_part_number);
        assert_eq!(g.vendor_sku, w.vendor_sku);
        assert_eq!(g.recurring_flag, Some(w.recurring_flag));
    }
}

fn check_addition(world: &World, g: &Addition, w: &CwAddition) {
    let item = world
        .connectwise
        .catalog
        .iter()
        .find(|c| c.id == w.product_id);
    let agreement = world
        .connectwise
        .agreements
        .iter()
        .find(|a| a.id == w.agreement_id)
        .unwrap();
    assert_eq!(g.id, w.id);
    assert_eq!(g.agreement_id, Some(w.agreement_id));
    assert_eq!(
        g.agreement_status.as_deref(),
        Some(agreement.agreement_status.as_str())
    );
    let p = g.product.as_ref().unwrap();
    assert_eq!(p.id, Some(w.product_id), "addition {}", w.id);
    assert_eq!(p.identifier, item.map(|i| i.identifier.clone()));
    assert_eq!(
        g.quantity,
        Some(w.quantity),
        "quantity of addition {}",
        w.id
    );
    assert_eq!(g.less_included, Some(w.less_included));
    assert_eq!(g.unit_price, Some(w.unit_price), "addition {}", w.id);
    assert_eq!(g.unit_cost, Some(w.unit_cost), "addition {}", w.id);
    assert_eq!(g.bill_customer.as_deref(), Some(w.bill_customer.as_str()));
    assert_eq!(g.effective_date, w.effective_date.map(midnight));
    assert_eq!(g.cancelled_date, w.cancelled_date.map(midnight));
    assert_eq!(g.description.as_deref(), Some(w.description.as_str()));
    assert_eq!(g.invoice_description, w.invoice_description);
    assert_eq!(g.taxable_flag, Some(w.taxable_flag));
    if let Some(t) = w.last_updated {
        // §5.3: ISO 8601 with `Z`, whole seconds.
        let got = g.info.as_ref().and_then(|i| i.last_updated).unwrap();
        assert_eq!(got.timestamp(), t.timestamp(), "lastUpdated of {}", w.id);
    }
}

fn additions_of(world: &World, agreement: u64) -> Vec<&CwAddition> {
    let mut v: Vec<&CwAddition> = world
        .connectwise
        .additions
        .iter()
        .filter(|a| a.agreement_id == agreement)
        .collect();
    v.sort_by_key(|a| a.id);
    v
}

// ---------------------------------------------------------------------------------------------
// Dicker Data (§4)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dd_access_key_with_the_worlds_codes() {
    let env = start(gen_world(), FaultSpec::default()).await;
    let dd = env.dd();
    let before = Utc::now();
    let expires = dd.test_connection().await.unwrap();
    // The world's lifetime is 600 s (§4.2: undocumented; D1 falls back to 10 minutes).
    let left = (expires - before).num_seconds();
    assert!((590..=601).contains(&left), "AccessKey lives {left} s");
    assert_eq!(dd.key_source().key_requests(), 1);
    let st = env.state().await;
    assert_eq!(st["dickerdata"]["access_keys_issued"], 1);
    assert_eq!(st["dickerdata"]["access_key_requests_refused"], 0);
    // The key is cached: three calls, still one key.
    for _ in 0..3 {
        dd.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    }
    assert_eq!(dd.key_source().key_requests(), 1);
    assert_eq!(env.state().await["dickerdata"]["access_keys_issued"], 1);
    // No secret in the state dump.
    let dump = env.state().await.to_string();
    let key = dd.key_source().key(false).await.unwrap().0;
    assert!(!dump.contains(&key));
}

#[tokio::test]
async fn dd_wrong_codes_are_unauthorized_and_name_the_codes() {
    let env = start(gen_world(), FaultSpec::default()).await;
    let d = &env.world.dicker_data;
    let wrong_code = "00000000-AAAA-BBBB-CCCC-DDDDDDDDDDDD";
    for (account, code) in [
        (d.account_code.as_str(), wrong_code),
        ("999999", d.access_code.as_str()),
    ] {
        let dd = env.dd_with(account, code);
        let e = dd
            .subscriptions(SubscriptionType::Csp, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
        let shown = e.to_string();
        assert!(
            shown.contains("Account Code and Access Code"),
            "the message names the codes: {shown}"
        );
        assert!(shown.contains("Invalid credentials"), "{shown}");
        assert!(!shown.contains(code), "the access code is never shown");
        assert!(e.hint().contains("Access Code"));
        let e = dd.test_connection().await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
    }
    let st = env.state().await;
    assert_eq!(st["dickerdata"]["access_key_requests_refused"], 4);
    assert_eq!(st["dickerdata"]["access_keys_issued"], 0);
}

#[tokio::test]
async fn dd_key_is_renewed_after_it_expires_by_lifetime() {
    let mut world = gen_world();
    world.dicker_data.access_key_lifetime_secs = 1;
    let env = start(world, FaultSpec::default()).await;
    let dd = env.dd();
    let first = dd.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = dd.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    assert_eq!(first, second);
    let prices = dd
        .prices(&[env.world.dicker_data.subscriptions[0].stock_code.as_str()])
        .await
        .unwrap();
    assert_eq!(prices.len(), 1);
    let st = env.state().await;
    let issued = st["dickerdata"]["access_keys_issued"].as_u64().unwrap();
    assert!(issued >= 2, "a new key after the first expired ({issued})");
    assert_eq!(issued, dd.key_source().key_requests());
}

#[tokio::test]
async fn dd_key_is_renewed_after_the_control_surface_expires_it() {
    let env = start(gen_world(), FaultSpec::default()).await;
    let dd = env.dd();
    let code = env.world.dicker_data.subscriptions[0].stock_code.clone();
    let first = dd.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    assert_eq!(dd.key_source().key_requests(), 1);

    let r = env.post_control("tokens/expire", "").await;
    assert_eq!(r["dicker_data_access_keys"], 1);
    let second = dd.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(dd.key_source().key_requests(), 2);
    assert_eq!(dd.stats().refreshes, 1, "renewed once, on the 401");

    // The pricing call carries the key in its query too (§4.4): renewed the same way.
    env.post_control("tokens/expire", "").await;
    let p = dd.prices(&[code.as_str()]).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(dd.key_source().key_requests(), 3);

    // And the tenants call.
    env.post_control("tokens/expire", "").await;
    let t = dd.tenants().await.unwrap();
    assert_eq!(t, expected_tenants(&env.world, None));

    let st = env.state().await;
    assert_eq!(st["dickerdata"]["access_keys_issued"], 4);
    // Refused: the first call after each expiry, plus HttpCore's one replay of the pricing
    // call, which carries the same (pinned) key in its query and its header.
    assert_eq!(st["dickerdata"]["calls_refused"], 4);
}

#[tokio::test]
async fn dd_a_short_lived_key_costs_one_key_request_per_call() {
    // §4.2: the lifetime is undocumented. A key living 20 s is inside the client's renewal
    // margin from the start, so each call renews it (the client's documented choice), but a
    // pricing call, which carries the key in its query as well as its header, must still ask
    // for one key, not two.
    let mut world = gen_world();
    world.dicker_data.access_key_lifetime_secs = 20;
    let env = start(world, FaultSpec::default()).await;
    let dd = env.dd();
    let code = env.world.dicker_data.subscriptions[0].stock_code.clone();
    dd.prices(&[code.as_str()]).await.unwrap();
    assert_eq!(dd.key_source().key_requests(), 1);
    dd.prices(&[code.as_str()]).await.unwrap();
    dd.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    assert!(dd.key_source().key_requests() <= 3);
    assert_eq!(
        env.state().await["dickerdata"]["access_keys_issued"].as_u64(),
        Some(dd.key_source().key_requests())
    );
    assert_eq!(env.state().await["dickerdata"]["calls_refused"], 0);
}

#[tokio::test]
async fn dd_concurrent_calls_after_expiry_all_succeed() {
    let env = start(gen_world(), FaultSpec::default()).await;
    let dd = env.dd();
    let want = dd.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    env.post_control("tokens/expire", "").await;
    let calls = (0..8).map(|_| dd.subscriptions(SubscriptionType::Csp, None));
    for got in futures_util::future::join_all(calls).await {
        assert_eq!(got.unwrap(), want);
    }
    let st = env.state().await;
    let issued = st["dickerdata"]["access_keys_issued"].as_u64().unwrap();
    assert!(
        (2..=9).contains(&issued),
        "renewed, without a key per call and a half: {issued}"
    );
}

#[tokio::test]
async fn dd_subscriptions_tenants_and_prices_equal_the_world() {
    let mut world = gen_world();
    // Values a generated world never has, so every mapping is seen both ways.
    {
        let lines = &mut world.dicker_data.subscriptions;
        lines[0].parent_subscription_id = Some("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d".into());
        lines[1].expiry_date = None;
        lines[1].last_billing_date = None;
        lines[2].status = "SUSPENDED".into();
        lines[2].confirmed_quantity = 0;
    }
    let env = start(world, FaultSpec::default()).await;
    let dd = env.dd();
    let w = &env.world.dicker_data;
    assert!(w.subscriptions.len() >= 12, "a world with lines");

    let got = dd.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    let want: Vec<Subscription> = w
        .subscriptions
        .iter()
        .map(|s| expected_subscription(&w.account_code, s))
        .collect();
    assert_eq!(got, want);

    // Every generated stock code parses, and agrees with the line's other fields.
    for (line, sub) in w.subscriptions.iter().zip(&got) {
        check_stock_code(line);
        assert_eq!(
            sub.stock().unwrap().unwrap(),
            StockCode::parse(&line.stock_code).unwrap()
        );
    }

    // ADY/ADM: the world holds only CSP lines.
    assert!(
        dd.subscriptions(SubscriptionType::Ady, None)
            .await
            .unwrap()
            .is_empty()
    );

    // Tenant filter, for every tenant, in either case.
    let tenants: BTreeSet<&str> = w
        .subscriptions
        .iter()
        .map(|s| s.tenant_id.as_str())
        .collect();
    for (i, t) in tenants.iter().enumerate() {
        let asked = if i % 2 == 0 {
            t.to_string()
        } else {
            t.to_ascii_uppercase()
        };
        let got = dd
            .subscriptions(SubscriptionType::Csp, Some(&asked))
            .await
            .unwrap();
        let want: Vec<Subscription> = w
            .subscriptions
            .iter()
            .filter(|s| s.tenant_id == *t)
            .map(|s| expected_subscription(&w.account_code, s))
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want, "tenant {t}");
    }
    // A tenant the account does not have: nothing.
    let none = dd
        .subscriptions(
            SubscriptionType::Csp,
            Some("11111111-2222-4333-8444-555555555555"),
        )
        .await
        .unwrap();
    assert!(none.is_empty());

    // tenants(): one per tenant with lines, in the order the lines list them.
    assert_eq!(
        dd.tenants().await.unwrap(),
        expected_tenants(&env.world, None)
    );

    // prices(): every stock code in use, plus one nobody sells.
    let codes: Vec<&str> = w
        .subscriptions
        .iter()
        .map(|s| s.stock_code.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut asked = codes.clone();
    asked.push("P1Y:NOSUCHPRODUC:0001:1:");
    let got = dd.prices(&asked).await.unwrap();
    let want: Vec<Price> = codes
        .iter()
        .map(|c| {
            let line = w.subscriptions.iter().find(|s| s.stock_code == *c).unwrap();
            Price {
                part_number: Some(c.to_string()),
                unit_price: Some(line.unit_cost),
                soh: Some(0),
            }
        })
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn dd_set_quantity_changes_both_sides_and_refuses_late_decreases() {
    let mut world = gen_world();
    let now = Utc::now();
    // A line whose Microsoft subscription was bought 60 days ago: outside the 168-hour
    // window (DESIGN.md §4), with no recently added seats.
    let (line_idx, cust_idx, sub_idx) = world
        .dicker_data
        .subscriptions
        .iter()
        .enumerate()
        .filter(|(_, l)| l.status == "ACTIVE" && l.confirmed_quantity >= 3)
        .find_map(|(i, l)| {
            world.customers.iter().enumerate().find_map(|(ci, c)| {
                c.subscriptions
                    .iter()
                    .position(|s| s.id == l.subscription_id && s.status == "active")
                    .filter(|_| c.tenant_id == l.tenant_id)
                    .map(|si| (i, ci, si))
            })
        })
        .expect("an active line billing an active Microsoft subscription");
    let q0 = world.dicker_data.subscriptions[line_idx].confirmed_quantity;
    {
        let ms = &mut world.customers[cust_idx].subscriptions[sub_idx];
        ms.quantity = q0;
        ms.creation_date = Some(now - chrono::Duration::days(60));
        ms.effective_start_date = ms.creation_date;
        ms.commitment_end_date = None;
        ms.seat_additions.clear();
    }
    let suspended_idx = (line_idx + 1) % world.dicker_data.subscriptions.len();
    world.dicker_data.subscriptions[suspended_idx].status = "SUSPENDED".into();
    let env = start(world, FaultSpec::default()).await;
    let dd = env.dd();
    let line = env.world.dicker_data.subscriptions[line_idx].clone();
    let sub_id = line.subscription_id.clone();

    // Increase: both Dicker Data's line and Microsoft's subscription change.
    let changed = dd.set_quantity(&sub_id, q0 + 3).await.unwrap();
    let out = changed.subscription.expect("the changed line");
    assert_eq!(out.confirmed_quantity, Some(q0 + 3));
    assert_eq!(out.subscription_id.as_deref(), Some(sub_id.as_str()));
    let st = env.state().await;
    let sw: World = serde_json::from_value(st["world"].clone()).unwrap();
    assert_eq!(
        sw.dicker_data.subscriptions[line_idx].confirmed_quantity,
        q0 + 3
    );
    let ms = &sw.customers[cust_idx].subscriptions[sub_idx];
    assert_eq!(ms.quantity, q0 + 3);
    assert_eq!(ms.seat_additions.len(), 1);
    assert_eq!(ms.seat_additions[0].quantity, 3);
    let changes = st["dickerdata"]["quantity_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["from"], q0);
    assert_eq!(changes[0]["to"], q0 + 3);

    // A later read shows it.
    let reread = dd
        .subscriptions(SubscriptionType::Csp, Some(&line.tenant_id))
        .await
        .unwrap();
    let r = reread
        .iter()
        .find(|s| s.subscription_id.as_deref() == Some(&sub_id))
        .unwrap();
    assert_eq!(r.confirmed_quantity, Some(q0 + 3));

    // Giving back two of the three seats just added: inside their own window.
    dd.set_quantity(&sub_id, q0 + 1).await.unwrap();
    let sw = env.state_world().await;
    assert_eq!(
        sw.dicker_data.subscriptions[line_idx].confirmed_quantity,
        q0 + 1
    );
    assert_eq!(
        sw.customers[cust_idx].subscriptions[sub_idx].quantity,
        q0 + 1
    );

    // Going below the original count: outside the window, refused as a typed error.
    let e = dd.set_quantity(&sub_id, q0 - 1).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Failed, "{e}");
    let shown = e.to_string();
    assert!(shown.contains("168 hours"), "{shown}");
    assert!(
        shown.contains("1 of the"),
        "says how many could go: {shown}"
    );
    assert!(!e.is_transient());
    let sw = env.state_world().await;
    assert_eq!(
        sw.dicker_data.subscriptions[line_idx].confirmed_quantity,
        q0 + 1,
        "nothing changed"
    );
    assert_eq!(
        sw.customers[cust_idx].subscriptions[sub_idx].quantity,
        q0 + 1
    );
    assert_eq!(
        env.state().await["dickerdata"]["quantity_changes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A suspended line cannot change: a typed failure saying why.
    let suspended = &env.world.dicker_data.subscriptions[suspended_idx];
    let e = dd
        .set_quantity(&suspended.subscription_id, suspended.confirmed_quantity + 1)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Failed, "{e}");
    assert!(e.to_string().contains("SUSPENDED"), "{e}");
    // Zero seats is not a quantity change (cancel instead).
    let e = dd.set_quantity(&sub_id, 0).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Failed, "{e}");
    assert!(e.to_string().contains("Quantity"), "{e}");

    // An unknown subscription: a typed failure naming it.
    let e = dd
        .set_quantity("11111111-2222-4333-8444-555555555555", 5)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Failed);
    assert!(
        e.to_string()
            .contains("11111111-2222-4333-8444-555555555555")
    );
}

// ---------------------------------------------------------------------------------------------
// ConnectWise Manage (§5)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cw_bad_credentials_are_unauthorized() {
    let env = start(gen_world(), FaultSpec::default()).await;
    let good = env.cw_creds();

    let wrong_key = "WrongPrivateKey9";
    let mut c = good.clone();
    c.private_key = Secret::new(wrong_key);
    let e = env.cw_with(c).companies(None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert_eq!(e.status, Some(401));
    let shown = e.to_string();
    assert!(shown.contains("private key is not valid"), "{shown}");
    assert!(!shown.contains(wrong_key));
    assert!(!shown.contains(&env.world.connectwise.private_key));
    assert!(e.hint().contains("private key"));

    let mut c = good.clone();
    c.public_key = "NotThePublicKey".into();
    let e = env
        .cw_with(c)
        .count("company/companies", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);

    let mut c = good.clone();
    c.client_id = String::new();
    let e = env.cw_with(c).agreements(None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains("clientId"), "{e}");

    let mut c = good.clone();
    c.client_id = "00000000-0000-4000-8000-000000000000".into();
    let e = env.cw_with(c).catalog(None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert!(e.to_string().contains("clientId"), "{e}");

    assert_eq!(env.state().await["connectwise"]["auth_failures"], 4);
    // The right credentials work.
    env.cw().count("company/companies", None).await.unwrap();
}

#[tokio::test]
async fn cw_lists_equal_the_world_across_pages() {
    let mut world = gen_world();
    // Values a generated world never has, so every mapping is seen both ways.
    {
        let cw = &mut world.connectwise;
        cw.companies[0].deleted_flag = true;
        cw.companies[0].status = "Inactive".into();
        cw.companies[0].types = vec!["Client".into(), "Vendor".into()];
        cw.companies[0].phone_number = None;
        let a = &mut cw.agreements[1];
        a.agreement_status = "Cancelled".into();
        a.cancelled_flag = true;
        a.no_ending_date_flag = false;
        a.end_date = NaiveDate::from_ymd_opt(2026, 6, 30);
        a.billing_cycle = "Annual".into();
        let x = &mut cw.additions[0];
        x.cancelled_date = NaiveDate::from_ymd_opt(2026, 7, 31);
        x.invoice_description = None;
        x.less_included = Decimal::new(2, 0);
        x.quantity = Decimal::new(125, 1);
        x.unit_price = Decimal::new(3455, 2);
        x.taxable_flag = false;
        x.bill_customer = "NoCharge".into();
        let c = &mut cw.catalog[0];
        c.inactive_flag = true;
        c.manufacturer_part_number = None;
        c.vendor_sku = None;
        c.recurring_flag = false;
    }
    let env = start(world, FaultSpec::default()).await;
    let cw = env.cw();
    let w = &env.world;
    let page = PAGE as usize;
    for (n, what) in [
        (w.connectwise.companies.len(), "companies"),
        (w.connectwise.agreements.len(), "agreements"),
        (w.connectwise.catalog.len(), "catalog items"),
    ] {
        assert!(n > 2 * page, "the world needs ≥3 pages of {what} ({n})");
    }

    env.reset_stats().await;
    let companies = cw.companies(None).await.unwrap();
    assert_unique(&ids(&companies, |c| c.id), "companies");
    check_companies(w, &companies);
    let calls = env.endpoint_stats(&cw_list_key("company/companies")).await["calls"]
        .as_u64()
        .unwrap();
    assert_eq!(
        calls as usize,
        w.connectwise.companies.len().div_ceil(page),
        "one request per page"
    );
    assert!(calls >= 3);

    let mut agreement_ids = ids(&w.connectwise.agreements, |a| a.id);
    agreement_ids.sort_unstable();
    let agreements = cw.agreements(None).await.unwrap();
    assert_unique(&ids(&agreements, |a| a.id), "agreements");
    check_agreements(w, &agreements, &agreement_ids);
    let calls = env.endpoint_stats(&cw_list_key("finance/agreements")).await["calls"]
        .as_u64()
        .unwrap();
    assert_eq!(calls as usize, agreement_ids.len().div_ceil(page));
    assert!(calls >= 3);

    let mut catalog_ids = ids(&w.connectwise.catalog, |c| c.id);
    catalog_ids.sort_unstable();
    let catalog = cw.catalog(None).await.unwrap();
    assert_unique(&ids(&catalog, |c| c.id), "catalog");
    check_catalog(w, &catalog, &catalog_ids);
    let calls = env
        .endpoint_stats(&cw_list_key("procurement/catalog"))
        .await["calls"]
        .as_u64()
        .unwrap();
    assert!(calls >= 3);

    // Additions of every agreement; together exactly the world's additions.
    let mut all = Vec::new();
    for a in &w.connectwise.agreements {
        let got = cw.additions(a.id, None).await.unwrap();
        let want = additions_of(w, a.id);
        assert_eq!(
            ids(&got, |x| x.id),
            ids(&want, |x| x.id),
            "agreement {}",
            a.id
        );
        for (g, x) in got.iter().zip(&want) {
            check_addition(w, g, x);
        }
        all.extend(got.iter().map(|x| x.id));
    }
    assert_unique(&all, "additions");
    assert_eq!(all.len(), w.connectwise.additions.len());

    // count() agrees with the world.
    assert_eq!(
        cw.count("company/companies", None).await.unwrap() as usize,
        w.connectwise.companies.len()
    );
    assert_eq!(
        cw.count("finance/agreements", None).await.unwrap() as usize,
        w.connectwise.agreements.len()
    );
    assert_eq!(
        cw.count("procurement/catalog", None).await.unwrap() as usize,
        w.connectwise.catalog.len()
    );
    let busiest = w
        .connectwise
        .agreements
        .iter()
        .max_by_key(|a| additions_of(w, a.id).len())
        .unwrap();
    assert_eq!(
        cw.count(
            &format!("finance/agreements/{}/additions", busiest.id),
            None
        )
        .await
        .unwrap() as usize,
        additions_of(w, busiest.id).len()
    );

    // orderBy and fields ride along on every page's `Link` (§5.2).
    let by_name: Vec<Company> = cw
        .get_all("company/companies", None, &[("orderBy", "name desc")])
        .await
        .unwrap();
    let mut names: Vec<String> = w
        .connectwise
        .companies
        .iter()
        .map(|c| c.name.clone())
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.to_lowercase()));
    assert_eq!(
        by_name.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
        names
    );
    let slim: Vec<Value> = cw
        .get_all("finance/agreements", None, &[("fields", "id,company/name")])
        .await
        .unwrap();
    assert_eq!(slim.len(), w.connectwise.agreements.len());
    for v in &slim {
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 2, "{v}");
        assert!(v["company"]["name"].is_string(), "{v}");
        assert_eq!(v["company"].as_object().unwrap().len(), 1, "{v}");
    }

    // Single records.
    let c0 = &w.connectwise.companies[0];
    check_companies(
        &World {
            connectwise: cspsync::sim::world::ConnectWise {
                companies: vec![c0.clone()],
                ..Default::default()
            },
            ..Default::default()
        },
        &[cw.company(c0.id).await.unwrap()],
    );
    let e = cw.company(999_999).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
}

/// A world of 1,100 customers: the client's default page size (1000, the §5.2 maximum) pages
/// it, and every one of its 2,000-odd stock codes (all terms, both billing plans) parses.
#[tokio::test]
async fn a_large_world_with_default_paging_and_every_stock_code() {
    let world = generate(&GenOptions::new(1100, 7, today()));
    assert!(world.connectwise.companies.len() > 1000);
    let env = start(world, FaultSpec::default()).await;
    let w = &env.world;

    let cw = ConnectWiseClient::new(
        env.endpoints.connectwise.clone().unwrap(),
        env.http.clone(),
        env.cw_creds(),
    );
    assert_eq!(cw.page_size(), 1000);
    env.reset_stats().await;
    let companies = cw.companies(None).await.unwrap();
    assert_unique(&ids(&companies, |c| c.id), "companies");
    check_companies(w, &companies);
    assert_eq!(
        env.endpoint_stats(&cw_list_key("company/companies")).await["calls"],
        2
    );
    // Asking for more than 1000 a page is clamped on both sides (§5.2).
    let big = cw.clone().with_page_size(5000);
    assert_eq!(big.page_size(), 1000);
    let mut agreement_ids = ids(&w.connectwise.agreements, |a| a.id);
    agreement_ids.sort_unstable();
    check_agreements(w, &big.agreements(None).await.unwrap(), &agreement_ids);

    let dd = env.dd();
    let subs = dd.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    assert_eq!(subs.len(), w.dicker_data.subscriptions.len());
    let mut terms = BTreeSet::new();
    let mut plans = BTreeSet::new();
    for (line, sub) in w.dicker_data.subscriptions.iter().zip(&subs) {
        assert_eq!(
            *sub,
            expected_subscription(&w.dicker_data.account_code, line)
        );
        check_stock_code(line);
        if let Some(Ok(StockCode::Licence(l))) = sub.stock() {
            terms.insert(l.term.as_str());
            plans.insert(format!("{:?}", l.billing));
        }
    }
    assert_eq!(terms.len(), 3, "P1M, P1Y and P3Y all seen: {terms:?}");
    assert_eq!(plans.len(), 2, "{plans:?}");
    assert_eq!(dd.tenants().await.unwrap(), expected_tenants(w, None));
}

#[tokio::test]
async fn cw_conditions_built_by_the_client_are_understood_by_the_sim() {
    let mut world = gen_world();
    // A name that needs escaping (§5.2: strings in double quotes), and characters that need
    // URL encoding in the query and in the `Link` URLs of later pages.
    let tricky = r#"Acme "Quoted" \ Backslash & Co"#;
    world.connectwise.companies[1].name = tricky.into();
    let odd = r#"+ 100% #1 Café & "Sons" ; x=y"#;
    for c in world.connectwise.companies.iter_mut().skip(3).take(6) {
        c.name = format!("{} {odd}", c.name);
    }
    let env = start(world, FaultSpec::default()).await;
    let cw = env.cw();
    let w = &env.world.connectwise;
    let company_ids = |f: &dyn Fn(&cspsync::sim::world::CwCompany) -> bool| -> Vec<u64> {
        let mut v: Vec<u64> = w.companies.iter().filter(|c| f(c)).map(|c| c.id).collect();
        v.sort_unstable();
        v
    };
    let got_ids = |v: Vec<Company>| -> Vec<u64> { ids(&v, |c| c.id) };

    // Equality on a nested field, one agreement set per company.
    for c in w.companies.iter().take(5) {
        let cond = Conditions::of("company/id", Op::Eq, c.id);
        let got = cw.agreements(Some(&cond)).await.unwrap();
        let mut want: Vec<u64> = w
            .agreements
            .iter()
            .filter(|a| a.company_id == c.id)
            .map(|a| a.id)
            .collect();
        want.sort_unstable();
        check_agreements(&env.world, &got, &want);
    }

    // Equality on text that needs escaping, and on every company's real name.
    let got = cw
        .companies(Some(&Conditions::of("name", Op::Eq, tricky)))
        .await
        .unwrap();
    assert_eq!(got_ids(got), vec![w.companies[1].id]);
    for c in &w.companies {
        let got = cw
            .companies(Some(&Conditions::of("name", Op::Eq, &c.name)))
            .await
            .unwrap();
        assert_eq!(
            got_ids(got),
            company_ids(&|x| x.name.eq_ignore_ascii_case(&c.name)),
            "name = {:?}",
            c.name
        );
    }

    let got = cw
        .companies(Some(&Conditions::of("name", Op::Contains, odd)))
        .await
        .unwrap();
    let want = company_ids(&|c| c.name.contains(odd));
    assert_eq!(want.len(), 6, "two pages of answers");
    assert_eq!(got_ids(got), want);

    // in (...), over more than one page of answers; and an empty list matches nothing.
    let every_other: Vec<u64> = w.companies.iter().step_by(2).map(|c| c.id).collect();
    let got = cw
        .companies(Some(
            &Conditions::new().and_in("id", every_other.iter().copied()),
        ))
        .await
        .unwrap();
    let mut want = every_other.clone();
    want.sort_unstable();
    assert_eq!(got_ids(got), want);
    let got = cw
        .companies(Some(&Conditions::new().and_in("id", Vec::<u64>::new())))
        .await
        .unwrap();
    assert!(got.is_empty());
    let idents: Vec<&str> = w
        .companies
        .iter()
        .take(3)
        .map(|c| c.identifier.as_str())
        .collect();
    let got = cw
        .companies(Some(
            &Conditions::new().and_in("identifier", idents.clone()),
        ))
        .await
        .unwrap();
    assert_eq!(
        got_ids(got),
        company_ids(&|c| idents.contains(&c.identifier.as_str()))
    );

    // like (with a % wildcard) and contains / not contains.
    let first = w.companies[0].name.chars().next().unwrap().to_string();
    let got = cw
        .companies(Some(&Conditions::of("name", Op::Like, format!("{first}%"))))
        .await
        .unwrap();
    assert_eq!(
        got_ids(got),
        company_ids(&|c| c.name.to_lowercase().starts_with(&first.to_lowercase()))
    );
    let got = cw
        .catalog(Some(&Conditions::of("identifier", Op::Contains, "P1Y")))
        .await
        .unwrap();
    let mut want: Vec<u64> = w
        .catalog
        .iter()
        .filter(|c| c.identifier.to_lowercase().contains("p1y"))
        .map(|c| c.id)
        .collect();
    want.sort_unstable();
    assert!(!want.is_empty());
    check_catalog(&env.world, &got, &want);
    let got = cw
        .catalog(Some(&Conditions::of("identifier", Op::NotContains, "P1Y")))
        .await
        .unwrap();
    let mut want: Vec<u64> = w
        .catalog
        .iter()
        .filter(|c| !c.identifier.to_lowercase().contains("p1y"))
        .map(|c| c.id)
        .collect();
    want.sort_unstable();
    check_catalog(&env.world, &got, &want);

    // null and != null.
    let got = cw
        .companies(Some(&Conditions::of("website", Op::Eq, CondValue::Null)))
        .await
        .unwrap();
    let none = company_ids(&|c| c.website.is_none());
    assert_eq!(got_ids(got), none);
    let got = cw
        .companies(Some(&Conditions::of("website", Op::Ne, CondValue::Null)))
        .await
        .unwrap();
    assert_eq!(got_ids(got), company_ids(&|c| c.website.is_some()));
    assert!(
        !none.is_empty(),
        "the world has companies without a website"
    );

    // and / or with a group, numbers and booleans.
    let sorted = company_ids(&|_| true);
    let (lo, hi) = (sorted[2], sorted[sorted.len() - 3]);
    let cond = Conditions::new()
        .and_group(Conditions::of("id", Op::Lt, lo).or("id", Op::Gt, hi))
        .and("deletedFlag", Op::Eq, false);
    let got = cw.companies(Some(&cond)).await.unwrap();
    assert_eq!(
        got_ids(got),
        company_ids(&|c| (c.id < lo || c.id > hi) && !c.deleted_flag)
    );
    let cond = Conditions::of("types/name", Op::Eq, "Client")
        .and("status/name", Op::Eq, "Active")
        .or("id", Op::Eq, sorted[0]);
    let got = cw.companies(Some(&cond)).await.unwrap();
    assert_eq!(
        got_ids(got),
        company_ids(
            &|c| (c.types.iter().any(|t| t == "Client") && c.status == "Active")
                || c.id == sorted[0]
        )
    );

    // Decimal comparison on money.
    let mut prices: Vec<Decimal> = w.catalog.iter().map(|c| c.price).collect();
    prices.sort();
    let mid = prices[prices.len() / 2];
    let got = cw
        .catalog(Some(&Conditions::of("price", Op::Ge, mid)))
        .await
        .unwrap();
    let mut want: Vec<u64> = w
        .catalog
        .iter()
        .filter(|c| c.price >= mid)
        .map(|c| c.id)
        .collect();
    want.sort_unstable();
    check_catalog(&env.world, &got, &want);

    // Conditions on additions: quantity, a date, cancelledDate = null; and count() with them.
    let busiest = w
        .agreements
        .iter()
        .max_by_key(|a| additions_of(&env.world, a.id).len())
        .unwrap();
    let adds = additions_of(&env.world, busiest.id);
    let cond =
        Conditions::of("cancelledDate", Op::Eq, CondValue::Null).and("quantity", Op::Ge, 1u32);
    let got = cw.additions(busiest.id, Some(&cond)).await.unwrap();
    let want: Vec<u64> = adds
        .iter()
        .filter(|a| a.cancelled_date.is_none() && a.quantity >= Decimal::ONE)
        .map(|a| a.id)
        .collect();
    assert_eq!(ids(&got, |a| a.id), want);
    let path = format!("finance/agreements/{}/additions", busiest.id);
    assert_eq!(
        cw.count(&path, Some(&cond)).await.unwrap() as usize,
        want.len()
    );
    let earliest = adds.iter().filter_map(|a| a.effective_date).min().unwrap();
    let cond = Conditions::of("effectiveDate", Op::Gt, earliest);
    let got = cw.additions(busiest.id, Some(&cond)).await.unwrap();
    let want: Vec<u64> = adds
        .iter()
        .filter(|a| a.effective_date.is_some_and(|d| d > earliest))
        .map(|a| a.id)
        .collect();
    assert_eq!(ids(&got, |a| a.id), want);

    // A date-time field below `_info`.
    let mut stamps: Vec<DateTime<Utc>> =
        w.additions.iter().filter_map(|a| a.last_updated).collect();
    stamps.sort();
    let cut = stamps[stamps.len() / 2];
    let cond = Conditions::of("_info/lastUpdated", Op::Ge, cut);
    let got = cw.additions(busiest.id, Some(&cond)).await.unwrap();
    let want: Vec<u64> = adds
        .iter()
        .filter(|a| {
            a.last_updated
                .is_some_and(|t| t.timestamp() >= cut.timestamp())
        })
        .map(|a| a.id)
        .collect();
    assert_eq!(ids(&got, |a| a.id), want);

    let cond = Conditions::new().and_in("id", every_other.iter().copied());
    assert_eq!(
        cw.count("company/companies", Some(&cond)).await.unwrap() as usize,
        every_other.len()
    );

    // A field the resource does not have: a typed refusal naming it.
    let e = cw
        .companies(Some(&Conditions::of("noSuchField", Op::Eq, 1u32)))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected, "{e}");
    assert!(e.to_string().contains("noSuchField"), "{e}");
}

#[tokio::test]
async fn cw_addition_writes_are_visible_in_the_state_and_later_reads() {
    let env = start(gen_world(), FaultSpec::default()).await;
    let cw = env.cw();
    let w = &env.world.connectwise;
    let agreement = w
        .agreements
        .iter()
        .find(|a| a.agreement_status == "Active" && !a.cancelled_flag)
        .unwrap();
    let item = w
        .catalog
        .iter()
        .find(|c| !c.identifier.starts_with("LEGACY"))
        .unwrap();
    let before = additions_of(&env.world, agreement.id).len();
    let max_id = w.additions.iter().map(|a| a.id).max().unwrap();

    let new = NewAddition {
        product: Reference::id(item.id),
        bill_customer: BillCustomer::Billable,
        quantity: Decimal::new(7, 0),
        unit_price: Some(Decimal::new(1234, 2)),
        unit_cost: Some(Decimal::new(1001, 2)),
        effective_date: Some(midnight(today())),
        description: Some("E2E addition".into()),
        invoice_description: Some("Seats for the e2e test".into()),
        ..NewAddition::default()
    };
    let created = cw.create_addition(agreement.id, &new).await.unwrap();
    assert!(created.id > max_id, "a fresh id");
    assert_eq!(created.agreement_id, Some(agreement.id));
    assert_eq!(created.product.as_ref().unwrap().id, Some(item.id));
    assert_eq!(
        created.product.as_ref().unwrap().identifier.as_deref(),
        Some(item.identifier.as_str())
    );
    assert_eq!(created.quantity, Some(Decimal::new(7, 0)));
    assert_eq!(created.unit_price, Some(Decimal::new(1234, 2)));
    assert_eq!(created.bill_customer.as_deref(), Some("Billable"));

    let sw = env.state_world().await;
    let stored = sw
        .connectwise
        .additions
        .iter()
        .find(|a| a.id == created.id)
        .expect("the new addition in the state dump");
    assert_eq!(stored.agreement_id, agreement.id);
    assert_eq!(stored.product_id, item.id);
    assert_eq!(stored.quantity, Decimal::new(7, 0));
    assert_eq!(stored.unit_price, Decimal::new(1234, 2));
    assert_eq!(stored.unit_cost, Decimal::new(1001, 2));
    assert_eq!(stored.bill_customer, "Billable");
    assert_eq!(stored.effective_date, Some(today()));
    assert_eq!(stored.description, "E2E addition");
    assert_eq!(
        stored.invoice_description.as_deref(),
        Some("Seats for the e2e test")
    );
    check_addition(&sw, &created, stored);

    let listed = cw.additions(agreement.id, None).await.unwrap();
    assert_eq!(listed.len(), before + 1);
    assert_eq!(listed.iter().find(|a| a.id == created.id), Some(&created));

    // Quantity, including a fractional one (decimals end to end, never floats).
    let patched = cw
        .set_addition_quantity(agreement.id, created.id, Decimal::new(9, 0))
        .await
        .unwrap();
    assert_eq!(patched.quantity, Some(Decimal::new(9, 0)));
    let sw = env.state_world().await;
    let stored = sw
        .connectwise
        .additions
        .iter()
        .find(|a| a.id == created.id)
        .unwrap();
    assert_eq!(stored.quantity, Decimal::new(9, 0));
    let patched = cw
        .set_addition_quantity(agreement.id, created.id, Decimal::new(25, 1))
        .await
        .unwrap();
    assert_eq!(patched.quantity, Some(Decimal::new(25, 1)));
    let reread = cw.additions(agreement.id, None).await.unwrap();
    let r = reread.iter().find(|a| a.id == created.id).unwrap();
    assert_eq!(r.quantity, Some(Decimal::new(25, 1)));

    // Cancel.
    let cancel_on = today() + chrono::Duration::days(3);
    let cancelled = cw
        .cancel_addition(agreement.id, created.id, cancel_on)
        .await
        .unwrap();
    assert_eq!(cancelled.cancelled_date, Some(midnight(cancel_on)));
    let sw = env.state_world().await;
    let stored = sw
        .connectwise
        .additions
        .iter()
        .find(|a| a.id == created.id)
        .unwrap();
    assert_eq!(stored.cancelled_date, Some(cancel_on));
    assert_eq!(stored.quantity, Decimal::new(25, 1));
    let reread = cw.additions(agreement.id, None).await.unwrap();
    let r = reread.iter().find(|a| a.id == created.id).unwrap();
    assert_eq!(r.cancelled_date, Some(midnight(cancel_on)));
    // Filtering on it.
    let open = Conditions::of("cancelledDate", Op::Eq, CondValue::Null);
    let still_open = cw.additions(agreement.id, Some(&open)).await.unwrap();
    assert!(still_open.iter().all(|a| a.id != created.id));

    let st = env.state().await;
    assert_eq!(st["connectwise"]["additions_created"], 1);
    assert_eq!(st["connectwise"]["additions_updated"], 3);
    // Other agreements untouched.
    let untouched: Vec<&CwAddition> = sw
        .connectwise
        .additions
        .iter()
        .filter(|a| a.id != created.id)
        .collect();
    assert_eq!(untouched.len(), w.additions.len());

    // Patching an addition that does not exist: typed NotFound.
    let e = cw
        .set_addition_quantity(agreement.id, 999_999, Decimal::ONE)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn cw_validation_errors_are_typed_with_details() {
    let mut world = gen_world();
    world.connectwise.agreements[1].agreement_status = "Cancelled".into();
    world.connectwise.agreements[1].cancelled_flag = true;
    let env = start(world, FaultSpec::default()).await;
    let cw = env.cw();
    let agreement = env.world.connectwise.agreements[0].id;

    // No product at all.
    let e = cw
        .create_addition(
            agreement,
            &NewAddition {
                product: Reference::default(),
                quantity: Decimal::ONE,
                ..NewAddition::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected, "{e}");
    assert_eq!(e.status, Some(400));
    assert_eq!(e.code.as_deref(), Some("InvalidObject"));
    assert!(
        e.details.iter().any(|d| d.starts_with("product:")),
        "the details name the field: {:?}",
        e.details
    );
    assert!(e.to_string().contains("addition object is invalid"), "{e}");

    // A product the catalog does not have.
    let e = cw
        .create_addition(
            agreement,
            &NewAddition {
                product: Reference::id(999_999),
                quantity: Decimal::ONE,
                ..NewAddition::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected);
    assert!(
        e.details.iter().any(|d| d.contains("999999")),
        "{:?}",
        e.details
    );

    // A cancelled agreement takes no additions.
    let item = env.world.connectwise.catalog[0].id;
    let cancelled = env.world.connectwise.agreements[1].id;
    let e = cw
        .create_addition(
            cancelled,
            &NewAddition {
                product: Reference::id(item),
                quantity: Decimal::ONE,
                ..NewAddition::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected);
    assert!(
        e.details
            .iter()
            .any(|d| d.starts_with("agreementId:") && d.contains("cancelled")),
        "{:?}",
        e.details
    );

    // A negative quantity, on create and on patch.
    let e = cw
        .create_addition(
            agreement,
            &NewAddition {
                product: Reference::id(item),
                quantity: Decimal::new(-1, 0),
                ..NewAddition::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected);
    assert!(
        e.details.iter().any(|d| d.starts_with("quantity:")),
        "{:?}",
        e.details
    );
    let existing = env
        .world
        .connectwise
        .additions
        .iter()
        .find(|a| a.agreement_id == agreement)
        .unwrap();
    let e = cw
        .set_addition_quantity(agreement, existing.id, Decimal::new(-5, 0))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected);
    assert!(
        e.details.iter().any(|d| d.starts_with("quantity:")),
        "{:?}",
        e.details
    );

    // Lists of an agreement that does not exist.
    let e = cw.additions(999_999, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");

    let st = env.state().await;
    assert_eq!(st["connectwise"]["additions_created"], 0);
    assert_eq!(st["connectwise"]["additions_updated"], 0);
    let sw = env.state_world().await;
    assert_eq!(
        sw.connectwise.additions.len(),
        env.world.connectwise.additions.len()
    );
    let still = sw
        .connectwise
        .additions
        .iter()
        .find(|a| a.id == existing.id)
        .unwrap();
    assert_eq!(still.quantity, existing.quantity);
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

/// Everything both clients read, for comparing runs.
#[derive(Debug, PartialEq)]
struct Snapshot {
    subscriptions: Vec<Subscription>,
    tenant_filtered: Vec<Subscription>,
    tenants: Vec<Tenant>,
    prices: Vec<Price>,
    companies: Vec<Company>,
    agreements: Vec<Agreement>,
    catalog: Vec<CatalogItem>,
    additions: BTreeMap<u64, Vec<Addition>>,
    filtered_companies: Vec<Company>,
    company_count: u64,
}

async fn snapshot(env: &Env) -> Snapshot {
    let dd = env.dd();
    let cw = env.cw();
    let w = &env.world;
    let codes: Vec<&str> = w
        .dicker_data
        .subscriptions
        .iter()
        .map(|s| s.stock_code.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut additions = BTreeMap::new();
    for a in &w.connectwise.agreements {
        additions.insert(a.id, cw.additions(a.id, None).await.unwrap());
    }
    let cond = Conditions::of("name", Op::Like, "%a%").and("deletedFlag", Op::Eq, false);
    Snapshot {
        subscriptions: dd.subscriptions(SubscriptionType::Csp, None).await.unwrap(),
        tenant_filtered: dd
            .subscriptions(
                SubscriptionType::Csp,
                Some(&w.dicker_data.subscriptions[0].tenant_id),
            )
            .await
            .unwrap(),
        tenants: dd.tenants().await.unwrap(),
        prices: dd.prices(&codes).await.unwrap(),
        companies: cw.companies(None).await.unwrap(),
        agreements: cw.agreements(None).await.unwrap(),
        catalog: cw.catalog(None).await.unwrap(),
        additions,
        filtered_companies: cw.companies(Some(&cond)).await.unwrap(),
        company_count: cw.count("company/companies", None).await.unwrap(),
    }
}

#[tokio::test]
async fn fault_injected_run_returns_exactly_the_clean_data() {
    let world = gen_world();
    let clean_env = start(world.clone(), FaultSpec::default()).await;
    let clean = snapshot(&clean_env).await;
    // The clean run is itself right.
    check_companies(&world, &clean.companies);
    assert_eq!(
        clean.subscriptions.len(),
        world.dicker_data.subscriptions.len()
    );

    let spec = FaultSpec::parse(
        "dickerdata.429=0.3,connectwise.429=0.3,connectwise.5xx=0.1,retry-after=0,seed=7",
    )
    .unwrap();
    let faulty_env = start(world, spec).await;
    let faulty = snapshot(&faulty_env).await;
    assert_eq!(faulty, clean);

    // The faults really happened, and the clients rode them out.
    assert!(faulty_env.api_counter("/dickerdata/", "throttled").await > 0);
    assert!(faulty_env.api_counter("/connectwise/", "throttled").await > 0);
    assert!(
        faulty_env
            .api_counter("/connectwise/", "server_errors")
            .await
            > 0
    );
    // Nothing was written by reads, retried or not.
    let sw = faulty_env.state_world().await;
    assert_eq!(
        sw.connectwise.additions.len(),
        faulty_env.world.connectwise.additions.len()
    );
}

#[tokio::test]
async fn dropped_create_is_maybe_applied_and_creates_nothing() {
    let env = start(gen_world(), FaultSpec::parse("connectwise.drop=1").unwrap()).await;
    let cw = env.cw();
    let agreement = env.world.connectwise.agreements[0].id;
    let item = &env.world.connectwise.catalog[0];
    let e = cw
        .create_addition(
            agreement,
            &NewAddition {
                product: Reference::id(item.id),
                quantity: Decimal::new(3, 0),
                ..NewAddition::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Transport {
            maybe_applied: true
        },
        "{e}"
    );
    assert!(e.to_string().contains("may have been applied"), "{e}");
    // Sent once, never retried.
    let calls: u64 = env.api_counter("/connectwise/", "dropped").await;
    assert_eq!(calls, 1);
    let st = env.state().await;
    assert_eq!(st["connectwise"]["additions_created"], 0);
    let sw = env.state_world().await;
    assert_eq!(
        sw.connectwise.additions.len(),
        env.world.connectwise.additions.len()
    );

    // A read under the same fault: retried, then a transport error that applied nothing.
    let e = cw.companies(None).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Transport {
            maybe_applied: false
        }
    );

    // Dicker Data's (modelled) quantity change under a dropped connection: the same promise.
    let dd = env.dd();
    dd.test_connection().await.unwrap();
    env.post_control("faults", "dickerdata.drop=1").await;
    let line = &env.world.dicker_data.subscriptions[0];
    let e = dd
        .set_quantity(&line.subscription_id, line.confirmed_quantity + 1)
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Transport {
            maybe_applied: true
        },
        "{e}"
    );
    assert!(e.to_string().contains("may have been applied"), "{e}");
    let st = env.state().await;
    assert!(
        st["dickerdata"]["quantity_changes"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let sw = env.state_world().await;
    assert_eq!(
        sw.dicker_data.subscriptions[0].confirmed_quantity,
        line.confirmed_quantity
    );
}

#[tokio::test]
async fn throttled_writes_are_applied_exactly_once() {
    let world = gen_world();
    // A line billing a Microsoft subscription (only increases here: no window applies).
    let line_idx = world
        .dicker_data
        .subscriptions
        .iter()
        .position(|l| {
            world.customers.iter().any(|c| {
                c.tenant_id == l.tenant_id
                    && c.subscriptions
                        .iter()
                        // Microsoft has no more seats than billed: every change is an increase.
                        .any(|s| {
                            s.id == l.subscription_id
                                && s.status == "active"
                                && s.quantity <= l.confirmed_quantity
                        })
            })
        })
        .unwrap();
    let line = world.dicker_data.subscriptions[line_idx].clone();
    let env = start(
        world,
        FaultSpec::parse("dickerdata.429=0.5,connectwise.429=0.5,retry-after=0,seed=11").unwrap(),
    )
    .await;
    let dd = env.dd();
    let cw = env.cw();
    let agreement = env.world.connectwise.agreements[0].id;
    let item = env.world.connectwise.catalog[0].id;
    for n in 1..=3u32 {
        dd.set_quantity(&line.subscription_id, line.confirmed_quantity + n)
            .await
            .unwrap();
        cw.create_addition(
            agreement,
            &NewAddition {
                product: Reference::id(item),
                quantity: Decimal::from(n),
                ..NewAddition::default()
            },
        )
        .await
        .unwrap();
    }
    assert!(env.api_counter("/dickerdata/", "throttled").await > 0);
    assert!(env.api_counter("/connectwise/", "throttled").await > 0);
    let st = env.state().await;
    assert_eq!(
        st["dickerdata"]["quantity_changes"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(st["connectwise"]["additions_created"], 3);
    let sw: World = serde_json::from_value(st["world"].clone()).unwrap();
    assert_eq!(
        sw.dicker_data.subscriptions[line_idx].confirmed_quantity,
        line.confirmed_quantity + 3
    );
    let mine: Vec<Decimal> = sw
        .connectwise
        .additions
        .iter()
        .filter(|a| !env.world.connectwise.additions.iter().any(|x| x.id == a.id))
        .map(|a| a.quantity)
        .collect();
    assert_eq!(mine, vec![Decimal::ONE, Decimal::from(2), Decimal::from(3)]);
}
