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
//!
//! Stagger windows, and the window pumps they feed, are not rebuilt by a replay: their state is
//! written as a window snapshot before the positions ([`crate::snapshot_store`]), and the
//! positions never pass the snapshot's cut. A restart restores it, and the records it reads
//! again below the cut go through [`Pipeline::ingest_replayed`], which those pumps ignore.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sluice_core::hash_key::partition_key_hash;
use sluice_core::internal_stream::FIREHOSE_PARTITION_KEY;
use sluice_core::storage::{
    AppendError, CheckpointKey, CheckpointLog, NewRecord, ReadLimits, ReadStart, RecordLog,
    ShardAddress,
};

use crate::api::AnalyticsService;
use crate::api::catalog::{
    Application, InputConfig, LambdaProcessor, OutputConfig, ReferenceConfig, Status,
};
use crate::input::RejectedRecord;
use crate::lambda::{DeliveryRecord, Processed, SourceMetadata, SourceRecord};
use crate::metrics::Metric;
use crate::output::{OutputFormat, serialize};
use crate::peers::{Functions, InvokeError, Resource, resource_of};
use crate::pipeline::{Emissions, Pipeline};
use crate::program::parse_program;
use crate::reference::{ParsedTable, parse_table};
use crate::snapshot::ShardCut;
use crate::snapshot_store::SnapshotStore;

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
/// PutRecordBatch's limits, which rows put into a delivery stream keep to.
const DELIVERY_BATCH_RECORDS_MAX: usize = 500;
const DELIVERY_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
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

/// The service core an application runs on, of `cores` that run applications: a stable hash of
/// its name, so that every supervisor agrees without talking to the others, and an application
/// comes back to the same core after a restart.
pub fn placement(application: &str, cores: usize) -> usize {
    (crc32c::crc32c(application.as_bytes()) as usize) % cores.max(1)
}

thread_local! {
    /// The service core this thread is (set by [`supervise`]), for the per-core gauge.
    static SERVICE_CORE: Cell<usize> = const { Cell::new(0) };
}

