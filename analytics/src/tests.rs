//! End-to-end tests of the engine without a server: programs run over records with
//! `run_file::run`, each compared with a result derived by hand in the test.

use crate::output::OutputFormat;
use crate::run_file::{RunError, RunOptions, run};

const SCHEMA: &str = r#"{
  "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
  "RecordEncoding": "UTF-8",
  "RecordColumns": [
    {"Name": "sym", "Mapping": "$.sym", "SqlType": "VARCHAR(8)"},
    {"Name": "px", "Mapping": "$.px", "SqlType": "DOUBLE"},
    {"Name": "qty", "Mapping": "$.qty", "SqlType": "INTEGER"}
  ]
}"#;

/// A JSON input schema whose columns, (name, SQL type), map the record's members of that name.
fn json_schema(columns: &[(&str, &str)]) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|(name, sql_type)| {
            format!(r#"{{"Name": "{name}", "Mapping": "$.{name}", "SqlType": "{sql_type}"}}"#)
        })
        .collect();
    format!(
        r#"{{"RecordFormat": {{"RecordFormatType": "JSON", "MappingParameters": {{"JSONMappingParameters": {{"RecordRowPath": "$"}}}}}},
            "RecordEncoding": "UTF-8", "RecordColumns": [{}]}}"#,
        columns.join(", ")
    )
}

/// Column `name` of JSON output rows, as numbers.
fn numbers(lines: &[String], name: &str) -> Vec<f64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("a JSON row")[name]
                .as_f64()
                .expect("a number")
        })
        .collect()
}

fn options(outputs: &[&str], step_ms: i64) -> RunOptions {
    RunOptions {
        name_prefix: "SRC".into(),
        start_ms: 0,
        step_ms,
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        format: OutputFormat::Json,
    }
}

fn records() -> Vec<Vec<u8>> {
    [
        r#"{"sym":"AMZN","px":200.0,"qty":100}"#,
        r#"{"sym":"IBM","px":10.5,"qty":2}"#,
        r#"{"sym":"AMZN","px":150.0,"qty":50}"#,
        r#"{"sym":"IBM","px":300.0,"qty":40}"#,
        r#"{"sym":"MSFT","px":1.0,"qty":1}"#,
        r#"{"sym":"AMZN","px":90.0,"qty":200}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn run_on(
    sql: &str,
    outputs: &[&str],
    step_ms: i64,
    records: &[Vec<u8>],
) -> Result<Vec<String>, RunError> {
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    run(sql, SCHEMA, &refs, &options(outputs, step_ms))
}

#[test]
fn the_filter_program_keeps_rows_over_the_notional_threshold() {
    let sql = r#"
        CREATE OR REPLACE STREAM "BIG_TRADES" ("sym" VARCHAR(8), "notional" DOUBLE);
        CREATE OR REPLACE PUMP "BIG_PUMP" AS INSERT INTO "BIG_TRADES"
          SELECT STREAM "sym", "px" * "qty" FROM "SRC_001" WHERE "px" * "qty" > 10000;"#;
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    // By hand: 200*100 = 20000, 10.5*2 = 21, 150*50 = 7500, 300*40 = 12000, 1, 90*200 = 18000.
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"AMZN","notional":20000.0}"#,
            r#"{"sym":"IBM","notional":12000.0}"#,
            r#"{"sym":"AMZN","notional":18000.0}"#,
        ]
    );
}

#[test]
fn the_tumbling_program_counts_and_averages_per_key_and_window() {
    let sql = r#"
        CREATE OR REPLACE STREAM "STATS" ("sym" VARCHAR(8), "n" BIGINT, "avg_px" DOUBLE, "hi" DOUBLE, "lo" DOUBLE);
        CREATE OR REPLACE PUMP "STATS_PUMP" AS INSERT INTO "STATS"
          SELECT STREAM "sym", COUNT(*), AVG("px"), MAX("px"), MIN("px")
          FROM "SRC_001"
          GROUP BY "sym", STEP("SRC_001".ROWTIME BY INTERVAL '3' SECOND);"#;
    // Rows at 0,1,2 s fall in window [0,3); rows at 3,4,5 s in [3,6).
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"AMZN","n":2,"avg_px":175.0,"hi":200.0,"lo":150.0}"#,
            r#"{"sym":"IBM","n":1,"avg_px":10.5,"hi":10.5,"lo":10.5}"#,
            r#"{"sym":"IBM","n":1,"avg_px":300.0,"hi":300.0,"lo":300.0}"#,
            r#"{"sym":"MSFT","n":1,"avg_px":1.0,"hi":1.0,"lo":1.0}"#,
            r#"{"sym":"AMZN","n":1,"avg_px":90.0,"hi":90.0,"lo":90.0}"#,
        ]
    );
}

#[test]
fn floor_over_rowtime_groups_by_whole_minutes_and_selects_the_window_start() {
    let sql = r#"
        CREATE OR REPLACE STREAM "PER_MIN" ("minute" TIMESTAMP, "n" INTEGER, "vol" BIGINT);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "PER_MIN"
          SELECT STREAM FLOOR("SRC_001".ROWTIME TO MINUTE), COUNT(*), SUM("qty")
          FROM "SRC_001" GROUP BY FLOOR("SRC_001".ROWTIME TO MINUTE);"#;
    // 25 s apart: 0, 25, 50 s in minute 0; 75, 100 s in minute 1; 125 s in minute 2.
    let lines = run_on(sql, &[], 25_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"minute":"1970-01-01 00:00:00.000","n":3,"vol":152}"#,
            r#"{"minute":"1970-01-01 00:01:00.000","n":2,"vol":41}"#,
            r#"{"minute":"1970-01-01 00:02:00.000","n":1,"vol":200}"#,
        ]
    );
}

#[test]
fn a_pump_chain_filters_then_aggregates_through_an_intermediate_stream() {
    let sql = r#"
        CREATE OR REPLACE STREAM "CLEAN" ("s" VARCHAR(8), "value" DOUBLE);
        CREATE OR REPLACE PUMP "P1" AS INSERT INTO "CLEAN"
          SELECT STREAM LOWER("sym"), "px" * "qty" FROM "SRC_001" WHERE "sym" <> 'MSFT' AND "qty" >= 40;
        CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("s" VARCHAR(8), "total" DOUBLE, "n" INTEGER);
        CREATE OR REPLACE PUMP "P2" AS INSERT INTO "DESTINATION_SQL_STREAM"
          SELECT STREAM "s", SUM("value"), COUNT("value") FROM "CLEAN"
          GROUP BY "s", STEP("CLEAN".ROWTIME BY INTERVAL '1' MINUTE);"#;
    let lines = run_on(sql, &["DESTINATION_SQL_STREAM"], 1_000, &records()).expect("runs");
    // Kept: AMZN 20000, AMZN 7500, IBM 12000, AMZN 18000 (IBM qty 2 and MSFT are dropped).
    assert_eq!(
        lines,
        vec![
            r#"{"s":"amzn","total":45500.0,"n":3}"#,
            r#"{"s":"ibm","total":12000.0,"n":1}"#
        ]
    );
}

#[test]
fn malformed_records_go_to_error_stream_and_the_rest_still_flow() {
    let sql = r#"
        CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8));
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT" SELECT STREAM "sym" FROM "SRC_001";"#;
    let mut input = records();
    input.insert(1, b"{broken".to_vec());
    input.insert(3, br#"{"sym":"X","px":"not a number","qty":1}"#.to_vec());
    let lines = run_on(sql, &["OUT", "error_stream"], 1_000, &input).expect("runs");
    let out: Vec<&String> = lines.iter().filter(|l| l.starts_with("OUT\t")).collect();
    let errors: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("error_stream\t"))
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(out.len(), 6);
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["ERROR_NAME"], "Invalid_JSON");
    assert_eq!(
        errors[0]["DATA_ROW"], "7b62726f6b656e",
        "hex of the original record"
    );
    assert_eq!(errors[0]["DATA_ROWTIME"], "1970-01-01 00:00:01.000");
    assert_eq!(errors[1]["ERROR_NAME"], "Coercion_error");
}

#[test]
fn a_division_by_zero_sends_only_that_row_to_error_stream() {
    let sql = r#"
        CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8), "r" INTEGER);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT" SELECT STREAM "sym", 100 / ("qty" - 1) FROM "SRC_001";"#;
    let lines = run_on(sql, &["OUT", "error_stream"], 1_000, &records()).expect("runs");
    let out = lines.iter().filter(|l| l.starts_with("OUT\t")).count();
    let errors: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("error_stream\t"))
        .collect();
    assert_eq!(out, 5, "every row but MSFT's (qty 1)");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("\"PUMP_NAME\":\"P\""), "{}", errors[0]);
}

#[test]
fn string_time_and_conversion_functions_project_as_documented() {
    let sql = r#"
        CREATE OR REPLACE STREAM "OUT" ("a" VARCHAR(16), "b" INTEGER, "c" VARCHAR(32), "d" VARCHAR(8), "e" DOUBLE);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
          SELECT STREAM SUBSTRING("sym" FROM 2 FOR 2) || '-' || UPPER('x'), CHAR_LENGTH("sym"),
                 TIMESTAMP_TO_CHAR('yyyy-MM-dd HH:mm:ss', "SRC_001".ROWTIME),
                 CAST("qty" AS VARCHAR(8)), ABS(-1 * "px")
          FROM "SRC_001" WHERE "sym" IN ('IBM') AND "px" BETWEEN 10 AND 20;"#;
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![r#"{"a":"BM-X","b":3,"c":"1970-01-01 00:00:01","d":"2","e":10.5}"#]
    );
}

#[test]
fn programs_the_planner_cannot_run_are_rejected_with_positions() {
    let unknown_column = r#"CREATE OR REPLACE STREAM "OUT" ("a" INTEGER);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
  SELECT STREAM "nope" FROM "SRC_001";"#;
    let Err(RunError::Code(error)) = run_on(unknown_column, &[], 1, &[]) else {
        panic!("rejected");
    };
    assert_eq!((error.position.line, error.position.column), (3, 17));
    assert!(error.message.contains("Column 'nope' not found"));

    let ungrouped = r#"CREATE OR REPLACE STREAM "OUT" ("a" VARCHAR(8), "n" INTEGER);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
  SELECT STREAM "sym", COUNT(*) FROM "SRC_001" GROUP BY STEP("SRC_001".ROWTIME BY INTERVAL '10' SECOND);"#;
    let Err(RunError::Code(error)) = run_on(ungrouped, &[], 1, &[]) else {
        panic!("rejected");
    };
    assert_eq!(error.position.line, 3);
    assert!(
        error.message.contains("not being grouped"),
        "{}",
        error.message
    );

    let column_count = r#"CREATE OR REPLACE STREAM "OUT" ("a" VARCHAR(8), "n" INTEGER);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT" SELECT STREAM "sym" FROM "SRC_001";"#;
    assert!(matches!(
        run_on(column_count, &[], 1, &[]),
        Err(RunError::Code(_))
    ));
}

#[test]
fn the_sliding_program_gives_one_row_per_row_with_a_range_frame_per_partition() {
    let sql = r#"
        CREATE OR REPLACE STREAM "MOVING" ("sym" VARCHAR(8), "vol_4m" BIGINT, "px" DOUBLE);
        CREATE OR REPLACE PUMP "MOVING_PUMP" AS INSERT INTO "MOVING"
          SELECT STREAM "sym", SUM("qty") OVER W, "px" FROM "SRC_001"
          WINDOW W AS (PARTITION BY "sym" RANGE INTERVAL '4' MINUTE PRECEDING);"#;
    // One row a minute. AMZN at 0, 2 and 5 min: at 5 min the frame [1 min, 5 min] has lost the
    // row at 0 (qty 100), so 50 + 200.
    let lines = run_on(sql, &[], 60_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"AMZN","vol_4m":100,"px":200.0}"#,
            r#"{"sym":"IBM","vol_4m":2,"px":10.5}"#,
            r#"{"sym":"AMZN","vol_4m":150,"px":150.0}"#,
            r#"{"sym":"IBM","vol_4m":42,"px":300.0}"#,
            r#"{"sym":"MSFT","vol_4m":1,"px":1.0}"#,
            r#"{"sym":"AMZN","vol_4m":250,"px":90.0}"#,
        ]
    );
}

#[test]
fn a_rows_frame_holds_the_current_row_and_n_before_it() {
    let sql = r#"
        CREATE OR REPLACE STREAM "OUT" ("n" INTEGER, "hi" DOUBLE);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
          SELECT STREAM COUNT(*) OVER (ROWS 1 PRECEDING), MAX("px") OVER (ROWS 1 PRECEDING)
          FROM "SRC_001";"#;
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    let pairs: Vec<(i64, f64)> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
            (v["n"].as_i64().expect("n"), v["hi"].as_f64().expect("hi"))
        })
        .collect();
    // px: 200, 10.5, 150, 300, 1, 90.
    assert_eq!(
        pairs,
        vec![
            (1, 200.0),
            (2, 200.0),
            (2, 150.0),
            (2, 300.0),
            (2, 300.0),
            (2, 90.0)
        ]
    );
}

