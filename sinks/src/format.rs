//! Record format conversion, JSON → Parquet (DataFormatConversionConfiguration).
//!
//! AWS reads the schema from a Glue table; this appliance has no Glue, so SchemaConfiguration's
//! DatabaseName and TableName name a local table file instead:
//! `<data-dir>/firehose/tables/<DatabaseName>/<TableName>.json`, holding
//! `{"columns": [{"name": "id", "type": "bigint"}, …]}` with Hive types `string`, `int`,
//! `bigint`, `float`, `double`, `boolean` and `timestamp` (epoch milliseconds, or seconds when
//! the value is not an integer of 13 digits or more) [verify the timestamp forms against AWS].
//! Records are concatenated JSON objects (one after the other, with or without newlines);
//! members are matched to columns case-insensitively (OpenXJsonSerDe's default), a missing
//! member is null. A record that is not a JSON object, or whose member does not fit its
//! column's type, fails conversion and goes to the error prefix as `format-conversion-failed`.
//! The output is one Parquet file per buffer (ParquetSerDe Compression SNAPPY by default,
//! UNCOMPRESSED or GZIP on request), extension `.parquet`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression as ParquetCompression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FirehoseError;

/// A conversion as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversion {
    pub database: String,
    pub table: String,
    /// ParquetSerDe Compression: UNCOMPRESSED, GZIP or SNAPPY.
    pub compression: String,
    /// The DataFormatConversionConfiguration as given, JSON text, for DescribeDeliveryStream.
    pub described: String,
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub hive_type: String,
}

#[derive(Clone, Debug, Deserialize)]
struct Table {
    columns: Vec<Column>,
}

/// The delivery streams' directory (`<data-dir>/firehose`), set once when the registry opens:
/// there is one data dir per process.
static FIREHOSE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Records where tables are read from; the first call wins.
pub fn set_firehose_dir(dir: &Path) {
    let _ = FIREHOSE_DIR.set(dir.to_owned());
}

fn firehose_dir() -> Result<&'static Path, String> {
    FIREHOSE_DIR
        .get()
        .map(PathBuf::as_path)
        .ok_or_else(|| "no data directory is open".to_owned())
}

/// The columns of the table a conversion names.
pub fn columns_of(conversion: &Conversion) -> Result<Vec<Column>, String> {
    load_columns(firehose_dir()?, &conversion.database, &conversion.table)
}

/// The file of table `database.table` under the delivery streams' directory.
pub fn table_path(firehose_dir: &Path, database: &str, table: &str) -> PathBuf {
    firehose_dir
        .join("tables")
        .join(database)
        .join(format!("{table}.json"))
}

fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && name != "."
        && name != ".."
}

/// Reads a table's columns; the error says why they cannot be had.
pub fn load_columns(
    firehose_dir: &Path,
    database: &str,
    table: &str,
) -> Result<Vec<Column>, String> {
    if !safe_name(database) || !safe_name(table) {
        return Err(format!("{database}.{table} is not a valid table name"));
    }
    let path = table_path(firehose_dir, database, table);
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "table {database}.{table} ({}) cannot be read: {e}",
            path.display()
        )
    })?;
    let table_def: Table = serde_json::from_slice(&bytes)
        .map_err(|e| format!("table {database}.{table} is not valid: {e}"))?;
    if table_def.columns.is_empty() {
        return Err(format!("table {database}.{table} has no columns"));
    }
    for column in &table_def.columns {
        data_type(&column.hive_type).ok_or_else(|| {
            format!(
                "column {} has the unsupported type {}",
                column.name, column.hive_type
            )
        })?;
    }
    Ok(table_def.columns)
}

fn data_type(hive_type: &str) -> Option<DataType> {
    Some(match hive_type.to_ascii_lowercase().as_str() {
        "string" | "varchar" | "char" => DataType::Utf8,
        "int" | "integer" => DataType::Int32,
        "bigint" => DataType::Int64,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        _ => return None,
    })
}

