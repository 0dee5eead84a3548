//! The OpenSearch-style destination: AmazonopensearchserviceDestinationConfiguration and
//! ElasticsearchDestinationConfiguration with a `ClusterEndpoint` (a DomainARN cannot be
//! resolved here and is refused), delivered with the `_bulk` API.
//!
//! Each record must be one JSON document; it is indexed into `IndexName` plus the rotation
//! suffix of its arrival time (NoRotation; OneHour `-YYYY-MM-DD-HH`; OneDay `-YYYY-MM-DD`,
//! the default; OneWeek `-YYYY-wWW`, weeks starting on Sunday with week 1 holding 1 January;
//! OneMonth `-YYYY-MM`). With DocumentIdOptions FIREHOSE_DEFAULT (the default) every document
//! gets an id made of the delivery stream's creation time, the source shard and the record's
//! position, the same on every retry and redelivery, so a retried bulk request does not index
//! a document twice; NO_DOCUMENT_ID lets the cluster choose. A bulk request that fails, or the
//! documents it reports as failed, are retried with backoff (1 s doubling, at most 60 s) until
//! `RetryOptions.DurationInSeconds` (default 300) has passed since the first failure; documents
//! still failing, and records that are not JSON, go to the S3 configuration as error records of
//! type `AmazonOpenSearchService-failed` (`elasticsearch-failed` for Elasticsearch). With
//! S3BackupMode AllDocuments every record is also written to S3. Requests are not signed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{
    check_length, check_range, merge_s3, processing_description, s3_description, s3_destination,
};
use crate::error::FirehoseError;
use crate::model::S3Destination;
use crate::prefix::Instant as Calendar;

pub const RETRY_DURATION_S_DEFAULT: u32 = 300;
pub const BUFFER_SIZE_MIB_MAX: i64 = 100;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Flavor {
    AmazonOpenSearchService,
    Elasticsearch,
}

impl Flavor {
    pub const fn error_output_type(self) -> &'static str {
        match self {
            Self::AmazonOpenSearchService => "AmazonOpenSearchService-failed",
            Self::Elasticsearch => "elasticsearch-failed",
        }
    }

    const fn member(self) -> &'static str {
        match self {
            Self::AmazonOpenSearchService => "amazonopensearchserviceDestinationConfiguration",
            Self::Elasticsearch => "elasticsearchDestinationConfiguration",
        }
    }

    pub const fn description_member(self) -> &'static str {
        match self {
            Self::AmazonOpenSearchService => "AmazonopensearchserviceDestinationDescription",
            Self::Elasticsearch => "ElasticsearchDestinationDescription",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rotation {
    NoRotation,
    OneHour,
    OneDay,
    OneWeek,
    OneMonth,
}

impl Rotation {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NoRotation" => Self::NoRotation,
            "OneHour" => Self::OneHour,
            "OneDay" => Self::OneDay,
            "OneWeek" => Self::OneWeek,
            "OneMonth" => Self::OneMonth,
            _ => return None,
        })
    }

    const fn as_str(self) -> &'static str {
        match self {
            Self::NoRotation => "NoRotation",
            Self::OneHour => "OneHour",
            Self::OneDay => "OneDay",
            Self::OneWeek => "OneWeek",
            Self::OneMonth => "OneMonth",
        }
    }

    /// The index name of a document that arrived at `arrival_ms`.
    pub fn index(self, index_name: &str, arrival_ms: u64) -> String {
        let t = Calendar::from_ms(arrival_ms);
        match self {
            Self::NoRotation => index_name.to_owned(),
            Self::OneHour => format!(
                "{index_name}-{:04}-{:02}-{:02}-{:02}",
                t.year, t.month, t.day, t.hour
            ),
            Self::OneDay => format!("{index_name}-{:04}-{:02}-{:02}", t.year, t.month, t.day),
            Self::OneMonth => format!("{index_name}-{:04}-{:02}", t.year, t.month),
            Self::OneWeek => {
                // 1970-01-01 was a Thursday (Sunday = 0 → 4).
                let days = arrival_ms / 86_400_000;
                let january_first = days - u64::from(t.day_of_year - 1);
                let weekday_of_january_first = (january_first + 4) % 7;
                let week = (u64::from(t.day_of_year) - 1 + weekday_of_january_first) / 7 + 1;
                format!("{index_name}-{:04}-w{week:02}", t.year)
            }
        }
    }
}

