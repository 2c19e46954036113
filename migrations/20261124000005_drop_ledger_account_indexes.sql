-- Statements are read from statement_entries (and ClickHouse), and the audit scans whole
-- partitions, so nothing looks ledger rows up by account and time. These two indexes cost two
-- index insertions per ledger row on the hottest write path.
DROP INDEX ledger_transfers_debit;
DROP INDEX ledger_transfers_credit;
