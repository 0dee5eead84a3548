//! Kinesis Video Streams' errors as the rest-json wire spells them: one closed set of error
//! names, each with the HTTP status the `kinesisvideo`, `kinesis-video-media` and
//! `kinesis-video-archived-media` models give it.
//!
//! An error answer carries its name twice, because botocore's rest-json parser looks in two
//! places: the `x-amzn-ErrorType` header first, then the body's `code`, and its JSON base parser
//! reads `__type`. The body is `{"__type": name, "message": text, "Message": text}`: the models
//! name the member `Message`, most SDKs also accept `message`. Every answer, error or not, has an
//! `x-amzn-RequestId` header.

use sluice_protocols::HttpResponse;

/// The error shapes of the KVS control plane and data plane, plus the front end's own
/// (authentication, undecodable body, unknown operation, server fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    ResourceNotFound,
    InvalidArgument,
    ClientLimitExceeded,
    ResourceInUse,
    VersionMismatch,
    TagsPerResourceExceededLimit,
    AccountStreamLimitExceeded,
    DeviceStreamLimitExceeded,
    InvalidDevice,
    InvalidResourceFormat,
    NotAuthorized,
    AccessDenied,
    NoDataRetention,
    UnsupportedStreamMediaType,
    MissingCodecPrivateData,
    InvalidCodecPrivateData,
    InvalidMediaFrame,
    ConnectionLimitExceeded,
    /// `kinesis-video-media`: the caller used an endpoint that does not serve the stream.
    InvalidEndpoint,
    /// DescribeEdgeConfiguration and DeleteEdgeConfiguration on a stream without one.
    StreamEdgeConfigurationNotFound,
    /// The body is not JSON of the operation's input shape.
    Serialization,
    /// No KVS operation has this path.
    UnknownOperation,
    MissingAuthenticationToken,
    IncompleteSignature,
    InvalidSignature,
    UnrecognizedClient,
    /// A server fault (a failed fsync, an unexpected storage error).
    InternalFailure,
}

/// The error name and HTTP status of every kind, in one exhaustive table.
///
/// The statuses of the modelled errors are the models'. Authentication failures are 403, as
/// AWS's rest-json front ends answer them (the JSON 1.1 services answer 400); an unknown path is
/// 404.
pub const fn error_shape(kind: ErrorKind) -> (&'static str, u16) {
    match kind {
        ErrorKind::ResourceNotFound => ("ResourceNotFoundException", 404),
        ErrorKind::InvalidArgument => ("InvalidArgumentException", 400),
        ErrorKind::ClientLimitExceeded => ("ClientLimitExceededException", 400),
        ErrorKind::ResourceInUse => ("ResourceInUseException", 400),
        ErrorKind::VersionMismatch => ("VersionMismatchException", 400),
        ErrorKind::TagsPerResourceExceededLimit => ("TagsPerResourceExceededLimitException", 400),
        ErrorKind::AccountStreamLimitExceeded => ("AccountStreamLimitExceededException", 400),
        ErrorKind::DeviceStreamLimitExceeded => ("DeviceStreamLimitExceededException", 400),
        ErrorKind::InvalidDevice => ("InvalidDeviceException", 400),
        ErrorKind::InvalidResourceFormat => ("InvalidResourceFormatException", 400),
        ErrorKind::NotAuthorized => ("NotAuthorizedException", 401),
        ErrorKind::AccessDenied => ("AccessDeniedException", 401),
        ErrorKind::NoDataRetention => ("NoDataRetentionException", 400),
        ErrorKind::UnsupportedStreamMediaType => ("UnsupportedStreamMediaTypeException", 400),
        ErrorKind::MissingCodecPrivateData => ("MissingCodecPrivateDataException", 400),
        ErrorKind::InvalidCodecPrivateData => ("InvalidCodecPrivateDataException", 400),
        ErrorKind::InvalidMediaFrame => ("InvalidMediaFrameException", 400),
        ErrorKind::ConnectionLimitExceeded => ("ConnectionLimitExceededException", 400),
        ErrorKind::InvalidEndpoint => ("InvalidEndpointException", 400),
        ErrorKind::StreamEdgeConfigurationNotFound => {
            ("StreamEdgeConfigurationNotFoundException", 404)
        }
        ErrorKind::Serialization => ("SerializationException", 400),
        ErrorKind::UnknownOperation => ("UnknownOperationException", 404),
        ErrorKind::MissingAuthenticationToken => ("MissingAuthenticationTokenException", 403),
        ErrorKind::IncompleteSignature => ("IncompleteSignatureException", 403),
        ErrorKind::InvalidSignature => ("InvalidSignatureException", 403),
        ErrorKind::UnrecognizedClient => ("UnrecognizedClientException", 403),
        ErrorKind::InternalFailure => ("InternalFailure", 500),
    }
}

