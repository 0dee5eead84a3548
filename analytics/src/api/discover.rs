//! DiscoverInputSchema: samples records of a stream, or the lines of an S3 object, and infers
//! an input schema.
//!
//! Records that are all JSON objects give a JSON schema with one column per top-level member
//! (mapping `$.<member>`); otherwise lines split on commas give a CSV schema with columns
//! `COL_1` … `COL_n`. Types are inferred from every sampled value: integers that fit INTEGER,
//! else BIGINT; other numbers DOUBLE; booleans BOOLEAN; strings VARCHAR(n) with n the longest
//! length rounded up to a power of two (at least 1) `[verify]`. Names that are SQL reserved words
//! or not plain identifiers become `COL_<name>`, as KDA's discovery does.

use serde_json::{Value as J, json};
use sluice_core::storage::{CheckpointLog, ReadLimits, ReadStart, RecordLog, ShardAddress};

use super::ops::stream_name_of;
use super::{AnalyticsService, ApiError};

const SAMPLE_RECORDS_MAX: usize = 100;

/// The most of an S3 object discovery reads (our bound; KDA documents none `[verify]`): enough
/// for a reference file's first records, never a whole large object in memory.
const S3_SAMPLE_BYTES_MAX: u64 = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Inferred {
    Boolean,
    Integer,
    BigInt,
    Double,
    Varchar,
}

fn sql_type(kind: Inferred, longest: usize) -> String {
    match kind {
        Inferred::Boolean => "BOOLEAN".into(),
        Inferred::Integer => "INTEGER".into(),
        Inferred::BigInt => "BIGINT".into(),
        Inferred::Double => "DOUBLE".into(),
        Inferred::Varchar => format!("VARCHAR({})", longest.max(1).next_power_of_two()),
    }
}

fn infer(value: &J) -> (Inferred, usize) {
    match value {
        J::Bool(_) => (Inferred::Boolean, 5),
        J::Number(n) => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => (Inferred::Integer, 0),
            Some(_) => (Inferred::BigInt, 0),
            None => (Inferred::Double, 0),
        },
        J::String(s) => (Inferred::Varchar, s.chars().count()),
        other => (Inferred::Varchar, other.to_string().chars().count()),
    }
}

fn infer_text(text: &str) -> (Inferred, usize) {
    if let Ok(i) = text.parse::<i64>() {
        return infer(&json!(i));
    }
    if text.parse::<f64>().is_ok() {
        return (Inferred::Double, 0);
    }
    if text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false") {
        return (Inferred::Boolean, 5);
    }
    (Inferred::Varchar, text.chars().count())
}

/// Merges two observations of one column: mixed kinds widen, booleans mixed with anything are text.
fn merge(a: (Inferred, usize), b: (Inferred, usize)) -> (Inferred, usize) {
    let kind = match (a.0, b.0) {
        (x, y) if x == y => x,
        (Inferred::Boolean, _)
        | (_, Inferred::Boolean)
        | (Inferred::Varchar, _)
        | (_, Inferred::Varchar) => Inferred::Varchar,
        (x, y) => x.max(y),
    };
    (kind, a.1.max(b.1))
}

const RESERVED: &[&str] = &[
    "USER",
    "YEAR",
    "TIMESTAMP",
    "DATE",
    "TIME",
    "MONTH",
    "DAY",
    "HOUR",
    "MINUTE",
    "SECOND",
    "VALUE",
    "VALUES",
    "ORDER",
    "GROUP",
    "SELECT",
    "FROM",
    "WHERE",
    "TABLE",
    "STREAM",
    "ROWTIME",
    "COUNT",
    "SUM",
    "MIN",
    "MAX",
    "AVG",
    "KEY",
    "CURRENT",
];

