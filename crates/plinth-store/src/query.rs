//! Compiles typed filters, sort orders and cursors into SQL conditions.
//! Every literal is a bound parameter; identifiers come from the schema.
//!
//! The semantics are those of `plinth_domain::filter::Filter::matches` and
//! `Sort::cmp_keys` (nulls smallest); the property tests check the SQL
//! against them.

use sea_query::{Alias, Condition, Expr, ExprTrait, LikeExpr, Order, SelectStatement};

use plinth_domain::filter::{CmpOp, Filter};
use plinth_domain::sort::Sort;
use plinth_domain::{FieldType, Value};

use crate::ddl::Dialect;

/// A list request, typed and checked by the caller.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub sort: Sort,
    /// Sort-key values of the last row of the previous page.
    pub after: Option<Vec<Value>>,
    pub limit: u32,
    /// Also count every record matching the filter (costly on big tables).
    pub total: bool,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    pub records: Vec<plinth_domain::Record>,
    /// Whether records follow this page.
    pub more: bool,
    pub total: Option<u64>,
}

fn col(name: &str) -> Expr {
    Expr::col(Alias::new(name))
}

/// The conditions every statement on a collection carries for one request:
/// its tenant (tenant-scoped collections) and its permission rule's filter.
pub(crate) struct Scope {
    pub(crate) cond: Condition,
    /// The tenant new records get and relation targets must belong to.
    pub(crate) tenant: Option<String>,
}

/// The one place the tenant condition is made: a tenant-scoped collection
/// without a tenant in `access` is refused, not queried unscoped.
pub(crate) fn scope(
    c: &plinth_domain::Collection,
    access: &crate::Access,
    dialect: Dialect,
) -> crate::Result<Scope> {
    let mut cond = Condition::all();
    let mut tenant = None;
    if c.tenant_scoped && !access.operator {
        let Some(t) = access.tenant.as_deref() else {
            return Err(crate::StoreError::TenantRequired(c.name.clone()));
        };
        cond = cond.add(col(crate::ddl::TENANT_COLUMN).eq(t));
        tenant = Some(t.to_owned());
    }
    if let Some(f) = &access.filter {
        cond = cond.add(filter_condition(f, dialect));
    }
    Ok(Scope { cond, tenant })
}

/// Does the tenant a new record would belong to exist? (Checked before the
/// insert, in its transaction, so a made-up tenant id is a clear error, not a
/// foreign-key failure.)
pub(crate) fn tenant_probe(tenant: &str) -> SelectStatement {
    sea_query::Query::select()
        .expr(Expr::val(1i64))
        .from(Alias::new(crate::identity::TENANTS_TABLE))
        .and_where(col("id").eq(tenant))
        .to_owned()
}

/// The tenant condition of a relation target: a record of a tenant-scoped
/// collection may only point at records of its own tenant, and at users who
/// are members of that tenant (so a relation cannot probe for, or point at,
/// accounts outside it).
pub(crate) fn target_scope(
    schema: &plinth_domain::Schema,
    source: &plinth_domain::Collection,
    target: &str,
    tenant: Option<&str>,
) -> Option<Condition> {
    if target == plinth_domain::schema::USERS {
        if !source.tenant_scoped {
            return None;
        }
        let tn = tenant?;
        let members = sea_query::Query::select()
            .column(Alias::new("user_id"))
            .from(Alias::new(crate::identity::MEMBERS))
            .and_where(col("tenant_id").eq(tn))
            .to_owned();
        return Some(Condition::all().add(col("id").in_subquery(members)));
    }
    let t = schema.collection(target)?;
    if !t.tenant_scoped {
        return None;
    }
    // No tenant (operator access): a tenant-scoped target cannot be checked
    // against one, so nothing matches rather than everything.
    Some(match tenant {
        Some(tn) => Condition::all().add(col(crate::ddl::TENANT_COLUMN).eq(tn)),
        None => Condition::all().add(Expr::val(1i64).eq(0i64)),
    })
}

/// `current` with `changes` applied (what an update tries to store).
pub(crate) fn merged(
    current: &plinth_domain::Record,
    changes: &[(String, Value)],
) -> plinth_domain::Record {
    let mut r = current.clone();
    for (name, v) in changes {
        if let Some(slot) = r.fields.iter_mut().find(|(n, _)| n == name) {
            slot.1 = v.clone();
        }
    }
    r
}