/// The content type of every KVS JSON answer.
pub const CONTENT_TYPE: &str = "application/json";

/// AWS's text for a stream that is missing (or, for the data plane, not ACTIVE).
pub const STREAM_NOT_FOUND: &str = "The requested stream is not found or not active.";

/// A refused KVS call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", error_shape(*kind).0)]
pub struct VideoError {
    pub kind: ErrorKind,
    pub message: String,
}

impl VideoError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// A model constraint failed, worded as AWS's front end words it (KVS answers these as
    /// InvalidArgumentException: its models have no ValidationException).
    pub fn validation(value: &str, member: &str, constraint: &str) -> Self {
        Self::invalid(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
        ))
    }

    /// A required member is absent.
    pub fn missing(member: &str) -> Self {
        Self::invalid(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    }

    pub fn not_found() -> Self {
        Self::new(ErrorKind::ResourceNotFound, STREAM_NOT_FOUND)
    }

    pub fn version_mismatch() -> Self {
        Self::new(
            ErrorKind::VersionMismatch,
            "The stream version does not match the version specified in the request.",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalFailure, message)
    }

    /// The error's name (`__type`, `x-amzn-ErrorType`).
    pub const fn type_name(&self) -> &'static str {
        error_shape(self.kind).0
    }

    pub const fn status(&self) -> u16 {
        error_shape(self.kind).1
    }

    /// The JSON body of the error answer.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({
            "__type": self.type_name(),
            "message": self.message,
            "Message": self.message,
        })
        .to_string()
        .into_bytes()
    }

    /// The whole error answer (see the module doc).
    pub fn response(&self, request_id: &str) -> HttpResponse {
        HttpResponse {
            status: self.status(),
            headers: vec![
                ("x-amzn-RequestId", request_id.to_owned()),
                ("x-amzn-ErrorType", self.type_name().to_owned()),
                ("Content-Type", CONTENT_TYPE.to_owned()),
            ],
            body: self.body(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_names_its_type_in_the_header_and_the_body_with_the_model_status() {
        let response = VideoError::not_found().response("req-1");
        assert_eq!(response.status, 404);
        assert_eq!(response.header("x-amzn-RequestId"), Some("req-1"));
        assert_eq!(
            response.header("x-amzn-ErrorType"),
            Some("ResourceNotFoundException")
        );
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
        assert_eq!(body["__type"], "ResourceNotFoundException");
        assert_eq!(body["message"], STREAM_NOT_FOUND);
        assert_eq!(body["Message"], STREAM_NOT_FOUND);
    }

    #[test]
    fn statuses_follow_the_models() {
        assert_eq!(VideoError::version_mismatch().status(), 400);
        assert_eq!(VideoError::new(ErrorKind::NotAuthorized, "").status(), 401);
        assert_eq!(VideoError::new(ErrorKind::AccessDenied, "").status(), 401);
        assert_eq!(VideoError::internal("").status(), 500);
        assert_eq!(
            VideoError::new(ErrorKind::NoDataRetention, "").type_name(),
            "NoDataRetentionException"
        );
    }
}
