//! Simulated Xero (reference/external-apis.md §7): login (`/authorize`, §7.1), identity
//! (`/token`, §7.1), and the API host (`/connections`, §7.2; accounting under
//! `/api.xro/2.0`, §7.3–§7.7).
//!
//! The sim has one Xero user (fixed id and email). Signing in consents at once and connects
//! every organisation in `world.xero` to the app. Access tokens are registered in the shared
//! token store with audience `xero`; refresh tokens, authorisation codes and the
//! `Idempotency-Key` cache live here and are only counted in the state dump.
//!
//! Where the spec leaves a choice, the comments say which one was made and mark it
//! [UNCONFIRMED].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::tokens::{Grant, Issuer, TokenProblem};
use super::world::{XeroAccount, XeroContact, XeroInvoice, XeroLineItem, XeroOrg};
use super::{Sim, State, util};

/// The sim's Xero user (`xero_userid`, id_token `sub`).
pub const USER_ID: &str = "5f7c2d1e-8a4b-4c3d-9e2f-1a0b9c8d7e6f";
pub const USER_EMAIL: &str = "msp.admin@example.com.au";
/// `ProviderName` in wrapped responses: the app's name as registered with Xero (§7.3).
const PROVIDER: &str = "cspsync";
/// Authorisation codes live 5 minutes (§7.1).
const CODE_TTL_SECS: i64 = 300;
/// A rotated refresh token can be retried for 30 minutes (§7.1).
const GRACE_SECS: i64 = 30 * 60;
/// Refresh tokens expire after 60 days unused (§7.1).
const REFRESH_IDLE_DAYS: i64 = 60;
/// Responses cached for an `Idempotency-Key`, about 6 minutes (§7.3).
const IDEMPOTENCY_SECS: i64 = 6 * 60;

// ---------------------------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------------------------

/// Runtime records of this API that are not part of the dataset. Secrets (codes, refresh
/// tokens, cached token responses) are counted in the state dump, never listed.
#[derive(Default, Serialize)]
pub struct Runtime {
    /// Pending authorisation codes.
    #[serde(rename = "pending_codes", serialize_with = "count")]
    codes: HashMap<String, AuthCode>,
    /// Refresh tokens known (active and rotated-in-grace).
    #[serde(rename = "refresh_tokens", serialize_with = "count")]
    refresh: HashMap<String, RefreshToken>,
    /// Cached responses per `Idempotency-Key`.
    #[serde(rename = "idempotency_keys", serialize_with = "count")]
    idempotency: HashMap<String, Replay>,
    /// Organisations connected to the app (§7.2).
    pub connections: Vec<Connection>,
    pub codes_issued: u64,
    pub tokens_issued: u64,
    pub refreshes: u64,
    /// Retries of an already-rotated refresh token answered from the grace period.
    pub refresh_grace_replays: u64,
    /// Requests answered from the `Idempotency-Key` cache.
    pub idempotent_replays: u64,
    pub invoices_created: u64,
    pub invoices_updated: u64,
}

fn count<K, V, S: Serializer>(m: &HashMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(m.len() as u64)
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("pending_codes", &self.codes.len())
            .field("refresh_tokens", &self.refresh.len())
            .field("idempotency_keys", &self.idempotency.len())
            .field("connections", &self.connections)
            .field("tokens_issued", &self.tokens_issued)
            .finish_non_exhaustive()
    }
}

/// One connection of an organisation to the app, for one user (§7.2).
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    pub id: String,
    pub auth_event_id: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub user_id: String,
    pub client_id: String,
}

struct AuthCode {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    challenge: String,
    issued: DateTime<Utc>,
    auth_event_id: String,
}

struct RefreshToken {
    client_id: String,
    scopes: Vec<String>,
    auth_event_id: String,
    last_used: DateTime<Utc>,
    /// Set once used: when, and the response given (replayed during the grace period).
    rotated: Option<(DateTime<Utc>, Value)>,
}

struct Replay {
    fingerprint: [u8; 32],
    at: DateTime<Utc>,
    status: StatusCode,
    body: String,
}

// ---------------------------------------------------------------------------------------------
// Routers
// ---------------------------------------------------------------------------------------------

/// `https://login.xero.com/identity/connect` stand-in.
pub fn login_router() -> Router<Sim> {
    Router::new().route("/authorize", get(authorize))
}

/// `https://identity.xero.com/connect` stand-in.
pub fn identity_router() -> Router<Sim> {
    Router::new().route("/token", post(token))
}

/// `https://api.xero.com` stand-in.
pub fn api_router() -> Router<Sim> {
    Router::new()
        .route("/connections", get(list_connections))
        .route("/connections/{id}", delete(delete_connection))
        .route("/api.xro/2.0/{*rest}", any(accounting))
}

/// Query-string (or form) pairs, decoded.
fn pairs(text: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// An OAuth parameter (names are case-sensitive in OAuth).
fn oauth_param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// An API query parameter (case-insensitive names, as Xero's API treats them).
fn api_param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------------
// Login: /authorize (§7.1)
// ---------------------------------------------------------------------------------------------

fn error_page(message: &str) -> Response {
    let esc = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html><head><title>Xero | Error</title></head><body><h1>Sorry, something went wrong</h1><p>{esc}</p></body></html>"
        ),
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => {
            let mut r = StatusCode::FOUND.into_response();
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => error_page("The redirect URI cannot be used in a redirect."),
    }
}

/// Redirect URIs must be https, or http on a loopback host; no custom schemes (§7.1).
fn valid_redirect(uri: &str) -> Option<url::Url> {
    let u = url::Url::parse(uri).ok()?;
    if u.fragment().is_some() {
        return None;
    }
    let loopback = matches!(
        u.host_str(),
        Some("localhost") | Some("127.0.0.1") | Some("[::1]")
    );
    match u.scheme() {
        "https" => Some(u),
        "http" if loopback => Some(u),
        _ => None,
    }
}

fn with_params(base: &url::Url, params: &[(&str, &str)]) -> String {
    let mut u = base.clone();
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// Both the classic scopes and the granular ones of apps made after 2 March 2026 are accepted
/// (§7.1); a scope is `openid profile email offline_access` or a dotted lower-case name under
/// one of Xero's API families.
fn valid_scope(s: &str) -> bool {
    const FAMILIES: &[&str] = &[
        "accounting",
        "payroll",
        "files",
        "assets",
        "projects",
        "bankfeeds",
        "finance",
        "paymentservices",
        "app",
        "marketplace",
    ];
    if matches!(s, "openid" | "profile" | "email" | "offline_access") {
        return true;
    }
    let mut parts = s.split('.');
    let family_ok = parts.next().is_some_and(|f| FAMILIES.contains(&f));
    family_ok
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn authorize(AxState(sim): AxState<Sim>, RawQuery(query): RawQuery) -> Response {
    let p = pairs(query.as_deref().unwrap_or(""));
    let mut st = sim.state();
    let client_id = oauth_param(&p, "client_id");
    if client_id != Some(st.world.app.xero_client_id.as_str()) {
        return error_page(
            "unauthorized_client: the client_id is missing or is not a Xero app known here.",
        );
    }
    let Some(redirect_uri) = oauth_param(&p, "redirect_uri") else {
        return error_page("invalid_request: the redirect_uri parameter is missing.");
    };
    let Some(base) = valid_redirect(redirect_uri) else {
        return error_page(
            "invalid_request: the redirect_uri must be https, or http on localhost or 127.0.0.1, without a fragment.",
        );
    };
    let state = oauth_param(&p, "state");
    let fail = |code: &str, desc: &str| {
        let mut params = vec![("error", code), ("error_description", desc)];
        if let Some(s) = state {
            params.push(("state", s));
        }
        redirect(&with_params(&base, &params))
    };
    if oauth_param(&p, "response_type") != Some("code") {
        return fail("unsupported_response_type", "response_type must be code");
    }
    let scopes: Vec<String> = oauth_param(&p, "scope")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        return fail("invalid_scope", "scope is required");
    }
    if let Some(bad) = scopes.iter().find(|s| !valid_scope(s)) {
        return fail("invalid_scope", &format!("unknown scope {bad}"));
    }
    // A PKCE app must send an S256 challenge (§7.1, X4).
    if oauth_param(&p, "code_challenge_method") != Some("S256") {
        return fail(
            "invalid_request",
            "code_challenge_method must be S256 for an Auth Code with PKCE app",
        );
    }
    let challenge = oauth_param(&p, "code_challenge").unwrap_or("");
    if !(43..=128).contains(&challenge.len()) || !is_base64url(challenge) {
        return fail(
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the code_verifier",
        );
    }
    // Consent: the sim's user connects every organisation (§7.2).
    let now = Utc::now();
    let auth_event_id = util::guid();
    let client = st.world.app.xero_client_id.clone();
    let orgs: Vec<(String, String)> = st
        .world
        .xero
        .organisations
        .iter()
        .map(|o| (o.tenant_id.clone(), o.name.clone()))
        .collect();
    for (tenant_id, name) in orgs {
        let existing = st.xero.connections.iter_mut().find(|c| {
            c.user_id == USER_ID
                && c.client_id == client
                && c.tenant_id.eq_ignore_ascii_case(&tenant_id)
        });
        match existing {
            Some(c) => {
                c.auth_event_id = auth_event_id.clone();
                c.tenant_name = name;
                c.updated = now;
            }
            None => st.xero.connections.push(Connection {
                id: util::guid(),
                auth_event_id: auth_event_id.clone(),
                tenant_id,
                tenant_name: name,
                created: now,
                updated: now,
                user_id: USER_ID.into(),
                client_id: client.clone(),
            }),
        }
    }
    let code = util::opaque_token("");
    st.xero
        .codes
        .retain(|_, c| now - c.issued < Duration::seconds(CODE_TTL_SECS));
    st.xero.codes.insert(
        code.clone(),
        AuthCode {
            client_id: client,
            redirect_uri: redirect_uri.to_string(),
            scopes,
            challenge: challenge.to_string(),
            issued: now,
            auth_event_id,
        },
    );
    st.xero.codes_issued += 1;
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = state {
        params.push(("state", s));
    }
    // Xero also returns the granted scope and session_state; clients only need code and state.
    redirect(&with_params(&base, &params))
}

// ---------------------------------------------------------------------------------------------
// Identity: /token (§7.1)
// ---------------------------------------------------------------------------------------------

/// `{"error": "..."}` with 400 (§7.1: the standard OAuth body [UNCONFIRMED exact fields]).
fn oauth_error(code: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "error": code })),
    )
        .into_response()
}

/// The client id from HTTP Basic (a "Web app") or the form (a PKCE app, no secret).
fn client_of(headers: &HeaderMap, form: &[(String, String)]) -> Result<Option<String>, ()> {
    let basic = util::header(headers, "authorization")
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, b)| {
            STANDARD
                .decode(b.trim())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|s| s.split_once(':').map(|(id, _)| id.to_string()))
                .ok_or(())
        })
        .transpose()?;
    let form_id = oauth_param(form, "client_id").map(str::to_string);
    match (basic, form_id) {
        (Some(a), Some(b)) if a != b => Err(()),
        (a, b) => Ok(a.or(b)),
    }
}

