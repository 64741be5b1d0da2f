//! A client connection's life around Pingora's request handling: how many connections one
//! address may hold, how long a request head may take to arrive, how long a kept-alive
//! connection may wait for its next request.
//!
//! Pingora's HTTP/1 server applies its timeout to each read of a request head, not to the head:
//! a client sending one byte every few seconds keeps its connection (and a task) for as long as
//! it likes, and there is no limit per address. [`ClientGuard`] wraps the proxy application at
//! the transport level: it reads each request head itself, under one deadline and a size cap,
//! and hands the bytes to Pingora as the session's first bytes (the mechanism Pingora uses for
//! pipelined requests), so Pingora parses them without reading again. The cost is one scan of
//! the head's bytes.
//!
//! A head that does not arrive in time is answered 408, one too large 431, one with a NUL or a
//! bare CR 400 (all JSON, then the connection closes); an idle kept-alive connection is closed
//! silently; a connection over its address's limit is answered 429 and closed. Each is counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use parking_lot::Mutex;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::Stream;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use pingora_timeout::fast_timeout::fast_timeout;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_core::IpNetwork;

/// Most header lines Pingora's parser accepts; beyond it, 431 here rather than its bare 400.
const MAX_HEADER_LINES: usize = 256;
/// Room for a typical request head in one read.
const INITIAL_HEAD_BUFFER: usize = 4096;
/// Writing an early answer must not wait for a client that does not read.
const ANSWER_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// After an early answer, what the client still sends is read and dropped for this long (or
/// this much), as nginx's lingering close does: closing with unread input sends a reset, which
/// can destroy the answer before the client reads it.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

/// How client connections are bounded.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// From the first byte of a request head to its end.
    pub head_timeout: Duration,
    /// How long a connection may wait for (the first byte of) its next request.
    pub idle_timeout: Duration,
    /// Open connections per client address; 0 for no limit.
    pub max_per_address: u32,
    /// Largest request head accepted (431 beyond).
    pub max_head_bytes: usize,
    /// Peers exempt from the per-address limit: proxies in front carry many clients.
    pub trusted_proxies: Vec<IpNetwork>,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_per_address: 256,
            max_head_bytes: 32 * 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Why the guard ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CloseReason {
    HeadTimeout,
    IdleTimeout,
    HeadTooLarge,
    MalformedHead,
    PerAddressLimit,
}

impl CloseReason {
    const fn label(self) -> &'static str {
        match self {
            Self::HeadTimeout => "head_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::HeadTooLarge => "head_too_large",
            Self::MalformedHead => "malformed_head",
            Self::PerAddressLimit => "per_address_limit",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Connections the guard ended, by reason.
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    closed: Family<ReasonLabels, Counter>,
}

impl ConnectionMetrics {
    /// Registers the counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_connections_closed",
            "Client connections the gateway ended: slow or oversized request heads, idle \
             keep-alive, over the per-address limit",
            self.closed.clone(),
        );
    }

    fn count(&self, reason: CloseReason) {
        self.closed
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Connections ended for `reason` so far (for tests).
    pub fn closed(&self, reason: &'static str) -> u64 {
        self.closed.get_or_create(&ReasonLabels { reason }).get()
    }
}

/// Open connections per address.
#[derive(Debug, Default)]
struct AddressCounts(Mutex<HashMap<IpAddr, u32>>);

/// One counted connection; uncounted when dropped.
struct Slot<'a> {
    counts: &'a AddressCounts,
    ip: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

impl AddressCounts {
    fn acquire(&self, ip: IpAddr, limit: u32) -> Option<Slot<'_>> {
        let mut counts = self.0.lock();
        let n = counts.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot { counts: self, ip })
    }
}

/// Wraps an HTTP application (the proxy) with the connection bounds of [`ConnectionSettings`].
pub struct ClientGuard<A> {
    app: Arc<A>,
    settings: ConnectionSettings,
    counts: AddressCounts,
    metrics: Arc<ConnectionMetrics>,
}

impl<A> std::fmt::Debug for ClientGuard<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientGuard")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<A> ClientGuard<A> {
    /// Guards `app`.
    pub fn new(app: Arc<A>, settings: ConnectionSettings, metrics: Arc<ConnectionMetrics>) -> Self {
        Self {
            app,
            settings,
            counts: AddressCounts::default(),
            metrics,
        }
    }
}

/// What reading a request head gave.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head (and whatever followed it in the same reads).
    Complete(BytesMut),
    /// The client closed, or the read failed, before a byte.
    Closed,
    /// Ended by the guard.
    Refused(CloseReason),
}

