//! RANDOM_CUT_FOREST and RANDOM_CUT_FOREST_WITH_EXPLANATION: an anomaly score per row, and its
//! attribution to each numeric column, from a forest of random cut trees over the numeric
//! columns of the cursor's rows (Guha et al., "Robust Random Cut Forest Based Anomaly Detection
//! on Streams", 2016).
//!
//! Each tree holds a sample of `subSampleSize` rows, weighted towards recent rows by
//! `timeDecay` (see [`Forest::update`]), and is rebuilt from it when the sample has changed by a
//! quarter since the last build. A row is scored before it is added, by an expected isolation
//! depth: walking down the row's path, each
//! node's box extended by the row gets a random cut (a dimension in proportion to its side, a
//! value uniform on it), which isolates the row with probability (growth of the box) / (extended
//! box's span). Isolation at depth k is worth 1/(k + 1); reaching a leaf that holds the same
//! point is worth 1/(k + log2(1 + its count)). The tree's score is the expectation of that worth
//! over the cuts, times log2(1 + sample size), so a row as deep as a typical sample point scores
//! about 1 and a row cut off at the root about log2(1 + subSampleSize). The score is the mean
//! over trees. This is the scale AWS's scores show (about 0.7 for normal rows, several units for
//! anomalies, in KDA's examples); AWS's exact normalisation is not published `[verify]`.
//!
//! The expectation splits exactly over dimensions and sides: the chance that the isolating cut
//! falls in dimension d above the box is (p_d − high_d) / span, below it (low_d − p_d) / span.
//! So a column's ATTRIBUTION_SCORE is its share of the score (the shares sum to the score), its
//! DIRECTION is HIGH when more of its share comes from cuts above the trees' boxes than below,
//! and its STRENGTH is |above − below|, the net evidence for that direction. KDA documents
//! STRENGTH as a nonnegative number, 0 while learning, without its formula; its examples show
//! values larger than the attribution, so the scale of ours differs `[verify]`. A row equal to
//! a leaf's point spreads its leaf worth evenly over the columns and sides.
//!
//! Like KDA, the score (and every attribution and strength) is 0, and every direction LOW, for
//! the first `subSampleSize` rows while the trees fill (and the first shingleSize − 1 more with
//! shingles, see [`RcfState::next`]). KDA's exact decay scheme is not published; it says older
//! rows are more likely to be removed and that the default 100,000 keeps about the last 100,000
//! rows in play `[verify]`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::plan::{Explanation, RcfPlan};
use crate::value::Value;

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
        left: Box<Node>,
        right: Box<Node>,
    },
}

impl Node {
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
    let (left, right) = points.split_at_mut(split);
    Node::Cut {
        dim,
        value,
        low,
        high,
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

/// A score split over dimensions: the part from cuts that isolate the point above a box
/// (`high`) and below one (`low`), per dimension. The score is the sum of both.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    pub high: Vec<f64>,
    pub low: Vec<f64>,
}

impl Attribution {
    fn zero(dims: usize) -> Self {
        Attribution {
            high: vec![0.0; dims],
            low: vec![0.0; dims],
        }
    }

