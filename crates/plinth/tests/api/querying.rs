//! Lists: filters, sorting, cursor pagination, field selection, expansion,
//! totals, and conditional requests (docs/querying.md).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Env, Server};

/// Percent-encodes a query parameter value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn list(s: &Server, coll: &str, params: &[(&str, &str)]) -> Value {
    s.get(&format!("/v1/{coll}?{}", query(params))).await.ok()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Follows `next_cursor` to the end; returns every id in order.
async fn walk(s: &Server, coll: &str, params: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut p: Vec<(&str, &str)> = params.to_vec();
        if let Some(c) = &cursor {
            p.push(("cursor", c));
        }
        let page = list(s, coll, &p).await;
        out.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(out.len() < 100_000, "runaway pagination");
    }
    out
}

#[tokio::test]
async fn walking_500_records_with_limit_7_sees_each_once_in_order() {
    let env = Env::new();
    let s = env.start().await;
    let mut created = Vec::new();
    for i in 0..500 {
        let r = s
            .create(
                "posts",
                &json!({"title": format!("post {i}"), "views": i % 13}),
            )
            .await;
        created.push(r["id"].as_str().expect("id").to_owned());
    }
    // Default order: newest first.
    let got = walk(&s, "posts", &[("limit", "7")]).await;
    let mut want = created.clone();
    want.reverse();
    assert_eq!(got, want);

    // Sorted by a non-unique field: ties broken by id, nothing lost or repeated.
    let got = walk(
        &s,
        "posts",
        &[("limit", "7"), ("sort", "views,-created_at")],
    )
    .await;
    assert_eq!(got.len(), 500);
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 500);
    let all = walk(
        &s,
        "posts",
        &[("limit", "200"), ("sort", "views,-created_at")],
    )
    .await;
    assert_eq!(got, all, "page size does not change the order");

    // Filter + sort + pages.
    let got = walk(
        &s,
        "posts",
        &[
            ("limit", "7"),
            ("filter", "views >= 10"),
            ("sort", "-views"),
        ],
    )
    .await;
    // views = i % 13 >= 10 for residues 10, 11, 12: 38 times each below 500.
    assert_eq!(got.len(), 3 * 38);
}

