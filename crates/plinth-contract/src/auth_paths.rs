//! The contract of the identity routes (`/v1/auth/*`, `/v1/tenants/*`,
//! `/.well-known/jwks.json`), the security schemes, and what each collection
//! route needs (its `security` and the permission in words).

use serde_json::{Map, Value as Json, json};

use plinth_domain::{Action, Collection, Permission};

fn problem(slug: &str) -> Json {
    json!({"$ref": format!("#/components/responses/{}", crate::json_schema::pascal(&slug.replace('-', "_")))})
}

fn body_ref(name: &str) -> Json {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}})
}

fn ok(status: &str, description: &str, schema: Option<&str>) -> (String, Json) {
    let mut r = json!({
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
    });
    if let Some(s) = schema {
        r["content"] =
            json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}")}}});
    }
    (status.to_owned(), r)
}

fn responses(ok: (String, Json), problems: &[&str]) -> Json {
    let mut m = Map::new();
    m.insert(ok.0, ok.1);
    for slug in problems
        .iter()
        .chain(&["too-many-requests", "internal", "unavailable"])
    {
        if let Some((_, status, ..)) = crate::openapi::PROBLEMS.iter().find(|(s, ..)| s == slug) {
            m.insert(status.to_string(), problem(slug));
        }
    }
    Json::Object(m)
}

/// Signed in as a user (access token).
fn user_only() -> Json {
    json!([{"accessToken": []}])
}

fn op(id: &str, summary: &str, security: Json, responses: Json) -> Json {
    json!({
        "operationId": id,
        "summary": summary,
        "tags": ["auth"],
        "security": security,
        "responses": responses,
    })
}

fn with_body(mut o: Json, schema: &str) -> Json {
    o["requestBody"] = body_ref(schema);
    o
}

fn path_param(name: &str, description: &str) -> Json {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string", "format": "uuid"}})
}

