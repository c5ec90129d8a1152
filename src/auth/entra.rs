//! Microsoft identity platform v2.0 (Entra ID): device code, auth code + PKCE with a loopback
//! redirect, refresh, and a [`Session`] that turns one refresh token into access tokens for
//! Graph and Partner Center in any tenant (reference/external-apis.md §1).
//!
//! The `oauth2` crate supplies what it fits: PKCE (S256), the CSRF `state`, the authorize URL
//! and the secret wrappers (`AccessToken`, `RefreshToken`, `DeviceCode`, ... whose `Debug`
//! redacts). Token requests themselves go through [`HttpCore`] like every other request of the
//! app (limits, Retry-After, typed errors), so the oauth2 crate's own HTTP path is not used;
//! Entra's error body (`error_codes`, AADSTS descriptions, §1.5) is parsed here.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use futures_util::future::BoxFuture;
use oauth2::basic::BasicClient;
pub use oauth2::{AccessToken, DeviceCode, PkceCodeVerifier, RefreshToken};
use oauth2::{AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::{Mutex as AsyncMutex, watch};
use tokio::time::Instant;
use url::Url;

use crate::api::error::{Api, ApiError, ErrorKind, VendorError, clean_text};
use crate::api::http::{HttpCore, Request, Response, RetryPolicy, StatsSnapshot, TokenSource};
use crate::api::limit::Limits;
use crate::auth::loopback::{LoopbackListener, Redirect};

/// The tenant path segment used when none is given (§1.1): any work or school account.
pub const DEFAULT_TENANT: &str = "organizations";

/// Graph delegated scopes cspsync needs (§1.7): organization, subscribed SKUs, user list.
///
/// `User.Read.All`: the user list reads `accountEnabled`, `userType` and `assignedLicenses`
/// (§2.2: not default properties), which the basic profile `User.ReadBasic.All` does not
/// cover; with only that scope Graph leaves them empty (found by tests/e2e_microsoft.rs: every
/// user came back without licences). `User.ReadBasic.All` stays listed (a subset, harmless).
pub const GRAPH_SCOPES: [&str; 4] = [
    "https://graph.microsoft.com/User.Read",
    "https://graph.microsoft.com/Organization.Read.All",
    // accountEnabled, userType and assignedLicenses are not basic properties (§2.2).
    "https://graph.microsoft.com/User.Read.All",
    // The MSP's GDAP relationships (§2.6, §1.7).
    "https://graph.microsoft.com/DelegatedAdminRelationship.Read.All",
];

/// Partner Center v2 scope string (§1.7).
pub const PARTNER_CENTER_SCOPES: [&str; 1] =
    ["https://api.partnercenter.microsoft.com/user_impersonation"];

/// OpenID Connect scopes added at sign-in (§1.7): `openid` for the id_token, `profile` for
/// `oid`/`preferred_username`/`name` (§1.6), `offline_access` for the refresh token (§1.2).
pub const SIGN_IN_EXTRA_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];

/// RFC 8628 §3.5: on `slow_down`, add 5 s to the polling interval for this and later polls.
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// Access tokens are reused until this long before they expire (or half their lifetime,
/// whichever is shorter).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// The resource an access token is for. One token covers one resource (§1.3), so Graph and
/// Partner Center each get their own, both minted from the same refresh token (§1.4, §1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Resource {
    Graph,
    PartnerCenter,
}

impl Resource {
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Resource::Graph => &GRAPH_SCOPES,
            Resource::PartnerCenter => &PARTNER_CENTER_SCOPES,
        }
    }

    /// The space-separated `scope` value (§1.1).
    pub fn scope(self) -> String {
        self.scopes().join(" ")
    }
}

/// The scope asked for at sign-in: Graph's scopes plus `openid profile offline_access`.
pub fn sign_in_scope() -> String {
    let mut s: Vec<&str> = GRAPH_SCOPES.to_vec();
    s.extend(SIGN_IN_EXTRA_SCOPES);
    s.join(" ")
}

/// The id_token (a JWT) as a secret: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct IdToken(String);

impl IdToken {
    pub fn new(s: String) -> Self {
        IdToken(s)
    }
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdToken([redacted])")
    }
}

/// What a successful token-endpoint response carried (§1.3). `Debug` redacts every token.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: AccessToken,
    /// Present when `offline_access` was granted; a refresh may return a new one (§1.4).
    pub refresh_token: Option<RefreshToken>,
    /// Present when `openid` was requested (§1.2).
    pub id_token: Option<IdToken>,
    pub expires_in: Duration,
    pub obtained_at: Instant,
    pub scope: Option<String>,
    /// The resource cspsync asked for (not read from the wire).
    pub resource: Option<Resource>,
    /// The tenant path segment the token was requested from.
    pub tenant: String,
}

impl TokenSet {
    pub fn expires_at(&self) -> Instant {
        self.obtained_at + self.expires_in
    }

    /// The id_token's claims (§1.6); an error if there is no id_token or it cannot be read.
    pub fn id_claims(&self) -> Result<IdClaims, ApiError> {
        match &self.id_token {
            Some(t) => IdClaims::from_id_token(t.secret()),
            None => Err(ApiError::malformed(
                Api::Entra,
                "no id_token in the token response although `openid` was requested",
            )),
        }
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("resource", &self.resource)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// The id_token claims cspsync uses (§1.6). Read without checking the signature: the token
/// came straight from the token endpoint over TLS, which OpenID Connect Core §3.1.3.7 allows
/// in place of signature validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    /// Tenant the user signed into.
    pub tid: String,
    /// User object id (= Graph `user.id`). With `tid`, the identity key (§1.6).
    pub oid: String,
    /// Usually the UPN; mutable, so for display only.
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Authentication methods; `mfa` when multi-factor was used ([UNCONFIRMED] in §1.7).
    #[serde(default, deserialize_with = "string_or_list")]
    pub amr: Vec<String>,
    #[serde(default)]
    pub email: Option<String>,
}

impl IdClaims {
    /// Decode the payload of a compact JWT (`header.payload.signature`).
    pub fn from_id_token(jwt: &str) -> Result<IdClaims, ApiError> {
        let parts: Vec<&str> = jwt.trim().split('.').collect();
        if parts.len() != 3 {
            return Err(ApiError::malformed(
                Api::Entra,
                "an id_token that is not a JWT (expected three dot-separated parts)",
            ));
        }
        let payload = parts[1];
        let bytes = URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .or_else(|_| URL_SAFE.decode(payload))
            .map_err(|_| {
                ApiError::malformed(Api::Entra, "an id_token whose claims are not base64url")
            })?;
        serde_json::from_slice::<IdClaims>(&bytes).map_err(|e| {
            ApiError::malformed(
                Api::Entra,
                format!(
                    "an id_token without the expected claims: {}",
                    clean_text(&e.to_string(), 160)
                ),
            )
        })
    }

