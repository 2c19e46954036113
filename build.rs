// `sqlx::migrate!` embeds migrations/ at compile time: a new migration must rebuild the crate
// (and the tests, whose template database name is derived from the migrations).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
