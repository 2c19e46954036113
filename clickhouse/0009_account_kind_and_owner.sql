-- What analysts group entries by: the kind of the statement's account (`main` or `savings`;
-- system accounts have no entries) and its owner's user id, as in PostgreSQL's `accounts`
-- (neither ever changes for an account). The forwarder and the seed fill them; entries stored
-- before this migration keep the defaults ('' and 0) until backfilled (clickhouse/README.md,
-- "Account kind and owner"). `{if_not_exists}` as in 0002: on servers without it a second
-- run fails with "already exists", which the migration runner takes as applied.
ALTER TABLE statement_entries
    ADD COLUMN {if_not_exists} account_kind String DEFAULT '' AFTER counterparty_user_name,
    ADD COLUMN {if_not_exists} owner_user_id Int64 DEFAULT 0 AFTER account_kind
