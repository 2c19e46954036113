-- Backfill of 0009, step 2: an empty table of the same structure (and partitioning) as
-- statement_entries, without its materialized views, to rebuild a month in.
CREATE TABLE IF NOT EXISTS statement_entries_backfill AS statement_entries
