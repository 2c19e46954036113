//! Friends (the caller's own contact list, one-way like a phone's) and blocks (users whose
//! transfers and split-bill requests no longer reach the caller).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiPath, AuthUser};
use crate::domain::accounts::{AccountId, UserId};
use crate::domain::names::UserName;
use crate::http::state::AppState;
use crate::store::social::{self, Contact, List, ListError};
use crate::store::users;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "jun"}))]
pub struct FriendRequest {
    /// The user's name, as they signed up (or renamed themselves).
    pub name: String,
}

/// A user on the caller's friend list, with what sending them money takes.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"user_id": 23, "name": "jun", "main_account_id": 1057}))]
pub struct FriendView {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    /// Their current name.
    pub name: String,
    /// Where transfers to them go (`to_account_id`).
    #[schema(value_type = i64)]
    pub main_account_id: AccountId,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"friends": [{"user_id": 23, "name": "jun", "main_account_id": 1057}]}))]
pub struct FriendList {
    /// By name; the whole list (it holds at most `MINIPAY_FRIENDS_MAX` users).
    pub friends: Vec<FriendView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": 24}))]
pub struct BlockRequest {
    #[schema(value_type = i64)]
    pub user_id: UserId,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"user_id": 24, "name": "spammer"}))]
pub struct BlockView {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    /// Their current name.
    pub name: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"blocks": [{"user_id": 24, "name": "spammer"}]}))]
pub struct BlockList {
    /// By name; the whole list (it holds at most `MINIPAY_BLOCKS_MAX` users).
    pub blocks: Vec<BlockView>,
}

impl From<Contact> for FriendView {
    fn from(contact: Contact) -> Self {
        FriendView { user_id: contact.user_id, name: contact.name, main_account_id: contact.main_account_id }
    }
}

impl From<Contact> for BlockView {
    fn from(contact: Contact) -> Self {
        BlockView { user_id: contact.user_id, name: contact.name }
    }
}

fn list_error(list: List, error: ListError) -> ApiError {
    match (list, error) {
        (_, ListError::UnknownUser) => ApiError::NotFound,
        (List::Friends, ListError::Yourself) => ApiError::validation("you cannot add yourself as a friend"),
        (List::Blocks, ListError::Yourself) => ApiError::validation("you cannot block yourself"),
        (List::Friends, ListError::Full(max)) => ApiError::validation(format!("a user has at most {max} friends")),
        (List::Blocks, ListError::Full(max)) => ApiError::validation(format!("a user blocks at most {max} users")),
        (_, ListError::Database(error)) => error.into(),
    }
}

