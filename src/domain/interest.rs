//! Daily simple interest in integers.
//!
//! A day's interest on principal `p` at `rate_bp` basis points a year is
//! `p × rate_bp / (10,000 × 365)` KRW. Only whole won are posted; the fraction left over is
//! carried per account (as a numerator over [`DAY_DENOMINATOR`]) into the next day. So over any
//! run of days the total posted is the floor of the exact total: it never exceeds it and falls
//! short by less than 1 KRW.
//!
//! What an account is owed for a run of business days ([`owed_interest`]) is the same
//! arithmetic day after day: the interest job pays it at 04:00 for the day before (or, after
//! downtime, for every day since the account was last paid), and closing an account pays it
//! for every completed day not yet paid. Over days on which the principal did not change,
//! `n` days at once post exactly what `n` single days would ([`interest_for_days`]), so a
//! long gap is paid in one posting per account without changing a won of the result.

use chrono::NaiveDate;

/// Basis points per unit × days in the year (the day count is 365, leap years included).
pub const DAY_DENOMINATOR: i64 = 10_000 * 365;

/// One day's interest: what to post now, and the carry for the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyInterest {
    pub posted: i64,
    pub carry: i64,
}

/// The interest for one day on `principal`, with the fraction `carry` brought from earlier
/// days (`0 ≤ carry < DAY_DENOMINATOR`). None if the arithmetic would overflow, which needs a
/// principal far beyond any balance the ledger allows.
pub fn daily_interest(principal: i64, rate_bp: i32, carry: i64) -> Option<DailyInterest> {
    if principal < 0 || rate_bp < 0 || !(0..DAY_DENOMINATOR).contains(&carry) {
        return None;
    }
    let numerator = principal.checked_mul(i64::from(rate_bp))?.checked_add(carry)?;
    Some(DailyInterest { posted: numerator / DAY_DENOMINATOR, carry: numerator % DAY_DENOMINATOR })
}

/// `days` days of interest on an unchanged `principal`, starting from `carry`: exactly what
/// `days` calls of [`daily_interest`], each given the carry of the one before, post in total,
/// and the carry after the last. None where one day would be refused, or on overflow.
pub fn interest_for_days(principal: i64, rate_bp: i32, carry: i64, days: u32) -> Option<DailyInterest> {
    if principal < 0 || rate_bp < 0 || !(0..DAY_DENOMINATOR).contains(&carry) {
        return None;
    }
    // A single day must not overflow either, so that days at once and one by one agree.
    principal.checked_mul(i64::from(rate_bp))?.checked_add(carry)?;
    let numerator = i128::from(principal) * i128::from(rate_bp) * i128::from(days) + i128::from(carry);
    let denominator = i128::from(DAY_DENOMINATOR);
    Some(DailyInterest {
        posted: i64::try_from(numerator / denominator).ok()?,
        carry: i64::try_from(numerator % denominator).ok()?,
    })
}

/// The first business day an account is owed interest for: the day after the last one paid,
/// or, never paid, the day it was opened (a deposit made that day earns for it).
pub fn first_day_owed(paid_through: Option<NaiveDate>, opened_on: NaiveDate) -> NaiveDate {
    match paid_through.and_then(|through| through.succ_opt()) {
        Some(next) => next.max(opened_on),
        None => opened_on,
    }
}

