//! The Dicker Data and ConnectWise clients over real loopback TCP against small axum servers
//! that serve canned bodies from reference/external-apis.md §4 and §5 (independent of the
//! simulator, which is written separately).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

use cspsync::api::ErrorKind;
use cspsync::api::connectwise::{
    BillCustomer, Conditions, ConnectWiseClient, ConnectWiseCredentials, NewAddition, Op, Reference,
};
use cspsync::api::dickerdata::{DickerDataClient, Secret, SubscriptionType};
use cspsync::api::http::RetryPolicy;

async fn serve(listener: TcpListener, router: Router) {
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
}

async fn bind() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", l.local_addr().unwrap());
    (l, origin)
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

// =============================================================================================
// Dicker Data (§4)
// =============================================================================================

const ACCOUNT: &str = "325026";
const ACCESS_CODE: &str = "237082ED-EB96-4C1B-9D3A-0123456789AB";

#[derive(Default)]
struct Dd {
    /// AccessKey lifetime the server grants.
    lifetime_secs: i64,
    key_requests: AtomicUsize,
    /// Keys answered with HTTP 401.
    revoked: Mutex<HashSet<String>>,
    /// Keys answered with 200 + Status Failed "AccessKey has expired".
    expired_in_body: Mutex<HashSet<String>>,
    /// When set: every subscription call fails in the body with this message.
    fail_with: Mutex<Option<String>>,
    /// Bearer keys seen by the subscription endpoint, in order.
    seen: Mutex<Vec<String>>,
    transaction_ids: Mutex<Vec<String>>,
    bodies: Mutex<Vec<Value>>,
}

type DdState = Arc<Dd>;

async fn dd_access_key(State(s): State<DdState>, Json(body): Json<Value>) -> Json<Value> {
    // §4.2 request body: TransactionID (a GUID), AccessToken, AccountCode.
    assert!(
        uuid::Uuid::parse_str(body["TransactionID"].as_str().unwrap()).is_ok(),
        "{body}"
    );
    if body["AccessToken"] != ACCESS_CODE || body["AccountCode"] != ACCOUNT {
        return Json(json!({"Status":"Failed","Message":"Invalid credentials"}));
    }
    let n = s.key_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let expires = (Utc::now() + chrono::Duration::seconds(s.lifetime_secs))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    Json(
        json!({"AccessKey": format!("key-{n}"), "ExpireDateTime": expires, "Status": "GRANTED", "Message": null}),
    )
}

fn bearer(h: &HeaderMap) -> String {
    header(h, "authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
        .unwrap_or_default()
}

const SUBSCRIPTIONS: &str = r#"{"Out":[{"AccountCode":"325026","TenantId":"b44bb1fb-c595-45b0-9e09-d657365580bf","SubscriptionReference":"2F295B21",
  "CompanyName":"ATLAS OUTSOURCING PTY LTD","TenantDescription":"atlasoutsourcing.onmicrosoft.com",
  "StockCode":"P1Y:CFQ7TTC0LCHC:0002:1:","ParentSubscriptionId":null,"SubscriptionId":"83ef9d05-4169-4ef9-9657-0e86b1eab1de",
  "Status":"ACTIVE","BillingFrequency":"Monthly","LastBillingDate":"2026-04-01T00:00:00","NextBillingDate":"2026-05-01T00:00:00",
  "ConfirmedQuantity":25,"Serials":null,"ExpiryDate":"2026-08-30T00:00:00",
  "StockDescription":"MS NCE M365 BUSINESS PREMIUM 1 YR COMMIT","ManufacturerStockCode":"CFQ7TTC0LCHC:0002"}]}"#;

