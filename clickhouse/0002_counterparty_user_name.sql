-- The counterparty's real user name beside `counterparty_name` (the name shown, which for the
-- receiver of a transfer is the display name the sender chose): NULL for system
-- counterparties and for entries forwarded before the column existed. `{if_not_exists}` is
-- `IF NOT EXISTS` on servers that have it (19.6 and later, like TTL) and nothing on older
-- ones, where the migration runner takes "column already exists" as applied.
ALTER TABLE statement_entries ADD COLUMN {if_not_exists} counterparty_user_name Nullable(String) AFTER memo
