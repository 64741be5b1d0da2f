//! `tollgate-bare-pingora`: Pingora forwarding every request to one upstream and doing nothing
//! else (no auth, limits, usage, metrics, connection guard). The load test's floor: what
//! Pingora itself costs with the gateway's listener, runtime and upstream settings, so the
//! report can separate Pingora's cost from Tollgate's.
//!
//! Settings (environment): `TOLLGATE_PROXY_LISTEN`, `TOLLGATE_PROXY_THREADS` (as the gateway),
//! `BARE_PINGORA_UPSTREAM` (`127.0.0.1:port`), and `BARE_PINGORA_DEFAULTS=1` to run with
//! Pingora's own defaults (work-stealing runtime, the disabled compression module) instead of
//! the gateway's runtime settings.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use pingora_core::modules::http::HttpModules;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{HttpProxy, ProxyHttp, Session};

/// The same allocator as the gateway, so the floor is comparable.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Timeouts of a route with the gateway's defaults.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

struct Passthrough {
    upstream: SocketAddr,
    pingora_defaults: bool,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        if self.pingora_defaults {
            modules.add_module(
                pingora_core::modules::http::compression::ResponseCompressionBuilder::enable(0),
            );
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora_core::Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.read_timeout = Some(READ_TIMEOUT);
        Ok(Box::new(peer))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn main() -> anyhow::Result<()> {
    let listen = env("TOLLGATE_PROXY_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
    let upstream: SocketAddr = env("BARE_PINGORA_UPSTREAM")
        .context("set BARE_PINGORA_UPSTREAM to the upstream's address")?
        .parse()
        .context("BARE_PINGORA_UPSTREAM is not an address")?;
    let threads = match env("TOLLGATE_PROXY_THREADS") {
        Some(v) => v
            .parse()
            .context("TOLLGATE_PROXY_THREADS is not a number")?,
        None => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
    };
    let pingora_defaults = env("BARE_PINGORA_DEFAULTS").as_deref() == Some("1");
    let conf = ServerConf {
        threads,
        work_stealing: pingora_defaults,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = HttpProxy::new(
        Passthrough {
            upstream,
            pingora_defaults,
        },
        server.configuration.clone(),
    );
    proxy.handle_init_modules();
    let mut service = pingora_core::services::listening::Service::new("bare".to_owned(), proxy);
    service.add_tcp(&listen);
    server.add_service(service);
    server.run(RunArgs::default());
    Ok(())
}
