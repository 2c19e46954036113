//! Scheduled jobs. Each is idempotent per business date; the scheduler and the admin route
//! run them by name.

/// Every job name the API knows (API.md, "Operations").
pub const JOB_NAMES: [&str; 5] = ["interest", "installments", "pending-expiry", "reminders", "retention"];
