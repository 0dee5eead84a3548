//! Record transformation by the Lambda contract, invoked over HTTP so that any function server
//! can play Lambda.
//!
//! Configuration: `ProcessingConfiguration{Enabled, Processors: [{Type: "Lambda", Parameters:
//! [LambdaArn, NumberOfRetries (0–300, default 3), BufferSizeInMBs (0.2–3, default 1),
//! BufferIntervalInSeconds (60–900, default 60)]}]}`. The function `arn:…:lambda:…:function:NAME`
//! is invoked with Lambda's Invoke API, `POST <base>/2015-03-31/functions/NAME/invocations`,
//! where `<base>` is `AWS_ENDPOINT_URL_LAMBDA` (the SDKs' service-specific endpoint variable;
//! the Lambda runtime interface emulator and Lambda-compatible servers answer this path). The
//! request is not signed.
//!
//! Event: `{invocationId, deliveryStreamArn, region, records: [{recordId, approximateArrivalTimestamp,
//! data (base64)}]}`. Answer: `{records: [{recordId, result: Ok|Dropped|ProcessingFailed, data,
//! metadata?}]}`; every recordId must come back exactly once. An invocation that fails (a status
//! other than 200, an `X-Amz-Function-Error` header, a malformed answer, a missing or unknown
//! recordId) is retried NumberOfRetries times; then all its records are ProcessingFailed.
//! ProcessingFailed records go to the S3 destination as error records under
//! `processing-failed` (`{attemptsMade, arrivalTimestamp, errorCode, errorMessage,
//! attemptEndingTimestamp, rawData, lambdaArn}`). Invocations carry about BufferSizeInMBs of
//! records each; BufferIntervalInSeconds is accepted and described but the delivery buffer's
//! own interval decides when records are processed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::FirehoseError;

pub const RETRIES_DEFAULT: u32 = 3;
const RETRIES_MAX: i64 = 300;
const INVOKE_TIMEOUT: Duration = Duration::from_secs(300);
/// Lambda's synchronous payload limit, each way.
const PAYLOAD_BYTES_MAX: usize = 6 * 1024 * 1024;

/// A configured Lambda processor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LambdaTransform {
    pub lambda_arn: String,
    pub retries: u32,
    /// Raw record bytes per invocation (BufferSizeInMBs).
    pub batch_bytes_max: usize,
    /// The ProcessingConfiguration as given, JSON text, for DescribeDeliveryStream.
    pub described: String,
}

/// What a ProcessingConfiguration asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processors {
    pub lambda: Option<LambdaTransform>,
    /// MetadataExtraction's MetadataExtractionQuery (dynamic partitioning only).
    pub metadata_query: Option<String>,
    /// AppendDelimiterToRecord (dynamic partitioning only): `\n` after each record.
    pub append_delimiter: bool,
}

