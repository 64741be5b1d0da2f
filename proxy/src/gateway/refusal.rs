//! Every early answer of the gateway as one type, and the one place that writes it.
//!
//! A phase of the request path returns a [`Refusal`]; the dispatcher records its outcome and
//! writes it. The body is JSON `{"error":{"code","message"}}` with a Content-Length, and the
//! connection stays open when the request has no unread body.

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderValue;
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use tollgate_core::Outcome;

use crate::limits::LimitDecision;

/// An early answer: status, code, message and what it means for metrics and usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// For humans.
    pub message: Cow<'static, str>,
    /// The usage event's outcome.
    pub outcome: Outcome,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// The limiter's decision, whose rate-limit headers the answer carries (boxed: it would
    /// double the size of every `Result` a phase returns).
    pub limit: Option<Box<LimitDecision>>,
    /// The metric label of a refused credential (more precise than `code`, which must not
    /// tell an unknown key from a wrong secret).
    pub auth_failure: Option<&'static str>,
    /// A failed credential: counts towards the flood guard of its address.
    pub guessing: bool,
    /// Close the connection after answering (the request cannot be trusted to end where it
    /// seems to).
    pub close: bool,
}

impl Refusal {
    /// A refusal with nothing extra.
    pub fn new(
        status: u16,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
        outcome: Outcome,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            outcome,
            retry_after: None,
            limit: None,
            auth_failure: None,
            guessing: false,
            close: false,
        }
    }

    /// A malformed or ambiguous request (400), answered before auth; the connection closes.
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            close: true,
            ..Self::new(400, code, message, Outcome::Rejected)
        }
    }

    /// A refused credential: 401 (guessing, fed to the flood guard) or 403.
    pub fn credential(
        status: u16,
        code: &'static str,
        metric_label: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        let outcome = if status == 403 {
            Outcome::Forbidden
        } else {
            Outcome::Unauthorized
        };
        Self {
            auth_failure: Some(metric_label),
            guessing: status == 401,
            ..Self::new(status, code, message, outcome)
        }
    }

    /// With `Retry-After: seconds`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// With the rate-limit headers of `decision`.
    #[must_use]
    pub fn with_limit(mut self, decision: LimitDecision) -> Self {
        self.limit = Some(Box::new(decision));
        self
    }

    /// The JSON body, written directly (a `serde_json::Value` per refusal cost more than the
    /// rest of a 429).
    pub fn body(&self) -> String {
        let mut body = String::with_capacity(34 + self.code.len() + self.message.len());
        body.push_str("{\"error\":{\"code\":");
        push_json_string(&mut body, self.code);
        body.push_str(",\"message\":");
        push_json_string(&mut body, &self.message);
        body.push_str("}}");
        body
    }

    /// Writes the answer on `session`.
    pub async fn write(
        &self,
        session: &mut Session,
        request_id: HeaderValue,
        keepalive_seconds: u64,
    ) -> Result<()> {
        let body = self.body();
        // Without the case map of header names: every name here is lower case already, and
        // each insert would otherwise go into two maps.
        let mut header = ResponseHeader::build_no_case(self.status, Some(16))?;
        header.insert_header("content-type", "application/json")?;
        header.insert_header("content-length", body.len())?;
        header.insert_header("x-request-id", request_id)?;
        if self.status == 401 {
            header.insert_header("www-authenticate", "Bearer")?;
        }
        if let Some(decision) = &self.limit {
            super::headers::apply_limit_headers(&mut header, decision)?;
        }
        if let Some(seconds) = self.retry_after {
            header.insert_header("retry-after", seconds)?;
        }
        if self.close {
            header.insert_header("connection", "close")?;
            session.set_keepalive(None);
        } else if !request_has_body(session.req_header()) {
            session.set_keepalive(Some(keepalive_seconds));
        }
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
        Ok(())
    }
}

/// Appends `text` as a JSON string literal (RFC 8259 escapes).
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    // Codes and messages are the gateway's own and rarely need an escape: copied whole, they
    // cost a tenth of the character loop.
    if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(text);
        out.push('"');
        return;
    }
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = std::fmt::Write::write_fmt(out, format_args!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn request_has_body(request: &RequestHeader) -> bool {
    request
        .headers
        .get("content-length")
        .is_some_and(|v| v.as_bytes() != b"0")
        || request.headers.contains_key("transfer-encoding")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_with_code_and_message() {
        let refusal = Refusal::new(404, "no_route", "no \"route\"", Outcome::Rejected);
        let body: serde_json::Value = serde_json::from_str(&refusal.body()).unwrap();
        assert_eq!(body["error"]["code"], "no_route");
        assert_eq!(body["error"]["message"], "no \"route\"");
        let odd = Refusal::new(
            400,
            "x",
            "tab\t, back\\slash, bell\u{7}, é",
            Outcome::Rejected,
        );
        let body: serde_json::Value = serde_json::from_str(&odd.body()).unwrap();
        assert_eq!(body["error"]["message"], "tab\t, back\\slash, bell\u{7}, é");
    }

    #[test]
    fn credentials_feed_the_flood_guard_only_when_they_fail() {
        let wrong = Refusal::credential(401, "invalid_api_key", "unknown_api_key", "x");
        assert!(wrong.guessing);
        assert_eq!(wrong.outcome, Outcome::Unauthorized);
        let suspended = Refusal::credential(403, "tenant_suspended", "tenant_suspended", "x");
        assert!(!suspended.guessing);
        assert_eq!(suspended.outcome, Outcome::Forbidden);
    }
}
