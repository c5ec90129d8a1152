//! The Microsoft clients (Entra, Graph, Partner Center) over real loopback TCP, against small
//! axum servers defined here that serve the wire bodies of reference/external-apis.md §1–§3.
//! (The shared simulator is written independently; these servers only script the exchanges
//! each test needs, faults included.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use url::Url;

use cspsync::api::error::{Api, ErrorKind};
use cspsync::api::graph::GraphClient;
use cspsync::api::http::{StaticToken, build_client};
use cspsync::api::partnercenter::{PartnerCenterClient, Subscription};
use cspsync::auth::entra::{DeviceFlowStop, EntraClient, RefreshToken, Resource, Session};
use cspsync::auth::loopback::{LoopbackListener, Redirect};

// ----- harness ------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: String,
    at: Instant,
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
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn record(log: &Log, method: &str, uri: &Uri, headers: &HeaderMap, body: &str) -> Seen {
    let s = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers.clone(),
        body: body.to_string(),
        at: Instant::now(),
    };
    log.lock().unwrap().push(s.clone());
    s
}

async fn bind() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", l.local_addr().unwrap());
    (l, origin)
}

fn spawn(listener: TcpListener, router: Router) {
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
}

fn http() -> reqwest::Client {
    build_client(Duration::from_secs(10))
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        serde_json::to_string(&v).unwrap(),
    )
        .into_response()
}

fn jwt(claims: Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","kid":"k"}"#);
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{h}.{p}.c2ln")
}

fn oauth_error(error: &str, aadsts: u32, text: &str) -> Value {
    json!({
        "error": error,
        "error_description": format!("AADSTS{aadsts}: {text}\r\nTrace ID: 0000aaaa-11bb\r\nCorrelation ID: aaaa0000\r\nTimestamp: 2025-01-01 00:00:00Z"),
        "error_codes": [aadsts],
        "timestamp": "2025-01-01 00:00:00Z",
        "trace_id": "0000aaaa-11bb",
        "correlation_id": "aaaa0000"
    })
}

fn token_body(access: &str, refresh: Option<&str>, expires_in: u64) -> Value {
    let mut v = json!({
        "token_type": "Bearer",
        "scope": "https://graph.microsoft.com/User.Read https://graph.microsoft.com/Organization.Read.All",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access,
        "id_token": jwt(json!({
            "tid": "84841066-274d-4ec0-a5c1-276be684bdd3",
            "oid": "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e",
            "preferred_username": "admin@contoso.com",
            "name": "MOD Administrator",
            "amr": ["pwd", "mfa"],
            "ver": "2.0"
        })),
    });
    if let Some(r) = refresh {
        v["refresh_token"] = json!(r);
    }
    v
}

// ----- Entra test server ----------------------------------------------------------------------

/// A scripted identity platform (§1): the device-code endpoint hands out one code; the token
/// endpoint answers from `script` (then `fallback`), or, for the refresh grant, mints
/// `at-N`/`rt-N+1` pairs.
struct Entra {
    log: Log,
    script: Mutex<VecDeque<(StatusCode, Value)>>,
    fallback: Mutex<Option<(StatusCode, Value)>>,
    expires_in: u64,
    refreshes: AtomicUsize,
    token_delay: Duration,
    access_lifetime: u64,
    challenge: Mutex<Option<String>>,
}

impl Entra {
    fn new() -> Entra {
        Entra {
            log: Log::default(),
            script: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(None),
            expires_in: 900,
            refreshes: AtomicUsize::new(0),
            token_delay: Duration::ZERO,
            access_lifetime: 3599,
            challenge: Mutex::new(None),
        }
    }

    fn token_requests(&self) -> Vec<Seen> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.ends_with("/oauth2/v2.0/token"))
            .cloned()
            .collect()
    }
}

async fn entra_devicecode(
    State(st): State<Arc<Entra>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    record(&st.log, "POST", &uri, &headers, &body);
    // §1.2 example body; interval 1 s so the tests stay fast.
    json_response(
        StatusCode::OK,
        json!({"device_code":"GMMhmHCXhWEzkobqIHGG_EnNYYsAkukHspeYUk9E8","user_code":"FJXK7QZRL",
               "verification_uri":"https://microsoft.com/devicelogin","expires_in":st.expires_in,"interval":1,
               "message":"To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code FJXK7QZRL to authenticate."}),
    )
}

async fn entra_token(
    State(st): State<Arc<Entra>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let seen = record(&st.log, "POST", &uri, &headers, &body);
    let form = seen.form();
    if !st.token_delay.is_zero() {
        tokio::time::sleep(st.token_delay).await;
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") if st.script.lock().unwrap().is_empty() => {
            let n = st.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
            json_response(
                StatusCode::OK,
                token_body(
                    &format!("at-{n}"),
                    Some(&format!("rt-{}", n + 1)),
                    st.access_lifetime,
                ),
            )
        }
        Some("authorization_code") => {
            // §1.3: PKCE verifier must match the challenge; a public client sends no secret.
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let digest = {
                use sha2::Digest;
                URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
            };
            let expected = st.challenge.lock().unwrap().clone();
            if form.contains_key("client_secret") || Some(digest) != expected {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    oauth_error("invalid_grant", 501481, "The Code_Verifier does not match."),
                );
            }
            if form.get("code").map(String::as_str) != Some("the-code") {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    oauth_error(
                        "invalid_grant",
                        70000,
                        "The provided authorization code is invalid.",
                    ),
                );
            }
            json_response(StatusCode::OK, token_body("at-code", Some("rt-code"), 3599))
        }
        _ => {
            let next = st.script.lock().unwrap().pop_front();
            let (status, v) = next
                .or_else(|| st.fallback.lock().unwrap().clone())
                .unwrap_or((
                    StatusCode::BAD_REQUEST,
                    oauth_error("invalid_request", 900144, "No script."),
                ));
            json_response(status, v)
        }
    }
}

