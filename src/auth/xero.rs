//! Xero sign-in (reference/external-apis.md §7.1): authorization code + PKCE with a loopback
//! redirect (or a pasted redirect URL over SSH), and a [`XeroSession`] that keeps the
//! 30-minute access token fresh and stores each rotated refresh token.
//!
//! The `oauth2` crate builds the authorize URL (PKCE S256, state) and holds the secrets in its
//! redacting types; the two token requests are plain form POSTs sent through [`HttpCore`]
//! (limits, Retry-After, typed errors). (Its own `request_async` futures trip a rustc
//! higher-ranked `Send` limitation inside the boxed `TokenSource` future.)

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use oauth2::basic::BasicClient;
use oauth2::{
    AccessToken, AuthUrl, ClientId, CsrfToken, EndpointNotSet, EndpointSet, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenUrl,
};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use url::Url;

use crate::api::error::{Api, ApiError, ErrorKind};
use crate::api::http::{HttpCore, Request, RetryPolicy, TokenSource, endpoint};
use crate::api::limit::Limits;
use crate::auth::loopback::{LoopbackListener, Redirect};

/// Scopes for apps created on or after 2 March 2026 (granular `accounting.invoices`, §7.1).
pub const DEFAULT_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "offline_access",
    "accounting.contacts",
    "accounting.settings",
    "accounting.invoices",
];

/// Scopes for older apps, which use `accounting.transactions` until they migrate (§7.1).
pub const LEGACY_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "offline_access",
    "accounting.contacts",
    "accounting.settings",
    "accounting.transactions",
];

/// Which scope family to ask for (§7.1 recommends making this configurable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeSet {
    /// `accounting.invoices` (apps created on or after 2 March 2026).
    #[default]
    Granular,
    /// `accounting.transactions` (older apps).
    Legacy,
}

impl ScopeSet {
    pub fn scopes(self) -> Vec<String> {
        let s = match self {
            ScopeSet::Granular => DEFAULT_SCOPES,
            ScopeSet::Legacy => LEGACY_SCOPES,
        };
        s.iter().map(|s| s.to_string()).collect()
    }
}

/// Access tokens live 30 minutes (§7.1); used when a response omits `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(1800);
/// Refresh this long before the access token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(120);

/// Tokens from a code exchange or a refresh.
#[derive(Debug, Clone)]
pub struct XeroTokens {
    pub access_token: AccessToken,
    /// Rotates on every refresh: persist the newest (§7.1).
    pub refresh_token: RefreshToken,
    /// How long the access token was granted for.
    pub expires_in: Duration,
    /// When it was received (tokio clock).
    pub received_at: Instant,
    /// The scopes granted, when the server says.
    pub scopes: Option<Vec<String>>,
}

impl XeroTokens {
    /// When to refresh: 2 minutes before expiry (or half-way, for very short lifetimes).
    fn refresh_at(&self) -> Instant {
        let margin = REFRESH_MARGIN.min(self.expires_in / 2);
        self.received_at
            .checked_add(self.expires_in.saturating_sub(margin))
            .unwrap_or(self.received_at)
    }
}

type OAuthClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The Xero OAuth 2.0 client of one app registration (a PKCE app: no client secret).
#[derive(Clone)]
pub struct XeroAuth {
    oauth: OAuthClient,
    core: HttpCore,
    token_url: Url,
    scopes: Vec<String>,
}

impl fmt::Debug for XeroAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XeroAuth")
            .field("client_id", &self.oauth.client_id().as_str())
            .field("authorize", &self.oauth.auth_uri().as_str())
            .field("token", &self.oauth.token_uri().as_str())
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A started sign-in: open [`AuthorizationRequest::url`] in a browser, then hand the redirect
/// to [`XeroAuth::complete`]. Holds the PKCE verifier, so it is used once.
pub struct AuthorizationRequest {
    url: Url,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
    redirect_uri: RedirectUrl,
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .finish_non_exhaustive()
    }
}

