//! Simulated Partner Center REST API, standing in for
//! `https://api.partnercenter.microsoft.com/v1` (reference/external-apis.md §3).
//!
//! App+User tokens for `https://api.partnercenter.microsoft.com`, in the MSP tenant only,
//! signed in with MFA (§1.7) by a user with the Admin agent or Global admin role. Endpoints:
//! customers with continuation paging (§3.2), company profiles, subscriptions and quantity
//! changes (§3.3), the MPN profile (§3.4). Errors use the §3.5 body; every response carries
//! `MS-RequestId` and `MS-CorrelationId` (§3.1).
//!
//! Error `code` numbers follow Microsoft's error-code table where it has one (401 → 400
//! "Access denied", 403 → 2032, 404 customer → 1000 "Not found", 404 subscription → 20003,
//! 400 invalid input → 400056, MPN not found → 3000 (§3.4)); the MFA code 900419 and the
//! code of a refused seat reduction (400056) are [UNCONFIRMED].

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Months, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::entra::PARTNER_CENTER_RESOURCE;
use super::tokens::TokenProblem;
use super::util;
use super::world::{CustomerTenant, MsSubscription, SeatAddition};
use super::{Sim, State};

/// The SDK's page-size bounds for `GET /customers` (§3.2).
const MAX_PAGE: usize = 500;
/// NCE: seats can be reduced within 168 hours of purchase, renewal or their addition.
const CANCEL_WINDOW_HOURS: i64 = 168;
/// Continuation tokens older than this are forgotten (an unknown token is a 400).
const CONTINUATION_TTL: Duration = Duration::from_secs(3600);

/// Runtime records of this API that are not part of the dataset.
#[derive(Default)]
pub struct Runtime {
    /// Continuation token → where the next page starts.
    continuations: HashMap<String, Continuation>,
    /// `MS-RequestId` + path of a successful PATCH → its response (idempotent retries).
    patches: HashMap<String, (Instant, Value)>,
    /// Quantity changes applied (a retried PATCH with the same MS-RequestId counts once).
    quantity_changes_applied: u64,
    idempotent_replays: u64,
}

#[derive(Debug, Serialize)]
struct RuntimeView {
    continuations_live: usize,
    quantity_changes_applied: u64,
    idempotent_replays: u64,
}

impl Runtime {
    fn view(&self) -> RuntimeView {
        RuntimeView {
            continuations_live: self.continuations.len(),
            quantity_changes_applied: self.quantity_changes_applied,
            idempotent_replays: self.idempotent_replays,
        }
    }

    fn prune(&mut self) {
        let now = Instant::now();
        self.continuations
            .retain(|_, c| now.duration_since(c.created) < CONTINUATION_TTL);
        if self.patches.len() > 10_000 {
            self.patches
                .retain(|_, (t, _)| now.duration_since(*t) < Duration::from_secs(86_400));
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
        fmt::Debug::fmt(&self.view(), f)
    }
}

#[derive(Debug, Clone)]
struct Continuation {
    offset: usize,
    size: usize,
    filter: Option<CustomerFilter>,
    created: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CustomerFilter {
    CompanyName(String),
    Domain(String),
    IndirectReseller(String),
}

pub fn router() -> Router<Sim> {
    Router::new()
        .route("/customers", get(customers))
        .route("/customers/{id}", get(customer))
        .route("/customers/{id}/profiles/company", get(company_profile))
        .route("/customers/{id}/subscriptions", get(subscriptions))
        .route(
            "/customers/{id}/subscriptions/{sub}",
            get(subscription).patch(patch_subscription),
        )
        .route("/profiles/mpn", get(mpn_profile))
        .route("/profiles/organization", get(organization_profile))
        .fallback(unknown)
}

// ---------------------------------------------------------------------------------------------
// Headers and errors (§3.1, §3.5)

struct Ctx {
    request_id: String,
    correlation_id: String,
    /// Whether the client sent its own MS-RequestId (only then is a PATCH idempotent).
    client_request_id: bool,
}

impl Ctx {
    fn new(headers: &HeaderMap) -> Ctx {
        let sent = util::header(headers, "ms-requestid")
            .map(str::trim)
            .filter(|v| !v.is_empty());
        Ctx {
            request_id: sent.map(str::to_string).unwrap_or_else(util::guid),
            client_request_id: sent.is_some(),
            correlation_id: util::header(headers, "ms-correlationid")
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .unwrap_or_else(util::guid),
        }
    }

