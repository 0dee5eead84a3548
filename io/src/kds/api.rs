//! The Kinesis Data Streams service on the engine: the `KinesisApi` implementation. Control-plane
//! calls are catalog reads or changes (persisted before they are acknowledged); data-plane calls
//! go through the engine's write and read paths. Record validation and limits are `core`'s
//! (`check_record_sizes`), shared with every wire.

use sluice_core::api::*;
use sluice_core::catalog::{Catalog, StartingPoint, Stream};
use sluice_core::limits::GET_RECORDS_BYTES_MAX;
use sluice_core::shard_id::format_shard_id;
use sluice_core::{KinesisError, SequenceNumber};

use crate::engine::least_loaded;
use crate::engine::*;

/// The record size limit a write is checked against: the stream's, or the default one when the
/// stream does not exist, so that an oversized record is a ValidationException whatever the
/// stream, as the model's length constraint always was.
pub(crate) fn max_record_bytes(stream: Option<&&Stream>) -> usize {
    stream.map_or(sluice_core::limits::RECORD_BYTES_MAX, |s| {
        s.max_record_bytes()
    })
}

/// PutRecord's SequenceNumberForOrdering must be a sequence number of this stream: ours, naming
/// one of its shards as created. Any later record of the shard gets a greater number anyway, so
/// nothing else is needed to honour the ordering.
pub(crate) fn check_sequence_number_for_ordering(
    stream: &Stream,
    text: &str,
    account_id: &str,
    now_ms: u64,
) -> Result<(), KinesisError> {
    // AWS takes any well-formed sequence number (either layout version, any shard, even one of
    // an earlier stream of the same name) whose shard creation time is not in the future: our
    // positions only grow, so every later record already orders after it.
    let well_formed = SequenceNumber::parse_any_version(text)
        .is_ok_and(|s| s.shard_created_s.saturating_mul(1000) <= now_ms);
    if well_formed {
        Ok(())
    } else {
        Err(KinesisError::invalid_argument(format!(
            "ExclusiveMinimumSequenceNumber {text} used in PutRecord on stream {} under account {account_id} is invalid.",
            stream.name
        )))
    }
}

/// The one entry point of control-plane calls: every stream, shard, consumer, tag and policy
/// call is a catalog read (`query`) or a catalog change persisted before it is acknowledged
/// (`change`), each given the same clock reading.
impl Engine {
    fn query<T>(&self, call: impl FnOnce(&Catalog, u64) -> T) -> T {
        call(&self.catalog_read(), now_ms())
    }

    async fn change<T>(
        &self,
        call: impl FnOnce(&mut Catalog, u64) -> Result<T, KinesisError>,
    ) -> Result<T, KinesisError> {
        let now = now_ms();
        self.mutate_catalog(|catalog| call(catalog, now)).await
    }
}

impl KinesisApi for Engine {
    type Records = EngineRecords;

    fn region(&self) -> &str {
        &self.shared.catalog_config.region
    }

    fn account_id(&self) -> &str {
        &self.shared.catalog_config.account_id
    }

    async fn create_stream(&self, input: CreateStreamInput) -> Result<(), KinesisError> {
        let cores = self.shared.cores;
        self.mutate_catalog(|catalog| {
            let mut load = Engine::placement(catalog, cores);
            catalog.create_stream(input, now_ms(), &mut |_shard_index| least_loaded(&mut load))
        })
        .await
    }

    async fn delete_stream(&self, input: DeleteStreamInput) -> Result<(), KinesisError> {
        self.change(|c, now| c.delete_stream(input, now)).await
    }

    async fn describe_stream(
        &self,
        input: DescribeStreamInput,
    ) -> Result<StreamDescription, KinesisError> {
        self.query(|c, now| c.describe_stream(input, now))
    }

    async fn describe_stream_summary(
        &self,
        stream_name: String,
    ) -> Result<StreamDescriptionSummary, KinesisError> {
        self.query(|c, now| c.describe_stream_summary(&stream_name, now))
    }

    async fn list_streams(
        &self,
        input: ListStreamsInput,
    ) -> Result<ListStreamsOutput, KinesisError> {
        self.query(|c, now| c.list_streams(input, now))
    }

    async fn list_shards(&self, input: ListShardsInput) -> Result<ListShardsOutput, KinesisError> {
        self.query(|c, now| c.list_shards(input, now))
    }

