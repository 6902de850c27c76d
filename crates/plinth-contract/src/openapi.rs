//! The OpenAPI 3.1 document, generated from the schema.

use serde_json::{Map, Value as Json, json};

use plinth_domain::{Action, Collection, Schema};

use crate::json_schema::{create_schema, item_schema, pascal, patch_schema, record_schema};

/// Problem types Plinth answers with: (slug, status, title, description).
pub const PROBLEMS: &[(&str, u16, &str, &str)] = &[
    (
        "bad-request",
        400,
        "Bad request",
        "Malformed JSON or an invalid query parameter.",
    ),
    (
        "unauthorized",
        401,
        "Unauthorized",
        "No valid credential: sign in, or the access token or API key is invalid, expired or revoked. WWW-Authenticate says which.",
    ),
    (
        "forbidden",
        403,
        "Forbidden",
        "The principal is known but its role or the collection's permission rule does not allow this action.",
    ),
    (
        "not-found",
        404,
        "Not found",
        "The route, collection or record does not exist.",
    ),
    (
        "method-not-allowed",
        405,
        "Method not allowed",
        "The route exists but not with this method.",
    ),
    (
        "conflict",
        409,
        "Conflict",
        "A unique field already has this value, or the record is still referred to.",
    ),
    (
        "precondition-failed",
        412,
        "Precondition failed",
        "If-Match no longer matches (or If-None-Match matches) the record's current ETag.",
    ),
    (
        "payload-too-large",
        413,
        "Payload too large",
        "The request body is larger than the configured limit.",
    ),
    (
        "unsupported-media-type",
        415,
        "Unsupported media type",
        "The request body must be JSON.",
    ),
    (
        "validation",
        422,
        "Request validation failed",
        "The body does not match the collection's schema; `errors` lists each field.",
    ),
    (
        "too-many-requests",
        429,
        "Too many requests",
        "A rate limit is exhausted; Retry-After says when to try again.",
    ),
    (
        "internal",
        500,
        "Internal server error",
        "A bug in Plinth; the request id finds it in the logs.",
    ),
    (
        "unavailable",
        503,
        "Service unavailable",
        "The database cannot be reached.",
    ),
];

/// The `type` URI of a problem slug.
pub fn problem_type(slug: &str) -> String {
    format!("urn:plinth:problem:{slug}")
}

fn response_name(slug: &str) -> String {
    pascal(&slug.replace('-', "_"))
}

fn problem_ref(slug: &str) -> Json {
    json!({"$ref": format!("#/components/responses/{}", response_name(slug))})
}

fn request_id_header() -> Json {
    json!({"$ref": "#/components/headers/RequestId"})
}

/// Responses every operation may give, plus `extra` statuses.
fn responses(ok: (&str, Json), problems: &[&str]) -> Json {
    let mut m = Map::new();
    m.insert(ok.0.to_owned(), ok.1);
    for slug in problems
        .iter()
        .chain(&["too-many-requests", "internal", "unavailable"])
    {
        if let Some((_, status, _, _)) = PROBLEMS.iter().find(|(s, ..)| s == slug) {
            m.insert(status.to_string(), problem_ref(slug));
        }
    }
    Json::Object(m)
}

fn json_body(schema_ref: &str, description: &str) -> Json {
    json!({
        "description": description,
        "headers": {"X-Request-Id": request_id_header()},
        "content": {"application/json": {"schema": {"$ref": schema_ref}}}
    })
}

fn with_etag_header(mut response: Json) -> Json {
    response["headers"]["ETag"] = json!({"$ref": "#/components/headers/ETag"});
    response
}

