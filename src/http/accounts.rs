//! Accounts: list, read, open savings, close savings.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiPath, AuthUser};
use super::headers::{created, location, Created};
use super::idempotency::{run_command, stored_error, stored_json, IdempotencyKey};
use super::schemas;
use crate::domain::accounts::{Account, AccountId, AccountStatus, Product};
use crate::domain::money::Amount;
use crate::http::state::AppState;
use crate::ledger::{Command, CommandError, Outcome};
use crate::store::accounts;

#[derive(Serialize, ToSchema, Debug, Clone)]
#[schema(example = json!({"id": 1043, "kind": "savings", "product": "fixed", "balance": 150000, "pending_out": 0,
    "available": 150000, "installment_amount": 50000, "status": "open", "interest_rate_bp": 500,
    "opened_at": "2026-11-24T04:00:00Z"}))]
pub struct AccountView {
    #[schema(value_type = i64)]
    pub id: AccountId,
    /// `main` or `savings`.
    #[schema(schema_with = schemas::account_kind)]
    pub kind: String,
    /// `free` or `fixed` for savings, null for the main account.
    #[schema(value_type = Option<Product>)]
    pub product: Option<String>,
    pub balance: i64,
    pub pending_out: i64,
    /// balance − pending_out.
    pub available: i64,
    /// The daily installment of fixed savings; null otherwise.
    pub installment_amount: Option<i64>,
    /// `open` or `closed`.
    #[schema(value_type = AccountStatus)]
    pub status: String,
    /// Yearly interest in basis points (300 = 3%); null for the main account.
    pub interest_rate_bp: Option<i32>,
    pub opened_at: DateTime<Utc>,
}

impl From<&Account> for AccountView {
    fn from(account: &Account) -> Self {
        AccountView {
            id: account.id,
            kind: account.kind.as_str().to_owned(),
            product: account.product.map(|product| product.as_str().to_owned()),
            balance: account.balance(),
            pending_out: account.pending_out(),
            available: account.available(),
            installment_amount: account.installment_amount,
            status: account.status.as_str().to_owned(),
            interest_rate_bp: account.interest_rate_bp,
            opened_at: account.opened_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"accounts": [{"id": 1042, "kind": "main", "product": null, "balance": 250000,
    "pending_out": 10000, "available": 240000, "installment_amount": null, "status": "open", "interest_rate_bp": null,
    "opened_at": "2026-11-20T09:30:00Z"}]}))]
pub struct AccountList {
    pub accounts: Vec<AccountView>,
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"kind": "savings", "product": "fixed", "installment_amount": 50000}))]
pub struct NewAccount {
    /// Only `savings` can be opened.
    #[schema(schema_with = schemas::new_account_kind)]
    pub kind: String,
    /// `free` (3%, deposit any time) or `fixed` (5%, daily installment).
    #[schema(value_type = Product)]
    pub product: String,
    /// Required for `fixed` (KRW, at most the daily top-up limit), absent for `free`.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub installment_amount: Option<i64>,
}

/// The caller's accounts, main first.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = AccountList, description = "The caller's accounts")))]
pub async fn list_accounts(State(state): State<AppState>, caller: AuthUser) -> ApiResult<Json<AccountList>> {
    let mut conn = state.read_pool().await.acquire().await?;
    let accounts = accounts::list_for_user(&mut conn, caller.user_id).await?;
    Ok(Json(AccountList { accounts: accounts.iter().map(AccountView::from).collect() }))
}

/// One of the caller's accounts; anyone else's answers 404.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = AccountView, description = "The account")))]
pub async fn get_account(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<AccountId>,
) -> ApiResult<Json<AccountView>> {
    let mut conn = state.read_pool().await.acquire().await?;
    let account = accounts::get_owned(&mut conn, caller.user_id, id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(AccountView::from(&account)))
}

/// Opens a savings account: `free` (3% a year) or `fixed` (5% a year, with an
/// `installment_amount` taken from the main account every day at 08:00).
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])), request_body = NewAccount,
    responses((status = 201, body = AccountView, description = "The savings account, opened",
               headers(("Location" = String, description = "`/v1/accounts/{id}`, where the account is read"))),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: not `savings`, an unknown product, or an installment that does not fit the product or exceeds the daily top-up limit")))]
pub async fn create_account(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<NewAccount>,
) -> ApiResult<Created<AccountView>> {
    if body.kind != "savings" {
        return Err(ApiError::validation("kind must be savings: every user has exactly one main account"));
    }
    let product = Product::parse(&body.product).ok_or_else(|| ApiError::validation("product must be free or fixed"))?;
    let installment_amount = match (product, body.installment_amount) {
        (Product::Free, None) => None,
        (Product::Free, Some(_)) => return Err(ApiError::validation("free savings take no installment_amount")),
        (Product::Fixed, None) => return Err(ApiError::validation("fixed savings need an installment_amount")),
        (Product::Fixed, Some(value)) => {
            let amount =
                Amount::parse(value).map_err(|error| ApiError::validation(format!("installment_amount: {error}")))?;
            if amount.krw() > state.config.daily_charge_limit_krw {
                return Err(ApiError::validation("installment_amount must not exceed the daily top-up limit"));
            }
            Some(amount.krw())
        }
    };
    let mut conn = state.pool.acquire().await?;
    let account =
        accounts::insert_savings(&mut conn, caller.user_id, product, installment_amount, state.clock.now()).await?;
    Ok(created(location("/v1/accounts", &account.id.to_string()), AccountView::from(&account)))
}

/// Closes a savings account: what it holds moves to the main account. Honours
/// `Idempotency-Key`.
///
/// With it goes the interest of every completed business day not yet paid: a close at 03:00
/// gets the day before's, which the 04:00 run would have paid. The savings statement shows it
/// as an `interest` entry naming the days, then the `close` entry.
#[utoipa::path(post, path = "/v1/accounts/{id}/close", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "1..255 characters; repeats return the first response")),
    responses((status = 200, body = AccountView, description = "The savings account, closed"),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "already closed"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: not a savings account")))]
pub async fn close_account(
    State(state): State<AppState>,
    caller: AuthUser,
    key: IdempotencyKey,
    ApiPath(id): ApiPath<AccountId>,
) -> ApiResult<Response> {
    let fingerprint = key.fingerprint("POST /v1/accounts/{id}/close", &id);
    let command = Command::CloseSavings {
        user_id: caller.user_id,
        main_account_id: caller.main_account_id,
        savings_account_id: id,
    };
    let render = Arc::new(|result: &Result<Outcome, CommandError>| match result {
        Ok(Outcome::Closed { savings, .. }) => stored_json(StatusCode::OK, &AccountView::from(savings)),
        Ok(other) => stored_error(ApiError::Internal(anyhow::anyhow!("close answered with {other:?}"))),
        Err(error) => stored_error(error.clone().into()),
    });
    Ok(run_command(&state, caller, key, fingerprint, command, render).await)
}