    /// True when the sign-in used multi-factor authentication (Partner Center requires it, §1.7).
    pub fn has_mfa(&self) -> bool {
        self.amr.iter().any(|m| m.eq_ignore_ascii_case("mfa"))
    }

    /// The best name to show: `name`, else `preferred_username`, else the object id.
    pub fn display(&self) -> &str {
        self.name
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .or(self.preferred_username.as_deref())
            .unwrap_or(&self.oid)
    }
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Null(()) => Vec::new(),
    })
}

/// A number given as a JSON number or a numeric string (older Microsoft endpoints send
/// `"3599"`); anything else is `None`.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// The start of a device-code sign-in (§1.2): what to show the person. The `device_code`
/// itself stays private and `Debug` redacts it.
#[derive(Clone)]
pub struct DeviceCodeStart {
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: Duration,
    /// Polling interval from the server (§1.2); grows by 5 s on `slow_down` (RFC 8628 §3.5).
    pub interval: Duration,
    /// The server's ready-made instruction sentence.
    pub message: String,
    device_code: DeviceCode,
    tenant: String,
    resource: Option<Resource>,
    started: Instant,
}

impl fmt::Debug for DeviceCodeStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCodeStart")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .field("message", &self.message)
            .field("device_code", &"[redacted]")
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// Why a device-code sign-in stopped without tokens (§1.2); read from an [`ApiError`] with
/// [`DeviceFlowStop::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFlowStop {
    /// `authorization_declined`: the person said no in the browser.
    Declined,
    /// `expired_token`, or `expires_in` passed: the code is no longer valid.
    Expired,
    /// `bad_verification_code`: the server does not know this device code.
    BadVerificationCode,
    /// Cancelled by the app (the person pressed Esc).
    Cancelled,
}

impl DeviceFlowStop {
    pub fn code(self) -> &'static str {
        match self {
            DeviceFlowStop::Declined => "authorization_declined",
            DeviceFlowStop::Expired => "expired_token",
            DeviceFlowStop::BadVerificationCode => "bad_verification_code",
            DeviceFlowStop::Cancelled => "cancelled",
        }
    }

    /// The stop an error describes, if it is one of these.
    pub fn of(e: &ApiError) -> Option<DeviceFlowStop> {
        if e.api != Api::Entra || e.kind != ErrorKind::OAuth {
            return None;
        }
        [
            DeviceFlowStop::Declined,
            DeviceFlowStop::Expired,
            DeviceFlowStop::BadVerificationCode,
            DeviceFlowStop::Cancelled,
        ]
        .into_iter()
        .find(|s| e.code.as_deref() == Some(s.code()))
    }

    fn message(self) -> &'static str {
        match self {
            DeviceFlowStop::Declined => {
                "sign-in was declined in the browser; start the sign-in again if that was a mistake"
            }
            DeviceFlowStop::Expired => {
                "sign-in code expired before the sign-in was finished; start the sign-in again for a new code"
            }
            DeviceFlowStop::BadVerificationCode => {
                "did not recognise the sign-in code; start the sign-in again"
            }
            DeviceFlowStop::Cancelled => "sign-in was cancelled",
        }
    }

    fn error(self) -> ApiError {
        ApiError::new(Api::Entra, ErrorKind::OAuth, self.message()).with_code(self.code())
    }
}

/// An authorization-code sign-in in progress (§1.3): open [`AuthCodeRequest::authorize_url`]
/// in a browser, then hand the redirect to [`EntraClient::finish_auth_code`]. The state and
/// PKCE verifier stay private; `Debug` shows neither.
pub struct AuthCodeRequest {
    authorize_url: Url,
    redirect_uri: Url,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
    scope: String,
    tenant: String,
}

impl AuthCodeRequest {
    pub fn authorize_url(&self) -> &Url {
        &self.authorize_url
    }
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }
}

impl fmt::Debug for AuthCodeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCodeRequest")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .field("state", &"[redacted]")
            .field("verifier", &"[redacted]")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// Client of the Microsoft identity platform's v2.0 endpoints for one app registration.
#[derive(Clone)]
pub struct EntraClient {
    authority: Url,
    client_id: String,
    tenant: String,
    core: HttpCore,
    slow_down_step: Duration,
}

