//! Microsoft Graph v1.0 client (reference/external-apis.md §2): the organization, users (every
//! page via `@odata.nextLink`), subscribed SKUs and directory subscriptions of one tenant.
//! A client for a customer tenant is made with [`GraphClient::for_tenant`] and shares this
//! client's limits, statistics and connection pool.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use super::error::{Api, ApiError, VendorError, clean_text};
use super::http::{
    HttpCore, Request, Response, RetryPolicy, StatsSnapshot, TokenSource, decode_json, endpoint,
};
use super::limit::Limits;

/// `$top` bounds for `/users` (§2.2: 1..999; 1000 gives 400 "Invalid page size specified").
pub const MAX_USERS_PAGE: u32 = 999;

/// The user properties cspsync reads. `accountEnabled`, `assignedLicenses` and `userType` are
/// not default properties, so they must be named in `$select` (§2.2).
pub const USER_FIELDS: [&str; 8] = [
    "id",
    "displayName",
    "userPrincipalName",
    "mail",
    "accountEnabled",
    "userType",
    "assignedLicenses",
    "jobTitle",
];

/// The limiter key of the signed-in (MSP) tenant's client.
pub const HOME_KEY: &str = "home";

/// Serde helpers shared by the Microsoft clients (Graph and Partner Center).
pub(crate) mod wire {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    use serde::{Deserialize, Deserializer};

    /// `null` where a list or object is expected reads as its default.
    pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Default + Deserialize<'de>,
    {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }

