//! The Autotask and Xero clients over real loopback TCP, against small servers built here that
//! answer with the canned bodies of reference/external-apis.md §6 and §7.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request as AxRequest;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response as AxResponse;
use base64::Engine;
use chrono::NaiveDate;
use cspsync::api::autotask::{AutotaskClient, AutotaskCredentials, Company, NewAdjustment};
use cspsync::api::error::ErrorKind;
use cspsync::api::http::{RetryPolicy, StaticToken, TokenSource, build_client};
use cspsync::api::xero::{
    ContactRef, InvoiceStatus, InvoiceType, NewInvoice, NewLineItem, XeroClient,
};
use cspsync::auth::loopback::LoopbackListener;
use cspsync::auth::xero::{XeroAuth, XeroSession, XeroTokens};
use oauth2::{AccessToken, RefreshToken};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use url::Url;

// ---------------------------------------------------------------------------------------------
// A tiny recording server
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

impl Reply {
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serve `answer(base, request, index)` on 127.0.0.1; returns the base URL and the log.
async fn serve<F>(answer: F) -> (String, Log)
where
    F: Fn(&str, &Seen, usize) -> Reply + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let answer = Arc::new(answer);
    let (log2, base2) = (log.clone(), base.clone());
    let app = Router::new().fallback(move |req: AxRequest| {
        let (log, answer, base) = (log2.clone(), answer.clone(), base2.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let n = {
                let mut l = log.lock().unwrap();
                l.push(seen.clone());
                l.len() - 1
            };
            let r = answer(&base, &seen, n);
            if !r.delay.is_zero() {
                tokio::time::sleep(r.delay).await;
            }
            let mut b = AxResponse::builder().status(StatusCode::from_u16(r.status).unwrap());
            for (k, v) in r.headers {
                b = b.header(k, v);
            }
            b.body(Body::from(r.body)).unwrap()
        }
    });
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, log)
}

fn seen(log: &Log) -> Vec<Seen> {
    log.lock().unwrap().clone()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(120),
    }
}

fn http() -> reqwest::Client {
    build_client(Duration::from_secs(10))
}

// ---------------------------------------------------------------------------------------------
// Autotask
// ---------------------------------------------------------------------------------------------

fn at_creds() -> AutotaskCredentials {
    AutotaskCredentials::new("api@msp.example", "SECRET-xyz", "TRACKING-123")
}

fn assert_autotask_auth(s: &Seen) {
    assert_eq!(
        s.header("apiintegrationcode"),
        Some("TRACKING-123"),
        "{} {}",
        s.method,
        s.path
    );
    assert_eq!(
        s.header("username"),
        Some("api@msp.example"),
        "{} {}",
        s.method,
        s.path
    );
    assert_eq!(
        s.header("secret"),
        Some("SECRET-xyz"),
        "{} {}",
        s.method,
        s.path
    );
    assert!(
        s.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{} {}",
        s.method,
        s.path
    );
}

fn company(id: i64) -> Value {
    json!({"id":id,"companyName":format!("Company {id}"),"companyNumber":format!("C-{id:04}"),"companyType":1,
           "isActive":true,"phone":"02 9555 1234","webAddress":"contoso.com.au","ownerResourceID":29682885,"userDefinedFields":[]})
}

