//! RANDOM_CUT_FOREST: an anomaly score per row from a forest of random cut trees over the
//! numeric columns of the cursor's rows (Guha et al., "Robust Random Cut Forest Based Anomaly
//! Detection on Streams", 2016).
//!
//! Each tree holds a uniform reservoir sample of the rows seen (`subSampleSize` rows) and is
//! rebuilt from it when the sample has changed by a quarter since the last build. A row is
//! scored before it is added: its collusive displacement (CoDisp) in each tree is computed by a
//! virtual insertion — the random cut that would separate it from a node's bounding box, then
//! max over the path of |sibling| / |the row's side| — and the score is the mean over trees.
//! Points far from the sample are cut off high in the trees next to large subtrees and score
//! high; points inside dense regions score near 1. Until a tree has [`WARM_UP_ROWS`] rows the
//! score is 0, as KDA reports while its model warms up `[verify]`.
//!
//! Deviations from KDA: the sample is uniform (no time decay), shingle size is 1, and the score
//! is CoDisp, not AWS's normalised score, so its scale differs `[verify]`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Rows a tree needs before it scores.
pub const WARM_UP_ROWS: usize = 32;

#[derive(Debug)]
enum Node {
    Leaf {
        point: Vec<f64>,
        count: usize,
    },
    Cut {
        dim: usize,
        value: f64,
        low: Vec<f64>,
        high: Vec<f64>,
        count: usize,
        left: Box<Node>,
        right: Box<Node>,
    },
}

impl Node {
    fn count(&self) -> usize {
        match self {
            Node::Leaf { count, .. } | Node::Cut { count, .. } => *count,
        }
    }

    fn bounds(&self) -> (&[f64], &[f64]) {
        match self {
            Node::Leaf { point, .. } => (point, point),
            Node::Cut { low, high, .. } => (low, high),
        }
    }
}

fn build(points: &mut [Vec<f64>], rng: &mut StdRng) -> Node {
    let dims = points[0].len();
    let mut low = points[0].clone();
    let mut high = points[0].clone();
    for p in points.iter() {
        for d in 0..dims {
            low[d] = low[d].min(p[d]);
            high[d] = high[d].max(p[d]);
        }
    }
    let span: f64 = (0..dims).map(|d| high[d] - low[d]).sum();
    if span <= 0.0 || !span.is_finite() {
        return Node::Leaf {
            point: points[0].clone(),
            count: points.len(),
        };
    }
    // A dimension with probability proportional to its side, a value uniform on it.
    let mut r = rng.random::<f64>() * span;
    let mut dim = 0;
    for d in 0..dims {
        let side = high[d] - low[d];
        if r < side {
            dim = d;
            break;
        }
        r -= side;
        dim = d;
    }
    let value = (low[dim] + r).clamp(low[dim], high[dim]);
    let split = partition(points, |p| p[dim] <= value);
    let split = split.clamp(1, points.len() - 1);
    let count = points.len();
    let (left, right) = points.split_at_mut(split);
    Node::Cut {
        dim,
        value,
        low,
        high,
        count,
        left: Box::new(build(left, rng)),
        right: Box::new(build(right, rng)),
    }
}

/// Moves the points satisfying `pred` first; returns how many there are.
fn partition(points: &mut [Vec<f64>], pred: impl Fn(&[f64]) -> bool) -> usize {
    let mut next = 0;
    for i in 0..points.len() {
        if pred(&points[i]) {
            points.swap(i, next);
            next += 1;
        }
    }
    next
}

/// CoDisp of `p` inserted virtually into the tree rooted at `node`.
fn codisp(node: &Node, p: &[f64], rng: &mut StdRng) -> f64 {
    // (sibling size, size of p's side after insertion) along the path, root first.
    let mut path: Vec<(usize, usize)> = Vec::new();
    let mut current = node;
    loop {
        let (low, high) = current.bounds();
        let span: f64 = (0..p.len())
            .map(|d| high[d].max(p[d]) - low[d].min(p[d]))
            .sum();
        let inside_span: f64 = (0..p.len()).map(|d| high[d] - low[d]).sum();
        if span > inside_span {
            // A random cut on the box extended by p; it separates p when it falls outside the
            // node's own box.
            let mut r = rng.random::<f64>() * span;
            let mut separated = false;
            for d in 0..p.len() {
                let lo = low[d].min(p[d]);
                let side = high[d].max(p[d]) - lo;
                if r < side {
                    let x = lo + r;
                    separated = (p[d] < low[d] && x < low[d]) || (p[d] > high[d] && x >= high[d]);
                    break;
                }
                r -= side;
            }
            if separated {
                path.push((current.count(), 1));
                break;
            }
        }
        match current {
            Node::Leaf { count, .. } => {
                // p lands on (or next to) this leaf: it joins the leaf's points.
                path.push((0, count + 1));
                break;
            }
            Node::Cut {
                dim,
                value,
                left,
                right,
                ..
            } => {
                let (into, other) = if p[*dim] <= *value {
                    (left, right)
                } else {
                    (right, left)
                };
                path.push((other.count(), into.count() + 1));
                current = into;
            }
        }
    }
    path.iter()
        .map(|&(sibling, side)| sibling as f64 / side as f64)
        .fold(0.0, f64::max)
}

