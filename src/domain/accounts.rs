//! Accounts as the ledger sees them: four balance columns, an owner, a kind.

use chrono::{DateTime, Utc};

pub use super::ids::{AccountId, UserId};
// Re-exported for the modules that name it here (`crate::domain::accounts::text_enum!`).
pub(crate) use super::text_enum::text_enum;

/// The outside world: source of every top-up. May go negative.
pub const EXTERNAL_ACCOUNT_ID: AccountId = AccountId::new(1);
/// Source of all interest paid. May go negative.
pub const INTEREST_ACCOUNT_ID: AccountId = AccountId::new(2);

/// Yearly simple interest in basis points.
pub const FREE_SAVINGS_RATE_BP: i32 = 300;
pub const FIXED_SAVINGS_RATE_BP: i32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    System,
    Main,
    Savings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    Free,
    Fixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    Open,
    Closed,
}

text_enum!(AccountKind { System => "system", Main => "main", Savings => "savings" });
text_enum!(Product { Free => "free", Fixed => "fixed" });
text_enum!(AccountStatus { Open => "open", Closed => "closed" });

impl Product {
    pub fn interest_rate_bp(self) -> i32 {
        match self {
            Product::Free => FREE_SAVINGS_RATE_BP,
            Product::Fixed => FIXED_SAVINGS_RATE_BP,
        }
    }
}

/// Decoded from a row as JSON (`to_jsonb(accounts)`), so that the sqlx reads and the ledger
/// writer's tokio-postgres reads share one decoder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub user_id: Option<UserId>,
    pub kind: AccountKind,
    pub product: Option<Product>,
    pub status: AccountStatus,
    pub installment_amount: Option<i64>,
    pub interest_rate_bp: Option<i32>,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
    /// The owner's name when the account was read (for statement entries); absent for system
    /// accounts and where a reader did not ask for it.
    #[serde(default)]
    pub owner_name: Option<String>,
    /// The last business date whose installment was taken or missed (fixed savings).
    #[serde(default)]
    pub installment_through: Option<chrono::NaiveDate>,
    #[serde(default)]
    pub installments_missed: i32,
    #[serde(default)]
    pub installment_missed_on: Option<chrono::NaiveDate>,
    /// The owner's transfer mode, read with the account by the ledger writer.
    #[serde(default)]
    pub owner_transfer_mode: Option<super::transfers::TransferMode>,
    /// Interest posted so far (savings): what earns is the balance less this.
    #[serde(default)]
    pub interest_paid: i64,
    /// The fraction of a won not yet posted, over [`super::interest::DAY_DENOMINATOR`].
    #[serde(default)]
    pub interest_carry: i64,
    /// The last business day whose interest was paid (savings).
    #[serde(default)]
    pub interest_through: Option<chrono::NaiveDate>,
    /// Deposits and installments booked since shortly before the first day whose interest is
    /// not paid: read by the ledger writer for a savings account it closes (which pays that
    /// interest on each day's principal), empty otherwise.
    #[serde(default)]
    pub inflows: Vec<Inflow>,
}

/// Money that came into a savings account (a deposit or an installment), and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Inflow {
    pub at: DateTime<Utc>,
    pub amount: i64,
}

impl Account {
    /// credits_posted − debits_posted. Both columns are bounded sums of bounded amounts, so
    /// the subtraction cannot overflow.
    pub fn balance(&self) -> i64 {
        self.credits_posted - self.debits_posted
    }

    pub fn pending_out(&self) -> i64 {
        self.debits_pending
    }

    pub fn available(&self) -> i64 {
        self.balance() - self.debits_pending
    }

    pub fn is_system(&self) -> bool {
        self.kind == AccountKind::System
    }

    pub fn is_owned_by(&self, user_id: UserId) -> bool {
        self.user_id == Some(user_id)
    }
}
