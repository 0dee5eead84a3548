//! Enhanced fan-out consumers: RegisterStreamConsumer, Describe- and DeregisterStreamConsumer
//! and ListStreamConsumers. Model constraints and member order as in `stream_settings`.

use sluice_core::KinesisError;
use sluice_core::api::{ConsumerRef, ListStreamConsumersInput, RegisterStreamConsumerInput};

use super::arns::resolve_stream;
use super::body::{Obj, tags_of};
use super::constraints::Violations;
use super::{Home, to_u32};

pub fn register_stream_consumer(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<RegisterStreamConsumerInput, KinesisError> {
    let consumer_name = body.string("ConsumerName")?;
    let arn = body.string("StreamARN")?;
    let tag_members = body.map("Tags")?;
    let tags = tags_of(tag_members)?;
    let mut v = Violations::default();
    v.required_name(consumer_name, "consumerName");
    v.required_stream_arn(arn);
    v.tag_map(tag_members, &tags, "tags");
    v.finish()?;
    Ok(RegisterStreamConsumerInput {
        stream_name: resolve_stream(home, None, arn)?,
        consumer_name: consumer_name.expect("validated as not null").to_owned(),
        tags,
    })
}

/// Describe- and DeregisterStreamConsumer: a consumer by ConsumerARN, or by StreamARN plus
/// ConsumerName.
pub fn consumer_ref(home: Home<'_>, body: Obj<'_, '_>) -> Result<ConsumerRef, KinesisError> {
    let consumer_arn = body.string("ConsumerARN")?;
    let consumer_name = body.string("ConsumerName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.consumer_arn(consumer_arn);
    v.stream_name(consumer_name, "consumerName");
    v.stream_arn(arn);
    v.finish()?;
    if let Some(consumer_arn) = consumer_arn {
        return Ok(ConsumerRef::Arn(consumer_arn.to_owned()));
    }
    match (arn, consumer_name) {
        (Some(arn), Some(consumer_name)) => Ok(ConsumerRef::Name {
            stream_name: resolve_stream(home, None, Some(arn))?,
            consumer_name: consumer_name.to_owned(),
        }),
        _ => Err(KinesisError::invalid_argument(
            "Either ConsumerARN or both ConsumerName and StreamARN must be provided.",
        )),
    }
}

pub fn list_stream_consumers(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<ListStreamConsumersInput, KinesisError> {
    let max_results = body.integer("MaxResults")?;
    let next_token = body.string("NextToken")?;
    let arn = body.string("StreamARN")?;
    let created_ms = body.timestamp_ms("StreamCreationTimestamp")?;
    let mut v = Violations::default();
    v.list_limit(max_results, "maxResults");
    v.next_token(next_token);
    v.required_stream_arn(arn);
    v.finish()?;
    Ok(ListStreamConsumersInput {
        stream_name: resolve_stream(home, None, arn)?,
        next_token: next_token.map(str::to_owned),
        max_results: to_u32(max_results),
        stream_creation_timestamp_ms: created_ms,
    })
}