fn parameters_of(processor: &Value) -> HashMap<String, String> {
    let mut parameters = HashMap::new();
    for parameter in processor
        .get("Parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = parameter
            .get("ParameterName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let value = parameter
            .get("ParameterValue")
            .and_then(Value::as_str)
            .unwrap_or("");
        parameters.insert(name.to_owned(), value.to_owned());
    }
    parameters
}

/// Parses a ProcessingConfiguration (all `None` when absent or disabled). MetadataExtraction
/// and AppendDelimiterToRecord are taken only with dynamic partitioning (`dynamic`).
pub fn parse(config: &Value, member: &str, dynamic: bool) -> Result<Processors, FirehoseError> {
    let mut out = Processors::default();
    if !config
        .get("Enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Ok(out);
    }
    let processors = config
        .get("Processors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if processors.is_empty() {
        return Err(FirehoseError::invalid(
            "ProcessingConfiguration is enabled but names no processor.",
        ));
    }
    for processor in &processors {
        let kind = processor.get("Type").and_then(Value::as_str).unwrap_or("");
        let parameters = parameters_of(processor);
        match kind {
            "Lambda" if out.lambda.is_none() => {
                out.lambda = Some(lambda(&parameters, config, member)?);
            }
            "Lambda" => {
                return Err(FirehoseError::invalid(
                    "Only one Lambda processor is allowed.",
                ));
            }
            "MetadataExtraction" | "AppendDelimiterToRecord" if !dynamic => {
                return Err(FirehoseError::invalid(format!(
                    "Processor type {kind} needs dynamic partitioning (DynamicPartitioningConfiguration Enabled)."
                )));
            }
            "MetadataExtraction" => {
                let engine = parameters
                    .get("JsonParsingEngine")
                    .map_or("JQ-1.6", String::as_str);
                if engine != "JQ-1.6" {
                    return Err(FirehoseError::invalid(format!(
                        "JsonParsingEngine {engine} is not supported: use JQ-1.6."
                    )));
                }
                let query = parameters.get("MetadataExtractionQuery").cloned().ok_or_else(|| {
                    FirehoseError::invalid(
                        "The MetadataExtraction processor needs a MetadataExtractionQuery parameter.",
                    )
                })?;
                crate::partition::Query::compile(&query).map_err(|detail| {
                    FirehoseError::invalid(format!(
                        "MetadataExtractionQuery '{query}' is not a valid JQ expression: {detail}"
                    ))
                })?;
                out.metadata_query = Some(query);
            }
            "AppendDelimiterToRecord" => out.append_delimiter = true,
            other => {
                return Err(FirehoseError::invalid(format!(
                    "Processor type {other} is not supported by this appliance."
                )));
            }
        }
    }
    Ok(out)
}

fn lambda(
    parameters: &HashMap<String, String>,
    config: &Value,
    member: &str,
) -> Result<LambdaTransform, FirehoseError> {
    let lambda_arn = parameters.get("LambdaArn").cloned().ok_or_else(|| {
        FirehoseError::invalid(format!(
            "{member}: the Lambda processor needs a LambdaArn parameter."
        ))
    })?;
    function_name(&lambda_arn).ok_or_else(|| {
        FirehoseError::invalid(format!(
            "LambdaArn {lambda_arn} is not a Lambda function ARN."
        ))
    })?;
    let number = |name: &str, min: f64, max: f64, default: f64| -> Result<f64, FirehoseError> {
        match parameters.get(name) {
            None => Ok(default),
            Some(text) => match text.parse::<f64>() {
                Ok(v) if (min..=max).contains(&v) => Ok(v),
                _ => Err(FirehoseError::invalid(format!(
                    "Processor parameter {name} must be a number between {min} and {max}, not '{text}'."
                ))),
            },
        }
    };
    let retries = number(
        "NumberOfRetries",
        0.0,
        RETRIES_MAX as f64,
        f64::from(RETRIES_DEFAULT),
    )? as u32;
    let size_mib = number("BufferSizeInMBs", 0.2, 3.0, 1.0)?;
    number("BufferIntervalInSeconds", 60.0, 900.0, 60.0)?;
    Ok(LambdaTransform {
        lambda_arn,
        retries,
        batch_bytes_max: (size_mib * 1024.0 * 1024.0) as usize,
        described: config.to_string(),
    })
}

/// The function name of `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`.
pub fn function_name(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts[..] {
        ["arn", _, "lambda", _, _, "function", name]
        | ["arn", _, "lambda", _, _, "function", name, _]
            if !name.is_empty() =>
        {
            Some(name)
        }
        _ => None,
    }
}

/// The error code of a record the function itself answered ProcessingFailed for.
pub const PROCESSING_FAILED: &str = "Lambda.ProcessingFailed";

/// What became of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new data and the partition keys of `metadata.partitionKeys`.
    Ok(Vec<u8>, crate::partition::Keys),
    Dropped,
    Failed {
        error_code: String,
        error_message: String,
        attempts: u32,
    },
}

/// Invokes the function.
#[derive(Clone, Debug)]
pub struct Invoker {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    base: Option<String>,
}

impl Invoker {
    /// Reads `AWS_ENDPOINT_URL_LAMBDA`. Must run inside a tokio runtime.
    pub fn from_env() -> Self {
        let base = std::env::var("AWS_ENDPOINT_URL_LAMBDA")
            .ok()
            .map(|b| b.trim_end_matches('/').to_owned());
        Self {
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
            base,
        }
    }

    /// Transforms `records` (data, arrival ms): one outcome per record, in order.
    pub async fn transform(
        &self,
        transform: &LambdaTransform,
        delivery_stream_arn: &str,
        region: &str,
        records: &[(&[u8], u64)],
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(records.len());
        let mut start = 0;
        while start < records.len() {
            // One invocation: records up to the processor's buffer size (at least one).
            let mut end = start + 1;
            let mut bytes = records[start].0.len();
            while end < records.len() && bytes + records[end].0.len() <= transform.batch_bytes_max {
                bytes += records[end].0.len();
                end += 1;
            }
            outcomes.extend(
                self.invoke_with_retries(
                    transform,
                    delivery_stream_arn,
                    region,
                    &records[start..end],
                )
                .await,
            );
            start = end;
        }
        outcomes
    }

