//! `plinth contract diff`: the API-drift guard.
//!
//! Compares two OpenAPI 3.x documents (JSON) and classifies every change as
//! [`Kind::Breaking`] (existing clients may fail), [`Kind::Compatible`]
//! (existing clients keep working) or [`Kind::Info`] (documentation only).
//! Each [`Change`] carries a stable code from [`RULES`], a JSON pointer into
//! the old or the new document, a human path such as
//! `POST /v1/posts request body .title`, and a message.
//!
//! The direction of a schema decides what breaks: a request schema must still
//! accept everything it accepted (narrowing breaks old clients' requests), a
//! response schema must not produce what old clients cannot read (widening
//! breaks them). Two deliberate exceptions, both explained in
//! `docs/contract-diff.md`: new response properties and changed response
//! bounds (lengths, ranges, patterns) are compatible.
//!
//! Only what the operations reach is compared: paths, operations, parameters,
//! request bodies, responses, headers, security, and the schemas they use,
//! following local `$ref`s (`#/...`) with cycle protection. A change inside a
//! shared component is reported once, at the first place that reaches it,
//! with the other places in [`Change::also`]. Components no operation uses
//! are not reported.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::{self, Write as _};

use serde_json::{Map, Number, Value as Json, json};

/// How a change affects clients written against the old document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Existing clients may fail: needs a new API version.
    Breaking,
    /// Existing clients keep working.
    Compatible,
    /// Documentation only (descriptions, summaries, examples, deprecation).
    Info,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Breaking, Kind::Compatible, Kind::Info];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Breaking => "breaking",
            Kind::Compatible => "compatible",
            Kind::Info => "info",
        }
    }

    fn heading(self) -> &'static str {
        match self {
            Kind::Breaking => "Breaking",
            Kind::Compatible => "Compatible",
            Kind::Info => "Info",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which document a [`Change::pointer`] points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Document {
    Old,
    New,
}

impl Document {
    pub fn as_str(self) -> &'static str {
        match self {
            Document::Old => "old",
            Document::New => "new",
        }
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change code and its fixed classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub code: &'static str,
    pub kind: Kind,
    pub summary: &'static str,
}

const fn rule(code: &'static str, kind: Kind, summary: &'static str) -> Rule {
    Rule {
        code,
        kind,
        summary,
    }
}

use Kind::{Breaking as B, Compatible as C, Info as I};

/// Every change code, with its classification. A code always has the same
/// kind, so CI can filter on codes. Documented in `docs/contract-diff.md`.
pub const RULES: &[Rule] = &[
    // Paths and operations.
    rule("path-added", C, "A new path."),
    rule(
        "path-removed",
        B,
        "A path was removed, with all its operations.",
    ),
    rule(
        "operation-added",
        C,
        "A new operation (method) on an existing path.",
    ),
    rule("operation-removed", B, "An operation was removed."),
    rule(
        "operation-id-changed",
        I,
        "The operationId changed: the wire format is the same, but generated clients may rename a method.",
    ),
    // Parameters.
    rule("parameter-added", C, "A new optional parameter."),
    rule(
        "parameter-added-required",
        B,
        "A new required parameter: old clients do not send it.",
    ),
    rule(
        "parameter-removed",
        B,
        "A parameter was removed: clients that still send it are rejected (Plinth answers unknown query parameters with 400) or silently lose its effect.",
    ),
    rule(
        "parameter-became-required",
        B,
        "An optional parameter became required.",
    ),
    rule(
        "parameter-became-optional",
        C,
        "A required parameter became optional.",
    ),
    rule(
        "parameter-style-changed",
        B,
        "The parameter's serialization (`style`, `explode`) changed.",
    ),
    // Request bodies.
    rule(
        "request-body-added",
        C,
        "The operation accepts a new, optional request body.",
    ),
    rule(
        "request-body-added-required",
        B,
        "The operation requires a request body it did not take before.",
    ),
    rule(
        "request-body-removed",
        B,
        "The operation no longer takes a request body.",
    ),
    rule(
        "request-body-became-required",
        B,
        "An optional request body became required.",
    ),
    rule(
        "request-body-became-optional",
        C,
        "A required request body became optional.",
    ),
    rule(
        "request-media-type-added",
        C,
        "A request body media type is newly accepted.",
    ),
    rule(
        "request-media-type-removed",
        B,
        "A request body media type is no longer accepted.",
    ),
    // Responses.
    rule(
        "success-status-added",
        B,
        "A new success (2xx) status: clients that expect the old one misread the answer.",
    ),
    rule(
        "success-status-removed",
        B,
        "A success (2xx) status was removed.",
    ),
    rule(
        "success-status-changed",
        B,
        "The success status changed (for example 200 to 201).",
    ),
    rule(
        "response-status-added",
        C,
        "A new non-success status (4xx, 5xx, 3xx, 1xx or default): clients already handle unexpected errors.",
    ),
    rule(
        "response-status-removed",
        C,
        "A non-success status is no longer documented.",
    ),
    rule("response-header-added", C, "A new response header."),
    rule(
        "response-header-removed",
        B,
        "A response header was removed.",
    ),
    rule(
        "response-media-type-added",
        C,
        "A response is also offered in a new media type.",
    ),
    rule(
        "response-media-type-removed",
        B,
        "A response media type was removed (or renamed).",
    ),
    // Request schemas (request bodies and parameters).
    rule(
        "request-property-added",
        C,
        "A new optional request property.",
    ),
    rule(
        "request-property-added-required",
        B,
        "A new required request property: old clients do not send it.",
    ),
    rule(
        "request-property-removed",
        B,
        "A request property was removed from a schema that rejects unknown properties (`additionalProperties: false`): old clients that send it are rejected.",
    ),
    rule(
        "request-property-undeclared",
        C,
        "A request property was removed from a schema that still accepts unknown properties: old clients are not rejected, though the server may ignore the value.",
    ),
    rule(
        "request-property-became-required",
        B,
        "An optional request property became required.",
    ),
    rule(
        "request-property-became-optional",
        C,
        "A required request property became optional.",
    ),
    rule(
        "request-additional-properties-closed",
        B,
        "A request schema now rejects unknown properties.",
    ),
    rule(
        "request-additional-properties-opened",
        C,
        "A request schema now accepts unknown properties.",
    ),
    rule(
        "request-type-narrowed",
        B,
        "A request value accepts fewer types (a type was dropped, or a type was imposed on an untyped value).",
    ),
    rule(
        "request-type-widened",
        C,
        "A request value accepts more types (for example integer to number).",
    ),
    rule(
        "request-type-changed",
        B,
        "A request value's type changed (for example string to integer).",
    ),
    rule(
        "request-nullable-removed",
        B,
        "A request value no longer accepts null.",
    ),
    rule(
        "request-nullable-added",
        C,
        "A request value now accepts null.",
    ),
    rule(
        "request-enum-value-removed",
        B,
        "A request enum lost a value: old clients sending it are rejected.",
    ),
    rule(
        "request-enum-value-added",
        C,
        "A request enum gained a value.",
    ),
    rule(
        "request-enum-constraint-added",
        B,
        "A request value is newly restricted to a list of values.",
    ),
    rule(
        "request-enum-constraint-removed",
        C,
        "A request value is no longer restricted to a list of values.",
    ),
    rule(
        "request-max-length-decreased",
        B,
        "A request maxLength was lowered (or imposed).",
    ),
    rule(
        "request-max-length-increased",
        C,
        "A request maxLength was raised (or removed).",
    ),
    rule(
        "request-min-length-increased",
        B,
        "A request minLength was raised (or imposed).",
    ),
    rule(
        "request-min-length-decreased",
        C,
        "A request minLength was lowered (or removed).",
    ),
    rule(
        "request-maximum-decreased",
        B,
        "A request maximum (or exclusiveMaximum) was lowered, imposed or made exclusive.",
    ),
    rule(
        "request-maximum-increased",
        C,
        "A request maximum was raised, removed or made inclusive.",
    ),
    rule(
        "request-minimum-increased",
        B,
        "A request minimum (or exclusiveMinimum) was raised, imposed or made exclusive.",
    ),
    rule(
        "request-minimum-decreased",
        C,
        "A request minimum was lowered, removed or made inclusive.",
    ),
    rule(
        "request-max-items-decreased",
        B,
        "A request array's maxItems was lowered (or imposed).",
    ),
    rule(
        "request-max-items-increased",
        C,
        "A request array's maxItems was raised (or removed).",
    ),
    rule(
        "request-min-items-increased",
        B,
        "A request array's minItems was raised (or imposed).",
    ),
    rule(
        "request-min-items-decreased",
        C,
        "A request array's minItems was lowered (or removed).",
    ),
    rule(
        "request-pattern-added",
        B,
        "A request string must now match a pattern.",
    ),
    rule(
        "request-pattern-changed",
        B,
        "A request pattern changed (whether it accepts less cannot be decided, so it counts as breaking).",
    ),
    rule(
        "request-pattern-removed",
        C,
        "A request pattern was removed.",
    ),
    rule(
        "request-format-added",
        B,
        "A request value must now match a format.",
    ),
    rule(
        "request-format-changed",
        B,
        "A request format changed to one that is not wider.",
    ),
    rule(
        "request-format-widened",
        C,
        "A request format changed to a wider one (int32 to int64, int32 or int64 to double, float to double).",
    ),
    rule("request-format-removed", C, "A request format was removed."),
    rule(
        "request-variant-added",
        C,
        "A request oneOf/anyOf gained a variant.",
    ),
    rule(
        "request-variant-removed",
        B,
        "A request oneOf/anyOf lost a variant.",
    ),
    rule(
        "request-default-changed",
        C,
        "A request default changed: old clients that omit the value get the new default. Review it.",
    ),
    rule(
        "request-schema-changed",
        B,
        "A request schema keyword this tool does not analyse changed (for example not, multipleOf, uniqueItems, an external $ref). Review it by hand.",
    ),
    // Response schemas.
    rule(
        "response-property-added",
        C,
        "A new response property (clients must ignore properties they do not know).",
    ),
    rule(
        "response-property-removed",
        B,
        "A response property was removed.",
    ),
    rule(
        "response-property-became-optional",
        B,
        "A response property is no longer always present.",
    ),
    rule(
        "response-property-became-required",
        C,
        "A response property is now always present.",
    ),
    rule(
        "response-additional-properties-changed",
        C,
        "A response schema started or stopped allowing unknown properties.",
    ),
    rule(
        "response-type-widened",
        B,
        "A response value may have more types than before.",
    ),
    rule(
        "response-type-narrowed",
        C,
        "A response value has fewer possible types than before.",
    ),
    rule(
        "response-type-changed",
        B,
        "A response value's type changed.",
    ),
    rule(
        "response-nullable-added",
        B,
        "A response value may now be null.",
    ),
    rule(
        "response-nullable-removed",
        C,
        "A response value is never null any more.",
    ),
    rule(
        "response-enum-value-added",
        B,
        "A response enum gained a value old clients do not know.",
    ),
    rule(
        "response-enum-value-removed",
        C,
        "A response enum lost a value.",
    ),
    rule(
        "response-enum-constraint-removed",
        B,
        "A response value is no longer restricted to a list of values.",
    ),
    rule(
        "response-enum-constraint-added",
        C,
        "A response value is newly restricted to a list of values.",
    ),
    rule(
        "response-constraint-changed",
        C,
        "A response bound changed (maxLength, minLength, maximum, minimum, maxItems, minItems, pattern), or a response format was added or narrowed.",
    ),
    rule(
        "response-format-changed",
        B,
        "A response format was removed or changed to one that is not narrower (clients may parse it, e.g. as a UUID or a date).",
    ),
    rule(
        "response-variant-added",
        B,
        "A response oneOf/anyOf gained a variant old clients do not know.",
    ),
    rule(
        "response-variant-removed",
        C,
        "A response oneOf/anyOf lost a variant.",
    ),
    rule(
        "response-schema-changed",
        B,
        "A response schema keyword this tool does not analyse changed. Review it by hand.",
    ),
    // Security.
    rule(
        "security-required",
        B,
        "An operation that allowed anonymous requests now requires credentials.",
    ),
    rule(
        "security-requirement-removed",
        B,
        "A way to authenticate is no longer accepted by an operation.",
    ),
    rule(
        "security-requirement-added",
        C,
        "An operation accepts a new way to authenticate (or anonymous requests).",
    ),
    rule(
        "security-scheme-changed",
        B,
        "A security scheme an operation uses changed (type, location, name, flows).",
    ),
    // Documentation.
    rule(
        "description-changed",
        I,
        "A description, summary or title changed.",
    ),
    rule(
        "deprecation-changed",
        I,
        "Something was marked deprecated, or no longer is.",
    ),
    rule(
        "annotation-changed",
        I,
        "Another annotation changed (examples, tags, externalDocs, x- extensions, links, readOnly, info, servers, ...).",
    ),
];

/// The rule of a change code.
pub fn rule_for(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code == code)
}

