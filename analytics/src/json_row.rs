//! The fast path of JSON input decoding: a record whose row is the whole document (`$`) and
//! whose columns all map top-level keys (`$.key`) is read in one pass by serde, each mapped
//! field straight into its column's value and every other field skipped unparsed into a value,
//! without building the document first.
//!
//! It answers only what it is sure of: any record it cannot take as a whole (not an object, a
//! field that does not coerce, a syntax error) returns `None`, and the caller decodes that
//! record the general way, which gives the exact error. So both paths give the same rows and
//! the same errors; `tests` checks that over many records.
//!
//! Why not the document then the mappings (the general path): building a `serde_json::Value`
//! allocates every key and a map node per field, and it made the input decoder several times
//! slower than the parse itself (docs/PERFORMANCE.md, analytics).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

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

/// The fast path for one schema: each column's key and kind, worked out once.
#[derive(Clone, Debug)]
pub(crate) struct FastJson<'a> {
    keys: Vec<&'a str>,
    kinds: Vec<Kind>,
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
        })
    }

    /// The row of `data`, or `None` when the general path must decide.
    pub(crate) fn decode(&self, data: &[u8]) -> Option<Vec<Value>> {
        let mut row = vec![Value::Null; self.keys.len()];
        let mut de = serde_json::Deserializer::from_slice(data);
        de.deserialize_map(RowVisitor {
            fast: self,
            row: &mut row,
        })
        .ok()?;
        de.end().ok()?;
        Some(row)
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

struct RowVisitor<'a, 'b> {
    fast: &'a FastJson<'b>,
    row: &'a mut [Value],
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
            let keys = &self.fast.keys;
            match keys.iter().position(|k| *k == key) {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(first) => {
                    let v = map.next_value_seed(FieldSeed {
                        kind: self.fast.kinds[first],
                    })?;
                    if keys[first + 1..].contains(&key) {
                        // Several columns read this key, each with its own type: rare, and
                        // left to the general path.
                        return Err(de::Error::custom("a key read by several columns"));
                    }
                    self.row[first] = v;
                }
            }
        }
        Ok(())
    }
}

/// One mapped field, coerced to its column's kind as [`value::from_json`] would.
struct FieldSeed {
    kind: Kind,
}

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl FieldSeed {
    fn number<E: de::Error>(&self, n: serde_json::Number) -> Result<Value, E> {
        value::from_json(&serde_json::Value::Number(n), self.kind).map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        value::from_json(&serde_json::Value::Bool(v), self.kind).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.number(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.number(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        let n = serde_json::Number::from_f64(v).ok_or_else(|| E::custom("not a finite number"))?;
        self.number(n)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        value::from_text(v, self.kind).map_err(E::custom)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        let v: serde_json::Value =
            de::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        value::from_json(&v, self.kind).map_err(de::Error::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        let v: serde_json::Value =
            de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        value::from_json(&v, self.kind).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::input::{InputSchema, RecordFormat};
    use crate::types::SqlType;

    fn schema() -> InputSchema {
        let column = |name: &str, mapping: Option<&str>, sql_type: SqlType| RecordColumn {
            name: name.to_owned(),
            mapping: mapping.map(str::to_owned),
            sql_type,
        };
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

    /// The general path alone: the document, then the mappings.
    fn general(schema: &InputSchema, data: &[u8]) -> Result<Vec<(Vec<Value>, i64)>, String> {
        let mut rows = Vec::new();
        schema
            .decode_general(data, 5, &mut rows)
            .map(|()| rows)
            .map_err(|r| format!("{}: {}", r.error_name, r.message))
    }

    fn both(schema: &InputSchema, data: &[u8]) -> Result<Vec<(Vec<Value>, i64)>, String> {
        let mut rows = Vec::new();
        schema
            .decode(data, 5, &mut rows)
            .map(|()| rows)
            .map_err(|r| format!("{}: {}", r.error_name, r.message))
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
        let records: [&[u8]; 10] = [
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
        ];
        for record in records {
            assert_eq!(
                both(&s, record),
                general(&s, record),
                "{}",
                String::from_utf8_lossy(record)
            );
        }
        // The fast path itself took the well-formed ones (not only the fallback).
        let fast = FastJson::new("$", &s.columns).expect("applies");
        assert!(fast.decode(records[0]).is_some());
        assert!(fast.decode(records[1]).is_some());
        assert_eq!(
            fast.decode(records[2]).expect("taken")[0],
            Value::Text("B".to_owned())
        );
        assert!(fast.decode(records[6]).is_none());
        assert!(fast.decode(records[7]).is_none());
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|i| i.into()),
            (-1e6f64..1e6).prop_map(|f| f.into()),
            "[a-zA-Z0-9 :.\\-é\"\\\\]{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_record_decodes_the_same_both_ways(
            fields in prop::collection::vec(
                (prop_oneof![Just("sym"), Just("px"), Just("qty"), Just("ok"), Just("ts"), Just("note"), Just("other")],
                 json_value()),
                0..8),
        ) {
            // Built by hand so that keys can repeat.
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::Value::from(*k), v))
                .collect();
            let record = format!("{{{}}}", body.join(","));
            let s = schema();
            prop_assert_eq!(both(&s, record.as_bytes()), general(&s, record.as_bytes()), "{}", record);
        }
    }
}