    async fn put_records(&self, input: PutRecordsInput) -> Result<PutRecordsOutput, KinesisError> {
        let encryption_type = {
            let catalog = self.catalog_read();
            let stream = catalog.stream_for_write(&input.stream_name, now_ms());
            check_record_sizes(
                max_record_bytes(stream.as_ref().ok()),
                &input.records,
                false,
            )?;
            stream?.control.encryption_type()
        };
        let sizes = crate::metrics::entry_sizes(&input.records);
        let records = self
            .append_entries(&input.stream_name, input.records)
            .await?;
        crate::metrics::record_writes(
            &input.stream_name,
            crate::metrics::WriteCall::PutRecords,
            &sizes,
            &records,
        );
        Ok(PutRecordsOutput {
            encryption_type,
            records,
        })
    }

    async fn get_shard_iterator(
        &self,
        input: GetShardIteratorInput,
    ) -> Result<String, KinesisError> {
        let now = now_ms();
        let (target, start) = {
            let catalog = self.catalog_read();
            let (stream, shard, start) = catalog.shard_iterator_start(&input, now)?;
            (self.resolve_target(stream, shard), start)
        };
        let position = self.resolve_starting_point(&target, start, now).await?;
        let catalog = self.catalog_read();
        let stream = catalog
            .streams
            .get(&target.key.stream_name)
            .filter(|s| s.created_ms == target.key.stream_created_ms)
            .ok_or_else(|| {
                KinesisError::stream_not_found(&target.key.stream_name, &catalog.config.account_id)
            })?;
        let shard = stream.shard(target.key.shard_index).ok_or_else(|| {
            KinesisError::shard_not_found(
                &format_shard_id(target.key.shard_index),
                &stream.name,
                &catalog.config.account_id,
            )
        })?;
        Ok(catalog.shard_iterator(stream, shard, position, now))
    }

    async fn get_records(
        &self,
        input: GetRecordsInput,
    ) -> Result<GetRecordsOutput<EngineRecords>, KinesisError> {
        let now = now_ms();
        let (target, iterator_position) = {
            let catalog = self.catalog_read();
            let (stream, shard, iterator) =
                catalog.resolve_shard_iterator(&input.shard_iterator, now)?;
            (self.resolve_target(stream, shard), iterator.position)
        };
        let limit = input
            .limit
            .unwrap_or(sluice_core::limits::GET_RECORDS_LIMIT_MAX) as usize;
        let request = OwnerRead {
            start: StartingPoint::At(iterator_position),
            charge_read_limits: true,
            limit,
            bytes_max: input.bytes_max.map_or(GET_RECORDS_BYTES_MAX, |cap| {
                cap.clamp(1, GET_RECORDS_BYTES_MAX)
            }),
            retain_after_ms: now.saturating_sub(target.retention_ms),
            wait_until: None,
        };
        let OwnerReadOutput {
            records,
            next_position,
            millis_behind_latest,
        } = self.read_on_owner(&target, request).await?;
        let shard_ended = target
            .closed_at_position
            .is_some_and(|end| next_position >= end);
        let mut child_shards = Vec::new();
        let next_shard_iterator = if shard_ended {
            let catalog = self.catalog_read();
            if let Some(stream) = catalog
                .streams
                .get(&target.key.stream_name)
                .filter(|s| s.created_ms == target.key.stream_created_ms)
            {
                child_shards = stream.child_shards(target.key.shard_index);
            }
            None
        } else {
            let catalog = self.catalog_read();
            let stream = catalog
                .streams
                .get(&target.key.stream_name)
                .filter(|s| s.created_ms == target.key.stream_created_ms);
            match stream.and_then(|s| s.shard(target.key.shard_index).map(|sh| (s, sh))) {
                Some((stream, shard)) => {
                    Some(catalog.shard_iterator(stream, shard, next_position, now))
                }
                None => {
                    return Err(KinesisError::shard_not_found(
                        &format_shard_id(target.key.shard_index),
                        &target.key.stream_name,
                        &catalog.config.account_id,
                    ));
                }
            }
        };
        crate::metrics::record_get_records(
            &target.key.stream_name,
            target.key.shard_index,
            &records,
            now,
        );
        Ok(GetRecordsOutput {
            records,
            next_shard_iterator,
            millis_behind_latest,
            child_shards,
        })
    }

