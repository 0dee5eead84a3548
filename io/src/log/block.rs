//! The on-disk block and chunk codec of the per-core log (see `docs/segment-format.md`).
//!
//! A block is what one group commit writes: a 64-byte header, then one chunk per shard that
//! had records in the commit, padded with zeros to a multiple of [`BLOCK_ALIGN`] so the next
//! block starts 4 KiB-aligned and every block can be written with O_DIRECT. Each chunk starts
//! 16-byte aligned inside its block, and so does its rkyv payload, so a payload read into a
//! 4 KiB-aligned buffer can be accessed in place.
//!
//! This module is pure (no io_uring, no files): it encodes into and decodes from byte slices,
//! so it can be tested (and run under Miri) on its own. All integers are little-endian.
//!
//! Invariants:
//! - `crc` in the block header is CRC32C over the header (with the `crc` field zeroed) and the
//!   body; `crc` in a chunk header is CRC32C over the whole chunk (with its `crc` field zeroed).
//!   Both are computed at encode time and checked after every read.
//! - `chunk_len`, the payload offset and the payload length are multiples of 16 or are padded
//!   to one; a chunk never crosses the end of the block body.
//! - An encrypted chunk (flag [`CHUNK_FLAG_ENCRYPTED`], format version 2) stores, as its
//!   payload, a 16-byte envelope (key reference, 96-bit nonce), the AES-256-GCM ciphertext of
//!   the rkyv archive and the 16-byte tag. Everything of the chunk before the ciphertext (with
//!   the `crc` field zeroed) is the associated data, so a ciphertext cannot be moved to another
//!   shard, position or key. The CRC covers the stored (encrypted) bytes.
//! - Since format version 3 every encrypted chunk also has [`CHUNK_FLAG_SEGMENT_KEY`]: its key
//!   is derived from the data key for the (log, segment) it is written to, so no AES key
//!   encrypts more than [`SEGMENT_KEY_CHUNKS_MAX`] chunks, far below the 2^32 that random
//!   96-bit nonces allow. A chunk without the flag (format version 2) was encrypted under the
//!   data key itself and is still read that way.

use std::ops::Range;

use aes_gcm::Nonce;
use aes_gcm::aead::AeadInPlace;

use crate::keystore::SegmentKeyId;

/// O_DIRECT alignment of block starts and lengths inside a segment file.
pub const BLOCK_ALIGN: usize = 4096;
/// Alignment of chunks and of their rkyv payloads inside a block.
pub const CHUNK_ALIGN: usize = 16;
/// Bytes of the block header.
pub const HEADER_LEN: usize = 64;
/// Bytes of the fixed part of a chunk header (the stream name follows it).
pub const CHUNK_HEADER_LEN: usize = 48;
/// First eight bytes of every block.
pub const MAGIC: [u8; 8] = *b"SLUICEBK";
/// Bumped on any change to the header, chunk or archived record layout.
/// Version 2 added encrypted chunks; version 1 blocks (no chunk flags) are still read.
/// Version 3 added per-segment chunk keys ([`CHUNK_FLAG_SEGMENT_KEY`]); version 2 chunks
/// encrypted under the data key itself are still read.
/// Version 4 added `synced_below` to the block header (zero, "no claim", in older blocks).
pub const FORMAT_VERSION: u16 = 4;
/// First format version whose block headers carry `synced_below`.
pub const SYNCED_BELOW_VERSION: u16 = 4;
/// Oldest block format version this code reads.
pub const MIN_FORMAT_VERSION: u16 = 1;
/// Chunk flag: the payload is an encryption envelope around the rkyv archive.
pub const CHUNK_FLAG_ENCRYPTED: u16 = 1;
/// Chunk flag, only with [`CHUNK_FLAG_ENCRYPTED`]: the chunk key is derived for its segment
/// ([`crate::keystore::DataKey::segment_cipher`]). Set on every encrypted chunk since format
/// version 3; without it the data key encrypted the chunk directly.
pub const CHUNK_FLAG_SEGMENT_KEY: u16 = 2;
/// Bytes of the envelope before the ciphertext: key reference (4) and nonce (12).
pub const ENVELOPE_LEN: usize = 16;
/// Bytes of the AES-GCM tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;

const _: () = assert!(HEADER_LEN.is_multiple_of(CHUNK_ALIGN));
const _: () = assert!(CHUNK_HEADER_LEN.is_multiple_of(CHUNK_ALIGN));
const _: () = assert!(BLOCK_ALIGN.is_multiple_of(CHUNK_ALIGN));

/// Bytes of the smallest encrypted chunk: the header, a stream name of at least one byte
/// padded to 16, the envelope and the tag (an archive adds more).
pub const ENCRYPTED_CHUNK_LEN_MIN: usize = CHUNK_HEADER_LEN + CHUNK_ALIGN + ENVELOPE_LEN + TAG_LEN;
/// Encryptions we allow under one AES key with random 96-bit nonces: 2^24, a 256th of the
/// 2^32 of NIST SP 800-38D §8.3, which keeps the chance of a repeated nonce below 2^-49.
pub const SEGMENT_KEY_CHUNKS_MAX: u64 = 1 << 24;
/// Largest segment whose chunks all stay within [`SEGMENT_KEY_CHUNKS_MAX`] under one derived
/// key (1.5 GiB). A segment's key also encrypts the torn tail that a recovery overwrites, at
/// most one commit per reopen; `Log::open` keeps a commit's extent plus `segment_bytes` below
/// this.
pub const SEGMENT_BYTES_MAX: u64 = SEGMENT_KEY_CHUNKS_MAX * ENCRYPTED_CHUNK_LEN_MIN as u64;

