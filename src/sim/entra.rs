//! Simulated Entra ID (the Microsoft identity platform v2.0), standing in for
//! `https://login.microsoftonline.com` (reference/external-apis.md §1).
//!
//! Endpoints, under the authority `/{tenant}` (§1.1):
//! - `POST /{tenant}/oauth2/v2.0/devicecode`: device authorization (§1.2);
//! - `GET  /{tenant}/oauth2/v2.0/authorize`: the sim signs in at once, as `login_hint` or the
//!   default admin, and redirects to the loopback redirect URI with a code (§1.3);
//! - `POST /{tenant}/oauth2/v2.0/token`: device_code, authorization_code (PKCE) and
//!   refresh_token grants (§1.2–§1.4), errors in the §1.5 body;
//! - `GET/POST /devicelogin`: a small page where a person approves a device code by hand
//!   (the sim's `verification_uri`).
//!
//! Every user who can sign in is a user of the MSP tenant. A token for a customer tenant is
//! issued to the partner user only while the customer has an active GDAP relationship
//! (§3.7), so one refresh token obtained at `organizations` yields tokens for every customer
//! tenant the MSP administers.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::faults::SimApi;
use super::tokens::{Grant, Issuer};
use super::util;
use super::world::{User, World};
use super::{Sim, SimInner, State};

/// Audience (resource) of Microsoft Graph tokens.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// Audience (resource) of Partner Center tokens (§1.7).
pub const PARTNER_CENTER_RESOURCE: &str = "https://api.partnercenter.microsoft.com";
/// Application ids of the two resources, accepted as `{appId}/scope` too.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
const PARTNER_CENTER_APP_ID: &str = "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd";
/// The permissions `https://graph.microsoft.com/.default` stands for: the sim models an app
/// registration consented for what cspsync reads (§1.7).
const GRAPH_DEFAULT_SCOPES: &[&str] = &[
    "User.Read",
    "User.Read.All",
    "Organization.Read.All",
    "DelegatedAdminRelationship.Read.All",
];
const OIDC_SCOPES: &[&str] = &["openid", "profile", "offline_access", "email"];

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Authorization codes live about 10 minutes (§1.3).
const AUTH_CODE_TTL: Duration = Duration::from_secs(600);
/// Refresh tokens are long-lived (§1.4: "lifetimes are not specified (long)"); the sim uses
/// the 90-day inactivity lifetime Microsoft applies to refresh tokens [UNCONFIRMED].
const REFRESH_TTL: Duration = Duration::from_secs(90 * 86_400);
/// RFC 8628 §3.5: `slow_down` adds 5 s to the interval for this and all later polls (§1.2).
const SLOW_DOWN_STEP_SECS: u64 = 5;
/// The polling interval never grows past an hour.
const MAX_INTERVAL_SECS: u64 = 3600;

/// Runtime records of this API that are not part of the dataset. Holds secrets (device
/// codes, authorization codes, refresh tokens), so its `Serialize` and `Debug` only count.
#[derive(Default)]
pub struct Runtime {
    device: HashMap<String, DeviceCode>,
    codes: HashMap<String, AuthCode>,
    refresh: HashMap<String, RefreshGrant>,
    device_codes_issued: u64,
    auth_codes_issued: u64,
    refresh_tokens_issued: u64,
    tokens_issued: u64,
}

/// What the state dump shows of [`Runtime`].
#[derive(Debug, Serialize)]
struct RuntimeView {
    device_codes_pending: usize,
    device_codes_issued: u64,
    auth_codes_outstanding: usize,
    auth_codes_issued: u64,
    refresh_tokens_live: usize,
    refresh_tokens_issued: u64,
    token_responses: u64,
}

impl Runtime {
    fn view(&self) -> RuntimeView {
        let now = Instant::now();
        RuntimeView {
            device_codes_pending: self
                .device
                .values()
                .filter(|d| d.outcome == Outcome::Pending && d.expires > now)
                .count(),
            device_codes_issued: self.device_codes_issued,
            auth_codes_outstanding: self.codes.values().filter(|c| !c.redeemed).count(),
            auth_codes_issued: self.auth_codes_issued,
            refresh_tokens_live: self.refresh.len(),
            refresh_tokens_issued: self.refresh_tokens_issued,
            token_responses: self.tokens_issued,
        }
    }

    /// Forget expired codes so a long run does not grow without bound.
    fn prune(&mut self) {
        let now = Instant::now();
        if self.device.len() > 1000 {
            self.device.retain(|_, d| d.expires > now);
        }
        if self.codes.len() > 1000 {
            self.codes.retain(|_, c| c.expires > now);
        }
        if self.refresh.len() > 50_000 {
            self.refresh.retain(|_, r| r.expires > now);
        }
    }
}

impl Serialize for Runtime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(s)
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Codes and refresh tokens are secrets: counts only.
        fmt::Debug::fmt(&self.view(), f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Pending,
    /// Approved by this user (object id).
    Approved(String),
    Declined,
}

struct DeviceCode {
    user_code: String,
    client_id: String,
    scope: String,
    issued: Instant,
    expires: Instant,
    /// Current polling interval in seconds (grows with `slow_down`).
    interval: u64,
    last_poll: Option<Instant>,
    outcome: Outcome,
}

