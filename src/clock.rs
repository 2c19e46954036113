//! Where all code reads the time. `system` in production; `manual` for tests and drills, set
//! through `PUT /admin/clock`, standing still between calls and only moving forward.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    System,
    Manual,
}

impl ClockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockMode::System => "system",
            ClockMode::Manual => "manual",
        }
    }
}

#[derive(Clone)]
pub struct Clock {
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetClockError {
    #[error("the clock is the system clock; start with MINIPAY_CLOCK=manual to set it")]
    NotManual,
    #[error("time only moves forward: {requested} is before {now}")]
    Backwards { now: DateTime<Utc>, requested: DateTime<Utc> },
}

/// PostgreSQL keeps microseconds; truncating here makes what is stored equal what was read.
fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at)
}

impl Clock {
    pub fn new(mode: ClockMode) -> Self {
        match mode {
            ClockMode::System => Clock { manual: None },
            ClockMode::Manual => Clock { manual: Some(Arc::new(Mutex::new(to_micros(Utc::now())))) },
        }
    }

    pub fn mode(&self) -> ClockMode {
        if self.manual.is_some() {
            ClockMode::Manual
        } else {
            ClockMode::System
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            None => to_micros(Utc::now()),
            Some(now) => *now.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// Moves a manual clock to `requested`; an equal time is accepted and changes nothing.
    pub fn set(&self, requested: DateTime<Utc>) -> Result<DateTime<Utc>, SetClockError> {
        let manual = self.manual.as_ref().ok_or(SetClockError::NotManual)?;
        let requested = to_micros(requested);
        let mut now = manual.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if requested < *now {
            return Err(SetClockError::Backwards { now: *now, requested });
        }
        *now = requested;
        Ok(requested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_stands_still_and_only_moves_forward() {
        let clock = Clock::new(ClockMode::Manual);
        let start = clock.now();
        assert_eq!(clock.now(), start);
        let later = start + chrono::Duration::hours(72);
        assert_eq!(clock.set(later).unwrap(), later);
        assert_eq!(clock.now(), later);
        assert!(matches!(clock.set(start), Err(SetClockError::Backwards { .. })));
        assert_eq!(clock.now(), later);
    }

    #[test]
    fn system_clock_cannot_be_set() {
        let clock = Clock::new(ClockMode::System);
        assert!(matches!(clock.set(Utc::now()), Err(SetClockError::NotManual)));
    }
}
