//! The sim's own machinery over real TCP: the control surface, fault injection in each API's
//! error shape, dropped connections, statistics, and the shared HTTP core's retry against it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cspsync::api::error::{Api, ErrorKind, VendorError};
use cspsync::api::http::{HttpCore, Request, build_client, endpoint};
use cspsync::api::limit::Limits;
use cspsync::sim::{self, FaultSpec, World};
use serde_json::Value;

async fn start(spec: &str) -> sim::SimHandle {
    let faults = FaultSpec::parse(spec).expect("fault spec");
    sim::start(World::default(), faults, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sim starts")
}

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let err = sim::start(
        World::default(),
        FaultSpec::default(),
        "0.0.0.0:0".parse().unwrap(),
    )
    .await
    .expect_err("non-loopback refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test]
async fn control_surface_reports_urls_state_and_faults() {
    let sim = start("").await;
    let urls = sim.urls();
    let http = reqwest::Client::new();
    let got: Value = http
        .get(format!("{}/urls", urls.control))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["graph"], Value::String(urls.graph.clone()));
    assert!(urls.graph.ends_with("/graph/v1.0"));
    assert!(urls.autotask.ends_with("/autotask/atservicesrest"));

    let state: Value = http
        .get(format!("{}/state", urls.control))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(state.get("world").is_some(), "state dump has the world");

    // Change faults at run time with the text form, read them back as JSON.
    let r = http
        .post(format!("{}/faults", urls.control))
        .body("latency=5ms,graph.429=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let f: Value = http
        .get(format!("{}/faults", urls.control))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f["all"]["latency_ms"], 5);
    assert_eq!(f["per_api"]["graph"]["rate_429"], 1.0);

    // A bad spec is refused with the reason.
    let r = http
        .post(format!("{}/faults", urls.control))
        .body("429=7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("between 0 and 1"));
}

#[tokio::test]
async fn injected_429s_use_each_apis_own_shape() {
    let sim = start("429=1,retry-after=3,limits=off").await;
    let urls = sim.urls();
    let http = reqwest::Client::new();

    let r = http
        .get(format!("{}/users", urls.graph))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "TooManyRequests");

    // Partner Center's 429 body differs from its normal error shape (§3.6).
    let r = http
        .get(format!("{}/customers", urls.partnercenter))
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["statusCode"], 429);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("Try again in 3 seconds")
    );

    // Xero names the limit that was hit (§7.8).
    let r = http
        .get(format!("{}/api.xro/2.0/Contacts", urls.xero_api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("x-rate-limit-problem"));

    let r = http
        .get(format!(
            "{}/zone1/atservicesrest/v1.0/Companies/query",
            urls.autotask.trim_end_matches("/atservicesrest")
        ))
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert!(b["errors"].is_array());

    // The control surface is never faulted, and it counted the throttles.
    let stats: Value = http
        .get(format!("{}/stats", urls.control))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["GET /graph/v1.0/users"]["throttled"], 1);
    assert_eq!(stats["GET /graph/v1.0/users"]["calls"], 1);
}

#[tokio::test]
async fn dropped_connections_close_without_a_response() {
    let sim = start("drop=1").await;
    let http = reqwest::Client::new();
    let err = http
        .get(format!("{}/organization", sim.urls().graph))
        .send()
        .await
        .expect_err("connection dropped");
    assert!(!err.is_status());
    let stats: Value = http
        .get(format!("{}/stats", sim.urls().control))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["GET /graph/v1.0/organization"]["dropped"], 1);
}

#[tokio::test]
async fn server_errors_are_5xx() {
    let sim = start("5xx=1").await;
    let r = reqwest::get(format!("{}/AccessKeyRequest", sim.urls().dickerdata))
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
}

fn no_body(_: u16, _: &http::HeaderMap, _: &[u8]) -> VendorError {
    VendorError::default()
}