#[test]
fn an_unbounded_sliding_window_is_rejected() {
    let sql = r#"CREATE OR REPLACE STREAM "OUT" ("n" INTEGER);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
  SELECT STREAM COUNT(*) OVER (ROWS UNBOUNDED PRECEDING) FROM "SRC_001";"#;
    let Err(RunError::Code(error)) = run_on(sql, &[], 1, &[]) else {
        panic!("rejected");
    };
    assert_eq!(error.position.line, 3);
    assert!(error.message.contains("UNBOUNDED"), "{}", error.message);
}

#[test]
fn top_k_items_tumbling_ranks_the_most_frequent_values_of_each_window() {
    let sql = r#"
        CREATE OR REPLACE STREAM "TOP" ("ITEM" VARCHAR(8), "ITEM_COUNT" DOUBLE);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "TOP"
          SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(
            CURSOR(SELECT STREAM * FROM "SRC_001"), 'sym', 2, 3));"#;
    // [0,3 s): AMZN twice, IBM once. [3,6 s): IBM, MSFT, AMZN once each: ties go by value.
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"ITEM":"AMZN","ITEM_COUNT":2.0}"#,
            r#"{"ITEM":"IBM","ITEM_COUNT":1.0}"#,
            r#"{"ITEM":"AMZN","ITEM_COUNT":1.0}"#,
            r#"{"ITEM":"IBM","ITEM_COUNT":1.0}"#,
        ]
    );
}

#[test]
fn a_where_after_top_k_items_filters_the_ranked_rows() {
    let sql = r#"
        CREATE OR REPLACE STREAM "TOP" ("ITEM" VARCHAR(8), "ITEM_COUNT" DOUBLE);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "TOP"
          SELECT STREAM "ITEM", "ITEM_COUNT" FROM TABLE(TOP_K_ITEMS_TUMBLING(
            CURSOR(SELECT STREAM * FROM "SRC_001"), 'sym', 2, 3))
          WHERE "ITEM_COUNT" > 1 OR "ITEM" = 'IBM';"#;
    // The same windows as the test above; AMZN's single count in [3,6 s) is filtered out.
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"ITEM":"AMZN","ITEM_COUNT":2.0}"#,
            r#"{"ITEM":"IBM","ITEM_COUNT":1.0}"#,
            r#"{"ITEM":"IBM","ITEM_COUNT":1.0}"#,
        ]
    );
}

#[test]
fn a_where_after_count_distinct_items_filters_the_counts_and_names_unknown_columns() {
    let sql = r#"
        CREATE OR REPLACE STREAM "D" ("NUMBER_OF_DISTINCT_ITEMS" BIGINT);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "D"
          SELECT STREAM "NUMBER_OF_DISTINCT_ITEMS" FROM TABLE(COUNT_DISTINCT_ITEMS_TUMBLING(
            CURSOR(SELECT STREAM * FROM "SRC_001"), 'sym', 3))
          WHERE "NUMBER_OF_DISTINCT_ITEMS" >= 3;"#;
    // [0,3 s): AMZN, IBM (2, filtered out); [3,6 s): IBM, MSFT, AMZN (3).
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    assert_eq!(lines, vec![r#"{"NUMBER_OF_DISTINCT_ITEMS":3}"#]);

    let unknown = sql.replace(r#"WHERE "NUMBER_OF_DISTINCT_ITEMS""#, r#"WHERE "qty""#);
    let Err(RunError::Code(error)) = run_on(&unknown, &[], 1_000, &records()) else {
        panic!("a WHERE over a cursor column after the function is rejected");
    };
    assert!(error.message.contains("qty"), "{}", error.message);
    assert_eq!(error.position.line, 6, "{error:?}");
}

#[test]
fn count_distinct_items_tumbling_counts_values_per_window() {
    let sql = r#"
        CREATE OR REPLACE STREAM "D" ("NUMBER_OF_DISTINCT_ITEMS" BIGINT);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "D"
          SELECT STREAM "NUMBER_OF_DISTINCT_ITEMS" FROM TABLE(COUNT_DISTINCT_ITEMS_TUMBLING(
            CURSOR(SELECT STREAM * FROM "SRC_001" WHERE "qty" > 1), 'sym', 3));"#;
    // qty > 1 drops MSFT. [0,3 s): AMZN, IBM; [3,6 s): IBM, AMZN.
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"NUMBER_OF_DISTINCT_ITEMS":2}"#,
            r#"{"NUMBER_OF_DISTINCT_ITEMS":2}"#
        ]
    );
}

mod front_end_robustness {
    //! The SQL front end against generated programs: token soups and canonical programs with a
    //! token removed or repeated. Whatever the text, parsing, planning and running a few records
    //! never panic, and a rejection names a position inside the text.

    use proptest::prelude::*;

    use crate::pipeline::{Emissions, Pipeline, PipelineInput};
    use crate::program::parse_program;
    use crate::schema_wire::WireSourceSchema;

    const VOCABULARY: &[&str] = &[
        "CREATE",
        "OR",
        "REPLACE",
        "STREAM",
        "PUMP",
        "AS",
        "INSERT",
        "INTO",
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP",
        "BY",
        "STEP",
        "FLOOR",
        "TO",
        "MINUTE",
        "SECOND",
        "INTERVAL",
        "'10'",
        "OVER",
        "WINDOW",
        "PARTITION",
        "RANGE",
        "ROWS",
        "PRECEDING",
        "COUNT",
        "SUM",
        "AVG",
        "MIN",
        "MAX",
        "(",
        ")",
        ",",
        ";",
        "*",
        "+",
        "-",
        "/",
        ">",
        "=",
        "<>",
        "AND",
        "NOT",
        "NULL",
        "CAST",
        "VARCHAR(8)",
        "INTEGER",
        "DOUBLE",
        "TIMESTAMP",
        "\"S\"",
        "\"T\"",
        "\"sym\"",
        "\"px\"",
        "\"qty\"",
        "\"SRC_001\"",
        "\"SRC_001\".ROWTIME",
        "ROWTIME",
        "1",
        "0",
        "2.5",
        "'x'",
        "TABLE",
        "CURSOR",
        "TOP_K_ITEMS_TUMBLING",
        "'sym'",
        "UPPER",
        "SUBSTRING",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
    ];

    const CANONICAL: &[&str] = &[
        r#"CREATE OR REPLACE STREAM "S" ("sym" VARCHAR(8), "n" BIGINT, "hi" DOUBLE); CREATE OR REPLACE PUMP "P" AS INSERT INTO "S" SELECT STREAM "sym", COUNT(*), MAX("px") FROM "SRC_001" GROUP BY "sym", STEP("SRC_001".ROWTIME BY INTERVAL '2' SECOND);"#,
        r#"CREATE OR REPLACE STREAM "S" ("sym" VARCHAR(8), "v" DOUBLE); CREATE OR REPLACE PUMP "P" AS INSERT INTO "S" SELECT STREAM "sym", "px" * "qty" FROM "SRC_001" WHERE "px" * "qty" > 100;"#,
        r#"CREATE OR REPLACE STREAM "S" ("sym" VARCHAR(8), "v" BIGINT); CREATE OR REPLACE PUMP "P" AS INSERT INTO "S" SELECT STREAM "sym", SUM("qty") OVER W FROM "SRC_001" WINDOW W AS (PARTITION BY "sym" ROWS 2 PRECEDING);"#,
    ];

    fn exercise(sql: &str) {
        let lines = sql.lines().count().max(1) as u64;
        let program = match parse_program(sql) {
            Ok(p) => p,
            Err(e) => {
                assert!(
                    e.position.line >= 1 && e.position.line <= lines + 1,
                    "{e} for {sql:?}"
                );
                return;
            }
        };
        let schema: WireSourceSchema = serde_json::from_str(super::SCHEMA).expect("schema");
        let input = PipelineInput {
            stream: "SRC_001".into(),
            schema: schema.to_domain().expect("schema"),
        };
        let Ok(mut pipeline) = Pipeline::compile(&program, &[input]) else {
            return;
        };
        let records: Vec<Vec<u8>> = super::records();
        let timed: Vec<(&[u8], i64)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_slice(), i as i64 * 700))
            .collect();
        let mut out = Emissions::default();
        pipeline.ingest(0, &timed, 0, &mut out);
        pipeline.advance(i64::MAX / 2, &mut out);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn token_soups_never_panic_the_front_end(tokens in proptest::collection::vec(0..VOCABULARY.len(), 0..40)) {
            let sql: Vec<&str> = tokens.iter().map(|&i| VOCABULARY[i]).collect();
            exercise(&sql.join(" "));
        }

        #[test]
        fn damaged_canonical_programs_never_panic_the_front_end(
            which in 0..CANONICAL.len(),
            cut in 0usize..400,
            repeat in 0usize..400,
        ) {
            let words: Vec<&str> = CANONICAL[which].split(' ').collect();
            let mut damaged: Vec<&str> = words.clone();
            if !damaged.is_empty() {
                damaged.remove(cut % words.len());
                let r = repeat % damaged.len().max(1);
                if let Some(word) = damaged.get(r).copied() {
                    damaged.insert(r, word);
                }
            }
            exercise(&damaged.join(" "));
        }

        #[test]
        fn arbitrary_text_never_panics_the_parser(text in "\\PC{0,200}") {
            exercise(&text);
        }
    }
}

