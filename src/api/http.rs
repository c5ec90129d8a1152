//! The one HTTP path every API client goes through: limits, auth, retry, errors, statistics.
//!
//! - Limits: a [`Limiter`] permit is held for the whole request; every attempt takes a rate slot.
//! - Auth: a bearer token from a [`TokenSource`] (refreshed once on 401), or fixed headers
//!   (Basic, API keys) that a client sets on the [`Request`] itself.
//! - Retry: 429 and 503 wait for `Retry-After` (seconds or an HTTP date; Graph §2.5, Partner
//!   Center §3.6, Xero §7.8) or back off exponentially with jitter when it is absent; other 5xx
//!   and dropped connections are retried only for idempotent requests, so a create that may
//!   have reached the server is never sent twice (DESIGN.md §4).
//! - Errors: the API's own parser reads its error body; anything unreadable becomes a typed
//!   [`ErrorKind::Malformed`] error, never a panic.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::error::{Api, ApiError, ErrorKind, VendorError, clean_text};
use super::limit::{Limiter, Limits};

/// Something that hands out bearer tokens for one resource (and tenant).
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A current access token; with `force_refresh`, a new one even if the cached one has not
    /// expired (the server just said it had).
    fn token(&self, force_refresh: bool) -> BoxFuture<'_, Result<String, ApiError>>;

    /// A token to use after the server refused `refused` (HTTP 401). Sources that cache
    /// return a newer token when another request already replaced the refused one, so many
    /// requests meeting the same 401 refresh once; the default forces a refresh.
    fn refresh_after<'a>(&'a self, refused: &'a str) -> BoxFuture<'a, Result<String, ApiError>> {
        let _ = refused;
        self.token(true)
    }
}

/// A token that never changes (tests, or a token pasted by hand).
#[derive(Clone)]
pub struct StaticToken(pub String);

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticToken([redacted])")
    }
}

impl TokenSource for StaticToken {
    fn token(&self, _force_refresh: bool) -> BoxFuture<'_, Result<String, ApiError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// How to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff when the server gives no Retry-After; doubles each time.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// A Retry-After longer than this is not waited for: the error is returned instead
    /// (an Autotask suspension or a Xero daily limit lasts hours).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Counters for one client (benchmarks, `doctor`).
#[derive(Debug, Default)]
pub struct Stats {
    pub attempts: AtomicU64,
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub refreshes: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            attempts: self.attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Logical requests made by the client.
    pub requests: u64,
    /// HTTP attempts sent (requests + retries + refresh replays).
    pub attempts: u64,
    pub retries: u64,
    pub throttled: u64,
    pub refreshes: u64,
}

/// A request body.
#[derive(Clone)]
pub enum Body {
    Json(Bytes),
    Form(String),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bodies may hold credentials (Dicker Data AccessKeyRequest): never printed.
        match self {
            Body::Json(b) => write!(f, "Json({} bytes)", b.len()),
            Body::Form(s) => write!(f, "Form({} bytes)", s.len()),
        }
    }
}

/// One logical request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Body>,
    /// Safe to send again after a failure that may have reached the server.
    pub idempotent: bool,
    /// The limiter key (tenant, entity, customer); empty for the shared bucket.
    pub limit_key: String,
    /// `GET /users`: shown in errors and logs. Never includes a query string.
    pub operation: String,
}

impl Request {
    pub fn new(method: Method, url: Url) -> Self {
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let operation = format!("{} {}", method, url.path());
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            idempotent,
            limit_key: String::new(),
            operation,
        }
    }

    pub fn get(url: Url) -> Self {
        Request::new(Method::GET, url)
    }

    /// Set a header; a value that is not a valid header (a secret with a newline pasted in)
    /// is a configuration error, reported by [`HttpCore::send`] rather than panicking here.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(mut v) => {
                if is_secret_header(name) {
                    v.set_sensitive(true);
                }
                self.headers.insert(HeaderName::from_static(name), v);
            }
            Err(_) => {
                self.headers.insert(
                    HeaderName::from_static(INVALID_HEADER_MARK),
                    HeaderValue::from_static(name),
                );
            }
        }
        self
    }

    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        // Serialising our own plain structs cannot fail; an empty body would be refused by
        // the server with a clear error rather than panicking here.
        self.body = Some(Body::Json(Bytes::from(
            serde_json::to_vec(body).unwrap_or_default(),
        )));
        self
    }

    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let s = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.body = Some(Body::Form(s));
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.limit_key = key.into();
        self
    }

    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }

    pub fn operation(mut self, op: impl Into<String>) -> Self {
        self.operation = op.into();
        self
    }
}

