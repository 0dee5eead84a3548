//! Response encoding for every control-plane operation (streams, shards, tags, resharding,
//! settings, limits, consumers, resource policies, tags by ARN), in both JSON 1.1 and CBOR 1.1.
//!
//! These answers are small and rare, so unlike the data-plane writers in `encode` and
//! `encode_cbor` (PutRecord(s), GetShardIterator, GetRecords) each shape is first built as a
//! [`Doc`] tree and then written by one of two generic writers. One tree for both protocols keeps their member names and order identical by
//! construction. As everywhere, optional members are left out rather than sent as `null`,
//! timestamps are epoch seconds with a fraction in JSON and tag 1 + epoch milliseconds in CBOR.

use sluice_core::HashRange;
use sluice_core::api::{
    ConsumerDescription, DescribeLimitsOutput, EnhancedMonitoringOutput, ListShardsOutput,
    ListStreamConsumersOutput, ListStreamsOutput, ListTagsForStreamOutput,
    MinimumThroughputBillingCommitment, ShardDescription, StreamDescription,
    StreamDescriptionSummary, StreamMode, Tag, UpdateShardCountOutput,
    UpdateStreamWarmThroughputOutput, WarmThroughput,
};

use crate::cbor;
use crate::json::writer;

/// A response document.
#[derive(Clone, Debug, PartialEq)]
pub enum Doc {
    Str(String),
    Bool(bool),
    U64(u64),
    TimestampMs(u64),
    List(Vec<Doc>),
    /// Members in output order; `None` values are left out.
    Map(Vec<(&'static str, Option<Doc>)>),
}

impl Doc {
    fn str(s: &str) -> Self {
        Self::Str(s.to_owned())
    }

    fn strings(items: &[String]) -> Self {
        Self::List(items.iter().map(|s| Self::str(s)).collect())
    }
}

pub fn to_json(doc: &Doc) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_json(&mut out, doc);
    out
}

fn write_json(out: &mut Vec<u8>, doc: &Doc) {
    match doc {
        Doc::Str(s) => writer::write_str(out, s),
        Doc::Bool(b) => writer::write_bool(out, *b),
        Doc::U64(n) => writer::write_u64(out, *n),
        Doc::TimestampMs(ms) => writer::write_timestamp_ms(out, *ms),
        Doc::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item);
            }
            out.push(b']');
        }
        Doc::Map(members) => {
            out.push(b'{');
            let mut first = true;
            for (key, value) in members {
                let Some(value) = value else { continue };
                if !first {
                    out.push(b',');
                }
                first = false;
                writer::write_key(out, key);
                write_json(out, value);
            }
            out.push(b'}');
        }
    }
}

pub fn to_cbor(doc: &Doc) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_cbor(&mut out, doc);
    out
}

fn write_cbor(out: &mut Vec<u8>, doc: &Doc) {
    match doc {
        Doc::Str(s) => cbor::write_text(out, s),
        Doc::Bool(b) => cbor::write_bool(out, *b),
        Doc::U64(n) => cbor::write_u64(out, *n),
        Doc::TimestampMs(ms) => cbor::write_timestamp_ms(out, *ms),
        Doc::List(items) => {
            cbor::write_array_header(out, items.len());
            for item in items {
                write_cbor(out, item);
            }
        }
        Doc::Map(members) => {
            cbor::write_map_start(out);
            for (key, value) in members {
                let Some(value) = value else { continue };
                cbor::write_text(out, key);
                write_cbor(out, value);
            }
            cbor::write_break(out);
        }
    }
}

pub fn update_shard_count(o: &UpdateShardCountOutput) -> Doc {
    Doc::Map(vec![
        ("StreamName", Some(Doc::str(&o.stream_name))),
        (
            "CurrentShardCount",
            Some(Doc::U64(u64::from(o.current_shard_count))),
        ),
        (
            "TargetShardCount",
            Some(Doc::U64(u64::from(o.target_shard_count))),
        ),
        ("StreamARN", Some(Doc::str(&o.stream_arn))),
    ])
}

