//! The stream and record requests: CreateStream, DescribeStream, ListStreams, GetShardMap,
//! PutBatch and Read. Each runs as its own task: the resource-policy check first, then the
//! request's own validation, then the call. Control-plane calls and PutBatch go to
//! [`KinesisApi`]; shard maps and reads go to the storage face ([`RecordLog`]).

use bytes::Bytes;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sluice_core::api::{
    self, CreateStreamInput, DescribeStreamInput, ListStreamsInput, PutRecordsEntry,
    PutRecordsInput, RecordBatch as _, StreamStatus,
};
use sluice_core::shard_id::format_shard_id;
use sluice_core::storage::{
    ReadBatch, ReadError, ReadLimits, ReadStart, RecordLog, ShardAddress, ShardPlacement,
};
use sluice_core::{KinesisApi, KinesisError, SequenceNumber, limits as kinesis_limits};

use super::{AdmittedPut, Connection, Runtime};
use crate::admission::{BudgetPermit, request_charge};
use crate::binary::convert::wire_stream_description;
use crate::binary::limits::{HEADER_BYTES, READ_BYTES_MAX, READ_RECORDS_MAX};
use crate::binary::{
    Body, Opcode, RecordsWriter, StatusCode, WireCreateStream, WireListStreams, WirePutBatch,
    WirePutBatchResult, WireRead, WireRoute, WireShardMap, WireShardMapEntry, WireStartPosition,
    WireStatus, WireStreamList, WireStreamName,
};

