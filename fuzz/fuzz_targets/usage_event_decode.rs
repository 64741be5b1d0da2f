//! Any bytes as a usage event: decoding never panics, and whatever decodes re-encodes to an
//! event that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_core::UsageEvent;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = UsageEvent::decode(data) {
        let again = UsageEvent::decode(&event.encode()).expect("re-encoded event decodes");
        assert_eq!(again, event);
    }
});
