//! Tests of the API-drift guard (`plinth_contract::diff`, behind
//! `plinth contract diff`).
//!
//! - Fixture pairs under `tests/fixtures/contract-diff/NAME/` (`old.json`,
//!   `new.json`, `expected.json`): each is diffed forward (old → new) and
//!   backward (new → old), and the exact list of (kind, code, path) must match
//!   `expected.json` (plus the pointer and the other places, where given).
//!   Together the fixtures exercise every code in `RULES`.
//! - Contracts generated from `examples/blog/plinth.toml` and from edited
//!   versions of it, as a team would change their schema.
//! - Output formats, errors, and `$ref` edge cases.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use plinth_contract::diff::{ContractDiff, DiffError, Document, Kind, RULES, diff, rule_for};
use plinth_contract::openapi;
use plinth_domain::parse_schema;

// ---- fixtures -------------------------------------------------------------------------------

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/contract-diff")
}

fn read_json(path: &Path) -> Json {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn show_changes(d: &ContractDiff) -> String {
    d.changes
        .iter()
        .map(|c| {
            format!(
                "  {} {} | {} | {}#{} | {} | also {:?}",
                c.kind, c.code, c.path, c.document, c.pointer, c.message, c.also
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks one direction of a fixture against its expectation.
fn check(name: &str, direction: &str, d: &ContractDiff, expected: &[Json]) {
    let context = || {
        format!(
            "fixture {name} ({direction}); actual changes:\n{}",
            show_changes(d)
        )
    };
    for c in &d.changes {
        let rule = rule_for(c.code).unwrap_or_else(|| panic!("unknown code {}", c.code));
        assert_eq!(c.kind, rule.kind, "kind of {} follows RULES", c.code);
        assert!(!c.message.is_empty(), "{} has a message", c.code);
        assert!(
            c.pointer.is_empty() || c.pointer.starts_with('/'),
            "{} pointer {:?} is a JSON pointer",
            c.code,
            c.pointer
        );
    }
    let mut actual: Vec<(String, String, String)> = d
        .changes
        .iter()
        .map(|c| (c.kind.to_string(), c.code.to_owned(), c.path.clone()))
        .collect();
    let mut wanted: Vec<(String, String, String)> = expected
        .iter()
        .map(|e| {
            let s = |k: &str| {
                e[k].as_str()
                    .unwrap_or_else(|| panic!("{name}: expected entry without {k}: {e}"))
                    .to_owned()
            };
            (s("kind"), s("code"), s("path"))
        })
        .collect();
    actual.sort();
    wanted.sort();
    assert_eq!(actual, wanted, "{}", context());
    for e in expected {
        let (code, path) = (e["code"].as_str().unwrap(), e["path"].as_str().unwrap());
        let matching: Vec<_> = d
            .changes
            .iter()
            .filter(|c| c.code == code && c.path == path)
            .collect();
        if let Some(pointer) = e.get("pointer").and_then(Json::as_str) {
            assert!(
                matching
                    .iter()
                    .any(|c| format!("{}#{}", c.document, c.pointer) == pointer),
                "{code} at {path}: pointer {pointer} expected; {}",
                context()
            );
        }
        if let Some(also) = e.get("also") {
            let also: Vec<String> = serde_json::from_value(also.clone()).unwrap();
            assert!(
                matching.iter().any(|c| c.also == also),
                "{code} at {path}: also {also:?} expected; {}",
                context()
            );
        }
    }
    // Breaking changes come first, then compatible, then info.
    let kinds: Vec<Kind> = d.changes.iter().map(|c| c.kind).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(kinds, sorted, "changes ordered by kind; {}", context());
}

fn run_fixture(name: &str) {
    let dir = fixtures_dir().join(name);
    let old = read_json(&dir.join("old.json"));
    let new = read_json(&dir.join("new.json"));
    let expected = read_json(&dir.join("expected.json"));
    let list = |k: &str| {
        expected[k]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: expected.json has no {k} list"))
            .clone()
    };
    let forward = diff(&old, &new).unwrap_or_else(|e| panic!("{name}: {e}"));
    check(name, "forward", &forward, &list("forward"));
    let backward = diff(&new, &old).unwrap_or_else(|e| panic!("{name}: {e}"));
    check(name, "backward", &backward, &list("backward"));
    for (side, doc) in [("old", &old), ("new", &new)] {
        let same = diff(doc, doc).unwrap();
        assert!(
            same.is_empty(),
            "{name}: {side}.json diffed with itself:\n{}",
            show_changes(&same)
        );
    }
    assert_eq!(
        forward.has_breaking(),
        list("forward").iter().any(|e| e["kind"] == "breaking")
    );
}

macro_rules! fixtures {
    ($($test:ident => $dir:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                run_fixture($dir);
            }
        )*
        /// Every fixture directory, in the order above.
        const FIXTURES: &[&str] = &[$($dir),*];
    };
}

fixtures! {
    fixture_no_change => "no-change",
    fixture_reordered => "reordered",
    fixture_equivalent_refactor => "equivalent-refactor",
    fixture_path_added => "path-added",
    fixture_operation_added => "operation-added",
    fixture_operation_id_changed => "operation-id-changed",
    fixture_docs_only => "docs-only",
    fixture_parameter_optional => "parameter-optional",
    fixture_parameter_required => "parameter-required",
    fixture_parameter_required_changed => "parameter-required-changed",
    fixture_parameter_style => "parameter-style",
    fixture_parameter_schema => "parameter-schema",
    fixture_parameter_operation_override => "parameter-operation-override",
    fixture_request_body_optional_added => "request-body-optional-added",
    fixture_request_body_required_added => "request-body-required-added",
    fixture_request_body_required_changed => "request-body-required-changed",
    fixture_request_media_type => "request-media-type",
    fixture_success_status_changed => "success-status-changed",
    fixture_success_status_added => "success-status-added",
    fixture_error_status => "error-status",
    fixture_response_header => "response-header",
    fixture_response_header_schema => "response-header-schema",
    fixture_response_media_type => "response-media-type",
    fixture_request_property_optional => "request-property-optional",
    fixture_request_property_required => "request-property-required",
    fixture_request_property_required_changed => "request-property-required-changed",
    fixture_request_property_undeclared => "request-property-undeclared",
    fixture_request_additional_properties => "request-additional-properties",
    fixture_request_type_changed => "request-type-changed",
    fixture_request_type_widened => "request-type-widened",
    fixture_request_type_unrestricted => "request-type-unrestricted",
    fixture_request_nullable => "request-nullable",
    fixture_request_enum_values => "request-enum-values",
    fixture_request_enum_constraint => "request-enum-constraint",
    fixture_request_length => "request-length",
    fixture_request_range => "request-range",
    fixture_request_exclusive_bound => "request-exclusive-bound",
    fixture_request_items => "request-items",
    fixture_request_pattern => "request-pattern",
    fixture_request_pattern_changed => "request-pattern-changed",
    fixture_request_format => "request-format",
    fixture_request_format_changed => "request-format-changed",
    fixture_request_format_widened => "request-format-widened",
    fixture_request_variants => "request-variants",
    fixture_request_variant_nested => "request-variant-nested",
    fixture_request_default => "request-default",
    fixture_request_schema_changed => "request-schema-changed",
    fixture_request_nested => "request-nested",
    fixture_request_all_of => "request-all-of",
    fixture_external_ref => "external-ref",
    fixture_openapi_3_0 => "openapi-3.0",
    fixture_response_property_added => "response-property-added",
    fixture_response_property_required_changed => "response-property-required-changed",
    fixture_response_additional_properties => "response-additional-properties",
    fixture_response_type_widened => "response-type-widened",
    fixture_response_type_changed => "response-type-changed",
    fixture_response_nullable => "response-nullable",
    fixture_response_enum_values => "response-enum-values",
    fixture_response_enum_constraint => "response-enum-constraint",
    fixture_response_constraints => "response-constraints",
    fixture_response_format => "response-format",
    fixture_response_format_widened => "response-format-widened",
    fixture_response_variants => "response-variants",
    fixture_response_schema_changed => "response-schema-changed",
    fixture_security_required => "security-required",
    fixture_security_scopes => "security-scopes",
    fixture_security_scheme_changed => "security-scheme-changed",
    fixture_ref_cycle => "ref-cycle",
}

#[test]
fn every_fixture_directory_has_a_test() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = FIXTURES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(on_disk, listed, "fixture directories vs the fixtures! list");
}

#[test]
fn fixtures_cover_every_rule_and_agree_with_its_kind() {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for name in FIXTURES {
        let expected = read_json(&fixtures_dir().join(name).join("expected.json"));
        for e in ["forward", "backward"]
            .iter()
            .flat_map(|k| expected[*k].as_array().unwrap().clone())
        {
            let code = e["code"].as_str().unwrap();
            let rule = rule_for(code).unwrap_or_else(|| panic!("{name}: unknown code {code}"));
            assert_eq!(
                e["kind"].as_str(),
                Some(rule.kind.as_str()),
                "{name}: kind of {code}"
            );
            seen.insert(code.to_owned());
        }
    }
    let missing: Vec<&str> = RULES
        .iter()
        .map(|r| r.code)
        .filter(|c| !seen.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "codes no fixture exercises: {missing:?}"
    );
}

#[test]
fn the_docs_list_every_rule_with_its_kind() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/contract-diff.md");
    let docs = std::fs::read_to_string(&path).unwrap();
    for r in RULES {
        let row = format!("| `{}` | {} |", r.code, r.kind);
        assert!(
            docs.lines().any(|l| l.starts_with(&row)),
            "docs/contract-diff.md has no row starting with {row:?}"
        );
    }
    let rows = docs
        .lines()
        .filter(|l| l.starts_with("| `") && RULES.iter().any(|r| l.contains(r.code)))
        .count();
    assert_eq!(rows, RULES.len(), "one table row per code, no stale rows");
}

// ---- the blog example and schema edits --------------------------------------------------------

fn blog_src() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/blog/plinth.toml");
    std::fs::read_to_string(path).unwrap()
}

fn contract(src: &str) -> Json {
    let schema = parse_schema(src).unwrap_or_else(|d| panic!("schema invalid: {d:?}\n{src}"));
    openapi(&schema)
}

/// The blog schema with `from` replaced by `to` (exactly once).
fn edited(from: &str, to: &str) -> String {
    let src = blog_src();
    assert_eq!(src.matches(from).count(), 1, "{from:?} occurs once");
    src.replacen(from, to, 1)
}

fn diff_schemas(old: &str, new: &str) -> ContractDiff {
    diff(&contract(old), &contract(new)).unwrap()
}

fn codes(d: &ContractDiff) -> BTreeSet<(Kind, &'static str)> {
    d.changes.iter().map(|c| (c.kind, c.code)).collect()
}

fn codes_of(d: &ContractDiff, kind: Kind) -> BTreeSet<&'static str> {
    d.changes
        .iter()
        .filter(|c| c.kind == kind)
        .map(|c| c.code)
        .collect()
}