/// The first program is a crash of the `analytics_sql` fuzz target minimised by `cargo fuzz
/// tmin`: a SUBSTRING start of BIGINT's least value (here a DOUBLE beyond it, which saturates
/// to it) overflowed `start - 1`, a panic that aborts the appliance.
#[test]
fn substring_bounds_at_the_ends_of_bigint_clamp_to_the_string() {
    let sql = r#"CREATE STREAM"S"("a" CHAR(8), "b" CHAR(8), "c" CHAR(8), "d" CHAR(8));
        CREATE PUMP""AS INSERT INTO"S"SELECT
          SUBSTR("sym"FROM-9223720363720367755),
          SUBSTRING("sym" FROM -9223372036854775808 FOR 9223372036854775807),
          SUBSTRING("sym" FROM 9223372036854775807 FOR 9223372036854775807),
          SUBSTRING("sym" FROM -1 FOR 4)
        FROM"SRC_001";"#;
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    // -9223372036854775808 + 9223372036854775807 ends before the string; FROM -1 FOR 4 covers
    // positions -1 to 2.
    assert_eq!(lines[1], r#"{"a":"IBM","b":"","c":"","d":"IB"}"#);
}

mod front_end_limits {
    //! Programs deep enough to overflow the stack of the thread that parses or runs them,
    //! which would abort the appliance. sqlparser builds a chain of infix or postfix operators
    //! as a tree as deep as the chain is long, so `crate::nesting` refuses a program before
    //! such a tree is built; an IN list compiles to one node, not to a chain of ORs as long as
    //! the list. Without those bounds each long program here crashes the `analytics_sql` fuzz
    //! target.

    use crate::nesting::EXPRESSION_PATH_TOKENS_MAX;
    use crate::run_file::{RunError, run};

    /// A pump on line 2 whose query starts with `chain`, at column 61.
    fn pump_selecting(chain: &str, sql_type: &str) -> String {
        format!(
            "CREATE OR REPLACE STREAM \"S\" (\"v\" {sql_type});\n\
             CREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"S\" SELECT STREAM {chain} FROM \"SRC_001\";"
        )
    }

    fn rejection(sql: &str) -> crate::program::CodeError {
        let records = super::records();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        match run(sql, super::SCHEMA, &refs, &super::options(&[], 1_000)) {
            Err(RunError::Code(e)) => e,
            other => panic!("expected a CodeValidationException, got {other:?}"),
        }
    }

    #[test]
    fn a_chain_of_twenty_thousand_additions_is_refused_where_it_passes_the_bound() {
        let e = rejection(&pump_selecting(
            &format!("1{}", "+1".repeat(20_000)),
            "BIGINT",
        ));
        assert!(e.message.contains("nested too deeply"), "{e}");
        // Eleven words before the chain and its first `1` are 12 tokens; token 513 is the
        // 501st character after that `1`.
        assert_eq!(EXPRESSION_PATH_TOKENS_MAX, 512);
        assert_eq!((e.position.line, e.position.column), (2, 61 + 501));
    }

    #[test]
    fn a_deep_chain_in_a_statement_that_does_not_parse_is_refused_before_it_is_built() {
        // sqlparser would build the chain, fail at the stray `)` and drop the tree recursively.
        // 100,000 characters: within ApplicationCode's 102,400.
        let sql = format!(
            "CREATE OR REPLACE STREAM \"S\" (\"v\" BIGINT);\n\
             CREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"S\" SELECT STREAM 1{} );",
            "+1".repeat(50_000)
        );
        let e = rejection(&sql);
        assert!(e.message.contains("nested too deeply"), "{e}");
    }

    #[test]
    fn a_chain_of_postfix_operators_is_refused() {
        let chain = format!("\"qty\"{}", " IS NULL".repeat(20_000));
        let e = rejection(&pump_selecting(&chain, "BOOLEAN"));
        assert!(e.message.contains("nested too deeply"), "{e}");
    }

    #[test]
    fn a_sum_just_under_the_bound_still_runs() {
        // 11 words, `1`, 248 times `+ "qty"` and `FROM "SRC_001"`: 511 tokens. A debug build
        // needs about 6 MiB of stack for it (see EXPRESSION_PATH_TOKENS_MAX), more than a test
        // thread's 2 MiB.
        let sql = pump_selecting(&format!("1{}", "+\"qty\"".repeat(248)), "BIGINT");
        let lines = std::thread::Builder::new()
            .stack_size(32 << 20)
            .spawn(move || {
                let records = super::records();
                let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
                run(&sql, super::SCHEMA, &refs, &super::options(&[], 1_000))
            })
            .expect("spawns")
            .join()
            .expect("does not panic")
            .expect("runs");
        // qty: 100, 2, 50, 40, 1, 200.
        let expected: Vec<String> = [100, 2, 50, 40, 1, 200]
            .iter()
            .map(|q| format!(r#"{{"v":{}}}"#, 1 + 248 * q))
            .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn an_in_list_of_twenty_thousand_values_is_compared_once_per_value_not_nested() {
        let values: Vec<String> = (0..20_000).map(|i| format!("'v{i}'")).collect();
        for (negated, expected) in [
            ("", vec!["IBM", "IBM"]),
            ("NOT ", vec!["AMZN", "AMZN", "MSFT", "AMZN"]),
        ] {
            let sql = format!(
                "CREATE OR REPLACE STREAM \"S\" (\"sym\" VARCHAR(8));\n\
                 CREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"S\" SELECT STREAM \"sym\" FROM \"SRC_001\" \
                 WHERE \"sym\" {negated}IN ({}, 'IBM');",
                values.join(", ")
            );
            let lines = super::run_on(&sql, &[], 1_000, &super::records()).expect("runs");
            let expected: Vec<String> = expected
                .iter()
                .map(|s| format!(r#"{{"sym":"{s}"}}"#))
                .collect();
            assert_eq!(lines, expected, "{negated}IN");
        }
    }

    #[test]
    fn an_in_list_compares_as_each_value_s_kind() {
        // px is DOUBLE and qty INTEGER: 2 matches IBM's qty, 10.5 IBM's px as a DOUBLE.
        let sql = r#"CREATE OR REPLACE STREAM "S" ("sym" VARCHAR(8), "a" BOOLEAN, "b" BOOLEAN);
            CREATE OR REPLACE PUMP "P" AS INSERT INTO "S"
              SELECT STREAM "sym", "qty" IN (3, 2.0, 7), "px" IN (1, 10.5, NULL) FROM "SRC_001";"#;
        let lines = super::run_on(sql, &[], 1_000, &super::records()).expect("runs");
        assert_eq!(lines[1], r#"{"sym":"IBM","a":true,"b":true}"#);
        assert_eq!(lines[0], r#"{"sym":"AMZN","a":false,"b":null}"#);
        assert_eq!(lines[4], r#"{"sym":"MSFT","a":false,"b":true}"#);
    }
}

/// 1.2785641882898677 is the shortest text of its double, but serde_json's fast float parser
/// (without `float_roundtrip`) reads it one ULP low, as 1.2785641882898675. Both JSON decoders
/// of the input (the one-pass fast path and the document path of a nested mapping) must give
/// back the double the text names, so a DOUBLE column passes through unchanged.
#[test]
fn a_json_double_comes_out_exactly_as_its_input_text() {
    let text = "1.2785641882898677";
    let sql = r#"CREATE OR REPLACE STREAM "OUT" ("px" DOUBLE);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT" SELECT STREAM "px" FROM "SRC_001";"#;
    let nested = SCHEMA.replace("\"$.px\"", "\"$.trade.px\"");
    for (schema, record) in [
        (SCHEMA, format!(r#"{{"sym":"A","px":{text},"qty":1}}"#)),
        (
            &nested,
            format!(r#"{{"sym":"A","trade":{{"px":{text}}},"qty":1}}"#),
        ),
    ] {
        let lines =
            run(sql, schema, &[record.as_bytes()], &options(&["OUT"], 1_000)).expect("runs");
        assert_eq!(lines, vec![format!(r#"{{"px":{text}}}"#)], "{schema}");
    }
}

#[test]
fn csv_records_in_and_csv_rows_out() {
    let schema = r#"{
      "RecordFormat": {"RecordFormatType": "CSV", "MappingParameters": {"CSVMappingParameters": {"RecordRowDelimiter": "\n", "RecordColumnDelimiter": ";"}}},
      "RecordColumns": [{"Name": "sym", "SqlType": "VARCHAR(8)"}, {"Name": "note", "SqlType": "VARCHAR(16)"}, {"Name": "qty", "SqlType": "INTEGER"}]
    }"#;
    let sql = r#"CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8), "note" VARCHAR(16), "double_qty" INTEGER);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT" SELECT STREAM "sym", "note", "qty" * 2 FROM "SRC_001" WHERE "qty" > 1;"#;
    let records: Vec<&[u8]> = vec![b"A;plain;1\nB;has, comma;2", b"C;say \"hi\";3", b"D;short"];
    let mut options = options(&["OUT", "error_stream"], 1_000);
    options.format = OutputFormat::Csv;
    let lines = run(sql, schema, &records, &options).expect("runs");
    // A is filtered out; D has too few columns and goes to error_stream.
    assert_eq!(
        &lines[..2],
        &["OUT\tB,\"has, comma\",4", "OUT\tC,\"say \"\"hi\"\"\",6"]
    );
    assert_eq!(lines.len(), 3);
    assert!(lines[2].starts_with("error_stream\t"), "{}", lines[2]);
    assert!(lines[2].contains("Schema_mismatch"), "{}", lines[2]);
}

#[test]
fn case_expressions_pick_the_first_true_branch_or_else() {
    let sql = r#"
        CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8), "size" VARCHAR(8), "q" DOUBLE);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
          SELECT STREAM "sym",
                 CASE WHEN "qty" >= 100 THEN 'big' WHEN "qty" >= 40 THEN 'mid' ELSE 'small' END,
                 CASE "sym" WHEN 'IBM' THEN "px" ELSE 0 END
          FROM "SRC_001";"#;
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    // qty: 100, 2, 50, 40, 1, 200; px of IBM rows: 10.5, 300.
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"AMZN","size":"big","q":0.0}"#,
            r#"{"sym":"IBM","size":"small","q":10.5}"#,
            r#"{"sym":"AMZN","size":"mid","q":0.0}"#,
            r#"{"sym":"IBM","size":"mid","q":300.0}"#,
            r#"{"sym":"MSFT","size":"small","q":0.0}"#,
            r#"{"sym":"AMZN","size":"big","q":0.0}"#,
        ]
    );
}

/// BIG: rows with px >= 100 (AMZN@0 s, AMZN@2 s, IBM@3 s); SMALL: the others (IBM@1 s,
/// MSFT@4 s, AMZN@5 s). Both come from the same input batch.
const SPLIT: &str = r#"
    CREATE OR REPLACE STREAM "BIG" ("sym" VARCHAR(8), "px" DOUBLE);
    CREATE OR REPLACE STREAM "SMALL" ("sym" VARCHAR(8), "px" DOUBLE);
    CREATE OR REPLACE PUMP "P_BIG" AS INSERT INTO "BIG" SELECT STREAM "sym", "px" FROM "SRC_001" WHERE "px" >= 100;
    CREATE OR REPLACE PUMP "P_SMALL" AS INSERT INTO "SMALL" SELECT STREAM "sym", "px" FROM "SRC_001" WHERE "px" < 100;
    CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8), "left_px" DOUBLE, "right_px" DOUBLE);"#;

#[test]
fn a_stream_join_pairs_each_left_row_with_right_rows_in_its_range_window() {
    let sql = format!(
        r#"{SPLIT}
        CREATE OR REPLACE PUMP "J" AS INSERT INTO "OUT"
          SELECT STREAM b."sym", b."px", s."px"
          FROM "BIG" AS b JOIN "SMALL" OVER (RANGE INTERVAL '2' SECOND PRECEDING) AS s
          ON b."sym" = s."sym";"#
    );
    // IBM@3 s meets IBM@1 s (within 2 s); AMZN@0 s and AMZN@2 s have no AMZN in SMALL before
    // them (AMZN@5 s is later than both).
    let lines = run_on(&sql, &["OUT"], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![r#"{"sym":"IBM","left_px":300.0,"right_px":10.5}"#]
    );

    let reverse = format!(
        r#"{SPLIT}
        CREATE OR REPLACE PUMP "J" AS INSERT INTO "OUT"
          SELECT STREAM s."sym", s."px", b."px"
          FROM "SMALL" AS s LEFT JOIN "BIG" OVER (RANGE INTERVAL '3' SECOND PRECEDING) AS b
          ON s."sym" = b."sym";"#
    );
    // AMZN@5 s meets AMZN@2 s but not AMZN@0 s (more than 3 s before); IBM@1 s and MSFT@4 s
    // have no partner and are kept by the LEFT JOIN with a NULL right side.
    let lines = run_on(&reverse, &["OUT"], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"IBM","left_px":10.5,"right_px":null}"#,
            r#"{"sym":"MSFT","left_px":1.0,"right_px":null}"#,
            r#"{"sym":"AMZN","left_px":90.0,"right_px":150.0}"#,
        ]
    );
}

#[test]
fn right_and_full_outer_stream_joins_keep_rows_that_leave_the_window_unmatched() {
    let right = format!(
        r#"{SPLIT}
        CREATE OR REPLACE PUMP "J" AS INSERT INTO "OUT"
          SELECT STREAM s."sym", b."px", s."px"
          FROM "BIG" AS b RIGHT JOIN "SMALL" OVER (RANGE INTERVAL '2' SECOND PRECEDING) AS s
          ON b."sym" = s."sym";"#
    );
    // IBM@1 s meets IBM@3 s. MSFT@4 s and AMZN@5 s find no BIG row within 2 s after them and
    // come out, left side NULL, once their window has passed (here: the end of the input).
    let lines = run_on(&right, &["OUT"], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"IBM","left_px":300.0,"right_px":10.5}"#,
            r#"{"sym":"MSFT","left_px":null,"right_px":1.0}"#,
            r#"{"sym":"AMZN","left_px":null,"right_px":90.0}"#,
        ]
    );

    // FULL keeps the unmatched rows of both sides: AMZN@0 s and AMZN@2 s of BIG too.
    let full = right.replace("RIGHT JOIN", "FULL OUTER JOIN").replace(
        r#"SELECT STREAM s."sym""#,
        r#"SELECT STREAM COALESCE(b."sym", s."sym")"#,
    );
    let lines = run_on(&full, &["OUT"], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"AMZN","left_px":200.0,"right_px":null}"#,
            r#"{"sym":"AMZN","left_px":150.0,"right_px":null}"#,
            r#"{"sym":"IBM","left_px":300.0,"right_px":10.5}"#,
            r#"{"sym":"MSFT","left_px":null,"right_px":1.0}"#,
            r#"{"sym":"AMZN","left_px":null,"right_px":90.0}"#,
        ]
    );

    // A matched right row is never repeated: an inner join gives exactly the pair.
    let inner = right.replace("RIGHT JOIN", "JOIN");
    let lines = run_on(&inner, &["OUT"], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![r#"{"sym":"IBM","left_px":300.0,"right_px":10.5}"#]
    );
}

#[test]
fn stream_joins_the_planner_cannot_run_are_rejected() {
    let cases = [
        (
            r#"FROM "BIG" AS b JOIN "NOPE" OVER (RANGE INTERVAL '2' SECOND PRECEDING) AS s ON b."sym" = s."sym""#,
            "Object 'NOPE' not found",
        ),
        (
            r#"FROM "BIG" AS b JOIN "SMALL" OVER (RANGE INTERVAL '2' SECOND PRECEDING) AS s ON b."px" + s."px""#,
            "ON needs a boolean condition",
        ),
        (
            r#"FROM "BIG" AS b LEFT SEMI JOIN "SMALL" OVER (RANGE INTERVAL '2' SECOND PRECEDING) AS s ON b."sym" = s."sym""#,
            "only INNER, LEFT, RIGHT, FULL OUTER and CROSS JOIN are supported between streams",
        ),
        (
            r#"FROM "BIG" AS b CROSS JOIN "SMALL" OVER (RANGE INTERVAL '2' SECOND PRECEDING) AS s ON b."sym" = s."sym""#,
            // The parser itself refuses ON after CROSS JOIN.
            "found: ON",
        ),
        (
            r#"FROM "BIG" AS b JOIN "SMALL" OVER (RANGE INTERVAL '2' SECOND PRECEDING) AS s ON b."sym" = s."sym" GROUP BY b."sym""#,
            "GROUP BY over a join is not supported",
        ),
        (
            r#"FROM "BIG" AS b JOIN "SMALL" OVER (RANGE INTERVAL '2' SECOND PRECEDING) AS s ON b."sym" = s."sym" WHERE b."px" + 1"#,
            "WHERE needs a boolean condition",
        ),
    ];
    for (from, wanted) in cases {
        let sql = format!(
            r#"{SPLIT}
        CREATE OR REPLACE PUMP "J" AS INSERT INTO "OUT"
          SELECT STREAM b."sym", b."px", s."px" {from};"#
        );
        let Err(RunError::Code(error)) = run_on(&sql, &["OUT"], 1_000, &records()) else {
            panic!("{from} is rejected");
        };
        assert!(error.message.contains(wanted), "{from}: {}", error.message);
    }
}

#[test]
fn a_rows_window_join_sees_the_last_n_right_rows() {
    let sql = format!(
        r#"{SPLIT}
        CREATE OR REPLACE PUMP "J" AS INSERT INTO "OUT"
          SELECT STREAM s."sym", s."px", b."px"
          FROM "SMALL" AS s JOIN "BIG" OVER (ROWS 1 PRECEDING) AS b;"#
    );
    // No ON: every pair in the frame. IBM@1 s sees BIG rows at or before 1 s: AMZN@0 s.
    // MSFT@4 s and AMZN@5 s see the last two: AMZN@2 s and IBM@3 s.
    let lines = run_on(&sql, &["OUT"], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"IBM","left_px":10.5,"right_px":200.0}"#,
            r#"{"sym":"MSFT","left_px":1.0,"right_px":150.0}"#,
            r#"{"sym":"MSFT","left_px":1.0,"right_px":300.0}"#,
            r#"{"sym":"AMZN","left_px":90.0,"right_px":150.0}"#,
            r#"{"sym":"AMZN","left_px":90.0,"right_px":300.0}"#,
        ]
    );
    // KDA's CROSS JOIN is the same Cartesian product of each left row with the frame.
    let cross = sql.replace(r#"AS s JOIN "BIG""#, r#"AS s CROSS JOIN "BIG""#);
    assert_ne!(cross, sql);
    assert_eq!(
        run_on(&cross, &["OUT"], 1_000, &records()).expect("runs"),
        lines
    );
}

#[test]
fn stagger_windows_open_per_key_at_the_first_row_and_close_a_range_later() {
    let schema = r#"{
      "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
      "RecordColumns": [{"Name": "sym", "Mapping": "$.sym", "SqlType": "VARCHAR(8)"},
                        {"Name": "evt_ts", "Mapping": "$.t", "SqlType": "TIMESTAMP"}]
    }"#;
    let sql = r#"
        CREATE OR REPLACE STREAM "PER_MIN" ("sym" VARCHAR(8), "minute" TIMESTAMP, "n" BIGINT);
        CREATE OR REPLACE PUMP "PER_MIN_PUMP" AS INSERT INTO "PER_MIN"
          SELECT STREAM "sym", FLOOR("evt_ts" TO MINUTE), COUNT(*)
          FROM "SRC_001"
          WINDOWED BY STAGGER (PARTITION BY FLOOR("evt_ts" TO MINUTE), "sym" RANGE INTERVAL '1' MINUTE);"#;
    let input = [
        r#"{"sym":"A","t":"1970-01-01 00:00:30"}"#,
        r#"{"sym":"B","t":"1970-01-01 00:00:40"}"#,
        r#"{"sym":"A","t":"1970-01-01 00:00:50"}"#,
        r#"{"sym":"A","t":"1970-01-01 00:01:05"}"#,
        r#"{"sym":"B","t":"1970-01-01 00:00:59"}"#,
        r#"{"sym":"A","t":"1970-01-01 00:00:10"}"#,
        r#"{"sym":"C","t":"1970-01-01 00:02:00"}"#,
    ];
    let records: Vec<&[u8]> = input.iter().map(|s| s.as_bytes()).collect();
    let lines = run(sql, schema, &records, &options(&[], 10_000)).expect("runs");
    // Row times 0, 10, … 60 s. (A, minute 0) opens at 0 s and takes the rows at 0, 20 and 50 s
    // (the late event at 50 s arrives before its window closes at 60 s); (B, minute 0) opens at
    // 10 s, takes the late row at 40 s and closes at 70 s; (A, minute 1) opens at 30 s and closes
    // at 90 s; (C, minute 2) opens at 60 s. Windows are emitted in the order they close.
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"A","minute":"1970-01-01 00:00:00.000","n":3}"#,
            r#"{"sym":"B","minute":"1970-01-01 00:00:00.000","n":2}"#,
            r#"{"sym":"A","minute":"1970-01-01 00:01:00.000","n":1}"#,
            r#"{"sym":"C","minute":"1970-01-01 00:02:00.000","n":1}"#,
        ]
    );
}

