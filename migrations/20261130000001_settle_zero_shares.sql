-- Every share of a settlement is at least 1 KRW. Shares of 0 KRW asked for before that owe
-- nothing: they are settled here the way paying them did (paid, no transfer), and the
-- settlements that owed nothing else are completed. From now on no share is owed below 1 KRW.
UPDATE settlement_shares SET status = 'paid', paid_at = now()
 WHERE status = 'requested' AND amount = 0;

UPDATE settlements s SET status = 'completed', completed_at = now()
 WHERE s.status = 'open'
   AND NOT EXISTS (SELECT 1 FROM settlement_shares sh WHERE sh.settlement_id = s.id AND sh.status = 'requested');

ALTER TABLE settlement_shares
    ADD CONSTRAINT settlement_shares_owed_at_least_1_krw CHECK (status <> 'requested' OR amount >= 1);