struct AuthCode {
    client_id: String,
    redirect_uri: String,
    scope: String,
    user_id: String,
    challenge: Option<(String, String)>,
    nonce: Option<String>,
    expires: Instant,
    redeemed: bool,
}

struct RefreshGrant {
    user_id: String,
    client_id: String,
    /// The scopes of the original sign-in (used when a refresh names none).
    scope: String,
    expires: Instant,
}

pub fn router() -> Router<Sim> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/devicecode", post(devicecode))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route(
            "/devicelogin",
            get(devicelogin_page).post(devicelogin_submit),
        )
}

// ---------------------------------------------------------------------------------------------
// Errors (§1.5)

/// A token-endpoint error: `error`, the AADSTS number and its text.
#[derive(Debug, Clone)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    message: String,
}

impl OAuthError {
    fn new(error: &'static str, code: u32, message: impl Into<String>) -> Self {
        OAuthError {
            status: if error == "invalid_client" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            },
            error,
            code,
            message: message.into(),
        }
    }

    fn missing(param: &str) -> Self {
        OAuthError::new(
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{param}'."),
        )
    }

    /// The §1.5 body: `error`, `error_description` (AADSTS code, text, then Trace ID,
    /// Correlation ID and Timestamp lines), `error_codes`, `timestamp`, `trace_id`,
    /// `correlation_id`, plus `error_uri` (§1.5 notes the real service adds it).
    fn body(&self, origin: &str, correlation: &str) -> serde_json::Value {
        let ts = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
        let trace = util::guid();
        serde_json::json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}",
                self.code, self.message
            ),
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("{origin}/entra/error?code={}", self.code),
        })
    }

    fn response(&self, origin: &str, correlation: &str) -> Response {
        json_response(self.status, &self.body(origin, correlation), correlation)
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value, correlation: &str) -> Response {
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    if let Ok(v) = HeaderValue::from_str(correlation) {
        h.insert("client-request-id", v);
    }
    r
}

/// The correlation id: the client's `client-request-id` when it sent one (as Entra echoes it).
fn correlation(headers: &HeaderMap) -> String {
    util::header(headers, "client-request-id")
        .filter(|v| uuid::Uuid::parse_str(v).is_ok())
        .map(str::to_string)
        .unwrap_or_else(util::guid)
}

// ---------------------------------------------------------------------------------------------
// Tenants and users

/// What the `{tenant}` path segment names (§1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Authority {
    /// `organizations` or `common`: the user's home tenant (the MSP tenant).
    Home,
    /// `consumers`: personal Microsoft accounts only.
    Consumers,
    /// The MSP tenant, by id or verified domain.
    Msp,
    /// A customer tenant (index into `world.customers`), by id or domain.
    Customer(usize),
}

fn authority(world: &World, tenant: &str) -> Result<Authority, OAuthError> {
    let t = tenant.trim().to_ascii_lowercase();
    match t.as_str() {
        "organizations" | "common" => return Ok(Authority::Home),
        "consumers" => return Ok(Authority::Consumers),
        _ => {}
    }
    let msp = &world.msp;
    if !msp.tenant_id.is_empty() && msp.tenant_id.eq_ignore_ascii_case(&t)
        || msp
            .verified_domains
            .iter()
            .any(|d| d.name.eq_ignore_ascii_case(&t))
    {
        return Ok(Authority::Msp);
    }
    if let Some(i) = world.customers.iter().position(|c| {
        c.tenant_id.eq_ignore_ascii_case(&t)
            || c.domain.eq_ignore_ascii_case(&t)
            || c.custom_domains.iter().any(|d| d.eq_ignore_ascii_case(&t))
    }) {
        return Ok(Authority::Customer(i));
    }
    Err(OAuthError::new(
        "invalid_request",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    ))
}

/// The tenant a token for `user` at `auth` is issued in, or why none is (§3.7: customer
/// tenants only under an active GDAP relationship).
fn token_tenant(world: &World, auth: &Authority, user: &User) -> Result<String, OAuthError> {
    let home_idp = format!("https://sts.windows.net/{}/", world.msp.tenant_id);
    match auth {
        Authority::Home | Authority::Msp => Ok(world.msp.tenant_id.clone()),
        Authority::Consumers => Err(OAuthError::new(
            "invalid_grant",
            50020,
            format!(
                "User account '{}' from identity provider '{home_idp}' does not exist in tenant 'Microsoft Services' and cannot access the application in that tenant. The consumers authority accepts personal Microsoft accounts only.",
                user.user_principal_name
            ),
        )),
        Authority::Customer(i) => match world.customers.get(*i) {
            Some(c) if c.gdap_active => Ok(c.tenant_id.clone()),
            Some(c) => Err(OAuthError::new(
                "invalid_grant",
                50020,
                format!(
                    "User account '{}' from identity provider '{home_idp}' does not exist in tenant '{}' and cannot access the application '{}' in that tenant. The account needs to be added as an external user in the tenant first, or the partner needs an active GDAP relationship with the customer.",
                    user.user_principal_name, c.company_name, world.app.client_id
                ),
            )),
            None => Err(OAuthError::new(
                "invalid_request",
                90002,
                "Tenant not found.".to_string(),
            )),
        },
    }
}

/// The user the sim signs in when nobody is named: the first enabled MSP user holding the
/// Global admin or Admin agent role.
pub fn default_admin(world: &World) -> Option<&User> {
    world.msp.users.iter().find(|u| {
        u.account_enabled
            && u.partner_roles.iter().any(|r| {
                r.eq_ignore_ascii_case("GlobalAdmin") || r.eq_ignore_ascii_case("AdminAgent")
            })
    })
}