async fn start_entra(st: Arc<Entra>) -> String {
    let (l, origin) = bind().await;
    let router = Router::new()
        .route(
            "/entra/{tenant}/oauth2/v2.0/devicecode",
            post(entra_devicecode),
        )
        .route("/entra/{tenant}/oauth2/v2.0/token", post(entra_token))
        .with_state(st);
    spawn(l, router);
    format!("{origin}/entra")
}

fn entra_client(authority: &str) -> EntraClient {
    EntraClient::new(Url::parse(authority).unwrap(), "app-client-id", http())
}

fn pending() -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        oauth_error(
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        ),
    )
}

// ----- device code (§1.2) ---------------------------------------------------------------------

#[tokio::test]
async fn device_code_pending_then_slow_down_then_success() {
    let st = Arc::new(Entra::new());
    st.script.lock().unwrap().extend([
        pending(),
        (
            StatusCode::BAD_REQUEST,
            json!({"error":"slow_down","error_description":"Slow down."}),
        ),
        (
            StatusCode::OK,
            token_body("at-device", Some("rt-device"), 3599),
        ),
    ]);
    let authority = start_entra(st.clone()).await;
    // slow_down adds 5 s in production (RFC 8628, unit-tested); 1 s here keeps the test short.
    let client = entra_client(&authority).with_slow_down_step(Duration::from_secs(1));

    let start = client.start_device_code().await.unwrap();
    assert_eq!(start.user_code, "FJXK7QZRL");
    assert_eq!(start.verification_uri, "https://microsoft.com/devicelogin");
    assert_eq!(start.interval, Duration::from_secs(1));
    assert!(start.message.contains("FJXK7QZRL"));
    assert!(
        !format!("{start:?}").contains("GMMhmHCX"),
        "device code in Debug"
    );

    let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let tokens = client.wait_for_device_code(&start, cancel).await.unwrap();
    assert_eq!(tokens.access_token.secret(), "at-device");
    assert_eq!(tokens.refresh_token.as_ref().unwrap().secret(), "rt-device");
    let claims = tokens.id_claims().unwrap();
    assert_eq!(claims.tid, "84841066-274d-4ec0-a5c1-276be684bdd3");
    assert!(claims.has_mfa());

    let log = st.log.lock().unwrap().clone();
    let dc = &log[0];
    assert_eq!(dc.path, "/entra/organizations/oauth2/v2.0/devicecode");
    assert_eq!(
        dc.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let f = dc.form();
    assert_eq!(f["client_id"], "app-client-id");
    assert!(f["scope"].contains("https://graph.microsoft.com/User.Read"));
    assert!(f["scope"].ends_with("openid profile offline_access"));

    let polls = st.token_requests();
    assert_eq!(polls.len(), 3);
    for p in &polls {
        let f = p.form();
        assert_eq!(
            f["grant_type"],
            "urn:ietf:params:oauth:grant-type:device_code"
        );
        assert_eq!(f["client_id"], "app-client-id");
        assert_eq!(
            f["device_code"],
            "GMMhmHCXhWEzkobqIHGG_EnNYYsAkukHspeYUk9E8"
        );
    }
    // The server's interval is honoured, and slow_down widened it for the next poll.
    let first_gap = polls[1].at - polls[0].at;
    let second_gap = polls[2].at - polls[1].at;
    assert!(first_gap >= Duration::from_millis(950), "{first_gap:?}");
    assert!(first_gap < Duration::from_millis(1900), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(1950), "{second_gap:?}");
}

async fn device_flow_ending_with(answer: (StatusCode, Value)) -> (cspsync::api::ApiError, usize) {
    let st = Arc::new(Entra::new());
    st.script.lock().unwrap().push_back(answer);
    let authority = start_entra(st.clone()).await;
    let client = entra_client(&authority);
    let start = client.start_device_code().await.unwrap();
    let (_tx, cancel) = tokio::sync::watch::channel(false);
    let e = client
        .wait_for_device_code(&start, cancel)
        .await
        .unwrap_err();
    let polls = st.token_requests().len();
    (e, polls)
}

#[tokio::test]
async fn device_code_declined_is_a_clear_stop() {
    let (e, polls) = device_flow_ending_with((
        StatusCode::BAD_REQUEST,
        oauth_error("authorization_declined", 70017, "The user declined."),
    ))
    .await;
    assert_eq!(polls, 1);
    assert_eq!(DeviceFlowStop::of(&e), Some(DeviceFlowStop::Declined));
    assert_eq!(e.kind, ErrorKind::OAuth);
    assert!(e.to_string().contains("declined in the browser"), "{e}");
}

#[tokio::test]
async fn device_code_expired_is_a_clear_stop() {
    let (e, _) = device_flow_ending_with((
        StatusCode::BAD_REQUEST,
        oauth_error("expired_token", 70019, "Verification code expired."),
    ))
    .await;
    assert_eq!(DeviceFlowStop::of(&e), Some(DeviceFlowStop::Expired));
    assert!(e.to_string().contains("start the sign-in again"), "{e}");

    let (e, _) = device_flow_ending_with((
        StatusCode::BAD_REQUEST,
        oauth_error("bad_verification_code", 70018, "Invalid verification code."),
    ))
    .await;
    assert_eq!(
        DeviceFlowStop::of(&e),
        Some(DeviceFlowStop::BadVerificationCode)
    );
}

#[tokio::test]
async fn device_code_expires_locally_when_the_server_keeps_saying_pending() {
    let mut e = Entra::new();
    e.expires_in = 2;
    let st = Arc::new(e);
    *st.fallback.lock().unwrap() = Some(pending());
    let authority = start_entra(st.clone()).await;
    let client = entra_client(&authority);
    let start = client.start_device_code().await.unwrap();
    let (_tx, cancel) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    let e = client
        .wait_for_device_code(&start, cancel)
        .await
        .unwrap_err();
    assert_eq!(DeviceFlowStop::of(&e), Some(DeviceFlowStop::Expired));
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(!st.token_requests().is_empty());
}

#[tokio::test]
async fn device_code_wait_is_cancellable() {
    let st = Arc::new(Entra::new());
    *st.fallback.lock().unwrap() = Some(pending());
    let authority = start_entra(st.clone()).await;
    let client = entra_client(&authority);
    let start = client.start_device_code().await.unwrap();
    let (tx, cancel) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(true).unwrap();
    });
    let e = client
        .wait_for_device_code(&start, cancel)
        .await
        .unwrap_err();
    assert_eq!(DeviceFlowStop::of(&e), Some(DeviceFlowStop::Cancelled));
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(st.token_requests().len(), 0, "no poll after cancelling");
}

