//! Scenario files: what a run does, read from TOML (`perf/scenarios/*.toml`).
//!
//! A scenario names its kind (what the driver does), the protocols it can run over, its
//! optimisation goal (the one summary metric a change should move, and in which direction),
//! the stream shape and the load. One file serves both protocols; `--protocol` picks one.
//!
//! ```toml
//! name = "producer_throughput"
//! description = "Closed-loop batches of 500 × 100 B records, 8 requests in flight."
//! goal = "maximize records_per_s"
//! kind = "produce"
//! protocols = ["http", "binary"]
//! shards = 4
//! record_bytes = 100
//! batch = 500
//! duration_s = 10
//! warmup_s = 1
//!
//! [load]
//! mode = "closed"     # or "open" with rate_per_s (requests per second)
//! concurrency = 8
//! ```
//!
//! Smoke mode ([`Scenario::smoke`]) keeps the shape of any scenario but shrinks every count
//! and duration so the whole run takes a fraction of a second.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// What the driver does.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Put batches (or single records when `batch = 1`) and time each acknowledgement.
    Produce,
    /// Put records stamped with their intended send time and time their arrival at every
    /// consumer (push subscription over the binary protocol, GetRecords polling over HTTP).
    EndToEnd,
    /// Preload records, then read every shard from the start, over and over, for the duration.
    Read,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Kinesis HTTP JSON 1.1 (any Kinesis-compatible endpoint).
    Http,
    /// The Sluice binary protocol through `sluice-client`.
    Binary,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Binary => "binary",
        }
    }
}

/// How requests are issued.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Load {
    /// `concurrency` requests in flight, each sent as soon as the previous one on its lane is
    /// answered: measures capacity, and its latencies are service times under saturation.
    Closed { concurrency: usize },
    /// Requests sent on a fixed schedule whatever the server does; latency counts from when
    /// each request was due, so a stalled server is charged for every request it delays
    /// (coordinated-omission correction). At most `max_in_flight` requests are outstanding;
    /// beyond that sends are late, and the lateness is still charged.
    Open {
        rate_per_s: f64,
        #[serde(default = "default_max_in_flight")]
        max_in_flight: usize,
    },
}

fn default_max_in_flight() -> usize {
    4096
}

/// The direction and metric a scenario optimises, written `"maximize records_per_s"`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Goal {
    pub maximize: bool,
    /// A key of the summary JSON, dotted for nested values (`latency.p99_ms`).
    pub metric: String,
}

impl<'de> Deserialize<'de> for Goal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (direction, metric) = text.split_once(' ').ok_or_else(|| {
            serde::de::Error::custom("goal is \"maximize <metric>\" or \"minimize <metric>\"")
        })?;
        let maximize = match direction {
            "maximize" => true,
            "minimize" => false,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "goal direction {other:?} is neither maximize nor minimize"
                )));
            }
        };
        Ok(Goal {
            maximize,
            metric: metric.trim().to_owned(),
        })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub goal: Goal,
    pub kind: Kind,
    #[serde(default = "default_protocols")]
    pub protocols: Vec<Protocol>,
    #[serde(default = "default_shards")]
    pub shards: u32,
    #[serde(default = "default_record_bytes")]
    pub record_bytes: usize,
    /// Records per request.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Measured time (after the warm-up).
    #[serde(default = "default_duration_s")]
    pub duration_s: f64,
    /// Time spent under load before measuring starts.
    #[serde(default)]
    pub warmup_s: f64,
    pub load: Load,
    /// `end_to_end`: consumers reading every shard (each gets every record).
    #[serde(default = "default_one")]
    pub consumers_per_shard: usize,
    /// `end_to_end` over HTTP: pause after an empty GetRecords page.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// `read`: records put before reading.
    #[serde(default)]
    pub preload_records: usize,
    /// `read`: records per read request (GetRecords `Limit`).
    #[serde(default = "default_read_limit")]
    pub read_limit: u32,
}

fn default_protocols() -> Vec<Protocol> {
    vec![Protocol::Http, Protocol::Binary]
}
fn default_shards() -> u32 {
    4
}
fn default_record_bytes() -> usize {
    100
}
fn default_batch() -> usize {
    1
}
fn default_duration_s() -> f64 {
    10.0
}
fn default_one() -> usize {
    1
}
fn default_poll_interval_ms() -> u64 {
    5
}
fn default_read_limit() -> u32 {
    10_000
}

/// Kinesis' PutRecords takes at most 500 records.
const HTTP_BATCH_MAX: usize = 500;
/// End-to-end records carry an 8-byte magic and an 8-byte timestamp.
pub const STAMP_BYTES: usize = 16;

