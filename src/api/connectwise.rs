//! ConnectWise PSA (Manage) REST API 3.0 client (reference/external-apis.md §5).
//!
//! - Base URL `https://{site}/{codebase}/apis/3.0` (§5.1), built from what a technician types
//!   by [`base_from_site`], optionally with the codebase found by [`discover_codebase`].
//! - Auth (§5.1): `Authorization: Basic base64("{companyId}+{publicKey}:{privateKey}")` and a
//!   `clientId` header on every call.
//! - Paging (§5.2): `pageSize=1000`, then the `Link` header's `rel="next"` URL, verbatim, until
//!   there is none; bodies are bare JSON arrays ([`ConnectWiseClient::get_all`]).
//! - Conditions (§5.2) are built with [`Conditions`], which quotes and escapes values, so
//!   callers never splice raw text into a query.
//! - Writes: additions created with POST (never retried once sent) and changed with JSON Patch
//!   (§5.3).
//! - Errors (§5.4): `{code, message, errors:[{code, message, resource, field}]}`.
//! - Limits (§5.5): none documented; 10 requests in flight, and 429 + Retry-After is honoured
//!   by [`HttpCore`].

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use reqwest::Method;
use reqwest::header::{HeaderMap, LINK};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::dickerdata::{Secret, text_error_message};
use super::error::{Api, ApiError, ErrorKind, VendorError, clean_text};
use super::http::{HttpCore, Request, RetryPolicy, StatsSnapshot, endpoint};
use super::limit::Limits;

/// §5.5: no documented limit; 10 in flight is our choice (ConnectWise monitors clientIds for
/// abuse, §5.5/C3). A 429 with Retry-After is waited out by HttpCore.
pub const LIMITS: Limits = Limits::concurrency(10);

/// §5.2: the largest page ConnectWise serves.
pub const PAGE_SIZE: u32 = 1000;

/// The codebase used when none was discovered (§5.1 example).
pub const DEFAULT_CODEBASE: &str = "v4_6_release";

/// A runaway `next` chain (a server bug) stops here instead of looping for ever.
const MAX_PAGES: usize = 10_000;

// ---------------------------------------------------------------------------------------------
// Base URL (§5.1).
// ---------------------------------------------------------------------------------------------

fn config_error(what: impl Into<String>) -> ApiError {
    ApiError::config(Api::ConnectWise, what)
}

/// The `scheme://host[:port]` of what a technician typed: `api-au.myconnectwise.net`,
/// `https://na.myconnectwise.net/`, a pasted browser URL with a path... The host is kept as
/// typed (both `na.` and `api-na.` hosts serve the API). Plain `http` is kept only for
/// loopback hosts (the simulator); anything else is `https`.
fn site_origin(site: &str) -> Result<Url, ApiError> {
    let typed = site.trim();
    if typed.is_empty() {
        return Err(config_error(
            "needs the site, e.g. api-na.myconnectwise.net",
        ));
    }
    let with_scheme = if typed.contains("://") {
        typed.to_string()
    } else {
        format!("https://{typed}")
    };
    let bad = || {
        config_error(format!(
            "site `{}` is not a host name such as api-na.myconnectwise.net",
            clean_text(typed, 80)
        ))
    };
    let parsed = Url::parse(&with_scheme).map_err(|_| bad())?;
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(bad)?;
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1");
    let scheme = match parsed.scheme() {
        "https" => "https",
        "http" if loopback => "http",
        "http" => "https",
        _ => return Err(bad()),
    };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    Url::parse(&format!("{scheme}://{host}{port}/")).map_err(|_| bad())
}

/// `https://{host}/v4_6_release/apis/3.0` from what a technician types (§5.1).
pub fn base_from_site(site: &str) -> Result<Url, ApiError> {
    base_from_site_and_codebase(site, DEFAULT_CODEBASE)
}

/// `https://{host}/{codebase}/apis/3.0` (§5.1), the codebase as discovered (`v2025_1/`).
pub fn base_from_site_and_codebase(site: &str, codebase: &str) -> Result<Url, ApiError> {
    let origin = site_origin(site)?;
    let cb = codebase.trim().trim_matches('/');
    if cb.is_empty()
        || !cb
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(ApiError::malformed(
            Api::ConnectWise,
            format!(
                "a codebase `{}` that is not a path name",
                clean_text(cb, 40)
            ),
        ));
    }
    Ok(endpoint(&origin, &format!("{cb}/apis/3.0")))
}

/// What `GET https://{site}/login/companyinfo/{companyId}` answers (§5.1; only `Codebase` is
/// confirmed, the rest are [UNCONFIRMED] extras).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompanyInfo {
    #[serde(default)]
    pub codebase: Option<String>,
    #[serde(default)]
    pub company_name: Option<String>,
    #[serde(default)]
    pub version_code: Option<String>,
    #[serde(default)]
    pub is_cloud: Option<bool>,
}

/// Codebase discovery (§5.1): returns the company info and the API base URL built from it
/// (the default codebase when the answer has none).
pub async fn discover_codebase(
    client: reqwest::Client,
    site: &str,
    company_id: &str,
) -> Result<(CompanyInfo, Url), ApiError> {
    let origin = site_origin(site)?;
    let company = company_id.trim();
    if company.is_empty() {
        return Err(config_error(
            "needs the company id (the one used to log in)",
        ));
    }
    let mut url = origin.clone();
    url.path_segments_mut()
        .map_err(|_| config_error("cannot build the company info URL"))?
        .clear()
        .extend(["login", "companyinfo", company]);
    let core = HttpCore::new(
        Api::ConnectWise,
        client,
        Limits::concurrency(1),
        parse_error,
    );
    let req = Request::get(url)
        .header("accept", "application/json")
        .operation("GET /login/companyinfo");
    let info: CompanyInfo = core.send_json(req).await?;
    let base = base_from_site_and_codebase(
        origin.as_str(),
        info.codebase.as_deref().unwrap_or(DEFAULT_CODEBASE),
    )?;
    Ok((info, base))
}

// ---------------------------------------------------------------------------------------------
// Link header (§5.2, RFC 8288).
// ---------------------------------------------------------------------------------------------

/// One `<url>; rel="..."` entry of a `Link` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEntry {
    pub url: String,
    /// Relation types, lower-cased (`rel="next last"` gives two).
    pub rels: Vec<String>,
}

