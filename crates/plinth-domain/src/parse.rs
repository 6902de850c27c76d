//! `plinth.toml` → [`Schema`], reporting every mistake with its position and a fix hint.
//!
//! The parser walks TOML's spanned document tree by hand (rather than serde
//! derive) so that it can keep going after the first mistake and point at the
//! exact key or value that is wrong.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::schema::{
    Action, BUILTIN_ROLES, Bound, Collection, DefaultValue, Field, FieldType, Index, MAX_NAME_LEN,
    Permission, Permissions, RESERVED_COLLECTIONS, Role, SYSTEM_FIELDS, Schema, USERS,
    is_snake_case,
};
use crate::value::{Value, is_email, is_http_url, normalize_date, normalize_datetime};

/// One mistake in a schema file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Formats diagnostics the way compilers do: `file:line:col: error: message`.
pub struct Report<'a> {
    pub file: &'a str,
    pub diagnostics: &'a [Diagnostic],
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.diagnostics {
            writeln!(
                f,
                "{}:{}:{}: error: {}",
                self.file, d.line, d.column, d.message
            )?;
            if let Some(h) = &d.hint {
                writeln!(f, "  hint: {h}")?;
            }
        }
        let n = self.diagnostics.len();
        write!(
            f,
            "{n} error{} in {}",
            if n == 1 { "" } else { "s" },
            self.file
        )
    }
}

const COLLECTION_KEYS: &[&str] = &[
    "description",
    "fields",
    "indexes",
    "deprecated",
    "sunset",
    "tenant_scoped",
    "permissions",
];
const PERMISSION_WORDS: &[&str] = &["public", "authenticated", "nobody"];
const COMMON_FIELD_KEYS: &[&str] = &[
    "type",
    "description",
    "required",
    "unique",
    "default",
    "deprecated",
    "sunset",
    "renamed_from",
];

/// Reads `deprecated = "date"` / `sunset = "date"` of a table.
fn deprecation(
    ctx: &mut Ctx<'_>,
    table: &DeTable<'_>,
    what: &str,
    at: Range<usize>,
) -> Option<crate::schema::Deprecation> {
    let date = |ctx: &mut Ctx<'_>, key: &str| -> Option<(String, Range<usize>)> {
        let v = table.get(key)?;
        match v.get_ref().as_str().and_then(normalize_date) {
            Some(d) => Some((d, v.span())),
            None => {
                ctx.err(
                    v.span(),
                    format!("`{key}` of {what} must be a date in quotes"),
                    Some(format!("write {key} = \"2027-01-31\"")),
                );
                None
            }
        }
    };
    let since = date(ctx, "deprecated");
    let sunset = date(ctx, "sunset");
    match (since, sunset) {
        (Some((since, _)), Some((sunset, span))) => {
            if sunset < since {
                ctx.err(
                    span,
                    format!("the sunset of {what} is before its deprecation date"),
                    Some("the sunset must not be earlier than `deprecated` (RFC 8594)".into()),
                );
            }
            Some(crate::schema::Deprecation {
                since,
                sunset: Some(sunset),
            })
        }
        (Some((since, _)), None) => Some(crate::schema::Deprecation {
            since,
            sunset: None,
        }),
        (None, Some((_, span))) => {
            ctx.err(
                span,
                format!("{what} has a `sunset` but no `deprecated` date"),
                Some("add deprecated = \"YYYY-MM-DD\" (when it was deprecated)".into()),
            );
            None
        }
        (None, None) => {
            let _ = at;
            None
        }
    }
}
const INDEX_KEYS: &[&str] = &["fields", "unique"];

fn type_keys(ty: FieldType) -> &'static [&'static str] {
    match ty {
        FieldType::Text => &["min_length", "max_length", "pattern"],
        FieldType::Email | FieldType::Url => &["min_length", "max_length"],
        FieldType::Integer | FieldType::Number => &["min", "max"],
        FieldType::Enum => &["values"],
        FieldType::Relation => &["collection"],
        FieldType::Boolean | FieldType::Datetime | FieldType::Date | FieldType::Json => &[],
    }
}

struct Ctx<'s> {
    src: &'s str,
    diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        let (line, column) = line_col(self.src, span.start);
        self.diags.push(Diagnostic {
            line,
            column,
            message: message.into(),
            hint,
        });
    }
}

/// 1-based line and character column of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn unknown_key_hint(key: &str, allowed: &[&str]) -> String {
    match did_you_mean(key, allowed.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? (allowed here: {})", allowed.join(", ")),
        None => format!("allowed here: {}", allowed.join(", ")),
    }
}

/// Parses and checks a schema. On failure returns every mistake found, in file order.
pub fn parse_schema(src: &str) -> Result<Schema, Vec<Diagnostic>> {
    let mut ctx = Ctx {
        src,
        diags: Vec::new(),
    };
    let doc = match DeTable::parse(src) {
        Ok(d) => d,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            ctx.err(
                span,
                format!("invalid TOML: {}", e.message().trim()),
                Some("see https://toml.io for the syntax".into()),
            );
            return Err(ctx.diags);
        }
    };
    let schema = walk_document(&mut ctx, doc.get_ref());
    if ctx.diags.is_empty() {
        Ok(schema)
    } else {
        ctx.diags.sort_by_key(|d| (d.line, d.column));
        Err(ctx.diags)
    }
}

