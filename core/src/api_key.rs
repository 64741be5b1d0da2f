//! API keys: `tg_<env>_<key id>_<secret>`, minted from a CSPRNG, stored as a keyed hash.
//!
//! The key id finds the record; the secret proves possession. Keys carry ~190 bits of entropy,
//! so a slow password hash buys nothing: we store HMAC-SHA-256 of the whole key under a server
//! pepper. A database dump alone then cannot be used to check guesses, and verification costs
//! one HMAC, compared in constant time. Parsing never allocates and never panics.

use std::fmt;
use std::sync::OnceLock;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::ids::KeyId;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "tg_";
/// Number of base62 characters in a key's secret (~190 bits).
pub const SECRET_LEN: usize = 32;
/// Longest string that could be a key; longer input is rejected before any other work.
pub const MAX_KEY_LEN: usize = 64;
/// Minimum pepper length in bytes.
pub const MIN_PEPPER_LEN: usize = 32;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Which environment a key belongs to; shown in the key so a test key is recognisable at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyEnv {
    /// Production traffic.
    Live,
    /// Test traffic.
    Test,
}

impl KeyEnv {
    /// The tag used inside the key.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Self::Live),
            "test" => Some(Self::Test),
            _ => None,
        }
    }
}

/// Why a string is not an API key. Messages never echo the input, which may be a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    /// Nothing was given.
    #[error("the API key is empty")]
    Empty,
    /// Longer than any key can be.
    #[error("the API key is longer than {MAX_KEY_LEN} characters")]
    TooLong,
    /// Does not start with `tg_`.
    #[error("API keys start with \"tg_\"")]
    MissingPrefix,
    /// The environment tag is not `live` or `test`.
    #[error("the API key's environment must be \"live\" or \"test\"")]
    UnknownEnvironment,
    /// The key id part is not 16 letters or digits.
    #[error("the API key's id must be 16 letters or digits")]
    MalformedKeyId,
    /// The secret part is not 32 letters or digits.
    #[error("the API key's secret must be 32 letters or digits")]
    MalformedSecret,
}

/// A syntactically valid key borrowed from the request; nothing is allocated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedApiKey<'a> {
    env: KeyEnv,
    id: KeyId,
    token: &'a str,
}

impl<'a> ParsedApiKey<'a> {
    /// Parses `tg_<env>_<key id>_<secret>`.
    pub fn parse(token: &'a str) -> Result<Self, KeyParseError> {
        if token.is_empty() {
            return Err(KeyParseError::Empty);
        }
        if token.len() > MAX_KEY_LEN {
            return Err(KeyParseError::TooLong);
        }
        let rest = token
            .strip_prefix(KEY_PREFIX)
            .ok_or(KeyParseError::MissingPrefix)?;
        let (env, rest) = rest
            .split_once('_')
            .ok_or(KeyParseError::UnknownEnvironment)?;
        let env = KeyEnv::parse(env).ok_or(KeyParseError::UnknownEnvironment)?;
        let (id, secret) = rest.split_once('_').ok_or(KeyParseError::MalformedKeyId)?;
        let id = KeyId::parse(id).map_err(|_| KeyParseError::MalformedKeyId)?;
        if secret.len() != SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyParseError::MalformedSecret);
        }
        Ok(Self { env, id, token })
    }

    /// The key's environment.
    pub const fn env(&self) -> KeyEnv {
        self.env
    }

    /// The key id, which finds the stored record.
    pub const fn id(&self) -> KeyId {
        self.id
    }

    /// The keyed hash to compare with (or store as) the record's.
    pub fn hash(&self, pepper: &KeyPepper) -> KeyHash {
        KeyHash::of(pepper, self.token)
    }

    /// Whether this key matches the stored hash, in constant time.
    pub fn verify(&self, pepper: &KeyPepper, expected: &KeyHash) -> bool {
        hmac::verify(&pepper.0, self.token.as_bytes(), &expected.0).is_ok()
    }
}

impl fmt::Debug for ParsedApiKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedApiKey({})", display_prefix(self.env, self.id))
    }
}

/// A freshly minted key that owns its secret. Shown to its owner exactly once; `Debug`
/// redacts the secret, and only `Display`/[`ApiKey::expose`] reveal it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    env: KeyEnv,
    id: KeyId,
    token: String,
}