async fn token(AxState(sim): AxState<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let form = pairs(&String::from_utf8_lossy(&body));
    let ttl = sim.faults.spec().token_ttl_secs.unwrap_or(1800);
    let mut st = sim.state();
    let Ok(client_id) = client_of(&headers, &form) else {
        return oauth_error("invalid_client");
    };
    let Some(client_id) = client_id.filter(|c| *c == st.world.app.xero_client_id) else {
        return oauth_error("invalid_client");
    };
    let now = Utc::now();
    match oauth_param(&form, "grant_type") {
        Some("authorization_code") => {
            let Some(code) = oauth_param(&form, "code") else {
                return oauth_error("invalid_request");
            };
            // Single use: the code is gone whether or not the exchange succeeds.
            let Some(c) = st.xero.codes.remove(code) else {
                return oauth_error("invalid_grant");
            };
            let verifier = oauth_param(&form, "code_verifier").unwrap_or("");
            let verifier_ok = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
                && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == c.challenge;
            if now - c.issued > Duration::seconds(CODE_TTL_SECS)
                || c.client_id != client_id
                || oauth_param(&form, "redirect_uri") != Some(c.redirect_uri.as_str())
                || !verifier_ok
            {
                return oauth_error("invalid_grant");
            }
            let resp = issue(&mut st, ttl, &client_id, &c.auth_event_id, &c.scopes);
            token_response(resp)
        }
        Some("refresh_token") => {
            let Some(rt) = oauth_param(&form, "refresh_token") else {
                return oauth_error("invalid_request");
            };
            let (scopes, auth_event_id) = {
                let Some(rec) = st.xero.refresh.get(rt) else {
                    return oauth_error("invalid_grant");
                };
                if rec.client_id != client_id {
                    return oauth_error("invalid_grant");
                }
                if let Some((at, cached)) = &rec.rotated {
                    // Retry of a rotated token within the grace period: the same new pair (§7.1).
                    if now - *at <= Duration::seconds(GRACE_SECS) {
                        let cached = cached.clone();
                        st.xero.refresh_grace_replays += 1;
                        return token_response(cached);
                    }
                    st.xero.refresh.remove(rt);
                    return oauth_error("invalid_grant");
                }
                if now - rec.last_used > Duration::days(REFRESH_IDLE_DAYS) {
                    st.xero.refresh.remove(rt);
                    return oauth_error("invalid_grant");
                }
                (rec.scopes.clone(), rec.auth_event_id.clone())
            };
            let resp = issue(&mut st, ttl, &client_id, &auth_event_id, &scopes);
            if let Some(rec) = st.xero.refresh.get_mut(rt) {
                rec.rotated = Some((now, resp.clone()));
            }
            st.xero.refreshes += 1;
            // Forget rotated tokens whose grace period is over.
            st.xero.refresh.retain(|_, r| {
                r.rotated
                    .as_ref()
                    .is_none_or(|(at, _)| now - *at <= Duration::seconds(GRACE_SECS))
            });
            token_response(resp)
        }
        Some(_) => oauth_error("unsupported_grant_type"),
        None => oauth_error("invalid_request"),
    }
}

fn token_response(v: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(v),
    )
        .into_response()
}

/// A new access token (and refresh token with `offline_access`, id_token with `openid`).
fn issue(
    st: &mut State,
    ttl: u64,
    client_id: &str,
    auth_event_id: &str,
    scopes: &[String],
) -> Value {
    let now = Utc::now();
    let ttl_i = i64::try_from(ttl).unwrap_or(1800);
    let exp = now + Duration::seconds(ttl_i);
    let session = util::guid();
    let access = util::jwt(&json!({
        "nbf": now.timestamp(), "exp": exp.timestamp(), "iss": "https://identity.xero.com",
        "aud": "https://identity.xero.com/resources", "client_id": client_id, "sub": USER_ID,
        "auth_time": now.timestamp(), "xero_userid": USER_ID, "global_session_id": session,
        "sid": session, "jti": util::guid(), "authentication_event_id": auth_event_id,
        "scope": scopes, "amr": ["pwd"],
    }));
    st.tokens.insert(
        access.clone(),
        Grant {
            issuer: Issuer::Xero,
            audience: "xero".into(),
            tenant_id: String::new(),
            subject: USER_ID.into(),
            client_id: client_id.into(),
            scopes: scopes.to_vec(),
            mfa: false,
            expires_at: exp,
        },
    );
    st.xero.tokens_issued += 1;
    let mut out = Map::new();
    if scopes.iter().any(|s| s == "openid") {
        out.insert(
            "id_token".into(),
            Value::String(util::jwt(&json!({
                "nbf": now.timestamp(), "exp": (now + Duration::minutes(5)).timestamp(),
                "iss": "https://identity.xero.com", "aud": client_id, "iat": now.timestamp(),
                "sub": USER_ID, "auth_time": now.timestamp(), "xero_userid": USER_ID,
                "global_session_id": session, "sid": session,
                "preferred_username": USER_EMAIL, "email": USER_EMAIL,
                "given_name": "Sam", "family_name": "Admin", "name": "Sam Admin",
            }))),
        );
    }
    out.insert("access_token".into(), Value::String(access));
    out.insert("expires_in".into(), json!(ttl));
    out.insert("token_type".into(), json!("Bearer"));
    if scopes.iter().any(|s| s == "offline_access") {
        let rt = util::opaque_token("");
        st.xero.refresh.insert(
            rt.clone(),
            RefreshToken {
                client_id: client_id.into(),
                scopes: scopes.to_vec(),
                auth_event_id: auth_event_id.into(),
                last_used: now,
                rotated: None,
            },
        );
        out.insert("refresh_token".into(), Value::String(rt));
    }
    out.insert("scope".into(), Value::String(scopes.join(" ")));
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// API gateway: auth, connections (§7.2, §7.7)
// ---------------------------------------------------------------------------------------------

/// The API gateway's error body (§7.7: `{Title, Status, Detail, Instance, Type}`).
fn gateway(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = json!({"Type": null, "Title": title, "Status": status.as_u16(), "Detail": detail,
        "Instance": util::guid(), "Extensions": {}});
    (status, axum::Json(body)).into_response()
}

/// 401 for a missing, unknown or expired bearer token.
fn unauthorized(st: &State, headers: &HeaderMap, problem: TokenProblem) -> Response {
    let detail = match problem {
        TokenProblem::Expired => {
            let at = util::bearer(headers)
                .and_then(|t| st.tokens.peek(t))
                .map(|g| g.expires_at.format("%m/%d/%Y %H:%M:%S").to_string())
                .unwrap_or_default();
            format!("TokenExpired: token expired at {at}")
        }
        _ => "AuthenticationUnsuccessful".to_string(),
    };
    let mut r = gateway(StatusCode::UNAUTHORIZED, "Unauthorized", &detail);
    let www = if problem == TokenProblem::Expired {
        "Bearer error=\"invalid_token\", error_description=\"The token is expired\""
    } else {
        "Bearer"
    };
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(www));
    r
}

fn xero_grant(st: &State, headers: &HeaderMap) -> Result<Grant, Box<Response>> {
    st.tokens
        .check(util::bearer(headers), "xero")
        .cloned()
        .map_err(|p| Box::new(unauthorized(st, headers, p)))
}

