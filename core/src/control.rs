//! The control-plane operations beyond create/delete/describe: stream modes, DescribeLimits,
//! enhanced monitoring, the per-stream record size, encryption settings, warm throughput and the
//! account settings; plus [`StreamControl`], the per-stream state these and resharding, consumers
//! and resource policies persist.
//!
//! Invariants:
//! - `StreamControl` and `AccountSettings` are `#[serde(default)]` as a whole, so catalog files
//!   written before they existed still load, with every new setting at its default.
//! - `StreamControl::encryption_key_id` is `Some` exactly when the stream is KMS-encrypted; storage
//!   encrypts what it writes while it is set (the catalog only records the setting).
//! - `Stream::shard_level_metrics` holds metric names in [`SHARD_LEVEL_METRICS`] order, without
//!   duplicates and never `ALL` (which is expanded).

use serde::{Deserialize, Serialize};

use crate::api::{EncryptionType, StreamMode};
use crate::catalog::{Catalog, Lifecycle, Stream, StreamModeRepr, validation_error};
use crate::consumer::{Consumer, ConsumerLifecycle};
use crate::error::{ErrorKind, KinesisError};
use crate::reshard::PendingReshard;

/// OnDemandStreamCountLimit when the operator sets none (AWS's default).
pub const ON_DEMAND_STREAM_COUNT_LIMIT_DEFAULT: u32 = 50;
/// UpdateMaxRecordSize / CreateStream MaxRecordSizeInKiB bounds.
pub const MAX_RECORD_SIZE_KIB_MIN: u32 = 1024;
pub const MAX_RECORD_SIZE_KIB_MAX: u32 = 10_240;
/// A minimum-throughput billing commitment cannot end before it has run this long `[verify]`.
pub const BILLING_COMMITMENT_MIN_MS: u64 = 24 * 3_600_000;

/// The shard-level metric names of the model, in the order the catalog keeps them.
pub const SHARD_LEVEL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

/// Per-stream control-plane state that came after the first catalog format.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamControl {
    /// A split, merge or scaling accepted but not yet completed by storage (see `reshard`).
    pub pending_reshard: Option<PendingReshard>,
    /// When UpdateShardCount was accepted, for its rolling 24-hour limit (oldest first).
    pub scaling_history_ms: Vec<u64>,
    /// The KMS key id while the stream is encrypted.
    pub encryption_key_id: Option<String>,
    /// Enhanced fan-out consumers, in registration order; gone ones linger until pruned.
    pub consumers: Vec<Consumer>,
    /// The resource policy document, as the client sent it.
    pub resource_policy: Option<String>,
    /// UpdateStreamWarmThroughput / UpdateStreamMode WarmThroughputMiBps.
    pub warm_throughput_mibps: Option<u32>,
}

impl StreamControl {
    pub fn encryption_type(&self) -> EncryptionType {
        match self.encryption_key_id {
            Some(_) => EncryptionType::Kms,
            None => EncryptionType::None,
        }
    }

    /// Consumers registered and not being deregistered: what DescribeStreamSummary counts and
    /// what keeps DeleteStream from going ahead without EnforceConsumerDeletion.
    pub fn consumer_count(&self, now_ms: u64) -> u32 {
        let count = self
            .consumers
            .iter()
            .filter(|consumer| !matches!(consumer.lifecycle, ConsumerLifecycle::Deleting { .. }))
            .filter(|consumer| !consumer.is_gone(now_ms))
            .count();
        u32::try_from(count).expect("a stream has fewer than 2^32 consumers")
    }

    /// Starts deregistering every consumer, each gone by `gone_at_ms` at the latest.
    pub fn deregister_all_consumers(&mut self, now_ms: u64, gone_at_ms: u64) {
        self.consumers.retain(|consumer| !consumer.is_gone(now_ms));
        for consumer in &mut self.consumers {
            match consumer.lifecycle {
                ConsumerLifecycle::Deleting {
                    gone_at_ms: earlier,
                } if earlier <= gone_at_ms => {}
                _ => consumer.lifecycle = ConsumerLifecycle::Deleting { gone_at_ms },
            }
        }
    }
}