/// The system's CSPRNG failed; nothing was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomnessError;

impl ApiKey {
    /// Mints a new key from the operating system's CSPRNG.
    pub fn generate(env: KeyEnv) -> Result<Self, RandomnessError> {
        let rng = SystemRandom::new();
        let id = KeyId::from_alphanumeric(random_base62(&rng)?);
        let secret: [u8; SECRET_LEN] = random_base62(&rng)?;
        let mut token = String::with_capacity(MAX_KEY_LEN);
        token.push_str(&display_prefix(env, id));
        token.push('_');
        // The secret bytes are ASCII alphanumerics by construction.
        token.extend(secret.iter().map(|&b| char::from(b)));
        Ok(Self { env, id, token })
    }

    /// Parses a key given as an owned string (e.g. from configuration).
    pub fn parse(token: &str) -> Result<Self, KeyParseError> {
        let parsed = ParsedApiKey::parse(token)?;
        Ok(Self {
            env: parsed.env,
            id: parsed.id,
            token: token.to_owned(),
        })
    }

    /// The borrowed form, for hashing and verification.
    pub fn as_parsed(&self) -> ParsedApiKey<'_> {
        ParsedApiKey {
            env: self.env,
            id: self.id,
            token: &self.token,
        }
    }

    /// The key id.
    pub const fn id(&self) -> KeyId {
        self.id
    }

    /// The key's environment.
    pub const fn env(&self) -> KeyEnv {
        self.env
    }

    /// The part that is safe to show in lists: `tg_<env>_<key id>`.
    pub fn display_prefix(&self) -> String {
        display_prefix(self.env, self.id)
    }

    /// The keyed hash to store.
    pub fn hash(&self, pepper: &KeyPepper) -> KeyHash {
        self.as_parsed().hash(pepper)
    }

    /// The whole key, secret included. Call only to hand the key to its owner.
    pub fn expose(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}_<redacted>)", self.display_prefix())
    }
}

/// `tg_<env>_<key id>`: identifies a key without revealing its secret.
pub fn display_prefix(env: KeyEnv, id: KeyId) -> String {
    format!("{KEY_PREFIX}{}_{id}", env.as_str())
}

fn random_base62<const N: usize>(rng: &SystemRandom) -> Result<[u8; N], RandomnessError> {
    let mut out = [0u8; N];
    let mut filled = 0;
    let mut pool = [0u8; 64];
    while filled < N {
        rng.fill(&mut pool).map_err(|_| RandomnessError)?;
        // Rejection sampling: 248 = 4 × 62, so accepted bytes map uniformly onto the alphabet.
        for &b in pool.iter().filter(|&&b| b < 248) {
            if filled == N {
                break;
            }
            out[filled] = BASE62[usize::from(b % 62)];
            filled += 1;
        }
    }
    Ok(out)
}

/// The server-side secret that keys are hashed under. `Debug` never shows it.
pub struct KeyPepper(hmac::Key);

/// Why a pepper was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PepperError {
    /// Not hexadecimal.
    #[error("the key pepper must be hexadecimal")]
    NotHex,
    /// Too short to be a secret.
    #[error("the key pepper must be at least {MIN_PEPPER_LEN} bytes ({} hex characters)", MIN_PEPPER_LEN * 2)]
    TooShort,
}

impl KeyPepper {
    /// A pepper from raw bytes; at least [`MIN_PEPPER_LEN`] of them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PepperError> {
        if bytes.len() < MIN_PEPPER_LEN {
            return Err(PepperError::TooShort);
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// A pepper from its hexadecimal configuration form.
    pub fn from_hex(hex: &str) -> Result<Self, PepperError> {
        let bytes = crate::hex::decode(hex.trim()).ok_or(PepperError::NotHex)?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Debug for KeyPepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPepper(<redacted>)")
    }
}

/// HMAC-SHA-256 of a whole key under the pepper: what the database stores.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    fn of(pepper: &KeyPepper, token: &str) -> Self {
        let tag = hmac::sign(&pepper.0, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        Self(out)
    }

    /// All zeros: matches no key (HMAC output is never all zeros in practice); what an unknown
    /// key id is verified against, so that it costs what a known one does.
    pub const fn zeroed() -> Self {
        Self([0; 32])
    }

