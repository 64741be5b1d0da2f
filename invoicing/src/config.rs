//! The validated configuration, separate from its command-line form: `main` parses flags and
//! `TOLLGATE_*` variables with clap into [`Settings`], and [`Config::from_settings`] checks
//! them, naming the bad setting and never echoing a secret.

use std::time::Duration;

use time::OffsetDateTime;
use tollgate_core::rating::BillingPeriod;
use uuid::Uuid;

/// PostgreSQL URL.
pub const ENV_DATABASE_URL: &str = "TOLLGATE_DATABASE_URL";
/// Hours `hourly` recomputes besides the dirty ones.
pub const ENV_LOOKBACK_HOURS: &str = "TOLLGATE_INVOICING_LOOKBACK_HOURS";
/// Months back `monthly` looks for late usage to correct.
pub const ENV_CORRECTION_LOOKBACK_MONTHS: &str = "TOLLGATE_INVOICING_CORRECTION_LOOKBACK_MONTHS";
/// Connections (workers) `monthly` invoices tenants on in parallel.
pub const ENV_WORKERS: &str = "TOLLGATE_INVOICING_WORKERS";
/// Test only: stop at a named point (`<point>` or `<point>:<n>` for its n-th time) and wait
/// to be killed, so crash tests can SIGKILL the real process between two steps.
pub const ENV_TEST_FAULT: &str = "TOLLGATE_INVOICING_TEST_FAULT";

/// Longest lookback `hourly` accepts (31 days).
pub const MAX_LOOKBACK_HOURS: u32 = 744;

/// A setting that is missing or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The flag or environment variable.
    pub setting: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        message: message.into(),
    }
}

/// The command line as parsed, before validation.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `--database-url` / `TOLLGATE_DATABASE_URL`.
    pub database_url: Option<String>,
    /// The subcommand.
    pub command: CommandSettings,
    /// `TOLLGATE_INVOICING_TEST_FAULT`.
    pub test_fault: Option<String>,
}

/// A subcommand's flags, before validation.
#[derive(Debug, Clone)]
pub enum CommandSettings {
    /// `hourly`.
    Hourly {
        /// `--lookback-hours`.
        lookback_hours: u32,
    },
    /// `monthly`.
    Monthly {
        /// `--period YYYY-MM`.
        period: Option<String>,
        /// `--tenant ID`.
        tenant: Option<String>,
        /// `--dry-run`.
        dry_run: bool,
        /// `--allow-open-period`.
        allow_open_period: bool,
        /// `--correction-lookback-months`.
        correction_lookback_months: u32,
        /// `--workers`.
        workers: usize,
    },
}

impl Default for CommandSettings {
    fn default() -> Self {
        Self::Hourly { lookback_hours: 48 }
    }
}

/// A named point where a test may stop the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPoint {
    /// The point's name (`draft-uncommitted`, `draft-committed`, `finalized`, `hour-rolled`).
    pub name: String,
    /// Stop the n-th time it is reached (from 1).
    pub nth: u32,
}

/// Points a fault may name.
pub const FAULT_POINTS: &[&str] = &[
    "draft-uncommitted",
    "draft-committed",
    "finalized",
    "hour-rolled",
];

/// `monthly`'s validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthlyConfig {
    /// The month to invoice.
    pub period: BillingPeriod,
    /// Only this tenant.
    pub tenant: Option<Uuid>,
    /// Rate and print, write nothing.
    pub dry_run: bool,
    /// Invoices of earlier periods within this many months are checked for late usage.
    pub correction_lookback_months: u32,
    /// Tenants are invoiced on this many connections at once.
    pub workers: usize,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Roll usage up into hours.
    Hourly {
        /// Closed hours recomputed besides the dirty ones.
        lookback_hours: u32,
    },
    /// Invoice a month.
    Monthly(MonthlyConfig),
}

/// The database URL; `Debug` hides it (it carries the password).
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

impl DatabaseUrl {
    /// The URL.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// PostgreSQL.
    pub database_url: DatabaseUrl,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Upper bound of one statement; a wedged server must not hold a CronJob forever.
    pub statement_timeout: Duration,
    /// What to run.
    pub command: Command,
    /// Test-only stop point.
    pub fault: Option<FaultPoint>,
}

