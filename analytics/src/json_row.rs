//! The fast path of JSON input decoding: a record whose row is the whole document (`$`) and
//! whose columns all map top-level keys (`$.key`) is read in one pass by serde, each mapped
//! field coerced straight into its column's cell and every other field skipped unparsed into a
//! value, without building the document first. A record read whole is then appended to the
//! batch's column builders: no row of values is built for it, and after the first records
//! nothing is allocated per record (text goes through one reused buffer per column).
//!
//! It answers only what it is sure of: any record it cannot take as a whole (not an object, a
//! field that does not coerce, a syntax error) leaves the batch as it was and returns `false`,
//! and the caller decodes that record the general way, which gives the exact error. So both
//! paths give the same rows and the same errors; `tests` checks that over many records.
//!
//! Why not the document then the mappings (the general path): building a `serde_json::Value`
//! allocates every key and a map node per field, and it made the input decoder several times
//! slower than the parse itself; a row of `Value`s per record, transposed into columns
//! afterwards, was most of what was left (docs/DECISIONS.md, the json_row decision).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::batch::{BatchBuilder, ColumnBuilder};
use crate::input::RecordColumn;
use crate::types::Kind;
use crate::value::{self, Value};

/// The top-level key a column reads, if its mapping is that simple (`$.key`, or no mapping:
/// the column's own name).
pub(crate) fn top_level_key(column: &RecordColumn) -> Option<&str> {
    match column.mapping.as_deref().map(str::trim) {
        None | Some("") => Some(&column.name),
        Some(mapping) => {
            let key = mapping.strip_prefix("$.")?;
            (!key.is_empty() && !key.contains(['.', '[', ']'])).then_some(key)
        }
    }
}

/// One column's value of the record being read, already of the column's kind. A text's
/// characters are in the column's buffer ([`FastJson::texts`]), so a cell owns nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
    Text,
}

/// The fast path for one schema: each column's key and kind, worked out once, and the cells of
/// the record being read.
#[derive(Clone, Debug)]
pub(crate) struct FastJson<'a> {
    keys: Vec<&'a str>,
    kinds: Vec<Kind>,
    cells: Vec<Cell>,
    texts: Vec<String>,
}

impl<'a> FastJson<'a> {
    /// The fast path of a schema with row path `row_path`, if every column can take it.
    pub(crate) fn new(row_path: &str, columns: &'a [RecordColumn]) -> Option<Self> {
        if row_path.trim() != "$" {
            return None;
        }
        Some(FastJson {
            keys: columns.iter().map(top_level_key).collect::<Option<_>>()?,
            kinds: columns.iter().map(|c| c.sql_type.kind()).collect(),
            cells: vec![Cell::Null; columns.len()],
            texts: vec![String::new(); columns.len()],
        })
    }

    /// Appends the row of `data` to `out` and returns `true`, or returns `false` with `out`
    /// unchanged when the general path must decide.
    pub(crate) fn decode(&mut self, data: &[u8], rowtime: i64, out: &mut BatchBuilder) -> bool {
        // The general path refuses a record with bytes that are not UTF-8 anywhere (its
        // document keeps every string), but serde skips the strings nobody reads without
        // checking them: so the record is checked whole first, which also spares checking each
        // string it reads again.
        let Ok(text) = std::str::from_utf8(data) else {
            return false;
        };
        self.cells.fill(Cell::Null);
        let mut de = serde_json::Deserializer::from_str(text);
        let read = de
            .deserialize_map(RowVisitor {
                keys: &self.keys,
                kinds: &self.kinds,
                cells: &mut self.cells,
                texts: &mut self.texts,
            })
            .and_then(|()| de.end());
        if read.is_err() {
            return false;
        }
        let (cells, texts) = (&self.cells, &self.texts);
        out.push_row_with(rowtime, |column, builder| {
            append(builder, cells[column], &texts[column]);
        });
        true
    }
}

