//! Every field type and constraint of the example schema.

use serde_json::{Value, json};

use crate::harness::{Env, MISSING_ID, Server, assert_invalid, assert_problem, item};

/// POSTs a post with `title` plus `extra` and returns the response.
async fn post_with(s: &Server, extra: Value) -> crate::harness::Resp {
    let mut body = json!({ "title": "t" });
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    s.post("/v1/posts", &body).await
}

#[tokio::test]
async fn text_max_length_counts_characters() {
    let env = Env::new();
    let s = env.start().await;
    // 200 two-byte characters are fine (400 bytes), 201 are not.
    let ok = "é".repeat(200);
    let rec = s.create("posts", &json!({ "title": ok })).await;
    assert_eq!(rec["title"], json!(ok));
    let emoji = "🦀".repeat(200);
    s.create("posts", &json!({ "title": emoji })).await;

    let r = s
        .post("/v1/posts", &json!({ "title": "é".repeat(201) }))
        .await;
    assert_invalid(&r, "title", &["max_length"]);
    let r = s
        .post("/v1/posts", &json!({ "title": "a".repeat(201) }))
        .await;
    assert_invalid(&r, "title", &["max_length"]);
    let r = post_with(&s, json!({ "slug": "a".repeat(121) })).await;
    assert_invalid(&r, "slug", &["max_length"]);
}

#[tokio::test]
async fn text_min_length_is_enforced() {
    let env = Env::new();
    let s = env.start().await;
    let post = s.create_post("p").await;
    let r = s
        .post("/v1/comments", &json!({ "post": post["id"], "body": "" }))
        .await;
    assert_invalid(&r, "body", &["min_length"]);
    let r = s
        .post(
            "/v1/comments",
            &json!({ "post": post["id"], "body": "x".repeat(5001) }),
        )
        .await;
    assert_invalid(&r, "body", &["max_length"]);
    let c = s
        .create("comments", &json!({ "post": post["id"], "body": "x" }))
        .await;
    assert_eq!(c["body"], json!("x"));
}

#[tokio::test]
async fn text_pattern_is_enforced() {
    let env = Env::new();
    let s = env.start().await;
    for bad in [
        "Not A Slug",
        "trailing-",
        "-leading",
        "double--dash",
        "UPPER",
        "",
        "slug\n",
        "a\nb",
    ] {
        let r = post_with(&s, json!({ "slug": bad })).await;
        assert_invalid(&r, "slug", &["pattern"]);
    }
    let rec = post_with(&s, json!({ "slug": "good-slug-2" }))
        .await
        .created();
    assert_eq!(rec["slug"], json!("good-slug-2"));
}

#[tokio::test]
async fn integer_min_and_type_are_enforced() {
    let env = Env::new();
    let s = env.start().await;
    assert_invalid(
        &post_with(&s, json!({ "views": -1 })).await,
        "views",
        &["minimum"],
    );
    assert_invalid(
        &post_with(&s, json!({ "views": 1.5 })).await,
        "views",
        &["type"],
    );
    assert_invalid(
        &post_with(&s, json!({ "views": "3" })).await,
        "views",
        &["type"],
    );
    assert_invalid(
        &post_with(&s, json!({ "views": true })).await,
        "views",
        &["type"],
    );
    // Beyond 64 bits is not a valid integer value.
    let r = s
        .send_raw_json(
            reqwest::Method::POST,
            "/v1/posts",
            r#"{"title":"t","views":18446744073709551616}"#,
        )
        .await;
    assert!(
        r.status == 422 || r.status == 400,
        "integer beyond i64: {} {}",
        r.status,
        r.text
    );

    let rec = post_with(&s, json!({ "views": 0 })).await.created();
    assert_eq!(rec["views"], json!(0));
    let big = i64::MAX;
    let rec = post_with(&s, json!({ "views": big })).await.created();
    assert_eq!(rec["views"], json!(big), "64-bit integers are exact");
    let got = s.get(&item("posts", &rec)).await.ok();
    assert_eq!(got["views"], json!(big));
}

