//! The Firehose control plane and DirectPut data plane on the JSON 1.1 wire
//! (`X-Amz-Target: Firehose_20150804.<Operation>`, SigV4 signing name `firehose`).
//!
//! Runs on the shard cores' HTTP front ends. Control-plane calls are serialised by the
//! registry's control lock and persisted before they are answered. A PutRecord or
//! PutRecordBatch is answered only after its records were appended, through the storage face,
//! to the delivery stream's internal stream and that append was acknowledged (after the
//! engine's group commit under `durability = "fsync"`), so an acknowledged record survives a
//! crash; its RecordId is the record's sequence number in that stream.

mod cbor;
mod describe;
mod s3_config;
mod validate;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sluice_core::api::{CreateStreamInput, DeleteStreamInput, KinesisApi};
use sluice_core::storage::{AppendError, NewRecord, RecordLog, ShardAddress};
use sluice_protocols::sigv4::{self, AuthConfig, AuthMode};
use sluice_protocols::{HttpRequest, HttpResponse};

use crate::error::{ErrorKind, FirehoseError};
use crate::model::{
    self, DESTINATION_ID, Definition, Encryption, KinesisSource, Status, StreamType,
};
use crate::registry::Registry;
use crate::wire;

use describe::{description, destination_description};
pub(crate) use describe::{processing_description, s3_description};
pub(crate) use s3_config::{merge_s3, s3_destination};
use validate::{check_encryption, check_name, check_tags, decode_data, kinesis_stream_name};
pub(crate) use validate::{check_length, check_range};

/// The `X-Amz-Target` prefix of Firehose.
pub const TARGET_PREFIX: &str = "Firehose_20150804";
/// The SigV4 signing name of Firehose.
pub const SIGNING_NAME: &str = "firehose";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// AWS's per-call limits.
pub const RECORD_BYTES_MAX: usize = 1_024_000;
pub const BATCH_RECORDS_MAX: usize = 500;
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
pub const TAGS_MAX: usize = 50;
/// AWS's default quota of delivery streams per region.
pub const DELIVERY_STREAMS_MAX: usize = 5000;
/// The partition key of records in an internal stream (the shard is chosen directly).
const INTERNAL_PARTITION_KEY: &str = sluice_core::internal_stream::FIREHOSE_PARTITION_KEY;

/// Whether `target` names a Firehose operation.
pub fn is_firehose_target(target: Option<&str>) -> bool {
    target.is_some_and(|t| t.split_once('.').is_some_and(|(s, _)| s == TARGET_PREFIX))
}

/// The Firehose service as one shard core's front end holds it.
#[derive(Clone, Debug)]
pub struct Firehose<R> {
    registry: Arc<Registry>,
    storage: R,
}

