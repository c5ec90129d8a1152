//! Simulated Entra ID (work in progress: routes land with issue 2).

use axum::Router;
use serde::Serialize;

use super::{Sim, State};

/// Runtime records of this API that are not part of the dataset.
#[derive(Debug, Default, Serialize)]
pub struct Runtime {}

pub fn router() -> Router<Sim> {
    Router::new()
}

/// Approve (or decline) pending device codes; returns how many.
pub fn approve_device(
    _state: &mut State,
    _user_code: Option<&str>,
    _upn: Option<&str>,
    _decline: bool,
) -> Result<usize, String> {
    Err("no device code is pending".into())
}
