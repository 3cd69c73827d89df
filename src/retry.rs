//! How metalab waits and tries again. Every loop that sleeps between two tries takes one of the
//! two kinds of waiting defined here, so the intervals, caps and stopping rules are in one place:
//!
//! - [`Backoff`]: something failed and may pass (a flaky API): try again a few times, waiting
//!   longer each time, with jitter, never longer than a cap, and as long as a server asks.
//! - [`Poll`]: something is not ready yet (a booting machine, a busy host, a provisioning
//!   device): look again at a steady pace until a deadline, or a number of looks.
//!
//! Which failures are worth another try is the caller's business (HTTP statuses in
//! `metal::retry`, refused SSH keys in `transport::ssh`): the policy only says when and how long.
//!
//! Not the `backon` crate: its jitter is added on top of the computed delay (so a wait can reach
//! twice the cap) where metalab wants full jitter under the cap, and it stops after a sum of
//! sleeps, not at a wall-clock deadline that also counts the time the tries themselves take.

use std::time::Duration;

use rand::Rng;
use tokio::time::{Instant, sleep, sleep_until};

/// Capped exponential backoff with full jitter, for failures that may pass.
///
/// Retry number `n` (1 for the first) waits a uniform pick in `[0, min(cap, base * 2^(n-1))]`:
/// full jitter spreads out clients that all failed at the same moment, so they do not come back
/// together, and the cap keeps a long outage from stalling a run. A wait the server asked for
/// (`Retry-After`) replaces the pick, capped as well.
///
/// The default is the Metal API's, taken from Terraform's Metal provider: 10 attempts, waits
/// growing from at most 1 s to at most 30 s, which rides out a minute or two of 5xx answers or
/// rate limiting. Tests shrink every duration to milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// How many times the operation runs at most, the first included.
    pub max_attempts: u32,
    /// The ceiling of the wait before the first retry; it doubles for each retry after.
    pub base: Duration,
    /// No wait is longer than this, whether computed or asked for by the server.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
        }
    }
}

/// What [`Backoff::run`] does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Done: a success, or a failure that another try will not fix.
    Stop,
    /// Try again after the policy's jittered wait.
    Retry,
    /// Try again after the wait the server asked for (still capped by the policy).
    RetryAfter(Duration),
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first retry).
    ///
    /// A wait the server asked for wins over the computed one, but it is capped too, so a wild
    /// header cannot stall a run.
    pub fn delay(&self, retry: u32, server_hint: Option<Duration>) -> Duration {
        match server_hint {
            Some(hint) => hint.min(self.cap),
            None => self.jittered(retry),
        }
    }

    /// Full jitter: a uniform pick in `[0, min(cap, base * 2^(retry-1))]`.
    fn jittered(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(31);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }

    /// Runs `attempt` (given its number, from 1) until `judge` says [`Next::Stop`] or the
    /// attempts run out, sleeping [`Backoff::delay`] between two. `judge` is not asked about the
    /// last allowed attempt; `notify` hears each wait before it is slept. Returns the last
    /// attempt's outcome and how many attempts were made.
    pub async fn run<T, F: Future<Output = T>>(
        &self,
        mut attempt: impl FnMut(u32) -> F,
        mut judge: impl FnMut(&T, u32) -> Next,
        mut notify: impl FnMut(u32, Duration),
    ) -> (T, u32) {
        let mut number = 0;
        loop {
            number += 1;
            let outcome = attempt(number).await;
            if number >= self.max_attempts {
                return (outcome, number);
            }
            let hint = match judge(&outcome, number) {
                Next::Stop => return (outcome, number),
                Next::Retry => None,
                Next::RetryAfter(wait) => Some(wait),
            };
            let wait = self.delay(number, hint);
            notify(number, wait);
            sleep(wait).await;
        }
    }
}

/// Looks again at a steady pace until a deadline (or a number of looks), for something that is
/// not ready yet.
///
/// The first wait may differ (a device takes minutes to provision: no point looking after
/// seconds); after it the interval starts at `min_interval` and grows by half each time up to
/// `max_interval`. With all three equal, the pace is fixed: [`Poll::every`].
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    /// The wait between the first look and the second.
    pub first_wait: Duration,
    /// The wait after that, growing by half each time...
    pub min_interval: Duration,
    /// ...up to this.
    pub max_interval: Duration,
}

