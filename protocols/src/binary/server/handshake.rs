//! The handshake of a connection: the hello, then, on a server that verifies credentials, the
//! Auth that answers the hello's challenge (`binary::auth`). A connection is served only in
//! [`Handshake::Ready`]; every refusal here closes it.

use std::rc::Rc;

use sluice_core::KinesisApi;
use sluice_core::storage::RecordLog;

use super::{Connection, Next, Runtime};
use crate::binary::auth as binary_auth;
use crate::binary::limits::{
    AUTH_VERSION_MIN, INGEST_CREDIT_VERSION_MIN, PROTOCOL_VERSIONS, SERVER_NONCE_BYTES,
};
use crate::binary::{
    Body, Frame, IngestCredit, Opcode, StatusCode, WireAuthChallenge, WireServerHello,
};

/// Where a connection is in its handshake.
pub(super) enum Handshake {
    /// Nothing received yet: the first frame must be a hello.
    AwaitHello,
    /// The server verifies credentials and sent this challenge: the next frame must be an Auth
    /// that answers it.
    AwaitAuth {
        version: u16,
        server_nonce: [u8; SERVER_NONCE_BYTES],
    },
    Ready,
}

impl<A, L, R> Connection<A, L, R>
where
    A: KinesisApi + 'static,
    L: RecordLog,
    R: Runtime,
{
    /// A frame before the handshake is done.
    pub(super) fn on_handshake_frame(
        self: &Rc<Self>,
        frame: Frame<'_>,
        handshake: &mut Handshake,
    ) -> Next {
        let request_id = frame.request_id;
        let (version, server_nonce) = match handshake {
            Handshake::AwaitHello => return self.on_hello(frame, handshake),
            Handshake::AwaitAuth {
                version,
                server_nonce,
            } => (*version, *server_nonce),
            Handshake::Ready => unreachable!("a ready connection's frames are requests"),
        };
        let Body::Auth(auth) = &frame.body else {
            self.respond_error(
                request_id,
                frame.body.opcode_and_flags().0,
                StatusCode::AuthenticationRequired,
                "This server verifies credentials: the frame after the hello must be an Auth.",
            );
            return Next::Close;
        };
        match binary_auth::verify(&self.server.config.auth, version, &server_nonce, auth) {
            Ok(()) => {
                self.respond(request_id, Body::AuthOk);
                *handshake = Handshake::Ready;
                Next::Continue
            }
            Err(error) => {
                tracing::info!(
                    access_key_id = auth.access_key_id,
                    %error,
                    "A binary connection failed to authenticate; closing it."
                );
                self.respond_error(
                    request_id,
                    Opcode::Auth.code(),
                    StatusCode::AuthenticationFailed,
                    &error.to_string(),
                );
                Next::Close
            }
        }
    }

    /// Answers the first frame of a connection, which must be a hello.
    fn on_hello(&self, frame: Frame<'_>, handshake: &mut Handshake) -> Next {
        let request_id = frame.request_id;
        let Body::Hello(hello) = &frame.body else {
            self.respond_error(
                request_id,
                frame.body.opcode_and_flags().0,
                StatusCode::HandshakeRequired,
                "The first frame of a connection must be a Hello.",
            );
            return Next::Close;
        };
        let Some(version) = hello.choose_version(PROTOCOL_VERSIONS) else {
            let message = format!(
                "No common protocol version: the client offered {:?}, the server speaks {:?}.",
                hello.versions, PROTOCOL_VERSIONS
            );
            self.respond_error(
                request_id,
                Opcode::Hello.code(),
                StatusCode::UnsupportedVersion,
                &message,
            );
            return Next::Close;
        };
        let config = &self.server.config;
        let verifies = config.auth.verifies();
        if version < AUTH_VERSION_MIN && verifies {
            // Version 1 has no way to authenticate, so a server with credentials cannot serve it.
            let message = format!(
                "This server verifies credentials, which needs protocol version {AUTH_VERSION_MIN} or later; the client offered {:?}.",
                hello.versions
            );
            self.respond_error(
                request_id,
                Opcode::Hello.code(),
                StatusCode::AuthenticationRequired,
                &message,
            );
            return Next::Close;
        }
        let challenge = (version >= AUTH_VERSION_MIN).then(|| WireAuthChallenge {
            auth_required: verifies,
            server_nonce: binary_auth::server_nonce(),
        });
        // Versions 1 and 2 have no ingest credit: their PutBatches are bounded by the budget
        // alone (the read loop stops reading), and no IngestCredit is ever pushed to them.
        let ingest_credit_bytes =
            (version >= INGEST_CREDIT_VERSION_MIN).then_some(config.ingest_credit_bytes);
        *self.ingest.borrow_mut() = ingest_credit_bytes.map(IngestCredit::new);
        self.respond(
            request_id,
            Body::HelloOk(WireServerHello {
                version,
                core_count: config.core_count,
                core_id: config.core_id,
                core_ports: config.ports.get(),
                challenge,
                ingest_credit_bytes,
            }),
        );
        *handshake = match challenge {
            Some(challenge) if challenge.auth_required => Handshake::AwaitAuth {
                version,
                server_nonce: challenge.server_nonce,
            },
            _ => Handshake::Ready,
        };
        Next::Continue
    }

    /// An Auth on a connection whose handshake is done. Without credentials any Auth passes, as
    /// any SigV4 signature does over HTTP, so a client configured with a key works against a
    /// loopback server that has none.
    pub(super) fn on_auth_after_handshake(&self, request_id: u64) {
        if !self.server.config.auth.verifies() {
            self.respond(request_id, Body::AuthOk);
            return;
        }
        self.respond_error(
            request_id,
            Opcode::Auth.code(),
            StatusCode::BadFrame,
            "The connection is already authenticated; a connection authenticates once.",
        );
    }
}
