//! Permission rules: `role in ['editor', 'admin'] || record.author = auth.user_id`.
//!
//! A rule is an expression in the filter language (see [`crate::filter`]) whose
//! comparisons relate *references* and literals. It is checked once, when the
//! schema is loaded ([`check_rule`]), and resolved per request
//! ([`Rule::resolve`]): everything about the principal is known then and folds
//! to constants, and what remains refers only to the record, so it is an
//! ordinary typed [`Filter`] that the store ANDs into the SQL of list, get,
//! update and delete (pages and totals stay right; nothing is filtered in
//! memory).
//!
//! # Grammar
//!
//! ```text
//! expr       := or
//! or         := and ( "||" and )*
//! and        := unary ( "&&" unary )*
//! unary      := "!" unary | primary
//! primary    := "(" expr ")" | comparison
//! comparison := REF op ( literal | REF ) | literal op REF | REF "in" "[" literal ( "," literal )* "]"
//! REF        := "record." FIELD | "auth." NAME | "role"
//! ```
//!
//! `op` and `literal` are those of filters; the length and depth limits too.
//!
//! # References
//!
//! | reference | value |
//! |---|---|
//! | `record.<field>` | a field or system field (`id`, `created_at`, `updated_at`, `version`) of the collection |
//! | `auth.user_id` | the caller's user id (a UUID string), null when anonymous |
//! | `auth.tenant_id` | the selected tenant's id, null when none is selected |
//! | `auth.role` (alias `role`) | the caller's role name, null when none |
//! | `auth.kind` | `"user"` or `"api_key"`, null when anonymous |
//! | `auth.email` | the caller's email, null when unknown |
//!
//! # Checking
//!
//! - `literal op REF` is normalised to `REF op' literal` (`5 < record.views`
//!   is `record.views > 5`), and `auth.x op record.f` to `record.f op' auth.x`.
//! - `record.f op literal` and `record.f in [...]` are typed exactly as the
//!   filter `f op literal` is ([`check_filter`]): same literal conversions,
//!   same operator rules (`~` only on text, email and url fields).
//! - `record.a op record.b` is an error: a rule compares a record field with a
//!   value or with the principal, never two record fields.
//! - A comparison with an `auth.*` value uses `=` or `!=` (or is `in [...]`);
//!   `auth.user_id` / `auth.tenant_id` compare with relation fields, `id` and
//!   text fields; `auth.role` / `auth.kind` / `auth.email` with text, email,
//!   url and enum fields; two auth values compare when both are ids or both
//!   are not.
//! - Literals compared with auth values are strings or null: ids must be
//!   UUIDs, role names must be known roles (see [`check_rule`]), kinds must be
//!   `user` or `api_key`. `in` lists hold no null.
//!
//! # Semantics
//!
//! - **The null rule.** A comparison involving an `auth.*` value that is null
//!   (anonymous caller, no tenant selected, no role, ...) is *false*, whatever
//!   the operator, `=` and `!=` alike — except the explicit tests
//!   `auth.x = null` / `auth.x != null`. So `record.author = auth.user_id`
//!   never matches records without an author for an anonymous caller, and
//!   `auth.role != "admin"` does not hold without a role. After that rule,
//!   logic is plain two-valued boolean logic: `!(record.author = auth.user_id)`
//!   is true for an anonymous caller.
//! - With a known value, `record.f op auth.x` means exactly the filter
//!   `f op "<value>"` (so `record.f != auth.user_id` also holds where `f` is
//!   null, as in filters).
//! - Ids (`auth.user_id`, `auth.tenant_id`, id literals compared with them)
//!   are lowercased, as relation literals of filters are: ids compare
//!   case-insensitively. Role names, kinds and emails compare exactly.
//! - Resolution folds constants: `true && x` is `x`, `false && x` is false,
//!   `true || x` is true, `false || x` is `x`, `!true` is false. The result is
//!   [`Resolved::Allow`], [`Resolved::Deny`] or [`Resolved::Where`] with a
//!   filter over fields of the collection only.

use std::borrow::Cow;
use std::fmt;

use crate::filter::{
    CmpOp, Expr, Filter, FilterError, Grammar, Literal, Parser, Tok, check_filter, field_type,
    parse_with, with_article,
};
use crate::parse::did_you_mean;
use crate::schema::{Collection, FieldType, SYSTEM_FIELDS};
use crate::value::{Value, is_valid_id};

/// The roles every project has; custom roles come on top.
pub use crate::schema::BUILTIN_ROLES;

/// The values of `auth.kind` (besides null).
pub const AUTH_KINDS: [&str; 2] = ["user", "api_key"];

fn fail<T>(position: usize, message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        position,
        message: message.into(),
    })
}

// ---------------------------------------------------------------- syntax

/// One side of a comparison, with its 1-based position.
#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// A name: `record.title`, `auth.user_id`, `role` (checked later).
    Ref {
        name: String,
        pos: usize,
    },
    Lit {
        value: Literal,
        pos: usize,
    },
}

impl Operand {
    fn pos(&self) -> usize {
        match self {
            Operand::Ref { pos, .. } | Operand::Lit { pos, .. } => *pos,
        }
    }
}

/// A parsed (unchecked) rule.
#[derive(Debug, Clone, PartialEq)]
enum RuleExpr {
    Cmp {
        left: Operand,
        op: CmpOp,
        right: Operand,
    },
    In {
        left: Operand,
        values: Vec<(Literal, usize)>,
    },
    And(Box<RuleExpr>, Box<RuleExpr>),
    Or(Box<RuleExpr>, Box<RuleExpr>),
    Not(Box<RuleExpr>),
}

const REFS: &str = "a reference (record.<field>, auth.<name> or role)";

fn operand(p: &mut Parser, wanted: &str) -> Result<Operand, FilterError> {
    let pos = p.pos();
    match p.peek() {
        Some(Tok::Ident(w)) if w == "in" => fail(pos, format!("expected {wanted}, found `in`")),
        Some(Tok::Ident(w)) if !matches!(w.as_str(), "true" | "false" | "null") => {
            let name = w.clone();
            p.bump();
            Ok(Operand::Ref { name, pos })
        }
        Some(Tok::Ident(_) | Tok::Str(_) | Tok::Num(_)) => Ok(Operand::Lit {
            value: p.literal()?,
            pos,
        }),
        _ => p.unexpected(wanted),
    }
}

impl Grammar for RuleExpr {
    const NOUN: &'static str = "rule";
    const DOTTED_NAMES: bool = true;

    fn leaf(p: &mut Parser) -> Result<Self, FilterError> {
        let left = operand(p, &format!("{REFS}, a value, `(` or `!`"))?;
        match p.peek().cloned() {
            Some(Tok::Op(op)) => {
                p.bump();
                let right = operand(p, &format!("a value or {REFS}"))?;
                Ok(RuleExpr::Cmp { left, op, right })
            }
            Some(Tok::Ident(w)) if w == "in" => {
                p.bump();
                let values = p.literal_list()?;
                Ok(RuleExpr::In { left, values })
            }
            _ => p.unexpected("an operator (= != > >= < <= ~ in)"),
        }
    }
    fn and(a: Self, b: Self) -> Self {
        RuleExpr::And(Box::new(a), Box::new(b))
    }
    fn or(a: Self, b: Self) -> Self {
        RuleExpr::Or(Box::new(a), Box::new(b))
    }
    fn not(a: Self) -> Self {
        RuleExpr::Not(Box::new(a))
    }
}

// ---------------------------------------------------------------- checked form

/// An `auth.*` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    UserId,
    TenantId,
    Role,
    Kind,
    Email,
}

impl Var {
    const ALL: [Var; 5] = [Var::UserId, Var::TenantId, Var::Role, Var::Kind, Var::Email];

