//! Request validation with the published JSON Schemas, and conversion between
//! JSON and domain values.

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value as Json};

use plinth_domain::schema::SYSTEM_FIELDS;
use plinth_domain::value::{normalize_date, normalize_datetime};
use plinth_domain::{Collection, DefaultValue, Field, FieldType, Record, Schema, Value};

use crate::json_schema::{create_schema, describe, json_of, patch_schema};

/// One invalid field in a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Top-level field name; empty for the body as a whole.
    pub field: String,
    /// Stable machine-readable code (see docs/api.md).
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }
}

struct Validators {
    create: jsonschema::Validator,
    patch: jsonschema::Validator,
}

/// The compiled contract of one schema: validators for every collection.
pub struct Contract {
    schema: Arc<Schema>,
    validators: HashMap<String, Validators>,
}

fn compile(schema: &Json) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| e.to_string())
}

impl Contract {
    pub fn new(schema: Arc<Schema>) -> Result<Contract, String> {
        let mut validators = HashMap::new();
        for c in &schema.collections {
            validators.insert(
                c.name.clone(),
                Validators {
                    create: compile(&create_schema(c))?,
                    patch: compile(&patch_schema(c))?,
                },
            );
        }
        Ok(Contract { schema, validators })
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    fn validators(&self, c: &Collection) -> Result<&Validators, Vec<FieldError>> {
        self.validators
            .get(&c.name)
            .ok_or_else(|| vec![FieldError::new("", "invalid", "unknown collection")])
    }

    /// Validates a create body; returns a value for every field (defaults applied).
    pub fn validate_create(
        &self,
        c: &Collection,
        body: &Json,
    ) -> Result<Vec<(String, Value)>, Vec<FieldError>> {
        check(c, &self.validators(c)?.create, body)?;
        let empty = Map::new();
        let obj = body.as_object().unwrap_or(&empty);
        let mut out = Vec::with_capacity(c.fields.len());
        let mut errors = Vec::new();
        for f in &c.fields {
            let value = match obj.get(&f.name) {
                Some(j) => to_value(f, j),
                None => Ok(default_for(f)),
            };
            match value {
                Ok(v) => out.push((f.name.clone(), v)),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// Validates a merge-patch body against the collection's patch schema and
    /// computes the changed fields by merging it into `current` (RFC 7396:
    /// `json` fields are merged recursively, other fields replaced).
    pub fn apply_patch(
        &self,
        c: &Collection,
        current: &Record,
        body: &Json,
    ) -> Result<Vec<(String, Value)>, Vec<FieldError>> {
        check(c, &self.validators(c)?.patch, body)?;
        let empty = Map::new();
        let obj = body.as_object().unwrap_or(&empty);
        let mut changes = Vec::new();
        let mut errors = Vec::new();
        for f in &c.fields {
            let Some(patch) = obj.get(&f.name) else {
                continue;
            };
            let new = if f.ty == FieldType::Json {
                let mut target = current.get(&f.name).map_or(Json::Null, json_of);
                merge_patch(&mut target, patch);
                target
            } else {
                patch.clone()
            };
            match to_value(f, &new) {
                Ok(v) => changes.push((f.name.clone(), v)),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(changes)
        } else {
            Err(errors)
        }
    }
}

fn default_for(f: &Field) -> Value {
    match &f.default {
        Some(DefaultValue::Literal(v)) => v.clone(),
        Some(DefaultValue::Now) => Value::Text(plinth_domain::value::now_timestamp()),
        Some(DefaultValue::Today) => Value::Text(plinth_domain::value::today()),
        // Filled in by the HTTP layer from the principal.
        Some(DefaultValue::AuthUserId) | None => Value::Null,
    }
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Json, patch: &Json) {
    let Json::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Json::Object(Map::new());
    }
    if let Json::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Json::Null), v);
            }
        }
    }
}