#[tokio::test]
async fn autotask_discovers_its_zone_then_follows_next_page_urls_with_auth_headers() {
    let (base, log) = serve(|base, s, _| match (s.method.as_str(), s.path.as_str()) {
        ("GET", "/atservicesrest/v1.0/zoneInformation") => reply(
            200,
            json!({"zoneName":"Sim Zone","url":format!("{base}/zone3/atservicesrest/"),"webUrl":"https://ww3.autotask.net/","ci":12345}),
        ),
        ("POST", "/zone3/atservicesrest/v1.0/Companies/query") => reply(
            200,
            json!({"items":[company(1),company(2)],"pageDetails":{"count":2,"requestCount":2,"prevPageUrl":null,
                   "nextPageUrl":format!("{base}/zone3/atservicesrest/v1.0/Companies/query/next?paging=opaque-2")}}),
        ),
        ("GET", "/zone3/atservicesrest/v1.0/Companies/query/next") => {
            match s.query.get("paging").map(String::as_str) {
                Some("opaque-2") => reply(
                    200,
                    json!({"items":[company(3),company(4)],"pageDetails":{"count":2,"requestCount":2,
                           "nextPageUrl":format!("{base}/zone3/atservicesrest/v1.0/Companies/query/next?paging=opaque-3")}}),
                ),
                _ => reply(
                    200,
                    json!({"items":[company(5)],"pageDetails":{"count":1,"requestCount":2,"nextPageUrl":null}}),
                ),
            }
        }
        _ => reply(404, json!({"errors":["no such route"]})),
    })
    .await;

    let client = AutotaskClient::discover(
        &Url::parse(&format!("{base}/atservicesrest")).unwrap(),
        http(),
        at_creds(),
    )
    .await
    .unwrap();
    assert_eq!(client.zone().unwrap().zone_name, "Sim Zone");
    assert_eq!(
        client.base().as_str(),
        format!("{base}/zone3/atservicesrest/v1.0/")
    );

    let got: Vec<Company> = client
        .companies(vec![cspsync::api::autotask::Filter::eq("isActive", true)])
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(got[4].company_name, "Company 5");

    let s = seen(&log);
    assert_eq!(s.len(), 4, "zone + first page + two next pages");
    assert_eq!(
        s[0].query.get("user").map(String::as_str),
        Some("api@msp.example")
    );
    for r in &s {
        assert_autotask_auth(r);
    }
    assert_eq!(
        s[1].json(),
        json!({"MaxRecords":500,"filter":[{"op":"eq","field":"isActive","value":true}]})
    );
    let next: Vec<_> = s
        .iter()
        .filter(|r| r.path.ends_with("/query/next"))
        .collect();
    assert_eq!(next.len(), 2);
    assert!(next.iter().all(|r| r.method == "GET"));
    assert_eq!(next[0].query["paging"], "opaque-2");
    assert_eq!(next[1].query["paging"], "opaque-3");

    // A cached zone URL (without its trailing slash) reaches the same endpoints.
    let cached = AutotaskClient::from_zone_url(
        &Url::parse(&format!("{base}/zone3/atservicesrest")).unwrap(),
        http(),
        at_creds(),
    );
    assert_eq!(cached.companies(vec![]).await.unwrap().len(), 5);
}

#[tokio::test]
async fn autotask_long_in_lists_are_split_into_queries_of_at_most_500() {
    let (base, log) = serve(|_, s, _| {
        let body = s.json();
        let ids = body["filter"][0]["value"].as_array().unwrap().clone();
        // One service per chunk, and one that every chunk returns (counted once).
        reply(
            200,
            json!({"items":[
                {"id":ids[0].as_i64().unwrap() + 100000,"contractID":ids[0],"serviceID":9001,"unitPrice":34.55},
                {"id":1,"contractID":1,"serviceID":9001,"unitPrice":34.55,"adjustedPrice":30.0}
            ],"pageDetails":{"nextPageUrl":null}}),
        )
    })
    .await;
    let client = AutotaskClient::from_zone_url(
        &Url::parse(&format!("{base}/atservicesrest/")).unwrap(),
        http(),
        at_creds(),
    );
    let ids: Vec<i64> = (1..=1200).collect();
    let services = client.contract_services(&ids).await.unwrap();
    let s = seen(&log);
    assert_eq!(s.len(), 3);
    let mut asked = Vec::new();
    for r in &s {
        assert_eq!(r.path, "/atservicesrest/v1.0/ContractServices/query");
        let f = &r.json()["filter"][0];
        assert_eq!(f["op"], "in");
        assert_eq!(f["field"], "contractID");
        let v = f["value"].as_array().unwrap();
        assert!(v.len() <= 500);
        asked.extend(v.iter().map(|x| x.as_i64().unwrap()));
    }
    assert_eq!(asked, ids);
    assert_eq!(services.len(), 4);
    assert_eq!(
        services
            .iter()
            .find(|c| c.id == 1)
            .unwrap()
            .effective_price(),
        Some(Decimal::new(30, 0))
    );
}