    /// An ISO 8601 date-time: RFC 3339, or without an offset (read as UTC), or a bare date;
    /// `null` is `None`. Anything else is a data error (a typed Malformed error upstream).
    pub fn flex_datetime<'de, D>(d: D) -> Result<Option<DateTime<Utc>>, D::Error>
    where
        D: Deserializer<'de>,
    {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        parse_datetime(s).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{}` is not a date-time",
                s.chars().take(40).collect::<String>()
            ))
        })
    }

    pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(t.with_timezone(&Utc));
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
            return Some(t.and_utc());
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
    }
}

/// `GET /organization` item (§2.1). With only `User.Read`, fields other than `id`,
/// `displayName` and `verifiedDomains` are null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// Equals the tenant id (`tid`).
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub tenant_type: Option<String>,
    #[serde(default)]
    pub country_letter_code: Option<String>,
    #[serde(
        default,
        deserialize_with = "wire::flex_datetime",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_date_time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub verified_domains: Vec<VerifiedDomain>,
}

impl Organization {
    /// The default verified domain, else the initial (`*.onmicrosoft.com`) one.
    pub fn default_domain(&self) -> Option<&str> {
        self.verified_domains
            .iter()
            .find(|d| d.is_default)
            .or_else(|| self.verified_domains.iter().find(|d| d.is_initial))
            .map(|d| d.name.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedDomain {
    pub name: String,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub is_default: bool,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub is_initial: bool,
    #[serde(default)]
    pub capabilities: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `GET /users` item (§2.2); properties not selected (or null) are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub account_enabled: Option<bool>,
    /// `Member` or `Guest`.
    #[serde(default)]
    pub user_type: Option<String>,
    /// `None` when not selected; `Some(vec![])` for a user without licences.
    #[serde(default)]
    pub assigned_licenses: Option<Vec<AssignedLicense>>,
    #[serde(default)]
    pub job_title: Option<String>,
}

/// `{disabledPlans, skuId}` (§2.2, standard Graph shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedLicense {
    pub sku_id: String,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub disabled_plans: Vec<String>,
}

/// `GET /subscribedSkus` item (§2.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribedSku {
    /// `{tenantId}_{skuId}`.
    #[serde(default)]
    pub id: Option<String>,
    pub sku_id: String,
    pub sku_part_number: String,
    #[serde(default)]
    pub account_name: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
    /// `User` or `Company`.
    #[serde(default)]
    pub applies_to: Option<String>,
    /// `Enabled`, `Warning`, `Suspended`, `Deleted`, `LockedOut`.
    #[serde(default)]
    pub capability_status: Option<String>,
    /// Assigned seats.
    #[serde(default, deserialize_with = "wire::null_default")]
    pub consumed_units: i64,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub prepaid_units: PrepaidUnits,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub service_plans: Vec<ServicePlan>,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub subscription_ids: Vec<String>,
}

impl SubscribedSku {
    /// Licences not yet assigned: `prepaidUnits.enabled - consumedUnits` (§2.3).
    pub fn available(&self) -> i64 {
        self.prepaid_units
            .enabled
            .saturating_sub(self.consumed_units)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepaidUnits {
    #[serde(default, deserialize_with = "wire::null_default")]
    pub enabled: i64,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub locked_out: i64,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub suspended: i64,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub warning: i64,
}

/// A service plan of a SKU (§2.3) or a companySubscription's `serviceStatus` entry (§2.3a).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlan {
    #[serde(default)]
    pub service_plan_id: Option<String>,
    #[serde(default)]
    pub service_plan_name: Option<String>,
    #[serde(default)]
    pub provisioning_status: Option<String>,
    #[serde(default)]
    pub applies_to: Option<String>,
}

/// `GET /tenantRelationships/delegatedAdminRelationships` item (§2.6): the MSP's GDAP
/// relationship with one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegatedAdminRelationship {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// ISO 8601 duration, e.g. `P730D`.
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub customer: Option<GdapCustomer>,
    /// `active`, `approvalPending`, `terminated`, `expired`, ...
    #[serde(default)]
    pub status: Option<String>,
    #[serde(
        default,
        deserialize_with = "wire::flex_datetime",
        skip_serializing_if = "Option::is_none"
    )]
    pub end_date_time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub access_details: Option<GdapAccessDetails>,
}

impl DelegatedAdminRelationship {
    pub fn is_active(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("active"))
    }

    pub fn tenant_id(&self) -> Option<&str> {
        self.customer.as_ref().and_then(|c| c.tenant_id.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GdapCustomer {
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GdapAccessDetails {
    #[serde(default, deserialize_with = "wire::null_default")]
    pub unified_roles: Vec<GdapRole>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GdapRole {
    #[serde(default)]
    pub role_definition_id: Option<String>,
}

/// `GET /directory/subscriptions` item (companySubscription, §2.3a).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanySubscription {
    pub id: String,
    /// The Partner Center subscription id: links a PC subscription to a SKU in the tenant.
    #[serde(default)]
    pub commerce_subscription_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "wire::flex_datetime",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_date_time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub is_trial: Option<bool>,
    #[serde(
        default,
        deserialize_with = "wire::flex_datetime",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_lifecycle_date_time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub owner_id: Option<String>,
    /// The partner tenant that created it.
    #[serde(default)]
    pub owner_tenant_id: Option<String>,
    #[serde(default)]
    pub owner_type: Option<String>,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub service_status: Vec<ServicePlan>,
    #[serde(default)]
    pub sku_id: Option<String>,
    #[serde(default)]
    pub sku_part_number: Option<String>,
    /// `Enabled`, `Deleted`, `Suspended`, `Warning`, `LockedOut`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub total_licenses: Option<i64>,
}

/// An OData collection page (§2): `value` plus an optional `@odata.nextLink`.
#[derive(Debug, Deserialize)]
struct Collection<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

/// Microsoft Graph for one tenant.
#[derive(Debug, Clone)]
pub struct GraphClient {
    core: HttpCore,
    base: Url,
    key: String,
}

impl GraphClient {
    /// `base` is `Endpoints.graph` (`https://graph.microsoft.com/v1.0`).
    pub fn new(base: Url, http: reqwest::Client, token: Arc<dyn TokenSource>) -> Self {
        GraphClient {
            core: HttpCore::new(Api::Graph, http, Self::limits(), parse_error).with_token(token),
            base,
            key: HOME_KEY.to_string(),
        }
    }

    /// Graph documents no concurrency cap; its limits are resource units per app+tenant
    /// (§2.5: 3,500–8,000 RU per 10 s, `GET users` costs 2 or less). So cspsync picks its own
    /// bounds: 32 requests in flight overall and 8 per tenant, well inside those budgets; the
    /// 429 + Retry-After path covers the rest.
    pub fn limits() -> Limits {
        Limits {
            global_concurrency: 32,
            per_key_concurrency: Some(8),
            per_key_rate: None,
        }
    }

    /// The same client for another tenant (a customer under GDAP, §3.7) with that tenant's
    /// token source; limits are counted per tenant, statistics shared.
    pub fn for_tenant(&self, tenant_id: &str, token: Arc<dyn TokenSource>) -> GraphClient {
        GraphClient {
            core: self.core.with_other_token(token),
            base: self.base.clone(),
            key: tenant_id.to_ascii_lowercase(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.core = self.core.with_retry(retry);
        self
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.core.stats()
    }

    fn get(&self, url: Url, op: &str) -> Request {
        Request::get(url)
            .header("accept", "application/json")
            .key(self.key.clone())
            .operation(op.to_string())
    }

    /// `GET /organization` (§2.1): the one organization of the tenant.
    pub async fn organization(&self) -> Result<Organization, ApiError> {
        let op = "GET /organization";
        let resp = self
            .core
            .send(self.get(endpoint(&self.base, "organization"), op))
            .await?;
        parse_organization(&resp.headers, &resp.body).map_err(|e| e.with_operation(op))
    }

    /// Every user (§2.2), following `@odata.nextLink` until it is absent. `select` names the
    /// properties (empty: [`USER_FIELDS`]; `id` is always added); `page_size` is `$top`, 1..999.
    pub async fn users(&self, select: &[&str], page_size: u32) -> Result<Vec<User>, ApiError> {
        self.users_pager(select, page_size)?.collect_all().await
    }

    /// The users a page at a time, for progress.
    pub fn users_pager(&self, select: &[&str], page_size: u32) -> Result<UsersPager, ApiError> {
        if !(1..=MAX_USERS_PAGE).contains(&page_size) {
            return Err(ApiError::config(
                Api::Graph,
                format!(
                    "cannot ask for {page_size} users per page: Microsoft Graph accepts 1 to {MAX_USERS_PAGE}"
                ),
            )
            .with_operation("GET /users"));
        }
        let mut fields: Vec<&str> = if select.is_empty() {
            USER_FIELDS.to_vec()
        } else {
            select.to_vec()
        };
        if !fields.contains(&"id") {
            fields.insert(0, "id");
        }
        if let Some(bad) = fields
            .iter()
            .find(|f| f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(ApiError::config(
                Api::Graph,
                format!("`{}` is not a user property name", clean_text(bad, 40)),
            )
            .with_operation("GET /users"));
        }
        // §2.2: `$select` and `$top` written literally as in the documented request.
        let mut url = endpoint(&self.base, "users");
        url.set_query(Some(&format!(
            "$select={}&$top={page_size}",
            fields.join(",")
        )));
        Ok(Pager::new(self.clone(), url, "GET /users"))
    }

    /// `GET /subscribedSkus` (§2.3): not paged in practice, but a nextLink is followed.
    pub async fn subscribed_skus(&self) -> Result<Vec<SubscribedSku>, ApiError> {
        Pager::<SubscribedSku>::new(
            self.clone(),
            endpoint(&self.base, "subscribedSkus"),
            "GET /subscribedSkus",
        )
        .collect_all()
        .await
    }

    /// `GET /tenantRelationships/delegatedAdminRelationships` (§2.6) of the MSP tenant, every
    /// page (`$top` at its maximum, 300).
    pub async fn gdap_relationships(&self) -> Result<Vec<DelegatedAdminRelationship>, ApiError> {
        let mut url = endpoint(
            &self.base,
            "tenantRelationships/delegatedAdminRelationships",
        );
        url.query_pairs_mut().append_pair("$top", "300");
        Pager::<DelegatedAdminRelationship>::new(
            self.clone(),
            url,
            "GET /tenantRelationships/delegatedAdminRelationships",
        )
        .collect_all()
        .await
    }

    /// `GET /directory/subscriptions` (§2.3a), following `@odata.nextLink` if present.
    pub async fn directory_subscriptions(&self) -> Result<Vec<CompanySubscription>, ApiError> {
        Pager::<CompanySubscription>::new(
            self.clone(),
            endpoint(&self.base, "directory/subscriptions"),
            "GET /directory/subscriptions",
        )
        .collect_all()
        .await
    }
}

/// Pages of an OData collection, fetched on demand (§2.2 paging).
#[derive(Debug)]
pub struct Pager<T> {
    client: GraphClient,
    next: Option<Url>,
    seen: HashSet<String>,
    operation: &'static str,
    pages: usize,
    _t: PhantomData<fn() -> T>,
}

/// The users, a page at a time.
pub type UsersPager = Pager<User>;

impl<T: DeserializeOwned> Pager<T> {
    fn new(client: GraphClient, first: Url, operation: &'static str) -> Self {
        Pager {
            client,
            next: Some(first),
            seen: HashSet::new(),
            operation,
            pages: 0,
            _t: PhantomData,
        }
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// The next page (possibly empty, §2.2), or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, ApiError> {
        let Some(url) = self.next.take() else {
            return Ok(None);
        };
        self.seen.insert(url.as_str().to_string());
        let resp = self
            .client
            .core
            .send(self.client.get(url.clone(), self.operation))
            .await?;
        let page: Collection<T> = resp.json()?;
        self.pages += 1;
        self.next = match page.next_link {
            Some(link) => Some(self.follow(&url, &link, &resp)?),
            None => None,
        };
        Ok(Some(page.value))
    }

    /// Every remaining item.
    pub async fn collect_all(mut self) -> Result<Vec<T>, ApiError> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// §2.2: follow `@odata.nextLink` verbatim. It must stay on Graph's own origin (the bearer
    /// token goes with it) and must not repeat a page already fetched (a loop).
    fn follow(&self, current: &Url, link: &str, resp: &Response) -> Result<Url, ApiError> {
        let bad = |what: String| {
            ApiError::malformed(Api::Graph, what).with_operation(resp.operation.clone())
        };
        let next = current
            .join(link.trim())
            .map_err(|_| bad("a next-page link that is not a URL".into()))?;
        let base = &self.client.base;
        if next.scheme() != base.scheme()
            || next.host_str() != base.host_str()
            || next.port_or_known_default() != base.port_or_known_default()
        {
            return Err(bad(format!(
                "a next-page link to another host ({}); cspsync does not send its token there",
                clean_text(next.host_str().unwrap_or("?"), 80)
            )));
        }
        if self.seen.contains(next.as_str()) {
            return Err(bad(
                "a next-page link to a page already fetched (the paging would never end)".into(),
            ));
        }
        Ok(next)
    }
}

fn parse_organization(headers: &HeaderMap, body: &[u8]) -> Result<Organization, ApiError> {
    let c: Collection<Organization> = decode_json(Api::Graph, "GET /organization", headers, body)?;
    // §2.1: the collection always has one element.
    c.value.into_iter().next().ok_or_else(|| {
        ApiError::malformed(
            Api::Graph,
            "an empty organization list for the signed-in tenant",
        )
    })
}

/// Parse Graph's error body (§2.4), including the 429 bodies of §2.5:
/// `{"error":{"code","message","innerError":{"request-id","date","client-request-id"}}}`.
/// The request id goes into the details (what Microsoft support asks for).
pub fn parse_error(_status: u16, headers: &HeaderMap, body: &[u8]) -> VendorError {
    let mut out = VendorError::default();
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let err = v.as_ref().and_then(|v| v.get("error"));
    let str_of = |v: Option<&serde_json::Value>, k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(|s| s.as_str())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    match err {
        Some(serde_json::Value::Object(_)) => {
            out.code = str_of(err, "code");
            out.message = str_of(err, "message");
            let inner = err.and_then(|e| e.get("innerError").or_else(|| e.get("innererror")));
            if let Some(id) = str_of(inner, "request-id") {
                out.details
                    .push(format!("request id {}", clean_text(&id, 60)));
            }
        }
        // Some identity endpoints answer in the OAuth shape ({"error":"...", ...}).
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
            out.code = Some(s.trim().to_string());
            out.message = str_of(v.as_ref(), "error_description");
        }
        _ => {}
    }
    if out.details.is_empty()
        && let Some(id) = headers.get("request-id").and_then(|h| h.to_str().ok())
    {
        out.details
            .push(format!("request id {}", clean_text(id, 60)));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::api::error::ErrorKind;
    use crate::api::http::{StaticToken, error_from_response};
    use proptest::prelude::*;

    fn h() -> HeaderMap {
        HeaderMap::new()
    }

    #[test]
    fn error_bodies() {
        let b = br#"{"error":{"code":"InvalidAuthenticationToken","message":"Access token has expired or is not yet valid.","innerError":{"request-id":"5e3c1f2a-0000","date":"2025-01-01T00:00:00","client-request-id":"c"}}}"#;
        let v = parse_error(401, &h(), b);
        assert_eq!(v.code.as_deref(), Some("InvalidAuthenticationToken"));
        assert_eq!(
            v.message.as_deref(),
            Some("Access token has expired or is not yet valid.")
        );
        assert_eq!(v.details, vec!["request id 5e3c1f2a-0000"]);
        let e = error_from_response(Api::Graph, parse_error, 401, &h(), b, "GET /users");
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(
            e.to_string(),
            "Microsoft Graph said: Access token has expired or is not yet valid. (HTTP 401, InvalidAuthenticationToken) [GET /users]; request id 5e3c1f2a-0000"
        );

        // 429 bodies (§2.5).
        let b = br#"{"error":{"code":"TooManyRequests","message":"Too many requests.","innerError":{}}}"#;
        let e = error_from_response(Api::Graph, parse_error, 429, &h(), b, "GET /users");
        assert_eq!(e.code.as_deref(), Some("TooManyRequests"));
        assert!(matches!(e.kind, ErrorKind::RateLimited { .. }));
        let b = br#"{"error":{"code":"activityLimitReached","message":"The request has been throttled"}}"#;
        assert_eq!(
            parse_error(429, &h(), b).code.as_deref(),
            Some("activityLimitReached")
        );

        // Page size error from §2.2.
        let b = br#"{"error":{"code":"Request_BadRequest","message":"Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."}}"#;
        let e = error_from_response(Api::Graph, parse_error, 400, &h(), b, "GET /users");
        assert_eq!(e.kind, ErrorKind::Rejected);
        assert!(e.message.contains("Invalid page size"));

        // OAuth-shaped.
        let v = parse_error(
            400,
            &h(),
            br#"{"error":"invalid_request","error_description":"bad"}"#,
        );
        assert_eq!(v.code.as_deref(), Some("invalid_request"));
        assert_eq!(v.message.as_deref(), Some("bad"));

        // HTML, truncated, wrong types, empty: nothing invented, fallback sentence used.
        for b in [
            &b"<html><head><title>502 Bad Gateway</title></head></html>"[..],
            b"{\"error\":{\"code\":\"Inv",
            br#"{"error":{"code":5,"message":["x"],"innerError":"y"}}"#,
            br#"{"error":null}"#,
            br#"{"error":[]}"#,
            b"",
            b"null",
        ] {
            let v = parse_error(400, &h(), b);
            assert_eq!(v.code, None, "{}", String::from_utf8_lossy(b));
            assert_eq!(v.message, None);
        }
        let e = error_from_response(
            Api::Graph,
            parse_error,
            400,
            &h(),
            b"<html>proxy login</html>",
            "GET /users",
        );
        assert!(e.message.contains("HTML page"), "{e}");
    }

    #[test]
    fn spec_examples_parse() {
        let org = br#"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#organization",
 "value":[{"id":"84841066-274d-4ec0-a5c1-276be684bdd3","displayName":"Contoso","tenantType":"AAD",
   "countryLetterCode":"AU","createdDateTime":"2021-08-02T10:30:06Z",
   "verifiedDomains":[{"capabilities":"Email, OfficeCommunicationsOnline","isDefault":true,
      "isInitial":true,"name":"contoso.onmicrosoft.com","type":"Managed"}]}]}"#;
        let o = parse_organization(&h(), org).unwrap();
        assert_eq!(o.id, "84841066-274d-4ec0-a5c1-276be684bdd3");
        assert_eq!(o.country_letter_code.as_deref(), Some("AU"));
        assert_eq!(o.default_domain(), Some("contoso.onmicrosoft.com"));
        assert!(o.created_date_time.is_some());
        // User.Read only: nulls everywhere but id/displayName/verifiedDomains.
        let o = parse_organization(
            &h(),
            br#"{"value":[{"id":"x","displayName":"C","countryLetterCode":null,"createdDateTime":null,"verifiedDomains":[]}]}"#,
        )
        .unwrap();
        assert_eq!(o.country_letter_code, None);
        let e = parse_organization(&h(), br#"{"value":[]}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);

        let skus = br#"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#subscribedSkus",
 "value":[{"accountName":"Contoso","accountId":"f97aeefc-af85-414d-8ae4-b457f90efc40","appliesTo":"User",
   "capabilityStatus":"Enabled","consumedUnits":14,"id":"48a80680-7326-48cd-9935-b556b81d3a4e_c7df2760-2c81-4ef7-b578-5b5392b571df",
   "prepaidUnits":{"enabled":25,"lockedOut":0,"suspended":0,"warning":0},
   "servicePlans":[{"servicePlanId":"8c098270-9dd4-4350-9b30-ba4703f3b36b","servicePlanName":"ADALLOM_S_O365","provisioningStatus":"Success","appliesTo":"Company"}],
   "skuId":"c7df2760-2c81-4ef7-b578-5b5392b571df","skuPartNumber":"ENTERPRISEPREMIUM",
   "subscriptionIds":["43d26afe-cb98-48b9-acc4-ae3ef2ac6c51"]}]}"#;
        let c: Collection<SubscribedSku> = decode_json(Api::Graph, "", &h(), skus).unwrap();
        assert_eq!(c.value[0].available(), 11);
        assert_eq!(c.value[0].prepaid_units.enabled, 25);
        assert_eq!(c.value[0].subscription_ids.len(), 1);

        let subs = br#"{"value":[{"id":"f9c1ea2d-2c6e-4717-8c3b-7130812d70ba","commerceSubscriptionId":"83ef9d05-4169-4ef9-9657-0e86b1eab1de",
  "createdDateTime":"2025-07-01T03:14:00Z","isTrial":false,"nextLifecycleDateTime":"2026-06-30T00:00:00Z",
  "ownerTenantId":"6f3c1f5e-8d2a-4b51-9a8e-1c2b3d4e5f60","skuId":"cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
  "skuPartNumber":"SPB","status":"Enabled","totalLicenses":25}]}"#;
        let c: Collection<CompanySubscription> = decode_json(Api::Graph, "", &h(), subs).unwrap();
        assert_eq!(
            c.value[0].commerce_subscription_id.as_deref(),
            Some("83ef9d05-4169-4ef9-9657-0e86b1eab1de")
        );
        assert_eq!(c.value[0].total_licenses, Some(25));

