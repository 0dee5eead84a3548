//! The Kinesis Data Analytics SQL front end: whatever the program text and whatever the records,
//! parsing, planning and running it answers a program error or rows, and never panics. The
//! input is the program, then a NUL byte, then records (one per line) for the program to run
//! over through a fixed JSON input schema of every column type, so a program that compiles also
//! reaches the plan's execution: filters, casts, windows, joins and row functions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_analytics::output::OutputFormat;
use sluice_analytics::run_file::{RunOptions, run};

const SCHEMA: &str = r#"{
  "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
  "RecordColumns": [
    {"Name": "sym", "Mapping": "$.sym", "SqlType": "VARCHAR(8)"},
    {"Name": "px", "Mapping": "$.px", "SqlType": "DOUBLE"},
    {"Name": "qty", "Mapping": "$.qty", "SqlType": "INTEGER"},
    {"Name": "big", "Mapping": "$.big", "SqlType": "BIGINT"},
    {"Name": "ok", "Mapping": "$.ok", "SqlType": "BOOLEAN"},
    {"Name": "ts", "Mapping": "$.ts", "SqlType": "TIMESTAMP"},
    {"Name": "amount", "Mapping": "$.amount", "SqlType": "DECIMAL(10,2)"}
  ]
}"#;

/// Records used when the input brings none, so that every compiled program runs over some rows.
const DEFAULT_RECORDS: [&str; 4] = [
    r#"{"sym":"A","px":1.5,"qty":3,"big":10,"ok":true,"ts":"2026-01-01 00:00:00","amount":1.25}"#,
    r#"{"sym":"B","px":-2,"qty":0,"big":-1,"ok":false,"ts":"2026-01-01 00:00:59.999","amount":0}"#,
    r#"{"sym":null,"px":"x","qty":2147483648,"big":9223372036854775807,"ok":1,"ts":"bad","amount":"1e400"}"#,
    r#"not json"#,
];

fuzz_target!(|data: &[u8]| {
    let (program, records) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(sql) = std::str::from_utf8(program) else {
        return;
    };
    let mut lines: Vec<&[u8]> = records
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .take(64)
        .collect();
    if lines.is_empty() {
        lines = DEFAULT_RECORDS.iter().map(|r| r.as_bytes()).collect();
    }
    let options = RunOptions {
        name_prefix: "SOURCE_SQL_STREAM".to_owned(),
        start_ms: 0,
        step_ms: 7_000,
        outputs: Vec::new(),
        format: OutputFormat::Json,
    };
    // An error is a fine answer; only a panic (or a hang, or unbounded memory) is a finding.
    let _ = run(sql, SCHEMA, &lines, &options);
});
