//! A server address with at most one live connection, reopened with exponential backoff when
//! it was lost. Callers that find the connection closed wait for one shared reconnect rather
//! than each dialling.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::client::ClientConfig;
use crate::connection::Connection;
use crate::error::ClientError;

pub(crate) struct Endpoint {
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    slot: Mutex<Option<Arc<Connection>>>,
}

impl Endpoint {
    pub(crate) fn new(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        connection: Option<Arc<Connection>>,
    ) -> Self {
        Self {
            addr,
            config,
            slot: Mutex::new(connection),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The live connection, reconnecting with backoff if the last one was lost.
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        self.connection_within(self.config.reconnect_attempts_max)
            .await
    }

    /// Like [`Endpoint::connection`] with a single attempt, for optional endpoints (per-core
    /// ports) where the caller has a fallback.
    pub(crate) async fn connection_once(&self) -> Result<Arc<Connection>, ClientError> {
        self.connection_within(1).await
    }

    async fn connection_within(&self, attempts_max: u32) -> Result<Arc<Connection>, ClientError> {
        let mut slot = self.slot.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        *slot = None;
        let attempts_max = attempts_max.max(1);
        let mut delay = self.config.reconnect_backoff_initial;
        let mut attempt = 1;
        loop {
            match Connection::open(self.addr, &self.config).await {
                Ok(connection) => {
                    if attempt > 1 {
                        tracing::debug!(addr = %self.addr, attempt, "Reconnected.");
                    }
                    *slot = Some(connection.clone());
                    return Ok(connection);
                }
                // A server that refused the handshake (a wrong key, no common version) will
                // refuse it again, so backing off would only delay the error; one at its
                // connection limit (`ServerBusy`) may take the next attempt.
                Err(error)
                    if attempt >= attempts_max
                        || (matches!(error, ClientError::HandshakeRefused { .. })
                            && !error.is_busy()) =>
                {
                    return Err(ClientError::Reconnect {
                        addr: self.addr,
                        attempts: attempt,
                        source: Box::new(error),
                    });
                }
                Err(error) => {
                    tracing::debug!(addr = %self.addr, attempt, %error, "Connect failed; backing off.");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.reconnect_backoff_max);
                    attempt += 1;
                }
            }
        }
    }
}