#[test]
fn random_cut_forest_scores_planted_anomalies_above_normal_rows() {
    let sql = r#"
        CREATE OR REPLACE STREAM "SCORED" ("sym" VARCHAR(8), "px" DOUBLE, "qty" INTEGER, "ANOMALY_SCORE" DOUBLE);
        CREATE OR REPLACE PUMP "SCORE_PUMP" AS INSERT INTO "SCORED"
          SELECT STREAM "sym", "px", "qty", ANOMALY_SCORE
          FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM "sym", "px", "qty" FROM "SRC_001")));"#;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let planted = [500usize, 650, 800];
    let input: Vec<Vec<u8>> = (0..1000usize)
        .map(|i| {
            let px = if planted.contains(&i) {
                160.0
            } else {
                100.0 + rng.random::<f64>() * 4.0
            };
            let qty = 10 + rng.random_range(0..5);
            format!(r#"{{"sym":"S","px":{px},"qty":{qty}}}"#).into_bytes()
        })
        .collect();
    let lines = run_on(sql, &[], 1_000, &input).expect("runs");
    assert_eq!(lines.len(), input.len(), "one scored row per row");
    let scores = numbers(&lines, "ANOMALY_SCORE");
    let mut normal: Vec<f64> = scores[300..]
        .iter()
        .enumerate()
        .filter(|(i, _)| !planted.contains(&(i + 300)))
        .map(|(_, s)| *s)
        .collect();
    normal.sort_by(f64::total_cmp);
    let p99 = normal[normal.len() * 99 / 100];
    for i in planted {
        assert!(
            scores[i] > 2.0 * p99,
            "row {i} scored {} against a 99th percentile of {p99}",
            scores[i]
        );
    }
    assert_eq!(scores[0], 0.0, "the forest warms up before it scores");
}

