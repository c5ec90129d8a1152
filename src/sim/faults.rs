//! The fault layer every sim request passes through: latency, injected failures, each
//! vendor's documented limits, and per-endpoint call statistics.
//!
//! Injected failures use the failing API's own error shape (reference/external-apis.md:
//! Graph §2.4/§2.5, Partner Center §3.5/§3.6, ConnectWise §5.4, Autotask §6.4, Xero §7.7/§7.8,
//! Entra §1.5); a dropped connection closes the TCP connection before any response, without
//! the request reaching the API (nothing was applied).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

use super::util::{self, Rng};
use super::{Sim, prefix};

/// Which API a request is for, by path prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum SimApi {
    Entra,
    Graph,
    PartnerCenter,
    DickerData,
    ConnectWise,
    Autotask,
    XeroLogin,
    XeroIdentity,
    XeroApi,
    Control,
    Unknown,
}

impl SimApi {
    pub fn of_path(path: &str) -> SimApi {
        let table = [
            (prefix::CONTROL, SimApi::Control),
            (prefix::ENTRA, SimApi::Entra),
            (prefix::GRAPH, SimApi::Graph),
            (prefix::PARTNER_CENTER, SimApi::PartnerCenter),
            (prefix::DICKER_DATA, SimApi::DickerData),
            (prefix::CONNECTWISE, SimApi::ConnectWise),
            (prefix::AUTOTASK, SimApi::Autotask),
            (prefix::XERO_LOGIN, SimApi::XeroLogin),
            (prefix::XERO_IDENTITY, SimApi::XeroIdentity),
            (prefix::XERO_API, SimApi::XeroApi),
        ];
        for (p, api) in table {
            if path == p || path.starts_with(&format!("{p}/")) {
                return api;
            }
        }
        SimApi::Unknown
    }

    pub fn name(self) -> &'static str {
        match self {
            SimApi::Entra => "entra",
            SimApi::Graph => "graph",
            SimApi::PartnerCenter => "partnercenter",
            SimApi::DickerData => "dickerdata",
            SimApi::ConnectWise => "connectwise",
            SimApi::Autotask => "autotask",
            SimApi::XeroLogin => "xero-login",
            SimApi::XeroIdentity => "xero-identity",
            SimApi::XeroApi => "xero-api",
            SimApi::Control => "control",
            SimApi::Unknown => "unknown",
        }
    }

    fn from_name(s: &str) -> Option<SimApi> {
        [
            SimApi::Entra,
            SimApi::Graph,
            SimApi::PartnerCenter,
            SimApi::DickerData,
            SimApi::ConnectWise,
            SimApi::Autotask,
            SimApi::XeroLogin,
            SimApi::XeroIdentity,
            SimApi::XeroApi,
        ]
        .into_iter()
        .find(|a| a.name() == s || (s == "xero" && *a == SimApi::XeroApi))
    }
}

/// Fault rates for one API (or all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rates {
    pub latency_ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    /// Probability of an injected 429 with `Retry-After`.
    pub rate_429: Option<f64>,
    /// Probability of an injected 500/502/503.
    pub rate_5xx: Option<f64>,
    /// Probability of a dropped connection (closed before any response).
    pub rate_drop: Option<f64>,
}

/// What the fault layer does. Parsed from `--faults`, changed at run time through `/_sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultSpec {
    /// Defaults for every API.
    pub all: Rates,
    /// Overrides per API name (`graph`, `xero-api`, ...).
    pub per_api: BTreeMap<String, Rates>,
    /// `Retry-After` seconds on injected 429s and 503s.
    pub retry_after_secs: u64,
    /// Lifetime of access tokens the sim issues (Entra default 3599 s, Xero 1800 s).
    pub token_ttl_secs: Option<u64>,
    /// Enforce each vendor's documented limits (Xero 60/min and 5 concurrent per tenant,
    /// Autotask 3 threads per endpoint and 10,000/hour, Graph resource units, Partner Center
    /// 500/min per tenant).
    pub vendor_limits: bool,
    /// Approve a pending device code this many seconds after it was issued (demo mode).
    pub auto_approve_secs: Option<u64>,
    /// Seed of the fault dice.
    pub seed: u64,
}

