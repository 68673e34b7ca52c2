//! Property tests (proptest), a bounded number of cases in every test run: the parsers a
//! client reaches never panic, and the statement policy never lets a restricted caller
//! reach a refused capability, however the statement hides it.

use jammi_db::datafusion::sql::parser::DFParser;
use jammi_db::datafusion::sql::sqlparser::dialect::GenericDialect;
use jammi_db::security::{check_statement, Access};
use jammi_db::storage::StorageUrl;
use jammi_db::topic::{SubscribeOptions, TopicDefinition, Retention};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Text a client might send: printable ASCII with SQL punctuation, some Unicode, controls.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,80}",
        "[\\[\\](),.'\"0-9eE+\\-a-z ]{0,60}",
        ".{0,40}",
        Just(String::new()),
        Just("(".repeat(5000)),
        Just("[".repeat(5000)),
    ]
}

// --- The statement policy --------------------------------------------------------------

/// A query built from safe parts; `hide` puts a table function reading `location` at
/// some depth inside it.
fn query(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("SELECT 1 AS a".to_string()),
        Just("SELECT a FROM s.public.t".to_string()),
        Just("SELECT * FROM mutable.public.m WHERE x > 1".to_string()),
        Just("SELECT * FROM vector_search('v', '[1, 2]', 3)".to_string()),
        Just("SELECT * FROM generate_series(1, 3)".to_string()),
    ];
    leaf.prop_recursive(depth, 16, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|q| format!("SELECT * FROM ({q}) sub")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("WITH c AS ({a}) SELECT * FROM ({b}) w")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("SELECT * FROM ({a}) u1 UNION ALL SELECT * FROM ({b}) u2")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("SELECT * FROM ({a}) x WHERE 1 IN ({b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("SELECT * FROM ({a}) x JOIN ({b}) y ON true")),
        ]
    })
    .boxed()
}

/// A table function that is not on the allowlist, spelt in the ways SQL allows.
fn forbidden_function() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("read_parquet"),
        Just("read_csv"),
        Just("READ_JSON"),
        Just("parquet_metadata"),
        Just("\"read_parquet\""),
        Just("x.read_parquet"),
        Just("anything_else"),
    ];
    let location = prop_oneof![Just("/etc/passwd"), Just("file:///data/x.parquet"), Just("s3://bucket/k"), Just("../../catalog.db")];
    (name, location).prop_map(|(n, l)| format!("SELECT * FROM {n}('{l}')"))
}

/// A statement that reaches a refused capability, with its parts hidden among safe ones.
fn refused_statement() -> impl Strategy<Value = String> {
    let capability = prop_oneof![
        forbidden_function(),
        Just("SELECT 1".to_string()).prop_map(|q| format!("COPY ({q}) TO '/tmp/out.csv' STORED AS CSV")),
    ];
    (query(3), capability, 0usize..6).prop_map(|(safe, capability, how)| match how {
        0 => format!("SELECT * FROM ({capability}) hidden"),
        1 => format!("WITH c AS ({capability}) SELECT * FROM ({safe}) w"),
        2 => format!("SELECT * FROM ({safe}) u1 UNION ALL {capability}"),
        3 => format!("SELECT * FROM ({safe}) x WHERE 1 IN (SELECT * FROM ({capability}) y)"),
        4 => format!("EXPLAIN {capability}"),
        _ => format!("CREATE VIEW v AS SELECT * FROM ({safe}) a, ({capability}) b"),
    })
}

fn parse(sql: &str) -> Option<Vec<jammi_db::datafusion::sql::parser::Statement>> {
    DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).ok().map(|s| s.into_iter().collect())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_policy_refuses_every_hidden_capability(sql in refused_statement()) {
        let statements = parse(&sql);
        prop_assume!(statements.is_some());
        for statement in statements.unwrap() {
            // COPY wrapped in other statements does not parse; whatever parses must be refused.
            let refused = check_statement(&statement, Access::Restricted);
            prop_assert!(refused.is_err(), "reached a refused capability: {sql}");
            prop_assert!(check_statement(&statement, Access::Operator).is_ok());
        }
    }

    #[test]
    fn the_policy_lets_safe_queries_through(sql in query(4)) {
        let statements = parse(&sql).unwrap_or_else(|| panic!("the grammar makes valid SQL: {sql}"));
        for statement in statements {
            prop_assert!(check_statement(&statement, Access::Restricted).is_ok(), "refused a safe query: {sql}");
        }
    }

    #[test]
    fn the_policy_never_panics_on_any_text(text in hostile_text()) {
        if let Some(statements) = parse(&text) {
            for statement in statements {
                let _ = check_statement(&statement, Access::Restricted);
            }
        }
    }
}

