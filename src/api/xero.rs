//! Xero Accounting API client (reference/external-apis.md §7.2–§7.8). Sign-in and tokens are
//! in [`crate::auth::xero`]; this client takes any [`TokenSource`].
//!
//! - Tenants come from `GET {api}/connections` (§7.2); accounting calls go to
//!   `{api}/api.xro/2.0/…` with `xero-tenant-id` and `Accept: application/json` (§7.3).
//! - Contacts and invoices are paged (§7.4, §7.6); accounts are not (§7.5).
//! - Invoices are created with `PUT /Invoices?summarizeErrors=true` and an `Idempotency-Key`
//!   (§7.3, §7.6), which makes a resend after a lost response safe.
//! - Limits (§7.8): 5 concurrent and 60 calls per rolling minute per tenant, enforced here
//!   before Xero has to; the remaining-call headers are kept; a 429 for the daily limit is
//!   reported at once and the tenant is not called again until it resets.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::Method;
use reqwest::header::HeaderMap;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::autotask::{parse_lenient_date, parse_lenient_datetime, text_fallback};
use super::error::{Api, ApiError, ErrorKind, VendorError, clean_text};
use super::http::{
    HttpCore, Request, Response, RetryPolicy, StatsSnapshot, TokenSource, decode_json, endpoint,
};
use super::limit::Limits;

/// Records asked for per page. "Up to 100 per call" is documented; 1000 is the community
/// maximum (§7.4 [UNCONFIRMED]); paging works whichever the server honours.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// The documented page size when a response does not say (§7.4, §7.6).
const DOCUMENTED_PAGE_SIZE: usize = 100;
/// Ids or numbers per list parameter, so a URL stays well under common length limits
/// [interpretation: Xero documents no limit].
const LIST_CHUNK: usize = 40;
/// Safety net against a server that never stops paging.
const MAX_PAGES: u32 = 10_000;
/// `Idempotency-Key` is at most 128 characters (§7.3).
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
/// Invoices per `PUT/POST /Invoices` request when creating many: Xero's documentation
/// recommends batches of 50 (requests are limited to 3.5 MB) [COMMUNITY: quoted in
/// waynerobinson/xeroizer#286; §7.6 allows several invoices per request].
pub const INVOICE_BATCH: usize = 50;

// ---------------------------------------------------------------------------------------------
// Dates: "\/Date(1714348800000+0000)\/" and ISO strings (§7.3)
// ---------------------------------------------------------------------------------------------

/// `(milliseconds since the epoch, offset in minutes)` from `/Date(ms±hhmm)/`.
fn parse_ms_date(s: &str) -> Option<(i64, i64)> {
    let s: String = s.trim().chars().filter(|c| *c != '\\').collect();
    let s = s.trim_matches('/');
    let inner = s.strip_prefix("Date(")?.strip_suffix(')')?;
    let split = inner
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '+' || *c == '-')
        .map(|(i, _)| i)
        .unwrap_or(inner.len());
    let ms: i64 = inner[..split].parse().ok()?;
    let off = &inner[split..];
    let offset_min = if off.is_empty() {
        0
    } else {
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let digits = &off[1..];
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let h: i64 = digits[..2].parse().ok()?;
        let m: i64 = digits[2..].parse().ok()?;
        sign * (h * 60 + m)
    };
    Some((ms, offset_min))
}

/// A timestamp from `/Date(ms±hhmm)/` (the milliseconds are UTC) or an ISO 8601 string.
pub fn parse_xero_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Some((ms, _)) = parse_ms_date(s) {
        return DateTime::from_timestamp_millis(ms);
    }
    parse_lenient_datetime(s)
}

/// A calendar date from `/Date(ms±hhmm)/` (the date at that offset) or an ISO string (the
/// date as written).
pub fn parse_xero_date(s: &str) -> Option<NaiveDate> {
    if let Some((ms, off)) = parse_ms_date(s) {
        let t = DateTime::from_timestamp_millis(ms)?;
        return t
            .checked_add_signed(chrono::TimeDelta::try_minutes(off)?)
            .map(|t| t.date_naive());
    }
    parse_lenient_date(s)
}

