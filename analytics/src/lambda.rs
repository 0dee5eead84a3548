//! The two Lambda contracts of a KDA for SQL application, as events built and answers read
//! (the invocation itself goes through [`crate::peers::Functions`]).
//!
//! Output (`LambdaOutput`): event `{invocationId, applicationArn, records: [{recordId,
//! lambdaDeliveryRecordMetadata: {retryHint}, data}]}`, answer `{records: [{recordId, result:
//! Ok|DeliveryFailed}]}`. A record the answer marks DeliveryFailed, or leaves out, is sent again
//! with its retryHint one higher; so is every record of an invocation that failed or answered
//! something that is not this shape. Delivery is at least once.
//!
//! Pre-processing (`InputLambdaProcessor`): event `{invocationId, applicationArn, streamArn,
//! records: [{recordId, kinesisStreamRecordMetadata: {sequenceNumber, partitionKey, shardId,
//! approximateArrivalTimestamp} | kinesisFirehoseRecordMetadata: {approximateArrivalTimestamp},
//! data}]}`, answer `{records: [{recordId, result: Ok|Dropped|ProcessingFailed, data}]}`. Ok
//! data goes on to the input schema, Dropped records are gone, and ProcessingFailed records,
//! records the answer leaves out or garbles, and every record of an answer that is not this
//! shape become `error_stream` rows.
//!
//! Record data travels base64-encoded both ways. An invocation carries at most
//! [`PAYLOAD_BYTES_MAX`] of event, Lambda's synchronous payload limit.

use std::collections::HashMap;

use base64::Engine as _;
use serde_json::{Value, json};

/// Lambda's synchronous request payload limit (6 MB).
pub const PAYLOAD_BYTES_MAX: usize = 6 * 1024 * 1024;
/// Room for an event's own members besides its records.
const EVENT_OVERHEAD_BYTES: usize = 1024;
/// Room for one record's members besides its base64 data.
const RECORD_OVERHEAD_BYTES: usize = 512;

/// `error_stream` ERROR_NAME of a record the pre-processing function answered ProcessingFailed
/// for `[verify AWS's name]`.
pub const PROCESSING_FAILED: &str = "Lambda_Processing_Failed";
/// `error_stream` ERROR_NAME of a record whose answer was missing or malformed `[verify]`.
pub const MALFORMED_ANSWER: &str = "Lambda_Malformed_Response";

/// The size of a record in an event.
pub fn event_bytes(data_bytes: usize) -> usize {
    data_bytes.div_ceil(3) * 4 + RECORD_OVERHEAD_BYTES
}

/// How many of `sizes` (record data bytes, in order) go into the next invocation: as many as
/// fit [`PAYLOAD_BYTES_MAX`], and at least one (a row is at most 512 KB, so one always fits).
pub fn invocation_len(sizes: impl IntoIterator<Item = usize>) -> usize {
    let mut bytes = EVENT_OVERHEAD_BYTES;
    let mut count = 0;
    for size in sizes {
        bytes += event_bytes(size);
        if count > 0 && bytes > PAYLOAD_BYTES_MAX {
            break;
        }
        count += 1;
    }
    count
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// One record of an output invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub record_id: String,
    pub retry_hint: u32,
    pub data: Vec<u8>,
}

