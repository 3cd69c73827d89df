//! The client's error type, and how an HTTP error answer becomes one.
//!
//! Every message is built from the status and the response body only, after
//! [`ApiToken::redact`]: no variant ever holds the token.

use reqwest::StatusCode;
use serde::Deserialize;

use super::token::ApiToken;

/// Everything the Metal client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MetalError {
    /// 401, or 403 refusing the credentials. A 403 on a device that failed to provision also
    /// lands here: see [`MetalError::means_gone`]; while a device is waited on, it is reported
    /// as [`MetalError::DeviceFailed`].
    #[error("Metal API refused the request ({status}): {message}")]
    Unauthorized { status: u16, message: String },

    /// 404 or 410: the resource does not exist (any more).
    #[error("Metal API: not found ({status}): {message}")]
    NotFound { status: u16, message: String },

    /// 422: validation failed, no capacity, or the device cannot be deleted yet.
    #[error("Metal API rejected the request (422): {}", messages.join("; "))]
    Unprocessable { messages: Vec<String> },

    /// 429 on every attempt the retry policy allowed.
    #[error("Metal API rate limit still hit after {attempts} attempts: {message}")]
    RateLimited { attempts: u32, message: String },

    /// A 5xx answer, after the retries the policy allowed for this request.
    #[error("Metal API server error ({status}) after {attempts} attempts: {message}")]
    Server {
        status: u16,
        attempts: u32,
        message: String,
    },

    /// Any other 4xx answer (400, 409, ...).
    #[error("Metal API answered {status}: {message}")]
    Http { status: u16, message: String },

    /// A 3xx answer: never followed, as it would take the token to another address.
    #[error(
        "Metal API answered {status} pointing to {location}: metalab follows no redirects, as the token goes to `api_url` only; set `api_url` to the API's own address"
    )]
    Redirected { status: String, location: String },

    /// The request did not get an answer: connection refused, reset, timed out.
    #[error("Metal API unreachable after {attempts} attempts: {message}")]
    Transport { attempts: u32, message: String },

    /// A success answer whose body does not decode.
    #[error("Metal API answer does not decode: {0}")]
    Decode(String),

    /// The device reached the `failed` state while being waited on, or the API stopped
    /// showing it (403 or 404, its answers for a failed device). `reason` is the API's own
    /// word on it, when it gave one.
    #[error("device {id} failed to provision{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    DeviceFailed { id: String, reason: Option<String> },

    /// A deadline passed before the device got where it was asked to.
    #[error("deadline passed waiting for device {id} to be {goal} (last state: {last_state})")]
    Deadline {
        id: String,
        goal: &'static str,
        last_state: String,
    },

    /// The caller asked for something the client cannot do safely.
    #[error("invalid request: {0}")]
    InvalidInput(String),
}

impl MetalError {
    /// A 422 saying the metro has no stock for the plan.
    pub fn is_no_capacity(&self) -> bool {
        self.has_message(|text| text.contains("available servers") || text.contains("capacity"))
    }

    /// A 422 saying the device cannot be deleted before it finishes provisioning.
    pub fn is_delete_while_provisioning(&self) -> bool {
        self.has_message(|text| text.contains("while it is provisioning"))
    }

    /// The device is gone for good: 404/410, or the 403 the API answers for a device whose
    /// provisioning failed ("You are not authorized to view this device").
    pub fn means_gone(&self) -> bool {
        matches!(
            self,
            Self::NotFound { .. } | Self::Unauthorized { status: 403, .. }
        )
    }

