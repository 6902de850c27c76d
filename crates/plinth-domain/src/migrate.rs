//! Planned migrations: the ordered steps from the schema a database has
//! applied to the schema in `plinth.toml`.
//!
//! Only changes with a plain, per-dialect SQL form are planned; anything that
//! would need a table rebuild (a type change, `required`/`unique` toggles,
//! enum values, a relation's target) is refused with a reason, so a plan
//! never guesses. Renames are explicit (`renamed_from`).

use std::fmt;

use crate::schema::{Collection, Field, FieldType, Index, Schema};

/// How risky a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// Cannot lose data or block for long.
    Safe,
    /// Existing records need a value first (the step is refused as planned).
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
            _ => Safety::Safe,
        }
    }

    /// Whether applying the plan back undoes the step without losing data
    /// (a dropped field or collection comes back empty).
    pub fn reversible(&self) -> bool {
        !matches!(self, Step::DropField { .. } | Step::DropCollection { .. })
    }

    pub fn collection(&self) -> &str {
        match self {
            Step::DropIndex { collection, .. }
            | Step::DropField { collection, .. }
            | Step::DropCollection { collection }
            | Step::RenameField { collection, .. }
            | Step::AddField { collection, .. }
            | Step::AddIndex { collection, .. }
            | Step::ContractOnly { collection, .. } => collection,
            Step::CreateCollection { collection } => &collection.name,
        }
    }
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
            Step::ContractOnly { collection, change } => {
                write!(f, "`{collection}`: {change} (contract only, no SQL)")
            }
        }
    }
}

/// Differences that change how a column is stored: not plannable yet.
fn storage_changes(a: &Field, w: &Field) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.ty != w.ty {
        out.push("its type");
    }
    if a.required != w.required {
        out.push("`required`");
    }
    if a.unique != w.unique {
        out.push("`unique`");
    }
    if a.ty == FieldType::Enum && a.values != w.values {
        out.push("its enum values");
    }
    if a.collection != w.collection {
        out.push("its relation target");
    }
    out
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
                if wf.unique || (wf.ty == FieldType::Relation && wf.required) {
                    errors.push(format!(
                        "field `{cn}.{}`: adding a {} field needs a table rebuild; not supported by migrate yet (add it optional and non-unique first)",
                        wf.name,
                        if wf.unique { "unique" } else { "required relation" }
                    ));
                }
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
            let storage = storage_changes(af, wf);
            if !storage.is_empty() {
                errors.push(format!(
                    "field `{cn}.{}`: changing {} needs a table rebuild; not supported by migrate yet (add a new field, backfill it, then drop the old one)",
                    wf.name,
                    storage.join(", ")
                ));
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
    Ok([
        drops_ix,
        drops_field,
        drops_coll,
        renames,
        creates,
        adds,
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
    fn refuses_what_needs_a_rebuild_and_flags_backfills() {
        let e = plan(
            &s(BASE),
            &s("[collections.posts.fields]\ntitle = { type = \"integer\" }\nold = { type = \"text\", required = true }\n"),
        )
        .expect_err("rebuild");
        assert_eq!(e.len(), 2, "{e:#?}");
        let steps = plan(
            &s(BASE),
            &s("[collections.posts.fields]\ntitle = { type = \"text\" }\nold = { type = \"text\" }\nn = { type = \"text\", required = true }\n[[collections.posts.indexes]]\nfields = [\"old\"]\n"),
        )
        .expect("plannable");
        assert_eq!(steps[0].safety(), Safety::NeedsBackfill);
    }
}