/// `"2019-12-07T18:46:19.5165400"` (§7.2: seven fractional digits, no zone).
fn connection_time(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

async fn list_connections(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let st = sim.state();
    let grant = match xero_grant(&st, &headers) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let p = pairs(query.as_deref().unwrap_or(""));
    let event = api_param(&p, "authEventId");
    let list: Vec<Value> = st
        .xero
        .connections
        .iter()
        .filter(|c| c.user_id == grant.subject && c.client_id == grant.client_id)
        .filter(|c| event.is_none_or(|e| c.auth_event_id.eq_ignore_ascii_case(e.trim())))
        .map(|c| {
            json!({"id": c.id, "authEventId": c.auth_event_id, "tenantId": c.tenant_id,
                "tenantType": "ORGANISATION", "tenantName": c.tenant_name,
                "createdDateUtc": connection_time(c.created), "updatedDateUtc": connection_time(c.updated)})
        })
        .collect();
    axum::Json(Value::Array(list)).into_response()
}

async fn delete_connection(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut st = sim.state();
    let grant = match xero_grant(&st, &headers) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let before = st.xero.connections.len();
    st.xero.connections.retain(|c| {
        !(c.id.eq_ignore_ascii_case(&id)
            && c.user_id == grant.subject
            && c.client_id == grant.client_id)
    });
    if st.xero.connections.len() == before {
        return gateway(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The connection does not exist or belongs to another user or app.",
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

// ---------------------------------------------------------------------------------------------
// Accounting API (§7.3–§7.7)
// ---------------------------------------------------------------------------------------------

/// A JSON response with Xero's `\/Date(..)\/` escaping (§7.3).
fn xero_json(status: StatusCode, v: &Value) -> Response {
    json_text(status, xero_text(v))
}

fn xero_text(v: &Value) -> String {
    v.to_string()
        .replace("\"/Date(", "\"\\/Date(")
        .replace(")/\"", ")\\/\"")
}

fn json_text(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        text,
    )
        .into_response()
}

/// `{"ErrorNumber":10,"Type":"ValidationException",...}` (§7.7).
fn validation(message: &str, elements: Vec<Value>) -> Response {
    xero_json(StatusCode::BAD_REQUEST, &validation_body(message, elements))
}

fn reject(message: &str, elements: Vec<Value>) -> Box<Response> {
    Box::new(validation(message, elements))
}

fn validation_body(message: &str, elements: Vec<Value>) -> Value {
    json!({"ErrorNumber": 10, "Type": "ValidationException", "Message": message, "Elements": elements})
}

fn ms(t: DateTime<Utc>) -> String {
    format!("/Date({}+0000)/", t.timestamp_millis())
}

fn date_ms(d: NaiveDate) -> String {
    ms(d.and_time(chrono::NaiveTime::MIN).and_utc())
}

fn date_string(d: NaiveDate) -> String {
    format!("{}T00:00:00", d.format("%Y-%m-%d"))
}

fn money(d: Decimal) -> Value {
    #[derive(Serialize)]
    struct M(#[serde(with = "rust_decimal::serde::float")] Decimal);
    serde_json::to_value(M(d)).unwrap_or(Value::Null)
}

fn round2(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// The `{"Id","Status","ProviderName","DateTimeUTC", <key>: items}` wrapper (§7.3).
fn wrapped(key: &str, items: Vec<Value>, pagination: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("Id".into(), Value::String(util::guid()));
    m.insert("Status".into(), json!("OK"));
    m.insert("ProviderName".into(), json!(PROVIDER));
    m.insert(
        "DateTimeUTC".into(),
        Value::String(format!("/Date({})/", Utc::now().timestamp_millis())),
    );
    if let Some(p) = pagination {
        m.insert("pagination".into(), p);
    }
    m.insert(key.into(), Value::Array(items));
    Value::Object(m)
}

struct ApiReq<'a> {
    method: &'a Method,
    params: Vec<(String, String)>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

async fn accounting(
    AxState(sim): AxState<Sim>,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = sim.state();
    let grant = match xero_grant(&st, &headers) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    // The organisation: `xero-tenant-id` must name one connected to this user and app (§7.3).
    let tenant = util::header(&headers, "xero-tenant-id")
        .unwrap_or("")
        .trim()
        .to_string();
    let connected = !tenant.is_empty()
        && st.xero.connections.iter().any(|c| {
            c.user_id == grant.subject
                && c.client_id == grant.client_id
                && c.tenant_id.eq_ignore_ascii_case(&tenant)
        });
    let org = st
        .world
        .xero
        .organisations
        .iter()
        .position(|o| o.tenant_id.eq_ignore_ascii_case(&tenant));
    let Some(org_i) = org.filter(|_| connected) else {
        return gateway(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "AuthenticationUnsuccessful",
        );
    };
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let resource = segs.first().copied().unwrap_or("");
    let write = method != Method::GET;
    // Scopes (§7.1): the classic and the granular name for each resource.
    let needed: &[&str] = match (resource, write) {
        ("contacts", false) => &["accounting.contacts", "accounting.contacts.read"],
        ("contacts", true) => &["accounting.contacts"],
        ("accounts" | "organisation", false) => {
            &["accounting.settings", "accounting.settings.read"]
        }
        ("invoices", false) => &[
            "accounting.transactions",
            "accounting.transactions.read",
            "accounting.invoices",
            "accounting.invoices.read",
        ],
        ("invoices", true) => &["accounting.transactions", "accounting.invoices"],
        _ => &[],
    };
    if !needed.is_empty() && !grant.scopes.iter().any(|s| needed.contains(&s.as_str())) {
        return gateway(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "AuthorizationUnsuccessful",
        );
    }
    let req = ApiReq {
        method: &method,
        params: pairs(query.as_deref().unwrap_or("")),
        headers: &headers,
        body: &body,
    };
    let org = &mut st.world.xero.organisations[org_i];
    let not_found = || {
        gateway(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The resource you're looking for cannot be found",
        )
    };
    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["contacts"]) => get_contacts(org, &req, None),
        (Method::GET, ["contacts", id]) => get_contacts(org, &req, Some(id)),
        (Method::GET, ["accounts"]) => get_accounts(org, &req, None),
        (Method::GET, ["accounts", id]) => get_accounts(org, &req, Some(id)),
        (Method::GET, ["organisation"]) => xero_json(
            StatusCode::OK,
            &wrapped("Organisations", vec![organisation_json(org)], None),
        ),
        (Method::GET, ["invoices"]) => get_invoices(org, &req, None),
        (Method::GET, ["invoices", id]) => get_invoices(org, &req, Some(id)),
        (Method::PUT, ["invoices"]) | (Method::POST, ["invoices"]) => {
            let mode = if method == Method::PUT {
                Mode::Create
            } else {
                Mode::Upsert
            };
            let key = format!("{}:{}", grant.client_id, tenant.to_ascii_lowercase());
            idempotent(&mut st, &key, &req, &rest, |st| {
                let org = &mut st.world.xero.organisations[org_i];
                let (status, body, created, updated) = write_invoices(org, &req, mode, None);
                st.xero.invoices_created += created;
                st.xero.invoices_updated += updated;
                (status, body)
            })
        }
        (Method::POST, ["invoices", id]) => {
            let id = id.to_string();
            let key = format!("{}:{}", grant.client_id, tenant.to_ascii_lowercase());
            idempotent(&mut st, &key, &req, &rest, |st| {
                let org = &mut st.world.xero.organisations[org_i];
                let (status, body, created, updated) =
                    write_invoices(org, &req, Mode::Upsert, Some(&id));
                st.xero.invoices_created += created;
                st.xero.invoices_updated += updated;
                (status, body)
            })
        }
        _ => not_found(),
    }
}

/// `Idempotency-Key` (§7.3): the same key and request within ~6 minutes gets the cached
/// response and changes nothing; the same key with a different request gets 400.
fn idempotent(
    st: &mut State,
    scope: &str,
    req: &ApiReq<'_>,
    path: &str,
    run: impl FnOnce(&mut State) -> (StatusCode, Value),
) -> Response {
    let Some(key) = util::header(req.headers, "idempotency-key").map(str::to_string) else {
        let (status, body) = run(st);
        return xero_json(status, &body);
    };
    if key.len() > 128 || key.trim().is_empty() {
        return validation(
            "The Idempotency-Key header must be 1 to 128 characters.",
            Vec::new(),
        );
    }
    let mut h = Sha256::new();
    h.update(req.method.as_str().as_bytes());
    h.update(b"\n");
    h.update(path.to_ascii_lowercase().as_bytes());
    h.update(b"\n");
    let mut params = req.params.clone();
    params.sort();
    for (k, v) in &params {
        h.update(k.to_ascii_lowercase().as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"&");
    }
    h.update(b"\n");
    h.update(req.body);
    let fingerprint: [u8; 32] = h.finalize().into();
    let now = Utc::now();
    st.xero
        .idempotency
        .retain(|_, r| now - r.at < Duration::seconds(IDEMPOTENCY_SECS));
    let cache_key = format!("{scope}:{key}");
    if let Some(r) = st.xero.idempotency.get(&cache_key) {
        if r.fingerprint != fingerprint {
            return validation(
                "The Idempotency-Key has already been used with a different request; use a new key for a new request.",
                Vec::new(),
            );
        }
        let (status, body) = (r.status, r.body.clone());
        st.xero.idempotent_replays += 1;
        return json_text(status, body);
    }
    let (status, body) = run(st);
    let text = xero_text(&body);
    if !status.is_server_error() {
        st.xero.idempotency.insert(
            cache_key,
            Replay {
                fingerprint,
                at: now,
                status,
                body: text.clone(),
            },
        );
    }
    json_text(status, text)
}

// ---------------------------------------------------------------------------------------------
// Listing helpers: where, order, paging, IDs, If-Modified-Since
// ---------------------------------------------------------------------------------------------

struct Paging {
    page: usize,
    size: usize,
}

/// `page` (1-based) and `pageSize` (default 100, at most 1000 [UNCONFIRMED: larger sizes are
/// clamped]). Without `page` (and `pageSize`) the list is not paged.
fn paging(req: &ApiReq<'_>) -> Result<Option<Paging>, Box<Response>> {
    let page = api_param(&req.params, "page");
    let size = api_param(&req.params, "pageSize");
    if page.is_none() && size.is_none() {
        return Ok(None);
    }
    let page = match page {
        None => 1,
        Some(p) => match p.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(reject(
                    &format!("page must be a whole number from 1; got '{p}'."),
                    Vec::new(),
                ));
            }
        },
    };
    let size = match size {
        None => 100,
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n.min(1000),
            _ => {
                return Err(reject(
                    &format!("pageSize must be a whole number from 1 to 1000; got '{s}'."),
                    Vec::new(),
                ));
            }
        },
    };
    Ok(Some(Paging { page, size }))
}

fn paginate(items: Vec<Value>, p: &Option<Paging>) -> (Vec<Value>, Option<Value>) {
    match p {
        None => (items, None),
        Some(p) => {
            let n = items.len();
            let page_count = n.div_ceil(p.size);
            let page: Vec<Value> = items
                .into_iter()
                .skip((p.page - 1).saturating_mul(p.size))
                .take(p.size)
                .collect();
            (
                page,
                Some(
                    json!({"page": p.page, "pageSize": p.size, "pageCount": page_count, "itemCount": n}),
                ),
            )
        }
    }
}

/// Apply `where` to wire records (validated against the entity's field names).
fn apply_where(
    req: &ApiReq<'_>,
    known: &[&str],
    items: Vec<Value>,
) -> Result<Vec<Value>, Box<Response>> {
    let Some(w) = api_param(&req.params, "where").filter(|w| !w.trim().is_empty()) else {
        return Ok(items);
    };
    let expr = xwhere::parse(w)
        .and_then(|e| xwhere::check_fields(&e, known).map(|()| e))
        .map_err(|m| reject(&m, Vec::new()))?;
    let mut out = Vec::new();
    for i in items {
        if xwhere::eval(&expr, &i).map_err(|m| reject(&m, Vec::new()))? {
            out.push(i);
        }
    }
    Ok(out)
}