/// An OpenSearch-style destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSearch {
    pub flavor: Flavor,
    pub cluster_endpoint: String,
    pub index_name: String,
    pub type_name: Option<String>,
    pub rotation: Rotation,
    pub buffer_size_mib: u32,
    pub buffer_interval_s: u32,
    pub retry_duration_s: u32,
    pub backup_all: bool,
    pub document_ids: bool,
    pub role_arn: String,
    #[serde(default)]
    pub transform: Option<crate::transform::LambdaTransform>,
}

/// Parses the configuration; the S3 configuration receives failed (or all) documents.
pub fn create(
    config: &Value,
    flavor: Flavor,
) -> Result<(OpenSearch, S3Destination), FirehoseError> {
    let member = flavor.member();
    if config.get("VpcConfiguration").is_some() {
        return Err(FirehoseError::invalid(
            "VpcConfiguration is not supported by this appliance.",
        ));
    }
    let role_arn = config
        .get("RoleARN")
        .and_then(Value::as_str)
        .ok_or_else(|| FirehoseError::missing(&format!("{member}.roleARN")))?
        .to_owned();
    let base = OpenSearch {
        flavor,
        cluster_endpoint: String::new(),
        index_name: String::new(),
        type_name: None,
        rotation: Rotation::OneDay,
        buffer_size_mib: crate::model::BUFFER_SIZE_MIB_DEFAULT,
        buffer_interval_s: crate::model::BUFFER_INTERVAL_S_DEFAULT,
        retry_duration_s: RETRY_DURATION_S_DEFAULT,
        backup_all: false,
        document_ids: true,
        role_arn,
        transform: None,
    };
    let next = merge(&base, config, member)?;
    if next.cluster_endpoint.is_empty() {
        return Err(FirehoseError::invalid(
            if config.get("DomainARN").is_some() {
                "DomainARN cannot be resolved by this appliance: give the ClusterEndpoint."
            } else {
                "Exactly one of DomainARN and ClusterEndpoint is required: this appliance takes ClusterEndpoint."
            },
        ));
    }
    if next.index_name.is_empty() {
        return Err(FirehoseError::missing(&format!("{member}.indexName")));
    }
    let s3: crate::wire::S3Configuration = serde_json::from_value(
        config
            .get("S3Configuration")
            .cloned()
            .ok_or_else(|| FirehoseError::missing(&format!("{member}.s3Configuration")))?,
    )
    .map_err(|e| FirehoseError::new(crate::error::ErrorKind::Serialization, e.to_string()))?;
    let backup = s3_destination(s3, false, &format!("{member}.s3Configuration"))?;
    Ok((next, backup))
}

/// An update (`*DestinationUpdate`) applied to `current` and its backup configuration.
pub fn update(
    current: &OpenSearch,
    backup: &S3Destination,
    update: &Value,
) -> Result<(OpenSearch, S3Destination), FirehoseError> {
    let member = match current.flavor {
        Flavor::AmazonOpenSearchService => "amazonopensearchserviceDestinationUpdate",
        Flavor::Elasticsearch => "elasticsearchDestinationUpdate",
    };
    let next = merge(current, update, member)?;
    let backup = match update.get("S3Update") {
        Some(s3) => {
            let s3: crate::wire::S3Configuration =
                serde_json::from_value(s3.clone()).map_err(|e| {
                    FirehoseError::new(crate::error::ErrorKind::Serialization, e.to_string())
                })?;
            merge_s3(backup, s3, false, &format!("{member}.s3Update"), false)?
        }
        None => backup.clone(),
    };
    Ok((next, backup))
}

