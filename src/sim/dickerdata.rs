//! Simulated Dicker Data B2B API (stands in for `https://b2b-api.dickerdata.com.au/api`).
//!
//! **This is a model, not a copy of a documented API.** Dicker Data publishes no public
//! specification (reference/external-apis.md §4): what is known comes from third-party
//! integration code, and everything beyond it is a modelling choice, marked `[MODELLED]` in the
//! comments below. The README says so plainly (DESIGN.md §2).
//!
//! Routes (all under the `/dickerdata/api` prefix):
//! - `POST /AccessKeyRequest`: account code + access token → short-lived AccessKey (§4.2).
//! - `POST /Subscriptions/GetSubscriptionDetails`: CSP/ADY/ADM subscription lines (§4.3).
//! - `POST /Subscriptions/GetTenant`: the tenants those lines belong to (§4.3, shape modelled).
//! - `POST /Subscriptions/UpdateSubscriptionQuantity`: **invented** (§4.3: no public evidence of
//!   any quantity-change endpoint); changes the confirmed quantity and orders the change from
//!   Microsoft (the customer's Microsoft subscription in the world changes too).
//! - `GET /PricingRequest`: unit prices per stock code (§4.4).
//!
//! Every call but `AccessKeyRequest` needs an AccessKey, sent either way §4.2 lists:
//! (a) `Authorization: Bearer <AccessKey>` with `DD-TransactionID` and `DD-ApiVersion`
//! headers, or (b) a `RequestHeader {TransactionID, Token, AccessKey}` in a POST body /
//! `request.requestHeader.*` (or `pricingRequest.*`) query parameters on a GET.

#![allow(
    clippy::result_large_err,
    reason = "handlers return early with a ready error Response; boxing it buys nothing here"
)]

use std::collections::HashMap;
use std::fmt;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Months, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};

use super::world::{DdSubscription, MsSubscription, SeatAddition, World};
use super::{Sim, util};

/// Runtime records of this API that are not part of the dataset. AccessKeys are secrets: the
/// state dump and `Debug` show only how many there are.
#[derive(Default, Serialize)]
pub struct Runtime {
    /// AccessKey → when it expires.
    #[serde(skip)]
    keys: HashMap<String, DateTime<Utc>>,
    /// AccessKeys granted since the sim started.
    pub access_keys_issued: u64,
    /// AccessKeyRequest calls refused (wrong access token or account code).
    pub access_key_requests_refused: u64,
    /// Calls refused because their AccessKey was missing, unknown or expired.
    pub calls_refused: u64,
    /// Quantity changes made through `UpdateSubscriptionQuantity`, oldest first.
    pub quantity_changes: Vec<QuantityChange>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("live_access_keys", &self.keys.len())
            .field("access_keys_issued", &self.access_keys_issued)
            .field(
                "access_key_requests_refused",
                &self.access_key_requests_refused,
            )
            .field("calls_refused", &self.calls_refused)
            .field("quantity_changes", &self.quantity_changes)
            .finish()
    }
}

impl Runtime {
    /// Expire every AccessKey now (a control-surface style fault): the next call with any of
    /// them is refused and the client must request a new key. Returns how many there were.
    pub fn expire_access_keys(&mut self) -> usize {
        let past = Utc::now() - Duration::seconds(1);
        for e in self.keys.values_mut() {
            *e = past;
        }
        self.keys.len()
    }

    fn key_is_live(&self, key: &str) -> bool {
        self.keys.get(key).is_some_and(|exp| *exp > Utc::now())
    }
}

/// One quantity change made through the (modelled) `UpdateSubscriptionQuantity` endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct QuantityChange {
    /// The Microsoft subscription id (Dicker Data `SubscriptionId`).
    pub subscription_id: String,
    pub tenant_id: String,
    /// Dicker Data's confirmed quantity before and after.
    pub from: u32,
    pub to: u32,
    /// Microsoft's quantity before the change (it can differ from Dicker Data's).
    pub microsoft_from: u32,
    pub at: DateTime<Utc>,
}

