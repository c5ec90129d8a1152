//! Simulated Autotask PSA REST API v1.0 (reference/external-apis.md §6).
//!
//! Two bases, as the real service has:
//! - discovery, `{origin}/autotask/atservicesrest/v1.0/zoneInformation?user=..`, standing in for
//!   `https://webservices.autotask.net/atservicesrest` (§6.1);
//! - the zone, `{origin}/autotask/zone{N}/atservicesrest/v1.0/...`, with N the world's
//!   `autotask.zone_number`.
//!
//! Paths, JSON keys, filter operators and field names are all matched case-insensitively
//! (§6.1, §6.2). Every error is `{"errors":["..."]}` (§6.4). Status codes used:
//! - 400 for a request the API cannot read (bad JSON, bad query syntax, a wrong value type);
//! - 401 for missing or wrong credentials;
//! - 404 for an unknown path, entity or id;
//! - 405 for an operation the entity does not support (ContractServiceAdjustments is
//!   create-only, §6.3; ContractServiceUnits is query-only);
//! - 500 for a write the business rules refuse (effectiveDate outside the contract, a read-only
//!   field changed, a missing referenced record). Autotask answers rule violations on writes with
//!   500 and the rule's text [COMMUNITY; the exact status per rule is UNCONFIRMED].
//!
//! Dates: every entity field the sim serves is date-only; they are returned as
//! `"2025-08-31T00:00:00Z"` (UTC midnight, the shape Autotask uses for its UTC timestamps) and
//! accepted as `yyyy-mm-dd` or `yyyy-mm-ddThh:mm:ss[.fff][Z|±hh:mm]`, keeping the date part
//! without timezone conversion (§6.1).
//!
//! Paging tokens in `nextPageUrl` are self-contained (the query and the last id, base64url):
//! the real format is unconfirmed and clients treat it as opaque (§6.2).

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Months, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::world::{
    AtCompany, AtContract, AtContractService, AtContractServiceAdjustment, AtContractServiceUnit,
    AtService, Autotask,
};
use super::{Sim, State, util};
use filter::{Cond, Kind};

/// Runtime records of this API that are not part of the dataset (no secrets: counts only).
#[derive(Debug, Default, Serialize)]
pub struct Runtime {
    /// `zoneInformation` calls answered.
    pub zone_lookups: u64,
    /// Query pages served (first pages and `nextPageUrl` follow-ups).
    pub query_pages: u64,
    /// Records created by POST (contracts, services, contract services, adjustments).
    pub creates: u64,
    /// PATCH updates applied.
    pub updates: u64,
    /// Requests refused for missing or wrong credentials.
    pub auth_failures: u64,
    /// Authenticated zone calls in the last hour (for ThresholdInformation).
    #[serde(skip)]
    hour: HourWindow,
}

/// Request times of the rolling hour (Debug shows the count only).
#[derive(Default)]
struct HourWindow(VecDeque<Instant>);

impl std::fmt::Debug for HourWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests in the last hour", self.0.len())
    }
}

impl HourWindow {
    fn record(&mut self) -> usize {
        let now = Instant::now();
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
        {
            self.0.pop_front();
        }
        self.0.push_back(now);
        self.0.len()
    }
}

/// All of Autotask's routes: one dispatcher, because paths are case-insensitive (§6.1).
pub fn router() -> Router<Sim> {
    Router::new().route("/{*rest}", any(dispatch))
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// An Autotask error response: `{"errors":[...]}` (§6.4).
#[derive(Debug)]
struct AtError {
    status: StatusCode,
    message: String,
}

impl AtError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        AtError {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn rule(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, message)
    }
}

impl IntoResponse for AtError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "errors": [self.message] }))).into_response()
    }
}

type AtResult<T> = Result<T, AtError>;

fn ok(body: Value) -> AtResult<Response> {
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

async fn dispatch(
    AxState(sim): AxState<Sim>,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = sim.state();
    let req = Req {
        method: &method,
        query: query.as_deref().unwrap_or(""),
        headers: &headers,
        body: &body,
        origin: &sim.origin,
    };
    match route(&mut st, &req, &rest) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

struct Req<'a> {
    method: &'a Method,
    query: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
    origin: &'a str,
}

impl Req<'_> {
    /// A query-string parameter, name case-insensitive.
    fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.into_owned())
    }

    /// The request body as a JSON object.
    fn json_object(&self) -> AtResult<Map<String, Value>> {
        match serde_json::from_slice::<Value>(self.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(AtError::bad("The request body must be a JSON object.")),
            Err(e) => Err(AtError::bad(format!(
                "The request body is not valid JSON: {e}."
            ))),
        }
    }
}

fn route(st: &mut State, req: &Req<'_>, rest: &str) -> AtResult<Response> {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match l.as_slice() {
        ["atservicesrest", "v1.0", "zoneinformation"] => {
            if *req.method != Method::GET {
                return Err(AtError::unsupported(
                    "zoneInformation only answers GET requests.",
                ));
            }
            zone_information(st, req)
        }
        [zone, "atservicesrest", "v1.0", ..] if zone.starts_with("zone") => {
            let n = zone.get(4..).and_then(|n| n.parse::<u32>().ok());
            if n != Some(st.world.autotask.zone_number) {
                return Err(AtError::not_found(format!(
                    "There is no Autotask zone at '{}'; look the zone up with zoneInformation.",
                    segs.first().copied().unwrap_or_default()
                )));
            }
            if let Err(e) = authenticate(&st.world.autotask, req.headers) {
                st.autotask.auth_failures += 1;
                return Err(e);
            }
            let used = st.autotask.hour.record();
            if l.get(3) == Some(&"thresholdinformation") && *req.method == Method::GET {
                // §6.1: usage against the hourly allowance [UNCONFIRMED field names].
                return ok(json!({
                    "externalRequestThreshold": 10_000,
                    "requestThresholdTimeframe": 60,
                    "currentTimeframeRequestCount": used,
                }));
            }
            api(st, req, &segs[3..], &l[3..])
        }
        _ => Err(AtError::not_found(format!(
            "No Autotask resource at '/{rest}'."
        ))),
    }
}

/// `GET /atservicesrest/v1.0/zoneInformation?user=` with or without auth headers (§6.1).
fn zone_information(st: &mut State, req: &Req<'_>) -> AtResult<Response> {
    let Some(user) = req.param("user").filter(|u| !u.trim().is_empty()) else {
        return Err(AtError::bad(
            "The user parameter is required: zoneInformation?user={API user name}.",
        ));
    };
    let at = &st.world.autotask;
    if !user.trim().eq_ignore_ascii_case(at.username.trim()) || at.username.is_empty() {
        return Err(AtError::not_found(format!(
            "No Autotask zone is known for the user '{}'.",
            user.trim()
        )));
    }
    st.autotask.zone_lookups += 1;
    let at = &st.world.autotask;
    ok(json!({
        "zoneName": if at.zone_name.is_empty() { format!("Zone {}", at.zone_number) } else { at.zone_name.clone() },
        "url": zone_url(req.origin, at.zone_number),
        "webUrl": format!("{}/autotask/ww{}/", req.origin, at.zone_number),
        "ci": at.ci,
    }))
}

fn zone_url(origin: &str, zone: u32) -> String {
    format!("{origin}/autotask/zone{zone}/atservicesrest/")
}