/// `INSERT` of a new record (system fields, then every field in schema order).
pub(crate) fn insert_record(
    c: &plinth_domain::Collection,
    r: &plinth_domain::Record,
    tenant: Option<&str>,
    dialect: Dialect,
) -> crate::Result<sea_query::InsertStatement> {
    let mut q = sea_query::Query::insert();
    q.into_table(Alias::new(&c.name)).columns(
        ["id", "created_at", "updated_at", "version"]
            .map(Alias::new)
            .into_iter()
            .chain(c.fields.iter().map(|f| Alias::new(&f.name)))
            .chain(
                c.tenant_scoped
                    .then(|| Alias::new(crate::ddl::TENANT_COLUMN)),
            ),
    );
    let ts = |t: &str| bind_as(&Value::Text(t.to_owned()), FieldType::Datetime, dialect);
    let mut exprs: Vec<Expr> = vec![
        Expr::val(r.id.as_str()),
        ts(&r.created_at),
        ts(&r.updated_at),
        Expr::val(r.version),
    ];
    exprs.extend(
        c.fields
            .iter()
            .zip(&r.fields)
            .map(|(f, (_, v))| bind_as(v, f.ty, dialect)),
    );
    if c.tenant_scoped {
        let t = tenant.ok_or_else(|| crate::StoreError::TenantRequired(c.name.clone()))?;
        exprs.push(Expr::val(t));
    }
    q.values(exprs)
        .map_err(|e| crate::StoreError::Internal(e.to_string()))?;
    Ok(q)
}

/// `UPDATE` of `changes` on record `id`, bumping `version` and `updated_at`;
/// with `expected_version`, only while the record is at that version.
pub(crate) fn update_record(
    c: &plinth_domain::Collection,
    scope: &Scope,
    id: &str,
    changes: &[(String, Value)],
    expected_version: Option<i64>,
    dialect: Dialect,
) -> crate::Result<sea_query::UpdateStatement> {
    let now = Value::Text(plinth_domain::value::now_timestamp());
    let mut q = sea_query::Query::update();
    q.table(Alias::new(&c.name))
        .value(
            Alias::new("updated_at"),
            bind_as(&now, FieldType::Datetime, dialect),
        )
        .value(Alias::new("version"), col("version").add(1i64));
    for (name, v) in changes {
        let field = c
            .field(name)
            .ok_or_else(|| crate::StoreError::Internal(format!("unknown field `{name}`")))?;
        q.value(Alias::new(name), bind_as(v, field.ty, dialect));
    }
    q.and_where(col("id").eq(id));
    q.cond_where(scope.cond.clone());
    if let Some(v) = expected_version {
        q.and_where(col("version").eq(v));
    }
    Ok(q)
}

/// `DELETE` of record `id`; with `expected_version`, only at that version.
pub(crate) fn delete_record(
    c: &plinth_domain::Collection,
    scope: &Scope,
    id: &str,
    expected_version: Option<i64>,
) -> sea_query::DeleteStatement {
    let mut q = sea_query::Query::delete();
    q.from_table(Alias::new(&c.name))
        .and_where(col("id").eq(id))
        .cond_where(scope.cond.clone());
    if let Some(v) = expected_version {
        q.and_where(col("version").eq(v));
    }
    q
}

/// Before deleting record `id` of `target`: one probe per relation field of
/// any collection pointing at `target`, asking whether a record still refers
/// to it, so the conflict can name who (the foreign key would only refuse).
pub(crate) fn reference_probes<'a>(
    schema: &'a plinth_domain::Schema,
    target: &'a str,
    id: &'a str,
) -> impl Iterator<Item = (&'a str, &'a str, SelectStatement)> + 'a {
    schema.collections.iter().flat_map(move |other| {
        other
            .relations()
            .filter(move |(_, t)| *t == target)
            .map(move |(f, _)| {
                let mut q = sea_query::Query::select();
                q.expr(Expr::val(1i64))
                    .from(Alias::new(&other.name))
                    .and_where(col(&f.name).eq(id))
                    .limit(1);
                (other.name.as_str(), f.name.as_str(), q)
            })
    })
}

