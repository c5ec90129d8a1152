//! Autotask PSA REST API v1.0 client (reference/external-apis.md §6).
//!
//! - Zone discovery (§6.1): `GET {discovery}/v1.0/zoneInformation?user={email}` names the zone
//!   whose `url` is the base of every entity call (`{url}v1.0/{Entity}`).
//! - Every call carries `ApiIntegrationCode`, `UserName`, `Secret` (and `Content-Type:
//!   application/json`) (§6.1).
//! - Queries (§6.2) are `POST {Entity}/query` with a typed [`Filter`] list; pages are followed
//!   through the opaque `pageDetails.nextPageUrl` with GET; `in` lists longer than the
//!   500-OR-condition limit are split over several queries and the results concatenated.
//! - Writes (§6.3): service adjustments and contract services. Creates are not idempotent:
//!   HttpCore never resends them once they may have reached Autotask.
//! - Limits (§6.5): 3 concurrent calls per object endpoint (the limiter key is the first path
//!   segment after `v1.0/`: the entity, or `Contracts` for its child collections), 9 overall;
//!   the hourly allowance is shared with every other integration, so a 429 and its
//!   Retry-After are honoured by HttpCore.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use url::Url;

use super::error::{Api, ApiError, ErrorKind, VendorError, clean_text};
use super::http::{HttpCore, Request, RetryPolicy, StatsSnapshot, decode_json, endpoint};
use super::limit::Limits;

/// Records per query page; Autotask allows 1..=500 (§6.2).
pub const MAX_RECORDS: u32 = 500;
/// "Queries are limited to 500 or fewer 'OR' conditions" (§6.2).
pub const MAX_OR_CONDITIONS: usize = 500;
/// The limiter key of the child-collection writes `Contracts/{id}/Services` and
/// `Contracts/{id}/ServiceAdjustments` (§6.3). The thread limit is "per object endpoint" (§6.5),
/// and the endpoint these calls hit is `Contracts`: the e2e test found them keyed as
/// `ContractServices`/`ContractServiceAdjustments`, so three contract queries and three
/// adjustments ran at once and Autotask (the sim) refused the fourth call on `Contracts`.
const CONTRACTS_ENDPOINT: &str = "Contracts";
/// Safety net against a server whose `nextPageUrl` never ends (500 × 20,000 = 10 M records).
const MAX_PAGES: usize = 20_000;

// ---------------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------------

pub use crate::secret::Secret;

/// The API user's credentials (§6.1 headers).
#[derive(Clone)]
pub struct AutotaskCredentials {
    /// The API user's e-mail address (`UserName` header, zone lookup `user=`).
    pub username: String,
    /// The API user's secret (`Secret` header).
    pub secret: Secret,
    /// The API tracking identifier (`ApiIntegrationCode` header); thread limits count per
    /// tracking identifier (§6.5).
    pub integration_code: Secret,
    /// Optional `ImpersonationResourceId` header (§6.1).
    pub impersonation_resource_id: Option<i64>,
}

impl AutotaskCredentials {
    pub fn new(
        username: impl Into<String>,
        secret: impl Into<Secret>,
        integration_code: impl Into<Secret>,
    ) -> Self {
        AutotaskCredentials {
            username: username.into(),
            secret: secret.into(),
            integration_code: integration_code.into(),
            impersonation_resource_id: None,
        }
    }
}

impl fmt::Debug for AutotaskCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutotaskCredentials")
            .field("username", &self.username)
            .field("secret", &self.secret)
            .field("integration_code", &self.integration_code)
            .field("impersonation_resource_id", &self.impersonation_resource_id)
            .finish()
    }
}

/// The answer of zone discovery (§6.1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Zone {
    #[serde(default, alias = "ZoneName")]
    pub zone_name: String,
    /// The zone's REST base, e.g. `https://webservices3.autotask.net/atservicesrest/`.
    #[serde(alias = "URL", alias = "Url")]
    pub url: String,
    #[serde(default, alias = "WebUrl", alias = "webURL")]
    pub web_url: Option<String>,
    #[serde(default, alias = "CI")]
    pub ci: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Filters (§6.2)
// ---------------------------------------------------------------------------------------------

/// A comparison operator of a query condition (§6.2; `exist`/`notExist` spellings are
/// [UNCONFIRMED] in the spec, used as written there).
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

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::NotEq => "noteq",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::BeginsWith => "beginsWith",
            Op::EndsWith => "endsWith",
            Op::Contains => "contains",
            Op::Exist => "exist",
            Op::NotExist => "notExist",
            Op::In => "in",
            Op::NotIn => "notIn",
        }
    }
}

/// One item of a query's `filter` array: a condition or an `and`/`or` group (§6.2).
/// Top-level items are combined with AND.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Condition {
        op: Op,
        field: String,
        /// `None` for `exist`/`notExist`; an array for `in`/`notIn`.
        value: Option<Value>,
        /// A user-defined field (`"udf":true`).
        udf: bool,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

impl Filter {
    fn cond(op: Op, field: impl Into<String>, value: Option<Value>) -> Filter {
        Filter::Condition {
            op,
            field: field.into(),
            value,
            udf: false,
        }
    }