#[test]
fn random_cut_forest_with_explanation_attributes_a_planted_spike_to_its_column() {
    let sql = r#"
        CREATE OR REPLACE STREAM "SCORED" ("sym" VARCHAR(8), "ANOMALY_SCORE" DOUBLE, "ANOMALY_EXPLANATION" VARCHAR(512));
        CREATE OR REPLACE PUMP "SCORE_PUMP" AS INSERT INTO "SCORED"
          SELECT STREAM "sym", ANOMALY_SCORE, ANOMALY_EXPLANATION
          FROM TABLE(RANDOM_CUT_FOREST_WITH_EXPLANATION(
            CURSOR(SELECT STREAM * FROM "SRC_001"), 60, 64, 100000, 1, true));"#;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    // A spike in px (high) at 300 and a dip in qty (low) at 400.
    let input: Vec<Vec<u8>> = (0..500usize)
        .map(|i| {
            let px = if i == 300 {
                140.0
            } else {
                100.0 + rng.random::<f64>() * 4.0
            };
            let qty = if i == 400 {
                1
            } else {
                50 + rng.random_range(0..5)
            };
            format!(r#"{{"sym":"S","px":{px},"qty":{qty}}}"#).into_bytes()
        })
        .collect();
    let lines = run_on(sql, &[], 1_000, &input).expect("runs");
    assert_eq!(lines.len(), input.len(), "one scored row per row");
    let rows: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let explanation = |i: usize| -> serde_json::Value {
        serde_json::from_str(rows[i]["ANOMALY_EXPLANATION"].as_str().expect("text")).expect("JSON")
    };
    let number =
        |v: &serde_json::Value| -> f64 { v.as_str().expect("text").parse().expect("number") };
    // The first subSampleSize rows score 0, LOW and 0 strength while the trees fill.
    assert_eq!(rows[10]["ANOMALY_SCORE"].as_f64(), Some(0.0));
    assert_eq!(
        explanation(10)["px"],
        serde_json::json!({"DIRECTION": "LOW", "STRENGTH": "0.0000", "ATTRIBUTION_SCORE": "0.0000"})
    );
    for (i, column, other, direction) in [(300, "px", "qty", "HIGH"), (400, "qty", "px", "LOW")] {
        let score = rows[i]["ANOMALY_SCORE"].as_f64().expect("score");
        let highest = rows
            .iter()
            .filter_map(|r| r["ANOMALY_SCORE"].as_f64())
            .enumerate()
            .filter(|(j, _)| *j != 300 && *j != 400)
            .map(|(_, s)| s)
            .fold(0.0, f64::max);
        assert!(
            score > 1.5 * highest,
            "row {i} scored {score} against {highest}"
        );
        let e = explanation(i);
        let mine = number(&e[column]["ATTRIBUTION_SCORE"]);
        let theirs = number(&e[other]["ATTRIBUTION_SCORE"]);
        assert!(mine > 4.0 * theirs, "row {i}: {e}");
        assert!(
            (mine + theirs - score).abs() < 1e-3,
            "row {i}: {e} against {score}"
        );
        assert_eq!(e[column]["DIRECTION"], direction, "row {i}: {e}");
        assert!(number(&e[column]["STRENGTH"]) > 0.5 * mine, "row {i}: {e}");
    }
}

#[test]
fn hotspots_reports_the_dense_square_of_the_window_with_each_row() {
    let schema = json_schema(&[("x", "DOUBLE"), ("y", "DOUBLE"), ("is_hot", "VARCHAR(4)")]);
    let sql = r#"
        CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("x" DOUBLE, "y" DOUBLE, "is_hot" VARCHAR(4), HOTSPOTS_RESULT VARCHAR(10000));
        CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
          SELECT "x", "y", "is_hot", "HOTSPOTS_RESULT"
          FROM TABLE(HOTSPOTS(CURSOR(SELECT STREAM * FROM "SRC_001"), 1000, 0.2, 17));"#;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    // KDA's example: a fifth of the points on the unit square at (7, 2), the rest on 10 × 10.
    let input: Vec<Vec<u8>> = (0..1500)
        .map(|_| {
            let hot = rng.random::<f64>() < 0.2;
            let (x, y) = if hot {
                (7.0 + rng.random::<f64>(), 2.0 + rng.random::<f64>())
            } else {
                (rng.random::<f64>() * 10.0, rng.random::<f64>() * 10.0)
            };
            let is_hot = if hot { "Y" } else { "N" };
            format!(r#"{{"x":{x},"y":{y},"is_hot":"{is_hot}"}}"#).into_bytes()
        })
        .collect();
    let refs: Vec<&[u8]> = input.iter().map(Vec::as_slice).collect();
    let lines = run(sql, &schema, &refs, &options(&[], 100)).expect("runs");
    assert_eq!(lines.len(), input.len(), "one row out per row in");
    let result = |i: usize| -> serde_json::Value {
        let row: serde_json::Value = serde_json::from_str(&lines[i]).expect("JSON");
        serde_json::from_str(row["HOTSPOTS_RESULT"].as_str().expect("text")).expect("JSON")
    };
    assert_eq!(result(0), serde_json::json!({"hotspots": []}));
    let last = result(input.len() - 1);
    let hotspots = last["hotspots"].as_array().expect("a list");
    assert_eq!(hotspots.len(), 1, "{last}");
    let h = &hotspots[0];
    let at = |key: &str, d: usize| h[key][d].as_f64().expect("number");
    assert!(at("minValues", 0) > 6.5 && at("minValues", 0) < 7.2, "{h}");
    assert!(at("maxValues", 0) > 7.8 && at("maxValues", 0) < 8.5, "{h}");
    assert!(at("minValues", 1) > 1.5 && at("minValues", 1) < 2.2, "{h}");
    assert!(at("maxValues", 1) > 2.8 && at("maxValues", 1) < 3.5, "{h}");
    assert!(h["density"].as_f64().expect("number") > 80.0, "{h}");
}

#[test]
fn ml_function_parameters_out_of_kda_s_ranges_are_rejected_at_their_position() {
    // (the call, ", " and the argument the error points at or None for the call, message)
    let cases = [
        (
            "HOTSPOTS(CURSOR(SELECT STREAM * FROM \"SRC_001\"), 99, 0.2, 17)",
            Some(", 99"),
            "windowSize must be a whole number from 100 to 1000",
        ),
        (
            "HOTSPOTS(CURSOR(SELECT STREAM * FROM \"SRC_001\"), 100, 0, 17)",
            Some(", 0,"),
            "scanRadius must be a number greater than 0",
        ),
        (
            "HOTSPOTS(CURSOR(SELECT STREAM * FROM \"SRC_001\"), 100, 0.5, 101)",
            Some(", 101"),
            "minimumNumberOfPointsInAHotspot must be a whole number from 2 to 100",
        ),
        (
            "HOTSPOTS(CURSOR(SELECT STREAM * FROM \"SRC_001\"), 100, 0.5)",
            None,
            "Invalid number of arguments to function 'HOTSPOTS'",
        ),
        (
            "RANDOM_CUT_FOREST_WITH_EXPLANATION(CURSOR(SELECT STREAM * FROM \"SRC_001\"), 100, 256, 100000, 1, 1)",
            Some(", 1)"),
            "withDirectionality must be TRUE or FALSE",
        ),
        (
            "RANDOM_CUT_FOREST_WITH_EXPLANATION(CURSOR(SELECT STREAM * FROM \"SRC_001\"), 100, 256, 200, 1, true)",
            Some(", 256"),
            "subSampleSize must be less than timeDecay",
        ),
        (
            "RANDOM_CUT_FOREST_WITH_EXPLANATION(CURSOR(SELECT STREAM * FROM \"SRC_001\"), 100, 256, 100000, 1)",
            None,
            "Invalid number of arguments to function 'RANDOM_CUT_FOREST_WITH_EXPLANATION'",
        ),
        (
            "RANDOM_CUT_FOREST_WITH_EXPLANATION(CURSOR(SELECT STREAM \"sym\" FROM \"SRC_001\"))",
            None,
            "needs at least one numeric column",
        ),
        (
            "RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM \"SRC_001\"), 100, 256, 100000, 31)",
            Some(", 31"),
            "shingleSize must be a whole number from 1 to 30",
        ),
    ];
    for (call, argument, wanted) in cases {
        // The call starts at column 33 of line 3.
        let column = 33
            + argument.map_or(0, |a| {
                call.find(a).expect("the argument is in the call") + 2
            });
        let column = u64::try_from(column).expect("a column fits u64");
        let sql = format!(
            "CREATE OR REPLACE STREAM \"OUT\" (\"px\" DOUBLE);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"OUT\"\n  SELECT STREAM \"px\" FROM TABLE({call});"
        );
        let Err(RunError::Code(error)) = run_on(&sql, &["OUT"], 1_000, &records()) else {
            panic!("{call} is rejected");
        };
        assert!(error.message.contains(wanted), "{call}: {}", error.message);
        assert_eq!(
            (error.position.line, error.position.column),
            (3, column),
            "{call}: {}",
            error.message
        );
    }
}

#[test]
fn a_where_after_a_row_function_filters_its_rows_by_its_own_columns() {
    // KDA's example form: `… FROM TABLE(RANDOM_CUT_FOREST_WITH_EXPLANATION(…)) WHERE ANOMALY_SCORE > 0`.
    let sql = r#"
        CREATE OR REPLACE STREAM "OUT" ("px" DOUBLE, "ANOMALY_SCORE" DOUBLE);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
          SELECT STREAM "px", ANOMALY_SCORE
          FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM "px", "qty" FROM "SRC_001"), 10, 10, 100000, 1))
          WHERE ANOMALY_SCORE > 0 AND "px" >= 5;"#;
    let input: Vec<Vec<u8>> = (0..30)
        .map(|i| format!(r#"{{"sym":"S","px":{i},"qty":{}}}"#, 30 - i).into_bytes())
        .collect();
    let lines = run_on(sql, &[], 1_000, &input).expect("runs");
    // Rows 0..10 score 0 while the trees fill; the rest score above 0 and have px >= 5.
    let px = numbers(&lines, "px");
    assert_eq!(px, (10..30).map(f64::from).collect::<Vec<_>>());
    let not_boolean = sql.replace(
        "WHERE ANOMALY_SCORE > 0 AND \"px\" >= 5",
        "WHERE ANOMALY_SCORE",
    );
    let Err(RunError::Code(error)) = run_on(&not_boolean, &[], 1_000, &input) else {
        panic!("a WHERE that is not boolean is rejected");
    };
    assert!(
        error.message.contains("WHERE needs a boolean condition"),
        "{}",
        error.message
    );
}

#[test]
fn shingles_find_a_row_that_breaks_the_sequence_though_its_value_is_common() {
    // px alternates low, high, low, high…; row 501 is low where a high belongs.
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let input: Vec<Vec<u8>> = (0..600usize)
        .map(|i| {
            let high = i % 2 == 1 && i != 501;
            let px = if high { 10.0 } else { 0.0 } + rng.random::<f64>() * 0.5;
            format!(r#"{{"sym":"S","px":{px},"qty":1}}"#).into_bytes()
        })
        .collect();
    let run_shingled = |shingle_size: u32| {
        let sql = format!(
            r#"CREATE OR REPLACE STREAM "OUT" ("ANOMALY_SCORE" DOUBLE, "ANOMALY_EXPLANATION" VARCHAR(512));
            CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
              SELECT STREAM ANOMALY_SCORE, ANOMALY_EXPLANATION
              FROM TABLE(RANDOM_CUT_FOREST_WITH_EXPLANATION(
                CURSOR(SELECT STREAM "px" FROM "SRC_001"), 50, 64, 100000, {shingle_size}, false));"#
        );
        run_on(&sql, &[], 1_000, &input).expect("runs")
    };
    let scores = |shingle_size: u32| numbers(&run_shingled(shingle_size), "ANOMALY_SCORE");
    let normal = |scores: &[f64]| -> Vec<f64> {
        let mut normal: Vec<f64> = (300..600)
            .filter(|i| ![501, 502].contains(i))
            .map(|i| scores[i])
            .collect();
        normal.sort_by(f64::total_cmp);
        normal
    };
    let shingled = scores(2);
    // 64 shingles fill the trees; the first shingle ends at row 1.
    assert_eq!(shingled[64], 0.0);
    assert!(shingled[65] > 0.0);
    let highest = *normal(&shingled).last().expect("normal rows");
    for i in [501, 502] {
        assert!(
            shingled[i] > 2.0 * highest,
            "row {i}: {} against {highest}",
            shingled[i]
        );
    }
    // The column's attribution sums its parts over both places of the shingle: the whole score.
    let row: serde_json::Value = serde_json::from_str(&run_shingled(2)[501]).expect("JSON");
    let explanation: serde_json::Value =
        serde_json::from_str(row["ANOMALY_EXPLANATION"].as_str().expect("text")).expect("JSON");
    let attribution: f64 = explanation["px"]["ATTRIBUTION_SCORE"]
        .as_str()
        .expect("text")
        .parse()
        .expect("a number");
    assert!((attribution - shingled[501]).abs() < 1e-4, "{explanation}");
    let single = scores(1);
    let single_normal = normal(&single);
    let median = single_normal[single_normal.len() / 2];
    assert!(
        single[501] < 2.0 * median,
        "{} against a median of {median}",
        single[501]
    );
}

#[test]
fn expressions_over_aggregates_and_having_filter_each_window() {
    let sql = r#"
        CREATE OR REPLACE STREAM "VWAP" ("sym" VARCHAR(8), "vwap" DOUBLE, "n10" INTEGER, "tag" VARCHAR(8));
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "VWAP"
          SELECT STREAM "sym", SUM("px" * "qty") / SUM("qty"), COUNT(*) * 10, UPPER("sym") || '!'
          FROM "SRC_001"
          GROUP BY "sym", STEP("SRC_001".ROWTIME BY INTERVAL '3' SECOND)
          HAVING SUM("qty") > 10;"#;
    // [0,3 s): AMZN (200 x 100, 150 x 50) gives 27500 / 150; IBM (qty 2) fails HAVING.
    // [3,6 s): IBM 300 x 40; MSFT (qty 1) fails HAVING; AMZN 90 x 200.
    let lines = run_on(sql, &[], 1_000, &records()).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"AMZN","vwap":183.33333333333334,"n10":20,"tag":"AMZN!"}"#,
            r#"{"sym":"IBM","vwap":300.0,"n10":10,"tag":"IBM!"}"#,
            r#"{"sym":"AMZN","vwap":90.0,"n10":10,"tag":"AMZN!"}"#,
        ]
    );
}

#[test]
fn a_column_outside_the_group_in_an_expression_is_rejected() {
    let sql = r#"CREATE OR REPLACE STREAM "OUT" ("x" DOUBLE);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
  SELECT STREAM "px" + COUNT(*) FROM "SRC_001" GROUP BY "sym", STEP("SRC_001".ROWTIME BY INTERVAL '3' SECOND);"#;
    let Err(RunError::Code(error)) = run_on(sql, &[], 1, &[]) else {
        panic!("rejected");
    };
    assert_eq!(error.position.line, 3);
    assert!(
        error.message.contains("is not being grouped"),
        "{}",
        error.message
    );
}

const COMPANIES_SCHEMA: &str = r#"{
  "RecordFormat": {"RecordFormatType": "CSV", "MappingParameters": {"CSVMappingParameters": {"RecordRowDelimiter": "\n", "RecordColumnDelimiter": ","}}},
  "RecordEncoding": "UTF-8",
  "RecordColumns": [
    {"Name": "ticker", "SqlType": "VARCHAR(8)"},
    {"Name": "company", "SqlType": "VARCHAR(32)"},
    {"Name": "lot", "SqlType": "INTEGER"}
  ]
}"#;

const COMPANIES: &[u8] = b"AMZN,Amazon,10\nIBM,IBM Corp,100\r\nORCL,Oracle,5\n";

const ENRICHED: &str = r#"
    CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8), "company" VARCHAR(32), "qty" INTEGER);"#;

fn run_with_companies(sql: &str, object: &[u8], outputs: &[&str]) -> Result<Vec<String>, RunError> {
    let refs: Vec<Vec<u8>> = records();
    let refs: Vec<&[u8]> = refs.iter().map(Vec::as_slice).collect();
    let reference = crate::run_file::ReferenceInput {
        table: "companies",
        schema_json: COMPANIES_SCHEMA,
        object,
    };
    crate::run_file::run_with_references(sql, SCHEMA, &refs, &[reference], &options(outputs, 1_000))
}

#[test]
fn a_cross_join_with_a_reference_table_pairs_every_row_with_every_table_row() {
    let sql = format!(
        r#"{ENRICHED}
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
          SELECT STREAM s."sym", c."company", s."qty"
          FROM "SRC_001" AS s CROSS JOIN "companies" AS c;"#
    );
    let lines = run_with_companies(&sql, COMPANIES, &["OUT"]).expect("runs");
    // Six stream rows, three table rows, in stream order and then table order.
    assert_eq!(lines.len(), 18, "{lines:?}");
    assert_eq!(
        &lines[..3],
        &[
            r#"{"sym":"AMZN","company":"Amazon","qty":100}"#,
            r#"{"sym":"AMZN","company":"IBM Corp","qty":100}"#,
            r#"{"sym":"AMZN","company":"Oracle","qty":100}"#,
        ]
    );
}

#[test]
fn a_left_join_with_a_reference_table_enriches_every_row_and_keeps_misses_with_nulls() {
    let sql = format!(
        r#"{ENRICHED}
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
          SELECT STREAM s."sym", c."company", s."qty"
          FROM "SRC_001" AS s LEFT JOIN "companies" AS c ON s."sym" = c."ticker";"#
    );
    let lines = run_with_companies(&sql, COMPANIES, &["OUT"]).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"AMZN","company":"Amazon","qty":100}"#,
            r#"{"sym":"IBM","company":"IBM Corp","qty":2}"#,
            r#"{"sym":"AMZN","company":"Amazon","qty":50}"#,
            r#"{"sym":"IBM","company":"IBM Corp","qty":40}"#,
            r#"{"sym":"MSFT","company":null,"qty":1}"#,
            r#"{"sym":"AMZN","company":"Amazon","qty":200}"#,
        ]
    );
    // An inner join drops the row whose key is not in the table (MSFT).
    let inner = sql.replace("LEFT JOIN", "JOIN");
    let lines = run_with_companies(&inner, COMPANIES, &["OUT"]).expect("runs");
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| !l.contains("MSFT")));
}

#[test]
fn other_on_predicates_filter_the_pairs_before_a_left_join_keeps_the_misses() {
    let sql = r#"
        CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8), "company" VARCHAR(32), "lots" DOUBLE);
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
          SELECT STREAM "sym", "company", CAST("qty" AS DOUBLE) / "lot"
          FROM "SRC_001" LEFT JOIN "companies"
            ON "ticker" = "sym" AND "qty" >= "lot"
          WHERE "company" IS NULL OR "px" > 100;"#;
    // IBM's quantities (2, 40) are under its lot of 100, so the pair is dropped by ON and the
    // LEFT JOIN keeps the row with a NULL company; WHERE then keeps NULL companies and rows
    // over 100, which drops none of the AMZN rows but AMZN@5 s (px 90).
    let lines = run_with_companies(sql, COMPANIES, &["OUT"]).expect("runs");
    assert_eq!(
        lines,
        vec![
            r#"{"sym":"AMZN","company":"Amazon","lots":10.0}"#,
            r#"{"sym":"IBM","company":null,"lots":null}"#,
            r#"{"sym":"AMZN","company":"Amazon","lots":5.0}"#,
            r#"{"sym":"IBM","company":null,"lots":null}"#,
            r#"{"sym":"MSFT","company":null,"lots":null}"#,
        ]
    );
}

