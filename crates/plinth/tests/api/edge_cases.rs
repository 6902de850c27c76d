//! Regressions from a hostile review: each was a real bug once.

use serde_json::json;

use crate::harness::{Env, on_postgres, run_cli};

const SCHEMA: &str = r#"
[collections.items.permissions]
list = "public"
read = "public"
create = "public"
update = "public"
delete = "public"

[collections.items.fields]
code = { type = "text", unique = true }
a    = { type = "text" }
b    = { type = "integer" }
n    = { type = "number" }
at   = { type = "datetime" }
owner = { type = "relation", collection = "owners" }

[[collections.items.indexes]]
fields = ["a", "b"]
unique = true

[collections.owners.permissions]
list = "public"
read = "public"
create = "public"
update = "public"
delete = "public"

[collections.owners.fields]
name = { type = "text" }
old  = { type = "text", deprecated = "2026-10-15" }
"#;

#[tokio::test]
async fn a_datetime_past_year_9999_in_utc_is_a_422_not_a_panic() {
    let env = Env::with_schema(SCHEMA);
    let s = env.start().await;
    let r = s
        .post("/v1/items", &json!({"at": "9999-12-31T23:59:59-01:00"}))
        .await;
    r.expect_status(422);
    assert_eq!(r.json()["errors"][0]["code"], "format");
    let r = s
        .get("/v1/items?filter=at%20%3E%20%229999-12-31T23%3A59%3A59-01%3A00%22")
        .await;
    r.expect_status(400);
    // The schema checker refuses such a default instead of crashing.
    let env2 = Env::with_schema(
        "[collections.p]\npermissions = \"public\"\n[collections.p.fields]\nt = { type = \"datetime\", default = \"9999-12-31T23:59:59-01:00\" }\n",
    );
    let schema = env2.schema_path();
    let out = run_cli(
        &["check", "--schema", schema.to_str().expect("utf-8")],
        &[],
        env2.dir(),
    )
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("not an RFC 3339 date-time"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_conflict_names_every_violated_unique_constraint_on_every_database() {
    let env = Env::with_schema(SCHEMA);
    let s = env.start().await;
    s.create("items", &json!({"code": "c1", "a": "x", "b": 1}))
        .await;
    let r = s
        .post("/v1/items", &json!({"code": "c1", "a": "x", "b": 1}))
        .await;
    r.expect_status(409);
    let fields: Vec<String> = r.json()["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field").to_owned())
        .collect();
    assert_eq!(fields, ["code", "a", "b"]);
    // Only the two-field index.
    let r = s
        .post("/v1/items", &json!({"code": "c2", "a": "x", "b": 1}))
        .await;
    r.expect_status(409);
    assert_eq!(r.json()["errors"].as_array().map(Vec::len), Some(2));
    // On update too.
    let other = s
        .create("items", &json!({"code": "c3", "a": "y", "b": 2}))
        .await;
    let path = format!("/v1/items/{}", other["id"].as_str().expect("id"));
    let r = s.patch(&path, &json!({"code": "c1"})).await;
    r.expect_status(409);
    assert_eq!(r.json()["errors"][0]["field"], "code");
}

#[tokio::test]
async fn negative_zero_reads_back_the_same_everywhere() {
    let env = Env::with_schema(SCHEMA);
    let s = env.start().await;
    let rec = s.create("items", &json!({"n": -0.0})).await;
    let path = format!("/v1/items/{}", rec["id"].as_str().expect("id"));
    let got = s.get(&path).await.ok();
    assert_eq!(rec["n"].to_string(), got["n"].to_string());
    assert_eq!(got["n"].to_string(), "0.0");
}

#[tokio::test]
async fn expanded_records_with_deprecated_fields_are_announced() {
    let env = Env::with_schema(SCHEMA);
    let s = env.start().await;
    let owner = s.create("owners", &json!({"name": "o"})).await;
    s.create("items", &json!({"owner": owner["id"]})).await;
    let r = s.get("/v1/items?expand=owner").await;
    r.expect_status(200);
    assert!(r.header("deprecation").is_some(), "{:?}", r.headers);
    assert!(s.get("/v1/items").await.header("deprecation").is_none());
}

#[tokio::test]
async fn explain_calls_a_filtered_walk_in_index_order_a_scan() {
    if on_postgres() {
        eprintln!("skipped on PostgreSQL: the plan text is SQLite's");
        return;
    }
    let env = Env::new();
    let s = env.start().await;
    s.stop().await;
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["explain", "--schema"])
        .arg(env.schema_path())
        .arg("--data-dir")
        .arg(env.data_dir())
        .args(["posts", "views = 5"])
        .output()
        .expect("run explain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SCAN:"), "{stdout}");
    assert!(!stdout.contains("Served by an index."), "{stdout}");
    assert!(
        stdout.contains(r#"fields = ["views", "created_at"]"#),
        "{stdout}"
    );
}