async fn dd_subscriptions(
    State(s): State<DdState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let key = bearer(&headers);
    s.seen.lock().unwrap().push(key.clone());
    s.transaction_ids
        .lock()
        .unwrap()
        .push(header(&headers, "dd-transactionid").unwrap_or_default());
    assert_eq!(header(&headers, "dd-apiversion").as_deref(), Some("v1"));
    s.bodies.lock().unwrap().push(body);
    if !key.starts_with("key-") || s.revoked.lock().unwrap().contains(&key) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"Message":"Authorization has been denied for this request."})),
        )
            .into_response();
    }
    if s.expired_in_body.lock().unwrap().contains(&key) {
        return Json(json!({"Status":"Failed","Message":"AccessKey has expired"})).into_response();
    }
    if let Some(m) = s.fail_with.lock().unwrap().clone() {
        return Json(json!({"Status":"Failed","Message":m,"Out":null})).into_response();
    }
    (
        [("content-type", "application/json")],
        SUBSCRIPTIONS.to_string(),
    )
        .into_response()
}

async fn dd_prices(
    State(s): State<DdState>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    // §4.4: the key travels in the query (style b); this server insists the bearer header
    // (style a) carries the same key.
    let key = q
        .get("pricingRequest.accessKey")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        q.get("pricingRequest.token").map(String::as_str),
        Some(ACCESS_CODE)
    );
    assert!(uuid::Uuid::parse_str(q.get("pricingRequest.messageID").unwrap()).is_ok());
    s.seen.lock().unwrap().push(key.clone());
    if key != bearer(&headers) || s.revoked.lock().unwrap().contains(&key) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let items: Vec<Value> = q["pricingRequest.products"]
        .split(',')
        .map(|p| json!({"PartNumber": p, "UnitPrice": 34.55, "SOH": 0}))
        .collect();
    Json(json!({ "SearchResult": items })).into_response()
}

async fn dd_server(lifetime_secs: i64) -> (DdState, Url) {
    let state = Arc::new(Dd {
        lifetime_secs,
        ..Default::default()
    });
    let router = Router::new()
        .route("/api/AccessKeyRequest", post(dd_access_key))
        .route(
            "/api/Subscriptions/GetSubscriptionDetails",
            post(dd_subscriptions),
        )
        .route("/api/PricingRequest", get(dd_prices))
        .with_state(state.clone());
    let (l, origin) = bind().await;
    serve(l, router).await;
    (state, Url::parse(&format!("{origin}/api")).unwrap())
}

fn dd_client(base: Url, access_code: &str) -> DickerDataClient {
    DickerDataClient::new(
        base,
        reqwest::Client::new(),
        ACCOUNT.into(),
        Secret::new(access_code),
    )
}

#[tokio::test]
async fn dd_key_is_cached_while_it_has_life_left() {
    let (s, base) = dd_server(600).await;
    let c = dd_client(base, ACCESS_CODE);
    for _ in 0..3 {
        let subs = c.subscriptions(SubscriptionType::Csp, None).await.unwrap();
        assert_eq!(subs[0].confirmed_quantity, Some(25));
    }
    assert_eq!(s.key_requests.load(Ordering::SeqCst), 1);
    assert_eq!(*s.seen.lock().unwrap(), vec!["key-1"; 3]);
    // Auth style (a): a fresh GUID transaction id per request.
    let ids = s.transaction_ids.lock().unwrap().clone();
    assert!(
        ids.iter().all(|t| uuid::Uuid::parse_str(t).is_ok()),
        "{ids:?}"
    );
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3);
    // The §4.3 request body.
    assert_eq!(
        s.bodies.lock().unwrap()[0],
        json!({"In":{"SubscriptionType":"CSP"}})
    );
}