impl Default for Poll {
    /// A Metal device's state.
    fn default() -> Self {
        Self::METAL_DEVICE
    }
}

impl Poll {
    /// A Metal device on its way to `active` or gone, as Terraform's Metal provider looks at it
    /// (the Metal client's default): 10 s first, as provisioning takes minutes, then every 3 s
    /// growing to 10 s, which keeps a run of many devices under the API's rate limit.
    pub const METAL_DEVICE: Poll = Poll {
        first_wait: Duration::from_secs(10),
        min_interval: Duration::from_secs(3),
        max_interval: Duration::from_secs(10),
    };

    /// A Metal device as the `metal` provider looks at it: every `interval` (its `poll`
    /// setting, 10 s by default), slowing to three times that while the device takes long, so
    /// that many slow devices do not spend the API's rate limit.
    pub fn metal_provider(interval: Duration) -> Poll {
        Poll {
            first_wait: interval,
            min_interval: interval,
            max_interval: interval.saturating_mul(3),
        }
    }

    /// A booting machine's SSH server: once a second. A refused connection costs nothing, and
    /// the server comes up at a moment nobody can predict; one second keeps the delay after it
    /// is up short without spinning.
    pub const SSH_BOOT: Poll = Poll::every(Duration::from_secs(1));

    /// A free host of the SSH inventory: every 5 s. Each round connects to the hosts and tries
    /// their locks, and another run keeps a host for minutes: looking more often would only
    /// load the hosts.
    pub const INVENTORY_HOST: Poll = Poll::every(Duration::from_secs(5));

    /// The socket of the `exec` connection holder just started: every 20 ms, 300 looks (about
    /// 6 s). It binds within milliseconds and a user waits on the command, so look often; 6 s
    /// covers a slow start on a busy host.
    pub const MUX_SOCKET: Poll = Poll::every(Duration::from_millis(20));
    /// How many times [`Poll::MUX_SOCKET`] looks.
    pub const MUX_SOCKET_LOOKS: u32 = 300;

    /// A fixed pace: every wait is `interval`.
    pub const fn every(interval: Duration) -> Poll {
        Poll {
            first_wait: interval,
            min_interval: interval,
            max_interval: interval,
        }
    }

    /// The successive waits between two looks.
    pub fn waits(&self) -> Waits {
        Waits {
            first: Some(self.first_wait),
            next: self.min_interval,
            max: self.max_interval,
        }
    }

    /// Polling that ends at `deadline`.
    pub fn until(&self, deadline: Instant) -> Polling {
        Polling {
            waits: self.waits(),
            deadline: Some(deadline),
            looks_left: None,
        }
    }

    /// Polling that never ends by itself: for a wait whose end the caller decides (a lease
    /// another run holds for as long as it runs).
    pub fn forever(&self) -> Polling {
        Polling {
            waits: self.waits(),
            deadline: None,
            looks_left: None,
        }
    }

    /// Polling that ends after `looks` looks, however long they take.
    pub fn times(&self, looks: u32) -> Polling {
        Polling {
            waits: self.waits(),
            deadline: None,
            looks_left: Some(looks),
        }
    }
}

/// The waits of a [`Poll`], endless: the first, then growing by half up to the maximum.
#[derive(Debug, Clone)]
pub struct Waits {
    first: Option<Duration>,
    next: Duration,
    max: Duration,
}

impl Iterator for Waits {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        let wait = self.next;
        self.next = wait.mul_f64(1.5).min(self.max);
        Some(wait)
    }
}

/// One polling under way: call [`Polling::pause`] (or [`Polling::pause_before_deadline`]) after
/// each look that did not find what it waits for.
#[derive(Debug)]
pub struct Polling {
    waits: Waits,
    deadline: Option<Instant>,
    looks_left: Option<u32>,
}