// ----- auth code + PKCE (§1.3) ----------------------------------------------------------------

#[tokio::test]
async fn auth_code_with_pkce_over_the_loopback_redirect() {
    let st = Arc::new(Entra::new());
    let authority = start_entra(st.clone()).await;
    let client = entra_client(&authority);
    let listener = LoopbackListener::bind("/").await.unwrap();
    let (url_tx, url_rx) = tokio::sync::oneshot::channel::<Url>();
    let c2 = client.clone();
    let signin = tokio::spawn(async move {
        c2.sign_in_with_browser(
            listener,
            Some("admin@contoso.com"),
            Duration::from_secs(5),
            |u| {
                url_tx.send(u.clone()).unwrap();
            },
        )
        .await
    });
    // Play the browser: read the authorize URL, then land on the redirect URI.
    let url = url_rx.await.unwrap();
    assert!(
        url.path()
            .ends_with("/entra/organizations/oauth2/v2.0/authorize")
    );
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["prompt"], "select_account");
    assert_eq!(q["login_hint"], "admin@contoso.com");
    *st.challenge.lock().unwrap() = Some(q["code_challenge"].clone());
    let redirect = Url::parse(&q["redirect_uri"]).unwrap();
    assert_eq!(redirect.host_str(), Some("localhost"));
    let landing = format!(
        "http://127.0.0.1:{}/?code=the-code&state={}",
        redirect.port().unwrap(),
        q["state"]
    );
    let page = reqwest::get(&landing).await.unwrap();
    assert_eq!(page.status(), 200);
    let tokens = signin.await.unwrap().unwrap();
    assert_eq!(tokens.access_token.secret(), "at-code");
    assert_eq!(tokens.resource, Some(Resource::Graph));

    let redeem = &st.token_requests()[0];
    let f = redeem.form();
    assert_eq!(f["grant_type"], "authorization_code");
    assert_eq!(f["redirect_uri"], q["redirect_uri"]);
    assert!(!f.contains_key("client_secret"));

    // The sign-in's access token is cached: the first Graph token costs no request.
    let session = Session::from_sign_in(client, &tokens).unwrap();
    let t = session
        .token_source(Resource::Graph, None)
        .token(false)
        .await
        .unwrap();
    assert_eq!(t, "at-code");
    assert_eq!(st.token_requests().len(), 1);
    assert_eq!(session.refresh_token().secret(), "rt-code");
}

#[tokio::test]
async fn auth_code_with_a_foreign_state_is_refused_without_redeeming() {
    let st = Arc::new(Entra::new());
    let authority = start_entra(st.clone()).await;
    let client = entra_client(&authority);
    let req = client
        .begin_auth_code(&Url::parse("http://localhost:1/").unwrap(), None)
        .unwrap();
    let pasted = Redirect::from_url("http://localhost:1/?code=the-code&state=forged").unwrap();
    let e = client.finish_auth_code(req, pasted).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::OAuth);
    assert!(e.to_string().contains("state does not match"), "{e}");
    assert!(st.token_requests().is_empty());
}

// ----- refresh and the session (§1.4) ---------------------------------------------------------