/// After a unique violation: one probe per unique field or unique index of
/// `c` asking whether another record holds `r`'s values. Running them all
/// names every violated constraint, in schema order, the same on every
/// database (each database reports only the first it checks).
pub(crate) fn unique_probes(
    c: &plinth_domain::Collection,
    r: &plinth_domain::Record,
    tenant: Option<&str>,
    dialect: Dialect,
) -> Vec<(Vec<String>, SelectStatement)> {
    use plinth_domain::filter::{field_type, record_value};
    let mut groups: Vec<Vec<String>> = c
        .fields
        .iter()
        .filter(|f| f.unique)
        .map(|f| vec![f.name.clone()])
        .collect();
    groups.extend(
        c.indexes
            .iter()
            .filter(|ix| ix.unique)
            .map(|ix| ix.fields.clone()),
    );
    let mut out = Vec::new();
    for fields in groups {
        let values: Vec<Value> = fields.iter().map(|f| record_value(r, f)).collect();
        // Nulls never collide in a unique constraint.
        if values.iter().any(Value::is_null) {
            continue;
        }
        let mut q = sea_query::Query::select();
        q.expr(Expr::val(1i64)).from(Alias::new(&c.name));
        for (f, v) in fields.iter().zip(&values) {
            let ty = field_type(c, f).unwrap_or(FieldType::Text);
            q.and_where(col(f).eq(bind_as(v, ty, dialect)));
        }
        if c.tenant_scoped
            && let Some(t) = tenant
        {
            // Unique within the tenant (the constraint includes tenant_id).
            q.and_where(col(crate::ddl::TENANT_COLUMN).eq(t));
        }
        q.and_where(col("id").ne(r.id.as_str())).limit(1);
        out.push((fields, q));
    }
    out
}

/// `INSERT … ON CONFLICT DO NOTHING` of a new random secret into the meta
/// table (both dialects; the caller then reads whichever value won).
pub(crate) fn insert_secret(
    meta_table: &str,
    name: &str,
) -> crate::Result<sea_query::InsertStatement> {
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh)
        .map_err(|e| crate::StoreError::Internal(format!("no randomness: {e}")))?;
    let mut q = sea_query::Query::insert();
    q.into_table(Alias::new(meta_table))
        .columns([Alias::new("key"), Alias::new("value")])
        .values([Expr::val(name), Expr::val(fresh.to_vec())])
        .map_err(|e| crate::StoreError::Internal(e.to_string()))?;
    q.on_conflict(
        sea_query::OnConflict::column(Alias::new("key"))
            .do_nothing()
            .to_owned(),
    );
    Ok(q)
}

/// A domain value as a bound parameter of a column of type `ty` (nulls are
/// typed too: PostgreSQL checks parameter types).
pub(crate) fn typed(v: &Value, ty: FieldType) -> sea_query::Value {
    use sea_query::Value as V;
    match (v, ty) {
        (Value::Null, FieldType::Integer) => V::BigInt(None),
        (Value::Null, FieldType::Number) => V::Double(None),
        (Value::Null, FieldType::Boolean) => V::Bool(None),
        (Value::Null, _) => V::String(None),
        (Value::Bool(b), _) => V::Bool(Some(*b)),
        (Value::Int(i), FieldType::Number) =>
        {
            #[allow(clippy::cast_precision_loss)]
            V::Double(Some(*i as f64))
        }
        (Value::Int(i), _) => V::BigInt(Some(*i)),
        (Value::Float(f), _) => V::Double(Some(*f)),
        (Value::Text(s) | Value::Json(s), _) => V::String(Some(s.clone())),
    }
}

/// A bound parameter for a column of type `ty`, cast where the dialect
/// stores the type natively (PostgreSQL timestamps, dates, json).
pub(crate) fn bind_as(v: &Value, ty: FieldType, dialect: Dialect) -> Expr {
    let e = Expr::val(typed(v, ty));
    match (dialect, ty) {
        (Dialect::Postgres, FieldType::Datetime) => e.cast_as(Alias::new("timestamptz")),
        (Dialect::Postgres, FieldType::Date) => e.cast_as(Alias::new("date")),
        (Dialect::Postgres, FieldType::Json) => e.cast_as(Alias::new("json")),
        _ => e,
    }
}

/// Escapes LIKE wildcards so `~` is a plain substring test. The needle is
/// folded to ASCII lower case (the column is folded the same way).
fn like_contains(needle: &str) -> LikeExpr {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    LikeExpr::new(p).escape('\\')
}

