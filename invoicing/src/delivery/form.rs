//! Stripe's request encoding: `application/x-www-form-urlencoded` with bracketed nesting
//! (`metadata[tenant_id]=…`, `lines[0][amount]=…`).
//!
//! Parameters are kept as an ordered list of (key, value) pairs built from our own data, so the
//! same invoice always encodes to the same bytes: Stripe refuses an idempotency key reused with
//! different parameters, and a retry must never look different from the first attempt.

use std::fmt::Write as _;

/// Form parameters of one Stripe call, in insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StripeForm {
    pairs: Vec<(String, String)>,
}

impl StripeForm {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key=value` (a top-level parameter).
    pub fn field(mut self, key: &str, value: impl Into<String>) -> Self {
        self.pairs.push((key.to_owned(), value.into()));
        self
    }

    /// Adds `parent[child]=value`, Stripe's notation for a nested hash (e.g. metadata).
    pub fn nested(mut self, parent: &str, child: &str, value: impl Into<String>) -> Self {
        self.pairs
            .push((format!("{parent}[{child}]"), value.into()));
        self
    }

    /// The (key, value) pairs, unencoded.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The request body.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (key, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            percent_encode_into(&mut out, key);
            out.push('=');
            percent_encode_into(&mut out, value);
        }
        out
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986), spaces as `%20`: what
/// Stripe's own libraries send, and unambiguous for brackets in keys.
fn percent_encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// Percent-encodes a query-string value (a search query).
pub fn encode_query_value(text: &str) -> String {
    let mut out = String::new();
    percent_encode_into(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_uses_brackets_and_everything_is_percent_encoded() {
        let form = StripeForm::new()
            .field("customer", "cus_123")
            .field("auto_advance", "false")
            .nested("metadata", "tollgate_tenant_id", "0190-ab")
            .field("description", "Requests & more: 100% €");
        assert_eq!(
            form.encode(),
            "customer=cus_123&auto_advance=false&metadata%5Btollgate_tenant_id%5D=0190-ab\
             &description=Requests%20%26%20more%3A%20100%25%20%E2%82%AC"
        );
    }

    #[test]
    fn the_same_parameters_encode_to_the_same_bytes() {
        let build = || StripeForm::new().field("a", "1").nested("m", "k", "v");
        assert_eq!(build().encode(), build().encode());
        assert_eq!(build(), build());
        assert_eq!(StripeForm::new().encode(), "");
    }
}