fn column_name(raw: &str, n: usize) -> String {
    let plain = !raw.is_empty()
        && raw.len() <= 100
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !raw.starts_with(|c: char| c.is_ascii_digit());
    if plain && !RESERVED.contains(&raw.to_ascii_uppercase().as_str()) {
        return raw.to_owned();
    }
    let cleaned: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(96)
        .collect();
    if cleaned.is_empty() {
        format!("COL_{n}")
    } else {
        format!("COL_{cleaned}")
    }
}

pub(super) async fn discover<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    doc: &J,
) -> Result<J, ApiError> {
    if let Some(s3) = doc.get("S3Configuration").filter(|v| !v.is_null()) {
        let texts = sample_s3_object(service, s3).await?;
        return infer_schema(texts);
    }
    let arn = doc
        .get("ResourceARN")
        .and_then(J::as_str)
        .ok_or_else(|| ApiError::invalid("ResourceARN is required"))?;
    let stream = stream_name_of(arn)
        .ok_or_else(|| ApiError::invalid(format!("ResourceARN {arn} is not a valid stream ARN")))?;
    let position = doc
        .get("InputStartingPositionConfiguration")
        .and_then(|p| p.get("InputStartingPosition"))
        .and_then(J::as_str)
        .unwrap_or("NOW");
    let start = match position {
        "TRIM_HORIZON" => ReadStart::TrimHorizon,
        "NOW" | "LAST_STOPPED_POINT" => ReadStart::Latest,
        other => {
            return Err(ApiError::invalid(format!(
                "InputStartingPosition {other} is not valid"
            )));
        }
    };
    let Some(storage) = service.shared.storage.get() else {
        return Err(ApiError::new(
            "ServiceUnavailableException",
            "The analytics service is starting",
        ));
    };
    let shards = storage
        .shards(stream)
        .map_err(|_| ApiError::not_found(format!("Stream {stream} is not found")))?;
    let mut raw: Vec<Vec<u8>> = Vec::new();
    for shard in shards {
        if raw.len() >= SAMPLE_RECORDS_MAX {
            break;
        }
        let address = ShardAddress::new(stream, shard.shard_index);
        let limits = ReadLimits {
            records_max: SAMPLE_RECORDS_MAX - raw.len(),
            bytes_max: 1 << 20,
        };
        let batch = storage
            .read(&address, start, limits, None)
            .await
            .map_err(|e| ApiError::new("ServiceUnavailableException", e.to_string()))?;
        batch.for_each_positioned(&mut |_, view| raw.push(view.data.to_vec()));
    }
    let texts: Vec<String> = raw
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    infer_schema(texts)
}

/// The records of an S3 object for discovery: its first lines (at most
/// [`SAMPLE_RECORDS_MAX`]), read on the analytics service core, where the S3 client lives.
async fn sample_s3_object<R: RecordLog + CheckpointLog>(
    service: &AnalyticsService<R>,
    s3: &J,
) -> Result<Vec<String>, ApiError> {
    let member = |name: &str| {
        s3.get(name)
            .and_then(J::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::invalid(format!("S3Configuration.{name} is required")))
    };
    member("RoleARN")?;
    let bucket_arn = member("BucketARN")?;
    let key = member("FileKey")?.to_owned();
    let bucket = super::catalog::bucket_of(bucket_arn)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "BucketARN {bucket_arn} is not a valid S3 bucket ARN (arn:aws:s3:::bucket)"
            ))
        })?
        .to_owned();
    let Some(runtime) = service.shared.service_core.get() else {
        return Err(ApiError::new(
            "ServiceUnavailableException",
            "The analytics service is starting",
        ));
    };
    let shared = service.shared.clone();
    let bytes_max = S3_SAMPLE_BYTES_MAX.min(service.reference_bytes_max());
    let read = runtime
        .spawn(async move {
            let s3 = shared.s3.get_or_init(crate::s3::S3Objects::from_env).await;
            s3.get_prefix(&bucket, &key, bytes_max).await
        })
        .await
        .map_err(|e| ApiError::new("ServiceUnavailableException", e.to_string()))?;
    let object = read.map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(String::from_utf8_lossy(&object)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .take(SAMPLE_RECORDS_MAX)
        .map(str::to_owned)
        .collect())
}

