//! Test harness: runs the real `plinth` binary as a child process and talks to
//! it over HTTP.
//!
//! Every test gets its own [`Env`] (a temp dir holding a schema file and a data
//! dir) and starts one or more [`Server`]s on `127.0.0.1:0`. The server's
//! stdout (JSON log lines) is drained in the background and kept so tests can
//! assert on log lines; the child is killed when the [`Server`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_plinth");

/// How long a server may take to log `listening`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The example schema shipped in `examples/blog/plinth.toml`.
pub fn example_schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/blog/plinth.toml")
}

/// The blog the core API tests run on: the example's posts and comments,
/// open to anyone (`tests/api/fixtures/public_blog.toml`). The shipped example
/// (`example_schema_path`) adds tenants, roles and owners; `auth.rs` tests it.
pub fn example_schema() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/fixtures/public_blog.toml"),
    )
    .expect("read tests/api/fixtures/public_blog.toml")
}

/// A temp dir with `plinth.toml` and `data/`, removed at the end of the test.
///
/// When `PLINTH_TEST_DATABASE_URL` names a PostgreSQL database (an admin
/// database such as `postgres://root@127.0.0.1:5432/test`), every `Env` also
/// gets a fresh database of its own, dropped at the end of the test, and every
/// `plinth` it runs gets `PLINTH_DATABASE_URL` pointing at it. The same tests
/// then run against PostgreSQL.
pub struct Env {
    dir: tempfile::TempDir,
    database: Option<TestDatabase>,
}

/// A PostgreSQL database made for one test.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

fn psql(url: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("run psql (is postgresql-client installed?)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestDatabase {
    fn create(admin_url: &str) -> TestDatabase {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("plinth_t_{}_{n}_{}", std::process::id(), uuid_suffix());
        psql(admin_url, &format!("CREATE DATABASE {name}"));
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
        TestDatabase {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                self.admin_url.as_str(),
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos:x}")
}

/// Whether this test run targets PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("PLINTH_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty())
}

impl Env {
    /// An environment whose schema file is the blog example.
    pub fn new() -> Env {
        Env::with_schema(&example_schema())
    }

    pub fn with_schema(schema: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("plinth-api-test-")
            .tempdir()
            .expect("create temp dir");
        let database = std::env::var("PLINTH_TEST_DATABASE_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|admin| TestDatabase::create(&admin));
        let env = Env { dir, database };
        env.write_schema(schema);
        env
    }

    /// The PostgreSQL URL of this test's database, when running on PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|d| d.url.as_str())
    }

    /// The temp dir itself (the working directory of `serve`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn schema_path(&self) -> PathBuf {
        self.dir.path().join("plinth.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn write_schema(&self, schema: &str) {
        std::fs::write(self.schema_path(), schema).expect("write schema file");
    }

    /// Starts `plinth serve` on a free port; panics (with stderr) if it fails.
    pub async fn start(&self) -> Server {
        self.start_with(&[]).await
    }

    pub async fn start_with(&self, extra: &[&str]) -> Server {
        match self.try_start(extra).await {
            Ok(s) => s,
            Err(e) => panic!(
                "plinth serve did not start: {}\nexit status: {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
                e.reason,
                e.status,
                e.stderr,
                e.stdout.join("\n")
            ),
        }
    }

    /// Starts `plinth serve`, or returns how it failed (exit status and output).
    pub async fn try_start(&self, extra: &[&str]) -> Result<Server, StartFailure> {
        let schema = self.schema_path();
        let data = self.data_dir();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--schema".into(),
            schema.to_string_lossy().into_owned(),
            "--data-dir".into(),
            data.to_string_lossy().into_owned(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--log-format".into(),
            "json".into(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        self.try_start_raw(&args, &[]).await
    }

    /// Runs `plinth ARGS` (no implied flags) with extra environment variables;
    /// the `PLINTH_*` variables of the test process are removed first.
    pub async fn try_start_raw(
        &self,
        args: &[String],
        envs: &[(&str, &str)],
    ) -> Result<Server, StartFailure> {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PLINTH_") {
                cmd.env_remove(k);
            }
        }
        if let Some(url) = self.database_url() {
            cmd.env("PLINTH_DATABASE_URL", url);
        }
        cmd.envs(envs.iter().copied())
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn plinth serve");

        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr_buf: Arc<Mutex<String>> = Arc::default();

        let stdout = child.stdout.take().expect("child stdout");
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let stdout_logs = Arc::clone(&logs);
        let stdout_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                stdout_logs.lock().expect("logs lock").push(line.clone());
                // The receiver goes away once the server is up; keep draining.
                let _ = tx.send(line);
            }
        });

        let mut stderr = child.stderr.take().expect("child stderr");
        let stderr_sink = Arc::clone(&stderr_buf);
        let stderr_task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                match stderr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => stderr_sink
                        .lock()
                        .expect("stderr lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });

        let wait_listening = async {
            while let Some(line) = rx.recv().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if log_field(&v, "message").and_then(Value::as_str) == Some("listening")
                    && let Some(addr) = log_field(&v, "addr").and_then(Value::as_str)
                {
                    return Some(addr.to_owned());
                }
            }
            None
        };
        let outcome = tokio::time::timeout(START_TIMEOUT, wait_listening).await;
        let addr = match outcome {
            Ok(Some(addr)) => addr,
            other => {
                let reason = match other {
                    Err(_) => format!("no `listening` log line within {START_TIMEOUT:?}"),
                    _ => "stdout closed before a `listening` log line".to_owned(),
                };
                // Give an exiting process a moment to finish, then collect its output.
                let status = match tokio::time::timeout(Duration::from_secs(10), child.wait()).await
                {
                    Ok(Ok(s)) => Some(s),
                    _ => {
                        let _ = child.kill().await;
                        None
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), stderr_task).await;
                let _ = tokio::time::timeout(Duration::from_secs(5), stdout_task).await;
                let stderr = stderr_buf.lock().expect("stderr lock").clone();
                let stdout = logs.lock().expect("logs lock").clone();
                return Err(StartFailure {
                    reason,
                    status,
                    stderr,
                    stdout,
                });
            }
        };

        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build HTTP client");
        Ok(Server {
            child,
            base: format!("http://{addr}"),
            addr,
            client,
            logs,
            stderr: stderr_buf,
            stderr_task: Some(stderr_task),
        })
    }
}