fn user_by_upn<'a>(world: &'a World, upn: &str) -> Option<&'a User> {
    let upn = upn.trim();
    world.msp.users.iter().find(|u| {
        u.user_principal_name.eq_ignore_ascii_case(upn)
            || u.mail
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(upn))
    })
}

fn user_by_id<'a>(world: &'a World, id: &str) -> Option<&'a User> {
    world.msp.users.iter().find(|u| u.id == id)
}

fn check_client(world: &World, client_id: Option<&str>) -> Result<String, OAuthError> {
    let client_id = client_id
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::missing("client_id"))?;
    if !client_id.eq_ignore_ascii_case(&world.app.client_id) {
        return Err(OAuthError::new(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                world.msp.display_name
            ),
        ));
    }
    Ok(client_id.to_string())
}

// ---------------------------------------------------------------------------------------------
// Scopes (§1.3, §1.4, §1.7)

/// The scopes of one request, reduced to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scopes {
    /// Token audience.
    resource: &'static str,
    /// Permission names on the resource (`User.Read`, `user_impersonation`).
    names: Vec<String>,
    openid: bool,
    offline_access: bool,
    email: bool,
}

impl Scopes {
    /// The `scope` of the token response: full scope URIs of the resource (§1.3 example).
    fn response_scope(&self) -> String {
        self.names
            .iter()
            .map(|n| format!("{}/{n}", self.resource))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Parse a space-separated scope list. The token is for the resource of the first non-OIDC
/// scope; scopes of other resources are dropped (§1.4: "If the requested scopes span several
/// resources, the token is issued for the first resource"). Only OIDC scopes → Graph
/// `User.Read`, as Entra does. Bare names (`User.Read`) are Graph permissions.
fn parse_scopes(raw: &str) -> Result<Scopes, OAuthError> {
    let mut resource: Option<&'static str> = None;
    let mut names: Vec<String> = Vec::new();
    let (mut openid, mut offline_access, mut email) = (false, false, false);
    for s in raw.split_whitespace() {
        let lower = s.to_ascii_lowercase();
        if OIDC_SCOPES.contains(&lower.as_str()) {
            match lower.as_str() {
                "openid" => openid = true,
                "offline_access" => offline_access = true,
                "email" => email = true,
                _ => {}
            }
            continue;
        }
        let (res, name) = split_scope(s)?;
        match resource {
            None => resource = Some(res),
            Some(r) if r != res => continue,
            Some(_) => {}
        }
        if name.is_empty() {
            return Err(invalid_scope(s));
        }
        if res == PARTNER_CENTER_RESOURCE {
            if name.eq_ignore_ascii_case("user_impersonation") || name == ".default" {
                push_unique(&mut names, "user_impersonation");
            } else {
                return Err(invalid_scope(s));
            }
        } else if name == ".default" {
            for n in GRAPH_DEFAULT_SCOPES {
                push_unique(&mut names, n);
            }
        } else {
            push_unique(&mut names, name);
        }
    }
    let resource = match resource {
        Some(r) => r,
        None => {
            names.push("User.Read".into());
            GRAPH_RESOURCE
        }
    };
    Ok(Scopes {
        resource,
        names,
        openid,
        offline_access,
        email,
    })
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x.eq_ignore_ascii_case(s)) {
        v.push(s.to_string());
    }
}

fn invalid_scope(s: &str) -> OAuthError {
    OAuthError::new(
        "invalid_scope",
        70011,
        format!(
            "The provided value for the input parameter 'scope' is not valid. The scope '{s}' is not valid."
        ),
    )
}

/// `https://graph.microsoft.com/User.Read` → (Graph, `User.Read`); `User.Read` → Graph;
/// `{appId}/name` for the two known app ids.
fn split_scope(s: &str) -> Result<(&'static str, &str), OAuthError> {
    let (res, name) = if let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    {
        match rest.split_once('/') {
            Some((host, name)) => (host.to_ascii_lowercase(), name),
            None => (rest.to_ascii_lowercase(), ""),
        }
    } else if let Some((app, name)) = s.split_once('/') {
        (app.to_ascii_lowercase(), name)
    } else {
        return Ok((GRAPH_RESOURCE, s));
    };
    match res.as_str() {
        "graph.microsoft.com" | GRAPH_APP_ID => Ok((GRAPH_RESOURCE, name)),
        "api.partnercenter.microsoft.com" | PARTNER_CENTER_APP_ID => {
            Ok((PARTNER_CENTER_RESOURCE, name))
        }
        _ => Err(OAuthError::new(
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {res} was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
            ),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Issuing tokens

fn token_ttl(sim: &SimInner) -> u64 {
    sim.faults.spec().token_ttl_secs.unwrap_or(3599)
}

/// What one token response is for.
struct SignIn<'a> {
    user_id: &'a str,
    auth: &'a Authority,
    scopes: &'a Scopes,
    /// The scopes the refresh token carries on (those of the original sign-in).
    consented_scope: &'a str,
    client_id: &'a str,
    nonce: Option<&'a str>,
    with_refresh: bool,
}

/// A successful token response (§1.3) for `user_id` at `auth`.
fn issue(
    sim: &SimInner,
    state: &mut State,
    req: SignIn<'_>,
) -> Result<serde_json::Value, OAuthError> {
    let SignIn {
        user_id,
        auth,
        scopes,
        consented_scope,
        client_id,
        nonce,
        with_refresh,
    } = req;
    let user = user_by_id(&state.world, user_id).cloned().ok_or_else(|| {
        OAuthError::new(
            "invalid_grant",
            50034,
            format!("The user account {user_id} does not exist in the directory."),
        )
    })?;
    if !user.account_enabled {
        return Err(OAuthError::new(
            "invalid_grant",
            50057,
            format!(
                "The user account {} is disabled. To sign in, an administrator must enable the account.",
                user.user_principal_name
            ),
        ));
    }
    let tenant_id = token_tenant(&state.world, auth, &user)?;
    let ttl = token_ttl(sim);
    let now = Utc::now();
    let exp = chrono::Duration::try_seconds(i64::try_from(ttl).unwrap_or(i64::MAX))
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
    let amr: Vec<&str> = if user.mfa {
        vec!["pwd", "mfa"]
    } else {
        vec!["pwd"]
    };
    let home = state.world.msp.tenant_id.clone();

    let mut access_claims = serde_json::json!({
        "aud": scopes.resource,
        "iss": format!("https://sts.windows.net/{tenant_id}/"),
        "iat": now.timestamp(), "nbf": now.timestamp(), "exp": exp.timestamp(),
        "tid": tenant_id, "oid": user.id, "sub": pairwise_sub(&user.id, client_id),
        "upn": user.user_principal_name, "name": user.display_name,
        "appid": client_id, "scp": scopes.names.join(" "), "amr": amr, "ver": "1.0",
    });
    if tenant_id != home {
        access_claims["idp"] = serde_json::json!(format!("https://sts.windows.net/{home}/"));
    }
    let access = util::jwt(&access_claims);
    state.tokens.insert(
        access.clone(),
        Grant {
            issuer: Issuer::Microsoft,
            audience: scopes.resource.to_string(),
            tenant_id: tenant_id.clone(),
            subject: user.id.clone(),
            client_id: client_id.to_string(),
            scopes: scopes.names.clone(),
            mfa: user.mfa,
            expires_at: exp,
        },
    );

    let mut body = serde_json::json!({
        "token_type": "Bearer",
        "scope": scopes.response_scope(),
        "expires_in": ttl,
        "ext_expires_in": ttl,
        "access_token": access,
    });
    if with_refresh {
        let rt = util::opaque_token("1.AVEA");
        state.entra.refresh.insert(
            rt.clone(),
            RefreshGrant {
                user_id: user.id.clone(),
                client_id: client_id.to_string(),
                scope: consented_scope.to_string(),
                expires: Instant::now() + REFRESH_TTL,
            },
        );
        state.entra.refresh_tokens_issued += 1;
        body["refresh_token"] = serde_json::json!(rt);
    }
    if scopes.openid {
        // §1.6: v2.0 id_token claims; no `upn` (an optional claim, not configured).
        let mut claims = serde_json::json!({
            "aud": client_id,
            "iss": format!("{}/entra/{tenant_id}/v2.0", sim.origin),
            "iat": now.timestamp(), "nbf": now.timestamp(), "exp": exp.timestamp(),
            "tid": tenant_id, "oid": user.id, "sub": pairwise_sub(&user.id, client_id),
            "preferred_username": user.user_principal_name, "name": user.display_name,
            "ver": "2.0", "amr": amr, "uti": util::guid(),
        });
        if let Some(n) = nonce {
            claims["nonce"] = serde_json::json!(n);
        }
        if scopes.email
            && let Some(m) = &user.mail
        {
            claims["email"] = serde_json::json!(m);
        }
        body["id_token"] = serde_json::json!(util::jwt(&claims));
    }
    state.entra.tokens_issued += 1;
    state.entra.prune();
    Ok(body)
}

/// `sub` is pairwise per app (§1.6): stable for one user and one client id.
fn pairwise_sub(oid: &str, client_id: &str) -> String {
    let digest = Sha256::digest(format!("{oid}|{client_id}").as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..24])
}

// ---------------------------------------------------------------------------------------------
// Device authorization (§1.2)

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn new_user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(9)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn normalize_user_code(c: &str) -> String {
    c.chars()
        .filter(|ch| ch.is_ascii_alphanumeric())
        .map(|ch| ch.to_ascii_uppercase())
        .collect()
}

async fn devicecode(
    AxState(sim): AxState<Sim>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let corr = correlation(&headers);
    let f = form(&body);
    let mut state = sim.state();
    match start_device_flow(&sim, &mut state, &tenant, &f) {
        Ok(v) => json_response(StatusCode::OK, &v, &corr),
        Err(e) => e.response(&sim.origin, &corr),
    }
}

fn start_device_flow(
    sim: &SimInner,
    state: &mut State,
    tenant: &str,
    f: &HashMap<String, String>,
) -> Result<serde_json::Value, OAuthError> {
    authority(&state.world, tenant)?;
    let client_id = check_client(&state.world, f.get("client_id").map(String::as_str))?;
    let scope = f
        .get("scope")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthError::missing("scope"))?;
    parse_scopes(scope)?;
    let device_code = util::opaque_token("DAQABAAEAAA");
    let user_code = new_user_code();
    // Clamped so a hostile dataset cannot overflow the clock arithmetic.
    let interval = state
        .world
        .app
        .device_code_interval_secs
        .clamp(1, MAX_INTERVAL_SECS);
    let expires_in = state.world.app.device_code_expires_secs.clamp(1, 86_400);
    let now = Instant::now();
    state.entra.device.insert(
        device_code.clone(),
        DeviceCode {
            user_code: user_code.clone(),
            client_id,
            scope: scope.to_string(),
            issued: now,
            expires: now + Duration::from_secs(expires_in),
            interval,
            last_poll: None,
            outcome: Outcome::Pending,
        },
    );
    state.entra.device_codes_issued += 1;
    state.entra.prune();
    let uri = format!("{}/entra/devicelogin", sim.origin);
    // §1.2: no verification_uri_complete.
    Ok(serde_json::json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": uri,
        "expires_in": expires_in,
        "interval": interval,
        "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
    }))
}

