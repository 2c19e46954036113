-- A transfer row is written only by the ledger writer, in the transaction that has locked
-- (FOR UPDATE) both of its accounts and read their owners, and neither accounts nor users are
-- ever deleted. The foreign keys of `transfers` could therefore never fail, yet each one ran a
-- lookup per inserted row: five per transfer, about 40% of the time of a batch's write. They
-- are dropped; the audit's `transfers-name-their-accounts` check verifies what they promised
-- (every transfer names existing accounts, owned by the users it names, and an existing
-- settlement).
ALTER TABLE transfers
    DROP CONSTRAINT transfers_from_account_id_fkey,
    DROP CONSTRAINT transfers_to_account_id_fkey,
    DROP CONSTRAINT transfers_from_user_id_fkey,
    DROP CONSTRAINT transfers_to_user_id_fkey,
    DROP CONSTRAINT transfers_settlement_id_fkey;