// --- Literals, URLs, segments, config ---------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn vector_literals_parse_or_fail_cleanly(text in hostile_text()) {
        let _ = jammi_db::vector::parse_vector_text(&text);
    }

    #[test]
    fn vector_literals_round_trip(values in prop::collection::vec(-1.0e6f32..1.0e6, 1..64)) {
        let text = format!("[{}]", values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", "));
        prop_assert_eq!(jammi_db::vector::parse_vector_text(&text), Some(values));
    }

    #[test]
    fn storage_urls_parse_or_fail_cleanly(text in hostile_text(), scheme in prop_oneof![Just(""), Just("file://"), Just("s3://"), Just("memory://"), Just("gs://")]) {
        if let Ok(url) = StorageUrl::parse(&format!("{scheme}{text}")) {
            let _ = url.object_path();
            let _ = url.redacted();
            let _ = url.as_dir();
        }
    }

    #[test]
    fn prefix_segments_never_leave_their_root(segments in prop::collection::vec(hostile_text(), 1..4)) {
        let root = StorageUrl::parse("memory://bucket/root/").unwrap();
        let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
        match jammi_db::artifact::prefix_url(&root, &refs) {
            Ok(prefix) => {
                let path = prefix.object_path().unwrap().to_string();
                prop_assert!(path.starts_with("root/"), "{path}");
                let parts: Vec<&str> = path.split('/').collect();
                prop_assert!(!parts.iter().any(|p| *p == ".." || *p == "."), "{path}");
                prop_assert_eq!(parts.len(), 1 + segments.len() + usize::from(path.ends_with('/')));
            }
            Err(e) => prop_assert!(segments.iter().any(String::is_empty), "{e}"),
        }
    }

    #[test]
    fn config_files_load_or_name_the_problem(body in config_text()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jammi.toml");
        std::fs::write(&file, &body).unwrap();
        match jammi_db::Config::load_with_env(dir.path(), Some(&file), &Default::default()) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

/// TOML made of known sections and keys with values of any type, plus noise.
fn config_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("[catalog]\nmax_connections"),
        Just("[query]\nbatch_size"),
        Just("[vectors]\nmax_deleted_fraction"),
        Just("[security]\nidle_in_transaction_timeout_ms"),
        Just("[security]\noperator_locations"),
        Just("[broker]\nkind"),
        Just("[storage]\nroot"),
    ];
    let value = prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1.5".to_string()),
        Just("true".to_string()),
        Just("\"${UNSET}\"".to_string()),
        Just("\"jetstream\"".to_string()),
        "[ -~]{0,20}".prop_map(|s| format!("\"{}\"", s.replace(['"', '\\'], ""))),
        "[ -~]{0,20}",
    ];
    prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}\n")),
        "[ -~\n]{0,120}",
    ]
}

// --- Topic subscription filters ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_filters_parse_or_fail_cleanly() {
    let (session, _dir) = crate::support::temp_session().await;
    let topics = session.topics();
    topics
        .create(TopicDefinition {
            name: "ev".into(),
            columns: jammi_db::topic::TopicSpec::parse_schema("id:int64,kind:string:nullable").unwrap(),
            source_table: None,
            retention: Retention::default(),
        })
        .await
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(config(128));
    let filter = prop_oneof![
        hostile_text(),
        (prop_oneof![Just("id"), Just("kind"), Just("nope"), Just("_offset")], prop_oneof![Just("="), Just("<"), Just("LIKE"), Just("IN"), Just("BETWEEN")], "[ -~]{0,12}")
            .prop_map(|(c, op, v)| format!("{c} {op} {v}")),
    ];
    for _ in 0..128 {
        let text = filter.new_tree(&mut runner).unwrap().current();
        let options = SubscribeOptions { filter: Some(text.clone()), ..SubscribeOptions::default() };
        // An answer either way; a panic in the parser would fail the test.
        if let Ok(subscription) = topics.subscribe("ev", options).await {
            drop(subscription);
        }
    }
    // The engine still answers.
    assert_eq!(crate::support::scalar(&session, "SELECT count(*) FROM topics.public.ev").await, "0");
}
