//! The analytics service's view of the server's other services: Firehose delivery streams (from
//! the Firehose registry) and Lambda functions (through Firehose's Lambda invoker, so every
//! function of the server is reached at `AWS_ENDPOINT_URL_LAMBDA` the same way).

use std::sync::Arc;

use sluice_analytics::peers::{
    DeliveryStreamTarget, DeliveryStreams, Functions, Invocation, InvokeError,
};
use sluice_sinks::model::{Status, StreamType};

/// The Firehose registry as analytics reads it.
#[derive(Debug)]
pub struct FirehoseDeliveryStreams(pub Arc<sluice_sinks::Registry>);

impl DeliveryStreams for FirehoseDeliveryStreams {
    fn lookup(&self, name: &str) -> Option<DeliveryStreamTarget> {
        let stream = self.0.get(name)?;
        Some(DeliveryStreamTarget {
            arn: stream.definition.arn,
            source_stream: stream.definition.source_stream,
            direct_put: stream.definition.stream_type == StreamType::DirectPut,
            active: stream.status == Status::Active,
        })
    }

    fn record_incoming(&self, name: &str, records: usize, bytes: usize) {
        self.0.metrics(name).incoming(records, bytes);
    }
}

/// Firehose's Lambda invoker as analytics calls it.
#[derive(Debug)]
pub struct LambdaFunctions(pub sluice_sinks::transform::Invoker);

impl Functions for LambdaFunctions {
    fn invoke<'a>(&'a self, function_arn: &'a str, event: String) -> Invocation<'a> {
        Box::pin(async move {
            self.0
                .invoke_function(function_arn, event)
                .await
                .map(|body| body.to_vec())
                .map_err(|(code, message)| InvokeError { code, message })
        })
    }
}
