-- Notifications, split bills, and what pending transfers and their jobs need.

-- Written in the same transaction as the state change that causes them.
CREATE TABLE notifications (
    id         bigserial   PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id),
    kind       text        NOT NULL CHECK (kind IN ('transfer_received', 'pending_transfer_received',
                                                    'pending_transfer_reminder', 'pending_transfer_expired',
                                                    'settlement_requested', 'installment_failed')),
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL
);
-- A user's notifications after a given id, oldest first.
CREATE INDEX notifications_user_id ON notifications (user_id, id);

-- A split bill. `seed` reproduces a random split (see domain::settlements).
CREATE TABLE settlements (
    id           bigserial   PRIMARY KEY,
    requester_id bigint      NOT NULL REFERENCES users (id),
    total        bigint      NOT NULL CHECK (total > 0),
    mode         text        NOT NULL CHECK (mode IN ('equal', 'random')),
    status       text        NOT NULL CHECK (status IN ('open', 'completed')),
    memo         text,
    seed         bigint,
    created_at   timestamptz NOT NULL,
    completed_at timestamptz
);
CREATE INDEX settlements_requester ON settlements (requester_id, id DESC);

-- One share per participant (and one `self` share for a requester who holds one). `position`
-- is the participant's place in the request, which is what the allocation is recorded by.
CREATE TABLE settlement_shares (
    settlement_id bigint      NOT NULL REFERENCES settlements (id),
    user_id       bigint      NOT NULL REFERENCES users (id),
    position      integer     NOT NULL CHECK (position >= 0),
    amount        bigint      NOT NULL CHECK (amount >= 0),
    status        text        NOT NULL CHECK (status IN ('requested', 'paid', 'self')),
    paid_at       timestamptz,
    transfer_id   bigint      REFERENCES transfers (id),
    PRIMARY KEY (settlement_id, user_id),
    CONSTRAINT settlement_shares_position_key UNIQUE (settlement_id, position),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL))
);
CREATE INDEX settlement_shares_user ON settlement_shares (user_id, settlement_id DESC);

-- Pending transfers: the jobs read only the pending set, through partial indexes that stay
-- small however many transfers are resolved.
ALTER TABLE transfers ADD COLUMN reminded_at timestamptz;
ALTER TABLE transfers ADD COLUMN settlement_id bigint REFERENCES settlements (id);
CREATE INDEX transfers_pending_expiry ON transfers (expires_at, id) WHERE status = 'pending';
CREATE INDEX transfers_pending_reminder ON transfers (expires_at, id) WHERE status = 'pending' AND reminded_at IS NULL;