pub fn describe_limits(o: &DescribeLimitsOutput) -> Doc {
    Doc::Map(vec![
        ("ShardLimit", Some(Doc::U64(u64::from(o.shard_limit)))),
        ("OpenShardCount", Some(Doc::U64(o.open_shard_count))),
        (
            "OnDemandStreamCount",
            Some(Doc::U64(u64::from(o.on_demand_stream_count))),
        ),
        (
            "OnDemandStreamCountLimit",
            Some(Doc::U64(u64::from(o.on_demand_stream_count_limit))),
        ),
    ])
}

pub fn enhanced_monitoring(o: &EnhancedMonitoringOutput) -> Doc {
    Doc::Map(vec![
        ("StreamName", Some(Doc::str(&o.stream_name))),
        (
            "CurrentShardLevelMetrics",
            Some(Doc::strings(&o.current_shard_level_metrics)),
        ),
        (
            "DesiredShardLevelMetrics",
            Some(Doc::strings(&o.desired_shard_level_metrics)),
        ),
        ("StreamARN", Some(Doc::str(&o.stream_arn))),
    ])
}

fn warm_throughput(w: WarmThroughput) -> Doc {
    Doc::Map(vec![
        (
            "TargetMiBps",
            w.target_mibps.map(|n| Doc::U64(u64::from(n))),
        ),
        (
            "CurrentMiBps",
            w.current_mibps.map(|n| Doc::U64(u64::from(n))),
        ),
    ])
}

pub fn update_stream_warm_throughput(o: &UpdateStreamWarmThroughputOutput) -> Doc {
    Doc::Map(vec![
        ("StreamARN", Some(Doc::str(&o.stream_arn))),
        ("StreamName", Some(Doc::str(&o.stream_name))),
        ("WarmThroughput", Some(warm_throughput(o.warm_throughput))),
    ])
}

/// DescribeAccountSettings and UpdateAccountSettings.
pub fn account_settings(commitment: Option<&MinimumThroughputBillingCommitment>) -> Doc {
    Doc::Map(vec![(
        "MinimumThroughputBillingCommitment",
        commitment.map(|c| {
            Doc::Map(vec![
                ("Status", Some(Doc::str(c.status.as_str()))),
                ("StartedAt", c.started_at_ms.map(Doc::TimestampMs)),
                ("EndedAt", c.ended_at_ms.map(Doc::TimestampMs)),
                (
                    "EarliestAllowedEndAt",
                    c.earliest_allowed_end_at_ms.map(Doc::TimestampMs),
                ),
            ])
        }),
    )])
}

/// The model's `Consumer` shape, or `ConsumerDescription` (which adds StreamARN).
fn consumer(c: &ConsumerDescription, with_stream_arn: bool) -> Doc {
    Doc::Map(vec![
        ("ConsumerName", Some(Doc::str(&c.consumer_name))),
        ("ConsumerARN", Some(Doc::str(&c.consumer_arn))),
        ("ConsumerStatus", Some(Doc::str(c.consumer_status.as_str()))),
        (
            "ConsumerCreationTimestamp",
            Some(Doc::TimestampMs(c.consumer_creation_timestamp_ms)),
        ),
        (
            "StreamARN",
            with_stream_arn.then(|| Doc::str(&c.stream_arn)),
        ),
    ])
}

pub fn register_stream_consumer(c: &ConsumerDescription) -> Doc {
    Doc::Map(vec![("Consumer", Some(consumer(c, false)))])
}

pub fn describe_stream_consumer(c: &ConsumerDescription) -> Doc {
    Doc::Map(vec![("ConsumerDescription", Some(consumer(c, true)))])
}

pub fn list_stream_consumers(o: &ListStreamConsumersOutput) -> Doc {
    Doc::Map(vec![
        (
            "Consumers",
            Some(Doc::List(
                o.consumers.iter().map(|c| consumer(c, false)).collect(),
            )),
        ),
        ("NextToken", o.next_token.as_deref().map(Doc::str)),
    ])
}

pub fn get_resource_policy(policy: &str) -> Doc {
    Doc::Map(vec![("Policy", Some(Doc::str(policy)))])
}

