//! Simulated ConnectWise PSA (Manage) REST API 3.0 (reference/external-apis.md §5), standing
//! in for `https://{site}/v4_6_release/apis/3.0` under the `/connectwise/v4_6_release/apis/3.0`
//! prefix.
//!
//! - Auth (§5.1): `Authorization: Basic base64("{companyId}+{publicKey}:{privateKey}")` and a
//!   registered `clientId` header on every call; failures are 401 `{"code":"Unauthorized",...}`.
//! - Lists (§5.2): `conditions` (a real parser, [`conditions`]), `orderBy`, `fields`, `page`
//!   (1-based), `pageSize` (default 25, over 1000 clamped to 1000), a bare JSON array body and
//!   a `Link` header with absolute URLs; forward-only paging with `pagination-type:
//!   forward-only` + `pageId`.
//! - Endpoints (§5.3): companies, agreements, agreement additions (read and write) and the
//!   procurement catalog, each with `/count` and `/{id}`.
//! - Errors (§5.4): `{"code","message","errors":[{code,message,resource,field}]}`.
//!
//! Conditions, `orderBy` and `fields` work on the JSON object the sim returns, so any returned
//! field can be filtered on.

#![allow(
    clippy::result_large_err,
    reason = "handlers return early with a ready error Response; boxing it buys nothing here"
)]

use std::cmp::Ordering;
use std::str::FromStr;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value, json};

use self::conditions::Expr;
use super::world::{ConnectWise, CwAddition, CwAgreement, CwCatalogItem, CwCompany, World};
use super::{Sim, prefix, util};

/// Runtime records of this API that are not part of the dataset (no secrets here).
#[derive(Debug, Default, Serialize)]
pub struct Runtime {
    /// The last addition id handed out; ids are never reused, even after a delete.
    pub last_addition_id: u64,
    pub additions_created: u64,
    pub additions_updated: u64,
    pub additions_deleted: u64,
    /// Calls refused with 401.
    pub auth_failures: u64,
}

pub fn router() -> Router<Sim> {
    Router::new()
        .route("/company/companies", get(companies))
        .route("/company/companies/count", get(companies_count))
        .route("/company/companies/{id}", get(company))
        .route("/finance/agreements", get(agreements))
        .route("/finance/agreements/count", get(agreements_count))
        .route("/finance/agreements/{id}", get(agreement))
        .route(
            "/finance/agreements/{id}/additions",
            get(additions).post(create_addition),
        )
        .route(
            "/finance/agreements/{id}/additions/count",
            get(additions_count),
        )
        .route(
            "/finance/agreements/{id}/additions/{addition_id}",
            get(addition)
                .put(replace_addition)
                .patch(patch_addition)
                .delete(delete_addition),
        )
        .route("/procurement/catalog", get(catalog))
        .route("/procurement/catalog/count", get(catalog_count))
        .route("/procurement/catalog/{id}", get(catalog_item))
        .fallback(unknown_route)
}

// ---------------------------------------------------------------------------------------------
// Errors (§5.4)
// ---------------------------------------------------------------------------------------------

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message.into()})),
    )
        .into_response()
}

fn not_found(message: impl Into<String>) -> Response {
    error(StatusCode::NOT_FOUND, "NotFound", message)
}

/// 400 for a bad query (conditions, orderBy, paging). §5.4 lists `InvalidObject` as the code
/// of 400s; the sim uses it for query problems too [UNCONFIRMED].
fn bad_query(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "InvalidObject", message)
}

async fn unknown_route(uri: Uri) -> Response {
    not_found(format!(
        "There is no ConnectWise API resource at {}.",
        uri.path()
    ))
}

/// One §5.4 ValidationError. Codes `Required` and `InvalidField` are the sim's choice
/// [UNCONFIRMED]; §5.4 shows only `OutOfRange`.
struct Invalid {
    code: &'static str,
    field: &'static str,
    message: String,
}

impl Invalid {
    fn required(field: &'static str) -> Self {
        Invalid {
            code: "Required",
            field,
            message: format!("The {field} field is required."),
        }
    }

    fn field(field: &'static str, message: impl Into<String>) -> Self {
        Invalid {
            code: "InvalidField",
            field,
            message: message.into(),
        }
    }
}

/// 400 `{"code":"InvalidObject","message":"addition object is invalid","errors":[...]}`.
fn invalid(resource: &str, errors: Vec<Invalid>) -> Response {
    let errors: Vec<Value> = errors
        .into_iter()
        .map(|e| {
            json!({"code": e.code, "message": e.message, "resource": resource, "field": e.field})
        })
        .collect();
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "code": "InvalidObject",
            "message": format!("{resource} object is invalid"),
            "errors": errors,
        })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Auth (§5.1)
// ---------------------------------------------------------------------------------------------

/// Check `Authorization: Basic` and `clientId`. Messages say what kind of thing is wrong, never
/// which key or what value was sent.
fn authenticate(sim: &Sim, headers: &HeaderMap) -> Result<(), Response> {
    let mut s = sim.state();
    let state = &mut *s;
    let cw = &state.world.connectwise;
    let refuse = |message: &str| error(StatusCode::UNAUTHORIZED, "Unauthorized", message);
    let outcome = (|| {
        let Some(value) = util::header(headers, "authorization") else {
            return Err(refuse(
                "The request has no Authorization header; send Basic credentials of the form companyId+publicKey:privateKey.",
            ));
        };
        let decoded = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, b64)| STANDARD.decode(b64.trim()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let Some(decoded) = decoded else {
            return Err(refuse(
                "The Authorization header is not Basic credentials of the form companyId+publicKey:privateKey.",
            ));
        };
        // companyId+publicKey:privateKey — the company id is the login company name,
        // compared without regard to case; keys exactly.
        let good = decoded
            .split_once(':')
            .and_then(|(left, private)| {
                left.split_once('+')
                    .map(|(company, public)| (company, public, private))
            })
            .is_some_and(|(company, public, private)| {
                !cw.public_key.is_empty()
                    && company.eq_ignore_ascii_case(&cw.company_id)
                    && public == cw.public_key
                    && private == cw.private_key
            });
        if !good {
            return Err(refuse(
                "The company id, public key or private key is not valid.",
            ));
        }
        // §5.1: clientId is required on every call. A world that lists no client ids
        // accepts any non-empty one [MODELLED].
        match util::header(headers, "clientid").map(str::trim) {
            None | Some("") => Err(refuse(
                "The clientId header is required on every call; register a clientId at developer.connectwise.com.",
            )),
            Some(id)
                if !cw.client_ids.is_empty()
                    && !cw.client_ids.iter().any(|c| c.eq_ignore_ascii_case(id)) =>
            {
                Err(refuse(
                    "The clientId is not registered or has been disabled.",
                ))
            }
            Some(_) => Ok(()),
        }
    })();
    if outcome.is_err() {
        state.connectwise.auth_failures += 1;
    }
    outcome
}

// ---------------------------------------------------------------------------------------------
// JSON shapes (§5.3)
// ---------------------------------------------------------------------------------------------

