//! Windowed stream-to-stream joins (`FROM l JOIN r OVER (RANGE … PRECEDING) ON …`).
//!
//! The joined (right) stream keeps its rows inside the frame; each left row joins the right
//! rows whose ROWTIME is within the frame ending at the left row's ROWTIME (inclusive), and a
//! LEFT JOIN keeps a left row with no match, the right side NULL. The pipeline hands a join its
//! left batches only after every pump has run on the input batch that produced them, so right
//! rows of the same input batch, and of the same ROWTIME, are already in the frame.
//!
//! State is the right rows in the frame, at most [`JOIN_ROWS_MAX`]; right rows beyond it are
//! refused and reported.

use std::collections::VecDeque;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::ArrowError;

use crate::batch::{StreamShape, batch_from_rows, rowtimes, value_at};
use crate::expr::{CExpr, project};
use crate::plan::{Frame, JoinPlan};
use crate::types::Kind;
use crate::value::Value;
use crate::window::RefusedRow;

/// The most right rows one join may hold.
pub const JOIN_ROWS_MAX: usize = 1_000_000;

#[derive(Debug)]
pub struct JoinState {
    plan: JoinPlan,
    left: StreamShape,
    right: StreamShape,
    combined: StreamShape,
    rows: VecDeque<(i64, Vec<Value>)>,
}

impl JoinState {
    pub fn new(plan: JoinPlan, left: StreamShape, right: StreamShape) -> Self {
        let mut columns = left.columns.clone();
        columns.push(("$LEFT_ROWTIME".into(), Kind::Time));
        columns.extend(right.columns.iter().cloned());
        columns.push(("$RIGHT_ROWTIME".into(), Kind::Time));
        JoinState {
            plan,
            left,
            right,
            combined: StreamShape { columns },
            rows: VecDeque::new(),
        }
    }

    fn evict(&mut self, time: i64) {
        match self.plan.frame {
            Frame::RangeMs(ms) => {
                while self.rows.front().is_some_and(|(t, _)| *t < time - ms) {
                    self.rows.pop_front();
                }
            }
            // A rows frame needs the n + 1 newest rows at or before a left row.
            Frame::Rows(n) => {
                while self.rows.len() > n + 1
                    && self.rows.get(n + 1).is_some_and(|(t, _)| *t <= time)
                {
                    self.rows.pop_front();
                }
            }
        }
    }

    /// Adds rows of the right stream to the frame.
    pub fn add_right(&mut self, batch: &RecordBatch) -> Vec<RefusedRow> {
        let times = rowtimes(batch);
        let mut refused = Vec::new();
        for row in 0..batch.num_rows() {
            let time = times.value(row);
            if self.rows.len() >= JOIN_ROWS_MAX {
                refused.push(RefusedRow {
                    row,
                    message: format!("join window state is full ({JOIN_ROWS_MAX} rows)"),
                });
                continue;
            }
            let mut values: Vec<Value> = self
                .right
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| value_at(batch.column(i).as_ref(), *kind, row))
                .collect();
            values.push(Value::Time(time));
            self.rows.push_back((time, values));
        }
        refused
    }

    /// Drops right rows that no later left row can join: once an input batch has been fully
    /// processed, later left rows have a ROWTIME at or after the newest right row's.
    pub fn settle(&mut self) {
        if let Some((newest, _)) = self.rows.back() {
            let newest = *newest;
            self.evict(newest);
        }
    }

    /// Joins left rows with the frame; the batch has the target stream's shape.
    pub fn join(
        &mut self,
        batch: &RecordBatch,
        target: &StreamShape,
        target_columns: &[usize],
    ) -> Result<RecordBatch, ArrowError> {
        let times = rowtimes(batch);
        let mut combined_rows: Vec<(Vec<Value>, i64)> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        let right_nulls = vec![Value::Null; self.right.columns.len() + 1];
        for row in 0..batch.num_rows() {
            let time = times.value(row);
            if let Frame::RangeMs(_) = self.plan.frame {
                self.evict(time);
            }
            let mut left: Vec<Value> = self
                .left
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| value_at(batch.column(i).as_ref(), *kind, row))
                .collect();
            left.push(Value::Time(time));
            let eligible: Vec<&(i64, Vec<Value>)> =
                self.rows.iter().filter(|(t, _)| *t <= time).collect();
            let frame: &[&(i64, Vec<Value>)] = match self.plan.frame {
                Frame::RangeMs(_) => &eligible,
                Frame::Rows(n) => &eligible[eligible.len().saturating_sub(n + 1)..],
            };
            for (_, right) in frame {
                let mut values = left.clone();
                values.extend(right.iter().cloned());
                combined_rows.push((values, time));
                owner.push(row);
            }
            if self.plan.left_outer {
                // A placeholder with a NULL right side, kept only if no real pair matches.
                let mut values = left;
                values.extend(right_nulls.iter().cloned());
                combined_rows.push((values, time));
                owner.push(usize::MAX - row);
            }
        }
        let combined = batch_from_rows(&self.combined, &combined_rows);
        let mut keep: Vec<bool> = match &self.plan.on {
            Some(on) => on
                .evaluate_condition(&combined, "ON")?
                .iter()
                .map(|keep| keep == Some(true))
                .collect(),
            None => vec![true; combined.num_rows()],
        };
        if self.plan.left_outer {
            let mut matched = vec![false; batch.num_rows()];
            for (i, &o) in owner.iter().enumerate() {
                if o < batch.num_rows() && keep[i] {
                    matched[o] = true;
                }
            }
            for (i, &o) in owner.iter().enumerate() {
                if o >= batch.num_rows() {
                    keep[i] = !matched[usize::MAX - o];
                }
            }
        }
        let combined =
            arrow_select::filter::filter_record_batch(&combined, &BooleanArray::from(keep))?;
        joined_output(
            combined,
            self.plan.filter.as_ref(),
            &self.plan.projections,
            target,
            target_columns,
        )
    }
}

/// The output of a join (stream-to-stream or with a reference table): the joined rows that
/// `filter` (the query's WHERE) keeps, projected into the target stream.
pub fn joined_output(
    combined: RecordBatch,
    filter: Option<&CExpr>,
    projections: &[CExpr],
    target: &StreamShape,
    target_columns: &[usize],
) -> Result<RecordBatch, ArrowError> {
    let combined = match filter {
        Some(filter) => {
            let mask = filter.evaluate_condition(&combined, "WHERE")?;
            arrow_select::filter::filter_record_batch(&combined, &mask)?
        }
        None => combined,
    };
    project(projections, &combined, target, target_columns)
}
