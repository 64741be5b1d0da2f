//! Identifiers as newtypes, so a tenant id can never be passed where a plan id is expected.
//!
//! Database rows use UUIDs (v7 where we mint them, so they sort by creation time). API key ids
//! are short base62 strings because they are part of the key the customer pastes around.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// An identifier string that is not of the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be {expected}")]
pub struct IdParseError {
    kind: &'static str,
    expected: &'static str,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID, e.g. one read from the database.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self).map_err(|_| IdParseError {
                    kind: $kind,
                    expected: "a UUID",
                })
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

uuid_id!(
    /// A tenant: one customer of the platform operator, owning keys, routes and invoices.
    TenantId,
    "tenant id"
);
uuid_id!(
    /// A plan: rate policy, quota and pricing.
    PlanId,
    "plan id"
);
uuid_id!(
    /// A route: host and/or path prefix mapped to an upstream pool.
    RouteId,
    "route id"
);
uuid_id!(
    /// A control-plane user (admin or viewer).
    UserId,
    "user id"
);
uuid_id!(
    /// An invoice for one tenant and one billing period.
    InvoiceId,
    "invoice id"
);
uuid_id!(
    /// A tenant's JWT issuer.
    IssuerId,
    "issuer id"
);
uuid_id!(
    /// A usage event; UUIDv7, and the deduplication key in metering.
    EventId,
    "event id"
);

/// The public id of an API key: [`KeyId::LEN`] base62 characters, stored inline (no allocation
/// on the hot path). It is not secret: it finds the key record, the secret proves possession.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KeyId::LEN]);

impl KeyId {
    /// Number of characters in a key id.
    pub const LEN: usize = 16;

    /// Parses a key id, accepting only exactly [`KeyId::LEN`] ASCII alphanumerics.
    pub fn parse(s: &str) -> Result<Self, IdParseError> {
        let bytes: [u8; Self::LEN] = s.as_bytes().try_into().map_err(|_| Self::error())?;
        if bytes.iter().all(u8::is_ascii_alphanumeric) {
            Ok(Self(bytes))
        } else {
            Err(Self::error())
        }
    }

    pub(crate) const fn from_alphanumeric(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    fn error() -> IdParseError {
        IdParseError {
            kind: "key id",
            expected: "16 ASCII letters or digits",
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // Invariant: only ASCII alphanumerics are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

impl FromStr for KeyId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_round_trip_through_strings_and_json() {
        let id = TenantId::new();
        assert_eq!(id.to_string().parse::<TenantId>(), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), id);
    }

    #[test]
    fn uuid_ids_are_time_ordered() {
        let first = EventId::new();
        let second = EventId::new();
        assert!(first < second);
    }

    #[test]
    fn bad_uuid_names_the_kind_of_id() {
        let err = "nope".parse::<PlanId>().unwrap_err();
        assert_eq!(err.to_string(), "plan id must be a UUID");
    }

    #[test]
    fn key_id_accepts_only_sixteen_alphanumerics() {
        assert_eq!(
            KeyId::parse("AbCdEf0123456789").unwrap().as_str(),
            "AbCdEf0123456789"
        );
        for bad in [
            "",
            "short",
            "AbCdEf01234567890",
            "AbCdEf012345678_",
            "AbCdEf012345678é",
        ] {
            assert!(KeyId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn key_id_deserialization_validates() {
        assert!(serde_json::from_str::<KeyId>("\"AbCdEf0123456789\"").is_ok());
        assert!(serde_json::from_str::<KeyId>("\"AbCd-f0123456789\"").is_err());
    }
}