    /// A 5xx or a lost connection: the request may or may not have been carried out.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Transport { .. })
    }

    /// The request may have been carried out: a transient failure, or a success answer that
    /// does not read. A create that fails so may have made what it asked for.
    pub fn may_have_acted(&self) -> bool {
        self.is_transient() || matches!(self, Self::Decode(_))
    }

    /// The messages the API gave with this error, joined; `None` for errors that carry none.
    pub fn api_message(&self) -> Option<String> {
        match self {
            Self::Unauthorized { message, .. }
            | Self::NotFound { message, .. }
            | Self::Http { message, .. } => Some(message.clone()),
            Self::Unprocessable { messages } => Some(messages.join("; ")),
            _ => None,
        }
    }

    fn has_message(&self, test: impl Fn(&str) -> bool) -> bool {
        match self {
            Self::Unprocessable { messages } => {
                messages.iter().any(|message| test(&message.to_lowercase()))
            }
            _ => false,
        }
    }

    /// Builds the error for an HTTP error answer, after `attempts` tries.
    pub(crate) fn from_response(
        status: StatusCode,
        body: &[u8],
        attempts: u32,
        token: &ApiToken,
    ) -> Self {
        let messages: Vec<String> = body_messages(body)
            .unwrap_or_else(|| vec![status_line(status)])
            .iter()
            .map(|message| token.redact(message))
            .collect();
        let message = messages.join("; ");
        let code = status.as_u16();
        match code {
            401 | 403 => Self::Unauthorized {
                status: code,
                message,
            },
            404 | 410 => Self::NotFound {
                status: code,
                message,
            },
            422 => Self::Unprocessable { messages },
            429 => Self::RateLimited { attempts, message },
            500..=599 => Self::Server {
                status: code,
                attempts,
                message,
            },
            _ => Self::Http {
                status: code,
                message,
            },
        }
    }

    /// Builds the error for a 3xx answer. The `Location` is shown as the server sent it, with
    /// the token redacted should the server have put it there.
    pub(crate) fn redirected(status: StatusCode, location: Option<&str>, token: &ApiToken) -> Self {
        Self::Redirected {
            status: status_line(status),
            location: location.map_or("nowhere (no Location header)".to_owned(), |l| {
                token.redact(l)
            }),
        }
    }

    /// Wraps a failed send, with its whole cause chain: reqwest's own message alone ("error
    /// sending request") does not say what went wrong. The URL is left out; the caller's log
    /// line already names the method and path.
    pub(crate) fn transport(error: reqwest::Error, attempts: u32, token: &ApiToken) -> Self {
        let error = error.without_url();
        let mut message = error.to_string();
        let mut cause = std::error::Error::source(&error);
        while let Some(inner) = cause {
            message = format!("{message}: {inner}");
            cause = inner.source();
        }
        Self::Transport {
            attempts,
            message: token.redact(&message),
        }
    }
}

/// The messages of an error body in either form: `{"error": "m"}` or `{"errors": ["m", ...]}`.
/// `None` when the body is not JSON or carries neither.
fn body_messages(body: &[u8]) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Option<String>,
        #[serde(default)]
        errors: Vec<String>,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    let messages: Vec<String> = parsed.error.into_iter().chain(parsed.errors).collect();
    (!messages.is_empty()).then_some(messages)
}

/// "502 Bad Gateway": what an error says when its body is not the API's JSON.
fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, body: &str) -> MetalError {
        let status = StatusCode::from_u16(status).expect("valid status");
        MetalError::from_response(status, body.as_bytes(), 1, &ApiToken::new("tok-XYZ"))
    }

    #[test]
    fn both_json_forms_give_their_messages() {
        let single = error(404, r#"{"error": "Not found"}"#);
        assert!(matches!(&single, MetalError::NotFound { message, .. } if message == "Not found"));
        let many = error(422, r#"{"errors": ["a", "b"]}"#);
        assert!(matches!(&many, MetalError::Unprocessable { messages } if messages == &["a", "b"]));
    }

    #[test]
    fn a_body_that_is_not_the_api_json_falls_back_to_the_status_line() {
        let html = error(502, "<html><body>Bad Gateway</body></html>");
        assert!(
            matches!(&html, MetalError::Server { status: 502, message, .. } if message == "502 Bad Gateway")
        );
        let empty_json = error(500, "{}");
        assert!(
            matches!(&empty_json, MetalError::Server { message, .. } if message == "500 Internal Server Error")
        );
    }

    #[test]
    fn statuses_map_to_their_kinds() {
        assert!(matches!(
            error(401, "{}"),
            MetalError::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            error(410, "{}"),
            MetalError::NotFound { status: 410, .. }
        ));
        assert!(matches!(error(429, "{}"), MetalError::RateLimited { .. }));
        assert!(matches!(
            error(400, "{}"),
            MetalError::Http { status: 400, .. }
        ));
        assert!(error(403, "{}").means_gone());
        assert!(!error(401, "{}").means_gone());
        assert!(error(503, "{}").is_transient());
    }

    #[test]
    fn the_422_helpers_match_case_insensitively() {
        let no_capacity = error(
            422,
            r#"{"errors":["There AREN'T available servers in that metro"]}"#,
        );
        assert!(no_capacity.is_no_capacity());
        assert!(!no_capacity.is_delete_while_provisioning());
        let busy = error(
            422,
            r#"{"error":"cannot delete a device while it is PROVISIONING"}"#,
        );
        assert!(busy.is_delete_while_provisioning());
        assert!(!busy.is_no_capacity());
        assert!(!error(500, r#"{"error":"no capacity"}"#).is_no_capacity());
    }

    #[test]
    fn an_echoed_token_is_redacted() {
        let echoed = error(401, r#"{"error": "bad token tok-XYZ"}"#);
        assert_eq!(
            echoed.to_string(),
            "Metal API refused the request (401): bad token ***"
        );
        assert!(!format!("{echoed:?}").contains("tok-XYZ"));
    }
}
