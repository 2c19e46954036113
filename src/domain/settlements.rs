//! Split bills: how a total is divided into shares, who holds which share, and their states.
//!
//! Shares are recorded by position, and the position is what the allocation is audited by:
//! the requester's own share (when they hold one) is position 0, then the participants in the
//! order of the request.
//!
//! Every share is at least 1 KRW, so a total smaller than the number of shares is refused.
//!
//! - `equal`: every share is `total / n` and the first `total % n` positions carry one extra
//!   won each. So a requester who holds a share absorbs the first extra won before anyone they
//!   asked to pay, and the shares differ by at most 1 KRW.
//! - `random`: a uniformly random composition of the total into positive shares (every way of
//!   writing the total as `n` ordered shares ≥ 1 is equally likely), so no position is
//!   favoured over another, whatever the total. It is drawn from a ChaCha20 stream keyed by a
//!   seed stored with the settlement, so the same seed, total and number of shares always give
//!   the same shares again.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::ids::{SettlementId, TransferId, UserId};
use super::money::Amount;
use super::text_enum::text_enum;

/// At most this many users may be asked to pay in one settlement.
pub const PARTICIPANTS_MAX: usize = 100;
/// Participants plus the requester's own share.
pub const SHARES_MAX: usize = PARTICIPANTS_MAX + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SplitMode {
    /// Shares differ by at most 1 KRW.
    Equal,
    /// A uniformly random composition of the total into shares of at least 1 KRW.
    Random,
}

text_enum!(SplitMode { Equal => "equal", Random => "random" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SettlementStatus {
    /// Some share is still owed.
    Open,
    /// No share is still owed: every participant has paid or declined.
    Completed,
}

text_enum!(SettlementStatus { Open => "open", Completed => "completed" });

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
pub enum ShareStatus {
    /// Owed by a participant.
    #[serde(rename = "requested")]
    Requested,
    #[serde(rename = "paid")]
    Paid,
    /// The requester's own part: never paid, only shown.
    #[serde(rename = "self")]
    Own,
    /// The participant said no: never paid.
    #[serde(rename = "declined")]
    Declined,
}

text_enum!(ShareStatus { Requested => "requested", Paid => "paid", Own => "self", Declined => "declined" });

/// A share as the ledger writer needs it to take a payment, and to answer it with the
/// settlement's shares as its batch leaves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub user_id: UserId,
    pub amount: i64,
    pub status: ShareStatus,
    pub paid_at: Option<DateTime<Utc>>,
    pub transfer_id: Option<TransferId>,
}

/// A settlement is complete when no share is still owed.
pub fn all_settled(shares: &[Share]) -> bool {
    shares.iter().all(|share| share.status != ShareStatus::Requested)
}

/// Why a share cannot be declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeclineError {
    #[error("no share of this user")]
    NoShare,
    #[error("the share is already paid")]
    Paid,
    #[error("the share is already declined")]
    Declined,
    #[error("the requester's own share cannot be declined")]
    Own,
}

/// Declines `user_id`'s share, which only a share still `requested` can be. Answers whether
/// the settlement is then complete.
pub fn decline(shares: &mut [Share], user_id: UserId) -> Result<bool, DeclineError> {
    let share = shares.iter_mut().find(|share| share.user_id == user_id).ok_or(DeclineError::NoShare)?;
    match share.status {
        ShareStatus::Requested => share.status = ShareStatus::Declined,
        ShareStatus::Paid => return Err(DeclineError::Paid),
        ShareStatus::Declined => return Err(DeclineError::Declined),
        ShareStatus::Own => return Err(DeclineError::Own),
    }
    Ok(all_settled(shares))
}

/// A settlement as stored, decoded from `to_jsonb(settlements)`; `shares` in position order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Settlement {
    pub id: SettlementId,
    pub requester_id: UserId,
    pub total: i64,
    pub mode: SplitMode,
    pub status: SettlementStatus,
    pub memo: Option<String>,
    /// What reproduces a random split (absent for an equal one).
    pub seed: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub shares: Vec<SettlementShare>,
}

