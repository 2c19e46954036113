//! Split bills over HTTP: exact equal and random splits, paying shares (once, with auto
//! top-up), who may see and pay what, and bad requests that create nothing.

use std::collections::BTreeMap;

use futures::future::join_all;
use minipay::domain::money::Amount;
use minipay::domain::settlements::split_random;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::helpers::*;

pub async fn create(
    app: &TestApp,
    requester: &TestUser,
    total: i64,
    mode: &str,
    participants: &[&TestUser],
    include_requester: bool,
) -> (StatusCode, Value) {
    let ids: Vec<i64> = participants.iter().map(|user| user.id).collect();
    app.post(
        "/v1/settlements",
        Some(&requester.token),
        json!({"total": total, "mode": mode, "participant_ids": ids, "include_requester": include_requester,
               "memo": "dinner"}),
    )
    .await
}

/// Creates a settlement that must succeed, and returns it.
pub async fn created(
    app: &TestApp,
    requester: &TestUser,
    total: i64,
    mode: &str,
    participants: &[&TestUser],
    include_requester: bool,
) -> Value {
    let (status, body) = create(app, requester, total, mode, participants, include_requester).await;
    assert_eq!(status, 201, "{body}");
    body
}

pub async fn pay(app: &TestApp, payer: &TestUser, settlement_id: i64) -> (StatusCode, Value) {
    app.request(Method::POST, &format!("/v1/settlements/{settlement_id}/pay"), Some(&payer.token), None).await
}

async fn pay_with_key(app: &TestApp, payer: &TestUser, settlement_id: i64, key: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(&format!("/v1/settlements/{settlement_id}/pay")))
        .bearer_auth(&payer.token)
        .header("Idempotency-Key", key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn amounts(settlement: &Value) -> Vec<i64> {
    settlement["shares"].as_array().unwrap().iter().map(|share| share["amount"].as_i64().unwrap()).collect()
}

fn share_of<'a>(settlement: &'a Value, user: &TestUser) -> &'a Value {
    settlement["shares"]
        .as_array()
        .unwrap()
        .iter()
        .find(|share| share["user_id"] == json!(user.id))
        .unwrap_or_else(|| panic!("{} holds no share: {settlement}", user.name))
}

fn sorted(mut values: Vec<i64>) -> Vec<i64> {
    values.sort_unstable();
    values
}

#[tokio::test]
async fn scenario_13_twenty_thousand_split_equally_among_three() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let dave = app.signup("dave").await;

    let settlement = created(&app, &alice, 20_000, "equal", &[&bob, &carol, &dave], false).await;
    assert_eq!(sorted(amounts(&settlement)), vec![6_666, 6_667, 6_667]);
    assert_eq!(amounts(&settlement).iter().sum::<i64>(), 20_000);
    // The extra won goes to the first positions, in the order asked.
    assert_eq!(amounts(&settlement), vec![6_667, 6_667, 6_666]);
    assert_eq!(settlement["requester_id"], json!(alice.id));
    assert_eq!(settlement["total"], json!(20_000));
    assert_eq!(settlement["mode"], json!("equal"));
    assert_eq!(settlement["status"], json!("open"));
    assert_eq!(settlement["memo"], json!("dinner"));
    for (share, user) in settlement["shares"].as_array().unwrap().iter().zip([&bob, &carol, &dave]) {
        assert_eq!(share["user_id"], json!(user.id));
        assert_eq!(share["status"], json!("requested"));
        assert_eq!(share["paid_at"], Value::Null);
    }

    // With the requester holding a share, theirs comes first and carries the first extra won.
    let settlement = created(&app, &alice, 20_000, "equal", &[&bob, &carol], true).await;
    assert_eq!(amounts(&settlement), vec![6_667, 6_667, 6_666]);
    assert_eq!(settlement["shares"][0]["user_id"], json!(alice.id));
    assert_eq!(settlement["shares"][0]["status"], json!("self"));

    // What was answered is what is stored.
    let id = settlement["id"].as_i64().unwrap();
    let (status, read) = app.get(&format!("/v1/settlements/{id}"), Some(&bob.token)).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read, settlement);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn uneven_totals_split_exactly_down_to_1_krw_a_share() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let friends = join_all((0..4).map(|i| app.funded(format!("friend{i}"), 0))).await;
    let friends: Vec<&TestUser> = friends.iter().collect();

    let settlement = created(&app, &alice, 30_006, "equal", &friends, false).await;
    assert_eq!(amounts(&settlement), vec![7_502, 7_502, 7_501, 7_501]);
    let settlement = created(&app, &alice, 6, "equal", &friends, false).await;
    assert_eq!(amounts(&settlement), vec![2, 2, 1, 1]);
    let settlement = created(&app, &alice, 7, "equal", &friends, true).await;
    assert_eq!(amounts(&settlement), vec![2, 2, 1, 1, 1]);
    for _ in 0..5 {
        let settlement = created(&app, &alice, 6, "random", &friends, true).await;
        assert_eq!(sorted(amounts(&settlement)), vec![1, 1, 1, 1, 2]);
    }

    // Shares of 1 KRW are paid like any other (with a top-up), and the settlement completes.
    let settlement = created(&app, &alice, 4, "equal", &friends, false).await;
    let id = settlement["id"].as_i64().unwrap();
    for friend in &friends {
        let (status, body) = pay(&app, friend, id).await;
        assert_eq!(status, 200, "{body}");
        assert!(share_of(&body, friend)["transfer_id"].is_i64(), "{body}");
        assert_eq!(app.balance(friend).await, 9_999);
    }
    let (_, settlement) = app.get(&format!("/v1/settlements/{id}"), Some(&alice.token)).await;
    assert_eq!(settlement["status"], json!("completed"), "{settlement}");
    assert_eq!(app.balance(&alice).await, 4);
    app.assert_audit_ok().await;
}