fn now_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<R: RecordLog> Firehose<R> {
    pub fn new(registry: Arc<Registry>, storage: R) -> Self {
        Self { registry, storage }
    }

    /// Answers one Firehose request.
    pub async fn handle<A: KinesisApi>(
        &self,
        api: &A,
        req: HttpRequest<'_>,
        auth: &AuthConfig,
        now: SystemTime,
    ) -> HttpResponse {
        let request_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let is_cbor = req
            .content_type
            .is_some_and(|t| t.eq_ignore_ascii_case(cbor::CONTENT_TYPE));
        // A CBOR body is checked as the JSON document it maps to (`cbor.rs`); its signature is
        // still verified over the bytes that were sent.
        let converted = if is_cbor && !req.body.is_empty() {
            cbor::to_json(req.body).map(|json| json.to_string().into_bytes())
        } else {
            Ok(req.body.to_vec())
        };
        let result = match converted {
            Ok(json_body) => self.dispatch(api, &req, &json_body, auth, now).await,
            Err(message) => Err(FirehoseError::new(ErrorKind::Serialization, message)),
        };
        let (status, body) = match result {
            Ok(body) if is_cbor => (200, cbor::from_json(&body)),
            Ok(body) => (200, body.to_string().into_bytes()),
            Err(error) => {
                if error.kind == ErrorKind::InternalFailure {
                    tracing::warn!(message = %error.message, "A Firehose call failed.");
                }
                let (status, body) = error.body();
                if is_cbor {
                    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    (status, cbor::from_json(&json))
                } else {
                    (status, body)
                }
            }
        };
        let content_type = if is_cbor {
            cbor::CONTENT_TYPE
        } else {
            CONTENT_TYPE
        };
        HttpResponse {
            status,
            headers: vec![
                ("x-amzn-RequestId", request_id),
                ("Content-Type", content_type.to_owned()),
            ],
            body,
        }
    }

    async fn dispatch<A: KinesisApi>(
        &self,
        api: &A,
        req: &HttpRequest<'_>,
        json_body: &[u8],
        auth: &AuthConfig,
        now: SystemTime,
    ) -> Result<Value, FirehoseError> {
        let operation = req
            .target
            .and_then(|t| t.split_once('.'))
            .map_or("", |(_, op)| op);
        if req.method != "POST" {
            return Err(FirehoseError::new(
                ErrorKind::UnknownOperation,
                "Only POST is served.",
            ));
        }
        if !req.has_auth {
            return Err(FirehoseError::new(
                ErrorKind::MissingAuthenticationToken,
                "Missing Authentication Token",
            ));
        }
        if let AuthMode::Verify { credentials } = &auth.mode
            && let Err(error) = sigv4::verify(req, credentials, SIGNING_NAME, api.region(), now)
        {
            let kind = match error.type_name {
                "MissingAuthenticationTokenException" => ErrorKind::MissingAuthenticationToken,
                "IncompleteSignatureException" => ErrorKind::IncompleteSignature,
                "UnrecognizedClientException" => ErrorKind::UnrecognizedClient,
                _ => ErrorKind::InvalidSignature,
            };
            return Err(FirehoseError::new(kind, error.message));
        }
        let body: &[u8] = if json_body.is_empty() {
            b"{}"
        } else {
            json_body
        };
        let now_ms = now_ms(now);
        macro_rules! decode {
            () => {
                serde_json::from_slice(body)
                    .map_err(|e| FirehoseError::new(ErrorKind::Serialization, e.to_string()))?
            };
        }
        if matches!(operation, "CreateDeliveryStream" | "UpdateDestination") {
            let raw: Value = decode!();
            let unsupported = if operation == "CreateDeliveryStream" {
                &wire::UNSUPPORTED_DESTINATIONS[..]
            } else {
                &wire::UNSUPPORTED_UPDATES[..]
            };
            if let Some(member) = unsupported.iter().find(|m| raw.get(**m).is_some()) {
                return Err(FirehoseError::invalid(format!(
                    "{member} is not supported by this appliance: it delivers to S3-compatible storage only."
                )));
            }
        }
        match operation {
            "CreateDeliveryStream" => self.create(api, decode!(), now_ms).await,
            "DeleteDeliveryStream" => self.delete(api, decode!()).await,
            "DescribeDeliveryStream" => self.describe(api, decode!()),
            "ListDeliveryStreams" => self.list(decode!()),
            "UpdateDestination" => self.update(api, decode!(), now_ms).await,
            "PutRecord" => self.put_record(api, decode!()).await,
            "PutRecordBatch" => self.put_record_batch(api, decode!()).await,
            "TagDeliveryStream" => self.tag(api, decode!()).await,
            "UntagDeliveryStream" => self.untag(api, decode!()).await,
            "ListTagsForDeliveryStream" => self.list_tags(api, decode!()),
            "StartDeliveryStreamEncryption" => self.start_encryption(api, decode!(), now_ms).await,
            "StopDeliveryStreamEncryption" => self.stop_encryption(api, decode!(), now_ms).await,
            _ => Err(FirehoseError::new(ErrorKind::UnknownOperation, "")),
        }
    }

    fn existing<A: KinesisApi>(
        &self,
        api: &A,
        name: &str,
    ) -> Result<model::DeliveryStream, FirehoseError> {
        self.registry
            .get(name)
            .ok_or_else(|| FirehoseError::not_found(name, api.account_id()))
    }

    async fn save(&self, definition: Definition) -> Result<(), FirehoseError> {
        self.registry
            .store
            .save(&definition)
            .await
            .map_err(|e| FirehoseError::internal(e.to_string()))?;
        self.registry.install(definition);
        Ok(())
    }

    async fn create<A: KinesisApi>(
        &self,
        api: &A,
        input: wire::CreateDeliveryStream,
        now_ms: u64,
    ) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        let stream_type = match input.delivery_stream_type.as_deref() {
            None | Some("DirectPut") => StreamType::DirectPut,
            Some("KinesisStreamAsSource") => StreamType::KinesisStreamAsSource,
            Some(other @ ("MSKAsSource" | "DatabaseAsSource")) => {
                return Err(FirehoseError::invalid(format!(
                    "DeliveryStreamType {other} is not supported by this appliance."
                )));
            }
            Some(other) => {
                return Err(FirehoseError::validation(
                    other,
                    "deliveryStreamType",
                    "Member must satisfy enum value set: [DatabaseAsSource, DirectPut, KinesisStreamAsSource, MSKAsSource]",
                ));
            }
        };
        if input.msk_source_configuration.is_some() {
            return Err(FirehoseError::invalid(
                "MSKSourceConfiguration is not supported by this appliance.",
            ));
        }
        let kinesis_source = match (stream_type, input.kinesis_stream_source_configuration) {
            (StreamType::DirectPut, Some(_)) => {
                return Err(FirehoseError::invalid(
                    "KinesisStreamSourceConfiguration is only allowed with DeliveryStreamType KinesisStreamAsSource.",
                ));
            }
            (StreamType::DirectPut, None) => None,
            (StreamType::KinesisStreamAsSource, None) => {
                return Err(FirehoseError::invalid(
                    "KinesisStreamSourceConfiguration is required when DeliveryStreamType is KinesisStreamAsSource.",
                ));
            }
            (StreamType::KinesisStreamAsSource, Some(source)) => {
                let stream_arn = source.kinesis_stream_arn.ok_or_else(|| {
                    FirehoseError::missing("kinesisStreamSourceConfiguration.kinesisStreamARN")
                })?;
                let role_arn = source.role_arn.ok_or_else(|| {
                    FirehoseError::missing("kinesisStreamSourceConfiguration.roleARN")
                })?;
                Some(KinesisSource {
                    stream_arn,
                    role_arn,
                })
            }
        };
        if stream_type == StreamType::KinesisStreamAsSource && input.encryption.is_some() {
            return Err(FirehoseError::invalid(
                "DeliveryStreamEncryptionConfigurationInput is not allowed with DeliveryStreamType KinesisStreamAsSource.",
            ));
        }
        let encryption = match input.encryption {
            None => Encryption::default(),
            Some(e) => check_encryption(e, "deliveryStreamEncryptionConfigurationInput")?,
        };
        let given = [
            input.s3.is_some(),
            input.extended_s3.is_some(),
            input.http_endpoint.is_some(),
            input.redshift.is_some(),
            input.opensearch.is_some(),
            input.elasticsearch.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given > 1 {
            return Err(FirehoseError::invalid(
                "Only one destination configuration is allowed.",
            ));
        }
        let mut redshift = None;
        let mut opensearch = None;
        let (destination, http_endpoint) = match (input.s3, input.extended_s3, input.http_endpoint)
        {
            (Some(s3), _, _) => (
                s3_destination(s3, false, "s3DestinationConfiguration")?,
                None,
            ),
            (_, Some(s3), _) => (
                s3_destination(s3, true, "extendedS3DestinationConfiguration")?,
                None,
            ),
            (_, _, Some(http)) => {
                let (endpoint, backup) = crate::http_endpoint::create(http)?;
                (backup, Some(endpoint))
            }
            (None, None, None) if input.redshift.is_some() => {
                let (load, staging) =
                    crate::redshift::create(input.redshift.as_ref().unwrap_or(&Value::Null))?;
                redshift = Some(load);
                (staging, None)
            }
            (None, None, None) if input.opensearch.is_some() || input.elasticsearch.is_some() => {
                let (config, flavor) = match (&input.opensearch, &input.elasticsearch) {
                    (Some(config), _) => {
                        (config, crate::opensearch::Flavor::AmazonOpenSearchService)
                    }
                    (None, Some(config)) => (config, crate::opensearch::Flavor::Elasticsearch),
                    (None, None) => (
                        &Value::Null,
                        crate::opensearch::Flavor::AmazonOpenSearchService,
                    ),
                };
                let (index, backup) = crate::opensearch::create(config, flavor)?;
                opensearch = Some(index);
                (backup, None)
            }
            (None, None, None) => {
                return Err(FirehoseError::invalid(
                    "Exactly one destination configuration is required: this appliance delivers to ExtendedS3DestinationConfiguration, S3DestinationConfiguration or HttpEndpointDestinationConfiguration.",
                ));
            }
        };
        let tags = check_tags(input.tags.unwrap_or_default(), "tags")?;

        let _control = self.registry.control.lock().await;
        if self.registry.get(&name).is_some() {
            return Err(FirehoseError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Firehose {name} under accountId {} already exists",
                    api.account_id()
                ),
            ));
        }
        if self.registry.len() >= DELIVERY_STREAMS_MAX {
            return Err(FirehoseError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "You have already consumed your firehose quota of {DELIVERY_STREAMS_MAX} hoses. Firehose names: ..."
                ),
            ));
        }
        let source_stream = match &kinesis_source {
            None => {
                let internal = model::internal_stream_name(&name);
                create_internal_stream(api, &internal).await?;
                internal
            }
            Some(source) => {
                let stream = kinesis_stream_name(&source.stream_arn, api)?;
                let summary = api.describe_stream_summary(stream.clone()).await;
                if summary.is_err() {
                    return Err(FirehoseError::invalid(format!(
                        "Kinesis stream {} does not exist.",
                        source.stream_arn
                    )));
                }
                stream
            }
        };
        let definition = Definition {
            arn: format!(
                "arn:aws:firehose:{}:{}:deliverystream/{name}",
                api.region(),
                api.account_id()
            ),
            name,
            stream_type,
            version_id: 1,
            create_ms: now_ms,
            last_update_ms: None,
            destination,
            encryption,
            tags,
            source_stream,
            kinesis_source,
            http_endpoint,
            redshift,
            opensearch,
        };
        let arn = definition.arn.clone();
        self.save(definition).await?;
        Ok(json!({ "DeliveryStreamARN": arn }))
    }

    async fn delete<A: KinesisApi>(
        &self,
        api: &A,
        input: wire::Named,
    ) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        let _control = self.registry.control.lock().await;
        let stream = self.existing(api, &name)?;
        // The internal stream goes first: a crash after it leaves a definition whose delete can
        // be repeated, never a stream of old records that a new delivery stream of the same
        // name would deliver.
        if stream.definition.kinesis_source.is_none() {
            match api
                .delete_stream(DeleteStreamInput {
                    stream_name: stream.definition.source_stream.clone(),
                    enforce_consumer_deletion: true,
                })
                .await
            {
                Ok(()) => {}
                Err(e) if e.kind == sluice_core::ErrorKind::ResourceNotFound => {}
                Err(e) => return Err(FirehoseError::internal(e.message)),
            }
        }
        self.registry
            .store
            .remove(&name)
            .await
            .map_err(|e| FirehoseError::internal(e.to_string()))?;
        self.registry.remove(&name);
        Ok(json!({}))
    }

    fn describe<A: KinesisApi>(&self, api: &A, input: wire::Named) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        if let Some(limit) = input.limit {
            check_range(limit, 1, 10_000, "limit")?;
        }
        if let Some(start) = &input.exclusive_start_destination_id {
            check_length(start, 1, 100, "exclusiveStartDestinationId")?;
        }
        let stream = self.existing(api, &name)?;
        let destinations =
            if input.exclusive_start_destination_id.as_deref() == Some(DESTINATION_ID) {
                Vec::new()
            } else {
                vec![destination_description(&stream.definition)]
            };
        let failure = self.registry.delivery_error(&name);
        Ok(json!({ "DeliveryStreamDescription": description(
            &stream.definition,
            stream.status,
            destinations,
            failure.as_ref(),
        ) }))
    }

    fn list(&self, input: wire::ListDeliveryStreams) -> Result<Value, FirehoseError> {
        let limit = match input.limit {
            None => 10,
            Some(limit) => check_range(limit, 1, 10_000, "limit")? as usize,
        };
        let wanted = match input.delivery_stream_type.as_deref() {
            None => None,
            Some("DirectPut") => Some(StreamType::DirectPut),
            Some("KinesisStreamAsSource") => Some(StreamType::KinesisStreamAsSource),
            // Types this appliance cannot create list nothing.
            Some("MSKAsSource" | "DatabaseAsSource") => {
                return Ok(json!({ "DeliveryStreamNames": [], "HasMoreDeliveryStreams": false }));
            }
            Some(other) => {
                return Err(FirehoseError::validation(
                    other,
                    "deliveryStreamType",
                    "Member must satisfy enum value set: [DatabaseAsSource, DirectPut, KinesisStreamAsSource, MSKAsSource]",
                ));
            }
        };
        if let Some(start) = &input.exclusive_start_delivery_stream_name {
            check_name(Some(start), "exclusiveStartDeliveryStreamName")?;
        }
        let matching: Vec<String> = self
            .registry
            .snapshot()
            .into_iter()
            .filter(|s| wanted.is_none_or(|t| s.definition.stream_type == t))
            .map(|s| s.definition.name)
            .filter(|n| {
                input
                    .exclusive_start_delivery_stream_name
                    .as_ref()
                    .is_none_or(|start| n > start)
            })
            .collect();
        let has_more = matching.len() > limit;
        let names: Vec<String> = matching.into_iter().take(limit).collect();
        Ok(json!({ "DeliveryStreamNames": names, "HasMoreDeliveryStreams": has_more }))
    }

    async fn update<A: KinesisApi>(
        &self,
        api: &A,
        input: wire::UpdateDestination,
        now_ms: u64,
    ) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        let version = input
            .current_version_id
            .ok_or_else(|| FirehoseError::missing("currentDeliveryStreamVersionId"))?;
        check_length(&version, 1, 50, "currentDeliveryStreamVersionId")?;
        if !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FirehoseError::validation(
                &version,
                "currentDeliveryStreamVersionId",
                "Member must satisfy regular expression pattern: [0-9]+",
            ));
        }
        let destination_id = input
            .destination_id
            .ok_or_else(|| FirehoseError::missing("destinationId"))?;
        check_length(&destination_id, 1, 100, "destinationId")?;
        let _control = self.registry.control.lock().await;
        let stream = self.existing(api, &name)?;
        let mut definition = stream.definition;
        if stream.status != Status::Active {
            return Err(FirehoseError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Firehose {name} is not in the ACTIVE state: it is {}.",
                    stream.status.as_str()
                ),
            ));
        }
        if version.parse::<u64>().ok() != Some(definition.version_id) {
            return Err(FirehoseError::new(
                ErrorKind::ConcurrentModification,
                format!(
                    "Cannot update firehose: {name} since the current version id: {} and specified version id: {version} do not match",
                    definition.version_id
                ),
            ));
        }
        if destination_id != DESTINATION_ID {
            return Err(FirehoseError::invalid(format!(
                "Destination Id {destination_id} not found"
            )));
        }
        if let Some(update) = &input.redshift {
            let Some(current) = &definition.redshift else {
                return Err(FirehoseError::invalid(
                    "Changing the destination type of a delivery stream is not supported by this appliance.",
                ));
            };
            let (load, staging) =
                crate::redshift::update(current, &definition.destination, update)?;
            definition.redshift = Some(load);
            definition.destination = staging;
        } else if let Some(update) = input.opensearch.as_ref().or(input.elasticsearch.as_ref()) {
            let Some(current) = &definition.opensearch else {
                return Err(FirehoseError::invalid(
                    "Changing the destination type of a delivery stream is not supported by this appliance.",
                ));
            };
            let (index, backup) =
                crate::opensearch::update(current, &definition.destination, update)?;
            definition.opensearch = Some(index);
            definition.destination = backup;
        } else if definition.redshift.is_some() || definition.opensearch.is_some() {
            return Err(FirehoseError::invalid(
                "This delivery stream takes only the update of its own destination type.",
            ));
        } else {
            match (
                &definition.http_endpoint,
                input.s3,
                input.extended_s3,
                input.http_endpoint,
            ) {
                (Some(current), None, None, Some(update)) => {
                    let (endpoint, backup) =
                        crate::http_endpoint::update(current, &definition.destination, update)?;
                    definition.http_endpoint = Some(endpoint);
                    definition.destination = backup;
                }
                (None, Some(update), None, None) => {
                    let extended = definition.destination.extended;
                    definition.destination = merge_s3(
                        &definition.destination,
                        update,
                        extended,
                        "s3DestinationUpdate",
                        false,
                    )?;
                }
                (None, None, Some(update), None) => {
                    definition.destination = merge_s3(
                        &definition.destination,
                        update,
                        true,
                        "extendedS3DestinationUpdate",
                        false,
                    )?;
                }
                (_, None, None, None) => {
                    return Err(FirehoseError::invalid(
                        "Exactly one destination update is required.",
                    ));
                }
                _ => {
                    return Err(FirehoseError::invalid(
                        "Changing the destination type of a delivery stream, or giving more than one destination update, is not supported by this appliance.",
                    ));
                }
            }
        }
        definition.version_id += 1;
        definition.last_update_ms = Some(now_ms);
        self.save(definition).await?;
        Ok(json!({}))
    }

    async fn put_record<A: KinesisApi>(
        &self,
        api: &A,
        input: wire::PutRecord,
    ) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        let record = input
            .record
            .ok_or_else(|| FirehoseError::missing("record"))?;
        let data = decode_data(record.data, "record.data")?;
        let stream = self.writable(api, &name)?;
        let bytes = data.len();
        let appended = self.append(&stream.definition, vec![data]).await?;
        self.registry.metrics(&name).incoming(1, bytes);
        Ok(json!({
            "RecordId": appended[0],
            "Encrypted": stream.definition.encryption.enabled,
        }))
    }

    async fn put_record_batch<A: KinesisApi>(
        &self,
        api: &A,
        input: wire::PutRecordBatch,
    ) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        let records = input
            .records
            .ok_or_else(|| FirehoseError::missing("records"))?;
        if records.is_empty() {
            return Err(FirehoseError::validation(
                "[]",
                "records",
                "Member must have length greater than or equal to 1",
            ));
        }
        if records.len() > BATCH_RECORDS_MAX {
            return Err(FirehoseError::validation(
                "[...]",
                "records",
                "Member must have length less than or equal to 500",
            ));
        }
        let mut data = Vec::with_capacity(records.len());
        for (i, record) in records.into_iter().enumerate() {
            data.push(decode_data(
                record.data,
                &format!("records.{}.member.data", i + 1),
            )?);
        }
        let total: usize = data.iter().map(Vec::len).sum();
        if total > BATCH_BYTES_MAX {
            return Err(FirehoseError::invalid(format!(
                "Records size exceeds {BATCH_BYTES_MAX} bytes limit: {total} bytes."
            )));
        }
        let stream = self.writable(api, &name)?;
        let count = data.len();
        let encrypted = stream.definition.encryption.enabled;
        let responses: Vec<Value> = match self.append(&stream.definition, data).await {
            Ok(ids) => {
                self.registry.metrics(&name).incoming(ids.len(), total);
                ids.into_iter()
                    .map(|id| json!({ "RecordId": id }))
                    .collect()
            }
            // One append carries the whole batch: it is stored whole or not at all, so on a
            // failure every entry failed and the client retries them all.
            Err(error) => {
                let (code, _) = crate::error::error_shape(error.kind);
                let code = if error.kind == ErrorKind::ServiceUnavailable {
                    code
                } else {
                    "InternalFailure"
                };
                (0..count)
                    .map(|_| json!({ "ErrorCode": code, "ErrorMessage": error.message }))
                    .collect()
            }
        };
        let failed = responses
            .iter()
            .filter(|r| r.get("ErrorCode").is_some())
            .count();
        Ok(json!({
            "FailedPutCount": failed,
            "Encrypted": encrypted,
            "RequestResponses": responses,
        }))
    }

    fn writable<A: KinesisApi>(
        &self,
        api: &A,
        name: &str,
    ) -> Result<model::DeliveryStream, FirehoseError> {
        let stream = self.existing(api, name)?;
        if stream.definition.stream_type == StreamType::KinesisStreamAsSource {
            return Err(FirehoseError::invalid(
                "This operation is not permitted on KinesisStreamAsSource delivery stream type.",
            ));
        }
        if stream.status != Status::Active {
            return Err(FirehoseError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "Firehose {name} under account {} is not ACTIVE: it is {}.",
                    api.account_id(),
                    stream.status.as_str()
                ),
            ));
        }
        Ok(stream)
    }

    /// Appends `records` to the internal stream in one durable append; their RecordIds.
    async fn append(
        &self,
        definition: &Definition,
        records: Vec<Vec<u8>>,
    ) -> Result<Vec<String>, FirehoseError> {
        let shard = ShardAddress::new(definition.source_stream.clone(), 0);
        let records = records
            .into_iter()
            .map(|data| NewRecord {
                partition_key: INTERNAL_PARTITION_KEY.to_owned(),
                data,
            })
            .collect();
        match self.storage.append(&shard, records).await {
            Ok(appended) => Ok(appended
                .positions
                .clone()
                .map(|p| appended.sequence_number(p).to_string())
                .collect()),
            Err(AppendError::Throttled { .. } | AppendError::Unavailable) => Err(
                FirehoseError::new(ErrorKind::ServiceUnavailable, "Slow down."),
            ),
            Err(error) => Err(FirehoseError::internal(error.to_string())),
        }
    }

    async fn tag<A: KinesisApi>(
        &self,
        api: &A,
        input: wire::Named,
    ) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        let tags = input.tags.ok_or_else(|| FirehoseError::missing("tags"))?;
        if tags.is_empty() {
            return Err(FirehoseError::validation(
                "[]",
                "tags",
                "Member must have length greater than or equal to 1",
            ));
        }
        let tags = check_tags(tags, "tags")?;
        let _control = self.registry.control.lock().await;
        let mut definition = self.existing(api, &name)?.definition;
        let mut merged = definition.tags.clone();
        merged.extend(tags);
        if merged.len() > TAGS_MAX {
            return Err(FirehoseError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Firehose {name} under account {} would have more than {TAGS_MAX} tags.",
                    api.account_id()
                ),
            ));
        }
        definition.tags = merged;
        self.save(definition).await?;
        Ok(json!({}))
    }

    async fn untag<A: KinesisApi>(
        &self,
        api: &A,
        input: wire::Named,
    ) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        let keys = input
            .tag_keys
            .ok_or_else(|| FirehoseError::missing("tagKeys"))?;
        if keys.is_empty() || keys.len() > TAGS_MAX {
            return Err(FirehoseError::validation(
                "[...]",
                "tagKeys",
                "Member must have length between 1 and 50",
            ));
        }
        for key in &keys {
            check_length(key, 1, 128, "tagKeys.member")?;
        }
        let _control = self.registry.control.lock().await;
        let mut definition = self.existing(api, &name)?.definition;
        for key in &keys {
            definition.tags.remove(key);
        }
        self.save(definition).await?;
        Ok(json!({}))
    }

    fn list_tags<A: KinesisApi>(
        &self,
        api: &A,
        input: wire::Named,
    ) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        let limit = match input.limit {
            None => TAGS_MAX,
            Some(limit) => check_range(limit, 1, 50, "limit")? as usize,
        };
        if let Some(start) = &input.exclusive_start_tag_key {
            check_length(start, 1, 128, "exclusiveStartTagKey")?;
        }
        let definition = self.existing(api, &name)?.definition;
        let after: Vec<(&String, &String)> = definition
            .tags
            .iter()
            .filter(|(k, _)| {
                input
                    .exclusive_start_tag_key
                    .as_ref()
                    .is_none_or(|s| *k > s)
            })
            .collect();
        let has_more = after.len() > limit;
        let tags: Vec<Value> = after
            .into_iter()
            .take(limit)
            .map(|(k, v)| json!({ "Key": k, "Value": v }))
            .collect();
        Ok(json!({ "Tags": tags, "HasMoreTags": has_more }))
    }

    async fn start_encryption<A: KinesisApi>(
        &self,
        api: &A,
        input: wire::Named,
        now_ms: u64,
    ) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        let encryption = match input.encryption {
            None => Encryption {
                enabled: true,
                key_type: Some("AWS_OWNED_CMK".to_owned()),
                key_arn: None,
            },
            Some(e) => check_encryption(e, "deliveryStreamEncryptionConfigurationInput")?,
        };
        let _control = self.registry.control.lock().await;
        let stream = self.existing(api, &name)?;
        self.encryption_allowed(&stream, &name)?;
        let mut definition = stream.definition;
        definition.encryption = encryption;
        definition.last_update_ms = Some(now_ms);
        self.save(definition).await?;
        Ok(json!({}))
    }

    async fn stop_encryption<A: KinesisApi>(
        &self,
        api: &A,
        input: wire::Named,
        now_ms: u64,
    ) -> Result<Value, FirehoseError> {
        let name = check_name(input.delivery_stream_name.as_deref(), "deliveryStreamName")?;
        let _control = self.registry.control.lock().await;
        let stream = self.existing(api, &name)?;
        self.encryption_allowed(&stream, &name)?;
        let mut definition = stream.definition;
        definition.encryption = Encryption::default();
        definition.last_update_ms = Some(now_ms);
        self.save(definition).await?;
        Ok(json!({}))
    }

    fn encryption_allowed(
        &self,
        stream: &model::DeliveryStream,
        name: &str,
    ) -> Result<(), FirehoseError> {
        if stream.definition.stream_type == StreamType::KinesisStreamAsSource {
            return Err(FirehoseError::invalid(format!(
                "Server-side encryption is not supported for delivery stream {name} of type KinesisStreamAsSource: encrypt the source stream instead."
            )));
        }
        if stream.status != Status::Active {
            return Err(FirehoseError::new(
                ErrorKind::ResourceInUse,
                format!("Firehose {name} is not in the ACTIVE state."),
            ));
        }
        Ok(())
    }
}

