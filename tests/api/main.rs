//! Black-box tests over HTTP against real PostgreSQL and ClickHouse (started by scripts/test).

mod admin;
mod authorization;
mod bad_input;
mod crash;
mod declines;
mod fuzz;
mod helpers;
mod history;
mod idempotency;
mod interest;
mod jobs;
mod login_limits;
mod notifications;
mod openapi;
mod outages;
mod pending;
mod retention;
mod savings;
mod settlement_limits;
mod settlements;
mod smoke;
mod social;
mod top_ups;
mod transfers;
mod users;
