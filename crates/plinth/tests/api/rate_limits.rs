//! Rate limits per route class (GCRA), 429 problems with Retry-After, and the
//! RateLimit / RateLimit-Policy headers of draft-ietf-httpapi-ratelimit-headers-11.

use serde_json::json;

use crate::harness::{Env, assert_problem, on_postgres};

#[tokio::test]
async fn limits_answer_429_with_headers_and_classes_are_separate() {
    let env = Env::new();
    let s = env
        .start_with(&["--rate-limits", "read=3/60s,write=2/60s"])
        .await;
    for remaining in [2, 1, 0] {
        let r = s.get("/v1/posts").await;
        r.expect_status(200);
        assert_eq!(
            r.header("ratelimit-policy").as_deref(),
            Some("\"read\";q=3;w=60")
        );
        let rl = r.header("ratelimit").expect("RateLimit header");
        assert!(
            rl.starts_with(&format!("\"read\";r={remaining};t=")),
            "{rl}"
        );
    }
    let r = s.get("/v1/posts").await;
    assert_problem(&r, 429, "too-many-requests");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=20).contains(&retry), "{retry}");
    assert!(
        r.header("ratelimit")
            .is_some_and(|v| v.starts_with("\"read\";r=0;t="))
    );
    // Probes are exempt; writes have their own budget.
    s.get("/healthz").await.expect_status(200);
    s.get("/readyz").await.expect_status(200);
    s.post("/v1/posts", &json!({"title": "a"}))
        .await
        .expect_status(201);
    s.post("/v1/posts", &json!({"title": "b"}))
        .await
        .expect_status(201);
    let r = s.post("/v1/posts", &json!({"title": "c"})).await;
    assert_problem(&r, 429, "too-many-requests");
    assert_eq!(
        s.get("/v1/posts").await.status,
        429,
        "reads still exhausted"
    );
}

#[tokio::test]
async fn a_bad_rate_limit_setting_refuses_to_start() {
    let env = Env::new();
    let f = env
        .try_start(&["--rate-limits", "reads=5/60s"])
        .await
        .err()
        .expect("refused");
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{f:?}");
    assert!(f.stderr.contains("unknown route class"), "{}", f.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_on_one_postgresql_share_the_budget() {
    if !on_postgres() {
        eprintln!("skipped on SQLite: one process per data directory");
        return;
    }
    let env = Env::new();
    let args = ["--rate-limits", "read=4/60s"];
    let a = env.start_with(&args).await;
    let b = env.start_with(&args).await;
    for s in [&a, &b, &a, &b] {
        s.get("/v1/posts").await.expect_status(200);
    }
    assert_eq!(a.get("/v1/posts").await.status, 429);
    assert_eq!(b.get("/v1/posts").await.status, 429);
}