    pub fn eq(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::cond(Op::Eq, field, Some(value.into()))
    }
    pub fn noteq(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::cond(Op::NotEq, field, Some(value.into()))
    }
    pub fn gt(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::cond(Op::Gt, field, Some(value.into()))
    }
    pub fn gte(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::cond(Op::Gte, field, Some(value.into()))
    }
    pub fn lt(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::cond(Op::Lt, field, Some(value.into()))
    }
    pub fn lte(field: impl Into<String>, value: impl Into<Value>) -> Filter {
        Filter::cond(Op::Lte, field, Some(value.into()))
    }
    pub fn begins_with(field: impl Into<String>, value: impl Into<String>) -> Filter {
        Filter::cond(Op::BeginsWith, field, Some(Value::String(value.into())))
    }
    pub fn ends_with(field: impl Into<String>, value: impl Into<String>) -> Filter {
        Filter::cond(Op::EndsWith, field, Some(Value::String(value.into())))
    }
    pub fn contains(field: impl Into<String>, value: impl Into<String>) -> Filter {
        Filter::cond(Op::Contains, field, Some(Value::String(value.into())))
    }
    pub fn exist(field: impl Into<String>) -> Filter {
        Filter::cond(Op::Exist, field, None)
    }
    pub fn not_exist(field: impl Into<String>) -> Filter {
        Filter::cond(Op::NotExist, field, None)
    }
    /// `in` with a value array (§6.2). Lists longer than [`MAX_OR_CONDITIONS`] are split over
    /// several queries by the client.
    pub fn is_in<V: Into<Value>>(
        field: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Filter {
        Filter::cond(
            Op::In,
            field,
            Some(Value::Array(values.into_iter().map(Into::into).collect())),
        )
    }
    pub fn not_in<V: Into<Value>>(
        field: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Filter {
        Filter::cond(
            Op::NotIn,
            field,
            Some(Value::Array(values.into_iter().map(Into::into).collect())),
        )
    }
    pub fn and(items: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::And(items.into_iter().collect())
    }
    pub fn or(items: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::Or(items.into_iter().collect())
    }
    /// Mark a condition as a user-defined field (`"udf":true`, §6.2).
    pub fn udf(self) -> Filter {
        match self {
            Filter::Condition {
                op, field, value, ..
            } => Filter::Condition {
                op,
                field,
                value,
                udf: true,
            },
            other => other,
        }
    }

    /// Values of `in` conditions, summed over the tree (the OR conditions they expand to).
    fn in_values(&self) -> usize {
        match self {
            Filter::Condition {
                op: Op::In,
                value: Some(Value::Array(v)),
                ..
            } => v.len(),
            Filter::Condition { .. } => 0,
            Filter::And(items) | Filter::Or(items) => items.iter().map(Filter::in_values).sum(),
        }
    }

    /// The OR alternatives this filter holds, as Autotask counts them against its 500 limit
    /// (§6.2): every value of an `in`, and every item of an `or` group. (The client used to
    /// count only `in` values, so `[or(a, b), in(499 values)]` went out as one query with 501
    /// alternatives and was refused; tests/e2e_atx.rs sends exactly that.)
    fn or_conditions(&self) -> usize {
        match self {
            Filter::Condition { .. } => self.in_values(),
            Filter::And(items) => items.iter().map(Filter::or_conditions).sum(),
            Filter::Or(items) => {
                items.len() + items.iter().map(Filter::or_conditions).sum::<usize>()
            }
        }
    }

    /// The length of the longest `in` list in the tree.
    fn longest_in(&self) -> usize {
        match self {
            Filter::Condition {
                op: Op::In,
                value: Some(Value::Array(v)),
                ..
            } => v.len(),
            Filter::Condition { .. } => 0,
            Filter::And(items) | Filter::Or(items) => {
                items.iter().map(Filter::longest_in).max().unwrap_or(0)
            }
        }
    }

    /// Copies of this filter with the first `in` list of length `len` replaced by each chunk.
    /// Returns `None` if no such list is here.
    fn split_in(&self, len: usize, chunk: usize) -> Option<Vec<Filter>> {
        match self {
            Filter::Condition {
                op: Op::In,
                field,
                value: Some(Value::Array(v)),
                udf,
            } if v.len() == len => Some(
                v.chunks(chunk.max(1))
                    .map(|c| Filter::Condition {
                        op: Op::In,
                        field: field.clone(),
                        value: Some(Value::Array(c.to_vec())),
                        udf: *udf,
                    })
                    .collect(),
            ),
            Filter::Condition { .. } => None,
            Filter::And(items) | Filter::Or(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(parts) = item.split_in(len, chunk) {
                        return Some(
                            parts
                                .into_iter()
                                .map(|p| {
                                    let mut copy = items.clone();
                                    copy[i] = p;
                                    match self {
                                        Filter::Or(_) => Filter::Or(copy),
                                        _ => Filter::And(copy),
                                    }
                                })
                                .collect(),
                        );
                    }
                }
                None
            }
        }
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Filter::Condition {
                op,
                field,
                value,
                udf,
            } => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("op", op.as_str())?;
                m.serialize_entry("field", field)?;
                if let Some(v) = value {
                    m.serialize_entry("value", v)?;
                }
                if *udf {
                    m.serialize_entry("udf", &true)?;
                }
                m.end()
            }
            Filter::And(items) | Filter::Or(items) => {
                let mut m = s.serialize_map(Some(2))?;
                let op = if matches!(self, Filter::Or(_)) {
                    "or"
                } else {
                    "and"
                };
                m.serialize_entry("op", op)?;
                m.serialize_entry("items", items)?;
                m.end()
            }
        }
    }
}

/// Split a filter list so that no query carries more than [`MAX_OR_CONDITIONS`] OR conditions
/// (the 500-OR rule, §6.2): `in` values and `or` group items both count. Each `in` expands to
/// one OR condition per value, so the longest list is cut into chunks until the total fits.
/// Every `in` sits in a monotone position (under AND and OR only), so the union of the parts'
/// results is the result of the whole.
pub fn split_for_or_limit(filters: &[Filter]) -> Vec<Vec<Filter>> {
    let total: usize = filters.iter().map(Filter::or_conditions).sum();
    if total <= MAX_OR_CONDITIONS {
        return vec![filters.to_vec()];
    }
    let longest = filters.iter().map(Filter::longest_in).max().unwrap_or(0);
    if longest <= 1 {
        // Nothing left to cut (many one-value lists): let Autotask judge the query.
        return vec![filters.to_vec()];
    }
    let others = total - longest;
    let chunk = if others < MAX_OR_CONDITIONS {
        MAX_OR_CONDITIONS - others
    } else {
        longest.div_ceil(2)
    };
    for (i, f) in filters.iter().enumerate() {
        if let Some(parts) = f.split_in(longest, chunk) {
            let mut out = Vec::new();
            for p in parts {
                let mut copy = filters.to_vec();
                copy[i] = p;
                out.extend(split_for_or_limit(&copy));
            }
            return out;
        }
    }
    vec![filters.to_vec()]
}

/// A query body (§6.2): `{"MaxRecords":500,"IncludeFields":[...],"filter":[...]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// 1..=500 records per page.
    pub max_records: u32,
    /// Fields to return (all when empty); `id` is always added when any are named, because
    /// paging over more than 500 results needs it (§6.2).
    pub include_fields: Vec<String>,
    /// Conditions, combined with AND.
    pub filter: Vec<Filter>,
}

impl Query {
    pub fn new(filter: Vec<Filter>) -> Self {
        Query {
            max_records: MAX_RECORDS,
            include_fields: Vec::new(),
            filter,
        }
    }

    pub fn fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.include_fields = fields.into_iter().map(Into::into).collect();
        self
    }

    pub fn max_records(mut self, n: u32) -> Self {
        self.max_records = n;
        self
    }

    fn with_filter(&self, filter: Vec<Filter>) -> Query {
        Query {
            max_records: self.max_records,
            include_fields: self.include_fields.clone(),
            filter,
        }
    }
}

/// Autotask refuses a query without a condition; "every record" is `id >= 0`
/// [interpretation: the spec shows no empty filter].
fn filter_or_all(filter: &[Filter]) -> Vec<Filter> {
    if filter.is_empty() {
        vec![Filter::gte("id", 0)]
    } else {
        filter.to_vec()
    }
}

impl Serialize for Query {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("MaxRecords", &self.max_records.clamp(1, MAX_RECORDS))?;
        if !self.include_fields.is_empty() {
            let mut fields = self.include_fields.clone();
            if !fields.iter().any(|f| f.eq_ignore_ascii_case("id")) {
                fields.insert(0, "id".into());
            }
            m.serialize_entry("IncludeFields", &fields)?;
        }
        m.serialize_entry("filter", &filter_or_all(&self.filter))?;
        m.end()
    }
}

/// `{"filter":[...]}` for `/query/count`.
struct CountBody<'a>(&'a [Filter]);

impl Serialize for CountBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("filter", &filter_or_all(self.0))?;
        m.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Wire models (§6.2, §6.3)
// ---------------------------------------------------------------------------------------------

