//! `sluice sql run`: runs a program over records from a file, for development and tests.
//!
//! Each line of the input file is one record. Row `i` gets ROWTIME `start_ms + i * step_ms`
//! (records carry no arrival time in a file); at the end of the file every open window is
//! closed, as if time had moved past it. Rows of the chosen output streams are written as the
//! Kinesis output would carry them (JSON or CSV), one per line.

use crate::batch::BatchBuilder;
use crate::output::{OutputFormat, serialize};
use crate::pipeline::{Emissions, Pipeline, PipelineInput, PipelineTable};
use crate::program::{CodeError, parse_program};
use crate::schema_wire::WireSourceSchema;

/// Options of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub name_prefix: String,
    pub start_ms: i64,
    pub step_ms: i64,
    /// Streams whose rows to print; empty means every stream the program creates.
    pub outputs: Vec<String>,
    pub format: OutputFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("CodeValidationException: {0}")]
    Code(#[from] CodeError),
    #[error("invalid input schema: {0}")]
    Schema(String),
    #[error("no in-application stream named {0}")]
    UnknownOutput(String),
}

/// A reference table of a run: its name, its `ReferenceSchema` (JSON) and the object's bytes.
#[derive(Clone, Debug)]
pub struct ReferenceInput<'a> {
    pub table: &'a str,
    pub schema_json: &'a str,
    pub object: &'a [u8],
}

/// Runs `sql` over `records` with `schema_json` (an API `InputSchema`); returns one line per
/// output row, `STREAM<TAB>record` when several streams are printed.
pub fn run(
    sql: &str,
    schema_json: &str,
    records: &[&[u8]],
    options: &RunOptions,
) -> Result<Vec<String>, RunError> {
    run_with_references(sql, schema_json, records, &[], options)
}

fn schema_of(json: &str) -> Result<crate::input::InputSchema, RunError> {
    let wire: WireSourceSchema =
        serde_json::from_str(json).map_err(|e| RunError::Schema(e.to_string()))?;
    wire.to_domain().map_err(RunError::Schema)
}

/// The streams whose rows a run reports: the chosen ones, or every stream the program creates.
fn output_streams(
    program: &crate::program::Program,
    pipeline: &Pipeline,
    options: &RunOptions,
) -> Result<Vec<String>, RunError> {
    let outputs: Vec<String> = if options.outputs.is_empty() {
        program.streams.iter().map(|s| s.name.clone()).collect()
    } else {
        options.outputs.clone()
    };
    match outputs.iter().find(|name| pipeline.shape(name).is_none()) {
        Some(name) => Err(RunError::UnknownOutput(name.clone())),
        None => Ok(outputs),
    }
}

/// Each record with its ROWTIME: `start_ms`, then one `step_ms` more per record.
fn timed<'a>(records: &[&'a [u8]], options: &RunOptions) -> Vec<(&'a [u8], i64)> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| (*r, options.start_ms + i as i64 * options.step_ms))
        .collect()
}

