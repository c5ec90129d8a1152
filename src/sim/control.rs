//! The control surface, under `/_sim` (a path no real API uses): state dump, call statistics,
//! device-code approval, faults at run time, token expiry.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::Sim;
use super::faults::FaultSpec;

pub fn router() -> Router<Sim> {
    Router::new()
        .route("/state", get(state))
        .route("/world", get(world))
        .route("/planted", get(planted))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset_stats))
        .route("/faults", get(get_faults).put(put_faults).post(post_faults))
        .route("/device/approve", post(approve_device))
        .route("/tokens/expire", post(expire_tokens))
        .route("/urls", get(urls))
}

fn bad_request(msg: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": msg})),
    )
        .into_response()
}

/// The whole state: the world as the APIs' writes left it, plus each API's runtime records.
async fn state(State(sim): State<Sim>) -> Response {
    let s = sim.state();
    Json(serde_json::to_value(&*s).unwrap_or_default()).into_response()
}

/// Only the world (loadable again with `--dataset`).
async fn world(State(sim): State<Sim>) -> Response {
    let s = sim.state();
    Json(serde_json::to_value(&s.world).unwrap_or_default()).into_response()
}

async fn planted(State(sim): State<Sim>) -> Response {
    let s = sim.state();
    Json(serde_json::to_value(&s.world.planted).unwrap_or_default()).into_response()
}

async fn stats(State(sim): State<Sim>) -> Response {
    Json(serde_json::to_value(sim.faults.stats()).unwrap_or_default()).into_response()
}

async fn reset_stats(State(sim): State<Sim>) -> StatusCode {
    sim.faults.reset_stats();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(sim): State<Sim>) -> Response {
    Json(serde_json::to_value(sim.faults.spec()).unwrap_or_default()).into_response()
}

/// Replace the faults with a JSON [`FaultSpec`].
async fn put_faults(State(sim): State<Sim>, body: String) -> Response {
    match serde_json::from_str::<FaultSpec>(&body) {
        Ok(spec) => {
            sim.faults.set_spec(spec.clone());
            Json(serde_json::to_value(spec).unwrap_or_default()).into_response()
        }
        Err(e) => bad_request(format!("not a fault spec: {e}")),
    }
}

/// Replace the faults with a `--faults` style text spec (`latency=40ms,429=0.1`).
async fn post_faults(State(sim): State<Sim>, body: String) -> Response {
    match FaultSpec::parse(body.trim()) {
        Ok(spec) => {
            sim.faults.set_spec(spec.clone());
            Json(serde_json::to_value(spec).unwrap_or_default()).into_response()
        }
        Err(e) => bad_request(e),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Approve {
    /// The user code shown to the person; all pending codes when absent.
    user_code: Option<String>,
    /// Who signs in; the first MSP admin when absent.
    upn: Option<String>,
    /// Decline instead of approve.
    decline: bool,
}

async fn approve_device(State(sim): State<Sim>, body: String) -> Response {
    let req: Approve = if body.trim().is_empty() {
        Approve::default()
    } else {
        match serde_json::from_str(&body) {
            Ok(r) => r,
            Err(e) => {
                return bad_request(format!(
                    "expected {{\"user_code\", \"upn\", \"decline\"}}: {e}"
                ));
            }
        }
    };
    let mut s = sim.state();
    match super::entra::approve_device(&mut s, req.user_code.as_deref(), req.upn.as_deref(), req.decline) {
        Ok(n) => Json(serde_json::json!({"approved": if req.decline {0} else {n}, "declined": if req.decline {n} else {0}})).into_response(),
        Err(e) => bad_request(e),
    }
}

/// Expire every access token the sim issued (Entra, Xero) and every Dicker Data AccessKey:
/// the next call with any of them is refused and the client must renew.
async fn expire_tokens(State(sim): State<Sim>) -> Response {
    let mut s = sim.state();
    let tokens = s.tokens.expire_all();
    let access_keys = s.dickerdata.expire_access_keys();
    Json(serde_json::json!({"expired": tokens + access_keys, "access_tokens": tokens, "dicker_data_access_keys": access_keys})).into_response()
}

async fn urls(State(sim): State<Sim>) -> Response {
    Json(serde_json::to_value(sim.urls()).unwrap_or_default()).into_response()
}
