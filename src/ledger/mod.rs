//! The ledger: double-entry accounts moved only by the batched writer.
//!
//! - [`apply`]: the pure step (state + commands → results + effects), property-tested.
//! - [`writer`]: the bounded queue and batch loop with serializable retry.
//! - [`store`]: the SQL that locks and writes a batch.
//! - [`statements`]: the statement entries each batch writes (pure).
//! - [`audit`]: the invariants, checked against the database.

pub mod apply;
pub mod audit;
pub mod statements;
pub mod store;
pub mod writer;

pub use apply::{Command, CommandError, Outcome};
pub use writer::{LedgerError, LedgerSettings, LedgerWriter, WriterTasks};
