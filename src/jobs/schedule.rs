//! Every job by name, and when each runs. A leaf module: telemetry keeps per-job metrics by
//! [`JobName`] and the jobs report to telemetry, so the names live apart from both.

use chrono::NaiveTime;

/// Every job the API knows (the admin job route in the OpenAPI document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobName {
    Interest,
    Installments,
    PendingExpiry,
    Reminders,
    Retention,
    Audit,
    SessionPurge,
}

/// Every job name the API knows, as the routes spell them.
pub const JOB_NAMES: [&str; 7] =
    ["interest", "installments", "pending-expiry", "reminders", "retention", "audit", "session-purge"];

impl JobName {
    /// In the order a scheduler tick runs them: expiry before reminders, so that a transfer
    /// expiring now is not reminded of first; the audit after whatever else was due.
    pub const ALL: [JobName; 7] = [
        JobName::Interest,
        JobName::Installments,
        JobName::PendingExpiry,
        JobName::Reminders,
        JobName::Retention,
        JobName::Audit,
        JobName::SessionPurge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobName::Interest => "interest",
            JobName::Installments => "installments",
            JobName::PendingExpiry => "pending-expiry",
            JobName::Reminders => "reminders",
            JobName::Retention => "retention",
            JobName::Audit => "audit",
            JobName::SessionPurge => "session-purge",
        }
    }

    /// The job a route or command names, if any.
    pub fn from_name(name: &str) -> Option<JobName> {
        JobName::ALL.into_iter().find(|job| job.as_str() == name)
    }

    /// Its place in `ALL` (metrics keep one slot per job).
    pub fn index(self) -> usize {
        match self {
            JobName::Interest => 0,
            JobName::Installments => 1,
            JobName::PendingExpiry => 2,
            JobName::Reminders => 3,
            JobName::Retention => 4,
            JobName::Audit => 5,
            JobName::SessionPurge => 6,
        }
    }

    /// When the job runs (docs/architecture.md, "Jobs and time").
    pub fn schedule(self) -> Schedule {
        let at = |hour| NaiveTime::from_hms_opt(hour, 0, 0).expect("a whole hour is a valid time");
        match self {
            // Every missed day is paid its interest and takes its installment, however long the
            // gap, account by account from each account's own marker: the latest date's run
            // covers every missed one (see the jobs).
            JobName::Interest => Schedule::Daily { at: at(4), catch_up_days: 1 },
            JobName::Installments => Schedule::Daily { at: at(8), catch_up_days: 1 },
            JobName::PendingExpiry | JobName::Reminders => Schedule::Frequent,
            // Dropping what is older than a year as of the latest date covers every missed one.
            JobName::Retention => Schedule::Daily { at: at(3), catch_up_days: 1 },
            // After retention (03:00) and interest (04:00), before installments (08:00) and
            // the day's traffic; an audit as of now covers every missed date.
            JobName::Audit => Schedule::Daily { at: at(5), catch_up_days: 1 },
            // What expired by now, whatever date it is run for.
            JobName::SessionPurge => Schedule::Daily { at: at(2), catch_up_days: 1 },
        }
    }
}

impl std::fmt::Display for JobName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Once per business date, due from the local time `at` in the business time zone. A run
    /// does every due date among the latest `catch_up_days` (the latest due date included)
    /// that is not done yet, oldest first.
    Daily { at: NaiveTime, catch_up_days: u32 },
    /// On every scheduler tick and whenever asked; a pass does what is due at that instant and
    /// is recorded on the row of the business date it ran on.
    Frequent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_all_in_order() {
        for (index, job) in JobName::ALL.into_iter().enumerate() {
            assert_eq!(JobName::from_name(job.as_str()), Some(job));
            assert_eq!(job.index(), index);
            assert_eq!(JOB_NAMES[index], job.as_str());
        }
        assert_eq!(JobName::from_name("nope"), None);
    }
}