#[tokio::test]
async fn autotask_current_units_and_count_and_get() {
    let (base, _log) = serve(|_, s, _| match s.path.as_str() {
        "/at/v1.0/ContractServiceUnits/query" => reply(
            200,
            json!({"items":[
                {"id":1,"contractID":7001,"contractServiceID":55,"serviceID":9001,"startDate":"2026-04-01T00:00:00","endDate":"2026-04-30T00:00:00","units":20,"price":34.55},
                {"id":2,"contractID":7001,"contractServiceID":55,"serviceID":9001,"startDate":"2026-05-01T00:00:00.000Z","endDate":"2026-05-31T00:00:00","units":25,"price":34.55},
                {"id":3,"contractID":7001,"contractServiceID":56,"serviceID":9002,"startDate":"2026-06-01","endDate":"2026-06-30","units":3}
            ],"pageDetails":{"nextPageUrl":null}}),
        ),
        "/at/v1.0/Companies/query/count" => reply(200, json!({"queryCount": 42})),
        "/at/v1.0/Companies/516" => reply(200, json!({"item": company(516)})),
        "/at/v1.0/Companies/517" => reply(200, json!({"item": null})),
        _ => reply(404, json!({"errors":["Not found"]})),
    })
    .await;
    let client = AutotaskClient::from_zone_url(
        &Url::parse(&format!("{base}/at/")).unwrap(),
        http(),
        at_creds(),
    );
    let units = client
        .current_units(&[55, 56], NaiveDate::from_ymd_opt(2026, 5, 20).unwrap())
        .await
        .unwrap();
    assert_eq!(units.get(&55), Some(&25));
    assert_eq!(
        units.get(&56),
        None,
        "a period that has not started does not count"
    );
    assert_eq!(client.count("Companies", &[]).await.unwrap(), 42);
    let c: Option<Company> = client.get("Companies", 516).await.unwrap();
    assert_eq!(c.unwrap().id, 516);
    assert!(
        client
            .get::<Company>("Companies", 517)
            .await
            .unwrap()
            .is_none()
    );
    assert!(client.get::<Company>("Nope", 1).await.unwrap().is_none());
}

/// A raw TCP server that reads each request and closes the connection without answering for
/// the first `drop_first` requests, then answers `200 {"itemId":..}` / an empty query page.
async fn dropping_server(drop_first: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let count = c2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let n = count.fetch_add(1, Ordering::SeqCst);
                if n < drop_first {
                    drop(stream); // the request arrived; the answer is lost
                    return;
                }
                let body = r#"{"itemId":123456,"items":[],"pageDetails":{"nextPageUrl":null}}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, count)
}

#[tokio::test]
async fn autotask_adjustment_is_not_resent_after_a_dropped_connection() {
    let (base, count) = dropping_server(1).await;
    let client = AutotaskClient::from_zone_url(
        &Url::parse(&format!("{base}/atservicesrest/")).unwrap(),
        http(),
        at_creds(),
    )
    .with_retry(fast_retry());
    let adj = NewAdjustment {
        contract_id: 7001,
        service_id: 9001,
        contract_service_id: Some(55),
        unit_change: 5,
        adjusted_unit_price: Some(Decimal::new(3455, 2)),
        adjusted_unit_cost: None,
        effective_date: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
    };
    let err = client.create_adjustment(&adj).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Transport {
            maybe_applied: true
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("may have been applied"), "{msg}");
    assert!(msg.contains("contract 7001"), "{msg}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the create was sent once only"
    );

    // A query (a read) over the same kind of failure is simply sent again.
    let (base, count) = dropping_server(1).await;
    let client = AutotaskClient::from_zone_url(
        &Url::parse(&format!("{base}/atservicesrest/")).unwrap(),
        http(),
        at_creds(),
    )
    .with_retry(fast_retry());
    assert!(client.companies(vec![]).await.unwrap().is_empty());
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // And once the server answers, the adjustment's itemId comes back.
    let (base, count) = dropping_server(0).await;
    let client = AutotaskClient::from_zone_url(
        &Url::parse(&format!("{base}/atservicesrest/")).unwrap(),
        http(),
        at_creds(),
    );
    assert_eq!(client.create_adjustment(&adj).await.unwrap(), 123456);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn autotask_writes_use_the_spec_paths_and_errors_are_readable() {
    let (base, log) = serve(|_, s, _| match (s.method.as_str(), s.path.as_str()) {
        ("POST", "/at/v1.0/Contracts/7001/ServiceAdjustments") => reply(
            500,
            json!({"errors":["effectiveDate must be between the start date and end date of the Contract"]}),
        ),
        ("POST", "/at/v1.0/Contracts/7001/Services") => reply(200, json!({"itemId": 88})),
        ("PATCH", "/at/v1.0/Contracts/7001/Services") => reply(200, json!({"itemId": 88})),
        _ => reply(404, json!({"errors":["Not found"]})),
    })
    .await;
    let client = AutotaskClient::from_zone_url(
        &Url::parse(&format!("{base}/at")).unwrap(),
        http(),
        at_creds(),
    )
    .with_retry(fast_retry());
    let adj = NewAdjustment {
        contract_id: 7001,
        service_id: 9001,
        contract_service_id: None,
        unit_change: -2,
        adjusted_unit_price: None,
        adjusted_unit_cost: None,
        effective_date: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
    };
    let err = client.create_adjustment(&adj).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Rejected);
    assert!(
        err.to_string().contains("effectiveDate must be between"),
        "{err}"
    );
    let id = client
        .create_contract_service(&cspsync::api::autotask::NewContractService::new(
            7001,
            9001,
            Decimal::new(3455, 2),
        ))
        .await
        .unwrap();
    assert_eq!(id, 88);
    client
        .update_contract_service(7001, 88, Some(Decimal::new(3600, 2)), None)
        .await
        .unwrap();
    let s = seen(&log);
    assert_eq!(s.len(), 3, "a 500 on a create is not retried");
    assert_eq!(s[0].json()["effectiveDate"], "2027-01-01T00:00:00.00");
    assert_eq!(
        s[1].json(),
        json!({"contractID":7001,"serviceID":9001,"unitPrice":34.55,"adjustedPrice":34.55})
    );
    assert_eq!(s[2].json(), json!({"id":88,"adjustedPrice":36.0}));
    for r in &s {
        assert_autotask_auth(r);
    }
}

