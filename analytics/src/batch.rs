//! Columnar batches of an in-application stream: one Arrow array per declared column, then the
//! `ROWTIME` column (epoch milliseconds, non-decreasing within a stream).

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{Field, Schema, SchemaRef};

use crate::types::Kind;
use crate::value::Value;

/// The name of the row-time column every stream has.
pub const ROWTIME: &str = "ROWTIME";

/// The shape of a stream: its columns by name and kind (without `ROWTIME`).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamShape {
    pub columns: Vec<(String, Kind)>,
}

impl StreamShape {
    /// The Arrow schema of the stream's batches (declared columns, then `ROWTIME`).
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, kind)| Field::new(name, kind.arrow(), true))
            .collect();
        fields.push(Field::new(ROWTIME, arrow_schema::DataType::Int64, false));
        Arc::new(Schema::new(fields))
    }

    /// The index of column `name` (`ROWTIME` is after the declared columns).
    pub fn index_of(&self, name: &str) -> Option<(usize, Kind)> {
        if name == ROWTIME {
            return Some((self.columns.len(), Kind::Time));
        }
        self.columns
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| (i, self.columns[i].1))
    }
}

/// Builds one column from values.
pub enum ColumnBuilder {
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    pub fn new(kind: Kind, capacity: usize) -> Self {
        match kind {
            Kind::Int | Kind::Time => ColumnBuilder::Int(Int64Builder::with_capacity(capacity)),
            Kind::Float => ColumnBuilder::Float(Float64Builder::with_capacity(capacity)),
            Kind::Text => ColumnBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 8)),
            Kind::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
        }
    }

    /// Appends `value`, which has this column's kind or is null (a planner invariant).
    pub fn push(&mut self, value: &Value) {
        match (self, value) {
            (ColumnBuilder::Int(b), Value::Int(v) | Value::Time(v)) => b.append_value(*v),
            (ColumnBuilder::Float(b), Value::Float(v)) => b.append_value(*v),
            (ColumnBuilder::Float(b), Value::Int(v)) => b.append_value(*v as f64),
            (ColumnBuilder::Text(b), Value::Text(v)) => b.append_value(v),
            (ColumnBuilder::Bool(b), Value::Bool(v)) => b.append_value(*v),
            (ColumnBuilder::Int(b), _) => b.append_null(),
            (ColumnBuilder::Float(b), _) => b.append_null(),
            (ColumnBuilder::Text(b), _) => b.append_null(),
            (ColumnBuilder::Bool(b), _) => b.append_null(),
        }
    }

    pub fn push_null(&mut self) {
        match self {
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ColumnBuilder::Int(b) => b.len(),
            ColumnBuilder::Float(b) => b.len(),
            ColumnBuilder::Text(b) => b.len(),
            ColumnBuilder::Bool(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Int(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Text(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Builds a batch of one shape row by row, each value appended straight to its column.
///
/// Invariant: between calls every column builder holds as many values as the row-time builder,
/// so a row is either wholly in the batch or not at all.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    rowtime: Int64Builder,
}

impl BatchBuilder {
    pub fn new(shape: &StreamShape, capacity: usize) -> Self {
        BatchBuilder {
            schema: shape.schema(),
            columns: shape
                .columns
                .iter()
                .map(|(_, kind)| ColumnBuilder::new(*kind, capacity))
                .collect(),
            rowtime: Int64Builder::with_capacity(capacity),
        }
    }

    pub fn num_rows(&self) -> usize {
        self.rowtime.len()
    }

    /// Appends a row of values (declared columns, in order).
    pub fn push_row(&mut self, values: &[Value], rowtime: i64) {
        assert_eq!(values.len(), self.columns.len());
        for (builder, value) in self.columns.iter_mut().zip(values) {
            builder.push(value);
        }
        self.rowtime.append_value(rowtime);
    }

    /// Appends a row whose values `append` writes, one call per column in order, each call
    /// appending exactly one value to the builder it is given.
    pub(crate) fn push_row_with(
        &mut self,
        rowtime: i64,
        mut append: impl FnMut(usize, &mut ColumnBuilder),
    ) {
        for (index, builder) in self.columns.iter_mut().enumerate() {
            append(index, builder);
        }
        self.rowtime.append_value(rowtime);
        debug_assert!(self.columns.iter().all(|c| c.len() == self.rowtime.len()));
    }

    pub fn finish(self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = self
            .columns
            .into_iter()
            .map(ColumnBuilder::finish)
            .collect();
        let mut rowtime = self.rowtime;
        columns.push(Arc::new(rowtime.finish()));
        RecordBatch::try_new(self.schema, columns).expect("builders follow the shape's kinds")
    }
}

/// Builds a batch of `shape` from rows of values (declared columns, then the row time).
pub fn batch_from_rows(shape: &StreamShape, rows: &[(Vec<Value>, i64)]) -> RecordBatch {
    let mut builder = BatchBuilder::new(shape, rows.len());
    for (values, time) in rows {
        builder.push_row(values, *time);
    }
    builder.finish()
}

/// The rows of a batch of `shape`, as values (the inverse of [`batch_from_rows`]).
#[cfg(test)]
pub(crate) fn rows_of(shape: &StreamShape, batch: &RecordBatch) -> Vec<(Vec<Value>, i64)> {
    let times = rowtimes(batch);
    (0..batch.num_rows())
        .map(|row| {
            let values = shape
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| value_at(batch.column(i).as_ref(), *kind, row))
                .collect();
            (values, times.value(row))
        })
        .collect()
}

/// The value at `row` of `array`, read as `kind`.
pub fn value_at(array: &dyn Array, kind: Kind, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    let any = array.as_any();
    match kind {
        Kind::Int | Kind::Time => {
            let v = any
                .downcast_ref::<Int64Array>()
                .expect("int and time columns are Int64")
                .value(row);
            if kind == Kind::Time {
                Value::Time(v)
            } else {
                Value::Int(v)
            }
        }
        Kind::Float => Value::Float(
            any.downcast_ref::<Float64Array>()
                .expect("float columns are Float64")
                .value(row),
        ),
        Kind::Text => Value::Text(
            any.downcast_ref::<StringArray>()
                .expect("text columns are Utf8")
                .value(row)
                .to_owned(),
        ),
        Kind::Bool => Value::Bool(
            any.downcast_ref::<BooleanArray>()
                .expect("boolean columns are Boolean")
                .value(row),
        ),
    }
}

/// Appends the group-key bytes of the value at `row` of `array` (read as `kind`) to `out`.
///
/// Two values append the same bytes exactly when `window::KeyPart` takes them for the same
/// key: NULL equals NULL, integers and times by value, floats by their bits, and a text's
/// length comes before its bytes, so that the bytes of several values end to end have one
/// reading. A tumbling window looks groups up by these bytes, which costs no allocation per
/// row, where building a `Value` per key column did.
pub fn append_group_key(array: &dyn Array, kind: Kind, row: usize, out: &mut Vec<u8>) {
    if array.is_null(row) {
        return write_group_key(KeyValue::Null, out);
    }
    let any = array.as_any();
    let value = match kind {
        Kind::Int | Kind::Time => KeyValue::Int(
            any.downcast_ref::<Int64Array>()
                .expect("int and time columns are Int64")
                .value(row),
        ),
        Kind::Float => KeyValue::Float(
            any.downcast_ref::<Float64Array>()
                .expect("float columns are Float64")
                .value(row),
        ),
        Kind::Text => KeyValue::Text(
            any.downcast_ref::<StringArray>()
                .expect("text columns are Utf8")
                .value(row),
        ),
        Kind::Bool => KeyValue::Bool(
            any.downcast_ref::<BooleanArray>()
                .expect("boolean columns are Boolean")
                .value(row),
        ),
    };
    write_group_key(value, out);
}

/// Appends the group-key bytes of `value` to `out`: the bytes [`append_group_key`] appends for
/// the same value in a column (for a window restored from its values).
pub fn append_group_key_of(value: &Value, out: &mut Vec<u8>) {
    let value = match value {
        Value::Null => KeyValue::Null,
        Value::Int(v) | Value::Time(v) => KeyValue::Int(*v),
        Value::Float(v) => KeyValue::Float(*v),
        Value::Text(v) => KeyValue::Text(v),
        Value::Bool(v) => KeyValue::Bool(*v),
    };
    write_group_key(value, out);
}

/// One value of a group key, borrowed from a column or a [`Value`].
enum KeyValue<'a> {
    Null,
    Int(i64),
    Float(f64),
    Text(&'a str),
    Bool(bool),
}

/// The one encoding of group keys (see [`append_group_key`]): a tag, then a fixed-size payload
/// or, for a text, its length and bytes.
fn write_group_key(value: KeyValue<'_>, out: &mut Vec<u8>) {
    match value {
        KeyValue::Null => out.push(0),
        KeyValue::Int(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        KeyValue::Float(v) => {
            out.push(2);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        KeyValue::Text(v) => {
            out.push(3);
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        KeyValue::Bool(v) => {
            out.push(4);
            out.push(u8::from(v));
        }
    }
}

/// The row times of a batch of any stream (its last column).
pub fn rowtimes(batch: &RecordBatch) -> &Int64Array {
    batch
        .column(batch.num_columns() - 1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("ROWTIME is the last column, Int64")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::window::key_part;

    fn value(kind: Kind) -> BoxedStrategy<Value> {
        let some = match kind {
            Kind::Int => prop_oneof![Just(0i64), Just(-1), any::<i64>()]
                .prop_map(Value::Int)
                .boxed(),
            Kind::Time => any::<i64>().prop_map(Value::Time).boxed(),
            Kind::Float => prop_oneof![
                Just(0.0f64),
                Just(-0.0),
                Just(f64::NAN),
                Just(1.5),
                any::<f64>()
            ]
            .prop_map(Value::Float)
            .boxed(),
            Kind::Text => "[ab\\u{0}]{0,3}".prop_map(Value::Text).boxed(),
            Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        };
        prop_oneof![1 => Just(Value::Null), 4 => some].boxed()
    }

    fn kinds_and_rows() -> impl Strategy<Value = (Vec<Kind>, Vec<Vec<Value>>)> {
        let kind = prop_oneof![
            Just(Kind::Int),
            Just(Kind::Time),
            Just(Kind::Float),
            Just(Kind::Text),
            Just(Kind::Bool)
        ];
        prop::collection::vec(kind, 1..4).prop_flat_map(|kinds| {
            let row: Vec<BoxedStrategy<Value>> = kinds.iter().map(|k| value(*k)).collect();
            (Just(kinds), prop::collection::vec(row, 1..12))
        })
    }

    proptest! {
        #[test]
        fn group_key_bytes_are_equal_exactly_when_the_key_parts_are_and_the_same_from_values(
            (kinds, rows) in kinds_and_rows(),
        ) {
            let shape = StreamShape {
                columns: kinds.iter().enumerate().map(|(i, k)| (format!("c{i}"), *k)).collect(),
            };
            let rows: Vec<(Vec<Value>, i64)> = rows.into_iter().map(|r| (r, 0)).collect();
            let batch = batch_from_rows(&shape, &rows);
            let bytes: Vec<Vec<u8>> = (0..rows.len())
                .map(|row| {
                    let mut out = Vec::new();
                    for (i, kind) in kinds.iter().enumerate() {
                        append_group_key(batch.column(i).as_ref(), *kind, row, &mut out);
                    }
                    out
                })
                .collect();
            for (row, (values, _)) in rows.iter().enumerate() {
                let mut of_values = Vec::new();
                for value in values {
                    append_group_key_of(value, &mut of_values);
                }
                prop_assert_eq!(&of_values, &bytes[row], "{:?}", values);
            }
            for a in 0..rows.len() {
                for b in 0..rows.len() {
                    let parts = |row: usize| rows[row].0.iter().map(key_part).collect::<Vec<_>>();
                    prop_assert_eq!(bytes[a] == bytes[b], parts(a) == parts(b), "{:?} {:?}", rows[a], rows[b]);
                }
            }
        }
    }
}