/// Runs the JSON Schema and turns its errors into field errors.
fn check(
    c: &Collection,
    validator: &jsonschema::Validator,
    body: &Json,
) -> Result<(), Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new(
            "",
            "type",
            "the body must be a JSON object",
        )]);
    };
    let mut errors: Vec<FieldError> = Vec::new();
    for key in obj.keys() {
        if SYSTEM_FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key,
                "read_only",
                "is a system field set by the server",
            ));
        } else if c.field(key).is_some_and(Field::server_set) {
            errors.push(FieldError::new(
                key,
                "read_only",
                "is set by the server to the user who creates the record",
            ));
        } else if c.tenant_scoped && key == "tenant_id" {
            errors.push(FieldError::new(
                key,
                "read_only",
                "is set by the server from the request's tenant",
            ));
        }
    }
    for e in validator.iter_errors(body) {
        let path = e.instance_path().as_str();
        let field = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .replace("~1", "/")
            .replace("~0", "~");
        let f = c.field(&field);
        let fe = match e.kind() {
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                FieldError::new(name, "required", "is required")
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for u in unexpected {
                    let read_only = SYSTEM_FIELDS.contains(&u.as_str())
                        || c.field(u).is_some_and(Field::server_set)
                        || (c.tenant_scoped && u == "tenant_id");
                    if !read_only {
                        errors.push(FieldError::new(
                            u,
                            "unknown_field",
                            format!("is not a field of `{}`", c.name),
                        ));
                    }
                }
                continue;
            }
            ValidationErrorKind::Type { .. } => {
                let what = f.map_or("of another type", describe);
                let null = if f.is_some_and(|f| !f.nullable()) {
                    " (null is not allowed)"
                } else {
                    ""
                };
                FieldError::new(&field, "type", format!("must be {what}{null}"))
            }
            ValidationErrorKind::MinLength { limit } => FieldError::new(
                &field,
                "min_length",
                format!("must be at least {limit} characters"),
            ),
            ValidationErrorKind::MaxLength { limit } => FieldError::new(
                &field,
                "max_length",
                format!("must be at most {limit} characters"),
            ),
            ValidationErrorKind::Minimum { limit }
            | ValidationErrorKind::ExclusiveMinimum { limit } => {
                FieldError::new(&field, "minimum", format!("must be at least {limit}"))
            }
            ValidationErrorKind::Maximum { limit }
            | ValidationErrorKind::ExclusiveMaximum { limit } => {
                FieldError::new(&field, "maximum", format!("must be at most {limit}"))
            }
            ValidationErrorKind::Pattern { pattern } => {
                if f.is_some_and(|f| f.ty == FieldType::Url) {
                    FieldError::new(&field, "format", "must be an absolute http(s) URL")
                } else {
                    FieldError::new(
                        &field,
                        "pattern",
                        format!("must match the pattern {pattern}"),
                    )
                }
            }
            ValidationErrorKind::Enum { .. } => {
                let allowed = f.map(|f| f.values.join(", ")).unwrap_or_default();
                FieldError::new(&field, "enum", format!("must be one of: {allowed}"))
            }
            ValidationErrorKind::Format { .. } => {
                let what = f.map_or("well-formed", describe);
                FieldError::new(&field, "format", format!("must be {what}"))
            }
            ValidationErrorKind::Not { .. } => {
                FieldError::new(&field, "invalid", "must not contain NUL characters")
            }
            _ => FieldError::new(&field, "invalid", e.to_string()),
        };
        errors.push(fe);
    }
    // One error per field and code, in a stable order.
    errors.sort_by(|a, b| (a.field.as_str(), a.code).cmp(&(b.field.as_str(), b.code)));
    errors.dedup_by(|a, b| a.field == b.field && a.code == b.code);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Converts a schema-valid JSON value into the field's domain value.
