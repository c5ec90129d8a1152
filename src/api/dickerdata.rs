//! Dicker Data B2B API client (reference/external-apis.md §4).
//!
//! **Community-sourced only.** Dicker Data publishes no public API documentation (§4: its
//! Swagger spec is given to account holders only). Everything here follows third-party
//! integration code (D1 TypeScript client, D2 PHP WooCommerce plugin, D3 PHP WHMCS "msdd"
//! tool, D4 Kantanna README) as summarised in §4; where those sources are silent the choice
//! is marked `[UNCONFIRMED]` and kept tolerant, so a real service that differs in a detail
//! fails with a clear error rather than a panic or silently wrong numbers.
//!
//! - Auth (§4.2): `POST AccessKeyRequest` trades the Account Code and Access Code (the
//!   long-lived "AccessToken") for a short-lived AccessKey; [`AccessKeySource`] caches it,
//!   renews it before it expires (single flight) and is the [`TokenSource`] of the shared
//!   [`HttpCore`], so a 401 renews it once. Later calls use auth style (a): `Authorization:
//!   Bearer <AccessKey>`, `DD-TransactionID`, `DD-ApiVersion: v1`.
//! - A 2xx body with `Status: "Failed"` is an error (§4.2, §4.3): [`check_status`] turns it
//!   into [`ErrorKind::Failed`], or [`ErrorKind::Unauthorized`] when the message is about the
//!   AccessKey or credentials, in which case the key is renewed once and the call repeated.
//! - CSP subscriptions (§4.3), tenants (§4.3, response shape unconfirmed), prices (§4.4) and a
//!   **modelled** quantity change (§4.3: no public evidence of such an endpoint).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use futures_util::future::BoxFuture;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::error::{Api, ApiError, ErrorKind, VendorError, clean_text};
use super::http::{
    HttpCore, Request, Response, RetryPolicy, StaticToken, StatsSnapshot, TokenSource, decode_json,
    endpoint,
};
use super::limit::Limits;

pub use crate::secret::Secret;

/// No limits are documented (§4.4: "Rate limits ... unknown"); 8 requests in flight is a
/// bound we chose so a full fetch never floods the distributor.
pub const LIMITS: Limits = Limits::concurrency(8);

/// Renew the AccessKey when less than this is left of its life.
pub const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// Lifetime assumed when `ExpireDateTime` is missing or unusable (D1's fallback, §4.2).
pub const DEFAULT_KEY_LIFETIME: Duration = Duration::from_secs(600);

/// `DD-ApiVersion` value (§4.2 style (a): D2 sends "v1", D3 "1.0"; we follow D2).
const API_VERSION: &str = "v1";

// ---------------------------------------------------------------------------------------------
// Lenient wire helpers (§4.3: value formats are [UNCONFIRMED], so reading is forgiving).
// ---------------------------------------------------------------------------------------------

/// Parse a date-time as Dicker Data might send it: `2026-04-01T00:00:00` (no offset: taken as
/// UTC, §4.2/§4.3 examples carry none), with an offset or `Z`, with a fraction, with a space
/// instead of `T`, or a bare date. Empty strings and .NET's `0001-01-01` "no date" are `None`.
pub fn parse_lenient_datetime(s: &str) -> Result<Option<DateTime<Utc>>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let parsed = DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"]
                .iter()
                .find_map(|f| DateTime::parse_from_str(s, f).ok())
                .map(|d| d.with_timezone(&Utc))
        })
        .or_else(|| {
            [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .map(|n| n.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| n.and_utc())
        });
    match parsed {
        Some(d) if d.year() <= 1 => Ok(None),
        Some(d) => Ok(Some(d)),
        None => Err(format!(
            "`{}` is not a date cspsync recognises",
            clean_text(s, 40)
        )),
    }
}

/// serde helpers used with `deserialize_with` (all treat `null` as `None`; pair with
/// `#[serde(default)]` so a missing field is `None` too).
pub mod lenient {
    use super::*;
    use serde::de::Error as _;

    /// A string; numbers and booleans are accepted and written out (`"AccountCode": 325026`).
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "expected text, found {}",
                    kind_of(&other)
                )));
            }
        })
    }

    /// A whole number, as a JSON number or numeric string.
    pub fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let v = Option::<Value>::deserialize(d)?;
        let n = match &v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        n.map(Some).ok_or_else(|| {
            D::Error::custom(format!(
                "expected a whole number, found {}",
                v.as_ref().map(kind_of).unwrap_or("nothing")
            ))
        })
    }

    /// A non-negative whole number (a seat count).
    pub fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        match whole(d)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| D::Error::custom(format!("{n} is not a valid quantity"))),
        }
    }

    /// A date-time in any form [`parse_lenient_datetime`] accepts.
    pub fn datetime<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_lenient_datetime(&s).map_err(D::Error::custom),
            Some(other) => Err(D::Error::custom(format!(
                "expected a date, found {}",
                kind_of(&other)
            ))),
        }
    }

    /// Money: a JSON number or a numeric string, read exactly (never via f64 arithmetic).
    pub fn money<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        let v = Option::<Value>::deserialize(d)?;
        let text = match &v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "expected an amount, found {}",
                    kind_of(other)
                )));
            }
        };
        Decimal::from_str(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .map(Some)
            .map_err(|_| D::Error::custom(format!("`{}` is not an amount", clean_text(&text, 40))))
    }

    pub(crate) fn kind_of(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "text",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stock codes (§4.3, D4).
// ---------------------------------------------------------------------------------------------

/// Commitment term of a licence stock code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Term {
    /// Month to month.
    P1M,
    /// One year.
    P1Y,
    /// Three years.
    P3Y,
}

impl Term {
    pub fn as_str(self) -> &'static str {
        match self {
            Term::P1M => "P1M",
            Term::P1Y => "P1Y",
            Term::P3Y => "P3Y",
        }
    }
}

/// How a licence is billed: the fourth part of a stock code (§4.3: `1` monthly, `Y` annual
/// upfront).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BillingPlan {
    Monthly,
    AnnualUpfront,
}

/// A Microsoft licence stock code `{term}:{product}:{sku}:{billing plan}:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LicenceCode {
    pub term: Term,
    /// Microsoft product id, e.g. `CFQ7TTC0LCHC`.
    pub product: String,
    /// Microsoft SKU id, e.g. `0002`.
    pub sku: String,
    pub billing: BillingPlan,
}

/// A Dicker Data stock code, understood.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StockCode {
    Licence(LicenceCode),
    /// Azure (usage billed), codes starting `DZH` (§4.3).
    Azure(String),
}

/// A stock code that is not in a shape cspsync understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Dicker Data stock code `{code}` is not in the expected `term:product:sku:billing plan:` form (e.g. `P1Y:CFQ7TTC0LCHC:0002:1:`): {reason}"
)]
pub struct StockCodeError {
    pub code: String,
    pub reason: String,
}

