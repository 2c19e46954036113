-- Settlements and their shares are inserted only by the split-bill creation, in one statement
-- that has just read, under the requester's lock, every participant as a user (and refuses
-- the creation when one is missing), for a requester who is signed in; the shares name the
-- settlement inserted by the same statement. A share's transfer is set only by the ledger
-- writer, in the statement that inserts that transfer. Users, settlements and transfers are
-- never deleted. The foreign keys could therefore never fail, yet each ran a lookup per
-- inserted row (four to five per creation, one per paid share) and locked the users FOR KEY
-- SHARE (a WAL record, and a MultiXact when two transactions locked one user). They are
-- dropped; the ledger audit (`settlements-name-their-parties`) checks what they promised.
ALTER TABLE settlement_shares
    DROP CONSTRAINT settlement_shares_settlement_id_fkey,
    DROP CONSTRAINT settlement_shares_user_id_fkey,
    DROP CONSTRAINT settlement_shares_transfer_id_fkey;
ALTER TABLE settlements DROP CONSTRAINT settlements_requester_id_fkey;