    async fn invoke_with_retries(
        &self,
        transform: &LambdaTransform,
        delivery_stream_arn: &str,
        region: &str,
        records: &[(&[u8], u64)],
    ) -> Vec<Outcome> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self
                .invoke(transform, delivery_stream_arn, region, records)
                .await
            {
                Ok(outcomes) => return outcomes,
                Err((error_code, error_message)) => {
                    tracing::warn!(lambda_arn = %transform.lambda_arn, attempts, error_code, %error_message, "A transform invocation failed.");
                    if attempts > transform.retries {
                        return records
                            .iter()
                            .map(|_| Outcome::Failed {
                                error_code: error_code.to_owned(),
                                error_message: error_message.clone(),
                                attempts,
                            })
                            .collect();
                    }
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempts))).await;
                }
            }
        }
    }

    /// One synchronous Invoke of the function `function_arn` with the JSON `event`: the
    /// function's answer, or the error code and message of a failed invocation (no function
    /// server configured, a payload over 6 MB either way, a connection failure, a timeout, an
    /// HTTP status other than 200 or an `X-Amz-Function-Error` header). Analytics invokes its
    /// output and pre-processing functions through this too, so every Lambda of the server is
    /// reached the same way.
    pub async fn invoke_function(
        &self,
        function_arn: &str,
        event: String,
    ) -> Result<Bytes, (&'static str, String)> {
        let Some(base) = &self.base else {
            return Err((
                "Lambda.InvokeAccessDenied",
                "AWS_ENDPOINT_URL_LAMBDA is not set: no function server to invoke.".to_owned(),
            ));
        };
        let name = function_name(function_arn).unwrap_or("");
        if event.len() > PAYLOAD_BYTES_MAX {
            return Err((
                "Lambda.PayloadTooLarge",
                "The invocation payload is over 6 MB.".to_owned(),
            ));
        }
        let request =
            hyper::Request::post(format!("{base}/2015-03-31/functions/{name}/invocations"))
                .header("Content-Type", "application/json")
                .header("X-Amz-Invocation-Type", "RequestResponse")
                .body(Full::new(Bytes::from(event)))
                .map_err(|e| ("Lambda.InvalidEndpoint", e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ("Lambda.InvokeFailed", format!("{e:?}")))?;
            let status = response.status().as_u16();
            let function_error = response.headers().contains_key("x-amz-function-error");
            let body = http_body_util::Limited::new(response.into_body(), PAYLOAD_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| ("Lambda.InvokeFailed", e.to_string()))?
                .to_bytes();
            Ok::<_, (&'static str, String)>((status, function_error, body))
        };
        let (status, function_error, body) = tokio::time::timeout(INVOKE_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                (
                    "Lambda.FunctionTimedOut",
                    "The function did not answer in time.".to_owned(),
                )
            })??;
        if status != 200 || function_error {
            return Err((
                "Lambda.FunctionError",
                format!(
                    "The function answered HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(512)])
                ),
            ));
        }
        Ok(body)
    }

    async fn invoke(
        &self,
        transform: &LambdaTransform,
        delivery_stream_arn: &str,
        region: &str,
        records: &[(&[u8], u64)],
    ) -> Result<Vec<Outcome>, (&'static str, String)> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let ids: Vec<String> = (0..records.len()).map(|i| format!("{:020}", i)).collect();
        let event = json!({
            "invocationId": uuid::Uuid::new_v4().to_string(),
            "deliveryStreamArn": delivery_stream_arn,
            "region": region,
            "records": records.iter().zip(&ids).map(|((data, arrival), id)| json!({
                "recordId": id,
                "approximateArrivalTimestamp": arrival,
                "data": b64.encode(data),
            })).collect::<Vec<_>>(),
        })
        .to_string();
        let body = self.invoke_function(&transform.lambda_arn, event).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| ("Lambda.JsonProcessingException", e.to_string()))?;
        let returned = answer
            .get("records")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                (
                    "Lambda.MissingRecords",
                    "The function's answer has no records.".to_owned(),
                )
            })?;
        let mut by_id: HashMap<&str, &Value> = HashMap::new();
        for record in returned {
            let id = record.get("recordId").and_then(Value::as_str).unwrap_or("");
            if !ids.iter().any(|i| i == id) || by_id.insert(id, record).is_some() {
                return Err((
                    "Lambda.DuplicatedRecordId",
                    format!("The function returned an unknown or repeated recordId '{id}'."),
                ));
            }
        }
        let mut outcomes = Vec::with_capacity(records.len());
        for id in &ids {
            let record = by_id.get(id.as_str()).ok_or_else(|| {
                (
                    "Lambda.MissingRecordId",
                    format!("The function did not return recordId {id}."),
                )
            })?;
            let outcome = match record.get("result").and_then(Value::as_str) {
                Some("Ok") => {
                    let data = record.get("data").and_then(Value::as_str).unwrap_or("");
                    let data = b64.decode(data).map_err(|_| {
                        (
                            "Lambda.InvalidData",
                            format!("The data of recordId {id} is not base64."),
                        )
                    })?;
                    let keys = record
                        .get("metadata")
                        .and_then(|m| m.get("partitionKeys"))
                        .and_then(Value::as_object)
                        .map(|keys| {
                            keys.iter()
                                .map(|(k, v)| {
                                    let text = match v {
                                        Value::String(s) => s.clone(),
                                        other => other.to_string(),
                                    };
                                    (k.clone(), text)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Outcome::Ok(data, keys)
                }
                Some("Dropped") => Outcome::Dropped,
                Some("ProcessingFailed") => Outcome::Failed {
                    error_code: PROCESSING_FAILED.to_owned(),
                    error_message: "The function reported ProcessingFailed for the record."
                        .to_owned(),
                    attempts: 1,
                },
                other => {
                    return Err((
                        "Lambda.InvalidResult",
                        format!("The result of recordId {id} is {other:?}."),
                    ));
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

/// One `processing-failed` error record (a JSON line).
pub fn error_record(
    transform: &LambdaTransform,
    data: &[u8],
    arrival_ms: u64,
    error_code: &str,
    error_message: &str,
    attempts: u32,
) -> Vec<u8> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut line = json!({
        "attemptsMade": attempts,
        "arrivalTimestamp": arrival_ms,
        "errorCode": error_code,
        "errorMessage": error_message,
        "attemptEndingTimestamp": now_ms,
        "rawData": base64::engine::general_purpose::STANDARD.encode(data),
        "lambdaArn": transform.lambda_arn,
    })
    .to_string()
    .into_bytes();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_arns_name_their_function_with_or_without_a_qualifier() {
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:000000000000:function:f"),
            Some("f")
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST"),
            Some("f")
        );
        assert_eq!(function_name("arn:aws:s3:::b"), None);
    }

    #[test]
    fn processing_configurations_are_checked() {
        let config = |params: Value| json!({"Enabled": true, "Processors": [{"Type": "Lambda", "Parameters": params}]});
        let arn = json!({"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:us-east-1:0:function:f"});
        let ok = parse(&config(json!([arn])), "p", false)
            .expect("valid")
            .lambda
            .expect("enabled");
        assert_eq!(ok.retries, 3);
        assert_eq!(ok.batch_bytes_max, 1024 * 1024);
        assert!(parse(&config(json!([])), "p", false).is_err());
        let too_big = json!({"ParameterName": "BufferSizeInMBs", "ParameterValue": "4"});
        assert!(parse(&config(json!([arn, too_big])), "p", false).is_err());
        assert_eq!(
            parse(&json!({"Enabled": false}), "p", false).expect("valid"),
            Processors::default()
        );
        let extraction = |query: &str| {
            json!({"Enabled": true, "Processors": [
                {"Type": "MetadataExtraction", "Parameters": [
                    {"ParameterName": "MetadataExtractionQuery", "ParameterValue": query},
                    {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
                {"Type": "AppendDelimiterToRecord", "Parameters": []}]})
        };
        assert!(
            parse(&extraction("{c:.c}"), "p", false).is_err(),
            "needs dynamic partitioning"
        );
        let dynamic = parse(&extraction("{c:.c}"), "p", true).expect("valid");
        assert_eq!(dynamic.metadata_query.as_deref(), Some("{c:.c}"));
        assert!(dynamic.append_delimiter);
        assert!(parse(&extraction("{c:.c"), "p", true).is_err(), "bad jq");
    }
}
