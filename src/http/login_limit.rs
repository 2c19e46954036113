//! Log-in, sign-up and admin authentication rate limits, so that passwords and the admin
//! token cannot be guessed at speed and password hashing cannot be used to burn the server's
//! CPU.
//!
//! Fixed one-minute windows, kept in memory by each server process:
//! - per address: every attempt (log-in or sign-up) from one client address counts;
//! - per name: failed log-ins for one user name count, and a successful log-in clears them.
//!   Once a name has used up its failures, even the right password is refused until the
//!   window ends, so a guesser learns nothing from the answer.
//! - per address, for the admin routes: failed admin authentications (a wrong, missing or
//!   overlong token) from one client address count; once they are used up, even the right
//!   token is refused until the window ends.
//!
//! Every map has a fixed capacity. When one is full, windows that have ended are dropped; if
//! it is still full, keys it does not hold are refused until some window ends. A flood can
//! slow log-ins down, but it can never lift a limit.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// Length of one counting window.
pub const LOGIN_WINDOW_SECS: i64 = 60;
/// Keys each map tracks at most (about 100 bytes each: a few MiB when full).
pub const LOGIN_LIMIT_CAPACITY_KEYS: usize = 100_000;

pub use crate::config::LoginLimits;

/// The caller must wait this long before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    pub secs: u64,
}

impl RetryAfter {
    /// From `now` until `at`: whole seconds, rounded up, and never 0 (a client retrying at
    /// once would be refused).
    pub fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> RetryAfter {
        let millis = (at - now).num_milliseconds().max(1);
        RetryAfter { secs: (millis as u64).div_ceil(1000) }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: DateTime<Utc>,
    count: u32,
}

impl Window {
    fn ended(&self, now: DateTime<Utc>) -> bool {
        now >= self.started + TimeDelta::seconds(LOGIN_WINDOW_SECS) || now < self.started
    }