// ---------------------------------------------------------------------------------------------
// Xero
// ---------------------------------------------------------------------------------------------

const TENANT: &str = "fe79f7dd-b6d4-4a92-ba7b-538af6289c58";

fn connections_body() -> Value {
    json!([{"id":"7cb59f93-2964-421d-bb5e-a0f7a4572a44","authEventId":"d99ecdfe-00d3-4d5f-b4a8-b3f1d5b0c5d3","tenantId":TENANT,
            "tenantType":"ORGANISATION","tenantName":"Demo Company (AU)","createdDateUtc":"2019-12-07T18:46:19.5165400","updatedDateUtc":"2019-12-07T18:46:19.5187840"}])
}

fn xero_auth(base: &str) -> XeroAuth {
    XeroAuth::new(
        Url::parse(&format!("{base}/identity/connect")).unwrap(),
        Url::parse(&format!("{base}/connect")).unwrap(),
        "CLIENT-ID",
        http(),
    )
    .with_retry(fast_retry())
}

fn tokens(access: &str, refresh: &str) -> XeroTokens {
    XeroTokens {
        access_token: AccessToken::new(access.into()),
        refresh_token: RefreshToken::new(refresh.into()),
        expires_in: Duration::from_secs(1800),
        received_at: tokio::time::Instant::now(),
        scopes: None,
    }
}

/// Token endpoint that rotates rt-N → (at-N+1, rt-N+1) and knows nothing else; an API that
/// accepts any access token but `at-1`.
fn token_and_api(_base: &str, s: &Seen, _n: usize) -> Reply {
    match (s.method.as_str(), s.path.as_str()) {
        ("POST", "/connect/token") => {
            let f = s.form();
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            match (
                f.get("grant_type").map(String::as_str),
                rt.strip_prefix("rt-"),
            ) {
                (Some("refresh_token"), Some(n))
                    if f.get("client_id").map(String::as_str) == Some("CLIENT-ID") =>
                {
                    let next: u32 = n.parse::<u32>().unwrap() + 1;
                    reply(
                        200,
                        json!({"id_token":"x","access_token":format!("at-{next}"),"expires_in":1800,"token_type":"Bearer",
                               "refresh_token":format!("rt-{next}"),"scope":"openid offline_access accounting.contacts"}),
                    )
                }
                _ => reply(400, json!({"error":"invalid_grant"})),
            }
        }
        ("GET", "/connections") => match s.header("authorization") {
            Some("Bearer at-1") | None => reply(
                401,
                json!({"Title":"Unauthorized","Status":401,"Detail":"TokenExpired: token expired at 05/01/2026 10:00:00","Instance":"x"}),
            ),
            Some(_) => reply(200, connections_body()),
        },
        _ => reply(
            404,
            json!({"Title":"NotFound","Status":404,"Detail":"no route"}),
        ),
    }
}

