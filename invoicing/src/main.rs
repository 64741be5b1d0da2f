//! `tollgate-invoicing hourly|monthly`: run once and exit, as a Kubernetes CronJob does.
//!
//! Exit codes, for the CronJob's retries: 0 done; 75 (`EX_TEMPFAIL`) a failure a retry can fix
//! (database unreachable, a transaction lost a race); 65 (`EX_DATAERR`) some tenants could not
//! be rated from their data (a retry will not help; the log names them); 78 (`EX_CONFIG`) bad
//! configuration. Logs are JSON on stderr; `--dry-run`'s table goes to stdout.
//!
//! After either job, finalized invoices are delivered (Stripe, email, documents) by the
//! channels configured with `TOLLGATE_STRIPE_*`, `TOLLGATE_SMTP_*` and `TOLLGATE_S3_*`; a
//! failed step is recorded on its invoice and retried by the next run.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use time::OffsetDateTime;
use tokio_postgres::NoTls;
use tollgate_invoicing::config::{
    Command as Run, CommandSettings, Config, ENV_CORRECTION_LOOKBACK_MONTHS, ENV_DATABASE_URL,
    ENV_LOOKBACK_HOURS, ENV_TEST_FAULT, ENV_WORKERS, Settings,
};
use tollgate_invoicing::delivery::Deliverer;
use tollgate_invoicing::delivery::settings::deliverer_from;
use tollgate_invoicing::job::{self, Faults};

/// Most invoices one run delivers (oldest first); the next run takes the rest.
const DELIVERY_BATCH: i64 = 10_000;

/// Done.
const EXIT_OK: u8 = 0;
/// Some tenants' data cannot be rated; retrying will not help.
const EXIT_DATA: u8 = 65;
/// A retry can fix it (database unreachable).
const EXIT_RETRYABLE: u8 = 75;
/// Bad configuration.
const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(name = "tollgate-invoicing", version, about)]
struct Cli {
    /// PostgreSQL connection URL.
    #[arg(long, env = ENV_DATABASE_URL, hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// Validate the configuration and exit.
    #[arg(long, global = true)]
    check_config: bool,
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Recompute usage_hour from usage_minute for closed hours (the window and every late one).
    Hourly {
        /// Closed hours recomputed besides those marked dirty by late usage.
        #[arg(long, env = ENV_LOOKBACK_HOURS, default_value_t = 48)]
        lookback_hours: u32,
    },
    /// Invoice every tenant with a subscription in the period: one invoice each, exactly once.
    Monthly {
        /// The UTC month to invoice, YYYY-MM (default: the month that just closed).
        #[arg(long)]
        period: Option<String>,
        /// Only this tenant (id).
        #[arg(long)]
        tenant: Option<String>,
        /// Rate and print a table of what would be created; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow invoicing the current, still open month (tests and previews only).
        #[arg(long)]
        allow_open_period: bool,
        /// Earlier invoices within this many months are checked for late usage to correct.
        #[arg(long, env = ENV_CORRECTION_LOOKBACK_MONTHS, default_value_t = 12)]
        correction_lookback_months: u32,
        /// Tenants invoiced at once, each on its own PostgreSQL connection.
        #[arg(long, env = ENV_WORKERS, default_value_t = 4)]
        workers: usize,
    },
}