#[tokio::test]
async fn graph_401_refreshes_once_and_the_rotated_refresh_token_is_kept() {
    let st = Arc::new(Entra::new());
    let authority = start_entra(st.clone()).await;
    let session = Session::new(entra_client(&authority), RefreshToken::new("rt-1".into()));
    let mut rt_watch = session.watch_refresh_token();

    // Graph accepts only at-2: the first token (at-1) is "expired" server-side.
    let graph_log = Log::default();
    let gl = graph_log.clone();
    let (l, origin) = bind().await;
    let router = Router::new().route(
        "/v1.0/organization",
        get(move |uri: Uri, headers: HeaderMap| {
            let gl = gl.clone();
            async move {
                let s = record(&gl, "GET", &uri, &headers, "");
                if s.header("authorization") == Some("Bearer at-2") {
                    json_response(StatusCode::OK, json!({"value":[{"id":"84841066-274d-4ec0-a5c1-276be684bdd3","displayName":"Contoso","verifiedDomains":[]}]}))
                } else {
                    json_response(StatusCode::UNAUTHORIZED, json!({"error":{"code":"InvalidAuthenticationToken","message":"Access token has expired or is not yet valid.","innerError":{"request-id":"r1"}}}))
                }
            }
        }),
    );
    spawn(l, router);
    let graph = GraphClient::new(
        Url::parse(&format!("{origin}/v1.0")).unwrap(),
        http(),
        session.token_source(Resource::Graph, None),
    );
    let org = graph.organization().await.unwrap();
    assert_eq!(org.display_name.as_deref(), Some("Contoso"));

    let refreshes = st.token_requests();
    assert_eq!(refreshes.len(), 2, "initial token + one forced refresh");
    assert_eq!(refreshes[0].form()["refresh_token"], "rt-1");
    // The second refresh used the token the first one returned (rotation, §1.4).
    assert_eq!(refreshes[1].form()["refresh_token"], "rt-2");
    let scope = refreshes[0].form()["scope"].clone();
    assert!(
        scope.contains("https://graph.microsoft.com/User.Read.All"),
        "{scope}"
    );
    assert_eq!(session.refresh_token().secret(), "rt-3");
    assert!(rt_watch.has_changed().unwrap());
    assert_eq!(rt_watch.borrow_and_update().secret(), "rt-3");
    assert_eq!(graph.stats().refreshes, 1);
    let auths: Vec<_> = graph_log
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.header("authorization").unwrap().to_string())
        .collect();
    assert_eq!(auths, ["Bearer at-1", "Bearer at-2"]);

    // The refreshed token is cached: another call needs no refresh.
    graph.organization().await.unwrap();
    assert_eq!(st.token_requests().len(), 2);
}

#[tokio::test]
async fn session_shares_one_refresh_and_caches_per_resource_and_tenant() {
    let mut e = Entra::new();
    e.token_delay = Duration::from_millis(150);
    let st = Arc::new(e);
    let authority = start_entra(st.clone()).await;
    let session = Session::new(entra_client(&authority), RefreshToken::new("rt-1".into()));

    // 20 concurrent callers, one refresh.
    let src = session.token_source(Resource::Graph, None);
    let tokens = futures_util::future::join_all((0..20).map(|_| src.token(false))).await;
    assert!(tokens.iter().all(|t| t.as_deref().ok() == Some("at-1")));
    assert_eq!(st.token_requests().len(), 1);

    // Twenty requests meeting the same 401 force one refresh between them.
    let forced = futures_util::future::join_all((0..20).map(|_| src.token(true))).await;
    assert!(
        forced.iter().all(|t| t.as_deref().ok() == Some("at-2")),
        "{forced:?}"
    );
    assert_eq!(st.token_requests().len(), 2);

    // Partner Center in the sign-in tenant, Graph in a customer tenant: their own tokens.
    let pc = session
        .token_source(Resource::PartnerCenter, None)
        .token(false)
        .await
        .unwrap();
    let cust = session
        .token_source(
            Resource::Graph,
            Some("b44bb1fb-c595-45b0-9e09-d657365580bf"),
        )
        .token(false)
        .await
        .unwrap();
    assert_ne!(pc, cust);
    let reqs = st.token_requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[2].path, "/entra/organizations/oauth2/v2.0/token");
    assert_eq!(
        reqs[2].form()["scope"],
        "https://api.partnercenter.microsoft.com/user_impersonation offline_access"
    );
    assert_eq!(
        reqs[3].path,
        "/entra/b44bb1fb-c595-45b0-9e09-d657365580bf/oauth2/v2.0/token"
    );
    // Cached: asking again costs nothing.
    session
        .token_source(Resource::PartnerCenter, None)
        .token(false)
        .await
        .unwrap();
    assert_eq!(st.token_requests().len(), 4);
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_before_it_expires() {
    let mut e = Entra::new();
    e.access_lifetime = 1;
    let st = Arc::new(e);
    let authority = start_entra(st.clone()).await;
    let session = Session::new(entra_client(&authority), RefreshToken::new("rt-1".into()));
    let src = session.token_source(Resource::Graph, None);
    assert_eq!(src.token(false).await.unwrap(), "at-1");
    assert_eq!(src.token(false).await.unwrap(), "at-1");
    // A 1 s token is reused for half its life, then replaced.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(src.token(false).await.unwrap(), "at-2");
}

#[tokio::test]
async fn a_revoked_refresh_token_says_sign_in_again() {
    let st = Arc::new(Entra::new());
    st.script.lock().unwrap().push_back((
        StatusCode::BAD_REQUEST,
        oauth_error(
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity.",
        ),
    ));
    let authority = start_entra(st.clone()).await;
    let session = Session::new(entra_client(&authority), RefreshToken::new("rt-old".into()));
    let graph = GraphClient::new(
        Url::parse("http://127.0.0.1:9/v1.0").unwrap(),
        http(),
        session.token_source(Resource::Graph, None),
    );
    let e = graph.organization().await.unwrap_err();
    assert_eq!(e.api, Api::Entra);
    assert_eq!(e.kind, ErrorKind::Unauthorized);
    assert_eq!(e.hint(), "Sign in again.");
    let text = e.to_string();
    assert!(text.contains("AADSTS700082"), "{text}");
    assert!(!text.contains("Trace ID"), "{text}");
    assert!(!text.contains("rt-old"), "{text}");
}

