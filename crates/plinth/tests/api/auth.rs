//! Identity, tenants and access control through the real binary: accounts,
//! tokens, sessions, refresh rotation, tenants, roles, permission rules,
//! API keys, and the hostile cases (forged tokens, cross-tenant probing,
//! mass assignment, brute force).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Env, Resp, Server, example_schema_path, run_cli};

/// A small SaaS: projects and tasks per tenant, private notes, a custom role.
const SAAS: &str = r#"
[roles.editor]
description = "Edits every project."

[collections.projects]
tenant_scoped = true

[collections.projects.permissions]
list   = ["owner", "admin", "member", "viewer", "editor"]
read   = ["owner", "admin", "member", "viewer", "editor"]
create = ["owner", "admin", "member", "editor"]
update = "role in ['owner', 'admin', 'editor'] || record.owner = auth.user_id"
delete = ["owner", "admin"]

[collections.projects.fields]
name  = { type = "text", required = true }
code  = { type = "text", unique = true }
owner = { type = "relation", collection = "users", default = "auth.user_id" }

[collections.tasks]
tenant_scoped = true
permissions = "authenticated"

[collections.tasks.fields]
project  = { type = "relation", collection = "projects", required = true }
title    = { type = "text", required = true }
assignee = { type = "relation", collection = "users" }

[collections.notes]
tenant_scoped = true

[collections.notes.permissions]
list   = "record.author = auth.user_id"
read   = "record.author = auth.user_id"
create = "auth.kind = 'user'"
update = "record.author = auth.user_id"
delete = "record.author = auth.user_id"

[collections.notes.fields]
text   = { type = "text", required = true }
author = { type = "relation", collection = "users", required = true, default = "auth.user_id" }
"#;

const PASSWORD: &str = "correct horse battery staple";

/// Who sends a request: a bearer credential and/or a tenant.
#[derive(Clone, Default)]
struct Who {
    token: Option<String>,
    tenant: Option<String>,
}

impl Who {
    fn anon() -> Who {
        Who::default()
    }
    fn in_tenant(&self, tenant: &str) -> Who {
        Who {
            token: self.token.clone(),
            tenant: Some(tenant.to_owned()),
        }
    }
}