impl fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client id of a public client is not a secret.
        f.debug_struct("EntraClient")
            .field("authority", &self.authority.as_str())
            .field("client_id", &self.client_id)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl EntraClient {
    /// `authority` is the host (`Endpoints.entra`, e.g. `https://login.microsoftonline.com`);
    /// the tenant segment is added per request (§1.1).
    pub fn new(authority: Url, client_id: impl Into<String>, http: reqwest::Client) -> Self {
        EntraClient {
            authority,
            client_id: client_id.into(),
            tenant: DEFAULT_TENANT.to_string(),
            core: HttpCore::new(Api::Entra, http, Self::limits(), parse_error),
            slow_down_step: SLOW_DOWN_STEP,
        }
    }

    /// The token endpoint documents no limits (§1.5a [UNCONFIRMED]); a small bound keeps many
    /// customer tenants' refreshes from arriving at once.
    pub fn limits() -> Limits {
        Limits::concurrency(8)
    }

    /// Sign in against this tenant segment instead of `organizations` (§1.1).
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.core = self.core.with_retry(retry);
        self
    }

    /// RFC 8628 says 5 s; tests shorten it to keep the device-flow tests fast.
    pub fn with_slow_down_step(mut self, step: Duration) -> Self {
        self.slow_down_step = step;
        self
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.core.stats()
    }

    /// `{authority}/{tenant}/oauth2/v2.0/{leaf}` (§1.1); the tenant is percent-encoded.
    pub fn endpoint_url(&self, tenant: &str, leaf: &str) -> Result<Url, ApiError> {
        let mut u = self.authority.clone();
        u.set_query(None);
        u.set_fragment(None);
        match u.path_segments_mut() {
            Ok(mut segs) => {
                segs.pop_if_empty()
                    .push(tenant)
                    .extend(["oauth2", "v2.0", leaf]);
            }
            Err(()) => {
                return Err(ApiError::config(
                    Api::Entra,
                    format!(
                        "the sign-in authority `{}` is not a usable base address",
                        self.authority
                    ),
                ));
            }
        }
        Ok(u)
    }

    fn token_request(&self, tenant: &str, form: &[(&str, &str)]) -> Result<Request, ApiError> {
        let url = self.endpoint_url(tenant, "token")?;
        // §1.1: every grant is a form POST to /{tenant}/oauth2/v2.0/token.
        Ok(Request::new(Method::POST, url)
            .form(form)
            .key(tenant)
            .operation(format!("POST /{tenant}/oauth2/v2.0/token")))
    }

    // ----- device code (§1.2) -------------------------------------------------------------

    /// Start a device-code sign-in with the sign-in scopes (Graph + `openid profile
    /// offline_access`).
    pub async fn start_device_code(&self) -> Result<DeviceCodeStart, ApiError> {
        self.start_device_code_with(&sign_in_scope(), Some(Resource::Graph))
            .await
    }

    /// Start a device-code sign-in for `scope`; `resource` is what the resulting access
    /// token is for (recorded on the [`TokenSet`]).
    pub async fn start_device_code_with(
        &self,
        scope: &str,
        resource: Option<Resource>,
    ) -> Result<DeviceCodeStart, ApiError> {
        let url = self.endpoint_url(&self.tenant, "devicecode")?;
        // §1.1: POST /{tenant}/oauth2/v2.0/devicecode with client_id and scope.
        let req = Request::new(Method::POST, url)
            .form(&[("client_id", &self.client_id), ("scope", scope)])
            .key(self.tenant.clone())
            .operation(format!("POST /{}/oauth2/v2.0/devicecode", self.tenant));
        let resp = self.core.send(req).await.map_err(classify_token_error)?;
        let mut start = parse_device_code(&resp)?;
        start.tenant = self.tenant.clone();
        start.resource = resource;
        Ok(start)
    }

    /// Poll the token endpoint until the person finishes (§1.2): `authorization_pending`
    /// waits `interval`, `slow_down` adds 5 s to it (RFC 8628 §3.5); declined, expired and
    /// unknown codes end with an [`ErrorKind::OAuth`] error that [`DeviceFlowStop::of`]
    /// reads. The wait ends early (as [`DeviceFlowStop::Cancelled`]) once `cancel` is true.
    pub async fn wait_for_device_code(
        &self,
        start: &DeviceCodeStart,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<TokenSet, ApiError> {
        let deadline = start.started + start.expires_in;
        let mut interval = start.interval;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(DeviceFlowStop::Expired.error());
            }
            // §1.2: the code is valid for `expires_in`, so the last poll is at the deadline,
            // not one interval before it: a person who approves in the last seconds is signed
            // in, and "expired" is only said once the code really has (the server's
            // `expired_token`, or still pending at the deadline). Found by
            // tests/e2e_microsoft.rs: the wait used to give up while the sim still accepted
            // the code.
            let wake = (now + interval).min(deadline);
            tokio::select! {
                _ = cancelled(&mut cancel) => return Err(DeviceFlowStop::Cancelled.error()),
                _ = tokio::time::sleep_until(wake) => {}
            }
            let req = self
                .token_request(
                    &start.tenant,
                    &[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                        ("client_id", &self.client_id),
                        ("device_code", start.device_code.secret()),
                    ],
                )?
                // Polling is safe to repeat: the server answers pending/success either way.
                .idempotent(true);
            let result = tokio::select! {
                _ = cancelled(&mut cancel) => return Err(DeviceFlowStop::Cancelled.error()),
                r = self.core.send(req) => r,
            };
            match result {
                Ok(resp) => {
                    return parse_token_response(&resp, start.resource, &start.tenant);
                }
                Err(e) => match e.code.as_deref() {
                    Some("authorization_pending") => continue,
                    Some("slow_down") => {
                        interval += self.slow_down_step;
                        continue;
                    }
                    Some("authorization_declined") => {
                        return Err(DeviceFlowStop::Declined.error());
                    }
                    Some("expired_token") | Some("code_expired") => {
                        return Err(DeviceFlowStop::Expired.error());
                    }
                    Some("bad_verification_code") => {
                        return Err(DeviceFlowStop::BadVerificationCode.error());
                    }
                    _ => return Err(classify_token_error(e)),
                },
            }
        }
    }

    // ----- auth code + PKCE (§1.3) --------------------------------------------------------

    /// Build the authorize URL (S256 PKCE, fresh `state`, `prompt=select_account`, optional
    /// `login_hint`) for the sign-in scopes and this redirect URI.
    pub fn begin_auth_code(
        &self,
        redirect_uri: &Url,
        login_hint: Option<&str>,
    ) -> Result<AuthCodeRequest, ApiError> {
        self.begin_auth_code_with(redirect_uri, login_hint, &sign_in_scope())
    }

    pub fn begin_auth_code_with(
        &self,
        redirect_uri: &Url,
        login_hint: Option<&str>,
        scope: &str,
    ) -> Result<AuthCodeRequest, ApiError> {
        let auth = self.endpoint_url(&self.tenant, "authorize")?;
        let client = BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(auth))
            .set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scope.split_whitespace().map(|s| Scope::new(s.to_string())))
            .set_pkce_challenge(challenge)
            // §1.3: `query` is the default response mode for code; say so explicitly.
            .add_extra_param("response_mode", "query")
            .add_extra_param("prompt", "select_account");
        if let Some(hint) = login_hint.map(str::trim).filter(|h| !h.is_empty()) {
            req = req.add_extra_param("login_hint", hint.to_string());
        }
        let (authorize_url, state) = req.url();
        Ok(AuthCodeRequest {
            authorize_url,
            redirect_uri: redirect_uri.clone(),
            state,
            verifier,
            scope: scope.to_string(),
            tenant: self.tenant.clone(),
        })
    }

    /// Check the redirect's `state` and redeem its code with the PKCE verifier (§1.3; a public
    /// client sends no `client_secret`). Not retried after a dropped connection: a code can be
    /// redeemed once.
    pub async fn finish_auth_code(
        &self,
        request: AuthCodeRequest,
        redirect: Redirect,
    ) -> Result<TokenSet, ApiError> {
        let code = match redirect {
            Redirect::Error {
                error, description, ..
            } => {
                let what = if error == "access_denied" {
                    "sign-in was declined or cancelled in the browser".to_string()
                } else {
                    format!("sign-in did not complete in the browser ({error})")
                };
                let message = match description {
                    Some(d) => format!("{what}: {}", clean_description(&d)),
                    None => what,
                };
                return Err(
                    ApiError::new(Api::Entra, ErrorKind::OAuth, message).with_code(error.clone())
                );
            }
            code @ Redirect::Code { .. } => {
                code.into_code(request.state.secret()).map_err(|_| {
                    ApiError::new(
                        Api::Entra,
                        ErrorKind::OAuth,
                        "answer does not belong to this sign-in (the state does not match); start the sign-in again",
                    )
                    .with_code("state_mismatch")
                })?
            }
        };
        let resource = resource_of_scope(&request.scope);
        let req = self
            .token_request(
                &request.tenant,
                &[
                    ("client_id", &self.client_id),
                    ("scope", &request.scope),
                    ("code", &code),
                    ("redirect_uri", request.redirect_uri.as_str()),
                    ("grant_type", "authorization_code"),
                    ("code_verifier", request.verifier.secret()),
                ],
            )?
            .idempotent(false);
        let resp = self.core.send(req).await.map_err(classify_token_error)?;
        parse_token_response(&resp, resource, &request.tenant)
    }

    /// The whole browser sign-in on this machine: build the authorize URL for the listener's
    /// redirect URI, hand it to `show` (open a browser, print it), wait for the redirect and
    /// redeem it. Over SSH, use [`Self::begin_auth_code`] with [`Redirect::from_url`] instead.
    pub async fn sign_in_with_browser(
        &self,
        listener: LoopbackListener,
        login_hint: Option<&str>,
        timeout: Duration,
        show: impl FnOnce(&Url),
    ) -> Result<TokenSet, ApiError> {
        let request = self.begin_auth_code(listener.redirect_uri(), login_hint)?;
        show(request.authorize_url());
        let redirect = listener
            .wait(timeout)
            .await
            .map_err(|e| ApiError::new(Api::Entra, ErrorKind::OAuth, e).with_code("timeout"))?;
        self.finish_auth_code(request, redirect).await
    }

    // ----- refresh (§1.4) -----------------------------------------------------------------

    /// Redeem a refresh token for `resource` in `tenant` (a customer tenant id for GDAP
    /// access, §3.7; `None` for the sign-in tenant). The answer may carry a new refresh token,
    /// which replaces the stored one (§1.4).
    pub async fn refresh(
        &self,
        refresh_token: &RefreshToken,
        resource: Resource,
        tenant: Option<&str>,
    ) -> Result<TokenSet, ApiError> {
        let tenant = tenant.unwrap_or(&self.tenant);
        // §1.4: one resource's scopes per request; `offline_access` as in the doc's example so
        // a rotated refresh token comes back.
        let scope = format!("{} offline_access", resource.scope());
        let req = self
            .token_request(
                tenant,
                &[
                    ("client_id", &self.client_id),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.secret()),
                    ("scope", &scope),
                ],
            )?
            // §1.4: the old refresh token is not revoked on use, so a replay is harmless.
            .idempotent(true);
        let other_tenant = !tenant.eq_ignore_ascii_case(&self.tenant);
        let resp = self.core.send(req).await.map_err(|e| {
            let e = classify_token_error(e);
            if other_tenant {
                customer_tenant_refusal(e, tenant)
            } else {
                e
            }
        })?;
        parse_token_response(&resp, Some(resource), tenant)
    }
}

