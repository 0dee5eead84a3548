//! Window snapshots: the state of an application's snapshotted pumps (stagger pumps and what
//! they feed, see [`crate::pipeline`]) at a cut of its input, and the bytes of the file that
//! holds it. A pure codec: where the files live and when they are written is
//! [`crate::snapshot_store`]'s.
//!
//! A snapshot is taken at a **cut**: for every shard read, the position after the last record
//! the pipeline had been given. Its pumps' state is exactly what they hold after every record
//! below the cut and none at or above it. After a restart the runner restores that state, reads
//! each shard from its committed position (never above the cut), hands the records below the
//! cut to `Pipeline::ingest_replayed` (which the restored pumps ignore: they hold them already)
//! and the rest to `Pipeline::ingest`. Every record thus reaches a snapshotted pump once.
//!
//! # File layout
//!
//! All integers are little-endian.
//!
//! | offset | bytes | field                                                               |
//! |--------|-------|---------------------------------------------------------------------|
//! | 0      | 8     | magic, `SLWINSNP`                                                   |
//! | 8      | 4     | format version, [`VERSION`]                                         |
//! | 12     | 8     | generation: the number the checkpoint marker names                  |
//! | 20     | 8     | body length `n`                                                     |
//! | 28     | `n`   | body: [`SnapshotBody`] in CBOR (RFC 8949), written by serde/ciborium |
//! | 28 + n | 4     | CRC-32C (Castagnoli) of bytes `0 .. 28 + n`                         |
//!
//! [`decode`] checks the size, magic, version, body length, checksum and generation, in that
//! order, before it parses the body, so a torn, truncated, bit-flipped or stale file is
//! reported and never restored. CBOR keeps struct fields by name: a field added with a serde
//! default is read from older files, but renaming, removing or retyping one (or a variant of
//! `Value` or `Acc`) needs a version bump and an old-format fixture
//! (`tests/fixtures/analytics-window-snapshot-v1.bin`, checked by a test here).
//!
//! Assumptions about the media: a file that was fsynced, renamed over its name and whose
//! directory was fsynced survives a crash whole (`sluice-durable`); the CRC catches what
//! a device returns wrong later.

use serde::{Deserialize, Serialize};

use crate::pipeline::PumpSnapshot;

/// The first bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"SLWINSNP";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Magic, version, generation and body length.
pub const HEADER_BYTES: usize = 28;
/// The CRC-32C after the body.
pub const TRAILER_BYTES: usize = 4;

const _: () = assert!(HEADER_BYTES == MAGIC.len() + 4 + 8 + 8);
const _: () = assert!(TRAILER_BYTES == size_of::<u32>());

/// The position after the last record of shard `shard_index` that a snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCut {
    pub shard_index: u32,
    pub position: u64,
}

/// What a snapshot file holds after its header.
///
/// Serialized in snapshot files: no field is renamed, removed or retyped without a format
/// version bump and a compatibility fixture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotBody {
    /// The application's creation time (ms): a snapshot left by an application that was
    /// deleted and created again under the same name is not restored.
    pub application_create_ms: u64,
    /// The cut, one entry per shard the state holds records of, in shard order.
    pub cut: Vec<ShardCut>,
    /// The runner's ROWTIME after the last record below the cut. ROWTIME never decreases, so
    /// records after the cut get at least this one, as they would have without the restart.
    pub last_rowtime_ms: i64,
    /// The snapshotted pumps' state, in program order.
    pub pumps: Vec<PumpSnapshot>,
}

impl SnapshotBody {
    /// The cut's position for shard `shard_index`; `None` when the state holds none of its
    /// records.
    pub fn cut_of(&self, shard_index: u32) -> Option<u64> {
        self.cut
            .iter()
            .find(|c| c.shard_index == shard_index)
            .map(|c| c.position)
    }
}

/// Why the bytes of a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeSnapshotError {
    #[error("the file is {len} bytes, shorter than a snapshot's header and checksum")]
    Truncated { len: usize },
    #[error("the file does not start with a window snapshot's magic bytes")]
    NotASnapshot,
    #[error("format version {version} is not one this build reads (it reads {VERSION})")]
    UnsupportedVersion { version: u32 },
    #[error("the header gives a body of {stored} bytes, the file holds {actual}")]
    LengthMismatch { stored: u64, actual: u64 },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Corrupt { stored: u32, computed: u32 },
    #[error("the file holds generation {found}, the checkpoint names {expected}")]
    WrongGeneration { expected: u64, found: u64 },
    #[error("the body does not decode: {message}")]
    Body { message: String },
}

/// The file bytes of `body` as generation `generation`.
pub fn encode(generation: u64, body: &SnapshotBody) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_BYTES + 4096);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&generation.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    ciborium::into_writer(body, &mut bytes)
        .expect("a snapshot body serializes into memory: every field has a CBOR form");
    let body_bytes = (bytes.len() - HEADER_BYTES) as u64;
    bytes[20..HEADER_BYTES].copy_from_slice(&body_bytes.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    debug_assert!(
        decode(&bytes, generation).is_ok(),
        "a snapshot decodes as written"
    );
    bytes
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut le = [0; 4];
    le.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(le)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut le = [0; 8];
    le.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(le)
}

