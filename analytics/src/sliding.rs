//! Sliding windows (`agg OVER (PARTITION BY … RANGE INTERVAL … PRECEDING | ROWS n PRECEDING)`):
//! one output row per input row, each aggregate computed over the rows of its partition that
//! are inside the frame ending at the current row.
//!
//! State is, per window and partition, the rows still inside the frame (row time and the
//! aggregates' arguments), at most [`SLIDING_ROWS_MAX`] rows in all; rows past that are refused
//! and reported. A frame's aggregate is recomputed from its rows (O(rows in the frame) per row),
//! which keeps MIN and MAX exact without a monotonic deque.

use std::collections::{HashMap, VecDeque};

use arrow_array::{ArrayRef, RecordBatch};

use crate::batch::{rowtimes, value_at};
use crate::plan::{Frame, SlideOutput, SlidingPlan};
use crate::types::Kind;
use crate::value::Value;
use crate::window::{Acc, KeyPart, OutputRow, RefusedRow, key_part};

/// The most rows all sliding frames of one pump may hold.
pub const SLIDING_ROWS_MAX: usize = 1_000_000;

/// The rows of one partition inside a window's frame: row time and one argument per output.
type FrameRows = VecDeque<(i64, Vec<Value>)>;

#[derive(Debug)]
pub struct SlidingState {
    plan: SlidingPlan,
    partitions: Vec<HashMap<Vec<KeyPart>, FrameRows>>,
    rows: usize,
}

impl SlidingState {
    pub fn new(plan: SlidingPlan) -> Self {
        let partitions = plan.windows.iter().map(|_| HashMap::new()).collect();
        SlidingState {
            plan,
            partitions,
            rows: 0,
        }
    }

    /// Adds the rows of `batch`, giving one output row per row taken.
    pub fn add(&mut self, batch: &RecordBatch, out: &mut Vec<OutputRow>) -> Vec<RefusedRow> {
        let rows = batch.num_rows();
        let fail_all = |e: arrow_schema::ArrowError| RefusedRow::every(rows, &e.to_string());
        let times = rowtimes(batch);
        let mut partition_arrays: Vec<Vec<(ArrayRef, Kind)>> = Vec::new();
        for window in &self.plan.windows {
            let mut arrays = Vec::new();
            for key in &window.partition {
                match key.evaluate(batch) {
                    Ok(a) => arrays.push((a, key.kind())),
                    Err(e) => return fail_all(e),
                }
            }
            partition_arrays.push(arrays);
        }
        let mut output_arrays: Vec<Option<(ArrayRef, Kind)>> = Vec::new();
        for output in &self.plan.outputs {
            let expr = match output {
                SlideOutput::Expr(e) => Some(e),
                SlideOutput::Aggregate { arg, .. } => arg.as_ref(),
            };
            match expr.map(|e| e.evaluate(batch).map(|a| (a, e.kind()))) {
                None => output_arrays.push(None),
                Some(Ok(a)) => output_arrays.push(Some(a)),
                Some(Err(e)) => return fail_all(e),
            }
        }
        let mut refused = Vec::new();
        for row in 0..rows {
            if self.rows >= SLIDING_ROWS_MAX {
                refused.push(RefusedRow {
                    row,
                    message: format!("sliding window state is full ({SLIDING_ROWS_MAX} rows)"),
                });
                continue;
            }
            let time = times.value(row);
            let args: Vec<Value> = output_arrays
                .iter()
                .map(|a| {
                    a.as_ref()
                        .map_or(Value::Null, |(a, k)| value_at(a.as_ref(), *k, row))
                })
                .collect();
            // Each window's frame for this row, after adding it and evicting what fell out.
            let mut frames: Vec<Vec<KeyPart>> = Vec::with_capacity(self.plan.windows.len());
            for (w, window) in self.plan.windows.iter().enumerate() {
                let key: Vec<KeyPart> = partition_arrays[w]
                    .iter()
                    .map(|(a, k)| key_part(&value_at(a.as_ref(), *k, row)))
                    .collect();
                let frame = self.partitions[w].entry(key.clone()).or_default();
                frame.push_back((time, args.clone()));
                self.rows += 1;
                match window.frame {
                    Frame::RangeMs(ms) => {
                        while frame.front().is_some_and(|(t, _)| *t < time - ms) {
                            frame.pop_front();
                            self.rows -= 1;
                        }
                    }
                    Frame::Rows(n) => {
                        while frame.len() > n + 1 {
                            frame.pop_front();
                            self.rows -= 1;
                        }
                    }
                }
                frames.push(key);
            }
            let mut values = Vec::with_capacity(self.plan.outputs.len());
            for (i, output) in self.plan.outputs.iter().enumerate() {
                match output {
                    SlideOutput::Expr(_) => values.push(args[i].clone()),
                    SlideOutput::Aggregate { func, arg, window } => {
                        let frame = &self.partitions[*window][&frames[*window]];
                        let mut acc = Acc::new(*func, arg.as_ref().map(|a| a.kind()));
                        for (_, frame_args) in frame {
                            let v = arg.as_ref().map(|_| &frame_args[i]);
                            if let Err(message) = acc.add(v) {
                                refused.push(RefusedRow { row, message });
                            }
                        }
                        values.push(acc.result());
                    }
                }
            }
            out.push((values, time));
        }
        // Partitions whose frames emptied hold no state.
        for partitions in &mut self.partitions {
            partitions.retain(|_, frame| !frame.is_empty());
        }
        refused
    }
}
