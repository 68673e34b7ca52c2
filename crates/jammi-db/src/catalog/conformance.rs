//! The catalog conformance suite: plain async checks that every [`CatalogBackend`] must
//! pass. Each backend's test calls [`run_all`] with its own URL; a new backend gets every
//! check for free.
//!
//! The checks panic on failure (they are test code) and use random names, so they can share
//! one database with other tests.
//!
//! [`CatalogBackend`]: super::CatalogBackend

use std::collections::BTreeSet;

use super::{Catalog, SourceRecord, MIGRATIONS};
use crate::config::CatalogConfig;
use crate::error::{Error, ObjectKind};
use crate::tenant::{TenantId, TenantScope};

/// Run every check against the catalog at `url`.
pub async fn run_all(url: &str) {
    let config = CatalogConfig::default();
    let catalog = Catalog::open(url, &config).await.expect("open catalog");
    migrations_are_recorded_once(url, &catalog).await;
    source_round_trip(&catalog).await;
    names_unique_per_tenant_and_among_shared(&catalog).await;
    scopes_see_own_plus_shared(&catalog).await;
    remove_respects_ownership(&catalog).await;
    change_counter_moves_on_every_change(&catalog).await;
    tokens_round_trip(&catalog).await;
    building_imports_stay_alive_until_removed(&catalog).await;
    leases_have_one_holder_at_a_time(url, &catalog).await;
    concurrent_writers_lose_nothing(url).await;
    catalog.close().await;
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Tokens: stored by digest, found while live, listed, revoked idempotently.
pub async fn tokens_round_trip(catalog: &Catalog) {
    let tenant = TenantId::random();
    let record = super::TokenRecord { id: unique("tok"), tenant: Some(tenant), name: "ci".into(), created_at: 1, revoked_at: None };
    let digest = unique("digest");
    catalog.tokens().insert(&record, &digest).await.unwrap();
    assert_eq!(catalog.tokens().find_live(&digest).await.unwrap().as_ref(), Some(&record));
    assert!(catalog.tokens().find_live("no-such-digest").await.unwrap().is_none());
    assert!(catalog.tokens().any_live().await.unwrap());
    assert!(catalog.tokens().list().await.unwrap().iter().any(|t| t.id == record.id && t.tenant == Some(tenant)));
    let revoked = catalog.tokens().revoke(&record.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(catalog.tokens().revoke(&record.id).await.unwrap().revoked_at, revoked.revoked_at, "revoking twice changes nothing");
    assert!(catalog.tokens().find_live(&digest).await.unwrap().is_none());
    assert!(catalog.tokens().revoke("no-such-token").await.is_err());
}

/// A lease has one holder at a time: another holder is refused until it expires or is
/// released, the holder renews it, a release by anyone else changes nothing, a take-over
/// replaces the holder; and of many
/// processes racing for a free lease (separate pools), exactly one gets it.
pub async fn leases_have_one_holder_at_a_time(url: &str, catalog: &Catalog) {
    use std::time::Duration;
    let leases = catalog.leases();
    let name = unique("lease");
    let long = Duration::from_secs(60);
    assert!(leases.try_acquire(&name, "a", long).await.unwrap());
    assert!(!leases.try_acquire(&name, "b", long).await.unwrap(), "held by a");
    assert!(leases.try_acquire(&name, "a", long).await.unwrap(), "a renews");
    leases.release(&name, "b").await.unwrap();
    assert!(!leases.try_acquire(&name, "b", long).await.unwrap(), "b cannot release a's lease");
    leases.release(&name, "a").await.unwrap();
    assert!(leases.try_acquire(&name, "b", Duration::from_millis(1)).await.unwrap(), "free after a's release");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(leases.try_acquire(&name, "c", long).await.unwrap(), "b's lease expired");
    leases.take(&name, "d", long).await.unwrap();
    assert!(!leases.try_acquire(&name, "c", long).await.unwrap(), "d took it over from c");
    assert!(leases.try_acquire(&name, "d", long).await.unwrap());

    let raced = unique("race");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (url, raced) = (url.to_string(), raced.clone());
        tasks.push(tokio::spawn(async move {
            let catalog = Catalog::open(&url, &CatalogConfig::default()).await.expect("open catalog");
            let won = catalog.leases().try_acquire(&raced, &format!("p{i}"), Duration::from_secs(60)).await.unwrap();
            catalog.close().await;
            won
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one of the racing processes holds the lease");
}

/// A building vector table's heartbeat moves its `updated_at` (what recovery elsewhere
/// measures its grace from) and reports the row's loss once recovery has removed it, and
/// once the table is ready.
pub async fn building_imports_stay_alive_until_removed(catalog: &Catalog) {
    let record = |id: String| super::VectorTableRecord {
        id,
        tenant: None,
        name: unique("vt"),
        status: super::VectorTableStatus::Building,
        location: "memory:///vectors/x/".into(),
        spec: "{}".into(),
        generation: 0,
        manifest: String::new(),
        created_at: 1,
        updated_at: 1,
    };
    let updated_at = |id: String| async move { catalog.vector_tables().list_all().await.unwrap().into_iter().find(|r| r.id == id).map(|r| r.updated_at) };
    let (alive, removed, ready) = (record(unique("vt-alive")), record(unique("vt-removed")), record(unique("vt-ready")));
    for r in [&alive, &removed, &ready] {
        catalog.vector_tables().insert_building(r).await.unwrap();
    }
    assert!(catalog.vector_tables().touch_building(&alive.id).await.unwrap());
    assert!(updated_at(alive.id.clone()).await.unwrap() > 1, "the heartbeat moves updated_at");
    catalog.vector_tables().delete(&removed.id).await.unwrap();
    assert!(!catalog.vector_tables().touch_building(&removed.id).await.unwrap(), "a removed import must learn it is gone");
    catalog.vector_tables().mark_ready(&ready.id, "{}", 1, "m").await.unwrap();
    assert!(!catalog.vector_tables().touch_building(&ready.id).await.unwrap(), "a ready table is not building");
    assert_eq!(updated_at(removed.id.clone()).await, None);
    for r in [&alive, &ready] {
        catalog.vector_tables().delete(&r.id).await.unwrap();
    }
}

/// Opening twice applies nothing twice; the ledger lists every migration in order.
pub async fn migrations_are_recorded_once(url: &str, catalog: &Catalog) {
    let again = Catalog::open(url, &CatalogConfig::default()).await.expect("reopen catalog");
    let applied = again.applied_migrations().await.unwrap();
    let expected: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, expected);
    assert_eq!(catalog.applied_migrations().await.unwrap(), expected);
    again.close().await;
}

/// What is inserted reads back identically; removal deletes it.
pub async fn source_round_trip(catalog: &Catalog) {
    let mut record = SourceRecord::new(None, unique("rt"), "file", "file:///tmp/x.parquet");
    record.format = Some("parquet".into());
    record.tenant_column = Some("tenant".into());
    record.options.insert("has_header".into(), "true".into());
    catalog.sources().insert(&record).await.unwrap();

    let got = catalog.sources().get_visible(TenantScope::Unbound, &record.name).await.unwrap();
    assert_eq!(got.as_ref(), Some(&record));
    let removed = catalog.sources().remove(TenantScope::Unbound, &record.name).await.unwrap();
    assert_eq!(removed, record);
    assert!(catalog.sources().get_visible(TenantScope::Unbound, &record.name).await.unwrap().is_none());
    let err = catalog.sources().remove(TenantScope::Unbound, &record.name).await.unwrap_err();
    assert!(matches!(err, Error::Unknown { kind: ObjectKind::Source, .. }), "{err}");
}

/// Two shared sources cannot share a name; two tenants (and shared) can each own one.
pub async fn names_unique_per_tenant_and_among_shared(catalog: &Catalog) {
    let name = unique("dup");
    let (a, b) = (TenantId::random(), TenantId::random());
    let repo = catalog.sources();
    repo.insert(&SourceRecord::new(None, &name, "file", "file:///shared")).await.unwrap();
    let err = repo.insert(&SourceRecord::new(None, &name, "file", "file:///other")).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { kind: ObjectKind::Source, .. }), "{err}");
    repo.insert(&SourceRecord::new(Some(a), &name, "file", "file:///a")).await.unwrap();
    repo.insert(&SourceRecord::new(Some(b), &name, "file", "file:///b")).await.unwrap();
    let err = repo.insert(&SourceRecord::new(Some(a), &name, "file", "file:///a2")).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { kind: ObjectKind::Source, .. }), "{err}");

    // The failed inserts left nothing behind.
    let rows: Vec<_> = repo.list_all().await.unwrap().into_iter().filter(|r| r.name == name).collect();
    let urls: BTreeSet<_> = rows.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(urls, BTreeSet::from(["file:///shared", "file:///a", "file:///b"]));
}