#[tokio::test]
async fn dd_key_is_renewed_when_about_to_expire() {
    // 30 s of life is under the 60 s renewal margin: every later call renews first.
    let (s, base) = dd_server(30).await;
    let c = dd_client(base, ACCESS_CODE);
    c.subscriptions(
        SubscriptionType::Csp,
        Some("b44bb1fb-c595-45b0-9e09-d657365580bf"),
    )
    .await
    .unwrap();
    c.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    assert_eq!(s.key_requests.load(Ordering::SeqCst), 2);
    assert_eq!(*s.seen.lock().unwrap(), vec!["key-1", "key-2"]);
    assert_eq!(
        s.bodies.lock().unwrap()[0],
        json!({"In":{"SubscriptionType":"CSP","TenantID":"b44bb1fb-c595-45b0-9e09-d657365580bf"}})
    );
}

#[tokio::test]
async fn dd_concurrent_callers_share_one_renewal() {
    let (s, base) = dd_server(600).await;
    let c = dd_client(base, ACCESS_CODE);
    let calls = (0..8).map(|_| c.subscriptions(SubscriptionType::Csp, None));
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    assert_eq!(s.key_requests.load(Ordering::SeqCst), 1);
    assert_eq!(c.key_source().key_requests(), 1);
}

#[tokio::test]
async fn dd_key_is_renewed_on_a_401() {
    let (s, base) = dd_server(600).await;
    s.revoked.lock().unwrap().insert("key-1".into());
    let c = dd_client(base, ACCESS_CODE);
    let subs = c.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(s.key_requests.load(Ordering::SeqCst), 2);
    assert_eq!(*s.seen.lock().unwrap(), vec!["key-1", "key-2"]);
    // The renewed key is kept.
    c.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    assert_eq!(s.key_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn dd_key_is_renewed_when_a_200_body_says_it_expired() {
    let (s, base) = dd_server(600).await;
    s.expired_in_body.lock().unwrap().insert("key-1".into());
    let c = dd_client(base, ACCESS_CODE);
    c.subscriptions(SubscriptionType::Csp, None).await.unwrap();
    assert_eq!(*s.seen.lock().unwrap(), vec!["key-1", "key-2"]);
    // A key the server keeps refusing is reported, not retried for ever.
    s.expired_in_body.lock().unwrap().insert("key-3".into());
    s.expired_in_body.lock().unwrap().insert("key-4".into());
    s.revoked.lock().unwrap().insert("key-2".into());
    let e = c
        .subscriptions(SubscriptionType::Csp, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(e.message.contains("AccessKey"), "{e}");
}

#[tokio::test]
async fn dd_status_failed_in_a_200_is_an_error() {
    let (s, base) = dd_server(600).await;
    *s.fail_with.lock().unwrap() = Some("No subscriptions found for tenant".into());
    let c = dd_client(base, ACCESS_CODE);
    let e = c
        .subscriptions(SubscriptionType::Csp, Some("nope"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Failed);
    assert!(
        e.to_string()
            .contains("reported that the request failed: No subscriptions found for tenant"),
        "{e}"
    );
    // Not an auth problem: no renewal, no second attempt.
    assert_eq!(s.key_requests.load(Ordering::SeqCst), 1);
    assert_eq!(s.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn dd_wrong_access_code_names_the_codes() {
    let (s, base) = dd_server(600).await;
    let c = dd_client(base, "WRONG-CODE");
    let e = c.test_connection().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert!(
        e.to_string().contains(
            "did not accept the Account Code and Access Code (it said: Invalid credentials)"
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("WRONG-CODE"));
    let e = c
        .subscriptions(SubscriptionType::Csp, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    // The subscription endpoint was never called without a key.
    assert!(s.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn dd_test_connection_reports_expiry_and_prices_carry_the_key() {
    let (s, base) = dd_server(600).await;
    let c = dd_client(base, ACCESS_CODE);
    let exp = c.test_connection().await.unwrap();
    let left = exp - Utc::now();
    assert!(
        left > chrono::Duration::seconds(590) && left <= chrono::Duration::seconds(600),
        "{left}"
    );
    s.revoked.lock().unwrap().insert("key-1".into());
    let p = c
        .prices(&["P1Y:CFQ7TTC0LCHC:0002:1:", "P1M:CFQ7TTC0LCH4:0001:1:"])
        .await
        .unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(
        p[1].part_number.as_deref(),
        Some("P1M:CFQ7TTC0LCH4:0001:1:")
    );
    assert_eq!(p[0].unit_price, Some(Decimal::new(3455, 2)));
    // key-1 refused → renewed once, and the query carried the new key too.
    assert_eq!(
        s.seen.lock().unwrap().last().map(String::as_str),
        Some("key-2")
    );
    assert_eq!(s.key_requests.load(Ordering::SeqCst), 2);
}

// =============================================================================================
// ConnectWise (§5)
// =============================================================================================

const CLIENT_ID: &str = "5b7c8f0e-2c51-4d0e-9a7a-1c2d3e4f5a6b";

fn cw_creds() -> ConnectWiseCredentials {
    ConnectWiseCredentials {
        company_id: "contoso".into(),
        public_key: "AbCdPub".into(),
        private_key: Secret::new("XyZPriv"),
        client_id: CLIENT_ID.into(),
    }
}

#[derive(Default)]
struct Cw {
    origin: String,
    page_calls: Mutex<Vec<String>>,
    agreements_calls: AtomicUsize,
    catalog_calls: AtomicUsize,
    patches: Mutex<Vec<Value>>,
}

type CwState = Arc<Cw>;

const PREFIX: &str = "/v4_6_release/apis/3.0";

/// §5.1: Basic base64("{companyId}+{publicKey}:{privateKey}") and a clientId header.
fn cw_auth_ok(h: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("contoso+AbCdPub:XyZPriv")
    );
    header(h, "authorization").as_deref() == Some(expected.as_str())
        && header(h, "clientId").as_deref() == Some(CLIENT_ID)
        && header(h, "accept").as_deref() == Some("application/json")
}

fn cw_unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"code":"Unauthorized","message":"Authentication failed."})),
    )
        .into_response()
}

async fn cw_companies(
    State(s): State<CwState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if !cw_auth_ok(&headers) {
        return cw_unauthorized();
    }
    s.page_calls.lock().unwrap().push(raw.unwrap_or_default());
    assert_eq!(q.get("pageSize").map(String::as_str), Some("1000"));
    assert_eq!(
        q.get("conditions").map(String::as_str),
        Some(r#"name like "Con\"toso%" and deletedFlag=false"#)
    );
    let page: u32 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    // The next links carry a comma and a semicolon, which the Link parser must keep.
    let link = |p: u32| {
        format!(
            "<{}{PREFIX}/company/companies?pageSize=1000&conditions=name%20like%20%22Con%5C%22toso%25%22%20and%20deletedFlag%3Dfalse&page={p}&x=a,b;c>",
            s.origin
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link(1)));
        links.push(format!("{}; rel=\"prev\"", link(page - 1)));
    }
    if page < 3 {
        links.push(format!("{}; rel=\"next\"", link(page + 1)));
        links.push(format!("{}; rel=\"last\"", link(3)));
    }
    let items: Vec<Value> = (0..2)
        .map(|i| {
            let id = page * 10 + i;
            json!({"id": id, "identifier": format!("C{id}"), "name": format!("Company {id}"),
                   "status": {"id":1,"name":"Active"}, "types":[{"id":1,"name":"Client"}],
                   "deletedFlag": false, "_info": {"lastUpdated":"2026-03-02T04:11:09Z","updatedBy":"apiuser"}})
        })
        .collect();
    let mut resp = Json(items).into_response();
    if !links.is_empty() {
        resp.headers_mut()
            .insert("link", links.join(", ").parse().unwrap());
    }
    resp
}

async fn cw_agreements(State(s): State<CwState>, headers: HeaderMap) -> Response {
    if !cw_auth_ok(&headers) {
        return cw_unauthorized();
    }
    if s.agreements_calls.fetch_add(1, Ordering::SeqCst) == 0 {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            Json(json!({"code":"TooManyRequests","message":"slow down"})),
        )
            .into_response();
    }
    Json(json!([{"id":77,"name":"Microsoft CSP","type":{"id":3,"name":"Microsoft CSP"},
        "company":{"id":250,"identifier":"ContosoLtd","name":"Contoso Ltd"},"agreementStatus":"Active",
        "startDate":"2025-07-01T00:00:00Z","endDate":null,"billingCycle":{"id":2,"name":"Monthly"},"cancelledFlag":false}]))
    .into_response()
}

async fn cw_catalog(State(s): State<CwState>, headers: HeaderMap) -> Response {
    if !cw_auth_ok(&headers) {
        return cw_unauthorized();
    }
    if s.catalog_calls.fetch_add(1, Ordering::SeqCst) == 0 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code":"UnexpectedError","message":"Something went wrong"})),
        )
            .into_response();
    }
    Json(json!([{"id":731,"identifier":"CFQ7TTC0LCHC-P1Y","description":"M365 Business Premium",
        "customerDescription":"Microsoft 365 Business Premium","price":34.55,"cost":28.19,"productClass":"Agreement"}]))
    .into_response()
}

async fn cw_patch_addition(
    State(s): State<CwState>,
    headers: HeaderMap,
    Json(ops): Json<Value>,
) -> Response {
    if !cw_auth_ok(&headers) {
        return cw_unauthorized();
    }
    s.patches.lock().unwrap().push(ops.clone());
    let mut addition = json!({"id":9012,"agreementId":77,"quantity":25,"unitPrice":34.55,"billCustomer":"Billable",
        "product":{"id":731,"identifier":"CFQ7TTC0LCHC-P1Y"},"cancelledDate":null});
    let field = ops[0]["path"].as_str().unwrap().to_string();
    addition[field] = ops[0]["value"].clone();
    Json(addition).into_response()
}

async fn cw_count(
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if !cw_auth_ok(&headers) {
        return cw_unauthorized();
    }
    assert_eq!(
        q.get("conditions").map(String::as_str),
        Some("company/id=250")
    );
    Json(json!({"count": 3})).into_response()
}

async fn cw_server() -> (CwState, Url) {
    let (l, origin) = bind().await;
    let state = Arc::new(Cw {
        origin: origin.clone(),
        ..Default::default()
    });
    let router = Router::new()
        .route(&format!("{PREFIX}/company/companies"), get(cw_companies))
        .route(&format!("{PREFIX}/finance/agreements"), get(cw_agreements))
        .route(&format!("{PREFIX}/finance/agreements/count"), get(cw_count))
        .route(&format!("{PREFIX}/procurement/catalog"), get(cw_catalog))
        .route(
            &format!("{PREFIX}/finance/agreements/{{a}}/additions/{{id}}"),
            axum::routing::patch(cw_patch_addition),
        )
        .with_state(state.clone());
    serve(l, router).await;
    let base = cspsync::api::connectwise::base_from_site(&origin).unwrap();
    (state, base)
}

#[tokio::test]
async fn cw_follows_link_headers_across_three_pages() {
    let (s, base) = cw_server().await;
    let c = ConnectWiseClient::new(base, reqwest::Client::new(), cw_creds());
    let cond = Conditions::of("name", Op::Like, "Con\"toso%").and("deletedFlag", Op::Eq, false);
    let companies = c.companies(Some(&cond)).await.unwrap();
    let ids: Vec<u64> = companies.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![10, 11, 20, 21, 30, 31]);
    assert_eq!(companies[0].types[0].name.as_deref(), Some("Client"));
    let calls = s.page_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    // Pages 2 and 3 were requested with the Link URL verbatim (comma and semicolon kept).
    assert!(calls[1].ends_with("&page=2&x=a,b;c"), "{calls:?}");
    assert!(calls[2].ends_with("&page=3&x=a,b;c"), "{calls:?}");
}

