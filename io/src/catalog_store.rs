//! Durable storage of the catalog: `<data-dir>/catalog/catalog.json`, replaced atomically.
//!
//! File format: the catalog as JSON, a newline, then `crc32c=<8 hex digits>` of the JSON bytes
//! and a final newline. A save writes `catalog.json.tmp`, fsyncs it, renames it over
//! `catalog.json` and fsyncs the directory, so after a crash the file is either the old or the
//! new catalog, never a mix. A leftover `.tmp` is ignored (it was never renamed, so never
//! acknowledged).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sluice_core::catalog::{Catalog, CatalogConfig};

const FILE_NAME: &str = "catalog.json";
const TMP_NAME: &str = "catalog.json.tmp";

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CatalogStoreError {
    #[error("catalog I/O on {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("catalog {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Debug)]
pub struct CatalogStore {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CatalogStoreError + '_ {
    move |source| CatalogStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl CatalogStore {
    /// Loads the catalog (or starts an empty one). The stored streams are kept; the
    /// configuration always comes from the current start-up settings.
    pub fn open(dir: &Path, config: CatalogConfig) -> Result<(Self, Catalog), CatalogStoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(FILE_NAME);
        let mut catalog = match std::fs::read(&path) {
            Ok(bytes) => decode(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Catalog::new(config.clone()),
            Err(e) => return Err(CatalogStoreError::Io { path, source: e }),
        };
        catalog.config = config;
        Ok((
            Self {
                dir: dir.to_path_buf(),
            },
            catalog,
        ))
    }

    pub fn save(&mut self, catalog: &Catalog) -> Result<(), CatalogStoreError> {
        let json = serde_json::to_vec(catalog).map_err(|e| CatalogStoreError::Corrupt {
            path: self.dir.join(FILE_NAME),
            reason: format!("could not encode: {e}"),
        })?;
        let tmp = self.dir.join(TMP_NAME);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        file.write_all(&json).map_err(io_err(&tmp))?;
        write!(file, "\ncrc32c={:08x}\n", crc32c::crc32c(&json)).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        let path = self.dir.join(FILE_NAME);
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        Ok(())
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Catalog, CatalogStoreError> {
    let corrupt = |reason: &str| CatalogStoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let text = bytes
        .strip_suffix(b"\n")
        .ok_or_else(|| corrupt("missing final newline"))?;
    let split = text
        .iter()
        .rposition(|&b| b == b'\n')
        .ok_or_else(|| corrupt("missing checksum line"))?;
    let (json, trailer) = (&text[..split], &text[split + 1..]);
    let stored = std::str::from_utf8(trailer)
        .ok()
        .and_then(|t| t.strip_prefix("crc32c="))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| corrupt("malformed checksum line"))?;
    let computed = crc32c::crc32c(json);
    if stored != computed {
        return Err(corrupt(&format!(
            "checksum mismatch: stored {stored:08x}, computed {computed:08x}"
        )));
    }
    serde_json::from_slice(json).map_err(|e| corrupt(&format!("undecodable JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_catalog_loads_back_and_a_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut store, mut catalog) =
            CatalogStore::open(dir.path(), CatalogConfig::default()).expect("open");
        catalog
            .create_stream(
                sluice_core::api::CreateStreamInput {
                    stream_name: "s".into(),
                    shard_count: Some(3),
                    stream_mode: None,
                    tags: vec![],
                },
                1_700_000_000_000,
                &mut |_| 0,
            )
            .expect("create");
        store.save(&catalog).expect("save");
        let (_, loaded) = CatalogStore::open(dir.path(), CatalogConfig::default()).expect("reopen");
        assert_eq!(loaded, catalog);

        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[10] ^= 0x01;
        std::fs::write(&path, bytes).expect("write");
        assert!(matches!(
            CatalogStore::open(dir.path(), CatalogConfig::default()),
            Err(CatalogStoreError::Corrupt { .. })
        ));
    }
}
