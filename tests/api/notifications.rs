//! Notifications over HTTP: split bills for participants, money received for the requester,
//! oldest first after an id, each user seeing only their own.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::join_all;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::settlements::{created, pay};

async fn notifications(app: &TestApp, user: &TestUser, query: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/notifications{query}"), Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["notifications"].as_array().unwrap().clone()
}

fn ids(notifications: &[Value]) -> Vec<i64> {
    notifications.iter().map(|notification| notification["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn participants_are_asked_to_pay_and_the_requester_hears_of_each_payment() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let settlement = created(&app, &alice, 20_000, "equal", &[&bob, &carol], true).await;
    let id = settlement["id"].as_i64().unwrap();

    for (user, amount) in [(&bob, 6_667), (&carol, 6_666)] {
        let found = notifications(&app, user, "").await;
        assert_eq!(found.len(), 1, "{found:?}");
        let notification = &found[0];
        assert_eq!(notification["kind"], json!("settlement_requested"));
        assert!(notification["created_at"].is_string());
        assert_eq!(
            notification["payload"],
            json!({"settlement_id": id, "requester_id": alice.id, "requester_name": "alice", "amount": amount,
                   "total": 20_000, "mode": "equal", "memo": "dinner"})
        );
    }
    // The requester's own share is not a request to themselves.
    assert_eq!(notifications(&app, &alice, "").await, Vec::<Value>::new());

    let (status, body) = pay(&app, &bob, id).await;
    assert_eq!(status, 200, "{body}");
    let found = notifications(&app, &alice, "").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["kind"], json!("transfer_received"));
    assert_eq!(found[0]["payload"]["amount"], json!(6_667));
    assert_eq!(found[0]["payload"]["from_name"], json!("bob"));
    assert_eq!(found[0]["payload"]["memo"], json!("dinner"));
    let transfer_id = body["shares"][1]["transfer_id"].clone();
    assert_eq!(found[0]["payload"]["transfer_id"], transfer_id);

    let (status, _) = pay(&app, &carol, id).await;
    assert_eq!(status, 200);
    let found = notifications(&app, &alice, "").await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[1]["payload"]["amount"], json!(6_666));
    // Paying sends nothing to the payer.
    assert_eq!(notifications(&app, &bob, "").await.len(), 1);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn notifications_come_oldest_first_after_the_given_id_in_pages() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let (status, body) = app.charge(&alice, 100_000).await;
    assert_eq!(status, 201, "{body}");
    // Transfers and split bills, interleaved: seven notifications for bob.
    for round in 0..7 {
        if round % 2 == 0 {
            let (status, body) = app
                .post(
                    "/v1/transfers",
                    Some(&alice.token),
                    json!({"to_account_id": bob.main_account_id, "amount": 1_000 + round}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        } else {
            created(&app, &alice, 1_000 + round, "random", &[&bob], false).await;
        }
    }
    let all = notifications(&app, &bob, "").await;
    let kinds: Vec<&str> = all.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "transfer_received",
            "settlement_requested",
            "transfer_received",
            "settlement_requested",
            "transfer_received",
            "settlement_requested",
            "transfer_received"
        ]
    );
    let all_ids = ids(&all);
    assert!(all_ids.windows(2).all(|pair| pair[0] < pair[1]), "{all_ids:?}");
    for (round, notification) in all.iter().enumerate() {
        let expected_amount = 1_000 + round as i64;
        let amount =
            if round % 2 == 0 { &notification["payload"]["amount"] } else { &notification["payload"]["total"] };
        assert_eq!(amount, &json!(expected_amount), "{notification}");
    }

    // Pages of three, each after the last id seen: every notification once, in order.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = notifications(&app, &bob, &format!("?after={after}&limit=3")).await;
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap()["id"].as_i64().unwrap();
        seen.extend(ids(&page));
    }
    assert_eq!(seen, all_ids);
    assert_eq!(ids(&notifications(&app, &bob, &format!("?after={}", all_ids[4])).await), all_ids[5..].to_vec());
    assert_eq!(notifications(&app, &bob, "?limit=200").await.len(), 7);
    assert_eq!(notifications(&app, &bob, "?after=9223372036854775807").await.len(), 0);

    // Alice was told nothing; she cannot see bob's.
    assert_eq!(notifications(&app, &alice, "").await, Vec::<Value>::new());

    for query in ["?limit=0", "?limit=201", "?limit=-1", "?limit=ten", "?after=-1", "?after=abc", "?after=1.5"] {
        let (status, body) = app.get(&format!("/v1/notifications{query}"), Some(&bob.token)).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn notifications_written_concurrently_are_all_seen_by_a_reader_polling_after_the_last_id() {
    let app = spawn_app().await;
    let app = &app;
    let bob = &app.signup("bob").await;
    let requesters = join_all((0..12).map(|i| async move {
        let user = app.signup(&format!("requester{i}")).await;
        let (status, body) = app.charge(&user, 50_000).await;
        assert_eq!(status, 201, "{body}");
        user
    }))
    .await;

    // Split bills (written by their own transactions) and transfers (by ledger batches) to bob
    // at once, while bob polls after the last id he has seen.
    let writing = AtomicBool::new(true);
    let writers = async {
        join_all(requesters.iter().map(|requester| async move {
            for round in 0..4 {
                if round % 2 == 0 {
                    created(app, requester, 10_000, "equal", &[bob], false).await;
                } else {
                    let body = json!({"to_account_id": bob.main_account_id, "amount": 1_000});
                    let (status, body) = app.post("/v1/transfers", Some(&requester.token), body).await;
                    assert_eq!(status, 201, "{body}");
                }
            }
        }))
        .await;
        writing.store(false, Ordering::SeqCst);
    };
    let poller = async {
        let mut seen = Vec::new();
        loop {
            let still_writing = writing.load(Ordering::SeqCst);
            let after = seen.last().copied().unwrap_or(0);
            let page = notifications(app, bob, &format!("?after={after}&limit=5")).await;
            seen.extend(ids(&page));
            if page.is_empty() && !still_writing {
                break seen;
            }
        }
    };
    let ((), seen) = tokio::join!(writers, poller);
    let all = ids(&notifications(app, bob, "?limit=200").await);
    assert_eq!(all.len(), 48);
    assert_eq!(seen, all, "polling after the last id seen skipped none and saw none twice");
    app.assert_audit_ok().await;
}

async fn run_job(app: &TestApp, job: &str) -> Value {
    let (status, body) =
        app.request(reqwest::Method::POST, &format!("/admin/jobs/{job}/run"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{job}: {body}");
    body
}

async fn relogin(app: &TestApp, users: &[TestUser]) -> Vec<TestUser> {
    join_all(users.iter().map(|user| async move { TestUser { token: app.login(&user.name).await, ..user.clone() } }))
        .await
}

/// Every writer of notifications at once, for the same three readers: transfers and pending
/// transfers (ledger batches of two writers), split bills (their own transactions, several
/// participants each), the reminders and pending-expiry jobs (in chunks of three) — while each
/// reader polls after the last id it has seen. A notification whose id was taken before
/// another's of the same reader but committed after it would be skipped by a poll that fell
/// between the two commits; every id must be seen exactly once.
#[tokio::test]
async fn every_writer_at_once_never_makes_a_reader_polling_after_the_last_id_skip_one() {
    const ROUNDS: usize = 10;
    let app = spawn_app_with(|config| config.jobs.chunk_size = 3).await;
    let app = &app;
    let set_confirm = |user: TestUser| async move {
        let body = json!({"transfer_mode": "confirm"});
        let (status, body) = app.request(reqwest::Method::PATCH, "/v1/me", Some(&user.token), Some(body)).await;
        assert_eq!(status, 200, "{body}");
        user
    };
    let readers =
        join_all((0..3).map(|i| async move { set_confirm(app.funded(format!("reader{i}"), 100_000).await).await }))
            .await;
    let payers = join_all((0..8).map(|i| app.funded(format!("payer{i}"), 500_000))).await;
    let holders =
        join_all((0..8).map(|i| async move { set_confirm(app.funded(format!("holder{i}"), 500_000).await).await }))
            .await;
    let requesters = join_all((0..6).map(|i| app.funded(format!("requester{i}"), 0))).await;

    // Pending transfers the jobs will act on: the readers' own to each other, which expire and
    // tell their senders (the readers), and later ones to the readers, which are due reminders.
    let start = app.clock_now().await;
    let pending_to = |sender: &TestUser, receiver: &TestUser| {
        let body = json!({"to_account_id": receiver.main_account_id, "amount": 1_000});
        let token = sender.token.clone();
        async move {
            let (status, body) = app.post("/v1/transfers", Some(&token), body).await;
            assert_eq!(status, 201, "{body}");
            assert_eq!(body["status"], json!("pending"), "{body}");
        }
    };
    join_all((0..6).map(|i| pending_to(&readers[i % 3], &readers[(i + 1) % 3]))).await;
    app.set_clock(&(start + chrono::Duration::hours(25)).to_rfc3339()).await;
    let holders = relogin(app, &holders).await;
    join_all((0..12).map(|i| pending_to(&holders[i % 8], &readers[i % 3]))).await;
    // The first ones have expired, the later ones are 48 hours old: due a reminder.
    app.set_clock(&(start + chrono::Duration::hours(73) + chrono::Duration::minutes(1)).to_rfc3339()).await;
    let (readers, payers, holders, requesters) = (
        relogin(app, &readers).await,
        relogin(app, &payers).await,
        relogin(app, &holders).await,
        relogin(app, &requesters).await,
    );
    let (readers, payers, holders, requesters) = (&readers, &payers, &holders, &requesters);

    let writing = AtomicBool::new(true);
    let writers = async {
        let transfers = join_all(payers.iter().chain(holders).enumerate().map(|(i, sender)| async move {
            for round in 0..ROUNDS {
                let body = json!({"to_account_id": readers[(i + round) % 3].main_account_id, "amount": 100});
                let (status, body) = app.post("/v1/transfers", Some(&sender.token), body).await;
                assert_eq!(status, 201, "{body}");
            }
        }));
        let settlements = join_all(requesters.iter().map(|requester| async move {
            let participants: Vec<&TestUser> = readers.iter().collect();
            for _ in 0..ROUNDS {
                created(app, requester, 3_000, "equal", &participants, false).await;
            }
        }));
        let jobs = async { (run_job(app, "pending-expiry").await, run_job(app, "reminders").await) };
        let ((), (), (expired, reminded)) = tokio::join!(
            async {
                transfers.await;
            },
            async {
                settlements.await;
            },
            jobs
        );
        writing.store(false, Ordering::SeqCst);
        (expired, reminded)
    };
    let poll = |user: &TestUser| {
        let (user, writing) = (user.clone(), &writing);
        async move {
            let mut seen = Vec::new();
            loop {
                let still_writing = writing.load(Ordering::SeqCst);
                let after = seen.last().copied().unwrap_or(0);
                let page = notifications(app, &user, &format!("?after={after}&limit=5")).await;
                seen.extend(ids(&page));
                if page.is_empty() && !still_writing {
                    break seen;
                }
            }
        }
    };
    let ((expired, reminded), seen) = tokio::join!(writers, join_all(readers.iter().map(poll)));
    assert_eq!(expired["processed"], json!(6), "{expired}");
    assert_eq!(reminded["processed"], json!(12), "{reminded}");

    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    for (reader, seen) in readers.iter().zip(seen) {
        let stored: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, kind FROM notifications WHERE user_id = $1 ORDER BY id")
                .bind(reader.id)
                .fetch_all(&pool)
                .await
                .unwrap();
        let kinds: std::collections::BTreeSet<&str> = stored.iter().map(|(_, kind)| kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "pending_transfer_expired",
                "pending_transfer_received",
                "pending_transfer_reminder",
                "settlement_requested",
                "transfer_received"
            ]
            .into(),
            "every kind a reader can be told of was written"
        );
        let all: Vec<i64> = stored.iter().map(|(id, _)| *id).collect();
        let missed: Vec<&i64> = all.iter().filter(|id| !seen.contains(id)).collect();
        assert!(missed.is_empty(), "{} skipped {missed:?} of {} notifications", reader.name, all.len());
        assert_eq!(seen, all, "{}: every notification seen once, in order", reader.name);
    }
    app.assert_audit_ok().await;
}