impl Scenario {
    pub fn load_file(path: &Path) -> anyhow::Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let scenario: Scenario =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        scenario
            .validate()
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(scenario)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.shards == 0 {
            bail!("shards must be at least 1");
        }
        if self.batch == 0 || self.batch > HTTP_BATCH_MAX {
            bail!(
                "batch must be 1..={HTTP_BATCH_MAX} (the Kinesis PutRecords limit), got {}",
                self.batch
            );
        }
        if !self.duration_s.is_finite() || self.duration_s <= 0.0 || self.warmup_s < 0.0 {
            bail!("duration_s must be positive and warmup_s not negative");
        }
        if self.kind == Kind::EndToEnd && self.record_bytes < STAMP_BYTES {
            bail!(
                "end_to_end records carry a {STAMP_BYTES}-byte timestamp, so record_bytes must be at least that"
            );
        }
        if self.kind == Kind::EndToEnd && self.consumers_per_shard == 0 {
            bail!("end_to_end needs at least one consumer per shard");
        }
        match &self.load {
            Load::Closed { concurrency } if *concurrency == 0 => {
                bail!("load.concurrency must be at least 1")
            }
            Load::Open {
                rate_per_s,
                max_in_flight,
            } if !rate_per_s.is_finite() || *rate_per_s <= 0.0 || *max_in_flight == 0 => {
                bail!("load.rate_per_s and load.max_in_flight must be positive")
            }
            _ => Ok(()),
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_s)
    }

    /// The same scenario shrunk to run in a fraction of a second with tiny counts; the shape
    /// (kind, batch size relative to the limit, open or closed loop, consumers) is kept so that
    /// every code path still runs.
    pub fn smoke(mut self) -> Scenario {
        self.duration_s = 0.3;
        self.warmup_s = 0.0;
        self.shards = self.shards.min(2);
        self.batch = self.batch.min(10);
        self.consumers_per_shard = self.consumers_per_shard.min(2);
        self.preload_records = self.preload_records.min(200);
        self.read_limit = self.read_limit.min(50);
        self.poll_interval_ms = self.poll_interval_ms.min(5);
        self.load = match self.load {
            Load::Closed { concurrency } => Load::Closed {
                concurrency: concurrency.min(2),
            },
            Load::Open {
                rate_per_s,
                max_in_flight,
            } => Load::Open {
                rate_per_s: rate_per_s.min(200.0),
                max_in_flight: max_in_flight.min(64),
            },
        };
        self
    }

    /// Overrides from the command line.
    pub fn with_overrides(
        mut self,
        duration_s: Option<f64>,
        warmup_s: Option<f64>,
        rate_per_s: Option<f64>,
    ) -> Scenario {
        if let Some(d) = duration_s {
            self.duration_s = d;
        }
        if let Some(w) = warmup_s {
            self.warmup_s = w;
        }
        if let (Some(rate), Load::Open { rate_per_s, .. }) = (rate_per_s, &mut self.load) {
            *rate_per_s = rate;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_file_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("perf/scenarios exists") {
            let path = entry.expect("directory entries are readable").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let scenario = Scenario::load_file(&path).expect("shipped scenarios are valid");
                assert_eq!(
                    path.file_stem().and_then(|s| s.to_str()),
                    Some(scenario.name.as_str())
                );
                scenario
                    .clone()
                    .smoke()
                    .validate()
                    .expect("a smoke version of a valid scenario is valid");
                names.push(scenario.name);
            }
        }
        names.sort();
        for expected in [
            "ack_latency_half_load",
            "end_to_end_latency",
            "fanout_consumers",
            "get_records_throughput",
            "producer_throughput",
            "producer_throughput_1000_shards",
            "producer_throughput_1k",
            "put_record_latency",
            "restart_cold_read",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "missing scenario {expected} in {names:?}"
            );
        }
    }

    #[test]
    fn a_goal_names_a_direction_and_a_metric() {
        #[derive(Deserialize)]
        struct G {
            goal: Goal,
        }
        let g: G = toml::from_str("goal = \"minimize latency.p99_ms\"").expect("valid goal");
        assert_eq!(
            g.goal,
            Goal {
                maximize: false,
                metric: "latency.p99_ms".into()
            }
        );
        assert!(toml::from_str::<G>("goal = \"shrink latency\"").is_err());
    }

    #[test]
    fn smoke_mode_shrinks_counts_but_keeps_the_load_mode() {
        let s: Scenario = toml::from_str(
            "name='x'\ngoal='maximize records_per_s'\nkind='produce'\nbatch=500\nduration_s=30\n[load]\nmode='open'\nrate_per_s=5000.0\n",
        )
        .expect("valid scenario");
        let smoke = s.smoke();
        assert!(smoke.duration_s < 1.0);
        assert_eq!(smoke.batch, 10);
        assert_eq!(
            smoke.load,
            Load::Open {
                rate_per_s: 200.0,
                max_in_flight: 64
            }
        );
    }
}
