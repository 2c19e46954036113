-- On a cluster only (MINIPAY_CLICKHOUSE_CLUSTER), created on every shard after the local
-- tables: `statement_entries` of every shard as one table, for analysts and for anything that
-- spans accounts. Sharding key `account_id` with every shard's weight 1: an account lives on
-- shard `account_id % shards` (in the cluster's order), where minipay's forwarder writes its
-- entries straight into the local `statement_entries` and where its reads go. A row inserted
-- here is sent to the same shard. `{cluster}` and `{database}` are filled in by minipay. A
-- column added to `statement_entries` later must be added here too (`ALTER TABLE
-- statement_entries_all ADD COLUMN ...`, on every shard).
CREATE TABLE IF NOT EXISTS statement_entries_all AS statement_entries
ENGINE = Distributed({cluster}, {database}, statement_entries, account_id)