    /// The name after `auth.`.
    fn short(self) -> &'static str {
        match self {
            Var::UserId => "user_id",
            Var::TenantId => "tenant_id",
            Var::Role => "role",
            Var::Kind => "kind",
            Var::Email => "email",
        }
    }

    fn is_id(self) -> bool {
        matches!(self, Var::UserId | Var::TenantId)
    }

    fn describe(self) -> &'static str {
        match self {
            Var::UserId | Var::TenantId => "an id (a UUID string) or null",
            Var::Role => "a role name or null",
            Var::Kind => "\"user\", \"api_key\" or null",
            Var::Email => "a string or null",
        }
    }

    /// The variable's value for `auth`; ids in lower case.
    fn value<'a>(self, auth: &AuthFacts<'a>) -> Option<Cow<'a, str>> {
        let id = |s: Option<&'a str>| s.map(|s| Cow::Owned(s.to_ascii_lowercase()));
        match self {
            Var::UserId => id(auth.user_id),
            Var::TenantId => id(auth.tenant_id),
            Var::Role => auth.role.map(Cow::Borrowed),
            Var::Kind => auth.kind.map(Cow::Borrowed),
            Var::Email => auth.email.map(Cow::Borrowed),
        }
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "auth.{}", self.short())
    }
}

/// A checked rule: comparisons are typed and normalised.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// `record.f op literal` or `record.f in [...]`, typed as a filter.
    Record(Filter),
    /// `record.field op auth.var`, `op` being `=` or `!=`.
    RecordAuth {
        field: String,
        ty: FieldType,
        op: CmpOp,
        var: Var,
    },
    /// `auth.var op literal` (`op` is `=` or `!=`; `None` is `null`).
    AuthIs {
        var: Var,
        op: CmpOp,
        value: Option<String>,
    },
    /// `auth.var in [...]` (no nulls).
    AuthIn {
        var: Var,
        values: Vec<String>,
    },
    /// `auth.a op auth.b`, `op` being `=` or `!=`.
    AuthAuth {
        a: Var,
        op: CmpOp,
        b: Var,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
}

/// What a reference names.
#[derive(Debug, Clone)]
enum Target {
    Record { field: String, ty: FieldType },
    Auth(Var),
}

/// An operand after its reference is resolved.
#[derive(Debug, Clone)]
enum Side {
    Ref(Target, usize),
    Lit(Literal, usize),
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        other => other,
    }
}

struct Checker<'a> {
    c: &'a Collection,
    roles: &'a [&'a str],
}

impl Checker<'_> {
    fn reference(&self, name: &str, pos: usize) -> Result<Target, FilterError> {
        let c = self.c;
        if name == "role" {
            return Ok(Target::Auth(Var::Role));
        }
        if let Some(rest) = name.strip_prefix("auth.") {
            if let Some(v) = Var::ALL.into_iter().find(|v| v.short() == rest) {
                return Ok(Target::Auth(v));
            }
            let names: Vec<String> = Var::ALL.iter().map(ToString::to_string).collect();
            let hint = did_you_mean(rest, Var::ALL.map(Var::short))
                .map(|m| format!("did you mean `auth.{m}`? "))
                .unwrap_or_default();
            return fail(
                pos,
                format!("unknown `{name}`; {hint}known: {}", names.join(", ")),
            );
        }
        if let Some(field) = name.strip_prefix("record.") {
            if let Some(ty) = field_type(c, field) {
                return Ok(Target::Record {
                    field: field.to_owned(),
                    ty,
                });
            }
            let names = c
                .fields
                .iter()
                .map(|f| f.name.as_str())
                .chain(SYSTEM_FIELDS);
            let hint = did_you_mean(field, names)
                .map(|m| format!("; did you mean `record.{m}`?"))
                .unwrap_or_default();
            return fail(pos, format!("`{}` has no field `{field}`{hint}", c.name));
        }
        match name {
            "record" => fail(pos, "write `record.<field>` for a field of the record"),
            "auth" => fail(
                pos,
                "write `auth.<name>`: auth.user_id, auth.tenant_id, auth.role, auth.kind or auth.email",
            ),
            _ if field_type(c, name).is_some() => fail(
                pos,
                format!("unknown name `{name}`; a field of the record is written `record.{name}`"),
            ),
            _ => fail(
                pos,
                format!("unknown name `{name}`; a rule compares {REFS} with a value"),
            ),
        }
    }

    fn side(&self, o: &Operand) -> Result<Side, FilterError> {
        Ok(match o {
            Operand::Ref { name, pos } => Side::Ref(self.reference(name, *pos)?, *pos),
            Operand::Lit { value, pos } => Side::Lit(value.clone(), *pos),
        })
    }

    /// A literal compared with `var`: `None` for null.
    fn auth_literal(
        &self,
        var: Var,
        lit: &Literal,
        pos: usize,
    ) -> Result<Option<String>, FilterError> {
        let s = match lit {
            Literal::Null => return Ok(None),
            Literal::Str(s) => s,
            Literal::Bool(_) => {
                return fail(
                    pos,
                    format!(
                        "`{var}` is {}; it cannot be compared with true/false",
                        var.describe()
                    ),
                );
            }
            Literal::Int(_) | Literal::Float(_) => {
                return fail(
                    pos,
                    format!(
                        "`{var}` is {}; it cannot be compared with a number",
                        var.describe()
                    ),
                );
            }
        };
        if s.contains('\0') {
            return fail(pos, "strings cannot contain NUL characters");
        }
        match var {
            Var::UserId | Var::TenantId if is_valid_id(s) => Ok(Some(s.to_ascii_lowercase())),
            Var::UserId | Var::TenantId => fail(
                pos,
                format!("`{var}` holds ids; {s:?} is not an id (a UUID)"),
            ),
            Var::Role if self.roles.contains(&s.as_str()) => Ok(Some(s.clone())),
            Var::Role => {
                let hint = did_you_mean(s, self.roles.iter().copied())
                    .map(|m| format!("did you mean \"{m}\"? "))
                    .unwrap_or_default();
                fail(
                    pos,
                    format!("unknown role {s:?}; {hint}roles: {}", self.roles.join(", ")),
                )
            }
            Var::Kind if AUTH_KINDS.contains(&s.as_str()) => Ok(Some(s.clone())),
            Var::Kind => fail(
                pos,
                format!("`auth.kind` is \"user\" or \"api_key\" (or null), never {s:?}"),
            ),
            Var::Email => Ok(Some(s.clone())),
        }
    }

    fn auth_op(var: Var, op: CmpOp, pos: usize) -> Result<(), FilterError> {
        if matches!(op, CmpOp::Eq | CmpOp::Ne) {
            Ok(())
        } else {
            fail(
                pos,
                format!(
                    "`{var}` compares only with = and != (or `in [...]`), not `{}`",
                    op.as_str()
                ),
            )
        }
    }

    fn cmp(&self, left: &Operand, op: CmpOp, right: &Operand) -> Result<Node, FilterError> {
        let start = left.pos();
        let l = self.side(left)?;
        let r = self.side(right)?;
        // Normalise: a reference on the left, a record field before auth.
        // `~` is not symmetric, so it is never swapped.
        let swap = op != CmpOp::Contains
            && matches!(
                (&l, &r),
                (Side::Lit(..), Side::Ref(..))
                    | (
                        Side::Ref(Target::Auth(_), _),
                        Side::Ref(Target::Record { .. }, _)
                    )
            );
        let (l, op, r) = if swap { (r, flip(op), l) } else { (l, op, r) };
        match (l, r) {
            (Side::Lit(_, _), Side::Lit(_, _)) => {
                fail(start, format!("a comparison needs {REFS} on one side"))
            }
            (Side::Lit(_, p), Side::Ref(..)) => fail(
                p,
                "`~` takes the record field on its left: record.<field> ~ \"text\"",
            ),
            (Side::Ref(Target::Record { field, .. }, p), Side::Lit(value, _)) => {
                let e = Expr::Cmp {
                    field,
                    op,
                    value,
                    pos: p,
                };
                Ok(Node::Record(check_filter(self.c, &e)?))
            }
            (
                Side::Ref(Target::Record { field: a, .. }, p),
                Side::Ref(Target::Record { field: b, .. }, _),
            ) => fail(
                p,
                format!(
                    "`record.{a}` is compared with `record.{b}`; a rule compares a record field with a value or with auth.*, never with another record field"
                ),
            ),
            (Side::Ref(Target::Record { field, ty }, p), Side::Ref(Target::Auth(var), _))
            | (Side::Ref(Target::Auth(var), p), Side::Ref(Target::Record { field, ty }, _)) => {
                Self::auth_op(var, op, p)?;
                let fits = if var.is_id() {
                    matches!(ty, FieldType::Relation | FieldType::Text)
                } else {
                    ty.is_stringy() || ty == FieldType::Enum
                };
                if !fits {
                    let with = if var.is_id() {
                        "relation fields, `id` and text fields"
                    } else {
                        "text, email, url and enum fields"
                    };
                    return fail(
                        p,
                        format!(
                            "`record.{field}` is {} field; `{var}` compares with {with}",
                            with_article(ty)
                        ),
                    );
                }
                Ok(Node::RecordAuth { field, ty, op, var })
            }
            (Side::Ref(Target::Auth(var), p), Side::Lit(lit, lp)) => {
                Self::auth_op(var, op, p)?;
                let value = self.auth_literal(var, &lit, lp)?;
                Ok(Node::AuthIs { var, op, value })
            }
            (Side::Ref(Target::Auth(a), p), Side::Ref(Target::Auth(b), _)) => {
                Self::auth_op(a, op, p)?;
                if a.is_id() != b.is_id() {
                    let (id, other) = if a.is_id() { (a, b) } else { (b, a) };
                    return fail(
                        p,
                        format!("`{id}` is an id and `{other}` is not; they cannot be compared"),
                    );
                }
                Ok(Node::AuthAuth { a, op, b })
            }
        }
    }

    fn check(&self, e: &RuleExpr) -> Result<Node, FilterError> {
        Ok(match e {
            RuleExpr::Cmp { left, op, right } => self.cmp(left, *op, right)?,
            RuleExpr::In { left, values } => match self.side(left)? {
                Side::Lit(_, p) => {
                    return fail(p, format!("`in` needs {REFS} on its left"));
                }
                Side::Ref(Target::Record { field, .. }, p) => {
                    let e = Expr::In {
                        field,
                        values: values.iter().map(|(v, _)| v.clone()).collect(),
                        pos: p,
                    };
                    Node::Record(check_filter(self.c, &e)?)
                }
                Side::Ref(Target::Auth(var), _) => {
                    let mut typed = Vec::with_capacity(values.len());
                    for (lit, lp) in values {
                        match self.auth_literal(var, lit, *lp)? {
                            Some(s) => typed.push(s),
                            None => {
                                return fail(
                                    *lp,
                                    format!(
                                        "`in` lists cannot contain null; use `|| {var} = null`"
                                    ),
                                );
                            }
                        }
                    }
                    Node::AuthIn { var, values: typed }
                }
            },
            RuleExpr::And(a, b) => Node::And(Box::new(self.check(a)?), Box::new(self.check(b)?)),
            RuleExpr::Or(a, b) => Node::Or(Box::new(self.check(a)?), Box::new(self.check(b)?)),
            RuleExpr::Not(a) => Node::Not(Box::new(self.check(a)?)),
        })
    }
}