#[tokio::test]
async fn pagination_is_stable_under_concurrent_inserts_and_deletes() {
    let env = Env::new();
    let s = Arc::new(env.start().await);
    let mut initial = Vec::new();
    for i in 0..300 {
        let r = s.create("posts", &json!({"title": format!("p{i}")})).await;
        initial.push(r["id"].as_str().expect("id").to_owned());
    }
    // Every third initial record gets deleted during the walk.
    let doomed: Vec<String> = initial.iter().step_by(3).cloned().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, stop, doomed) = (s.clone(), stop.clone(), doomed.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 200 {
                s.create("posts", &json!({"title": format!("new {i}")}))
                    .await;
                if let Some(id) = doomed.get(i) {
                    s.delete(&format!("/v1/posts/{id}"))
                        .await
                        .expect_status(204);
                }
                i += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut p = vec![("limit", "7"), ("sort", "created_at")];
        if let Some(c) = &cursor {
            p.push(("cursor", c));
        }
        let page = list(&s, "posts", &p).await;
        for r in page["items"].as_array().expect("items") {
            seen.push(r["id"].as_str().expect("id").to_owned());
            keys.push((
                r["created_at"].as_str().expect("ts").to_owned(),
                r["id"].as_str().expect("id").to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a record was returned twice");
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "order went backwards");
    let doomed: HashSet<&String> = doomed.iter().collect();
    for id in initial.iter().filter(|id| !doomed.contains(id)) {
        assert!(
            unique.contains(id),
            "record {id} that existed throughout was skipped"
        );
    }
}

const TYPES_SCHEMA: &str = r#"
[collections.items.permissions]
list = "public"
read = "public"
create = "public"
update = "public"
delete = "public"

[collections.items.fields]
title = { type = "text", required = true }
n     = { type = "integer" }
x     = { type = "number" }
on    = { type = "boolean" }
at    = { type = "datetime" }
day   = { type = "date" }
kind  = { type = "enum", values = ["a", "b", "c"] }
mail  = { type = "email" }
link  = { type = "url" }
meta  = { type = "json" }
owner = { type = "relation", collection = "owners" }

[collections.owners.permissions]
list = "public"
read = "public"
create = "public"
update = "public"
delete = "public"

[collections.owners.fields]
name = { type = "text", required = true }
"#;

async fn titles(s: &Server, filter: &str) -> Vec<String> {
    let page = list(
        s,
        "items",
        &[("filter", filter), ("sort", "title"), ("limit", "200")],
    )
    .await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["title"].as_str().expect("title").to_owned())
        .collect()
}

#[tokio::test]
async fn every_operator_on_every_field_type() {
    let env = Env::with_schema(TYPES_SCHEMA);
    let s = env.start().await;
    let owner = s.create("owners", &json!({"name": "o"})).await;
    let oid = owner["id"].as_str().expect("id").to_owned();
    s.create("items", &json!({"title": "A", "n": 1, "x": 1.5, "on": true, "at": "2026-01-01T00:00:00Z", "day": "2026-01-01", "kind": "a", "mail": "a@example.com", "link": "https://a.example/x", "owner": oid})).await;
    s.create("items", &json!({"title": "B", "n": 2, "x": -2.0, "on": false, "at": "2026-06-01T12:00:00+02:00", "day": "2026-06-01", "kind": "b", "mail": "B@Example.com", "link": "http://b.example"})).await;
    s.create("items", &json!({"title": "C \"quoted\" ünïcödé 🦀"}))
        .await;

    let cases: &[(&str, &[&str])] = &[
        ("n = 1", &["A"]),
        ("n != 1", &["B", "C \"quoted\" ünïcödé 🦀"]),
        ("n > 1", &["B"]),
        ("n >= 1", &["A", "B"]),
        ("n < 2", &["A"]),
        ("n <= 2", &["A", "B"]),
        ("n in [2, 3]", &["B"]),
        ("n = null", &["C \"quoted\" ünïcödé 🦀"]),
        ("n != null", &["A", "B"]),
        ("!(n > 1)", &["A", "C \"quoted\" ünïcödé 🦀"]),
        ("x > 0", &["A"]),
        ("x <= -2", &["B"]),
        ("x = 1.5", &["A"]),
        ("on = true", &["A"]),
        ("on != true", &["B", "C \"quoted\" ünïcödé 🦀"]),
        ("at > \"2026-06-01T09:00:00Z\"", &["B"]),
        ("at = \"2026-06-01T10:00:00Z\"", &["B"]),
        ("at < \"2026-01-01T01:00:00+01:00\"", &[]),
        ("day >= \"2026-02-01\"", &["B"]),
        ("kind in [\"a\", \"c\"]", &["A"]),
        ("kind != \"a\"", &["B", "C \"quoted\" ünïcödé 🦀"]),
        ("mail ~ \"example.COM\"", &["A", "B"]),
        ("link ~ \"https\"", &["A"]),
        ("title ~ \"ünïcödé\"", &["C \"quoted\" ünïcödé 🦀"]),
        (
            "title = 'C \"quoted\" ünïcödé 🦀'",
            &["C \"quoted\" ünïcödé 🦀"],
        ),
        ("title ~ \"\\\"quoted\\\"\"", &["C \"quoted\" ünïcödé 🦀"]),
        ("title ~ \"%\"", &[]),
        ("owner = null", &["B", "C \"quoted\" ünïcödé 🦀"]),
        (
            "version = 1 && created_at > \"2000-01-01T00:00:00Z\"",
            &["A", "B", "C \"quoted\" ünïcödé 🦀"],
        ),
        ("n = 1 || x < 0 && on = false", &["A", "B"]),
        ("(n = 1 || x < 0) && on = false", &["B"]),
    ];
    for (filter, want) in cases {
        assert_eq!(titles(&s, filter).await, *want, "filter: {filter}");
    }
    let by_owner = titles(&s, &format!("owner = \"{}\"", oid.to_uppercase())).await;
    assert_eq!(by_owner, ["A"], "ids compare case-insensitively");
}

#[tokio::test]
async fn sort_fields_expand_and_total() {
    let env = Env::new();
    let s = env.start().await;
    let a = s.create("posts", &json!({"title": "b", "views": 5})).await;
    s.create("posts", &json!({"title": "a", "views": 5})).await;
    s.create("posts", &json!({"title": "c"})).await;
    let aid = a["id"].as_str().expect("id");
    s.create("comments", &json!({"post": aid, "body": "hi"}))
        .await;

    let page = list(
        &s,
        "posts",
        &[
            ("sort", "-views,title"),
            ("fields", "title,views"),
            ("total", "true"),
        ],
    )
    .await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(
        page["items"],
        json!([{"title": "a", "views": 5}, {"title": "b", "views": 5}, {"title": "c", "views": 0}])
    );
    let page = list(&s, "posts", &[("limit", "1")]).await;
    assert!(page.get("total").is_none(), "total only on request");
    assert!(page["next_cursor"].is_string());

    let page = list(&s, "comments", &[("expand", "post"), ("fields", "body")]).await;
    assert_eq!(page["items"][0]["body"], "hi");
    assert_eq!(page["items"][0]["expand"]["post"]["id"], aid);
    assert_eq!(page["items"][0]["expand"]["post"]["title"], "b");
    assert!(page["items"][0].get("post").is_none());
}

#[tokio::test]
async fn bad_queries_are_400_problems_that_say_where() {
    let env = Env::new();
    let s = env.start().await;
    for i in 0..3 {
        s.create_post(&format!("p{i}")).await;
    }
    let cursor =
        list(&s, "posts", &[("limit", "1"), ("filter", "views >= 0")]).await["next_cursor"]
            .as_str()
            .expect("cursor")
            .to_owned();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("filter", "views >")], "position 8"),
        (
            vec![("filter", "views >= \"x\"")],
            "cannot be compared with a string",
        ),
        (vec![("filter", "nope = 1")], "no field `nope`"),
        (
            vec![("filter", "status = \"gone\"")],
            "not a value of `status`",
        ),
        (vec![("filter", "(views = 1")], "expected `)`"),
        (vec![("filter", "published_at > 3")], "datetime"),
        (vec![("filter", "meta = 1")], "json"),
        (vec![("sort", "nope")], "no field `nope`"),
        (vec![("sort", "title,title")], "twice"),
        (vec![("fields", "title,nope")], "no field `nope`"),
        (vec![("expand", "title")], "not a relation"),
        (vec![("total", "maybe")], "true or false"),
        (vec![("fitler", "x")], "unknown query parameter"),
        (vec![("cursor", "garbage")], "not a cursor"),
        (
            vec![("cursor", &cursor), ("filter", "views >= 1")],
            "another filter or sort",
        ),
        (
            vec![
                ("cursor", &cursor),
                ("filter", "views >= 0"),
                ("sort", "title"),
            ],
            "another filter or sort",
        ),
    ];
    for (params, msg) in cases {
        let r = s.get(&format!("/v1/posts?{}", query(&params))).await;
        r.expect_status(400);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        let body = r.json();
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains(msg)),
            "{params:?}: {body}"
        );
    }
    // A forged cursor: flip one character of a real one.
    let mut forged = cursor.clone().into_bytes();
    forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let r = s
        .get(&format!(
            "/v1/posts?{}",
            query(&[("cursor", &forged), ("filter", "views >= 0")])
        ))
        .await;
    r.expect_status(400);
    // The real cursor still works with its own query.
    list(
        &s,
        "posts",
        &[("cursor", &cursor), ("filter", "views >= 0")],
    )
    .await;
}

