//! Sort orders (`sort=-created_at,title`) and the keyset ("after this row")
//! relation that cursor pagination is built on.
//!
//! Order is total: the record id is always the last key. Nulls sort as the
//! smallest value (first ascending, last descending) on every database.

use std::cmp::Ordering;

use crate::filter::{FilterError, compare, field_type, record_value};
use crate::schema::{Collection, FieldType};
use crate::value::{Record, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub field: String,
    pub ty: FieldType,
    pub desc: bool,
}

/// A total order: user keys, then `id` in the direction of the last user key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    pub keys: Vec<SortKey>,
}

/// Most sort keys accepted (before the implicit id).
pub const MAX_SORT_KEYS: usize = 8;

impl Sort {
    /// The default list order: newest first.
    pub fn newest_first() -> Sort {
        Sort {
            keys: vec![
                SortKey {
                    field: "created_at".into(),
                    ty: FieldType::Datetime,
                    desc: true,
                },
                SortKey {
                    field: "id".into(),
                    ty: FieldType::Relation,
                    desc: true,
                },
            ],
        }
    }

    /// Canonical text (`-created_at,-id`), used to bind cursors to their order.
    pub fn canonical(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("{}{}", if k.desc { "-" } else { "" }, k.field))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The values of the sort keys of a record (what a cursor stores).
    pub fn key_of(&self, r: &Record) -> Vec<Value> {
        self.keys
            .iter()
            .map(|k| record_value(r, &k.field))
            .collect()
    }

    /// Compares two key tuples under this order (nulls smallest).
    pub fn cmp_keys(&self, a: &[Value], b: &[Value]) -> Ordering {
        for (k, (x, y)) in self.keys.iter().zip(a.iter().zip(b)) {
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) => compare(x, y).unwrap_or(Ordering::Equal),
            };
            let o = if k.desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

/// Parses `sort` against a collection. Empty means the default order.
pub fn parse_sort(c: &Collection, src: &str) -> Result<Sort, FilterError> {
    if src.trim().is_empty() {
        return Ok(Sort::newest_first());
    }
    let mut keys: Vec<SortKey> = Vec::new();
    let mut pos = 1;
    for part in src.split(',') {
        let trimmed = part.trim();
        let (desc, name) = match trimmed.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
        };
        let err = |message: String| FilterError {
            position: pos,
            message,
        };
        if name.is_empty() {
            return Err(err(
                "empty sort key; write e.g. sort=-created_at,title".into()
            ));
        }
        let ty = field_type(c, name)
            .ok_or_else(|| err(format!("`{}` has no field `{name}`", c.name)))?;
        if ty == FieldType::Json {
            return Err(err(format!(
                "`{name}` is a json field and cannot be sorted on"
            )));
        }
        if keys.iter().any(|k| k.field == name) {
            return Err(err(format!("`{name}` appears twice in sort")));
        }
        if keys.len() == MAX_SORT_KEYS {
            return Err(err(format!("at most {MAX_SORT_KEYS} sort keys")));
        }
        keys.push(SortKey {
            field: name.to_owned(),
            ty,
            desc,
        });
        pos += part.chars().count() + 1;
    }
    if keys.last().is_none_or(|k| k.field != "id") {
        let desc = keys.last().is_some_and(|k| k.desc);
        if keys.iter().all(|k| k.field != "id") {
            keys.push(SortKey {
                field: "id".into(),
                ty: FieldType::Relation,
                desc,
            });
        }
    }
    Ok(Sort { keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posts() -> Collection {
        crate::parse_schema(
            "[collections.posts.fields]\ntitle = { type = \"text\" }\nmeta = { type = \"json\" }\n",
        )
        .expect("valid")
        .collections
        .remove(0)
    }

    #[test]
    fn parses_and_appends_id() {
        let s = parse_sort(&posts(), "-created_at,title").expect("valid");
        assert_eq!(s.canonical(), "-created_at,title,id");
        assert_eq!(
            parse_sort(&posts(), "").expect("valid").canonical(),
            "-created_at,-id"
        );
        assert_eq!(parse_sort(&posts(), "id").expect("valid").canonical(), "id");
    }

    #[test]
    fn errors() {
        let c = posts();
        let e = parse_sort(&c, "title,nope").expect_err("unknown");
        assert_eq!(e.position, 7);
        assert!(e.message.contains("no field `nope`"));
        assert!(parse_sort(&c, "meta").is_err());
        assert!(parse_sort(&c, "title,-title").is_err());
        assert!(parse_sort(&c, "title,,id").is_err());
    }

    #[test]
    fn nulls_are_smallest() {
        let s = parse_sort(&posts(), "title").expect("valid");
        let a = [Value::Null, Value::Text("b".into())];
        let b = [Value::Text("a".into()), Value::Text("a".into())];
        assert_eq!(s.cmp_keys(&a, &b), Ordering::Less);
        let d = parse_sort(&posts(), "-title").expect("valid");
        assert_eq!(d.cmp_keys(&a, &b), Ordering::Greater);
    }
}
