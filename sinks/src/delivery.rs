//! Delivery: on a service core (a current-thread tokio runtime), one task per delivery stream
//! and one per source shard reads the source through the storage face, buffers by the
//! destination's hints, compresses, writes the object to S3, and only then commits the shard's
//! durable checkpoint. At-least-once: a crash after an object was written and before its
//! checkpoint was committed delivers the same records again in a new object; a record is never
//! skipped, because the checkpoint only ever names the position after records S3 confirmed.
//!
//! The supervisor ([`run`]) follows the registry: it starts a task for every delivery stream,
//! stops the task of a deleted (or deleted and re-created) one, and a stream's task marks it
//! ACTIVE once its source is readable. S3 failures are retried with exponential backoff (1 s
//! doubling to 60 s) for as long as the delivery stream exists; nothing is dropped. Each failed
//! attempt (a source read, a Lambda invocation, an object, a request, a COPY) becomes its stage's
//! latest error for DescribeDeliveryStream (`failure`), and the stage's next success clears it.
//!
//! A shard with no checkpoint is read from the TRIM_HORIZON of a DirectPut delivery stream's
//! internal stream, and from [`Definition::delivery_start_ms`] (AT_TIMESTAMP) of a Kinesis
//! source.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::storage::{
    CheckpointKey, CheckpointLog, ReadLimits, ReadStart, RecordLog, ShardAddress,
};
use tokio::task::JoinSet;

use crate::buffer::{Buffer, Hints};
use crate::compression;
use crate::failure::Stage;
use crate::http_delivery::{self, HttpSender};
use crate::metrics::{Destination, StreamMetrics};
use crate::model::{self, Definition, StreamType};
use crate::partition::{Keys, Query};
use crate::prefix;
use crate::registry::Registry;
use crate::s3::{S3Endpoint, S3Sink};
use crate::transform::{self, Invoker, Outcome};

/// How long one read waits for records when the buffer has no deadline sooner; also how
/// quickly a task notices that its delivery stream was deleted or reconfigured.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// Records per read.
const READ_RECORDS_MAX: usize = 10_000;
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often the supervisor looks at the registry without being notified.
const SUPERVISE_EVERY: Duration = Duration::from_secs(5);

/// A record the Lambda processor returned Ok: its new data, arrival time, `metadata.partitionKeys`
/// and its index among the buffer's records (for its stable id).
type TransformedRecord = (Vec<u8>, u64, Keys, usize);

/// The destinations' clients of a service core.
#[derive(Clone, Debug)]
struct Sinks {
    /// The S3 client of this delivery stream: the environment's, or its own from the config file.
    s3: S3Sink,
    /// The clients of the delivery streams the config file gives their own S3 settings.
    s3_by_stream: Arc<HashMap<String, S3Sink>>,
    http: Option<HttpSender>,
    invoker: Invoker,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs delivery for every delivery stream of `registry`, forever. Must run inside a tokio
/// `LocalSet` (a tokio service core). A delivery stream named in `s3_endpoints` delivers to S3
/// with those settings in place of the environment's.
pub async fn run<S: RecordLog + CheckpointLog>(
    registry: Arc<Registry>,
    storage: S,
    s3_endpoints: BTreeMap<String, S3Endpoint>,
) {
    let mut s3_by_stream = HashMap::new();
    for (name, settings) in &s3_endpoints {
        s3_by_stream.insert(name.clone(), S3Sink::with_overrides(settings).await);
    }
    let sinks = Sinks {
        s3: S3Sink::from_env().await,
        s3_by_stream: Arc::new(s3_by_stream),
        http: match HttpSender::new() {
            Ok(http) => Some(http),
            Err(error) => {
                tracing::error!(%error, "The HTTP endpoint client could not start; HTTP endpoint delivery streams will not deliver.");
                None
            }
        },
        invoker: Invoker::from_env(),
    };
    let mut running: HashMap<String, (u64, tokio::task::AbortHandle)> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        let notified = registry.changed.notified();
        let snapshot = registry.snapshot();
        running.retain(|name, (create_ms, handle)| {
            let alive = snapshot
                .iter()
                .any(|s| s.definition.name == *name && s.definition.create_ms == *create_ms);
            if !alive {
                handle.abort();
            }
            alive
        });
        for stream in snapshot {
            let definition = stream.definition;
            if running.contains_key(&definition.name) {
                continue;
            }
            let handle = tasks.spawn_local(deliver_stream(
                registry.clone(),
                storage.clone(),
                sinks.clone(),
                definition.clone(),
            ));
            running.insert(definition.name, (definition.create_ms, handle));
        }
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(SUPERVISE_EVERY) => {}
        }
    }
}