    async fn add_tags_to_stream(
        &self,
        stream_name: String,
        tags: Vec<Tag>,
    ) -> Result<(), KinesisError> {
        self.change(|c, now| c.add_tags_to_stream(&stream_name, tags, now))
            .await
    }

    async fn remove_tags_from_stream(
        &self,
        stream_name: String,
        tag_keys: Vec<String>,
    ) -> Result<(), KinesisError> {
        self.change(|c, now| c.remove_tags_from_stream(&stream_name, tag_keys, now))
            .await
    }

    async fn list_tags_for_stream(
        &self,
        input: ListTagsForStreamInput,
    ) -> Result<ListTagsForStreamOutput, KinesisError> {
        self.query(|c, now| c.list_tags_for_stream(input, now))
    }

    async fn increase_stream_retention_period(
        &self,
        stream_name: String,
        retention_period_hours: u32,
    ) -> Result<(), KinesisError> {
        self.change(|c, now| {
            c.increase_stream_retention_period(&stream_name, retention_period_hours, now)
        })
        .await
    }

    async fn decrease_stream_retention_period(
        &self,
        stream_name: String,
        retention_period_hours: u32,
    ) -> Result<(), KinesisError> {
        self.change(|c, now| {
            c.decrease_stream_retention_period(&stream_name, retention_period_hours, now)
        })
        .await
    }

    async fn put_record(&self, input: PutRecordInput) -> Result<PutRecordOutput, KinesisError> {
        let records = vec![input.record];
        let encryption_type = {
            let catalog = self.catalog_read();
            let stream = catalog.stream_for_write(&input.stream_name, now_ms());
            check_record_sizes(max_record_bytes(stream.as_ref().ok()), &records, true)?;
            let stream = stream?;
            if let Some(ordering) = &input.sequence_number_for_ordering {
                check_sequence_number_for_ordering(
                    stream,
                    ordering,
                    &catalog.config.account_id,
                    now_ms(),
                )?;
            }
            stream.control.encryption_type()
        };
        let sizes = crate::metrics::entry_sizes(&records);
        let results = self.append_entries(&input.stream_name, records).await?;
        crate::metrics::record_writes(
            &input.stream_name,
            crate::metrics::WriteCall::PutRecord,
            &sizes,
            &results,
        );
        let entry = results
            .into_iter()
            .next()
            .expect("one record in, one result out")?;
        Ok(PutRecordOutput {
            shard_id: entry.shard_id.to_string(),
            sequence_number: entry.sequence_number,
            encryption_type,
        })
    }

    async fn split_shard(&self, input: SplitShardInput) -> Result<(), KinesisError> {
        self.change(|c, now| c.split_shard(input, now)).await
    }

    async fn merge_shards(&self, input: MergeShardsInput) -> Result<(), KinesisError> {
        self.change(|c, now| c.merge_shards(input, now)).await
    }

    async fn update_shard_count(
        &self,
        input: UpdateShardCountInput,
    ) -> Result<UpdateShardCountOutput, KinesisError> {
        self.change(|c, now| c.update_shard_count(input, now)).await
    }

    async fn update_stream_mode(&self, input: UpdateStreamModeInput) -> Result<(), KinesisError> {
        self.change(|c, now| c.update_stream_mode(input, now)).await
    }

    async fn describe_limits(&self) -> Result<DescribeLimitsOutput, KinesisError> {
        Ok(self.query(|c, now| c.describe_limits(now)))
    }

    async fn enable_enhanced_monitoring(
        &self,
        stream_name: String,
        shard_level_metrics: Vec<String>,
    ) -> Result<EnhancedMonitoringOutput, KinesisError> {
        self.change(|c, now| c.enable_enhanced_monitoring(&stream_name, &shard_level_metrics, now))
            .await
    }

    async fn disable_enhanced_monitoring(
        &self,
        stream_name: String,
        shard_level_metrics: Vec<String>,
    ) -> Result<EnhancedMonitoringOutput, KinesisError> {
        self.change(|c, now| c.disable_enhanced_monitoring(&stream_name, &shard_level_metrics, now))
            .await
    }