/// The interest owed for the business days `first..=last` (none when `first > last`).
///
/// `principal_now` is what earns now (balance less the interest already paid), and `inflows`
/// what came in (deposits, installments) with the business date each was booked on, in any
/// order; entries from before `first` may be among them. The principal held at the end of day
/// X is `principal_now` less the inflows booked after X (never below 0). Each run of days on
/// which it stayed the same is paid at once with [`interest_for_days`], the carry going on from
/// one run to the next: the result is what paying the days one by one gives.
pub fn owed_interest(
    principal_now: i64,
    inflows: &[(NaiveDate, i64)],
    first: NaiveDate,
    last: NaiveDate,
    rate_bp: i32,
    carry: i64,
) -> Option<DailyInterest> {
    let mut owed = DailyInterest { posted: 0, carry };
    if first > last {
        return (0..DAY_DENOMINATOR).contains(&carry).then_some(owed);
    }
    // The dates on which the principal grew within the days owed, with what came in on each;
    // what came in after `first` is not yet part of the principal at the end of `first`.
    let mut later: Vec<(NaiveDate, i64)> = inflows.iter().copied().filter(|(date, _)| *date > first).collect();
    later.sort_unstable();
    let mut principal = principal_now;
    for (_, amount) in &later {
        principal = principal.checked_sub(*amount)?;
    }
    let mut from = first;
    let mut steps = later.iter().peekable();
    loop {
        // This run ends the day before the next inflow's date, or at `last`.
        let next = steps.peek().map(|(date, _)| *date).filter(|date| *date <= last);
        let to = match next {
            Some(date) => date.pred_opt()?,
            None => last,
        };
        let days = u32::try_from((to - from).num_days() + 1).ok()?;
        let run = interest_for_days(principal.max(0), rate_bp, owed.carry, days)?;
        owed = DailyInterest { posted: owed.posted.checked_add(run.posted)?, carry: run.carry };
        let Some(date) = next else { return Some(owed) };
        while let Some((_, amount)) = steps.next_if(|(on, _)| *on == date) {
            principal = principal.checked_add(*amount)?;
        }
        from = date;
    }
}