/// Whether `name` is still the incarnation created at `create_ms`; its definition if so.
fn current(registry: &Registry, name: &str, create_ms: u64) -> Option<Definition> {
    registry
        .get(name)
        .map(|s| s.definition)
        .filter(|d| d.create_ms == create_ms)
}

async fn deliver_stream<S: RecordLog + CheckpointLog>(
    registry: Arc<Registry>,
    storage: S,
    sinks: Sinks,
    definition: Definition,
) {
    let name = definition.name.clone();
    let mut sinks = sinks;
    if let Some(own) = sinks.s3_by_stream.get(&name) {
        sinks.s3 = own.clone();
    }
    let source = definition.source_stream.clone();
    // The source is readable once its stream is ACTIVE (a new internal stream is CREATING for
    // a moment); a zero-wait read of shard 0 says so.
    let shards = loop {
        if current(&registry, &name, definition.create_ms).is_none() {
            return;
        }
        if let Ok(shards) = storage.shards(&source)
            && !shards.is_empty()
        {
            let probe = storage
                .read(
                    &ShardAddress::new(source.clone(), shards[0].shard_index),
                    ReadStart::TrimHorizon,
                    ReadLimits {
                        records_max: 1,
                        bytes_max: 1,
                    },
                    None,
                )
                .await;
            if probe.is_ok() {
                break shards;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    registry.activate(&name, definition.create_ms);
    tracing::info!(delivery_stream = %name, shards = shards.len(), "Firehose delivery started.");
    let metrics = registry.metrics(&name);
    let mut shard_tasks = JoinSet::new();
    let mut started = std::collections::BTreeSet::new();
    let mut shards = shards;
    loop {
        // Every shard gets its own reader and checkpoint; shards that a reshard of a Kinesis
        // source adds later are picked up here (their parents end by themselves once read).
        for placement in &shards {
            if !started.insert(placement.shard_index) {
                continue;
            }
            let key = CheckpointKey {
                consumer: model::checkpoint_consumer(&name),
                shard: ShardAddress::new(source.clone(), placement.shard_index),
            };
            shard_tasks.spawn_local(deliver_shard(
                registry.clone(),
                storage.clone(),
                sinks.clone(),
                definition.clone(),
                key,
                metrics.clone(),
            ));
        }
        while shard_tasks.try_join_next().is_some() {}
        tokio::time::sleep(SUPERVISE_EVERY).await;
        if current(&registry, &name, definition.create_ms).is_none() {
            return;
        }
        if let Ok(now) = storage.shards(&source) {
            shards = now;
        }
    }
}

async fn deliver_shard<S: RecordLog + CheckpointLog>(
    registry: Arc<Registry>,
    storage: S,
    sinks: Sinks,
    definition: Definition,
    key: CheckpointKey,
    metrics: Arc<StreamMetrics>,
) {
    let name = definition.name.clone();
    let create_ms = definition.create_ms;
    let kinesis_source = definition.stream_type == StreamType::KinesisStreamAsSource;
    let mut start = loop {
        match storage.load_checkpoint(&key).await {
            Ok(Some(position)) => break ReadStart::AtPosition(position),
            Ok(None) => {
                break match definition.delivery_start_ms() {
                    Some(timestamp_ms) => ReadStart::AtTimestamp { timestamp_ms },
                    None => ReadStart::TrimHorizon,
                };
            }
            Err(error) => {
                tracing::warn!(delivery_stream = %name, %error, "Loading the delivery checkpoint failed; retrying.");
                tokio::time::sleep(RETRY_FIRST).await;
            }
        }
    };
    let mut buffer = Buffer::default();
    loop {
        let Some(definition) = current(&registry, &name, create_ms) else {
            return;
        };
        let hints = match (&definition.http_endpoint, &definition.opensearch) {
            (Some(endpoint), _) => Hints {
                size_mib: endpoint.buffer_size_mib,
                interval_s: endpoint.buffer_interval_s,
            },
            (None, Some(os)) => Hints {
                size_mib: os.buffer_size_mib,
                interval_s: os.buffer_interval_s,
            },
            (None, None) => Hints {
                size_mib: definition.destination.buffer_size_mib,
                interval_s: definition.destination.buffer_interval_s,
            },
        };
        let now = now_ms();
        if buffer.is_due(hints, now) {
            if !deliver(
                &registry,
                &storage,
                &sinks,
                &key,
                &mut buffer,
                &definition,
                &metrics,
            )
            .await
            {
                return;
            }
            continue;
        }
        let wait = buffer
            .time_left(hints, now)
            .map_or(IDLE_WAIT, |left| left.min(IDLE_WAIT));
        let limits = ReadLimits {
            records_max: READ_RECORDS_MAX,
            bytes_max: buffer.room(hints).max(1),
        };
        match storage.read(&key.shard, start, limits, Some(wait)).await {
            Ok(batch) => {
                metrics.errors.succeeded(Stage::Source);
                batch.for_each_positioned(&mut |position, view| {
                    if kinesis_source {
                        crate::kpl::for_each_user_record(view.data, &mut |data| {
                            buffer.push_part(view.approximate_arrival_timestamp_ms, data);
                        });
                        buffer.end_record(position);
                    } else {
                        buffer.push(view.approximate_arrival_timestamp_ms, view.data, position);
                    }
                });
                match batch.next_position {
                    Some(next) => start = ReadStart::AtPosition(next),
                    None => {
                        // A closed shard read to its end (the source was resharded).
                        if !buffer.is_empty() {
                            deliver(
                                &registry,
                                &storage,
                                &sinks,
                                &key,
                                &mut buffer,
                                &definition,
                                &metrics,
                            )
                            .await;
                        }
                        return;
                    }
                }
            }
            Err(error) => {
                // Firehose's error code for a source it cannot read is not documented [verify].
                metrics.errors.failed(
                    Stage::Source,
                    "Kinesis.GetRecordsFailed",
                    error.to_string(),
                    now_ms(),
                );
                tracing::warn!(delivery_stream = %name, %error, "Reading the delivery source failed; retrying.");
                tokio::time::sleep(RETRY_FIRST).await;
            }
        }
    }
}

/// Delivers the buffer to the delivery stream's destination, retrying until it is stored (S3)
/// or delivered or backed up (HTTP endpoint), then commits the checkpoint past it. `false` when
/// the delivery stream went away meanwhile (its buffer is dropped with it).
async fn deliver<S: CheckpointLog>(
    registry: &Registry,
    storage: &S,
    sinks: &Sinks,
    key: &CheckpointKey,
    buffer: &mut Buffer,
    definition: &Definition,
    metrics: &StreamMetrics,
) -> bool {
    let (Some(oldest_ms), Some(next_position)) =
        (buffer.oldest_arrival_ms(), buffer.next_position())
    else {
        return true;
    };
    // The Lambda processor, if any, runs first; its ProcessingFailed records become error
    // records, Dropped ones are gone, Ok ones are delivered in place of the originals.
    let original: Vec<(&[u8], u64)> = buffer.each_record().collect();
    let processor = match (
        &definition.http_endpoint,
        &definition.redshift,
        &definition.opensearch,
    ) {
        (Some(endpoint), _, _) => endpoint.transform.clone(),
        (None, Some(redshift), _) => redshift.transform.clone(),
        (None, None, Some(os)) => os.transform.clone(),
        (None, None, None) => definition.destination.transform.clone(),
    };
    // A stable id per record (delivery stream incarnation, source shard, position, sub-index):
    // the same on every retry and redelivery.
    let ids: Vec<String> = buffer
        .sources()
        .iter()
        .map(|(position, sub)| {
            format!(
                "{}-{}-{position}-{sub}",
                definition.create_ms, key.shard.shard_index
            )
        })
        .collect();
    let mut transformed: Option<Vec<TransformedRecord>> = None;
    if let Some(processor) = &processor {
        let region = definition.arn.split(':').nth(3).unwrap_or("");
        let outcomes = sinks
            .invoker
            .transform(processor, &definition.arn, region, &original)
            .await;
        // Records the function itself marked ProcessingFailed are its verdict on them, not a
        // failure of the stage; every other failure (invocation, response contract) is.
        let invocation_error = outcomes.iter().find_map(|outcome| match outcome {
            Outcome::Failed {
                error_code,
                error_message,
                ..
            } if error_code != transform::PROCESSING_FAILED => {
                Some((error_code.clone(), error_message.clone()))
            }
            _ => None,
        });
        match invocation_error {
            Some((error_code, error_message)) => {
                metrics
                    .errors
                    .failed(Stage::Lambda, error_code, error_message, now_ms());
            }
            None => metrics.errors.succeeded(Stage::Lambda),
        }
        let mut ok = Vec::with_capacity(original.len());
        let mut failed_lines = Vec::new();
        for (index, ((data, arrival_ms), outcome)) in original.iter().zip(outcomes).enumerate() {
            match outcome {
                Outcome::Ok(data, keys) => ok.push((data, *arrival_ms, keys, index)),
                Outcome::Dropped => {}
                Outcome::Failed {
                    error_code,
                    error_message,
                    attempts,
                } => failed_lines.extend(transform::error_record(
                    processor,
                    data,
                    *arrival_ms,
                    &error_code,
                    &error_message,
                    attempts,
                )),
            }
        }
        if !failed_lines.is_empty()
            && !write_object(
                registry,
                sinks,
                definition,
                &failed_lines,
                oldest_ms,
                Target::Errors("processing-failed"),
                metrics,
            )
            .await
        {
            return false;
        }
        transformed = Some(ok);
    }
    let records: Vec<(&[u8], u64)> = match &transformed {
        Some(ok) => ok.iter().map(|(d, a, _, _)| (d.as_slice(), *a)).collect(),
        None => original.clone(),
    };
    let no_keys = Keys::new();
    let lambda_keys: Vec<&Keys> = match &transformed {
        Some(ok) => ok.iter().map(|(_, _, k, _)| k).collect(),
        None => vec![&no_keys; original.len()],
    };
    let record_ids: Vec<&str> = match &transformed {
        Some(ok) => ok.iter().map(|(_, _, _, i)| ids[*i].as_str()).collect(),
        None => ids.iter().map(String::as_str).collect(),
    };
    let joined;
    let data: &[u8] = match &transformed {
        Some(ok) => {
            joined = ok
                .iter()
                .flat_map(|(d, _, _, _)| d.iter().copied())
                .collect::<Vec<u8>>();
            &joined
        }
        None => buffer.data(),
    };
    let delivered = if records.is_empty() {
        true
    } else {
        match (
            &definition.http_endpoint,
            &definition.destination.partitioning,
        ) {
            _ if definition.opensearch.is_some() => {
                deliver_opensearch(
                    registry,
                    sinks,
                    definition,
                    &records,
                    &record_ids,
                    data,
                    oldest_ms,
                    metrics,
                )
                .await
            }
            _ if definition.redshift.is_some() => {
                deliver_redshift(
                    registry,
                    sinks,
                    definition,
                    data,
                    records.len(),
                    oldest_ms,
                    metrics,
                )
                .await
            }
            (None, Some(partitioning)) => {
                deliver_partitioned(
                    registry,
                    sinks,
                    definition,
                    partitioning,
                    &records,
                    &lambda_keys,
                    metrics,
                )
                .await
            }
            (None, None) if definition.destination.conversion.is_some() => {
                deliver_converted(registry, sinks, definition, &records, oldest_ms, metrics).await
            }
            (None, None) => {
                let written = write_object(
                    registry,
                    sinks,
                    definition,
                    data,
                    oldest_ms,
                    Target::Data,
                    metrics,
                )
                .await;
                if written {
                    metrics.delivered(
                        Destination::S3,
                        records.len(),
                        data.len(),
                        now_ms().saturating_sub(oldest_ms),
                    );
                }
                written
            }
            (Some(_), _) => {
                deliver_http(
                    registry, sinks, definition, &records, data, oldest_ms, metrics,
                )
                .await
            }
        }
    };
    if !delivered {
        return false;
    }
    let mut backoff = RETRY_FIRST;
    while let Err(error) = storage.commit_checkpoint(key, next_position).await {
        tracing::warn!(delivery_stream = %definition.name, %error, "Committing the delivery checkpoint failed; retrying.");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
    buffer.clear();
    true
}

/// Sends the buffer's records to the HTTP endpoint in requests of at most 10,000 records;
/// records of requests that finally failed go to the S3 backup as error records, and with
/// `S3BackupMode` AllData every record is backed up as well.
async fn deliver_http(
    registry: &Registry,
    sinks: &Sinks,
    definition: &Definition,
    records: &[(&[u8], u64)],
    all_data: &[u8],
    oldest_ms: u64,
    metrics: &StreamMetrics,
) -> bool {
    let Some(endpoint) = &definition.http_endpoint else {
        return true;
    };
    let mut failed_lines = Vec::new();
    let alive = || current(registry, &definition.name, definition.create_ms).is_some();
    for (chunk_index, chunk) in records
        .chunks(http_delivery::REQUEST_RECORDS_MAX)
        .enumerate()
    {
        let data: Vec<&[u8]> = chunk.iter().map(|(d, _)| *d).collect();
        let bytes: usize = data.iter().map(|d| d.len()).sum();
        // The endpoint in force when the request starts (an update takes effect at the next).
        let endpoint = current(registry, &definition.name, definition.create_ms)
            .and_then(|d| d.http_endpoint)
            .unwrap_or_else(|| endpoint.clone());
        let attempt_failed = |error_code: &str, error_message: &str| {
            metrics.errors.failed(
                Destination::HttpEndpoint,
                error_code,
                error_message,
                now_ms(),
            );
        };
        let outcome = match &sinks.http {
            Some(http) => {
                http.deliver(&endpoint, &definition.arn, &data, &alive, &attempt_failed)
                    .await
            }
            None => Some(Err(http_delivery::Failure {
                attempts: 0,
                error_code: "HttpEndpoint.InternalError",
                error_message: "The HTTP client could not start.".to_owned(),
                request_id: uuid::Uuid::new_v4().to_string(),
            })),
        };
        match outcome {
            None => return false,
            Some(Ok(attempts)) => {
                metrics.errors.succeeded(Destination::HttpEndpoint);
                metrics.delivery_failures(Destination::HttpEndpoint, attempts.saturating_sub(1));
                metrics.delivered(
                    Destination::HttpEndpoint,
                    chunk.len(),
                    bytes,
                    now_ms().saturating_sub(oldest_ms),
                );
            }
            Some(Err(failure)) => {
                attempt_failed(failure.error_code, &failure.error_message);
                metrics.delivery_failures(Destination::HttpEndpoint, failure.attempts);
                for (i, (data, arrival_ms)) in chunk.iter().enumerate() {
                    failed_lines.extend(http_delivery::error_record(
                        &failure,
                        data,
                        *arrival_ms,
                        chunk_index * http_delivery::REQUEST_RECORDS_MAX + i,
                    ));
                }
            }
        }
    }
    if !failed_lines.is_empty()
        && !write_object(
            registry,
            sinks,
            definition,
            &failed_lines,
            oldest_ms,
            Target::Errors("http-endpoint-failed"),
            metrics,
        )
        .await
    {
        return false;
    }
    if endpoint.backup_all_data {
        return write_object(
            registry,
            sinks,
            definition,
            all_data,
            oldest_ms,
            Target::Data,
            metrics,
        )
        .await;
    }
    true
}

/// Where an object goes.
#[derive(Clone, Copy, Debug)]
enum Target<'a> {
    /// Under the configured Prefix.
    Data,
    /// Under the error prefix, for error records of this error output type.
    Errors(&'a str),
    /// Under this evaluated prefix (a dynamic partition).
    Partition(&'a str),
}

/// Groups the records by their partition keys (from the MetadataExtraction query and the
/// Lambda's `metadata.partitionKeys`) and writes one object per partition under the Prefix
/// evaluated with those keys (its timestamps on the partition's oldest record). Records whose
/// keys cannot be had go to the error prefix as `partitioning-failed` error records [verify the
/// error output type against AWS].
async fn deliver_partitioned(
    registry: &Registry,
    sinks: &Sinks,
    definition: &Definition,
    partitioning: &crate::model::Partitioning,
    records: &[(&[u8], u64)],
    lambda_keys: &[&Keys],
    metrics: &StreamMetrics,
) -> bool {
    let query = match partitioning.metadata_query.as_deref().map(Query::compile) {
        None => None,
        Some(Ok(query)) => Some(query),
        Some(Err(error)) => {
            // Checked at create time; a definition edited by hand fails its records.
            tracing::error!(delivery_stream = %definition.name, %error, "The MetadataExtractionQuery does not compile.");
            None
        }
    };
    let Ok(object_prefix) = prefix::dynamic_prefix(definition.destination.prefix.as_deref()) else {
        return true;
    };
    let used: Vec<(bool, String)> = object_prefix
        .partition_keys()
        .map(|(lambda, key)| (lambda, key.to_owned()))
        .collect();
    // Partition (the values of the keys the prefix uses) → (records, oldest arrival, count).
    let mut partitions: BTreeMap<Vec<String>, (Vec<u8>, u64, usize)> = BTreeMap::new();
    let mut failed = Vec::new();
    for ((data, arrival_ms), lambda) in records.iter().zip(lambda_keys) {
        let query_keys = match (&query, used.iter().any(|(l, _)| !l)) {
            (Some(query), true) => query.keys(data),
            (None, true) => Err("no MetadataExtractionQuery to extract keys with".to_owned()),
            (_, false) => Ok(Keys::new()),
        };
        let values: Result<Vec<String>, String> = query_keys.and_then(|query_keys| {
            used.iter()
                .map(|(from_lambda, key)| {
                    let source = if *from_lambda { *lambda } else { &query_keys };
                    source
                        .get(key)
                        .cloned()
                        .ok_or_else(|| format!("the partition key {key} was not found"))
                })
                .collect()
        });
        match values {
            Ok(values) => {
                let entry = partitions
                    .entry(values)
                    .or_insert_with(|| (Vec::new(), *arrival_ms, 0));
                entry.0.extend_from_slice(data);
                if partitioning.append_delimiter {
                    entry.0.push(b'\n');
                }
                entry.1 = entry.1.min(*arrival_ms);
                entry.2 += 1;
            }
            Err(message) => failed.extend(crate::http_delivery::partitioning_error_record(
                data,
                *arrival_ms,
                &message,
            )),
        }
    }
    if !failed.is_empty() {
        let oldest = records.iter().map(|(_, a)| *a).min().unwrap_or(0);
        if !write_object(
            registry,
            sinks,
            definition,
            &failed,
            oldest,
            Target::Errors("partitioning-failed"),
            metrics,
        )
        .await
        {
            return false;
        }
    }
    for (values, (data, oldest_ms, count)) in &partitions {
        let lookup = |from_lambda: bool, key: &str| {
            used.iter()
                .position(|(l, k)| *l == from_lambda && k == key)
                .and_then(|i| values.get(i).cloned())
        };
        let Ok(key_prefix) = object_prefix.evaluate_with(*oldest_ms, None, &lookup) else {
            continue;
        };
        if !write_object(
            registry,
            sinks,
            definition,
            data,
            *oldest_ms,
            Target::Partition(&key_prefix),
            metrics,
        )
        .await
        {
            return false;
        }
        metrics.delivered(
            Destination::S3,
            *count,
            data.len(),
            now_ms().saturating_sub(*oldest_ms),
        );
    }
    true
}

/// Converts the records to one Parquet object by the table's schema (see `format`); records
/// that do not fit go to the error prefix as `format-conversion-failed` error records. A
/// table that cannot be read is retried (nothing is dropped). `false` when the delivery stream
/// went away meanwhile.
async fn deliver_converted(
    registry: &Registry,
    sinks: &Sinks,
    definition: &Definition,
    records: &[(&[u8], u64)],
    oldest_ms: u64,
    metrics: &StreamMetrics,
) -> bool {
    let mut backoff = RETRY_FIRST;
    let converted = loop {
        let Some(current) = current(registry, &definition.name, definition.create_ms) else {
            return false;
        };
        let Some(conversion) = current.destination.conversion.clone() else {
            return true;
        };
        let data: Vec<&[u8]> = records.iter().map(|(d, _)| *d).collect();
        match crate::format::columns_of(&conversion)
            .and_then(|columns| crate::format::convert(&conversion, &columns, &data))
        {
            Ok(converted) => break converted,
            Err(error) => {
                metrics.delivery_failed(Destination::S3);
                // AWS's error code for a schema it cannot read is not documented [verify].
                metrics.errors.failed(
                    Destination::S3,
                    "DataFormatConversion.SchemaUnavailable",
                    error.to_string(),
                    now_ms(),
                );
                tracing::warn!(delivery_stream = %definition.name, %error, "Converting records to Parquet failed; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    };
    if !converted.failed.is_empty() {
        let lines: Vec<u8> = converted
            .failed
            .iter()
            .flat_map(|(index, message)| {
                let (data, arrival_ms) = records[*index];
                crate::http_delivery::conversion_error_record(data, arrival_ms, message)
            })
            .collect();
        if !write_object(
            registry,
            sinks,
            definition,
            &lines,
            oldest_ms,
            Target::Errors("format-conversion-failed"),
            metrics,
        )
        .await
        {
            return false;
        }
    }
    let Some(parquet) = converted.parquet else {
        return true;
    };
    let written = write_object(
        registry,
        sinks,
        definition,
        &parquet,
        oldest_ms,
        Target::Data,
        metrics,
    )
    .await;
    if written {
        metrics.delivered(
            Destination::S3,
            converted.rows,
            parquet.len(),
            now_ms().saturating_sub(oldest_ms),
        );
    }
    written
}

/// Indexes the records with `_bulk` (see `opensearch`); documents that finally failed go to
/// the S3 configuration as error records, and with AllDocuments every record is written there
/// too. `false` when the delivery stream went away meanwhile.
#[allow(clippy::too_many_arguments)]
async fn deliver_opensearch(
    registry: &Registry,
    sinks: &Sinks,
    definition: &Definition,
    records: &[(&[u8], u64)],
    ids: &[&str],
    data: &[u8],
    oldest_ms: u64,
    metrics: &StreamMetrics,
) -> bool {
    let Some(os) = &definition.opensearch else {
        return true;
    };
    let documents: Vec<crate::opensearch::Document<'_>> = records
        .iter()
        .zip(ids)
        .map(|((data, arrival_ms), id)| crate::opensearch::Document {
            data,
            arrival_ms: *arrival_ms,
            id: (*id).to_owned(),
        })
        .collect();
    let alive = || current(registry, &definition.name, definition.create_ms).is_some();
    let (failed, attempts) = match &sinks.http {
        Some(http) => {
            match crate::opensearch::deliver(http, os, &documents, &alive, &|code, message| {
                metrics.errors.failed(
                    Destination::AmazonOpenSearchService,
                    code,
                    message,
                    now_ms(),
                );
            })
            .await
            {
                Some(outcome) => outcome,
                None => return false,
            }
        }
        None => (
            (0..documents.len())
                .map(|index| crate::opensearch::Failed {
                    index,
                    error_code: "OS.InternalError".to_owned(),
                    error_message: "The HTTP client could not start.".to_owned(),
                })
                .collect(),
            0,
        ),
    };
    let delivered: usize = documents.len() - failed.len();
    match failed
        .iter()
        .find(|f| f.error_code != crate::opensearch::MALFORMED_DOCUMENT)
    {
        Some(f) => metrics.errors.failed(
            Destination::AmazonOpenSearchService,
            f.error_code.clone(),
            f.error_message.clone(),
            now_ms(),
        ),
        None => metrics
            .errors
            .succeeded(Destination::AmazonOpenSearchService),
    }
    if delivered > 0 {
        metrics.delivered(
            Destination::AmazonOpenSearchService,
            delivered,
            data.len(),
            now_ms().saturating_sub(oldest_ms),
        );
    }
    if !failed.is_empty() {
        metrics.delivery_failed(Destination::AmazonOpenSearchService);
        let lines: Vec<u8> = failed
            .iter()
            .flat_map(|f| crate::opensearch::error_record(os, &documents[f.index], f, attempts))
            .collect();
        if !write_object(
            registry,
            sinks,
            definition,
            &lines,
            oldest_ms,
            Target::Errors(os.flavor.error_output_type()),
            metrics,
        )
        .await
        {
            return false;
        }
    }
    if os.backup_all {
        return write_object(
            registry,
            sinks,
            definition,
            data,
            oldest_ms,
            Target::Data,
            metrics,
        )
        .await;
    }
    true
}

/// Stages the buffer in S3, then loads it into PostgreSQL with COPY, retrying for the
/// destination's retry duration; after that a manifest naming the staged object goes under
/// `errors/manifests/` and the buffer is skipped (its data stays staged). `false` when the
/// delivery stream went away meanwhile.
async fn deliver_redshift(
    registry: &Registry,
    sinks: &Sinks,
    definition: &Definition,
    data: &[u8],
    records: usize,
    oldest_ms: u64,
    metrics: &StreamMetrics,
) -> bool {
    let Some(staged_key) = write_object_key(
        registry,
        sinks,
        definition,
        data,
        oldest_ms,
        Target::Data,
        metrics,
    )
    .await
    else {
        return false;
    };
    let mut first_failure: Option<std::time::Instant> = None;
    let mut backoff = RETRY_FIRST;
    loop {
        let Some(current) = current(registry, &definition.name, definition.create_ms) else {
            return false;
        };
        let Some(redshift) = current.redshift.clone() else {
            return true;
        };
        let outcome = match crate::redshift::copy_rows(&redshift, data) {
            Ok(rows) => crate::redshift::copy(&redshift, rows).await,
            Err(error_message) => Err(crate::redshift::CopyError {
                error_code: crate::redshift::DATA_LOAD_FAILED,
                error_message,
            }),
        };
        let error = match outcome {
            Ok(_) => {
                metrics.errors.succeeded(Destination::Redshift);
                metrics.delivered(
                    Destination::Redshift,
                    records,
                    data.len(),
                    now_ms().saturating_sub(oldest_ms),
                );
                return true;
            }
            Err(error) => error,
        };
        metrics.delivery_failed(Destination::Redshift);
        metrics.errors.failed(
            Destination::Redshift,
            error.error_code,
            error.error_message.clone(),
            now_ms(),
        );
        tracing::warn!(delivery_stream = %definition.name, %error, "A COPY into PostgreSQL failed.");
        let failed_at = *first_failure.get_or_insert_with(std::time::Instant::now);
        if failed_at.elapsed() >= Duration::from_secs(u64::from(redshift.retry_duration_s)) {
            let staging = &current.destination;
            let manifest = serde_json::json!({ "entries": [
                { "url": format!("s3://{}/{staged_key}", staging.bucket()), "mandatory": true }
            ]})
            .to_string();
            let manifest_prefix = prefix::object_prefix(Some(&format!(
                "{}errors/manifests/",
                staging.prefix.as_deref().unwrap_or("")
            )))
            .unwrap_or_default()
            .evaluate(oldest_ms, None);
            return write_object(
                registry,
                sinks,
                definition,
                manifest.as_bytes(),
                oldest_ms,
                Target::Partition(&manifest_prefix),
                metrics,
            )
            .await;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// [`write_object_key`], `false` when the delivery stream went away.
async fn write_object(
    registry: &Registry,
    sinks: &Sinks,
    definition: &Definition,
    data: &[u8],
    oldest_ms: u64,
    target: Target<'_>,
    metrics: &StreamMetrics,
) -> bool {
    write_object_key(
        registry, sinks, definition, data, oldest_ms, target, metrics,
    )
    .await
    .is_some()
}

/// Writes `data` as one object of the delivery stream's S3 destination (or backup) under
/// `target`'s prefix, retrying until S3 confirms it; the object's key, or `None` when the
/// delivery stream went away meanwhile.
async fn write_object_key(
    registry: &Registry,
    sinks: &Sinks,
    definition: &Definition,
    data: &[u8],
    oldest_ms: u64,
    target: Target<'_>,
    metrics: &StreamMetrics,
) -> Option<String> {
    let mut backoff = RETRY_FIRST;
    loop {
        // The configuration in force when the object is written (an UpdateDestination between
        // attempts takes effect at once, with the new version in the object's name).
        let definition = current(registry, &definition.name, definition.create_ms)?;
        let destination = &definition.destination;
        let converted = destination.conversion.is_some() && !matches!(target, Target::Errors(_));
        let extension = match (&destination.file_extension, converted) {
            (Some(extension), _) => extension.clone(),
            (None, true) => ".parquet".to_owned(),
            (None, false) => compression::extension(destination.compression).to_owned(),
        };
        let mut key_prefix = match target {
            Target::Data => prefix::object_prefix(destination.prefix.as_deref())
                // Checked at create and update time; a file edited by hand gets the default.
                .unwrap_or_default()
                .evaluate(oldest_ms, None),
            Target::Partition(given) => given.to_owned(),
            Target::Errors(kind) => prefix::error_prefix(
                destination.prefix.as_deref(),
                destination.error_output_prefix.as_deref(),
            )
            .evaluate(oldest_ms, Some(kind)),
        };
        if key_prefix.chars().count() > prefix::EVALUATED_PREFIX_CHARS_MAX {
            key_prefix = key_prefix
                .chars()
                .take(prefix::EVALUATED_PREFIX_CHARS_MAX)
                .collect();
        }
        let object = prefix::object_name(
            &definition.name,
            definition.version_id,
            oldest_ms,
            &extension,
        );
        let entry = object.strip_suffix(extension.as_str()).unwrap_or(&object);
        let body = match compression::compress(destination.compression, data, entry) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(delivery_stream = %definition.name, %error, "Compressing an object failed; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        };
        let object_key = format!("{key_prefix}{object}");
        match sinks.s3.put(destination.bucket(), &object_key, body).await {
            Ok(()) => {
                metrics.errors.succeeded(Destination::S3);
                tracing::debug!(delivery_stream = %definition.name, key = %object_key, "Object delivered.");
                return Some(object_key);
            }
            Err(error) => {
                metrics.delivery_failed(Destination::S3);
                tracing::warn!(delivery_stream = %definition.name, bucket = destination.bucket(), %error, "Writing an object to S3 failed; retrying.");
                metrics.errors.failed(
                    Destination::S3,
                    error.error_code,
                    error.error_message,
                    now_ms(),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}
