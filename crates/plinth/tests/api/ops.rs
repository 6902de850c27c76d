//! Operational behaviour: health, request ids, request logs, CORS, graceful shutdown.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Env, MISSING_ID, assert_problem, item, log_field, settle_signal_handlers};

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let env = Env::new();
    let s = env.start().await;
    let r = s.get("/healthz").await;
    assert_eq!(r.ok(), json!({ "status": "ok" }));
    assert!(r.header("x-request-id").is_some());
    let r = s.get("/readyz").await;
    assert_eq!(r.ok(), json!({ "status": "ready" }));
}

fn is_valid_request_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[tokio::test]
async fn valid_request_id_is_echoed() {
    let env = Env::new();
    let s = env.start().await;
    let max = "a".repeat(128);
    for rid in ["abc-123_X.y", "0", max.as_str()] {
        let r = s
            .send(Method::GET, "/healthz", &[("x-request-id", rid)], None)
            .await;
        r.expect_status(200);
        assert_eq!(r.header("x-request-id").as_deref(), Some(rid));

        // Also on errors, where the problem body carries it too.
        let r = s
            .send(Method::GET, "/v1/nope", &[("x-request-id", rid)], None)
            .await;
        let b = assert_problem(&r, 404, "not-found");
        assert_eq!(b["request_id"], json!(rid));

        let r = s
            .send(
                Method::POST,
                "/v1/posts",
                &[("x-request-id", rid), ("content-type", "application/json")],
                Some(br#"{"title":"x"}"#.to_vec()),
            )
            .await;
        r.expect_status(201);
        assert_eq!(r.header("x-request-id").as_deref(), Some(rid));
    }
}

#[tokio::test]
async fn request_id_is_generated_when_absent_or_invalid() {
    let env = Env::new();
    let s = env.start().await;
    let mut seen = Vec::new();
    let long = "a".repeat(300);
    let just_over = "b".repeat(129);
    let sent: [Option<&str>; 6] = [
        None,
        None,
        Some(&long),
        Some(&just_over),
        Some("has space"),
        Some("bad/char:{}"),
    ];
    for rid in sent {
        let headers: Vec<(&str, &str)> = rid.iter().map(|v| ("x-request-id", *v)).collect();
        let r = s.send(Method::GET, "/healthz", &headers, None).await;
        r.expect_status(200);
        let got = r.header("x-request-id").expect("X-Request-Id header");
        assert!(is_valid_request_id(&got), "generated id {got:?} is valid");
        if let Some(sent) = rid {
            assert_ne!(got, sent, "invalid id must not be echoed");
        }
        assert!(!seen.contains(&got), "generated ids are unique: {got}");
        seen.push(got);
    }
    // The problem body carries the generated id.
    let r = s
        .send(Method::GET, "/v1/nope", &[("x-request-id", &long)], None)
        .await;
    let b = assert_problem(&r, 404, "not-found");
    assert_ne!(b["request_id"], json!(long));
}

/// The one `request` log line for `rid` (asserts there is exactly one).
fn request_line<'a>(logs: &'a [Value], rid: &str) -> &'a Value {
    let lines: Vec<&Value> = logs
        .iter()
        .filter(|l| {
            log_field(l, "message") == Some(&json!("request"))
                && log_field(l, "request_id") == Some(&json!(rid))
        })
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one request log line for {rid}, got {lines:#?}"
    );
    lines[0]
}