/// The SQL condition of a filter. SQL's three-valued logic is folded into two
/// values: every comparison that is false on null says `col IS NOT NULL AND …`
/// explicitly, so `NOT` of it is true on null, as in the reference semantics.
pub(crate) fn filter_condition(f: &Filter, dialect: Dialect) -> Condition {
    match f {
        Filter::Cmp {
            field,
            ty,
            op,
            value,
        } => {
            let c = col(field);
            let bind = |v: &Value| bind_as(v, *ty, dialect);
            let e = match (op, value) {
                (CmpOp::Eq, Value::Null) => c.is_null(),
                (CmpOp::Ne, Value::Null) => c.is_not_null(),
                (CmpOp::Eq, v) => c.eq(bind(v)),
                (CmpOp::Ne, v) => {
                    return Condition::any()
                        .add(col(field).ne(bind(v)))
                        .add(col(field).is_null());
                }
                (CmpOp::Gt, v) => c.gt(bind(v)),
                (CmpOp::Ge, v) => c.gte(bind(v)),
                (CmpOp::Lt, v) => c.lt(bind(v)),
                (CmpOp::Le, v) => c.lte(bind(v)),
                // SQLite's LIKE already ignores ASCII case (only ASCII);
                // PostgreSQL folds ASCII letters explicitly to match.
                (CmpOp::Contains, Value::Text(s)) => match dialect {
                    Dialect::Sqlite => c.like(like_contains(s)),
                    Dialect::Postgres => Expr::cust_with_expr(
                        "translate($1, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')",
                        col(field),
                    )
                    .like(like_contains(s)),
                },
                (CmpOp::Contains, _) => Expr::val(1i64).eq(0i64),
            };
            if value.is_null() {
                Condition::all().add(e)
            } else {
                Condition::all().add(col(field).is_not_null()).add(e)
            }
        }
        Filter::In { field, ty, values } => Condition::all()
            .add(col(field).is_not_null())
            .add(col(field).is_in(values.iter().map(|v| bind_as(v, *ty, dialect)))),
        Filter::And(a, b) => Condition::all()
            .add(filter_condition(a, dialect))
            .add(filter_condition(b, dialect)),
        Filter::Or(a, b) => Condition::any()
            .add(filter_condition(a, dialect))
            .add(filter_condition(b, dialect)),
        Filter::Not(a) => filter_condition(a, dialect).not(),
    }
}

/// Rows strictly after `after` in `sort` (nulls smallest):
/// OR over i of (k1 = v1 AND … AND k(i-1) = v(i-1) AND ki after vi).
pub(crate) fn after_condition(sort: &Sort, after: &[Value], dialect: Dialect) -> Condition {
    let mut any = Condition::any();
    for (i, key) in sort.keys.iter().enumerate() {
        let Some(v) = after.get(i) else { break };
        let mut all = Condition::all();
        for (prev, pv) in sort.keys.iter().zip(after).take(i) {
            all = all.add(if pv.is_null() {
                col(&prev.field).is_null()
            } else {
                col(&prev.field).eq(bind_as(pv, prev.ty, dialect))
            });
        }
        let step = match (key.desc, v.is_null()) {
            // Ascending after null: any non-null. After a value: greater.
            (false, true) => Some(Condition::all().add(col(&key.field).is_not_null())),
            (false, false) => {
                Some(Condition::all().add(col(&key.field).gt(bind_as(v, key.ty, dialect))))
            }
            // Descending after null: nothing smaller than null.
            (true, true) => None,
            (true, false) => Some(
                Condition::any()
                    .add(col(&key.field).lt(bind_as(v, key.ty, dialect)))
                    .add(col(&key.field).is_null()),
            ),
        };
        if let Some(step) = step {
            any = any.add(all.add(step));
        }
    }
    if any.is_empty() {
        // Nothing can follow (e.g. after the last null in descending order).
        Condition::all().add(Expr::val(1i64).eq(0i64))
    } else {
        any
    }
}

