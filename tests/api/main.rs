//! Black-box tests over HTTP against real PostgreSQL and ClickHouse (started by scripts/test).

mod helpers;
mod openapi;
mod smoke;
