//! Business days: the calendar days of the business time zone (Asia/Seoul by default), used
//! for the daily top-up limit and the daily jobs.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
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
    local_instant(date, NaiveTime::MIN, tz)
}

/// The instant the wall clocks of `tz` show `time` on `date`. A time that falls into a DST
/// gap moves to the next whole hour that exists; one that occurs twice is its first occurrence.
pub fn local_instant(date: NaiveDate, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let mut local = date.and_time(time);
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
    fn local_times_of_day_in_seoul_and_across_a_dst_gap() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let four = NaiveTime::from_hms_opt(4, 0, 0).unwrap();
        assert_eq!(local_instant(date, four, seoul()), "2026-11-23T19:00:00Z".parse::<DateTime<Utc>>().unwrap());
        // 02:30 does not exist in New York on 2026-03-08: the next hour that does is 03:30 EDT.
        let spring = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        let half_past_two = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        assert_eq!(
            local_instant(spring, half_past_two, chrono_tz::America::New_York),
            "2026-03-08T07:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // 01:30 happens twice on 2026-11-01: the first time, still on EDT.
        let autumn = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let half_past_one = NaiveTime::from_hms_opt(1, 30, 0).unwrap();
        assert_eq!(
            local_instant(autumn, half_past_one, chrono_tz::America::New_York),
            "2026-11-01T05:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn months_roll_over_years() {
        let december = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(first_of_next_month(december), NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
        assert_eq!(first_of_month(december), NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
    }
}