/// Applies filter, cursor, order and limit (+1, to learn whether more follow).
/// Order columns are qualified with the table: PostgreSQL would otherwise
/// resolve a name like `created_at` to the select list's formatted alias.
pub(crate) fn apply(
    q: &mut SelectStatement,
    table: &str,
    scope: &Scope,
    query: &ListQuery,
    dialect: Dialect,
) {
    q.cond_where(scope.cond.clone());
    if let Some(f) = &query.filter {
        q.cond_where(filter_condition(f, dialect));
    }
    if let Some(after) = &query.after {
        q.cond_where(after_condition(&query.sort, after, dialect));
    }
    for k in &query.sort.keys {
        let order = if k.desc { Order::Desc } else { Order::Asc };
        match dialect {
            // SQLite already sorts nulls first ascending and last descending.
            Dialect::Sqlite => {
                q.order_by((Alias::new(table), Alias::new(&k.field)), order);
            }
            Dialect::Postgres => {
                let nulls = if k.desc {
                    sea_query::NullOrdering::Last
                } else {
                    sea_query::NullOrdering::First
                };
                q.order_by_with_nulls((Alias::new(table), Alias::new(&k.field)), order, nulls);
            }
        }
    }
    q.limit(u64::from(query.limit) + 1);
}

#[cfg(test)]
mod tests {
    //! The SQL must select and order exactly what the reference semantics do.
    use std::sync::Arc;

    use proptest::prelude::*;

    use plinth_domain::filter::{CmpOp, Filter};
    use plinth_domain::sort::{Sort, SortKey};
    use plinth_domain::{FieldType, Record, Value};

    use super::ListQuery;
    use crate::SqliteConfig;
    use crate::sqlite::Sqlite;

    const SCHEMA: &str = r#"
[collections.t.fields]
s = { type = "text" }
n = { type = "integer" }
x = { type = "number" }
b = { type = "boolean" }
e = { type = "enum", values = ["a", "b", "c"] }
d = { type = "date" }
"#;

    type Row = (
        Option<String>,
        Option<i64>,
        Option<f64>,
        Option<bool>,
        Option<String>,
        Option<String>,
    );

