//! `CREATE TABLE`, `DROP TABLE`, `ALTER TABLE ... ADD COLUMN` and `CREATE [UNIQUE] INDEX`
//! on mutable tables. Each changes the catalog row and the storage table in one catalog
//! transaction, so a crash leaves either the old or the new definition: its own
//! (serialised with every other catalog writer), or — inside a client's `BEGIN` — the
//! client's, behind a savepoint, so the change commits or rolls back with it and is seen
//! only by that transaction until it commits. Both catalog databases have transactional DDL.

use datafusion::sql::sqlparser::ast::{self, AlterTableOperation};
use sqlx::AnyConnection;

use super::dml::evaluate_constant;
use super::spec::{column_spec, ColumnSpec, IndexSpec, TableSpec};
use super::store;
use super::types::Stored;
use crate::catalog::MutableTableRecord;
use crate::error::{Error, ObjectKind, Result};
use crate::context::EngineContext;
use super::MutableState;
use crate::tenant::TenantScope;

/// A definition change on mutable tables.
#[derive(Debug)]
pub enum Ddl<'a> {
    /// `CREATE TABLE mutable.public.NAME (...)`
    CreateTable(&'a ast::CreateTable, String),
    /// `DROP TABLE [IF EXISTS] mutable.public.A, ...`
    Drop(Vec<String>, bool),
    /// `ALTER TABLE mutable.public.NAME ADD COLUMN ...`
    Alter(&'a ast::AlterTable, String),
    /// `CREATE [UNIQUE] INDEX ... ON mutable.public.NAME (...)`
    CreateIndex(&'a ast::CreateIndex, String),
}

/// What is worked out before the catalog is touched: checks and constant defaults, which
/// may run queries of their own (inside a transaction those need its connection).
enum Checked<'a> {
    CreateTable(&'a ast::CreateTable, &'a str, TableSpec),
    Drop(&'a [String], bool),
    Alter(&'a str, Vec<NewColumn>),
    CreateIndex(&'a ast::CreateIndex, &'a str),
}

/// One `ADD COLUMN`, with the value existing rows get.
struct NewColumn {
    column: ColumnSpec,
    fill: Option<Stored>,
    if_not_exists: bool,
}

/// Run `ddl` in the session's open transaction if there is one, else in its own.
pub(crate) async fn run(ctx: &dyn EngineContext, tables: &MutableState, scope: TenantScope, ddl: &Ddl<'_>) -> Result<()> {
    let checked = check(ctx, scope, ddl).await?;
    let catalog = ctx.catalog();
    let Some(txn) = ctx.open_transaction() else {
        let mut tx = catalog.begin_serialized().await?;
        apply(ctx, scope, &checked, &mut tx).await?;
        tx.commit().await.map_err(catalog_err(ctx))?;
        return ctx.sync_catalog().await;
    };
    {
        let mut conn = txn.connection().await?;
        savepoint(&mut conn, "SAVEPOINT jammi_statement").await?;
        // The writer lock is held until the transaction ends, as a DDL transaction of its own
        // would hold it; taken behind the savepoint, so a lock timeout fails this statement
        // alone and not the client's whole transaction.
        let applied = match catalog.serialize_in(&mut conn).await {
            Ok(()) => apply(ctx, scope, &checked, &mut conn).await,
            Err(e) => Err(e),
        };
        match applied {
            Ok(()) => savepoint(&mut conn, "RELEASE SAVEPOINT jammi_statement").await?,
            Err(e) => {
                savepoint(&mut conn, "ROLLBACK TO SAVEPOINT jammi_statement").await?;
                return Err(e);
            }
        }
    }
    tables.reload_in(&txn).await
}

async fn savepoint(conn: &mut AnyConnection, sql: &str) -> Result<()> {
    sqlx::query(sql).execute(conn).await.map(|_| ()).map_err(|e| Error::from_sqlx("the catalog database", &e))
}

async fn check<'a>(ctx: &dyn EngineContext, scope: TenantScope, ddl: &'a Ddl<'_>) -> Result<Checked<'a>> {
    Ok(match ddl {
        Ddl::CreateTable(create, name) => Checked::CreateTable(create, name, check_create(ctx, scope, create, name).await?),
        Ddl::Drop(names, if_exists) => Checked::Drop(names, *if_exists),
        Ddl::Alter(alter, name) => Checked::Alter(name, check_alter(ctx, scope, alter, name).await?),
        Ddl::CreateIndex(create, name) => Checked::CreateIndex(create, name),
    })
}

async fn apply(ctx: &dyn EngineContext, scope: TenantScope, checked: &Checked<'_>, conn: &mut AnyConnection) -> Result<()> {
    match checked {
        Checked::CreateTable(create, name, spec) => create_table(ctx, scope, create, name, spec, conn).await,
        Checked::Drop(names, if_exists) => drop_tables(ctx, scope, names, *if_exists, conn).await,
        Checked::Alter(name, columns) => alter_table(ctx, scope, name, columns, conn).await,
        Checked::CreateIndex(create, name) => create_index(ctx, scope, create, name, conn).await,
    }
}

fn check_name(name: &str) -> Result<()> {
    // An ephemeral session's table, an evidence channel's storage: the user's part is
    // what is checked.
    let name = crate::evidence::channel_of(name).unwrap_or(crate::ephemeral::names::user_name(name));
    let ok = !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName { name: name.to_string(), message: "mutable table names use letters, digits and '_' (not first), at most 63 characters".into() })
    }
}

fn catalog_err(ctx: &dyn EngineContext) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| ctx.catalog().error(e)
}

