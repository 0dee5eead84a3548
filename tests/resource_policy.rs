//! Resource policies are enforced, end to end: the real `sluice` binary on loopback driven by
//! `aws-sdk-kinesis`. A `Deny` statement that names an action, the stream's ARN and the caller
//! (every caller is the appliance account's root) refuses that action with AWS's
//! `AccessDeniedException`; everything else about the stream keeps working, and deleting the
//! policy lifts the refusal.

mod common;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use common::{ACCOUNT_ID, Server, create_active_stream, expect_error, stream_arn};

fn deny(action: &str, resource: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"d","Effect":"Deny","Principal":"*","Action":"{action}","Resource":"{resource}"}}]}}"#
    )
}

async fn put_policy(client: &Client, stream_name: &str, policy: &str) {
    client
        .put_resource_policy()
        .resource_arn(stream_arn(stream_name))
        .policy(policy)
        .send()
        .await
        .expect("PutResourcePolicy");
}

async fn put_record(client: &Client, stream_name: &str) -> Result<(), (String, String)> {
    client
        .put_record()
        .stream_name(stream_name)
        .partition_key("k")
        .data(Blob::new(b"x".to_vec()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| expect_error::<(), _, _>(Err(e)))
}

async fn put_records(client: &Client, stream_name: &str) -> Result<(), (String, String)> {
    let entry = PutRecordsRequestEntry::builder()
        .partition_key("k")
        .data(Blob::new(b"y".to_vec()))
        .build()
        .expect("entry");
    client
        .put_records()
        .stream_arn(stream_arn(stream_name))
        .records(entry)
        .send()
        .await
        .map(|output| assert_eq!(output.failed_record_count(), Some(0)))
        .map_err(|e| expect_error::<(), _, _>(Err(e)))
}

fn denied_message(action: &str, stream_name: &str) -> String {
    format!(
        "User: arn:aws:iam::{ACCOUNT_ID}:root is not authorized to perform: kinesis:{action} on resource: {} with an explicit deny in a resource-based policy",
        stream_arn(stream_name)
    )
}

#[tokio::test]
async fn a_deny_on_put_record_star_refuses_writes_until_the_policy_is_deleted() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "guarded", 1).await;
    put_record(&client, "guarded")
        .await
        .expect("writes before any policy");

    put_policy(
        &client,
        "guarded",
        &deny("kinesis:PutRecord*", &stream_arn("guarded")),
    )
    .await;
    assert_eq!(
        put_record(&client, "guarded").await,
        Err((
            "AccessDeniedException".to_owned(),
            denied_message("PutRecord", "guarded")
        ))
    );
    assert_eq!(
        put_records(&client, "guarded").await,
        Err((
            "AccessDeniedException".to_owned(),
            denied_message("PutRecords", "guarded")
        ))
    );
    let summary = client
        .describe_stream_summary()
        .stream_name("guarded")
        .send()
        .await
        .expect("DescribeStreamSummary is not named by the policy");
    let summary = summary.stream_description_summary.expect("a summary");
    assert_eq!(summary.stream_name(), "guarded");

    client
        .delete_resource_policy()
        .resource_arn(stream_arn("guarded"))
        .send()
        .await
        .expect("DeleteResourcePolicy");
    put_record(&client, "guarded")
        .await
        .expect("writes once the policy is gone");
    put_records(&client, "guarded")
        .await
        .expect("batch writes once the policy is gone");
}

#[tokio::test]
async fn a_deny_naming_another_stream_or_an_allow_only_policy_changes_nothing() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "open", 1).await;
    create_active_stream(&client, "other", 1).await;

    put_policy(&client, "open", &deny("kinesis:*", &stream_arn("other"))).await;
    put_record(&client, "open")
        .await
        .expect("the Deny names another stream");
    put_records(&client, "open")
        .await
        .expect("the Deny names another stream");

    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kinesis:*","Resource":"*"}]}"#;
    put_policy(&client, "open", allow).await;
    put_record(&client, "open")
        .await
        .expect("Allow statements never refuse");
    put_records(&client, "open")
        .await
        .expect("Allow statements never refuse");
    client
        .describe_stream_summary()
        .stream_name("open")
        .send()
        .await
        .expect("Allow statements never refuse");
}

#[tokio::test]
async fn a_deny_on_get_records_is_enforced_through_the_shard_iterator() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "reads", 1).await;
    put_policy(&client, "reads", &deny("kinesis:GetRecords", "*")).await;

    let shards = client
        .list_shards()
        .stream_name("reads")
        .send()
        .await
        .expect("ListShards");
    let shard_id = shards.shards()[0].shard_id().to_owned();
    let iterator = client
        .get_shard_iterator()
        .stream_name("reads")
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator is not named by the policy")
        .shard_iterator
        .expect("an iterator");
    let (code, message) = expect_error(client.get_records().shard_iterator(iterator).send().await);
    assert_eq!(code, "AccessDeniedException");
    assert_eq!(message, denied_message("GetRecords", "reads"));
}

#[tokio::test]
async fn a_consumer_policy_governs_calls_that_name_the_consumer_arn() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "fanout", 1).await;
    let consumer_arn = client
        .register_stream_consumer()
        .stream_arn(stream_arn("fanout"))
        .consumer_name("c")
        .send()
        .await
        .expect("RegisterStreamConsumer")
        .consumer
        .expect("a consumer")
        .consumer_arn;
    client
        .put_resource_policy()
        .resource_arn(&consumer_arn)
        .policy(deny("kinesis:DescribeStreamConsumer", &consumer_arn))
        .send()
        .await
        .expect("PutResourcePolicy");
    let (code, message) = expect_error(
        client
            .describe_stream_consumer()
            .consumer_arn(&consumer_arn)
            .send()
            .await,
    );
    assert_eq!(code, "AccessDeniedException");
    assert!(message.ends_with(&format!(
        "kinesis:DescribeStreamConsumer on resource: {consumer_arn} with an explicit deny in a resource-based policy"
    )));
    put_record(&client, "fanout")
        .await
        .expect("the consumer's policy does not govern its stream");
}
