//! Stable numeric status codes. Codes 1..=999 mirror the Kinesis error kinds
//! (`sluice_core::ErrorKind`); codes from 1000 are errors of the binary protocol itself.
//!
//! A code, once published, keeps its meaning forever: a retired code is listed as retired in
//! `docs/binary-protocol.md` and never handed to a new meaning, so an old client never
//! misreads a new server. Frames carry a [`WireStatus`] (the raw `u16`) rather than a
//! [`StatusCode`], so a client meets codes newer than itself as "unknown code N" instead of
//! failing to decode the frame.

use sluice_core::ErrorKind;

/// Every status code this codec knows. The discriminant is the wire value.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusCode {
    Ok = 0,
    ResourceNotFound = 1,
    ResourceInUse = 2,
    InvalidArgument = 3,
    LimitExceeded = 4,
    ExpiredIterator = 5,
    ExpiredNextToken = 6,
    ProvisionedThroughputExceeded = 7,
    AccessDenied = 8,
    Validation = 9,
    InternalFailure = 10,
    Serialization = 11,
    MissingAuthenticationToken = 12,
    IncompleteSignature = 13,
    InvalidSignature = 14,
    /// The frame's header or payload does not follow the specification.
    BadFrame = 1000,
    /// The client hello offered no version the server speaks.
    UnsupportedVersion = 1001,
    /// The frame's length exceeds `limits::FRAME_BYTES_MAX`.
    FrameTooLarge = 1002,
    /// The opcode is not one the server serves. Kinesis' `UnknownOperation` maps here too.
    UnknownOperation = 1003,
    /// A request arrived before the handshake finished.
    HandshakeRequired = 1004,
    /// A Subscribe reused the request id of a subscription that is still open.
    SubscriptionExists = 1005,
    /// Credit or Unsubscribe named a subscription that is not open on this connection.
    UnknownSubscription = 1006,
    /// The server verifies credentials and the connection has not authenticated: a request
    /// came before a successful Auth, or the client offered only version 1, which cannot
    /// authenticate. The server closes the connection after this answer.
    AuthenticationRequired = 1007,
    /// An Auth named an access key the server does not know, or its signature does not match
    /// the key's secret. The server closes the connection after this answer.
    AuthenticationFailed = 1008,
    /// The server is at its memory budget (the request waited past the deadline without
    /// being read) or at its connection limit (answered to the connection's first frame, then
    /// closed). Nothing was done: retrying with backoff is always safe.
    ServerBusy = 1009,
    /// A PutBatch larger than the connection's remaining ingest credit (version 3). The client
    /// broke the flow control; the server closes the connection after this answer.
    IngestCreditExceeded = 1010,
}

impl StatusCode {
    /// Every code, for tests and documentation tables.
    pub const ALL: [StatusCode; 26] = [
        Self::Ok,
        Self::ResourceNotFound,
        Self::ResourceInUse,
        Self::InvalidArgument,
        Self::LimitExceeded,
        Self::ExpiredIterator,
        Self::ExpiredNextToken,
        Self::ProvisionedThroughputExceeded,
        Self::AccessDenied,
        Self::Validation,
        Self::InternalFailure,
        Self::Serialization,
        Self::MissingAuthenticationToken,
        Self::IncompleteSignature,
        Self::InvalidSignature,
        Self::BadFrame,
        Self::UnsupportedVersion,
        Self::FrameTooLarge,
        Self::UnknownOperation,
        Self::HandshakeRequired,
        Self::SubscriptionExists,
        Self::UnknownSubscription,
        Self::AuthenticationRequired,
        Self::AuthenticationFailed,
        Self::ServerBusy,
        Self::IngestCreditExceeded,
    ];

    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The known code with this wire value; `None` for a code newer than this codec (or
    /// retired).
    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0 => Self::Ok,
            1 => Self::ResourceNotFound,
            2 => Self::ResourceInUse,
            3 => Self::InvalidArgument,
            4 => Self::LimitExceeded,
            5 => Self::ExpiredIterator,
            6 => Self::ExpiredNextToken,
            7 => Self::ProvisionedThroughputExceeded,
            8 => Self::AccessDenied,
            9 => Self::Validation,
            10 => Self::InternalFailure,
            11 => Self::Serialization,
            12 => Self::MissingAuthenticationToken,
            13 => Self::IncompleteSignature,
            14 => Self::InvalidSignature,
            1000 => Self::BadFrame,
            1001 => Self::UnsupportedVersion,
            1002 => Self::FrameTooLarge,
            1003 => Self::UnknownOperation,
            1004 => Self::HandshakeRequired,
            1005 => Self::SubscriptionExists,
            1006 => Self::UnknownSubscription,
            1007 => Self::AuthenticationRequired,
            1008 => Self::AuthenticationFailed,
            1009 => Self::ServerBusy,
            1010 => Self::IngestCreditExceeded,
            _ => return None,
        })
    }

    /// The status code of a Kinesis error kind.
    ///
    /// `ErrorKind` is `#[non_exhaustive]` in `core`, so the compiler makes us name a fallback
    /// arm; a kind added to `core` before this table learns it is reported as a server fault,
    /// which is what an unexpected error is.
    pub const fn from_error_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::ResourceNotFound => Self::ResourceNotFound,
            ErrorKind::ResourceInUse => Self::ResourceInUse,
            ErrorKind::InvalidArgument => Self::InvalidArgument,
            ErrorKind::LimitExceeded => Self::LimitExceeded,
            ErrorKind::ExpiredIterator => Self::ExpiredIterator,
            ErrorKind::ExpiredNextToken => Self::ExpiredNextToken,
            ErrorKind::ProvisionedThroughputExceeded => Self::ProvisionedThroughputExceeded,
            ErrorKind::AccessDenied => Self::AccessDenied,
            ErrorKind::Validation => Self::Validation,
            ErrorKind::InternalFailure => Self::InternalFailure,
            ErrorKind::Serialization => Self::Serialization,
            ErrorKind::UnknownOperation => Self::UnknownOperation,
            ErrorKind::MissingAuthenticationToken => Self::MissingAuthenticationToken,
            ErrorKind::IncompleteSignature => Self::IncompleteSignature,
            ErrorKind::InvalidSignature => Self::InvalidSignature,
            _ => Self::InternalFailure,
        }
    }

    /// The Kinesis error kind a code stands for. `Ok` has none; the protocol's own codes map to
    /// the Kinesis kind a JSON client would have seen for the same mistake.
    pub const fn error_kind(self) -> Option<ErrorKind> {
        Some(match self {
            Self::Ok => return None,
            Self::ResourceNotFound => ErrorKind::ResourceNotFound,
            Self::ResourceInUse => ErrorKind::ResourceInUse,
            Self::InvalidArgument => ErrorKind::InvalidArgument,
            Self::LimitExceeded => ErrorKind::LimitExceeded,
            Self::ExpiredIterator => ErrorKind::ExpiredIterator,
            Self::ExpiredNextToken => ErrorKind::ExpiredNextToken,
            Self::ProvisionedThroughputExceeded => ErrorKind::ProvisionedThroughputExceeded,
            Self::AccessDenied => ErrorKind::AccessDenied,
            Self::Validation => ErrorKind::Validation,
            Self::InternalFailure => ErrorKind::InternalFailure,
            Self::Serialization => ErrorKind::Serialization,
            Self::MissingAuthenticationToken => ErrorKind::MissingAuthenticationToken,
            Self::IncompleteSignature => ErrorKind::IncompleteSignature,
            Self::InvalidSignature => ErrorKind::InvalidSignature,
            Self::BadFrame | Self::FrameTooLarge => ErrorKind::Serialization,
            Self::UnsupportedVersion | Self::HandshakeRequired => ErrorKind::InvalidArgument,
            Self::UnknownOperation => ErrorKind::UnknownOperation,
            Self::SubscriptionExists => ErrorKind::ResourceInUse,
            Self::UnknownSubscription => ErrorKind::ResourceNotFound,
            Self::AuthenticationRequired => ErrorKind::MissingAuthenticationToken,
            Self::AuthenticationFailed => ErrorKind::InvalidSignature,
            // HTTP answers the same condition 503 ServiceUnavailable, which the Kinesis model
            // has no kind for; LimitExceeded is the retryable kind closest to it.
            Self::ServerBusy => ErrorKind::LimitExceeded,
            Self::IngestCreditExceeded => ErrorKind::Serialization,
        })
    }
}

