//! A stand-in for Redis that speaks just enough RESP for the limiter's breaker tests: `PING`,
//! `SCRIPT LOAD`, `CLIENT SETINFO` and `EVALSHA` (answered as the sync script with no backlog
//! and no quota used). While `failing` is set, every `EVALSHA` is answered with an error, so a
//! strict decision fails while the connection itself stays up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug)]
pub(super) struct FakeRedis {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl FakeRedis {
    pub(super) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let failing = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn({
            let failing = failing.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, failing.clone()));
                }
            }
        });
        Self {
            addr,
            failing,
            accept,
        }
    }

    pub(super) fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// Scripts fail from now on (`true`) or succeed again (`false`).
    pub(super) fn fail_scripts(&self, failing: bool) {
        self.failing.store(failing, Ordering::Release);
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(stream: TcpStream, failing: Arc<AtomicBool>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Some(command) = read_command(&mut read).await {
        let name = command.first().map(|c| c.to_ascii_uppercase());
        let reply = match name.as_deref() {
            Some(b"PING") => b"+PONG\r\n".to_vec(),
            // The client checks that the answer is the script's SHA-1.
            Some(b"SCRIPT") => {
                let body = command.get(2).map_or(&[][..], Vec::as_slice);
                let sha = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, body);
                format!("$40\r\n{}\r\n", tollgate_core::hex::encode(sha.as_ref())).into_bytes()
            }
            Some(b"EVALSHA") if failing.load(Ordering::Acquire) => {
                b"-ERR injected failure\r\n".to_vec()
            }
            Some(b"EVALSHA") => b"*2\r\n:0\r\n:0\r\n".to_vec(),
            _ => b"+OK\r\n".to_vec(),
        };
        if write.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// One command: an array of bulk strings. `None` at the end of the stream or on bad input.
async fn read_command<R: AsyncBufReadExt + Unpin>(read: &mut R) -> Option<Vec<Vec<u8>>> {
    let count = read_header(read, b'*').await?;
    let mut parts = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_header(read, b'$').await?;
        let mut part = vec![0; len + 2];
        read.read_exact(&mut part).await.ok()?;
        part.truncate(len);
        parts.push(part);
    }
    Some(parts)
}

async fn read_header<R: AsyncBufReadExt + Unpin>(read: &mut R, kind: u8) -> Option<usize> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let rest = line.strip_prefix(char::from(kind))?;
    rest.trim_end().parse().ok()
}
