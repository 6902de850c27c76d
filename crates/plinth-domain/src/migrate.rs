//! Planned migrations: the ordered steps from the schema a database has
//! applied to the schema in `plinth.toml`.
//!
//! Changes to how a field is stored (its type, `required`, `unique`, an enum's
//! values, a relation's target) are one [`Step::AlterField`] each; the store
//! checks the data against them before they run (on SQLite they rebuild the
//! table). Type changes without a sensible conversion are refused with a
//! reason, so a plan never guesses. Renames are explicit (`renamed_from`).

use std::fmt;

use crate::schema::{Collection, Field, FieldType, Index, Schema};

/// How risky a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// Cannot lose data or block for long.
    Safe,
    /// Existing records need a value: the step fills them from the field's
    /// default, or is blocked while records lack one.
    NeedsBackfill,
    /// Loses data; needs `--allow-destructive`.
    Destructive,
    /// Holds a lock that blocks writes while it runs (index builds on PostgreSQL).
    Locking,
}

impl fmt::Display for Safety {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Safety::Safe => "safe",
            Safety::NeedsBackfill => "needs-backfill",
            Safety::Destructive => "destructive",
            Safety::Locking => "locking",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    DropIndex {
        collection: String,
        index: Index,
    },
    DropField {
        collection: String,
        field: String,
    },
    DropCollection {
        collection: String,
    },
    RenameField {
        collection: String,
        from: String,
        to: String,
    },
    CreateCollection {
        collection: Collection,
    },
    AddField {
        collection: String,
        field: Field,
    },
    AddIndex {
        collection: String,
        index: Index,
    },
    /// A change to how a kept field is stored. `from` is the applied field
    /// (under its applied name), `to` the wanted one; a rename runs first.
    AlterField {
        collection: String,
        from: Box<Field>,
        to: Box<Field>,
    },
    /// A change the database does not store (validation, docs, deprecation).
    ContractOnly {
        collection: String,
        change: String,
    },
}

impl Step {
    /// The safety of the step before looking at the data.
    pub fn safety(&self) -> Safety {
        match self {
            Step::DropField { .. } | Step::DropCollection { .. } => Safety::Destructive,
            Step::AddField { field, .. } if field.required && field.default.is_none() => {
                Safety::NeedsBackfill
            }
            Step::AlterField { from, to, .. } if to.required && !from.required => {
                Safety::NeedsBackfill
            }
            _ => Safety::Safe,
        }
    }

    /// Whether applying the plan back undoes the step without losing data
    /// (a dropped field or collection comes back empty).
    pub fn reversible(&self) -> bool {
        self.irreversible_because().is_none()
    }

    /// Why going back would not restore what the step changes, if it would not.
    pub fn irreversible_because(&self) -> Option<String> {
        match self {
            Step::DropField { .. } | Step::DropCollection { .. } => {
                Some("the data is not restored".into())
            }
            Step::AlterField { from, to, .. } => {
                if let Conversion::Unsupported(_) = conversion(to.ty, from.ty) {
                    return Some(format!(
                        "there is no way back from {} to {}",
                        to.ty.as_str(),
                        from.ty.as_str()
                    ));
                }
                (to.required && !from.required && to.default.is_some())
                    .then(|| "records backfilled with the default keep it".into())
            }
            _ => None,
        }
    }

    pub fn collection(&self) -> &str {
        match self {
            Step::DropIndex { collection, .. }
            | Step::DropField { collection, .. }
            | Step::DropCollection { collection }
            | Step::RenameField { collection, .. }
            | Step::AddField { collection, .. }
            | Step::AddIndex { collection, .. }
            | Step::AlterField { collection, .. }
            | Step::ContractOnly { collection, .. } => collection,
            Step::CreateCollection { collection } => &collection.name,
        }
    }
}

/// How the values of a field convert when its type changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The type does not change.
    Same,
    /// Every value converts (integer → number, to text, date → datetime).
    Widening,
    /// Values may not convert: the data is checked before the step runs.
    Narrowing,
    /// No conversion makes sense; why.
    Unsupported(&'static str),
}

