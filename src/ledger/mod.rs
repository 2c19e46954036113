//! The ledger: double-entry accounts moved only by the batched writer.
//!
//! - [`apply`]: the pure step (state + commands → results + effects), property-tested.
//! - [`writer`]: the bounded queue and batch loop with serializable retry.
//! - [`store`]: the SQL that locks and writes a batch.
//! - [`statements`]: the statement entries each batch writes (pure).
//! - [`writes`]: the SQL of each ledger write (entries and their outbox row, ledger rows),
//!   defined once for the writer and the set-based jobs.
//! - [`audit`]: the invariants, checked against the database.

pub mod apply;
pub mod audit;
pub mod statements;
pub mod store;
pub mod writer;
pub mod writes;

pub use apply::{Command, CommandError, Outcome};
pub use writer::{LedgerError, LedgerSettings, LedgerWriter, WriterShare, WriterTasks};