    /// Reads a stored hash; `None` unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The bytes to store.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// The one key that verified against a stored record, remembered in memory beside that record
/// (never stored, never logged), so the next request with the same key compares its bytes
/// instead of computing the HMAC: two SHA-256 blocks, about 6,400 instructions and the largest
/// single cost of authenticating a request (callgrind, `make profile`). The proxy keeps one per
/// key record of a configuration snapshot, so a reload starts empty, as the JWT cache does.
#[derive(Clone, Default)]
pub struct VerifiedKey(OnceLock<Box<str>>);

impl VerifiedKey {
    /// Whether `key` matches `expected`: by comparison with the key that verified before, else
    /// by the HMAC (remembering `key` when it verifies). Both comparisons take constant time.
    pub fn verify(&self, key: &ParsedApiKey<'_>, pepper: &KeyPepper, expected: &KeyHash) -> bool {
        if self
            .0
            .get()
            .is_some_and(|known| bytes_equal(known.as_bytes(), key.token.as_bytes()))
        {
            return true;
        }
        let verified = key.verify(pepper, expected);
        if verified {
            let _ = self.0.set(key.token.into());
        }
        verified
    }
}

impl fmt::Debug for VerifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.0.get().is_some() {
            "(verified)"
        } else {
            "(none)"
        };
        write!(f, "VerifiedKey{state}")
    }
}