fn to_value(f: &Field, j: &Json) -> Result<Value, FieldError> {
    if j.is_null() {
        if f.nullable() || f.ty == FieldType::Json && !f.required {
            return Ok(Value::Null);
        }
        return Err(FieldError::new(&f.name, "required", "must not be null"));
    }
    let bad = |code, msg: &str| FieldError::new(&f.name, code, msg);
    Ok(match f.ty {
        FieldType::Integer => match j.as_i64() {
            Some(i) => Value::Int(i),
            None => {
                // JSON Schema treats 3.0 as an integer; accept it only where a
                // double is exact (|x| <= 2^53). Larger values must be sent as
                // integer literals, so nothing is ever silently rounded.
                const EXACT: f64 = 9_007_199_254_740_992.0;
                let x = j
                    .as_f64()
                    .ok_or_else(|| bad("type", "must be an integer"))?;
                #[allow(clippy::cast_possible_truncation)]
                if x.fract() == 0.0 && x.abs() <= EXACT {
                    Value::Int(x as i64)
                } else {
                    return Err(bad(
                        "maximum",
                        "must be a 64-bit integer written without a fraction or exponent",
                    ));
                }
            }
        },
        FieldType::Number => {
            let x = j.as_f64().ok_or_else(|| bad("type", "must be a number"))?;
            // -0.0 is stored as 0 by SQLite; normalise so every database and
            // the create response agree.
            Value::Float(if x == 0.0 { 0.0 } else { x })
        }
        FieldType::Boolean => Value::Bool(
            j.as_bool()
                .ok_or_else(|| bad("type", "must be true or false"))?,
        ),
        FieldType::Datetime => {
            let s = j.as_str().unwrap_or_default();
            Value::Text(normalize_datetime(s).ok_or_else(|| {
                bad(
                    "format",
                    "must be an RFC 3339 date-time between years 0001 and 9999",
                )
            })?)
        }
        FieldType::Date => {
            let s = j.as_str().unwrap_or_default();
            Value::Text(
                normalize_date(s).ok_or_else(|| bad("format", "must be a YYYY-MM-DD date"))?,
            )
        }
        FieldType::Json => Value::Json(j.to_string()),
        FieldType::Relation => {
            // Ids are stored in canonical lowercase form.
            Value::Text(j.as_str().unwrap_or_default().to_ascii_lowercase())
        }
        _ => Value::Text(
            j.as_str()
                .ok_or_else(|| bad("type", "must be a string"))?
                .to_owned(),
        ),
    })
}

/// A record as a JSON object: system fields first, then fields in schema order.
pub fn record_json(r: &Record) -> Json {
    let mut m = Map::new();
    m.insert("id".into(), Json::String(r.id.clone()));
    m.insert("created_at".into(), Json::String(r.created_at.clone()));
    m.insert("updated_at".into(), Json::String(r.updated_at.clone()));
    m.insert("version".into(), Json::from(r.version));
    for (name, v) in &r.fields {
        m.insert(name.clone(), json_of(v));
    }
    Json::Object(m)
}

/// Serializes a record straight to JSON text (same shape as [`record_json`],
/// without building a `serde_json::Value` first: the hot path of reads).
pub struct RecordBody<'a>(pub &'a Record);

