//! The state of a pump over a row-wise table function (RANDOM_CUT_FOREST, its
//! _WITH_EXPLANATION form, HOTSPOTS): each cursor row comes out once, with the function's
//! columns after the cursor's, computed from the row's numeric columns as a point.
//!
//! A numeric column that is NULL (or not finite) counts as 0 in the point; the row itself keeps
//! its NULL. The pump's WHERE (`… FROM TABLE(f(…)) WHERE ANOMALY_SCORE > 0`) filters the
//! function's rows after every row has been through the function.

use arrow_array::RecordBatch;

use crate::batch::{rowtimes, value_at};
use crate::hotspots::HotspotsState;
use crate::plan::{CursorColumns, PlanBody};
use crate::rcf::RcfState;
use crate::value::Value;
use crate::window::{OutputRow, RefusedRow};

/// One row-wise function's state, and the columns it reads and returns.
#[derive(Debug)]
pub struct RowFunctionState {
    columns: CursorColumns,
    function: RowFunction,
}

#[derive(Debug)]
enum RowFunction {
    // Boxed: the forest's random number generator makes it several times the size of HOTSPOTS'.
    Rcf(Box<RcfState>),
    Hotspots(HotspotsState),
}

impl RowFunctionState {
    /// The state of a pump with plan `body`, if it is a row-wise function.
    pub fn new(body: &PlanBody) -> Option<Self> {
        let (columns, function) = match body {
            PlanBody::Rcf(plan) => (
                &plan.columns,
                RowFunction::Rcf(Box::new(RcfState::new(plan))),
            ),
            PlanBody::Hotspots(plan) => (
                &plan.columns,
                RowFunction::Hotspots(HotspotsState::new(plan)),
            ),
            _ => return None,
        };
        Some(RowFunctionState {
            columns: columns.clone(),
            function,
        })
    }

    /// Runs the function over each row of `batch`, in order; one output row per row the
    /// pump's WHERE keeps.
    pub fn add(&mut self, batch: &RecordBatch, out: &mut Vec<OutputRow>) -> Vec<RefusedRow> {
        let columns = &self.columns;
        let rows = batch.num_rows();
        let mut arrays = Vec::with_capacity(columns.cursor.len());
        for e in &columns.cursor {
            match e.evaluate(batch) {
                Ok(a) => arrays.push((a, e.kind())),
                Err(error) => {
                    return RefusedRow::every(rows, &error.to_string());
                }
            }
        }
        let times = rowtimes(batch);
        let mut point = Vec::with_capacity(columns.numeric.len());
        let mut results = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut values: Vec<Value> = arrays
                .iter()
                .map(|(a, k)| value_at(a.as_ref(), *k, row))
                .collect();
            point.clear();
            point.extend(columns.numeric.iter().map(|&i| match &values[i] {
                Value::Int(v) => *v as f64,
                Value::Float(v) if v.is_finite() => *v,
                _ => 0.0,
            }));
            values.extend(match &mut self.function {
                RowFunction::Rcf(state) => state.next(&point),
                RowFunction::Hotspots(state) => state.next(&point),
            });
            results.push((values, times.value(row)));
        }
        // The pump's WHERE runs over the function's rows, as a batch of their shape.
        let kept = match &columns.filter {
            None => vec![true; results.len()],
            Some(filter) => match filter.keeps_rows(&columns.result, &results) {
                Ok(kept) => kept,
                Err(error) => {
                    // The function has seen the rows; only their output is refused.
                    return RefusedRow::every(rows, &error.to_string());
                }
            },
        };
        for ((values, time), keep) in results.into_iter().zip(kept) {
            if keep {
                let selected = columns.outputs.iter().map(|&i| values[i].clone()).collect();
                out.push((selected, time));
            }
        }
        Vec::new()
    }
}