impl StockCode {
    /// Parse `P1Y:CFQ7TTC0LCHC:0002:1:` (trailing colon optional, case-insensitive term and
    /// plan) or an Azure `DZH...` code.
    pub fn parse(code: &str) -> Result<StockCode, StockCodeError> {
        let trimmed = code.trim();
        let err = |reason: &str| StockCodeError {
            code: clean_text(trimmed, 60),
            reason: reason.to_string(),
        };
        if trimmed.is_empty() {
            return Err(err("it is empty"));
        }
        if trimmed
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case("DZH"))
        {
            return Ok(StockCode::Azure(trimmed.to_string()));
        }
        let body = trimmed.strip_suffix(':').unwrap_or(trimmed);
        let parts: Vec<&str> = body.split(':').collect();
        if parts.len() != 4 {
            return Err(err(&format!(
                "it has {} part(s) separated by `:` instead of 4",
                parts.len()
            )));
        }
        let term = match parts[0].trim().to_ascii_uppercase().as_str() {
            "P1M" => Term::P1M,
            "P1Y" => Term::P1Y,
            "P3Y" => Term::P3Y,
            _ => return Err(err("the term is not P1M, P1Y or P3Y")),
        };
        let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
        let product = parts[1].trim();
        if !ident(product) {
            return Err(err("the product id is empty or not letters and digits"));
        }
        let sku = parts[2].trim();
        if !ident(sku) {
            return Err(err("the SKU is empty or not letters and digits"));
        }
        let billing = match parts[3].trim() {
            "1" => BillingPlan::Monthly,
            "Y" | "y" => BillingPlan::AnnualUpfront,
            _ => return Err(err("the billing plan is not `1` (monthly) or `Y` (annual)")),
        };
        Ok(StockCode::Licence(LicenceCode {
            term,
            product: product.to_ascii_uppercase(),
            sku: sku.to_string(),
            billing,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Wire models (§4.2–§4.4). Names are exactly Dicker Data's PascalCase; camelCase aliases are
// accepted in case a deployment serialises the ASP.NET Core default way [UNCONFIRMED].
// ---------------------------------------------------------------------------------------------

/// `SubscriptionType` of §4.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SubscriptionType {
    /// Microsoft CSP (NCE and legacy licences).
    #[serde(rename = "CSP")]
    Csp,
    #[serde(rename = "ADY")]
    Ady,
    #[serde(rename = "ADM")]
    Adm,
}

impl SubscriptionType {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionType::Csp => "CSP",
            SubscriptionType::Ady => "ADY",
            SubscriptionType::Adm => "ADM",
        }
    }
}

/// One subscription line of `GetSubscriptionDetails` (§4.3; field list from D3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Subscription {
    #[serde(default, alias = "accountCode", deserialize_with = "lenient::string")]
    pub account_code: Option<String>,
    #[serde(
        default,
        alias = "TenantID",
        alias = "tenantId",
        deserialize_with = "lenient::string"
    )]
    pub tenant_id: Option<String>,
    #[serde(
        default,
        alias = "subscriptionReference",
        deserialize_with = "lenient::string"
    )]
    pub subscription_reference: Option<String>,
    #[serde(default, alias = "companyName", deserialize_with = "lenient::string")]
    pub company_name: Option<String>,
    #[serde(
        default,
        alias = "tenantDescription",
        deserialize_with = "lenient::string"
    )]
    pub tenant_description: Option<String>,
    /// `{term}:{product}:{sku}:{billing plan}:`; see [`Subscription::stock`].
    #[serde(default, alias = "stockCode", deserialize_with = "lenient::string")]
    pub stock_code: Option<String>,
    #[serde(
        default,
        alias = "parentSubscriptionId",
        deserialize_with = "lenient::string"
    )]
    pub parent_subscription_id: Option<String>,
    /// The Microsoft subscription id.
    #[serde(
        default,
        alias = "SubscriptionID",
        alias = "subscriptionId",
        deserialize_with = "lenient::string"
    )]
    pub subscription_id: Option<String>,
    /// `ACTIVE`, ... (values beyond `ACTIVE` unconfirmed).
    #[serde(default, alias = "status", deserialize_with = "lenient::string")]
    pub status: Option<String>,
    /// `Monthly`, ... (text unconfirmed, §4.3).
    #[serde(
        default,
        alias = "billingFrequency",
        deserialize_with = "lenient::string"
    )]
    pub billing_frequency: Option<String>,
    #[serde(
        default,
        alias = "lastBillingDate",
        deserialize_with = "lenient::datetime"
    )]
    pub last_billing_date: Option<DateTime<Utc>>,
    #[serde(
        default,
        alias = "nextBillingDate",
        deserialize_with = "lenient::datetime"
    )]
    pub next_billing_date: Option<DateTime<Utc>>,
    /// The seats Dicker Data bills: the distributor count of reconciliation.
    #[serde(
        default,
        alias = "confirmedQuantity",
        deserialize_with = "lenient::count"
    )]
    pub confirmed_quantity: Option<u32>,
    /// Shape never seen (null in every sample): kept as raw JSON.
    #[serde(default, alias = "serials")]
    pub serials: Option<Value>,
    #[serde(default, alias = "expiryDate", deserialize_with = "lenient::datetime")]
    pub expiry_date: Option<DateTime<Utc>>,
    #[serde(
        default,
        alias = "stockDescription",
        deserialize_with = "lenient::string"
    )]
    pub stock_description: Option<String>,
    #[serde(
        default,
        alias = "manufacturerStockCode",
        deserialize_with = "lenient::string"
    )]
    pub manufacturer_stock_code: Option<String>,
}

impl Subscription {
    /// The stock code understood, or `None` when the line has none.
    pub fn stock(&self) -> Option<Result<StockCode, StockCodeError>> {
        self.stock_code.as_deref().map(StockCode::parse)
    }
}

/// One customer tenant of `GetTenant` (§4.3: response shape unconfirmed; we expect the same
/// envelope and names as the subscription lines).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tenant {
    #[serde(
        default,
        alias = "TenantID",
        alias = "tenantId",
        deserialize_with = "lenient::string"
    )]
    pub tenant_id: Option<String>,
    #[serde(default, alias = "companyName", deserialize_with = "lenient::string")]
    pub company_name: Option<String>,
    #[serde(
        default,
        alias = "tenantDescription",
        deserialize_with = "lenient::string"
    )]
    pub tenant_description: Option<String>,
}

/// One line of a `PricingRequest` answer (§4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    #[serde(
        rename = "PartNumber",
        alias = "partNumber",
        default,
        deserialize_with = "lenient::string"
    )]
    pub part_number: Option<String>,
    /// Buy price, ex GST [UNCONFIRMED].
    #[serde(
        rename = "UnitPrice",
        alias = "unitPrice",
        default,
        deserialize_with = "lenient::money"
    )]
    pub unit_price: Option<Decimal>,
    /// Stock on hand.
    #[serde(
        rename = "SOH",
        alias = "soh",
        alias = "Soh",
        default,
        deserialize_with = "lenient::whole"
    )]
    pub soh: Option<i64>,
}

/// What the modelled quantity change answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantityChange {
    /// `Status` of the body, if any.
    pub status: Option<String>,
    pub message: Option<String>,
    /// The subscription line after the change, when the body carries one in `Out`.
    pub subscription: Option<Subscription>,
}

/// The AccessKey answer (§4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessKeyGrant {
    pub access_key: String,
    /// When it stops working (wall clock, UTC).
    pub expires_at: DateTime<Utc>,
}

#[derive(Deserialize, Default)]
struct AccessKeyWire {
    #[serde(
        rename = "AccessKey",
        alias = "accessKey",
        default,
        deserialize_with = "lenient::string"
    )]
    access_key: Option<String>,
    #[serde(
        rename = "ExpireDateTime",
        alias = "expireDateTime",
        default,
        deserialize_with = "lenient::string"
    )]
    expire: Option<String>,
    #[serde(
        rename = "Status",
        alias = "status",
        default,
        deserialize_with = "lenient::string"
    )]
    status: Option<String>,
    #[serde(
        rename = "Message",
        alias = "message",
        default,
        deserialize_with = "lenient::string"
    )]
    message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Body parsing: pure functions (unit- and property-tested).
// ---------------------------------------------------------------------------------------------

