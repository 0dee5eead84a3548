//! Reference tables and joins of a stream with them.
//!
//! A reference data source is one S3 object, parsed with its `ReferenceSchema` by the same code
//! that parses input records ([`InputSchema::decode`]) into one columnar batch: the in-application
//! table. Each line of a CSV object, and each line of a JSON object that is not one JSON document
//! as a whole, is a record; a record that does not parse becomes a row of `error_stream`, as an
//! input record would, and the rest of the table loads.
//!
//! A join probes a hash index of the table built from the table side of ON's equalities, pairs
//! each stream row with the table rows of its key, filters the pairs with the rest of ON, and
//! builds the joined batch with Arrow's `take` kernel. A LEFT JOIN keeps a stream row with no
//! pair, its table columns NULL. A NULL key matches nothing, as in SQL.
//!
//! Invariant: the index holds row numbers of the table batch it was built from; both are
//! replaced together when the table is loaded again.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::ArrowError;

use crate::batch::{BatchBuilder, StreamShape, batch_from_rows, value_at};
use crate::input::{InputSchema, RecordFormat, RejectedRecord};
use crate::join::joined_output;
use crate::plan::ReferenceJoinPlan;
use crate::types::Kind;
use crate::value::Value;

/// The largest reference object read by default: 1 GiB, KDA's limit `[verify]`.
pub const REFERENCE_BYTES_MAX_DEFAULT: u64 = 1 << 30;

/// The most rows a reference table may hold (row numbers are `u32` in the join's `take`).
pub const REFERENCE_ROWS_MAX: usize = u32::MAX as usize;

/// A loaded in-application reference table.
#[derive(Clone, Debug)]
pub struct ReferenceTable {
    /// The table's columns, then a ROWTIME column (the load time) no expression reads.
    pub batch: RecordBatch,
}

impl ReferenceTable {
    pub fn empty(shape: &StreamShape) -> Self {
        ReferenceTable {
            batch: batch_from_rows(shape, &[]),
        }
    }

    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }
}

/// A parsed reference object: the table and the records that did not parse.
#[derive(Debug)]
pub struct ParsedTable {
    pub table: ReferenceTable,
    pub rejected: Vec<RejectedRecord>,
}

/// Why a reference object could not be loaded at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadReferenceError {
    #[error("cannot read s3://{bucket}/{key}: {message}")]
    Read {
        bucket: String,
        key: String,
        message: String,
    },
    #[error(
        "s3://{bucket}/{key} is {bytes} bytes, over the reference data limit of {bytes_max} bytes"
    )]
    TooLarge {
        bucket: String,
        key: String,
        bytes: u64,
        bytes_max: u64,
    },
    #[error("reference table {table} would hold more than {rows_max} rows")]
    TooManyRows { table: String, rows_max: usize },
}

/// Parses a reference object with `schema` into the table `name`. `loaded_ms` is the
/// `DATA_ROWTIME` of rejected records.
pub fn parse_table(
    name: &str,
    schema: &InputSchema,
    object: &[u8],
    loaded_ms: i64,
) -> Result<ParsedTable, LoadReferenceError> {
    let whole_json = matches!(schema.format, RecordFormat::Json { .. })
        && serde_json::from_slice::<serde::de::IgnoredAny>(object).is_ok();
    let records: Vec<&[u8]> = if whole_json {
        vec![object]
    } else {
        let delimiter: &[u8] = match &schema.format {
            RecordFormat::Csv { row_delimiter, .. } if !row_delimiter.is_empty() => {
                row_delimiter.as_bytes()
            }
            _ => b"\n",
        };
        split(object, delimiter)
    };
    let shape = schema.shape();
    let mut rows = BatchBuilder::new(&shape, 0);
    let mut rejected = Vec::new();
    let mut decoder = schema.decoder();
    for (line, record) in records.iter().enumerate() {
        let trimmed = record.strip_suffix(b"\r").unwrap_or(record);
        if trimmed.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(mut r) = decoder.decode(trimmed, loaded_ms, &mut rows) {
            r.message = if whole_json {
                format!("Reference table \"{name}\": {}", r.message)
            } else {
                format!(
                    "Reference table \"{name}\", line {}: {}",
                    line + 1,
                    r.message
                )
            };
            rejected.push(r);
        }
        if rows.num_rows() > REFERENCE_ROWS_MAX {
            return Err(LoadReferenceError::TooManyRows {
                table: name.to_owned(),
                rows_max: REFERENCE_ROWS_MAX,
            });
        }
    }
    Ok(ParsedTable {
        table: ReferenceTable {
            batch: rows.finish(),
        },
        rejected,
    })
}