fn settings(cli: Cli) -> Settings {
    Settings {
        database_url: cli.database_url,
        command: match cli.command {
            CliCommand::Hourly { lookback_hours } => CommandSettings::Hourly { lookback_hours },
            CliCommand::Monthly {
                period,
                tenant,
                dry_run,
                allow_open_period,
                correction_lookback_months,
                workers,
            } => CommandSettings::Monthly {
                period,
                tenant,
                dry_run,
                allow_open_period,
                correction_lookback_months,
                workers,
            },
        },
        test_fault: std::env::var(ENV_TEST_FAULT).ok().filter(|v| !v.is_empty()),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let check_only = cli.check_config;
    let config = match Config::from_settings(settings(cli), OffsetDateTime::now_utc()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Delivery channels (Stripe, SMTP, S3) from their TOLLGATE_* settings; none set, none run.
    let deliverer = match deliverer_from(|key| std::env::var(key).ok()) {
        Ok(deliverer) => deliverer,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if check_only {
        eprintln!("configuration is valid");
        return ExitCode::from(EXIT_OK);
    }
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the runtime.");
            return ExitCode::from(EXIT_RETRYABLE);
        }
    };
    ExitCode::from(runtime.block_on(async {
        let code = run(&config).await;
        if code == EXIT_OK && !is_dry_run(&config) {
            deliver(&config, &deliverer).await
        } else {
            code
        }
    }))
}

fn is_dry_run(config: &Config) -> bool {
    matches!(&config.command, Run::Monthly(monthly) if monthly.dry_run)
}

/// After either job: every finalized invoice with a delivery step still to do (new invoices,
/// and steps that failed before, so the hourly run retries them within the hour). A failed
/// step is recorded on its invoice (and counted by `billing_invoice_steps_failed`); only a
/// database failure changes the exit code.
async fn deliver(config: &Config, deliverer: &Deliverer) -> u8 {
    if deliverer.steps().is_empty() {
        return EXIT_OK;
    }
    let client = match connect(config).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "Cannot reach PostgreSQL; a retry may succeed.");
            return EXIT_RETRYABLE;
        }
    };
    match deliverer.deliver_pending(&client, DELIVERY_BATCH).await {
        Ok(summary) => {
            tracing::info!(
                invoices = summary.invoices,
                steps_done = summary.steps_done,
                steps_failed = summary.steps_failed,
                "Delivery finished."
            );
            EXIT_OK
        }
        Err(error) => {
            tracing::error!(%error, "Delivery stopped.");
            EXIT_RETRYABLE
        }
    }
}

async fn connect(config: &Config) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut pg: tokio_postgres::Config = config.database_url.expose().parse()?;
    pg.connect_timeout(config.connect_timeout)
        .application_name("tollgate-invoicing")
        .options(format!(
            "-c statement_timeout={} -c TimeZone=UTC",
            config.statement_timeout.as_millis()
        ));
    let (client, connection) = pg.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended.");
        }
    });
    Ok(client)
}

async fn run(config: &Config) -> u8 {
    let mut client = match connect(config).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "Cannot reach PostgreSQL; a retry may succeed.");
            return EXIT_RETRYABLE;
        }
    };
    let mut faults = Faults::new(config.fault.clone());
    match &config.command {
        Run::Hourly { lookback_hours } => {
            match job::run_hourly(
                &mut client,
                OffsetDateTime::now_utc(),
                *lookback_hours,
                &mut faults,
            )
            .await
            {
                Ok(report) => {
                    tracing::info!(
                        hours = report.hours,
                        dirty_hours = report.dirty_hours,
                        rows_changed = report.rows_changed,
                        "Hourly roll-up finished."
                    );
                    EXIT_OK
                }
                Err(error) => {
                    let retryable = error.is_retryable();
                    tracing::error!(%error, retryable, "Hourly roll-up failed.");
                    if retryable { EXIT_RETRYABLE } else { EXIT_DATA }
                }
            }
        }
        Run::Monthly(monthly) => {
            let mut clients = vec![client];
            while clients.len() < monthly.workers {
                match connect(config).await {
                    Ok(client) => clients.push(client),
                    Err(e) => {
                        tracing::error!(error = %e, "Cannot open another PostgreSQL connection.");
                        return EXIT_RETRYABLE;
                    }
                }
            }
            let mut table = String::new();
            let result = job::run_monthly(&mut clients, monthly, &mut faults, &mut table).await;
            if monthly.dry_run {
                let mut out = std::io::stdout().lock();
                let _ = if table.is_empty() {
                    writeln!(out, "nothing to invoice for {}", monthly.period)
                } else {
                    out.write_all(table.as_bytes())
                };
            }
            match result {
                Ok(summary) => {
                    tracing::info!(
                        period = %monthly.period, tenants = summary.tenants, created = summary.created,
                        existing = summary.existing, resumed = summary.resumed, skipped = summary.skipped,
                        failed = summary.failed, dry_run = monthly.dry_run, "Monthly invoicing finished."
                    );
                    if summary.failed == 0 {
                        EXIT_OK
                    } else if summary.retryable > 0 {
                        EXIT_RETRYABLE
                    } else {
                        EXIT_DATA
                    }
                }
                Err(error) => {
                    let retryable = error.is_retryable();
                    tracing::error!(%error, retryable, "Monthly invoicing stopped.");
                    if retryable { EXIT_RETRYABLE } else { EXIT_DATA }
                }
            }
        }
    }
}
