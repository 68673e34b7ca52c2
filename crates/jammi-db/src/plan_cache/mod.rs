//! Shared plans for SQL text: queries on database sources that differ only in their
//! constants reuse one plan, the way a prepared statement does.
//!
//! Applications often send the same query again and again with other constants written in
//! (`… WHERE id = 17`, then `… WHERE id = 42`). Parsing is cheap, but DataFusion's planning
//! of a statement costs far more than a point lookup on the remote database. So
//! [`Session::run`] first puts each query that reads only database sources into its *shape*:
//! every literal compared with a column (`col = 17`, `col BETWEEN 1 AND 9`, `'x' < col`)
//! becomes a parameter (`col = $1`). The shape is planned once per tenant scope and catalog
//! generation, as [`Session::prepare`] would plan it; when that plan is pushed down whole
//! (it can run again with new values bound into the remote statement), later queries of
//! the same shape bind their constants into it and skip planning.
//!
//! A constant is bound only where that cannot change the answer: its type must be the one
//! DataFusion inferred for the parameter, or convert to it and back unchanged (an integer
//! into an `integer` column; not `1.5` into one, nor `'2024-1-1'` into a date). Anything
//! else — a shape whose plan computes locally, a constant that does not fit, a statement
//! inside a transaction, statements with parameters of their own — is planned as usual.
//!
//! Searches written as text get the same treatment: a query that reads nothing but
//! `vector_search`, `text_search` and `hybrid_search` has every argument after the table
//! name (the query vector or text, k, filter, ef, options) turned into a parameter, so a
//! stream of searches with new vectors written into the SQL plans once, as a prepared
//! statement does. Those values are bound without a type check here: the search checks
//! each bound value itself, with the same messages as a literal.
//!
//! A search written as text goes one step further ([`lifted`]): its short text, the SQL
//! with the long vector literals taken out, names a search already run in this scope,
//! which then runs without being parsed again.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::provider_as_source;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlanBuilder;

use crate::error::Result;
use crate::prepared::{bind_parameters, parameter_types, Planned};
use crate::security::Access;
use crate::session::Session;
use crate::statement::SqlStatement;
use crate::tenant::TenantScope;

mod lifted;
mod ready;
mod shape;

pub(crate) use lifted::{learn_search_text, run_search_text};
use ready::{ReadyExec, ReadyPlan, ReadyPlanner};
use shape::{search_shape_of, shape_of, Shape};

/// Entries kept at most in each map; when full, entries of older catalog generations go
/// first, then all.
const CAPACITY: usize = 512;

/// The longest shape text shared: a longer one (a long `IN` list stays in it) is planned
/// per query, so the cache holds a few MiB at most whatever callers send.
const MAX_SHAPE_TEXT: usize = 16 * 1024;

/// Planned shapes, by tenant scope and shape text; and searches known by their short text.
#[derive(Default)]
pub(crate) struct PlanCache {
    /// `None`: the shape's plan must be made per query.
    shapes: Generational<(TenantScope, String), Option<Arc<SharedPlan>>>,
    searches: Generational<(TenantScope, Access, String), Arc<lifted::KnownSearch>>,
}

impl fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanCache").field("shapes", &self.shapes.len()).field("searches", &self.searches.len()).finish()
    }
}

/// A bounded map whose entries are each good for one catalog generation.
struct Generational<K, V> {
    entries: Mutex<HashMap<K, (i64, V)>>,
}

impl<K, V> Default for Generational<K, V> {
    fn default() -> Self {
        Generational { entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq, V: Clone> Generational<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (i64, V)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// The entry for `key` made at `generation`, if there is one.
    fn get(&self, key: &K, generation: i64) -> Option<V> {
        self.lock().get(key).filter(|(made, _)| *made == generation).map(|(_, value)| value.clone())
    }

    fn insert(&self, key: K, generation: i64, value: V) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, (made, _)| *made == generation);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (generation, value));
    }
}

/// A shape's plan, and the state its frames are made in.
struct SharedPlan {
    planned: Planned,
    /// The type DataFusion inferred for each `$n`, in order.
    parameter_types: Vec<Option<DataType>>,
    /// A session state with no planning rules and no function registry: a frame of a
    /// ready plan needs neither, and copying the full state for every query (it is copied
    /// into each frame) costs more than a point lookup's planning should. Its planner
    /// hands the ready plan back without planning it again.
    frame_state: SessionState,
}

impl SharedPlan {
    fn new(planned: Planned) -> Result<Self> {
        let parameter_types = parameter_types(&planned.logical)?;
        let frame_state = SessionStateBuilder::new()
            .with_config(planned.state.config().clone())
            .with_runtime_env(Arc::clone(planned.state.runtime_env()))
            .with_analyzer_rules(vec![])
            .with_optimizer_rules(vec![])
            .with_physical_optimizer_rules(vec![])
            .with_query_planner(Arc::new(ReadyPlanner))
            .build();
        Ok(SharedPlan { planned, parameter_types, frame_state })
    }