/// Creates the internal stream of a DirectPut delivery stream. One that exists already can only
/// be left by a crash between this step and the definition's save (a delete removes the stream
/// before the definition), so it holds no records and is taken over.
async fn create_internal_stream<A: KinesisApi>(
    api: &A,
    stream_name: &str,
) -> Result<(), FirehoseError> {
    match api
        .create_stream(CreateStreamInput {
            stream_name: stream_name.to_owned(),
            shard_count: Some(1),
            stream_mode: None,
            tags: Vec::new(),
        })
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind == sluice_core::ErrorKind::ResourceInUse => {
            let summary = api
                .describe_stream_summary(stream_name.to_owned())
                .await
                .map_err(|e| FirehoseError::internal(e.message))?;
            if summary.stream_status == sluice_core::api::StreamStatus::Deleting {
                return Err(FirehoseError::new(
                    ErrorKind::ResourceInUse,
                    "A delivery stream of this name is still being deleted; try again shortly.",
                ));
            }
            Ok(())
        }
        Err(e) if e.kind == sluice_core::ErrorKind::LimitExceeded => {
            Err(FirehoseError::new(ErrorKind::LimitExceeded, e.message))
        }
        Err(e) => Err(FirehoseError::internal(e.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Compression;

    #[test]
    fn delivery_stream_names_follow_the_model_pattern_and_length() {
        assert!(check_name(Some("a.b_c-1"), "deliveryStreamName").is_ok());
        let error = check_name(Some("bad name"), "deliveryStreamName").expect_err("refused");
        assert_eq!(error.kind, ErrorKind::Validation);
        assert!(
            error.message.contains("[a-zA-Z0-9_.-]+"),
            "{}",
            error.message
        );
        assert!(check_name(Some(&"x".repeat(65)), "deliveryStreamName").is_err());
        assert!(check_name(Some(""), "deliveryStreamName").is_err());
        assert_eq!(
            check_name(None, "deliveryStreamName")
                .expect_err("missing")
                .kind,
            ErrorKind::Validation
        );
    }

    #[test]
    fn buffering_hints_outside_aws_ranges_are_refused_and_interval_zero_is_allowed() {
        let config = |size: i64, interval: i64| wire::S3Configuration {
            role_arn: Some("arn:aws:iam::000000000000:role/r".into()),
            bucket_arn: Some("arn:aws:s3:::b".into()),
            buffering_hints: Some(wire::BufferingHints {
                size_in_mbs: Some(size),
                interval_in_seconds: Some(interval),
            }),
            ..Default::default()
        };
        let ok = s3_destination(config(1, 0), true, "extendedS3DestinationConfiguration")
            .expect("valid");
        assert_eq!((ok.buffer_size_mib, ok.buffer_interval_s), (1, 0));
        let too_big = s3_destination(config(129, 60), true, "extendedS3DestinationConfiguration")
            .expect_err("refused");
        assert_eq!(
            too_big.message,
            "1 validation error detected: Value '129' at 'extendedS3DestinationConfiguration.bufferingHints.sizeInMBs' failed to satisfy constraint: Member must have value less than or equal to 128"
        );
        assert!(s3_destination(config(0, 60), true, "x").is_err());
        assert!(s3_destination(config(5, 901), true, "x").is_err());
        assert!(s3_destination(config(5, -1), true, "x").is_err());
    }

    #[test]
    fn defaults_are_five_mebibytes_and_three_hundred_seconds_uncompressed() {
        let d = s3_destination(
            wire::S3Configuration {
                role_arn: Some("r".into()),
                bucket_arn: Some("arn:aws:s3:::b".into()),
                ..Default::default()
            },
            false,
            "s3DestinationConfiguration",
        )
        .expect("valid");
        assert_eq!(d.buffer_size_mib, 5);
        assert_eq!(d.buffer_interval_s, 300);
        assert_eq!(d.compression, Compression::Uncompressed);
        assert_eq!(d.bucket(), "b");
    }

    #[test]
    fn firehose_targets_are_recognised_by_their_prefix() {
        assert!(is_firehose_target(Some("Firehose_20150804.PutRecord")));
        assert!(!is_firehose_target(Some("Kinesis_20131202.PutRecord")));
        assert!(!is_firehose_target(None));
    }
}
