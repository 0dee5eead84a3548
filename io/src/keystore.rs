//! The local key store that stands in for AWS KMS: one 256-bit AES data key per KeyId that a
//! client named in StartStreamEncryption (`alias/aws/kinesis`, a key ARN, any alias).
//!
//! SECURITY: the key files are the only thing standing between the encrypted segments and their
//! plaintext. Protect `<data-dir>/keys/` like a KMS: same host only, mode 0700 (the store
//! creates it so), excluded from backups that travel with the segments. Anyone who can read
//! both the segments and this directory can read every record.
//!
//! Layout: `<data-dir>/keys/<key_ref:010>.key`, one file per key, 0600. `key_ref` is a small
//! number given out in creation order (1, 2, ...); chunks store it instead of the KeyId string.
//! File contents, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `SLUICEKY` |
//! | 8 | 2 | version `1` |
//! | 10 | 2 | `key_id_len` |
//! | 12 | 4 | CRC32C over bytes `16..` |
//! | 16 | 32 | the AES-256 key |
//! | 48 | `key_id_len` | the KeyId, UTF-8 |
//!
//! Invariants:
//! - A key is created with the OS CSPRNG (`getrandom`) and made durable (temporary file,
//!   `fsync`, `rename`, `fsync` of the directory) before [`KeyStore::get_or_create`] returns it,
//!   so no chunk is ever acknowledged under a key that a crash could lose.
//! - Keys are never changed or deleted by the store: every chunk ever written under a key must
//!   stay readable.
//! - A data key encrypts no chunk directly (since segment format version 3): each segment of
//!   each log gets its own AES key, derived with HKDF-SHA256 ([`DataKey::segment_cipher`]), so
//!   the random-nonce limit of AES-GCM (2^32 encryptions per key, NIST SP 800-38D §8.3) applies
//!   per segment, whose size bounds its chunk count (`log::block::SEGMENT_KEY_CHUNKS_MAX`).
//!   Chunks written before version 3 used the data key itself ([`DataKey::legacy_cipher`]).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;

/// Bytes of an AES-256 data key.
pub const KEY_BYTES: usize = 32;
/// Start of the HKDF `info` of a segment key; the log id and segment id follow it.
pub const SEGMENT_KEY_LABEL: [u8; 16] = *b"sluice-seg-key-1";
/// Derived segment ciphers a [`DataKey`] keeps; past that the cache starts over. One per log
/// being written plus the segments being read keeps the hit rate high; a miss costs one HKDF
/// and one AES key schedule (about a microsecond).
pub const SEGMENT_CIPHERS_CACHED_MAX: usize = 64;
const MAGIC: [u8; 8] = *b"SLUICEKY";
const FILE_VERSION: u16 = 1;
const FILE_HEADER_LEN: usize = 16;

/// Which segment a derived key belongs to: the HKDF `info` is [`SEGMENT_KEY_LABEL`], then
/// `log_id` (u32 LE), then `segment_id` (u64 LE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SegmentKeyId {
    pub log_id: u32,
    pub segment_id: u64,
}

impl SegmentKeyId {
    /// The HKDF `info` bytes (28) that name this segment.
    pub fn info(&self) -> [u8; 28] {
        let mut info = [0u8; 28];
        info[..16].copy_from_slice(&SEGMENT_KEY_LABEL);
        info[16..20].copy_from_slice(&self.log_id.to_le_bytes());
        info[20..28].copy_from_slice(&self.segment_id.to_le_bytes());
        info
    }
}

/// One data key (the KMS key of a KeyId), from which every segment's chunk key is derived.
pub struct DataKey {
    /// The number chunks store to name this key.
    pub key_ref: u32,
    /// The KeyId the client gave.
    pub key_id: String,
    /// HKDF state after the extract step (no salt; the key is uniformly random already).
    hkdf: Hkdf<Sha256>,
    /// AES-256-GCM under the data key itself: only for chunks of format version 2 and older.
    legacy_cipher: Aes256Gcm,
    segment_ciphers: Mutex<HashMap<SegmentKeyId, Arc<Aes256Gcm>>>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key material is deliberately left out so it never reaches a log line.
        f.debug_struct("DataKey")
            .field("key_ref", &self.key_ref)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    fn new(key_ref: u32, key_id: String, key: &[u8; KEY_BYTES]) -> Self {
        Self {
            key_ref,
            key_id,
            hkdf: Hkdf::<Sha256>::new(None, key),
            legacy_cipher: Aes256Gcm::new(key.into()),
            segment_ciphers: Mutex::new(HashMap::new()),
        }
    }

