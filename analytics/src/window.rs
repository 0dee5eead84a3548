//! Tumbling-window aggregation with bounded state.
//!
//! Windows are `[start, start + width)` buckets of a non-decreasing ROWTIME. A window is emitted
//! (one row per group, groups in first-seen order) once a row at or past its end arrives, or
//! when the runner declares that time has passed it ([`TumblingState::close_before`]). State is
//! the open windows' groups and accumulators only, at most [`GROUPS_MAX`] groups: rows that
//! would open more are refused and reported, never silently merged or dropped.
//!
//! **Event-time windows** (`WINDOWED BY EVENT TIME`, [`EventTimePlan`]) bucket an event-time
//! column instead, which may arrive out of order. Row by row, in arrival order:
//! - the watermark is the greatest event time seen so far minus the watermark delay (none before
//!   the first row with an event time);
//! - a row whose window `[s, e)` has closed (`e + allowed lateness <= watermark`) is refused as
//!   too late (it goes to `error_stream`), as is a row whose event time is NULL;
//! - otherwise it is added to its window; then the watermark moves, and every window with
//!   `e + allowed lateness <= watermark` is emitted, oldest first, with ROWTIME = `e`.
//!
//! Only event times move the watermark: an idle input leaves windows open (wall-clock time never
//! closes them) until newer rows arrive. The decisions depend on the rows' order alone, never on
//! batch boundaries or the clock, so a replay in the same order decides the same.
//!
//! Restart: the open windows are rebuilt by replaying the input from the first row of the oldest
//! one ([`TumblingState::oldest_open_ms`]); the watermark and the ROWTIME last processed travel
//! in an [`EventTimeCheckpoint`]. With the restored watermark every replayed row of a window
//! still open is taken again, and every replayed row of a closed window is found too late; as it
//! was already counted (or reported) before the restart, a too-late row at or before the
//! checkpoint's ROWTIME is skipped without an error row.
//!
//! **Snapshots** ([`WindowSnapshot`]): a stagger window cannot be rebuilt by a replay (where a
//! key's window opened depends on every earlier row of that key), so stagger pumps, and the
//! window pumps they feed, put their whole state in the application's window snapshot instead
//! ([`crate::snapshot`]): every open window with its groups' keys and accumulators, each stagger
//! window's opening ROWTIME and opening order, and the counters that decide the next ones.
//! [`TumblingState::restore`] rebuilds exactly that state, hash indexes included.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow_array::{ArrayRef, RecordBatch};
use serde::{Deserialize, Serialize};

use crate::batch::{append_group_key, append_group_key_of, rowtimes, value_at};
use crate::plan::{AggFn, AggOutput, EventTimePlan, TumblingPlan};
use crate::types::Kind;
use crate::value::Value;

/// The most groups the open windows of one pump may hold.
pub const GROUPS_MAX: usize = 1_000_000;

/// A group key value that can be hashed (floats by their bits).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyPart {
    Null,
    Int(i64),
    Float(u64),
    Text(String),
    Bool(bool),
}

pub(crate) fn key_part(v: &Value) -> KeyPart {
    match v {
        Value::Null => KeyPart::Null,
        Value::Int(i) | Value::Time(i) => KeyPart::Int(*i),
        Value::Float(f) => KeyPart::Float(f.to_bits()),
        Value::Text(s) => KeyPart::Text(s.clone()),
        Value::Bool(b) => KeyPart::Bool(*b),
    }
}

/// An aggregate's running value. Serialized inside window snapshots: no variant is renamed,
/// removed or retyped without a snapshot format version bump ([`crate::snapshot`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Acc {
    Count(i64),
    SumInt(Option<i64>),
    SumFloat(Option<f64>),
    Avg { sum: f64, n: i64 },
    Min(Option<Value>),
    Max(Option<Value>),
}

fn less(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) | (Value::Time(x), Value::Time(y)) => x < y,
        (Value::Float(x), Value::Float(y)) => x < y,
        (Value::Text(x), Value::Text(y)) => x < y,
        (Value::Bool(x), Value::Bool(y)) => !x & y,
        _ => false,
    }
}

impl Acc {
    pub(crate) fn new(func: AggFn, kind: Option<Kind>) -> Acc {
        match func {
            AggFn::Count => Acc::Count(0),
            AggFn::Sum if kind == Some(Kind::Int) => Acc::SumInt(None),
            AggFn::Sum => Acc::SumFloat(None),
            AggFn::Avg => Acc::Avg { sum: 0.0, n: 0 },
            AggFn::Min => Acc::Min(None),
            AggFn::Max => Acc::Max(None),
        }
    }