fn resource_of_scope(scope: &str) -> Option<Resource> {
    if scope.contains("api.partnercenter.microsoft.com") {
        Some(Resource::PartnerCenter)
    } else if scope.contains("graph.microsoft.com") {
        Some(Resource::Graph)
    } else {
        None
    }
}

/// Resolves once `cancel` is true; never, if the sender is gone (nobody can cancel).
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Token-endpoint refusals a person fixes by signing in again (§1.4 error list) become
/// [`ErrorKind::Unauthorized`]; the other OAuth errors become [`ErrorKind::OAuth`].
fn classify_token_error(mut e: ApiError) -> ApiError {
    if !matches!(e.status, Some(400 | 401)) {
        return e;
    }
    match e.code.as_deref() {
        Some("invalid_grant" | "interaction_required" | "consent_required" | "login_required") => {
            e.kind = ErrorKind::Unauthorized;
        }
        Some(_) => e.kind = ErrorKind::OAuth,
        None => {}
    }
    e
}

/// A refresh for another tenant (a customer under GDAP, §3.7) refused with AADSTS50020
/// ("user account ... does not exist in tenant ... and cannot access the application"): the
/// signed-in partner user has no access in that tenant, which signing in again does not
/// change. §3.7 is [UNCONFIRMED] about this answer; AADSTS50020 is what Entra gives a guest
/// or partner user without access, and what the sim models for a customer without GDAP. It
/// becomes [`ErrorKind::Forbidden`] naming the tenant, instead of `Unauthorized` ("sign in
/// again"); the vendor's sentence moves to the details. Found by tests/e2e_microsoft.rs.
fn customer_tenant_refusal(mut e: ApiError, tenant: &str) -> ApiError {
    let is_50020 = e.code.as_deref() == Some("invalid_grant")
        && (e.message.contains("AADSTS50020")
            || e.details.iter().any(|d| d.contains("AADSTS50020")));
    if !is_50020 {
        return e;
    }
    let vendor = std::mem::take(&mut e.message);
    e.kind = ErrorKind::Forbidden;
    e.message = format!(
        "refused access to customer tenant {}: the signed-in account has no role there, usually because the MSP has no active GDAP relationship with this customer (AADSTS50020)",
        clean_text(tenant, 60)
    );
    let vendor = vendor.strip_prefix("said: ").unwrap_or(&vendor).to_string();
    e.details.insert(0, vendor);
    e
}

