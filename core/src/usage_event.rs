//! The usage event: one per request that reached authentication, as CloudEvents 1.0 JSON.
//!
//! The wire form is structured-mode CloudEvents with `type` = [`TYPE_V1`]; the `type` carries
//! the schema version. Decoders accept every version they know and report anything else as
//! [`EventDecodeError::UnknownType`] so metering can route it to the dead-letter topic.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{EventId, KeyId, RouteId, TenantId};

/// CloudEvents spec version we write and read.
pub const SPEC_VERSION: &str = "1.0";
/// Event type, and schema version, of a proxied-request usage event.
pub const TYPE_V1: &str = "tollgate.request.v1";
/// Largest encoded event a decoder accepts; real events are a few hundred bytes.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// What the gateway did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Forwarded to the upstream, which answered.
    Proxied,
    /// Missing, malformed, unknown, revoked or expired credential (401).
    Unauthorized,
    /// Suspended tenant or missing scope (403).
    Forbidden,
    /// Over the plan's request rate (429).
    RateLimited,
    /// Over the hard monthly quota (429).
    QuotaExceeded,
    /// Refused by the gateway for another client error (no route, body too large).
    Rejected,
    /// The upstream could not be reached or timed out (502/504).
    UpstreamError,
}

impl Outcome {
    /// Whether the request counts towards usage that is billed.
    pub const fn is_billable(self) -> bool {
        matches!(self, Self::Proxied)
    }

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Proxied => "proxied",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Rejected => "rejected",
            Self::UpstreamError => "upstream_error",
        }
    }
}

/// The `data` of a v1 usage event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageData {
    /// The API key used, if one was recognised.
    pub key_id: Option<KeyId>,
    /// The route matched, if any.
    pub route_id: Option<RouteId>,
    /// HTTP method.
    pub method: String,
    /// Status code sent to the client.
    pub status: u16,
    /// What the gateway did.
    pub outcome: Outcome,
    /// Bytes received from the client (headers and body).
    pub request_bytes: u64,
    /// Bytes sent to the client (headers and body).
    pub response_bytes: u64,
    /// Time spent waiting on the upstream, if it was called.
    pub upstream_latency_us: Option<u64>,
    /// Time from first byte in to last byte out.
    pub total_latency_us: u64,
}

impl UsageData {
    /// Values that parse but cannot be real: a status outside 100–599, counters beyond what
    /// the database's signed 64-bit columns hold.
    fn validate(&self) -> Result<(), EventDecodeError> {
        if !(100..=599).contains(&self.status) {
            return Err(EventDecodeError::Malformed(format!(
                "data.status {} is not an HTTP status code",
                self.status
            )));
        }
        let counters = [
            ("data.request_bytes", Some(self.request_bytes)),
            ("data.response_bytes", Some(self.response_bytes)),
            ("data.upstream_latency_us", self.upstream_latency_us),
            ("data.total_latency_us", Some(self.total_latency_us)),
        ];
        for (field, value) in counters {
            if value.is_some_and(|v| i64::try_from(v).is_err()) {
                return Err(EventDecodeError::Malformed(format!(
                    "{field} is out of range"
                )));
            }
        }
        if self.method.is_empty()
            || self.method.len() > 32
            || !self.method.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(EventDecodeError::Malformed(
                "data.method is not an HTTP method".into(),
            ));
        }
        Ok(())
    }
}

/// A usage event (v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    /// Unique id (UUIDv7): the deduplication key.
    pub id: EventId,
    /// The emitting proxy instance.
    pub source: Arc<str>,
    /// When the request arrived.
    pub time: OffsetDateTime,
    /// The tenant, when authentication got far enough to know it.
    pub tenant_id: Option<TenantId>,
    /// Request details.
    pub data: UsageData,
}

/// Why bytes are not a usage event we can store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventDecodeError {
    /// Not JSON, or missing or mistyped fields.
    #[error("malformed usage event: {0}")]
    Malformed(String),
    /// A CloudEvents version other than 1.0.
    #[error("unsupported CloudEvents specversion {0:?}")]
    UnsupportedSpecVersion(String),
    /// A type (and so schema version) this build does not know.
    #[error("unknown usage event type {0:?}")]
    UnknownType(String),
    /// Larger than any real event.
    #[error("usage event of {0} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")]
    TooLarge(usize),
}

