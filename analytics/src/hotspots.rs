//! HOTSPOTS: the dense regions among the numeric columns of the last `windowSize` rows, given
//! with each row as HOTSPOTS_RESULT, `{"hotspots":[{"density":…,"minValues":[…],"maxValues":[…]}]}`
//! with one value per numeric column, densest first.
//!
//! KDA documents what the function returns, not its algorithm. Its parameters read as DBSCAN's
//! (it calls `scanRadius` "analogous to the ε value in DBSCAN"), so this is DBSCAN over the
//! window: a row is a core row when at least `minimumNumberOfPointsInAHotspot` rows of the
//! window, itself included, lie within `scanRadius` of it (Euclidean distance over the numeric
//! columns); core rows within `scanRadius` of each other form one hotspot, with the non-core rows
//! within reach of its core rows (a row within reach of two hotspots counts in both, so each has
//! at least `minimumNumberOfPointsInAHotspot` rows). A hotspot's `minValues`/`maxValues` are its rows' bounding box and its
//! `density` is its rows divided by the box's volume, each side counted as at least
//! `scanRadius` so that a flat box has a finite size (KDA: "the number of records in the
//! hotspot divided by the hotspot size"). Whether KDA's hotspots, sizes and densities are
//! computed this way is not documented `[verify]`; KDA's example sizes (1,000 rows, 20 % of them
//! in a unit square of a 10 × 10 plane, radius 0.2, 17 points, a density filter of 40) give one
//! hotspot of density 150 to 180 here and none elsewhere.
//!
//! State is the window itself: each row keeps the ids of its neighbours within `scanRadius`,
//! updated when a row enters (one distance per row of the window) and leaves (the oldest row is
//! the first neighbour of each of its neighbours, so it is popped from their fronts). The
//! hotspots are found from these lists in O(window + neighbour pairs) per row.

use std::collections::VecDeque;

use crate::plan::HotspotsPlan;
use crate::value::Value;

/// A row of the window: its point and the ids of the rows within `scanRadius` of it, ascending.
#[derive(Debug)]
struct Entry {
    point: Vec<f64>,
    neighbours: VecDeque<u64>,
}

/// A dense region of the window.
#[derive(Clone, Debug, PartialEq)]
pub struct Hotspot {
    pub rows: usize,
    pub density: f64,
    pub min_values: Vec<f64>,
    pub max_values: Vec<f64>,
}

/// The last `window_size` points and their neighbourhoods.
#[derive(Debug)]
pub struct Window {
    entries: VecDeque<Entry>,
    /// The id of `entries[0]`; ids are consecutive.
    first_id: u64,
    window_size: usize,
    scan_radius: f64,
    minimum_points: usize,
}