    fn respond(&self, status: StatusCode, body: &Value) -> Response {
        let mut r = (status, body.to_string()).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        for (k, v) in [
            ("ms-requestid", self.request_id.as_str()),
            ("ms-correlationid", self.correlation_id.as_str()),
            ("ms-cv", "cspsync-sim.0"),
            ("ms-serverid", "cspsync-sim"),
        ] {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k, v);
            }
        }
        r
    }

    fn ok(&self, body: &Value) -> Response {
        self.respond(StatusCode::OK, body)
    }

    /// §3.5: `{"code","description","data":[],"source":"PartnerFD"}`.
    fn error(&self, status: StatusCode, code: u32, description: &str) -> Response {
        let body =
            json!({"code": code, "description": description, "data": [], "source": "PartnerFD"});
        let mut r = self.respond(status, &body);
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("OAuth realm=urn:cpsvc:cpid:cspsync-sim"),
            );
        }
        r
    }

    fn boxed(&self, status: StatusCode, code: u32, description: &str) -> Box<Response> {
        Box::new(self.error(status, code, description))
    }

    fn bad_request(&self, description: &str) -> Response {
        self.error(StatusCode::BAD_REQUEST, 400056, description)
    }
}

async fn unknown(headers: HeaderMap, uri: Uri) -> Response {
    Ctx::new(&headers).error(
        StatusCode::NOT_FOUND,
        1000,
        &format!(
            "The resource {} was not found in Partner Center.",
            uri.path()
        ),
    )
}

/// Check the token and the signed-in user (§1.7, §3.1).
fn authorize(state: &State, headers: &HeaderMap, ctx: &Ctx) -> Result<(), Box<Response>> {
    let denied = |why: &str| ctx.boxed(StatusCode::UNAUTHORIZED, 400, why);
    let grant = match state
        .tokens
        .check(util::bearer(headers), PARTNER_CENTER_RESOURCE)
    {
        Ok(g) => g,
        Err(TokenProblem::Missing) => {
            return Err(denied("Access denied: the request has no bearer token."));
        }
        Err(TokenProblem::Expired) => {
            return Err(denied("Access denied: the access token has expired."));
        }
        Err(TokenProblem::WrongAudience) => {
            return Err(denied(
                "Access denied: the access token is not for Partner Center (https://api.partnercenter.microsoft.com).",
            ));
        }
        Err(TokenProblem::Unknown) => {
            return Err(denied("Access denied: the access token is not valid."));
        }
    };
    let msp = &state.world.msp;
    if !grant.tenant_id.eq_ignore_ascii_case(&msp.tenant_id) {
        return Err(ctx.boxed(
            StatusCode::FORBIDDEN,
            2032,
            "Access denied: the token was issued for a tenant that is not a Partner Center partner tenant.",
        ));
    }
    let Some(user) = msp.users.iter().find(|u| u.id == grant.subject) else {
        return Err(denied(
            "Access denied: the signed-in user no longer exists.",
        ));
    };
    if !user.account_enabled {
        return Err(denied("Access denied: the signed-in user is disabled."));
    }
    if !grant.mfa {
        // §1.7: App+User calls must use MFA [code UNCONFIRMED].
        return Err(ctx.boxed(
            StatusCode::UNAUTHORIZED,
            900419,
            "Multi-factor authentication is required: the access token does not show MFA (its amr claim lacks mfa). Sign in again with MFA to use Partner Center.",
        ));
    }
    let has_role = user
        .partner_roles
        .iter()
        .any(|r| r.eq_ignore_ascii_case("AdminAgent") || r.eq_ignore_ascii_case("GlobalAdmin"));
    if !has_role {
        return Err(ctx.boxed(
            StatusCode::FORBIDDEN,
            2032,
            &format!(
                "Access denied: {} has neither the Admin agent nor the Global admin role in Partner Center.",
                user.user_principal_name
            ),
        ));
    }
    Ok(())
}

fn fmt_time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true))
    })
}

fn link(uri: &str) -> Value {
    json!({"uri": uri, "method": "GET", "headers": []})
}

