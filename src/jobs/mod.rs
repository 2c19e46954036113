//! Scheduled jobs. Each is idempotent per business date; the admin route runs them by name.

pub mod interest;
pub mod pending_expiry;
pub mod retention;

/// Every job name the API knows (API.md, "Operations").
pub const JOB_NAMES: [&str; 5] = ["interest", "installments", "pending-expiry", "reminders", "retention"];