    fn row() -> impl Strategy<Value = Row> {
        (
            proptest::option::of(
                prop::sample::select(vec!["", "a", "A", "ab", "aB%", "b_", "é", "Ée", "z\\"])
                    .prop_map(String::from),
            ),
            proptest::option::of(-3i64..3),
            proptest::option::of(prop::sample::select(vec![-1.5, 0.0, 2.25, 3.0])),
            proptest::option::of(any::<bool>()),
            proptest::option::of(prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from)),
            proptest::option::of(
                prop::sample::select(vec!["2026-01-01", "2026-01-02", "1999-12-31"])
                    .prop_map(String::from),
            ),
        )
    }

    fn value_for(ty: FieldType) -> BoxedStrategy<Value> {
        match ty {
            FieldType::Text => prop::sample::select(vec!["", "a", "b", "%", "_", "é", "\\", "ab"])
                .prop_map(|s| Value::Text(s.into()))
                .boxed(),
            FieldType::Integer => (-3i64..3).prop_map(Value::Int).boxed(),
            FieldType::Number => prop::sample::select(vec![-1.5, 0.0, 2.25, 1.0])
                .prop_map(Value::Float)
                .boxed(),
            FieldType::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
            FieldType::Enum => prop::sample::select(vec!["a", "b", "c"])
                .prop_map(|s| Value::Text(s.into()))
                .boxed(),
            _ => prop::sample::select(vec!["2026-01-01", "2026-01-02", "1999-12-31"])
                .prop_map(|s| Value::Text(s.into()))
                .boxed(),
        }
    }

    const FIELDS: [(&str, FieldType); 6] = [
        ("s", FieldType::Text),
        ("n", FieldType::Integer),
        ("x", FieldType::Number),
        ("b", FieldType::Boolean),
        ("e", FieldType::Enum),
        ("d", FieldType::Date),
    ];

    fn leaf() -> impl Strategy<Value = Filter> {
        (0..FIELDS.len(), 0..9usize).prop_flat_map(|(fi, opi)| {
            let (name, ty) = FIELDS[fi];
            let ops = [
                CmpOp::Eq,
                CmpOp::Ne,
                CmpOp::Gt,
                CmpOp::Ge,
                CmpOp::Lt,
                CmpOp::Le,
                CmpOp::Contains,
            ];
            let field = name.to_owned();
            if opi == 7 {
                prop::collection::vec(value_for(ty), 1..4)
                    .prop_map(move |values| Filter::In {
                        field: field.clone(),
                        ty,
                        values,
                    })
                    .boxed()
            } else if opi == 8 {
                any::<bool>()
                    .prop_map(move |eq| Filter::Cmp {
                        field: field.clone(),
                        ty,
                        op: if eq { CmpOp::Eq } else { CmpOp::Ne },
                        value: Value::Null,
                    })
                    .boxed()
            } else {
                let mut op = ops[opi];
                if op == CmpOp::Contains && ty != FieldType::Text {
                    op = CmpOp::Eq;
                }
                if ty == FieldType::Boolean && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                    op = CmpOp::Ne;
                }
                value_for(ty)
                    .prop_map(move |value| Filter::Cmp {
                        field: field.clone(),
                        ty,
                        op,
                        value,
                    })
                    .boxed()
            }
        })
    }

    fn filter() -> impl Strategy<Value = Filter> {
        leaf().prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|a| Filter::Not(Box::new(a))),
            ]
        })
    }

    fn sort() -> impl Strategy<Value = Sort> {
        prop::collection::vec((0..FIELDS.len(), any::<bool>()), 0..3).prop_map(|keys| {
            let mut out: Vec<SortKey> = Vec::new();
            for (fi, desc) in keys {
                let (name, ty) = FIELDS[fi];
                if out.iter().all(|k| k.field != name) {
                    out.push(SortKey {
                        field: name.into(),
                        ty,
                        desc,
                    });
                }
            }
            let desc = out.last().is_some_and(|k| k.desc);
            out.push(SortKey {
                field: "id".into(),
                ty: FieldType::Relation,
                desc,
            });
            Sort { keys: out }
        })
    }

    fn open() -> (tempfile::TempDir, Arc<Sqlite>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = plinth_domain::parse_schema(SCHEMA).expect("valid");
        let cfg = SqliteConfig {
            data_dir: dir.path().to_owned(),
            exclusive: true,
        };
        let (db, _) = Sqlite::open(&cfg, Arc::new(schema)).expect("opens");
        (dir, Arc::new(db.expect("fresh database")))
    }

    fn insert(db: &Arc<Sqlite>, rows: &[Row]) -> Vec<Record> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let opt = |v: Option<Value>| v.unwrap_or(Value::Null);
        rows.iter()
            .map(|(s, n, x, b, e, d)| {
                let writer_db = db.clone();
                let fields = vec![
                    ("s".into(), opt(s.clone().map(Value::Text))),
                    ("n".into(), opt(n.map(Value::Int))),
                    ("x".into(), opt(x.map(Value::Float))),
                    ("b".into(), opt(b.map(Value::Bool))),
                    ("e".into(), opt(e.clone().map(Value::Text))),
                    ("d".into(), opt(d.clone().map(Value::Text))),
                ];
                rt.block_on(
                    db.writer.write(move |tx| {
                        writer_db.insert(tx, "t", &crate::Access::operator(), fields)
                    }),
                )
                .expect("insert")
            })
            .collect()
    }

    /// List orders must match the indexes, which PostgreSQL only uses when the
    /// ORDER BY names the table's columns (not the formatted select aliases)
    /// and their nulls placement (indexes are NULLS FIRST).
    #[test]
    fn orders_name_table_columns_and_nulls_placement() {
        let query = ListQuery {
            filter: None,
            sort: Sort::newest_first(),
            after: None,
            limit: 20,
            total: false,
        };
        let mut q = sea_query::Query::select();
        q.column(sea_query::Alias::new("id"))
            .from(sea_query::Alias::new("t"));
        let scope = super::Scope {
            cond: sea_query::Condition::all(),
            tenant: None,
        };
        super::apply(&mut q, "t", &scope, &query, crate::ddl::Dialect::Postgres);
        let sql = q.to_string(sea_query::PostgresQueryBuilder);
        assert!(
            sql.contains(r#"ORDER BY "t"."created_at" DESC NULLS LAST, "t"."id" DESC NULLS LAST"#),
            "{sql}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn sql_matches_reference(rows in prop::collection::vec(row(), 0..25), f in filter(), s in sort(), page in 1u32..6) {
            let (_dir, db) = open();
            let records = insert(&db, &rows);
            let mut want: Vec<&Record> = records.iter().filter(|r| f.matches(r)).collect();
            want.sort_by(|a, b| s.cmp_keys(&s.key_of(a), &s.key_of(b)));
            let want: Vec<&str> = want.iter().map(|r| r.id.as_str()).collect();

            // Walk the pages with the cursor relation.
            let mut got: Vec<String> = Vec::new();
            let mut after = None;
            loop {
                let q = ListQuery { filter: Some(f.clone()), sort: s.clone(), after: after.clone(), limit: page, total: true };
                let p = db.list("t", &crate::Access::operator(), &q).expect("list");
                prop_assert_eq!(p.total, Some(want.len() as u64));
                got.extend(p.records.iter().map(|r| r.id.clone()));
                match (p.more, p.records.last()) {
                    (true, Some(last)) => after = Some(s.key_of(last)),
                    _ => break,
                }
                prop_assert!(got.len() <= want.len());
            }
            prop_assert_eq!(got, want, "filter: {:?}", f);
        }
    }

    /// The same property against PostgreSQL, when `PLINTH_TEST_DATABASE_URL`
    /// names an admin database (scripts/test sets it for the PostgreSQL run).
    #[test]
    fn postgres_sql_matches_reference() {
        use proptest::test_runner::{Config, TestRunner};
        let Some(admin) = std::env::var("PLINTH_TEST_DATABASE_URL")
            .ok()
            .filter(|v| !v.is_empty())
        else {
            eprintln!("skipped: PLINTH_TEST_DATABASE_URL is not set");
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let name = format!("plinth_prop_{}", std::process::id());
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        let store = rt.block_on(async {
            let mut admin_conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("connect to the admin database");
            for sql in [
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                format!("CREATE DATABASE {name}"),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut admin_conn)
                    .await
                    .expect("create the test database");
            }
            let schema = plinth_domain::parse_schema(SCHEMA).expect("valid");
            let config = crate::PostgresConfig {
                url: url.clone(),
                max_connections: 2,
                statement_timeout: std::time::Duration::from_secs(10),
                acquire_timeout: std::time::Duration::from_secs(10),
            };
            crate::Store::open_postgres(&config, Arc::new(schema))
                .await
                .expect("open")
                .0
                .expect("fresh database")
        });
        let pool = rt.block_on(sqlx::PgPool::connect(&url)).expect("pool");
        let mut runner = TestRunner::new(Config {
            cases: 256,
            ..Config::default()
        });
        let strategy = (
            prop::collection::vec(row(), 0..20),
            filter(),
            sort(),
            1u32..6,
        );
        let result = runner.run(&strategy, |(rows, f, s, page)| {
            rt.block_on(async {
                sqlx::query("DELETE FROM t")
                    .execute(&pool)
                    .await
                    .expect("clear");
                let opt = |v: Option<Value>| v.unwrap_or(Value::Null);
                let mut records = Vec::new();
                for (s_, n, x, b, e, d) in &rows {
                    let fields = vec![
                        ("s".into(), opt(s_.clone().map(Value::Text))),
                        ("n".into(), opt(n.map(Value::Int))),
                        ("x".into(), opt(x.map(Value::Float))),
                        ("b".into(), opt(b.map(Value::Bool))),
                        ("e".into(), opt(e.clone().map(Value::Text))),
                        ("d".into(), opt(d.clone().map(Value::Text))),
                    ];
                    let r = store.insert("t", &crate::Access::operator(), fields).await;
                    match r {
                        Ok(r) => records.push(r),
                        // NUL-free strings only; anything else is a bug.
                        Err(e) => return Err(TestCaseError::fail(format!("insert: {e}"))),
                    }
                }
                let mut want: Vec<&Record> = records.iter().filter(|r| f.matches(r)).collect();
                want.sort_by(|a, b| s.cmp_keys(&s.key_of(a), &s.key_of(b)));
                let want: Vec<String> = want.iter().map(|r| r.id.clone()).collect();
                let mut got: Vec<String> = Vec::new();
                let mut after = None;
                loop {
                    let q = ListQuery {
                        filter: Some(f.clone()),
                        sort: s.clone(),
                        after: after.clone(),
                        limit: page,
                        total: true,
                    };
                    let p = store
                        .list("t", &crate::Access::operator(), q)
                        .await
                        .map_err(|e| TestCaseError::fail(format!("list: {e}")))?;
                    prop_assert_eq!(p.total, Some(want.len() as u64));
                    got.extend(p.records.iter().map(|r| r.id.clone()));
                    match (p.more, p.records.last()) {
                        (true, Some(last)) => after = Some(s.key_of(last)),
                        _ => break,
                    }
                    prop_assert!(got.len() <= want.len());
                }
                prop_assert_eq!(got, want, "filter: {:?}", f);
                Ok(())
            })
        });
        drop(store);
        rt.block_on(pool.close());
        rt.block_on(async {
            if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await;
            }
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
