//! The latest delivery error of a delivery stream, kept per stage of its pipeline (reading the
//! source, the Lambda processor, each destination) for DescribeDeliveryStream's
//! FailureDescription.
//!
//! Invariants:
//! - A stage's error is set by a failed attempt and cleared by the next attempt of that stage
//!   that succeeds; a stage that keeps failing keeps its newest error.
//! - Bit `i` of `failing` is set exactly while slot `i` holds an error (both change under the
//!   lock), so a success on a healthy stage costs one atomic load and takes no lock: the hot
//!   path (every object, request or read) pays nothing while delivery works.
//!
//! The delivery stream's status is not touched: AWS keeps a delivery stream ACTIVE while its
//! deliveries fail.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::metrics::{DESTINATIONS, Destination};

/// A step of the delivery pipeline that can fail on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading the source stream.
    Source,
    /// Invoking the Lambda processor.
    Lambda,
    /// Writing to a destination (S3 also as the backup or staging area of another one).
    Destination(Destination),
}

const STAGES: usize = 2 + DESTINATIONS.len();
const _: () = assert!(STAGES <= u8::BITS as usize);

impl From<Destination> for Stage {
    fn from(destination: Destination) -> Self {
        Self::Destination(destination)
    }
}

impl Stage {
    const fn index(self) -> usize {
        match self {
            Self::Source => 0,
            Self::Lambda => 1,
            Self::Destination(destination) => 2 + destination as usize,
        }
    }

    const fn bit(self) -> u8 {
        1 << self.index()
    }
}

/// One failed attempt: the error code and message Firehose writes to its CloudWatch error log
/// (`S3.NoSuchBucket`, `HttpEndpoint.ResponseErrorStatus`, `Lambda.FunctionError`, …), and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryError {
    pub stage: Stage,
    pub error_code: String,
    pub error_message: String,
    pub at_ms: u64,
}

impl DeliveryError {
    /// FailureDescription's Details.
    pub fn details(&self) -> String {
        format!("{}: {}", self.error_code, self.error_message)
    }
}

#[derive(Debug, Default)]
pub struct LatestErrors {
    failing: AtomicU8,
    errors: Mutex<[Option<DeliveryError>; STAGES]>,
}

impl LatestErrors {
    fn lock(&self) -> std::sync::MutexGuard<'_, [Option<DeliveryError>; STAGES]> {
        // A panic aborts the process (panic = "abort"); a poisoned lock is only seen in tests,
        // and every write is one slot assignment plus its bit, so the state is still whole.
        self.errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a failed attempt of `stage`, replacing the stage's older error.
    pub fn failed(
        &self,
        stage: impl Into<Stage>,
        error_code: impl Into<String>,
        error_message: impl Into<String>,
        at_ms: u64,
    ) {
        let stage = stage.into();
        let mut errors = self.lock();
        errors[stage.index()] = Some(DeliveryError {
            stage,
            error_code: error_code.into(),
            error_message: error_message.into(),
            at_ms,
        });
        self.failing.fetch_or(stage.bit(), Ordering::Relaxed);
    }

    /// Records that an attempt of `stage` succeeded: its error, if any, is cleared.
    pub fn succeeded(&self, stage: impl Into<Stage>) {
        let stage = stage.into();
        if self.failing.load(Ordering::Relaxed) & stage.bit() == 0 {
            return;
        }
        let mut errors = self.lock();
        errors[stage.index()] = None;
        self.failing.fetch_and(!stage.bit(), Ordering::Relaxed);
    }

    /// The newest error of any stage that is still failing.
    pub fn latest(&self) -> Option<DeliveryError> {
        if self.failing.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.lock()
            .iter()
            .flatten()
            .max_by_key(|e| e.at_ms)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_clears_only_its_own_stage_and_the_newest_error_is_shown() {
        let errors = LatestErrors::default();
        assert_eq!(errors.latest(), None);
        errors.failed(
            Destination::S3,
            "S3.NoSuchBucket",
            "The specified bucket does not exist",
            10,
        );
        errors.failed(Stage::Lambda, "Lambda.FunctionError", "boom", 20);
        assert_eq!(errors.latest().map(|e| e.stage), Some(Stage::Lambda));
        errors.succeeded(Stage::Lambda);
        let latest = errors.latest().expect("S3 is still failing");
        assert_eq!(latest.stage, Stage::Destination(Destination::S3));
        assert_eq!(
            latest.details(),
            "S3.NoSuchBucket: The specified bucket does not exist"
        );
        errors.succeeded(Destination::HttpEndpoint);
        assert_eq!(
            errors.latest().map(|e| e.stage),
            Some(Stage::Destination(Destination::S3))
        );
        errors.succeeded(Destination::S3);
        assert_eq!(errors.latest(), None);
    }

    #[test]
    fn a_stage_that_keeps_failing_keeps_its_newest_error() {
        let errors = LatestErrors::default();
        errors.failed(
            Destination::HttpEndpoint,
            "HttpEndpoint.ResponseErrorCode",
            "500",
            1,
        );
        errors.failed(
            Destination::HttpEndpoint,
            "HttpEndpoint.RequestTimeout",
            "timed out",
            2,
        );
        let latest = errors.latest().expect("failing");
        assert_eq!(latest.error_code, "HttpEndpoint.RequestTimeout");
        assert_eq!(latest.at_ms, 2);
    }

    #[test]
    fn every_stage_has_its_own_bit() {
        let stages: Vec<Stage> = [Stage::Source, Stage::Lambda]
            .into_iter()
            .chain(DESTINATIONS.map(Stage::from))
            .collect();
        assert_eq!(stages.len(), STAGES);
        let all = stages.iter().fold(0u8, |all, stage| {
            assert_eq!(all & stage.bit(), 0, "{stage:?} shares a bit");
            all | stage.bit()
        });
        assert_eq!(all.count_ones() as usize, STAGES);
    }
}