    /// Adds one row's argument (`None` for COUNT(*)). NULLs are ignored, as in SQL.
    pub(crate) fn add(&mut self, v: Option<&Value>) -> Result<(), String> {
        match (self, v) {
            (Acc::Count(n), None) => *n += 1,
            (_, Some(Value::Null)) => {}
            (Acc::Count(n), Some(_)) => *n += 1,
            (Acc::SumInt(s), Some(Value::Int(i))) => {
                *s = Some(
                    s.unwrap_or(0)
                        .checked_add(*i)
                        .ok_or("SUM overflowed BIGINT")?,
                )
            }
            (Acc::SumFloat(s), Some(v)) => *s = Some(s.unwrap_or(0.0) + as_f64(v)),
            (Acc::Avg { sum, n }, Some(v)) => {
                *sum += as_f64(v);
                *n += 1;
            }
            (Acc::Min(m), Some(v)) if m.as_ref().is_none_or(|cur| less(v, cur)) => {
                *m = Some(v.clone());
            }
            (Acc::Max(m), Some(v)) if m.as_ref().is_none_or(|cur| less(cur, v)) => {
                *m = Some(v.clone());
            }
            _ => {}
        }
        Ok(())
    }

    /// The variant's name, which a snapshot's window shape records.
    fn name(&self) -> &'static str {
        match self {
            Acc::Count(_) => "COUNT",
            Acc::SumInt(_) => "SUM(BIGINT)",
            Acc::SumFloat(_) => "SUM(DOUBLE)",
            Acc::Avg { .. } => "AVG",
            Acc::Min(_) => "MIN",
            Acc::Max(_) => "MAX",
        }
    }

    pub(crate) fn result(&self) -> Value {
        match self {
            Acc::Count(n) => Value::Int(*n),
            Acc::SumInt(s) => s.map_or(Value::Null, Value::Int),
            Acc::SumFloat(s) => s.map_or(Value::Null, Value::Float),
            Acc::Avg { sum, n } => {
                if *n == 0 {
                    Value::Null
                } else {
                    Value::Float(sum / *n as f64)
                }
            }
            Acc::Min(m) | Acc::Max(m) => m.clone().unwrap_or(Value::Null),
        }
    }
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) | Value::Time(i) => *i as f64,
        Value::Float(f) => *f,
        _ => f64::NAN,
    }
}

/// The groups of one open window, in first-seen order.
#[derive(Debug, Default)]
struct Window {
    /// Each group's key as [`append_group_key`] writes it, to its slot.
    index: HashMap<Vec<u8>, usize>,
    /// The key of the row being added, kept to spare an allocation per row.
    key_bytes: Vec<u8>,
    keys: Vec<Vec<Value>>,
    accs: Vec<Vec<Acc>>,
    /// The ROWTIME of the window's first row (event-time windows: where a replay must start).
    first_rowtime_ms: i64,
}

/// What an event-time window pump carries over a restart besides its open windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTimeCheckpoint {
    /// The greatest event time seen (the watermark plus its delay), if any row had one.
    pub max_event_ms: Option<i64>,
    /// The ROWTIME of the last row processed: replayed rows are those at or before it.
    pub last_rowtime_ms: i64,
}

/// One emitted row: the select items' values, and the row time (the window's end).
pub type OutputRow = (Vec<Value>, i64);

/// A row the window could not take.
#[derive(Clone, Debug, PartialEq)]
pub struct RefusedRow {
    pub row: usize,
    pub message: String,
}

impl RefusedRow {
    /// Every row of a batch of `rows` rows, refused for one reason: an expression over the
    /// whole batch failed.
    pub fn every(rows: usize, message: &str) -> Vec<RefusedRow> {
        (0..rows)
            .map(|row| RefusedRow {
                row,
                message: message.to_owned(),
            })
            .collect()
    }
}

/// One group of a window in a snapshot: its key values and its accumulators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    key: Vec<Value>,
    accs: Vec<Acc>,
}

/// An open ROWTIME or event-time window in a snapshot, groups in first-seen order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenWindowSnapshot {
    start_ms: i64,
    first_rowtime_ms: i64,
    groups: Vec<GroupSnapshot>,
}

/// An open stagger window in a snapshot: it closes at `opened_ms` + the range, after the
/// windows closing at the same time with a smaller `seq` (opening order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaggerWindowSnapshot {
    opened_ms: i64,
    seq: u64,
    group: GroupSnapshot,
}