/// Adds the identity routes.
pub(crate) fn identity_paths(paths: &mut Map<String, Json>) {
    let anon = json!([{}]);
    let body_problems = [
        "bad-request",
        "payload-too-large",
        "unsupported-media-type",
        "validation",
    ];
    let mut signup_problems = body_problems.to_vec();
    signup_problems.extend(["conflict", "forbidden"]);
    paths.insert(
        "/v1/auth/signup".into(),
        json!({"post": with_body(op("auth.signup", "Create an account and sign in", anon.clone(),
            responses(ok("201", "The new account and its first session's tokens.", Some("SignedIn")), &signup_problems)), "SignUp")}),
    );
    let mut signin_problems = body_problems.to_vec();
    signin_problems.push("unauthorized");
    paths.insert(
        "/v1/auth/signin".into(),
        json!({"post": with_body(op("auth.signin", "Sign in with email and password", anon.clone(),
            responses(ok("200", "Tokens of a new session. Unknown account and wrong password give the same 401.", Some("SignedIn")), &signin_problems)), "SignIn")}),
    );
    paths.insert(
        "/v1/auth/refresh".into(),
        json!({"post": with_body(op("auth.refresh", "Trade a refresh token for new tokens (rotation)", anon.clone(),
            responses(ok("200", "New tokens; the refresh token sent is now spent. Presenting a spent one revokes the whole session.", Some("Tokens")), &signin_problems)), "RefreshRequest")}),
    );
    paths.insert(
        "/v1/auth/signout".into(),
        json!({"post": op("auth.signout", "End the current session", user_only(),
            responses(ok("204", "Signed out: the session's tokens no longer work.", None), &["unauthorized", "forbidden"]))}),
    );
    paths.insert(
        "/v1/auth/me".into(),
        json!({"get": op("auth.me", "Who the credential belongs to", json!([{"accessToken": []}, {"apiKey": []}]),
            responses(ok("200", "The principal: a user with their tenants, or an API key.", Some("Me")), &["bad-request", "unauthorized", "forbidden"]))}),
    );
    let mut pw_problems = body_problems.to_vec();
    pw_problems.extend(["unauthorized", "forbidden"]);
    paths.insert(
        "/v1/auth/password".into(),
        json!({"post": with_body(op("auth.password", "Change the password; every other session is revoked", user_only(),
            responses(ok("204", "Changed.", None), &pw_problems)), "PasswordChange")}),
    );
    paths.insert(
        "/v1/auth/events".into(),
        json!({"get": op("auth.events", "Security events of my account (e.g. refresh-token reuse)", user_only(),
            responses(ok("200", "The latest 100 events, newest first.", Some("SecurityEventList")), &["unauthorized", "forbidden"]))}),
    );
    paths.insert(
        "/v1/auth/sessions".into(),
        json!({
            "get": op("auth.sessions", "My live sessions", user_only(),
                responses(ok("200", "Sessions, newest first.", Some("SessionList")), &["unauthorized", "forbidden"])),
            "delete": op("auth.sessions.revoke_all", "Revoke every session, this one included", user_only(),
                responses(ok("204", "Revoked.", None), &["unauthorized", "forbidden"]))
        }),
    );
    paths.insert(
        "/v1/auth/sessions/{id}".into(),
        json!({
            "parameters": [path_param("id", "The session's id.")],
            "delete": op("auth.sessions.revoke", "Revoke one of my sessions", user_only(),
                responses(ok("204", "Revoked.", None), &["unauthorized", "forbidden", "not-found"]))
        }),
    );
    let mut tenant_body = body_problems.to_vec();
    tenant_body.extend(["unauthorized", "forbidden"]);
    paths.insert(
        "/v1/tenants".into(),
        json!({
            "get": op("tenants.list", "Tenants I belong to, with my role", user_only(),
                responses(ok("200", "My tenants.", Some("TenantList")), &["unauthorized", "forbidden"])),
            "post": with_body(op("tenants.create", "Create a tenant; I become its owner", user_only(),
                responses(ok("201", "The new tenant.", Some("Tenant")), &tenant_body)), "NewTenant")
        }),
    );
    let tenant = path_param("tenant", "The tenant's id.");
    let mut member_body = tenant_body.clone();
    member_body.extend(["not-found", "conflict"]);
    paths.insert(
        "/v1/tenants/{tenant}/members".into(),
        json!({
            "parameters": [tenant.clone()],
            "get": op("tenants.members", "Members of a tenant (members only)", user_only(),
                responses(ok("200", "Members.", Some("MemberList")), &["unauthorized", "forbidden", "not-found"])),
            "post": with_body(op("tenants.members.add", "Add an existing account (owners and admins)", user_only(),
                responses(ok("201", "The new member.", Some("Member")), &member_body)), "NewMember")
        }),
    );
    paths.insert(
        "/v1/tenants/{tenant}/members/{user}".into(),
        json!({
            "parameters": [tenant.clone(), path_param("user", "The member's user id.")],
            "patch": with_body(op("tenants.members.update", "Change a member's role", user_only(),
                responses(ok("200", "The member.", Some("Member")), &member_body)), "RoleChange"),
            "delete": op("tenants.members.remove", "Remove a member (or leave)", user_only(),
                responses(ok("204", "Removed.", None), &["unauthorized", "forbidden", "not-found", "conflict"]))
        }),
    );
    paths.insert(
        "/v1/tenants/{tenant}/api-keys".into(),
        json!({
            "parameters": [tenant.clone()],
            "get": op("tenants.api_keys", "API keys of a tenant (owners and admins)", user_only(),
                responses(ok("200", "Keys, without their secrets.", Some("ApiKeyList")), &["unauthorized", "forbidden", "not-found"])),
            "post": with_body(op("tenants.api_keys.create", "Create an API key; the key is shown once", user_only(),
                responses(ok("201", "The key, with `key` (shown only now).", Some("NewApiKeyResult")), &member_body)), "NewApiKey")
        }),
    );
    paths.insert(
        "/v1/tenants/{tenant}/api-keys/{id}".into(),
        json!({
            "parameters": [tenant, path_param("id", "The key's id.")],
            "delete": op("tenants.api_keys.revoke", "Revoke an API key", user_only(),
                responses(ok("204", "Revoked: the next request with it fails.", None), &["unauthorized", "forbidden", "not-found"]))
        }),
    );
    paths.insert(
        "/.well-known/jwks.json".into(),
        json!({"get": {
            "operationId": "auth.jwks",
            "summary": "Public keys that verify access tokens (RFC 7517)",
            "tags": ["auth"],
            "security": [{}],
            "responses": {"200": {
                "description": "The JWK Set.",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/jwk-set+json": {"schema": {"$ref": "#/components/schemas/Jwks"}}}
            }}
        }}),
    );
}