fn tags(tags: &[Tag]) -> Doc {
    Doc::List(
        tags.iter()
            .map(|t| {
                Doc::Map(vec![
                    ("Key", Some(Doc::str(&t.key))),
                    ("Value", Some(Doc::str(&t.value))),
                ])
            })
            .collect(),
    )
}

pub fn list_tags_for_resource(resource_tags: &[Tag]) -> Doc {
    Doc::Map(vec![("Tags", Some(tags(resource_tags)))])
}

pub fn list_tags_for_stream(o: &ListTagsForStreamOutput) -> Doc {
    Doc::Map(vec![
        ("Tags", Some(tags(&o.tags))),
        ("HasMoreTags", Some(Doc::Bool(o.has_more_tags))),
    ])
}

pub fn hash_key_range(range: HashRange) -> Doc {
    Doc::Map(vec![
        (
            "StartingHashKey",
            Some(Doc::Str(range.starting.to_string())),
        ),
        ("EndingHashKey", Some(Doc::Str(range.ending.to_string()))),
    ])
}

fn stream_mode_details(mode: StreamMode) -> Doc {
    Doc::Map(vec![("StreamMode", Some(Doc::str(mode.as_str())))])
}

/// `EnhancedMonitoring`: a one-element list holding the enabled shard-level metrics.
fn enhanced_monitoring_list(metrics: &[String]) -> Doc {
    Doc::List(vec![Doc::Map(vec![(
        "ShardLevelMetrics",
        Some(Doc::strings(metrics)),
    )])])
}

fn shard(s: &ShardDescription) -> Doc {
    Doc::Map(vec![
        ("ShardId", Some(Doc::str(&s.shard_id))),
        ("ParentShardId", s.parent_shard_id.as_deref().map(Doc::str)),
        (
            "AdjacentParentShardId",
            s.adjacent_parent_shard_id.as_deref().map(Doc::str),
        ),
        ("HashKeyRange", Some(hash_key_range(s.hash_key_range))),
        (
            "SequenceNumberRange",
            Some(Doc::Map(vec![
                (
                    "StartingSequenceNumber",
                    Some(Doc::str(&s.starting_sequence_number)),
                ),
                (
                    "EndingSequenceNumber",
                    s.ending_sequence_number.as_deref().map(Doc::str),
                ),
            ])),
        ),
    ])
}

fn shards(list: &[ShardDescription]) -> Doc {
    Doc::List(list.iter().map(shard).collect())
}

pub fn describe_stream(d: &StreamDescription) -> Doc {
    Doc::Map(vec![(
        "StreamDescription",
        Some(Doc::Map(vec![
            ("StreamName", Some(Doc::str(&d.stream_name))),
            ("StreamARN", Some(Doc::str(&d.stream_arn))),
            ("StreamStatus", Some(Doc::str(d.stream_status.as_str()))),
            (
                "StreamModeDetails",
                Some(stream_mode_details(d.stream_mode)),
            ),
            ("Shards", Some(shards(&d.shards))),
            ("HasMoreShards", Some(Doc::Bool(d.has_more_shards))),
            (
                "RetentionPeriodHours",
                Some(Doc::U64(u64::from(d.retention_period_hours))),
            ),
            (
                "StreamCreationTimestamp",
                Some(Doc::TimestampMs(d.stream_creation_timestamp_ms)),
            ),
            (
                "EnhancedMonitoring",
                Some(enhanced_monitoring_list(&d.shard_level_metrics)),
            ),
            ("EncryptionType", Some(Doc::str(d.encryption_type.as_str()))),
            ("KeyId", d.key_id.as_deref().map(Doc::str)),
        ])),
    )])
}

