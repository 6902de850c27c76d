//! Tables and indexes for a schema. Tables are plain: one table per
//! collection, one column per field, named as in `plinth.toml`, so the data
//! stays usable with ordinary SQL tools.

use sea_query::{
    Alias, ColumnDef, Expr, ExprTrait, ForeignKey, ForeignKeyAction, Index, PostgresQueryBuilder,
    SqliteQueryBuilder, Table,
};

use plinth_domain::{Collection, Field, FieldType, Schema};

/// SQL dialects the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The column that holds a tenant-scoped record's tenant.
pub(crate) const TENANT_COLUMN: &str = "tenant_id";

/// The table behind a collection name: collections are tables of their own
/// name, except the built-in `users`, which is Plinth's account table.
pub(crate) fn table_of(collection: &str) -> &str {
    if collection == plinth_domain::schema::USERS {
        crate::identity::USERS_TABLE
    } else {
        collection
    }
}

/// The name of a relation column's supporting index.
fn fk_index_name(c: &str, f: &str) -> String {
    plinth_domain::Index {
        fields: vec![f.to_owned()],
        unique: false,
    }
    .name(c)
}

pub(crate) fn column(field: &Field, dialect: Dialect) -> ColumnDef {
    let mut col = ColumnDef::new(Alias::new(&field.name));
    match (field.ty, dialect) {
        (FieldType::Integer, _) => col.big_integer(),
        (FieldType::Number, _) => col.double(),
        (FieldType::Boolean, _) => col.boolean(),
        (FieldType::Datetime, Dialect::Postgres) => col.timestamp_with_time_zone(),
        (FieldType::Date, Dialect::Postgres) => col.date(),
        // `json` (not jsonb) keeps the document as sent, as SQLite does.
        (FieldType::Json, Dialect::Postgres) => col.json(),
        (FieldType::Json, Dialect::Sqlite) => col
            .text()
            // Spelled out for SQLite versions where json_valid(NULL) is 0.
            .check(Expr::cust(format!(
                "\"{0}\" IS NULL OR json_valid(\"{0}\")",
                field.name
            ))),
        (_, Dialect::Postgres) => col.text().extra(BYTEWISE),
        _ => col.text(),
    };
    if field.required {
        col.not_null();
    } else {
        col.null();
    }
    if field.unique {
        col.unique_key();
    }
    if field.ty == FieldType::Enum {
        let values: Vec<Expr> = field.values.iter().map(|v| Expr::val(v.as_str())).collect();
        col.check(Expr::col(Alias::new(&field.name)).is_in(values));
    }
    col
}

/// PostgreSQL text columns compare byte-wise, as SQLite's do, so filters and
/// sort orders mean the same on both databases.
const BYTEWISE: &str = "COLLATE \"C\"";

fn timestamp(name: &str, dialect: Dialect) -> ColumnDef {
    let mut c = ColumnDef::new(Alias::new(name));
    match dialect {
        Dialect::Sqlite => c.text(),
        Dialect::Postgres => c.timestamp_with_time_zone(),
    };
    c.not_null();
    c
}

fn create_table(c: &Collection, dialect: Dialect) -> String {
    let mut id = ColumnDef::new(Alias::new("id"));
    id.text().not_null().primary_key();
    if dialect == Dialect::Postgres {
        id.extra(BYTEWISE);
    }
    let mut t = Table::create();
    t.table(Alias::new(&c.name))
        .col(id)
        .col(timestamp("created_at", dialect))
        .col(timestamp("updated_at", dialect))
        .col(
            ColumnDef::new(Alias::new("version"))
                .big_integer()
                .not_null(),
        );
    if c.tenant_scoped {
        let mut tenant = ColumnDef::new(Alias::new(TENANT_COLUMN));
        tenant.text().not_null();
        if dialect == Dialect::Postgres {
            tenant.extra(BYTEWISE);
        }
        t.col(tenant);
        t.foreign_key(
            ForeignKey::create()
                .from(Alias::new(&c.name), Alias::new(TENANT_COLUMN))
                .to(Alias::new(crate::identity::TENANTS_TABLE), Alias::new("id"))
                .on_delete(ForeignKeyAction::Restrict),
        );
    }
    for f in &c.fields {
        if c.tenant_scoped && f.unique {
            // Unique within the tenant: a value another tenant uses is no
            // conflict (and a 409 must not reveal that it exists there).
            let plain = plinth_domain::Field {
                unique: false,
                ..f.clone()
            };
            t.col(column(&plain, dialect));
            t.index(
                Index::create()
                    .unique()
                    .name(format!("{}_{}_key", c.name, f.name))
                    .col(Alias::new(TENANT_COLUMN))
                    .col(Alias::new(&f.name)),
            );
        } else {
            t.col(column(f, dialect));
        }
    }
    for (f, target) in c.relations() {
        t.foreign_key(
            ForeignKey::create()
                .from(Alias::new(&c.name), Alias::new(&f.name))
                .to(Alias::new(table_of(target)), Alias::new("id"))
                .on_delete(ForeignKeyAction::Restrict),
        );
    }
    match dialect {
        Dialect::Sqlite => t.to_string(SqliteQueryBuilder),
        Dialect::Postgres => t.to_string(PostgresQueryBuilder),
    }
}

/// PostgreSQL indexes sort nulls last by default; Plinth orders nulls first
/// ascending (last descending), so its index columns say `NULLS FIRST` — else
/// no index could serve a list order and every page would sort the table.
/// The column names are the schema's checked identifiers, quoted by sea-query.
fn nulls_first(create_index: &str) -> String {
    let Some(open) = create_index.rfind(" (") else {
        return create_index.to_owned();
    };
    let (head, cols) = create_index.split_at(open + 2);
    let cols = cols.trim_end_matches(')');
    let cols: Vec<String> = cols
        .split(", ")
        .map(|c| format!("{c} NULLS FIRST"))
        .collect();
    format!("{head}{})", cols.join(", "))
}

