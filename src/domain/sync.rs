//! The sync's vocabulary (issue 6): billing style, the plan of PSA writes with before → after,
//! and the live progress of an apply. Plain data (serde), shared by the planner
//! (`domain::plan`), the engine that applies a plan (`engine::apply`), the Sync tab, the
//! headless `cspsync sync` and the audit log.
//!
//! Dicker Data is the source of truth for what a customer is charged (DESIGN.md §4): a plan
//! brings the PSA's quantities to Dicker Data's. Every write carries a stable `key`: the same
//! intended change gets the same key in every plan, so the journal and the audit log can tell
//! "this write already succeeded" across runs and crashes.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::api::error::Api;

// ---------------------------------------------------------------------------------------------
// Billing style (settings)
// ---------------------------------------------------------------------------------------------

/// When the customer is charged for a period (domain.md §1(c): "Advance or Arrears").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingTiming {
    /// The coming period is charged at its start (the field's default).
    #[default]
    Advance,
    /// The period just ended is charged after it.
    Arrears,
}

impl BillingTiming {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingTiming::Advance => "advance",
            BillingTiming::Arrears => "arrears",
        }
    }
}

/// How the PSA charges: in advance or in arrears, prorated or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BillingStyle {
    #[serde(default)]
    pub timing: BillingTiming,
    #[serde(default)]
    pub prorate: bool,
}

impl BillingStyle {
    /// Arrears with prorate is refused, as the field's products do (domain.md §1(c)).
    pub fn validate(self) -> Result<(), String> {
        if self.timing == BillingTiming::Arrears && self.prorate {
            return Err("Billing in arrears with prorate is not supported: choose billing in advance (prorated or not) or in arrears without prorate.".to_string());
        }
        Ok(())
    }

    pub fn describe(self) -> String {
        format!(
            "in {}, {}",
            self.timing.as_str(),
            if self.prorate {
                "prorated"
            } else {
                "not prorated"
            }
        )
    }
}

/// A sell price for one customer's product that wins over the PSA catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceOverride {
    pub tenant_id: String,
    /// `P1Y:CFQ7TTC0LCHC:0002:1:`.
    pub stock_code: String,
    /// Per seat per month.
    pub unit_price: Decimal,
}

/// What the planner is given besides the reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOptions {
    #[serde(default)]
    pub style: BillingStyle,
    #[serde(default)]
    pub price_overrides: Vec<PriceOverride>,
    /// Xero: the contact bills from Dicker Data are addressed to (the wizard's choice).
    #[serde(default)]
    pub xero_supplier_contact_id: Option<String>,
    /// Xero: account code for sales lines (Revenue) and bill lines (Expense).
    #[serde(default)]
    pub xero_revenue_account: Option<String>,
    #[serde(default)]
    pub xero_expense_account: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------------

/// `ACCREC` (sales invoice) or `ACCPAY` (bill), Xero §7.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum XeroInvoiceKind {
    #[serde(rename = "ACCREC")]
    SalesInvoice,
    #[serde(rename = "ACCPAY")]
    Bill,
}

/// One line of a planned Xero invoice or bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XeroLine {
    pub description: String,
    /// The Dicker Data stock code, as the line's `ItemCode` where the organisation has the
    /// item, else carried in the description.
    pub item_code: Option<String>,
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    pub account_code: String,
}

/// The PSA call a write makes. Ids are the PSA's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// ConnectWise: `PATCH /finance/agreements/{agreement}/additions/{addition}`
    /// `[{"op":"replace","path":"quantity","value":…}]` (§5.3).
    CwSetQuantity {
        agreement_id: u64,
        addition_id: u64,
        quantity: Decimal,
    },
    /// ConnectWise: `POST /finance/agreements/{agreement}/additions` (§5.3).
    CwCreateAddition {
        agreement_id: u64,
        catalog_item_id: u64,
        quantity: Decimal,
        unit_price: Option<Decimal>,
        unit_cost: Option<Decimal>,
        description: String,
        effective_date: NaiveDate,
    },
    /// ConnectWise: set `cancelledDate` on an addition whose subscription ended (§5.3).
    CwCancelAddition {
        agreement_id: u64,
        addition_id: u64,
        cancelled_date: NaiveDate,
    },
    /// Autotask: `POST /Contracts/{contract}/Services` where the contract lacks the service
    /// (§6.3).
    AtAddContractService {
        contract_id: i64,
        service_id: i64,
        unit_price: Option<Decimal>,
        invoice_description: String,
    },
    /// Autotask: `POST /ContractServiceAdjustments` with `unitChange` = target − current;
    /// create-only, never sent twice once it succeeded (§6.3).
    AtAdjustUnits {
        contract_id: i64,
        service_id: i64,
        /// `None` when the contract service is added by the write before it.
        contract_service_id: Option<i64>,
        unit_change: i64,
        effective_date: NaiveDate,
        adjusted_unit_price: Option<Decimal>,
    },
    /// Xero: one DRAFT invoice (ACCREC to the customer's contact) or bill (ACCPAY to the
    /// Dicker Data contact) for the period; `invoice_id` set = update that cspsync draft
    /// (§7.6 `POST /Invoices` creates or updates). Sent with `Idempotency-Key` = the write key.
    XeroDraft {
        kind: XeroInvoiceKind,
        contact_id: String,
        invoice_id: Option<String>,
        /// ACCREC `Reference` / ACCPAY `InvoiceNumber` naming cspsync, the period and the
        /// customer, so a re-run finds the draft instead of creating another.
        reference: String,
        date: NaiveDate,
        due_date: NaiveDate,
        lines: Vec<XeroLine>,
    },
}

