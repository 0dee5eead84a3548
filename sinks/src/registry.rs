//! The delivery streams of the server, shared by every shard core's HTTP front end (control
//! plane and PutRecord) and the service core that delivers.
//!
//! Invariants:
//! - A definition is in the map only after its file is durable, and its file is removed before
//!   it leaves the map; control-plane changes are serialised by [`Registry::control`], so the
//!   file and the map change in the same order.
//! - The map's lock is never held across an await.
//! - Every change wakes the delivery supervisor through [`Registry::changed`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use std::sync::Arc;

use crate::metrics::StreamMetrics;
use crate::model::{Definition, DeliveryStream, Status};
use crate::store::{Store, StoreError};

#[derive(Debug)]
pub struct Registry {
    streams: Mutex<BTreeMap<String, DeliveryStream>>,
    /// Held by a control-plane call for the whole of its read-check-persist-install sequence.
    pub control: tokio::sync::Mutex<()>,
    /// Notified after every change of the map.
    pub changed: tokio::sync::Notify,
    pub store: Store,
    metrics: Mutex<BTreeMap<String, Arc<StreamMetrics>>>,
}

impl Registry {
    /// Loads the definitions under `data_dir`; each starts CREATING until its source is read.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let (store, definitions) = Store::open(data_dir)?;
        let streams = definitions
            .into_iter()
            .map(|definition| {
                (
                    definition.name.clone(),
                    DeliveryStream {
                        definition,
                        status: Status::Creating,
                    },
                )
            })
            .collect();
        Ok(Self {
            streams: Mutex::new(streams),
            control: tokio::sync::Mutex::new(()),
            changed: tokio::sync::Notify::new(),
            store,
            metrics: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, DeliveryStream>> {
        // A panic while holding the lock aborts the process (panic = "abort"), so a poisoned
        // lock can only be seen in tests; the map is still consistent then (every write is a
        // single insert or remove).
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, name: &str) -> Option<DeliveryStream> {
        self.lock().get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Every delivery stream, by name.
    pub fn snapshot(&self) -> Vec<DeliveryStream> {
        self.lock().values().cloned().collect()
    }

    /// Installs `definition` (after it was saved), keeping the status of an existing stream.
    pub fn install(&self, definition: Definition) {
        let mut streams = self.lock();
        let status = streams
            .get(&definition.name)
            .map_or(Status::Creating, |s| s.status);
        streams.insert(
            definition.name.clone(),
            DeliveryStream { definition, status },
        );
        drop(streams);
        self.changed.notify_waiters();
    }

    pub fn remove(&self, name: &str) {
        self.lock().remove(name);
        self.metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        self.changed.notify_waiters();
    }

    /// Marks `name` ACTIVE if it is still the incarnation created at `create_ms`.
    pub fn activate(&self, name: &str, create_ms: u64) {
        let mut streams = self.lock();
        if let Some(stream) = streams.get_mut(name)
            && stream.definition.create_ms == create_ms
        {
            stream.status = Status::Active;
        }
    }

    /// The metrics of delivery stream `name` (created on first use).
    pub fn metrics(&self, name: &str) -> Arc<StreamMetrics> {
        self.metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The newest delivery error of delivery stream `name` that is still failing.
    pub fn delivery_error(&self, name: &str) -> Option<crate::failure::DeliveryError> {
        let metrics = self
            .metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned();
        metrics.and_then(|m| m.errors.latest())
    }

    /// Prometheus text of every delivery stream's metrics.
    pub fn render_metrics(&self) -> String {
        let streams: Vec<(String, Arc<StreamMetrics>)> = self
            .metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        crate::metrics::render(&streams)
    }
}