/// Finds the end of a request head as bytes arrive, refusing what Pingora would answer with a
/// bare 400: a NUL, a CR not followed by LF, more lines than its parser takes.
#[derive(Debug)]
struct HeadScanner {
    scanned: usize,
    lines: usize,
    /// The last two bytes scanned, newest first.
    last: [u8; 2],
}

impl Default for HeadScanner {
    fn default() -> Self {
        // As if after a line end: empty lines before the request line are skipped (RFC 9112
        // §2.2), not taken for the end of the head.
        Self {
            scanned: 0,
            lines: 0,
            last: [b'\n'; 2],
        }
    }
}

impl HeadScanner {
    /// `Ok(true)` once `buf` holds a whole head.
    fn scan(&mut self, buf: &[u8]) -> Result<bool, CloseReason> {
        for &b in buf.get(self.scanned..).unwrap_or_default() {
            self.scanned += 1;
            if self.last[0] == b'\r' && b != b'\n' {
                return Err(CloseReason::MalformedHead);
            }
            match b {
                0 => return Err(CloseReason::MalformedHead),
                b'\n' => {
                    // "\n\n" or "\n\r\n": the empty line that ends the head, once there
                    // was a request line.
                    let empty = self.last[0] == b'\n' || self.last == [b'\r', b'\n'];
                    if empty && self.lines > 0 {
                        return Ok(true);
                    }
                    if !empty {
                        self.lines += 1;
                    }
                    if self.lines > MAX_HEADER_LINES + 1 {
                        return Err(CloseReason::HeadTooLarge);
                    }
                }
                _ => {}
            }
            self.last = [b, self.last[0]];
        }
        Ok(false)
    }
}

