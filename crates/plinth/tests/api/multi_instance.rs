//! Several `plinth serve` processes on one PostgreSQL database behave as one
//! service (issue 5). On SQLite a second server on the same data directory
//! is refused instead (see lifecycle.rs).

use std::collections::HashSet;
use std::sync::Arc;

use reqwest::Method;
use serde_json::json;
use tokio::task::JoinSet;

use crate::harness::{Env, on_postgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_database_act_as_one_service() {
    if !on_postgres() {
        eprintln!("skipped on SQLite: one data directory serves one process");
        return;
    }
    let env = Env::new();
    let a = Arc::new(env.start().await);
    let b = Arc::new(env.start().await);
    let servers = [a.clone(), b.clone()];

    // A write on one is read on the other.
    let rec = a.create_post("shared").await;
    let path = format!("/v1/posts/{}", rec["id"].as_str().expect("id"));
    assert_eq!(b.get(&path).await.ok()["title"], "shared");

    // No lost updates: 40 merge patches split across both instances.
    let mut set = JoinSet::new();
    for i in 0..40 {
        let s = servers[i % 2].clone();
        let path = path.clone();
        set.spawn(async move { s.patch(&path, &json!({ "views": i })).await });
    }
    let mut versions = HashSet::new();
    while let Some(r) = set.join_next().await {
        let body = r.expect("task").ok();
        versions.insert(body["version"].as_i64().expect("version"));
    }
    assert_eq!(versions, (2..=41).collect::<HashSet<i64>>());
    assert_eq!(b.get(&path).await.ok()["version"], 41);

    // Unique constraints hold across instances.
    let mut set = JoinSet::new();
    for i in 0..20 {
        let s = servers[i % 2].clone();
        set.spawn(async move {
            s.post(
                "/v1/posts",
                &json!({"title": format!("t{i}"), "slug": "one-slug"}),
            )
            .await
            .status
        });
    }
    let mut statuses = Vec::new();
    while let Some(r) = set.join_next().await {
        statuses.push(r.expect("task"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );

    // Conditional writes: one ETag, one winner, whichever instance each hits.
    let etag = a.get(&path).await.header("etag").expect("etag");
    let mut set = JoinSet::new();
    for i in 0..10 {
        let s = servers[i % 2].clone();
        let (path, etag) = (path.clone(), etag.clone());
        set.spawn(async move {
            s.send(
                Method::PATCH,
                &path,
                &[("content-type", "application/json"), ("if-match", &etag)],
                Some(format!(r#"{{"views": {i}}}"#).into_bytes()),
            )
            .await
            .status
        });
    }
    let mut statuses = Vec::new();
    while let Some(r) = set.join_next().await {
        statuses.push(r.expect("task"));
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

    // Cursors issued by one instance work on the other (the secret is shared).
    for i in 0..5 {
        a.create_post(&format!("page {i}")).await;
    }
    let page = a.get("/v1/posts?limit=2").await.ok();
    let cursor = page["next_cursor"].as_str().expect("cursor");
    b.get(&format!("/v1/posts?limit=2&cursor={cursor}"))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_apply_the_schema_once() {
    if !on_postgres() {
        eprintln!("skipped on SQLite: one data directory serves one process");
        return;
    }
    let env = Env::new();
    let (a, b) = tokio::join!(env.start(), env.start());
    let created: usize = [&a, &b]
        .iter()
        .map(|s| {
            s.json_logs()
                .iter()
                .filter(|l| l["message"] == "applied the schema to a new database")
                .count()
        })
        .sum();
    assert_eq!(created, 1, "exactly one instance applied the schema");
    a.create_post("x").await;
    assert_eq!(b.count("posts").await, 1);
}