impl Default for FaultSpec {
    fn default() -> Self {
        FaultSpec {
            all: Rates::default(),
            per_api: BTreeMap::new(),
            retry_after_secs: 1,
            token_ttl_secs: None,
            vendor_limits: true,
            auto_approve_secs: None,
            seed: 1,
        }
    }
}

impl FaultSpec {
    /// Parse `latency=40ms,jitter=5ms,429=0.1,5xx=0.05,drop=0.01,retry-after=1,token-ttl=60,
    /// limits=off,approve-after=3,seed=7`; a key may be scoped to one API: `xero.429=0.2`.
    pub fn parse(spec: &str) -> Result<FaultSpec, String> {
        let mut f = FaultSpec::default();
        for part in spec
            .split([',', ';'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("fault `{part}` needs the form key=value"))?;
            let (api, key) = match key.split_once('.') {
                Some((a, k)) => {
                    let api = SimApi::from_name(a).ok_or_else(|| {
                        format!("unknown API `{a}` in fault `{part}` (entra, graph, partnercenter, dickerdata, connectwise, autotask, xero-login, xero-identity, xero-api)")
                    })?;
                    (Some(api), k)
                }
                None => (None, key),
            };
            let rates = match api {
                Some(a) => f.per_api.entry(a.name().to_string()).or_default(),
                None => &mut f.all,
            };
            match key {
                "latency" => rates.latency_ms = Some(parse_ms(value, part)?),
                "jitter" => rates.jitter_ms = Some(parse_ms(value, part)?),
                "429" => rates.rate_429 = Some(parse_rate(value, part)?),
                "5xx" => rates.rate_5xx = Some(parse_rate(value, part)?),
                "drop" => rates.rate_drop = Some(parse_rate(value, part)?),
                _ if api.is_some() => {
                    return Err(format!(
                        "`{key}` cannot be set per API in `{part}` (only latency, jitter, 429, 5xx, drop)"
                    ));
                }
                "retry-after" => f.retry_after_secs = parse_secs(value, part)?,
                "token-ttl" => f.token_ttl_secs = Some(parse_secs(value, part)?),
                "approve-after" => f.auto_approve_secs = Some(parse_secs(value, part)?),
                "limits" => {
                    f.vendor_limits = match value {
                        "on" | "true" | "1" => true,
                        "off" | "false" | "0" => false,
                        _ => return Err(format!("`{part}`: limits is on or off")),
                    }
                }
                "seed" => {
                    f.seed = value
                        .parse()
                        .map_err(|_| format!("`{part}`: seed is a whole number"))?
                }
                _ => {
                    return Err(format!(
                        "unknown fault `{key}` in `{part}` (latency, jitter, 429, 5xx, drop, retry-after, token-ttl, approve-after, limits, seed)"
                    ));
                }
            }
        }
        Ok(f)
    }

    /// Rates in force for `api`: the API's override, else the default.
    pub fn rates(&self, api: SimApi) -> Rates {
        let d = &self.all;
        match self.per_api.get(api.name()) {
            Some(o) => Rates {
                latency_ms: o.latency_ms.or(d.latency_ms),
                jitter_ms: o.jitter_ms.or(d.jitter_ms),
                rate_429: o.rate_429.or(d.rate_429),
                rate_5xx: o.rate_5xx.or(d.rate_5xx),
                rate_drop: o.rate_drop.or(d.rate_drop),
            },
            None => d.clone(),
        }
    }
}

fn parse_ms(v: &str, part: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else {
        (v, 1)
    };
    num.trim()
        .parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("`{part}`: expected a duration like 40ms or 2s"))
}

