//! Pure logic, no I/O: mapping customers and products across the systems, and reconciling
//! what Dicker Data bills, what Microsoft has (purchased and assigned) and what the PSA
//! charges (DESIGN.md §4; docs/reconcile.md).
//!
//! The entry point is [`reconcile`]: a fetched [`crate::engine::fetch::Snapshot`] and
//! [`Options`] (manual overrides, Dicker Data's prices, the moment to measure windows from) in,
//! a [`Reconciliation`] out — lines with statuses, money and an explanation of every number,
//! a [`Summary`], and the [`Mapping`] view. [`export`] writes it as JSON, CSV or a table.

pub mod export;
pub mod mapping;
pub mod model;
pub mod names;
pub mod partial;
pub mod plan;
pub mod plan_export;
pub(crate) mod psa;
pub mod reconcile;
pub mod sync;

pub use mapping::{CustomerLink, Mapping, MatchReason, PsaLink, UnmappedPsaProduct};
pub use model::{
    Billing, CustomerOverride, Explanation, Field, ImpactPart, Line, Options, Overrides, PriceBook,
    ProductKey, ProductOverride, PsaCustomerRef, PsaProductRef, Reconciliation, SourceRecord,
    Status, Suggestion, Summary, Term,
};
pub use partial::reconcile_partial;
pub use reconcile::{CANCEL_WINDOW_HOURS, reconcile, stock_codes};
