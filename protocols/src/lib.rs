//! protocols: the wire formats. Owns the Kinesis JSON 1.1 and CBOR 1.1 protocols (envelope rules,
//! request decoding and validation, response encoding, the AWS error mapping, resource-policy
//! enforcement), SigV4 verification (header and presigned forms), SubscribeToShard (its
//! event-stream framing, and its delivery on the narrow storage face, `kinesis::efo`), and the
//! Sluice binary protocol codec (`docs/binary-protocol.md`).
//!
//! It is a pure codec and dispatcher: it maps wire requests onto `sluice_core::KinesisApi` calls
//! and reads of the narrow storage face (`sluice_core::storage::RecordLog`), and must not touch
//! sockets, executors, files, wall clocks or storage internals; the time a signature is checked
//! at is passed in, and only the monotonic clock bounds waits and subscription lifetimes. The server binary carries bytes between HTTP or TCP and
//! [`handle_kinesis`] or the binary codec.

#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod binary;
pub mod cbor;
pub mod eventstream;
pub mod json;
pub mod kinesis;
#[cfg(any(test, feature = "model"))]
pub mod model;
pub mod sigv4;

#[cfg(test)]
mod tests;

pub use kinesis::handle_kinesis;

/// An HTTP request as the Kinesis front end needs it, borrowed from the server's request.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The `X-Amz-Target` header.
    pub target: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// An `Authorization` header or an `X-Amz-Algorithm` query parameter is present. Its presence
    /// (and, when `authorization` or `query` are given, its completeness) is always required;
    /// the signature itself is checked only under `sigv4::AuthMode::Verify`.
    pub has_auth: bool,
    /// The `Authorization` header, to check that it names a credential, signature and signed
    /// headers.
    pub authorization: Option<&'a str>,
    /// The raw query string, for presigned (query-string) authentication.
    pub query: Option<&'a str>,
    /// An `X-Amz-Date` or `Date` header is present.
    pub has_date: bool,
    pub origin: Option<&'a str>,
    /// `Access-Control-Request-Headers`, echoed on a CORS preflight.
    pub access_control_request_headers: Option<&'a str>,
    /// `Access-Control-Request-Method`, echoed on a CORS preflight.
    pub access_control_request_method: Option<&'a str>,
    /// Every request header as received (names in any case, repeats kept in order), for
    /// SigV4 verification, which signs headers the client chooses. May be empty unless the
    /// front end runs with `sigv4::AuthMode::Verify`.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

/// The response to send. Header names are ASCII; the server adds `Content-Length`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
