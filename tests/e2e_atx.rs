//! End to end: the real Autotask and Xero clients (src/api/autotask.rs, src/api/xero.rs,
//! src/auth/xero.rs) against the real simulated world (src/sim), over loopback TCP.
//!
//! Every expectation is read from the world the test generated (never from the clients' or
//! the sim's code), and writes are checked in the sim's state dump (`GET {control}/state`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use cspsync::api::autotask::{
    AutotaskClient, AutotaskCredentials, Company, Contract, ContractService, ContractServiceUnit,
    Filter, NewAdjustment, NewContractService, Query, Service,
};
use cspsync::api::error::{ApiError, ErrorKind};
use cspsync::api::http::{RetryPolicy, TokenSource, build_client};
use cspsync::api::xero::{
    Account, Contact, ContactRef, ContactStatus, Invoice, InvoiceQuery, InvoiceStatus, InvoiceType,
    LineAmountTypes, NewInvoice, NewLineItem, XeroClient, expense_accounts, revenue_accounts,
};
use cspsync::auth::loopback::LoopbackListener;
use cspsync::auth::xero::{XeroAuth, XeroSession};
use cspsync::config::Endpoints;
use cspsync::sim::generate::{GenOptions, generate};
use cspsync::sim::world::{AtCompany, XeroInvoice, XeroOrg};
use cspsync::sim::{self, FaultSpec, SimHandle, World};
use futures_util::future::join_all;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use url::Url;

// ---------------------------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------------------------

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn world(customers: usize, seed: u64) -> World {
    generate(&GenOptions::new(customers, seed, today()))
}

struct Running {
    _handle: SimHandle,
    endpoints: Endpoints,
    control: String,
}

async fn start(w: World, faults: FaultSpec) -> Running {
    let handle = sim::start(w, faults, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let urls = handle.urls();
    let endpoints = Endpoints::from_sim(&urls).unwrap();
    Running {
        control: urls.control.clone(),
        _handle: handle,
        endpoints,
    }
}

/// The sim on a runtime of its own with many worker threads, so that concurrent requests are
/// handled in parallel (and hold their vendor-limit slot while they wait for the world's lock)
/// as a real service's would; on the test's own two threads they would mostly run one after
/// another and the limits would never be reached. Shut the runtime down with
/// `shutdown_background` at the end.
async fn start_threaded(w: World, faults: FaultSpec) -> (Running, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(16)
        .enable_all()
        .build()
        .unwrap();
    let handle = rt
        .spawn(sim::start(w, faults, "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    let urls = handle.urls();
    let running = Running {
        control: urls.control.clone(),
        endpoints: Endpoints::from_sim(&urls).unwrap(),
        _handle: handle,
    };
    (running, rt)
}

fn http() -> reqwest::Client {
    build_client(Duration::from_secs(60))
}

/// Short backoffs where no Retry-After is given; Retry-After itself is still honoured.
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
    }
}

impl Running {
    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.control))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The sim's whole state (the world as the writes left it, plus runtime records).
    async fn state(&self) -> Value {
        self.get("/state").await
    }

    /// Calls and 429s per endpoint key, e.g. `GET /xero-api/api.xro/2.0/Invoices`.
    async fn stats(&self) -> BTreeMap<String, Value> {
        serde_json::from_value(self.get("/stats").await).unwrap()
    }

    /// 429s the sim answered on endpoints whose key contains `part`.
    async fn throttled(&self, part: &str) -> u64 {
        self.stats()
            .await
            .iter()
            .filter(|(k, _)| k.contains(part))
            .map(|(_, v)| v["throttled"].as_u64().unwrap())
            .sum()
    }

    async fn calls(&self, key: &str) -> u64 {
        self.stats()
            .await
            .get(key)
            .map_or(0, |v| v["calls"].as_u64().unwrap())
    }
}

// ---------------------------------------------------------------------------------------------
// Autotask helpers
// ---------------------------------------------------------------------------------------------

fn at_creds(w: &World) -> AutotaskCredentials {
    AutotaskCredentials::new(
        w.autotask.username.clone(),
        w.autotask.secret.clone(),
        w.autotask.integration_codes[0].clone(),
    )
}

async fn autotask(r: &Running, w: &World, max_records: u32) -> AutotaskClient {
    AutotaskClient::discover(&r.endpoints.autotask, http(), at_creds(w))
        .await
        .unwrap()
        .with_retry(fast_retry())
        .with_max_records(max_records)
}

fn company_of(c: &AtCompany) -> Company {
    Company {
        id: c.id as i64,
        company_name: c.company_name.clone(),
        company_number: c.company_number.clone(),
        company_type: Some(i64::from(c.company_type)),
        is_active: Some(c.is_active),
        phone: c.phone.clone(),
        web_address: c.web_address.clone(),
        owner_resource_id: None,
        user_defined_fields: Vec::new(),
    }
}

fn world_companies(w: &World) -> Vec<Company> {
    let mut v: Vec<Company> = w.autotask.companies.iter().map(company_of).collect();
    v.sort_by_key(|c| c.id);
    v
}

fn world_contracts(w: &World) -> Vec<Contract> {
    let mut v: Vec<Contract> = w
        .autotask
        .contracts
        .iter()
        .map(|c| Contract {
            id: c.id as i64,
            company_id: Some(c.company_id as i64),
            contract_name: Some(c.contract_name.clone()),
            contract_number: c.contract_number.clone(),
            contract_type: Some(i64::from(c.contract_type)),
            status: Some(i64::from(c.status)),
            start_date: c.start_date,
            end_date: c.end_date,
            contract_period_type: c.contract_period_type.map(i64::from),
            setup_fee: None,
            organizational_level_association_id: None,
            description: c.description.clone(),
        })
        .collect();
    v.sort_by_key(|c| c.id);
    v
}

fn world_services(w: &World) -> Vec<Service> {
    let mut v: Vec<Service> = w
        .autotask
        .services
        .iter()
        .map(|s| Service {
            id: s.id as i64,
            name: s.name.clone(),
            description: s.description.clone(),
            sku: s.sku.clone(),
            unit_price: Some(s.unit_price),
            unit_cost: Some(s.unit_cost),
            period_type: s.period_type.map(i64::from),
            billing_code_id: None,
            is_active: Some(s.is_active),
        })
        .collect();
    v.sort_by_key(|s| s.id);
    v
}

/// What a client reads of a contract service; the internal-currency prices are not in the
/// dataset (a single-currency database has them equal to the customer's), so they are left out.
fn cs_view(c: &ContractService) -> CsView {
    (
        c.id,
        c.contract_id,
        c.service_id,
        c.unit_price,
        c.unit_cost,
        c.adjusted_price,
        c.invoice_description.clone(),
        c.internal_description.clone(),
    )
}

type CsView = (
    i64,
    Option<i64>,
    Option<i64>,
    Option<Decimal>,
    Option<Decimal>,
    Option<Decimal>,
    Option<String>,
    Option<String>,
);

fn world_contract_services(w: &World) -> Vec<CsView> {
    let mut v: Vec<CsView> = w
        .autotask
        .contract_services
        .iter()
        .map(|c| {
            (
                c.id as i64,
                Some(c.contract_id as i64),
                Some(c.service_id as i64),
                Some(c.unit_price),
                Some(c.unit_cost),
                c.adjusted_price,
                c.invoice_description.clone(),
                c.internal_description.clone(),
            )
        })
        .collect();
    v.sort_by_key(|c| c.0);
    v
}