        let users = br#"{"@odata.nextLink":"https://graph.microsoft.com/v1.0/users?$skiptoken=x",
 "value":[{"id":"4562bcc8","displayName":"MOD Administrator","userPrincipalName":"admin@contoso.com",
   "accountEnabled":true,"assignedLicenses":[{"disabledPlans":[],"skuId":"c7df2760"}]},
  {"id":"6ea91a8d","displayName":"Conf Room Adams","userPrincipalName":"Adams@contoso.com",
   "accountEnabled":true,"assignedLicenses":[],"mail":null}]}"#;
        let c: Collection<User> = decode_json(Api::Graph, "", &h(), users).unwrap();
        assert_eq!(c.value.len(), 2);
        assert_eq!(c.value[1].assigned_licenses, Some(vec![]));
        assert_eq!(c.value[1].job_title, None);
        assert!(c.next_link.unwrap().contains("$skiptoken"));
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        for b in [
            &br#"{"value":[{"displayName":"no id"}]}"#[..],
            br#"{"value":[{"id":5}]}"#,
            br#"{"value":{"id":"x"}}"#,
            br#"{"values":[]}"#,
            br#"{"value":[{"id":"x","accountEnabled":"yes"}]}"#,
            b"<html>",
            b"{\"value\":[",
        ] {
            let e = decode_json::<Collection<User>>(Api::Graph, "GET /users", &h(), b).unwrap_err();
            assert_eq!(
                e.kind,
                ErrorKind::Malformed,
                "{}",
                String::from_utf8_lossy(b)
            );
        }
        let e = decode_json::<Collection<CompanySubscription>>(
            Api::Graph,
            "",
            &h(),
            br#"{"value":[{"id":"x","createdDateTime":"yesterday"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(e.message.contains("not a date-time"), "{e}");
    }

    #[test]
    fn page_size_and_select_are_validated() {
        let g = GraphClient::new(
            Url::parse("https://graph.microsoft.com/v1.0").unwrap(),
            reqwest::Client::new(),
            Arc::new(StaticToken("t".into())),
        );
        for bad in [0, 1000] {
            let e = g.users_pager(&[], bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Config);
            assert!(e.message.contains("1 to 999"), "{e}");
        }
        let e = g.users_pager(&["id&$filter=x"], 10).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config);
        let p = g.users_pager(&["displayName"], 999).unwrap();
        assert_eq!(
            p.next.as_ref().unwrap().as_str(),
            "https://graph.microsoft.com/v1.0/users?$select=id,displayName&$top=999"
        );
        let p = g.users_pager(&[], 5).unwrap();
        assert!(
            p.next
                .as_ref()
                .unwrap()
                .as_str()
                .ends_with("users?$select=id,displayName,userPrincipalName,mail,accountEnabled,userType,assignedLicenses,jobTitle&$top=5")
        );
    }

    #[test]
    fn next_links_stay_on_graph() {
        let g = GraphClient::new(
            Url::parse("https://graph.microsoft.com/v1.0").unwrap(),
            reqwest::Client::new(),
            Arc::new(StaticToken("t".into())),
        );
        let cur = Url::parse("https://graph.microsoft.com/v1.0/users?$top=2").unwrap();
        let resp = Response {
            api: Api::Graph,
            operation: "GET /users".into(),
            status: reqwest::StatusCode::OK,
            headers: h(),
            body: bytes::Bytes::new(),
        };
        let mut p = UsersPager::new(g, cur.clone(), "GET /users");
        let ok = p
            .follow(
                &cur,
                "https://graph.microsoft.com/v1.0/users?$top=2&$skiptoken=RFNwdAIAAQAAAD8",
                &resp,
            )
            .unwrap();
        assert!(ok.as_str().ends_with("$skiptoken=RFNwdAIAAQAAAD8"));
        let e = p
            .follow(&cur, "https://evil.example/v1.0/users?$skiptoken=x", &resp)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(e.message.contains("another host"), "{e}");
        p.seen.insert(cur.as_str().to_string());
        let e = p.follow(&cur, cur.as_str(), &resp).unwrap_err();
        assert!(e.message.contains("already fetched"), "{e}");
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        crate::api::json_strategy::json_with(
            &[
                "value",
                "@odata.nextLink",
                "id",
                "error",
                "code",
                "message",
                "innerError",
                "skuId",
                "skuPartNumber",
                "prepaidUnits",
                "consumedUnits",
                "assignedLicenses",
                "verifiedDomains",
                "createdDateTime",
            ],
            &["2025-07-01T03:14:00Z"],
        )
    }

    fn run_all(b: &[u8]) {
        let _ = parse_error(400, &h(), b);
        let _ = parse_error(429, &h(), b);
        let _ = parse_organization(&h(), b);
        let _ = decode_json::<Collection<User>>(Api::Graph, "", &h(), b);
        let _ = decode_json::<Collection<SubscribedSku>>(Api::Graph, "", &h(), b);
        let _ = decode_json::<Collection<CompanySubscription>>(Api::Graph, "", &h(), b);
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(b in prop::collection::vec(any::<u8>(), 0..256)) {
            run_all(&b);
        }

        #[test]
        fn parsers_never_panic_on_json(v in json_value()) {
            run_all(&serde_json::to_vec(&v).unwrap());
            run_all(&serde_json::to_vec(&serde_json::json!({"value": [v.clone()]})).unwrap());
            run_all(&serde_json::to_vec(&serde_json::json!({"error": v})).unwrap());
        }
    }
}