/// The three headers every zone call carries (§6.1). The secret is never echoed.
fn authenticate(at: &Autotask, headers: &HeaderMap) -> AtResult<()> {
    let unauthorized = |m: String| AtError::new(StatusCode::UNAUTHORIZED, m);
    let mut missing = Vec::new();
    let code = util::header(headers, "apiintegrationcode").map(str::trim);
    let user = util::header(headers, "username").map(str::trim);
    let secret = util::header(headers, "secret");
    for (name, v) in [
        ("ApiIntegrationCode", code),
        ("UserName", user),
        ("Secret", secret),
    ] {
        if v.is_none_or(str::is_empty) {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        return Err(unauthorized(format!(
            "The request is missing the {} header{}.",
            missing.join(", "),
            if missing.len() > 1 { "s" } else { "" }
        )));
    }
    let code_ok = code.is_some_and(|c| at.integration_codes.iter().any(|k| k == c));
    if !code_ok {
        return Err(unauthorized(
            "The ApiIntegrationCode is not a valid tracking identifier for this database.".into(),
        ));
    }
    let user_ok =
        user.is_some_and(|u| !at.username.is_empty() && u.eq_ignore_ascii_case(&at.username));
    let secret_ok = secret.is_some_and(|s| !at.secret.is_empty() && s == at.secret);
    if !user_ok || !secret_ok {
        return Err(unauthorized(
            "The UserName or Secret is not valid for this Autotask database.".into(),
        ));
    }
    Ok(())
}

/// Everything under `/v1.0/` in the zone; `segs` keeps the original case, `l` is lowercase.
fn api(st: &mut State, req: &Req<'_>, segs: &[&str], l: &[&str]) -> AtResult<Response> {
    let Some(first) = l.first() else {
        return Err(AtError::not_found("No entity was named after /v1.0/."));
    };
    let Some(entity) = Entity::parse(first) else {
        return Err(AtError::not_found(format!(
            "The entity '{}' does not exist (the simulator serves Companies, Contracts, Services, ContractServices, ContractServiceUnits and ContractServiceAdjustments).",
            segs.first().copied().unwrap_or_default()
        )));
    };
    let m = req.method.clone();
    match &l[1..] {
        ["query"] if m == Method::GET || m == Method::POST => {
            entity.supports_query()?;
            let q = if m == Method::GET {
                search_param(req)?
            } else {
                Value::Object(req.json_object()?)
            };
            let page = run_query(st, req.origin, entity, &q, None, None)?;
            st.autotask.query_pages += 1;
            ok(page)
        }
        ["query", "count"] if m == Method::GET || m == Method::POST => {
            entity.supports_query()?;
            let q = if m == Method::GET {
                search_param(req)?
            } else {
                Value::Object(req.json_object()?)
            };
            let parsed = parse_query(entity, &q)?;
            let n = records(&st.world.autotask, entity)
                .iter()
                .filter(|r| filter::eval(&parsed.cond, r))
                .count();
            ok(json!({ "queryCount": n }))
        }
        ["query", "next"] if m == Method::GET => {
            entity.supports_query()?;
            let token = req.param("paging").ok_or_else(|| {
                AtError::bad("The paging parameter is missing; follow nextPageUrl as given.")
            })?;
            let cursor = Cursor::decode(&token)?;
            if !cursor.e.eq_ignore_ascii_case(entity.name()) {
                return Err(AtError::bad(
                    "This paging token belongs to a query on another entity.",
                ));
            }
            let page = run_query(st, req.origin, entity, &cursor.q, cursor.a, cursor.b)?;
            st.autotask.query_pages += 1;
            ok(page)
        }
        ["query", ..] => Err(AtError::unsupported(
            "Queries are POST {Entity}/query with a JSON body, GET {Entity}/query?search=, or {Entity}/query/count.",
        )),
        [] if m == Method::POST => {
            let body = req.json_object()?;
            let id = create(st, entity, None, &body)?;
            ok(json!({ "itemId": id }))
        }
        [] if m == Method::PATCH || m == Method::PUT => {
            let body = req.json_object()?;
            let id = update(st, entity, None, &body)?;
            ok(json!({ "itemId": id }))
        }
        [] => Err(AtError::unsupported(format!(
            "{} supports POST (create) and PATCH (update) here; read with {}/query or {}/{{id}}.",
            entity.name(),
            entity.name(),
            entity.name()
        ))),
        [id] => {
            let id = parse_id(id)?;
            if m == Method::GET {
                entity.supports_get()?;
                let item = records(&st.world.autotask, entity)
                    .into_iter()
                    .find(|r| record_id(r) == id)
                    .ok_or_else(|| {
                        AtError::not_found(format!("{} {id} does not exist.", entity.name()))
                    })?;
                ok(json!({ "item": Value::Object(item) }))
            } else if m == Method::DELETE {
                Err(AtError::unsupported(format!(
                    "The {} entity does not support delete{}.",
                    entity.name(),
                    if entity == Entity::ContractServiceAdjustments {
                        "; adjustments are create-only"
                    } else {
                        " in the simulator"
                    }
                )))
            } else {
                Err(AtError::unsupported(format!(
                    "{}/{{id}} only answers GET.",
                    entity.name()
                )))
            }
        }
        [id, child] if entity == Entity::Contracts => {
            let contract_id = parse_id(id)?;
            match (*child, m.clone()) {
                ("services", Method::POST) => {
                    let body = req.json_object()?;
                    let id = create(st, Entity::ContractServices, Some(contract_id), &body)?;
                    ok(json!({ "itemId": id }))
                }
                ("services", Method::PATCH) | ("services", Method::PUT) => {
                    let body = req.json_object()?;
                    let id = update(st, Entity::ContractServices, Some(contract_id), &body)?;
                    ok(json!({ "itemId": id }))
                }
                ("serviceadjustments", Method::POST) => {
                    let body = req.json_object()?;
                    let id = create(
                        st,
                        Entity::ContractServiceAdjustments,
                        Some(contract_id),
                        &body,
                    )?;
                    ok(json!({ "itemId": id }))
                }
                ("serviceadjustments", _) => Err(AtError::unsupported(
                    "The ContractServiceAdjustments entity does not support this operation; adjustments are create-only (POST).",
                )),
                ("services", _) => Err(AtError::unsupported(
                    "Contracts/{id}/Services supports POST (create) and PATCH (update); read with ContractServices/query.",
                )),
                _ => Err(AtError::not_found(format!(
                    "Contracts has no child collection '{}'.",
                    segs.get(2).copied().unwrap_or_default()
                ))),
            }
        }
        _ => Err(AtError::not_found(format!(
            "No Autotask resource at '{}'.",
            segs.join("/")
        ))),
    }
}

fn parse_id(s: &str) -> AtResult<u64> {
    s.parse::<u64>()
        .map_err(|_| AtError::not_found(format!("'{s}' is not an entity id.")))
}

fn search_param(req: &Req<'_>) -> AtResult<Value> {
    let raw = req.param("search").ok_or_else(|| {
        AtError::bad(
            "GET {Entity}/query needs the search parameter: ?search={url-encoded JSON query}.",
        )
    })?;
    match serde_json::from_str::<Value>(&raw) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(AtError::bad("The search parameter must be a JSON object.")),
        Err(e) => Err(AtError::bad(format!(
            "The search parameter is not valid JSON: {e}."
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Entities and their wire records
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entity {
    Companies,
    Contracts,
    Services,
    ContractServices,
    ContractServiceUnits,
    ContractServiceAdjustments,
}

const COMPANY_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Int),
    ("companyName", Kind::Str),
    ("companyNumber", Kind::Str),
    ("companyType", Kind::Int),
    ("isActive", Kind::Bool),
    ("phone", Kind::Str),
    ("webAddress", Kind::Str),
];

const CONTRACT_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Int),
    ("companyID", Kind::Int),
    ("contractName", Kind::Str),
    ("contractNumber", Kind::Str),
    ("contractType", Kind::Int),
    ("status", Kind::Int),
    ("startDate", Kind::Date),
    ("endDate", Kind::Date),
    ("contractPeriodType", Kind::Int),
    ("description", Kind::Str),
];

const SERVICE_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Int),
    ("name", Kind::Str),
    ("description", Kind::Str),
    ("sku", Kind::Str),
    ("unitPrice", Kind::Num),
    ("unitCost", Kind::Num),
    ("periodType", Kind::Int),
    ("isActive", Kind::Bool),
];

const CONTRACT_SERVICE_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Int),
    ("contractID", Kind::Int),
    ("serviceID", Kind::Int),
    ("unitPrice", Kind::Num),
    ("unitCost", Kind::Num),
    ("adjustedPrice", Kind::Num),
    ("internalCurrencyUnitPrice", Kind::Num),
    ("internalCurrencyAdjustedPrice", Kind::Num),
    ("invoiceDescription", Kind::Str),
    ("internalDescription", Kind::Str),
];

const UNIT_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Int),
    ("contractID", Kind::Int),
    ("contractServiceID", Kind::Int),
    ("serviceID", Kind::Int),
    ("startDate", Kind::Date),
    ("endDate", Kind::Date),
    ("units", Kind::Int),
    ("price", Kind::Num),
    ("cost", Kind::Num),
    ("approveAndPostDate", Kind::Date),
];

const ADJUSTMENT_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Int),
    ("contractID", Kind::Int),
    ("contractServiceID", Kind::Int),
    ("serviceID", Kind::Int),
    ("unitChange", Kind::Int),
    ("adjustedUnitPrice", Kind::Num),
    ("adjustedUnitCost", Kind::Num),
    ("effectiveDate", Kind::Date),
    ("quoteItemID", Kind::Int),
    ("allowRepeatService", Kind::Bool),
];