/// Settlements and shares in the database, and notifications sent.
async fn created_so_far(conn: &mut PgConnection) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM settlements), (SELECT count(*) FROM settlement_shares),
                (SELECT count(*) FROM notifications)",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn small_splits_never_ask_for_0_krw_and_a_total_below_the_shares_is_refused() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let friends = join_all((0..4).map(|i| app.funded(format!("friend{i}"), 0))).await;
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();

    // Every number of shares from 1 to 5, totals from exactly that many won up: each share is
    // at least 1 KRW and the shares sum to the total.
    for trial in 0..80usize {
        let participants = 1 + trial % 4;
        let include_requester = trial % 8 >= 4;
        let shares = participants + usize::from(include_requester);
        let total = (shares + trial % 5) as i64;
        let asked: Vec<&TestUser> = friends.iter().take(participants).collect();
        for mode in ["random", "equal"] {
            let settlement = created(&app, &alice, total, mode, &asked, include_requester).await;
            let amounts = amounts(&settlement);
            assert_eq!(amounts.len(), shares, "{settlement}");
            assert_eq!(amounts.iter().sum::<i64>(), total, "{settlement}");
            assert!(amounts.iter().all(|amount| *amount >= 1), "{mode} split of {total}: {settlement}");
        }
    }
    let everyone: Vec<&TestUser> = friends.iter().collect();
    assert_eq!(amounts(&created(&app, &alice, 5, "equal", &everyone, true).await), vec![1; 5]);
    assert_eq!(amounts(&created(&app, &alice, 5, "random", &everyone, true).await), vec![1; 5]);

    // Fewer won than shares: refused, nothing created, no one told.
    let before = created_so_far(&mut conn).await;
    for (total, include_requester) in [(1, false), (3, false), (4, true), (1, true)] {
        for mode in ["random", "equal"] {
            let (status, body) = create(&app, &alice, total, mode, &everyone, include_requester).await;
            assert_problem(status, &body, 422, "validation-failed");
        }
    }
    assert_eq!(created_so_far(&mut conn).await, before);
    app.assert_audit_ok().await;
}

