-- aggregates::entry_partitions (src/history/aggregates.rs), for the retention job: the monthly
-- partitions `statement_entries` holds, asked of every shard on a cluster. Bind: the database.
-- bind: 'minipay'
SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = 'statement_entries' AND active
