//! Retention changes: IncreaseStreamRetentionPeriod and DecreaseStreamRetentionPeriod, with
//! AWS's bounds and texts.

use super::Catalog;
use crate::error::KinesisError;
use crate::limits;

/// Which way a retention call may move the period.
#[derive(Clone, Copy, Debug)]
enum RetentionChange {
    Increase,
    Decrease,
}

impl Catalog {
    pub fn increase_stream_retention_period(
        &mut self,
        stream_name: &str,
        retention_period_hours: u32,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        self.change_retention_period(
            RetentionChange::Increase,
            stream_name,
            retention_period_hours,
            now_ms,
        )
    }

    pub fn decrease_stream_retention_period(
        &mut self,
        stream_name: &str,
        retention_period_hours: u32,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        self.change_retention_period(
            RetentionChange::Decrease,
            stream_name,
            retention_period_hours,
            now_ms,
        )
    }

    /// Sets the retention period after the checks both calls share, in AWS's order: RNF when
    /// missing, RIU unless ACTIVE, IA outside 24..=8760 hours, and IA when the period would move
    /// the other way than the call says (an unchanged period is accepted by both).
    fn change_retention_period(
        &mut self,
        change: RetentionChange,
        stream_name: &str,
        retention_period_hours: u32,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let stream = self.found_active_mut(stream_name, now_ms)?;
        if retention_period_hours < limits::RETENTION_HOURS_MIN {
            return Err(KinesisError::invalid_argument(format!(
                "Minimum allowed retention period is {} hours. Requested retention period ({retention_period_hours} hours) is too short.",
                limits::RETENTION_HOURS_MIN
            )));
        }
        if retention_period_hours > limits::RETENTION_HOURS_MAX {
            return Err(KinesisError::invalid_argument(format!(
                "Maximum allowed retention period is {} hours. Requested retention period ({retention_period_hours} hours) is too long.",
                limits::RETENTION_HOURS_MAX
            )));
        }
        let existing_hours = stream.retention_period_hours;
        let (wrong_way, shorter_or_longer, other_call) = match change {
            RetentionChange::Increase => (
                retention_period_hours < existing_hours,
                "shorter",
                "Decrease",
            ),
            RetentionChange::Decrease => (
                retention_period_hours > existing_hours,
                "longer",
                "Increase",
            ),
        };
        if wrong_way {
            return Err(KinesisError::invalid_argument(format!(
                "Requested retention period ({retention_period_hours} hours) for stream {stream_name} can not be {shorter_or_longer} than existing retention period ({existing_hours} hours). Use {other_call}RetentionPeriod API."
            )));
        }
        stream.retention_period_hours = retention_period_hours;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::test_support::*;

    #[test]
    fn retention_changes_use_the_exact_aws_texts() {
        let (mut catalog, now) = active_catalog(1);
        let message = |r: Result<(), KinesisError>| r.map_err(|e| e.message);
        assert_eq!(
            message(catalog.increase_stream_retention_period("s", 23, now)),
            Err("Minimum allowed retention period is 24 hours. Requested retention period (23 hours) is too short.".into())
        );
        assert_eq!(
            message(catalog.increase_stream_retention_period("s", 8761, now)),
            Err("Maximum allowed retention period is 8760 hours. Requested retention period (8761 hours) is too long.".into())
        );
        assert_eq!(
            message(catalog.decrease_stream_retention_period("s", 25, now)),
            Err("Requested retention period (25 hours) for stream s can not be longer than existing retention period (24 hours). Use IncreaseRetentionPeriod API.".into())
        );
        catalog
            .increase_stream_retention_period("s", 25, now)
            .expect("increased");
        catalog
            .increase_stream_retention_period("s", 25, now)
            .expect("same value is fine");
        assert_eq!(
            message(catalog.increase_stream_retention_period("s", 24, now)),
            Err("Requested retention period (24 hours) for stream s can not be shorter than existing retention period (25 hours). Use DecreaseRetentionPeriod API.".into())
        );
        catalog
            .decrease_stream_retention_period("s", 24, now)
            .expect("decreased");
        assert_eq!(catalog.streams["s"].retention_period_hours, 24);
        assert_eq!(
            catalog.increase_stream_retention_period("x", 25, now),
            Err(KinesisError::stream_not_found("x", ACCOUNT))
        );
        create(&mut catalog, "t", 1, now);
        assert_eq!(
            catalog.increase_stream_retention_period("t", 25, now),
            Err(KinesisError::stream_not_active("t", ACCOUNT, "CREATING"))
        );
    }
}
