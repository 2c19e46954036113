use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_new_user_has_one_empty_main_account_and_can_top_up() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let (status, body) = app.get("/v1/accounts", Some(&alice.token)).await;
    assert_eq!(status, 200);
    let accounts = body["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["kind"], json!("main"));
    assert_eq!(accounts[0]["balance"], json!(0));
    assert_eq!(app.me(&alice).await["daily_charge"]["used"], json!(0));

    let (status, body) = app.charge(&alice, 50_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["account"]["balance"], json!(50_000));
    assert_eq!(body["daily_charge"]["remaining"], json!(2_950_000));
    app.assert_audit_ok().await;
}