#[tokio::test]
async fn xero_refreshes_on_401_and_uses_each_rotated_refresh_token_next() {
    let (base, log) = serve(token_and_api).await;
    let session = Arc::new(XeroSession::new(xero_auth(&base), tokens("at-1", "rt-1")));
    let mut rotated = session.subscribe();
    let client = XeroClient::new(
        Url::parse(&base).unwrap(),
        http(),
        session.clone() as Arc<dyn TokenSource>,
    );

    let conns = client.connections().await.unwrap();
    assert_eq!(conns[0].tenant_id, TENANT);
    assert_eq!(session.refresh_token().secret(), "rt-2");
    assert!(rotated.has_changed().unwrap());
    assert_eq!(rotated.borrow_and_update().secret(), "rt-2");

    // The next refresh presents the new refresh token, never the used one.
    assert_eq!(session.token(true).await.unwrap(), "at-3");
    assert_eq!(session.refresh_token().secret(), "rt-3");

    let s = seen(&log);
    let refreshes: Vec<_> = s.iter().filter(|r| r.path == "/connect/token").collect();
    assert_eq!(refreshes.len(), 2);
    assert_eq!(refreshes[0].form()["refresh_token"], "rt-1");
    assert_eq!(refreshes[0].form()["grant_type"], "refresh_token");
    assert_eq!(refreshes[0].form()["client_id"], "CLIENT-ID");
    assert!(!refreshes[0].form().contains_key("client_secret"));
    assert_eq!(refreshes[1].form()["refresh_token"], "rt-2");
    let api: Vec<_> = s.iter().filter(|r| r.path == "/connections").collect();
    assert_eq!(api.len(), 2);
    assert_eq!(api[0].header("authorization"), Some("Bearer at-1"));
    assert_eq!(api[1].header("authorization"), Some("Bearer at-2"));

    // A fresh token is reused without a call; concurrent forced refreshes share one refresh.
    let before = session.refresh_count();
    let (a, b) = tokio::join!(session.token(true), session.token(true));
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(session.refresh_count(), before + 1);

    // A revoked refresh token says what to do.
    let revoked = Arc::new(XeroSession::from_refresh_token(
        xero_auth(&base),
        RefreshToken::new("revoked".into()),
    ));
    let client = XeroClient::new(Url::parse(&base).unwrap(), http(), revoked);
    let err = client.connections().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::OAuth);
    assert_eq!(err.code.as_deref(), Some("invalid_grant"));
    assert!(err.to_string().contains("sign in to Xero again"), "{err}");
}

#[tokio::test]
async fn xero_refresh_whose_answer_is_lost_is_retried_with_the_same_refresh_token() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let (base, log) = serve(move |b, s, n| {
        if s.path == "/connect/token" && c2.fetch_add(1, Ordering::SeqCst) == 0 {
            // Longer than the client's timeout: the answer never arrives.
            return token_and_api(b, s, n).delayed(Duration::from_millis(1500));
        }
        token_and_api(b, s, n)
    })
    .await;
    let auth = XeroAuth::new(
        Url::parse(&format!("{base}/identity/connect")).unwrap(),
        Url::parse(&format!("{base}/connect")).unwrap(),
        "CLIENT-ID",
        build_client(Duration::from_millis(400)),
    )
    .with_retry(fast_retry());
    let session = XeroSession::from_refresh_token(auth, RefreshToken::new("rt-7".into()));
    assert_eq!(session.token(false).await.unwrap(), "at-8");
    assert_eq!(session.refresh_token().secret(), "rt-8");
    let presented: Vec<String> = seen(&log)
        .iter()
        .filter(|r| r.path == "/connect/token")
        .map(|r| r.form()["refresh_token"].clone())
        .collect();
    assert_eq!(presented, vec!["rt-7".to_string(), "rt-7".to_string()]);
}