#[tokio::test]
async fn one_json_log_line_per_request_without_bodies_or_ids() {
    let env = Env::new();
    let s = env.start().await;
    let body_secret = "sekrit-body-7f3a9c";
    let meta_secret = "sekrit-meta-2b8e41";
    let query_secret = "sekrit-query-55d0aa";
    // A real access token: the request must succeed and the token must not
    // appear in any log line.
    let signup = s
        .post(
            "/v1/auth/signup",
            &json!({"email": "logs@example.com", "password": "a long enough password"}),
        )
        .await;
    let token = signup.created()["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let header_secret = token.as_str();

    let r = s
        .send(
            Method::POST,
            "/v1/posts",
            &[
                ("x-request-id", "log-create"),
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {header_secret}")),
            ],
            Some(
                serde_json::to_vec(&json!({
                    "title": body_secret,
                    "meta": { "token": meta_secret }
                }))
                .expect("json"),
            ),
        )
        .await;
    let rec = r.created();
    let id = rec["id"].as_str().expect("id").to_owned();
    let path = item("posts", &rec);

    s.send(Method::GET, &path, &[("x-request-id", "log-get")], None)
        .await
        .expect_status(200);
    s.send(
        Method::GET,
        &format!("/v1/posts/{MISSING_ID}"),
        &[("x-request-id", "log-missing")],
        None,
    )
    .await
    .expect_status(404);
    let r = s
        .send(
            Method::GET,
            &format!("/v1/posts?limit=5&token={query_secret}"),
            &[("x-request-id", "log-list")],
            None,
        )
        .await;
    assert!(r.status == 200 || r.status == 400, "list: {}", r.status);
    let list_status = r.status;
    s.send(
        Method::PATCH,
        &path,
        &[
            ("x-request-id", "log-patch"),
            ("content-type", "application/json"),
        ],
        Some(format!(r#"{{"body":"{body_secret}-2","views":-1}}"#).into_bytes()),
    )
    .await
    .expect_status(422);

    // Paths that are not routes or ids must not reach the logs either.
    for (rid, p) in [
        ("log-unknown", "/v1/sekrit-path-4d2f/abc"),
        ("log-bad-id", "/v1/posts/sekrit-id-8a1b"),
    ] {
        s.send(Method::GET, p, &[("x-request-id", rid)], None)
            .await
            .expect_status(404);
    }

    let rids = [
        "log-create",
        "log-get",
        "log-missing",
        "log-list",
        "log-patch",
        "log-unknown",
        "log-bad-id",
    ];
    let logs = s
        .wait_logs(|logs| {
            rids.iter().all(|rid| {
                logs.iter().any(|l| {
                    log_field(l, "message") == Some(&json!("request"))
                        && log_field(l, "request_id") == Some(&json!(rid))
                })
            })
        })
        .await;

    let expect = [
        ("log-create", "POST", "/v1/posts", 201),
        ("log-get", "GET", "/v1/posts/{id}", 200),
        ("log-missing", "GET", "/v1/posts/{id}", 404),
        ("log-list", "GET", "/v1/posts", list_status),
        ("log-patch", "PATCH", "/v1/posts/{id}", 422),
        ("log-bad-id", "GET", "/v1/posts/{id}", 404),
    ];
    for (rid, method, route, status) in expect {
        let line = request_line(&logs, rid);
        // The documented keys are top-level keys of the JSON object.
        assert_eq!(line["message"], json!("request"), "{line}");
        assert_eq!(line["method"], json!(method), "{line}");
        assert_eq!(line["route"], json!(route), "{line}");
        assert_eq!(line["status"], json!(status), "{line}");
        assert_eq!(line["request_id"], json!(rid), "{line}");
        assert!(
            line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "duration_ms is a non-negative number: {line}"
        );
        assert!(line.get("level").is_some(), "level: {line}");
    }

    let unknown = request_line(&logs, "log-unknown");
    assert_eq!(unknown["status"], json!(404), "{unknown}");
    assert_eq!(unknown["method"], json!("GET"), "{unknown}");

    // Every stdout line is one JSON object.
    let raw = s.logs();
    for l in &raw {
        assert!(
            serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object()),
            "stdout line is not a JSON object: {l:?}"
        );
    }
    // Nothing that was posted, queried or sent as a header reaches the logs,
    // and routes never carry the real id.
    for l in &raw {
        for secret in [
            body_secret,
            meta_secret,
            query_secret,
            header_secret,
            "sekrit-path-4d2f",
            "sekrit-id-8a1b",
        ] {
            assert!(!l.contains(secret), "log line leaks {secret:?}: {l}");
        }
    }
    for l in &logs {
        if let Some(route) = log_field(l, "route").and_then(Value::as_str) {
            assert!(!route.contains(&id), "route carries the real id: {l}");
            assert!(
                !route.contains(MISSING_ID),
                "route carries the real id: {l}"
            );
        }
    }
}

#[tokio::test]
async fn listening_line_has_level_and_addr() {
    let env = Env::new();
    let s = env.start().await;
    let logs = s.json_logs();
    let line = logs
        .iter()
        .find(|l| l["message"] == json!("listening"))
        .unwrap_or_else(|| panic!("no top-level message=listening line in {logs:#?}"));
    assert_eq!(line["level"], json!("INFO"), "{line}");
    assert_eq!(line["addr"], json!(s.addr), "{line}");
}

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.com";

fn preflight_headers<'a>(origin: &'a str, method: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("origin", origin),
        ("access-control-request-method", method),
        ("access-control-request-headers", "content-type"),
    ]
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let env = Env::new();
    let s = env.start().await;
    let r = s
        .send(Method::GET, "/v1/posts", &[("origin", APP)], None)
        .await;
    r.expect_status(200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = s
        .send(
            Method::OPTIONS,
            "/v1/posts",
            &preflight_headers(APP, "POST"),
            None,
        )
        .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        None,
        "preflight must not be granted when CORS is off (status {})",
        r.status
    );
    assert!(r.status < 500);
}