/// How values of type `from` convert to `to`.
pub fn conversion(from: FieldType, to: FieldType) -> Conversion {
    use FieldType as T;
    if from == to {
        return Conversion::Same;
    }
    match (from, to) {
        (T::Integer, T::Number)
        | (T::Integer | T::Date | T::Datetime | T::Email | T::Url | T::Enum, T::Text)
        | (T::Relation | T::Json, T::Text)
        | (T::Date, T::Datetime) => Conversion::Widening,
        (T::Number, T::Integer)
        | (T::Text | T::Enum, T::Integer | T::Number)
        | (T::Text | T::Email | T::Url | T::Enum, T::Email | T::Url | T::Enum)
        | (T::Text, T::Relation | T::Datetime | T::Date) => Conversion::Narrowing,
        (T::Number, T::Text) => Conversion::Unsupported(
            "the text form of a floating-point number is not the same on every database",
        ),
        (T::Datetime, T::Date) => Conversion::Unsupported("it would lose the time of day"),
        (T::Boolean, _) | (_, T::Boolean) => {
            Conversion::Unsupported("booleans convert to and from no other type")
        }
        (_, T::Json) => Conversion::Unsupported(
            "existing values would be stored as JSON documents without being normalised",
        ),
        _ => Conversion::Unsupported("no conversion between these types makes sense"),
    }
}

/// One difference in how a kept field is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldChange {
    Type {
        from: FieldType,
        to: FieldType,
        conversion: Conversion,
    },
    Required(bool),
    Unique(bool),
    /// Values of an enum that stays an enum.
    EnumValues {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// The target of a relation that stays a relation.
    Target {
        from: String,
        to: String,
    },
}

impl FieldChange {
    /// Whether the data must be checked before the change runs.
    pub fn narrows(&self) -> bool {
        match self {
            FieldChange::Type { conversion, .. } => *conversion == Conversion::Narrowing,
            FieldChange::Required(on) | FieldChange::Unique(on) => *on,
            FieldChange::EnumValues { removed, .. } => !removed.is_empty(),
            FieldChange::Target { .. } => true,
        }
    }
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldChange::Type {
                from,
                to,
                conversion,
            } => {
                let how = match conversion {
                    Conversion::Widening => " (widening)",
                    Conversion::Narrowing => " (narrowing)",
                    _ => "",
                };
                write!(f, "type {} → {}{how}", from.as_str(), to.as_str())
            }
            FieldChange::Required(true) => f.write_str("now required"),
            FieldChange::Required(false) => f.write_str("no longer required"),
            FieldChange::Unique(true) => f.write_str("now unique"),
            FieldChange::Unique(false) => f.write_str("no longer unique"),
            FieldChange::EnumValues { added, removed } => {
                let mut parts: Vec<String> = added.iter().map(|v| format!("+{v}")).collect();
                parts.extend(removed.iter().map(|v| format!("-{v}")));
                write!(f, "enum values {}", parts.join(" "))
            }
            FieldChange::Target { from, to } => write!(f, "relation target {from} → {to}"),
        }
    }
}

/// The storage differences from field `a` to field `w` (empty: none).
pub fn field_changes(a: &Field, w: &Field) -> Vec<FieldChange> {
    let mut out = Vec::new();
    if a.ty != w.ty {
        out.push(FieldChange::Type {
            from: a.ty,
            to: w.ty,
            conversion: conversion(a.ty, w.ty),
        });
    }
    if a.required != w.required {
        out.push(FieldChange::Required(w.required));
    }
    if a.unique != w.unique {
        out.push(FieldChange::Unique(w.unique));
    }
    if a.ty == FieldType::Enum && w.ty == FieldType::Enum {
        let added: Vec<String> = w
            .values
            .iter()
            .filter(|v| !a.values.contains(v))
            .cloned()
            .collect();
        let removed: Vec<String> = a
            .values
            .iter()
            .filter(|v| !w.values.contains(v))
            .cloned()
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            out.push(FieldChange::EnumValues { added, removed });
        }
    }
    if let (FieldType::Relation, FieldType::Relation, Some(from), Some(to)) =
        (a.ty, w.ty, &a.collection, &w.collection)
        && from != to
    {
        out.push(FieldChange::Target {
            from: from.clone(),
            to: to.clone(),
        });
    }
    out
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idx = |i: &Index| {
            format!(
                "{}index ({})",
                if i.unique { "unique " } else { "" },
                i.fields.join(", ")
            )
        };
        match self {
            Step::DropIndex { collection, index } => {
                write!(f, "drop {} on `{collection}`", idx(index))
            }
            Step::DropField { collection, field } => write!(f, "drop field `{collection}.{field}`"),
            Step::DropCollection { collection } => write!(f, "drop collection `{collection}`"),
            Step::RenameField {
                collection,
                from,
                to,
            } => {
                write!(f, "rename field `{collection}.{from}` to `{to}`")
            }
            Step::CreateCollection { collection } => {
                write!(f, "create collection `{}`", collection.name)
            }
            Step::AddField { collection, field } => {
                write!(
                    f,
                    "add field `{collection}.{}` ({})",
                    field.name,
                    field.ty.as_str()
                )
            }
            Step::AddIndex { collection, index } => {
                write!(f, "add {} on `{collection}`", idx(index))
            }
            Step::AlterField {
                collection,
                from,
                to,
            } => {
                let changes: Vec<String> = field_changes(from, to)
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                write!(
                    f,
                    "alter field `{collection}.{}`: {}",
                    to.name,
                    changes.join(", ")
                )
            }
            Step::ContractOnly { collection, change } => {
                write!(f, "`{collection}`: {change} (contract only, no SQL)")
            }
        }
    }
}