fn merge(current: &OpenSearch, config: &Value, member: &str) -> Result<OpenSearch, FirehoseError> {
    let mut next = current.clone();
    let text = |name: &str| config.get(name).and_then(Value::as_str);
    if let Some(endpoint) = text("ClusterEndpoint") {
        check_length(endpoint, 1, 512, &format!("{member}.clusterEndpoint"))?;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || endpoint.parse::<hyper::Uri>().is_err()
        {
            return Err(FirehoseError::validation(
                endpoint,
                &format!("{member}.clusterEndpoint"),
                "Member must satisfy regular expression pattern: https?://.*",
            ));
        }
        next.cluster_endpoint = endpoint.trim_end_matches('/').to_owned();
    }
    if let Some(index) = text("IndexName") {
        check_length(index, 1, 80, &format!("{member}.indexName"))?;
        next.index_name = index.to_owned();
    }
    if let Some(type_name) = text("TypeName") {
        check_length(type_name, 0, 100, &format!("{member}.typeName"))?;
        next.type_name = (!type_name.is_empty()).then(|| type_name.to_owned());
    }
    if let Some(rotation) = text("IndexRotationPeriod") {
        next.rotation = Rotation::parse(rotation).ok_or_else(|| {
            FirehoseError::validation(
                rotation,
                &format!("{member}.indexRotationPeriod"),
                "Member must satisfy enum value set: [NoRotation, OneHour, OneDay, OneWeek, OneMonth]",
            )
        })?;
    }
    if let Some(hints) = config.get("BufferingHints") {
        if let Some(size) = hints.get("SizeInMBs").and_then(Value::as_i64) {
            next.buffer_size_mib = check_range(
                size,
                1,
                BUFFER_SIZE_MIB_MAX,
                &format!("{member}.bufferingHints.sizeInMBs"),
            )? as u32;
        }
        if let Some(interval) = hints.get("IntervalInSeconds").and_then(Value::as_i64) {
            next.buffer_interval_s = check_range(
                interval,
                0,
                900,
                &format!("{member}.bufferingHints.intervalInSeconds"),
            )? as u32;
        }
    }
    if let Some(duration) = config
        .get("RetryOptions")
        .and_then(|r| r.get("DurationInSeconds"))
        .and_then(Value::as_i64)
    {
        next.retry_duration_s = check_range(
            duration,
            0,
            7200,
            &format!("{member}.retryOptions.durationInSeconds"),
        )? as u32;
    }
    if let Some(mode) = text("S3BackupMode") {
        next.backup_all = match mode {
            "FailedDocumentsOnly" => false,
            "AllDocuments" => true,
            other => {
                return Err(FirehoseError::validation(
                    other,
                    &format!("{member}.s3BackupMode"),
                    "Member must satisfy enum value set: [FailedDocumentsOnly, AllDocuments]",
                ));
            }
        };
    }
    if let Some(format) = config
        .get("DocumentIdOptions")
        .and_then(|d| d.get("DefaultDocumentIdFormat"))
        .and_then(Value::as_str)
    {
        next.document_ids = match format {
            "FIREHOSE_DEFAULT" => true,
            "NO_DOCUMENT_ID" => false,
            other => {
                return Err(FirehoseError::validation(
                    other,
                    &format!("{member}.documentIdOptions.defaultDocumentIdFormat"),
                    "Member must satisfy enum value set: [FIREHOSE_DEFAULT, NO_DOCUMENT_ID]",
                ));
            }
        };
    }
    if let Some(processing) = config.get("ProcessingConfiguration") {
        next.transform = crate::transform::parse(processing, member, false)?.lambda;
    }
    Ok(next)
}

/// The destination's description.
pub fn description(os: &OpenSearch, backup: &S3Destination) -> Value {
    let mut out = json!({
        "RoleARN": os.role_arn,
        "ClusterEndpoint": os.cluster_endpoint,
        "IndexName": os.index_name,
        "IndexRotationPeriod": os.rotation.as_str(),
        "BufferingHints": { "SizeInMBs": os.buffer_size_mib, "IntervalInSeconds": os.buffer_interval_s },
        "RetryOptions": { "DurationInSeconds": os.retry_duration_s },
        "S3BackupMode": if os.backup_all { "AllDocuments" } else { "FailedDocumentsOnly" },
        "S3DestinationDescription": s3_description(backup),
        "ProcessingConfiguration": processing_description(os.transform.as_ref(), None),
        "CloudWatchLoggingOptions": { "Enabled": false },
        "DocumentIdOptions": { "DefaultDocumentIdFormat": if os.document_ids { "FIREHOSE_DEFAULT" } else { "NO_DOCUMENT_ID" } },
    });
    if let Some(type_name) = &os.type_name {
        out["TypeName"] = json!(type_name);
    }
    out
}