/// One classified difference between the old and the new document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    /// A code from [`RULES`].
    pub code: &'static str,
    /// Where, for people: `POST /v1/posts request body .title`.
    pub path: String,
    /// The document [`Change::pointer`] points into: the old one for things
    /// that were removed, else the new one.
    pub document: Document,
    /// A JSON pointer (RFC 6901) to the changed node.
    pub pointer: String,
    pub message: String,
    /// Other places that reach the same changed node (a shared component).
    pub also: Vec<String>,
}

impl Change {
    pub fn to_json(&self) -> Json {
        json!({
            "kind": self.kind.as_str(),
            "code": self.code,
            "path": self.path,
            "document": self.document.as_str(),
            "pointer": self.pointer,
            "message": self.message,
            "also": self.also,
        })
    }
}

/// The result of [`diff`]: changes ordered breaking, compatible, info, and
/// within a kind in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContractDiff {
    pub changes: Vec<Change>,
}

impl ContractDiff {
    pub fn count(&self, kind: Kind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }

    pub fn has_breaking(&self) -> bool {
        self.count(Kind::Breaking) > 0
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    fn summary_line(&self) -> String {
        let n = self.changes.len();
        format!(
            "{n} change{}: {} breaking, {} compatible, {} info",
            if n == 1 { "" } else { "s" },
            self.count(Kind::Breaking),
            self.count(Kind::Compatible),
            self.count(Kind::Info)
        )
    }

    /// Machine-readable: `{"summary": {...counts}, "changes": [...]}`.
    pub fn to_json(&self) -> Json {
        json!({
            "summary": {
                "breaking": self.count(Kind::Breaking),
                "compatible": self.count(Kind::Compatible),
                "info": self.count(Kind::Info),
                "total": self.changes.len(),
            },
            "changes": self.changes.iter().map(Change::to_json).collect::<Vec<_>>(),
        })
    }

    /// For a terminal: grouped by kind, breaking first.
    pub fn to_text(&self) -> String {
        if self.changes.is_empty() {
            return "No changes.\n".to_owned();
        }
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.summary_line());
        for kind in Kind::ALL {
            let group: Vec<&Change> = self.changes.iter().filter(|c| c.kind == kind).collect();
            if group.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n{} ({}):", kind.heading(), group.len());
            for c in group {
                let _ = writeln!(s, "  {}  {}", c.code, c.path);
                let _ = writeln!(s, "      {}", c.message);
                let _ = writeln!(s, "      at {}#{}", c.document, c.pointer);
                if !c.also.is_empty() {
                    let _ = writeln!(s, "      also: {}", also_list(&c.also, 3));
                }
            }
        }
        s
    }

    /// For a CI comment on a pull request: a heading, counts and a table.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("### API contract diff\n\n");
        if self.changes.is_empty() {
            s.push_str("No changes.\n");
            return s;
        }
        let _ = writeln!(s, "{}.\n", self.summary_line());
        if self.has_breaking() {
            s.push_str(
                "**Breaking changes**: clients written against the old contract may fail. \
                 A breaking change needs a new API version.\n\n",
            );
        }
        s.push_str("| kind | code | where | change |\n|---|---|---|---|\n");
        for c in &self.changes {
            let kind = match c.kind {
                Kind::Breaking => "**breaking**",
                Kind::Compatible => "compatible",
                Kind::Info => "info",
            };
            let mut change = cell(&c.message);
            if !c.also.is_empty() {
                let _ = write!(change, " (also: {})", cell(&also_list(&c.also, 3)));
            }
            let _ = writeln!(
                s,
                "| {kind} | `{}` | {} | {change} |",
                c.code,
                code_span(&c.path)
            );
        }
        s
    }
}

fn also_list(also: &[String], max: usize) -> String {
    let mut s = also
        .iter()
        .take(max)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if also.len() > max {
        let _ = write!(s, "; and {} more", also.len() - max);
    }
    s
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// A Markdown code span (backticks inside are replaced, pipes escaped).
fn code_span(s: &str) -> String {
    format!("`{}`", cell(&s.replace('`', "'")))
}

/// Why two documents could not be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffError {
    /// Not an OpenAPI 3.x document.
    NotOpenApi { document: Document, reason: String },
    /// A local `$ref` that points nowhere, or a cycle of references.
    BadRef {
        document: Document,
        pointer: String,
        reference: String,
        reason: &'static str,
    },
    /// Schemas nested deeper (through distinct references), or more
    /// comparisons, than any reasonable contract needs.
    TooComplex,
}

impl fmt::Display for DiffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiffError::NotOpenApi { document, reason } => write!(
                f,
                "the {document} document is not an OpenAPI 3 document: {reason}"
            ),
            DiffError::BadRef {
                document,
                pointer,
                reference,
                reason,
            } => write!(
                f,
                "the {document} document: $ref {reference:?} at {pointer:?} {reason}"
            ),
            DiffError::TooComplex => f.write_str(
                "the documents are too large or too deeply nested to compare (more than 64 nested schemas, or more than 500000 schema comparisons)",
            ),
        }
    }
}

impl std::error::Error for DiffError {}

/// Compares `old` with `new` and classifies every change.
///
/// Errors if either is not an OpenAPI 3.x document or has a local `$ref`
/// that does not resolve.
pub fn diff(old: &Json, new: &Json) -> Result<ContractDiff, DiffError> {
    check_openapi(old, Document::Old)?;
    check_openapi(new, Document::New)?;
    check_refs(old, old, Document::Old, &mut String::new())?;
    check_refs(new, new, Document::New, &mut String::new())?;
    let mut cx = Cx {
        old,
        new,
        changes: Vec::new(),
        seen: HashMap::new(),
        stack: Vec::new(),
        log: Vec::new(),
        memo: HashMap::new(),
        steps: 0,
    };
    cx.document()?;
    let mut changes = cx.changes;
    changes.sort_by_key(|c| c.kind);
    Ok(ContractDiff { changes })
}

fn check_openapi(doc: &Json, document: Document) -> Result<(), DiffError> {
    let err = |reason: String| Err(DiffError::NotOpenApi { document, reason });
    let Some(m) = doc.as_object() else {
        return err("the top level is not a JSON object".into());
    };
    match m.get("openapi") {
        Some(Json::String(v)) if v.starts_with("3.") => {}
        Some(v) => return err(format!("unsupported `openapi` version {v}; expected 3.x")),
        None if m.contains_key("swagger") => {
            return err("Swagger 2.0 is not supported; convert it to OpenAPI 3".into());
        }
        None => return err("no `openapi` version field".into()),
    }
    match m.get("paths") {
        None | Some(Json::Object(_)) => Ok(()),
        Some(_) => err("`paths` is not an object".into()),
    }
}

