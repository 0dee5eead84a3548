//! Rows of an in-application stream to destination records: one record per row, JSON objects
//! keyed by the stream's column names, or CSV lines in column order. `ROWTIME` is not written,
//! as in KDA (select it into a column to keep it).

use arrow_array::RecordBatch;

use crate::batch::{StreamShape, value_at};
use crate::value::{Value, format_timestamp};

/// A destination's `RecordFormatType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Json,
    Csv,
}

fn json_value(v: Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Int(i) => i.into(),
        Value::Float(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(s) => s.into(),
        Value::Bool(b) => b.into(),
        Value::Time(t) => format_timestamp(t).into(),
    }
}

fn csv_field(v: Value) -> String {
    let text = match v {
        Value::Null => return String::new(),
        Value::Int(i) => i.to_string(),
        // The same digits as the JSON output (`20000.0`, not `20000`).
        Value::Float(f) => {
            serde_json::Number::from_f64(f).map_or_else(|| f.to_string(), |n| n.to_string())
        }
        Value::Text(s) => s,
        Value::Bool(b) => b.to_string(),
        Value::Time(t) => format_timestamp(t),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// One destination record per row of `batch`.
pub fn serialize(batch: &RecordBatch, shape: &StreamShape, format: OutputFormat) -> Vec<Vec<u8>> {
    (0..batch.num_rows())
        .map(|row| {
            let values = shape
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| value_at(batch.column(i).as_ref(), *kind, row));
            match format {
                OutputFormat::Json => {
                    // Written member by member so the columns keep the stream's order.
                    let mut out = Vec::with_capacity(64);
                    out.push(b'{');
                    for (i, ((name, _), value)) in shape.columns.iter().zip(values).enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        serde_json::to_writer(&mut out, name)
                            .expect("writing to a Vec cannot fail");
                        out.push(b':');
                        serde_json::to_writer(&mut out, &json_value(value))
                            .expect("writing to a Vec cannot fail");
                    }
                    out.push(b'}');
                    out
                }
                OutputFormat::Csv => {
                    let fields: Vec<String> = values.map(csv_field).collect();
                    fields.join(",").into_bytes()
                }
            }
        })
        .collect()
}
