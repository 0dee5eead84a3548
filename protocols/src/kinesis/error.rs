//! How a [`KinesisError`] looks on the JSON 1.1 wire: the `__type` name, the HTTP status, and the
//! body. Client errors are 400 (the model gives no Kinesis shape another status); the server fault
//! `InternalFailure` is 500 with no message, as AWS sends it.

use sluice_core::{ErrorKind, KinesisError};

use crate::json::writer;

/// The `__type` name and HTTP status of every error kind, in one exhaustive table.
///
/// `ErrorKind` is `#[non_exhaustive]` in `core`, so the compiler makes us name a fallback arm;
/// it maps a kind added to `core` before this table learns it to a server fault, which is what
/// an unexpected error is.
pub const fn error_shape(kind: ErrorKind) -> (&'static str, u16) {
    match kind {
        ErrorKind::ResourceNotFound => ("ResourceNotFoundException", 400),
        ErrorKind::ResourceInUse => ("ResourceInUseException", 400),
        ErrorKind::InvalidArgument => ("InvalidArgumentException", 400),
        ErrorKind::LimitExceeded => ("LimitExceededException", 400),
        ErrorKind::ExpiredIterator => ("ExpiredIteratorException", 400),
        ErrorKind::ExpiredNextToken => ("ExpiredNextTokenException", 400),
        ErrorKind::ProvisionedThroughputExceeded => ("ProvisionedThroughputExceededException", 400),
        ErrorKind::AccessDenied => ("AccessDeniedException", 400),
        ErrorKind::Validation => ("ValidationException", 400),
        ErrorKind::InternalFailure => ("InternalFailure", 500),
        ErrorKind::Serialization => ("SerializationException", 400),
        ErrorKind::UnknownOperation => ("UnknownOperationException", 400),
        ErrorKind::MissingAuthenticationToken => ("MissingAuthenticationTokenException", 400),
        ErrorKind::IncompleteSignature => ("IncompleteSignatureException", 400),
        ErrorKind::InvalidSignature => ("InvalidSignatureException", 400),
        _ => ("InternalFailure", 500),
    }
}

/// The `ErrorCode` of a failed PutRecords entry. AWS documents only
/// `ProvisionedThroughputExceededException` and `InternalFailure`; other kinds keep their
/// `__type` name so the client still learns what happened.
pub const fn put_records_error_code(kind: ErrorKind) -> &'static str {
    error_shape(kind).0
}

/// The JSON error body and HTTP status for `error`.
pub fn error_body(error: &KinesisError) -> (u16, Vec<u8>) {
    let (type_name, status) = error_shape(error.kind);
    let mut out = Vec::with_capacity(48 + type_name.len() + error.message.len());
    out.extend_from_slice(b"{\"__type\":");
    writer::write_str(&mut out, type_name);
    if let Some(member) = message_member(error, status) {
        out.push(b',');
        writer::write_str(&mut out, member);
        out.push(b':');
        writer::write_str(&mut out, &error.message);
    }
    out.push(b'}');
    (status, out)
}

/// Which message member an error body carries, if any: AWS sends the server fault and a bare
/// unknown operation without one, and SerializationException (produced by a different layer of
/// AWS's front end) spells it with a capital M; SDKs read either spelling.
fn message_member(error: &KinesisError, status: u16) -> Option<&'static str> {
    match error.kind {
        ErrorKind::InternalFailure | ErrorKind::UnknownOperation => None,
        _ if status == 500 => None,
        ErrorKind::Serialization if error.message.is_empty() => None,
        ErrorKind::Serialization => Some("Message"),
        _ => Some("message"),
    }
}

/// The CBOR error body (a map with `__type` and the message, as in JSON) and HTTP status.
pub fn error_body_cbor(error: &KinesisError) -> (u16, Vec<u8>) {
    use crate::cbor::{write_head, write_text};
    let (type_name, status) = error_shape(error.kind);
    let member = message_member(error, status);
    let mut out = Vec::with_capacity(48 + type_name.len() + error.message.len());
    write_head(&mut out, 5, if member.is_some() { 2 } else { 1 });
    write_text(&mut out, "__type");
    write_text(&mut out, type_name);
    if let Some(member) = member {
        write_text(&mut out, member);
        write_text(&mut out, &error.message);
    }
    (status, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: KinesisError) -> (u16, String) {
        let (status, b) = error_body(&e);
        (
            status,
            String::from_utf8(b).expect("error bodies are UTF-8"),
        )
    }

    #[test]
    fn client_errors_are_400_with_a_lowercase_message() {
        assert_eq!(
            body(KinesisError::stream_not_found("s", "000000000000")),
            (
                400,
                r#"{"__type":"ResourceNotFoundException","message":"Stream s under account 000000000000 not found."}"#
                    .to_owned()
            )
        );
    }

    #[test]
    fn internal_failure_is_500_without_a_message() {
        assert_eq!(
            body(KinesisError::internal("disk on fire")),
            (500, r#"{"__type":"InternalFailure"}"#.to_owned())
        );
    }

    #[test]
    fn serialization_exception_uses_a_capital_message_member() {
        assert_eq!(
            body(KinesisError::new(
                ErrorKind::Serialization,
                "Expected list or null"
            )),
            (
                400,
                r#"{"__type":"SerializationException","Message":"Expected list or null"}"#
                    .to_owned()
            )
        );
        assert_eq!(
            body(KinesisError::new(ErrorKind::Serialization, "")),
            (400, r#"{"__type":"SerializationException"}"#.to_owned())
        );
    }

    #[test]
    fn every_kind_has_a_name_ending_like_aws_shapes() {
        use ErrorKind::*;
        for kind in [
            ResourceNotFound,
            ResourceInUse,
            InvalidArgument,
            LimitExceeded,
            ExpiredIterator,
            ExpiredNextToken,
            ProvisionedThroughputExceeded,
            AccessDenied,
            Validation,
            Serialization,
            UnknownOperation,
            MissingAuthenticationToken,
            IncompleteSignature,
            InvalidSignature,
        ] {
            let (name, status) = error_shape(kind);
            assert!(name.ends_with("Exception"), "{name}");
            assert_eq!(status, 400);
        }
        assert_eq!(error_shape(InternalFailure), ("InternalFailure", 500));
    }
}