fn distance_squared(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

impl Window {
    pub fn new(window_size: usize, scan_radius: f64, minimum_points: usize) -> Self {
        assert!(window_size > 0);
        assert!(scan_radius > 0.0);
        assert!(minimum_points >= 2);
        Window {
            entries: VecDeque::with_capacity(window_size),
            first_id: 0,
            window_size,
            scan_radius,
            minimum_points,
        }
    }

    /// Adds `point`, dropping the oldest point when the window is full.
    pub fn push(&mut self, point: Vec<f64>) {
        if self.entries.len() == self.window_size {
            self.evict();
        }
        let id = self.first_id + self.entries.len() as u64;
        let reach = self.scan_radius * self.scan_radius;
        let mut neighbours = VecDeque::new();
        for (other_id, entry) in (self.first_id..).zip(self.entries.iter_mut()) {
            if distance_squared(&entry.point, &point) <= reach {
                entry.neighbours.push_back(id);
                neighbours.push_back(other_id);
            }
        }
        self.entries.push_back(Entry { point, neighbours });
        assert!(self.entries.len() <= self.window_size);
    }

    fn evict(&mut self) {
        let gone = self
            .entries
            .pop_front()
            .expect("a full window has an oldest entry");
        let gone_id = self.first_id;
        self.first_id += 1;
        for id in gone.neighbours {
            assert!(id > gone_id);
            let index = usize::try_from(id - self.first_id).expect("a window index fits usize");
            let front = self.entries[index].neighbours.pop_front();
            assert_eq!(front, Some(gone_id));
        }
    }

    /// The hotspots of the window, densest first.
    pub fn hotspots(&self) -> Vec<Hotspot> {
        let core: Vec<bool> = self
            .entries
            .iter()
            .map(|e| e.neighbours.len() + 1 >= self.minimum_points)
            .collect();
        // The last hotspot that counted each row: a core row is in one hotspot only, a row at
        // the edge of two is counted by both.
        let mut counted_by = vec![usize::MAX; self.entries.len()];
        let mut hotspots = Vec::new();
        let mut stack = Vec::new();
        for start in 0..self.entries.len() {
            if !core[start] || counted_by[start] != usize::MAX {
                continue;
            }
            let this = hotspots.len();
            let first = &self.entries[start].point;
            let mut hotspot = Hotspot {
                rows: 1,
                density: 0.0,
                min_values: first.clone(),
                max_values: first.clone(),
            };
            counted_by[start] = this;
            stack.push(start);
            // Only core rows reach further; the rows they reach join the hotspot.
            while let Some(i) = stack.pop() {
                for &id in &self.entries[i].neighbours {
                    let j = usize::try_from(id - self.first_id).expect("a window index fits usize");
                    if counted_by[j] == this {
                        continue;
                    }
                    counted_by[j] = this;
                    hotspot.rows += 1;
                    for (d, v) in self.entries[j].point.iter().enumerate() {
                        hotspot.min_values[d] = hotspot.min_values[d].min(*v);
                        hotspot.max_values[d] = hotspot.max_values[d].max(*v);
                    }
                    if core[j] {
                        stack.push(j);
                    }
                }
            }
            assert!(hotspot.rows >= self.minimum_points);
            let size: f64 = hotspot
                .min_values
                .iter()
                .zip(&hotspot.max_values)
                .map(|(lo, hi)| (hi - lo).max(self.scan_radius))
                .product();
            let density = hotspot.rows as f64 / size;
            hotspot.density = if density.is_finite() {
                density
            } else {
                f64::MAX
            };
            hotspots.push(hotspot);
        }
        hotspots.sort_by(|a, b| b.density.total_cmp(&a.density));
        hotspots
    }
}

/// HOTSPOTS_RESULT: `{"hotspots":[{"density":…,"minValues":[…],"maxValues":[…]},…]}`, the
/// key order of KDA's documentation.
pub fn hotspots_json(hotspots: &[Hotspot]) -> String {
    let number = |v: f64| serde_json::to_string(&v).expect("a finite number serialises");
    let list = |values: &[f64]| {
        values
            .iter()
            .map(|v| number(*v))
            .collect::<Vec<_>>()
            .join(",")
    };
    let items: Vec<String> = hotspots
        .iter()
        .map(|h| {
            format!(
                r#"{{"density":{},"minValues":[{}],"maxValues":[{}]}}"#,
                number(h.density),
                list(&h.min_values),
                list(&h.max_values)
            )
        })
        .collect();
    format!(r#"{{"hotspots":[{}]}}"#, items.join(","))
}

/// The state of a HOTSPOTS pump.
#[derive(Debug)]
pub struct HotspotsState {
    window: Window,
}

impl HotspotsState {
    pub fn new(plan: &HotspotsPlan) -> Self {
        HotspotsState {
            window: Window::new(plan.window_size, plan.scan_radius, plan.minimum_points),
        }
    }

    /// HOTSPOTS_RESULT for the row at `point`: the window's hotspots once the row is in it.
    pub fn next(&mut self, point: &[f64]) -> Vec<Value> {
        self.window.push(point.to_vec());
        vec![Value::Text(hotspots_json(&self.window.hotspots()))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// KDA's example data: points uniform on a 10 × 10 plane, a fifth of them uniform on the
    /// unit square at (3, 6) instead.
    fn plane_with_a_hot_square(rng: &mut StdRng, hot_share: f64) -> Vec<f64> {
        if rng.random::<f64>() < hot_share {
            vec![3.0 + rng.random::<f64>(), 6.0 + rng.random::<f64>()]
        } else {
            vec![rng.random::<f64>() * 10.0, rng.random::<f64>() * 10.0]
        }
    }

    #[test]
    fn a_planted_dense_square_is_the_only_hotspot_and_its_box_covers_it() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut window = Window::new(1_000, 0.2, 17);
        for _ in 0..1_500 {
            window.push(plane_with_a_hot_square(&mut rng, 0.2));
        }
        let hotspots = window.hotspots();
        assert_eq!(hotspots.len(), 1, "{hotspots:?}");
        let h = &hotspots[0];
        // The box holds the square's inside and reaches little beyond it.
        assert!(h.min_values[0] < 3.2 && h.min_values[0] > 2.5, "{h:?}");
        assert!(h.max_values[0] > 3.8 && h.max_values[0] < 4.5, "{h:?}");
        assert!(h.min_values[1] < 6.2 && h.min_values[1] > 5.5, "{h:?}");
        assert!(h.max_values[1] > 6.8 && h.max_values[1] < 7.5, "{h:?}");
        // About 200 of the 1,000 rows are in the square; the plane holds 8 per unit of area.
        assert!(h.rows > 150 && h.rows < 260, "{h:?}");
        assert!(h.density > 80.0, "{h:?}");
    }

    #[test]
    fn uniform_noise_has_no_hotspot() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut window = Window::new(1_000, 0.2, 17);
        for _ in 0..1_500 {
            window.push(plane_with_a_hot_square(&mut rng, 0.0));
            assert!(window.hotspots().is_empty());
        }
    }

    #[test]
    fn a_hotspot_leaves_with_the_rows_that_made_it() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut window = Window::new(100, 0.5, 10);
        for _ in 0..30 {
            window.push(vec![5.0 + rng.random::<f64>() * 0.1]);
        }
        assert_eq!(window.hotspots().len(), 1);
        for i in 0..100 {
            window.push(vec![100.0 + f64::from(i) * 10.0]);
        }
        assert!(window.hotspots().is_empty());
    }

    #[test]
    fn neighbour_lists_match_a_recount_from_scratch_as_the_window_slides() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut window = Window::new(100, 1.0, 3);
        for _ in 0..400 {
            window.push(vec![rng.random::<f64>() * 8.0, rng.random::<f64>() * 8.0]);
            for (i, entry) in window.entries.iter().enumerate() {
                let expected: Vec<u64> = (window.first_id..)
                    .zip(&window.entries)
                    .enumerate()
                    .filter(|(j, (_, other))| {
                        *j != i && distance_squared(&other.point, &entry.point) <= 1.0
                    })
                    .map(|(_, (id, _))| id)
                    .collect();
                assert_eq!(
                    entry.neighbours.iter().copied().collect::<Vec<_>>(),
                    expected
                );
            }
        }
    }

    #[test]
    fn the_result_has_kda_s_shape() {
        let hotspots = [Hotspot {
            rows: 4,
            density: 12.5,
            min_values: vec![1.0, -2.5],
            max_values: vec![1.5, 0.0],
        }];
        assert_eq!(
            hotspots_json(&hotspots),
            r#"{"hotspots":[{"density":12.5,"minValues":[1.0,-2.5],"maxValues":[1.5,0.0]}]}"#
        );
        assert_eq!(hotspots_json(&[]), r#"{"hotspots":[]}"#);
    }
}