/// 201 for a new entry, 200 (same body) for one already there.
fn added_status(new: bool) -> StatusCode {
    if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// Adds a user, by name, to the caller's friends. One-way, like a phone's contacts: the
/// friend is not told and their list does not change. A friend may ask the caller to pay
/// when the caller takes split-bill requests from friends only (`PATCH /v1/me`). Adding a
/// friend twice → 200 with the same body. A name no user has → 404; the caller's own → 422; a
/// full list (`MINIPAY_FRIENDS_MAX`, default 1,000) → 422.
#[utoipa::path(post, path = "/v1/friends", tag = "friends", security(("bearer" = [])), request_body = FriendRequest,
    responses((status = 201, body = FriendView, description = "added"),
              (status = 200, body = FriendView, description = "already a friend"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "not-found: no user with that name"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: the caller, or the list is full")))]
pub async fn add_friend(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<FriendRequest>,
) -> ApiResult<(StatusCode, Json<FriendView>)> {
    // A name no user could have (e.g. with a NUL, which PostgreSQL text refuses) is simply not found.
    let name = UserName::parse(&body.name).map_err(|_| ApiError::NotFound)?;
    let mut conn = state.pool.acquire().await?;
    let friend = users::find_by_name(&mut conn, name.as_str()).await?.ok_or(ApiError::NotFound)?;
    drop(conn);
    let limits = &state.config.social_limits;
    let (contact, new) =
        social::add(&state.pool, List::Friends, caller.user_id, friend.id, limits.friends_max, state.clock.now())
            .await
            .map_err(|error| list_error(List::Friends, error))?;
    Ok((added_status(new), Json(contact.into())))
}

/// The caller's friends, by name, each with the main account id that transfers to them go to.
#[utoipa::path(get, path = "/v1/friends", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = FriendList, description = "The caller's friends")))]
pub async fn list_friends(State(state): State<AppState>, caller: AuthUser) -> ApiResult<Json<FriendList>> {
    let mut conn = state.read_pool().await.acquire().await?;
    let friends = social::list(&mut conn, List::Friends, caller.user_id).await?;
    Ok(Json(FriendList { friends: friends.into_iter().map(FriendView::from).collect() }))
}

/// Takes a user off the caller's friends. Not a friend → 404.
#[utoipa::path(delete, path = "/v1/friends/{user_id}", tag = "friends", security(("bearer" = [])),
    params(("user_id" = i64, Path)),
    responses((status = 204, description = "No longer a friend"), (status = 404, body = Problem, content_type = "application/problem+json", description = "not-found: not a friend")))]
pub async fn remove_friend(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(user_id): ApiPath<UserId>,
) -> ApiResult<StatusCode> {
    let mut conn = state.pool.acquire().await?;
    if social::remove(&mut conn, List::Friends, caller.user_id, user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Blocks a user: from then on their transfers and split-bill requests to the caller are
/// refused with the answer a target that does not exist gets (they are not told), and nothing
/// new of theirs reaches the caller. What was under way stays: a pending transfer they sent
/// before can still be accepted or rejected and expires as usual, but its reminder is not
/// sent; a split bill they asked for before can still be paid or declined; the caller's own
/// requests to them can still be paid or declined by them, and the caller hears of it.
/// Blocking is one-way: the caller can still send to them. Blocking twice → 200 with the
/// same body; no such user → 404; the caller themselves → 422; a full list
/// (`MINIPAY_BLOCKS_MAX`, default 1,000) → 422.
#[utoipa::path(post, path = "/v1/blocks", tag = "friends", security(("bearer" = [])), request_body = BlockRequest,
    responses((status = 201, body = BlockView, description = "blocked"),
              (status = 200, body = BlockView, description = "already blocked"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "not-found: no such user"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: the caller, or the list is full")))]
pub async fn add_block(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<BlockRequest>,
) -> ApiResult<(StatusCode, Json<BlockView>)> {
    let limits = &state.config.social_limits;
    let (contact, new) =
        social::add(&state.pool, List::Blocks, caller.user_id, body.user_id, limits.blocks_max, state.clock.now())
            .await
            .map_err(|error| list_error(List::Blocks, error))?;
    Ok((added_status(new), Json(contact.into())))
}

/// The users the caller blocked, by name.
#[utoipa::path(get, path = "/v1/blocks", tag = "friends", security(("bearer" = [])),
    responses((status = 200, body = BlockList, description = "The users the caller blocked")))]
pub async fn list_blocks(State(state): State<AppState>, caller: AuthUser) -> ApiResult<Json<BlockList>> {
    let mut conn = state.read_pool().await.acquire().await?;
    let blocks = social::list(&mut conn, List::Blocks, caller.user_id).await?;
    Ok(Json(BlockList { blocks: blocks.into_iter().map(BlockView::from).collect() }))
}

/// Unblocks a user: what they send from then on reaches the caller again (nothing refused
/// meanwhile is delivered). Not blocked → 404.
#[utoipa::path(delete, path = "/v1/blocks/{user_id}", tag = "friends", security(("bearer" = [])),
    params(("user_id" = i64, Path)),
    responses((status = 204, description = "No longer blocked"), (status = 404, body = Problem, content_type = "application/problem+json", description = "not-found: not blocked")))]
pub async fn remove_block(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(user_id): ApiPath<UserId>,
) -> ApiResult<StatusCode> {
    let mut conn = state.pool.acquire().await?;
    if social::remove(&mut conn, List::Blocks, caller.user_id, user_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
