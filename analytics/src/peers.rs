//! What analytics needs from the server's other services, as two narrow traits the server binary
//! implements: the Firehose delivery streams (to resolve a `KinesisFirehoseInput` or
//! `KinesisFirehoseOutput` to the Kinesis stream that holds the delivery stream's records) and
//! the Lambda functions (to invoke output and pre-processing functions).
//!
//! Analytics does not depend on the Firehose crate: the binary wires the Firehose registry and
//! its Lambda invoker in, so a delivery stream's records are reached through the same storage
//! face as any Kinesis stream, and every function of the server is invoked through one client
//! (`AWS_ENDPOINT_URL_LAMBDA`, Lambda's Invoke API path).

use std::future::Future;
use std::pin::Pin;

/// A delivery stream as analytics sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryStreamTarget {
    pub arn: String,
    /// The Kinesis stream its records are read from: the internal stream of a DirectPut delivery
    /// stream, the user's stream for KinesisStreamAsSource.
    pub source_stream: String,
    /// DirectPut: records may be put into it (and so written by an application output).
    pub direct_put: bool,
    /// ACTIVE (its internal stream exists).
    pub active: bool,
}

/// The server's delivery streams.
pub trait DeliveryStreams: Send + Sync {
    /// The delivery stream `name`, if it exists.
    fn lookup(&self, name: &str) -> Option<DeliveryStreamTarget>;
    /// Counts records put into delivery stream `name` by an application, as a PutRecordBatch
    /// would count them (IncomingRecords, IncomingBytes). No default: a forgotten count would
    /// make the delivery stream's metrics disagree with what it delivers.
    fn record_incoming(&self, name: &str, records: usize, bytes: usize);
}

/// Why an invocation failed: Lambda's error code (`Lambda.FunctionError`, …) and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct InvokeError {
    pub code: &'static str,
    pub message: String,
}

/// The future of one invocation; the runner awaits it on its service core.
pub type Invocation<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, InvokeError>> + 'a>>;

/// The server's Lambda functions.
pub trait Functions: Send + Sync {
    /// Invokes `function_arn` synchronously with the JSON `event`; the function's answer.
    fn invoke<'a>(&'a self, function_arn: &'a str, event: String) -> Invocation<'a>;
}

/// The function name of `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
pub fn function_name(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts[..] {
        [
            "arn",
            partition,
            "lambda",
            region,
            account,
            "function",
            name,
        ]
        | [
            "arn",
            partition,
            "lambda",
            region,
            account,
            "function",
            name,
            _,
        ] if !partition.is_empty()
            && !region.is_empty()
            && !account.is_empty()
            && !name.is_empty() =>
        {
            Some(name)
        }
        _ => None,
    }
}

/// A Kinesis stream or Firehose delivery stream named by an ARN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    KinesisStream(&'a str),
    DeliveryStream(&'a str),
}

/// The resource of `arn:<partition>:kinesis:<region>:<account>:stream/NAME` or
/// `arn:<partition>:firehose:<region>:<account>:deliverystream/NAME`.
pub fn resource_of(arn: &str) -> Option<Resource<'_>> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (partition, service, _region, _account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if partition.is_empty() {
        return None;
    }
    fn named(name: &str) -> Option<&str> {
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
    match service {
        "kinesis" => named(resource.strip_prefix("stream/")?).map(Resource::KinesisStream),
        "firehose" => {
            named(resource.strip_prefix("deliverystream/")?).map(Resource::DeliveryStream)
        }
        _ => None,
    }
}

/// Whether `arn` names a CloudWatch Logs log stream:
/// `arn:<partition>:logs:<region>:<account>:log-group:<group>:log-stream:<stream>`.
pub fn is_log_stream_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    matches!(
        parts[..],
        ["arn", p, "logs", r, a, "log-group", g, "log-stream", s]
            if !p.is_empty() && !r.is_empty() && !a.is_empty() && !g.is_empty() && !s.is_empty()
    )
}

/// Whether `arn` names an IAM role: `arn:<partition>:iam::<account>:role/<name>`.
pub fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(
        parts[..],
        ["arn", p, "iam", "", a, role] if !p.is_empty() && !a.is_empty()
            && role.strip_prefix("role/").is_some_and(|n| !n.is_empty())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_arns_name_their_function_with_or_without_a_qualifier() {
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:f"),
            Some("f")
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:f:PROD"),
            Some("f")
        );
        assert_eq!(function_name("arn:aws:lambda:us-east-1:1:layer:f"), None);
        assert_eq!(function_name("arn:aws:s3:::bucket"), None);
        assert_eq!(function_name("f"), None);
    }

    #[test]
    fn stream_arns_are_told_apart_by_service_and_resource_type() {
        assert_eq!(
            resource_of("arn:aws:kinesis:us-east-1:1:stream/in"),
            Some(Resource::KinesisStream("in"))
        );
        assert_eq!(
            resource_of("arn:aws:firehose:us-east-1:1:deliverystream/d"),
            Some(Resource::DeliveryStream("d"))
        );
        assert_eq!(
            resource_of("arn:aws:kinesis:us-east-1:1:deliverystream/d"),
            None
        );
        assert_eq!(resource_of("arn:aws:firehose:us-east-1:1:stream/d"), None);
        assert_eq!(
            resource_of("arn:aws:firehose:us-east-1:1:deliverystream/"),
            None
        );
        assert_eq!(resource_of("deliverystream/d"), None);
    }

    #[test]
    fn log_stream_and_role_arns_need_every_part() {
        assert!(is_log_stream_arn(
            "arn:aws:logs:us-east-1:123456789012:log-group:g:log-stream:s"
        ));
        assert!(!is_log_stream_arn(
            "arn:aws:logs:us-east-1:123456789012:log-group:g"
        ));
        assert!(!is_log_stream_arn("arn:aws:s3:::b"));
        assert!(is_role_arn("arn:aws:iam::123456789012:role/kda"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:user/kda"));
        assert!(!is_role_arn("role/kda"));
    }
}