fn has(d: &ContractDiff, code: &str, path: &str) -> bool {
    d.changes
        .iter()
        .any(|c| c.code == code && (c.path == path || c.also.iter().any(|a| a == path)))
}

#[test]
fn blog_contract_diffed_with_itself_is_empty() {
    let a = contract(&blog_src());
    let d = diff(&a, &a).unwrap();
    assert!(d.is_empty(), "{}", show_changes(&d));
    assert!(!d.has_breaking());
    // Through text and back, and generated twice: still nothing.
    let reparsed: Json = serde_json::from_str(&serde_json::to_string_pretty(&a).unwrap()).unwrap();
    assert!(diff(&a, &reparsed).unwrap().is_empty());
    assert!(diff(&a, &contract(&blog_src())).unwrap().is_empty());
}

fn reverse_keys(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .rev()
                .map(|(k, v)| (k.clone(), reverse_keys(v)))
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(reverse_keys).collect()),
        other => other.clone(),
    }
}

#[test]
fn blog_contract_key_order_does_not_matter() {
    let a = contract(&blog_src());
    let d = diff(&a, &reverse_keys(&a)).unwrap();
    assert!(d.is_empty(), "{}", show_changes(&d));
}

#[test]
fn adding_an_optional_field_is_compatible() {
    let new = edited(
        "body         = { type = \"text\" }",
        "body         = { type = \"text\" }\nsubtitle     = { type = \"text\", max_length = 80 }",
    );
    let d = diff_schemas(&blog_src(), &new);
    assert!(!d.has_breaking(), "{}", show_changes(&d));
    assert_eq!(
        codes(&d),
        BTreeSet::from([
            (Kind::Compatible, "request-property-added"),
            (Kind::Compatible, "response-property-added"),
            // The filter, sort and fields parameters list every field.
            (Kind::Info, "description-changed"),
        ]),
        "{}",
        show_changes(&d)
    );
    assert!(has(
        &d,
        "request-property-added",
        "POST /v1/posts request body .subtitle"
    ));
    assert!(has(
        &d,
        "request-property-added",
        "PATCH /v1/posts/{id} request body .subtitle"
    ));
    assert!(has(
        &d,
        "response-property-added",
        "GET /v1/posts/{id} response 200 .subtitle"
    ));
    assert!(has(
        &d,
        "response-property-added",
        "GET /v1/posts response 200 .items[].subtitle"
    ));
}

