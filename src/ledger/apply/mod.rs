//! The pure apply step of the ledger writer: state + commands → per-command results + effects.
//!
//! No I/O. Commands are applied one after another on the state loaded (and locked) for the
//! batch; a command that fails leaves the state exactly as it found it, and the rest of the
//! batch goes on.
//!
//! A tour, in the order a command goes through it:
//!
//! - [`command`]: what callers ask ([`Command`]), the rows each command needs locked, and why
//!   one is refused ([`CommandError`]).
//! - [`state`]: what a batch works on ([`LedgerState`], loaded under lock) and what holds for
//!   all of it ([`BatchContext`]).
//! - [`engine`]: [`apply`], which runs the commands in order, each staged apart and merged
//!   into the state only when it succeeds and keeps the ledger's rules.
//! - `staged`: one command's changes while it runs, and the moves every command is made of
//!   (booking a posting, topping up, paying interest owed, a user-to-user transfer).
//! - `rules`: what each kind of command does, one function per kind.
//! - `invariants`: the rules every command's effect keeps (double entry, postings that agree
//!   with the balance columns, holds, no user account below zero), asserted after each command.
//! - [`postings`]: the ledger rows a command books ([`Posting`]).
//! - [`effects`]: everything the batch must write ([`Effects`]).
//! - [`outcome`]: what a command did ([`Outcome`]), as its caller is answered.

pub mod command;
pub mod effects;
pub mod engine;
mod invariants;
pub mod outcome;
pub mod postings;
mod rules;
mod staged;
pub mod state;

pub use command::{Command, CommandError, Resolution};
pub use effects::{Effects, PaidShare};
pub use engine::apply;
pub use outcome::Outcome;
pub use postings::{Posting, PostingFlags, PostingKind};
pub use state::{BatchContext, LedgerState};

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod balance_tests;
