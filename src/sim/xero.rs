//! Simulated Xero: login (authorize), identity (token), API (connections, accounting).

use axum::Router;
use serde::Serialize;

use super::Sim;

/// Runtime records of this API that are not part of the dataset.
#[derive(Debug, Default, Serialize)]
pub struct Runtime {}

pub fn login_router() -> Router<Sim> {
    Router::new()
}

pub fn identity_router() -> Router<Sim> {
    Router::new()
}

pub fn api_router() -> Router<Sim> {
    Router::new()
}
