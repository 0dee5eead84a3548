//! Dynamic partitioning's inline parsing: MetadataExtractionQuery, a jq program run by jaq on
//! each record (parsed as JSON), must output one object; its members are the record's partition
//! keys, referenced in the Prefix as `!{partitionKeyFromQuery:<name>}`. String values are used
//! as they are, other JSON values as their JSON text; a null member counts as absent. A record
//! that is not JSON, a query that fails or outputs anything but one object, or a key the Prefix
//! uses that the output lacks, counts as a partitioning failure.

use std::collections::BTreeMap;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;

/// Partition keys of one record, by name.
pub type Keys = BTreeMap<String, String>;

type JqFilter = jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>;

/// A compiled MetadataExtractionQuery.
pub struct Query {
    filter: JqFilter,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Query")
    }
}

impl Query {
    /// Compiles `code`; the error says why it is not a valid jq program.
    pub fn compile(code: &str) -> Result<Self, String> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errors| format!("the query does not parse: {errors:?}"))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errors| format!("the query does not compile: {errors:?}"))?;
        Ok(Self { filter })
    }

    /// The partition keys of `record`.
    pub fn keys(&self, record: &[u8]) -> Result<Keys, String> {
        let input = jaq_json::read::parse_single(record)
            .map_err(|e| format!("the record is not JSON: {e:?}"))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = self.filter.id.run((ctx, input)).map(unwrap_valr);
        let first = match outputs.next() {
            Some(Ok(value)) => value,
            Some(Err(error)) => return Err(format!("the query failed: {error}")),
            None => return Err("the query produced no output".to_owned()),
        };
        if outputs.next().is_some() {
            return Err("the query produced more than one output".to_owned());
        }
        // jaq's value, read back as JSON: its Display is JSON text.
        let value: serde_json::Value = serde_json::from_str(&first.to_string())
            .map_err(|e| format!("the query's output is not JSON: {e}"))?;
        let serde_json::Value::Object(members) = value else {
            return Err("the query's output is not an object".to_owned());
        };
        // A null member is a key the record does not have: its record fails partitioning.
        Ok(members
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(name, value)| {
                let text = match value {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (name, text)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_extracts_partition_keys_as_strings() {
        let query =
            Query::compile("{customer: .customer_id, year: .ts[0:4], n: .n}").expect("valid jq");
        let keys = query
            .keys(br#"{"customer_id":"c-17","ts":"2024-05-01","n":3}"#)
            .expect("keys");
        assert_eq!(keys.get("customer").map(String::as_str), Some("c-17"));
        assert_eq!(keys.get("year").map(String::as_str), Some("2024"));
        assert_eq!(keys.get("n").map(String::as_str), Some("3"));
        let missing = query.keys(br#"{"ts":"2024"}"#).expect("keys");
        assert_eq!(missing.get("customer"), None);
    }

    #[test]
    fn bad_queries_and_records_are_errors() {
        assert!(Query::compile("{customer: .customer_id").is_err());
        assert!(Query::compile("nosuchfunction(1)").is_err());
        let query = Query::compile("{c: .c}").expect("valid jq");
        assert!(query.keys(b"not json").is_err());
        let list = Query::compile(".[]").expect("valid jq");
        assert!(list.keys(b"[1,2]").is_err());
        assert!(
            Query::compile(".c")
                .expect("valid")
                .keys(br#"{"c":1}"#)
                .is_err()
        );
    }
}
