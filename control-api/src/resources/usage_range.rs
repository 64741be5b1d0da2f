//! The time range of a usage series: granularity, bounds aligned to it, a bucket limit and
//! the filters, parsed from text so that each bad parameter is a 422 naming it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;

/// The width of a usage bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One UTC day.
    Day,
}

impl Granularity {
    fn parse(raw: &str) -> Result<Self, ApiError> {
        match raw {
            "minute" => Ok(Self::Minute),
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            _ => Err(ApiError::invalid(
                "granularity",
                "must be minute, hour or day",
            )),
        }
    }

    /// The `date_trunc` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// Bucket width in seconds.
    pub const fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }

    /// Most buckets one request may ask for: a day of minutes, a 31-day month of hours, a
    /// bit over a year of days.
    pub const fn max_buckets(self) -> i64 {
        match self {
            Self::Minute => 1440,
            Self::Hour => 744,
            Self::Day => 400,
        }
    }

    /// Buckets shown when `from` is not given.
    const fn default_buckets(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 24,
            Self::Day => 30,
        }
    }

    /// The start of the bucket holding `at`.
    fn floor(self, at: OffsetDateTime) -> Result<OffsetDateTime, ApiError> {
        let secs = at.unix_timestamp();
        OffsetDateTime::from_unix_timestamp(secs - secs.rem_euclid(self.seconds()))
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The first bucket start at or after `at`.
    fn ceil(self, at: OffsetDateTime) -> Result<OffsetDateTime, ApiError> {
        let floor = self.floor(at)?;
        if floor == at {
            Ok(floor)
        } else {
            Ok(floor + time::Duration::seconds(self.seconds()))
        }
    }
}

/// Query parameters of the usage series. Read as text so a bad value is reported against
/// its field.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `minute`, `hour` (default) or `day`.
    #[param(value_type = Option<Granularity>)]
    pub granularity: Option<String>,
    /// RFC 3339 start, rounded down to the granularity (default: the default span before
    /// `to`: 60 minutes, 24 hours or 30 days).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339 end (exclusive), rounded up to the granularity (default: the end of the
    /// current bucket).
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// Only this API key's requests.
    pub key_id: Option<String>,
    /// Only this route's requests.
    #[param(value_type = Option<Uuid>)]
    pub route_id: Option<String>,
    /// Only responses of this class: `1xx` to `5xx`.
    #[param(value_type = Option<String>, pattern = "^[1-5]xx$")]
    pub status_class: Option<String>,
}

/// The validated form of [`UsageQuery`].
#[derive(Debug)]
pub struct SeriesRequest {
    /// Bucket width.
    pub granularity: Granularity,
    /// Start of the first bucket.
    pub from: OffsetDateTime,
    /// End of the last bucket (exclusive).
    pub to: OffsetDateTime,
    /// Only this key.
    pub key_id: Option<String>,
    /// Only this route.
    pub route_id: Option<Uuid>,
    /// Only this status class (1 to 5).
    pub status_class: Option<i16>,
}

fn timestamp(field: &str, raw: &str) -> Result<OffsetDateTime, ApiError> {
    let invalid = || ApiError::invalid(field, "must be an RFC 3339 timestamp with an offset");
    if raw.len() > 64 {
        return Err(invalid());
    }
    let at = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| invalid())?;
    // Far enough for any chart, and keeps bucket arithmetic far from overflow.
    if !(1970..=9000).contains(&at.year()) {
        return Err(ApiError::invalid(
            field,
            "must be between the years 1970 and 9000",
        ));
    }
    Ok(at)
}

