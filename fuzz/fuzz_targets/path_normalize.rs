//! Any request path: normalising never panics, and what it returns is a fixed point (normalising
//! it again borrows it unchanged) free of the disguises it removes: no dot segments, no empty
//! segments, no encoded unreserved character, no encoded slash, backslash or NUL.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use tollgate_proxy::path::normalize_path;

fuzz_target!(|path: &str| {
    let Ok(normal) = normalize_path(path) else {
        return;
    };
    assert!(normal.starts_with('/'));
    assert!(
        matches!(normalize_path(&normal), Ok(Cow::Borrowed(again)) if again == normal),
        "{path:?} → {normal:?} is not a fixed point"
    );
    assert!(!normal.contains("//"), "{normal:?}");
    assert!(!normal.contains('\\'), "{normal:?}");
    for segment in normal.split('/') {
        assert!(segment != "." && segment != "..", "{normal:?}");
    }
    let bytes = normal.as_bytes();
    for (at, _) in normal.match_indices('%') {
        let value = bytes
            .get(at + 1..at + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .expect("a complete percent-encoding");
        assert!(
            !value.is_ascii_alphanumeric() && !b"-._~/\\\0".contains(&value),
            "{normal:?} keeps %{value:02X} encoded"
        );
    }
    // Nothing is invented: a path that was already normal comes back borrowed.
    if let Cow::Owned(changed) = &normal {
        assert_ne!(changed, path);
    }
});
