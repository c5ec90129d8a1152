//! Simulated connectwise API (work in progress: routes land with issue 2).

use axum::Router;
use serde::Serialize;

use super::Sim;

/// Runtime records of this API that are not part of the dataset.
#[derive(Debug, Default, Serialize)]
pub struct Runtime {}

pub fn router() -> Router<Sim> {
    Router::new()
}
