//! Statement history: the ClickHouse read store (and, with the history issue, the outbox
//! forwarder and the naive and tuned queries).

pub mod clickhouse;
