//! Concurrent writes: no lost or duplicated records, unique holds under races.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinSet;

use crate::harness::{Env, assert_problem};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_all_succeed_with_distinct_ids() {
    let env = Env::new();
    let s = Arc::new(env.start().await);
    let mut set = JoinSet::new();
    for i in 0..50 {
        let s = Arc::clone(&s);
        set.spawn(async move {
            s.post("/v1/posts", &json!({ "title": format!("concurrent {i}") }))
                .await
        });
    }
    let mut ids = HashSet::new();
    let mut titles = HashSet::new();
    while let Some(r) = set.join_next().await {
        let rec = r.expect("task").created();
        assert_eq!(rec["version"], json!(1));
        ids.insert(rec["id"].as_str().expect("id").to_owned());
        titles.insert(rec["title"].as_str().expect("title").to_owned());
    }
    assert_eq!(ids.len(), 50, "distinct ids");
    assert_eq!(titles.len(), 50);
    let listed: HashSet<String> = s
        .list_all("posts")
        .await
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(listed, ids, "every created record is listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_with_the_same_unique_value_yield_one_201() {
    let env = Env::new();
    let s = Arc::new(env.start().await);
    let mut set = JoinSet::new();
    for i in 0..20 {
        let s = Arc::clone(&s);
        set.spawn(async move {
            s.post(
                "/v1/posts",
                &json!({ "title": format!("racer {i}"), "slug": "contested" }),
            )
            .await
        });
    }
    let mut created = 0;
    let mut conflicts = 0;
    while let Some(r) = set.join_next().await {
        let r = r.expect("task");
        if r.status == 201 {
            created += 1;
        } else {
            let b = assert_problem(&r, 409, "conflict");
            assert_eq!(b["errors"][0]["field"], json!("slug"), "{b}");
            assert_eq!(b["errors"][0]["code"], json!("unique"), "{b}");
            conflicts += 1;
        }
    }
    assert_eq!((created, conflicts), (1, 19));
    let items = s.list_all("posts").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["slug"], json!("contested"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_patches_of_one_record_all_succeed_without_lost_updates() {
    let env = Env::new();
    let s = Arc::new(env.start().await);
    let rec = s.create_post("counter").await;
    let path = format!("/v1/posts/{}", rec["id"].as_str().expect("id"));
    let mut set = JoinSet::new();
    for i in 0..50 {
        let s = Arc::clone(&s);
        let path = path.clone();
        set.spawn(async move { s.patch(&path, &json!({ "views": i })).await });
    }
    let mut versions = HashSet::new();
    while let Some(r) = set.join_next().await {
        let b = r.expect("task").ok();
        versions.insert(b["version"].as_i64().expect("version"));
    }
    assert_eq!(
        versions,
        (2..=51).collect::<HashSet<i64>>(),
        "no lost updates"
    );
    assert_eq!(s.get(&path).await.ok()["version"], json!(51));
}