fn find_customer<'a>(state: &'a State, id: &str) -> Option<(usize, &'a CustomerTenant)> {
    state
        .world
        .customers
        .iter()
        .enumerate()
        .find(|(_, c)| c.tenant_id.eq_ignore_ascii_case(id))
}

fn customer_not_found(ctx: &Ctx, id: &str) -> Response {
    ctx.error(
        StatusCode::NOT_FOUND,
        1000,
        &format!("Customer with tenant id {id} was not found."),
    )
}

fn subscription_not_found(ctx: &Ctx, id: &str) -> Response {
    ctx.error(
        StatusCode::NOT_FOUND,
        20003,
        &format!("Subscription with ID {id} was not found."),
    )
}

// ---------------------------------------------------------------------------------------------
// Customers (§3.2)

fn company_profile_json(c: &CustomerTenant) -> Value {
    json!({
        "tenantId": c.tenant_id,
        "domain": c.domain,
        "companyName": c.company_name,
        "address": {"country": c.country},
        "email": null,
        "links": {"self": link(&format!("/customers/{}/profiles/company", c.tenant_id))},
        "attributes": {"objectType": "CustomerCompanyProfile"},
    })
}

fn customer_json(c: &CustomerTenant) -> Value {
    json!({
        "id": c.tenant_id,
        "commerceId": c.commerce_id,
        "companyProfile": company_profile_json(c),
        "relationshipToPartner": if c.relationship_to_partner.is_empty() { "reseller" } else { c.relationship_to_partner.as_str() },
        "allowDelegatedAccess": c.allow_delegated_access,
        "customDomains": c.custom_domains,
        "links": {"self": link(&format!("/customers/{}", c.tenant_id))},
        "attributes": {"objectType": "Customer"},
    })
}

/// `filter={"Field":"CompanyName"|"Domain"|"IndirectReseller","Value":"..","Operator":"starts_with"}`.
fn parse_customer_filter(text: &str) -> Result<CustomerFilter, String> {
    let v: Value = serde_json::from_str(text)
        .map_err(|_| "The filter is not valid JSON; send {\"Field\":\"CompanyName\",\"Value\":\"...\",\"Operator\":\"starts_with\"}.".to_string())?;
    let get = |k: &str| {
        v.as_object().and_then(|o| {
            o.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .and_then(|(_, v)| v.as_str())
        })
    };
    let field = get("Field").ok_or("The filter has no Field.")?;
    let value = get("Value").ok_or("The filter has no Value.")?.to_string();
    let op = get("Operator").ok_or("The filter has no Operator.")?;
    if !op.eq_ignore_ascii_case("starts_with") {
        return Err(format!(
            "The filter operator '{op}' is not supported; use starts_with."
        ));
    }
    match field.to_ascii_lowercase().as_str() {
        "companyname" => Ok(CustomerFilter::CompanyName(value)),
        "domain" => Ok(CustomerFilter::Domain(value)),
        "indirectreseller" => Ok(CustomerFilter::IndirectReseller(value)),
        _ => Err(format!(
            "The filter field '{field}' is not supported; use CompanyName, Domain or IndirectReseller."
        )),
    }
}

fn matches(c: &CustomerTenant, f: &Option<CustomerFilter>) -> bool {
    let starts = |s: &str, p: &str| s.to_lowercase().starts_with(&p.to_lowercase());
    match f {
        None => true,
        Some(CustomerFilter::CompanyName(p)) => starts(&c.company_name, p),
        Some(CustomerFilter::Domain(p)) => {
            starts(&c.domain, p) || c.custom_domains.iter().any(|d| starts(d, p))
        }
        // The sim's MSP sells direct: no customer is served through an indirect reseller.
        Some(CustomerFilter::IndirectReseller(_)) => false,
    }
}

fn continuation_token() -> String {
    format!("{},{}", util::guid(), util::opaque_token(""))
}