/// Parse a `Link` header value: comma-separated entries; a URL in `<>` may itself contain
/// commas and semicolons; parameters may be quoted (with `\` escapes) or bare tokens. Garbage
/// between entries is skipped; an unterminated entry ends the parse. Never panics.
pub fn parse_link_header(value: &str) -> Vec<LinkEntry> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        // Seek the next entry.
        while let Some(&c) = chars.peek() {
            if c == '<' {
                break;
            }
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut url = String::new();
        let mut closed = false;
        for c in chars.by_ref() {
            if c == '>' {
                closed = true;
                break;
            }
            url.push(c);
        }
        if !closed {
            break;
        }
        let mut rels = Vec::new();
        // Parameters until a top-level comma or the end.
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            match chars.peek() {
                None => break,
                Some(',') => {
                    chars.next();
                    break;
                }
                Some(';') => {
                    chars.next();
                }
                Some('<') => break,
                Some(_) => {
                    chars.next();
                    continue;
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c == ';' || c == ',' || c.is_whitespace() {
                    break;
                }
                name.push(c);
                chars.next();
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let mut val = String::new();
            if chars.peek() == Some(&'=') {
                chars.next();
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&'"') {
                    chars.next();
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' => {
                                if let Some(n) = chars.next() {
                                    val.push(n);
                                }
                            }
                            _ => val.push(c),
                        }
                    }
                } else {
                    while let Some(&c) = chars.peek() {
                        if c == ';' || c == ',' || c.is_whitespace() {
                            break;
                        }
                        val.push(c);
                        chars.next();
                    }
                }
            }
            if name.eq_ignore_ascii_case("rel") {
                rels.extend(val.split_whitespace().map(|r| r.to_ascii_lowercase()));
            }
        }
        out.push(LinkEntry {
            url: url.trim().to_string(),
            rels,
        });
    }
    out
}

/// The `rel="next"` URL of a response, from every `Link` header it carries.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_link_header)
        .find(|l| l.rels.iter().any(|r| r == "next") && !l.url.is_empty())
        .map(|l| l.url)
}

// ---------------------------------------------------------------------------------------------
// Conditions (§5.2).
// ---------------------------------------------------------------------------------------------

/// A comparison operator of the `conditions` language (§5.2).
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
    NotContains,
    NotLike,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::Like => "like",
            Op::NotContains => "not contains",
            Op::NotLike => "not like",
        }
    }
}

/// A value in a condition, rendered safely.
#[derive(Debug, Clone, PartialEq)]
pub enum CondValue {
    /// `"text"`, with `\` and `"` escaped by a backslash (§5.2 says strings are in double
    /// quotes; the escape character is [UNCONFIRMED], backslash being what CW's parser and
    /// community clients use). Control characters become spaces.
    Str(String),
    Int(i64),
    Dec(Decimal),
    Bool(bool),
    /// `[2026-01-01T00:00:00Z]`.
    Date(DateTime<Utc>),
    Null,
}

impl CondValue {
    pub fn render(&self) -> String {
        match self {
            CondValue::Str(s) => {
                let mut out = String::with_capacity(s.len() + 2);
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if c.is_control() => out.push(' '),
                        c => out.push(c),
                    }
                }
                out.push('"');
                out
            }
            CondValue::Int(n) => n.to_string(),
            CondValue::Dec(d) => d.normalize().to_string(),
            CondValue::Bool(b) => b.to_string(),
            CondValue::Date(d) => format!("[{}]", d.format("%Y-%m-%dT%H:%M:%SZ")),
            CondValue::Null => "null".into(),
        }
    }
}

impl From<&str> for CondValue {
    fn from(s: &str) -> Self {
        CondValue::Str(s.to_string())
    }
}
impl From<String> for CondValue {
    fn from(s: String) -> Self {
        CondValue::Str(s)
    }
}
impl From<&String> for CondValue {
    fn from(s: &String) -> Self {
        CondValue::Str(s.clone())
    }
}
impl From<i64> for CondValue {
    fn from(n: i64) -> Self {
        CondValue::Int(n)
    }
}
impl From<i32> for CondValue {
    fn from(n: i32) -> Self {
        CondValue::Int(n.into())
    }
}
impl From<u32> for CondValue {
    fn from(n: u32) -> Self {
        CondValue::Int(n.into())
    }
}
impl From<u64> for CondValue {
    fn from(n: u64) -> Self {
        i64::try_from(n)
            .map(CondValue::Int)
            .unwrap_or_else(|_| CondValue::Dec(Decimal::from(n)))
    }
}
impl From<Decimal> for CondValue {
    fn from(d: Decimal) -> Self {
        CondValue::Dec(d)
    }
}
impl From<bool> for CondValue {
    fn from(b: bool) -> Self {
        CondValue::Bool(b)
    }
}
impl From<DateTime<Utc>> for CondValue {
    fn from(d: DateTime<Utc>) -> Self {
        CondValue::Date(d)
    }
}
impl From<NaiveDate> for CondValue {
    fn from(d: NaiveDate) -> Self {
        CondValue::Date(d.and_time(chrono::NaiveTime::MIN).and_utc())
    }
}

/// A `conditions` expression built from checked field names and escaped values.
///
/// ```
/// use cspsync::api::connectwise::{Conditions, Op};
/// let c = Conditions::new()
///     .and("company/id", Op::Eq, 250u32)
///     .and("agreementStatus", Op::Eq, "Active");
/// assert_eq!(c.render().unwrap().as_deref(), Some(r#"company/id=250 and agreementStatus="Active""#));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditions {
    text: String,
    error: Option<String>,
}

fn valid_field(f: &str) -> bool {
    !f.is_empty()
        && !f.starts_with('/')
        && !f.ends_with('/')
        && f.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/')
}

impl Conditions {
    pub fn new() -> Self {
        Conditions::default()
    }

    /// `field op value` alone.
    pub fn of(field: &str, op: Op, value: impl Into<CondValue>) -> Self {
        Conditions::new().and(field, op, value)
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.error.is_none()
    }

    fn check(&mut self, field: &str) -> bool {
        if valid_field(field) {
            return true;
        }
        if self.error.is_none() {
            self.error = Some(format!(
                "`{}` is not a ConnectWise field name (letters, digits, `_` and `/` only)",
                clean_text(field, 60)
            ));
        }
        false
    }

    fn join(mut self, joiner: &str, clause: String) -> Self {
        if !self.text.is_empty() {
            self.text.push(' ');
            self.text.push_str(joiner);
            self.text.push(' ');
        }
        self.text.push_str(&clause);
        self
    }