impl Entity {
    fn parse(lower: &str) -> Option<Entity> {
        Some(match lower {
            "companies" => Entity::Companies,
            "contracts" => Entity::Contracts,
            "services" => Entity::Services,
            "contractservices" => Entity::ContractServices,
            "contractserviceunits" => Entity::ContractServiceUnits,
            "contractserviceadjustments" => Entity::ContractServiceAdjustments,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Entity::Companies => "Companies",
            Entity::Contracts => "Contracts",
            Entity::Services => "Services",
            Entity::ContractServices => "ContractServices",
            Entity::ContractServiceUnits => "ContractServiceUnits",
            Entity::ContractServiceAdjustments => "ContractServiceAdjustments",
        }
    }

    fn fields(self) -> &'static [(&'static str, Kind)] {
        match self {
            Entity::Companies => COMPANY_FIELDS,
            Entity::Contracts => CONTRACT_FIELDS,
            Entity::Services => SERVICE_FIELDS,
            Entity::ContractServices => CONTRACT_SERVICE_FIELDS,
            Entity::ContractServiceUnits => UNIT_FIELDS,
            Entity::ContractServiceAdjustments => ADJUSTMENT_FIELDS,
        }
    }

    /// ContractServiceAdjustments cannot be queried, read, updated or deleted (§6.3).
    fn supports_query(self) -> AtResult<()> {
        if self == Entity::ContractServiceAdjustments {
            return Err(AtError::unsupported(
                "The ContractServiceAdjustments entity does not support query; it is create-only.",
            ));
        }
        Ok(())
    }

    fn supports_get(self) -> AtResult<()> {
        if self == Entity::ContractServiceAdjustments {
            return Err(AtError::unsupported(
                "The ContractServiceAdjustments entity does not support get; it is create-only.",
            ));
        }
        Ok(())
    }
}

/// A JSON number for money (2-dp values round-trip exactly, as the float serde of
/// rust_decimal promises).
fn money(d: Decimal) -> Value {
    #[derive(Serialize)]
    struct M(#[serde(with = "rust_decimal::serde::float")] Decimal);
    serde_json::to_value(M(d)).unwrap_or(Value::Null)
}

fn opt_money(d: Option<Decimal>) -> Value {
    d.map_or(Value::Null, money)
}

/// A date-only field on the wire: UTC midnight (§6.1).
fn wire_date(d: Option<NaiveDate>) -> Value {
    d.map_or(Value::Null, |d| {
        Value::String(format!("{}T00:00:00Z", d.format("%Y-%m-%d")))
    })
}

fn opt_str(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn company_json(c: &AtCompany) -> Map<String, Value> {
    obj(json!({
        "id": c.id,
        "companyName": c.company_name,
        "companyNumber": opt_str(&c.company_number),
        "companyType": c.company_type,
        "isActive": c.is_active,
        "phone": opt_str(&c.phone),
        "webAddress": opt_str(&c.web_address),
        "userDefinedFields": [],
    }))
}

fn contract_json(c: &AtContract) -> Map<String, Value> {
    obj(json!({
        "id": c.id,
        "companyID": c.company_id,
        "contractName": c.contract_name,
        "contractNumber": opt_str(&c.contract_number),
        "contractType": c.contract_type,
        "status": c.status,
        "startDate": wire_date(c.start_date),
        "endDate": wire_date(c.end_date),
        "contractPeriodType": c.contract_period_type,
        "description": opt_str(&c.description),
        "userDefinedFields": [],
    }))
}

fn service_json(s: &AtService) -> Map<String, Value> {
    obj(json!({
        "id": s.id,
        "name": s.name,
        "description": opt_str(&s.description),
        "sku": opt_str(&s.sku),
        "unitPrice": money(s.unit_price),
        "unitCost": money(s.unit_cost),
        "periodType": s.period_type,
        "isActive": s.is_active,
    }))
}

fn contract_service_json(c: &AtContractService) -> Map<String, Value> {
    obj(json!({
        "id": c.id,
        "contractID": c.contract_id,
        "serviceID": c.service_id,
        "unitPrice": money(c.unit_price),
        "unitCost": money(c.unit_cost),
        "adjustedPrice": opt_money(c.adjusted_price),
        // Single-currency databases: the internal currency equals the customer's.
        "internalCurrencyUnitPrice": money(c.unit_price),
        "internalCurrencyAdjustedPrice": opt_money(c.adjusted_price),
        "invoiceDescription": opt_str(&c.invoice_description),
        "internalDescription": opt_str(&c.internal_description),
    }))
}

fn unit_json(u: &AtContractServiceUnit) -> Map<String, Value> {
    obj(json!({
        "id": u.id,
        "contractID": u.contract_id,
        "contractServiceID": u.contract_service_id,
        "serviceID": u.service_id,
        "startDate": wire_date(u.start_date),
        "endDate": wire_date(u.end_date),
        "units": u.units,
        "price": money(u.price),
        "cost": money(u.cost),
        // The world does not model billing posts; every period is still open [UNCONFIRMED].
        "approveAndPostDate": Value::Null,
    }))
}

/// Every record of an entity as Autotask returns it.
fn records(at: &Autotask, e: Entity) -> Vec<Map<String, Value>> {
    match e {
        Entity::Companies => at.companies.iter().map(company_json).collect(),
        Entity::Contracts => at.contracts.iter().map(contract_json).collect(),
        Entity::Services => at.services.iter().map(service_json).collect(),
        Entity::ContractServices => at
            .contract_services
            .iter()
            .map(contract_service_json)
            .collect(),
        Entity::ContractServiceUnits => at.contract_service_units.iter().map(unit_json).collect(),
        Entity::ContractServiceAdjustments => Vec::new(),
    }
}

fn record_id(r: &Map<String, Value>) -> u64 {
    r.get("id").and_then(Value::as_u64).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Queries (§6.2)
// ---------------------------------------------------------------------------------------------

const MAX_PAGE: usize = 500;
const MAX_OR_CONDITIONS: usize = 500;

struct Query {
    cond: Cond,
    max_records: usize,
    include: Option<Vec<&'static str>>,
}

/// Read a query body (`MaxRecords`, `IncludeFields`, `Filter`; keys case-insensitive).
fn parse_query(e: Entity, body: &Value) -> AtResult<Query> {
    let Value::Object(m) = body else {
        return Err(AtError::bad("The query must be a JSON object."));
    };
    let mut max_records = MAX_PAGE;
    let mut include = None;
    let mut cond = Cond::All(Vec::new());
    for (k, v) in m {
        match k.to_ascii_lowercase().as_str() {
            "maxrecords" => {
                if v.is_null() {
                    continue;
                }
                let n = v.as_u64().filter(|n| (1..=MAX_PAGE as u64).contains(n));
                max_records = n.ok_or_else(|| {
                    AtError::bad(format!(
                        "MaxRecords must be a whole number from 1 to 500; got {v}."
                    ))
                })? as usize;
            }
            "includefields" => {
                if v.is_null() {
                    continue;
                }
                let Value::Array(names) = v else {
                    return Err(AtError::bad(
                        "IncludeFields must be an array of field names.",
                    ));
                };
                let mut out = Vec::new();
                for n in names {
                    let name = n.as_str().ok_or_else(|| {
                        AtError::bad("IncludeFields must be an array of field names.")
                    })?;
                    let field = filter::field(e.fields(), name).ok_or_else(|| {
                        AtError::bad(format!(
                            "IncludeFields names '{name}', which is not a field of {}.",
                            e.name()
                        ))
                    })?;
                    if !out.contains(&field.0) {
                        out.push(field.0);
                    }
                }
                include = Some(out);
            }
            "filter" => {
                cond = filter::parse(v, e.fields(), e.name()).map_err(AtError::bad)?;
            }
            _ => {}
        }
    }
    if filter::or_conditions(&cond) > MAX_OR_CONDITIONS {
        return Err(AtError::bad(
            "Invalid query syntax. Queries are limited to 500 or fewer 'OR' conditions.",
        ));
    }
    Ok(Query {
        cond,
        max_records,
        include,
    })
}

/// What `nextPageUrl`/`prevPageUrl` carry: the query, and the id to continue after (or before).
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    e: String,
    q: Value,
    a: Option<u64>,
    b: Option<u64>,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(token: &str) -> AtResult<Cursor> {
        URL_SAFE_NO_PAD
            .decode(token.trim())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                AtError::bad("The paging token is not valid; follow nextPageUrl exactly as given.")
            })
    }
}