fn header_lists(value: Option<String>, want: &str) -> bool {
    value.is_some_and(|v| {
        v.split(',')
            .any(|m| m.trim() == "*" || m.trim().eq_ignore_ascii_case(want))
    })
}

#[tokio::test]
async fn cors_allows_only_the_configured_origin() {
    let env = Env::new();
    let s = env.start_with(&["--cors-origins", APP]).await;

    let r = s
        .send(Method::GET, "/v1/posts", &[("origin", APP)], None)
        .await;
    r.expect_status(200);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );

    let r = s
        .send(
            Method::OPTIONS,
            "/v1/posts",
            &preflight_headers(APP, "POST"),
            None,
        )
        .await;
    assert!(
        r.status == 200 || r.status == 204,
        "preflight status {}: {}",
        r.status,
        r.text
    );
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert!(
        header_lists(r.header("access-control-allow-methods"), "POST"),
        "allow-methods: {:?}",
        r.header("access-control-allow-methods")
    );
    assert!(
        header_lists(r.header("access-control-allow-headers"), "content-type"),
        "allow-headers: {:?}",
        r.header("access-control-allow-headers")
    );

    // Preflight of a PATCH on a record.
    let rec = s.create_post("p").await;
    let r = s
        .send(
            Method::OPTIONS,
            &item("posts", &rec),
            &preflight_headers(APP, "PATCH"),
            None,
        )
        .await;
    assert!(
        r.status == 200 || r.status == 204,
        "preflight status {}",
        r.status
    );
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );
    assert!(
        header_lists(r.header("access-control-allow-methods"), "PATCH"),
        "allow-methods: {:?}",
        r.header("access-control-allow-methods")
    );

    // An actual cross-origin write carries the header as well.
    let r = s
        .send(
            Method::POST,
            "/v1/posts",
            &[("origin", APP), ("content-type", "application/json")],
            Some(br#"{"title":"x"}"#.to_vec()),
        )
        .await;
    r.expect_status(201);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(APP)
    );

    // Another origin gets nothing.
    for origin in [
        EVIL,
        "https://app.example.com.evil.com",
        "http://app.example.com",
    ] {
        let r = s
            .send(Method::GET, "/v1/posts", &[("origin", origin)], None)
            .await;
        assert_eq!(
            r.header("access-control-allow-origin"),
            None,
            "GET from {origin}"
        );
        let r = s
            .send(
                Method::OPTIONS,
                "/v1/posts",
                &preflight_headers(origin, "POST"),
                None,
            )
            .await;
        assert_eq!(
            r.header("access-control-allow-origin"),
            None,
            "preflight from {origin}"
        );
        assert!(r.status < 500);
    }
}