const OP_KEY: &str = "POST /api/AccessKeyRequest";

fn malformed(op: &str, what: impl fmt::Display) -> ApiError {
    ApiError::malformed(Api::DickerData, what).with_operation(op)
}

/// A field of a JSON object by name, ignoring case (`Status`/`status`).
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let map = v.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn field_str<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    field(v, name).and_then(Value::as_str)
}

/// True for a `Status` that means the call failed (§4.2: D1 saw "Failed"; the swagger does
/// not document the values, so a few obvious synonyms count too [UNCONFIRMED]).
fn is_failed_status(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "failed" | "failure" | "fail" | "error" | "denied"
    )
}

/// D1's heuristic (§4.2): a failure message about the AccessKey or the credentials means the
/// key (or the codes) were rejected.
pub fn is_auth_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    let about_auth = [
        "accesskey",
        "access key",
        "access token",
        "accesstoken",
        "access code",
        "credential",
        "token",
    ]
    .iter()
    .any(|w| m.contains(w));
    let problem = [
        "invalid",
        "expired",
        "not valid",
        "unauthori",
        "not authori",
        "revoked",
    ]
    .iter()
    .any(|w| m.contains(w));
    (about_auth && problem) || m.contains("unauthorized") || m.contains("unauthorised")
}

/// The body check every call uses (§4.2/§4.3): a 2xx body whose `Status` is "Failed" is an
/// error — [`ErrorKind::Unauthorized`] when its message is about the AccessKey/credentials,
/// [`ErrorKind::Failed`] otherwise. Bodies without a failing `Status` pass.
pub fn check_status(body: &Value, op: &str) -> Result<(), ApiError> {
    let Some(status) = field_str(body, "Status") else {
        return Ok(());
    };
    if !is_failed_status(status) {
        return Ok(());
    }
    let message = field(body, "Message")
        .and_then(|m| match m {
            Value::String(s) => Some(clean_text(s, 300)),
            Value::Null => None,
            other => Some(clean_text(&other.to_string(), 300)),
        })
        .filter(|m| !m.is_empty());
    let auth = message.as_deref().is_some_and(is_auth_message);
    let (kind, sentence) = match (&message, auth) {
        (Some(m), true) => (
            ErrorKind::Unauthorized,
            format!("did not accept the AccessKey (it said: {m})"),
        ),
        (Some(m), false) => (
            ErrorKind::Failed,
            format!("reported that the request failed: {m}"),
        ),
        (None, _) => (
            ErrorKind::Failed,
            "reported that the request failed without saying why".to_string(),
        ),
    };
    Err(ApiError::new(Api::DickerData, kind, sentence)
        .with_code(clean_text(status, 40))
        .with_operation(op))
}

/// Read a 2xx body as JSON (an empty body is `null`) and apply [`check_status`].
pub fn read_body(headers: &HeaderMap, body: &[u8], op: &str) -> Result<Value, ApiError> {
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        decode_json::<Value>(Api::DickerData, op, headers, body)?
    };
    check_status(&value, op)?;
    Ok(value)
}

fn from_value<T: DeserializeOwned>(v: Value, op: &str, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| {
        malformed(
            op,
            format!(
                "unexpected JSON in {what}: {}",
                clean_text(&e.to_string(), 200)
            ),
        )
    })
}

/// The list inside a Dicker Data envelope: `{"Out":[...]}` (§4.3), tolerating `{"Out":{...}}`
/// (one item), `{"Out":null}` (none) and a bare array.
fn out_list(v: Value, key: &str, op: &str) -> Result<Vec<Value>, ApiError> {
    let inner = match v {
        Value::Array(a) => return Ok(a),
        Value::Null => return Ok(Vec::new()),
        Value::Object(mut map) => {
            let found = map.remove(key).or_else(|| {
                let k = map.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
                map.remove(&k)
            });
            match found {
                Some(v) => v,
                None => {
                    return Err(malformed(op, format!("the answer has no `{key}` list")));
                }
            }
        }
        other => {
            return Err(malformed(
                op,
                format!(
                    "expected an object with `{key}`, found {}",
                    lenient::kind_of(&other)
                ),
            ));
        }
    };
    match inner {
        Value::Array(a) => Ok(a),
        Value::Null => Ok(Vec::new()),
        obj @ Value::Object(_) => Ok(vec![obj]),
        other => Err(malformed(
            op,
            format!(
                "`{key}` should be a list but is {}",
                lenient::kind_of(&other)
            ),
        )),
    }
}

fn items<T: DeserializeOwned>(list: Vec<Value>, op: &str, what: &str) -> Result<Vec<T>, ApiError> {
    list.into_iter()
        .enumerate()
        .map(|(i, v)| from_value(v, op, &format!("{what} {}", i + 1)))
        .collect()
}

/// Parse a `GetSubscriptionDetails` body (§4.3).
pub fn parse_subscriptions(
    headers: &HeaderMap,
    body: &[u8],
    op: &str,
) -> Result<Vec<Subscription>, ApiError> {
    let v = read_body(headers, body, op)?;
    items(out_list(v, "Out", op)?, op, "subscription line")
}

/// Parse a `GetTenant` body (§4.3, shape unconfirmed).
pub fn parse_tenants(headers: &HeaderMap, body: &[u8], op: &str) -> Result<Vec<Tenant>, ApiError> {
    let v = read_body(headers, body, op)?;
    items(out_list(v, "Out", op)?, op, "tenant")
}

/// Parse a `PricingRequest` body (§4.4): `{"SearchResult":[...]}`.
pub fn parse_prices(headers: &HeaderMap, body: &[u8], op: &str) -> Result<Vec<Price>, ApiError> {
    let v = read_body(headers, body, op)?;
    items(out_list(v, "SearchResult", op)?, op, "price")
}

/// Parse the modelled `UpdateSubscriptionQuantity` body: any 2xx without a failing `Status`
/// is success; an `Out` subscription line is returned when present.
pub fn parse_quantity_change(
    headers: &HeaderMap,
    body: &[u8],
    op: &str,
) -> Result<QuantityChange, ApiError> {
    let v = read_body(headers, body, op)?;
    let text = |name: &str| field_str(&v, name).map(|s| clean_text(s, 300));
    let status = text("Status");
    let message = text("Message");
    let subscription = match field(&v, "Out") {
        Some(Value::Object(_)) => field(&v, "Out").cloned(),
        Some(Value::Array(a)) => a.first().cloned(),
        _ => None,
    }
    .map(|o| from_value::<Subscription>(o, op, "the changed subscription line"))
    .transpose()?;
    Ok(QuantityChange {
        status,
        message,
        subscription,
    })
}