/// The event of an output invocation.
pub fn output_event(
    invocation_id: &str,
    application_arn: &str,
    records: &[DeliveryRecord],
) -> String {
    json!({
        "invocationId": invocation_id,
        "applicationArn": application_arn,
        "records": records.iter().map(|r| json!({
            "recordId": r.record_id,
            "lambdaDeliveryRecordMetadata": {"retryHint": r.retry_hint},
            "data": b64().encode(&r.data),
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The record ids an output answer reports Ok for; `Err` when the answer is not the contract's
/// shape (every record is then sent again).
pub fn delivered_ids(answer: &[u8]) -> Result<Vec<String>, String> {
    let answer: Value =
        serde_json::from_slice(answer).map_err(|e| format!("The answer is not JSON: {e}"))?;
    let records = answer
        .get("records")
        .and_then(Value::as_array)
        .ok_or("The answer has no records array")?;
    let mut ok = Vec::with_capacity(records.len());
    for record in records {
        let id = record
            .get("recordId")
            .and_then(Value::as_str)
            .ok_or("A record of the answer has no recordId")?;
        match record.get("result").and_then(Value::as_str) {
            Some("Ok") => ok.push(id.to_owned()),
            Some("DeliveryFailed") => {}
            other => {
                return Err(format!(
                    "recordId {id} has result {other:?}, not Ok or DeliveryFailed"
                ));
            }
        }
    }
    Ok(ok)
}

/// Where a record to pre-process came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceMetadata {
    KinesisStream {
        sequence_number: String,
        partition_key: String,
        shard_id: String,
    },
    DeliveryStream,
}

/// One record to pre-process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRecord<'a> {
    pub data: &'a [u8],
    pub arrival_ms: u64,
    pub metadata: SourceMetadata,
}

/// The event of a pre-processing invocation; record ids are the records' indexes.
pub fn preprocess_event(
    invocation_id: &str,
    application_arn: &str,
    stream_arn: &str,
    records: &[SourceRecord<'_>],
) -> String {
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut record = json!({"recordId": i.to_string(), "data": b64().encode(r.data)});
            match &r.metadata {
                SourceMetadata::KinesisStream {
                    sequence_number,
                    partition_key,
                    shard_id,
                } => {
                    record["kinesisStreamRecordMetadata"] = json!({
                        "sequenceNumber": sequence_number,
                        "partitionKey": partition_key,
                        "shardId": shard_id,
                        "approximateArrivalTimestamp": r.arrival_ms,
                    });
                }
                SourceMetadata::DeliveryStream => {
                    record["kinesisFirehoseRecordMetadata"] =
                        json!({"approximateArrivalTimestamp": r.arrival_ms});
                }
            }
            record
        })
        .collect();
    json!({
        "invocationId": invocation_id,
        "applicationArn": application_arn,
        "streamArn": stream_arn,
        "records": records,
    })
    .to_string()
}

/// What became of one pre-processed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Processed {
    Ok(Vec<u8>),
    Dropped,
    /// For `error_stream`: its ERROR_NAME and MESSAGE.
    Failed {
        error_name: &'static str,
        message: String,
    },
}

/// One outcome per record of an invocation of `count` records, from the function's answer.
pub fn processed(answer: &[u8], count: usize) -> Vec<Processed> {
    let malformed = |message: String| Processed::Failed {
        error_name: MALFORMED_ANSWER,
        message,
    };
    let answer: Value = match serde_json::from_slice(answer) {
        Ok(v) => v,
        Err(e) => return vec![malformed(format!("The function's answer is not JSON: {e}")); count],
    };
    let Some(records) = answer.get("records").and_then(Value::as_array) else {
        return vec![malformed("The function's answer has no records array".to_owned()); count];
    };
    let mut by_id: HashMap<&str, &Value> = HashMap::new();
    for record in records {
        if let Some(id) = record.get("recordId").and_then(Value::as_str) {
            by_id.insert(id, record);
        }
    }
    (0..count)
        .map(|i| {
            let id = i.to_string();
            let Some(record) = by_id.get(id.as_str()) else {
                return malformed(format!("The function's answer has no recordId {id}"));
            };
            match record.get("result").and_then(Value::as_str) {
                Some("Ok") => match record
                    .get("data")
                    .and_then(Value::as_str)
                    .map(|d| b64().decode(d))
                {
                    Some(Ok(data)) => Processed::Ok(data),
                    _ => malformed(format!("The data of recordId {id} is not base64")),
                },
                Some("Dropped") => Processed::Dropped,
                Some("ProcessingFailed") => Processed::Failed {
                    error_name: PROCESSING_FAILED,
                    message: format!("The function answered ProcessingFailed for recordId {id}"),
                },
                other => malformed(format!(
                    "recordId {id} has result {other:?}, not Ok, Dropped or ProcessingFailed"
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_hold_what_fits_six_megabytes_and_at_least_one_record() {
        assert_eq!(invocation_len([10, 10, 10]), 3);
        let big = 2 * 1024 * 1024;
        // Three 2 MiB records are 8 MiB of base64: two fit.
        assert_eq!(invocation_len([big, big, big]), 2);
        assert_eq!(invocation_len([PAYLOAD_BYTES_MAX]), 1);
        assert_eq!(invocation_len(std::iter::empty()), 0);
    }

    #[test]
    fn output_events_carry_base64_data_and_retry_hints() {
        let event = output_event(
            "inv",
            "arn:app",
            &[DeliveryRecord {
                record_id: "7".into(),
                retry_hint: 2,
                data: b"{\"a\":1}".to_vec(),
            }],
        );
        let v: Value = serde_json::from_str(&event).expect("JSON");
        assert_eq!(v["applicationArn"], "arn:app");
        assert_eq!(v["records"][0]["recordId"], "7");
        assert_eq!(
            v["records"][0]["lambdaDeliveryRecordMetadata"]["retryHint"],
            2
        );
        assert_eq!(v["records"][0]["data"], "eyJhIjoxfQ==");
    }

    #[test]
    fn output_answers_report_delivered_ids_and_refuse_unknown_results() {
        let answer = br#"{"records":[{"recordId":"1","result":"Ok"},{"recordId":"2","result":"DeliveryFailed"}]}"#;
        assert_eq!(delivered_ids(answer), Ok(vec!["1".to_owned()]));
        assert!(delivered_ids(br#"{"records":[{"recordId":"1","result":"Maybe"}]}"#).is_err());
        assert!(delivered_ids(b"nope").is_err());
        assert!(delivered_ids(b"{}").is_err());
    }

    #[test]
    fn preprocessing_answers_map_to_ok_dropped_and_failed_records() {
        let answer = br#"{"records":[
            {"recordId":"0","result":"Ok","data":"eA=="},
            {"recordId":"1","result":"Dropped"},
            {"recordId":"2","result":"ProcessingFailed"},
            {"recordId":"3","result":"Ok","data":"***"}]}"#;
        let out = processed(answer, 5);
        assert_eq!(out[0], Processed::Ok(b"x".to_vec()));
        assert_eq!(out[1], Processed::Dropped);
        assert!(matches!(
            out[2],
            Processed::Failed {
                error_name: PROCESSING_FAILED,
                ..
            }
        ));
        assert!(matches!(
            out[3],
            Processed::Failed {
                error_name: MALFORMED_ANSWER,
                ..
            }
        ));
        // recordId 4 is missing from the answer.
        assert!(matches!(
            out[4],
            Processed::Failed {
                error_name: MALFORMED_ANSWER,
                ..
            }
        ));
        assert!(processed(b"[]", 2).iter().all(|p| matches!(
            p,
            Processed::Failed {
                error_name: MALFORMED_ANSWER,
                ..
            }
        )));
    }

    #[test]
    fn preprocessing_events_carry_the_source_metadata_of_their_kind() {
        let records = [
            SourceRecord {
                data: b"a",
                arrival_ms: 5,
                metadata: SourceMetadata::KinesisStream {
                    sequence_number: "49".into(),
                    partition_key: "k".into(),
                    shard_id: "shardId-000000000000".into(),
                },
            },
            SourceRecord {
                data: b"b",
                arrival_ms: 6,
                metadata: SourceMetadata::DeliveryStream,
            },
        ];
        let v: Value = serde_json::from_str(&preprocess_event("i", "arn:app", "arn:s", &records))
            .expect("JSON");
        assert_eq!(v["streamArn"], "arn:s");
        assert_eq!(
            v["records"][0]["kinesisStreamRecordMetadata"]["partitionKey"],
            "k"
        );
        assert_eq!(
            v["records"][1]["kinesisFirehoseRecordMetadata"]["approximateArrivalTimestamp"],
            6
        );
        assert!(v["records"][1].get("kinesisStreamRecordMetadata").is_none());
    }
}