impl EventDecodeError {
    /// A stable, machine-readable reason (used in dead-letter headers).
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnsupportedSpecVersion(_) => "unsupported_specversion",
            Self::UnknownType(_) => "unknown_type",
            Self::TooLarge(_) => "too_large",
        }
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    specversion: &'static str,
    id: EventId,
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<TenantId>,
    datacontenttype: &'static str,
    data: &'a UsageData,
}

#[derive(Deserialize)]
struct WireIn {
    specversion: String,
    id: EventId,
    source: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
    #[serde(default)]
    subject: Option<TenantId>,
    data: UsageData,
}

/// Just enough of any CloudEvent to say why a full decode failed.
#[derive(Deserialize)]
struct Envelope {
    specversion: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl UsageEvent {
    /// Appends the JSON encoding to `buf` (reuse one buffer to avoid allocating per event).
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        let wire = WireOut {
            specversion: SPEC_VERSION,
            id: self.id,
            source: &self.source,
            kind: TYPE_V1,
            time: self.time,
            subject: self.tenant_id,
            datacontenttype: "application/json",
            data: &self.data,
        };
        // Serialising plain structs into a Vec cannot fail: no maps with non-string keys,
        // no I/O, and every timestamp we create is within RFC 3339's range.
        if serde_json::to_writer(&mut *buf, &wire).is_err() {
            debug_assert!(false, "usage event serialisation failed");
        }
    }