fn list_parameters(c: &Collection) -> Json {
    let mut fields: Vec<String> = ["id", "created_at", "updated_at", "version"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    fields.extend(c.fields.iter().map(|f| f.name.clone()));
    let relations: Vec<&str> = c
        .relations()
        .filter(|(_, t)| *t != plinth_domain::schema::USERS)
        .map(|(f, _)| f.name.as_str())
        .collect();
    let mut params = vec![
        json!({"$ref": "#/components/parameters/Limit"}),
        json!({
            "name": "filter", "in": "query", "required": false,
            "description": format!("A filter expression, e.g. `{} = \"x\" && created_at > \"2026-01-01T00:00:00Z\"`. Operators: = != > >= < <= ~ (contains), `in [..]`, null, && || ! and parentheses; see docs/querying.md. Fields: {}.", fields.get(4).map_or("id", String::as_str), fields.join(", ")),
            "schema": {"type": "string", "maxLength": 4096}
        }),
        json!({
            "name": "sort", "in": "query", "required": false,
            "description": format!("Comma-separated fields, `-` for descending, e.g. `-created_at`. Ties are broken by id. Default `-created_at`. Fields: {}.", fields.join(", ")),
            "schema": {"type": "string"}
        }),
        json!({"$ref": "#/components/parameters/Cursor"}),
        json!({
            "name": "fields", "in": "query", "required": false,
            "description": format!("Comma-separated fields to return (default: all). Fields: {}.", fields.join(", ")),
            "schema": {"type": "string"}
        }),
    ];
    if !relations.is_empty() {
        params.push(json!({
            "name": "expand", "in": "query", "required": false,
            "description": format!("Comma-separated relation fields whose records are inlined under `expand`. Relations: {}.", relations.join(", ")),
            "schema": {"type": "string"}
        }));
    }
    params.push(json!({"$ref": "#/components/parameters/Total"}));
    Json::Array(params)
}

/// Marks every operation of a deprecated collection.
fn mark_deprecated(c: &Collection, item: &mut Json) {
    let Some(d) = &c.deprecation else { return };
    if let Json::Object(ops) = item {
        for (method, op) in ops.iter_mut() {
            if method == "parameters" {
                continue;
            }
            op["deprecated"] = json!(true);
            let desc = op
                .get("description")
                .and_then(Json::as_str)
                .map_or(String::new(), |s| format!("{s} "));
            op["description"] = json!(format!(
                "{desc}{} Responses carry Deprecation and Sunset headers.",
                crate::json_schema::deprecation_note(d)
            ));
        }
    }
}

fn collection_paths(c: &Collection, paths: &mut Map<String, Json>) {
    let n = &c.name;
    let p = pascal(n);
    let tag = json!([n]);
    let record = format!("#/components/schemas/{p}Record");
    let id_param = json!({
        "name": "id", "in": "path", "required": true,
        "description": "The record's id.",
        "schema": {"type": "string", "format": "uuid"}
    });
    let mut created = with_etag_header(json_body(&record, "Created."));
    // Links let clients (and stateful testers) follow the new record's id.
    created["links"] = json!({
        "GetRecord": {"operationId": format!("{n}.get"), "parameters": {"id": "$response.body#/id"}},
        "UpdateRecord": {"operationId": format!("{n}.update"), "parameters": {"id": "$response.body#/id"}},
        "DeleteRecord": {"operationId": format!("{n}.delete"), "parameters": {"id": "$response.body#/id"}}
    });
    created["headers"]["Location"] = json!({
        "description": "URL of the new record.",
        "schema": {"type": "string", "format": "uri-reference"}
    });
    paths.insert(
        format!("/v1/{n}"),
        json!({
            "get": {
                "operationId": format!("{n}.list"),
                "summary": format!("List {n}"),
                "description": "One page of records matching `filter`, in `sort` order (default newest first). Follow `next_cursor` for the next page.",
                "tags": tag,
                "parameters": list_parameters(c),
                "responses": responses(("200", json_body(&format!("#/components/schemas/{p}List"), "A page of records.")), &["bad-request"]),
            },
            "post": {
                "operationId": format!("{n}.create"),
                "summary": format!("Create a record in {n}"),
                "tags": tag,
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{p}Create")}}}
                },
                "responses": responses(("201", created), &["bad-request", "conflict", "payload-too-large", "unsupported-media-type", "validation"]),
            }
        }),
    );
    let patch_body = json!({"$ref": format!("#/components/schemas/{p}Patch")});
    let mut get_responses = responses(
        ("200", with_etag_header(json_body(&record, "The record."))),
        &["bad-request", "not-found", "precondition-failed"],
    );
    get_responses["304"] = json!({
        "description": "Not modified: If-None-Match matched the current ETag.",
        "headers": {"ETag": {"$ref": "#/components/headers/ETag"}, "X-Request-Id": request_id_header()}
    });
    paths.insert(
        format!("/v1/{n}/{{id}}"),
        json!({
            "parameters": [id_param],
            "get": {
                "operationId": format!("{n}.get"),
                "summary": format!("Get a record of {n}"),
                "tags": tag,
                "parameters": [{"$ref": "#/components/parameters/IfNoneMatch"}, {"$ref": "#/components/parameters/IfMatch"}],
                "responses": get_responses,
            },
            "patch": {
                "operationId": format!("{n}.update"),
                "summary": format!("Update a record of {n}"),
                "description": "A JSON merge patch (RFC 7396): only the fields sent change; null clears an optional field; json fields are merged.",
                "tags": tag,
                "parameters": [{"$ref": "#/components/parameters/IfMatch"}, {"$ref": "#/components/parameters/IfNoneMatch"}],
                "requestBody": {
                    "required": true,
                    "content": {
                        "application/merge-patch+json": {"schema": patch_body},
                        "application/json": {"schema": patch_body}
                    }
                },
                "responses": responses(("200", with_etag_header(json_body(&record, "The updated record."))), &["bad-request", "not-found", "conflict", "precondition-failed", "payload-too-large", "unsupported-media-type", "validation"]),
            },
            "delete": {
                "operationId": format!("{n}.delete"),
                "summary": format!("Delete a record of {n}"),
                "tags": tag,
                "parameters": [{"$ref": "#/components/parameters/IfMatch"}, {"$ref": "#/components/parameters/IfNoneMatch"}],
                "responses": responses(("204", json!({"description": "Deleted.", "headers": {"X-Request-Id": request_id_header()}})), &["bad-request", "not-found", "conflict", "precondition-failed"]),
            }
        }),
    );
    for key in [format!("/v1/{n}"), format!("/v1/{n}/{{id}}")] {
        if let Some(item) = paths.get_mut(&key) {
            secure(c, item, key.ends_with("{id}"));
            mark_deprecated(c, item);
        }
    }
}

