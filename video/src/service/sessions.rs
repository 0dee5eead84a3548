//! HLS and DASH streaming sessions: what each was asked for, and the table of live ones (by
//! token, expiring, at most [`SESSIONS_PER_STREAM_MAX`] per stream).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::remux::playlist;

/// At most this many HLS or DASH sessions per stream; the oldest is revoked for a new one.
pub(super) const SESSIONS_PER_STREAM_MAX: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SessionKind {
    Hls,
    Dash,
}

/// One HLS or DASH streaming session.
#[derive(Clone, Debug)]
pub(super) struct Session {
    pub(super) kind: SessionKind,
    /// ContainerFormat: FRAGMENTED_MP4 for every DASH session.
    pub(super) container: playlist::HlsContainer,
    pub(super) stream_name: String,
    pub(super) internal_stream: String,
    pub(super) mode: playlist::PlaybackMode,
    pub(super) source: playlist::TimestampSource,
    pub(super) start_ms: Option<u64>,
    pub(super) end_ms: Option<u64>,
    pub(super) discontinuity: playlist::DiscontinuityMode,
    pub(super) display_timestamp: bool,
    pub(super) display_number: bool,
    pub(super) max_results: usize,
    pub(super) created_ms: u64,
    pub(super) expires_ms: u64,
}

/// The live sessions, by token.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn create(&self, session: Session, now_ms: u64) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut map = self.lock();
        map.retain(|_, s| s.expires_ms > now_ms);
        let mut of_stream: Vec<(u64, String)> = map
            .iter()
            .filter(|(_, s)| s.internal_stream == session.internal_stream)
            .map(|(t, s)| (s.created_ms, t.clone()))
            .collect();
        of_stream.sort();
        while of_stream.len() >= SESSIONS_PER_STREAM_MAX {
            let (_, oldest) = of_stream.remove(0);
            map.remove(&oldest);
        }
        map.insert(token.clone(), session);
        token
    }

    pub(super) fn get(&self, token: &str, now_ms: u64) -> Option<Session> {
        self.lock()
            .get(token)
            .filter(|s| s.expires_ms > now_ms)
            .cloned()
    }
}
