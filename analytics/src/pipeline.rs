//! An application's in-application streams and pumps, wired together.
//!
//! Records from an input become rows of its in-application stream (`<NamePrefix>_001`); every
//! batch entering a stream is handed to the pumps reading it, in program order, and their output
//! enters the target stream, so pump chains run to the end within one call. Records and rows that
//! fail go to `error_stream` with KDA's columns; nothing fails the application.
//!
//! Invariants: the pump graph is acyclic (checked at compile time), so routing terminates;
//! every batch of a stream has that stream's shape.
//!
//! **Snapshotted pumps**: every stagger pump, and every window or items pump that reads (through
//! any chain of pumps) what a stagger pump wrote, keeps its state in the application's window
//! snapshot ([`crate::snapshot`]) rather than rebuilding it by a replay, because a replay cannot
//! rebuild a stagger window and so cannot rebuild what it fed either. Such pumps take no part in
//! the replay positions ([`Pipeline::oldest_open_ms`]), replay floors or event-time checkpoints.
//! After [`Pipeline::restore_pump`], the records a restarted runner reads again below the
//! snapshot's cut go through [`Pipeline::ingest_replayed`], which the restored pumps ignore:
//! their state already holds those records' rows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use serde::{Deserialize, Serialize};

use crate::batch::{BatchBuilder, StreamShape, batch_from_rows, rowtimes, value_at};
use crate::expr::{convert, project};
use crate::input::{InputSchema, RejectedRecord};
use crate::items::{ItemsSnapshot, ItemsState, RestoreItemsError};
use crate::join::JoinState;
use crate::plan::{PlanBody, PumpPlan, TumblingPlan, compile_pump};
use crate::program::{CodeError, Program};
use crate::reference::{ParsedTable, ReferenceJoinState, ReferenceTable};
use crate::row_function::RowFunctionState;
use crate::sliding::SlidingState;
use crate::types::Kind;
use crate::value::Value;
use crate::window::{
    EventTimeCheckpoint, OutputRow, RestoreWindowError, TumblingState, WindowSnapshot,
};

/// The in-application error stream every application has.
pub const ERROR_STREAM: &str = "error_stream";

/// `error_stream`'s columns, as KDA documents them.
pub fn error_shape() -> StreamShape {
    StreamShape {
        columns: vec![
            ("ERROR_TIME".into(), Kind::Time),
            ("ERROR_LEVEL".into(), Kind::Text),
            ("ERROR_NAME".into(), Kind::Text),
            ("MESSAGE".into(), Kind::Text),
            ("DATA_ROWTIME".into(), Kind::Time),
            ("DATA_ROW".into(), Kind::Text),
            ("PUMP_NAME".into(), Kind::Text),
        ],
    }
}

/// An input as the pipeline sees it: its in-application stream and schema.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineInput {
    pub stream: String,
    pub schema: InputSchema,
}

/// A reference data source as the pipeline sees it: its in-application table and schema.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineTable {
    pub table: String,
    pub schema: InputSchema,
}

struct Pump {
    plan: PumpPlan,
    window: Option<TumblingState>,
    sliding: Option<SlidingState>,
    items: Option<ItemsState>,
    join: Option<JoinState>,
    reference: Option<ReferenceJoinState>,
    row_function: Option<RowFunctionState>,
    /// Keeps its state in window snapshots (see the module doc).
    snapshotted: bool,
    /// Restored from a snapshot: ignores the rows of [`Pipeline::ingest_replayed`].
    restored: bool,
}

/// A snapshotted pump's state, by pump name.
///
/// Serialized in window snapshot files ([`crate::snapshot`]): no field or variant is renamed,
/// removed or retyped without a format version bump and a compatibility fixture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PumpSnapshot {
    pub pump: String,
    pub state: PumpState,
}

/// The state of one snapshotted pump.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PumpState {
    Window(WindowSnapshot),
    Items(ItemsSnapshot),
}

/// Why a [`PumpSnapshot`] was not restored; the pump (if any) starts empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestorePumpError {
    #[error("the program has no pump {pump} that keeps its state in snapshots")]
    NoSuchPump { pump: String },
    #[error("pump {pump}: {source}")]
    Window {
        pump: String,
        source: RestoreWindowError,
    },
    #[error("pump {pump}: {source}")]
    Items {
        pump: String,
        source: RestoreItemsError,
    },
}

/// Batches that entered each stream during a call, in order.
#[derive(Debug, Default)]
pub struct Emissions {
    pub batches: Vec<(String, RecordBatch)>,
}