// ---------------------------------------------------------------- API

/// A checked permission rule for one collection. It keeps its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    source: String,
    node: Node,
}

/// Parses and checks rule text against collection `c`. `roles` is every role
/// name a rule may mention: the [`BUILTIN_ROLES`] plus the project's custom
/// roles (role names not in the list are errors, with a did-you-mean hint).
/// Errors carry the 1-based character position of the mistake.
pub fn check_rule(src: &str, c: &Collection, roles: &[&str]) -> Result<Rule, FilterError> {
    let e = parse_with::<RuleExpr>(src)?;
    let node = Checker { c, roles }.check(&e)?;
    Ok(Rule {
        source: src.to_owned(),
        node,
    })
}

/// What is known about the caller of one request. `None` is null: anonymous,
/// no tenant selected, no role, ...
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthFacts<'a> {
    /// The user's id (a UUID), if a user is signed in (or owns the API key).
    pub user_id: Option<&'a str>,
    /// The selected tenant's id (a UUID).
    pub tenant_id: Option<&'a str>,
    /// The caller's role name.
    pub role: Option<&'a str>,
    /// `"user"` or `"api_key"`; `None` when anonymous.
    pub kind: Option<&'a str>,
    /// The caller's email.
    pub email: Option<&'a str>,
}

/// A rule resolved for one caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// Every record.
    Allow,
    /// No record.
    Deny,
    /// Only the records matching the filter.
    Where(Filter),
}

impl Resolved {
    /// This result ANDed with a request's own filter (`None`: no filter):
    /// what a list should select.
    #[must_use]
    pub fn and_filter(self, filter: Option<Filter>) -> Resolved {
        match (self, filter) {
            (Resolved::Deny, _) => Resolved::Deny,
            (r, None) => r,
            (Resolved::Allow, Some(f)) => Resolved::Where(f),
            (Resolved::Where(r), Some(f)) => Resolved::Where(Filter::And(Box::new(f), Box::new(r))),
        }
    }
}

/// A partly evaluated rule.
enum Part {
    Const(bool),
    Where(Filter),
}

fn fold(n: &Node, auth: &AuthFacts<'_>) -> Part {
    match n {
        Node::Record(f) => Part::Where(f.clone()),
        Node::RecordAuth { field, ty, op, var } => match var.value(auth) {
            // The null rule: no record matches a comparison with a null auth value.
            None => Part::Const(false),
            Some(v) => Part::Where(Filter::Cmp {
                field: field.clone(),
                ty: *ty,
                op: *op,
                value: Value::Text(v.into_owned()),
            }),
        },
        Node::AuthIs { var, op, value } => {
            let eq = *op == CmpOp::Eq;
            Part::Const(match (value, var.value(auth)) {
                (None, a) => eq == a.is_none(),
                (Some(_), None) => false,
                (Some(l), Some(a)) => eq == (*l == *a),
            })
        }
        Node::AuthIn { var, values } => Part::Const(
            var.value(auth)
                .is_some_and(|a| values.iter().any(|v| *v == *a)),
        ),
        Node::AuthAuth { a, op, b } => Part::Const(match (a.value(auth), b.value(auth)) {
            (Some(x), Some(y)) => (*op == CmpOp::Eq) == (x == y),
            _ => false,
        }),
        Node::And(a, b) => match fold(a, auth) {
            Part::Const(false) => Part::Const(false),
            Part::Const(true) => fold(b, auth),
            Part::Where(fa) => match fold(b, auth) {
                Part::Const(false) => Part::Const(false),
                Part::Const(true) => Part::Where(fa),
                Part::Where(fb) => Part::Where(Filter::And(Box::new(fa), Box::new(fb))),
            },
        },
        Node::Or(a, b) => match fold(a, auth) {
            Part::Const(true) => Part::Const(true),
            Part::Const(false) => fold(b, auth),
            Part::Where(fa) => match fold(b, auth) {
                Part::Const(true) => Part::Const(true),
                Part::Const(false) => Part::Where(fa),
                Part::Where(fb) => Part::Where(Filter::Or(Box::new(fa), Box::new(fb))),
            },
        },
        Node::Not(a) => match fold(a, auth) {
            Part::Const(b) => Part::Const(!b),
            Part::Where(f) => Part::Where(Filter::Not(Box::new(f))),
        },
    }
}

