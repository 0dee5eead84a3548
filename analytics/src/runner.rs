//! Running applications on a service core.
//!
//! A supervisor loop watches the catalog: each STARTING or RUNNING application gets a task that
//! reads its input stream's shards through [`RecordLog::read`], runs the records through its
//! [`Pipeline`], appends the rows of every output-mapped in-application stream to the output
//! Kinesis stream with [`RecordLog::append`], and only then commits its input position through
//! [`CheckpointLog`]. STOPPING applications are stopped and set READY.
//!
//! ROWTIME is the record's arrival time in the input stream (made non-decreasing across shards),
//! not the wall-clock time the row was read: a replay from a checkpoint therefore rebuilds the
//! same windows. A window closes when a later row arrives or, once every shard has been read to
//! its tip, when the wall clock is [`CLOSE_GRACE_MS`] past its end.
//!
//! Checkpoints: with no window open, the position after the last record read; with windows open,
//! the position of the first record of the oldest open window, so a restart from
//! LAST_STOPPED_POINT (or after kill -9) rebuilds the open windows without counting a record of a
//! closed window twice. Rows of stateless pumps between those positions may be written again
//! after a crash (at-least-once). Event-time windows also commit their watermarks
//! ([`crate::watermark`]).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use sluice_core::hash_key::partition_key_hash;
use sluice_core::storage::{
    AppendError, CheckpointKey, CheckpointLog, NewRecord, ReadLimits, ReadStart, RecordLog,
    ShardAddress,
};

use crate::api::AnalyticsService;
use crate::api::catalog::{Application, ReferenceConfig, Status};
use crate::metrics::Metric;
use crate::output::{OutputFormat, serialize};
use crate::pipeline::{Emissions, Pipeline};
use crate::program::parse_program;
use crate::reference::{ParsedTable, parse_table};

/// How long past a window's end the wall clock must be before an idle window is closed.
pub const CLOSE_GRACE_MS: i64 = 1_000;
/// How often the supervisor looks at the catalog.
const SUPERVISE_EVERY: Duration = Duration::from_millis(100);
/// How long a read waits for new records (single-shard inputs) or the loop sleeps when idle.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Records per read and per append.
const READ_RECORDS_MAX: usize = 1_000;
const READ_BYTES_MAX: usize = 4 << 20;
const APPEND_RECORDS_MAX: usize = 500;
/// Position marks kept per shard for window checkpoints (one per second of row time).
const MARKS_MAX: usize = 100_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The checkpoint consumer name of an application's input.
pub fn consumer_name(application: &str, input_id: &str) -> String {
    format!("kinesisanalytics/{application}/{input_id}")
}

/// Runs the supervisor forever on the current (tokio current-thread) service core.
pub async fn supervise<R: RecordLog + CheckpointLog>(service: AnalyticsService<R>, storage: R) {
    service.attach_storage(storage.clone());
    let _ = service
        .shared
        .service_core
        .set(tokio::runtime::Handle::current());
    let mut tasks: HashMap<String, Rc<Cell<bool>>> = HashMap::new();
    loop {
        tasks.retain(|_, done| !done.get());
        let wanted: Vec<(String, Status)> = service
            .catalog()
            .applications
            .iter()
            .map(|a| (a.name.clone(), a.status))
            .collect();
        for (name, status) in wanted {
            match status {
                Status::Starting | Status::Running if !tasks.contains_key(&name) => {
                    let done = Rc::new(Cell::new(false));
                    tasks.insert(name.clone(), done.clone());
                    let (service, storage) = (service.clone(), storage.clone());
                    // An application found RUNNING (the server restarted under it) continues
                    // from its checkpoint; a STARTING one from the position StartApplication gave.
                    let resume = status == Status::Running;
                    tokio::task::spawn_local(async move {
                        run_application(&service, &storage, &name, resume).await;
                        done.set(true);
                    });
                }
                Status::Stopping if !tasks.contains_key(&name) => {
                    set_status(&service, &name, None, Status::Ready);
                }
                _ => {}
            }
        }
        tokio::time::sleep(SUPERVISE_EVERY).await;
    }
}

fn set_status<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    name: &str,
    from: Option<Status>,
    to: Status,
) {
    let mut catalog = service.catalog();
    if let Some(app) = catalog.get_mut(name)
        && from.is_none_or(|f| app.status == f)
        && app.status != to
    {
        app.status = to;
        if let Err(error) = catalog.save() {
            tracing::error!(application = name, %error, "The analytics catalog could not be written.");
        }
    }
}

/// What the application should do next, from its catalog entry.
enum Next {
    Continue,
    Reload,
    Stop,
}

