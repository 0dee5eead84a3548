//! Firehose's errors as the JSON 1.1 wire spells them: one closed set of `__type` names, each
//! with its HTTP status. Messages follow AWS's wording where it is known; the model gives these
//! errors no status codes, so client errors are 400 and the server faults 500/503, as AWS sends.

/// The error shapes of the Firehose model plus the front end's own (serialization, unknown
/// operation, authentication, model validation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    ResourceNotFound,
    ResourceInUse,
    LimitExceeded,
    ConcurrentModification,
    InvalidKmsResource,
    InvalidSource,
    ServiceUnavailable,
    Validation,
    Serialization,
    UnknownOperation,
    MissingAuthenticationToken,
    IncompleteSignature,
    InvalidSignature,
    UnrecognizedClient,
    InternalFailure,
}

/// The `__type` name and HTTP status of every kind, in one exhaustive table.
pub const fn error_shape(kind: ErrorKind) -> (&'static str, u16) {
    match kind {
        ErrorKind::InvalidArgument => ("InvalidArgumentException", 400),
        ErrorKind::ResourceNotFound => ("ResourceNotFoundException", 400),
        ErrorKind::ResourceInUse => ("ResourceInUseException", 400),
        ErrorKind::LimitExceeded => ("LimitExceededException", 400),
        ErrorKind::ConcurrentModification => ("ConcurrentModificationException", 400),
        ErrorKind::InvalidKmsResource => ("InvalidKMSResourceException", 400),
        ErrorKind::InvalidSource => ("InvalidSourceException", 400),
        ErrorKind::ServiceUnavailable => ("ServiceUnavailableException", 503),
        ErrorKind::Validation => ("ValidationException", 400),
        ErrorKind::Serialization => ("SerializationException", 400),
        ErrorKind::UnknownOperation => ("UnknownOperationException", 400),
        ErrorKind::MissingAuthenticationToken => ("MissingAuthenticationTokenException", 400),
        ErrorKind::IncompleteSignature => ("IncompleteSignatureException", 400),
        ErrorKind::InvalidSignature => ("InvalidSignatureException", 400),
        ErrorKind::UnrecognizedClient => ("UnrecognizedClientException", 400),
        ErrorKind::InternalFailure => ("InternalFailure", 500),
    }
}

/// A refused Firehose call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", error_shape(*kind).0)]
pub struct FirehoseError {
    pub kind: ErrorKind,
    pub message: String,
}

impl FirehoseError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// A model constraint failed, worded as AWS's front end words it.
    pub fn validation(value: &str, member: &str, constraint: &str) -> Self {
        Self::new(
            ErrorKind::Validation,
            format!(
                "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
            ),
        )
    }

    /// A required member is absent.
    pub fn missing(member: &str) -> Self {
        Self::new(
            ErrorKind::Validation,
            format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ),
        )
    }

    pub fn not_found(name: &str, account_id: &str) -> Self {
        Self::new(
            ErrorKind::ResourceNotFound,
            format!("Firehose {name} under account {account_id} not found."),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalFailure, message)
    }

    /// The JSON body and HTTP status.
    pub fn body(&self) -> (u16, Vec<u8>) {
        let (type_name, status) = error_shape(self.kind);
        let body = if status >= 500 && self.kind == ErrorKind::InternalFailure {
            serde_json::json!({ "__type": type_name })
        } else {
            serde_json::json!({ "__type": type_name, "message": self.message })
        };
        (status, body.to_string().into_bytes())
    }
}