// ----- Graph (§2) -----------------------------------------------------------------------------

struct GraphPages {
    origin: String,
    log: Log,
}

const SELECT: &str = "$select=id,displayName,userPrincipalName,mail,accountEnabled,userType,assignedLicenses,jobTitle&$top=2";

async fn graph_users(
    State(st): State<Arc<GraphPages>>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    record(&st.log, "GET", &uri, &headers, "");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer graph-token") {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error":{"code":"InvalidAuthenticationToken","message":"Access token is empty."}}),
        );
    }
    let q = q.unwrap_or_default();
    let user = |id: &str, name: &str| {
        json!({"id": id, "displayName": name, "userPrincipalName": format!("{}@contoso.com", name.to_lowercase()),
               "accountEnabled": true, "userType": "Member", "mail": null,
               "assignedLicenses": [{"disabledPlans": [], "skuId": "c7df2760-2c81-4ef7-b578-5b5392b571df"}]})
    };
    let next = |tok: &str| format!("{}/v1.0/users?{SELECT}&$skiptoken={tok}", st.origin);
    // §2.2: nextLink is absolute, carries the original query and a $skiptoken; a page may be
    // empty; the last page has no nextLink.
    let (value, next_link) = if !q.contains("$skiptoken") {
        (
            vec![user("u1", "Adele"), user("u2", "Alex")],
            Some(next("RFNwdAIAAQ-2")),
        )
    } else if q.ends_with("$skiptoken=RFNwdAIAAQ-2") {
        (vec![], Some(next("RFNwdAIAAQ-3")))
    } else if q.ends_with("$skiptoken=RFNwdAIAAQ-3") {
        (
            vec![user("u3", "Diego"), user("u4", "Grady")],
            Some(next("RFNwdAIAAQ-4")),
        )
    } else if q.ends_with("$skiptoken=RFNwdAIAAQ-4") {
        (
            vec![
                json!({"id":"u5","displayName":"Conf Room Adams","accountEnabled":false,"assignedLicenses":[]}),
            ],
            None,
        )
    } else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error":{"code":"Request_BadRequest","message":"Bad skip token."}}),
        );
    };
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,displayName)",
        "value": value,
    });
    if let Some(n) = next_link {
        body["@odata.nextLink"] = json!(n);
    }
    json_response(StatusCode::OK, body)
}

async fn start_graph_users() -> (GraphClient, Arc<GraphPages>) {
    let (l, origin) = bind().await;
    let st = Arc::new(GraphPages {
        origin: origin.clone(),
        log: Log::default(),
    });
    let router = Router::new()
        .route("/v1.0/users", get(graph_users))
        .with_state(st.clone());
    spawn(l, router);
    let g = GraphClient::new(
        Url::parse(&format!("{origin}/v1.0")).unwrap(),
        http(),
        Arc::new(StaticToken("graph-token".into())),
    );
    (g, st)
}

#[tokio::test]
async fn graph_users_follow_next_link_verbatim_across_pages() {
    let (g, st) = start_graph_users().await;
    let users = g.users(&[], 2).await.unwrap();
    let ids: Vec<_> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["u1", "u2", "u3", "u4", "u5"]);
    assert_eq!(users[0].assigned_licenses.as_ref().unwrap().len(), 1);
    assert_eq!(users[4].account_enabled, Some(false));
    assert_eq!(users[4].user_principal_name, None);

    let log = st.log.lock().unwrap().clone();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0].query.as_deref(), Some(SELECT));
    for (i, s) in log.iter().enumerate().skip(1) {
        assert_eq!(
            s.query.as_deref(),
            Some(format!("{SELECT}&$skiptoken=RFNwdAIAAQ-{}", i + 1).as_str()),
            "page {i} must be the nextLink verbatim"
        );
        assert_eq!(s.header("authorization"), Some("Bearer graph-token"));
    }

    // The pager hands out the same pages one at a time.
    let mut pager = g.users_pager(&[], 2).unwrap();
    let mut sizes = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        sizes.push(page.len());
    }
    assert_eq!(sizes, [2, 0, 2, 1]);
    assert!(pager.next_page().await.unwrap().is_none());

    // An out-of-range page size is refused before any request.
    let before = st.log.lock().unwrap().len();
    let e = g.users(&[], 1000).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.to_string().contains("1 to 999"), "{e}");
    assert_eq!(st.log.lock().unwrap().len(), before);
}

