//! File sources: answers checked against values computed independently in Rust.

use jammi_db::source::{FileFormatKind, SourceSpec};
use jammi_db::error::ObjectKind;
use jammi_db::{Config, Error, Session};

use crate::support::*;

/// Sum of amounts and count per category, computed without the engine.
fn expected_by_category(items: &[Item]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for cat in ["a", "b", "c"] {
        let rows: Vec<&Item> = items.iter().filter(|i| i.category == cat).collect();
        let sum: f64 = rows.iter().map(|i| i.amount).sum();
        out.push(vec![cat.to_string(), rows.len().to_string(), format!("{sum:?}")]);
    }
    out
}

#[tokio::test]
async fn parquet_csv_and_json_give_the_same_independent_answers() {
    let (session, dir) = temp_session().await;
    let data = items(1000, &[]);
    for (name, file) in [("p", "items.parquet"), ("c", "items.csv"), ("j", "items.json")] {
        let path = write_items(dir.path(), file, &data);
        let info = session.sources().add(SourceSpec::new(name, path.display().to_string())).await.unwrap();
        assert_eq!(info.tables, vec![format!("{name}.public.items")]);
        let got = rows(
            &session,
            &format!("SELECT category, count(*), sum(amount) FROM {name}.public.items GROUP BY category ORDER BY category"),
        )
        .await;
        assert_eq!(got, expected_by_category(&data), "format of {file}");
        let filtered = scalar(&session, &format!("SELECT count(*) FROM {name}.public.items WHERE amount > 750")).await;
        assert_eq!(filtered, data.iter().filter(|i| i.amount > 750.0).count().to_string());
    }
    // A join across the three formats matches row by row.
    let joined = scalar(
        &session,
        "SELECT count(*) FROM p.public.items p JOIN c.public.items c ON p.id = c.id \
         JOIN j.public.items j ON j.id = c.id WHERE p.amount = c.amount AND c.amount = j.amount",
    )
    .await;
    assert_eq!(joined, "1000");
}

