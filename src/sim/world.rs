//! The simulated world's dataset: every system's records, as each system itself holds them.
//!
//! This is the JSON a `--dataset FILE` holds (schema: docs/dataset.schema.json, derived from
//! these types; prose: docs/dataset.md). Each system keeps its own ids and names, linked the
//! way the real systems are linked: Partner Center and Graph by customer tenant id, Dicker Data
//! by tenant id and Microsoft subscription id, the PSAs only by company names and their own
//! ids. The mismatches the generator planted are listed in `planted`, written by the generator
//! and never computed by the reconciliation code they test (DESIGN.md §2).
//!
//! The sim never imports the clients' or the domain's types: these are its own reading of
//! reference/external-apis.md.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole simulated world.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct World {
    /// How the world was made, and the date it treats as "today" when it was made.
    pub meta: Meta,
    /// The Entra app registration cspsync signs in with.
    pub app: AppRegistration,
    /// The MSP's own tenant, its staff and its Partner Center identity.
    pub msp: MspTenant,
    /// Customer tenants as Microsoft holds them (Partner Center customers + Graph per tenant).
    pub customers: Vec<CustomerTenant>,
    pub dicker_data: DickerData,
    pub connectwise: ConnectWise,
    pub autotask: Autotask,
    pub xero: Xero,
    /// Mismatches the generator planted on purpose (empty for hand-written worlds).
    pub planted: Vec<Planted>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Meta {
    /// Free text: what this world is for.
    pub description: String,
    /// Generator seed, when generated.
    pub seed: Option<u64>,
    /// The date the generator treated as today; dates in the world are relative to it.
    pub today: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AppRegistration {
    /// The public client id cspsync uses for Microsoft sign-in (no secret: a native app).
    pub client_id: String,
    /// The client id cspsync uses for Xero (an "Auth Code with PKCE" app, no secret).
    pub xero_client_id: String,
    /// Device-code polling `interval` in seconds Entra returns (reference §1.2: 5 commonly).
    pub device_code_interval_secs: u64,
    /// Device-code lifetime `expires_in` in seconds (reference §1.2: default 900).
    pub device_code_expires_secs: u64,
}

impl Default for AppRegistration {
    fn default() -> Self {
        AppRegistration {
            client_id: "9b3c5b1e-6d3a-4a8e-9f0a-2c1d4e5f6a7b".into(),
            xero_client_id: "CSPSYNCXEROCLIENTID00000000000000".into(),
            device_code_interval_secs: 5,
            device_code_expires_secs: 900,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MspTenant {
    pub tenant_id: String,
    pub display_name: String,
    /// ISO 3166 alpha-2 (`AU`, `NZ`).
    pub country: String,
    pub verified_domains: Vec<Domain>,
    pub users: Vec<User>,
    /// The Microsoft Partner Network id (Partner Center `mpnId`), digits.
    pub mpn_id: String,
    /// Partner Center `partnerName`.
    pub partner_name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Domain {
    pub name: String,
    pub is_default: bool,
    pub is_initial: bool,
}

/// A user in a tenant (Graph `user`; the sign-in identity for Entra).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct User {
    /// Object id (Graph `id`, id_token `oid`).
    pub id: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub user_principal_name: String,
    pub mail: Option<String>,
    pub job_title: Option<String>,
    pub account_enabled: bool,
    /// `Member` or `Guest`.
    pub user_type: String,
    /// Graph sku ids (GUIDs) assigned to the user.
    pub assigned_licenses: Vec<String>,
    /// Partner Center roles of the user in the MSP tenant: `GlobalAdmin`, `AdminAgent`.
    pub partner_roles: Vec<String>,
    /// Whether the user signs in with MFA (the `amr` claim carries `mfa`).
    pub mfa: bool,
}

/// A customer tenant: the Partner Center customer and what Graph shows inside the tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CustomerTenant {
    /// Customer tenant id (= Partner Center customer `id` and `companyProfile.tenantId`).
    pub tenant_id: String,
    pub commerce_id: String,
    pub company_name: String,
    /// The initial `*.onmicrosoft.com` domain (Partner Center `companyProfile.domain`).
    pub domain: String,
    /// Verified custom domains, the first the default (Graph organization).
    pub custom_domains: Vec<String>,
    /// `reseller`, `advisor`, ...
    pub relationship_to_partner: String,
    pub allow_delegated_access: bool,
    /// Whether the MSP has an active GDAP relationship (Graph in the tenant is reachable).
    pub gdap_active: bool,
    pub country: String,
    /// Number of users in the tenant (the users themselves are not listed for customers).
    pub user_count: u32,
    /// Licences assigned per Graph sku id (GUID) — `subscribedSkus.consumedUnits`.
    pub assigned: BTreeMap<String, u32>,
    pub subscriptions: Vec<MsSubscription>,
}

/// One Microsoft commerce subscription (Partner Center subscription; Graph companySubscription).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MsSubscription {
    /// Subscription GUID (Partner Center `id` = Graph `commerceSubscriptionId`).
    pub id: String,
    /// Graph companySubscription `id` (a different GUID).
    pub directory_id: String,
    /// NCE `product:sku:availability`, e.g. `CFQ7TTC0LCHC:0002:CFQ7TTC0K5DJ`.
    pub offer_id: String,
    pub offer_name: String,
    pub friendly_name: String,
    /// Microsoft product id, e.g. `CFQ7TTC0LCHC`.
    pub product_id: String,
    /// Partner Center sku id, e.g. `0002`.
    pub sku_id: String,
    /// Graph sku GUID.
    pub graph_sku_id: String,
    /// Graph `skuPartNumber`, e.g. `SPB`.
    pub sku_part_number: String,
    pub quantity: u32,
    /// Partner Center status: `active`, `suspended`, `deleted`, `pending`, `expired`.
    pub status: String,
    /// `monthly`, `annual`, `triennial`.
    pub billing_cycle: String,
    /// `P1M`, `P1Y`, `P3Y`.
    pub term_duration: String,
    pub creation_date: Option<DateTime<Utc>>,
    pub effective_start_date: Option<DateTime<Utc>>,
    pub commitment_end_date: Option<DateTime<Utc>>,
    pub auto_renew_enabled: bool,
    pub is_trial: bool,
    pub order_id: String,
    /// Seats added after purchase, each with its own 7-day cancellation window.
    pub seat_additions: Vec<SeatAddition>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SeatAddition {
    pub quantity: u32,
    pub added: Option<DateTime<Utc>>,
}

/// Dicker Data: the distributor's view (reference/external-apis.md §4; modelled, no public spec).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct DickerData {
    /// The reseller's Dicker Data account code.
    pub account_code: String,
    /// The API access code (token) Dicker Data issued.
    pub access_code: String,
    /// AccessKey lifetime in seconds (the real one is undocumented; 600 is D1's fallback).
    pub access_key_lifetime_secs: u32,
    pub subscriptions: Vec<DdSubscription>,
}

/// One CSP subscription line Dicker Data bills.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct DdSubscription {
    pub tenant_id: String,
    /// Dicker Data's short reference, e.g. `2F295B21`.
    pub subscription_reference: String,
    /// Dicker Data's (upper-case) name for the customer.
    pub company_name: String,
    /// Usually the customer's initial domain.
    pub tenant_description: String,
    /// `{term}:{product}:{sku}:{billing plan}:`, e.g. `P1Y:CFQ7TTC0LCHC:0002:1:`.
    pub stock_code: String,
    pub stock_description: String,
    /// `CFQ7TTC0LCHC:0002`.
    pub manufacturer_stock_code: String,
    /// The Microsoft subscription id this line bills.
    pub subscription_id: String,
    pub parent_subscription_id: Option<String>,
    /// `ACTIVE`, `SUSPENDED`, `CANCELLED`.
    pub status: String,
    /// `Monthly`, `Annual`.
    pub billing_frequency: String,
    pub confirmed_quantity: u32,
    pub last_billing_date: Option<NaiveDate>,
    pub next_billing_date: Option<NaiveDate>,
    pub expiry_date: Option<NaiveDate>,
    /// Dicker Data's buy price per seat per month, ex GST.
    pub unit_cost: Decimal,
}

/// ConnectWise Manage (reference/external-apis.md §5).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ConnectWise {
    /// The login company id (`contoso` in `contoso+public:private`).
    pub company_id: String,
    pub public_key: String,
    pub private_key: String,
    /// clientId values accepted in the `clientId` header.
    pub client_ids: Vec<String>,
    pub companies: Vec<CwCompany>,
    pub agreements: Vec<CwAgreement>,
    pub additions: Vec<CwAddition>,
    pub catalog: Vec<CwCatalogItem>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CwCompany {
    pub id: u64,
    pub identifier: String,
    pub name: String,
    /// `Active`, `Inactive`.
    pub status: String,
    /// `Client`, `Prospect`, `Vendor`.
    pub types: Vec<String>,
    pub website: Option<String>,
    pub phone_number: Option<String>,
    pub deleted_flag: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CwAgreement {
    pub id: u64,
    pub name: String,
    /// Agreement type name, e.g. `Microsoft CSP`.
    pub type_name: String,
    pub company_id: u64,
    /// `Active`, `Cancelled`, `Expired`, `Inactive`.
    pub agreement_status: String,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub no_ending_date_flag: bool,
    pub cancelled_flag: bool,
    /// `Monthly`, `Annual`.
    pub billing_cycle: String,
    pub prorate_flag: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CwAddition {
    pub id: u64,
    pub agreement_id: u64,
    /// Catalog item id.
    pub product_id: u64,
    pub quantity: Decimal,
    pub less_included: Decimal,
    pub unit_price: Decimal,
    pub unit_cost: Decimal,
    /// `Billable`, `DoNotBill`, `NoCharge`.
    pub bill_customer: String,
    pub effective_date: Option<NaiveDate>,
    pub cancelled_date: Option<NaiveDate>,
    pub description: String,
    pub invoice_description: Option<String>,
    pub taxable_flag: bool,
    pub last_updated: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CwCatalogItem {
    pub id: u64,
    pub identifier: String,
    pub description: String,
    pub customer_description: String,
    pub price: Decimal,
    pub cost: Decimal,
    pub inactive_flag: bool,
    /// `Agreement`, `Bundle`, `Inventory`, `NonInventory`, `Service`.
    pub product_class: String,
    pub manufacturer_part_number: Option<String>,
    pub vendor_sku: Option<String>,
    pub recurring_flag: bool,
}

/// Autotask (reference/external-apis.md §6).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Autotask {
    /// API user name (an email; `UserName` header and `zoneInformation?user=`).
    pub username: String,
    pub secret: String,
    /// Accepted `ApiIntegrationCode` values.
    pub integration_codes: Vec<String>,
    pub zone_name: String,
    /// The zone's number; the sim serves the zone at `/autotask/zone{n}/atservicesrest/`.
    pub zone_number: u32,
    pub ci: u64,
    pub companies: Vec<AtCompany>,
    pub contracts: Vec<AtContract>,
    /// The service catalogue.
    pub services: Vec<AtService>,
    pub contract_services: Vec<AtContractService>,
    pub contract_service_units: Vec<AtContractServiceUnit>,
    /// Adjustments received (create-only in the real API: never queryable there).
    pub contract_service_adjustments: Vec<AtContractServiceAdjustment>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AtCompany {
    pub id: u64,
    pub company_name: String,
    pub company_number: Option<String>,
    /// 1 = Customer.
    pub company_type: u32,
    pub is_active: bool,
    pub phone: Option<String>,
    pub web_address: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AtContract {
    pub id: u64,
    pub company_id: u64,
    pub contract_name: String,
    pub contract_number: Option<String>,
    /// 7 = Recurring Service.
    pub contract_type: u32,
    /// 1 = Active.
    pub status: u32,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub contract_period_type: Option<u32>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AtService {
    pub id: u64,
    pub name: String,
    pub description: Option<String>,
    /// Free text; the generator puts the Dicker Data stock code `{term}:{product}:{sku}:{plan}:`
    /// here (docs/dataset.md "Linking").
    pub sku: Option<String>,
    pub unit_price: Decimal,
    pub unit_cost: Decimal,
    pub period_type: Option<u32>,
    pub is_active: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AtContractService {
    pub id: u64,
    pub contract_id: u64,
    pub service_id: u64,
    pub unit_price: Decimal,
    pub unit_cost: Decimal,
    pub adjusted_price: Option<Decimal>,
    pub invoice_description: Option<String>,
    pub internal_description: Option<String>,
}

/// One billing period of one contract service (query-only in the real API).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AtContractServiceUnit {
    pub id: u64,
    pub contract_id: u64,
    pub contract_service_id: u64,
    pub service_id: u64,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub units: i64,
    pub price: Decimal,
    pub cost: Decimal,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AtContractServiceAdjustment {
    pub id: u64,
    pub contract_id: u64,
    pub contract_service_id: Option<u64>,
    pub service_id: u64,
    pub unit_change: i64,
    pub adjusted_unit_price: Option<Decimal>,
    pub adjusted_unit_cost: Option<Decimal>,
    pub effective_date: Option<NaiveDate>,
    /// When the sim received it.
    pub received: Option<DateTime<Utc>>,
}

/// Xero (reference/external-apis.md §7): the organisations the MSP's Xero user can connect.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Xero {
    pub organisations: Vec<XeroOrg>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct XeroOrg {
    /// `xero-tenant-id`.
    pub tenant_id: String,
    pub name: String,
    pub contacts: Vec<XeroContact>,
    pub accounts: Vec<XeroAccount>,
    pub invoices: Vec<XeroInvoice>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct XeroContact {
    pub contact_id: String,
    pub name: String,
    /// `ACTIVE`, `ARCHIVED`, `GDPRREQUEST`.
    pub contact_status: String,
    pub email_address: Option<String>,
    pub account_number: Option<String>,
    pub is_supplier: bool,
    pub is_customer: bool,
    pub updated: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct XeroAccount {
    pub account_id: String,
    pub code: String,
    pub name: String,
    /// `REVENUE`, `SALES`, `EXPENSE`, `DIRECTCOSTS`, `BANK`, ...
    pub account_type: String,
    /// `ASSET`, `EQUITY`, `EXPENSE`, `LIABILITY`, `REVENUE`.
    pub class: String,
    /// `ACTIVE`, `ARCHIVED`.
    pub status: String,
    pub tax_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct XeroInvoice {
    pub invoice_id: String,
    /// `ACCREC` (sales invoice) or `ACCPAY` (bill).
    pub invoice_type: String,
    pub contact_id: String,
    pub invoice_number: Option<String>,
    pub reference: Option<String>,
    pub date: Option<NaiveDate>,
    pub due_date: Option<NaiveDate>,
    /// `DRAFT`, `SUBMITTED`, `AUTHORISED`, `PAID`, `VOIDED`, `DELETED`.
    pub status: String,
    /// `Exclusive`, `Inclusive`, `NoTax`.
    pub line_amount_types: String,
    pub currency_code: String,
    pub line_items: Vec<XeroLineItem>,
    /// Whether an app created it through the API (the `createdByMyApp` filter).
    pub created_by_app: bool,
    pub updated: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct XeroLineItem {
    pub line_item_id: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    pub item_code: Option<String>,
    pub account_code: Option<String>,
    pub tax_type: Option<String>,
}

/// One mismatch the generator planted, in the terms of the reconciliation statuses
/// (issue 5): `distributor_microsoft_mismatch`, `psa_underbilled`, `psa_overbilled`,
/// `unassigned_seats`, `over_assigned`, `missing_at_distributor`, `billed_not_at_microsoft`,
/// `unmapped_customer`, `unmapped_product`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Planted {
    pub status: String,
    pub customer_tenant_id: String,
    /// `product:sku`, e.g. `CFQ7TTC0LCHC:0002`; empty for customer-level statuses.
    pub product_id: String,
    /// `P1M`, `P1Y`, `P3Y`; empty for customer-level statuses.
    pub term: String,
    /// Which PSA the mismatch concerns, for PSA statuses (`connectwise`, `autotask`, `xero`).
    pub psa: Option<String>,
    /// What was changed, for a person.
    pub detail: String,
}

impl World {
    /// Parse a dataset, with a message that names what is wrong and where.
    pub fn from_json(text: &str) -> Result<World, String> {
        serde_json::from_str(text).map_err(|e| {
            format!(
                "the dataset is not a valid cspsync world (line {}, column {}): {e}",
                e.line(),
                e.column()
            )
        })
    }

    /// The JSON Schema of a dataset file.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(World)).unwrap_or_default()
    }
}
