//! The Kinesis error kinds. Every failure a client can see is one `KinesisError`: an AWS error
//! kind (which the wire layers map to `__type` and an HTTP status) plus the exact message text.
//! Constructors for the messages AWS words in a fixed way live here so that every layer says the
//! same thing.

use std::fmt;

/// The modelled (and a few unmodelled) Kinesis error shapes. The names are AWS's shape names
/// without the `Exception` suffix; `protocols` adds it on the wire.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    ResourceNotFound,
    ResourceInUse,
    InvalidArgument,
    LimitExceeded,
    ExpiredIterator,
    ExpiredNextToken,
    ProvisionedThroughputExceeded,
    AccessDenied,
    Validation,
    /// Server fault (HTTP 500, `InternalFailure`).
    InternalFailure,
    /// The body could not be decoded into the operation's input shape.
    Serialization,
    UnknownOperation,
    MissingAuthenticationToken,
    IncompleteSignature,
    InvalidSignature,
}

/// One client-visible error: a kind plus the message AWS would send.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct KinesisError {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for KinesisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl KinesisError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalFailure, message)
    }

    /// `Stream <name> under account <a> not found.`
    pub fn stream_not_found(stream_name: &str, account_id: &str) -> Self {
        Self::new(
            ErrorKind::ResourceNotFound,
            format!("Stream {stream_name} under account {account_id} not found."),
        )
    }

    /// `Stream <name> under account <a> already exists.`
    pub fn stream_exists(stream_name: &str, account_id: &str) -> Self {
        Self::new(
            ErrorKind::ResourceInUse,
            format!("Stream {stream_name} under account {account_id} already exists."),
        )
    }

    /// `Stream <name> under account <a> not ACTIVE, instead in state <STATUS>`
    pub fn stream_not_active(stream_name: &str, account_id: &str, status: &str) -> Self {
        Self::new(
            ErrorKind::ResourceInUse,
            format!(
                "Stream {stream_name} under account {account_id} not ACTIVE, instead in state {status}"
            ),
        )
    }

    /// `Shard <id> in stream <name> under account <a> does not exist` (no final period, as AWS).
    pub fn shard_not_found(shard_id: &str, stream_name: &str, account_id: &str) -> Self {
        Self::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Shard {shard_id} in stream {stream_name} under account {account_id} does not exist"
            ),
        )
    }

    /// `Could not find shard <id> in stream <name> under account <a>.`
    pub fn shard_unparsable(shard_id: &str, stream_name: &str, account_id: &str) -> Self {
        Self::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Could not find shard {shard_id} in stream {stream_name} under account {account_id}."
            ),
        )
    }

    pub fn invalid_shard_iterator() -> Self {
        Self::invalid_argument("Invalid ShardIterator.")
    }
}
