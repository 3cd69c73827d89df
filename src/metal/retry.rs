//! Which Metal API answers are worth sending again, and how long the server asked to wait.
//!
//! How long metalab waits and how often it tries is [`crate::retry::Backoff`]'s business.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// Whether an answer with this status is worth sending again.
///
/// 429 always is: the request was not carried out. A 5xx (except 501, which will not change)
/// is only when repeating the request is harmless, because the server may have acted on it.
pub fn should_retry(status: StatusCode, idempotent: bool) -> bool {
    match status.as_u16() {
        429 => true,
        501 => false,
        500..=599 => idempotent,
        _ => false,
    }
}

/// How long the server asked the client to wait: `Retry-After` in seconds, or else the time
/// until `X-RateLimit-Reset` (Unix seconds). Only meaningful on a 429 or 503.
pub fn server_hint(headers: &HeaderMap) -> Option<Duration> {
    retry_after(headers).or_else(|| until_reset(headers, SystemTime::now()))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_u64(headers, "retry-after").map(Duration::from_secs)
}

fn until_reset(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let reset = UNIX_EPOCH + Duration::from_secs(header_u64(headers, "x-ratelimit-reset")?);
    Some(reset.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_only_what_can_succeed_later() {
        assert!(should_retry(StatusCode::TOO_MANY_REQUESTS, false));
        assert!(should_retry(StatusCode::BAD_GATEWAY, true));
        assert!(!should_retry(StatusCode::BAD_GATEWAY, false));
        assert!(!should_retry(StatusCode::NOT_IMPLEMENTED, true));
        assert!(!should_retry(StatusCode::UNPROCESSABLE_ENTITY, true));
    }

    #[test]
    fn hints_come_from_retry_after_then_from_the_reset_time() {
        let mut headers = HeaderMap::new();
        assert_eq!(server_hint(&headers), None);
        headers.insert("x-ratelimit-reset", HeaderValue::from_static("1000"));
        let now = UNIX_EPOCH + Duration::from_secs(990);
        assert_eq!(until_reset(&headers, now), Some(Duration::from_secs(10)));
        let later = UNIX_EPOCH + Duration::from_secs(2000);
        assert_eq!(until_reset(&headers, later), Some(Duration::ZERO));
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(server_hint(&headers), Some(Duration::from_secs(3)));
    }
}
