//! Partner Center REST API client (reference/external-apis.md §3): customers (paged with a
//! continuation token), their subscriptions, quantity changes, and the partner's MPN profile.
//!
//! Headers per §3.1 on every request: `Accept: application/json`, `MS-RequestId` (a new GUID per
//! logical request, the same on its retries, since HttpCore resends the same [`Request`]),
//! `MS-CorrelationId` (one per client), `MS-Contract-Version: v1`, `X-Locale: en-US`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use super::error::{Api, ApiError, VendorError, clean_text};
use super::graph::wire;
use super::http::{HttpCore, Request, Response, RetryPolicy, StatsSnapshot, TokenSource, endpoint};
use super::limit::Limits;

/// The SDK's page-size bounds for `GET /customers?size=` (§3.2: `MAX_PAGE_SIZE = 500`).
pub const MAX_CUSTOMERS_PAGE: u32 = 500;

/// The limiter key of partner-level calls (customer list, profiles); customer calls are keyed
/// by the customer tenant id (§3.6: limits per partner tenant, or partner + customer tenant).
pub const PARTNER_KEY: &str = "partner";

/// `attributes` of every Partner Center resource (§3.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A customer (§3.2). Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    /// The customer tenant id.
    pub id: String,
    #[serde(default)]
    pub commerce_id: Option<String>,
    #[serde(default)]
    pub company_profile: Option<CompanyProfile>,
    /// `none|reseller|advisor|syndication|microsoftSupport`.
    #[serde(default)]
    pub relationship_to_partner: Option<String>,
    /// DAP (§3.7).
    #[serde(default)]
    pub allow_delegated_access: Option<bool>,
    #[serde(default, deserialize_with = "wire::null_default")]
    pub custom_domains: Vec<String>,
    #[serde(default)]
    pub associated_partner_id: Option<String>,
    #[serde(default)]
    pub attributes: Option<Attributes>,
}

impl Customer {
    /// The company name, else the domain, else the tenant id.
    pub fn name(&self) -> &str {
        let p = self.company_profile.as_ref();
        p.and_then(|p| p.company_name.as_deref())
            .filter(|n| !n.trim().is_empty())
            .or_else(|| p.and_then(|p| p.domain.as_deref()))
            .unwrap_or(&self.id)
    }

    pub fn domain(&self) -> Option<&str> {
        self.company_profile
            .as_ref()
            .and_then(|p| p.domain.as_deref())
    }
}

/// `companyProfile` of a customer (§3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyProfile {
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub company_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub address: Option<serde_json::Value>,
}

/// A subscription (§3.3). Fields cspsync does not model are kept in `extra`, so the whole
/// subscription can be sent back unchanged apart from its quantity (the PATCH of §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    /// Legacy: a GUID; NCE: `product:sku:availability` (§3.3, NCE format [UNCONFIRMED]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    /// Seat count.
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_type: Option<String>,
    /// `none, active, pending, suspended, deleted` (newer: `expired`, `disabled`), §3.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_renew_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_type: Option<String>,
    /// `unknown, monthly, annual, none, oneTime` (newer: `triennial`), §3.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_cycle: Option<String>,
    /// ISO 8601: `P1M`, `P1Y`, `P3Y`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_term_duration: Option<String>,
    #[serde(
        default,
        deserialize_with = "wire::flex_datetime",
        skip_serializing_if = "Option::is_none"
    )]
    pub creation_date: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "wire::flex_datetime",
        skip_serializing_if = "Option::is_none"
    )]
    pub effective_start_date: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "wire::flex_datetime",
        skip_serializing_if = "Option::is_none"
    )]
    pub commitment_end_date: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_trial: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_microsoft_product: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_name: Option<String>,
    /// Set for add-ons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// MPN id of the reseller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Attributes>,
    /// Every other field (`links`, `actions`, `suspensionReasons`, ...), sent back as received.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Subscription {
    pub fn is_active(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("active"))
    }

    pub fn etag(&self) -> Option<&str> {
        self.attributes.as_ref().and_then(|a| a.etag.as_deref())
    }
}