/// §6.3: the current quantity is the `units` of the record with startDate <= today <= endDate.
fn world_current_units(w: &World, day: NaiveDate) -> HashMap<i64, i64> {
    w.autotask
        .contract_service_units
        .iter()
        .filter(|u| u.start_date.is_some_and(|s| s <= day) && u.end_date.is_none_or(|e| e >= day))
        .map(|u| (u.contract_service_id as i64, u.units))
        .collect()
}

/// A decimal from the state dump (the dataset writes money as a string or a number).
fn dec(v: &Value) -> Decimal {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.parse().unwrap()
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> i64) -> Vec<i64> {
    items.iter().map(id).collect()
}

fn assert_each_once(ids: &[i64], what: &str) {
    let set: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(set.len(), ids.len(), "{what}: an item came back twice");
}

// ---------------------------------------------------------------------------------------------
// Xero helpers
// ---------------------------------------------------------------------------------------------

fn xero_auth(r: &Running, w: &World) -> XeroAuth {
    XeroAuth::new(
        r.endpoints.xero_login.clone(),
        r.endpoints.xero_identity.clone(),
        w.app.xero_client_id.clone(),
        http(),
    )
    .with_retry(fast_retry())
}

/// The authorize redirect's `Location`, as a browser with redirects off would see it.
async fn authorize_location(url: &Url) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser.get(url.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 302, "authorize answers with a redirect");
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// Sign in through the pasted-URL path (what an SSH user does) and return a session.
async fn sign_in(r: &Running, w: &World) -> Arc<XeroSession> {
    let auth = xero_auth(r, w);
    let req = auth.start(&Url::parse("http://localhost:1/callback").unwrap());
    let pasted = authorize_location(req.url()).await;
    let tokens = auth.complete_pasted(req, &pasted).await.unwrap();
    Arc::new(XeroSession::new(auth, tokens))
}

fn xero_client(r: &Running, session: &Arc<XeroSession>) -> XeroClient {
    let token: Arc<dyn TokenSource> = session.clone();
    XeroClient::new(r.endpoints.xero_api.clone(), http(), token).with_retry(fast_retry())
}

fn org(w: &World) -> &XeroOrg {
    &w.xero.organisations[0]
}

fn contact_view(c: &Contact) -> ContactView {
    (
        c.contact_id.clone().unwrap(),
        c.name.clone().unwrap_or_default(),
        c.contact_status.map(|s| match s {
            ContactStatus::Active => "ACTIVE".to_string(),
            ContactStatus::Archived => "ARCHIVED".to_string(),
            ContactStatus::GdprRequest => "GDPRREQUEST".to_string(),
            ContactStatus::Unknown => "?".to_string(),
        }),
        c.email_address.clone(),
        c.account_number.clone(),
        c.is_supplier,
        c.is_customer,
        c.updated_date_utc.map(|t| t.timestamp_millis()),
    )
}

type ContactView = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<bool>,
    Option<i64>,
);

/// §7.4: archived contacts come only with includeArchived=true.
fn world_contacts(o: &XeroOrg) -> Vec<ContactView> {
    let mut v: Vec<ContactView> = o
        .contacts
        .iter()
        .filter(|c| c.contact_status != "ARCHIVED")
        .map(|c| {
            (
                c.contact_id.clone(),
                c.name.clone(),
                Some(if c.contact_status.is_empty() {
                    "ACTIVE".to_string()
                } else {
                    c.contact_status.clone()
                }),
                c.email_address.clone(),
                c.account_number.clone(),
                Some(c.is_supplier),
                Some(c.is_customer),
                c.updated.map(|t| t.timestamp_millis()),
            )
        })
        .collect();
    v.sort();
    v
}

