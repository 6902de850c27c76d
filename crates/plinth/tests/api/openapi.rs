//! The served contract (`/v1/openapi.json`) and the reference viewer (`/docs`).

use serde_json::Value;

use crate::harness::{Env, example_schema_path, run_cli};

#[tokio::test]
async fn openapi_json_matches_snapshot() {
    let env = Env::new();
    let s = env.start().await;
    let r = s.get("/v1/openapi.json").await;
    let doc = r.ok();
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type: {:?}",
        r.header("content-type")
    );
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1"), "openapi = {version}");
    for p in [
        "/v1/posts",
        "/v1/posts/{id}",
        "/v1/comments",
        "/v1/comments/{id}",
    ] {
        assert!(doc["paths"].get(p).is_some(), "path {p} documented");
    }
    assert!(
        !r.text.contains(&s.addr),
        "the contract does not depend on the listen address"
    );
    insta::assert_json_snapshot!("openapi_blog", doc);
}

#[tokio::test]
async fn served_contract_equals_the_openapi_command_output() {
    let env = Env::with_schema(
        &std::fs::read_to_string(example_schema_path()).expect("read the example"),
    );
    let s = env.start().await;
    let served = s.get("/v1/openapi.json").await.ok();
    let path = example_schema_path();
    let out = run_cli(
        &["openapi", "--schema", path.to_str().expect("utf-8 path")],
        &[],
        env.dir(),
    )
    .await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let printed: Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
    assert_eq!(served, printed, "GET /v1/openapi.json == plinth openapi");
}

#[tokio::test]
async fn docs_page_is_self_contained_html() {
    let env = Env::new();
    let s = env.start().await;
    let r = s.get("/docs").await;
    r.expect_status(200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/html"), "content-type: {ct}");
    let html = r.text.to_lowercase();
    assert!(html.contains("<html"), "an HTML document");
    assert!(
        html.contains("/v1/openapi.json"),
        "loads the served contract"
    );
    for external in ["src=\"http", "src='http", "href=\"http", "@import"] {
        assert!(
            !html.contains(external),
            "works offline: no external resource ({external})"
        );
    }
}
