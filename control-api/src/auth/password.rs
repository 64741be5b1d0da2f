//! Password hashing (argon2id, PHC strings) and generation of initial passwords.
//!
//! Verification is slow on purpose, so it runs on the blocking pool; an unknown email is
//! verified against a dummy hash so that timing does not reveal which accounts exist.

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::ApiError;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password, in bytes: argon2 would take more, but nobody types this much.
pub const MAX_PASSWORD_BYTES: usize = 256;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Hashes `password` as an argon2id PHC string with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| ApiError::Internal("the system random number generator failed".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Whether `password` matches the stored PHC string; a malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Checks a new password's length; the message names `field`.
pub fn validate_new_password(field: &str, password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            field,
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A random 24-character alphanumeric password (about 143 bits), for accounts created by tools.
pub fn generate_password() -> Result<String, ApiError> {
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(24);
    let mut pool = [0u8; 64];
    while out.len() < 24 {
        rng.fill(&mut pool)
            .map_err(|_| ApiError::Internal("the system random number generator failed".into()))?;
        // Rejection sampling: 248 = 4 × 62 keeps the alphabet uniform.
        for &b in pool.iter().filter(|&&b| b < 248) {
            if out.len() == 24 {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let (a, b) = (generate_password().unwrap(), generate_password().unwrap());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(validate_new_password("password", &a).is_ok());
        assert!(validate_new_password("password", "short").is_err());
    }
}