/// A tenant sees its own sources plus shared ones, its own shadowing a shared one of the
/// same name; unbound sees shared only; a tenant never sees another's.
pub async fn scopes_see_own_plus_shared(catalog: &Catalog) {
    let (a, b) = (TenantId::random(), TenantId::random());
    let shared = unique("shared");
    let private = unique("private");
    let both = unique("both");
    let repo = catalog.sources();
    repo.insert(&SourceRecord::new(None, &shared, "file", "file:///s")).await.unwrap();
    repo.insert(&SourceRecord::new(Some(a), &private, "file", "file:///pa")).await.unwrap();
    repo.insert(&SourceRecord::new(None, &both, "file", "file:///both-shared")).await.unwrap();
    repo.insert(&SourceRecord::new(Some(a), &both, "file", "file:///both-a")).await.unwrap();

    let names = |records: Vec<SourceRecord>| records.into_iter().map(|r| r.name).collect::<BTreeSet<_>>();
    let seen_a = names(repo.list_visible(TenantScope::Tenant(a)).await.unwrap());
    assert!(seen_a.contains(&shared) && seen_a.contains(&private) && seen_a.contains(&both));
    let seen_b = names(repo.list_visible(TenantScope::Tenant(b)).await.unwrap());
    assert!(seen_b.contains(&shared) && !seen_b.contains(&private) && seen_b.contains(&both));
    let seen_unbound = names(repo.list_visible(TenantScope::Unbound).await.unwrap());
    assert!(seen_unbound.contains(&shared) && !seen_unbound.contains(&private));

    let got = repo.get_visible(TenantScope::Tenant(a), &both).await.unwrap().unwrap();
    assert_eq!(got.url, "file:///both-a");
    let got = repo.get_visible(TenantScope::Tenant(b), &both).await.unwrap().unwrap();
    assert_eq!(got.url, "file:///both-shared");
    assert!(repo.get_visible(TenantScope::Tenant(b), &private).await.unwrap().is_none());
    assert!(repo.get_visible(TenantScope::Unbound, &private).await.unwrap().is_none());
}

