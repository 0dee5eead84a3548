//! The video streams of the server, shared by every core's HTTP front end (control plane and
//! data plane) behind one `Arc`.
//!
//! Invariants:
//! - A definition is in the map only after its file is durable, and its file is removed before
//!   it leaves the map. Control-plane changes hold [`Registry::lock_control`] for their whole
//!   read-check-persist-install sequence, so the files and the map change in the same order and
//!   a version check cannot race another update.
//! - The map's std mutex is never held across an await.
//! - A stream is CREATING until its internal Kinesis stream exists, is ACTIVE and has the
//!   retention the definition asks for ([`Registry::refresh`]); it is DELETING while
//!   DeleteStream runs. A stream loaded at start is ACTIVE (its internal stream was recovered
//!   with the catalog) and is checked against its internal stream on first use.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use sluice_core::api::{CreateStreamInput, KinesisApi, StreamStatus as KinesisStatus};
use sluice_core::limits::{RETENTION_HOURS_MAX, RETENTION_HOURS_MIN};

use crate::api::validate::{check_stream_arn, check_stream_name};
use crate::error::{ErrorKind, VideoError};
use crate::model::{DATA_SHARD, INDEX_SHARD, StreamDefinition, StreamStatus, VideoStream};
use crate::store::{Store, StoreError};

/// The shard count of every internal stream: one for fragment data, one for the index.
pub const INTERNAL_SHARD_COUNT: u32 = 2;
const _: () = assert!(DATA_SHARD < INTERNAL_SHARD_COUNT);
const _: () = assert!(INDEX_SHARD < INTERNAL_SHARD_COUNT);
const _: () = assert!(DATA_SHARD != INDEX_SHARD);

/// Where the server's ARNs say its streams live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArnScope {
    pub region: String,
    pub account_id: String,
}

impl Default for ArnScope {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            account_id: "000000000000".to_owned(),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    definition: StreamDefinition,
    status: StreamStatus,
    /// The internal stream was seen ACTIVE with the retention the definition asks for.
    synced: bool,
}

/// The serialising lock of the control plane: a channel holding one token. Taking the token
/// is the lock; the guard gives it back when dropped. It needs no runtime, so glommio cores
/// and test executors alike can await it.
#[derive(Debug)]
struct ControlLock {
    give: async_channel::Sender<()>,
    take: async_channel::Receiver<()>,
}

/// Held by a control-plane call for its whole read-check-persist-install sequence.
#[derive(Debug)]
pub struct ControlGuard<'a> {
    give: &'a async_channel::Sender<()>,
}

impl Drop for ControlGuard<'_> {
    fn drop(&mut self) {
        // Only the holder of the single token returns it, so the channel of capacity one has
        // room, and the registry (which owns the receiver) outlives the guard.
        let returned = self.give.try_send(());
        assert!(returned.is_ok(), "the control token is returned only once");
    }
}

#[derive(Debug)]
pub struct Registry {
    streams: Mutex<BTreeMap<String, Entry>>,
    control: ControlLock,
    store: Store,
    scope: ArnScope,
    /// The creation time of the newest stream, so that a stream deleted and created again
    /// within one millisecond still gets a new ARN.
    last_creation_ms: AtomicU64,
}