/// `CREATE TABLE mutable.public.NAME (...)`: the definition, checked.
async fn check_create(ctx: &dyn EngineContext, scope: TenantScope, create: &ast::CreateTable, name: &str) -> Result<TableSpec> {
    check_name(name)?;
    let display = format!("mutable.public.{name}");
    if create.query.is_some() {
        return Err(Error::unsupported(format!("CREATE TABLE {display} AS SELECT is not supported; CREATE TABLE with columns, then INSERT ... SELECT")));
    }
    let spec = TableSpec::from_create(&display, create)?;
    // Defaults are checked now, so a bad one fails the CREATE rather than a later INSERT.
    for c in &spec.columns {
        if let Some(default) = &c.default {
            evaluate_constant(ctx, scope, default, c.ty, &c.name).await?;
        }
    }
    Ok(spec)
}

async fn create_table(ctx: &dyn EngineContext, scope: TenantScope, create: &ast::CreateTable, name: &str, spec: &TableSpec, conn: &mut AnyConnection) -> Result<()> {
    let catalog = ctx.catalog();
    // Names are per owner: another tenant's table of this name does not matter here.
    if catalog.mutable_tables().named_in(conn, name).await?.iter().any(|r| r.owner == scope.owner()) {
        if create.if_not_exists {
            return Ok(());
        }
        return Err(Error::AlreadyExists { kind: ObjectKind::MutableTable, name: name.to_string(), scope: scope.describe() });
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let storage = format!("jammi_m_{}", &id[..16]);
    for sql in store::create_table_sql(catalog.backend().kind(), &storage, spec) {
        sqlx::query(&sql).execute(&mut *conn).await.map_err(catalog_err(ctx))?;
    }
    let spec_json = serde_json::to_string(spec).map_err(Error::internal)?;
    let record = MutableTableRecord { id, owner: scope.owner(), name: name.to_string(), storage, spec: spec_json, created_at: 0 };
    catalog.mutable_tables().insert_in(conn, &record).await?;
    // An evidence channel is registered with its storage, in this transaction.
    if let Some(channel) = crate::evidence::channel_of(name) {
        crate::evidence::register_in(catalog, conn, scope.owner(), channel, spec).await?;
    }
    Ok(())
}

/// `DROP TABLE [IF EXISTS] mutable.public.A, ...`: all or nothing.
async fn drop_tables(ctx: &dyn EngineContext, scope: TenantScope, names: &[String], if_exists: bool, conn: &mut AnyConnection) -> Result<()> {
    let catalog = ctx.catalog();
    for name in names {
        match table_in(ctx, scope, conn, name).await? {
            Some(record) => {
                check_owner(scope, &record)?;
                drop_record(catalog, conn, &record).await?;
            }
            None if if_exists => {}
            None => return Err(Error::Unknown { kind: ObjectKind::MutableTable, name: name.to_string(), scope: scope.describe() }),
        }
    }
    Ok(())
}

/// Drop `record`'s storage table, its full-text index and its catalog row inside the
/// transaction open on `conn`.
pub(crate) async fn drop_record(catalog: &crate::catalog::Catalog, conn: &mut AnyConnection, record: &MutableTableRecord) -> Result<()> {
    sqlx::query(&format!("DROP TABLE {}", crate::names::quote_ident(&record.storage))).execute(&mut *conn).await.map_err(|e| catalog.error(e))?;
    super::fulltext::drop(conn, &record.storage).await?;
    catalog.mutable_tables().delete_in(conn, &record.id).await
}

/// The table `scope` resolves `name` to, inside the transaction open on `conn`.
async fn table_in(ctx: &dyn EngineContext, scope: TenantScope, conn: &mut AnyConnection, name: &str) -> Result<Option<MutableTableRecord>> {
    let candidates = ctx.catalog().mutable_tables().named_in(conn, name).await?;
    Ok(crate::tenant::pick_scoped(scope, candidates, |r| r.owner))
}

/// Whether `scope` may change or drop `record` (the rule of [`crate::tenant::may_change`]).
fn check_owner(scope: TenantScope, record: &MutableTableRecord) -> Result<()> {
    if crate::tenant::may_change(scope, record.owner) {
        Ok(())
    } else {
        Err(Error::PermissionDenied { message: format!(
            "mutable.public.{} was created {}; only its creator (or the admin scope) may change or drop it",
            record.name,
            record.owner.map(|t| format!("by tenant {t}")).unwrap_or_else(|| "by the operator (shared)".into())
        ) })
    }
}

/// Read a table's definition inside the transaction open on `conn`, checking `scope` may
/// change it.
async fn spec_in(ctx: &dyn EngineContext, scope: TenantScope, conn: &mut AnyConnection, name: &str) -> Result<(MutableTableRecord, TableSpec)> {
    let record = table_in(ctx, scope, conn, name)
        .await?
        .ok_or_else(|| Error::Unknown { kind: ObjectKind::MutableTable, name: name.to_string(), scope: scope.describe() })?;
    check_owner(scope, &record)?;
    let spec = serde_json::from_str(&record.spec).map_err(|e| Error::Catalog { backend: "catalog".into(), message: format!("mutable.public.{name}: unreadable definition: {e}") })?;
    Ok((record, spec))
}

/// `ALTER TABLE mutable.public.NAME ADD COLUMN c type [NOT NULL] [DEFAULT x]`: the new
/// columns, checked, with the value existing rows get.
async fn check_alter(ctx: &dyn EngineContext, scope: TenantScope, alter: &ast::AlterTable, name: &str) -> Result<Vec<NewColumn>> {
    let display = format!("mutable.public.{name}");
    let mut columns = Vec::with_capacity(alter.operations.len());
    for operation in &alter.operations {
        let AlterTableOperation::AddColumn { column_def, if_not_exists, .. } = operation else {
            return Err(Error::unsupported(format!("ALTER TABLE {display}: only ADD COLUMN is supported, not '{operation}'")));
        };
        let mut extra = TableSpec { columns: vec![], primary_key: vec![], indexes: vec![] };
        let column = column_spec(&display, column_def, &mut extra)?;
        if !extra.primary_key.is_empty() || !extra.indexes.is_empty() {
            return Err(Error::unsupported(format!("ALTER TABLE {display}: a new column cannot be a key; add it, then CREATE UNIQUE INDEX")));
        }
        if column.name.eq_ignore_ascii_case(super::spec::TENANT_COLUMN) {
            return Err(Error::InvalidName { name: column.name.clone(), message: format!("ALTER TABLE {display}: the column name is reserved for tenancy") });
        }
        let fill = match &column.default {
            Some(default) => Some(evaluate_constant(ctx, scope, default, column.ty, &column.name).await?),
            None if !column.nullable => {
                return Err(Error::invalid(column.name.clone(), format!(
                    "ALTER TABLE {display}: new NOT NULL column '{}' needs a DEFAULT for the existing rows",
                    column.name
                )))
            }
            None => None,
        };
        columns.push(NewColumn { column, fill, if_not_exists: *if_not_exists });
    }
    Ok(columns)
}

async fn alter_table(ctx: &dyn EngineContext, scope: TenantScope, name: &str, columns: &[NewColumn], conn: &mut AnyConnection) -> Result<()> {
    let display = format!("mutable.public.{name}");
    let catalog = ctx.catalog();
    let (record, mut spec) = spec_in(ctx, scope, conn, name).await?;
    for NewColumn { column, fill, if_not_exists } in columns {
        if spec.column(&column.name).is_some() {
            if *if_not_exists {
                continue;
            }
            return Err(Error::invalid(column.name.clone(), format!("ALTER TABLE {display}: column '{}' already exists", column.name)));
        }
        let mut sql = store::add_column_sql(catalog.backend().kind(), &record.storage, column, fill.as_ref());
        if !column.nullable {
            sql.push_str(" NOT NULL");
        }
        sqlx::query(&sql).execute(&mut *conn).await.map_err(catalog_err(ctx))?;
        spec.columns.push(column.clone());
    }
    let spec_json = serde_json::to_string(&spec).map_err(Error::internal)?;
    catalog.mutable_tables().update_spec_in(conn, &record.id, &spec_json).await
}

/// `CREATE [UNIQUE] INDEX [name] ON mutable.public.NAME (a, b)`.
async fn create_index(ctx: &dyn EngineContext, scope: TenantScope, create: &ast::CreateIndex, name: &str, conn: &mut AnyConnection) -> Result<()> {
    let display = format!("mutable.public.{name}");
    let catalog = ctx.catalog();
    let (record, mut spec) = spec_in(ctx, scope, conn, name).await?;
    let mut columns = Vec::new();
    for c in &create.columns {
        match &c.column.expr {
            ast::Expr::Identifier(id) if spec.column(&id.value).is_some() => columns.push(id.value.clone()),
            other => return Err(Error::invalid(other.to_string(), format!("CREATE INDEX on {display}: '{other}' is not a column of the table"))),
        }
    }
    let index_name = match &create.name {
        Some(n) => n.0.last().and_then(|p| p.as_ident()).map(|i| i.value.clone()).unwrap_or_default(),
        None => format!("{name}_{}", columns.join("_")),
    };
    check_name(&index_name)?;
    if spec.indexes.iter().any(|i| i.name == index_name) {
        if create.if_not_exists {
            return Ok(());
        }
        return Err(Error::invalid(index_name.clone(), format!("CREATE INDEX on {display}: an index named '{index_name}' already exists")));
    }
    if let Some(ast::IndexType::Custom(method)) = &create.using {
        if method.value.eq_ignore_ascii_case(super::fulltext::METHOD) {
            let index = super::fulltext::plan(&display, &spec, create, index_name, columns)?;
            super::fulltext::create(conn, catalog.backend().kind(), &record.storage, &spec, &index).await?;
            spec.indexes.push(index);
            let spec_json = serde_json::to_string(&spec).map_err(Error::internal)?;
            return catalog.mutable_tables().update_spec_in(conn, &record.id, &spec_json).await;
        }
    }
    if let Some(method) = &create.using {
        return Err(Error::unsupported(format!("CREATE INDEX on {display} USING {method}: the index methods are the default (btree) and fulltext")));
    }
    let sql = store::create_index_sql(&record.storage, &index_name, &columns, create.unique);
    if let Err(e) = sqlx::query(&sql).execute(&mut *conn).await {
        return Err(match store::write_error(e, &record.storage, &spec) {
            store::WriteError::Duplicate(_) => Error::UniqueViolation { table: display.to_string(), message: format!(
                "CREATE UNIQUE INDEX on {display} ({}): existing rows already repeat a value",
                columns.join(", ")
            ) },
            store::WriteError::Other(e) => e,
        });
    }
    spec.indexes.push(IndexSpec { name: index_name, columns, unique: create.unique, fulltext: None });
    let spec_json = serde_json::to_string(&spec).map_err(Error::internal)?;
    catalog.mutable_tables().update_spec_in(conn, &record.id, &spec_json).await
}
