-- Statement entries: one row per user-visible side of a ledger transfer, written by the ledger
-- writer in the same transaction as the movement. PostgreSQL keeps them (partitioned by month,
-- for the naive history queries and as the fallback of the tuned ones); the outbox lists the
-- entries not yet copied to ClickHouse.
CREATE SEQUENCE statement_entries_id_seq;
CREATE TABLE statement_entries (
    id                      bigint      NOT NULL,
    account_id              bigint      NOT NULL,
    at                      timestamptz NOT NULL,
    direction               text        NOT NULL CHECK (direction IN ('in', 'out')),
    amount                  bigint      NOT NULL CHECK (amount > 0),
    balance_after           bigint      NOT NULL,
    kind                    text        NOT NULL,
    counterparty_account_id bigint,
    counterparty_name       text        NOT NULL,
    transfer_id             bigint,
    memo                    text,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE INDEX statement_entries_account_at ON statement_entries (account_id, at DESC, id DESC);

-- Entries waiting for the forwarder. Rows leave only after ClickHouse has them, so a row
-- whose transaction commits late is never skipped (no high-water mark on ids).
CREATE TABLE statement_outbox (
    entry_id bigint      PRIMARY KEY,
    at       timestamptz NOT NULL
);