impl Config {
    /// Validates `settings`; `now` decides the default period and what is still open.
    pub fn from_settings(settings: Settings, now: OffsetDateTime) -> Result<Self, ConfigError> {
        let database_url = settings
            .database_url
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| invalid(ENV_DATABASE_URL, "required"))?;
        database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|_| invalid(ENV_DATABASE_URL, "is not a PostgreSQL connection URL"))?;
        let command = match settings.command {
            CommandSettings::Hourly { lookback_hours } => {
                if !(1..=MAX_LOOKBACK_HOURS).contains(&lookback_hours) {
                    return Err(invalid(
                        "--lookback-hours",
                        format!("must be between 1 and {MAX_LOOKBACK_HOURS}"),
                    ));
                }
                Command::Hourly { lookback_hours }
            }
            CommandSettings::Monthly {
                period,
                tenant,
                dry_run,
                allow_open_period,
                correction_lookback_months,
                workers,
            } => {
                let current = BillingPeriod::containing(now)
                    .map_err(|e| invalid("--period", e.to_string()))?;
                let period = match period {
                    Some(text) => BillingPeriod::parse(&text)
                        .map_err(|e| invalid("--period", e.to_string()))?,
                    None => current
                        .previous()
                        .map_err(|e| invalid("--period", e.to_string()))?,
                };
                if period > current {
                    return Err(invalid("--period", format!("{period} has not started yet")));
                }
                if period == current && !allow_open_period {
                    return Err(invalid(
                        "--period",
                        format!(
                            "{period} is still open; invoicing it is for tests and previews \
                             (--allow-open-period)"
                        ),
                    ));
                }
                let tenant = tenant
                    .map(|t| {
                        t.trim()
                            .parse::<Uuid>()
                            .map_err(|_| invalid("--tenant", "is not a tenant id (UUID)"))
                    })
                    .transpose()?;
                if correction_lookback_months > 120 {
                    return Err(invalid(
                        ENV_CORRECTION_LOOKBACK_MONTHS,
                        "must be at most 120",
                    ));
                }
                if !(1..=32).contains(&workers) {
                    return Err(invalid(ENV_WORKERS, "must be between 1 and 32"));
                }
                // A fault point stops one process at one place: only with one connection.
                let workers = if settings.test_fault.is_some() {
                    1
                } else {
                    workers
                };
                Command::Monthly(MonthlyConfig {
                    period,
                    tenant,
                    dry_run,
                    correction_lookback_months,
                    workers,
                })
            }
        };
        let fault = settings.test_fault.map(|f| parse_fault(&f)).transpose()?;
        Ok(Self {
            database_url: DatabaseUrl(database_url),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(600),
            command,
            fault,
        })
    }
}

fn parse_fault(text: &str) -> Result<FaultPoint, ConfigError> {
    let (name, nth) = match text.split_once(':') {
        Some((name, n)) => (
            name,
            n.parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid(ENV_TEST_FAULT, "the count after ':' must be at least 1"))?,
        ),
        None => (text, 1),
    };
    if !FAULT_POINTS.contains(&name) {
        return Err(invalid(
            ENV_TEST_FAULT,
            format!("unknown point; one of {}", FAULT_POINTS.join(", ")),
        ));
    }
    Ok(FaultPoint {
        name: name.to_owned(),
        nth,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn monthly(period: Option<&str>, allow_open_period: bool) -> Settings {
        Settings {
            database_url: Some("postgres://u@127.0.0.1:5432/db".into()),
            command: CommandSettings::Monthly {
                period: period.map(str::to_owned),
                tenant: None,
                dry_run: false,
                allow_open_period,
                correction_lookback_months: 12,
                workers: 4,
            },
            test_fault: None,
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-12-01 00:00:05 UTC);

    #[test]
    fn the_default_period_is_the_month_that_just_closed() {
        let config = Config::from_settings(monthly(None, false), NOW).unwrap();
        let Command::Monthly(m) = config.command else {
            panic!("monthly")
        };
        assert_eq!(m.period.to_string(), "2026-11");
        let config = Config::from_settings(monthly(Some("2026-01"), false), NOW).unwrap();
        let Command::Monthly(m) = config.command else {
            panic!("monthly")
        };
        assert_eq!(m.period.start(), datetime!(2026-01-01 00:00 UTC));
    }

    #[test]
    fn open_and_future_periods_are_refused_unless_allowed() {
        let err = Config::from_settings(monthly(Some("2026-12"), false), NOW).unwrap_err();
        assert_eq!(err.setting, "--period");
        assert!(Config::from_settings(monthly(Some("2026-12"), true), NOW).is_ok());
        let err = Config::from_settings(monthly(Some("2027-01"), true), NOW).unwrap_err();
        assert!(err.message.contains("not started"), "{err}");
        let err = Config::from_settings(monthly(Some("2026-13"), true), NOW).unwrap_err();
        assert_eq!(err.setting, "--period");
    }

    #[test]
    fn bad_settings_are_named_and_secrets_never_echoed() {
        let mut settings = monthly(None, false);
        settings.database_url = Some("postgres://u:hunter2@[::1".into());
        let err = Config::from_settings(settings, NOW).unwrap_err();
        assert_eq!(err.setting, ENV_DATABASE_URL);
        assert!(!err.to_string().contains("hunter2"));
        let config = Config::from_settings(monthly(None, false), NOW).unwrap();
        assert!(!format!("{config:?}").contains("127.0.0.1"));
        let mut settings = monthly(None, false);
        settings.database_url = None;
        assert_eq!(
            Config::from_settings(settings, NOW).unwrap_err().setting,
            ENV_DATABASE_URL
        );
        let settings = Settings {
            command: CommandSettings::Hourly { lookback_hours: 0 },
            ..monthly(None, false)
        };
        assert_eq!(
            Config::from_settings(settings, NOW).unwrap_err().setting,
            "--lookback-hours"
        );
    }

    #[test]
    fn fault_points_are_known_names_with_an_optional_count() {
        assert_eq!(
            parse_fault("draft-committed:2").unwrap(),
            FaultPoint {
                name: "draft-committed".into(),
                nth: 2
            }
        );
        assert_eq!(parse_fault("finalized").unwrap().nth, 1);
        assert!(parse_fault("nowhere").is_err());
        assert!(parse_fault("finalized:0").is_err());
    }
}
