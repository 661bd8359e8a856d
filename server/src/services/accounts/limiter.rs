//! Failed sign-ins per account and per address, in a sliding window. Kept
//! in memory: each replica counts its own, which still caps guessing at
//! (limit × replicas) per window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const PER_ACCOUNT: usize = 5;
pub const PER_ADDRESS: usize = 20;
/// Past this many tracked keys the whole map is pruned, so a spray of
/// names cannot grow it without bound.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

impl LoginLimiter {
    /// `Err(wait)`: too many recent failures for this account or address.
    pub fn check(&self, account: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("limiter lock");
        let mut wait = Duration::ZERO;
        for (key, limit) in keys(account, address) {
            if let Some(times) = failures.get_mut(&key) {
                expire(times, now);
                if times.len() >= limit {
                    let oldest = times[times.len() - limit];
                    wait = wait.max(WINDOW.saturating_sub(now - oldest));
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub fn failed(&self, account: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("limiter lock");
        if failures.len() > PRUNE_ABOVE {
            failures.retain(|_, times| {
                expire(times, now);
                !times.is_empty()
            });
        }
        for (key, _) in keys(account, address) {
            failures.entry(key).or_default().push_back(now);
        }
    }

    /// A correct password clears the account's count (not the address's).
    pub fn succeeded(&self, account: &str) {
        let mut failures = self.failures.lock().expect("limiter lock");
        failures.remove(&Key::Account(account.to_string()));
    }
}

fn keys(account: &str, address: Option<IpAddr>) -> Vec<(Key, usize)> {
    let mut keys = vec![(Key::Account(account.to_string()), PER_ACCOUNT)];
    if let Some(address) = address {
        keys.push((Key::Address(address), PER_ADDRESS));
    }
    keys
}

fn expire(times: &mut VecDeque<Instant>, now: Instant) {
    while times.front().is_some_and(|at| now - *at >= WINDOW) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_held_after_five_failures_and_a_success_clears_it() {
        let limiter = LoginLimiter::default();
        let here: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PER_ACCOUNT {
            assert!(limiter.check("alice", Some(here)).is_ok());
            limiter.failed("alice", Some(here));
        }
        let wait = limiter.check("alice", Some(here)).unwrap_err();
        assert!(wait > Duration::from_secs(14 * 60) && wait <= WINDOW);
        // Another account from the same address is still allowed.
        assert!(limiter.check("bob", Some(here)).is_ok());
        limiter.succeeded("alice");
        assert!(limiter.check("alice", Some(here)).is_ok());
    }

    #[test]
    fn an_address_is_held_after_twenty_failures_across_accounts() {
        let limiter = LoginLimiter::default();
        let here: IpAddr = "10.0.0.2".parse().unwrap();
        for n in 0..PER_ADDRESS {
            limiter.failed(&format!("user{n}"), Some(here));
        }
        assert!(limiter.check("someone-new", Some(here)).is_err());
        assert!(
            limiter
                .check("someone-new", Some("10.0.0.3".parse().unwrap()))
                .is_ok()
        );
    }
}