/// Approve (or decline) pending device codes; returns how many. `user_code` None means every
/// pending code; `upn` None means the default admin. Approving for a disabled user is
/// allowed: the next poll then gets `authorization_declined`.
pub fn approve_device(
    state: &mut State,
    user_code: Option<&str>,
    upn: Option<&str>,
    decline: bool,
) -> Result<usize, String> {
    let wanted = user_code.map(normalize_user_code).filter(|c| !c.is_empty());
    let upn = upn.map(str::trim).filter(|u| !u.is_empty());
    let outcome = if decline {
        Outcome::Declined
    } else {
        let user = match upn {
            Some(u) => user_by_upn(&state.world, u)
                .ok_or_else(|| format!("no user {u} in the MSP tenant can sign in"))?,
            None => default_admin(&state.world).ok_or_else(|| {
                "the MSP tenant has no enabled user with the GlobalAdmin or AdminAgent role to sign in as".to_string()
            })?,
        };
        Outcome::Approved(user.id.clone())
    };
    let now = Instant::now();
    let mut n = 0;
    for d in state.entra.device.values_mut() {
        if d.outcome != Outcome::Pending || d.expires <= now {
            continue;
        }
        if wanted.as_ref().is_some_and(|w| *w != d.user_code) {
            continue;
        }
        d.outcome = outcome.clone();
        n += 1;
    }
    if n == 0 {
        return Err(match user_code {
            Some(c) => format!("no pending device code has the user code {}", c.trim()),
            None => "no device code is pending".to_string(),
        });
    }
    Ok(n)
}