const _: () = assert!(ENCRYPTED_CHUNK_LEN_MIN == 96);
const _: () = assert!(SEGMENT_KEY_CHUNKS_MAX <= (1 << 32) / 256);
const _: () =
    assert!(SEGMENT_BYTES_MAX / (ENCRYPTED_CHUNK_LEN_MIN as u64) <= SEGMENT_KEY_CHUNKS_MAX);

const CRC_FIELD: Range<usize> = 36..40;
const CHUNK_CRC_FIELD: Range<usize> = 4..8;

/// One record as stored inside a chunk payload.
///
/// WARNING: this struct is part of the on-disk format. Do not add, remove, reorder or retype
/// fields without bumping [`FORMAT_VERSION`] and adding a compatibility fixture for the old
/// version. `data` is `Bytes` (shared with the request it came in) but archives exactly as the
/// `Vec<u8>` it was before: both are an rkyv `ArchivedVec<u8>` serialized from the same slice
/// (checked by `records_archive_as_they_did_with_vec_data`).
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub partition_key: String,
    pub data: bytes::Bytes,
}

/// The rkyv root of a chunk payload: the records of one shard in one block, in position order.
///
/// WARNING: this struct is part of the on-disk format. Do not add, remove, reorder or retype
/// fields without bumping [`FORMAT_VERSION`] and adding a compatibility fixture for the old
/// version.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    pub records: Vec<StoredRecord>,
}

/// Rounds `len` up to a multiple of `align` (a power of two).
pub const fn align_up(len: usize, align: usize) -> usize {
    (len + align - 1) & !(align - 1)
}

/// What a chunk says about itself, borrowed from the block bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader<'a> {
    pub chunk_len: usize,
    pub crc: u32,
    pub stream_name: &'a str,
    pub shard_index: u32,
    pub stream_created_ms: u64,
    pub first_position: u64,
    pub arrival_ms: u64,
    pub record_count: u32,
    /// Chunk flags ([`CHUNK_FLAG_ENCRYPTED`]); always 0 in format version 1.
    pub flags: u16,
    /// Payload range relative to the chunk start (for an encrypted chunk: the envelope, the
    /// ciphertext and the tag).
    pub payload: Range<usize>,
}

impl ChunkHeader<'_> {
    pub fn is_encrypted(&self) -> bool {
        self.flags & CHUNK_FLAG_ENCRYPTED != 0
    }
}

/// How to encrypt one chunk: the data key, the segment the chunk is written to (which picks
/// the derived key) and a nonce never used before with that key.
#[derive(Debug, Clone, Copy)]
pub struct ChunkEncryption<'a> {
    pub key: &'a crate::keystore::DataKey,
    pub segment: SegmentKeyId,
    pub nonce: [u8; NONCE_LEN],
}

/// Bytes a payload of `plain_len` bytes takes in a chunk (before alignment padding).
pub const fn stored_payload_len(plain_len: usize, encrypted: bool) -> usize {
    if encrypted {
        ENVELOPE_LEN + plain_len + TAG_LEN
    } else {
        plain_len
    }
}

/// A chunk's records, to be serialized (as an rkyv archive of `len` bytes) straight into the
/// block while it is encoded.
#[derive(Debug, Clone, Copy)]
pub struct ChunkPayload<'a> {
    pub chunk: &'a StoredChunk,
    /// [`archived_len`] of `chunk`.
    pub len: usize,
}

impl<'a> ChunkPayload<'a> {
    pub fn new(chunk: &'a StoredChunk) -> Self {
        ChunkPayload {
            chunk,
            len: archived_len(chunk),
        }
    }

    /// Writes the archive into `out`, which is exactly `len` bytes long.
    fn write_into(&self, out: &mut [u8]) {
        let written = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(
            self.chunk,
            rkyv::ser::writer::Buffer::from(out),
        )
        .expect("the archive fits the bytes archived_len measured");
        assert_eq!(
            written.len(),
            self.len,
            "the archive is as long as measured"
        );
    }
}

/// Bytes the rkyv archive of `chunk` takes, measured by serializing it without writing
/// anything (the archive is deterministic), so that a commit can lay out its blocks first and
/// then serialize each chunk's records straight into its block: one copy of every record's
/// bytes fewer than archiving into a buffer of its own (that copy was 15 % of the core at 1 KB
/// records). rkyv has no writer that only counts, hence [`ArchiveLength`].
fn archived_len(chunk: &StoredChunk) -> usize {
    rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(chunk, ArchiveLength(0))
        .expect("measuring an archive cannot fail")
        .0
}

/// An rkyv writer that only advances its position.
struct ArchiveLength(usize);

impl rkyv::ser::Positional for ArchiveLength {
    fn pos(&self) -> usize {
        self.0
    }
}