impl AuthorizationRequest {
    /// The address to open in the browser.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The `state` sent (the redirect must carry it back).
    pub fn state(&self) -> &str {
        self.state.secret()
    }

    pub fn redirect_uri(&self) -> &str {
        self.redirect_uri.as_str()
    }
}

fn sign_in_error(what: impl fmt::Display) -> ApiError {
    ApiError::new(
        Api::Xero,
        ErrorKind::OAuth,
        format!("sign-in did not complete: {what}"),
    )
}

/// Turn an invalid_grant from the token endpoint into "sign in to Xero again" (§7.1).
fn token_error(e: ApiError) -> ApiError {
    if e.code.as_deref() == Some("invalid_grant") {
        let mut o = ApiError::new(
            Api::Xero,
            ErrorKind::OAuth,
            "sign-in has expired or was revoked: sign in to Xero again",
        )
        .with_code("invalid_grant")
        .with_operation(e.operation.clone());
        o.status = e.status;
        return o;
    }
    e
}

/// The token endpoint's answer (§7.1). No `Debug`: it holds tokens.
#[derive(serde::Deserialize)]
struct TokenBody {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_secs")]
    expires_in: Option<u64>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// `expires_in` as a number or a numeric string.
fn lenient_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::Deserialize;
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

impl XeroAuth {
    /// `login_base` is [`crate::config::Endpoints::xero_login`] (`…/identity/connect`),
    /// `identity_base` is [`crate::config::Endpoints::xero_identity`] (`…/connect`).
    pub fn new(
        login_base: Url,
        identity_base: Url,
        client_id: impl Into<String>,
        http: reqwest::Client,
    ) -> XeroAuth {
        let token_url = endpoint(&identity_base, "token");
        let oauth = BasicClient::new(ClientId::new(client_id.into()))
            .set_auth_uri(AuthUrl::from_url(endpoint(&login_base, "authorize")))
            .set_token_uri(TokenUrl::from_url(token_url.clone()));
        // Token calls are few; a small bound keeps a burst of refreshes polite.
        let core = HttpCore::new(
            Api::Xero,
            http,
            Limits::concurrency(4),
            crate::api::xero::parse_error,
        );
        XeroAuth {
            oauth,
            core,
            token_url,
            scopes: ScopeSet::Granular.scopes(),
        }
    }

    /// Ask for these scopes instead of [`DEFAULT_SCOPES`].
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_scope_set(self, set: ScopeSet) -> Self {
        self.with_scopes(set.scopes())
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.core = self.core.with_retry(retry);
        self
    }

    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    pub fn client_id(&self) -> &str {
        self.oauth.client_id().as_str()
    }

    /// Begin a sign-in (§7.1 authorize: response_type=code, client_id, redirect_uri, scope,
    /// state, code_challenge with S256).
    pub fn start(&self, redirect_uri: &Url) -> AuthorizationRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let redirect = RedirectUrl::from_url(redirect_uri.clone());
        let (url, state) = self
            .oauth
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .set_redirect_uri(std::borrow::Cow::Owned(redirect.clone()))
            .url();
        AuthorizationRequest {
            url,
            state,
            verifier,
            redirect_uri: redirect,
        }
    }

