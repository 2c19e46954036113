-- Keys are found by (user_id, key); their time is only scanned by the daily purge of expired
-- keys, in the order the rows were inserted. A BRIN index serves that scan and costs a keyed
-- request almost nothing, where the B-tree was one more index entry for every key.
DROP INDEX idempotency_keys_created_at;
CREATE INDEX idempotency_keys_created_at_brin ON idempotency_keys USING brin (created_at);