fn parse_secs(v: &str, part: &str) -> Result<u64, String> {
    v.trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{part}`: expected whole seconds"))
}

fn parse_rate(v: &str, part: &str) -> Result<f64, String> {
    let r = if let Some(p) = v.strip_suffix('%') {
        p.parse::<f64>().map(|x| x / 100.0)
    } else {
        v.parse::<f64>()
    }
    .map_err(|_| format!("`{part}`: expected a probability like 0.1 or 10%"))?;
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("`{part}`: a probability is between 0 and 1"))
    }
}

/// Calls to one endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointStats {
    pub calls: u64,
    /// 429s, injected or from vendor limits.
    pub throttled: u64,
    pub server_errors: u64,
    pub client_errors: u64,
    pub dropped: u64,
}

/// The layer's mutable state.
#[derive(Debug)]
pub struct FaultLayer {
    spec: RwLock<FaultSpec>,
    rng: Mutex<Rng>,
    stats: Mutex<BTreeMap<String, EndpointStats>>,
    limits: Mutex<VendorLimits>,
}

#[derive(Debug, Default)]
struct VendorLimits {
    windows: HashMap<String, VecDeque<Instant>>,
    in_flight: HashMap<String, usize>,
    buckets: HashMap<String, (f64, Instant)>,
}

impl FaultLayer {
    pub fn new(spec: FaultSpec) -> Self {
        FaultLayer {
            rng: Mutex::new(Rng::new(spec.seed)),
            spec: RwLock::new(spec),
            stats: Mutex::new(BTreeMap::new()),
            limits: Mutex::new(VendorLimits::default()),
        }
    }

    pub fn spec(&self) -> FaultSpec {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_spec(&self, spec: FaultSpec) {
        *self.rng.lock().unwrap_or_else(|p| p.into_inner()) = Rng::new(spec.seed);
        *self.spec.write().unwrap_or_else(|p| p.into_inner()) = spec;
    }

    pub fn stats(&self) -> BTreeMap<String, EndpointStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset_stats(&self) {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn roll(&self, p: Option<f64>) -> bool {
        match p {
            Some(p) if p > 0.0 => self.rng.lock().unwrap_or_else(|e| e.into_inner()).chance(p),
            _ => false,
        }
    }

    fn jitter(&self, max_ms: u64) -> u64 {
        if max_ms == 0 {
            0
        } else {
            self.rng
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .below(max_ms + 1)
        }
    }

    fn record(&self, key: &str, f: impl FnOnce(&mut EndpointStats)) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        f(s.entry(key.to_string()).or_default());
    }
}

/// Returned to hyper to close the connection without a response.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

/// `GET /graph/v1.0/users/{id}`: ids (GUIDs, numbers, long tokens) folded so statistics
/// group by endpoint.
pub fn endpoint_key(method: &str, path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    out.push_str(method);
    out.push(' ');
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        let is_id = seg.parse::<u64>().is_ok()
            || uuid::Uuid::parse_str(seg).is_ok()
            || (seg.len() >= 24 && !seg.contains('.'));
        out.push_str(if is_id { "{id}" } else { seg });
    }
    out
}

/// Serve one request through the fault layer.
pub async fn handle(
    sim: Sim,
    app: Router,
    req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let path = req.uri().path().to_string();
    let api = SimApi::of_path(&path);
    if api == SimApi::Control || api == SimApi::Unknown {
        return Ok(call(app, req).await);
    }
    let key = endpoint_key(req.method().as_str(), &path);
    let spec = sim.faults.spec();
    let rates = spec.rates(api);
    let layer = &sim.faults;
    layer.record(&key, |s| s.calls += 1);

    let latency = Duration::from_millis(
        rates.latency_ms.unwrap_or(0) + layer.jitter(rates.jitter_ms.unwrap_or(0)),
    );
    // Injected failures come after the same latency as a real answer would.
    if layer.roll(rates.rate_drop) {
        tokio::time::sleep(latency).await;
        layer.record(&key, |s| s.dropped += 1);
        return Err(Dropped);
    }
    if layer.roll(rates.rate_429) {
        tokio::time::sleep(latency).await;
        layer.record(&key, |s| s.throttled += 1);
        return Ok(throttled(api, spec.retry_after_secs, "injected"));
    }
    if layer.roll(rates.rate_5xx) {
        tokio::time::sleep(latency).await;
        layer.record(&key, |s| s.server_errors += 1);
        let status = match layer.jitter(2) {
            0 => StatusCode::INTERNAL_SERVER_ERROR,
            1 => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        return Ok(server_error(api, status, spec.retry_after_secs));
    }

    // The vendor counts a request from its arrival until its answer: take the concurrency
    // slot first, then spend the latency holding it (a real server is busy for that time).
    let mut _held: Option<InFlight> = None;
    let mut extra_headers: Vec<(&'static str, String)> = Vec::new();
    if spec.vendor_limits {
        match vendor_limit(&sim, api, &req, &mut extra_headers) {
            LimitOutcome::Go(h) => {
                _held = h.map(|key| InFlight {
                    sim: sim.clone(),
                    key,
                })
            }
            LimitOutcome::Refuse(resp) => {
                tokio::time::sleep(latency).await;
                layer.record(&key, |s| s.throttled += 1);
                return Ok(resp);
            }
        }
    }
    tokio::time::sleep(latency).await;
    let mut resp = call(app, req).await;
    drop(_held);
    for (name, value) in extra_headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    let status = resp.status().as_u16();
    layer.record(&key, |s| match status {
        429 => s.throttled += 1,
        500..=599 => s.server_errors += 1,
        400..=499 => s.client_errors += 1,
        _ => {}
    });
    Ok(resp)
}

/// One request counted against a concurrency limit; released when dropped, so a request whose
/// client went away mid-way (hyper drops the future) does not hold the slot for ever.
struct InFlight {
    sim: Sim,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut l = self
            .sim
            .faults
            .limits
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = l.in_flight.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

async fn call(app: Router, req: Request<Incoming>) -> Response<Body> {
    match app.oneshot(req.map(Body::new)).await {
        Ok(r) => r,
        Err(e) => {
            let e: Infallible = e;
            match e {}
        }
    }
}

enum LimitOutcome {
    /// Go ahead; release this in-flight key afterwards.
    Go(Option<String>),
    Refuse(Response<Body>),
}

/// The vendor's documented limits (reference/external-apis.md §7.8, §6.5, §2.5, §3.6).
fn vendor_limit(
    sim: &Sim,
    api: SimApi,
    req: &Request<Incoming>,
    extra: &mut Vec<(&'static str, String)>,
) -> LimitOutcome {
    let headers = req.headers();
    let path = req.uri().path();
    let now = Instant::now();
    let mut l = sim.faults.limits.lock().unwrap_or_else(|p| p.into_inner());
    match api {
        SimApi::XeroApi if path.contains("/api.xro/") => {
            // Per tenant: 60 calls per rolling minute, 5 concurrent, 5,000 per day (§7.8).
            let tenant = util::header(headers, "xero-tenant-id")
                .unwrap_or("")
                .to_ascii_lowercase();
            let day = window(
                &mut l,
                &format!("xero-day:{tenant}"),
                5000,
                Duration::from_secs(86_400),
                now,
            );
            if let Err(wait) = day {
                return LimitOutcome::Refuse(xero_429(wait, "day"));
            }
            let minute = window(
                &mut l,
                &format!("xero-min:{tenant}"),
                60,
                Duration::from_secs(60),
                now,
            );
            match minute {
                Err(wait) => {
                    undo_window(&mut l, &format!("xero-day:{tenant}"));
                    return LimitOutcome::Refuse(xero_429(wait, "minute"));
                }
                Ok(remaining) => {
                    extra.push(("x-minlimit-remaining", remaining.to_string()));
                    let day_left = 5000
                        - l.windows
                            .get(&format!("xero-day:{tenant}"))
                            .map_or(0, |w| w.len());
                    extra.push(("x-daylimit-remaining", day_left.to_string()));
                    extra.push(("x-appminlimit-remaining", "9999".into()));
                }
            }
            let k = format!("xero-conc:{tenant}");
            let n = l.in_flight.entry(k.clone()).or_default();
            if *n >= 5 {
                return LimitOutcome::Refuse(xero_429(Duration::from_secs(1), "concurrent"));
            }
            *n += 1;
            LimitOutcome::Go(Some(k))
        }
        SimApi::Autotask if !path.to_ascii_lowercase().contains("zoneinformation") => {
            // 10,000 requests per rolling hour per database; 3 concurrent threads per object
            // endpoint per integration code (§6.5).
            let code = util::header(headers, "apiintegrationcode").unwrap_or("");
            let entity = autotask_entity(path);
            if let Err(wait) = window(
                &mut l,
                "autotask-hour",
                10_000,
                Duration::from_secs(3600),
                now,
            ) {
                return LimitOutcome::Refuse(autotask_429(
                    wait,
                    "The request threshold of 10000 requests per hour has been exceeded.",
                ));
            }
            let k = format!("autotask:{code}:{entity}");
            let n = l.in_flight.entry(k.clone()).or_default();
            if *n >= 3 {
                return LimitOutcome::Refuse(autotask_429(
                    Duration::from_secs(1),
                    "The thread limit of 3 concurrent requests for this entity and integration code has been exceeded.",
                ));
            }
            *n += 1;
            LimitOutcome::Go(Some(k))
        }
        SimApi::Graph => {
            // Resource units per app+tenant: 3,500 per 10 s for a small tenant; GET users 2,
            // subscribedSkus 3, others 1; $select −1 (§2.5).
            let tenant = util::bearer(headers)
                .and_then(|t| sim.state().tokens.peek(t).map(|g| g.tenant_id.clone()))
                .unwrap_or_default();
            let lower = path.to_ascii_lowercase();
            let query = req.uri().query().unwrap_or("");
            let mut cost: f64 = if lower.ends_with("/users") {
                2.0
            } else if lower.ends_with("/subscribedskus") {
                3.0
            } else {
                1.0
            };
            if query.contains("select=") && cost > 1.0 {
                cost -= 1.0;
            }
            let (capacity, refill_per_sec) = (3500.0, 350.0);
            let b = l
                .buckets
                .entry(format!("graph:{tenant}"))
                .or_insert((capacity, now));
            let elapsed = now.duration_since(b.1).as_secs_f64();
            b.0 = (b.0 + elapsed * refill_per_sec).min(capacity);
            b.1 = now;
            if b.0 < cost {
                let wait = ((cost - b.0) / refill_per_sec).ceil().max(1.0) as u64;
                return LimitOutcome::Refuse(graph_ru_429(wait, &tenant));
            }
            b.0 -= cost;
            LimitOutcome::Go(None)
        }
        SimApi::PartnerCenter => {
            // 500 requests per minute per tenant identifier (§3.6): the customer in the path,
            // or the partner for partner-level calls.
            let customer = path
                .split('/')
                .skip_while(|s| *s != "customers")
                .nth(1)
                .unwrap_or("partner")
                .to_ascii_lowercase();
            match window(
                &mut l,
                &format!("pc:{customer}"),
                500,
                Duration::from_secs(60),
                now,
            ) {
                Err(wait) => LimitOutcome::Refuse(throttled(
                    SimApi::PartnerCenter,
                    wait.as_secs().max(1),
                    "limit",
                )),
                Ok(_) => LimitOutcome::Go(None),
            }
        }
        _ => LimitOutcome::Go(None),
    }
}

/// Count a request in a rolling window; `Ok(remaining)` or `Err(wait until a slot frees)`.
fn window(
    l: &mut VendorLimits,
    key: &str,
    max: usize,
    span: Duration,
    now: Instant,
) -> Result<usize, Duration> {
    let w = l.windows.entry(key.to_string()).or_default();
    while let Some(&f) = w.front() {
        if now.duration_since(f) >= span {
            w.pop_front();
        } else {
            break;
        }
    }
    if w.len() >= max {
        let wait = w.front().map_or(Duration::from_secs(1), |&f| {
            span.saturating_sub(now.duration_since(f))
        });
        return Err(wait);
    }
    w.push_back(now);
    Ok(max - w.len())
}

fn undo_window(l: &mut VendorLimits, key: &str) {
    if let Some(w) = l.windows.get_mut(key) {
        w.pop_back();
    }
}

fn autotask_entity(path: &str) -> String {
    // /autotask/zone3/atservicesrest/v1.0/{Entity}/... → entity, lowercased.
    let lower = path.to_ascii_lowercase();
    lower
        .split("/v1.0/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
        .to_string()
}

fn secs_ceil(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

fn json_response(
    status: StatusCode,
    body: serde_json::Value,
    headers: &[(&str, String)],
) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    let h: &mut HeaderMap = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    for (k, v) in headers {
        if let (Ok(name), Ok(val)) = (
            axum::http::HeaderName::try_from(*k),
            HeaderValue::from_str(v),
        ) {
            h.insert(name, val);
        }
    }
    r
}

fn request_id() -> String {
    util::guid()
}

/// A 429 in the API's own shape, with `Retry-After`.
pub fn throttled(api: SimApi, retry_after: u64, why: &str) -> Response<Body> {
    let ra = retry_after.to_string();
    let date = chrono::Utc::now().to_rfc3339();
    let body = match api {
        // Graph §2.5: {"error":{"code":"TooManyRequests",...}}.
        SimApi::Graph => {
            serde_json::json!({"error": {"code": "TooManyRequests", "message": "Too many requests.",
            "innerError": {"request-id": request_id(), "date": date, "client-request-id": request_id()}}})
        }
        // Partner Center §3.6: its 429 body differs from the normal error shape.
        SimApi::PartnerCenter => {
            serde_json::json!({"statusCode": 429, "message": format!("Rate limit is exceeded. Try again in {retry_after} seconds.")})
        }
        // Entra §1.5a: undocumented; the standard OAuth error body.
        SimApi::Entra => serde_json::json!({"error": "temporarily_unavailable",
            "error_description": format!("AADSTS90033: A transient error has occurred. Please try again.\r\nTrace ID: {}\r\nTimestamp: {date}", request_id()),
            "error_codes": [90033], "timestamp": date, "trace_id": request_id(), "correlation_id": request_id()}),
        // ConnectWise §5.4/§5.5: {code, message}.
        SimApi::ConnectWise => {
            serde_json::json!({"code": "TooManyRequests", "message": "Too many requests, please retry later."})
        }
        SimApi::Autotask => {
            serde_json::json!({"errors": ["Too many requests. Please retry later."]})
        }
        // Dicker Data: undocumented [UNCONFIRMED]; modelled as ASP.NET Web API's {"Message"}.
        SimApi::DickerData => serde_json::json!({"Message": "Too many requests."}),
        SimApi::XeroApi | SimApi::XeroIdentity | SimApi::XeroLogin => {
            return xero_429(Duration::from_secs(retry_after), "minute");
        }
        _ => serde_json::json!({"error": "too many requests"}),
    };
    let _ = why;
    json_response(StatusCode::TOO_MANY_REQUESTS, body, &[("retry-after", ra)])
}

fn xero_429(wait: Duration, problem: &str) -> Response<Body> {
    // Xero §7.8: 429 with Retry-After and X-Rate-Limit-Problem (minute, day, concurrent).
    json_response(
        StatusCode::TOO_MANY_REQUESTS,
        serde_json::json!({"Title": "Too Many Requests", "Status": 429,
            "Detail": format!("Rate limit exceeded: {problem}"), "Instance": request_id(), "Type": "RateLimitExceeded"}),
        &[
            ("retry-after", secs_ceil(wait).to_string()),
            ("x-rate-limit-problem", problem.to_string()),
        ],
    )
}

fn autotask_429(wait: Duration, message: &str) -> Response<Body> {
    json_response(
        StatusCode::TOO_MANY_REQUESTS,
        serde_json::json!({"errors": [message]}),
        &[("retry-after", secs_ceil(wait).to_string())],
    )
}

fn graph_ru_429(wait: u64, tenant: &str) -> Response<Body> {
    let date = chrono::Utc::now().to_rfc3339();
    json_response(
        StatusCode::TOO_MANY_REQUESTS,
        serde_json::json!({"error": {"code": "TooManyRequests", "message": "Too many requests.",
            "innerError": {"request-id": request_id(), "date": date}}}),
        &[
            ("retry-after", wait.to_string()),
            (
                "x-ms-throttle-scope",
                format!("Tenant_Application/ReadWrite/sim/{tenant}"),
            ),
            (
                "x-ms-throttle-information",
                "ResourceUnitLimitExceeded".into(),
            ),
        ],
    )
}

/// A 5xx in the API's own shape.
pub fn server_error(api: SimApi, status: StatusCode, retry_after: u64) -> Response<Body> {
    let date = chrono::Utc::now().to_rfc3339();
    let body = match api {
        SimApi::Graph => {
            serde_json::json!({"error": {"code": if status == StatusCode::SERVICE_UNAVAILABLE {"serviceNotAvailable"} else {"generalException"},
            "message": "The service is temporarily unavailable.", "innerError": {"request-id": request_id(), "date": date}}})
        }
        SimApi::PartnerCenter => {
            serde_json::json!({"code": 500, "description": "An internal error occurred.", "data": [], "source": "PartnerFD"})
        }
        SimApi::Entra => serde_json::json!({"error": "temporarily_unavailable",
            "error_description": "AADSTS90033: A transient error has occurred. Please try again.", "error_codes": [90033]}),
        SimApi::ConnectWise => {
            serde_json::json!({"code": "UnexpectedError", "message": "An unexpected error occurred."})
        }
        SimApi::Autotask => serde_json::json!({"errors": ["An unexpected error has occurred."]}),
        SimApi::DickerData => serde_json::json!({"Message": "An error has occurred."}),
        SimApi::XeroApi | SimApi::XeroIdentity | SimApi::XeroLogin => {
            serde_json::json!({"Title": "Service Unavailable",
            "Status": status.as_u16(), "Detail": "The service is temporarily unavailable.", "Instance": request_id()})
        }
        _ => serde_json::json!({"error": "server error"}),
    };
    let headers: Vec<(&str, String)> = if status == StatusCode::SERVICE_UNAVAILABLE {
        vec![("retry-after", retry_after.to_string())]
    } else {
        Vec::new()
    };
    json_response(status, body, &headers)
}

/// Shared with the routers: a fault layer reference for `Arc` users.
pub type Shared = Arc<FaultLayer>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_spec() {
        let f = FaultSpec::parse("latency=40ms,jitter=5ms,429=0.1,5xx=5%,drop=0.01,retry-after=2,limits=off,xero-api.429=0.5,approve-after=3,seed=9")
            .expect("spec");
        assert_eq!(f.all.latency_ms, Some(40));
        assert_eq!(f.all.rate_5xx, Some(0.05));
        assert!(!f.vendor_limits);
        assert_eq!(f.rates(SimApi::XeroApi).rate_429, Some(0.5));
        assert_eq!(f.rates(SimApi::XeroApi).latency_ms, Some(40));
        assert_eq!(f.rates(SimApi::Graph).rate_429, Some(0.1));
        assert_eq!(f.auto_approve_secs, Some(3));
    }

    #[test]
    fn rejects_bad_specs_with_reasons() {
        assert!(
            FaultSpec::parse("429=2")
                .unwrap_err()
                .contains("between 0 and 1")
        );
        assert!(
            FaultSpec::parse("latency")
                .unwrap_err()
                .contains("key=value")
        );
        assert!(
            FaultSpec::parse("nope.429=0.1")
                .unwrap_err()
                .contains("unknown API")
        );
        assert!(
            FaultSpec::parse("speed=3")
                .unwrap_err()
                .contains("unknown fault")
        );
    }

    #[test]
    fn endpoint_keys_fold_ids() {
        assert_eq!(
            endpoint_key(
                "GET",
                "/partnercenter/v1/customers/b44bb1fb-c595-45b0-9e09-d657365580bf/subscriptions"
            ),
            "GET /partnercenter/v1/customers/{id}/subscriptions"
        );
        assert_eq!(
            endpoint_key(
                "PATCH",
                "/connectwise/v4_6_release/apis/3.0/finance/agreements/77/additions/9012"
            ),
            "PATCH /connectwise/v4_6_release/apis/3.0/finance/agreements/{id}/additions/{id}"
        );
    }

    #[test]
    fn api_of_path() {
        assert_eq!(SimApi::of_path("/graph/v1.0/users"), SimApi::Graph);
        assert_eq!(
            SimApi::of_path("/autotask/zone3/atservicesrest/v1.0/Companies/query"),
            SimApi::Autotask
        );
        assert_eq!(SimApi::of_path("/_sim/state"), SimApi::Control);
        assert_eq!(SimApi::of_path("/graphx"), SimApi::Unknown);
    }
}