/// One page of a query response (§6.2).
#[derive(Debug, Clone, Deserialize)]
pub struct QueryPage {
    #[serde(default, alias = "Items")]
    pub items: Vec<Value>,
    #[serde(default, rename = "pageDetails", alias = "PageDetails")]
    pub page_details: Option<PageDetails>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageDetails {
    #[serde(default)]
    pub count: Option<i64>,
    #[serde(default)]
    pub request_count: Option<i64>,
    #[serde(default)]
    pub prev_page_url: Option<String>,
    /// Opaque; followed with GET until null (§6.2).
    #[serde(default)]
    pub next_page_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct CountResponse {
    // §6.2: field name [UNCONFIRMED].
    #[serde(alias = "QueryCount", alias = "count")]
    #[serde(rename = "queryCount")]
    query_count: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct ItemResponse<T> {
    #[serde(default = "none", alias = "Item")]
    item: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

/// `{"itemId": 7001}` (§6.3 OperationResultModel).
#[derive(Debug, Clone, Deserialize)]
struct OperationResult {
    #[serde(rename = "itemId", alias = "ItemId", alias = "itemID")]
    item_id: i64,
}

/// A user-defined field on a company (§6.2 example `userDefinedFields`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct UserDefinedField {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: Option<Value>,
}

/// A company (§6.2). Field names are Autotask's (camelCase, `ownerResourceID`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Company {
    pub id: i64,
    #[serde(default)]
    pub company_name: String,
    #[serde(default)]
    pub company_number: Option<String>,
    #[serde(default)]
    pub company_type: Option<i64>,
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub web_address: Option<String>,
    #[serde(default, rename = "ownerResourceID")]
    pub owner_resource_id: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_defined_fields: Vec<UserDefinedField>,
}

/// A contract (§6.3; `contractType` 7 = Recurring Service, `status` 1 = Active).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contract {
    pub id: i64,
    #[serde(default, rename = "companyID")]
    pub company_id: Option<i64>,
    #[serde(default)]
    pub contract_name: Option<String>,
    #[serde(default)]
    pub contract_number: Option<String>,
    #[serde(default)]
    pub contract_type: Option<i64>,
    #[serde(default)]
    pub status: Option<i64>,
    #[serde(default, with = "lenient_date")]
    pub start_date: Option<NaiveDate>,
    #[serde(default, with = "lenient_date")]
    pub end_date: Option<NaiveDate>,
    #[serde(default)]
    pub contract_period_type: Option<i64>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub setup_fee: Option<Decimal>,
    #[serde(default, rename = "organizationalLevelAssociationID")]
    pub organizational_level_association_id: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
}

impl Contract {
    /// `contractType` 7 (§6.3).
    pub fn is_recurring_service(&self) -> bool {
        self.contract_type == Some(7)
    }
}

/// A catalog service (§6.3 Service create, A3).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub unit_price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub unit_cost: Option<Decimal>,
    #[serde(default)]
    pub period_type: Option<i64>,
    #[serde(default, rename = "billingCodeID")]
    pub billing_code_id: Option<i64>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

/// A service on a recurring-service contract (§6.3 ContractServices). It holds no unit count.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractService {
    pub id: i64,
    #[serde(default, rename = "contractID")]
    pub contract_id: Option<i64>,
    #[serde(default, rename = "serviceID")]
    pub service_id: Option<i64>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub unit_price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub unit_cost: Option<Decimal>,
    /// May be absent on query (§6.3).
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub adjusted_price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub internal_currency_unit_price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub internal_currency_adjusted_price: Option<Decimal>,
    #[serde(default)]
    pub invoice_description: Option<String>,
    #[serde(default)]
    pub internal_description: Option<String>,
}

impl ContractService {
    /// What the customer is charged per unit: the adjusted price, else the unit price.
    pub fn effective_price(&self) -> Option<Decimal> {
        self.adjusted_price.or(self.unit_price)
    }
}

/// One billing period of a contract service (§6.3 ContractServiceUnits, query-only).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractServiceUnit {
    pub id: i64,
    #[serde(default, rename = "contractID")]
    pub contract_id: Option<i64>,
    #[serde(rename = "contractServiceID")]
    pub contract_service_id: i64,
    #[serde(default, rename = "serviceID")]
    pub service_id: Option<i64>,
    #[serde(default, with = "lenient_date")]
    pub start_date: Option<NaiveDate>,
    #[serde(default, with = "lenient_date")]
    pub end_date: Option<NaiveDate>,
    #[serde(default)]
    pub units: i64,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub price: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::float_option")]
    pub cost: Option<Decimal>,
    #[serde(default, with = "lenient_date")]
    pub approve_and_post_date: Option<NaiveDate>,
}

/// A quantity (or price) change (§6.3 ContractServiceAdjustments; create-only).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAdjustment {
    #[serde(rename = "contractID")]
    pub contract_id: i64,
    #[serde(rename = "serviceID")]
    pub service_id: i64,
    #[serde(rename = "contractServiceID", skip_serializing_if = "Option::is_none")]
    pub contract_service_id: Option<i64>,
    /// Signed delta of units; 0 for a price-only change (§6.3).
    pub unit_change: i64,
    #[serde(
        with = "rust_decimal::serde::float_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub adjusted_unit_price: Option<Decimal>,
    #[serde(
        with = "rust_decimal::serde::float_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub adjusted_unit_cost: Option<Decimal>,
    /// Sent as `yyyy-mm-ddT00:00:00.00` as in the §6.3 example; Autotask keeps the date of a
    /// date-only field without time-zone conversion (§6.1).
    #[serde(serialize_with = "serialize_midnight")]
    pub effective_date: NaiveDate,
}

/// A new contract service (§6.3 ContractServices create).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewContractService {
    #[serde(rename = "contractID")]
    pub contract_id: i64,
    #[serde(rename = "serviceID")]
    pub service_id: i64,
    #[serde(with = "rust_decimal::serde::float")]
    pub unit_price: Decimal,
    #[serde(
        with = "rust_decimal::serde::float_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub unit_cost: Option<Decimal>,
    /// The §6.3 create example sets `adjustedPrice`; [`NewContractService::new`] sets it to the
    /// unit price so the customer's price holds whichever field Autotask reads.
    #[serde(
        with = "rust_decimal::serde::float_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub adjusted_price: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_description: Option<String>,
}

impl NewContractService {
    pub fn new(contract_id: i64, service_id: i64, unit_price: Decimal) -> Self {
        NewContractService {
            contract_id,
            service_id,
            unit_price,
            unit_cost: None,
            adjusted_price: Some(unit_price),
            invoice_description: None,
            internal_description: None,
        }
    }
}

/// The PATCH body of a contract service: only these two fields are writable (§6.3).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ContractServicePatch<'a> {
    id: i64,
    #[serde(
        with = "rust_decimal::serde::float_option",
        skip_serializing_if = "Option::is_none"
    )]
    adjusted_price: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invoice_description: Option<&'a str>,
}

fn serialize_midnight<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}T00:00:00.00", d.format("%Y-%m-%d")))
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Lenient dates
// ---------------------------------------------------------------------------------------------

/// A date from `2025-08-31`, `2025-08-31T00:00:00`, with a fraction and/or `Z`/offset. The
/// calendar date as written is kept (Autotask stores date-only fields without time-zone
/// conversion, §6.1).
pub fn parse_lenient_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    let head = s.get(..10)?;
    let rest = &s[10..];
    if !(rest.is_empty() || rest.starts_with('T') || rest.starts_with('t') || rest.starts_with(' '))
    {
        return None;
    }
    if !rest.is_empty() && parse_lenient_datetime(s).is_none() {
        return None;
    }
    NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()
}

