//! Statement history: the ClickHouse read store, the outbox forwarder that feeds it, and the
//! naive (PostgreSQL) and tuned (ClickHouse, PostgreSQL fallback) queries.

/// Daily totals per account in ClickHouse: replays kept out, retention.
pub mod aggregates;
/// The audit's comparison of PostgreSQL's and ClickHouse's statement entries.
pub mod agreement;
pub mod clickhouse;
pub mod forwarder;
pub mod queries;
/// Bulk benchmark data (`minipay seed`), straight into both stores.
pub mod seed;