/// `GET /profiles/mpn` (§3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MpnProfile {
    pub mpn_id: String,
    #[serde(default)]
    pub partner_name: Option<String>,
    #[serde(default)]
    pub profile_type: Option<String>,
}

/// A collection (§3.1): `{totalCount, items, continuationToken?, links{next?}, attributes}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Collection<T> {
    items: Vec<T>,
    #[serde(default)]
    links: Option<CollectionLinks>,
}

#[derive(Debug, Default, Deserialize)]
struct CollectionLinks {
    #[serde(default)]
    next: Option<Link>,
}

/// `{uri, method, headers:[{key, value}]}` (§3.2).
#[derive(Debug, Deserialize)]
struct Link {
    uri: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default, deserialize_with = "wire::null_default")]
    headers: Vec<LinkHeader>,
}

#[derive(Deserialize)]
struct LinkHeader {
    key: String,
    value: String,
}

impl std::fmt::Debug for LinkHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The continuation token is an opaque credential-like value: not printed.
        write!(f, "LinkHeader({}: [redacted])", self.key)
    }
}

/// The Partner Center client (App+User token, §1.7).
#[derive(Debug, Clone)]
pub struct PartnerCenterClient {
    core: HttpCore,
    base: Url,
    correlation_id: Uuid,
}

impl PartnerCenterClient {
    /// `base` is `Endpoints.partnercenter`, with its `/v1` prefix (§3.1).
    pub fn new(base: Url, http: reqwest::Client, token: Arc<dyn TokenSource>) -> Self {
        PartnerCenterClient {
            core: HttpCore::new(Api::PartnerCenter, http, Self::limits(), parse_error)
                .with_token(token),
            base,
            correlation_id: Uuid::new_v4(),
        }
    }

