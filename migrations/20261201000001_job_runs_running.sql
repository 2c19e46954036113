-- The job runs in progress, found at once: a summary keeps a closed day's totals in memory
-- only when no run that stamps entries with its start time (and may still commit some of that
-- day) is open (history::closed_days).
CREATE INDEX job_runs_running ON job_runs (started_at) WHERE status = 'running';