async fn customers(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let ctx = Ctx::new(&headers);
    let mut state = sim.state();
    if let Err(r) = authorize(&state, &headers, &ctx) {
        return *r;
    }
    let q: HashMap<String, String> = q
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let seek = q.get("seekoperation").map(String::as_str);
    state.partnercenter.prune();
    let (offset, size, filter) = match seek {
        Some(s) if s.eq_ignore_ascii_case("Next") => {
            // §3.2: the next page is GET /customers?seekOperation=Next with the token in the
            // MS-ContinuationToken header.
            let Some(token) = util::header(&headers, "ms-continuationtoken")
                .map(str::trim)
                .filter(|t| !t.is_empty())
            else {
                return ctx.bad_request(
                    "seekOperation=Next needs the MS-ContinuationToken header from the previous page's links.next.",
                );
            };
            let Some(c) = state.partnercenter.continuations.get(token) else {
                return ctx.bad_request(
                    "The continuation token is not valid or has expired; list the customers again from the first page.",
                );
            };
            (c.offset, c.size, c.filter.clone())
        }
        Some(other) => {
            return ctx.bad_request(&format!(
                "seekOperation '{other}' is not supported here; use Next with the MS-ContinuationToken header."
            ));
        }
        None => {
            let filter = match q.get("filter").filter(|f| !f.trim().is_empty()) {
                Some(f) => match parse_customer_filter(f) {
                    Ok(f) => Some(f),
                    Err(e) => return ctx.bad_request(&e),
                },
                None => None,
            };
            // SDK bounds 1..500 (§3.2); size=0 goes with a filter (the docs' example) and
            // means the largest page. Absent: the largest page [UNCONFIRMED].
            let size = match q.get("size").map(|s| s.trim().parse::<i64>()) {
                None => MAX_PAGE,
                Some(Ok(0)) if filter.is_some() => MAX_PAGE,
                Some(Ok(n)) if (1..=MAX_PAGE as i64).contains(&n) => {
                    usize::try_from(n).unwrap_or(MAX_PAGE)
                }
                Some(_) => {
                    return ctx.bad_request(&format!(
                        "The page size must be between 1 and {MAX_PAGE}; got '{}'.",
                        q.get("size").map(String::as_str).unwrap_or("")
                    ));
                }
            };
            (0, size, filter)
        }
    };
    let all: Vec<&CustomerTenant> = state
        .world
        .customers
        .iter()
        .filter(|c| matches(c, &filter))
        .collect();
    let total = all.len();
    let end = offset.saturating_add(size).min(total);
    let items: Vec<Value> = all
        .get(offset.min(total)..end)
        .unwrap_or_default()
        .iter()
        .map(|c| customer_json(c))
        .collect();
    let mut links = serde_json::Map::new();
    links.insert("self".into(), link(&format!("/customers?size={size}")));
    let mut body = json!({
        "totalCount": items.len(),
        "items": items,
        "attributes": {"objectType": "Collection"},
    });
    if end < total {
        let token = continuation_token();
        state.partnercenter.continuations.insert(
            token.clone(),
            Continuation {
                offset: end,
                size,
                filter,
                created: Instant::now(),
            },
        );
        links.insert(
            "next".into(),
            json!({
                "uri": format!("/customers?size={size}&seekOperation=Next"),
                "method": "GET",
                "headers": [{"key": "MS-ContinuationToken", "value": token}],
            }),
        );
        body["continuationToken"] = json!(token);
    }
    body["links"] = Value::Object(links);
    ctx.ok(&body)
}

async fn customer(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = Ctx::new(&headers);
    let state = sim.state();
    if let Err(r) = authorize(&state, &headers, &ctx) {
        return *r;
    }
    match find_customer(&state, &id) {
        Some((_, c)) => ctx.ok(&customer_json(c)),
        None => customer_not_found(&ctx, &id),
    }
}

