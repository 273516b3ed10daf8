//! Slowing down failed HTTP authentication, per user and per address, so
//! that passwords cannot be guessed at full speed.
//!
//! Each failed attempt raises a counter for the user name and one for the
//! client address. Before an attempt is checked, it waits
//! `base * 2^(n-1)` (capped), where `n` is the larger of the two counters.
//! A success clears the user's counter (not the address's: one right
//! password does not excuse the wrong ones). Counters fade after a quiet
//! period. The answer itself never says which part was wrong: unknown,
//! locked-out and wrong-password callers all get the same 401.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::store::normalize_user;

/// The settings of a [`Throttle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// The delay after the first failure.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
    /// After this long without a failure, a counter is forgotten.
    pub forget_after: Duration,
    /// The most keys remembered (oldest are dropped first).
    pub capacity: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
            forget_after: Duration::from_secs(15 * 60),
            capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failure counters and the delays they impose.
#[derive(Debug, Default)]
pub struct Throttle {
    policy: ThrottlePolicy,
    failures: Mutex<HashMap<Key, Failures>>,
    /// `failures.len()`, readable without the lock: when nothing has failed (the usual
    /// case), a logon costs no lock at all.
    entries: AtomicUsize,
}

impl Throttle {
    /// A throttle with `policy`.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            failures: Mutex::new(HashMap::new()),
            entries: AtomicUsize::new(0),
        }
    }

    /// Whether any failure is remembered; when not, every [`delay`](Self::delay) is zero.
    pub fn remembers_failures(&self) -> bool {
        self.entries.load(Ordering::Acquire) != 0
    }

    /// How long an attempt by `user` from `addr` waits at the time `now` gives. `now` is
    /// asked only when a failure is remembered (the usual logon reads no clock here).
    pub fn delay(
        &self,
        user: &str,
        addr: Option<IpAddr>,
        now: impl FnOnce() -> Instant,
    ) -> Duration {
        if !self.remembers_failures() {
            return Duration::ZERO;
        }
        let now = now();
        let map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = |key: &Key| {
            map.get(key)
                .filter(|f| now.duration_since(f.last) < self.policy.forget_after)
                .map_or(0, |f| f.count)
        };
        let n = count(&Key::User(normalize_user(user).into_owned()))
            .max(addr.map_or(0, |a| count(&Key::Addr(a))));
        if n == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32
            .checked_shl(n.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.policy.base.saturating_mul(factor).min(self.policy.max)
    }

    /// Records a failed attempt.
    pub fn failed(&self, user: &str, addr: Option<IpAddr>, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        // Room for the (up to) two keys of this attempt.
        if map.len() + 2 > self.policy.capacity {
            let forget = self.policy.forget_after;
            map.retain(|_, f| now.duration_since(f.last) < forget);
            while map.len() + 2 > self.policy.capacity.max(2) {
                let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        let keys = std::iter::once(Key::User(normalize_user(user).into_owned()))
            .chain(addr.map(Key::Addr));
        for key in keys {
            let entry = map.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.duration_since(entry.last) >= self.policy.forget_after {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
        }
        self.entries.store(map.len(), Ordering::Release);
    }

    /// Records a successful attempt: the user's counter is cleared.
    pub fn succeeded(&self, user: &str) {
        if !self.remembers_failures() {
            return;
        }
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&Key::User(normalize_user(user).into_owned()));
        self.entries.store(map.len(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(ThrottlePolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            forget_after: Duration::from_secs(60),
            capacity: 4,
        })
    }

    #[test]
    fn delays_double_per_failure_up_to_the_cap() {
        let t = throttle();
        let now = Instant::now();
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert!(!t.remembers_failures());
        assert_eq!(t.delay("alice", Some(ip), || now), Duration::ZERO);
        let mut seen = Vec::new();
        for _ in 0..7 {
            t.failed("alice", Some(ip), now);
            seen.push(t.delay("alice", Some(ip), || now).as_millis());
        }
        assert_eq!(seen, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert!(t.remembers_failures());
        // Per user, whatever the address; per address, whatever the user.
        assert_eq!(
            t.delay("ALICE", Some([10, 0, 0, 2].into()), || now)
                .as_millis(),
            2000
        );
        assert_eq!(t.delay("mallory", Some(ip), || now).as_millis(), 2000);
        assert_eq!(
            t.delay("bob", Some([10, 0, 0, 2].into()), || now),
            Duration::ZERO
        );
    }

    #[test]
    fn success_clears_the_user_not_the_address() {
        let t = throttle();
        let now = Instant::now();
        let ip: IpAddr = [10, 0, 0, 1].into();
        t.failed("alice", Some(ip), now);
        t.failed("alice", Some(ip), now);
        t.succeeded("alice");
        assert_eq!(t.delay("alice", None, || now), Duration::ZERO);
        assert_eq!(t.delay("alice", Some(ip), || now).as_millis(), 200);
    }

    #[test]
    fn counters_fade_and_memory_is_bounded() {
        let t = throttle();
        let now = Instant::now();
        t.failed("alice", None, now);
        let later = now + Duration::from_secs(61);
        assert_eq!(t.delay("alice", None, || later), Duration::ZERO);
        for i in 0..100 {
            t.failed(
                &format!("u{i}"),
                Some([10, 0, 0, (i % 250) as u8].into()),
                later,
            );
        }
        assert!(t.failures.lock().unwrap().len() <= 4, "bounded by capacity");
    }
}
