-- One outbox row per writing transaction (a ledger batch, a job chunk) instead of one per
-- statement entry: the entries of a row share their time, and a transfer no longer costs two
-- extra heap rows and two primary-key insertions, nor the forwarder two deletions.
-- Rows still leave only after ClickHouse has their entries, so a row whose transaction
-- commits late is never skipped (no high-water mark on ids).
CREATE TABLE statement_outbox_batches (
    id        bigserial   PRIMARY KEY,
    entry_ids bigint[]    NOT NULL CHECK (cardinality(entry_ids) > 0),
    at        timestamptz NOT NULL
);

INSERT INTO statement_outbox_batches (entry_ids, at)
SELECT array_agg(entry_id ORDER BY entry_id), at FROM statement_outbox GROUP BY at ORDER BY min(entry_id);

DROP TABLE statement_outbox;
ALTER TABLE statement_outbox_batches RENAME TO statement_outbox;
ALTER INDEX statement_outbox_batches_pkey RENAME TO statement_outbox_pkey;
ALTER SEQUENCE statement_outbox_batches_id_seq RENAME TO statement_outbox_id_seq;