/// Every local `$ref` in the document resolves (values that are data, such
/// as examples, defaults and extensions, are not looked into).
fn check_refs(
    root: &Json,
    v: &Json,
    document: Document,
    ptr: &mut String,
) -> Result<(), DiffError> {
    match v {
        Json::Object(m) => {
            if let Some(reference) = m.get("$ref").and_then(Json::as_str)
                && let Some(fragment) = reference.strip_prefix('#')
                && root.pointer(&percent_decode(fragment)).is_none()
            {
                return Err(DiffError::BadRef {
                    document,
                    pointer: ptr.clone(),
                    reference: reference.to_owned(),
                    reason: "does not resolve",
                });
            }
            for (k, child) in m {
                if matches!(
                    k.as_str(),
                    "example" | "examples" | "default" | "enum" | "const"
                ) || k.starts_with("x-")
                {
                    continue;
                }
                let len = ptr.len();
                ptr.push('/');
                ptr.push_str(&escape(k));
                check_refs(root, child, document, ptr)?;
                ptr.truncate(len);
            }
            Ok(())
        }
        Json::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let len = ptr.len();
                ptr.push_str(&format!("/{i}"));
                check_refs(root, child, document, ptr)?;
                ptr.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

// ---- internals --------------------------------------------------------------

const MAX_STEPS: usize = 500_000;
const MAX_DEPTH: usize = 64;
const MAX_REF_HOPS: usize = 64;
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// The schema that accepts anything (`true`), for absent subschemas.
static ANY: Json = Json::Bool(true);

type Obj = Map<String, Json>;
type R = Result<(), DiffError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dir {
    Request,
    Response,
}

fn pick(dir: Dir, request: &'static str, response: &'static str) -> &'static str {
    match dir {
        Dir::Request => request,
        Dir::Response => response,
    }
}

/// A human path: `base` (operation and part) then a schema `suffix`.
#[derive(Debug, Clone)]
struct Loc {
    base: String,
    suffix: String,
}

impl Loc {
    fn new(base: impl Into<String>) -> Loc {
        Loc {
            base: base.into(),
            suffix: String::new(),
        }
    }

    fn sub(&self, s: &str) -> Loc {
        Loc {
            base: self.base.clone(),
            suffix: format!("{}{s}", self.suffix),
        }
    }

    fn prop(&self, name: &str) -> Loc {
        self.sub(&format!(".{name}"))
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.suffix.is_empty() {
            f.write_str(&self.base)
        } else {
            write!(f, "{} {}", self.base, self.suffix)
        }
    }
}

/// A place in one of the documents.
struct At {
    doc: Document,
    ptr: String,
}

fn at_old(ptr: impl Into<String>) -> At {
    At {
        doc: Document::Old,
        ptr: ptr.into(),
    }
}

fn at_new(ptr: impl Into<String>) -> At {
    At {
        doc: Document::New,
        ptr: ptr.into(),
    }
}

/// The keyword `kw` in the new node if it has it, else in the old one.
fn at_kw(o: &Obj, optr: &str, n: &Obj, nptr: &str, kw: &str) -> At {
    if n.contains_key(kw) || !o.contains_key(kw) {
        at_new(child(nptr, kw))
    } else {
        at_old(child(optr, kw))
    }
}

fn escape(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

fn child(ptr: &str, seg: &str) -> String {
    format!("{ptr}/{}", escape(seg))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Follows local `$ref`s from `v` (at `ptr`) to the node they name, and
/// returns it with its pointer. Keywords beside a `$ref` (OpenAPI 3.1 allows
/// `description` and friends there) are laid over the target. External
/// references (`other.json#/...`) are left as they are.
fn resolve<'b>(
    root: &'b Json,
    doc: Document,
    v: &'b Json,
    ptr: &str,
) -> Result<(Cow<'b, Json>, String), DiffError> {
    let mut cur = v;
    let mut cur_ptr = ptr.to_owned();
    let mut overlays: Vec<&'b Obj> = Vec::new();
    let mut hops = 0;
    while let Some(m) = cur.as_object() {
        let Some(reference) = m.get("$ref").and_then(Json::as_str) else {
            break;
        };
        let Some(fragment) = reference.strip_prefix('#') else {
            break;
        };
        let bad = |reason| DiffError::BadRef {
            document: doc,
            pointer: cur_ptr.clone(),
            reference: reference.to_owned(),
            reason,
        };
        hops += 1;
        if hops > MAX_REF_HOPS {
            return Err(bad("is part of a cycle of references"));
        }
        let pointer = percent_decode(fragment);
        let Some(target) = root.pointer(&pointer) else {
            return Err(bad("does not resolve"));
        };
        if m.len() > 1 {
            overlays.push(m);
        }
        cur = target;
        cur_ptr = pointer;
    }
    if overlays.is_empty() {
        return Ok((Cow::Borrowed(cur), cur_ptr));
    }
    let mut merged = match cur {
        Json::Object(m) => m.clone(),
        Json::Bool(true) => Obj::new(),
        other => return Ok((Cow::Borrowed(other), cur_ptr)),
    };
    // The outermost referrer wins: apply the innermost overlay first.
    for m in overlays.iter().rev() {
        for (k, val) in m.iter() {
            if k != "$ref" {
                merged.insert(k.clone(), val.clone());
            }
        }
    }
    Ok((Cow::Owned(Json::Object(merged)), cur_ptr))
}

/// A schema as an object: `true` (and anything malformed) accepts anything,
/// `false` accepts nothing.
fn schema_obj(v: &Json) -> Cow<'_, Obj> {
    match v {
        Json::Object(m) => Cow::Borrowed(m),
        Json::Bool(false) => {
            let mut m = Obj::new();
            m.insert("not".into(), Json::Object(Obj::new()));
            Cow::Owned(m)
        }
        _ => Cow::Owned(Obj::new()),
    }
}

/// Keys of `o` then the keys only `n` has.
fn union_keys<'m>(o: &'m Obj, n: &'m Obj) -> Vec<&'m str> {
    let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
    keys.extend(n.keys().map(String::as_str).filter(|k| !o.contains_key(*k)));
    keys
}

fn find_ci<'m>(m: &'m Obj, key: &str) -> Option<(&'m str, &'m Json)> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(k, v)| (k.as_str(), v))
}

/// JSON equality with numbers compared by value (`0` equals `0.0`), as JSON
/// Schema compares instances.
fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => num_cmp(x, y) == Ordering::Equal,
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn opt_eq(a: Option<&Json>, b: Option<&Json>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => json_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn show(v: Option<&Json>) -> String {
    v.map_or_else(|| "none".to_owned(), Json::to_string)
}

fn change_word(o: Option<&Json>, n: Option<&Json>) -> &'static str {
    match (o, n) {
        (None, Some(_)) => "added",
        (Some(_), None) => "removed",
        _ => "changed",
    }
}

fn is_deprecated(m: &Obj) -> bool {
    m.get("deprecated").and_then(Json::as_bool).unwrap_or(false)
}

/// `/v1/posts/{id}` → `/v1/posts/{}`: templates that differ only in
/// parameter names are the same path for clients.
fn path_shape(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut depth = 0usize;
    for c in template.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push('{');
                }
                depth += 1;
            }
            '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push('}');
                }
            }
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

fn placeholders(template: &str) -> Vec<&str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
        .collect()
}

fn methods_of(item: &Json) -> String {
    let methods: Vec<String> = METHODS
        .iter()
        .filter(|m| item.get(**m).is_some())
        .map(|m| m.to_ascii_uppercase())
        .collect();
    if methods.is_empty() {
        "no operations".to_owned()
    } else {
        methods.join(", ")
    }
}

fn type_set(m: &Obj) -> Option<BTreeSet<String>> {
    let mut set: BTreeSet<String> = match m.get("type")? {
        Json::String(s) => BTreeSet::from([s.clone()]),
        Json::Array(a) => a
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return None,
    };
    // OpenAPI 3.0's `nullable: true`.
    if m.get("nullable") == Some(&Json::Bool(true)) {
        set.insert("null".into());
    }
    Some(set)
}

/// Whether a value of JSON type `t` is allowed by the type list `set`.
fn accepts(set: &BTreeSet<String>, t: &str) -> bool {
    set.contains(t) || (t == "integer" && set.contains("number"))
}

fn show_types(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn num_cmp(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    let (x, y) = (
        a.as_f64().unwrap_or(f64::NAN),
        b.as_f64().unwrap_or(f64::NAN),
    );
    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
}

/// A bound on a length, a count or a value.
#[derive(Debug, Clone)]
struct Limit {
    value: Number,
    exclusive: bool,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value)?;
        if self.exclusive {
            f.write_str(" (exclusive)")?;
        }
        Ok(())
    }
}

/// Whether `a` allows strictly less than `b` (for an upper or a lower bound).
fn tighter(upper: bool, a: &Limit, b: &Limit) -> bool {
    match num_cmp(&a.value, &b.value) {
        Ordering::Less => upper,
        Ordering::Greater => !upper,
        Ordering::Equal => a.exclusive && !b.exclusive,
    }
}

struct BoundRule {
    label: &'static str,
    upper: bool,
    /// One keyword, or the inclusive and the exclusive keyword of a range.
    keywords: &'static [&'static str],
    tightened: &'static str,
    loosened: &'static str,
}

const BOUND_RULES: &[BoundRule] = &[
    BoundRule {
        label: "maxLength",
        upper: true,
        keywords: &["maxLength"],
        tightened: "request-max-length-decreased",
        loosened: "request-max-length-increased",
    },
    BoundRule {
        label: "minLength",
        upper: false,
        keywords: &["minLength"],
        tightened: "request-min-length-increased",
        loosened: "request-min-length-decreased",
    },
    BoundRule {
        label: "maximum",
        upper: true,
        keywords: &["maximum", "exclusiveMaximum"],
        tightened: "request-maximum-decreased",
        loosened: "request-maximum-increased",
    },
    BoundRule {
        label: "minimum",
        upper: false,
        keywords: &["minimum", "exclusiveMinimum"],
        tightened: "request-minimum-increased",
        loosened: "request-minimum-decreased",
    },
    BoundRule {
        label: "maxItems",
        upper: true,
        keywords: &["maxItems"],
        tightened: "request-max-items-decreased",
        loosened: "request-max-items-increased",
    },
    BoundRule {
        label: "minItems",
        upper: false,
        keywords: &["minItems"],
        tightened: "request-min-items-increased",
        loosened: "request-min-items-decreased",
    },
];

impl BoundRule {
    fn limit(&self, m: &Obj) -> Option<Limit> {
        let plain = |kw: &str, exclusive: bool| {
            m.get(kw).and_then(Json::as_number).map(|v| Limit {
                value: v.clone(),
                exclusive,
            })
        };
        match self.keywords {
            [inclusive, exclusive] => {
                // 3.0 spells an exclusive bound `exclusiveMaximum: true`.
                let flag = m.get(*exclusive) == Some(&Json::Bool(true));
                match (plain(inclusive, flag), plain(exclusive, true)) {
                    (Some(a), Some(b)) => Some(if tighter(self.upper, &a, &b) { a } else { b }),
                    (a, b) => a.or(b),
                }
            }
            [kw] => plain(kw, false),
            _ => None,
        }
    }
}

/// Format changes that accept strictly more values.
const FORMAT_WIDENINGS: &[(&str, &str)] = &[
    ("int32", "int64"),
    ("int32", "double"),
    ("int64", "double"),
    ("float", "double"),
];

fn format_widens(from: &str, to: &str) -> bool {
    FORMAT_WIDENINGS.contains(&(from, to))
}

/// Schema keywords compared by their own rules.
const SCHEMA_COMPARED: &[&str] = &[
    "type",
    "nullable",
    "enum",
    "const",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "pattern",
    "format",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "oneOf",
    "anyOf",
    "allOf",
    "$ref",
];

/// Schema keywords that do not change what is valid.
const SCHEMA_ANNOTATIONS: &[&str] = &[
    "examples",
    "example",
    "$comment",
    "externalDocs",
    "xml",
    "readOnly",
    "writeOnly",
    "discriminator",
    "$schema",
    "$id",
    "$anchor",
    "$defs",
    "definitions",
];