#[test]
fn adding_a_required_field_without_default_is_breaking() {
    let new = edited(
        "body         = { type = \"text\" }",
        "body         = { type = \"text\" }\nsubtitle     = { type = \"text\", required = true }",
    );
    let d = diff_schemas(&blog_src(), &new);
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from(["request-property-added-required"]),
        "{}",
        show_changes(&d)
    );
    assert!(has(
        &d,
        "request-property-added-required",
        "POST /v1/posts request body .subtitle"
    ));
    // PATCH bodies never require anything.
    assert!(has(
        &d,
        "request-property-added",
        "PATCH /v1/posts/{id} request body .subtitle"
    ));
}

#[test]
fn adding_a_required_field_with_default_is_compatible() {
    let new = edited(
        "body         = { type = \"text\" }",
        "body         = { type = \"text\" }\nlanguage     = { type = \"text\", required = true, default = \"en\" }",
    );
    let d = diff_schemas(&blog_src(), &new);
    assert!(!d.has_breaking(), "{}", show_changes(&d));
    assert!(has(
        &d,
        "request-property-added",
        "POST /v1/posts request body .language"
    ));
}

#[test]
fn raising_max_length_is_compatible() {
    let new = edited("max_length = 200", "max_length = 300");
    let d = diff_schemas(&blog_src(), &new);
    assert_eq!(
        codes(&d),
        BTreeSet::from([
            (Kind::Compatible, "request-max-length-increased"),
            (Kind::Compatible, "response-constraint-changed"),
        ]),
        "{}",
        show_changes(&d)
    );
}

