//! What happens to every API request before and after its handler: the request log, the
//! load balancer's 502, token checking, 429s, and the rate-limit headers.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::App;
use super::rate::RateStatus;
use super::reply::{self, ApiError};
use super::store::{RequestRecord, Store, take_one};

/// The largest request body the server reads.
const MAX_BODY: usize = 1 << 20;

/// The middleware around every route under the API root.
pub async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return ApiError::one(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            .into_response();
    };
    let now = Utc::now();
    let mut record = RequestRecord {
        at: now,
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        accept: header_text(&parts.headers, header::ACCEPT),
        content_type: header_text(&parts.headers, header::CONTENT_TYPE),
        body: logged_body(&bytes),
        status: 0,
    };
    let admission = super::lock(&app).admit(&parts.headers, now);
    let response = match admission {
        Err(refusal) => refusal.into_response(),
        Ok(status) => {
            let mut response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            status.apply(response.headers_mut());
            response
        }
    };
    record.status = response.status().as_u16();
    super::lock(&app).log_request(record);
    response
}

/// Why a request is answered before it reaches its handler.
enum Refusal {
    /// A load balancer's 502: the API never saw the request.
    BadGateway,
    WrongToken(RateStatus),
    TooManyRequests {
        status: RateStatus,
        retry_after: Option<u64>,
    },
}

impl Store {
    /// Lets a request through, with the rate-limit status its answer reports, or says why it
    /// is answered here.
    fn admit(&mut self, headers: &HeaderMap, now: DateTime<Utc>) -> Result<RateStatus, Refusal> {
        if take_one(&mut self.faults.bad_gateway_requests) {
            return Err(Refusal::BadGateway);
        }
        let status = self.window.count(now, &self.config.rate_limit);
        if !self.token_matches(headers) {
            return Err(Refusal::WrongToken(status));
        }
        if take_one(&mut self.faults.rate_limited_requests) {
            let secs = self.faults.retry_after_secs;
            return Err(Refusal::TooManyRequests {
                status: RateStatus::exhausted_for(status.limit, now, secs),
                retry_after: self.faults.send_retry_after.then_some(secs),
            });
        }
        if status.exceeded {
            let secs = u64::try_from(status.seconds_to_reset(now)).unwrap_or(1);
            return Err(Refusal::TooManyRequests {
                status,
                retry_after: Some(secs),
            });
        }
        Ok(status)
    }

    fn token_matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get("x-auth-token")
            .is_some_and(|given| given.as_bytes() == self.config.token.expose().as_bytes())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (error, status, retry_after) = match self {
            Self::BadGateway => return reply::bad_gateway(),
            Self::WrongToken(status) => (
                ApiError::one(StatusCode::UNAUTHORIZED, "Invalid authentication token"),
                status,
                None,
            ),
            Self::TooManyRequests {
                status,
                retry_after,
            } => (
                ApiError::one(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
                status,
                retry_after,
            ),
        };
        let mut response = error.into_response();
        status.apply(response.headers_mut());
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// The body as the request log keeps it: JSON when it parses, text otherwise.
fn logged_body(bytes: &Bytes) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
    )
}
