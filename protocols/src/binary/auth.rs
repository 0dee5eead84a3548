//! Authentication of a binary-protocol connection (version 2 and later), specified byte by byte
//! in `docs/binary-protocol.md`.
//!
//! The server's hello carries a fresh random nonce. A client holding an access key answers with
//! an Auth request: its access key id and `HMAC-SHA256(secret access key, string to sign)`, where
//! the string to sign is
//!
//! ```text
//! "SLCE" | "AUTH" | version u16 | server_nonce [32] | access_key_id str
//! ```
//!
//! (`str` as everywhere on the wire: a `u16` length and the UTF-8 bytes). The secret never
//! crosses the wire, the nonce makes a signature worthless on any other connection, and the
//! version and key id are signed so that neither can be swapped. The server recomputes the MAC
//! with the secret it holds for that key id ([`crate::auth::AuthConfig`], the same list SigV4
//! uses) and compares in constant time.

use hmac::{KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::auth::{AuthConfig, AuthMode};
use crate::binary::frame::WireAuth;
use crate::binary::limits::{AUTH_SIGNATURE_BYTES, MAGIC, SERVER_NONCE_BYTES};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The four bytes after the magic in every string to sign, so that the MAC of an Auth can never
/// be mistaken for a MAC over any other message made with the same key.
pub const AUTH_LABEL: [u8; 4] = *b"AUTH";

const _: () = assert!(AUTH_SIGNATURE_BYTES == 32, "one HMAC-SHA256 output");

/// Why an Auth was refused. Both are answered with `AuthenticationFailed`; the message tells
/// the operator which part to check.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("The access key id {access_key_id:?} is not one this server knows.")]
    UnknownAccessKey { access_key_id: String },
    #[error(
        "The signature for access key id {access_key_id:?} does not match; check the secret access key."
    )]
    SignatureMismatch { access_key_id: String },
}

/// The bytes a client signs: see the module doc.
pub fn string_to_sign(
    version: u16,
    server_nonce: &[u8; SERVER_NONCE_BYTES],
    access_key_id: &str,
) -> Vec<u8> {
    let key_bytes = access_key_id.as_bytes();
    // A key id longer than a wire string cannot be sent in an Auth frame; the encoder refuses
    // it before a signature matters, so truncating the length here changes nothing on the wire.
    let key_len = u16::try_from(key_bytes.len()).unwrap_or(u16::MAX);
    let mut bytes = Vec::with_capacity(4 + 4 + 2 + SERVER_NONCE_BYTES + 2 + key_bytes.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&AUTH_LABEL);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(server_nonce);
    bytes.extend_from_slice(&key_len.to_le_bytes());
    bytes.extend_from_slice(&key_bytes[..usize::from(key_len)]);
    bytes
}

fn mac(secret_access_key: &str, message: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret_access_key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(message);
    mac
}

/// The signature a client sends in its Auth.
pub fn sign(
    secret_access_key: &str,
    version: u16,
    server_nonce: &[u8; SERVER_NONCE_BYTES],
    access_key_id: &str,
) -> [u8; AUTH_SIGNATURE_BYTES] {
    let message = string_to_sign(version, server_nonce, access_key_id);
    mac(secret_access_key, &message)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks an Auth against the server's credentials. With [`AuthMode::AcceptAny`] (loopback
/// without credentials) every Auth passes, as every SigV4 signature does over HTTP.
pub fn verify(
    config: &AuthConfig,
    version: u16,
    server_nonce: &[u8; SERVER_NONCE_BYTES],
    auth: &WireAuth<'_>,
) -> Result<(), AuthError> {
    let AuthMode::Verify { credentials } = &config.mode else {
        return Ok(());
    };
    let Some(secret) = credentials.get(auth.access_key_id) else {
        return Err(AuthError::UnknownAccessKey {
            access_key_id: auth.access_key_id.to_owned(),
        });
    };
    let message = string_to_sign(version, server_nonce, auth.access_key_id);
    // `verify_slice` compares in constant time, so the answer's timing says nothing about how
    // much of a forged signature was right.
    mac(secret, &message)
        .verify_slice(&auth.signature)
        .map_err(|_| AuthError::SignatureMismatch {
            access_key_id: auth.access_key_id.to_owned(),
        })
}

/// A fresh nonce for one server hello, from the thread's CSPRNG (ChaCha, seeded and reseeded
/// from the operating system).
pub fn server_nonce() -> [u8; SERVER_NONCE_BYTES] {
    use rand::RngCore as _;
    let mut nonce = [0u8; SERVER_NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: [u8; SERVER_NONCE_BYTES] = [7; SERVER_NONCE_BYTES];

    fn auth<'a>(access_key_id: &'a str, signature: [u8; 32]) -> WireAuth<'a> {
        WireAuth {
            access_key_id,
            signature,
        }
    }

    #[test]
    fn the_string_to_sign_is_laid_out_as_the_specification_says() {
        let bytes = string_to_sign(2, &NONCE, "AK");
        let mut expected = b"SLCEAUTH".to_vec();
        expected.extend_from_slice(&[2, 0]);
        expected.extend_from_slice(&NONCE);
        expected.extend_from_slice(&[2, 0, b'A', b'K']);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_string_to_sign() {
        // RFC 4231 test case 2 checks the primitive itself: key "Jefe".
        let mut mac = HmacSha256::new_from_slice(b"Jefe").expect("any key length");
        mac.update(b"what do ya want for nothing?");
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
        assert_eq!(
            sign("secret", 2, &NONCE, "AK"),
            mac_of("secret", &string_to_sign(2, &NONCE, "AK"))
        );
    }

    fn mac_of(secret: &str, message: &[u8]) -> [u8; 32] {
        mac(secret, message).finalize().into_bytes().into()
    }

    #[test]
    fn the_specification_example_signs_as_documented() {
        let hex: String = sign("s", 2, &NONCE, "AK")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "b831341ff9ab06736f87dfabac3cc256e302918e7bad8a24ae156114aa457e7a"
        );
    }

    #[test]
    fn a_signature_made_with_the_right_secret_is_accepted() {
        let config = AuthConfig::verify([("AK", "secret")]);
        let signature = sign("secret", 2, &NONCE, "AK");
        assert_eq!(verify(&config, 2, &NONCE, &auth("AK", signature)), Ok(()));
    }

    #[test]
    fn a_wrong_secret_an_unknown_key_another_nonce_or_version_are_refused() {
        let config = AuthConfig::verify([("AK", "secret")]);
        let wrong_secret = sign("guess", 2, &NONCE, "AK");
        assert!(matches!(
            verify(&config, 2, &NONCE, &auth("AK", wrong_secret)),
            Err(AuthError::SignatureMismatch { .. })
        ));
        let signature = sign("secret", 2, &NONCE, "AK");
        assert!(matches!(
            verify(&config, 2, &NONCE, &auth("OTHER", signature)),
            Err(AuthError::UnknownAccessKey { .. })
        ));
        let other_nonce = [8; SERVER_NONCE_BYTES];
        assert!(verify(&config, 2, &other_nonce, &auth("AK", signature)).is_err());
        assert!(verify(&config, 3, &NONCE, &auth("AK", signature)).is_err());
    }

    #[test]
    fn without_credentials_any_auth_is_accepted() {
        let config = AuthConfig::accept_any();
        assert_eq!(verify(&config, 2, &NONCE, &auth("anyone", [0; 32])), Ok(()));
    }

    #[test]
    fn every_connection_gets_a_different_nonce() {
        assert_ne!(server_nonce(), server_nonce());
    }
}