#[test]
fn lowering_max_length_is_breaking() {
    let new = edited("max_length = 200", "max_length = 100");
    let d = diff_schemas(&blog_src(), &new);
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from(["request-max-length-decreased"]),
        "{}",
        show_changes(&d)
    );
    let breaking: Vec<&str> = d
        .changes
        .iter()
        .filter(|c| c.kind == Kind::Breaking)
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        breaking,
        [
            "POST /v1/posts request body .title",
            "PATCH /v1/posts/{id} request body .title"
        ]
    );
    let c = &d.changes[0];
    assert_eq!(c.document, Document::New);
    assert_eq!(
        c.pointer,
        "/components/schemas/PostsCreate/properties/title/maxLength"
    );
    assert_eq!(c.message, "maxLength lowered from 200 to 100");
}

#[test]
fn removing_an_enum_value_is_breaking() {
    // `published` is used by the example's permission rules, so `archived` goes.
    let old = edited(
        "values = [\"draft\", \"published\"]",
        "values = [\"draft\", \"published\", \"archived\"]",
    );
    let d = diff_schemas(&old, &blog_src());
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from(["request-enum-value-removed"]),
        "{}",
        show_changes(&d)
    );
    assert!(codes_of(&d, Kind::Compatible).contains("response-enum-value-removed"));
    assert!(has(
        &d,
        "request-enum-value-removed",
        "POST /v1/posts request body .status"
    ));
}

#[test]
fn adding_an_enum_value_breaks_strict_readers_of_responses() {
    let new = edited(
        "values = [\"draft\", \"published\"]",
        "values = [\"draft\", \"published\", \"archived\"]",
    );
    let d = diff_schemas(&blog_src(), &new);
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from(["response-enum-value-added"]),
        "{}",
        show_changes(&d)
    );
    assert!(codes_of(&d, Kind::Compatible).contains("request-enum-value-added"));
    assert!(has(
        &d,
        "response-enum-value-added",
        "POST /v1/posts response 201 .status"
    ));
    assert!(has(
        &d,
        "response-enum-value-added",
        "GET /v1/posts response 200 .items[].status"
    ));
}

const TAGS: &str =
    "\n[collections.tags.fields]\nname = { type = \"text\", required = true, max_length = 40 }\n";

#[test]
fn adding_a_collection_is_compatible() {
    let new = format!("{}{TAGS}", blog_src());
    let d = diff_schemas(&blog_src(), &new);
    assert!(!d.has_breaking(), "{}", show_changes(&d));
    assert_eq!(
        codes(&d),
        BTreeSet::from([
            (Kind::Compatible, "path-added"),
            // The top-level tag list.
            (Kind::Info, "annotation-changed"),
        ]),
        "{}",
        show_changes(&d)
    );
    assert!(has(&d, "path-added", "/v1/tags"));
    assert!(has(&d, "path-added", "/v1/tags/{id}"));
}

#[test]
fn removing_a_collection_is_breaking() {
    let old = format!("{}{TAGS}", blog_src());
    let d = diff_schemas(&old, &blog_src());
    assert_eq!(
        codes(&d),
        BTreeSet::from([
            (Kind::Breaking, "path-removed"),
            (Kind::Info, "annotation-changed"),
        ]),
        "{}",
        show_changes(&d)
    );
    assert_eq!(d.count(Kind::Breaking), 2);
    assert!(has(&d, "path-removed", "/v1/tags"));
    assert!(has(&d, "path-removed", "/v1/tags/{id}"));
}

#[test]
fn making_an_optional_field_required_is_breaking() {
    let new = edited(
        "body         = { type = \"text\" }",
        "body         = { type = \"text\", required = true }",
    );
    let d = diff_schemas(&blog_src(), &new);
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from([
            "request-property-became-required",
            "request-nullable-removed"
        ]),
        "{}",
        show_changes(&d)
    );
    // PATCH can no longer clear it with null.
    assert!(has(
        &d,
        "request-nullable-removed",
        "PATCH /v1/posts/{id} request body .body"
    ));
    assert!(codes_of(&d, Kind::Compatible).contains("response-nullable-removed"));
}

