//! `plinth migrate`: planned schema changes on both databases.

use serde_json::json;

use crate::harness::{CliOutput, Env, Server, example_schema, on_postgres, run_cli};

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

/// `schema` with `from` replaced by `to` (which must be there).
fn edit(schema: &str, from: &str, to: &str) -> String {
    assert!(schema.contains(from), "`{from}` is not in the schema");
    schema.replace(from, to)
}

/// The label of a step that scans or rewrites a table: it holds a lock on
/// PostgreSQL; SQLite migrates with the server stopped.
fn rewrite() -> &'static str {
    if on_postgres() { "locking" } else { "safe" }
}

fn id(record: &serde_json::Value) -> &str {
    record["id"].as_str().expect("id")
}

fn item(collection: &str, record: &serde_json::Value) -> String {
    format!("/v1/{collection}/{}", id(record))
}

/// Plans (asserting the exit code), returning stdout.
async fn plan(env: &Env, code: i32) -> String {
    let r = migrate(env, &["plan"]).await;
    assert_eq!(r.code, Some(code), "{}{}", r.stdout, r.stderr);
    r.stdout
}

async fn apply(env: &Env, args: &[&str]) -> CliOutput {
    let mut all = vec!["apply"];
    all.extend_from_slice(args);
    let r = migrate(env, &all).await;
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    // The live tables are what a fresh database of the schema has.
    let status = migrate(env, &["status"]).await;
    assert!(!status.stdout.contains("drift"), "{}", status.stdout);
    assert!(status.stdout.contains("up to date"), "{}", status.stdout);
    r
}

