//! Password hashing with argon2id. CPU- and memory-heavy: the server runs these through
//! [`crate::hashing::Hashing`], which bounds how many run at once and reuses their memory.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

/// The working memory of one argon2 computation (`m_cost` KiB), kept between hashes so that
/// a hash does not allocate (and the allocator need not return) megabytes each time. Grows
/// to the largest cost it has served.
#[derive(Default)]
pub struct HashMemory {
    blocks: Vec<Block>,
}

impl HashMemory {
    /// At least `count` blocks.
    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.blocks.len() < count {
            // A fresh allocation rather than `resize`: nothing worth copying is in there.
            self.blocks = Vec::new();
            self.blocks = vec![Block::new(); count];
        }
        &mut self.blocks[..count]
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.blocks.len() * Block::SIZE
    }
}

/// A PHC string (`$argon2id$v=19$...`) with a random salt.
pub fn hash(password: &Password, cost: HashCost, memory: &mut HashMemory) -> anyhow::Result<String> {
    hash_with_salt(password.expose().as_bytes(), &SaltString::generate(&mut OsRng), cost, memory)
}

fn hash_with_salt(
    password: &[u8],
    salt: &SaltString,
    cost: HashCost,
    memory: &mut HashMemory,
) -> anyhow::Result<String> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?;
    let (algorithm, version) = (Algorithm::Argon2id, Version::V0x13);
    let output = compute(password, salt.as_salt(), algorithm, version, &params, Params::DEFAULT_OUTPUT_LEN, memory)
        .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))?;
    let phc = PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params).map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the stored PHC string (whose own parameters are used); a
/// malformed hash never matches.
pub fn verify(password: &str, stored: &str, memory: &mut HashMemory) -> bool {
    let mut matches = || -> Result<bool, argon2::password_hash::Error> {
        let parsed = PasswordHash::new(stored)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Ok(false);
        };
        let algorithm = Algorithm::try_from(parsed.algorithm)?;
        let version = parsed.version.map(Version::try_from).transpose()?.unwrap_or_default();
        let params = Params::try_from(&parsed)?;
        let output = compute(password.as_bytes(), salt, algorithm, version, &params, expected.len(), memory)?;
        // `Output` compares in constant time.
        Ok(output == expected)
    };
    matches().unwrap_or(false)
}

/// The argon2 output of `password` under these parameters, computed in `memory`.
fn compute(
    password: &[u8],
    salt: Salt<'_>,
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    output_len: usize,
    memory: &mut HashMemory,
) -> Result<Output, argon2::password_hash::Error> {
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    Output::init_with(output_len, |out| {
        Ok(argon2.hash_password_into_with_memory(password, salt, out, memory.blocks(params.block_count()))?)
    })
}

/// A valid hash of no real password, verified against when a name is unknown so that a
/// failed log-in takes as long whether or not the name exists.
pub const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Cq8Yv5y4pLr1n9i7Q0sQm0uXk1qv3o1bYwqkq0bQm5I";

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher;

    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let mut memory = HashMemory::default();
        let password = Password::parse("correct horse").unwrap();
        let first = hash(&password, HashCost::default(), &mut memory).unwrap();
        let second = hash(&password, HashCost { memory_kib: 1024, iterations: 1 }, &mut memory).unwrap();
        assert!(first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_ne!(first, second);
        assert!(verify("correct horse", &first, &mut memory));
        assert!(verify("correct horse", &second, &mut memory));
        assert!(!verify("wrong horse", &first, &mut memory));
        assert!(!verify("correct horse", "not a hash", &mut memory));
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
        assert!(!verify("correct horse", DECOY_HASH, &mut memory));
        // One buffer served both costs: it grew to the larger one and stayed.
        assert_eq!(memory.size(), 19456 * 1024);
    }

    /// The same PHC strings as argon2's own `hash_password`, and its hashes verify here: the
    /// stored hashes of either are interchangeable.
    #[test]
    fn same_hashes_as_the_argon2_crate() {
        let mut memory = HashMemory::default();
        let salt = SaltString::generate(&mut OsRng);
        let cost = HashCost { memory_kib: 2048, iterations: 3 };
        let ours = hash_with_salt(b"correct horse", &salt, cost, &mut memory).unwrap();
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert_eq!(ours, theirs);
        // Other variants, lanes and output lengths, as the crate writes them.
        let params = Params::new(1024, 1, 2, Some(24)).unwrap();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x10, params).hash_password(b"pw12345678", &salt);
        let argon2i = argon2i.unwrap().to_string();
        assert!(verify("pw12345678", &argon2i, &mut memory));
        assert!(!verify("pw12345679", &argon2i, &mut memory));
    }
}