#[tokio::test]
async fn number_min_and_max_are_enforced() {
    let env = Env::new();
    let s = env.start().await;
    assert_invalid(
        &post_with(&s, json!({ "rating": -0.1 })).await,
        "rating",
        &["minimum"],
    );
    assert_invalid(
        &post_with(&s, json!({ "rating": 5.5 })).await,
        "rating",
        &["maximum"],
    );
    assert_invalid(
        &post_with(&s, json!({ "rating": "4" })).await,
        "rating",
        &["type"],
    );
    for ok in [json!(0), json!(5), json!(4.5), json!(0.001)] {
        let rec = post_with(&s, json!({ "rating": ok })).await.created();
        assert_eq!(
            rec["rating"].as_f64(),
            ok.as_f64(),
            "rating {ok} round-trips: {rec}"
        );
    }
}

#[tokio::test]
async fn boolean_accepts_only_booleans() {
    let env = Env::new();
    let s = env.start().await;
    let rec = post_with(&s, json!({ "featured": true })).await.created();
    assert_eq!(rec["featured"], json!(true));
    for bad in [json!("yes"), json!(1), json!("true")] {
        assert_invalid(
            &post_with(&s, json!({ "featured": bad })).await,
            "featured",
            &["type"],
        );
    }
}

#[tokio::test]
async fn datetime_is_normalised_to_utc_microseconds() {
    let env = Env::new();
    let s = env.start().await;
    for (input, want) in [
        ("2026-01-02T03:04:05+02:00", "2026-01-02T01:04:05.000000Z"),
        (
            "2026-01-02T03:04:05.123+05:30",
            "2026-01-01T21:34:05.123000Z",
        ),
        ("2026-01-02T03:04:05.123456Z", "2026-01-02T03:04:05.123456Z"),
        ("2026-06-30T23:30:00-01:00", "2026-07-01T00:30:00.000000Z"),
        (
            "2026-01-02T03:04:05.123456789Z",
            "2026-01-02T03:04:05.123456Z",
        ),
    ] {
        let rec = post_with(&s, json!({ "published_at": input }))
            .await
            .created();
        assert_eq!(rec["published_at"], json!(want), "{input}");
        let got = s.get(&item("posts", &rec)).await.ok();
        assert_eq!(got["published_at"], json!(want), "{input} stored");
    }
    for bad in [
        "yesterday",
        "2026-01-02",
        "2026-13-02T03:04:05Z",
        "2026-01-02T25:00:00Z",
    ] {
        let r = post_with(&s, json!({ "published_at": bad })).await;
        assert_invalid(&r, "published_at", &["format"]);
    }
    assert_invalid(
        &post_with(&s, json!({ "published_at": 1_700_000_000 })).await,
        "published_at",
        &["type"],
    );
}

#[tokio::test]
async fn date_accepts_only_calendar_dates() {
    let env = Env::new();
    let s = env.start().await;
    let rec = post_with(&s, json!({ "publish_on": "2026-02-28" }))
        .await
        .created();
    assert_eq!(rec["publish_on"], json!("2026-02-28"));
    for bad in ["2026-02-30", "2026-2-3", "2026-02-28T00:00:00Z", "tomorrow"] {
        let r = post_with(&s, json!({ "publish_on": bad })).await;
        assert_invalid(&r, "publish_on", &["format"]);
    }
}

#[tokio::test]
async fn enum_accepts_only_declared_values() {
    let env = Env::new();
    let s = env.start().await;
    let rec = post_with(&s, json!({ "status": "published" }))
        .await
        .created();
    assert_eq!(rec["status"], json!("published"));
    for bad in [json!("archived"), json!("Draft"), json!("")] {
        assert_invalid(
            &post_with(&s, json!({ "status": bad })).await,
            "status",
            &["enum"],
        );
    }
    assert_invalid(
        &post_with(&s, json!({ "status": 1 })).await,
        "status",
        &["type", "enum"],
    );
}

#[tokio::test]
async fn email_format_is_enforced() {
    let env = Env::new();
    let s = env.start().await;
    let rec = post_with(&s, json!({ "author_email": "ann@example.com" }))
        .await
        .created();
    assert_eq!(rec["author_email"], json!("ann@example.com"));
    for bad in ["not-an-email", "@example.com", "a b@example.com"] {
        let r = post_with(&s, json!({ "author_email": bad })).await;
        assert_invalid(&r, "author_email", &["format"]);
    }
}

