//! The simulated Autotask and Xero, driven over loopback with raw HTTP (no client from
//! src/api): what a client written from reference/external-apis.md §6 and §7 would see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Datelike, Months, NaiveDate, Utc};
use cspsync::sim::world::{
    AtCompany, AtContract, AtService, Autotask, Xero, XeroAccount, XeroContact, XeroOrg,
};
use cspsync::sim::{self, FaultSpec, SimHandle, World};
use reqwest::{Client, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const AT_USER: &str = "api-user@msp.example.com.au";
const AT_SECRET: &str = "At-S3cret-Value!";
const AT_CODE: &str = "TRACKINGCODE0001";
const TENANT: &str = "fe79f7dd-b6d4-4a92-ba7b-538af6289c58";
const SUPPLIER_ID: &str = "430fa14a-f945-44d3-9f97-5df5e28441b8";
const REDIRECT: &str = "http://127.0.0.1:53682/callback";

fn contract_start() -> NaiveDate {
    let today = Utc::now().date_naive();
    let first = today.with_day(1).unwrap();
    first.checked_sub_months(Months::new(2)).unwrap()
}

fn contract_end() -> NaiveDate {
    contract_start()
        .checked_add_months(Months::new(12))
        .unwrap()
        .pred_opt()
        .unwrap()
}

fn world() -> World {
    let mut w = World::default();
    let companies = (1..=25)
        .map(|i| AtCompany {
            id: i,
            company_name: if i % 5 == 0 {
                format!("Contoso {i:02} Pty Ltd")
            } else {
                format!("Fabrikam {i:02}")
            },
            company_number: Some(format!("C-{i:04}")),
            company_type: 1,
            is_active: i % 2 == 1,
            ..Default::default()
        })
        .collect();
    w.autotask = Autotask {
        username: AT_USER.into(),
        secret: AT_SECRET.into(),
        integration_codes: vec![AT_CODE.into()],
        zone_name: "Australia / New Zealand".into(),
        zone_number: 6,
        ci: 4321,
        companies,
        contracts: vec![AtContract {
            id: 7001,
            company_id: 5,
            contract_name: "CSP - Microsoft 365 Business Premium".into(),
            contract_type: 7,
            status: 1,
            start_date: Some(contract_start()),
            end_date: Some(contract_end()),
            contract_period_type: Some(2),
            ..Default::default()
        }],
        services: vec![AtService {
            id: 9001,
            name: "Microsoft 365 Business Premium".into(),
            sku: Some("P1Y:CFQ7TTC0LCHC:0002".into()),
            unit_price: Decimal::new(3455, 2),
            unit_cost: Decimal::new(2819, 2),
            period_type: Some(2),
            is_active: true,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut contacts: Vec<XeroContact> = (1..=250)
        .map(|i| XeroContact {
            contact_id: uuid::Uuid::new_v4().to_string(),
            name: format!("Customer {i:03}"),
            contact_status: "ACTIVE".into(),
            is_customer: true,
            ..Default::default()
        })
        .collect();
    contacts.push(XeroContact {
        contact_id: SUPPLIER_ID.into(),
        name: "Dicker Data Limited".into(),
        contact_status: "ACTIVE".into(),
        is_supplier: true,
        ..Default::default()
    });
    contacts.push(XeroContact {
        contact_id: uuid::Uuid::new_v4().to_string(),
        name: "Archived Customer".into(),
        contact_status: "ARCHIVED".into(),
        is_customer: true,
        ..Default::default()
    });
    let account =
        |code: &str, name: &str, ty: &str, class: &str, status: &str, tax: &str| XeroAccount {
            account_id: uuid::Uuid::new_v4().to_string(),
            code: code.into(),
            name: name.into(),
            account_type: ty.into(),
            class: class.into(),
            status: status.into(),
            tax_type: Some(tax.into()),
        };
    w.xero = Xero {
        organisations: vec![XeroOrg {
            tenant_id: TENANT.into(),
            name: "MSP Demo Pty Ltd".into(),
            contacts,
            accounts: vec![
                account("200", "Sales", "REVENUE", "REVENUE", "ACTIVE", "OUTPUT"),
                account(
                    "310",
                    "Cost of Goods Sold",
                    "DIRECTCOSTS",
                    "EXPENSE",
                    "ACTIVE",
                    "INPUT",
                ),
                account(
                    "260",
                    "Other Revenue",
                    "REVENUE",
                    "REVENUE",
                    "ARCHIVED",
                    "OUTPUT",
                ),
                account(
                    "400",
                    "Advertising",
                    "OVERHEADS",
                    "EXPENSE",
                    "ACTIVE",
                    "INPUT",
                ),
            ],
            invoices: Vec::new(),
        }],
    };
    w
}

async fn start() -> SimHandle {
    sim::start(
        world(),
        FaultSpec::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn body(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn state(h: &SimHandle) -> Value {
    client()
        .get(format!("{}/state", h.urls().control))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Autotask
// ---------------------------------------------------------------------------------------------

fn zone(h: &SimHandle) -> String {
    format!("http://{}/autotask/zone6/atservicesrest/", h.addr)
}

fn at_auth(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    rb.header("ApiIntegrationCode", AT_CODE)
        .header("UserName", AT_USER)
        .header("Secret", AT_SECRET)
}

async fn at_post(h: &SimHandle, path: &str, b: Value) -> (StatusCode, Value) {
    body(
        at_auth(client().post(format!("{}v1.0/{path}", zone(h))))
            .json(&b)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn at_get(url: &str) -> (StatusCode, Value) {
    body(at_auth(client().get(url)).send().await.unwrap()).await
}

fn ids(v: &Value) -> Vec<u64> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn autotask_zone_discovery_with_and_without_auth_headers() {
    let h = start().await;
    let base = h.urls().autotask;
    for path in ["v1.0/zoneInformation", "V1.0/ZoneInformation"] {
        let (s, v) = body(
            client()
                .get(format!("{base}/{path}"))
                .query(&[("user", AT_USER)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["url"], zone(&h));
        assert_eq!(v["zoneName"], "Australia / New Zealand");
        assert_eq!(v["ci"], 4321);
        assert!(v["webUrl"].is_string());
    }
    let (s, _) = body(
        at_auth(client().get(format!("{base}/v1.0/zoneInformation")))
            .query(&[("user", AT_USER.to_uppercase())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = body(
        client()
            .get(format!(
                "{base}/v1.0/zoneInformation?user=nobody@example.com"
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("nobody@example.com")
    );
}

#[tokio::test]
async fn autotask_refuses_missing_or_wrong_credentials() {
    let h = start().await;
    let url = format!("{}v1.0/Companies/1", zone(&h));
    let (s, v) = body(client().get(&url).send().await.unwrap()).await;
    assert_eq!(s, 401);
    let msg = v["errors"][0].as_str().unwrap();
    assert!(
        msg.contains("ApiIntegrationCode") && msg.contains("Secret"),
        "{msg}"
    );

    let wrong_secret = client()
        .get(&url)
        .header("ApiIntegrationCode", AT_CODE)
        .header("UserName", AT_USER)
        .header("Secret", "guess")
        .send()
        .await
        .unwrap();
    let (s, v) = body(wrong_secret).await;
    assert_eq!(s, 401);
    assert!(!v.to_string().contains("guess") && !v.to_string().contains(AT_SECRET));

    let wrong_code = client()
        .get(&url)
        .header("ApiIntegrationCode", "OTHER")
        .header("UserName", AT_USER)
        .header("Secret", AT_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_code.status(), 401);

    // Case-insensitive header names and paths once authenticated.
    let ok = client()
        .get(format!("{}V1.0/companies/1", zone(&h)))
        .header("apiintegrationcode", AT_CODE)
        .header("USERNAME", AT_USER)
        .header("secret", AT_SECRET)
        .send()
        .await
        .unwrap();
    let (s, v) = body(ok).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["item"]["companyName"], "Fabrikam 01");

    // Another zone does not serve this database.
    let (s, _) = at_get(&format!(
        "http://{}/autotask/zone3/atservicesrest/v1.0/Companies/1",
        h.addr
    ))
    .await;
    assert_eq!(s, 404);
    assert_eq!(state(&h).await["autotask"]["auth_failures"], 3);
    let (s, v) = at_get(&format!("{}v1.0/ThresholdInformation", zone(&h))).await;
    assert_eq!(s, 200);
    assert_eq!(v["externalRequestThreshold"], 10_000);
    assert_eq!(
        v["currentTimeframeRequestCount"], 2,
        "refused calls are not counted"
    );
}

#[tokio::test]
async fn autotask_query_filters_pages_and_counts() {
    let h = start().await;
    // Nested groups, case-insensitive keys, operators and field names.
    let q = json!({"MaxRecords": 500, "Filter": [{"op": "or", "items": [
        {"op": "and", "items": [
            {"op": "eq", "field": "IsActive", "value": true},
            {"op": "beginsWith", "field": "companyname", "value": "con"}]},
        {"op": "in", "field": "id", "value": [2, 4]}]}]});
    let (s, v) = at_post(&h, "Companies/query", q.clone()).await;
    assert_eq!(s, 200, "{v}");
    // Active (odd) Contoso companies are 5, 15, 25; plus ids 2 and 4.
    assert_eq!(ids(&v), vec![2, 4, 5, 15, 25]);
    assert_eq!(v["pageDetails"]["count"], 5);
    assert_eq!(v["pageDetails"]["nextPageUrl"], Value::Null);

    // The same query through GET ?search=.
    let (s, v2) = body(
        at_auth(client().get(format!("{}v1.0/Companies/query", zone(&h))))
            .query(&[("search", q.to_string())])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(ids(&v2), vec![2, 4, 5, 15, 25]);

    // Paging: 25 companies, 10 per page → 3 pages through nextPageUrl.
    let (s, mut page) = at_post(
        &h,
        "Companies/query",
        json!({"maxRecords": 10, "includeFields": ["id", "companyName"],
            "filter": [{"op": "exist", "field": "id"}]}),
    )
    .await;
    assert_eq!(s, 200, "{page}");
    let mut seen = Vec::new();
    let mut pages = 1;
    loop {
        assert_eq!(page["pageDetails"]["requestCount"], 10);
        let item = &page["items"][0];
        assert!(
            item.get("companyNumber").is_none(),
            "IncludeFields limits fields"
        );
        seen.extend(ids(&page));
        match page["pageDetails"]["nextPageUrl"].as_str() {
            None => break,
            Some(next) => {
                assert!(
                    next.starts_with(&format!("{}v1.0/Companies/query/next?paging=", zone(&h)))
                );
                let (s, p) = at_get(next).await;
                assert_eq!(s, 200, "{p}");
                assert!(p["pageDetails"]["prevPageUrl"].is_string());
                page = p;
                pages += 1;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=25).collect::<Vec<u64>>());

    // Following a next link without credentials fails.
    let (_, first) = at_post(
        &h,
        "Companies/query",
        json!({"MaxRecords": 10, "filter": []}),
    )
    .await;
    let next = first["pageDetails"]["nextPageUrl"].as_str().unwrap();
    assert_eq!(client().get(next).send().await.unwrap().status(), 401);

    let (s, v) = at_post(
        &h,
        "Companies/query/count",
        json!({"filter": [{"op": "noteq", "field": "isActive", "value": true}]}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["queryCount"], 12);

    // Errors the spec names.
    let (s, v) = at_post(
        &h,
        "Companies/query",
        json!({"MaxRecords": 501, "filter": []}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["errors"][0].as_str().unwrap().contains("MaxRecords"));
    let many: Vec<Value> = (0..501)
        .map(|i| json!({"op": "eq", "field": "id", "value": i}))
        .collect();
    let (s, v) = at_post(
        &h,
        "Companies/query",
        json!({"filter": [{"op": "or", "items": many}]}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        v["errors"][0],
        "Invalid query syntax. Queries are limited to 500 or fewer 'OR' conditions."
    );
    let (s, v) = at_post(
        &h,
        "Companies/query",
        json!({"MaxRecords": 10, "IncludeFields": ["companyName"], "filter": []}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["errors"][0].as_str().unwrap().contains("include id"));
    let (s, v) = at_post(
        &h,
        "Companies/query",
        json!({"filter": [{"op": "eq", "field": "colour", "value": "red"}]}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["errors"][0].as_str().unwrap().contains("colour"));
}

#[tokio::test]
async fn autotask_adjustments_change_the_current_units() {
    let h = start().await;
    let today = Utc::now().date_naive();
    // First adjustment on the contract's start creates the ContractService (§6.3).
    let (s, v) = at_post(
        &h,
        "Contracts/7001/ServiceAdjustments",
        json!({"serviceID": 9001, "unitChange": 5, "adjustedUnitPrice": 34.55,
            "effectiveDate": format!("{}T00:00:00.00", contract_start())}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["itemId"].as_u64().is_some());
    let (_, cs) = at_post(
        &h,
        "ContractServices/query",
        json!({"filter": [{"op": "eq", "field": "contractID", "value": 7001}]}),
    )
    .await;
    assert_eq!(cs["items"].as_array().unwrap().len(), 1);
    let cs_id = cs["items"][0]["id"].as_u64().unwrap();
    assert_eq!(cs["items"][0]["serviceID"], 9001);

    // Three more seats from today (date-only, at the root entity path).
    let (s, v) = at_post(
        &h,
        "ContractServiceAdjustments",
        json!({"contractID": 7001, "serviceID": 9001, "contractServiceID": cs_id,
            "unitChange": 3, "adjustedUnitPrice": 30.0, "effectiveDate": today.to_string()}),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let covering = |date: NaiveDate| {
        json!({"filter": [
            {"op": "eq", "field": "contractServiceID", "value": cs_id},
            {"op": "lte", "field": "startDate", "value": date.to_string()},
            {"op": "gte", "field": "endDate", "value": format!("{date}T00:00:00")}]})
    };
    let (s, now) = at_post(&h, "ContractServiceUnits/query", covering(today)).await;
    assert_eq!(s, 200, "{now}");
    let items = now["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{now}");
    assert_eq!(items[0]["units"], 8);
    assert_eq!(items[0]["price"], 30.0);
    assert_eq!(
        items[0]["startDate"],
        format!("{today}T00:00:00Z"),
        "the period is split at the effective date"
    );
    let (_, before) = at_post(&h, "ContractServiceUnits/query", covering(contract_start())).await;
    assert_eq!(before["items"][0]["units"], 5);
    assert_eq!(before["items"][0]["price"], 34.55);
    let (_, last) = at_post(&h, "ContractServiceUnits/query", covering(contract_end())).await;
    assert_eq!(last["items"][0]["units"], 8, "later periods change too");

    // Outside the contract: the exact error, and nothing recorded.
    let (s, v) = at_post(
        &h,
        "Contracts/7001/ServiceAdjustments",
        json!({"serviceID": 9001, "unitChange": 1,
            "effectiveDate": contract_end().succ_opt().unwrap().to_string()}),
    )
    .await;
    assert!(s.is_client_error() || s.is_server_error());
    assert_eq!(
        v["errors"][0],
        "effectiveDate must be between the start date and end date of the Contract"
    );

    // Adjustments are create-only.
    let (s, v) = at_post(
        &h,
        "ContractServiceAdjustments/query",
        json!({"filter": []}),
    )
    .await;
    assert_eq!(s, 405);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("does not support query")
    );
    let (s, _) = at_get(&format!("{}v1.0/ContractServiceAdjustments/1", zone(&h))).await;
    assert_eq!(s, 405);

    // Only adjustedPrice and invoiceDescription are writable on a ContractService.
    let patch = |b: Value| {
        at_auth(client().patch(format!("{}v1.0/Contracts/7001/Services", zone(&h))))
            .json(&b)
            .send()
    };
    let (s, v) = body(
        patch(json!({"id": cs_id, "adjustedPrice": 31.5, "invoiceDescription": "M365 BP", "contractID": 7001}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = body(patch(json!({"id": cs_id, "unitPrice": 1})).await.unwrap()).await;
    assert!(!s.is_success());
    assert!(v["errors"][0].as_str().unwrap().contains("read-only"));
    let (_, cs) = at_get(&format!("{}v1.0/ContractServices/{cs_id}", zone(&h))).await;
    assert_eq!(cs["item"]["adjustedPrice"], 31.5);
    assert_eq!(cs["item"]["invoiceDescription"], "M365 BP");

    let st = state(&h).await;
    assert_eq!(
        st["world"]["autotask"]["contract_service_adjustments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Xero
// ---------------------------------------------------------------------------------------------

const SCOPES: &str = "openid profile email offline_access accounting.transactions accounting.contacts accounting.settings";

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

fn world_client_id() -> String {
    World::default().app.xero_client_id
}

/// `/authorize` → the Location header.
async fn authorize(h: &SimHandle, p: &Pkce, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut q: Vec<(&str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", world_client_id()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", SCOPES.into()),
        ("state", "st-123".into()),
        ("code_challenge", p.challenge.clone()),
        ("code_challenge_method", "S256".into()),
    ];
    for (k, v) in extra {
        q.retain(|(kk, _)| kk != k);
        if !v.is_empty() {
            q.push((k, (*v).to_string()));
        }
    }
    client()
        .get(format!("{}/authorize", h.urls().xero_login))
        .query(&q)
        .send()
        .await
        .unwrap()
}

fn location_params(r: &reqwest::Response) -> Vec<(String, String)> {
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(p: &[(String, String)], k: &str) -> Option<String> {
    p.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone())
}

async fn token(h: &SimHandle, form: &[(&str, &str)]) -> (StatusCode, Value) {
    body(
        client()
            .post(format!("{}/token", h.urls().xero_identity))
            .form(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn login(h: &SimHandle) -> Value {
    let p = pkce();
    let r = authorize(h, &p, &[]).await;
    assert_eq!(r.status(), 302);
    let code = param(&location_params(&r), "code").unwrap();
    let cid = world_client_id();
    let (s, t) = token(
        h,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &p.verifier),
            ("client_id", &cid),
        ],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    t
}

fn jwt_claims(t: &str) -> Value {
    let payload = t.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn xero_get(h: &SimHandle, at: &str, path: &str) -> (StatusCode, Value) {
    body(
        client()
            .get(format!("{}/api.xro/2.0/{path}", h.urls().xero_api))
            .bearer_auth(at)
            .header("xero-tenant-id", TENANT)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn xero_send(
    h: &SimHandle,
    method: reqwest::Method,
    at: &str,
    path: &str,
    b: &Value,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut rb = client()
        .request(method, format!("{}/api.xro/2.0/{path}", h.urls().xero_api))
        .bearer_auth(at)
        .header("xero-tenant-id", TENANT)
        .json(b);
    if let Some(k) = key {
        rb = rb.header("Idempotency-Key", k);
    }
    body(rb.send().await.unwrap()).await
}

#[tokio::test]
async fn xero_pkce_login_connections_and_refresh_rotation() {
    let h = start().await;
    let cid = world_client_id();

    // Authorize errors: a bad redirect URI is a 400 page; others go back to the app.
    let p = pkce();
    let r = authorize(&h, &p, &[("redirect_uri", "myapp://callback")]).await;
    assert_eq!(r.status(), 400);
    let r = authorize(&h, &p, &[("redirect_uri", "http://example.com/cb")]).await;
    assert_eq!(r.status(), 400);
    let r = authorize(&h, &p, &[("code_challenge", "")]).await;
    assert_eq!(r.status(), 302);
    let q = location_params(&r);
    assert_eq!(param(&q, "error").as_deref(), Some("invalid_request"));
    assert_eq!(param(&q, "state").as_deref(), Some("st-123"));
    let r = authorize(&h, &p, &[("scope", "offline_access nonsense")]).await;
    assert_eq!(
        param(&location_params(&r), "error").as_deref(),
        Some("invalid_scope")
    );
    let r = authorize(
        &h,
        &p,
        &[(
            "scope",
            "offline_access accounting.invoices accounting.contacts.read",
        )],
    )
    .await;
    assert!(
        param(&location_params(&r), "code").is_some(),
        "granular scopes are accepted"
    );

    // A wrong verifier burns the code.
    let r = authorize(&h, &p, &[]).await;
    let q = location_params(&r);
    assert_eq!(param(&q, "state").as_deref(), Some("st-123"));
    let code = param(&q, "code").unwrap();
    let wrong = pkce();
    let form = |code: &str, verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", REDIRECT.to_string()),
            ("code_verifier", verifier.to_string()),
            ("client_id", cid.clone()),
        ]
    };
    let f = form(&code, &wrong.verifier);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        token(&h, &f).await,
        (StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}))
    );
    let f = form(&code, &p.verifier);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(token(&h, &f).await.1["error"], "invalid_grant");

    // A good exchange, once.
    let r = authorize(&h, &p, &[]).await;
    let code = param(&location_params(&r), "code").unwrap();
    let f = form(&code, &p.verifier);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, t) = token(&h, &f).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["expires_in"], 1800);
    assert_eq!(t["token_type"], "Bearer");
    assert!(t["id_token"].is_string());
    assert_eq!(t["scope"], SCOPES);
    let at1 = t["access_token"].as_str().unwrap().to_string();
    let rt1 = t["refresh_token"].as_str().unwrap().to_string();
    let claims = jwt_claims(&at1);
    assert!(claims["xero_userid"].is_string());
    assert!(claims["exp"].as_i64().unwrap() > Utc::now().timestamp());
    let event = claims["authentication_event_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        token(&h, &f).await.1["error"],
        "invalid_grant",
        "codes are single-use"
    );

    // Connections.
    let conns = |at: String, q: Option<String>| {
        let url = format!("{}/connections", h.urls().xero_api);
        async move {
            let mut rb = client().get(url).bearer_auth(at);
            if let Some(q) = q {
                rb = rb.query(&[("authEventId", q)]);
            }
            body(rb.send().await.unwrap()).await
        }
    };
    let (s, c) = conns(at1.clone(), None).await;
    assert_eq!(s, 200, "{c}");
    let c0 = &c[0];
    assert_eq!(c.as_array().unwrap().len(), 1);
    assert_eq!(c0["tenantId"], TENANT);
    assert_eq!(c0["tenantType"], "ORGANISATION");
    assert_eq!(c0["tenantName"], "MSP Demo Pty Ltd");
    assert_eq!(c0["authEventId"], event.as_str());
    assert!(c0["createdDateUtc"].as_str().unwrap().len() >= 27);
    let (_, c) = conns(at1.clone(), Some(event.clone())).await;
    assert_eq!(c.as_array().unwrap().len(), 1);
    let (_, c) = conns(at1.clone(), Some(uuid::Uuid::new_v4().to_string())).await;
    assert_eq!(c, json!([]));
    let (s, _) = conns("not-a-token".into(), None).await;
    assert_eq!(s, 401);

    // Refresh rotates; a retry of the old token within the grace period gets the same pair.
    let refresh = |rt: String| {
        let cid = cid.clone();
        let h = &h;
        async move {
            token(
                h,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("client_id", &cid),
                ],
            )
            .await
        }
    };
    let (s, t2) = refresh(rt1.clone()).await;
    assert_eq!(s, 200, "{t2}");
    let rt2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt2, rt1);
    assert_ne!(t2["access_token"], at1.as_str());
    let (s, again) = refresh(rt1.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(again, t2, "grace-period retry returns the same new pair");
    let (s, t3) = refresh(rt2.clone()).await;
    assert_eq!(s, 200);
    assert_ne!(t3["refresh_token"], rt2.as_str());
    let (s, t) = refresh("unknown".into()).await;
    assert_eq!(
        (s, t),
        (StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}))
    );
    let (s, c) = conns(t3["access_token"].as_str().unwrap().into(), None).await;
    assert_eq!(s, 200);
    assert_eq!(c[0]["tenantId"], TENANT);

    let st = state(&h).await;
    assert_eq!(st["xero"]["refresh_grace_replays"], 1);
    assert!(
        !st.to_string().contains(&rt2),
        "refresh tokens are not dumped"
    );

    // Disconnecting removes the organisation from the token's reach.
    let at3 = t3["access_token"].as_str().unwrap().to_string();
    let id = c[0]["id"].as_str().unwrap();
    let r = client()
        .delete(format!("{}/connections/{id}", h.urls().xero_api))
        .bearer_auth(&at3)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, v) = xero_get(&h, &at3, "Contacts").await;
    assert_eq!(s, 403, "{v}");
}

#[tokio::test]
async fn xero_contacts_page_and_filter_accounts_filter() {
    let h = start().await;
    let t = login(&h).await;
    let at = t["access_token"].as_str().unwrap();

    // 251 active contacts (the archived one is left out), 100 per page.
    let mut names = Vec::new();
    for page in 1..=3 {
        let (s, v) = xero_get(&h, at, &format!("Contacts?page={page}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["Status"], "OK");
        assert!(v["DateTimeUTC"].as_str().unwrap().starts_with("/Date("));
        assert_eq!(
            v["pagination"],
            json!({"page": page, "pageSize": 100, "pageCount": 3, "itemCount": 251})
        );
        for c in v["Contacts"].as_array().unwrap() {
            names.push(c["Name"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(names.len(), 251);
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 251);
    assert!(!names.contains(&"Archived Customer".to_string()));
    let (_, v) = xero_get(&h, at, "Contacts?page=1&includeArchived=true&pageSize=1000").await;
    assert_eq!(v["pagination"]["itemCount"], 252);

    // The wire uses Xero's \/Date()\/ escaping.
    let raw = client()
        .get(format!("{}/api.xro/2.0/Contacts?page=1", h.urls().xero_api))
        .bearer_auth(at)
        .header("xero-tenant-id", TENANT)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains(r#""DateTimeUTC":"\/Date("#), "{}", &raw[..200]);

    let (s, v) = xero_get(
        &h,
        at,
        r#"Contacts?where=IsCustomer%3D%3Dtrue%20AND%20Name.Contains(%2224%22)&order=Name%20DESC"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let got: Vec<&str> = v["Contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        vec![
            "Customer 249",
            "Customer 248",
            "Customer 247",
            "Customer 246",
            "Customer 245",
            "Customer 244",
            "Customer 243",
            "Customer 242",
            "Customer 241",
            "Customer 240",
            "Customer 224",
            "Customer 124",
            "Customer 024"
        ]
    );
    let (s, v) = xero_get(
        &h,
        at,
        r#"Contacts?where=Name=="Dicker Data Limited" OR ContactStatus=="ARCHIVED""#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Contacts"].as_array().unwrap().len(), 2);
    let (s, v) = xero_get(&h, at, r#"Contacts?where=Colour=="red""#).await;
    assert_eq!(s, 400);
    assert_eq!(v["Type"], "ValidationException");
    assert!(v["Message"].as_str().unwrap().contains("Colour"));
    let (_, v) = xero_get(&h, at, "Contacts?searchTerm=dicker").await;
    assert_eq!(v["Contacts"][0]["ContactID"], SUPPLIER_ID);
    assert!(v.get("pagination").is_none(), "not paged without page");

    let (s, v) = xero_get(&h, at, r#"Accounts?where=Type=="REVENUE""#).await;
    assert_eq!(s, 200, "{v}");
    let codes: Vec<&str> = v["Accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["Code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["200", "260"]);
    let (_, v) = xero_get(
        &h,
        at,
        r#"Accounts?where=Type=="REVENUE" AND Status=="ACTIVE""#,
    )
    .await;
    assert_eq!(v["Accounts"].as_array().unwrap().len(), 1);
    assert_eq!(v["Accounts"][0]["TaxType"], "OUTPUT");

    // The tenant header is required.
    let (s, v) = body(
        client()
            .get(format!("{}/api.xro/2.0/Contacts", h.urls().xero_api))
            .bearer_auth(at)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(v["Status"], 403);
    assert_eq!(v["Detail"], "AuthenticationUnsuccessful");
}

fn bill(number: &str, account: &str) -> Value {
    json!({"Type": "ACCPAY", "Contact": {"ContactID": SUPPLIER_ID},
        "Date": "2026-05-01", "DueDate": "2026-05-31", "InvoiceNumber": number,
        "LineAmountTypes": "Exclusive", "Status": "DRAFT",
        "LineItems": [{"Description": "MS NCE M365 Business Premium 1yr commit x25 (May 2026)",
            "Quantity": 25, "UnitAmount": 28.19, "AccountCode": account, "TaxType": "INPUT"}]})
}

async fn invoice_count(h: &SimHandle) -> usize {
    state(h).await["world"]["xero"]["organisations"][0]["invoices"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn xero_invoices_validate_update_and_replay() {
    let h = start().await;
    let t = login(&h).await;
    let at = t["access_token"].as_str().unwrap();
    use reqwest::Method;

    // summarizeErrors (default true): one bad item fails the whole request, exactly as §7.7.
    let (s, v) = xero_send(
        &h,
        Method::PUT,
        at,
        "Invoices",
        &json!({"Invoices": [bill("DD-1", "310"), bill("DD-2", "999")]}),
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["ErrorNumber"], 10);
    assert_eq!(v["Type"], "ValidationException");
    assert_eq!(v["Message"], "A validation exception occurred");
    assert_eq!(v["Elements"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["Elements"][0]["InvoiceID"],
        "00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(
        v["Elements"][0]["ValidationErrors"][0]["Message"],
        "Account code '999' is not a valid code for this document."
    );
    assert_eq!(invoice_count(&h).await, 0);

    // The §7.6 example bill, with computed totals.
    let (s, v) = xero_send(
        &h,
        Method::PUT,
        at,
        "Invoices?summarizeErrors=true",
        &json!({"Invoices": [bill("DD-INV-889123", "310")]}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let inv = &v["Invoices"][0];
    assert_eq!(inv["InvoiceNumber"], "DD-INV-889123");
    assert_eq!(inv["Status"], "DRAFT");
    assert_eq!(inv["SubTotal"], 704.75);
    assert_eq!(inv["TotalTax"], 70.48);
    assert_eq!(inv["Total"], 775.23);
    assert_eq!(inv["AmountDue"], 775.23);
    assert_eq!(inv["AmountPaid"], 0.0);
    assert_eq!(inv["HasErrors"], false);
    assert_eq!(inv["DateString"], "2026-05-01T00:00:00");
    assert!(inv["Date"].as_str().unwrap().ends_with("+0000)/"));
    let bill_id = inv["InvoiceID"].as_str().unwrap().to_string();

    // summarizeErrors=false: valid items are saved, invalid ones flagged.
    let sale = json!({"Type": "ACCREC", "Contact": {"Name": "customer 007"}, "Date": "2026-05-02",
        "LineItems": [{"Description": "Microsoft 365 Business Premium", "Quantity": 3,
            "UnitAmount": 34.55, "AccountCode": "200"}]});
    let bad_tax = json!({"Type": "ACCREC", "Contact": {"Name": "Customer 008"},
        "LineItems": [{"Description": "x", "Quantity": 1, "UnitAmount": 1, "AccountCode": "200", "TaxType": "GST15"}]});
    let (s, v) = xero_send(
        &h,
        Method::PUT,
        at,
        "Invoices?summarizeErrors=false",
        &json!({"Invoices": [sale, bad_tax]}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Invoices"][0]["HasErrors"], false);
    assert_eq!(v["Invoices"][0]["StatusAttributeString"], "OK");
    assert_eq!(v["Invoices"][0]["InvoiceNumber"], "INV-0001");
    assert_eq!(
        v["Invoices"][0]["LineItems"][0]["TaxType"], "OUTPUT",
        "account default"
    );
    assert_eq!(v["Invoices"][0]["Total"], 114.02);
    assert_eq!(v["Invoices"][1]["HasErrors"], true);
    assert_eq!(v["Invoices"][1]["StatusAttributeString"], "ERROR");
    assert!(
        v["Invoices"][1]["ValidationErrors"][0]["Message"]
            .as_str()
            .unwrap()
            .contains("GST15")
    );
    assert_eq!(invoice_count(&h).await, 2);

    // POST updates a draft by InvoiceID; PUT would not.
    let mut upd = bill("DD-INV-889123", "310");
    upd["InvoiceID"] = json!(bill_id);
    upd["LineItems"][0]["Quantity"] = json!(30);
    let (s, v) = xero_send(
        &h,
        Method::PUT,
        at,
        "Invoices",
        &json!({"Invoices": [upd.clone()]}),
        None,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = xero_send(
        &h,
        Method::POST,
        at,
        "Invoices",
        &json!({"Invoices": [upd]}),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Invoices"][0]["InvoiceID"], bill_id.as_str());
    assert_eq!(v["Invoices"][0]["SubTotal"], 845.7);
    let (s, v) = xero_get(&h, at, &format!("Invoices/{bill_id}")).await;
    assert_eq!(s, 200);
    assert_eq!(v["Invoices"][0]["Total"], 930.27);
    assert_eq!(v["Invoices"][0]["LineItems"][0]["Quantity"], 30.0);
    assert_eq!(invoice_count(&h).await, 2);

    // Once approved, it can no longer be edited.
    let (s, _) = xero_send(
        &h,
        Method::POST,
        at,
        &format!("Invoices/{bill_id}"),
        &json!({"Invoices": [{"Status": "AUTHORISED"}]}),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = xero_send(
        &h,
        Method::POST,
        at,
        "Invoices",
        &json!({"Invoices": [{"InvoiceID": bill_id, "Reference": "changed"}]}),
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        v["Elements"][0]["ValidationErrors"][0]["Message"],
        "Invoice not of valid status for modification"
    );

    // Idempotency-Key: the same request is answered from the cache and creates nothing.
    let b = json!({"Invoices": [bill("DD-INV-900001", "310")]});
    let (s, first) = xero_send(
        &h,
        Method::PUT,
        at,
        "Invoices",
        &b,
        Some("sync-run-42-line-7"),
    )
    .await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(invoice_count(&h).await, 3);
    let (s, second) = xero_send(
        &h,
        Method::PUT,
        at,
        "Invoices",
        &b,
        Some("sync-run-42-line-7"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        second["Invoices"][0]["InvoiceID"],
        first["Invoices"][0]["InvoiceID"]
    );
    let st = state(&h).await;
    assert_eq!(
        st["world"]["xero"]["organisations"][0]["invoices"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(st["xero"]["idempotent_replays"], 1);
    let other = json!({"Invoices": [bill("DD-INV-900002", "310")]});
    let (s, v) = xero_send(
        &h,
        Method::PUT,
        at,
        "Invoices",
        &other,
        Some("sync-run-42-line-7"),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(invoice_count(&h).await, 3);
    let (s, _) = xero_send(
        &h,
        Method::PUT,
        at,
        "Invoices",
        &other,
        Some("k".repeat(129).as_str()),
    )
    .await;
    assert_eq!(s, 400);

    // Listing: paged with line items, filtered.
    let (s, v) = xero_get(
        &h,
        at,
        r#"Invoices?page=1&where=Type=="ACCPAY"&Statuses=DRAFT,AUTHORISED"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Invoices"].as_array().unwrap().len(), 2);
    assert!(v["Invoices"][0]["LineItems"].is_array());
    let (_, v) = xero_get(
        &h,
        at,
        "Invoices?createdByMyApp=true&InvoiceNumbers=INV-0001",
    )
    .await;
    assert_eq!(v["Invoices"].as_array().unwrap().len(), 1);

    // Expired tokens: 401 with the gateway body.
    let r = client()
        .post(format!("{}/tokens/expire", h.urls().control))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = xero_get(&h, at, "Invoices").await;
    assert_eq!(s, 401);
    assert_eq!(v["Title"], "Unauthorized");
    assert_eq!(v["Status"], 401);
    assert!(
        v["Detail"]
            .as_str()
            .unwrap()
            .starts_with("TokenExpired: token expired at ")
    );
}