pub fn router() -> Router<Sim> {
    Router::new()
        .route("/AccessKeyRequest", post(access_key_request))
        .route(
            "/Subscriptions/GetSubscriptionDetails",
            post(get_subscription_details),
        )
        .route("/Subscriptions/GetTenant", post(get_tenant))
        .route(
            "/Subscriptions/UpdateSubscriptionQuantity",
            post(update_subscription_quantity),
        )
        .route("/PricingRequest", get(pricing_request))
        .fallback(not_found)
}

// ---------------------------------------------------------------------------------------------
// Response helpers
// ---------------------------------------------------------------------------------------------

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A refusal in the body of an HTTP 200, the way §4.2 reports a failed AccessKeyRequest; the
/// sim uses the same `{"Status":"Failed","Message":...}` shape for every business failure
/// [MODELLED].
fn failed(message: impl Into<String>) -> Response {
    ok(json!({"Status": "Failed", "Message": message.into()}))
}

/// HTTP 401 in ASP.NET Web API's shape, for a bad `Authorization: Bearer` key [MODELLED].
fn denied() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"Message": "Authorization has been denied for this request."})),
    )
        .into_response()
}

/// HTTP 400 in ASP.NET Web API's shape [MODELLED].
fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"Message": message.into()})),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    // ASP.NET Web API's wording for an unrouted URI [MODELLED].
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "Message": format!("No HTTP resource was found that matches the request URI '{}'.", uri.path())
        })),
    )
        .into_response()
}

/// A member of a JSON object by name, ignoring case: ASP.NET's JSON binding (Json.NET) matches
/// property names case-insensitively [MODELLED].
fn member<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A text field: strings as they are, numbers as their digits (Json.NET converts them);
/// null, absent and blank are "not given". `Err` names the field when it has the wrong type.
fn text_field(obj: &Value, name: &str) -> Result<Option<String>, String> {
    match member(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_string()))
        }
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{name} must be a string.")),
    }
}

fn parse_body(body: &str) -> Result<Value, Response> {
    if body.trim().is_empty() {
        return Err(failed(
            "The request body is empty; a JSON object is required.",
        ));
    }
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(failed("The request body is not a valid JSON object.")),
    }
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// A query parameter by name, ignoring case (ASP.NET model binding) [MODELLED].
fn query_param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

/// `2026-04-01T00:00:00`: the §4.3 date shape (no offset).
fn dd_date(d: Option<NaiveDate>) -> Value {
    match d {
        Some(d) => Value::String(format!("{}T00:00:00", d.format("%Y-%m-%d"))),
        None => Value::Null,
    }
}