#[tokio::test]
async fn url_must_be_absolute_http() {
    let env = Env::new();
    let s = env.start().await;
    for ok in ["https://example.com/x?y=1#z", "http://localhost:8080/"] {
        let rec = post_with(&s, json!({ "canonical_url": ok }))
            .await
            .created();
        assert_eq!(rec["canonical_url"], json!(ok));
    }
    for bad in [
        "javascript:x",
        "javascript:alert(1)",
        "ftp://example.com/",
        "/relative/path",
        "https:///no-host",
        "example.com",
    ] {
        let r = post_with(&s, json!({ "canonical_url": bad })).await;
        assert_invalid(&r, "canonical_url", &["format", "pattern"]);
    }
}

#[tokio::test]
async fn json_field_stores_any_json_as_is() {
    let env = Env::new();
    let s = env.start().await;
    for v in [
        json!({ "a": [1, 2, { "b": null }], "c": "x", "d": { "e": 1.5 } }),
        json!([1, "two", false, null]),
        json!("just a string"),
        json!(42),
        json!(-3.25),
        json!(true),
        json!({}),
        json!([]),
    ] {
        let rec = post_with(&s, json!({ "meta": v })).await.created();
        assert_eq!(rec["meta"], v, "meta {v} in the 201 body");
        let got = s.get(&item("posts", &rec)).await.ok();
        assert_eq!(got["meta"], v, "meta {v} stored");
    }
}

#[tokio::test]
async fn patch_merges_json_fields_recursively() {
    let env = Env::new();
    let s = env.start().await;
    let rec = post_with(
        &s,
        json!({ "meta": { "a": { "x": 1, "y": 2 }, "keep": true, "list": [1, 2, 3] } }),
    )
    .await
    .created();
    let path = item("posts", &rec);
    let patched = s
        .patch(
            &path,
            &json!({ "meta": { "a": { "y": null, "z": 3 }, "list": [9], "new": "n" } }),
        )
        .await
        .ok();
    assert_eq!(
        patched["meta"],
        json!({ "a": { "x": 1, "z": 3 }, "keep": true, "list": [9], "new": "n" }),
        "RFC 7396 merge of the json field"
    );
    assert_eq!(s.get(&path).await.ok()["meta"], patched["meta"]);

    // A non-object patch value replaces the whole document.
    let patched = s.patch(&path, &json!({ "meta": [1, 2] })).await.ok();
    assert_eq!(patched["meta"], json!([1, 2]));
    // An object patched onto a non-object starts from an empty object.
    let patched = s
        .patch(&path, &json!({ "meta": { "k": 1, "gone": null } }))
        .await
        .ok();
    assert_eq!(patched["meta"], json!({ "k": 1 }));
    // null clears the field.
    let patched = s.patch(&path, &json!({ "meta": null })).await.ok();
    assert_eq!(patched["meta"], json!(null));
}

#[tokio::test]
async fn relation_must_point_at_an_existing_record() {
    let env = Env::new();
    let s = env.start().await;
    let post = s.create_post("p").await;
    let c = s
        .create("comments", &json!({ "post": post["id"], "body": "nice" }))
        .await;
    assert_eq!(c["post"], post["id"]);

    let r = s
        .post(
            "/v1/comments",
            &json!({ "post": MISSING_ID, "body": "orphan" }),
        )
        .await;
    assert_invalid(&r, "post", &["relation_not_found"]);

    // Patching the relation to a missing record is refused too, and changes nothing.
    let path = item("comments", &c);
    let r = s.patch(&path, &json!({ "post": MISSING_ID })).await;
    assert_invalid(&r, "post", &["relation_not_found"]);
    let got = s.get(&path).await.ok();
    assert_eq!(got, c);

    // A record of another collection is not a post.
    let r = s
        .post(
            "/v1/comments",
            &json!({ "post": c["id"], "body": "wrong target" }),
        )
        .await;
    assert_invalid(&r, "post", &["relation_not_found"]);

    // Something that is not an id at all is a validation error, not a 500.
    let r = s
        .post("/v1/comments", &json!({ "post": "not-an-id", "body": "x" }))
        .await;
    assert_problem(&r, 422, "validation");
    let r = s
        .post("/v1/comments", &json!({ "post": 12, "body": "x" }))
        .await;
    assert_invalid(&r, "post", &["type"]);
    assert_eq!(s.count("comments").await, 1);
}

