//! The schema model: what `plinth.toml` declares, after it has been checked.
//!
//! Invariant: a [`Schema`] value is always valid. The only constructor is
//! [`crate::parse::parse_schema`] (and deserializing a schema that Plinth itself
//! stored, which was valid when stored), so every consumer — store, contract,
//! HTTP — may rely on names being safe identifiers, relations pointing at
//! existing collections, defaults matching their field type, and so on.

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// System fields every record carries. Clients can never set them.
pub const SYSTEM_FIELDS: [&str; 4] = ["id", "created_at", "updated_at", "version"];

/// Collection names that would clash with Plinth's own routes or with names
/// later capabilities reserve (auth, tenants, admin console, ...).
pub const RESERVED_COLLECTIONS: &[&str] = &[
    "admin", "api", "api_keys", "audit", "auth", "docs", "events", "files", "healthz", "jobs",
    "me", "metrics", "openapi", "problems", "readyz", "realtime", "schema", "search", "sessions",
    "system", "tenants", "users", "webhooks",
];

/// Longest collection or field name (PostgreSQL identifiers are at most 63 bytes).
pub const MAX_NAME_LEN: usize = 48;

/// The whole data model. Collections are kept sorted by name so that the
/// canonical form (and therefore the stored copy and the contract) is stable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub collections: Vec<Collection>,
    /// Custom roles (`[roles.<name>]`), besides [`BUILTIN_ROLES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
}

/// The roles every tenant has, strongest first. `owner` is given to a
/// tenant's creator; only owners can grant or take away `owner`.
pub const BUILTIN_ROLES: [&str; 4] = ["owner", "admin", "member", "viewer"];

/// The built-in collection of accounts: relation fields may point at it
/// (`collection = "users"`), records of it are managed by `/v1/auth`.
pub const USERS: &str = "users";

/// A custom role declared in `plinth.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What a client can do to a collection; each has its own [`Permission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    List,
    Read,
    Create,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::List,
        Action::Read,
        Action::Create,
        Action::Update,
        Action::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// Who may perform one action on a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Nobody (the default for an action a collection does not list).
    #[default]
    Nobody,
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in user or API key.
    Authenticated,
    /// Principals holding one of these roles in the request's tenant.
    Roles(Vec<String>),
    /// A rule in the filter language over `auth.*`, `role` and `record.*`
    /// (checked by `rule::check_rule` when the schema is parsed).
    Rule(String),
}

/// Per-action permissions of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Permissions {
    #[serde(default, skip_serializing_if = "is_nobody")]
    pub list: Permission,
    #[serde(default, skip_serializing_if = "is_nobody")]
    pub read: Permission,
    #[serde(default, skip_serializing_if = "is_nobody")]
    pub create: Permission,
    #[serde(default, skip_serializing_if = "is_nobody")]
    pub update: Permission,
    #[serde(default, skip_serializing_if = "is_nobody")]
    pub delete: Permission,
}

fn is_nobody(p: &Permission) -> bool {
    *p == Permission::Nobody
}

impl Permissions {
    pub fn get(&self, a: Action) -> &Permission {
        match a {
            Action::List => &self.list,
            Action::Read => &self.read,
            Action::Create => &self.create,
            Action::Update => &self.update,
            Action::Delete => &self.delete,
        }
    }

    pub fn get_mut(&mut self, a: Action) -> &mut Permission {
        match a {
            Action::List => &mut self.list,
            Action::Read => &mut self.read,
            Action::Create => &mut self.create,
            Action::Update => &mut self.update,
            Action::Delete => &mut self.delete,
        }
    }

    fn is_empty(&self) -> bool {
        Action::ALL.iter().all(|a| is_nobody(self.get(*a)))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// User fields in declaration order (the order of `plinth.toml`).
    pub fields: Vec<Field>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<Index>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecation: Option<Deprecation>,
    /// Every record belongs to one tenant; requests see only their tenant's.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tenant_scoped: bool,
    #[serde(default, skip_serializing_if = "Permissions::is_empty")]
    pub permissions: Permissions,
}

/// `deprecated = "YYYY-MM-DD"` (since when) and optional `sunset = "YYYY-MM-DD"`
/// (when it goes away; not before the deprecation date).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deprecation {
    pub since: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Integer,
    Number,
    Boolean,
    Datetime,
    Date,
    Enum,
    Email,
    Url,
    Json,
    Relation,
}

impl FieldType {
    pub const ALL: [FieldType; 11] = [
        FieldType::Text,
        FieldType::Integer,
        FieldType::Number,
        FieldType::Boolean,
        FieldType::Datetime,
        FieldType::Date,
        FieldType::Enum,
        FieldType::Email,
        FieldType::Url,
        FieldType::Json,
        FieldType::Relation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Datetime => "datetime",
            FieldType::Date => "date",
            FieldType::Enum => "enum",
            FieldType::Email => "email",
            FieldType::Url => "url",
            FieldType::Json => "json",
            FieldType::Relation => "relation",
        }
    }

    pub fn parse(s: &str) -> Option<FieldType> {
        FieldType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Types whose values are strings with a length.
    pub fn is_stringy(self) -> bool {
        matches!(self, FieldType::Text | FieldType::Email | FieldType::Url)
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::Integer | FieldType::Number)
    }
}