/// The statements of one declared index (non-unique ones carry `id` last so
/// they serve the whole list order).
pub(crate) fn index_sql(c: &Collection, ix: &plinth_domain::Index, dialect: Dialect) -> String {
    let collection = c.name.as_str();
    let mut stmt = Index::create();
    stmt.name(ix.name(collection)).table(Alias::new(collection));
    if c.tenant_scoped {
        stmt.col(Alias::new(TENANT_COLUMN));
    }
    for f in &ix.fields {
        stmt.col(Alias::new(f));
    }
    if !ix.unique && !ix.fields.iter().any(|f| f == "id") {
        stmt.col(Alias::new("id"));
    }
    if ix.unique {
        stmt.unique();
    }
    render_index(&stmt, dialect)
}

fn render_index(stmt: &sea_query::IndexCreateStatement, dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => stmt.to_string(SqliteQueryBuilder),
        Dialect::Postgres => nulls_first(&stmt.to_string(PostgresQueryBuilder)),
    }
}

/// The index a relation column gets (deletes of targets look it up), unless
/// a declared index already starts with it.
pub(crate) fn relation_index_sql(c: &Collection, field: &str, dialect: Dialect) -> Option<String> {
    let covered = c
        .indexes
        .iter()
        .any(|ix| ix.fields.first().map(String::as_str) == Some(field));
    (!covered).then(|| {
        let mut stmt = Index::create();
        stmt.name(fk_index_name(&c.name, field))
            .table(Alias::new(&c.name));
        if c.tenant_scoped {
            stmt.col(Alias::new(TENANT_COLUMN));
        }
        stmt.col(Alias::new(field));
        render_index(&stmt, dialect)
    })
}

/// Every index of a collection: the list order, relations, declared ones.
pub(crate) fn collection_indexes(c: &Collection, dialect: Dialect) -> Vec<String> {
    let mut order = Index::create();
    order
        .name(format!("{}_created_at_id_idx", c.name))
        .table(Alias::new(&c.name));
    if c.tenant_scoped {
        order.col(Alias::new(TENANT_COLUMN));
    }
    order.col(Alias::new("created_at")).col(Alias::new("id"));
    let mut out = vec![render_index(&order, dialect)];
    for (f, _) in c.relations() {
        out.extend(relation_index_sql(c, &f.name, dialect));
    }
    for ix in &c.indexes {
        out.push(index_sql(c, ix, dialect));
    }
    out
}

/// The names of the indexes Plinth creates for a collection.
pub(crate) fn index_names(c: &Collection) -> Vec<String> {
    let mut out = vec![format!("{}_created_at_id_idx", c.name)];
    for (f, _) in c.relations() {
        let covered = c
            .indexes
            .iter()
            .any(|ix| ix.fields.first() == Some(&f.name));
        if !covered {
            out.push(fk_index_name(&c.name, &f.name));
        }
    }
    out.extend(c.indexes.iter().map(|ix| ix.name(&c.name)));
    out
}

/// `CREATE TABLE` and the indexes of one collection.
pub(crate) fn collection_ddl(c: &Collection, dialect: Dialect) -> Vec<String> {
    let mut out = vec![create_table(c, dialect)];
    out.extend(collection_indexes(c, dialect));
    out
}

/// Every statement that creates `schema` on an empty database, in order
/// (tables are ordered so that relation targets exist first where possible;
/// SQLite does not need that, PostgreSQL will).
pub fn schema_ddl(schema: &Schema, dialect: Dialect) -> Vec<String> {
    let mut out = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    let mut pending: Vec<&Collection> = schema.collections.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|c| {
            let ready = c.relations().all(|(_, t)| {
                t == c.name || t == plinth_domain::schema::USERS || done.contains(&t)
            });
            if ready {
                out.push(create_table(c, dialect));
                done.push(&c.name);
            }
            !ready
        });
        if pending.len() == before {
            // A relation cycle: emit the rest anyway (SQLite accepts forward references).
            for c in pending.drain(..) {
                out.push(create_table(c, dialect));
            }
        }
    }
    for c in &schema.collections {
        out.extend(collection_indexes(c, dialect));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tables_named_after_the_schema() {
        let schema = plinth_domain::parse_schema(
            r#"
[collections.posts.fields]
title = { type = "text", required = true }
status = { type = "enum", values = ["draft", "it's"] }
[collections.comments.fields]
post = { type = "relation", collection = "posts", required = true }
"#,
        )
        .expect("valid");
        let ddl = schema_ddl(&schema, Dialect::Sqlite);
        let posts = ddl
            .iter()
            .position(|s| s.starts_with("CREATE TABLE \"posts\""));
        let comments = ddl
            .iter()
            .position(|s| s.starts_with("CREATE TABLE \"comments\""));
        assert!(posts < comments, "{ddl:#?}");
        let all = ddl.join("\n");
        assert!(all.contains("\"title\" text NOT NULL"), "{all}");
        assert!(all.contains("'it''s'"), "enum literals are quoted: {all}");
        assert!(
            all.contains("REFERENCES \"posts\" (\"id\") ON DELETE RESTRICT"),
            "{all}"
        );
        assert!(all.contains("CREATE INDEX \"comments_post_idx\""), "{all}");
        let pg = schema_ddl(&schema, Dialect::Postgres).join("\n");
        assert!(
            pg.contains("ON \"posts\" (\"created_at\" NULLS FIRST, \"id\" NULLS FIRST)"),
            "{pg}"
        );
    }
}