#[derive(Deserialize)]
struct DeviceCodeWire {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default, deserialize_with = "lenient_u64")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    interval: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

/// Parse a device authorization response (§1.2).
fn parse_device_code(resp: &Response) -> Result<DeviceCodeStart, ApiError> {
    parse_device_code_body(&resp.headers, &resp.body).map_err(|e| e.with_operation(&resp.operation))
}

fn parse_device_code_body(headers: &HeaderMap, body: &[u8]) -> Result<DeviceCodeStart, ApiError> {
    let w: DeviceCodeWire =
        crate::api::http::decode_json(Api::Entra, "POST devicecode", headers, body)?;
    if w.device_code.trim().is_empty() || w.user_code.trim().is_empty() {
        return Err(ApiError::malformed(
            Api::Entra,
            "a device code response without a code",
        ));
    }
    // §1.2: expires_in defaults to 900 s; interval to 5 s (RFC 8628 §3.2). A zero interval
    // would poll in a tight loop, so at least 1 s.
    let expires_in = Duration::from_secs(w.expires_in.unwrap_or(900).min(86_400));
    let interval = Duration::from_secs(w.interval.unwrap_or(5).clamp(1, 300));
    let message = w.message.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| {
        format!(
            "To sign in, use a web browser to open the page {} and enter the code {} to authenticate.",
            w.verification_uri, w.user_code
        )
    });
    Ok(DeviceCodeStart {
        user_code: w.user_code,
        verification_uri: w.verification_uri,
        expires_in,
        interval,
        message,
        device_code: DeviceCode::new(w.device_code),
        tenant: DEFAULT_TENANT.to_string(),
        resource: None,
        started: Instant::now(),
    })
}

#[derive(Deserialize)]
struct TokenWire {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

/// Parse a token response (§1.3).
fn parse_token_response(
    resp: &Response,
    resource: Option<Resource>,
    tenant: &str,
) -> Result<TokenSet, ApiError> {
    parse_token_body(&resp.headers, &resp.body, resource, tenant)
        .map_err(|e| e.with_operation(&resp.operation))
}

fn parse_token_body(
    headers: &HeaderMap,
    body: &[u8],
    resource: Option<Resource>,
    tenant: &str,
) -> Result<TokenSet, ApiError> {
    let w: TokenWire = crate::api::http::decode_json(Api::Entra, "POST token", headers, body)?;
    if w.access_token.trim().is_empty() {
        return Err(ApiError::malformed(
            Api::Entra,
            "a token response with an empty access token",
        ));
    }
    if let Some(t) = &w.token_type
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(ApiError::malformed(
            Api::Entra,
            format!(
                "a token of type `{}` where a Bearer token was expected",
                clean_text(t, 40)
            ),
        ));
    }
    Ok(TokenSet {
        access_token: AccessToken::new(w.access_token),
        refresh_token: w
            .refresh_token
            .filter(|r| !r.trim().is_empty())
            .map(RefreshToken::new),
        id_token: w.id_token.filter(|t| !t.trim().is_empty()).map(IdToken),
        // Entra always sends expires_in (3599 in §1.3's example); if it is missing, assume the
        // usual hour rather than refreshing on every call.
        expires_in: Duration::from_secs(w.expires_in.unwrap_or(3600).min(86_400 * 7)),
        obtained_at: Instant::now(),
        scope: w.scope,
        resource,
        tenant: tenant.to_string(),
    })
}

/// Parse the token-endpoint error body (§1.5): `error` becomes the code, `error_description`
/// (its first line, AADSTS code kept; trace/correlation ids and timestamp dropped) the
/// message, and `error_codes` a detail line unless the description already names them.
pub fn parse_error(_status: u16, _headers: &HeaderMap, body: &[u8]) -> VendorError {
    let Ok(serde_json::Value::Object(v)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return VendorError::default();
    };
    let code = v
        .get("error")
        .and_then(|e| e.as_str())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let message = v
        .get("error_description")
        .and_then(|d| d.as_str())
        .map(clean_description)
        .filter(|s| !s.is_empty());
    let codes: Vec<String> = v
        .get("error_codes")
        .and_then(|c| c.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|c| match c {
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    serde_json::Value::String(s) => Some(clean_text(s, 20)),
                    _ => None,
                })
                .take(10)
                .collect()
        })
        .unwrap_or_default();
    let mut details = Vec::new();
    let named = |c: &String| {
        message
            .as_deref()
            .is_some_and(|m| m.contains(&format!("AADSTS{c}")))
    };
    if !codes.is_empty() && !codes.iter().all(named) {
        let list: Vec<String> = codes.iter().map(|c| format!("AADSTS{c}")).collect();
        details.push(format!("error codes: {}", list.join(", ")));
    }
    VendorError {
        code,
        message,
        details,
    }
}

/// `AADSTS70011: The provided value ...\r\nTrace ID: ...\r\nCorrelation ID: ...` →
/// `AADSTS70011: The provided value ...`.
fn clean_description(d: &str) -> String {
    let first = d
        .split(['\r', '\n'])
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let cut = ["Trace ID:", "Correlation ID:", "Timestamp:"]
        .iter()
        .filter_map(|m| first.find(m))
        .min()
        .unwrap_or(first.len());
    clean_text(first[..cut].trim(), 300)
}

// ----- session: refresh token + access-token cache -----------------------------------------

struct Cached {
    token: AccessToken,
    fresh_until: Instant,
    /// Ticket taken when this token arrived; orders it against waiting callers.
    seq: u64,
}

type Slot = Arc<AsyncMutex<Option<Cached>>>;

struct SessionInner {
    client: EntraClient,
    refresh: watch::Sender<RefreshToken>,
    slots: std::sync::Mutex<HashMap<(Resource, String), Slot>>,
    seq: AtomicU64,
}

