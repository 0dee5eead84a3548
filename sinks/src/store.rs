//! Persistence of delivery stream definitions: one JSON file per delivery stream,
//! `<data-dir>/firehose/<name>.json`.
//!
//! A save writes `<name>.json.tmp`, fsyncs it, renames it over `<name>.json` and fsyncs the
//! directory, so a crash leaves either the old or the new definition, never a torn one; a
//! removal unlinks the file and fsyncs the directory. Leftover `.tmp` files are deleted when
//! the store opens. The file work runs on a short-lived thread of its own, so neither a shard
//! core (glommio) nor a service core (tokio) blocks on an fsync.

use std::path::{Path, PathBuf};

use crate::model::Definition;

/// Why the store could not open, save or remove.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("firehose store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("firehose definition {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The directory of definitions.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) `<data_dir>/firehose` and loads every definition in it.
    pub fn open(data_dir: &Path) -> Result<(Self, Vec<Definition>), StoreError> {
        let (dir, files) = sluice_durable::open_dir(data_dir, "firehose", ".json")?;
        crate::format::set_firehose_dir(&dir);
        let mut definitions = Vec::with_capacity(files.len());
        for file in files {
            let definition: Definition =
                serde_json::from_slice(&file.bytes).map_err(|e| StoreError::Corrupt {
                    path: file.path,
                    reason: e.to_string(),
                })?;
            definitions.push(definition);
        }
        Ok((Self { dir }, definitions))
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Writes `definition` durably (see the module doc).
    pub async fn save(&self, definition: &Definition) -> Result<(), StoreError> {
        let path = self.path_of(&definition.name);
        let bytes = serde_json::to_vec_pretty(definition).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        sluice_durable::replace("sluice-firehose-store", path, bytes)
            .await
            .map_err(StoreError::from)
    }

    /// Removes the definition of `name` durably.
    pub async fn remove(&self, name: &str) -> Result<(), StoreError> {
        sluice_durable::remove("sluice-firehose-store", self.path_of(name))
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
mod tests {
    use std::collections::BTreeMap;

    use std::fs;

    use super::*;
    use crate::model::{Compression, Encryption, KinesisSource, S3Destination, StreamType};

    fn definition(name: &str, version_id: u64) -> Definition {
        Definition {
            name: name.to_owned(),
            arn: format!("arn:aws:firehose:us-east-1:000000000000:deliverystream/{name}"),
            stream_type: StreamType::DirectPut,
            version_id,
            create_ms: 1,
            last_update_ms: None,
            destination: S3Destination {
                role_arn: "r".to_owned(),
                bucket_arn: "arn:aws:s3:::b".to_owned(),
                prefix: None,
                error_output_prefix: None,
                buffer_size_mib: 5,
                buffer_interval_s: 300,
                compression: Compression::Gzip,
                file_extension: None,
                custom_time_zone: None,
                extended: true,
                transform: None,
                partitioning: None,
                conversion: None,
            },
            encryption: Encryption::default(),
            tags: BTreeMap::new(),
            source_stream: format!("__sluice_firehose__{name}"),
            kinesis_source: None,
            http_endpoint: None,
            redshift: None,
            opensearch: None,
        }
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    #[test]
    fn saved_definitions_load_again_removed_ones_do_not_and_leftover_tmp_files_are_dropped() {
        let dir = std::env::temp_dir().join(format!("sluice-store-{}", uuid::Uuid::new_v4()));
        let (store, loaded) = Store::open(&dir).expect("opened");
        assert!(loaded.is_empty());
        block_on(store.save(&definition("a", 1))).expect("saved");
        block_on(store.save(&definition("a", 2))).expect("saved again");
        block_on(store.save(&definition("b", 1))).expect("saved");
        block_on(store.remove("b")).expect("removed");
        // A crash in the middle of a save leaves a .tmp file beside the last good definition.
        fs::write(dir.join("firehose").join("a.json.tmp"), b"{torn").expect("tmp written");
        let (_, loaded) = Store::open(&dir).expect("reopened");
        assert_eq!(loaded, vec![definition("a", 2)]);
        assert!(!dir.join("firehose").join("a.json.tmp").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_kinesis_source_starts_at_its_creation_and_keeps_that_start_after_a_reload() {
        let direct_put = definition("direct", 1);
        assert_eq!(direct_put.delivery_start_ms(), None);
        let mut kinesis = definition("kinesis", 1);
        kinesis.create_ms = 1_765_000_000_123;
        kinesis.stream_type = StreamType::KinesisStreamAsSource;
        kinesis.source_stream = "clicks".to_owned();
        kinesis.kinesis_source = Some(KinesisSource {
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/clicks".to_owned(),
            role_arn: "arn:aws:iam::000000000000:role/firehose".to_owned(),
        });
        assert_eq!(kinesis.delivery_start_ms(), Some(1_765_000_000_123));
        let dir = std::env::temp_dir().join(format!("sluice-store-{}", uuid::Uuid::new_v4()));
        let (store, _) = Store::open(&dir).expect("opened");
        block_on(store.save(&kinesis)).expect("saved");
        let (_, loaded) = Store::open(&dir).expect("reopened");
        let starts: Vec<Option<u64>> = loaded.iter().map(Definition::delivery_start_ms).collect();
        assert_eq!(starts, vec![Some(1_765_000_000_123)]);
        let _ = fs::remove_dir_all(&dir);
    }
}
