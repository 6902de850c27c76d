//! Error responses: RFC 9457 problems with the documented status and type,
//! and nothing half-written after a failed write.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Env, MISSING_ID, Resp, Server, assert_invalid, assert_problem, item};

#[tokio::test]
async fn malformed_json_is_400() {
    let env = Env::new();
    let s = env.start().await;
    for body in [
        r#"{"title": "#,
        r#"{title: "x"}"#,
        r#"{"title": "x"} trailing"#,
        r#"{"title": 'x'}"#,
        "",
    ] {
        let r = s.send_raw_json(Method::POST, "/v1/posts", body).await;
        assert_problem(&r, 400, "bad-request");
    }
    // Invalid UTF-8 is not JSON text either.
    let r = s
        .send(
            Method::POST,
            "/v1/posts",
            &[("content-type", "application/json")],
            Some(b"{\"title\": \"\xff\xfe\"}".to_vec()),
        )
        .await;
    assert_problem(&r, 400, "bad-request");

    let rec = s.create_post("p").await;
    let r = s
        .send_raw_json(Method::PATCH, &item("posts", &rec), "{\"title\":")
        .await;
    assert_problem(&r, 400, "bad-request");
    assert_eq!(s.count("posts").await, 1);
}

/// Sends a JSON body with `Connection: close`: after a 413 the server may
/// close the connection without reading the rest of the body, and that must
/// not leak into the pooled connections later requests use (see
/// `oversized_body_does_not_strand_a_keep_alive_connection` for that).
async fn send_oversized(s: &Server, method: Method, path: &str, body: &str) -> Resp {
    s.send(
        method,
        path,
        &[
            ("content-type", "application/json"),
            ("connection", "close"),
        ],
        Some(body.as_bytes().to_vec()),
    )
    .await
}

#[tokio::test]
async fn body_over_max_body_bytes_is_413() {
    let env = Env::new();
    let s = env.start_with(&["--max-body-bytes", "1024"]).await;

    // Just under the limit is fine.
    let small = json!({ "title": "t", "body": "x".repeat(900) });
    assert!(serde_json::to_vec(&small).expect("json").len() < 1024);
    let rec = s.create("posts", &small).await;

    // Exactly the limit is accepted, one byte more is not.
    let r = s
        .send_raw_json(Method::POST, "/v1/posts", &body_of_len(1024))
        .await;
    r.expect_status(201);
    let r = send_oversized(&s, Method::POST, "/v1/posts", &body_of_len(1025)).await;
    assert_problem(&r, 413, "payload-too-large");

    let big = json!({ "title": "t", "body": "x".repeat(2000) }).to_string();
    let r = send_oversized(&s, Method::POST, "/v1/posts", &big).await;
    assert_problem(&r, 413, "payload-too-large");

    let r = send_oversized(&s, Method::PATCH, &item("posts", &rec), &big).await;
    assert_problem(&r, 413, "payload-too-large");

    // Much larger than the limit, too.
    let huge = json!({ "title": "t", "body": "x".repeat(200_000) }).to_string();
    let r = send_oversized(&s, Method::POST, "/v1/posts", &huge).await;
    assert_problem(&r, 413, "payload-too-large");

    assert_eq!(s.count("posts").await, 2);
    assert_eq!(s.get(&item("posts", &rec)).await.ok(), rec);
}

