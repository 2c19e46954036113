-- Statement pages filtered by counterparty: a keyset page of one counterparty's entries reads
-- a few index entries at any depth, even when they are rare among a busy account's hundreds
-- of thousands (without it, PostgreSQL would read the account's entries until it found them).
-- Top-ups and system entries have no counterparty account and are left out.
CREATE INDEX statement_entries_account_counterparty
    ON statement_entries (account_id, counterparty_account_id, at DESC, id DESC)
    WHERE counterparty_account_id IS NOT NULL;
