//! JSON Schema (2020-12, as used by OpenAPI 3.1) for each collection's
//! request and response shapes. The same documents validate requests, so the
//! published contract cannot drift from behaviour.

use serde_json::{Map, Value as Json, json};

use plinth_domain::{Bound, Collection, DefaultValue, Field, FieldType, Value};

/// `blog_posts` → `BlogPosts`, for component names.
pub fn pascal(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn bound(b: Bound) -> Json {
    match b {
        Bound::Int(i) => json!(i),
        Bound::Float(f) => json!(f),
    }
}

/// A JSON value for a domain value (used for defaults in the contract and for
/// records in responses).
pub fn json_of(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Text(s) => json!(s),
        Value::Json(text) => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
    }
}

/// What a value of this field looks like, in words (for error messages).
pub fn describe(f: &Field) -> &'static str {
    match f.ty {
        FieldType::Text => "a string",
        FieldType::Integer => "an integer",
        FieldType::Number => "a number",
        FieldType::Boolean => "true or false",
        FieldType::Datetime => "an RFC 3339 date-time string",
        FieldType::Date => "a YYYY-MM-DD date string",
        FieldType::Enum => "one of the allowed strings",
        FieldType::Email => "an email address",
        FieldType::Url => "an absolute http(s) URL",
        FieldType::Json => "any JSON value",
        FieldType::Relation => "the id of an existing record",
    }
}

/// The schema of one field's value; `nullable` adds `null` to the allowed types.
pub fn field_schema(f: &Field, nullable: bool) -> Json {
    let mut s = Map::new();
    let base_type = match f.ty {
        FieldType::Integer => Some("integer"),
        FieldType::Number => Some("number"),
        FieldType::Boolean => Some("boolean"),
        FieldType::Json => None,
        _ => Some("string"),
    };
    if let Some(t) = base_type {
        s.insert(
            "type".into(),
            if nullable {
                json!([t, "null"])
            } else {
                json!(t)
            },
        );
    }
    match f.ty {
        FieldType::Integer => {
            s.insert("format".into(), json!("int64"));
            s.insert("minimum".into(), f.min.map_or(json!(i64::MIN), bound));
            s.insert("maximum".into(), f.max.map_or(json!(i64::MAX), bound));
        }
        FieldType::Number => {
            s.insert("format".into(), json!("double"));
            if let Some(b) = f.min {
                s.insert("minimum".into(), bound(b));
            }
            if let Some(b) = f.max {
                s.insert("maximum".into(), bound(b));
            }
        }
        FieldType::Datetime => {
            s.insert("format".into(), json!("date-time"));
        }
        FieldType::Date => {
            s.insert("format".into(), json!("date"));
        }
        FieldType::Email => {
            s.insert("format".into(), json!("email"));
        }
        FieldType::Url => {
            s.insert("format".into(), json!("uri"));
            s.insert("pattern".into(), json!("^https?://[^\\s/?#]+[^\\s]*$"));
        }
        FieldType::Relation => {
            s.insert("format".into(), json!("uuid"));
        }
        FieldType::Enum => {
            let mut values: Vec<Json> = f.values.iter().map(|v| json!(v)).collect();
            if nullable {
                values.push(Json::Null);
            }
            s.insert("enum".into(), Json::Array(values));
        }
        _ => {}
    }
    if matches!(f.ty, FieldType::Text | FieldType::Email | FieldType::Url) {
        // NUL cannot be stored by PostgreSQL; refused everywhere alike.
        s.insert(
            "not".into(),
            json!({"type": "string", "pattern": "\\u0000", "description": "no NUL characters"}),
        );
    }
    if let Some(n) = f.min_length {
        s.insert("minLength".into(), json!(n));
    }
    if let Some(n) = f.max_length {
        s.insert("maxLength".into(), json!(n));
    }
    if let Some(p) = &f.pattern {
        s.insert("pattern".into(), json!(p));
    }
    let mut description = f.description.clone().unwrap_or_default();
    if let (FieldType::Relation, Some(target)) = (f.ty, &f.collection) {
        if !description.is_empty() {
            description.push(' ');
        }
        if target == plinth_domain::schema::USERS {
            description.push_str("The id of a user account.");
        } else {
            description.push_str(&format!("The id of a record in `{target}`."));
        }
    }
    if let Some(d) = &f.deprecation {
        s.insert("deprecated".into(), json!(true));
        if !description.is_empty() {
            description.push(' ');
        }
        description.push_str(&deprecation_note(d));
    }
    if !description.is_empty() {
        s.insert("description".into(), json!(description));
    }
    Json::Object(s)
}

