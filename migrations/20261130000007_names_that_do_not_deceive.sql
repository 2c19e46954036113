-- Names that cannot pass for someone else's.

-- The confusable skeleton (Unicode TS #39) of each user's name: names that look alike share
-- it, so it is unique. SQL cannot compute a skeleton, so the rows that exist when this runs
-- get theirs from `minipay migrate` and every server's start (store::migrate, right after
-- these migrations), oldest user first. A user whose skeleton an older user already holds
-- (two look-alike names signed up before this check existed) keeps the name and a NULL
-- skeleton: renaming them behind their back would be worse, and the older user's claim
-- already keeps the look from anybody new. The partial index finds what is left to fill.
ALTER TABLE users ADD COLUMN name_skeleton text;
ALTER TABLE users ADD CONSTRAINT users_name_skeleton_key UNIQUE (name_skeleton);
CREATE INDEX users_without_name_skeleton ON users (id) WHERE name_skeleton IS NULL;

-- Skeletons freed by a rename: for 30 days from `released_at` only `user_id` may take one
-- back. A row is removed when the skeleton is taken again (by its user, or by anyone once
-- the time is up).
CREATE TABLE user_name_releases (
    skeleton    text        PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id),
    released_at timestamptz NOT NULL
);

-- The counterparty's real user name beside the name shown (which for the receiver of a
-- transfer is the display name the sender chose). NULL for system counterparties, and for
-- entries written before the column existed (the name they were shown under is all that was
-- recorded then).
ALTER TABLE statement_entries ADD COLUMN counterparty_user_name text;
