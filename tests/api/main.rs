//! Black-box tests over HTTP against real PostgreSQL and ClickHouse (started by scripts/test).

mod admin;
mod admin_limits;
mod authorization;
mod bad_input;
mod crash;
mod fuzz;
mod helpers;
mod history;
mod history_guards;
mod idempotency;
mod interest;
mod jobs;
mod login_limits;
mod notifications;
mod openapi;
mod outages;
mod passwords;
mod pending;
mod retention;
mod savings;
mod session_purge;
mod settlements;
mod smoke;
mod top_ups;
mod transfers;
mod users;