/// Equality of two byte strings in time that depends only on their lengths (keys of one format
/// have one length).
fn bytes_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y))) == 0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pepper(byte: u8) -> KeyPepper {
        KeyPepper::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn generated_key_parses_and_verifies() {
        let key = ApiKey::generate(KeyEnv::Live).unwrap();
        let stored = key.hash(&pepper(1));
        let parsed = ParsedApiKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.id(), key.id());
        assert_eq!(parsed.env(), KeyEnv::Live);
        assert!(parsed.verify(&pepper(1), &stored));
        assert!(key.expose().starts_with("tg_live_"));
        assert_eq!(key.expose().len(), 3 + 4 + 1 + KeyId::LEN + 1 + SECRET_LEN);
    }

    #[test]
    fn generated_keys_differ() {
        let a = ApiKey::generate(KeyEnv::Test).unwrap();
        let b = ApiKey::generate(KeyEnv::Test).unwrap();
        assert_ne!(a.id(), b.id());
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn wrong_secret_fails_verification() {
        let key = ApiKey::generate(KeyEnv::Live).unwrap();
        let stored = key.hash(&pepper(1));
        let mut forged = key.expose().to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == 'a' { 'b' } else { 'a' });
        let forged = ParsedApiKey::parse(&forged).unwrap();
        assert_eq!(forged.id(), key.id());
        assert!(!forged.verify(&pepper(1), &stored));
    }

    #[test]
    fn wrong_pepper_fails_verification() {
        let key = ApiKey::generate(KeyEnv::Live).unwrap();
        let stored = key.hash(&pepper(1));
        assert!(!key.as_parsed().verify(&pepper(2), &stored));
    }

    #[test]
    fn secret_cannot_be_moved_to_another_environment() {
        let key = ApiKey::generate(KeyEnv::Live).unwrap();
        let stored = key.hash(&pepper(1));
        let moved = key.expose().replacen("tg_live_", "tg_test_", 1);
        assert!(
            !ParsedApiKey::parse(&moved)
                .unwrap()
                .verify(&pepper(1), &stored)
        );
    }

    #[test]
    fn malformed_keys_are_rejected_with_a_reason() {
        let good = ApiKey::generate(KeyEnv::Live).unwrap();
        let good = good.expose();
        let cases: [(String, KeyParseError); 8] = [
            (String::new(), KeyParseError::Empty),
            ("x".repeat(65), KeyParseError::TooLong),
            (good.replacen("tg_", "tk_", 1), KeyParseError::MissingPrefix),
            (
                good.replacen("live", "prod", 1),
                KeyParseError::UnknownEnvironment,
            ),
            (
                good[..good.len() - 1].to_owned(),
                KeyParseError::MalformedSecret,
            ),
            (format!("{good}x"), KeyParseError::MalformedSecret),
            (
                "tg_live_short_abc".to_owned(),
                KeyParseError::MalformedKeyId,
            ),
            (
                good.replacen("tg_live_", "tg_live_é", 1),
                KeyParseError::MalformedKeyId,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                ParsedApiKey::parse(&input),
                Err(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKey::generate(KeyEnv::Live).unwrap();
        let secret = &key.expose()[key.expose().len() - SECRET_LEN..];
        for shown in [format!("{key:?}"), format!("{:?}", key.as_parsed())] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains(key.id().as_str()), "{shown}");
        }
        assert_eq!(format!("{:?}", pepper(7)), "KeyPepper(<redacted>)");
    }

    #[test]
    fn pepper_must_be_long_hex() {
        assert!(KeyPepper::from_hex(&"ab".repeat(32)).is_ok());
        assert_eq!(
            KeyPepper::from_hex(&"ab".repeat(31)).unwrap_err(),
            PepperError::TooShort
        );
        assert_eq!(
            KeyPepper::from_hex(&"zz".repeat(32)).unwrap_err(),
            PepperError::NotHex
        );
        assert_eq!(KeyPepper::from_hex("abc").unwrap_err(), PepperError::NotHex);
        assert_eq!(
            KeyPepper::from_hex(&"é".repeat(32)).unwrap_err(),
            PepperError::NotHex
        );
    }

    #[test]
    fn stored_hash_round_trips_through_bytes() {
        let key = ApiKey::generate(KeyEnv::Live).unwrap();
        let stored = key.hash(&pepper(1));
        let read = KeyHash::from_slice(stored.as_bytes()).unwrap();
        assert!(key.as_parsed().verify(&pepper(1), &read));
        assert!(KeyHash::from_slice(&[0; 31]).is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics_and_never_verifies(input in ".{0,80}") {
            if let Ok(parsed) = ParsedApiKey::parse(&input) {
                let real = ApiKey::generate(KeyEnv::Live).unwrap();
                prop_assert!(!parsed.verify(&pepper(1), &real.hash(&pepper(1))));
            }
        }

        #[test]
        fn arbitrary_bytes_as_lossy_text_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let input = String::from_utf8_lossy(&bytes);
            let _ = ParsedApiKey::parse(&input);
        }

        #[test]
        fn every_truncation_of_a_key_is_rejected(cut in 0usize..57) {
            let key = ApiKey::generate(KeyEnv::Live).unwrap();
            prop_assert!(ParsedApiKey::parse(&key.expose()[..cut]).is_err());
        }

        #[test]
        fn well_formed_keys_parse(id in "[A-Za-z0-9]{16}", secret in "[A-Za-z0-9]{32}", live in any::<bool>()) {
            let env = if live { "live" } else { "test" };
            let token = format!("tg_{env}_{id}_{secret}");
            let parsed = ParsedApiKey::parse(&token).unwrap();
            let parsed_id = parsed.id();
            prop_assert_eq!(parsed_id.as_str(), id.as_str());
        }
    }

    #[test]
    fn a_verified_key_is_compared_not_hashed_again() {
        let key = ApiKey::generate(KeyEnv::Live).unwrap();
        let other = ApiKey::generate(KeyEnv::Live).unwrap();
        let stored = key.hash(&pepper(1));
        let parsed = ParsedApiKey::parse(key.expose()).unwrap();
        let cache = VerifiedKey::default();
        // A wrong key verifies nothing and is not remembered.
        assert!(!cache.verify(
            &ParsedApiKey::parse(other.expose()).unwrap(),
            &pepper(1),
            &stored
        ));
        assert!(format!("{cache:?}").contains("none"));
        assert!(cache.verify(&parsed, &pepper(1), &stored));
        // Under another pepper the HMAC no longer matches: only the remembered key can answer.
        assert!(!parsed.verify(&pepper(2), &stored));
        assert!(cache.verify(&parsed, &pepper(2), &stored));
        // Another key still needs the HMAC, and fails it.
        assert!(!cache.verify(
            &ParsedApiKey::parse(other.expose()).unwrap(),
            &pepper(1),
            &stored
        ));
        assert!(!format!("{cache:?}").contains(key.expose()));
    }

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(bytes_equal(b"abc", b"abc"));
        assert!(!bytes_equal(b"abc", b"abd"));
        assert!(!bytes_equal(b"abc", b"ab"));
        assert!(bytes_equal(b"", b""));
    }
}
