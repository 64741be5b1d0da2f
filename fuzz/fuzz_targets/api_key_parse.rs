//! Any bytes as a credential: parsing never panics, and whatever parses, hashes and verifies
//! without panicking and never matches a key it was not derived from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::{KeyHash, KeyPepper, ParsedApiKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = ParsedApiKey::parse(text) {
        let pepper = KeyPepper::from_bytes(&[42; 32]).expect("32-byte pepper");
        let hash = key.hash(&pepper);
        assert!(key.verify(&pepper, &hash));
        let other = KeyHash::from_slice(&[0; 32]).expect("32 bytes");
        assert!(!key.verify(&pepper, &other));
    }
});