async fn company_profile(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = Ctx::new(&headers);
    let state = sim.state();
    if let Err(r) = authorize(&state, &headers, &ctx) {
        return *r;
    }
    match find_customer(&state, &id) {
        Some((_, c)) => ctx.ok(&company_profile_json(c)),
        None => customer_not_found(&ctx, &id),
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriptions (§3.3)

fn etag(s: &MsSubscription) -> String {
    let text = serde_json::to_string(s).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(&Sha256::digest(text.as_bytes())[..12])
}

fn subscription_json(c: &CustomerTenant, s: &MsSubscription, now: DateTime<Utc>) -> Value {
    let customer_id = &c.tenant_id;
    let country = &c.country;
    let status = if s.status.is_empty() {
        "active"
    } else {
        s.status.as_str()
    };
    let self_uri = format!("/customers/{customer_id}/subscriptions/{}", s.id);
    let suspension: Vec<&str> = if status.eq_ignore_ascii_case("suspended") {
        vec!["CustomerCancellation"]
    } else {
        Vec::new()
    };
    let mut actions: Vec<&str> = Vec::new();
    if status.eq_ignore_ascii_case("active") {
        actions.push("ChangeQuantity");
        if reducible(s, now).is_some() {
            actions.push("Cancel");
        }
    }
    json!({
        "id": s.id,
        "offerId": s.offer_id,
        "entitlementId": s.id,
        "offerName": s.offer_name,
        "friendlyName": s.friendly_name,
        "quantity": s.quantity,
        "unitType": "Licenses",
        "hasPurchasableAddons": false,
        "creationDate": fmt_time(s.creation_date),
        "effectiveStartDate": fmt_time(s.effective_start_date),
        "commitmentEndDate": fmt_time(s.commitment_end_date),
        "status": status,
        "autoRenewEnabled": s.auto_renew_enabled,
        "isTrial": s.is_trial,
        "billingType": "license",
        "billingCycle": s.billing_cycle,
        "termDuration": s.term_duration,
        "renewalTermDuration": s.term_duration,
        "refundOptions": [],
        "isMicrosoftProduct": true,
        "publisherName": "Microsoft Corporation",
        "productType": {"id": "OnlineServicesNCE", "displayName": "OnlineServicesNCE"},
        "actions": actions,
        "suspensionReasons": suspension,
        "contractType": "subscription",
        "orderId": s.order_id,
        "links": {
            "self": link(&self_uri),
            "product": link(&format!("/products/{}?country={country}", s.product_id)),
            "sku": link(&format!(
                "/products/{}/skus/{}?country={country}",
                s.product_id, s.sku_id
            )),
        },
        "attributes": {"etag": etag(s), "objectType": "Subscription"},
    })
}

async fn subscriptions(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let ctx = Ctx::new(&headers);
    let state = sim.state();
    if let Err(r) = authorize(&state, &headers, &ctx) {
        return *r;
    }
    let Some((_, c)) = find_customer(&state, &id) else {
        return customer_not_found(&ctx, &id);
    };
    let now = Utc::now();
    // §3.3: no paging, the whole list.
    let items: Vec<Value> = c
        .subscriptions
        .iter()
        .map(|s| subscription_json(c, s, now))
        .collect();
    ctx.ok(&json!({
        "totalCount": items.len(),
        "items": items,
        "links": {"self": link(&format!("/customers/{}/subscriptions", c.tenant_id))},
        "attributes": {"objectType": "Collection"},
    }))
}

async fn subscription(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Path((id, sub)): Path<(String, String)>,
) -> Response {
    let ctx = Ctx::new(&headers);
    let state = sim.state();
    if let Err(r) = authorize(&state, &headers, &ctx) {
        return *r;
    }
    let Some((_, c)) = find_customer(&state, &id) else {
        return customer_not_found(&ctx, &id);
    };
    match c
        .subscriptions
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(&sub))
    {
        Some(s) => ctx.ok(&subscription_json(c, s, Utc::now())),
        None => subscription_not_found(&ctx, &sub),
    }
}

/// The start of the subscription's current term: the latest of its creation, its effective
/// start and its commitment end minus one term (the last renewal).
fn term_start(s: &MsSubscription) -> Option<DateTime<Utc>> {
    let months = match s.term_duration.to_ascii_uppercase().as_str() {
        "P1M" => Some(1),
        "P1Y" => Some(12),
        "P3Y" => Some(36),
        _ => None,
    };
    let renewal = match (s.commitment_end_date, months) {
        (Some(end), Some(m)) => end.checked_sub_months(Months::new(m)),
        _ => None,
    };
    [s.creation_date, s.effective_start_date, renewal]
        .into_iter()
        .flatten()
        .max()
}

/// How many seats can be removed now: any number (down to 1) within 168 h of the term's
/// start; otherwise only the seats added in the last 168 h. None when none can.
fn reducible(s: &MsSubscription, now: DateTime<Utc>) -> Option<u32> {
    let window = chrono::Duration::hours(CANCEL_WINDOW_HOURS);
    if term_start(s).is_some_and(|t| t <= now && now - t <= window) {
        return (s.quantity > 1).then(|| s.quantity - 1);
    }
    let recent: u32 = s
        .seat_additions
        .iter()
        .filter(|a| a.added.is_some_and(|t| t <= now && now - t <= window))
        .map(|a| a.quantity)
        .sum();
    let recent = recent.min(s.quantity.saturating_sub(1));
    (recent > 0).then_some(recent)
}

/// Remove `n` seats from the seat additions, newest first (a reduction cancels recent
/// additions first).
fn consume_additions(s: &mut MsSubscription, mut n: u32) {
    s.seat_additions.sort_by_key(|a| a.added);
    while n > 0 {
        let Some(last) = s.seat_additions.last_mut() else {
            break;
        };
        if last.quantity > n {
            last.quantity -= n;
            n = 0;
        } else {
            n -= last.quantity;
            s.seat_additions.pop();
        }
    }
}

async fn patch_subscription(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, sub)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let ctx = Ctx::new(&headers);
    let mut state = sim.state();
    if let Err(r) = authorize(&state, &headers, &ctx) {
        return *r;
    }
    let Some((ci, _)) = find_customer(&state, &id) else {
        return customer_not_found(&ctx, &id);
    };
    let Some(si) = state.world.customers[ci]
        .subscriptions
        .iter()
        .position(|s| s.id.eq_ignore_ascii_case(&sub))
    else {
        return subscription_not_found(&ctx, &sub);
    };
    // §3.1: MS-RequestId makes a retried PATCH idempotent: the first result comes back and
    // nothing is applied twice.
    let idem_key = format!("{}|{}", ctx.request_id, uri.path().to_ascii_lowercase());
    if ctx.client_request_id
        && let Some((_, v)) = state.partnercenter.patches.get(&idem_key)
    {
        let v = v.clone();
        state.partnercenter.idempotent_replays += 1;
        return ctx.ok(&v);
    }
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return ctx.bad_request(
                "The request body is not a JSON subscription; send the subscription with the new quantity.",
            );
        }
    };
    let Some(new_q) = patch
        .get("quantity")
        .and_then(Value::as_i64)
        .filter(|q| *q >= 1)
        .and_then(|q| u32::try_from(q).ok())
    else {
        return ctx
            .bad_request("The subscription's quantity must be a whole number of at least 1.");
    };
    let now = Utc::now();
    let s = &mut state.world.customers[ci].subscriptions[si];
    let status = if s.status.is_empty() {
        "active".to_string()
    } else {
        s.status.to_ascii_lowercase()
    };
    if status != "active" {
        return ctx.bad_request(&format!(
            "Subscription {} is {status}; only an active subscription's quantity can be changed.",
            s.id
        ));
    }
    let old_q = s.quantity;
    if new_q > old_q {
        s.seat_additions.push(SeatAddition {
            quantity: new_q - old_q,
            added: Some(now),
        });
        s.quantity = new_q;
    } else if new_q < old_q {
        let cut = old_q - new_q;
        let allowed = reducible(s, now).unwrap_or(0);
        if cut > allowed {
            let start = term_start(s)
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "an unknown date".into());
            return ctx.bad_request(&format!(
                "The quantity of subscription {} cannot go from {old_q} to {new_q}: seats can be removed only within 7 days (168 hours) of purchase or renewal (this term started {start}), or by cancelling seats added in the last 7 days ({allowed} can be removed now).",
                s.id
            ));
        }
        consume_additions(s, cut);
        s.quantity = new_q;
    }
    let c = &state.world.customers[ci];
    let result = subscription_json(c, &c.subscriptions[si], now);
    if new_q != old_q {
        state.partnercenter.quantity_changes_applied += 1;
    }
    if ctx.client_request_id {
        state
            .partnercenter
            .patches
            .insert(idem_key, (Instant::now(), result.clone()));
    }
    state.partnercenter.prune();
    ctx.ok(&result)
}

