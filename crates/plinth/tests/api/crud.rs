//! Create, read, update (merge patch), delete and list.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::harness::{Env, assert_problem, is_timestamp, is_uuid_v7, item};

#[tokio::test]
async fn create_returns_201_location_and_record_with_defaults() {
    let env = Env::new();
    let s = env.start().await;

    let r = s.post("/v1/posts", &json!({ "title": "Hello" })).await;
    let rec = r.created();
    let id = rec["id"].as_str().expect("id is a string").to_owned();
    assert!(is_uuid_v7(&id), "id is a UUIDv7: {id}");
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("/v1/posts/{id}").as_str())
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type: {:?}",
        r.header("content-type")
    );

    let created_at = rec["created_at"].as_str().expect("created_at");
    let updated_at = rec["updated_at"].as_str().expect("updated_at");
    assert!(is_timestamp(created_at), "created_at format: {created_at}");
    assert!(is_timestamp(updated_at), "updated_at format: {updated_at}");
    assert!(updated_at >= created_at);
    assert_eq!(rec["version"], json!(1));

    // Defaults applied; unset optional fields are present and null.
    assert_eq!(rec["title"], json!("Hello"));
    assert_eq!(rec["views"], json!(0));
    assert_eq!(rec["status"], json!("draft"));
    assert_eq!(rec["featured"], json!(false));
    for f in [
        "slug",
        "body",
        "rating",
        "published_at",
        "publish_on",
        "author_email",
        "canonical_url",
        "meta",
    ] {
        assert!(
            rec.get(f).is_some_and(serde_json::Value::is_null),
            "unset optional field {f} should be null: {rec}"
        );
    }
    // Exactly the system fields plus the declared fields.
    let keys = rec.as_object().expect("record is an object").len();
    assert_eq!(keys, 4 + 12, "record has system + 12 user fields: {rec}");
}

#[tokio::test]
async fn create_with_every_field_set_round_trips() {
    let env = Env::new();
    let s = env.start().await;
    let body = json!({
        "title": "Full",
        "slug": "full-post-1",
        "body": "Some text\nwith lines and ünïcödé ✓",
        "views": 42,
        "rating": 4.5,
        "featured": true,
        "status": "published",
        "published_at": "2026-01-02T03:04:05.123456Z",
        "publish_on": "2026-01-31",
        "author_email": "ann@example.com",
        "canonical_url": "https://example.com/posts/full?x=1#top",
        "meta": { "tags": ["a", "b"], "n": 1 }
    });
    let rec = s.create("posts", &body).await;
    for (k, v) in body.as_object().expect("object") {
        assert_eq!(&rec[k], v, "field {k} round-trips");
    }
    let got = s.get(&item("posts", &rec)).await.ok();
    assert_eq!(got, rec, "GET returns what POST returned");
}

#[tokio::test]
async fn get_returns_the_created_record() {
    let env = Env::new();
    let s = env.start().await;
    let rec = s.create_post("Read me").await;
    let r = s.get(&item("posts", &rec)).await;
    let got = r.ok();
    assert_eq!(got, rec);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
}

#[tokio::test]
async fn patch_merges_fields_and_bumps_version() {
    let env = Env::new();
    let s = env.start().await;
    let rec = s
        .create(
            "posts",
            &json!({ "title": "Before", "body": "to be cleared", "views": 7 }),
        )
        .await;
    let path = item("posts", &rec);
    tokio::time::sleep(Duration::from_millis(5)).await;

    let patched = s
        .patch(&path, &json!({ "title": "After", "body": null }))
        .await
        .ok();
    assert_eq!(patched["id"], rec["id"]);
    assert_eq!(patched["title"], json!("After"));
    assert_eq!(
        patched["body"],
        json!(null),
        "null clears an optional field"
    );
    assert_eq!(
        patched["views"],
        json!(7),
        "fields not in the patch are kept"
    );
    assert_eq!(patched["status"], json!("draft"));
    assert_eq!(patched["version"], json!(2));
    assert_eq!(
        patched["created_at"], rec["created_at"],
        "created_at unchanged"
    );
    let before = rec["updated_at"].as_str().expect("updated_at");
    let after = patched["updated_at"].as_str().expect("updated_at");
    assert!(is_timestamp(after), "updated_at format: {after}");
    assert!(
        after > before,
        "updated_at moves forward: {before} -> {after}"
    );

    // The change is stored.
    let got = s.get(&path).await.ok();
    assert_eq!(got, patched);

    // A second write bumps the version again.
    let third = s.patch(&path, &json!({ "views": 8 })).await.ok();
    assert_eq!(third["version"], json!(3));
    assert_eq!(third["title"], json!("After"));
}

#[tokio::test]
async fn patch_accepts_merge_patch_content_type() {
    let env = Env::new();
    let s = env.start().await;
    let rec = s.create_post("Before").await;
    let r = s
        .send(
            Method::PATCH,
            &item("posts", &rec),
            &[("content-type", "application/merge-patch+json")],
            Some(br#"{"title":"After"}"#.to_vec()),
        )
        .await;
    let b = r.ok();
    assert_eq!(b["title"], json!("After"));
    assert_eq!(b["version"], json!(2));
}

#[tokio::test]
async fn delete_returns_204_then_get_is_404() {
    let env = Env::new();
    let s = env.start().await;
    let rec = s.create_post("Doomed").await;
    let other = s.create_post("Survivor").await;
    let path = item("posts", &rec);

    let r = s.delete(&path).await;
    r.expect_status(204);
    assert!(r.text.is_empty(), "204 has no body: {:?}", r.text);

    assert_problem(&s.get(&path).await, 404, "not-found");
    assert_problem(&s.delete(&path).await, 404, "not-found");
    assert_problem(
        &s.patch(&path, &json!({ "title": "x" })).await,
        404,
        "not-found",
    );
    let items = s.list_all("posts").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], other["id"]);
}

#[tokio::test]
async fn list_is_newest_first_with_default_and_explicit_limit() {
    let env = Env::new();
    let s = env.start().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let rec = s.create_post(&format!("post {i}")).await;
        ids.push(rec["id"].as_str().expect("id").to_owned());
    }
    ids.reverse(); // newest first

    let r = s.get("/v1/posts").await;
    let body = r.ok();
    let items = body["items"].as_array().expect("items array");
    assert_eq!(items.len(), 20, "default limit is 20");
    let got: Vec<&str> = items
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        got,
        ids[..20].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(
        items[0]["title"],
        json!("post 24"),
        "full records are listed"
    );
    assert_eq!(items[0]["version"], json!(1));

    let body = s.get("/v1/posts?limit=5").await.ok();
    let got: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    assert_eq!(got, ids[..5].iter().map(String::as_str).collect::<Vec<_>>());

    for limit in [1, 200] {
        let body = s.get(&format!("/v1/posts?limit={limit}")).await.ok();
        assert_eq!(
            body["items"].as_array().expect("items").len(),
            limit.min(25),
            "limit={limit}"
        );
    }

    // An empty collection lists as an empty array.
    let body = s.get("/v1/comments").await.ok();
    assert_eq!(body["items"], json!([]));
}

#[tokio::test]
async fn list_rejects_out_of_range_or_non_numeric_limit() {
    let env = Env::new();
    let s = env.start().await;
    s.create_post("one").await;
    for q in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "limit=99999999999999999999999",
    ] {
        let r = s.get(&format!("/v1/posts?{q}")).await;
        assert_problem(&r, 400, "bad-request");
    }
}