/// A compiled, running application.
pub struct Pipeline {
    shapes: HashMap<String, StreamShape>,
    inputs: Vec<PipelineInput>,
    pumps: Vec<Pump>,
    readers: HashMap<String, Vec<usize>>,
    error_rows: Vec<(Vec<Value>, i64)>,
    /// Left batches of joins, run once every pump has seen the input batch they came from.
    deferred: Vec<(usize, RecordBatch)>,
    /// Inside [`Pipeline::ingest_replayed`].
    replaying: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("streams", &self.shapes.keys())
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A value in the JSON of an `error_stream` row's `DATA_ROW`. Times stay epoch milliseconds,
/// unlike an output record's (see [`crate::output`]), and a non-finite float is `null`.
fn data_row_value(value: Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Int(x) | Value::Time(x) => x.into(),
        Value::Float(x) => {
            serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(x) => x.into(),
        Value::Bool(x) => x.into(),
    }
}

impl Pipeline {
    /// Compiles `program` for `inputs`; a program that cannot run is a [`CodeError`].
    pub fn compile(program: &Program, inputs: &[PipelineInput]) -> Result<Pipeline, CodeError> {
        Self::compile_with_tables(program, inputs, &[])
    }

    /// Compiles `program` for `inputs` and the reference tables `tables`, which start empty
    /// until [`Pipeline::install_table`] loads them.
    pub fn compile_with_tables(
        program: &Program,
        inputs: &[PipelineInput],
        tables: &[PipelineTable],
    ) -> Result<Pipeline, CodeError> {
        let mut shapes = HashMap::new();
        shapes.insert(ERROR_STREAM.to_owned(), error_shape());
        for input in inputs {
            shapes.insert(input.stream.clone(), input.schema.shape());
        }
        let table_shapes: HashMap<String, StreamShape> = tables
            .iter()
            .map(|t| (t.table.clone(), t.schema.shape()))
            .collect();
        if let Some(clash) = tables.iter().find(|t| shapes.contains_key(&t.table)) {
            return Err(CodeError::at(
                crate::program::Position { line: 1, column: 1 },
                format!(
                    "reference table \"{}\" has the name of an in-application stream",
                    clash.table
                ),
            ));
        }
        for stream in &program.streams {
            if shapes.contains_key(&stream.name) || table_shapes.contains_key(&stream.name) {
                return Err(CodeError::at(
                    stream.position,
                    format!("stream \"{}\" already exists", stream.name),
                ));
            }
            let shape = StreamShape {
                columns: stream
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.sql_type.kind()))
                    .collect(),
            };
            shapes.insert(stream.name.clone(), shape);
        }
        let mut pumps = Vec::new();
        let mut readers: HashMap<String, Vec<usize>> = HashMap::new();
        for pump in &program.pumps {
            if inputs.iter().any(|i| i.stream == pump.target) || pump.target == ERROR_STREAM {
                return Err(CodeError::at(
                    pump.position,
                    format!("cannot insert into \"{}\"", pump.target),
                ));
            }
            let plan = compile_pump(pump, &shapes, &table_shapes)?;
            readers
                .entry(plan.source.clone())
                .or_default()
                .push(pumps.len());
            let (window, sliding, items) = match &plan.body {
                PlanBody::Tumbling(t) => (Some(TumblingState::new(t.clone())), None, None),
                PlanBody::Sliding(s) => (None, Some(SlidingState::new(s.clone())), None),
                PlanBody::Items(i) => (None, None, Some(ItemsState::new(i.clone()))),
                PlanBody::Project(_)
                | PlanBody::Join(_)
                | PlanBody::ReferenceJoin(_)
                | PlanBody::Rcf(_)
                | PlanBody::Hotspots(_) => (None, None, None),
            };
            let join = match &plan.body {
                PlanBody::Join(j) => {
                    readers
                        .entry(j.right_source.clone())
                        .or_default()
                        .push(pumps.len());
                    Some(JoinState::new(
                        j.clone(),
                        shapes[&plan.source].clone(),
                        shapes[&j.right_source].clone(),
                    ))
                }
                _ => None,
            };
            let row_function = RowFunctionState::new(&plan.body);
            let reference = match &plan.body {
                PlanBody::ReferenceJoin(r) => Some(ReferenceJoinState::new(
                    r.clone(),
                    shapes[&plan.source].clone(),
                    &table_shapes[&r.table],
                )),
                _ => None,
            };
            pumps.push(Pump {
                plan,
                window,
                sliding,
                items,
                join,
                reference,
                row_function,
                snapshotted: false,
                restored: false,
            });
        }
        check_acyclic(&pumps, program)?;
        mark_snapshotted(&mut pumps);
        Ok(Pipeline {
            shapes,
            inputs: inputs.to_vec(),
            pumps,
            readers,
            error_rows: Vec::new(),
            deferred: Vec::new(),
            replaying: false,
        })
    }

    /// Loads reference table `table` (replacing what it held) for every pump joining it. Records
    /// of the object that did not parse, and table rows whose join key cannot be computed, go
    /// to `error_stream` with the next emissions.
    pub fn install_table(&mut self, table: &str, parsed: ParsedTable, now_ms: i64) {
        let ParsedTable {
            table: loaded,
            rejected,
        } = parsed;
        for r in rejected {
            self.reject(r, now_ms);
        }
        let loaded = Arc::new(loaded);
        for index in 0..self.pumps.len() {
            let Some(join) = self.pumps[index].reference.as_mut() else {
                continue;
            };
            if join.table_name() != table {
                continue;
            }
            let unindexed = join.set_table(loaded.clone());
            for row in unindexed {
                self.table_error(index, &loaded, row.row, row.message, now_ms);
            }
        }
    }

    fn reject(&mut self, r: RejectedRecord, now_ms: i64) {
        self.error_rows.push((
            vec![
                Value::Time(now_ms),
                Value::Text("ERROR".into()),
                Value::Text(r.error_name.into()),
                Value::Text(r.message),
                Value::Time(r.rowtime),
                Value::Text(hex(&r.data)),
                Value::Null,
            ],
            r.rowtime,
        ));
    }

    fn table_error(
        &mut self,
        index: usize,
        table: &ReferenceTable,
        row: usize,
        message: String,
        now_ms: i64,
    ) {
        let values: Vec<serde_json::Value> = table
            .batch
            .columns()
            .iter()
            .take(table.batch.num_columns() - 1)
            .map(|column| data_row_value(value_at(column.as_ref(), kind_of(column), row)))
            .collect();
        let data = serde_json::to_vec(&values).unwrap_or_default();
        self.sql_error(index, message, &data, now_ms, now_ms);
    }

    /// A `SQL_error` row of `error_stream` charged to pump `index`: `data` is the row it could
    /// not process, as JSON, and `rowtime` that row's ROWTIME (a reference table's rows take
    /// the time they were loaded).
    fn sql_error(&mut self, index: usize, message: String, data: &[u8], rowtime: i64, now_ms: i64) {
        self.error_rows.push((
            vec![
                Value::Time(now_ms),
                Value::Text("ERROR".into()),
                Value::Text("SQL_error".into()),
                Value::Text(message),
                Value::Time(rowtime),
                Value::Text(hex(data)),
                Value::Text(self.pumps[index].plan.name.clone()),
            ],
            rowtime,
        ));
    }

    /// The shape of in-application stream `name`, if it exists.
    pub fn shape(&self, name: &str) -> Option<&StreamShape> {
        self.shapes.get(name)
    }

    /// The pumps that rebuild their state by a replay: window and items pumps that are not
    /// snapshotted.
    fn replayed_pumps(&self) -> impl Iterator<Item = &Pump> {
        self.pumps.iter().filter(|p| !p.snapshotted)
    }

    /// The start of the oldest tumbling window still open in any pump that a replay rebuilds
    /// (sliding frames are not counted: replaying them would repeat their output rows; nor are
    /// snapshotted pumps).
    pub fn oldest_open_ms(&self) -> Option<i64> {
        let windows = self
            .replayed_pumps()
            .filter_map(|p| p.window.as_ref()?.oldest_open_ms());
        let items = self
            .replayed_pumps()
            .filter_map(|p| p.items.as_ref()?.oldest_open_ms());
        windows.chain(items).min()
    }

    /// Whether any pump keeps its state in window snapshots.
    pub fn has_snapshotted_pumps(&self) -> bool {
        self.pumps.iter().any(|p| p.snapshotted)
    }

    /// The state of every snapshotted pump, in program order.
    pub fn snapshot_pumps(&self) -> Vec<PumpSnapshot> {
        self.pumps
            .iter()
            .filter(|p| p.snapshotted)
            .filter_map(|p| {
                let state = match (&p.window, &p.items) {
                    (Some(window), _) => PumpState::Window(window.snapshot()),
                    (None, Some(items)) => PumpState::Items(items.snapshot()),
                    (None, None) => return None,
                };
                Some(PumpSnapshot {
                    pump: p.plan.name.clone(),
                    state,
                })
            })
            .collect()
    }

    /// Restores one pump's state before the first record; from then on that pump ignores the
    /// rows of [`Pipeline::ingest_replayed`].
    pub fn restore_pump(&mut self, snapshot: PumpSnapshot) -> Result<(), RestorePumpError> {
        let PumpSnapshot { pump, state } = snapshot;
        let Some(target) = self
            .pumps
            .iter_mut()
            .find(|p| p.snapshotted && p.plan.name == pump)
        else {
            return Err(RestorePumpError::NoSuchPump { pump });
        };
        assert!(!target.restored, "pump {pump} is restored once");
        match (state, &mut target.window, &mut target.items) {
            (PumpState::Window(state), Some(window), _) => {
                window
                    .restore(state)
                    .map_err(|source| RestorePumpError::Window {
                        pump: pump.clone(),
                        source,
                    })?
            }
            (PumpState::Items(state), None, Some(items)) => {
                items
                    .restore(state)
                    .map_err(|source| RestorePumpError::Items {
                        pump: pump.clone(),
                        source,
                    })?
            }
            _ => return Err(RestorePumpError::NoSuchPump { pump }),
        }
        target.restored = true;
        Ok(())
    }

    /// The checkpoint of every event-time window pump that has seen a row, by pump name.
    pub fn event_time_checkpoints(&self) -> Vec<(String, EventTimeCheckpoint)> {
        self.replayed_pumps()
            .filter_map(|p| {
                Some((
                    p.plan.name.clone(),
                    p.window.as_ref()?.event_time_checkpoint()?,
                ))
            })
            .collect()
    }

    /// The replay floor of every ROWTIME window pump with a window open, by pump name (see
    /// [`TumblingState::replay_floor_ms`]).
    pub fn replay_floors(&self) -> Vec<(String, i64)> {
        self.replayed_pumps()
            .filter_map(|p| Some((p.plan.name.clone(), p.window.as_ref()?.replay_floor_ms()?)))
            .collect()
    }

    /// The names of the window pumps over event time (`true`) or over ROWTIME (`false`:
    /// tumbling and stagger) that a replay rebuilds.
    fn window_pumps(&self, event_time: bool) -> Vec<String> {
        self.replayed_pumps()
            .filter(|p| {
                p.window
                    .as_ref()
                    .is_some_and(|w| w.is_event_time() == event_time)
            })
            .map(|p| p.plan.name.clone())
            .collect()
    }

    /// Pump `pump`'s window if it is over event time (`true`) or over ROWTIME (`false`) and a
    /// replay rebuilds it.
    fn window_of(&mut self, pump: &str, event_time: bool) -> Option<&mut TumblingState> {
        self.pumps
            .iter_mut()
            .filter(|p| p.plan.name == pump && !p.snapshotted)
            .find_map(|p| {
                p.window
                    .as_mut()
                    .filter(|w| w.is_event_time() == event_time)
            })
    }

    /// The names of the ROWTIME window pumps that a replay rebuilds.
    pub fn rowtime_window_pumps(&self) -> Vec<String> {
        self.window_pumps(false)
    }

    /// Restores pump `pump`'s replay floor before the first record; `false` if no ROWTIME
    /// window pump has that name (the program changed).
    pub fn restore_replay_floor(&mut self, pump: &str, floor_ms: i64) -> bool {
        self.window_of(pump, false)
            .map(|window| window.restore_replay_floor(floor_ms))
            .is_some()
    }

    /// The names of the event-time window pumps.
    pub fn event_time_pumps(&self) -> Vec<String> {
        self.window_pumps(true)
    }

    /// Restores pump `pump`'s event-time checkpoint before the first record; `false` if no
    /// event-time window pump has that name (the program changed).
    pub fn restore_event_time(&mut self, pump: &str, checkpoint: EventTimeCheckpoint) -> bool {
        self.window_of(pump, true)
            .map(|window| window.restore_event_time(checkpoint))
            .is_some()
    }

    /// The input has ended (a file run): emits every event-time window still open.
    pub fn finish(&mut self, now_ms: i64, out: &mut Emissions) {
        for index in 0..self.pumps.len() {
            let mut rows: Vec<OutputRow> = Vec::new();
            if let Some(window) = &mut self.pumps[index].window {
                window.finish(&mut rows);
            }
            if !rows.is_empty() {
                let batch = self.window_rows_to_batch(index, rows);
                let target = self.pumps[index].plan.target.clone();
                self.route(&target, batch, now_ms, out);
            }
        }
        self.run_deferred(now_ms, out);
        self.flush_errors(out);
    }

    /// Decodes `records` (data and row time, row times non-decreasing) of input `input` and runs
    /// them through every pump.
    pub fn ingest(
        &mut self,
        input: usize,
        records: &[(&[u8], i64)],
        now_ms: i64,
        out: &mut Emissions,
    ) {
        let stream = self.inputs[input].stream.clone();
        let mut decoder = self.inputs[input].schema.decoder();
        let mut rows = BatchBuilder::new(&self.shapes[&stream], records.len());
        let mut rejected: Vec<RejectedRecord> = Vec::new();
        for (data, rowtime) in records {
            if let Err(r) = decoder.decode(data, *rowtime, &mut rows) {
                rejected.push(r);
            }
        }
        for r in rejected {
            self.reject(r, now_ms);
        }
        if rows.num_rows() > 0 {
            self.route(&stream, rows.finish(), now_ms, out);
        }
        self.run_deferred(now_ms, out);
        self.flush_errors(out);
    }

    /// Like [`Pipeline::ingest`], for records a restarted runner reads again that the restored
    /// snapshot already holds (below its cut): the restored pumps ignore their rows, and so
    /// everything downstream of them sees none; the other pumps rebuild their state from them
    /// as after any restart.
    pub fn ingest_replayed(
        &mut self,
        input: usize,
        records: &[(&[u8], i64)],
        now_ms: i64,
        out: &mut Emissions,
    ) {
        assert!(!self.replaying);
        self.replaying = true;
        self.ingest(input, records, now_ms, out);
        self.replaying = false;
    }

    /// Writes records that never reached the input schema (a pre-processing function failed
    /// them) to `error_stream`.
    pub fn reject_records(
        &mut self,
        rejected: Vec<RejectedRecord>,
        now_ms: i64,
        out: &mut Emissions,
    ) {
        for r in rejected {
            self.reject(r, now_ms);
        }
        self.flush_errors(out);
    }

    /// Emits every window that ended at or before `now_ms` (time passing with no new rows).
    pub fn advance(&mut self, now_ms: i64, out: &mut Emissions) {
        for index in 0..self.pumps.len() {
            let mut rows: Vec<OutputRow> = Vec::new();
            if let Some(window) = &mut self.pumps[index].window {
                window.close_ended_by(now_ms, &mut rows);
            }
            if let Some(items) = &mut self.pumps[index].items {
                items.close_ended_by(now_ms, &mut rows);
            }
            if !rows.is_empty() {
                let batch = self.window_rows_to_batch(index, rows);
                let target = self.pumps[index].plan.target.clone();
                self.route(&target, batch, now_ms, out);
            }
        }
        self.run_deferred(now_ms, out);
        self.settle_joins(Some(now_ms), now_ms, out);
        self.flush_errors(out);
    }

    /// Runs the joins' deferred left batches (and what their output feeds) until none is left.
    fn run_deferred(&mut self, now_ms: i64, out: &mut Emissions) {
        self.run_joins(now_ms, out);
        self.settle_joins(None, now_ms, out);
    }

    /// Drops the right rows of every join that no later left row can join (after an input
    /// batch, or with `clock` once time has passed to it), routing what a RIGHT JOIN keeps of
    /// them.
    fn settle_joins(&mut self, clock: Option<i64>, now_ms: i64, out: &mut Emissions) {
        for index in 0..self.pumps.len() {
            // Runs after every input batch: nothing is cloned for pumps without a join, nor
            // for joins with nothing to emit.
            let Pump {
                plan,
                join: Some(join),
                ..
            } = &mut self.pumps[index]
            else {
                continue;
            };
            let shape = &self.shapes[&plan.target];
            let settled = match clock {
                None => join.settle(shape, &plan.target_columns),
                Some(time) => join.advance(time, shape, &plan.target_columns),
            };
            match settled {
                Ok(Some(expired)) => {
                    let target = self.pumps[index].plan.target.clone();
                    self.route(&target, expired, now_ms, out);
                    // What the expired rows fed may be joins' left batches in turn.
                    self.run_joins(now_ms, out);
                }
                Ok(None) => {}
                Err(e) => {
                    // The rows came from the join's state, not from this input batch: the
                    // error row says what failed, with no data of its own.
                    let message = format!("the rows a RIGHT JOIN kept without a partner: {e}");
                    self.sql_error(index, message, b"", now_ms, now_ms);
                }
            }
        }
    }

    fn run_joins(&mut self, now_ms: i64, out: &mut Emissions) {
        while !self.deferred.is_empty() {
            for (index, batch) in std::mem::take(&mut self.deferred) {
                let target = self.pumps[index].plan.target.clone();
                let shape = self.shapes[&target].clone();
                let columns = self.pumps[index].plan.target_columns.clone();
                let Some(join) = self.pumps[index].join.as_mut() else {
                    continue;
                };
                match join.join(&batch, &shape, &columns) {
                    Ok(joined) => self.route(&target, joined, now_ms, out),
                    Err(e) => {
                        for row in 0..batch.num_rows() {
                            self.pump_error(index, &batch, row, e.to_string(), now_ms);
                        }
                    }
                }
            }
        }
    }

    fn flush_errors(&mut self, out: &mut Emissions) {
        if self.error_rows.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.error_rows);
        let batch = batch_from_rows(&self.shapes[ERROR_STREAM], &rows);
        out.batches.push((ERROR_STREAM.to_owned(), batch));
    }

    fn route(&mut self, stream: &str, batch: RecordBatch, now_ms: i64, out: &mut Emissions) {
        if batch.num_rows() == 0 {
            return;
        }
        out.batches.push((stream.to_owned(), batch.clone()));
        let readers = self.readers.get(stream).cloned().unwrap_or_default();
        for index in readers {
            if self.replaying && self.pumps[index].restored {
                continue;
            }
            if self.pumps[index].join.is_some() {
                if self.pumps[index].plan.source == stream {
                    if let Some(kept) = self.filter(index, &batch, now_ms) {
                        self.deferred.push((index, kept));
                    }
                } else {
                    let refused = self.pumps[index]
                        .join
                        .as_mut()
                        .map(|j| j.add_right(&batch))
                        .unwrap_or_default();
                    for r in refused {
                        self.pump_error(index, &batch, r.row, r.message, now_ms);
                    }
                }
                continue;
            }
            if let Some((target, produced)) = self.run_pump(index, &batch, now_ms) {
                self.route(&target, produced, now_ms, out);
            }
        }
    }

    fn pump_error(
        &mut self,
        index: usize,
        batch: &RecordBatch,
        row: usize,
        message: String,
        now_ms: i64,
    ) {
        let shape = &self.shapes[&self.pumps[index].plan.source];
        let object: serde_json::Map<String, serde_json::Value> = shape
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, kind))| {
                let value = value_at(batch.column(i).as_ref(), *kind, row);
                (name.clone(), data_row_value(value))
            })
            .collect();
        let rowtime = rowtimes(batch).value(row);
        let data = serde_json::to_vec(&object).unwrap_or_default();
        self.sql_error(index, message, &data, rowtime, now_ms);
    }

    /// Runs pump `index` over `batch`; returns the batch for its target stream.
    fn run_pump(
        &mut self,
        index: usize,
        batch: &RecordBatch,
        now_ms: i64,
    ) -> Option<(String, RecordBatch)> {
        let batch = self.filter(index, batch, now_ms)?;
        if batch.num_rows() == 0 {
            return None;
        }
        let target = self.pumps[index].plan.target.clone();
        if self.pumps[index].reference.is_some() {
            return self.run_reference_join(index, &batch, now_ms);
        }
        let pump = &mut self.pumps[index];
        let stateful = match (&mut pump.sliding, &mut pump.items) {
            (None, None) if pump.row_function.is_some() => {
                let mut rows = Vec::new();
                let refused = pump
                    .row_function
                    .as_mut()
                    .map(|r| r.add(&batch, &mut rows))
                    .unwrap_or_default();
                Some((rows, refused))
            }
            (Some(sliding), _) => {
                let mut rows = Vec::new();
                let refused = sliding.add(&batch, &mut rows);
                Some((rows, refused))
            }
            (None, Some(items)) => {
                let mut rows = Vec::new();
                let refused = items.add(&batch, &mut rows);
                Some((rows, refused))
            }
            (None, None) => None,
        };
        if let Some((rows, refused)) = stateful {
            for r in refused {
                self.pump_error(index, &batch, r.row, r.message, now_ms);
            }
            if rows.is_empty() {
                return None;
            }
            return Some((target, self.window_rows_to_batch(index, rows)));
        }
        if self.pumps[index].window.is_some() {
            let mut rows = Vec::new();
            let refused = self.pumps[index]
                .window
                .as_mut()
                .map(|w| w.add(&batch, &mut rows))
                .unwrap_or_default();
            for r in refused {
                self.pump_error(index, &batch, r.row, r.message, now_ms);
            }
            if rows.is_empty() {
                return None;
            }
            return Some((target, self.window_rows_to_batch(index, rows)));
        }
        match self.project(index, &batch) {
            Ok(b) => Some((target, b)),
            Err(_) => {
                // One row failed (division by zero, overflow, a bad conversion): run the rows
                // one by one so only the failing ones go to error_stream.
                let mut pieces = Vec::new();
                for row in 0..batch.num_rows() {
                    match self.project(index, &batch.slice(row, 1)) {
                        Ok(b) => pieces.push(b),
                        Err(e) => self.pump_error(index, &batch, row, e.to_string(), now_ms),
                    }
                }
                let schema = self.shapes[&target].schema();
                let joined = arrow_select::concat::concat_batches(&schema, &pieces).ok()?;
                Some((target, joined))
            }
        }
    }

    /// Joins `batch` with pump `index`'s reference table; a batch whose evaluation fails is run
    /// row by row so only the failing rows go to `error_stream`.
    fn run_reference_join(
        &mut self,
        index: usize,
        batch: &RecordBatch,
        now_ms: i64,
    ) -> Option<(String, RecordBatch)> {
        let target = self.pumps[index].plan.target.clone();
        let shape = &self.shapes[&target];
        let pump = &self.pumps[index];
        let join = pump.reference.as_ref()?;
        let columns = &pump.plan.target_columns;
        match join.join(batch, shape, columns) {
            Ok(b) => Some((target, b)),
            Err(_) => {
                let mut pieces = Vec::new();
                let mut failed = Vec::new();
                for row in 0..batch.num_rows() {
                    match join.join(&batch.slice(row, 1), shape, columns) {
                        Ok(b) => pieces.push(b),
                        Err(e) => failed.push((row, e.to_string())),
                    }
                }
                let joined = arrow_select::concat::concat_batches(&shape.schema(), &pieces).ok();
                for (row, message) in failed {
                    self.pump_error(index, batch, row, message, now_ms);
                }
                Some((target, joined?))
            }
        }
    }

    fn filter(&mut self, index: usize, batch: &RecordBatch, now_ms: i64) -> Option<RecordBatch> {
        let Some(predicate) = self.pumps[index].plan.filter.clone() else {
            return Some(batch.clone());
        };
        match predicate.evaluate(batch) {
            Ok(mask) => {
                let mask = mask.as_any().downcast_ref::<BooleanArray>()?.clone();
                arrow_select::filter::filter_record_batch(batch, &mask).ok()
            }
            Err(_) => {
                let mut keep = Vec::with_capacity(batch.num_rows());
                for row in 0..batch.num_rows() {
                    match predicate.evaluate(&batch.slice(row, 1)) {
                        Ok(m) => keep.push(
                            m.as_any()
                                .downcast_ref::<BooleanArray>()
                                .is_some_and(|b| b.is_valid(0) && b.value(0)),
                        ),
                        Err(e) => {
                            self.pump_error(index, batch, row, e.to_string(), now_ms);
                            keep.push(false);
                        }
                    }
                }
                arrow_select::filter::filter_record_batch(batch, &BooleanArray::from(keep)).ok()
            }
        }
    }

    fn project(
        &self,
        index: usize,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let plan = &self.pumps[index].plan;
        let PlanBody::Project(exprs) = &plan.body else {
            unreachable!("project runs only stateless pumps");
        };
        project(
            exprs,
            batch,
            &self.shapes[&plan.target],
            &plan.target_columns,
        )
    }

    /// Evaluates a window's HAVING and select items over its synthetic rows (see
    /// [`crate::plan::PostAggregate`]); rows whose evaluation fails go to `error_stream`.
    fn post_aggregate(&mut self, index: usize, rows: Vec<OutputRow>) -> Vec<OutputRow> {
        let PlanBody::Tumbling(TumblingPlan {
            post: Some(post), ..
        }) = &self.pumps[index].plan.body
        else {
            return rows;
        };
        let post = post.clone();
        let evaluate = |batch: &RecordBatch| -> Result<Vec<OutputRow>, arrow_schema::ArrowError> {
            let batch = match &post.having {
                Some(having) => arrow_select::filter::filter_record_batch(
                    batch,
                    &having.evaluate_condition(batch, "HAVING")?,
                )?,
                None => batch.clone(),
            };
            let arrays = post
                .items
                .iter()
                .map(|e| Ok((e.evaluate(&batch)?, e.kind())))
                .collect::<Result<Vec<_>, arrow_schema::ArrowError>>()?;
            let times = rowtimes(&batch);
            Ok((0..batch.num_rows())
                .map(|row| {
                    let values = arrays
                        .iter()
                        .map(|(a, k)| value_at(a.as_ref(), *k, row))
                        .collect();
                    (values, times.value(row))
                })
                .collect())
        };
        let batch = batch_from_rows(&post.shape, &rows);
        if let Ok(out) = evaluate(&batch) {
            return out;
        }
        let mut out = Vec::new();
        for (row, (_, rowtime)) in rows.iter().enumerate() {
            match evaluate(&batch.slice(row, 1)) {
                Ok(mut one) => out.append(&mut one),
                Err(e) => {
                    let rowtime = *rowtime;
                    let name = self.pumps[index].plan.name.clone();
                    self.error_rows.push((
                        vec![
                            Value::Time(rowtime),
                            Value::Text("ERROR".into()),
                            Value::Text("SQL_error".into()),
                            Value::Text(e.to_string()),
                            Value::Time(rowtime),
                            Value::Null,
                            Value::Text(name),
                        ],
                        rowtime,
                    ));
                }
            }
        }
        out
    }

    fn window_rows_to_batch(&mut self, index: usize, rows: Vec<OutputRow>) -> RecordBatch {
        let rows = self.post_aggregate(index, rows);
        let plan = &self.pumps[index].plan;
        let shape = &self.shapes[&plan.target];
        let rows: Vec<(Vec<Value>, i64)> = rows
            .into_iter()
            .map(|(values, time)| {
                let mut full = vec![Value::Null; shape.columns.len()];
                for (value, &column) in values.into_iter().zip(&plan.target_columns) {
                    full[column] = convert(value, shape.columns[column].1).unwrap_or(Value::Null);
                }
                (full, time)
            })
            .collect();
        batch_from_rows(shape, &rows)
    }
}