/// Appends one cell to its column's builder.
fn append(builder: &mut ColumnBuilder, cell: Cell, text: &str) {
    match (builder, cell) {
        (builder, Cell::Null) => builder.push_null(),
        (ColumnBuilder::Int(b), Cell::Int(v) | Cell::Time(v)) => b.append_value(v),
        (ColumnBuilder::Float(b), Cell::Float(v)) => b.append_value(v),
        (ColumnBuilder::Text(b), Cell::Text) => b.append_value(text),
        (ColumnBuilder::Bool(b), Cell::Bool(v)) => b.append_value(v),
        (_, cell) => unreachable!("a cell is coerced to its column's kind, not {cell:?}"),
    }
}

/// A key, borrowed from the record unless it holds escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct RowVisitor<'a, 'k> {
    keys: &'a [&'k str],
    kinds: &'a [Kind],
    cells: &'a mut [Cell],
    texts: &'a mut [String],
}

impl<'de> Visitor<'de> for RowVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.as_str();
            // Columns are few; several may read the same key. The last occurrence of a key
            // wins, as in the document the general path builds.
            match self.keys.iter().position(|k| *k == key) {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(first) => {
                    if self.keys[first + 1..].contains(&key) {
                        // Several columns read this key, each with its own type: rare, and
                        // left to the general path.
                        return Err(de::Error::custom("a key read by several columns"));
                    }
                    self.cells[first] = map.next_value_seed(FieldSeed {
                        kind: self.kinds[first],
                        text: &mut self.texts[first],
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// One mapped field, coerced to its column's kind as [`value::from_json`] would; a text goes to
/// `text`.
struct FieldSeed<'a> {
    kind: Kind,
    text: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Cell;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cell, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl FieldSeed<'_> {
    /// The cell of a coerced value (the general path's coercion, for the uncommon cases).
    fn cell<E: de::Error>(self, coerced: Result<Value, String>) -> Result<Cell, E> {
        Ok(match coerced.map_err(E::custom)? {
            Value::Null => Cell::Null,
            Value::Int(v) => Cell::Int(v),
            Value::Float(v) => Cell::Float(v),
            Value::Bool(v) => Cell::Bool(v),
            Value::Time(v) => Cell::Time(v),
            Value::Text(v) => {
                *self.text = v;
                Cell::Text
            }
        })
    }

    fn number<E: de::Error>(self, n: serde_json::Number) -> Result<Cell, E> {
        let kind = self.kind;
        self.cell(value::from_json(&serde_json::Value::Number(n), kind))
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Cell;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell, E> {
        let kind = self.kind;
        self.cell(value::from_json(&serde_json::Value::Bool(v), kind))
    }

    // The common numeric cases are coerced here exactly as `value::from_json` does, without
    // building a `serde_json::Number`; the rest go through it.
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell, E> {
        match self.kind {
            Kind::Int => Ok(Cell::Int(v)),
            Kind::Float => Ok(Cell::Float(v as f64)),
            Kind::Time => Ok(Cell::Time(v)),
            Kind::Text | Kind::Bool => self.number(v.into()),
        }
    }

    // serde_json reads every integer without a sign as a `u64`.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
        match (self.kind, i64::try_from(v)) {
            (Kind::Float, _) => Ok(Cell::Float(v as f64)),
            (Kind::Int, Ok(i)) => Ok(Cell::Int(i)),
            (Kind::Time, Ok(i)) => Ok(Cell::Time(i)),
            _ => self.number(v.into()),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell, E> {
        if self.kind == Kind::Float && v.is_finite() {
            return Ok(Cell::Float(v));
        }
        let n = serde_json::Number::from_f64(v).ok_or_else(|| E::custom("not a finite number"))?;
        self.number(n)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell, E> {
        if self.kind == Kind::Text {
            self.text.clear();
            self.text.push_str(v);
            return Ok(Cell::Text);
        }
        let kind = self.kind;
        self.cell(value::from_text(v, kind))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Cell, A::Error> {
        let v: serde_json::Value =
            de::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        let kind = self.kind;
        self.cell(value::from_json(&v, kind))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cell, A::Error> {
        let v: serde_json::Value =
            de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        let kind = self.kind;
        self.cell(value::from_json(&v, kind))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::rows_of;
    use crate::input::{InputSchema, RecordFormat, RejectedRecord};
    use crate::types::SqlType;

    fn column(name: &str, mapping: Option<&str>, sql_type: SqlType) -> RecordColumn {
        RecordColumn {
            name: name.to_owned(),
            mapping: mapping.map(str::to_owned),
            sql_type,
        }
    }

    fn schema() -> InputSchema {
        InputSchema {
            format: RecordFormat::Json {
                row_path: "$".to_owned(),
            },
            columns: vec![
                column("SYM", Some("$.sym"), SqlType::Varchar(Some(8))),
                column("PX", Some("$.px"), SqlType::Double),
                column("QTY", Some("$.qty"), SqlType::Integer),
                column("OK", Some("$.ok"), SqlType::Boolean),
                column("TS", Some("$.ts"), SqlType::Timestamp),
                column("note", None, SqlType::Varchar(Some(64))),
            ],
        }
    }

    /// [`schema`] with one more column reading `px`, as text: records holding `px` are left to
    /// the general path.
    fn schema_with_shared_key() -> InputSchema {
        let mut s = schema();
        s.columns
            .push(column("PX_TEXT", Some("$.px"), SqlType::Varchar(Some(16))));
        s
    }

    type Decoded = (Vec<(Vec<Value>, i64)>, Vec<RejectedRecord>);

    /// The general path alone, record by record: the document, then the mappings.
    fn general(schema: &InputSchema, records: &[&[u8]]) -> Decoded {
        let mut rows = Vec::new();
        let mut rejected = Vec::new();
        for (i, data) in records.iter().enumerate() {
            if let Err(r) = schema.decode_general(data, i as i64, &mut rows) {
                rejected.push(r);
            }
        }
        (rows, rejected)
    }

    /// The decoder (the fast path first) over every record into one batch, read back as rows.
    fn decoded(schema: &InputSchema, records: &[&[u8]]) -> Decoded {
        let shape = schema.shape();
        let mut out = BatchBuilder::new(&shape, records.len());
        let mut decoder = schema.decoder();
        let mut rejected = Vec::new();
        for (i, data) in records.iter().enumerate() {
            let before = out.num_rows();
            if let Err(r) = decoder.decode(data, i as i64, &mut out) {
                assert_eq!(out.num_rows(), before, "a rejected record adds no row");
                rejected.push(r);
            }
        }
        (rows_of(&shape, &out.finish()), rejected)
    }

    /// What the fast path alone makes of `data`: its row, or `None` if it left it.
    fn fast_row(schema: &InputSchema, data: &[u8]) -> Option<Vec<Value>> {
        let shape = schema.shape();
        let mut out = BatchBuilder::new(&shape, 1);
        let mut fast = FastJson::new("$", &schema.columns).expect("applies");
        if !fast.decode(data, 0, &mut out) {
            assert_eq!(out.num_rows(), 0);
            return None;
        }
        let mut rows = rows_of(&shape, &out.finish());
        assert_eq!(rows.len(), 1);
        rows.pop().map(|(values, _)| values)
    }

    #[test]
    fn the_fast_path_applies_only_to_top_level_mappings_of_the_whole_record() {
        let s = schema();
        assert!(FastJson::new("$", &s.columns).is_some());
        assert!(FastJson::new("$.rows", &s.columns).is_none());
        let mut nested = s.columns.clone();
        nested[0].mapping = Some("$.a.b".to_owned());
        assert!(FastJson::new("$", &nested).is_none());
        nested[0].mapping = Some("$[\"a b\"]".to_owned());
        assert!(FastJson::new("$", &nested).is_none());
    }

    #[test]
    fn the_fast_path_reads_what_the_general_path_reads() {
        let s = schema();
        let records: [&[u8]; 15] = [
            br#"{"sym":"A","px":1.5,"qty":3,"ok":true,"ts":"2026-01-01 00:00:01","note":"x"}"#,
            br#"{"px":2,"extra":{"deep":[1,2,{"x":null}]},"sym":"B\u00e9\n"}"#,
            br#"{"sym":"A","sym":"B"}"#,
            br#"{"qty":"12","px":"1e3","ok":"TRUE","ts":1700000000000}"#,
            br#"{"note":{"a":[1,"x"]},"sym":[1,2]}"#,
            br#"{"qty":1.5}"#,
            br#"{"qty":"x"}"#,
            br#"[{"sym":"A"}]"#,
            br#"{"sym":"A"} trailing"#,
            br#"{"sym":"A","#,
            br#"{"qty":9223372036854775808,"px":18446744073709551615,"ts":-5}"#,
            br#"{"qty":4.0,"px":-0.0,"note":12.50,"sym":true,"ts":2.5}"#,
            br#"{"qty":null,"px":null,"sym":null,"ok":null,"ts":null,"note":null}"#,
            // Bytes that are not UTF-8, in a field no column reads and in a key.
            b"{\"sym\":\"A\",\"other\":\"\xff\"}",
            b"{\"sym\":\"A\",\"\xc3\":{\"x\":1}}",
        ];
        for record in records {
            assert_eq!(
                decoded(&s, &[record]),
                general(&s, &[record]),
                "{}",
                String::from_utf8_lossy(record)
            );
        }
        // All of them in one batch, rejected ones between taken ones.
        assert_eq!(decoded(&s, &records), general(&s, &records));
        // The fast path itself took the well-formed ones (not only the fallback).
        assert!(fast_row(&s, records[0]).is_some());
        assert!(fast_row(&s, records[1]).is_some());
        assert_eq!(
            fast_row(&s, records[2]).expect("taken")[0],
            Value::Text("B".to_owned())
        );
        assert!(fast_row(&s, records[6]).is_none());
        assert!(fast_row(&s, records[7]).is_none());
        assert!(fast_row(&s, records[12]).is_some());
        assert!(fast_row(&s, records[13]).is_none());
        let shared = schema_with_shared_key();
        assert!(fast_row(&shared, records[1]).is_none());
        assert!(fast_row(&shared, br#"{"sym":"A"}"#).is_some());
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|i| i.into()),
            any::<u64>().prop_map(|u| u.into()),
            (-1e6f64..1e6).prop_map(|f| f.into()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.into()),
            "[a-zA-Z0-9 :.\\-é\"\\\\]{0,12}".prop_map(serde_json::Value::String),
            "[a~]{1,3}".prop_map(serde_json::Value::String),
            // Texts that coerce to the other kinds.
            prop_oneof![
                Just("2026-01-01 00:00:01"),
                Just("2026-01-01T00:00:01.5Z"),
                Just(" 42 "),
                Just("-1.5e3"),
                Just("true"),
                Just("FALSE"),
            ]
            .prop_map(|s| serde_json::Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z~]{1,3}", inner, 0..3)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A record: usually an object whose keys may repeat, sometimes not one, cut short, or
    /// with bytes that are not UTF-8 (each `~` of its strings).
    fn record() -> impl Strategy<Value = Vec<u8>> {
        let fields = prop::collection::vec(
            (
                prop_oneof![
                    Just("sym"),
                    Just("px"),
                    Just("qty"),
                    Just("ok"),
                    Just("ts"),
                    Just("note"),
                    Just("other"),
                    Just("s\\u0079m"),
                ],
                json_value(),
            ),
            0..8,
        );
        (fields, 0..12usize, any::<prop::sample::Index>()).prop_map(|(fields, damage, at)| {
            // Built by hand so that keys can repeat and hold escapes.
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let record = format!("{{ {} }}", body.join(" , "));
            match damage {
                0 => record.as_bytes()[..at.index(record.len() + 1)].to_vec(),
                1 => format!("[{record}]").into_bytes(),
                2 => format!("{record} x").into_bytes(),
                // In any string, read by a column or not.
                3 => record
                    .bytes()
                    .map(|b| if b == b'~' { 0xff } else { b })
                    .collect(),
                _ => record.into_bytes(),
            }
        })
    }

    proptest! {
        #[test]
        fn any_records_decode_the_same_both_ways(
            records in prop::collection::vec(record(), 1..6),
            shared in any::<bool>(),
        ) {
            let s = if shared { schema_with_shared_key() } else { schema() };
            let records: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            // Compared as text so that a NaN (from a text such as "nan") equals itself.
            prop_assert_eq!(
                format!("{:?}", decoded(&s, &records)),
                format!("{:?}", general(&s, &records)),
                "{:?}",
                records.iter().map(|r| String::from_utf8_lossy(r)).collect::<Vec<_>>()
            );
        }
    }
}
