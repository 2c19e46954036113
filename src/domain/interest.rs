//! Daily simple interest in integers.
//!
//! A day's interest on principal `p` at `rate_bp` basis points a year is
//! `p × rate_bp / (10,000 × 365)` KRW. Only whole won are posted; the fraction left over is
//! carried per account (as a numerator over [`DAY_DENOMINATOR`]) into the next day. So over any
//! run of days the total posted is the floor of the exact total: it never exceeds it and falls
//! short by less than 1 KRW.

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