#[tokio::test]
async fn graph_organization_skus_and_directory_subscriptions() {
    let (l, origin) = bind().await;
    let o2 = origin.clone();
    let router = Router::new()
        .route(
            "/v1.0/organization",
            get(|| async {
                json_response(StatusCode::OK, json!({"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#organization",
                 "value":[{"id":"84841066-274d-4ec0-a5c1-276be684bdd3","displayName":"Contoso","tenantType":"AAD",
                   "countryLetterCode":"AU","createdDateTime":"2021-08-02T10:30:06Z",
                   "verifiedDomains":[{"capabilities":"Email, OfficeCommunicationsOnline","isDefault":true,
                      "isInitial":true,"name":"contoso.onmicrosoft.com","type":"Managed"}]}]}))
            }),
        )
        .route(
            "/v1.0/subscribedSkus",
            get(|| async {
                json_response(StatusCode::OK, json!({"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#subscribedSkus",
                 "value":[{"accountName":"Contoso","accountId":"f97aeefc-af85-414d-8ae4-b457f90efc40","appliesTo":"User",
                   "capabilityStatus":"Enabled","consumedUnits":14,"id":"48a80680-7326-48cd-9935-b556b81d3a4e_c7df2760-2c81-4ef7-b578-5b5392b571df",
                   "prepaidUnits":{"enabled":25,"lockedOut":0,"suspended":0,"warning":0},
                   "servicePlans":[{"servicePlanId":"8c098270-9dd4-4350-9b30-ba4703f3b36b","servicePlanName":"ADALLOM_S_O365","provisioningStatus":"Success","appliesTo":"Company"}],
                   "skuId":"c7df2760-2c81-4ef7-b578-5b5392b571df","skuPartNumber":"ENTERPRISEPREMIUM",
                   "subscriptionIds":["43d26afe-cb98-48b9-acc4-ae3ef2ac6c51"]}]}))
            }),
        )
        .route(
            "/v1.0/directory/subscriptions",
            get(move |RawQuery(q): RawQuery| {
                let o2 = o2.clone();
                async move {
                    let sub = |id: &str, commerce: &str| json!({"id": id, "commerceSubscriptionId": commerce,
                        "createdDateTime":"2025-07-01T03:14:00Z","isTrial":false,"nextLifecycleDateTime":"2026-06-30T00:00:00Z",
                        "ownerTenantId":"6f3c1f5e-8d2a-4b51-9a8e-1c2b3d4e5f60","skuId":"cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
                        "skuPartNumber":"SPB","status":"Enabled","totalLicenses":25});
                    if q.is_none() {
                        json_response(StatusCode::OK, json!({"value":[sub("s1","c1")],
                            "@odata.nextLink": format!("{o2}/v1.0/directory/subscriptions?$skiptoken=2")}))
                    } else {
                        json_response(StatusCode::OK, json!({"value":[sub("s2","c2")]}))
                    }
                }
            }),
        );
    spawn(l, router);
    let g = GraphClient::new(
        Url::parse(&format!("{origin}/v1.0")).unwrap(),
        http(),
        Arc::new(StaticToken("t".into())),
    );
    let org = g.organization().await.unwrap();
    assert_eq!(org.id, "84841066-274d-4ec0-a5c1-276be684bdd3");
    assert_eq!(org.default_domain(), Some("contoso.onmicrosoft.com"));
    let skus = g.subscribed_skus().await.unwrap();
    assert_eq!(skus[0].sku_part_number, "ENTERPRISEPREMIUM");
    assert_eq!(skus[0].available(), 11);
    let subs = g.directory_subscriptions().await.unwrap();
    let commerce: Vec<_> = subs
        .iter()
        .map(|s| s.commerce_subscription_id.as_deref().unwrap())
        .collect();
    assert_eq!(commerce, ["c1", "c2"]);

    // A customer tenant's client shares the statistics.
    let cust = g.for_tenant("b44bb1fb", Arc::new(StaticToken("t2".into())));
    cust.organization().await.unwrap();
    assert_eq!(g.stats().requests, 5);
}

// ----- Partner Center (§3) ---------------------------------------------------------------------

const PC_SUBS: &str = r#"{"totalCount":1,"items":[{"id":"83ef9d05-4169-4ef9-9657-0e86b1eab1de","offerId":"CFQ7TTC0LCHC:0002:CFQ7TTC0K5DJ",
  "offerName":"Microsoft 365 Business Premium","friendlyName":"M365 BP","quantity":25,"unitType":"Licenses",
  "creationDate":"2025-07-01T03:14:00Z","effectiveStartDate":"2025-07-01T00:00:00Z","commitmentEndDate":"2026-06-30T00:00:00Z",
  "status":"active","autoRenewEnabled":true,"isTrial":false,"billingType":"license","billingCycle":"monthly",
  "termDuration":"P1Y","renewalTermDuration":"P1Y","contractType":"subscription","orderId":"6183db3d-6318-4e52-877e-25806e4971be",
  "links":{"self":{"uri":"/customers/b44bb1fb-c595-45b0-9e09-d657365580bf/subscriptions/83ef9d05-4169-4ef9-9657-0e86b1eab1de","method":"GET","headers":[]}},
  "attributes":{"etag":"W/\"etag-1\"","objectType":"Subscription"}}],
 "attributes":{"objectType":"Collection"}}"#;

fn customer(id: &str, name: &str) -> Value {
    json!({"id": id, "commerceId": "9dd78b4f-f98a-44b4-a2fa-2b82ac58d24c",
           "companyProfile": {"tenantId": id, "domain": format!("{}.onmicrosoft.com", name.to_lowercase()),
             "companyName": name, "attributes": {"objectType": "CustomerCompanyProfile"}},
           "relationshipToPartner": "reseller", "allowDelegatedAccess": true,
           "attributes": {"objectType": "Customer"}})
}

