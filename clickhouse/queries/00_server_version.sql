-- ClickHouse::version (src/history/clickhouse.rs), sent with database `default`.
-- expect-rows: 1
SELECT version()
