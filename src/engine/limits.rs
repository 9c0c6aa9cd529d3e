//! What one provider (one base URL) is asked at once, shared by every run in the process: a
//! limit on calls in flight, a spacing between call starts, the shared wait a `Retry-After`
//! imposes, and a circuit breaker that stops starting calls when failures repeat.
//!
//! The run state machine keeps its own per-run limit (so `SubtaskStarted` order is exact); this
//! sits below it, where the executor makes calls, because two runs of the dashboard (or two
//! engines of one process) that talk to the same server must share what that server allows.
//! Limiters are found by base URL in a process-wide table and live as long as an executor
//! holds one. This module decides nothing about runs: it only delays call starts and says when
//! the breaker trips; pausing runs is the state machine's, on the executor's word.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::llm::CallError;

/// How calls to one provider are shared. The default shares nothing and never pauses: the
/// configuration turns these on (see `defaults::STARTS_PER_SECOND`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateSettings {
    /// Calls in flight at once to this provider, over every run of the process.
    pub max_in_flight: Option<usize>,
    /// Call starts per second to this provider; `None`: as fast as they come.
    pub starts_per_second: Option<f64>,
    /// Pause the provider when failures repeat (see [`Breaker`]).
    pub breaker: bool,
}

impl RateSettings {
    fn is_off(&self) -> bool {
        self.max_in_flight.is_none() && self.starts_per_second.is_none() && !self.breaker
    }
}

/// Failures of one class that trip the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// 401 / 403 replies in a row (a success in between starts the count again).
    pub auth_failures: u32,
    /// 429 replies to retried calls within `rate_limit_window`.
    pub rate_limited: usize,
    pub rate_limit_window: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            auth_failures: crate::defaults::BREAKER_AUTH_FAILURES,
            rate_limited: crate::defaults::BREAKER_RATE_LIMITED,
            rate_limit_window: Duration::from_secs(crate::defaults::BREAKER_WINDOW_SECS),
        }
    }
}

#[derive(Debug)]
struct State {
    /// The earliest the next call may start (spacing).
    next_start: Instant,
    /// Every call waits until then: a server's `Retry-After` applies to all of its callers.
    cooldown_until: Option<Instant>,
    /// Why the breaker tripped; no call starts while it is set.
    tripped: Option<String>,
    auth_failures: u32,
    rate_limited: VecDeque<Instant>,
    in_flight: usize,
    high_water: usize,
}

/// One provider's shared limits. Get it with [`ProviderLimiter::shared`].
#[derive(Debug)]
pub struct ProviderLimiter {
    key: String,
    settings: RateSettings,
    breaker: Breaker,
    slots: Option<Arc<Semaphore>>,
    spacing: Option<Duration>,
    state: Mutex<State>,
    /// Woken when the breaker is reset.
    reset: Notify,
}

/// A started call's place; dropping it frees the in-flight slot.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<ProviderLimiter>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

/// What a call waits for before it may start, for people to read.
#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    /// The server asked every caller to wait (`Retry-After`).
    RateLimited(Duration),
}

fn table() -> &'static Mutex<HashMap<String, Weak<ProviderLimiter>>> {
    static TABLE: OnceLock<Mutex<HashMap<String, Weak<ProviderLimiter>>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

impl ProviderLimiter {
    /// The limiter of the provider at `key` (its base URL), made with `settings` when no one
    /// in the process holds it yet; otherwise the one that exists, whose settings stand (every
    /// engine of a process reads the same configuration). `None` when `settings` share
    /// nothing.
    pub fn shared(key: &str, settings: &RateSettings) -> Option<Arc<Self>> {
        if settings.is_off() {
            return None;
        }
        let mut table = table().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = table.get(key).and_then(Weak::upgrade) {
            return Some(existing);
        }
        table.retain(|_, weak| weak.strong_count() > 0);
        let limiter = Arc::new(Self::new(key, settings.clone(), Breaker::default()));
        table.insert(key.to_owned(), Arc::downgrade(&limiter));
        Some(limiter)
    }