/// Money and quantities as JSON numbers, through the crate's float adapter for wire money.
/// Whole numbers are written as integers (`"quantity":25`, as in the §5.3 example).
fn num(d: Decimal) -> Value {
    #[derive(Serialize)]
    struct N(#[serde(with = "rust_decimal::serde::float")] Decimal);
    if d.fract().is_zero()
        && let Ok(i) = i64::try_from(d.trunc())
    {
        return Value::from(i);
    }
    serde_json::to_value(N(d.normalize())).unwrap_or(Value::Null)
}

/// ISO 8601 UTC with `Z` (§5.3).
fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn date_z(d: Option<NaiveDate>) -> Value {
    match d {
        Some(d) => Value::String(format!("{}T00:00:00Z", d.format("%Y-%m-%d"))),
        None => Value::Null,
    }
}

/// `lastUpdated` of records the world does not date: midnight of the world's "today", or a
/// fixed date, so answers are the same on every run [MODELLED].
fn default_updated(world: &World) -> DateTime<Utc> {
    world
        .meta
        .today
        .or_else(|| NaiveDate::from_ymd_opt(2026, 1, 1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .unwrap_or_default()
}

fn info(updated: DateTime<Utc>) -> Value {
    json!({"lastUpdated": ts(updated), "updatedBy": "apiuser"})
}

/// `{id, name}` of a reference whose ids the world does not hold: the position in a fixed
/// table, else a stable number from the name [MODELLED].
fn reference(table: &[&str], name: &str) -> Value {
    if name.is_empty() {
        return Value::Null;
    }
    let id = table
        .iter()
        .position(|t| t.eq_ignore_ascii_case(name))
        .map(|p| p as u64 + 1)
        .unwrap_or_else(|| {
            100 + name
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
                % 900
        });
    json!({"id": id, "name": name})
}

fn company_json(world: &World, c: &CwCompany) -> Value {
    let types: Vec<Value> = c
        .types
        .iter()
        .map(|t| {
            reference(
                &["Client", "Prospect", "Vendor", "Partner", "Competitor"],
                t,
            )
        })
        .collect();
    json!({
        "id": c.id,
        "identifier": c.identifier,
        "name": c.name,
        "status": reference(&["Active", "Inactive"], &c.status),
        "types": types,
        "addressLine1": null,
        "addressLine2": null,
        "city": null,
        "state": null,
        "zip": null,
        "country": null,
        "phoneNumber": c.phone_number,
        "faxNumber": null,
        "website": c.website,
        "territory": null,
        "defaultContact": null,
        "deletedFlag": c.deleted_flag,
        "_info": info(default_updated(world)),
    })
}

fn company_ref(cw: &ConnectWise, id: u64) -> Value {
    match cw.companies.iter().find(|c| c.id == id) {
        Some(c) => json!({"id": c.id, "identifier": c.identifier, "name": c.name}),
        None => json!({"id": id, "identifier": null, "name": null}),
    }
}

const BILLING_CYCLES: &[&str] = &["Monthly", "Quarterly", "Annual", "Biannual", "Weekly"];

fn agreement_json(world: &World, a: &CwAgreement) -> Value {
    let cw = &world.connectwise;
    json!({
        "id": a.id,
        "name": a.name,
        "type": reference(&[], &a.type_name),
        "company": company_ref(cw, a.company_id),
        "contact": null,
        "site": null,
        "agreementStatus": a.agreement_status,
        "startDate": date_z(a.start_date),
        "endDate": date_z(a.end_date),
        "noEndingDateFlag": a.no_ending_date_flag,
        "cancelledFlag": a.cancelled_flag,
        // The world does not date cancellations [MODELLED].
        "dateCancelled": null,
        "billingCycle": reference(BILLING_CYCLES, &a.billing_cycle),
        // The agreement's own fixed amount; the sim's agreements bill only through additions
        // [MODELLED].
        "billAmount": num(Decimal::ZERO),
        "applicationUnits": "Amount",
        "prorateFlag": a.prorate_flag,
        "invoiceDescription": null,
        "parentAgreement": null,
        "customFields": [],
        "_info": info(default_updated(world)),
    })
}

fn is_cancelled(a: &CwAgreement) -> bool {
    a.cancelled_flag || a.agreement_status.eq_ignore_ascii_case("Cancelled")
}

/// An addition as §5.3 lists it. extPrice = unitPrice × (quantity − lessIncluded), extCost =
/// unitCost × quantity, margin = extPrice − extCost, rounded to cents; the sim does not
/// prorate, so the prorate fields repeat the full values [MODELLED].
fn addition_json(world: &World, a: &CwAddition) -> Value {
    let cw = &world.connectwise;
    let product = cw.catalog.iter().find(|p| p.id == a.product_id);
    let agreement = cw.agreements.iter().find(|g| g.id == a.agreement_id);
    let billed = (a.quantity - a.less_included).max(Decimal::ZERO);
    let ext_price = (a.unit_price * billed).round_dp(2);
    let ext_cost = (a.unit_cost * a.quantity).round_dp(2);
    let sequence = cw
        .additions
        .iter()
        .filter(|x| x.agreement_id == a.agreement_id)
        .position(|x| x.id == a.id)
        .map_or(1, |p| p + 1);
    json!({
        "id": a.id,
        "agreementId": a.agreement_id,
        "agreementStatus": agreement.map(|g| g.agreement_status.as_str()),
        "product": {"id": a.product_id, "identifier": product.map(|p| p.identifier.as_str())},
        "billCustomer": a.bill_customer,
        "quantity": num(a.quantity),
        "lessIncluded": num(a.less_included),
        "billedQuantity": num(billed),
        "unitPrice": num(a.unit_price),
        "unitCost": num(a.unit_cost),
        "extPrice": num(ext_price),
        "extCost": num(ext_cost),
        "margin": num(ext_price - ext_cost),
        "prorateCost": num(a.unit_cost),
        "proratePrice": num(a.unit_price),
        "extendedProrateCost": num(ext_cost),
        "extendedProratePrice": num(ext_price),
        "prorateCurrentPeriodFlag": false,
        "effectiveDate": date_z(a.effective_date),
        "cancelledDate": date_z(a.cancelled_date),
        "description": a.description,
        "invoiceDescription": a.invoice_description,
        "serialNumber": null,
        "uom": "Each",
        "taxableFlag": a.taxable_flag,
        "purchaseItemFlag": false,
        "specialOrderFlag": false,
        "sequenceNumber": sequence,
        "invoiceGrouping": null,
        "opportunity": null,
        "customFields": [],
        "_info": info(a.last_updated.unwrap_or_else(|| default_updated(world))),
    })
}

fn catalog_json(world: &World, c: &CwCatalogItem) -> Value {
    json!({
        "id": c.id,
        "identifier": c.identifier,
        "description": c.description,
        "customerDescription": c.customer_description,
        "price": num(c.price),
        "cost": num(c.cost),
        "inactiveFlag": c.inactive_flag,
        "productClass": c.product_class,
        "category": null,
        "subcategory": null,
        "type": null,
        "manufacturer": null,
        "manufacturerPartNumber": c.manufacturer_part_number,
        "vendor": null,
        "vendorSku": c.vendor_sku,
        "recurringFlag": c.recurring_flag,
        "recurringRevenue": num(if c.recurring_flag { c.price } else { Decimal::ZERO }),
        "recurringCost": num(if c.recurring_flag { c.cost } else { Decimal::ZERO }),
        "recurringBillCycle": if c.recurring_flag { reference(BILLING_CYCLES, "Monthly") } else { Value::Null },
        "taxableFlag": true,
        "unitOfMeasure": {"id": 1, "name": "Each"},
        "_info": info(default_updated(world)),
    })
}

// ---------------------------------------------------------------------------------------------
// Query parameters and paging (§5.2)
// ---------------------------------------------------------------------------------------------

/// The request's query and the absolute URL of its resource (for `Link`).
struct Ctx {
    pairs: Vec<(String, String)>,
    base: String,
}

impl Ctx {
    fn new(sim: &Sim, uri: &Uri, raw: Option<&str>) -> Ctx {
        let pairs = raw
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Ctx {
            pairs,
            base: format!("{}{}{}", sim.origin, prefix::CONNECTWISE, uri.path()),
        }
    }

    /// A parameter by name, ignoring case; blank counts as absent.
    fn param(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }

    /// This request's URL with `page`/`pageId` replaced by `key=value`, placed last (community
    /// parsers read `page=(\d+)>; rel=...`, §5.2).
    fn link(&self, key: &str, value: u64) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            if !k.eq_ignore_ascii_case("page") && !k.eq_ignore_ascii_case("pageId") {
                ser.append_pair(k, v);
            }
        }
        ser.append_pair(key, &value.to_string());
        format!("{}?{}", self.base, ser.finish())
    }

    fn conditions(&self, template: &Value) -> Result<Option<Expr>, Response> {
        let Some(text) = self.param("conditions") else {
            return Ok(None);
        };
        let expr = conditions::parse(text).map_err(|e| bad_query(format!("conditions: {e}")))?;
        if let Some(field) = expr.unknown_field(template) {
            return Err(bad_query(format!(
                "conditions: {field} is not a field of this resource."
            )));
        }
        Ok(Some(expr))
    }

    /// `orderBy=name asc, id desc`.
    fn order_by(&self, template: &Value) -> Result<Vec<(String, bool)>, Response> {
        let Some(text) = self.param("orderBy") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut words = part.split_whitespace();
            let field = words.next().unwrap_or_default().to_string();
            let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(bad_query(format!(
                        "orderBy: '{other}' is not a direction; use asc or desc after {field}."
                    )));
                }
            };
            if words.next().is_some() {
                return Err(bad_query(format!(
                    "orderBy: '{part}' should be a field name followed by asc or desc."
                )));
            }
            if !conditions::known_field(template, &field) {
                return Err(bad_query(format!(
                    "orderBy: {field} is not a field of this resource."
                )));
            }
            out.push((field, descending));
        }
        Ok(out)
    }

    /// `fields=id,name,company/name`. Names this resource does not have are left out of the
    /// answer rather than refused [UNCONFIRMED].
    fn fields(&self) -> Option<Vec<String>> {
        self.param("fields").map(|f| {
            f.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
    }

    fn number(&self, name: &str) -> Result<Option<u64>, Response> {
        match self.param(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad_query(format!("{name} must be a whole number, not '{v}'."))),
        }
    }
}