const INVALID_HEADER_MARK: &str = "x-cspsync-invalid-header";

fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization" || n == "secret" || n.contains("token") || n.contains("key")
}

/// A successful (2xx) response.
#[derive(Debug, Clone)]
pub struct Response {
    pub api: Api,
    pub operation: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// Decode the body as JSON into `T`; any mismatch is a [`ErrorKind::Malformed`] error.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        decode_json(self.api, &self.operation, &self.headers, &self.body)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Decode a JSON body, describing what was wrong without echoing secrets.
pub fn decode_json<T: DeserializeOwned>(
    api: Api,
    operation: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(v),
        Err(e) => Err(
            ApiError::malformed(api, describe_bad_body(headers, body, &e))
                .with_operation(operation),
        ),
    }
}

fn describe_bad_body(headers: &HeaderMap, body: &[u8], e: &serde_json::Error) -> String {
    let ctype = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if body.is_empty() {
        "an empty body where JSON was expected".into()
    } else if first == Some(b'<') || ctype.starts_with("text/html") {
        "an HTML page instead of JSON".into()
    } else if e.is_eof() {
        "the JSON ended early: the response was cut off".into()
    } else if e.is_syntax() {
        format!("invalid JSON at line {} column {}", e.line(), e.column())
    } else {
        // Data errors: wrong type or missing field. serde's message names the field; quoted
        // values are cleaned so an echoed token never reaches a screen.
        format!("unexpected JSON: {}", clean_text(&e.to_string(), 200))
    }
}

/// Parses one API's error body.
pub type ErrorParser = fn(status: u16, headers: &HeaderMap, body: &[u8]) -> VendorError;

/// Says a failed response must not be retried whatever its status (Xero's daily-limit 429,
/// §7.8: the window resets hours later, not in seconds).
pub type GiveUp = fn(status: u16, headers: &HeaderMap) -> bool;

/// The shared HTTP engine of one API client.
#[derive(Clone)]
pub struct HttpCore {
    api: Api,
    client: reqwest::Client,
    limiter: Arc<Limiter>,
    retry: RetryPolicy,
    parse_error: ErrorParser,
    give_up: Option<GiveUp>,
    token: Option<Arc<dyn TokenSource>>,
    stats: Arc<Stats>,
}

impl fmt::Debug for HttpCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCore")
            .field("api", &self.api)
            .field("limits", &self.limiter.limits())
            .finish_non_exhaustive()
    }
}

