//! The API endpoints, mounted under `/metal/v1`.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::Value;

use super::App;
use super::page::{ListQuery, paginate};
use super::reply::ApiError;
use super::wire;

/// The API root every route below is mounted at.
pub const API_ROOT: &str = "/metal/v1";

/// The endpoints of the contract; anything else answers 404 in the API's JSON form.
pub fn router() -> Router<App> {
    Router::new()
        .route(
            "/projects/{project_id}/devices",
            post(create_device).get(list_devices),
        )
        .route("/devices/{id}", get(get_device).delete(delete_device))
        .route("/devices/{id}/events", get(device_events))
        .route(
            "/projects/{project_id}/ssh-keys",
            post(create_key).get(list_keys),
        )
        .route("/ssh-keys/{id}", delete(delete_key))
        .route("/capacity/metros", post(check_capacity))
        .fallback(|| async { ApiError::not_found() })
}

async fn create_device(
    State(app): State<App>,
    Path(project_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut store = super::current(&app);
    let device = store.create_device(&project_id, &body, Utc::now())?;
    Ok((StatusCode::CREATED, Json(store.render().device(&device))))
}

async fn get_device(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut store = super::current(&app);
    let device = store.get_device(&id)?;
    Ok(Json(store.render().device(&device)))
}

async fn list_devices(
    State(app): State<App>,
    Path(project_id): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(query)?;
    let store = super::current(&app);
    let all = store.list_devices(&project_id, query.tag.as_deref())?;
    let path = format!("{API_ROOT}/projects/{project_id}/devices");
    let (devices, meta) = paginate(all, &query, &path);
    Ok(Json(store.render().device_list(&devices, &meta)))
}

async fn delete_device(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let force_delete = wire::force_delete(query.as_deref(), &body);
    super::current(&app).delete_device(&id, force_delete, Utc::now())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn device_events(
    State(app): State<App>,
    Path(id): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(query)?;
    let mut store = super::current(&app);
    let all = store.device_events(&id)?;
    let (events, meta) = paginate(all, &query, &format!("{API_ROOT}/devices/{id}/events"));
    Ok(Json(store.render().event_list(&events, &meta)))
}

async fn create_key(
    State(app): State<App>,
    Path(project_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut store = super::current(&app);
    let key = store.create_key(&project_id, &body, Utc::now())?;
    let answer = if store.take_unreadable_key_create() {
        store.render().key_without_id(&key)
    } else {
        store.render().key(&key)
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn list_keys(
    State(app): State<App>,
    Path(project_id): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(query)?;
    let store = super::current(&app);
    let all = store.list_keys(&project_id)?;
    let path = format!("{API_ROOT}/projects/{project_id}/ssh-keys");
    let (ssh_keys, meta) = paginate(all, &query, &path);
    Ok(Json(store.render().key_list(&ssh_keys, &meta)))
}

async fn delete_key(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    super::current(&app).delete_key(&id, Utc::now())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn check_capacity(State(app): State<App>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let store = super::current(&app);
    let answer = store.check_capacity(&body)?;
    Ok(Json(store.render().capacity(&answer)))
}

/// A malformed `page` or `per_page` gets the API's JSON error form, not axum's text.
fn list_query(query: Result<Query<ListQuery>, QueryRejection>) -> Result<ListQuery, ApiError> {
    query
        .map(|Query(query)| query)
        .map_err(|rejection| ApiError::unprocessable(rejection.body_text()))
}
