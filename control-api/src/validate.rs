//! Checks of free-text input that PostgreSQL would otherwise refuse with an error of its own
//! (NUL bytes) or that have no business in names (control characters).

use crate::error::ApiError;

/// Trims `value` and checks it is 1 to `max_chars` characters without control characters.
pub fn required_text(field: &str, value: &str, max_chars: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    optional_text(field, trimmed, max_chars)
}

/// Trims `value` and checks it is at most `max_chars` characters without control characters.
pub fn optional_text(field: &str, value: &str, max_chars: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.chars().count() > max_chars {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Checks and normalises an email address (lower-cased, as the unique index compares it).
pub fn email(field: &str, value: &str) -> Result<String, ApiError> {
    let value = required_text(field, value, 254)?;
    let valid = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !value.chars().any(char::is_whitespace);
    if !valid {
        return Err(ApiError::invalid(field, "must be an email address"));
    }
    Ok(value.to_lowercase())
}

/// Checks a tenant slug: lower-case letters, digits and dashes, starting with a letter or
/// digit, at most 63 characters.
pub fn slug(field: &str, value: &str) -> Result<String, ApiError> {
    let mut chars = value.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && value.len() <= 63;
    if !valid {
        return Err(ApiError::invalid(
            field,
            "must be 1 to 63 lower-case letters, digits or dashes, starting with a letter or digit",
        ));
    }
    Ok(value.to_owned())
}

/// Checks a scope: 1 to 64 of `a-z 0-9 : . _ -`.
pub fn scope(field: &str, value: &str) -> Result<(), ApiError> {
    let valid = (1..=64).contains(&value.len())
        && value.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b':' | b'.' | b'_' | b'-')
        });
    if !valid {
        return Err(ApiError::invalid(
            field,
            "must be 1 to 64 of a-z, 0-9, ':', '.', '_', '-'",
        ));
    }
    Ok(())
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value, so a
/// partial update can tell "leave as is" from "clear".
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_control_characters_are_refused() {
        assert_eq!(required_text("name", "  Acme ", 10).unwrap(), "Acme");
        assert!(required_text("name", "   ", 10).is_err());
        assert!(required_text("name", "a\u{0}b", 10).is_err());
        assert!(required_text("name", "ééééééééééé", 10).is_err());
        assert_eq!(required_text("name", "名前", 10).unwrap(), "名前");
    }

    #[test]
    fn emails_and_slugs() {
        assert_eq!(
            email("email", "Ann@Example.COM").unwrap(),
            "ann@example.com"
        );
        for bad in ["ann", "@x", "a@", "a b@x", "a@b@c"] {
            assert!(email("email", bad).is_err(), "{bad}");
        }
        assert!(slug("slug", "acme-1").is_ok());
        for bad in ["", "-acme", "Acme", "a_b", "a'; DROP TABLE tenants;--"] {
            assert!(slug("slug", bad).is_err(), "{bad}");
        }
    }
}