#[tokio::test]
async fn unique_field_conflicts_with_409() {
    let env = Env::new();
    let s = env.start().await;
    let first = post_with(&s, json!({ "slug": "same" })).await.created();
    let r = post_with(&s, json!({ "slug": "same" })).await;
    let b = assert_problem(&r, 409, "conflict");
    assert_eq!(b["errors"][0]["field"], json!("slug"), "{b}");
    assert_eq!(b["errors"][0]["code"], json!("unique"), "{b}");
    assert_eq!(s.count("posts").await, 1);

    // Taking the slug over by PATCH is refused as well.
    let other = post_with(&s, json!({ "slug": "other" })).await.created();
    let r = s
        .patch(&item("posts", &other), &json!({ "slug": "same" }))
        .await;
    let b = assert_problem(&r, 409, "conflict");
    assert_eq!(b["errors"][0]["field"], json!("slug"), "{b}");
    assert_eq!(b["errors"][0]["code"], json!("unique"), "{b}");
    assert_eq!(
        s.get(&item("posts", &other)).await.ok()["slug"],
        json!("other")
    );

    // Re-saving a record with its own value is not a conflict.
    let same = s
        .patch(&item("posts", &first), &json!({ "slug": "same" }))
        .await
        .ok();
    assert_eq!(same["slug"], json!("same"));

    // Unset values never conflict.
    s.create_post("no slug 1").await;
    s.create_post("no slug 2").await;

    // After deleting the holder, the value is free again.
    s.delete(&item("posts", &first)).await.expect_status(204);
    post_with(&s, json!({ "slug": "same" })).await.created();
}

#[tokio::test]
async fn required_fields_must_be_present_and_non_null() {
    let env = Env::new();
    let s = env.start().await;
    let r = s.post("/v1/posts", &json!({ "body": "no title" })).await;
    assert_invalid(&r, "title", &["required"]);
    let r = s.post("/v1/posts", &json!({})).await;
    assert_invalid(&r, "title", &["required"]);
    let r = s.post("/v1/posts", &json!({ "title": null })).await;
    assert_invalid(&r, "title", &["required", "type"]);
    let r = s.post("/v1/comments", &json!({ "body": "x" })).await;
    assert_invalid(&r, "post", &["required"]);

    let rec = s.create_post("keep me").await;
    let path = item("posts", &rec);
    let r = s.patch(&path, &json!({ "title": null })).await;
    assert_invalid(&r, "title", &["required", "type"]);
    let got = s.get(&path).await.ok();
    assert_eq!(got, rec, "failed PATCH changed nothing");
    assert_eq!(s.count("posts").await, 1);
}

#[tokio::test]
async fn validation_reports_every_invalid_field() {
    let env = Env::new();
    let s = env.start().await;
    let r = s
        .post(
            "/v1/posts",
            &json!({ "title": "a".repeat(201), "views": -5, "status": "nope" }),
        )
        .await;
    let b = assert_invalid(&r, "title", &["max_length"]);
    assert_invalid(&r, "views", &["minimum"]);
    assert_invalid(&r, "status", &["enum"]);
    assert!(
        b["errors"].as_array().expect("errors").len() >= 3,
        "all three fields reported: {b}"
    );
    assert_eq!(s.count("posts").await, 0);
}

/// A schema exercising what the blog example does not: required fields with
/// defaults, `now`/`today` defaults, integer `max`, unbounded integers and
/// numbers, length limits on url/email, and a self-relation.
const ITEMS_SCHEMA: &str = r#"
[collections.items.permissions]
list = "public"
read = "public"
create = "public"
update = "public"
delete = "public"

[collections.items.fields]
name    = { type = "text", required = true, min_length = 2 }
count   = { type = "integer", required = true, default = 1, max = 10 }
big     = { type = "integer" }
ratio   = { type = "number" }
kind    = { type = "enum", values = ["a", "b"], required = true, default = "a" }
seen_at = { type = "datetime", default = "now" }
due_on  = { type = "date", default = "today" }
site    = { type = "url", max_length = 30 }
contact = { type = "email", min_length = 8 }
parent  = { type = "relation", collection = "items" }
"#;