    /// Exchange the code for tokens (§7.1: code, redirect_uri, code_verifier, client_id; no
    /// secret). Codes are single-use, so this is never resent after it may have arrived.
    pub async fn exchange_code(
        &self,
        request: AuthorizationRequest,
        code: &str,
    ) -> Result<XeroTokens, ApiError> {
        let body = self
            .token_call(
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", request.redirect_uri.as_str()),
                    ("code_verifier", request.verifier.secret()),
                    ("client_id", self.client_id()),
                ],
                false,
                "POST /connect/token (code)",
            )
            .await?;
        tokens_from(body, None)
    }

    /// Check the redirect's state and exchange its code.
    pub async fn complete(
        &self,
        request: AuthorizationRequest,
        redirect: Redirect,
    ) -> Result<XeroTokens, ApiError> {
        let code = redirect
            .into_code(request.state.secret())
            .map_err(sign_in_error)?;
        self.exchange_code(request, &code).await
    }

    /// Finish with the redirect URL a person pasted (SSH sessions, §7.1 loopback fallback).
    pub async fn complete_pasted(
        &self,
        request: AuthorizationRequest,
        pasted: &str,
    ) -> Result<XeroTokens, ApiError> {
        let redirect = Redirect::from_url(pasted).map_err(sign_in_error)?;
        self.complete(request, redirect).await
    }

    /// The whole loopback flow: `show` receives the address to open in a browser; the
    /// redirect is awaited for at most `timeout`.
    pub async fn sign_in_with_loopback(
        &self,
        listener: LoopbackListener,
        timeout: Duration,
        show: impl FnOnce(&Url),
    ) -> Result<XeroTokens, ApiError> {
        let request = self.start(listener.redirect_uri());
        show(request.url());
        let redirect = listener.wait(timeout).await.map_err(sign_in_error)?;
        self.complete(request, redirect).await
    }

    /// Refresh (§7.1: grant_type=refresh_token, refresh_token, client_id). The old refresh
    /// token stays valid for 30 minutes after use, so a request whose answer was lost is
    /// safely resent with the same token: it is marked idempotent and HttpCore retries it.
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<XeroTokens, ApiError> {
        let body = self
            .token_call(
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.secret()),
                    ("client_id", self.client_id()),
                ],
                true,
                "POST /connect/token (refresh)",
            )
            .await?;
        tokens_from(body, Some(refresh_token))
    }

    /// A form POST to the token endpoint (§7.1; a PKCE app sends no secret). The form goes
    /// as a [`crate::api::http::Body::Form`], whose `Debug` never prints it.
    async fn token_call(
        &self,
        form: &[(&str, &str)],
        idempotent: bool,
        op: &'static str,
    ) -> Result<TokenBody, ApiError> {
        let req = Request::new(reqwest::Method::POST, self.token_url.clone())
            .header("accept", "application/json")
            .form(form)
            .idempotent(idempotent)
            .operation(op);
        let resp = self.core.send(req).await.map_err(token_error)?;
        let body: TokenBody = resp.json()?;
        if body
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(
                ApiError::malformed(Api::Xero, "a token that is not a bearer token")
                    .with_operation(op),
            );
        }
        if body.access_token.trim().is_empty() {
            return Err(ApiError::malformed(Api::Xero, "an empty access token").with_operation(op));
        }
        Ok(body)
    }
}

fn tokens_from(
    body: TokenBody,
    previous_refresh: Option<&RefreshToken>,
) -> Result<XeroTokens, ApiError> {
    let refresh_token = match (
        body.refresh_token.filter(|r| !r.is_empty()),
        previous_refresh,
    ) {
        (Some(r), _) => RefreshToken::new(r),
        // A refresh answer without a new token: the old one still stands.
        (None, Some(old)) => old.clone(),
        (None, None) => {
            return Err(ApiError::new(
                Api::Xero,
                ErrorKind::OAuth,
                "sign-in gave no refresh token: the offline_access scope is needed",
            ));
        }
    };
    let expires_in = body
        .expires_in
        .filter(|s| *s > 0)
        // A lifetime beyond a day is not Xero's 30 minutes (§7.1): cap it.
        .map(|s| Duration::from_secs(s.min(86_400)))
        .unwrap_or(DEFAULT_LIFETIME);
    Ok(XeroTokens {
        access_token: AccessToken::new(body.access_token),
        refresh_token,
        expires_in,
        received_at: Instant::now(),
        scopes: body
            .scope
            .map(|s| s.split_whitespace().map(str::to_string).collect()),
    })
}