/// Parse the AccessKey answer (§4.2). `now` is the time of receipt.
///
/// Failure arrives as HTTP 200 with `Status: "Failed"` and a `Message` (D1): it becomes an
/// [`ErrorKind::Unauthorized`] error that names the Account Code and Access Code.
pub fn parse_access_key(
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<AccessKeyGrant, ApiError> {
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        decode_json::<Value>(Api::DickerData, OP_KEY, headers, body)?
    };
    if !value.is_object() {
        return Err(malformed(
            OP_KEY,
            format!(
                "expected an AccessKey answer, found {}",
                lenient::kind_of(&value)
            ),
        ));
    }
    let wire: AccessKeyWire = from_value(value, OP_KEY, "the AccessKey answer")?;
    let failed = wire.status.as_deref().is_some_and(is_failed_status);
    let key = wire.access_key.filter(|k| !k.trim().is_empty());
    let key = match key {
        Some(k) if !failed => k,
        _ => {
            let said = wire
                .message
                .as_deref()
                .map(|m| clean_text(m, 200))
                .filter(|m| !m.is_empty())
                .map(|m| format!(" (it said: {m})"))
                .unwrap_or_default();
            return Err(ApiError::new(
                Api::DickerData,
                ErrorKind::Unauthorized,
                format!("did not accept the Account Code and Access Code{said}"),
            )
            .with_code(
                wire.status
                    .as_deref()
                    .map(|s| clean_text(s, 40))
                    .unwrap_or_else(|| "NoAccessKey".into()),
            )
            .with_operation(OP_KEY));
        }
    };
    // §4.2: lifetime undocumented; D1 assumes 10 minutes when ExpireDateTime is missing. A
    // time already past on receipt (a time-zone mismatch: the no-offset value is taken as UTC)
    // is treated the same way rather than renewing on every call.
    let default_expiry = now + chrono::Duration::seconds(DEFAULT_KEY_LIFETIME.as_secs() as i64);
    let expires_at = match wire.expire.as_deref().map(parse_lenient_datetime) {
        Some(Ok(Some(t))) if t > now => t,
        Some(Ok(Some(_))) => {
            tracing::debug!("Dicker Data AccessKey expiry is already past; assuming 10 minutes");
            default_expiry
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "unreadable AccessKey expiry; assuming 10 minutes");
            default_expiry
        }
        Some(Ok(None)) | None => default_expiry,
    };
    Ok(AccessKeyGrant {
        access_key: key,
        expires_at,
    })
}

/// Dicker Data's error body for a non-2xx answer (§4.4: its shape is unknown). Accepts
/// ASP.NET Web API `{"Message": ..., "ExceptionMessage": ..., "ModelState": {...}}`,
/// ASP.NET Core problem details `{"title", "detail", "errors": {...}}`,
/// `{"Status":"Failed","Message":...}`, a JSON string, plain text and HTML error pages.
pub fn parse_error(status: u16, headers: &HeaderMap, body: &[u8]) -> VendorError {
    let _ = status;
    let mut v = VendorError::default();
    match serde_json::from_slice::<Value>(body) {
        Ok(obj @ Value::Object(_)) => {
            let text = |name: &str| -> Option<String> {
                match field(&obj, name)? {
                    Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            };
            v.message = ["Message", "detail", "title", "error_description", "error"]
                .iter()
                .find_map(|k| text(k));
            v.code = ["ErrorCode", "Code"]
                .iter()
                .find_map(|k| text(k))
                .or_else(|| text("Status").filter(|s| !is_failed_status(s)));
            for k in ["MessageDetail", "ExceptionMessage"] {
                if let Some(d) = text(k)
                    && v.message.as_deref() != Some(d.as_str())
                {
                    v.details.push(d);
                }
            }
            for k in ["ModelState", "errors"] {
                if let Some(Value::Object(m)) = field(&obj, k) {
                    for (name, msgs) in m {
                        push_field_messages(&mut v.details, name, msgs);
                    }
                }
            }
            v.details.truncate(20);
        }
        Ok(Value::String(s)) => v.message = Some(s).filter(|s| !s.trim().is_empty()),
        Ok(_) => {}
        Err(_) => v.message = text_error_message(headers, body),
    }
    v
}

fn push_field_messages(out: &mut Vec<String>, name: &str, msgs: &Value) {
    let name = name
        .trim_start_matches("request.")
        .trim_start_matches('$')
        .trim_start_matches('.');
    let mut push = |m: &str| {
        if name.is_empty() {
            out.push(m.to_string());
        } else {
            out.push(format!("{name}: {m}"));
        }
    };
    match msgs {
        Value::String(s) => push(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).for_each(push),
        _ => {}
    }
}

/// A sentence from a non-JSON error body: an HTML page's `<title>` (or first heading), or
/// the first part of plain text. `None` when there is nothing readable.
pub fn text_error_message(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let raw = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]);
    let ctype = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let start = raw.trim_start();
    // Broken JSON (cut off, wrong shape) has no sentence worth showing: the caller falls back
    // to one built from the status.
    if start.starts_with('{') || start.starts_with('[') {
        return None;
    }
    let looks_html = ctype.contains("html") || start.starts_with('<');
    let text = if looks_html {
        ["title", "h1", "h2"]
            .iter()
            .find_map(|t| html_element_text(&raw, t))?
    } else {
        raw.into_owned()
    };
    let cleaned = clean_text(&text, 300);
    (!cleaned.is_empty()).then_some(cleaned)
}

/// The text inside the first `<tag ...>...</tag>`, tags stripped and common entities decoded.
fn html_element_text(html: &str, tag: &str) -> Option<String> {
    // ASCII lower-casing keeps byte offsets, so indices found in `lower` are valid in `html`.
    let lower = html.to_ascii_lowercase();
    let open = format!("<{tag}");
    let mut from = 0;
    let start = loop {
        let at = from + lower.get(from..)?.find(&open)?;
        let after = at + open.len();
        // `<title>` or `<title lang=..>`, not `<titles>`.
        match lower.as_bytes().get(after) {
            Some(b'>') | Some(b' ') | Some(b'\t') | Some(b'\n') | Some(b'\r') => break after,
            _ => from = after,
        }
    };
    let content_start = start + lower.get(start..)?.find('>')? + 1;
    let close = format!("</{tag}");
    let content_end = content_start + lower.get(content_start..)?.find(&close)?;
    let inner = html.get(content_start..content_end)?;
    let mut out = String::with_capacity(inner.len());
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    let t = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    (!t.is_empty()).then_some(t)
}

// ---------------------------------------------------------------------------------------------
// The AccessKey token source (§4.2).
// ---------------------------------------------------------------------------------------------

struct CachedKey {
    key: String,
    expires_at: DateTime<Utc>,
    /// Monotonic deadline derived from `expires_at` at receipt (immune to clock changes).
    deadline: Instant,
}

/// Obtains, caches and renews the short-lived AccessKey (§4.2).
///
/// - Renewed when less than [`RENEW_MARGIN`] is left, and when forced (HttpCore's 401 path,
///   or a body saying the key is invalid).
/// - Single flight: one renewal at a time; callers that queued behind a renewal use its key
///   instead of starting another.
/// - Its own [`HttpCore`] with its own small limiter: a key request made while the client's
///   permits are all held by calls waiting for this very key must not wait for them.
pub struct AccessKeySource {
    url: Url,
    http: HttpCore,
    account_code: String,
    access_code: Secret,
    cache: tokio::sync::Mutex<Option<CachedKey>>,
    /// Bumped on every renewal, so a forced refresh that queued behind another renewal
    /// reuses that fresh key.
    generation: AtomicU64,
    /// Key requests sent (tests, `doctor`).
    requests: AtomicU64,
}

impl fmt::Debug for AccessKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeySource")
            .field("url", &self.url.as_str())
            .field("account_code", &self.account_code)
            .field("access_code", &self.access_code)
            .field("access_key", &"[redacted]")
            .finish()
    }
}

#[derive(Serialize)]
struct AccessKeyRequestBody<'a> {
    #[serde(rename = "TransactionID")]
    transaction_id: String,
    #[serde(rename = "AccessToken")]
    access_token: &'a str,
    /// D1 and D2 send it, D3 omits it (§4.2); we send it.
    #[serde(rename = "AccountCode")]
    account_code: &'a str,
}

