//! Client-side limits: bounded concurrency and a sliding-window request rate, per key.
//!
//! Each API client owns one [`Limiter`] built from that vendor's documented limits
//! (reference/external-apis.md): Xero 5 concurrent and 60 calls per rolling minute per tenant
//! (§7.8), Autotask 3 concurrent threads per object endpoint (§6.5), Partner Center
//! 500 requests per minute per tenant identifier (§3.6). Where a vendor documents none, the
//! client picks a bound (see each client's `limits()`), so a fetch never floods a service.
//! The key is what the vendor counts by: the Xero tenant, the Autotask entity, the customer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The limits one client observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight across all keys.
    pub global_concurrency: usize,
    /// Requests in flight per key (`None`: only the global bound).
    pub per_key_concurrency: Option<usize>,
    /// At most `.0` requests started per key in any rolling window of `.1`.
    pub per_key_rate: Option<(usize, Duration)>,
}

impl Limits {
    pub const fn concurrency(n: usize) -> Self {
        Limits {
            global_concurrency: n,
            per_key_concurrency: None,
            per_key_rate: None,
        }
    }
}

#[derive(Debug)]
struct KeyState {
    sem: Option<Arc<Semaphore>>,
    window: Mutex<VecDeque<Instant>>,
}

/// Hands out permits; a permit is held for the whole request, retries included.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    global: Arc<Semaphore>,
    keys: Mutex<HashMap<String, Arc<KeyState>>>,
}

/// Held while a request is in flight.
#[derive(Debug)]
pub struct Permit {
    _global: OwnedSemaphorePermit,
    _key: Option<OwnedSemaphorePermit>,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            global: Arc::new(Semaphore::new(limits.global_concurrency.max(1))),
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn key_state(&self, key: &str) -> Arc<KeyState> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(KeyState {
                    sem: self
                        .limits
                        .per_key_concurrency
                        .map(|n| Arc::new(Semaphore::new(n.max(1)))),
                    window: Mutex::new(VecDeque::new()),
                })
            })
            .clone()
    }

    /// Wait for a slot under every limit for `key`.
    pub async fn acquire(&self, key: &str) -> Permit {
        let state = self.key_state(key);
        // Per-key concurrency first so a busy key does not hold global slots while queueing.
        let key_permit = match &state.sem {
            Some(sem) => sem.clone().acquire_owned().await.ok(),
            None => None,
        };
        let global = loop {
            if let Ok(p) = self.global.clone().acquire_owned().await {
                break p;
            }
        };
        self.take_rate_slot(&state).await;
        Permit {
            _global: global,
            _key: key_permit,
        }
    }

    /// A rate slot is consumed per request *attempt*, so retries count against the window
    /// exactly as the vendor counts them.
    pub async fn take_rate_slot_for(&self, key: &str) {
        let state = self.key_state(key);
        self.take_rate_slot(&state).await;
    }

    async fn take_rate_slot(&self, state: &KeyState) {
        let Some((max, window)) = self.limits.per_key_rate else {
            return;
        };
        loop {
            let wait_until = {
                let mut w = state.window.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while let Some(&front) = w.front() {
                    if now.duration_since(front) >= window {
                        w.pop_front();
                    } else {
                        break;
                    }
                }
                if w.len() < max.max(1) {
                    w.push_back(now);
                    return;
                }
                // Full: the oldest start leaves the window at front + window.
                w.front().map(|&f| f + window)
            };
            if let Some(t) = wait_until {
                tokio::time::sleep_until(t).await;
            }
        }
    }

    /// Push the window forward after the server said "slow down": no new request for this key
    /// starts before `until`. Used when a 429 arrives although our own count said there was room
    /// (another integration shares the vendor's budget).
    pub fn penalise(&self, key: &str, until: Instant) {
        let state = self.key_state(key);
        if let Some((max, window)) = self.limits.per_key_rate {
            let mut w = state.window.lock().unwrap_or_else(|p| p.into_inner());
            // Fill the window with starts that expire at `until`.
            let start = until.checked_sub(window).unwrap_or(until);
            w.clear();
            for _ in 0..max.max(1) {
                w.push_back(start);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sliding_window_spaces_requests() {
        let l = Limiter::new(Limits {
            global_concurrency: 10,
            per_key_concurrency: None,
            per_key_rate: Some((3, Duration::from_secs(60))),
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            drop(l.acquire("t").await);
        }
        assert!(t0.elapsed() < Duration::from_millis(1));
        drop(l.acquire("t").await);
        assert!(t0.elapsed() >= Duration::from_secs(60));
        // Another key has its own window.
        let t1 = Instant::now();
        drop(l.acquire("other").await);
        assert!(t1.elapsed() < Duration::from_millis(1));
    }

    #[tokio::test]
    async fn per_key_concurrency_is_bounded() {
        let l = Arc::new(Limiter::new(Limits {
            global_concurrency: 10,
            per_key_concurrency: Some(2),
            per_key_rate: None,
        }));
        let a = l.acquire("k").await;
        let _b = l.acquire("k").await;
        let l2 = l.clone();
        let third = tokio::spawn(async move { l2.acquire("k").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third.is_finished());
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("third permit after release")
            .expect("task");
    }
}