// ---------------------------------------------------------------------------------------------
// Profiles (§3.4)

async fn mpn_profile(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let ctx = Ctx::new(&headers);
    let state = sim.state();
    if let Err(r) = authorize(&state, &headers, &ctx) {
        return *r;
    }
    let msp = &state.world.msp;
    let asked = q
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("mpnId"))
        .map(|(_, v)| v.trim().to_string());
    if let Some(id) = &asked
        && (id != &msp.mpn_id || msp.mpn_id.is_empty())
    {
        // §3.4: the exact 404 body.
        return ctx.respond(
                StatusCode::NOT_FOUND,
                &json!({"code": 3000, "description": format!("Partner Organization with partner_id {id} could not be found"), "data": [], "source": "PartnerFD"}),
            );
    }
    let self_uri = match &asked {
        Some(id) => format!("/profiles/mpn?mpnId={id}"),
        None => "/profiles/mpn".into(),
    };
    ctx.ok(&json!({
        "partnerName": msp.partner_name,
        "mpnId": msp.mpn_id,
        "profileType": "MpnProfile",
        "links": {"self": link(&self_uri)},
        "attributes": {"objectType": "MpnProfile"},
    }))
}

/// `GET /profiles/organization` (§3.4, SDK): the partner's organization profile.
async fn organization_profile(AxState(sim): AxState<Sim>, headers: HeaderMap) -> Response {
    let ctx = Ctx::new(&headers);
    let state = sim.state();
    if let Err(r) = authorize(&state, &headers, &ctx) {
        return *r;
    }
    let msp = &state.world.msp;
    let domain = msp
        .verified_domains
        .iter()
        .find(|d| d.is_default)
        .or_else(|| msp.verified_domains.first())
        .map(|d| d.name.clone())
        .unwrap_or_default();
    ctx.ok(&json!({
        "id": msp.tenant_id,
        "companyName": if msp.partner_name.is_empty() { &msp.display_name } else { &msp.partner_name },
        "tenantId": msp.tenant_id,
        "domain": domain,
        "defaultAddress": {"country": msp.country},
        "email": null,
        "profileType": "OrganizationProfile",
        "links": {"self": link("/profiles/organization")},
        "attributes": {"objectType": "OrganizationProfile"},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(quantity: u32, created_days_ago: i64, additions: &[(u32, i64)]) -> MsSubscription {
        let now = Utc::now();
        let created = now - chrono::Duration::days(created_days_ago);
        MsSubscription {
            id: "s".into(),
            quantity,
            status: "active".into(),
            term_duration: "P1Y".into(),
            creation_date: Some(created),
            effective_start_date: Some(created),
            commitment_end_date: created.checked_add_months(Months::new(12)),
            seat_additions: additions
                .iter()
                .map(|(q, hours)| SeatAddition {
                    quantity: *q,
                    added: Some(now - chrono::Duration::hours(*hours)),
                })
                .collect(),
            ..MsSubscription::default()
        }
    }

    #[test]
    fn reductions_follow_the_168_hour_windows() {
        let now = Utc::now();
        assert_eq!(reducible(&sub(10, 2, &[]), now), Some(9), "new purchase");
        assert_eq!(reducible(&sub(10, 60, &[]), now), None, "mid-term");
        assert_eq!(
            reducible(&sub(10, 60, &[(3, 24), (2, 200)]), now),
            Some(3),
            "only the recent addition"
        );
        let mut s = sub(10, 60, &[(2, 200), (3, 24)]);
        consume_additions(&mut s, 2);
        assert_eq!(s.seat_additions.iter().map(|a| a.quantity).sum::<u32>(), 3);
        assert_eq!(s.seat_additions.last().map(|a| a.quantity), Some(1));
    }

    #[test]
    fn renewals_reopen_the_window() {
        let now = Utc::now();
        // Created 367 days ago, renewed a day or two ago: the new term started recently.
        let mut s = sub(5, 367, &[]);
        s.commitment_end_date =
            (now - chrono::Duration::days(1)).checked_add_months(Months::new(12));
        assert_eq!(reducible(&s, now), Some(4));
    }

    #[test]
    fn customer_filters_parse() {
        assert_eq!(
            parse_customer_filter(
                r#"{"Field":"CompanyName","Value":"Cont","Operator":"starts_with"}"#
            ),
            Ok(CustomerFilter::CompanyName("Cont".into()))
        );
        assert!(
            parse_customer_filter(r#"{"Field":"Name","Value":"x","Operator":"starts_with"}"#)
                .is_err()
        );
        assert!(parse_customer_filter("nope").is_err());
    }
}