/// Who may call each operation: `security`, the permission in words, the
/// 401/403 answers, and the tenant header of tenant-scoped collections.
fn secure(c: &Collection, item: &mut Json, one: bool) {
    let Json::Object(ops) = item else { return };
    for (method, op) in ops.iter_mut() {
        let action = match (method.as_str(), one) {
            ("get", false) => Action::List,
            ("post", false) => Action::Create,
            ("get", true) => Action::Read,
            ("patch", true) => Action::Update,
            ("delete", true) => Action::Delete,
            _ => continue,
        };
        op["security"] = crate::auth_paths::collection_security(c, action);
        let note = crate::auth_paths::permission_note(c, action);
        let desc = op
            .get("description")
            .and_then(Json::as_str)
            .map_or(note.clone(), |d| format!("{d} {note}"));
        op["description"] = json!(desc);
        if let Some(Json::Object(r)) = op.get_mut("responses") {
            r.insert("401".into(), problem_ref("unauthorized"));
            r.insert("403".into(), problem_ref("forbidden"));
        }
        if c.tenant_scoped {
            let tenant = json!({"$ref": "#/components/parameters/Tenant"});
            match op.get_mut("parameters") {
                Some(Json::Array(params)) => params.push(tenant),
                _ => op["parameters"] = json!([tenant]),
            }
        }
    }
}

fn system_paths(paths: &mut Map<String, Json>) {
    let status = |desc: &str, value: &str| {
        json!({
            "description": desc,
            "headers": {"X-Request-Id": request_id_header()},
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["status"], "additionalProperties": false,
                "properties": {"status": {"type": "string", "const": value}}
            }}}
        })
    };
    paths.insert(
        "/healthz".into(),
        json!({"get": {
            "operationId": "system.health",
            "summary": "Liveness: the process is up",
            "tags": ["system"],
            "responses": {"200": status("The process is alive.", "ok")}
        }}),
    );
    paths.insert(
        "/readyz".into(),
        json!({"get": {
            "operationId": "system.ready",
            "summary": "Readiness: the database answers and the schema is applied",
            "tags": ["system"],
            "responses": {"200": status("Ready to serve.", "ready"), "503": problem_ref("unavailable")}
        }}),
    );
    paths.insert(
        "/v1/openapi.json".into(),
        json!({"get": {
            "operationId": "system.openapi",
            "summary": "This OpenAPI 3.1 document",
            "tags": ["system"],
            "responses": {"200": {
                "description": "The contract.",
                "headers": {"X-Request-Id": request_id_header()},
                "content": {"application/json": {"schema": {"type": "object"}}}
            }}
        }}),
    );
    paths.insert(
        "/docs".into(),
        json!({"get": {
            "operationId": "system.docs",
            "summary": "Human-readable API reference (HTML, works offline)",
            "tags": ["system"],
            "responses": {"200": {
                "description": "The reference viewer.",
                "headers": {"X-Request-Id": request_id_header()},
                "content": {"text/html": {"schema": {"type": "string"}}}
            }}
        }}),
    );
}

