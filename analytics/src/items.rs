//! TOP_K_ITEMS_TUMBLING and COUNT_DISTINCT_ITEMS_TUMBLING: per tumbling window of ROWTIME, the
//! K most frequent values of a column (`ITEM`, `ITEM_COUNT`, most frequent first, ties by value)
//! or the number of distinct values (`NUMBER_OF_DISTINCT_ITEMS`).
//!
//! KDA computes both approximately (a sketch; HyperLogLog for the distinct count, exact up to
//! 10,000 items). These count exactly, within a bound of [`ITEMS_MAX`] distinct values per pump
//! in open windows: rows with new values beyond it are refused and reported.
//!
//! The pump's WHERE (`… FROM TABLE(TOP_K_ITEMS_TUMBLING(…)) WHERE ITEM_COUNT > 5`) filters the
//! function's rows of a closing window; a WHERE inside the cursor filters its input rows.
//!
//! A pump fed by a stagger pump keeps its open windows in the application's window snapshot
//! ([`ItemsSnapshot`], see [`crate::snapshot`]) instead of rebuilding them by a replay.

use std::collections::{BTreeMap, HashMap};

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::batch::{StreamShape, rowtimes, value_at};
use crate::expr::{CExpr, convert};
use crate::types::Kind;
use crate::value::Value;
use crate::window::{OutputRow, RefusedRow};

/// The most distinct values the open windows of one pump may hold.
pub const ITEMS_MAX: usize = 1_000_000;

/// Which function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemsFn {
    TopK(usize),
    CountDistinct,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ItemsPlan {
    pub func: ItemsFn,
    /// The counted column of the cursor's stream, as text.
    pub column: CExpr,
    pub width_ms: i64,
    /// For each select item, the index of the function's output column it takes.
    pub outputs: Vec<usize>,
    /// The pump's WHERE, over the function's columns ([`ItemsPlan::columns`]).
    pub filter: Option<CExpr>,
}

impl ItemsPlan {
    /// The columns the function returns.
    pub fn columns(func: ItemsFn) -> Vec<(String, Kind)> {
        match func {
            ItemsFn::TopK(_) => vec![
                ("ITEM".into(), Kind::Text),
                ("ITEM_COUNT".into(), Kind::Int),
            ],
            ItemsFn::CountDistinct => vec![("NUMBER_OF_DISTINCT_ITEMS".into(), Kind::Int)],
        }
    }
}

/// An items pump's open windows, each with its values' counts in value order.
///
/// Serialized in window snapshot files ([`crate::snapshot`]): no field is renamed, removed or
/// retyped without a format version bump and a compatibility fixture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemsSnapshot {
    width_ms: i64,
    windows: Vec<(i64, Vec<(String, i64)>)>,
}

/// Why an [`ItemsSnapshot`] cannot be restored into a pump. The pump is then left empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreItemsError {
    #[error("the pump's window changed from {stored} ms to {planned} ms")]
    WidthChanged { stored: i64, planned: i64 },
    #[error("the snapshot holds {items} items, over the {limit} one pump may hold")]
    ItemsOverMax { items: usize, limit: usize },
    #[error("the snapshot holds window {start_ms} or one of its values twice")]
    Duplicate { start_ms: i64 },
}

#[derive(Debug)]
pub struct ItemsState {
    plan: ItemsPlan,
    open: BTreeMap<i64, HashMap<String, i64>>,
    items: usize,
}

impl ItemsState {
    pub fn new(plan: ItemsPlan) -> Self {
        assert!(plan.width_ms > 0);
        ItemsState {
            plan,
            open: BTreeMap::new(),
            items: 0,
        }
    }

    /// The open windows (see [`ItemsSnapshot`]).
    pub fn snapshot(&self) -> ItemsSnapshot {
        let windows = self
            .open
            .iter()
            .map(|(start, counts)| {
                let mut counts: Vec<(String, i64)> =
                    counts.iter().map(|(v, n)| (v.clone(), *n)).collect();
                counts.sort();
                (*start, counts)
            })
            .collect();
        ItemsSnapshot {
            width_ms: self.plan.width_ms,
            windows,
        }
    }