struct Tree {
    sample: Vec<Vec<f64>>,
    root: Option<Node>,
    changed: usize,
}

/// A forest over points of a fixed number of dimensions.
pub struct Forest {
    trees: Vec<Tree>,
    sample_size: usize,
    seen: u64,
    rng: StdRng,
}

impl std::fmt::Debug for Forest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forest")
            .field("trees", &self.trees.len())
            .field("seen", &self.seen)
            .finish()
    }
}

impl Forest {
    pub fn new(trees: usize, sample_size: usize, seed: u64) -> Self {
        assert!(trees > 0 && sample_size > 1);
        Forest {
            trees: (0..trees)
                .map(|_| Tree {
                    sample: Vec::new(),
                    root: None,
                    changed: 0,
                })
                .collect(),
            sample_size,
            seen: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The score of `p` against the rows seen so far (0 while warming up).
    pub fn score(&mut self, p: &[f64]) -> f64 {
        let mut total = 0.0;
        let mut scored = 0;
        for tree in &mut self.trees {
            if tree.sample.len() < WARM_UP_ROWS {
                continue;
            }
            if tree.root.is_none() || tree.changed * 4 >= self.sample_size.min(tree.sample.len()) {
                let mut points = tree.sample.clone();
                tree.root = Some(build(&mut points, &mut self.rng));
                tree.changed = 0;
            }
            if let Some(root) = &tree.root {
                total += codisp(root, p, &mut self.rng);
                scored += 1;
            }
        }
        if scored == 0 {
            0.0
        } else {
            total / scored as f64
        }
    }

    /// Adds `p` to each tree's reservoir sample.
    pub fn update(&mut self, p: &[f64]) {
        self.seen += 1;
        for tree in &mut self.trees {
            if tree.sample.len() < self.sample_size {
                tree.sample.push(p.to_vec());
                tree.changed += 1;
            } else {
                let slot = self.rng.random_range(0..self.seen);
                if (slot as usize) < self.sample_size {
                    tree.sample[slot as usize] = p.to_vec();
                    tree.changed += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_anomalies_score_clearly_higher_than_normal_points() {
        // A noisy sine wave with a few spikes planted in it.
        let mut rng = StdRng::seed_from_u64(7);
        let mut forest = Forest::new(50, 128, 1);
        let planted = [600usize, 750, 900];
        let mut normal_scores = Vec::new();
        let mut anomaly_scores = Vec::new();
        for i in 0..1000usize {
            let t = i as f64 / 20.0;
            let mut x = t.sin() * 10.0 + rng.random::<f64>();
            let y = t.cos() * 10.0 + rng.random::<f64>();
            if planted.contains(&i) {
                x += 40.0;
            }
            let p = [x, y];
            let score = forest.score(&p);
            forest.update(&p);
            if i < 300 {
                continue;
            }
            if planted.contains(&i) {
                anomaly_scores.push(score);
            } else {
                normal_scores.push(score);
            }
        }
        normal_scores.sort_by(f64::total_cmp);
        let p99 = normal_scores[normal_scores.len() * 99 / 100];
        let lowest_anomaly = anomaly_scores.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            lowest_anomaly > 2.0 * p99,
            "anomalies {anomaly_scores:?} against the 99th percentile of normal points {p99}"
        );
    }
}

/// The state of a RANDOM_CUT_FOREST pump.
#[derive(Debug)]
pub struct RcfState {
    plan: crate::plan::RcfPlan,
    forest: Forest,
}

impl RcfState {
    pub fn new(plan: crate::plan::RcfPlan) -> Self {
        // A fixed seed: the same rows give the same scores, run after run.
        let forest = Forest::new(plan.trees, plan.sample_size, 0x5eed);
        RcfState { plan, forest }
    }

    /// Scores each row, then adds it to the forest; one output row per row.
    pub fn add(
        &mut self,
        batch: &arrow_array::RecordBatch,
        out: &mut Vec<crate::window::OutputRow>,
    ) -> Vec<crate::window::RefusedRow> {
        use crate::batch::{rowtimes, value_at};
        use crate::value::Value;
        let rows = batch.num_rows();
        let mut arrays = Vec::with_capacity(self.plan.cursor.len());
        for e in &self.plan.cursor {
            match e.evaluate(batch) {
                Ok(a) => arrays.push((a, e.kind())),
                Err(error) => {
                    return (0..rows)
                        .map(|row| crate::window::RefusedRow {
                            row,
                            message: error.to_string(),
                        })
                        .collect();
                }
            }
        }
        let times = rowtimes(batch);
        for row in 0..rows {
            let mut values: Vec<Value> = arrays
                .iter()
                .map(|(a, k)| value_at(a.as_ref(), *k, row))
                .collect();
            let point: Vec<f64> = self
                .plan
                .numeric
                .iter()
                .map(|&i| match &values[i] {
                    Value::Int(v) => *v as f64,
                    Value::Float(v) if v.is_finite() => *v,
                    _ => 0.0,
                })
                .collect();
            let score = self.forest.score(&point);
            self.forest.update(&point);
            values.push(Value::Float(score));
            let selected = self
                .plan
                .outputs
                .iter()
                .map(|&i| values[i].clone())
                .collect();
            out.push((selected, times.value(row)));
        }
        Vec::new()
    }
}