/// Sort by `order` (`Name ASC, UpdatedDateUTC DESC`), or by the default keys.
fn apply_order(
    req: &ApiReq<'_>,
    known: &[&str],
    default: &[&str],
    items: &mut [Value],
) -> Result<(), Box<Response>> {
    let mut keys: Vec<(String, bool)> = Vec::new();
    if let Some(o) = api_param(&req.params, "order").filter(|o| !o.trim().is_empty()) {
        for part in o.split(',') {
            let mut words = part.split_whitespace();
            let field = words.next().unwrap_or("");
            let desc = match words.next().map(str::to_ascii_uppercase).as_deref() {
                None | Some("ASC") => false,
                Some("DESC") => true,
                Some(other) => {
                    return Err(reject(
                        &format!("order direction must be ASC or DESC, not '{other}'."),
                        Vec::new(),
                    ));
                }
            };
            let Some(canon) = known.iter().find(|k| k.eq_ignore_ascii_case(field)) else {
                return Err(reject(
                    &format!("Cannot order by '{field}': no such field."),
                    Vec::new(),
                ));
            };
            keys.push(((*canon).to_string(), desc));
        }
    }
    for d in default {
        keys.push(((*d).to_string(), false));
    }
    items.sort_by(|a, b| {
        for (k, desc) in &keys {
            let o = xwhere::order_values(
                a.get(k).unwrap_or(&Value::Null),
                b.get(k).unwrap_or(&Value::Null),
            );
            let o = if *desc { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    Ok(())
}

/// A comma-separated list parameter (`IDs`, `Statuses`, ...), lower-cased.
fn list_param(req: &ApiReq<'_>, name: &str) -> Option<Vec<String>> {
    api_param(&req.params, name).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn bool_param(req: &ApiReq<'_>, name: &str) -> bool {
    api_param(&req.params, name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// `If-Modified-Since` as RFC 1123/2822, or ISO 8601 (UTC when no zone).
fn modified_since(req: &ApiReq<'_>) -> Option<DateTime<Utc>> {
    let v = util::header(req.headers, "if-modified-since")?.trim();
    DateTime::parse_from_rfc2822(v)
        .or_else(|_| DateTime::parse_from_rfc3339(v))
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

// ---------------------------------------------------------------------------------------------
// Contacts (§7.4), Accounts (§7.5), Organisation
// ---------------------------------------------------------------------------------------------

const CONTACT_FIELDS: &[&str] = &[
    "ContactID",
    "ContactNumber",
    "AccountNumber",
    "ContactStatus",
    "Name",
    "FirstName",
    "LastName",
    "EmailAddress",
    "TaxNumber",
    "IsSupplier",
    "IsCustomer",
    "DefaultCurrency",
    "UpdatedDateUTC",
    "HasValidationErrors",
    "HasAttachments",
];

fn contact_json(c: &XeroContact, summary: bool) -> Value {
    let mut m = Map::new();
    m.insert("ContactID".into(), json!(c.contact_id));
    m.insert(
        "ContactStatus".into(),
        json!(if c.contact_status.is_empty() {
            "ACTIVE"
        } else {
            c.contact_status.as_str()
        }),
    );
    m.insert("Name".into(), json!(c.name));
    if let Some(e) = &c.email_address {
        m.insert("EmailAddress".into(), json!(e));
    }
    if let Some(a) = &c.account_number {
        m.insert("AccountNumber".into(), json!(a));
    }
    m.insert("IsSupplier".into(), json!(c.is_supplier));
    m.insert("IsCustomer".into(), json!(c.is_customer));
    if let Some(u) = c.updated {
        m.insert("UpdatedDateUTC".into(), json!(ms(u)));
    }
    m.insert("HasValidationErrors".into(), json!(false));
    if !summary {
        m.insert("Addresses".into(), json!([]));
        m.insert("Phones".into(), json!([]));
        m.insert("ContactGroups".into(), json!([]));
        m.insert("ContactPersons".into(), json!([]));
        m.insert("HasAttachments".into(), json!(false));
    }
    Value::Object(m)
}

fn get_contacts(org: &XeroOrg, req: &ApiReq<'_>, one: Option<&str>) -> Response {
    let summary = bool_param(req, "summaryOnly");
    if let Some(id) = one {
        return match org
            .contacts
            .iter()
            .find(|c| c.contact_id.eq_ignore_ascii_case(id))
        {
            Some(c) => xero_json(
                StatusCode::OK,
                &wrapped("Contacts", vec![contact_json(c, false)], None),
            ),
            None => gateway(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The resource you're looking for cannot be found",
            ),
        };
    }
    let paging = match paging(req) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let ids = list_param(req, "IDs");
    let search = api_param(&req.params, "searchTerm")
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty());
    let where_mentions_status = api_param(&req.params, "where")
        .is_some_and(|w| w.to_ascii_lowercase().contains("contactstatus"));
    // Archived contacts only with includeArchived=true, or when `where` asks about status.
    let include_archived = bool_param(req, "includeArchived") || where_mentions_status;
    let since = modified_since(req);
    let items: Vec<Value> = org
        .contacts
        .iter()
        .filter(|c| include_archived || !c.contact_status.eq_ignore_ascii_case("ARCHIVED"))
        .filter(|c| {
            ids.as_ref()
                .is_none_or(|ids| ids.contains(&c.contact_id.to_ascii_lowercase()))
        })
        .filter(|c| since.is_none_or(|s| c.updated.is_some_and(|u| u > s)))
        .filter(|c| {
            search.as_ref().is_none_or(|t| {
                c.name.to_lowercase().contains(t.as_str())
                    || c.email_address
                        .as_ref()
                        .is_some_and(|e| e.to_lowercase().contains(t.as_str()))
                    || c.account_number
                        .as_ref()
                        .is_some_and(|a| a.to_lowercase().contains(t.as_str()))
            })
        })
        .map(|c| contact_json(c, false))
        .collect();
    let mut items = match apply_where(req, CONTACT_FIELDS, items) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    if let Err(r) = apply_order(req, CONTACT_FIELDS, &["Name", "ContactID"], &mut items) {
        return *r;
    }
    let (mut page, pagination) = paginate(items, &paging);
    if summary {
        for v in &mut page {
            if let Value::Object(m) = v {
                for k in [
                    "Addresses",
                    "Phones",
                    "ContactGroups",
                    "ContactPersons",
                    "HasAttachments",
                ] {
                    m.remove(k);
                }
            }
        }
    }
    xero_json(StatusCode::OK, &wrapped("Contacts", page, pagination))
}

const ACCOUNT_FIELDS: &[&str] = &[
    "AccountID",
    "Code",
    "Name",
    "Type",
    "Class",
    "Status",
    "TaxType",
    "Description",
    "BankAccountNumber",
    "BankAccountType",
    "CurrencyCode",
    "EnablePaymentsToAccount",
    "ShowInExpenseClaims",
    "SystemAccount",
    "ReportingCode",
    "UpdatedDateUTC",
];

fn account_json(a: &XeroAccount) -> Value {
    let mut m = Map::new();
    m.insert("AccountID".into(), json!(a.account_id));
    m.insert("Code".into(), json!(a.code));
    m.insert("Name".into(), json!(a.name));
    m.insert("Type".into(), json!(a.account_type));
    m.insert("Class".into(), json!(a.class));
    m.insert(
        "Status".into(),
        json!(if a.status.is_empty() {
            "ACTIVE"
        } else {
            a.status.as_str()
        }),
    );
    if let Some(t) = &a.tax_type {
        m.insert("TaxType".into(), json!(t));
    }
    m.insert("EnablePaymentsToAccount".into(), json!(false));
    m.insert("ShowInExpenseClaims".into(), json!(false));
    m.insert("BankAccountType".into(), json!(""));
    m.insert("ReportingCode".into(), json!(a.class));
    m.insert("HasAttachments".into(), json!(false));
    m.insert("AddToWatchlist".into(), json!(false));
    Value::Object(m)
}

/// `GET /Accounts` is not paged (§7.5) and lists every status.
fn get_accounts(org: &XeroOrg, req: &ApiReq<'_>, one: Option<&str>) -> Response {
    let items: Vec<Value> = org
        .accounts
        .iter()
        .filter(|a| one.is_none_or(|id| a.account_id.eq_ignore_ascii_case(id)))
        .map(account_json)
        .collect();
    if one.is_some() && items.is_empty() {
        return gateway(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The resource you're looking for cannot be found",
        );
    }
    let mut items = match apply_where(req, ACCOUNT_FIELDS, items) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    if let Err(r) = apply_order(req, ACCOUNT_FIELDS, &["Code", "AccountID"], &mut items) {
        return *r;
    }
    xero_json(StatusCode::OK, &wrapped("Accounts", items, None))
}

fn organisation_json(org: &XeroOrg) -> Value {
    json!({"OrganisationID": org.tenant_id, "Name": org.name, "LegalName": org.name,
        "PaysTax": true, "Version": "AU", "OrganisationType": "COMPANY", "BaseCurrency": "AUD",
        "CountryCode": "AU", "IsDemoCompany": false, "OrganisationStatus": "ACTIVE",
        "Timezone": "AUSEASTERNSTANDARDTIME"})
}

// ---------------------------------------------------------------------------------------------
// Invoices (§7.6)
// ---------------------------------------------------------------------------------------------

const INVOICE_FIELDS: &[&str] = &[
    "InvoiceID",
    "Type",
    "Contact",
    "InvoiceNumber",
    "Reference",
    "Date",
    "DueDate",
    "Status",
    "LineAmountTypes",
    "SubTotal",
    "TotalTax",
    "Total",
    "AmountDue",
    "AmountPaid",
    "AmountCredited",
    "CurrencyCode",
    "CurrencyRate",
    "UpdatedDateUTC",
    "HasAttachments",
    "IsDiscounted",
    "SentToContact",
];

/// The GST rate of a tax type (AU), or `None` for a tax type that does not exist (§7.5).
fn tax_rate(tax_type: &str) -> Option<Decimal> {
    let t = tax_type.to_ascii_uppercase();
    match t.as_str() {
        "OUTPUT" | "INPUT" | "CAPEXINPUT" => Some(Decimal::new(10, 2)),
        "NONE" | "BASEXCLUDED" | "INPUTTAXED" => Some(Decimal::ZERO),
        _ if t.starts_with("EXEMPT") && t.len() > 6 => Some(Decimal::ZERO),
        _ => None,
    }
}

struct LineCalc {
    line_amount: Decimal,
    tax: Decimal,
}

struct Totals {
    lines: Vec<LineCalc>,
    sub_total: Decimal,
    total_tax: Decimal,
    total: Decimal,
}

/// Line amounts, tax and totals from the stored lines (§7.6).
fn totals(inv: &XeroInvoice) -> Totals {
    let mode = inv.line_amount_types.to_ascii_lowercase();
    let mut lines = Vec::new();
    let (mut sub, mut tax_sum, mut total) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for l in &inv.line_items {
        let amount = round2(l.quantity.checked_mul(l.unit_amount).unwrap_or_default());
        let rate = if mode == "notax" {
            Decimal::ZERO
        } else {
            l.tax_type
                .as_deref()
                .and_then(tax_rate)
                .unwrap_or(Decimal::ZERO)
        };
        let (net, tax) = if mode == "inclusive" {
            let tax = round2(amount * rate / (Decimal::ONE + rate));
            (amount - tax, tax)
        } else {
            (amount, round2(amount * rate))
        };
        sub += net;
        tax_sum += tax;
        total += net + tax;
        lines.push(LineCalc {
            line_amount: amount,
            tax,
        });
    }
    Totals {
        lines,
        sub_total: sub,
        total_tax: tax_sum,
        total,
    }
}

fn invoice_json(org: &XeroOrg, inv: &XeroInvoice, with_lines: bool) -> Value {
    let t = totals(inv);
    let paid = inv.status == "PAID";
    let closed = matches!(inv.status.as_str(), "VOIDED" | "DELETED");
    let mut m = Map::new();
    m.insert("Type".into(), json!(inv.invoice_type));
    m.insert("InvoiceID".into(), json!(inv.invoice_id));
    if let Some(n) = &inv.invoice_number {
        m.insert("InvoiceNumber".into(), json!(n));
    }
    if let Some(r) = &inv.reference {
        m.insert("Reference".into(), json!(r));
    }
    let name = org
        .contacts
        .iter()
        .find(|c| c.contact_id.eq_ignore_ascii_case(&inv.contact_id))
        .map(|c| c.name.clone());
    let mut contact = Map::new();
    contact.insert("ContactID".into(), json!(inv.contact_id));
    if let Some(n) = name {
        contact.insert("Name".into(), json!(n));
    }
    m.insert("Contact".into(), Value::Object(contact));
    if let Some(d) = inv.date {
        m.insert("Date".into(), json!(date_ms(d)));
        m.insert("DateString".into(), json!(date_string(d)));
    }
    if let Some(d) = inv.due_date {
        m.insert("DueDate".into(), json!(date_ms(d)));
        m.insert("DueDateString".into(), json!(date_string(d)));
    }
    m.insert("Status".into(), json!(inv.status));
    m.insert("LineAmountTypes".into(), json!(inv.line_amount_types));
    if with_lines {
        let lines: Vec<Value> = inv
            .line_items
            .iter()
            .zip(&t.lines)
            .map(|(l, c)| {
                let mut lm = Map::new();
                lm.insert("LineItemID".into(), json!(l.line_item_id));
                lm.insert("Description".into(), json!(l.description));
                lm.insert("Quantity".into(), money(l.quantity));
                lm.insert("UnitAmount".into(), money(l.unit_amount));
                if let Some(i) = &l.item_code {
                    lm.insert("ItemCode".into(), json!(i));
                }
                if let Some(a) = &l.account_code {
                    lm.insert("AccountCode".into(), json!(a));
                    if let Some(acc) = org.accounts.iter().find(|x| x.code.eq_ignore_ascii_case(a))
                    {
                        lm.insert("AccountID".into(), json!(acc.account_id));
                    }
                }
                if let Some(tt) = &l.tax_type {
                    lm.insert("TaxType".into(), json!(tt));
                }
                lm.insert("TaxAmount".into(), money(c.tax));
                lm.insert("LineAmount".into(), money(c.line_amount));
                lm.insert("Tracking".into(), json!([]));
                Value::Object(lm)
            })
            .collect();
        m.insert("LineItems".into(), Value::Array(lines));
    }
    m.insert("SubTotal".into(), money(t.sub_total));
    m.insert("TotalTax".into(), money(t.total_tax));
    m.insert("Total".into(), money(t.total));
    let (due, paid_amount) = if paid {
        (Decimal::ZERO, t.total)
    } else if closed {
        (Decimal::ZERO, Decimal::ZERO)
    } else {
        (t.total, Decimal::ZERO)
    };
    m.insert("AmountDue".into(), money(due));
    m.insert("AmountPaid".into(), money(paid_amount));
    m.insert("AmountCredited".into(), money(Decimal::ZERO));
    m.insert(
        "CurrencyCode".into(),
        json!(if inv.currency_code.is_empty() {
            "AUD"
        } else {
            inv.currency_code.as_str()
        }),
    );
    m.insert("CurrencyRate".into(), money(Decimal::ONE));
    if let Some(u) = inv.updated {
        m.insert("UpdatedDateUTC".into(), json!(ms(u)));
    }
    m.insert("HasAttachments".into(), json!(false));
    m.insert("IsDiscounted".into(), json!(false));
    m.insert("HasErrors".into(), json!(false));
    Value::Object(m)
}

fn get_invoices(org: &XeroOrg, req: &ApiReq<'_>, one: Option<&str>) -> Response {
    if let Some(id) = one {
        // By InvoiceID or InvoiceNumber.
        return match org.invoices.iter().find(|i| {
            i.invoice_id.eq_ignore_ascii_case(id)
                || i.invoice_number
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(id))
        }) {
            Some(i) => xero_json(
                StatusCode::OK,
                &wrapped("Invoices", vec![invoice_json(org, i, true)], None),
            ),
            None => gateway(
                StatusCode::NOT_FOUND,
                "NotFound",
                "The resource you're looking for cannot be found",
            ),
        };
    }
    let paging = match paging(req) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let summary = bool_param(req, "summaryOnly");
    // Unpaged lists come without line items, as Xero's do (§7.6 recommends paging).
    let with_lines = paging.is_some() && !summary;
    let ids = list_param(req, "IDs");
    let numbers = list_param(req, "InvoiceNumbers");
    let contacts = list_param(req, "ContactIDs");
    let statuses = list_param(req, "Statuses");
    let mine = bool_param(req, "createdByMyApp");
    let since = modified_since(req);
    let search = api_param(&req.params, "searchTerm")
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty());
    let items: Vec<Value> = org
        .invoices
        .iter()
        .filter(|i| {
            ids.as_ref()
                .is_none_or(|v| v.contains(&i.invoice_id.to_ascii_lowercase()))
        })
        .filter(|i| {
            numbers.as_ref().is_none_or(|v| {
                i.invoice_number
                    .as_ref()
                    .is_some_and(|n| v.contains(&n.to_ascii_lowercase()))
            })
        })
        .filter(|i| {
            contacts
                .as_ref()
                .is_none_or(|v| v.contains(&i.contact_id.to_ascii_lowercase()))
        })
        .filter(|i| {
            statuses
                .as_ref()
                .is_none_or(|v| v.contains(&i.status.to_ascii_lowercase()))
        })
        .filter(|i| !mine || i.created_by_app)
        .filter(|i| since.is_none_or(|s| i.updated.is_some_and(|u| u > s)))
        .filter(|i| {
            search.as_ref().is_none_or(|t| {
                i.invoice_number
                    .as_ref()
                    .is_some_and(|n| n.to_lowercase().contains(t.as_str()))
                    || i.reference
                        .as_ref()
                        .is_some_and(|r| r.to_lowercase().contains(t.as_str()))
            })
        })
        .map(|i| invoice_json(org, i, with_lines))
        .collect();
    let mut items = match apply_where(req, INVOICE_FIELDS, items) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    if let Err(r) = apply_order(req, INVOICE_FIELDS, &["Date", "InvoiceID"], &mut items) {
        return *r;
    }
    let (page, pagination) = paginate(items, &paging);
    xero_json(StatusCode::OK, &wrapped("Invoices", page, pagination))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// PUT: create only.
    Create,
    /// POST: create, or update when InvoiceID / InvoiceNumber matches.
    Upsert,
}

/// PUT/POST `/Invoices` (§7.6, §7.7): all-or-nothing with `summarizeErrors=true` (default),
/// per item with `summarizeErrors=false`. Returns the response and (created, updated) counts.
fn write_invoices(
    org: &mut XeroOrg,
    req: &ApiReq<'_>,
    mode: Mode,
    path_id: Option<&str>,
) -> (StatusCode, Value, u64, u64) {
    let invalid = |m: &str| {
        (
            StatusCode::BAD_REQUEST,
            validation_body(m, Vec::new()),
            0,
            0,
        )
    };
    let summarize = !api_param(&req.params, "summarizeErrors")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    let body: Value = match serde_json::from_slice(req.body) {
        Ok(v) => v,
        Err(e) => {
            // [UNCONFIRMED] Xero's body for unreadable JSON.
            let body = json!({"ErrorNumber": 14, "Type": "PostDataInvalidException",
                "Message": format!("The request body is not valid JSON for Invoices: {e}.")});
            return (StatusCode::BAD_REQUEST, body, 0, 0);
        }
    };
    let items: Vec<Value> = match &body {
        Value::Object(m) => match m
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Invoices"))
            .map(|(_, v)| v)
        {
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return invalid("Invoices must be an array."),
            None => vec![body.clone()],
        },
        Value::Array(a) => a.clone(),
        _ => return invalid("The body must be {\"Invoices\":[...]}."),
    };
    if items.is_empty() {
        return invalid("No invoices were given.");
    }
    // Changes go straight into the organisation with an undo log (not onto a copy of it: an
    // organisation with thousands of invoices made every batch cost a full clone), so an
    // all-or-nothing request that fails is rolled back exactly.
    let original_len = org.invoices.len();
    let mut undo: Vec<(usize, XeroInvoice)> = Vec::new();
    let mut last_number = max_invoice_number(org);
    let mut out = Vec::new();
    let mut failed = Vec::new();
    let (mut created, mut updated) = (0, 0);
    for item in &items {
        match prepare(org, item, mode, path_id) {
            Ok(Prepared { invoice, existing }) => {
                let mut invoice = invoice;
                if invoice.invoice_type == "ACCREC" && invoice.invoice_number.is_none() {
                    last_number += 1;
                    invoice.invoice_number = Some(format!("INV-{last_number:04}"));
                }
                if let Some(n) = invoice
                    .invoice_number
                    .as_deref()
                    .and_then(invoice_number_value)
                {
                    last_number = last_number.max(n);
                }
                match existing {
                    Some(i) => {
                        let old = std::mem::replace(&mut org.invoices[i], invoice.clone());
                        if i < original_len {
                            undo.push((i, old));
                        }
                        updated += 1;
                    }
                    None => {
                        org.invoices.push(invoice.clone());
                        created += 1;
                    }
                }
                let mut v = invoice_json(org, &invoice, true);
                if !summarize && let Value::Object(m) = &mut v {
                    m.insert("StatusAttributeString".into(), json!("OK"));
                }
                out.push(v);
            }
            Err((echo, errors)) => {
                let mut v = echo;
                if let Value::Object(m) = &mut v {
                    m.insert("HasErrors".into(), json!(true));
                    if !summarize {
                        m.insert("StatusAttributeString".into(), json!("ERROR"));
                    }
                    m.insert(
                        "ValidationErrors".into(),
                        Value::Array(errors.iter().map(|e| json!({ "Message": e })).collect()),
                    );
                }
                failed.push(v.clone());
                out.push(v);
            }
        }
    }
    if summarize && !failed.is_empty() {
        // Undo in reverse: the first value saved for an invoice is its original.
        for (i, old) in undo.into_iter().rev() {
            org.invoices[i] = old;
        }
        org.invoices.truncate(original_len);
        return (
            StatusCode::BAD_REQUEST,
            validation_body("A validation exception occurred", failed),
            0,
            0,
        );
    }
    (
        StatusCode::OK,
        wrapped("Invoices", out, None),
        created,
        updated,
    )
}

/// `INV-0042` → 42.
fn invoice_number_value(n: &str) -> Option<u64> {
    n.strip_prefix("INV-")?.parse().ok()
}

/// The highest `INV-n` number in the organisation (0 when none): the next sales invoice gets
/// the one after.
fn max_invoice_number(org: &XeroOrg) -> u64 {
    org.invoices
        .iter()
        .filter_map(|i| i.invoice_number.as_deref())
        .filter_map(invoice_number_value)
        .max()
        .unwrap_or(0)
}

struct Prepared {
    invoice: XeroInvoice,
    existing: Option<usize>,
}

/// One submitted invoice merged onto the stored one (or a new one), validated. On failure:
/// the element to echo and its validation messages.
fn prepare(
    org: &XeroOrg,
    item: &Value,
    mode: Mode,
    path_id: Option<&str>,
) -> Result<Prepared, (Value, Vec<String>)> {
    const ZERO_ID: &str = "00000000-0000-0000-0000-000000000000";
    let empty = Map::new();
    let m = item.as_object().unwrap_or(&empty);
    let get = |k: &str| {
        m.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    };
    let text = |k: &str| get(k).and_then(Value::as_str).map(|s| s.trim().to_string());
    let mut errors: Vec<String> = Vec::new();
    if !item.is_object() {
        errors.push("Each invoice must be a JSON object.".into());
    }
    let mut echo = Map::new();
    for k in [
        "Type",
        "InvoiceNumber",
        "Reference",
        "Status",
        "Contact",
        "Date",
        "DueDate",
    ] {
        if let Some(v) = get(k) {
            echo.insert(k.to_string(), v.clone());
        }
    }
    let fail = |mut echo: Map<String, Value>, id: &str, errors: Vec<String>| {
        echo.insert("InvoiceID".into(), json!(id));
        Err((Value::Object(echo), errors))
    };

    // Which stored invoice this is, if any.
    let given_id = path_id.map(str::to_string).or_else(|| text("InvoiceID"));
    let given_type = text("Type").map(|t| t.to_ascii_uppercase());
    let given_number = text("InvoiceNumber").filter(|n| !n.is_empty());
    let mut existing = None;
    if let Some(id) = &given_id {
        match org.invoices.iter().position(|i| {
            i.invoice_id.eq_ignore_ascii_case(id)
                || (path_id.is_some()
                    && i.invoice_number
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(id)))
        }) {
            Some(i) if mode == Mode::Upsert => existing = Some(i),
            Some(_) => {
                errors.push(format!(
                    "Invoice {id} already exists; PUT only creates invoices, update it with POST."
                ));
            }
            None => {
                errors.push(format!("Invoice {id} could not be found."));
                return fail(echo, id, errors);
            }
        }
    } else if let Some(n) = &given_number {
        let same = org.invoices.iter().position(|i| {
            i.invoice_number
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(n))
                && given_type.as_ref().is_none_or(|t| *t == i.invoice_type)
                && !matches!(i.status.as_str(), "DELETED" | "VOIDED")
        });
        match same {
            Some(i) if mode == Mode::Upsert => existing = Some(i),
            Some(i) if org.invoices[i].invoice_type == "ACCREC" => {
                errors.push("Invoice # must be unique.".into());
            }
            _ => {}
        }
    }
    let mut inv = match existing {
        Some(i) => org.invoices[i].clone(),
        None => XeroInvoice {
            invoice_id: util::guid(),
            status: "DRAFT".into(),
            line_amount_types: "Exclusive".into(),
            currency_code: "AUD".into(),
            date: Some(Utc::now().date_naive()),
            created_by_app: true,
            ..XeroInvoice::default()
        },
    };
    let echo_id = if existing.is_some() {
        inv.invoice_id.clone()
    } else {
        ZERO_ID.to_string()
    };
    let old_status = inv.status.clone();
    // Only DRAFT and SUBMITTED invoices can be edited; AUTHORISED ones can only be voided.
    if existing.is_some() && !matches!(old_status.as_str(), "DRAFT" | "SUBMITTED") {
        let voiding = old_status == "AUTHORISED"
            && text("Status").is_some_and(|s| s.eq_ignore_ascii_case("VOIDED"));
        if !voiding {
            errors.push("Invoice not of valid status for modification".into());
            return fail(echo, &echo_id, errors);
        }
        inv.status = "VOIDED".into();
        inv.updated = Some(Utc::now());
        return if errors.is_empty() {
            Ok(Prepared {
                invoice: inv,
                existing,
            })
        } else {
            fail(echo, &echo_id, errors)
        };
    }

    match (&given_type, existing) {
        (Some(t), _) if t != "ACCREC" && t != "ACCPAY" => errors.push(format!(
            "'{t}' is not a Type this simulator takes on Invoices (ACCREC or ACCPAY)."
        )),
        (Some(t), Some(_)) if *t != inv.invoice_type => {
            errors.push("The Type of an existing invoice cannot be changed.".into())
        }
        (Some(t), None) => inv.invoice_type = t.clone(),
        (None, None) => errors.push("Invoice Type must be specified".into()),
        _ => {}
    }
    if let Some(c) = get("Contact") {
        let id = c
            .get("ContactID")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let name = c
            .get("Name")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty());
        // [Deviation] Real Xero creates a contact for an unknown Name; the sim requires an
        // existing contact so a mapping mistake shows up.
        let found = match (id, name) {
            (Some(id), _) => org
                .contacts
                .iter()
                .find(|x| x.contact_id.eq_ignore_ascii_case(id)),
            (None, Some(n)) => org.contacts.iter().find(|x| x.name.eq_ignore_ascii_case(n)),
            (None, None) => None,
        };
        match found {
            Some(x) => inv.contact_id = x.contact_id.clone(),
            None => errors.push(match (id, name) {
                (Some(id), _) => format!("The contact with ContactID {id} does not exist."),
                (None, Some(n)) => format!("The contact '{n}' does not exist."),
                _ => "The Contact needs a ContactID or a Name.".into(),
            }),
        }
    } else if existing.is_none() {
        errors.push("A Contact must be specified for this type of transaction".into());
    }
    for (key, slot) in [("Date", &mut inv.date), ("DueDate", &mut inv.due_date)] {
        if let Some(v) = get(key) {
            match v.as_str().and_then(parse_xero_date) {
                Some(d) => *slot = Some(d),
                None => errors.push(format!("{key} is not a valid date: {v}.")),
            }
        }
    }
    if let Some(l) = text("LineAmountTypes") {
        match ["Exclusive", "Inclusive", "NoTax"]
            .iter()
            .find(|x| x.eq_ignore_ascii_case(&l))
        {
            Some(x) => inv.line_amount_types = (*x).to_string(),
            None => errors.push(format!(
                "LineAmountTypes must be Exclusive, Inclusive or NoTax, not '{l}'."
            )),
        }
    }
    if let Some(s) = text("Status").map(|s| s.to_ascii_uppercase()) {
        let allowed = match existing {
            None => matches!(s.as_str(), "DRAFT" | "SUBMITTED" | "AUTHORISED"),
            Some(_) => matches!(s.as_str(), "DRAFT" | "SUBMITTED" | "AUTHORISED" | "DELETED"),
        };
        if allowed {
            inv.status = s;
        } else {
            errors.push(format!("Status '{s}' cannot be set here."));
        }
    }
    if let Some(r) = get("Reference") {
        inv.reference = r.as_str().map(str::to_string);
    }
    if let Some(c) = text("CurrencyCode") {
        if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) {
            inv.currency_code = c.to_ascii_uppercase();
        } else {
            errors.push(format!("'{c}' is not a currency code."));
        }
    }
    if let Some(n) = given_number {
        if existing.is_some()
            && inv.invoice_type == "ACCREC"
            && org.invoices.iter().any(|i| {
                i.invoice_id != inv.invoice_id
                    && i.invoice_type == "ACCREC"
                    && i.invoice_number
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(&n))
            })
        {
            errors.push("Invoice # must be unique.".into());
        }
        inv.invoice_number = Some(n);
    }
    if let Some(lines) = get("LineItems") {
        match lines.as_array() {
            None => errors.push("LineItems must be an array.".into()),
            Some(lines) => {
                let mut parsed = Vec::new();
                for l in lines {
                    parsed.push(line_item(org, l, &inv, &mut errors));
                }
                inv.line_items = parsed;
            }
        }
    }
    if matches!(inv.status.as_str(), "SUBMITTED" | "AUTHORISED") {
        if inv.line_items.is_empty() {
            errors.push(
                "An invoice must have at least one line item before it is submitted or approved."
                    .into(),
            );
        }
        if inv.line_items.iter().any(|l| l.account_code.is_none()) {
            errors.push(
                "An account code must be given on every line of a submitted or approved invoice."
                    .into(),
            );
        }
    }
    inv.updated = Some(Utc::now());
    if errors.is_empty() {
        Ok(Prepared {
            invoice: inv,
            existing,
        })
    } else {
        fail(echo, &echo_id, errors)
    }
}

