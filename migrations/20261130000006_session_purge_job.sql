-- The daily `session-purge` job records its runs like every other job.
ALTER TABLE job_runs DROP CONSTRAINT job_runs_job_check;
ALTER TABLE job_runs ADD CONSTRAINT job_runs_job_check
    CHECK (job IN ('interest', 'installments', 'pending-expiry', 'reminders', 'retention', 'audit',
                   'session-purge'));