/// The kind of a column as [`crate::batch::ColumnBuilder`] builds it.
fn kind_of(array: &ArrayRef) -> Kind {
    match array.data_type() {
        arrow_schema::DataType::Float64 => Kind::Float,
        arrow_schema::DataType::Utf8 => Kind::Text,
        arrow_schema::DataType::Boolean => Kind::Bool,
        _ => Kind::Int,
    }
}

/// Marks the pumps that keep their state in snapshots (see the module doc): stagger pumps, and
/// window and items pumps that read a stream reached from a stagger pump's output.
fn mark_snapshotted(pumps: &mut [Pump]) {
    let mut reached: HashSet<String> = pumps
        .iter()
        .filter(|p| p.window.as_ref().is_some_and(TumblingState::is_stagger))
        .map(|p| p.plan.target.clone())
        .collect();
    // The graph is acyclic, so this ends after at most one round per pump.
    loop {
        let before = reached.len();
        for pump in pumps.iter() {
            let right = match &pump.plan.body {
                PlanBody::Join(j) => Some(j.right_source.as_str()),
                _ => None,
            };
            if reached.contains(&pump.plan.source) || right.is_some_and(|r| reached.contains(r)) {
                reached.insert(pump.plan.target.clone());
            }
        }
        if reached.len() == before {
            break;
        }
    }
    for pump in pumps.iter_mut() {
        let stagger = pump.window.as_ref().is_some_and(TumblingState::is_stagger);
        let stateful = pump.window.is_some() || pump.items.is_some();
        pump.snapshotted = stagger || (stateful && reached.contains(&pump.plan.source));
    }
}

/// Rejects a program whose pumps feed back into a stream they read.
fn check_acyclic(pumps: &[Pump], program: &Program) -> Result<(), CodeError> {
    fn reaches(pumps: &[Pump], from: &str, to: &str, depth: usize) -> bool {
        if depth > pumps.len() {
            return true;
        }
        pumps
            .iter()
            .filter(|p| p.plan.source == from)
            .any(|p| p.plan.target == to || reaches(pumps, &p.plan.target, to, depth + 1))
    }
    for (pump, def) in pumps.iter().zip(&program.pumps) {
        if pump.plan.source == pump.plan.target
            || reaches(pumps, &pump.plan.target, &pump.plan.source, 0)
        {
            return Err(CodeError::at(
                def.position,
                format!("pump \"{}\" makes a cycle of streams", pump.plan.name),
            ));
        }
    }
    Ok(())
}
