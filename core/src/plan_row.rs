//! A `plans` row, decoded once for every reader (the proxy's loader, the control API).
//!
//! The row is taken apart into plain values ([`PlanRow`]) and decoded strictly: the enumerated
//! columns through [`crate::StoredText`] (an unknown `failure_mode` is an error, never `open`),
//! the integers by range, and a quota only with both of its columns. The schema's CHECK
//! constraints already forbid every value refused here; the decoder refuses them anyway, so a
//! row the code does not understand is left out by the reader instead of being guessed at.

use crate::ids::PlanId;
use crate::plan::{FailureMode, Plan, PlanError, PlanSpec, Pricing, Quota, QuotaCap, RatePolicy};
use crate::stored_text::{StoredText, UnknownValue};

/// The columns [`PlanRow::from_row`] reads, in its order; a query may select more after them.
pub const PLAN_COLUMNS: &str = "id, name, rate_per_second, burst, quota_included_requests, \
                                quota_cap, failure_mode, pricing, rate_strict";

/// A `plans` row as stored, before decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRow<'a> {
    /// `id`.
    pub id: PlanId,
    /// `name`.
    pub name: &'a str,
    /// `rate_per_second`.
    pub rate_per_second: i32,
    /// `burst`.
    pub burst: i32,
    /// `rate_strict`.
    pub rate_strict: bool,
    /// `quota_included_requests`; `NULL` together with `quota_cap` for no quota.
    pub quota_included_requests: Option<i64>,
    /// `quota_cap`: `hard` or `soft`.
    pub quota_cap: Option<&'a str>,
    /// `failure_mode`: `open` or `closed`.
    pub failure_mode: &'a str,
    /// `pricing` (JSON).
    pub pricing: serde_json::Value,
}

