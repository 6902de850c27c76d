//! Deprecated collections and fields: flagged in the contract, announced with
//! `Deprecation` (RFC 9745) and `Sunset` (RFC 8594) headers.

use serde_json::json;

use crate::harness::{Env, run_cli};

const SCHEMA: &str = r#"
[collections.legacy]
deprecated = "2026-11-01"
sunset = "2027-06-30"
[collections.legacy.permissions]
list = "public"
read = "public"
create = "public"
update = "public"
delete = "public"

[collections.legacy.fields]
name = { type = "text" }

[collections.items.permissions]
list = "public"
read = "public"
create = "public"
update = "public"
delete = "public"

[collections.items.fields]
title = { type = "text" }
old_code = { type = "text", deprecated = "2026-10-15" }
"#;

#[tokio::test]
async fn deprecated_collections_and_fields_are_announced() {
    let env = Env::with_schema(SCHEMA);
    let s = env.start().await;

    // A deprecated collection: every route says so.
    let created = s.post("/v1/legacy", &json!({"name": "x"})).await;
    created.expect_status(201);
    // 2026-11-01T00:00:00Z and an HTTP-date for the sunset.
    assert_eq!(
        created.header("deprecation").as_deref(),
        Some("@1793491200")
    );
    assert_eq!(
        created.header("sunset").as_deref(),
        Some("Wed, 30 Jun 2027 00:00:00 GMT")
    );
    assert!(
        created
            .header("link")
            .is_some_and(|l| l.contains("rel=\"deprecation\""))
    );
    let id = created.json()["id"].as_str().expect("id").to_owned();
    for r in [
        s.get("/v1/legacy").await,
        s.get(&format!("/v1/legacy/{id}")).await,
        s.delete(&format!("/v1/legacy/{id}")).await,
    ] {
        assert_eq!(
            r.header("deprecation").as_deref(),
            Some("@1793491200"),
            "{}",
            r.path
        );
    }

    // A deprecated field: responses that carry it say so; a list that
    // selects other fields does not.
    let item = s
        .post("/v1/items", &json!({"title": "t", "old_code": "A1"}))
        .await;
    item.expect_status(201);
    assert_eq!(item.header("deprecation").as_deref(), Some("@1792022400"));
    assert_eq!(item.header("sunset"), None);
    assert!(s.get("/v1/items").await.header("deprecation").is_some());
    assert_eq!(
        s.get("/v1/items?fields=id,title")
            .await
            .header("deprecation"),
        None
    );
    assert!(
        s.get("/v1/items?fields=old_code")
            .await
            .header("deprecation")
            .is_some()
    );

    // The contract flags them.
    let doc = s.get("/v1/openapi.json").await.ok();
    assert_eq!(doc["paths"]["/v1/legacy"]["get"]["deprecated"], true);
    assert_eq!(
        doc["paths"]["/v1/legacy/{id}"]["delete"]["deprecated"],
        true
    );
    assert!(doc["paths"]["/v1/items"]["get"].get("deprecated").is_none());
    assert_eq!(
        doc["components"]["schemas"]["ItemsRecord"]["properties"]["old_code"]["deprecated"],
        true
    );
}

#[tokio::test]
async fn a_sunset_before_the_deprecation_date_is_refused() {
    let env = Env::with_schema(
        "[collections.items]\ndeprecated = \"2027-01-01\"\nsunset = \"2026-01-01\"\n[collections.items.fields]\na = { type = \"text\", sunset = \"2027-01-01\" }\n",
    );
    let schema = env.schema_path();
    let out = run_cli(
        &["check", "--schema", schema.to_str().expect("utf-8 path")],
        &[],
        env.dir(),
    )
    .await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("before its deprecation date"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("has a `sunset` but no `deprecated` date"),
        "{}",
        out.stderr
    );
}
