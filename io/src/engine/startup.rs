//! Starting the engine: the data directory, the catalog and persistence thread, one executor per
//! shard core (each recovering its logs before any front end serves), then the service cores.

use super::*;
use crate::log::{CheckMode, LogCheck, OpenLogError};

/// Where shard core `core_id`'s executor runs. Pinned, on CPU `core_id`. Unpinned, anywhere
/// the process may run; but glommio silently drops `spin_before_park` for an executor without
/// a CPU binding, so an unpinned core that is asked to spin is fenced to the process's own
/// affinity mask: the same CPUs it could run on anyway, and a binding that lets it spin.
/// (Before this, `--idle-spin-us` did nothing under `--pin-cores false`, the way every
/// benchmark here runs the server under `taskset`.)
pub(crate) fn shard_core_placement(
    core_id: usize,
    pin_cores: bool,
    idle_spin_us: u64,
) -> Placement {
    if pin_cores {
        return Placement::Fixed(core_id);
    }
    if idle_spin_us == 0 {
        return Placement::Unbound;
    }
    let allowed: std::collections::HashSet<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    match glommio::CpuSet::online() {
        Ok(online) => {
            let fenced = online.filter(|cpu| allowed.contains(&cpu.cpu));
            if fenced.is_empty() {
                tracing::warn!(
                    "Could not read this process's CPU affinity; --idle-spin-us is ignored on unpinned cores."
                );
                Placement::Unbound
            } else {
                Placement::Fenced(fenced)
            }
        }
        Err(error) => {
            tracing::warn!(%error, "Could not list the online CPUs; --idle-spin-us is ignored on unpinned cores.");
            Placement::Unbound
        }
    }
}

pub(crate) fn log_dir(data_dir: &Path, log_id: u32) -> PathBuf {
    data_dir.join("log").join(log_id.to_string())
}

/// Log ids that already exist on disk.
pub(crate) fn existing_log_ids(data_dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut ids = Vec::new();
    let dir = data_dir.join("log");
    if !dir.exists() {
        return Ok(ids);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// One log of a data directory and what [`check_data_dir`] found in it.
#[derive(Debug)]
pub struct LogOfDataDir {
    pub log_id: u32,
    pub dir: PathBuf,
    pub check: Result<LogCheck, OpenLogError>,
}

/// Checks every log of `data_dir` offline, one after another on an executor of its own
/// (`sluice verify`). Must not run while a server uses the directory.
pub fn check_data_dir(data_dir: &Path, mode: CheckMode) -> Result<Vec<LogOfDataDir>, StartError> {
    let log_ids = existing_log_ids(data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.join("log"),
        source,
    })?;
    let data_dir = data_dir.to_owned();
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("sluice-verify")
        .io_memory(8 << 20)
        .make()
        .map_err(|e| StartError::Executor {
            core: 0,
            message: e.to_string(),
        })?;
    Ok(executor.run(async move {
        let mut logs = Vec::with_capacity(log_ids.len());
        for log_id in log_ids {
            let dir = log_dir(&data_dir, log_id);
            let check = crate::log::check(LogConfig::new(dir.clone(), log_id), mode).await;
            logs.push(LogOfDataDir { log_id, dir, check });
        }
        logs
    }))
}

/// Starts the engine: opens the catalog, spawns one executor per core, recovers that core's
/// logs, then runs `per_core(engine)` on every core (the front ends). Blocks until every
/// executor exits, which in practice is never; returns an error if startup fails anywhere.
/// Service cores, if configured, run nothing; see [`run_with_services`].
pub fn run<F, Fut>(config: EngineConfig, per_core: F) -> Result<(), StartError>
where
    F: Fn(Engine) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let idle: ServiceStarter = Arc::new(|_| Box::pin(std::future::pending::<()>()));
    run_with_services(config, per_core, idle)
}