fn split<'a>(data: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    assert!(!delimiter.is_empty());
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + delimiter.len() <= data.len() {
        if &data[i..i + delimiter.len()] == delimiter {
            pieces.push(&data[start..i]);
            i += delimiter.len();
            start = i;
        } else {
            i += 1;
        }
    }
    pieces.push(&data[start..]);
    pieces
}

/// One part of a join key; floats by their bits (with -0 as 0) so they can be hashed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyPart {
    Int(i64),
    Float(u64),
    Text(String),
    Bool(bool),
}

fn key_part(array: &dyn Array, kind: Kind, row: usize) -> Option<KeyPart> {
    Some(match value_at(array, kind, row) {
        Value::Null => return None,
        Value::Int(v) | Value::Time(v) => KeyPart::Int(v),
        Value::Float(v) => KeyPart::Float(if v == 0.0 { 0 } else { v.to_bits() }),
        Value::Text(v) => KeyPart::Text(v),
        Value::Bool(v) => KeyPart::Bool(v),
    })
}

/// Puts the keys of `row` of `arrays` into `key`; `false` when one is NULL.
fn key_of(arrays: &[(ArrayRef, Kind)], row: usize, key: &mut Vec<KeyPart>) -> bool {
    key.clear();
    for (array, kind) in arrays {
        match key_part(array.as_ref(), *kind, row) {
            Some(part) => key.push(part),
            None => return false,
        }
    }
    true
}

/// What a row of the table that could not be indexed (its key expression failed) reports.
#[derive(Clone, Debug, PartialEq)]
pub struct UnindexedRow {
    pub row: usize,
    pub message: String,
}

/// A reference join's state: the table and its hash index.
#[derive(Debug)]
pub struct ReferenceJoinState {
    plan: ReferenceJoinPlan,
    left: StreamShape,
    combined: StreamShape,
    table: Arc<ReferenceTable>,
    index: HashMap<Vec<KeyPart>, Vec<u32>>,
}