impl AccessKeySource {
    pub fn new(
        base: &Url,
        client: reqwest::Client,
        account_code: String,
        access_code: Secret,
    ) -> Self {
        AccessKeySource {
            url: endpoint(base, "AccessKeyRequest"),
            http: HttpCore::new(Api::DickerData, client, Limits::concurrency(2), parse_error),
            account_code: account_code.trim().to_string(),
            access_code,
            cache: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// How many AccessKeyRequests were sent.
    pub fn key_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// When the cached key expires, if there is one.
    pub async fn cached_expiry(&self) -> Option<DateTime<Utc>> {
        self.cache.lock().await.as_ref().map(|k| k.expires_at)
    }

    async fn request_key(&self) -> Result<CachedKey, ApiError> {
        if self.account_code.is_empty() || self.access_code.is_empty() {
            return Err(ApiError::config(
                Api::DickerData,
                "needs both the Account Code and the Access Code before it can sign in",
            )
            .with_operation(OP_KEY));
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let body = AccessKeyRequestBody {
            transaction_id: uuid::Uuid::new_v4().to_string(),
            access_token: self.access_code.expose().trim(),
            account_code: &self.account_code,
        };
        // Asking for a key has no side effect, so it may be retried.
        let req = Request::new(Method::POST, self.url.clone())
            .header("accept", "application/json")
            .json(&body)
            .idempotent(true)
            .operation(OP_KEY);
        let resp = self.http.send(req).await.map_err(|e| match e.kind {
            // 401/403 here means the codes, not a key, were refused.
            ErrorKind::Unauthorized | ErrorKind::Forbidden => {
                let said = e
                    .message
                    .strip_prefix("said: ")
                    .map(|m| format!(" (it said: {m})"))
                    .unwrap_or_default();
                ApiError {
                    kind: ErrorKind::Unauthorized,
                    message: format!("did not accept the Account Code and Access Code{said}"),
                    ..e
                }
            }
            _ => e,
        })?;
        let now = Utc::now();
        let grant = parse_access_key(&resp.headers, &resp.body, now)?;
        let left = (grant.expires_at - now).to_std().unwrap_or(Duration::ZERO);
        Ok(CachedKey {
            key: grant.access_key,
            expires_at: grant.expires_at,
            deadline: Instant::now() + left,
        })
    }

    /// A key, renewed first when forced or when it has less than [`RENEW_MARGIN`] left.
    pub async fn key(&self, force: bool) -> Result<(String, DateTime<Utc>), ApiError> {
        let seen = self.generation.load(Ordering::SeqCst);
        let mut slot = self.cache.lock().await;
        if let Some(k) = slot.as_ref() {
            let renewed_meanwhile = self.generation.load(Ordering::SeqCst) != seen;
            let fresh = k.deadline.saturating_duration_since(Instant::now()) > RENEW_MARGIN;
            if renewed_meanwhile || (!force && fresh) {
                return Ok((k.key.clone(), k.expires_at));
            }
        }
        let fresh = self.request_key().await?;
        let out = (fresh.key.clone(), fresh.expires_at);
        *slot = Some(fresh);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(out)
    }
}

impl TokenSource for AccessKeySource {
    fn token(&self, force_refresh: bool) -> BoxFuture<'_, Result<String, ApiError>> {
        Box::pin(async move { self.key(force_refresh).await.map(|(k, _)| k) })
    }
}

// ---------------------------------------------------------------------------------------------
// The client.
// ---------------------------------------------------------------------------------------------

/// Dicker Data B2B API client (community-sourced protocol, see the module doc).
#[derive(Clone)]
pub struct DickerDataClient {
    base: Url,
    http: HttpCore,
    keys: Arc<AccessKeySource>,
}

impl fmt::Debug for DickerDataClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DickerDataClient")
            .field("base", &self.base.as_str())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct In<T> {
    #[serde(rename = "In")]
    inner: T,
}

#[derive(Serialize)]
struct SubscriptionQuery<'a> {
    #[serde(rename = "SubscriptionType")]
    kind: &'static str,
    #[serde(rename = "TenantID", skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
}

#[derive(Serialize)]
struct QuantityUpdate<'a> {
    #[serde(rename = "SubscriptionId")]
    subscription_id: &'a str,
    #[serde(rename = "Quantity")]
    quantity: u32,
}

impl DickerDataClient {
    /// `base` is [`crate::config::Endpoints::dickerdata`] (`https://b2b-api.dickerdata.com.au/api`,
    /// §4.1); `account_code` and `access_code` are what Dicker Data issued (§4.2).
    pub fn new(
        base: Url,
        http: reqwest::Client,
        account_code: String,
        access_code: Secret,
    ) -> Self {
        let keys = Arc::new(AccessKeySource::new(
            &base,
            http.clone(),
            account_code,
            access_code,
        ));
        let core = HttpCore::new(Api::DickerData, http, LIMITS, parse_error)
            .with_token(keys.clone() as Arc<dyn TokenSource>);
        DickerDataClient {
            base,
            http: core,
            keys,
        }
    }

