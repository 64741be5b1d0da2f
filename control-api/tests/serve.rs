//! The real binary: `create-admin` then `serve` (API and admin listener), and start-up
//! refusing a short JWT secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tollgate_test_support::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate-control-api");

fn create_admin(db: &TestDb, reuse: &str) -> String {
    let out = Command::new(BIN)
        .arg("create-admin")
        .env("TOLLGATE_DATABASE_URL", db.url())
        .env("TOLLGATE_ADMIN_EMAIL", "admin@example.com")
        .env("TOLLGATE_ADMIN_PASSWORD", reuse)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let password = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&password));
    password
}

/// A minimal HTTP/1.1 exchange; returns the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn make_up_flow_creates_the_admin_once_and_serves_logins() {
    let db = TestDb::new().await;
    let first = create_admin(&db, "");
    assert_eq!(first.len(), 24);
    assert_eq!(
        create_admin(&db, &first),
        first,
        "a working password is kept"
    );
    // A session of the old password's holder...
    let client = db.client().await;
    client
        .execute(
            "INSERT INTO auth_sessions (id, user_id, refresh_token_id, expires_at) \
             SELECT gen_random_uuid(), id, gen_random_uuid(), now() + interval '1 hour' \
               FROM users WHERE email = 'admin@example.com'",
            &[],
        )
        .await
        .unwrap();
    let replaced = create_admin(&db, "not the password");
    assert_ne!(replaced, first, "a stale password is replaced");
    // ...ends with the replaced password.
    let reason: Option<String> = client
        .query_one("SELECT revoked_reason FROM auth_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason.as_deref(), Some("password_change"));

    let free_addr = || {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("127.0.0.1:{port}")
    };
    let (addr, admin_addr) = (free_addr(), free_addr());
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("TOLLGATE_DATABASE_URL", db.url())
        .env("TOLLGATE_KEY_PEPPER", "ab".repeat(32))
        .env("TOLLGATE_CONTROL_API_JWT_SECRET", "ef".repeat(32))
        .env("TOLLGATE_CONTROL_API_LISTEN", &addr)
        .env("TOLLGATE_CONTROL_API_ADMIN_LISTEN", &admin_addr)
        .env("TOLLGATE_CONTROL_API_WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http(&addr, "GET", "/ready", "").0, 200);
    let login = format!(r#"{{"email":"admin@example.com","password":"{replaced}"}}"#);
    let (status, body) = http(&addr, "POST", "/api/v1/auth/login", &login);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("access_token"));
    // Metrics on the admin listener only, in a form promtool accepts.
    assert_eq!(http(&addr, "GET", "/metrics", "").0, 404);
    let (status, metrics) = http(&admin_addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tollgate_control_api_login_attempts_total{outcome=\"success\"} 1"),
        "{metrics}"
    );
    tollgate_test_support::promtool::check_metrics(&metrics);
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(!logs.contains(&replaced), "the password is never logged");
}

#[test]
fn a_short_jwt_secret_is_refused_naming_the_setting() {
    let output = Command::new(BIN)
        .arg("serve")
        .env("TOLLGATE_DATABASE_URL", "postgres://u@127.0.0.1:1/x")
        .env("TOLLGATE_KEY_PEPPER", "ab".repeat(32))
        .env("TOLLGATE_CONTROL_API_JWT_SECRET", "short-secret")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TOLLGATE_CONTROL_API_JWT_SECRET"),
        "{stderr}"
    );
    assert!(!stderr.contains("short-secret"), "{stderr}");
}
