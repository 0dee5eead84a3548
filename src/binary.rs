//! The binary-protocol front end on one glommio executor: its listeners, their accept loops,
//! and the wiring of each accepted socket to the connection handler in
//! `sluice_protocols::binary::server` (`docs/binary-protocol.md`), which holds the protocol.
//!
//! Every core accepts on the shared port (SO_REUSEPORT spreads connections over the cores) and
//! on a port of its own, which the server hello publishes so that a shard-aware client talks to
//! the core owning each shard. A request about a shard another core owns is forwarded by the
//! engine, so a plain client on the shared port works too.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sluice_io::engine::Engine;
use sluice_io::storage::StorageHandle;
use sluice_protocols::admission::Admission;
use sluice_protocols::auth::AuthConfig;
use sluice_protocols::binary::server::{BinaryServer, Runtime, ServerConfig};

pub use sluice_protocols::binary::server::CorePorts;

// A record of the largest size the Kinesis limits allow always fits one records frame, so a
// read or push always makes progress.
const _: () = assert!(
    sluice_core::control::MAX_RECORD_SIZE_KIB_MAX as usize * 1024 + 1024
        < sluice_protocols::binary::limits::FRAME_BYTES_MAX
);

/// How long the accept loop waits before retrying after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// The connection handler's tasks and timers run on the glommio executor of the core that
/// accepted the connection.
#[derive(Clone, Copy, Debug)]
struct Glommio;

impl Runtime for Glommio {
    fn spawn_local(&self, task: impl Future<Output = ()> + 'static) {
        glommio::spawn_local(task).detach();
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + 'static {
        glommio::timer::sleep(duration)
    }
}

type Server = BinaryServer<Engine, StorageHandle, Glommio>;

/// What one core's binary listeners admit.
pub struct Limits {
    /// The listener's rule (`AuthConfig::for_listener`): with credentials every connection
    /// authenticates before it is served.
    pub auth: Arc<AuthConfig>,
    /// The core's memory budget and connection limit, the same one (a clone) its HTTP listener
    /// uses, so the two wires share one budget and one connection count per core.
    pub admission: Option<Admission>,
    /// The ingest credit of each connection of version 3 or later.
    pub ingest_credit_bytes: u32,
}

/// Serves the binary protocol on this core: on the shared listener (if any) and on the core's
/// own listener. Returns when both listeners failed for good.
pub async fn serve(
    shared: Option<glommio::net::TcpListener>,
    own: glommio::net::TcpListener,
    engine: Engine,
    ports: Arc<CorePorts>,
    limits: Limits,
) {
    let config = ServerConfig {
        auth: limits.auth,
        ports,
        core_count: u16::try_from(engine.cores()).expect("the core count fits u16"),
        core_id: u16::try_from(engine.core_id()).expect("the core id fits u16"),
        admission: limits.admission,
        ingest_credit_bytes: limits.ingest_credit_bytes,
    };
    let storage = engine.storage();
    let server = BinaryServer::new(config, engine, storage, Glommio);
    let own_task = glommio::spawn_local(accept_loop(own, server.clone()));
    if let Some(shared) = shared {
        accept_loop(shared, server).await;
    }
    own_task.await;
}

async fn accept_loop(listener: glommio::net::TcpListener, server: Rc<Server>) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) if accept_error_is_transient(&error) => {
                tracing::warn!(%error, "Accepting a binary connection failed; retrying.");
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "A binary listener failed; this core stops accepting on it.");
                return;
            }
        };
        // Answers are coalesced in the connection's outbox, so Nagle's delay would only add
        // latency.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "Could not set TCP_NODELAY.");
        }
        // Counted against the core's connection limit here, before the next accept.
        glommio::spawn_local(server.clone().accept(stream)).detach();
    }
}

fn accept_error_is_transient(error: &glommio::GlommioError<()>) -> bool {
    match error {
        glommio::GlommioError::IoError(e) => matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
        ),
        _ => false,
    }
}

/// The per-core port of core `core_id` (0: pick a free one).
pub fn core_port(base: u16, core_id: usize) -> u16 {
    if base == 0 {
        return 0;
    }
    let port = usize::from(base) + core_id;
    u16::try_from(port).expect("settings checked that every core's port fits u16")
}

/// The address core `core_id` listens on alone.
pub fn core_addr(shared: SocketAddr, base: u16, core_id: usize) -> SocketAddr {
    SocketAddr::new(shared.ip(), core_port(base, core_id))
}