/// A stored share, decoded from `to_jsonb(settlement_shares)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SettlementShare {
    pub settlement_id: SettlementId,
    pub user_id: UserId,
    pub position: i32,
    pub amount: i64,
    pub status: ShareStatus,
    pub paid_at: Option<DateTime<Utc>>,
    /// The transfer that paid it; absent until it is paid, and for the requester's own share.
    pub transfer_id: Option<TransferId>,
}

impl From<&SettlementShare> for Share {
    fn from(share: &SettlementShare) -> Self {
        Share {
            user_id: share.user_id,
            amount: share.amount,
            status: share.status,
            paid_at: share.paid_at,
            transfer_id: share.transfer_id,
        }
    }
}

/// A share of a settlement about to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedShare {
    pub position: i32,
    pub user_id: UserId,
    pub amount: i64,
    /// `Requested` for a participant, `Own` for the requester.
    pub status: ShareStatus,
}

/// Why a settlement request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error("participant_ids must name at least one user")]
    NoParticipants,
    #[error("participant_ids may name at most {PARTICIPANTS_MAX} users")]
    TooManyParticipants,
    #[error("participant_ids names user {0} more than once")]
    DuplicateParticipant(UserId),
    #[error("participant_ids may not include the requester; use include_requester for a share of your own")]
    RequesterAsParticipant,
    #[error("total must be at least {shares} KRW: every one of the {shares} shares is at least 1 KRW")]
    TotalBelowShares { shares: usize },
}

/// Whether the requester holds a share of their own (already paid: `ShareStatus::Own`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequesterShare {
    Excluded,
    Included,
}

impl From<bool> for RequesterShare {
    /// The API's `include_requester`.
    fn from(include_requester: bool) -> Self {
        if include_requester {
            RequesterShare::Included
        } else {
            RequesterShare::Excluded
        }
    }
}

/// Checks who is asked to pay and divides `total` among them (and the requester, with
/// [`RequesterShare::Included`]), in position order. `seed` is used only by a random split.
pub fn plan_shares(
    requester_id: UserId,
    participant_ids: &[UserId],
    requester_share: RequesterShare,
    total: Amount,
    mode: SplitMode,
    seed: i64,
) -> Result<Vec<PlannedShare>, SettlementError> {
    if participant_ids.is_empty() {
        return Err(SettlementError::NoParticipants);
    }
    if participant_ids.len() > PARTICIPANTS_MAX {
        return Err(SettlementError::TooManyParticipants);
    }
    let mut seen = BTreeSet::new();
    for &id in participant_ids {
        if id == requester_id {
            return Err(SettlementError::RequesterAsParticipant);
        }
        if !seen.insert(id) {
            return Err(SettlementError::DuplicateParticipant(id));
        }
    }
    let holders: Vec<(UserId, ShareStatus)> = (requester_share == RequesterShare::Included)
        .then_some((requester_id, ShareStatus::Own))
        .into_iter()
        .chain(participant_ids.iter().map(|&id| (id, ShareStatus::Requested)))
        .collect();
    if total.krw() < holders.len() as i64 {
        return Err(SettlementError::TotalBelowShares { shares: holders.len() });
    }
    let amounts = match mode {
        SplitMode::Equal => split_equal(total, holders.len()),
        SplitMode::Random => split_random(total, holders.len(), seed),
    };
    Ok(holders
        .into_iter()
        .zip(amounts)
        .zip(0i32..)
        .map(|(((user_id, status), amount), position)| PlannedShare { position, user_id, amount, status })
        .collect())
}

/// `count` shares that sum to `total` and differ by at most 1 KRW; the first `total % count`
/// positions carry the extra won. No shares for a count of 0 or above `total` (a share would
/// be 0 KRW).
pub fn split_equal(total: Amount, count: usize) -> Vec<i64> {
    let Ok(divisor) = i64::try_from(count) else { return Vec::new() };
    if divisor == 0 || divisor > total.krw() {
        return Vec::new();
    }
    let base = total.krw() / divisor;
    let extra = total.krw() % divisor;
    (0..divisor).map(|position| if position < extra { base + 1 } else { base }).collect()
}

