//! The admin endpoints outside the API root, for tests: see everything, set faults.
//!
//! They take no token: the server is meant to listen on loopback only.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::App;
use super::config::Faults;
use super::reply::ApiError;
use super::store::Snapshot;

/// `GET /_admin/state` and `POST /_admin/faults`.
pub fn router() -> Router<App> {
    Router::new()
        .route("/_admin/state", get(state))
        .route("/_admin/faults", post(set_faults))
}

/// Every device and key, deleted ones included, the request log, and the faults in force.
///
/// Devices are shown as the last tick of the background task left them: reading the state
/// does not move them on, so tests can see that the server does it by itself.
async fn state(State(app): State<App>) -> Json<Snapshot> {
    Json(super::lock(&app).snapshot())
}

/// Replaces the faults in force with the body; fields left out are off. Answers the faults
/// now in force.
async fn set_faults(State(app): State<App>, body: Bytes) -> Result<Json<Faults>, ApiError> {
    let faults: Faults =
        serde_json::from_slice(&body).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    super::lock(&app).faults = faults.clone();
    Ok(Json(faults))
}
