//! The request path as routes are matched on and as it is forwarded: one normal form, so that a
//! path cannot name one route to the gateway and another to the upstream.
//!
//! A path reaches a route's scope check only in its normal form: percent-encoded unreserved
//! characters decoded (`%61dmin` is `admin`), dot segments removed as RFC 3986 §5.2.4 does
//! (`/svc/x/../admin` is `/svc/admin`), runs of `/` merged (many upstreams merge them too). The
//! upstream receives that same path. What cannot be made unambiguous is refused: an encoded
//! slash or backslash (`%2F`, `%5C`), which an upstream may or may not decode into a separator,
//! an encoded NUL, a raw backslash, malformed percent-encoding, and a dot segment carrying
//! parameters (`..;`), which Tomcat-style servers read as `..`.
//!
//! Most paths are already normal: they are checked in one pass and borrowed, not copied.

use std::borrow::Cow;

/// Why a path is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    /// Not an origin-form path (does not start with `/`).
    #[error("the request target must be a path starting with '/'")]
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    #[error("the path has malformed percent-encoding")]
    BadPercentEncoding,
    /// `%2F` or `%5C`: a separator the upstream may or may not decode.
    #[error("the path contains an encoded slash or backslash (%2F, %5C), which is ambiguous")]
    EncodedSeparator,
    /// `%00`.
    #[error("the path contains an encoded NUL (%00)")]
    EncodedNul,
    /// A raw `\`, which some servers treat as `/`.
    #[error("the path contains a backslash, which is ambiguous")]
    Backslash,
    /// `..;x` or `.;x`: a dot segment with parameters.
    #[error("the path contains a dot segment with parameters ('..;'), which is ambiguous")]
    DotSegmentParameters,
}

impl PathRefusal {
    /// Stable machine-readable code for error bodies.
    pub const fn code(self) -> &'static str {
        match self {
            Self::NotOriginForm | Self::BadPercentEncoding => "malformed_path",
            Self::EncodedSeparator
            | Self::EncodedNul
            | Self::Backslash
            | Self::DotSegmentParameters => "ambiguous_path",
        }
    }
}

/// `path` in its normal form (see the module documentation), borrowed when it already is.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathRefusal> {
    if !path.starts_with('/') {
        return Err(PathRefusal::NotOriginForm);
    }
    if is_normal(path.as_bytes())? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    remove_dot_segments(&decoded).map(Cow::Owned)
}

/// One pass over a path: `Ok(true)` when nothing needs changing, `Err` for what is refused
/// whatever the rest says.
fn is_normal(bytes: &[u8]) -> Result<bool, PathRefusal> {
    let mut normal = true;
    let mut segment_start = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => return Err(PathRefusal::Backslash),
            // Only an encoding already in normal form (upper-case hex of a character that must
            // stay encoded) leaves the path as it is.
            b'%' => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&h), Some(&l)) if is_upper_hex(h) && is_upper_hex(l) => {
                    let value = (hex_value(h).unwrap_or(0) << 4) | hex_value(l).unwrap_or(0);
                    if decoded_form(value) != Decoded::StaysEncoded {
                        normal = false;
                    }
                    i += 2;
                }
                _ => normal = false,
            },
            b'/' => {
                let segment = bytes.get(segment_start..i).unwrap_or_default();
                if i > 0 && (segment.is_empty() || is_dot_segment(segment)?) {
                    normal = false;
                }
                segment_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let last = bytes.get(segment_start..).unwrap_or_default();
    if is_dot_segment(last)? {
        normal = false;
    }
    Ok(normal)
}

fn is_upper_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

/// What a percent-encoded byte becomes in the normal form.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// An unreserved character: decoded.
    Unreserved,
    /// Anything else: stays encoded.
    StaysEncoded,
    /// Refused.
    Refused(PathRefusal),
}

fn decoded_form(value: u8) -> Decoded {
    match value {
        b'/' | b'\\' => Decoded::Refused(PathRefusal::EncodedSeparator),
        0 => Decoded::Refused(PathRefusal::EncodedNul),
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => Decoded::Unreserved,
        _ => Decoded::StaysEncoded,
    }
}