/// Serde helper: `Option<NaiveDate>` read from either Xero form, written `YYYY-MM-DD` (§7.6).
pub mod xero_date {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => super::parse_xero_date(s).map(Some).ok_or_else(|| {
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

/// Serde helper: `Option<DateTime<Utc>>` read from either Xero form, written RFC 3339.
pub mod xero_datetime {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => super::parse_xero_datetime(s).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{}` is not a date and time",
                    crate::api::error::clean_text(s, 40)
                ))
            }),
        }
    }

    pub fn serialize<S: Serializer>(v: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&d.to_rfc3339()),
            None => s.serialize_none(),
        }
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Models (§7.2, §7.4–§7.6), with Xero's own field names
// ---------------------------------------------------------------------------------------------

/// A connected organisation (§7.2).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub auth_event_id: Option<String>,
    pub tenant_id: String,
    #[serde(default)]
    pub tenant_type: Option<String>,
    #[serde(default)]
    pub tenant_name: Option<String>,
    #[serde(default, with = "xero_datetime")]
    pub created_date_utc: Option<DateTime<Utc>>,
    #[serde(default, with = "xero_datetime")]
    pub updated_date_utc: Option<DateTime<Utc>>,
}

impl Connection {
    /// `tenantType` ORGANISATION: the only kind with an accounting API.
    pub fn is_organisation(&self) -> bool {
        self.tenant_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("ORGANISATION"))
    }
}

/// `pagination` of a paged response (§7.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    #[serde(default)]
    pub page: Option<u32>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub page_count: Option<u32>,
    #[serde(default)]
    pub item_count: Option<u64>,
}

/// `ContactStatus` (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ContactStatus {
    Active,
    Archived,
    GdprRequest,
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Address {
    #[serde(default)]
    pub address_type: Option<String>,
    #[serde(default)]
    pub address_line1: Option<String>,
    #[serde(default)]
    pub address_line2: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Phone {
    #[serde(default)]
    pub phone_type: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub phone_area_code: Option<String>,
    #[serde(default)]
    pub phone_country_code: Option<String>,
}

/// A contact (§7.4 subset).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct Contact {
    #[serde(rename = "ContactID", default)]
    pub contact_id: Option<String>,
    #[serde(rename = "ContactNumber", default)]
    pub contact_number: Option<String>,
    #[serde(rename = "AccountNumber", default)]
    pub account_number: Option<String>,
    #[serde(rename = "ContactStatus", default)]
    pub contact_status: Option<ContactStatus>,
    #[serde(rename = "Name", default)]
    pub name: Option<String>,
    #[serde(rename = "FirstName", default)]
    pub first_name: Option<String>,
    #[serde(rename = "LastName", default)]
    pub last_name: Option<String>,
    #[serde(rename = "EmailAddress", default)]
    pub email_address: Option<String>,
    #[serde(rename = "TaxNumber", default)]
    pub tax_number: Option<String>,
    #[serde(rename = "IsSupplier", default)]
    pub is_supplier: Option<bool>,
    #[serde(rename = "IsCustomer", default)]
    pub is_customer: Option<bool>,
    #[serde(rename = "DefaultCurrency", default)]
    pub default_currency: Option<String>,
    #[serde(rename = "Addresses", default, deserialize_with = "null_as_default")]
    pub addresses: Vec<Address>,
    #[serde(rename = "Phones", default, deserialize_with = "null_as_default")]
    pub phones: Vec<Phone>,
    #[serde(rename = "UpdatedDateUTC", default, with = "xero_datetime")]
    pub updated_date_utc: Option<DateTime<Utc>>,
    #[serde(rename = "HasValidationErrors", default)]
    pub has_validation_errors: Option<bool>,
}

/// Account `Type` (§7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccountType {
    Bank,
    Current,
    CurrLiab,
    Depreciatn,
    DirectCosts,
    Equity,
    Expense,
    Fixed,
    Inventory,
    Liability,
    NonCurrent,
    OtherIncome,
    Overheads,
    Prepayment,
    Revenue,
    Sales,
    TermLiab,
    Payg,
    #[serde(other)]
    Unknown,
}

impl AccountType {
    /// Accounts a sales line can post to: REVENUE, SALES, OTHERINCOME.
    pub fn is_revenue_like(self) -> bool {
        matches!(
            self,
            AccountType::Revenue | AccountType::Sales | AccountType::OtherIncome
        )
    }

    /// Accounts a bill line can post to: EXPENSE, DIRECTCOSTS, OVERHEADS.
    pub fn is_expense_like(self) -> bool {
        matches!(
            self,
            AccountType::Expense | AccountType::DirectCosts | AccountType::Overheads
        )
    }
}

/// Account `Class` (§7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccountClass {
    Asset,
    Equity,
    Expense,
    Liability,
    Revenue,
    #[serde(other)]
    Unknown,
}

/// Account `Status` (§7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccountStatus {
    Active,
    Archived,
    Deleted,
    #[serde(other)]
    Unknown,
}

/// A chart-of-accounts entry (§7.5).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Account {
    #[serde(rename = "AccountID", default)]
    pub account_id: Option<String>,
    #[serde(rename = "Code", default)]
    pub code: Option<String>,
    #[serde(rename = "Name", default)]
    pub name: Option<String>,
    #[serde(rename = "Type", default)]
    pub account_type: Option<AccountType>,
    #[serde(rename = "Class", default)]
    pub class: Option<AccountClass>,
    #[serde(rename = "Status", default)]
    pub status: Option<AccountStatus>,
    #[serde(rename = "TaxType", default)]
    pub tax_type: Option<String>,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    #[serde(rename = "BankAccountNumber", default)]
    pub bank_account_number: Option<String>,
    #[serde(rename = "BankAccountType", default)]
    pub bank_account_type: Option<String>,
    #[serde(rename = "CurrencyCode", default)]
    pub currency_code: Option<String>,
    #[serde(rename = "EnablePaymentsToAccount", default)]
    pub enable_payments_to_account: Option<bool>,
    #[serde(rename = "ShowInExpenseClaims", default)]
    pub show_in_expense_claims: Option<bool>,
    #[serde(rename = "SystemAccount", default)]
    pub system_account: Option<String>,
    #[serde(rename = "ReportingCode", default)]
    pub reporting_code: Option<String>,
    #[serde(rename = "UpdatedDateUTC", default, with = "xero_datetime")]
    pub updated_date_utc: Option<DateTime<Utc>>,
}

impl Account {
    pub fn is_active(&self) -> bool {
        self.status.is_none_or(|s| s == AccountStatus::Active)
    }
    /// REVENUE, SALES or OTHERINCOME (§7.5).
    pub fn is_revenue_like(&self) -> bool {
        self.account_type.is_some_and(AccountType::is_revenue_like)
    }
    /// EXPENSE, DIRECTCOSTS or OVERHEADS (§7.5).
    pub fn is_expense_like(&self) -> bool {
        self.account_type.is_some_and(AccountType::is_expense_like)
    }
}

/// Active accounts a sales invoice line can use.
pub fn revenue_accounts(accounts: &[Account]) -> Vec<&Account> {
    accounts
        .iter()
        .filter(|a| a.is_active() && a.is_revenue_like())
        .collect()
}

/// Active accounts a bill line can use.
pub fn expense_accounts(accounts: &[Account]) -> Vec<&Account> {
    accounts
        .iter()
        .filter(|a| a.is_active() && a.is_expense_like())
        .collect()
}

/// Invoice `Type` (§7.6): ACCREC = sales invoice, ACCPAY = bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum InvoiceType {
    #[serde(rename = "ACCREC")]
    AccRec,
    #[serde(rename = "ACCPAY")]
    AccPay,
    #[serde(rename = "ACCPAYCREDIT")]
    AccPayCredit,
    #[serde(rename = "ACCRECCREDIT")]
    AccRecCredit,
    #[serde(rename = "APOVERPAYMENT")]
    ApOverpayment,
    #[serde(rename = "APPREPAYMENT")]
    ApPrepayment,
    #[serde(rename = "AROVERPAYMENT")]
    ArOverpayment,
    #[serde(rename = "ARPREPAYMENT")]
    ArPrepayment,
    #[serde(other)]
    Unknown,
}

/// Invoice `Status` (§7.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InvoiceStatus {
    Draft,
    Submitted,
    Deleted,
    Authorised,
    Paid,
    Voided,
    #[serde(other)]
    Unknown,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "DRAFT",
            InvoiceStatus::Submitted => "SUBMITTED",
            InvoiceStatus::Deleted => "DELETED",
            InvoiceStatus::Authorised => "AUTHORISED",
            InvoiceStatus::Paid => "PAID",
            InvoiceStatus::Voided => "VOIDED",
            InvoiceStatus::Unknown => "UNKNOWN",
        }
    }
}

/// `LineAmountTypes` (§7.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum LineAmountTypes {
    Exclusive,
    Inclusive,
    NoTax,
    #[serde(other)]
    Unknown,
}

/// `{"Message": ...}` of a validation error or warning (§7.7).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct ValidationError {
    #[serde(rename = "Message", default)]
    pub message: Option<String>,
}

/// A line of an invoice as Xero returns it (§7.6).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
pub struct LineItem {
    #[serde(rename = "LineItemID", default)]
    pub line_item_id: Option<String>,
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    #[serde(
        rename = "Quantity",
        default,
        with = "rust_decimal::serde::float_option"
    )]
    pub quantity: Option<Decimal>,
    #[serde(
        rename = "UnitAmount",
        default,
        with = "rust_decimal::serde::float_option"
    )]
    pub unit_amount: Option<Decimal>,
    #[serde(rename = "ItemCode", default)]
    pub item_code: Option<String>,
    #[serde(rename = "AccountCode", default)]
    pub account_code: Option<String>,
    #[serde(rename = "AccountID", default)]
    pub account_id: Option<String>,
    #[serde(rename = "TaxType", default)]
    pub tax_type: Option<String>,
    #[serde(
        rename = "TaxAmount",
        default,
        with = "rust_decimal::serde::float_option"
    )]
    pub tax_amount: Option<Decimal>,
    #[serde(
        rename = "LineAmount",
        default,
        with = "rust_decimal::serde::float_option"
    )]
    pub line_amount: Option<Decimal>,
    #[serde(rename = "Tracking", default, deserialize_with = "null_as_default")]
    pub tracking: Vec<Value>,
    #[serde(
        rename = "DiscountRate",
        default,
        with = "rust_decimal::serde::float_option"
    )]
    pub discount_rate: Option<Decimal>,
}

/// An invoice or bill as Xero returns it (§7.6).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Invoice {
    #[serde(rename = "InvoiceID", default)]
    pub invoice_id: Option<String>,
    #[serde(rename = "Type", default)]
    pub invoice_type: Option<InvoiceType>,
    #[serde(rename = "Contact", default)]
    pub contact: Option<Contact>,
    #[serde(rename = "LineItems", default, deserialize_with = "null_as_default")]
    pub line_items: Vec<LineItem>,
    #[serde(rename = "Date", default, with = "xero_date")]
    pub date: Option<NaiveDate>,
    #[serde(rename = "DueDate", default, with = "xero_date")]
    pub due_date: Option<NaiveDate>,
    #[serde(rename = "LineAmountTypes", default)]
    pub line_amount_types: Option<LineAmountTypes>,
    #[serde(rename = "InvoiceNumber", default)]
    pub invoice_number: Option<String>,
    #[serde(rename = "Reference", default)]
    pub reference: Option<String>,
    #[serde(rename = "CurrencyCode", default)]
    pub currency_code: Option<String>,
    #[serde(rename = "Status", default)]
    pub status: Option<InvoiceStatus>,
    #[serde(
        rename = "SubTotal",
        default,
        with = "rust_decimal::serde::float_option"
    )]
    pub sub_total: Option<Decimal>,
    #[serde(
        rename = "TotalTax",
        default,
        with = "rust_decimal::serde::float_option"
    )]
    pub total_tax: Option<Decimal>,
    #[serde(rename = "Total", default, with = "rust_decimal::serde::float_option")]
    pub total: Option<Decimal>,
    #[serde(
        rename = "AmountDue",
        default,
        with = "rust_decimal::serde::float_option"
    )]
    pub amount_due: Option<Decimal>,
    #[serde(
        rename = "AmountPaid",
        default,
        with = "rust_decimal::serde::float_option"
    )]
    pub amount_paid: Option<Decimal>,
    #[serde(rename = "UpdatedDateUTC", default, with = "xero_datetime")]
    pub updated_date_utc: Option<DateTime<Utc>>,
    #[serde(rename = "HasErrors", default)]
    pub has_errors: Option<bool>,
    #[serde(rename = "StatusAttributeString", default)]
    pub status_attribute_string: Option<String>,
    #[serde(
        rename = "ValidationErrors",
        default,
        deserialize_with = "null_as_default"
    )]
    pub validation_errors: Vec<ValidationError>,
    #[serde(rename = "Warnings", default, deserialize_with = "null_as_default")]
    pub warnings: Vec<ValidationError>,
}

impl Invoice {
    /// True when Xero refused this invoice (`HasErrors`, or `StatusAttributeString: ERROR`,
    /// §7.7).
    pub fn failed(&self) -> bool {
        self.has_errors == Some(true)
            || self
                .status_attribute_string
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("ERROR"))
    }
}

/// Who an invoice is for: `{"ContactID": ..}` or `{"Name": ..}` (§7.6).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ContactRef {
    #[serde(rename = "ContactID", skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(rename = "Name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ContactRef {
    pub fn id(id: impl Into<String>) -> Self {
        ContactRef {
            contact_id: Some(id.into()),
            name: None,
        }
    }
}

/// A line to send (§7.6).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NewLineItem {
    /// Set when updating an existing line through [`XeroClient::upsert_invoices`].
    #[serde(rename = "LineItemID", skip_serializing_if = "Option::is_none")]
    pub line_item_id: Option<String>,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "Quantity", with = "rust_decimal::serde::float")]
    pub quantity: Decimal,
    #[serde(rename = "UnitAmount", with = "rust_decimal::serde::float")]
    pub unit_amount: Decimal,
    #[serde(rename = "ItemCode", skip_serializing_if = "Option::is_none")]
    pub item_code: Option<String>,
    #[serde(rename = "AccountCode", skip_serializing_if = "Option::is_none")]
    pub account_code: Option<String>,
    #[serde(rename = "AccountID", skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(rename = "TaxType", skip_serializing_if = "Option::is_none")]
    pub tax_type: Option<String>,
    #[serde(
        rename = "DiscountRate",
        with = "rust_decimal::serde::float_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub discount_rate: Option<Decimal>,
    #[serde(rename = "Tracking", skip_serializing_if = "Vec::is_empty")]
    pub tracking: Vec<Value>,
}

/// An invoice or bill to send (§7.6). Dates go as `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewInvoice {
    /// Set to update an existing invoice through [`XeroClient::upsert_invoices`].
    #[serde(rename = "InvoiceID", skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<String>,
    #[serde(rename = "Type")]
    pub invoice_type: InvoiceType,
    #[serde(rename = "Contact")]
    pub contact: ContactRef,
    #[serde(
        rename = "Date",
        with = "xero_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub date: Option<NaiveDate>,
    #[serde(
        rename = "DueDate",
        with = "xero_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub due_date: Option<NaiveDate>,
    #[serde(rename = "LineAmountTypes", skip_serializing_if = "Option::is_none")]
    pub line_amount_types: Option<LineAmountTypes>,
    /// Auto-generated for ACCREC; the supplier's number for ACCPAY (§7.6).
    #[serde(rename = "InvoiceNumber", skip_serializing_if = "Option::is_none")]
    pub invoice_number: Option<String>,
    /// ACCREC only (§7.6).
    #[serde(rename = "Reference", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(rename = "CurrencyCode", skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<String>,
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    pub status: Option<InvoiceStatus>,
    #[serde(rename = "LineItems")]
    pub line_items: Vec<NewLineItem>,
}

/// `GET /Invoices` filters (§7.6). List filters longer than a few dozen entries are sent over
/// several calls and the results merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceQuery {
    /// A Xero `where` expression, e.g. `Type=="ACCPAY"`.
    pub where_: Option<String>,
    pub order: Option<String>,
    pub statuses: Vec<InvoiceStatus>,
    pub contact_ids: Vec<String>,
    pub invoice_numbers: Vec<String>,
    pub ids: Vec<String>,
    /// Only invoices this app created (`createdByMyApp=true`).
    pub created_by_my_app: bool,
    pub include_archived: bool,
    pub summary_only: bool,
    /// `unitdp=4` for unit amounts to 4 decimal places.
    pub unitdp: Option<u8>,
    /// `If-Modified-Since`.
    pub modified_since: Option<DateTime<Utc>>,
}

impl InvoiceQuery {
    fn params(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if let Some(w) = &self.where_ {
            p.push(("where".to_string(), w.clone()));
        }
        if let Some(o) = &self.order {
            p.push(("order".to_string(), o.clone()));
        }
        if !self.statuses.is_empty() {
            let s: Vec<&str> = self.statuses.iter().map(|s| s.as_str()).collect();
            p.push(("Statuses".to_string(), s.join(",")));
        }
        for (name, list) in [
            ("ContactIDs", &self.contact_ids),
            ("InvoiceNumbers", &self.invoice_numbers),
            ("IDs", &self.ids),
        ] {
            if !list.is_empty() {
                p.push((name.to_string(), list.join(",")));
            }
        }
        if self.created_by_my_app {
            p.push(("createdByMyApp".to_string(), "true".to_string()));
        }
        if self.include_archived {
            p.push(("includeArchived".to_string(), "true".to_string()));
        }
        if self.summary_only {
            p.push(("summaryOnly".to_string(), "true".to_string()));
        }
        if let Some(dp) = self.unitdp {
            p.push(("unitdp".to_string(), dp.to_string()));
        }
        p
    }

    /// Queries whose list filters each hold at most [`LIST_CHUNK`] entries; their results
    /// together are this query's.
    fn split(&self) -> Vec<InvoiceQuery> {
        fn list(q: &mut InvoiceQuery, which: usize) -> &mut Vec<String> {
            match which {
                0 => &mut q.contact_ids,
                1 => &mut q.invoice_numbers,
                _ => &mut q.ids,
            }
        }
        let lens = [
            self.contact_ids.len(),
            self.invoice_numbers.len(),
            self.ids.len(),
        ];
        let Some((which, &longest)) = lens.iter().enumerate().max_by_key(|(_, n)| **n) else {
            return vec![self.clone()];
        };
        if longest <= LIST_CHUNK {
            return vec![self.clone()];
        }
        let mut base = self.clone();
        let values = std::mem::take(list(&mut base, which));
        let mut out = Vec::new();
        for chunk in values.chunks(LIST_CHUNK) {
            let mut q = base.clone();
            *list(&mut q, which) = chunk.to_vec();
            // Another list may still be long: split further.
            out.extend(q.split());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Errors (§7.7, §7.8)
// ---------------------------------------------------------------------------------------------

/// Read a Xero error body (§7.7): the accounting `ValidationException` (details are the
/// validation messages), the gateway's `{Title, Status, Detail}`, OAuth's `{"error"}`, HTML
/// or text. A 429 carries `X-Rate-Limit-Problem` as the code (§7.8).
pub fn parse_error(status: u16, headers: &HeaderMap, body: &[u8]) -> VendorError {
    let mut v = VendorError::default();
    if status == 429
        && let Some(p) = headers
            .get("x-rate-limit-problem")
            .and_then(|h| h.to_str().ok())
    {
        v.code = Some(p.trim().to_ascii_lowercase()).filter(|s| !s.is_empty());
    }
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        v.message = text_fallback(headers, body);
        return v;
    };
    let Some(obj) = json.as_object() else {
        if let Some(s) = json.as_str() {
            v.message = Some(s.to_string()).filter(|s| !s.trim().is_empty());
        }
        return v;
    };
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(err) = text("error") {
        // OAuth (§7.1): {"error":"invalid_grant","error_description":..}.
        v.message = text("error_description").or_else(|| Some(oauth_error_sentence(&err)));
        v.code = v.code.take().or(Some(err));
        return v;
    }
    if obj.contains_key("Title") || obj.contains_key("Detail") {
        // API gateway (§7.7 [UNCONFIRMED exact shape]).
        v.message = text("Detail").or_else(|| text("Title"));
        v.code = v.code.take().or_else(|| text("Title"));
        return v;
    }
    // Accounting API: {ErrorNumber, Type, Message, Elements[].ValidationErrors[].Message}.
    v.message = text("Message").or_else(|| text("message"));
    v.code = v.code.take().or_else(|| text("Type")).or_else(|| {
        obj.get("ErrorNumber")
            .and_then(Value::as_i64)
            .map(|n| n.to_string())
    });
    let mut details = Vec::new();
    if let Some(elements) = obj.get("Elements").and_then(Value::as_array) {
        for e in elements {
            collect_validation_messages(e, 0, &mut details);
        }
    }
    if let Some(direct) = obj.get("ValidationErrors") {
        collect_validation_messages(
            &serde_json::json!({ "ValidationErrors": direct }),
            0,
            &mut details,
        );
    }
    v.details = details;
    v
}

/// Every `ValidationErrors[].Message` in an element, its line items included; de-duplicated,
/// at most 20.
fn collect_validation_messages(v: &Value, depth: usize, out: &mut Vec<String>) {
    if depth > 4 || out.len() >= 20 {
        return;
    }
    match v {
        Value::Object(o) => {
            // The element's own messages first, then its children's (line items).
            for e in o
                .get("ValidationErrors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(m) = e.get("Message").and_then(Value::as_str) {
                    let m = m.trim().to_string();
                    if !m.is_empty() && !out.contains(&m) && out.len() < 20 {
                        out.push(m);
                    }
                }
            }
            for (k, child) in o {
                if k != "ValidationErrors" && (child.is_array() || child.is_object()) {
                    collect_validation_messages(child, depth + 1, out);
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                collect_validation_messages(i, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// A sentence for an OAuth error code without a description (§7.1).
pub(crate) fn oauth_error_sentence(code: &str) -> String {
    match code {
        "invalid_grant" => "the sign-in has expired or was revoked; sign in to Xero again".into(),
        "invalid_client" | "unauthorized_client" => {
            "this app's client id is not accepted (check the Xero app settings)".into()
        }
        "invalid_scope" => {
            "the requested scopes are not allowed for this app (apps created after 2 March 2026 need the granular accounting scopes)".into()
        }
        "access_denied" => "sign-in was declined".into(),
        other => format!("sign-in failed ({})", clean_text(other, 60)),
    }
}

/// Remaining calls as Xero last reported them (§7.8 headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// `X-MinLimit-Remaining`: calls left this minute for the tenant.
    pub minute_remaining: Option<u32>,
    /// `X-DayLimit-Remaining`: calls left today for the tenant.
    pub day_remaining: Option<u32>,
    /// `X-AppMinLimit-Remaining`: calls left this minute for the app across tenants.
    pub app_minute_remaining: Option<u32>,
}

impl RateLimitStatus {
    fn from_headers(h: &HeaderMap) -> Option<RateLimitStatus> {
        let num = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u32>().ok())
        };
        let s = RateLimitStatus {
            minute_remaining: num("x-minlimit-remaining"),
            day_remaining: num("x-daylimit-remaining"),
            app_minute_remaining: num("x-appminlimit-remaining"),
        };
        (s != RateLimitStatus::default()).then_some(s)
    }
}

fn describe_wait(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 5400 {
        format!("in about {} hours", secs.saturating_add(1800) / 3600)
    } else if secs >= 90 {
        format!("in about {} minutes", secs.div_ceil(60))
    } else {
        "within a minute or two".into()
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Tracking {
    last: Option<RateLimitStatus>,
    per_tenant: HashMap<String, RateLimitStatus>,
    /// Tenants whose daily limit is used up, and when it resets.
    day_blocked: HashMap<String, Instant>,
}

/// Xero API client (all tenants share one token and one limiter keyed by tenant id).
#[derive(Clone)]
pub struct XeroClient {
    core: HttpCore,
    api_base: Url,
    accounting: Url,
    page_size: u32,
    tracking: Arc<Mutex<Tracking>>,
}

impl fmt::Debug for XeroClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XeroClient")
            .field("api_base", &self.api_base.as_str())
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct InvoicesEnvelope {
    #[serde(rename = "Invoices", default, deserialize_with = "null_as_default")]
    invoices: Vec<Invoice>,
}

/// What [`XeroClient::upsert_invoices_each`] reads of each invoice in the answer.
#[derive(Deserialize)]
struct SavedInvoice {
    #[serde(rename = "InvoiceID", default)]
    invoice_id: Option<String>,
    #[serde(rename = "HasErrors", default)]
    has_errors: Option<bool>,
    #[serde(rename = "StatusAttributeString", default)]
    status_attribute_string: Option<String>,
    #[serde(
        rename = "ValidationErrors",
        default,
        deserialize_with = "null_as_default"
    )]
    validation_errors: Vec<ValidationError>,
}

#[derive(Deserialize)]
struct SavedEnvelope {
    #[serde(rename = "Invoices", default, deserialize_with = "null_as_default")]
    invoices: Vec<SavedInvoice>,
}

#[derive(Deserialize)]
struct AccountsEnvelope {
    #[serde(rename = "Accounts", default, deserialize_with = "null_as_default")]
    accounts: Vec<Account>,
}

#[derive(Serialize)]
struct InvoicesBody<'a> {
    #[serde(rename = "Invoices")]
    invoices: &'a [NewInvoice],
}

impl XeroClient {
    /// Per tenant: 5 concurrent, 60 calls per rolling minute (§7.8); 10 in flight overall.
    pub fn limits() -> Limits {
        Limits {
            global_concurrency: 10,
            per_key_concurrency: Some(5),
            // 60 per rolling minute; counted over 61 s because Xero counts from arrival and we
            // from sending, and uneven latency would otherwise draw a rare 429.
            per_key_rate: Some((60, Duration::from_secs(61))),
        }
    }

    /// `api_base` is [`crate::config::Endpoints::xero_api`] (`https://api.xero.com`).
    pub fn new(api_base: Url, http: reqwest::Client, token: Arc<dyn TokenSource>) -> XeroClient {
        let core = HttpCore::new(Api::Xero, http, Self::limits(), parse_error)
            .with_token(token)
            .with_give_up(is_day_limit);
        let accounting = endpoint(&api_base, "api.xro/2.0");
        XeroClient {
            core,
            api_base,
            accounting,
            page_size: DEFAULT_PAGE_SIZE,
            tracking: Arc::new(Mutex::new(Tracking::default())),
        }
    }

    /// Replace the retry policy (tests use short backoffs).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.core = self.core.with_retry(retry);
        self
    }

    /// Records asked for per page (1..=1000).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n.clamp(1, 1000);
        self
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.core.stats()
    }

    /// The remaining-call headers last seen for `tenant` (§7.8).
    pub fn rate_limits(&self, tenant: &str) -> Option<RateLimitStatus> {
        self.lock().per_tenant.get(tenant).copied()
    }

    /// The remaining-call headers of the latest response, whichever tenant.
    pub fn last_rate_limits(&self) -> Option<RateLimitStatus> {
        self.lock().last
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracking> {
        self.tracking.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tenant_request(&self, method: Method, url: Url, tenant: &str) -> Request {
        Request::new(method, url)
            .header("xero-tenant-id", tenant)
            .header("accept", "application/json")
            .key(tenant)
    }

    /// Send for a tenant: refuse at once while its daily limit is used up; keep the
    /// remaining-call headers; turn a daily-limit 429 into a clear error and remember it.
    async fn send(&self, tenant: &str, req: Request) -> Result<Response, ApiError> {
        let op = req.operation.clone();
        if let Some(until) = self.lock().day_blocked.get(tenant).copied() {
            let now = Instant::now();
            if until > now {
                return Err(day_limit_error(Some(until - now)).with_operation(op));
            }
        }
        match self.core.send(req).await {
            Ok(resp) => {
                if let Some(s) = RateLimitStatus::from_headers(&resp.headers) {
                    let mut t = self.lock();
                    t.last = Some(s);
                    t.per_tenant.insert(tenant.to_string(), s);
                    t.day_blocked.remove(tenant);
                }
                Ok(resp)
            }
            Err(e) => {
                if let ErrorKind::RateLimited { retry_after } = e.kind
                    && e.code.as_deref() == Some("day")
                {
                    // §7.8: the daily window is fixed; resending before it resets only
                    // burns calls. Without a Retry-After, wait an hour before trying.
                    let wait = retry_after
                        .unwrap_or(Duration::from_secs(3600))
                        .min(Duration::from_secs(2 * 86_400));
                    let now = Instant::now();
                    self.lock()
                        .day_blocked
                        .insert(tenant.to_string(), now.checked_add(wait).unwrap_or(now));
                    let mut d = day_limit_error(retry_after);
                    d.status = e.status;
                    d.operation = e.operation;
                    return Err(d);
                }
                Err(e)
            }
        }
    }

    /// The organisations this sign-in may use (§7.2).
    pub async fn connections(&self) -> Result<Vec<Connection>, ApiError> {
        let req = Request::get(endpoint(&self.api_base, "connections"))
            .header("accept", "application/json")
            .operation("GET /connections");
        self.core.send_json(req).await
    }

    /// Disconnect an organisation (§7.2 `DELETE /connections/{id}`, the connection's `id`).
    pub async fn disconnect(&self, connection_id: &str) -> Result<(), ApiError> {
        let id: String = url::form_urlencoded::byte_serialize(connection_id.as_bytes()).collect();
        let req = Request::new(
            Method::DELETE,
            endpoint(&self.api_base, &format!("connections/{id}")),
        )
        .operation("DELETE /connections/{id}");
        self.core.send(req).await.map(|_| ())
    }

    fn accounting_url(&self, path: &str, params: &[(String, String)]) -> Url {
        let mut url = endpoint(&self.accounting, path);
        if !params.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// Every record of a paged collection: `page=1..` until a short or empty page, or
    /// `pagination.pageCount` (§7.4).
    async fn get_all<T: DeserializeOwned>(
        &self,
        tenant: &str,
        path: &str,
        collection: &str,
        id_field: &str,
        params: &[(String, String)],
        modified_since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Value>, ApiError> {
        let op = format!("GET {path}");
        let mut out: Vec<Value> = Vec::new();
        let mut prev_first: Option<String> = None;
        let mut page: u32 = 1;
        loop {
            let mut p = params.to_vec();
            p.push(("page".into(), page.to_string()));
            p.push(("pageSize".into(), self.page_size.to_string()));
            let mut req = self
                .tenant_request(Method::GET, self.accounting_url(path, &p), tenant)
                .operation(op.clone());
            if let Some(t) = modified_since {
                req = req.header(
                    "if-modified-since",
                    &t.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                );
            }
            let resp = match self.send(tenant, req).await {
                Ok(r) => r,
                // 304: nothing changed since `modified_since`.
                Err(e) if e.status == Some(304) => break,
                Err(e) => return Err(e),
            };
            if resp.status.as_u16() == 304 || resp.body.is_empty() {
                break;
            }
            let body: Value = resp.json()?;
            let items = match body.get(collection) {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a.clone(),
                Some(_) => {
                    return Err(ApiError::malformed(
                        Api::Xero,
                        format!("`{collection}` is not a list"),
                    )
                    .with_operation(op));
                }
            };
            // Check each page's items deserialise now, so a bad record names its page.
            for item in &items {
                if let Err(e) = T::deserialize(item) {
                    let id = item.get(id_field).and_then(Value::as_str).unwrap_or("?");
                    return Err(ApiError::malformed(
                        Api::Xero,
                        format!(
                            "{collection} {} has unexpected JSON: {}",
                            clean_text(id, 40),
                            clean_text(&e.to_string(), 200)
                        ),
                    )
                    .with_operation(op));
                }
            }
            let pagination: Option<Pagination> = body
                .get("pagination")
                .or_else(|| body.get("Pagination"))
                .and_then(|p| Pagination::deserialize(p).ok());
            if items.is_empty() {
                break;
            }
            let first = items[0]
                .get(id_field)
                .and_then(Value::as_str)
                .map(str::to_string);
            if first.is_some() && first == prev_first {
                return Err(ApiError::malformed(
                    Api::Xero,
                    "paging that never ends (the same page came back twice)",
                )
                .with_operation(op));
            }
            prev_first = first;
            let n = items.len();
            out.extend(items);
            let last = match pagination.and_then(|p| p.page_count) {
                Some(count) => page >= count,
                None => {
                    let size = pagination
                        .and_then(|p| p.page_size)
                        .map(|s| s as usize)
                        .unwrap_or(DOCUMENTED_PAGE_SIZE)
                        .min(self.page_size as usize)
                        .max(1);
                    n < size
                }
            };
            if last {
                break;
            }
            page += 1;
            if page > MAX_PAGES {
                return Err(
                    ApiError::malformed(Api::Xero, "more pages than cspsync can read")
                        .with_operation(op),
                );
            }
        }
        Ok(out)
    }

    fn typed<T: DeserializeOwned>(values: Vec<Value>, op: &str) -> Result<Vec<T>, ApiError> {
        values
            .into_iter()
            .map(|v| {
                serde_json::from_value(v).map_err(|e| {
                    ApiError::malformed(
                        Api::Xero,
                        format!("unexpected JSON: {}", clean_text(&e.to_string(), 200)),
                    )
                    .with_operation(op)
                })
            })
            .collect()
    }

    /// Every contact of the organisation, optionally filtered by a `where` expression (§7.4).
    pub async fn contacts(
        &self,
        tenant: &str,
        where_: Option<&str>,
    ) -> Result<Vec<Contact>, ApiError> {
        let mut params = Vec::new();
        if let Some(w) = where_ {
            params.push(("where".to_string(), w.to_string()));
        }
        let values = self
            .get_all::<Contact>(tenant, "Contacts", "Contacts", "ContactID", &params, None)
            .await?;
        Self::typed(values, "GET Contacts")
    }

    /// The chart of accounts (§7.5; not paged).
    pub async fn accounts(
        &self,
        tenant: &str,
        where_: Option<&str>,
    ) -> Result<Vec<Account>, ApiError> {
        let mut params = Vec::new();
        if let Some(w) = where_ {
            params.push(("where".to_string(), w.to_string()));
        }
        let req = self
            .tenant_request(
                Method::GET,
                self.accounting_url("Accounts", &params),
                tenant,
            )
            .operation("GET Accounts");
        let resp = self.send(tenant, req).await?;
        Ok(resp.json::<AccountsEnvelope>()?.accounts)
    }

    /// Every invoice matching `q`, all pages (§7.6).
    pub async fn invoices(&self, tenant: &str, q: &InvoiceQuery) -> Result<Vec<Invoice>, ApiError> {
        let mut out = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let parts = q.split();
        let split = parts.len() > 1;
        for part in parts {
            let values = self
                .get_all::<Invoice>(
                    tenant,
                    "Invoices",
                    "Invoices",
                    "InvoiceID",
                    &part.params(),
                    q.modified_since,
                )
                .await?;
            for v in values {
                if split
                    && let Some(id) = v.get("InvoiceID").and_then(Value::as_str)
                    && !seen.insert(id.to_string())
                {
                    continue;
                }
                out.push(v);
            }
        }
        Self::typed(out, "GET Invoices")
    }

    /// Create invoices or bills (`PUT /Invoices?summarizeErrors=true`, §7.6) under an
    /// `Idempotency-Key` (§7.3): a resend with the same key after a lost response or a 5xx
    /// cannot create them twice, so the request is retried like any idempotent one.
    pub async fn create_invoices(
        &self,
        tenant: &str,
        invoices: &[NewInvoice],
        idempotency_key: &str,
    ) -> Result<Vec<Invoice>, ApiError> {
        check_idempotency_key(idempotency_key)?;
        let req = self
            .tenant_request(
                Method::PUT,
                self.accounting_url("Invoices", &[("summarizeErrors".into(), "true".into())]),
                tenant,
            )
            .header("idempotency-key", idempotency_key)
            .json(&InvoicesBody { invoices })
            .idempotent(true)
            .operation("PUT Invoices");
        self.write_invoices(tenant, req).await
    }

    /// Create or update invoices (`POST /Invoices?summarizeErrors=true`, §7.6). With an
    /// idempotency key the request is safe to resend; without one it is never resent once
    /// it may have reached Xero.
    pub async fn upsert_invoices(
        &self,
        tenant: &str,
        invoices: &[NewInvoice],
        idempotency_key: Option<&str>,
    ) -> Result<Vec<Invoice>, ApiError> {
        let mut req = self
            .tenant_request(
                Method::POST,
                self.accounting_url("Invoices", &[("summarizeErrors".into(), "true".into())]),
                tenant,
            )
            .json(&InvoicesBody { invoices })
            .idempotent(false)
            .operation("POST Invoices");
        if let Some(key) = idempotency_key {
            check_idempotency_key(key)?;
            req = req.header("idempotency-key", key).idempotent(true);
        }
        self.write_invoices(tenant, req).await
    }

    /// Create or update several invoices in one request, each on its own
    /// (`POST /Invoices?summarizeErrors=false`, §7.6/§7.7): the answer holds one result per
    /// invoice sent, in the order sent — its `InvoiceID`, or the validation messages Xero
    /// refused it with — so one bad invoice does not fail the others. Sent with an
    /// `Idempotency-Key` (§7.3), which makes a resend after a lost response or a 5xx safe. An
    /// `InvoiceNumber` that exists already for the type updates that invoice (upsert by
    /// number, §7.6). Only the ids and errors of the answer are read (a batch's answer repeats
    /// every invoice in full).
    pub async fn upsert_invoices_each(
        &self,
        tenant: &str,
        invoices: &[NewInvoice],
        idempotency_key: &str,
    ) -> Result<Vec<Result<String, Vec<String>>>, ApiError> {
        check_idempotency_key(idempotency_key)?;
        let req = self
            .tenant_request(
                Method::POST,
                self.accounting_url("Invoices", &[("summarizeErrors".into(), "false".into())]),
                tenant,
            )
            .header("idempotency-key", idempotency_key)
            .json(&InvoicesBody { invoices })
            .idempotent(true)
            .operation("POST Invoices");
        let op = req.operation.clone();
        let resp = self.send(tenant, req).await?;
        let env: SavedEnvelope = decode_json(Api::Xero, &op, &resp.headers, &resp.body)?;
        if env.invoices.len() != invoices.len() {
            return Err(ApiError::malformed(
                Api::Xero,
                format!(
                    "answered {} invoice(s) for the {} sent, so it cannot be told which were saved",
                    env.invoices.len(),
                    invoices.len()
                ),
            )
            .with_operation(op));
        }
        env.invoices
            .into_iter()
            .map(|i| {
                let failed = i.has_errors == Some(true)
                    || i.status_attribute_string
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case("ERROR"));
                if failed {
                    let mut msgs: Vec<String> = i
                        .validation_errors
                        .iter()
                        .filter_map(|v| v.message.as_deref())
                        .map(|m| clean_text(m, 300))
                        .take(10)
                        .collect();
                    if msgs.is_empty() {
                        msgs.push("refused without a reason".to_string());
                    }
                    return Ok(Err(msgs));
                }
                match i.invoice_id.filter(|id| !id.trim().is_empty()) {
                    Some(id) => Ok(Ok(id)),
                    None => Err(ApiError::malformed(
                        Api::Xero,
                        "saved an invoice without telling its InvoiceID",
                    )
                    .with_operation(op.clone())),
                }
            })
            .collect()
    }

    async fn write_invoices(&self, tenant: &str, req: Request) -> Result<Vec<Invoice>, ApiError> {
        let op = req.operation.clone();
        let resp = match self.send(tenant, req).await {
            Ok(r) => r,
            Err(mut e) => {
                if matches!(
                    e.kind,
                    ErrorKind::Transport {
                        maybe_applied: true
                    }
                ) {
                    e.message = format!(
                        "{}; the invoices may have been created, so check Xero before trying again",
                        e.message
                    );
                }
                return Err(e);
            }
        };
        let env: InvoicesEnvelope = decode_json(Api::Xero, &op, &resp.headers, &resp.body)?;
        let failed: Vec<&Invoice> = env.invoices.iter().filter(|i| i.failed()).collect();
        if !failed.is_empty() {
            // With summarizeErrors=true Xero answers 400 instead; this covers a server that
            // reports per-item errors in a 200 (§7.7).
            let details = failed
                .iter()
                .flat_map(|i| i.validation_errors.iter())
                .filter_map(|v| v.message.as_deref())
                .map(|m| clean_text(m, 300))
                .take(20)
                .collect();
            let mut e = ApiError::new(
                Api::Xero,
                ErrorKind::Failed,
                format!(
                    "refused {} of the {} invoice(s) sent",
                    failed.len(),
                    env.invoices.len()
                ),
            )
            .with_status(resp.status.as_u16())
            .with_operation(op);
            e.details = details;
            return Err(e);
        }
        Ok(env.invoices)
    }
}

fn check_idempotency_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::config(
            Api::Xero,
            format!(
                "cannot use that idempotency key: it must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ),
        ));
    }
    Ok(())
}

/// A 429 for the daily limit (§7.8 `X-Rate-Limit-Problem: day`) resets hours later: retrying
/// it in seconds only spends calls, so the shared HTTP core gives up on it at once.
fn is_day_limit(status: u16, headers: &HeaderMap) -> bool {
    status == 429
        && headers
            .get("x-rate-limit-problem")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("day"))
}

fn day_limit_error(retry_after: Option<Duration>) -> ApiError {
    let when = match retry_after {
        Some(d) => {
            let at = chrono::TimeDelta::from_std(d)
                .ok()
                .and_then(|delta| Utc::now().checked_add_signed(delta));
            match at {
                Some(at) => format!("{} (at {} UTC)", describe_wait(d), at.format("%H:%M")),
                None => describe_wait(d),
            }
        }
        None => "at a time Xero sets for each organisation, within 24 hours".into(),
    };
    ApiError::new(
        Api::Xero,
        ErrorKind::RateLimited { retry_after },
        format!(
            "reports that the daily limit of 5,000 calls for this organisation is used up; it resets {when}"
        ),
    )
    .with_code("day")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::http::error_from_response;
    use proptest::prelude::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    #[test]
    fn validation_exception_details_are_the_messages() {
        let body = br#"{"ErrorNumber":10,"Type":"ValidationException","Message":"A validation exception occurred",
 "Elements":[{"InvoiceID":"00000000-0000-0000-0000-000000000000","ValidationErrors":[{"Message":"Account code '999' is not a valid code for this document."}],
   "LineItems":[{"ValidationErrors":[{"Message":"Quantity must be positive."},{"Message":"Account code '999' is not a valid code for this document."}]}]}]}"#;
        let h = HeaderMap::new();
        let v = parse_error(400, &h, body);
        assert_eq!(v.code.as_deref(), Some("ValidationException"));
        assert_eq!(
            v.message.as_deref(),
            Some("A validation exception occurred")
        );
        assert_eq!(
            v.details,
            vec![
                "Account code '999' is not a valid code for this document.".to_string(),
                "Quantity must be positive.".to_string()
            ]
        );
        let e = error_from_response(Api::Xero, parse_error, 400, &h, body, "PUT Invoices");
        assert_eq!(e.kind, ErrorKind::Rejected);
        let s = e.to_string();
        assert!(
            s.contains("ValidationException") && s.contains("'999'"),
            "{s}"
        );
    }

    #[test]
    fn gateway_oauth_html_and_broken_bodies() {
        let h = HeaderMap::new();
        let v = parse_error(
            401,
            &h,
            br#"{"Title":"Unauthorized","Status":401,"Detail":"AuthenticationUnsuccessful","Instance":"x","Type":"about:blank"}"#,
        );
        assert_eq!(v.message.as_deref(), Some("AuthenticationUnsuccessful"));
        assert_eq!(v.code.as_deref(), Some("Unauthorized"));
        let e = error_from_response(
            Api::Xero,
            parse_error,
            403,
            &h,
            br#"{"Title":"Forbidden","Status":403,"Detail":"AuthorizationUnsuccessful"}"#,
            "GET Invoices",
        );
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert!(e.to_string().contains("AuthorizationUnsuccessful"));

        let v = parse_error(400, &h, br#"{"error":"invalid_grant"}"#);
        assert_eq!(v.code.as_deref(), Some("invalid_grant"));
        assert!(v.message.unwrap().contains("sign in to Xero again"));

        let v = parse_error(
            500,
            &h,
            b"<!DOCTYPE html><html><head><title>Oops - Xero</title></head></html>",
        );
        assert_eq!(v.message.as_deref(), Some("Oops - Xero"));
        for broken in [
            &br#"{"Message":"cut"#[..],
            br#"{"Elements":"nope","Message":5}"#,
            br#"{"Elements":[{"ValidationErrors":[1,null,{"Message":7}]}]}"#,
            br#"[1,2,3]"#,
            b"",
            b"\xff\xfe",
        ] {
            let v = parse_error(400, &h, broken);
            assert!(v.details.is_empty());
            let e = error_from_response(Api::Xero, parse_error, 400, &h, broken, "op");
            assert_eq!(e.kind, ErrorKind::Rejected);
        }
    }

    #[test]
    fn rate_limit_problem_becomes_the_code() {
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-problem", HeaderValue::from_static("Day"));
        h.insert("retry-after", HeaderValue::from_static("20000"));
        let e = error_from_response(Api::Xero, parse_error, 429, &h, b"", "GET Invoices");
        assert_eq!(e.code.as_deref(), Some("day"));
        assert!(
            matches!(e.kind, ErrorKind::RateLimited { retry_after: Some(d) } if d.as_secs() == 20000)
        );
        // Absurd values never panic.
        let _ = day_limit_error(Some(Duration::from_secs(u64::MAX))).to_string();
        let d = day_limit_error(Some(Duration::from_secs(5 * 3600)));
        let s = d.to_string();
        assert!(
            s.starts_with("Xero reports that the daily limit of 5,000 calls"),
            "{s}"
        );
        assert!(s.contains("in about 5 hours"), "{s}");
    }

    #[test]
    fn xero_dates_both_forms() {
        let d = NaiveDate::from_ymd_opt(2024, 4, 29).unwrap();
        assert_eq!(parse_xero_date("/Date(1714348800000+0000)/"), Some(d));
        assert_eq!(parse_xero_date("\\/Date(1714348800000+0000)\\/"), Some(d));
        assert_eq!(parse_xero_date("/Date(1714348800000)/"), Some(d));
        assert_eq!(parse_xero_date("2024-04-29T00:00:00"), Some(d));
        assert_eq!(parse_xero_date("2024-04-29"), Some(d));
        // The offset gives the local date: 2024-04-28T23:00Z at +0100 is the 29th.
        assert_eq!(parse_xero_date("/Date(1714345200000+0100)/"), Some(d));
        assert_eq!(
            parse_xero_datetime("/Date(1714380000000)/")
                .unwrap()
                .to_rfc3339(),
            "2024-04-29T08:40:00+00:00"
        );
        assert_eq!(
            parse_xero_datetime("2019-12-07T18:46:19.5165400")
                .unwrap()
                .to_rfc3339(),
            "2019-12-07T18:46:19.516540+00:00"
        );
        assert!(parse_xero_datetime("/Date(-62135596800000)/").is_some());
        for bad in [
            "/Date()/",
            "/Date(abc)/",
            "/Date(1+01)/",
            "Date(99999999999999999999)",
            "tomorrow",
        ] {
            assert_eq!(parse_xero_date(bad), None, "{bad}");
        }
        // Through serde, in an invoice as Xero sends it.
        let inv: Invoice = serde_json::from_str(
            r#"{"InvoiceID":"b2e9","Type":"ACCPAY","Date":"\/Date(1714348800000+0000)\/","DueDate":"2024-05-29T00:00:00",
                "Status":"DRAFT","LineAmountTypes":"Exclusive","SubTotal":704.75,"TotalTax":70.48,"Total":775.23,
                "UpdatedDateUTC":"\/Date(1714380000000+0000)\/","LineItems":[{"Quantity":25,"UnitAmount":28.19,"AccountCode":"310"}]}"#,
        )
        .unwrap();
        assert_eq!(inv.date, Some(d));
        assert_eq!(inv.due_date, NaiveDate::from_ymd_opt(2024, 5, 29));
        assert_eq!(inv.total, Some(Decimal::new(77523, 2)));
        assert_eq!(inv.line_items[0].unit_amount, Some(Decimal::new(2819, 2)));
        assert_eq!(inv.invoice_type, Some(InvoiceType::AccPay));
    }

    #[test]
    fn new_invoice_serializes_as_the_spec_example() {
        let inv = NewInvoice {
            invoice_id: None,
            invoice_type: InvoiceType::AccPay,
            contact: ContactRef::id("430fa14a-f945-44d3-9f97-5df5e28441b8"),
            date: NaiveDate::from_ymd_opt(2026, 5, 1),
            due_date: NaiveDate::from_ymd_opt(2026, 5, 31),
            line_amount_types: Some(LineAmountTypes::Exclusive),
            invoice_number: Some("DD-INV-889123".into()),
            reference: None,
            currency_code: None,
            status: Some(InvoiceStatus::Draft),
            line_items: vec![NewLineItem {
                description: "MS NCE M365 Business Premium 1yr commit x25 (May 2026)".into(),
                quantity: Decimal::from(25),
                unit_amount: Decimal::new(2819, 2),
                account_code: Some("310".into()),
                tax_type: Some("INPUT".into()),
                ..Default::default()
            }],
        };
        assert_eq!(
            serde_json::to_value(InvoicesBody { invoices: &[inv] }).unwrap(),
            json!({"Invoices":[{"Type":"ACCPAY","Contact":{"ContactID":"430fa14a-f945-44d3-9f97-5df5e28441b8"},
              "Date":"2026-05-01","DueDate":"2026-05-31","InvoiceNumber":"DD-INV-889123","LineAmountTypes":"Exclusive","Status":"DRAFT",
              "LineItems":[{"Description":"MS NCE M365 Business Premium 1yr commit x25 (May 2026)","Quantity":25.0,"UnitAmount":28.19,"AccountCode":"310","TaxType":"INPUT"}]}]})
        );
    }

    #[test]
    fn accounts_and_contacts_read_spec_examples() {
        let env: AccountsEnvelope = serde_json::from_str(r#"{"Accounts":[{"AccountID":"ebd06280-af70-4bed-97c6-7451a454ad85","Code":"200","Name":"Sales","Type":"REVENUE","Class":"REVENUE","Status":"ACTIVE","TaxType":"OUTPUT"},
             {"AccountID":"3d7a1b2c-...","Code":"310","Name":"Cost of Goods Sold","Type":"DIRECTCOSTS","Class":"EXPENSE","Status":"ACTIVE","TaxType":"INPUT"},
             {"Code":"800","Type":"CURRLIAB","Status":"ARCHIVED"},{"Code":"x","Type":"SOMETHINGNEW"}]}"#).unwrap();
        let rev: Vec<_> = revenue_accounts(&env.accounts)
            .iter()
            .map(|a| a.code.clone())
            .collect();
        let exp: Vec<_> = expense_accounts(&env.accounts)
            .iter()
            .map(|a| a.code.clone())
            .collect();
        assert_eq!(rev, vec![Some("200".to_string())]);
        assert_eq!(exp, vec![Some("310".to_string())]);
        assert_eq!(env.accounts[3].account_type, Some(AccountType::Unknown));
        let c: Contact = serde_json::from_str(r#"{"ContactID":"430fa14a-f945-44d3-9f97-5df5e28441b8","ContactStatus":"ACTIVE","Name":"Dicker Data Limited",
   "EmailAddress":"accounts@example.com.au","IsSupplier":true,"IsCustomer":false,"UpdatedDateUTC":"\/Date(1714348800000+0000)\/","Addresses":null}"#).unwrap();
        assert_eq!(c.contact_status, Some(ContactStatus::Active));
        assert_eq!(c.is_supplier, Some(true));
        let conns: Vec<Connection> = serde_json::from_str(r#"[{"id":"7cb59f93-2964-421d-bb5e-a0f7a4572a44","authEventId":"d99ecdfe-00d3-4d5f-b4a8-b3f1d5b0c5d3","tenantId":"fe79f7dd-b6d4-4a92-ba7b-538af6289c58",
  "tenantType":"ORGANISATION","tenantName":"Demo Company (AU)","createdDateUtc":"2019-12-07T18:46:19.5165400","updatedDateUtc":"2019-12-07T18:46:19.5187840"}]"#).unwrap();
        assert!(conns[0].is_organisation());
        assert_eq!(conns[0].tenant_name.as_deref(), Some("Demo Company (AU)"));
    }

    #[test]
    fn invoice_query_params_and_split() {
        let q = InvoiceQuery {
            where_: Some("Type==\"ACCPAY\"".into()),
            statuses: vec![InvoiceStatus::Draft, InvoiceStatus::Authorised],
            contact_ids: (0..100).map(|i| format!("c{i}")).collect(),
            created_by_my_app: true,
            ..Default::default()
        };
        let parts = q.split();
        assert_eq!(parts.len(), 3);
        let all: Vec<String> = parts.iter().flat_map(|p| p.contact_ids.clone()).collect();
        assert_eq!(all, q.contact_ids);
        let p = parts[0].params();
        assert!(p.contains(&("Statuses".into(), "DRAFT,AUTHORISED".into())));
        assert!(p.contains(&("createdByMyApp".into(), "true".into())));
        assert!(p.contains(&("where".into(), "Type==\"ACCPAY\"".into())));
        assert_eq!(InvoiceQuery::default().split().len(), 1);
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert!(check_idempotency_key("sync-2026-05-01-abc").is_ok());
        assert!(check_idempotency_key(&"k".repeat(128)).is_ok());
        assert!(check_idempotency_key(&"k".repeat(129)).is_err());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key("has space").is_err());
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        crate::api::json_strategy::json_with(
            &[
                "Elements",
                "ValidationErrors",
                "Message",
                "Invoices",
                "Contacts",
                "Accounts",
                "pagination",
                "Date",
                "LineItems",
                "Title",
                "Detail",
                "error",
            ],
            &["/Date(1714348800000+0000)/"],
        )
    }