#[tokio::test]
async fn xero_waits_for_retry_after_then_succeeds() {
    let (base, log) = serve(|_, s, n| {
        assert_eq!(s.path, "/api.xro/2.0/Accounts");
        if n == 0 {
            Reply {
                status: 429,
                headers: vec![
                    ("retry-after", "1".into()),
                    ("x-rate-limit-problem", "minute".into()),
                ],
                body: String::new(),
                delay: Duration::ZERO,
            }
        } else {
            reply(
                200,
                json!({"Accounts":[{"AccountID":"ebd06280-af70-4bed-97c6-7451a454ad85","Code":"200","Name":"Sales","Type":"REVENUE","Class":"REVENUE","Status":"ACTIVE","TaxType":"OUTPUT"},
                                   {"AccountID":"3d7a1b2c-...","Code":"310","Name":"Cost of Goods Sold","Type":"DIRECTCOSTS","Class":"EXPENSE","Status":"ACTIVE","TaxType":"INPUT"}]}),
            )
            .header("x-minlimit-remaining", "58")
            .header("x-daylimit-remaining", "4990")
            .header("x-appminlimit-remaining", "9990")
        }
    })
    .await;
    let client = XeroClient::new(
        Url::parse(&base).unwrap(),
        http(),
        Arc::new(StaticToken("tok".into())),
    );
    let started = std::time::Instant::now();
    let accounts = client.accounts(TENANT, None).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(accounts.len(), 2);
    assert_eq!(
        cspsync::api::xero::revenue_accounts(&accounts)[0]
            .code
            .as_deref(),
        Some("200")
    );
    assert_eq!(seen(&log).len(), 2);
    let rl = client.rate_limits(TENANT).unwrap();
    assert_eq!(rl.minute_remaining, Some(58));
    assert_eq!(rl.day_remaining, Some(4990));
    assert_eq!(client.last_rate_limits(), Some(rl));
    assert_eq!(client.stats().throttled, 1);
}

#[tokio::test]
async fn xero_daily_limit_is_reported_at_once_and_not_retried() {
    let (base, log) = serve(|_, _, _| Reply {
        status: 429,
        headers: vec![
            ("retry-after", "30000".into()),
            ("x-rate-limit-problem", "day".into()),
        ],
        body: String::new(),
        delay: Duration::ZERO,
    })
    .await;
    let client = XeroClient::new(
        Url::parse(&base).unwrap(),
        http(),
        Arc::new(StaticToken("tok".into())),
    );
    let started = std::time::Instant::now();
    let err = client.contacts(TENANT, None).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(err.kind, ErrorKind::RateLimited { .. }));
    let msg = err.to_string();
    assert!(msg.contains("daily limit of 5,000 calls"), "{msg}");
    assert!(msg.contains("in about 8 hours"), "{msg}");
    assert_eq!(seen(&log).len(), 1);
    // Later calls for that organisation do not spend calls until it resets.
    let again = client
        .invoices(TENANT, &Default::default())
        .await
        .unwrap_err();
    assert!(again.to_string().contains("daily limit"), "{again}");
    assert_eq!(seen(&log).len(), 1);
}

/// Even with a short Retry-After, a daily-limit 429 is final: the window resets hours later.
#[tokio::test]
async fn xero_daily_limit_with_a_short_retry_after_is_not_retried() {
    let (base, log) = serve(|_, _, _| Reply {
        status: 429,
        headers: vec![
            ("retry-after", "1".into()),
            ("x-rate-limit-problem", "day".into()),
        ],
        body: String::new(),
        delay: Duration::ZERO,
    })
    .await;
    let client = XeroClient::new(
        Url::parse(&base).unwrap(),
        http(),
        Arc::new(StaticToken("tok".into())),
    );
    let err = client.contacts(TENANT, None).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::RateLimited { .. }), "{err:?}");
    assert!(err.to_string().contains("daily limit"), "{err}");
    assert_eq!(seen(&log).len(), 1);
}

fn contact(i: usize) -> Value {
    json!({"ContactID":format!("00000000-0000-0000-0000-{i:012}"),"ContactStatus":"ACTIVE","Name":format!("Customer {i}"),
           "IsSupplier":false,"IsCustomer":true,"UpdatedDateUTC":"\\/Date(1714348800000+0000)\\/"})
}

