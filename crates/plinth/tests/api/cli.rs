//! The one-shot commands: `plinth check` and `plinth openapi`.

use std::path::Path;

use serde_json::Value;

use crate::harness::{example_schema, example_schema_path, run_cli};

fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[tokio::test]
async fn check_accepts_the_example_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = example_schema_path();
    let out = run_cli(
        &["check", "--schema", path.to_str().expect("utf-8 path")],
        &[],
        dir.path(),
    )
    .await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(!out.stderr.contains("error:"), "stderr: {}", out.stderr);
    assert!(
        !dir.path().join("plinth-data").exists(),
        "check touches no data"
    );

    // The repository-relative form from the docs.
    let out = run_cli(
        &["check", "--schema", "examples/blog/plinth.toml"],
        &[],
        workspace_root(),
    )
    .await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
}

#[tokio::test]
async fn check_reads_the_schema_from_env_and_default_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = example_schema_path();
    let out = run_cli(
        &["check"],
        &[("PLINTH_SCHEMA", path.to_str().expect("utf-8 path"))],
        dir.path(),
    )
    .await;
    assert_eq!(out.code, Some(0), "PLINTH_SCHEMA: {}", out.stderr);

    // Without flag or env, `./plinth.toml`.
    std::fs::write(dir.path().join("plinth.toml"), example_schema()).expect("write");
    let out = run_cli(&["check"], &[], dir.path()).await;
    assert_eq!(out.code, Some(0), "default path: {}", out.stderr);
}

/// 1-based column of `needle` on `line` of `src`.
fn col_of(src: &str, line: usize, needle: &str) -> usize {
    let l = src.lines().nth(line - 1).expect("line exists");
    l.find(needle)
        .unwrap_or_else(|| panic!("{needle} on line {line}"))
        + 1
}

#[tokio::test]
async fn check_reports_each_mistake_with_position_and_hint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = r#"[collections.posts.fields]
title  = { type = "txt" }
status = { type = "enum", values = ["draft", "published"], default = "archived" }
author = { type = "relation", collection = "userz" }
"#;
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, src).expect("write");
    let p = path.to_str().expect("utf-8 path");
    let out = run_cli(&["check", "--schema", p], &[], dir.path()).await;
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);

    let expected = [
        (2, col_of(src, 2, "\"txt\""), "txt"),
        (3, col_of(src, 3, "\"archived\""), "archived"),
        (4, col_of(src, 4, "\"userz\""), "userz"),
    ];
    let lines: Vec<&str> = out.stderr.lines().collect();
    for (line, col, word) in expected {
        let prefix = format!("{p}:{line}:{col}: error:");
        let i = lines
            .iter()
            .position(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| {
                panic!(
                    "no line starting with {prefix:?} in stderr:\n{}",
                    out.stderr
                )
            });
        assert!(
            lines[i].contains(word),
            "message names {word:?}: {}",
            lines[i]
        );
        assert!(
            lines.get(i + 1).is_some_and(|h| h.starts_with("  hint: ")),
            "a hint follows {prefix:?}:\n{}",
            out.stderr
        );
    }
    let errors = lines.iter().filter(|l| l.contains(": error: ")).count();
    assert_eq!(errors, 3, "exactly the three mistakes:\n{}", out.stderr);
    assert!(
        out.stderr.contains("did you mean \"text\""),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[tokio::test]
async fn check_of_a_missing_file_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_cli(&["check", "--schema", "nope.toml"], &[], dir.path()).await;
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("nope.toml"),
        "names the file: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[tokio::test]
async fn openapi_command_prints_an_openapi_3_1_document() {
    let out = run_cli(
        &["openapi", "--schema", "examples/blog/plinth.toml"],
        &[],
        workspace_root(),
    )
    .await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", out.stdout));
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1"), "openapi = {version}");
    assert!(out.stdout.contains("\n  "), "pretty-printed");
    for p in [
        "/v1/posts",
        "/v1/posts/{id}",
        "/v1/comments",
        "/v1/comments/{id}",
    ] {
        assert!(doc["paths"].get(p).is_some(), "path {p} documented");
    }
}

#[tokio::test]
async fn openapi_command_with_an_invalid_schema_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[collections.posts.fields]\ntitle = { type = \"txt\" }\n",
    )
    .expect("write");
    let out = run_cli(
        &["openapi", "--schema", path.to_str().expect("utf-8 path")],
        &[],
        dir.path(),
    )
    .await;
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    assert!(
        out.stdout.trim().is_empty(),
        "no document on stdout: {}",
        out.stdout
    );
    assert!(out.stderr.contains("error:"), "{}", out.stderr);
}