async fn call(s: &Server, who: &Who, method: Method, path: &str, body: Option<&Value>) -> Resp {
    let auth = who.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if let Some(t) = &who.tenant {
        headers.push(("x-plinth-tenant", t));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    s.send(
        method,
        path,
        &headers,
        body.map(|b| serde_json::to_vec(b).unwrap()),
    )
    .await
}

/// A signed-up user: its id, tokens, and a `Who` with its access token.
struct User {
    id: String,
    email: String,
    access: String,
    refresh: String,
}

impl User {
    fn who(&self) -> Who {
        Who {
            token: Some(self.access.clone()),
            tenant: None,
        }
    }
}

async fn signup(s: &Server, email: &str) -> User {
    let r = s
        .post(
            "/v1/auth/signup",
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let b = r.created();
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    User {
        id: b["user"]["id"].as_str().unwrap().to_owned(),
        email: b["user"]["email"].as_str().unwrap().to_owned(),
        access: b["access_token"].as_str().unwrap().to_owned(),
        refresh: b["refresh_token"].as_str().unwrap().to_owned(),
    }
}

async fn signin(s: &Server, email: &str, password: &str) -> Resp {
    s.post(
        "/v1/auth/signin",
        &json!({"email": email, "password": password}),
    )
    .await
}

async fn new_tenant(s: &Server, owner: &User, name: &str) -> String {
    let r = call(
        s,
        &owner.who(),
        Method::POST,
        "/v1/tenants",
        Some(&json!({"name": name})),
    )
    .await;
    r.created()["id"].as_str().unwrap().to_owned()
}

async fn add_member(s: &Server, by: &User, tenant: &str, email: &str, role: &str) {
    call(
        s,
        &by.who(),
        Method::POST,
        &format!("/v1/tenants/{tenant}/members"),
        Some(&json!({"email": email, "role": role})),
    )
    .await
    .expect_status(201);
}

/// The RFC 9457 body without what differs per request.
fn problem_shape(r: &Resp) -> Value {
    let mut b = r.json();
    let m = b.as_object_mut().unwrap();
    m.remove("request_id");
    m.remove("instance");
    b
}

#[tokio::test]
async fn sign_up_sign_in_me_and_no_account_enumeration() {
    let env = Env::with_schema(SAAS);
    let s = env.start().await;
    let ann = signup(&s, "  Ann@Example.COM ").await;
    assert_eq!(ann.email, "ann@example.com", "emails are normalised");
    assert!(ann.refresh.starts_with("plr_"));

    // The same email in another spelling is the same account.
    let again = s
        .post(
            "/v1/auth/signup",
            &json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    again.expect_status(409);

    let ok = signin(&s, "ANN@example.com", PASSWORD).await.ok();
    assert_eq!(ok["user"]["id"], json!(ann.id));
    let me = call(&s, &ann.who(), Method::GET, "/v1/auth/me", None)
        .await
        .ok();
    assert_eq!(me["user"]["email"], json!("ann@example.com"));
    assert_eq!(me["kind"], json!("user"));

    // Unknown account and wrong password: same status, same body.
    let wrong = signin(&s, "ann@example.com", "not the password at all").await;
    let unknown = signin(&s, "nobody@example.com", "not the password at all").await;
    wrong.expect_status(401);
    unknown.expect_status(401);
    assert_eq!(problem_shape(&wrong), problem_shape(&unknown));
    assert_eq!(
        wrong.header("www-authenticate"),
        unknown.header("www-authenticate")
    );

    // Password rules, with a reason per broken rule.
    let weak = s
        .post(
            "/v1/auth/signup",
            &json!({"email": "bob@example.com", "password": "short"}),
        )
        .await;
    weak.expect_status(422);
    assert_eq!(weak.json()["errors"][0]["field"], json!("password"));
    let bad_email = s
        .post(
            "/v1/auth/signup",
            &json!({"email": "not-an-email", "password": PASSWORD}),
        )
        .await;
    bad_email.expect_status(422);
    // No credential on a route that needs one: 401 with a Bearer challenge.
    let anon = s.get("/v1/auth/me").await;
    anon.expect_status(401);
    assert_eq!(anon.header("www-authenticate").as_deref(), Some("Bearer"));
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// `header.payload.signature` parts of a JWT.
fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

#[tokio::test]
async fn forged_tampered_and_foreign_tokens_are_refused() {
    let env = Env::with_schema(SAAS);
    let s = env.start().await;
    let ann = signup(&s, "ann@example.com").await;
    let p = parts(&ann.access);
    assert_eq!(p.len(), 3);

    // The token's kid is published in the JWKS.
    let jwks = s.get("/.well-known/jwks.json").await.ok();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(jwks["keys"][0]["alg"], json!("EdDSA"));

    // alg=none with the real payload and no signature.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    // The same payload signed by another key that claims the server's kid.
    let other = plinth_auth::SigningKey::generate().unwrap();
    let other = plinth_auth::SigningKey::from_parts(kid.clone(), other.private_pkcs8, other.public)
        .unwrap();
    let ring = plinth_auth::KeyRing::new(other, []).unwrap();
    let claims = plinth_auth::Claims::new(
        &ann.id,
        "00000000-0000-7000-8000-000000000000",
        None,
        "plinth",
        "plinth",
        unix_now(),
        3600,
    )
    .unwrap();
    let other_key = ring.sign(&claims).unwrap();
    // Payload altered (one character), signature kept.
    let mut tampered_payload = p[1].clone().into_bytes();
    let last = tampered_payload.len() - 2;
    tampered_payload[last] = if tampered_payload[last] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let tampered = format!(
        "{}.{}.{}",
        p[0],
        String::from_utf8(tampered_payload).unwrap(),
        p[2]
    );
    let unknown_kid = {
        let k = plinth_auth::SigningKey::generate().unwrap();
        plinth_auth::KeyRing::new(k, [])
            .unwrap()
            .sign(&claims)
            .unwrap()
    };
    for (what, token) in [
        ("alg none", format!("{none_header}.{}.", p[1])),
        ("another key, same kid", other_key),
        ("tampered payload", tampered),
        ("unknown kid", unknown_kid),
        ("garbage", "not.a.jwt".to_owned()),
    ] {
        let r = call(
            &s,
            &Who {
                token: Some(token),
                tenant: None,
            },
            Method::GET,
            "/v1/auth/me",
            None,
        )
        .await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        let challenge = r.header("www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert_eq!(r.json()["type"], json!("urn:plinth:problem:unauthorized"));
    }
    // Not a bearer credential at all.
    let r = s
        .send(
            Method::GET,
            "/v1/auth/me",
            &[("authorization", "Basic YTpi")],
            None,
        )
        .await;
    r.expect_status(401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_request")
    );
    // The real token still works.
    call(&s, &ann.who(), Method::GET, "/v1/auth/me", None)
        .await
        .ok();
}

#[tokio::test]
async fn tokens_for_another_audience_or_issuer_and_expired_tokens_are_refused() {
    let env = Env::with_schema(SAAS);
    // Issued by a server with another audience and issuer ...
    let a = env
        .start_with(&["--token-audience", "app-a", "--token-issuer", "https://a"])
        .await;
    let ann = signup(&a, "ann@example.com").await;
    a.stop().await;
    let short = env.start_with(&["--access-token-ttl", "1"]).await;
    let quick = signin(&short, "ann@example.com", PASSWORD).await.ok();
    let quick = quick["access_token"].as_str().unwrap().to_owned();
    short.stop().await;
    // ... and checked by one with the defaults: the session is live, the token is not for it.
    let b = env.start().await;
    let r = call(&b, &ann.who(), Method::GET, "/v1/auth/me", None).await;
    r.expect_status(401);
    assert!(
        r.text.contains("issuer") || r.text.contains("audience"),
        "{}",
        r.text
    );
    // The short-lived token works now (and its verification is remembered) ...
    call(
        &b,
        &Who {
            token: Some(quick.clone()),
            tenant: None,
        },
        Method::GET,
        "/v1/auth/me",
        None,
    )
    .await
    .ok();
    // ... and not past its expiry (1 s lifetime + the 30 s clock leeway).
    tokio::time::sleep(Duration::from_secs(32)).await;
    let r = call(
        &b,
        &Who {
            token: Some(quick),
            tenant: None,
        },
        Method::GET,
        "/v1/auth/me",
        None,
    )
    .await;
    r.expect_status(401);
    assert!(r.text.contains("expired"), "{}", r.text);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let env = Env::with_schema(SAAS);
    let s = env.start().await;
    let ann = signup(&s, "ann@example.com").await;
    let laptop = signin(&s, "ann@example.com", PASSWORD).await.ok();
    let laptop_access = laptop["access_token"].as_str().unwrap().to_owned();

    let r1 = s
        .post("/v1/auth/refresh", &json!({"refresh_token": ann.refresh}))
        .await
        .ok();
    let refresh2 = r1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, ann.refresh, "rotated");
    let access2 = r1["access_token"].as_str().unwrap().to_owned();
    let who2 = Who {
        token: Some(access2),
        tenant: None,
    };
    call(&s, &who2, Method::GET, "/v1/auth/me", None).await.ok();

    // The spent token again: refused, and the family is revoked.
    let reuse = s
        .post("/v1/auth/refresh", &json!({"refresh_token": ann.refresh}))
        .await;
    reuse.expect_status(401);
    let after = s
        .post("/v1/auth/refresh", &json!({"refresh_token": refresh2}))
        .await;
    after.expect_status(401);
    // The family's access token dies with it, on the very next request.
    call(&s, &who2, Method::GET, "/v1/auth/me", None)
        .await
        .expect_status(401);
    // Another session of the same user is untouched and sees the security event.
    let laptop_who = Who {
        token: Some(laptop_access),
        tenant: None,
    };
    let events = call(&s, &laptop_who, Method::GET, "/v1/auth/events", None)
        .await
        .ok();
    assert_eq!(events["items"][0]["kind"], json!("refresh_token_reuse"));
    // Garbage refresh tokens are a plain 401.
    s.post("/v1/auth/refresh", &json!({"refresh_token": "plr_nope"}))
        .await
        .expect_status(401);
}

#[tokio::test]
async fn a_made_up_tenant_is_a_404_not_a_500() {
    let env = Env::with_schema(
        "[collections.guestbook]\ntenant_scoped = true\npermissions = \"public\"\n[collections.guestbook.fields]\nline = { type = \"text\", required = true }\n",
    );
    let s = env.start().await;
    let nowhere = Who::anon().in_tenant("01a21fc6-e309-7611-9b14-f80ea70cca49");
    let r = call(
        &s,
        &nowhere,
        Method::POST,
        "/v1/guestbook",
        Some(&json!({"line": "hi"})),
    )
    .await;
    r.expect_status(404);
    assert!(r.text.contains("tenant"), "{}", r.text);
    // Reads of a tenant that does not exist are simply empty.
    let list = call(&s, &nowhere, Method::GET, "/v1/guestbook?total=true", None)
        .await
        .ok();
    assert_eq!(list["total"], json!(0));
    // A real tenant works for anyone, as the collection is public.
    let ann = signup(&s, "ann@example.com").await;
    let t = new_tenant(&s, &ann, "T").await;
    call(
        &s,
        &Who::anon().in_tenant(&t),
        Method::POST,
        "/v1/guestbook",
        Some(&json!({"line": "hi"})),
    )
    .await
    .created();
}

#[tokio::test]
async fn breached_passwords_are_refused() {
    let env = Env::with_schema(SAAS);
    let list = env.dir().join("breached.txt");
    std::fs::write(&list, "# known leaks\nPassword123456\n\nletmeinletmein\n").unwrap();
    let s = env
        .start_with(&["--breached-passwords", list.to_str().unwrap()])
        .await;
    for pw in ["password123456", "LetMeInLetMeIn"] {
        let r = s
            .post(
                "/v1/auth/signup",
                &json!({"email": "ann@example.com", "password": pw}),
            )
            .await;
        r.expect_status(422);
        assert_eq!(r.json()["errors"][0]["code"], json!("password_policy"));
    }
    signup(&s, "ann@example.com").await;
}

#[tokio::test]
async fn idle_sessions_expire_and_tokens_can_carry_the_tenant() {
    let env = Env::with_schema(SAAS);
    let s = env.start_with(&["--refresh-idle-ttl", "1"]).await;
    let ann = signup(&s, "ann@example.com").await;
    let t = new_tenant(&s, &ann, "T").await;
    // A token issued for a tenant needs no header.
    let scoped = s
        .post(
            "/v1/auth/signin",
            &json!({"email": "ann@example.com", "password": PASSWORD, "tenant_id": t}),
        )
        .await
        .ok();
    let who = Who {
        token: Some(scoped["access_token"].as_str().unwrap().to_owned()),
        tenant: None,
    };
    call(
        &s,
        &who,
        Method::POST,
        "/v1/projects",
        Some(&json!({"name": "p"})),
    )
    .await
    .created();
    let me = call(&s, &who, Method::GET, "/v1/auth/me", None).await.ok();
    assert_eq!(me["tenant_id"], json!(t));
    assert_eq!(me["role"], json!("owner"));
    // Only for a tenant one belongs to.
    let bob = signup(&s, "bob@example.com").await;
    let r = s
        .post(
            "/v1/auth/signin",
            &json!({"email": bob.email, "password": PASSWORD, "tenant_id": t}),
        )
        .await;
    r.expect_status(422);
    assert_eq!(r.json()["errors"][0]["code"], json!("not_a_member"));
    // A refresh token unused for longer than the idle lifetime is dead.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    s.post("/v1/auth/refresh", &json!({"refresh_token": ann.refresh}))
        .await
        .expect_status(401);
}

#[tokio::test]
async fn sessions_are_listed_revoked_and_password_changes_end_the_others() {
    let env = Env::with_schema(SAAS);
    let s = env.start().await;
    let ann = signup(&s, "ann@example.com").await;
    let other = signin(&s, "ann@example.com", PASSWORD).await.ok();
    let other_who = Who {
        token: Some(other["access_token"].as_str().unwrap().to_owned()),
        tenant: None,
    };
    let other_sid = other["session_id"].as_str().unwrap().to_owned();
    let list = call(&s, &ann.who(), Method::GET, "/v1/auth/sessions", None)
        .await
        .ok();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["current"] == json!(true))
    );
    // Revoke the other session: its token fails on its next request.
    call(
        &s,
        &ann.who(),
        Method::DELETE,
        &format!("/v1/auth/sessions/{other_sid}"),
        None,
    )
    .await
    .expect_status(204);
    call(&s, &other_who, Method::GET, "/v1/auth/me", None)
        .await
        .expect_status(401);
    // Its refresh token is dead too.
    s.post(
        "/v1/auth/refresh",
        &json!({"refresh_token": other["refresh_token"]}),
    )
    .await
    .expect_status(401);

    // A third session; then a password change keeps only the current one.
    let third = signin(&s, "ann@example.com", PASSWORD).await.ok();
    let third_who = Who {
        token: Some(third["access_token"].as_str().unwrap().to_owned()),
        tenant: None,
    };
    let wrong = call(
        &s,
        &ann.who(),
        Method::POST,
        "/v1/auth/password",
        Some(&json!({"current_password": "wrong wrong wrong", "new_password": "a brand new passphrase"})),
    )
    .await;
    wrong.expect_status(422);
    call(
        &s,
        &ann.who(),
        Method::POST,
        "/v1/auth/password",
        Some(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"})),
    )
    .await
    .expect_status(204);
    call(&s, &third_who, Method::GET, "/v1/auth/me", None)
        .await
        .expect_status(401);
    call(&s, &ann.who(), Method::GET, "/v1/auth/me", None)
        .await
        .ok();
    signin(&s, "ann@example.com", PASSWORD)
        .await
        .expect_status(401);
    signin(&s, "ann@example.com", "a brand new passphrase")
        .await
        .ok();
    // Sign out, and revoke-all.
    call(&s, &ann.who(), Method::POST, "/v1/auth/signout", None)
        .await
        .expect_status(204);
    call(&s, &ann.who(), Method::GET, "/v1/auth/me", None)
        .await
        .expect_status(401);
}

/// Status of `method path` for `who`, with an optional body.
async fn status(s: &Server, who: &Who, method: Method, path: &str, body: Option<Value>) -> u16 {
    call(s, who, method, path, body.as_ref()).await.status
}

#[tokio::test]
async fn every_action_for_every_role_and_changes_take_effect_at_once() {
    let env = Env::with_schema(SAAS);
    let s = env.start().await;
    let owner = signup(&s, "owner@example.com").await;
    let t = new_tenant(&s, &owner, "Acme").await;
    let mut users = Vec::new();
    for role in ["admin", "member", "viewer", "editor"] {
        let u = signup(&s, &format!("{role}@example.com")).await;
        add_member(&s, &owner, &t, &u.email, role).await;
        users.push((role, u));
    }
    let outsider = signup(&s, "outsider@example.com").await;
    // A project owned by the owner, one per test of update/delete.
    let owners_project = call(
        &s,
        &owner.who().in_tenant(&t),
        Method::POST,
        "/v1/projects",
        Some(&json!({"name": "p0"})),
    )
    .await
    .created();
    assert_eq!(
        owners_project["owner"],
        json!(owner.id),
        "owner field set by the server"
    );
    let p0 = owners_project["id"].as_str().unwrap().to_owned();

    // An API key with the member role takes part in the matrix like a user.
    let key = call(
        &s,
        &owner.who(),
        Method::POST,
        &format!("/v1/tenants/{t}/api-keys"),
        Some(&json!({"name": "matrix", "role": "member"})),
    )
    .await
    .created()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_user = User {
        id: String::new(),
        email: String::new(),
        access: key,
        refresh: String::new(),
    };
    users.push(("api key", key_user));
    users.push((
        "owner",
        User {
            id: owner.id.clone(),
            email: owner.email.clone(),
            access: owner.access.clone(),
            refresh: String::new(),
        },
    ));
    // role → (list, read, create, update someone else's, delete)
    let expected: &[(&str, [u16; 5])] = &[
        ("owner", [200, 200, 201, 200, 204]),
        ("api key", [200, 200, 201, 403, 403]),
        ("admin", [200, 200, 201, 200, 204]),
        ("member", [200, 200, 201, 404, 403]),
        ("viewer", [200, 200, 403, 404, 403]),
        ("editor", [200, 200, 201, 200, 403]),
    ];
    for (role, u) in &users {
        let who = u.who().in_tenant(&t);
        let want = expected.iter().find(|(r, _)| r == role).unwrap().1;
        // A fresh target for update and delete each time.
        let target = call(
            &s,
            &owner.who().in_tenant(&t),
            Method::POST,
            "/v1/projects",
            Some(&json!({"name": format!("for {role}")})),
        )
        .await
        .created()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let got = [
            status(&s, &who, Method::GET, "/v1/projects", None).await,
            status(&s, &who, Method::GET, &format!("/v1/projects/{p0}"), None).await,
            status(
                &s,
                &who,
                Method::POST,
                "/v1/projects",
                Some(json!({"name": format!("by {role}")})),
            )
            .await,
            status(
                &s,
                &who,
                Method::PATCH,
                &format!("/v1/projects/{target}"),
                Some(json!({"name": "renamed"})),
            )
            .await,
            status(
                &s,
                &who,
                Method::DELETE,
                &format!("/v1/projects/{target}"),
                None,
            )
            .await,
        ];
        assert_eq!(got, want, "role {role}");
    }
    // A member may update the project they own (rule `record.owner = auth.user_id`).
    let (_, member) = users.iter().find(|(r, _)| *r == "member").unwrap();
    let mine = call(
        &s,
        &member.who().in_tenant(&t),
        Method::POST,
        "/v1/projects",
        Some(&json!({"name": "member's"})),
    )
    .await
    .created()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    call(
        &s,
        &member.who().in_tenant(&t),
        Method::PATCH,
        &format!("/v1/projects/{mine}"),
        Some(&json!({"name": "still mine"})),
    )
    .await
    .ok();
    // Not a member: 403 on everything in the tenant; anonymous: 401.
    for (m, path) in [
        (Method::GET, "/v1/projects".to_owned()),
        (Method::GET, format!("/v1/projects/{p0}")),
    ] {
        assert_eq!(
            status(&s, &outsider.who().in_tenant(&t), m.clone(), &path, None).await,
            403
        );
        assert_eq!(
            status(&s, &Who::anon().in_tenant(&t), m, &path, None).await,
            401
        );
    }
    // Without a tenant, a tenant-scoped collection is a 400 that says what to send.
    let r = call(&s, &member.who(), Method::GET, "/v1/projects", None).await;
    r.expect_status(400);
    assert!(r.text.contains("X-Plinth-Tenant"), "{}", r.text);

    // Role changes and removals take effect on the very next request, with the same token.
    let (_, viewer) = users.iter().find(|(r, _)| *r == "viewer").unwrap();
    let vwho = viewer.who().in_tenant(&t);
    assert_eq!(
        status(
            &s,
            &vwho,
            Method::POST,
            "/v1/projects",
            Some(json!({"name": "x"}))
        )
        .await,
        403
    );
    call(
        &s,
        &owner.who(),
        Method::PATCH,
        &format!("/v1/tenants/{t}/members/{}", viewer.id),
        Some(&json!({"role": "member"})),
    )
    .await
    .ok();
    assert_eq!(
        status(
            &s,
            &vwho,
            Method::POST,
            "/v1/projects",
            Some(json!({"name": "x"}))
        )
        .await,
        201
    );
    call(
        &s,
        &owner.who(),
        Method::DELETE,
        &format!("/v1/tenants/{t}/members/{}", viewer.id),
        None,
    )
    .await
    .expect_status(204);
    assert_eq!(
        status(&s, &vwho, Method::GET, "/v1/projects", None).await,
        403
    );

    // Membership management rules.
    let (_, admin) = users.iter().find(|(r, _)| *r == "admin").unwrap();
    // Admins cannot touch owners or make owners; the last owner cannot leave.
    assert_eq!(
        status(
            &s,
            &admin.who(),
            Method::PATCH,
            &format!("/v1/tenants/{t}/members/{}", owner.id),
            Some(json!({"role": "member"}))
        )
        .await,
        403
    );
    assert_eq!(
        status(
            &s,
            &admin.who(),
            Method::POST,
            &format!("/v1/tenants/{t}/members"),
            Some(json!({"email": "outsider@example.com", "role": "owner"}))
        )
        .await,
        403
    );
    assert_eq!(
        status(
            &s,
            &owner.who(),
            Method::DELETE,
            &format!("/v1/tenants/{t}/members/{}", owner.id),
            None
        )
        .await,
        409
    );
    // Unknown roles are refused with the list of roles.
    let r = call(
        &s,
        &owner.who(),
        Method::POST,
        &format!("/v1/tenants/{t}/members"),
        Some(&json!({"email": "outsider@example.com", "role": "superuser"})),
    )
    .await;
    r.expect_status(422);
    assert!(r.text.contains("editor"), "{}", r.text);
    // The member list is for members only; to others the tenant does not exist.
    call(
        &s,
        &member.who(),
        Method::GET,
        &format!("/v1/tenants/{t}/members"),
        None,
    )
    .await
    .ok();
    assert_eq!(
        status(
            &s,
            &outsider.who(),
            Method::GET,
            &format!("/v1/tenants/{t}/members"),
            None
        )
        .await,
        404
    );
}

#[tokio::test]
async fn another_tenants_records_are_invisible_everywhere() {
    let env = Env::with_schema(SAAS);
    let s = env.start().await;
    let ann = signup(&s, "ann@example.com").await;
    let bob = signup(&s, "bob@example.com").await;
    let ta = new_tenant(&s, &ann, "A").await;
    let tb = new_tenant(&s, &bob, "B").await;
    let a = ann.who().in_tenant(&ta);
    let b = bob.who().in_tenant(&tb);
    let pa = call(
        &s,
        &a,
        Method::POST,
        "/v1/projects",
        Some(&json!({"name": "secret", "code": "X1"})),
    )
    .await
    .created();
    let pa_id = pa["id"].as_str().unwrap().to_owned();
    let task_a = call(
        &s,
        &a,
        Method::POST,
        "/v1/tasks",
        Some(&json!({"project": pa_id, "title": "t"})),
    )
    .await
    .created();
    let task_a_id = task_a["id"].as_str().unwrap().to_owned();

    // Unique values are per tenant: B may use the same code, and a 409 never
    // reveals A's records.
    call(
        &s,
        &b,
        Method::POST,
        "/v1/projects",
        Some(&json!({"name": "mine", "code": "X1"})),
    )
    .await
    .created();
    call(
        &s,
        &b,
        Method::POST,
        "/v1/projects",
        Some(&json!({"name": "dup", "code": "X1"})),
    )
    .await
    .expect_status(409);

    // Probing A's ids from B: 404, never 403.
    for (m, path, body) in [
        (Method::GET, format!("/v1/projects/{pa_id}"), None),
        (
            Method::PATCH,
            format!("/v1/projects/{pa_id}"),
            Some(json!({"name": "pwned"})),
        ),
        (Method::DELETE, format!("/v1/projects/{pa_id}"), None),
        (Method::GET, format!("/v1/tasks/{task_a_id}"), None),
        (Method::DELETE, format!("/v1/tasks/{task_a_id}"), None),
    ] {
        let r = call(&s, &b, m.clone(), &path, body.as_ref()).await;
        assert_eq!(r.status, 404, "{m} {path}: {}", r.text);
    }
    // Lists and filters, with totals, see only B's records.
    let list = call(
        &s,
        &b,
        Method::GET,
        &format!("/v1/projects?filter=id%20%3D%20%22{pa_id}%22&total=true"),
        None,
    )
    .await
    .ok();
    assert_eq!(list["items"], json!([]));
    assert_eq!(list["total"], json!(0));
    let all = call(&s, &b, Method::GET, "/v1/projects?total=true", None)
        .await
        .ok();
    assert_eq!(all["total"], json!(1));
    // A relation to A's record is refused on write, as if it did not exist.
    let r = call(
        &s,
        &b,
        Method::POST,
        "/v1/tasks",
        Some(&json!({"project": pa_id, "title": "steal"})),
    )
    .await;
    r.expect_status(422);
    assert_eq!(r.json()["errors"][0]["code"], json!("relation_not_found"));
    // A relation to a user is limited to members of the tenant: B cannot
    // point at (or probe for) Ann's account.
    let b_project =
        call(&s, &b, Method::GET, "/v1/projects", None).await.ok()["items"][0]["id"].clone();
    let r = call(
        &s,
        &b,
        Method::POST,
        "/v1/tasks",
        Some(&json!({"project": b_project, "title": "t", "assignee": ann.id})),
    )
    .await;
    r.expect_status(422);
    assert_eq!(r.json()["errors"][0]["field"], json!("assignee"));
    call(
        &s,
        &b,
        Method::POST,
        "/v1/tasks",
        Some(&json!({"project": b_project, "title": "mine", "assignee": bob.id})),
    )
    .await
    .created();
    // Naming A's tenant from B's account: not a member.
    assert_eq!(
        status(
            &s,
            &bob.who().in_tenant(&ta),
            Method::GET,
            "/v1/projects",
            None
        )
        .await,
        403
    );
    // A still sees everything, with the relation expanded.
    let mine = call(&s, &a, Method::GET, "/v1/tasks?expand=project", None)
        .await
        .ok();
    assert_eq!(mine["items"][0]["expand"]["project"]["id"], json!(pa_id));
    let p = call(&s, &a, Method::GET, &format!("/v1/projects/{pa_id}"), None)
        .await
        .ok();
    assert_eq!(p["name"], json!("secret"));
}

#[tokio::test]
async fn record_rules_are_compiled_into_list_queries() {
    let env = Env::with_schema(SAAS);
    let s = env.start().await;
    let ann = signup(&s, "ann@example.com").await;
    let bob = signup(&s, "bob@example.com").await;
    let t = new_tenant(&s, &ann, "T").await;
    add_member(&s, &ann, &t, "bob@example.com", "member").await;
    let (a, b) = (ann.who().in_tenant(&t), bob.who().in_tenant(&t));
    for i in 0..5 {
        call(
            &s,
            &a,
            Method::POST,
            "/v1/notes",
            Some(&json!({"text": format!("a{i}")})),
        )
        .await
        .created();
    }
    let bobs = call(
        &s,
        &b,
        Method::POST,
        "/v1/notes",
        Some(&json!({"text": "b"})),
    )
    .await
    .created();
    // Pages and totals count only the caller's notes.
    let page = call(&s, &a, Method::GET, "/v1/notes?limit=2&total=true", None)
        .await
        .ok();
    assert_eq!(page["total"], json!(5));
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(page["next_cursor"].is_string());
    let theirs = call(&s, &b, Method::GET, "/v1/notes?total=true", None)
        .await
        .ok();
    assert_eq!(theirs["total"], json!(1));
    // Someone else's note is a 404, and so are writes to it.
    let id = bobs["id"].as_str().unwrap();
    for m in [Method::GET, Method::DELETE] {
        assert_eq!(
            status(&s, &a, m, &format!("/v1/notes/{id}"), None).await,
            404
        );
    }
    assert_eq!(
        status(
            &s,
            &a,
            Method::PATCH,
            &format!("/v1/notes/{id}"),
            Some(json!({"text": "x"}))
        )
        .await,
        404
    );
}

#[tokio::test]
async fn server_set_fields_cannot_be_mass_assigned() {
    let env = Env::with_schema(SAAS);
    let s = env.start().await;
    let ann = signup(&s, "ann@example.com").await;
    let bob = signup(&s, "bob@example.com").await;
    let t = new_tenant(&s, &ann, "T").await;
    let other = new_tenant(&s, &bob, "Other").await;
    let a = ann.who().in_tenant(&t);
    for body in [
        json!({"name": "x", "owner": bob.id}),
        json!({"name": "x", "tenant_id": other}),
        json!({"name": "x", "id": "01a21fae-a975-7064-ac05-ff0f0763ceb9"}),
        json!({"name": "x", "version": 7}),
    ] {
        let r = call(&s, &a, Method::POST, "/v1/projects", Some(&body)).await;
        r.expect_status(422);
        assert_eq!(r.json()["errors"][0]["code"], json!("read_only"), "{body}");
    }
    let p = call(
        &s,
        &a,
        Method::POST,
        "/v1/projects",
        Some(&json!({"name": "x"})),
    )
    .await
    .created();
    let id = p["id"].as_str().unwrap();
    // Not even the tenant's owner can change the owner or the tenant with PATCH.
    for body in [json!({"owner": bob.id}), json!({"tenant_id": other})] {
        let r = call(
            &s,
            &a,
            Method::PATCH,
            &format!("/v1/projects/{id}"),
            Some(&body),
        )
        .await;
        r.expect_status(422);
    }
    let p = call(&s, &a, Method::GET, &format!("/v1/projects/{id}"), None)
        .await
        .ok();
    assert_eq!(p["owner"], json!(ann.id));
}

#[tokio::test]
async fn api_keys_act_in_their_tenant_until_revoked_or_expired() {
    let env = Env::with_schema(SAAS);
    let s = env.start().await;
    let ann = signup(&s, "ann@example.com").await;
    let bob = signup(&s, "bob@example.com").await;
    let t = new_tenant(&s, &ann, "T").await;
    let other = new_tenant(&s, &bob, "Other").await;
    add_member(&s, &ann, &t, "bob@example.com", "member").await;
    let created = call(
        &s,
        &ann.who(),
        Method::POST,
        &format!("/v1/tenants/{t}/api-keys"),
        Some(&json!({"name": "ci", "role": "member"})),
    )
    .await
    .created();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("plk_{}_", created["prefix"].as_str().unwrap())));
    // Listed with its prefix, never with the secret.
    let list = call(
        &s,
        &ann.who(),
        Method::GET,
        &format!("/v1/tenants/{t}/api-keys"),
        None,
    )
    .await
    .ok();
    assert!(!list.to_string().contains(&key));
    assert_eq!(list["items"][0]["prefix"], created["prefix"]);
    // Members cannot manage keys.
    assert_eq!(
        status(
            &s,
            &bob.who(),
            Method::GET,
            &format!("/v1/tenants/{t}/api-keys"),
            None
        )
        .await,
        403
    );

    let k = Who {
        token: Some(key.clone()),
        tenant: None,
    };
    call(
        &s,
        &k,
        Method::POST,
        "/v1/projects",
        Some(&json!({"name": "by key"})),
    )
    .await
    .created();
    let me = call(&s, &k, Method::GET, "/v1/auth/me", None).await.ok();
    assert_eq!(me["kind"], json!("api_key"));
    assert_eq!(me["tenant_id"], json!(t));
    // A key acts only in its own tenant.
    assert_eq!(
        status(&s, &k.in_tenant(&other), Method::GET, "/v1/projects", None).await,
        403
    );
    // Keys are not users: user routes and user-owned records are refused.
    assert_eq!(
        status(
            &s,
            &k,
            Method::POST,
            "/v1/notes",
            Some(json!({"text": "x"}))
        )
        .await,
        403
    );
    // A wrong secret with a real prefix is a 401.
    let forged = format!("{}{}", &key[..key.len() - 4], "AAAA");
    let forged = Who {
        token: Some(forged),
        tenant: None,
    };
    assert_eq!(
        status(&s, &forged, Method::GET, "/v1/projects", None).await,
        401
    );
    // Revoked: refused on the next request.
    let id = created["id"].as_str().unwrap();
    call(
        &s,
        &ann.who(),
        Method::DELETE,
        &format!("/v1/tenants/{t}/api-keys/{id}"),
        None,
    )
    .await
    .expect_status(204);
    let r = call(&s, &k, Method::GET, "/v1/projects", None).await;
    r.expect_status(401);
    assert!(r.text.contains("revoked"), "{}", r.text);

    // An expiring key stops working at its expiry.
    let soon = {
        let t = std::time::SystemTime::now() + Duration::from_secs(2);
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let expiring = call(
        &s,
        &ann.who(),
        Method::POST,
        &format!("/v1/tenants/{t}/api-keys"),
        Some(&json!({"name": "short", "role": "viewer", "expires_at": soon})),
    )
    .await
    .created();
    let e = Who {
        token: Some(expiring["key"].as_str().unwrap().to_owned()),
        tenant: None,
    };
    call(&s, &e, Method::GET, "/v1/projects", None).await.ok();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = call(&s, &e, Method::GET, "/v1/projects", None).await;
    r.expect_status(401);
    assert!(r.text.contains("expired"), "{}", r.text);
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_account_and_recovers() {
    let env = Env::with_schema(SAAS);
    let s = env
        .start_with(&["--rate-limits", "auth-account=2/2s,auth-ip=100/60s"])
        .await;
    signup(&s, "ann@example.com").await;
    for _ in 0..2 {
        signin(&s, "ann@example.com", "wrong password here")
            .await
            .expect_status(401);
    }
    let limited = signin(&s, "ann@example.com", PASSWORD).await;
    limited.expect_status(429);
    assert_eq!(
        limited.json()["type"],
        json!("urn:plinth:problem:too-many-requests")
    );
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        limited.header("ratelimit-policy").as_deref(),
        Some("\"auth-account\";q=2;w=2")
    );
    assert!(
        limited
            .header("ratelimit")
            .unwrap()
            .starts_with("\"auth-account\";r=0;t=")
    );
    // Another account from the same IP is not affected.
    signin(&s, "bob@example.com", PASSWORD)
        .await
        .expect_status(401);
    // After the window the account can sign in again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let session = signin(&s, "ann@example.com", PASSWORD).await.ok();
    // Refresh is limited per account too, before the token is spent: a 429
    // leaves the refresh token usable once the window has passed.
    let mut refresh = session["refresh_token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..2 {
        let r = s
            .post("/v1/auth/refresh", &json!({"refresh_token": refresh}))
            .await
            .ok();
        refresh = r["refresh_token"].as_str().unwrap().to_owned();
    }
    s.post("/v1/auth/refresh", &json!({"refresh_token": refresh}))
        .await
        .expect_status(429);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    s.post("/v1/auth/refresh", &json!({"refresh_token": refresh}))
        .await
        .ok();
}

#[tokio::test]
async fn signing_keys_rotate_without_signing_anyone_out() {
    let env = Env::with_schema(SAAS);
    let s = env.start().await;
    let ann = signup(&s, "ann@example.com").await;
    let old_kid = s.get("/.well-known/jwks.json").await.ok()["keys"][0]["kid"].clone();
    let mut envs: Vec<(&str, &str)> = Vec::new();
    if let Some(url) = env.database_url() {
        envs.push(("PLINTH_DATABASE_URL", url));
    }
    let data = env.data_dir();
    let schema = env.schema_path();
    let out = run_cli(
        &[
            "keys",
            "rotate",
            "--schema",
            schema.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &envs,
        env.dir(),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // A token with an unknown kid makes the server re-read its keys (at most
    // every few seconds): a new sign-in then uses the new key.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stranger = plinth_auth::KeyRing::new(plinth_auth::SigningKey::generate().unwrap(), [])
        .unwrap()
        .sign(
            &plinth_auth::Claims::new("u", "s", None, "plinth", "plinth", unix_now(), 60).unwrap(),
        )
        .unwrap();
    call(
        &s,
        &Who {
            token: Some(stranger),
            tenant: None,
        },
        Method::GET,
        "/v1/auth/me",
        None,
    )
    .await
    .expect_status(401);
    let jwks = s.get("/.well-known/jwks.json").await.ok();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let fresh = signin(&s, "ann@example.com", PASSWORD).await.ok();
    let fresh_kid = {
        let header = fresh["access_token"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        // The kid is in the JWKS and differs from the old one.
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .find(|k| k != &old_kid)
            .map(|k| (k, header))
    };
    assert!(fresh_kid.is_some());
    // The token signed before the rotation still works.
    call(&s, &ann.who(), Method::GET, "/v1/auth/me", None)
        .await
        .ok();
}

#[tokio::test]
async fn the_example_blog_works_as_documented() {
    let schema = std::fs::read_to_string(example_schema_path()).unwrap();
    let env = Env::with_schema(&schema);
    let s = env.start().await;
    let ann = signup(&s, "ann@example.com").await;
    let reader = signup(&s, "reader@example.com").await;
    let blog = new_tenant(&s, &ann, "Ann's blog").await;
    let a = ann.who().in_tenant(&blog);
    let draft = call(
        &s,
        &a,
        Method::POST,
        "/v1/posts",
        Some(&json!({"title": "draft"})),
    )
    .await
    .created();
    let published = call(
        &s,
        &a,
        Method::POST,
        "/v1/posts",
        Some(&json!({"title": "hello", "status": "published"})),
    )
    .await
    .created();
    assert_eq!(published["author"], json!(ann.id));
    // Anonymous readers see published posts only.
    let anon = Who::anon().in_tenant(&blog);
    let list = call(&s, &anon, Method::GET, "/v1/posts?total=true", None)
        .await
        .ok();
    assert_eq!(list["total"], json!(1));
    assert_eq!(
        status(
            &s,
            &anon,
            Method::GET,
            &format!("/v1/posts/{}", draft["id"].as_str().unwrap()),
            None
        )
        .await,
        404
    );
    // Any signed-in user may comment; only its author may edit it.
    let c = call(
        &s,
        &reader.who().in_tenant(&blog),
        Method::POST,
        "/v1/comments",
        Some(&json!({"post": published["id"], "body": "nice"})),
    )
    .await
    .created();
    assert_eq!(c["author"], json!(reader.id));
    let cid = c["id"].as_str().unwrap();
    assert_eq!(
        status(
            &s,
            &anon,
            Method::POST,
            "/v1/comments",
            Some(json!({"post": published["id"], "body": "x"}))
        )
        .await,
        401
    );
    assert_eq!(
        status(
            &s,
            &a,
            Method::PATCH,
            &format!("/v1/comments/{cid}"),
            Some(json!({"body": "edited"}))
        )
        .await,
        404
    );
    // The blog's owner may delete it (moderation).
    assert_eq!(
        status(&s, &a, Method::DELETE, &format!("/v1/comments/{cid}"), None).await,
        204
    );
    // Readers cannot write posts.
    assert_eq!(
        status(
            &s,
            &reader.who().in_tenant(&blog),
            Method::POST,
            "/v1/posts",
            Some(json!({"title": "x"}))
        )
        .await,
        403
    );
}
