//! OpenAPI links: which operations take an id that an answer carries (the account an opening
//! returns, the transfer a send returns, ...), so that clients and generated tests can follow
//! them instead of guessing ids.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::Modify;

/// (path and method of the answering operation, its status, link name, the operation the id
/// goes to, the parameter it fills, where in the answer's body the id is).
type LinkSpec = (&'static str, &'static str, &'static str, &'static str, &'static str, &'static str);

const ACCOUNT: &str = "$response.body#/id";
const MAIN_ACCOUNT: &str = "$response.body#/main_account_id";
const TRANSFER: &str = "$response.body#/id";
const SETTLEMENT: &str = "$response.body#/id";
const CONTACT: &str = "$response.body#/user_id";

const LINKS: [LinkSpec; 19] = [
    ("POST /v1/accounts", "201", "GetAccount", "get_account", "id", ACCOUNT),
    ("POST /v1/accounts", "201", "Deposit", "create_deposit", "id", ACCOUNT),
    ("POST /v1/accounts", "201", "Close", "close_account", "id", ACCOUNT),
    ("POST /v1/accounts", "201", "History", "get_history", "id", ACCOUNT),
    ("GET /v1/me", "200", "GetMainAccount", "get_account", "id", MAIN_ACCOUNT),
    ("GET /v1/me", "200", "TopUp", "create_charge", "id", MAIN_ACCOUNT),
    ("GET /v1/me", "200", "History", "get_history", "id", MAIN_ACCOUNT),
    ("GET /v1/me", "200", "NaiveHistory", "get_history_naive", "id", MAIN_ACCOUNT),
    ("GET /v1/me", "200", "Summary", "get_summary", "id", MAIN_ACCOUNT),
    ("GET /v1/me", "200", "NaiveSummary", "get_summary_naive", "id", MAIN_ACCOUNT),
    ("POST /v1/transfers", "201", "GetTransfer", "get_transfer", "id", TRANSFER),
    ("POST /v1/transfers", "201", "Accept", "accept_transfer", "id", TRANSFER),
    ("POST /v1/transfers", "201", "Reject", "reject_transfer", "id", TRANSFER),
    ("POST /v1/transfers", "201", "Cancel", "cancel_transfer", "id", TRANSFER),
    ("POST /v1/settlements", "201", "GetSettlement", "get_settlement", "id", SETTLEMENT),
    ("POST /v1/settlements", "201", "Pay", "pay_share", "id", SETTLEMENT),
    ("POST /v1/settlements", "201", "Decline", "decline_share", "id", SETTLEMENT),
    ("POST /v1/friends", "201", "RemoveFriend", "remove_friend", "user_id", CONTACT),
    ("POST /v1/blocks", "201", "Unblock", "remove_block", "user_id", CONTACT),
];

pub struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut OpenApi) {
        for (route, status, name, operation_id, parameter, value) in LINKS {
            let Some((method, path)) = route.split_once(' ') else { continue };
            let Some(item) = openapi.paths.paths.get_mut(path) else { continue };
            let operation = match method {
                "GET" => item.get.as_mut(),
                "POST" => item.post.as_mut(),
                _ => None,
            };
            let Some(RefOr::T(response)) =
                operation.and_then(|operation| operation.responses.responses.get_mut(status))
            else {
                continue;
            };
            let link = LinkBuilder::new().operation_id(operation_id).parameter(parameter, value).build();
            response.links.insert(name.to_owned(), RefOr::T(link));
        }
    }
}

/// utoipa 5 writes a link's fields in snake case (`operation_id`); the specification spells
/// them `operationId`, `operationRef`, `requestBody`. No other key of the document is written
/// that way, so the pretty-printed text is corrected in place.
pub fn with_link_keys(text: String) -> String {
    text.replace("\"operation_id\": ", "\"operationId\": ")
        .replace("\"operation_ref\": ", "\"operationRef\": ")
        .replace("\"request_body\": ", "\"requestBody\": ")
}
