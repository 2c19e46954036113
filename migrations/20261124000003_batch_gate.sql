-- Every ledger batch locks this (empty) table before its first query. LOCK TABLE takes no
-- snapshot, so a batch that waited here starts its SERIALIZABLE snapshot after the previous
-- batch committed: batches from all writers of all processes queue here instead of failing
-- each other on a hot account (serialization failure, retry, fail again).
CREATE TABLE ledger_batch_gate ();