impl UsageQuery {
    /// Checks every parameter; defaults are relative to `now`.
    pub fn validate(&self, now: OffsetDateTime) -> Result<SeriesRequest, ApiError> {
        let granularity = self
            .granularity
            .as_deref()
            .map_or(Ok(Granularity::Hour), Granularity::parse)?;
        let bucket = time::Duration::seconds(granularity.seconds());
        let to = match self.to.as_deref() {
            Some(raw) => timestamp("to", raw)?,
            None => granularity.floor(now)? + bucket,
        };
        let from = match self.from.as_deref() {
            Some(raw) => timestamp("from", raw)?,
            None => {
                granularity.floor(to)?
                    - time::Duration::seconds(granularity.seconds() * granularity.default_buckets())
            }
        };
        if from >= to {
            return Err(ApiError::invalid("to", "must be after from"));
        }
        let (from, to) = (granularity.floor(from)?, granularity.ceil(to)?);
        let buckets = (to - from).whole_seconds() / granularity.seconds();
        if buckets > granularity.max_buckets() {
            return Err(ApiError::invalid(
                "from",
                format!(
                    "the range covers {buckets} {} buckets; at most {} are allowed",
                    granularity.as_str(),
                    granularity.max_buckets()
                ),
            ));
        }
        let key_id = self
            .key_id
            .as_deref()
            .map(|raw| {
                tollgate_core::KeyId::parse(raw)
                    .map(|id| id.as_str().to_owned())
                    .map_err(|_| ApiError::invalid("key_id", "is not an API key id"))
            })
            .transpose()?;
        let route_id = self
            .route_id
            .as_deref()
            .map(|raw| {
                raw.parse::<Uuid>()
                    .map_err(|_| ApiError::invalid("route_id", "is not a route id"))
            })
            .transpose()?;
        let status_class = self
            .status_class
            .as_deref()
            .map(|raw| match raw {
                "1xx" => Ok(1),
                "2xx" => Ok(2),
                "3xx" => Ok(3),
                "4xx" => Ok(4),
                "5xx" => Ok(5),
                _ => Err(ApiError::invalid("status_class", "must be 1xx to 5xx")),
            })
            .transpose()?;
        Ok(SeriesRequest {
            granularity,
            from,
            to,
            key_id,
            route_id,
            status_class,
        })
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn query(granularity: &str, from: &str, to: &str) -> UsageQuery {
        UsageQuery {
            granularity: Some(granularity.into()),
            from: Some(from.into()),
            to: Some(to.into()),
            ..UsageQuery::default()
        }
    }

    fn field(error: ApiError) -> Option<String> {
        match error {
            ApiError::InvalidField { field, .. } => field,
            _ => None,
        }
    }

    #[test]
    fn bounds_are_aligned_to_the_granularity() {
        let now = datetime!(2026-11-27 10:17:30 UTC);
        let r = query("hour", "2026-11-27T08:30:00Z", "2026-11-27T10:05:00+00:00")
            .validate(now)
            .unwrap();
        assert_eq!(
            (r.from, r.to),
            (
                datetime!(2026-11-27 08:00 UTC),
                datetime!(2026-11-27 11:00 UTC)
            )
        );
        let r = UsageQuery::default().validate(now).unwrap();
        assert_eq!(r.granularity, Granularity::Hour);
        assert_eq!(
            (r.from, r.to),
            (
                datetime!(2026-11-26 11:00 UTC),
                datetime!(2026-11-27 11:00 UTC)
            )
        );
        // Days are UTC days whatever the offset given.
        let r = query("day", "2026-11-27T01:00:00+02:00", "2026-11-28T00:00:00Z")
            .validate(now)
            .unwrap();
        assert_eq!(r.from, datetime!(2026-11-26 00:00 UTC));
    }

    #[test]
    fn bad_bounds_name_the_field() {
        let now = datetime!(2026-11-27 10:17:30 UTC);
        let cases = [
            (
                query("week", "2026-11-27T08:00:00Z", "2026-11-27T09:00:00Z"),
                "granularity",
            ),
            (query("hour", "yesterday", "2026-11-27T09:00:00Z"), "from"),
            (
                query("hour", "2026-11-27T08:00:00Z", "2026-11-27T09:00:00"),
                "to",
            ),
            (
                query("hour", "2026-11-27T09:00:00Z", "2026-11-27T09:00:00Z"),
                "to",
            ),
            (
                query("minute", "2026-11-26T09:00:00Z", "2026-11-27T09:00:01Z"),
                "from",
            ),
            (
                query("hour", "2026-10-01T00:00:00Z", "2026-11-01T00:00:01Z"),
                "from",
            ),
            (
                query("day", "1969-12-31T00:00:00Z", "1970-01-02T00:00:00Z"),
                "from",
            ),
        ];
        for (q, want) in cases {
            assert_eq!(
                field(q.validate(now).unwrap_err()).as_deref(),
                Some(want),
                "{q:?}"
            );
        }
        assert!(
            query("minute", "2026-11-26T09:00:00Z", "2026-11-27T09:00:00Z")
                .validate(now)
                .is_ok()
        );
    }
}
