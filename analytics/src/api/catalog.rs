//! The application catalog: every application's configuration and status, persisted in
//! `<data-dir>/analytics/applications.json`. The running applications' window snapshots live
//! beside it, in `<data-dir>/analytics/snapshots` ([`crate::snapshot_store`]).
//!
//! Invariants:
//! - Every change is written to a temporary file, fsynced, renamed over the catalog and the
//!   directory fsynced before the API answers, so an acknowledged change survives a crash.
//! - `version_id` grows by one on every configuration change; status changes do not bump it.
//! - Statuses move READY → STARTING → RUNNING → STOPPING → READY, RUNNING → UPDATING → RUNNING
//!   (and DELETING): the API moves READY → STARTING, RUNNING/STARTING → STOPPING and, on a
//!   configuration change, RUNNING → UPDATING; the runner moves STARTING and UPDATING → RUNNING
//!   and STOPPING → READY. A server that restarts finds STARTING/RUNNING/UPDATING applications
//!   and runs them again, and finishes STOPPING ones.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::schema_wire::WireSourceSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Deleting,
    Starting,
    Stopping,
    Ready,
    Running,
    Updating,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Deleting => "DELETING",
            Status::Starting => "STARTING",
            Status::Stopping => "STOPPING",
            Status::Ready => "READY",
            Status::Running => "RUNNING",
            Status::Updating => "UPDATING",
        }
    }
}

/// A streaming input (`KinesisStreamsInput` or `KinesisFirehoseInput`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputConfig {
    pub id: String,
    pub name_prefix: String,
    /// `KinesisStreams` or `KinesisFirehose`.
    pub source_kind: String,
    pub resource_arn: String,
    pub role_arn: String,
    pub schema: WireSourceSchema,
    pub parallelism: u32,
    /// The starting position given at the last StartApplication.
    #[serde(default)]
    pub starting_position: Option<String>,
    /// InputProcessingConfiguration: the pre-processing Lambda.
    #[serde(default)]
    pub processing: Option<LambdaProcessor>,
}

/// An `InputLambdaProcessor`: the function records go through before the input schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LambdaProcessor {
    pub resource_arn: String,
    pub role_arn: String,
}

/// A `CloudWatchLoggingOption`. There is no CloudWatch here: the application's error messages
/// are written through `tracing` with `log_stream_arn` as a field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudWatchLoggingOption {
    pub id: String,
    pub log_stream_arn: String,
    pub role_arn: String,
}

/// An output (`KinesisStreamsOutput`, `KinesisFirehoseOutput` or `LambdaOutput`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputConfig {
    pub id: String,
    /// The in-application stream, case-sensitive.
    pub name: String,
    /// `KinesisStreams`, `KinesisFirehose` or `Lambda`.
    pub destination_kind: String,
    pub resource_arn: String,
    pub role_arn: String,
    /// `JSON` or `CSV`.
    pub record_format_type: String,
}

/// A reference data source: an S3 object loaded into the in-application table `table_name`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceConfig {
    pub id: String,
    /// The in-application table, case-sensitive as the SQL quotes it.
    pub table_name: String,
    /// `arn:aws:s3:::bucket`.
    pub bucket_arn: String,
    pub file_key: String,
    pub role_arn: String,
    pub schema: WireSourceSchema,
}

impl ReferenceConfig {
    /// The bucket of `bucket_arn` (checked when the source was added).
    pub fn bucket(&self) -> &str {
        bucket_of(&self.bucket_arn).unwrap_or_default()
    }
}

/// The bucket name of an S3 bucket ARN (`arn:aws:s3:::bucket`).
pub fn bucket_of(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (_partition, rest) = rest.split_once(':')?;
    let bucket = rest.strip_prefix("s3:::")?;
    let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
    (!bucket.is_empty() && !bucket.contains('/')).then_some(bucket)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: Option<String>,
}

/// One application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub name: String,
    pub arn: String,
    pub description: Option<String>,
    pub status: Status,
    pub create_ms: u64,
    pub update_ms: u64,
    pub version_id: u64,
    pub code: Option<String>,
    pub inputs: Vec<InputConfig>,
    pub outputs: Vec<OutputConfig>,
    /// Reference data sources (at most one, as in KDA).
    #[serde(default)]
    pub references: Vec<ReferenceConfig>,
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub cloudwatch_logging_options: Vec<CloudWatchLoggingOption>,
    /// The next number handed out in input, output and reference ids (`"1.<n>"`).
    pub next_id: u64,
}

impl Application {
    /// A fresh id for an input, output, reference data source or CloudWatch logging option: `1.1`, `1.2`, … as AWS numbers
    /// them `[verify]`.
    pub fn take_id(&mut self) -> String {
        self.next_id += 1;
        format!("1.{}", self.next_id)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CatalogFile {
    applications: Vec<Application>,
}

/// Why the catalog could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid application catalog: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The directory of window snapshots, beside the catalog file.
const SNAPSHOT_DIR: &str = "snapshots";

/// The applications in name order, with their file.
#[derive(Debug)]
pub struct Catalog {
    path: Option<PathBuf>,
    pub applications: Vec<Application>,
}

impl Catalog {
    /// A catalog kept in memory only (tests).
    pub fn in_memory() -> Self {
        Catalog {
            path: None,
            applications: Vec::new(),
        }
    }

    /// Opens (or creates) the catalog under `data_dir/analytics`.
    pub fn open(data_dir: &Path) -> Result<Self, CatalogError> {
        let dir = data_dir.join("analytics");
        std::fs::create_dir_all(&dir).map_err(|source| CatalogError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join("applications.json");
        let applications = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<CatalogFile>(&bytes)
                    .map_err(|source| CatalogError::Corrupt {
                        path: path.clone(),
                        source,
                    })?
                    .applications
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(CatalogError::Io {
                    action: "read",
                    path,
                    source,
                });
            }
        };
        let snapshots = dir.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&snapshots).map_err(|source| CatalogError::Io {
            action: "create",
            path: snapshots,
            source,
        })?;
        Ok(Catalog {
            path: Some(path),
            applications,
        })
    }

    /// Where running applications keep their window snapshots ([`crate::snapshot_store`]):
    /// `<data-dir>/analytics/snapshots`; `None` for a catalog kept in memory.
    pub fn snapshot_dir(&self) -> Option<PathBuf> {
        Some(self.path.as_ref()?.parent()?.join(SNAPSHOT_DIR))
    }

    pub fn get(&self, name: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.name == name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Application> {
        self.applications.iter_mut().find(|a| a.name == name)
    }

    /// Writes the catalog durably (see the module doc).
    pub fn save(&mut self) -> Result<(), CatalogError> {
        self.applications.sort_by(|a, b| a.name.cmp(&b.name));
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = CatalogFile {
            applications: self.applications.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("the catalog always serializes");
        let tmp = path.with_extension("json.tmp");
        let io = |action: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| CatalogError::Io {
                action,
                path: p,
                source,
            }
        };
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io("rename", path))?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync", dir))?;
        }
        Ok(())
    }
}