fn components(schema: &Schema) -> Json {
    let mut schemas = Map::new();
    crate::auth_paths::identity_schemas(&mut schemas, &schema.role_names());
    for c in &schema.collections {
        let p = pascal(&c.name);
        schemas.insert(format!("{p}Create"), create_schema(c));
        schemas.insert(format!("{p}Patch"), patch_schema(c));
        schemas.insert(format!("{p}Record"), record_schema(c));
        schemas.insert(format!("{p}Item"), item_schema(c));
        schemas.insert(
            format!("{p}List"),
            json!({
                "type": "object",
                "required": ["items", "next_cursor"],
                "additionalProperties": false,
                "properties": {
                    "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{p}Item")}},
                    "next_cursor": {"type": ["string", "null"], "description": "Pass as `cursor` (with the same filter and sort) for the next page; null on the last page."},
                    "total": {"type": "integer", "minimum": 0, "description": "Records matching the filter; only with `total=true` (costs a count over the matches)."}
                }
            }),
        );
    }
    let slugs: Vec<Json> = PROBLEMS
        .iter()
        .map(|(s, ..)| json!(problem_type(s)))
        .collect();
    schemas.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "description": "An RFC 9457 problem detail.",
            "required": ["type", "title", "status", "detail", "instance", "request_id"],
            "properties": {
                "type": {"type": "string", "format": "uri", "enum": slugs, "description": "Stable problem type."},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "instance": {"type": "string", "format": "uri-reference", "description": "The request path."},
                "request_id": {"type": "string", "description": "Also in the X-Request-Id header and the logs."},
                "errors": {
                    "type": "array",
                    "description": "Per-field errors (validation and conflicts).",
                    "items": {"$ref": "#/components/schemas/FieldError"}
                }
            }
        }),
    );
    schemas.insert(
        "FieldError".into(),
        json!({
            "type": "object",
            "required": ["field", "code", "message"],
            "additionalProperties": false,
            "properties": {
                "field": {"type": "string", "description": "Top-level field name; empty for the whole body."},
                "code": {"type": "string", "enum": ["required", "type", "min_length", "max_length", "pattern", "minimum", "maximum", "enum", "format", "unknown_field", "read_only", "relation_not_found", "unique", "invalid", "password_policy", "wrong_password", "no_account", "not_a_member"]},
                "message": {"type": "string"}
            }
        }),
    );
    let mut responses = Map::new();
    for (slug, _, title, description) in PROBLEMS {
        let mut headers = json!({"X-Request-Id": request_id_header()});
        if *slug == "method-not-allowed" {
            headers["Allow"] =
                json!({"schema": {"type": "string"}, "description": "The allowed methods."});
        }
        responses.insert(
            response_name(slug),
            json!({
                "description": format!("{title}: {description}"),
                "headers": headers,
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
            }),
        );
    }
    json!({
        "schemas": schemas,
        "responses": responses,
        "securitySchemes": crate::auth_paths::security_schemes(),
        "parameters": {
            "Tenant": {
                "name": "X-Plinth-Tenant", "in": "header", "required": false,
                "description": "The tenant the request acts in (its id). Needed for tenant-scoped collections unless the access token was issued for a tenant; API keys act in their own tenant.",
                "schema": {"type": "string", "format": "uuid"}
            },
            "Limit": {
                "name": "limit", "in": "query", "required": false,
                "description": "Page size.",
                "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}
            },
            "Cursor": {
                "name": "cursor", "in": "query", "required": false,
                "description": "The `next_cursor` of the previous page. Opaque and tamper-proof; valid only with the same filter and sort.",
                "schema": {"type": "string"}
            },
            "Total": {
                "name": "total", "in": "query", "required": false,
                "description": "Also return `total`, the number of matching records (a count over all matches: costly on large collections).",
                "schema": {"type": "boolean", "default": false}
            },
            "IfMatch": {
                "name": "If-Match", "in": "header", "required": false,
                "description": "Only act if the record's current ETag is listed (strong comparison; `*` matches any existing record). A value that is not an entity-tag list never matches.",
                "schema": {"type": "string"}
            },
            "IfNoneMatch": {
                "name": "If-None-Match", "in": "header", "required": false,
                "description": "On GET, answer 304 if the record's ETag is listed; on writes, fail with 412 if it is. A value that is not an entity-tag list never matches.",
                "schema": {"type": "string"}
            }
        },
        "headers": {
            "ETag": {
                "description": "Strong entity tag of the record's current version.",
                "schema": {"type": "string"}
            },
            "RequestId": {
                "description": "The request id: the client's X-Request-Id if valid, else generated.",
                "schema": {"type": "string"}
            }
        }
    })
}

/// The whole contract for `schema`.
pub fn openapi(schema: &Schema) -> Json {
    let mut paths = Map::new();
    for c in &schema.collections {
        collection_paths(c, &mut paths);
    }
    system_paths(&mut paths);
    crate::auth_paths::identity_paths(&mut paths);
    let mut tags: Vec<Json> = schema
        .collections
        .iter()
        .map(|c| {
            let mut t = json!({"name": c.name});
            if let Some(d) = &c.description {
                t["description"] = json!(d);
            }
            t
        })
        .collect();
    tags.push(
        json!({"name": "system", "description": "Health, readiness and the contract itself."}),
    );
    tags.push(json!({"name": "auth", "description": "Accounts, sessions, tenants, members and API keys."}));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Plinth API",
            "version": "1",
            "description": "Generated by Plinth from plinth.toml. Errors are RFC 9457 problem details (application/problem+json)."
        },
        "servers": [{"url": "/", "description": "This server"}],
        "security": [{}, {"accessToken": []}, {"apiKey": []}],
        "tags": tags,
        "paths": paths,
        "components": components(schema),
    })
}
