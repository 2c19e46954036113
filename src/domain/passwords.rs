//! Password hashing with argon2id. CPU-heavy: callers run these in `spawn_blocking`.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// argon2id cost. The defaults are the OWASP recommendation (19 MiB, 2 passes); tests and
/// load tests that create thousands of users may lower them.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost { memory_kib: Params::DEFAULT_M_COST, iterations: Params::DEFAULT_T_COST }
    }
}

use super::names::Password;

/// A PHC string (`$argon2id$v=19$...`) with a random salt.
pub fn hash(password: &Password, cost: HashCost) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.expose().as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string (whose own parameters are used); a
/// malformed hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A valid hash of no real password, verified against when a name is unknown so that a
/// failed log-in takes as long whether or not the name exists.
pub const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Cq8Yv5y4pLr1n9i7Q0sQm0uXk1qv3o1bYwqkq0bQm5I";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let password = Password::parse("correct horse").unwrap();
        let first = hash(&password, HashCost::default()).unwrap();
        let second = hash(&password, HashCost { memory_kib: 1024, iterations: 1 }).unwrap();
        assert!(first.starts_with("$argon2id$"));
        assert_ne!(first, second);
        assert!(verify("correct horse", &first));
        assert!(!verify("wrong horse", &first));
        assert!(!verify("correct horse", "not a hash"));
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
    }
}
