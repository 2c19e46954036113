-- ClickHouse::migrate (src/history/clickhouse.rs): the table of applied migrations.
CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version