/// `MinimumThroughputBillingCommitment.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BillingCommitmentStatus {
    Enabled,
    Disabled,
    EnabledUntilEarliestAllowedEnd,
}

impl BillingCommitmentStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "ENABLED",
            Self::Disabled => "DISABLED",
            Self::EnabledUntilEarliestAllowedEnd => "ENABLED_UNTIL_EARLIEST_ALLOWED_END",
        }
    }
}

/// `MinimumThroughputBillingCommitment` as DescribeAccountSettings returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinimumThroughputBillingCommitment {
    pub status: BillingCommitmentStatus,
    pub started_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub earliest_allowed_end_at_ms: Option<u64>,
}

/// Account-wide settings (DescribeAccountSettings / UpdateAccountSettings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountSettings {
    pub minimum_throughput_billing_commitment: Option<MinimumThroughputBillingCommitment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateStreamModeInput {
    pub stream_name: String,
    pub stream_mode: StreamMode,
    pub warm_throughput_mibps: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeLimitsOutput {
    pub shard_limit: u32,
    pub open_shard_count: u64,
    pub on_demand_stream_count: u32,
    pub on_demand_stream_count_limit: u32,
}

/// The answer of Enable- and DisableEnhancedMonitoring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnhancedMonitoringOutput {
    pub stream_name: String,
    pub stream_arn: String,
    pub current_shard_level_metrics: Vec<String>,
    pub desired_shard_level_metrics: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEncryptionInput {
    pub stream_name: String,
    pub encryption_type: EncryptionType,
    pub key_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmThroughput {
    pub target_mibps: Option<u32>,
    pub current_mibps: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateStreamWarmThroughputOutput {
    pub stream_name: String,
    pub stream_arn: String,
    pub warm_throughput: WarmThroughput,
}

impl Stream {
    /// The largest PartitionKey-plus-Data size a write to this stream may carry.
    pub fn max_record_bytes(&self) -> usize {
        usize::try_from(self.max_record_size_kib).expect("u32 fits usize") * 1024
    }

    /// WarmThroughput for DescribeStreamSummary: the appliance has no capacity to warm, so the
    /// current value is the target as soon as it is set.
    pub fn warm_throughput(&self) -> Option<WarmThroughput> {
        self.control
            .warm_throughput_mibps
            .map(|mibps| WarmThroughput {
                target_mibps: Some(mibps),
                current_mibps: Some(mibps),
            })
    }
}

/// Which encryption call is being made: the two share their checks and differ in the change.
#[derive(Clone, Copy, Debug)]
enum EncryptionChange {
    Start,
    Stop,
}

/// Puts `stream` in UPDATING for the configured window (ACTIVE at once with a zero window).
pub(crate) fn enter_updating(stream: &mut Stream, update_delay_ms: u64, now_ms: u64) {
    stream.lifecycle = match update_delay_ms {
        0 => Lifecycle::Active,
        delay_ms => Lifecycle::Updating {
            active_at_ms: now_ms.saturating_add(delay_ms),
        },
    };
}

impl Catalog {
    fn on_demand_stream_count(&self, now_ms: u64) -> u32 {
        let count = self
            .streams
            .values()
            .filter(|stream| !stream.is_gone(now_ms) && stream.mode == StreamModeRepr::OnDemand)
            .count();
        u32::try_from(count).expect("fewer than 2^32 streams")
    }

    /// UpdateStreamMode: switches PROVISIONED ↔ ON_DEMAND through an UPDATING window. The shards
    /// stay as they are; asking for the current mode changes nothing.
    pub fn update_stream_mode(
        &mut self,
        input: UpdateStreamModeInput,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let to_on_demand = input.stream_mode == StreamMode::OnDemand;
        let on_demand_count = self.on_demand_stream_count(now_ms);
        let account = self.config.account_id.clone();
        let region = self.config.region.clone();
        let delay_ms = self.config.update_delay_ms;
        let stream = self.found_active_mut(&input.stream_name, now_ms)?;
        if stream.stream_mode() == input.stream_mode {
            return Ok(());
        }
        if to_on_demand && on_demand_count >= ON_DEMAND_STREAM_COUNT_LIMIT_DEFAULT {
            return Err(KinesisError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "This request would exceed the on-demand stream limit for the account {account} in {region}. Current on-demand stream count for the account: {on_demand_count}. Limit: {ON_DEMAND_STREAM_COUNT_LIMIT_DEFAULT}."
                ),
            ));
        }
        stream.mode = if to_on_demand {
            StreamModeRepr::OnDemand
        } else {
            StreamModeRepr::Provisioned
        };
        if let Some(mibps) = input.warm_throughput_mibps {
            stream.control.warm_throughput_mibps = Some(mibps);
        }
        enter_updating(stream, delay_ms, now_ms);
        Ok(())
    }

    pub fn describe_limits(&self, now_ms: u64) -> DescribeLimitsOutput {
        DescribeLimitsOutput {
            shard_limit: self.config.shard_limit,
            open_shard_count: self.account_open_shard_count(now_ms),
            on_demand_stream_count: self.on_demand_stream_count(now_ms),
            on_demand_stream_count_limit: ON_DEMAND_STREAM_COUNT_LIMIT_DEFAULT,
        }
    }

    /// EnableEnhancedMonitoring: adds `metrics` (names of the model, `ALL` for every one) to the
    /// stream's shard-level metrics. Needs an ACTIVE stream.
    pub fn enable_enhanced_monitoring(
        &mut self,
        stream_name: &str,
        metrics: &[String],
        now_ms: u64,
    ) -> Result<EnhancedMonitoringOutput, KinesisError> {
        self.change_enhanced_monitoring(stream_name, metrics, true, now_ms)
    }

    /// DisableEnhancedMonitoring: removes `metrics` (`ALL` removes every one).
    pub fn disable_enhanced_monitoring(
        &mut self,
        stream_name: &str,
        metrics: &[String],
        now_ms: u64,
    ) -> Result<EnhancedMonitoringOutput, KinesisError> {
        self.change_enhanced_monitoring(stream_name, metrics, false, now_ms)
    }

    fn change_enhanced_monitoring(
        &mut self,
        stream_name: &str,
        metrics: &[String],
        enable: bool,
        now_ms: u64,
    ) -> Result<EnhancedMonitoringOutput, KinesisError> {
        if let Some(unknown) = metrics
            .iter()
            .find(|m| *m != "ALL" && !SHARD_LEVEL_METRICS.contains(&m.as_str()))
        {
            return Err(validation_error(format!(
                "Value '[{unknown}]' at 'shardLevelMetrics' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [IncomingBytes, OutgoingRecords, IteratorAgeMilliseconds, IncomingRecords, ReadProvisionedThroughputExceeded, WriteProvisionedThroughputExceeded, OutgoingBytes, ALL]]"
            )));
        }
        let arn = self.stream_arn(stream_name);
        let stream = self.found_active_mut(stream_name, now_ms)?;
        let current = stream.shard_level_metrics.clone();
        let all = metrics.iter().any(|m| m == "ALL");
        let named = |name: &str| all || metrics.iter().any(|m| m == name);
        let desired: Vec<String> = SHARD_LEVEL_METRICS
            .iter()
            .filter(|name| {
                let on = current.iter().any(|c| c == *name);
                if enable {
                    on || named(name)
                } else {
                    on && !named(name)
                }
            })
            .map(|name| (*name).to_owned())
            .collect();
        stream.shard_level_metrics = desired.clone();
        Ok(EnhancedMonitoringOutput {
            stream_name: stream_name.to_owned(),
            stream_arn: arn,
            current_shard_level_metrics: current,
            desired_shard_level_metrics: desired,
        })
    }

    pub(crate) fn stream_arn(&self, stream_name: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{stream_name}",
            self.config.region, self.config.account_id
        )
    }

    /// UpdateMaxRecordSize: 1024..=10240 KiB, on an ACTIVE stream; writes check it through
    /// [`Stream::max_record_bytes`].
    pub fn update_max_record_size(
        &mut self,
        stream_name: &str,
        max_record_size_kib: u32,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        if max_record_size_kib < MAX_RECORD_SIZE_KIB_MIN {
            return Err(validation_error(format!(
                "Value '{max_record_size_kib}' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value greater than or equal to {MAX_RECORD_SIZE_KIB_MIN}"
            )));
        }
        if max_record_size_kib > MAX_RECORD_SIZE_KIB_MAX {
            return Err(validation_error(format!(
                "Value '{max_record_size_kib}' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value less than or equal to {MAX_RECORD_SIZE_KIB_MAX}"
            )));
        }
        let stream = self.found_active_mut(stream_name, now_ms)?;
        stream.max_record_size_kib = max_record_size_kib;
        Ok(())
    }

    /// StartStreamEncryption: records KMS encryption with `key_id` and puts the stream through
    /// UPDATING. A stream already encrypted moves to the new key.
    pub fn start_stream_encryption(
        &mut self,
        input: StreamEncryptionInput,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        self.change_stream_encryption(EncryptionChange::Start, input, now_ms)
    }

    /// StopStreamEncryption: ends encryption for new records (those already written stay
    /// encrypted) and puts the stream through UPDATING. Stopping an unencrypted stream changes
    /// nothing.
    pub fn stop_stream_encryption(
        &mut self,
        input: StreamEncryptionInput,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        self.change_stream_encryption(EncryptionChange::Stop, input, now_ms)
    }

    /// Starts or stops encryption after the checks both calls share, in AWS's order: KMS is the
    /// only encryption type (IA otherwise), then RNF when missing and RIU unless ACTIVE.
    fn change_stream_encryption(
        &mut self,
        change: EncryptionChange,
        input: StreamEncryptionInput,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        if input.encryption_type != EncryptionType::Kms {
            let operation = match change {
                EncryptionChange::Start => "StartStreamEncryption",
                EncryptionChange::Stop => "StopStreamEncryption",
            };
            return Err(KinesisError::invalid_argument(format!(
                "Encryption type {} is not supported by {operation}. Use KMS.",
                input.encryption_type.as_str()
            )));
        }
        let delay_ms = self.config.update_delay_ms;
        let stream = self.found_active_mut(&input.stream_name, now_ms)?;
        let changed = match change {
            EncryptionChange::Start => {
                stream.control.encryption_key_id = Some(input.key_id);
                true
            }
            EncryptionChange::Stop => stream.control.encryption_key_id.take().is_some(),
        };
        if changed {
            enter_updating(stream, delay_ms, now_ms);
        }
        Ok(())
    }

    /// UpdateStreamWarmThroughput: stores the target and reports it as reached.
    pub fn update_stream_warm_throughput(
        &mut self,
        stream_name: &str,
        warm_throughput_mibps: u32,
        now_ms: u64,
    ) -> Result<UpdateStreamWarmThroughputOutput, KinesisError> {
        let arn = self.stream_arn(stream_name);
        let stream = self.found_active_mut(stream_name, now_ms)?;
        stream.control.warm_throughput_mibps = Some(warm_throughput_mibps);
        Ok(UpdateStreamWarmThroughputOutput {
            stream_name: stream_name.to_owned(),
            stream_arn: arn,
            warm_throughput: WarmThroughput {
                target_mibps: Some(warm_throughput_mibps),
                current_mibps: Some(warm_throughput_mibps),
            },
        })
    }

    /// DescribeAccountSettings: the commitment as of `now_ms` (one ending at its earliest
    /// allowed end reads DISABLED once that time has passed).
    pub fn describe_account_settings(
        &self,
        now_ms: u64,
    ) -> Option<MinimumThroughputBillingCommitment> {
        let mut commitment = self.account.minimum_throughput_billing_commitment.clone()?;
        if commitment.status == BillingCommitmentStatus::EnabledUntilEarliestAllowedEnd
            && commitment
                .earliest_allowed_end_at_ms
                .is_some_and(|end| now_ms >= end)
        {
            commitment.status = BillingCommitmentStatus::Disabled;
        }
        Some(commitment)
    }

    /// UpdateAccountSettings: `enable` starts a commitment (or keeps the running one); disabling
    /// ends it at once when it has run its minimum, else at its earliest allowed end.
    pub fn update_account_settings(
        &mut self,
        enable: bool,
        now_ms: u64,
    ) -> Option<MinimumThroughputBillingCommitment> {
        let current = self.describe_account_settings(now_ms);
        let running = current
            .as_ref()
            .filter(|c| c.status != BillingCommitmentStatus::Disabled);
        let next = match (enable, running) {
            (true, Some(running)) => MinimumThroughputBillingCommitment {
                status: BillingCommitmentStatus::Enabled,
                ended_at_ms: None,
                ..running.clone()
            },
            (true, None) => MinimumThroughputBillingCommitment {
                status: BillingCommitmentStatus::Enabled,
                started_at_ms: Some(now_ms),
                ended_at_ms: None,
                earliest_allowed_end_at_ms: Some(now_ms.saturating_add(BILLING_COMMITMENT_MIN_MS)),
            },
            (false, Some(running)) => {
                let earliest = running.earliest_allowed_end_at_ms.unwrap_or(now_ms);
                if now_ms >= earliest {
                    MinimumThroughputBillingCommitment {
                        status: BillingCommitmentStatus::Disabled,
                        ended_at_ms: Some(now_ms),
                        ..running.clone()
                    }
                } else {
                    MinimumThroughputBillingCommitment {
                        status: BillingCommitmentStatus::EnabledUntilEarliestAllowedEnd,
                        ended_at_ms: Some(earliest),
                        ..running.clone()
                    }
                }
            }
            (false, None) => current.unwrap_or(MinimumThroughputBillingCommitment {
                status: BillingCommitmentStatus::Disabled,
                started_at_ms: None,
                ended_at_ms: None,
                earliest_allowed_end_at_ms: None,
            }),
        };
        self.account.minimum_throughput_billing_commitment = Some(next);
        self.describe_account_settings(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CreateStreamInput, DescribeStreamInput, StreamStatus};
    use crate::catalog::CatalogConfig;

    const T0: u64 = 1_700_000_000_000;
    const ACCOUNT: &str = "000000000000";

    fn active_catalog() -> (Catalog, u64) {
        let mut catalog = Catalog::new(CatalogConfig {
            shard_limit: 20,
            ..CatalogConfig::default()
        });
        let input = CreateStreamInput {
            stream_name: "s".into(),
            shard_count: Some(2),
            stream_mode: None,
            tags: Vec::new(),
        };
        catalog
            .create_stream(input, T0, &mut |i| i)
            .expect("created");
        (catalog, T0 + 1_000)
    }

    fn status(catalog: &Catalog, now_ms: u64) -> StreamStatus {
        catalog.streams["s"].status(now_ms)
    }

    fn names(metrics: &[&str]) -> Vec<String> {
        metrics.iter().map(|m| (*m).to_owned()).collect()
    }

    #[test]
    fn update_stream_mode_switches_modes_through_an_updating_window() {
        let (mut catalog, now) = active_catalog();
        let input = |mode| UpdateStreamModeInput {
            stream_name: "s".into(),
            stream_mode: mode,
            warm_throughput_mibps: Some(8),
        };
        catalog
            .update_stream_mode(input(StreamMode::OnDemand), now)
            .expect("switched");
        assert_eq!(catalog.streams["s"].stream_mode(), StreamMode::OnDemand);
        assert_eq!(catalog.streams["s"].control.warm_throughput_mibps, Some(8));
        assert_eq!(status(&catalog, now + 1), StreamStatus::Updating);
        assert_eq!(
            catalog.update_stream_mode(input(StreamMode::Provisioned), now + 1),
            Err(KinesisError::stream_not_active("s", ACCOUNT, "UPDATING"))
        );
        assert_eq!(status(&catalog, now + 500), StreamStatus::Active);
        assert_eq!(catalog.describe_limits(now + 500).on_demand_stream_count, 1);
        catalog
            .update_stream_mode(input(StreamMode::Provisioned), now + 500)
            .expect("back");
        assert_eq!(catalog.streams["s"].stream_mode(), StreamMode::Provisioned);
        assert_eq!(
            catalog.update_stream_mode(input(StreamMode::Provisioned), now),
            Err(KinesisError::stream_not_active("s", ACCOUNT, "UPDATING"))
        );
        assert_eq!(
            catalog
                .update_stream_mode(input(StreamMode::OnDemand), now + 2_000)
                .map(|_| ()),
            Ok(())
        );
        let mut missing = input(StreamMode::OnDemand);
        missing.stream_name = "x".into();
        assert_eq!(
            catalog.update_stream_mode(missing, now),
            Err(KinesisError::stream_not_found("x", ACCOUNT))
        );
    }

    #[test]
    fn update_stream_mode_to_the_current_mode_changes_nothing() {
        let (mut catalog, now) = active_catalog();
        let input = UpdateStreamModeInput {
            stream_name: "s".into(),
            stream_mode: StreamMode::Provisioned,
            warm_throughput_mibps: None,
        };
        catalog.update_stream_mode(input, now).expect("no-op");
        assert_eq!(status(&catalog, now), StreamStatus::Active);
    }

    #[test]
    fn describe_limits_counts_open_shards_and_on_demand_streams() {
        let (mut catalog, now) = active_catalog();
        let on_demand = CreateStreamInput {
            stream_name: "od".into(),
            shard_count: None,
            stream_mode: Some(StreamMode::OnDemand),
            tags: Vec::new(),
        };
        catalog
            .create_stream(on_demand, now, &mut |i| i)
            .expect("created");
        assert_eq!(
            catalog.describe_limits(now),
            DescribeLimitsOutput {
                shard_limit: 20,
                open_shard_count: 6,
                on_demand_stream_count: 1,
                on_demand_stream_count_limit: ON_DEMAND_STREAM_COUNT_LIMIT_DEFAULT,
            }
        );
    }

    #[test]
    fn enhanced_monitoring_reports_current_and_desired_metrics_and_expands_all() {
        let (mut catalog, now) = active_catalog();
        let out = catalog
            .enable_enhanced_monitoring("s", &names(&["OutgoingBytes", "IncomingBytes"]), now)
            .expect("enabled");
        assert!(out.current_shard_level_metrics.is_empty());
        assert_eq!(
            out.desired_shard_level_metrics,
            names(&["IncomingBytes", "OutgoingBytes"])
        );
        assert_eq!(
            out.stream_arn,
            "arn:aws:kinesis:us-east-1:000000000000:stream/s"
        );
        let out = catalog
            .enable_enhanced_monitoring("s", &names(&["ALL"]), now)
            .expect("all");
        assert_eq!(
            out.current_shard_level_metrics,
            names(&["IncomingBytes", "OutgoingBytes"])
        );
        assert_eq!(out.desired_shard_level_metrics, names(&SHARD_LEVEL_METRICS));
        let out = catalog
            .disable_enhanced_monitoring("s", &names(&["IncomingBytes"]), now)
            .expect("disabled");
        assert_eq!(out.desired_shard_level_metrics.len(), 6);
        let description = catalog
            .describe_stream(
                DescribeStreamInput {
                    stream_name: "s".into(),
                    limit: None,
                    exclusive_start_shard_id: None,
                },
                now,
            )
            .expect("described");
        assert_eq!(
            description.shard_level_metrics,
            out.desired_shard_level_metrics
        );
        let out = catalog
            .disable_enhanced_monitoring("s", &names(&["ALL"]), now)
            .expect("none");
        assert!(out.desired_shard_level_metrics.is_empty());
        let bad = catalog.enable_enhanced_monitoring("s", &names(&["Bogus"]), now);
        assert_eq!(bad.map_err(|e| e.kind), Err(ErrorKind::Validation));
    }

    #[test]
    fn update_max_record_size_accepts_only_1024_to_10240_kib() {
        let (mut catalog, now) = active_catalog();
        assert_eq!(catalog.streams["s"].max_record_bytes(), 1024 * 1024);
        catalog
            .update_max_record_size("s", 10_240, now)
            .expect("largest");
        assert_eq!(catalog.streams["s"].max_record_bytes(), 10 * 1024 * 1024);
        assert_eq!(
            catalog.update_max_record_size("s", 1023, now).map_err(|e| e.message),
            Err("1 validation error detected: Value '1023' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value greater than or equal to 1024".into())
        );
        assert_eq!(
            catalog
                .update_max_record_size("s", 10_241, now)
                .map_err(|e| e.kind),
            Err(ErrorKind::Validation)
        );
    }

    #[test]
    fn stream_encryption_is_reported_and_goes_through_updating() {
        let (mut catalog, now) = active_catalog();
        let input = |kind| StreamEncryptionInput {
            stream_name: "s".into(),
            encryption_type: kind,
            key_id: "alias/aws/kinesis".into(),
        };
        assert_eq!(
            catalog
                .start_stream_encryption(input(EncryptionType::None), now)
                .map_err(|e| e.kind),
            Err(ErrorKind::InvalidArgument)
        );
        catalog
            .start_stream_encryption(input(EncryptionType::Kms), now)
            .expect("started");
        assert_eq!(status(&catalog, now + 1), StreamStatus::Updating);
        let summary = catalog
            .describe_stream_summary("s", now + 1)
            .expect("summary");
        assert_eq!(summary.encryption_type, EncryptionType::Kms);
        assert_eq!(summary.key_id.as_deref(), Some("alias/aws/kinesis"));
        assert_eq!(
            catalog.stop_stream_encryption(input(EncryptionType::Kms), now + 1),
            Err(KinesisError::stream_not_active("s", ACCOUNT, "UPDATING"))
        );
        catalog
            .stop_stream_encryption(input(EncryptionType::Kms), now + 500)
            .expect("stopped");
        let summary = catalog
            .describe_stream_summary("s", now + 1_000)
            .expect("summary");
        assert_eq!(
            (summary.encryption_type, summary.key_id),
            (EncryptionType::None, None)
        );
    }

    #[test]
    fn warm_throughput_is_stored_and_reported_as_reached() {
        let (mut catalog, now) = active_catalog();
        let out = catalog
            .update_stream_warm_throughput("s", 100, now)
            .expect("updated");
        let expected = WarmThroughput {
            target_mibps: Some(100),
            current_mibps: Some(100),
        };
        assert_eq!(out.warm_throughput, expected);
        assert_eq!(catalog.streams["s"].warm_throughput(), Some(expected));
    }

    #[test]
    fn a_billing_commitment_runs_at_least_its_minimum_before_it_ends() {
        let (mut catalog, now) = active_catalog();
        assert_eq!(catalog.describe_account_settings(now), None);
        let on = catalog.update_account_settings(true, now).expect("enabled");
        assert_eq!(on.status, BillingCommitmentStatus::Enabled);
        assert_eq!(on.started_at_ms, Some(now));
        let earliest = now + BILLING_COMMITMENT_MIN_MS;
        assert_eq!(on.earliest_allowed_end_at_ms, Some(earliest));
        let ending = catalog
            .update_account_settings(false, now + 1)
            .expect("ending");
        assert_eq!(
            ending.status,
            BillingCommitmentStatus::EnabledUntilEarliestAllowedEnd
        );
        assert_eq!(ending.ended_at_ms, Some(earliest));
        let ended = catalog.describe_account_settings(earliest).expect("ended");
        assert_eq!(ended.status, BillingCommitmentStatus::Disabled);
        let again = catalog
            .update_account_settings(true, earliest + 5)
            .expect("restarted");
        assert_eq!(again.started_at_ms, Some(earliest + 5));
        let off = catalog.update_account_settings(false, earliest + 5 + BILLING_COMMITMENT_MIN_MS);
        assert_eq!(
            off.map(|c| c.status),
            Some(BillingCommitmentStatus::Disabled)
        );
    }
}
