//! Reconciling while the fetch runs (docs/reconcile.md "While the fetch runs"): the Reconcile
//! tab fills its table as customers arrive.
//!
//! A partial snapshot has Dicker Data and the PSA complete and Microsoft's data for some of
//! the customers. Reconciling it as if it were complete would report every Dicker Data line
//! and PSA charge of a customer not fetched yet as a mismatch (billed but not at Microsoft,
//! overbilled…). Instead, a customer still to come makes no line at all: only customers whose
//! data is in are audited, and each of their lines is the line the full reconciliation will
//! show (same statuses, counts and links), because the customer mapping still sees every
//! customer listed so far.

use super::model::{Options, Reconciliation};
use crate::api::error::ApiError;
use crate::engine::fetch::PartialSnapshot;

/// Reconcile the customers whose data is in. The lines of a customer still pending (listed but
/// not fetched, or — until Partner Center's list is complete — a tenant only Dicker Data
/// knows) are left out, not reported as mismatches; the final reconciliation of the whole
/// snapshot is [`super::reconcile`], unchanged.
pub fn reconcile_partial(p: &PartialSnapshot, opts: &Options) -> Result<Reconciliation, ApiError> {
    super::reconcile::reconcile_scoped(&p.snapshot, &p.pending, p.listing_complete, opts)
}