/// Differences that only the contract (validation, docs) sees.
fn contract_changes(a: &Field, w: &Field) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.default != w.default {
        out.push("default");
    }
    if a.min != w.min || a.max != w.max {
        out.push("min/max");
    }
    if a.min_length != w.min_length || a.max_length != w.max_length {
        out.push("min_length/max_length");
    }
    if a.pattern != w.pattern {
        out.push("pattern");
    }
    if a.ty == FieldType::Enum
        && w.ty == FieldType::Enum
        && a.values != w.values
        && a.values.len() == w.values.len()
        && a.values.iter().all(|v| w.values.contains(v))
    {
        out.push("enum value order");
    }
    if a.description != w.description {
        out.push("description");
    }
    if a.deprecation != w.deprecation {
        out.push("deprecation");
    }
    out
}

/// The steps from `applied` to `wanted`, in the order they must run, or the
/// reasons the change cannot be planned.
pub fn plan(applied: &Schema, wanted: &Schema) -> Result<Vec<Step>, Vec<String>> {
    let mut errors = Vec::new();
    let mut drops_ix = Vec::new();
    let mut drops_field = Vec::new();
    let mut drops_coll = Vec::new();
    let mut renames = Vec::new();
    let mut creates = Vec::new();
    let mut adds = Vec::new();
    let mut alters = Vec::new();
    let mut adds_ix = Vec::new();
    let mut contract = Vec::new();

    for w in &wanted.collections {
        let Some(a) = applied.collection(&w.name) else {
            creates.push(Step::CreateCollection {
                collection: w.clone(),
            });
            continue;
        };
        let cn = &w.name;
        let mut kept: Vec<&str> = Vec::new();
        for wf in &w.fields {
            // By name; else the field it says it was renamed from; else (when
            // going back to an older schema) the field renamed from it.
            let source = a
                .field(&wf.name)
                .or_else(|| {
                    wf.renamed_from
                        .as_deref()
                        .filter(|old| w.field(old).is_none())
                        .and_then(|old| a.field(old))
                })
                .or_else(|| {
                    a.fields.iter().find(|af| {
                        af.renamed_from.as_deref() == Some(wf.name.as_str())
                            && w.field(&af.name).is_none()
                    })
                });
            let Some(af) = source else {
                adds.push(Step::AddField {
                    collection: cn.clone(),
                    field: wf.clone(),
                });
                continue;
            };
            kept.push(&af.name);
            if af.name != wf.name {
                renames.push(Step::RenameField {
                    collection: cn.clone(),
                    from: af.name.clone(),
                    to: wf.name.clone(),
                });
            }
            let storage = field_changes(af, wf);
            for ch in &storage {
                if let FieldChange::Type {
                    conversion: Conversion::Unsupported(why),
                    ..
                } = ch
                {
                    errors.push(format!(
                        "field `{cn}.{}`: changing its type from {} to {} is not supported: {why} (add a new field, backfill it, then drop the old one)",
                        wf.name,
                        af.ty.as_str(),
                        wf.ty.as_str()
                    ));
                }
            }
            if !storage.is_empty() {
                alters.push(Step::AlterField {
                    collection: cn.clone(),
                    from: Box::new(af.clone()),
                    to: Box::new(wf.clone()),
                });
            }
            let c = contract_changes(af, wf);
            if !c.is_empty() {
                contract.push(Step::ContractOnly {
                    collection: cn.clone(),
                    change: format!("field `{}`: {} changed", wf.name, c.join(", ")),
                });
            }
        }
        for af in &a.fields {
            if !kept.contains(&af.name.as_str()) {
                drops_field.push(Step::DropField {
                    collection: cn.clone(),
                    field: af.name.clone(),
                });
            }
        }
        for ix in &a.indexes {
            if !w.indexes.contains(ix) {
                drops_ix.push(Step::DropIndex {
                    collection: cn.clone(),
                    index: ix.clone(),
                });
            }
        }
        for ix in &w.indexes {
            if !a.indexes.contains(ix) {
                adds_ix.push(Step::AddIndex {
                    collection: cn.clone(),
                    index: ix.clone(),
                });
            }
        }
        if a.description != w.description || a.deprecation != w.deprecation {
            contract.push(Step::ContractOnly {
                collection: cn.clone(),
                change: "collection description/deprecation changed".into(),
            });
        }
        if a.tenant_scoped != w.tenant_scoped {
            errors.push(format!(
                "collection `{cn}`: changing tenant_scoped is not supported by migrate (every record would need a tenant); create a new collection with the wanted tenancy, copy the records, then drop the old one"
            ));
        }
        for act in crate::schema::Action::ALL {
            if a.permissions.get(act) != w.permissions.get(act) {
                contract.push(Step::ContractOnly {
                    collection: cn.clone(),
                    change: format!("permission `{}` changed", act.as_str()),
                });
            }
        }
    }
    if applied.roles != wanted.roles {
        // Roles live in the schema, not in a table ("schema" is a reserved name).
        contract.push(Step::ContractOnly {
            collection: "schema".into(),
            change: "custom roles changed".into(),
        });
    }
    for a in &applied.collections {
        if wanted.collection(&a.name).is_none() {
            drops_coll.push(Step::DropCollection {
                collection: a.name.clone(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Collections go after the alterations: a relation may be moved off a
    // collection that is dropped, onto one that is created.
    Ok([
        drops_ix,
        drops_field,
        renames,
        creates,
        adds,
        alters,
        drops_coll,
        adds_ix,
        contract,
    ]
    .concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_schema;

    fn s(src: &str) -> Schema {
        parse_schema(src).expect("valid")
    }

    const BASE: &str = "[collections.posts.fields]\ntitle = { type = \"text\" }\nold = { type = \"text\" }\n[[collections.posts.indexes]]\nfields = [\"old\"]\n";

    #[test]
    fn plans_ordered_steps() {
        let wanted = s(
            "[collections.posts.fields]\nheadline = { type = \"text\", renamed_from = \"title\", max_length = 9 }\nviews = { type = \"integer\", required = true, default = 0 }\n[[collections.posts.indexes]]\nfields = [\"views\"]\n[collections.tags.fields]\nname = { type = \"text\" }\n",
        );
        let steps = plan(&s(BASE), &wanted).expect("plannable");
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "drop index (old) on `posts`",
                "drop field `posts.old`",
                "rename field `posts.title` to `headline`",
                "create collection `tags`",
                "add field `posts.views` (integer)",
                "add index (views) on `posts`",
                "`posts`: field `headline`: min_length/max_length changed (contract only, no SQL)",
            ]
        );
        assert_eq!(steps[1].safety(), Safety::Destructive);
        assert_eq!(steps[4].safety(), Safety::Safe);
        assert!(plan(&s(BASE), &s(BASE)).expect("same").is_empty());
    }

    #[test]
    fn going_back_reverses_a_rename() {
        let v1 = s(BASE);
        let v2 = s(
            "[collections.posts.fields]\nheadline = { type = \"text\", renamed_from = \"title\" }\nold = { type = \"text\" }\n[[collections.posts.indexes]]\nfields = [\"old\"]\n",
        );
        assert_eq!(
            plan(&v2, &v1).expect("plannable"),
            [Step::RenameField {
                collection: "posts".into(),
                from: "headline".into(),
                to: "title".into()
            }]
        );
        assert!(
            Step::DropField {
                collection: "p".into(),
                field: "f".into()
            }
            .reversible()
            .eq(&false)
        );
    }

    #[test]
    fn flags_backfills_and_plans_unique_and_required_relation_adds() {
        const AUTHORS: &str = "[collections.authors.fields]\nname = { type = \"text\" }\n";
        let steps = plan(
            &s(&format!("{BASE}{AUTHORS}")),
            &s(&format!("[collections.posts.fields]\ntitle = {{ type = \"text\" }}\nold = {{ type = \"text\" }}\nn = {{ type = \"text\", required = true }}\nslug = {{ type = \"text\", unique = true }}\nowner = {{ type = \"relation\", collection = \"authors\", required = true }}\n[[collections.posts.indexes]]\nfields = [\"old\"]\n{AUTHORS}")),
        )
        .expect("plannable");
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "add field `posts.n` (text)",
                "add field `posts.slug` (text)",
                "add field `posts.owner` (relation)",
            ]
        );
        let safety: Vec<Safety> = steps.iter().map(Step::safety).collect();
        assert_eq!(
            safety,
            [Safety::NeedsBackfill, Safety::Safe, Safety::NeedsBackfill]
        );
    }

    /// The applied schema with field `f` declared as `decl`.
    fn one(decl: &str) -> Schema {
        s(&format!(
            "[collections.authors.fields]\nname = {{ type = \"text\" }}\n[collections.teams.fields]\nname = {{ type = \"text\" }}\n[collections.posts.fields]\nf = {decl}\n"
        ))
    }

    fn alter(from: &str, to: &str) -> Result<Vec<Step>, Vec<String>> {
        plan(&one(from), &one(to))
    }

    #[test]
    fn type_changes_are_classified() {
        use FieldType as T;
        assert_eq!(conversion(T::Integer, T::Number), Conversion::Widening);
        assert_eq!(conversion(T::Number, T::Integer), Conversion::Narrowing);
        assert_eq!(conversion(T::Text, T::Integer), Conversion::Narrowing);
        assert_eq!(conversion(T::Text, T::Enum), Conversion::Narrowing);
        assert_eq!(conversion(T::Enum, T::Text), Conversion::Widening);
        assert_eq!(conversion(T::Text, T::Email), Conversion::Narrowing);
        assert_eq!(conversion(T::Email, T::Text), Conversion::Widening);
        assert_eq!(conversion(T::Text, T::Relation), Conversion::Narrowing);
        assert_eq!(conversion(T::Relation, T::Text), Conversion::Widening);
        assert_eq!(conversion(T::Date, T::Datetime), Conversion::Widening);
        assert_eq!(conversion(T::Text, T::Datetime), Conversion::Narrowing);
        assert_eq!(conversion(T::Integer, T::Text), Conversion::Widening);
        assert_eq!(conversion(T::Json, T::Text), Conversion::Widening);
        assert_eq!(conversion(T::Url, T::Url), Conversion::Same);
        for (a, b) in [
            (T::Datetime, T::Date),
            (T::Boolean, T::Integer),
            (T::Text, T::Boolean),
            (T::Text, T::Json),
            (T::Json, T::Integer),
            (T::Number, T::Text),
            (T::Integer, T::Relation),
            (T::Email, T::Relation),
        ] {
            assert!(
                matches!(conversion(a, b), Conversion::Unsupported(_)),
                "{a:?} → {b:?}"
            );
        }
    }

    #[test]
    fn storage_changes_are_alter_steps_with_labels() {
        let widen = alter(r#"{ type = "integer" }"#, r#"{ type = "number" }"#).expect("plannable");
        assert_eq!(
            widen.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["alter field `posts.f`: type integer → number (widening)"]
        );
        assert_eq!(widen[0].safety(), Safety::Safe);
        assert!(widen[0].reversible());

        let narrow = alter(r#"{ type = "number" }"#, r#"{ type = "integer" }"#).expect("plannable");
        assert_eq!(
            narrow[0].to_string(),
            "alter field `posts.f`: type number → integer (narrowing)"
        );
        assert_eq!(narrow[0].safety(), Safety::Safe);
        let Step::AlterField { from, to, .. } = &narrow[0] else {
            panic!("{narrow:?}")
        };
        assert!(field_changes(from, to).iter().all(FieldChange::narrows));

        // Required: a backfill from the default cannot be undone.
        let req = alter(
            r#"{ type = "integer" }"#,
            r#"{ type = "integer", required = true, default = 3 }"#,
        )
        .expect("plannable");
        let shown: Vec<String> = req.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "alter field `posts.f`: now required",
                "`posts`: field `f`: default changed (contract only, no SQL)"
            ]
        );
        assert_eq!(req[0].safety(), Safety::NeedsBackfill);
        assert_eq!(
            req[0].irreversible_because().as_deref(),
            Some("records backfilled with the default keep it")
        );
        let req = alter(
            r#"{ type = "integer" }"#,
            r#"{ type = "integer", required = true }"#,
        )
        .expect("plannable");
        assert_eq!(req[0].safety(), Safety::NeedsBackfill);
        assert!(req[0].reversible());
        let off = alter(
            r#"{ type = "integer", required = true }"#,
            r#"{ type = "integer" }"#,
        )
        .expect("plannable");
        assert_eq!(
            off[0].to_string(),
            "alter field `posts.f`: no longer required"
        );
        assert_eq!(off[0].safety(), Safety::Safe);

        let uniq = alter(
            r#"{ type = "text" }"#,
            r#"{ type = "text", unique = true }"#,
        )
        .expect("plannable");
        assert_eq!(uniq[0].to_string(), "alter field `posts.f`: now unique");

        let values = alter(
            r#"{ type = "enum", values = ["a", "b"] }"#,
            r#"{ type = "enum", values = ["a", "c"] }"#,
        )
        .expect("plannable");
        assert_eq!(
            values[0].to_string(),
            "alter field `posts.f`: enum values +c -b"
        );
        let Step::AlterField { from, to, .. } = &values[0] else {
            panic!("{values:?}")
        };
        assert!(field_changes(from, to)[0].narrows());
        let added = alter(
            r#"{ type = "enum", values = ["a"] }"#,
            r#"{ type = "enum", values = ["a", "b"] }"#,
        )
        .expect("plannable");
        let Step::AlterField { from, to, .. } = &added[0] else {
            panic!("{added:?}")
        };
        assert!(
            !field_changes(from, to)[0].narrows(),
            "adding values is safe"
        );
        // Reordering values changes no stored value.
        let order = alter(
            r#"{ type = "enum", values = ["a", "b"] }"#,
            r#"{ type = "enum", values = ["b", "a"] }"#,
        )
        .expect("plannable");
        assert!(
            matches!(&order[..], [Step::ContractOnly { change, .. }] if change.contains("enum value order")),
            "{order:?}"
        );

        let target = alter(
            r#"{ type = "relation", collection = "authors" }"#,
            r#"{ type = "relation", collection = "teams" }"#,
        )
        .expect("plannable");
        assert_eq!(
            target[0].to_string(),
            "alter field `posts.f`: relation target authors → teams"
        );

        // Several changes of one field are one step.
        let many = alter(
            r#"{ type = "text" }"#,
            r#"{ type = "enum", values = ["x"], required = true, unique = true }"#,
        )
        .expect("plannable");
        assert_eq!(
            many[0].to_string(),
            "alter field `posts.f`: type text → enum (narrowing), now required, now unique"
        );
        assert_eq!(many[0].safety(), Safety::NeedsBackfill);
    }

    #[test]
    fn alterations_run_after_renames_and_adds_and_before_drops_of_collections() {
        let v1 = s(
            "[collections.old.fields]\nname = { type = \"text\" }\n[collections.posts.fields]\nf = { type = \"relation\", collection = \"old\" }\ng = { type = \"integer\" }\n",
        );
        let v2 = s(
            "[collections.new.fields]\nname = { type = \"text\" }\n[collections.posts.fields]\nf = { type = \"relation\", collection = \"new\" }\nh = { type = \"number\", renamed_from = \"g\" }\n",
        );
        let steps = plan(&v1, &v2).expect("plannable");
        let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "rename field `posts.g` to `h`",
                "create collection `new`",
                "alter field `posts.f`: relation target old → new",
                "alter field `posts.h`: type integer → number (widening)",
                "drop collection `old`",
            ]
        );
        // The alteration names the applied field as it was.
        assert!(matches!(&steps[3], Step::AlterField { from, .. } if from.name == "g"));
    }

    #[test]
    fn refuses_type_changes_that_make_no_sense() {
        let e = alter(r#"{ type = "boolean" }"#, r#"{ type = "date" }"#).expect_err("refused");
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(
            e[0].contains("changing its type from boolean to date is not supported"),
            "{e:#?}"
        );
        let e = alter(r#"{ type = "datetime" }"#, r#"{ type = "date" }"#).expect_err("refused");
        assert!(e[0].contains("lose the time of day"), "{e:#?}");
        // A way there without a way back is irreversible.
        let steps = alter(r#"{ type = "date" }"#, r#"{ type = "datetime" }"#).expect("plannable");
        assert_eq!(
            steps[0].irreversible_because().as_deref(),
            Some("there is no way back from datetime to date")
        );
    }
}