/// Why `plinth serve` did not come up.
#[derive(Debug)]
pub struct StartFailure {
    pub reason: String,
    pub status: Option<ExitStatus>,
    pub stderr: String,
    pub stdout: Vec<String>,
}

/// A field of a JSON log line: top level, or under `fields` (tracing's nested layout).
pub fn log_field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line.get(name)
        .or_else(|| line.get("fields").and_then(|f| f.get(name)))
}

/// A running `plinth serve`.
pub struct Server {
    child: Child,
    pub addr: String,
    pub base: String,
    pub client: reqwest::Client,
    logs: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    stderr_task: Option<JoinHandle<()>>,
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header value is ASCII").to_owned())
    }

    /// The body as JSON; panics with the raw body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "{} {} -> {}: body is not JSON ({e}): {:?}",
                self.method, self.path, self.status, self.text
            )
        })
    }

    /// Asserts the status, showing the whole response when it differs.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "{} {}: expected {status}, got {} with body {}",
            self.method, self.path, self.status, self.text
        );
        self
    }

    /// Asserts a 201 and returns the created record.
    #[track_caller]
    pub fn created(&self) -> Value {
        self.expect_status(201);
        self.json()
    }

    /// Asserts a 200 and returns the body.
    #[track_caller]
    pub fn ok(&self) -> Value {
        self.expect_status(200);
        self.json()
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    /// Sends one request. Never returns a 500: that is always a server bug.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = self.client.request(method.clone(), self.url(path));
        for (k, v) in headers {
            req = req.header(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: request failed: {e:?}"));
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading body failed: {e:?}"));
        assert!(
            status != 500,
            "{method} {path} -> 500 (a 500 is always a bug): {text}\n--- stderr ---\n{}",
            self.stderr()
        );
        Resp {
            method,
            path: path.to_owned(),
            status,
            headers,
            text,
        }
    }

    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Resp {
        let bytes = serde_json::to_vec(body).expect("serialize body");
        self.send(
            method,
            path,
            &[("content-type", "application/json")],
            Some(bytes),
        )
        .await
    }

    /// Sends raw bytes as `application/json`.
    pub async fn send_raw_json(&self, method: Method, path: &str, body: &str) -> Resp {
        self.send(
            method,
            path,
            &[("content-type", "application/json")],
            Some(body.as_bytes().to_vec()),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send_json(Method::POST, path, body).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send_json(Method::PATCH, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// Creates a record and returns it (asserting 201).
    pub async fn create(&self, collection: &str, body: &Value) -> Value {
        self.post(&format!("/v1/{collection}"), body)
            .await
            .created()
    }

    /// Creates a post with just a title.
    pub async fn create_post(&self, title: &str) -> Value {
        self.create("posts", &json!({ "title": title })).await
    }

    /// The items of `GET /v1/{collection}?limit=200`.
    pub async fn list_all(&self, collection: &str) -> Vec<Value> {
        let body = self.get(&format!("/v1/{collection}?limit=200")).await.ok();
        body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("list body has no items array: {body}"))
            .clone()
    }

    pub async fn count(&self, collection: &str) -> usize {
        self.list_all(collection).await.len()
    }

    /// Every stdout line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs lock").clone()
    }

    /// Every stdout line so far that is a JSON object.
    pub fn json_logs(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Waits until `pred` holds for the logs (request lines may be written
    /// just after the response), returning the last snapshot either way.
    pub async fn wait_logs(&self, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let logs = self.json_logs();
            if pred(&logs) || tokio::time::Instant::now() > deadline {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Whether the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit (at most 40 s).
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let status = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "plinth did not exit within 40 s\n--- stderr ---\n{}",
                    self.stderr()
                )
            })
            .expect("wait for child");
        if let Some(t) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        status
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn sigterm(&mut self) -> ExitStatus {
        self.send_sigterm();
        self.wait_exit().await
    }

    /// Graceful stop that must succeed (exit code 0).
    ///
    /// Waits a moment first: SIGTERM sent right after `listening` can still
    /// hit the default signal disposition. That race is a server bug pinned by
    /// `ops::sigterm_right_after_listening_exits_0`; the other tests stop
    /// servers for other reasons and should not flake on it.
    pub async fn stop(mut self) {
        settle_signal_handlers().await;
        let status = self.sigterm().await;
        assert_eq!(
            status.code(),
            Some(0),
            "plinth did not exit 0 after SIGTERM: {status}\n--- stderr ---\n{}",
            self.stderr()
        );
    }
}

/// Gives a freshly started server a moment before it is signalled; see
/// `ops::sigterm_right_after_listening_exits_0` for the race this avoids.
pub async fn settle_signal_handlers() {
    tokio::time::sleep(Duration::from_millis(250)).await;
}

/// Output of a one-shot CLI command.
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `plinth ARGS...` to completion (at most 60 s).
pub async fn run_cli(args: &[&str], envs: &[(&str, &str)], cwd: &Path) -> CliOutput {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PLINTH_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("plinth {args:?} did not finish within 60 s"))
        .expect("run plinth");
    CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts an RFC 9457 problem response and returns its body.
///
/// Checks content type, `type` (`urn:plinth:problem:{kind}`), `title`,
/// `status` (equal to the HTTP status), `detail`, `instance` (the request
/// path) and `request_id` (equal to the `X-Request-Id` header).
#[track_caller]
pub fn assert_problem(r: &Resp, status: u16, kind: &str) -> Value {
    r.expect_status(status);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "{} {}: content-type {ct:?} is not application/problem+json",
        r.method,
        r.path
    );
    let b = r.json();
    let ctx = format!("{} {} -> {}: {b}", r.method, r.path, r.status);
    assert_eq!(
        b["type"],
        json!(format!("urn:plinth:problem:{kind}")),
        "type: {ctx}"
    );
    assert!(
        b["title"].as_str().is_some_and(|s| !s.is_empty()),
        "title: {ctx}"
    );
    assert_eq!(b["status"], json!(status), "status: {ctx}");
    assert!(b["detail"].is_string(), "detail: {ctx}");
    let path = r.path.split('?').next().unwrap_or_default();
    assert!(
        b["instance"].as_str().is_some_and(|s| s.starts_with(path)),
        "instance should be the request path {path:?}: {ctx}"
    );
    let rid = r.header("x-request-id");
    assert!(rid.is_some(), "no X-Request-Id header: {ctx}");
    assert_eq!(
        b["request_id"].as_str(),
        rid.as_deref(),
        "request_id: {ctx}"
    );
    b
}

/// Asserts a 422 validation problem with an error for `field` with one of `codes`.
#[track_caller]
pub fn assert_invalid(r: &Resp, field: &str, codes: &[&str]) -> Value {
    let b = assert_problem(r, 422, "validation");
    let errors = b["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{} {}: no errors array: {b}", r.method, r.path));
    for e in errors {
        assert!(
            e["field"].is_string() && e["code"].is_string() && e["message"].is_string(),
            "each error has field, code, message: {b}"
        );
    }
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == json!(field) && codes.iter().any(|c| e["code"] == json!(c))),
        "{} {}: expected an error on field {field:?} with code {codes:?}, got {b}",
        r.method,
        r.path
    );
    b
}

/// `2026-01-02T03:04:05.123456Z`.
pub fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z'
        && s.char_indices()
            .filter(|(i, _)| ![4, 7, 10, 13, 16, 19, 26].contains(i))
            .all(|(_, c)| c.is_ascii_digit())
}

/// A lowercase hyphenated UUIDv7.
pub fn is_uuid_v7(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'7'
        && s.char_indices()
            .filter(|(i, _)| ![8, 13, 18, 23].contains(i))
            .all(|(_, c)| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// A well-formed id that no record has (a UUIDv7 from the far past).
pub const MISSING_ID: &str = "01890000-0000-7000-8000-000000000000";

/// The path of a record.
pub fn item(collection: &str, record: &Value) -> String {
    format!(
        "/v1/{collection}/{}",
        record["id"].as_str().expect("record has a string id")
    )
}
