//! Business days: the calendar days of the business time zone (Asia/Seoul by default), used
//! for the daily top-up limit and the daily jobs.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// The business date that `at` falls on in `tz`.
pub fn business_date(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The instant the business date after `date` starts, in UTC.
pub fn start_of_next_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    start_of_day(date + Duration::days(1), tz)
}

/// The first instant of `date` in `tz`. Zones with a DST gap at midnight start the day at the
/// first valid local time.
pub fn start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut local = date.and_hms_opt(0, 0, 0).expect("midnight exists on every date");
    for _ in 0..24 {
        if let Some(at) = tz.from_local_datetime(&local).earliest() {
            return at.with_timezone(&Utc);
        }
        local += Duration::hours(1);
    }
    unreachable!("no time zone skips a whole day")
}

/// The first day of the month `date` lies in.
pub fn first_of_month(date: NaiveDate) -> NaiveDate {
    date.with_day(1).expect("day 1 exists in every month")
}

/// The first day of the month after the one `date` lies in.
pub fn first_of_next_month(date: NaiveDate) -> NaiveDate {
    let first = first_of_month(date);
    if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1).expect("valid date")
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1).expect("valid date")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seoul() -> Tz {
        chrono_tz::Asia::Seoul
    }

    #[test]
    fn seoul_midnight_is_fifteen_hundred_utc() {
        let before = "2026-01-05T14:59:59Z".parse::<DateTime<Utc>>().unwrap();
        let after = "2026-01-05T15:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(business_date(before, seoul()), NaiveDate::from_ymd_opt(2026, 1, 5).unwrap());
        assert_eq!(business_date(after, seoul()), NaiveDate::from_ymd_opt(2026, 1, 6).unwrap());
        assert_eq!(start_of_next_day(NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(), seoul()), after);
    }

    #[test]
    fn months_roll_over_years() {
        let december = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(first_of_next_month(december), NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
        assert_eq!(first_of_month(december), NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
    }
}
