-- Backfill of 0009's account_kind and owner_user_id (clickhouse/README.md, "Account kind and
-- owner"), step 1: a table for PostgreSQL's accounts (id, kind, user_id), which the operator
-- fills with `psql ... \copy` piped into `INSERT INTO backfill_account_owners FORMAT TabSeparated`.
CREATE TABLE IF NOT EXISTS backfill_account_owners (account_id Int64, account_kind String, owner_user_id Int64)
ENGINE = Log
