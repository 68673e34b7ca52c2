//! `jammi source ...` and `jammi sql ...`: output formats, persistence, errors.

use crate::support::*;

fn people_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("people.csv");
    let mut text = String::from("id,name,age\n");
    for i in 1..=20 {
        text.push_str(&format!("{i},person {i},{}\n", 20 + i % 7));
    }
    write(&path, &text);
    path
}

#[test]
fn source_add_list_remove_and_sql_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let csv = people_csv(dir.path());
    ok(jammi(&home).args(["source", "add", "crm"]).arg(&csv));

    let listed = ok(jammi(&home).args(["source", "list", "--format", "csv"]));
    assert!(listed.starts_with("name,tables,kind,format,url"), "{listed}");
    assert!(listed.contains("crm,crm.public.people,file,csv,file://"), "{listed}");

    // Independent answer: ages are 20 + i % 7 for i in 1..=20.
    let expected_sum: i64 = (1..=20).map(|i| 20 + i % 7).sum();
    let csv_out = ok(jammi(&home).args(["sql", "SELECT sum(age) AS s, count(*) AS n FROM crm.public.people", "--format", "csv"]));
    assert_eq!(csv_out, format!("s,n\n{expected_sum},20\n"));

    let json = ok(jammi(&home).args(["--format", "json", "sql", "SELECT id, name FROM crm.public.people WHERE id <= 2 ORDER BY id"]));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, serde_json::json!([{"id": 1, "name": "person 1"}, {"id": 2, "name": "person 2"}]));

    let nd = ok(jammi(&home).args(["--format", "ndjson", "sql", "SELECT id FROM crm.public.people WHERE id > 17 ORDER BY id"]));
    let ids: Vec<i64> = nd.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![18, 19, 20]);

    let table = ok(jammi(&home).args(["sql", "SELECT id, name FROM crm.public.people WHERE id IN (3, 12) ORDER BY id"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0].split('|').map(str::trim).collect::<Vec<_>>(), ["id", "name"]);
    assert!(lines[1].starts_with("---"));
    assert_eq!(lines[2].split('|').map(str::trim).collect::<Vec<_>>(), ["3", "person 3"]);
    assert_eq!(lines[3].split('|').map(str::trim).collect::<Vec<_>>(), ["12", "person 12"]);
    assert!(lines[4].starts_with("(2 rows"), "{table}");
    // Columns line up: every row's separator sits where the header's does.
    let bar = lines[0].find('|').unwrap();
    assert_eq!(lines[2].find('|'), Some(bar));
    assert_eq!(lines[3].find('|'), Some(bar));

    // Empty results still print their header (csv) / an empty array (json).
    assert_eq!(ok(jammi(&home).args(["--format", "json", "sql", "SELECT id FROM crm.public.people WHERE id < 0"])), "[]\n");

    ok(jammi(&home).args(["source", "remove", "crm"]));
    let err = fails(jammi(&home).args(["sql", "SELECT * FROM crm.public.people"]));
    assert!(err.contains("crm"), "{err}");
    assert_eq!(ok(jammi(&home).args(["source", "list", "--format", "ndjson"])), "");
}

#[test]
fn several_statements_run_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let csv = people_csv(dir.path());
    let home = dir.path().join("home");
    ok(jammi(&home).args(["source", "add", "crm"]).arg(&csv));
    let out = ok(jammi(&home).args([
        "--format",
        "csv",
        "sql",
        "CREATE VIEW old AS SELECT * FROM crm.public.people WHERE age >= 25; SELECT count(*) AS n FROM old; SELECT max(id) AS m FROM old",
    ]));
    let expected_n = (1..=20).filter(|i| 20 + i % 7 >= 25).count();
    let expected_m = (1..=20).filter(|i| 20 + i % 7 >= 25).max().unwrap();
    assert_eq!(out, format!("n\n{expected_n}\nm\n{expected_m}\n"));
}