fn next<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    name: &str,
    version: u64,
) -> Next {
    match service.catalog().get(name) {
        None => Next::Stop,
        Some(app)
            if matches!(
                app.status,
                Status::Stopping | Status::Deleting | Status::Ready
            ) =>
        {
            Next::Stop
        }
        Some(app) if app.version_id != version => Next::Reload,
        Some(_) => Next::Continue,
    }
}

struct ShardCursor {
    address: ShardAddress,
    start: ReadStart,
    /// The position after the last record handed to the pipeline.
    next_position: Option<u64>,
    /// (row time, position) of the first record of each second of row time.
    marks: VecDeque<(i64, u64)>,
    caught_up: bool,
    /// The in-application input stream (`_001` … `_00N`) the shard's records enter.
    input_index: usize,
}

async fn run_application<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    storage: &R,
    name: &str,
    resume: bool,
) {
    let mut resume = resume;
    loop {
        let Some(app) = service.catalog().get(name).cloned() else {
            return;
        };
        if !matches!(app.status, Status::Starting | Status::Running) {
            set_status(service, name, Some(Status::Stopping), Status::Ready);
            return;
        }
        match run_version(service, storage, &app, resume).await {
            Next::Reload => {
                resume = true;
                continue;
            }
            Next::Stop | Next::Continue => {
                set_status(service, name, Some(Status::Stopping), Status::Ready);
                return;
            }
        }
    }
}