fn poll_device(
    sim: &SimInner,
    state: &mut State,
    auth: &Authority,
    client_id: &str,
    f: &HashMap<String, String>,
) -> Result<serde_json::Value, OAuthError> {
    let device_code = f
        .get("device_code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::missing("device_code"))?;
    let bad_code = || {
        OAuthError::new(
            "bad_verification_code",
            70018,
            "The provided value for the input parameter 'device_code' is not valid.",
        )
    };
    let now = Instant::now();
    let spec = sim.faults.spec();
    let default_admin_id = default_admin(&state.world).map(|u| u.id.clone());
    let Some(dc) = state.entra.device.get_mut(device_code.as_str()) else {
        return Err(bad_code());
    };
    if !dc.client_id.eq_ignore_ascii_case(client_id) {
        return Err(bad_code());
    }
    if dc.expires <= now {
        state.entra.device.remove(device_code.as_str());
        return Err(OAuthError::new(
            "expired_token",
            70019,
            "Verification code expired. The device code has expired; start the sign-in again.",
        ));
    }
    // Demo mode: approve as the default admin once the code is old enough.
    if dc.outcome == Outcome::Pending
        && let (Some(secs), Some(admin)) = (spec.auto_approve_secs, default_admin_id)
        && now.duration_since(dc.issued) >= Duration::from_secs(secs)
    {
        dc.outcome = Outcome::Approved(admin);
    }
    match dc.outcome.clone() {
        Outcome::Pending => {
            // RFC 8628 §3.5 (§1.2): polling faster than the interval → slow_down, and the
            // interval grows by 5 s for this and every later poll. A little tolerance covers
            // the fault layer's jitter and scheduling.
            let jitter = spec.rates(SimApi::Entra).jitter_ms.unwrap_or(0);
            let tolerance = Duration::from_millis(jitter.saturating_add(250));
            let too_fast = dc.last_poll.is_some_and(|t| {
                now.duration_since(t) + tolerance < Duration::from_secs(dc.interval)
            });
            dc.last_poll = Some(now);
            if too_fast {
                dc.interval = (dc.interval + SLOW_DOWN_STEP_SECS).min(MAX_INTERVAL_SECS);
                // The AADSTS number of slow_down is not documented [UNCONFIRMED]; the
                // pending code is used, `error` is what clients act on.
                return Err(OAuthError::new(
                    "slow_down",
                    70016,
                    format!(
                        "OAuth 2.0 device flow error. The client is polling too often; wait at least {} seconds between polls.",
                        dc.interval
                    ),
                ));
            }
            Err(OAuthError::new(
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            ))
        }
        Outcome::Declined => {
            state.entra.device.remove(device_code.as_str());
            Err(declined())
        }
        Outcome::Approved(user_id) => {
            let Some(dc) = state.entra.device.remove(device_code.as_str()) else {
                return Err(bad_code());
            };
            let enabled = user_by_id(&state.world, &user_id).is_some_and(|u| u.account_enabled);
            if !enabled {
                return Err(declined());
            }
            let scopes = parse_scopes(&dc.scope)?;
            let refresh = scopes.offline_access;
            issue(
                sim,
                state,
                SignIn {
                    user_id: &user_id,
                    auth,
                    scopes: &scopes,
                    consented_scope: &dc.scope,
                    client_id,
                    nonce: None,
                    with_refresh: refresh,
                },
            )
        }
    }
}

fn declined() -> OAuthError {
    // The AADSTS number of authorization_declined is not confirmed (§1.2); 70017 as one
    // community simulator uses [UNCONFIRMED].
    OAuthError::new(
        "authorization_declined",
        70017,
        "The end user denied the authorization request.",
    )
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

async fn token(
    AxState(sim): AxState<Sim>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let corr = correlation(&headers);
    let f = form(&body);
    let mut state = sim.state();
    match token_inner(&sim, &mut state, &tenant, &f) {
        Ok(v) => json_response(StatusCode::OK, &v, &corr),
        Err(e) => e.response(&sim.origin, &corr),
    }
}

fn token_inner(
    sim: &SimInner,
    state: &mut State,
    tenant: &str,
    f: &HashMap<String, String>,
) -> Result<serde_json::Value, OAuthError> {
    let auth = authority(&state.world, tenant)?;
    let grant_type = f
        .get("grant_type")
        .filter(|g| !g.is_empty())
        .ok_or_else(|| OAuthError::missing("grant_type"))?
        .clone();
    let client_id = check_client(&state.world, f.get("client_id").map(String::as_str))?;
    if f.contains_key("client_secret") || f.contains_key("client_assertion") {
        // A native app is a public client (§1.3: "no client_secret").
        return Err(OAuthError::new(
            "invalid_client",
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        ));
    }
    match grant_type.as_str() {
        DEVICE_CODE_GRANT => poll_device(sim, state, &auth, &client_id, f),
        "authorization_code" => redeem_code(sim, state, &auth, &client_id, f),
        "refresh_token" => redeem_refresh(sim, state, &auth, &client_id, f),
        other => Err(OAuthError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

/// The authorization_code grant with PKCE (§1.3): single use, 10 minutes, same
/// redirect_uri, code_verifier checked against the challenge (S256 or plain).
fn redeem_code(
    sim: &SimInner,
    state: &mut State,
    auth: &Authority,
    client_id: &str,
    f: &HashMap<String, String>,
) -> Result<serde_json::Value, OAuthError> {
    let code = f
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::missing("code"))?;
    let redirect_uri = f
        .get("redirect_uri")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::missing("redirect_uri"))?;
    let now = Instant::now();
    let Some(ac) = state.entra.codes.get(code.as_str()) else {
        return Err(OAuthError::new(
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid: the authorization code is not valid.",
        ));
    };
    if ac.redeemed {
        return Err(OAuthError::new(
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        ));
    }
    if ac.expires <= now {
        return Err(OAuthError::new(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        ));
    }
    if !ac.client_id.eq_ignore_ascii_case(client_id) {
        return Err(OAuthError::new(
            "invalid_grant",
            70000,
            "The provided authorization code was issued to a different client.",
        ));
    }
    if !same_redirect(&ac.redirect_uri, redirect_uri) {
        return Err(OAuthError::new(
            "invalid_grant",
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URI used to obtain the authorization code."
            ),
        ));
    }
    if let Some((method, challenge)) = &ac.challenge {
        let verifier = f
            .get("code_verifier")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| OAuthError::missing("code_verifier"))?;
        let computed = if method.eq_ignore_ascii_case("S256") {
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
        } else {
            verifier.clone()
        };
        if computed != *challenge {
            return Err(OAuthError::new(
                "invalid_grant",
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            ));
        }
    }
    let scope_raw = f
        .get("scope")
        .filter(|s| !s.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| ac.scope.clone());
    let mut scopes = parse_scopes(&scope_raw)?;
    // offline_access and openid were consented at authorize time.
    let original = parse_scopes(&ac.scope)?;
    scopes.offline_access |= original.offline_access;
    scopes.openid |= original.openid;
    let user_id = ac.user_id.clone();
    let nonce = ac.nonce.clone();
    let consented = ac.scope.clone();
    if let Some(ac) = state.entra.codes.get_mut(code.as_str()) {
        ac.redeemed = true;
    }
    let refresh = scopes.offline_access;
    issue(
        sim,
        state,
        SignIn {
            user_id: &user_id,
            auth,
            scopes: &scopes,
            consented_scope: &consented,
            client_id,
            nonce: nonce.as_deref(),
            with_refresh: refresh,
        },
    )
}

fn same_redirect(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The refresh_token grant (§1.4): any resource the app has consent for, at any authority
/// the user can reach; a new refresh token each time, the old one keeps working.
fn redeem_refresh(
    sim: &SimInner,
    state: &mut State,
    auth: &Authority,
    client_id: &str,
    f: &HashMap<String, String>,
) -> Result<serde_json::Value, OAuthError> {
    let rt = f
        .get("refresh_token")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::missing("refresh_token"))?;
    let Some(g) = state.entra.refresh.get(rt.as_str()) else {
        return Err(OAuthError::new(
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid: the refresh token is not valid.",
        ));
    };
    if g.expires <= Instant::now() {
        return Err(OAuthError::new(
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity. Sign in again.",
        ));
    }
    if !g.client_id.eq_ignore_ascii_case(client_id) {
        return Err(OAuthError::new(
            "invalid_grant",
            70000,
            "The provided refresh token was issued to a different client.",
        ));
    }
    let scope_raw = f
        .get("scope")
        .filter(|s| !s.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| g.scope.clone());
    let scopes = parse_scopes(&scope_raw)?;
    let user_id = g.user_id.clone();
    let consented = g.scope.clone();
    issue(
        sim,
        state,
        SignIn {
            user_id: &user_id,
            auth,
            scopes: &scopes,
            consented_scope: &consented,
            client_id,
            nonce: None,
            with_refresh: true,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Authorize (§1.3)

/// Loopback redirect URIs only: `http://localhost` or `http://127.0.0.1`, any port, any
/// path (§1.3, S1c).
fn acceptable_redirect(uri: &str) -> Option<url::Url> {
    let u = url::Url::parse(uri).ok()?;
    let host_ok = matches!(u.host_str(), Some("localhost") | Some("127.0.0.1"));
    (u.scheme() == "http" && host_ok && u.fragment().is_none()).then_some(u)
}

fn error_page(status: StatusCode, code: u32, message: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title></head><body>\
         <h1>Sorry, but we're having trouble signing you in.</h1>\
         <p>AADSTS{code}: {}</p><p>(cspsync simulated world)</p></body></html>",
        html_escape(message)
    );
    let mut r = (status, html).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn redirect(mut to: url::Url, pairs: &[(&str, &str)]) -> Response {
    {
        let mut q = to.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(to.as_str()) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn authorize(
    AxState(sim): AxState<Sim>,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut state = sim.state();
    let world = &state.world;
    // Until the client and redirect URI are trusted, errors are shown, not redirected.
    if let Err(e) = check_client(world, q.get("client_id").map(String::as_str)) {
        return error_page(StatusCode::BAD_REQUEST, e.code, &e.message);
    }
    let Some(raw_redirect) = q.get("redirect_uri").filter(|r| !r.is_empty()).cloned() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            900144,
            "The request body must contain the following parameter: 'redirect_uri'.",
        );
    };
    let Some(target) = acceptable_redirect(&raw_redirect) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            50011,
            &format!(
                "The redirect URI '{raw_redirect}' specified in the request does not match the redirect URIs configured for the application '{}'. Only http://localhost and http://127.0.0.1 (any port) are registered.",
                world.app.client_id
            ),
        );
    };
    let st = q.get("state").cloned();
    let fail = |error: &str, e: &OAuthError| {
        let desc = format!(
            "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            e.code,
            e.message,
            util::guid(),
            util::guid(),
            Utc::now().format("%Y-%m-%d %H:%M:%SZ")
        );
        let mut pairs = vec![("error", error), ("error_description", desc.as_str())];
        if let Some(s) = &st {
            pairs.push(("state", s.as_str()));
        }
        redirect(target.clone(), &pairs)
    };
    match q.get("response_type").map(String::as_str) {
        Some("code") => {}
        Some(other) => {
            let e = OAuthError::new(
                "unsupported_response_type",
                700054,
                format!("response_type '{other}' is not enabled for the application; use 'code'."),
            );
            return fail("unsupported_response_type", &e);
        }
        None => return fail("invalid_request", &OAuthError::missing("response_type")),
    }
    if let Some(mode) = q.get("response_mode")
        && mode != "query"
    {
        let e = OAuthError::new(
            "invalid_request",
            900144,
            format!("The simulated sign-in supports response_mode 'query' only, not '{mode}'."),
        );
        return fail("invalid_request", &e);
    }
    let auth = match authority(world, &tenant) {
        Ok(a) => a,
        Err(e) => return fail("invalid_request", &e),
    };
    let Some(scope) = q.get("scope").filter(|s| !s.trim().is_empty()).cloned() else {
        return fail("invalid_request", &OAuthError::missing("scope"));
    };
    if let Err(e) = parse_scopes(&scope) {
        return fail(e.error, &e);
    }
    let challenge = match q.get("code_challenge").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            // RFC 7636 §4.3: plain when the method is absent.
            let method = q
                .get("code_challenge_method")
                .cloned()
                .unwrap_or_else(|| "plain".into());
            if !(method == "S256" || method == "plain") {
                let e = OAuthError::new(
                    "invalid_request",
                    50129,
                    format!(
                        "The code_challenge_method '{method}' is not supported; use S256 or plain."
                    ),
                );
                return fail("invalid_request", &e);
            }
            Some((method, c.clone()))
        }
    };
    // The sim signs in at once: as login_hint, else the default admin.
    let user = match q
        .get("login_hint")
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
    {
        Some(hint) => match user_by_upn(world, hint) {
            Some(u) => u.clone(),
            None => {
                let e = OAuthError::new(
                    "invalid_request",
                    50034,
                    format!(
                        "The user account {hint} does not exist in the {} directory. To sign into this application, the account must be added to the directory.",
                        world.msp.display_name
                    ),
                );
                return fail("invalid_request", &e);
            }
        },
        None => match default_admin(world) {
            Some(u) => u.clone(),
            None => {
                let e = OAuthError::new(
                    "access_denied",
                    50034,
                    "The simulated tenant has no enabled admin user to sign in as.",
                );
                return fail("access_denied", &e);
            }
        },
    };
    if !user.account_enabled {
        let e = OAuthError::new(
            "access_denied",
            50057,
            format!("The user account {} is disabled.", user.user_principal_name),
        );
        return fail("access_denied", &e);
    }
    if let Err(e) = token_tenant(world, &auth, &user) {
        return fail("access_denied", &e);
    }
    let client_id = world.app.client_id.clone();
    let code = util::opaque_token("1.AVEAcode");
    state.entra.codes.insert(
        code.clone(),
        AuthCode {
            client_id,
            redirect_uri: raw_redirect,
            scope,
            user_id: user.id.clone(),
            challenge,
            nonce: q.get("nonce").cloned(),
            expires: Instant::now() + AUTH_CODE_TTL,
            redeemed: false,
        },
    );
    state.entra.auth_codes_issued += 1;
    state.entra.prune();
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = &st {
        pairs.push(("state", s.as_str()));
    }
    redirect(target, &pairs)
}