/// [`run`], and once every shard core has recovered, `config.service_cores` service cores each
/// running `services(context)`.
pub fn run_with_services<F, Fut>(
    config: EngineConfig,
    per_core: F,
    services: ServiceStarter,
) -> Result<(), StartError>
where
    F: Fn(Engine) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    if config.cores == 0 {
        return Err(StartError::NoCores);
    }
    for dir in [
        config.data_dir.clone(),
        config.data_dir.join("log"),
        config.data_dir.join("catalog"),
    ] {
        crate::log::create_dir_durably(&dir).map_err(|source| StartError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let probe = config.data_dir.join(".write-probe");
    std::fs::write(&probe, b"probe")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;

    let (store, catalog) =
        CatalogStore::open(&config.data_dir.join("catalog"), config.catalog.clone())?;
    let persister = Persister::start(
        store,
        &config.data_dir.join("checkpoints"),
        config.durability,
    )
    .map_err(|e| StartError::Persist {
        message: error_chain(&e),
    })?;
    let existing = existing_log_ids(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;

    let mut receivers = Vec::with_capacity(config.cores);
    let mut inboxes = Vec::with_capacity(config.cores);
    for _ in 0..config.cores {
        let (tx, rx) = async_channel::bounded(sluice_core::limits::CORE_INBOX_MESSAGES_MAX);
        inboxes.push(tx);
        receivers.push(rx);
    }
    let shared = Arc::new(Shared {
        cores: config.cores,
        catalog_config: config.catalog.clone(),
        catalog: RwLock::new(catalog),
        catalog_change: futures_util::lock::Mutex::new(()),
        persister,
        service_cores: (0..config.service_cores)
            .map(|id| {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                let cpu = crate::service::service_cpu(config.cores, id, cpus, config.pin_cores);
                Arc::new(ServiceCoreStatus::new(id, config.service_runtime, cpu))
            })
            .collect(),
        inboxes,
        log_health: Mutex::new(Vec::new()),
    });
    // Data keys for streams under StartStreamEncryption (the stand-in for KMS).
    let keys = crate::keystore::KeyStore::open(config.data_dir.join("keys")).map_err(|source| {
        StartError::DataDir {
            path: config.data_dir.join("keys"),
            source,
        }
    })?;
    let per_core = Arc::new(per_core);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), StartError>>();

    let mut handles = Vec::with_capacity(config.cores);
    for (core_id, inbox) in receivers.into_iter().enumerate() {
        let placement = shard_core_placement(core_id, config.pin_cores, config.idle_spin_us);
        let shared = shared.clone();
        let keys = keys.clone();
        let per_core = per_core.clone();
        let config = config.clone();
        let ready_tx = ready_tx.clone();
        let mut log_ids: Vec<u32> = existing
            .iter()
            .copied()
            .filter(|id| *id as usize % config.cores == core_id)
            .collect();
        let own = u32::try_from(core_id).expect("core count fits u32");
        if !log_ids.contains(&own) {
            log_ids.push(own);
        }
        let mut builder = LocalExecutorBuilder::new(placement)
            .name(&format!("sluice-core-{core_id}"))
            .io_memory(config.io_memory_bytes);
        if config.idle_spin_us > 0 {
            builder = builder.spin_before_park(Duration::from_micros(config.idle_spin_us));
        }
        let handle = builder
            .spawn(move || async move {
                let mut logs = HashMap::new();
                for log_id in log_ids {
                    let log_config = LogConfig {
                        segment_bytes: config.segment_bytes,
                        commit_bytes_max: config.commit_bytes_max,
                        commits_in_flight: config.commits_in_flight,
                        durability: config.durability,
                        #[cfg(any(test, feature = "fault-injection"))]
                        faults: config.faults.clone(),
                        ..LogConfig::new(log_dir(&config.data_dir, log_id), log_id)
                    };
                    match Log::open(log_config).await {
                        Ok(log) => {
                            shared
                                .log_health
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(CoreLogHealth {
                                    core_id,
                                    health: log.health(),
                                });
                            let catalog_of = shared.clone();
                            log.set_encryption(
                                keys.clone(),
                                Rc::new(move |key: &ShardKey| {
                                    let catalog = catalog_of
                                        .catalog
                                        .read()
                                        .unwrap_or_else(|e| e.into_inner());
                                    let stream = catalog.streams.get(&*key.stream_name)?;
                                    (stream.created_ms == key.stream_created_ms)
                                        .then(|| stream.control.encryption_key_id.clone())
                                        .flatten()
                                }),
                            );
                            logs.insert(log_id, log);
                        }
                        Err(e) => {
                            let message = error_chain(&e);
                            let error = if matches!(e, OpenLogError::Corrupt { .. }) {
                                StartError::LogCorrupt { log_id, message }
                            } else {
                                StartError::Recovery { log_id, message }
                            };
                            let _ = ready_tx.send(Err(error));
                            return;
                        }
                    }
                }
                let local = Rc::new(CoreState::new(core_id, logs, config.throughput_limits));
                let engine = Engine { shared, local };
                let _ = ready_tx.send(Ok(()));
                drop(ready_tx);
                glommio::spawn_local(serve_inbox(engine.clone(), inbox)).detach();
                glommio::spawn_local(housekeeping_loop(engine.clone())).detach();
                if core_id == 0 {
                    glommio::spawn_local(reshard_loop(engine.clone())).detach();
                }
                per_core(engine).await;
            })
            .map_err(|e| StartError::Executor {
                core: core_id,
                message: e.to_string(),
            })?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..config.cores {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StartError::Executor {
                    core: 0,
                    message: "executor exited during startup".into(),
                });
            }
        }
    }
    // Service threads run until the process exits, like the shard cores; nothing joins them.
    let mut service_threads = Vec::with_capacity(shared.service_cores.len());
    for status in &shared.service_cores {
        let thread = crate::service::spawn(
            status.clone(),
            crate::storage::StorageHandle::new(shared.clone()),
            services.clone(),
            config.io_memory_bytes,
        )
        .map_err(|e| StartError::Executor {
            core: config.cores + status.service_core_id,
            message: e.to_string(),
        })?;
        service_threads.push(thread);
    }
    for (core, handle) in handles.into_iter().enumerate() {
        handle.join().map_err(|e| StartError::Executor {
            core,
            message: e.to_string(),
        })?;
    }
    Ok(())
}