    /// §3.6: "500 requests per minute per tenant identifier", counted here per customer tenant
    /// (or [`PARTNER_KEY`]); 32 requests in flight overall (our own bound: none is documented).
    pub fn limits() -> Limits {
        Limits {
            global_concurrency: 32,
            per_key_concurrency: None,
            per_key_rate: Some((500, Duration::from_secs(60))),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.core = self.core.with_retry(retry);
        self
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.core.stats()
    }

    /// The `MS-CorrelationId` sent with every request of this client.
    pub fn correlation_id(&self) -> Uuid {
        self.correlation_id
    }

    /// `{base}/{segments...}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut s) = u.path_segments_mut() {
            s.pop_if_empty().extend(segments);
        }
        u
    }

    /// A request with the §3.1 headers; `request_id` is its MS-RequestId.
    fn request(
        &self,
        method: Method,
        url: Url,
        key: &str,
        op: String,
        request_id: Uuid,
    ) -> Request {
        Request::new(method, url)
            .header("accept", "application/json")
            .header("ms-requestid", &request_id.to_string())
            .header("ms-correlationid", &self.correlation_id.to_string())
            .header("ms-contract-version", "v1")
            .header("x-locale", "en-US")
            .key(key)
            .operation(op)
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
        key: &str,
        op: String,
    ) -> Result<T, ApiError> {
        let req = self.request(Method::GET, url, key, op, Uuid::new_v4());
        self.core.send(req).await?.json()
    }

    /// Every customer (§3.2), following `links.next` until it is absent.
    pub async fn customers(&self, page_size: u32) -> Result<Vec<Customer>, ApiError> {
        let mut pager = self.customers_pager(page_size)?;
        let mut all = Vec::new();
        while let Some(page) = pager.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// The customers a page at a time (§3.2), for progress. `page_size` is 1..500.
    pub fn customers_pager(&self, page_size: u32) -> Result<CustomersPager, ApiError> {
        if !(1..=MAX_CUSTOMERS_PAGE).contains(&page_size) {
            return Err(ApiError::config(
                Api::PartnerCenter,
                format!(
                    "cannot ask for {page_size} customers per page: Partner Center accepts 1 to {MAX_CUSTOMERS_PAGE}"
                ),
            )
            .with_operation("GET /customers"));
        }
        let mut url = self.url(&["customers"]);
        url.query_pairs_mut()
            .append_pair("size", &page_size.to_string());
        Ok(CustomersPager {
            client: self.clone(),
            next: Some(NextPage {
                url,
                headers: Vec::new(),
            }),
            seen: HashSet::new(),
            pages: 0,
        })
    }

    /// `GET /customers/{id}` (§3.2).
    pub async fn customer(&self, customer_id: &str) -> Result<Customer, ApiError> {
        let id = non_empty(customer_id, "customer id")?;
        self.get_json(
            self.url(&["customers", id]),
            id,
            format!("GET /customers/{id}"),
        )
        .await
    }

    /// `GET /customers/{id}/subscriptions` (§3.3): the whole list, unpaged.
    pub async fn subscriptions(&self, customer_id: &str) -> Result<Vec<Subscription>, ApiError> {
        let id = non_empty(customer_id, "customer id")?;
        let c: Collection<Subscription> = self
            .get_json(
                self.url(&["customers", id, "subscriptions"]),
                id,
                format!("GET /customers/{id}/subscriptions"),
            )
            .await?;
        Ok(c.items)
    }

    /// `GET /customers/{id}/subscriptions/{subId}`.
    pub async fn subscription(
        &self,
        customer_id: &str,
        subscription_id: &str,
    ) -> Result<Subscription, ApiError> {
        let id = non_empty(customer_id, "customer id")?;
        let sub = non_empty(subscription_id, "subscription id")?;
        self.get_json(
            self.url(&["customers", id, "subscriptions", sub]),
            id,
            format!("GET /customers/{id}/subscriptions/{sub}"),
        )
        .await
    }

    /// Change a subscription's seat count (§3.3): PATCH the whole subscription with the new
    /// `quantity`. `request_id` is sent as MS-RequestId, which Partner Center uses for
    /// idempotency (§3.1: "reuse it on retry"), so the request is retried like a read and a
    /// caller resuming after a crash passes the same id again. Returns the updated
    /// subscription (the sent one, if the answer has no body).
    pub async fn set_subscription_quantity(
        &self,
        customer_id: &str,
        subscription: &Subscription,
        quantity: u32,
        request_id: Uuid,
    ) -> Result<Subscription, ApiError> {
        let id = non_empty(customer_id, "customer id")?;
        let sub_id = non_empty(&subscription.id, "subscription id")?;
        let mut body = subscription.clone();
        body.quantity = quantity;
        let req = self
            .request(
                Method::PATCH,
                self.url(&["customers", id, "subscriptions", sub_id]),
                id,
                format!("PATCH /customers/{id}/subscriptions/{sub_id}"),
                request_id,
            )
            .json(&body)
            .idempotent(true);
        let resp = self.core.send(req).await?;
        if resp.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(body);
        }
        resp.json()
    }

    /// The partner's own MPN profile, or the one with this MPN id (§3.4).
    pub async fn mpn_profile(&self, mpn_id: Option<&str>) -> Result<MpnProfile, ApiError> {
        let mut url = self.url(&["profiles", "mpn"]);
        if let Some(m) = mpn_id {
            url.query_pairs_mut().append_pair("mpnId", m.trim());
        }
        self.get_json(url, PARTNER_KEY, "GET /profiles/mpn".to_string())
            .await
    }

    /// §3.2: `links.next.uri` is relative to the `/v1` base; accept `/customers?...`,
    /// `/v1/customers?...` (and the base's full path, or an absolute URL on the same origin).
    fn resolve_link(&self, uri: &str) -> Option<Url> {
        let uri = uri.trim();
        if uri.starts_with("http://") || uri.starts_with("https://") {
            let u = Url::parse(uri).ok()?;
            let same = u.scheme() == self.base.scheme()
                && u.host_str() == self.base.host_str()
                && u.port_or_known_default() == self.base.port_or_known_default();
            return same.then_some(u);
        }
        let base_path = self.base.path().trim_end_matches('/');
        let last = base_path.rsplit('/').next().unwrap_or("");
        let mut rel = uri;
        for prefix in [base_path.to_string(), format!("/{last}")] {
            if prefix.len() > 1
                && let Some(rest) = rel.strip_prefix(prefix.as_str())
                && (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
            {
                rel = rest;
                break;
            }
        }
        let joined = endpoint(&self.base, rel.trim_start_matches('/'));
        // `endpoint` falls back to the base itself when the join is not a URL.
        (joined != self.base || rel.trim_start_matches('/').is_empty()).then_some(joined)
    }
}

