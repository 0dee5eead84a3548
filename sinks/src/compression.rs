//! Compression of a delivered object, and the extension its key gets.
//!
//! Framing per format:
//! - GZIP: one gzip member (flate2), extension `.gz`.
//! - ZIP: a zip archive with one deflated entry named like the object without `.zip`.
//! - Snappy: the Snappy framing format (stream identifier, CRC-32C'd chunks; the `snap`
//!   crate's frame encoder), extension `.snappy`.
//! - HADOOP_SNAPPY: Hadoop's block format (what `SnappyCodec` reads): per block of at most
//!   [`HADOOP_BLOCK_BYTES`] input bytes, a 4-byte big-endian uncompressed length, then one
//!   chunk as a 4-byte big-endian compressed length and a raw Snappy block. Extension
//!   `.hsnappy` [verify against AWS].
//! - ZSTD (a Sluice extension): one zstd frame at level 3, extension `.zst`.
//!
//! A configured FileExtension replaces the default extension.

use std::io::Write as _;

use crate::model::Compression;

/// Hadoop's default `io.compression.codec.snappy.buffersize`.
pub const HADOOP_BLOCK_BYTES: usize = 256 * 1024;
const ZSTD_LEVEL: i32 = 3;

/// Why an object could not be compressed (only an encoder bug or allocation failure).
#[derive(Debug, thiserror::Error)]
#[error("compressing an object as {format} failed: {reason}")]
pub struct CompressError {
    pub format: &'static str,
    pub reason: String,
}

/// The default extension of objects in `format`.
pub const fn extension(format: Compression) -> &'static str {
    match format {
        Compression::Uncompressed => "",
        Compression::Gzip => ".gz",
        Compression::Zip => ".zip",
        Compression::Snappy => ".snappy",
        Compression::HadoopSnappy => ".hsnappy",
        Compression::Zstd => ".zst",
    }
}

/// `data` compressed as `format`. `entry_name` names the ZIP entry.
pub fn compress(
    format: Compression,
    data: &[u8],
    entry_name: &str,
) -> Result<Vec<u8>, CompressError> {
    let fail = |reason: std::io::Error| CompressError {
        format: format.as_str(),
        reason: reason.to_string(),
    };
    match format {
        Compression::Uncompressed => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 4 + 64),
                flate2::Compression::default(),
            );
            encoder.write_all(data).map_err(fail)?;
            encoder.finish().map_err(fail)
        }
        Compression::Zip => {
            let mut archive = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .large_file(data.len() >= u32::MAX as usize);
            archive
                .start_file(entry_name, options)
                .map_err(|e| fail(std::io::Error::other(e)))?;
            archive.write_all(data).map_err(fail)?;
            archive
                .finish()
                .map(std::io::Cursor::into_inner)
                .map_err(|e| fail(std::io::Error::other(e)))
        }
        Compression::Snappy => {
            let mut encoder =
                snap::write::FrameEncoder::new(Vec::with_capacity(data.len() / 2 + 64));
            encoder.write_all(data).map_err(fail)?;
            encoder
                .into_inner()
                .map_err(|e| fail(std::io::Error::other(e.to_string())))
        }
        Compression::HadoopSnappy => {
            let mut out = Vec::with_capacity(data.len() / 2 + 64);
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(HADOOP_BLOCK_BYTES) {
                let compressed = encoder
                    .compress_vec(block)
                    .map_err(|e| fail(std::io::Error::other(e)))?;
                out.extend_from_slice(&block_length(block.len()));
                out.extend_from_slice(&block_length(compressed.len()));
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL).map_err(fail),
    }
}

fn block_length(n: usize) -> [u8; 4] {
    u32::try_from(n)
        .expect("a Hadoop block is at most HADOOP_BLOCK_BYTES, far below 4 GiB")
        .to_be_bytes()
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn sample() -> Vec<u8> {
        let mut data = Vec::new();
        for i in 0..100_000u32 {
            data.extend_from_slice(format!("{{\"n\":{i}}}\n").as_bytes());
        }
        data
    }

    #[test]
    fn gzip_is_one_member_that_decompresses_to_the_input() {
        let data = sample();
        let packed = compress(Compression::Gzip, &data, "x").expect("compressed");
        assert_eq!(&packed[..2], &[0x1f, 0x8b]);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        assert_eq!(out, data);
    }

    #[test]
    fn zip_holds_one_entry_named_after_the_object() {
        let data = sample();
        let packed = compress(Compression::Zip, &data, "s-1-2024").expect("compressed");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(packed)).expect("a zip");
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_index(0).expect("entry");
        assert_eq!(entry.name(), "s-1-2024");
        let mut out = Vec::new();
        entry.read_to_end(&mut out).expect("inflate");
        assert_eq!(out, data);
    }

    #[test]
    fn snappy_uses_the_framing_format() {
        let data = sample();
        let packed = compress(Compression::Snappy, &data, "x").expect("compressed");
        // The stream identifier chunk: type 0xff, length 6, "sNaPpY".
        assert_eq!(&packed[..10], b"\xff\x06\x00\x00sNaPpY");
        let mut out = Vec::new();
        snap::read::FrameDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .expect("unsnap");
        assert_eq!(out, data);
    }

    #[test]
    fn hadoop_snappy_is_length_prefixed_blocks_of_raw_snappy() {
        let data = sample();
        let packed = compress(Compression::HadoopSnappy, &data, "x").expect("compressed");
        let mut out = Vec::new();
        let mut rest = &packed[..];
        let mut blocks = 0;
        while !rest.is_empty() {
            let raw = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            let packed_len = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
            assert!(raw <= HADOOP_BLOCK_BYTES);
            let block = snap::raw::Decoder::new()
                .decompress_vec(&rest[8..8 + packed_len])
                .expect("raw snappy");
            assert_eq!(block.len(), raw);
            out.extend_from_slice(&block);
            rest = &rest[8 + packed_len..];
            blocks += 1;
        }
        assert_eq!(blocks, data.len().div_ceil(HADOOP_BLOCK_BYTES));
        assert_eq!(out, data);
    }

    #[test]
    fn zstd_is_one_frame() {
        let data = sample();
        let packed = compress(Compression::Zstd, &data, "x").expect("compressed");
        assert_eq!(&packed[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert_eq!(zstd::decode_all(&packed[..]).expect("unzstd"), data);
    }

    #[test]
    fn uncompressed_objects_are_the_records_as_they_are() {
        assert_eq!(
            compress(Compression::Uncompressed, b"ab", "x").expect("copied"),
            b"ab"
        );
        assert_eq!(extension(Compression::Uncompressed), "");
        assert_eq!(extension(Compression::Gzip), ".gz");
    }
}