    /// The cipher of one segment: AES-256-GCM under
    /// `HKDF-SHA256(salt = none, ikm = data key, info = segment.info(), 32 bytes)`. Every chunk
    /// of format version 3 is encrypted under the key of the segment it is written to.
    pub fn segment_cipher(&self, segment: SegmentKeyId) -> Arc<Aes256Gcm> {
        // A panic while holding the lock leaves at worst a cache without some entry.
        let mut cache = self
            .segment_ciphers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(cipher) = cache.get(&segment) {
            return cipher.clone();
        }
        let mut okm = [0u8; KEY_BYTES];
        self.hkdf
            .expand(&segment.info(), &mut okm)
            .expect("32 bytes is far below HKDF-SHA256's 8160-byte output limit");
        let cipher = Arc::new(Aes256Gcm::new((&okm).into()));
        if cache.len() >= SEGMENT_CIPHERS_CACHED_MAX {
            cache.clear();
        }
        cache.insert(segment, cipher.clone());
        assert!(cache.len() <= SEGMENT_CIPHERS_CACHED_MAX);
        cipher
    }

    /// The cipher of chunks written before format version 3: the data key itself.
    pub fn legacy_cipher(&self) -> &Aes256Gcm {
        &self.legacy_cipher
    }
}

#[derive(Default)]
struct Keys {
    by_id: HashMap<String, Arc<DataKey>>,
    by_ref: HashMap<u32, Arc<DataKey>>,
    next_ref: u32,
}

/// The data keys of every core; cheap to look up, shared through `Arc`.
pub struct KeyStore {
    dir: PathBuf,
    keys: Mutex<Keys>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn invalid(path: &Path, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("key file {} {what}", path.display()),
    )
}

fn key_path(dir: &Path, key_ref: u32) -> PathBuf {
    dir.join(format!("{key_ref:010}.key"))
}

fn parse_key_file(path: &Path, bytes: &[u8]) -> std::io::Result<(String, [u8; KEY_BYTES])> {
    if bytes.len() < FILE_HEADER_LEN + KEY_BYTES || bytes[..8] != MAGIC {
        return Err(invalid(path, "is not a Sluice key file"));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FILE_VERSION {
        return Err(invalid(path, &format!("has unsupported version {version}")));
    }
    let id_len = usize::from(u16::from_le_bytes([bytes[10], bytes[11]]));
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[12..16]);
    if u32::from_le_bytes(crc) != crc32c::crc32c(&bytes[FILE_HEADER_LEN..]) {
        return Err(invalid(path, "is corrupt (CRC mismatch)"));
    }
    if bytes.len() != FILE_HEADER_LEN + KEY_BYTES + id_len {
        return Err(invalid(path, "has the wrong length"));
    }
    let mut key = [0u8; KEY_BYTES];
    key.copy_from_slice(&bytes[FILE_HEADER_LEN..FILE_HEADER_LEN + KEY_BYTES]);
    let key_id = std::str::from_utf8(&bytes[FILE_HEADER_LEN + KEY_BYTES..])
        .map_err(|_| invalid(path, "holds a KeyId that is not UTF-8"))?
        .to_owned();
    Ok((key_id, key))
}