/// Shares of 0 KRW stored before every share had to be at least 1 KRW owe nothing: the
/// migration that brought the rule settles them as paying them did, and completes the
/// settlements that owed nothing else.
#[tokio::test]
async fn the_migration_settles_stored_shares_of_0_krw() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.funded("bob", 10_000).await;
    let carol = app.signup("carol").await;
    let with_bob = created(&app, &alice, 2, "equal", &[&bob, &carol], false).await;
    let only_zero = created(&app, &alice, 2, "equal", &[&carol], true).await;

    // Shares as they could be stored before: 0 KRW owed by carol in both.
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::raw_sql("ALTER TABLE settlement_shares DROP CONSTRAINT settlement_shares_owed_at_least_1_krw")
        .execute(&mut conn)
        .await
        .unwrap();
    for (settlement, user, amount) in
        [(&with_bob, &bob, 2), (&with_bob, &carol, 0), (&only_zero, &alice, 2), (&only_zero, &carol, 0)]
    {
        sqlx::query("UPDATE settlement_shares SET amount = $3 WHERE settlement_id = $1 AND user_id = $2")
            .bind(settlement["id"].as_i64().unwrap())
            .bind(user.id)
            .bind(amount)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::raw_sql(include_str!("../../migrations/20261130000001_settle_zero_shares.sql"))
        .execute(&mut conn)
        .await
        .unwrap();

    let read = |settlement: &Value| {
        let path = format!("/v1/settlements/{}", settlement["id"]);
        let app = &app;
        let token = alice.token.clone();
        async move {
            let (status, body) = app.get(&path, Some(&token)).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let settled = read(&only_zero).await;
    assert_eq!(settled["status"], json!("completed"), "{settled}");
    assert!(settled["completed_at"].is_string(), "{settled}");
    let waiting = read(&with_bob).await;
    assert_eq!(waiting["status"], json!("open"), "{waiting}");
    for settlement in [&settled, &waiting] {
        let share = share_of(settlement, &carol);
        assert_eq!((share["status"].clone(), share["transfer_id"].clone()), (json!("paid"), Value::Null));
        assert!(share["paid_at"].is_string(), "{settlement}");
    }
    let (status, body) = pay(&app, &carol, waiting["id"].as_i64().unwrap()).await;
    assert_problem(status, &body, 409, "invalid-state");

    // The share that is still owed is paid as usual and completes its settlement.
    let (status, paid) = pay(&app, &bob, waiting["id"].as_i64().unwrap()).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], json!("completed"), "{paid}");
    assert_eq!(app.balance(&alice).await, 2);
    assert_eq!(app.balance(&carol).await, 0);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn scenario_14_random_splits_over_http_are_exact_and_reproducible_from_their_seed() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let friends = join_all((0..5).map(|i| app.funded(format!("friend{i}"), 0))).await;
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();

    let mut cases: Vec<(i64, usize, bool)> = vec![(1, 1, false), (2, 1, true), (6, 5, true), (5, 1, false)];
    for trial in 0..16i64 {
        cases.push((6 + (trial * 104_729) % 200_000, 1 + (trial as usize % 5), trial % 2 == 0));
    }
    for (total, participants, include_requester) in cases {
        let asked: Vec<&TestUser> = friends.iter().take(participants).collect();
        let settlement = created(&app, &alice, total, "random", &asked, include_requester).await;
        let shares = amounts(&settlement);
        assert_eq!(shares.len(), participants + usize::from(include_requester), "{settlement}");
        assert_eq!(shares.iter().sum::<i64>(), total, "{settlement}");
        assert!(shares.iter().all(|share| *share >= 1), "{settlement}");
        assert_eq!(settlement["mode"], json!("random"));

        // The stored seed and positions reproduce the split.
        let id = settlement["id"].as_i64().unwrap();
        let seed: Option<i64> = sqlx::query_scalar("SELECT seed FROM settlements WHERE id = $1")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let stored: Vec<i64> =
            sqlx::query_scalar("SELECT amount FROM settlement_shares WHERE settlement_id = $1 ORDER BY position")
                .bind(id)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let reproduced =
            split_random(Amount::parse(total).unwrap(), shares.len(), seed.expect("a random split has a seed"));
        assert_eq!(reproduced, stored);
        assert_eq!(reproduced, shares);
    }
    // An equal split needs no seed.
    let settlement = created(&app, &alice, 10, "equal", &[&friends[0]], false).await;
    let seed: Option<i64> = sqlx::query_scalar("SELECT seed FROM settlements WHERE id = $1")
        .bind(settlement["id"].as_i64().unwrap())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(seed, None);

    for total in [0, -1] {
        let (status, body) = create(&app, &alice, total, "random", &[&friends[0]], false).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn paying_moves_each_share_to_the_requester_with_auto_top_up_and_completes_the_settlement() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.funded("carol", 50_000).await;

    let settlement = created(&app, &alice, 20_000, "equal", &[&bob, &carol], true).await;
    let id = settlement["id"].as_i64().unwrap();
    assert_eq!(amounts(&settlement), vec![6_667, 6_667, 6_666]);

    // Bob has nothing: his 6,667 is topped up with one unit of 10,000.
    let (status, paid) = pay(&app, &bob, id).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["id"], json!(id));
    assert_eq!(paid["status"], json!("open"));
    let share = share_of(&paid, &bob);
    assert_eq!(share["status"], json!("paid"));
    assert!(share["paid_at"].is_string());
    let transfer_id = share["transfer_id"].as_i64().expect("a transfer paid the share");
    assert_eq!(share_of(&paid, &carol)["status"], json!("requested"));
    // The answer, made from the payment's batch, is what a read gives once it has committed.
    let (_, read) = app.get(&format!("/v1/settlements/{id}"), Some(&alice.token)).await;
    assert_eq!(read, paid);
    assert_eq!(app.balance(&bob).await, 3_333);
    assert_eq!(app.me(&bob).await["daily_charge"]["used"], json!(10_000));
    assert_eq!(app.balance(&alice).await, 6_667);

    // The payment is an ordinary transfer, visible to both parties, with the settlement's memo.
    let (status, transfer) = app.get(&format!("/v1/transfers/{transfer_id}"), Some(&alice.token)).await;
    assert_eq!(status, 200, "{transfer}");
    assert_eq!(transfer["amount"], json!(6_667));
    assert_eq!(transfer["auto_charged"], json!(10_000));
    assert_eq!(transfer["from_account_id"], json!(bob.main_account_id));
    assert_eq!(transfer["to_account_id"], json!(alice.main_account_id));
    assert_eq!(transfer["memo"], json!("dinner"));
    assert_eq!(transfer["status"], json!("completed"));

    // Carol can cover hers; the last payment completes the settlement.
    let (status, paid) = pay(&app, &carol, id).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], json!("completed"));
    assert!(paid["completed_at"].is_string());
    assert_eq!(share_of(&paid, &alice)["status"], json!("self"));
    assert_eq!(app.balance(&carol).await, 50_000 - 6_666);
    assert_eq!(app.me(&carol).await["daily_charge"]["used"], json!(50_000));

    // The requester received exactly the paid shares.
    assert_eq!(app.balance(&alice).await, 6_667 + 6_666);
    let (_, read) = app.get(&format!("/v1/settlements/{id}"), Some(&alice.token)).await;
    assert_eq!(read, paid);

    // Paying again, after completion, is refused and moves nothing.
    let (status, body) = pay(&app, &carol, id).await;
    assert_problem(status, &body, 409, "invalid-state");
    assert_eq!(app.balance(&carol).await, 50_000 - 6_666);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_top_up_beyond_the_daily_limit_refuses_the_payment_and_moves_nothing() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.funded("bob", 3_000_000).await;
    let (status, body) =
        app.post("/v1/accounts", Some(&bob.token), json!({"kind": "savings", "product": "free"})).await;
    assert_eq!(status, 201, "{body}");
    let savings = body["id"].as_i64().unwrap();
    let (status, body) =
        app.post(&format!("/v1/accounts/{savings}/deposits"), Some(&bob.token), json!({"amount": 3_000_000})).await;
    assert_eq!(status, 201, "{body}");

    let settlement = created(&app, &alice, 10_000, "equal", &[&bob], false).await;
    let id = settlement["id"].as_i64().unwrap();
    let (status, body) = pay(&app, &bob, id).await;
    assert_problem(status, &body, 422, "daily-limit-exceeded");
    let (_, read) = app.get(&format!("/v1/settlements/{id}"), Some(&bob.token)).await;
    assert_eq!(share_of(&read, &bob)["status"], json!("requested"));
    assert_eq!(app.balance(&alice).await, 0);
    assert_eq!(app.balance(&bob).await, 0);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn concurrent_payments_of_one_share_pay_it_exactly_once() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.funded("bob", 100_000).await;
    let carol = app.funded("carol", 100_000).await;

    // Two at once, as the scenario has it.
    let settlement = created(&app, &alice, 9_000, "equal", &[&bob, &carol], false).await;
    let id = settlement["id"].as_i64().unwrap();
    let (first, second) = tokio::join!(pay(&app, &bob, id), pay(&app, &bob, id));
    let mut statuses = vec![first.0.as_u16(), second.0.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 409], "{first:?} {second:?}");
    let refused = if first.0 == 409 { &first } else { &second };
    assert_problem(refused.0, &refused.1, 409, "invalid-state");
    assert_eq!(app.balance(&bob).await, 100_000 - 4_500);
    assert_eq!(app.balance(&alice).await, 4_500);

    // Twenty at once, and the other participant paying at the same time.
    let settlement = created(&app, &alice, 9_000, "equal", &[&bob, &carol], false).await;
    let id = settlement["id"].as_i64().unwrap();
    let (bobs, carols) =
        tokio::join!(join_all((0..20).map(|_| pay(&app, &bob, id))), join_all((0..20).map(|_| pay(&app, &carol, id))));
    for answers in [&bobs, &carols] {
        let ok = answers.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(ok, 1, "{answers:?}");
        for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
            assert_problem(*status, body, 409, "invalid-state");
        }
    }
    assert_eq!(app.balance(&bob).await, 100_000 - 9_000);
    assert_eq!(app.balance(&carol).await, 100_000 - 4_500);
    assert_eq!(app.balance(&alice).await, 4_500 + 9_000);
    let (_, read) = app.get(&format!("/v1/settlements/{id}"), Some(&alice.token)).await;
    assert_eq!(read["status"], json!("completed"), "{read}");

    let (_, list) = app.get("/v1/transfers?direction=incoming", Some(&alice.token)).await;
    assert_eq!(list["transfers"].as_array().unwrap().len(), 3, "one transfer per share paid: {list}");
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_repeated_payment_with_its_key_pays_once() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let settlement = created(&app, &alice, 5_000, "equal", &[&bob, &carol], false).await;
    let id = settlement["id"].as_i64().unwrap();

    let (status, first) = pay_with_key(&app, &bob, id, "pay-1").await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = pay_with_key(&app, &bob, id, "pay-1").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first);
    let concurrent = join_all((0..10).map(|_| pay_with_key(&app, &bob, id, "pay-1"))).await;
    for (status, body) in &concurrent {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(share_of(body, &bob)["status"], json!("paid"));
    }
    assert_eq!(app.balance(&alice).await, 2_500);
    assert_eq!(app.me(&bob).await["daily_charge"]["used"], json!(10_000));

    // A repeat shows the settlement as it stands: carol's later payment appears in it.
    let (status, _) = pay(&app, &carol, id).await;
    assert_eq!(status, 200);
    let (status, later) = pay_with_key(&app, &bob, id, "pay-1").await;
    assert_eq!(status, 200, "{later}");
    assert_eq!(later["status"], json!("completed"));
    assert_eq!(share_of(&later, &bob), share_of(&first, &bob));

    // The same key for another request is refused; an error is replayed as it was.
    let other = created(&app, &alice, 5_000, "equal", &[&bob], false).await;
    let other_id = other["id"].as_i64().unwrap();
    let (status, body) = pay_with_key(&app, &bob, other_id, "pay-1").await;
    assert_problem(status, &body, 422, "idempotency-key-reused");
    let (status, body) = pay_with_key(&app, &carol, id, "pay-2").await;
    assert_problem(status, &body, 409, "invalid-state");
    let (status, body) = pay_with_key(&app, &carol, id, "pay-2").await;
    assert_problem(status, &body, 409, "invalid-state");
    assert_eq!(app.balance(&alice).await, 5_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn only_the_requester_and_participants_see_a_settlement_and_only_participants_pay() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.funded("bob", 10_000).await;
    let mallory = app.funded("mallory", 10_000).await;
    let settlement = created(&app, &alice, 6_000, "equal", &[&bob], true).await;
    let id = settlement["id"].as_i64().unwrap();

    for path in [format!("/v1/settlements/{id}"), "/v1/settlements/999999".to_owned()] {
        let (status, body) = app.get(&path, Some(&mallory.token)).await;
        assert_problem(status, &body, 404, "not-found");
    }
    for settlement_id in [id, 999_999, 0, -1] {
        let (status, body) = pay(&app, &mallory, settlement_id).await;
        assert_problem(status, &body, 404, "not-found");
    }
    let (status, body) = app.get("/v1/settlements", Some(&mallory.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settlements"], json!([]));

    // The requester sees it, but has no share to pay.
    let (status, body) = pay(&app, &alice, id).await;
    assert_problem(status, &body, 409, "invalid-state");

    assert_eq!(app.balance(&mallory).await, 10_000);
    assert_eq!(app.balance(&alice).await, 0);
    let (status, _) = pay(&app, &bob, id).await;
    assert_eq!(status, 200);
    assert_eq!(app.balance(&alice).await, 3_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn settlements_are_listed_by_role_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;

    let mut asked_by_alice = Vec::new();
    for total in [1_000, 2_000, 3_000] {
        asked_by_alice.push(created(&app, &alice, total, "equal", &[&bob], true).await["id"].as_i64().unwrap());
    }
    let asked_by_bob = created(&app, &bob, 4_000, "random", &[&alice, &carol], false).await["id"].as_i64().unwrap();
    let not_alices = created(&app, &carol, 5_000, "equal", &[&bob], false).await["id"].as_i64().unwrap();

    let ids = |body: &Value| -> Vec<i64> {
        body["settlements"].as_array().unwrap().iter().map(|s| s["id"].as_i64().unwrap()).collect()
    };
    let (status, body) = app.get("/v1/settlements?role=requested", Some(&alice.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), asked_by_alice.iter().rev().copied().collect::<Vec<_>>());
    let (_, body) = app.get("/v1/settlements?role=owed", Some(&alice.token)).await;
    assert_eq!(ids(&body), vec![asked_by_bob]);
    assert!(body["settlements"][0]["shares"].as_array().unwrap().len() == 2);
    let (_, body) = app.get("/v1/settlements", Some(&alice.token)).await;
    let mut everything = vec![asked_by_bob];
    everything.extend(asked_by_alice.iter().rev());
    assert_eq!(ids(&body), everything);
    assert_eq!(body["next_cursor"], Value::Null);
    assert!(!ids(&body).contains(&not_alices));

    // Bob owes in four (one paid makes no difference), asked for one.
    let (status, _) = pay(&app, &bob, asked_by_alice[0]).await;
    assert_eq!(status, 200);
    let (_, body) = app.get("/v1/settlements?role=owed", Some(&bob.token)).await;
    assert_eq!(ids(&body), vec![not_alices, asked_by_alice[2], asked_by_alice[1], asked_by_alice[0]]);

    // Pages of two, no duplicate and no gap.
    let mut seen = Vec::new();
    let mut path = "/v1/settlements?limit=2".to_owned();
    loop {
        let (status, body) = app.get(&path, Some(&bob.token)).await;
        assert_eq!(status, 200, "{body}");
        seen.extend(ids(&body));
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/settlements?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![not_alices, asked_by_bob, asked_by_alice[2], asked_by_alice[1], asked_by_alice[0]]);

    for query in ["role=payer", "role=", "limit=0", "limit=201", "limit=x", "cursor=garbage", "cursor=i-4"] {
        let (status, body) = app.get(&format!("/v1/settlements?{query}"), Some(&alice.token)).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn bad_settlement_requests_are_422_and_create_nothing() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let valid = json!({"total": 10_000, "mode": "equal", "participant_ids": [bob.id, carol.id],
                       "include_requester": true, "memo": "dinner"});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let too_many: Vec<i64> = (0..101).map(|i| 1_000 + i).collect();
    let hundred_strangers: Vec<i64> = (0..100).map(|i| 1_000 + i).collect();
    let bodies = vec![
        ("duplicate participant", with("participant_ids", json!([bob.id, carol.id, bob.id]))),
        ("requester as participant", with("participant_ids", json!([bob.id, alice.id]))),
        ("only the requester", with("participant_ids", json!([alice.id]))),
        ("nonexistent participant", with("participant_ids", json!([bob.id, 999_999]))),
        ("zero id", with("participant_ids", json!([0]))),
        ("negative id", with("participant_ids", json!([-5]))),
        ("more than 100", with("participant_ids", json!(too_many))),
        ("100 that do not exist", with("participant_ids", json!(hundred_strangers))),
        ("empty list", with("participant_ids", json!([]))),
        (
            "empty list, requester alone",
            json!({"total": 10_000, "mode": "equal", "participant_ids": [],
                                               "include_requester": true}),
        ),
        ("empty list without include_requester", json!({"total": 10_000, "mode": "equal", "participant_ids": []})),
        ("unknown mode", with("mode", json!("thirds"))),
        ("mode in capitals", with("mode", json!("EQUAL"))),
        ("mode not a string", with("mode", json!(1))),
        ("total 0", with("total", json!(0))),
        ("total below the number of shares", with("total", json!(2))),
        ("negative total", with("total", json!(-10_000))),
        ("total over the bound", with("total", json!(1_000_000_000_001i64))),
        ("total as a string", with("total", json!("10000"))),
        ("fractional total", with("total", json!(100.5))),
        ("ids as strings", with("participant_ids", json!([bob.id.to_string()]))),
        ("ids not a list", with("participant_ids", json!(bob.id))),
        ("null id", with("participant_ids", json!([null]))),
        ("include_requester not a boolean", with("include_requester", json!("yes"))),
        ("memo too long", with("memo", json!("m".repeat(65)))),
        ("memo not a string", with("memo", json!(5))),
        ("no total", without("total")),
        ("no mode", without("mode")),
        ("no participants", without("participant_ids")),
    ];
    for (what, body) in bodies {
        let (status, answer) = app.post("/v1/settlements", Some(&alice.token), body.clone()).await;
        assert_eq!(status, 422, "{what}: {body} → {answer}");
        assert_problem(status, &answer, 422, "validation-failed");
    }
    // A nonexistent participant is refused without being named.
    let (status, answer) =
        app.post("/v1/settlements", Some(&alice.token), with("participant_ids", json!([bob.id, 999_999]))).await;
    assert_problem(status, &answer, 422, "validation-failed");
    assert!(!answer["detail"].as_str().unwrap().contains("999999"), "{answer}");

    // Nothing was created, and no one was told anything.
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM settlements), (SELECT count(*) FROM settlement_shares),
                (SELECT count(*) FROM notifications)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(counts, (0, 0, 0));
    for user in [&alice, &bob, &carol] {
        let (_, list) = app.get("/v1/settlements", Some(&user.token)).await;
        assert_eq!(list["settlements"], json!([]));
    }

    // The valid body works, with exactly 100 participants too.
    let (status, body) = app.post("/v1/settlements", Some(&alice.token), valid.clone()).await;
    assert_eq!(status, 201, "{body}");
    let hundred = join_all((0..100).map(|i| app.funded(format!("p{i}"), 0))).await;
    let ids: Vec<i64> = hundred.iter().map(|user| user.id).collect();
    let (status, body) = app.post("/v1/settlements", Some(&alice.token), with("participant_ids", json!(ids))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(amounts(&body).len(), 101);
    assert_eq!(amounts(&body).iter().sum::<i64>(), 10_000);
    // 10,000 over 101 shares: 99 each, and the one extra won to the requester's own share.
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for amount in amounts(&body) {
        *counts.entry(amount).or_default() += 1;
    }
    assert_eq!(counts, BTreeMap::from([(99, 100), (100, 1)]));
    assert_eq!(amounts(&body)[0], 100);
    app.assert_audit_ok().await;
}

/// Payments of many settlements at once, to a few requesters: the writer runs one batch of
/// share payments at a time, each taking every payment waiting, so that batches paying shares
/// of different settlements never fail each other under SERIALIZABLE (their shares sit on the
/// same index pages) and run again alone. Every share is paid once, every settlement completes,
/// the balances are exact, and no batch was retried.
#[tokio::test]
async fn payments_of_many_settlements_at_once_are_batched_together_without_retries() {
    let app = spawn_app().await;
    let mut requesters = Vec::new();
    for index in 0..3 {
        requesters.push(app.signup(&format!("host{index}")).await);
    }
    let mut payers = Vec::new();
    for index in 0..12 {
        payers.push(app.funded(format!("guest{index}"), 100_000).await);
    }
    // Each requester splits 3,000 KRW three ways with each of four trios of payers.
    let mut payments = Vec::new();
    for (r, requester) in requesters.iter().enumerate() {
        for trio in payers.chunks(3) {
            let trio: Vec<&TestUser> = trio.iter().collect();
            let id = created(&app, requester, 3_000, "equal", &trio, false).await["id"].as_i64().unwrap();
            payments.extend(trio.into_iter().map(|payer| (r, payer, id)));
        }
    }
    let retries_before = metric_at(&app.client, &app.base, "minipay_ledger_batch_retries_total").await;
    let answers = join_all(payments.iter().map(|(_, payer, id)| pay(&app, payer, *id))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    let retries = metric_at(&app.client, &app.base, "minipay_ledger_batch_retries_total").await - retries_before;
    assert_eq!(retries, 0, "share-paying batches failed each other");

    for payer in &payers {
        assert_eq!(app.balance(payer).await, 100_000 - 3 * 1_000, "{} paid one share per requester", payer.name);
    }
    for (r, requester) in requesters.iter().enumerate() {
        assert_eq!(app.balance(requester).await, 12 * 1_000);
        for (_, _, id) in payments.iter().filter(|(of, _, _)| *of == r).step_by(3) {
            let (_, read) = app.get(&format!("/v1/settlements/{id}"), Some(&requester.token)).await;
            assert_eq!(read["status"], json!("completed"), "{read}");
        }
    }
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn concurrent_creations_naming_an_unknown_user_create_nothing_and_the_others_name_only_users() {
    let app = spawn_app().await;
    let mut users = Vec::new();
    for index in 0..6 {
        users.push(app.signup(&format!("diner{index}")).await);
    }
    let unknown = users.iter().map(|user| user.id).max().unwrap() + 1_000;
    // Each user asks the next two, at once; every other request also names a user who does not
    // exist, among the others or alone.
    let requests = (0..24).map(|round| {
        let requester = &users[round % users.len()];
        let mut ids = vec![users[(round + 1) % users.len()].id, users[(round + 2) % users.len()].id];
        match round % 4 {
            1 => ids.insert(1, unknown),
            3 => ids = vec![unknown],
            _ => {}
        }
        let body =
            json!({"total": 9_000, "mode": "equal", "participant_ids": ids, "include_requester": round % 3 == 0});
        app.post("/v1/settlements", Some(&requester.token), body)
    });
    let answers = join_all(requests).await;
    for (round, (status, body)) in answers.iter().enumerate() {
        let expected = if round % 2 == 1 { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::CREATED };
        assert_eq!(*status, expected, "request {round}: {body}");
    }

    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let (settlements, shares, notifications) = created_so_far(&mut conn).await;
    assert_eq!(settlements, 12);
    // Twelve settlements of two participants, four of them with the requester's own share.
    assert_eq!(shares, 12 * 2 + 4);
    assert_eq!(notifications, 12 * 2);
    let told: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications n JOIN settlement_shares sh
             ON sh.settlement_id = (n.payload->>'settlement_id')::int8 AND sh.user_id = n.user_id
          WHERE n.kind = 'settlement_requested' AND sh.status = 'requested'
            AND (n.payload->>'amount')::int8 = sh.amount AND n.payload->>'requester_name' IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(told, 12 * 2, "each participant is told of their own share");
    // Every share and settlement names an existing user and settlement: what the dropped
    // foreign keys promised (the audit's `settlements-name-their-parties`).
    app.assert_audit_ok().await;
}

/// A process keeps what a payment needs of the settlements it has met (the requester's account,
/// the memo, the parties). One that did not create the settlement reads it, and still lets
/// only its parties pay: a stranger gets 404, the requester 409, a participant pays into the
/// requester's account with the memo, in either process.
#[tokio::test]
async fn a_settlement_created_in_one_process_is_paid_through_another_by_its_parties_only() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.funded("bob", 10_000).await;
    let carol = app.funded("carol", 10_000).await;
    let stranger = app.funded("stranger", 10_000).await;
    let other = spawn_server_process_with(&app, &[]).await;
    let id = created(&app, &alice, 2_000, "equal", &[&bob, &carol], false).await["id"].as_i64().unwrap();

    let pay_at = |base: String, payer: &TestUser| {
        let request = app.client.post(format!("{base}/v1/settlements/{id}/pay")).bearer_auth(&payer.token);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for base in [other.base.clone(), app.base.clone()] {
        let (status, body) = pay_at(base.clone(), &stranger).await;
        assert_problem(status, &body, 404, "not-found");
        let (status, body) = pay_at(base, &alice).await;
        assert_problem(status, &body, 409, "invalid-state");
    }
    let (status, body) = pay_at(other.base.clone(), &bob).await;
    assert_eq!(status, 200, "{body}");
    // The other process read the settlement's fixed fields to answer the payment.
    let (_, read) = app.get(&format!("/v1/settlements/{id}"), Some(&alice.token)).await;
    assert_eq!(read, body);
    let transfer_id = share_of(&body, &bob)["transfer_id"].as_i64().expect("a transfer paid the share");
    let (status, transfer) = app.get(&format!("/v1/transfers/{transfer_id}"), Some(&alice.token)).await;
    assert_eq!(status, 200, "{transfer}");
    assert_eq!(transfer["to_account_id"], json!(alice.main_account_id));
    assert_eq!(transfer["memo"], json!("dinner"));
    let (status, body) = pay_at(app.base.clone(), &carol).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("completed"), "{body}");
    assert_eq!(app.balance(&alice).await, 2_000);
    assert_eq!(app.balance(&stranger).await, 10_000);
    app.assert_audit_ok().await;
}
