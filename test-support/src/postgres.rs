//! A PostgreSQL database per test, cloned from a migrated template.
//!
//! The template is named after the migrations' fingerprint, built once (under an advisory
//! lock, so parallel test processes agree) and then cloned with `CREATE DATABASE … TEMPLATE`,
//! which copies files instead of replaying migrations: a few tens of milliseconds per test.

use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tollgate_core::migrations;

use crate::stack::{Stack, unique_name};

/// A database that exists for the life of this guard.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// A fresh database with the whole schema applied.
    pub async fn new() -> Self {
        let template = template().await;
        Self::create(Some(template)).await
    }

    /// A fresh database with no schema, for testing migrations themselves.
    pub async fn empty() -> Self {
        Self::create(None).await
    }

    async fn create(template: Option<&str>) -> Self {
        let stack = Stack::get();
        let name = unique_name("tgtest");
        let sql = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        let admin = connect(&stack.database_url).await;
        // Two clones of one template at the same instant can collide on the template's lock.
        let mut attempts = 0;
        loop {
            match admin.batch_execute(&sql).await {
                Ok(()) => break,
                Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) && attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("creating test database {name}: {e}"),
            }
        }
        let url = with_database(&stack.database_url, &name);
        Self { name, url }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection URL for this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection URL for this database that goes through `addr` (e.g. a [`crate::FaultyLink`]).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        let url = &self.url;
        let authority_start = url.find("://").map_or(0, |i| i + 3);
        let host_start = url[authority_start..]
            .find('@')
            .map_or(authority_start, |i| authority_start + i + 1);
        let host_end = url[host_start..]
            .find('/')
            .map_or(url.len(), |i| host_start + i);
        format!("{}{addr}{}", &url[..host_start], &url[host_end..])
    }

    /// The PostgreSQL server's address.
    pub fn server_addr(&self) -> std::net::SocketAddr {
        let config: tokio_postgres::Config = self.url.parse().expect("valid URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => panic!("the test stack's PostgreSQL is reached over TCP"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
            .parse()
            .expect("PostgreSQL host is an IP address")
    }

    /// A new connection, driven on the current runtime.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let admin_url = Stack::get().database_url.clone();
        crate::block_on_side_thread(async move {
            if let Ok((client, connection)) = tokio_postgres::connect(&admin_url, NoTls).await {
                tokio::spawn(connection);
                if let Err(e) = client.batch_execute(&sql).await {
                    eprintln!("dropping test database failed: {e}");
                }
            }
        });
    }
}

/// Connects and spawns the connection task on the current runtime.
pub(crate) async fn connect(url: &str) -> Client {
    let mut config: tokio_postgres::Config = url.parse().expect("DATABASE_URL is a valid URL");
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await.unwrap_or_else(|e| {
        panic!("connecting to PostgreSQL (is the stack up? `make services`): {e}")
    });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    let query_start = url[path_start..]
        .find('?')
        .map_or(url.len(), |i| path_start + i);
    format!("{}/{database}{}", &url[..path_start], &url[query_start..])
}

async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE.get_or_init(build_template).await
}

async fn build_template() -> String {
    let stack = Stack::get();
    let name = format!("tollgate_tpl_{:016x}", migrations::fingerprint());
    let admin = connect(&stack.database_url).await;
    admin
        .execute(
            "SELECT pg_advisory_lock(hashtext('tollgate_test_template'))",
            &[],
        )
        .await
        .expect("locking the template");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("looking up the template")
        .is_some();
    if !exists {
        // Templates of older schemas are of no further use.
        let stale = admin
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'tollgate\\_tpl\\_%'",
                &[],
            )
            .await
            .expect("listing old templates");
        for row in stale {
            let old: String = row.get(0);
            // One statement per call: DROP DATABASE refuses to run in a multi-statement batch.
            let _ = admin
                .batch_execute(&format!("ALTER DATABASE \"{old}\" IS_TEMPLATE false"))
                .await;
            let _ = admin
                .batch_execute(&format!("DROP DATABASE \"{old}\" WITH (FORCE)"))
                .await;
        }
        let building = format!("{name}_building");
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{building}\""),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("creating the template database");
        }
        let (mut client, connection) =
            tokio_postgres::connect(&with_database(&stack.database_url, &building), NoTls)
                .await
                .expect("connecting to the template database");
        let connection = tokio::spawn(connection);
        migrations::run(&mut client)
            .await
            .expect("migrating the template");
        // The rename below needs the template to have no connections: close ours and wait.
        drop(client);
        let _ = connection.await;
        for sql in [
            format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\""),
            format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"),
        ] {
            admin
                .batch_execute(&sql)
                .await
                .expect("publishing the template");
        }
    }
    admin
        .execute(
            "SELECT pg_advisory_unlock(hashtext('tollgate_test_template'))",
            &[],
        )
        .await
        .expect("unlocking the template");
    name
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced_keeping_credentials_and_options() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5/postgres?sslmode=disable", "x"),
            "postgres://u:p@127.0.0.1:5/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
    }
}
