//! Who may reach whom: friends (a one-way contact list, like a phone's), blocks, a user's
//! choice of who may ask them to pay, and the bounds that keep anyone from flooding others
//! with split-bill requests.
//!
//! - A blocked user's new transfers and split-bill requests to the blocker are refused with
//!   the answer a target that does not exist gets, so they cannot tell that they were blocked.
//! - With `settlement_requests_from = friends`, only users in the participant's own friend
//!   list may ask them to pay; anyone else gets that same answer.
//! - Creating split bills is limited per requester per hour, and so are the shares one
//!   requester leaves open (`requested`) with one participant.

use chrono::{DateTime, Duration, Utc};

use super::text_enum::text_enum;

/// Who may ask a user to pay a share of a split bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum SettlementRequestsFrom {
    /// Any user (the default).
    Everyone,
    /// Only users in the participant's friend list.
    Friends,
}

text_enum!(SettlementRequestsFrom { Everyone => "everyone", Friends => "friends" });

/// The window the per-hour creation limit counts in: any hour, not hours of the clock.
pub const SETTLEMENT_WINDOW: Duration = Duration::hours(1);

/// When the open-shares limit refuses a request, the answer's `Retry-After`: the limit lifts
/// only when the participant pays or declines, which no server can foresee, so this is a hint.
pub const OPEN_SHARES_RETRY_AFTER: Duration = Duration::hours(1);

/// Bounds on friends, blocks and split-bill requests (`MINIPAY_FRIENDS_MAX`,
/// `MINIPAY_BLOCKS_MAX`, `MINIPAY_SETTLEMENTS_PER_HOUR`, `MINIPAY_OPEN_SHARES_PER_PARTICIPANT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocialLimits {
    /// Entries of one user's friend list.
    pub friends_max: u32,
    /// Entries of one user's block list.
    pub blocks_max: u32,
    /// Split bills one user may create in any hour; 0 turns the limit off.
    pub settlements_per_hour: u32,
    /// Shares still `requested` that one requester may hold over one participant, across
    /// their settlements; 0 turns the limit off.
    pub open_shares_per_participant: u32,
}

impl Default for SocialLimits {
    fn default() -> Self {
        SocialLimits { friends_max: 1_000, blocks_max: 1_000, settlements_per_hour: 20, open_shares_per_participant: 5 }
    }
}

/// When a requester who has used up the hour's creations may create again: once the oldest
/// creation that still counts (`counted_since`) leaves the window.
pub fn settlements_allowed_again(counted_since: DateTime<Utc>) -> DateTime<Utc> {
    counted_since + SETTLEMENT_WINDOW
}
