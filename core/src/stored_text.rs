//! Enumerations as the database stores them: CHECKed text columns (`quota_cap`,
//! `failure_mode`, `tenants.status`), decoded by `FromStr` that refuses any value it does not
//! know. The schema's CHECK constraints already forbid other values; decoding is strict
//! anyway, because a value the code does not know (a newer schema, a hand-edited row) must
//! never be read as a permissive default such as `soft` or `open`.

use std::fmt;

use crate::plan::{FailureMode, QuotaCap};
use crate::tenant::TenantStatus;

/// A stored text value that is none of its column's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column}: unknown value {value:?} (expected {expected})")]
pub struct UnknownValue {
    /// The column (or field) the value came from.
    pub column: &'static str,
    /// The value, cut to 64 characters.
    pub value: String,
    /// The values the column may hold, `a, b or c`.
    pub expected: String,
}

/// An enumeration with one text form per variant, as stored and as serialised.
pub trait StoredText: Copy + PartialEq + 'static {
    /// The column its values are stored in, for errors.
    const COLUMN: &'static str;
    /// Every variant with its text form.
    const VALUES: &'static [(Self, &'static str)];

    /// The stored text form.
    fn as_str(self) -> &'static str {
        Self::VALUES
            .iter()
            .find(|(variant, _)| *variant == self)
            .map_or("", |(_, text)| text)
    }

    /// The variant whose text form is exactly `text` (case-sensitive, as CHECK compares).
    fn decode(text: &str) -> Result<Self, UnknownValue> {
        Self::VALUES
            .iter()
            .find(|(_, known)| *known == text)
            .map(|(variant, _)| *variant)
            .ok_or_else(|| unknown::<Self>(text))
    }
}

fn unknown<T: StoredText>(text: &str) -> UnknownValue {
    let names: Vec<&str> = T::VALUES.iter().map(|(_, text)| *text).collect();
    let expected = match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    UnknownValue {
        column: T::COLUMN,
        value: text.chars().take(64).collect(),
        expected,
    }
}

/// `Display` and `FromStr` from [`StoredText`], for each stored enumeration.
macro_rules! stored_text_impls {
    ($($ty:ty),+ $(,)?) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(StoredText::as_str(*self))
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownValue;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                <$ty as StoredText>::decode(text)
            }
        }
    )+};
}

impl StoredText for QuotaCap {
    const COLUMN: &'static str = "quota_cap";
    const VALUES: &'static [(Self, &'static str)] = &[(Self::Hard, "hard"), (Self::Soft, "soft")];
}

impl StoredText for FailureMode {
    const COLUMN: &'static str = "failure_mode";
    const VALUES: &'static [(Self, &'static str)] =
        &[(Self::Open, "open"), (Self::Closed, "closed")];
}

impl StoredText for TenantStatus {
    const COLUMN: &'static str = "status";
    const VALUES: &'static [(Self, &'static str)] =
        &[(Self::Active, "active"), (Self::Suspended, "suspended")];
}

stored_text_impls!(QuotaCap, FailureMode, TenantStatus);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every variant's text form decodes to it and matches its serde form.
    fn round_trips<T>()
    where
        T: StoredText + fmt::Debug + serde::Serialize + std::str::FromStr<Err = UnknownValue>,
    {
        for (variant, text) in T::VALUES {
            assert_eq!(text.parse::<T>(), Ok(*variant));
            assert_eq!(variant.as_str(), *text);
            assert_eq!(serde_json::to_value(variant).unwrap(), *text);
        }
    }

    #[test]
    fn every_stored_value_round_trips_and_matches_its_json_form() {
        round_trips::<QuotaCap>();
        round_trips::<FailureMode>();
        round_trips::<TenantStatus>();
    }

    #[test]
    fn an_unknown_value_is_refused_naming_the_column_and_the_choices() {
        let error = "half_open".parse::<FailureMode>().unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"failure_mode: unknown value "half_open" (expected open or closed)"#
        );
        assert!("Hard".parse::<QuotaCap>().is_err(), "case-sensitive");
        assert!("".parse::<TenantStatus>().is_err());
        assert!(" active".parse::<TenantStatus>().is_err());
    }

    proptest! {
        /// Nothing but the exact text forms decodes: no value falls back to a default.
        #[test]
        fn only_the_known_text_forms_decode(text in "\\PC{0,12}") {
            prop_assert_eq!(text.parse::<QuotaCap>().is_ok(), ["hard", "soft"].contains(&text.as_str()));
            prop_assert_eq!(text.parse::<FailureMode>().is_ok(), ["open", "closed"].contains(&text.as_str()));
            prop_assert_eq!(
                text.parse::<TenantStatus>().is_ok(),
                ["active", "suspended"].contains(&text.as_str())
            );
        }

        #[test]
        fn the_value_in_an_error_is_bounded(text in "[a-z]{65,200}") {
            let error = text.parse::<FailureMode>().unwrap_err();
            prop_assert_eq!(error.value.chars().count(), 64);
        }
    }
}
