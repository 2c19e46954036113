-- ClickHouse::migrate (src/history/clickhouse.rs): which migrations are applied.
SELECT version FROM schema_migrations