/// A window pump's whole state (see the module doc): restoring it into a pump of the same plan
/// gives a pump that computes what the snapshotted one would have, row for row.
///
/// Serialized in window snapshot files ([`crate::snapshot`]): no field is renamed, removed or
/// retyped without a format version bump and a compatibility fixture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowSnapshot {
    /// The plan's shape ([`TumblingState::shape`]): a restore into a pump whose window changed
    /// (another range, other keys or aggregates) is refused.
    shape: String,
    /// Open ROWTIME and event-time windows, oldest first.
    windows: Vec<OpenWindowSnapshot>,
    /// Open stagger windows, in opening order.
    stagger: Vec<StaggerWindowSnapshot>,
    stagger_seq: u64,
    max_event_ms: Option<i64>,
    last_rowtime_ms: Option<i64>,
    replayed_through_ms: Option<i64>,
    skip_before_ms: Option<i64>,
}

/// Why a snapshot cannot be restored into a pump. The pump is then left empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreWindowError {
    #[error("the pump's window changed: the snapshot holds a {stored}, the program a {planned}")]
    PlanChanged { stored: String, planned: String },
    #[error("the snapshot holds {groups} groups, over the {limit} one pump may hold")]
    GroupsOverMax { groups: usize, limit: usize },
    #[error("the snapshot holds the window or group {what} twice")]
    Duplicate { what: String },
    #[error("a stagger window's opening order {seq} is past the pump's counter {counter}")]
    SeqAhead { seq: u64, counter: u64 },
}

/// One key's open stagger window.
#[derive(Debug)]
struct StaggerGroup {
    opened_ms: i64,
    key: Vec<Value>,
    accs: Vec<Acc>,
    seq: u64,
}

/// The state of one tumbling-window (or stagger-window) pump.
#[derive(Debug)]
pub struct TumblingState {
    plan: TumblingPlan,
    open: BTreeMap<i64, Window>,
    groups: usize,
    /// Stagger windows by key, and their keys by (end, opening order) for closing in order.
    stagger_open: HashMap<Vec<KeyPart>, StaggerGroup>,
    stagger_closing: BTreeMap<(i64, u64), Vec<KeyPart>>,
    stagger_seq: u64,
    /// Event-time windows: the greatest event time seen, the last ROWTIME processed, and after a
    /// restart the checkpoint's last ROWTIME (rows at or before it are replayed).
    max_event_ms: Option<i64>,
    last_rowtime_ms: Option<i64>,
    replayed_through_ms: Option<i64>,
    /// ROWTIME windows after a restart: rows before this ROWTIME are replayed rows of windows
    /// already emitted (see [`TumblingState::replay_floor_ms`]), skipped.
    skip_before_ms: Option<i64>,
}

impl TumblingState {
    pub fn new(plan: TumblingPlan) -> Self {
        assert!(plan.width_ms > 0);
        TumblingState {
            plan,
            open: BTreeMap::new(),
            groups: 0,
            stagger_open: HashMap::new(),
            stagger_closing: BTreeMap::new(),
            stagger_seq: 0,
            max_event_ms: None,
            last_rowtime_ms: None,
            replayed_through_ms: None,
            skip_before_ms: None,
        }
    }

    /// Whether this is a stagger window (`WINDOWED BY STAGGER`).
    pub fn is_stagger(&self) -> bool {
        self.plan.stagger
    }

    /// What a snapshot must match to be restored here: the kind of window, its width, and the
    /// number of keys and the aggregates of each group.
    fn shape(&self) -> String {
        let kind = if self.plan.stagger {
            "stagger window"
        } else if self.plan.event_time.is_some() {
            "event-time window"
        } else {
            "ROWTIME window"
        };
        let accs: Vec<&str> = self.new_accs().iter().map(Acc::name).collect();
        format!(
            "{kind} of {} ms by {} keys with [{}]",
            self.plan.width_ms,
            self.plan.keys.len(),
            accs.join(", ")
        )
    }

    /// The pump's whole state (see [`WindowSnapshot`]).
    pub fn snapshot(&self) -> WindowSnapshot {
        let group = |key: &[Value], accs: &[Acc]| GroupSnapshot {
            key: key.to_vec(),
            accs: accs.to_vec(),
        };
        let windows = self
            .open
            .iter()
            .map(|(start, w)| OpenWindowSnapshot {
                start_ms: *start,
                first_rowtime_ms: w.first_rowtime_ms,
                groups: w
                    .keys
                    .iter()
                    .zip(&w.accs)
                    .map(|(key, accs)| group(key, accs))
                    .collect(),
            })
            .collect();
        let mut stagger: Vec<StaggerWindowSnapshot> = self
            .stagger_open
            .values()
            .map(|g| StaggerWindowSnapshot {
                opened_ms: g.opened_ms,
                seq: g.seq,
                group: group(&g.key, &g.accs),
            })
            .collect();
        stagger.sort_by_key(|w| w.seq);
        WindowSnapshot {
            shape: self.shape(),
            windows,
            stagger,
            stagger_seq: self.stagger_seq,
            max_event_ms: self.max_event_ms,
            last_rowtime_ms: self.last_rowtime_ms,
            replayed_through_ms: self.replayed_through_ms,
            skip_before_ms: self.skip_before_ms,
        }
    }

