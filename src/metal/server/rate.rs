//! The server's fixed-window rate limit and its `X-RateLimit-*` headers.

use axum::http::{HeaderMap, HeaderValue};
use chrono::{DateTime, TimeDelta, Utc};

use super::config::RateLimit;

/// Requests counted in the current window.
#[derive(Debug, Clone)]
pub struct RateWindow {
    started: DateTime<Utc>,
    used: u32,
}

/// What the headers of one answer say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateStatus {
    pub limit: u32,
    pub remaining: u32,
    /// When the window ends, in Unix seconds.
    pub reset: i64,
    /// This request went over the limit.
    pub exceeded: bool,
}

impl RateWindow {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            started: now,
            used: 0,
        }
    }

    /// Counts one request at `now`, opening a new window when the last one is over.
    pub fn count(&mut self, now: DateTime<Utc>, limit: &RateLimit) -> RateStatus {
        let window = TimeDelta::from_std(limit.window).unwrap_or(TimeDelta::MAX);
        if now >= self.started + window {
            *self = Self::new(now);
        }
        self.used = self.used.saturating_add(1);
        RateStatus {
            limit: limit.limit,
            remaining: limit.limit.saturating_sub(self.used),
            reset: unix_seconds_ceil(self.started + window),
            exceeded: self.used > limit.limit,
        }
    }
}

impl RateStatus {
    /// The status of a 429 that asks the client to come back in `secs` seconds.
    pub fn exhausted_for(limit: u32, now: DateTime<Utc>, secs: u64) -> Self {
        let wait = TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX));
        Self {
            limit,
            remaining: 0,
            reset: unix_seconds_ceil(now + wait),
            exceeded: true,
        }
    }

    /// Whole seconds until the reset, at least one: the value for `Retry-After`.
    pub fn seconds_to_reset(&self, now: DateTime<Utc>) -> i64 {
        (self.reset - now.timestamp()).max(1)
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset));
    }
}

/// Rounded up, so that a client waiting until the reset never comes back early.
fn unix_seconds_ceil(at: DateTime<Utc>) -> i64 {
    let seconds = at.timestamp();
    if at.timestamp_subsec_nanos() > 0 {
        seconds + 1
    } else {
        seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_window_counts_down_and_reopens() {
        let limit = RateLimit {
            limit: 2,
            window: Duration::from_secs(10),
        };
        let start = DateTime::from_timestamp(1000, 0).expect("valid time");
        let mut window = RateWindow::new(start);
        let first = window.count(start, &limit);
        assert_eq!(
            (first.remaining, first.reset, first.exceeded),
            (1, 1010, false)
        );
        window.count(start, &limit);
        assert!(window.count(start, &limit).exceeded);
        let later = window.count(start + TimeDelta::seconds(10), &limit);
        assert_eq!(
            (later.remaining, later.reset, later.exceeded),
            (1, 1020, false)
        );
    }
}