    fn parse_all(bytes: &[u8]) {
        let mut h = HeaderMap::new();
        let _ = parse_error(400, &h, bytes);
        h.insert("x-rate-limit-problem", HeaderValue::from_static("minute"));
        let _ = parse_error(429, &h, bytes);
        let _ = decode_json::<InvoicesEnvelope>(Api::Xero, "op", &h, bytes);
        let _ = decode_json::<AccountsEnvelope>(Api::Xero, "op", &h, bytes);
        let _ = decode_json::<Vec<Connection>>(Api::Xero, "op", &h, bytes);
        let _ = decode_json::<Vec<Contact>>(Api::Xero, "op", &h, bytes);
        let _ = decode_json::<Pagination>(Api::Xero, "op", &h, bytes);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parsers_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            parse_all(&bytes);
        }

        #[test]
        fn parsers_never_panic_on_json(v in arb_json()) {
            parse_all(&serde_json::to_vec(&v).unwrap());
            if let Some(s) = v.as_str() {
                let _ = parse_xero_date(s);
                let _ = parse_xero_datetime(s);
            }
        }

        #[test]
        fn ms_dates_never_panic(ms in any::<i64>(), off in "[+-][0-9]{4}|") {
            let _ = parse_xero_date(&format!("/Date({ms}{off})/"));
            let _ = parse_xero_datetime(&format!("\\/Date({ms}{off})\\/"));
        }
    }
}