/// A numeric bound (`min` / `max`): integers stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    Int(i64),
    Float(f64),
}

impl Bound {
    pub fn as_f64(self) -> f64 {
        match self {
            // Precision loss above 2^53 only affects how the bound is compared
            // against floats; integer fields compare with `as_i64`.
            #[allow(clippy::cast_precision_loss)]
            Bound::Int(i) => i as f64,
            Bound::Float(f) => f,
        }
    }
}

/// A field's default value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultValue {
    /// A literal, already checked against the field's type and constraints.
    Literal(Value),
    /// `default = "now"` on a datetime field: the server's clock at creation.
    Now,
    /// `default = "today"` on a date field.
    Today,
    /// `default = "auth.user_id"` on a relation to `users`: the signed-in
    /// user who creates the record. Such an owner field is set by the server
    /// only; clients can neither set nor change it.
    AuthUserId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<DefaultValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Allowed values of an `enum` field (non-empty, distinct).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Target collection of a `relation` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecation: Option<Deprecation>,
    /// The field's previous name, for `plinth migrate` (a rename, not drop + add).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Field {
    /// A field a client may omit on create (it is optional or has a default).
    pub fn optional_on_create(&self) -> bool {
        !self.required || self.default.is_some()
    }

    /// A field whose stored value may be null.
    pub fn nullable(&self) -> bool {
        !self.required
    }

    /// An owner field: set by the server from the signed-in user, never by clients.
    pub fn server_set(&self) -> bool {
        matches!(self.default, Some(DefaultValue::AuthUserId))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Field names, user or system (`created_at`, `updated_at`, `id`).
    pub fields: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
}

impl Index {
    /// The SQL index name: stable, readable, and within identifier limits.
    pub fn name(&self, collection: &str) -> String {
        let base = format!(
            "{collection}_{}_{}",
            self.fields.join("_"),
            if self.unique { "uidx" } else { "idx" }
        );
        if base.len() <= 63 {
            return base;
        }
        // Too long for PostgreSQL: keep a prefix and add a stable hash.
        let hash = fnv1a(base.as_bytes());
        format!("{}_{hash:08x}", &base[..50])
    }
}

/// FNV-1a (32-bit) — only used to shorten identifiers, never for security.
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl Schema {
    pub fn collection(&self, name: &str) -> Option<&Collection> {
        self.collections.iter().find(|c| c.name == name)
    }

    /// The canonical text of this schema: what Plinth records as "applied".
    /// Two schemas are the same iff their canonical texts are equal.
    pub fn canonical(&self) -> String {
        // Serializing plain data structs to TOML cannot fail except for
        // unsupported shapes, which this model does not contain.
        toml::to_string(self).unwrap_or_else(|e| format!("# unserializable schema: {e}"))
    }

    /// Reads back a schema stored by [`Schema::canonical`].
    pub fn from_canonical(text: &str) -> Result<Schema, String> {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    }
}

impl Schema {
    /// Every role name: the built-in ones, then the custom ones.
    pub fn role_names(&self) -> Vec<&str> {
        BUILTIN_ROLES
            .iter()
            .copied()
            .chain(self.roles.iter().map(|r| r.name.as_str()))
            .collect()
    }
}

impl Collection {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Collections whose records this collection points at.
    pub fn relations(&self) -> impl Iterator<Item = (&Field, &str)> {
        self.fields
            .iter()
            .filter_map(|f| f.collection.as_deref().map(|c| (f, c)))
    }
}

/// `lower_snake_case`: starts with a letter, then letters, digits, single underscores.
pub fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() => {}
        _ => return false,
    }
    !name.ends_with('_')
        && !name.contains("__")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case() {
        assert!(is_snake_case("posts"));
        assert!(is_snake_case("blog_posts2"));
        assert!(!is_snake_case("Posts"));
        assert!(!is_snake_case("_posts"));
        assert!(!is_snake_case("posts_"));
        assert!(!is_snake_case("a__b"));
        assert!(!is_snake_case("1posts"));
        assert!(!is_snake_case("po-sts"));
        assert!(!is_snake_case(""));
    }

    #[test]
    fn long_index_names_are_shortened_stably() {
        let ix = Index {
            fields: vec![
                "a_very_long_field_name".into(),
                "another_long_field_name".into(),
            ],
            unique: false,
        };
        let n = ix.name("a_rather_long_collection_name");
        assert!(n.len() <= 63, "{n}");
        assert_eq!(n, ix.name("a_rather_long_collection_name"));
        assert_eq!(
            Index {
                fields: vec!["status".into()],
                unique: true
            }
            .name("posts"),
            "posts_status_uidx"
        );
    }
}