/// One page of a query, ordered by id. `after`/`before` come from a paging token.
fn run_query(
    st: &State,
    origin: &str,
    e: Entity,
    raw: &Value,
    after: Option<u64>,
    before: Option<u64>,
) -> AtResult<Value> {
    let q = parse_query(e, raw)?;
    let mut matches: Vec<Map<String, Value>> = records(&st.world.autotask, e)
        .into_iter()
        .filter(|r| filter::eval(&q.cond, r))
        .collect();
    matches.sort_by_key(record_id);
    let n = q.max_records;
    let (page, has_prev, has_next) = match (after, before) {
        (_, Some(b)) => {
            let cand: Vec<_> = matches.iter().filter(|r| record_id(r) < b).collect();
            let start = cand.len().saturating_sub(n);
            let page: Vec<_> = cand[start..].iter().map(|r| (*r).clone()).collect();
            let has_next = matches.iter().any(|r| record_id(r) >= b);
            (page, start > 0, has_next)
        }
        (a, None) => {
            let cand: Vec<_> = matches
                .iter()
                .filter(|r| a.is_none_or(|a| record_id(r) > a))
                .collect();
            let page: Vec<_> = cand.iter().take(n).map(|r| (*r).clone()).collect();
            let has_prev = a.is_some_and(|a| matches.iter().any(|r| record_id(r) <= a));
            (page, has_prev, cand.len() > n)
        }
    };
    if let Some(inc) = &q.include
        && !inc.contains(&"id")
        && (has_next || has_prev)
    {
        // §6.2: paging continues by id, so a multi-page query must include it.
        return Err(AtError::bad(
            "IncludeFields must include id when the query returns more results than MaxRecords (paging continues by id).",
        ));
    }
    let base = format!(
        "{}v1.0/{}/query/next?paging=",
        zone_url(origin, st.world.autotask.zone_number),
        e.name()
    );
    let link = |a: Option<u64>, b: Option<u64>| {
        let c = Cursor {
            e: e.name().to_string(),
            q: raw.clone(),
            a,
            b,
        };
        Value::String(format!("{base}{}", c.encode()))
    };
    let next = match page.last() {
        Some(last) if has_next => link(Some(record_id(last)), None),
        _ => Value::Null,
    };
    let prev = match page.first() {
        Some(first) if has_prev => link(None, Some(record_id(first))),
        _ => Value::Null,
    };
    let items: Vec<Value> = page
        .into_iter()
        .map(|r| match &q.include {
            None => Value::Object(r),
            Some(inc) => Value::Object(
                inc.iter()
                    .map(|f| ((*f).to_string(), r.get(*f).cloned().unwrap_or(Value::Null)))
                    .collect(),
            ),
        })
        .collect();
    Ok(json!({
        "items": items,
        "pageDetails": {
            "count": items.len(),
            "requestCount": n,
            "prevPageUrl": prev,
            "nextPageUrl": next,
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// Writes (§6.3)
// ---------------------------------------------------------------------------------------------

/// A write body's fields, read case-insensitively and type-checked (§6.1: booleans are
/// true/false; null where a value is required is an error).
struct Fields<'a> {
    m: &'a Map<String, Value>,
    entity: &'static str,
}

impl<'a> Fields<'a> {
    fn raw(&self, name: &str) -> Option<&'a Value> {
        self.m
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.raw(name).filter(|v| !v.is_null())
    }

    fn missing(&self, name: &str) -> AtError {
        AtError::bad(format!(
            "{name} is required to create {} and cannot be null.",
            self.entity
        ))
    }

    fn wrong(&self, name: &str, what: &str, v: &Value) -> AtError {
        AtError::bad(format!("{name} must be {what}; got {}.", short_json(v)))
    }

    fn int(&self, name: &str) -> AtResult<Option<i64>> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .map(Some)
                .ok_or_else(|| self.wrong(name, "a whole number", v)),
        }
    }

    fn id(&self, name: &str) -> AtResult<Option<u64>> {
        match self.int(name)? {
            None => Ok(None),
            Some(n) if n > 0 => Ok(Some(n as u64)),
            Some(n) => Err(self.wrong(name, "a positive id", &json!(n))),
        }
    }

    fn dec(&self, name: &str) -> AtResult<Option<Decimal>> {
        match self.present(name) {
            None => Ok(None),
            Some(v) => filter::decimal_of(v)
                .map(Some)
                .ok_or_else(|| self.wrong(name, "a number", v)),
        }
    }

    fn text(&self, name: &str) -> AtResult<Option<String>> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.wrong(name, "text", v)),
        }
    }

    fn boolean(&self, name: &str) -> AtResult<Option<bool>> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(name, "true or false", v)),
        }
    }

    fn date(&self, name: &str) -> AtResult<Option<NaiveDate>> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(s)) => filter::parse_datetime(s)
                .map(|d| Some(d.date()))
                .ok_or_else(|| {
                    AtError::bad(format!(
                        "{name} must be a date as yyyy-mm-dd or yyyy-mm-ddThh:mm:ss; got '{s}'."
                    ))
                }),
            Some(v) => Err(self.wrong(name, "a date string", v)),
        }
    }

    fn req<T>(&self, name: &str, v: AtResult<Option<T>>) -> AtResult<T> {
        v?.ok_or_else(|| self.missing(name))
    }
}

fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn next_id<T>(items: &[T], id: impl Fn(&T) -> u64) -> u64 {
    items.iter().map(id).max().unwrap_or(0).saturating_add(1)
}

/// POST a new record. `contract_id` comes from a `Contracts/{id}/...` path.
fn create(
    st: &mut State,
    e: Entity,
    path_contract: Option<u64>,
    body: &Map<String, Value>,
) -> AtResult<u64> {
    let f = Fields {
        m: body,
        entity: e.name(),
    };
    if f.int("id")?.is_some_and(|id| id != 0) {
        return Err(AtError::bad(format!(
            "Do not send an id when creating {}; Autotask assigns it.",
            e.name()
        )));
    }
    let id = match e {
        Entity::Contracts => create_contract(&mut st.world.autotask, &f)?,
        Entity::Services => create_service(&mut st.world.autotask, &f)?,
        Entity::ContractServices => {
            let contract_id = contract_of(&f, path_contract)?;
            let service_id = f.req("serviceID", f.id("serviceID"))?;
            create_contract_service(
                &mut st.world.autotask,
                contract_id,
                service_id,
                ServicePrices {
                    unit_price: f.dec("unitPrice")?,
                    unit_cost: f.dec("unitCost")?,
                    adjusted_price: f.dec("adjustedPrice")?,
                },
                f.text("invoiceDescription")?,
                f.text("internalDescription")?,
            )?
        }
        Entity::ContractServiceAdjustments => {
            create_adjustment(&mut st.world.autotask, &f, path_contract)?
        }
        Entity::Companies | Entity::ContractServiceUnits => {
            return Err(AtError::unsupported(format!(
                "The {} entity does not support create{}.",
                e.name(),
                if e == Entity::ContractServiceUnits {
                    "; units change through ContractServiceAdjustments"
                } else {
                    " in the simulator"
                }
            )));
        }
    };
    st.autotask.creates += 1;
    Ok(id)
}

/// The contract a child write is for: the path's, and the body's if given (they must agree).
fn contract_of(f: &Fields<'_>, path_contract: Option<u64>) -> AtResult<u64> {
    let body = f.id("contractID")?;
    match (path_contract, body) {
        (Some(p), Some(b)) if p != b => Err(AtError::bad(format!(
            "contractID {b} in the body does not match contract {p} in the URL."
        ))),
        (Some(p), _) => Ok(p),
        (None, Some(b)) => Ok(b),
        (None, None) => Err(f.missing("contractID")),
    }
}

fn create_contract(at: &mut Autotask, f: &Fields<'_>) -> AtResult<u64> {
    let company_id = f.req("companyID", f.id("companyID"))?;
    let name = f.req("contractName", f.text("contractName"))?;
    let contract_type = f.req("contractType", f.int("contractType"))?;
    let status = f.req("status", f.int("status"))?;
    let start = f.req("startDate", f.date("startDate"))?;
    let end = f.req("endDate", f.date("endDate"))?;
    let number = f.text("contractNumber")?;
    let period = f.int("contractPeriodType")?;
    let description = f.text("description")?;
    if !at.companies.iter().any(|c| c.id == company_id) {
        return Err(AtError::rule(format!(
            "companyID {company_id} does not refer to an existing Company."
        )));
    }
    if name.trim().is_empty() {
        return Err(AtError::bad("contractName cannot be empty."));
    }
    if end < start {
        return Err(AtError::rule(
            "The endDate of a Contract must be on or after its startDate.",
        ));
    }
    let to_u32 = |n: i64, name: &str| {
        u32::try_from(n).map_err(|_| AtError::bad(format!("{name} {n} is not a valid value.")))
    };
    let id = next_id(&at.contracts, |c| c.id);
    at.contracts.push(AtContract {
        id,
        company_id,
        contract_name: name,
        contract_number: number,
        contract_type: to_u32(contract_type, "contractType")?,
        status: to_u32(status, "status")?,
        start_date: Some(start),
        end_date: Some(end),
        contract_period_type: period
            .map(|p| to_u32(p, "contractPeriodType"))
            .transpose()?,
        description,
    });
    Ok(id)
}

