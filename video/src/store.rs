//! Persistence of video stream definitions: one JSON file per stream under `<data-dir>/video/`.
//!
//! File names: a stream name is `[a-zA-Z0-9_.-]{1,256}`, so "." and ".." are valid names and a
//! long name does not fit a file name (255 bytes on Linux). A name of at most
//! [`PLAIN_NAME_BYTES_MAX`] bytes is stored as `<hex of the name>.json`; a longer one as
//! `<hex of its first PLAIN_NAME_BYTES_MAX bytes>-<hex MD5 of the whole name>.json`. Hex digits
//! never spell "." or "..", and the `-` tells the two forms apart. The file holds the name
//! itself, and a load checks that the name maps back to the file's name. Two long names that
//! share their first 100 bytes and their MD5 would map to one file: [`Store::file_name`] lets
//! the registry refuse the second rather than overwrite the first.
//!
//! A save writes `<file>.tmp`, fsyncs it, renames it over `<file>` and fsyncs the directory, so a
//! crash leaves either the old or the new definition, never a torn one; a removal unlinks the
//! file and fsyncs the directory. Leftover `.tmp` files are deleted when the store opens. The
//! file work runs on a short-lived thread of its own, so no executor blocks on an fsync.

use std::path::{Path, PathBuf};

use md5::{Digest as _, Md5};

use crate::model::StreamDefinition;

/// The longest stream name stored under its plain hex form (2 × 120 + 5 bytes fit 255).
pub const PLAIN_NAME_BYTES_MAX: usize = 120;
/// How much of a longer name its file name keeps, before the hash.
const LONG_NAME_PREFIX_BYTES: usize = 100;
const _: () = assert!(2 * PLAIN_NAME_BYTES_MAX + ".json.tmp".len() <= 255);
const _: () = assert!(2 * LONG_NAME_PREFIX_BYTES + 1 + 32 + ".json.tmp".len() <= 255);

/// Why the store could not open, save or remove.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("video store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("video stream definition {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The directory of definitions.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) `<data_dir>/video` and loads every definition in it.
    pub fn open(data_dir: &Path) -> Result<(Self, Vec<StreamDefinition>), StoreError> {
        let (dir, files) = sluice_durable::open_dir(data_dir, "video", ".json")?;
        let mut definitions = Vec::with_capacity(files.len());
        for file in files {
            let definition: StreamDefinition =
                serde_json::from_slice(&file.bytes).map_err(|e| StoreError::Corrupt {
                    path: file.path.clone(),
                    reason: e.to_string(),
                })?;
            if Self::file_name(&definition.name) != file.file_name {
                return Err(StoreError::Corrupt {
                    path: file.path,
                    reason: format!(
                        "it holds stream {:?}, whose file would be {}",
                        definition.name,
                        Self::file_name(&definition.name)
                    ),
                });
            }
            definitions.push(definition);
        }
        definitions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((Self { dir }, definitions))
    }

    /// The file that holds stream `name` (see the module doc).
    pub fn file_name(name: &str) -> String {
        assert!(!name.is_empty());
        if name.len() <= PLAIN_NAME_BYTES_MAX {
            format!("{}.json", hex(name.as_bytes()))
        } else {
            let prefix = &name.as_bytes()[..LONG_NAME_PREFIX_BYTES];
            let digest = Md5::digest(name.as_bytes());
            format!("{}-{}.json", hex(prefix), hex(&digest))
        }
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(Self::file_name(name))
    }

    /// Writes `definition` durably (see the module doc).
    pub async fn save(&self, definition: &StreamDefinition) -> Result<(), StoreError> {
        let path = self.path_of(&definition.name);
        let bytes = serde_json::to_vec_pretty(definition).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        sluice_durable::replace("sluice-video-store", path, bytes)
            .await
            .map_err(StoreError::from)
    }

    /// Removes the definition of `name` durably.
    pub async fn remove(&self, name: &str) -> Result<(), StoreError> {
        sluice_durable::remove("sluice-video-store", self.path_of(name))
            .await
            .map_err(StoreError::from)
    }
}