impl ReferenceJoinState {
    pub fn new(plan: ReferenceJoinPlan, left: StreamShape, table: &StreamShape) -> Self {
        let mut columns = left.columns.clone();
        columns.push(("$LEFT_ROWTIME".into(), Kind::Time));
        columns.extend(table.columns.iter().cloned());
        ReferenceJoinState {
            plan,
            left,
            combined: StreamShape { columns },
            table: Arc::new(ReferenceTable::empty(table)),
            index: HashMap::new(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.plan.table
    }

    /// Replaces the table and rebuilds the index; rows whose key cannot be computed are left
    /// out and returned.
    pub fn set_table(&mut self, table: Arc<ReferenceTable>) -> Vec<UnindexedRow> {
        let mut unindexed = Vec::new();
        let mut index: HashMap<Vec<KeyPart>, Vec<u32>> = HashMap::new();
        let rows = table.rows();
        let whole = self
            .plan
            .keys
            .iter()
            .map(|(_, t)| Ok((t.evaluate(&table.batch)?, t.kind())))
            .collect::<Result<Vec<_>, ArrowError>>();
        let mut key = Vec::with_capacity(self.plan.keys.len());
        let mut insert = |arrays: &[(ArrayRef, Kind)], at: usize, row: usize| {
            if key_of(arrays, at, &mut key) {
                let row = u32::try_from(row).expect("a table holds at most REFERENCE_ROWS_MAX");
                index.entry(key.clone()).or_default().push(row);
            }
        };
        match whole {
            Ok(arrays) => (0..rows).for_each(|row| insert(&arrays, row, row)),
            Err(_) => {
                // One row's key failed (a bad cast): compute the rows one by one.
                for row in 0..rows {
                    let one = table.batch.slice(row, 1);
                    let arrays = self
                        .plan
                        .keys
                        .iter()
                        .map(|(_, t)| Ok((t.evaluate(&one)?, t.kind())))
                        .collect::<Result<Vec<_>, ArrowError>>();
                    match arrays {
                        Ok(arrays) => insert(&arrays, 0, row),
                        Err(e) => unindexed.push(UnindexedRow {
                            row,
                            message: e.to_string(),
                        }),
                    }
                }
            }
        }
        self.table = table;
        self.index = index;
        unindexed
    }

    /// Joins a batch of the stream; the result has the target stream's shape.
    pub fn join(
        &self,
        batch: &RecordBatch,
        target: &StreamShape,
        target_columns: &[usize],
    ) -> Result<RecordBatch, ArrowError> {
        let table_rows = u32::try_from(self.table.rows()).expect("at most REFERENCE_ROWS_MAX");
        let stream_keys = self
            .plan
            .keys
            .iter()
            .map(|(s, _)| Ok((s.evaluate(batch)?, s.kind())))
            .collect::<Result<Vec<_>, ArrowError>>()?;
        // Candidate pairs, in stream-row order.
        let mut stream_rows: Vec<u32> = Vec::new();
        let mut table_rows_of: Vec<u32> = Vec::new();
        let mut key = Vec::with_capacity(stream_keys.len());
        for row in 0..batch.num_rows() {
            let row32 = u32::try_from(row).expect("a batch has fewer than 2^32 rows");
            if stream_keys.is_empty() {
                stream_rows.extend(std::iter::repeat_n(row32, table_rows as usize));
                table_rows_of.extend(0..table_rows);
            } else if key_of(&stream_keys, row, &mut key)
                && let Some(matches) = self.index.get(&key)
            {
                stream_rows.extend(std::iter::repeat_n(row32, matches.len()));
                table_rows_of.extend_from_slice(matches);
            }
        }
        if let Some(residual) = &self.plan.residual {
            let pairs = self.combine(batch, &stream_rows, &table_rows_of.clone().into())?;
            let keep: Vec<bool> = residual
                .evaluate_condition(&pairs, "ON")?
                .iter()
                .map(|keep| keep == Some(true))
                .collect();
            let mut i = 0;
            stream_rows.retain(|_| {
                i += 1;
                keep[i - 1]
            });
            let mut i = 0;
            table_rows_of.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        let table_side: UInt32Array = if self.plan.left_outer {
            // Every stream row with no pair left gets one with NULL table columns, in order.
            let mut rows = Vec::with_capacity(stream_rows.len());
            let mut table = Vec::with_capacity(stream_rows.len());
            let mut next = 0;
            for row in 0..u32::try_from(batch.num_rows()).expect("fewer than 2^32 rows") {
                let first = next;
                while next < stream_rows.len() && stream_rows[next] == row {
                    rows.push(row);
                    table.push(Some(table_rows_of[next]));
                    next += 1;
                }
                if next == first {
                    rows.push(row);
                    table.push(None);
                }
            }
            stream_rows = rows;
            table.into()
        } else {
            table_rows_of.into()
        };
        let combined = self.combine(batch, &stream_rows, &table_side)?;
        joined_output(
            combined,
            self.plan.filter.as_ref(),
            &self.plan.projections,
            target,
            target_columns,
        )
    }

    /// The joined rows of the pairs (`stream_rows[i]`, `table_rows[i]`): the stream's columns
    /// and ROWTIME, the table's columns (NULL where the table row is NULL), then ROWTIME.
    fn combine(
        &self,
        batch: &RecordBatch,
        stream_rows: &[u32],
        table_rows: &UInt32Array,
    ) -> Result<RecordBatch, ArrowError> {
        assert_eq!(stream_rows.len(), table_rows.len());
        let stream_rows = UInt32Array::from(stream_rows.to_vec());
        let take = |array: &ArrayRef, rows: &UInt32Array| {
            arrow_select::take::take(array.as_ref(), rows, None)
        };
        let mut arrays = Vec::with_capacity(self.combined.columns.len() + 1);
        // The stream's columns and its ROWTIME (the batch's last column).
        for column in 0..=self.left.columns.len() {
            arrays.push(take(batch.column(column), &stream_rows)?);
        }
        let table_columns = self.combined.columns.len() - self.left.columns.len() - 1;
        for column in 0..table_columns {
            arrays.push(take(self.table.batch.column(column), table_rows)?);
        }
        arrays.push(arrays[self.left.columns.len()].clone());
        RecordBatch::try_new(self.combined.schema(), arrays)
    }
}