/// How long a CreateStream waits for its stream to become ACTIVE.
const CREATE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a CreateStream checks whether its stream left CREATING (only when the server is
/// configured with a create delay).
const CREATE_ACTIVE_CHECK: Duration = Duration::from_millis(5);
/// The largest ListStreams `limit` passed on (the model's bound for the HTTP API's `Limit`).
const LIST_STREAMS_LIMIT_MAX: u32 = 10_000;

impl<A, L, R> Connection<A, L, R>
where
    A: KinesisApi + 'static,
    L: RecordLog,
    R: Runtime,
{
    pub(super) fn on_create_stream(self: &Rc<Self>, request_id: u64, create: WireCreateStream<'_>) {
        let input = CreateStreamInput {
            stream_name: create.stream_name.to_owned(),
            shard_count: Some(create.shard_count),
            stream_mode: None,
            tags: Vec::new(),
        };
        self.spawn(move |c| async move { c.create_stream(request_id, input).await });
    }

    async fn create_stream(&self, request_id: u64, input: CreateStreamInput) {
        let stream_name = input.stream_name.clone();
        let api = &self.server.api;
        let result = async {
            self.check_policy(Opcode::CreateStream, &stream_name)
                .await?;
            api.create_stream(input).await?;
            // The protocol promises an ACTIVE stream with the answer; with a create delay
            // configured the catalog keeps it CREATING for a while.
            let started = Instant::now();
            loop {
                let summary = api.describe_stream_summary(stream_name.clone()).await?;
                if summary.stream_status != StreamStatus::Creating {
                    return Ok(());
                }
                if started.elapsed() > CREATE_ACTIVE_TIMEOUT {
                    return Err(KinesisError::internal(
                        "The stream was created but did not become ACTIVE in time.",
                    ));
                }
                self.server.runtime.sleep(CREATE_ACTIVE_CHECK).await;
            }
        }
        .await;
        match result {
            Ok(()) => self.respond(request_id, Body::CreateStreamOk),
            Err(error) => self.respond_kinesis_error(request_id, Opcode::CreateStream, &error),
        }
    }

    pub(super) fn on_describe_stream(self: &Rc<Self>, request_id: u64, name: WireStreamName<'_>) {
        let stream_name = name.stream_name.to_owned();
        self.spawn(move |c| async move { c.describe_stream(request_id, stream_name).await });
    }

    async fn describe_stream(&self, request_id: u64, stream_name: String) {
        let api = &self.server.api;
        let result = async {
            self.check_policy(Opcode::DescribeStream, &stream_name)
                .await?;
            // The HTTP API pages shards; the binary answer carries them all.
            let mut description = api
                .describe_stream(DescribeStreamInput {
                    stream_name: stream_name.clone(),
                    limit: Some(kinesis_limits::DESCRIBE_STREAM_SHARDS_MAX),
                    exclusive_start_shard_id: None,
                })
                .await?;
            while description.has_more_shards {
                let Some(last) = description.shards.last() else {
                    break;
                };
                let page = api
                    .describe_stream(DescribeStreamInput {
                        stream_name: stream_name.clone(),
                        limit: Some(kinesis_limits::DESCRIBE_STREAM_SHARDS_MAX),
                        exclusive_start_shard_id: Some(last.shard_id.clone()),
                    })
                    .await?;
                description.has_more_shards = page.has_more_shards && !page.shards.is_empty();
                description.shards.extend(page.shards);
            }
            let placements = self.shards(&stream_name)?;
            Ok::<_, KinesisError>((description, placements))
        }
        .await;
        let (description, placements) = match result {
            Ok(found) => found,
            Err(error) => {
                self.respond_kinesis_error(request_id, Opcode::DescribeStream, &error);
                return;
            }
        };
        let core_of = |shard_index: u32| {
            placements
                .iter()
                .find(|p| p.shard_index == shard_index)
                .map_or(0, |p| core_id_u16(p.core_id))
        };
        match wire_stream_description(&description, core_of) {
            Ok(wire) => self.respond(request_id, Body::DescribeStreamOk(wire)),
            Err(error) => {
                tracing::error!(%error, "A stream description does not fit the binary protocol.");
                self.respond_kinesis_error(
                    request_id,
                    Opcode::DescribeStream,
                    &KinesisError::internal(format!(
                        "The stream description is malformed: {error}"
                    )),
                );
            }
        }
    }

    pub(super) fn on_list_streams(self: &Rc<Self>, request_id: u64, list: WireListStreams<'_>) {
        let input = ListStreamsInput {
            limit: (list.limit != 0).then_some(list.limit.min(LIST_STREAMS_LIMIT_MAX)),
            exclusive_start_stream_name: list.exclusive_start_stream_name.map(str::to_owned),
            next_token: None,
        };
        self.spawn(move |c| async move { c.list_streams(request_id, input).await });
    }

    async fn list_streams(&self, request_id: u64, input: ListStreamsInput) {
        match self.server.api.list_streams(input).await {
            Ok(output) => self.respond(
                request_id,
                Body::ListStreamsOk(WireStreamList {
                    stream_names: output.stream_names.iter().map(String::as_str).collect(),
                    has_more_streams: output.has_more_streams,
                }),
            ),
            Err(error) => self.respond_kinesis_error(request_id, Opcode::ListStreams, &error),
        }
    }

    pub(super) fn on_get_shard_map(self: &Rc<Self>, request_id: u64, name: WireStreamName<'_>) {
        let stream_name = name.stream_name.to_owned();
        self.spawn(move |c| async move { c.get_shard_map(request_id, stream_name).await });
    }

    async fn get_shard_map(&self, request_id: u64, stream_name: String) {
        let result = async {
            self.check_policy(Opcode::GetShardMap, &stream_name).await?;
            self.shards(&stream_name)
        }
        .await;
        match result {
            Ok(placements) => {
                let shards = placements
                    .iter()
                    .filter(|p| p.open)
                    .map(|p| WireShardMapEntry {
                        shard_index: p.shard_index,
                        hash_range: p.hash_range.into(),
                        core_id: core_id_u16(p.core_id),
                    })
                    .collect();
                self.respond(request_id, Body::GetShardMapOk(WireShardMap { shards }));
            }
            Err(error) => self.respond_kinesis_error(request_id, Opcode::GetShardMap, &error),
        }
    }

    /// `put` is what the PutBatch was granted from its header; it is given back after the
    /// answer.
    pub(super) fn on_put_batch(
        self: &Rc<Self>,
        request_id: u64,
        batch: &WirePutBatch<'_>,
        frame: &Bytes,
        put: AdmittedPut,
    ) {
        // Validated here, while the records borrow the frame; a refusal is answered only after
        // the policy check, so a denied request is AccessDenied whatever else is wrong with
        // it, as over HTTP.
        let stream_name = batch.stream_name.to_owned();
        let prepared = self.prepare_put_batch(batch, frame);
        self.spawn(move |c| async move {
            c.put_batch(request_id, stream_name, prepared).await;
            c.finish_put(put);
        });
    }

    /// Applies the partition-key rule to every record (refusing the whole batch, as the HTTP
    /// API does) and resolves routes by shard index to that shard's starting hash key, so that
    /// `put_records` routes them exactly as HTTP records with that explicit hash key. The
    /// records' data stay in `frame`, the frame `batch` was decoded from: the entries hold
    /// slices of it, so a record's bytes are copied only into their block.
    fn prepare_put_batch(
        &self,
        batch: &WirePutBatch<'_>,
        frame: &Bytes,
    ) -> Result<PreparedPut, KinesisError> {
        // Record sizes are checked by `put_records` against the stream's own maximum
        // (`sluice_core::api::check_record_sizes`), as for HTTP requests.
        for (i, record) in batch.records.iter().enumerate() {
            api::check_partition_key(
                i,
                record.partition_key,
                record.route == WireRoute::PartitionKey,
            )?;
        }
        let by_shard = batch
            .records
            .iter()
            .any(|r| matches!(r.route, WireRoute::ShardIndex(_)));
        let placements = if by_shard {
            self.shards(batch.stream_name)?
        } else {
            Vec::new()
        };
        let starting_hash_key_of = |shard_index: u32| {
            placements
                .iter()
                .find(|p| p.shard_index == shard_index && p.open)
                .map(|p| p.hash_range.starting)
        };
        let mut entries = Vec::with_capacity(batch.records.len());
        let mut slots = Vec::with_capacity(batch.records.len());
        for record in &batch.records {
            match record.to_put_records_entry(frame, starting_hash_key_of) {
                Ok(entry) => {
                    slots.push(Ok(entries.len()));
                    entries.push(entry);
                }
                Err(status) => slots.push(Err(status)),
            }
        }
        Ok(PreparedPut {
            stream_name: batch.stream_name.to_owned(),
            entries,
            slots,
        })
    }

    async fn put_batch(
        &self,
        request_id: u64,
        stream_name: String,
        prepared: Result<PreparedPut, KinesisError>,
    ) {
        let checked = self.check_policy(Opcode::PutBatch, &stream_name).await;
        let PreparedPut {
            stream_name,
            entries,
            slots,
        } = match checked.and(prepared) {
            Ok(prepared) => prepared,
            Err(error) => {
                self.respond_kinesis_error(request_id, Opcode::PutBatch, &error);
                return;
            }
        };
        let input = PutRecordsInput {
            stream_name,
            records: entries,
        };
        let output = match self.server.api.put_records(input).await {
            Ok(output) => output,
            Err(error) => {
                self.respond_kinesis_error(request_id, Opcode::PutBatch, &error);
                return;
            }
        };
        let stored = WirePutBatchResult::from(&output);
        let records = slots
            .into_iter()
            .map(|slot| match slot {
                Ok(i) => stored
                    .records
                    .get(i)
                    .copied()
                    .unwrap_or(Err(StatusCode::InternalFailure.into())),
                Err(status) => Err(status),
            })
            .collect();
        self.respond(request_id, Body::PutBatchOk(WirePutBatchResult { records }));
    }

    /// Runs a Read admitted by the read loop; `permit` holds the budget of its answer until the
    /// answer has been written to the socket.
    pub(super) async fn read_records(&self, read: PendingRead, permit: Option<BudgetPermit>) {
        let PendingRead {
            request_id,
            stream_name,
            request,
            ..
        } = read;
        self.read_records_inner(request_id, stream_name, request)
            .await;
        if let Some(permit) = permit {
            self.outbox.hold(permit);
        }
    }

    async fn read_records_inner(
        &self,
        request_id: u64,
        stream_name: String,
        request: Result<ReadRequest, KinesisError>,
    ) {
        let checked = self.check_policy(Opcode::Read, &stream_name).await;
        let request = match checked.and(request) {
            Ok(request) => request,
            Err(error) => {
                self.respond_kinesis_error(request_id, Opcode::Read, &error);
                return;
            }
        };
        let read = self
            .server
            .log
            .read(&request.shard, request.start, request.limits, None)
            .await;
        match read {
            Ok(batch) => self.outbox.push_with(|buf| {
                let origin = batch.origin();
                let writer = RecordsWriter::read_response(
                    buf,
                    request_id,
                    origin.created_s,
                    origin.shard_index,
                );
                write_records(writer, &batch, request.limits);
            }),
            Err(error) => {
                let error = self.read_error(error);
                self.respond_kinesis_error(request_id, Opcode::Read, &error);
            }
        }
    }

    /// The shards of `stream_name`, or ResourceNotFound with the HTTP API's message.
    fn shards(&self, stream_name: &str) -> Result<Vec<ShardPlacement>, KinesisError> {
        self.server
            .log
            .shards(stream_name)
            .map_err(|error| self.read_error(error))
    }

    /// A refusal of the storage face in the words the HTTP API uses for the same failure of
    /// GetShardIterator or GetRecords.
    pub(super) fn read_error(&self, error: ReadError) -> KinesisError {
        let account_id = self.server.api.account_id();
        match error {
            ReadError::StreamNotFound { stream_name } => {
                KinesisError::stream_not_found(&stream_name, account_id)
            }
            ReadError::ShardNotFound { shard } => KinesisError::shard_not_found(
                &format_shard_id(shard.shard_index),
                &shard.stream_name,
                account_id,
            ),
            ReadError::InvalidStart { detail, .. } => KinesisError::invalid_argument(detail),
            ReadError::Throttled { shard } => KinesisError::new(
                sluice_core::ErrorKind::ProvisionedThroughputExceeded,
                format!(
                    "Rate exceeded for shard {} in stream {} under account {account_id}.",
                    format_shard_id(shard.shard_index),
                    shard.stream_name
                ),
            ),
            other => KinesisError::internal(format!("The read failed: {other}.")),
        }
    }
}

/// A PutBatch checked and converted to the domain: the entries for `put_records` and, in
/// request order, where each record's answer comes from.
struct PreparedPut {
    stream_name: String,
    entries: Vec<PutRecordsEntry>,
    /// `Ok(i)`: the answer of `entries[i]`; `Err(status)`: refused before storage.
    slots: Vec<Result<usize, WireStatus>>,
}

fn core_id_u16(core_id: usize) -> u16 {
    u16::try_from(core_id).expect("the core id fits u16")
}

/// The domain form of a start position. A sequence number with a position no record can have
/// is refused as the HTTP API refuses a malformed StartingSequenceNumber.
pub(super) fn read_start(start: WireStartPosition) -> Result<ReadStart, KinesisError> {
    let sequence_number = |wire| {
        SequenceNumber::try_from(wire).map_err(|error| {
            KinesisError::invalid_argument(format!("Invalid sequence number: {error}."))
        })
    };
    Ok(match start {
        WireStartPosition::TrimHorizon => ReadStart::TrimHorizon,
        WireStartPosition::Latest => ReadStart::Latest,
        WireStartPosition::AtTimestamp { timestamp_ms } => ReadStart::AtTimestamp { timestamp_ms },
        WireStartPosition::AtSequenceNumber(s) => ReadStart::AtSequenceNumber(sequence_number(s)?),
        WireStartPosition::AfterSequenceNumber(s) => {
            ReadStart::AfterSequenceNumber(sequence_number(s)?)
        }
        WireStartPosition::AtPosition(position) => ReadStart::AtPosition(position),
    })
}

/// A Read taken off the wire, waiting for the budget of its answer.
pub(super) struct PendingRead {
    request_id: u64,
    stream_name: String,
    request: Result<ReadRequest, KinesisError>,
    charge: u64,
}

/// Bytes of one record in a records payload besides its key and data: position, arrival
/// seconds, arrival milliseconds, and the two length prefixes.
const RECORD_OVERHEAD_BYTES: u64 = 8 + 8 + 8 + 2 + 4;
/// Bytes of a records payload before its records.
const RECORDS_PREFIX_BYTES: u64 = 33;

impl PendingRead {
    pub(super) fn new(request_id: u64, read: &WireRead<'_>) -> Self {
        // The most the answer may carry: every record at its overhead, plus the key and data
        // bytes asked for (one record may exceed them; the floor of the charge covers a small
        // read's single large record only approximately, as HTTP's does).
        let records = u64::from(read.records_max.clamp(1, READ_RECORDS_MAX));
        let bytes = u64::from(read.bytes_max.clamp(1, READ_BYTES_MAX));
        let answer_bytes =
            HEADER_BYTES as u64 + RECORDS_PREFIX_BYTES + records * RECORD_OVERHEAD_BYTES + bytes;
        Self {
            request_id,
            stream_name: read.stream_name.to_owned(),
            request: ReadRequest::new(read),
            charge: request_charge(answer_bytes),
        }
    }

    pub(super) const fn request_id(&self) -> u64 {
        self.request_id
    }

    pub(super) const fn charge(&self) -> u64 {
        self.charge
    }
}

/// A validated Read.
struct ReadRequest {
    shard: ShardAddress,
    start: ReadStart,
    limits: ReadLimits,
}

impl ReadRequest {
    fn new(read: &WireRead<'_>) -> Result<Self, KinesisError> {
        if !(1..=READ_RECORDS_MAX).contains(&read.records_max) {
            return Err(KinesisError::invalid_argument(format!(
                "records_max must be between 1 and {READ_RECORDS_MAX}; it is {}.",
                read.records_max
            )));
        }
        if !(1..=READ_BYTES_MAX).contains(&read.bytes_max) {
            return Err(KinesisError::invalid_argument(format!(
                "bytes_max must be between 1 and {READ_BYTES_MAX}; it is {}.",
                read.bytes_max
            )));
        }
        Ok(Self {
            shard: ShardAddress::new(read.stream_name, read.shard_index),
            start: read_start(read.start)?,
            limits: ReadLimits {
                records_max: read.records_max as usize,
                bytes_max: read.bytes_max as usize,
            },
        })
    }
}

/// Encodes up to `limits.records_max` records and `limits.bytes_max` partition key plus data
/// bytes of `batch` (at least one record if there is any) into `writer`, and finishes the
/// frame. Returns the records written and where to continue, which is before the first record
/// left out when the frame could not take them all.
pub(super) fn write_records(
    mut writer: RecordsWriter<'_>,
    batch: &ReadBatch,
    limits: ReadLimits,
) -> (usize, Option<u64>) {
    let mut first_position = None;
    let mut last_written = None;
    let mut truncated = false;
    writer.reserve(
        batch.len().min(limits.records_max),
        batch.payload_bytes().min(limits.bytes_max),
    );
    batch.for_each_positioned(&mut |position, record| {
        first_position.get_or_insert(position);
        if truncated {
            return;
        }
        let key_bytes = record.partition_key.len();
        let data_bytes = record.data.len();
        let over_budget = !writer.is_empty()
            && (writer.len() as usize >= limits.records_max
                || writer.payload_bytes() + key_bytes + data_bytes > limits.bytes_max);
        if over_budget || !writer.fits(key_bytes, data_bytes) {
            truncated = true;
            return;
        }
        match writer.push_view(&record) {
            Ok(()) => last_written = Some(position),
            Err(error) => {
                tracing::warn!(%error, "A record does not fit a records frame.");
                truncated = true;
            }
        }
    });
    let count = writer.len() as usize;
    let next_position = if truncated {
        // The left-out records come first in the next frame. If none fit at all, the read
        // starts over where it began.
        match last_written {
            Some(last) => Some(last + 1),
            None => first_position.or(batch.next_position),
        }
    } else {
        batch.next_position
    };
    writer.finish(next_position, batch.millis_behind_latest);
    (count, next_position)
}