/// `.` or `..`; `Err` for one with parameters (`..;v=1`).
fn is_dot_segment(segment: &[u8]) -> Result<bool, PathRefusal> {
    let name = segment
        .iter()
        .position(|&b| b == b';')
        .map_or(segment, |at| segment.get(..at).unwrap_or_default());
    let dots = matches!(name, b"." | b"..");
    if dots && name.len() != segment.len() {
        return Err(PathRefusal::DotSegmentParameters);
    }
    Ok(dots)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` of unreserved characters (RFC 3986 §2.3); other encodings stay, with their hex
/// digits upper-cased (§6.2.2.1), so one character has one spelling.
fn decode_unreserved(path: &str) -> Result<String, PathRefusal> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            // The path came from a `&str`; multi-byte characters are copied whole below.
            let next = bytes
                .iter()
                .skip(i)
                .position(|&c| c == b'%')
                .map_or(bytes.len(), |at| i + at);
            out.push_str(path.get(i..next).unwrap_or_default());
            i = next;
            continue;
        }
        let value = match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(&h), Some(&l)) => match (hex_value(h), hex_value(l)) {
                (Some(h), Some(l)) => (h << 4) | l,
                _ => return Err(PathRefusal::BadPercentEncoding),
            },
            _ => return Err(PathRefusal::BadPercentEncoding),
        };
        match decoded_form(value) {
            Decoded::Refused(refusal) => return Err(refusal),
            Decoded::Unreserved => out.push(char::from(value)),
            Decoded::StaysEncoded => {
                out.push('%');
                out.push(char::from(HEX[usize::from(value >> 4)]));
                out.push(char::from(HEX[usize::from(value & 0xf)]));
            }
        }
        i += 3;
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path, also merging runs of `/`; a trailing `/`, `.` or `..`
/// leaves a trailing `/`, as the RFC's algorithm does.
fn remove_dot_segments(path: &str) -> Result<String, PathRefusal> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        // Decoding may have made one (`%2E%2E;x`).
        is_dot_segment(segment.as_bytes())?;
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            name => kept.push(name),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn normal(path: &str) -> String {
        normalize_path(path).unwrap().into_owned()
    }

    #[test]
    fn disguised_paths_become_the_path_they_stand_for() {
        for (raw, want) in [
            ("/svc/x/../admin/secret", "/svc/admin/secret"),
            ("/svc/./admin/secret", "/svc/admin/secret"),
            ("/svc/%61dmin/secret", "/svc/admin/secret"),
            ("/svc/%2E%2E/admin", "/admin"),
            ("/svc/%2e/admin", "/svc/admin"),
            ("/svc//admin", "/svc/admin"),
            ("//svc///admin/", "/svc/admin/"),
            ("/a/../../b/x", "/b/x"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/%7euser/%41%42", "/~user/AB"),
            ("/q/%3f%c3%a9", "/q/%3F%C3%A9"),
            ("/caf\u{e9}/%2e%2e/x", "/x"),
        ] {
            assert_eq!(normal(raw), want, "{raw}");
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for path in [
            "/",
            "/svc/admin/secret",
            "/a/",
            "/v1/orders;v=2",
            "/a.b/..c/.d",
            "/q/%3F%C3%A9",
        ] {
            assert!(
                matches!(normalize_path(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn ambiguous_paths_are_refused_with_a_code() {
        for (raw, refusal) in [
            ("/svc/admin%2fsecret", PathRefusal::EncodedSeparator),
            ("/svc/admin%2Fsecret", PathRefusal::EncodedSeparator),
            ("/svc/admin%5csecret", PathRefusal::EncodedSeparator),
            ("/svc/admin\\secret", PathRefusal::Backslash),
            ("/svc/%00", PathRefusal::EncodedNul),
            ("/svc/%zz", PathRefusal::BadPercentEncoding),
            ("/svc/%4", PathRefusal::BadPercentEncoding),
            ("/svc/..;/admin", PathRefusal::DotSegmentParameters),
            ("/svc/.;x", PathRefusal::DotSegmentParameters),
            ("/svc/%2E%2e;x/admin", PathRefusal::DotSegmentParameters),
            ("svc", PathRefusal::NotOriginForm),
            ("*", PathRefusal::NotOriginForm),
        ] {
            assert_eq!(normalize_path(raw), Err(refusal), "{raw}");
        }
        assert_eq!(PathRefusal::EncodedSeparator.code(), "ambiguous_path");
        assert_eq!(PathRefusal::BadPercentEncoding.code(), "malformed_path");
    }

    /// Paths built from the pieces that matter: separators, dots, encodings, ordinary text.
    fn path_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just(";".to_owned()),
            "%[0-9a-fA-F]{2}",
            "[a-zA-Z0-9_~-]{1,4}",
            "[\\PC]{1,2}",
        ];
        prop::collection::vec(piece, 0..16).prop_map(|pieces| format!("/{}", pieces.concat()))
    }

    proptest! {
        #[test]
        fn the_normal_form_is_stable_and_free_of_disguises(path in path_strategy()) {
            if let Ok(normal) = normalize_path(&path) {
                // Normalising again changes nothing and copies nothing.
                prop_assert!(matches!(normalize_path(&normal), Ok(Cow::Borrowed(_))), "{normal}");
                prop_assert!(normal.starts_with('/'));
                prop_assert!(!normal.contains("//"), "{normal}");
                for segment in normal.split('/') {
                    prop_assert!(segment != "." && segment != "..", "{normal}");
                }
                // Every remaining encoding is upper-case and of a reserved character.
                let bytes = normal.as_bytes();
                for (i, _) in normal.match_indices('%') {
                    let value = bytes.get(i + 1..i + 3)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                    prop_assert!(value.is_some(), "{normal}");
                    let value = value.unwrap_or_default();
                    prop_assert!(!value.is_ascii_alphanumeric() && !b"-._~/\\\0".contains(&value), "{normal}");
                    prop_assert!(!bytes[i + 1..i + 3].iter().any(u8::is_ascii_lowercase), "{normal}");
                }
            }
        }

        #[test]
        fn already_normal_paths_are_kept_byte_for_byte(segments in prop::collection::vec("[a-z0-9._~-]{1,6}", 0..8)) {
            let path = format!("/{}", segments.join("/"));
            let dots = segments.iter().any(|s| s == "." || s == "..");
            let result = normalize_path(&path);
            prop_assert!(result.is_ok());
            if !dots {
                prop_assert!(matches!(result, Ok(Cow::Borrowed(p)) if p == path));
            }
        }
    }
}
