//! RTMP ingest's chunk guard (`sluice_video::rtmp::chunk::ChunkGuard`) in front of rml_rtmp's
//! server session, fed as a connection feeds them: whatever a client sends after the handshake,
//! in whatever pieces, the guard refuses it or the session answers with events or an error,
//! and nothing panics (a release build aborts on a panic, so a panic here is a remote crash).
//! The session accepts every connect and publish, so the publishing paths run too.
//!
//! Input layout: 4 bytes seeding the piece sizes, then the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult};
use sluice_video::rtmp::chunk::ChunkGuard;

fuzz_target!(|data: &[u8]| {
    let Some((seed, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let mut seed = u32::from_le_bytes(*seed) | 1;
    let Ok((mut session, _)) = ServerSession::new(ServerSessionConfig::new()) else {
        return;
    };
    let mut guard = ChunkGuard::default();
    let mut rest = body;
    while !rest.is_empty() {
        // xorshift32: piece sizes from 1 byte to 1 KiB.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let take = (1 + seed as usize % 1024).min(rest.len());
        if guard.check(&rest[..take]).is_err() {
            return;
        }
        let Ok(mut results) = session.handle_input(&rest[..take]) else {
            return;
        };
        while let Some(result) = results.pop() {
            if let ServerSessionResult::RaisedEvent(
                ServerSessionEvent::ConnectionRequested { request_id, .. }
                | ServerSessionEvent::PublishStreamRequested { request_id, .. },
            ) = result
            {
                match session.accept_request(request_id) {
                    Ok(more) => results.extend(more),
                    Err(_) => return,
                }
            }
        }
        rest = &rest[take..];
    }
});