    /// Restores `snapshot` into this pump, which has seen no row. On an error the pump is left
    /// as it was (empty).
    pub fn restore(&mut self, snapshot: WindowSnapshot) -> Result<(), RestoreWindowError> {
        assert!(
            self.open.is_empty(),
            "a snapshot is restored before any row"
        );
        assert!(
            self.stagger_open.is_empty(),
            "a snapshot is restored before any row"
        );
        let planned = self.shape();
        let fresh = self.new_accs();
        let fits = |g: &GroupSnapshot| {
            g.key.len() == self.plan.keys.len()
                && g.accs.len() == fresh.len()
                && g.accs
                    .iter()
                    .zip(&fresh)
                    .all(|(a, b)| std::mem::discriminant(a) == std::mem::discriminant(b))
        };
        let all_fit = snapshot.windows.iter().flat_map(|w| &w.groups).all(fits)
            && snapshot.stagger.iter().map(|w| &w.group).all(fits);
        if snapshot.shape != planned || !all_fit {
            return Err(RestoreWindowError::PlanChanged {
                stored: snapshot.shape,
                planned,
            });
        }
        let groups: usize = snapshot.windows.iter().map(|w| w.groups.len()).sum();
        for count in [groups, snapshot.stagger.len()] {
            if count > GROUPS_MAX {
                return Err(RestoreWindowError::GroupsOverMax {
                    groups: count,
                    limit: GROUPS_MAX,
                });
            }
        }
        let mut open = BTreeMap::new();
        for w in snapshot.windows {
            let mut window = Window {
                first_rowtime_ms: w.first_rowtime_ms,
                ..Window::default()
            };
            for g in w.groups {
                let mut key_bytes = Vec::new();
                for value in &g.key {
                    append_group_key_of(value, &mut key_bytes);
                }
                if window.index.insert(key_bytes, window.keys.len()).is_some() {
                    return Err(RestoreWindowError::Duplicate {
                        what: format!("{:?} of window {}", g.key, w.start_ms),
                    });
                }
                window.keys.push(g.key);
                window.accs.push(g.accs);
            }
            if open.insert(w.start_ms, window).is_some() {
                return Err(RestoreWindowError::Duplicate {
                    what: format!("window {}", w.start_ms),
                });
            }
        }
        let mut stagger_open = HashMap::with_capacity(snapshot.stagger.len());
        let mut stagger_closing = BTreeMap::new();
        let mut seqs = HashSet::with_capacity(snapshot.stagger.len());
        for w in snapshot.stagger {
            if w.seq > snapshot.stagger_seq {
                return Err(RestoreWindowError::SeqAhead {
                    seq: w.seq,
                    counter: snapshot.stagger_seq,
                });
            }
            let hashed: Vec<KeyPart> = w.group.key.iter().map(key_part).collect();
            if !seqs.insert(w.seq) || stagger_open.contains_key(&hashed) {
                return Err(RestoreWindowError::Duplicate {
                    what: format!("{:?} opened at {}", w.group.key, w.opened_ms),
                });
            }
            stagger_closing.insert((w.opened_ms + self.plan.width_ms, w.seq), hashed.clone());
            stagger_open.insert(
                hashed,
                StaggerGroup {
                    opened_ms: w.opened_ms,
                    key: w.group.key,
                    accs: w.group.accs,
                    seq: w.seq,
                },
            );
        }
        self.open = open;
        self.groups = groups;
        self.stagger_open = stagger_open;
        self.stagger_closing = stagger_closing;
        self.stagger_seq = snapshot.stagger_seq;
        self.max_event_ms = snapshot.max_event_ms;
        self.last_rowtime_ms = snapshot.last_rowtime_ms;
        self.replayed_through_ms = snapshot.replayed_through_ms;
        self.skip_before_ms = snapshot.skip_before_ms;
        Ok(())
    }

    /// Whether the window is over an event-time column (`WINDOWED BY EVENT TIME`).
    pub fn is_event_time(&self) -> bool {
        self.plan.event_time.is_some()
    }

    /// The watermark of an event-time window: the greatest event time seen minus the delay.
    pub fn watermark_ms(&self) -> Option<i64> {
        let event = self.plan.event_time.as_ref()?;
        Some(self.max_event_ms?.saturating_sub(event.watermark_delay_ms))
    }