#[tokio::test]
async fn xero_contacts_are_read_over_every_page() {
    let (base, log) = serve(|_, s, _| {
        assert_eq!(s.path, "/api.xro/2.0/Contacts");
        let page: usize = s.query["page"].parse().unwrap();
        let with_pagination = s.header("xero-tenant-id") == Some(TENANT);
        let (from, n) = match page {
            1 => (0, 100),
            2 => (100, 100),
            3 => (200, 37),
            _ => (0, 0),
        };
        let items: Vec<Value> = (from..from + n).map(contact).collect();
        let mut body = json!({"Id":"6f0d3a2e","Status":"OK","ProviderName":"MSP TUI","DateTimeUTC":"\\/Date(1714380000000)\\/","Contacts":items});
        if with_pagination {
            body["pagination"] = json!({"page":page,"pageSize":100,"pageCount":3,"itemCount":237});
        }
        reply(200, body)
    })
    .await;
    let client = XeroClient::new(
        Url::parse(&base).unwrap(),
        http(),
        Arc::new(StaticToken("tok".into())),
    );
    let contacts = client
        .contacts(TENANT, Some("IsCustomer==true"))
        .await
        .unwrap();
    assert_eq!(contacts.len(), 237);
    assert_eq!(contacts[236].name.as_deref(), Some("Customer 236"));
    assert!(contacts[0].updated_date_utc.is_some());
    let s = seen(&log);
    assert_eq!(s.len(), 3);
    for (i, r) in s.iter().enumerate() {
        assert_eq!(r.query["page"], (i + 1).to_string());
        assert_eq!(r.query["pageSize"], "1000");
        assert_eq!(r.query["where"], "IsCustomer==true");
        assert_eq!(r.header("xero-tenant-id"), Some(TENANT));
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(r.header("authorization"), Some("Bearer tok"));
    }

    // Without `pagination` in the answer, a short page ends the listing.
    let contacts = client.contacts("other-tenant", None).await.unwrap();
    assert_eq!(contacts.len(), 237);
    assert_eq!(seen(&log).len(), 6);
}