/// One document to index.
#[derive(Clone, Debug)]
pub struct Document<'a> {
    pub data: &'a [u8],
    pub arrival_ms: u64,
    pub id: String,
}

/// A document that could not be indexed, for its error record.
#[derive(Clone, Debug)]
pub struct Failed {
    pub index: usize,
    pub error_code: String,
    pub error_message: String,
}

/// The single-line JSON of a record, or why it is not a document.
fn document_line(data: &[u8]) -> Result<Vec<u8>, String> {
    let trimmed = data.trim_ascii();
    let value: Value =
        serde_json::from_slice(trimmed).map_err(|e| format!("the record is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("the record is not a JSON object".to_owned());
    }
    Ok(if trimmed.contains(&b'\n') {
        value.to_string().into_bytes()
    } else {
        trimmed.to_vec()
    })
}

/// The error code of a record that is not a JSON document (never sent, never retried).
pub const MALFORMED_DOCUMENT: &str = "OS.MalformedDocument";

/// Indexes `documents` with `_bulk`, retrying failures by the module's rules; the documents that
/// finally failed (by their position in `documents`) and the number of attempts. `None` when
/// `alive` said the delivery stream is gone. Each attempt that left documents unindexed is told
/// to `attempt_failed` (the first such document's error code and message) as it happens.
pub async fn deliver(
    http: &crate::http_delivery::HttpSender,
    os: &OpenSearch,
    documents: &[Document<'_>],
    alive: &dyn Fn() -> bool,
    attempt_failed: &dyn Fn(&str, &str),
) -> Option<(Vec<Failed>, u32)> {
    let mut failed = Vec::new();
    let mut pending: Vec<(usize, Vec<u8>, String)> = Vec::with_capacity(documents.len());
    for (i, document) in documents.iter().enumerate() {
        match document_line(document.data) {
            Ok(line) => pending.push((
                i,
                line,
                os.rotation.index(&os.index_name, document.arrival_ms),
            )),
            Err(message) => failed.push(Failed {
                index: i,
                error_code: MALFORMED_DOCUMENT.to_owned(),
                error_message: message,
            }),
        }
    }
    let mut attempts = 0;
    let mut first_failure: Option<Instant> = None;
    let mut backoff = BACKOFF_FIRST;
    let mut last_errors: Vec<(usize, String, String)> = Vec::new();
    while !pending.is_empty() {
        if !alive() {
            return None;
        }
        attempts += 1;
        let mut body = Vec::new();
        for (i, line, index) in &pending {
            let mut action = json!({ "_index": index });
            if os.document_ids {
                action["_id"] = json!(documents[*i].id);
            }
            if let Some(type_name) = &os.type_name {
                action["_type"] = json!(type_name);
            }
            body.extend_from_slice(json!({ "index": action }).to_string().as_bytes());
            body.push(b'\n');
            body.extend_from_slice(line);
            body.push(b'\n');
        }
        let url = format!("{}/_bulk", os.cluster_endpoint);
        let outcome = http.post(&url, "application/x-ndjson", body).await;
        let mut still = Vec::new();
        last_errors.clear();
        match outcome {
            Ok((200, answer)) => {
                let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                let items = answer
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if items.len() != pending.len() {
                    for (i, _, _) in &pending {
                        last_errors.push((
                            *i,
                            "OS.InvalidResponse".to_owned(),
                            "The _bulk answer does not list every document.".to_owned(),
                        ));
                    }
                    still = std::mem::take(&mut pending);
                } else {
                    for (item, entry) in items.iter().zip(pending.drain(..)) {
                        let result = item
                            .as_object()
                            .and_then(|o| o.values().next())
                            .cloned()
                            .unwrap_or(Value::Null);
                        let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
                        if (200..300).contains(&status) {
                            continue;
                        }
                        let error = result.get("error");
                        let code = error
                            .and_then(|e| e.get("type"))
                            .and_then(Value::as_str)
                            .unwrap_or("unknown");
                        let message = error
                            .and_then(|e| e.get("reason"))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned();
                        last_errors.push((entry.0, format!("OS.{code}"), message));
                        still.push(entry);
                    }
                }
            }
            Ok((status, answer)) => {
                let message = format!(
                    "The _bulk request answered HTTP {status}: {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(256)])
                );
                for (i, _, _) in &pending {
                    last_errors.push((*i, "OS.RequestFailed".to_owned(), message.clone()));
                }
                still = std::mem::take(&mut pending);
            }
            Err(message) => {
                for (i, _, _) in &pending {
                    last_errors.push((*i, "OS.ConnectionFailed".to_owned(), message.clone()));
                }
                still = std::mem::take(&mut pending);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if let Some((_, error_code, error_message)) = last_errors.first() {
            attempt_failed(error_code, error_message);
        }
        let failed_at = *first_failure.get_or_insert_with(Instant::now);
        let window = Duration::from_secs(u64::from(os.retry_duration_s));
        if failed_at.elapsed() >= window {
            failed.extend(
                last_errors
                    .drain(..)
                    .map(|(index, error_code, error_message)| Failed {
                        index,
                        error_code,
                        error_message,
                    }),
            );
            break;
        }
        tracing::warn!(endpoint = %os.cluster_endpoint, documents = pending.len(), attempts, "Documents were not indexed; retrying.");
        tokio::time::sleep(backoff.min(window.saturating_sub(failed_at.elapsed()))).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    failed.sort_by_key(|f| f.index);
    Some((failed, attempts))
}

/// One error record (a JSON line) of a document that was not indexed.
pub fn error_record(
    os: &OpenSearch,
    document: &Document<'_>,
    failure: &Failed,
    attempts: u32,
) -> Vec<u8> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let index = os.rotation.index(&os.index_name, document.arrival_ms);
    let (id_member, index_member, type_member) = match os.flavor {
        Flavor::AmazonOpenSearchService => ("osDocumentId", "osIndexName", "osTypeName"),
        Flavor::Elasticsearch => ("esDocumentId", "esIndexName", "esTypeName"),
    };
    let mut line = json!({
        "attemptsMade": attempts,
        "arrivalTimestamp": document.arrival_ms,
        "errorCode": failure.error_code,
        "errorMessage": failure.error_message,
        "attemptEndingTimestamp": now_ms,
        id_member: document.id,
        index_member: index,
        type_member: os.type_name.clone().unwrap_or_default(),
        "rawData": base64::engine::general_purpose::STANDARD.encode(document.data),
    })
    .to_string()
    .into_bytes();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-09T17:42:05Z, a Saturday.
    const ARRIVAL_MS: u64 = 1_710_006_125_000;

    #[test]
    fn index_names_rotate_by_arrival_time() {
        assert_eq!(Rotation::NoRotation.index("logs", ARRIVAL_MS), "logs");
        assert_eq!(
            Rotation::OneHour.index("logs", ARRIVAL_MS),
            "logs-2024-03-09-17"
        );
        assert_eq!(
            Rotation::OneDay.index("logs", ARRIVAL_MS),
            "logs-2024-03-09"
        );
        assert_eq!(Rotation::OneMonth.index("logs", ARRIVAL_MS), "logs-2024-03");
        // 2024-01-01 was a Monday: week 1 is Jan 1–6, week 2 starts Sunday Jan 7; Mar 9 is in week 10.
        assert_eq!(Rotation::OneWeek.index("logs", ARRIVAL_MS), "logs-2024-w10");
        assert_eq!(
            Rotation::OneWeek.index("logs", 1_704_067_200_000),
            "logs-2024-w01"
        );
        assert_eq!(
            Rotation::OneWeek.index("logs", 1_704_585_600_000),
            "logs-2024-w02"
        );
    }

    #[test]
    fn documents_must_be_json_objects_on_one_line() {
        assert_eq!(document_line(b"{\"a\":1}\n").expect("doc"), b"{\"a\":1}");
        assert_eq!(document_line(b"{\"a\":\n1}").expect("doc"), b"{\"a\":1}");
        assert!(document_line(b"[1]").is_err());
        assert!(document_line(b"nope").is_err());
    }
}