/// Keep only `fields` of an object (nested paths build nested objects).
fn project(obj: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    for f in fields {
        let segments: Vec<&str> = f.split('/').collect();
        copy_path(obj, &segments, &mut out);
    }
    Value::Object(out)
}

fn copy_path(from: &Value, path: &[&str], into: &mut Map<String, Value>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some((key, value)) = from
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(first)))
    else {
        return;
    };
    if rest.is_empty() || !value.is_object() {
        into.insert(key.clone(), value.clone());
        return;
    }
    let slot = into
        .entry(key.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = slot {
        copy_path(value, rest, m);
    }
}

fn json_with_headers(status: StatusCode, body: Value, link: Option<String>) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert("link", link);
    }
    resp
}

fn id_of(v: &Value) -> u64 {
    v.get("id").and_then(Value::as_u64).unwrap_or(0)
}

/// A list answer: filter, order, page (or forward-only page), project; `Link` header.
fn list(ctx: &Ctx, headers: &HeaderMap, items: Vec<Value>, template: &Value) -> Response {
    let parsed = (|| -> Result<_, Response> {
        let cond = ctx.conditions(template)?;
        let order = ctx.order_by(template)?;
        let page = ctx.number("page")?.unwrap_or(1);
        // pageSize: default 25; above the 1000 maximum it is clamped to 1000 rather than
        // refused [UNCONFIRMED, §5.2].
        let size = ctx.number("pageSize")?.unwrap_or(25).min(1000);
        let page_id = ctx.number("pageId")?;
        if page == 0 {
            return Err(bad_query("page starts at 1."));
        }
        if size == 0 {
            return Err(bad_query("pageSize must be between 1 and 1000."));
        }
        Ok((cond, order, page, size, page_id))
    })();
    let (cond, order, page, size, page_id) = match parsed {
        Ok(p) => p,
        Err(r) => return r,
    };
    let fields = ctx.fields();
    let mut items: Vec<Value> = match &cond {
        Some(c) => items.into_iter().filter(|i| c.matches(i)).collect(),
        None => items,
    };
    let forward_only = util::header(headers, "pagination-type")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("forward-only"));
    let finish = |page_items: Vec<Value>, link: Vec<String>| {
        let body: Vec<Value> = match &fields {
            Some(f) => page_items.iter().map(|i| project(i, f)).collect(),
            None => page_items,
        };
        let link = (!link.is_empty()).then(|| link.join(", "));
        json_with_headers(StatusCode::OK, Value::Array(body), link)
    };

    if forward_only {
        // Forward-only (§5.2, header name [UNCONFIRMED]): ids above pageId in id order; the
        // `next` link carries the last id returned; orderBy and page do not apply.
        let after = page_id.unwrap_or(0);
        items.retain(|i| id_of(i) > after);
        items.sort_by_key(id_of);
        let more = items.len() as u64 > size;
        items.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let mut link = Vec::new();
        if let Some(last) = items.last().filter(|_| more) {
            link.push(format!(
                "<{}>; rel=\"next\"",
                ctx.link("pageId", id_of(last))
            ));
        }
        return finish(items, link);
    }

    if order.is_empty() {
        items.sort_by_key(id_of);
    } else {
        items.sort_by(|a, b| {
            for (field, desc) in &order {
                let o = conditions::order_values(
                    &conditions::first_value(a, field),
                    &conditions::first_value(b, field),
                );
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
    }
    let total = items.len() as u64;
    let last_page = total.div_ceil(size).max(1);
    let start = usize::try_from((page - 1).saturating_mul(size)).unwrap_or(usize::MAX);
    let page_items: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(usize::try_from(size).unwrap_or(usize::MAX))
        .collect();
    let mut link = Vec::new();
    if last_page > 1 || page > 1 {
        if page > 1 {
            link.push(format!("<{}>; rel=\"first\"", ctx.link("page", 1)));
            link.push(format!(
                "<{}>; rel=\"prev\"",
                ctx.link("page", (page - 1).min(last_page))
            ));
        }
        if page < last_page {
            link.push(format!("<{}>; rel=\"next\"", ctx.link("page", page + 1)));
        }
        link.push(format!("<{}>; rel=\"last\"", ctx.link("page", last_page)));
    }
    finish(page_items, link)
}

/// `{"count": N}` (§5.2), conditions applied.
fn count(ctx: &Ctx, items: Vec<Value>, template: &Value) -> Response {
    match ctx.conditions(template) {
        Ok(cond) => {
            let n = items
                .iter()
                .filter(|i| cond.as_ref().is_none_or(|c| c.matches(i)))
                .count();
            (StatusCode::OK, axum::Json(json!({"count": n}))).into_response()
        }
        Err(r) => r,
    }
}

/// One record, `fields` applied.
fn one(ctx: &Ctx, item: Value) -> Response {
    let body = match ctx.fields() {
        Some(f) => project(&item, &f),
        None => item,
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn parse_id(raw: &str) -> Option<u64> {
    raw.trim().parse::<u64>().ok()
}

// ---------------------------------------------------------------------------------------------
// Companies, agreements, catalog (read only)
// ---------------------------------------------------------------------------------------------

/// What every read handler needs: auth passed, the query parsed.
fn begin(sim: &Sim, headers: &HeaderMap, uri: &Uri, raw: Option<&str>) -> Result<Ctx, Response> {
    authenticate(sim, headers)?;
    Ok(Ctx::new(sim, uri, raw))
}

fn company_template() -> Value {
    company_json(&World::default(), &CwCompany::default())
}

fn agreement_template() -> Value {
    agreement_json(&World::default(), &CwAgreement::default())
}

fn addition_template() -> Value {
    addition_json(&World::default(), &CwAddition::default())
}

fn catalog_template() -> Value {
    catalog_json(&World::default(), &CwCatalogItem::default())
}

fn all_companies(sim: &Sim) -> Vec<Value> {
    let s = sim.state();
    let w = &s.world;
    w.connectwise
        .companies
        .iter()
        .map(|c| company_json(w, c))
        .collect()
}

fn all_agreements(sim: &Sim) -> Vec<Value> {
    let s = sim.state();
    let w = &s.world;
    w.connectwise
        .agreements
        .iter()
        .map(|a| agreement_json(w, a))
        .collect()
}

fn all_catalog(sim: &Sim) -> Vec<Value> {
    let s = sim.state();
    let w = &s.world;
    w.connectwise
        .catalog
        .iter()
        .map(|c| catalog_json(w, c))
        .collect()
}

/// The additions of one agreement, or 404 when it does not exist.
fn agreement_additions(sim: &Sim, agreement: &str) -> Result<Vec<Value>, Response> {
    let s = sim.state();
    let w = &s.world;
    let id = parse_id(agreement)
        .filter(|id| w.connectwise.agreements.iter().any(|a| a.id == *id))
        .ok_or_else(|| not_found(format!("Agreement {agreement} was not found.")))?;
    Ok(w.connectwise
        .additions
        .iter()
        .filter(|a| a.agreement_id == id)
        .map(|a| addition_json(w, a))
        .collect())
}

macro_rules! read_handlers {
    ($list:ident, $count:ident, $one:ident, $all:ident, $template:ident, $what:literal, $find:expr) => {
        async fn $list(
            State(sim): State<Sim>,
            headers: HeaderMap,
            uri: Uri,
            RawQuery(raw): RawQuery,
        ) -> Response {
            match begin(&sim, &headers, &uri, raw.as_deref()) {
                Ok(ctx) => list(&ctx, &headers, $all(&sim), &$template()),
                Err(r) => r,
            }
        }

        async fn $count(
            State(sim): State<Sim>,
            headers: HeaderMap,
            uri: Uri,
            RawQuery(raw): RawQuery,
        ) -> Response {
            match begin(&sim, &headers, &uri, raw.as_deref()) {
                Ok(ctx) => count(&ctx, $all(&sim), &$template()),
                Err(r) => r,
            }
        }

        async fn $one(
            State(sim): State<Sim>,
            Path(id): Path<String>,
            headers: HeaderMap,
            uri: Uri,
            RawQuery(raw): RawQuery,
        ) -> Response {
            let ctx = match begin(&sim, &headers, &uri, raw.as_deref()) {
                Ok(ctx) => ctx,
                Err(r) => return r,
            };
            let found = {
                let s = sim.state();
                parse_id(&id).and_then(|n| ($find)(&s.world, n))
            };
            match found {
                Some(v) => one(&ctx, v),
                None => not_found(format!("{} {id} was not found.", $what)),
            }
        }
    };
}

read_handlers!(
    companies,
    companies_count,
    company,
    all_companies,
    company_template,
    "Company",
    |w: &World, n: u64| w
        .connectwise
        .companies
        .iter()
        .find(|c| c.id == n)
        .map(|c| company_json(w, c))
);
read_handlers!(
    agreements,
    agreements_count,
    agreement,
    all_agreements,
    agreement_template,
    "Agreement",
    |w: &World, n: u64| w
        .connectwise
        .agreements
        .iter()
        .find(|a| a.id == n)
        .map(|a| agreement_json(w, a))
);
read_handlers!(
    catalog,
    catalog_count,
    catalog_item,
    all_catalog,
    catalog_template,
    "Catalog item",
    |w: &World, n: u64| w
        .connectwise
        .catalog
        .iter()
        .find(|c| c.id == n)
        .map(|c| catalog_json(w, c))
);

// ---------------------------------------------------------------------------------------------
// Agreement additions (read and write)
// ---------------------------------------------------------------------------------------------

async fn additions(
    State(sim): State<Sim>,
    Path(agreement): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = match begin(&sim, &headers, &uri, raw.as_deref()) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match agreement_additions(&sim, &agreement) {
        Ok(items) => list(&ctx, &headers, items, &addition_template()),
        Err(r) => r,
    }
}

async fn additions_count(
    State(sim): State<Sim>,
    Path(agreement): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = match begin(&sim, &headers, &uri, raw.as_deref()) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match agreement_additions(&sim, &agreement) {
        Ok(items) => count(&ctx, items, &addition_template()),
        Err(r) => r,
    }
}

/// The index of addition `addition` of agreement `agreement`, or 404.
fn find_addition(world: &World, agreement: &str, addition: &str) -> Result<usize, Response> {
    let cw = &world.connectwise;
    let agreement_id = parse_id(agreement)
        .filter(|id| cw.agreements.iter().any(|a| a.id == *id))
        .ok_or_else(|| not_found(format!("Agreement {agreement} was not found.")))?;
    parse_id(addition)
        .and_then(|id| {
            cw.additions
                .iter()
                .position(|a| a.id == id && a.agreement_id == agreement_id)
        })
        .ok_or_else(|| {
            not_found(format!(
                "Addition {addition} was not found on agreement {agreement}."
            ))
        })
}

async fn addition(
    State(sim): State<Sim>,
    Path((agreement, addition)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = match begin(&sim, &headers, &uri, raw.as_deref()) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let found = {
        let s = sim.state();
        find_addition(&s.world, &agreement, &addition)
            .map(|i| addition_json(&s.world, &s.world.connectwise.additions[i]))
    };
    match found {
        Ok(v) => one(&ctx, v),
        Err(r) => r,
    }
}

/// A JSON number as a decimal (serde_json keeps the shortest text that round-trips, which
/// parses exactly for 2-dp money).
fn decimal_of(v: &Value) -> Option<Decimal> {
    let n = v.as_number()?;
    let text = n.to_string();
    Decimal::from_str(&text)
        .ok()
        .or_else(|| Decimal::from_scientific(&text).ok())
}

/// A date as clients send it: `2026-04-01T00:00:00Z`, any RFC 3339 time, or `2026-04-01`.
fn date_of(v: &Value) -> Option<NaiveDate> {
    v.as_str()
        .and_then(conditions::parse_date)
        .map(|d| d.date_naive())
}

const BILL_CUSTOMER: &[&str] = &["Billable", "DoNotBill", "NoCharge"];

fn bill_customer_of(v: &Value) -> Result<String, Invalid> {
    v.as_str()
        .and_then(|s| {
            BILL_CUSTOMER
                .iter()
                .find(|b| b.eq_ignore_ascii_case(s.trim()))
        })
        .map(|b| (*b).to_string())
        .ok_or_else(|| {
            Invalid::field(
                "billCustomer",
                "billCustomer must be Billable, DoNotBill or NoCharge.",
            )
        })
}

fn quantity_of(v: &Value, field: &'static str) -> Result<Decimal, Invalid> {
    match decimal_of(v) {
        Some(q) if q >= Decimal::ZERO => Ok(q),
        Some(_) => Err(Invalid {
            code: "OutOfRange",
            field,
            message: format!("The field {field} must not be negative."),
        }),
        None => Err(Invalid::field(field, format!("{field} must be a number."))),
    }
}

fn money_of(v: &Value, field: &'static str) -> Result<Decimal, Invalid> {
    decimal_of(v).ok_or_else(|| Invalid::field(field, format!("{field} must be a number.")))
}

fn optional_date_of(v: &Value, field: &'static str) -> Result<Option<NaiveDate>, Invalid> {
    if v.is_null() {
        return Ok(None);
    }
    date_of(v).map(Some).ok_or_else(|| {
        Invalid::field(
            field,
            format!("{field} must be a date such as 2026-04-01T00:00:00Z."),
        )
    })
}

fn text_of(v: &Value, field: &'static str) -> Result<String, Invalid> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| Invalid::field(field, format!("{field} must be text.")))
}

fn optional_text_of(v: &Value, field: &'static str) -> Result<Option<String>, Invalid> {
    if v.is_null() {
        Ok(None)
    } else {
        text_of(v, field).map(Some)
    }
}

/// A member of the body, ignoring case; JSON null counts as absent.
fn body_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

/// Build an addition from a POST/PUT body. Required: `product` (`{id}` or `{identifier}` of a
/// catalog item) and `billCustomer` (§5.3). Defaults when absent [MODELLED]: quantity 1,
/// lessIncluded 0, unitPrice/unitCost/description from the catalog item, effectiveDate today
/// (UTC), taxableFlag true. `agreementId` in the body is ignored: the URL names the agreement.
fn addition_from_body(
    world: &World,
    body: &Map<String, Value>,
    id: u64,
    agreement_id: u64,
    now: DateTime<Utc>,
) -> Result<CwAddition, Vec<Invalid>> {
    let cw = &world.connectwise;
    let mut errors = Vec::new();
    let product = match body_member(body, "product") {
        None => {
            errors.push(Invalid::required("product"));
            None
        }
        Some(p) => {
            let by_id = p.get("id").and_then(Value::as_u64);
            let by_identifier = p.get("identifier").and_then(Value::as_str);
            let found = match (by_id, by_identifier) {
                (Some(n), _) => cw.catalog.iter().find(|c| c.id == n),
                (None, Some(ident)) => cw
                    .catalog
                    .iter()
                    .find(|c| c.identifier.eq_ignore_ascii_case(ident)),
                (None, None) => None,
            };
            if found.is_none() {
                let what = by_id
                    .map(|n| n.to_string())
                    .or_else(|| by_identifier.map(str::to_string));
                errors.push(Invalid::field(
                    "product",
                    match what {
                        Some(w) => format!("Product {w} was not found in the catalog."),
                        None => "product must name a catalog item by id or identifier.".into(),
                    },
                ));
            }
            found
        }
    };
    let bill_customer = match body_member(body, "billCustomer") {
        None => {
            errors.push(Invalid::required("billCustomer"));
            String::new()
        }
        Some(v) => bill_customer_of(v).unwrap_or_else(|e| {
            errors.push(e);
            String::new()
        }),
    };
    fn keep<T>(errors: &mut Vec<Invalid>, r: Result<T, Invalid>) -> Option<T> {
        r.map_err(|e| errors.push(e)).ok()
    }
    let quantity = body_member(body, "quantity").map(|v| quantity_of(v, "quantity"));
    let quantity = keep(&mut errors, quantity.unwrap_or(Ok(Decimal::ONE))).unwrap_or_default();
    let less = body_member(body, "lessIncluded").map(|v| quantity_of(v, "lessIncluded"));
    let less_included = keep(&mut errors, less.unwrap_or(Ok(Decimal::ZERO))).unwrap_or_default();
    let unit_price = body_member(body, "unitPrice")
        .map(|v| money_of(v, "unitPrice"))
        .unwrap_or(Ok(product.map(|p| p.price).unwrap_or_default()));
    let unit_price = keep(&mut errors, unit_price).unwrap_or_default();
    let unit_cost = body_member(body, "unitCost")
        .map(|v| money_of(v, "unitCost"))
        .unwrap_or(Ok(product.map(|p| p.cost).unwrap_or_default()));
    let unit_cost = keep(&mut errors, unit_cost).unwrap_or_default();
    let effective = body_member(body, "effectiveDate")
        .map(|v| optional_date_of(v, "effectiveDate"))
        .unwrap_or(Ok(Some(now.date_naive())));
    let effective_date = keep(&mut errors, effective).flatten();
    let cancelled = body_member(body, "cancelledDate")
        .map(|v| optional_date_of(v, "cancelledDate"))
        .unwrap_or(Ok(None));
    let cancelled_date = keep(&mut errors, cancelled).flatten();
    let description = body_member(body, "description")
        .map(|v| text_of(v, "description"))
        .unwrap_or(Ok(product
            .map(|p| p.description.clone())
            .unwrap_or_default()));
    let description = keep(&mut errors, description).unwrap_or_default();
    let invoice = body_member(body, "invoiceDescription")
        .map(|v| optional_text_of(v, "invoiceDescription"))
        .unwrap_or(Ok(None));
    let invoice_description = keep(&mut errors, invoice).flatten();
    let taxable = body_member(body, "taxableFlag")
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| Invalid::field("taxableFlag", "taxableFlag must be true or false."))
        })
        .unwrap_or(Ok(true));
    let taxable_flag = keep(&mut errors, taxable).unwrap_or(true);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CwAddition {
        id,
        agreement_id,
        product_id: product.map(|p| p.id).unwrap_or_default(),
        quantity,
        less_included,
        unit_price,
        unit_cost,
        bill_customer,
        effective_date,
        cancelled_date,
        description,
        invoice_description,
        taxable_flag,
        last_updated: Some(now),
    })
}

fn body_object(body: &str) -> Result<Map<String, Value>, Response> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(invalid(
            "addition",
            vec![Invalid::field(
                "addition",
                "The request body must be a JSON object describing the addition.",
            )],
        )),
    }
}