/// Schemas of the identity routes.
pub(crate) fn identity_schemas(schemas: &mut Map<String, Json>, roles: &[&str]) {
    let uuid = json!({"type": "string", "format": "uuid"});
    let ts = json!({"type": "string", "format": "date-time"});
    let email = json!({"type": "string", "format": "email", "maxLength": 254});
    let password = json!({"type": "string", "minLength": 1, "maxLength": 256, "description": "New passwords need at least the configured length (12 by default), may not equal the email, and may be checked against a breached-password list."});
    let role = json!({"type": "string", "enum": roles});
    let obj = |props: Json, required: &[&str]| json!({"type": "object", "additionalProperties": false, "properties": props, "required": required});
    let list = |item: &str| {
        json!({"type": "object", "additionalProperties": false, "required": ["items"],
            "properties": {"items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}}}})
    };
    let user = obj(
        json!({"id": uuid, "email": email, "created_at": ts}),
        &["id", "email", "created_at"],
    );
    let tokens = json!({
        "access_token": {"type": "string", "description": "EdDSA JWT; send as `Authorization: Bearer`."},
        "token_type": {"type": "string", "const": "Bearer"},
        "expires_in": {"type": "integer", "description": "Seconds the access token is valid."},
        "refresh_token": {"type": "string", "description": "Opaque, single use: trade it at /v1/auth/refresh."},
        "session_id": uuid,
    });
    let mut signed_in = tokens.clone();
    signed_in["user"] = user.clone();
    let token_keys = [
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "session_id",
    ];
    let mut signed_in_keys = token_keys.to_vec();
    signed_in_keys.push("user");
    let tenant_choice = json!({"type": "string", "format": "uuid", "description": "Issue the access token for this tenant (you must be a member)."});
    for (name, s) in [
        (
            "SignUp",
            obj(
                json!({"email": email, "password": password}),
                &["email", "password"],
            ),
        ),
        (
            "SignIn",
            obj(
                json!({"email": {"type": "string", "maxLength": 1024}, "password": {"type": "string", "maxLength": 1024}, "tenant_id": tenant_choice}),
                &["email", "password"],
            ),
        ),
        (
            "RefreshRequest",
            obj(
                json!({"refresh_token": {"type": "string", "maxLength": 1024}, "tenant_id": tenant_choice}),
                &["refresh_token"],
            ),
        ),
        ("Tokens", obj(tokens, &token_keys)),
        ("SignedIn", obj(signed_in, &signed_in_keys)),
        (
            "PasswordChange",
            obj(
                json!({"current_password": {"type": "string", "maxLength": 1024}, "new_password": password}),
                &["current_password", "new_password"],
            ),
        ),
        (
            "Me",
            json!({"type": "object", "required": ["kind"], "properties": {
                "kind": {"type": "string", "enum": ["user", "api_key"]},
                "user": user,
                "session_id": uuid,
                "api_key_id": uuid,
                "tenant_id": {"type": ["string", "null"], "format": "uuid"},
                "role": {"type": ["string", "null"]},
                "tenants": {"type": "array", "items": obj(json!({"id": uuid, "name": {"type": "string"}, "role": {"type": "string"}}), &["id", "name", "role"])}
            }}),
        ),
        (
            "Session",
            obj(
                json!({"id": uuid, "current": {"type": "boolean"}, "user_agent": {"type": ["string", "null"]}, "ip": {"type": ["string", "null"]}, "created_at": ts, "last_used_at": ts, "expires_at": ts}),
                &[
                    "id",
                    "current",
                    "user_agent",
                    "ip",
                    "created_at",
                    "last_used_at",
                    "expires_at",
                ],
            ),
        ),
        ("SessionList", list("Session")),
        (
            "SecurityEvent",
            obj(
                json!({"id": uuid, "at": ts, "kind": {"type": "string"}, "session_id": {"type": ["string", "null"]}, "ip": {"type": ["string", "null"]}, "detail": {"type": ["string", "null"]}}),
                &["id", "at", "kind", "session_id", "ip", "detail"],
            ),
        ),
        ("SecurityEventList", list("SecurityEvent")),
        (
            "NewTenant",
            obj(
                json!({"name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S", "description": "Trimmed; must not be blank."}}),
                &["name"],
            ),
        ),
        (
            "Tenant",
            obj(
                json!({"id": uuid, "name": {"type": "string"}, "created_at": ts, "role": {"type": "string"}}),
                &["id", "name", "created_at", "role"],
            ),
        ),
        ("TenantList", list("Tenant")),
        (
            "NewMember",
            obj(json!({"email": email, "role": role}), &["email", "role"]),
        ),
        ("RoleChange", obj(json!({"role": role}), &["role"])),
        (
            "Member",
            obj(
                json!({"user_id": uuid, "email": {"type": "string"}, "role": {"type": "string"}, "created_at": ts}),
                &["user_id", "email", "role", "created_at"],
            ),
        ),
        ("MemberList", list("Member")),
        (
            "NewApiKey",
            obj(
                json!({"name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}, "role": role, "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "When the key stops working (optional, in the future)."}}),
                &["name", "role"],
            ),
        ),
    ] {
        schemas.insert(name.into(), s);
    }
    let key_props = json!({
        "id": uuid, "name": {"type": "string"}, "role": {"type": "string"},
        "prefix": {"type": "string", "description": "Shown in listings: the key starts plk_<prefix>_."},
        "created_by": {"type": "string"}, "created_at": ts,
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "last_used_at": {"type": ["string", "null"], "format": "date-time", "description": "Updated at most once a minute."},
        "revoked_at": {"type": ["string", "null"], "format": "date-time"}
    });
    let key_required = [
        "id",
        "name",
        "role",
        "prefix",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ];
    schemas.insert("ApiKey".into(), obj(key_props.clone(), &key_required));
    let mut with_key = key_props;
    with_key["key"] = json!({"type": "string", "description": "The whole key, plk_<prefix>_<secret>. Shown only in this response; store it now."});
    let mut with_key_required = key_required.to_vec();
    with_key_required.push("key");
    schemas.insert("NewApiKeyResult".into(), obj(with_key, &with_key_required));
    schemas.insert("ApiKeyList".into(), list("ApiKey"));
    schemas.insert(
        "Jwks".into(),
        json!({"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": {
            "type": "object", "required": ["kty", "crv", "x", "kid", "alg", "use"],
            "properties": {"kty": {"const": "OKP"}, "crv": {"const": "Ed25519"}, "x": {"type": "string"}, "kid": {"type": "string"}, "alg": {"const": "EdDSA"}, "use": {"const": "sig"}}
        }}}}),
    );
}