/// Parses DataFormatConversionConfiguration (`None` when absent or disabled).
pub fn parse(config: &Value, member: &str) -> Result<Option<Conversion>, FirehoseError> {
    if !config
        .get("Enabled")
        .and_then(Value::as_bool)
        .unwrap_or(true)
    {
        return Ok(None);
    }
    let schema = config.get("SchemaConfiguration").ok_or_else(|| {
        FirehoseError::invalid(format!(
            "{member}: SchemaConfiguration is required when data format conversion is enabled."
        ))
    })?;
    let name = |field: &str| schema.get(field).and_then(Value::as_str).map(str::to_owned);
    let (Some(database), Some(table)) = (name("DatabaseName"), name("TableName")) else {
        return Err(FirehoseError::invalid(
            "SchemaConfiguration needs DatabaseName and TableName.",
        ));
    };
    firehose_dir()
        .and_then(|dir| load_columns(dir, &database, &table))
        .map_err(|detail| {
        FirehoseError::invalid(format!(
            "The schema table cannot be used: {detail}. This appliance reads tables from <data-dir>/firehose/tables/<DatabaseName>/<TableName>.json."
        ))
    })?;
    let serializer = config
        .get("OutputFormatConfiguration")
        .and_then(|o| o.get("Serializer"));
    if serializer.and_then(|s| s.get("OrcSerDe")).is_some() {
        return Err(FirehoseError::invalid(
            "OrcSerDe is not supported by this appliance: use ParquetSerDe.",
        ));
    }
    let compression = serializer
        .and_then(|s| s.get("ParquetSerDe"))
        .and_then(|p| p.get("Compression"))
        .and_then(Value::as_str)
        .unwrap_or("SNAPPY")
        .to_owned();
    if !matches!(compression.as_str(), "UNCOMPRESSED" | "GZIP" | "SNAPPY") {
        return Err(FirehoseError::validation(
            &compression,
            &format!("{member}.outputFormatConfiguration.serializer.parquetSerDe.compression"),
            "Member must satisfy enum value set: [UNCOMPRESSED, GZIP, SNAPPY]",
        ));
    }
    let deserializer = config
        .get("InputFormatConfiguration")
        .and_then(|i| i.get("Deserializer"));
    if deserializer.and_then(|d| d.get("HiveJsonSerDe")).is_some() {
        return Err(FirehoseError::invalid(
            "HiveJsonSerDe is not supported by this appliance: use OpenXJsonSerDe.",
        ));
    }
    Ok(Some(Conversion {
        database,
        table,
        compression,
        described: config.to_string(),
    }))
}

/// A converted buffer: the Parquet file of the records that fit the schema, and the records
/// that did not, with why.
#[derive(Debug, Default)]
pub struct Converted {
    pub parquet: Option<Vec<u8>>,
    pub rows: usize,
    pub failed: Vec<(usize, String)>,
}

/// Converts `records` (each a JSON object) to one Parquet file by the table's columns.
pub fn convert(
    conversion: &Conversion,
    columns: &[Column],
    records: &[&[u8]],
) -> Result<Converted, String> {
    let mut out = Converted::default();
    let mut rows: Vec<serde_json::Map<String, Value>> = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        // A record may hold several concatenated objects; each is a row.
        let mut stream = serde_json::Deserializer::from_slice(record).into_iter::<Value>();
        let mut parsed = Vec::new();
        let mut error = None;
        for value in &mut stream {
            match value {
                Ok(Value::Object(map)) => parsed.push(map),
                Ok(_) => {
                    error = Some("the record is not a JSON object".to_owned());
                    break;
                }
                Err(e) => {
                    error = Some(format!("the record is not JSON: {e}"));
                    break;
                }
            }
        }
        if error.is_none()
            && let Some(bad) = parsed.iter().find_map(|row| check_row(columns, row).err())
        {
            error = Some(bad);
        }
        match error {
            Some(e) => out.failed.push((index, e)),
            None => rows.extend(parsed),
        }
    }
    if rows.is_empty() {
        return Ok(out);
    }
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            Field::new(
                &c.name,
                data_type(&c.hive_type).unwrap_or(DataType::Utf8),
                true,
            )
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let arrays: Vec<ArrayRef> = columns.iter().map(|c| column_array(c, &rows)).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())?;
    let compression = match conversion.compression.as_str() {
        "UNCOMPRESSED" => ParquetCompression::UNCOMPRESSED,
        "GZIP" => ParquetCompression::GZIP(Default::default()),
        _ => ParquetCompression::SNAPPY,
    };
    let properties = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema, Some(properties)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    out.parquet = Some(writer.into_inner().map_err(|e| e.to_string())?);
    out.rows = rows.len();
    Ok(out)
}