/// A security requirement: scheme name → scopes. Empty: anonymous.
type Requirement = BTreeMap<String, BTreeSet<String>>;

fn requirements(v: &Json) -> Vec<Requirement> {
    let reqs: Vec<Requirement> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Json::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(name, scopes)| {
                            let scopes = scopes
                                .as_array()
                                .map(|s| {
                                    s.iter()
                                        .filter_map(Json::as_str)
                                        .map(str::to_owned)
                                        .collect()
                                })
                                .unwrap_or_default();
                            (name.clone(), scopes)
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    if reqs.is_empty() {
        vec![Requirement::new()]
    } else {
        reqs
    }
}

/// Whether credentials meeting `have` also meet `need`.
fn satisfies(have: &Requirement, need: &Requirement) -> bool {
    need.iter()
        .all(|(name, scopes)| have.get(name).is_some_and(|h| scopes.is_subset(h)))
}

fn show_requirement(r: &Requirement) -> String {
    if r.is_empty() {
        return "anonymous access".to_owned();
    }
    r.iter()
        .map(|(name, scopes)| {
            if scopes.is_empty() {
                format!("`{name}`")
            } else {
                let s: Vec<&str> = scopes.iter().map(String::as_str).collect();
                format!("`{name}` [{}]", s.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// One side of an operation being compared.
struct OpSide<'x> {
    tpl: &'x str,
    item: &'x Obj,
    item_ptr: &'x str,
    op: &'x Obj,
    op_ptr: String,
}

/// A resolved parameter with its matching key.
struct Param<'b> {
    /// (`in`, name); header names lower-cased; path parameters by position.
    key: (String, String),
    name: String,
    location: String,
    v: Cow<'b, Json>,
    ptr: String,
}

fn collect_params<'b>(
    root: &'b Json,
    doc: Document,
    side: &OpSide<'b>,
) -> Result<Vec<Param<'b>>, DiffError> {
    let mut out: Vec<Param<'b>> = Vec::new();
    for (list, base) in [
        (side.item.get("parameters"), side.item_ptr),
        (side.op.get("parameters"), side.op_ptr.as_str()),
    ] {
        let Some(Json::Array(list)) = list else {
            continue;
        };
        for (i, p) in list.iter().enumerate() {
            let (v, ptr) = resolve(root, doc, p, &format!("{base}/parameters/{i}"))?;
            let name = v
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned();
            let location = v
                .get("in")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned();
            let key = match location.as_str() {
                "path" => (
                    location.clone(),
                    placeholders(side.tpl)
                        .iter()
                        .position(|p| *p == name)
                        .map_or_else(|| name.clone(), |i| format!("{{{i}}}")),
                ),
                "header" => (location.clone(), name.to_ascii_lowercase()),
                _ => (location.clone(), name.clone()),
            };
            let param = Param {
                key,
                name,
                location,
                v,
                ptr,
            };
            // Operation-level parameters override path-level ones.
            match out.iter_mut().find(|q| q.key == param.key) {
                Some(q) => *q = param,
                None => out.push(param),
            }
        }
    }
    Ok(out)
}

fn param_style(m: &Obj, location: &str) -> (String, bool) {
    let style = m.get("style").and_then(Json::as_str).unwrap_or(
        if matches!(location, "query" | "cookie") {
            "form"
        } else {
            "simple"
        },
    );
    let explode = m
        .get("explode")
        .and_then(Json::as_bool)
        .unwrap_or(style == "form");
    (style.to_owned(), explode)
}

fn param_schema<'m>(m: &'m Obj, ptr: &str) -> Option<(&'m Json, String)> {
    if let Some(s) = m.get("schema") {
        return Some((s, child(ptr, "schema")));
    }
    let (mt, media) = m.get("content")?.as_object()?.iter().next()?;
    Some((
        media.get("schema")?,
        child(&child(&child(ptr, "content"), mt), "schema"),
    ))
}

struct Cx<'a> {
    old: &'a Json,
    new: &'a Json,
    changes: Vec<Change>,
    /// (code, document, pointer) → index in `changes` and rank of its path,
    /// to report a change in a shared component once.
    seen: HashMap<ChangeKey, (usize, PathRank)>,
    /// Schema pairs being compared (old pointer, new pointer, direction).
    stack: Vec<PairKey>,
    /// Every emit of the current top-level schema comparison, in order.
    log: Vec<Logged>,
    /// The changes a finished pair produced (suffixes relative to the pair),
    /// replayed when another place reaches the same pair.
    memo: HashMap<PairKey, Vec<Logged>>,
    steps: usize,
}