    fn clause(field: &str, op: Op, value: &CondValue) -> String {
        match op {
            // Symbolic operators are written without spaces (`company/id=250`, §5.2 example).
            Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                format!("{field}{}{}", op.as_str(), value.render())
            }
            _ => format!("{field} {} {}", op.as_str(), value.render()),
        }
    }

    /// `... and field op value`.
    pub fn and(mut self, field: &str, op: Op, value: impl Into<CondValue>) -> Self {
        if !self.check(field) {
            return self;
        }
        let c = Self::clause(field, op, &value.into());
        self.join("and", c)
    }

    /// `... or field op value`.
    pub fn or(mut self, field: &str, op: Op, value: impl Into<CondValue>) -> Self {
        if !self.check(field) {
            return self;
        }
        let c = Self::clause(field, op, &value.into());
        self.join("or", c)
    }

    /// `... and field in (v1,v2,...)`; an empty list matches nothing, so it is written as a
    /// condition that is never true rather than the invalid `in ()`.
    pub fn and_in<V: Into<CondValue>>(
        mut self,
        field: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        if !self.check(field) {
            return self;
        }
        let vals: Vec<String> = values.into_iter().map(|v| v.into().render()).collect();
        let c = if vals.is_empty() {
            format!("({field}=null and {field}!=null)")
        } else {
            format!("{field} in ({})", vals.join(","))
        };
        self.join("and", c)
    }

    /// `... and (group)`.
    pub fn and_group(mut self, group: Conditions) -> Self {
        if let Some(e) = group.error {
            self.error.get_or_insert(e);
            return self;
        }
        if group.text.is_empty() {
            return self;
        }
        self.join("and", format!("({})", group.text))
    }

    /// `... or (group)`.
    pub fn or_group(mut self, group: Conditions) -> Self {
        if let Some(e) = group.error {
            self.error.get_or_insert(e);
            return self;
        }
        if group.text.is_empty() {
            return self;
        }
        self.join("or", format!("({})", group.text))
    }

    /// The expression (`None` when empty), or the first invalid field name.
    pub fn render(&self) -> Result<Option<String>, ApiError> {
        if let Some(e) = &self.error {
            return Err(config_error(format!("cannot build the query: {e}")));
        }
        Ok((!self.text.is_empty()).then(|| self.text.clone()))
    }
}

// ---------------------------------------------------------------------------------------------
// Models (§5.3). Names exactly as ConnectWise's; unknown fields ignored, missing ones default.
// ---------------------------------------------------------------------------------------------

/// A reference to another record: `{id, identifier, name}` (CompanyReference,
/// IvItemReference, AgreementTypeReference, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Reference {
    pub fn id(id: u64) -> Self {
        Reference {
            id: Some(id),
            ..Default::default()
        }
    }
}

/// `_info` (only the fields cspsync reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Info {
    pub last_updated: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
}

/// `GET /company/companies` (§5.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Company {
    pub id: u64,
    #[serde(default)]
    pub identifier: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: Option<Reference>,
    #[serde(default)]
    pub types: Vec<Reference>,
    #[serde(default)]
    pub address_line1: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub zip: Option<String>,
    #[serde(default)]
    pub country: Option<Reference>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub website: Option<String>,
    #[serde(default)]
    pub territory: Option<Reference>,
    #[serde(default)]
    pub default_contact: Option<Reference>,
    #[serde(default)]
    pub deleted_flag: Option<bool>,
    #[serde(default, rename = "_info")]
    pub info: Option<Info>,
}

/// `GET /finance/agreements` (§5.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agreement {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub agreement_type: Option<Reference>,
    #[serde(default)]
    pub company: Option<Reference>,
    #[serde(default)]
    pub contact: Option<Reference>,
    /// `Active`, `Cancelled`, `Expired`, `Inactive`.
    #[serde(default)]
    pub agreement_status: Option<String>,
    #[serde(default)]
    pub start_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub end_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub no_ending_date_flag: Option<bool>,
    #[serde(default)]
    pub cancelled_flag: Option<bool>,
    #[serde(default)]
    pub date_cancelled: Option<DateTime<Utc>>,
    #[serde(default)]
    pub billing_cycle: Option<Reference>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub bill_amount: Option<Decimal>,
    /// `Amount`, `Hours`, `Incidents`.
    #[serde(default)]
    pub application_units: Option<String>,
    #[serde(default)]
    pub invoice_description: Option<String>,
    #[serde(default)]
    pub parent_agreement: Option<Reference>,
    #[serde(default)]
    pub custom_fields: Vec<Value>,
    #[serde(default, rename = "_info")]
    pub info: Option<Info>,
}

impl Agreement {
    /// Cancelled, expired or inactive (§5.3 `agreementStatus`, `cancelledFlag`): it bills
    /// nothing, so its additions are neither fetched nor reconciled.
    pub fn is_closed(&self) -> bool {
        self.cancelled_flag.unwrap_or(false)
            || self.agreement_status.as_deref().is_some_and(|st| {
                ["cancelled", "expired", "inactive"]
                    .iter()
                    .any(|c| st.eq_ignore_ascii_case(c))
            })
    }
}

/// An agreement addition (§5.3, the whole table).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Addition {
    // identity
    pub id: u64,
    #[serde(default)]
    pub agreement_id: Option<u64>,
    #[serde(default)]
    pub agreement_status: Option<String>,
    // product
    #[serde(default)]
    pub product: Option<Reference>,
    // billing: `Billable`, `DoNotBill`, `NoCharge`
    #[serde(default)]
    pub bill_customer: Option<String>,
    // quantity (a number in ConnectWise; fractional quantities exist)
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub quantity: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub less_included: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub billed_quantity: Option<Decimal>,
    // money
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub unit_price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub unit_cost: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub ext_price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub ext_cost: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub margin: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub prorate_cost: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub prorate_price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub extended_prorate_cost: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub extended_prorate_price: Option<Decimal>,
    #[serde(default)]
    pub prorate_current_period_flag: Option<bool>,
    // dates
    #[serde(default)]
    pub effective_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub cancelled_date: Option<DateTime<Utc>>,
    // text
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub invoice_description: Option<String>,
    #[serde(default)]
    pub serial_number: Option<String>,
    #[serde(default)]
    pub uom: Option<String>,
    // flags and other
    #[serde(default)]
    pub taxable_flag: Option<bool>,
    #[serde(default)]
    pub purchase_item_flag: Option<bool>,
    #[serde(default)]
    pub special_order_flag: Option<bool>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub sequence_number: Option<Decimal>,
    #[serde(default)]
    pub invoice_grouping: Option<Reference>,
    #[serde(default)]
    pub opportunity: Option<Reference>,
    #[serde(default)]
    pub custom_fields: Vec<Value>,
    #[serde(default, rename = "_info")]
    pub info: Option<Info>,
}