    /// The state an event-time window needs after a restart, once it has seen a row.
    pub fn event_time_checkpoint(&self) -> Option<EventTimeCheckpoint> {
        self.plan.event_time.as_ref()?;
        Some(EventTimeCheckpoint {
            max_event_ms: self.max_event_ms,
            last_rowtime_ms: self.last_rowtime_ms?,
        })
    }

    /// Restores an event-time window's checkpoint before the replay from
    /// [`TumblingState::oldest_open_ms`] (see the module doc).
    pub fn restore_event_time(&mut self, checkpoint: EventTimeCheckpoint) {
        assert!(self.plan.event_time.is_some());
        assert!(
            self.open.is_empty(),
            "a checkpoint is restored before any row"
        );
        self.max_event_ms = checkpoint.max_event_ms;
        self.last_rowtime_ms = Some(checkpoint.last_rowtime_ms);
        self.replayed_through_ms = Some(checkpoint.last_rowtime_ms);
    }

    /// Emits every open event-time window: the input has ended (`sluice sql run` over a file),
    /// as a bounded source's final watermark does.
    pub fn finish(&mut self, out: &mut Vec<OutputRow>) {
        if self.plan.event_time.is_some() {
            self.close_before(i64::MAX, out);
        }
    }

    pub fn width_ms(&self) -> i64 {
        self.plan.width_ms
    }

    /// The start of the oldest open window, if any. For event-time windows it is the ROWTIME a
    /// replay must start from: the first row of any open window, down to its whole second (the
    /// runner keeps one replay position per second of ROWTIME).
    pub fn oldest_open_ms(&self) -> Option<i64> {
        if self.plan.event_time.is_some() {
            return self
                .open
                .values()
                .map(|w| w.first_rowtime_ms.div_euclid(1000) * 1000)
                .min();
        }
        // The runner replays from the first row of a second of ROWTIME; rows of that second
        // before the window are skipped by the replay floor.
        self.replay_floor_ms().map(|ms| ms.div_euclid(1000) * 1000)
    }

    /// A ROWTIME window's exact replay floor: the start of its oldest open window. Every row
    /// before it belongs to a window already emitted, so after a restart that replays from
    /// [`TumblingState::oldest_open_ms`] (its whole second) those rows are skipped instead of
    /// opening partial windows again. `None` for event-time windows (their watermark checkpoint
    /// does this), for stagger windows (a replay cannot rebuild them: they are restored from
    /// a snapshot, see the module doc) and with no window open.
    pub fn replay_floor_ms(&self) -> Option<i64> {
        if self.plan.event_time.is_some() || self.plan.stagger {
            return None;
        }
        self.open.keys().next().copied()
    }

    /// Restores a ROWTIME window's replay floor before the replay (see
    /// [`TumblingState::replay_floor_ms`]).
    pub fn restore_replay_floor(&mut self, floor_ms: i64) {
        assert!(self.plan.event_time.is_none());
        self.skip_before_ms = Some(floor_ms);
    }

    fn replayed(&self, time: i64) -> bool {
        self.skip_before_ms.is_some_and(|floor| time < floor)
    }

    fn new_accs(&self) -> Vec<Acc> {
        self.plan
            .outputs
            .iter()
            .filter_map(|o| match o {
                AggOutput::Aggregate { func, arg } => {
                    Some(Acc::new(*func, arg.as_ref().map(|a| a.kind())))
                }
                _ => None,
            })
            .collect()
    }

    fn output_values(&self, key: &[Value], accs: &[Acc], start: i64) -> Vec<Value> {
        let mut acc_index = 0;
        self.plan
            .outputs
            .iter()
            .map(|o| match o {
                AggOutput::Key(i) => key[*i].clone(),
                AggOutput::WindowStart => Value::Time(start),
                AggOutput::Aggregate { .. } => {
                    acc_index += 1;
                    accs[acc_index - 1].result()
                }
            })
            .collect()
    }