fn walk_document(ctx: &mut Ctx<'_>, doc: &DeTable<'_>) -> Schema {
    let mut collections = Vec::new();
    let mut saw_collections = false;
    let mut roles = Vec::new();
    for (key, value) in doc {
        if key.get_ref() == "roles" {
            roles = walk_roles(ctx, value);
            continue;
        }
        if key.get_ref() != "collections" {
            ctx.err(
                key.span(),
                format!("unknown top-level key `{}`", key.get_ref()),
                Some(unknown_key_hint(key.get_ref(), &["collections", "roles"])),
            );
            continue;
        }
        saw_collections = true;
        let Some(table) = value.get_ref().as_table() else {
            ctx.err(
                value.span(),
                "`collections` must be a table",
                Some("declare collections as [collections.<name>.fields]".into()),
            );
            continue;
        };
        for (name, body) in table {
            if let Some(c) = walk_collection(ctx, name, body) {
                collections.push((name.span(), c));
            }
        }
    }
    if !saw_collections {
        ctx.err(
            0..0,
            "the schema declares no collections",
            Some(
                "add one, e.g. [collections.posts.fields] then title = { type = \"text\" }".into(),
            ),
        );
    }
    let names: BTreeSet<String> = collections.iter().map(|(_, c)| c.name.clone()).collect();
    for (_, c) in &collections {
        check_relations(ctx, c, &names, doc);
    }
    let mut collections: Vec<Collection> = collections.into_iter().map(|(_, c)| c).collect();
    check_required_cycles(ctx, &collections, doc);
    check_tenancy(ctx, &collections, doc);
    collections.sort_by(|a, b| a.name.cmp(&b.name));
    roles.sort_by(|a: &Role, b: &Role| a.name.cmp(&b.name));
    let schema = Schema { collections, roles };
    check_permissions(ctx, &schema, doc);
    schema
}

/// `[roles.<name>]` with an optional `description`.
fn walk_roles(ctx: &mut Ctx<'_>, value: &Spanned<DeValue<'_>>) -> Vec<Role> {
    let Some(table) = value.get_ref().as_table() else {
        ctx.err(
            value.span(),
            "`roles` must be a table of custom roles",
            Some("write [roles.editor] then description = \"...\"".into()),
        );
        return Vec::new();
    };
    let mut roles = Vec::new();
    for (name, body) in table {
        if !check_name(ctx, "role", name) {
            continue;
        }
        let n = name.get_ref().to_string();
        if BUILTIN_ROLES.contains(&n.as_str()) {
            ctx.err(
                name.span(),
                format!("role `{n}` is built in"),
                Some(format!(
                    "built-in roles ({}) need no declaration",
                    BUILTIN_ROLES.join(", ")
                )),
            );
            continue;
        }
        let mut description = None;
        match body.get_ref().as_table() {
            Some(t) => {
                for (k, v) in t {
                    if k.get_ref() == "description" {
                        description = string_value(ctx, v, "description");
                    } else {
                        ctx.err(
                            k.span(),
                            format!("unknown key `{}` in role `{n}`", k.get_ref()),
                            Some(unknown_key_hint(k.get_ref(), &["description"])),
                        );
                    }
                }
            }
            None => ctx.err(
                body.span(),
                format!("role `{n}` must be a table"),
                Some(format!(
                    "write [roles.{n}] (optionally with description = \"...\")"
                )),
            ),
        }
        roles.push(Role {
            name: n,
            description,
        });
    }
    roles
}

/// Reads `permissions`: one value for every action, or a table per action.
/// Role names and rules are checked later, once every collection is known.
fn walk_permissions(ctx: &mut Ctx<'_>, coll: &str, v: &Spanned<DeValue<'_>>) -> Permissions {
    let mut p = Permissions::default();
    if v.get_ref().as_table().is_none() {
        if let Some(one) = permission_value(ctx, coll, "permissions", v) {
            for a in Action::ALL {
                *p.get_mut(a) = one.clone();
            }
        }
        return p;
    }
    let Some(table) = v.get_ref().as_table() else {
        return p;
    };
    let actions: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
    for (k, val) in table {
        match Action::ALL.iter().find(|a| a.as_str() == k.get_ref()) {
            Some(a) => {
                if let Some(one) = permission_value(ctx, coll, a.as_str(), val) {
                    *p.get_mut(*a) = one;
                }
            }
            None => ctx.err(
                k.span(),
                format!(
                    "unknown action `{}` in the permissions of `{coll}`",
                    k.get_ref()
                ),
                Some(unknown_key_hint(k.get_ref(), &actions)),
            ),
        }
    }
    p
}

fn permission_value(
    ctx: &mut Ctx<'_>,
    coll: &str,
    key: &str,
    v: &Spanned<DeValue<'_>>,
) -> Option<Permission> {
    let hint = "use \"public\", \"authenticated\", \"nobody\", a list of roles such as [\"owner\", \"admin\"], or a rule such as \"record.author = auth.user_id\"";
    if let Some(items) = v.get_ref().as_array() {
        let mut roles = Vec::new();
        for item in items {
            match item.get_ref().as_str() {
                Some(r) => roles.push(r.to_owned()),
                None => ctx.err(item.span(), "roles must be strings", Some(hint.into())),
            }
        }
        if roles.is_empty() {
            ctx.err(
                v.span(),
                format!("`{key}` of `{coll}` lists no roles"),
                Some("write \"nobody\" to allow nobody".into()),
            );
            return None;
        }
        return Some(Permission::Roles(roles));
    }
    match v.get_ref().as_str() {
        Some("public") => Some(Permission::Public),
        Some("authenticated") => Some(Permission::Authenticated),
        Some("nobody") => Some(Permission::Nobody),
        Some(s) if s.trim().is_empty() => {
            ctx.err(
                v.span(),
                format!("`{key}` of `{coll}` is empty"),
                Some(hint.into()),
            );
            None
        }
        Some(s) => {
            if let Some(m) = did_you_mean(s, PERMISSION_WORDS.iter().copied())
                && !s.contains(['.', '=', '<', '>', '~', ' '])
            {
                ctx.err(
                    v.span(),
                    format!(
                        "`{key}` of `{coll}` is \"{s}\", which is neither a keyword nor a rule"
                    ),
                    Some(format!("did you mean \"{m}\"?")),
                );
                return None;
            }
            Some(Permission::Rule(s.to_owned()))
        }
        None => {
            ctx.err(
                v.span(),
                format!("`{key}` of `{coll}` must be a string or a list of roles"),
                Some(hint.into()),
            );
            None
        }
    }
}