/// A tenant removes only its own sources: never a shared one, never another tenant's.
pub async fn remove_respects_ownership(catalog: &Catalog) {
    let (a, b) = (TenantId::random(), TenantId::random());
    let shared = unique("keep");
    let private = unique("mine");
    let repo = catalog.sources();
    repo.insert(&SourceRecord::new(None, &shared, "file", "file:///s")).await.unwrap();
    repo.insert(&SourceRecord::new(Some(a), &private, "file", "file:///a")).await.unwrap();

    let err = repo.remove(TenantScope::Tenant(a), &shared).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    let err = repo.remove(TenantScope::Tenant(b), &private).await.unwrap_err();
    assert!(matches!(err, Error::Unknown { kind: ObjectKind::Source, .. }), "{err}");
    assert!(repo.get_visible(TenantScope::Tenant(a), &private).await.unwrap().is_some());
    repo.remove(TenantScope::Tenant(a), &private).await.unwrap();
    assert!(repo.get_visible(TenantScope::Tenant(a), &private).await.unwrap().is_none());
    assert!(repo.get_visible(TenantScope::Unbound, &shared).await.unwrap().is_some());
}

/// Every insert and remove moves the change counter forward; failed writes do not.
pub async fn change_counter_moves_on_every_change(catalog: &Catalog) {
    let name = unique("counter");
    let before = catalog.change_counter().await.unwrap();
    catalog.sources().insert(&SourceRecord::new(None, &name, "file", "file:///c")).await.unwrap();
    let after_insert = catalog.change_counter().await.unwrap();
    assert!(after_insert > before);
    let _ = catalog.sources().insert(&SourceRecord::new(None, &name, "file", "file:///c")).await.unwrap_err();
    catalog.sources().remove(TenantScope::Unbound, &name).await.unwrap();
    let after_remove = catalog.change_counter().await.unwrap();
    assert_eq!(after_remove, after_insert + 1);
}

/// Many writers on separate pools (as separate processes would have) register distinct
/// names at once, and racing writers of one name produce exactly one winner.
pub async fn concurrent_writers_lose_nothing(url: &str) {
    let prefix = unique("conc");
    let contested = unique("contested");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = url.to_string();
        let name = format!("{prefix}_{i}");
        let contested = contested.clone();
        tasks.push(tokio::spawn(async move {
            let catalog = Catalog::open(&url, &CatalogConfig::default()).await.expect("open");
            catalog.sources().insert(&SourceRecord::new(None, &name, "file", "file:///n")).await.expect("insert");
            let won = catalog
                .sources()
                .insert(&SourceRecord::new(None, &contested, "file", format!("file:///{i}")))
                .await
                .is_ok();
            catalog.close().await;
            won
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one writer may register a contested name");
    let catalog = Catalog::open(url, &CatalogConfig::default()).await.unwrap();
    let names: BTreeSet<_> = catalog.sources().list_all().await.unwrap().into_iter().map(|r| r.name).collect();
    for i in 0..8 {
        assert!(names.contains(&format!("{prefix}_{i}")), "lost registration {i}");
    }
    catalog.close().await;
}