    /// Another retry policy (tests use short backoffs).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.http = self.http.with_retry(retry);
        self
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.http.stats()
    }

    pub fn limits(&self) -> Limits {
        self.http.limits()
    }

    /// The AccessKey cache (renewal counts, expiry).
    pub fn key_source(&self) -> &AccessKeySource {
        &self.keys
    }

    /// Obtain a fresh AccessKey (proving the Account Code and Access Code work) and say when
    /// it expires.
    pub async fn test_connection(&self) -> Result<DateTime<Utc>, ApiError> {
        self.keys.key(true).await.map(|(_, exp)| exp)
    }

    /// A POST with auth style (a) headers (§4.2); the bearer AccessKey is added by HttpCore.
    fn post<T: Serialize>(&self, path: &str, body: &T) -> Request {
        Request::new(Method::POST, endpoint(&self.base, path))
            .header("dd-transactionid", &uuid::Uuid::new_v4().to_string())
            .header("dd-apiversion", API_VERSION)
            .header("accept", "application/json")
            .json(body)
    }

    /// Send, check the body's `Status` (§4.2/§4.3) and, when the key was refused in a 2xx body
    /// (or a 401 refused a key carried in the query), renew it once and send again. `make`
    /// builds the request from the current AccessKey (only the pricing call embeds it).
    ///
    /// A call that carries the key in its query sends that same key as the bearer: one key
    /// per request, asked for once. (Found end to end: asking the key source a second time,
    /// for the header, renewed a key near the end of its life again, so the query and the
    /// header carried two different keys and one AccessKeyRequest was wasted; a server that
    /// checks both, as style (a) + (b) of §4.2 allow, would refuse that.)
    async fn call(
        &self,
        key_in_query: bool,
        make: impl Fn(&str) -> Result<Request, ApiError>,
    ) -> Result<(Response, Value), ApiError> {
        let mut retried = false;
        let mut renewed: Option<String> = None;
        loop {
            let (req, core) = if key_in_query {
                let key = match renewed.take() {
                    Some(k) => k,
                    None => self.keys.key(false).await?.0,
                };
                let pinned = self
                    .http
                    .with_other_token(Arc::new(StaticToken(key.clone())) as Arc<dyn TokenSource>);
                (make(&key)?, pinned)
            } else {
                (make("")?, self.http.clone())
            };
            let op = req.operation.clone();
            match core.send(req).await {
                Ok(resp) => match read_body(&resp.headers, &resp.body, &op) {
                    Ok(v) => return Ok((resp, v)),
                    Err(e) if e.kind == ErrorKind::Unauthorized && !retried => {
                        // The key was refused in a 2xx body: nothing was applied, so renewing
                        // it and sending the same request again is safe even for writes.
                        retried = true;
                        let (k, _) = self.keys.key(true).await?;
                        renewed = key_in_query.then_some(k);
                    }
                    Err(e) => return Err(e),
                },
                // The pinned key was refused (a 401; HttpCore's replay carried the same key):
                // renew it and send once more with the new key in the query and the header.
                Err(e) if key_in_query && e.status == Some(401) && !retried => {
                    retried = true;
                    renewed = Some(self.keys.key(true).await?.0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The CSP (or ADY/ADM) subscription lines Dicker Data bills, optionally for one tenant
    /// (`POST Subscriptions/GetSubscriptionDetails`, §4.3).
    pub async fn subscriptions(
        &self,
        kind: SubscriptionType,
        tenant: Option<&str>,
    ) -> Result<Vec<Subscription>, ApiError> {
        let body = In {
            inner: SubscriptionQuery {
                kind: kind.as_str(),
                tenant: tenant.map(str::trim).filter(|t| !t.is_empty()),
            },
        };
        // A query sent as POST: no side effect, safe to retry.
        let (resp, _) = self
            .call(false, |_| {
                Ok(self
                    .post("Subscriptions/GetSubscriptionDetails", &body)
                    .idempotent(true))
            })
            .await?;
        parse_subscriptions(&resp.headers, &resp.body, &resp.operation)
    }

    /// The customer tenants (`POST Subscriptions/GetTenant`, §4.3; the response shape was
    /// never seen, so `{"Out":[{TenantId, CompanyName, TenantDescription}]}` is read
    /// tolerantly).
    pub async fn tenants(&self) -> Result<Vec<Tenant>, ApiError> {
        let body = In {
            inner: SubscriptionQuery {
                kind: SubscriptionType::Csp.as_str(),
                tenant: None,
            },
        };
        let (resp, _) = self
            .call(false, |_| {
                Ok(self.post("Subscriptions/GetTenant", &body).idempotent(true))
            })
            .await?;
        parse_tenants(&resp.headers, &resp.body, &resp.operation)
    }

    /// Change the seat count of a CSP subscription.
    ///
    /// **MODELLED endpoint**: there is no public evidence of any Dicker Data endpoint that
    /// changes CSP quantities (§4.3). `POST Subscriptions/UpdateSubscriptionQuantity` with
    /// `{"In":{"SubscriptionId","Quantity"}}` is the shape cspsync's simulator offers, chosen
    /// to match the other `Subscriptions/*` calls; the real service may differ or lack it.
    ///
    /// Not retried once it may have reached the server: a dropped connection is reported as
    /// "may have been applied" rather than sent twice.
    pub async fn set_quantity(
        &self,
        subscription_id: &str,
        quantity: u32,
    ) -> Result<QuantityChange, ApiError> {
        let body = In {
            inner: QuantityUpdate {
                subscription_id: subscription_id.trim(),
                quantity,
            },
        };
        let result = self
            .call(false, |_| {
                Ok(self
                    .post("Subscriptions/UpdateSubscriptionQuantity", &body)
                    .idempotent(false))
            })
            .await;
        match result {
            Ok((resp, _)) => parse_quantity_change(&resp.headers, &resp.body, &resp.operation),
            Err(mut e) => {
                if matches!(
                    e.kind,
                    ErrorKind::Transport {
                        maybe_applied: true
                    }
                ) {
                    e.message = format!(
                        "{}; the quantity change may have been applied, so check subscription {} in Dicker Data before trying again",
                        e.message,
                        clean_text(subscription_id, 60)
                    );
                }
                Err(e)
            }
        }
    }

    /// Prices and stock for stock codes (`GET PricingRequest`, §4.4, auth style (b) in the
    /// query as D1 sends it; the bearer header of style (a) is sent as well).
    pub async fn prices(&self, stock_codes: &[&str]) -> Result<Vec<Price>, ApiError> {
        let codes: Vec<&str> = stock_codes
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .collect();
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = codes.iter().find(|c| c.contains(',')) {
            return Err(ApiError::config(
                Api::DickerData,
                format!(
                    "cannot ask for the price of `{}`: a stock code cannot contain a comma",
                    clean_text(bad, 60)
                ),
            ));
        }
        let products = codes.join(",");
        let (resp, _) = self
            .call(true, |key| {
                let mut url = endpoint(&self.base, "PricingRequest");
                url.query_pairs_mut()
                    .append_pair(
                        "pricingRequest.messageID",
                        &uuid::Uuid::new_v4().to_string(),
                    )
                    .append_pair(
                        "pricingRequest.token",
                        self.keys.access_code.expose().trim(),
                    )
                    .append_pair("pricingRequest.accessKey", key)
                    .append_pair("pricingRequest.products", &products);
                Ok(Request::get(url)
                    .header("dd-transactionid", &uuid::Uuid::new_v4().to_string())
                    .header("dd-apiversion", API_VERSION)
                    .header("accept", "application/json"))
            })
            .await?;
        parse_prices(&resp.headers, &resp.body, &resp.operation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h() -> HeaderMap {
        HeaderMap::new()
    }

    const OP: &str = "POST /api/Subscriptions/GetSubscriptionDetails";

    const SAMPLE: &str = r#"{"Out":[{"AccountCode":"325026","TenantId":"b44bb1fb-c595-45b0-9e09-d657365580bf","SubscriptionReference":"2F295B21",
      "CompanyName":"ATLAS OUTSOURCING PTY LTD","TenantDescription":"atlasoutsourcing.onmicrosoft.com",
      "StockCode":"P1Y:CFQ7TTC0LCHC:0002:1:","ParentSubscriptionId":null,"SubscriptionId":"83ef9d05-4169-4ef9-9657-0e86b1eab1de",
      "Status":"ACTIVE","BillingFrequency":"Monthly","LastBillingDate":"2026-04-01T00:00:00","NextBillingDate":"2026-05-01T00:00:00",
      "ConfirmedQuantity":25,"Serials":null,"ExpiryDate":"2026-08-30T00:00:00",
      "StockDescription":"MS NCE M365 BUSINESS PREMIUM 1 YR COMMIT","ManufacturerStockCode":"CFQ7TTC0LCHC:0002"}]}"#;

    #[test]
    fn spec_sample_parses_with_every_field() {
        let subs = parse_subscriptions(&h(), SAMPLE.as_bytes(), OP).unwrap();
        assert_eq!(subs.len(), 1);
        let s = &subs[0];
        assert_eq!(s.account_code.as_deref(), Some("325026"));
        assert_eq!(s.confirmed_quantity, Some(25));
        assert_eq!(s.parent_subscription_id, None);
        assert_eq!(
            s.last_billing_date.unwrap().to_rfc3339(),
            "2026-04-01T00:00:00+00:00"
        );
        assert_eq!(
            s.manufacturer_stock_code.as_deref(),
            Some("CFQ7TTC0LCHC:0002")
        );
        match s.stock().unwrap().unwrap() {
            StockCode::Licence(l) => {
                assert_eq!(l.term, Term::P1Y);
                assert_eq!(l.product, "CFQ7TTC0LCHC");
                assert_eq!(l.sku, "0002");
                assert_eq!(l.billing, BillingPlan::Monthly);
            }
            other => panic!("{other:?}"),
        }
        // Serialising keeps Dicker Data's names.
        let back = serde_json::to_value(s).unwrap();
        assert!(back.get("ConfirmedQuantity").is_some());
        assert!(back.get("TenantId").is_some());
    }

    #[test]
    fn subscriptions_are_tolerant() {
        // Unknown fields ignored, absent ones None, numbers as strings, dates in other forms.
        let body = br#"{"Status":"OK","Out":[{"SubscriptionId":"x","ConfirmedQuantity":"7","Extra":{"a":1},
            "AccountCode":325026,"ExpiryDate":"2026-08-30T00:00:00.000+10:00","NextBillingDate":"2026-05-01",
            "LastBillingDate":null}]}"#;
        let s = &parse_subscriptions(&h(), body, OP).unwrap()[0];
        assert_eq!(s.confirmed_quantity, Some(7));
        assert_eq!(s.account_code.as_deref(), Some("325026"));
        assert_eq!(
            s.expiry_date.unwrap().to_rfc3339(),
            "2026-08-29T14:00:00+00:00"
        );
        assert!(s.next_billing_date.is_some());
        assert_eq!(s.last_billing_date, None);
        assert_eq!(s.tenant_id, None);
        // Out null or absent list shapes.
        assert!(
            parse_subscriptions(&h(), br#"{"Out":null}"#, OP)
                .unwrap()
                .is_empty()
        );
        assert!(parse_subscriptions(&h(), b"[]", OP).unwrap().is_empty());
    }

    #[test]
    fn lenient_dates() {
        let ok = |s: &str| parse_lenient_datetime(s).unwrap().unwrap().to_rfc3339();
        assert_eq!(ok("2026-04-01T00:00:00"), "2026-04-01T00:00:00+00:00");
        assert_eq!(ok("2026-04-01T00:00:00Z"), "2026-04-01T00:00:00+00:00");
        assert_eq!(ok("2026-04-01T10:00:00+10:00"), "2026-04-01T00:00:00+00:00");
        assert_eq!(ok("2026-04-01T10:00:00+1000"), "2026-04-01T00:00:00+00:00");
        assert_eq!(
            ok("2026-04-01T00:00:00.1234567"),
            "2026-04-01T00:00:00.123456700+00:00"
        );
        assert_eq!(ok("2026-04-01 08:30:00"), "2026-04-01T08:30:00+00:00");
        assert_eq!(ok("2026-04-01"), "2026-04-01T00:00:00+00:00");
        assert_eq!(parse_lenient_datetime("").unwrap(), None);
        assert_eq!(parse_lenient_datetime("0001-01-01T00:00:00").unwrap(), None);
        let e = parse_lenient_datetime("next tuesday").unwrap_err();
        assert!(e.contains("next tuesday"), "{e}");
    }

    #[test]
    fn wrong_types_and_truncation_are_malformed_errors() {
        let e = parse_subscriptions(&h(), br#"{"Out":[{"ConfirmedQuantity":"many"}]}"#, OP)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(e.message.contains("subscription line 1"), "{e}");
        let e = parse_subscriptions(&h(), br#"{"Out":[{"ExpiryDate":"soon"}]}"#, OP).unwrap_err();
        assert!(e.message.contains("soon"), "{e}");
        let e = parse_subscriptions(&h(), br#"{"Out":[{"SubscriptionId":"x""#, OP).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(e.message.contains("cut off"), "{e}");
        let e = parse_subscriptions(&h(), br#"{"Out":"nope"}"#, OP).unwrap_err();
        assert!(e.message.contains("should be a list"), "{e}");
        let e = parse_subscriptions(&h(), br#"{"Other":[]}"#, OP).unwrap_err();
        assert!(e.message.contains("no `Out`"), "{e}");
        let e = parse_subscriptions(&h(), b"<html><body>Login</body></html>", OP).unwrap_err();
        assert!(e.message.contains("HTML"), "{e}");
        let e =
            parse_subscriptions(&h(), br#"{"Out":[{"ConfirmedQuantity":-3}]}"#, OP).unwrap_err();
        assert!(e.message.contains("-3"), "{e}");
    }

    #[test]
    fn status_failed_in_a_200_is_an_error() {
        let e = parse_subscriptions(
            &h(),
            br#"{"Status":"Failed","Message":"Tenant not found","Out":null}"#,
            OP,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Failed);
        assert_eq!(
            e.to_string(),
            "Dicker Data reported that the request failed: Tenant not found (Failed) [POST /api/Subscriptions/GetSubscriptionDetails]"
        );
        let e = parse_subscriptions(
            &h(),
            br#"{"status":"failed","message":"AccessKey has expired"}"#,
            OP,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        let e = parse_tenants(&h(), br#"{"Status":"Failed"}"#, OP).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Failed);
        assert!(e.message.contains("without saying why"));
        // "GRANTED"/"OK"/other values are not failures.
        assert!(parse_tenants(&h(), br#"{"Status":"Success","Out":[]}"#, OP).is_ok());
    }

    #[test]
    fn auth_messages() {
        assert!(is_auth_message("Invalid AccessKey"));
        assert!(is_auth_message("The access key has expired."));
        assert!(is_auth_message("Invalid credentials"));
        assert!(is_auth_message("Unauthorized"));
        assert!(!is_auth_message("Tenant not found"));
        assert!(!is_auth_message("Invalid quantity"));
    }

    #[test]
    fn access_key_answers() {
        let now = "2026-05-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let g = parse_access_key(
            &h(),
            br#"{"AccessKey":"k-1","ExpireDateTime":"2026-05-01T10:30:00","Status":"GRANTED","Message":null}"#,
            now,
        )
        .unwrap();
        assert_eq!(g.access_key, "k-1");
        assert_eq!(g.expires_at.to_rfc3339(), "2026-05-01T10:30:00+00:00");
        // Missing or past expiry: 10 minutes (D1).
        let g = parse_access_key(&h(), br#"{"AccessKey":"k","Status":"GRANTED"}"#, now).unwrap();
        assert_eq!(g.expires_at - now, chrono::Duration::minutes(10));
        let g = parse_access_key(
            &h(),
            br#"{"AccessKey":"k","ExpireDateTime":"2020-01-01T00:00:00"}"#,
            now,
        )
        .unwrap();
        assert_eq!(g.expires_at - now, chrono::Duration::minutes(10));
        // Failure is a 200 with Status Failed.
        let e = parse_access_key(
            &h(),
            br#"{"Status":"Failed","Message":"Invalid credentials"}"#,
            now,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert!(e.message.contains("Account Code and Access Code"), "{e}");
        assert!(e.message.contains("Invalid credentials"), "{e}");
        assert!(e.hint().contains("Access Code"));
        let e = parse_access_key(&h(), br#"{"AccessKey":"","Status":"GRANTED"}"#, now).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        let e = parse_access_key(&h(), b"[1,2]", now).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        let e = parse_access_key(&h(), b"", now).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
    }

    #[test]
    fn stock_codes() {
        let lic = |c: &str| match StockCode::parse(c).unwrap() {
            StockCode::Licence(l) => l,
            other => panic!("{other:?}"),
        };
        let l = lic("P1Y:CFQ7TTC0LCHC:0002:Y:");
        assert_eq!((l.term, l.billing), (Term::P1Y, BillingPlan::AnnualUpfront));
        let l = lic("p1m:cfq7ttc0lchc:0002:1");
        assert_eq!((l.term, l.billing), (Term::P1M, BillingPlan::Monthly));
        assert_eq!(l.product, "CFQ7TTC0LCHC");
        assert_eq!(lic(" P3Y:CFQ7TTC0LCH4:0001:Y: ").term, Term::P3Y);
        assert_eq!(
            StockCode::parse("DZH318Z0BQ3Q").unwrap(),
            StockCode::Azure("DZH318Z0BQ3Q".into())
        );
        for (bad, why) in [
            ("", "empty"),
            ("P2Y:CFQ7TTC0LCHC:0002:1:", "term"),
            ("P1Y:CFQ7TTC0LCHC:0002:", "3 part"),
            ("P1Y:CFQ7TTC0LCHC:0002:1:extra:", "5 part"),
            ("P1Y::0002:1:", "product"),
            ("P1Y:CFQ7TTC0LCHC:00-2:1:", "SKU"),
            ("P1Y:CFQ7TTC0LCHC:0002:M:", "billing plan"),
            ("MS-365-BP", "1 part"),
            ("é:é", "2 part"),
        ] {
            let e = StockCode::parse(bad).unwrap_err();
            assert!(e.reason.contains(why), "{bad}: {e}");
            assert!(e.to_string().contains("term:product:sku:billing plan:"));
        }
    }

    #[test]
    fn prices_and_tenants() {
        let p = parse_prices(
            &h(),
            br#"{"SearchResult":[{"PartNumber":"P1Y:CFQ7TTC0LCHC:0002:1:","UnitPrice":34.55,"SOH":0},
                 {"PartNumber":"X","UnitPrice":"1999.99","SOH":"12"}]}"#,
            "GET /api/PricingRequest",
        )
        .unwrap();
        assert_eq!(p[0].unit_price, Some(Decimal::new(3455, 2)));
        assert_eq!(p[1].unit_price, Some(Decimal::new(199999, 2)));
        assert_eq!(p[1].soh, Some(12));
        let e =
            parse_prices(&h(), br#"{"SearchResult":[{"UnitPrice":"free"}]}"#, "op").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        let t = parse_tenants(
            &h(),
            br#"{"Out":[{"TenantID":"t1","CompanyName":"A","TenantDescription":"a.onmicrosoft.com"}]}"#,
            "op",
        )
        .unwrap();
        assert_eq!(t[0].tenant_id.as_deref(), Some("t1"));
        let t = parse_tenants(&h(), br#"{"Out":{"TenantId":"t2"}}"#, "op").unwrap();
        assert_eq!(t[0].tenant_id.as_deref(), Some("t2"));
        let q = parse_quantity_change(&h(), b"", "op").unwrap();
        assert_eq!(q, QuantityChange::default());
        let q = parse_quantity_change(
            &h(),
            br#"{"Status":"Success","Out":{"SubscriptionId":"s","ConfirmedQuantity":30}}"#,
            "op",
        )
        .unwrap();
        assert_eq!(q.subscription.unwrap().confirmed_quantity, Some(30));
    }

    #[test]
    fn error_bodies_become_sentences() {
        let v = parse_error(
            500,
            &h(),
            br#"{"Message":"An error has occurred.","ExceptionMessage":"Object reference not set"}"#,
        );
        assert_eq!(v.message.as_deref(), Some("An error has occurred."));
        assert_eq!(v.details, vec!["Object reference not set".to_string()]);
        let v = parse_error(400, &h(), br#"{"Status":"Failed","Message":"Bad tenant"}"#);
        assert_eq!(v.message.as_deref(), Some("Bad tenant"));
        assert_eq!(v.code, None);
        let v = parse_error(
            400,
            &h(),
            br#"{"Message":"The request is invalid.","ModelState":{"request.In.Quantity":["Must be positive"]}}"#,
        );
        assert_eq!(v.details, vec!["In.Quantity: Must be positive".to_string()]);
        let v = parse_error(
            400,
            &h(),
            br#"{"title":"One or more validation errors occurred.","errors":{"Quantity":["bad"]}}"#,
        );
        assert_eq!(
            v.message.as_deref(),
            Some("One or more validation errors occurred.")
        );
        assert_eq!(v.details, vec!["Quantity: bad".to_string()]);
        let v = parse_error(
            404,
            &h(),
            b"<!DOCTYPE html><html><head><title>404 - File or directory not found.</title></head><body><h1>Server Error</h1></body></html>",
        );
        assert_eq!(
            v.message.as_deref(),
            Some("404 - File or directory not found.")
        );
        let v = parse_error(
            502,
            &h(),
            b"<html><body><h1>Bad &amp; Gateway</h1></body></html>",
        );
        assert_eq!(v.message.as_deref(), Some("Bad & Gateway"));
        let v = parse_error(503, &h(), b"<html><body>nothing</body></html>");
        assert_eq!(v.message, None);
        let v = parse_error(500, &h(), b"Service\r\nUnavailable\x07");
        assert_eq!(v.message.as_deref(), Some("Service Unavailable"));
        let v = parse_error(500, &h(), br#"{"Message":"#);
        assert_eq!(v, VendorError::default());
        let v = parse_error(500, &h(), br#""plain json string""#);
        assert_eq!(v.message.as_deref(), Some("plain json string"));
        let v = parse_error(500, &h(), b"");
        assert_eq!(v, VendorError::default());
        let v = parse_error(500, &h(), br#"{"Message":["wrong","type"]}"#);
        assert_eq!(v.message, None);
    }

    #[test]
    fn through_the_core_error_builder() {
        let e = crate::api::http::error_from_response(
            Api::DickerData,
            parse_error,
            500,
            &h(),
            br#"{"Message":"An error has occurred."}"#,
            "POST /api/x",
        );
        assert_eq!(e.kind, ErrorKind::Server);
        assert_eq!(
            e.to_string(),
            "Dicker Data said: An error has occurred. (HTTP 500) [POST /api/x]"
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = DickerDataClient::new(
            Url::parse("http://127.0.0.1:9/api").unwrap(),
            reqwest::Client::new(),
            "325026".into(),
            Secret::new("237082ED-EB96-SECRET-ACCESS-CODE"),
        );
        let d = format!("{c:?}");
        assert!(!d.contains("SECRET"), "{d}");
        assert!(d.contains("325026"), "{d}");
        assert!(d.contains("[redacted]"), "{d}");
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret([redacted])"
        );
        assert_eq!(c.limits().global_concurrency, 8);
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        crate::api::json_strategy::json_with(
            &[
                "Out",
                "Status",
                "Message",
                "AccessKey",
                "ExpireDateTime",
                "StockCode",
                "ConfirmedQuantity",
                "LastBillingDate",
                "ExpiryDate",
                "AccountCode",
                "SearchResult",
                "UnitPrice",
                "SOH",
                "TenantId",
                "ModelState",
                "errors",
                "title",
            ],
            &[
                "Failed",
                "GRANTED",
                "2026-04-01T00:00:00",
                "P1Y:CFQ7TTC0LCHC:0002:1:",
                "12.5",
                "-1",
                "0001-01-01",
            ],
        )
    }

    fn exercise(body: &[u8]) {
        let now = Utc::now();
        let _ = parse_subscriptions(&h(), body, OP);
        let _ = parse_tenants(&h(), body, OP);
        let _ = parse_prices(&h(), body, OP);
        let _ = parse_quantity_change(&h(), body, OP);
        let _ = parse_access_key(&h(), body, now);
        for status in [200, 400, 401, 404, 500] {
            let _ = crate::api::http::error_from_response(
                Api::DickerData,
                parse_error,
                status,
                &h(),
                body,
                OP,
            );
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
            exercise(&body);
        }

        #[test]
        fn random_json_never_panics(v in arb_json()) {
            exercise(&serde_json::to_vec(&v).unwrap());
            exercise(&serde_json::to_vec(&serde_json::json!({"Out": [v.clone()]})).unwrap());
            exercise(&serde_json::to_vec(&serde_json::json!({"SearchResult": [v]})).unwrap());
        }

        #[test]
        fn random_text_never_panics(s in ".{0,80}") {
            let _ = StockCode::parse(&s);
            let _ = parse_lenient_datetime(&s);
            let _ = text_error_message(&h(), s.as_bytes());
            let html = format!("<html><title>{s}</title><h1>{s}");
            let _ = text_error_message(&h(), html.as_bytes());
            let _ = is_auth_message(&s);
        }
    }
}