/// One line item, validated: AccountCode an active account, TaxType known (default: the
/// account's), Quantity × UnitAmount (or LineAmount alone).
fn line_item(
    org: &XeroOrg,
    l: &Value,
    inv: &XeroInvoice,
    errors: &mut Vec<String>,
) -> XeroLineItem {
    let empty = Map::new();
    let m = l.as_object().unwrap_or(&empty);
    let get = |k: &str| {
        m.iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    };
    let text = |k: &str| get(k).and_then(Value::as_str).map(|s| s.trim().to_string());
    // Bounds keep every total far inside Decimal's range.
    let limit = Decimal::new(1_000_000_000_000, 0);
    let mut num = |k: &str| {
        let v = get(k)?;
        let d = match v {
            Value::Number(n) => Decimal::from_str(&n.to_string())
                .ok()
                .or_else(|| Decimal::from_scientific(&n.to_string()).ok()),
            Value::String(s) => Decimal::from_str(s.trim()).ok(),
            _ => None,
        };
        match d {
            None => errors.push(format!("{k} must be a number, not {v}.")),
            Some(d) if d.abs() > limit => errors.push(format!("{k} is too large.")),
            Some(d) => return Some(d),
        }
        None
    };
    let quantity = num("Quantity");
    let unit = num("UnitAmount");
    let line_amount = num("LineAmount");
    let (quantity, unit) = match (quantity, unit, line_amount) {
        (q, Some(u), _) => (q.unwrap_or(Decimal::ONE), u),
        (q, None, Some(a)) => {
            let q = q.unwrap_or(Decimal::ONE);
            let u = if q.is_zero() {
                Decimal::ZERO
            } else {
                a.checked_div(q).unwrap_or_default()
            };
            (q, u)
        }
        (q, None, None) => (q.unwrap_or(Decimal::ONE), Decimal::ZERO),
    };
    let mut tax_type = text("TaxType").map(|t| t.to_ascii_uppercase());
    let account_code = text("AccountCode").filter(|c| !c.is_empty());
    if let Some(code) = &account_code {
        match org
            .accounts
            .iter()
            .find(|a| a.code.eq_ignore_ascii_case(code))
            .filter(|a| a.status.is_empty() || a.status.eq_ignore_ascii_case("ACTIVE"))
        {
            Some(a) => {
                if tax_type.is_none() {
                    tax_type = a.tax_type.clone();
                }
            }
            // The message Xero gives (§7.7).
            None => errors.push(format!(
                "Account code '{code}' is not a valid code for this document."
            )),
        }
    }
    if let Some(t) = &tax_type
        && tax_rate(t).is_none()
    {
        errors.push(format!(
            "The TaxType code '{t}' does not exist or cannot be used for this type of transaction."
        ));
    }
    if inv.line_amount_types.eq_ignore_ascii_case("NoTax") && tax_type.is_none() {
        tax_type = Some("NONE".into());
    }
    XeroLineItem {
        line_item_id: text("LineItemID").unwrap_or_else(util::guid),
        description: text("Description").unwrap_or_default(),
        quantity,
        unit_amount: unit,
        item_code: text("ItemCode"),
        account_code,
        tax_type: tax_type.or_else(|| Some("NONE".into())),
    }
}