fn non_empty<'a>(s: &'a str, what: &str) -> Result<&'a str, ApiError> {
    let t = s.trim();
    if t.is_empty() {
        Err(ApiError::config(
            Api::PartnerCenter,
            format!("no {what} was given"),
        ))
    } else {
        Ok(t)
    }
}

#[derive(Debug)]
struct NextPage {
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The customers, a page at a time (§3.2).
#[derive(Debug)]
pub struct CustomersPager {
    client: PartnerCenterClient,
    next: Option<NextPage>,
    seen: HashSet<String>,
    pages: usize,
}

impl CustomersPager {
    /// Pages fetched so far.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// The next page, or `None` after the last one (the page without `links.next`).
    pub async fn next_page(&mut self) -> Result<Option<Vec<Customer>>, ApiError> {
        let Some(next) = self.next.take() else {
            return Ok(None);
        };
        let op = "GET /customers";
        let mut req = self.client.request(
            Method::GET,
            next.url,
            PARTNER_KEY,
            op.to_string(),
            Uuid::new_v4(),
        );
        for (k, v) in next.headers {
            req.headers.insert(k, v);
        }
        let resp = self.client.core.send(req).await?;
        let page: Collection<Customer> = resp.json()?;
        self.pages += 1;
        self.next = match page.links.and_then(|l| l.next) {
            Some(link) => Some(self.next_request(link, &resp)?),
            None => None,
        };
        Ok(Some(page.items))
    }

