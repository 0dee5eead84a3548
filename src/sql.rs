//! `sluice sql run`: runs a Kinesis Data Analytics SQL program over a file of records, without a
//! server, and prints the rows of its output streams (see `sluice_analytics::run_file`).

use std::path::PathBuf;

use sluice_analytics::output::OutputFormat;
use sluice_analytics::run_file::{RunOptions, run as run_program};

#[derive(Debug, clap::Args)]
pub struct SqlArgs {
    #[command(subcommand)]
    pub command: SqlCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SqlCommand {
    /// Run APP.sql over the records of --input (one record per line) and print the rows of
    /// the output streams, one record per line.
    Run(SqlRunArgs),
}

#[derive(Debug, clap::Args)]
pub struct SqlRunArgs {
    /// The application code.
    #[arg(value_name = "APP.sql")]
    pub program: PathBuf,
    /// Records, one per line (JSON or CSV as the schema says).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The input schema as the API takes it (`InputSchema`: RecordFormat, RecordColumns).
    #[arg(long, value_name = "SCHEMA.json")]
    pub schema: PathBuf,
    /// The input's NamePrefix: rows enter `<prefix>_001`.
    #[arg(long, default_value = "SOURCE_SQL_STREAM")]
    pub name_prefix: String,
    /// In-application streams to print (repeatable); default: every stream the program creates.
    #[arg(long = "output", value_name = "STREAM")]
    pub outputs: Vec<String>,
    /// ROWTIME of the first record, in milliseconds since the epoch.
    #[arg(long, default_value_t = 0)]
    pub start_ms: i64,
    /// ROWTIME step between consecutive records, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub step_ms: i64,
    /// Output record format.
    #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
    pub format: String,
    /// Print no rows: time the program over the records (output rows counted, not written)
    /// and a bare JSON parse of the same records, as one JSON line (for scripts/perf.sh).
    #[arg(long)]
    pub measure: bool,
}

/// Runs the command; returns the process exit code.
pub fn run(args: &SqlArgs) -> i32 {
    let SqlCommand::Run(args) = &args.command;
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let loaded = (|| {
        let sql = String::from_utf8(read(&args.program)?)
            .map_err(|_| format!("{} is not UTF-8", args.program.display()))?;
        let schema = String::from_utf8(read(&args.schema)?)
            .map_err(|_| format!("{} is not UTF-8", args.schema.display()))?;
        Ok::<_, String>((sql, schema, read(&args.input)?))
    })();
    let (sql, schema, input) = match loaded {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("error: {message}");
            return 2;
        }
    };
    let records: Vec<&[u8]> = input
        .split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .collect();
    let options = RunOptions {
        name_prefix: args.name_prefix.clone(),
        start_ms: args.start_ms,
        step_ms: args.step_ms,
        outputs: args.outputs.clone(),
        format: if args.format == "csv" {
            OutputFormat::Csv
        } else {
            OutputFormat::Json
        },
    };
    if args.measure {
        return match sluice_analytics::run_file::measure(&sql, &schema, &records, &options) {
            Ok(m) => {
                println!(
                    "{{\"records\":{},\"bytes\":{},\"rows_out\":{},\"program_seconds\":{},\"parse_seconds\":{},\"document_seconds\":{},\"decode_seconds\":{}}}",
                    m.records,
                    m.bytes,
                    m.rows_out,
                    m.program_seconds,
                    m.parse_seconds,
                    m.document_seconds,
                    m.decode_seconds
                );
                0
            }
            Err(error) => {
                eprintln!("error: {error}");
                1
            }
        };
    }
    match run_program(&sql, &schema, &records, &options) {
        Ok(lines) => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            for line in lines {
                if writeln!(stdout, "{line}").is_err() {
                    return 1;
                }
            }
            0
        }
        Err(error) => {
            eprintln!("error: {error}");
            1
        }
    }
}
