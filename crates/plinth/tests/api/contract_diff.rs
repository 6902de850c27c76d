//! `plinth contract diff`: exit codes, the three output formats, and the
//! `--schema/--against` form, against the real binary. The classification
//! rules themselves are tested in `plinth-contract/tests/contract_diff.rs`
//! with the fixtures used here.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{example_schema, run_cli};

fn fixture(name: &str, file: &str) -> String {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plinth-contract/tests/fixtures/contract-diff")
        .join(name)
        .join(file);
    assert!(p.exists(), "{} exists", p.display());
    p.to_str().expect("utf-8 path").to_owned()
}

async fn diff_fixture(name: &str, extra: &[&str]) -> crate::harness::CliOutput {
    let dir = tempfile::tempdir().expect("temp dir");
    let (old, new) = (fixture(name, "old.json"), fixture(name, "new.json"));
    let mut args = vec!["contract", "diff", old.as_str(), new.as_str()];
    args.extend_from_slice(extra);
    run_cli(&args, &[], dir.path()).await
}

#[tokio::test]
async fn identical_contracts_exit_0() {
    let out = diff_fixture("no-change", &[]).await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "No changes.\n");
    assert_eq!(out.stderr, "");
}

#[tokio::test]
async fn a_breaking_change_exits_1_with_a_text_report() {
    let out = diff_fixture("request-property-required", &[]).await;
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    assert!(
        out.stdout
            .starts_with("1 change: 1 breaking, 0 compatible, 0 info\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Breaking (1):"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("request-property-added-required  POST /v1/posts request body .slug"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("at new#/components/schemas/PostCreate/properties/slug"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stderr, "", "the report goes to stdout");
}

#[tokio::test]
async fn compatible_changes_exit_0() {
    let out = diff_fixture("request-property-optional", &[]).await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("Compatible (1):"), "{}", out.stdout);
    assert!(!out.stdout.contains("Breaking"), "{}", out.stdout);
    // Info only: still 0.
    let out = diff_fixture("docs-only", &[]).await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("Info ("), "{}", out.stdout);
}

#[tokio::test]
async fn json_format_is_machine_readable() {
    let out = diff_fixture("request-length", &["--format", "json"]).await;
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
    assert_eq!(report["summary"]["breaking"], 2);
    assert_eq!(report["summary"]["compatible"], 0);
    assert_eq!(report["summary"]["info"], 0);
    assert_eq!(report["summary"]["total"], 2);
    let mut codes: Vec<&str> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["code"].as_str().expect("code"))
        .collect();
    codes.sort_unstable();
    assert_eq!(
        codes,
        [
            "request-max-length-decreased",
            "request-min-length-increased"
        ]
    );
    let first = &report["changes"][0];
    assert_eq!(first["kind"], "breaking");
    assert_eq!(first["path"], "POST /v1/posts request body .title");
    assert_eq!(first["document"], "new");
    assert!(
        first["pointer"]
            .as_str()
            .is_some_and(|p| p.starts_with('/'))
    );

    // Empty diff: still a JSON document.
    let out = diff_fixture("no-change", &["--format", "json"]).await;
    assert_eq!(out.code, Some(0));
    let report: Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
    assert_eq!(report["summary"]["total"], 0);
    assert_eq!(report["changes"], serde_json::json!([]));
}