    /// A limiter of its own, shared with no one (tests).
    pub fn new(key: &str, settings: RateSettings, breaker: Breaker) -> Self {
        let spacing = settings
            .starts_per_second
            .filter(|n| n.is_finite() && *n > 0.0)
            .and_then(|n| Duration::try_from_secs_f64(1.0 / n).ok());
        Self {
            key: key.to_owned(),
            slots: settings
                .max_in_flight
                .map(|n| Arc::new(Semaphore::new(n.max(1)))),
            spacing,
            settings,
            breaker,
            state: Mutex::new(State {
                next_start: Instant::now(),
                cooldown_until: None,
                tripped: None,
                auth_failures: 0,
                rate_limited: VecDeque::new(),
                in_flight: 0,
                high_water: 0,
            }),
            reset: Notify::new(),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most calls that were in flight at once.
    pub fn high_water(&self) -> usize {
        self.lock().high_water
    }

    /// Why the breaker tripped, while it is tripped.
    pub fn tripped(&self) -> Option<String> {
        self.lock().tripped.clone()
    }

    /// How long a call starting now would wait for the server's shared `Retry-After`.
    pub fn cooldown(&self) -> Option<Wait> {
        let until = self.lock().cooldown_until?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(Wait::RateLimited(left))
    }

    /// Wait until a call may start: the breaker is not tripped, a slot is free, the spacing
    /// since the last start has passed and no shared `Retry-After` is running. `None` when
    /// `cancel` fired first.
    pub async fn acquire(self: &Arc<Self>, cancel: &CancellationToken) -> Option<Permit> {
        loop {
            // Registered before the check, so a reset between the check and the wait is seen.
            let reset = self.reset.notified();
            tokio::pin!(reset);
            reset.as_mut().enable();
            if self.tripped().is_some() {
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = reset => continue,
                }
            }
            let slot = match &self.slots {
                Some(slots) => tokio::select! {
                    _ = cancel.cancelled() => return None,
                    slot = slots.clone().acquire_owned() => Some(slot.ok()?),
                },
                None => None,
            };
            let start = {
                let mut state = self.lock();
                let now = Instant::now();
                let mut start = now.max(state.next_start);
                if let Some(until) = state.cooldown_until {
                    start = start.max(until);
                }
                if let Some(spacing) = self.spacing {
                    state.next_start = start + spacing;
                }
                start
            };
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep_until(start) => {}
            }
            let mut state = self.lock();
            // The breaker may have tripped, or a new `Retry-After` come, while this call
            // waited its turn: then it waits again rather than start into the same wall.
            let cooled = state
                .cooldown_until
                .is_none_or(|until| until <= Instant::now());
            if state.tripped.is_some() || !cooled {
                continue;
            }
            state.in_flight += 1;
            state.high_water = state.high_water.max(state.in_flight);
            return Some(Permit {
                limiter: self.clone(),
                _slot: slot,
            });
        }
    }

    /// Learn from a finished call. `retried`: the call was itself a retry. Returns the
    /// breaker's one-line reason when this reply tripped it.
    pub fn record(&self, result: Result<(), &CallError>, retried: bool) -> Option<String> {
        let mut state = self.lock();
        let error = match result {
            Ok(()) => {
                state.auth_failures = 0;
                return None;
            }
            Err(error) => error,
        };
        let now = Instant::now();
        if error.reason == "429"
            && let Some(after) = error.retry_after
        {
            let until = now + after;
            state.cooldown_until = Some(state.cooldown_until.map_or(until, |u| u.max(until)));
        }
        if !self.settings.breaker || state.tripped.is_some() {
            return None;
        }
        let tripped = match error.reason.as_str() {
            "401" | "403" => {
                state.auth_failures += 1;
                (state.auth_failures >= self.breaker.auth_failures).then(|| {
                    format!(
                        "provider paused: {} calls refused the API key (HTTP {}); check the key",
                        state.auth_failures, error.reason
                    )
                })
            }
            "429" if retried => {
                let window = self.breaker.rate_limit_window;
                state.rate_limited.push_back(now);
                while state
                    .rate_limited
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) > window)
                {
                    state.rate_limited.pop_front();
                }
                (state.rate_limited.len() >= self.breaker.rate_limited).then(|| {
                    format!(
                        "provider paused: still rate-limited after retries ({} × HTTP 429 \
                         within {}s)",
                        state.rate_limited.len(),
                        window.as_secs()
                    )
                })
            }
            _ => None,
        };
        if let Some(why) = &tripped {
            tracing::warn!(provider = %self.key, "{why}");
            state.tripped = Some(why.clone());
        }
        tripped
    }

    /// Start calls again after the breaker tripped; its counts start afresh.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.tripped = None;
        state.auth_failures = 0;
        state.rate_limited.clear();
        drop(state);
        self.reset.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(settings: RateSettings) -> Arc<ProviderLimiter> {
        Arc::new(ProviderLimiter::new("test", settings, Breaker::default()))
    }

    #[tokio::test(start_paused = true)]
    async fn starts_are_spaced() {
        let l = limiter(RateSettings {
            starts_per_second: Some(4.0),
            ..RateSettings::default()
        });
        let cancel = CancellationToken::new();
        let t0 = Instant::now();
        let mut at = Vec::new();
        for _ in 0..4 {
            let _permit = l.acquire(&cancel).await.expect("a permit");
            at.push(Instant::now() - t0);
        }
        assert_eq!(
            at,
            [0, 250, 500, 750].map(Duration::from_millis).to_vec(),
            "one start every 250 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_trips_on_the_third_refused_key_and_holds_calls_until_reset() {
        let l = limiter(RateSettings {
            breaker: true,
            ..RateSettings::default()
        });
        let refused = CallError::from_status(401, "bad key".into(), None);
        assert_eq!(l.record(Err(&refused), false), None);
        assert_eq!(l.record(Err(&refused), false), None);
        let why = l.record(Err(&refused), false).expect("tripped");
        assert!(why.contains("HTTP 401"), "{why}");
        let cancel = CancellationToken::new();
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.acquire(&cancel).await.is_some() }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "no call starts while tripped");
        l.reset();
        assert!(waiting.await.expect("joined"));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_every_caller() {
        let l = limiter(RateSettings {
            breaker: true,
            ..RateSettings::default()
        });
        let limited =
            CallError::from_status(429, "slow down".into(), Some(Duration::from_secs(12)));
        l.record(Err(&limited), false);
        assert_eq!(
            l.cooldown(),
            Some(Wait::RateLimited(Duration::from_secs(12)))
        );
        let t0 = Instant::now();
        let _permit = l
            .acquire(&CancellationToken::new())
            .await
            .expect("a permit");
        assert_eq!(Instant::now() - t0, Duration::from_secs(12));
    }
}