impl Registry {
    /// Loads the streams under `data_dir`, naming region `us-east-1` and account
    /// `000000000000` in ARNs.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_in(data_dir, ArnScope::default())
    }

    /// Loads the streams under `data_dir`, naming `scope` in new ARNs.
    pub fn open_in(data_dir: &Path, scope: ArnScope) -> Result<Self, StoreError> {
        let (store, definitions) = Store::open(data_dir)?;
        let last_creation_ms = definitions
            .iter()
            .map(|d| d.creation_time_ms)
            .max()
            .unwrap_or(0);
        let streams = definitions
            .into_iter()
            .map(|definition| {
                (
                    definition.name.clone(),
                    Entry {
                        definition,
                        status: StreamStatus::Active,
                        synced: false,
                    },
                )
            })
            .collect();
        let (give, take) = async_channel::bounded(1);
        give.try_send(())
            .expect("a new channel of capacity one takes one token");
        Ok(Self {
            streams: Mutex::new(streams),
            control: ControlLock { give, take },
            store,
            scope,
            last_creation_ms: AtomicU64::new(last_creation_ms),
        })
    }

    pub fn region(&self) -> &str {
        &self.scope.region
    }

    pub fn account_id(&self) -> &str {
        &self.scope.account_id
    }

    /// The ARN of stream `name` created at `creation_time_ms`.
    pub fn stream_arn(&self, name: &str, creation_time_ms: u64) -> String {
        format!(
            "arn:aws:kinesisvideo:{}:{}:stream/{name}/{creation_time_ms}",
            self.scope.region, self.scope.account_id
        )
    }

    /// The creation time of a new stream at `now_ms`: later than every earlier one.
    pub(crate) fn creation_time_ms(&self, _control: &ControlGuard<'_>, now_ms: u64) -> u64 {
        let last = self.last_creation_ms.load(Ordering::Relaxed);
        let creation = now_ms.max(last.saturating_add(1));
        self.last_creation_ms.store(creation, Ordering::Relaxed);
        creation
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding the lock aborts the process (panic = "abort"), so a poisoned
        // lock can only be seen in tests; the map is still consistent then (every write is a
        // single insert, remove or field store).
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stream a call names by exactly one of `stream_name` and `stream_arn`.
    ///
    /// InvalidArgumentException when neither or both are given or one is malformed;
    /// ResourceNotFoundException when no stream has that name, or the ARN names an earlier
    /// incarnation of it.
    pub fn resolve(
        &self,
        stream_name: Option<&str>,
        stream_arn: Option<&str>,
    ) -> Result<VideoStream, VideoError> {
        match (stream_name, stream_arn) {
            (Some(name), None) => {
                check_stream_name(name, "streamName")?;
                self.get(name).ok_or_else(VideoError::not_found)
            }
            (None, Some(arn)) => self.by_arn(arn, "streamARN"),
            (None, None) => Err(VideoError::invalid(
                "StreamName or StreamARN must be specified.",
            )),
            (Some(_), Some(_)) => Err(VideoError::invalid(
                "Specify either StreamName or StreamARN, not both.",
            )),
        }
    }

    /// The stream whose ARN is `arn` (`member` names the field in a validation error).
    pub fn by_arn(&self, arn: &str, member: &str) -> Result<VideoStream, VideoError> {
        let name = check_stream_arn(arn, member)?;
        match self.get(name) {
            Some(stream) if stream.definition.arn == arn => Ok(stream),
            _ => Err(VideoError::not_found()),
        }
    }

    pub fn get(&self, name: &str) -> Option<VideoStream> {
        self.lock().get(name).map(|e| VideoStream {
            definition: e.definition.clone(),
            status: e.status,
        })
    }

    /// Every stream, by name.
    pub fn snapshot(&self) -> Vec<VideoStream> {
        self.lock()
            .values()
            .map(|e| VideoStream {
                definition: e.definition.clone(),
                status: e.status,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Takes the control plane's serialising lock.
    pub async fn lock_control(&self) -> ControlGuard<'_> {
        self.control
            .take
            .recv()
            .await
            .expect("the registry holds both ends of its control channel");
        ControlGuard {
            give: &self.control.give,
        }
    }

    /// Saves `definition` durably, then installs it with `status`. A new definition (another
    /// incarnation, or none before) is checked against its internal stream again.
    pub(crate) async fn save(
        &self,
        _control: &ControlGuard<'_>,
        definition: StreamDefinition,
        status: StreamStatus,
    ) -> Result<(), VideoError> {
        self.store
            .save(&definition)
            .await
            .map_err(|e| VideoError::internal(e.to_string()))?;
        let mut streams = self.lock();
        let synced = streams.get(&definition.name).is_some_and(|e| {
            e.synced
                && e.definition.internal_stream == definition.internal_stream
                && e.definition.data_retention_hours == definition.data_retention_hours
        });
        streams.insert(
            definition.name.clone(),
            Entry {
                definition,
                status,
                synced,
            },
        );
        Ok(())
    }

    /// Removes `name` durably, then from the map.
    pub(crate) async fn remove(
        &self,
        _control: &ControlGuard<'_>,
        name: &str,
    ) -> Result<(), VideoError> {
        self.store
            .remove(name)
            .await
            .map_err(|e| VideoError::internal(e.to_string()))?;
        self.lock().remove(name);
        Ok(())
    }

    pub(crate) fn set_status(&self, _control: &ControlGuard<'_>, name: &str, status: StreamStatus) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.status = status;
        }
    }

    fn needs_sync(&self, name: &str) -> Option<StreamDefinition> {
        self.lock()
            .get(name)
            .filter(|e| !e.synced && e.status != StreamStatus::Deleting)
            .map(|e| e.definition.clone())
    }

    /// Brings stream `name`'s internal stream in line with its definition when it was not yet
    /// seen so, and answers the stream's status. See [`Registry::refresh_locked`].
    pub async fn refresh<A: KinesisApi>(
        &self,
        api: &A,
        name: &str,
    ) -> Result<StreamStatus, VideoError> {
        if self.needs_sync(name).is_none() {
            return self
                .get(name)
                .map(|VideoStream { status, .. }| status)
                .ok_or_else(VideoError::not_found);
        }
        let control = self.lock_control().await;
        self.refresh_locked(&control, api, name).await
    }

    /// The internal stream is created when missing (a crash between the definition's save and
    /// the stream's creation), waited for while CREATING, and given the retention the
    /// definition asks for once ACTIVE; then the video stream is ACTIVE.
    pub(crate) async fn refresh_locked<A: KinesisApi>(
        &self,
        control: &ControlGuard<'_>,
        api: &A,
        name: &str,
    ) -> Result<StreamStatus, VideoError> {
        let Some(definition) = self.needs_sync(name) else {
            return self
                .get(name)
                .map(|VideoStream { status, .. }| status)
                .ok_or_else(VideoError::not_found);
        };
        let internal = definition.internal_stream.clone();
        let summary = match api.describe_stream_summary(internal.clone()).await {
            Ok(summary) => summary,
            Err(e) if e.kind == sluice_core::ErrorKind::ResourceNotFound => {
                create_internal_stream(api, &internal).await?;
                match api.describe_stream_summary(internal.clone()).await {
                    Ok(summary) => summary,
                    Err(e) => return Err(VideoError::internal(e.message)),
                }
            }
            Err(e) => return Err(VideoError::internal(e.message)),
        };
        if summary.stream_status != KinesisStatus::Active {
            return Ok(self
                .get(name)
                .map_or(StreamStatus::Creating, |VideoStream { status: s, .. }| s));
        }
        let wanted = internal_retention_hours(definition.data_retention_hours);
        let current = summary.retention_period_hours;
        let changed = if wanted > current {
            api.increase_stream_retention_period(internal, wanted).await
        } else if wanted < current {
            api.decrease_stream_retention_period(internal, wanted).await
        } else {
            Ok(())
        };
        if let Err(e) = changed {
            if e.kind == sluice_core::ErrorKind::ResourceInUse {
                // The internal stream is busy (UPDATING): try again on the next call.
                return Ok(self
                    .get(name)
                    .map_or(StreamStatus::Creating, |VideoStream { status: s, .. }| s));
            }
            return Err(VideoError::internal(e.message));
        }
        let _ = control;
        let mut streams = self.lock();
        let Some(entry) = streams.get_mut(name) else {
            return Err(VideoError::not_found());
        };
        if entry.definition.internal_stream == definition.internal_stream
            && entry.definition.data_retention_hours == definition.data_retention_hours
        {
            entry.synced = true;
            if entry.status == StreamStatus::Creating {
                entry.status = StreamStatus::Active;
            }
        }
        Ok(entry.status)
    }
}

/// The retention of a video stream's internal stream: the video retention, at least the
/// Kinesis minimum (which is then the host buffer of a stream without retention) and at most
/// the Kinesis maximum.
pub fn internal_retention_hours(data_retention_hours: u32) -> u32 {
    data_retention_hours.clamp(RETENTION_HOURS_MIN, RETENTION_HOURS_MAX)
}

/// Creates `stream_name` with the internal stream's two shards; Kinesis's limit errors become
/// KVS's. One that already exists is an error: internal names are unique per incarnation, so
/// it can only be an earlier incarnation's still being deleted, whose fragments must never be
/// adopted.
pub(crate) async fn create_internal_stream<A: KinesisApi>(
    api: &A,
    stream_name: &str,
) -> Result<(), VideoError> {
    match api
        .create_stream(CreateStreamInput {
            stream_name: stream_name.to_owned(),
            shard_count: Some(INTERNAL_SHARD_COUNT),
            stream_mode: None,
            tags: Vec::new(),
        })
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind == sluice_core::ErrorKind::ResourceInUse => Err(VideoError::new(
            ErrorKind::ResourceInUse,
            format!(
                "The internal stream {stream_name} already exists: {}",
                e.message
            ),
        )),
        Err(e) if e.kind == sluice_core::ErrorKind::LimitExceeded => Err(VideoError::new(
            ErrorKind::AccountStreamLimitExceeded,
            e.message,
        )),
        Err(e) => Err(VideoError::internal(e.message)),
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;

    use super::*;
    use crate::store::tests::{definition, temp_dir};

    #[test]
    fn a_stream_is_resolved_by_exactly_one_of_its_name_and_its_current_arn() {
        let dir = temp_dir();
        let registry = Registry::open(&dir).expect("opened");
        block_on(async {
            let control = registry.lock_control().await;
            registry
                .save(&control, definition("cam", "v1"), StreamStatus::Active)
                .await
                .expect("saved");
        });
        let arn = "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam/1";
        assert_eq!(
            registry
                .resolve(Some("cam"), None)
                .expect("by name")
                .definition
                .name,
            "cam"
        );
        assert_eq!(
            registry
                .resolve(None, Some(arn))
                .expect("by arn")
                .definition
                .name,
            "cam"
        );
        let kind = |r: Result<VideoStream, VideoError>| {
            r.map(|_| ()).expect_err("the call must fail").kind
        };
        assert_eq!(
            kind(registry.resolve(None, None)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(registry.resolve(Some("cam"), Some(arn))),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(registry.resolve(Some("ca m"), None)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(registry.resolve(Some("other"), None)),
            ErrorKind::ResourceNotFound
        );
        // An ARN of an earlier incarnation names nothing.
        let old = "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam/0";
        assert_eq!(
            kind(registry.resolve(None, Some(old))),
            ErrorKind::ResourceNotFound
        );
        assert_eq!(
            kind(registry.resolve(None, Some("arn:nope"))),
            ErrorKind::InvalidArgument
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn saved_streams_are_there_after_a_reopen_and_removed_ones_are_not() {
        let dir = temp_dir();
        let registry = Registry::open(&dir).expect("opened");
        block_on(async {
            let control = registry.lock_control().await;
            for name in ["a", "b", "."] {
                registry
                    .save(&control, definition(name, "v1"), StreamStatus::Creating)
                    .await
                    .expect("saved");
            }
            registry.remove(&control, "b").await.expect("removed");
        });
        drop(registry);
        let registry = Registry::open(&dir).expect("reopened");
        let names: Vec<String> = registry
            .snapshot()
            .into_iter()
            .map(|VideoStream { definition: d, .. }| d.name)
            .collect();
        assert_eq!(names, vec![".".to_owned(), "a".to_owned()]);
        assert_eq!(
            registry.get("a").expect("there").status,
            StreamStatus::Active
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_control_lock_is_released_when_its_guard_drops() {
        let dir = temp_dir();
        let registry = Registry::open(&dir).expect("opened");
        block_on(async {
            let first = registry.lock_control().await;
            assert!(registry.control.take.try_recv().is_err(), "held");
            drop(first);
            let _second = registry.lock_control().await;
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn internal_retention_is_the_video_retention_within_the_kinesis_bounds() {
        assert_eq!(internal_retention_hours(0), 24);
        assert_eq!(internal_retention_hours(1), 24);
        assert_eq!(internal_retention_hours(48), 48);
        assert_eq!(internal_retention_hours(87_600), 8760);
    }
}