#[tokio::test]
async fn markdown_format_is_a_table() {
    let out = diff_fixture("response-enum-values", &["--format", "markdown"]).await;
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "### API contract diff");
    let header = lines
        .iter()
        .position(|l| *l == "| kind | code | where | change |")
        .unwrap_or_else(|| panic!("table header in:\n{}", out.stdout));
    assert_eq!(lines[header + 1], "|---|---|---|---|");
    assert!(
        lines[header + 2].starts_with(
            "| **breaking** | `response-enum-value-added` | `POST /v1/posts response 201 .status` |"
        ),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn schema_against_committed_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("plinth.toml"), example_schema()).expect("write schema");
    let out = run_cli(&["openapi", "--schema", "plinth.toml"], &[], d).await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    std::fs::write(d.join("openapi.json"), &out.stdout).expect("write contract");

    // Unchanged schema: no changes, with --schema and with the default path.
    for args in [
        &[
            "contract",
            "diff",
            "--schema",
            "plinth.toml",
            "--against",
            "openapi.json",
        ][..],
        &["contract", "diff", "--against", "openapi.json"][..],
    ] {
        let out = run_cli(args, &[], d).await;
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "No changes.\n", "{args:?}");
    }

    // A breaking edit in a schema named by PLINTH_SCHEMA.
    let edited = example_schema().replacen("max_length = 200", "max_length = 100", 1);
    std::fs::write(d.join("edited.toml"), edited).expect("write schema");
    let out = run_cli(
        &[
            "contract",
            "diff",
            "--against",
            "openapi.json",
            "--format",
            "json",
        ],
        &[("PLINTH_SCHEMA", "edited.toml")],
        d,
    )
    .await;
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
    assert_eq!(report["summary"]["breaking"], 2, "{}", out.stdout);
    assert_eq!(report["changes"][0]["code"], "request-max-length-decreased");
    assert_eq!(
        report["changes"][0]["path"],
        "POST /v1/posts request body .title"
    );

    // A compatible edit.
    let edited = example_schema().replacen("max_length = 200", "max_length = 300", 1);
    std::fs::write(d.join("edited.toml"), edited).expect("write schema");
    let out = run_cli(
        &[
            "contract",
            "diff",
            "--schema",
            "edited.toml",
            "--against",
            "openapi.json",
        ],
        &[],
        d,
    )
    .await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(
        out.stdout.contains("request-max-length-increased"),
        "{}",
        out.stdout
    );

    // With OLD and NEW given, PLINTH_SCHEMA is ignored.
    let out = run_cli(
        &["contract", "diff", "openapi.json", "openapi.json"],
        &[("PLINTH_SCHEMA", "edited.toml")],
        d,
    )
    .await;
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "No changes.\n");
}

#[tokio::test]
async fn an_invalid_schema_exits_1_with_its_diagnostics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(
        d.join("plinth.toml"),
        "[collections.posts.fields]\ntitle = { type = \"txt\" }\n",
    )
    .expect("write schema");
    let against = fixture("no-change", "old.json");
    let out = run_cli(&["contract", "diff", "--against", &against], &[], d).await;
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    assert!(
        out.stderr.starts_with("plinth.toml:2:"),
        "positioned diagnostic: {}",
        out.stderr
    );
    assert!(out.stderr.contains(": error: "), "{}", out.stderr);
    assert!(out.stderr.contains("  hint: "), "{}", out.stderr);
    assert_eq!(out.stdout, "", "no report for an invalid schema");
}

#[tokio::test]
async fn usage_and_input_errors_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("not-json.json"), "openapi: 3.1.0\n").expect("write");
    std::fs::write(d.join("swagger.json"), r#"{"swagger": "2.0", "paths": {}}"#).expect("write");
    std::fs::write(
        d.join("bad-ref.json"),
        r##"{"openapi": "3.1.0", "paths": {"/x": {"get": {"responses": {"200": {"$ref": "#/components/responses/Nope"}}}}}}"##,
    )
    .expect("write");
    std::fs::write(d.join("plinth.toml"), example_schema()).expect("write schema");
    let ok = fixture("no-change", "old.json");
    let ok = ok.as_str();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["contract", "diff"], "required"),
        (vec!["contract", "diff", ok], "<NEW>"),
        (
            vec!["contract", "diff", ok, ok, "--against", ok],
            "cannot be used with",
        ),
        (vec!["contract", "diff", ok, ok, "--format", "xml"], "xml"),
        (vec!["contract", "diff", "missing.json", ok], "missing.json"),
        (vec!["contract", "diff", ok, "missing.json"], "missing.json"),
        (
            vec!["contract", "diff", "not-json.json", ok],
            "not valid JSON",
        ),
        (vec!["contract", "diff", ok, "swagger.json"], "Swagger 2.0"),
        (
            vec!["contract", "diff", "bad-ref.json", ok],
            "does not resolve",
        ),
        (
            vec!["contract", "diff", "--against", "missing.json"],
            "missing.json",
        ),
        (
            vec![
                "contract",
                "diff",
                "--schema",
                "missing.toml",
                "--against",
                ok,
            ],
            "missing.toml",
        ),
    ];
    for (args, needle) in cases {
        let out = run_cli(&args, &[], d).await;
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("error"), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(needle),
            "{args:?}: stderr mentions {needle:?}: {}",
            out.stderr
        );
        assert_eq!(out.stdout, "", "{args:?}: no report");
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
    }
}