/// `count` shares of at least 1 KRW that sum to `total`, every such composition equally
/// likely (so the shares are exchangeable: no position is favoured), drawn deterministically
/// from `seed`. No shares for a count of 0, above [`SHARES_MAX`], or above `total`.
///
/// The draw is in two steps. First a composition of the whole total into shares ≥ 0, the way
/// random splits were drawn before shares had a minimum: when no share is 0 it is the answer,
/// so a split stored before the minimum still comes back from its seed. Otherwise the stream
/// goes on to a composition of `total − count` into shares ≥ 0, plus 1 KRW each (the same as
/// `count − 1` distinct cut points in `1..total`). With A compositions into shares ≥ 0 and B
/// of them positive, each positive one comes out with probability 1/A (first step) +
/// (1 − B/A) · 1/B (second step) = 1/B: uniform.
pub fn split_random(total: Amount, count: usize, seed: i64) -> Vec<i64> {
    if count == 0 || count > SHARES_MAX || count as i64 > total.krw() {
        return Vec::new();
    }
    let mut rng = seeded_rng(seed);
    // Both are far below 2^63: the total is bounded by MAX_AMOUNT_KRW and count by SHARES_MAX.
    let (total, count) = (total.krw() as u64, count as u64);
    let first = composition(&mut rng, total, count);
    if first.iter().all(|share| *share >= 1) {
        return first;
    }
    composition(&mut rng, total - count, count).into_iter().map(|share| share + 1).collect()
}

/// A uniformly random composition of `stars` into `count` (≥ 1) ordered parts ≥ 0.
///
/// Stars and bars: `count − 1` bars among `stars + count − 1` slots; a uniformly random set of
/// bar slots (Robert Floyd's sampling) is a uniformly random composition, and the parts are
/// the runs of stars between bars. Sorting `count − 1` independent cut points in `0..=stars`
/// would not do: ties favour the middle positions when `stars` is small (1 among 3 would land
/// in the middle half the time).
fn composition(rng: &mut ChaCha20Rng, stars: u64, count: u64) -> Vec<i64> {
    let bars = count - 1;
    let slots = stars + bars;
    let mut chosen = BTreeSet::new();
    for candidate in (slots - bars)..slots {
        let slot = uniform_below(rng, candidate + 1);
        if !chosen.insert(slot) {
            chosen.insert(candidate);
        }
    }
    let mut parts = Vec::with_capacity(count as usize);
    let mut previous: i64 = -1;
    for bar in chosen.into_iter().map(|slot| slot as i64).chain(std::iter::once(slots as i64)) {
        parts.push(bar - previous - 1);
        previous = bar;
    }
    parts
}

/// The random stream of a split: ChaCha20 keyed by the seed's little-endian bytes. Chosen over
/// `StdRng` because its output is fixed by the algorithm, not by a library version.
fn seeded_rng(seed: i64) -> ChaCha20Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    ChaCha20Rng::from_seed(key)
}