struct SessionState {
    access: Option<(AccessToken, Instant)>,
    refresh: RefreshToken,
}

/// A signed-in Xero user: hands out access tokens to [`crate::api::xero::XeroClient`],
/// refreshing them (one refresh at a time) and publishing every rotated refresh token.
pub struct XeroSession {
    auth: XeroAuth,
    state: Mutex<SessionState>,
    /// Bumped on every successful refresh.
    generation: AtomicU64,
    refresh_tx: watch::Sender<RefreshToken>,
}

impl fmt::Debug for XeroSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XeroSession")
            .field("auth", &self.auth)
            .field("refreshes", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl XeroSession {
    /// A session from a fresh sign-in.
    pub fn new(auth: XeroAuth, tokens: XeroTokens) -> XeroSession {
        let refresh_at = tokens.refresh_at();
        let (refresh_tx, _) = watch::channel(tokens.refresh_token.clone());
        XeroSession {
            auth,
            state: Mutex::new(SessionState {
                access: Some((tokens.access_token, refresh_at)),
                refresh: tokens.refresh_token,
            }),
            generation: AtomicU64::new(0),
            refresh_tx,
        }
    }

    /// A session from a stored refresh token; the first call refreshes.
    pub fn from_refresh_token(auth: XeroAuth, refresh_token: RefreshToken) -> XeroSession {
        let (refresh_tx, _) = watch::channel(refresh_token.clone());
        XeroSession {
            auth,
            state: Mutex::new(SessionState {
                access: None,
                refresh: refresh_token,
            }),
            generation: AtomicU64::new(0),
            refresh_tx,
        }
    }

    /// The newest refresh token (persist it: the previous one stops working 30 minutes
    /// after it was used, §7.1).
    pub fn refresh_token(&self) -> RefreshToken {
        self.refresh_tx.borrow().clone()
    }

    /// Changes whenever the refresh token rotates.
    pub fn subscribe(&self) -> watch::Receiver<RefreshToken> {
        self.refresh_tx.subscribe()
    }

    /// Successful refreshes so far.
    pub fn refresh_count(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// A current access token; `force_refresh` after the API refused the one it had.
    pub async fn access_token(&self, force_refresh: bool) -> Result<AccessToken, ApiError> {
        let seen = self.generation.load(Ordering::Acquire);
        // Holding the lock across the refresh makes it single-flight: waiters then find the
        // new token.
        let mut st = self.state.lock().await;
        if let Some((token, refresh_at)) = &st.access {
            let now = Instant::now();
            if !force_refresh && now < *refresh_at {
                return Ok(token.clone());
            }
            if force_refresh && self.generation.load(Ordering::Acquire) != seen {
                // Another caller refreshed while this one waited.
                return Ok(token.clone());
            }
        }
        // A transport failure leaves the old refresh token in place, so the next attempt
        // reuses it within Xero's 30-minute grace (§7.1).
        let tokens = self.auth.refresh(&st.refresh).await?;
        let refresh_at = tokens.refresh_at();
        st.access = Some((tokens.access_token.clone(), refresh_at));
        st.refresh = tokens.refresh_token.clone();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.refresh_tx.send_replace(tokens.refresh_token);
        Ok(tokens.access_token)
    }
}

impl TokenSource for XeroSession {
    fn token(&self, force_refresh: bool) -> BoxFuture<'_, Result<String, ApiError>> {
        Box::pin(async move {
            self.access_token(force_refresh)
                .await
                .map(|t| t.secret().clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn token_responses_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200),
                                       expires in prop_oneof![Just(serde_json::json!(null)), any::<i64>().prop_map(|n| serde_json::json!(n)),
                                                              any::<f64>().prop_map(|f| serde_json::json!(f)), "[0-9a-z]{0,8}".prop_map(|s| serde_json::json!(s))],
                                       refresh in proptest::option::of("[a-z0-9]{0,6}")) {
            let h = reqwest::header::HeaderMap::new();
            let _ = crate::api::http::decode_json::<TokenBody>(Api::Xero, "op", &h, &bytes);
            let body = serde_json::json!({"access_token":"a","expires_in":expires,"refresh_token":refresh});
            if let Ok(t) = serde_json::from_value::<TokenBody>(body)
                && let Ok(t) = tokens_from(t, Some(&RefreshToken::new("r".into()))) {
                    let _ = t.refresh_at();
                }
        }
    }

    #[test]
    fn token_answers_without_refresh_token_or_lifetime() {
        let t: TokenBody =
            serde_json::from_str(r#"{"access_token":"a","expires_in":"1800"}"#).unwrap();
        let e = tokens_from(t, None).unwrap_err();
        assert!(e.to_string().contains("offline_access"), "{e}");
        let t: TokenBody =
            serde_json::from_str(r#"{"access_token":"a","refresh_token":""}"#).unwrap();
        let old = RefreshToken::new("old".into());
        let got = tokens_from(t, Some(&old)).unwrap();
        assert_eq!(got.refresh_token.secret(), "old");
        assert_eq!(got.expires_in, DEFAULT_LIFETIME);
    }

    fn auth() -> XeroAuth {
        XeroAuth::new(
            Url::parse("https://login.xero.com/identity/connect").unwrap(),
            Url::parse("https://identity.xero.com/connect").unwrap(),
            "CLIENT123",
            reqwest::Client::new(),
        )
    }

    #[test]
    fn authorize_url_has_every_parameter() {
        let a = auth();
        let req = a.start(&Url::parse("http://localhost:5001/callback").unwrap());
        let u = req.url();
        assert_eq!(u.host_str(), Some("login.xero.com"));
        assert_eq!(u.path(), "/identity/connect/authorize");
        let q: std::collections::HashMap<String, String> = u.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "CLIENT123");
        assert_eq!(q["redirect_uri"], "http://localhost:5001/callback");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"].len(), 43);
        assert_eq!(q["state"], req.state());
        assert_eq!(
            q["scope"],
            "openid profile email offline_access accounting.contacts accounting.settings accounting.invoices"
        );
        let legacy = auth().with_scope_set(ScopeSet::Legacy);
        let req = legacy.start(&Url::parse("http://localhost:5001/").unwrap());
        assert!(req.url().as_str().contains("accounting.transactions"));
        assert!(!req.url().as_str().contains("accounting.invoices"));
    }

    #[test]
    fn debug_never_shows_tokens() {
        let t = XeroTokens {
            access_token: AccessToken::new("eyJhbGciOiJSUzI1NiJ9.access".into()),
            refresh_token: RefreshToken::new("refresh-secret-value".into()),
            expires_in: Duration::from_secs(1800),
            received_at: Instant::now(),
            scopes: None,
        };
        let d = format!("{t:?}");
        assert!(
            !d.contains("eyJhbGci") && !d.contains("refresh-secret-value"),
            "{d}"
        );
        let s = XeroSession::new(auth(), t);
        let d = format!("{s:?}");
        assert!(
            !d.contains("eyJhbGci") && !d.contains("refresh-secret-value"),
            "{d}"
        );
        let req = auth().start(&Url::parse("http://localhost:1/").unwrap());
        let d = format!("{req:?}");
        assert!(!d.contains(req.state()), "{d}");
    }

    #[test]
    fn refresh_is_due_two_minutes_before_expiry() {
        let now = Instant::now();
        let t = XeroTokens {
            access_token: AccessToken::new("a".into()),
            refresh_token: RefreshToken::new("r".into()),
            expires_in: Duration::from_secs(1800),
            received_at: now,
            scopes: None,
        };
        assert_eq!(t.refresh_at(), now + Duration::from_secs(1680));
        let short = XeroTokens {
            expires_in: Duration::from_secs(60),
            ..t
        };
        assert_eq!(short.refresh_at(), now + Duration::from_secs(30));
    }
}