fn new_bill() -> NewInvoice {
    NewInvoice {
        invoice_id: None,
        invoice_type: InvoiceType::AccPay,
        contact: ContactRef::id("430fa14a-f945-44d3-9f97-5df5e28441b8"),
        date: NaiveDate::from_ymd_opt(2026, 5, 1),
        due_date: NaiveDate::from_ymd_opt(2026, 5, 31),
        line_amount_types: Some(cspsync::api::xero::LineAmountTypes::Exclusive),
        invoice_number: Some("DD-INV-889123".into()),
        reference: None,
        currency_code: None,
        status: Some(InvoiceStatus::Draft),
        line_items: vec![NewLineItem {
            description: "MS NCE M365 Business Premium 1yr commit x25 (May 2026)".into(),
            quantity: Decimal::from(25),
            unit_amount: Decimal::new(2819, 2),
            account_code: Some("310".into()),
            tax_type: Some("INPUT".into()),
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn xero_invoice_create_resends_the_same_idempotency_key_after_a_503() {
    let (base, log) = serve(|_, s, n| {
        assert_eq!((s.method.as_str(), s.path.as_str()), ("PUT", "/api.xro/2.0/Invoices"));
        if n == 0 {
            return reply(503, json!({"Title":"Service Unavailable","Status":503,"Detail":"try later"}));
        }
        reply(
            200,
            json!({"Id":"x","Status":"OK","Invoices":[{"InvoiceID":"b2e9c3f4-0000-0000-0000-000000000001","Type":"ACCPAY",
                   "InvoiceNumber":"DD-INV-889123","Status":"DRAFT","Date":"\\/Date(1777593600000+0000)\\/",
                   "SubTotal":704.75,"TotalTax":70.48,"Total":775.23,"AmountDue":775.23,"HasErrors":false}]}),
        )
    })
    .await;
    let client = XeroClient::new(
        Url::parse(&base).unwrap(),
        http(),
        Arc::new(StaticToken("tok".into())),
    )
    .with_retry(fast_retry());
    let created = client
        .create_invoices(TENANT, &[new_bill()], "cspsync-sync-42-bill-1")
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].total, Some(Decimal::new(77523, 2)));
    assert_eq!(created[0].date, NaiveDate::from_ymd_opt(2026, 5, 1));
    let s = seen(&log);
    assert_eq!(s.len(), 2);
    for r in &s {
        assert_eq!(r.header("idempotency-key"), Some("cspsync-sync-42-bill-1"));
        assert_eq!(
            r.query.get("summarizeErrors").map(String::as_str),
            Some("true")
        );
        assert_eq!(r.header("xero-tenant-id"), Some(TENANT));
    }
    assert_eq!(s[0].body, s[1].body, "the retry sends the same request");
    let sent = s[0].json();
    assert_eq!(sent["Invoices"][0]["Date"], "2026-05-01");
    assert_eq!(
        sent["Invoices"][0]["LineItems"][0]["UnitAmount"],
        json!(28.19)
    );
}

#[tokio::test]
async fn xero_validation_errors_reach_the_user() {
    let (base, log) = serve(|_, _, _| {
        reply(
            400,
            json!({"ErrorNumber":10,"Type":"ValidationException","Message":"A validation exception occurred",
                   "Elements":[{"InvoiceID":"00000000-0000-0000-0000-000000000000","ValidationErrors":[{"Message":"Account code '999' is not a valid code for this document."}]}]}),
        )
    })
    .await;
    let client = XeroClient::new(
        Url::parse(&base).unwrap(),
        http(),
        Arc::new(StaticToken("tok".into())),
    )
    .with_retry(fast_retry());
    let err = client
        .upsert_invoices(TENANT, &[new_bill()], None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Rejected);
    assert_eq!(err.code.as_deref(), Some("ValidationException"));
    assert_eq!(
        err.details,
        vec!["Account code '999' is not a valid code for this document.".to_string()]
    );
    assert_eq!(seen(&log).len(), 1);
    assert_eq!(seen(&log)[0].method, "POST");
    assert_eq!(seen(&log)[0].header("idempotency-key"), None);
}

#[tokio::test]
async fn xero_sign_in_with_pkce_over_the_loopback_redirect() {
    let challenge: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let ch2 = challenge.clone();
    let (base, log) = serve(move |_, s, _| match s.path.as_str() {
        "/identity/connect/authorize" => {
            let q = &s.query;
            assert_eq!(q["response_type"], "code");
            assert_eq!(q["client_id"], "CLIENT-ID");
            assert_eq!(q["code_challenge_method"], "S256");
            *ch2.lock().unwrap() = Some((q["code_challenge"].clone(), q["redirect_uri"].clone()));
            let mut to = Url::parse(&q["redirect_uri"]).unwrap();
            to.query_pairs_mut()
                .append_pair("code", "the-code")
                .append_pair("state", &q["state"]);
            Reply {
                status: 302,
                headers: vec![("location", to.to_string())],
                body: String::new(),
                delay: Duration::ZERO,
            }
        }
        "/connect/token" => {
            let f = s.form();
            let (want, redirect) = ch2.lock().unwrap().clone().unwrap();
            let got = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(f["code_verifier"].as_bytes()));
            if f["grant_type"] == "authorization_code"
                && f["code"] == "the-code"
                && got == want
                && f["redirect_uri"] == redirect
                && f["client_id"] == "CLIENT-ID"
            {
                reply(
                    200,
                    json!({"access_token":"at-1","refresh_token":"rt-1","expires_in":1800,"token_type":"Bearer","scope":"openid offline_access"}),
                )
            } else {
                reply(400, json!({"error":"invalid_grant"}))
            }
        }
        _ => reply(404, json!({})),
    })
    .await;
    let auth = xero_auth(&base);
    let listener = LoopbackListener::bind("/callback").await.unwrap();
    let tokens = auth
        .sign_in_with_loopback(listener, Duration::from_secs(5), |url| {
            // The "browser": follow the authorize redirect to the loopback listener.
            let url = url.clone();
            tokio::spawn(async move {
                let c = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap();
                let r = c.get(url).send().await.unwrap();
                let loc = r.headers()["location"]
                    .to_str()
                    .unwrap()
                    .replace("localhost", "127.0.0.1");
                c.get(loc).send().await.unwrap();
            });
        })
        .await
        .unwrap();
    assert_eq!(tokens.access_token.secret(), "at-1");
    assert_eq!(tokens.refresh_token.secret(), "rt-1");
    assert_eq!(tokens.expires_in, Duration::from_secs(1800));
    assert_eq!(seen(&log).len(), 2);

    // The pasted-URL path checks the state.
    let req = auth.start(&Url::parse("http://localhost:1/callback").unwrap());
    let err = auth
        .complete_pasted(req, "http://localhost:1/callback?code=x&state=wrong")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::OAuth);
    assert!(err.to_string().contains("state mismatch"), "{err}");
    assert_eq!(
        seen(&log).len(),
        2,
        "no code exchange for a foreign redirect"
    );
}