#[test]
fn making_a_required_field_optional_is_breaking_for_readers() {
    let new = edited(
        "title        = { type = \"text\", required = true,",
        "title        = { type = \"text\",",
    );
    let d = diff_schemas(&blog_src(), &new);
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from(["response-nullable-added"]),
        "{}",
        show_changes(&d)
    );
    let compatible = codes_of(&d, Kind::Compatible);
    assert!(compatible.contains("request-property-became-optional"));
    assert!(compatible.contains("request-nullable-added"));
}

#[test]
fn removing_a_field_is_breaking() {
    let new = edited("body         = { type = \"text\" }\n", "");
    let d = diff_schemas(&blog_src(), &new);
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from(["request-property-removed", "response-property-removed"]),
        "{}",
        show_changes(&d)
    );
    assert!(has(
        &d,
        "request-property-removed",
        "POST /v1/posts request body .body"
    ));
    assert!(has(
        &d,
        "response-property-removed",
        "GET /v1/posts/{id} response 200 .body"
    ));
}

#[test]
fn changing_a_field_type_is_breaking() {
    let new = edited(
        "published_at = { type = \"datetime\" }",
        "published_at = { type = \"integer\" }",
    );
    let d = diff_schemas(&blog_src(), &new);
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from(["request-type-changed", "response-type-changed"]),
        "{}",
        show_changes(&d)
    );
    let new = edited(
        "publish_on   = { type = \"date\" }",
        "publish_on   = { type = \"datetime\" }",
    );
    let d = diff_schemas(&blog_src(), &new);
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from(["request-format-changed", "response-format-changed"]),
        "{}",
        show_changes(&d)
    );
}

#[test]
fn integer_to_number_is_compatible_for_requests_only() {
    let new = edited(
        "views        = { type = \"integer\", min = 0, default = 0 }",
        "views        = { type = \"number\", min = 0, default = 0 }",
    );
    let d = diff_schemas(&blog_src(), &new);
    // Requests accept more; responses may now hold fractions.
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from(["response-type-widened", "response-format-changed"]),
        "{}",
        show_changes(&d)
    );
    let back = diff_schemas(&new, &blog_src());
    // Plinth integers are bounded by i64, so a maximum is imposed too.
    assert_eq!(
        codes_of(&back, Kind::Breaking),
        BTreeSet::from([
            "request-type-narrowed",
            "request-format-changed",
            "request-maximum-decreased"
        ]),
        "{}",
        show_changes(&back)
    );
}

#[test]
fn adding_a_relation_adds_the_expand_parameter() {
    let new = edited(
        "meta         = { type = \"json\" }",
        "meta         = { type = \"json\" }\nrelated      = { type = \"relation\", collection = \"posts\" }",
    );
    let d = diff_schemas(&blog_src(), &new);
    assert!(!d.has_breaking(), "{}", show_changes(&d));
    assert!(has(
        &d,
        "parameter-added",
        "GET /v1/posts query parameter expand"
    ));
    assert!(has(
        &d,
        "response-property-added",
        "GET /v1/posts response 200 .items[].expand"
    ));
}

#[test]
fn a_description_change_is_info_only() {
    let new = edited("Headline shown in lists.", "The headline.");
    let d = diff_schemas(&blog_src(), &new);
    assert!(!d.is_empty());
    assert_eq!(
        codes(&d),
        BTreeSet::from([(Kind::Info, "description-changed")]),
        "{}",
        show_changes(&d)
    );
}