fn create_service(at: &mut Autotask, f: &Fields<'_>) -> AtResult<u64> {
    let name = f.req("name", f.text("name"))?;
    if name.trim().is_empty() {
        return Err(AtError::bad("name cannot be empty."));
    }
    let period = f
        .int("periodType")?
        .map(|p| {
            u32::try_from(p).map_err(|_| AtError::bad(format!("periodType {p} is not valid.")))
        })
        .transpose()?;
    let service = AtService {
        id: next_id(&at.services, |s| s.id),
        name,
        description: f.text("description")?,
        sku: f.text("sku")?,
        unit_price: f.dec("unitPrice")?.unwrap_or_default(),
        unit_cost: f.dec("unitCost")?.unwrap_or_default(),
        period_type: period,
        is_active: f.boolean("isActive")?.unwrap_or(true),
    };
    let id = service.id;
    at.services.push(service);
    Ok(id)
}

struct ServicePrices {
    unit_price: Option<Decimal>,
    unit_cost: Option<Decimal>,
    adjusted_price: Option<Decimal>,
}

/// Link a service to a Recurring Service contract, with one 0-unit record per billing period.
fn create_contract_service(
    at: &mut Autotask,
    contract_id: u64,
    service_id: u64,
    prices: ServicePrices,
    invoice_description: Option<String>,
    internal_description: Option<String>,
) -> AtResult<u64> {
    let contract = find_contract(at, contract_id)?;
    if contract.contract_type != 7 {
        return Err(AtError::rule(format!(
            "Contract {contract_id} is not a Recurring Service contract (contractType 7); only those take services."
        )));
    }
    let service = at
        .services
        .iter()
        .find(|s| s.id == service_id)
        .ok_or_else(|| {
            AtError::rule(format!(
                "serviceID {service_id} does not refer to an existing Service."
            ))
        })?;
    if at
        .contract_services
        .iter()
        .any(|cs| cs.contract_id == contract_id && cs.service_id == service_id)
    {
        return Err(AtError::rule(format!(
            "Service {service_id} is already on contract {contract_id}; change its units with ContractServiceAdjustments."
        )));
    }
    let cs = AtContractService {
        id: next_id(&at.contract_services, |c| c.id),
        contract_id,
        service_id,
        unit_price: prices.unit_price.unwrap_or(service.unit_price),
        unit_cost: prices.unit_cost.unwrap_or(service.unit_cost),
        adjusted_price: prices.adjusted_price,
        invoice_description,
        internal_description,
    };
    let id = cs.id;
    at.contract_services.push(cs);
    ensure_units(at, id);
    Ok(id)
}

fn find_contract(at: &Autotask, id: u64) -> AtResult<&AtContract> {
    at.contracts.iter().find(|c| c.id == id).ok_or_else(|| {
        AtError::rule(format!(
            "contractID {id} does not refer to an existing Contract."
        ))
    })
}

/// PATCH (or PUT) a contract service: only `adjustedPrice` and `invoiceDescription` are
/// writable (§6.3). Other known fields may be sent unchanged; a changed one is refused.
fn update(
    st: &mut State,
    e: Entity,
    path_contract: Option<u64>,
    body: &Map<String, Value>,
) -> AtResult<u64> {
    match e {
        Entity::ContractServices => {}
        Entity::ContractServiceAdjustments => {
            return Err(AtError::unsupported(
                "The ContractServiceAdjustments entity does not support update; adjustments are create-only.",
            ));
        }
        _ => {
            return Err(AtError::unsupported(format!(
                "The {} entity does not support update{}.",
                e.name(),
                if e == Entity::ContractServiceUnits {
                    "; units change through ContractServiceAdjustments"
                } else {
                    " in the simulator"
                }
            )));
        }
    }
    let f = Fields {
        m: body,
        entity: e.name(),
    };
    let id = f.id("id")?.ok_or_else(|| {
        AtError::bad("The body must carry the id of the ContractService to update.")
    })?;
    let at = &mut st.world.autotask;
    let Some(pos) = at.contract_services.iter().position(|c| c.id == id) else {
        return Err(AtError::not_found(format!(
            "ContractServices {id} does not exist."
        )));
    };
    if let Some(p) = path_contract
        && at.contract_services[pos].contract_id != p
    {
        return Err(AtError::not_found(format!(
            "ContractServices {id} is not on contract {p}."
        )));
    }
    let current = contract_service_json(&at.contract_services[pos]);
    let mut adjusted = None;
    let mut invoice = None;
    for (k, v) in body {
        let Some((name, kind)) = filter::field(CONTRACT_SERVICE_FIELDS, k) else {
            return Err(AtError::bad(format!(
                "'{k}' is not a field of ContractServices."
            )));
        };
        match name {
            "id" => {}
            "adjustedPrice" => adjusted = Some(f.dec("adjustedPrice")?),
            "invoiceDescription" => invoice = Some(f.text("invoiceDescription")?),
            _ => {
                let cur = current.get(name).unwrap_or(&Value::Null);
                let same = match (
                    filter::scalar(kind, cur, name),
                    filter::scalar(kind, v, name),
                ) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                };
                if !same {
                    return Err(AtError::rule(format!(
                        "{name} is read-only on ContractServices; only adjustedPrice and invoiceDescription can be updated."
                    )));
                }
            }
        }
    }
    let cs = &mut at.contract_services[pos];
    if let Some(a) = adjusted {
        cs.adjusted_price = a;
    }
    if let Some(i) = invoice {
        cs.invoice_description = i;
    }
    st.autotask.updates += 1;
    Ok(id)
}

/// The billing periods of a contract: monthly from its start (§6.3 "one record per billing
/// period"). A contract without an end date gets twelve months [UNCONFIRMED]; no contract
/// gets more than 50 years of periods.
fn periods(start: NaiveDate, end: Option<NaiveDate>) -> Vec<(NaiveDate, NaiveDate)> {
    const MAX_PERIODS: u32 = 600;
    let end = end.unwrap_or_else(|| {
        start
            .checked_add_months(Months::new(12))
            .and_then(|d| d.pred_opt())
            .unwrap_or(start)
    });
    let mut out = Vec::new();
    for k in 0..MAX_PERIODS {
        let Some(s) = start.checked_add_months(Months::new(k)) else {
            break;
        };
        if s > end {
            break;
        }
        let e = start
            .checked_add_months(Months::new(k + 1))
            .and_then(|n| n.pred_opt())
            .unwrap_or(end)
            .min(end);
        out.push((s, e));
    }
    out
}

/// Give a contract service its per-period unit records (0 units) if it has none.
fn ensure_units(at: &mut Autotask, cs_id: u64) {
    if at
        .contract_service_units
        .iter()
        .any(|u| u.contract_service_id == cs_id)
    {
        return;
    }
    let Some(cs) = at.contract_services.iter().find(|c| c.id == cs_id) else {
        return;
    };
    let Some(contract) = at.contracts.iter().find(|c| c.id == cs.contract_id) else {
        return;
    };
    let Some(start) = contract.start_date else {
        return;
    };
    let price = cs.adjusted_price.unwrap_or(cs.unit_price);
    let (cost, contract_id, service_id) = (cs.unit_cost, cs.contract_id, cs.service_id);
    let first = next_id(&at.contract_service_units, |u| u.id);
    for (id, (s, e)) in (first..).zip(periods(start, contract.end_date)) {
        at.contract_service_units.push(AtContractServiceUnit {
            id,
            contract_id,
            contract_service_id: cs_id,
            service_id,
            start_date: Some(s),
            end_date: Some(e),
            units: 0,
            price,
            cost,
        });
    }
}