    /// Stagger windows: each key's window opens at its first row and closes `width_ms` later.
    fn add_stagger(
        &mut self,
        times: &arrow_array::Int64Array,
        key_arrays: &[(ArrayRef, Kind)],
        arg_arrays: &[Option<(ArrayRef, Kind)>],
        out: &mut Vec<OutputRow>,
    ) -> Vec<RefusedRow> {
        let mut refused = Vec::new();
        for row in 0..times.len() {
            let time = times.value(row);
            if self.replayed(time) {
                continue;
            }
            self.close_ended_by(time, out);
            let key: Vec<Value> = key_arrays
                .iter()
                .map(|(a, k)| value_at(a.as_ref(), *k, row))
                .collect();
            let hashed: Vec<KeyPart> = key.iter().map(key_part).collect();
            if !self.stagger_open.contains_key(&hashed) {
                if self.stagger_open.len() >= GROUPS_MAX {
                    refused.push(RefusedRow {
                        row,
                        message: format!("window state is full ({GROUPS_MAX} groups)"),
                    });
                    continue;
                }
                self.stagger_seq += 1;
                let group = StaggerGroup {
                    opened_ms: time,
                    key,
                    accs: self.new_accs(),
                    seq: self.stagger_seq,
                };
                self.stagger_closing
                    .insert((time + self.plan.width_ms, group.seq), hashed.clone());
                self.stagger_open.insert(hashed.clone(), group);
            }
            let Some(group) = self.stagger_open.get_mut(&hashed) else {
                continue;
            };
            let mut acc_index = 0;
            for (output, arg) in self.plan.outputs.iter().zip(arg_arrays) {
                if let AggOutput::Aggregate { .. } = output {
                    let value = arg.as_ref().map(|(a, k)| value_at(a.as_ref(), *k, row));
                    if let Err(message) = group.accs[acc_index].add(value.as_ref()) {
                        refused.push(RefusedRow { row, message });
                    }
                    acc_index += 1;
                }
            }
        }
        refused
    }

    /// Adds the rows of `batch` (already filtered), emitting windows that they close into
    /// `out`; rows that could not be added are returned.
    pub fn add(&mut self, batch: &RecordBatch, out: &mut Vec<OutputRow>) -> Vec<RefusedRow> {
        let mut refused = Vec::new();
        let rows = batch.num_rows();
        if rows == 0 {
            return refused;
        }
        let times = rowtimes(batch);
        let mut key_arrays: Vec<(ArrayRef, Kind)> = Vec::with_capacity(self.plan.keys.len());
        for key in &self.plan.keys {
            match key.evaluate(batch) {
                Ok(a) => key_arrays.push((a, key.kind())),
                Err(e) => {
                    return RefusedRow::every(rows, &e.to_string());
                }
            }
        }
        let mut arg_arrays: Vec<Option<(ArrayRef, Kind)>> = Vec::new();
        for output in &self.plan.outputs {
            if let AggOutput::Aggregate { arg: Some(arg), .. } = output {
                match arg.evaluate(batch) {
                    Ok(a) => arg_arrays.push(Some((a, arg.kind()))),
                    Err(e) => {
                        return RefusedRow::every(rows, &e.to_string());
                    }
                }
            } else {
                arg_arrays.push(None);
            }
        }
        if self.plan.stagger {
            let mut more = self.add_stagger(times, &key_arrays, &arg_arrays, out);
            refused.append(&mut more);
            return refused;
        }
        if let Some(event) = self.plan.event_time.clone() {
            let events = batch.column(event.column).clone();
            let mut more = self.add_event_time(
                &event,
                events.as_ref(),
                times,
                &key_arrays,
                &arg_arrays,
                out,
            );
            refused.append(&mut more);
            return refused;
        }
        let width = self.plan.width_ms;
        for row in 0..rows {
            let time = times.value(row);
            if self.replayed(time) {
                continue;
            }
            let start = time.div_euclid(width) * width;
            self.close_before(start, out);
            self.add_row(start, time, row, &key_arrays, &arg_arrays, &mut refused);
        }
        refused
    }