/// `name = {...}` lines of the `posts` fields table.
fn posts_field_lines(src: &str) -> Vec<String> {
    src.split("[collections.posts.fields]")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.starts_with('['))
        .filter(|l| l.contains("= {"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn removing_any_field_is_breaking_and_adding_it_back_only_if_required() {
    let src = blog_src();
    let schema = parse_schema(&src).unwrap();
    let posts = schema.collection("posts").unwrap();
    let mut tested = 0;
    for line in posts_field_lines(&src) {
        let name = line.split_whitespace().next().unwrap();
        let without = src.replacen(&format!("{line}\n"), "", 1);
        let Ok(_) = parse_schema(&without) else {
            continue; // the field is indexed
        };
        let field = posts.field(name).unwrap();
        let removed = diff_schemas(&src, &without);
        assert!(
            removed.has_breaking(),
            "removing {name}:\n{}",
            show_changes(&removed)
        );
        assert!(has(
            &removed,
            "response-property-removed",
            &format!("POST /v1/posts response 201 .{name}")
        ));
        let added = diff_schemas(&without, &src);
        assert_eq!(
            added.has_breaking(),
            !field.optional_on_create(),
            "adding {name} back:\n{}",
            show_changes(&added)
        );
        assert!(
            diff(&contract(&without), &contract(&without))
                .unwrap()
                .is_empty()
        );
        tested += 1;
    }
    assert!(tested >= 10, "only {tested} fields could be removed");
}

#[test]
fn every_max_length_lowered_is_breaking_and_raised_is_not() {
    let src = blog_src();
    let mut tested = 0;
    for (i, _) in src.match_indices("max_length = ") {
        let rest = &src[i + "max_length = ".len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let n: u32 = digits.parse().unwrap();
        let with = |m: u32| format!("{}max_length = {m}{}", &src[..i], &rest[digits.len()..]);
        let lower = diff_schemas(&src, &with(n - 1));
        assert!(
            lower.has_breaking(),
            "max_length {n} → {}:\n{}",
            n - 1,
            show_changes(&lower)
        );
        assert_eq!(
            codes_of(&lower, Kind::Breaking),
            BTreeSet::from(["request-max-length-decreased"])
        );
        let higher = diff_schemas(&src, &with(n + 1));
        assert!(
            !higher.has_breaking(),
            "max_length {n} → {}:\n{}",
            n + 1,
            show_changes(&higher)
        );
        tested += 1;
    }
    assert!(tested >= 3);
}

// ---- output formats -------------------------------------------------------------------------

fn sample() -> ContractDiff {
    // A breaking, a compatible and an info change, and a pipe in a message.
    let old = contract(&blog_src());
    let mut new = old.clone();
    let title = &mut new["components"]["schemas"]["PostsCreate"]["properties"]["title"];
    title["pattern"] = json!("^(a|b)");
    title["description"] = json!("Changed.");
    new["paths"]["/v1/extra"] = json!({"get": {"responses": {"200": {"description": "ok"}}}});
    diff(&old, &new).unwrap()
}

#[test]
fn json_output_has_summary_and_changes() {
    let d = sample();
    let j = d.to_json();
    assert_eq!(j["summary"]["breaking"], 1);
    assert_eq!(j["summary"]["compatible"], 1);
    assert_eq!(j["summary"]["info"], 1);
    assert_eq!(j["summary"]["total"], 3);
    let changes = j["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3);
    for c in changes {
        for key in ["kind", "code", "path", "document", "pointer", "message"] {
            assert!(c[key].is_string(), "{key} in {c}");
        }
        assert!(c["also"].is_array());
    }
    assert_eq!(changes[0]["kind"], "breaking");
    assert_eq!(changes[0]["code"], "request-pattern-added");
    assert_eq!(changes[0]["path"], "POST /v1/posts request body .title");
    assert_eq!(changes[0]["document"], "new");
    assert_eq!(
        changes[0]["pointer"],
        "/components/schemas/PostsCreate/properties/title/pattern"
    );
    assert_eq!(changes[1]["code"], "path-added");
    assert_eq!(changes[2]["code"], "description-changed");
}

#[test]
fn text_output_groups_by_kind_breaking_first() {
    let text = sample().to_text();
    assert!(
        text.starts_with("3 changes: 1 breaking, 1 compatible, 1 info\n"),
        "{text}"
    );
    let pos = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s:?} in:\n{text}"));
    assert!(pos("Breaking (1):") < pos("Compatible (1):"));
    assert!(pos("Compatible (1):") < pos("Info (1):"));
    assert!(pos("request-pattern-added  POST /v1/posts request body .title") < pos("Compatible"));
    assert!(text.contains("at new#/components/schemas/PostsCreate/properties/title/pattern"));
    assert_eq!(ContractDiff::default().to_text(), "No changes.\n");
}

#[test]
fn markdown_output_is_a_table_with_escaped_cells() {
    let md = sample().to_markdown();
    let lines: Vec<&str> = md.lines().collect();
    let header = lines
        .iter()
        .position(|l| *l == "| kind | code | where | change |")
        .unwrap_or_else(|| panic!("table header in:\n{md}"));
    assert_eq!(lines[header + 1], "|---|---|---|---|");
    let rows: Vec<&str> = lines[header + 2..]
        .iter()
        .copied()
        .filter(|l| l.starts_with("| "))
        .collect();
    assert_eq!(rows.len(), 3, "{md}");
    assert!(rows[0].starts_with(
        "| **breaking** | `request-pattern-added` | `POST /v1/posts request body .title` |"
    ));
    assert!(rows[0].contains("^(a\\|b)"), "pipes escaped: {}", rows[0]);
    for row in &rows {
        // 5 unescaped pipes: 4 columns.
        let unescaped = row.replace("\\|", "").matches('|').count();
        assert_eq!(unescaped, 5, "{row}");
    }
    assert!(md.contains("**Breaking changes**"));
    assert_eq!(
        ContractDiff::default().to_markdown(),
        "### API contract diff\n\nNo changes.\n"
    );
}

#[test]
fn shared_component_changes_are_reported_once_with_the_other_places() {
    let new = edited("max_length = 200", "max_length = 100");
    let d = diff_schemas(&blog_src(), &new);
    let record: Vec<_> = d
        .changes
        .iter()
        .filter(|c| c.pointer == "/components/schemas/PostsRecord/properties/title/maxLength")
        .collect();
    assert_eq!(record.len(), 1, "{}", show_changes(&d));
    let c = record[0];
    assert_eq!(c.code, "response-constraint-changed");
    assert_eq!(
        c.path, "POST /v1/posts response 201 .title",
        "the most direct place"
    );
    let also: BTreeSet<&str> = c.also.iter().map(String::as_str).collect();
    assert_eq!(
        also,
        BTreeSet::from([
            "GET /v1/posts/{id} response 200 .title",
            "PATCH /v1/posts/{id} response 200 .title",
            "GET /v1/comments response 200 .items[].expand.post.title",
        ])
    );
}

// ---- errors and $ref edge cases -------------------------------------------------------------

fn minimal(schema: Json, components: Json) -> Json {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/x": {"post": {
            "requestBody": {"content": {"application/json": {"schema": schema}}},
            "responses": {"204": {"description": "ok"}}
        }}},
        "components": {"schemas": components}
    })
}