/// `POST ContractServiceAdjustments` / `POST Contracts/{id}/ServiceAdjustments` (§6.3).
fn create_adjustment(
    at: &mut Autotask,
    f: &Fields<'_>,
    path_contract: Option<u64>,
) -> AtResult<u64> {
    let contract_id = contract_of(f, path_contract)?;
    let cs_given = f.id("contractServiceID")?;
    let service_given = f.id("serviceID")?;
    let unit_change = f.req("unitChange", f.int("unitChange"))?;
    let price = f.dec("adjustedUnitPrice")?;
    let cost = f.dec("adjustedUnitCost")?;
    let effective = f.req("effectiveDate", f.date("effectiveDate"))?;
    f.int("quoteItemID")?;
    f.boolean("allowRepeatService")?;

    let contract = find_contract(at, contract_id)?;
    let (start, end) = (contract.start_date, contract.end_date);
    // The contract service: named, or found by (contract, service), or created (§6.3).
    let cs_id = match cs_given {
        Some(cs_id) => {
            let cs = at
                .contract_services
                .iter()
                .find(|c| c.id == cs_id)
                .ok_or_else(|| {
                    AtError::rule(format!(
                        "contractServiceID {cs_id} does not refer to an existing ContractService."
                    ))
                })?;
            if cs.contract_id != contract_id || service_given.is_some_and(|s| s != cs.service_id) {
                return Err(AtError::rule(format!(
                    "contractServiceID {cs_id} does not belong to contract {contract_id} and the given serviceID."
                )));
            }
            Some(cs_id)
        }
        None => {
            let service_id = service_given.ok_or_else(|| f.missing("serviceID"))?;
            at.contract_services
                .iter()
                .find(|c| c.contract_id == contract_id && c.service_id == service_id)
                .map(|c| c.id)
        }
    };
    let in_range = start.is_some_and(|s| effective >= s) && end.is_none_or(|e| effective <= e);
    if !in_range {
        return Err(AtError::rule(
            "effectiveDate must be between the start date and end date of the Contract",
        ));
    }
    let cs_id = match cs_id {
        Some(id) => id,
        None => {
            let service_id = service_given.ok_or_else(|| f.missing("serviceID"))?;
            create_contract_service(
                at,
                contract_id,
                service_id,
                ServicePrices {
                    unit_price: None,
                    unit_cost: None,
                    adjusted_price: price,
                },
                None,
                None,
            )?
        }
    };
    apply_adjustment(at, cs_id, effective, unit_change, price, cost)?;
    let service_id = at
        .contract_services
        .iter()
        .find(|c| c.id == cs_id)
        .map_or(0, |c| c.service_id);
    if let (Some(p), Some(cs)) = (
        price,
        at.contract_services.iter_mut().find(|c| c.id == cs_id),
    ) {
        cs.adjusted_price = Some(p);
    }
    let id = next_id(&at.contract_service_adjustments, |a| a.id);
    at.contract_service_adjustments
        .push(AtContractServiceAdjustment {
            id,
            contract_id,
            contract_service_id: Some(cs_id),
            service_id,
            unit_change,
            adjusted_unit_price: price,
            adjusted_unit_cost: cost,
            effective_date: Some(effective),
            received: Some(Utc::now()),
        });
    Ok(id)
}

