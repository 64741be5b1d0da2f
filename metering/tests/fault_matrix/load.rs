//! The load: keep-alive HTTP/1.1 connections to the proxy, each sending at a fixed pace and
//! recording every answer with its usage event id (`X-Request-Id`) and the time it arrived.
//! A failed connection (the proxy was killed) counts as a failed request and is reopened.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One answered request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The usage event's id, from `X-Request-Id`.
    pub event_id: Option<uuid::Uuid>,
    pub at: Instant,
}

/// What the load saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub answers: Vec<Answer>,
    /// Requests that got no answer (connection refused, reset or closed mid-request).
    pub failed: u64,
}

impl Outcome {
    pub fn count_status(&self, mut matches: impl FnMut(u16) -> bool) -> usize {
        self.answers.iter().filter(|a| matches(a.status)).count()
    }
}

/// Running load; [`Load::stop`] ends it and returns what it saw.
pub struct Load {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    outcome: Arc<Mutex<Outcome>>,
}

impl Load {
    /// `rate` requests per second in total over `connections` connections to `proxy`.
    pub fn start(proxy: SocketAddr, api_key: &str, rate: u32, connections: u32) -> Self {
        let (stop, stopped) = watch::channel(false);
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let request =
            format!("GET /api/fault HTTP/1.1\r\nhost: gw.test\r\nx-api-key: {api_key}\r\n\r\n");
        let interval = Duration::from_micros(1_000_000 * u64::from(connections) / u64::from(rate));
        let tasks = (0..connections)
            .map(|_| {
                let (request, outcome, stopped) =
                    (request.clone(), outcome.clone(), stopped.clone());
                tokio::spawn(connection(proxy, request, interval, outcome, stopped))
            })
            .collect();
        Self {
            stop,
            tasks,
            outcome,
        }
    }

    pub async fn stop(self) -> Outcome {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let mut outcome = self.outcome.lock().unwrap();
        std::mem::take(&mut *outcome)
    }
}

async fn connection(
    proxy: SocketAddr,
    request: String,
    interval: Duration,
    outcome: Arc<Mutex<Outcome>>,
    stopped: watch::Receiver<bool>,
) {
    let mut next = Instant::now();
    let mut stream: Option<BufReader<TcpStream>> = None;
    while !*stopped.borrow() {
        tokio::time::sleep_until(next).await;
        next += interval;
        if stream.is_none() {
            match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(proxy)).await {
                Ok(Ok(s)) => stream = Some(BufReader::new(s)),
                _ => {
                    outcome.lock().unwrap().failed += 1;
                    continue;
                }
            }
        }
        let Some(conn) = stream.as_mut() else {
            continue;
        };
        // Generous: a paused broker or database must not make the proxy slow to answer, but
        // the machine is shared and busy.
        match tokio::time::timeout(Duration::from_secs(10), exchange(conn, &request)).await {
            Ok(Ok((status, event_id))) => outcome.lock().unwrap().answers.push(Answer {
                status,
                event_id,
                at: Instant::now(),
            }),
            _ => {
                outcome.lock().unwrap().failed += 1;
                stream = None;
            }
        }
        // Behind schedule (a stall): don't burst to catch up.
        next = next.max(Instant::now());
    }
}

/// Sends `request` and reads one response: status and `X-Request-Id`.
async fn exchange(
    conn: &mut BufReader<TcpStream>,
    request: &str,
) -> std::io::Result<(u16, Option<uuid::Uuid>)> {
    conn.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut event_id) = (0usize, None);
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        } else if let Some(value) = lower.strip_prefix("x-request-id:") {
            event_id = value.trim().parse().ok();
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok((status, event_id))
}
