//! Sign-in attempts per (account, client) and per client, in a sliding
//! window. An attempt is counted when it is taken, before its password is
//! hashed, so guesses sent in parallel are held like guesses sent one by
//! one; a correct password gives its attempt back. Keyed by the client
//! too, so nobody can lock an account out for everyone by failing on
//! purpose. Kept in memory: each replica counts its own, which still caps
//! guessing at (limit × replicas) per window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Attempts at one account from one client.
pub const PER_ACCOUNT: usize = 5;
/// Attempts from one client, at any accounts.
pub const PER_ADDRESS: usize = 20;
/// Past this many tracked keys the whole map is pruned, so a spray of
/// names cannot grow it without bound.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct LoginLimiter {
    attempts: Mutex<HashMap<Key, VecDeque<Instant>>>,
    /// When each held key's refusal was last reported: a burst of refused
    /// guesses is one audit entry and one log line a window, not one each.
    reported: Mutex<HashMap<Key, Instant>>,
}

/// A refused attempt: how long until the next is taken, and whether this
/// is the first refusal of the window (the one to report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub wait: Duration,
    pub first: bool,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    AccountFrom(String, Option<IpAddr>),
    Address(IpAddr),
}

impl LoginLimiter {
    /// Takes an attempt, counted at once. `Err(wait)`: this client has
    /// used its attempts at this account, or at all accounts, for now.
    pub fn attempt(&self, account: &str, address: Option<IpAddr>) -> Result<(), Held> {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().expect("limiter lock");
        if attempts.len() > PRUNE_ABOVE {
            attempts.retain(|_, times| {
                expire(times, now);
                !times.is_empty()
            });
        }
        let mut wait = Duration::ZERO;
        let mut held = Vec::new();
        for (key, limit) in keys(account, address) {
            if let Some(times) = attempts.get_mut(&key) {
                expire(times, now);
                if times.len() >= limit {
                    let oldest = times[times.len() - limit];
                    wait = wait.max(WINDOW.saturating_sub(now - oldest));
                    held.push(key);
                }
            }
        }
        if !wait.is_zero() {
            let mut reported = self.reported.lock().expect("limiter lock");
            reported.retain(|_, at| now - *at < WINDOW);
            let mut first = false;
            for key in held {
                if let std::collections::hash_map::Entry::Vacant(unreported) = reported.entry(key) {
                    unreported.insert(now);
                    first = true;
                }
            }
            return Err(Held { wait, first });
        }
        for (key, _) in keys(account, address) {
            attempts.entry(key).or_default().push_back(now);
        }
        Ok(())
    }

    /// A correct password: this client's count for the account is cleared,
    /// and its attempt is given back to the client's own count.
    pub fn succeeded(&self, account: &str, address: Option<IpAddr>) {
        let mut attempts = self.attempts.lock().expect("limiter lock");
        attempts.remove(&Key::AccountFrom(account.to_string(), address));
        if let Some(address) = address
            && let Some(times) = attempts.get_mut(&Key::Address(address))
        {
            times.pop_back();
        }
    }
}

fn keys(account: &str, address: Option<IpAddr>) -> Vec<(Key, usize)> {
    let mut keys = vec![(Key::AccountFrom(account.to_string(), address), PER_ACCOUNT)];
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
    fn a_client_is_held_at_an_account_after_five_attempts_and_a_success_clears_it() {
        let limiter = LoginLimiter::default();
        let here: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PER_ACCOUNT {
            assert!(limiter.attempt("alice", Some(here)).is_ok());
        }
        let held = limiter.attempt("alice", Some(here)).unwrap_err();
        assert!(held.wait > Duration::from_secs(14 * 60) && held.wait <= WINDOW);
        assert!(held.first);
        // Reported once a window.
        assert!(!limiter.attempt("alice", Some(here)).unwrap_err().first);
        // Another account from the same client, and the same account from
        // another client, are still allowed.
        assert!(limiter.attempt("bob", Some(here)).is_ok());
        let elsewhere: IpAddr = "10.0.0.9".parse().unwrap();
        assert!(limiter.attempt("alice", Some(elsewhere)).is_ok());
        limiter.succeeded("alice", Some(here));
        assert!(limiter.attempt("alice", Some(here)).is_ok());
    }

    #[test]
    fn a_client_is_held_after_twenty_attempts_across_accounts() {
        let limiter = LoginLimiter::default();
        let here: IpAddr = "10.0.0.2".parse().unwrap();
        for n in 0..PER_ADDRESS {
            assert!(limiter.attempt(&format!("user{n}"), Some(here)).is_ok());
        }
        assert!(limiter.attempt("someone-new", Some(here)).is_err());
        assert!(
            limiter
                .attempt("someone-new", Some("10.0.0.3".parse().unwrap()))
                .is_ok()
        );
    }
}
