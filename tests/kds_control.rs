//! The control-plane operations beyond the stream basics, end to end: the real `sluice` binary
//! on loopback driven by `aws-sdk-kinesis` (and, for the operations the Rust SDK does not
//! model, a raw signed-looking JSON request). Stream modes, DescribeLimits, enhanced
//! monitoring, the per-stream record size, encryption settings, warm throughput, account
//! settings, enhanced fan-out consumers, resource policies, tags by ARN, PutRecord's
//! SequenceNumberForOrdering, and the operations Sluice refuses with a reason.
//!
//! Each test guards against the SDK and the server disagreeing on a shape (a member the SDK
//! cannot parse fails the call) and against a setting that is accepted but not applied.

mod common;

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    ConsumerStatus, EncryptionType, MetricsName, MinimumThroughputBillingCommitmentInput,
    MinimumThroughputBillingCommitmentInputStatus, MinimumThroughputBillingCommitmentOutputStatus,
    PutRecordsRequestEntry, StreamMode, StreamModeDetails, StreamStatus,
};
use common::{
    ACCOUNT_ID, Server, create_active_stream, expect_error, stream_arn, stream_not_found_message,
    wait_for_status,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn server() -> Server {
    Server::options().flag("--update-delay-ms", 100).start()
}

async fn summary(
    client: &Client,
    stream_name: &str,
) -> aws_sdk_kinesis::types::StreamDescriptionSummary {
    client
        .describe_stream_summary()
        .stream_name(stream_name)
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary
        .expect("a summary")
}

fn mode_details(mode: StreamMode) -> StreamModeDetails {
    StreamModeDetails::builder()
        .stream_mode(mode)
        .build()
        .expect("mode set")
}

#[tokio::test]
async fn update_stream_mode_switches_to_on_demand_which_refuses_resharding_and_back() {
    let server = server();
    let client = server.client();
    create_active_stream(&client, "modes", 2).await;
    client
        .update_stream_mode()
        .stream_arn(stream_arn("modes"))
        .stream_mode_details(mode_details(StreamMode::OnDemand))
        .send()
        .await
        .expect("UpdateStreamMode");
    assert_eq!(
        summary(&client, "modes").await.stream_status(),
        &StreamStatus::Updating
    );
    wait_for_status(&client, "modes", StreamStatus::Active).await;
    let s = summary(&client, "modes").await;
    assert_eq!(
        s.stream_mode_details().map(|d| d.stream_mode().clone()),
        Some(StreamMode::OnDemand)
    );
    assert_eq!(s.open_shard_count(), 2, "switching modes keeps the shards");

    let (code, message) = expect_error(
        client
            .split_shard()
            .stream_name("modes")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("12345")
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert_eq!(
        message,
        format!(
            "Request is invalid. Stream modes under account {ACCOUNT_ID} is in On-Demand mode."
        )
    );

    let limits = client
        .describe_limits()
        .send()
        .await
        .expect("DescribeLimits");
    assert_eq!(limits.on_demand_stream_count(), 1);
    assert_eq!(limits.open_shard_count(), 2);

    client
        .update_stream_mode()
        .stream_arn(stream_arn("modes"))
        .stream_mode_details(mode_details(StreamMode::Provisioned))
        .send()
        .await
        .expect("UpdateStreamMode back");
    wait_for_status(&client, "modes", StreamStatus::Active).await;
    let s = summary(&client, "modes").await;
    assert_eq!(
        s.stream_mode_details().map(|d| d.stream_mode().clone()),
        Some(StreamMode::Provisioned)
    );

    let (code, message) = expect_error(
        client
            .update_stream_mode()
            .stream_arn(stream_arn("missing"))
            .stream_mode_details(mode_details(StreamMode::OnDemand))
            .send()
            .await,
    );
    assert_eq!(
        (code.as_str(), message),
        (
            "ResourceNotFoundException",
            stream_not_found_message("missing")
        )
    );
}

#[tokio::test]
async fn describe_limits_reports_the_shard_limit_and_the_open_shards() {
    let server = Server::options().flag("--shard-limit", 25).start();
    let client = server.client();
    create_active_stream(&client, "a", 3).await;
    create_active_stream(&client, "b", 2).await;
    let limits = client
        .describe_limits()
        .send()
        .await
        .expect("DescribeLimits");
    assert_eq!(limits.shard_limit(), 25);
    assert_eq!(limits.open_shard_count(), 5);
    assert_eq!(limits.on_demand_stream_count(), 0);
    assert_eq!(limits.on_demand_stream_count_limit(), 50);
}

#[tokio::test]
async fn enhanced_monitoring_adds_and_removes_shard_level_metrics() {
    let server = server();
    let client = server.client();
    create_active_stream(&client, "metrics", 1).await;
    let enabled = client
        .enable_enhanced_monitoring()
        .stream_name("metrics")
        .shard_level_metrics(MetricsName::OutgoingBytes)
        .shard_level_metrics(MetricsName::IncomingBytes)
        .send()
        .await
        .expect("EnableEnhancedMonitoring");
    assert_eq!(enabled.stream_name(), Some("metrics"));
    assert_eq!(enabled.stream_arn(), Some(stream_arn("metrics").as_str()));
    assert!(enabled.current_shard_level_metrics().is_empty());
    assert_eq!(
        enabled.desired_shard_level_metrics(),
        &[MetricsName::IncomingBytes, MetricsName::OutgoingBytes]
    );
    let described = client
        .describe_stream()
        .stream_name("metrics")
        .send()
        .await
        .expect("DescribeStream");
    let monitoring = described
        .stream_description()
        .expect("description")
        .enhanced_monitoring();
    assert_eq!(
        monitoring[0].shard_level_metrics(),
        &[MetricsName::IncomingBytes, MetricsName::OutgoingBytes]
    );

    let all = client
        .enable_enhanced_monitoring()
        .stream_arn(stream_arn("metrics"))
        .shard_level_metrics(MetricsName::All)
        .send()
        .await
        .expect("ALL");
    assert_eq!(all.desired_shard_level_metrics().len(), 7);
    let disabled = client
        .disable_enhanced_monitoring()
        .stream_name("metrics")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await
        .expect("DisableEnhancedMonitoring");
    assert_eq!(disabled.current_shard_level_metrics().len(), 7);
    assert!(disabled.desired_shard_level_metrics().is_empty());

    let (code, message) = expect_error(
        client
            .enable_enhanced_monitoring()
            .stream_name("metrics")
            .shard_level_metrics(MetricsName::from("Bogus"))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(
        message.contains("Member must satisfy enum value set"),
        "{message}"
    );
    let (code, _) = expect_error(
        client
            .disable_enhanced_monitoring()
            .stream_name("nope")
            .shard_level_metrics(MetricsName::All)
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
}

#[tokio::test]
async fn update_max_record_size_lets_larger_records_in_and_writes_check_the_stream_limit() {
    let server = server();
    let client = server.client();
    create_active_stream(&client, "big", 1).await;
    let big = vec![7u8; 1_500_000];
    let (code, message) = expect_error(
        client
            .put_record()
            .stream_name("big")
            .partition_key("k")
            .data(Blob::new(big.clone()))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert_eq!(
        message,
        "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=1500000 cap=1500000]' at 'data' failed to satisfy constraint: Member must have length less than or equal to 1048576"
    );
    let (code, message) = expect_error(
        client
            .put_record()
            .stream_name("big")
            .partition_key("key")
            .data(Blob::new(vec![0u8; 1_048_576]))
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert!(
        message.contains("exceeds the maximum record size of 1048576 bytes"),
        "{message}"
    );

    client
        .update_max_record_size()
        .stream_arn(stream_arn("big"))
        .max_record_size_in_kib(2048)
        .send()
        .await
        .expect("UpdateMaxRecordSize");
    assert_eq!(
        summary(&client, "big").await.max_record_size_in_kib(),
        Some(2048)
    );
    let put = client
        .put_record()
        .stream_name("big")
        .partition_key("k")
        .data(Blob::new(big.clone()))
        .send()
        .await
        .expect("a 1.5 MB record");
    let records = common::read_shard_to_end(&client, "big", put.shard_id()).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].data, big);
    let entries = vec![
        PutRecordsRequestEntry::builder()
            .partition_key("k")
            .data(Blob::new(big))
            .build()
            .expect("entry"),
    ];
    let output = client
        .put_records()
        .stream_name("big")
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords of a large record");
    assert_eq!(output.failed_record_count(), Some(0));

    let (code, message) = expect_error(
        client
            .update_max_record_size()
            .stream_arn(stream_arn("big"))
            .max_record_size_in_kib(1023)
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(message.contains("at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value greater than or equal to 1024"), "{message}");
    let (code, _) = expect_error(
        client
            .update_max_record_size()
            .stream_arn(stream_arn("nope"))
            .max_record_size_in_kib(2048)
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
}

#[tokio::test]
async fn stream_encryption_is_reported_in_descriptions_and_write_results() {
    let server = server();
    let client = server.client();
    create_active_stream(&client, "sse", 2).await;
    let key_id = "arn:aws:kms:us-east-1:000000000000:key/12345678-1234-1234-1234-123456789012";
    client
        .start_stream_encryption()
        .stream_name("sse")
        .encryption_type(EncryptionType::Kms)
        .key_id(key_id)
        .send()
        .await
        .expect("StartStreamEncryption");
    assert_eq!(
        summary(&client, "sse").await.stream_status(),
        &StreamStatus::Updating
    );
    wait_for_status(&client, "sse", StreamStatus::Active).await;
    let described = client
        .describe_stream()
        .stream_name("sse")
        .send()
        .await
        .expect("DescribeStream");
    let d = described.stream_description().expect("description");
    assert_eq!(
        (d.encryption_type(), d.key_id()),
        (Some(&EncryptionType::Kms), Some(key_id))
    );
    let s = summary(&client, "sse").await;
    assert_eq!(
        (s.encryption_type(), s.key_id()),
        (Some(&EncryptionType::Kms), Some(key_id))
    );
    let put = client
        .put_record()
        .stream_name("sse")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .expect("PutRecord");
    assert_eq!(put.encryption_type(), Some(&EncryptionType::Kms));
    let entries = vec![
        PutRecordsRequestEntry::builder()
            .partition_key("k")
            .data(Blob::new("y"))
            .build()
            .expect("entry"),
    ];
    let puts = client
        .put_records()
        .stream_name("sse")
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(puts.encryption_type(), Some(&EncryptionType::Kms));

    let (code, _) = expect_error(
        client
            .start_stream_encryption()
            .stream_name("sse")
            .encryption_type(EncryptionType::None)
            .key_id(key_id)
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");

    client
        .stop_stream_encryption()
        .stream_name("sse")
        .encryption_type(EncryptionType::Kms)
        .key_id(key_id)
        .send()
        .await
        .expect("StopStreamEncryption");
    wait_for_status(&client, "sse", StreamStatus::Active).await;
    let s = summary(&client, "sse").await;
    assert_eq!(
        (s.encryption_type(), s.key_id()),
        (Some(&EncryptionType::None), None)
    );
    let put = client
        .put_record()
        .stream_name("sse")
        .partition_key("k")
        .data(Blob::new("z"))
        .send()
        .await
        .expect("PutRecord");
    assert_eq!(put.encryption_type(), Some(&EncryptionType::None));

    let (code, message) = expect_error(
        client
            .start_stream_encryption()
            .stream_name("nope")
            .encryption_type(EncryptionType::Kms)
            .key_id(key_id)
            .send()
            .await,
    );
    assert_eq!(
        (code.as_str(), message),
        (
            "ResourceNotFoundException",
            stream_not_found_message("nope")
        )
    );
}

#[tokio::test]
async fn warm_throughput_and_account_settings_round_trip() {
    let server = server();
    let client = server.client();
    create_active_stream(&client, "warm", 1).await;
    let output = client
        .update_stream_warm_throughput()
        .stream_name("warm")
        .warm_throughput_mibps(64)
        .send()
        .await
        .expect("UpdateStreamWarmThroughput");
    assert_eq!(output.stream_name(), Some("warm"));
    assert_eq!(output.stream_arn(), Some(stream_arn("warm").as_str()));
    let warm = output.warm_throughput().expect("WarmThroughput");
    assert_eq!(
        (warm.target_mibps(), warm.current_mibps()),
        (Some(64), Some(64))
    );
    let (code, _) = expect_error(
        client
            .update_stream_warm_throughput()
            .stream_name("nope")
            .warm_throughput_mibps(1)
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");

    let settings = client
        .describe_account_settings()
        .send()
        .await
        .expect("DescribeAccountSettings");
    assert!(settings.minimum_throughput_billing_commitment().is_none());
    let commitment = |status| {
        MinimumThroughputBillingCommitmentInput::builder()
            .status(status)
            .build()
            .expect("status set")
    };
    let updated = client
        .update_account_settings()
        .minimum_throughput_billing_commitment(commitment(
            MinimumThroughputBillingCommitmentInputStatus::Enabled,
        ))
        .send()
        .await
        .expect("UpdateAccountSettings");
    let c = updated
        .minimum_throughput_billing_commitment()
        .expect("commitment");
    assert_eq!(
        c.status(),
        &MinimumThroughputBillingCommitmentOutputStatus::Enabled
    );
    assert!(c.started_at().is_some() && c.earliest_allowed_end_at().is_some());
    let described = client
        .describe_account_settings()
        .send()
        .await
        .expect("DescribeAccountSettings");
    assert_eq!(
        described
            .minimum_throughput_billing_commitment()
            .map(|c| c.status().clone()),
        Some(MinimumThroughputBillingCommitmentOutputStatus::Enabled)
    );
    let disabled = client
        .update_account_settings()
        .minimum_throughput_billing_commitment(commitment(
            MinimumThroughputBillingCommitmentInputStatus::Disabled,
        ))
        .send()
        .await
        .expect("UpdateAccountSettings disable");
    assert_eq!(
        disabled
            .minimum_throughput_billing_commitment()
            .map(|c| c.status().clone()),
        Some(MinimumThroughputBillingCommitmentOutputStatus::EnabledUntilEarliestAllowedEnd),
        "a commitment younger than its minimum runs until its earliest allowed end"
    );
}

#[tokio::test]
async fn consumers_register_describe_list_and_deregister() {
    // DELETING must still be seen right after the deregistration on a loaded machine: a delete
    // delay well beyond one slow round trip, and a wait for the end that polls.
    let server = Server::options()
        .flag("--create-delay-ms", 100)
        .flag("--delete-delay-ms", 1500)
        .start();
    let client = server.client();
    create_active_stream(&client, "efo", 1).await;
    let registered = client
        .register_stream_consumer()
        .stream_arn(stream_arn("efo"))
        .consumer_name("reader")
        .send()
        .await
        .expect("RegisterStreamConsumer");
    let consumer = registered.consumer().expect("consumer");
    assert_eq!(consumer.consumer_name(), "reader");
    assert_eq!(consumer.consumer_status(), &ConsumerStatus::Creating);
    let arn = consumer.consumer_arn().to_owned();
    let prefix = format!("{}/consumer/reader:", stream_arn("efo"));
    assert!(
        arn.starts_with(&prefix) && arn[prefix.len()..].bytes().all(|b| b.is_ascii_digit()),
        "{arn}"
    );

    let (code, _) = expect_error(
        client
            .register_stream_consumer()
            .stream_arn(stream_arn("efo"))
            .consumer_name("reader")
            .send()
            .await,
    );
    assert_eq!(code, "ResourceInUseException");
    client
        .register_stream_consumer()
        .stream_arn(stream_arn("efo"))
        .consumer_name("another")
        .send()
        .await
        .expect("second consumer");

    tokio::time::sleep(Duration::from_millis(150)).await;
    let by_arn = client
        .describe_stream_consumer()
        .consumer_arn(&arn)
        .send()
        .await
        .expect("DescribeStreamConsumer by ARN");
    let d = by_arn.consumer_description().expect("description");
    assert_eq!(d.consumer_status(), &ConsumerStatus::Active);
    assert_eq!(d.stream_arn(), stream_arn("efo"));
    let by_name = client
        .describe_stream_consumer()
        .stream_arn(stream_arn("efo"))
        .consumer_name("reader")
        .send()
        .await
        .expect("by name");
    assert_eq!(
        by_name.consumer_description().map(|d| d.consumer_arn()),
        Some(arn.as_str())
    );
    assert_eq!(summary(&client, "efo").await.consumer_count(), Some(2));

    let first = client
        .list_stream_consumers()
        .stream_arn(stream_arn("efo"))
        .max_results(1)
        .send()
        .await
        .expect("ListStreamConsumers");
    assert_eq!(first.consumers().len(), 1);
    assert_eq!(first.consumers()[0].consumer_name(), "another");
    let token = first.next_token().expect("a second page").to_owned();
    let second = client
        .list_stream_consumers()
        .stream_arn(stream_arn("efo"))
        .next_token(token)
        .send()
        .await
        .expect("page 2");
    assert_eq!(second.consumers()[0].consumer_name(), "reader");
    assert!(second.next_token().is_none());

    client
        .deregister_stream_consumer()
        .consumer_arn(&arn)
        .send()
        .await
        .expect("DeregisterStreamConsumer");
    let deleting = client
        .describe_stream_consumer()
        .consumer_arn(&arn)
        .send()
        .await
        .expect("still described");
    assert_eq!(
        deleting
            .consumer_description()
            .map(|d| d.consumer_status().clone()),
        Some(ConsumerStatus::Deleting)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (code, message) = loop {
        match client
            .describe_stream_consumer()
            .consumer_arn(&arn)
            .send()
            .await
        {
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => break expect_error(result),
        }
    };
    assert_eq!(code, "ResourceNotFoundException");
    assert!(message.contains(ACCOUNT_ID), "{message}");
    client
        .deregister_stream_consumer()
        .stream_arn(stream_arn("efo"))
        .consumer_name("another")
        .send()
        .await
        .expect("by name");

    let (code, _) = expect_error(
        client
            .describe_stream_consumer()
            .stream_arn(stream_arn("efo"))
            .send()
            .await,
    );
    assert_eq!(
        code, "InvalidArgumentException",
        "a consumer needs an ARN or a name"
    );
    let (code, _) = expect_error(
        client
            .list_stream_consumers()
            .stream_arn(stream_arn("nope"))
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
    let (code, _) = expect_error(
        client
            .register_stream_consumer()
            .stream_arn(stream_arn("nope"))
            .consumer_name("c")
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
}

#[tokio::test]
async fn resource_policies_are_stored_returned_and_deleted_for_streams_and_consumers() {
    let server = server();
    let client = server.client();
    create_active_stream(&client, "policy", 1).await;
    let consumer_arn = client
        .register_stream_consumer()
        .stream_arn(stream_arn("policy"))
        .consumer_name("c")
        .send()
        .await
        .expect("consumer")
        .consumer
        .expect("consumer")
        .consumer_arn;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kinesis:GetRecords","Resource":"*"}]}"#;
    for arn in [stream_arn("policy"), consumer_arn.clone()] {
        let empty = client
            .get_resource_policy()
            .resource_arn(&arn)
            .send()
            .await
            .expect("GetResourcePolicy");
        assert_eq!(empty.policy(), "{}");
        client
            .put_resource_policy()
            .resource_arn(&arn)
            .policy(policy)
            .send()
            .await
            .expect("PutResourcePolicy");
        let stored = client
            .get_resource_policy()
            .resource_arn(&arn)
            .send()
            .await
            .expect("GetResourcePolicy");
        assert_eq!(stored.policy(), policy, "the policy comes back as sent");
        client
            .delete_resource_policy()
            .resource_arn(&arn)
            .send()
            .await
            .expect("DeleteResourcePolicy");
        let (code, _) = expect_error(
            client
                .delete_resource_policy()
                .resource_arn(&arn)
                .send()
                .await,
        );
        assert_eq!(code, "ResourceNotFoundException");
    }
    let (code, _) = expect_error(
        client
            .put_resource_policy()
            .resource_arn(stream_arn("policy"))
            .policy("not json")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    let (code, _) = expect_error(
        client
            .get_resource_policy()
            .resource_arn(stream_arn("nope"))
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
    let (code, message) = expect_error(
        client
            .get_resource_policy()
            .resource_arn("arn:aws:s3:::bucket")
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(message.contains("at 'resourceARN' failed to satisfy constraint: Member must satisfy regular expression pattern"), "{message}");
}

#[tokio::test]
async fn tags_by_resource_arn_apply_to_streams_and_consumers() {
    let server = server();
    let client = server.client();
    create_active_stream(&client, "tagged", 1).await;
    let stream = stream_arn("tagged");
    client
        .tag_resource()
        .resource_arn(&stream)
        .tags("team", "data")
        .tags("env", "test")
        .send()
        .await
        .expect("TagResource");
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&stream)
        .send()
        .await
        .expect("ListTagsForResource");
    let pairs: Vec<(&str, Option<&str>)> =
        tags.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(pairs, vec![("env", Some("test")), ("team", Some("data"))]);
    let by_stream = client
        .list_tags_for_stream()
        .stream_name("tagged")
        .send()
        .await
        .expect("ListTagsForStream");
    assert_eq!(
        by_stream.tags().len(),
        2,
        "tags by ARN are the stream's tags"
    );
    client
        .untag_resource()
        .resource_arn(&stream)
        .tag_keys("env")
        .tag_keys("absent")
        .send()
        .await
        .expect("UntagResource");
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&stream)
        .send()
        .await
        .expect("ListTagsForResource");
    assert_eq!(
        tags.tags().iter().map(|t| t.key()).collect::<Vec<_>>(),
        vec!["team"]
    );

    let consumer_arn = client
        .register_stream_consumer()
        .stream_arn(&stream)
        .consumer_name("c")
        .tags("owner", "me")
        .send()
        .await
        .expect("consumer")
        .consumer
        .expect("consumer")
        .consumer_arn;
    client
        .tag_resource()
        .resource_arn(&consumer_arn)
        .tags("tier", "gold")
        .send()
        .await
        .expect("TagResource on a consumer");
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&consumer_arn)
        .send()
        .await
        .expect("consumer tags");
    assert_eq!(
        tags.tags().iter().map(|t| t.key()).collect::<Vec<_>>(),
        vec!["owner", "tier"]
    );
    client
        .untag_resource()
        .resource_arn(&consumer_arn)
        .tag_keys("owner")
        .send()
        .await
        .expect("UntagResource on a consumer");
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&consumer_arn)
        .send()
        .await
        .expect("consumer tags");
    assert_eq!(
        tags.tags().iter().map(|t| t.key()).collect::<Vec<_>>(),
        vec!["tier"]
    );

    let (code, _) = expect_error(
        client
            .tag_resource()
            .resource_arn(stream_arn("nope"))
            .tags("a", "b")
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
    let (code, _) = expect_error(
        client
            .tag_resource()
            .resource_arn(&stream)
            .tags("aws:reserved", "x")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    let (code, message) = expect_error(client.untag_resource().resource_arn(&stream).send().await);
    assert_eq!(code, "ValidationException");
    assert!(
        message.contains("'tagKeys' failed to satisfy constraint: Member must not be null"),
        "{message}"
    );
}

#[tokio::test]
async fn sequence_number_for_ordering_takes_any_well_formed_number_not_from_the_future() {
    let server = server();
    let client = server.client();
    create_active_stream(&client, "ordered", 2).await;
    // Numbers carry the shard index and creation second, not the stream: a number of the third
    // shard of a stream created in the same second names no shard of a two-shard stream.
    create_active_stream(&client, "other", 3).await;
    let first = client
        .put_record()
        .stream_name("ordered")
        .partition_key("k")
        .data(Blob::new("1"))
        .send()
        .await
        .expect("PutRecord");
    let second = client
        .put_record()
        .stream_name("ordered")
        .partition_key("k")
        .data(Blob::new("2"))
        .sequence_number_for_ordering(first.sequence_number())
        .send()
        .await
        .expect("PutRecord with SequenceNumberForOrdering");
    assert_eq!(second.shard_id(), first.shard_id());
    assert!(
        common::sequence_number_key(second.sequence_number())
            > common::sequence_number_key(first.sequence_number())
    );

    let elsewhere = client
        .put_record()
        .stream_name("other")
        .partition_key("k")
        .explicit_hash_key(u128::MAX.to_string())
        .data(Blob::new("x"))
        .send()
        .await
        .expect("PutRecord");
    assert_eq!(elsewhere.shard_id(), "shardId-000000000002");
    // AWS (as kinesalite's suite recorded it) accepts a well-formed number of another shard or
    // stream; ours grow within the shard anyway, so the new record still orders after it.
    let foreign = elsewhere.sequence_number().to_owned();
    client
        .put_record()
        .stream_name("ordered")
        .partition_key("k")
        .data(Blob::new("2b"))
        .sequence_number_for_ordering(&foreign)
        .send()
        .await
        .expect("a well-formed number of another stream is accepted");
    // A number whose shard was created in the far future (2^36 - 1 seconds) cannot precede anything.
    let future = sluice_core::SequenceNumber::new((1 << 36) - 1, 0, 0, 0).to_string();
    for bad in ["1", future.as_str()] {
        let (code, message) = expect_error(
            client
                .put_record()
                .stream_name("ordered")
                .partition_key("k")
                .data(Blob::new("3"))
                .sequence_number_for_ordering(bad)
                .send()
                .await,
        );
        assert_eq!(code, "InvalidArgumentException");
        assert_eq!(
            message,
            format!(
                "ExclusiveMinimumSequenceNumber {bad} used in PutRecord on stream ordered under account {ACCOUNT_ID} is invalid."
            )
        );
    }
    let (code, message) = expect_error(
        client
            .put_record()
            .stream_name("ordered")
            .partition_key("k")
            .data(Blob::new("3"))
            .sequence_number_for_ordering("abc")
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(
        message.contains("at 'sequenceNumberForOrdering' failed to satisfy constraint"),
        "{message}"
    );
}

#[tokio::test]
async fn resharding_errors_follow_aws() {
    let server = server();
    let client = server.client();
    create_active_stream(&client, "errors", 2).await;
    let (code, message) = expect_error(
        client
            .split_shard()
            .stream_name("errors")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("1")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert!(
        message.contains("is not both greater than one plus the shard's StartingHashKey"),
        "{message}"
    );
    let (code, message) = expect_error(
        client
            .split_shard()
            .stream_name("nope")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("100")
            .send()
            .await,
    );
    assert_eq!(
        (code.as_str(), message),
        (
            "ResourceNotFoundException",
            stream_not_found_message("nope")
        )
    );
    let (code, message) = expect_error(
        client
            .split_shard()
            .stream_name("errors")
            .shard_to_split("shardId-000000000009")
            .new_starting_hash_key("100")
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException", "{message}");
    let (code, message) = expect_error(
        client
            .split_shard()
            .stream_name("errors")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("0x12")
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(message.contains("at 'newStartingHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern"), "{message}");
    let (code, _) = expect_error(
        client
            .merge_shards()
            .stream_name("errors")
            .shard_to_merge("shardId-000000000001")
            .adjacent_shard_to_merge("shardId-000000000000")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    let (code, message) = expect_error(
        client
            .update_shard_count()
            .stream_name("errors")
            .target_shard_count(0)
            .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(message.contains("at 'targetShardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"), "{message}");
    let (code, _) = expect_error(
        client
            .update_shard_count()
            .stream_name("errors")
            .target_shard_count(2)
            .scaling_type(aws_sdk_kinesis::types::ScalingType::from("SIDEWAYS"))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
}

/// Sends one JSON 1.1 request with a header-auth `Authorization` that the loopback default
/// accepts, and returns the status and body.
async fn raw_call(server: &Server, operation: &str, body: &str) -> (u16, serde_json::Value) {
    let address = server.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.{operation}\r\nX-Amz-Date: 20250101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8(response).expect("UTF-8 response");
    let status: u16 = text[9..12].parse().expect("status code");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn channel_queue_and_distribution_strategy_operations_are_refused_with_the_reason() {
    let server = server();
    let client = server.client();
    let (code, message) = expect_error(client.list_channels().send().await);
    assert_eq!(code, "InvalidArgumentException");
    assert!(
        message.starts_with("Sluice does not support channels"),
        "{message}"
    );
    let (code, message) = expect_error(
        client
            .update_stream_record_distribution_strategy()
            .stream_arn(stream_arn("s"))
            .record_distribution_strategy(aws_sdk_kinesis::types::RecordDistributionStrategy::from(
                "AUTO",
            ))
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert!(
        message.starts_with("Sluice does not support record distribution strategies"),
        "{message}"
    );
    for operation in [
        "CreateQueue",
        "ReceiveQueueRecords",
        "AcknowledgeDeadLetterQueueRecords",
        "DescribeChannel",
    ] {
        let (status, body) = raw_call(&server, operation, "{}").await;
        assert_eq!(status, 400, "{operation}: {body}");
        assert_eq!(body["__type"], "InvalidArgumentException", "{operation}");
        let message = body["message"].as_str().expect("a message");
        assert!(
            message.starts_with("Sluice does not support"),
            "{operation}: {message}"
        );
    }
}
