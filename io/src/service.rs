//! Service cores: executors that own no shards and run services (Firehose delivery, SQL
//! applications, video, enhanced fan-out pumps) against the narrow storage face.
//!
//! A service core is one OS thread running either a glommio executor or a current-thread tokio
//! runtime, so that a service can use the tokio ecosystem (aws-sdk-s3, tokio-postgres, hyper's
//! client). It is pinned to a CPU of its own when the machine has one beyond the shard cores'
//! (`shard cores + i`), and shares the CPUs with the shard cores otherwise (unpinned), which is
//! the case on a 2-core machine.
//!
//! Invariants:
//! - A service core never owns a log: everything it does with records goes through a
//!   [`StorageHandle`], i.e. through messages to the shard cores.
//! - Service cores start after every shard core finished recovery, so a service's first read
//!   already sees every acknowledged record.
//! - Each service core's state (`ServiceCoreStatus`) is visible on `/health` and `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::storage::StorageHandle;

/// Which runtime a service core runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceRuntime {
    Glommio,
    Tokio,
}

impl ServiceRuntime {
    pub fn name(self) -> &'static str {
        match self {
            Self::Glommio => "glommio",
            Self::Tokio => "tokio",
        }
    }
}

/// What a service core's task gets: its index, its runtime and the storage face.
#[derive(Clone, Debug)]
pub struct ServiceContext {
    pub service_core_id: usize,
    pub runtime: ServiceRuntime,
    pub storage: StorageHandle,
}

/// The services a service core runs, as one future on that core (it is `!Send`: it stays on
/// its thread).
pub type ServiceFuture = Pin<Box<dyn Future<Output = ()>>>;

/// Builds the future each service core runs. Called once per service core, on that core.
pub type ServiceStarter = Arc<dyn Fn(ServiceContext) -> ServiceFuture + Send + Sync>;

const STATE_STARTING: u8 = 0;
const STATE_RUNNING: u8 = 1;
const STATE_STOPPED: u8 = 2;
const STATE_FAILED: u8 = 3;

/// What `/health` and `/metrics` show of one service core.
#[derive(Debug)]
pub struct ServiceCoreStatus {
    pub service_core_id: usize,
    pub runtime: ServiceRuntime,
    /// The CPU it is pinned to, or `None` when it shares the CPUs.
    pub cpu: Option<usize>,
    state: AtomicU8,
}

impl ServiceCoreStatus {
    pub(crate) fn new(service_core_id: usize, runtime: ServiceRuntime, cpu: Option<usize>) -> Self {
        Self {
            service_core_id,
            runtime,
            cpu,
            state: AtomicU8::new(STATE_STARTING),
        }
    }

    /// `starting`, `running`, `stopped` (its services finished) or `failed` (its runtime could
    /// not start).
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            STATE_STARTING => "starting",
            STATE_RUNNING => "running",
            STATE_STOPPED => "stopped",
            _ => "failed",
        }
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Relaxed);
    }
}

/// The CPU service core `service_core_id` is pinned to: the first CPUs after the shard cores'
/// when the machine has them, none (shared) otherwise or when pinning is off.
pub(crate) fn service_cpu(
    shard_cores: usize,
    service_core_id: usize,
    cpus: usize,
    pin: bool,
) -> Option<usize> {
    let cpu = shard_cores + service_core_id;
    (pin && cpu < cpus).then_some(cpu)
}

/// Starts one service core thread running `starter(context)` to completion.
pub(crate) fn spawn(
    status: Arc<ServiceCoreStatus>,
    storage: StorageHandle,
    starter: ServiceStarter,
    io_memory_bytes: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let context = ServiceContext {
        service_core_id: status.service_core_id,
        runtime: status.runtime,
        storage,
    };
    let name = format!("sluice-service-{}", status.service_core_id);
    match status.runtime {
        ServiceRuntime::Glommio => {
            let placement = match status.cpu {
                Some(cpu) => glommio::Placement::Fixed(cpu),
                None => glommio::Placement::Unbound,
            };
            let builder = glommio::LocalExecutorBuilder::new(placement)
                .name(&name)
                .io_memory(io_memory_bytes);
            let running = status.clone();
            builder
                .spawn(move || async move {
                    running.set(STATE_RUNNING);
                    starter(context).await;
                    running.set(STATE_STOPPED);
                })
                .map(|handle| {
                    std::thread::spawn(move || {
                        if handle.join().is_err() {
                            status.set(STATE_FAILED);
                        }
                    })
                })
                .map_err(|e| std::io::Error::other(e.to_string()))
        }
        ServiceRuntime::Tokio => std::thread::Builder::new().name(name).spawn(move || {
            if let Some(cpu) = status.cpu {
                core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(service_core_id = status.service_core_id, %error, "A tokio service core could not start.");
                    status.set(STATE_FAILED);
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            status.set(STATE_RUNNING);
            local.block_on(&runtime, starter(context));
            status.set(STATE_STOPPED);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_cores_get_spare_cpus_and_share_when_there_are_none() {
        assert_eq!(service_cpu(2, 0, 4, true), Some(2));
        assert_eq!(service_cpu(2, 1, 4, true), Some(3));
        assert_eq!(service_cpu(2, 0, 2, true), None);
        assert_eq!(service_cpu(1, 1, 2, true), None);
        assert_eq!(service_cpu(1, 0, 2, false), None);
    }
}