/// Reads one request head from `stream`: the first byte within `wait` (an idle connection is
/// given up at once when the server shuts down, as Pingora does), the rest within
/// `settings.head_timeout` of it. The deadlines are Pingora's timer wheel (10 ms ticks, timers
/// shared between requests) rather than tokio's: registering a tokio timer earlier than the
/// runtime's next wake-up writes to its eventfd, one syscall per request (`make profile`).
async fn read_head(
    stream: &mut Stream,
    wait: Duration,
    settings: &ConnectionSettings,
    shutdown: &ShutdownWatch,
) -> Head {
    let mut buf = BytesMut::with_capacity(INITIAL_HEAD_BUFFER);
    let first = tokio::select! {
        biased;
        read = fast_timeout(wait, stream.read_buf(&mut buf)) => read,
        () = stopping(shutdown.clone()) => return Head::Closed,
    };
    match first {
        Err(_) => return Head::Refused(CloseReason::IdleTimeout),
        Ok(Ok(0) | Err(_)) => return Head::Closed,
        Ok(Ok(_)) => {}
    }
    let deadline = Instant::now() + settings.head_timeout;
    let mut scanner = HeadScanner::default();
    loop {
        match scanner.scan(&buf) {
            Ok(true) => return Head::Complete(buf),
            Ok(false) => {}
            Err(reason) => return Head::Refused(reason),
        }
        if buf.len() > settings.max_head_bytes {
            return Head::Refused(CloseReason::HeadTooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match fast_timeout(left, stream.read_buf(&mut buf)).await {
            Err(_) => return Head::Refused(CloseReason::HeadTimeout),
            // Closed halfway through a head: nothing to answer.
            Ok(Ok(0) | Err(_)) => return Head::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

/// Resolves once the server begins to shut down.
async fn stopping(mut shutdown: ShutdownWatch) {
    // The guard `wait_for` returns is not Send: it is dropped here.
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

/// The answer to a head the guard refused, if it gets one.
fn answer_of(reason: CloseReason, settings: &ConnectionSettings) -> Option<Vec<u8>> {
    let (status, code, message) = match reason {
        CloseReason::IdleTimeout => return None,
        CloseReason::HeadTimeout => (
            "408 Request Timeout",
            "request_timeout",
            format!(
                "the request head did not arrive within {} s",
                settings.head_timeout.as_secs_f64()
            ),
        ),
        CloseReason::HeadTooLarge => (
            "431 Request Header Fields Too Large",
            "headers_too_large",
            format!(
                "the request head exceeds {} bytes or {MAX_HEADER_LINES} header lines",
                settings.max_head_bytes
            ),
        ),
        CloseReason::MalformedHead => (
            "400 Bad Request",
            "malformed_request",
            "the request head contains a NUL or a bare CR".to_owned(),
        ),
        CloseReason::PerAddressLimit => (
            "429 Too Many Requests",
            "too_many_connections",
            format!(
                "this address has {} connections open; reuse them",
                settings.max_per_address
            ),
        ),
    };
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let retry = if reason == CloseReason::PerAddressLimit {
        "retry-after: 1\r\n"
    } else {
        ""
    };
    Some(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             {retry}connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<A> ClientGuard<A> {
    /// Counts `reason`, answers if it gets an answer, and gives the connection up.
    async fn end(&self, mut stream: Stream, reason: CloseReason) {
        self.metrics.count(reason);
        if let Some(answer) = answer_of(reason, &self.settings) {
            let written = tokio::time::timeout(ANSWER_WRITE_TIMEOUT, async {
                stream.write_all(&answer).await?;
                stream.flush().await?;
                stream.shutdown().await
            })
            .await;
            if matches!(written, Ok(Ok(()))) {
                let _ = tokio::time::timeout(LINGER_TIME, async {
                    let mut sink = [0u8; 16 * 1024];
                    let mut drained = 0;
                    while drained < LINGER_BYTES {
                        match stream.read(&mut sink).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => drained += n,
                        }
                    }
                })
                .await;
            }
        }
    }
}

#[async_trait]
impl<A> ServerApp for ClientGuard<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|digest| digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _slot = match peer {
            Some(ip)
                if self.settings.max_per_address > 0
                    && !IpNetwork::any_contains(&self.settings.trusted_proxies, ip) =>
            {
                match self.counts.acquire(ip, self.settings.max_per_address) {
                    Some(slot) => Some(slot),
                    None => {
                        self.end(stream, CloseReason::PerAddressLimit).await;
                        return None;
                    }
                }
            }
            _ => None,
        };
        let mut persistent: Option<HttpPersistentSettings> = None;
        // A new connection gets as long to send its first byte as a kept-alive one.
        loop {
            let head = match read_head(
                &mut stream,
                self.settings.idle_timeout,
                &self.settings,
                shutdown,
            )
            .await
            {
                Head::Complete(head) => head,
                Head::Closed => return None,
                Head::Refused(reason) => {
                    self.end(stream, reason).await;
                    return None;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            match persistent.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None => session.set_keepalive(Some(self.settings.idle_timeout.as_secs().max(1))),
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            session.set_pipelined_prefix(head);
            let reused = self.app.process_new_http(session, shutdown).await?;
            let (next, settings) = reused.consume();
            stream = next;
            persistent = settings;
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(bytes: &[u8]) -> Result<bool, CloseReason> {
        HeadScanner::default().scan(bytes)
    }

    #[test]
    fn the_end_of_a_head_is_found_as_bytes_arrive() {
        let head = b"GET / HTTP/1.1\r\nhost: a\r\n\r\nbody";
        let mut scanner = HeadScanner::default();
        for end in 1..head.len() - 4 {
            assert_eq!(scanner.scan(&head[..end]), Ok(false), "{end}");
        }
        assert_eq!(scanner.scan(head), Ok(true));
        assert_eq!(scan_all(b"GET / HTTP/1.1\nhost: a\n\n"), Ok(true));
        assert_eq!(scan_all(b"\r\nGET / HTTP/1.1\r\nhost: a\r\n"), Ok(false));
        assert_eq!(scan_all(b"\r\n\r\n\n"), Ok(false));
        assert_eq!(scan_all(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), Ok(true));
    }

    #[test]
    fn nul_bare_cr_and_too_many_lines_are_refused() {
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\r\nx: a\0b\r\n\r\n"),
            Err(CloseReason::MalformedHead)
        );
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\r\nx: a\rb\r\n\r\n"),
            Err(CloseReason::MalformedHead)
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "x: y\r\n".repeat(300));
        assert_eq!(scan_all(many.as_bytes()), Err(CloseReason::HeadTooLarge));
        let enough = format!("GET / HTTP/1.1\r\n{}\r\n", "x: y\r\n".repeat(200));
        assert_eq!(scan_all(enough.as_bytes()), Ok(true));
    }

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_slots_back() {
        let counts = AddressCounts::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = counts.acquire(ip, 2);
        let second = counts.acquire(ip, 2);
        assert!(first.is_some() && second.is_some());
        assert!(counts.acquire(ip, 2).is_none());
        assert!(counts.acquire("192.0.2.2".parse().unwrap(), 2).is_some());
        drop(first);
        assert!(counts.acquire(ip, 2).is_some());
        drop(second);
        assert!(counts.0.lock().is_empty());
    }

    #[test]
    fn refused_heads_are_answered_in_json_except_idle_ones() {
        let settings = ConnectionSettings::default();
        assert_eq!(answer_of(CloseReason::IdleTimeout, &settings), None);
        let answer =
            String::from_utf8(answer_of(CloseReason::HeadTimeout, &settings).unwrap()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "request_timeout");
    }
}
