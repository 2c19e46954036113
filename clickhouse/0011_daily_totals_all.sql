-- On a cluster only, like 0010: the daily totals of every shard as one table. Each shard's
-- `daily_totals` counts its own accounts' entries (its materialized view sees only the rows
-- inserted on that shard), so the shards' totals add up: sum with GROUP BY, as on one server.
CREATE TABLE IF NOT EXISTS daily_totals_all AS daily_totals
ENGINE = Distributed({cluster}, {database}, daily_totals, account_id)