/// (code, document, pointer): one change.
type ChangeKey = (&'static str, Document, String);
/// (schema suffix length, path length): lower is more direct.
type PathRank = (usize, usize);
/// (old pointer, new pointer, direction): one schema comparison.
type PairKey = (String, String, Dir);

#[derive(Debug, Clone)]
struct Logged {
    code: &'static str,
    doc: Document,
    ptr: String,
    message: String,
    suffix: String,
}

impl<'a> Cx<'a> {
    fn emit(&mut self, code: &'static str, loc: &Loc, at: At, message: impl Into<String>) {
        let message = message.into();
        if !self.stack.is_empty() {
            self.log.push(Logged {
                code,
                doc: at.doc,
                ptr: at.ptr.clone(),
                message: message.clone(),
                suffix: loc.suffix.clone(),
            });
        }
        let path = loc.to_string();
        // The most direct place that reaches a shared node is the one shown:
        // the shortest schema path, then the shortest path.
        let rank = (loc.suffix.len(), path.len());
        let key = (code, at.doc, at.ptr);
        if let Some((i, best)) = self.seen.get_mut(&key) {
            if let Some(c) = self.changes.get_mut(*i)
                && c.path != path
                && !c.also.contains(&path)
            {
                if rank < *best {
                    *best = rank;
                    let previous = std::mem::replace(&mut c.path, path);
                    c.also.insert(0, previous);
                } else {
                    c.also.push(path);
                }
            }
            return;
        }
        self.seen.insert(key.clone(), (self.changes.len(), rank));
        self.changes.push(Change {
            kind: rule_for(code).map_or(Kind::Breaking, |r| r.kind),
            code,
            path,
            document: key.1,
            pointer: key.2,
            message,
            also: Vec::new(),
        });
    }

    /// Keys outside `handled` are documentation: descriptions, deprecation,
    /// or other annotations.
    fn other_keys(
        &mut self,
        o: &Obj,
        optr: &str,
        n: &Obj,
        nptr: &str,
        handled: &[&str],
        loc: &Loc,
    ) {
        for key in union_keys(o, n) {
            if handled.contains(&key) {
                continue;
            }
            let (ov, nv) = (o.get(key), n.get(key));
            if opt_eq(ov, nv) {
                continue;
            }
            let at = at_kw(o, optr, n, nptr, key);
            let what = change_word(ov, nv);
            match key {
                "description" | "summary" | "title" => {
                    self.emit("description-changed", loc, at, format!("{key} {what}"));
                }
                "deprecated" => self.deprecation(o, n, loc, at),
                _ => self.emit("annotation-changed", loc, at, format!("`{key}` {what}")),
            }
        }
    }

    fn deprecation(&mut self, o: &Obj, n: &Obj, loc: &Loc, at: At) {
        match (is_deprecated(o), is_deprecated(n)) {
            (false, true) => self.emit("deprecation-changed", loc, at, "now deprecated"),
            (true, false) => self.emit("deprecation-changed", loc, at, "no longer deprecated"),
            _ => {}
        }
    }

    fn document(&mut self) -> R {
        let (old, new) = (self.old, self.new);
        let empty = Obj::new();
        let om = old.as_object().unwrap_or(&empty);
        let nm = new.as_object().unwrap_or(&empty);
        let opaths = om.get("paths").and_then(Json::as_object).unwrap_or(&empty);
        let npaths = nm.get("paths").and_then(Json::as_object).unwrap_or(&empty);
        let mut new_by_shape: HashMap<String, (&str, &Json)> = HashMap::new();
        for (tpl, item) in npaths {
            new_by_shape
                .entry(path_shape(tpl))
                .or_insert((tpl.as_str(), item));
        }
        let mut matched: HashSet<&str> = HashSet::new();
        for (otpl, oitem) in opaths {
            let optr = child("/paths", otpl);
            match new_by_shape.get(&path_shape(otpl)).copied() {
                Some((ntpl, nitem)) if !matched.contains(ntpl) => {
                    matched.insert(ntpl);
                    self.path_item(otpl, oitem, &optr, ntpl, nitem, &child("/paths", ntpl))?;
                }
                _ => self.emit(
                    "path-removed",
                    &Loc::new(otpl.as_str()),
                    at_old(optr),
                    format!("path removed ({})", methods_of(oitem)),
                ),
            }
        }
        for (ntpl, nitem) in npaths {
            if !matched.contains(ntpl.as_str()) {
                self.emit(
                    "path-added",
                    &Loc::new(ntpl.as_str()),
                    at_new(child("/paths", ntpl)),
                    format!("new path ({})", methods_of(nitem)),
                );
            }
        }
        let oinfo = om.get("info").and_then(Json::as_object).unwrap_or(&empty);
        let ninfo = nm.get("info").and_then(Json::as_object).unwrap_or(&empty);
        self.other_keys(oinfo, "/info", ninfo, "/info", &[], &Loc::new("info"));
        self.other_keys(
            om,
            "",
            nm,
            "",
            &["info", "paths", "components", "security"],
            &Loc::new("document"),
        );
        Ok(())
    }

    fn path_item(
        &mut self,
        otpl: &str,
        oitem: &Json,
        optr: &str,
        ntpl: &str,
        nitem: &Json,
        nptr: &str,
    ) -> R {
        let (oi, optr) = resolve(self.old, Document::Old, oitem, optr)?;
        let (ni, nptr) = resolve(self.new, Document::New, nitem, nptr)?;
        let empty = Obj::new();
        let om = oi.as_object().unwrap_or(&empty);
        let nm = ni.as_object().unwrap_or(&empty);
        for method in METHODS {
            let upper = method.to_ascii_uppercase();
            match (om.get(method), nm.get(method)) {
                (Some(_), None) => self.emit(
                    "operation-removed",
                    &Loc::new(format!("{upper} {otpl}")),
                    at_old(child(&optr, method)),
                    "operation removed",
                ),
                (None, Some(_)) => self.emit(
                    "operation-added",
                    &Loc::new(format!("{upper} {ntpl}")),
                    at_new(child(&nptr, method)),
                    "new operation",
                ),
                (Some(oo), Some(no)) => {
                    let o = OpSide {
                        tpl: otpl,
                        item: om,
                        item_ptr: &optr,
                        op: oo.as_object().unwrap_or(&empty),
                        op_ptr: child(&optr, method),
                    };
                    let n = OpSide {
                        tpl: ntpl,
                        item: nm,
                        item_ptr: &nptr,
                        op: no.as_object().unwrap_or(&empty),
                        op_ptr: child(&nptr, method),
                    };
                    self.operation(&format!("{upper} {ntpl}"), &o, &n)?;
                }
                (None, None) => {}
            }
        }
        let mut handled: Vec<&str> = METHODS.to_vec();
        handled.extend(["parameters", "$ref"]);
        self.other_keys(om, &optr, nm, &nptr, &handled, &Loc::new(ntpl));
        Ok(())
    }

    fn operation(&mut self, label: &str, o: &OpSide<'_>, n: &OpSide<'_>) -> R {
        let loc = Loc::new(label);
        let (oid, nid) = (o.op.get("operationId"), n.op.get("operationId"));
        if oid != nid {
            let at = at_kw(o.op, &o.op_ptr, n.op, &n.op_ptr, "operationId");
            self.emit(
                "operation-id-changed",
                &loc,
                at,
                format!("operationId changed from {} to {}", show(oid), show(nid)),
            );
        }
        self.parameters(label, o, n)?;
        self.request_body(label, o, n)?;
        self.responses(label, o, n)?;
        self.security(label, o, n);
        self.other_keys(
            o.op,
            &o.op_ptr,
            n.op,
            &n.op_ptr,
            &[
                "operationId",
                "parameters",
                "requestBody",
                "responses",
                "security",
            ],
            &loc,
        );
        Ok(())
    }

    fn parameters(&mut self, label: &str, o: &OpSide<'_>, n: &OpSide<'_>) -> R {
        let olds = collect_params(self.old, Document::Old, o)?;
        let news = collect_params(self.new, Document::New, n)?;
        for op in &olds {
            match news.iter().find(|np| np.key == op.key) {
                Some(np) => self.parameter(label, op, np)?,
                None => self.emit(
                    "parameter-removed",
                    &Loc::new(format!("{label} {} parameter {}", op.location, op.name)),
                    at_old(op.ptr.clone()),
                    format!(
                        "{} parameter `{}` removed: clients that send it are rejected or lose its effect",
                        op.location, op.name
                    ),
                ),
            }
        }
        for np in &news {
            if olds.iter().any(|op| op.key == np.key) {
                continue;
            }
            let loc = Loc::new(format!("{label} {} parameter {}", np.location, np.name));
            let required =
                np.location == "path" || np.v.get("required").and_then(Json::as_bool) == Some(true);
            if required {
                self.emit(
                    "parameter-added-required",
                    &loc,
                    at_new(np.ptr.clone()),
                    format!(
                        "new required {} parameter `{}`: old clients do not send it",
                        np.location, np.name
                    ),
                );
            } else {
                self.emit(
                    "parameter-added",
                    &loc,
                    at_new(np.ptr.clone()),
                    format!("new optional {} parameter `{}`", np.location, np.name),
                );
            }
        }
        Ok(())
    }

    fn parameter(&mut self, label: &str, o: &Param<'_>, n: &Param<'_>) -> R {
        let loc = Loc::new(format!("{label} {} parameter {}", n.location, n.name));
        let empty = Obj::new();
        let om = o.v.as_object().unwrap_or(&empty);
        let nm = n.v.as_object().unwrap_or(&empty);
        let required = |p: &Param<'_>, m: &Obj| {
            p.location == "path" || m.get("required") == Some(&Json::Bool(true))
        };
        match (required(o, om), required(n, nm)) {
            (false, true) => self.emit(
                "parameter-became-required",
                &loc,
                at_kw(om, &o.ptr, nm, &n.ptr, "required"),
                format!("parameter `{}` is now required", n.name),
            ),
            (true, false) => self.emit(
                "parameter-became-optional",
                &loc,
                at_kw(om, &o.ptr, nm, &n.ptr, "required"),
                format!("parameter `{}` is now optional", n.name),
            ),
            _ => {}
        }
        let (os, ns) = (param_style(om, &o.location), param_style(nm, &n.location));
        if os != ns {
            let kw = if os.0 == ns.0 { "explode" } else { "style" };
            self.emit(
                "parameter-style-changed",
                &loc,
                at_kw(om, &o.ptr, nm, &n.ptr, kw),
                format!(
                    "serialization changed from style {} explode {} to style {} explode {}",
                    os.0, os.1, ns.0, ns.1
                ),
            );
        }
        match (param_schema(om, &o.ptr), param_schema(nm, &n.ptr)) {
            (Some((osv, osp)), Some((nsv, nsp))) => {
                self.schema(osv, &osp, nsv, &nsp, Dir::Request, &loc)?;
            }
            (None, None) => {}
            (a, _) => self.emit(
                "request-schema-changed",
                &loc,
                at_kw(om, &o.ptr, nm, &n.ptr, "schema"),
                format!(
                    "the parameter's schema was {}",
                    if a.is_some() { "removed" } else { "added" }
                ),
            ),
        }
        self.other_keys(
            om,
            &o.ptr,
            nm,
            &n.ptr,
            &[
                "name", "in", "required", "schema", "content", "style", "explode",
            ],
            &loc,
        );
        Ok(())
    }

    fn request_body(&mut self, label: &str, o: &OpSide<'_>, n: &OpSide<'_>) -> R {
        let base = format!("{label} request body");
        let loc = Loc::new(base.as_str());
        let optr = child(&o.op_ptr, "requestBody");
        let nptr = child(&n.op_ptr, "requestBody");
        let required = |m: &Obj| m.get("required") == Some(&Json::Bool(true));
        let empty = Obj::new();
        match (o.op.get("requestBody"), n.op.get("requestBody")) {
            (None, None) => {}
            (Some(_), None) => self.emit(
                "request-body-removed",
                &loc,
                at_old(optr),
                "request body removed: old clients that send one may be rejected",
            ),
            (None, Some(nb)) => {
                let (nb, nptr) = resolve(self.new, Document::New, nb, &nptr)?;
                if required(nb.as_object().unwrap_or(&empty)) {
                    self.emit(
                        "request-body-added-required",
                        &loc,
                        at_new(nptr),
                        "new required request body: old clients do not send it",
                    );
                } else {
                    self.emit(
                        "request-body-added",
                        &loc,
                        at_new(nptr),
                        "new optional request body",
                    );
                }
            }
            (Some(ob), Some(nb)) => {
                let (ob, optr) = resolve(self.old, Document::Old, ob, &optr)?;
                let (nb, nptr) = resolve(self.new, Document::New, nb, &nptr)?;
                let om = ob.as_object().unwrap_or(&empty);
                let nm = nb.as_object().unwrap_or(&empty);
                match (required(om), required(nm)) {
                    (false, true) => self.emit(
                        "request-body-became-required",
                        &loc,
                        at_kw(om, &optr, nm, &nptr, "required"),
                        "the request body is now required",
                    ),
                    (true, false) => self.emit(
                        "request-body-became-optional",
                        &loc,
                        at_kw(om, &optr, nm, &nptr, "required"),
                        "the request body is now optional",
                    ),
                    _ => {}
                }
                self.content(
                    om.get("content"),
                    &child(&optr, "content"),
                    nm.get("content"),
                    &child(&nptr, "content"),
                    Dir::Request,
                    &base,
                )?;
                self.other_keys(om, &optr, nm, &nptr, &["required", "content"], &loc);
            }
        }
        Ok(())
    }

    /// The `content` map of a request body or a response.
    fn content(
        &mut self,
        o: Option<&Json>,
        optr: &str,
        n: Option<&Json>,
        nptr: &str,
        dir: Dir,
        base: &str,
    ) -> R {
        let empty = Obj::new();
        let om = o.and_then(Json::as_object).unwrap_or(&empty);
        let nm = n.and_then(Json::as_object).unwrap_or(&empty);
        let what = pick(dir, "requests", "responses");
        for (mt, ov) in om {
            let Some((nmt, nv)) = find_ci(nm, mt) else {
                self.emit(
                    pick(
                        dir,
                        "request-media-type-removed",
                        "response-media-type-removed",
                    ),
                    &Loc::new(format!("{base} ({mt})")),
                    at_old(child(optr, mt)),
                    format!("media type {mt} removed from {what}"),
                );
                continue;
            };
            let loc = if nmt.eq_ignore_ascii_case("application/json") {
                Loc::new(base)
            } else {
                Loc::new(format!("{base} ({nmt})"))
            };
            let (omp, nmp) = (child(optr, mt), child(nptr, nmt));
            let omo = ov.as_object().unwrap_or(&empty);
            let nmo = nv.as_object().unwrap_or(&empty);
            match (omo.get("schema"), nmo.get("schema")) {
                (Some(os), Some(ns)) => self.schema(
                    os,
                    &child(&omp, "schema"),
                    ns,
                    &child(&nmp, "schema"),
                    dir,
                    &loc,
                )?,
                (None, None) => {}
                (a, _) => self.emit(
                    pick(dir, "request-schema-changed", "response-schema-changed"),
                    &loc,
                    at_kw(omo, &omp, nmo, &nmp, "schema"),
                    format!(
                        "the schema of {nmt} was {}",
                        if a.is_some() { "removed" } else { "added" }
                    ),
                ),
            }
            self.other_keys(omo, &omp, nmo, &nmp, &["schema"], &loc);
        }
        for mt in nm.keys() {
            if find_ci(om, mt).is_none() {
                self.emit(
                    pick(dir, "request-media-type-added", "response-media-type-added"),
                    &Loc::new(format!("{base} ({mt})")),
                    at_new(child(nptr, mt)),
                    format!("new media type {mt} for {what}"),
                );
            }
        }
        Ok(())
    }

    fn responses(&mut self, label: &str, o: &OpSide<'_>, n: &OpSide<'_>) -> R {
        let empty = Obj::new();
        let orr =
            o.op.get("responses")
                .and_then(Json::as_object)
                .unwrap_or(&empty);
        let nrr =
            n.op.get("responses")
                .and_then(Json::as_object)
                .unwrap_or(&empty);
        let optr = child(&o.op_ptr, "responses");
        let nptr = child(&n.op_ptr, "responses");
        let success = |s: &str| s.starts_with('2');
        let only_in = |a: &'_ Obj, b: &Obj| -> Vec<String> {
            a.keys()
                .filter(|k| success(k) && find_ci(b, k).is_none())
                .cloned()
                .collect()
        };
        let removed = only_in(orr, nrr);
        let added = only_in(nrr, orr);
        if let ([os], [ns]) = (removed.as_slice(), added.as_slice()) {
            self.emit(
                "success-status-changed",
                &Loc::new(format!("{label} response {ns}")),
                at_new(child(&nptr, ns)),
                format!("success status changed from {os} to {ns}"),
            );
            if let (Some(ov), Some(nv)) = (orr.get(os), nrr.get(ns)) {
                self.response(label, ns, ov, &child(&optr, os), nv, &child(&nptr, ns))?;
            }
        } else {
            for s in &removed {
                self.emit(
                    "success-status-removed",
                    &Loc::new(format!("{label} response {s}")),
                    at_old(child(&optr, s)),
                    format!("success status {s} removed"),
                );
            }
            for s in &added {
                self.emit(
                    "success-status-added",
                    &Loc::new(format!("{label} response {s}")),
                    at_new(child(&nptr, s)),
                    format!("new success status {s}: clients that expect the old one misread it"),
                );
            }
        }
        for (status, ov) in orr {
            match find_ci(nrr, status) {
                Some((ns, nv)) => {
                    self.response(label, ns, ov, &child(&optr, status), nv, &child(&nptr, ns))?;
                }
                None if !success(status) => self.emit(
                    "response-status-removed",
                    &Loc::new(format!("{label} response {status}")),
                    at_old(child(&optr, status)),
                    format!("response {status} no longer documented"),
                ),
                None => {}
            }
        }
        for status in nrr.keys() {
            if !success(status) && find_ci(orr, status).is_none() {
                self.emit(
                    "response-status-added",
                    &Loc::new(format!("{label} response {status}")),
                    at_new(child(&nptr, status)),
                    format!("new response {status}"),
                );
            }
        }
        Ok(())
    }

    fn response(
        &mut self,
        label: &str,
        status: &str,
        ov: &Json,
        optr: &str,
        nv: &Json,
        nptr: &str,
    ) -> R {
        let (o, optr) = resolve(self.old, Document::Old, ov, optr)?;
        let (n, nptr) = resolve(self.new, Document::New, nv, nptr)?;
        let empty = Obj::new();
        let om = o.as_object().unwrap_or(&empty);
        let nm = n.as_object().unwrap_or(&empty);
        let base = format!("{label} response {status}");
        let oh = om
            .get("headers")
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let nh = nm
            .get("headers")
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let (ohp, nhp) = (child(&optr, "headers"), child(&nptr, "headers"));
        for (name, ohv) in oh {
            let Some((nname, nhv)) = find_ci(nh, name) else {
                self.emit(
                    "response-header-removed",
                    &Loc::new(format!("{base} header {name}")),
                    at_old(child(&ohp, name)),
                    format!("response header {name} removed"),
                );
                continue;
            };
            let hloc = Loc::new(format!("{base} header {nname}"));
            let (oh, ohptr) = resolve(self.old, Document::Old, ohv, &child(&ohp, name))?;
            let (nh, nhptr) = resolve(self.new, Document::New, nhv, &child(&nhp, nname))?;
            let ohm = oh.as_object().unwrap_or(&empty);
            let nhm = nh.as_object().unwrap_or(&empty);
            if let (Some(os), Some(ns)) = (ohm.get("schema"), nhm.get("schema")) {
                self.schema(
                    os,
                    &child(&ohptr, "schema"),
                    ns,
                    &child(&nhptr, "schema"),
                    Dir::Response,
                    &hloc,
                )?;
            }
            self.other_keys(ohm, &ohptr, nhm, &nhptr, &["schema"], &hloc);
        }
        for name in nh.keys() {
            if find_ci(oh, name).is_none() {
                self.emit(
                    "response-header-added",
                    &Loc::new(format!("{base} header {name}")),
                    at_new(child(&nhp, name)),
                    format!("new response header {name}"),
                );
            }
        }
        self.content(
            om.get("content"),
            &child(&optr, "content"),
            nm.get("content"),
            &child(&nptr, "content"),
            Dir::Response,
            &base,
        )?;
        self.other_keys(
            om,
            &optr,
            nm,
            &nptr,
            &["headers", "content"],
            &Loc::new(base),
        );
        Ok(())
    }

    fn security(&mut self, label: &str, o: &OpSide<'_>, n: &OpSide<'_>) {
        let effective = |root: &Json, side: &OpSide<'_>| match side.op.get("security") {
            Some(v) => (requirements(v), child(&side.op_ptr, "security")),
            None => (
                root.get("security")
                    .map_or_else(|| vec![Requirement::new()], requirements),
                "/security".to_owned(),
            ),
        };
        let (olds, optr) = effective(self.old, o);
        let (news, nptr) = effective(self.new, n);
        let loc = Loc::new(label);
        for (i, alt) in olds.iter().enumerate() {
            if news.iter().any(|need| satisfies(alt, need)) {
                continue;
            }
            let offered: Vec<String> = news.iter().map(show_requirement).collect();
            if alt.is_empty() {
                self.emit(
                    "security-required",
                    &loc,
                    at_old(optr.clone()),
                    format!(
                        "requests without credentials are now rejected; accepted: {}",
                        offered.join(" or ")
                    ),
                );
            } else {
                self.emit(
                    "security-requirement-removed",
                    &loc,
                    at_old(format!("{optr}/{i}")),
                    format!(
                        "{} is no longer accepted; accepted: {}",
                        show_requirement(alt),
                        offered.join(" or ")
                    ),
                );
            }
        }
        for (i, alt) in news.iter().enumerate() {
            if olds.contains(alt) {
                continue;
            }
            let at = if alt.is_empty() {
                at_new(nptr.clone())
            } else {
                at_new(format!("{nptr}/{i}"))
            };
            self.emit(
                "security-requirement-added",
                &loc,
                at,
                format!("{} is now accepted", show_requirement(alt)),
            );
        }
        // Schemes both versions use must mean the same thing.
        let used_old: BTreeSet<&String> = olds.iter().flat_map(|a| a.keys()).collect();
        let used_new: BTreeSet<&String> = news.iter().flat_map(|a| a.keys()).collect();
        for name in used_new.intersection(&used_old) {
            let scheme = |root: &Json| {
                let mut m = root
                    .pointer(&format!("/components/securitySchemes/{}", escape(name)))?
                    .as_object()?
                    .clone();
                m.remove("description");
                Some(m)
            };
            if let (Some(os), Some(ns)) = (scheme(self.old), scheme(self.new))
                && os != ns
            {
                self.emit(
                    "security-scheme-changed",
                    &loc,
                    at_new(format!("/components/securitySchemes/{}", escape(name))),
                    format!("security scheme `{name}` changed"),
                );
            }
        }
    }

    // ---- schemas ----------------------------------------------------------

    fn schema(&mut self, ov: &Json, optr: &str, nv: &Json, nptr: &str, dir: Dir, loc: &Loc) -> R {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(DiffError::TooComplex);
        }
        let (o, optr) = resolve(self.old, Document::Old, ov, optr)?;
        let (n, nptr) = resolve(self.new, Document::New, nv, nptr)?;
        let key = (optr, nptr, dir);
        // A recursive schema is compared once per chain of references.
        if self.stack.contains(&key) {
            return Ok(());
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(DiffError::TooComplex);
        }
        if let Some(entries) = self.memo.get(&key).cloned() {
            // Compared before from another place: the same changes, here too.
            self.stack.push(key);
            for e in entries {
                let here = Loc {
                    base: loc.base.clone(),
                    suffix: format!("{}{}", loc.suffix, e.suffix),
                };
                let at = At {
                    doc: e.doc,
                    ptr: e.ptr,
                };
                self.emit(e.code, &here, at, e.message);
            }
            self.stack.pop();
            return Ok(());
        }
        if self.stack.is_empty() {
            self.log.clear();
        }
        let start = self.log.len();
        self.stack.push(key.clone());
        let (om, nm) = (schema_obj(&o), schema_obj(&n));
        let r = self.schema_body(&om, &key.0, &nm, &key.1, dir, loc);
        self.stack.pop();
        r?;
        let mut distinct = HashSet::new();
        let entries: Vec<Logged> = self.log[start..]
            .iter()
            .filter(|e| distinct.insert((e.code, e.doc, e.ptr.as_str())))
            .map(|e| Logged {
                suffix: e
                    .suffix
                    .strip_prefix(loc.suffix.as_str())
                    .unwrap_or(&e.suffix)
                    .to_owned(),
                ..e.clone()
            })
            .collect();
        self.memo.insert(key, entries);
        Ok(())
    }

    fn schema_body(&mut self, o: &Obj, optr: &str, n: &Obj, nptr: &str, dir: Dir, loc: &Loc) -> R {
        if o.contains_key("$ref") || n.contains_key("$ref") {
            // Only external references are left: compared as written.
            if o != n {
                self.emit(
                    pick(dir, "request-schema-changed", "response-schema-changed"),
                    loc,
                    at_kw(o, optr, n, nptr, "$ref"),
                    format!(
                        "external schema reference changed from {} to {} (external references are not followed)",
                        show(o.get("$ref")),
                        show(n.get("$ref"))
                    ),
                );
            }
            return Ok(());
        }
        if self.types(o, optr, n, nptr, dir, loc) {
            self.enums(o, optr, n, nptr, dir, loc);
            self.bounds(o, optr, n, nptr, dir, loc);
            self.pattern(o, optr, n, nptr, dir, loc);
            self.format(o, optr, n, nptr, dir, loc);
            self.object(o, optr, n, nptr, dir, loc)?;
            self.array(o, optr, n, nptr, dir, loc)?;
            self.composition(o, optr, n, nptr, dir, loc)?;
        }
        self.schema_keywords(o, optr, n, nptr, dir, loc);
        Ok(())
    }

    /// Returns false when the types no longer overlap: the rest of the
    /// keywords are then not worth comparing.
    fn types(&mut self, o: &Obj, optr: &str, n: &Obj, nptr: &str, dir: Dir, loc: &Loc) -> bool {
        let at = || at_kw(o, optr, n, nptr, "type");
        match (type_set(o), type_set(n)) {
            (Some(ot), Some(nt)) => {
                let removed: Vec<&str> = ot
                    .iter()
                    .map(String::as_str)
                    .filter(|t| *t != "null" && !accepts(&nt, t))
                    .collect();
                let added: Vec<&str> = nt
                    .iter()
                    .map(String::as_str)
                    .filter(|t| *t != "null" && !accepts(&ot, t))
                    .collect();
                let mut comparable = true;
                let change = format!("from {} to {}", show_types(&ot), show_types(&nt));
                if !removed.is_empty() && !added.is_empty() {
                    self.emit(
                        pick(dir, "request-type-changed", "response-type-changed"),
                        loc,
                        at(),
                        format!("type changed {change}"),
                    );
                    comparable = ot.iter().any(|t| t != "null" && accepts(&nt, t))
                        || nt.iter().any(|t| t != "null" && accepts(&ot, t));
                } else if !removed.is_empty() {
                    self.emit(
                        pick(dir, "request-type-narrowed", "response-type-narrowed"),
                        loc,
                        at(),
                        format!("type narrowed {change}"),
                    );
                } else if !added.is_empty() {
                    self.emit(
                        pick(dir, "request-type-widened", "response-type-widened"),
                        loc,
                        at(),
                        format!("type widened {change}"),
                    );
                }
                match (ot.contains("null"), nt.contains("null")) {
                    (true, false) => self.emit(
                        pick(dir, "request-nullable-removed", "response-nullable-removed"),
                        loc,
                        at(),
                        "null is no longer allowed",
                    ),
                    (false, true) => self.emit(
                        pick(dir, "request-nullable-added", "response-nullable-added"),
                        loc,
                        at(),
                        "null is now allowed",
                    ),
                    _ => {}
                }
                comparable
            }
            (None, Some(nt)) => {
                self.emit(
                    pick(dir, "request-type-narrowed", "response-type-narrowed"),
                    loc,
                    at(),
                    format!("type restricted to {} (was any type)", show_types(&nt)),
                );
                true
            }
            (Some(ot), None) => {
                self.emit(
                    pick(dir, "request-type-widened", "response-type-widened"),
                    loc,
                    at(),
                    format!(
                        "type restriction {} removed (now any type)",
                        show_types(&ot)
                    ),
                );
                true
            }
            (None, None) => true,
        }
    }

    fn enums(&mut self, o: &Obj, optr: &str, n: &Obj, nptr: &str, dir: Dir, loc: &Loc) {
        // `const` is an enum of one value.
        let values = |m: &Obj| -> Option<(&'static str, Vec<Json>)> {
            if let Some(Json::Array(a)) = m.get("enum") {
                Some(("enum", a.clone()))
            } else {
                m.get("const").map(|c| ("const", vec![c.clone()]))
            }
        };
        // When both sides declare `type`, null is reported as nullability.
        let skip_null = o.contains_key("type") && n.contains_key("type");
        let listed = |vals: &[Json]| {
            vals.iter()
                .map(Json::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (values(o), values(n)) {
            (Some((okw, ov)), Some((nkw, nv))) => {
                for (i, v) in ov.iter().enumerate() {
                    if (skip_null && v.is_null()) || nv.iter().any(|w| json_eq(v, w)) {
                        continue;
                    }
                    let ptr = if okw == "enum" {
                        format!("{optr}/enum/{i}")
                    } else {
                        child(optr, "const")
                    };
                    self.emit(
                        pick(
                            dir,
                            "request-enum-value-removed",
                            "response-enum-value-removed",
                        ),
                        loc,
                        at_old(ptr),
                        format!("value {v} removed"),
                    );
                }
                for (i, v) in nv.iter().enumerate() {
                    if (skip_null && v.is_null()) || ov.iter().any(|w| json_eq(v, w)) {
                        continue;
                    }
                    let ptr = if nkw == "enum" {
                        format!("{nptr}/enum/{i}")
                    } else {
                        child(nptr, "const")
                    };
                    self.emit(
                        pick(dir, "request-enum-value-added", "response-enum-value-added"),
                        loc,
                        at_new(ptr),
                        format!("new value {v}"),
                    );
                }
            }
            (None, Some((nkw, nv))) => self.emit(
                pick(
                    dir,
                    "request-enum-constraint-added",
                    "response-enum-constraint-added",
                ),
                loc,
                at_new(child(nptr, nkw)),
                format!("values restricted to {}", listed(&nv)),
            ),
            (Some((okw, ov)), None) => self.emit(
                pick(
                    dir,
                    "request-enum-constraint-removed",
                    "response-enum-constraint-removed",
                ),
                loc,
                at_old(child(optr, okw)),
                format!("no longer restricted to {}", listed(&ov)),
            ),
            (None, None) => {}
        }
    }

    fn bounds(&mut self, o: &Obj, optr: &str, n: &Obj, nptr: &str, dir: Dir, loc: &Loc) {
        for r in BOUND_RULES {
            let (ol, nl) = (r.limit(o), r.limit(n));
            let (tightened, message) = match (&ol, &nl) {
                (None, None) => continue,
                (None, Some(b)) => (true, format!("{} {b} added", r.label)),
                (Some(a), None) => (false, format!("{} {a} removed", r.label)),
                (Some(a), Some(b)) => {
                    let tightened = if tighter(r.upper, b, a) {
                        true
                    } else if tighter(r.upper, a, b) {
                        false
                    } else {
                        continue;
                    };
                    let verb = if tightened == r.upper {
                        "lowered"
                    } else {
                        "raised"
                    };
                    (tightened, format!("{} {verb} from {a} to {b}", r.label))
                }
            };
            let kw = r
                .keywords
                .iter()
                .find(|k| n.contains_key(**k))
                .or_else(|| r.keywords.iter().find(|k| o.contains_key(**k)))
                .copied()
                .unwrap_or(r.label);
            let code = match (dir, tightened) {
                (Dir::Request, true) => r.tightened,
                (Dir::Request, false) => r.loosened,
                (Dir::Response, _) => "response-constraint-changed",
            };
            self.emit(code, loc, at_kw(o, optr, n, nptr, kw), message);
        }
    }

    fn pattern(&mut self, o: &Obj, optr: &str, n: &Obj, nptr: &str, dir: Dir, loc: &Loc) {
        let get = |m: &Obj| m.get("pattern").and_then(Json::as_str).map(str::to_owned);
        let (code, message) = match (get(o), get(n)) {
            (a, b) if a == b => return,
            (None, Some(p)) => (
                pick(dir, "request-pattern-added", "response-constraint-changed"),
                format!("pattern `{p}` added"),
            ),
            (Some(p), None) => (
                pick(
                    dir,
                    "request-pattern-removed",
                    "response-constraint-changed",
                ),
                format!("pattern `{p}` removed"),
            ),
            (Some(a), Some(b)) => (
                pick(
                    dir,
                    "request-pattern-changed",
                    "response-constraint-changed",
                ),
                format!("pattern changed from `{a}` to `{b}`"),
            ),
            (None, None) => return,
        };
        self.emit(code, loc, at_kw(o, optr, n, nptr, "pattern"), message);
    }

    fn format(&mut self, o: &Obj, optr: &str, n: &Obj, nptr: &str, dir: Dir, loc: &Loc) {
        let get = |m: &Obj| m.get("format").and_then(Json::as_str).map(str::to_owned);
        let (code, message) = match (get(o), get(n)) {
            (a, b) if a == b => return,
            (None, Some(f)) => (
                pick(dir, "request-format-added", "response-constraint-changed"),
                format!("format {f} added"),
            ),
            (Some(f), None) => (
                pick(dir, "request-format-removed", "response-format-changed"),
                format!("format {f} removed"),
            ),
            (Some(a), Some(b)) => {
                let code = match dir {
                    Dir::Request if format_widens(&a, &b) => "request-format-widened",
                    Dir::Request => "request-format-changed",
                    Dir::Response if format_widens(&b, &a) => "response-constraint-changed",
                    Dir::Response => "response-format-changed",
                };
                (code, format!("format changed from {a} to {b}"))
            }
            (None, None) => return,
        };
        self.emit(code, loc, at_kw(o, optr, n, nptr, "format"), message);
    }

    fn object(&mut self, o: &Obj, optr: &str, n: &Obj, nptr: &str, dir: Dir, loc: &Loc) -> R {
        let objectish = |m: &Obj| {
            ["properties", "required", "additionalProperties"]
                .iter()
                .any(|k| m.contains_key(*k))
        };
        if !objectish(o) && !objectish(n) {
            return Ok(());
        }
        let empty = Obj::new();
        let oprops = o
            .get("properties")
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let nprops = n
            .get("properties")
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let required = |m: &Obj| -> Vec<String> {
            m.get("required")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (oreq, nreq) = (required(o), required(n));
        let mut names: Vec<&str> = Vec::new();
        for name in oprops
            .keys()
            .chain(oreq.iter())
            .chain(nprops.keys())
            .chain(nreq.iter())
        {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let closed = |m: &Obj| {
            m.get("additionalProperties") == Some(&Json::Bool(false))
                || m.get("unevaluatedProperties") == Some(&Json::Bool(false))
        };
        let prop_ptr = |props: &Obj, ptr: &str, name: &str| {
            if props.contains_key(name) {
                child(&child(ptr, "properties"), name)
            } else {
                child(ptr, "required")
            }
        };
        for name in names {
            let o_req = oreq.iter().any(|r| r == name);
            let n_req = nreq.iter().any(|r| r == name);
            let o_has = o_req || oprops.contains_key(name);
            let n_has = n_req || nprops.contains_key(name);
            let (opp, npp) = (prop_ptr(oprops, optr, name), prop_ptr(nprops, nptr, name));
            let ploc = loc.prop(name);
            match (o_has, n_has, dir) {
                (true, false, Dir::Request) if closed(n) => self.emit(
                    "request-property-removed",
                    &ploc,
                    at_old(opp),
                    format!("property `{name}` removed; unknown properties are rejected, so old clients that send it fail"),
                ),
                (true, false, Dir::Request) => self.emit(
                    "request-property-undeclared",
                    &ploc,
                    at_old(opp),
                    format!("property `{name}` no longer declared; unknown properties are still accepted, but the value may be ignored"),
                ),
                (true, false, Dir::Response) => self.emit(
                    "response-property-removed",
                    &ploc,
                    at_old(opp),
                    format!("property `{name}` removed from the response"),
                ),
                (false, true, Dir::Request) if n_req => self.emit(
                    "request-property-added-required",
                    &ploc,
                    at_new(npp),
                    format!("new required property `{name}`: old clients do not send it"),
                ),
                (false, true, Dir::Request) => self.emit(
                    "request-property-added",
                    &ploc,
                    at_new(npp),
                    format!("new optional property `{name}`"),
                ),
                (false, true, Dir::Response) => self.emit(
                    "response-property-added",
                    &ploc,
                    at_new(npp),
                    format!("new property `{name}` in the response"),
                ),
                (true, true, _) => {
                    let code = match (dir, o_req, n_req) {
                        (Dir::Request, false, true) => Some("request-property-became-required"),
                        (Dir::Request, true, false) => Some("request-property-became-optional"),
                        (Dir::Response, true, false) => Some("response-property-became-optional"),
                        (Dir::Response, false, true) => Some("response-property-became-required"),
                        _ => None,
                    };
                    if let Some(code) = code {
                        let message = if n_req {
                            format!("property `{name}` is now required")
                        } else {
                            format!("property `{name}` is no longer required")
                        };
                        self.emit(code, &ploc, at_new(child(nptr, "required")), message);
                    }
                    self.schema(
                        oprops.get(name).unwrap_or(&ANY),
                        &opp,
                        nprops.get(name).unwrap_or(&ANY),
                        &npp,
                        dir,
                        &ploc,
                    )?;
                }
                _ => {}
            }
        }
        let (oa, na) = (o.get("additionalProperties"), n.get("additionalProperties"));
        let is_false = |a: Option<&Json>| a == Some(&Json::Bool(false));
        let at = || at_kw(o, optr, n, nptr, "additionalProperties");
        match (is_false(oa), is_false(na), dir) {
            (true, false, Dir::Request) => self.emit(
                "request-additional-properties-opened",
                loc,
                at(),
                "unknown properties are now accepted",
            ),
            (false, true, Dir::Request) => self.emit(
                "request-additional-properties-closed",
                loc,
                at(),
                "unknown properties are now rejected",
            ),
            (true, false, Dir::Response) => self.emit(
                "response-additional-properties-changed",
                loc,
                at(),
                "the response may now contain undeclared properties",
            ),
            (false, true, Dir::Response) => self.emit(
                "response-additional-properties-changed",
                loc,
                at(),
                "the response no longer contains undeclared properties",
            ),
            (false, false, _)
                if oa.is_some_and(Json::is_object) || na.is_some_and(Json::is_object) =>
            {
                self.schema(
                    oa.unwrap_or(&ANY),
                    &child(optr, "additionalProperties"),
                    na.unwrap_or(&ANY),
                    &child(nptr, "additionalProperties"),
                    dir,
                    &loc.sub(".*"),
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    fn array(&mut self, o: &Obj, optr: &str, n: &Obj, nptr: &str, dir: Dir, loc: &Loc) -> R {
        let (oi, ni) = (o.get("items"), n.get("items"));
        if oi.is_none() && ni.is_none() {
            return Ok(());
        }
        if oi.is_some_and(Json::is_array) || ni.is_some_and(Json::is_array) {
            // Tuple form (draft 4 style); compared as written.
            if oi != ni {
                self.emit(
                    pick(dir, "request-schema-changed", "response-schema-changed"),
                    loc,
                    at_kw(o, optr, n, nptr, "items"),
                    "`items` (tuple form) changed",
                );
            }
            return Ok(());
        }
        self.schema(
            oi.unwrap_or(&ANY),
            &child(optr, "items"),
            ni.unwrap_or(&ANY),
            &child(nptr, "items"),
            dir,
            &loc.sub("[]"),
        )
    }

    fn composition(&mut self, o: &Obj, optr: &str, n: &Obj, nptr: &str, dir: Dir, loc: &Loc) -> R {
        let changed = pick(dir, "request-schema-changed", "response-schema-changed");
        for kw in ["oneOf", "anyOf"] {
            match (
                o.get(kw).and_then(Json::as_array),
                n.get(kw).and_then(Json::as_array),
            ) {
                (None, None) => {}
                (Some(a), Some(b)) => self.variants(kw, a, optr, b, nptr, dir, loc)?,
                (a, _) => self.emit(
                    changed,
                    loc,
                    at_kw(o, optr, n, nptr, kw),
                    format!("`{kw}` {}", if a.is_some() { "removed" } else { "added" }),
                ),
            }
        }
        match (
            o.get("allOf").and_then(Json::as_array),
            n.get("allOf").and_then(Json::as_array),
        ) {
            (None, None) => {}
            (Some(a), Some(b)) if a.len() == b.len() => {
                let (op, np) = (child(optr, "allOf"), child(nptr, "allOf"));
                for (i, (ov, nv)) in a.iter().zip(b).enumerate() {
                    self.schema(
                        ov,
                        &format!("{op}/{i}"),
                        nv,
                        &format!("{np}/{i}"),
                        dir,
                        &loc.sub(&format!(".allOf[{i}]")),
                    )?;
                }
            }
            (a, b) => self.emit(
                changed,
                loc,
                at_kw(o, optr, n, nptr, "allOf"),
                format!(
                    "`allOf` changed from {} to {} parts",
                    a.map_or(0, Vec::len),
                    b.map_or(0, Vec::len)
                ),
            ),
        }
        Ok(())
    }

    /// `oneOf`/`anyOf`: variants are matched by `$ref`, then inline ones in
    /// order.
    #[allow(clippy::too_many_arguments)]
    fn variants(
        &mut self,
        kw: &str,
        a: &[Json],
        optr: &str,
        b: &[Json],
        nptr: &str,
        dir: Dir,
        loc: &Loc,
    ) -> R {
        let ref_of = |v: &Json| v.get("$ref").and_then(Json::as_str).map(str::to_owned);
        let mut used = vec![false; b.len()];
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        let mut gone: Vec<usize> = Vec::new();
        for (i, v) in a.iter().enumerate() {
            let Some(r) = ref_of(v) else { continue };
            match (0..b.len()).find(|&j| !used[j] && ref_of(&b[j]).as_ref() == Some(&r)) {
                Some(j) => {
                    used[j] = true;
                    pairs.push((i, j));
                }
                None => gone.push(i),
            }
        }
        let new_inline: Vec<usize> = (0..b.len())
            .filter(|&j| !used[j] && ref_of(&b[j]).is_none())
            .collect();
        let mut new_inline = new_inline.into_iter();
        for (i, v) in a.iter().enumerate() {
            if ref_of(v).is_some() {
                continue;
            }
            match new_inline.next() {
                Some(j) => {
                    used[j] = true;
                    pairs.push((i, j));
                }
                None => gone.push(i),
            }
        }
        pairs.sort_unstable();
        gone.sort_unstable();
        let describe = |v: &Json| match (ref_of(v), v.get("type")) {
            (Some(r), _) => r.rsplit('/').next().unwrap_or_default().to_owned(),
            (None, Some(t)) => format!("of type {t}"),
            (None, None) => "(inline)".to_owned(),
        };
        for i in gone {
            self.emit(
                pick(dir, "request-variant-removed", "response-variant-removed"),
                &loc.sub(&format!(".{kw}[{i}]")),
                at_old(format!("{optr}/{kw}/{i}")),
                format!("{kw} variant {} removed", describe(&a[i])),
            );
        }
        for (i, j) in pairs {
            self.schema(
                &a[i],
                &format!("{optr}/{kw}/{i}"),
                &b[j],
                &format!("{nptr}/{kw}/{j}"),
                dir,
                &loc.sub(&format!(".{kw}[{j}]")),
            )?;
        }
        for (j, v) in b.iter().enumerate() {
            if !used[j] {
                self.emit(
                    pick(dir, "request-variant-added", "response-variant-added"),
                    &loc.sub(&format!(".{kw}[{j}]")),
                    at_new(format!("{nptr}/{kw}/{j}")),
                    format!("new {kw} variant {}", describe(v)),
                );
            }
        }
        Ok(())
    }

    /// Keywords without a rule of their own: annotations are info, defaults
    /// in requests are compatible, anything else is unknown and breaking.
    fn schema_keywords(&mut self, o: &Obj, optr: &str, n: &Obj, nptr: &str, dir: Dir, loc: &Loc) {
        for key in union_keys(o, n) {
            if SCHEMA_COMPARED.contains(&key) {
                continue;
            }
            let (ov, nv) = (o.get(key), n.get(key));
            if opt_eq(ov, nv) {
                continue;
            }
            let at = at_kw(o, optr, n, nptr, key);
            let what = change_word(ov, nv);
            match key {
                "description" | "title" => {
                    self.emit("description-changed", loc, at, format!("{key} {what}"));
                }
                "deprecated" => self.deprecation(o, n, loc, at),
                "default" if dir == Dir::Request => self.emit(
                    "request-default-changed",
                    loc,
                    at,
                    format!(
                        "default changed from {} to {}: old clients that omit the value get the new default",
                        show(ov),
                        show(nv)
                    ),
                ),
                "default" => self.emit("annotation-changed", loc, at, format!("`default` {what}")),
                k if SCHEMA_ANNOTATIONS.contains(&k) || k.starts_with("x-") => {
                    self.emit("annotation-changed", loc, at, format!("`{key}` {what}"));
                }
                _ => self.emit(
                    pick(dir, "request-schema-changed", "response-schema-changed"),
                    loc,
                    at,
                    format!("`{key}` {what}; this keyword is not analysed, review it by hand"),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_unique() {
        let mut codes: Vec<&str> = RULES.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n, "duplicate codes in RULES");
    }

    #[test]
    fn path_shapes_ignore_parameter_names() {
        assert_eq!(path_shape("/v1/posts/{id}"), "/v1/posts/{}");
        assert_eq!(
            path_shape("/v1/posts/{post_id}"),
            path_shape("/v1/posts/{id}")
        );
        assert_ne!(path_shape("/v1/posts/{id}"), path_shape("/v1/posts"));
        assert_eq!(placeholders("/a/{x}/b/{y}"), vec!["x", "y"]);
    }

    #[test]
    fn percent_decoding_of_ref_fragments() {
        assert_eq!(
            percent_decode("/components/schemas/A%20B"),
            "/components/schemas/A B"
        );
        assert_eq!(percent_decode("/a%7Bb%7D"), "/a{b}");
        assert_eq!(percent_decode("/bad%zz"), "/bad%zz");
        assert_eq!(percent_decode("/end%4"), "/end%4");
    }

    #[test]
    fn bounds_compare_exactly_and_with_exclusivity() {
        let l = |v: Json, exclusive| Limit {
            value: v.as_number().cloned().unwrap_or_else(|| Number::from(0)),
            exclusive,
        };
        assert!(tighter(true, &l(json!(5), false), &l(json!(6), false)));
        assert!(!tighter(true, &l(json!(6), false), &l(json!(5), false)));
        assert!(tighter(true, &l(json!(5), true), &l(json!(5), false)));
        assert!(tighter(false, &l(json!(5), true), &l(json!(5.0), false)));
        assert!(!tighter(false, &l(json!(5), false), &l(json!(5.0), false)));
        assert!(tighter(
            false,
            &l(json!(i64::MAX), false),
            &l(json!(i64::MAX - 1), false)
        ));
        assert!(tighter(
            true,
            &l(json!(u64::MAX - 1), false),
            &l(json!(u64::MAX), false)
        ));
    }
}
