//! `plinth migrate`: planned schema changes on both databases.

use serde_json::json;

use crate::harness::{CliOutput, Env, example_schema, on_postgres, run_cli};

async fn migrate(env: &Env, args: &[&str]) -> CliOutput {
    let schema = env.schema_path();
    let data = env.data_dir();
    let mut all = vec!["migrate"];
    all.extend_from_slice(args);
    all.extend([
        "--schema",
        schema.to_str().expect("utf-8"),
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    let envs: Vec<(&str, &str)> = env
        .database_url()
        .map(|u| vec![("PLINTH_DATABASE_URL", u)])
        .unwrap_or_default();
    run_cli(&all, &envs, env.dir()).await
}

/// The example schema with `body` renamed and two fields added.
fn v2() -> String {
    example_schema().replace(
        "body         = { type = \"text\" }",
        "content      = { type = \"text\", renamed_from = \"body\" }\nsubtitle     = { type = \"text\" }\nscore        = { type = \"integer\", required = true, default = 5 }",
    )
}

#[tokio::test]
async fn plan_then_apply_keeps_the_data_and_serve_runs_the_new_schema() {
    let env = Env::new();
    let s = env.start().await;
    let rec = s
        .create("posts", &json!({"title": "kept", "body": "the body"}))
        .await;
    s.stop().await;

    env.write_schema(&v2());
    // serve refuses and says what to run.
    let refused = env.try_start(&[]).await.err().expect("refused");
    assert!(
        refused.stderr.contains("plinth migrate plan"),
        "{}",
        refused.stderr
    );

    let plan = migrate(&env, &["plan"]).await;
    assert_eq!(plan.code, Some(0), "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains("[safe, reversible] rename field `posts.body` to `content`"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("RENAME COLUMN \"body\" TO \"content\""),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("[safe, reversible] add field `posts.score` (integer)"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("DEFAULT 5"), "{}", plan.stdout);

    let applied = migrate(&env, &["apply"]).await;
    assert_eq!(
        applied.code,
        Some(0),
        "{}{}",
        applied.stdout,
        applied.stderr
    );
    assert!(
        applied.stdout.contains("schema version 2"),
        "{}",
        applied.stdout
    );

    let s = env.start().await;
    let got = s
        .get(&format!("/v1/posts/{}", rec["id"].as_str().expect("id")))
        .await
        .ok();
    assert_eq!(got["content"], "the body");
    assert_eq!(got["score"], 5);
    assert_eq!(got["subtitle"], serde_json::Value::Null);
    assert!(got.get("body").is_none());
    s.stop().await;

    let history = migrate(&env, &["history"]).await;
    assert!(history.stdout.contains("version 2"), "{}", history.stdout);
    assert!(history.stdout.contains("sha256:"), "{}", history.stdout);
    let again = migrate(&env, &["plan"]).await;
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
}

#[tokio::test]
async fn destructive_steps_need_the_flag_and_blocked_steps_never_run() {
    let env = Env::new();
    let s = env.start().await;
    s.create("posts", &json!({"title": "same"})).await;
    s.create("posts", &json!({"title": "same"})).await;
    s.stop().await;

    // Dropping a field: destructive.
    env.write_schema(&example_schema().replace("body         = { type = \"text\" }\n", ""));
    let r = migrate(&env, &["apply"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("destructive"), "{}", r.stderr);
    let r = migrate(&env, &["apply", "--allow-destructive"]).await;
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);

    // A unique index over duplicate titles: blocked by the data.
    let with_index = format!(
        "{}\n[[collections.posts.indexes]]\nfields = [\"title\"]\nunique = true\n",
        example_schema().replace("body         = { type = \"text\" }\n", "")
    );
    env.write_schema(&with_index);
    let r = migrate(&env, &["apply"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("BLOCKED: records of `posts` already share values of (title)"),
        "{}",
        r.stdout
    );
    let status = migrate(&env, &["status"]).await;
    assert!(
        status.stdout.contains("schema version 2"),
        "{}",
        status.stdout
    );

    // A type change cannot be planned.
    env.write_schema(&example_schema().replace(
        "views        = { type = \"integer\", min = 0, default = 0 }",
        "views        = { type = \"text\" }",
    ));
    let r = migrate(&env, &["plan"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("needs a table rebuild"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_applies_at_once_apply_once() {
    if !on_postgres() {
        eprintln!("skipped on SQLite: the data-directory lock admits one process");
        return;
    }
    let env = Env::new();
    env.start().await.stop().await;
    env.write_schema(&v2());
    let (a, b) = tokio::join!(migrate(&env, &["apply"]), migrate(&env, &["apply"]));
    let ok = [&a, &b].iter().filter(|o| o.code == Some(0)).count();
    assert!(ok >= 1, "{}{}{}{}", a.stdout, a.stderr, b.stdout, b.stderr);
    let applied = [&a, &b]
        .iter()
        .filter(|o| o.stdout.contains("Applied"))
        .count();
    assert_eq!(
        applied, 1,
        "{}{}{}{}",
        a.stdout, a.stderr, b.stdout, b.stderr
    );
    let history = migrate(&env, &["history"]).await;
    assert_eq!(
        history.stdout.matches("version ").count(),
        1,
        "{}",
        history.stdout
    );
}

#[tokio::test]
async fn rollback_plans_the_way_back_and_renames_back() {
    let env = Env::new();
    let s = env.start().await;
    let rec = s
        .create(
            "posts",
            &json!({"title": "t", "body": "kept through both ways"}),
        )
        .await;
    s.stop().await;
    env.write_schema(&v2());
    let r = migrate(&env, &["apply"]).await;
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);

    // Going back drops the added fields: destructive, so it needs the flag.
    let r = migrate(&env, &["rollback"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("rename field `posts.content` to `body`"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "[destructive, irreversible: the data is not restored] drop field `posts.score`"
        ),
        "{}",
        r.stdout
    );
    let r = migrate(&env, &["rollback", "--allow-destructive"]).await;
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("schema version 3"), "{}", r.stdout);

    env.write_schema(&example_schema());
    let s = env.start().await;
    let got = s
        .get(&format!("/v1/posts/{}", rec["id"].as_str().expect("id")))
        .await
        .ok();
    assert_eq!(got["body"], "kept through both ways");
    s.stop().await;
}

#[tokio::test]
async fn serve_migrate_safe_applies_only_safe_plans() {
    let env = Env::new();
    env.start().await.stop().await;
    // An added optional field is safe: applied at start.
    let added = example_schema().replace(
        "body         = { type = \"text\" }",
        "body         = { type = \"text\" }\nsummary      = { type = \"text\" }",
    );
    env.write_schema(&added);
    let s = env.start_with(&["--migrate", "safe"]).await;
    let rec = s
        .create("posts", &json!({"title": "t", "summary": "s"}))
        .await;
    assert_eq!(rec["summary"], "s");
    s.stop().await;
    // A dropped field is not: serve refuses as without the flag.
    env.write_schema(&example_schema());
    let f = env
        .try_start(&["--migrate", "safe"])
        .await
        .err()
        .expect("refused");
    assert!(
        f.stderr
            .contains("exists in the database but not in the schema file"),
        "{}",
        f.stderr
    );
}

#[tokio::test]
async fn changes_made_by_hand_are_reported_as_drift() {
    let env = Env::new();
    env.start().await.stop().await;
    let sql = "ALTER TABLE posts ADD COLUMN sneaky TEXT; DROP INDEX posts_status_created_at_idx;";
    let out = match env.database_url() {
        Some(url) => std::process::Command::new("psql")
            .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
            .output()
            .expect("psql"),
        None => std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()",
            ])
            .arg(env.data_dir().join("plinth.db"))
            .arg(sql)
            .output()
            .expect("python3"),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = migrate(&env, &["plan"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("column `posts.sneaky` is not in the recorded schema"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("index `posts_status_created_at_idx` is missing"),
        "{}",
        r.stderr
    );
    let status = migrate(&env, &["status"]).await;
    assert!(
        status.stdout.contains("drift: column `posts.sneaky`"),
        "{}",
        status.stdout
    );
}