#[tokio::test]
async fn required_fields_with_defaults_and_clock_defaults() {
    let env = Env::with_schema(ITEMS_SCHEMA);
    let s = env.start().await;
    let rec = s.create("items", &json!({ "name": "ab" })).await;
    assert_eq!(rec["count"], json!(1));
    assert_eq!(rec["kind"], json!("a"));
    let seen_at = rec["seen_at"].as_str().expect("seen_at is filled");
    assert!(crate::harness::is_timestamp(seen_at), "seen_at: {seen_at}");
    let created_at = rec["created_at"].as_str().expect("created_at");
    assert_eq!(
        &seen_at[..15],
        &created_at[..15],
        "`now` is the creation time"
    );
    let due_on = rec["due_on"].as_str().expect("due_on is filled");
    assert!(
        due_on == &created_at[..10] || due_on == &seen_at[..10],
        "`today` is the creation date: {due_on} vs {created_at}"
    );
    // Explicit values win over defaults.
    let rec2 = s
        .create(
            "items",
            &json!({ "name": "cd", "count": 10, "kind": "b", "seen_at": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(rec2["count"], json!(10));
    assert_eq!(rec2["seen_at"], json!("2020-01-01T00:00:00.000000Z"));

    // A required field with a default may be omitted, never null.
    let r = s
        .post("/v1/items", &json!({ "name": "ab", "count": null }))
        .await;
    assert_invalid(&r, "count", &["required", "type"]);
    let r = s
        .patch(&item("items", &rec), &json!({ "count": null }))
        .await;
    assert_invalid(&r, "count", &["required", "type"]);
    let r = s
        .post("/v1/items", &json!({ "name": "ab", "count": 11 }))
        .await;
    assert_invalid(&r, "count", &["maximum"]);
    let r = s.post("/v1/items", &json!({ "name": "a" })).await;
    assert_invalid(&r, "name", &["min_length"]);
    let r = s
        .post(
            "/v1/items",
            &json!({ "name": "ab", "site": "https://example.com/0123456789abcdef" }),
        )
        .await;
    assert_invalid(&r, "site", &["max_length"]);
    let r = s
        .post("/v1/items", &json!({ "name": "ab", "contact": "a@b.co" }))
        .await;
    assert_invalid(&r, "contact", &["min_length"]);
    assert_eq!(s.count("items").await, 2);
}

#[tokio::test]
async fn integers_are_exact_64_bit_values() {
    let env = Env::with_schema(ITEMS_SCHEMA);
    let s = env.start().await;
    for v in [i64::MIN, i64::MAX, 0, -1, 9_007_199_254_740_993] {
        let rec = s.create("items", &json!({ "name": "ab", "big": v })).await;
        assert_eq!(rec["big"], json!(v), "{v} in the 201 body");
        assert_eq!(s.get(&item("items", &rec)).await.ok()["big"], json!(v));
    }
    // Just outside the 64-bit range: refused, never rounded to the nearest bound.
    for raw in [
        "-9223372036854775809",
        "9223372036854775808",
        "1e19",
        "-1e19",
    ] {
        let r = s
            .send_raw_json(
                reqwest::Method::POST,
                "/v1/items",
                &format!(r#"{{"name":"ab","big":{raw}}}"#),
            )
            .await;
        assert_problem(&r, 422, "validation");
    }
    assert_eq!(s.count("items").await, 5);
}

#[tokio::test]
async fn numbers_without_bounds_round_trip() {
    let env = Env::with_schema(ITEMS_SCHEMA);
    let s = env.start().await;
    for v in [json!(1e300), json!(-1.5), json!(0.1), json!(123_456_789)] {
        let rec = s
            .create("items", &json!({ "name": "ab", "ratio": v }))
            .await;
        assert_eq!(rec["ratio"].as_f64(), v.as_f64(), "{v}");
        let got = s.get(&item("items", &rec)).await.ok();
        assert_eq!(got["ratio"].as_f64(), v.as_f64(), "{v} stored");
    }
}

#[tokio::test]
async fn self_relation_protects_referenced_records() {
    let env = Env::with_schema(ITEMS_SCHEMA);
    let s = env.start().await;
    let parent = s.create("items", &json!({ "name": "parent" })).await;
    let child = s
        .create("items", &json!({ "name": "child", "parent": parent["id"] }))
        .await;
    assert_eq!(child["parent"], parent["id"]);
    assert_problem(&s.delete(&item("items", &parent)).await, 409, "conflict");
    // Clearing the optional relation releases the parent.
    let child = s
        .patch(&item("items", &child), &json!({ "parent": null }))
        .await
        .ok();
    assert_eq!(child["parent"], json!(null));
    s.delete(&item("items", &parent)).await.expect_status(204);
    let r = s
        .patch(&item("items", &child), &json!({ "parent": parent["id"] }))
        .await;
    assert_invalid(&r, "parent", &["relation_not_found"]);
}
