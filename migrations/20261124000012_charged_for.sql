-- The business day a top-up counts against. It is the day of booking, except for a missed
-- installment caught up later, whose top-up counts against the installment's own day; the
-- audit compares the daily counters with the ledger by this day (NULL: the day of booking).
ALTER TABLE ledger_transfers ADD COLUMN charged_for date;
