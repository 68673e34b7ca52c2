//! Tenancy: no query shape lets a tenant read another tenant's rows or sources.

use std::collections::BTreeSet;

use jammi_db::source::SourceSpec;
use jammi_db::tenant::with_tenant;
use jammi_db::{Session, TenantId};

use crate::support::*;

struct Fixture {
    session: Session,
    a: TenantId,
    b: TenantId,
    data: Vec<Item>,
    _dir: tempfile::TempDir,
}

/// A shared, tenant-aware source `shop.public.items` (rows of A, B and shared rows) and a
/// second one, `meta.public.items`, with the same rows in CSV to join against.
async fn fixture() -> Fixture {
    let (session, dir) = temp_session().await;
    let (a, b) = (TenantId::random(), TenantId::random());
    let data = items(300, &[a.to_string(), b.to_string()]);
    let parquet = write_items(dir.path(), "items.parquet", &data);
    let csv = write_items(dir.path(), "meta/items.csv", &data);
    session
        .sources()
        .add(SourceSpec::new("shop", parquet.display().to_string()).with_tenant_column("tenant"))
        .await
        .unwrap();
    session
        .sources()
        .add(SourceSpec::new("meta", csv.display().to_string()).with_tenant_column("tenant"))
        .await
        .unwrap();
    Fixture { session, a, b, data, _dir: dir }
}

fn visible_ids(data: &[Item], tenant: Option<TenantId>) -> BTreeSet<i64> {
    data.iter()
        .filter(|i| i.tenant.is_none() || i.tenant.as_deref() == tenant.map(|t| t.to_string()).as_deref())
        .map(|i| i.id)
        .collect()
}

async fn ids(session: &Session, sql: &str) -> BTreeSet<i64> {
    rows(session, sql).await.into_iter().map(|r| r[0].parse().unwrap()).collect()
}

const SHAPES: &[(&str, &str)] = &[
    ("plain", "SELECT id FROM shop.public.items"),
    ("projection+limit", "SELECT id FROM shop.public.items ORDER BY id LIMIT 1000"),
    ("join", "SELECT s.id FROM shop.public.items s JOIN meta.public.items m ON s.id = m.id"),
    (
        "left join keeps only visible right rows",
        "SELECT m.id FROM (SELECT 1 AS one) x LEFT JOIN meta.public.items m ON true WHERE m.id IS NOT NULL",
    ),
    ("in-subquery", "SELECT id FROM meta.public.items WHERE id IN (SELECT id FROM shop.public.items)"),
    (
        "exists",
        "SELECT id FROM (SELECT 1 AS id UNION ALL SELECT id FROM meta.public.items) t \
         WHERE EXISTS (SELECT 1 FROM shop.public.items s WHERE s.id = t.id)",
    ),
    ("scalar subquery", "SELECT (SELECT max(id) FROM shop.public.items WHERE id = x.id) FROM shop.public.items x"),
    ("cte", "WITH mine AS (SELECT * FROM shop.public.items) SELECT id FROM mine"),
    ("union", "SELECT id FROM shop.public.items UNION SELECT id FROM meta.public.items"),
    ("union all", "SELECT id FROM shop.public.items WHERE id < 100 UNION ALL SELECT id FROM meta.public.items WHERE id >= 100"),
    ("filter on tenant column", "SELECT id FROM shop.public.items WHERE tenant IS NOT NULL OR tenant IS NULL"),
];

#[tokio::test]
async fn every_query_shape_is_confined_to_the_tenant() {
    let f = fixture().await;
    for tenant in [Some(f.a), Some(f.b), None] {
        let session = f.session.with_tenant(tenant);
        let expected = visible_ids(&f.data, tenant);
        for (shape, sql) in SHAPES {
            let got = ids(&session, sql).await;
            assert_eq!(got, expected, "{shape} as {tenant:?}");
        }
    }
}

#[tokio::test]
async fn views_are_filtered_by_the_querying_tenant_and_private_to_their_creator() {
    let f = fixture().await;
    let as_a = f.session.with_tenant(Some(f.a));
    let as_b = f.session.with_tenant(Some(f.b));
    as_a.sql("CREATE VIEW v AS SELECT id FROM shop.public.items").await.unwrap();
    assert_eq!(ids(&as_a, "SELECT id FROM v").await, visible_ids(&f.data, Some(f.a)));
    let err = sql_error(&as_b, "SELECT id FROM v").await;
    assert!(err.contains("v"), "{err}");
    // A view created while unbound is filtered for whoever reads it.
    f.session.sql("CREATE VIEW shared_v AS SELECT id FROM shop.public.items").await.unwrap();
    assert_eq!(ids(&f.session, "SELECT id FROM shared_v").await, visible_ids(&f.data, None));
}

#[tokio::test]
async fn admin_scope_sees_everything_only_inside_the_closure() {
    let f = fixture().await;
    let all: BTreeSet<i64> = f.data.iter().map(|i| i.id).collect();
    let seen = f.session.admin(|s| async move { ids(&s, "SELECT id FROM shop.public.items").await }).await;
    assert_eq!(seen, all);
    assert_eq!(ids(&f.session, "SELECT id FROM shop.public.items").await, visible_ids(&f.data, None));
    let err = sql_error(&f.session, "SET jammi.tenant = 'admin'").await;
    assert!(err.contains("not allowed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_with_different_tenants_never_mix() {
    let f = fixture().await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let session = f.session.clone();
        let tenant = if i % 2 == 0 { f.a } else { f.b };
        let expected = visible_ids(&f.data, Some(tenant));
        tasks.push(tokio::spawn(with_tenant(tenant, async move {
            for _ in 0..3 {
                let got = ids(&session, "SELECT s.id FROM shop.public.items s JOIN meta.public.items m USING (id)").await;
                assert_eq!(got, expected);
                tokio::task::yield_now().await;
            }
        })));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn tenants_own_sources_by_name_without_seeing_each_other() {
    let (session, dir) = temp_session().await;
    let (a, b, c) = (TenantId::random(), TenantId::random(), TenantId::random());
    let fa = write_items(dir.path(), "a/sales.csv", &items(3, &[]));
    let fb = write_items(dir.path(), "b/sales.csv", &items(7, &[]));
    let as_a = session.with_tenant(Some(a));
    let as_b = session.with_tenant(Some(b));
    let as_c = session.with_tenant(Some(c));
    as_a.sources().add(SourceSpec::new("sales", fa.display().to_string())).await.unwrap();
    as_b.sources().add(SourceSpec::new("sales", fb.display().to_string())).await.unwrap();

    assert_eq!(scalar(&as_a, "SELECT count(*) FROM sales.public.sales").await, "3");
    assert_eq!(scalar(&as_b, "SELECT count(*) FROM sales.public.sales").await, "7");
    for outsider in [&as_c, &session] {
        let err = sql_error(outsider, "SELECT count(*) FROM sales.public.sales").await;
        assert!(err.contains("sales"), "{err}");
        assert!(outsider.sources().list().await.unwrap().is_empty());
    }
    // B cannot remove (take over) A's source; removing its own leaves A's intact.
    as_b.sources().remove("sales").await.unwrap();
    assert!(as_b.sources().remove("sales").await.is_err());
    assert_eq!(scalar(&as_a, "SELECT count(*) FROM sales.public.sales").await, "3");
    let listed = as_a.sources().list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tenant, Some(a));
}