/// A UTC timestamp from the ISO 8601 forms APIs send: date only, no zone (read as UTC),
/// `Z`, `+10:00`, `+1000`, with or without a fraction of up to 9 digits.
pub fn parse_lenient_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(d.with_timezone(&Utc));
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, f) {
            return Some(d.and_utc());
        }
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    if let Ok(d) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(d.and_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

/// Serde helper for `Option<NaiveDate>` read leniently (null and "" are `None`) and written
/// as `YYYY-MM-DD`.
pub mod lenient_date {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        let v = Option::<String>::deserialize(d)?;
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => super::parse_lenient_date(s).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{}` is not a date",
                    crate::api::error::clean_text(s, 40)
                ))
            }),
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&d.format("%Y-%m-%d").to_string()),
            None => s.serialize_none(),
        }
    }
}

/// The current unit count per contract service: the `units` of the record whose
/// `startDate <= today <= endDate` (§6.3). A record without an end date is open-ended; when
/// periods overlap the one that started last wins (a new record starts at each adjustment).
pub fn current_units_from(units: &[ContractServiceUnit], today: NaiveDate) -> HashMap<i64, i64> {
    let mut best: HashMap<i64, (NaiveDate, i64, i64)> = HashMap::new();
    for u in units {
        let Some(start) = u.start_date else { continue };
        if start > today || u.end_date.is_some_and(|end| end < today) {
            continue;
        }
        let entry = best
            .entry(u.contract_service_id)
            .or_insert((start, u.id, u.units));
        if (start, u.id) > (entry.0, entry.1) {
            *entry = (start, u.id, u.units);
        }
    }
    best.into_iter().map(|(k, (_, _, n))| (k, n)).collect()
}

// ---------------------------------------------------------------------------------------------
// Errors (§6.4)
// ---------------------------------------------------------------------------------------------

/// Read an Autotask error body: `{"errors":["...", ...]}` (§6.4) → message = the first,
/// details = the rest; also `{"message":..}`; HTML and plain text fall back to their text.
pub fn parse_error(_status: u16, headers: &HeaderMap, body: &[u8]) -> VendorError {
    let mut v = VendorError::default();
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        let errors = json
            .get("errors")
            .or_else(|| json.get("Errors"))
            .and_then(Value::as_array);
        if let Some(errors) = errors {
            let mut msgs = errors
                .iter()
                .filter_map(value_text)
                .filter(|s| !s.is_empty());
            v.message = msgs.next();
            v.details = msgs.take(20).collect();
            return v;
        }
        for k in ["message", "Message", "error", "title", "Title"] {
            if let Some(m) = json.get(k).and_then(value_text).filter(|s| !s.is_empty()) {
                v.message = Some(m);
                return v;
            }
        }
        if let Some(s) = json.as_str() {
            v.message = Some(s.to_string()).filter(|s| !s.trim().is_empty());
        }
        return v;
    }
    v.message = text_fallback(headers, body);
    v
}

/// A message from an array element: a string, or an object's `message`.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("message")
            .or_else(|| o.get("Message"))
            .and_then(Value::as_str)
            .map(str::to_string),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The readable text of a non-JSON error body: an HTML page's `<title>` (or nothing, so the
/// status speaks), or short plain text.
pub(crate) fn text_fallback(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    let is_html = trimmed.starts_with('<')
        || headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.to_ascii_lowercase().contains("html"));
    if is_html {
        let lower = trimmed.to_ascii_lowercase();
        let start = lower.find("<title")?;
        let open_end = lower[start..].find('>')? + start + 1;
        let close = lower[open_end..].find("</title")? + open_end;
        let title = clean_text(trimmed.get(open_end..close)?, 150);
        return Some(title).filter(|t| !t.is_empty());
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // Broken JSON: nothing trustworthy to show.
        return None;
    }
    Some(clean_text(trimmed, 200))
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Autotask REST client for one zone.
#[derive(Clone)]
pub struct AutotaskClient {
    core: HttpCore,
    creds: Arc<AutotaskCredentials>,
    /// `{zone url}v1.0/`.
    base: Url,
    zone: Option<Zone>,
    /// `MaxRecords` of the queries the typed helpers send (1..=500, §6.2).
    max_records: u32,
}

impl fmt::Debug for AutotaskClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutotaskClient")
            .field("base", &self.base.as_str())
            .field("zone", &self.zone)
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

/// The entity base `{zone url}v1.0/`, accepting a zone URL with or without its trailing
/// slash, or one that already ends in `v1.0` (§6.1).
pub fn entity_base(zone_url: &Url) -> Url {
    let trimmed = zone_url.path().trim_end_matches('/');
    if trimmed.to_ascii_lowercase().ends_with("/v1.0") {
        let mut u = zone_url.clone();
        u.set_path(&format!("{trimmed}/"));
        return u;
    }
    let u = endpoint(zone_url, "v1.0");
    let mut u2 = u.clone();
    u2.set_path(&format!("{}/", u.path().trim_end_matches('/')));
    u2
}

impl AutotaskClient {
    /// 3 concurrent calls per object endpoint (§6.5), 9 in all.
    pub fn limits() -> Limits {
        Limits {
            global_concurrency: 9,
            per_key_concurrency: Some(3),
            per_key_rate: None,
        }
    }

    fn core(http: reqwest::Client) -> HttpCore {
        HttpCore::new(Api::Autotask, http, Self::limits(), parse_error)
    }

    /// Look up the zone of the API user (§6.1) and build a client for it.
    /// `discovery_base` is [`crate::config::Endpoints::autotask`] (`…/atservicesrest`).
    pub async fn discover(
        discovery_base: &Url,
        http: reqwest::Client,
        creds: AutotaskCredentials,
    ) -> Result<AutotaskClient, ApiError> {
        let core = Self::core(http);
        let zone = zone_information(&core, discovery_base, &creds).await?;
        let zone_url = Url::parse(zone.url.trim()).map_err(|_| {
            ApiError::malformed(Api::Autotask, "the zone information has no usable `url`")
                .with_operation("GET /v1.0/zoneInformation")
        })?;
        if !matches!(zone_url.scheme(), "http" | "https") {
            return Err(ApiError::malformed(
                Api::Autotask,
                "the zone information's `url` is not a web address",
            )
            .with_operation("GET /v1.0/zoneInformation"));
        }
        Ok(AutotaskClient {
            core,
            creds: Arc::new(creds),
            base: entity_base(&zone_url),
            zone: Some(zone),
            max_records: MAX_RECORDS,
        })
    }

    /// A client for a zone already known (cached from an earlier [`Self::discover`]).
    pub fn from_zone_url(
        zone_url: &Url,
        http: reqwest::Client,
        creds: AutotaskCredentials,
    ) -> AutotaskClient {
        AutotaskClient {
            core: Self::core(http),
            creds: Arc::new(creds),
            base: entity_base(zone_url),
            zone: None,
            max_records: MAX_RECORDS,
        }
    }

    /// Replace the retry policy (tests use short backoffs).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.core = self.core.with_retry(retry);
        self
    }

    /// Records per page for the typed helpers ([`Self::companies`], [`Self::contract_services`],
    /// ...): 1..=500, default 500 (§6.2). Smaller pages mean more calls; tests use it to page.
    pub fn with_max_records(mut self, n: u32) -> Self {
        self.max_records = n.clamp(1, MAX_RECORDS);
        self
    }

    /// A query with this client's page size.
    fn query_of(&self, filter: Vec<Filter>) -> Query {
        Query::new(filter).max_records(self.max_records)
    }

    /// The zone found by discovery (None when built from a cached URL).
    pub fn zone(&self) -> Option<&Zone> {
        self.zone.as_ref()
    }

    /// The entity base `{zone}v1.0/`.
    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.core.stats()
    }

    fn url(&self, path: &str) -> Url {
        endpoint(&self.base, path)
    }

    fn request(&self, method: Method, url: Url, key: &str) -> Request {
        with_auth(Request::new(method, url), &self.creds).key(key)
    }

    /// Every record of `entity` matching `query`, as raw JSON objects: splits long `in`
    /// lists (500-OR rule) and follows `nextPageUrl` (§6.2). Records are de-duplicated by
    /// `id` across the split queries.
    pub async fn query_values(&self, entity: &str, query: &Query) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut seen: HashSet<i64> = HashSet::new();
        let parts = split_for_or_limit(&query.filter);
        let split = parts.len() > 1;
        for filter in parts {
            let q = query.with_filter(filter);
            for item in self.query_pages(entity, &q).await? {
                if split
                    && let Some(id) = item.get("id").and_then(Value::as_i64)
                    && !seen.insert(id)
                {
                    continue;
                }
                out.push(item);
            }
        }
        Ok(out)
    }

    /// Every record of `entity` matching `query`, typed.
    pub async fn query<T: DeserializeOwned>(
        &self,
        entity: &str,
        query: &Query,
    ) -> Result<Vec<T>, ApiError> {
        let values = self.query_values(entity, query).await?;
        values
            .into_iter()
            .map(|v| {
                let id = v.get("id").and_then(Value::as_i64);
                serde_json::from_value::<T>(v).map_err(|e| {
                    let which = id.map(|i| format!(" {i}")).unwrap_or_default();
                    ApiError::malformed(
                        Api::Autotask,
                        format!(
                            "{entity}{which} has unexpected JSON: {}",
                            clean_text(&e.to_string(), 200)
                        ),
                    )
                    .with_operation(format!("POST {entity}/query"))
                })
            })
            .collect()
    }

    async fn query_pages(&self, entity: &str, query: &Query) -> Result<Vec<Value>, ApiError> {
        let op = format!("POST {entity}/query");
        let req = self
            .request(Method::POST, self.url(&format!("{entity}/query")), entity)
            .json(query)
            // A query reads; sending it twice is harmless.
            .idempotent(true)
            .operation(op.clone());
        let mut page: QueryPage = self.core.send_json(req).await?;
        let mut items = std::mem::take(&mut page.items);
        let mut seen_urls: HashSet<String> = HashSet::new();
        let mut pages = 1usize;
        while let Some(next) = page
            .page_details
            .as_ref()
            .and_then(|p| p.next_page_url.as_deref())
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let next_url = self.base.join(next).map_err(|_| {
                ApiError::malformed(Api::Autotask, "a `nextPageUrl` that is not a web address")
                    .with_operation(op.clone())
            })?;
            if !matches!(next_url.scheme(), "http" | "https") {
                return Err(ApiError::malformed(
                    Api::Autotask,
                    "a `nextPageUrl` that is not a web address",
                )
                .with_operation(op));
            }
            pages += 1;
            if !seen_urls.insert(next_url.as_str().to_string()) || pages > MAX_PAGES {
                return Err(ApiError::malformed(
                    Api::Autotask,
                    "paging that never ends (a `nextPageUrl` came back twice)",
                )
                .with_operation(op));
            }
            // §6.2: follow nextPageUrl with GET plus the same auth headers; the URL is opaque.
            let req = self
                .request(Method::GET, next_url, entity)
                .header("content-type", "application/json")
                .operation(format!("GET {entity}/query/next"));
            page = self.core.send_json(req).await?;
            items.append(&mut page.items);
        }
        Ok(items)
    }

    /// Number of records matching `filter` (§6.2 `/query/count`). Long `in` lists are split
    /// and the counts summed (exact when the `in` is not inside an `or` group).
    pub async fn count(&self, entity: &str, filter: &[Filter]) -> Result<u64, ApiError> {
        let mut total = 0u64;
        for part in split_for_or_limit(filter) {
            let req = self
                .request(
                    Method::POST,
                    self.url(&format!("{entity}/query/count")),
                    entity,
                )
                .json(&CountBody(&part))
                .idempotent(true)
                .operation(format!("POST {entity}/query/count"));
            let r: CountResponse = self.core.send_json(req).await?;
            total = total.saturating_add(r.query_count);
        }
        Ok(total)
    }

    /// One record by id (§6.2 `{"item":...}`); `None` when Autotask has no such record.
    pub async fn get<T: DeserializeOwned>(
        &self,
        entity: &str,
        id: i64,
    ) -> Result<Option<T>, ApiError> {
        let req = self
            .request(Method::GET, self.url(&format!("{entity}/{id}")), entity)
            .header("content-type", "application/json")
            .operation(format!("GET {entity}/{{id}}"));
        match self.core.send(req).await {
            Ok(resp) => Ok(resp.json::<ItemResponse<T>>()?.item),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET ThresholdInformation` (§6.1): current usage against the hourly allowance. Its
    /// shape is not confirmed, so it is returned as JSON.
    pub async fn threshold_information(&self) -> Result<Value, ApiError> {
        let req = self
            .request(
                Method::GET,
                self.url("ThresholdInformation"),
                "ThresholdInformation",
            )
            .header("content-type", "application/json")
            .operation("GET ThresholdInformation");
        self.core.send_json(req).await
    }

    pub async fn companies(&self, filter: Vec<Filter>) -> Result<Vec<Company>, ApiError> {
        self.query("Companies", &self.query_of(filter)).await
    }

    pub async fn contracts(&self, filter: Vec<Filter>) -> Result<Vec<Contract>, ApiError> {
        self.query("Contracts", &self.query_of(filter)).await
    }

    pub async fn services(&self, filter: Vec<Filter>) -> Result<Vec<Service>, ApiError> {
        self.query("Services", &self.query_of(filter)).await
    }

    /// The services on these contracts (§6.3).
    pub async fn contract_services(
        &self,
        contract_ids: &[i64],
    ) -> Result<Vec<ContractService>, ApiError> {
        if contract_ids.is_empty() {
            return Ok(Vec::new());
        }
        let q = self.query_of(vec![Filter::is_in(
            "contractID",
            contract_ids.iter().copied(),
        )]);
        self.query("ContractServices", &q).await
    }

    /// The billing-period records of these contract services (§6.3, queried by
    /// `contractServiceID`).
    pub async fn contract_service_units(
        &self,
        contract_service_ids: &[i64],
    ) -> Result<Vec<ContractServiceUnit>, ApiError> {
        if contract_service_ids.is_empty() {
            return Ok(Vec::new());
        }
        let q = self.query_of(vec![Filter::is_in(
            "contractServiceID",
            contract_service_ids.iter().copied(),
        )]);
        self.query("ContractServiceUnits", &q).await
    }

    /// The unit count in force on `today` per contract service (§6.3); services with no
    /// current period are absent from the map.
    pub async fn current_units(
        &self,
        contract_service_ids: &[i64],
        today: NaiveDate,
    ) -> Result<HashMap<i64, i64>, ApiError> {
        let units = self.contract_service_units(contract_service_ids).await?;
        Ok(current_units_from(&units, today))
    }

    /// Create a service adjustment (§6.3) via `POST Contracts/{id}/ServiceAdjustments`;
    /// returns its `itemId`. Not idempotent: never resent once it may have reached Autotask,
    /// and a failure after sending says the change may have been applied.
    pub async fn create_adjustment(&self, adj: &NewAdjustment) -> Result<i64, ApiError> {
        let url = self.url(&format!("Contracts/{}/ServiceAdjustments", adj.contract_id));
        let req = self
            .request(Method::POST, url, CONTRACTS_ENDPOINT)
            .json(adj)
            .idempotent(false)
            .operation("POST Contracts/{id}/ServiceAdjustments");
        let what = format!(
            "the adjustment of {:+} unit(s) to service {} on contract {}",
            adj.unit_change, adj.service_id, adj.contract_id
        );
        self.create(req, &what).await
    }

    /// Add a service to a recurring-service contract (§6.3 `POST Contracts/{id}/Services`);
    /// returns its `itemId`. Not idempotent.
    pub async fn create_contract_service(&self, new: &NewContractService) -> Result<i64, ApiError> {
        let url = self.url(&format!("Contracts/{}/Services", new.contract_id));
        let req = self
            .request(Method::POST, url, CONTRACTS_ENDPOINT)
            .json(new)
            .idempotent(false)
            .operation("POST Contracts/{id}/Services");
        let what = format!(
            "adding service {} to contract {}",
            new.service_id, new.contract_id
        );
        self.create(req, &what).await
    }

    /// Change a contract service's adjusted price and/or invoice description, the only fields
    /// writable on update (§6.3 `PATCH Contracts/{id}/Services` with the child id).
    pub async fn update_contract_service(
        &self,
        contract_id: i64,
        id: i64,
        adjusted_price: Option<Decimal>,
        invoice_description: Option<&str>,
    ) -> Result<i64, ApiError> {
        let url = self.url(&format!("Contracts/{contract_id}/Services"));
        let req = self
            .request(Method::PATCH, url, CONTRACTS_ENDPOINT)
            .json(&ContractServicePatch {
                id,
                adjusted_price,
                invoice_description,
            })
            // Setting the same two fields again changes nothing: safe to resend.
            .idempotent(true)
            .operation("PATCH Contracts/{id}/Services");
        let resp = self.core.send(req).await.map_err(rule_violation)?;
        let r: OperationResult = resp.json()?;
        Ok(r.item_id)
    }

    /// Create any entity (§6.3 `POST /v1.0/{Entity}`, or a child path such as
    /// `Contracts/7001/Services`) from a JSON body; returns its `itemId`. Not idempotent.
    pub async fn create_raw<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<i64, ApiError> {
        let key = path.split('/').next().unwrap_or(path).to_string();
        let req = self
            .request(Method::POST, self.url(path), &key)
            .json(body)
            .idempotent(false)
            .operation(format!("POST {key}"));
        let what = format!("creating the {key} record");
        self.create(req, &what).await
    }

    async fn create(&self, req: Request, what: &str) -> Result<i64, ApiError> {
        let op = req.operation.clone();
        let resp = match self.core.send(req).await.map_err(rule_violation) {
            Ok(r) => r,
            Err(mut e) => {
                if matches!(
                    e.kind,
                    ErrorKind::Transport {
                        maybe_applied: true
                    }
                ) {
                    e.message = format!(
                        "{}; {what} may have been applied, so check Autotask before trying again",
                        e.message
                    );
                }
                return Err(e);
            }
        };
        if resp.status == StatusCode::NO_CONTENT {
            return Err(
                ApiError::malformed(Api::Autotask, "no `itemId` for the new record")
                    .with_operation(op),
            );
        }
        let r: OperationResult = decode_json(Api::Autotask, &op, &resp.headers, &resp.body)?;
        Ok(r.item_id)
    }
}

/// A write Autotask refused on a business rule, told apart from a server failure.
///
/// §6.4 lists 500 among the statuses of an ordinary `{"errors":[...]}` refusal, and Autotask
/// answers rule violations on writes that way ("effectiveDate must be between the start date
/// and end date of the Contract", §6.3). HttpCore files every 500 as [`ErrorKind::Server`]
/// ("try again later"), which is wrong for these: resending cannot succeed. The e2e test found
/// the adjustment refusal arriving as a transient server error; a 500 that carries a specific
/// message is now [`ErrorKind::Rejected`]. A 500 without one, or with Autotask's generic
/// "An unexpected error has occurred", stays a server error.
fn rule_violation(mut e: ApiError) -> ApiError {
    if e.kind != ErrorKind::Server || e.status != Some(500) {
        return e;
    }
    let m = e.message.to_ascii_lowercase();
    let generic = [
        "unexpected error",
        "internal error",
        "internal server error",
        "an error has occurred",
    ]
    .iter()
    .any(|g| m.contains(g));
    if !generic {
        e.kind = ErrorKind::Rejected;
    }
    e
}

/// §6.1 headers; values that cannot be headers are reported by HttpCore as a config error.
fn with_auth(req: Request, creds: &AutotaskCredentials) -> Request {
    let mut req = req
        .header("apiintegrationcode", creds.integration_code.expose())
        .header("username", &creds.username)
        .header("secret", creds.secret.expose());
    // The tracking identifier is vendor-issued and private: keep it out of any Debug output.
    if let Some(v) = req.headers.get_mut("apiintegrationcode") {
        v.set_sensitive(true);
    }
    if let Some(id) = creds.impersonation_resource_id {
        req = req.header("impersonationresourceid", &id.to_string());
    }
    req
}

/// `GET {base}/v1.0/zoneInformation?user={email}` (§6.1), with the auth headers the spec
/// lists as required (community code sends none; either is accepted by Autotask).
pub async fn zone_information(
    core: &HttpCore,
    discovery_base: &Url,
    creds: &AutotaskCredentials,
) -> Result<Zone, ApiError> {
    let mut url = endpoint(discovery_base, "v1.0/zoneInformation");
    url.query_pairs_mut().append_pair("user", &creds.username);
    // Zone information is exempt from thread limits (§6.1): its own limiter key.
    let req = with_auth(Request::get(url), creds)
        .header("content-type", "application/json")
        .key("zoneInformation")
        .operation("GET /v1.0/zoneInformation");
    core.send_json(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn filters_serialize_as_the_spec_shows() {
        let f = vec![Filter::and([
            Filter::eq("isActive", true),
            Filter::begins_with("companyName", "Con"),
        ])];
        let q = Query::new(f).max_records(2);
        assert_eq!(
            serde_json::to_value(&q).unwrap(),
            json!({"MaxRecords":2,"filter":[{"op":"and","items":[
                {"op":"eq","field":"isActive","value":true},
                {"op":"beginsWith","field":"companyName","value":"Con"}]}]})
        );
        let all = vec![
            Filter::noteq("a", 1),
            Filter::gt("b", 2),
            Filter::gte("c", 3),
            Filter::lt("d", 4),
            Filter::lte("e", 5),
            Filter::ends_with("f", "x"),
            Filter::contains("g", "y"),
            Filter::exist("h"),
            Filter::not_exist("i"),
            Filter::is_in("j", [1, 2]),
            Filter::not_in("k", ["a", "b"]),
            Filter::or([Filter::eq("l", "m").udf()]),
        ];
        let v = serde_json::to_value(&all).unwrap();
        assert_eq!(
            v,
            json!([
                {"op":"noteq","field":"a","value":1},
                {"op":"gt","field":"b","value":2},
                {"op":"gte","field":"c","value":3},
                {"op":"lt","field":"d","value":4},
                {"op":"lte","field":"e","value":5},
                {"op":"endsWith","field":"f","value":"x"},
                {"op":"contains","field":"g","value":"y"},
                {"op":"exist","field":"h"},
                {"op":"notExist","field":"i"},
                {"op":"in","field":"j","value":[1,2]},
                {"op":"notIn","field":"k","value":["a","b"]},
                {"op":"or","items":[{"op":"eq","field":"l","value":"m","udf":true}]}
            ])
        );
    }

    #[test]
    fn include_fields_always_carry_id_and_max_records_is_clamped() {
        let q = Query::new(vec![]).fields(["companyName"]).max_records(9999);
        let v = serde_json::to_value(&q).unwrap();
        assert_eq!(v["MaxRecords"], 500);
        assert_eq!(v["IncludeFields"], json!(["id", "companyName"]));
        // An empty filter becomes "every record".
        assert_eq!(v["filter"], json!([{"op":"gte","field":"id","value":0}]));
        let q = Query::new(vec![Filter::eq("x", 1)]).fields(["ID", "name"]);
        assert_eq!(
            serde_json::to_value(&q).unwrap()["IncludeFields"],
            json!(["ID", "name"])
        );
    }

    #[test]
    fn long_in_lists_are_split_under_the_500_or_limit() {
        let ids: Vec<i64> = (1..=1200).collect();
        let parts = split_for_or_limit(&[
            Filter::eq("isActive", true),
            Filter::is_in("contractID", ids.clone()),
        ]);
        assert_eq!(parts.len(), 3);
        let mut seen = Vec::new();
        for p in &parts {
            assert_eq!(p[0], Filter::eq("isActive", true));
            let v = serde_json::to_value(&p[1]).unwrap();
            assert_eq!(v["op"], "in");
            let vals = v["value"].as_array().unwrap();
            assert!(vals.len() <= 500);
            seen.extend(vals.iter().map(|x| x.as_i64().unwrap()));
        }
        assert_eq!(seen, ids);

        // Two lists that only together exceed the limit: the longer one is cut so that each
        // query carries at most 500 values in all.
        let parts = split_for_or_limit(&[Filter::and([
            Filter::is_in("a", 0..300),
            Filter::is_in("b", 0..400),
        ])]);
        assert!(parts.len() >= 2);
        for p in &parts {
            let n: usize = p.iter().map(Filter::in_values).sum();
            assert!(n <= 500, "{n}");
        }
        let b_total: usize = parts
            .iter()
            .map(|p| match &p[0] {
                Filter::And(items) => items[1].in_values(),
                _ => 0,
            })
            .sum();
        assert_eq!(b_total, 400);

        // At the limit: one query.
        assert_eq!(split_for_or_limit(&[Filter::is_in("a", 0..500)]).len(), 1);
        // `or` items count too: two alternatives plus 499 values is 501, so the list is cut.
        let parts = split_for_or_limit(&[
            Filter::or([Filter::eq("x", 1), Filter::eq("x", 2)]),
            Filter::is_in("a", 0..499),
        ]);
        assert_eq!(parts.len(), 2);
        for p in &parts {
            assert!(p.iter().map(Filter::or_conditions).sum::<usize>() <= 500);
        }
        // notIn is never split (it is not an OR).
        assert_eq!(split_for_or_limit(&[Filter::not_in("a", 0..900)]).len(), 1);
    }

    #[test]
    fn lenient_dates() {
        let d = NaiveDate::from_ymd_opt(2025, 8, 31).unwrap();
        for s in [
            "2025-08-31",
            "2025-08-31T00:00:00",
            "2025-08-31T00:00:00.000",
            "2025-08-31T00:00:00Z",
            "2025-08-31T00:00:00.1234567Z",
            "2025-08-31T23:00:00-05:00",
            "2025-08-31T10:00:00+1000",
            " 2025-08-31 00:00:00 ",
        ] {
            assert_eq!(parse_lenient_date(s), Some(d), "{s}");
        }
        for s in [
            "",
            "31/08/2025",
            "2025-13-01",
            "2025-08-31X",
            "2025-08-31Tnope",
            "é",
        ] {
            assert_eq!(parse_lenient_date(s), None, "{s}");
        }
        let u: ContractServiceUnit = serde_json::from_value(json!({
            "id":1,"contractServiceID":2,"startDate":"2025-08-31T00:00:00","endDate":null,"units":5,"price":34.55
        }))
        .unwrap();
        assert_eq!(u.start_date, Some(d));
        assert_eq!(u.end_date, None);
        assert_eq!(u.price, Some(Decimal::new(3455, 2)));
        let bad = serde_json::from_value::<ContractServiceUnit>(json!({
            "id":1,"contractServiceID":2,"startDate":"yesterday","units":5
        }));
        assert!(bad.is_err());
    }

    #[test]
    fn current_units_pick_the_period_containing_today() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let unit = |id, cs, start, end: Option<NaiveDate>, n| ContractServiceUnit {
            id,
            contract_id: Some(1),
            contract_service_id: cs,
            service_id: None,
            start_date: Some(start),
            end_date: end,
            units: n,
            price: None,
            cost: None,
            approve_and_post_date: None,
        };
        let units = vec![
            unit(1, 10, d(4, 1), Some(d(4, 30)), 20),
            unit(2, 10, d(5, 1), Some(d(5, 31)), 25),
            unit(3, 10, d(5, 15), Some(d(5, 31)), 30), // adjustment mid-period starts a record
            unit(4, 11, d(6, 1), Some(d(6, 30)), 7),   // future only
            unit(5, 12, d(1, 1), None, 3),             // open-ended
        ];
        let m = current_units_from(&units, d(5, 20));
        assert_eq!(m.get(&10), Some(&30));
        assert_eq!(m.get(&11), None);
        assert_eq!(m.get(&12), Some(&3));
        let m = current_units_from(&units, d(5, 1));
        assert_eq!(m.get(&10), Some(&25));
        // Boundaries are inclusive.
        assert_eq!(current_units_from(&units, d(4, 30)).get(&10), Some(&20));
    }

    #[test]
    fn adjustment_body_matches_the_spec() {
        let a = NewAdjustment {
            contract_id: 7001,
            service_id: 9001,
            contract_service_id: None,
            unit_change: 5,
            adjusted_unit_price: Some(Decimal::new(3455, 2)),
            adjusted_unit_cost: None,
            effective_date: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"contractID":7001,"serviceID":9001,"unitChange":5,"adjustedUnitPrice":34.55,
                   "effectiveDate":"2026-05-01T00:00:00.00"})
        );
        let p = ContractServicePatch {
            id: 5,
            adjusted_price: Some(Decimal::new(1999, 2)),
            invoice_description: None,
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"id":5,"adjustedPrice":19.99})
        );
    }

    #[test]
    fn zone_urls_with_and_without_slash() {
        for (zone, want) in [
            (
                "https://webservices3.autotask.net/atservicesrest/",
                "https://webservices3.autotask.net/atservicesrest/v1.0/",
            ),
            (
                "https://webservices3.autotask.net/atservicesrest",
                "https://webservices3.autotask.net/atservicesrest/v1.0/",
            ),
            (
                "http://127.0.0.1:9/at/atservicesrest/V1.0",
                "http://127.0.0.1:9/at/atservicesrest/V1.0/",
            ),
        ] {
            let b = entity_base(&Url::parse(zone).unwrap());
            assert_eq!(b.as_str(), want);
            assert_eq!(
                endpoint(&b, "Companies/query").path().rsplit('/').nth(1),
                Some("Companies")
            );
        }
    }

    #[test]
    fn error_bodies() {
        let h = HeaderMap::new();
        let v = parse_error(
            400,
            &h,
            br#"{"errors":["effectiveDate must be between the start date and end date of the Contract","second"]}"#,
        );
        assert_eq!(
            v.message.as_deref(),
            Some("effectiveDate must be between the start date and end date of the Contract")
        );
        assert_eq!(v.details, vec!["second".to_string()]);
        let v = parse_error(500, &h, br#"{"errors":[]}"#);
        assert_eq!(v, VendorError::default());
        let v = parse_error(500, &h, br#"{"Message":"An error has occurred."}"#);
        assert_eq!(v.message.as_deref(), Some("An error has occurred."));
        let v = parse_error(
            503,
            &h,
            b"<html><head><title>Service Unavailable</title></head><body>x</body></html>",
        );
        assert_eq!(v.message.as_deref(), Some("Service Unavailable"));
        let v = parse_error(500, &h, b"<html><body>no title</body></html>");
        assert_eq!(v.message, None);
        let v = parse_error(401, &h, b"Unauthorized\r\n");
        assert_eq!(v.message.as_deref(), Some("Unauthorized"));
        // Truncated or wrong-typed JSON: nothing made up, no panic.
        assert_eq!(parse_error(400, &h, br#"{"errors":["cut"#).message, None);
        assert_eq!(parse_error(400, &h, br#"{"errors":"x"}"#).message, None);
        assert_eq!(
            parse_error(400, &h, br#"{"errors":[1,{"message":"m"}]}"#).details,
            vec!["m".to_string()]
        );

        // Through the shared error path: the status picks the kind, the message is Autotask's.
        let e = crate::api::http::error_from_response(
            Api::Autotask,
            parse_error,
            400,
            &h,
            br#"{"errors":["Invalid query syntax. Queries are limited to 500 or fewer 'OR' conditions."]}"#,
            "POST Companies/query",
        );
        assert_eq!(e.kind, ErrorKind::Rejected);
        assert!(e.to_string().contains("500 or fewer"), "{e}");
        let e = crate::api::http::error_from_response(
            Api::Autotask,
            parse_error,
            401,
            &h,
            b"",
            "GET Companies/{id}",
        );
        assert_eq!(e.kind, ErrorKind::Unauthorized);
    }

    #[test]
    fn debug_redacts_credentials() {
        let c = AutotaskCredentials::new("api@msp.example", "s3cr3t-value", "TRACK-ID-123");
        let d = format!("{c:?}");
        assert!(d.contains("api@msp.example"));
        assert!(!d.contains("s3cr3t-value"), "{d}");
        assert!(!d.contains("TRACK-ID-123"), "{d}");
        let client = AutotaskClient::from_zone_url(
            &Url::parse("https://webservices3.autotask.net/atservicesrest/").unwrap(),
            reqwest::Client::new(),
            c,
        );
        let d = format!("{client:?}");
        assert!(
            !d.contains("s3cr3t-value") && !d.contains("TRACK-ID-123"),
            "{d}"
        );
    }

    #[test]
    fn entities_read_spec_examples() {
        let page: QueryPage = serde_json::from_str(
            r#"{"items":[{"id":516,"companyName":"Contoso Pty Ltd","companyNumber":"C-0516","companyType":1,"isActive":true,
      "phone":"02 9555 1234","webAddress":"contoso.com.au","ownerResourceID":29682885,"userDefinedFields":[]}],
    "pageDetails":{"count":1,"requestCount":2,"prevPageUrl":null,"nextPageUrl":null}}"#,
        )
        .unwrap();
        let c: Company = serde_json::from_value(page.items[0].clone()).unwrap();
        assert_eq!(c.company_name, "Contoso Pty Ltd");
        assert_eq!(c.owner_resource_id, Some(29682885));
        let k: Contract = serde_json::from_value(json!({"id":7001,"companyID":516,"contractName":"CSP",
            "contractType":7,"status":1,"startDate":"2025-08-31","endDate":"2026-08-30","contractPeriodType":2,"setupFee":0}))
        .unwrap();
        assert!(k.is_recurring_service());
        assert_eq!(k.setup_fee, Some(Decimal::ZERO));
        let s: Service = serde_json::from_value(json!({"id":9001,"name":"M365","sku":"P1Y:CFQ7TTC0LCHC",
            "unitPrice":34.55,"unitCost":28.19,"periodType":2,"billingCodeID":29683278,"isActive":true}))
        .unwrap();
        assert_eq!(s.unit_cost, Some(Decimal::new(2819, 2)));
        let cs: ContractService = serde_json::from_value(
            json!({"id":1,"contractID":7001,"serviceID":9001,"unitPrice":34.55,"invoiceDescription":"x"}),
        )
        .unwrap();
        assert_eq!(cs.effective_price(), Some(Decimal::new(3455, 2)));
        let z: Zone = serde_json::from_str(r#"{"zoneName":"America East","url":"https://webservices3.autotask.net/atservicesrest/","webUrl":"https://ww3.autotask.net/","ci":12345}"#).unwrap();
        assert_eq!(z.ci, Some(12345));
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        crate::api::json_strategy::json_with(
            &[
                "errors",
                "items",
                "pageDetails",
                "nextPageUrl",
                "id",
                "url",
                "startDate",
                "units",
                "contractServiceID",
                "message",
            ],
            &["2025-08-31T00:00:00"],
        )
    }

    fn parse_all(bytes: &[u8]) {
        let h = HeaderMap::new();
        let _ = parse_error(400, &h, bytes);
        let _ = decode_json::<QueryPage>(Api::Autotask, "op", &h, bytes);
        let _ = decode_json::<Zone>(Api::Autotask, "op", &h, bytes);
        let _ = decode_json::<CountResponse>(Api::Autotask, "op", &h, bytes);
        let _ = decode_json::<ItemResponse<Company>>(Api::Autotask, "op", &h, bytes);
        let _ = decode_json::<OperationResult>(Api::Autotask, "op", &h, bytes);
        let _ = decode_json::<Vec<ContractServiceUnit>>(Api::Autotask, "op", &h, bytes);
        let _ = decode_json::<Vec<Contract>>(Api::Autotask, "op", &h, bytes);
        let _ = decode_json::<Vec<ContractService>>(Api::Autotask, "op", &h, bytes);
        let _ = decode_json::<Vec<Service>>(Api::Autotask, "op", &h, bytes);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parsers_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            parse_all(&bytes);
        }

        #[test]
        fn parsers_never_panic_on_json(v in arb_json()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            parse_all(&bytes);
            if let Some(s) = v.as_str() {
                let _ = parse_lenient_date(s);
                let _ = parse_lenient_datetime(s);
            }
        }

        #[test]
        fn split_keeps_every_value(n in 0usize..2000, m in 0usize..700) {
            let parts = split_for_or_limit(&[Filter::or([
                Filter::is_in("a", 0..n as i64),
                Filter::is_in("b", 0..m as i64),
            ])]);
            let mut a = HashSet::new();
            let mut b = HashSet::new();
            for p in &parts {
                prop_assert!(p.iter().map(Filter::or_conditions).sum::<usize>() <= 500);
                let v = serde_json::to_value(p).unwrap();
                for x in v[0]["items"][0]["value"].as_array().unwrap() {
                    a.insert(x.as_i64().unwrap());
                }
                for x in v[0]["items"][1]["value"].as_array().unwrap() {
                    b.insert(x.as_i64().unwrap());
                }
            }
            // The union of the parts asks for exactly what the whole asked for.
            prop_assert_eq!(a.len(), n);
            prop_assert_eq!(b.len(), m);
        }
    }
}
