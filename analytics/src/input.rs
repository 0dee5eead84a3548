//! Input records to rows: the input schema's record format (JSON with `$.path` mappings, or CSV
//! with row and column delimiters) and its record columns with SQL types.
//!
//! A record that cannot be parsed, or a field that cannot be coerced to its column's type, never
//! stops the application: the record becomes a row of `error_stream` instead (see
//! [`crate::errors`]). A mapped field that is missing is NULL, as in KDA.

use crate::batch::{BatchBuilder, StreamShape};
use crate::types::SqlType;
use crate::value::{self, Value};

/// How records are laid out.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordFormat {
    /// `RecordRowPath` (usually `$`): where the row (or an array of rows) is in each record.
    Json { row_path: String },
    Csv {
        row_delimiter: String,
        column_delimiter: String,
    },
}

/// One input column: its name, JSON mapping (`$.ticker`) and SQL type.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordColumn {
    pub name: String,
    pub mapping: Option<String>,
    pub sql_type: SqlType,
}

/// An input schema.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSchema {
    pub format: RecordFormat,
    pub columns: Vec<RecordColumn>,
}

/// A record that could not become a row, for `error_stream`.
#[derive(Clone, Debug, PartialEq)]
pub struct RejectedRecord {
    pub error_name: &'static str,
    pub message: String,
    pub data: Vec<u8>,
    pub rowtime: i64,
}