#[test]
fn json_reference_objects_load_by_line_or_as_one_document_and_duplicate_keys_fan_out() {
    let schema = r#"{
      "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
      "RecordColumns": [
        {"Name": "ticker", "Mapping": "$.ticker", "SqlType": "VARCHAR(8)"},
        {"Name": "sector", "Mapping": "$.sector", "SqlType": "VARCHAR(16)"}
      ]
    }"#;
    let sql = r#"
        CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8), "sector" VARCHAR(16));
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
          SELECT STREAM s."sym", r."sector"
          FROM "SRC_001" AS s JOIN "sectors" AS r ON LOWER(s."sym") = LOWER(r."ticker")
          WHERE s."qty" >= 50;"#;
    let lines_object = b"{\"ticker\":\"amzn\",\"sector\":\"Retail\"}\n{\"ticker\":\"AMZN\",\"sector\":\"Cloud\"}\n{\"sector\":\"no key\"}\n{\"ticker\":\"IBM\",\"sector\":\"Tech\"}\n";
    let array_object = br#"[{"ticker":"amzn","sector":"Retail"},{"ticker":"AMZN","sector":"Cloud"},
        {"sector":"no key"},{"ticker":"IBM","sector":"Tech"}]"#;
    // qty >= 50: AMZN@0 s (100), AMZN@2 s (50), AMZN@5 s (200); each meets both AMZN rows; the
    // row without a ticker has a NULL key and matches nothing.
    let expected = [
        r#"{"sym":"AMZN","sector":"Retail"}"#,
        r#"{"sym":"AMZN","sector":"Cloud"}"#,
    ]
    .repeat(3);
    for object in [&lines_object[..], &array_object[..]] {
        let input = records();
        let input: Vec<&[u8]> = input.iter().map(Vec::as_slice).collect();
        let reference = crate::run_file::ReferenceInput {
            table: "sectors",
            schema_json: schema,
            object,
        };
        let lines = crate::run_file::run_with_references(
            sql,
            SCHEMA,
            &input,
            &[reference],
            &options(&["OUT"], 1_000),
        )
        .expect("runs");
        assert_eq!(lines, expected);
    }
}

#[test]
fn reference_records_that_do_not_parse_go_to_error_stream_and_the_rest_load() {
    let sql = format!(
        r#"{ENRICHED}
        CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
          SELECT STREAM s."sym", c."company", s."qty"
          FROM "SRC_001" AS s LEFT JOIN "companies" AS c ON s."sym" = c."ticker"
          WHERE s."sym" <> 'AMZN';"#
    );
    let object = b"AMZN,Amazon,10\nIBM,IBM Corp,lots\nMSFT\n";
    let lines = run_with_companies(&sql, object, &["OUT", "error_stream"]).expect("runs");
    let errors: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("error_stream\t"))
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(errors.len(), 2, "{lines:?}");
    assert_eq!(errors[0]["ERROR_NAME"], "Coercion_error");
    assert!(
        errors[0]["MESSAGE"]
            .as_str()
            .is_some_and(|m| m.starts_with("Reference table \"companies\", line 2:")),
        "{}",
        errors[0]
    );
    assert_eq!(errors[1]["ERROR_NAME"], "Schema_mismatch");
    let out: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("OUT\t"))
        .collect();
    assert_eq!(
        out,
        vec![
            r#"{"sym":"IBM","company":null,"qty":2}"#,
            r#"{"sym":"IBM","company":null,"qty":40}"#,
            r#"{"sym":"MSFT","company":null,"qty":1}"#,
        ]
    );
}

#[test]
fn reference_joins_the_planner_cannot_run_are_rejected() {
    let cases = [
        (
            r#"SELECT STREAM "ticker" FROM "companies""#,
            "is a reference table",
        ),
        (
            r#"SELECT STREAM s."sym" FROM "SRC_001" AS s JOIN "companies" OVER (RANGE INTERVAL '1' SECOND PRECEDING) AS c ON s."sym" = c."ticker""#,
            "takes no window",
        ),
        (
            r#"SELECT STREAM c."nope" FROM "SRC_001" AS s JOIN "companies" AS c ON s."sym" = c."ticker""#,
            "Column 'nope' not found",
        ),
        (
            r#"SELECT STREAM s."sym" FROM "SRC_001" AS s JOIN "companies" AS c ON s."qty" = c."company""#,
            "Cannot apply",
        ),
        (
            r#"SELECT STREAM s."sym" FROM "SRC_001" AS s JOIN "companies" AS c ON s."sym" = c."ticker" AND c.ROWTIME > 0"#,
            "Column 'ROWTIME' not found",
        ),
        (
            r#"SELECT STREAM s."sym" FROM "SRC_001" AS s RIGHT JOIN "companies" AS c ON s."sym" = c."ticker""#,
            "not RIGHT or FULL OUTER JOIN",
        ),
        (
            r#"SELECT STREAM s."sym" FROM "NOPE" AS s JOIN "companies" AS c ON s."sym" = c."ticker""#,
            "Object 'NOPE' not found",
        ),
        (
            r#"SELECT STREAM s."sym" FROM "SRC_001" AS s JOIN "companies" AS c ON s."qty" + c."lot""#,
            "ON needs a boolean condition",
        ),
        (
            r#"SELECT STREAM s."sym" FROM "SRC_001" AS s JOIN "companies" AS c ON s."sym" = c."ticker" WHERE s."qty""#,
            "WHERE needs a boolean condition",
        ),
        (
            r#"SELECT STREAM s."sym" FROM "SRC_001" AS s JOIN "companies" AS c ON s."sym" = c."ticker" GROUP BY s."sym""#,
            "GROUP BY over a join is not supported",
        ),
    ];
    for (query, wanted) in cases {
        let sql = format!(
            r#"CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8));
CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT" {query};"#
        );
        let Err(RunError::Code(error)) = run_with_companies(&sql, COMPANIES, &["OUT"]) else {
            panic!("{query} is rejected");
        };
        assert!(error.message.contains(wanted), "{query}: {}", error.message);
    }
    // A table may not take the name of a stream.
    let sql = r#"CREATE OR REPLACE STREAM "companies" ("sym" VARCHAR(8));"#;
    let Err(RunError::Code(error)) = run_with_companies(sql, COMPANIES, &[]) else {
        panic!("rejected");
    };
    assert!(
        error.message.contains("already exists"),
        "{}",
        error.message
    );
}

#[test]
fn the_hash_join_plan_takes_equalities_as_keys_and_the_rest_as_a_residual_filter() {
    use crate::plan::PlanBody;
    let sql = r#"CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8));
CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
  SELECT STREAM s."sym" FROM "SRC_001" AS s JOIN "companies" AS c
  ON c."ticker" = UPPER(s."sym") AND (s."qty" > c."lot" AND 1 = 1) AND s."px" = c."lot";"#;
    let program = crate::program::parse_program(sql).expect("parses");
    let schema = |json: &str| {
        serde_json::from_str::<crate::schema_wire::WireSourceSchema>(json)
            .expect("schema")
            .to_domain()
            .expect("valid")
    };
    let shapes: std::collections::HashMap<String, crate::batch::StreamShape> = [
        ("SRC_001".to_owned(), schema(SCHEMA).shape()),
        (
            "OUT".to_owned(),
            crate::batch::StreamShape {
                columns: vec![("sym".into(), crate::types::Kind::Text)],
            },
        ),
    ]
    .into_iter()
    .collect();
    let tables = [("companies".to_owned(), schema(COMPANIES_SCHEMA).shape())]
        .into_iter()
        .collect();
    let plan = crate::plan::compile_pump(&program.pumps[0], &shapes, &tables).expect("plans");
    let PlanBody::ReferenceJoin(join) = plan.body else {
        panic!("a reference join");
    };
    // Two keys (ticker = UPPER(sym), and lot widened to DOUBLE = px); the stream side reads the
    // stream's batch, the table side the table's (ticker is column 0, lot column 2).
    assert_eq!(join.keys.len(), 2);
    let mut table_columns = Vec::new();
    join.keys[0].1.visit_columns(&mut |i| table_columns.push(i));
    join.keys[1].1.visit_columns(&mut |i| table_columns.push(i));
    assert_eq!(table_columns, vec![0, 2]);
    assert_eq!(join.keys[1].0.kind(), crate::types::Kind::Float);
    assert!(join.residual.is_some(), "qty > lot and 1 = 1 stay in ON");
}

/// Event-time windows: `sym`, an event time `evt` (epoch ms in the record) and `qty`.
const EVENT_SCHEMA: &str = r#"{
  "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
  "RecordColumns": [{"Name": "sym", "Mapping": "$.sym", "SqlType": "VARCHAR(8)"},
                    {"Name": "evt", "Mapping": "$.t", "SqlType": "TIMESTAMP"},
                    {"Name": "qty", "Mapping": "$.q", "SqlType": "INTEGER"}]
}"#;

/// 10-second event-time windows per sym; watermark 2 s behind the greatest event time; a
/// window [s, s + 10 s) closes once the watermark reaches s + 10 s + 3 s.
const EVENT_PROGRAM: &str = r#"CREATE OR REPLACE STREAM "OUT" ("w" TIMESTAMP, "sym" VARCHAR(8), "n" BIGINT, "q" BIGINT);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "OUT"
  SELECT STREAM STEP("SRC_001"."evt" BY INTERVAL '10' SECOND), "sym", COUNT(*), SUM("qty")
  FROM "SRC_001"
  GROUP BY "sym", STEP("SRC_001"."evt" BY INTERVAL '10' SECOND)
  WINDOWED BY EVENT TIME ("evt") WATERMARK INTERVAL '2' SECOND ALLOWED LATENESS INTERVAL '3' SECOND;"#;

fn event_record(sym: &str, t: Option<i64>, q: i64) -> Vec<u8> {
    match t {
        Some(t) => format!(r#"{{"sym":"{sym}","t":{t},"q":{q}}}"#),
        None => format!(r#"{{"sym":"{sym}","t":null,"q":{q}}}"#),
    }
    .into_bytes()
}

#[test]
fn event_time_windows_take_out_of_order_rows_within_lateness_and_close_by_watermark() {
    let input = [
        event_record("A", Some(1_000), 1),
        event_record("B", Some(4_000), 2),
        event_record("A", Some(12_000), 3),
        // Out of order, within lateness: the watermark is 10 s, window [0, 10 s) closes at 13 s.
        event_record("A", Some(8_000), 4),
        // The watermark reaches 14 s: [0, 10 s) closes.
        event_record("B", Some(16_000), 5),
        // Too late: [0, 10 s) has closed.
        event_record("A", Some(9_000), 6),
        event_record("A", Some(11_000), 7),
        event_record("B", None, 8),
        // The watermark reaches 24 s: [10 s, 20 s) closes (at 23 s).
        event_record("A", Some(26_000), 9),
    ];
    let records: Vec<&[u8]> = input.iter().map(Vec::as_slice).collect();
    let late_before = crate::metrics::Metric::LateRowsTotal.get();
    let lines = run(
        EVENT_PROGRAM,
        EVENT_SCHEMA,
        &records,
        &options(&["OUT", "error_stream"], 1_000),
    )
    .expect("runs");
    let out: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("OUT\t"))
        .collect();
    // By hand: [0, 10 s) holds A at 1 s and 8 s (1 + 4) and B at 4 s; [10 s, 20 s) holds A at
    // 12 s and 11 s (3 + 7) and B at 16 s; [20 s, 30 s) is emitted at the end of the input.
    assert_eq!(
        out,
        vec![
            r#"{"w":"1970-01-01 00:00:00.000","sym":"A","n":2,"q":5}"#,
            r#"{"w":"1970-01-01 00:00:00.000","sym":"B","n":1,"q":2}"#,
            r#"{"w":"1970-01-01 00:00:10.000","sym":"A","n":2,"q":10}"#,
            r#"{"w":"1970-01-01 00:00:10.000","sym":"B","n":1,"q":5}"#,
            r#"{"w":"1970-01-01 00:00:20.000","sym":"A","n":1,"q":9}"#,
        ]
    );
    let errors: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("error_stream\t"))
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let late = errors[0]["MESSAGE"].as_str().expect("a message");
    assert!(
        late.starts_with("late row: event time 1970-01-01 00:00:09.000"),
        "{late}"
    );
    assert!(
        late.contains("[1970-01-01 00:00:00.000, 1970-01-01 00:00:10.000)"),
        "{late}"
    );
    assert_eq!(errors[0]["PUMP_NAME"], "P");
    assert_eq!(errors[0]["DATA_ROWTIME"], "1970-01-01 00:00:05.000");
    let null = errors[1]["MESSAGE"].as_str().expect("a message");
    assert!(null.contains("\"evt\" is NULL"), "{null}");
    // Other tests may count late rows at the same time: at least this one's.
    assert!(crate::metrics::Metric::LateRowsTotal.get() > late_before);
}

/// Feeds `records` to input 0 one at a time, each at its own ROWTIME; what the pipeline emitted.
fn feed(
    pipeline: &mut crate::pipeline::Pipeline,
    records: &[(&[u8], i64)],
) -> crate::pipeline::Emissions {
    let mut out = crate::pipeline::Emissions::default();
    for record in records {
        pipeline.ingest(0, std::slice::from_ref(record), record.1, &mut out);
    }
    out
}

/// The rows a pipeline emitted into `stream`, as JSON lines.
fn emitted(
    pipeline: &crate::pipeline::Pipeline,
    out: &crate::pipeline::Emissions,
    stream: &str,
) -> Vec<String> {
    let shape = pipeline.shape(stream).expect("a stream");
    out.batches
        .iter()
        .filter(|(s, _)| s == stream)
        .flat_map(|(_, b)| crate::output::serialize(b, shape, OutputFormat::Json))
        .map(|r| String::from_utf8(r).expect("UTF-8"))
        .collect()
}

