//! Amounts of money: integer KRW, checked arithmetic, no floating point.

use std::fmt;

/// The largest amount a single request may carry (one trillion KRW). Well inside `i64`, so
/// sums of a few thousand of them can never overflow.
pub const MAX_AMOUNT_KRW: i64 = 1_000_000_000_000;

/// Top-ups made on the user's behalf are rounded up to a multiple of this.
pub const AUTO_CHARGE_UNIT_KRW: i64 = 10_000;

/// A strictly positive amount of KRW, bounded by [`MAX_AMOUNT_KRW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be greater than 0")]
    NotPositive,
    #[error("amount must be at most {MAX_AMOUNT_KRW}")]
    TooLarge,
}

impl Amount {
    pub fn parse(value: i64) -> Result<Self, AmountError> {
        if value <= 0 {
            Err(AmountError::NotPositive)
        } else if value > MAX_AMOUNT_KRW {
            Err(AmountError::TooLarge)
        } else {
            Ok(Amount(value))
        }
    }

    pub fn krw(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KRW", self.0)
    }
}

/// How much must be topped up so that `available` covers `needed`: zero when it already
/// does, otherwise the shortfall rounded up to a multiple of [`AUTO_CHARGE_UNIT_KRW`].
/// `None` only on overflow, which bounded amounts never reach.
pub fn auto_charge_for(available: i64, needed: i64) -> Option<i64> {
    let shortfall = needed.checked_sub(available)?;
    if shortfall <= 0 {
        return Some(0);
    }
    let units = shortfall.checked_add(AUTO_CHARGE_UNIT_KRW - 1)? / AUTO_CHARGE_UNIT_KRW;
    units.checked_mul(AUTO_CHARGE_UNIT_KRW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_must_be_positive_and_bounded() {
        assert_eq!(Amount::parse(0), Err(AmountError::NotPositive));
        assert_eq!(Amount::parse(-5), Err(AmountError::NotPositive));
        assert_eq!(Amount::parse(MAX_AMOUNT_KRW + 1), Err(AmountError::TooLarge));
        assert_eq!(Amount::parse(1).map(Amount::krw), Ok(1));
    }

    #[test]
    fn auto_charge_rounds_up_to_units_of_ten_thousand() {
        assert_eq!(auto_charge_for(20_000, 20_000), Some(0));
        assert_eq!(auto_charge_for(0, 10_000), Some(10_000));
        assert_eq!(auto_charge_for(0, 10_001), Some(20_000));
        assert_eq!(auto_charge_for(12_000, 20_000), Some(10_000));
        assert_eq!(auto_charge_for(5_000, 3_500_000), Some(3_500_000));
    }

    proptest! {
        #[test]
        fn auto_charge_covers_the_shortfall_with_less_than_one_unit_to_spare(
            available in 0i64..MAX_AMOUNT_KRW, needed in 1i64..MAX_AMOUNT_KRW
        ) {
            let charge = auto_charge_for(available, needed).unwrap();
            prop_assert_eq!(charge % AUTO_CHARGE_UNIT_KRW, 0);
            prop_assert!(available + charge >= needed);
            if charge > 0 {
                prop_assert!(available + charge - needed < AUTO_CHARGE_UNIT_KRW);
            }
        }
    }
}
