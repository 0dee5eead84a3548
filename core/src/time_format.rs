//! Formats epoch milliseconds the way AWS's Java services print a `java.util.Date` in UTC
//! (`EEE MMM dd HH:mm:ss 'UTC' yyyy`, e.g. `Thu Jan 22 01:22:02 UTC 2015`). The
//! ExpiredIteratorException message embeds two such dates, and clients compare it verbatim.
//!
//! The conversion from days since the epoch to a proleptic Gregorian date is the usual
//! era-based one: shift the epoch to 0000-03-01 so that leap days fall at the end of a year,
//! split into 400-year eras of 146 097 days, then into years and a March-based month.

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const SECONDS_PER_DAY: u64 = 86_400;
/// Days from 0000-03-01 to 1970-01-01.
const EPOCH_SHIFT_DAYS: u64 = 719_468;
const DAYS_PER_ERA: u64 = 146_097;

/// A calendar date in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilDate {
    pub year: u64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
}

/// The UTC calendar date `days` days after 1970-01-01.
pub fn civil_from_days(days: u64) -> CivilDate {
    let z = days + EPOCH_SHIFT_DAYS;
    let era = z / DAYS_PER_ERA;
    let day_of_era = z - era * DAYS_PER_ERA;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 = March, …, 11 = February.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    CivilDate {
        year,
        month: u32::try_from(month).expect("a month is 1..=12"),
        day: u32::try_from(day).expect("a day of the month is 1..=31"),
    }
}

/// `Thu Jan 22 01:22:02 UTC 2015` for 1421889722000.
pub fn java_date_utc(epoch_ms: u64) -> String {
    let seconds = epoch_ms / 1000;
    let days = seconds / SECONDS_PER_DAY;
    let second_of_day = seconds % SECONDS_PER_DAY;
    let date = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[usize::try_from((days + 4) % 7).expect("a weekday index is below 7")];
    let month = MONTHS[date.month as usize - 1];
    format!(
        "{weekday} {month} {day:02} {hour:02}:{minute:02}:{second:02} UTC {year}",
        day = date.day,
        hour = second_of_day / 3600,
        minute = second_of_day / 60 % 60,
        second = second_of_day % 60,
        year = date.year,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_date_matches_the_aws_expired_iterator_example() {
        assert_eq!(
            java_date_utc(1_421_889_722_000),
            "Thu Jan 22 01:22:02 UTC 2015"
        );
        assert_eq!(
            java_date_utc(1_421_890_023_999),
            "Thu Jan 22 01:27:03 UTC 2015"
        );
    }

    #[test]
    fn java_date_handles_the_epoch_leap_days_and_century_years() {
        assert_eq!(java_date_utc(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(
            java_date_utc(951_868_799_000),
            "Tue Feb 29 23:59:59 UTC 2000"
        );
        assert_eq!(
            java_date_utc(4_107_542_400_000),
            "Mon Mar 01 00:00:00 UTC 2100"
        );
    }

    proptest::proptest! {
        #[test]
        fn consecutive_days_advance_the_date_by_exactly_one(days in 0u64..3_000_000) {
            let today = civil_from_days(days);
            let tomorrow = civil_from_days(days + 1);
            if tomorrow.day == 1 {
                let next_month = if today.month == 12 { 1 } else { today.month + 1 };
                proptest::prop_assert_eq!(tomorrow.month, next_month);
                proptest::prop_assert_eq!(tomorrow.year, today.year + u64::from(today.month == 12));
                proptest::prop_assert!(today.day >= 28);
            } else {
                proptest::prop_assert_eq!((tomorrow.year, tomorrow.month, tomorrow.day), (today.year, today.month, today.day + 1));
            }
        }
    }
}
