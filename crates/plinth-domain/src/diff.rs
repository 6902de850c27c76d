//! Differences between the schema a database has applied and a schema file.
//!
//! Until planned migrations exist, any difference makes `serve` refuse to
//! start; this module names each one so the operator knows what changed.

use crate::schema::{Action, Bound, Collection, DefaultValue, Field, Schema};
use crate::value::Value;

/// Lists every difference from `applied` (in the database) to `wanted` (the file),
/// one human-readable line each, in a stable order. Empty when they match.
pub fn diff_schemas(applied: &Schema, wanted: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    if applied.roles != wanted.roles {
        let names = |s: &Schema| {
            s.roles
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(format!(
            "custom roles changed from [{}] to [{}]",
            names(applied),
            names(wanted)
        ));
    }
    for c in &wanted.collections {
        if applied.collection(&c.name).is_none() {
            out.push(format!("collection `{}` is new in the schema file", c.name));
        }
    }
    for c in &applied.collections {
        match wanted.collection(&c.name) {
            None => out.push(format!(
                "collection `{}` exists in the database but not in the schema file",
                c.name
            )),
            Some(w) => diff_collection(c, w, &mut out),
        }
    }
    out
}

fn diff_collection(a: &Collection, w: &Collection, out: &mut Vec<String>) {
    let c = &a.name;
    for f in &w.fields {
        if a.field(&f.name).is_none() {
            out.push(format!("field `{c}.{}` is new in the schema file", f.name));
        }
    }
    for f in &a.fields {
        match w.field(&f.name) {
            None => out.push(format!(
                "field `{c}.{}` exists in the database but not in the schema file",
                f.name
            )),
            Some(wf) => diff_field(c, f, wf, out),
        }
    }
    let a_order: Vec<&str> = a.fields.iter().map(|f| f.name.as_str()).collect();
    let w_order: Vec<&str> = w.fields.iter().map(|f| f.name.as_str()).collect();
    let same_fields =
        a.fields.len() == w.fields.len() && a.fields.iter().all(|f| w.field(&f.name).is_some());
    if a_order != w_order && same_fields {
        out.push(format!("fields of `{c}` are in a different order"));
    }
    for ix in &w.indexes {
        if !a.indexes.contains(ix) {
            out.push(format!(
                "{}index on `{c}` ({}) is new in the schema file",
                if ix.unique { "unique " } else { "" },
                ix.fields.join(", ")
            ));
        }
    }
    for ix in &a.indexes {
        if !w.indexes.contains(ix) {
            out.push(format!(
                "{}index on `{c}` ({}) exists in the database but not in the schema file",
                if ix.unique { "unique " } else { "" },
                ix.fields.join(", ")
            ));
        }
    }
    if a.description != w.description {
        out.push(format!("description of collection `{c}` changed"));
    }
    if a.deprecation != w.deprecation {
        out.push(format!("deprecation of collection `{c}` changed"));
    }
    if a.tenant_scoped != w.tenant_scoped {
        out.push(format!(
            "collection `{c}`: tenant_scoped changed from {} to {}",
            a.tenant_scoped, w.tenant_scoped
        ));
    }
    for act in Action::ALL {
        if a.permissions.get(act) != w.permissions.get(act) {
            out.push(format!(
                "collection `{c}`: permission `{}` changed",
                act.as_str()
            ));
        }
    }
}

fn diff_field(c: &str, a: &Field, w: &Field, out: &mut Vec<String>) {
    let n = format!("{c}.{}", a.name);
    let mut changed = |what: &str, from: String, to: String| {
        out.push(format!("field `{n}`: {what} changed from {from} to {to}"));
    };
    if a.ty != w.ty {
        changed("type", a.ty.as_str().into(), w.ty.as_str().into());
    }
    if a.required != w.required {
        changed("required", a.required.to_string(), w.required.to_string());
    }
    if a.unique != w.unique {
        changed("unique", a.unique.to_string(), w.unique.to_string());
    }
    fn opt<T>(v: &Option<T>, show: impl Fn(&T) -> String) -> String {
        v.as_ref().map_or_else(|| "unset".to_owned(), show)
    }
    let quoted = |s: &String| format!("{s:?}");
    let default = |d: &DefaultValue| match d {
        DefaultValue::Now => "\"now\"".to_owned(),
        DefaultValue::Today => "\"today\"".to_owned(),
        DefaultValue::AuthUserId => "\"auth.user_id\"".to_owned(),
        DefaultValue::Literal(Value::Text(t)) => format!("{t:?}"),
        DefaultValue::Literal(Value::Int(i)) => i.to_string(),
        DefaultValue::Literal(Value::Float(f)) => f.to_string(),
        DefaultValue::Literal(Value::Bool(b)) => b.to_string(),
        DefaultValue::Literal(v) => format!("{v:?}"),
    };
    let bound = |b: &Bound| match b {
        Bound::Int(i) => i.to_string(),
        Bound::Float(f) => f.to_string(),
    };
    if a.default != w.default {
        changed(
            "default",
            opt(&a.default, default),
            opt(&w.default, default),
        );
    }
    if a.min != w.min {
        changed("min", opt(&a.min, bound), opt(&w.min, bound));
    }
    if a.max != w.max {
        changed("max", opt(&a.max, bound), opt(&w.max, bound));
    }
    if a.min_length != w.min_length {
        changed(
            "min_length",
            opt(&a.min_length, u32::to_string),
            opt(&w.min_length, u32::to_string),
        );
    }
    if a.max_length != w.max_length {
        changed(
            "max_length",
            opt(&a.max_length, u32::to_string),
            opt(&w.max_length, u32::to_string),
        );
    }
    if a.pattern != w.pattern {
        changed("pattern", opt(&a.pattern, quoted), opt(&w.pattern, quoted));
    }
    if a.values != w.values {
        changed(
            "values",
            format!("{:?}", a.values),
            format!("{:?}", w.values),
        );
    }
    if a.collection != w.collection {
        changed(
            "collection",
            opt(&a.collection, quoted),
            opt(&w.collection, quoted),
        );
    }
    if a.description != w.description {
        out.push(format!("field `{n}`: description changed"));
    }
    if a.deprecation != w.deprecation {
        out.push(format!("field `{n}`: deprecation changed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_schema;

    #[test]
    fn names_each_difference() {
        let a = parse_schema(
            "[collections.posts.fields]\ntitle = { type = \"text\", max_length = 10 }\nold = { type = \"text\" }\n",
        )
        .expect("valid");
        let b = parse_schema(
            "[collections.posts.fields]\ntitle = { type = \"text\", max_length = 20 }\n[collections.tags.fields]\nname = { type = \"text\" }\n",
        )
        .expect("valid");
        let d = diff_schemas(&a, &b);
        assert_eq!(
            d,
            [
                "collection `tags` is new in the schema file",
                "field `posts.title`: max_length changed from 10 to 20",
                "field `posts.old` exists in the database but not in the schema file",
            ]
        );
        assert!(diff_schemas(&a, &a).is_empty());
    }
}