pub fn describe_stream_summary(d: &StreamDescriptionSummary) -> Doc {
    Doc::Map(vec![(
        "StreamDescriptionSummary",
        Some(Doc::Map(vec![
            ("StreamName", Some(Doc::str(&d.stream_name))),
            ("StreamARN", Some(Doc::str(&d.stream_arn))),
            ("StreamStatus", Some(Doc::str(d.stream_status.as_str()))),
            (
                "StreamModeDetails",
                Some(stream_mode_details(d.stream_mode)),
            ),
            (
                "RetentionPeriodHours",
                Some(Doc::U64(u64::from(d.retention_period_hours))),
            ),
            (
                "StreamCreationTimestamp",
                Some(Doc::TimestampMs(d.stream_creation_timestamp_ms)),
            ),
            (
                "EnhancedMonitoring",
                Some(enhanced_monitoring_list(&d.shard_level_metrics)),
            ),
            ("EncryptionType", Some(Doc::str(d.encryption_type.as_str()))),
            ("KeyId", d.key_id.as_deref().map(Doc::str)),
            (
                "OpenShardCount",
                Some(Doc::U64(u64::from(d.open_shard_count))),
            ),
            ("ConsumerCount", Some(Doc::U64(u64::from(d.consumer_count)))),
            (
                "MaxRecordSizeInKiB",
                Some(Doc::U64(u64::from(d.max_record_size_kib))),
            ),
        ])),
    )])
}

pub fn list_streams(o: &ListStreamsOutput) -> Doc {
    Doc::Map(vec![
        ("StreamNames", Some(Doc::strings(&o.stream_names))),
        ("HasMoreStreams", Some(Doc::Bool(o.has_more_streams))),
        ("NextToken", o.next_token.as_deref().map(Doc::str)),
        (
            "StreamSummaries",
            Some(Doc::List(
                o.stream_summaries
                    .iter()
                    .map(|s| {
                        Doc::Map(vec![
                            ("StreamName", Some(Doc::str(&s.stream_name))),
                            ("StreamARN", Some(Doc::str(&s.stream_arn))),
                            ("StreamStatus", Some(Doc::str(s.stream_status.as_str()))),
                            (
                                "StreamModeDetails",
                                Some(stream_mode_details(s.stream_mode)),
                            ),
                            (
                                "StreamCreationTimestamp",
                                Some(Doc::TimestampMs(s.stream_creation_timestamp_ms)),
                            ),
                        ])
                    })
                    .collect(),
            )),
        ),
    ])
}

pub fn list_shards(o: &ListShardsOutput) -> Doc {
    Doc::Map(vec![
        ("Shards", Some(shards(&o.shards))),
        ("NextToken", o.next_token.as_deref().map(Doc::str)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::api::{BillingCommitmentStatus, ConsumerStatus};

    #[test]
    fn json_and_cbor_carry_the_same_document_and_leave_out_absent_members() {
        let doc = account_settings(Some(&MinimumThroughputBillingCommitment {
            status: BillingCommitmentStatus::Enabled,
            started_at_ms: Some(1_704_164_645_678),
            ended_at_ms: None,
            earliest_allowed_end_at_ms: Some(1_704_251_045_678),
        }));
        let json = String::from_utf8(to_json(&doc)).expect("JSON is UTF-8");
        assert_eq!(
            json,
            r#"{"MinimumThroughputBillingCommitment":{"Status":"ENABLED","StartedAt":1704164645.678,"EarliestAllowedEndAt":1704251045.678}}"#
        );
        let cbor = to_cbor(&doc);
        let parsed = crate::cbor::parse(&cbor).expect("valid CBOR");
        let commitment = parsed
            .get("MinimumThroughputBillingCommitment")
            .expect("member present");
        assert!(commitment.get("EndedAt").is_none());
        assert!(matches!(
            commitment.get("StartedAt"),
            Some(crate::json::JsonValue::TimestampMs(_))
        ));
    }

    #[test]
    fn a_consumer_description_has_the_stream_arn_and_a_consumer_does_not() {
        let c = ConsumerDescription {
            consumer_name: "c".into(),
            consumer_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1".into(),
            consumer_status: ConsumerStatus::Active,
            consumer_creation_timestamp_ms: 1_000,
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/s".into(),
        };
        let described = String::from_utf8(to_json(&describe_stream_consumer(&c))).expect("UTF-8");
        let registered = String::from_utf8(to_json(&register_stream_consumer(&c))).expect("UTF-8");
        assert!(
            described.contains(r#""StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/s""#)
        );
        assert!(!registered.contains("StreamARN"));
        assert!(registered.starts_with(r#"{"Consumer":{"ConsumerName":"c""#));
    }
}
