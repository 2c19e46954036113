//! Who may reach whom: friends (a one-way contact list, like a phone's), blocks, a user's
//! choice of who may ask them to pay, and the bounds that keep anyone from flooding others
//! with split-bill requests.
//!
//! - A blocked user's new transfers and split-bill requests to the blocker are refused with
//!   the answer a target that does not exist gets, so they cannot tell that they were blocked.
//! - With `settlement_requests_from = friends`, only users in the participant's own friend
//!   list may ask them to pay; anyone else gets that same answer.

use super::accounts::text_enum;

/// Who may ask a user to pay a share of a split bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementRequestsFrom {
    /// Any user (the default).
    Everyone,
    /// Only users in the participant's friend list.
    Friends,
}

text_enum!(SettlementRequestsFrom { Everyone => "everyone", Friends => "friends" });

/// Bounds on friends and blocks (`MINIPAY_FRIENDS_MAX`, `MINIPAY_BLOCKS_MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocialLimits {
    /// Entries of one user's friend list.
    pub friends_max: u32,
    /// Entries of one user's block list.
    pub blocks_max: u32,
}

impl Default for SocialLimits {
    fn default() -> Self {
        SocialLimits { friends_max: 1_000, blocks_max: 1_000 }
    }
}
