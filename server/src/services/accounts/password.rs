//! Password hashes: argon2id with the crate's default cost, as PHC strings.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shorter passwords are refused when an account is created or changed.
pub const MIN_LENGTH: usize = 12;

pub fn check_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LENGTH {
        return Err(format!("a password needs at least {MIN_LENGTH} characters"));
    }
    Ok(())
}

pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches `stored`. Without a stored hash (an unknown
/// or single sign-on account) a dummy hash is checked, so the answer takes
/// as long either way and timing does not tell which names exist.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("not a password anyone has"));
    let (candidate, real) = match stored {
        Some(stored) => (stored, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(candidate) else {
        tracing::error!("an account's password hash is not a PHC string");
        return false;
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && real
}

/// Password hashes computed at once, at most. argon2id's default costs
/// 19 MiB of memory a hash: four at a time is 76 MiB, whatever the number
/// of sign-ins waiting (they queue, each holding only its form).
pub const HASHES_AT_ONCE: usize = 4;

/// Runs password checks off the async threads, a bounded number at a time.
pub struct Hashing {
    permits: tokio::sync::Semaphore,
    running: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl Default for Hashing {
    fn default() -> Self {
        Self {
            permits: tokio::sync::Semaphore::new(HASHES_AT_ONCE),
            running: Default::default(),
            peak: Default::default(),
        }
    }
}

impl Hashing {
    /// `verify`, when a permit is free.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> crate::error::Result<bool> {
        use std::sync::atomic::Ordering;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|err| crate::error::Error::Internal(format!("password check: {err}")))?;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let checked =
            tokio::task::spawn_blocking(move || verify(&password, stored.as_deref())).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        checked.map_err(|err| crate::error::Error::Internal(format!("password check: {err}")))
    }

    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery");
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", Some(&stored)));
        assert!(!verify("correct horse batterY", Some(&stored)));
        assert!(!verify("correct horse battery", None));
        assert_ne!(stored, hash("correct horse battery"), "salted");
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_strength("short").is_err());
        assert!(check_strength("slipway-demo").is_ok());
    }
}