impl serde::Serialize for RecordBody<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let mut m = s.serialize_map(Some(4 + r.fields.len()))?;
        m.serialize_entry("id", &r.id)?;
        m.serialize_entry("created_at", &r.created_at)?;
        m.serialize_entry("updated_at", &r.updated_at)?;
        m.serialize_entry("version", &r.version)?;
        for (name, v) in &r.fields {
            match v {
                Value::Null => m.serialize_entry(name, &())?,
                Value::Bool(b) => m.serialize_entry(name, b)?,
                Value::Int(i) => m.serialize_entry(name, i)?,
                Value::Float(f) => m.serialize_entry(name, f)?,
                Value::Text(t) => m.serialize_entry(name, t)?,
                Value::Json(text) => {
                    match serde_json::from_str::<&serde_json::value::RawValue>(text) {
                        Ok(raw) => m.serialize_entry(name, raw)?,
                        Err(_) => m.serialize_entry(name, text)?,
                    }
                }
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_body_matches_record_json() {
        let r = Record {
            id: "i".into(),
            created_at: "c".into(),
            updated_at: "u".into(),
            version: 2,
            fields: vec![
                ("a".into(), Value::Null),
                ("b".into(), Value::Bool(true)),
                ("c".into(), Value::Int(-3)),
                ("d".into(), Value::Float(1.5)),
                ("e".into(), Value::Text("x\"y".into())),
                ("f".into(), Value::Json("{\"k\": [1, 2]}".into())),
            ],
        };
        let text = serde_json::to_string(&RecordBody(&r)).expect("serializes");
        let back: Json = serde_json::from_str(&text).expect("valid json");
        assert_eq!(back, record_json(&r));
        assert!(text.starts_with("{\"id\":\"i\",\"created_at\""), "{text}");
    }

    fn contract() -> Contract {
        let s = plinth_domain::parse_schema(
            r#"
[collections.posts.fields]
title = { type = "text", required = true, max_length = 5 }
views = { type = "integer", min = 0, default = 0 }
at = { type = "datetime" }
meta = { type = "json" }
status = { type = "enum", values = ["a", "b"] }
"#,
        )
        .expect("valid");
        Contract::new(Arc::new(s)).expect("compiles")
    }

    #[test]
    fn create_applies_defaults_and_normalizes() {
        let c = contract();
        let coll = c.schema().collection("posts").expect("posts").clone();
        let v = c
            .validate_create(
                &coll,
                &json!({"title": "hi", "at": "2026-01-01T01:00:00+01:00", "meta": {"a": [1]}}),
            )
            .expect("valid");
        assert_eq!(v[0], ("title".into(), Value::Text("hi".into())));
        assert_eq!(v[1], ("views".into(), Value::Int(0)));
        assert_eq!(
            v[2],
            (
                "at".into(),
                Value::Text("2026-01-01T00:00:00.000000Z".into())
            )
        );
        assert_eq!(v[3], ("meta".into(), Value::Json("{\"a\":[1]}".into())));
        assert_eq!(v[4], ("status".into(), Value::Null));
    }

    #[test]
    fn create_reports_field_errors() {
        let c = contract();
        let coll = c.schema().collection("posts").expect("posts").clone();
        let e = c
            .validate_create(
                &coll,
                &json!({"views": -1, "id": "x", "nope": 1, "status": "c", "at": "yesterday"}),
            )
            .expect_err("invalid");
        let got: Vec<(&str, &str)> = e.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            [
                ("at", "format"),
                ("id", "read_only"),
                ("nope", "unknown_field"),
                ("status", "enum"),
                ("title", "required"),
                ("views", "minimum")
            ]
        );
        let e = c.validate_create(&coll, &json!([1])).expect_err("invalid");
        assert_eq!((e[0].field.as_str(), e[0].code), ("", "type"));
    }

    #[test]
    fn merge_patch_follows_rfc7396() {
        // RFC 7396 appendix A examples.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want);
        }
    }

    #[test]
    fn patch_rejects_null_on_required() {
        let c = contract();
        let coll = c.schema().collection("posts").expect("posts").clone();
        let rec = Record {
            id: "x".into(),
            created_at: String::new(),
            updated_at: String::new(),
            version: 1,
            fields: vec![("meta".into(), Value::Json("{\"a\":1,\"b\":2}".into()))],
        };
        let e = c
            .apply_patch(&coll, &rec, &json!({"title": null}))
            .expect_err("invalid");
        assert_eq!(e[0].field, "title");
        let ch = c
            .apply_patch(&coll, &rec, &json!({"meta": {"a": null, "c": 3}}))
            .expect("valid");
        assert_eq!(
            ch,
            [("meta".into(), Value::Json("{\"b\":2,\"c\":3}".into()))]
        );
    }
}