    /// The anomaly score: every dimension's part, both sides.
    pub fn score(&self) -> f64 {
        self.high.iter().chain(&self.low).sum()
    }
}

/// Adds `p`'s expected isolation worth in the tree rooted at `root`, split by dimension and
/// side and multiplied by `scale`, to `into`.
fn attribute(root: &Node, p: &[f64], scale: f64, into: &mut Attribution) {
    // The probability that no cut above the current node has isolated p yet.
    let mut reach = 1.0;
    let mut depth = 0usize;
    let mut current = root;
    loop {
        let (low, high) = current.bounds();
        let inside: f64 = (0..p.len()).map(|d| high[d] - low[d]).sum();
        let growth: f64 = (0..p.len())
            .map(|d| (low[d] - p[d]).max(0.0) + (p[d] - high[d]).max(0.0))
            .sum();
        let span = inside + growth;
        if growth > 0.0 && span.is_finite() {
            let worth = reach * scale / (depth + 1) as f64;
            for d in 0..p.len() {
                into.high[d] += worth * (p[d] - high[d]).max(0.0) / span;
                into.low[d] += worth * (low[d] - p[d]).max(0.0) / span;
            }
            reach *= inside / span;
        }
        match current {
            Node::Leaf { count, .. } => {
                // Whatever reach is left is p landing on this leaf's point.
                if reach > 0.0 {
                    let worth = reach * scale / (depth as f64 + (1.0 + *count as f64).log2());
                    let share = worth / (2 * p.len()) as f64;
                    for d in 0..p.len() {
                        into.high[d] += share;
                        into.low[d] += share;
                    }
                }
                return;
            }
            Node::Cut {
                dim,
                value,
                left,
                right,
                ..
            } => {
                current = if p[*dim] <= *value { left } else { right };
                depth += 1;
            }
        }
    }
}

/// A sample slot's priority: the sample keeps the `sample_size` highest.
#[derive(Clone, Copy, Debug)]
struct Priority {
    value: f64,
    slot: usize,
}

impl PartialEq for Priority {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Priority {}

impl PartialOrd for Priority {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Priority {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value
            .total_cmp(&other.value)
            .then(self.slot.cmp(&other.slot))
    }
}

struct Tree {
    sample: Vec<Vec<f64>>,
    /// The sample's priorities, lowest first: the next to be replaced.
    priorities: BinaryHeap<Reverse<Priority>>,
    root: Option<Node>,
    changed: usize,
}

/// A forest's parameters, as RANDOM_CUT_FOREST takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForestParameters {
    /// numberOfTrees.
    pub trees: usize,
    /// subSampleSize: the rows each tree holds.
    pub sample_size: usize,
    /// timeDecay: the number of rows over which a row's weight in the sample falls by e.
    pub time_decay: u64,
}

/// A forest over points of a fixed number of dimensions.
pub struct Forest {
    trees: Vec<Tree>,
    sample_size: usize,
    time_decay: u64,
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
    pub fn new(parameters: ForestParameters, seed: u64) -> Self {
        assert!(parameters.trees > 0);
        assert!(parameters.sample_size > 1);
        assert!(parameters.time_decay > 0);
        Forest {
            trees: (0..parameters.trees)
                .map(|_| Tree {
                    sample: Vec::with_capacity(parameters.sample_size),
                    priorities: BinaryHeap::with_capacity(parameters.sample_size),
                    root: None,
                    changed: 0,
                })
                .collect(),
            sample_size: parameters.sample_size,
            time_decay: parameters.time_decay,
            seen: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The score of `p` against the rows seen so far, split by dimension and side; all zero
    /// while the first `sample_size` rows fill the trees.
    pub fn explain(&mut self, p: &[f64]) -> Attribution {
        let mut total = Attribution::zero(p.len());
        if self.seen < self.sample_size as u64 {
            return total;
        }
        let scale = (1.0 + self.sample_size as f64).log2() / self.trees.len() as f64;
        for tree in &mut self.trees {
            if tree.root.is_none() || tree.changed * 4 >= self.sample_size {
                let mut points = tree.sample.clone();
                tree.root = Some(build(&mut points, &mut self.rng));
                tree.changed = 0;
            }
            let root = tree.root.as_ref().expect("the tree was built above");
            attribute(root, p, scale, &mut total);
        }
        total
    }

    /// The score of `p` against the rows seen so far (0 while warming up).
    pub fn score(&mut self, p: &[f64]) -> f64 {
        self.explain(p).score()
    }

    /// Offers `p` to each tree's sample. A row's priority is seen / timeDecay plus Gumbel noise
    /// and each tree keeps the `sample_size` highest: a weighted sample without replacement
    /// (Efraimidis and Spirakis) with weights e^(seen / timeDecay), so an older row is more
    /// likely to be the one replaced, and with a large timeDecay the sample is nearly uniform.
    pub fn update(&mut self, p: &[f64]) {
        self.seen += 1;
        let age = self.seen as f64 / self.time_decay as f64;
        for tree in &mut self.trees {
            let uniform: f64 = self.rng.random_range(f64::MIN_POSITIVE..1.0);
            let value = age - (-uniform.ln()).ln();
            if tree.sample.len() < self.sample_size {
                let slot = tree.sample.len();
                tree.sample.push(p.to_vec());
                tree.priorities.push(Reverse(Priority { value, slot }));
                tree.changed += 1;
                continue;
            }
            let Reverse(lowest) = *tree
                .priorities
                .peek()
                .expect("a full sample has priorities");
            if value > lowest.value {
                tree.priorities.pop();
                tree.sample[lowest.slot] = p.to_vec();
                tree.priorities.push(Reverse(Priority {
                    value,
                    slot: lowest.slot,
                }));
                tree.changed += 1;
            }
            assert!(tree.priorities.len() == tree.sample.len());
        }
    }
}

/// The ANOMALY_EXPLANATION of a row: per numeric column (by name, in cursor order) its
/// DIRECTION and STRENGTH when asked for, then its ATTRIBUTION_SCORE, each as text with four
/// decimals, in the order and form of KDA's examples
/// (`{"Systolic":{"DIRECTION":"LOW","STRENGTH":"0.0922","ATTRIBUTION_SCORE":"0.3792"}}`).
/// Without directionality only ATTRIBUTION_SCORE is given `[verify]`.
pub fn explanation_json(names: &[&str], attribution: &Attribution, directionality: bool) -> String {
    assert!(names.len() == attribution.high.len());
    let mut out = String::from("{");
    for (d, name) in names.iter().enumerate() {
        if d > 0 {
            out.push(',');
        }
        let key = serde_json::to_string(name).expect("a string serialises");
        let (high, low) = (attribution.high[d], attribution.low[d]);
        out.push_str(&key);
        out.push_str(":{");
        if directionality {
            let direction = if high > low { "HIGH" } else { "LOW" };
            let strength = (high - low).abs();
            out.push_str(&format!(
                r#""DIRECTION":"{direction}","STRENGTH":"{strength:.4}","#
            ));
        }
        out.push_str(&format!(r#""ATTRIBUTION_SCORE":"{:.4}"}}"#, high + low));
    }
    out.push('}');
    out
}

/// The state of a RANDOM_CUT_FOREST or RANDOM_CUT_FOREST_WITH_EXPLANATION pump.
#[derive(Debug)]
pub struct RcfState {
    forest: Forest,
    explanation: Option<Explanation>,
    /// The numeric columns' names, the keys of ANOMALY_EXPLANATION.
    names: Vec<String>,
    shingle_size: usize,
    /// The last `shingle_size` rows' points, oldest first.
    shingle: VecDeque<Vec<f64>>,
}

impl RcfState {
    pub fn new(plan: &RcfPlan) -> Self {
        assert!(plan.shingle_size >= 1);
        // A fixed seed: the same rows give the same scores, run after run.
        let forest = Forest::new(plan.forest, 0x5eed);
        let columns = &plan.columns;
        RcfState {
            forest,
            explanation: plan.explanation,
            names: columns
                .numeric
                .iter()
                .map(|&i| columns.names[i].clone())
                .collect(),
            shingle_size: plan.shingle_size,
            shingle: VecDeque::with_capacity(plan.shingle_size),
        }
    }

    /// The function's columns for the row at `point` (ANOMALY_SCORE, then ANOMALY_EXPLANATION
    /// if asked for). With shingleSize s the forest's points are the last s rows' points end to
    /// end, oldest first (KDA: "a vector over the last shingleSize number of records"); a column's
    /// attribution is the sum of its parts at every place in the shingle `[verify]`. A shingle
    /// is scored before it joins the forest; until s rows have come there is none, and the
    /// row scores 0.
    pub fn next(&mut self, point: &[f64]) -> Vec<Value> {
        assert!(point.len() == self.names.len());
        if self.shingle.len() == self.shingle_size {
            self.shingle.pop_front();
        }
        self.shingle.push_back(point.to_vec());
        let mut attribution = Attribution::zero(point.len());
        if self.shingle.len() == self.shingle_size {
            let shingled: Vec<f64> = self.shingle.iter().flatten().copied().collect();
            let parts = self.forest.explain(&shingled);
            self.forest.update(&shingled);
            for (d, (high, low)) in parts.high.iter().zip(&parts.low).enumerate() {
                attribution.high[d % point.len()] += high;
                attribution.low[d % point.len()] += low;
            }
        }
        let mut values = vec![Value::Float(attribution.score())];
        if let Some(explanation) = self.explanation {
            let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
            values.push(Value::Text(explanation_json(
                &names,
                &attribution,
                explanation.directionality,
            )));
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KDA's default timeDecay.
    fn parameters(trees: usize, sample_size: usize) -> ForestParameters {
        ForestParameters {
            trees,
            sample_size,
            time_decay: 100_000,
        }
    }

    #[test]
    fn a_short_time_decay_keeps_the_sample_recent_and_a_long_one_keeps_it_uniform() {
        // 1,000 rows near 0, then 300 near 100: the share of the recent rows in the samples.
        let recent_share = |time_decay: u64| {
            let mut forest = Forest::new(
                ForestParameters {
                    trees: 10,
                    sample_size: 64,
                    time_decay,
                },
                9,
            );
            for i in 0..1_300u32 {
                forest.update(&[if i < 1_000 { 0.0 } else { 100.0 } + f64::from(i % 7)]);
            }
            let samples: Vec<&Vec<f64>> = forest.trees.iter().flat_map(|t| &t.sample).collect();
            let recent = samples.iter().filter(|p| p[0] >= 100.0).count();
            recent as f64 / samples.len() as f64
        };
        let decayed = recent_share(50);
        let uniform = recent_share(1_000_000);
        assert!(decayed > 0.95, "timeDecay 50 keeps {decayed} recent");
        // A uniform sample holds about 300 / 1,300 of them.
        assert!(
            (0.13..0.35).contains(&uniform),
            "timeDecay 1e6 keeps {uniform} recent"
        );
    }

    #[test]
    fn planted_anomalies_score_clearly_higher_than_normal_points() {
        // A noisy sine wave with a few spikes planted in it.
        let mut rng = StdRng::seed_from_u64(7);
        let mut forest = Forest::new(parameters(50, 128), 1);
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

    /// A cluster in three dimensions; a row perturbed in one column, high or low.
    fn perturbed_forest_run(column: usize, offset: f64) -> (Vec<f64>, Attribution) {
        let mut rng = StdRng::seed_from_u64(3);
        let mut forest = Forest::new(parameters(40, 64), 5);
        let mut scores = Vec::new();
        let mut planted = None;
        for i in 0..400usize {
            let mut p = [
                50.0 + rng.random::<f64>() * 2.0,
                10.0 + rng.random::<f64>() * 2.0,
                -5.0 + rng.random::<f64>() * 2.0,
            ];
            if i == 300 {
                p[column] += offset;
                planted = Some(forest.explain(&p));
            }
            scores.push(forest.score(&p));
            forest.update(&p);
        }
        (scores, planted.expect("row 300 was explained"))
    }

    #[test]
    fn attribution_sums_to_the_score_and_names_the_perturbed_column_and_side() {
        for (column, offset, high) in [(0, 15.0, true), (1, -15.0, false), (2, 9.0, true)] {
            let (scores, explained) = perturbed_forest_run(column, offset);
            let best = (0..scores.len())
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                .expect("rows were scored");
            assert_eq!(best, 300, "the perturbed row scores highest");
            assert!((explained.score() - scores[300]).abs() < 1e-9);
            let parts: Vec<f64> = (0..3)
                .map(|d| explained.high[d] + explained.low[d])
                .collect();
            let top = (0..3)
                .max_by(|&a, &b| parts[a].total_cmp(&parts[b]))
                .expect("three columns");
            assert_eq!(top, column, "attribution {parts:?}");
            assert!(
                parts[column] > 0.8 * explained.score(),
                "attribution {parts:?}"
            );
            let (above, below) = (explained.high[column], explained.low[column]);
            assert_eq!(above > below, high, "above {above}, below {below}");
        }
    }

    #[test]
    fn every_row_scores_zero_while_the_trees_fill() {
        let mut forest = Forest::new(parameters(5, 20), 1);
        for i in 0..20 {
            let p = [i as f64 * 1000.0];
            assert_eq!(forest.score(&p), 0.0);
            forest.update(&p);
        }
        assert!(forest.score(&[1e9]) > 0.0);
    }

    #[test]
    fn the_explanation_has_kda_s_shape_and_directions() {
        let attribution = Attribution {
            high: vec![1.5, 0.0],
            low: vec![0.25, 0.125],
        };
        assert_eq!(
            explanation_json(&["px", "q\"ty"], &attribution, true),
            r#"{"px":{"DIRECTION":"HIGH","STRENGTH":"1.2500","ATTRIBUTION_SCORE":"1.7500"},"q\"ty":{"DIRECTION":"LOW","STRENGTH":"0.1250","ATTRIBUTION_SCORE":"0.1250"}}"#
        );
        assert_eq!(
            explanation_json(&["px", "qty"], &attribution, false),
            r#"{"px":{"ATTRIBUTION_SCORE":"1.7500"},"qty":{"ATTRIBUTION_SCORE":"0.1250"}}"#
        );
    }
}