    /// Event-time windows (see the module doc), row by row.
    fn add_event_time(
        &mut self,
        event: &EventTimePlan,
        events: &dyn arrow_array::Array,
        times: &arrow_array::Int64Array,
        key_arrays: &[(ArrayRef, Kind)],
        arg_arrays: &[Option<(ArrayRef, Kind)>],
        out: &mut Vec<OutputRow>,
    ) -> Vec<RefusedRow> {
        let mut refused = Vec::new();
        let width = self.plan.width_ms;
        let lateness = event.allowed_lateness_ms;
        let mut late: u64 = 0;
        for row in 0..times.len() {
            let rowtime = times.value(row);
            let replayed = self.replayed_through_ms.is_some_and(|r| rowtime <= r);
            self.last_rowtime_ms = Some(self.last_rowtime_ms.map_or(rowtime, |t| t.max(rowtime)));
            let Value::Time(event_ms) = value_at(events, Kind::Time, row) else {
                if !replayed {
                    refused.push(RefusedRow {
                        row,
                        message: format!(
                            "the event-time column \"{}\" is NULL: the row has no window",
                            event.column_name
                        ),
                    });
                }
                continue;
            };
            let start = event_ms.div_euclid(width) * width;
            let closes_at = start.saturating_add(width).saturating_add(lateness);
            if let Some(watermark) = self.watermark_ms()
                && closes_at <= watermark
            {
                if !replayed {
                    late += 1;
                    refused.push(RefusedRow {
                        row,
                        message: format!(
                            "late row: event time {} (\"{}\") is in window [{}, {}), closed when the watermark reached {} (window end + allowed lateness {} ms); the watermark is {}",
                            crate::value::format_timestamp(event_ms),
                            event.column_name,
                            crate::value::format_timestamp(start),
                            crate::value::format_timestamp(start.saturating_add(width)),
                            crate::value::format_timestamp(closes_at),
                            lateness,
                            crate::value::format_timestamp(watermark),
                        ),
                    });
                }
                continue;
            }
            self.add_row(start, rowtime, row, key_arrays, arg_arrays, &mut refused);
            self.max_event_ms = Some(self.max_event_ms.map_or(event_ms, |m| m.max(event_ms)));
            if let Some(watermark) = self.watermark_ms() {
                // [s, s + w) closes once s + w + lateness <= watermark.
                let bound = watermark
                    .saturating_sub(width)
                    .saturating_sub(lateness)
                    .saturating_add(1);
                self.close_before(bound, out);
            }
        }
        crate::metrics::Metric::LateRowsTotal.add(late);
        refused
    }

    /// Adds row `row` (ROWTIME `rowtime`) to its group of the window starting at `start`.
    fn add_row(
        &mut self,
        start: i64,
        rowtime: i64,
        row: usize,
        key_arrays: &[(ArrayRef, Kind)],
        arg_arrays: &[Option<(ArrayRef, Kind)>],
        refused: &mut Vec<RefusedRow>,
    ) {
        {
            let window = self.open.entry(start).or_insert_with(|| Window {
                first_rowtime_ms: rowtime,
                ..Window::default()
            });
            window.key_bytes.clear();
            for (a, k) in key_arrays {
                append_group_key(a.as_ref(), *k, row, &mut window.key_bytes);
            }
            let slot = match window.index.get(window.key_bytes.as_slice()) {
                Some(slot) => *slot,
                None => {
                    if self.groups >= GROUPS_MAX {
                        refused.push(RefusedRow {
                            row,
                            message: format!("window state is full ({GROUPS_MAX} groups)"),
                        });
                        if window.keys.is_empty() {
                            self.open.remove(&start);
                        }
                        return;
                    }
                    self.groups += 1;
                    let accs = self
                        .plan
                        .outputs
                        .iter()
                        .filter_map(|o| match o {
                            AggOutput::Aggregate { func, arg } => {
                                Some(Acc::new(*func, arg.as_ref().map(|a| a.kind())))
                            }
                            _ => None,
                        })
                        .collect();
                    let key: Vec<Value> = key_arrays
                        .iter()
                        .map(|(a, k)| value_at(a.as_ref(), *k, row))
                        .collect();
                    window
                        .index
                        .insert(window.key_bytes.clone(), window.keys.len());
                    window.keys.push(key);
                    window.accs.push(accs);
                    window.keys.len() - 1
                }
            };
            let mut acc_index = 0;
            for (output, arg) in self.plan.outputs.iter().zip(arg_arrays) {
                if let AggOutput::Aggregate { .. } = output {
                    let value = arg.as_ref().map(|(a, k)| value_at(a.as_ref(), *k, row));
                    if let Err(message) = window.accs[slot][acc_index].add(value.as_ref()) {
                        refused.push(RefusedRow { row, message });
                    }
                    acc_index += 1;
                }
            }
        }
    }

