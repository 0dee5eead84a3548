//! The client's errors. Each says what failed and, where it matters, whether the request may
//! have taken effect: a request in flight when its connection dropped has an unknown outcome.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_core::ErrorKind;
use sluice_protocols::binary::{EncodeError, StatusCode, WireStatus};

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not resolve {addr:?} to a socket address")]
    Resolve {
        addr: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("could not connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not reconnect to {addr} after {attempts} attempts")]
    Reconnect {
        addr: SocketAddr,
        attempts: u32,
        #[source]
        source: Box<ClientError>,
    },
    #[error("handshake with {addr} failed: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    /// The server answered the hello or the Auth with an error status (`UnsupportedVersion`,
    /// `AuthenticationRequired`, `AuthenticationFailed`, …) and closed the connection.
    #[error("{addr} refused the handshake with {status}: {message}")]
    HandshakeRefused {
        addr: SocketAddr,
        status: WireStatus,
        message: String,
    },
    /// The connection closed while the request was in flight; it may or may not have been
    /// applied. New requests reconnect.
    #[error("connection to {addr} was lost; the outcome of the request is unknown")]
    ConnectionLost { addr: SocketAddr },
    /// The server answered with an error status.
    #[error("server error {status}: {message}")]
    Server { status: WireStatus, message: String },
    /// One record of a batch was refused (the rest of its batch may have succeeded).
    #[error("record refused with {status}")]
    RecordFailed { status: WireStatus },
    #[error("request could not be encoded")]
    Encode(#[from] EncodeError),
    /// The server sent something the protocol does not allow; the connection is closed.
    #[error("protocol violation from {addr}: {reason}")]
    Protocol { addr: SocketAddr, reason: String },
    #[error("no answer within {timeout:?}; the outcome of the request is unknown")]
    Timeout { timeout: Duration },
    #[error("the producer has shut down")]
    ProducerClosed,
}

impl ClientError {
    /// The status code of a server or record error.
    pub fn status(&self) -> Option<WireStatus> {
        match self {
            Self::Server { status, .. }
            | Self::RecordFailed { status }
            | Self::HandshakeRefused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Kinesis error kind of a server or record error, as the HTTP API would name it.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.status()?.known()?.error_kind()
    }

    /// Whether the server refused the request as busy (`ServerBusy`: at its memory budget or
    /// connection limit). Nothing was done; the client retries these itself with backoff.
    pub fn is_busy(&self) -> bool {
        self.status()
            .is_some_and(|status| status.known() == Some(StatusCode::ServerBusy))
    }

    /// Whether trying the same request again may succeed: throttling, a busy server, server
    /// faults, and lost or slow connections. A retry of a put whose outcome is unknown may write the record twice,
    /// as with Kinesis itself.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::ConnectionLost { .. }
            | Self::Timeout { .. }
            | Self::Connect { .. }
            | Self::Reconnect { .. } => true,
            Self::Server { status, .. } | Self::RecordFailed { status } => matches!(
                status.known(),
                Some(
                    StatusCode::ProvisionedThroughputExceeded
                        | StatusCode::InternalFailure
                        | StatusCode::LimitExceeded
                        | StatusCode::ServerBusy
                )
            ),
            _ => false,
        }
    }
}

fn duplicate_io(error: &std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), error.to_string())
}

impl ClientError {
    /// A copy of this error for each record of a failed batch. `std::io::Error` is not `Clone`,
    /// so I/O sources are rebuilt from their kind and text.
    pub(crate) fn duplicate(&self) -> ClientError {
        match self {
            Self::Resolve { addr, source } => Self::Resolve {
                addr: addr.clone(),
                source: source.as_ref().map(duplicate_io),
            },
            Self::Connect { addr, source } => Self::Connect {
                addr: *addr,
                source: duplicate_io(source),
            },
            Self::Reconnect {
                addr,
                attempts,
                source,
            } => Self::Reconnect {
                addr: *addr,
                attempts: *attempts,
                source: Box::new(source.duplicate()),
            },
            Self::Handshake { addr, reason } => Self::Handshake {
                addr: *addr,
                reason: reason.clone(),
            },
            Self::HandshakeRefused {
                addr,
                status,
                message,
            } => Self::HandshakeRefused {
                addr: *addr,
                status: *status,
                message: message.clone(),
            },
            Self::ConnectionLost { addr } => Self::ConnectionLost { addr: *addr },
            Self::Server { status, message } => Self::Server {
                status: *status,
                message: message.clone(),
            },
            Self::RecordFailed { status } => Self::RecordFailed { status: *status },
            Self::Encode(error) => Self::Encode(error.clone()),
            Self::Protocol { addr, reason } => Self::Protocol {
                addr: *addr,
                reason: reason.clone(),
            },
            Self::Timeout { timeout } => Self::Timeout { timeout: *timeout },
            Self::ProducerClosed => Self::ProducerClosed,
        }
    }
}