/// Change the unit records from `effective` on: the record containing the date is split there
/// (the new record carries the change), later records change whole (§6.3).
fn apply_adjustment(
    at: &mut Autotask,
    cs_id: u64,
    effective: NaiveDate,
    change: i64,
    price: Option<Decimal>,
    cost: Option<Decimal>,
) -> AtResult<()> {
    ensure_units(at, cs_id);
    let affected = |u: &AtContractServiceUnit| {
        u.contract_service_id == cs_id && u.end_date.is_none_or(|e| e >= effective)
    };
    if at
        .contract_service_units
        .iter()
        .filter(|u| affected(u))
        .any(|u| u.units.checked_add(change).is_none_or(|n| n < 0))
    {
        return Err(AtError::rule(
            "The adjustment would leave a billing period with fewer than 0 units.",
        ));
    }
    let mut next = next_id(&at.contract_service_units, |u| u.id);
    let mut added = Vec::new();
    for u in at
        .contract_service_units
        .iter_mut()
        .filter(|u| u.contract_service_id == cs_id)
    {
        if u.end_date.is_some_and(|e| e < effective) {
            continue;
        }
        if u.start_date.is_some_and(|s| s < effective) {
            // Split: the old record ends the day before; the new one starts on the date.
            let mut tail = u.clone();
            u.end_date = effective.pred_opt();
            tail.id = next;
            next = next.saturating_add(1);
            tail.start_date = Some(effective);
            tail.units += change;
            tail.price = price.unwrap_or(tail.price);
            tail.cost = cost.unwrap_or(tail.cost);
            added.push(tail);
        } else {
            u.units += change;
            u.price = price.unwrap_or(u.price);
            u.cost = cost.unwrap_or(u.cost);
        }
    }
    at.contract_service_units.extend(added);
    at.contract_service_units.sort_by(|a, b| {
        match a.contract_service_id.cmp(&b.contract_service_id) {
            Ordering::Equal => a.start_date.cmp(&b.start_date),
            o => o,
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The filter evaluator (§6.2)
// ---------------------------------------------------------------------------------------------

/// Autotask query filters: parsing against an entity's fields, and evaluation on records.
pub mod filter {
    use std::cmp::Ordering;
    use std::str::FromStr;

    use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
    use rust_decimal::Decimal;
    use serde_json::{Map, Value};

    /// A field's type, which decides how filter values compare.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        Int,
        Num,
        Str,
        Bool,
        Date,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Op {
        Eq,
        NotEq,
        Gt,
        Gte,
        Lt,
        Lte,
        BeginsWith,
        EndsWith,
        Contains,
        Exist,
        NotExist,
        In,
        NotIn,
    }

    /// A typed value: strings are kept lower-case (Autotask compares case-insensitively, as
    /// its SQL Server collation does [UNCONFIRMED]).
    #[derive(Debug, Clone, PartialEq)]
    pub enum Scalar {
        Null,
        Num(Decimal),
        Str(String),
        Bool(bool),
        Date(NaiveDateTime),
    }

    #[derive(Debug, Clone, PartialEq)]
    pub enum Operand {
        None,
        One(Scalar),
        List(Vec<Scalar>),
        /// The text of the value, lower-case, for beginsWith/endsWith/contains.
        Text(String),
    }

    #[derive(Debug, Clone, PartialEq)]
    pub enum Cond {
        All(Vec<Cond>),
        Any(Vec<Cond>),
        Test {
            /// The canonical field name (a UDF's name as given, for `udf: true`).
            field: String,
            kind: Kind,
            op: Op,
            value: Operand,
            udf: bool,
        },
    }

    /// The canonical name and kind of a field, matched case-insensitively.
    pub fn field(fields: &[(&'static str, Kind)], name: &str) -> Option<(&'static str, Kind)> {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
            .copied()
    }

    fn op_of(s: &str) -> Option<Op> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "noteq" => Op::NotEq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "beginswith" => Op::BeginsWith,
            "endswith" => Op::EndsWith,
            "contains" => Op::Contains,
            "exist" => Op::Exist,
            "notexist" => Op::NotExist,
            "in" => Op::In,
            "notin" => Op::NotIn,
            _ => return None,
        })
    }

    fn key<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Parse a `filter` (an array of conditions, implicitly and-ed, or one condition).
    pub fn parse(v: &Value, fields: &[(&'static str, Kind)], entity: &str) -> Result<Cond, String> {
        match v {
            Value::Null => Ok(Cond::All(Vec::new())),
            Value::Array(items) => Ok(Cond::All(
                items
                    .iter()
                    .map(|i| parse_item(i, fields, entity))
                    .collect::<Result<_, _>>()?,
            )),
            Value::Object(_) => parse_item(v, fields, entity),
            _ => Err("filter must be an array of conditions.".into()),
        }
    }

    fn parse_item(
        v: &Value,
        fields: &[(&'static str, Kind)],
        entity: &str,
    ) -> Result<Cond, String> {
        let Value::Object(m) = v else {
            return Err(format!(
                "Invalid query syntax: each filter condition must be an object, not {}.",
                super::short_json(v)
            ));
        };
        let op_text = key(m, "op").and_then(Value::as_str).ok_or_else(|| {
            "Invalid query syntax: every filter condition needs an \"op\".".to_string()
        })?;
        let lower = op_text.to_ascii_lowercase();
        if lower == "and" || lower == "or" {
            let items = match key(m, "items") {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(format!(
                        "Invalid query syntax: an '{op_text}' group needs an \"items\" array."
                    ));
                }
            };
            let parsed = items
                .iter()
                .map(|i| parse_item(i, fields, entity))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if lower == "and" {
                Cond::All(parsed)
            } else {
                Cond::Any(parsed)
            });
        }
        let op = op_of(op_text).ok_or_else(|| {
            format!(
                "Invalid query syntax: '{op_text}' is not an operator (eq, noteq, gt, gte, lt, lte, beginsWith, endsWith, contains, exist, notExist, in, notIn, and, or)."
            )
        })?;
        let udf = match key(m, "udf") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("Invalid query syntax: udf must be true or false.".into()),
        };
        let name = key(m, "field").and_then(Value::as_str).ok_or_else(|| {
            format!("Invalid query syntax: the '{op_text}' condition needs a \"field\".")
        })?;
        let (field, kind) = if udf {
            (name.to_string(), Kind::Str)
        } else {
            let (f, k) = self::field(fields, name).ok_or_else(|| {
                format!("The field '{name}' does not exist on the {entity} entity.")
            })?;
            (f.to_string(), k)
        };
        let raw = key(m, "value");
        let value = match op {
            Op::Exist | Op::NotExist => Operand::None,
            Op::In | Op::NotIn => match raw {
                Some(Value::Array(vals)) => Operand::List(
                    vals.iter()
                        .map(|v| scalar(kind, v, &field))
                        .collect::<Result<_, _>>()?,
                ),
                _ => {
                    return Err(format!(
                        "The '{op_text}' condition on '{field}' needs a value array."
                    ));
                }
            },
            Op::BeginsWith | Op::EndsWith | Op::Contains => match raw {
                Some(Value::String(s)) => Operand::Text(s.to_lowercase()),
                Some(Value::Number(n)) => Operand::Text(n.to_string()),
                Some(Value::Bool(b)) => Operand::Text(b.to_string()),
                _ => {
                    return Err(format!(
                        "The '{op_text}' condition on '{field}' needs a text value."
                    ));
                }
            },
            _ => match raw {
                None => {
                    return Err(format!(
                        "The '{op_text}' condition on '{field}' needs a value."
                    ));
                }
                Some(v) => Operand::One(scalar(kind, v, &field)?),
            },
        };
        Ok(Cond::Test {
            field,
            kind,
            op,
            value,
            udf,
        })
    }

    /// How many OR alternatives a filter holds (§6.2 caps them at 500): the items of every
    /// `or` group, and every value of an `in` list (an `in` is an OR of `eq`s, so a 600-value
    /// `in` breaks the same limit as a 600-item `or`; found by the e2e test, where the sim
    /// accepted any `in` and so never showed a client that forgot to split one).
    /// `notIn` is an AND of `noteq`s and does not count.
    pub fn or_conditions(c: &Cond) -> usize {
        match c {
            Cond::All(items) => items.iter().map(or_conditions).sum(),
            Cond::Any(items) => items.len() + items.iter().map(or_conditions).sum::<usize>(),
            Cond::Test {
                op: Op::In,
                value: Operand::List(values),
                ..
            } => values.len(),
            Cond::Test { .. } => 0,
        }
    }

    /// A JSON number (or numeric text) as a Decimal, without going through f64.
    pub fn decimal_of(v: &Value) -> Option<Decimal> {
        let text = match v {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_string(),
            _ => return None,
        };
        Decimal::from_str(&text)
            .ok()
            .or_else(|| Decimal::from_scientific(&text).ok())
    }

    /// A value as the field's kind.
    pub fn scalar(kind: Kind, v: &Value, field: &str) -> Result<Scalar, String> {
        let bad = || {
            format!(
                "The value {} is not valid for the field '{field}'.",
                super::short_json(v)
            )
        };
        Ok(match (kind, v) {
            (_, Value::Null) => Scalar::Null,
            (Kind::Int | Kind::Num, _) => Scalar::Num(decimal_of(v).ok_or_else(bad)?),
            (Kind::Str, Value::String(s)) => Scalar::Str(s.to_lowercase()),
            (Kind::Str, Value::Number(n)) => Scalar::Str(n.to_string()),
            (Kind::Str, Value::Bool(b)) => Scalar::Str(b.to_string()),
            (Kind::Bool, Value::Bool(b)) => Scalar::Bool(*b),
            (Kind::Bool, Value::String(s)) if s.eq_ignore_ascii_case("true") => Scalar::Bool(true),
            (Kind::Bool, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
                Scalar::Bool(false)
            }
            (Kind::Date, Value::String(s)) => Scalar::Date(parse_datetime(s).ok_or_else(bad)?),
            _ => return Err(bad()),
        })
    }

    /// `yyyy-mm-dd` or `yyyy-mm-ddThh:mm[:ss[.fff]][Z|±hh:mm]`; the date and time as written,
    /// without timezone conversion (§6.1).
    pub fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
        let s = s.trim();
        let date = NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()?;
        let rest = s.get(10..)?;
        if rest.is_empty() {
            return date.and_hms_opt(0, 0, 0);
        }
        let t = rest.strip_prefix(['T', 't', ' '])?;
        let t = t
            .strip_suffix(['Z', 'z'])
            .or_else(|| {
                let cut = t.len().checked_sub(6)?;
                let (time, off) = (t.get(..cut)?, t.get(cut..)?);
                let ok = off.starts_with(['+', '-'])
                    && NaiveTime::parse_from_str(off.get(1..)?, "%H:%M").is_ok();
                ok.then_some(time)
            })
            .unwrap_or(t);
        let time = NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
            .ok()?;
        Some(date.and_time(time))
    }

    fn compare(a: &Scalar, b: &Scalar) -> Option<Ordering> {
        match (a, b) {
            (Scalar::Num(x), Scalar::Num(y)) => Some(x.cmp(y)),
            (Scalar::Str(x), Scalar::Str(y)) => Some(x.cmp(y)),
            (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
            (Scalar::Date(x), Scalar::Date(y)) => Some(x.cmp(y)),
            _ => None,
        }
    }

    fn equal(a: &Scalar, b: &Scalar) -> bool {
        match (a, b) {
            (Scalar::Null, Scalar::Null) => true,
            _ => compare(a, b) == Some(Ordering::Equal),
        }
    }

    fn text(s: &Scalar) -> Option<String> {
        match s {
            Scalar::Null => None,
            Scalar::Num(n) => Some(n.normalize().to_string()),
            Scalar::Str(s) => Some(s.clone()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Date(d) => Some(d.format("%Y-%m-%dT%H:%M:%S").to_string()),
        }
    }

    /// Whether a record (as served on the wire) satisfies the filter.
    pub fn eval(c: &Cond, rec: &Map<String, Value>) -> bool {
        match c {
            Cond::All(items) => items.iter().all(|i| eval(i, rec)),
            Cond::Any(items) => items.iter().any(|i| eval(i, rec)),
            Cond::Test {
                field,
                kind,
                op,
                value,
                udf,
            } => {
                let raw = if *udf {
                    udf_value(rec, field)
                } else {
                    rec.get(field.as_str()).cloned().unwrap_or(Value::Null)
                };
                let rv = scalar(*kind, &raw, field).unwrap_or(Scalar::Null);
                test(*op, &rv, value)
            }
        }
    }

    fn udf_value(rec: &Map<String, Value>, name: &str) -> Value {
        rec.get("userDefinedFields")
            .and_then(Value::as_array)
            .and_then(|udfs| {
                udfs.iter().find(|u| {
                    u.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
            })
            .and_then(|u| u.get("value").cloned())
            .unwrap_or(Value::Null)
    }

    fn test(op: Op, rv: &Scalar, value: &Operand) -> bool {
        let one = match value {
            Operand::One(v) => Some(v),
            _ => None,
        };
        match op {
            Op::Exist => *rv != Scalar::Null,
            Op::NotExist => *rv == Scalar::Null,
            // noteq is the negation of eq, so it also matches empty fields [UNCONFIRMED].
            Op::Eq => one.is_some_and(|v| equal(rv, v)),
            Op::NotEq => !one.is_some_and(|v| equal(rv, v)),
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                let Some(ord) = one.and_then(|v| compare(rv, v)) else {
                    return false;
                };
                match op {
                    Op::Gt => ord == Ordering::Greater,
                    Op::Gte => ord != Ordering::Less,
                    Op::Lt => ord == Ordering::Less,
                    _ => ord != Ordering::Greater,
                }
            }
            Op::BeginsWith | Op::EndsWith | Op::Contains => {
                let (Some(t), Operand::Text(needle)) = (text(rv), value) else {
                    return false;
                };
                match op {
                    Op::BeginsWith => t.starts_with(needle.as_str()),
                    Op::EndsWith => t.ends_with(needle.as_str()),
                    _ => t.contains(needle.as_str()),
                }
            }
            Op::In | Op::NotIn => {
                let found = match value {
                    Operand::List(vals) => vals.iter().any(|v| equal(rv, v)),
                    _ => false,
                };
                (op == Op::In) == found
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;
        use serde_json::json;

        const FIELDS: &[(&str, Kind)] = &[
            ("id", Kind::Int),
            ("companyName", Kind::Str),
            ("isActive", Kind::Bool),
            ("startDate", Kind::Date),
            ("unitPrice", Kind::Num),
        ];

        fn rec(id: u64, name: &str, active: bool, start: &str, price: f64) -> Map<String, Value> {
            match json!({"id": id, "companyName": name, "isActive": active,
                "startDate": start, "unitPrice": price, "userDefinedFields": [{"name": "Tier", "value": "Gold"}]})
            {
                Value::Object(m) => m,
                _ => unreachable!(),
            }
        }

        fn matches(filter: Value, r: &Map<String, Value>) -> bool {
            let c = parse(&filter, FIELDS, "Companies").unwrap();
            eval(&c, r)
        }

        #[test]
        fn basic_operators_and_case_insensitivity() {
            let r = rec(5, "Contoso Pty Ltd", true, "2025-08-31T00:00:00Z", 34.55);
            assert!(matches(
                json!([{"op":"eq","field":"COMPANYNAME","value":"contoso pty ltd"}]),
                &r
            ));
            assert!(matches(
                json!([{"Op":"BeginsWith","Field":"companyName","Value":"CON"}]),
                &r
            ));
            assert!(matches(
                json!([{"op":"endsWith","field":"companyName","value":"ltd"}]),
                &r
            ));
            assert!(matches(
                json!([{"op":"contains","field":"companyName","value":"pty"}]),
                &r
            ));
            assert!(!matches(
                json!([{"op":"noteq","field":"isActive","value":true}]),
                &r
            ));
            assert!(matches(json!([{"op":"gt","field":"id","value":4}]), &r));
            assert!(!matches(json!([{"op":"lt","field":"id","value":"5"}]), &r));
            assert!(matches(
                json!([{"op":"lte","field":"unitPrice","value":34.55}]),
                &r
            ));
            assert!(matches(
                json!([{"op":"in","field":"id","value":[1,5,9]}]),
                &r
            ));
            assert!(matches(
                json!([{"op":"notIn","field":"id","value":[1,9]}]),
                &r
            ));
            assert!(matches(json!([{"op":"exist","field":"startDate"}]), &r));
            assert!(!matches(json!([{"op":"notExist","field":"startDate"}]), &r));
            assert!(matches(
                json!([{"op":"eq","field":"Tier","udf":true,"value":"gold"}]),
                &r
            ));
        }

        #[test]
        fn dates_compare_as_dates_not_text() {
            let r = rec(1, "A", true, "2025-08-31T00:00:00Z", 1.0);
            assert!(matches(
                json!([{"op":"eq","field":"startDate","value":"2025-08-31"}]),
                &r
            ));
            assert!(matches(
                json!([{"op":"gte","field":"startDate","value":"2025-08-31T00:00:00.000"}]),
                &r
            ));
            assert!(matches(
                json!([{"op":"lt","field":"startDate","value":"2025-09-01T00:00:00Z"}]),
                &r
            ));
            assert!(!matches(
                json!([{"op":"gt","field":"startDate","value":"2025-08-31T00:00:01"}]),
                &r
            ));
            assert!(
                parse(
                    &json!([{"op":"eq","field":"startDate","value":"31/08/2025"}]),
                    FIELDS,
                    "Companies"
                )
                .is_err()
            );
        }

        #[test]
        fn nested_and_or_groups() {
            let f = json!([{"op":"or","items":[
                {"op":"and","items":[{"op":"eq","field":"isActive","value":true},{"op":"beginsWith","field":"companyName","value":"Con"}]},
                {"op":"in","field":"id","value":[42]}
            ]}]);
            assert!(matches(
                f.clone(),
                &rec(1, "Contoso", true, "2025-01-01", 1.0)
            ));
            assert!(!matches(
                f.clone(),
                &rec(2, "Contoso", false, "2025-01-01", 1.0)
            ));
            assert!(matches(
                f.clone(),
                &rec(42, "Fabrikam", false, "2025-01-01", 1.0)
            ));
            assert!(!matches(f, &rec(3, "Fabrikam", true, "2025-01-01", 1.0)));
        }

        #[test]
        fn errors_name_the_problem() {
            let e = parse(
                &json!([{"op":"like","field":"id","value":1}]),
                FIELDS,
                "Companies",
            )
            .unwrap_err();
            assert!(e.contains("'like' is not an operator"), "{e}");
            let e = parse(
                &json!([{"op":"eq","field":"nope","value":1}]),
                FIELDS,
                "Companies",
            )
            .unwrap_err();
            assert!(e.contains("'nope' does not exist on the Companies"), "{e}");
            let e = parse(
                &json!([{"op":"eq","field":"isActive","value":"yes"}]),
                FIELDS,
                "Companies",
            )
            .unwrap_err();
            assert!(e.contains("not valid for the field 'isActive'"), "{e}");
            assert!(
                parse(
                    &json!([{"op":"in","field":"id","value":3}]),
                    FIELDS,
                    "Companies"
                )
                .is_err()
            );
            assert!(parse(&json!([{"op":"eq","field":"id"}]), FIELDS, "Companies").is_err());
        }

        #[test]
        fn or_conditions_are_counted_through_nesting() {
            let items: Vec<Value> = (0..300)
                .map(|i| json!({"op":"eq","field":"id","value":i}))
                .collect();
            let f = json!([{"op":"or","items":items.clone()},{"op":"and","items":[{"op":"or","items":items}]}]);
            let c = parse(&f, FIELDS, "Companies").unwrap();
            assert_eq!(or_conditions(&c), 600);
            // `in` values are OR alternatives too; `notIn` values are not.
            let ids: Vec<u64> = (0..400).collect();
            let f = json!([{"op":"in","field":"id","value":ids},
                {"op":"or","items":[{"op":"in","field":"id","value":[1,2,3]},{"op":"eq","field":"id","value":9}]},
                {"op":"notIn","field":"id","value":ids}]);
            let c = parse(&f, FIELDS, "Companies").unwrap();
            assert_eq!(or_conditions(&c), 400 + 2 + 3);
        }

        #[test]
        fn datetimes_parse_in_the_documented_shapes() {
            for s in [
                "2026-05-01",
                "2026-05-01T00:00:00",
                "2026-05-01T00:00:00.00",
                "2026-05-01T10:30:00Z",
                "2026-05-01T10:30:00.123+10:00",
            ] {
                assert_eq!(
                    parse_datetime(s).map(|d| d.date()),
                    NaiveDate::from_ymd_opt(2026, 5, 1),
                    "{s}"
                );
            }
            for s in [
                "",
                "2026-5-1",
                "2026-05-01X",
                "2026-05-01T25:00:00",
                "2026-02-30",
                "é2026-05-01",
            ] {
                assert!(parse_datetime(s).is_none(), "{s}");
            }
        }

        fn arb_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<f64>().prop_map(|f| json!(f)),
                prop_oneof![
                    Just("eq".to_string()),
                    Just("or".to_string()),
                    Just("and".to_string()),
                    Just("in".to_string()),
                    Just("id".to_string()),
                    Just("startDate".to_string()),
                    Just("contains".to_string()),
                    Just("2025-01-01".to_string()),
                    ".{0,12}"
                ]
                .prop_map(Value::String),
            ];
            leaf.prop_recursive(5, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec(
                        (
                            prop_oneof![
                                Just("op"),
                                Just("field"),
                                Just("value"),
                                Just("items"),
                                Just("udf"),
                                Just("x")
                            ],
                            inner
                        ),
                        0..5
                    )
                    .prop_map(|kv| Value::Object(
                        kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                    )),
                ]
            })
        }

        proptest! {
            #[test]
            fn random_filters_never_panic(f in arb_json(), name in ".{0,10}", start in ".{0,24}") {
                let r = rec(7, &name, true, &start, 2.5);
                if let Ok(c) = parse(&f, FIELDS, "Companies") {
                    let _ = eval(&c, &r);
                    let _ = or_conditions(&c);
                }
            }

            #[test]
            fn random_date_text_never_panics(s in ".{0,40}") {
                let _ = parse_datetime(&s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn monthly_periods_cover_the_contract() {
        let p = periods(d(2025, 8, 31), Some(d(2026, 8, 30)));
        assert_eq!(p.len(), 12);
        assert_eq!(p[0], (d(2025, 8, 31), d(2025, 9, 29)));
        assert_eq!(p[1].0, d(2025, 9, 30));
        assert_eq!(p[11].1, d(2026, 8, 30));
        for w in p.windows(2) {
            assert_eq!(w[0].1.succ_opt(), Some(w[1].0));
        }
    }

    #[test]
    fn an_adjustment_splits_the_period_containing_its_date() {
        let mut at = Autotask {
            contracts: vec![AtContract {
                id: 1,
                contract_type: 7,
                start_date: Some(d(2026, 1, 1)),
                end_date: Some(d(2026, 12, 31)),
                ..Default::default()
            }],
            contract_services: vec![AtContractService {
                id: 10,
                contract_id: 1,
                service_id: 5,
                unit_price: Decimal::new(3455, 2),
                ..Default::default()
            }],
            ..Default::default()
        };
        apply_adjustment(&mut at, 10, d(2026, 1, 1), 5, None, None).unwrap();
        apply_adjustment(
            &mut at,
            10,
            d(2026, 3, 15),
            2,
            Some(Decimal::new(30, 0)),
            None,
        )
        .unwrap();
        let units = |date: NaiveDate| {
            at.contract_service_units
                .iter()
                .find(|u| u.start_date <= Some(date) && u.end_date >= Some(date))
                .map(|u| (u.units, u.price))
        };
        assert_eq!(units(d(2026, 3, 14)), Some((5, Decimal::new(3455, 2))));
        assert_eq!(units(d(2026, 3, 15)), Some((7, Decimal::new(30, 0))));
        assert_eq!(units(d(2026, 7, 1)), Some((7, Decimal::new(30, 0))));
        assert_eq!(at.contract_service_units.len(), 13);
        assert!(apply_adjustment(&mut at, 10, d(2026, 6, 1), -8, None, None).is_err());
    }
}
