//! PostgreSQL connections for the command-line tools.

use std::time::Duration;

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

/// How long to wait for PostgreSQL to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `url` (named by `setting` in errors) and drives the connection in the background.
pub async fn connect(url: &str, setting: &str) -> anyhow::Result<Client> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("{setting} is not a valid PostgreSQL URL"))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {setting}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}