impl Polling {
    /// Sleeps until the next look, but not past the deadline. False, at once, when there is to
    /// be no next look: the deadline has passed, or the looks are used up.
    ///
    /// The last wait is cut short at the deadline, so a caller that then reports "deadline
    /// passed" does so on time.
    pub async fn pause(&mut self) -> bool {
        let Some(wait) = self.next_wait() else {
            return false;
        };
        match self.deadline {
            None => sleep(wait).await,
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                sleep_until((now + wait).min(deadline)).await;
            }
        }
        true
    }

    /// Like [`Polling::pause`], but false at once when the next look would not come before the
    /// deadline: for looks that need time of their own (a connection, its handshake), which a
    /// look at the deadline would not have.
    pub async fn pause_before_deadline(&mut self) -> bool {
        let Some(wait) = self.next_wait() else {
            return false;
        };
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() + wait >= deadline)
        {
            return false;
        }
        sleep(wait).await;
        true
    }

    /// The next wait, counting the look just made; `None` when it was the last one allowed.
    fn next_wait(&mut self) -> Option<Duration> {
        if let Some(left) = &mut self.looks_left {
            *left = left.saturating_sub(1);
            if *left == 0 {
                return None;
            }
        }
        self.waits.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn backoff() -> Backoff {
        Backoff {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
        }
    }

    #[test]
    fn jitter_stays_under_the_doubling_ceiling_and_spreads_below_it() {
        let policy = backoff();
        let mut longest = [Duration::ZERO; 3];
        for _ in 0..500 {
            for (i, (retry, ceiling)) in [(1, 100), (3, 400), (4, 800)].into_iter().enumerate() {
                let wait = policy.delay(retry, None);
                assert!(
                    wait <= Duration::from_millis(ceiling),
                    "retry {retry}: {wait:?}"
                );
                longest[i] = longest[i].max(wait);
            }
        }
        // Full jitter reaches up to the ceiling, not a fixed fraction of it (500 picks: the
        // chance of all landing in the lower half is 2^-500).
        assert!(longest[0] > Duration::from_millis(50), "{longest:?}");
        assert!(longest[1] > Duration::from_millis(200), "{longest:?}");
        assert!(longest[2] > Duration::from_millis(400), "{longest:?}");
    }

    #[test]
    fn the_cap_holds_however_many_retries() {
        let policy = backoff();
        let mut longest = Duration::ZERO;
        for _ in 0..500 {
            for retry in [5, 30, 64, u32::MAX] {
                let wait = policy.delay(retry, None);
                assert!(wait <= policy.cap, "retry {retry}: {wait:?}");
                longest = longest.max(wait);
            }
        }
        assert!(longest > Duration::from_millis(500), "{longest:?}");
    }

    #[test]
    fn a_server_hint_wins_but_is_capped() {
        let policy = backoff();
        let asked = Duration::from_millis(700);
        assert_eq!(policy.delay(1, Some(asked)), asked);
        assert_eq!(policy.delay(9, Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(policy.delay(1, Some(Duration::from_secs(60))), policy.cap);
    }

    /// `future`'s output, failing the test rather than hanging it when that takes too long.
    async fn within<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), future)
            .await
            .expect("done within 5 s")
    }

    fn quick(max_attempts: u32) -> Backoff {
        Backoff {
            max_attempts,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn a_failure_not_worth_retrying_stops_at_once() {
        let calls = Cell::new(0);
        let (outcome, attempts) = within(quick(5).run(
            |n| {
                calls.set(calls.get() + 1);
                std::future::ready(Err::<(), _>(format!("fatal {n}")))
            },
            |_, _| Next::Stop,
            |_, _| panic!("no wait before stopping"),
        ))
        .await;
        assert_eq!(
            (outcome, attempts, calls.get()),
            (Err("fatal 1".into()), 1, 1)
        );
    }

    #[tokio::test]
    async fn a_passing_failure_is_retried_up_to_the_attempts_and_the_last_is_not_judged() {
        let judged = Cell::new(Vec::new());
        let waits = Cell::new(0);
        let (outcome, attempts) = within(quick(4).run(
            std::future::ready,
            |n, number| {
                assert_eq!(*n, number);
                let mut seen = judged.take();
                seen.push(number);
                judged.set(seen);
                Next::Retry
            },
            |_, wait| {
                assert!(wait <= Duration::from_millis(2));
                waits.set(waits.get() + 1);
            },
        ))
        .await;
        assert_eq!((outcome, attempts), (4, 4));
        assert_eq!(judged.take(), vec![1, 2, 3]);
        assert_eq!(waits.get(), 3);
    }

    #[tokio::test]
    async fn retrying_ends_with_the_first_success() {
        let (outcome, attempts) = within(quick(10).run(
            |n| std::future::ready(if n < 3 { Err(n) } else { Ok(n) }),
            |r, _| if r.is_err() { Next::Retry } else { Next::Stop },
            |_, _| {},
        ))
        .await;
        assert_eq!((outcome, attempts), (Ok(3), 3));
    }

    #[tokio::test]
    async fn a_long_server_hint_is_slept_only_up_to_the_cap() {
        let waited = Cell::new(Duration::ZERO);
        let policy = quick(2);
        let (_, attempts) = within(policy.run(
            |_| std::future::ready(()),
            |_, _| Next::RetryAfter(Duration::from_secs(3600)),
            |_, wait| waited.set(wait),
        ))
        .await;
        assert_eq!(attempts, 2);
        assert_eq!(waited.get(), Duration::from_millis(2));
    }

    #[test]
    fn waits_start_long_then_grow_from_min_to_max() {
        let policy = Poll {
            first_wait: Duration::from_millis(100),
            min_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(20),
        };
        let waits: Vec<u128> = policy.waits().take(5).map(|w| w.as_millis()).collect();
        assert_eq!(waits, vec![100, 10, 15, 20, 20]);
        let fixed: Vec<u128> = Poll::every(Duration::from_millis(7))
            .waits()
            .take(3)
            .map(|w| w.as_millis())
            .collect();
        assert_eq!(fixed, vec![7, 7, 7]);
    }

    /// Pauses until `pause` says no more, returning how many pauses said yes.
    async fn pauses(polling: &mut Polling, before_deadline: bool) -> u32 {
        for yes in 0..10_000 {
            let more = if before_deadline {
                within(polling.pause_before_deadline()).await
            } else {
                within(polling.pause()).await
            };
            if !more {
                return yes;
            }
        }
        panic!("polling never stopped");
    }

    #[tokio::test]
    async fn polling_stops_at_the_deadline_and_cuts_the_last_wait_short() {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(500);
        let mut polling = Poll::every(Duration::from_millis(400)).until(deadline);
        // 400 ms, then 100 ms cut at the deadline (not 400: that would end at 800 ms).
        assert_eq!(pauses(&mut polling, false).await, 2);
        let ended = Instant::now();
        assert!(ended >= deadline, "stopped {:?} early", deadline - ended);
        assert!(
            ended < deadline + Duration::from_millis(200),
            "{:?}",
            ended - deadline
        );
    }

    #[tokio::test]
    async fn polling_past_its_deadline_does_not_wait() {
        let mut polling = Poll::every(Duration::from_secs(3600)).until(Instant::now());
        assert!(!within(polling.pause()).await);
        let mut polling = Poll::every(Duration::from_secs(3600)).until(Instant::now());
        assert!(!within(polling.pause_before_deadline()).await);
    }

    #[tokio::test]
    async fn polling_before_the_deadline_gives_up_when_the_next_look_would_be_late() {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(800);
        let mut polling = Poll::every(Duration::from_millis(300)).until(deadline);
        // Looks at 0, 300 and 600 ms; one at 900 ms would be past the deadline, so it gives up
        // at 600 ms rather than sleeping out the rest.
        assert_eq!(pauses(&mut polling, true).await, 2);
        let ended = Instant::now();
        assert!(ended >= started + Duration::from_millis(600));
        assert!(
            ended < deadline,
            "waited {:?} past the deadline",
            ended - deadline
        );
    }

    #[tokio::test]
    async fn polling_forever_keeps_pausing_at_its_pace() {
        let started = Instant::now();
        let mut polling = Poll::every(Duration::from_millis(20)).forever();
        for _ in 0..5 {
            assert!(within(polling.pause()).await);
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn polling_a_number_of_times_allows_that_many_looks() {
        let mut polling = Poll::every(Duration::from_millis(1)).times(4);
        assert_eq!(pauses(&mut polling, false).await, 3);
        let mut polling = Poll::every(Duration::from_millis(1)).times(1);
        assert_eq!(pauses(&mut polling, true).await, 0);
    }
}