fn member<'a>(row: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    row.get(name)
        .or_else(|| {
            row.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn timestamp_ms(value: &Value) -> Option<i64> {
    let n = value.as_i64()?;
    Some(if n.unsigned_abs() >= 1_000_000_000_000 {
        n
    } else {
        n * 1000
    })
}

/// Whether every member of `row` fits its column.
fn check_row(columns: &[Column], row: &serde_json::Map<String, Value>) -> Result<(), String> {
    for column in columns {
        let Some(value) = member(row, &column.name) else {
            continue;
        };
        let fits = match data_type(&column.hive_type) {
            Some(DataType::Utf8) => true,
            Some(DataType::Int32) => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            Some(DataType::Int64) => value.as_i64().is_some(),
            Some(DataType::Float32 | DataType::Float64) => value.as_f64().is_some(),
            Some(DataType::Boolean) => value.is_boolean(),
            Some(DataType::Timestamp(..)) => timestamp_ms(value).is_some(),
            _ => false,
        };
        if !fits {
            return Err(format!(
                "the member {} ({value}) does not fit the column type {}",
                column.name, column.hive_type
            ));
        }
    }
    Ok(())
}

fn column_array(column: &Column, rows: &[serde_json::Map<String, Value>]) -> ArrayRef {
    let values = rows.iter().map(|row| member(row, &column.name));
    match data_type(&column.hive_type) {
        Some(DataType::Int32) => {
            let mut b = Int32Builder::new();
            values.for_each(|v| {
                b.append_option(
                    v.and_then(Value::as_i64)
                        .and_then(|n| i32::try_from(n).ok()),
                )
            });
            Arc::new(b.finish())
        }
        Some(DataType::Int64) => {
            let mut b = Int64Builder::new();
            values.for_each(|v| b.append_option(v.and_then(Value::as_i64)));
            Arc::new(b.finish())
        }
        Some(DataType::Float32) => {
            let mut b = Float32Builder::new();
            values.for_each(|v| b.append_option(v.and_then(Value::as_f64).map(|f| f as f32)));
            Arc::new(b.finish())
        }
        Some(DataType::Float64) => {
            let mut b = Float64Builder::new();
            values.for_each(|v| b.append_option(v.and_then(Value::as_f64)));
            Arc::new(b.finish())
        }
        Some(DataType::Boolean) => {
            let mut b = BooleanBuilder::new();
            values.for_each(|v| b.append_option(v.and_then(Value::as_bool)));
            Arc::new(b.finish())
        }
        Some(DataType::Timestamp(..)) => {
            let mut b = TimestampMillisecondBuilder::new().with_timezone("UTC");
            values.for_each(|v| b.append_option(v.and_then(timestamp_ms)));
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::new();
            values.for_each(|v| {
                b.append_option(v.map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }))
            });
            Arc::new(b.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<Column> {
        [
            ("id", "bigint"),
            ("name", "string"),
            ("score", "double"),
            ("ok", "boolean"),
            ("at", "timestamp"),
        ]
        .iter()
        .map(|(n, t)| Column {
            name: (*n).into(),
            hive_type: (*t).into(),
        })
        .collect()
    }

    #[test]
    fn json_records_become_one_parquet_file_and_misfits_fail() {
        let conversion = Conversion {
            database: "d".into(),
            table: "t".into(),
            compression: "SNAPPY".into(),
            described: String::new(),
        };
        let records: Vec<&[u8]> = vec![
            br#"{"id":1,"NAME":"a","score":0.5,"ok":true,"at":1700000000000}"#,
            br#"{"id":"x"}"#,
            b"not json",
            b"{\"id\":2}\n{\"id\":3,\"name\":\"c\"}\n",
        ];
        let converted = convert(&conversion, &columns(), &records).expect("converted");
        assert_eq!(converted.rows, 3);
        assert_eq!(
            converted.failed.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let file = converted.parquet.expect("a file");
        assert_eq!(&file[..4], b"PAR1");
        assert_eq!(&file[file.len() - 4..], b"PAR1");
    }
}