/// The memo of an interest entry: the business days it pays.
pub fn days_memo(first: NaiveDate, last: NaiveDate) -> String {
    if first == last {
        format!("interest for {first}")
    } else {
        format!("interest for {first} to {last} ({} days)", (last - first).num_days() + 1)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_million_earns_82_a_day_at_3_percent_and_136_at_5() {
        assert_eq!(daily_interest(1_000_000, 300, 0).unwrap().posted, 82);
        assert_eq!(daily_interest(1_000_000, 500, 0).unwrap().posted, 136);
    }

    #[test]
    fn the_fraction_is_carried_into_the_next_day() {
        let first = daily_interest(1_000_000, 300, 0).unwrap();
        assert_eq!(first.carry, 300_000_000 - 82 * DAY_DENOMINATOR);
        let second = daily_interest(1_000_000, 300, first.carry).unwrap();
        // 2 × 82.19… = 164.38…
        assert_eq!(first.posted + second.posted, 164);
    }

    #[test]
    fn bad_inputs_are_refused_rather_than_wrapped() {
        assert_eq!(daily_interest(-1, 300, 0), None);
        assert_eq!(daily_interest(1, 300, DAY_DENOMINATOR), None);
        assert_eq!(daily_interest(i64::MAX, 500, 0), None);
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn forty_one_days_on_a_million_at_3_percent_are_3369() {
        let owed = owed_interest(1_000_000, &[], date("2026-12-01"), date("2027-01-10"), 300, 0).unwrap();
        assert_eq!(owed.posted, 3_369);
        assert_eq!(owed, interest_for_days(1_000_000, 300, 0, 41).unwrap());
    }

    #[test]
    fn a_deposit_earns_from_the_day_it_was_booked() {
        // 1,000,000 held since before 12-01, 500,000 more booked on 12-03: 12-01 and 12-02 on
        // 1,000,000, 12-03 and 12-04 on 1,500,000.
        let inflows = [(date("2026-11-20"), 1_000_000), (date("2026-12-03"), 500_000)];
        let owed = owed_interest(1_500_000, &inflows, date("2026-12-01"), date("2026-12-04"), 300, 0).unwrap();
        assert_eq!(owed.posted, (2 * 1_000_000 * 300 + 2 * 1_500_000 * 300) / DAY_DENOMINATOR);
        // Booked after the last day owed: it earns nothing yet.
        let inflows = [(date("2026-12-05"), 500_000)];
        let owed = owed_interest(1_500_000, &inflows, date("2026-12-04"), date("2026-12-04"), 300, 0).unwrap();
        assert_eq!(owed.posted, 82);
    }

    #[test]
    fn nothing_is_owed_before_the_first_day_and_the_carry_stays() {
        assert_eq!(
            owed_interest(1_000_000, &[], date("2026-12-02"), date("2026-12-01"), 300, 17),
            Some(DailyInterest { posted: 0, carry: 17 })
        );
        assert_eq!(first_day_owed(None, date("2026-12-01")), date("2026-12-01"));
        assert_eq!(first_day_owed(Some(date("2026-12-03")), date("2026-12-01")), date("2026-12-04"));
    }

    #[test]
    fn the_memo_names_the_days() {
        assert_eq!(days_memo(date("2026-12-01"), date("2026-12-01")), "interest for 2026-12-01");
        assert_eq!(
            days_memo(date("2026-12-02"), date("2027-01-10")),
            "interest for 2026-12-02 to 2027-01-10 (40 days)"
        );
    }

    proptest! {
        /// Days at once post what the same days one by one do, carry included.
        #[test]
        fn days_at_once_equal_days_one_by_one(
            principal in 0i64..100_000_000_000,
            rate_bp in prop_oneof![Just(300), Just(500), 0i32..10_000],
            carry in 0i64..DAY_DENOMINATOR,
            days in 0u32..800,
        ) {
            let mut one_by_one = DailyInterest { posted: 0, carry };
            for _ in 0..days {
                let day = daily_interest(principal, rate_bp, one_by_one.carry).unwrap();
                one_by_one = DailyInterest { posted: one_by_one.posted + day.posted, carry: day.carry };
            }
            prop_assert_eq!(interest_for_days(principal, rate_bp, carry, days), Some(one_by_one));
        }

        /// Owed interest over a run of days with deposits booked on some of them is what the
        /// daily job paying each day on its end-of-day principal would have paid.
        #[test]
        fn owed_interest_equals_paying_each_day(
            start in 0i64..10_000_000_000,
            rate_bp in prop_oneof![Just(300), Just(500), 0i32..10_000],
            carry in 0i64..DAY_DENOMINATOR,
            deposits in proptest::collection::vec((0i64..60, 1i64..5_000_000), 0..8),
            first in 0i64..30,
            days in 0i64..30,
        ) {
            let day0 = date("2026-12-01");
            let at = |offset: i64| day0 + chrono::Duration::days(offset);
            let inflows: Vec<(NaiveDate, i64)> = deposits.iter().map(|(day, amount)| (at(*day), *amount)).collect();
            let now: i64 = start + deposits.iter().map(|(_, amount)| amount).sum::<i64>();
            let mut expected = DailyInterest { posted: 0, carry };
            for offset in first..first + days {
                let held = start + deposits.iter().filter(|(day, _)| *day <= offset).map(|(_, amount)| amount).sum::<i64>();
                let day = daily_interest(held, rate_bp, expected.carry).unwrap();
                expected = DailyInterest { posted: expected.posted + day.posted, carry: day.carry };
            }
            let owed = owed_interest(now, &inflows, at(first), at(first + days - 1), rate_bp, carry);
            prop_assert_eq!(owed, Some(expected));
        }
    }

    proptest! {
        /// Over 365 days of random principals (deposits between days), the sum posted never
        /// exceeds principal × rate × days / 365 summed exactly, and falls short by less than 1.
        #[test]
        fn over_a_year_the_posted_sum_stays_within_one_won_below_the_exact_sum(
            start in 0i64..10_000_000_000,
            rate_bp in prop_oneof![Just(300), Just(500), 0i32..10_000],
            deposits in proptest::collection::vec(0i64..5_000_000, 365),
        ) {
            let mut principal = start;
            let mut carry = 0;
            let mut posted: i128 = 0;
            let mut exact_numerator: i128 = 0;
            for deposit in deposits {
                principal += deposit;
                let day = daily_interest(principal, rate_bp, carry).unwrap();
                prop_assert!(day.posted >= 0 && (0..DAY_DENOMINATOR).contains(&day.carry));
                posted += i128::from(day.posted);
                carry = day.carry;
                exact_numerator += i128::from(principal) * i128::from(rate_bp);
            }
            let denominator = i128::from(DAY_DENOMINATOR);
            // posted ≤ exact and exact − posted < 1, in exact rational arithmetic.
            prop_assert!(posted * denominator <= exact_numerator);
            prop_assert!(exact_numerator - posted * denominator < denominator);
            prop_assert_eq!(exact_numerator - posted * denominator, i128::from(carry));
        }
    }
}
