-- ClickHouse::migrate (src/history/clickhouse.rs): records an applied migration.
-- bind: 1
-- bind: 'statement_entries'
INSERT INTO schema_migrations (version, name, applied_at) SELECT ?, ?, now()