/// The body of snapshot file `bytes`, which must be generation `expected_generation`.
pub fn decode(bytes: &[u8], expected_generation: u64) -> Result<SnapshotBody, DecodeSnapshotError> {
    if bytes.len() < HEADER_BYTES + TRAILER_BYTES {
        return Err(DecodeSnapshotError::Truncated { len: bytes.len() });
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeSnapshotError::NotASnapshot);
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return Err(DecodeSnapshotError::UnsupportedVersion { version });
    }
    let stored = u64_at(bytes, 20);
    let actual = (bytes.len() - HEADER_BYTES - TRAILER_BYTES) as u64;
    if stored != actual {
        return Err(DecodeSnapshotError::LengthMismatch { stored, actual });
    }
    let end = bytes.len() - TRAILER_BYTES;
    let (stored, computed) = (u32_at(bytes, end), crc32c::crc32c(&bytes[..end]));
    if stored != computed {
        return Err(DecodeSnapshotError::Corrupt { stored, computed });
    }
    let found = u64_at(bytes, 12);
    if found != expected_generation {
        return Err(DecodeSnapshotError::WrongGeneration {
            expected: expected_generation,
            found,
        });
    }
    ciborium::from_reader(&bytes[HEADER_BYTES..end]).map_err(|e| DecodeSnapshotError::Body {
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-pump snapshot: a stagger pump with two open windows and a tumbling pump it feeds.
    fn body() -> SnapshotBody {
        let sql = r#"
            CREATE OR REPLACE STREAM "MID" ("sym" VARCHAR(8), "n" BIGINT, "q" DOUBLE);
            CREATE OR REPLACE STREAM "OUT" ("n" BIGINT, "hi" DOUBLE);
            CREATE OR REPLACE PUMP "S" AS INSERT INTO "MID"
              SELECT STREAM "sym", COUNT(*), AVG("px") FROM "SRC_001"
              WINDOWED BY STAGGER (PARTITION BY "sym" RANGE INTERVAL '2' SECOND);
            CREATE OR REPLACE PUMP "T" AS INSERT INTO "OUT"
              SELECT STREAM COUNT(*), MAX("q") FROM "MID"
              GROUP BY STEP("MID".ROWTIME BY INTERVAL '10' SECOND);"#;
        let schema = r#"{
          "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
          "RecordColumns": [{"Name": "sym", "Mapping": "$.sym", "SqlType": "VARCHAR(8)"},
                            {"Name": "px", "Mapping": "$.px", "SqlType": "DOUBLE"}]
        }"#;
        let program = crate::program::parse_program(sql).expect("parses");
        let wire: crate::schema_wire::WireSourceSchema =
            serde_json::from_str(schema).expect("a schema");
        let input = crate::pipeline::PipelineInput {
            stream: "SRC_001".into(),
            schema: wire.to_domain().expect("a schema"),
        };
        let mut pipeline =
            crate::pipeline::Pipeline::compile(&program, &[input]).expect("compiles");
        let mut out = crate::pipeline::Emissions::default();
        for (data, t) in [
            (r#"{"sym":"A","px":1.5}"#, 1_000),
            (r#"{"sym":"B","px":2.0}"#, 1_500),
            (r#"{"sym":"A","px":-0.25}"#, 3_200),
            (r#"{"sym":"é","px":null}"#, 3_300),
        ] {
            pipeline.ingest(0, &[(data.as_bytes(), t)], t, &mut out);
        }
        SnapshotBody {
            application_create_ms: 1_700_000_000_123,
            cut: vec![
                ShardCut {
                    shard_index: 0,
                    position: 4,
                },
                ShardCut {
                    shard_index: 3,
                    position: u64::MAX,
                },
            ],
            last_rowtime_ms: 3_300,
            pumps: pipeline.snapshot_pumps(),
        }
    }

    #[test]
    fn a_snapshot_decodes_to_what_was_encoded() {
        let body = body();
        assert_eq!(body.pumps.len(), 2, "both pumps are snapshotted");
        let bytes = encode(7, &body);
        assert_eq!(&bytes[..8], b"SLWINSNP");
        assert_eq!(decode(&bytes, 7).expect("decodes"), body);
        assert_eq!(body.cut_of(3), Some(u64::MAX));
        assert_eq!(body.cut_of(1), None);
    }

    #[test]
    fn a_snapshot_of_another_generation_is_refused() {
        let bytes = encode(7, &body());
        assert!(matches!(
            decode(&bytes, 8),
            Err(DecodeSnapshotError::WrongGeneration {
                expected: 8,
                found: 7
            })
        ));
    }

    #[test]
    fn every_truncation_of_a_snapshot_is_reported() {
        let bytes = encode(1, &body());
        for len in 0..bytes.len() {
            let error = decode(&bytes[..len], 1).expect_err("a truncated file is refused");
            assert!(
                matches!(
                    error,
                    DecodeSnapshotError::Truncated { .. }
                        | DecodeSnapshotError::LengthMismatch { .. }
                ),
                "length {len}: {error}"
            );
        }
    }

    #[test]
    fn every_flipped_bit_of_a_snapshot_is_reported() {
        let bytes = encode(1, &body());
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[byte] ^= 1 << bit;
                assert!(
                    decode(&flipped, 1).is_err(),
                    "bit {bit} of byte {byte} flipped went unnoticed"
                );
            }
        }
    }

    #[test]
    fn an_unknown_version_is_refused_before_its_body_is_read() {
        let mut bytes = encode(1, &body());
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            decode(&bytes, 1),
            Err(DecodeSnapshotError::UnsupportedVersion { version: 2 })
        ));
    }

    /// The version-1 fixture: an old file must keep decoding to the same state. Regenerate it
    /// (only together with a version bump) with `SLUICE_WRITE_FIXTURES=1`.
    #[test]
    fn the_version_1_fixture_still_decodes() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/analytics-window-snapshot-v1.bin"
        );
        if std::env::var_os("SLUICE_WRITE_FIXTURES").is_some() {
            std::fs::write(path, encode(3, &body())).expect("fixture written");
        }
        let bytes = std::fs::read(path).expect("the fixture is in the repository");
        assert_eq!(decode(&bytes, 3).expect("decodes"), body());
    }
}