#[test]
fn documents_that_are_not_openapi_3_are_refused() {
    let ok = minimal(json!({}), json!({}));
    for (bad, why) in [
        (json!([]), "not a JSON object"),
        (json!({"paths": {}}), "no `openapi`"),
        (json!({"swagger": "2.0", "paths": {}}), "Swagger 2.0"),
        (json!({"openapi": "2.0"}), "unsupported"),
        (json!({"openapi": 3.1}), "unsupported"),
        (
            json!({"openapi": "3.1.0", "paths": []}),
            "`paths` is not an object",
        ),
    ] {
        match diff(&bad, &ok) {
            Err(DiffError::NotOpenApi {
                document: Document::Old,
                reason,
            }) => {
                assert!(reason.contains(why), "{reason:?} mentions {why:?}");
            }
            other => panic!("{bad}: {other:?}"),
        }
        assert!(matches!(
            diff(&ok, &bad),
            Err(DiffError::NotOpenApi {
                document: Document::New,
                ..
            })
        ));
    }
}

#[test]
fn an_unresolvable_ref_is_an_error() {
    let ok = minimal(json!({"$ref": "#/components/schemas/A"}), json!({"A": {}}));
    let bad = minimal(
        json!({"$ref": "#/components/schemas/Missing"}),
        json!({"A": {}}),
    );
    let err = diff(&ok, &bad).unwrap_err();
    assert_eq!(
        err,
        DiffError::BadRef {
            document: Document::New,
            pointer: "/paths/~1x/post/requestBody/content/application~1json/schema".into(),
            reference: "#/components/schemas/Missing".into(),
            reason: "does not resolve",
        }
    );
    assert!(err.to_string().contains("#/components/schemas/Missing"));
}

#[test]
fn every_local_ref_must_resolve_even_where_nothing_is_compared() {
    let ok = minimal(json!({}), json!({}));
    let unused = minimal(
        json!({}),
        json!({"A": {"$ref": "#/components/schemas/Gone"}}),
    );
    assert_eq!(
        diff(&unused, &ok),
        Err(DiffError::BadRef {
            document: Document::Old,
            pointer: "/components/schemas/A".into(),
            reference: "#/components/schemas/Gone".into(),
            reason: "does not resolve",
        })
    );
    // Example values are data: a `$ref` key there is not a reference.
    let example = minimal(
        json!({"type": "object", "examples": [{"$ref": "#/nowhere"}], "x-note": {"$ref": "#/nowhere"}}),
        json!({}),
    );
    assert!(diff(&example, &example).unwrap().is_empty());
}

#[test]
fn a_cycle_of_bare_refs_is_an_error_not_a_hang() {
    let cyclic = minimal(
        json!({"$ref": "#/components/schemas/A"}),
        json!({"A": {"$ref": "#/components/schemas/B"}, "B": {"$ref": "#/components/schemas/A"}}),
    );
    let ok = minimal(json!({}), json!({}));
    assert!(matches!(
        diff(&ok, &cyclic),
        Err(DiffError::BadRef {
            reason: "is part of a cycle of references",
            ..
        })
    ));
}