/// A signed-in Microsoft session: the current (rotating) refresh token and access tokens
/// cached per (resource, tenant) until about 5 minutes before they expire. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.inner.client)
            .field("refresh_token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session from a stored refresh token.
    pub fn new(client: EntraClient, refresh_token: RefreshToken) -> Session {
        let (tx, _rx) = watch::channel(refresh_token);
        Session {
            inner: Arc::new(SessionInner {
                client,
                refresh: tx,
                slots: std::sync::Mutex::new(HashMap::new()),
                seq: AtomicU64::new(1),
            }),
        }
    }

    /// A session from a fresh sign-in; its access token is cached for the resource it was
    /// requested for, in the sign-in tenant.
    pub fn from_sign_in(client: EntraClient, tokens: &TokenSet) -> Result<Session, ApiError> {
        let Some(rt) = tokens.refresh_token.clone() else {
            return Err(ApiError::new(
                Api::Entra,
                ErrorKind::OAuth,
                "returned no refresh token, so cspsync cannot stay signed in; check that the app registration allows offline_access",
            ));
        };
        let session = Session::new(client, rt);
        if let Some(resource) = tokens.resource {
            let key = session.key(resource, Some(&tokens.tenant));
            let seq = session.inner.seq.fetch_add(1, Ordering::SeqCst);
            let cached = Cached {
                token: tokens.access_token.clone(),
                fresh_until: fresh_until(tokens.obtained_at, tokens.expires_in),
                seq,
            };
            let slot: Slot = Arc::new(AsyncMutex::new(Some(cached)));
            session
                .inner
                .slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, slot);
        }
        Ok(session)
    }

    pub fn client(&self) -> &EntraClient {
        &self.inner.client
    }

    /// The current refresh token (persist it: a refresh may have replaced it, §1.4).
    pub fn refresh_token(&self) -> RefreshToken {
        self.inner.refresh.borrow().clone()
    }

    /// Notified whenever the refresh token is replaced.
    pub fn watch_refresh_token(&self) -> watch::Receiver<RefreshToken> {
        self.inner.refresh.subscribe()
    }

    /// A token source for `resource` in `tenant` (`None`: the sign-in tenant), for a client.
    pub fn token_source(&self, resource: Resource, tenant: Option<&str>) -> Arc<dyn TokenSource> {
        Arc::new(SessionTokens {
            session: self.clone(),
            resource,
            tenant: tenant.map(str::to_string),
        })
    }

    fn key(&self, resource: Resource, tenant: Option<&str>) -> (Resource, String) {
        let t = tenant.unwrap_or(&self.inner.client.tenant);
        (resource, t.to_ascii_lowercase())
    }

    /// A current access token. Callers for the same (resource, tenant) share one refresh; with
    /// `force_refresh` the cached token is skipped, unless another caller replaced it while
    /// this one waited (many requests meeting the same 401 refresh once).
    pub async fn access_token(
        &self,
        resource: Resource,
        tenant: Option<&str>,
        force_refresh: bool,
    ) -> Result<AccessToken, ApiError> {
        self.token_inner(resource, tenant, force_refresh, None)
            .await
    }

    /// A token after the server refused `refused`: the cached one if another caller already
    /// replaced the refused token (so many requests meeting one 401 refresh once), else a new
    /// one.
    pub async fn access_token_after_refusal(
        &self,
        resource: Resource,
        tenant: Option<&str>,
        refused: &str,
    ) -> Result<AccessToken, ApiError> {
        self.token_inner(resource, tenant, true, Some(refused))
            .await
    }

    async fn token_inner(
        &self,
        resource: Resource,
        tenant: Option<&str>,
        force_refresh: bool,
        refused: Option<&str>,
    ) -> Result<AccessToken, ApiError> {
        let key = self.key(resource, tenant);
        let slot = {
            let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key).or_default().clone()
        };
        let asked = self.inner.seq.fetch_add(1, Ordering::SeqCst);
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref() {
            let fresh = Instant::now() < c.fresh_until;
            let replaced = refused.is_some_and(|r| c.token.secret() != r);
            if (!force_refresh && fresh)
                || (force_refresh && (c.seq > asked || (replaced && fresh)))
            {
                return Ok(c.token.clone());
            }
        }
        let rt = self.refresh_token();
        let tokens = self.inner.client.refresh(&rt, resource, tenant).await?;
        if let Some(new_rt) = tokens.refresh_token.clone() {
            self.inner.refresh.send_if_modified(|cur| {
                if cur.secret() == new_rt.secret() {
                    false
                } else {
                    *cur = new_rt;
                    true
                }
            });
        }
        let seq = self.inner.seq.fetch_add(1, Ordering::SeqCst);
        *guard = Some(Cached {
            token: tokens.access_token.clone(),
            fresh_until: fresh_until(tokens.obtained_at, tokens.expires_in),
            seq,
        });
        Ok(tokens.access_token)
    }
}

fn fresh_until(obtained: Instant, lifetime: Duration) -> Instant {
    obtained + lifetime - EXPIRY_MARGIN.min(lifetime / 2)
}

struct SessionTokens {
    session: Session,
    resource: Resource,
    tenant: Option<String>,
}

