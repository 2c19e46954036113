-- On a cluster only, like 0010: the daily counterparty totals of every shard as one table
-- (aggregate with GROUP BY and `argMaxMerge`, as on one server).
CREATE TABLE IF NOT EXISTS daily_counterparty_totals_all AS daily_counterparty_totals
ENGINE = Distributed({cluster}, {database}, daily_counterparty_totals, account_id)