    /// §3.2: GET `links.next.uri`, copying each `links.next.headers` entry (the
    /// MS-ContinuationToken) into the request.
    fn next_request(&mut self, link: Link, resp: &Response) -> Result<NextPage, ApiError> {
        let bad = |what: String| {
            ApiError::malformed(Api::PartnerCenter, what).with_operation(resp.operation.clone())
        };
        if let Some(m) = link.method.as_deref()
            && !m.trim().is_empty()
            && !m.trim().eq_ignore_ascii_case("GET")
        {
            return Err(bad(format!(
                "a next-page link with method {} where GET was expected",
                clean_text(m, 10)
            )));
        }
        let url = self.client.resolve_link(&link.uri).ok_or_else(|| {
            bad(format!(
                "a next-page link cspsync cannot follow (`{}`)",
                clean_text(&link.uri, 80)
            ))
        })?;
        let mut headers = Vec::new();
        let mut fingerprint = url.as_str().to_string();
        for h in link.headers {
            let name = HeaderName::from_bytes(h.key.trim().as_bytes())
                .map_err(|_| bad("a next-page link with an invalid header name".into()))?;
            // Never let a response choose our credentials or routing.
            if matches!(name.as_str(), "authorization" | "host" | "content-length") {
                continue;
            }
            let mut value = HeaderValue::from_str(h.value.trim())
                .map_err(|_| bad(format!("a next-page link with an invalid `{name}` value")))?;
            value.set_sensitive(true);
            fingerprint.push('\n');
            fingerprint.push_str(name.as_str());
            fingerprint.push('=');
            fingerprint.push_str(h.value.trim());
            headers.push((name, value));
        }
        if !self.seen.insert(fingerprint) {
            return Err(bad(
                "the same next-page link twice (the paging would never end)".into(),
            ));
        }
        Ok(NextPage { url, headers })
    }
}

/// Parse Partner Center's error bodies: the ApiFault of §3.5 (`code` a string or an integer,
/// `description`, `data`, `source`) and the different 429 body of §3.6
/// (`{"statusCode":429,"message":"..."}`).
pub fn parse_error(_status: u16, headers: &HeaderMap, body: &[u8]) -> VendorError {
    let mut out = VendorError::default();
    if let Ok(serde_json::Value::Object(v)) = serde_json::from_slice::<serde_json::Value>(body) {
        out.code = match v.get("code").or_else(|| v.get("errorCode")) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                Some(s.trim().to_string())
            }
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        out.message = ["description", "message", "errorMessage"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty());
        if let Some(serde_json::Value::Array(data)) = v.get("data") {
            for d in data.iter().take(5) {
                let line = match d {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                let line = clean_text(&line, 200);
                if !line.is_empty() {
                    out.details.push(line);
                }
            }
        }
    }
    // §3.1 response headers: MS-CV is the server-side trace id support asks for.
    if let Some(cv) = headers.get("ms-cv").and_then(|h| h.to_str().ok()) {
        out.details.push(format!("MS-CV {}", clean_text(cv, 60)));
    }
    out
}

/// Decode a customers page (used by tests and the fuzz harness).
#[cfg(test)]
fn parse_customers_page(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Collection<Customer>, ApiError> {
    super::http::decode_json(Api::PartnerCenter, "GET /customers", headers, body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::api::error::ErrorKind;
    use crate::api::http::{StaticToken, decode_json, error_from_response};
    use proptest::prelude::*;

    fn h() -> HeaderMap {
        HeaderMap::new()
    }

    fn client(base: &str) -> PartnerCenterClient {
        PartnerCenterClient::new(
            Url::parse(base).unwrap(),
            reqwest::Client::new(),
            Arc::new(StaticToken("t".into())),
        )
    }

    const SUBS: &[u8] = br#"{"totalCount":1,"items":[{"id":"83ef9d05-4169-4ef9-9657-0e86b1eab1de","offerId":"CFQ7TTC0LCHC:0002:CFQ7TTC0K5DJ",
  "offerName":"Microsoft 365 Business Premium","friendlyName":"M365 BP","quantity":25,"unitType":"Licenses",
  "creationDate":"2025-07-01T03:14:00Z","effectiveStartDate":"2025-07-01T00:00:00Z","commitmentEndDate":"2026-06-30T00:00:00Z",
  "status":"active","autoRenewEnabled":true,"isTrial":false,"billingType":"license","billingCycle":"monthly",
  "termDuration":"P1Y","renewalTermDuration":"P1Y","contractType":"subscription","orderId":"6183db3d-6318-4e52-877e-25806e4971be",
  "links":{"self":{"uri":"/customers/b44bb1fb-.../subscriptions/83ef9d05-...","method":"GET","headers":[]}},
  "attributes":{"etag":"<etag>","objectType":"Subscription"}}],
 "attributes":{"objectType":"Collection"}}"#;