impl fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTokens")
            .field("resource", &self.resource)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl TokenSource for SessionTokens {
    fn token(&self, force_refresh: bool) -> BoxFuture<'_, Result<String, ApiError>> {
        Box::pin(async move {
            self.session
                .access_token(self.resource, self.tenant.as_deref(), force_refresh)
                .await
                .map(|t| t.secret().clone())
        })
    }

    fn refresh_after<'a>(&'a self, refused: &'a str) -> BoxFuture<'a, Result<String, ApiError>> {
        Box::pin(async move {
            self.session
                .access_token_after_refusal(self.resource, self.tenant.as_deref(), refused)
                .await
                .map(|t| t.secret().clone())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn jwt(claims: &serde_json::Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","kid":"k"}"#);
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        format!("{h}.{p}.c2lnbmF0dXJl")
    }

    #[test]
    fn id_claims_are_read() {
        let t = jwt(&serde_json::json!({
            "tid": "84841066-274d-4ec0-a5c1-276be684bdd3",
            "oid": "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e",
            "preferred_username": "admin@contoso.com",
            "name": "MOD Administrator",
            "amr": ["pwd", "mfa"],
            "ver": "2.0", "aud": "client", "exp": 1
        }));
        let c = IdClaims::from_id_token(&t).unwrap();
        assert_eq!(c.tid, "84841066-274d-4ec0-a5c1-276be684bdd3");
        assert_eq!(c.oid, "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e");
        assert_eq!(c.preferred_username.as_deref(), Some("admin@contoso.com"));
        assert_eq!(c.display(), "MOD Administrator");
        assert!(c.has_mfa());

        // No amr, no name: still fine; display falls back to the username.
        let t = jwt(&serde_json::json!({"tid": "t", "oid": "o", "preferred_username": "u@x"}));
        let c = IdClaims::from_id_token(&t).unwrap();
        assert!(!c.has_mfa());
        assert_eq!(c.display(), "u@x");
    }

    #[test]
    fn bad_id_tokens_are_typed_errors() {
        for bad in [
            "".to_string(),
            "abc".to_string(),
            "a.!!!.c".to_string(),
            format!("a.{}.c", URL_SAFE_NO_PAD.encode(b"not json")),
            jwt(&serde_json::json!({"oid": "o"})),
            jwt(&serde_json::json!({"tid": 5, "oid": "o"})),
        ] {
            let e = IdClaims::from_id_token(&bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Malformed, "{bad}: {e}");
        }
        let e = IdClaims::from_id_token(&jwt(&serde_json::json!({"oid": "o"}))).unwrap_err();
        assert!(e.message.contains("tid"), "{e}");
    }

    #[test]
    fn error_body_is_parsed_and_cleaned() {
        let body = br#"{"error":"invalid_scope","error_description":"AADSTS70011: The provided value for the input parameter 'scope' is not valid.\r\nTrace ID: 0000aaaa-11bb\r\nCorrelation ID: aaaa0000\r\nTimestamp: 2016-01-09 02:02:12Z","error_codes":[70011],"timestamp":"2016-01-09 02:02:12Z","trace_id":"0000aaaa-","correlation_id":"aaaa0000-"}"#;
        let v = parse_error(400, &HeaderMap::new(), body);
        assert_eq!(v.code.as_deref(), Some("invalid_scope"));
        assert_eq!(
            v.message.as_deref(),
            Some("AADSTS70011: The provided value for the input parameter 'scope' is not valid.")
        );
        assert!(v.details.is_empty(), "code already in the message");

        let body = br#"{"error":"authorization_pending","error_description":"Pending. Trace ID: x","error_codes":[70016, "x"]}"#;
        let v = parse_error(400, &HeaderMap::new(), body);
        assert_eq!(v.message.as_deref(), Some("Pending."));
        assert_eq!(v.details, vec!["error codes: AADSTS70016, AADSTSx"]);

        // Wrong types, HTML, truncated JSON: no panic, nothing invented.
        for body in [
            &br#"{"error":5,"error_description":["x"],"error_codes":"70011"}"#[..],
            b"<html><body>Sign in</body></html>",
            b"{\"error\":\"inv",
            b"",
            b"[]",
        ] {
            let v = parse_error(400, &HeaderMap::new(), body);
            assert_eq!(v.code, None);
            assert_eq!(v.message, None);
        }
    }

    #[test]
    fn token_and_device_bodies_are_read_or_typed_errors() {
        let h = HeaderMap::new();
        let t = parse_token_body(
            &h,
            br#"{"token_type":"Bearer","scope":"https://graph.microsoft.com/User.Read","expires_in":"3599","ext_expires_in":3599,"access_token":"eyJ0eXAi","refresh_token":"1.AVEA","id_token":"x.y.z"}"#,
            Some(Resource::Graph),
            "organizations",
        )
        .unwrap();
        assert_eq!(t.expires_in, Duration::from_secs(3599));
        assert_eq!(t.access_token.secret(), "eyJ0eXAi");
        assert_eq!(t.refresh_token.as_ref().unwrap().secret(), "1.AVEA");

        let d = parse_device_code_body(
            &h,
            br#"{"device_code":"GMMh","user_code":"FJXK7QZRL","verification_uri":"https://microsoft.com/devicelogin","expires_in":900,"interval":5,"message":"To sign in, use a web browser."}"#,
        )
        .unwrap();
        assert_eq!(d.user_code, "FJXK7QZRL");
        assert_eq!(d.interval, Duration::from_secs(5));
        assert_eq!(d.expires_in, Duration::from_secs(900));
        // interval 0 would spin: at least 1 s.
        let d = parse_device_code_body(
            &h,
            br#"{"device_code":"G","user_code":"U","verification_uri":"https://x","interval":0}"#,
        )
        .unwrap();
        assert_eq!(d.interval, Duration::from_secs(1));
        assert!(d.message.contains("https://x") && d.message.contains('U'));

        for body in [
            &b"<html>login</html>"[..],
            b"{\"access_token\":\"abc",
            br#"{"token_type":"Bearer"}"#,
            br#"{"access_token":5}"#,
            br#"{"access_token":"a","token_type":"mac"}"#,
            br#"{"access_token":""}"#,
        ] {
            let e = parse_token_body(&h, body, None, "t").unwrap_err();
            assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
        }
        for body in [
            &br#"{"user_code":"U","verification_uri":"x"}"#[..],
            br#"{"device_code":"","user_code":"U","verification_uri":"x"}"#,
            b"",
        ] {
            let e = parse_device_code_body(&h, body).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
        }
    }

    #[test]
    fn secrets_never_reach_debug_output() {
        let t = TokenSet {
            access_token: AccessToken::new("AT-SECRET-1".into()),
            refresh_token: Some(RefreshToken::new("RT-SECRET-2".into())),
            id_token: Some(IdToken::new("ID-SECRET-3".into())),
            expires_in: Duration::from_secs(1),
            obtained_at: Instant::now(),
            scope: None,
            resource: None,
            tenant: "t".into(),
        };
        let client = EntraClient::new(
            Url::parse("https://login.microsoftonline.com").unwrap(),
            "cid",
            reqwest::Client::new(),
        );
        let session = Session::from_sign_in(client.clone(), &t).unwrap();
        let req = client
            .begin_auth_code(&Url::parse("http://localhost:1234/").unwrap(), None)
            .unwrap();
        let state = req
            .authorize_url()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .to_string();
        let d = parse_device_code_body(
            &HeaderMap::new(),
            br#"{"device_code":"DC-SECRET-4","user_code":"U","verification_uri":"x"}"#,
        )
        .unwrap();
        let all = format!(
            "{t:?} {session:?} {req:?} {d:?} {:?}",
            session.token_source(Resource::Graph, None)
        );
        for secret in [
            "AT-SECRET-1",
            "RT-SECRET-2",
            "ID-SECRET-3",
            "DC-SECRET-4",
            &state,
            req.verifier.secret(),
        ] {
            assert!(!all.contains(secret), "{secret} leaked in {all}");
        }
    }

    #[test]
    fn authorize_url_has_pkce_state_and_prompt() {
        let client = EntraClient::new(
            Url::parse("https://login.microsoftonline.com/").unwrap(),
            "cid",
            reqwest::Client::new(),
        );
        let req = client
            .begin_auth_code(
                &Url::parse("http://localhost:5000/").unwrap(),
                Some("admin@contoso.com"),
            )
            .unwrap();
        let u = req.authorize_url();
        assert_eq!(u.path(), "/organizations/oauth2/v2.0/authorize");
        let q: HashMap<String, String> = u.query_pairs().into_owned().collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["prompt"], "select_account");
        assert_eq!(q["login_hint"], "admin@contoso.com");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["redirect_uri"], "http://localhost:5000/");
        assert!(q["scope"].contains("offline_access") && q["scope"].contains("User.Read"));
        let expected = {
            use sha2::Digest;
            URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(req.verifier.secret().as_bytes()))
        };
        assert_eq!(q["code_challenge"], expected);
        assert!(q["state"].len() >= 16);
        // Each sign-in has its own state.
        let other = client
            .begin_auth_code(&Url::parse("http://localhost:5000/").unwrap(), None)
            .unwrap();
        assert_ne!(other.state.secret(), req.state.secret());
        assert!(!other.authorize_url().as_str().contains("login_hint"));
    }

    #[test]
    fn endpoint_urls_keep_the_authority_path() {
        let c = EntraClient::new(
            Url::parse("http://127.0.0.1:9/entra").unwrap(),
            "cid",
            reqwest::Client::new(),
        );
        assert_eq!(
            c.endpoint_url("b44bb1fb", "token").unwrap().as_str(),
            "http://127.0.0.1:9/entra/b44bb1fb/oauth2/v2.0/token"
        );
        assert_eq!(
            c.endpoint_url("a/b", "token").unwrap().path(),
            "/entra/a%2Fb/oauth2/v2.0/token"
        );
    }

    #[test]
    fn default_slow_down_step_is_rfc_8628() {
        let c = EntraClient::new(
            Url::parse("https://login.microsoftonline.com").unwrap(),
            "cid",
            reqwest::Client::new(),
        );
        assert_eq!(c.slow_down_step, Duration::from_secs(5));
        assert_eq!(
            Resource::PartnerCenter.scope(),
            "https://api.partnercenter.microsoft.com/user_impersonation"
        );
        assert_eq!(
            sign_in_scope(),
            "https://graph.microsoft.com/User.Read https://graph.microsoft.com/Organization.Read.All https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/DelegatedAdminRelationship.Read.All openid profile offline_access"
        );
    }

    #[test]
    fn token_errors_are_classified() {
        let e = ApiError::new(Api::Entra, ErrorKind::Rejected, "said: x")
            .with_status(400)
            .with_code("invalid_grant");
        assert_eq!(classify_token_error(e).kind, ErrorKind::Unauthorized);
        let e = ApiError::new(Api::Entra, ErrorKind::Rejected, "said: x")
            .with_status(400)
            .with_code("invalid_scope");
        assert_eq!(classify_token_error(e).kind, ErrorKind::OAuth);
        let e = ApiError::new(Api::Entra, ErrorKind::Server, "x").with_status(500);
        assert_eq!(classify_token_error(e).kind, ErrorKind::Server);
        assert_eq!(
            DeviceFlowStop::of(&DeviceFlowStop::Declined.error()),
            Some(DeviceFlowStop::Declined)
        );
    }

    #[test]
    fn customer_tenant_without_access_is_forbidden() {
        let refused = || {
            classify_token_error(
                ApiError::new(
                    Api::Entra,
                    ErrorKind::Rejected,
                    "said: AADSTS50020: User account 'a@msp' does not exist in tenant 'Contoso'.",
                )
                .with_status(400)
                .with_code("invalid_grant"),
            )
        };
        let e = customer_tenant_refusal(refused(), "b44bb1fb-c595");
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert!(e.message.contains("b44bb1fb-c595") && e.message.contains("GDAP"));
        assert_eq!(
            e.details,
            vec!["AADSTS50020: User account 'a@msp' does not exist in tenant 'Contoso'."]
        );
        // Other refusals keep their kind.
        let e = ApiError::new(
            Api::Entra,
            ErrorKind::Rejected,
            "said: AADSTS700082: expired",
        )
        .with_status(400)
        .with_code("invalid_grant");
        let e = customer_tenant_refusal(classify_token_error(e), "t");
        assert_eq!(e.kind, ErrorKind::Unauthorized);
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        crate::api::json_strategy::json_with(
            &[
                "access_token",
                "expires_in",
                "refresh_token",
                "device_code",
                "user_code",
                "verification_uri",
                "interval",
                "error",
                "error_description",
                "error_codes",
                "tid",
                "oid",
                "amr",
            ],
            &["access_token", "expires_in", "device_code", "error"],
        )
    }

    fn run_all(body: &[u8]) {
        let h = HeaderMap::new();
        let _ = parse_error(400, &h, body);
        let _ = parse_token_body(&h, body, None, "t");
        let _ = parse_device_code_body(&h, body);
        let payload = URL_SAFE_NO_PAD.encode(body);
        let _ = IdClaims::from_id_token(&format!("h.{payload}.s"));
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
            run_all(&body);
        }

        #[test]
        fn parsers_never_panic_on_json(v in json_value()) {
            run_all(&serde_json::to_vec(&v).unwrap());
        }
    }
}