#[tokio::test]
async fn etags_and_conditional_requests() {
    let env = Env::new();
    let s = env.start().await;
    let created = s.post("/v1/posts", &json!({"title": "t"})).await;
    created.expect_status(201);
    let etag = created.header("etag").expect("etag on create");
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/posts/{id}");

    let got = s.get(&path).await;
    assert_eq!(got.header("etag").as_deref(), Some(etag.as_str()));
    let r = s
        .send(Method::GET, &path, &[("if-none-match", &etag)], None)
        .await;
    r.expect_status(304);
    assert!(r.text.is_empty());
    let r = s
        .send(
            Method::GET,
            &path,
            &[("if-none-match", &format!("W/{etag}"))],
            None,
        )
        .await;
    r.expect_status(304);
    s.send(Method::GET, &path, &[("if-none-match", "\"other\"")], None)
        .await
        .expect_status(200);

    let patch = |tag: String| {
        let s = &s;
        let path = path.clone();
        async move {
            s.send(
                Method::PATCH,
                &path,
                &[("content-type", "application/json"), ("if-match", &tag)],
                Some(br#"{"views": 1}"#.to_vec()),
            )
            .await
        }
    };
    // Weak tags never match If-Match.
    patch(format!("W/{etag}")).await.expect_status(412);
    let ok = patch(etag.clone()).await;
    ok.expect_status(200);
    let new_etag = ok.header("etag").expect("etag on patch");
    assert_ne!(new_etag, etag);
    // The old tag is now stale: 412 problem, nothing written.
    let stale = patch(etag.clone()).await;
    stale.expect_status(412);
    assert_eq!(
        stale.json()["type"],
        "urn:plinth:problem:precondition-failed"
    );
    assert_eq!(s.get(&path).await.ok()["version"], 2);
    s.send(Method::DELETE, &path, &[("if-match", &etag)], None)
        .await
        .expect_status(412);
    s.send(Method::DELETE, &path, &[("if-match", &new_etag)], None)
        .await
        .expect_status(204);
    s.send(Method::DELETE, &path, &[("if-match", "*")], None)
        .await
        .expect_status(404);
}

#[tokio::test]
async fn concurrent_conditional_patches_have_one_winner() {
    let env = Env::new();
    let s = Arc::new(env.start().await);
    let created = s.post("/v1/posts", &json!({"title": "t"})).await;
    let etag = created.header("etag").expect("etag");
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (s, etag, id) = (s.clone(), etag.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let body = format!(r#"{{"views": {i}}}"#).into_bytes();
            s.send(
                Method::PATCH,
                &format!("/v1/posts/{id}"),
                &[("content-type", "application/json"), ("if-match", &etag)],
                Some(body),
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        9,
        "{statuses:?}"
    );
}