async fn create_addition(
    State(sim): State<Sim>,
    Path(agreement): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = authenticate(&sim, &headers) {
        return r;
    }
    let obj = match body_object(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let mut s = sim.state();
    let state = &mut *s;
    let now = Utc::now();
    // The agreement must exist and not be cancelled: a validation error on agreementId, as
    // the brief for this sim asks (the path names it) [MODELLED].
    let found = parse_id(&agreement).and_then(|id| {
        state
            .world
            .connectwise
            .agreements
            .iter()
            .find(|a| a.id == id)
    });
    let agreement_id = match found {
        None => {
            return invalid(
                "addition",
                vec![Invalid::field(
                    "agreementId",
                    format!("Agreement {agreement} was not found."),
                )],
            );
        }
        Some(a) if is_cancelled(a) => {
            return invalid(
                "addition",
                vec![Invalid::field(
                    "agreementId",
                    format!(
                        "Agreement {} is cancelled; additions cannot be added to it.",
                        a.id
                    ),
                )],
            );
        }
        Some(a) => a.id,
    };
    let cw = &state.world.connectwise;
    let max = cw.additions.iter().map(|a| a.id).max().unwrap_or(0);
    let id = state.connectwise.last_addition_id.max(max) + 1;
    match addition_from_body(&state.world, &obj, id, agreement_id, now) {
        Ok(a) => {
            state.connectwise.last_addition_id = id;
            state.connectwise.additions_created += 1;
            state.world.connectwise.additions.push(a.clone());
            (
                StatusCode::CREATED,
                axum::Json(addition_json(&state.world, &a)),
            )
                .into_response()
        }
        Err(errors) => invalid("addition", errors),
    }
}

async fn replace_addition(
    State(sim): State<Sim>,
    Path((agreement, addition)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = authenticate(&sim, &headers) {
        return r;
    }
    let mut s = sim.state();
    let state = &mut *s;
    let index = match find_addition(&state.world, &agreement, &addition) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let obj = match body_object(&body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let old = &state.world.connectwise.additions[index];
    match addition_from_body(&state.world, &obj, old.id, old.agreement_id, Utc::now()) {
        Ok(a) => {
            state.world.connectwise.additions[index] = a;
            state.connectwise.additions_updated += 1;
            let a = &state.world.connectwise.additions[index];
            (StatusCode::OK, axum::Json(addition_json(&state.world, a))).into_response()
        }
        Err(errors) => invalid("addition", errors),
    }
}

/// Apply one JSON Patch `replace` (or `add`, which on an existing member is the same) to an
/// addition. Paths may start with a slash (§5.3, COMMUNITY C3 sends `quantity`).
fn patch_one(a: &mut CwAddition, op: &Value) -> Result<(), Invalid> {
    let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
    if !kind.eq_ignore_ascii_case("replace") && !kind.eq_ignore_ascii_case("add") {
        return Err(Invalid::field(
            "op",
            format!("The patch operation '{kind}' is not supported on additions; use replace."),
        ));
    }
    let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
    let path = path.trim().trim_start_matches('/');
    let null = Value::Null;
    let value = op.get("value").unwrap_or(&null);
    match path.to_ascii_lowercase().as_str() {
        "quantity" => a.quantity = quantity_of(value, "quantity")?,
        "lessincluded" => a.less_included = quantity_of(value, "lessIncluded")?,
        "cancelleddate" => a.cancelled_date = optional_date_of(value, "cancelledDate")?,
        "effectivedate" => {
            a.effective_date = Some(date_of(value).ok_or_else(|| {
                Invalid::field(
                    "effectiveDate",
                    "effectiveDate must be a date such as 2026-04-01T00:00:00Z.",
                )
            })?)
        }
        "unitprice" => a.unit_price = money_of(value, "unitPrice")?,
        "unitcost" => a.unit_cost = money_of(value, "unitCost")?,
        "description" => a.description = text_of(value, "description")?,
        "invoicedescription" => {
            a.invoice_description = optional_text_of(value, "invoiceDescription")?
        }
        "billcustomer" => a.bill_customer = bill_customer_of(value)?,
        "taxableflag" => {
            a.taxable_flag = value.as_bool().ok_or_else(|| {
                Invalid::field("taxableFlag", "taxableFlag must be true or false.")
            })?
        }
        _ => {
            return Err(Invalid::field(
                "path",
                format!(
                    "'{path}' cannot be patched; use quantity, lessIncluded, cancelledDate, effectiveDate, unitPrice, unitCost, description, invoiceDescription, billCustomer or taxableFlag."
                ),
            ));
        }
    }
    Ok(())
}

async fn patch_addition(
    State(sim): State<Sim>,
    Path((agreement, addition)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = authenticate(&sim, &headers) {
        return r;
    }
    let mut s = sim.state();
    let state = &mut *s;
    let index = match find_addition(&state.world, &agreement, &addition) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let Ok(Value::Array(ops)) = serde_json::from_str::<Value>(&body) else {
        return invalid(
            "addition",
            vec![Invalid::field(
                "patch",
                "The request body must be a JSON Patch array such as [{\"op\":\"replace\",\"path\":\"quantity\",\"value\":30}].",
            )],
        );
    };
    // All or nothing: apply to a copy, keep it only when every operation succeeded.
    let mut updated = state.world.connectwise.additions[index].clone();
    let errors: Vec<Invalid> = ops
        .iter()
        .filter_map(|op| patch_one(&mut updated, op).err())
        .collect();
    if !errors.is_empty() {
        return invalid("addition", errors);
    }
    updated.last_updated = Some(Utc::now());
    state.world.connectwise.additions[index] = updated;
    state.connectwise.additions_updated += 1;
    let a = &state.world.connectwise.additions[index];
    (StatusCode::OK, axum::Json(addition_json(&state.world, a))).into_response()
}

async fn delete_addition(
    State(sim): State<Sim>,
    Path((agreement, addition)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authenticate(&sim, &headers) {
        return r;
    }
    let mut s = sim.state();
    let state = &mut *s;
    match find_addition(&state.world, &agreement, &addition) {
        Ok(i) => {
            let removed = state.world.connectwise.additions.remove(i);
            state.connectwise.last_addition_id = state.connectwise.last_addition_id.max(removed.id);
            state.connectwise.additions_deleted += 1;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

// ---------------------------------------------------------------------------------------------
// The `conditions` language (§5.2)
// ---------------------------------------------------------------------------------------------

/// A parser and evaluator for ConnectWise `conditions` (§5.2):
///
/// ```text
/// expr       := and ("or" and)*
/// and        := unary ("and" unary)*
/// unary      := "not" unary | "(" expr ")" | comparison
/// comparison := field ("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") value
///             | field ["not"] ("contains" | "like") value
///             | field ["not"] "in" "(" value ("," value)* ")"
/// field      := name ("/" name)*            e.g. company/id, _info/lastUpdated
/// value      := number | "double-quoted string" | true | false | null | [date]
/// ```
///
/// Keywords are case-insensitive. `like` takes `*` (or SQL's `%`) as a wildcard. Strings
/// compare without regard to case (SQL Server's default collation) [MODELLED]. A field that is
/// null equals only `null`, and `!=` anything else [MODELLED]. Fields resolve on the JSON object
/// the sim returns; a path through an array matches when any element does.
pub mod conditions {
    use std::cmp::Ordering;
    use std::str::FromStr;

    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    use rust_decimal::Decimal;
    use serde_json::Value;

    /// Parentheses and `not`s nest at most this deep (no input can exhaust the stack).
    const MAX_DEPTH: usize = 64;

    #[derive(Debug, Clone, PartialEq)]
    pub enum Lit {
        Null,
        Bool(bool),
        Num(Decimal),
        Str(String),
        Date(DateTime<Utc>),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Op {
        Eq,
        Ne,
        Lt,
        Le,
        Gt,
        Ge,
        Contains,
        Like,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub enum Expr {
        And(Vec<Expr>),
        Or(Vec<Expr>),
        Not(Box<Expr>),
        Compare { field: String, op: Op, value: Lit },
        In { field: String, values: Vec<Lit> },
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Word(String),
        Str(String),
        Num(String),
        Date(String),
        LParen,
        RParen,
        Comma,
        Cmp(Op),
    }

    #[derive(Debug)]
    struct Lexed {
        tok: Tok,
        /// 1-based character position.
        pos: usize,
    }

    fn lex(input: &str) -> Result<Vec<Lexed>, String> {
        let chars: Vec<char> = input.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let pos = i + 1;
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            let simple = match c {
                '(' => Some(Tok::LParen),
                ')' => Some(Tok::RParen),
                ',' => Some(Tok::Comma),
                _ => None,
            };
            if let Some(tok) = simple {
                out.push(Lexed { tok, pos });
                i += 1;
                continue;
            }
            let next = chars.get(i + 1).copied();
            match c {
                '"' => {
                    let mut s = String::new();
                    let mut j = i + 1;
                    let mut closed = false;
                    while j < chars.len() {
                        match chars[j] {
                            '\\' if j + 1 < chars.len() => {
                                s.push(chars[j + 1]);
                                j += 2;
                            }
                            '"' => {
                                closed = true;
                                j += 1;
                                break;
                            }
                            other => {
                                s.push(other);
                                j += 1;
                            }
                        }
                    }
                    if !closed {
                        return Err(format!(
                            "the string starting at position {pos} has no closing double quote"
                        ));
                    }
                    out.push(Lexed {
                        tok: Tok::Str(s),
                        pos,
                    });
                    i = j;
                }
                '[' => {
                    let end = chars[i + 1..].iter().position(|&x| x == ']');
                    let Some(len) = end else {
                        return Err(format!(
                            "the date starting at position {pos} has no closing ]"
                        ));
                    };
                    let text: String = chars[i + 1..i + 1 + len].iter().collect();
                    out.push(Lexed {
                        tok: Tok::Date(text.trim().to_string()),
                        pos,
                    });
                    i += len + 2;
                }
                '=' => {
                    out.push(Lexed {
                        tok: Tok::Cmp(Op::Eq),
                        pos,
                    });
                    i += 1;
                }
                '!' if next == Some('=') => {
                    out.push(Lexed {
                        tok: Tok::Cmp(Op::Ne),
                        pos,
                    });
                    i += 2;
                }
                '<' | '>' => {
                    let (op, width) = match (c, next) {
                        ('<', Some('=')) => (Op::Le, 2),
                        ('<', Some('>')) => (Op::Ne, 2),
                        ('<', _) => (Op::Lt, 1),
                        (_, Some('=')) => (Op::Ge, 2),
                        _ => (Op::Gt, 1),
                    };
                    out.push(Lexed {
                        tok: Tok::Cmp(op),
                        pos,
                    });
                    i += width;
                }
                _ if c.is_ascii_digit()
                    || (c == '-' && next.is_some_and(|n| n.is_ascii_digit() || n == '.'))
                    || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) =>
                {
                    let mut j = i + 1;
                    while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                        j += 1;
                    }
                    out.push(Lexed {
                        tok: Tok::Num(chars[i..j].iter().collect()),
                        pos,
                    });
                    i = j;
                }
                _ if c.is_alphabetic() || c == '_' => {
                    let mut j = i + 1;
                    while j < chars.len()
                        && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '/')
                    {
                        j += 1;
                    }
                    out.push(Lexed {
                        tok: Tok::Word(chars[i..j].iter().collect()),
                        pos,
                    });
                    i = j;
                }
                _ => {
                    return Err(format!("unexpected character '{c}' at position {pos}"));
                }
            }
        }
        Ok(out)
    }

    const KEYWORDS: &[&str] = &[
        "and", "or", "not", "in", "like", "contains", "true", "false", "null",
    ];

    struct Parser<'a> {
        toks: &'a [Lexed],
        i: usize,
        depth: usize,
        end: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<&Tok> {
            self.toks.get(self.i).map(|l| &l.tok)
        }

        fn pos(&self) -> usize {
            self.toks.get(self.i).map_or(self.end, |l| l.pos)
        }

        fn is_word(&self, kw: &str) -> bool {
            matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
        }

        fn is_word_at(&self, offset: usize, kw: &str) -> bool {
            matches!(self.toks.get(self.i + offset).map(|l| &l.tok),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
        }

        /// What the current token is, for a message.
        fn here(&self) -> String {
            match self.peek() {
                None => "the end of the conditions".into(),
                Some(t) => format!("{} at position {}", describe(t), self.pos()),
            }
        }

        fn deeper(&mut self) -> Result<(), String> {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                Err(format!(
                    "conditions nest deeper than {MAX_DEPTH} levels of parentheses or not"
                ))
            } else {
                Ok(())
            }
        }

        fn or(&mut self) -> Result<Expr, String> {
            let mut parts = vec![self.and()?];
            while self.is_word("or") {
                self.i += 1;
                parts.push(self.and()?);
            }
            Ok(if parts.len() == 1 {
                parts.swap_remove(0)
            } else {
                Expr::Or(parts)
            })
        }

        fn and(&mut self) -> Result<Expr, String> {
            let mut parts = vec![self.unary()?];
            while self.is_word("and") {
                self.i += 1;
                parts.push(self.unary()?);
            }
            Ok(if parts.len() == 1 {
                parts.swap_remove(0)
            } else {
                Expr::And(parts)
            })
        }

        fn unary(&mut self) -> Result<Expr, String> {
            if self.is_word("not") {
                self.i += 1;
                self.deeper()?;
                let inner = self.unary()?;
                self.depth -= 1;
                return Ok(Expr::Not(Box::new(inner)));
            }
            match self.peek() {
                Some(Tok::LParen) => {
                    self.i += 1;
                    self.deeper()?;
                    let inner = self.or()?;
                    if self.peek() != Some(&Tok::RParen) {
                        return Err(format!("expected ) but found {}", self.here()));
                    }
                    self.i += 1;
                    self.depth -= 1;
                    Ok(inner)
                }
                Some(Tok::Word(w)) if !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(w)) => {
                    let field = w.clone();
                    if field.ends_with('/') || field.contains("//") {
                        return Err(format!(
                            "'{field}' at position {} is not a field path",
                            self.pos()
                        ));
                    }
                    self.i += 1;
                    self.comparison(field)
                }
                _ => Err(format!("expected a field name but found {}", self.here())),
            }
        }

        fn comparison(&mut self, field: String) -> Result<Expr, String> {
            if let Some(Tok::Cmp(op)) = self.peek() {
                let op = *op;
                self.i += 1;
                let value = self.value()?;
                return Ok(Expr::Compare { field, op, value });
            }
            let negated = self.is_word("not")
                && (self.is_word_at(1, "in")
                    || self.is_word_at(1, "like")
                    || self.is_word_at(1, "contains"));
            if negated {
                self.i += 1;
            }
            let expr = if self.is_word("contains") || self.is_word("like") {
                let op = if self.is_word("like") {
                    Op::Like
                } else {
                    Op::Contains
                };
                self.i += 1;
                let value = match self.value()? {
                    Lit::Num(n) => Lit::Str(n.to_string()),
                    Lit::Str(s) => Lit::Str(s),
                    _ => {
                        return Err(format!(
                            "{field} {} needs a \"string\" value",
                            if op == Op::Like { "like" } else { "contains" }
                        ));
                    }
                };
                Expr::Compare { field, op, value }
            } else if self.is_word("in") {
                self.i += 1;
                if self.peek() != Some(&Tok::LParen) {
                    return Err(format!(
                        "expected ( after {field} in, but found {}",
                        self.here()
                    ));
                }
                self.i += 1;
                let mut values = vec![self.value()?];
                while self.peek() == Some(&Tok::Comma) {
                    self.i += 1;
                    values.push(self.value()?);
                }
                if self.peek() != Some(&Tok::RParen) {
                    return Err(format!(
                        "expected , or ) in the list after {field} in, but found {}",
                        self.here()
                    ));
                }
                self.i += 1;
                Expr::In { field, values }
            } else {
                return Err(format!(
                    "expected an operator (=, !=, <, <=, >, >=, contains, like, in) after {field}, but found {}",
                    self.here()
                ));
            };
            Ok(if negated {
                Expr::Not(Box::new(expr))
            } else {
                expr
            })
        }

        fn value(&mut self) -> Result<Lit, String> {
            let pos = self.pos();
            let lit = match self.peek() {
                Some(Tok::Str(s)) => Lit::Str(s.clone()),
                Some(Tok::Num(n)) => Lit::Num(Decimal::from_str(n).map_err(|_| {
                    format!("{n} at position {pos} is not a number this API accepts")
                })?),
                Some(Tok::Date(d)) => Lit::Date(parse_date(d).ok_or_else(|| {
                    format!("[{d}] at position {pos} is not a date; use [2026-04-01T00:00:00Z]")
                })?),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Lit::Bool(true),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Lit::Bool(false),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Lit::Null,
                Some(Tok::Word(w)) => {
                    return Err(format!(
                        "{w} at position {pos} is not a value; put text in double quotes (\"{w}\")"
                    ));
                }
                _ => {
                    return Err(format!(
                        "expected a value (a number, \"text\", true, false, null or [date]) but found {}",
                        self.here()
                    ));
                }
            };
            self.i += 1;
            Ok(lit)
        }
    }

    fn describe(t: &Tok) -> String {
        match t {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Num(n) => n.clone(),
            Tok::Date(d) => format!("[{d}]"),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Cmp(op) => format!("'{}'", op_text(*op)),
        }
    }

    fn op_text(op: Op) -> &'static str {
        match op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::Like => "like",
        }
    }

    /// Parse a `conditions` string. Errors are one sentence fragment naming the problem and
    /// where it is.
    pub fn parse(input: &str) -> Result<Expr, String> {
        let toks = lex(input)?;
        if toks.is_empty() {
            return Err("the conditions are empty".into());
        }
        let mut p = Parser {
            toks: &toks,
            i: 0,
            depth: 0,
            end: input.chars().count() + 1,
        };
        let expr = p.or()?;
        if p.i < toks.len() {
            return Err(format!(
                "unexpected {}; join conditions with and / or",
                p.here()
            ));
        }
        Ok(expr)
    }

    /// A date as ConnectWise and its clients write them: RFC 3339 (`2026-04-01T00:00:00Z`),
    /// without an offset (taken as UTC), or a bare `2026-04-01`.
    pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
        let s = s.trim();
        if let Ok(d) = DateTime::parse_from_rfc3339(s) {
            return Some(d.with_timezone(&Utc));
        }
        if let Ok(n) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
            return Some(n.and_utc());
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|n| n.and_utc())
    }

    impl Expr {
        /// The field paths the expression names.
        pub fn fields(&self) -> Vec<&str> {
            let mut out = Vec::new();
            self.collect_fields(&mut out);
            out
        }

        fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
            match self {
                Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| e.collect_fields(out)),
                Expr::Not(e) => e.collect_fields(out),
                Expr::Compare { field, .. } | Expr::In { field, .. } => out.push(field),
            }
        }

        /// The first field `template` (a full record of the resource) does not have.
        pub fn unknown_field(&self, template: &Value) -> Option<String> {
            self.fields()
                .into_iter()
                .find(|f| !known_field(template, f))
                .map(str::to_string)
        }

        /// Whether the record satisfies the expression.
        pub fn matches(&self, obj: &Value) -> bool {
            match self {
                Expr::And(v) => v.iter().all(|e| e.matches(obj)),
                Expr::Or(v) => v.iter().any(|e| e.matches(obj)),
                Expr::Not(e) => !e.matches(obj),
                Expr::Compare { field, op, value } => {
                    resolve(obj, field).iter().any(|v| compare(v, *op, value))
                }
                Expr::In { field, values } => resolve(obj, field)
                    .iter()
                    .any(|v| values.iter().any(|l| compare(v, Op::Eq, l))),
            }
        }
    }

    fn child<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
        v.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// Whether `path` names a field of `template` (a full record). A path below a member that
    /// is null in the template (a reference not set) is accepted; one ending on an object is
    /// not (compare `company/id`, not `company`).
    pub fn known_field(template: &Value, path: &str) -> bool {
        let mut cur = template;
        for seg in path.split('/') {
            if seg.is_empty() {
                return false;
            }
            if let Value::Array(items) = cur {
                match items.first() {
                    Some(first) => cur = first,
                    None => return true,
                }
            }
            match cur {
                Value::Object(_) => match child(cur, seg) {
                    Some(v) => cur = v,
                    None => return false,
                },
                Value::Null => return true,
                _ => return false,
            }
        }
        !cur.is_object()
    }

    /// The values at `path` (several when the path crosses an array; null when absent).
    fn resolve<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
        const NULL: &Value = &Value::Null;
        let mut current: Vec<&Value> = vec![obj];
        for seg in path.split('/') {
            let mut next = Vec::new();
            for v in current {
                match v {
                    Value::Array(items) => {
                        next.extend(items.iter().map(|i| child(i, seg).unwrap_or(NULL)))
                    }
                    _ => next.push(child(v, seg).unwrap_or(NULL)),
                }
            }
            current = next;
        }
        if current.is_empty() {
            current.push(NULL);
        }
        current
    }

    /// The first value at `path` (for ordering).
    pub fn first_value(obj: &Value, path: &str) -> Value {
        resolve(obj, path)
            .first()
            .map(|v| (*v).clone())
            .unwrap_or(Value::Null)
    }

    fn decimal(v: &Value) -> Option<Decimal> {
        match v {
            Value::Number(n) => {
                let t = n.to_string();
                Decimal::from_str(&t)
                    .ok()
                    .or_else(|| Decimal::from_scientific(&t).ok())
            }
            Value::String(s) => Decimal::from_str(s.trim()).ok(),
            _ => None,
        }
    }

    fn text(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn order(v: &Value, lit: &Lit) -> Option<Ordering> {
        match (v, lit) {
            (Value::Number(_) | Value::String(_), Lit::Num(d)) => Some(decimal(v)?.cmp(d)),
            (Value::Number(_), Lit::Str(s)) => {
                Some(decimal(v)?.cmp(&Decimal::from_str(s.trim()).ok()?))
            }
            (Value::String(s), Lit::Str(t)) => Some(s.to_lowercase().cmp(&t.to_lowercase())),
            (Value::String(s), Lit::Date(d)) => Some(parse_date(s)?.cmp(d)),
            (Value::Bool(b), Lit::Bool(c)) => Some(b.cmp(c)),
            (Value::Bool(b), Lit::Str(s)) => Some(b.cmp(&s.trim().to_lowercase().parse().ok()?)),
            (Value::String(s), Lit::Bool(c)) => {
                Some(s.trim().to_lowercase().parse::<bool>().ok()?.cmp(c))
            }
            _ => None,
        }
    }

    /// `*` and `%` match any run of characters; case is ignored.
    fn like(text: &str, pattern: &str) -> bool {
        let t: Vec<char> = text.to_lowercase().chars().collect();
        let p: Vec<char> = pattern.to_lowercase().chars().collect();
        let (mut ti, mut pi) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
                star = Some((pi, ti));
                pi += 1;
            } else if pi < p.len() && p[pi] == t[ti] {
                pi += 1;
                ti += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        while pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
            pi += 1;
        }
        pi == p.len()
    }

    fn compare(v: &Value, op: Op, lit: &Lit) -> bool {
        match op {
            Op::Contains | Op::Like => {
                let (Some(t), Lit::Str(s)) = (text(v), lit) else {
                    return false;
                };
                if op == Op::Like {
                    like(&t, s)
                } else {
                    t.to_lowercase().contains(&s.to_lowercase())
                }
            }
            _ => {
                if *lit == Lit::Null {
                    return match op {
                        Op::Eq => v.is_null(),
                        Op::Ne => !v.is_null(),
                        _ => false,
                    };
                }
                if v.is_null() {
                    return op == Op::Ne;
                }
                match order(v, lit) {
                    Some(o) => match op {
                        Op::Eq => o == Ordering::Equal,
                        Op::Ne => o != Ordering::Equal,
                        Op::Lt => o == Ordering::Less,
                        Op::Le => o != Ordering::Greater,
                        Op::Gt => o == Ordering::Greater,
                        Op::Ge => o != Ordering::Less,
                        Op::Contains | Op::Like => false,
                    },
                    None => op == Op::Ne,
                }
            }
        }
    }

    /// A total order over JSON values for `orderBy`: null, booleans, numbers, text (case
    /// ignored), then anything else.
    pub fn order_values(a: &Value, b: &Value) -> Ordering {
        fn rank(v: &Value) -> u8 {
            match v {
                Value::Null => 0,
                Value::Bool(_) => 1,
                Value::Number(_) => 2,
                Value::String(_) => 3,
                _ => 4,
            }
        }
        match (a, b) {
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            (Value::Number(_), Value::Number(_)) => decimal(a).cmp(&decimal(b)),
            (Value::String(x), Value::String(y)) => x
                .to_lowercase()
                .cmp(&y.to_lowercase())
                .then_with(|| x.cmp(y)),
            _ => rank(a).cmp(&rank(b)),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;
        use serde_json::json;

        fn addition() -> Value {
            json!({
                "id": 9012, "quantity": 25, "unitPrice": 34.55, "billCustomer": "Billable",
                "description": "Microsoft 365 Business Premium (annual)",
                "cancelledDate": null, "agreementStatus": "Active", "taxableFlag": true,
                "effectiveDate": "2025-07-01T00:00:00Z",
                "product": {"id": 731, "identifier": "CFQ7TTC0LCHC-P1Y"},
                "company": null,
                "types": [{"id": 1, "name": "Client"}, {"id": 3, "name": "Vendor"}],
                "_info": {"lastUpdated": "2026-04-01T00:00:00Z"}
            })
        }

        fn eval(c: &str) -> bool {
            match parse(c) {
                Ok(e) => e.matches(&addition()),
                Err(err) => panic!("{c}: {err}"),
            }
        }

        #[test]
        fn comparisons() {
            assert!(eval("quantity = 25"));
            assert!(eval("quantity >= 25 and quantity <= 25"));
            assert!(!eval("quantity > 25"));
            assert!(eval("quantity != 24"));
            assert!(eval("quantity <> 24"));
            assert!(eval("unitPrice < 34.56"));
            assert!(eval("billCustomer = \"billable\""));
            assert!(eval("product/id = 731"));
            assert!(eval("product/identifier like \"CFQ7*\""));
            assert!(eval("product/identifier like \"%P1Y\""));
            assert!(!eval("product/identifier like \"CFQ7\""));
            assert!(eval("description contains \"premium\""));
            assert!(eval("description not contains \"basic\""));
            assert!(eval("taxableFlag = true"));
            assert!(eval("cancelledDate = null"));
            assert!(!eval("cancelledDate != null"));
            assert!(eval("effectiveDate < [2026-01-01T00:00:00Z]"));
            assert!(eval("_info/lastUpdated >= [2026-04-01]"));
            assert!(eval("types/name = \"Vendor\""));
        }

        #[test]
        fn boolean_structure() {
            assert!(eval("quantity = 1 or quantity = 25"));
            assert!(!eval("quantity = 1 and quantity = 25"));
            assert!(eval(
                "(quantity = 1 or quantity = 25) and billCustomer = \"Billable\""
            ));
            assert!(!eval(
                "quantity = 1 or (quantity = 25 and billCustomer = \"NoCharge\")"
            ));
            // and binds tighter than or.
            assert!(eval(
                "quantity = 25 or quantity = 1 and billCustomer = \"NoCharge\""
            ));
            assert!(eval("not quantity = 1"));
            assert!(eval("NOT (quantity = 1) AND agreementStatus = \"Active\""));
            assert!(eval("quantity in (1, 25, 30)"));
            assert!(!eval("quantity not in (1, 25)"));
            assert!(eval("agreementStatus in (\"Active\", \"Expired\")"));
        }

        #[test]
        fn strings_escape_quotes() {
            let e = parse(r#"description = "say \"hi\"""#).unwrap_or_else(|e| panic!("{e}"));
            assert!(e.matches(&json!({"description": "say \"hi\""})));
        }

        #[test]
        fn errors_name_the_problem() {
            let err = |c: &str| parse(c).err().unwrap_or_default();
            assert!(err("quantity =").contains("expected a value"));
            assert!(err("quantity = 1 and").contains("field name"));
            assert!(err("(quantity = 1").contains("expected )"));
            assert!(err("quantity 1").contains("expected an operator"));
            assert!(err("name = Contoso").contains("double quotes"));
            assert!(err("name = \"Contoso").contains("closing double quote"));
            assert!(err("quantity = 1 quantity = 2").contains("and / or"));
            assert!(err("quantity = 1 ; drop").contains("unexpected character ';'"));
            assert!(err("d > [yesterday]").contains("not a date"));
            assert!(err("quantity in 1").contains("expected ("));
            assert!(err("").contains("empty"));
            let deep = format!("{}a = 1{}", "(".repeat(200), ")".repeat(200));
            assert!(err(&deep).contains("nest deeper"));
        }

        #[test]
        fn unknown_fields_are_found() {
            let t = addition();
            let e = parse("product/id = 1 and nope = 2").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(e.unknown_field(&t).as_deref(), Some("nope"));
            let e = parse("company/name = \"x\"").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                e.unknown_field(&t),
                None,
                "below a null reference is allowed"
            );
            let e = parse("product = 1").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(e.unknown_field(&t).as_deref(), Some("product"));
            let e = parse("quantity/x = 1").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(e.unknown_field(&t).as_deref(), Some("quantity/x"));
        }

        fn token() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("and".to_string()),
                Just("or".to_string()),
                Just("not".to_string()),
                Just("in".to_string()),
                Just("like".to_string()),
                Just("contains".to_string()),
                Just("(".to_string()),
                Just(")".to_string()),
                Just(",".to_string()),
                Just("=".to_string()),
                Just("!=".to_string()),
                Just("<=".to_string()),
                Just(">".to_string()),
                Just("null".to_string()),
                Just("true".to_string()),
                Just("quantity".to_string()),
                Just("product/id".to_string()),
                Just("types/name".to_string()),
                Just("\"Billable\"".to_string()),
                Just("[2026-01-01]".to_string()),
                Just("[".to_string()),
                Just("\"".to_string()),
                "-?[0-9]{0,40}(\\.[0-9]{0,5})?",
                "[a-z/_]{1,6}",
            ]
        }

        proptest! {
            #[test]
            fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
                if let Ok(e) = parse(&s) {
                    let _ = e.matches(&addition());
                    let _ = e.unknown_field(&addition());
                }
            }

            #[test]
            fn token_soup_never_panics(toks in prop::collection::vec(token(), 0..60)) {
                let s = toks.join(" ");
                if let Ok(e) = parse(&s) {
                    let _ = e.matches(&addition());
                    let _ = e.unknown_field(&addition());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addition_money_is_computed_exactly() {
        let mut w = World::default();
        w.connectwise.additions.push(CwAddition {
            id: 9012,
            agreement_id: 77,
            quantity: Decimal::from(25),
            unit_price: Decimal::new(3455, 2),
            unit_cost: Decimal::new(2819, 2),
            ..CwAddition::default()
        });
        let v = addition_json(&w, &w.connectwise.additions[0]);
        assert_eq!(v["extPrice"], json!(863.75));
        assert_eq!(v["extCost"], json!(704.75));
        assert_eq!(v["margin"], json!(159));
        assert_eq!(v["billedQuantity"], json!(25));
        assert_eq!(v["unitPrice"], json!(34.55));
    }

    #[test]
    fn projection_keeps_nested_paths() {
        let v = json!({"id": 1, "name": "A", "company": {"id": 2, "name": "B"}});
        let p = project(&v, &["id".into(), "company/name".into(), "nope".into()]);
        assert_eq!(p, json!({"id": 1, "company": {"name": "B"}}));
    }
}
