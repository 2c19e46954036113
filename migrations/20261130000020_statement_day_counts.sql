-- The audit's comparison of PostgreSQL's statement entries with ClickHouse's goes per UTC
-- day. A day that has closed (ended over an hour ago: no transaction still running writes
-- into it) is counted once and kept here; each audit counts only the days still open. Days
-- without entries are kept too (0, 0), so that a gap means "not counted yet". Rows older than
-- the compared year are deleted by the audit.
CREATE TABLE statement_day_counts (
    day     date PRIMARY KEY,
    entries bigint NOT NULL,
    amount  bigint NOT NULL
);

-- Counting a day (or the open days) reads only that day's blocks: entries are written in
-- time order, which is what a BRIN index needs, and it costs writes next to nothing.
CREATE INDEX statement_entries_at_brin ON statement_entries USING brin (at);
