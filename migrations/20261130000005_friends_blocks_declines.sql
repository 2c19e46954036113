-- Who may reach whom: friends (one-way, like a phone's contacts), blocks, a user's choice of
-- who may ask them to pay, declined shares, and what bounds split-bill requests.

-- `friends`: only users in the participant's friend list may ask them to pay.
ALTER TABLE users ADD COLUMN settlement_requests_from text NOT NULL DEFAULT 'everyone'
    CHECK (settlement_requests_from IN ('everyone', 'friends'));

-- user_id's contact list; friend_id does not know about it.
CREATE TABLE friends (
    user_id    bigint      NOT NULL REFERENCES users (id),
    friend_id  bigint      NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, friend_id),
    CHECK (user_id <> friend_id)
);

-- Nothing new from blocked_id reaches blocker_id.
CREATE TABLE blocks (
    blocker_id bigint      NOT NULL REFERENCES users (id),
    blocked_id bigint      NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);

-- A participant may decline a share they were asked to pay; the requester is told.
ALTER TABLE settlement_shares DROP CONSTRAINT settlement_shares_status_check,
    ADD CONSTRAINT settlement_shares_status_check CHECK (status IN ('requested', 'paid', 'self', 'declined'));
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check,
    ADD CONSTRAINT notifications_kind_check CHECK (kind IN ('transfer_received', 'pending_transfer_received',
                                                            'pending_transfer_reminder', 'pending_transfer_expired',
                                                            'settlement_requested', 'installment_failed',
                                                            'settlement_declined'));

-- A requester's settlements of the last hour (the per-hour creation limit).
CREATE INDEX settlements_requester_created_at ON settlements (requester_id, created_at);
-- A participant's open shares (the limit on open requests from one requester to one participant).
CREATE INDEX settlement_shares_requested ON settlement_shares (user_id, settlement_id) WHERE status = 'requested';