/// Runs the supervisor of service core `core` (of `cores` that run applications) forever on
/// the current (tokio current-thread) service core: it runs the applications placed on it
/// ([`placement`]) and finishes their stops. Service core 0 also serves the API's work that
/// needs a service core (DiscoverInputSchema from S3).
pub async fn supervise<R: RecordLog + CheckpointLog>(
    service: AnalyticsService<R>,
    storage: R,
    core: usize,
    cores: usize,
) {
    SERVICE_CORE.with(|c| c.set(core));
    crate::metrics::service_cores_are(cores);
    if core == 0 {
        service.attach_storage(storage.clone());
        let _ = service
            .shared
            .service_core
            .set(tokio::runtime::Handle::current());
    }
    let mut tasks: HashMap<String, Rc<Cell<bool>>> = HashMap::new();
    loop {
        tasks.retain(|_, done| !done.get());
        let wanted: Vec<(String, Status)> = service
            .catalog()
            .applications
            .iter()
            .filter(|a| placement(&a.name, cores) == core)
            .map(|a| (a.name.clone(), a.status))
            .collect();
        for (name, status) in wanted {
            match status {
                Status::Starting | Status::Running | Status::Updating
                    if !tasks.contains_key(&name) =>
                {
                    let done = Rc::new(Cell::new(false));
                    tasks.insert(name.clone(), done.clone());
                    let (service, storage) = (service.clone(), storage.clone());
                    // An application found RUNNING or UPDATING (the server restarted under it)
                    // continues from its checkpoint; a STARTING one from the position
                    // StartApplication gave.
                    let resume = status != Status::Starting;
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
    /// The restored window snapshot's cut on this shard: the records below it are in the
    /// snapshot already, and go through [`Pipeline::ingest_replayed`].
    replay_below: Option<u64>,
}

impl ShardCursor {
    /// The position after the last of this shard's records the pipeline's snapshotted pumps
    /// hold: the restored cut until the shard has been read past it.
    fn cut(&self) -> Option<ShardCut> {
        let position = self.next_position.max(self.replay_below)?;
        Some(ShardCut {
            shard_index: self.address.shard_index,
            position,
        })
    }
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
        if !matches!(
            app.status,
            Status::Starting | Status::Running | Status::Updating
        ) {
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

/// What one running version works with.
struct Context<'a, R> {
    service: &'a AnalyticsService<R>,
    storage: &'a R,
    app: &'a Application,
    functions: Option<Arc<dyn Functions>>,
    /// The application's own series on `/metrics`.
    series: Arc<crate::metrics::ApplicationSeries>,
}

impl<R: RecordLog + CheckpointLog> Context<'_, R> {
    fn next(&self) -> Next {
        next(self.service, &self.app.name, self.app.version_id)
    }

    fn running(&self) -> bool {
        matches!(self.next(), Next::Continue)
    }

    /// Writes an error KDA would send to the application's CloudWatch log streams. There is no
    /// CloudWatch here: each message goes through `tracing`, once per configured log stream with
    /// its ARN (or once without one when the application has none).
    fn log_error(&self, message: &str) {
        log_error(self.app, message);
    }

    async fn invoke(&self, function_arn: &str, event: String) -> Result<Vec<u8>, InvokeError> {
        match &self.functions {
            Some(functions) => functions.invoke(function_arn, event).await,
            None => Err(InvokeError {
                code: "Lambda.InvokeAccessDenied",
                message: "This server has no Lambda functions attached.".to_owned(),
            }),
        }
    }
}

/// See [`Context::log_error`].
fn log_error(app: &Application, message: &str) {
    let application = app.name.as_str();
    if app.cloudwatch_logging_options.is_empty() {
        tracing::warn!(application, message, "Application error.");
    }
    for option in &app.cloudwatch_logging_options {
        tracing::warn!(
            target: "sluice_analytics::cloudwatch",
            application,
            log_stream_arn = option.log_stream_arn,
            message,
            "Application error (CloudWatch log stream)."
        );
    }
}

/// The stream an input reads: a Kinesis stream, or the stream holding a delivery stream's
/// records; `Err` with a message while it does not exist.
fn input_stream<R: RecordLog + CheckpointLog>(
    ctx: &Context<'_, R>,
    input: &InputConfig,
) -> Result<(String, Vec<sluice_core::storage::ShardPlacement>), String> {
    let stream = match resource_of(&input.resource_arn) {
        Some(Resource::KinesisStream(name)) => name.to_owned(),
        Some(Resource::DeliveryStream(name)) => match ctx.service.delivery_stream(name) {
            Some(target) if target.active => target.source_stream,
            Some(_) => return Err(format!("Delivery stream {name} is not ACTIVE yet.")),
            None => {
                return Err(format!(
                    "Delivery stream {} does not exist.",
                    input.resource_arn
                ));
            }
        },
        None => return Err(format!("{} is not a stream ARN.", input.resource_arn)),
    };
    match ctx.storage.shards(&stream) {
        Ok(placements) => Ok((stream, placements)),
        Err(error) => Err(format!(
            "The input {} cannot be read: {error}",
            input.resource_arn
        )),
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
    let ctx = Context {
        service,
        storage,
        app,
        functions: service.shared.functions.get().cloned(),
        series: crate::metrics::application(&app.name),
    };
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
            ctx.log_error(&format!("The application cannot run: {error}"));
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
                ctx.log_error(&format!(
                    "The reference data of table {} cannot be loaded: {error}",
                    reference.table_name
                ));
                set_status(service, name, None, Status::Ready);
                return Next::Stop;
            }
        }
    }
    let Some(input) = app.inputs.first() else {
        set_status(service, name, None, Status::Ready);
        return Next::Stop;
    };
    let consumer = consumer_name(name, &input.id);
    // Wait for the input stream to exist (it may be created after the application starts).
    let mut waiting_logged = false;
    let (stream, placements) = loop {
        match input_stream(&ctx, input) {
            Ok(found) => break found,
            Err(message) => {
                if !waiting_logged {
                    ctx.log_error(&message);
                    waiting_logged = true;
                }
                match ctx.next() {
                    Next::Continue => tokio::time::sleep(Duration::from_secs(1)).await,
                    other => return other,
                }
            }
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
            replay_below: None,
        });
    }
    if position == "LAST_STOPPED_POINT"
        && let Some(first) = cursors.first()
    {
        crate::watermark::restore(storage, &consumer, &first.address, &mut pipeline).await;
        crate::watermark::restore_replay_floors(storage, &consumer, &first.address, &mut pipeline)
            .await;
    }
    // Records after the restored snapshot's cut get at least its ROWTIME (see `snapshot.rs`).
    let mut rowtime_floor = i64::MIN;
    // A catalog kept in memory (no data directory) keeps no snapshots either.
    let snapshot_dir = service.catalog().snapshot_dir();
    let mut snapshots = match (cursors.first(), snapshot_dir) {
        (Some(first), Some(dir)) if pipeline.has_snapshotted_pumps() => {
            let marker = CheckpointKey {
                consumer: format!("{consumer}/snapshot"),
                shard: first.address.clone(),
            };
            let mut store = SnapshotStore::new(dir, name, &input.id, app.create_ms, marker);
            let restore = position == "LAST_STOPPED_POINT";
            match store.open(storage, &mut pipeline, restore).await {
                Ok(Some(restored)) => {
                    for cursor in &mut cursors {
                        cursor.replay_below = restored
                            .cut
                            .iter()
                            .find(|c| c.shard_index == cursor.address.shard_index)
                            .map(|c| c.position);
                        if let (ReadStart::AtPosition(start), Some(cut)) =
                            (cursor.start, cursor.replay_below)
                            && start > cut
                        {
                            // The positions are committed only at or below a durable
                            // snapshot's cut; this one is not the snapshot they belong to.
                            tracing::error!(
                                application = name,
                                shard = cursor.address.shard_index,
                                start,
                                cut,
                                "The input position is past the window snapshot's cut; rows between them are missing from the stagger windows."
                            );
                        }
                    }
                    rowtime_floor = restored.last_rowtime_ms;
                    for error in &restored.not_restored {
                        ctx.log_error(&format!(
                            "A window could not be restored from the snapshot and starts empty: {error}"
                        ));
                    }
                    tracing::info!(
                        application = name,
                        generation = restored.generation,
                        "Windows restored from their snapshot."
                    );
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(application = name, %error, "The window snapshot cannot be restored; the stagger windows open at the checkpoint are lost.");
                    ctx.log_error(&format!(
                        "The window snapshot cannot be restored; the windows open at the checkpoint are lost: {error}"
                    ));
                }
            }
            Some(store)
        }
        _ => None,
    };
    // Counted before the status says so, so that a RUNNING application is always counted.
    Metric::ApplicationsRunning.add(1);
    let _running = RunningGuard::new();
    // A new version of a running application (UPDATING) runs once it has been built and its
    // checkpoint restored, as a started one does.
    set_status(service, name, Some(Status::Starting), Status::Running);
    set_status(service, name, Some(Status::Updating), Status::Running);
    tracing::info!(
        application = name,
        stream,
        shards = cursors.len(),
        position,
        "Application running."
    );
    let outputs: Vec<OutputTarget> = app.outputs.iter().filter_map(OutputTarget::of).collect();
    let from_delivery_stream = matches!(
        resource_of(&input.resource_arn),
        Some(Resource::DeliveryStream(_))
    );
    let mut counters = Counters::default();
    let mut last_rowtime = i64::MIN;
    let single = cursors.len() == 1;
    loop {
        match ctx.next() {
            Next::Continue => {}
            other => {
                let last = Rowtimes {
                    last_ms: last_rowtime,
                    floor_ms: rowtime_floor,
                };
                commit(
                    storage,
                    &consumer,
                    &cursors,
                    &pipeline,
                    snapshots.as_mut(),
                    last,
                    true,
                )
                .await;
                return other;
            }
        }
        let mut emissions = Emissions::default();
        let mut any = false;
        let mut behind_ms = 0;
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
            let mut owned: Vec<(Vec<u8>, i64, u64)> = Vec::new();
            let mut sources: Vec<(u64, SourceMetadata)> = Vec::new();
            let shard_id = shard_id(cursor.address.shard_index);
            let replay_below = cursor.replay_below;
            batch.for_each_positioned(&mut |position, view| {
                if replay_below.is_none_or(|below| position >= below) {
                    last_rowtime = last_rowtime.max(rowtime_floor);
                }
                last_rowtime = last_rowtime.max(view.approximate_arrival_timestamp_ms as i64);
                owned.push((view.data.to_vec(), last_rowtime, position));
                if input.processing.is_some() {
                    let metadata = if from_delivery_stream {
                        SourceMetadata::DeliveryStream
                    } else {
                        SourceMetadata::KinesisStream {
                            sequence_number: view.sequence_number.to_string(),
                            partition_key: view.partition_key.to_owned(),
                            shard_id: shard_id.clone(),
                        }
                    };
                    sources.push((view.approximate_arrival_timestamp_ms, metadata));
                }
            });
            let read = owned.len();
            let bytes = batch.data_bytes() as u64;
            Metric::RecordsReadTotal.add(read as u64);
            Metric::RecordBytesReadTotal.add(bytes);
            ctx.series.read(read as u64, bytes);
            behind_ms = behind_ms.max(batch.millis_behind_latest);
            if let Some(processor) = &input.processing
                && !owned.is_empty()
            {
                let Some((kept, rejected)) =
                    preprocess(&ctx, input, processor, owned, &sources).await
                else {
                    // Stopped while the function failed. The records of this round are not in
                    // the pipeline and nothing of it is committed: the last checkpoint is the
                    // end of the previous round, whose rows were all written.
                    return ctx.next();
                };
                owned = kept;
                if !rejected.is_empty() {
                    any = true;
                    pipeline.reject_records(rejected, now_ms(), &mut emissions);
                }
            }
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
            let records: Vec<(&[u8], i64)> =
                owned.iter().map(|(d, t, _)| (d.as_slice(), *t)).collect();
            // Positions grow within a batch: the records the restored snapshot holds come first.
            let replayed = cursor
                .replay_below
                .map_or(0, |below| owned.partition_point(|(_, _, p)| *p < below));
            cursor.caught_up = batch.millis_behind_latest == 0 && read < READ_RECORDS_MAX;
            if let Some(next) = batch.next_position {
                cursor.next_position = Some(next);
            }
            // Records that were all dropped by a pre-processing function still move the
            // checkpoint.
            if read > 0 {
                any = true;
            }
            if !records.is_empty() {
                any = true;
                let (again, new) = records.split_at(replayed);
                if !again.is_empty() {
                    pipeline.ingest_replayed(cursor.input_index, again, now_ms(), &mut emissions);
                }
                if !new.is_empty() {
                    pipeline.ingest(cursor.input_index, new, now_ms(), &mut emissions);
                }
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
        ctx.series.errors(error_rows as u64);
        ctx.series.behind(behind_ms);
        if !write_outputs(&ctx, &pipeline, &outputs, &emissions, &mut counters).await {
            // Stopped before every destination took this batch's rows: no checkpoint past
            // them, so the next start (LAST_STOPPED_POINT) reads the batch again and its rows
            // are delivered at least once (those already written, twice).
            return ctx.next();
        }
        if any || !emissions.batches.is_empty() {
            let last = Rowtimes {
                last_ms: last_rowtime,
                floor_ms: rowtime_floor,
            };
            commit(
                storage,
                &consumer,
                &cursors,
                &pipeline,
                snapshots.as_mut(),
                last,
                false,
            )
            .await;
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
struct RunningGuard {
    core: usize,
}

impl RunningGuard {
    fn new() -> Self {
        let core = SERVICE_CORE.with(Cell::get);
        crate::metrics::running_on_core(core, 1);
        RunningGuard { core }
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        Metric::ApplicationsRunning.sub(1);
        crate::metrics::running_on_core(self.core, -1);
    }
}

/// The runner's ROWTIME: the last one given, and the restored snapshot's (see `snapshot.rs`).
#[derive(Clone, Copy, Debug)]
struct Rowtimes {
    last_ms: i64,
    floor_ms: i64,
}

/// Commits each shard's checkpoint (see the module doc for which position), after the window
/// snapshot (`force`: regardless of its throttle, as the application stops).
async fn commit<R: RecordLog + CheckpointLog>(
    storage: &R,
    consumer: &str,
    cursors: &[ShardCursor],
    pipeline: &Pipeline,
    snapshots: Option<&mut SnapshotStore>,
    rowtimes: Rowtimes,
    force: bool,
) {
    // Event-time watermarks go first (see `watermark.rs` for why).
    if let Some(first) = cursors.first() {
        crate::watermark::commit(storage, consumer, &first.address, pipeline).await;
        crate::watermark::commit_replay_floors(storage, consumer, &first.address, pipeline).await;
    }
    // Then the snapshot, whose cut bounds the positions (see `snapshot_store.rs`).
    let durable_cut: Option<Vec<ShardCut>> = match snapshots {
        Some(store) => {
            let cut = cursors.iter().filter_map(ShardCursor::cut).collect();
            let last_rowtime_ms = rowtimes.last_ms.max(rowtimes.floor_ms);
            let durable = store
                .commit(storage, pipeline, cut, last_rowtime_ms, now_ms(), force)
                .await;
            Some(durable.to_vec())
        }
        None => None,
    };
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
        let position = match &durable_cut {
            None => position,
            Some(cut) => match cut
                .iter()
                .find(|c| c.shard_index == cursor.address.shard_index)
            {
                Some(c) => position.min(c.position),
                // The snapshot a restart would restore holds none of this shard's records.
                None => continue,
            },
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

/// `shardId-000000000007` for shard index 7.
fn shard_id(shard_index: u32) -> String {
    format!("shardId-{shard_index:012}")
}

/// Where an output's rows go.
enum Destination {
    KinesisStream(String),
    /// A Firehose delivery stream by name, resolved at every write (it may be recreated).
    DeliveryStream(String),
    Lambda(String),
}

/// An output of the running version.
struct OutputTarget {
    in_app: String,
    destination: Destination,
    format: OutputFormat,
}

impl OutputTarget {
    fn of(output: &OutputConfig) -> Option<Self> {
        let format = if output.record_format_type == "CSV" {
            OutputFormat::Csv
        } else {
            OutputFormat::Json
        };
        let destination = match output.destination_kind.as_str() {
            "Lambda" => Destination::Lambda(output.resource_arn.clone()),
            _ => match resource_of(&output.resource_arn)? {
                Resource::KinesisStream(name) => Destination::KinesisStream(name.to_owned()),
                Resource::DeliveryStream(name) => Destination::DeliveryStream(name.to_owned()),
            },
        };
        Some(OutputTarget {
            in_app: output.name.clone(),
            destination,
            format,
        })
    }
}

/// Numbers the running version hands out.
#[derive(Default)]
struct Counters {
    /// Partition keys of rows written to Kinesis streams.
    partition_key: u64,
    /// Record ids of rows sent to output functions.
    record_id: u64,
}

/// Pre-processes `records` (data, row time, position) with the input's function: the records
/// to parse (their data replaced by the function's), and the failed ones for `error_stream`.
/// `None` when the application stopped while the function could not be invoked.
async fn preprocess<R: RecordLog + CheckpointLog>(
    ctx: &Context<'_, R>,
    input: &InputConfig,
    processor: &LambdaProcessor,
    records: Vec<(Vec<u8>, i64, u64)>,
    sources: &[(u64, SourceMetadata)],
) -> Option<(Vec<(Vec<u8>, i64, u64)>, Vec<RejectedRecord>)> {
    assert_eq!(records.len(), sources.len());
    let mut kept = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let len = crate::lambda::invocation_len(records[start..].iter().map(|r| r.0.len()));
        let chunk = &records[start..start + len];
        let event_records: Vec<SourceRecord<'_>> = chunk
            .iter()
            .zip(&sources[start..start + len])
            .map(|((data, _, _), (arrival_ms, metadata))| SourceRecord {
                data,
                arrival_ms: *arrival_ms,
                metadata: metadata.clone(),
            })
            .collect();
        let event = crate::lambda::preprocess_event(
            &uuid::Uuid::new_v4().to_string(),
            &ctx.app.arn,
            &input.resource_arn,
            &event_records,
        );
        let mut attempts: u32 = 0;
        let answer = loop {
            attempts += 1;
            match ctx.invoke(&processor.resource_arn, event.clone()).await {
                Ok(answer) => break answer,
                Err(error) => {
                    // A function that cannot be invoked holds the input back (nothing is
                    // skipped), as an output that cannot be written does.
                    ctx.log_error(&format!(
                        "Invoking the pre-processing function {} failed (attempt {attempts}): {error}",
                        processor.resource_arn
                    ));
                    if !ctx.running() {
                        return None;
                    }
                    tokio::time::sleep(retry_delay(attempts)).await;
                }
            }
        };
        for ((data, rowtime, position), outcome) in
            chunk.iter().zip(crate::lambda::processed(&answer, len))
        {
            match outcome {
                Processed::Ok(new) => kept.push((new, *rowtime, *position)),
                Processed::Dropped => {}
                Processed::Failed {
                    error_name,
                    message,
                } => rejected.push(RejectedRecord {
                    error_name,
                    message,
                    data: data.clone(),
                    rowtime: *rowtime,
                }),
            }
        }
        start += len;
    }
    if !rejected.is_empty() {
        ctx.log_error(&format!(
            "The pre-processing function {} failed {} records; they are in error_stream.",
            processor.resource_arn,
            rejected.len()
        ));
    }
    Some((kept, rejected))
}

/// The wait before retry `attempts` + 1 of a function or destination: 200 ms growing to 5 s.
fn retry_delay(attempts: u32) -> Duration {
    Duration::from_millis(200 * u64::from(attempts.clamp(1, 25)))
}

/// Ends of consecutive runs of `records` holding at most `count_max` records and `bytes_max`
/// bytes each (and at least one record).
fn chunk_ends(records: &[Vec<u8>], count_max: usize, bytes_max: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let (mut count, mut bytes) = (0, 0);
    for (i, record) in records.iter().enumerate() {
        if count > 0 && (count == count_max || bytes + record.len() > bytes_max) {
            ends.push(i);
            count = 0;
            bytes = 0;
        }
        count += 1;
        bytes += record.len();
    }
    if count > 0 {
        ends.push(records.len());
    }
    ends
}

/// Writes the rows of output-mapped streams to their destinations. Retries until each
/// destination takes them (KDA's backpressure) or the application is stopped; `false` then.
async fn write_outputs<R: RecordLog + CheckpointLog>(
    ctx: &Context<'_, R>,
    pipeline: &Pipeline,
    outputs: &[OutputTarget],
    emissions: &Emissions,
    counters: &mut Counters,
) -> bool {
    for (stream, batch) in &emissions.batches {
        for output in outputs {
            if output.in_app != *stream {
                continue;
            }
            let Some(shape) = pipeline.shape(stream) else {
                continue;
            };
            let records = serialize(batch, shape, output.format);
            Metric::RowsWrittenTotal.add(records.len() as u64);
            ctx.series.wrote(records.len() as u64);
            let written = match &output.destination {
                Destination::KinesisStream(destination) => {
                    append_to_stream(ctx, destination, &records, &mut counters.partition_key).await
                }
                Destination::DeliveryStream(name) => {
                    append_to_delivery_stream(ctx, name, &records).await
                }
                Destination::Lambda(function_arn) => {
                    deliver_to_function(ctx, function_arn, records, &mut counters.record_id).await
                }
            };
            if !written {
                return false;
            }
        }
    }
    true
}

/// Appends `records` to the Kinesis stream `destination`, each routed by a fresh partition key.
async fn append_to_stream<R: RecordLog + CheckpointLog>(
    ctx: &Context<'_, R>,
    destination: &str,
    records: &[Vec<u8>],
    key_counter: &mut u64,
) -> bool {
    let name = ctx.app.name.as_str();
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
            match ctx.storage.shards(destination) {
                Ok(placements) => {
                    let mut by_shard: Vec<(u32, Vec<NewRecord>)> = Vec::new();
                    let mut unroutable = Vec::new();
                    for record in pending.drain(..) {
                        let hash = partition_key_hash(&record.partition_key);
                        match placements.iter().find(|p| {
                            p.open && p.hash_range.starting <= hash && hash <= p.hash_range.ending
                        }) {
                            Some(shard) => {
                                match by_shard.iter_mut().find(|(i, _)| *i == shard.shard_index) {
                                    Some((_, records)) => records.push(record),
                                    None => by_shard.push((shard.shard_index, vec![record])),
                                }
                            }
                            None => unroutable.push(record),
                        }
                    }
                    pending = unroutable;
                    for (shard, records) in by_shard {
                        let address = ShardAddress::new(destination.to_owned(), shard);
                        if let Err(error) = ctx.storage.append(&address, records.clone()).await {
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
            if !ctx.running() {
                return false;
            }
            tokio::time::sleep(IDLE_WAIT).await;
        }
    }
    true
}

/// Puts `records` into the DirectPut delivery stream `name`: appended to its internal stream in
/// PutRecordBatch-sized calls, exactly as its PutRecordBatch stores them, so it delivers them
/// like any record put into it.
async fn append_to_delivery_stream<R: RecordLog + CheckpointLog>(
    ctx: &Context<'_, R>,
    name: &str,
    records: &[Vec<u8>],
) -> bool {
    let mut start = 0;
    for end in chunk_ends(
        records,
        DELIVERY_BATCH_RECORDS_MAX,
        DELIVERY_BATCH_BYTES_MAX,
    ) {
        let chunk = &records[start..end];
        start = end;
        let bytes: usize = chunk.iter().map(Vec::len).sum();
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let failure = match ctx.service.delivery_stream(name) {
                Some(target) if target.direct_put && target.active => {
                    let address = ShardAddress::new(target.source_stream.clone(), 0);
                    let new: Vec<NewRecord> = chunk
                        .iter()
                        .map(|data| NewRecord {
                            partition_key: FIREHOSE_PARTITION_KEY.to_owned(),
                            data: data.clone(),
                        })
                        .collect();
                    match ctx.storage.append(&address, new).await {
                        Ok(_) => {
                            if let Some(streams) = ctx.service.shared.delivery_streams.get() {
                                streams.record_incoming(name, chunk.len(), bytes);
                            }
                            break;
                        }
                        Err(AppendError::Throttled { .. }) => None,
                        Err(error) => {
                            Some(format!("Writing to delivery stream {name} failed: {error}"))
                        }
                    }
                }
                Some(target) if !target.direct_put => Some(format!(
                    "Delivery stream {name} is not a DirectPut delivery stream; rows cannot be put into it."
                )),
                Some(_) => Some(format!("Delivery stream {name} is not ACTIVE.")),
                None => Some(format!("Delivery stream {name} does not exist.")),
            };
            if let Some(message) = failure
                && attempts == 1
            {
                ctx.log_error(&message);
            }
            if !ctx.running() {
                return false;
            }
            tokio::time::sleep(retry_delay(attempts)).await;
        }
    }
    true
}

/// Sends `records` to the output function until it answers Ok for each (see [`crate::lambda`]).
async fn deliver_to_function<R: RecordLog + CheckpointLog>(
    ctx: &Context<'_, R>,
    function_arn: &str,
    records: Vec<Vec<u8>>,
    record_counter: &mut u64,
) -> bool {
    let mut pending: VecDeque<DeliveryRecord> = records
        .into_iter()
        .map(|data| {
            *record_counter += 1;
            DeliveryRecord {
                record_id: record_counter.to_string(),
                retry_hint: 0,
                data,
            }
        })
        .collect();
    let mut failures: u32 = 0;
    while !pending.is_empty() {
        let len = crate::lambda::invocation_len(pending.iter().map(|r| r.data.len()));
        let batch: Vec<DeliveryRecord> = pending.drain(..len).collect();
        let event =
            crate::lambda::output_event(&uuid::Uuid::new_v4().to_string(), &ctx.app.arn, &batch);
        let outcome = match ctx.invoke(function_arn, event).await {
            Ok(answer) => crate::lambda::delivered_ids(&answer),
            Err(error) => Err(format!("Invoking the output function failed: {error}")),
        };
        let failed: Vec<DeliveryRecord> = match outcome {
            Ok(delivered) => batch
                .into_iter()
                .filter(|r| !delivered.contains(&r.record_id))
                .collect(),
            Err(message) => {
                ctx.log_error(&format!("{function_arn}: {message}"));
                batch
            }
        };
        if failed.is_empty() {
            failures = 0;
            continue;
        }
        failures += 1;
        ctx.log_error(&format!(
            "{} records were not delivered to {function_arn}; retrying.",
            failed.len()
        ));
        // Failed records go first again, in their order, with the hint one higher.
        for mut record in failed.into_iter().rev() {
            record.retry_hint += 1;
            pending.push_front(record);
        }
        if !ctx.running() {
            return false;
        }
        tokio::time::sleep(retry_delay(failures)).await;
    }
    true
}