/// Build the one reqwest client the app shares (connection pool, timeouts, user agent).
pub fn build_client(timeout: Duration) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .user_agent(concat!("cspsync/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .redirect(reqwest::redirect::Policy::none());
    match builder.build() {
        Ok(c) => c,
        // Only fails if the TLS backend cannot initialise; the default client then reports
        // the same problem on first use with a clear transport error.
        Err(_) => reqwest::Client::new(),
    }
}

impl HttpCore {
    pub fn new(
        api: Api,
        client: reqwest::Client,
        limits: Limits,
        parse_error: ErrorParser,
    ) -> Self {
        HttpCore {
            api,
            client,
            limiter: Arc::new(Limiter::new(limits)),
            retry: RetryPolicy::default(),
            parse_error,
            give_up: None,
            token: None,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Never retry a response for which `give_up` says so.
    pub fn with_give_up(mut self, give_up: GiveUp) -> Self {
        self.give_up = Some(give_up);
        self
    }

    /// Bearer auth from this token source on every request, refreshed once on 401.
    pub fn with_token(mut self, token: Arc<dyn TokenSource>) -> Self {
        self.token = Some(token);
        self
    }

    /// The same client (limits, statistics, connection pool) with another token source, e.g.
    /// Graph for another customer tenant.
    pub fn with_other_token(&self, token: Arc<dyn TokenSource>) -> Self {
        let mut c = self.clone();
        c.token = Some(token);
        c
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn api(&self) -> Api {
        self.api
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    pub fn limits(&self) -> Limits {
        self.limiter.limits()
    }

    /// Send, retrying as the policy says; `Ok` only for a 2xx response.
    pub async fn send(&self, req: Request) -> Result<Response, ApiError> {
        if let Some(name) = req.headers.get(INVALID_HEADER_MARK) {
            let name = name.to_str().unwrap_or("a header");
            return Err(ApiError::config(
                self.api,
                format!("cannot send the value configured for `{name}`: it contains characters a header cannot carry (a pasted newline?)"),
            )
            .with_operation(req.operation));
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let _permit = self.limiter.acquire(&req.limit_key).await;
        let mut refreshed = false;
        // The token a 401 refused (the next attempt asks for a newer one).
        let mut refused: Option<String> = None;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            if attempt > 1 {
                self.limiter.take_rate_slot_for(&req.limit_key).await;
            }
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            let started = tokio::time::Instant::now();
            let (built, sent_token) = self.build(&req, refused.take()).await?;
            let outcome = self.client.execute(built).await;
            let outcome = match outcome {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(body) => Ok((status, headers, body)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) => {
                    let before_send = e.is_connect();
                    let timed_out = e.is_timeout();
                    let retryable = req.idempotent || before_send;
                    // reqwest's error text includes the URL, whose query may carry credentials
                    // (Dicker Data's PricingRequest, §4.4): log it without.
                    let e = e.without_url();
                    tracing::debug!(api = self.api.key(), op = %req.operation, attempt, error = %e, "transport error");
                    if retryable && attempt < self.retry.max_attempts {
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(self.backoff(attempt)).await;
                        continue;
                    }
                    let what = if timed_out {
                        "did not answer in time"
                    } else if before_send {
                        "could not be reached"
                    } else {
                        "dropped the connection"
                    };
                    return Err(ApiError::new(
                        self.api,
                        ErrorKind::Transport {
                            maybe_applied: !req.idempotent && !before_send,
                        },
                        format!("{what} after {attempt} attempt(s)"),
                    )
                    .with_operation(req.operation.clone()));
                }
                Ok((status, headers, body)) => {
                    tracing::debug!(api = self.api.key(), op = %req.operation, attempt, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "response");
                    if status.is_success() {
                        return Ok(Response {
                            api: self.api,
                            operation: req.operation,
                            status,
                            headers,
                            body,
                        });
                    }
                    let code = status.as_u16();
                    if code == 401 && self.token.is_some() && !refreshed {
                        refreshed = true;
                        refused = Some(sent_token.unwrap_or_default());
                        self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let retry_after = parse_retry_after(&headers);
                    if code == 429 {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    if self.give_up.is_some_and(|g| g(code, &headers)) {
                        return Err(self.error_from(code, &headers, &body, &req.operation));
                    }
                    // A 429 was refused before any work; a 503 may not have been (a write it
                    // interrupted could be applied), so only reads retry a 503.
                    let throttled = code == 429 || (code == 503 && req.idempotent);
                    let server = matches!(code, 500 | 502 | 504);
                    if (throttled || (server && req.idempotent))
                        && attempt < self.retry.max_attempts
                    {
                        let wait = match retry_after {
                            Some(d) if d > self.retry.max_retry_after => {
                                return Err(self.error_from(code, &headers, &body, &req.operation));
                            }
                            Some(d) => d,
                            None => self.backoff(attempt),
                        };
                        if code == 429 {
                            self.limiter
                                .penalise(&req.limit_key, tokio::time::Instant::now() + wait);
                        }
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(self.error_from(code, &headers, &body, &req.operation));
                }
            }
        }
    }

    /// Send and decode the 2xx body as JSON.
    pub async fn send_json<T: DeserializeOwned>(&self, req: Request) -> Result<T, ApiError> {
        self.send(req).await?.json()
    }

    async fn build(
        &self,
        req: &Request,
        refused: Option<String>,
    ) -> Result<(reqwest::Request, Option<String>), ApiError> {
        let mut rb = self
            .client
            .request(req.method.clone(), req.url.clone())
            .headers(req.headers.clone());
        let mut sent = None;
        if let Some(token) = &self.token {
            let got = match refused.as_deref() {
                Some(r) => token.refresh_after(r).await,
                None => token.token(false).await,
            };
            let t = got.map_err(|e| e.with_operation(req.operation.clone()))?;
            let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                ApiError::malformed(self.api, "an access token that cannot be sent in a header")
            })?;
            v.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, v);
            sent = Some(t);
        }
        rb = match &req.body {
            Some(Body::Json(b)) => rb.header(CONTENT_TYPE, "application/json").body(b.clone()),
            Some(Body::Form(s)) => rb
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(s.clone()),
            None => rb,
        };
        let built = rb.build().map_err(|e| {
            ApiError::config(self.api, format!("cannot build the request: {e}"))
                .with_operation(req.operation.clone())
        })?;
        Ok((built, sent))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.retry.max_backoff);
        // Full jitter in [capped/2, capped].
        let half = capped / 2;
        half + Duration::from_nanos(random_u64() % (half.as_nanos() as u64).max(1))
    }

    /// Turn a non-2xx response into an [`ApiError`] using the API's own error parser.
    pub fn error_from(&self, status: u16, headers: &HeaderMap, body: &[u8], op: &str) -> ApiError {
        error_from_response(self.api, self.parse_error, status, headers, body, op)
    }
}

/// Build the typed error for a non-2xx response.
pub fn error_from_response(
    api: Api,
    parse: ErrorParser,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    op: &str,
) -> ApiError {
    let v = parse(status, headers, body);
    let kind = match status {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        429 => ErrorKind::RateLimited {
            retry_after: parse_retry_after(headers),
        },
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::Rejected,
    };
    let message = match v.message.as_deref().map(|m| clean_text(m, 300)) {
        Some(m) if !m.is_empty() => format!("said: {m}"),
        _ => match status {
            401 => "refused the credentials".into(),
            403 => "refused access".into(),
            404 => "has no such item".into(),
            429 => "is rate limiting cspsync".into(),
            500..=599 => "had an internal error".into(),
            _ => {
                let looks_html = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
                if looks_html {
                    "answered with an HTML page instead of an API error".into()
                } else {
                    "refused the request".into()
                }
            }
        },
    };
    let mut e = ApiError::new(api, kind, message)
        .with_status(status)
        .with_operation(op);
    e.code = v.code.map(|c| clean_text(&c, 80));
    e.details = v.details.iter().map(|d| clean_text(d, 300)).collect();
    e
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Join a path onto a base URL that may itself have a path (`https://host/v1.0` + `users`).
pub fn endpoint(base: &Url, path: &str) -> Url {
    let mut s = base.as_str().trim_end_matches('/').to_string();
    s.push('/');
    s.push_str(path.trim_start_matches('/'));
    // A valid base with a plain path stays valid; fall back to the base if not.
    Url::parse(&s).unwrap_or_else(|_| base.clone())
}

/// A random u64 from the standard library's randomly keyed hasher (no extra dependency);
/// used for backoff jitter and request ids, never for secrets.
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

/// Parse an error body as JSON of type `T`, or `None` (the caller falls back to the status).
pub fn parse_json_body<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }

    #[test]
    fn endpoint_keeps_base_path() {
        let base = Url::parse("http://127.0.0.1:9/graph/v1.0").expect("url");
        assert_eq!(
            endpoint(&base, "/users").as_str(),
            "http://127.0.0.1:9/graph/v1.0/users"
        );
        let base = Url::parse("https://api.xero.com/").expect("url");
        assert_eq!(
            endpoint(&base, "connections").as_str(),
            "https://api.xero.com/connections"
        );
    }

    #[test]
    fn bad_bodies_are_described() {
        let h = HeaderMap::new();
        let e = decode_json::<serde_json::Value>(Api::Graph, "GET /users", &h, b"<html>oops")
            .expect_err("html");
        assert!(e.message.contains("HTML page"), "{e}");
        let e = decode_json::<serde_json::Value>(Api::Graph, "GET /users", &h, b"{\"value\":[")
            .expect_err("eof");
        assert!(e.message.contains("cut off"), "{e}");
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            value: Vec<u32>,
        }
        let e =
            decode_json::<T>(Api::Graph, "GET /users", &h, b"{\"value\":\"x\"}").expect_err("type");
        assert_eq!(e.kind, ErrorKind::Malformed);
    }
}