#[tokio::test]
async fn cw_wrong_keys_are_unauthorized_with_a_hint() {
    let (s, base) = cw_server().await;
    let mut creds = cw_creds();
    creds.private_key = Secret::new("wrong");
    let c = ConnectWiseClient::new(base, reqwest::Client::new(), creds);
    let e = c.companies(None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(e.code.as_deref(), Some("Unauthorized"));
    assert!(e.hint().contains("clientId"));
    // No refresh loop: one attempt, nothing else.
    assert_eq!(c.stats().attempts, 1);
    assert!(s.page_calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn cw_429_waits_for_retry_after() {
    let (s, base) = cw_server().await;
    let c = ConnectWiseClient::new(base, reqwest::Client::new(), cw_creds());
    let t0 = Instant::now();
    let agreements = c
        .agreements(Some(&Conditions::of("agreementStatus", Op::Eq, "Active")))
        .await
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(agreements[0].id, 77);
    assert_eq!(
        agreements[0]
            .company
            .as_ref()
            .unwrap()
            .identifier
            .as_deref(),
        Some("ContosoLtd")
    );
    assert_eq!(s.agreements_calls.load(Ordering::SeqCst), 2);
    assert_eq!(c.stats().throttled, 1);
}

#[tokio::test]
async fn cw_5xx_on_a_get_is_retried() {
    let (s, base) = cw_server().await;
    let c = ConnectWiseClient::new(base, reqwest::Client::new(), cw_creds());
    let items = c.catalog(None).await.unwrap();
    assert_eq!(items[0].price, Some(Decimal::new(3455, 2)));
    assert_eq!(s.catalog_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn cw_quantity_patch_and_count() {
    let (s, base) = cw_server().await;
    let c = ConnectWiseClient::new(base, reqwest::Client::new(), cw_creds());
    let a = c
        .set_addition_quantity(77, 9012, Decimal::from(30))
        .await
        .unwrap();
    assert_eq!(a.quantity, Some(Decimal::from(30)));
    c.cancel_addition(
        77,
        9012,
        chrono::NaiveDate::from_ymd_opt(2026, 5, 31).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        *s.patches.lock().unwrap(),
        vec![
            json!([{"op":"replace","path":"quantity","value":30}]),
            json!([{"op":"replace","path":"cancelledDate","value":"2026-05-31T00:00:00Z"}]),
        ]
    );
    let n = c
        .count(
            "finance/agreements",
            Some(&Conditions::of("company/id", Op::Eq, 250u64)),
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
}

/// A raw server that reads one request, counts it and closes the connection without answering.
async fn dropping_server() -> (Arc<AtomicUsize>, String) {
    let (l, origin) = bind().await;
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = l.accept().await.unwrap();
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read headers and the announced body, then hang up.
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let _ = sock.shutdown().await;
            });
        }
    });
    (hits, origin)
}

#[tokio::test]
async fn cw_post_addition_is_not_retried_after_a_dropped_connection() {
    let (hits, origin) = dropping_server().await;
    let base = cspsync::api::connectwise::base_from_site(&origin).unwrap();
    let c = ConnectWiseClient::new(base, reqwest::Client::new(), cw_creds());
    let new = NewAddition {
        product: Reference::id(731),
        bill_customer: BillCustomer::Billable,
        quantity: Decimal::from(25),
        unit_price: Some(Decimal::new(3455, 2)),
        ..Default::default()
    };
    let e = c.create_addition(77, &new).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Transport {
            maybe_applied: true
        },
        "{e}"
    );
    assert!(e.to_string().contains("may have been applied"), "{e}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The same fault on an idempotent PATCH is retried (short backoff to keep the test fast).
    let c = c.with_retry(RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(1),
    });
    let e = c
        .set_addition_quantity(77, 9012, Decimal::from(30))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Transport {
            maybe_applied: false
        },
        "{e}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1 + 3);
}