impl<E> rkyv::ser::Writer<E> for ArchiveLength {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// A chunk to encode: identifies the shard and carries its rkyv payload.
#[derive(Debug)]
pub struct ChunkInput<'a> {
    pub stream_name: &'a str,
    pub stream_created_ms: u64,
    pub shard_index: u32,
    pub first_position: u64,
    pub arrival_ms: u64,
    pub record_count: u32,
    /// The rkyv archive, in the clear.
    pub payload: ChunkPayload<'a>,
    /// Set to store `payload` encrypted.
    pub encryption: Option<ChunkEncryption<'a>>,
}

impl ChunkInput<'_> {
    /// Bytes this chunk takes inside a block, including alignment padding.
    pub fn encoded_len(&self) -> usize {
        chunk_encoded_len(
            self.stream_name.len(),
            stored_payload_len(self.payload.len, self.encryption.is_some()),
        )
    }
}

/// Bytes a chunk takes inside a block, including alignment padding.
pub fn chunk_encoded_len(stream_name_len: usize, payload_len: usize) -> usize {
    CHUNK_HEADER_LEN + align_up(stream_name_len, CHUNK_ALIGN) + align_up(payload_len, CHUNK_ALIGN)
}

/// The decoded block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub chunk_count: u32,
    pub block_seq: u64,
    pub body_len: u32,
    pub log_id: u32,
    pub prev_crc: u32,
    pub crc: u32,
    pub arrival_ms: u64,
    /// Every block numbered below this was durable (a completed `fdatasync` covered it) when
    /// this block was planned. 0 claims nothing (always so before format version 4).
    pub synced_below: u64,
}

impl BlockHeader {
    /// Header plus body, before padding.
    pub fn block_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }

    /// Bytes the block occupies in its segment.
    pub fn padded_len(&self) -> usize {
        align_up(self.block_len(), BLOCK_ALIGN)
    }
}

/// Why a header is not the header of a block of this format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    TooShort,
    /// All-zero bytes: preallocated space that no block was ever written to.
    Zeroed,
    BadMagic,
    UnsupportedVersion(u16),
    BadHeaderLen(u16),
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Parses the first [`HEADER_LEN`] bytes of `bytes` as a block header. Checks the magic and
/// version only; the caller checks the sequence number, the chain and the CRC.
pub fn parse_header(bytes: &[u8]) -> Result<BlockHeader, HeaderProblem> {
    if bytes.len() < HEADER_LEN {
        return Err(HeaderProblem::TooShort);
    }
    let header = &bytes[..HEADER_LEN];
    if header[..8] != MAGIC {
        if header.iter().all(|b| *b == 0) {
            return Err(HeaderProblem::Zeroed);
        }
        return Err(HeaderProblem::BadMagic);
    }
    let version = u16_at(header, 8);
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(HeaderProblem::UnsupportedVersion(version));
    }
    let header_len = u16_at(header, 10);
    if header_len as usize != HEADER_LEN {
        return Err(HeaderProblem::BadHeaderLen(header_len));
    }
    Ok(BlockHeader {
        chunk_count: u32_at(header, 12),
        block_seq: u64_at(header, 16),
        body_len: u32_at(header, 24),
        log_id: u32_at(header, 28),
        prev_crc: u32_at(header, 32),
        crc: u32_at(header, 36),
        arrival_ms: u64_at(header, 40),
        synced_below: if version >= SYNCED_BELOW_VERSION {
            u64_at(header, 48)
        } else {
            0
        },
    })
}

/// CRC32C of `bytes` as if the four bytes at `crc_field` were zero.
fn crc_with_zeroed_field(bytes: &[u8], crc_field: Range<usize>) -> u32 {
    let crc = crc32c::crc32c(&bytes[..crc_field.start]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &bytes[crc_field.end..])
}

/// Computes the CRC of a block (header + body, unpadded) as stored in its header.
pub fn block_crc(block: &[u8]) -> u32 {
    crc_with_zeroed_field(block, CRC_FIELD)
}

/// Computes the CRC of a chunk as stored in its header.
pub fn chunk_crc(chunk: &[u8]) -> u32 {
    crc_with_zeroed_field(chunk, CHUNK_CRC_FIELD)
}