/// Money as a JSON number, through the float adapter the crate uses for wire money.
fn money(d: Decimal) -> Value {
    #[derive(Serialize)]
    struct Money(#[serde(with = "rust_decimal::serde::float")] Decimal);
    serde_json::to_value(Money(d)).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------------------------

/// Where a call's AccessKey came from (§4.2 (b)).
enum Credentials<'a> {
    /// `RequestHeader` in a POST body.
    Body(Option<&'a Value>),
    /// Query parameters on a GET: `request.requestHeader.*`, or the endpoint's own prefix
    /// (`pricingRequest.*`, §4.4).
    Query(&'a [(String, String)], &'static str),
}

/// Check a call's AccessKey, either way §4.2 allows.
///
/// - (a) `Authorization` present: it must be `Bearer <live key>`, else HTTP 401 (ASP.NET Web
///   API's `{"Message":"Authorization has been denied for this request."}`) [MODELLED]. The
///   `DD-TransactionID` and `DD-ApiVersion` headers must be present (any value: D2 sends
///   `v1`, D3 `1.0`), else HTTP 400 naming the header [MODELLED].
/// - (b) no `Authorization`: the `RequestHeader` (body) or query fields carry the key; an
///   unknown or expired key is a 200 `{"Status":"Failed","Message":"Invalid or expired
///   AccessKey"}` (the D1 heuristic looks for exactly this) [MODELLED]. `Token`, when sent,
///   must be the account's access token; `TransactionID` is not checked [MODELLED].
/// - Neither: HTTP 401 as in (a) [MODELLED].
fn authorize(sim: &Sim, headers: &HeaderMap, creds: Credentials<'_>) -> Result<(), Response> {
    let mut s = sim.state();
    let state = &mut *s;
    if headers.contains_key("authorization") {
        let Some(key) = util::bearer(headers) else {
            state.dickerdata.calls_refused += 1;
            return Err(denied());
        };
        if !state.dickerdata.key_is_live(key) {
            state.dickerdata.calls_refused += 1;
            return Err(denied());
        }
        for name in ["DD-TransactionID", "DD-ApiVersion"] {
            if util::header(headers, name).is_none_or(|v| v.trim().is_empty()) {
                return Err(bad_request(format!(
                    "The request is invalid: the {name} header is required."
                )));
            }
        }
        return Ok(());
    }
    let (key, token) = match creds {
        Credentials::Body(Some(obj)) => {
            let rh = member(obj, "RequestHeader").unwrap_or(&Value::Null);
            (
                text_field(rh, "AccessKey").ok().flatten(),
                text_field(rh, "Token").ok().flatten(),
            )
        }
        Credentials::Body(None) => (None, None),
        Credentials::Query(pairs, prefix) => {
            let pick = |field: &str| {
                query_param(pairs, &format!("{prefix}.{field}"))
                    .or_else(|| query_param(pairs, &format!("request.requestHeader.{field}")))
                    .map(str::to_string)
            };
            (pick("accessKey"), pick("token"))
        }
    };
    let Some(key) = key else {
        state.dickerdata.calls_refused += 1;
        return Err(denied());
    };
    let token_ok = token.is_none_or(|t| {
        !state.world.dicker_data.access_code.is_empty() && t == state.world.dicker_data.access_code
    });
    if !state.dickerdata.key_is_live(&key) || !token_ok {
        state.dickerdata.calls_refused += 1;
        return Err(failed("Invalid or expired AccessKey"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// POST /AccessKeyRequest (§4.2)
// ---------------------------------------------------------------------------------------------

async fn access_key_request(State(sim): State<Sim>, body: String) -> Response {
    let req = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let token = text_field(&req, "AccessToken").ok().flatten();
    let account = match text_field(&req, "AccountCode") {
        Ok(a) => a,
        Err(m) => return failed(m),
    };
    let mut s = sim.state();
    let state = &mut *s;
    let dd = &state.world.dicker_data;
    // AccountCode is optional (D3 omits it); when sent it must be the account's [§4.2].
    // An empty access code in the world never matches anything.
    let token_ok = token
        .as_deref()
        .is_some_and(|t| !dd.access_code.is_empty() && t == dd.access_code);
    let account_ok = account
        .as_deref()
        .is_none_or(|a| a.eq_ignore_ascii_case(&dd.account_code));
    if !token_ok || !account_ok {
        state.dickerdata.access_key_requests_refused += 1;
        // §4.2: HTTP 200, no AccessKey (D1 test).
        return ok(json!({"Status": "Failed", "Message": "Invalid credentials"}));
    }
    // Lifetime: undocumented; the world says, 600 s (D1's fallback) when 0 [MODELLED].
    let lifetime = match dd.access_key_lifetime_secs {
        0 => 600,
        n => i64::from(n),
    };
    let expires = Utc::now() + Duration::seconds(lifetime);
    // The key's shape is unknown; an upper-case GUID like the access token [MODELLED].
    let key = util::guid().to_uppercase();
    let rt = &mut state.dickerdata;
    if rt.keys.len() > 10_000 {
        let now = Utc::now();
        rt.keys.retain(|_, exp| *exp > now);
    }
    rt.keys.insert(key.clone(), expires);
    rt.access_keys_issued += 1;
    // ExpireDateTime has no offset in §4.2; the sim writes UTC (whole seconds) [MODELLED].
    ok(json!({
        "AccessKey": key,
        "ExpireDateTime": expires.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "Status": "GRANTED",
        "Message": null,
    }))
}

// ---------------------------------------------------------------------------------------------
// Subscriptions (§4.3)
// ---------------------------------------------------------------------------------------------

/// The `In` object of a Subscriptions call, or a failure naming what is missing.
fn input(req: &Value) -> Result<&Value, Response> {
    match member(req, "In") {
        Some(v) if v.is_object() => Ok(v),
        Some(Value::Null) | None => Err(failed("In is required: send {\"In\":{...}}.")),
        Some(_) => Err(failed("In must be a JSON object.")),
    }
}

/// `SubscriptionType`: `CSP`, `ADY` or `ADM` (§4.3).
fn subscription_type(input: &Value, required: bool) -> Result<Option<String>, Response> {
    match text_field(input, "SubscriptionType").map_err(failed)? {
        Some(t) => {
            let up = t.to_ascii_uppercase();
            if ["CSP", "ADY", "ADM"].contains(&up.as_str()) {
                Ok(Some(up))
            } else {
                Err(failed(format!(
                    "SubscriptionType '{t}' is not valid; use CSP, ADY or ADM."
                )))
            }
        }
        None if required => Err(failed(
            "SubscriptionType is required (CSP, ADY or ADM).".to_string(),
        )),
        None => Ok(None),
    }
}

/// An optional GUID field (`TenantID`, `SubscriptionId`), checked for shape.
fn guid_field(input: &Value, name: &str) -> Result<Option<String>, Response> {
    match text_field(input, name).map_err(failed)? {
        Some(v) if uuid::Uuid::parse_str(&v).is_ok() => Ok(Some(v)),
        Some(_) => Err(failed(format!("{name} is not a valid GUID."))),
        None => Ok(None),
    }
}

/// One §4.3 item, with exactly D3's fields.
fn item(account_code: &str, s: &DdSubscription) -> Value {
    json!({
        "AccountCode": account_code,
        "TenantId": s.tenant_id,
        "SubscriptionReference": s.subscription_reference,
        "CompanyName": s.company_name,
        "TenantDescription": s.tenant_description,
        "StockCode": s.stock_code,
        "ParentSubscriptionId": s.parent_subscription_id,
        "SubscriptionId": s.subscription_id,
        "Status": s.status,
        "BillingFrequency": s.billing_frequency,
        "LastBillingDate": dd_date(s.last_billing_date),
        "NextBillingDate": dd_date(s.next_billing_date),
        "ConfirmedQuantity": s.confirmed_quantity,
        // Serial numbers do not apply to licences [MODELLED].
        "Serials": null,
        "ExpiryDate": dd_date(s.expiry_date),
        "StockDescription": s.stock_description,
        "ManufacturerStockCode": s.manufacturer_stock_code,
    })
}

/// Whether a subscription line is of `kind`. Every line in the world is a Microsoft CSP line
/// (Azure `DZH...` codes included); ADY/ADM (Adobe, by their names) have none [MODELLED].
fn is_type(_s: &DdSubscription, kind: &str) -> bool {
    kind == "CSP"
}

async fn get_subscription_details(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let req = parse_body(&body).ok();
    if let Err(r) = authorize(&sim, &headers, Credentials::Body(req.as_ref())) {
        return r;
    }
    let Some(req) = req else {
        return parse_body(&body)
            .err()
            .unwrap_or_else(|| failed("Bad request."));
    };
    let filters = (|| -> Result<_, Response> {
        let input = input(&req)?;
        let kind = subscription_type(input, true)?.unwrap_or_default();
        let tenant = guid_field(input, "TenantID")?;
        let sub_id = guid_field(input, "SubscriptionId")?;
        let stock = text_field(input, "StockCode").map_err(failed)?;
        let reference = text_field(input, "SubscriptionReference").map_err(failed)?;
        Ok((kind, tenant, sub_id, stock, reference))
    })();
    let (kind, tenant, sub_id, stock, reference) = match filters {
        Ok(f) => f,
        Err(r) => return r,
    };
    let s = sim.state();
    let dd = &s.world.dicker_data;
    let eq = |want: &Option<String>, have: &str| {
        want.as_deref().is_none_or(|w| w.eq_ignore_ascii_case(have))
    };
    let out: Vec<Value> = dd
        .subscriptions
        .iter()
        .filter(|x| is_type(x, &kind))
        .filter(|x| eq(&tenant, &x.tenant_id))
        .filter(|x| eq(&sub_id, &x.subscription_id))
        .filter(|x| eq(&stock, &x.stock_code))
        .filter(|x| eq(&reference, &x.subscription_reference))
        .map(|x| item(&dd.account_code, x))
        .collect();
    ok(json!({"Out": out}))
}

/// `GetTenant`: §4.3 names the call; the response shape was never seen, so the sim returns
/// `{"Out":[{TenantId, CompanyName, TenantDescription}]}`, one per tenant with lines [MODELLED].
async fn get_tenant(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    let req = parse_body(&body).ok();
    if let Err(r) = authorize(&sim, &headers, Credentials::Body(req.as_ref())) {
        return r;
    }
    let Some(req) = req else {
        return parse_body(&body)
            .err()
            .unwrap_or_else(|| failed("Bad request."));
    };
    // `In` is optional here: no filter lists every tenant [MODELLED].
    let empty = json!({});
    let input = match member(&req, "In") {
        None | Some(Value::Null) => &empty,
        Some(v) if v.is_object() => v,
        Some(_) => return failed("In must be a JSON object."),
    };
    let (kind, tenant) = match (
        subscription_type(input, false),
        guid_field(input, "TenantID"),
    ) {
        (Ok(k), Ok(t)) => (k.unwrap_or_else(|| "CSP".into()), t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let s = sim.state();
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for x in &s.world.dicker_data.subscriptions {
        let id = x.tenant_id.to_ascii_lowercase();
        if !is_type(x, &kind)
            || seen.contains(&id)
            || tenant
                .as_deref()
                .is_some_and(|t| !t.eq_ignore_ascii_case(&x.tenant_id))
        {
            continue;
        }
        seen.push(id);
        out.push(json!({
            "TenantId": x.tenant_id,
            "CompanyName": x.company_name,
            "TenantDescription": x.tenant_description,
        }));
    }
    ok(json!({"Out": out}))
}

// ---------------------------------------------------------------------------------------------
// POST /Subscriptions/UpdateSubscriptionQuantity — INVENTED [MODELLED]
// ---------------------------------------------------------------------------------------------

/// NCE: seats can be reduced only within 168 hours (DESIGN.md §4).
const REDUCTION_WINDOW_HOURS: i64 = 168;

/// The start of the subscription's current term: the later of its creation, its effective
/// start and `commitment_end_date` minus one term (the last renewal) [MODELLED].
fn term_start(ms: &MsSubscription) -> Option<DateTime<Utc>> {
    let months = match ms.term_duration.to_ascii_uppercase().as_str() {
        "P1M" => 1,
        "P1Y" => 12,
        "P3Y" => 36,
        _ => 0,
    };
    let renewal = (months > 0)
        .then(|| {
            ms.commitment_end_date
                .and_then(|end| end.checked_sub_months(Months::new(months)))
        })
        .flatten();
    [ms.creation_date, ms.effective_start_date, renewal]
        .into_iter()
        .flatten()
        .max()
}

/// How many of the subscription's seats can be removed now: all of them within 168 h of
/// purchase or renewal, otherwise only seats added within the last 168 h (each added seat has
/// its own window; DESIGN.md §4).
fn reducible_now(ms: &MsSubscription, now: DateTime<Utc>) -> u32 {
    let window = Duration::hours(REDUCTION_WINDOW_HOURS);
    let inside = |t: DateTime<Utc>| t <= now && now - t < window;
    if term_start(ms).is_some_and(inside) {
        return ms.quantity;
    }
    ms.seat_additions
        .iter()
        .filter(|a| a.added.is_some_and(inside))
        .map(|a| a.quantity)
        .sum::<u32>()
        .min(ms.quantity)
}

/// Remove `n` seats from the seat additions, newest first (the seats a reduction gives back).
fn trim_additions(additions: &mut Vec<SeatAddition>, mut n: u32) {
    additions.sort_by_key(|a| a.added);
    while n > 0 {
        let Some(last) = additions.last_mut() else {
            break;
        };
        let take = last.quantity.min(n);
        last.quantity -= take;
        n -= take;
        if last.quantity == 0 {
            additions.pop();
        }
    }
}

fn quantity_field(input: &Value) -> Result<u32, String> {
    const WHAT: &str = "Quantity must be a whole number of at least 1.";
    let q = match member(input, "Quantity") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        None | Some(Value::Null) => return Err("Quantity is required.".into()),
        Some(_) => None,
    };
    match q {
        Some(q) if q >= 1 => u32::try_from(q).map_err(|_| WHAT.to_string()),
        _ => Err(WHAT.into()),
    }
}

/// Apply a quantity change to the world: Dicker Data's line and the Microsoft subscription it
/// bills. Returns the updated line, or a message for a `Status: Failed` answer.
fn change_quantity(
    world: &mut World,
    subscription_id: &str,
    quantity: u32,
    now: DateTime<Utc>,
) -> Result<(DdSubscription, QuantityChange), String> {
    let dd_index = world
        .dicker_data
        .subscriptions
        .iter()
        .position(|x| x.subscription_id.eq_ignore_ascii_case(subscription_id))
        .ok_or_else(|| format!("Subscription {subscription_id} was not found on this account."))?;
    let line = &world.dicker_data.subscriptions[dd_index];
    if !line.status.eq_ignore_ascii_case("ACTIVE") {
        return Err(format!(
            "Subscription {subscription_id} is {}; only ACTIVE subscriptions can change quantity.",
            line.status
        ));
    }
    let tenant = line.tenant_id.clone();
    // The distributor orders the change from Microsoft: the customer's Microsoft subscription
    // must exist and be active (prefer the line's tenant; fall back to any tenant) [MODELLED].
    let ms = {
        let mut found: Option<&mut MsSubscription> = None;
        for c in world.customers.iter_mut() {
            let same_tenant = c.tenant_id.eq_ignore_ascii_case(&tenant);
            for sub in c.subscriptions.iter_mut() {
                if sub.id.eq_ignore_ascii_case(subscription_id) && (same_tenant || found.is_none())
                {
                    found = Some(sub);
                }
            }
        }
        found.ok_or_else(|| {
            format!(
                "Microsoft has no subscription {subscription_id}; the quantity cannot be changed."
            )
        })?
    };
    if !ms.status.eq_ignore_ascii_case("active") {
        return Err(format!(
            "The Microsoft subscription is {}; only active subscriptions can change quantity.",
            ms.status
        ));
    }
    let microsoft_from = ms.quantity;
    if quantity > microsoft_from {
        ms.seat_additions.push(SeatAddition {
            quantity: quantity - microsoft_from,
            added: Some(now),
        });
    } else if quantity < microsoft_from {
        let decrease = microsoft_from - quantity;
        let allowed = reducible_now(ms, now);
        if decrease > allowed {
            return Err(format!(
                "Seats can be reduced only within {REDUCTION_WINDOW_HOURS} hours of purchase, renewal or being added; {allowed} of the {microsoft_from} seats can be removed now, not {decrease}."
            ));
        }
        trim_additions(&mut ms.seat_additions, decrease);
    }
    ms.quantity = quantity;
    let line = &mut world.dicker_data.subscriptions[dd_index];
    let change = QuantityChange {
        subscription_id: line.subscription_id.clone(),
        tenant_id: line.tenant_id.clone(),
        from: line.confirmed_quantity,
        to: quantity,
        microsoft_from,
        at: now,
    };
    line.confirmed_quantity = quantity;
    Ok((line.clone(), change))
}

/// `{"In":{"SubscriptionId","Quantity"}}` → `{"Status":"Success","Message":null,"Out":{item}}`.
/// No public evidence of such an endpoint exists (§4.3): name, body and answer are invented
/// [MODELLED].
async fn update_subscription_quantity(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let req = parse_body(&body).ok();
    if let Err(r) = authorize(&sim, &headers, Credentials::Body(req.as_ref())) {
        return r;
    }
    let Some(req) = req else {
        return parse_body(&body)
            .err()
            .unwrap_or_else(|| failed("Bad request."));
    };
    let parsed = (|| -> Result<_, Response> {
        let input = input(&req)?;
        let id = guid_field(input, "SubscriptionId")?
            .ok_or_else(|| failed("SubscriptionId is required."))?;
        let quantity = quantity_field(input).map_err(failed)?;
        Ok((id, quantity))
    })();
    let (id, quantity) = match parsed {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut s = sim.state();
    let state = &mut *s;
    match change_quantity(&mut state.world, &id, quantity, Utc::now()) {
        Ok((line, change)) => {
            state.dickerdata.quantity_changes.push(change);
            let out = item(&state.world.dicker_data.account_code, &line);
            ok(json!({"Status": "Success", "Message": null, "Out": out}))
        }
        Err(m) => failed(m),
    }
}

// ---------------------------------------------------------------------------------------------
// GET /PricingRequest (§4.4)
// ---------------------------------------------------------------------------------------------

/// `pricingRequest.products=CODE1,CODE2` → `{"SearchResult":[{PartNumber, UnitPrice, SOH}]}`,
/// priced from the subscription lines' `unit_cost`. Codes the account has no line for are left
/// out; a licence has no stock on hand, so SOH is 0 [MODELLED].
async fn pricing_request(
    State(sim): State<Sim>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = query_pairs(raw.as_deref());
    if let Err(r) = authorize(&sim, &headers, Credentials::Query(&pairs, "pricingRequest")) {
        return r;
    }
    let Some(products) = query_param(&pairs, "pricingRequest.products") else {
        return failed(
            "pricingRequest.products is required: a comma-separated list of part numbers.",
        );
    };
    let s = sim.state();
    let mut out: Vec<Value> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for code in products.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let up = code.to_ascii_uppercase();
        if seen.contains(&up) {
            continue;
        }
        seen.push(up);
        if let Some(line) = s
            .world
            .dicker_data
            .subscriptions
            .iter()
            .find(|x| x.stock_code.eq_ignore_ascii_case(code))
        {
            out.push(json!({
                "PartNumber": line.stock_code,
                "UnitPrice": money(line.unit_cost),
                "SOH": 0,
            }));
        }
    }
    ok(json!({"SearchResult": out}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(quantity: u32, created_hours_ago: i64, now: DateTime<Utc>) -> MsSubscription {
        MsSubscription {
            id: "83ef9d05-4169-4ef9-9657-0e86b1eab1de".into(),
            quantity,
            status: "active".into(),
            term_duration: "P1Y".into(),
            creation_date: Some(now - Duration::hours(created_hours_ago)),
            ..MsSubscription::default()
        }
    }

    #[test]
    fn all_seats_reducible_in_the_first_week_only() {
        let now = Utc::now();
        assert_eq!(reducible_now(&ms(10, 24, now), now), 10);
        assert_eq!(reducible_now(&ms(10, 200, now), now), 0);
    }

    #[test]
    fn recent_seat_additions_have_their_own_window() {
        let now = Utc::now();
        let mut m = ms(10, 24 * 60, now);
        m.seat_additions = vec![
            SeatAddition {
                quantity: 3,
                added: Some(now - Duration::hours(10)),
            },
            SeatAddition {
                quantity: 2,
                added: Some(now - Duration::hours(300)),
            },
        ];
        assert_eq!(reducible_now(&m, now), 3);
        trim_additions(&mut m.seat_additions, 2);
        assert_eq!(m.seat_additions.iter().map(|a| a.quantity).sum::<u32>(), 3);
        assert_eq!(m.seat_additions.last().map(|a| a.quantity), Some(1));
    }

    #[test]
    fn a_renewal_opens_a_new_window() {
        let now = Utc::now();
        let mut m = ms(10, 24 * 400, now);
        // Renewed two days ago: the term ends a year from then.
        m.commitment_end_date = (now - Duration::hours(48)).checked_add_months(Months::new(12));
        assert_eq!(reducible_now(&m, now), 10);
    }

    #[test]
    fn dates_have_no_offset() {
        let d = NaiveDate::from_ymd_opt(2026, 4, 1);
        assert_eq!(dd_date(d), json!("2026-04-01T00:00:00"));
        assert_eq!(dd_date(None), Value::Null);
    }

    #[test]
    fn debug_does_not_show_access_keys() {
        let mut rt = Runtime::default();
        rt.keys
            .insert("SECRET-KEY".into(), Utc::now() + Duration::seconds(60));
        let shown = format!("{rt:?}");
        assert!(!shown.contains("SECRET-KEY"));
        assert!(shown.contains("live_access_keys: 1"));
        let dumped = serde_json::to_string(&rt).unwrap_or_default();
        assert!(!dumped.contains("SECRET-KEY"));
    }
}