fn encode_key_file(key_id: &str, key: &[u8; KEY_BYTES]) -> std::io::Result<Vec<u8>> {
    let id_len = u16::try_from(key_id.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a KeyId longer than 65535 bytes cannot be stored",
        )
    })?;
    let mut out = Vec::with_capacity(FILE_HEADER_LEN + KEY_BYTES + key_id.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&id_len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(key);
    out.extend_from_slice(key_id.as_bytes());
    let crc = crc32c::crc32c(&out[FILE_HEADER_LEN..]);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

impl KeyStore {
    /// Opens (creating it, mode 0700, if missing) the key directory and loads every key.
    /// Leftover temporary files of an interrupted creation are removed: their key was never
    /// handed out, so no chunk uses it.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Arc<KeyStore>> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let mut keys = Keys {
            next_ref: 1,
            ..Keys::default()
        };
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                fs::remove_file(&path)?;
                continue;
            }
            let Some(stem) = name.strip_suffix(".key") else {
                continue;
            };
            let key_ref: u32 = stem
                .parse()
                .map_err(|_| invalid(&path, "has a name that is not <number>.key"))?;
            let (key_id, key) = parse_key_file(&path, &fs::read(&path)?)?;
            let key = Arc::new(DataKey::new(key_ref, key_id.clone(), &key));
            keys.next_ref = keys.next_ref.max(key_ref.saturating_add(1));
            keys.by_ref.insert(key_ref, key.clone());
            if let Some(other) = keys.by_id.insert(key_id, key) {
                return Err(invalid(
                    &path,
                    &format!("repeats the KeyId of key {}", other.key_ref),
                ));
            }
        }
        Ok(Arc::new(KeyStore {
            dir,
            keys: Mutex::new(keys),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Keys> {
        // A panic while holding the lock cannot leave `Keys` half-updated: it is changed only
        // after the key file is durable, by two inserts that do not panic.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key of `key_ref`, if the store has it.
    pub fn by_ref(&self, key_ref: u32) -> Option<Arc<DataKey>> {
        self.lock().by_ref.get(&key_ref).cloned()
    }

    /// The key of `key_id`, created (and made durable) on first use. Creation does blocking
    /// file I/O; it happens once per KeyId in the life of the data directory.
    pub fn get_or_create(&self, key_id: &str) -> std::io::Result<Arc<DataKey>> {
        let mut keys = self.lock();
        if let Some(key) = keys.by_id.get(key_id) {
            return Ok(key.clone());
        }
        let key_ref = keys.next_ref;
        let mut material = [0u8; KEY_BYTES];
        getrandom::getrandom(&mut material).map_err(|e| std::io::Error::other(e.to_string()))?;
        let bytes = encode_key_file(key_id, &material)?;
        let path = key_path(&self.dir, key_ref);
        let tmp = path.with_extension("key.tmp");
        {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        let key = Arc::new(DataKey::new(key_ref, key_id.to_owned(), &material));
        keys.next_ref = key_ref.saturating_add(1);
        keys.by_ref.insert(key_ref, key.clone());
        keys.by_id.insert(key_id.to_owned(), key.clone());
        tracing::info!(key_ref, key_id, "Created a data key for stream encryption.");
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_found_again_after_reopening_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(dir.path().join("keys")).expect("open");
        let a = store.get_or_create("alias/aws/kinesis").expect("create a");
        let b = store
            .get_or_create("arn:aws:kms:us-east-1:1:key/x")
            .expect("create b");
        assert_ne!(a.key_ref, b.key_ref);
        assert_eq!(
            store
                .get_or_create("alias/aws/kinesis")
                .expect("again")
                .key_ref,
            a.key_ref
        );
        drop(store);
        let store = KeyStore::open(dir.path().join("keys")).expect("reopen");
        let again = store.by_ref(a.key_ref).expect("key a survives");
        assert_eq!(again.key_id, "alias/aws/kinesis");
        assert_eq!(
            store
                .get_or_create("arn:aws:kms:us-east-1:1:key/x")
                .expect("b")
                .key_ref,
            b.key_ref
        );
        let c = store.get_or_create("alias/other").expect("create c");
        assert!(c.key_ref > b.key_ref);
    }

    /// Guards against a silent change of the key derivation: chunks on disk were encrypted
    /// under `HKDF-SHA256(ikm = data key, info = label ‖ log_id ‖ segment_id)` exactly as
    /// `docs/segment-format.md` spells it, and any other derivation would make them unreadable.
    #[test]
    fn segment_keys_are_hkdf_sha256_of_the_data_key_with_log_and_segment_as_info() {
        use aes_gcm::Nonce;
        use aes_gcm::aead::Aead;

        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(dir.path()).expect("open");
        let key = store.get_or_create("alias/aws/kinesis").expect("create");
        let bytes = fs::read(key_path(dir.path(), key.key_ref)).expect("read key file");
        let (_, material) = parse_key_file(dir.path(), &bytes).expect("parses");
        let mut info = Vec::new();
        info.extend_from_slice(b"sluice-seg-key-1");
        info.extend_from_slice(&[3, 0, 0, 0]);
        info.extend_from_slice(&[0xDE, 0x02, 0, 0, 0, 0, 0, 0]);
        let mut okm = [0u8; KEY_BYTES];
        Hkdf::<Sha256>::new(None, &material)
            .expand(&info, &mut okm)
            .expect("expands");
        let expected = Aes256Gcm::new((&okm).into());
        let segment = SegmentKeyId {
            log_id: 3,
            segment_id: 734,
        };
        assert_eq!(&segment.info()[..], &info[..]);
        let nonce = Nonce::from_slice(&[5; 12]);
        let sealed = key
            .segment_cipher(segment)
            .encrypt(nonce, &b"records"[..])
            .expect("encrypts");
        assert_eq!(
            expected.decrypt(nonce, &sealed[..]).expect("same key"),
            b"records"
        );
        // Neighbouring segments, another log and the data key itself all differ.
        for other in [
            SegmentKeyId {
                segment_id: 735,
                ..segment
            },
            SegmentKeyId {
                log_id: 4,
                ..segment
            },
        ] {
            assert!(
                key.segment_cipher(other)
                    .decrypt(nonce, &sealed[..])
                    .is_err()
            );
        }
        assert!(key.legacy_cipher().decrypt(nonce, &sealed[..]).is_err());
    }

    #[test]
    fn a_corrupted_key_file_is_refused_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = KeyStore::open(dir.path()).expect("open");
        let key = store.get_or_create("alias/aws/kinesis").expect("create");
        let path = key_path(dir.path(), key.key_ref);
        let mut bytes = fs::read(&path).expect("read");
        bytes[20] ^= 1;
        fs::write(&path, bytes).expect("write");
        assert!(KeyStore::open(dir.path()).is_err());
    }
}