/// Encoded size of a block holding `chunks`, before padding.
pub fn block_len(chunks: &[ChunkInput<'_>]) -> usize {
    HEADER_LEN + chunks.iter().map(ChunkInput::encoded_len).sum::<usize>()
}

/// The identity of a block being encoded.
#[derive(Debug, Clone, Copy)]
pub struct BlockIdentity {
    pub log_id: u32,
    pub block_seq: u64,
    pub prev_crc: u32,
    pub arrival_ms: u64,
    /// See [`BlockHeader::synced_below`].
    pub synced_below: u64,
}

/// Encodes a block into `out`, which must be exactly `align_up(block_len(chunks), BLOCK_ALIGN)`
/// bytes long (its previous contents do not matter; padding is zeroed here). Returns the block
/// CRC and each chunk's offset from the block start.
pub fn encode_block(
    out: &mut [u8],
    identity: BlockIdentity,
    chunks: &[ChunkInput<'_>],
) -> (u32, Vec<u32>) {
    let unpadded = block_len(chunks);
    assert_eq!(out.len(), align_up(unpadded, BLOCK_ALIGN));
    let body_len = u32::try_from(unpadded - HEADER_LEN).expect("a block body fits u32 bytes");
    let chunk_count = u32::try_from(chunks.len()).expect("a block's chunk count fits u32");

    let mut offsets = Vec::with_capacity(chunks.len());
    let mut at = HEADER_LEN;
    for chunk in chunks {
        let len = chunk.encoded_len();
        offsets.push(u32::try_from(at).expect("a chunk offset fits u32"));
        encode_chunk(&mut out[at..at + len], chunk);
        at += len;
    }
    debug_assert_eq!(at, unpadded);
    out[unpadded..].fill(0);

    let header = &mut out[..HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[10..12].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    header[12..16].copy_from_slice(&chunk_count.to_le_bytes());
    header[16..24].copy_from_slice(&identity.block_seq.to_le_bytes());
    header[24..28].copy_from_slice(&body_len.to_le_bytes());
    header[28..32].copy_from_slice(&identity.log_id.to_le_bytes());
    header[32..36].copy_from_slice(&identity.prev_crc.to_le_bytes());
    header[36..40].fill(0);
    header[40..48].copy_from_slice(&identity.arrival_ms.to_le_bytes());
    header[48..56].copy_from_slice(&identity.synced_below.to_le_bytes());
    header[56..64].fill(0);
    let crc = block_crc(&out[..unpadded]);
    out[CRC_FIELD].copy_from_slice(&crc.to_le_bytes());
    (crc, offsets)
}

fn encode_chunk(out: &mut [u8], chunk: &ChunkInput<'_>) {
    let name_len = u16::try_from(chunk.stream_name.len()).expect("a stream name fits u16 bytes");
    let stored_len = stored_payload_len(chunk.payload.len, chunk.encryption.is_some());
    let payload_len = u32::try_from(stored_len).expect("a chunk payload fits u32 bytes");
    let chunk_len = u32::try_from(out.len()).expect("a chunk fits u32 bytes");
    let flags = if chunk.encryption.is_some() {
        CHUNK_FLAG_ENCRYPTED | CHUNK_FLAG_SEGMENT_KEY
    } else {
        0
    };
    out[0..4].copy_from_slice(&chunk_len.to_le_bytes());
    out[4..8].fill(0);
    out[8..10].copy_from_slice(&name_len.to_le_bytes());
    out[10..12].copy_from_slice(&flags.to_le_bytes());
    out[12..16].copy_from_slice(&chunk.shard_index.to_le_bytes());
    out[16..24].copy_from_slice(&chunk.stream_created_ms.to_le_bytes());
    out[24..32].copy_from_slice(&chunk.first_position.to_le_bytes());
    out[32..40].copy_from_slice(&chunk.arrival_ms.to_le_bytes());
    out[40..44].copy_from_slice(&chunk.record_count.to_le_bytes());
    out[44..48].copy_from_slice(&payload_len.to_le_bytes());
    let name_end = CHUNK_HEADER_LEN + chunk.stream_name.len();
    out[CHUNK_HEADER_LEN..name_end].copy_from_slice(chunk.stream_name.as_bytes());
    let payload_start = CHUNK_HEADER_LEN + align_up(chunk.stream_name.len(), CHUNK_ALIGN);
    out[name_end..payload_start].fill(0);
    let payload_end = payload_start + stored_len;
    match &chunk.encryption {
        None => chunk
            .payload
            .write_into(&mut out[payload_start..payload_end]),
        Some(encryption) => {
            let text_start = payload_start + ENVELOPE_LEN;
            let text_end = text_start + chunk.payload.len;
            out[payload_start..payload_start + 4]
                .copy_from_slice(&encryption.key.key_ref.to_le_bytes());
            out[payload_start + 4..text_start].copy_from_slice(&encryption.nonce);
            chunk.payload.write_into(&mut out[text_start..text_end]);
            // The crc field is still zero here, as the associated data requires.
            let (aad, text) = out.split_at_mut(text_start);
            let tag = encryption
                .key
                .segment_cipher(encryption.segment)
                .encrypt_in_place_detached(
                    Nonce::from_slice(&encryption.nonce),
                    aad,
                    &mut text[..chunk.payload.len],
                )
                .expect("AES-GCM encrypts any payload shorter than 64 GiB");
            out[text_end..payload_end].copy_from_slice(&tag);
        }
    }
    out[payload_end..].fill(0);
    let crc = chunk_crc(out);
    out[CHUNK_CRC_FIELD].copy_from_slice(&crc.to_le_bytes());
}

/// Why a chunk header cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkProblem {
    Truncated,
    BadLength,
    BadStreamName,
}

/// Decodes the chunk header at the start of `bytes` (which may extend past the chunk).
pub fn parse_chunk(bytes: &[u8]) -> Result<ChunkHeader<'_>, ChunkProblem> {
    if bytes.len() < CHUNK_HEADER_LEN {
        return Err(ChunkProblem::Truncated);
    }
    let chunk_len = u32_at(bytes, 0) as usize;
    let name_len = u16_at(bytes, 8) as usize;
    let payload_len = u32_at(bytes, 44) as usize;
    if chunk_len > bytes.len() || !chunk_len.is_multiple_of(CHUNK_ALIGN) {
        return Err(ChunkProblem::BadLength);
    }
    if chunk_encoded_len(name_len, payload_len) != chunk_len {
        return Err(ChunkProblem::BadLength);
    }
    let stream_name = std::str::from_utf8(&bytes[CHUNK_HEADER_LEN..CHUNK_HEADER_LEN + name_len])
        .map_err(|_| ChunkProblem::BadStreamName)?;
    let payload_start = CHUNK_HEADER_LEN + align_up(name_len, CHUNK_ALIGN);
    Ok(ChunkHeader {
        chunk_len,
        crc: u32_at(bytes, 4),
        stream_name,
        shard_index: u32_at(bytes, 12),
        stream_created_ms: u64_at(bytes, 16),
        first_position: u64_at(bytes, 24),
        arrival_ms: u64_at(bytes, 32),
        record_count: u32_at(bytes, 40),
        flags: u16_at(bytes, 10),
        payload: payload_start..payload_start + payload_len,
    })
}

/// Decodes every chunk header of a CRC-checked block (`block` = header + body, unpadded).
pub fn parse_chunks<'a>(
    block: &'a [u8],
    header: &BlockHeader,
) -> Result<Vec<(usize, ChunkHeader<'a>)>, ChunkProblem> {
    let mut chunks = Vec::with_capacity(header.chunk_count as usize);
    let mut at = HEADER_LEN;
    for _ in 0..header.chunk_count {
        let chunk = parse_chunk(&block[at..])?;
        let len = chunk.chunk_len;
        chunks.push((at, chunk));
        at += len;
    }
    if at != block.len() {
        return Err(ChunkProblem::BadLength);
    }
    Ok(chunks)
}

