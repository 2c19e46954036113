-- Transfers between users (the API's transfer object) and idempotency keys.

CREATE TABLE transfers (
    id              bigserial   PRIMARY KEY,
    from_account_id bigint      NOT NULL REFERENCES accounts (id),
    to_account_id   bigint      NOT NULL REFERENCES accounts (id),
    from_user_id    bigint      NOT NULL REFERENCES users (id),
    to_user_id      bigint      NOT NULL REFERENCES users (id),
    amount          bigint      NOT NULL CHECK (amount > 0),
    auto_charged    bigint      NOT NULL DEFAULT 0 CHECK (auto_charged >= 0),
    status          text        NOT NULL
                    CHECK (status IN ('completed', 'pending', 'canceled', 'rejected', 'expired')),
    display_name    text,
    memo            text,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    resolved_at     timestamptz,
    CHECK (from_user_id <> to_user_id)
);
-- Listing a user's transfers newest first, by direction.
CREATE INDEX transfers_from_user ON transfers (from_user_id, id DESC);
CREATE INDEX transfers_to_user ON transfers (to_user_id, id DESC);

-- Which user-visible transfer a ledger row belongs to (the transfer and its auto top-up).
ALTER TABLE ledger_transfers ADD COLUMN transfer_id bigint;

-- A key, the fingerprint of the request it came with, and the response given, stored in the
-- same transaction as the effect. Keys belong to a user.
CREATE TABLE idempotency_keys (
    user_id     bigint      NOT NULL,
    key         text        NOT NULL,
    fingerprint bytea       NOT NULL,
    status_code smallint    NOT NULL,
    body        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