// ---------------------------------------------------------------------------------------------
// The device login page (the sim's verification_uri)

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn page(title: &str, inner: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}\
         input{{font-size:1.2em;margin:.3em 0;width:100%}}button{{font-size:1.1em;margin-right:1em}}</style>\
         </head><body><h1>{t}</h1>{inner}<p><small>cspsync simulated world: stands in for microsoft.com/devicelogin.</small></p></body></html>",
        t = html_escape(title)
    )
}

async fn devicelogin_page(
    AxState(sim): AxState<Sim>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let admin = default_admin(&sim.state().world)
        .map(|u| u.user_principal_name.clone())
        .unwrap_or_default();
    let code = q.get("otc").map(|c| html_escape(c)).unwrap_or_default();
    let inner = format!(
        "<form method=\"post\" action=\"devicelogin\">\
         <label>Code<input name=\"user_code\" value=\"{code}\" autofocus autocomplete=\"off\"></label>\
         <label>Sign in as<input name=\"upn\" value=\"{}\"></label>\
         <p><button name=\"decision\" value=\"approve\">Approve</button>\
         <button name=\"decision\" value=\"decline\">Decline</button></p></form>",
        html_escape(&admin)
    );
    html(StatusCode::OK, page("Enter code", &inner))
}

async fn devicelogin_submit(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    let f = form(&body);
    let code = f.get("user_code").map(String::as_str).unwrap_or("").trim();
    if code.is_empty() {
        return html(
            StatusCode::BAD_REQUEST,
            page(
                "Enter code",
                "<p>Enter the code shown by the application.</p><p><a href=\"devicelogin\">Back</a></p>",
            ),
        );
    }
    let decline = f.get("decision").is_some_and(|d| d == "decline");
    let upn = f.get("upn").map(String::as_str);
    let mut state = sim.state();
    match approve_device(&mut state, Some(code), upn, decline) {
        Ok(_) if decline => html(
            StatusCode::OK,
            page(
                "Sign-in declined",
                "<p>You declined the sign-in. You can close this window.</p>",
            ),
        ),
        Ok(_) => html(
            StatusCode::OK,
            page(
                "You're signed in",
                "<p>You have signed in to cspsync on your device. You can close this window.</p>",
            ),
        ),
        Err(e) => html(
            StatusCode::BAD_REQUEST,
            page(
                "That didn't work",
                &format!(
                    "<p>{}.</p><p><a href=\"devicelogin\">Try again</a></p>",
                    html_escape(&e)
                ),
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_pick_the_first_resource() {
        let s = parse_scopes(
            "openid profile offline_access https://api.partnercenter.microsoft.com/user_impersonation https://graph.microsoft.com/User.Read",
        )
        .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(s.resource, PARTNER_CENTER_RESOURCE);
        assert_eq!(s.names, vec!["user_impersonation".to_string()]);
        assert!(s.openid && s.offline_access && !s.email);

        let g = parse_scopes("User.Read https://graph.microsoft.com/.default")
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(g.resource, GRAPH_RESOURCE);
        assert!(g.names.iter().any(|n| n == "Organization.Read.All"));
        assert_eq!(
            parse_scopes("openid").map(|s| s.resource).ok(),
            Some(GRAPH_RESOURCE)
        );
        assert_eq!(
            parse_scopes("https://example.com/x")
                .map_err(|e| e.error)
                .err(),
            Some("invalid_resource")
        );
        assert_eq!(
            parse_scopes("https://api.partnercenter.microsoft.com/Write")
                .map_err(|e| e.error)
                .err(),
            Some("invalid_scope")
        );
    }

    #[test]
    fn redirects_are_loopback_only() {
        assert!(acceptable_redirect("http://localhost:53682/").is_some());
        assert!(acceptable_redirect("http://127.0.0.1:1/cb").is_some());
        assert!(acceptable_redirect("https://localhost/").is_none());
        assert!(acceptable_redirect("http://[::1]:80/").is_none());
        assert!(acceptable_redirect("http://evil.example/").is_none());
    }

    #[test]
    fn user_codes_normalize() {
        assert_eq!(normalize_user_code(" fjxk-7qzrl "), "FJXK7QZRL");
        assert_eq!(new_user_code().len(), 9);
    }
}