    async fn update_max_record_size(
        &self,
        stream_name: String,
        max_record_size_kib: u32,
    ) -> Result<(), KinesisError> {
        self.change(|c, now| c.update_max_record_size(&stream_name, max_record_size_kib, now))
            .await
    }

    async fn start_stream_encryption(
        &self,
        input: StreamEncryptionInput,
    ) -> Result<(), KinesisError> {
        self.change(|c, now| c.start_stream_encryption(input, now))
            .await
    }

    async fn stop_stream_encryption(
        &self,
        input: StreamEncryptionInput,
    ) -> Result<(), KinesisError> {
        self.change(|c, now| c.stop_stream_encryption(input, now))
            .await
    }

    async fn update_stream_warm_throughput(
        &self,
        stream_name: String,
        warm_throughput_mibps: u32,
    ) -> Result<UpdateStreamWarmThroughputOutput, KinesisError> {
        self.change(|c, now| {
            c.update_stream_warm_throughput(&stream_name, warm_throughput_mibps, now)
        })
        .await
    }

    async fn describe_account_settings(
        &self,
    ) -> Result<Option<MinimumThroughputBillingCommitment>, KinesisError> {
        Ok(self.query(|c, now| c.describe_account_settings(now)))
    }

    async fn update_account_settings(
        &self,
        enable: bool,
    ) -> Result<Option<MinimumThroughputBillingCommitment>, KinesisError> {
        self.change(|c, now| Ok(c.update_account_settings(enable, now)))
            .await
    }

    async fn register_stream_consumer(
        &self,
        input: RegisterStreamConsumerInput,
    ) -> Result<ConsumerDescription, KinesisError> {
        self.change(|c, now| c.register_stream_consumer(input, now))
            .await
    }

    async fn deregister_stream_consumer(&self, consumer: ConsumerRef) -> Result<(), KinesisError> {
        self.change(|c, now| c.deregister_stream_consumer(&consumer, now))
            .await
    }

    async fn describe_stream_consumer(
        &self,
        consumer: ConsumerRef,
    ) -> Result<ConsumerDescription, KinesisError> {
        self.query(|c, now| c.describe_stream_consumer(&consumer, now))
    }

    async fn list_stream_consumers(
        &self,
        input: ListStreamConsumersInput,
    ) -> Result<ListStreamConsumersOutput, KinesisError> {
        self.query(|c, now| c.list_stream_consumers(input, now))
    }

    async fn put_resource_policy(
        &self,
        resource_arn: String,
        policy: String,
    ) -> Result<(), KinesisError> {
        self.change(|c, now| c.put_resource_policy(&resource_arn, policy, now))
            .await
    }

    async fn get_resource_policy(&self, resource_arn: String) -> Result<String, KinesisError> {
        self.query(|c, now| c.get_resource_policy(&resource_arn, now))
    }

    async fn delete_resource_policy(&self, resource_arn: String) -> Result<(), KinesisError> {
        self.change(|c, now| c.delete_resource_policy(&resource_arn, now))
            .await
    }

    async fn resource_policy(&self, resource_arn: String) -> Option<String> {
        self.query(|c, now| c.resource_policy(&resource_arn, now).map(str::to_owned))
    }

    async fn tag_resource(&self, resource_arn: String, tags: Vec<Tag>) -> Result<(), KinesisError> {
        self.change(|c, now| c.tag_resource(&resource_arn, tags, now))
            .await
    }

    async fn untag_resource(
        &self,
        resource_arn: String,
        tag_keys: Vec<String>,
    ) -> Result<(), KinesisError> {
        self.change(|c, now| c.untag_resource(&resource_arn, tag_keys, now))
            .await
    }

    async fn list_tags_for_resource(&self, resource_arn: String) -> Result<Vec<Tag>, KinesisError> {
        self.query(|c, now| c.list_tags_for_resource(&resource_arn, now))
    }

    fn count_subscribe(&self, stream_name: &str) {
        crate::metrics::record_subscribe(stream_name);
    }

    fn count_subscribe_event(
        &self,
        shard: &sluice_core::storage::ShardAddress,
        records: &dyn RecordBatch,
        millis_behind_latest: u64,
    ) {
        crate::metrics::record_subscribe_event(
            &shard.stream_name,
            shard.shard_index,
            records,
            millis_behind_latest,
            now_ms(),
        );
    }
}