/// [`run`] with reference tables, loaded before the first record.
pub fn run_with_references(
    sql: &str,
    schema_json: &str,
    records: &[&[u8]],
    references: &[ReferenceInput<'_>],
    options: &RunOptions,
) -> Result<Vec<String>, RunError> {
    let schema = schema_of(schema_json)?;
    let program = parse_program(sql)?;
    let input = PipelineInput {
        stream: format!("{}_001", options.name_prefix),
        schema,
    };
    let tables = references
        .iter()
        .map(|r| {
            Ok(PipelineTable {
                table: r.table.to_owned(),
                schema: schema_of(r.schema_json)?,
            })
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    let mut pipeline = Pipeline::compile_with_tables(&program, &[input], &tables)?;
    for (reference, table) in references.iter().zip(&tables) {
        let parsed = crate::reference::parse_table(
            reference.table,
            &table.schema,
            reference.object,
            options.start_ms,
        )
        .map_err(|e| RunError::Schema(e.to_string()))?;
        pipeline.install_table(reference.table, parsed, options.start_ms);
    }
    let outputs = output_streams(&program, &pipeline, options)?;
    let timed = timed(records, options);
    let mut emissions = Emissions::default();
    let end = timed.last().map_or(options.start_ms, |(_, t)| *t);
    for chunk in timed.chunks(1024) {
        let now = chunk.last().map_or(end, |(_, t)| *t);
        pipeline.ingest(0, chunk, now, &mut emissions);
    }
    pipeline.advance(i64::MAX / 2, &mut emissions);
    pipeline.finish(end, &mut emissions);
    let mut lines = Vec::new();
    for (stream, batch) in &emissions.batches {
        if !outputs.contains(stream) {
            continue;
        }
        let shape = pipeline.shape(stream).expect("emitted streams exist");
        for record in serialize(batch, shape, options.format) {
            let text = String::from_utf8_lossy(&record).into_owned();
            lines.push(if outputs.len() > 1 {
                format!("{stream}\t{text}")
            } else {
                text
            });
        }
    }
    Ok(lines)
}

/// What [`measure`] found: the program's own time over the records, and the time the same
/// thread takes only to parse them (the floor: its input decoding parses each record once).
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub records: usize,
    pub bytes: usize,
    /// Rows written to the chosen output streams.
    pub rows_out: usize,
    /// Seconds to run the program over every record, windows closed at the end; output rows
    /// are counted, not serialized.
    pub program_seconds: f64,
    /// Seconds for `serde_json` (the input decoder's parser) to read and validate every record
    /// without keeping anything (`IgnoredAny`): the floor of any decoding of these records.
    pub parse_seconds: f64,
    /// Seconds to parse every record into a `serde_json::Value` document.
    pub document_seconds: f64,
    /// Seconds for the input decoder alone to turn every record into columns of Arrow
    /// batches, 1,024 records a batch as the program gets them.
    pub decode_seconds: f64,
}

/// Runs `sql` over `records` as [`run`] does, timing it (without serializing the output) and
/// timing a bare JSON parse of the same records on the same thread. For `scripts/perf.sh`.
pub fn measure(
    sql: &str,
    schema_json: &str,
    records: &[&[u8]],
    options: &RunOptions,
) -> Result<Measurement, RunError> {
    let schema = schema_of(schema_json)?;
    let program = parse_program(sql)?;
    let input = PipelineInput {
        stream: format!("{}_001", options.name_prefix),
        schema,
    };
    let mut pipeline = Pipeline::compile_with_tables(&program, &[input], &[])?;
    let outputs = output_streams(&program, &pipeline, options)?;
    let timed = timed(records, options);
    let mut rows_out = 0;
    let mut count = |emissions: &mut Emissions| {
        for (stream, batch) in emissions.batches.drain(..) {
            if outputs.contains(&stream) {
                rows_out += batch.num_rows();
            }
        }
    };
    let started = std::time::Instant::now();
    let mut emissions = Emissions::default();
    let end = timed.last().map_or(options.start_ms, |(_, t)| *t);
    for chunk in timed.chunks(1024) {
        let now = chunk.last().map_or(end, |(_, t)| *t);
        pipeline.ingest(0, chunk, now, &mut emissions);
        count(&mut emissions);
    }
    pipeline.advance(i64::MAX / 2, &mut emissions);
    count(&mut emissions);
    let program_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let mut valid = 0usize;
    for record in records {
        valid += usize::from(serde_json::from_slice::<serde::de::IgnoredAny>(record).is_ok());
    }
    let parse_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    for record in records {
        if let Ok(document) = serde_json::from_slice::<serde_json::Value>(record) {
            valid += usize::from(document.is_object());
        }
    }
    let document_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let schema = schema_of(schema_json)?;
    let shape = schema.shape();
    let mut decoder = schema.decoder();
    for chunk in records.chunks(1024) {
        let mut rows = BatchBuilder::new(&shape, chunk.len());
        for record in chunk {
            valid += usize::from(decoder.decode(record, 0, &mut rows).is_ok());
        }
        valid += rows.finish().num_rows();
    }
    let decode_seconds = started.elapsed().as_secs_f64();
    std::hint::black_box(valid);
    Ok(Measurement {
        records: records.len(),
        bytes: records.iter().map(|r| r.len()).sum(),
        rows_out,
        program_seconds,
        parse_seconds,
        document_seconds,
        decode_seconds,
    })
}
