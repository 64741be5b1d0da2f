//! PostgreSQL and Redis servers of a test's own, on private ports and data directories, for
//! tests that stop, kill or pause a server: the shared stack's servers serve every other test
//! running in parallel and must never be disturbed. (The broker's is
//! [`crate::usage_topic::PrivateBroker`].)

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use crate::unique_name;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// A random alphanumeric secret (passwords of private servers).
fn secret() -> String {
    uuid::Uuid::now_v7().simple().to_string() + &uuid::Uuid::now_v7().simple().to_string()[16..]
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn as_postgres(program: &str) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--", &format!("{PG_BIN}/{program}")]);
    command
}

/// A PostgreSQL 15 cluster of its own (initdb'd on start, removed on drop), migrated, with
/// password authentication on a private port.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    url: String,
}

impl PrivatePostgres {
    /// Creates, starts and migrates the cluster; database `tollgate`, user `tollgate`.
    pub async fn start() -> Self {
        // Outside any home directory: the postgres user must be able to enter it.
        let dir = std::env::temp_dir().join(unique_name("tollgate-private-pg"));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("creating the data directory");
        let password = secret();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, &password).expect("writing the password file");
        run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
            "chown",
        );
        run(
            as_postgres("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "tollgate", "--auth=scram-sha-256", "--encoding=UTF8"])
                .args(["--locale=C.UTF-8", "--no-sync"])
                .arg(format!("--pwfile={}", pwfile.display())),
            "initdb",
        );
        let _ = std::fs::remove_file(&pwfile);
        let port = free_port();
        let config = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             max_connections = 100\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            data.display()
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("reading postgresql.conf");
        text.push_str(&config);
        std::fs::write(&conf, text).expect("writing postgresql.conf");
        let server = Self {
            url: format!("postgres://tollgate:{password}@127.0.0.1:{port}/postgres"),
            dir,
            port,
        };
        server.start_again();
        let (client, connection) = tokio_postgres::connect(&server.url, NoTls)
            .await
            .expect("connecting to the private PostgreSQL");
        tokio::spawn(connection);
        client
            .batch_execute("CREATE DATABASE tollgate")
            .await
            .expect("creating the database");
        let mut client = server.client().await;
        tollgate_core::migrations::run(&mut client)
            .await
            .expect("migrating the private database");
        server
    }

    /// The URL of database `tollgate`.
    pub fn url(&self) -> String {
        self.url.replace("/postgres", "/tollgate")
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection to database `tollgate`, driven on the current runtime.
    pub async fn client(&self) -> tokio_postgres::Client {
        crate::postgres::connect(&self.url()).await
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        run(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "stop"]),
            "pg_ctl stop",
        );
    }

    /// Starts the (stopped) server again on the same port and data.
    pub fn start_again(&self) {
        run(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server of its own (no persistence, a generated password) that a test may kill and
/// start again on the same port.
#[derive(Debug)]
pub struct PrivateRedis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts the server and waits until it answers.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(unique_name("tollgate-private-redis"));
        std::fs::create_dir_all(&dir).expect("creating the Redis directory");
        let port = free_port();
        // The password goes in a config file, not on the command line where ps shows it.
        let config = format!(
            "bind 127.0.0.1\nport {port}\nrequirepass {}\nsave \"\"\nappendonly no\ndir {}\n",
            secret(),
            dir.display()
        );
        std::fs::write(dir.join("redis.conf"), config).expect("writing redis.conf");
        let mut redis = Self {
            dir,
            port,
            child: None,
        };
        redis.start_again();
        redis
    }

    /// The URL, password included.
    pub fn url(&self) -> String {
        let config = std::fs::read_to_string(self.dir.join("redis.conf")).unwrap_or_default();
        let password = config
            .lines()
            .find_map(|line| line.strip_prefix("requirepass "))
            .unwrap_or_default();
        format!("redis://default:{password}@127.0.0.1:{}/0", self.port)
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the (killed) server again, empty, on the same port.
    pub fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .arg(self.dir.join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10), "redis-server");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until something listens on 127.0.0.1:`port`; panics naming `what` after `limit`.
pub fn wait_for_port(port: u16, limit: Duration, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < limit,
            "{what} not listening within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
