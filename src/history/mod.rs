//! Statement history: the ClickHouse read store, the outbox forwarder that feeds it, and the
//! queries of both stores: pages ([`pg`], [`ch`]) and summaries ([`summary`]), over the entry
//! model of [`entry`].

/// Daily totals per account in ClickHouse: replays kept out, retention.
pub mod aggregates;
/// The audit's comparison of PostgreSQL's and ClickHouse's statement entries.
pub mod agreement;
/// ClickHouse pages (tuned).
pub mod ch;
pub mod clickhouse;
/// Closed days of the daily counterparty totals, in memory for the summaries of busy accounts.
pub mod closed_days;
/// The statement entry, its conversions, the cursor and the page.
pub mod entry;
pub mod forwarder;
/// PostgreSQL pages (naive, keyset).
pub mod pg;
/// Bulk benchmark data (`minipay seed`), straight into both stores.
pub mod seed;
pub mod summary;