/// `GET /procurement/catalog` (§5.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogItem {
    pub id: u64,
    #[serde(default)]
    pub identifier: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub customer_description: String,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub cost: Option<Decimal>,
    #[serde(default)]
    pub inactive_flag: Option<bool>,
    /// `Agreement`, `Bundle`, `Inventory`, `NonInventory`, `Service`.
    #[serde(default)]
    pub product_class: Option<String>,
    #[serde(default)]
    pub category: Option<Reference>,
    #[serde(default)]
    pub subcategory: Option<Reference>,
    #[serde(default, rename = "type")]
    pub item_type: Option<Reference>,
    #[serde(default)]
    pub manufacturer: Option<Reference>,
    #[serde(default)]
    pub manufacturer_part_number: Option<String>,
    #[serde(default)]
    pub vendor: Option<Reference>,
    #[serde(default)]
    pub vendor_sku: Option<String>,
    #[serde(default)]
    pub recurring_flag: Option<bool>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub recurring_revenue: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub recurring_cost: Option<Decimal>,
    #[serde(default)]
    pub recurring_bill_cycle: Option<Reference>,
    #[serde(default)]
    pub taxable_flag: Option<bool>,
    #[serde(default)]
    pub unit_of_measure: Option<Reference>,
    #[serde(default, rename = "_info")]
    pub info: Option<Info>,
}

/// `billCustomer` of an addition (§5.3, required on create).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BillCustomer {
    #[default]
    Billable,
    DoNotBill,
    NoCharge,
}

/// The body of `POST /finance/agreements/{id}/additions` (§5.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAddition {
    /// The catalog item, by `id` or `identifier`.
    pub product: Reference,
    pub bill_customer: BillCustomer,
    #[serde(with = "rust_decimal::serde::float")]
    pub quantity: Decimal,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::float_option"
    )]
    pub less_included: Option<Decimal>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::float_option"
    )]
    pub unit_price: Option<Decimal>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::float_option"
    )]
    pub unit_cost: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taxable_flag: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prorate_current_period_flag: Option<bool>,
}

/// One JSON Patch operation (§5.3: `[{"op":"replace","path":"quantity","value":30}]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchOp {
    pub op: PatchKind,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchKind {
    Replace,
    Add,
    Remove,
}

impl PatchOp {
    pub fn replace(path: &str, value: impl Into<Value>) -> Self {
        PatchOp {
            op: PatchKind::Replace,
            path: path.to_string(),
            value: Some(value.into()),
        }
    }
}

/// A decimal as a JSON number: whole numbers stay integers (`30`, as in the §5.3 example).
pub fn decimal_json(d: Decimal) -> Value {
    let n = d.normalize();
    if n.scale() == 0
        && let Ok(i) = i64::try_from(n)
    {
        return Value::from(i);
    }
    // Not whole: a JSON number via its exact decimal text.
    serde_json::from_str::<Value>(&n.to_string())
        .ok()
        .filter(Value::is_number)
        .unwrap_or(Value::Null)
}

#[derive(Deserialize)]
struct Count {
    count: u64,
}

// ---------------------------------------------------------------------------------------------
// Errors (§5.4).
// ---------------------------------------------------------------------------------------------

/// `{code, message, errors:[{code, message, resource, field}]}` → code, message and details
/// lines `field: message` (§5.4). Non-JSON bodies give the HTML title or the text.
pub fn parse_error(status: u16, headers: &HeaderMap, body: &[u8]) -> VendorError {
    let _ = status;
    let mut v = VendorError::default();
    let text = |x: Option<&Value>| -> Option<String> {
        match x? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => {
            v.code = text(m.get("code"));
            v.message = text(m.get("message"));
            if let Some(Value::Array(errors)) = m.get("errors") {
                for e in errors.iter().take(20) {
                    let msg = text(e.get("message")).or_else(|| text(e.get("code")));
                    let Some(msg) = msg else { continue };
                    let line = match text(e.get("field")).or_else(|| text(e.get("resource"))) {
                        Some(f) => format!("{f}: {msg}"),
                        None => msg,
                    };
                    v.details.push(line);
                }
            }
        }
        Ok(Value::String(s)) => v.message = Some(s).filter(|s| !s.trim().is_empty()),
        Ok(_) => {}
        Err(_) => v.message = text_error_message(headers, body),
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The client.
// ---------------------------------------------------------------------------------------------

/// ConnectWise API member credentials (§5.1).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectWiseCredentials {
    /// The login company id (`contoso` in `contoso+public:private`).
    pub company_id: String,
    pub public_key: String,
    pub private_key: Secret,
    /// The integration's clientId GUID (required on all calls since 2019, §5.1).
    pub client_id: String,
}

impl fmt::Debug for ConnectWiseCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWiseCredentials")
            .field("company_id", &self.company_id)
            .field("public_key", &"[redacted]")
            .field("private_key", &self.private_key)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// ConnectWise Manage REST 3.0 client.
#[derive(Clone)]
pub struct ConnectWiseClient {
    base: Url,
    http: HttpCore,
    company_id: String,
    client_id: String,
    /// The whole `Basic ...` header value.
    authorization: Secret,
    /// `pageSize` of list calls (§5.2: at most 1000, the default here).
    page_size: u32,
}

impl fmt::Debug for ConnectWiseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWiseClient")
            .field("base", &self.base.as_str())
            .field("company_id", &self.company_id)
            .field("client_id", &self.client_id)
            .field("authorization", &self.authorization)
            .finish_non_exhaustive()
    }
}

fn with_maybe_applied(mut e: ApiError, what: &str) -> ApiError {
    if matches!(
        e.kind,
        ErrorKind::Transport {
            maybe_applied: true
        }
    ) {
        e.message = format!(
            "{}; {what} may have been applied, so check ConnectWise before trying again",
            e.message
        );
    }
    e
}