/// Reads one HTTP/1.1 response (head + `content-length` body) from `sock`.
async fn read_response(sock: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("timed out reading a response"))??;
        if n == 0 {
            return Err(std::io::Error::other("connection closed before a response"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("timed out reading a body"))??;
        if n == 0 {
            return Err(std::io::Error::other("connection closed mid-body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

/// HTTP/1.1 keep-alive: after a 413 the server either announces
/// `Connection: close` or keeps serving the connection. Closing it silently
/// makes any pooled client's next request on it fail.
#[tokio::test]
async fn oversized_body_does_not_strand_a_keep_alive_connection() {
    let env = Env::new();
    let s = env.start_with(&["--max-body-bytes", "1024"]).await;
    let body = json!({ "title": "t", "body": "x".repeat(200_000) }).to_string();
    let mut sock = TcpStream::connect(&s.addr).await.expect("connect");
    let head = format!(
        "POST /v1/posts HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        s.addr,
        body.len()
    );
    sock.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer before reading everything; a failed write is fine.
    let _ = sock.write_all(body.as_bytes()).await;
    let (head, _) = read_response(&mut sock).await.expect("413 response");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let closes = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "connection:close");
    if closes {
        return;
    }
    let next = async {
        sock.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes())
            .await?;
        read_response(&mut sock).await
    };
    match next.await {
        Ok((h, _)) => assert!(h.starts_with("HTTP/1.1 200"), "{h}"),
        Err(e) => panic!(
            "the 413 response did not say `Connection: close`, yet the next request on the \
             same keep-alive connection failed ({e}); 413 head was:\n{head}"
        ),
    }
}

/// A valid create body of exactly `len` bytes.
fn body_of_len(len: usize) -> String {
    let overhead = r#"{"title":"t","body":""}"#.len();
    let b = format!(r#"{{"title":"t","body":"{}"}}"#, "x".repeat(len - overhead));
    assert_eq!(b.len(), len);
    b
}

#[tokio::test]
async fn default_body_limit_is_one_mebibyte() {
    let env = Env::new();
    let s = env.start().await;
    let r = s
        .send_raw_json(Method::POST, "/v1/posts", &body_of_len(1024 * 1024))
        .await;
    let rec = r.created();
    assert_eq!(rec["body"].as_str().map(str::len), Some(1024 * 1024 - 23));
    let r = send_oversized(&s, Method::POST, "/v1/posts", &body_of_len(1024 * 1024 + 1)).await;
    assert_problem(&r, 413, "payload-too-large");
    assert_eq!(s.count("posts").await, 1);
}

#[tokio::test]
async fn non_json_content_type_is_415() {
    let env = Env::new();
    let s = env.start().await;
    let body = br#"{"title":"x"}"#.to_vec();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ct.iter().map(|c| ("content-type", *c)).collect();
        let r = s
            .send(Method::POST, "/v1/posts", &headers, Some(body.clone()))
            .await;
        assert_problem(&r, 415, "unsupported-media-type");
    }
    // A charset parameter on application/json is still JSON.
    let r = s
        .send(
            Method::POST,
            "/v1/posts",
            &[("content-type", "application/json; charset=utf-8")],
            Some(body.clone()),
        )
        .await;
    let rec = r.created();

    let r = s
        .send(
            Method::PATCH,
            &item("posts", &rec),
            &[("content-type", "text/plain")],
            Some(body),
        )
        .await;
    assert_problem(&r, 415, "unsupported-media-type");
    assert_eq!(s.count("posts").await, 1);
}

#[tokio::test]
async fn unknown_collection_or_route_is_404() {
    let env = Env::new();
    let s = env.start().await;
    assert_problem(&s.get("/v1/nope").await, 404, "not-found");
    assert_problem(
        &s.post("/v1/nope", &json!({ "title": "x" })).await,
        404,
        "not-found",
    );
    let path = format!("/v1/nope/{MISSING_ID}");
    assert_problem(&s.get(&path).await, 404, "not-found");
    assert_problem(
        &s.patch(&path, &json!({ "title": "x" })).await,
        404,
        "not-found",
    );
    assert_problem(&s.delete(&path).await, 404, "not-found");
    for p in ["/nope", "/v2/posts", "/v1", "/v1/posts/x/y"] {
        assert_problem(&s.get(p).await, 404, "not-found");
    }
}

#[tokio::test]
async fn unknown_or_malformed_id_is_404() {
    let env = Env::new();
    let s = env.start().await;
    let post = s.create_post("p").await;
    let comment = s
        .create("comments", &json!({ "post": post["id"], "body": "c" }))
        .await;
    for id in [
        MISSING_ID,
        "not-an-id",
        "123",
        "00000000-0000-0000-0000-00000000000g",
        // A record of another collection is not a post.
        comment["id"].as_str().expect("id"),
    ] {
        let path = format!("/v1/posts/{id}");
        assert_problem(&s.get(&path).await, 404, "not-found");
        assert_problem(
            &s.patch(&path, &json!({ "title": "x" })).await,
            404,
            "not-found",
        );
        assert_problem(&s.delete(&path).await, 404, "not-found");
    }
    assert_eq!(s.count("posts").await, 1);
    assert_eq!(s.count("comments").await, 1);
}

#[tokio::test]
async fn unknown_field_is_422() {
    let env = Env::new();
    let s = env.start().await;
    let r = s
        .post("/v1/posts", &json!({ "title": "x", "nope": 1 }))
        .await;
    assert_invalid(&r, "nope", &["unknown_field"]);
    let rec = s.create_post("p").await;
    let r = s
        .patch(&item("posts", &rec), &json!({ "Title": "x" }))
        .await;
    assert_invalid(&r, "Title", &["unknown_field"]);
    assert_eq!(s.count("posts").await, 1);
}

#[tokio::test]
async fn system_fields_in_body_are_read_only() {
    let env = Env::new();
    let s = env.start().await;
    let rec = s.create_post("p").await;
    let path = item("posts", &rec);
    for (field, value) in [
        ("id", json!(MISSING_ID)),
        ("version", json!(7)),
        ("created_at", json!("2026-01-02T03:04:05.000000Z")),
        ("updated_at", json!("2026-01-02T03:04:05.000000Z")),
    ] {
        let mut body = json!({ "title": "x" });
        body[field] = value.clone();
        let r = s.post("/v1/posts", &body).await;
        assert_invalid(&r, field, &["read_only"]);
        let r = s.patch(&path, &json!({ field: value })).await;
        assert_invalid(&r, field, &["read_only"]);
    }
    // Even sending the record back unchanged names the system fields.
    let r = s.patch(&path, &rec).await;
    assert_invalid(&r, "id", &["read_only"]);
    assert_eq!(s.count("posts").await, 1);
    assert_eq!(s.get(&path).await.ok(), rec);
}

#[tokio::test]
async fn wrong_json_type_is_422() {
    let env = Env::new();
    let s = env.start().await;
    for v in [json!(5), json!(["a"]), json!({ "a": 1 }), json!(true)] {
        let r = s.post("/v1/posts", &json!({ "title": v })).await;
        assert_invalid(&r, "title", &["type"]);
    }
    let rec = s.create_post("p").await;
    let r = s
        .patch(&item("posts", &rec), &json!({ "featured": "no" }))
        .await;
    assert_invalid(&r, "featured", &["type"]);
}

#[tokio::test]
async fn non_object_body_is_422() {
    let env = Env::new();
    let s = env.start().await;
    let rec = s.create_post("p").await;
    for body in [
        json!([]),
        json!([{ "title": "x" }]),
        json!("title"),
        json!(42),
        json!(null),
        json!(true),
    ] {
        let r = s.post("/v1/posts", &body).await;
        assert_problem(&r, 422, "validation");
        let r = s.patch(&item("posts", &rec), &body).await;
        assert_problem(&r, 422, "validation");
    }
    assert_eq!(s.count("posts").await, 1);
    assert_eq!(s.get(&item("posts", &rec)).await.ok(), rec);
}

#[tokio::test]
async fn delete_of_referenced_record_is_409() {
    let env = Env::new();
    let s = env.start().await;
    let post = s.create_post("p").await;
    let comment = s
        .create("comments", &json!({ "post": post["id"], "body": "c" }))
        .await;
    let r = s.delete(&item("posts", &post)).await;
    assert_problem(&r, 409, "conflict");
    assert_eq!(s.get(&item("posts", &post)).await.ok(), post);

    s.delete(&item("comments", &comment))
        .await
        .expect_status(204);
    s.delete(&item("posts", &post)).await.expect_status(204);
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let env = Env::new();
    let s = env.start().await;
    let rec = s.create_post("p").await;
    let rec_path = item("posts", &rec);
    let cases: [(Method, &str, &[&str]); 6] = [
        (Method::PUT, &rec_path, &["GET", "PATCH", "DELETE"]),
        (Method::POST, &rec_path, &["GET", "PATCH", "DELETE"]),
        (Method::DELETE, "/v1/posts", &["GET", "POST"]),
        (Method::PUT, "/v1/posts", &["GET", "POST"]),
        (Method::POST, "/healthz", &["GET"]),
        (Method::DELETE, "/v1/openapi.json", &["GET"]),
    ];
    for (method, path, allowed) in cases {
        let r = s
            .send(
                method.clone(),
                path,
                &[("content-type", "application/json")],
                Some(br#"{"title":"x"}"#.to_vec()),
            )
            .await;
        assert_problem(&r, 405, "method-not-allowed");
        let allow = r
            .header("allow")
            .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow header"));
        for a in allowed {
            assert!(
                allow.split(',').any(|m| m.trim().eq_ignore_ascii_case(a)),
                "{method} {path}: Allow {allow:?} lacks {a}"
            );
        }
        assert!(
            !allow.split(',').any(|m| m.trim() == method.as_str()),
            "{method} {path}: Allow {allow:?} lists the refused method"
        );
    }
    assert_eq!(s.count("posts").await, 1);
    assert_eq!(s.get(&rec_path).await.ok(), rec);
}

#[tokio::test]
async fn failed_writes_leave_nothing_behind() {
    let env = Env::new();
    let s = env.start().await;
    let post = s
        .create("posts", &json!({ "title": "p", "slug": "taken" }))
        .await;
    let comment = s
        .create("comments", &json!({ "post": post["id"], "body": "c" }))
        .await;

    let failing_creates: Vec<(&str, Value)> = vec![
        ("posts", json!({ "title": "x", "views": -1 })),
        ("posts", json!({ "title": "x", "slug": "taken" })),
        ("posts", json!({ "title": "x", "nope": 1 })),
        ("posts", json!({ "title": "x", "id": MISSING_ID })),
        ("comments", json!({ "post": MISSING_ID, "body": "x" })),
        ("comments", json!({ "post": post["id"], "body": "" })),
    ];
    for (coll, body) in &failing_creates {
        let r = s.post(&format!("/v1/{coll}"), body).await;
        assert!(
            r.status == 409 || r.status == 422,
            "POST /v1/{coll} {body}: expected 409/422, got {} {}",
            r.status,
            r.text
        );
    }
    let r = s
        .send_raw_json(Method::POST, "/v1/posts", r#"{"title":"x","#)
        .await;
    assert_problem(&r, 400, "bad-request");

    // Patches that fail part-way (one good field, one bad) change nothing.
    let ppath = item("posts", &post);
    let cpath = item("comments", &comment);
    for body in [
        json!({ "title": "changed", "views": -1 }),
        json!({ "title": "changed", "slug": "Bad Slug" }),
        json!({ "title": "changed", "nope": true }),
        json!({ "meta": { "a": 1 }, "status": "gone" }),
    ] {
        let r = s.patch(&ppath, &body).await;
        assert_problem(&r, 422, "validation");
    }
    let r = s
        .patch(&cpath, &json!({ "body": "changed", "post": MISSING_ID }))
        .await;
    assert_invalid(&r, "post", &["relation_not_found"]);

    assert_eq!(s.count("posts").await, 1);
    assert_eq!(s.count("comments").await, 1);
    assert_eq!(s.get(&ppath).await.ok(), post, "post unchanged");
    assert_eq!(s.get(&cpath).await.ok(), comment, "comment unchanged");
}

/// Inputs at the edges of what JSON, URLs and SQL can carry: any 4xx is
/// acceptable where the contract does not pin it down, a 500 never is
/// (`Server::send` fails the test on any 500).
#[tokio::test]
async fn odd_inputs_never_cause_a_server_error() {
    let env = Env::new();
    let s = env.start().await;

    // Deeply nested JSON.
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let r = s
        .send_raw_json(
            Method::POST,
            "/v1/posts",
            &format!(r#"{{"title":"deep","meta":{deep}}}"#),
        )
        .await;
    assert!(
        (400..500).contains(&r.status),
        "deep nesting: {} {}",
        r.status,
        r.text
    );
    let nested = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    let rec = s
        .send_raw_json(
            Method::POST,
            "/v1/posts",
            &format!(r#"{{"title":"nested","meta":{nested}}}"#),
        )
        .await
        .created();
    let want: Value = serde_json::from_str(&nested).expect("valid json");
    assert_eq!(rec["meta"], want);

    // NUL and other control characters in text round-trip or are refused.
    let r = s
        .post(
            "/v1/posts",
            &json!({ "title": "a\u{0}b\u{1}c'\"; DROP TABLE posts; --" }),
        )
        .await;
    if r.status == 201 {
        let rec = r.json();
        assert_eq!(
            rec["title"],
            json!("a\u{0}b\u{1}c'\"; DROP TABLE posts; --")
        );
        assert_eq!(
            s.get(&item("posts", &rec)).await.ok()["title"],
            rec["title"]
        );
    } else {
        assert_problem(&r, 422, "validation");
    }

    // A lone surrogate escape is not valid JSON text.
    let r = s
        .send_raw_json(Method::POST, "/v1/posts", r#"{"title":"\ud800"}"#)
        .await;
    assert!(
        (400..500).contains(&r.status),
        "lone surrogate: {}",
        r.status
    );

    // Numbers out of range.
    for raw in [
        r#"{"title":"n","rating":1e400}"#,
        r#"{"title":"n","views":-9223372036854775809}"#,
    ] {
        let r = s.send_raw_json(Method::POST, "/v1/posts", raw).await;
        assert!(
            (400..500).contains(&r.status),
            "{raw}: {} {}",
            r.status,
            r.text
        );
    }

    // Odd paths.
    for p in [
        "/v1/posts/%00",
        "/v1/posts/..%2F..%2Fetc%2Fpasswd",
        "/v1/%2e%2e/posts",
        "/v1/posts%00",
        "/v1/sqlite_master",
        "/v1/plinth_schema",
    ] {
        let r = s.get(p).await;
        assert!(
            (400..500).contains(&r.status),
            "GET {p}: {} {}",
            r.status,
            r.text
        );
    }
    let long = format!("/v1/{}", "a".repeat(5000));
    let r = s.get(&long).await;
    assert!((400..500).contains(&r.status), "long path: {}", r.status);

    // Odd query strings.
    for q in ["limit=", "limit=1&limit=2", "limit=%00", "other=1"] {
        let r = s.get(&format!("/v1/posts?{q}")).await;
        assert!(
            r.status == 200 || r.status == 400,
            "?{q}: {} {}",
            r.status,
            r.text
        );
    }

    // An empty merge patch is fine.
    let r = s.patch(&item("posts", &rec), &json!({})).await;
    let b = r.ok();
    assert_eq!(b["title"], json!("nested"));
}

#[tokio::test]
async fn problem_fields_are_consistent_across_statuses() {
    let env = Env::new();
    let s = env.start().await;
    let checks: Vec<(u16, &str, crate::harness::Resp)> = vec![
        (400, "bad-request", s.get("/v1/posts?limit=0").await),
        (404, "not-found", s.get("/v1/nope").await),
        (
            405,
            "method-not-allowed",
            s.send(Method::PUT, "/v1/posts", &[], None).await,
        ),
        (
            415,
            "unsupported-media-type",
            s.send(
                Method::POST,
                "/v1/posts",
                &[("content-type", "text/plain")],
                Some(b"x".to_vec()),
            )
            .await,
        ),
        (422, "validation", s.post("/v1/posts", &json!({})).await),
    ];
    for (status, kind, r) in &checks {
        let b = assert_problem(r, *status, kind);
        assert!(
            !b["detail"].as_str().unwrap_or_default().is_empty(),
            "detail is not empty: {b}"
        );
    }
    // Titles are stable per problem type.
    let again = assert_problem(&s.get("/v1/other").await, 404, "not-found");
    let first = assert_problem(&checks[1].2, 404, "not-found");
    assert_eq!(again["title"], first["title"]);
    // Problem details never leak internals (SQL, file paths, Rust panics).
    for (_, _, r) in &checks {
        let t = r.text.to_lowercase();
        for leak in ["sqlite", "select ", "insert ", "panicked", "/src/", ".rs:"] {
            assert!(!t.contains(leak), "problem body leaks {leak:?}: {}", r.text);
        }
    }
}
