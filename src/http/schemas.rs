//! OpenAPI schemas of the text values the handlers check against lists that are not Rust enums
//! of the domain (those derive `ToSchema` themselves): each is built from the list the code
//! enforces, so the document cannot drift from it.

use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Object;

use crate::domain::accounts::AccountKind;
use crate::history::entry::KINDS;
use crate::jobs::JobName;

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)).build()
}

/// `system` | `manual`.
pub fn clock_mode() -> Object {
    strings([crate::clock::ClockMode::System.as_str(), crate::clock::ClockMode::Manual.as_str()])
}

/// The jobs `POST /admin/jobs/{name}/run` knows.
pub fn job_name() -> Object {
    strings(JobName::ALL.map(JobName::as_str))
}

/// The kinds of statement entries.
pub fn entry_kind() -> Object {
    strings(KINDS)
}

/// `in` | `out`, from the account's point of view.
pub fn entry_direction() -> Object {
    strings(["in", "out"])
}

/// Which transfers a list shows: `incoming` | `outgoing`.
pub fn transfer_direction() -> Object {
    strings(["incoming", "outgoing"])
}

/// Which settlements a list shows: `requested` | `owed`.
pub fn settlement_role() -> Object {
    strings(["requested", "owed"])
}

/// The accounts users hold: `main` | `savings` (system accounts are nobody's).
pub fn account_kind() -> Object {
    strings([AccountKind::Main.as_str(), AccountKind::Savings.as_str()])
}

/// Opening an account: only `savings`.
pub fn new_account_kind() -> Object {
    strings(["savings"])
}
