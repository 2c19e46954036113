//! The tuned history route against hostile cursors and a slow ClickHouse: no cursor answers
//! 500 whichever store answers, every ClickHouse query has a server-side time limit, and the
//! queries of a read that gave up on ClickHouse do not keep running there.

use crate::helpers::*;

/// Cursors that parse as numbers but name no instant an entry could have.
const OUT_OF_RANGE_CURSORS: [&str; 4] =
    ["h9223372036854775807.1", "h9223372036854775807.1.5", "h253402300800000000.1", "h18446744073709551615.1"];

async fn assert_cursors_refused(app: &TestApp) {
    let alice = app.signup("alice").await;
    for cursor in OUT_OF_RANGE_CURSORS {
        let path = format!("/v1/accounts/{}/history?cursor={cursor}", alice.main_account_id);
        let response = app.raw_request(reqwest::Method::GET, &path, Some(&alice.token), None, None).await;
        assert_problem_response(&response, 422, "validation-failed");
    }
    // The newest representable cursor still reads (an empty page).
    let path = format!("/v1/accounts/{}/history?cursor=h253402300799999999.1", alice.main_account_id);
    let (status, body) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_cursor_out_of_range_is_refused_with_clickhouse_up() {
    let app = spawn_app().await;
    assert_cursors_refused(&app).await;
}

#[tokio::test]
async fn a_cursor_out_of_range_is_refused_with_clickhouse_unreachable() {
    let app = spawn_app_with(|config| config.clickhouse_url = "http://127.0.0.1:9".into()).await;
    assert_cursors_refused(&app).await;
}