/// Why an encrypted chunk could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptProblem {
    #[error("the payload is too short for an encryption envelope")]
    BadEnvelope,
    #[error("data key {key_ref} is not in the key store")]
    UnknownKey { key_ref: u32 },
    #[error("authentication failed (wrong key, or the chunk was altered)")]
    TagMismatch { key_ref: u32 },
}

/// Decrypts the payload of an encrypted chunk (`chunk` = the whole chunk, CRC already checked,
/// read from `segment`) into a new 16-byte-aligned buffer holding the rkyv archive.
pub fn decrypt_payload(
    chunk: &[u8],
    header: &ChunkHeader<'_>,
    segment: SegmentKeyId,
    key_of: &dyn Fn(u32) -> Option<std::sync::Arc<crate::keystore::DataKey>>,
) -> Result<rkyv::util::AlignedVec, DecryptProblem> {
    let payload = &chunk[header.payload.clone()];
    if payload.len() < ENVELOPE_LEN + TAG_LEN {
        return Err(DecryptProblem::BadEnvelope);
    }
    let key_ref = u32_at(payload, 0);
    let key = key_of(key_ref).ok_or(DecryptProblem::UnknownKey { key_ref })?;
    let text_start = header.payload.start + ENVELOPE_LEN;
    let text_end = header.payload.end - TAG_LEN;
    let mut aad = chunk[..text_start].to_vec();
    aad[CHUNK_CRC_FIELD].fill(0);
    let mut plain = rkyv::util::AlignedVec::with_capacity(text_end - text_start);
    plain.extend_from_slice(&chunk[text_start..text_end]);
    // The flag is part of the associated data, so clearing or setting it to pick the other
    // key fails the tag like any other change.
    let segment_cipher;
    let cipher = if header.flags & CHUNK_FLAG_SEGMENT_KEY != 0 {
        segment_cipher = key.segment_cipher(segment);
        &*segment_cipher
    } else {
        key.legacy_cipher()
    };
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&payload[4..ENVELOPE_LEN]),
            &aad,
            &mut plain,
            aes_gcm::Tag::from_slice(&chunk[text_end..header.payload.end]),
        )
        .map_err(|_| DecryptProblem::TagMismatch { key_ref })?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes records into an rkyv chunk payload of its own, as the reference for
    /// [`ChunkPayload::Records`].
    fn serialize_payload(chunk: &StoredChunk) -> rkyv::util::AlignedVec {
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(chunk, rkyv::util::AlignedVec::new())
            .expect("serializing into memory")
    }

    fn sample_chunk(n: usize) -> StoredChunk {
        StoredChunk {
            records: (0..n)
                .map(|i| StoredRecord {
                    partition_key: format!("key-{i}"),
                    data: vec![i as u8; i * 7].into(),
                })
                .collect(),
        }
    }

    /// The record as it was declared before `data` became `Bytes`.
    #[derive(rkyv::Archive, rkyv::Serialize)]
    struct VecRecord {
        partition_key: String,
        data: Vec<u8>,
    }

    #[derive(rkyv::Archive, rkyv::Serialize)]
    struct VecChunk {
        records: Vec<VecRecord>,
    }

    /// Guards the on-disk format: a chunk of records whose data is `Bytes` archives to exactly
    /// the bytes it did when the data was a `Vec<u8>`, so segments written before and after
    /// read the same.
    #[test]
    fn records_archive_as_they_did_with_vec_data() {
        for chunk in [sample_chunk(0), sample_chunk(1), sample_chunk(33)] {
            let old = VecChunk {
                records: chunk
                    .records
                    .iter()
                    .map(|r| VecRecord {
                        partition_key: r.partition_key.clone(),
                        data: r.data.to_vec(),
                    })
                    .collect(),
            };
            let old = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(
                &old,
                rkyv::util::AlignedVec::<16>::new(),
            )
            .expect("serializing into memory");
            assert_eq!(&serialize_payload(&chunk)[..], &old[..]);
        }
    }

    #[test]
    fn records_archived_into_a_block_are_the_archive_serialized_on_its_own() {
        let shapes = [
            StoredChunk { records: vec![] },
            sample_chunk(1),
            sample_chunk(40),
            StoredChunk {
                records: vec![
                    StoredRecord {
                        partition_key: String::new(),
                        data: vec![].into(),
                    },
                    StoredRecord {
                        partition_key: "k".repeat(256),
                        data: vec![3; 1_000_000].into(),
                    },
                    StoredRecord {
                        partition_key: "12345678".into(),
                        data: vec![9; 13].into(),
                    },
                ],
            },
        ];
        for chunk in &shapes {
            let alone = serialize_payload(chunk);
            assert_eq!(archived_len(chunk), alone.len());
            let mut out = vec![0xAA; alone.len()];
            ChunkPayload::new(chunk).write_into(&mut out);
            assert_eq!(&out[..], &alone[..]);
        }
    }

    const SEGMENT: SegmentKeyId = SegmentKeyId {
        log_id: 7,
        segment_id: 1,
    };

    fn encode(chunks: &[ChunkInput<'_>]) -> (Vec<u8>, u32, Vec<u32>) {
        let mut out = vec![0xAAu8; align_up(block_len(chunks), BLOCK_ALIGN)];
        let (crc, offsets) = encode_block(
            &mut out,
            BlockIdentity {
                log_id: 7,
                block_seq: 42,
                prev_crc: 99,
                arrival_ms: 1234,
                synced_below: 40,
            },
            chunks,
        );
        (out, crc, offsets)
    }

    #[test]
    fn a_block_round_trips_through_encode_and_parse() {
        let records1 = sample_chunk(3);
        let p1 = serialize_payload(&records1);
        let records2 = sample_chunk(5);
        let p2 = serialize_payload(&records2);
        let chunks = [
            ChunkInput {
                stream_name: "orders",
                stream_created_ms: 11,
                shard_index: 2,
                first_position: 100,
                arrival_ms: 1234,
                record_count: 3,
                payload: ChunkPayload::new(&records1),
                encryption: None,
            },
            ChunkInput {
                stream_name: "clicks-and-more",
                stream_created_ms: 12,
                shard_index: 0,
                first_position: 0,
                arrival_ms: 1234,
                record_count: 5,
                payload: ChunkPayload::new(&records2),
                encryption: None,
            },
        ];
        let (out, crc, offsets) = encode(&chunks);
        assert_eq!(out.len() % BLOCK_ALIGN, 0);
        let header = parse_header(&out).expect("valid header");
        assert_eq!(header.block_seq, 42);
        assert_eq!(header.log_id, 7);
        assert_eq!(header.prev_crc, 99);
        assert_eq!(header.synced_below, 40);
        assert_eq!(header.crc, crc);
        let block = &out[..header.block_len()];
        assert_eq!(block_crc(block), crc);
        let parsed = parse_chunks(block, &header).expect("valid chunks");
        assert_eq!(parsed.len(), 2);
        for (((offset, chunk), (input, expected_offset)), archive) in parsed
            .iter()
            .zip(chunks.iter().zip(&offsets))
            .zip([&p1[..], &p2[..]])
        {
            assert_eq!(*offset, *expected_offset as usize);
            assert_eq!(offset % CHUNK_ALIGN, 0);
            assert_eq!(chunk.stream_name, input.stream_name);
            assert_eq!(chunk.first_position, input.first_position);
            assert_eq!(chunk.record_count, input.record_count);
            let bytes = &block[*offset..*offset + chunk.chunk_len];
            assert_eq!(chunk_crc(bytes), chunk.crc);
            assert_eq!(chunk.payload.start % CHUNK_ALIGN, 0);
            assert_eq!(&bytes[chunk.payload.clone()], archive);
        }
        assert!(out[header.block_len()..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_block_changes_its_crc() {
        let records = sample_chunk(4);
        let chunks = [ChunkInput {
            stream_name: "s",
            stream_created_ms: 1,
            shard_index: 0,
            first_position: 0,
            arrival_ms: 5,
            record_count: 4,
            payload: ChunkPayload::new(&records),
            encryption: None,
        }];
        let (out, crc, _) = encode(&chunks);
        let len = parse_header(&out).expect("valid header").block_len();
        for at in (0..len).step_by(3) {
            if CRC_FIELD.contains(&at) {
                continue;
            }
            let mut copy = out[..len].to_vec();
            copy[at] ^= 0x10;
            assert_ne!(block_crc(&copy), crc, "flip at {at} went unnoticed");
        }
    }

    #[test]
    fn an_encrypted_chunk_decrypts_only_with_its_key_and_its_own_header() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = crate::keystore::KeyStore::open(dir.path()).expect("key store");
        let key = keys.get_or_create("alias/aws/kinesis").expect("key");
        let records = sample_chunk(6);
        let p = serialize_payload(&records);
        let chunks = [ChunkInput {
            stream_name: "secret",
            stream_created_ms: 1,
            shard_index: 3,
            first_position: 10,
            arrival_ms: 5,
            record_count: 6,
            payload: ChunkPayload::new(&records),
            encryption: Some(ChunkEncryption {
                key: &key,
                segment: SEGMENT,
                nonce: [7; NONCE_LEN],
            }),
        }];
        let (out, _, _) = encode(&chunks);
        let header = parse_header(&out).expect("valid header");
        assert_eq!(header.block_seq, 42);
        let block = &out[..header.block_len()];
        let parsed = parse_chunks(block, &header).expect("valid chunks");
        let (at, chunk) = &parsed[0];
        assert!(chunk.is_encrypted());
        let raw = &block[*at..*at + chunk.chunk_len];
        assert_eq!(chunk_crc(raw), chunk.crc);
        assert!(
            !raw.windows(p.len()).any(|w| w == &p[..]),
            "payload stored in the clear"
        );
        let key_of = |key_ref: u32| keys.by_ref(key_ref);
        let plain = decrypt_payload(raw, chunk, SEGMENT, &key_of).expect("decrypts");
        assert_eq!(&plain[..], &p[..]);

        let no_keys = |_: u32| None;
        assert_eq!(
            decrypt_payload(raw, chunk, SEGMENT, &no_keys).err(),
            Some(DecryptProblem::UnknownKey {
                key_ref: key.key_ref
            })
        );
        // Any changed byte before or inside the ciphertext, header included, fails the tag.
        let text_end = chunk.payload.end - TAG_LEN;
        for at in (0..chunk.chunk_len).filter(|at| !CHUNK_CRC_FIELD.contains(at)) {
            if (chunk.payload.start..chunk.payload.start + 4).contains(&at)
                || at >= chunk.payload.end
            {
                continue; // the key reference (tested above) and the padding
            }
            if at < text_end && at >= chunk.payload.start + ENVELOPE_LEN && at % 5 != 0 {
                continue; // sample the ciphertext to keep the test fast
            }
            let mut copy = raw.to_vec();
            copy[at] ^= 0x01;
            let Ok(tampered) = parse_chunk(&copy) else {
                continue;
            };
            if tampered.payload != chunk.payload {
                continue; // a changed length no longer parses as the same chunk
            }
            assert!(
                matches!(
                    decrypt_payload(&copy, &tampered, SEGMENT, &key_of),
                    Err(DecryptProblem::TagMismatch { .. })
                ),
                "flip at {at} was not detected"
            );
        }
    }

    /// One encrypted chunk of `payload` for `segment`, with a fixed nonce, as stored bytes.
    fn encrypted_chunk(
        key: &crate::keystore::DataKey,
        segment: SegmentKeyId,
        records: &StoredChunk,
    ) -> Vec<u8> {
        let chunks = [ChunkInput {
            stream_name: "secret",
            stream_created_ms: 1,
            shard_index: 3,
            first_position: 10,
            arrival_ms: 5,
            record_count: 6,
            payload: ChunkPayload::new(records),
            encryption: Some(ChunkEncryption {
                key,
                segment,
                nonce: [7; NONCE_LEN],
            }),
        }];
        let (out, _, offsets) = encode(&chunks);
        let header = parse_header(&out).expect("valid header");
        let at = offsets[0] as usize;
        out[at..header.block_len()].to_vec()
    }

    /// Rewrites an encrypted chunk the way format version 2 stored it: the segment-key flag
    /// clear and the archive encrypted under the data key itself. This is the old writer,
    /// kept so the reader's fallback stays tested against bytes it did not produce itself.
    fn rewrite_as_format_version_2(raw: &mut [u8], key: &crate::keystore::DataKey, plain: &[u8]) {
        let header = parse_chunk(raw).expect("chunk parses").payload;
        let text_start = header.start + ENVELOPE_LEN;
        let text_end = header.end - TAG_LEN;
        raw[10..12].copy_from_slice(&CHUNK_FLAG_ENCRYPTED.to_le_bytes());
        raw[CHUNK_CRC_FIELD].fill(0);
        raw[text_start..text_end].copy_from_slice(plain);
        let nonce = raw[header.start + 4..text_start].to_vec();
        let (aad, text) = raw.split_at_mut(text_start);
        let tag = key
            .legacy_cipher()
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut text[..plain.len()])
            .expect("encrypts");
        raw[text_end..header.end].copy_from_slice(&tag);
        let crc = chunk_crc(raw);
        raw[CHUNK_CRC_FIELD].copy_from_slice(&crc.to_le_bytes());
    }

    /// Guards against nonce wear-out: if every chunk of a KeyId were encrypted under one AES
    /// key, random nonces would repeat after about 2^32 chunks and GCM would leak plaintext
    /// and forgeability. Chunks of different segments (or logs) must use different keys, and a
    /// chunk must not decrypt under another segment's key.
    #[test]
    fn chunks_of_different_segments_are_encrypted_under_different_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = crate::keystore::KeyStore::open(dir.path()).expect("key store");
        let key = keys.get_or_create("alias/aws/kinesis").expect("key");
        let key_of = |key_ref: u32| keys.by_ref(key_ref);
        let records = sample_chunk(6);
        let p = serialize_payload(&records);
        let a = SEGMENT;
        let b = SegmentKeyId {
            segment_id: 734,
            ..SEGMENT
        };
        let other_log = SegmentKeyId {
            log_id: 8,
            ..SEGMENT
        };
        let chunk_a = encrypted_chunk(&key, a, &records);
        let chunk_b = encrypted_chunk(&key, b, &records);
        let chunk_c = encrypted_chunk(&key, other_log, &records);
        // Same header, nonce and plaintext: only the key differs, so must the ciphertext.
        assert_ne!(chunk_a, chunk_b);
        assert_ne!(chunk_a, chunk_c);
        assert_ne!(chunk_b, chunk_c);
        for (raw, own) in [(&chunk_a, a), (&chunk_b, b), (&chunk_c, other_log)] {
            let header = parse_chunk(raw).expect("chunk parses");
            assert_eq!(header.flags, CHUNK_FLAG_ENCRYPTED | CHUNK_FLAG_SEGMENT_KEY);
            let plain = decrypt_payload(raw, &header, own, &key_of).expect("decrypts");
            assert_eq!(&plain[..], &p[..]);
            for foreign in [a, b, other_log].into_iter().filter(|s| *s != own) {
                assert_eq!(
                    decrypt_payload(raw, &header, foreign, &key_of).err(),
                    Some(DecryptProblem::TagMismatch {
                        key_ref: key.key_ref
                    }),
                    "a chunk of {own:?} decrypted under the key of {foreign:?}"
                );
            }
        }
    }

    /// Guards against losing data written before per-segment keys: a format version 2 chunk
    /// (no segment-key flag, encrypted under the data key) must still decrypt, and setting
    /// the flag on it (or clearing it on a new chunk) must fail the tag, not pick a key.
    #[test]
    fn a_format_version_2_chunk_under_the_data_key_still_decrypts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = crate::keystore::KeyStore::open(dir.path()).expect("key store");
        let key = keys.get_or_create("alias/aws/kinesis").expect("key");
        let key_of = |key_ref: u32| keys.by_ref(key_ref);
        let records = sample_chunk(6);
        let p = serialize_payload(&records);
        let new = encrypted_chunk(&key, SEGMENT, &records);
        let mut old = new.clone();
        rewrite_as_format_version_2(&mut old, &key, &p);
        let header = parse_chunk(&old).expect("chunk parses");
        assert_eq!(header.flags, CHUNK_FLAG_ENCRYPTED);
        assert_eq!(chunk_crc(&old), header.crc);
        // The segment does not matter for an old chunk.
        for segment in [
            SEGMENT,
            SegmentKeyId {
                log_id: 1,
                segment_id: 99,
            },
        ] {
            let plain = decrypt_payload(&old, &header, segment, &key_of).expect("decrypts");
            assert_eq!(&plain[..], &p[..]);
        }
        for (raw, flags) in [
            (&old, CHUNK_FLAG_ENCRYPTED | CHUNK_FLAG_SEGMENT_KEY),
            (&new, CHUNK_FLAG_ENCRYPTED),
        ] {
            let mut flipped = raw.clone();
            flipped[10..12].copy_from_slice(&flags.to_le_bytes());
            let header = parse_chunk(&flipped).expect("chunk parses");
            assert_eq!(
                decrypt_payload(&flipped, &header, SEGMENT, &key_of).err(),
                Some(DecryptProblem::TagMismatch {
                    key_ref: key.key_ref
                })
            );
        }
    }

    /// Guards against a segment big enough to wear out its key: the smallest encrypted chunk a
    /// writer can produce must be at least [`ENCRYPTED_CHUNK_LEN_MIN`] bytes, so a segment of
    /// [`SEGMENT_BYTES_MAX`] holds at most [`SEGMENT_KEY_CHUNKS_MAX`] chunks, 256 times below
    /// the 2^32 random-nonce limit.
    #[test]
    fn the_segment_size_bounds_the_chunks_under_one_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = crate::keystore::KeyStore::open(dir.path()).expect("key store");
        let key = keys.get_or_create("alias/aws/kinesis").expect("key");
        let smallest = StoredChunk {
            records: vec![StoredRecord {
                partition_key: String::new(),
                data: Vec::new().into(),
            }],
        };
        // An empty archive cannot be written; it bounds the smallest one from below.
        let empty = ChunkPayload {
            chunk: &smallest,
            len: 0,
        };
        for payload in [empty, ChunkPayload::new(&smallest)] {
            let chunk = ChunkInput {
                stream_name: "s",
                stream_created_ms: 0,
                shard_index: 0,
                first_position: 0,
                arrival_ms: 0,
                record_count: 1,
                payload,
                encryption: Some(ChunkEncryption {
                    key: &key,
                    segment: SEGMENT,
                    nonce: [0; NONCE_LEN],
                }),
            };
            assert!(chunk.encoded_len() >= ENCRYPTED_CHUNK_LEN_MIN);
        }
        let chunks_max = SEGMENT_BYTES_MAX / ENCRYPTED_CHUNK_LEN_MIN as u64;
        assert!(chunks_max <= SEGMENT_KEY_CHUNKS_MAX);
        assert!(SEGMENT_KEY_CHUNKS_MAX.saturating_mul(256) <= 1 << 32);
    }

    #[test]
    fn zeroed_space_is_recognised_as_never_written() {
        assert_eq!(parse_header(&[0u8; 4096]), Err(HeaderProblem::Zeroed));
        let mut garbage = [0u8; 64];
        garbage[3] = 1;
        assert_eq!(parse_header(&garbage), Err(HeaderProblem::BadMagic));
    }
}