impl From<sluice_durable::FileError> for StoreError {
    fn from(error: sluice_durable::FileError) -> Self {
        Self::Io {
            path: error.path,
            source: error.source,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use futures_lite::future::block_on;

    use std::fs;

    use super::*;

    pub(crate) fn definition(name: &str, version: &str) -> StreamDefinition {
        StreamDefinition {
            name: name.to_owned(),
            arn: format!("arn:aws:kinesisvideo:us-east-1:000000000000:stream/{name}/1"),
            device_name: None,
            media_type: Some("video/h264".to_owned()),
            kms_key_id: "arn:aws:kms:us-east-1:000000000000:alias/aws/kinesisvideo".to_owned(),
            data_retention_hours: 24,
            version: version.to_owned(),
            creation_time_ms: 1,
            tags: BTreeMap::new(),
            storage_tier: "HOT".to_owned(),
            internal_stream: format!("__sluice_video__{name}-1"),
            image_generation: None,
            notification: None,
        }
    }

    pub(crate) fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("sluice-video-store-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn saved_definitions_load_again_removed_ones_do_not_and_leftover_tmp_files_are_dropped() {
        let dir = temp_dir();
        let (store, loaded) = Store::open(&dir).expect("opened");
        assert!(loaded.is_empty());
        block_on(store.save(&definition("a", "v1"))).expect("saved");
        block_on(store.save(&definition("a", "v2"))).expect("saved again");
        block_on(store.save(&definition("b", "v1"))).expect("saved");
        block_on(store.remove("b")).expect("removed");
        // A crash in the middle of a save leaves a .tmp file beside the last good definition.
        let tmp = dir
            .join("video")
            .join(format!("{}.tmp", Store::file_name("a")));
        fs::write(&tmp, b"{torn").expect("tmp written");
        let (_, loaded) = Store::open(&dir).expect("reopened");
        assert_eq!(loaded, vec![definition("a", "v2")]);
        assert!(!tmp.exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn dot_names_and_names_of_256_bytes_get_files_of_their_own() {
        let long_a = "a".repeat(256);
        let long_b = format!("{}b", "a".repeat(255));
        let names = [".", "..", "-", "_.-", long_a.as_str(), long_b.as_str()];
        for name in names {
            let file = Store::file_name(name);
            assert!(file.len() + ".tmp".len() <= 255, "{file}");
            let stem = file.strip_suffix(".json").expect("a .json file");
            assert!(
                stem.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
                "{file}"
            );
        }
        let mut files: Vec<String> = names.iter().map(|n| Store::file_name(n)).collect();
        files.sort();
        files.dedup();
        assert_eq!(files.len(), names.len());

        let dir = temp_dir();
        let (store, _) = Store::open(&dir).expect("opened");
        for name in names {
            block_on(store.save(&definition(name, "v1"))).expect("saved");
        }
        let (_, loaded) = Store::open(&dir).expect("reopened");
        let mut expected: Vec<StreamDefinition> =
            names.iter().map(|n| definition(n, "v1")).collect();
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(loaded, expected);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_whose_stream_name_does_not_map_to_its_file_name_is_refused() {
        let dir = temp_dir();
        let (store, _) = Store::open(&dir).expect("opened");
        block_on(store.save(&definition("a", "v1"))).expect("saved");
        fs::rename(
            dir.join("video").join(Store::file_name("a")),
            dir.join("video").join(Store::file_name("b")),
        )
        .expect("renamed");
        assert!(matches!(Store::open(&dir), Err(StoreError::Corrupt { .. })));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_definition_without_the_later_fields_still_loads() {
        let dir = temp_dir();
        let (_, _) = Store::open(&dir).expect("opened");
        let old = serde_json::json!({
            "name": "old",
            "arn": "arn:aws:kinesisvideo:us-east-1:000000000000:stream/old/1",
            "kms_key_id": "k",
            "data_retention_hours": 0,
            "version": "v1",
            "creation_time_ms": 1,
            "internal_stream": "__sluice_video__old-1",
        });
        fs::write(
            dir.join("video").join(Store::file_name("old")),
            old.to_string(),
        )
        .expect("written");
        let (_, loaded) = Store::open(&dir).expect("reopened");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].storage_tier, "HOT");
        assert!(loaded[0].tags.is_empty());
        let _ = fs::remove_dir_all(&dir);
    }
}
