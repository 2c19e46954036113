-- Users, sessions, accounts, the ledger and the daily top-up counters.

CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    name          text        NOT NULL,
    password_hash text        NOT NULL,
    transfer_mode text        NOT NULL DEFAULT 'immediate'
                  CHECK (transfer_mode IN ('immediate', 'confirm')),
    created_at    timestamptz NOT NULL,
    CONSTRAINT users_name_key UNIQUE (name)
);

-- Only a hash of each bearer token is kept: a leaked table does not leak sessions.
CREATE TABLE sessions (
    token_hash bytea       PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Double entry: balance = credits_posted - debits_posted, available = balance - debits_pending.
CREATE TABLE accounts (
    id                 bigserial   PRIMARY KEY,
    user_id            bigint      REFERENCES users (id),
    kind               text        NOT NULL CHECK (kind IN ('system', 'main', 'savings')),
    system_code        text        UNIQUE,
    product            text        CHECK (product IN ('free', 'fixed')),
    installment_amount bigint      CHECK (installment_amount > 0),
    interest_rate_bp   integer     CHECK (interest_rate_bp >= 0),
    status             text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    opened_at          timestamptz NOT NULL,
    closed_at          timestamptz,
    debits_posted      bigint      NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted     bigint      NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending     bigint      NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending    bigint      NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    CONSTRAINT accounts_owner_matches_kind CHECK ((kind = 'system') = (user_id IS NULL)),
    CONSTRAINT accounts_system_has_code CHECK ((kind = 'system') = (system_code IS NOT NULL)),
    CONSTRAINT accounts_savings_has_product CHECK ((kind = 'savings') = (product IS NOT NULL)),
    -- The last line of defence: the ledger writer validates this before it writes.
    CONSTRAINT accounts_user_available_not_negative
        CHECK (kind = 'system' OR credits_posted - debits_posted - debits_pending >= 0)
);
CREATE UNIQUE INDEX accounts_one_main_per_user ON accounts (user_id) WHERE kind = 'main';
CREATE INDEX accounts_user_id ON accounts (user_id);

-- System accounts stand for the outside world and may go negative.
INSERT INTO accounts (id, kind, system_code, opened_at)
VALUES (1, 'system', 'external', '2026-01-01T00:00:00Z'),
       (2, 'system', 'interest', '2026-01-01T00:00:00Z');
SELECT setval('accounts_id_seq', 1000, false);

-- One row per movement. flags: 'posted' moves money at once; 'pending' reserves it
-- (debits_pending / credits_pending); 'post_pending' and 'void_pending' resolve a pending row,
-- named by pending_id, with the same accounts and amount.
CREATE SEQUENCE ledger_transfers_id_seq;
CREATE TABLE ledger_transfers (
    id                bigint      NOT NULL,
    created_at        timestamptz NOT NULL,
    debit_account_id  bigint      NOT NULL,
    credit_account_id bigint      NOT NULL,
    amount            bigint      NOT NULL CHECK (amount > 0),
    kind              text        NOT NULL,
    flags             text        NOT NULL
                      CHECK (flags IN ('posted', 'pending', 'post_pending', 'void_pending')),
    pending_id        bigint,
    CHECK (debit_account_id <> credit_account_id),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id, created_at);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id, created_at);

-- What retention folds away when it drops a month of ledger rows, so that the audit can still
-- check every account against its ledger.
CREATE TABLE ledger_archived_totals (
    account_id      bigint PRIMARY KEY REFERENCES accounts (id),
    debits_posted   bigint NOT NULL DEFAULT 0,
    credits_posted  bigint NOT NULL DEFAULT 0,
    debits_pending  bigint NOT NULL DEFAULT 0,
    credits_pending bigint NOT NULL DEFAULT 0
);

-- Top-ups per user and business day: keyed by date, so the limit resets at midnight in the
-- business time zone without a reset job.
CREATE TABLE daily_charges (
    user_id       bigint NOT NULL,
    business_date date   NOT NULL,
    used          bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (user_id, business_date)
) PARTITION BY RANGE (business_date);
