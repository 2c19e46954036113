//! Money in: top-ups (charges) and deposits into savings.

use axum::extract::State;
use axum::http::StatusCode;
use std::sync::Arc;

use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::AccountView;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiPath, AuthUser};
use super::idempotency::{run_command, stored_error, stored_json, IdempotencyKey};
use super::users::DailyChargeView;
use crate::domain::accounts::AccountId;
use crate::domain::money::Amount;
use crate::http::state::AppState;
use crate::ledger::{Command, CommandError, Outcome};

#[derive(Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"amount": 50000}))]
pub struct AmountRequest {
    /// KRW, 1..=1,000,000,000,000.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"account": {"id": 1042, "kind": "main", "product": null, "balance": 250000, "pending_out": 0, "available": 250000,
        "installment_amount": null, "status": "open", "interest_rate_bp": null, "opened_at": "2026-11-20T09:30:00Z"}, "charged": 50000,
    "daily_charge": {"limit": 3000000, "used": 250000, "remaining": 2750000, "resets_at": "2026-11-24T15:00:00Z"}}))]
pub struct ChargeView {
    pub account: AccountView,
    pub charged: i64,
    pub daily_charge: DailyChargeView,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"account": {"id": 1043, "kind": "savings", "product": "free", "balance": 100000, "pending_out": 0, "available": 100000,
        "installment_amount": null, "status": "open", "interest_rate_bp": 300, "opened_at": "2026-11-21T10:00:00Z"},
    "main_account": {"id": 1042, "kind": "main", "product": null, "balance": 250000, "pending_out": 0, "available": 250000,
        "installment_amount": null, "status": "open", "interest_rate_bp": null, "opened_at": "2026-11-20T09:30:00Z"}, "auto_charged": 0}))]
pub struct DepositView {
    pub account: AccountView,
    pub main_account: AccountView,
    /// What was topped up into the main account first (a multiple of 10,000; 0 if none).
    pub auto_charged: i64,
}

fn parse_amount(value: i64) -> ApiResult<Amount> {
    Amount::parse(value).map_err(|error| ApiError::validation(format!("amount: {error}")))
}

fn unexpected(outcome: &Outcome) -> ApiError {
    ApiError::Internal(outcome.unexpected())
}

/// Tops up the caller's main account from outside, within the daily limit (3,000,000 KRW per
/// business day in Asia/Seoul). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/accounts/{id}/charges", tag = "money", security(("bearer" = [])),
    params(("id" = i64, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "1..255 characters; repeats return the first response")),
    request_body = AmountRequest,
    responses((status = 201, body = ChargeView, description = "The account after the top-up, and what is left of today's limit"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed (not the caller's main account, a bad amount), daily-limit-exceeded")))]
pub async fn create_charge(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(account_id): ApiPath<AccountId>,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<AmountRequest>,
) -> ApiResult<Response> {
    let amount = parse_amount(body.amount)?;
    let fingerprint = key.fingerprint(&format!("POST /v1/accounts/{account_id}/charges"), &body);
    let view_state = state.clone();
    let render = Arc::new(move |result: &Result<Outcome, CommandError>| match result {
        Ok(Outcome::Charged { account, charged, daily_used }) => stored_json(
            StatusCode::CREATED,
            &ChargeView {
                account: AccountView::from(account),
                charged: *charged,
                daily_charge: DailyChargeView::new(&view_state, *daily_used),
            },
        ),
        Ok(other) => stored_error(unexpected(other)),
        Err(error) => stored_error(error.clone().into()),
    });
    let command = Command::Charge { user_id: caller.user_id, account_id, amount };
    Ok(run_command(&state, caller, key, fingerprint, command, render).await)
}

/// Moves money from the caller's main account into one of their free savings accounts,
/// topping up the main account's shortfall first (in units of 10,000, within the limit).
/// Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/accounts/{id}/deposits", tag = "money", security(("bearer" = [])),
    params(("id" = i64, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "1..255 characters; repeats return the first response")),
    request_body = AmountRequest,
    responses((status = 201, body = DepositView, description = "Both accounts after the deposit"),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "invalid-state: the savings account is closed"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed (not a free savings account of the caller, a bad amount), daily-limit-exceeded")))]
pub async fn create_deposit(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(account_id): ApiPath<AccountId>,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<AmountRequest>,
) -> ApiResult<Response> {
    let amount = parse_amount(body.amount)?;
    let fingerprint = key.fingerprint(&format!("POST /v1/accounts/{account_id}/deposits"), &body);
    let render = Arc::new(|result: &Result<Outcome, CommandError>| match result {
        Ok(Outcome::Deposited { savings, main, auto_charged, .. }) => stored_json(
            StatusCode::CREATED,
            &DepositView {
                account: AccountView::from(savings),
                main_account: AccountView::from(main),
                auto_charged: *auto_charged,
            },
        ),
        Ok(other) => stored_error(unexpected(other)),
        Err(error) => stored_error(error.clone().into()),
    });
    let command = Command::Deposit {
        user_id: caller.user_id,
        main_account_id: caller.main_account_id,
        savings_account_id: account_id,
        amount,
    };
    Ok(run_command(&state, caller, key, fingerprint, command, render).await)
}