#[tokio::test]
async fn cors_accepts_a_comma_separated_origin_list() {
    let env = Env::new();
    let other = "https://admin.example.com";
    let list = format!("{APP},{other}");
    let s = env.start_with(&["--cors-origins", &list]).await;
    for origin in [APP, other] {
        let r = s
            .send(Method::GET, "/healthz", &[("origin", origin)], None)
            .await;
        assert_eq!(
            r.header("access-control-allow-origin").as_deref(),
            Some(origin)
        );
    }
    let r = s
        .send(Method::GET, "/healthz", &[("origin", EVIL)], None)
        .await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

/// Starts a POST with `Expect: 100-continue` and returns once the server has
/// answered `100 Continue`, i.e. once the handler is reading the body: the
/// request is then provably in flight. Returns the socket and the body still
/// to send.
async fn start_slow_post(addr: &str, body: &str) -> (TcpStream, String) {
    let mut sock = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v1/posts HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nX-Request-Id: in-flight\r\nExpect: 100-continue\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await.expect("write head");
    sock.flush().await.expect("flush");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), sock.read(&mut buf))
            .await
            .expect("100 Continue within 20 s")
            .expect("read");
        assert!(n > 0, "connection closed before 100 Continue");
        got.extend_from_slice(&buf[..n]);
    }
    let interim = String::from_utf8_lossy(&got);
    assert!(
        interim.starts_with("HTTP/1.1 100"),
        "expected 100 Continue, got {interim:?}"
    );
    let (first, rest) = body.split_at(body.len() / 2);
    sock.write_all(first.as_bytes()).await.expect("write body");
    sock.flush().await.expect("flush");
    (sock, rest.to_owned())
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let env = Env::new();
    let mut s = env.start().await;
    settle_signal_handlers().await;
    let body = json!({ "title": "finished during shutdown" }).to_string();
    let (mut sock, rest) = start_slow_post(&s.addr, &body).await;

    s.send_sigterm();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        s.try_exit_status().is_none(),
        "plinth exited while a request was in flight\n--- stderr ---\n{}",
        s.stderr()
    );

    sock.write_all(rest.as_bytes()).await.expect("write rest");
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), sock.read_to_end(&mut resp))
        .await
        .expect("response within 20 s")
        .expect("read response");
    let resp = String::from_utf8_lossy(&resp);
    assert!(
        resp.starts_with("HTTP/1.1 201"),
        "in-flight request completes with 201, got: {resp}"
    );
    let json_start = resp.find("\r\n\r\n").map_or(0, |i| i + 4);
    let rec: Value = serde_json::from_str(&resp[json_start..]).expect("201 body is JSON");

    let status = s.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGTERM: {status}\n--- stderr ---\n{}",
        s.stderr()
    );
    drop(s);

    // The write made during shutdown is durable.
    let s = env.start().await;
    assert_eq!(s.get(&item("posts", &rec)).await.ok(), rec);
}

#[tokio::test]
async fn shutdown_timeout_bounds_the_wait_for_stuck_requests() {
    let env = Env::new();
    let mut s = env.start_with(&["--shutdown-timeout", "1"]).await;
    settle_signal_handlers().await;
    let body = json!({ "title": "never finished" }).to_string();
    // Half a request that is never completed.
    let (_sock, _rest) = start_slow_post(&s.addr, &body).await;
    let started = std::time::Instant::now();
    s.send_sigterm();
    let status = tokio::time::timeout(Duration::from_secs(15), s.wait_exit())
        .await
        .unwrap_or_else(|_| panic!("plinth did not exit within 15 s despite --shutdown-timeout 1"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exit took {:?}",
        started.elapsed()
    );
    assert!(
        status.code().is_some(),
        "exited by itself, not by a signal: {status}"
    );
}

#[tokio::test]
async fn sigint_also_shuts_down_gracefully() {
    let env = Env::new();
    let mut s = env.start().await;
    s.create_post("p").await;
    settle_signal_handlers().await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &s.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let status = s.wait_exit().await;
    assert_eq!(status.code(), Some(0), "exit after SIGINT: {status}");
}

/// Once `listening` is logged, SIGTERM must already lead to a graceful exit:
/// the signal handler has to be installed before the server says it is up
/// (an orchestrator may stop a freshly started instance at any moment).
#[tokio::test]
async fn sigterm_right_after_listening_exits_0() {
    let env = Env::new();
    for attempt in 0..10 {
        let mut s = env.start().await;
        s.send_sigterm();
        let status = s.wait_exit().await;
        assert_eq!(
            status.code(),
            Some(0),
            "attempt {attempt}: SIGTERM right after `listening` gave {status}\n--- stderr ---\n{}",
            s.stderr()
        );
    }
}