/// Runs one version of the application until it is stopped, deleted or reconfigured.
async fn run_version<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    storage: &R,
    app: &Application,
    resume: bool,
) -> Next {
    let name = app.name.as_str();
    let compiled = (|| {
        let program =
            parse_program(app.code.as_deref().unwrap_or("")).map_err(|e| e.to_string())?;
        let inputs = crate::api::ops::pipeline_inputs(app)?;
        let tables = crate::api::ops::pipeline_tables(app)?;
        Pipeline::compile_with_tables(&program, &inputs, &tables).map_err(|e| e.to_string())
    })();
    let mut pipeline = match compiled {
        Ok(p) => p,
        Err(error) => {
            tracing::error!(application = name, %error, "The application cannot run; it is stopped.");
            set_status(service, name, None, Status::Ready);
            return Next::Stop;
        }
    };
    // Reference data is loaded (again) every time a version starts: at StartApplication, and
    // after an UpdateApplication or AddApplicationReferenceDataSource of a running application.
    for reference in &app.references {
        match load_reference(service, reference).await {
            Ok(parsed) => {
                tracing::info!(
                    application = name,
                    table = reference.table_name,
                    rows = parsed.table.rows(),
                    rejected = parsed.rejected.len(),
                    "Reference table loaded."
                );
                pipeline.install_table(&reference.table_name, parsed, now_ms());
            }
            Err(error) => {
                tracing::error!(application = name, table = reference.table_name, %error, "The reference data cannot be loaded; the application is stopped.");
                set_status(service, name, None, Status::Ready);
                return Next::Stop;
            }
        }
    }
    let Some(input) = app.inputs.first() else {
        set_status(service, name, None, Status::Ready);
        return Next::Stop;
    };
    let stream = crate::api::ops::stream_name_of(&input.resource_arn)
        .unwrap_or_default()
        .to_owned();
    let consumer = consumer_name(name, &input.id);
    // Wait for the input stream to exist (it may be created after the application starts).
    let placements = loop {
        match storage.shards(&stream) {
            Ok(p) => break p,
            Err(_) => match next(service, name, app.version_id) {
                Next::Continue => tokio::time::sleep(Duration::from_secs(1)).await,
                other => return other,
            },
        }
    };
    let position = if resume {
        "LAST_STOPPED_POINT"
    } else {
        input.starting_position.as_deref().unwrap_or("NOW")
    };
    let mut cursors = Vec::with_capacity(placements.len());
    for placement in &placements {
        let address = ShardAddress::new(stream.clone(), placement.shard_index);
        let start = match position {
            "TRIM_HORIZON" => ReadStart::TrimHorizon,
            "LAST_STOPPED_POINT" => {
                let key = CheckpointKey {
                    consumer: consumer.clone(),
                    shard: address.clone(),
                };
                match storage.load_checkpoint(&key).await {
                    Ok(Some(p)) => ReadStart::AtPosition(p),
                    Ok(None) => ReadStart::TrimHorizon,
                    Err(error) => {
                        tracing::warn!(application = name, %error, "Loading a checkpoint failed; starting at the tip.");
                        ReadStart::Latest
                    }
                }
            }
            _ => ReadStart::Latest,
        };
        // Shards are dealt over the InputParallelism in-application streams.
        let input_index = cursors.len() % input.parallelism.max(1) as usize;
        cursors.push(ShardCursor {
            address,
            start,
            next_position: None,
            marks: VecDeque::new(),
            caught_up: false,
            input_index,
        });
    }
    if position == "LAST_STOPPED_POINT"
        && let Some(first) = cursors.first()
    {
        crate::watermark::restore(storage, &consumer, &first.address, &mut pipeline).await;
        crate::watermark::restore_replay_floors(storage, &consumer, &first.address, &mut pipeline)
            .await;
    }
    set_status(service, name, Some(Status::Starting), Status::Running);
    Metric::ApplicationsRunning.add(1);
    let _running = RunningGuard;
    tracing::info!(
        application = name,
        stream,
        shards = cursors.len(),
        position,
        "Application running."
    );
    let outputs: Vec<(String, String, OutputFormat)> = app
        .outputs
        .iter()
        .filter_map(|o| {
            let format = if o.record_format_type == "CSV" {
                OutputFormat::Csv
            } else {
                OutputFormat::Json
            };
            Some((
                o.name.clone(),
                crate::api::ops::stream_name_of(&o.resource_arn)?.to_owned(),
                format,
            ))
        })
        .collect();
    let mut last_rowtime = i64::MIN;
    let mut key_counter: u64 = 0;
    let single = cursors.len() == 1;
    loop {
        match next(service, name, app.version_id) {
            Next::Continue => {}
            other => {
                commit(storage, &consumer, &cursors, &pipeline).await;
                return other;
            }
        }
        let mut emissions = Emissions::default();
        let mut any = false;
        for cursor in &mut cursors {
            let start = cursor
                .next_position
                .map_or(cursor.start, ReadStart::AtPosition);
            let limits = ReadLimits {
                records_max: READ_RECORDS_MAX,
                bytes_max: READ_BYTES_MAX,
            };
            let wait = single.then_some(IDLE_WAIT);
            let batch = match storage.read(&cursor.address, start, limits, wait).await {
                Ok(b) => b,
                Err(error) => {
                    tracing::warn!(application = name, %error, "Reading the input failed; retrying.");
                    tokio::time::sleep(IDLE_WAIT).await;
                    continue;
                }
            };
            let mut records: Vec<(&[u8], i64)> = Vec::new();
            let mut owned: Vec<(Vec<u8>, i64, u64)> = Vec::new();
            batch.for_each_positioned(&mut |position, view| {
                last_rowtime = last_rowtime.max(view.approximate_arrival_timestamp_ms as i64);
                owned.push((view.data.to_vec(), last_rowtime, position));
            });
            for (_, rowtime, position) in &owned {
                if cursor
                    .marks
                    .back()
                    .is_none_or(|(t, _)| t.div_euclid(1000) != rowtime.div_euclid(1000))
                {
                    if cursor.marks.len() >= MARKS_MAX {
                        cursor.marks.pop_front();
                    }
                    cursor.marks.push_back((*rowtime, *position));
                }
            }
            records.extend(owned.iter().map(|(d, t, _)| (d.as_slice(), *t)));
            Metric::RecordsReadTotal.add(owned.len() as u64);
            Metric::RecordBytesReadTotal.add(batch.data_bytes() as u64);
            cursor.caught_up = batch.millis_behind_latest == 0 && owned.len() < READ_RECORDS_MAX;
            if let Some(next) = batch.next_position {
                cursor.next_position = Some(next);
            }
            if !records.is_empty() {
                any = true;
                pipeline.ingest(cursor.input_index, &records, now_ms(), &mut emissions);
            }
        }
        if cursors.iter().all(|c| c.caught_up) {
            pipeline.advance(now_ms() - CLOSE_GRACE_MS, &mut emissions);
        }
        let error_rows: usize = emissions
            .batches
            .iter()
            .filter(|(stream, _)| stream == crate::pipeline::ERROR_STREAM)
            .map(|(_, b)| b.num_rows())
            .sum();
        Metric::ErrorRowsTotal.add(error_rows as u64);
        if !write_outputs(
            service,
            storage,
            name,
            app.version_id,
            &pipeline,
            &outputs,
            &emissions,
            &mut key_counter,
        )
        .await
        {
            commit(storage, &consumer, &cursors, &pipeline).await;
            return next(service, name, app.version_id);
        }
        if any || !emissions.batches.is_empty() {
            commit(storage, &consumer, &cursors, &pipeline).await;
        }
        if !any && !single {
            tokio::time::sleep(IDLE_WAIT).await;
        }
    }
}

