//! What a command did, as its caller is answered.

use chrono::{DateTime, Utc};

use crate::domain::accounts::Account;
use crate::domain::ids::SettlementId;
use crate::domain::settlements::Share;
use crate::domain::transfers::Transfer;

/// What a command did, with the accounts as they stand right after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Charged {
        account: Account,
        charged: i64,
        daily_used: i64,
    },
    Deposited {
        savings: Account,
        main: Account,
        auto_charged: i64,
        daily_used: i64,
    },
    Closed {
        savings: Account,
        main: Account,
        /// Everything moved home, the interest included.
        moved: i64,
        /// The interest paid on closing for the days not yet paid.
        interest: i64,
    },
    Transferred {
        transfer: Transfer,
        from_account: Account,
    },
    SharePaid {
        settlement_id: SettlementId,
        transfer: Transfer,
        from_account: Account,
        /// Every share of the settlement, in position order, right after this payment.
        shares: Vec<Share>,
        /// The batch's time, if this payment was the settlement's last owed share.
        completed_at: Option<DateTime<Utc>>,
    },
    Resolved {
        transfer: Transfer,
    },
    /// `taken` is false when the installment was missed (and recorded as such).
    Installment {
        savings: Account,
        main: Account,
        taken: bool,
        auto_charged: i64,
    },
}

impl Outcome {
    /// The error for an outcome its caller's command cannot have (a charge answered with a
    /// transfer, say): a bug, reported as an internal error, never as the client's fault.
    pub fn unexpected(&self) -> anyhow::Error {
        anyhow::anyhow!("unexpected ledger outcome {self:?}")
    }
}