    fn retry_after(&self, now: DateTime<Utc>) -> RetryAfter {
        RetryAfter::until(self.started + TimeDelta::seconds(LOGIN_WINDOW_SECS), now)
    }
}

/// Fixed-window counters for one kind of key, bounded by `capacity`.
struct Windows<K> {
    entries: HashMap<K, Window>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone> Windows<K> {
    fn new(capacity: usize) -> Self {
        Windows { entries: HashMap::new(), capacity }
    }

    /// The live window of `key`, if any.
    fn live(&self, key: &K, now: DateTime<Utc>) -> Option<Window> {
        self.entries.get(key).copied().filter(|window| !window.ended(now))
    }

    /// Whether `key` has used up `limit` in its window.
    fn exhausted(&self, key: &K, limit: u32, now: DateTime<Utc>) -> Result<(), RetryAfter> {
        match self.live(key, now) {
            Some(window) if window.count >= limit => Err(window.retry_after(now)),
            Some(_) => Ok(()),
            None if self.entries.contains_key(key) || self.entries.len() < self.capacity => Ok(()),
            // Full, and this key would need a slot: refused until the oldest window could end.
            None => Err(RetryAfter { secs: LOGIN_WINDOW_SECS as u64 }),
        }
    }

    /// Counts one more for `key`; refuses if that would exceed `limit` or if there is no room.
    fn count(&mut self, key: &K, limit: u32, now: DateTime<Utc>) -> Result<(), RetryAfter> {
        if let Some(window) = self.entries.get_mut(key) {
            if window.ended(now) {
                *window = Window { started: now, count: 0 };
            }
            if window.count >= limit {
                return Err(window.retry_after(now));
            }
            window.count += 1;
            return Ok(());
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, window| !window.ended(now));
            if self.entries.len() >= self.capacity {
                return Err(RetryAfter { secs: LOGIN_WINDOW_SECS as u64 });
            }
        }
        if limit == 0 {
            return Err(RetryAfter { secs: LOGIN_WINDOW_SECS as u64 });
        }
        self.entries.insert(key.clone(), Window { started: now, count: 1 });
        Ok(())
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

pub struct LoginLimiter {
    limits: LoginLimits,
    per_name: Mutex<Windows<String>>,
    per_address: Mutex<Windows<IpAddr>>,
    admin_per_address: Mutex<Windows<IpAddr>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        Self::with_capacity(limits, LOGIN_LIMIT_CAPACITY_KEYS)
    }

    fn with_capacity(limits: LoginLimits, capacity_keys: usize) -> Self {
        LoginLimiter {
            limits,
            per_name: Mutex::new(Windows::new(capacity_keys)),
            per_address: Mutex::new(Windows::new(capacity_keys)),
            admin_per_address: Mutex::new(Windows::new(capacity_keys)),
        }
    }

    /// Counts one attempt (log-in or sign-up) from `address`.
    pub fn attempt_from(&self, address: IpAddr, now: DateTime<Utc>) -> Result<(), RetryAfter> {
        match self.limits.attempts_per_address_per_minute {
            0 => Ok(()),
            limit => locked(&self.per_address).count(&address, limit, now),
        }
    }

    /// Whether `name` may try to log in now (its failures are not used up).
    pub fn may_log_in(&self, name: &str, now: DateTime<Utc>) -> Result<(), RetryAfter> {
        match self.limits.failures_per_name_per_minute {
            0 => Ok(()),
            limit => locked(&self.per_name).exhausted(&name.to_owned(), limit, now),
        }
    }

    /// Records a wrong password (or an unknown name) for `name`.
    pub fn failed(&self, name: &str, now: DateTime<Utc>) {
        if let limit @ 1.. = self.limits.failures_per_name_per_minute {
            // No room means the next attempt for this name is refused by `may_log_in`.
            let _ = locked(&self.per_name).count(&name.to_owned(), limit, now);
        }
    }

    /// A successful log-in clears the name's failures.
    pub fn succeeded(&self, name: &str) {
        locked(&self.per_name).clear(&name.to_owned());
    }

    /// Whether `address` may try the admin token now (its failures are not used up).
    pub fn may_try_admin(&self, address: IpAddr, now: DateTime<Utc>) -> Result<(), RetryAfter> {
        match self.limits.admin_failures_per_address_per_minute {
            0 => Ok(()),
            limit => locked(&self.admin_per_address).exhausted(&address, limit, now),
        }
    }

    /// Records a failed admin authentication from `address`.
    pub fn admin_failed(&self, address: IpAddr, now: DateTime<Utc>) {
        if let limit @ 1.. = self.limits.admin_failures_per_address_per_minute {
            // No room means the next attempt from this address is refused by `may_try_admin`.
            let _ = locked(&self.admin_per_address).count(&address, limit, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn limits(per_name: u32, per_address: u32) -> LoginLimits {
        LoginLimits {
            failures_per_name_per_minute: per_name,
            attempts_per_address_per_minute: per_address,
            admin_failures_per_address_per_minute: 0,
        }
    }

    #[test]
    fn failures_per_name_lock_the_name_until_the_window_ends() {
        let limiter = LoginLimiter::new(limits(3, 0));
        for _ in 0..3 {
            assert_eq!(limiter.may_log_in("alice", at(0)), Ok(()));
            limiter.failed("alice", at(0));
        }
        assert_eq!(limiter.may_log_in("alice", at(10)), Err(RetryAfter { secs: 50 }));
        assert_eq!(limiter.may_log_in("bob", at(10)), Ok(()));
        assert_eq!(limiter.may_log_in("alice", at(59)), Err(RetryAfter { secs: 1 }));
        assert_eq!(limiter.may_log_in("alice", at(60)), Ok(()));
    }

    #[test]
    fn a_success_clears_the_failures_of_its_name() {
        let limiter = LoginLimiter::new(limits(2, 0));
        limiter.failed("alice", at(0));
        limiter.succeeded("alice");
        limiter.failed("alice", at(1));
        assert_eq!(limiter.may_log_in("alice", at(1)), Ok(()));
        limiter.failed("alice", at(1));
        assert!(limiter.may_log_in("alice", at(1)).is_err());
    }

    #[test]
    fn every_attempt_per_address_counts_and_the_window_restarts() {
        let limiter = LoginLimiter::new(limits(0, 2));
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limiter.attempt_from(one, at(0)).is_ok());
        assert!(limiter.attempt_from(one, at(30)).is_ok());
        assert_eq!(limiter.attempt_from(one, at(30)), Err(RetryAfter { secs: 30 }));
        assert!(limiter.attempt_from(two, at(30)).is_ok());
        assert!(limiter.attempt_from(one, at(60)).is_ok());
    }

    #[test]
    fn admin_failures_lock_the_address_until_the_window_ends() {
        let limiter = LoginLimiter::new(LoginLimits { admin_failures_per_address_per_minute: 2, ..limits(0, 0) });
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(limiter.may_try_admin(one, at(0)), Ok(()));
            limiter.admin_failed(one, at(0));
        }
        assert_eq!(limiter.may_try_admin(one, at(15)), Err(RetryAfter { secs: 45 }));
        assert_eq!(limiter.may_try_admin(two, at(15)), Ok(()));
        assert_eq!(limiter.may_try_admin(one, at(60)), Ok(()));
        // Off, nothing is counted.
        let off = LoginLimiter::new(limits(0, 0));
        for _ in 0..1_000 {
            off.admin_failed(one, at(0));
        }
        assert_eq!(off.may_try_admin(one, at(0)), Ok(()));
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limiter = LoginLimiter::new(limits(0, 0));
        let address: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..1_000 {
            assert!(limiter.attempt_from(address, at(0)).is_ok());
            limiter.failed("alice", at(0));
            assert!(limiter.may_log_in("alice", at(0)).is_ok());
        }
    }

    #[test]
    fn a_full_map_drops_ended_windows_and_otherwise_refuses_new_keys() {
        let limiter = LoginLimiter::with_capacity(limits(5, 5), 2);
        let address = |last: u8| IpAddr::from([10, 0, 0, last]);
        assert!(limiter.attempt_from(address(1), at(0)).is_ok());
        assert!(limiter.attempt_from(address(2), at(30)).is_ok());
        // Full: a third address is refused, the two it holds go on.
        assert!(limiter.attempt_from(address(3), at(31)).is_err());
        assert!(limiter.attempt_from(address(1), at(31)).is_ok());
        // Once the first window has ended its slot is free again.
        assert!(limiter.attempt_from(address(3), at(61)).is_ok());

        limiter.failed("a", at(0));
        limiter.failed("b", at(0));
        limiter.failed("c", at(0));
        // "c" could not be recorded, so it is refused rather than let through uncounted.
        assert!(limiter.may_log_in("c", at(1)).is_err());
        assert!(limiter.may_log_in("a", at(1)).is_ok());
    }
}