/// Role names exist; rules parse and type-check against their collection.
fn check_permissions(ctx: &mut Ctx<'_>, schema: &Schema, doc: &DeTable<'_>) {
    let roles = schema.role_names();
    for c in &schema.collections {
        for a in Action::ALL {
            let span = permission_span(doc, &c.name, a.as_str()).unwrap_or(0..0);
            match c.permissions.get(a) {
                Permission::Roles(rs) => {
                    for r in rs {
                        if !roles.contains(&r.as_str()) {
                            let hint = match did_you_mean(r, roles.iter().copied()) {
                                Some(m) => {
                                    format!("did you mean \"{m}\"? roles: {}", roles.join(", "))
                                }
                                None => format!(
                                    "roles: {}; declare custom ones as [roles.{r}]",
                                    roles.join(", ")
                                ),
                            };
                            ctx.err(
                                span.clone(),
                                format!(
                                    "`{}` of `{}` names an unknown role \"{r}\"",
                                    a.as_str(),
                                    c.name
                                ),
                                Some(hint),
                            );
                        }
                    }
                }
                Permission::Rule(src) => {
                    if let Err(e) = crate::rule::check_rule(src, c, &roles) {
                        ctx.err(
                            span,
                            format!(
                                "rule for `{}` of `{}` {e}",
                                a.as_str(),
                                c.name
                            ),
                            Some("rules use the filter language over record.<field>, auth.user_id, auth.tenant_id, auth.kind, auth.email and role (docs/querying.md)".into()),
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// A collection that is not tenant-scoped holds records every tenant sees,
/// so it cannot point at records that belong to one tenant.
fn check_tenancy(ctx: &mut Ctx<'_>, collections: &[Collection], doc: &DeTable<'_>) {
    for c in collections {
        if c.tenant_scoped {
            continue;
        }
        for (f, target) in c.relations() {
            if collections
                .iter()
                .any(|t| t.name == target && t.tenant_scoped)
            {
                let span = relation_span(doc, &c.name, &f.name).unwrap_or(0..0);
                ctx.err(
                    span,
                    format!(
                        "field `{}.{}` relates to the tenant-scoped collection `{target}`, but `{}` is not tenant-scoped",
                        c.name, f.name, c.name
                    ),
                    Some(format!(
                        "make `{}` tenant_scoped = true, or `{target}` not tenant-scoped",
                        c.name
                    )),
                );
            }
        }
    }
}

fn permission_span(doc: &DeTable<'_>, coll: &str, action: &str) -> Option<Range<usize>> {
    let p = doc
        .get("collections")?
        .get_ref()
        .as_table()?
        .get(coll)?
        .get_ref()
        .as_table()?
        .get("permissions")?;
    match p.get_ref().as_table() {
        Some(t) => t.get(action).map(Spanned::span).or(Some(p.span())),
        None => Some(p.span()),
    }
}

fn check_name(ctx: &mut Ctx<'_>, what: &str, name: &Spanned<std::borrow::Cow<'_, str>>) -> bool {
    let n = name.get_ref();
    if !is_snake_case(n) {
        let suggestion = to_snake_case(n);
        ctx.err(
            name.span(),
            format!("{what} name `{n}` is not lower_snake_case"),
            Some(format!(
                "use letters a-z, digits and single underscores, starting with a letter, e.g. `{suggestion}`"
            )),
        );
        return false;
    }
    if n.len() > MAX_NAME_LEN {
        ctx.err(
            name.span(),
            format!("{what} name `{n}` is longer than {MAX_NAME_LEN} characters"),
            Some("choose a shorter name".into()),
        );
        return false;
    }
    true
}

fn to_snake_case(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_owned();
    match out.chars().next() {
        Some(c) if c.is_ascii_lowercase() => out,
        _ => format!("c_{out}"),
    }
}

fn walk_collection(
    ctx: &mut Ctx<'_>,
    name: &Spanned<std::borrow::Cow<'_, str>>,
    body: &Spanned<DeValue<'_>>,
) -> Option<Collection> {
    let mut ok = check_name(ctx, "collection", name);
    let n = name.get_ref().to_string();
    if ok && RESERVED_COLLECTIONS.contains(&n.as_str()) {
        ctx.err(
            name.span(),
            format!("collection name `{n}` is reserved by Plinth"),
            Some(format!(
                "rename it (e.g. `app_{n}`); reserved: {}",
                RESERVED_COLLECTIONS.join(", ")
            )),
        );
        ok = false;
    }
    if ok && (n.starts_with("sqlite_") || n.starts_with("pg_") || n.starts_with("plinth")) {
        ctx.err(
            name.span(),
            format!("collection name `{n}` uses a prefix reserved by the database or Plinth"),
            Some("names may not start with sqlite_, pg_ or plinth".into()),
        );
        ok = false;
    }
    let Some(table) = body.get_ref().as_table() else {
        ctx.err(
            body.span(),
            format!("collection `{n}` must be a table"),
            Some(format!("write [collections.{n}.fields]")),
        );
        return None;
    };
    let mut description = None;
    let mut fields = Vec::new();
    let mut indexes_src = None;
    let mut saw_fields = false;
    let mut tenant_scoped = false;
    let mut permissions = Permissions::default();
    for (key, value) in table {
        match key.get_ref().as_ref() {
            "description" => description = string_value(ctx, value, "description"),
            "tenant_scoped" => {
                tenant_scoped = bool_value(ctx, value, "tenant_scoped").unwrap_or(false);
            }
            "permissions" => permissions = walk_permissions(ctx, &n, value),
            "deprecated" | "sunset" => {}
            "fields" => {
                saw_fields = true;
                match value.get_ref().as_table() {
                    Some(ft) => {
                        if ft.is_empty() {
                            ctx.err(
                                value.span(),
                                format!("collection `{n}` declares no fields"),
                                Some(
                                    "add at least one field, e.g. title = { type = \"text\" }"
                                        .into(),
                                ),
                            );
                        }
                        for (fname, fbody) in ft {
                            if let Some(f) = walk_field(ctx, fname, fbody) {
                                fields.push((fname.span(), f));
                            }
                        }
                    }
                    None => ctx.err(
                        value.span(),
                        "`fields` must be a table of field definitions",
                        Some(format!("write [collections.{n}.fields]")),
                    ),
                }
            }
            "indexes" => indexes_src = Some(value),
            other => ctx.err(
                key.span(),
                format!("unknown key `{other}` in collection `{n}`"),
                Some(unknown_key_hint(other, COLLECTION_KEYS)),
            ),
        }
    }
    if !saw_fields {
        ctx.err(
            name.span(),
            format!("collection `{n}` declares no fields"),
            Some(format!(
                "add [collections.{n}.fields] with at least one field"
            )),
        );
    }
    let field_names: Vec<String> = fields.iter().map(|(_, f)| f.name.clone()).collect();
    let mut indexes = Vec::new();
    if let Some(v) = indexes_src {
        indexes = walk_indexes(ctx, &n, v, &field_names);
    }
    let deprecation = deprecation(ctx, table, &format!("collection `{n}`"), body.span());
    ok.then(|| Collection {
        name: n,
        description,
        fields: fields.into_iter().map(|(_, f)| f).collect(),
        indexes,
        deprecation,
        tenant_scoped,
        permissions,
    })
}

fn string_value(ctx: &mut Ctx<'_>, v: &Spanned<DeValue<'_>>, key: &str) -> Option<String> {
    match v.get_ref().as_str() {
        Some(s) => Some(s.to_owned()),
        None => {
            ctx.err(
                v.span(),
                format!("`{key}` must be a string, found {}", v.get_ref().type_str()),
                None,
            );
            None
        }
    }
}

fn bool_value(ctx: &mut Ctx<'_>, v: &Spanned<DeValue<'_>>, key: &str) -> Option<bool> {
    match v.get_ref().as_bool() {
        Some(b) => Some(b),
        None => {
            ctx.err(
                v.span(),
                format!(
                    "`{key}` must be true or false, found {}",
                    v.get_ref().type_str()
                ),
                None,
            );
            None
        }
    }
}

fn int_value(v: &DeValue<'_>) -> Option<i64> {
    let i = v.as_integer()?;
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// A finite float (TOML's `nan` and `inf` are not usable bounds or defaults).
fn float_value(v: &DeValue<'_>) -> Option<f64> {
    v.as_float()?
        .as_str()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
}

fn length_value(ctx: &mut Ctx<'_>, v: &Spanned<DeValue<'_>>, key: &str) -> Option<u32> {
    match int_value(v.get_ref()).and_then(|i| u32::try_from(i).ok()) {
        Some(n) => Some(n),
        None => {
            ctx.err(
                v.span(),
                format!("`{key}` must be a non-negative integer"),
                None,
            );
            None
        }
    }
}

fn walk_field(
    ctx: &mut Ctx<'_>,
    name: &Spanned<std::borrow::Cow<'_, str>>,
    body: &Spanned<DeValue<'_>>,
) -> Option<Field> {
    let mut ok = check_name(ctx, "field", name);
    let n = name.get_ref().to_string();
    if ok && SYSTEM_FIELDS.contains(&n.as_str()) {
        ctx.err(
            name.span(),
            format!("field name `{n}` is a system field every record already has"),
            Some(format!(
                "system fields ({}) are set by Plinth; pick another name",
                SYSTEM_FIELDS.join(", ")
            )),
        );
        ok = false;
    }
    let Some(table) = body.get_ref().as_table() else {
        ctx.err(
            body.span(),
            format!("field `{n}` must be a table"),
            Some(format!("write {n} = {{ type = \"text\" }}")),
        );
        return None;
    };
    // The type decides which other keys are allowed, so read it first.
    let ty = match table.get("type") {
        None => {
            ctx.err(
                body.span(),
                format!("field `{n}` has no `type`"),
                Some(format!(
                    "add type = \"...\", one of: {}",
                    type_names().join(", ")
                )),
            );
            None
        }
        Some(t) => match t.get_ref().as_str() {
            Some(s) => match FieldType::parse(s) {
                Some(ty) => Some(ty),
                None => {
                    let names = type_names();
                    let hint = match did_you_mean(s, names.iter().copied()) {
                        Some(m) => format!("did you mean \"{m}\"? types: {}", names.join(", ")),
                        None => format!("types: {}", names.join(", ")),
                    };
                    ctx.err(t.span(), format!("unknown field type \"{s}\""), Some(hint));
                    None
                }
            },
            None => {
                ctx.err(t.span(), "`type` must be a string", None);
                None
            }
        },
    };
    let mut field = Field {
        name: n.clone(),
        ty: ty.unwrap_or(FieldType::Text),
        description: None,
        required: false,
        unique: false,
        default: None,
        min: None,
        max: None,
        min_length: None,
        max_length: None,
        pattern: None,
        values: Vec::new(),
        collection: None,
        deprecation: None,
        renamed_from: None,
    };
    let mut default_src = None;
    for (key, value) in table {
        let k: &str = key.get_ref();
        let Some(ty) = ty else {
            // Without a known type we can only check keys exist at all.
            let all: Vec<&str> = COMMON_FIELD_KEYS
                .iter()
                .chain(FieldType::ALL.iter().flat_map(|t| type_keys(*t)))
                .copied()
                .collect();
            if !all.contains(&k) {
                ctx.err(
                    key.span(),
                    format!("unknown key `{k}` in field `{n}`"),
                    Some(unknown_key_hint(k, &all)),
                );
            }
            continue;
        };
        let allowed: Vec<&str> = COMMON_FIELD_KEYS
            .iter()
            .chain(type_keys(ty))
            .copied()
            .collect();
        if !allowed.contains(&k) {
            let applies_elsewhere = FieldType::ALL
                .iter()
                .filter(|t| type_keys(**t).contains(&k))
                .map(|t| t.as_str())
                .collect::<Vec<_>>();
            if applies_elsewhere.is_empty() {
                ctx.err(
                    key.span(),
                    format!("unknown key `{k}` in field `{n}`"),
                    Some(unknown_key_hint(k, &allowed)),
                );
            } else {
                ctx.err(
                    key.span(),
                    format!("`{k}` does not apply to {} fields", ty.as_str()),
                    Some(format!(
                        "`{k}` applies to: {}; {} fields allow: {}",
                        applies_elsewhere.join(", "),
                        ty.as_str(),
                        allowed.join(", ")
                    )),
                );
            }
            continue;
        }
        match k {
            "type" => {}
            "description" => field.description = string_value(ctx, value, k),
            "deprecated" | "sunset" => {}
            "renamed_from" => field.renamed_from = string_value(ctx, value, k),
            "required" => field.required = bool_value(ctx, value, k).unwrap_or(false),
            "unique" => {
                let u = bool_value(ctx, value, k).unwrap_or(false);
                if u && matches!(ty, FieldType::Boolean | FieldType::Json) {
                    ctx.err(
                        value.span(),
                        format!("{} fields cannot be unique", ty.as_str()),
                        Some("remove `unique`, or use a unique index over several fields".into()),
                    );
                }
                field.unique = u;
            }
            "default" => default_src = Some(value),
            "min" | "max" => {
                let b = if ty == FieldType::Integer {
                    int_value(value.get_ref()).map(Bound::Int)
                } else {
                    int_value(value.get_ref())
                        .map(Bound::Int)
                        .or_else(|| float_value(value.get_ref()).map(Bound::Float))
                };
                match b {
                    Some(b) if k == "min" => field.min = Some(b),
                    Some(b) => field.max = Some(b),
                    None => ctx.err(
                        value.span(),
                        format!(
                            "`{k}` of a {} field must be a{} number",
                            ty.as_str(),
                            if ty == FieldType::Integer {
                                "n integer"
                            } else {
                                ""
                            }
                        ),
                        None,
                    ),
                }
            }
            "min_length" => field.min_length = length_value(ctx, value, k),
            "max_length" => field.max_length = length_value(ctx, value, k),
            "pattern" => {
                if let Some(p) = string_value(ctx, value, k) {
                    if let Err(e) = regex::Regex::new(&p) {
                        ctx.err(
                            value.span(),
                            format!("`pattern` is not a valid regular expression: {}", first_line(&e.to_string())),
                            Some("patterns use ECMA-262 style syntax without look-around; anchor with ^ and $".into()),
                        );
                    } else {
                        field.pattern = Some(p);
                    }
                }
            }
            "values" => field.values = enum_values(ctx, value),
            "collection" => field.collection = string_value(ctx, value, k),
            _ => {}
        }
    }
    let ty = ty?;
    if ty == FieldType::Enum && !table.contains_key("values") {
        ctx.err(
            body.span(),
            format!("enum field `{n}` has no `values`"),
            Some("add values = [\"a\", \"b\"]".into()),
        );
        ok = false;
    }
    if ty == FieldType::Relation && !table.contains_key("collection") {
        ctx.err(
            body.span(),
            format!("relation field `{n}` has no `collection`"),
            Some("add collection = \"<name of the collection it points at>\"".into()),
        );
        ok = false;
    }
    if let (Some(a), Some(b)) = (field.min, field.max)
        && a.as_f64() > b.as_f64()
    {
        ctx.err(
            body.span(),
            format!("field `{n}`: min is greater than max"),
            None,
        );
    }
    if let (Some(a), Some(b)) = (field.min_length, field.max_length)
        && a > b
    {
        ctx.err(
            body.span(),
            format!("field `{n}`: min_length is greater than max_length"),
            None,
        );
    }
    if let Some(d) = default_src {
        field.default = check_default(ctx, &field, d);
    }
    field.deprecation = deprecation(ctx, table, &format!("field `{n}`"), body.span());
    ok.then_some(field)
}

fn first_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_owned()
}

fn type_names() -> Vec<&'static str> {
    FieldType::ALL.iter().map(|t| t.as_str()).collect()
}

fn enum_values(ctx: &mut Ctx<'_>, v: &Spanned<DeValue<'_>>) -> Vec<String> {
    let Some(items) = v.get_ref().as_array() else {
        ctx.err(
            v.span(),
            "`values` must be an array of strings",
            Some("values = [\"draft\", \"published\"]".into()),
        );
        return Vec::new();
    };
    if items.is_empty() {
        ctx.err(v.span(), "`values` must not be empty", None);
    }
    let mut out: Vec<String> = Vec::new();
    for item in items.iter() {
        match item.get_ref().as_str() {
            Some("") => ctx.err(item.span(), "enum values must not be empty strings", None),
            Some(s) if out.iter().any(|o| o == s) => {
                ctx.err(
                    item.span(),
                    format!("enum value \"{s}\" is listed twice"),
                    None,
                );
            }
            Some(s) => out.push(s.to_owned()),
            None => ctx.err(item.span(), "enum values must be strings", None),
        }
    }
    out
}

/// Checks a default value against the field's type and constraints.
fn check_default(
    ctx: &mut Ctx<'_>,
    field: &Field,
    v: &Spanned<DeValue<'_>>,
) -> Option<DefaultValue> {
    let n = &field.name;
    let raw = v.get_ref();
    let bad = |ctx: &mut Ctx<'_>, msg: String, hint: Option<String>| {
        ctx.err(v.span(), msg, hint);
        None
    };
    let value = match field.ty {
        FieldType::Text | FieldType::Email | FieldType::Url => {
            let Some(s) = raw.as_str() else {
                return bad(ctx, format!("default of `{n}` must be a string"), None);
            };
            if field.ty == FieldType::Email && !is_email(s) {
                return bad(
                    ctx,
                    format!("default of `{n}` is not an email address"),
                    None,
                );
            }
            if field.ty == FieldType::Url && !is_http_url(s) {
                return bad(ctx, format!("default of `{n}` is not an http(s) URL"), None);
            }
            let len = u32::try_from(s.chars().count()).unwrap_or(u32::MAX);
            if field.max_length.is_some_and(|m| len > m)
                || field.min_length.is_some_and(|m| len < m)
            {
                return bad(
                    ctx,
                    format!("default of `{n}` violates its min_length/max_length"),
                    None,
                );
            }
            if let Some(p) = &field.pattern
                && regex::Regex::new(p).is_ok_and(|re| !re.is_match(s))
            {
                return bad(
                    ctx,
                    format!("default of `{n}` does not match its pattern"),
                    None,
                );
            }
            Value::Text(s.to_owned())
        }
        FieldType::Integer => {
            let Some(i) = int_value(raw) else {
                return bad(ctx, format!("default of `{n}` must be an integer"), None);
            };
            if field
                .min
                .is_some_and(|m| matches!(m, Bound::Int(m) if i < m))
                || field
                    .max
                    .is_some_and(|m| matches!(m, Bound::Int(m) if i > m))
            {
                return bad(ctx, format!("default of `{n}` is outside min/max"), None);
            }
            Value::Int(i)
        }
        FieldType::Number => {
            #[allow(clippy::cast_precision_loss)]
            let Some(x) = float_value(raw).or_else(|| int_value(raw).map(|i| i as f64)) else {
                return bad(ctx, format!("default of `{n}` must be a number"), None);
            };
            if !x.is_finite()
                || field.min.is_some_and(|m| x < m.as_f64())
                || field.max.is_some_and(|m| x > m.as_f64())
            {
                return bad(ctx, format!("default of `{n}` is outside min/max"), None);
            }
            Value::Float(x)
        }
        FieldType::Boolean => match raw.as_bool() {
            Some(b) => Value::Bool(b),
            None => return bad(ctx, format!("default of `{n}` must be true or false"), None),
        },
        FieldType::Datetime => match raw.as_str() {
            Some("now") => return Some(DefaultValue::Now),
            Some(s) => match normalize_datetime(s) {
                Some(t) => Value::Text(t),
                None => {
                    return bad(
                        ctx,
                        format!("default of `{n}` is not an RFC 3339 date-time"),
                        Some("use \"now\" or e.g. \"2026-01-01T00:00:00Z\"".into()),
                    );
                }
            },
            None => {
                return bad(
                    ctx,
                    format!("default of `{n}` must be a string"),
                    Some("use \"now\" or an RFC 3339 date-time in quotes".into()),
                );
            }
        },
        FieldType::Date => match raw.as_str() {
            Some("today") => return Some(DefaultValue::Today),
            Some(s) => match normalize_date(s) {
                Some(d) => Value::Text(d),
                None => {
                    return bad(
                        ctx,
                        format!("default of `{n}` is not a YYYY-MM-DD date"),
                        Some("use \"today\" or e.g. \"2026-01-31\"".into()),
                    );
                }
            },
            None => {
                return bad(
                    ctx,
                    format!("default of `{n}` must be a string"),
                    Some("use \"today\" or a date in quotes".into()),
                );
            }
        },
        FieldType::Enum => match raw.as_str() {
            Some(s) if field.values.iter().any(|v| v == s) => Value::Text(s.to_owned()),
            Some(s) => {
                return bad(
                    ctx,
                    format!("default \"{s}\" of `{n}` is not one of its values"),
                    Some(format!("allowed: {}", field.values.join(", "))),
                );
            }
            None => return bad(ctx, format!("default of `{n}` must be a string"), None),
        },
        FieldType::Json => {
            return bad(
                ctx,
                format!("json field `{n}` cannot have a default"),
                Some("set the value when creating records".into()),
            );
        }
        FieldType::Relation => {
            if raw.as_str() == Some("auth.user_id") {
                if field.collection.as_deref() == Some(USERS) {
                    return Some(DefaultValue::AuthUserId);
                }
                return bad(
                    ctx,
                    format!("`{n}` gets \"auth.user_id\" but does not relate to `users`"),
                    Some("owner fields are { type = \"relation\", collection = \"users\", default = \"auth.user_id\" }".into()),
                );
            }
            return bad(
                ctx,
                format!("relation field `{n}` cannot have a default"),
                Some("the only default of a relation is \"auth.user_id\" on a relation to `users` (an owner field)".into()),
            );
        }
    };
    Some(DefaultValue::Literal(value))
}

fn walk_indexes(
    ctx: &mut Ctx<'_>,
    coll: &str,
    v: &Spanned<DeValue<'_>>,
    field_names: &[String],
) -> Vec<Index> {
    let Some(items) = v.get_ref().as_array() else {
        ctx.err(
            v.span(),
            "`indexes` must be an array of tables",
            Some(format!(
                "write [[collections.{coll}.indexes]] then fields = [\"...\"]"
            )),
        );
        return Vec::new();
    };
    let mut out: Vec<Index> = Vec::new();
    for item in items.iter() {
        let Some(t) = item.get_ref().as_table() else {
            ctx.err(
                item.span(),
                "each index must be a table with `fields`",
                None,
            );
            continue;
        };
        let mut fields = Vec::new();
        let mut unique = false;
        let mut saw_fields = false;
        for (key, value) in t {
            match key.get_ref().as_ref() {
                "fields" => {
                    saw_fields = true;
                    let Some(arr) = value.get_ref().as_array() else {
                        ctx.err(
                            value.span(),
                            "index `fields` must be an array of field names",
                            None,
                        );
                        continue;
                    };
                    if arr.is_empty() {
                        ctx.err(value.span(), "index `fields` must not be empty", None);
                    }
                    for f in arr.iter() {
                        let Some(name) = f.get_ref().as_str() else {
                            ctx.err(f.span(), "index fields must be strings", None);
                            continue;
                        };
                        let known =
                            field_names.iter().any(|n| n == name) || SYSTEM_FIELDS.contains(&name);
                        if !known {
                            let cands: Vec<&str> = field_names
                                .iter()
                                .map(String::as_str)
                                .chain(SYSTEM_FIELDS)
                                .collect();
                            ctx.err(
                                f.span(),
                                format!("index on unknown field `{name}` of `{coll}`"),
                                Some(unknown_key_hint(name, &cands)),
                            );
                        } else if fields.iter().any(|x: &String| x == name) {
                            ctx.err(
                                f.span(),
                                format!("field `{name}` appears twice in one index"),
                                None,
                            );
                        } else {
                            fields.push(name.to_owned());
                        }
                    }
                }
                "unique" => unique = bool_value(ctx, value, "unique").unwrap_or(false),
                other => ctx.err(
                    key.span(),
                    format!("unknown key `{other}` in index"),
                    Some(unknown_key_hint(other, INDEX_KEYS)),
                ),
            }
        }
        if !saw_fields {
            ctx.err(
                item.span(),
                "index has no `fields`",
                Some("add fields = [\"...\"]".into()),
            );
            continue;
        }
        let ix = Index { fields, unique };
        if out.iter().any(|o| o.fields == ix.fields) {
            ctx.err(item.span(), "the same index is declared twice", None);
            continue;
        }
        if !ix.fields.is_empty() {
            out.push(ix);
        }
    }
    out
}

/// Relations must point at declared collections; found after all names are known.
fn check_relations(ctx: &mut Ctx<'_>, c: &Collection, names: &BTreeSet<String>, doc: &DeTable<'_>) {
    for (field, target) in c.relations() {
        if target == c.name && field.required {
            let span = relation_span(doc, &c.name, &field.name).unwrap_or(0..0);
            ctx.err(
                span,
                format!(
                    "field `{}.{}` is a required relation to its own collection, so no first record could ever be created",
                    c.name, field.name
                ),
                Some("make it optional (a root record has none)".into()),
            );
            continue;
        }
        if names.contains(target) || target == USERS {
            continue;
        }
        let span = relation_span(doc, &c.name, &field.name).unwrap_or(0..0);
        let hint = match did_you_mean(target, names.iter().map(String::as_str)) {
            Some(m) => format!(
                "did you mean \"{m}\"? declared collections: {}",
                join(names)
            ),
            None => format!("declared collections: {}", join(names)),
        };
        ctx.err(
            span,
            format!(
                "field `{}.{}` relates to collection \"{target}\", which is not declared",
                c.name, field.name
            ),
            Some(hint),
        );
    }
}

/// Required relations that loop through other collections (A needs a B, B
/// needs an A) make the first record of every collection on the loop
/// impossible to create. (A loop of length one is reported by
/// `check_relations`.)
fn check_required_cycles(ctx: &mut Ctx<'_>, collections: &[Collection], doc: &DeTable<'_>) {
    let needs = |c: &Collection| -> Vec<(String, String)> {
        c.relations()
            .filter(|(f, t)| f.required && *t != c.name)
            .map(|(f, t)| (f.name.clone(), t.to_owned()))
            .collect()
    };
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for start in collections {
        // Depth-first walk of required relations, remembering the path.
        let mut stack: Vec<(String, Vec<(String, String)>)> =
            vec![(start.name.clone(), Vec::new())];
        while let Some((at, path)) = stack.pop() {
            let Some(c) = collections.iter().find(|c| c.name == at) else {
                continue;
            };
            for (field, target) in needs(c) {
                let mut p = path.clone();
                p.push((at.clone(), field));
                if target == start.name {
                    let mut members: Vec<&str> = p.iter().map(|(c, _)| c.as_str()).collect();
                    members.sort_unstable();
                    if reported.insert(members.join(",")) {
                        let (c0, f0) = &p[0];
                        let span = relation_span(doc, c0, f0).unwrap_or(0..0);
                        let route = p
                            .iter()
                            .map(|(c, f)| format!("{c}.{f}"))
                            .collect::<Vec<_>>()
                            .join(" → ");
                        ctx.err(
                            span,
                            format!(
                                "required relations form a loop ({route} → {}), so no first record could ever be created",
                                start.name
                            ),
                            Some("make one relation on the loop optional".into()),
                        );
                    }
                } else if p.len() < collections.len() && !p.iter().any(|(c, _)| *c == target) {
                    stack.push((target, p));
                }
            }
        }
    }
}

fn join(names: &BTreeSet<String>) -> String {
    names
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn relation_span(doc: &DeTable<'_>, coll: &str, field: &str) -> Option<Range<usize>> {
    let v = doc
        .get("collections")?
        .get_ref()
        .as_table()?
        .get(coll)?
        .get_ref()
        .as_table()?
        .get("fields")?
        .get_ref()
        .as_table()?
        .get(field)?
        .get_ref()
        .as_table()?
        .get("collection")?;
    Some(v.span())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(src: &str) -> Vec<Diagnostic> {
        parse_schema(src).expect_err("schema should be rejected")
    }

    #[test]
    fn parses_the_issue_example() {
        let s = parse_schema(
            r#"
[collections.posts.fields]
title        = { type = "text", required = true, max_length = 200 }
body         = { type = "text" }
views        = { type = "integer", min = 0, default = 0 }
status       = { type = "enum", values = ["draft", "published"], default = "draft" }
published_at = { type = "datetime" }

[collections.comments.fields]
post = { type = "relation", collection = "posts", required = true }
body = { type = "text", required = true, max_length = 5000 }

[[collections.posts.indexes]]
fields = ["status", "created_at"]
"#,
        )
        .expect("valid");
        assert_eq!(s.collections.len(), 2);
        let posts = s.collection("posts").expect("posts");
        let names: Vec<_> = posts.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["title", "body", "views", "status", "published_at"]);
        assert_eq!(posts.indexes[0].fields, ["status", "created_at"]);
        assert_eq!(
            posts.field("status").and_then(|f| f.default.clone()),
            Some(DefaultValue::Literal(Value::Text("draft".into())))
        );
        // The canonical form round-trips.
        let back = Schema::from_canonical(&s.canonical()).expect("round trip");
        assert_eq!(back, s);
    }

    #[test]
    fn reports_every_mistake_with_position_and_hint() {
        let src = r#"[collections.posts.fields]
title = { type = "txt" }
status = { type = "enum", values = ["a", "b"], default = "c" }
author = { type = "relation", collection = "userz" }
views = { type = "integer", max_length = 3 }

[collections.Users.fields]
name = { type = "text" }
"#;
        let d = errs(src);
        assert_eq!(d.len(), 5, "{d:#?}");
        assert_eq!((d[0].line, d[0].column), (2, 18));
        assert!(d[0].message.contains("unknown field type \"txt\""));
        assert!(
            d[0].hint
                .as_deref()
                .is_some_and(|h| h.contains("did you mean \"text\""))
        );
        assert_eq!(d[1].line, 3);
        assert!(d[1].message.contains("not one of its values"));
        assert_eq!(d[2].line, 4);
        assert!(d[2].message.contains("not declared"));
        assert_eq!(d[3].line, 5);
        assert!(d[3].message.contains("does not apply to integer"));
        assert_eq!(d[4].line, 7);
        assert!(d[4].hint.as_deref().is_some_and(|h| h.contains("`users`")));
    }

    #[test]
    fn refuses_reserved_and_system_names() {
        let d = errs("[collections.auth.fields]\nid = { type = \"text\" }\n");
        assert_eq!(d.len(), 2, "{d:#?}");
        assert!(d.iter().any(|x| x.message.contains("reserved")));
        assert!(d.iter().any(|x| x.message.contains("system field")));
    }

    #[test]
    fn invalid_toml_is_one_positioned_error() {
        let d = errs("[collections.posts.fields\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, 1);
        assert!(d[0].message.starts_with("invalid TOML"));
    }

    #[test]
    fn unknown_keys_and_bad_constraints() {
        let d = errs(
            r#"[collections.posts]
descripton = "x"
[collections.posts.fields]
a = { type = "text", requird = true, pattern = "(" }
b = { type = "integer", min = 5, max = 1 }
c = { type = "json", default = 1 }
d = "text"
[[collections.posts.indexes]]
fields = ["nope"]
"#,
        );
        let msgs: Vec<&str> = d.iter().map(|x| x.message.as_str()).collect();
        assert_eq!(d.len(), 7, "{msgs:#?}");
        assert!(
            d[0].hint
                .as_deref()
                .is_some_and(|h| h.contains("did you mean `description`"))
        );
        assert!(
            d[1].hint
                .as_deref()
                .is_some_and(|h| h.contains("did you mean `required`"))
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("not a valid regular expression"))
        );
        assert!(msgs.iter().any(|m| m.contains("min is greater than max")));
        assert!(msgs.iter().any(|m| m.contains("cannot have a default")));
        assert!(msgs.iter().any(|m| m.contains("must be a table")));
        assert!(msgs.iter().any(|m| m.contains("unknown field `nope`")));
    }

    #[test]
    fn non_finite_bounds_empty_field_tables_and_required_self_relations_are_refused() {
        let d = errs("[collections.p.fields]\nt = { type = \"number\", min = nan, max = inf }\n");
        assert_eq!(d.len(), 2, "{d:#?}");
        assert!(d.iter().all(|x| x.message.contains("must be a number")));
        let d = errs("[collections.p.fields]\n");
        assert!(d[0].message.contains("declares no fields"), "{d:#?}");
        let d = errs(
            "[collections.p.fields]\nparent = { type = \"relation\", collection = \"p\", required = true }\n",
        );
        assert!(d[0].message.contains("no first record"), "{d:#?}");
        assert!(
            parse_schema(
                "[collections.p.fields]\nparent = { type = \"relation\", collection = \"p\" }\n"
            )
            .is_ok()
        );
    }

    #[test]
    fn loops_of_required_relations_are_refused_once() {
        let d = errs(
            "[collections.a.fields]\nb = { type = \"relation\", collection = \"b\", required = true }\n[collections.b.fields]\na = { type = \"relation\", collection = \"a\", required = true }\n",
        );
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].message.contains("form a loop"), "{d:#?}");
        // Optional somewhere on the loop: fine.
        assert!(
            parse_schema("[collections.a.fields]\nb = { type = \"relation\", collection = \"b\", required = true }\n[collections.b.fields]\na = { type = \"relation\", collection = \"a\" }\n").is_ok()
        );
    }

    #[test]
    fn empty_schema_is_refused() {
        let d = errs("");
        assert!(d[0].message.contains("no collections"));
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