    /// The JSON encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(512);
        self.encode_into(&mut buf);
        buf
    }

    /// Decodes a v1 event, or says precisely why not.
    pub fn decode(bytes: &[u8]) -> Result<Self, EventDecodeError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventDecodeError::TooLarge(bytes.len()));
        }
        match serde_json::from_slice::<WireIn>(bytes) {
            Ok(wire) if wire.specversion == SPEC_VERSION && wire.kind == TYPE_V1 => {
                wire.data.validate()?;
                Ok(Self {
                    id: wire.id,
                    source: wire.source.into(),
                    time: wire.time,
                    tenant_id: wire.subject,
                    data: wire.data,
                })
            }
            Ok(wire) if wire.specversion != SPEC_VERSION => {
                Err(EventDecodeError::UnsupportedSpecVersion(wire.specversion))
            }
            Ok(wire) => Err(EventDecodeError::UnknownType(wire.kind)),
            Err(full) => Err(Self::diagnose(bytes, full)),
        }
    }

    fn diagnose(bytes: &[u8], full: serde_json::Error) -> EventDecodeError {
        match serde_json::from_slice::<Envelope>(bytes) {
            Ok(Envelope {
                specversion: Some(v),
                ..
            }) if v != SPEC_VERSION => EventDecodeError::UnsupportedSpecVersion(v),
            Ok(Envelope { kind: Some(k), .. }) if k != TYPE_V1 => EventDecodeError::UnknownType(k),
            _ => EventDecodeError::Malformed(full.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    fn event() -> UsageEvent {
        UsageEvent {
            id: EventId::new(),
            source: Arc::from("tollgate-proxy/node-1"),
            time: datetime!(2026-11-27 10:15:30.123456 UTC),
            tenant_id: Some(TenantId::new()),
            data: UsageData {
                key_id: Some(KeyId::parse("AbCdEf0123456789").unwrap()),
                route_id: Some(RouteId::new()),
                method: "POST".into(),
                status: 201,
                outcome: Outcome::Proxied,
                request_bytes: 512,
                response_bytes: 2048,
                upstream_latency_us: Some(1234),
                total_latency_us: 1500,
            },
        }
    }

    #[test]
    fn round_trips() {
        let e = event();
        assert_eq!(UsageEvent::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn unauthenticated_event_has_no_subject_and_round_trips() {
        let mut e = event();
        e.tenant_id = None;
        e.data.key_id = None;
        e.data.outcome = Outcome::Unauthorized;
        e.data.status = 401;
        let bytes = e.encode();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(json.get("subject").is_none());
        assert_eq!(UsageEvent::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn wire_form_is_a_cloudevent() {
        let e = event();
        let json: serde_json::Value = serde_json::from_slice(&e.encode()).unwrap();
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "tollgate.request.v1");
        assert_eq!(json["id"], e.id.to_string());
        assert_eq!(json["subject"], e.tenant_id.unwrap().to_string());
        assert_eq!(json["time"], "2026-11-27T10:15:30.123456Z");
        assert_eq!(json["datacontenttype"], "application/json");
        assert_eq!(json["data"]["outcome"], "proxied");
        assert_eq!(json["data"]["key_id"], "AbCdEf0123456789");
    }

    #[test]
    fn unknown_type_is_reported_as_such() {
        let mut json: serde_json::Value = serde_json::from_slice(&event().encode()).unwrap();
        json["type"] = "tollgate.request.v2".into();
        let err = UsageEvent::decode(json.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            err,
            EventDecodeError::UnknownType("tollgate.request.v2".into())
        );
        assert_eq!(err.code(), "unknown_type");

        // Even when the unknown version's data no longer fits v1.
        json["data"] = serde_json::json!({"completely": "different"});
        let err = UsageEvent::decode(json.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.code(), "unknown_type");
    }

    #[test]
    fn other_specversion_is_reported() {
        let mut json: serde_json::Value = serde_json::from_slice(&event().encode()).unwrap();
        json["specversion"] = "0.3".into();
        let err = UsageEvent::decode(json.to_string().as_bytes()).unwrap_err();
        assert_eq!(err, EventDecodeError::UnsupportedSpecVersion("0.3".into()));
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        for bad in [
            &b"not json"[..],
            br#"{"specversion":"1.0","type":"tollgate.request.v1"}"#,
            br#"[]"#,
        ] {
            let err = UsageEvent::decode(bad).unwrap_err();
            assert_eq!(err.code(), "malformed", "{err}");
        }
        let mut json: serde_json::Value = serde_json::from_slice(&event().encode()).unwrap();
        json["data"]["status"] = "two hundred".into();
        let err = UsageEvent::decode(json.to_string().as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("status") || err.to_string().contains("u16"),
            "{err}"
        );
    }

    #[test]
    fn impossible_values_are_malformed() {
        let mut e = event();
        e.data.status = 99;
        assert!(
            UsageEvent::decode(&e.encode())
                .unwrap_err()
                .to_string()
                .contains("data.status")
        );
        let mut e = event();
        e.data.response_bytes = u64::MAX;
        let err = UsageEvent::decode(&e.encode()).unwrap_err();
        assert!(err.to_string().contains("data.response_bytes"), "{err}");
        let mut e = event();
        e.data.method = "GET /".into();
        assert_eq!(
            UsageEvent::decode(&e.encode()).unwrap_err().code(),
            "malformed"
        );
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert_eq!(
            UsageEvent::decode(&big).unwrap_err(),
            EventDecodeError::TooLarge(MAX_EVENT_BYTES + 1)
        );
    }

    #[test]
    fn only_proxied_requests_are_billable() {
        assert!(Outcome::Proxied.is_billable());
        assert!(!Outcome::RateLimited.is_billable());
        assert!(!Outcome::Unauthorized.is_billable());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = UsageEvent::decode(&bytes);
        }

        #[test]
        fn any_field_values_round_trip(status in 100u16..600, req in 0..=i64::MAX.unsigned_abs(), resp in 0..=i64::MAX.unsigned_abs(),
                                        up in proptest::option::of(0..=i64::MAX.unsigned_abs()), total in 0..=i64::MAX.unsigned_abs(),
                                        method in "[A-Z]{1,10}") {
            let mut e = event();
            e.data.status = status;
            e.data.request_bytes = req;
            e.data.response_bytes = resp;
            e.data.upstream_latency_us = up;
            e.data.total_latency_us = total;
            e.data.method = method;
            prop_assert_eq!(UsageEvent::decode(&e.encode()).unwrap(), e);
        }
    }
}
