//! Process lifecycle: data survives restarts, a changed or broken schema
//! stops `serve` before it touches anything.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use crate::harness::{Env, StartFailure, example_schema, item};

#[tokio::test]
async fn restart_on_the_same_data_dir_keeps_records() {
    let env = Env::new();
    let s = env.start().await;
    let post = s
        .create(
            "posts",
            &json!({ "title": "durable", "slug": "durable", "meta": { "k": [1, 2] } }),
        )
        .await;
    let post = s
        .patch(&item("posts", &post), &json!({ "views": 3 }))
        .await
        .ok();
    let comment = s
        .create("comments", &json!({ "post": post["id"], "body": "c" }))
        .await;
    let second = s.create_post("second").await;
    let deleted = s.create_post("deleted").await;
    s.delete(&item("posts", &deleted)).await.expect_status(204);
    s.stop().await;

    let s = env.start().await;
    assert_eq!(s.get(&item("posts", &post)).await.ok(), post);
    assert_eq!(s.get(&item("comments", &comment)).await.ok(), comment);
    s.get(&item("posts", &deleted)).await.expect_status(404);
    let ids: Vec<_> = s
        .list_all("posts")
        .await
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, vec![second["id"].clone(), post["id"].clone()]);

    // Constraints still hold after the restart.
    let r = s
        .post("/v1/posts", &json!({ "title": "x", "slug": "durable" }))
        .await;
    r.expect_status(409);
    s.delete(&item("posts", &post)).await.expect_status(409);
    // And new writes work.
    let p = s
        .patch(&item("posts", &post), &json!({ "views": 4 }))
        .await
        .ok();
    assert_eq!(p["version"], json!(3));
    s.stop().await;
}

/// Contents of every file under `dir` except SQLite's transient side files.
fn snapshot_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        // PostgreSQL runs keep no data directory.
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read data dir") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.to_string_lossy().into_owned();
            if name.ends_with("-wal") || name.ends_with("-shm") || name.ends_with("-journal") {
                continue;
            }
            out.insert(name, std::fs::read(&p).expect("read file"));
        }
    }
    out
}