fn invalid(field: &str, message: impl Into<String>) -> PlanError {
    PlanError {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn unknown(error: UnknownValue) -> PlanError {
    invalid(
        error.column,
        format!(
            "unknown value {:?} (expected {})",
            error.value, error.expected
        ),
    )
}

impl PlanRow<'_> {
    /// The plan's external form; the error names the first column that cannot be decoded.
    /// Range checks beyond the columns' types are [`Plan::new`]'s ([`Self::into_plan`]).
    pub fn decode(self) -> Result<PlanSpec, PlanError> {
        let unsigned = |field: &str, n: i32| {
            u32::try_from(n).map_err(|_| invalid(field, format!("{n} is negative")))
        };
        let rate = RatePolicy {
            requests_per_second: unsigned("rate.requests_per_second", self.rate_per_second)?,
            burst: unsigned("rate.burst", self.burst)?,
            strict: self.rate_strict,
        };
        let quota = match (self.quota_included_requests, self.quota_cap) {
            (None, None) => None,
            (Some(included), Some(cap)) => Some(Quota {
                included_requests: u64::try_from(included).map_err(|_| {
                    invalid("quota.included_requests", format!("{included} is negative"))
                })?,
                cap: QuotaCap::decode(cap).map_err(unknown)?,
            }),
            // No quota would mean unlimited: never guess that from half a quota.
            _ => {
                return Err(invalid(
                    "quota",
                    "quota_included_requests and quota_cap must both be set or both be NULL",
                ));
            }
        };
        let failure_mode = FailureMode::decode(self.failure_mode).map_err(unknown)?;
        let pricing: Pricing = serde_json::from_value(self.pricing)
            .map_err(|error| invalid("pricing", error.to_string()))?;
        Ok(PlanSpec {
            id: self.id,
            name: self.name.to_owned(),
            rate,
            quota,
            failure_mode,
            pricing,
        })
    }

    /// The validated plan.
    pub fn into_plan(self) -> Result<Plan, PlanError> {
        Plan::new(self.decode()?)
    }
}

#[cfg(feature = "db")]
impl<'a> PlanRow<'a> {
    /// Takes apart a row whose first columns are [`PLAN_COLUMNS`]; a column of the wrong type
    /// is an error naming it, not a panic.
    pub fn from_row(row: &'a tokio_postgres::Row) -> Result<Self, PlanError> {
        fn column<'r, T: tokio_postgres::types::FromSql<'r>>(
            row: &'r tokio_postgres::Row,
            index: usize,
            name: &str,
        ) -> Result<T, PlanError> {
            row.try_get(index)
                .map_err(|error| invalid(name, error.to_string()))
        }
        Ok(Self {
            id: PlanId::from_uuid(column(row, 0, "id")?),
            name: column(row, 1, "name")?,
            rate_per_second: column(row, 2, "rate_per_second")?,
            burst: column(row, 3, "burst")?,
            quota_included_requests: column(row, 4, "quota_included_requests")?,
            quota_cap: column(row, 5, "quota_cap")?,
            failure_mode: column(row, 6, "failure_mode")?,
            pricing: column(row, 7, "pricing")?,
            rate_strict: column(row, 8, "rate_strict")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn row() -> PlanRow<'static> {
        PlanRow {
            id: PlanId::new(),
            name: "Growth",
            rate_per_second: 100,
            burst: 200,
            rate_strict: false,
            quota_included_requests: Some(1000),
            quota_cap: Some("hard"),
            failure_mode: "closed",
            pricing: serde_json::json!({"currency": "USD", "base_fee_minor": 4900, "model": "flat"}),
        }
    }

    #[test]
    fn a_stored_plan_decodes_to_its_limits() {
        let plan = row().into_plan().unwrap();
        assert_eq!(plan.rate().requests_per_second, 100);
        assert_eq!(
            plan.quota(),
            Some(Quota {
                included_requests: 1000,
                cap: QuotaCap::Hard
            })
        );
        assert_eq!(plan.failure_mode(), FailureMode::Closed);
    }

    #[test]
    fn an_unknown_failure_mode_is_refused_not_read_as_open() {
        let error = PlanRow {
            failure_mode: "half_open",
            ..row()
        }
        .decode()
        .unwrap_err();
        assert_eq!(error.field, "failure_mode");
        assert!(error.message.contains("\"half_open\""), "{error}");
    }

    #[test]
    fn an_unknown_quota_cap_is_refused_not_read_as_soft() {
        let error = PlanRow {
            quota_cap: Some("Hard"),
            ..row()
        }
        .decode()
        .unwrap_err();
        assert_eq!(error.field, "quota_cap");
    }

    #[test]
    fn half_a_quota_is_refused_not_read_as_unlimited() {
        for (included, cap) in [(Some(5), None), (None, Some("hard"))] {
            let error = PlanRow {
                quota_included_requests: included,
                quota_cap: cap,
                ..row()
            }
            .decode()
            .unwrap_err();
            assert_eq!(error.field, "quota");
        }
        let unlimited = PlanRow {
            quota_included_requests: None,
            quota_cap: None,
            ..row()
        };
        assert_eq!(unlimited.decode().unwrap().quota, None);
    }

    #[test]
    fn negative_numbers_and_bad_pricing_are_named() {
        let field = |row: PlanRow<'_>| row.decode().unwrap_err().field;
        assert_eq!(
            field(PlanRow {
                rate_per_second: -1,
                ..row()
            }),
            "rate.requests_per_second"
        );
        assert_eq!(field(PlanRow { burst: -1, ..row() }), "rate.burst");
        assert_eq!(
            field(PlanRow {
                quota_included_requests: Some(-1),
                ..row()
            }),
            "quota.included_requests"
        );
        assert_eq!(
            field(PlanRow {
                pricing: serde_json::json!({"model": "flat"}),
                ..row()
            }),
            "pricing"
        );
    }

    proptest! {
        /// A plan stored the way the control API stores it reads back as the same plan.
        #[test]
        fn a_stored_plan_reads_back_unchanged(
            rate in 1i32..1_000_000, burst in 1i32..1_000_000, strict in any::<bool>(),
            quota in proptest::option::of((1i64..i64::MAX, any::<bool>())),
            closed in any::<bool>(),
        ) {
            let cap = quota.map(|(_, hard)| if hard { QuotaCap::Hard } else { QuotaCap::Soft });
            let failure_mode = if closed { FailureMode::Closed } else { FailureMode::Open };
            let row = PlanRow {
                rate_per_second: rate,
                burst,
                rate_strict: strict,
                quota_included_requests: quota.map(|(n, _)| n),
                quota_cap: cap.map(StoredText::as_str),
                failure_mode: failure_mode.as_str(),
                ..row()
            };
            let spec = row.decode().unwrap();
            prop_assert_eq!(i64::from(spec.rate.requests_per_second), i64::from(rate));
            prop_assert_eq!(i64::from(spec.rate.burst), i64::from(burst));
            prop_assert_eq!(spec.rate.strict, strict);
            prop_assert_eq!(spec.quota.map(|q| (q.included_requests, q.cap)),
                quota.map(|(n, _)| u64::try_from(n).unwrap()).zip(cap));
            prop_assert_eq!(spec.failure_mode, failure_mode);
        }
    }
}