fn round2(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Description, quantity, unit amount, item code, account code, tax type.
type Line = (
    String,
    Decimal,
    Decimal,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// An invoice as the test reads it from the world: ids, header fields, lines, and totals
/// worked out here (AU GST 10 % on OUTPUT/INPUT lines, exclusive amounts).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct InvoiceView {
    id: String,
    kind: String,
    contact: String,
    number: Option<String>,
    reference: Option<String>,
    date: Option<NaiveDate>,
    due: Option<NaiveDate>,
    status: String,
    lines: Vec<Line>,
    sub_total: Decimal,
    total_tax: Decimal,
    total: Decimal,
}

fn world_invoice_view(i: &XeroInvoice) -> InvoiceView {
    let mut sub = Decimal::ZERO;
    let mut tax = Decimal::ZERO;
    for l in &i.line_items {
        let amount = round2(l.quantity * l.unit_amount);
        sub += amount;
        if matches!(l.tax_type.as_deref(), Some("OUTPUT" | "INPUT")) {
            tax += round2(amount * Decimal::new(1, 1));
        }
    }
    InvoiceView {
        id: i.invoice_id.clone(),
        kind: i.invoice_type.clone(),
        contact: i.contact_id.clone(),
        number: i.invoice_number.clone(),
        reference: i.reference.clone(),
        date: i.date,
        due: i.due_date,
        status: i.status.clone(),
        lines: i
            .line_items
            .iter()
            .map(|l| {
                (
                    l.description.clone(),
                    l.quantity.normalize(),
                    l.unit_amount.normalize(),
                    l.item_code.clone(),
                    l.account_code.clone(),
                    l.tax_type.clone(),
                )
            })
            .collect(),
        sub_total: sub.normalize(),
        total_tax: tax.normalize(),
        total: (sub + tax).normalize(),
    }
}

fn client_invoice_view(i: &Invoice) -> InvoiceView {
    let kind = match i.invoice_type {
        Some(InvoiceType::AccRec) => "ACCREC",
        Some(InvoiceType::AccPay) => "ACCPAY",
        other => panic!("unexpected invoice type {other:?}"),
    };
    InvoiceView {
        id: i.invoice_id.clone().unwrap(),
        kind: kind.into(),
        contact: i
            .contact
            .as_ref()
            .and_then(|c| c.contact_id.clone())
            .unwrap(),
        number: i.invoice_number.clone(),
        reference: i.reference.clone(),
        date: i.date,
        due: i.due_date,
        status: i.status.unwrap().as_str().to_string(),
        lines: i
            .line_items
            .iter()
            .map(|l| {
                (
                    l.description.clone().unwrap_or_default(),
                    l.quantity.unwrap().normalize(),
                    l.unit_amount.unwrap().normalize(),
                    l.item_code.clone(),
                    l.account_code.clone(),
                    l.tax_type.clone(),
                )
            })
            .collect(),
        sub_total: i.sub_total.unwrap().normalize(),
        total_tax: i.total_tax.unwrap().normalize(),
        total: i.total.unwrap().normalize(),
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

// =============================================================================================
// Autotask
// =============================================================================================

#[tokio::test]
async fn autotask_zone_discovery_and_credentials() {
    let w = world(12, 3);
    let r = start(w.clone(), FaultSpec::default()).await;

    // The world's credentials: the zone the world names, and entity calls that work.
    let at = AutotaskClient::discover(&r.endpoints.autotask, http(), at_creds(&w))
        .await
        .unwrap();
    let zone = at.zone().unwrap();
    assert_eq!(zone.zone_name, w.autotask.zone_name);
    assert_eq!(zone.ci, Some(w.autotask.ci as i64));
    assert!(
        at.base().as_str().ends_with(&format!(
            "/autotask/zone{}/atservicesrest/v1.0/",
            w.autotask.zone_number
        )),
        "{}",
        at.base()
    );
    assert_eq!(
        at.companies(vec![]).await.unwrap().len(),
        w.autotask.companies.len()
    );

    // A wrong secret: zone discovery does not check it (§6.1), the first entity call does.
    let mut bad = at_creds(&w);
    bad.secret = "not-the-secret".to_string().into();
    let at_bad = AutotaskClient::discover(&r.endpoints.autotask, http(), bad)
        .await
        .unwrap();
    let e = at_bad.companies(vec![]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert_eq!(e.status, Some(401));
    assert!(
        e.to_string().contains("UserName or Secret is not valid"),
        "{e}"
    );
    assert!(e.hint().contains("secret"), "{}", e.hint());
    assert!(!e.to_string().contains("not-the-secret"));

    // A wrong integration code (tracking identifier).
    let mut bad = at_creds(&w);
    bad.integration_code = "WRONGCODE".to_string().into();
    let at_bad = AutotaskClient::discover(&r.endpoints.autotask, http(), bad)
        .await
        .unwrap();
    let e = at_bad.contracts(vec![]).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains("ApiIntegrationCode"), "{e}");
    assert!(e.hint().contains("integration code"), "{}", e.hint());

    // An API user the zone lookup does not know.
    let mut bad = at_creds(&w);
    bad.username = "nobody@example.com".into();
    let e = AutotaskClient::discover(&r.endpoints.autotask, http(), bad)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("nobody@example.com"), "{e}");

    let s = r.state().await;
    assert_eq!(s["autotask"]["auth_failures"], 2);
    assert_eq!(s["autotask"]["zone_lookups"], 3);
}

#[tokio::test]
async fn autotask_reads_equal_the_world_across_pages() {
    let w = world(30, 5);
    let r = start(w.clone(), FaultSpec::default()).await;
    let page = 7u32;
    let at = autotask(&r, &w, page).await;
    for (n, what) in [
        (w.autotask.companies.len(), "companies"),
        (w.autotask.contracts.len(), "contracts"),
        (w.autotask.contract_services.len(), "contract services"),
    ] {
        assert!(
            n > 2 * page as usize,
            "the world has {n} {what}: fewer than 3 pages"
        );
    }

    let companies = at.companies(vec![]).await.unwrap();
    assert_each_once(&ids(&companies, |c| c.id), "companies");
    assert_eq!(sorted_by_id(companies, |c| c.id), world_companies(&w));

    let contracts = at.contracts(vec![]).await.unwrap();
    assert_each_once(&ids(&contracts, |c| c.id), "contracts");
    assert_eq!(
        sorted_by_id(contracts.clone(), |c| c.id),
        world_contracts(&w)
    );

    let services = at.services(vec![]).await.unwrap();
    assert_eq!(sorted_by_id(services, |s| s.id), world_services(&w));

    let contract_ids = ids(&contracts, |c| c.id);
    let cs = at.contract_services(&contract_ids).await.unwrap();
    assert_each_once(&ids(&cs, |c| c.id), "contract services");
    let mut got: Vec<CsView> = cs.iter().map(cs_view).collect();
    got.sort_by_key(|c| c.0);
    assert_eq!(got, world_contract_services(&w));

    let units: Vec<ContractServiceUnit> = at
        .contract_service_units(&ids(&cs, |c| c.id))
        .await
        .unwrap();
    assert_each_once(&ids(&units, |u| u.id), "units");
    let want_units: Vec<ContractServiceUnit> = w
        .autotask
        .contract_service_units
        .iter()
        .map(|u| ContractServiceUnit {
            id: u.id as i64,
            contract_id: Some(u.contract_id as i64),
            contract_service_id: u.contract_service_id as i64,
            service_id: Some(u.service_id as i64),
            start_date: u.start_date,
            end_date: u.end_date,
            units: u.units,
            price: Some(u.price),
            cost: Some(u.cost),
            approve_and_post_date: None,
        })
        .collect();
    assert_eq!(
        sorted_by_id(units, |u| u.id),
        sorted_by_id(want_units, |u| u.id)
    );

    // One record by id (§6.2 `{"item":...}`), and None for an id Autotask does not have.
    let first = &world_companies(&w)[0];
    let one: Option<Company> = at.get("Companies", first.id).await.unwrap();
    assert_eq!(one.as_ref(), Some(first));
    let none: Option<Company> = at.get("Companies", 999_999_999).await.unwrap();
    assert_eq!(none, None);

    // IncludeFields over several pages: the client adds `id`, which paging needs (§6.2).
    let q = cspsync::api::autotask::Query::new(vec![])
        .fields(["companyName"])
        .max_records(page);
    let named = at.query_values("Companies", &q).await.unwrap();
    let got: Vec<(i64, String)> = sorted(
        named
            .iter()
            .map(|v| {
                assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
                (
                    v["id"].as_i64().unwrap(),
                    v["companyName"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    );
    let want: Vec<(i64, String)> = world_companies(&w)
        .into_iter()
        .map(|c| (c.id, c.company_name))
        .collect();
    assert_eq!(got, want);

    // The hourly allowance in use (§6.1; its shape is not confirmed, so it is plain JSON).
    let threshold = at.threshold_information().await.unwrap();
    assert!(threshold.is_object(), "{threshold}");

    // Every page after the first was fetched through nextPageUrl (§6.2).
    let zone = format!(
        "/autotask/zone{}/atservicesrest/v1.0",
        w.autotask.zone_number
    );
    for entity in [
        "Companies",
        "Contracts",
        "ContractServices",
        "ContractServiceUnits",
    ] {
        let next = r.calls(&format!("GET {zone}/{entity}/query/next")).await;
        assert!(next >= 2, "{entity}: {next} nextPageUrl pages");
    }
}

fn sorted_by_id<T>(mut v: Vec<T>, id: impl Fn(&T) -> i64) -> Vec<T> {
    v.sort_by_key(|x| id(x));
    v
}

#[tokio::test]
async fn autotask_filters_are_evaluated_by_the_sim() {
    let w = world(30, 8);
    let r = start(w.clone(), FaultSpec::default()).await;
    let at = autotask(&r, &w, 9).await;
    let all = world_companies(&w);
    let pick = |f: &dyn Fn(&Company) -> bool| -> Vec<Company> {
        all.iter().filter(|c| f(c)).cloned().collect()
    };
    let lower = |s: &str| s.to_lowercase();

    // eq
    let got = at
        .companies(vec![Filter::eq("companyType", 3)])
        .await
        .unwrap();
    let want = pick(&|c| c.company_type == Some(3));
    assert!(!want.is_empty());
    assert_eq!(sorted_by_id(got, |c| c.id), want);

    // beginsWith (Autotask compares text case-insensitively)
    let prefix: String = all[3].company_name.chars().take(3).collect();
    let got = at
        .companies(vec![Filter::begins_with("companyName", prefix.clone())])
        .await
        .unwrap();
    let want = pick(&|c| lower(&c.company_name).starts_with(&lower(&prefix)));
    assert!(want.iter().any(|c| c.id == all[3].id));
    assert_eq!(sorted_by_id(got, |c| c.id), want);

    // An `in` with more than 500 values: the client splits it (the 500-OR rule, §6.2).
    let wanted: BTreeSet<i64> = all.iter().step_by(2).map(|c| c.id).collect();
    let mut values: Vec<i64> = wanted.iter().copied().collect();
    values.extend(1_000_000..1_000_700);
    assert!(values.len() > 500);
    let before = r
        .calls(&format!(
            "POST /autotask/zone{}/atservicesrest/v1.0/Companies/query",
            w.autotask.zone_number
        ))
        .await;
    let got = at
        .companies(vec![Filter::is_in("id", values.clone())])
        .await
        .unwrap();
    let after = r
        .calls(&format!(
            "POST /autotask/zone{}/atservicesrest/v1.0/Companies/query",
            w.autotask.zone_number
        ))
        .await;
    assert!(after - before >= 2, "the long `in` was sent as one query");
    assert_each_once(&ids(&got, |c| c.id), "in");
    assert_eq!(
        sorted_by_id(got, |c| c.id),
        pick(&|c| wanted.contains(&c.id))
    );
    assert_eq!(
        at.count("Companies", &[Filter::is_in("id", values.clone())])
            .await
            .unwrap(),
        wanted.len() as u64
    );

    // The sim refuses such a query unsplit, so the split is what made it work.
    let raw = reqwest::Client::new()
        .post(at.base().join("Companies/query").unwrap())
        .header("ApiIntegrationCode", &w.autotask.integration_codes[0])
        .header("UserName", &w.autotask.username)
        .header("Secret", &w.autotask.secret)
        .json(&serde_json::json!({"filter": [Filter::is_in("id", values.clone())]}))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert!(
        raw.text()
            .await
            .unwrap()
            .contains("500 or fewer 'OR' conditions")
    );

    // `or` items count against the 500 too: two alternatives and 499 values is one too many
    // for one query, so the client must split this `in` as well.
    let near: Vec<i64> = all
        .iter()
        .map(|c| c.id)
        .chain(2_000_000..)
        .take(499)
        .collect();
    let got = at
        .companies(vec![
            Filter::or([Filter::eq("companyType", 1), Filter::eq("companyType", 3)]),
            Filter::is_in("id", near),
        ])
        .await
        .unwrap();
    assert_eq!(
        sorted_by_id(got, |c| c.id),
        pick(&|c| matches!(c.company_type, Some(1 | 3)))
    );

    // and / or groups, together with an `in` and other top-level conditions.
    let inactive_or_prefix = Filter::or([
        Filter::eq("companyType", 3),
        Filter::and([
            Filter::begins_with("companyName", prefix.clone()),
            Filter::eq("isActive", true),
        ]),
    ]);
    let got = at
        .companies(vec![
            inactive_or_prefix.clone(),
            Filter::is_in("id", values.clone()),
        ])
        .await
        .unwrap();
    let want = pick(&|c| {
        wanted.contains(&c.id)
            && (c.company_type == Some(3)
                || (lower(&c.company_name).starts_with(&lower(&prefix))
                    && c.is_active == Some(true)))
    });
    assert_eq!(sorted_by_id(got, |c| c.id), want);

    // count agrees with the world.
    assert_eq!(
        at.count("Companies", &[inactive_or_prefix]).await.unwrap(),
        pick(&|c| c.company_type == Some(3)
            || (lower(&c.company_name).starts_with(&lower(&prefix)) && c.is_active == Some(true)))
        .len() as u64
    );
    assert_eq!(
        at.count("Contracts", &[]).await.unwrap(),
        w.autotask.contracts.len() as u64
    );

    // Dates: contracts still running on a given day.
    let day = today();
    let got = at
        .contracts(vec![
            Filter::eq("contractType", 7),
            Filter::gte("endDate", day.format("%Y-%m-%d").to_string()),
            Filter::lte("startDate", day.format("%Y-%m-%d").to_string()),
        ])
        .await
        .unwrap();
    let want: Vec<Contract> = world_contracts(&w)
        .into_iter()
        .filter(|c| {
            c.contract_type == Some(7) && c.end_date.unwrap() >= day && c.start_date.unwrap() <= day
        })
        .collect();
    assert_eq!(sorted_by_id(got, |c| c.id), want);
}

#[tokio::test]
async fn autotask_units_adjustments_and_new_contract_services() {
    let w = world(20, 11);
    let r = start(w.clone(), FaultSpec::default()).await;
    let at = autotask(&r, &w, 10).await;
    let day = today();
    let cs = at
        .contract_services(&ids(&w.autotask.contracts, |c| c.id as i64))
        .await
        .unwrap();
    let cs_ids = ids(&cs, |c| c.id);
    let before = at.current_units(&cs_ids, day).await.unwrap();
    let want = world_current_units(&w, day);
    assert!(!want.is_empty());
    assert_eq!(before, want);

    // A +3 adjustment effective today changes the current quantity in a later read.
    let (&target, &units) = before.iter().min().unwrap();
    let target_cs = cs.iter().find(|c| c.id == target).unwrap();
    let adj = NewAdjustment {
        contract_id: target_cs.contract_id.unwrap(),
        service_id: target_cs.service_id.unwrap(),
        contract_service_id: Some(target),
        unit_change: 3,
        adjusted_unit_price: target_cs.adjusted_price,
        adjusted_unit_cost: None,
        effective_date: day,
    };
    let item = at.create_adjustment(&adj).await.unwrap();
    let after = at.current_units(&cs_ids, day).await.unwrap();
    assert_eq!(after[&target], units + 3);
    for (k, v) in &before {
        if *k != target {
            assert_eq!(after[k], *v, "contract service {k} changed");
        }
    }
    let s = r.state().await;
    let recorded = s["world"]["autotask"]["contract_service_adjustments"]
        .as_array()
        .unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["id"].as_i64(), Some(item));
    assert_eq!(recorded[0]["unit_change"], 3);
    assert_eq!(recorded[0]["contract_id"].as_i64(), Some(adj.contract_id));
    assert_eq!(recorded[0]["contract_service_id"].as_i64(), Some(target));
    assert_eq!(
        recorded[0]["effective_date"].as_str(),
        Some(day.format("%Y-%m-%d").to_string().as_str())
    );

    // An effectiveDate after the contract ends: a typed refusal carrying Autotask's sentence.
    let contract = w
        .autotask
        .contracts
        .iter()
        .find(|c| c.id as i64 == adj.contract_id)
        .unwrap();
    let late = NewAdjustment {
        effective_date: contract.end_date.unwrap().succ_opt().unwrap(),
        ..adj.clone()
    };
    let e = at.create_adjustment(&late).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected, "{e}");
    assert!(
        e.to_string()
            .contains("effectiveDate must be between the start date and end date of the Contract"),
        "{e}"
    );
    assert!(!e.is_transient());
    let s = r.state().await;
    assert_eq!(
        s["world"]["autotask"]["contract_service_adjustments"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the refused adjustment was recorded"
    );
    assert_eq!(at.current_units(&cs_ids, day).await.unwrap(), after);

    // A new contract service: a service the contract does not have yet.
    let on_contract: BTreeSet<i64> = cs
        .iter()
        .filter(|c| c.contract_id == Some(adj.contract_id))
        .filter_map(|c| c.service_id)
        .collect();
    let service = w
        .autotask
        .services
        .iter()
        .find(|s| !on_contract.contains(&(s.id as i64)))
        .unwrap();
    let mut new =
        NewContractService::new(adj.contract_id, service.id as i64, Decimal::new(4210, 2));
    new.invoice_description = Some("Added by the e2e test".into());
    let new_id = at.create_contract_service(&new).await.unwrap();
    let cs2 = at.contract_services(&[adj.contract_id]).await.unwrap();
    let made = cs2.iter().find(|c| c.id == new_id).unwrap();
    assert_eq!(made.service_id, Some(service.id as i64));
    assert_eq!(made.unit_price, Some(Decimal::new(4210, 2)));
    assert_eq!(made.adjusted_price, Some(Decimal::new(4210, 2)));
    assert_eq!(
        made.invoice_description.as_deref(),
        Some("Added by the e2e test")
    );
    let s = r.state().await;
    assert!(
        s["world"]["autotask"]["contract_services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"].as_i64() == Some(new_id)
                && c["contract_id"].as_i64() == Some(adj.contract_id))
    );
    // It starts with no units; an adjustment gives it some.
    assert_eq!(
        at.current_units(&[new_id], day)
            .await
            .unwrap()
            .get(&new_id)
            .copied()
            .unwrap_or(0),
        0
    );
    at.create_adjustment(&NewAdjustment {
        contract_id: adj.contract_id,
        service_id: service.id as i64,
        contract_service_id: Some(new_id),
        unit_change: 5,
        adjusted_unit_price: None,
        adjusted_unit_cost: None,
        effective_date: day,
    })
    .await
    .unwrap();
    assert_eq!(at.current_units(&[new_id], day).await.unwrap()[&new_id], 5);

    // Only adjustedPrice and invoiceDescription change on update (§6.3).
    at.update_contract_service(
        adj.contract_id,
        new_id,
        Some(Decimal::new(3999, 2)),
        Some("Renamed by the e2e test"),
    )
    .await
    .unwrap();
    let s = r.state().await;
    let stored = s["world"]["autotask"]["contract_services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"].as_i64() == Some(new_id))
        .unwrap()
        .clone();
    assert_eq!(dec(&stored["adjusted_price"]), Decimal::new(3999, 2));
    assert_eq!(dec(&stored["unit_price"]), Decimal::new(4210, 2));
    assert_eq!(stored["invoice_description"], "Renamed by the e2e test");
    let read = at.contract_services(&[adj.contract_id]).await.unwrap();
    let read = read.iter().find(|c| c.id == new_id).unwrap();
    assert_eq!(read.adjusted_price, Some(Decimal::new(3999, 2)));
    assert_eq!(read.effective_price(), Some(Decimal::new(3999, 2)));

    // The same service twice on one contract is refused, readably.
    let e = at.create_contract_service(&new).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected, "{e}");
    assert!(e.to_string().contains("already on contract"), "{e}");
}

// =============================================================================================
// Xero
// =============================================================================================

#[tokio::test]
async fn xero_sign_in_over_the_loopback_redirect_and_by_pasting() {
    let w = world(8, 21);
    let r = start(w.clone(), FaultSpec::default()).await;
    let auth = xero_auth(&r, &w);

    // Loopback: a browser (reqwest following redirects) lands on the listener.
    let listener = LoopbackListener::bind("/callback").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tokens = auth
        .sign_in_with_loopback(listener, Duration::from_secs(20), |url| {
            let url = url.clone();
            tokio::spawn(async move {
                let browser = reqwest::Client::new();
                let page = browser.get(url).send().await.unwrap();
                let status = page.status();
                let text = page.text().await.unwrap();
                let _ = tx.send((status, text));
            });
        })
        .await
        .unwrap();
    let (status, page) = rx.await.unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("Signed in"), "{page}");
    assert_eq!(tokens.expires_in, Duration::from_secs(1800));
    let scopes = tokens.scopes.clone().unwrap();
    assert!(
        scopes.iter().any(|s| s == "accounting.invoices"),
        "{scopes:?}"
    );

    let session = Arc::new(XeroSession::new(auth.clone(), tokens));
    let xero = xero_client(&r, &session);
    let conns = xero.connections().await.unwrap();
    let got: Vec<(String, Option<String>)> = conns
        .iter()
        .map(|c| (c.tenant_id.clone(), c.tenant_name.clone()))
        .collect();
    let want: Vec<(String, Option<String>)> = w
        .xero
        .organisations
        .iter()
        .map(|o| (o.tenant_id.clone(), Some(o.name.clone())))
        .collect();
    assert_eq!(got, want);
    assert!(
        conns
            .iter()
            .all(|c| c.is_organisation() && c.created_date_utc.is_some())
    );

    // Pasted URL (SSH): the address the browser ended on.
    let req = auth.start(&Url::parse("http://localhost:1/callback").unwrap());
    let pasted = authorize_location(req.url()).await;
    assert!(
        pasted.starts_with("http://localhost:1/callback?code="),
        "{pasted}"
    );
    let t2 = auth
        .complete_pasted(req, &format!("  {pasted}  "))
        .await
        .unwrap();
    assert_ne!(t2.refresh_token.secret(), session.refresh_token().secret());

    // A redirect from another sign-in (state mismatch) is refused before any code exchange.
    let req_a = auth.start(&Url::parse("http://localhost:1/callback").unwrap());
    let req_b = auth.start(&Url::parse("http://localhost:1/callback").unwrap());
    let pasted_b = authorize_location(req_b.url()).await;
    let e = auth.complete_pasted(req_a, &pasted_b).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::OAuth);
    assert!(e.to_string().contains("state mismatch"), "{e}");
    // The code is single use: redeeming it twice is invalid_grant.
    auth.complete_pasted(req_b, &pasted_b).await.unwrap();
    let req_c = auth.start(&Url::parse("http://localhost:1/callback").unwrap());
    let state_c = req_c.state().to_string();
    let code_b = Url::parse(&pasted_b)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let e = auth
        .complete_pasted(
            req_c,
            &format!("http://localhost:1/callback?code={code_b}&state={state_c}"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OAuth, "{e}");
    assert_eq!(e.code.as_deref(), Some("invalid_grant"));
    assert!(e.to_string().contains("sign in to Xero again"), "{e}");

    let s = r.state().await;
    assert_eq!(s["xero"]["codes_issued"], 3);
    assert_eq!(s["xero"]["tokens_issued"], 3);

    // Disconnecting an organisation (§7.2) removes it from the connections.
    xero.disconnect(&conns[0].id).await.unwrap();
    assert!(xero.connections().await.unwrap().is_empty());
    let e = xero.disconnect(&conns[0].id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let e = xero
        .accounts(&w.xero.organisations[0].tenant_id, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden, "{e}");
}

#[tokio::test]
async fn xero_session_rotates_refresh_tokens_and_recovers_from_expiry() {
    let w = world(8, 22);
    let r = start(w.clone(), FaultSpec::default()).await;
    let session = sign_in(&r, &w).await;
    let tenant = org(&w).tenant_id.clone();
    let xero = xero_client(&r, &session);
    let r0 = session.refresh_token();

    // Rotation: each refresh hands out a new refresh token, and the next refresh uses it.
    let a1 = session.access_token(true).await.unwrap();
    let r1 = session.refresh_token();
    assert_ne!(r1.secret(), r0.secret());
    session.access_token(true).await.unwrap();
    let r2 = session.refresh_token();
    assert_ne!(r2.secret(), r1.secret());
    let s = r.state().await;
    assert_eq!(
        s["xero"]["refreshes"], 2,
        "each refresh rotated a fresh token"
    );
    assert_eq!(
        s["xero"]["refresh_grace_replays"], 0,
        "an old refresh token was reused"
    );
    assert_eq!(session.refresh_count(), 2);

    // A refresh whose answer was lost: the old token, retried inside the grace period,
    // gives the same answer again (§7.1).
    let auth = xero_auth(&r, &w);
    let replay = auth.refresh(&r0).await.unwrap();
    assert_eq!(replay.refresh_token.secret(), r1.secret());
    assert_eq!(replay.access_token.secret(), a1.secret());
    let s = r.state().await;
    assert_eq!(s["xero"]["refresh_grace_replays"], 1);
    assert_eq!(s["xero"]["refreshes"], 2);

    // Expired access tokens: the API says 401, the session refreshes once, the call succeeds.
    let accounts = xero.accounts(&tenant, None).await.unwrap();
    assert_eq!(accounts.len(), org(&w).accounts.len());
    let expired: Value = reqwest::Client::new()
        .post(format!("{}/tokens/expire", r.control))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(expired["access_tokens"].as_u64().unwrap() >= 1);
    let again = xero.accounts(&tenant, None).await.unwrap();
    assert_eq!(again, accounts);
    assert_eq!(session.refresh_count(), 3);
    assert_eq!(xero.stats().refreshes, 1);
    assert_ne!(session.refresh_token().secret(), r2.secret());

    // A session from a stored refresh token (no access token yet) refreshes first.
    let stored = Arc::new(XeroSession::from_refresh_token(
        xero_auth(&r, &w),
        session.refresh_token(),
    ));
    let xero2 = xero_client(&r, &stored);
    assert_eq!(xero2.accounts(&tenant, None).await.unwrap(), accounts);
    assert_eq!(stored.refresh_count(), 1);

    // A revoked/unknown refresh token: a clear "sign in again".
    let gone = Arc::new(XeroSession::from_refresh_token(
        xero_auth(&r, &w),
        oauth2::RefreshToken::new("not-a-refresh-token".into()),
    ));
    let e = xero_client(&r, &gone)
        .accounts(&tenant, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OAuth, "{e}");
    assert!(e.to_string().contains("sign in to Xero again"), "{e}");
}

#[tokio::test]
async fn xero_reads_equal_the_world() {
    let w = world(60, 23);
    let r = start(w.clone(), FaultSpec::default()).await;
    let session = sign_in(&r, &w).await;
    let o = org(&w);
    let tenant = o.tenant_id.clone();
    let page = 20u32;
    let xero = xero_client(&r, &session).with_page_size(page);

    // Contacts over >= 3 pages, each exactly once.
    let want = world_contacts(o);
    assert!(want.len() > 2 * page as usize, "{} contacts", want.len());
    let contacts = xero.contacts(&tenant, None).await.unwrap();
    let got: Vec<ContactView> = sorted(contacts.iter().map(contact_view).collect());
    assert_eq!(got, want);
    let pages = r.calls("GET /xero-api/api.xro/2.0/Contacts").await;
    assert!(pages >= 3, "{pages} pages");

    // A where filter on contacts.
    let suppliers = xero
        .contacts(&tenant, Some("IsSupplier==true"))
        .await
        .unwrap();
    let got: Vec<ContactView> = sorted(suppliers.iter().map(contact_view).collect());
    let want_sup: Vec<ContactView> = want.iter().filter(|c| c.5 == Some(true)).cloned().collect();
    assert!(!want_sup.is_empty());
    assert_eq!(got, want_sup);

    // Accounts: all of them, a where filter, and the revenue/expense helpers.
    let accounts = xero.accounts(&tenant, None).await.unwrap();
    let view = |a: &Account| {
        (
            a.account_id.clone().unwrap(),
            a.code.clone().unwrap(),
            a.name.clone().unwrap(),
            serde_json::to_value(a.account_type)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string(),
            serde_json::to_value(a.class)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string(),
            serde_json::to_value(a.status)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string(),
            a.tax_type.clone(),
        )
    };
    let got = sorted(accounts.iter().map(view).collect::<Vec<_>>());
    let want_acc = sorted(
        o.accounts
            .iter()
            .map(|a| {
                (
                    a.account_id.clone(),
                    a.code.clone(),
                    a.name.clone(),
                    a.account_type.clone(),
                    a.class.clone(),
                    if a.status.is_empty() {
                        "ACTIVE".to_string()
                    } else {
                        a.status.clone()
                    },
                    a.tax_type.clone(),
                )
            })
            .collect::<Vec<_>>(),
    );
    assert_eq!(got, want_acc);
    let revenue = xero
        .accounts(&tenant, Some("Type==\"REVENUE\" OR Type==\"OTHERINCOME\""))
        .await
        .unwrap();
    let got = sorted(
        revenue
            .iter()
            .map(|a| a.code.clone().unwrap())
            .collect::<Vec<_>>(),
    );
    let want_codes = sorted(
        o.accounts
            .iter()
            .filter(|a| a.account_type == "REVENUE" || a.account_type == "OTHERINCOME")
            .map(|a| a.code.clone())
            .collect::<Vec<_>>(),
    );
    assert!(!want_codes.is_empty());
    assert_eq!(got, want_codes);
    let active =
        |a: &&cspsync::sim::world::XeroAccount| a.status.is_empty() || a.status == "ACTIVE";
    let rev_codes = sorted(
        revenue_accounts(&accounts)
            .iter()
            .map(|a| a.code.clone().unwrap())
            .collect::<Vec<_>>(),
    );
    let want_rev = sorted(
        o.accounts
            .iter()
            .filter(active)
            .filter(|a| matches!(a.account_type.as_str(), "REVENUE" | "SALES" | "OTHERINCOME"))
            .map(|a| a.code.clone())
            .collect::<Vec<_>>(),
    );
    assert!(want_rev.contains(&"200".to_string()));
    assert_eq!(rev_codes, want_rev);
    let exp_codes = sorted(
        expense_accounts(&accounts)
            .iter()
            .map(|a| a.code.clone().unwrap())
            .collect::<Vec<_>>(),
    );
    let want_exp = sorted(
        o.accounts
            .iter()
            .filter(active)
            .filter(|a| {
                matches!(
                    a.account_type.as_str(),
                    "EXPENSE" | "DIRECTCOSTS" | "OVERHEADS"
                )
            })
            .map(|a| a.code.clone())
            .collect::<Vec<_>>(),
    );
    assert!(want_exp.contains(&"310".to_string()));
    assert_eq!(exp_codes, want_exp);

    // Invoices: every invoice this app created, over pages.
    let all = xero
        .invoices(
            &tenant,
            &InvoiceQuery {
                created_by_my_app: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let want_all = sorted(
        o.invoices
            .iter()
            .filter(|i| i.created_by_app)
            .map(world_invoice_view)
            .collect::<Vec<_>>(),
    );
    assert!(want_all.len() > 2 * page as usize);
    assert_eq!(
        sorted(all.iter().map(client_invoice_view).collect::<Vec<_>>()),
        want_all
    );

    // Statuses and contact ids (more than one call's worth of ids: the client splits them).
    let customers: Vec<String> = o
        .contacts
        .iter()
        .filter(|c| c.is_customer)
        .map(|c| c.contact_id.clone())
        .collect();
    let chosen: Vec<String> = customers.iter().step_by(1).take(45).cloned().collect();
    assert!(chosen.len() > 40);
    let q = InvoiceQuery {
        created_by_my_app: true,
        statuses: vec![InvoiceStatus::Draft, InvoiceStatus::Authorised],
        contact_ids: chosen.clone(),
        ..Default::default()
    };
    let got = xero.invoices(&tenant, &q).await.unwrap();
    let want_q = sorted(
        o.invoices
            .iter()
            .filter(|i| i.created_by_app)
            .filter(|i| matches!(i.status.as_str(), "DRAFT" | "AUTHORISED"))
            .filter(|i| chosen.contains(&i.contact_id))
            .map(world_invoice_view)
            .collect::<Vec<_>>(),
    );
    assert!(!want_q.is_empty());
    assert_eq!(
        sorted(got.iter().map(client_invoice_view).collect::<Vec<_>>()),
        want_q
    );

    // If-Modified-Since: only invoices changed after the given time.
    let mut times: Vec<_> = o.invoices.iter().filter_map(|i| i.updated).collect();
    times.sort();
    let since = times[times.len() / 2];
    let since_whole =
        since - chrono::Duration::nanoseconds(i64::from(since.timestamp_subsec_nanos()));
    let got = xero
        .invoices(
            &tenant,
            &InvoiceQuery {
                modified_since: Some(since_whole),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let want_since = sorted(
        o.invoices
            .iter()
            .filter(|i| i.updated.is_some_and(|u| u > since_whole))
            .map(world_invoice_view)
            .collect::<Vec<_>>(),
    );
    assert!(!want_since.is_empty() && want_since.len() < o.invoices.len());
    assert_eq!(
        sorted(got.iter().map(client_invoice_view).collect::<Vec<_>>()),
        want_since
    );
}

fn bill(o: &XeroOrg, number: &str, account: &str) -> NewInvoice {
    let supplier = o
        .contacts
        .iter()
        .find(|c| c.is_supplier && c.name.contains("Dicker"))
        .unwrap();
    NewInvoice {
        invoice_id: None,
        invoice_type: InvoiceType::AccPay,
        contact: ContactRef::id(supplier.contact_id.clone()),
        date: Some(today()),
        due_date: today().checked_add_days(chrono::Days::new(30)),
        line_amount_types: Some(LineAmountTypes::Exclusive),
        invoice_number: Some(number.into()),
        reference: None,
        currency_code: None,
        status: Some(InvoiceStatus::Draft),
        line_items: vec![NewLineItem {
            description: "MS NCE M365 Business Premium 1yr commit x25".into(),
            quantity: Decimal::from(25),
            unit_amount: Decimal::new(2819, 2),
            account_code: Some(account.into()),
            tax_type: Some("INPUT".into()),
            ..Default::default()
        }],
    }
}

fn org_invoices(state: &Value) -> Vec<Value> {
    state["world"]["xero"]["organisations"][0]["invoices"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn xero_create_invoices_is_idempotent_and_validation_errors_are_typed() {
    let w = world(10, 24);
    let r = start(w.clone(), FaultSpec::default()).await;
    let session = sign_in(&r, &w).await;
    let o = org(&w);
    let tenant = o.tenant_id.clone();
    let xero = xero_client(&r, &session);
    let before = org_invoices(&r.state().await).len();
    assert_eq!(before, o.invoices.len());

    let new = bill(o, "DD-INV-E2E-1", "310");
    let first = xero
        .create_invoices(&tenant, std::slice::from_ref(&new), "e2e-bill-1")
        .await
        .unwrap();
    let second = xero
        .create_invoices(&tenant, std::slice::from_ref(&new), "e2e-bill-1")
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].invoice_id, second[0].invoice_id);
    assert_eq!(first[0].total, Some(Decimal::new(77523, 2)));
    assert_eq!(first[0].sub_total, Some(Decimal::new(70475, 2)));
    assert_eq!(first[0].total_tax, Some(Decimal::new(7048, 2)));
    let s = r.state().await;
    let invoices = org_invoices(&s);
    assert_eq!(
        invoices.len(),
        before + 1,
        "exactly one invoice was created"
    );
    let made: Vec<&Value> = invoices
        .iter()
        .filter(|i| i["invoice_number"] == "DD-INV-E2E-1")
        .collect();
    assert_eq!(made.len(), 1);
    assert_eq!(
        made[0]["invoice_id"].as_str(),
        first[0].invoice_id.as_deref()
    );
    assert_eq!(made[0]["invoice_type"], "ACCPAY");
    assert_eq!(made[0]["status"], "DRAFT");
    assert_eq!(made[0]["created_by_app"], true);
    assert_eq!(s["xero"]["invoices_created"], 1);
    assert_eq!(s["xero"]["idempotent_replays"], 1);

    // The same key with a different request is refused (§7.3), and creates nothing.
    let e = xero
        .create_invoices(&tenant, &[bill(o, "DD-INV-E2E-OTHER", "310")], "e2e-bill-1")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected, "{e}");
    assert!(e.to_string().contains("Idempotency-Key"), "{e}");
    assert_eq!(org_invoices(&r.state().await).len(), before + 1);

    // It reads back through the invoices query.
    let got = xero
        .invoices(
            &tenant,
            &InvoiceQuery {
                invoice_numbers: vec!["DD-INV-E2E-1".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].invoice_id, first[0].invoice_id);
    assert_eq!(got[0].line_items[0].quantity, Some(Decimal::from(25)));

    // Update the draft with POST (§7.6): same invoice, new quantity; no second invoice.
    let mut changed = new.clone();
    changed.invoice_id = first[0].invoice_id.clone();
    changed.line_items[0].quantity = Decimal::from(30);
    changed.line_items[0].line_item_id = first[0].line_items[0].line_item_id.clone();
    let updated = xero
        .upsert_invoices(&tenant, std::slice::from_ref(&changed), None)
        .await
        .unwrap();
    assert_eq!(updated[0].invoice_id, first[0].invoice_id);
    assert_eq!(updated[0].sub_total, Some(Decimal::new(84570, 2)));
    let s = r.state().await;
    assert_eq!(org_invoices(&s).len(), before + 1);
    assert_eq!(s["xero"]["invoices_updated"], 1);
    let stored = org_invoices(&s)
        .into_iter()
        .find(|i| i["invoice_number"] == "DD-INV-E2E-1")
        .unwrap();
    assert_eq!(stored["line_items"].as_array().unwrap().len(), 1);
    assert_eq!(dec(&stored["line_items"][0]["quantity"]), Decimal::from(30));

    // A bad AccountCode: a typed refusal listing Xero's message; nothing created.
    let e: ApiError = xero
        .create_invoices(&tenant, &[bill(o, "DD-INV-E2E-2", "999")], "e2e-bill-2")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Rejected, "{e}");
    assert_eq!(e.status, Some(400));
    assert_eq!(e.code.as_deref(), Some("ValidationException"));
    assert!(
        e.details
            .iter()
            .any(|d| d == "Account code '999' is not a valid code for this document."),
        "{:?}",
        e.details
    );
    assert!(e.to_string().contains("Account code '999'"), "{e}");
    let s = r.state().await;
    assert_eq!(org_invoices(&s).len(), before + 1);
    assert_eq!(s["xero"]["invoices_created"], 1);
}

// =============================================================================================
// Faults and limits
// =============================================================================================

/// Everything a reconciliation reads from Autotask and Xero.
#[derive(Debug, PartialEq)]
struct Snapshot {
    companies: Vec<Company>,
    contracts: Vec<Contract>,
    services: Vec<Service>,
    contract_services: Vec<ContractService>,
    units: Vec<ContractServiceUnit>,
    current_units: BTreeMap<i64, i64>,
    tenants: Vec<String>,
    contacts: Vec<Contact>,
    accounts: Vec<Account>,
    invoices: Vec<Invoice>,
}

async fn snapshot(r: &Running, w: &World) -> (Snapshot, u64, u64) {
    let at = autotask(r, w, 25).await;
    let session = sign_in(r, w).await;
    let xero = xero_client(r, &session).with_page_size(25);
    let tenant = org(w).tenant_id.clone();
    let companies = sorted_by_id(at.companies(vec![]).await.unwrap(), |c| c.id);
    let contracts = sorted_by_id(at.contracts(vec![]).await.unwrap(), |c| c.id);
    let services = sorted_by_id(at.services(vec![]).await.unwrap(), |s| s.id);
    let contract_services = sorted_by_id(
        at.contract_services(&ids(&contracts, |c| c.id))
            .await
            .unwrap(),
        |c| c.id,
    );
    let cs_ids = ids(&contract_services, |c| c.id);
    let units = sorted_by_id(at.contract_service_units(&cs_ids).await.unwrap(), |u| u.id);
    let current_units = at
        .current_units(&cs_ids, today())
        .await
        .unwrap()
        .into_iter()
        .collect();
    let tenants = xero
        .connections()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.tenant_id)
        .collect();
    let mut contacts = xero.contacts(&tenant, None).await.unwrap();
    contacts.sort_by(|a, b| a.contact_id.cmp(&b.contact_id));
    let accounts = xero.accounts(&tenant, None).await.unwrap();
    let mut invoices = xero
        .invoices(
            &tenant,
            &InvoiceQuery {
                created_by_my_app: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    invoices.sort_by(|a, b| a.invoice_id.cmp(&b.invoice_id));
    let snap = Snapshot {
        companies,
        contracts,
        services,
        contract_services,
        units,
        current_units,
        tenants,
        contacts,
        accounts,
        invoices,
    };
    (snap, at.stats().retries, xero.stats().retries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_injected_429s_returns_exactly_the_data_of_a_clean_run() {
    let w = world(40, 31);
    let clean = start(w.clone(), FaultSpec::default()).await;
    let faulty = start(
        w.clone(),
        FaultSpec::parse("autotask.429=0.3,xero-api.429=0.2,retry-after=0,seed=11").unwrap(),
    )
    .await;
    let (a, clean_at_retries, clean_xero_retries) = snapshot(&clean, &w).await;
    let (b, at_retries, xero_retries) = snapshot(&faulty, &w).await;
    assert_eq!((clean_at_retries, clean_xero_retries), (0, 0));
    assert_eq!(a, b);
    // The faults really happened, and were absorbed by retries.
    assert!(faulty.throttled("/autotask/").await > 0);
    assert!(faulty.throttled("/xero-api/").await > 0);
    assert!(
        at_retries > 0 && xero_retries > 0,
        "{at_retries} {xero_retries}"
    );
    assert_eq!(clean.throttled("/").await, 0);

    // Writes under faults land exactly once.
    let at = autotask(&faulty, &w, 25).await;
    let cs = &b.contract_services[0];
    at.create_adjustment(&NewAdjustment {
        contract_id: cs.contract_id.unwrap(),
        service_id: cs.service_id.unwrap(),
        contract_service_id: Some(cs.id),
        unit_change: 2,
        adjusted_unit_price: None,
        adjusted_unit_cost: None,
        effective_date: today(),
    })
    .await
    .unwrap();
    let session = sign_in(&faulty, &w).await;
    let xero = xero_client(&faulty, &session);
    let o = org(&w);
    for _ in 0..3 {
        xero.create_invoices(
            &o.tenant_id,
            &[bill(o, "DD-INV-FAULT", "310")],
            "fault-key-1",
        )
        .await
        .unwrap();
    }
    let s = faulty.state().await;
    assert_eq!(
        s["world"]["autotask"]["contract_service_adjustments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        org_invoices(&s)
            .iter()
            .filter(|i| i["invoice_number"] == "DD-INV-FAULT")
            .count(),
        1
    );
    let cur = at.current_units(&[cs.id], today()).await.unwrap();
    assert_eq!(
        cur.get(&cs.id).copied(),
        b.current_units.get(&cs.id).map(|n| n + 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_limits_are_never_hit_by_concurrent_calls() {
    // A large world makes the sim's handlers slow enough (they take one lock in turn) that
    // concurrent requests really overlap at the sim, which runs on many threads.
    let w = world(150, 41);
    let (r, rt) = start_threaded(w.clone(), FaultSpec::default()).await;
    assert!(FaultSpec::default().vendor_limits);

    // Xero: 12 calls at once for one organisation (the limit is 5 concurrent, §7.8).
    let session = sign_in(&r, &w).await;
    let xero = xero_client(&r, &session);
    let tenant = org(&w).tenant_id.clone();
    let q = InvoiceQuery {
        created_by_my_app: true,
        ..Default::default()
    };
    let results = join_all((0..12).map(|i| {
        let xero = xero.clone();
        let tenant = tenant.clone();
        let q = q.clone();
        async move {
            match i % 3 {
                0 | 1 => xero.invoices(&tenant, &q).await.map(|v| v.len()),
                _ => xero.contacts(&tenant, None).await.map(|v| v.len()),
            }
        }
    }))
    .await;
    for (i, res) in results.iter().enumerate() {
        let n = res.as_ref().unwrap();
        let want = match i % 3 {
            0 | 1 => org(&w).invoices.iter().filter(|i| i.created_by_app).count(),
            _ => world_contacts(org(&w)).len(),
        };
        assert_eq!(*n, want);
    }
    assert_eq!(
        r.throttled("/xero-api/").await,
        0,
        "the client went past Xero's limits"
    );
    assert_eq!(xero.stats().throttled, 0);

    // Autotask: heavy queries of one entity, queries of another, and writes, all at once
    // (the limit is 3 threads per object endpoint, §6.5).
    let at = autotask(&r, &w, 500).await;
    let cs = at
        .contract_services(&ids(&w.autotask.contracts, |c| c.id as i64))
        .await
        .unwrap();
    let heavy = join_all((0..6).map(|_| {
        let at = at.clone();
        async move {
            at.query::<ContractServiceUnit>("ContractServiceUnits", &Query::new(vec![]))
                .await
                .map(|v| {
                    assert_each_once(&ids(&v, |u| u.id), "units");
                    v.len()
                })
        }
    }));
    let reads = join_all((0..4).map(|_| {
        let at = at.clone();
        async move { at.contracts(vec![]).await.map(|v| v.len()) }
    }));
    let writes = join_all(cs.iter().take(6).map(|c| {
        let at = at.clone();
        let adj = NewAdjustment {
            contract_id: c.contract_id.unwrap(),
            service_id: c.service_id.unwrap(),
            contract_service_id: Some(c.id),
            unit_change: 1,
            adjusted_unit_price: None,
            adjusted_unit_cost: None,
            effective_date: today(),
        };
        async move { at.create_adjustment(&adj).await }
    }));
    let (heavy, reads, writes) = tokio::join!(heavy, reads, writes);
    // Each adjustment effective today splits the period record it falls in (§6.3), so a
    // read running alongside the writes sees between 0 and 6 more records.
    let n = w.autotask.contract_service_units.len();
    for res in &heavy {
        let got = *res.as_ref().unwrap();
        assert!(
            (n..=n + 6).contains(&got),
            "{got} unit records, {n} in the world"
        );
    }
    for res in &reads {
        assert_eq!(*res.as_ref().unwrap(), w.autotask.contracts.len());
    }
    for res in &writes {
        res.as_ref().unwrap();
    }
    assert_eq!(
        r.throttled("/autotask/").await,
        0,
        "the client went past Autotask's thread limit: {:#?}",
        r.stats().await
    );
    assert_eq!(at.stats().throttled, 0);
    let s = r.state().await;
    assert_eq!(
        s["world"]["autotask"]["contract_service_adjustments"]
            .as_array()
            .unwrap()
            .len(),
        6
    );

    // Without a client limiter the same kind of burst is refused: the limits were real.
    let raw = reqwest::Client::new();
    let url = at.base().join("ContractServiceUnits/query").unwrap();
    let burst = join_all((0..12).map(|_| {
        raw.post(url.clone())
            .header("ApiIntegrationCode", &w.autotask.integration_codes[0])
            .header("UserName", &w.autotask.username)
            .header("Secret", &w.autotask.secret)
            .json(&serde_json::json!({"filter": [{"op": "gte", "field": "id", "value": 0}]}))
            .send()
    }))
    .await;
    let refused = burst
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == 429)
        .count();
    assert!(refused > 0, "12 Autotask calls at once were all accepted");

    let token = session.access_token(false).await.unwrap();
    let url = format!(
        "{}/api.xro/2.0/Invoices?page=1&pageSize=1000",
        r.endpoints.xero_api.as_str().trim_end_matches('/')
    );
    let burst = join_all((0..12).map(|_| {
        raw.get(&url)
            .bearer_auth(token.secret())
            .header("xero-tenant-id", &tenant)
            .send()
    }))
    .await;
    let refused = burst
        .iter()
        .filter(|r| r.as_ref().unwrap().status() == 429)
        .count();
    assert!(refused > 0, "12 Xero calls at once were all accepted");
    drop(r);
    rt.shutdown_background();
}