    #[test]
    fn error_bodies_with_string_int_and_429_shapes() {
        // §3.4's 404 with an integer code.
        let b = br#"{"code":3000,"description":"Partner Organization with partner_id 9999999 could not be found","data":[],"source":"PartnerFD"}"#;
        let e = error_from_response(
            Api::PartnerCenter,
            parse_error,
            404,
            &h(),
            b,
            "GET /profiles/mpn",
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.code.as_deref(), Some("3000"));
        assert!(e.message.contains("could not be found"), "{e}");
        // A string code and data lines.
        let b = br#"{"code":"600039","description":"Quantity is invalid.","data":["quantity must be at least 1",{"field":"quantity"},null],"source":"PartnerFD"}"#;
        let v = parse_error(400, &h(), b);
        assert_eq!(v.code.as_deref(), Some("600039"));
        assert_eq!(v.message.as_deref(), Some("Quantity is invalid."));
        assert_eq!(
            v.details,
            vec!["quantity must be at least 1", r#"{"field":"quantity"}"#]
        );
        // §3.6 429 body.
        let b =
            br#"{"statusCode":429,"message":"Rate limit is exceeded. Try again in 57 seconds."}"#;
        let mut hm = h();
        hm.insert("retry-after", HeaderValue::from_static("57"));
        let e = error_from_response(
            Api::PartnerCenter,
            parse_error,
            429,
            &hm,
            b,
            "GET /customers",
        );
        assert_eq!(
            e.kind,
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(57))
            }
        );
        assert!(e.message.contains("Try again in 57 seconds"), "{e}");
        assert_eq!(e.code, None);
        // HTML, truncated, wrong types, missing fields: no panic, nothing invented.
        for b in [
            &b"<!DOCTYPE html><html><body>Service Unavailable</body></html>"[..],
            b"{\"code\":30",
            br#"{"code":{"x":1},"description":5,"data":"nope"}"#,
            br#"{"source":"PartnerFD"}"#,
            b"[1,2]",
            b"",
        ] {
            let v = parse_error(500, &h(), b);
            assert_eq!(v.code, None, "{}", String::from_utf8_lossy(b));
            assert_eq!(v.message, None);
            assert!(v.details.is_empty());
        }
        let e = error_from_response(
            Api::PartnerCenter,
            parse_error,
            503,
            &h(),
            b"<html>",
            "GET /customers",
        );
        assert_eq!(e.kind, ErrorKind::Server);
        assert!(e.message.contains("internal error"));
        let mut hm = h();
        hm.insert("ms-cv", HeaderValue::from_static("abc.1"));
        assert_eq!(parse_error(500, &hm, b"").details, vec!["MS-CV abc.1"]);
    }

    #[test]
    fn spec_examples_parse() {
        let b = br#"{"totalCount":2,
 "items":[{"id":"b44bb1fb-c595-45b0-9e09-d657365580bf","commerceId":"9dd78b4f-f98a-44b4-a2fa-2b82ac58d24c",
   "companyProfile":{"tenantId":"b44bb1fb-c595-45b0-9e09-d657365580bf","domain":"contoso.onmicrosoft.com",
     "companyName":"Contoso Pty Ltd","attributes":{"objectType":"CustomerCompanyProfile"}},
   "relationshipToPartner":"reseller","allowDelegatedAccess":true,"attributes":{"objectType":"Customer"}}],
 "continuationToken":"d19617b8-fbe5-4684-a5d8-0230972fb0cf,0705c4a9...",
 "links":{"self":{"uri":"/customers?size=40","method":"GET","headers":[]},
          "next":{"uri":"/customers?size=40&seekOperation=Next","method":"GET",
                  "headers":[{"key":"MS-ContinuationToken","value":"d19617b8-fbe5-4684-a5d8-0230972fb0cf,0705c4a9..."}]}},
 "attributes":{"objectType":"Collection"}}"#;
        let c = parse_customers_page(&h(), b).unwrap();
        assert_eq!(c.items[0].name(), "Contoso Pty Ltd");
        assert_eq!(c.items[0].domain(), Some("contoso.onmicrosoft.com"));
        let next = c.links.unwrap().next.unwrap();
        assert_eq!(next.headers[0].key, "MS-ContinuationToken");
        assert!(!format!("{next:?}").contains("d19617b8"));

        let c: Collection<Subscription> = decode_json(Api::PartnerCenter, "", &h(), SUBS).unwrap();
        let s = &c.items[0];
        assert_eq!(s.quantity, 25);
        assert!(s.is_active());
        assert_eq!(s.term_duration.as_deref(), Some("P1Y"));
        assert_eq!(s.billing_cycle.as_deref(), Some("monthly"));
        assert_eq!(s.etag(), Some("<etag>"));
        assert!(s.extra.contains_key("links"));
        assert_eq!(
            s.commitment_end_date.unwrap().to_rfc3339(),
            "2026-06-30T00:00:00+00:00"
        );

        let m: MpnProfile = decode_json(
            Api::PartnerCenter,
            "",
            &h(),
            br#"{"partnerName":"Fabrikam IT","mpnId":"4391507","profileType":"MpnProfile","links":{"self":{"uri":"/profiles/mpn","method":"GET","headers":[]}},"attributes":{"objectType":"MpnProfile"}}"#,
        )
        .unwrap();
        assert_eq!(m.mpn_id, "4391507");
    }

    #[test]
    fn patch_body_round_trips_unknown_fields() {
        let c: Collection<Subscription> = decode_json(Api::PartnerCenter, "", &h(), SUBS).unwrap();
        let mut s = c.items[0].clone();
        s.quantity = 30;
        let v = serde_json::to_value(&s).unwrap();
        let orig: serde_json::Value = serde_json::from_slice(SUBS).unwrap();
        let mut expected = orig["items"][0].clone();
        expected["quantity"] = serde_json::json!(30);
        assert_eq!(v, expected);
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        for b in [
            &br#"{"items":[{"quantity":1}]}"#[..],
            br#"{"items":[{"id":"x","quantity":-1}]}"#,
            br#"{"items":[{"id":"x","quantity":"many"}]}"#,
            br#"{"items":[{"id":"x","quantity":1,"creationDate":"soon"}]}"#,
            br#"{"totalCount":0}"#,
            b"<html>",
            b"{\"items\":[{\"id\":",
        ] {
            let e = decode_json::<Collection<Subscription>>(Api::PartnerCenter, "", &h(), b)
                .unwrap_err();
            assert_eq!(
                e.kind,
                ErrorKind::Malformed,
                "{}",
                String::from_utf8_lossy(b)
            );
        }
        let e = parse_customers_page(&h(), br#"{"items":[],"links":{"next":{"method":"GET"}}}"#)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(e.message.contains("uri"), "{e}");
    }

    #[test]
    fn next_links_resolve_against_the_v1_base() {
        let c = client("https://api.partnercenter.microsoft.com/v1");
        for (uri, want) in [
            (
                "/customers?size=40&seekOperation=Next",
                "https://api.partnercenter.microsoft.com/v1/customers?size=40&seekOperation=Next",
            ),
            (
                "/v1/customers?size=40&seekOperation=Next",
                "https://api.partnercenter.microsoft.com/v1/customers?size=40&seekOperation=Next",
            ),
            (
                "customers?seekOperation=Next",
                "https://api.partnercenter.microsoft.com/v1/customers?seekOperation=Next",
            ),
            (
                "https://api.partnercenter.microsoft.com/v1/customers?x=1",
                "https://api.partnercenter.microsoft.com/v1/customers?x=1",
            ),
        ] {
            assert_eq!(c.resolve_link(uri).unwrap().as_str(), want, "{uri}");
        }
        assert!(
            c.resolve_link("https://evil.example/v1/customers")
                .is_none()
        );
        // The sim mounts Partner Center under a prefix.
        let c = client("http://127.0.0.1:9/partnercenter/v1");
        for uri in [
            "/customers?seekOperation=Next",
            "/v1/customers?seekOperation=Next",
            "/partnercenter/v1/customers?seekOperation=Next",
        ] {
            assert_eq!(
                c.resolve_link(uri).unwrap().as_str(),
                "http://127.0.0.1:9/partnercenter/v1/customers?seekOperation=Next",
                "{uri}"
            );
        }
        // `/v1x/...` is not the `/v1` prefix.
        assert_eq!(
            c.resolve_link("/v1x/y").unwrap().path(),
            "/partnercenter/v1/v1x/y"
        );
    }

    #[test]
    fn next_request_copies_headers_and_refuses_loops() {
        let c = client("https://api.partnercenter.microsoft.com/v1");
        let mut p = c.customers_pager(40).unwrap();
        assert_eq!(
            p.next.as_ref().unwrap().url.as_str(),
            "https://api.partnercenter.microsoft.com/v1/customers?size=40"
        );
        let resp = Response {
            api: Api::PartnerCenter,
            operation: "GET /customers".into(),
            status: reqwest::StatusCode::OK,
            headers: h(),
            body: bytes::Bytes::new(),
        };
        let link = || Link {
            uri: "/customers?seekOperation=Next".into(),
            method: Some("GET".into()),
            headers: vec![
                LinkHeader {
                    key: "MS-ContinuationToken".into(),
                    value: "tok,1".into(),
                },
                LinkHeader {
                    key: "Authorization".into(),
                    value: "Bearer stolen".into(),
                },
            ],
        };
        let n = p.next_request(link(), &resp).unwrap();
        assert_eq!(n.headers.len(), 1);
        assert_eq!(n.headers[0].0.as_str(), "ms-continuationtoken");
        assert_eq!(n.headers[0].1.to_str().unwrap(), "tok,1");
        let e = p.next_request(link(), &resp).unwrap_err();
        assert!(e.message.contains("twice"), "{e}");
        let e = p
            .next_request(
                Link {
                    uri: "/customers".into(),
                    method: Some("POST".into()),
                    headers: vec![],
                },
                &resp,
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        for bad in [0, 501] {
            assert_eq!(c.customers_pager(bad).unwrap_err().kind, ErrorKind::Config);
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        crate::api::json_strategy::json_with(
            &[
                "items",
                "links",
                "next",
                "uri",
                "headers",
                "key",
                "value",
                "id",
                "quantity",
                "code",
                "description",
                "statusCode",
                "message",
                "data",
                "creationDate",
                "attributes",
                "mpnId",
            ],
            &["/customers?seekOperation=Next"],
        )
    }

    fn run_all(b: &[u8]) {
        let _ = parse_error(400, &h(), b);
        let _ = parse_error(429, &h(), b);
        if let Ok(page) = parse_customers_page(&h(), b)
            && let Some(next) = page.links.and_then(|l| l.next)
        {
            let c = client("http://127.0.0.1:9/pc/v1");
            let mut p = c.customers_pager(10).unwrap();
            let resp = Response {
                api: Api::PartnerCenter,
                operation: "GET /customers".into(),
                status: reqwest::StatusCode::OK,
                headers: h(),
                body: bytes::Bytes::new(),
            };
            let _ = p.next_request(next, &resp);
        }
        let _ = decode_json::<Collection<Subscription>>(Api::PartnerCenter, "", &h(), b);
        let _ = decode_json::<Subscription>(Api::PartnerCenter, "", &h(), b);
        let _ = decode_json::<Customer>(Api::PartnerCenter, "", &h(), b);
        let _ = decode_json::<MpnProfile>(Api::PartnerCenter, "", &h(), b);
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_bytes(b in prop::collection::vec(any::<u8>(), 0..256)) {
            run_all(&b);
        }

        #[test]
        fn parsers_never_panic_on_json(v in json_value()) {
            run_all(&serde_json::to_vec(&v).unwrap());
            run_all(&serde_json::to_vec(&serde_json::json!({"items": [v.clone()], "links": {"next": v.clone()}})).unwrap());
        }

        #[test]
        fn links_never_panic(uri in ".{0,40}") {
            let _ = client("http://127.0.0.1:9/pc/v1").resolve_link(&uri);
            let _ = client("https://api.partnercenter.microsoft.com/v1").resolve_link(&uri);
        }
    }
}