/// `yyyy-mm-dd`, `yyyy-mm-ddThh:mm:ss`, or `/Date(ms[+0000])/`.
fn parse_xero_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix("/Date(").and_then(|r| r.strip_suffix(")/")) {
        let digits: &str = inner
            .find(['+', '-'])
            .filter(|&i| i > 0)
            .map_or(inner, |i| &inner[..i]);
        let ms: i64 = digits.parse().ok()?;
        return Utc
            .timestamp_millis_opt(ms)
            .single()
            .map(|d| d.date_naive());
    }
    let date = NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()?;
    let rest = s.get(10..)?;
    if rest.is_empty()
        || NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || DateTime::parse_from_rfc3339(s).is_ok()
    {
        Some(date)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// The `where` evaluator (§7.4–§7.6)
// ---------------------------------------------------------------------------------------------

/// Xero's `where` filter: the common C#-like forms (`Name=="x"`, `Name.Contains("x")`,
/// `IsCustomer==true`, `Contact.ContactID==guid("..")`, `Date>=DateTime(2026,5,1)`), joined
/// with `AND`/`OR`/`&&`/`||`, negated with `NOT`/`!`, grouped with parentheses. Text compares
/// case-insensitively. A query Xero could not parse is answered with 400 ValidationException
/// [Xero itself uses QueryParseException for some of these; UNCONFIRMED].
pub mod xwhere {
    use std::cmp::Ordering;
    use std::str::FromStr;

    use chrono::{NaiveDate, NaiveDateTime};
    use rust_decimal::Decimal;
    use rust_decimal::prelude::ToPrimitive;
    use serde_json::Value;

    const MAX_DEPTH: usize = 64;

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Ident(String),
        Str(String),
        Num(Decimal),
        LParen,
        RParen,
        Comma,
        Not,
        And,
        Or,
        Cmp(CmpOp),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CmpOp {
        Eq,
        Ne,
        Gt,
        Ge,
        Lt,
        Le,
    }

    impl CmpOp {
        fn text(self) -> &'static str {
            match self {
                CmpOp::Eq => "==",
                CmpOp::Ne => "!=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
            }
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    pub enum Lit {
        Null,
        Bool(bool),
        Num(Decimal),
        Str(String),
        /// Milliseconds since the epoch.
        Date(i64),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Method {
        Contains,
        StartsWith,
        EndsWith,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub enum Expr {
        And(Vec<Expr>),
        Or(Vec<Expr>),
        Not(Box<Expr>),
        Cmp(Vec<String>, CmpOp, Lit),
        Call(Vec<String>, Method, String),
        Bare(Vec<String>),
    }

    fn lex(s: &str) -> Result<Vec<Tok>, String> {
        let cs: Vec<char> = s.chars().collect();
        let mut i = 0;
        let mut out = Vec::new();
        while i < cs.len() {
            let c = cs[i];
            match c {
                c if c.is_whitespace() => i += 1,
                '(' => {
                    out.push(Tok::LParen);
                    i += 1;
                }
                ')' => {
                    out.push(Tok::RParen);
                    i += 1;
                }
                ',' => {
                    out.push(Tok::Comma);
                    i += 1;
                }
                '"' => {
                    let mut t = String::new();
                    i += 1;
                    loop {
                        match cs.get(i) {
                            None => {
                                return Err(
                                    "A text value in where is missing its closing quote.".into()
                                );
                            }
                            Some('\\') => {
                                if let Some(n) = cs.get(i + 1) {
                                    t.push(*n);
                                }
                                i += 2;
                            }
                            Some('"') => {
                                i += 1;
                                break;
                            }
                            Some(ch) => {
                                t.push(*ch);
                                i += 1;
                            }
                        }
                    }
                    out.push(Tok::Str(t));
                }
                '=' | '!' | '<' | '>' => {
                    let next = cs.get(i + 1).copied();
                    let (tok, len) = match (c, next) {
                        ('=', Some('=')) => (Tok::Cmp(CmpOp::Eq), 2),
                        ('=', _) => (Tok::Cmp(CmpOp::Eq), 1),
                        ('!', Some('=')) => (Tok::Cmp(CmpOp::Ne), 2),
                        ('!', _) => (Tok::Not, 1),
                        ('<', Some('=')) => (Tok::Cmp(CmpOp::Le), 2),
                        ('<', Some('>')) => (Tok::Cmp(CmpOp::Ne), 2),
                        ('<', _) => (Tok::Cmp(CmpOp::Lt), 1),
                        ('>', Some('=')) => (Tok::Cmp(CmpOp::Ge), 2),
                        _ => (Tok::Cmp(CmpOp::Gt), 1),
                    };
                    out.push(tok);
                    i += len;
                }
                '&' | '|' => {
                    if cs.get(i + 1) != Some(&c) {
                        return Err(format!("Unexpected '{c}' in where; use && or ||."));
                    }
                    out.push(if c == '&' { Tok::And } else { Tok::Or });
                    i += 2;
                }
                c if c.is_ascii_digit()
                    || (c == '-' && cs.get(i + 1).is_some_and(char::is_ascii_digit)) =>
                {
                    let start = i;
                    i += 1;
                    while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                        i += 1;
                    }
                    let t: String = cs[start..i].iter().collect();
                    let t = t.trim_end_matches(['m', 'M']);
                    if cs.get(i).is_some_and(|c| *c == 'm' || *c == 'M') {
                        i += 1;
                    }
                    let n = Decimal::from_str(t)
                        .map_err(|_| format!("'{t}' is not a number in where."))?;
                    out.push(Tok::Num(n));
                }
                c if c.is_alphabetic() || c == '_' => {
                    let start = i;
                    while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_' || cs[i] == '.')
                    {
                        i += 1;
                    }
                    let t: String = cs[start..i].iter().collect();
                    out.push(match t.to_ascii_uppercase().as_str() {
                        "AND" => Tok::And,
                        "OR" => Tok::Or,
                        "NOT" => Tok::Not,
                        _ => Tok::Ident(t),
                    });
                }
                other => return Err(format!("Unexpected '{other}' in where.")),
            }
        }
        Ok(out)
    }

    struct Parser {
        toks: Vec<Tok>,
        pos: usize,
        depth: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<&Tok> {
            self.toks.get(self.pos)
        }
        fn next(&mut self) -> Option<Tok> {
            let t = self.toks.get(self.pos).cloned();
            self.pos += 1;
            t
        }
        fn expect(&mut self, t: &Tok, what: &str) -> Result<(), String> {
            if self.next().as_ref() == Some(t) {
                Ok(())
            } else {
                Err(format!("Expected {what} in where."))
            }
        }
        fn enter(&mut self) -> Result<(), String> {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                Err("The where clause is nested too deeply.".into())
            } else {
                Ok(())
            }
        }

        fn or(&mut self) -> Result<Expr, String> {
            self.enter()?;
            let mut items = vec![self.and()?];
            while self.peek() == Some(&Tok::Or) {
                self.pos += 1;
                items.push(self.and()?);
            }
            self.depth -= 1;
            Ok(if items.len() == 1 {
                items.remove(0)
            } else {
                Expr::Or(items)
            })
        }

        fn and(&mut self) -> Result<Expr, String> {
            let mut items = vec![self.unary()?];
            while self.peek() == Some(&Tok::And) {
                self.pos += 1;
                items.push(self.unary()?);
            }
            Ok(if items.len() == 1 {
                items.remove(0)
            } else {
                Expr::And(items)
            })
        }

        fn unary(&mut self) -> Result<Expr, String> {
            if self.peek() == Some(&Tok::Not) {
                self.pos += 1;
                self.enter()?;
                let e = Expr::Not(Box::new(self.unary()?));
                self.depth -= 1;
                return Ok(e);
            }
            self.primary()
        }

        fn primary(&mut self) -> Result<Expr, String> {
            match self.next() {
                Some(Tok::LParen) => {
                    let e = self.or()?;
                    self.expect(&Tok::RParen, "a closing parenthesis")?;
                    Ok(e)
                }
                Some(Tok::Ident(name)) => self.term(name),
                Some(t) => Err(format!("Expected a field name in where, found {t:?}.")),
                None => Err("The where clause ends too early.".into()),
            }
        }

        fn term(&mut self, name: String) -> Result<Expr, String> {
            let mut path: Vec<String> = name.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("'{name}' is not a field name."));
            }
            if self.peek() == Some(&Tok::LParen) {
                let method = path.pop().unwrap_or_default();
                let m = match method.to_ascii_lowercase().as_str() {
                    "contains" => Method::Contains,
                    "startswith" => Method::StartsWith,
                    "endswith" => Method::EndsWith,
                    _ => {
                        return Err(format!(
                            "'{method}' is not a method where understands (Contains, StartsWith, EndsWith)."
                        ));
                    }
                };
                if path.is_empty() {
                    return Err(format!("{method} needs a field: Name.{method}(\"text\")."));
                }
                self.pos += 1;
                let arg = match self.next() {
                    Some(Tok::Str(s)) => s,
                    _ => return Err(format!("{method} takes one text value in quotes.")),
                };
                self.expect(&Tok::RParen, "a closing parenthesis")?;
                return Ok(Expr::Call(path, m, arg));
            }
            match self.peek() {
                Some(Tok::Cmp(op)) => {
                    let op = *op;
                    self.pos += 1;
                    let lit = self.literal()?;
                    Ok(Expr::Cmp(path, op, lit))
                }
                _ => Ok(Expr::Bare(path)),
            }
        }

        fn literal(&mut self) -> Result<Lit, String> {
            match self.next() {
                Some(Tok::Str(s)) => Ok(Lit::Str(s)),
                Some(Tok::Num(n)) => Ok(Lit::Num(n)),
                Some(Tok::Ident(id)) => match id.to_ascii_lowercase().as_str() {
                    "true" => Ok(Lit::Bool(true)),
                    "false" => Ok(Lit::Bool(false)),
                    "null" => Ok(Lit::Null),
                    "guid" => {
                        self.expect(&Tok::LParen, "( after Guid")?;
                        let s = match self.next() {
                            Some(Tok::Str(s)) => s,
                            _ => return Err("Guid takes one quoted value.".into()),
                        };
                        self.expect(&Tok::RParen, "a closing parenthesis")?;
                        if uuid::Uuid::parse_str(&s).is_err() {
                            return Err(format!("'{s}' is not a GUID."));
                        }
                        Ok(Lit::Str(s))
                    }
                    "datetime" => {
                        self.expect(&Tok::LParen, "( after DateTime")?;
                        let mut parts = Vec::new();
                        loop {
                            match self.next() {
                                Some(Tok::Num(n)) => parts.push(n),
                                _ => {
                                    return Err(
                                        "DateTime takes numbers: DateTime(2026, 05, 01).".into()
                                    );
                                }
                            }
                            match self.next() {
                                Some(Tok::Comma) => continue,
                                Some(Tok::RParen) => break,
                                _ => {
                                    return Err(
                                        "DateTime takes numbers separated by commas.".into()
                                    );
                                }
                            }
                        }
                        let n: Vec<u32> = parts
                            .iter()
                            .map(|d| d.trunc().to_u32().unwrap_or(u32::MAX))
                            .collect();
                        let date = match n.as_slice() {
                            [y, m, d] | [y, m, d, ..] if n.len() == 3 || n.len() == 6 => {
                                NaiveDate::from_ymd_opt(i32::try_from(*y).unwrap_or(0), *m, *d)
                            }
                            _ => None,
                        };
                        let (h, mi, s) = match n.as_slice() {
                            [_, _, _, h, mi, s] => (*h, *mi, *s),
                            _ => (0, 0, 0),
                        };
                        let dt = date
                            .and_then(|d| d.and_hms_opt(h, mi, s))
                            .ok_or("DateTime(...) is not a valid date.")?;
                        Ok(Lit::Date(dt.and_utc().timestamp_millis()))
                    }
                    _ => Err(format!("'{id}' is not a value; quote text as \"{id}\".")),
                },
                _ => Err("Expected a value after the comparison in where.".into()),
            }
        }
    }

    /// Parse a `where` clause.
    pub fn parse(s: &str) -> Result<Expr, String> {
        let toks = lex(s)?;
        let mut p = Parser {
            toks,
            pos: 0,
            depth: 0,
        };
        let e = p.or()?;
        if p.pos < p.toks.len() {
            return Err("The where clause has extra text after a complete condition.".into());
        }
        Ok(e)
    }

    /// Every field named must exist on the entity (the first segment of a path).
    pub fn check_fields(e: &Expr, known: &[&str]) -> Result<(), String> {
        let check = |p: &[String]| {
            let first = p.first().map(String::as_str).unwrap_or("");
            if known.iter().any(|k| k.eq_ignore_ascii_case(first)) {
                Ok(())
            } else {
                Err(format!("No property or field '{first}' exists."))
            }
        };
        match e {
            Expr::And(items) | Expr::Or(items) => {
                items.iter().try_for_each(|i| check_fields(i, known))
            }
            Expr::Not(a) => check_fields(a, known),
            Expr::Cmp(p, _, _) | Expr::Call(p, _, _) | Expr::Bare(p) => check(p),
        }
    }

    fn lookup<'a>(rec: &'a Value, path: &[String]) -> &'a Value {
        let mut v = rec;
        for seg in path {
            v = match v {
                Value::Object(m) => m
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(seg))
                    .map_or(&Value::Null, |(_, v)| v),
                _ => &Value::Null,
            };
        }
        v
    }

    /// A record value: `/Date(ms+0000)/` strings are dates.
    #[derive(Debug, PartialEq)]
    enum Rv {
        Null,
        Bool(bool),
        Num(Decimal),
        Str(String),
        Date(i64),
    }

    fn rv(v: &Value) -> Rv {
        match v {
            Value::Null => Rv::Null,
            Value::Bool(b) => Rv::Bool(*b),
            Value::Number(n) => Decimal::from_str(&n.to_string())
                .ok()
                .or_else(|| Decimal::from_scientific(&n.to_string()).ok())
                .map_or(Rv::Null, Rv::Num),
            Value::String(s) => match date_ms(s) {
                Some(ms) => Rv::Date(ms),
                None => Rv::Str(s.to_lowercase()),
            },
            _ => Rv::Str(v.to_string().to_lowercase()),
        }
    }

    fn date_ms(s: &str) -> Option<i64> {
        let inner = s.strip_prefix("/Date(")?.strip_suffix(")/")?;
        let end = inner
            .find(['+', '-'])
            .filter(|&i| i > 0)
            .unwrap_or(inner.len());
        inner.get(..end)?.parse().ok()
    }

    fn type_name(r: &Rv) -> &'static str {
        match r {
            Rv::Null => "Null",
            Rv::Bool(_) => "Boolean",
            Rv::Num(_) => "Decimal",
            Rv::Str(_) => "String",
            Rv::Date(_) => "DateTime",
        }
    }

    fn lit_name(l: &Lit) -> &'static str {
        match l {
            Lit::Null => "Null",
            Lit::Bool(_) => "Boolean",
            Lit::Num(_) => "Decimal",
            Lit::Str(_) => "String",
            Lit::Date(_) => "DateTime",
        }
    }

    /// Evaluate on one record (a wire object); a type mismatch is an error.
    pub fn eval(e: &Expr, rec: &Value) -> Result<bool, String> {
        Ok(match e {
            Expr::And(items) => {
                for i in items {
                    if !eval(i, rec)? {
                        return Ok(false);
                    }
                }
                true
            }
            Expr::Or(items) => {
                for i in items {
                    if eval(i, rec)? {
                        return Ok(true);
                    }
                }
                false
            }
            Expr::Not(a) => !eval(a, rec)?,
            Expr::Bare(p) => match rv(lookup(rec, p)) {
                Rv::Bool(b) => b,
                Rv::Null => false,
                other => {
                    return Err(format!(
                        "'{}' is a {}, not a Boolean; compare it with == or !=.",
                        p.join("."),
                        type_name(&other)
                    ));
                }
            },
            Expr::Call(p, m, arg) => match rv(lookup(rec, p)) {
                Rv::Null => false,
                Rv::Str(s) => {
                    let a = arg.to_lowercase();
                    match m {
                        Method::Contains => s.contains(&a),
                        Method::StartsWith => s.starts_with(&a),
                        Method::EndsWith => s.ends_with(&a),
                    }
                }
                other => {
                    return Err(format!(
                        "'{}' is a {}; text methods need a String.",
                        p.join("."),
                        type_name(&other)
                    ));
                }
            },
            Expr::Cmp(p, op, lit) => {
                let r = rv(lookup(rec, p));
                let ord = match (&r, lit) {
                    (Rv::Null, Lit::Null) => Some(Ordering::Equal),
                    (Rv::Null, _) | (_, Lit::Null) => None,
                    (Rv::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
                    (Rv::Num(a), Lit::Num(b)) => Some(a.cmp(b)),
                    (Rv::Str(a), Lit::Str(b)) => Some(a.as_str().cmp(b.to_lowercase().as_str())),
                    (Rv::Date(a), Lit::Date(b)) => Some(a.cmp(b)),
                    (Rv::Date(a), Lit::Str(b)) => {
                        let b = NaiveDateTime::parse_from_str(b, "%Y-%m-%dT%H:%M:%S")
                            .ok()
                            .or_else(|| {
                                NaiveDate::parse_from_str(b, "%Y-%m-%d")
                                    .ok()
                                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                            })
                            .ok_or_else(|| format!("'{b}' is not a date to compare with."))?;
                        Some(a.cmp(&b.and_utc().timestamp_millis()))
                    }
                    _ => {
                        return Err(format!(
                            "Operator '{}' incompatible with operand types '{}' and '{}'.",
                            op.text(),
                            type_name(&r),
                            lit_name(lit)
                        ));
                    }
                };
                match (op, ord) {
                    (CmpOp::Eq, o) => o == Some(Ordering::Equal),
                    (CmpOp::Ne, o) => o != Some(Ordering::Equal),
                    (_, None) => false,
                    (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
                    (CmpOp::Ge, Some(o)) => o != Ordering::Less,
                    (CmpOp::Lt, Some(o)) => o == Ordering::Less,
                    (CmpOp::Le, Some(o)) => o != Ordering::Greater,
                }
            }
        })
    }

    /// A total order on wire values for `order` (nulls first; text case-insensitive).
    pub fn order_values(a: &Value, b: &Value) -> Ordering {
        let rank = |r: &Rv| match r {
            Rv::Null => 0,
            Rv::Bool(_) => 1,
            Rv::Num(_) => 2,
            Rv::Date(_) => 3,
            Rv::Str(_) => 4,
        };
        let (x, y) = (rv(a), rv(b));
        match (&x, &y) {
            (Rv::Bool(p), Rv::Bool(q)) => p.cmp(q),
            (Rv::Num(p), Rv::Num(q)) => p.cmp(q),
            (Rv::Date(p), Rv::Date(q)) => p.cmp(q),
            (Rv::Str(p), Rv::Str(q)) => p.cmp(q),
            _ => rank(&x).cmp(&rank(&y)),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;
        use serde_json::json;

        fn contact() -> Value {
            json!({"ContactID": "430FA14A-F945-44D3-9F97-5DF5E28441B8", "Name": "Contoso Pty Ltd",
                "ContactStatus": "ACTIVE", "IsCustomer": true, "IsSupplier": false,
                "UpdatedDateUTC": "/Date(1714348800000+0000)/", "Total": 775.23,
                "Contact": {"ContactID": "9b2c1e77-0000-4000-8000-000000000001", "Name": "X"}})
        }

        fn m(w: &str) -> bool {
            eval(&parse(w).unwrap(), &contact()).unwrap()
        }

        #[test]
        fn common_forms() {
            assert!(m(r#"Name=="Contoso Pty Ltd""#));
            assert!(m(r#"Name == "contoso pty ltd""#));
            assert!(!m(r#"Name!="Contoso Pty Ltd""#));
            assert!(m(r#"Name.Contains("pty")"#));
            assert!(m(r#"Name.StartsWith("Con") AND Name.EndsWith("Ltd")"#));
            assert!(m("IsCustomer==true"));
            assert!(m("IsCustomer"));
            assert!(!m("IsSupplier"));
            assert!(m("!IsSupplier && IsCustomer"));
            assert!(m(
                r#"ContactStatus=="ACTIVE" AND (IsSupplier==true OR IsCustomer==true)"#
            ));
            assert!(m(
                r#"ContactID==guid("430fa14a-f945-44d3-9f97-5df5e28441b8")"#
            ));
            assert!(m(
                r#"Contact.ContactID==Guid("9b2c1e77-0000-4000-8000-000000000001")"#
            ));
            assert!(m("UpdatedDateUTC>=DateTime(2024, 04, 29)"));
            assert!(!m("UpdatedDateUTC>DateTime(2024,04,29,00,00,01)"));
            assert!(m("Total > 700.5"));
            assert!(m("Total <= 775.23"));
            assert!(m("EmailAddress == null"));
            assert!(m(r#"NOT Name=="Fabrikam" OR IsSupplier"#));
        }

        #[test]
        fn mistakes_are_errors_not_matches() {
            for w in [
                r#"Name=="x"#,
                "Name==",
                "Name.Like(\"x\")",
                "(Name==\"x\"",
                "Name==\"x\" extra",
                "Name & \"x\"",
                "Name==Contoso",
                "DateTime(2024,1)",
                "UpdatedDateUTC>DateTime(2024,13,1)",
                "",
            ] {
                assert!(parse(w).is_err(), "{w}");
            }
            let e = parse(r#"IsCustomer=="yes""#).unwrap();
            let err = eval(&e, &contact()).unwrap_err();
            assert!(err.contains("incompatible"), "{err}");
            let e = parse(r#"Nme=="x""#).unwrap();
            assert!(check_fields(&e, &["Name"]).unwrap_err().contains("'Nme'"));
        }

        #[test]
        fn deep_nesting_is_refused_not_a_stack_overflow() {
            let w = format!("{}IsCustomer{}", "(".repeat(10_000), ")".repeat(10_000));
            assert!(parse(&w).is_err());
            let w = format!("{}IsCustomer", "!".repeat(10_000));
            assert!(parse(&w).is_err());
            // Long flat chains are fine (no recursion per condition).
            let w = vec!["IsCustomer"; 50_000].join(" AND ");
            assert!(m(&w));
            let w = vec!["IsSupplier"; 50_000].join(" || ");
            assert!(!m(&w));
        }

        proptest! {
            #[test]
            fn random_where_never_panics(s in r#"[A-Za-z0-9 ."()=!<>&|,\-_]{0,60}"#) {
                if let Ok(e) = parse(&s) {
                    let _ = check_fields(&e, &["Name", "IsCustomer"]);
                    let _ = eval(&e, &contact());
                }
            }

            #[test]
            fn any_text_never_panics(s in ".{0,80}") {
                if let Ok(e) = parse(&s) {
                    let _ = eval(&e, &contact());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org_with_a_draft_bill() -> XeroOrg {
        XeroOrg {
            tenant_id: "t".into(),
            contacts: vec![XeroContact {
                contact_id: "c-1".into(),
                name: "Dicker Data".into(),
                contact_status: "ACTIVE".into(),
                is_supplier: true,
                ..Default::default()
            }],
            accounts: vec![XeroAccount {
                code: "310".into(),
                status: "ACTIVE".into(),
                account_type: "DIRECTCOSTS".into(),
                ..Default::default()
            }],
            invoices: vec![XeroInvoice {
                invoice_id: "b-1".into(),
                invoice_type: "ACCPAY".into(),
                contact_id: "c-1".into(),
                invoice_number: Some("BILL-1".into()),
                status: "DRAFT".into(),
                line_amount_types: "Exclusive".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_refused_batch_leaves_the_organisation_as_it_was() {
        let mut org = org_with_a_draft_bill();
        let before = serde_json::to_value(&org).unwrap();
        let body = json!({"Invoices": [
            {"Type": "ACCPAY", "InvoiceNumber": "BILL-1", "Contact": {"ContactID": "c-1"},
             "LineItems": [{"Description": "x", "Quantity": 2, "UnitAmount": 3, "AccountCode": "310"}]},
            {"Type": "ACCREC", "Contact": {"ContactID": "c-1"}},
            {"Type": "ACCPAY", "Contact": {"ContactID": "nobody"}},
        ]})
        .to_string();
        let headers = HeaderMap::new();
        let req = ApiReq {
            method: &Method::POST,
            params: vec![],
            headers: &headers,
            body: body.as_bytes(),
        };
        let (status, _, created, updated) = write_invoices(&mut org, &req, Mode::Upsert, None);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!((created, updated), (0, 0));
        assert_eq!(serde_json::to_value(&org).unwrap(), before);
        // Item by item, the valid ones are kept and numbered from the highest before.
        let req = ApiReq {
            params: vec![("summarizeErrors".into(), "false".into())],
            ..req
        };
        org.invoices[0].invoice_number = Some("BILL-1".into());
        org.invoices.push(XeroInvoice {
            invoice_id: "r-7".into(),
            invoice_type: "ACCREC".into(),
            contact_id: "c-1".into(),
            invoice_number: Some("INV-0007".into()),
            status: "PAID".into(),
            ..Default::default()
        });
        let (status, _, created, updated) = write_invoices(&mut org, &req, Mode::Upsert, None);
        assert_eq!(status, StatusCode::OK);
        assert_eq!((created, updated), (1, 1));
        assert_eq!(org.invoices.len(), 3);
        assert_eq!(org.invoices[0].line_items.len(), 1);
        assert_eq!(org.invoices[2].invoice_number.as_deref(), Some("INV-0008"));
    }

    #[test]
    fn totals_follow_the_line_amount_type() {
        let mut inv = XeroInvoice {
            line_amount_types: "Exclusive".into(),
            line_items: vec![XeroLineItem {
                quantity: Decimal::new(25, 0),
                unit_amount: Decimal::new(2819, 2),
                tax_type: Some("INPUT".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = totals(&inv);
        assert_eq!(
            (t.sub_total, t.total_tax, t.total),
            (
                Decimal::new(70475, 2),
                Decimal::new(7048, 2),
                Decimal::new(77523, 2)
            )
        );
        inv.line_amount_types = "Inclusive".into();
        let t = totals(&inv);
        assert_eq!(t.total, Decimal::new(70475, 2));
        assert_eq!(t.total_tax, Decimal::new(6407, 2));
        inv.line_amount_types = "NoTax".into();
        assert_eq!(totals(&inv).total_tax, Decimal::ZERO);
    }

    #[test]
    fn tax_types_and_dates() {
        assert_eq!(tax_rate("output"), Some(Decimal::new(10, 2)));
        assert_eq!(tax_rate("EXEMPTOUTPUT"), Some(Decimal::ZERO));
        assert_eq!(tax_rate("EXEMPT"), None);
        assert_eq!(tax_rate("GST"), None);
        let d = NaiveDate::from_ymd_opt(2024, 4, 29);
        assert_eq!(parse_xero_date("2024-04-29"), d);
        assert_eq!(parse_xero_date("2024-04-29T00:00:00"), d);
        assert_eq!(parse_xero_date("/Date(1714348800000+0000)/"), d);
        assert_eq!(parse_xero_date("29/04/2024"), None);
        assert_eq!(parse_xero_date("2024-04-29junk"), None);
    }

    #[test]
    fn scopes_old_and_granular() {
        for s in [
            "openid",
            "offline_access",
            "accounting.transactions",
            "accounting.invoices.read",
            "accounting.reports.profitandloss.read",
        ] {
            assert!(valid_scope(s), "{s}");
        }
        for s in [
            "accounting..read",
            "Accounting.transactions",
            "admin",
            "accounting.x1",
        ] {
            assert!(!valid_scope(s), "{s}");
        }
    }
}