/// `components.securitySchemes`.
pub(crate) fn security_schemes() -> Json {
    json!({
        "accessToken": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "A short-lived EdDSA access token from /v1/auth/signin or /v1/auth/refresh. Its session and the user's role are checked on every request."
        },
        "apiKey": {
            "type": "http", "scheme": "bearer", "bearerFormat": "plk_<prefix>_<secret>",
            "description": "An API key of one tenant, created by its owners or admins; it acts with the role it was given."
        }
    })
}

/// Who may perform `action` on `c`, in words, for the operation description.
pub(crate) fn permission_note(c: &Collection, action: Action) -> String {
    let who = match c.permissions.get(action) {
        Permission::Nobody => "nobody (no permission is declared for this action)".to_owned(),
        Permission::Public => "anyone".to_owned(),
        Permission::Authenticated if c.tenant_scoped => "members of the tenant".to_owned(),
        Permission::Authenticated => "any signed-in user or API key".to_owned(),
        Permission::Roles(r) => format!("the roles {}", r.join(", ")),
        Permission::Rule(src) => format!(
            "callers for whom the rule `{src}` holds (records it does not match are not found)"
        ),
    };
    let tenant = if c.tenant_scoped {
        " Tenant-scoped: name the tenant with X-Plinth-Tenant (or use a token issued for it); another tenant's records are never visible."
    } else {
        ""
    };
    format!("Permission: {who}.{tenant}")
}

/// The `security` of a collection operation.
pub(crate) fn collection_security(c: &Collection, action: Action) -> Json {
    match c.permissions.get(action) {
        Permission::Public | Permission::Rule(_) => {
            json!([{}, {"accessToken": []}, {"apiKey": []}])
        }
        _ => json!([{"accessToken": []}, {"apiKey": []}]),
    }
}
