//! The counterparties' repeats ClickHouse keeps for summaries of up to 31 days: written by the
//! forwarder for every entry whatever order entries move in, the same as the backfill's, and
//! what a busy account's summary counts its top counterparties from.

use minipay::history::clickhouse::ClickHouse;
use sqlx::PgPool;

use crate::aggregates::{
    app_without_forwarder, clickhouse_client, drain, encode, ensure_months_since, forwarder, outbox_rows, summaries,
    wait_for_mutations,
};
use crate::helpers::*;

/// `count` entries of `account_id` spread irregularly over the 60 days before `now`: two dozen
/// regular counterparties (from `first_counterparty` on), some occasional ones, one-off ones
/// and top-ups, in and out, with an outbox row per commit time (so they move out of order).
async fn irregular_history(pool: &PgPool, (account_id, first_counterparty): (i64, i64), count: i64) {
    let now = chrono::Utc::now();
    ensure_months_since(pool, now - chrono::Duration::days(62), now).await;
    sqlx::query(
        "INSERT INTO statement_entries (id, account_id, at, direction, amount, balance_after, kind,
                counterparty_account_id, counterparty_name, transfer_id, memo, counterparty_user_name)
         SELECT nextval('statement_entries_id_seq'), $1, $3 - ((g * 7919) % 86400) * interval '1 minute',
                CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END, 10 + g % 97, 1,
                CASE WHEN g % 5 = 0 THEN 'charge' WHEN g % 11 = 0 THEN 'refund' ELSE 'transfer' END,
                CASE WHEN g % 5 = 0 THEN NULL WHEN g % 3 = 0 THEN $2 + 1000 + g WHEN g % 7 = 0 THEN $2 + 100 + g % 300
                     ELSE $2 + (g / 7) % 24 END,
                CASE WHEN g % 5 = 0 THEN 'external' ELSE 'cp' || ((g / 7) % 24) END, NULL, NULL,
                CASE WHEN g % 5 = 0 THEN NULL ELSE 'user' || ((g / 7) % 24) END
           FROM generate_series(1, $4) g",
    )
    .bind(account_id)
    .bind(first_counterparty)
    .bind(now)
    .bind(count)
    .execute(pool)
    .await
    .unwrap();
    outbox_rows(pool, account_id).await;
}

/// The entries with a row of level 3 (the one level written), as ClickHouse holds them, and
/// that no other level is written.
async fn repeating_in_clickhouse(app: &TestApp, account_id: i64) -> Vec<i64> {
    let rows: Vec<(u64, u8)> = clickhouse_client(app)
        .query("SELECT DISTINCT entry_id, level FROM counterparty_repeats WHERE account_id = ? ORDER BY entry_id")
        .bind(account_id)
        .fetch_all()
        .await
        .unwrap();
    assert!(rows.iter().all(|(_, level)| *level == 3), "{rows:?}");
    rows.into_iter().map(|(entry_id, _)| entry_id as i64).collect()
}

/// The entries with at least three others of their counterparty within 31 days, counted by
/// PostgreSQL one entry at a time.
async fn repeating_expected(pool: &PgPool, account_id: i64) -> (Vec<i64>, usize) {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT e.id, (SELECT count(*) FROM statement_entries n
                        WHERE n.account_id = e.account_id AND n.counterparty_account_id = e.counterparty_account_id
                          AND n.id <> e.id AND abs(extract(epoch FROM n.at - e.at)) <= 31 * 86400)
         FROM statement_entries e WHERE e.account_id = $1 AND e.counterparty_account_id IS NOT NULL ORDER BY e.id",
    )
    .bind(account_id)
    .fetch_all(pool)
    .await
    .unwrap();
    let fewer = rows.iter().filter(|(_, near)| (1..3).contains(near)).count();
    (rows.into_iter().filter(|(_, near)| *near >= 3).map(|(id, _)| id).collect(), fewer)
}

/// Batches of a few entries, moved out of order, give every entry the repeats it has (checked
/// against PostgreSQL's count); the backfill writes the same; and a busy account's summaries
/// of up to 31 days, filtered or not, take their top counterparties from them: with the
/// counterparties with an account gone from the daily counterparty totals, they still equal
/// the naive summaries.
#[tokio::test]
async fn every_entry_has_its_repeats_and_summaries_count_their_top_counterparties_from_them() {
    let (app, pool) = app_without_forwarder().await;
    let user = app.signup("regular").await;
    irregular_history(&pool, (user.main_account_id, 5_000_000), 3_000).await;
    assert!(drain(&forwarder(&app, &pool).with_batch_size(7)).await >= 3_000);
    let (expected, fewer) = repeating_expected(&pool, user.main_account_id).await;
    assert!(expected.len() > 1_000 && fewer > 50, "{} entries with three near, {fewer} with fewer", expected.len());
    assert_eq!(repeating_in_clickhouse(&app, user.main_account_id).await, expected);

    let clickhouse = clickhouse_client(&app);
    clickhouse.query("TRUNCATE TABLE counterparty_repeats").execute().await.unwrap();
    let store = ClickHouse::new(&std::env::var("CLICKHOUSE_URL").unwrap(), &app.database).unwrap();
    store.backfill_repeats().await.unwrap();
    assert_eq!(repeating_in_clickhouse(&app, user.main_account_id).await, expected);

    // Without the counts of the counterparties with an account over whole days, only their
    // repeats can give the top ones.
    clickhouse
        .query("ALTER TABLE daily_counterparty_totals DELETE WHERE counterparty_id <> 0")
        .execute()
        .await
        .unwrap();
    wait_for_mutations(&app).await;
    let now = chrono::Utc::now();
    let ranges = [
        format!("&from={}", encode(now - chrono::Duration::days(30))),
        format!(
            "&from={}&to={}",
            encode(now - chrono::Duration::hours(31 * 24 - 5)),
            encode(now - chrono::Duration::hours(7))
        ),
    ];
    for range in &ranges {
        for filter in ["", "&direction=in", "&direction=out&kind=transfer"] {
            let query = format!("{range}{filter}").replacen('&', "?", 1);
            let (source, tuned, naive) = summaries(&app, &user, &query).await;
            assert_eq!(source.as_deref(), Some("clickhouse"), "{query}");
            assert_eq!(tuned["top_counterparties"], naive["top_counterparties"], "{query}");
            assert_eq!(tuned, naive, "{query}");
            assert_eq!(tuned["top_counterparties"].as_array().unwrap().len(), 10, "{query}");
        }
    }
    app.stop().await;
}