/// The schema of sampled records, with the records as DiscoverInputSchema answers them.
fn infer_schema(texts: Vec<String>) -> Result<J, ApiError> {
    if texts.is_empty() {
        return Err(ApiError::new(
            "UnableToDetectSchemaException",
            "No records were found to infer a schema from",
        ));
    }
    let objects: Option<Vec<serde_json::Map<String, J>>> = texts
        .iter()
        .map(|t| match serde_json::from_str::<J>(t) {
            Ok(J::Object(m)) => Some(m),
            _ => None,
        })
        .collect();
    let (schema, parsed) = match objects {
        Some(objects) => {
            let mut columns: Vec<(String, (Inferred, usize))> = Vec::new();
            for (object, text) in objects.iter().zip(&texts) {
                // serde_json's map sorts members; the columns follow the document order instead.
                let keys: Vec<String> = match sluice_protocols::json::value::parse(text.as_bytes())
                {
                    Ok(sluice_protocols::json::value::JsonValue::Object(members)) => {
                        members.into_iter().map(|(k, _)| k.into_owned()).collect()
                    }
                    _ => object.keys().cloned().collect(),
                };
                for key in &keys {
                    let Some(value) = object.get(key) else {
                        continue;
                    };
                    if value.is_null() {
                        continue;
                    }
                    let seen = infer(value);
                    match columns.iter_mut().find(|(k, _)| k == key) {
                        Some((_, t)) => *t = merge(*t, seen),
                        None => columns.push((key.clone(), seen)),
                    }
                }
            }
            let parsed: Vec<Vec<String>> = objects
                .iter()
                .map(|o| {
                    columns
                        .iter()
                        .map(|(k, _)| match o.get(k) {
                            Some(J::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => String::new(),
                        })
                        .collect()
                })
                .collect();
            let record_columns: Vec<J> = columns
                .iter()
                .enumerate()
                .map(|(i, (key, t))| json!({"Name": column_name(key, i + 1), "Mapping": format!("$.{key}"), "SqlType": sql_type(t.0, t.1)}))
                .collect();
            let schema = json!({
                "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
                "RecordEncoding": "UTF-8",
                "RecordColumns": record_columns,
            });
            (schema, parsed)
        }
        None => {
            let rows: Vec<Vec<String>> = texts
                .iter()
                .flat_map(|t| {
                    t.lines()
                        .map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>())
                        .collect::<Vec<_>>()
                })
                .filter(|r| !(r.len() == 1 && r[0].is_empty()))
                .collect();
            let width = rows.iter().map(Vec::len).max().unwrap_or(0);
            if width == 0 {
                return Err(ApiError::new(
                    "UnableToDetectSchemaException",
                    "Unable to detect a schema from the sampled records",
                ));
            }
            let mut types: Vec<Option<(Inferred, usize)>> = vec![None; width];
            for row in &rows {
                for (i, field) in row.iter().enumerate() {
                    let seen = infer_text(field);
                    types[i] = Some(types[i].map_or(seen, |t| merge(t, seen)));
                }
            }
            let record_columns: Vec<J> = types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let t = t.unwrap_or((Inferred::Varchar, 1));
                    json!({"Name": format!("COL_{}", i + 1), "SqlType": sql_type(t.0, t.1)})
                })
                .collect();
            let schema = json!({
                "RecordFormat": {"RecordFormatType": "CSV", "MappingParameters": {"CSVMappingParameters": {"RecordRowDelimiter": "\n", "RecordColumnDelimiter": ","}}},
                "RecordEncoding": "UTF-8",
                "RecordColumns": record_columns,
            });
            (schema, rows)
        }
    };
    Ok(json!({
        "InputSchema": schema,
        "ParsedInputRecords": parsed,
        "ProcessedInputRecords": texts,
        "RawInputRecords": texts,
    }))
}
