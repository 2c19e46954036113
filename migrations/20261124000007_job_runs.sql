-- One row per scheduled job and business date: the runner's record of what ran and how far.
--
-- A daily job for a date is done exactly once: the row turns 'done' in the same transaction as
-- its last chunk. While 'running', `cursor` is where the next chunk starts (written with each
-- chunk's effects, so a crash resumes after the last committed chunk). Frequent jobs (those that
-- act on instants, such as reminders) add one pass after another to the row of the date they
-- ran on. Who runs a row is decided by a session advisory lock on (job, date), which dies with
-- its connection; `status = 'running'` alone says nothing about whether anyone still is.
CREATE TABLE job_runs (
    job           text        NOT NULL CHECK (job IN ('interest', 'installments', 'pending-expiry',
                                                      'reminders', 'retention')),
    business_date date        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('running', 'done')),
    -- Clock time when the latest attempt (or pass) started, and when the row turned 'done'.
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    -- Items handled (postings, notifications, partitions) over all attempts and passes.
    processed     bigint      NOT NULL DEFAULT 0 CHECK (processed >= 0),
    chunks        integer     NOT NULL DEFAULT 0 CHECK (chunks >= 0),
    -- Attempts or passes begun; above 1 for a daily job means it resumed after a crash or failure.
    attempts      integer     NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    -- Resume point of a chunked job: the last id its committed chunks covered.
    cursor        bigint,
    last_error    text,
    PRIMARY KEY (job, business_date),
    CHECK ((status = 'done') = (finished_at IS NOT NULL))
);