impl ConnectWiseClient {
    /// `base` is `https://{site}/{codebase}/apis/3.0` ([`base_from_site`], or
    /// [`crate::config::Endpoints::connectwise`]).
    pub fn new(base: Url, http: reqwest::Client, creds: ConnectWiseCredentials) -> Self {
        let company_id = creds.company_id.trim().to_string();
        let user = format!(
            "{company_id}+{}:{}",
            creds.public_key.trim(),
            creds.private_key.expose().trim()
        );
        let authorization = Secret::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user)
        ));
        ConnectWiseClient {
            base,
            http: HttpCore::new(Api::ConnectWise, http, LIMITS, parse_error),
            company_id,
            client_id: creds.client_id.trim().to_string(),
            authorization,
            page_size: PAGE_SIZE,
        }
    }

    /// Another `pageSize` for list calls, clamped to 1..=1000 (§5.2: max 1000). Fewer items
    /// per page means more requests; tests use it to page through small worlds.
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.clamp(1, PAGE_SIZE);
        self
    }

    /// The `pageSize` list calls ask for.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Another retry policy (tests use short backoffs).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.http = self.http.with_retry(retry);
        self
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.http.stats()
    }

    pub fn limits(&self) -> Limits {
        self.http.limits()
    }

    /// A request with the §5.1 headers: Basic auth, clientId, Accept (Content-Type is added
    /// by HttpCore for JSON bodies and here for body-less calls).
    fn request(&self, method: Method, url: Url, has_body: bool) -> Request {
        let r = Request::new(method, url)
            .header("authorization", self.authorization.expose())
            .header("clientid", &self.client_id)
            .header("accept", "application/json");
        if has_body {
            r
        } else {
            r.header("content-type", "application/json")
        }
    }

    /// Every item of a list endpoint (§5.2): `pageSize` ([`Self::with_page_size`], 1000 by
    /// default), then the `Link` header's
    /// `rel="next"` URL, verbatim, until there is none. `conditions` is the rendered
    /// expression (see [`Conditions`]); `extra` adds query pairs (`orderBy`, `fields`,
    /// `childConditions`); a `pageSize` or `page` in it is ignored.
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        path: &str,
        conditions: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<Vec<T>, ApiError> {
        let mut url = endpoint(&self.base, path);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("pageSize", &self.page_size.to_string());
            if let Some(c) = conditions.map(str::trim).filter(|c| !c.is_empty()) {
                q.append_pair("conditions", c);
            }
            for (k, v) in extra {
                if !k.eq_ignore_ascii_case("pageSize") && !k.eq_ignore_ascii_case("page") {
                    q.append_pair(k, v);
                }
            }
        }
        let op = format!("GET {}", url.path());
        let mut out: Vec<T> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            seen.insert(url.as_str().to_string());
            let req = self
                .request(Method::GET, url.clone(), false)
                .operation(op.clone());
            let resp = self.http.send(req).await?;
            let page: Vec<T> = resp.json()?;
            out.extend(page);
            let Some(next) = next_link(&resp.headers) else {
                return Ok(out);
            };
            // Verbatim when absolute; a relative link is resolved against this page.
            let next_url = url.join(&next).map_err(|_| {
                ApiError::malformed(Api::ConnectWise, "a next-page link that is not a URL")
                    .with_operation(op.clone())
            })?;
            // Credentials go with every page: never to another host.
            if next_url.origin() != self.base.origin() {
                return Err(ApiError::malformed(
                    Api::ConnectWise,
                    format!(
                        "a next-page link to another host ({})",
                        clean_text(next_url.host_str().unwrap_or("?"), 80)
                    ),
                )
                .with_operation(op));
            }
            if seen.contains(next_url.as_str()) || seen.len() >= MAX_PAGES {
                return Err(ApiError::malformed(
                    Api::ConnectWise,
                    "next-page links that go round in a circle",
                )
                .with_operation(op));
            }
            url = next_url;
        }
    }

    async fn get_one<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let url = endpoint(&self.base, path);
        self.http
            .send_json(self.request(Method::GET, url, false))
            .await
    }

    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        conditions: Option<&Conditions>,
    ) -> Result<Vec<T>, ApiError> {
        let rendered = match conditions {
            Some(c) => c.render()?,
            None => None,
        };
        self.get_all(path, rendered.as_deref(), &[]).await
    }

    /// `GET /company/companies` (§5.3).
    pub async fn companies(
        &self,
        conditions: Option<&Conditions>,
    ) -> Result<Vec<Company>, ApiError> {
        self.list("company/companies", conditions).await
    }

    /// `GET /company/companies/{id}`.
    pub async fn company(&self, id: u64) -> Result<Company, ApiError> {
        self.get_one(&format!("company/companies/{id}")).await
    }

    /// `GET /finance/agreements` (§5.3).
    pub async fn agreements(
        &self,
        conditions: Option<&Conditions>,
    ) -> Result<Vec<Agreement>, ApiError> {
        self.list("finance/agreements", conditions).await
    }

    /// `GET /finance/agreements/{id}`.
    pub async fn agreement(&self, id: u64) -> Result<Agreement, ApiError> {
        self.get_one(&format!("finance/agreements/{id}")).await
    }

    /// `GET /finance/agreements/{id}/additions` (§5.3).
    pub async fn additions(
        &self,
        agreement_id: u64,
        conditions: Option<&Conditions>,
    ) -> Result<Vec<Addition>, ApiError> {
        self.list(
            &format!("finance/agreements/{agreement_id}/additions"),
            conditions,
        )
        .await
    }

    /// `GET /procurement/catalog` (§5.3; not `/procurement/products`).
    pub async fn catalog(
        &self,
        conditions: Option<&Conditions>,
    ) -> Result<Vec<CatalogItem>, ApiError> {
        self.list("procurement/catalog", conditions).await
    }

    /// `GET {path}/count` → `{"count": N}` (§5.2).
    pub async fn count(
        &self,
        path: &str,
        conditions: Option<&Conditions>,
    ) -> Result<u64, ApiError> {
        let mut url = endpoint(&self.base, &format!("{}/count", path.trim_end_matches('/')));
        if let Some(c) = conditions.map(Conditions::render).transpose()?.flatten() {
            url.query_pairs_mut().append_pair("conditions", &c);
        }
        let c: Count = self
            .http
            .send_json(self.request(Method::GET, url, false))
            .await?;
        Ok(c.count)
    }

    /// `POST /finance/agreements/{id}/additions` (§5.3). Never retried once it may have
    /// reached the server: a dropped connection says the addition may have been created.
    pub async fn create_addition(
        &self,
        agreement_id: u64,
        addition: &NewAddition,
    ) -> Result<Addition, ApiError> {
        let url = endpoint(
            &self.base,
            &format!("finance/agreements/{agreement_id}/additions"),
        );
        let req = self
            .request(Method::POST, url, true)
            .json(addition)
            .idempotent(false);
        self.http.send_json(req).await.map_err(|e| {
            with_maybe_applied(e, &format!("the new addition to agreement {agreement_id}"))
        })
    }

    /// `PATCH /finance/agreements/{a}/additions/{id}` with a JSON Patch array (§5.3). Sent
    /// again after a failure only when every operation is a `replace` (idempotent).
    pub async fn patch_addition(
        &self,
        agreement_id: u64,
        addition_id: u64,
        ops: &[PatchOp],
    ) -> Result<Addition, ApiError> {
        let url = endpoint(
            &self.base,
            &format!("finance/agreements/{agreement_id}/additions/{addition_id}"),
        );
        let idempotent = !ops.is_empty() && ops.iter().all(|o| o.op == PatchKind::Replace);
        let req = self
            .request(Method::PATCH, url, true)
            .json(ops)
            .idempotent(idempotent);
        self.http
            .send_json(req)
            .await
            .map_err(|e| with_maybe_applied(e, &format!("the change to addition {addition_id}")))
    }

    /// Set an addition's quantity: `[{"op":"replace","path":"quantity","value":N}]` (§5.3).
    pub async fn set_addition_quantity(
        &self,
        agreement_id: u64,
        addition_id: u64,
        quantity: Decimal,
    ) -> Result<Addition, ApiError> {
        let op = PatchOp::replace("quantity", decimal_json(quantity));
        self.patch_addition(agreement_id, addition_id, &[op]).await
    }

    /// Cancel an addition from `date` by setting `cancelledDate` (§5.3: semantics
    /// [UNCONFIRMED]; midnight UTC of that day, ISO 8601 with `Z`).
    pub async fn cancel_addition(
        &self,
        agreement_id: u64,
        addition_id: u64,
        date: NaiveDate,
    ) -> Result<Addition, ApiError> {
        let when = format!("{}T00:00:00Z", date.format("%Y-%m-%d"));
        let op = PatchOp::replace("cancelledDate", when);
        self.patch_addition(agreement_id, addition_id, &[op]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_agreements_are_cancelled_expired_or_inactive() {
        let agreement = |status: &str, cancelled: Option<bool>| -> Agreement {
            serde_json::from_value(
                serde_json::json!({"id": 1, "agreementStatus": status, "cancelledFlag": cancelled}),
            )
            .expect("agreement")
        };
        assert!(!agreement("Active", Some(false)).is_closed());
        assert!(agreement("Active", Some(true)).is_closed());
        for st in ["Cancelled", "EXPIRED", "inactive"] {
            assert!(agreement(st, None).is_closed(), "{st}");
        }
    }
    use crate::api::http::{decode_json, error_from_response};
    use proptest::prelude::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn sites_become_base_urls() {
        for typed in [
            "api-au.myconnectwise.net",
            "https://api-au.myconnectwise.net",
            "https://api-au.myconnectwise.net/",
            " API-AU.myconnectwise.net/v4_6_release/services/system_io/Service/fv_sr100_request.rails?x=1 ",
            "http://api-au.myconnectwise.net",
        ] {
            assert_eq!(
                base_from_site(typed).unwrap().as_str(),
                "https://api-au.myconnectwise.net/v4_6_release/apis/3.0",
                "{typed}"
            );
        }
        assert_eq!(
            base_from_site("https://na.myconnectwise.net")
                .unwrap()
                .as_str(),
            "https://na.myconnectwise.net/v4_6_release/apis/3.0"
        );
        assert_eq!(
            base_from_site("http://127.0.0.1:8080/x").unwrap().as_str(),
            "http://127.0.0.1:8080/v4_6_release/apis/3.0"
        );
        assert_eq!(
            base_from_site_and_codebase("cw.example.com:8443", "v2025_1/")
                .unwrap()
                .as_str(),
            "https://cw.example.com:8443/v2025_1/apis/3.0"
        );
        for bad in ["", "   ", "ftp://x.example", "https://", "not a host"] {
            let e = base_from_site(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Config, "{bad}");
        }
        assert!(base_from_site_and_codebase("x.example", "../etc").is_err());
    }

    #[test]
    fn link_headers() {
        let v = r#"<https://h/v4_6_release/apis/3.0/company/companies?pageSize=1000&page=2>; rel="next", <https://h/v4_6_release/apis/3.0/company/companies?pageSize=1000&page=5>; rel="last""#;
        let l = parse_link_header(v);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].rels, vec!["next"]);
        assert!(l[0].url.ends_with("page=2"));
        assert_eq!(l[1].rels, vec!["last"]);

        // Commas and semicolons inside <>, quoted rel lists, odd spacing, bare tokens.
        let v = r#"<https://h/a?conditions=name%20like%20"a,b";x=1&page=1>;rel=first ,<https://h/a?c=1,2;3&page=3> ; title="x, y; z" ; REL="Prev Next" , <https://h/last>; rel=last"#;
        let l = parse_link_header(v);
        assert_eq!(l.len(), 3, "{l:?}");
        assert_eq!(
            l[0].url,
            r#"https://h/a?conditions=name%20like%20"a,b";x=1&page=1"#
        );
        assert_eq!(l[0].rels, vec!["first"]);
        assert_eq!(l[1].url, "https://h/a?c=1,2;3&page=3");
        assert_eq!(l[1].rels, vec!["prev", "next"]);
        let mut h = HeaderMap::new();
        h.insert(LINK, HeaderValue::from_str(v).unwrap());
        assert_eq!(next_link(&h).as_deref(), Some("https://h/a?c=1,2;3&page=3"));

        // Several Link headers.
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static("<https://h/first>; rel=\"first\""),
        );
        h.append(
            LINK,
            HeaderValue::from_static("<https://h/p3>; rel=\"next\""),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://h/p3"));

        // Nasty input: no next, unterminated, garbage, escaped quotes.
        assert!(parse_link_header("").is_empty());
        assert!(parse_link_header("garbage, more; rel=next").is_empty());
        assert!(parse_link_header("<https://h/unterminated; rel=\"next\"").is_empty());
        let l = parse_link_header(r#"<u>; rel="ne\"xt", <v>; rel="#);
        assert_eq!(l[0].rels, vec!["ne\"xt"]);
        assert_eq!(l[1].url, "v");
        assert!(l[1].rels.is_empty());
        let l = parse_link_header(r#"<u>; rel="next"#);
        assert_eq!(l[0].rels, vec!["next"]);
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static("<https://h/last>; rel=\"last\""),
        );
        assert_eq!(next_link(&h), None);
        h.insert(LINK, HeaderValue::from_static("<>; rel=\"next\""));
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn conditions_are_escaped() {
        let c = Conditions::new().and("company/id", Op::Eq, 250u32).and(
            "agreementStatus",
            Op::Eq,
            "Active",
        );
        assert_eq!(
            c.render().unwrap().as_deref(),
            Some(r#"company/id=250 and agreementStatus="Active""#)
        );
        let c = Conditions::of("name", Op::Like, r#"O"Brien \ "Sons" and id=1"#);
        assert_eq!(
            c.render().unwrap().unwrap(),
            r#"name like "O\"Brien \\ \"Sons\" and id=1""#
        );
        let c = Conditions::of("name", Op::Eq, "a\nb\tc");
        assert_eq!(c.render().unwrap().unwrap(), r#"name="a b c""#);
        let d: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let c = Conditions::of("_info/lastUpdated", Op::Gt, d)
            .or(
                "lastUpdated",
                Op::Ge,
                NaiveDate::from_ymd_opt(2026, 2, 3).unwrap(),
            )
            .and("unitPrice", Op::Lt, Decimal::new(3455, 2))
            .and("cancelledFlag", Op::Eq, false)
            .and("cancelledDate", Op::Eq, CondValue::Null)
            .and("name", Op::NotContains, "x");
        assert_eq!(
            c.render().unwrap().unwrap(),
            "_info/lastUpdated>[2026-01-01T00:00:00Z] or lastUpdated>=[2026-02-03T00:00:00Z] and unitPrice<34.55 and cancelledFlag=false and cancelledDate=null and name not contains \"x\""
        );
        let c = Conditions::new()
            .and_in("id", [1u64, 2, 3])
            .and_group(Conditions::of("a", Op::Eq, 1i64).or("b", Op::Eq, 2i64));
        assert_eq!(
            c.render().unwrap().unwrap(),
            "id in (1,2,3) and (a=1 or b=2)"
        );
        let none: [u64; 0] = [];
        let c = Conditions::new().and_in("id", none);
        assert_eq!(c.render().unwrap().unwrap(), "(id=null and id!=null)");
        assert_eq!(Conditions::new().render().unwrap(), None);
        // Field names are checked: a spliced expression is refused, not sent.
        for bad in ["id=1 or id", "", "/id", "name\"", "a b"] {
            let e = Conditions::of(bad, Op::Eq, 1i64).render().unwrap_err();
            assert_eq!(e.kind, ErrorKind::Config, "{bad}");
            assert!(e.message.contains("not a ConnectWise field name"), "{e}");
        }
        let e = Conditions::new()
            .and_group(Conditions::of("bad field", Op::Eq, 1i64))
            .render()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config);
    }

    #[test]
    fn decimals_as_json_numbers() {
        assert_eq!(decimal_json(Decimal::new(30, 0)).to_string(), "30");
        assert_eq!(decimal_json(Decimal::new(3000, 2)).to_string(), "30");
        assert_eq!(decimal_json(Decimal::new(155, 1)).to_string(), "15.5");
        let ops = [PatchOp::replace(
            "quantity",
            decimal_json(Decimal::new(30, 0)),
        )];
        assert_eq!(
            serde_json::to_string(&ops).unwrap(),
            r#"[{"op":"replace","path":"quantity","value":30}]"#
        );
    }

    const ADDITIONS: &str = r#"[{"id":9012,"product":{"id":731,"identifier":"CFQ7TTC0LCHC-P1Y"},"quantity":25,"lessIncluded":0,
      "unitPrice":34.55,"unitCost":28.19,"extPrice":863.75,"extCost":704.75,"margin":159.0,"billCustomer":"Billable",
      "effectiveDate":"2025-07-01T00:00:00Z","cancelledDate":null,"taxableFlag":true,"agreementId":77,
      "description":"Microsoft 365 Business Premium (annual)","agreementStatus":"Active","_info":{"lastUpdated":"2026-04-01T00:00:00Z"},
      "somethingNew":{"x":[1,2]}}]"#;

    #[test]
    fn models_read_the_spec_samples() {
        let h = HeaderMap::new();
        let a: Vec<Addition> =
            decode_json(Api::ConnectWise, "op", &h, ADDITIONS.as_bytes()).unwrap();
        let a = &a[0];
        assert_eq!(a.quantity, Some(Decimal::from(25)));
        assert_eq!(a.unit_price, Some(Decimal::new(3455, 2)));
        assert_eq!(a.ext_price, Some(Decimal::new(86375, 2)));
        assert_eq!(a.product.as_ref().unwrap().id, Some(731));
        assert_eq!(a.cancelled_date, None);
        assert_eq!(
            a.effective_date.unwrap().to_rfc3339(),
            "2025-07-01T00:00:00+00:00"
        );
        assert_eq!(
            a.info.as_ref().unwrap().last_updated.unwrap().to_rfc3339(),
            "2026-04-01T00:00:00+00:00"
        );
        // Round trip keeps ConnectWise's names and exact money.
        let back = serde_json::to_value(a).unwrap();
        assert_eq!(back["unitPrice"], serde_json::json!(34.55));
        assert!(back.get("_info").is_some());

        let c: Vec<Company> = decode_json(
            Api::ConnectWise,
            "op",
            &h,
            br#"[{"id":250,"identifier":"ContosoLtd","name":"Contoso Ltd","status":{"id":1,"name":"Active"},
              "types":[{"id":1,"name":"Client"}],"phoneNumber":"0295551234","deletedFlag":false,
              "_info":{"lastUpdated":"2026-03-02T04:11:09Z","updatedBy":"apiuser"}}]"#,
        )
        .unwrap();
        assert_eq!(c[0].types[0].name.as_deref(), Some("Client"));
        assert_eq!(
            c[0].info.as_ref().unwrap().updated_by.as_deref(),
            Some("apiuser")
        );

        let ag: Agreement = decode_json(
            Api::ConnectWise,
            "op",
            &h,
            br#"{"id":77,"name":"CSP","type":{"id":3,"name":"Microsoft CSP"},"company":{"id":250,"identifier":"ContosoLtd"},
              "agreementStatus":"Active","startDate":"2025-07-01T00:00:00Z","endDate":null,"billingCycle":{"id":2,"name":"Monthly"},
              "cancelledFlag":false,"billAmount":0}"#,
        )
        .unwrap();
        assert_eq!(
            ag.agreement_type.unwrap().name.as_deref(),
            Some("Microsoft CSP")
        );
        assert_eq!(ag.billing_cycle.unwrap().name.as_deref(), Some("Monthly"));
        assert_eq!(ag.cancelled_flag, Some(false));

        let cat: Vec<CatalogItem> = decode_json(
            Api::ConnectWise,
            "op",
            &h,
            br#"[{"id":731,"identifier":"CFQ7TTC0LCHC-P1Y","description":"M365 BP","customerDescription":"M365 BP",
               "price":34.55,"cost":28.19,"productClass":"Agreement","type":{"id":1,"name":"Licence"}}]"#,
        )
        .unwrap();
        assert_eq!(cat[0].cost, Some(Decimal::new(2819, 2)));
        assert_eq!(
            cat[0].item_type.as_ref().unwrap().name.as_deref(),
            Some("Licence")
        );

        // Wrong type or a missing id are typed errors.
        let e = decode_json::<Vec<Addition>>(Api::ConnectWise, "op", &h, br#"[{"id":"x"}]"#)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        let e = decode_json::<Vec<Addition>>(Api::ConnectWise, "op", &h, br#"[{"quantity":1}]"#)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        let e =
            decode_json::<Vec<Addition>>(Api::ConnectWise, "op", &h, br#"{"id":1}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
    }

    #[test]
    fn new_addition_body() {
        let n = NewAddition {
            product: Reference::id(731),
            bill_customer: BillCustomer::Billable,
            quantity: Decimal::from(25),
            unit_price: Some(Decimal::new(3455, 2)),
            effective_date: Some("2026-05-01T00:00:00Z".parse().unwrap()),
            ..Default::default()
        };
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"product":{"id":731},"billCustomer":"Billable","quantity":25.0,
                "unitPrice":34.55,"effectiveDate":"2026-05-01T00:00:00Z"})
        );
    }

    #[test]
    fn error_bodies() {
        let h = HeaderMap::new();
        let body = br#"{"code":"InvalidObject","message":"company object is invalid",
          "errors":[{"code":"OutOfRange","message":"The field yearEstablished must be between 1900 and 9999.","resource":"company","field":"yearEstablished"},
                    {"code":"Required","message":"name is required","resource":"company"},
                    {"code":"NoMessage"}, 7]}"#;
        let v = parse_error(400, &h, body);
        assert_eq!(v.code.as_deref(), Some("InvalidObject"));
        assert_eq!(v.message.as_deref(), Some("company object is invalid"));
        assert_eq!(
            v.details,
            vec![
                "yearEstablished: The field yearEstablished must be between 1900 and 9999.",
                "company: name is required",
                "NoMessage"
            ]
        );
        let e = error_from_response(
            Api::ConnectWise,
            parse_error,
            400,
            &h,
            body,
            "POST /company/companies",
        );
        assert_eq!(e.kind, ErrorKind::Rejected);
        assert!(e.to_string().starts_with(
            "ConnectWise Manage said: company object is invalid (HTTP 400, InvalidObject) [POST /company/companies]; yearEstablished:"
        ), "{e}");
        let v = parse_error(
            401,
            &h,
            br#"{"code":"Unauthorized","message":"Authentication failed."}"#,
        );
        assert_eq!(v.code.as_deref(), Some("Unauthorized"));
        let v = parse_error(500, &h, br#"{"code":5,"message":["no"],"errors":"x"}"#);
        assert_eq!((v.code.as_deref(), v.message), (Some("5"), None));
        let v = parse_error(
            502,
            &h,
            b"<html><head><title>502 Bad Gateway</title></head></html>",
        );
        assert_eq!(v.message.as_deref(), Some("502 Bad Gateway"));
        let v = parse_error(500, &h, br#"{"code":"InvalidObject","mess"#);
        assert!(v.code.is_none());
        let v = parse_error(404, &h, b"");
        assert_eq!(v, VendorError::default());
    }

    #[test]
    fn debug_redacts_keys() {
        let creds = ConnectWiseCredentials {
            company_id: "contoso".into(),
            public_key: "PUBLICKEY123".into(),
            private_key: Secret::new("PRIVATEKEY456"),
            client_id: "5b7c8f0e-2c51-4d0e-9a7a-1c2d3e4f5a6b".into(),
        };
        let d = format!("{creds:?}");
        assert!(
            !d.contains("PUBLICKEY123") && !d.contains("PRIVATEKEY456"),
            "{d}"
        );
        let c = ConnectWiseClient::new(
            base_from_site("api-au.myconnectwise.net").unwrap(),
            reqwest::Client::new(),
            creds,
        );
        let d = format!("{c:?}");
        assert!(!d.contains("PRIVATEKEY456") && !d.contains("Basic"), "{d}");
        let encoded =
            base64::engine::general_purpose::STANDARD.encode("contoso+PUBLICKEY123:PRIVATEKEY456");
        assert!(!d.contains(&encoded), "{d}");
        assert!(d.contains("contoso"), "{d}");
        assert_eq!(c.authorization.expose(), format!("Basic {encoded}"));
        assert_eq!(c.limits().global_concurrency, 10);
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        crate::api::json_strategy::json_with(
            &[
                "id",
                "code",
                "message",
                "errors",
                "field",
                "resource",
                "quantity",
                "unitPrice",
                "effectiveDate",
                "product",
                "_info",
                "lastUpdated",
                "name",
                "types",
                "count",
            ],
            &["2026-01-01T00:00:00Z"],
        )
    }

    fn exercise(body: &[u8]) {
        let h = HeaderMap::new();
        let _ = decode_json::<Vec<Addition>>(Api::ConnectWise, "op", &h, body);
        let _ = decode_json::<Vec<Company>>(Api::ConnectWise, "op", &h, body);
        let _ = decode_json::<Vec<Agreement>>(Api::ConnectWise, "op", &h, body);
        let _ = decode_json::<Vec<CatalogItem>>(Api::ConnectWise, "op", &h, body);
        let _ = decode_json::<Count>(Api::ConnectWise, "op", &h, body);
        let _ = decode_json::<CompanyInfo>(Api::ConnectWise, "op", &h, body);
        for status in [400, 401, 404, 409, 429, 500] {
            let _ = error_from_response(Api::ConnectWise, parse_error, status, &h, body, "op");
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
            exercise(&serde_json::to_vec(&Value::Array(vec![v])).unwrap());
        }

        #[test]
        fn link_parser_never_panics(s in "[<>;,=\" a-z\\\\]{0,60}|.{0,60}") {
            let links = parse_link_header(&s);
            for l in links {
                prop_assert!(!l.url.contains('>'));
            }
        }

        #[test]
        fn escaped_strings_stay_one_value(s in ".{0,40}") {
            let r = CondValue::Str(s).render();
            // Unescaped quotes only at both ends.
            let inner = &r[1..r.len() - 1];
            let mut escaped = false;
            for c in inner.chars() {
                if escaped { escaped = false; continue; }
                match c {
                    '\\' => escaped = true,
                    '"' => prop_assert!(false, "bare quote in {r}"),
                    c => prop_assert!(!c.is_control()),
                }
            }
            prop_assert!(!escaped, "dangling backslash in {r}");
        }

        #[test]
        fn sites_never_panic(s in ".{0,60}") {
            if let Ok(u) = base_from_site(&s) {
                prop_assert!(u.as_str().ends_with("/v4_6_release/apis/3.0"));
            }
        }
    }
}
