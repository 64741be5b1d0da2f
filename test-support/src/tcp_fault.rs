//! A TCP forwarder that a test can cut and restore, to give one client a real outage of a
//! shared service (connections reset, new ones refused) without disturbing other tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards `127.0.0.1:<port>` to a target until cut.
#[derive(Debug)]
pub struct FaultyLink {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    cuts: watch::Sender<u64>,
}

impl FaultyLink {
    /// Starts forwarding to `target` on the current runtime.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the link");
        let addr = listener.local_addr().expect("link address");
        let down = Arc::new(AtomicBool::new(false));
        let (cuts, _) = watch::channel(0u64);
        let (down_flag, cut_signal) = (down.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if down_flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = cut_signal.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, down, cuts }
    }

    /// The address clients should use instead of the target's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every open connection and refuses new ones until [`FaultyLink::restore`].
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}