impl Op {
    /// Creates that a lost response could leave done-but-unknown.
    pub fn creates(&self) -> bool {
        matches!(
            self,
            Op::CwCreateAddition { .. }
                | Op::AtAddContractService { .. }
                | Op::AtAdjustUnits { .. }
                | Op::XeroDraft {
                    invoice_id: None,
                    ..
                }
        )
    }

    /// What kind of write, for counts and the log.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CwSetQuantity { .. } => "change quantity",
            Op::CwCreateAddition { .. } => "add addition",
            Op::CwCancelAddition { .. } => "cancel addition",
            Op::AtAddContractService { .. } => "add contract service",
            Op::AtAdjustUnits { .. } => "adjust units",
            Op::XeroDraft {
                kind: XeroInvoiceKind::SalesInvoice,
                ..
            } => "draft invoice",
            Op::XeroDraft {
                kind: XeroInvoiceKind::Bill,
                ..
            } => "draft bill",
        }
    }
}

/// Why a write needs an explicit confirmation of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flag", rename_all = "snake_case")]
pub enum Caution {
    /// The new quantity is below the licences assigned in the tenant.
    BelowAssigned { assigned: i64 },
    /// A decrease while no NCE cancellation window is open: Microsoft will keep billing the
    /// seats until renewal, so the customer would be under-charged.
    OutsideCancelWindow,
}

impl Caution {
    pub fn describe(&self) -> String {
        match self {
            Caution::BelowAssigned { assigned } => {
                format!("lowers the charge below the {assigned} licences assigned")
            }
            Caution::OutsideCancelWindow => {
                "a decrease outside the 7-day NCE cancellation window: Microsoft keeps billing these seats until renewal".to_string()
            }
        }
    }
}

/// One PSA write, with what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// Stable across plans for the same intended change (see the module comment).
    pub key: String,
    pub customer_tenant_id: String,
    pub customer_name: String,
    pub system: Api,
    /// The record written, as a person reads it: `addition 9012 on agreement 77`.
    pub target: String,
    /// The product (or, for a Xero draft, `3 lines`).
    pub product: String,
    /// The stock code the write is for (`None` for a Xero draft of several products).
    pub stock_code: Option<String>,
    /// Quantity before and after (`None` = no record before / none after).
    pub before: Option<Decimal>,
    pub after: Option<Decimal>,
    /// Change in what the customer is charged per month (negative = less).
    pub monthly_change: Decimal,
    pub cautions: Vec<Caution>,
    pub op: Op,
}

impl Write {
    pub fn needs_confirmation(&self) -> bool {
        !self.cautions.is_empty()
    }
}

/// A line the plan leaves alone, and why (unmapped customer, no PSA product, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub customer_tenant_id: String,
    pub customer_name: String,
    pub product: String,
    /// The line's Dicker Data stock code, when the skip is about one line of one product.
    #[serde(default)]
    pub stock_code: Option<String>,
    pub reason: String,
}

/// The plan's numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub writes: usize,
    pub customers: usize,
    /// Writes that need their own confirmation.
    pub cautioned: usize,
    pub skipped: usize,
    /// Sum of the writes' monthly change.
    pub monthly_change: Decimal,
}

/// Every write that brings the PSA to Dicker Data's quantities, listed before anything is
/// written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub psa: Api,
    pub created_at: DateTime<Utc>,
    pub style: BillingStyle,
    /// The billing period the writes are for (Xero drafts' dates; effective dates).
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub summary: PlanSummary,
    /// Grouped by customer (customer name, then tenant id), in apply order within a customer.
    pub writes: Vec<Write>,
    pub skipped: Vec<Skipped>,
}

// ---------------------------------------------------------------------------------------------
// Applying
// ---------------------------------------------------------------------------------------------

/// The outcome of one write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Written; `id` = the PSA record written or created.
    Done {
        id: String,
    },
    /// The journal (or the PSA) shows it already succeeded in an earlier run: not sent again.
    AlreadyDone {
        id: String,
    },
    Failed {
        error: String,
    },
    /// Not sent: cancelled, deselected, or an earlier write of the customer failed.
    Skipped {
        reason: String,
    },
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Done { .. } | Outcome::AlreadyDone { .. })
    }
}

/// Where a customer is in an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerState {
    Queued,
    Running,
    Done,
    Failed,
    Skipped,
}

impl fmt::Display for CustomerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CustomerState::Queued => "queued",
            CustomerState::Running => "running",
            CustomerState::Done => "done",
            CustomerState::Failed => "failed",
            CustomerState::Skipped => "skipped",
        })
    }
}

/// Something that happened during an apply, in order (the Sync tab's event log; the audit log
/// gets one entry per finished write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApplyEvent {
    Started {
        at: DateTime<Utc>,
        writes: usize,
        customers: usize,
    },
    Customer {
        tenant_id: String,
        state: CustomerState,
    },
    Write {
        at: DateTime<Utc>,
        /// Index into `Plan::writes`.
        index: usize,
        key: String,
        outcome: Outcome,
    },
    /// A retry after 429/5xx, and how long it waited (so the operator sees why it slowed).
    Retry {
        at: DateTime<Utc>,
        message: String,
    },
    Cancelling,
    Finished {
        at: DateTime<Utc>,
        done: usize,
        already_done: usize,
        failed: usize,
        skipped: usize,
        cancelled: bool,
    },
}

/// Counters for a gauge (sent through a `watch`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyProgress {
    pub total: usize,
    pub finished: usize,
    pub failed: usize,
    pub started_at: Option<DateTime<Utc>>,
}