fn event_pipeline() -> crate::pipeline::Pipeline {
    let program = crate::program::parse_program(EVENT_PROGRAM).expect("parses");
    let wire: crate::schema_wire::WireSourceSchema =
        serde_json::from_str(EVENT_SCHEMA).expect("a schema");
    let input = crate::pipeline::PipelineInput {
        stream: "SRC_001".into(),
        schema: wire.to_domain().expect("a schema"),
    };
    crate::pipeline::Pipeline::compile(&program, &[input]).expect("compiles")
}

/// Guards against a restart that double counts or loses a window, or repeats or loses an error
/// row: the run is cut after every record, the second pipeline restores the first one's event-time
/// checkpoint and replays from the record the runner would resume at (the first record of the
/// second of ROWTIME that `oldest_open_ms` names), and the rows of both together must equal an
/// uninterrupted run's.
#[test]
fn a_restart_from_an_event_time_checkpoint_after_any_record_equals_an_uninterrupted_run() {
    // Out-of-order event times (ms) over 3 keys, some too late, one NULL.
    let events: [(usize, Option<i64>); 24] = [
        (0, Some(1_000)),
        (1, Some(3_500)),
        (2, Some(12_000)),
        (0, Some(7_000)),
        (1, Some(15_500)),
        (2, Some(2_000)),
        (0, Some(9_999)),
        (1, Some(21_000)),
        (2, Some(14_000)),
        (0, None),
        (1, Some(25_000)),
        (2, Some(8_000)),
        (0, Some(19_000)),
        (1, Some(33_000)),
        (2, Some(27_000)),
        (0, Some(31_000)),
        (1, Some(22_000)),
        (2, Some(44_000)),
        (0, Some(36_000)),
        (1, Some(41_000)),
        (2, Some(30_500)),
        (0, Some(52_000)),
        (1, Some(47_000)),
        (2, Some(49_500)),
    ];
    let syms = ["A", "B", "C"];
    let data: Vec<Vec<u8>> = events
        .iter()
        .enumerate()
        .map(|(i, (k, t))| event_record(syms[*k], *t, i as i64))
        .collect();
    // Two records per second of ROWTIME, so a replay also re-reads a record before the cut.
    let records: Vec<(&[u8], i64)> = data
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_slice(), 100_000 + (i as i64) * 500))
        .collect();

    let mut whole = event_pipeline();
    let mut out = crate::pipeline::Emissions::default();
    for record in &records {
        whole.ingest(0, std::slice::from_ref(record), record.1, &mut out);
    }
    let expected_rows = emitted(&whole, &out, "OUT");
    let expected_errors = emitted(&whole, &out, "error_stream").len();
    assert!(expected_rows.len() >= 8, "{expected_rows:?}");
    assert!(expected_errors >= 3, "late rows and the NULL row");

    for cut in 1..records.len() {
        let mut first = event_pipeline();
        let before = feed(&mut first, &records[..cut]);
        let resume = match first.oldest_open_ms() {
            Some(oldest) => records
                .iter()
                .position(|(_, t)| *t >= oldest)
                .expect("the oldest open window has a record"),
            None => cut,
        };
        assert!(resume <= cut);
        let mut second = event_pipeline();
        for (pump, checkpoint) in first.event_time_checkpoints() {
            assert!(second.restore_event_time(&pump, checkpoint));
        }
        let after = feed(&mut second, &records[resume..]);
        let mut rows = emitted(&first, &before, "OUT");
        rows.extend(emitted(&second, &after, "OUT"));
        assert_eq!(
            rows, expected_rows,
            "cut after record {cut}, resumed at {resume}"
        );
        let errors = emitted(&first, &before, "error_stream").len()
            + emitted(&second, &after, "error_stream").len();
        assert_eq!(errors, expected_errors, "cut after record {cut}");
    }
}

#[test]
fn event_time_clauses_the_planner_cannot_run_are_rejected_with_positions() {
    let compile = |query: &str, clause: &str| {
        let head = "CREATE OR REPLACE STREAM \"OUT\" (\"sym\" VARCHAR(8), \"n\" BIGINT);\nCREATE OR REPLACE PUMP \"P\" AS INSERT INTO \"OUT\"\n";
        // Line 3 is the query, line 4 the clause.
        let sql = format!("{head}  {query}\n  WINDOWED BY EVENT TIME {clause};");
        run(&sql, EVENT_SCHEMA, &[], &options(&[], 1))
    };
    let grouped = "SELECT STREAM \"sym\", COUNT(*) FROM \"SRC_001\" GROUP BY \"sym\", STEP(\"evt\" BY INTERVAL '10' SECOND)";
    let watermark = "(\"evt\") WATERMARK INTERVAL '1' SECOND";
    // (query, clause, line and column, or only the line, of the error; what it says)
    type Case<'a> = (&'a str, &'a str, (u64, Option<u64>), &'a str);
    let cases: [Case<'_>; 8] = [
        (
            grouped,
            "(\"evt\") ALLOWED LATENESS INTERVAL '1' SECOND",
            (4, Some(34)),
            "WATERMARK",
        ),
        (
            grouped,
            "(\"sym\") WATERMARK INTERVAL '1' SECOND",
            (4, Some(27)),
            "must be a TIMESTAMP column",
        ),
        (
            grouped,
            "(ROWTIME) WATERMARK INTERVAL '1' SECOND",
            (4, Some(27)),
            "ROWTIME is the arrival time",
        ),
        (
            grouped,
            "(\"evt\") WATERMARK INTERVAL '-1' SECOND",
            (4, None),
            "zero or more",
        ),
        // At the bucket's ROWTIME operand.
        (
            "SELECT STREAM \"sym\", COUNT(*) FROM \"SRC_001\" GROUP BY \"sym\", STEP(\"SRC_001\".ROWTIME BY INTERVAL '10' SECOND)",
            watermark,
            (3, Some(69)),
            "not of ROWTIME",
        ),
        (
            "SELECT STREAM \"sym\", COUNT(*) FROM \"SRC_001\" GROUP BY \"sym\", \"qty\"",
            watermark,
            (4, Some(3)),
            "needs GROUP BY STEP(\"evt\"",
        ),
        (
            "SELECT STREAM \"sym\", \"qty\" FROM \"SRC_001\"",
            watermark,
            (4, Some(3)),
            "needs a GROUP BY",
        ),
        (
            "SELECT STREAM \"sym\", COUNT(*) FROM \"SRC_001\" WINDOWED BY STAGGER (PARTITION BY \"sym\" RANGE INTERVAL '1' MINUTE)",
            watermark,
            (4, Some(3)),
            "stagger",
        ),
    ];
    for (query, clause, (line, column), needle) in cases {
        let error = match compile(query, clause) {
            Err(RunError::Code(error)) => error,
            other => panic!("{clause} after {query} should be rejected: {other:?}"),
        };
        assert_eq!(error.position.line, line, "{clause}: {}", error.message);
        if let Some(column) = column {
            assert_eq!(error.position.column, column, "{clause}: {}", error.message);
        }
        assert!(error.message.contains(needle), "{}", error.message);
    }
    let floor = compile(
        "SELECT STREAM \"sym\", COUNT(*) FROM \"SRC_001\" GROUP BY \"sym\", FLOOR(\"evt\" TO MINUTE), \"qty\"",
        "(\"evt\") WATERMARK INTERVAL '0' SECOND",
    );
    assert!(
        floor.is_ok(),
        "FLOOR over the event-time column is a window: {floor:?}"
    );
}

/// A record of a restart test: the shard it is read from (shard k feeds input stream k + 1,
/// as InputParallelism deals them), its data, and its ROWTIME (non-decreasing over the list).
type Fed = (usize, Vec<u8>, i64);

/// What the runner commits, modelled: the replay floors and event-time checkpoints of the
/// pumps a replay rebuilds, the window snapshot as its file bytes (if the program has
/// snapshotted pumps), and each shard's committed position (`None`: none yet, the runner reads
/// from the shard's start).
struct Committed {
    floors: Vec<(String, i64)>,
    event_time: Vec<(String, crate::window::EventTimeCheckpoint)>,
    snapshot: Option<Vec<u8>>,
    positions: Vec<Option<usize>>,
}

/// One run of the runner, modelled on a pipeline (see `runner.rs`): it reads every shard from
/// its committed position, hands the records below the restored snapshot's cut to
/// `ingest_replayed` and the others to `ingest`, and keeps the first record of each second of
/// ROWTIME per shard as its replay marks.
struct ModelRun {
    pipeline: crate::pipeline::Pipeline,
    start: Vec<usize>,
    next: Vec<Option<usize>>,
    replay_below: Vec<Option<usize>>,
    marks: Vec<Vec<(i64, usize)>>,
    committed: Vec<Option<usize>>,
    out: crate::pipeline::Emissions,
    /// Records handed to `ingest_replayed`.
    replayed: usize,
}

fn restart_pipeline(sql: &str, inputs: usize) -> crate::pipeline::Pipeline {
    let program = crate::program::parse_program(sql).expect("parses");
    let wire: crate::schema_wire::WireSourceSchema =
        serde_json::from_str(EVENT_SCHEMA).expect("a schema");
    let schema = wire.to_domain().expect("a schema");
    let inputs: Vec<crate::pipeline::PipelineInput> = (1..=inputs)
        .map(|i| crate::pipeline::PipelineInput {
            stream: format!("SRC_{i:03}"),
            schema: schema.clone(),
        })
        .collect();
    crate::pipeline::Pipeline::compile(&program, &inputs).expect("compiles")
}

impl ModelRun {
    /// A run of `sql` over `shards` shards, from `committed` (a restart) or from the start.
    fn start(sql: &str, shards: usize, committed: Option<&Committed>) -> ModelRun {
        let mut pipeline = restart_pipeline(sql, shards);
        let mut start = vec![0; shards];
        let mut replay_below = vec![None; shards];
        let mut positions = vec![None; shards];
        if let Some(committed) = committed {
            for (pump, floor) in &committed.floors {
                assert!(pipeline.restore_replay_floor(pump, *floor));
            }
            for (pump, checkpoint) in &committed.event_time {
                assert!(pipeline.restore_event_time(pump, *checkpoint));
            }
            let body = committed
                .snapshot
                .as_ref()
                .map(|bytes| crate::snapshot::decode(bytes, 1).expect("decodes"));
            for shard in 0..shards {
                let Some(p) = committed.positions[shard] else {
                    continue;
                };
                start[shard] = p;
                if let Some(body) = &body {
                    replay_below[shard] = body.cut_of(shard as u32).map(|p| p as usize);
                    assert!(
                        replay_below[shard].is_some_and(|cut| p <= cut),
                        "shard {shard}: position {p} past the cut {:?}",
                        replay_below[shard]
                    );
                }
            }
            for pump in body.map(|b| b.pumps).unwrap_or_default() {
                pipeline.restore_pump(pump).expect("restores");
            }
            positions.clone_from(&committed.positions);
        }
        ModelRun {
            pipeline,
            start,
            next: vec![None; shards],
            replay_below,
            marks: vec![Vec::new(); shards],
            committed: positions,
            out: crate::pipeline::Emissions::default(),
            replayed: 0,
        }
    }

    /// Reads the records before global index `upto` that this run has not read yet.
    fn feed(&mut self, records: &[Fed], upto: usize) {
        let mut position = vec![0; self.start.len()];
        for (shard, data, rowtime) in &records[..upto] {
            let (shard, rowtime) = (*shard, *rowtime);
            let p = position[shard];
            position[shard] += 1;
            if p < self.start[shard] || self.next[shard].is_some_and(|next| p < next) {
                continue;
            }
            let marks = &mut self.marks[shard];
            if marks
                .last()
                .is_none_or(|(t, _)| t.div_euclid(1000) != rowtime.div_euclid(1000))
            {
                marks.push((rowtime, p));
            }
            self.next[shard] = Some(p + 1);
            let record = [(data.as_slice(), rowtime)];
            if self.replay_below[shard].is_some_and(|below| p < below) {
                self.replayed += 1;
                self.pipeline
                    .ingest_replayed(shard, &record, rowtime, &mut self.out);
            } else {
                self.pipeline.ingest(shard, &record, rowtime, &mut self.out);
            }
        }
    }

    /// What the runner commits now (see `commit` in `runner.rs`); the snapshot goes through
    /// its file bytes.
    fn commit(&self) -> Committed {
        let cut: Vec<crate::snapshot::ShardCut> = (0..self.start.len())
            .filter_map(|shard| {
                let position = self.next[shard].max(self.replay_below[shard])?;
                Some(crate::snapshot::ShardCut {
                    shard_index: shard as u32,
                    position: position as u64,
                })
            })
            .collect();
        let oldest = self.pipeline.oldest_open_ms();
        let positions = (0..self.start.len())
            .map(|shard| {
                let Some(next) = self.next[shard] else {
                    return self.committed[shard];
                };
                let position = match oldest {
                    Some(oldest) => self.marks[shard]
                        .iter()
                        .find(|(t, _)| *t >= oldest)
                        .map_or(next, |(_, p)| *p),
                    None => next,
                };
                if !self.pipeline.has_snapshotted_pumps() {
                    return Some(position);
                }
                let cut = cut
                    .iter()
                    .find(|c| c.shard_index == shard as u32)
                    .expect("a shard read is in the cut");
                Some(position.min(cut.position as usize))
            })
            .collect();
        let snapshotted = self.pipeline.has_snapshotted_pumps();
        let body = crate::snapshot::SnapshotBody {
            application_create_ms: 1,
            cut,
            last_rowtime_ms: 0,
            pumps: self.pipeline.snapshot_pumps(),
        };
        Committed {
            floors: self.pipeline.replay_floors(),
            event_time: self.pipeline.event_time_checkpoints(),
            snapshot: snapshotted.then(|| crate::snapshot::encode(1, &body)),
            positions,
        }
    }