fn assert_refused(failure: &StartFailure) -> Vec<String> {
    assert_eq!(
        failure.status.and_then(|s| s.code()),
        Some(1),
        "serve should exit 1: {failure:#?}"
    );
    assert!(
        !failure.stderr.contains("panicked"),
        "no panic: {}",
        failure.stderr
    );
    failure
        .stderr
        .lines()
        .filter(|l| l.starts_with("  - "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn changed_schema_refuses_to_start_and_leaves_data_alone() {
    let original = example_schema();
    let env = Env::with_schema(&original);
    let s = env.start().await;
    let rec = s.create_post("before the change").await;
    s.stop().await;
    let before = snapshot_dir(&env.data_dir());
    assert!(
        crate::harness::on_postgres() || !before.is_empty(),
        "serve wrote a database into the data dir"
    );

    // Add a field and change a constraint.
    let changed = original
        .replace(
            "required = true, max_length = 200,",
            "required = true, max_length = 300,",
        )
        .replace(
            "meta         = { type = \"json\" }",
            "meta         = { type = \"json\" }\nsubtitle     = { type = \"text\" }",
        );
    assert!(changed.contains("max_length = 300") && changed.contains("subtitle"));
    env.write_schema(&changed);

    let failure = match env.try_start(&[]).await {
        Ok(_) => panic!("serve must refuse a schema that differs from the database"),
        Err(f) => f,
    };
    assert!(
        failure
            .stderr
            .contains("the schema file differs from the schema applied to the database:"),
        "stderr: {}",
        failure.stderr
    );
    let diffs = assert_refused(&failure);
    assert_eq!(diffs.len(), 2, "one line per difference: {diffs:#?}");
    assert!(
        diffs.iter().any(|d| d.contains("posts.subtitle")),
        "new field named: {diffs:#?}"
    );
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("posts.title") && d.contains("max_length")),
        "changed max_length named: {diffs:#?}"
    );
    assert_eq!(
        snapshot_dir(&env.data_dir()),
        before,
        "the data dir is untouched by a refused start"
    );

    // Removing a collection is a difference as well.
    let without_comments = original
        .split("[collections.comments]")
        .next()
        .expect("split")
        .to_owned();
    env.write_schema(&without_comments);
    let failure = match env.try_start(&[]).await {
        Ok(_) => panic!("serve must refuse a schema without a stored collection"),
        Err(f) => f,
    };
    let diffs = assert_refused(&failure);
    assert!(
        diffs.iter().any(|d| d.contains("comments")),
        "dropped collection named: {diffs:#?}"
    );
    assert_eq!(snapshot_dir(&env.data_dir()), before);

    // The original file still works, with the data intact.
    env.write_schema(&original);
    let s = env.start().await;
    assert_eq!(s.get(&item("posts", &rec)).await.ok(), rec);
    s.stop().await;
}

#[tokio::test]
async fn serve_with_an_invalid_schema_exits_1_with_diagnostics() {
    let env = Env::with_schema("[collections.posts.fields]\ntitle = { type = \"txt\" }\n");
    let failure = match env.try_start(&[]).await {
        Ok(_) => panic!("serve must refuse an invalid schema"),
        Err(f) => f,
    };
    assert_eq!(
        failure.status.and_then(|s| s.code()),
        Some(1),
        "{failure:#?}"
    );
    let path = env.schema_path();
    assert!(
        failure
            .stderr
            .contains(&format!("{}:2:18: error:", path.display())),
        "positioned diagnostic: {}",
        failure.stderr
    );
    assert!(!failure.stderr.contains("panicked"), "{}", failure.stderr);
}

#[tokio::test]
async fn serve_with_a_missing_schema_file_exits_1() {
    let env = Env::new();
    std::fs::remove_file(env.schema_path()).expect("remove schema");
    let failure = match env.try_start(&[]).await {
        Ok(_) => panic!("serve must refuse a missing schema file"),
        Err(f) => f,
    };
    assert_eq!(
        failure.status.and_then(|s| s.code()),
        Some(1),
        "{failure:#?}"
    );
    assert!(
        failure.stderr.contains("plinth.toml"),
        "names the file: {}",
        failure.stderr
    );
    assert!(!failure.stderr.contains("panicked"), "{}", failure.stderr);
}

#[tokio::test]
async fn first_start_creates_the_data_dir_and_is_ready() {
    if crate::harness::on_postgres() {
        eprintln!(
            "skipped on PostgreSQL: the data directory is only used by the embedded database"
        );
        return;
    }
    let env = Env::new();
    assert!(!env.data_dir().exists());
    let s = env.start().await;
    assert!(env.data_dir().is_dir(), "serve creates the data dir");
    s.get("/readyz").await.expect_status(200);
    s.stop().await;
    // A second start on the now-existing data dir with the same schema is fine.
    let s = env.start().await;
    s.get("/readyz").await.expect_status(200);
}

#[tokio::test]
async fn serve_takes_its_settings_from_the_environment() {
    let env = Env::new();
    let schema = env.schema_path().to_string_lossy().into_owned();
    let data = env.data_dir().to_string_lossy().into_owned();
    let s = env
        .try_start_raw(
            &["serve".to_owned()],
            &[
                ("PLINTH_SCHEMA", &schema),
                ("PLINTH_DATA_DIR", &data),
                ("PLINTH_LISTEN", "127.0.0.1:0"),
                ("PLINTH_LOG_FORMAT", "json"),
                ("PLINTH_MAX_BODY_BYTES", "1024"),
                ("PLINTH_CORS_ORIGINS", "https://app.example.com"),
                ("PLINTH_SHUTDOWN_TIMEOUT", "5"),
            ],
        )
        .await
        .unwrap_or_else(|f| panic!("serve configured by env did not start: {f:#?}"));
    let rec = s.create_post("from env").await;
    let r = s
        .post(
            "/v1/posts",
            &json!({ "title": "t", "body": "x".repeat(2000) }),
        )
        .await;
    crate::harness::assert_problem(&r, 413, "payload-too-large");
    let r = s
        .send(
            reqwest::Method::GET,
            "/healthz",
            &[("origin", "https://app.example.com")],
            None,
        )
        .await;
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    if !crate::harness::on_postgres() {
        assert!(env.data_dir().is_dir(), "PLINTH_DATA_DIR is used");
    }
    s.stop().await;
    // The same data, started with flags.
    let s = env.start().await;
    assert_eq!(s.get(&item("posts", &rec)).await.ok(), rec);
}

async fn expect_start_failure(env: &Env, extra: &[&str]) -> StartFailure {
    match env.try_start(extra).await {
        Ok(_) => panic!("serve {extra:?} should not start"),
        Err(f) => {
            assert!(!f.stderr.contains("panicked"), "no panic: {}", f.stderr);
            assert!(
                !f.stderr.trim().is_empty(),
                "explains the failure on stderr"
            );
            f
        }
    }
}

#[tokio::test]
async fn serve_exits_1_when_the_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let env = Env::new();
    let schema = env.schema_path().to_string_lossy().into_owned();
    let data = env.data_dir().to_string_lossy().into_owned();
    let args: Vec<String> = [
        "serve",
        "--schema",
        &schema,
        "--data-dir",
        &data,
        "--listen",
        &addr,
    ]
    .map(str::to_owned)
    .to_vec();
    let f = match env.try_start_raw(&args, &[]).await {
        Ok(_) => panic!("serve must not start on a taken port"),
        Err(f) => f,
    };
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{f:#?}");
    assert!(f.stderr.contains(&addr), "names the address: {}", f.stderr);
    drop(taken);
}

#[tokio::test]
async fn serve_exits_1_on_an_invalid_cors_origin() {
    let env = Env::new();
    for bad in ["*", "app.example.com", "https://app.example.com/"] {
        let f = expect_start_failure(&env, &["--cors-origins", bad]).await;
        assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{bad}: {f:#?}");
    }
}

#[tokio::test]
async fn serve_exits_1_when_the_data_dir_is_a_file() {
    if crate::harness::on_postgres() {
        eprintln!(
            "skipped on PostgreSQL: the data directory is only used by the embedded database"
        );
        return;
    }
    let env = Env::new();
    std::fs::write(env.data_dir(), b"not a directory").expect("write file");
    let f = expect_start_failure(&env, &[]).await;
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{f:#?}");
    assert_eq!(
        std::fs::read(env.data_dir()).expect("read"),
        b"not a directory",
        "the file is left alone"
    );
}

/// docs/api.md: `serve` exits 1 on a start-up error; a flag that cannot be
/// parsed is one.
#[tokio::test]
async fn serve_exits_2_on_an_unparseable_flag_value() {
    let env = Env::new();
    for extra in [
        ["--max-body-bytes", "lots"],
        ["--shutdown-timeout", "-1"],
        ["--shutdown-timeout", "soon"],
    ] {
        let f = expect_start_failure(&env, &extra).await;
        // A usage error: exit 2, as clap and most CLIs do (docs/api.md).
        assert_eq!(
            f.status.and_then(|s| s.code()),
            Some(2),
            "{extra:?}: {f:#?}"
        );
        assert!(
            f.stderr.contains(extra[0]) || f.stderr.contains(extra[1]),
            "names the flag or the value: {}",
            f.stderr
        );
    }
    assert!(!env.data_dir().exists(), "nothing was created");
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    if crate::harness::on_postgres() {
        eprintln!("skipped on PostgreSQL: several servers share one PostgreSQL database by design");
        return;
    }
    let env = Env::new();
    let first = env.start().await;
    let rec = first.create_post("kept").await;
    let f = expect_start_failure(&env, &[]).await;
    assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{f:#?}");
    assert!(
        f.stderr.contains("another Plinth process is using"),
        "{}",
        f.stderr
    );
    // The first server is unaffected.
    let path = format!("/v1/posts/{}", rec["id"].as_str().expect("id"));
    first.get(&path).await.expect_status(200);
    first.get("/readyz").await.expect_status(200);
}

#[tokio::test]
async fn explain_without_a_database_leaves_the_data_dir_alone() {
    if crate::harness::on_postgres() {
        eprintln!("skipped on PostgreSQL: plans are SQLite plans here");
        return;
    }
    let env = Env::new();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["explain", "--schema"])
        .arg(env.schema_path())
        .arg("--data-dir")
        .arg(env.data_dir())
        .args(["posts", "status = \"published\"", "-created_at"])
        .output()
        .expect("run explain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Served by an index."), "{stdout}");
    assert!(
        !env.data_dir().exists(),
        "explain created {}",
        env.data_dir().display()
    );
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["explain", "--schema"])
        .arg(env.schema_path())
        .arg("--data-dir")
        .arg(env.data_dir())
        .args(["posts", "views > 3", "-views"])
        .output()
        .expect("run explain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SCAN"), "{stdout}");
    assert!(stdout.contains(r#"fields = ["views"]"#), "{stdout}");
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_start_up_error_without_the_password() {
    let env = Env::new();
    for (url, says) in [
        (
            "postgres://bob:hunter2-secret@127.0.0.1:1/nowhere",
            "cannot open the database postgres://bob@127.0.0.1:1/nowhere",
        ),
        (
            "mysql://bob:hunter2-secret@127.0.0.1/db",
            "must be a postgres:// URL",
        ),
    ] {
        let f = expect_start_failure(&env, &["--database-url", url]).await;
        assert_eq!(f.status.and_then(|s| s.code()), Some(1), "{f:#?}");
        assert!(f.stderr.contains(says), "{}", f.stderr);
        assert!(
            !f.stderr.contains("hunter2"),
            "the password leaked: {}",
            f.stderr
        );
        assert!(
            f.stdout.iter().all(|l| !l.contains("hunter2")),
            "the password leaked: {:?}",
            f.stdout
        );
    }
}