#[tokio::test]
async fn pc_customers_follow_links_next_with_the_continuation_token() {
    let log = Log::default();
    let lg = log.clone();
    let (l, origin) = bind().await;
    let router = Router::new().route(
        "/pc/v1/customers",
        get(move |uri: Uri, headers: HeaderMap| {
            let lg = lg.clone();
            async move {
                let s = record(&lg, "GET", &uri, &headers, "");
                let next = |uri: &str, tok: &str| json!({"uri": uri, "method": "GET",
                    "headers": [{"key": "MS-ContinuationToken", "value": tok}]});
                let q = s.query.clone().unwrap_or_default();
                // §3.2: page 2's link is relative to /v1, page 3's includes /v1: both forms.
                let (items, next) = match (s.header("ms-continuationtoken"), q.as_str()) {
                    (None, "size=2") => (
                        vec![customer("c1", "Contoso"), customer("c2", "Fabrikam")],
                        Some(next("/customers?size=2&seekOperation=Next", "d19617b8-fbe5,0705c4a9-A")),
                    ),
                    (Some("d19617b8-fbe5,0705c4a9-A"), "size=2&seekOperation=Next") => (
                        vec![customer("c3", "Northwind"), customer("c4", "Tailspin")],
                        Some(next("/v1/customers?size=2&seekOperation=Next", "d19617b8-fbe5,0705c4a9-B")),
                    ),
                    (Some("d19617b8-fbe5,0705c4a9-B"), "size=2&seekOperation=Next") => {
                        (vec![customer("c5", "Wingtip")], None)
                    }
                    _ => {
                        return json_response(StatusCode::BAD_REQUEST,
                            json!({"code": 400, "description": "Invalid continuation token.", "data": [], "source": "PartnerFD"}));
                    }
                };
                let mut links = json!({"self": {"uri": "/customers?size=2", "method": "GET", "headers": []}});
                if let Some(n) = next {
                    links["next"] = n;
                }
                json_response(StatusCode::OK, json!({"totalCount": items.len(), "items": items,
                    "continuationToken": "d19617b8-fbe5", "links": links,
                    "attributes": {"objectType": "Collection"}}))
            }
        }),
    );
    spawn(l, router);
    let pc = PartnerCenterClient::new(
        Url::parse(&format!("{origin}/pc/v1")).unwrap(),
        http(),
        Arc::new(StaticToken("pc-token".into())),
    );
    let customers = pc.customers(2).await.unwrap();
    let names: Vec<_> = customers.iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        ["Contoso", "Fabrikam", "Northwind", "Tailspin", "Wingtip"]
    );

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let tokens: Vec<_> = seen
        .iter()
        .map(|s| s.header("ms-continuationtoken"))
        .collect();
    assert_eq!(
        tokens,
        [
            None,
            Some("d19617b8-fbe5,0705c4a9-A"),
            Some("d19617b8-fbe5,0705c4a9-B")
        ]
    );
    let correlation = pc.correlation_id().to_string();
    let mut request_ids = std::collections::HashSet::new();
    for s in &seen {
        assert_eq!(s.header("authorization"), Some("Bearer pc-token"));
        assert_eq!(s.header("accept"), Some("application/json"));
        assert_eq!(s.header("ms-contract-version"), Some("v1"));
        assert_eq!(s.header("ms-correlationid"), Some(correlation.as_str()));
        let rid = s.header("ms-requestid").unwrap();
        assert!(uuid::Uuid::parse_str(rid).is_ok(), "{rid}");
        request_ids.insert(rid.to_string());
    }
    assert_eq!(request_ids.len(), 3, "a new MS-RequestId per page");

    // The pager gives the pages one by one.
    let mut pager = pc.customers_pager(2).unwrap();
    let mut sizes = Vec::new();
    while let Some(p) = pager.next_page().await.unwrap() {
        sizes.push(p.len());
    }
    assert_eq!(sizes, [2, 2, 1]);
}

#[tokio::test]
async fn pc_429_waits_retry_after_then_succeeds_with_the_same_request_id() {
    let log = Log::default();
    let lg = log.clone();
    let (l, origin) = bind().await;
    let router = Router::new().route(
        "/v1/customers/{id}/subscriptions",
        get(move |uri: Uri, headers: HeaderMap| {
            let lg = lg.clone();
            async move {
                record(&lg, "GET", &uri, &headers, "");
                if lg.lock().unwrap().len() == 1 {
                    // §3.6: a different body shape for 429.
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "1"), ("content-type", "application/json")],
                        r#"{"statusCode":429,"message":"Rate limit is exceeded. Try again in 1 seconds."}"#,
                    )
                        .into_response()
                } else {
                    ([("content-type", "application/json")], PC_SUBS).into_response()
                }
            }
        }),
    );
    spawn(l, router);
    let pc = PartnerCenterClient::new(
        Url::parse(&format!("{origin}/v1")).unwrap(),
        http(),
        Arc::new(StaticToken("pc-token".into())),
    );
    let t0 = Instant::now();
    let subs = pc
        .subscriptions("b44bb1fb-c595-45b0-9e09-d657365580bf")
        .await
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(subs.len(), 1);
    let s = &subs[0];
    assert_eq!(s.quantity, 25);
    assert_eq!(s.term_duration.as_deref(), Some("P1Y"));
    assert_eq!(s.billing_cycle.as_deref(), Some("monthly"));
    assert_eq!(s.etag(), Some("W/\"etag-1\""));
    assert!(s.is_active());

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].header("ms-requestid"),
        seen[1].header("ms-requestid"),
        "a retry reuses its MS-RequestId (§3.1)"
    );
    let stats = pc.stats();
    assert_eq!((stats.throttled, stats.retries, stats.requests), (1, 1, 1));
}