#[tokio::test]
async fn json_array_files_and_explicit_formats() {
    let (session, dir) = temp_session().await;
    let array = dir.path().join("list.json");
    std::fs::write(&array, r#"[{"k": 1, "v": "x"}, {"k": 2, "v": "y"}, {"k": 3, "v": null}]"#).unwrap();
    session.sources().add(SourceSpec::new("arr", array.display().to_string())).await.unwrap();
    assert_eq!(rows(&session, "SELECT k, v FROM arr.public.list ORDER BY k").await, vec![
        vec!["1".to_string(), "x".to_string()],
        vec!["2".to_string(), "y".to_string()],
        vec!["3".to_string(), "NULL".to_string()],
    ]);

    // A file without a known extension needs --format; options shape the CSV reader.
    let odd = dir.path().join("semi.txt");
    std::fs::write(&odd, "a;b\n1;2\n3;4\n").unwrap();
    let err = session.sources().add(SourceSpec::new("odd", odd.display().to_string())).await.unwrap_err();
    assert!(matches!(err, Error::UnknownFormat { .. }) && err.to_string().contains("--format"), "{err}");
    session
        .sources()
        .add(SourceSpec::new("odd", odd.display().to_string()).with_format(FileFormatKind::Csv).with_option("delimiter", ";"))
        .await
        .unwrap();
    assert_eq!(scalar(&session, "SELECT sum(a) + sum(b) FROM odd.public.semi").await, "10");
}

#[tokio::test]
async fn directories_with_hive_partitions_become_columns() {
    let (session, dir) = temp_session().await;
    let all = items(90, &[]);
    let root = dir.path().join("events");
    for year in [2023, 2024, 2025] {
        let part: Vec<Item> = all.iter().filter(|i| 2023 + i.id % 3 == year).cloned().collect();
        write_items(&root, &format!("year={year}/part-0.parquet"), &part);
    }
    std::fs::write(root.join("_SUCCESS"), "").unwrap();
    let info = session.sources().add(SourceSpec::new("ev", root.display().to_string())).await.unwrap();
    assert_eq!(info.tables, vec!["ev.public.events".to_string()]);
    let got = rows(&session, "SELECT year, count(*), sum(id) FROM ev.public.events GROUP BY year ORDER BY year").await;
    let expected: Vec<Vec<String>> = [2023i64, 2024, 2025]
        .iter()
        .map(|y| {
            let part: Vec<&Item> = all.iter().filter(|i| 2023 + i.id % 3 == *y).collect();
            vec![y.to_string(), part.len().to_string(), part.iter().map(|i| i.id).sum::<i64>().to_string()]
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(scalar(&session, "SELECT count(*) FROM ev.public.events WHERE year = '2024'").await, "30");
}

#[tokio::test]
async fn registrations_persist_across_sessions_and_statements_run_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_items(dir.path(), "data/items.csv", &items(10, &[]));
    {
        let session = Session::open(Config::embedded(dir.path().join("home"))).await.unwrap();
        session.sources().add(SourceSpec::new("s", file.display().to_string())).await.unwrap();
        session.close().await;
    }
    let session = Session::open(Config::embedded(dir.path().join("home"))).await.unwrap();
    assert_eq!(scalar(&session, "SELECT count(*) FROM s.public.items").await, "10");
    // Later statements see what earlier ones created.
    let got = scalar(&session, "CREATE VIEW big AS SELECT * FROM s.public.items WHERE id > 7; SELECT count(*) FROM big").await;
    assert_eq!(got, "3");
    let listed = session.sources().list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, "ok");
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_leaves_no_trace() {
    let (session, dir) = temp_session().await;
    let good = write_items(dir.path(), "good.parquet", &items(5, &[]));
    let corrupt = dir.path().join("corrupt.parquet");
    std::fs::write(&corrupt, b"this is not parquet at all").unwrap();
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir_all(&empty_dir).unwrap();

    let cases: Vec<(SourceSpec, &str)> = vec![
        (SourceSpec::new("missing", dir.path().join("nope.csv").display().to_string()), "not found"),
        (SourceSpec::new("corrupt", corrupt.display().to_string()), "corrupt.parquet"),
        (SourceSpec::new("emptydir", empty_dir.display().to_string()), "no data files"),
        (SourceSpec::new("badurl", "ftp://host/x.csv"), "unsupported scheme"),
        (SourceSpec::new("nobucket", "s3:///x.csv"), "missing bucket"),
        (SourceSpec::new("Bad-Name", good.display().to_string()), "Bad-Name"),
        (SourceSpec::new("mutable", good.display().to_string()), "reserved"),
        (SourceSpec::new("vectors", good.display().to_string()), "reserved"),
        (SourceSpec::new("topics", good.display().to_string()), "reserved"),
        (SourceSpec::new("badopt", good.display().to_string()).with_option("colour", "red"), "colour"),
        (SourceSpec::new("badtc", good.display().to_string()).with_tenant_column("nope"), "nope"),
        (SourceSpec::new("numtc", good.display().to_string()).with_tenant_column("id"), "UUID"),
    ];
    for (spec, needle) in cases {
        let name = spec.name.clone();
        let err = session.sources().add(spec).await.unwrap_err().to_string();
        assert!(err.contains(needle), "{name}: '{err}' should mention '{needle}'");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    assert!(session.sources().list().await.unwrap().is_empty(), "failed adds left a trace");

    session.sources().add(SourceSpec::new("good", good.display().to_string())).await.unwrap();
    let err = session.sources().add(SourceSpec::new("good", good.display().to_string())).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { kind: ObjectKind::Source, .. }), "{err}");
    let err = session.sources().remove("ghost").await.unwrap_err();
    assert!(matches!(err, Error::Unknown { kind: ObjectKind::Source, .. }), "{err}");

    for (sql, needle) in [
        ("SELEC 1", "syntax"),
        ("SELECT * FROM nothere.public.t", "nothere"),
        ("SELECT nocol FROM good.public.good", "nocol"),
        ("INSERT INTO good.public.good VALUES (1, 'a', 1.0, NULL)", "read-only"),
        ("DROP TABLE good.public.good", "source remove"),
        ("SET jammi.tenant = 'x'", "not allowed"),
    ] {
        let err = sql_error(&session, sql).await;
        assert!(err.to_lowercase().contains(needle), "{sql}: '{err}' should mention '{needle}'");
    }
    // The refused writes changed nothing.
    assert_eq!(scalar(&session, "SELECT count(*) FROM good.public.good").await, "5");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("catalog.db"))
        .collect();
    names.sort();
    assert_eq!(names, ["corrupt.parquet", "empty", "good.parquet"], "no files were added next to the data");
}

#[tokio::test]
async fn a_source_added_by_another_session_is_seen_without_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_items(dir.path(), "late.json", &items(4, &[]));
    let reader = Session::open(Config::embedded(dir.path().join("home"))).await.unwrap();
    let writer = Session::open(Config::embedded(dir.path().join("home"))).await.unwrap();
    writer.sources().add(SourceSpec::new("late", file.display().to_string())).await.unwrap();
    assert_eq!(scalar(&reader, "SELECT count(*) FROM late.public.late").await, "4");
}
