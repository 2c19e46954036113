-- What the interest and installment jobs keep per savings account.
--   interest_paid:   interest posted so far (principal = balance - interest_paid: interest
--                    already paid earns nothing);
--   interest_carry:  the fraction of a won not yet posted, over 10,000 x 365 (domain::interest);
--   interest_through / installment_through: the last business date done, which makes each job
--                    idempotent per account and date and lets a rerun skip what a crashed run did;
--   installments_missed / installment_missed_on: misses for lack of limit or funds.
ALTER TABLE accounts
    ADD COLUMN interest_paid bigint NOT NULL DEFAULT 0 CHECK (interest_paid >= 0),
    ADD COLUMN interest_carry bigint NOT NULL DEFAULT 0 CHECK (interest_carry >= 0),
    ADD COLUMN interest_through date,
    ADD COLUMN installment_through date,
    ADD COLUMN installments_missed integer NOT NULL DEFAULT 0,
    ADD COLUMN installment_missed_on date;

-- The jobs walk open savings accounts by id.
CREATE INDEX accounts_open_savings ON accounts (id) WHERE kind = 'savings' AND status = 'open';

-- The interest job's due set: accounts not yet paid through a date (a run for a date whose
-- accounts are all paid touches no row).
CREATE INDEX accounts_interest_due ON accounts ((COALESCE(interest_through, '-infinity'::date)))
    WHERE kind = 'savings' AND status = 'open';