#[tokio::test]
async fn pc_quantity_patch_sends_the_whole_subscription_and_retries_with_the_callers_request_id() {
    let log = Log::default();
    let lg = log.clone();
    let (l, origin) = bind().await;
    let router = Router::new().route(
        "/v1/customers/{id}/subscriptions/{sub}",
        axum::routing::patch(move |uri: Uri, headers: HeaderMap, body: String| {
            let lg = lg.clone();
            async move {
                record(&lg, "PATCH", &uri, &headers, &body);
                if lg.lock().unwrap().len() == 1 {
                    json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"code": "500", "description": "Transient failure.", "data": [], "source": "PartnerFD"}),
                    )
                } else {
                    (StatusCode::OK, [("content-type", "application/json")], body).into_response()
                }
            }
        }),
    );
    spawn(l, router);
    let pc = PartnerCenterClient::new(
        Url::parse(&format!("{origin}/v1")).unwrap(),
        http(),
        Arc::new(StaticToken("pc-token".into())),
    );
    let list: Value = serde_json::from_str(PC_SUBS).unwrap();
    let sub: Subscription = serde_json::from_value(list["items"][0].clone()).unwrap();
    let rid = uuid::Uuid::new_v4();
    let updated = pc
        .set_subscription_quantity("b44bb1fb-c595-45b0-9e09-d657365580bf", &sub, 30, rid)
        .await
        .unwrap();
    assert_eq!(updated.quantity, 30);
    assert_eq!(updated.id, sub.id);

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "a 500 on an MS-RequestId write is retried");
    for s in &seen {
        assert_eq!(s.method, "PATCH");
        assert_eq!(
            s.path,
            "/v1/customers/b44bb1fb-c595-45b0-9e09-d657365580bf/subscriptions/83ef9d05-4169-4ef9-9657-0e86b1eab1de"
        );
        assert_eq!(s.header("ms-requestid"), Some(rid.to_string().as_str()));
        assert_eq!(s.header("content-type"), Some("application/json"));
        // The whole subscription, with the new quantity and every other field as received.
        let sent: Value = serde_json::from_str(&s.body).unwrap();
        let mut expected = list["items"][0].clone();
        expected["quantity"] = json!(30);
        assert_eq!(sent, expected);
    }
}

#[tokio::test]
async fn pc_errors_read_int_codes_and_mpn_profile() {
    let (l, origin) = bind().await;
    let router = Router::new().route(
        "/v1/profiles/mpn",
        get(|RawQuery(q): RawQuery| async move {
            match q.as_deref() {
                None => json_response(StatusCode::OK, json!({"partnerName":"Fabrikam IT","mpnId":"4391507","profileType":"MpnProfile",
                    "links":{"self":{"uri":"/profiles/mpn","method":"GET","headers":[]}},"attributes":{"objectType":"MpnProfile"}})),
                Some(_) => json_response(StatusCode::NOT_FOUND, json!({"code":3000,
                    "description":"Partner Organization with partner_id 9999999 could not be found","data":[],"source":"PartnerFD"})),
            }
        }),
    );
    spawn(l, router);
    let pc = PartnerCenterClient::new(
        Url::parse(&format!("{origin}/v1")).unwrap(),
        http(),
        Arc::new(StaticToken("pc-token".into())),
    );
    let me = pc.mpn_profile(None).await.unwrap();
    assert_eq!(me.mpn_id, "4391507");
    assert_eq!(me.partner_name.as_deref(), Some("Fabrikam IT"));
    let e = pc.mpn_profile(Some("9999999")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.code.as_deref(), Some("3000"));
    assert!(e.to_string().contains("could not be found"), "{e}");
}

// ----- dropped connections ----------------------------------------------------------------------

/// A bare TCP server: reads each request fully, then answers with `answers[n]` for the n-th
/// connection (the last one repeats), where `None` closes the connection without a response.
async fn raw_server(answers: Vec<Option<String>>) -> (String, Arc<AtomicUsize>) {
    let (l, origin) = bind().await;
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = l.accept().await else {
                return;
            };
            let n = c2.fetch_add(1, Ordering::SeqCst);
            let answer = answers.get(n).or(answers.last()).cloned().flatten();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(k) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                match answer {
                    Some(body) => {
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(resp.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                    None => drop(stream),
                }
            });
        }
    });
    (origin, count)
}

#[tokio::test]
async fn a_get_is_retried_after_a_dropped_connection() {
    let (origin, count) = raw_server(vec![
        None,
        Some(
            r#"{"value":[{"id":"84841066","displayName":"Contoso","verifiedDomains":[]}]}"#.into(),
        ),
    ])
    .await;
    let g = GraphClient::new(
        Url::parse(&format!("{origin}/v1.0")).unwrap(),
        http(),
        Arc::new(StaticToken("t".into())),
    );
    let org = g.organization().await.unwrap();
    assert_eq!(org.display_name.as_deref(), Some("Contoso"));
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert_eq!(g.stats().retries, 1);
}

#[tokio::test]
async fn a_code_redemption_post_is_not_resent_after_the_connection_drops() {
    let (origin, count) = raw_server(vec![None]).await;
    let client = entra_client(&format!("{origin}/entra"));
    let req = client
        .begin_auth_code(&Url::parse("http://localhost:1/").unwrap(), None)
        .unwrap();
    let state = req
        .authorize_url()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let e = client
        .finish_auth_code(
            req,
            Redirect::Code {
                code: "the-code".into(),
                state: Some(state),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.api, Api::Entra);
    assert_eq!(
        e.kind,
        ErrorKind::Transport {
            maybe_applied: true
        }
    );
    assert!(e.to_string().contains("dropped the connection"), "{e}");
    // Give a (wrong) retry time to arrive: the backoff would be well under this.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(count.load(Ordering::SeqCst), 1, "the POST was sent once");
}
