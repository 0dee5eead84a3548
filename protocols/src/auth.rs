//! The credentials both wires verify against, and the one rule for a listener without any.
//!
//! The HTTP API checks a SigV4 signature with these keys (`sigv4`); the binary protocol checks
//! an HMAC-SHA256 over its connection's challenge (`binary::auth`). Either way the server holds
//! the same list of (access key id, secret access key) pairs, and a listener outside loopback
//! with no key configured is refused at startup ([`AuthConfig::for_listener`]), so that an
//! appliance reachable from the network never runs open by accident.

use std::collections::HashMap;

/// Which requests the server accepts.
#[derive(Clone, Default)]
pub enum AuthMode {
    /// Any well-formed request, whatever its key and signature (the loopback default; what
    /// kinesalite and kinesis-mock do). The binary protocol then needs no Auth at all.
    #[default]
    AcceptAny,
    /// Only requests signed with one of these credentials: access key id → secret access key.
    Verify {
        credentials: HashMap<String, String>,
    },
}

// Written out so that a logged configuration shows the access key ids and never a secret.
impl std::fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AcceptAny => f.write_str("AcceptAny"),
            Self::Verify { credentials } => {
                let mut ids: Vec<&str> = credentials.keys().map(String::as_str).collect();
                ids.sort_unstable();
                f.debug_struct("Verify")
                    .field("access_key_ids", &ids)
                    .finish_non_exhaustive()
            }
        }
    }
}

/// The authentication settings of a listener (HTTP or binary).
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    pub mode: AuthMode,
}

impl AuthConfig {
    pub fn accept_any() -> Self {
        Self {
            mode: AuthMode::AcceptAny,
        }
    }

    /// Verifies signatures against `credentials` (access key id, secret access key).
    pub fn verify<K: Into<String>, S: Into<String>>(
        credentials: impl IntoIterator<Item = (K, S)>,
    ) -> Self {
        Self {
            mode: AuthMode::Verify {
                credentials: credentials
                    .into_iter()
                    .map(|(k, s)| (k.into(), s.into()))
                    .collect(),
            },
        }
    }

    pub fn verifies(&self) -> bool {
        matches!(self.mode, AuthMode::Verify { .. })
    }

    /// The server's rule for each of its listeners: configured credentials are always verified;
    /// without any, a loopback listener accepts any signature, and any other listener is refused,
    /// so that an appliance reachable from the network never runs open by accident.
    pub fn for_listener(
        listener: std::net::SocketAddr,
        credentials: Vec<(String, String)>,
    ) -> Result<Self, NoCredentials> {
        if !credentials.is_empty() {
            return Ok(Self::verify(credentials));
        }
        if listener.ip().is_loopback() {
            Ok(Self::accept_any())
        } else {
            Err(NoCredentials { listener })
        }
    }
}

/// A listener outside loopback with no credentials configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to serve Kinesis on {listener} without credentials: configure at least one access key (or listen on loopback, where any signature is accepted)"
)]
pub struct NoCredentials {
    pub listener: std::net::SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_shows_its_access_key_ids_but_never_a_secret() {
        let shown = format!("{:?}", AuthConfig::verify([("AKID", "very-secret")]));
        assert!(shown.contains("AKID"), "{shown}");
        assert!(!shown.contains("very-secret"), "{shown}");
    }

    #[test]
    fn only_loopback_listeners_may_run_without_credentials() {
        let loopback: std::net::SocketAddr = "127.0.0.1:4567".parse().expect("valid");
        let v6_loopback: std::net::SocketAddr = "[::1]:4567".parse().expect("valid");
        let anywhere: std::net::SocketAddr = "0.0.0.0:4567".parse().expect("valid");
        assert!(
            !AuthConfig::for_listener(loopback, Vec::new())
                .expect("allowed")
                .verifies()
        );
        assert!(
            !AuthConfig::for_listener(v6_loopback, Vec::new())
                .expect("allowed")
                .verifies()
        );
        assert_eq!(
            AuthConfig::for_listener(anywhere, Vec::new()).map(|_| ()),
            Err(NoCredentials { listener: anywhere })
        );
        let credentials = vec![("AKID".to_owned(), "secret".to_owned())];
        for addr in [loopback, anywhere] {
            assert!(
                AuthConfig::for_listener(addr, credentials.clone())
                    .expect("allowed")
                    .verifies()
            );
        }
    }
}