#[test]
fn jammi_home_and_config_file_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let csv = people_csv(dir.path());
    let home = dir.path().join("via-env");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_jammi"));
    cmd.env("JAMMI_HOME", &home).args(["source", "add", "crm"]).arg(&csv);
    ok(&mut cmd);
    assert!(home.join("catalog.db").exists());

    // A bad config file is a one-line error naming the key.
    write(&home.join("jammi.toml"), "[query]\nbatch_size = \"many\"\n");
    let err = fails(jammi(&home).args(["sql", "SELECT 1"]));
    assert!(err.contains("query.batch_size"), "{err}");
    write(&home.join("jammi.toml"), "[storage]\nroot = \"${JAMMI_TEST_UNSET_VARIABLE}\"\n");
    let err = fails(jammi(&home).args(["sql", "SELECT 1"]));
    assert!(err.contains("JAMMI_TEST_UNSET_VARIABLE") && err.contains("storage.root"), "{err}");
    write(&home.join("jammi.toml"), "[query]\nbatch_size = 1024\n");
    ok(jammi(&home).args(["sql", "SELECT 1"]));
    let err = fails(jammi(&home).args(["sql", "SELECT 1"]).env("JAMMI_QUERY__BATCH_SIZE", "0"));
    assert!(err.contains("query.batch_size"), "{err}");
}

#[test]
fn errors_are_one_line_with_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let csv = people_csv(dir.path());
    let corrupt = dir.path().join("bad.parquet");
    write(&corrupt, "garbage");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["sql".into(), "SELEC nonsense".into()], "syntax"),
        (vec!["sql".into(), "SELECT * FROM nope.public.t".into()], "nope"),
        (vec!["source".into(), "add".into(), "x".into(), dir.path().join("missing.csv").display().to_string()], "not found"),
        (vec!["source".into(), "add".into(), "x".into(), corrupt.display().to_string()], "bad.parquet"),
        (vec!["source".into(), "add".into(), "x".into(), "ftp://h/a.csv".into()], "unsupported scheme"),
        (vec!["source".into(), "add".into(), "mutable".into(), csv.display().to_string()], "reserved"),
        (vec!["source".into(), "add".into(), "x".into(), csv.display().to_string(), "--option".into(), "novalue".into()], "KEY=VALUE"),
        (vec!["source".into(), "remove".into(), "ghost".into()], "ghost"),
        (vec!["--tenant".into(), "not-a-uuid".into(), "sql".into(), "SELECT 1".into()], "not-a-uuid"),
    ];
    for (args, needle) in cases {
        let err = fails(jammi(&home).args(&args));
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A clap usage error (unknown format) is also a failure.
    let out = jammi(&home).args(["--format", "xml", "sql", "SELECT 1"]).output().unwrap();
    assert!(!out.status.success());

    // Duplicate names: the second add fails and the first stays.
    ok(jammi(&home).args(["source", "add", "crm"]).arg(&csv));
    let err = fails(jammi(&home).args(["source", "add", "crm"]).arg(&csv));
    assert!(err.contains("already exists"), "{err}");
    let listed = ok(jammi(&home).args(["source", "list", "--format", "csv"]));
    assert_eq!(listed.lines().count(), 2, "{listed}");
}

#[test]
fn tenant_flag_scopes_sources() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let csv = people_csv(dir.path());
    let a = "0b7e8a52-1c59-4a39-8d7e-6a1b2c3d4e5f";
    let b = "7f000000-0000-4000-8000-000000000002";
    ok(jammi(&home).args(["--tenant", a, "source", "add", "private"]).arg(&csv));
    assert_eq!(ok(jammi(&home).args(["--tenant", a, "--format", "csv", "sql", "SELECT count(*) AS n FROM private.public.people"])), "n\n20\n");
    let err = fails(jammi(&home).args(["--tenant", b, "sql", "SELECT count(*) FROM private.public.people"]));
    assert!(err.contains("private"), "{err}");
    fails(jammi(&home).args(["sql", "SELECT count(*) FROM private.public.people"]));
    assert_eq!(ok(jammi(&home).args(["--tenant", b, "source", "list", "--format", "ndjson"])), "");
}