/// "Deprecated since …; removed on …." for descriptions.
pub fn deprecation_note(d: &plinth_domain::Deprecation) -> String {
    match &d.sunset {
        Some(s) => format!("Deprecated since {}; sunset on {s}.", d.since),
        None => format!("Deprecated since {}.", d.since),
    }
}

fn with_default(f: &Field, mut s: Json) -> Json {
    if let (Some(d), Json::Object(m)) = (&f.default, &mut s) {
        match d {
            DefaultValue::Literal(v) => {
                m.insert("default".into(), json_of(v));
            }
            DefaultValue::Now | DefaultValue::Today | DefaultValue::AuthUserId => {
                let note = match d {
                    DefaultValue::Now => "Defaults to the time of creation.",
                    DefaultValue::Today => "Defaults to the date of creation (UTC).",
                    _ => "Set by the server to the signed-in user who creates the record.",
                };
                let desc = m
                    .get("description")
                    .and_then(Json::as_str)
                    .map_or(note.to_owned(), |x| format!("{x} {note}"));
                m.insert("description".into(), json!(desc));
            }
        }
    }
    s
}

/// Body of `POST /v1/{collection}`.
pub fn create_schema(c: &Collection) -> Json {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in c.fields.iter().filter(|f| !f.server_set()) {
        props.insert(
            f.name.clone(),
            with_default(f, field_schema(f, f.nullable())),
        );
        if !f.optional_on_create() {
            required.push(json!(f.name));
        }
    }
    json!({
        "type": "object",
        "description": format!("A new `{}` record. System fields (id, created_at, updated_at, version) are set by the server.", c.name),
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// Body of `PATCH /v1/{collection}/{id}` (JSON merge patch): every field
/// optional; `null` clears an optional field.
pub fn patch_schema(c: &Collection) -> Json {
    let mut props = Map::new();
    for f in c.fields.iter().filter(|f| !f.server_set()) {
        props.insert(f.name.clone(), field_schema(f, f.nullable()));
    }
    json!({
        "type": "object",
        "description": format!("A JSON merge patch (RFC 7396) of a `{}` record: only the fields sent change; null clears an optional field.", c.name),
        "properties": props,
        "additionalProperties": false,
    })
}

/// A stored record as returned by the API.
pub fn record_schema(c: &Collection) -> Json {
    let mut props = Map::new();
    props.insert(
        "id".into(),
        json!({"type": "string", "format": "uuid", "description": "Time-ordered id (UUIDv7), set by the server.", "readOnly": true}),
    );
    for sys in ["created_at", "updated_at"] {
        props.insert(
            sys.into(),
            json!({"type": "string", "format": "date-time", "readOnly": true}),
        );
    }
    props.insert(
        "version".into(),
        json!({"type": "integer", "minimum": 1, "description": "1 on create, +1 on every write.", "readOnly": true}),
    );
    let mut required = vec![
        json!("id"),
        json!("created_at"),
        json!("updated_at"),
        json!("version"),
    ];
    for f in &c.fields {
        let mut schema = field_schema(f, f.nullable());
        if f.server_set()
            && let Json::Object(m) = &mut schema
        {
            m.insert("readOnly".into(), json!(true));
            let note = "Set by the server to the user who created the record.";
            let desc = m
                .get("description")
                .and_then(Json::as_str)
                .map_or(note.to_owned(), |x| format!("{x} {note}"));
            m.insert("description".into(), json!(desc));
        }
        props.insert(f.name.clone(), schema);
        required.push(json!(f.name));
    }
    let mut s = json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    });
    if let (Some(d), Json::Object(m)) = (&c.description, &mut s) {
        m.insert("description".into(), json!(d));
    }
    s
}

/// A record in a list page: with `fields` only the selected fields are
/// present, and with `expand` related records appear under `expand`.
pub fn item_schema(c: &Collection) -> Json {
    let mut s = record_schema(c);
    if let Json::Object(m) = &mut s {
        m.remove("required");
        let mut expand = Map::new();
        for (f, target) in c
            .relations()
            .filter(|(_, t)| *t != plinth_domain::schema::USERS)
        {
            expand.insert(
                f.name.clone(),
                json!({"$ref": format!("#/components/schemas/{}Record", pascal(target))}),
            );
        }
        if !expand.is_empty()
            && let Some(Json::Object(props)) = m.get_mut("properties")
        {
            {
                props.insert(
                    "expand".into(),
                    json!({
                        "type": "object",
                        "description": "Records of the relations named in `expand`.",
                        "properties": expand,
                        "additionalProperties": false
                    }),
                );
            }
        }
        m.insert(
            "description".into(),
            json!(format!(
                "A `{}` record; with `fields`, only the selected fields.",
                c.name
            )),
        );
    }
    s
}