    /// Restores `snapshot` into this pump, which has seen no row.
    pub fn restore(&mut self, snapshot: ItemsSnapshot) -> Result<(), RestoreItemsError> {
        assert!(
            self.open.is_empty(),
            "a snapshot is restored before any row"
        );
        if snapshot.width_ms != self.plan.width_ms {
            return Err(RestoreItemsError::WidthChanged {
                stored: snapshot.width_ms,
                planned: self.plan.width_ms,
            });
        }
        let items: usize = snapshot.windows.iter().map(|(_, c)| c.len()).sum();
        if items > ITEMS_MAX {
            return Err(RestoreItemsError::ItemsOverMax {
                items,
                limit: ITEMS_MAX,
            });
        }
        let mut open = BTreeMap::new();
        for (start_ms, counts) in snapshot.windows {
            let len = counts.len();
            let counts: HashMap<String, i64> = counts.into_iter().collect();
            if counts.len() != len || open.insert(start_ms, counts).is_some() {
                return Err(RestoreItemsError::Duplicate { start_ms });
            }
        }
        self.open = open;
        self.items = items;
        Ok(())
    }

    pub fn oldest_open_ms(&self) -> Option<i64> {
        self.open.keys().next().copied()
    }

    pub fn add(&mut self, batch: &RecordBatch, out: &mut Vec<OutputRow>) -> Vec<RefusedRow> {
        let rows = batch.num_rows();
        let values = match self.plan.column.evaluate(batch) {
            Ok(v) => v,
            Err(e) => {
                return RefusedRow::every(rows, &e.to_string());
            }
        };
        let kind = self.plan.column.kind();
        let times = rowtimes(batch);
        let mut refused = Vec::new();
        let width = self.plan.width_ms;
        for row in 0..rows {
            let time = times.value(row);
            let start = time.div_euclid(width) * width;
            self.close_before(start, out);
            let item = match convert(value_at(values.as_ref(), kind, row), Kind::Text) {
                Ok(Value::Text(s)) => s,
                _ => continue,
            };
            let window = self.open.entry(start).or_default();
            match window.get_mut(&item) {
                Some(count) => *count += 1,
                None if self.items >= ITEMS_MAX => refused.push(RefusedRow {
                    row,
                    message: format!("item state is full ({ITEMS_MAX} items)"),
                }),
                None => {
                    window.insert(item, 1);
                    self.items += 1;
                }
            }
        }
        refused
    }

    /// Which of a closing window's function rows the pump's WHERE keeps. A WHERE that fails
    /// to evaluate (a conversion error, say) keeps none: the rows' input is long gone, so
    /// there is nothing to report them against but the log.
    fn kept(&self, rows: &[(Vec<Value>, i64)]) -> Vec<bool> {
        let Some(filter) = &self.plan.filter else {
            return vec![true; rows.len()];
        };
        let shape = StreamShape {
            columns: ItemsPlan::columns(self.plan.func),
        };
        match filter.keeps_rows(&shape, rows) {
            Ok(kept) => kept,
            Err(error) => {
                tracing::warn!(%error, "the WHERE over a closing window's items failed; its rows are dropped");
                vec![false; rows.len()]
            }
        }
    }

    pub fn close_ended_by(&mut self, time_ms: i64, out: &mut Vec<OutputRow>) {
        self.close_before(time_ms - self.plan.width_ms + 1, out);
    }

    fn close_before(&mut self, start_ms: i64, out: &mut Vec<OutputRow>) {
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= start_ms {
                break;
            }
            let (start, counts) = entry.remove_entry();
            self.items -= counts.len();
            let end = start + self.plan.width_ms;
            let rows: Vec<Vec<Value>> = match self.plan.func {
                ItemsFn::CountDistinct => vec![vec![Value::Int(counts.len() as i64)]],
                ItemsFn::TopK(k) => {
                    let mut ranked: Vec<(String, i64)> = counts.into_iter().collect();
                    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    ranked.truncate(k);
                    ranked
                        .into_iter()
                        .map(|(item, n)| vec![Value::Text(item), Value::Int(n)])
                        .collect()
                }
            };
            let rows: Vec<(Vec<Value>, i64)> = rows.into_iter().map(|row| (row, end)).collect();
            let kept = self.kept(&rows);
            for ((row, end), keep) in rows.into_iter().zip(kept) {
                if keep {
                    let values = self.plan.outputs.iter().map(|&i| row[i].clone()).collect();
                    out.push((values, end));
                }
            }
        }
    }
}