#[test]
fn mutually_recursive_schemas_terminate() {
    let doc = |max: u32| {
        minimal(
            json!({"$ref": "#/components/schemas/A"}),
            json!({
                "A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}, "n": {"type": "string", "maxLength": max}}},
                "B": {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}}}
            }),
        )
    };
    let d = diff(&doc(10), &doc(5)).unwrap();
    assert_eq!(d.changes.len(), 1, "{}", show_changes(&d));
    assert_eq!(d.changes[0].code, "request-max-length-decreased");
    assert_eq!(d.changes[0].path, "POST /x request body .n");
}

#[test]
fn ref_siblings_are_laid_over_the_target() {
    let old = minimal(
        json!({"$ref": "#/components/schemas/A"}),
        json!({"A": {"type": "string"}}),
    );
    let new = minimal(
        json!({"$ref": "#/components/schemas/A", "description": "An A.", "maxLength": 3}),
        json!({"A": {"type": "string"}}),
    );
    let d = diff(&old, &new).unwrap();
    assert_eq!(
        codes(&d),
        BTreeSet::from([
            (Kind::Breaking, "request-max-length-decreased"),
            (Kind::Info, "description-changed"),
        ]),
        "{}",
        show_changes(&d)
    );
}

#[test]
fn a_wide_dag_of_shared_schemas_is_compared_once_per_pair() {
    // L0 → L1 (twice) → L2 (twice) → ... → L40: 2^40 paths, 41 schemas.
    let doc = |bottom: u32| {
        let mut schemas = serde_json::Map::new();
        for i in 0..40 {
            let next = json!({"$ref": format!("#/components/schemas/L{}", i + 1)});
            schemas.insert(
                format!("L{i}"),
                json!({"type": "object", "properties": {"left": next, "right": next}}),
            );
        }
        schemas.insert("L40".into(), json!({"type": "string", "maxLength": bottom}));
        minimal(
            json!({"$ref": "#/components/schemas/L0"}),
            Json::Object(schemas),
        )
    };
    let d = diff(&doc(10), &doc(5)).unwrap();
    assert_eq!(d.changes.len(), 1, "{}", show_changes(&d));
    let c = &d.changes[0];
    assert_eq!(c.code, "request-max-length-decreased");
    assert_eq!(c.pointer, "/components/schemas/L40/maxLength");
    assert_eq!(
        c.path,
        format!("POST /x request body {}", ".left".repeat(40))
    );
    assert!(
        !c.also.is_empty() && c.also.len() <= 80,
        "{} other places",
        c.also.len()
    );
}

/// L0 → L1 → ... → L{depth}, each a distinct component; the last is a
/// string with `maxLength`.
fn chain(depth: usize, max: u32) -> Json {
    let mut schemas = serde_json::Map::new();
    for i in 0..depth {
        schemas.insert(
            format!("L{i}"),
            json!({"type": "object", "properties": {"next": {"$ref": format!("#/components/schemas/L{}", i + 1)}}}),
        );
    }
    schemas.insert(
        format!("L{depth}"),
        json!({"type": "string", "maxLength": max}),
    );
    minimal(
        json!({"$ref": "#/components/schemas/L0"}),
        Json::Object(schemas),
    )
}

#[test]
fn a_deep_chain_of_refs_is_compared_within_a_small_stack() {
    // 1 MiB: half of what a test thread (and far less than what the main
    // thread) gets, so the depth limit leaves room in debug builds too.
    let d = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| diff(&chain(60, 10), &chain(60, 5)))
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(d.changes.len(), 1, "{}", show_changes(&d));
    assert_eq!(
        d.changes[0].path,
        format!("POST /x request body {}", ".next".repeat(60))
    );
}

#[test]
fn a_chain_of_refs_deeper_than_the_limit_is_an_error() {
    let doc = chain(100, 1);
    assert_eq!(diff(&doc, &doc), Err(DiffError::TooComplex));
}

#[test]
fn numbers_compare_by_value() {
    let doc = |default: Json, values: Json| {
        minimal(
            json!({"type": "object", "properties": {
                "n": {"type": "number", "default": default, "minimum": 1},
                "e": {"enum": values}
            }}),
            json!({}),
        )
    };
    let a = doc(json!(0), json!([1, 2.5]));
    let b = doc(json!(0.0), json!([1.0, 2.5]));
    let d = diff(&a, &b).unwrap();
    assert!(d.is_empty(), "{}", show_changes(&d));
}

#[test]
fn boolean_schemas() {
    let t = minimal(json!(true), json!({}));
    let f = minimal(json!(false), json!({}));
    assert!(diff(&t, &t).unwrap().is_empty());
    let d = diff(&t, &f).unwrap();
    assert_eq!(
        codes_of(&d, Kind::Breaking),
        BTreeSet::from(["request-schema-changed"])
    );
}