/// The shared HTTP core retries throttling and dropped connections on an idempotent GET, then
/// reports what finally came back — here Graph's 400 for a path it does not serve.
#[tokio::test]
async fn http_core_retries_through_faults() {
    let sim = start("429=0.5,drop=0.3,retry-after=0,seed=3,limits=off").await;
    let core = HttpCore::new(
        Api::Graph,
        build_client(Duration::from_secs(5)),
        Limits::concurrency(4),
        no_body,
    )
    .with_retry(cspsync::api::http::RetryPolicy {
        max_attempts: 30,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(5),
    });
    let base = url::Url::parse(&sim.urls().graph).unwrap();
    for _ in 0..5 {
        let err = core
            .send(Request::get(endpoint(&base, "no-such-endpoint")))
            .await
            .expect_err("400 in the end");
        assert_eq!(err.kind, ErrorKind::Rejected, "{err}");
        assert_eq!(err.status, Some(400), "{err}");
    }
    let s = core.stats();
    assert_eq!(s.requests, 5);
    assert!(s.retries > 0, "faults forced retries: {s:?}");
    assert_eq!(s.attempts, s.requests + s.retries);
}

/// A non-idempotent write is not re-sent after the connection dropped: the error says it may
/// have been applied.
#[tokio::test]
async fn http_core_does_not_resend_a_write_after_a_drop() {
    let sim = start("drop=1").await;
    let core = HttpCore::new(
        Api::Autotask,
        build_client(Duration::from_secs(5)),
        Limits::concurrency(4),
        no_body,
    );
    let base = url::Url::parse(&sim.urls().autotask).unwrap();
    let req = Request::new(
        reqwest::Method::POST,
        endpoint(&base, "v1.0/ContractServiceAdjustments"),
    )
    .json(&serde_json::json!({"unitChange": 1}));
    let err = core.send(req).await.expect_err("dropped");
    assert!(
        matches!(
            err.kind,
            ErrorKind::Transport {
                maybe_applied: true
            }
        ),
        "{err:?}"
    );
    assert_eq!(core.stats().attempts, 1);
}

/// A response the caller marks final (Xero's daily limit) is not retried.
#[tokio::test]
async fn http_core_gives_up_when_told() {
    let sim = start("xero-api.429=1,retry-after=0").await;
    fn on_rate_problem(status: u16, h: &http::HeaderMap) -> bool {
        status == 429 && h.contains_key("x-rate-limit-problem")
    }
    let core = HttpCore::new(
        Api::Xero,
        build_client(Duration::from_secs(5)),
        Limits::concurrency(4),
        no_body,
    )
    .with_give_up(on_rate_problem);
    let base = url::Url::parse(&sim.urls().xero_api).unwrap();
    let err = core
        .send(Request::get(endpoint(&base, "api.xro/2.0/Contacts")))
        .await
        .expect_err("429");
    assert!(matches!(err.kind, ErrorKind::RateLimited { .. }), "{err:?}");
    assert_eq!(core.stats().attempts, 1);
}

/// The sim counts a request against Xero's 5-concurrent limit for as long as it is being
/// answered (latency included), releases the slot when the client goes away mid-request, and
/// the limit is per organisation.
#[tokio::test]
async fn concurrency_limits_hold_for_the_whole_request_and_release_on_disconnect() {
    let sim = start("latency=300ms").await;
    let url = format!("{}/api.xro/2.0/Contacts", sim.urls().xero_api);
    let http = reqwest::Client::new();
    // Seven at once for one organisation: two are refused as `concurrent` (§7.8).
    let mut tasks = Vec::new();
    for _ in 0..7 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .get(url)
                .header("xero-tenant-id", "org-1")
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers()
                    .get("x-rate-limit-problem")
                    .map(|v| v.to_str().unwrap().to_string()),
            )
        }));
    }
    let mut refused = 0;
    for t in tasks {
        let (status, problem) = t.await.unwrap();
        if status == 429 {
            assert_eq!(problem.as_deref(), Some("concurrent"));
            refused += 1;
        }
    }
    assert_eq!(refused, 2);
    // Clients that give up mid-request do not keep their slots.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    for _ in 0..10 {
        let _ = impatient
            .get(&url)
            .header("xero-tenant-id", "org-2")
            .send()
            .await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = http
        .get(&url)
        .header("xero-tenant-id", "org-2")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 429, "a slot leaked");
}