    /// Emits every open window that starts before `start_ms` (so ends at or before it when
    /// `start_ms` is a window boundary), oldest first.
    pub fn close_before(&mut self, start_ms: i64, out: &mut Vec<OutputRow>) {
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= start_ms {
                break;
            }
            let (start, window) = entry.remove_entry();
            self.groups -= window.keys.len();
            let end = start + self.plan.width_ms;
            for (key, accs) in window.keys.iter().zip(&window.accs) {
                let mut acc_index = 0;
                let values = self
                    .plan
                    .outputs
                    .iter()
                    .map(|o| match o {
                        AggOutput::Key(i) => key[*i].clone(),
                        AggOutput::WindowStart => Value::Time(start),
                        AggOutput::Aggregate { .. } => {
                            acc_index += 1;
                            accs[acc_index - 1].result()
                        }
                    })
                    .collect();
                out.push((values, end));
            }
        }
    }

    /// Emits the windows that end at or before `time_ms`. Event-time windows close by their
    /// watermark only, never by the clock: this leaves them open.
    pub fn close_ended_by(&mut self, time_ms: i64, out: &mut Vec<OutputRow>) {
        if self.plan.event_time.is_some() {
            return;
        }
        if self.plan.stagger {
            while let Some(entry) = self.stagger_closing.first_entry() {
                if entry.key().0 > time_ms {
                    break;
                }
                let ((end, _), hashed) = entry.remove_entry();
                if let Some(group) = self.stagger_open.remove(&hashed) {
                    let values = self.output_values(&group.key, &group.accs, group.opened_ms);
                    out.push((values, end));
                }
            }
            return;
        }
        // A window [s, s + w) has ended once s + w <= time, i.e. s < time - w + 1.
        self.close_before(time_ms - self.plan.width_ms + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{StreamShape, batch_from_rows};
    use crate::expr::CExpr;

    /// (sym, px) rows at given row times; a plan of COUNT(*), SUM(px), AVG(px), MIN, MAX per
    /// sym in 10-second windows.
    fn setup() -> (StreamShape, TumblingState) {
        let shape = StreamShape {
            columns: vec![("sym".into(), Kind::Text), ("px".into(), Kind::Float)],
        };
        let px = CExpr::Column {
            index: 1,
            kind: Kind::Float,
        };
        let plan = TumblingPlan {
            width_ms: 10_000,
            stagger: false,
            event_time: None,
            post: None,
            keys: vec![CExpr::Column {
                index: 0,
                kind: Kind::Text,
            }],
            outputs: vec![
                AggOutput::Key(0),
                AggOutput::WindowStart,
                AggOutput::Aggregate {
                    func: AggFn::Count,
                    arg: None,
                },
                AggOutput::Aggregate {
                    func: AggFn::Sum,
                    arg: Some(px.clone()),
                },
                AggOutput::Aggregate {
                    func: AggFn::Avg,
                    arg: Some(px.clone()),
                },
                AggOutput::Aggregate {
                    func: AggFn::Min,
                    arg: Some(px.clone()),
                },
                AggOutput::Aggregate {
                    func: AggFn::Max,
                    arg: Some(px),
                },
            ],
        };
        (shape, TumblingState::new(plan))
    }

    fn row(sym: &str, px: Option<f64>, t: i64) -> (Vec<Value>, i64) {
        (
            vec![
                Value::Text(sym.into()),
                px.map_or(Value::Null, Value::Float),
            ],
            t,
        )
    }

    #[test]
    fn a_window_is_emitted_when_a_row_passes_its_end_with_hand_computed_aggregates() {
        let (shape, mut state) = setup();
        let mut out = Vec::new();
        let batch = batch_from_rows(
            &shape,
            &[
                row("A", Some(1.0), 1_000),
                row("B", Some(10.0), 2_000),
                row("A", Some(3.0), 9_999),
                row("A", None, 9_999),
            ],
        );
        assert!(state.add(&batch, &mut out).is_empty());
        assert!(out.is_empty(), "no row has passed the window end yet");
        let batch = batch_from_rows(&shape, &[row("A", Some(100.0), 10_000)]);
        state.add(&batch, &mut out);
        // Window [0, 10 s): A has 3 rows (one NULL px), B has one.
        assert_eq!(
            out,
            vec![
                (
                    vec![
                        Value::Text("A".into()),
                        Value::Time(0),
                        Value::Int(3),
                        Value::Float(4.0),
                        Value::Float(2.0),
                        Value::Float(1.0),
                        Value::Float(3.0)
                    ],
                    10_000
                ),
                (
                    vec![
                        Value::Text("B".into()),
                        Value::Time(0),
                        Value::Int(1),
                        Value::Float(10.0),
                        Value::Float(10.0),
                        Value::Float(10.0),
                        Value::Float(10.0)
                    ],
                    10_000
                ),
            ]
        );
        assert_eq!(state.oldest_open_ms(), Some(10_000));
    }

    #[test]
    fn closing_by_time_emits_only_windows_that_have_ended_and_frees_their_state() {
        let (shape, mut state) = setup();
        let mut out = Vec::new();
        let batch = batch_from_rows(
            &shape,
            &[row("A", Some(1.0), 1_000), row("A", Some(2.0), 12_000)],
        );
        state.add(&batch, &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        state.close_ended_by(19_999, &mut out);
        assert!(out.is_empty(), "[10 s, 20 s) has not ended at 19.999 s");
        state.close_ended_by(20_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0[2], Value::Int(1));
        assert_eq!(state.oldest_open_ms(), None);
        assert_eq!(state.groups, 0);
    }
}
