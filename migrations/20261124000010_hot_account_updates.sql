-- Every ledger batch and every job chunk rewrites account rows (balances, pending columns,
-- markers). With full pages such an update cannot stay on its page, so PostgreSQL inserts a
-- new entry into each of the accounts indexes (four for a main account) per update. Half-full
-- pages leave room for the next version of each row, so the update is HOT: no index entry, and
-- the old version is pruned by the next visitor. Affects pages written from now on.
ALTER TABLE accounts SET (fillfactor = 50);

-- Notifications are only written by the server, for users it has just read under lock (the
-- transfer's, the settlement's, the account's), and users are never deleted; the foreign key
-- cost a lookup into users per notification, 10% of a pending-expiry chunk.
ALTER TABLE notifications DROP CONSTRAINT notifications_user_id_fkey;