/// A status code as the wire carries it: any `u16`, known to this codec or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireStatus(pub u16);

impl WireStatus {
    pub const OK: WireStatus = WireStatus(0);

    /// The known code, or `None` for a code newer than this codec.
    pub const fn known(self) -> Option<StatusCode> {
        StatusCode::from_code(self.0)
    }

    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }
}

impl From<StatusCode> for WireStatus {
    fn from(code: StatusCode) -> Self {
        WireStatus(code.code())
    }
}

impl std::fmt::Display for WireStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.known() {
            Some(code) => write!(f, "{code:?} ({})", self.0),
            None => write!(f, "unknown status code {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_value() {
        for code in StatusCode::ALL {
            assert_eq!(StatusCode::from_code(code.code()), Some(code));
        }
    }

    #[test]
    fn wire_values_are_unique() {
        let mut values: Vec<u16> = StatusCode::ALL.iter().map(|c| c.code()).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), StatusCode::ALL.len());
    }

    #[test]
    fn published_codes_keep_their_values() {
        // These values are on the wire and in the specification; changing one breaks clients.
        assert_eq!(StatusCode::ResourceNotFound.code(), 1);
        assert_eq!(StatusCode::ProvisionedThroughputExceeded.code(), 7);
        assert_eq!(StatusCode::InternalFailure.code(), 10);
        assert_eq!(StatusCode::BadFrame.code(), 1000);
        assert_eq!(StatusCode::UnknownSubscription.code(), 1006);
        assert_eq!(StatusCode::AuthenticationRequired.code(), 1007);
        assert_eq!(StatusCode::AuthenticationFailed.code(), 1008);
        assert_eq!(StatusCode::ServerBusy.code(), 1009);
        assert_eq!(StatusCode::IngestCreditExceeded.code(), 1010);
    }

    #[test]
    fn kinesis_error_kinds_map_to_their_mirror_codes_and_back() {
        for kind in [
            ErrorKind::ResourceNotFound,
            ErrorKind::ResourceInUse,
            ErrorKind::InvalidArgument,
            ErrorKind::LimitExceeded,
            ErrorKind::ExpiredIterator,
            ErrorKind::ExpiredNextToken,
            ErrorKind::ProvisionedThroughputExceeded,
            ErrorKind::AccessDenied,
            ErrorKind::Validation,
            ErrorKind::InternalFailure,
            ErrorKind::Serialization,
            ErrorKind::UnknownOperation,
            ErrorKind::MissingAuthenticationToken,
            ErrorKind::IncompleteSignature,
            ErrorKind::InvalidSignature,
        ] {
            assert_eq!(
                StatusCode::from_error_kind(kind).error_kind(),
                Some(kind),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn unknown_codes_are_carried_not_refused() {
        let status = WireStatus(4242);
        assert_eq!(status.known(), None);
        assert_eq!(status.to_string(), "unknown status code 4242");
        assert!(!status.is_ok());
    }
}