impl InputSchema {
    pub fn shape(&self) -> StreamShape {
        StreamShape {
            columns: self
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.sql_type.kind()))
                .collect(),
        }
    }

    /// A decoder for many records of this schema (it works out the fast path once); see
    /// [`Decoder::decode`].
    pub fn decoder(&self) -> Decoder<'_> {
        Decoder {
            schema: self,
            fast: match &self.format {
                RecordFormat::Json { row_path } => {
                    crate::json_row::FastJson::new(row_path, &self.columns)
                }
                RecordFormat::Csv { .. } => None,
            },
            rows: Vec::new(),
        }
    }

    /// [`Self::decode`] without the fast path: the whole document, then each mapping.
    pub(crate) fn decode_general(
        &self,
        data: &[u8],
        rowtime: i64,
        rows: &mut Vec<(Vec<Value>, i64)>,
    ) -> Result<(), RejectedRecord> {
        let reject = |error_name: &'static str, message: String| RejectedRecord {
            error_name,
            message,
            data: data.to_vec(),
            rowtime,
        };
        let start = rows.len();
        let result = match &self.format {
            RecordFormat::Json { row_path } => self.decode_json(data, row_path, rowtime, rows),
            RecordFormat::Csv {
                row_delimiter,
                column_delimiter,
            } => self.decode_csv(data, row_delimiter, column_delimiter, rowtime, rows),
        };
        result.map_err(|(name, message)| {
            rows.truncate(start);
            reject(name, message)
        })
    }

    fn decode_json(
        &self,
        data: &[u8],
        row_path: &str,
        rowtime: i64,
        rows: &mut Vec<(Vec<Value>, i64)>,
    ) -> Result<(), (&'static str, String)> {
        let document: serde_json::Value = serde_json::from_slice(data)
            .map_err(|e| ("Invalid_JSON", format!("Record is not valid JSON: {e}")))?;
        let Some(root) = json_path(&document, row_path) else {
            return Err((
                "Schema_mismatch",
                format!("Row path {row_path} not found in the record"),
            ));
        };
        let one_row = |row: &serde_json::Value| -> Result<Vec<Value>, (&'static str, String)> {
            if !row.is_object() {
                return Err(("Schema_mismatch", "A row is not a JSON object".to_owned()));
            }
            self.columns
                .iter()
                .map(|column| {
                    let mapping = column.mapping.as_deref().unwrap_or("");
                    let field = if mapping.is_empty() {
                        row.get(&column.name)
                    } else {
                        json_path(row, mapping)
                    };
                    match field {
                        None => Ok(Value::Null),
                        Some(v) => value::from_json(v, column.sql_type.kind()).map_err(|m| {
                            ("Coercion_error", format!("Column \"{}\": {m}", column.name))
                        }),
                    }
                })
                .collect()
        };
        match root {
            serde_json::Value::Array(items) => {
                for item in items {
                    rows.push((one_row(item)?, rowtime));
                }
            }
            row => rows.push((one_row(row)?, rowtime)),
        }
        Ok(())
    }

    fn decode_csv(
        &self,
        data: &[u8],
        row_delimiter: &str,
        column_delimiter: &str,
        rowtime: i64,
        rows: &mut Vec<(Vec<Value>, i64)>,
    ) -> Result<(), (&'static str, String)> {
        let text = std::str::from_utf8(data)
            .map_err(|_| ("Invalid_encoding", "Record is not UTF-8".to_owned()))?;
        let row_delimiter = if row_delimiter.is_empty() {
            "\n"
        } else {
            row_delimiter
        };
        let column_delimiter = if column_delimiter.is_empty() {
            ","
        } else {
            column_delimiter
        };
        for line in text.split(row_delimiter) {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(column_delimiter).collect();
            if fields.len() < self.columns.len() {
                return Err((
                    "Schema_mismatch",
                    format!(
                        "Row has {} columns, the schema {}",
                        fields.len(),
                        self.columns.len()
                    ),
                ));
            }
            let values = self
                .columns
                .iter()
                .zip(&fields)
                .map(|(column, field)| {
                    if field.is_empty() && column.sql_type.kind() != crate::types::Kind::Text {
                        return Ok(Value::Null);
                    }
                    value::from_text(field, column.sql_type.kind())
                        .map_err(|m| ("Coercion_error", format!("Column \"{}\": {m}", column.name)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            rows.push((values, rowtime));
        }
        Ok(())
    }
}

/// Decodes records of one schema into batches of its shape ([`InputSchema::shape`]).
pub struct Decoder<'a> {
    schema: &'a InputSchema,
    fast: Option<crate::json_row::FastJson<'a>>,
    /// The general path's rows of the record being decoded.
    rows: Vec<(Vec<Value>, i64)>,
}

impl Decoder<'_> {
    /// Decodes one record into rows (one, or several for CSV records holding several lines or
    /// JSON row paths naming an array), appending them to `out`; a bad record is returned and
    /// adds no row. A JSON record whose columns all map top-level keys of the whole record is
    /// read in one pass straight into `out`'s columns (`json_row`); any other, or one that pass
    /// cannot take whole, the general way.
    pub fn decode(
        &mut self,
        data: &[u8],
        rowtime: i64,
        out: &mut BatchBuilder,
    ) -> Result<(), RejectedRecord> {
        if let Some(fast) = &mut self.fast
            && fast.decode(data, rowtime, out)
        {
            return Ok(());
        }
        self.rows.clear();
        self.schema.decode_general(data, rowtime, &mut self.rows)?;
        for (values, rowtime) in &self.rows {
            out.push_row(values, *rowtime);
        }
        Ok(())
    }
}

/// Follows a JSONPath of the form `$`, `$.a.b`, `$.a[0].b` or `$["a b"]` from `value`.
/// (Hand-written: the mappings KDA accepts are this simple subset, and a JSONPath crate would
/// bring a whole query language for it.)
pub fn json_path<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut current = value;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            current = current.get(&after[..end])?;
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = after[..end].trim();
            current = if let Ok(index) = inner.parse::<usize>() {
                current.get(index)?
            } else {
                let key = inner.trim_matches(|c| c == '"' || c == '\'');
                current.get(key)?
            };
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::rows_of;

    /// Decodes `records` (data, ROWTIME) with one decoder: the rows of the batch, and each
    /// rejection.
    fn decode_all(
        schema: &InputSchema,
        records: &[(&[u8], i64)],
    ) -> (Vec<(Vec<Value>, i64)>, Vec<RejectedRecord>) {
        let shape = schema.shape();
        let mut out = BatchBuilder::new(&shape, records.len());
        let mut decoder = schema.decoder();
        let rejected = records
            .iter()
            .filter_map(|(data, rowtime)| decoder.decode(data, *rowtime, &mut out).err())
            .collect();
        (rows_of(&shape, &out.finish()), rejected)
    }

    fn schema(format: RecordFormat) -> InputSchema {
        InputSchema {
            format,
            columns: vec![
                RecordColumn {
                    name: "sym".into(),
                    mapping: Some("$.ticker".into()),
                    sql_type: SqlType::Varchar(Some(8)),
                },
                RecordColumn {
                    name: "px".into(),
                    mapping: Some("$.price.last".into()),
                    sql_type: SqlType::Double,
                },
            ],
        }
    }

    #[test]
    fn json_records_map_fields_by_path_and_missing_fields_are_null() {
        let schema = schema(RecordFormat::Json {
            row_path: "$".into(),
        });
        let (rows, rejected) = decode_all(
            &schema,
            &[
                (br#"{"ticker":"AMZN","price":{"last":12.5}}"#, 7),
                (br#"{"ticker":"X"}"#, 8),
            ],
        );
        assert_eq!(rejected, []);
        assert_eq!(
            rows[0],
            (vec![Value::Text("AMZN".into()), Value::Float(12.5)], 7)
        );
        assert_eq!(rows[1], (vec![Value::Text("X".into()), Value::Null], 8));
    }

    #[test]
    fn malformed_json_and_uncoercible_fields_are_rejected_not_fatal() {
        let schema = schema(RecordFormat::Json {
            row_path: "$".into(),
        });
        let (rows, rejected) = decode_all(
            &schema,
            &[
                (b"{not json", 1),
                (br#"{"ticker":"A","price":{"last":"abc"}}"#, 1),
            ],
        );
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected[0].error_name, "Invalid_JSON");
        assert_eq!(rejected[1].error_name, "Coercion_error");
        assert!(rows.is_empty());
    }

    #[test]
    fn csv_records_split_into_rows_and_columns() {
        let schema = schema(RecordFormat::Csv {
            row_delimiter: "\n".into(),
            column_delimiter: ",".into(),
        });
        let (rows, rejected) = decode_all(&schema, &[(b"A,1.5\nB,2\n", 3), (b"C", 3)]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].0, vec![Value::Text("B".into()), Value::Float(2.0)]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].data, b"C");
    }

    #[test]
    fn json_paths_follow_members_and_indexes() {
        let v = serde_json::json!({"a": {"b": [10, {"c": "x"}]}});
        assert_eq!(json_path(&v, "$.a.b[0]"), Some(&serde_json::json!(10)));
        assert_eq!(json_path(&v, "$.a.b[1].c"), Some(&serde_json::json!("x")));
        assert_eq!(json_path(&v, "$"), Some(&v));
        assert_eq!(json_path(&v, "$.nope"), None);
    }
}