/// A uniform draw from `0..bound` (`bound ≥ 1`). Draws in the incomplete last block of
/// `bound`-sized blocks of u64 are rejected so that every value is equally likely; for the
/// bounds used here (≤ 10^12 + 100) a rejection has a chance below 10^-7, so the loop ends
/// after one or two draws.
fn uniform_below(rng: &mut ChaCha20Rng, bound: u64) -> u64 {
    debug_assert!(bound >= 1);
    // 2^64 mod bound: the size of the incomplete block at the top of the u64 range.
    let incomplete = bound.wrapping_neg() % bound;
    loop {
        let draw = rng.next_u64();
        if draw <= u64::MAX - incomplete {
            return draw % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::MAX_AMOUNT_KRW;
    use proptest::prelude::*;

    const REQUESTER: UserId = UserId::new(1);

    fn ids(raw: &[i64]) -> Vec<UserId> {
        raw.iter().copied().map(UserId::new).collect()
    }

    fn krw(value: i64) -> Amount {
        Amount::parse(value).unwrap()
    }

    #[test]
    fn equal_split_gives_the_extra_won_to_the_first_positions() {
        assert_eq!(split_equal(krw(20_000), 3), vec![6_667, 6_667, 6_666]);
        assert_eq!(split_equal(krw(30_006), 4), vec![7_502, 7_502, 7_501, 7_501]);
        assert_eq!(split_equal(krw(30_000), 3), vec![10_000; 3]);
        assert_eq!(split_equal(krw(4), 4), vec![1; 4]);
        assert_eq!(split_equal(krw(7), 1), vec![7]);
        assert_eq!(split_equal(krw(7), 0), Vec::<i64>::new());
        // A share would be 0 KRW.
        assert_eq!(split_equal(krw(3), 4), Vec::<i64>::new());
    }

    #[test]
    fn the_requester_holds_position_zero_then_participants_in_request_order() {
        let shares =
            plan_shares(REQUESTER, &ids(&[7, 5]), RequesterShare::Included, krw(20_000), SplitMode::Equal, 0).unwrap();
        assert_eq!(
            shares,
            vec![
                PlannedShare { position: 0, user_id: UserId::new(1), amount: 6_667, status: ShareStatus::Own },
                PlannedShare { position: 1, user_id: UserId::new(7), amount: 6_667, status: ShareStatus::Requested },
                PlannedShare { position: 2, user_id: UserId::new(5), amount: 6_666, status: ShareStatus::Requested },
            ]
        );
        let shares =
            plan_shares(REQUESTER, &ids(&[7, 5]), RequesterShare::Excluded, krw(20_001), SplitMode::Equal, 0).unwrap();
        assert_eq!(
            shares.iter().map(|share| (share.user_id, share.amount)).collect::<Vec<_>>(),
            [(UserId::new(7), 10_001), (UserId::new(5), 10_000)]
        );
    }

    #[test]
    fn who_is_asked_to_pay_is_checked() {
        let plan = |participants: &[UserId], include_requester: bool| {
            plan_shares(REQUESTER, participants, include_requester.into(), krw(1_000), SplitMode::Random, 3)
        };
        assert_eq!(plan(&[], false), Err(SettlementError::NoParticipants));
        assert_eq!(plan(&[], true), Err(SettlementError::NoParticipants));
        assert_eq!(plan(&ids(&[2, 3, 2]), false), Err(SettlementError::DuplicateParticipant(UserId::new(2))));
        assert_eq!(plan(&ids(&[2, 1]), true), Err(SettlementError::RequesterAsParticipant));
        let hundred: Vec<UserId> = (2..102).map(UserId::new).collect();
        assert_eq!(plan(&hundred, true).map(|shares| shares.len()), Ok(101));
        let too_many: Vec<UserId> = (2..103).map(UserId::new).collect();
        assert_eq!(plan(&too_many, false), Err(SettlementError::TooManyParticipants));
    }

    #[test]
    fn a_total_below_the_number_of_shares_is_refused_in_both_modes() {
        for mode in [SplitMode::Equal, SplitMode::Random] {
            let plan = |total, include_requester| {
                plan_shares(REQUESTER, &ids(&[2, 3, 4]), RequesterShare::from(include_requester), krw(total), mode, 3)
            };
            assert_eq!(plan(2, false), Err(SettlementError::TotalBelowShares { shares: 3 }));
            assert_eq!(plan(3, true), Err(SettlementError::TotalBelowShares { shares: 4 }));
            let amounts = |total, include_requester| {
                plan(total, include_requester).unwrap().iter().map(|share| share.amount).collect::<Vec<_>>()
            };
            assert_eq!(amounts(3, false), vec![1; 3]);
            assert_eq!(amounts(4, true), vec![1; 4]);
        }
    }

    #[test]
    fn a_random_split_is_reproduced_from_its_seed() {
        // Pinned values, computed independently from the ChaCha20 block function (key = seed
        // bytes, zero nonce, little-endian words): if they change, stored seeds no longer
        // reproduce stored splits.
        assert_eq!(split_random(krw(20_000), 3, 42), split_random(krw(20_000), 3, 42));
        assert_eq!(split_random(krw(20_000), 3, 42), vec![13_346, 3_090, 3_564]);
        // The first draw has a share of 0 here ([0, 0, 2, 8]), so the second one counts.
        assert_eq!(split_random(krw(10), 4, -1), vec![3, 1, 3, 3]);
        assert_eq!(
            split_random(krw(MAX_AMOUNT_KRW), 5, 7),
            vec![479_182_553_650, 20_015_484_443, 96_513_970_925, 277_359_948_726, 126_928_042_256]
        );
        assert_ne!(split_random(krw(20_000), 3, 42), split_random(krw(20_000), 3, 43));
    }

    #[test]
    fn random_split_edge_cases() {
        assert_eq!(split_random(krw(1), 1, 9), vec![1]);
        assert_eq!(split_random(krw(MAX_AMOUNT_KRW), 1, 9), vec![MAX_AMOUNT_KRW]);
        assert_eq!(split_random(krw(5), 0, 9), Vec::<i64>::new());
        assert_eq!(split_random(krw(5), 6, 9), Vec::<i64>::new());
        assert_eq!(split_random(krw(SHARES_MAX as i64), SHARES_MAX, 9), vec![1; SHARES_MAX]);
        let shares = split_random(krw(SHARES_MAX as i64 + 1), SHARES_MAX, 9);
        assert_eq!(shares.iter().filter(|share| **share == 2).count(), 1, "{shares:?}");
        assert_eq!(shares.iter().sum::<i64>(), SHARES_MAX as i64 + 1);
        assert_eq!(split_random(krw(MAX_AMOUNT_KRW), SHARES_MAX, 9).iter().sum::<i64>(), MAX_AMOUNT_KRW);
    }

    #[test]
    fn scenario_14_a_thousand_random_splits_are_exact_and_at_least_1_krw_each() {
        for trial in 0..1_000i64 {
            let count = 1 + (trial % 10) as usize;
            // Small totals among them, where shares of 0 would be likely.
            let total = count as i64 + if trial % 2 == 0 { trial % 7 } else { (trial * 7_919) % 50_000 };
            let shares = split_random(krw(total), count, trial);
            assert_eq!(shares.len(), count);
            assert_eq!(shares.iter().sum::<i64>(), total, "trial {trial}");
            assert!(shares.iter().all(|share| *share >= 1), "trial {trial}: {shares:?}");
        }
    }

    /// Mean share per position over many seeds (fixed, so the test cannot flake): within five
    /// standard errors of total / n for every position. A share of a uniform composition has
    /// variance total² (n−1) / (n² (n+1)) (near enough), so with S the sum of a position's
    /// shares over T trials the bound |S − T·total/n| < 5 √(T·variance) becomes, squared and
    /// in integers, (n·S − T·total)² (n+1) < 25 T total² (n−1).
    #[test]
    fn random_splits_do_not_favour_any_position_on_average() {
        let (total, count, trials) = (1_000i64, 4usize, 20_000i64);
        let mut sums = vec![0i64; count];
        for seed in 0..trials {
            for (sum, share) in sums.iter_mut().zip(split_random(krw(total), count, seed)) {
                *sum += share;
            }
        }
        let n = count as i128;
        let (total, trials) = (i128::from(total), i128::from(trials));
        for (position, sum) in sums.iter().enumerate() {
            let deviation = n * i128::from(*sum) - trials * total;
            assert!(
                deviation * deviation * (n + 1) < 25 * trials * total * total * (n - 1),
                "position {position}: {sum} over {trials} trials, expected about {}",
                trials * total / n
            );
        }
    }

    /// Small totals are where the draw could go wrong: a cut-point method would favour the
    /// middle positions, and the fall-back from a first draw with a share of 0 could favour
    /// the splits that first draw gives. Every composition of `total` into `count` positive
    /// shares must come up equally often over fixed seeds: chi-square against the 0.1%
    /// critical value for (compositions − 1) degrees of freedom, in hundredths.
    #[test]
    fn small_random_splits_are_uniform_over_compositions() {
        // (total, count, compositions, critical value): 1 KRW extra among 3 (C(3,2) = 3
        // compositions, 2 degrees of freedom), 2 among 3 (6, 5), 2 among 4 (10, 9), and 12
        // between 2 (11, 10), where the first draw is nearly always kept.
        for (total, count, cells, critical_hundredths) in
            [(4i64, 3usize, 3usize, 1_382i64), (5, 3, 6, 2_052), (6, 4, 10, 2_788), (12, 2, 11, 2_959)]
        {
            let all = compositions(total, count);
            assert_eq!(all.len(), cells);
            let trials = 600 * cells as i64;
            let mut seen = vec![0i64; cells];
            for seed in 0..trials {
                let shares = split_random(krw(total), count, seed);
                let index = all.iter().position(|composition| *composition == shares).unwrap_or_else(|| {
                    panic!("{shares:?} is not a composition of {total} into {count} positive shares")
                });
                seen[index] += 1;
            }
            assert!(chi_square_below(&seen, trials, critical_hundredths), "{total} among {count}: {seen:?}");
        }
    }

    /// Every composition of `total` into `count` shares ≥ 1, in lexicographic order.
    fn compositions(total: i64, count: usize) -> Vec<Vec<i64>> {
        if count == 1 {
            return vec![vec![total]];
        }
        (1..=total - count as i64 + 1)
            .flat_map(|first| {
                compositions(total - first, count - 1).into_iter().map(move |mut rest| {
                    rest.insert(0, first);
                    rest
                })
            })
            .collect()
    }

    /// Σ (observed − expected)² / expected < critical / 100, for `trials` spread evenly (a
    /// multiple of the number of cells).
    fn chi_square_below(observed: &[i64], trials: i64, critical_hundredths: i64) -> bool {
        let expected = trials / observed.len() as i64;
        let squares: i64 = observed.iter().map(|count| (count - expected) * (count - expected)).sum();
        squares * 100 < critical_hundredths * expected
    }

    #[test]
    fn uniform_below_stays_in_range() {
        let mut rng = seeded_rng(5);
        for bound in [1u64, 2, 3, 10, 1_000_000_000_101] {
            for _ in 0..100 {
                assert!(uniform_below(&mut rng, bound) < bound);
            }
        }
    }

    proptest! {
        #[test]
        fn both_modes_sum_exactly_with_shares_of_at_least_1_krw(
            total in 101i64..=MAX_AMOUNT_KRW, count in 1usize..=SHARES_MAX, seed in any::<i64>()
        ) {
            let equal = split_equal(krw(total), count);
            prop_assert_eq!(equal.len(), count);
            prop_assert_eq!(equal.iter().sum::<i64>(), total);
            let (lowest, highest) = (equal.iter().min().unwrap(), equal.iter().max().unwrap());
            prop_assert!(*lowest >= 1 && highest - lowest <= 1);
            // The larger shares come first.
            prop_assert!(equal.windows(2).all(|pair| pair[0] >= pair[1]));

            let random = split_random(krw(total), count, seed);
            prop_assert_eq!(random.len(), count);
            prop_assert_eq!(random.iter().sum::<i64>(), total);
            prop_assert!(random.iter().all(|share| *share >= 1));
        }

        #[test]
        fn small_totals_split_exactly_too(total in 1i64..=200, count in 1usize..=SHARES_MAX, seed in any::<i64>()) {
            let random = split_random(krw(total), count, seed);
            let equal = split_equal(krw(total), count);
            if total < count as i64 {
                prop_assert!(random.is_empty() && equal.is_empty());
            } else {
                prop_assert_eq!(random.len(), count);
                prop_assert_eq!(random.iter().sum::<i64>(), total);
                prop_assert!(random.iter().all(|share| *share >= 1));
                prop_assert_eq!(equal.iter().sum::<i64>(), total);
                prop_assert!(equal.iter().all(|share| *share >= 1));
            }
        }

        #[test]
        fn planned_shares_hold_the_whole_total(
            total in 1i64..=MAX_AMOUNT_KRW,
            participants in proptest::collection::btree_set(2i64..10_000, 1..=PARTICIPANTS_MAX),
            include_requester in any::<bool>(),
            random in any::<bool>(),
            seed in any::<i64>(),
        ) {
            let participants: Vec<UserId> = participants.into_iter().map(UserId::new).collect();
            let mode = if random { SplitMode::Random } else { SplitMode::Equal };
            let count = participants.len() + usize::from(include_requester);
            let planned = plan_shares(REQUESTER, &participants, include_requester.into(), krw(total), mode, seed);
            if total < count as i64 {
                prop_assert_eq!(planned, Err(SettlementError::TotalBelowShares { shares: count }));
                return Ok(());
            }
            let shares = planned.unwrap();
            prop_assert_eq!(shares.len(), count);
            prop_assert_eq!(shares.iter().map(|share| share.amount).sum::<i64>(), total);
            prop_assert!(shares.iter().enumerate().all(|(index, share)| share.position as usize == index));
            prop_assert_eq!(shares[0].status == ShareStatus::Own, include_requester);
        }
    }
}