fn mentions_record(n: &Node) -> bool {
    match n {
        Node::Record(_) | Node::RecordAuth { .. } => true,
        Node::AuthIs { .. } | Node::AuthIn { .. } | Node::AuthAuth { .. } => false,
        Node::And(a, b) | Node::Or(a, b) => mentions_record(a) || mentions_record(b),
        Node::Not(a) => mentions_record(a),
    }
}

impl Rule {
    /// The rule's text, as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The rule for one caller: auth values fold to constants (see the module
    /// documentation for the null rule), leaving [`Resolved::Allow`],
    /// [`Resolved::Deny`] or a filter over the collection's fields.
    pub fn resolve(&self, auth: &AuthFacts<'_>) -> Resolved {
        match fold(&self.node, auth) {
            Part::Const(true) => Resolved::Allow,
            Part::Const(false) => Resolved::Deny,
            Part::Where(f) => Resolved::Where(f),
        }
    }

    /// Whether the rule mentions the record at all (a rule that does not
    /// always resolves to [`Resolved::Allow`] or [`Resolved::Deny`]; one that
    /// does may still fold to either for some callers).
    pub fn depends_on_record(&self) -> bool {
        mentions_record(&self.node)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse_filter;
    use crate::value::Record;

    const U1: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    const U1_UPPER: &str = "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B";
    const U2: &str = "0190a1b2-c3d4-7e5f-8a9b-000000000002";
    const T1: &str = "0190a1b2-c3d4-7e5f-8a9b-00000000aaaa";
    const ROLES: [&str; 5] = ["owner", "admin", "member", "viewer", "editor"];

    fn posts() -> Collection {
        let schema = crate::parse_schema(
            r#"[collections.people.fields]
name = { type = "text" }

[collections.posts.fields]
title = { type = "text" }
author = { type = "relation", collection = "people" }
owner_email = { type = "email" }
status = { type = "enum", values = ["draft", "published"] }
min_role = { type = "enum", values = ["admin", "editor", "member"] }
views = { type = "integer" }
on = { type = "boolean" }
site = { type = "url" }
meta = { type = "json" }
"#,
        )
        .expect("valid schema");
        schema.collection("posts").expect("posts").clone()
    }

    fn rule(src: &str) -> Rule {
        check_rule(src, &posts(), &ROLES).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn show_value(v: &Value) -> String {
        match v {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => format!("{x:?}"),
            Value::Text(s) | Value::Json(s) => format!("{s:?}"),
        }
    }

    fn show_filter(f: &Filter) -> String {
        match f {
            Filter::Cmp {
                field, op, value, ..
            } => format!("{field} {} {}", op.as_str(), show_value(value)),
            Filter::In { field, values, .. } => {
                let vs: Vec<String> = values.iter().map(show_value).collect();
                format!("{field} in [{}]", vs.join(", "))
            }
            Filter::And(a, b) => format!("({} && {})", show_filter(a), show_filter(b)),
            Filter::Or(a, b) => format!("({} || {})", show_filter(a), show_filter(b)),
            Filter::Not(a) => format!("!{}", show_filter(a)),
        }
    }

    fn show(r: &Resolved) -> String {
        match r {
            Resolved::Allow => "allow".into(),
            Resolved::Deny => "deny".into(),
            Resolved::Where(f) => show_filter(f),
        }
    }

    const ANON: AuthFacts<'static> = AuthFacts {
        user_id: None,
        tenant_id: None,
        role: None,
        kind: None,
        email: None,
    };
    const USER: AuthFacts<'static> = AuthFacts {
        user_id: Some(U1),
        tenant_id: None,
        role: None,
        kind: Some("user"),
        email: Some("a@x.io"),
    };
    const MEMBER: AuthFacts<'static> = AuthFacts {
        tenant_id: Some(T1),
        role: Some("member"),
        ..USER
    };
    const ADMIN: AuthFacts<'static> = AuthFacts {
        role: Some("admin"),
        ..MEMBER
    };
    const API_KEY: AuthFacts<'static> = AuthFacts {
        user_id: None,
        tenant_id: Some(T1),
        role: Some("admin"),
        kind: Some("api_key"),
        email: None,
    };

    fn record(fields: &[(&str, Value)]) -> Record {
        Record {
            id: U2.into(),
            created_at: "2026-01-01T00:00:00.000000Z".into(),
            updated_at: "2026-01-01T00:00:00.000000Z".into(),
            version: 1,
            fields: fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn folding_table() {
        let u1 = format!("{U1:?}");
        let by_author = format!("author = {u1}");
        let table: Vec<(&str, [String; 5])> = vec![
            (
                "role in ['editor', 'admin'] || record.author = auth.user_id",
                [
                    "deny".into(),
                    by_author.clone(),
                    by_author.clone(),
                    "allow".into(),
                    "allow".into(),
                ],
            ),
            (
                r#"auth.user_id != null && record.status = "published""#,
                [
                    "deny".into(),
                    r#"status = "published""#.into(),
                    r#"status = "published""#.into(),
                    r#"status = "published""#.into(),
                    "deny".into(),
                ],
            ),
            (
                r#"record.author = auth.user_id && !(auth.kind = "api_key")"#,
                [
                    "deny".into(),
                    by_author.clone(),
                    by_author.clone(),
                    by_author.clone(),
                    "deny".into(),
                ],
            ),
            (
                "auth.tenant_id != null && (role = 'admin' || record.author = auth.user_id)",
                [
                    "deny".into(),
                    "deny".into(),
                    by_author.clone(),
                    "allow".into(),
                    "allow".into(),
                ],
            ),
            (
                r#"auth.kind = "api_key" || record.status != "draft""#,
                [
                    r#"status != "draft""#.into(),
                    r#"status != "draft""#.into(),
                    r#"status != "draft""#.into(),
                    r#"status != "draft""#.into(),
                    "allow".into(),
                ],
            ),
            (
                "role != 'viewer'",
                [
                    "deny".into(),
                    "deny".into(),
                    "allow".into(),
                    "allow".into(),
                    "allow".into(),
                ],
            ),
            (
                "!(role in ['viewer'])",
                [
                    "allow".into(),
                    "allow".into(),
                    "allow".into(),
                    "allow".into(),
                    "allow".into(),
                ],
            ),
            (
                "record.id = auth.user_id || record.title ~ 'public'",
                [
                    r#"title ~ "public""#.into(),
                    format!(r#"(id = {u1} || title ~ "public")"#),
                    format!(r#"(id = {u1} || title ~ "public")"#),
                    format!(r#"(id = {u1} || title ~ "public")"#),
                    r#"title ~ "public""#.into(),
                ],
            ),
            (
                "record.author = auth.tenant_id || record.owner_email = auth.email",
                [
                    "deny".into(),
                    r#"owner_email = "a@x.io""#.into(),
                    format!(r#"(author = {T1:?} || owner_email = "a@x.io")"#),
                    format!(r#"(author = {T1:?} || owner_email = "a@x.io")"#),
                    format!("author = {T1:?}"),
                ],
            ),
        ];
        let who = ["anonymous", "user", "member", "admin", "api_key"];
        for (src, expected) in table {
            let r = rule(src);
            for (i, auth) in [ANON, USER, MEMBER, ADMIN, API_KEY].iter().enumerate() {
                assert_eq!(show(&r.resolve(auth)), expected[i], "{src} as {}", who[i]);
            }
        }
    }

    #[test]
    fn null_auth_values_are_false_even_under_not() {
        let cases = [
            ("record.author = auth.user_id", "deny"),
            ("record.author != auth.user_id", "deny"),
            ("!(record.author = auth.user_id)", "allow"),
            ("!(record.author != auth.user_id)", "allow"),
            ("auth.user_id = null", "allow"),
            ("auth.user_id != null", "deny"),
            ("null = auth.user_id", "allow"),
            ("auth.role != 'admin'", "deny"),
            ("!(auth.role = 'admin')", "allow"),
            ("role in ['admin', 'owner']", "deny"),
            ("!(role in ['admin', 'owner'])", "allow"),
            ("auth.user_id = auth.tenant_id", "deny"),
            ("auth.user_id != auth.tenant_id", "deny"),
            ("auth.email = auth.email", "deny"),
            ("auth.kind != 'user'", "deny"),
            ("record.status = auth.role", "deny"),
            ("!!(record.status = auth.role)", "deny"),
        ];
        for (src, want) in cases {
            assert_eq!(show(&rule(src).resolve(&ANON)), want, "{src}");
        }
        // A signed-in user without a tenant: only the tenant comparison is null.
        assert_eq!(
            show(&rule("record.author = auth.tenant_id").resolve(&USER)),
            "deny"
        );
        assert_eq!(
            show(&rule("auth.user_id != auth.tenant_id").resolve(&USER)),
            "deny"
        );
    }

    #[test]
    fn anonymous_callers_never_see_ownerless_records() {
        // The leak the null rule prevents: `author = <null user>` read as
        // `author IS NULL` would hand every ownerless record to anyone.
        let ownerless = record(&[
            ("author", Value::Null),
            ("status", Value::Text("draft".into())),
        ]);
        let naive = Filter::Cmp {
            field: "author".into(),
            ty: FieldType::Relation,
            op: CmpOp::Eq,
            value: Value::Null,
        };
        assert!(naive.matches(&ownerless));
        let r = rule("record.author = auth.user_id || record.status = 'published'");
        let Resolved::Where(f) = r.resolve(&ANON) else {
            panic!("a filter")
        };
        assert_eq!(show_filter(&f), r#"status = "published""#);
        assert!(!f.matches(&ownerless));
        let mine = rule("record.author = auth.user_id");
        assert_eq!(mine.resolve(&ANON), Resolved::Deny);
        let Resolved::Where(f) = mine.resolve(&USER) else {
            panic!("a filter")
        };
        assert!(!f.matches(&ownerless));
        assert!(f.matches(&record(&[("author", Value::Text(U1.into()))])));
    }

    #[test]
    fn ids_compare_case_insensitively() {
        let upper = AuthFacts {
            user_id: Some(U1_UPPER),
            ..USER
        };
        let r = rule("record.author = auth.user_id");
        assert_eq!(show(&r.resolve(&upper)), format!("author = {U1:?}"));
        let lit = rule(&format!("auth.user_id = '{U1_UPPER}'"));
        assert_eq!(lit.resolve(&USER), Resolved::Allow);
        assert_eq!(lit.resolve(&upper), Resolved::Allow);
        let by_lit = rule(&format!("record.author = '{U1_UPPER}'"));
        assert_eq!(show(&by_lit.resolve(&ANON)), format!("author = {U1:?}"));
        // Role names and kinds are exact.
        let admin_upper = AuthFacts {
            role: Some("ADMIN"),
            ..USER
        };
        assert_eq!(rule("role = 'admin'").resolve(&admin_upper), Resolved::Deny);
    }

    #[test]
    fn comparisons_are_normalised() {
        let same = [
            ("5 < record.views", "record.views > 5"),
            ("5 >= record.views", "record.views <= 5"),
            ("'published' = record.status", "record.status = 'published'"),
            (
                "auth.user_id = record.author",
                "record.author = auth.user_id",
            ),
            (
                "auth.role != record.min_role",
                "record.min_role != auth.role",
            ),
            ("null = auth.user_id", "auth.user_id = null"),
            ("'admin' = role", "auth.role = 'admin'"),
            ("null != record.title", "record.title != null"),
        ];
        for (a, b) in same {
            let (ra, rb) = (rule(a), rule(b));
            assert_eq!(ra.node, rb.node, "{a} vs {b}");
            assert_eq!(ra.source(), a);
            assert_eq!(ra.to_string(), a);
        }
        assert_eq!(show(&rule("5 < record.views").resolve(&ANON)), "views > 5");
    }

    #[test]
    fn record_literals_are_typed_as_filters_are() {
        let c = posts();
        let pairs = [
            (
                "record.created_at >= '2026-01-01T01:00:00+01:00'",
                "created_at >= '2026-01-01T01:00:00+01:00'",
            ),
            ("record.views in [1, 2]", "views in [1, 2]"),
            (
                "record.author = '0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B'",
                "author = '0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B'",
            ),
            ("record.title ~ 'Rust'", "title ~ 'Rust'"),
            ("record.on != null", "on != null"),
        ];
        for (r, f) in pairs {
            let want = check_filter(&c, &parse_filter(f).expect(f)).expect(f);
            assert_eq!(rule(r).resolve(&ANON), Resolved::Where(want), "{r}");
        }
    }

    #[test]
    fn errors_name_the_position() {
        let cases = [
            (
                "record.title = 'x' && record.nope = 1",
                23,
                "`posts` has no field `nope`",
            ),
            ("record.titel = 'x'", 1, "did you mean `record.title`?"),
            ("auth.usr_id = null", 1, "did you mean `auth.user_id`?"),
            ("auth.foo = null", 1, "unknown `auth.foo`"),
            ("title = 'x'", 1, "written `record.title`"),
            ("whatever = 'x'", 1, "unknown name `whatever`"),
            ("record = 'x'", 1, "record.<field>"),
            ("auth = 'x'", 1, "auth.<name>"),
            ("record. = 1", 8, "expected a name after `.`"),
            ("record.title = ", 16, "found the end of the rule"),
            ("role == 'admin'", 6, "use `=`"),
            ("(role = 'admin'", 16, "expected `)`"),
            ("role = 'admin' role", 16, "the end of the rule"),
            ("", 1, "the rule is empty"),
            ("record.title", 13, "expected an operator"),
            ("&& role = 'admin'", 1, "expected a reference"),
            ("role = in", 8, "found `in`"),
            ("role in 'admin'", 9, "expected `[`"),
            ("'a' = 'b'", 1, "needs a reference"),
            ("'a' in ['a']", 1, "`in` needs a reference"),
            (
                "'rust' ~ record.title",
                1,
                "`~` takes the record field on its left",
            ),
            (
                "record.title = record.owner_email",
                1,
                "never with another record field",
            ),
            ("x = 1 && record.a.b = 2", 1, "unknown name `x`"),
        ];
        for (src, pos, msg) in cases {
            let e = check_rule(src, &posts(), &ROLES).expect_err(src);
            assert_eq!(e.position, pos, "{src}: {e}");
            assert!(e.message.contains(msg), "{src}: {e}");
        }
        let deep = "(".repeat(40) + "role = 'admin'" + &")".repeat(40);
        let e = check_rule(&deep, &posts(), &ROLES).expect_err("deep");
        assert!(e.message.contains("the rule nests deeper"), "{e}");
        let long = "role = 'admin' || ".repeat(300) + "role = 'admin'";
        let e = check_rule(&long, &posts(), &ROLES).expect_err("long");
        assert!(e.message.contains("the rule is longer"), "{e}");
    }

    #[test]
    fn unknown_roles_and_kinds() {
        let e = check_rule("role = 'edtor'", &posts(), &ROLES).expect_err("typo");
        assert_eq!(e.position, 8);
        assert!(
            e.message
                .contains("unknown role \"edtor\"; did you mean \"editor\"?"),
            "{e}"
        );
        let e =
            check_rule("role in ['admin', 'supervisor']", &posts(), &ROLES).expect_err("unknown");
        assert_eq!(e.position, 19);
        assert!(e.message.contains("unknown role \"supervisor\""), "{e}");
        assert!(!e.message.contains("did you mean"), "{e}");
        assert!(
            e.message
                .contains("roles: owner, admin, member, viewer, editor")
        );
        // Custom roles are known only when passed.
        assert!(check_rule("role = 'editor'", &posts(), &BUILTIN_ROLES).is_err());
        assert!(check_rule("role = 'editor'", &posts(), &ROLES).is_ok());
        let e = check_rule("auth.kind = 'robot'", &posts(), &ROLES).expect_err("kind");
        assert_eq!(e.position, 13);
        assert!(e.message.contains("\"user\" or \"api_key\""), "{e}");
        assert!(check_rule("auth.kind in ['user', 'api_key']", &posts(), &ROLES).is_ok());
    }

    #[test]
    fn type_errors() {
        let cases = [
            ("record.views = 'x'", "cannot be compared with a string"),
            ("record.views ~ 5", "applies to text"),
            ("record.on > true", "use = or !="),
            ("record.meta = 1", "cannot be filtered"),
            ("record.status = 'gone'", "not a value of `status`"),
            ("record.views in [1, null]", "cannot contain null"),
            (
                "record.views = auth.user_id",
                "`auth.user_id` compares with relation",
            ),
            ("record.status = auth.tenant_id", "is an enum field"),
            ("record.owner_email = auth.user_id", "is an email field"),
            ("record.author = auth.email", "is a relation field"),
            ("record.views = auth.role", "text, email, url and enum"),
            ("record.meta = auth.kind", "is a json field"),
            (
                "record.author > auth.user_id",
                "compares only with = and !=",
            ),
            ("record.title ~ auth.email", "compares only with = and !="),
            ("auth.role > 'admin'", "compares only with = and !="),
            ("auth.email ~ '@x.io'", "compares only with = and !="),
            (
                "auth.user_id = auth.role",
                "is an id and `auth.role` is not",
            ),
            (
                "auth.email = auth.tenant_id",
                "is an id and `auth.email` is not",
            ),
            ("auth.user_id = 'abc'", "is not an id"),
            ("auth.user_id = 1", "cannot be compared with a number"),
            ("role = true", "cannot be compared with true/false"),
            ("auth.role in ['admin', null]", "use `|| auth.role = null`"),
            ("auth.email = 'a\\tb'", ""),
        ];
        for (src, msg) in cases {
            match check_rule(src, &posts(), &ROLES) {
                Err(e) => assert!(!msg.is_empty() && e.message.contains(msg), "{src}: {e}"),
                Ok(_) => assert!(msg.is_empty(), "{src} should be rejected"),
            }
        }
        let e = check_rule(
            "role = 'admin' && auth.role in ['admin', null]",
            &posts(),
            &ROLES,
        )
        .expect_err("null in list");
        assert_eq!(e.position, 42);
    }

    #[test]
    fn record_dependence() {
        assert!(!rule("role = 'admin' || auth.user_id = null").depends_on_record());
        assert!(rule("role = 'admin' || record.author = auth.user_id").depends_on_record());
        assert!(rule("!(record.views > 1)").depends_on_record());
        // Depends on the record, yet folds to a constant for some callers.
        assert_eq!(
            rule("role = 'admin' || record.views > 1").resolve(&ADMIN),
            Resolved::Allow
        );
    }

    #[test]
    fn resolved_and_a_request_filter() {
        let f = || Filter::Cmp {
            field: "views".into(),
            ty: FieldType::Integer,
            op: CmpOp::Gt,
            value: Value::Int(1),
        };
        assert_eq!(Resolved::Allow.and_filter(None), Resolved::Allow);
        assert_eq!(Resolved::Allow.and_filter(Some(f())), Resolved::Where(f()));
        assert_eq!(Resolved::Deny.and_filter(Some(f())), Resolved::Deny);
        let r = rule("record.author = auth.user_id").resolve(&USER);
        assert_eq!(
            show(&r.and_filter(Some(f()))),
            format!("(views > 1 && author = {U1:?})")
        );
    }

    #[test]
    fn filters_keep_rejecting_rule_references() {
        for src in [
            "record.title = 'x'",
            "auth.user_id = null",
            "title = auth.email",
        ] {
            assert!(parse_filter(src).is_err(), "{src}");
        }
        let e = parse_filter("record.title = 'x'").expect_err("dotted");
        assert_eq!(e.position, 7);
        assert!(e.message.contains("unexpected character '.'"), "{e}");
        // A filter-only comparison is not a rule either.
        assert!(check_rule("title = 'x'", &posts(), &ROLES).is_err());
    }

    #[test]
    fn resolved_filters_name_only_collection_fields() {
        let c = posts();
        let r = rule(
            "(record.author = auth.user_id || record.owner_email = auth.email || record.min_role = role) && !(record.id = auth.tenant_id) && record.views in [1, 2]",
        );
        for auth in [ANON, USER, MEMBER, ADMIN, API_KEY] {
            if let Resolved::Where(f) = r.resolve(&auth) {
                for field in f.fields() {
                    assert!(field_type(&c, field).is_some(), "{field}");
                }
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A generated comparison, kept in a form the reference evaluator
        /// reads directly.
        #[derive(Debug, Clone)]
        enum Leaf {
            RecLit {
                field: &'static str,
                op: CmpOp,
                value: Literal,
            },
            RecIn {
                field: &'static str,
                values: Vec<Literal>,
            },
            RecAuth {
                field: &'static str,
                op: CmpOp,
                var: Var,
            },
            AuthLit {
                var: Var,
                op: CmpOp,
                value: Option<&'static str>,
            },
            AuthIn {
                var: Var,
                values: Vec<&'static str>,
            },
            AuthAuth {
                a: Var,
                op: CmpOp,
                b: Var,
            },
        }

        #[derive(Debug, Clone)]
        enum G {
            /// The comparison, whether to write it the other way round, and
            /// whether to write `auth.role` as `role`.
            Leaf(Leaf, bool, bool),
            And(Box<G>, Box<G>),
            Or(Box<G>, Box<G>),
            Not(Box<G>),
        }

        fn lit_text(l: &Literal) -> String {
            match l {
                Literal::Null => "null".into(),
                Literal::Bool(b) => b.to_string(),
                Literal::Int(i) => i.to_string(),
                Literal::Float(x) => format!("{x:?}"),
                Literal::Str(s) => format!("{s:?}"),
            }
        }

        fn var_text(v: Var, alias: bool) -> String {
            if v == Var::Role && alias {
                "role".into()
            } else {
                v.to_string()
            }
        }

        fn text(g: &G) -> String {
            match g {
                G::Leaf(l, swap, alias) => {
                    let (swap, alias) = (*swap, *alias);
                    match l {
                        Leaf::RecLit { field, op, value } => {
                            if swap && *op != CmpOp::Contains {
                                format!("{} {} record.{field}", lit_text(value), flip(*op).as_str())
                            } else {
                                format!("record.{field} {} {}", op.as_str(), lit_text(value))
                            }
                        }
                        Leaf::RecIn { field, values } => {
                            let vs: Vec<String> = values.iter().map(lit_text).collect();
                            format!("record.{field} in [{}]", vs.join(", "))
                        }
                        Leaf::RecAuth { field, op, var } => {
                            let v = var_text(*var, alias);
                            if swap {
                                format!("{v} {} record.{field}", op.as_str())
                            } else {
                                format!("record.{field} {} {v}", op.as_str())
                            }
                        }
                        Leaf::AuthLit { var, op, value } => {
                            let v = var_text(*var, alias);
                            let l = value.map_or("null".into(), |s| format!("'{s}'"));
                            if swap {
                                format!("{l} {} {v}", op.as_str())
                            } else {
                                format!("{v} {} {l}", op.as_str())
                            }
                        }
                        Leaf::AuthIn { var, values } => {
                            let vs: Vec<String> = values.iter().map(|s| format!("'{s}'")).collect();
                            format!("{} in [{}]", var_text(*var, alias), vs.join(", "))
                        }
                        Leaf::AuthAuth { a, op, b } => format!(
                            "{} {} {}",
                            var_text(*a, alias),
                            op.as_str(),
                            var_text(*b, !alias)
                        ),
                    }
                }
                G::And(a, b) => format!("({}) && ({})", text(a), text(b)),
                G::Or(a, b) => format!("({}) || ({})", text(a), text(b)),
                G::Not(a) => format!("!({})", text(a)),
            }
        }

        // ------------------------------------------------ reference evaluation

        fn auth_value(a: &AuthFacts<'_>, v: Var) -> Option<String> {
            match v {
                Var::UserId => a.user_id.map(str::to_ascii_lowercase),
                Var::TenantId => a.tenant_id.map(str::to_ascii_lowercase),
                Var::Role => a.role.map(str::to_owned),
                Var::Kind => a.kind.map(str::to_owned),
                Var::Email => a.email.map(str::to_owned),
            }
        }

        fn canon_literal(v: Var, s: &str) -> String {
            if matches!(v, Var::UserId | Var::TenantId) {
                s.to_ascii_lowercase()
            } else {
                s.to_owned()
            }
        }

        /// The value a literal stands for in field `field`.
        fn lit_value(field: &str, l: &Literal) -> Value {
            match l {
                Literal::Null => Value::Null,
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Int(i) => Value::Int(*i),
                Literal::Float(x) => Value::Float(*x),
                Literal::Str(s) if matches!(field, "author" | "id") => {
                    Value::Text(s.to_ascii_lowercase())
                }
                Literal::Str(s) => Value::Text(s.clone()),
            }
        }

        /// `record.field op v`, by the filter semantics of docs/querying.md.
        fn field_cmp(r: &Record, field: &str, op: CmpOp, v: &Value) -> bool {
            let rv = crate::filter::record_value(r, field);
            if v.is_null() {
                return match op {
                    CmpOp::Eq => rv.is_null(),
                    CmpOp::Ne => !rv.is_null(),
                    _ => false,
                };
            }
            if rv.is_null() {
                return op == CmpOp::Ne;
            }
            if op == CmpOp::Contains {
                return match (&rv, v) {
                    (Value::Text(h), Value::Text(n)) => {
                        h.to_ascii_lowercase().contains(&n.to_ascii_lowercase())
                    }
                    _ => false,
                };
            }
            let Some(ord) = crate::filter::compare(&rv, v) else {
                return false;
            };
            match op {
                CmpOp::Eq => ord.is_eq(),
                CmpOp::Ne => ord.is_ne(),
                CmpOp::Gt => ord.is_gt(),
                CmpOp::Ge => ord.is_ge(),
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Le => ord.is_le(),
                CmpOp::Contains => false,
            }
        }

        fn eval(g: &G, a: &AuthFacts<'_>, r: &Record) -> bool {
            match g {
                G::Leaf(l, _, _) => match l {
                    Leaf::RecLit { field, op, value } => {
                        field_cmp(r, field, *op, &lit_value(field, value))
                    }
                    Leaf::RecIn { field, values } => values
                        .iter()
                        .any(|v| field_cmp(r, field, CmpOp::Eq, &lit_value(field, v))),
                    Leaf::RecAuth { field, op, var } => match auth_value(a, *var) {
                        None => false,
                        Some(s) => field_cmp(r, field, *op, &Value::Text(s)),
                    },
                    Leaf::AuthLit { var, op, value } => match (value, auth_value(a, *var)) {
                        (None, x) => (*op == CmpOp::Eq) == x.is_none(),
                        (Some(_), None) => false,
                        (Some(l), Some(x)) => (*op == CmpOp::Eq) == (canon_literal(*var, l) == x),
                    },
                    Leaf::AuthIn { var, values } => auth_value(a, *var)
                        .is_some_and(|x| values.iter().any(|l| canon_literal(*var, l) == x)),
                    Leaf::AuthAuth { a: va, op, b: vb } => {
                        match (auth_value(a, *va), auth_value(a, *vb)) {
                            (Some(x), Some(y)) => (*op == CmpOp::Eq) == (x == y),
                            _ => false,
                        }
                    }
                },
                G::And(x, y) => eval(x, a, r) && eval(y, a, r),
                G::Or(x, y) => eval(x, a, r) || eval(y, a, r),
                G::Not(x) => !eval(x, a, r),
            }
        }

        // ------------------------------------------------ generators

        fn eqne() -> impl Strategy<Value = CmpOp> {
            prop::sample::select(vec![CmpOp::Eq, CmpOp::Ne])
        }

        fn ordering() -> impl Strategy<Value = CmpOp> {
            prop::sample::select(vec![
                CmpOp::Eq,
                CmpOp::Ne,
                CmpOp::Gt,
                CmpOp::Ge,
                CmpOp::Lt,
                CmpOp::Le,
            ])
        }

        fn s(x: &str) -> Literal {
            Literal::Str(x.to_owned())
        }

        fn leaf() -> impl Strategy<Value = Leaf> {
            let rec_lit = prop_oneof![
                (
                    prop::sample::select(vec![
                        CmpOp::Eq,
                        CmpOp::Ne,
                        CmpOp::Gt,
                        CmpOp::Lt,
                        CmpOp::Contains
                    ]),
                    prop::sample::select(vec!["", "ab", "Ab", "admin", U1]),
                )
                    .prop_map(|(op, v)| Leaf::RecLit {
                        field: "title",
                        op,
                        value: s(v)
                    }),
                (
                    prop::sample::select(vec!["title", "author", "views", "status", "on", "site"]),
                    eqne()
                )
                    .prop_map(|(field, op)| Leaf::RecLit {
                        field,
                        op,
                        value: Literal::Null
                    }),
                (ordering(), -2i64..3).prop_map(|(op, i)| Leaf::RecLit {
                    field: "views",
                    op,
                    value: Literal::Int(i)
                }),
                (ordering(), 0i64..4).prop_map(|(op, i)| Leaf::RecLit {
                    field: "version",
                    op,
                    value: Literal::Int(i)
                }),
                (ordering(), prop::sample::select(vec!["draft", "published"])).prop_map(
                    |(op, v)| Leaf::RecLit {
                        field: "status",
                        op,
                        value: s(v)
                    }
                ),
                (eqne(), any::<bool>()).prop_map(|(op, b)| Leaf::RecLit {
                    field: "on",
                    op,
                    value: Literal::Bool(b)
                }),
                (
                    eqne(),
                    prop::sample::select(vec!["author", "id"]),
                    prop::sample::select(vec![U1, U1_UPPER, U2])
                )
                    .prop_map(|(op, field, v)| Leaf::RecLit {
                        field,
                        op,
                        value: s(v)
                    }),
            ];
            let rec_in = prop_oneof![
                prop::collection::vec(-2i64..3, 1..3).prop_map(|vs| Leaf::RecIn {
                    field: "views",
                    values: vs.into_iter().map(Literal::Int).collect()
                }),
                prop::collection::vec(prop::sample::select(vec![U1_UPPER, U2]), 1..3).prop_map(
                    |vs| Leaf::RecIn {
                        field: "author",
                        values: vs.into_iter().map(s).collect()
                    }
                ),
                prop::collection::vec(prop::sample::select(vec!["admin", "member"]), 1..3)
                    .prop_map(|vs| Leaf::RecIn {
                        field: "min_role",
                        values: vs.into_iter().map(s).collect()
                    }),
            ];
            let rec_auth = (
                prop::sample::select(vec![
                    ("author", Var::UserId),
                    ("author", Var::TenantId),
                    ("id", Var::UserId),
                    ("id", Var::TenantId),
                    ("title", Var::UserId),
                    ("owner_email", Var::Email),
                    ("title", Var::Email),
                    ("site", Var::Email),
                    ("status", Var::Role),
                    ("min_role", Var::Role),
                    ("title", Var::Role),
                    ("title", Var::Kind),
                    ("min_role", Var::Kind),
                ]),
                eqne(),
            )
                .prop_map(|((field, var), op)| Leaf::RecAuth { field, op, var });
            let auth_lit = (
                prop::sample::select(vec![
                    (Var::UserId, Some(U1)),
                    (Var::UserId, Some(U1_UPPER)),
                    (Var::UserId, Some(U2)),
                    (Var::UserId, None),
                    (Var::TenantId, Some(T1)),
                    (Var::TenantId, None),
                    (Var::Role, Some("admin")),
                    (Var::Role, Some("member")),
                    (Var::Role, Some("editor")),
                    (Var::Role, None),
                    (Var::Kind, Some("user")),
                    (Var::Kind, Some("api_key")),
                    (Var::Kind, None),
                    (Var::Email, Some("a@x.io")),
                    (Var::Email, None),
                ]),
                eqne(),
            )
                .prop_map(|((var, value), op)| Leaf::AuthLit { var, op, value });
            let auth_in = prop::sample::select(vec![
                (Var::Role, vec!["admin", "editor"]),
                (Var::Role, vec!["viewer"]),
                (Var::Role, vec!["owner", "member"]),
                (Var::Kind, vec!["user", "api_key"]),
                (Var::Kind, vec!["api_key"]),
                (Var::UserId, vec![U1_UPPER, U2]),
                (Var::TenantId, vec![T1]),
                (Var::Email, vec!["a@x.io", "c@x.io"]),
            ])
            .prop_map(|(var, values)| Leaf::AuthIn { var, values });
            let auth_auth = (
                prop::sample::select(vec![
                    (Var::UserId, Var::TenantId),
                    (Var::UserId, Var::UserId),
                    (Var::TenantId, Var::UserId),
                    (Var::Role, Var::Kind),
                    (Var::Role, Var::Email),
                    (Var::Email, Var::Email),
                    (Var::Kind, Var::Role),
                ]),
                eqne(),
            )
                .prop_map(|((a, b), op)| Leaf::AuthAuth { a, op, b });
            prop_oneof![rec_lit, rec_in, rec_auth, auth_lit, auth_in, auth_auth]
        }

        fn rule_tree() -> impl Strategy<Value = G> {
            (leaf(), any::<bool>(), any::<bool>())
                .prop_map(|(l, swap, alias)| G::Leaf(l, swap, alias))
                .prop_recursive(4, 24, 2, |inner| {
                    prop_oneof![
                        (inner.clone(), inner.clone())
                            .prop_map(|(a, b)| G::And(Box::new(a), Box::new(b))),
                        (inner.clone(), inner.clone())
                            .prop_map(|(a, b)| G::Or(Box::new(a), Box::new(b))),
                        inner.prop_map(|a| G::Not(Box::new(a))),
                    ]
                })
        }

        fn facts() -> impl Strategy<Value = AuthFacts<'static>> {
            (
                prop::option::of(prop::sample::select(vec![U1, U1_UPPER, U2])),
                prop::option::of(prop::sample::select(vec![T1, U1])),
                prop::option::of(prop::sample::select(vec![
                    "owner", "admin", "member", "editor", "viewer",
                ])),
                prop::option::of(prop::sample::select(vec!["user", "api_key"])),
                prop::option::of(prop::sample::select(vec!["a@x.io", "b@x.io"])),
            )
                .prop_map(|(user_id, tenant_id, role, kind, email)| AuthFacts {
                    user_id,
                    tenant_id,
                    role,
                    kind,
                    email,
                })
        }

        fn text_value(pool: Vec<&'static str>) -> impl Strategy<Value = Value> {
            prop::option::of(prop::sample::select(pool))
                .prop_map(|v| v.map_or(Value::Null, |s| Value::Text(s.to_owned())))
        }

        fn records() -> impl Strategy<Value = Vec<Record>> {
            let one = (
                prop::sample::select(vec![U1, U2, T1]),
                1i64..4,
                text_value(vec!["", "ab", "xAbx", U1, "admin", "user", "api_key"]),
                text_value(vec![U1, U2]),
                text_value(vec!["a@x.io", "b@x.io"]),
                text_value(vec!["draft", "published"]),
                text_value(vec!["admin", "editor", "member"]),
                prop::option::of(-2i64..3),
                prop::option::of(any::<bool>()),
                text_value(vec!["https://a.io"]),
            )
                .prop_map(
                    |(
                        id,
                        version,
                        title,
                        author,
                        owner_email,
                        status,
                        min_role,
                        views,
                        on,
                        site,
                    )| {
                        Record {
                            id: id.to_owned(),
                            created_at: "2026-01-01T00:00:00.000000Z".into(),
                            updated_at: "2026-01-01T00:00:00.000000Z".into(),
                            version,
                            fields: vec![
                                ("title".into(), title),
                                ("author".into(), author),
                                ("owner_email".into(), owner_email),
                                ("status".into(), status),
                                ("min_role".into(), min_role),
                                ("views".into(), views.map_or(Value::Null, Value::Int)),
                                ("on".into(), on.map_or(Value::Null, Value::Bool)),
                                ("site".into(), site),
                                ("meta".into(), Value::Null),
                            ],
                        }
                    },
                );
            prop::collection::vec(one, 1..5)
        }

        /// Every comparison of `f` names a field of `c`, with its type.
        fn well_formed(c: &Collection, f: &Filter) -> bool {
            match f {
                Filter::Cmp { field, ty, .. } | Filter::In { field, ty, .. } => {
                    field_type(c, field) == Some(*ty)
                }
                Filter::And(a, b) | Filter::Or(a, b) => well_formed(c, a) && well_formed(c, b),
                Filter::Not(a) => well_formed(c, a),
            }
        }

        fn token_soup() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop::sample::select(vec![
                    "record.title",
                    "record.author",
                    "record.views",
                    "record.nope",
                    "auth.user_id",
                    "auth.role",
                    "auth.kind",
                    "auth.x",
                    "role",
                    "=",
                    "!=",
                    ">",
                    "~",
                    "in",
                    "[",
                    "]",
                    ",",
                    "'admin'",
                    "'user'",
                    "'x'",
                    "5",
                    "null",
                    "true",
                    "&&",
                    "||",
                    "!",
                    "(",
                    ")",
                ]),
                0..14,
            )
            .prop_map(|ts| ts.join(" "))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn resolution_equals_reference_evaluation(
                g in rule_tree(),
                auth in facts(),
                recs in records(),
            ) {
                let c = posts();
                let src = text(&g);
                let r = check_rule(&src, &c, &ROLES)
                    .map_err(|e| TestCaseError::fail(format!("{src}: {e}")))?;
                let resolved = r.resolve(&auth);
                if let Resolved::Where(f) = &resolved {
                    prop_assert!(r.depends_on_record(), "{}", src);
                    prop_assert!(well_formed(&c, f), "{}: {:?}", src, f);
                }
                for rec in &recs {
                    let got = match &resolved {
                        Resolved::Allow => true,
                        Resolved::Deny => false,
                        Resolved::Where(f) => f.matches(rec),
                    };
                    prop_assert_eq!(got, eval(&g, &auth, rec), "{} as {:?} on {:?}", src, auth, rec);
                }
            }

            #[test]
            fn arbitrary_input_never_panics(s in "\\PC{0,64}") {
                let _ = check_rule(&s, &posts(), &ROLES);
            }

            #[test]
            fn rule_like_input_never_panics(
                s in "[a-z_. 0-9=!<>~&|()\\[\\],'\"-]{0,48}",
                soup in token_soup(),
                auth in facts(),
            ) {
                for src in [s, soup] {
                    if let Ok(r) = check_rule(&src, &posts(), &ROLES) {
                        let _ = r.resolve(&auth);
                    }
                }
            }

            #[test]
            fn filters_reject_rule_references(
                s in "(record|auth)\\.[a-z_]{1,8} (=|!=|~) ('x'|1|null)",
            ) {
                let e = parse_filter(&s).expect_err("dotted names are not filter syntax");
                prop_assert!(e.message.contains("unexpected character '.'"), "{}", e);
            }
        }
    }
}