    /// Lets time pass every window's end, as the runner's clock does once the input is idle.
    fn close_all(&mut self, records: &[Fed]) {
        let last = records.last().map_or(0, |r| r.2);
        self.pipeline.advance(last + 1_000_000, &mut self.out);
    }
}

/// Guards against a restart that double counts, loses or reshapes a window: `sql` over
/// `records` is cut after every record, once (a restart from that checkpoint) and after each
/// record in turn (one restart per record, each also cut a few records into the records it
/// reads again), the runner's checkpoint and restart modelled by
/// [`ModelRun`]. The rows each stream of `streams` got over all runs, in order, must be those
/// of an uninterrupted run. Returns how many records the restarts handed to `ingest_replayed`.
fn assert_restarts_equal_an_uninterrupted_run(
    sql: &str,
    shards: usize,
    records: &[Fed],
    streams: &[&str],
) -> usize {
    let rows = |runs: &[&ModelRun], stream: &str| -> Vec<String> {
        runs.iter()
            .flat_map(|r| emitted(&r.pipeline, &r.out, stream))
            .collect()
    };
    let mut whole = ModelRun::start(sql, shards, None);
    whole.feed(records, records.len());
    whole.close_all(records);
    let expected: Vec<Vec<String>> = streams.iter().map(|s| rows(&[&whole], s)).collect();
    for (stream, rows) in streams.iter().zip(&expected) {
        assert!(rows.len() >= 4, "{stream}: {rows:?}");
    }
    let mut replayed = 0;

    for cut in 1..records.len() {
        let mut first = ModelRun::start(sql, shards, None);
        first.feed(records, cut);
        let committed = first.commit();
        let mut second = ModelRun::start(sql, shards, Some(&committed));
        second.feed(records, records.len());
        second.close_all(records);
        replayed += second.replayed;
        for (stream, expected) in streams.iter().zip(&expected) {
            assert_eq!(
                &rows(&[&first, &second], stream),
                expected,
                "{stream}: cut after record {cut}, resumed at {:?}",
                committed.positions
            );
        }
    }

    let mut runs = Vec::new();
    let mut committed: Option<Committed> = None;
    for upto in 1..=records.len() {
        // A crash while reading again below the cut: its checkpoint must keep the cut.
        let mut crashed = ModelRun::start(sql, shards, committed.as_ref());
        crashed.feed(records, upto.saturating_sub(3));
        committed = Some(crashed.commit());
        runs.push(crashed);
        let mut run = ModelRun::start(sql, shards, committed.as_ref());
        run.feed(records, upto);
        if upto == records.len() {
            run.close_all(records);
        }
        committed = Some(run.commit());
        replayed += run.replayed;
        runs.push(run);
    }
    let runs: Vec<&ModelRun> = runs.iter().collect();
    for (stream, expected) in streams.iter().zip(&expected) {
        assert_eq!(
            &rows(&runs, stream),
            expected,
            "{stream}: restarted after every record"
        );
    }
    replayed
}

/// Records of `syms` on `shards` shards (round robin) at uneven gaps: several records in a
/// second, two in the same millisecond, pauses longer than a window. Record i has qty i + 1, so
/// SUM/MIN/MAX of qty tell which rows a window holds.
fn restart_records(syms: &[&str], shards: usize) -> Vec<Fed> {
    let gaps = [350, 0, 120, 900, 1_700, 40, 260, 3_100, 500, 10];
    let mut t = 100_000;
    (0..syms.len())
        .map(|i| {
            t += gaps[i % gaps.len()];
            (i % shards, event_record(syms[i], Some(0), i as i64 + 1), t)
        })
        .collect()
}

const RESTART_SYMS: [&str; 36] = [
    "A", "B", "C", "A", "A", "B", "D", "C", "B", "A", "C", "C", "D", "A", "B", "B", "A", "D", "C",
    "A", "B", "D", "D", "A", "C", "B", "A", "A", "D", "C", "B", "B", "A", "C", "D", "A",
];

/// A ROWTIME tumbling window rebuilt by a replay from the first record of a second of ROWTIME
/// (one replay mark per second) with its replay floor: rows arriving mid-second must neither be
/// lost nor counted in a window already emitted.
#[test]
fn a_restart_of_tumbling_windows_after_any_record_equals_an_uninterrupted_run() {
    let tumbling = r#"
        CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8), "n" BIGINT, "q" BIGINT);
        CREATE OR REPLACE PUMP "P2" AS INSERT INTO "OUT"
          SELECT STREAM "sym", COUNT(*), SUM("qty") FROM "SRC_001"
          GROUP BY "sym", STEP("SRC_001".ROWTIME BY INTERVAL '3' SECOND);"#;
    let records = restart_records(&RESTART_SYMS, 1);
    let replayed = assert_restarts_equal_an_uninterrupted_run(tumbling, 1, &records, &["OUT"]);
    assert_eq!(
        replayed, 0,
        "no snapshot, so nothing is ignored as replayed"
    );
}

/// Stagger windows cannot be rebuilt by a replay (where a key's window opens depends on all of
/// that key's earlier rows), so before snapshots a key whose window closed before the
/// checkpoint came out again as a partial window and its later windows opened at other rows.
/// Two stagger pumps, keys whose windows interleave (some close while others stay open), with
/// nothing else pinning the replay: the positions are the cut, nothing is read twice.
#[test]
fn a_restart_of_stagger_windows_after_any_record_equals_an_uninterrupted_run() {
    let sql = r#"
        CREATE OR REPLACE STREAM "BY_SYM" ("sym" VARCHAR(8), "n" BIGINT, "q" BIGINT, "lo" BIGINT, "hi" BIGINT);
        CREATE OR REPLACE STREAM "BY_SIZE" ("big" BOOLEAN, "n" BIGINT, "q" BIGINT, "avg" DOUBLE);
        CREATE OR REPLACE PUMP "S1" AS INSERT INTO "BY_SYM"
          SELECT STREAM "sym", COUNT(*), SUM("qty"), MIN("qty"), MAX("qty") FROM "SRC_001"
          WINDOWED BY STAGGER (PARTITION BY "sym" RANGE INTERVAL '3' SECOND);
        CREATE OR REPLACE PUMP "S2" AS INSERT INTO "BY_SIZE"
          SELECT STREAM "qty" > 18, COUNT(*), SUM("qty"), AVG("qty") FROM "SRC_001"
          WINDOWED BY STAGGER (PARTITION BY "qty" > 18 RANGE INTERVAL '2' SECOND);"#;
    let records = restart_records(&RESTART_SYMS, 1);
    let replayed =
        assert_restarts_equal_an_uninterrupted_run(sql, 1, &records, &["BY_SYM", "BY_SIZE"]);
    assert_eq!(
        replayed, 0,
        "stagger pumps alone never hold the positions back"
    );
}

/// A stagger pump fed by a filtering pump, beside a tumbling pump that holds the replay back
/// (so records below the snapshot's cut are read again and must be ignored by the stagger pump
/// only), feeding a tumbling pump and a TOP_K_ITEMS_TUMBLING pump that a replay could not
/// rebuild either (they are in the snapshot too).
#[test]
fn a_restart_of_a_stagger_pump_chain_beside_a_replayed_tumbling_window_equals_an_uninterrupted_run()
{
    let sql = r#"
        CREATE OR REPLACE STREAM "TUMBLED" ("sym" VARCHAR(8), "n" BIGINT, "q" BIGINT);
        CREATE OR REPLACE STREAM "MID" ("sym" VARCHAR(8), "qty" INTEGER);
        CREATE OR REPLACE STREAM "STAGGERED" ("sym" VARCHAR(8), "n" BIGINT, "q" BIGINT, "hi" BIGINT);
        CREATE OR REPLACE STREAM "ROLLUP" ("n" BIGINT, "q" BIGINT);
        CREATE OR REPLACE STREAM "TOP" ("ITEM" VARCHAR(8), "ITEM_COUNT" BIGINT);
        CREATE OR REPLACE PUMP "T" AS INSERT INTO "TUMBLED"
          SELECT STREAM "sym", COUNT(*), SUM("qty") FROM "SRC_001"
          GROUP BY "sym", STEP("SRC_001".ROWTIME BY INTERVAL '4' SECOND);
        CREATE OR REPLACE PUMP "M" AS INSERT INTO "MID"
          SELECT STREAM "sym", "qty" FROM "SRC_001" WHERE "qty" <> 7;
        CREATE OR REPLACE PUMP "S" AS INSERT INTO "STAGGERED"
          SELECT STREAM "sym", COUNT(*), SUM("qty"), MAX("qty") FROM "MID"
          WINDOWED BY STAGGER (PARTITION BY "sym" RANGE INTERVAL '2' SECOND);
        CREATE OR REPLACE PUMP "R" AS INSERT INTO "ROLLUP"
          SELECT STREAM COUNT(*), SUM("q") FROM "STAGGERED"
          GROUP BY STEP("STAGGERED".ROWTIME BY INTERVAL '5' SECOND);
        CREATE OR REPLACE PUMP "K" AS INSERT INTO "TOP"
          SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(
            CURSOR(SELECT STREAM * FROM "STAGGERED"), 'sym', 2, 6));"#;
    let records = restart_records(&RESTART_SYMS, 1);
    let replayed = assert_restarts_equal_an_uninterrupted_run(
        sql,
        1,
        &records,
        &["TUMBLED", "STAGGERED", "ROLLUP", "TOP"],
    );
    assert!(replayed > 0, "the tumbling pump holds the replay back");
}

/// InputParallelism 2: two shards, each feeding its own in-application stream, with a stagger
/// pump per stream and a tumbling pump on the second holding both shards' replay back. Each
/// shard's records below its own cut are the ones ignored.
#[test]
fn a_restart_of_stagger_windows_over_two_input_shards_equals_an_uninterrupted_run() {
    let sql = r#"
        CREATE OR REPLACE STREAM "ONE" ("sym" VARCHAR(8), "n" BIGINT, "q" BIGINT);
        CREATE OR REPLACE STREAM "TWO" ("sym" VARCHAR(8), "n" BIGINT, "q" BIGINT);
        CREATE OR REPLACE STREAM "TUMBLED" ("n" BIGINT, "q" BIGINT);
        CREATE OR REPLACE PUMP "S1" AS INSERT INTO "ONE"
          SELECT STREAM "sym", COUNT(*), SUM("qty") FROM "SRC_001"
          WINDOWED BY STAGGER (PARTITION BY "sym" RANGE INTERVAL '3' SECOND);
        CREATE OR REPLACE PUMP "S2" AS INSERT INTO "TWO"
          SELECT STREAM "sym", COUNT(*), SUM("qty") FROM "SRC_002"
          WINDOWED BY STAGGER (PARTITION BY "sym" RANGE INTERVAL '3' SECOND);
        CREATE OR REPLACE PUMP "T" AS INSERT INTO "TUMBLED"
          SELECT STREAM COUNT(*), SUM("qty") FROM "SRC_002"
          GROUP BY STEP("SRC_002".ROWTIME BY INTERVAL '5' SECOND);"#;
    let syms: Vec<&str> = RESTART_SYMS
        .iter()
        .chain(&RESTART_SYMS[..12])
        .copied()
        .collect();
    let records = restart_records(&syms, 2);
    let replayed =
        assert_restarts_equal_an_uninterrupted_run(sql, 2, &records, &["ONE", "TWO", "TUMBLED"]);
    assert!(replayed > 0, "the tumbling pump holds the replay back");
}

#[test]
fn applications_are_placed_on_service_cores_by_a_stable_hash_of_their_name() {
    use crate::runner::placement;
    let names: Vec<String> = (0..64).map(|i| format!("app-{i}")).collect();
    // One core (or none configured) runs everything.
    assert!(
        names
            .iter()
            .all(|n| placement(n, 1) == 0 && placement(n, 0) == 0)
    );
    // Several cores: every core gets some of 64 names, and a name's core does not change.
    for cores in [2, 3, 4] {
        let mut used = vec![0; cores];
        for name in &names {
            let core = placement(name, cores);
            assert_eq!(core, placement(name, cores));
            used[core] += 1;
        }
        assert!(used.iter().all(|&n| n > 0), "{cores} cores: {used:?}");
    }
    // CRC-32C of the name, as tests/python/test_analytics_cores.py computes it independently.
    assert_eq!(placement("123456789", 1 << 31), 0xE306_9283 % (1 << 31));
}
