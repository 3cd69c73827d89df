//! Error answers in the API's two JSON forms, and the load balancer's HTML page.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answer: `{"error": "..."}` or `{"errors": [...]}`, as the API sent both.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    body: Value,
}

impl ApiError {
    /// `{"error": message}`.
    pub fn one(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": message.into() }),
        }
    }

    /// `{"errors": messages}`, the form of validation errors.
    pub fn many(status: StatusCode, messages: Vec<String>) -> Self {
        Self {
            status,
            body: json!({ "errors": messages }),
        }
    }

    pub fn not_found() -> Self {
        Self::one(StatusCode::NOT_FOUND, "Not found")
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::many(StatusCode::UNPROCESSABLE_ENTITY, vec![message.into()])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// What a load balancer in front of the API answers when the API is down: HTML, not JSON.
pub fn bad_gateway() -> Response {
    let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\
                <body><center><h1>502 Bad Gateway</h1></center></body>\r\n</html>\r\n";
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "text/html")],
        page,
    )
        .into_response()
}