/// Reads a reference object from S3 and parses it (on tokio's blocking pool: a large object
/// would hold the service core for seconds).
async fn load_reference<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    reference: &ReferenceConfig,
) -> Result<ParsedTable, String> {
    let schema = reference.schema.to_domain()?;
    let s3 = service
        .shared
        .s3
        .get_or_init(crate::s3::S3Objects::from_env)
        .await;
    let object = s3
        .get(
            reference.bucket(),
            &reference.file_key,
            service.reference_bytes_max(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let table = reference.table_name.clone();
    let loaded_ms = now_ms();
    tokio::task::spawn_blocking(move || parse_table(&table, &schema, &object, loaded_ms))
        .await
        .map_err(|e| format!("parsing the reference data failed: {e}"))?
        .map_err(|e| e.to_string())
}

/// Counts a running application down when its task leaves `run_version`, however it leaves.
struct RunningGuard;

impl Drop for RunningGuard {
    fn drop(&mut self) {
        Metric::ApplicationsRunning.sub(1);
    }
}

/// Commits each shard's checkpoint (see the module doc for which position).
async fn commit<R: RecordLog + CheckpointLog>(
    storage: &R,
    consumer: &str,
    cursors: &[ShardCursor],
    pipeline: &Pipeline,
) {
    // Event-time watermarks go first (see `watermark.rs` for why).
    if let Some(first) = cursors.first() {
        crate::watermark::commit(storage, consumer, &first.address, pipeline).await;
        crate::watermark::commit_replay_floors(storage, consumer, &first.address, pipeline).await;
    }
    let oldest = pipeline.oldest_open_ms();
    for cursor in cursors {
        let Some(next) = cursor.next_position else {
            continue;
        };
        let position = match oldest {
            Some(oldest) => cursor
                .marks
                .iter()
                .find(|(t, _)| *t >= oldest)
                .map_or(next, |(_, p)| *p),
            None => next,
        };
        let key = CheckpointKey {
            consumer: consumer.to_owned(),
            shard: cursor.address.clone(),
        };
        if let Err(error) = storage.commit_checkpoint(&key, position).await {
            tracing::warn!(consumer, %error, "Committing an application checkpoint failed.");
        }
    }
}

/// Appends the rows of output-mapped streams to their destination streams. Retries until the
/// destination takes them (KDA's backpressure) or the application is stopped; `false` then.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the pieces are unrelated"
)]
async fn write_outputs<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    storage: &R,
    name: &str,
    version: u64,
    pipeline: &Pipeline,
    outputs: &[(String, String, OutputFormat)],
    emissions: &Emissions,
    key_counter: &mut u64,
) -> bool {
    for (stream, batch) in &emissions.batches {
        for (in_app, destination, format) in outputs {
            if in_app != stream {
                continue;
            }
            let Some(shape) = pipeline.shape(stream) else {
                continue;
            };
            let records = serialize(batch, shape, *format);
            Metric::RowsWrittenTotal.add(records.len() as u64);
            for chunk in records.chunks(APPEND_RECORDS_MAX) {
                // Records not yet stored; a retry re-routes only these, so nothing is written twice.
                let mut pending: Vec<NewRecord> = chunk
                    .iter()
                    .map(|data| {
                        *key_counter += 1;
                        NewRecord {
                            partition_key: format!("{name}-{key_counter}"),
                            data: data.clone(),
                        }
                    })
                    .collect();
                while !pending.is_empty() {
                    match storage.shards(destination) {
                        Ok(placements) => {
                            let mut by_shard: Vec<(u32, Vec<NewRecord>)> = Vec::new();
                            let mut unroutable = Vec::new();
                            for record in pending.drain(..) {
                                let hash = partition_key_hash(&record.partition_key);
                                match placements.iter().find(|p| {
                                    p.open
                                        && p.hash_range.starting <= hash
                                        && hash <= p.hash_range.ending
                                }) {
                                    Some(shard) => match by_shard
                                        .iter_mut()
                                        .find(|(i, _)| *i == shard.shard_index)
                                    {
                                        Some((_, records)) => records.push(record),
                                        None => by_shard.push((shard.shard_index, vec![record])),
                                    },
                                    None => unroutable.push(record),
                                }
                            }
                            pending = unroutable;
                            for (shard, records) in by_shard {
                                let address = ShardAddress::new(destination.clone(), shard);
                                if let Err(error) = storage.append(&address, records.clone()).await
                                {
                                    if !matches!(error, AppendError::Throttled { .. }) {
                                        tracing::warn!(application = name, destination, %error, "Writing output failed; retrying.");
                                    }
                                    pending.extend(records);
                                }
                            }
                            if pending.is_empty() {
                                break;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(application = name, destination, %error, "The output stream is not available; retrying.");
                        }
                    }
                    if !matches!(next(service, name, version), Next::Continue) {
                        return false;
                    }
                    tokio::time::sleep(IDLE_WAIT).await;
                }
            }
        }
    }
    true
}
