//! The scheduler inside `serve`: every tick asks the runner for every job, which runs what is
//! due and not yet done. Any number of server processes may run one; the runner's locks make
//! each job run once per date. It only runs with the system clock (a manual clock moves only
//! when told to, and its jobs run through `POST /admin/jobs/{name}/run`).

use std::time::Duration;

use super::{run, JobName, RunReport, Runner};
use crate::shutdown::Shutdown;

pub struct Scheduler {
    runner: Runner,
    tick: Duration,
}

/// What one tick did, per job that exists.
#[derive(Debug, Default)]
pub struct Tick {
    pub reports: Vec<RunReport>,
    pub failed: Vec<JobName>,
}

impl Scheduler {
    pub fn new(runner: Runner, tick: Duration) -> Scheduler {
        Scheduler { runner, tick }
    }

    /// Runs every job once for the clock's now. A failing job does not hold the others up.
    pub async fn run_once(&self) -> Tick {
        let mut tick = Tick::default();
        for name in JobName::ALL {
            match run(&self.runner, name).await {
                Ok(report) => tick.reports.push(report),
                // Logged and counted by the runner, with the date.
                Err(_) => tick.failed.push(name),
            }
        }
        tick
    }

    /// Ticks until `shutdown` fires. A job in progress stops after its current chunk and goes
    /// on at the next start.
    pub async fn run(self, shutdown: Shutdown) {
        let scheduler = Scheduler { runner: self.runner.clone().stopping_on(shutdown.clone()), ..self };
        tracing::info!(tick_ms = scheduler.tick.as_millis() as u64, "scheduler started");
        while !shutdown.is_triggered() {
            let tick = scheduler.run_once().await;
            scheduler.runner.metrics().scheduler_ticks.add(1);
            if !tick.failed.is_empty() {
                tracing::warn!(failed = ?tick.failed, "scheduler tick: some jobs failed; they go on at the next tick");
            }
            tokio::select! {
                _ = tokio::time::sleep(scheduler.tick) => {}
                _ = shutdown.wait() => {}
            }
        }
        tracing::info!("scheduler stopped");
    }
}