fn has(out: &str, needle: &str) {
    assert!(out.contains(needle), "`{needle}` not in:\n{out}");
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
        r.stdout.contains(
            "BLOCKED: 2 records of `posts` share their values of (title) with another record"
        ),
        "{}",
        r.stdout
    );
    let status = migrate(&env, &["status"]).await;
    assert!(
        status.stdout.contains("schema version 2"),
        "{}",
        status.stdout
    );

    // A type change without a sensible conversion cannot be planned.
    env.write_schema(&edit(
        &example_schema(),
        "featured     = { type = \"boolean\", default = false }",
        "featured     = { type = \"integer\" }",
    ));
    let r = migrate(&env, &["plan"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("changing its type from boolean to integer is not supported"),
        "{}",
        r.stderr
    );
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

async fn rollback(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["rollback"];
    all.extend_from_slice(args);
    let r = migrate(env, &all).await;
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let status = migrate(env, &["status"]).await;
    assert!(!status.stdout.contains("drift"), "{}", status.stdout);
    r.stdout
}

const RATING: &str = "rating       = { type = \"number\", min = 0, max = 5 }";

#[tokio::test]
async fn a_narrowing_applies_when_every_value_converts_and_rolls_back_as_a_widening() {
    let env = Env::new();
    let s = env.start().await;
    let two = s
        .create("posts", &json!({"title": "two", "rating": 2}))
        .await;
    s.create("posts", &json!({"title": "four", "rating": 4.0}))
        .await;
    s.create("posts", &json!({"title": "none"})).await;
    s.create("comments", &json!({"post": id(&two), "body": "on two"}))
        .await;
    s.stop().await;

    let narrowed = edit(
        &example_schema(),
        RATING,
        "rating       = { type = \"integer\", min = 0, max = 5 }",
    );
    env.write_schema(&narrowed);
    let out = plan(&env, 0).await;
    has(
        &out,
        &format!(
            "[{}, reversible] alter field `posts.rating`: type number → integer (narrowing)",
            rewrite()
        ),
    );
    has(
        &out,
        "check: 0 records of `posts` have a `rating` value that is not an integer",
    );
    if on_postgres() {
        has(
            &out,
            "ALTER TABLE \"posts\" ALTER COLUMN \"rating\" TYPE bigint USING \"rating\"::bigint;",
        );
    } else {
        has(&out, "CREATE TABLE \"posts__new\"");
        has(&out, "CAST(\"rating\" AS INTEGER)");
        has(&out, "ALTER TABLE \"posts__new\" RENAME TO \"posts\";");
    }
    apply(&env, &[]).await;

    let s = env.start().await;
    let got = s.get(&item("posts", &two)).await.ok();
    assert!(got["rating"].is_i64(), "{got}");
    assert_eq!(got["rating"], 2);
    let three = s
        .create("posts", &json!({"title": "three", "rating": 3}))
        .await;
    assert_eq!(three["rating"], 3);
    s.post("/v1/posts", &json!({"title": "half", "rating": 2.5}))
        .await
        .expect_status(422);
    // Comments still refer to the rebuilt posts.
    s.delete(&item("posts", &two)).await.expect_status(409);
    s.stop().await;

    // Back: a widening, safe on both databases.
    let out = rollback(&env, &[]).await;
    has(
        &out,
        "alter field `posts.rating`: type integer → number (widening)",
    );
    env.write_schema(&example_schema());
    let s = env.start().await;
    let got = s.get(&item("posts", &two)).await.ok();
    assert!(got["rating"].is_f64(), "{got}");
    assert_eq!(got["rating"].as_f64(), Some(2.0));
    s.stop().await;
}

#[tokio::test]
async fn a_narrowing_refused_by_the_data_changes_nothing() {
    let env = Env::new();
    let s = env.start().await;
    let good = s
        .create("posts", &json!({"title": "a", "body": "12"}))
        .await;
    let words = s
        .create("posts", &json!({"title": "b", "body": "twelve"}))
        .await;
    let half = s
        .create("posts", &json!({"title": "c", "body": "3.5"}))
        .await;
    let none = s.create("posts", &json!({"title": "d"})).await;
    s.stop().await;

    env.write_schema(&edit(
        &example_schema(),
        "body         = { type = \"text\" }",
        "body         = { type = \"integer\", required = true }",
    ));
    let out = plan(&env, 1).await;
    has(
        &out,
        &format!(
            "BLOCKED: 1 record of `posts` has no `body` value (e.g. {})",
            id(&none)
        ),
    );
    has(
        &out,
        &format!(
            "BLOCKED: 2 records of `posts` have a `body` value that is not an integer (e.g. {}, {}); change or clear those values first",
            id(&words),
            id(&half)
        ),
    );
    let r = migrate(&env, &["apply"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    has(&r.stderr, "1 step(s) are blocked");
    let status = migrate(&env, &["status"]).await;
    has(&status.stdout, "schema version 1 ");
    let history = migrate(&env, &["history"]).await;
    has(&history.stdout, "no migrations applied");

    // The old schema still serves the untouched records.
    env.write_schema(&example_schema());
    let s = env.start().await;
    assert_eq!(s.get(&item("posts", &good)).await.ok()["body"], "12");
    assert_eq!(s.get(&item("posts", &half)).await.ok()["body"], "3.5");
    s.stop().await;
}

#[tokio::test]
async fn making_a_field_required_needs_a_value_in_every_record_or_a_default() {
    let env = Env::new();
    let s = env.start().await;
    let with = s.create("posts", &json!({"title": "a", "body": "b"})).await;
    let without = s.create("posts", &json!({"title": "c"})).await;
    s.stop().await;

    let body = "body         = { type = \"text\" }";
    env.write_schema(&edit(
        &example_schema(),
        body,
        "body         = { type = \"text\", required = true }",
    ));
    let out = plan(&env, 1).await;
    has(
        &out,
        "[needs-backfill, reversible] alter field `posts.body`: now required",
    );
    has(
        &out,
        &format!(
            "BLOCKED: 1 record of `posts` has no `body` value (e.g. {}); give them a value (or declare a `default`) first",
            id(&without)
        ),
    );

    env.write_schema(&edit(
        &example_schema(),
        body,
        "body         = { type = \"text\", required = true, default = \"(empty)\" }",
    ));
    let out = plan(&env, 0).await;
    has(
        &out,
        "[needs-backfill, irreversible: records backfilled with the default keep it] alter field `posts.body`: now required",
    );
    has(
        &out,
        &format!(
            "check: 1 record of `posts` has no `body` value (e.g. {}); the step sets them to the default \"(empty)\"",
            id(&without)
        ),
    );
    if on_postgres() {
        has(
            &out,
            "UPDATE \"posts\" SET \"body\" = '(empty)' WHERE \"body\" IS NULL;",
        );
        has(&out, "ALTER COLUMN \"body\" SET NOT NULL;");
    } else {
        has(&out, "coalesce(\"body\", '(empty)')");
    }
    apply(&env, &[]).await;

    let s = env.start().await;
    assert_eq!(
        s.get(&item("posts", &without)).await.ok()["body"],
        "(empty)"
    );
    assert_eq!(s.get(&item("posts", &with)).await.ok()["body"], "b");
    assert_eq!(
        s.create("posts", &json!({"title": "new"})).await["body"],
        "(empty)"
    );
    s.patch(&item("posts", &with), &json!({"body": null}))
        .await
        .expect_status(422);
    s.stop().await;

    let out = rollback(&env, &[]).await;
    has(
        &out,
        "[safe, reversible] alter field `posts.body`: no longer required",
    );
    env.write_schema(&example_schema());
    let s = env.start().await;
    let cleared = s
        .patch(&item("posts", &with), &json!({"body": null}))
        .await
        .ok();
    assert_eq!(cleared["body"], serde_json::Value::Null);
    s.stop().await;
}

#[tokio::test]
async fn a_unique_field_over_duplicates_is_blocked_and_over_clean_data_enforced() {
    let env = Env::new();
    let s = env.start().await;
    let first = s.create_post("same").await;
    let second = s.create_post("same").await;
    s.create_post("other").await;
    s.stop().await;

    let unique = edit(
        &example_schema(),
        "title        = { type = \"text\", required = true, max_length = 200,",
        "title        = { type = \"text\", required = true, unique = true, max_length = 200,",
    );
    env.write_schema(&unique);
    let out = plan(&env, 1).await;
    has(
        &out,
        &format!(
            "BLOCKED: 2 records of `posts` share their `title` value with another record (e.g. {}, {}); make them differ first",
            id(&first),
            id(&second)
        ),
    );

    // Fixed on the old schema, then applied.
    env.write_schema(&example_schema());
    let s = env.start().await;
    s.patch(&item("posts", &second), &json!({"title": "different"}))
        .await
        .ok();
    s.stop().await;
    env.write_schema(&unique);
    let out = plan(&env, 0).await;
    has(
        &out,
        &format!(
            "[{}, reversible] alter field `posts.title`: now unique",
            rewrite()
        ),
    );
    has(
        &out,
        "check: 0 records of `posts` share their `title` value with another record",
    );
    apply(&env, &[]).await;
    let s = env.start().await;
    let r = s.post("/v1/posts", &json!({"title": "other"})).await;
    r.expect_status(409);
    assert_eq!(r.json()["errors"][0]["field"], "title");
    s.stop().await;

    let out = rollback(&env, &[]).await;
    has(
        &out,
        "[safe, reversible] alter field `posts.title`: no longer unique",
    );
    env.write_schema(&example_schema());
    let s = env.start().await;
    s.create_post("other").await;
    s.stop().await;
}

const STATUS: &str =
    "status       = { type = \"enum\", values = [\"draft\", \"published\"], default = \"draft\" }";

fn statuses(values: &str) -> String {
    edit(
        &example_schema(),
        STATUS,
        &format!("status       = {{ type = \"enum\", values = [{values}], default = \"draft\" }}"),
    )
}

#[tokio::test]
async fn enum_values_in_use_cannot_be_removed_and_new_ones_are_added() {
    let env = Env::new();
    let s = env.start().await;
    let published = s
        .create("posts", &json!({"title": "p", "status": "published"}))
        .await;
    s.create_post("d").await;
    s.stop().await;

    env.write_schema(&statuses("\"draft\", \"archived\""));
    let out = plan(&env, 1).await;
    has(
        &out,
        &format!(
            "BLOCKED: 1 record of `posts` has a `status` value that is not one of draft, archived (e.g. {}) [by value: \"published\" ×1]",
            id(&published)
        ),
    );

    env.write_schema(&statuses("\"draft\", \"published\", \"archived\""));
    let out = plan(&env, 0).await;
    has(
        &out,
        &format!(
            "[{}, reversible] alter field `posts.status`: enum values +archived",
            rewrite()
        ),
    );
    apply(&env, &[]).await;
    let s = env.start().await;
    let archived = s
        .create("posts", &json!({"title": "a", "status": "archived"}))
        .await;
    s.stop().await;

    // Removing it again: refused while a record uses it, applied once none does.
    env.write_schema(&example_schema());
    let out = plan(&env, 1).await;
    has(&out, "[by value: \"archived\" ×1]");
    env.write_schema(&statuses("\"draft\", \"published\", \"archived\""));
    let s = env.start().await;
    s.patch(&item("posts", &archived), &json!({"status": "draft"}))
        .await
        .ok();
    s.stop().await;
    env.write_schema(&example_schema());
    let out = plan(&env, 0).await;
    has(
        &out,
        "check: 0 records of `posts` have a `status` value that is not one of draft, published",
    );
    apply(&env, &[]).await;
    let s = env.start().await;
    s.post("/v1/posts", &json!({"title": "x", "status": "archived"}))
        .await
        .expect_status(422);
    s.stop().await;
}

const PEOPLE: &str = r#"
[collections.authors]
permissions = "public"
[collections.authors.fields]
name = { type = "text" }

[collections.editors]
permissions = "public"
[collections.editors.fields]
name = { type = "text" }

[collections.notes]
permissions = "public"
[collections.notes.fields]
by = { type = "relation", collection = "authors" }
"#;

#[tokio::test]
async fn a_relation_moves_to_another_collection_when_every_value_exists_there() {
    let env = Env::with_schema(PEOPLE);
    let s = env.start().await;
    let author = s.create("authors", &json!({"name": "a"})).await;
    let editor = s.create("editors", &json!({"name": "e"})).await;
    let note = s.create("notes", &json!({"by": id(&author)})).await;
    s.stop().await;

    let moved = edit(
        PEOPLE,
        "by = { type = \"relation\", collection = \"authors\" }",
        "by = { type = \"relation\", collection = \"editors\" }",
    );
    env.write_schema(&moved);
    let out = plan(&env, 1).await;
    has(
        &out,
        "alter field `notes.by`: relation target authors → editors",
    );
    has(
        &out,
        &format!(
            "BLOCKED: 1 record of `notes` has a `by` value that is no record of `editors` (e.g. {})",
            id(&note)
        ),
    );

    env.write_schema(PEOPLE);
    let s = env.start().await;
    s.patch(&item("notes", &note), &json!({"by": null}))
        .await
        .ok();
    s.stop().await;
    env.write_schema(&moved);
    let out = plan(&env, 0).await;
    if on_postgres() {
        has(&out, "DROP CONSTRAINT \"notes_by_fkey\"");
        has(
            &out,
            "ADD FOREIGN KEY (\"by\") REFERENCES \"editors\" (\"id\") ON DELETE RESTRICT",
        );
    } else {
        has(
            &out,
            "FOREIGN KEY (\"by\") REFERENCES \"editors\" (\"id\") ON DELETE RESTRICT",
        );
    }
    apply(&env, &[]).await;

    let s = env.start().await;
    s.create("notes", &json!({"by": id(&editor)})).await;
    s.post("/v1/notes", &json!({"by": id(&author)}))
        .await
        .expect_status(422);
    s.delete(&item("editors", &editor)).await.expect_status(409);
    s.delete(&item("authors", &author)).await.expect_status(204);
    s.stop().await;

    // Going back is checked like any retarget: the new note points at an editor.
    let r = migrate(&env, &["rollback"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    has(
        &r.stdout,
        "BLOCKED: 1 record of `notes` has a `by` value that is no record of `authors`",
    );
}

async fn started_with_posts_and_comments(
    env: &Env,
) -> (Server, serde_json::Value, serde_json::Value) {
    let s = env.start().await;
    let post = s
        .create(
            "posts",
            &json!({"title": "t", "slug": "a-b", "body": "kept"}),
        )
        .await;
    let comment = s
        .create("comments", &json!({"post": id(&post), "body": "c"}))
        .await;
    (s, post, comment)
}

#[tokio::test]
async fn unique_and_relation_columns_are_dropped_on_every_database() {
    let env = Env::new();
    let (s, post, comment) = started_with_posts_and_comments(&env).await;
    s.stop().await;

    let dropped = edit(
        &edit(
            &example_schema(),
            "slug         = { type = \"text\", unique = true, pattern = \"^[a-z0-9]+(-[a-z0-9]+)*$\", max_length = 120 }\n",
            "",
        ),
        "post = { type = \"relation\", collection = \"posts\", required = true }\n",
        "",
    );
    let dropped = edit(
        &dropped,
        "[[collections.comments.indexes]]\nfields = [\"post\", \"created_at\"]\n",
        "",
    );
    env.write_schema(&dropped);
    let out = plan(&env, 0).await;
    has(
        &out,
        "[destructive, irreversible: the data is not restored] drop field `posts.slug`",
    );
    has(
        &out,
        "[destructive, irreversible: the data is not restored] drop field `comments.post`",
    );
    if !on_postgres() {
        // SQLite cannot drop those columns: both tables are rebuilt.
        has(&out, "CREATE TABLE \"posts__new\"");
        has(&out, "CREATE TABLE \"comments__new\"");
    }
    let r = migrate(&env, &["apply"]).await;
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    apply(&env, &["--allow-destructive"]).await;

    let s = env.start().await;
    let got = s.get(&item("posts", &post)).await.ok();
    assert_eq!(got["body"], "kept");
    assert!(got.get("slug").is_none(), "{got}");
    let got = s.get(&item("comments", &comment)).await.ok();
    assert_eq!(got["body"], "c");
    assert!(got.get("post").is_none(), "{got}");
    // Nothing refers to the post any more; two posts may share what was a slug.
    s.delete(&item("posts", &post)).await.expect_status(204);
    s.stop().await;
}

#[tokio::test]
async fn unique_and_required_relation_fields_are_added() {
    let env = Env::new();
    let s = env.start().await;
    let post = s.create_post("p").await;
    s.stop().await;

    let editors = "\n[collections.editors]\npermissions = \"public\"\n[collections.editors.fields]\nname = { type = \"text\" }\n";
    let with_code = edit(
        &example_schema(),
        "body         = { type = \"text\" }",
        "body         = { type = \"text\" }\ncode         = { type = \"text\", unique = true }",
    );
    // A required relation cannot be added to posts, which has a record...
    env.write_schema(&format!(
        "{}{editors}",
        edit(
            &with_code,
            "body         = { type = \"text\" }",
            "body         = { type = \"text\" }\neditor       = { type = \"relation\", collection = \"editors\", required = true }",
        )
    ));
    let out = plan(&env, 1).await;
    has(
        &out,
        "[needs-backfill, reversible] add field `posts.editor` (relation)",
    );
    has(
        &out,
        "BLOCKED: 1 record of `posts` exists, and `editor` is required without a default",
    );
    // ...but to comments, which has none.
    let wanted = format!(
        "{}{editors}",
        edit(
            &with_code,
            "body = { type = \"text\", required = true, min_length = 1, max_length = 5000 }",
            "body = { type = \"text\", required = true, min_length = 1, max_length = 5000 }\neditor = { type = \"relation\", collection = \"editors\", required = true }",
        )
    );
    env.write_schema(&wanted);
    let out = plan(&env, 0).await;
    has(&out, "add field `posts.code` (text)");
    has(
        &out,
        "check: 0 records of `comments` exist, and `editor` is required without a default",
    );
    apply(&env, &[]).await;

    let s = env.start().await;
    s.patch(&item("posts", &post), &json!({"code": "x"}))
        .await
        .ok();
    s.post("/v1/posts", &json!({"title": "q", "code": "x"}))
        .await
        .expect_status(409);
    let editor = s.create("editors", &json!({"name": "e"})).await;
    s.create(
        "comments",
        &json!({"post": id(&post), "body": "b", "editor": id(&editor)}),
    )
    .await;
    s.post("/v1/comments", &json!({"post": id(&post), "body": "b"}))
        .await
        .expect_status(422);
    s.delete(&item("editors", &editor)).await.expect_status(409);
    s.stop().await;
}

#[tokio::test]
async fn relation_indexes_follow_renames_and_covering_indexes() {
    let env = Env::with_schema(PEOPLE);
    let s = env.start().await;
    let author = s.create("authors", &json!({"name": "a"})).await;
    let note = s.create("notes", &json!({"by": id(&author)})).await;
    s.stop().await;

    // The index of a renamed relation field takes the new name.
    let renamed = edit(
        PEOPLE,
        "by = { type = \"relation\", collection = \"authors\" }",
        "author = { type = \"relation\", collection = \"authors\", renamed_from = \"by\" }",
    );
    env.write_schema(&renamed);
    let out = plan(&env, 0).await;
    has(&out, "DROP INDEX \"notes_by_idx\";");
    has(&out, "CREATE INDEX \"notes_author_idx\"");
    apply(&env, &[]).await;

    // A declared index that starts with the field makes its own index redundant.
    let covered = format!(
        "{renamed}\n[[collections.notes.indexes]]\nfields = [\"author\", \"created_at\"]\n"
    );
    env.write_schema(&covered);
    let out = plan(&env, 0).await;
    has(&out, "DROP INDEX \"notes_author_idx\";");
    apply(&env, &[]).await;
    env.write_schema(&renamed);
    let out = plan(&env, 0).await;
    has(&out, "CREATE INDEX \"notes_author_idx\"");
    apply(&env, &[]).await;

    let s = env.start().await;
    assert_eq!(
        s.get(&item("notes", &note)).await.ok()["author"],
        id(&author)
    );
    s.delete(&item("authors", &author)).await.expect_status(409);
    s.stop().await;
}

const TENANTED: &str = r#"
[roles.editor]

[collections.pages]
tenant_scoped = true

[collections.pages.permissions]
list = ["owner", "admin", "editor"]
read = ["owner", "admin", "editor"]
create = ["owner", "admin"]

[collections.pages.fields]
title = { type = "text", required = true }
code = { type = "text" }
"#;

#[tokio::test]
async fn permission_and_role_changes_are_contract_steps_and_tenancy_changes_are_refused() {
    let env = Env::with_schema(TENANTED);
    env.start().await.stop().await;
    // Permissions and roles: no SQL, but recorded like any change.
    env.write_schema(&edit(
        &edit(
            TENANTED,
            "[roles.editor]\n",
            "[roles.editor]\n[roles.auditor]\n",
        ),
        "create = [\"owner\", \"admin\"]",
        "create = [\"owner\", \"admin\", \"editor\"]\ndelete = [\"owner\"]",
    ));
    let out = plan(&env, 0).await;
    assert!(
        out.contains("permission `create` changed (contract only, no SQL)"),
        "{out}"
    );
    assert!(out.contains("permission `delete` changed"), "{out}");
    assert!(out.contains("custom roles changed"), "{out}");
    apply(&env, &[]).await;
    env.start().await.stop().await;
    // A unique field of a tenant-scoped collection is added (unique per tenant)
    // and the rebuilt table keeps its tenant column.
    let with_unique = edit(
        &std::fs::read_to_string(env.schema_path()).expect("schema"),
        "code = { type = \"text\" }",
        "code = { type = \"text\", unique = true }",
    );
    env.write_schema(&with_unique);
    plan(&env, 0).await;
    apply(&env, &[]).await;
    // Tenancy cannot be switched by a migration.
    env.write_schema(&edit(&with_unique, "tenant_scoped = true\n", ""));
    let r = migrate(&env, &["plan"]).await;
    assert_ne!(r.code, Some(0));
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("tenant_scoped"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}
