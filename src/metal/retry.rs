//! When and how long to wait before trying a request again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// Capped exponential backoff with full jitter, for 429 and 5xx answers.
///
/// The defaults follow Terraform's Metal provider: 10 attempts, waits between 1 s and 30 s.
/// Tests shrink every duration to milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// How many times a request is sent at most, the first included.
    pub max_attempts: u32,
    /// The backoff ceiling before the first retry; it doubles for each retry after.
    pub base: Duration,
    /// No wait is longer than this, whether computed or asked for by the server.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry).
    ///
    /// A wait the server asked for (`Retry-After`, `X-RateLimit-Reset`) wins over the computed
    /// one, but it is capped too, so a wild header cannot stall a run.
    pub fn delay(&self, retry: u32, server_hint: Option<Duration>) -> Duration {
        match server_hint {
            Some(hint) => hint.min(self.cap),
            None => self.jittered(retry),
        }
    }

    /// Full jitter: a uniform pick in `[0, min(cap, base * 2^(retry-1))]`, which spreads out
    /// clients that all failed at the same moment.
    fn jittered(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(31);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

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

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
        }
    }

    #[test]
    fn jitter_stays_under_the_doubling_ceiling_and_the_cap() {
        let policy = policy();
        for _ in 0..200 {
            assert!(policy.delay(1, None) <= Duration::from_millis(100));
            assert!(policy.delay(3, None) <= Duration::from_millis(400));
            assert!(policy.delay(30, None) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn server_hint_wins_but_is_capped() {
        let policy = policy();
        assert_eq!(
            policy.delay(1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(60))),
            Duration::from_millis(1000)
        );
    }

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
