-- Backfill of 0009, step 4, per month: swaps the month's parts for the rebuilt ones at once
-- (no materialized view runs, so the daily totals stay as they are); afterwards
-- `ALTER TABLE statement_entries_backfill DROP PARTITION` the month, and at the end drop
-- both backfill tables.
-- The bind is the month of the check's sample rows (yesterday), in tuple() because a current
-- ClickHouse reads no other expression before FROM there; give the month, e.g. 202611.
-- bind: tuple(toYYYYMM(toTimeZone(now() - 86400, 'UTC')))
ALTER TABLE statement_entries REPLACE PARTITION ? FROM statement_entries_backfill
