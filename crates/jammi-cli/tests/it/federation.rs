//! `jammi source add` with a live PostgreSQL database (the server scripts/test.sh starts):
//! credentials masked in `source list`, queries, `source refresh`.

use crate::support::*;

fn psql(url: &str, sql: &str) {
    let status = std::process::Command::new("psql").arg(url).args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql]).status().expect("run psql");
    assert!(status.success(), "psql: {sql}");
}

#[test]
fn postgres_source_through_the_cli() {
    let admin = std::env::var("JAMMI_TEST_PG_URL").expect("JAMMI_TEST_PG_URL is not set: run the tests through scripts/test.sh");
    let db = format!("jammi_cli_fed_{}", std::process::id());
    psql(&admin, &format!("CREATE DATABASE {db}"));
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    psql(&url, "CREATE TABLE items (id int PRIMARY KEY, label text); INSERT INTO items VALUES (1, 'cat'), (2, 'dog')");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // The test server trusts loopback, so the password is accepted and must never show.
    let with_password = url.replacen("://jammi@", "://jammi:hunter2@", 1);
    let added = ok(jammi(&home).args(["source", "add", "pg", &with_password]));
    assert!(added.contains("pg.public.items") && !added.contains("hunter2"), "{added}");
    let listed = ok(jammi(&home).args(["--format", "json", "source", "list"]));
    assert!(listed.contains("jammi:***@") && listed.contains("\"status\":\"ok\"") && !listed.contains("hunter2"), "{listed}");
    let out = ok(jammi(&home).args(["--format", "csv", "sql", "SELECT label FROM pg.public.items WHERE id = 2"]));
    assert_eq!(out.trim(), "label\ndog");

    psql(&url, "CREATE TABLE fresh (x int); INSERT INTO fresh VALUES (42)");
    let refreshed = ok(jammi(&home).args(["source", "refresh", "pg"]));
    assert!(refreshed.contains("pg.public.fresh"), "{refreshed}");
    let out = ok(jammi(&home).args(["--format", "csv", "sql", "SELECT x FROM pg.public.fresh"]));
    assert_eq!(out.trim(), "x\n42");
    let err = fails(jammi(&home).args(["source", "add", "bad", &format!("{}/no_such_db_here", admin.rsplit_once('/').unwrap().0.replacen("://jammi@", "://jammi:hunter2@", 1))]));
    assert!(err.contains("does not exist") && !err.contains("hunter2"), "{err}");
}