    /// A frame running this plan with `values` bound to its parameters.
    fn frame(&self, values: Vec<ScalarValue>) -> Result<Option<DataFrame>> {
        let Some((physical, task)) = self.planned.reusable() else { return Ok(None) };
        let physical = bind_parameters(Arc::clone(physical), &ParamValues::List(values.into_iter().map(Into::into).collect()))?;
        let ready = Arc::new(ReadyPlan { plan: Arc::new(ReadyExec::new(physical, Arc::clone(task))) });
        let plan = LogicalPlanBuilder::scan("shared_plan", provider_as_source(ready), None)?.build()?;
        Ok(Some(DataFrame::new(self.frame_state.clone(), plan)))
    }
}

/// The shape of `statement` when it has one: a query on database sources only, or of
/// search functions only.
fn shape_in(session: &Session, statement: &SqlStatement, scope: TenantScope) -> Option<Shape> {
    let sources = session.source_catalogs();
    shape_of(statement, |name| sources.resolve(scope, name).is_some_and(|c| c.reads_database())).or_else(|| search_shape_of(statement))
}

/// Run `statement` on the shared plan of its shape, when it has one (see the module
/// docs); `None` when it must be planned as usual. The catalog is synced by the caller.
pub(crate) async fn run_shared_plan(session: &Session, statement: &SqlStatement, scope: TenantScope) -> Result<Option<DataFrame>> {
    if session.open_transaction().is_some() {
        return Ok(None);
    }
    let Some(shape) = shape_in(session, statement, scope).filter(|s| s.text.len() <= MAX_SHAPE_TEXT) else {
        return Ok(None);
    };
    let generation = session.catalog_generation();
    let key = (scope, shape.text);
    let cache = &session.plan_cache().shapes;
    let shared = match cache.get(&key, generation) {
        Some(shared) => shared,
        None => {
            // A shape that fails to plan (a constant where a parameter cannot stand)
            // is simply not shared; planning the query itself reports any real error.
            let shared = match crate::prepared::plan_statement(session, &shape.statement, generation, scope, (0, 0)).await {
                // A parameter in an output column's name (`SELECT a = 5`) would rename it.
                Ok(planned) if planned.reusable().is_some() && !planned.logical.schema().fields().iter().any(|f| f.name().contains('$')) => {
                    Some(Arc::new(SharedPlan::new(planned)?))
                }
                _ => None,
            };
            cache.insert(key, generation, shared.clone());
            shared
        }
    };
    let Some(shared) = shared else { return Ok(None) };
    let values = if shape.checked_when_bound { Some(shape.values) } else { fitted_values(&shared.parameter_types, shape.values) };
    let Some(values) = values else { return Ok(None) };
    shared.frame(values)
}

/// The shape's values converted to the types inferred for their parameters, or `None`
/// when one would not convert without change.
fn fitted_values(types: &[Option<DataType>], values: Vec<ScalarValue>) -> Option<Vec<ScalarValue>> {
    if types.len() != values.len() {
        return None;
    }
    values.into_iter().zip(types).map(|(value, target)| fit(value, target.as_ref()?)).collect()
}

/// `value` as `target`, when a literal of its kind compares the same as the converted
/// value would: integers into integer or double columns, doubles into double columns,
/// strings into string columns — and only when converting back gives `value` again.
fn fit(value: ScalarValue, target: &DataType) -> Option<ScalarValue> {
    let integer = |t: &DataType| matches!(t, DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64);
    let kind_ok = match (&value, target) {
        (ScalarValue::Int64(_), t) => integer(t) || matches!(t, DataType::Float64),
        (ScalarValue::Float64(_), t) => matches!(t, DataType::Float64),
        (ScalarValue::Utf8(_), t) => matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
        _ => false,
    };
    if !kind_ok {
        return None;
    }
    let converted = value.cast_to(target).ok()?;
    let back = converted.cast_to(&value.data_type()).ok()?;
    (back == value && !converted.is_null()).then_some(converted)
}

/// The shape of `statement`: a query (no parameters of its own) that reads tables of

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_bind_only_when_they_convert_unchanged() {
        assert_eq!(fit(ScalarValue::Int64(Some(5)), &DataType::Int32), Some(ScalarValue::Int32(Some(5))));
        assert_eq!(fit(ScalarValue::Int64(Some(5_000_000_000)), &DataType::Int32), None);
        assert_eq!(fit(ScalarValue::Float64(Some(1.5)), &DataType::Int64), None);
        assert_eq!(fit(ScalarValue::Int64(Some(3)), &DataType::Float64), Some(ScalarValue::Float64(Some(3.0))));
        assert_eq!(fit(ScalarValue::Int64(Some((1 << 53) + 1)), &DataType::Float64), None);
        assert_eq!(fit(ScalarValue::Utf8(Some("2024-01-01".into())), &DataType::Date32), None);
        assert_eq!(fit(ScalarValue::Utf8(Some("12".into())), &DataType::Int64), None);
        assert_eq!(fit(ScalarValue::Utf8(Some("a".into())), &DataType::Utf8), Some(ScalarValue::Utf8(Some("a".into()))));
    }
}
