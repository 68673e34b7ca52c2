//! The encoder with the real all-MiniLM-L6-v2 (`JAMMI_TEST_MINILM_DIR`, which
//! scripts/test.sh sets to the files of the PyPI package it installs). Agreement with the
//! vectors the same model made elsewhere is checked through the engine in
//! `crates/jammi-db/tests/it/embed.rs`; these tests check what packing and batching must not
//! change, and how bad model files are reported.

use std::path::{Path, PathBuf};

use jammi_encoder::{EncoderError, EncoderOptions, Pooling, SentenceEncoder};

fn minilm_dir() -> PathBuf {
    PathBuf::from(std::env::var("JAMMI_TEST_MINILM_DIR").unwrap_or_else(|_| panic!("JAMMI_TEST_MINILM_DIR is not set: run the tests through scripts/test.sh, which installs the model")))
}

fn options(max_tokens: usize) -> EncoderOptions {
    EncoderOptions { pooling: Pooling::Mean, normalize: true, max_tokens }
}

fn load(dir: &Path, options: EncoderOptions) -> SentenceEncoder {
    SentenceEncoder::load(dir, options).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Texts from 1 to ~150 words, so batches mix short and truncated texts.
fn texts(count: usize) -> Vec<String> {
    let words = ["package", "library", "network", "daemon", "the", "of", "for", "tools", "python", "kernel", "module", "fonts", "debug", "symbols", "server", "client"];
    (0..count).map(|i| (0..1 + (i * 37) % 150).map(|w| words[(i + w * 7) % words.len()]).collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn texts_encoded_together_match_texts_encoded_alone() {
    let encoder = load(&minilm_dir(), options(128));
    let texts = texts(300);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // 300 texts run as many packed batches in parallel; 20 as one batch on shared threads.
    let together = encoder.encode(&refs).unwrap();
    let few = encoder.encode(&refs[..20]).unwrap();
    assert_eq!(together.len(), 300);
    for (i, text) in refs.iter().enumerate().step_by(15) {
        let alone = encoder.encode(&[text]).unwrap().remove(0);
        assert_eq!(alone.len(), 384);
        assert!((dot(&alone, &alone) - 1.0).abs() < 1e-5, "text {i} is not unit length");
        assert!(dot(&alone, &together[i]) > 0.99999, "text {i}: alone and in a batch of 300 differ");
        if i < 20 {
            assert!(dot(&alone, &few[i]) > 0.99999, "text {i}: alone and in a batch of 20 differ");
        }
    }
    // Different texts are different vectors: the batch was not one text repeated.
    assert!(dot(&together[0], &together[1]) < 0.99);
    assert!(encoder.encode(&[]).unwrap().is_empty());
}

#[test]
fn the_sentence_pair_of_the_dataset_readme_agrees() {
    let encoder = load(&minilm_dir(), options(128));
    let v = encoder.encode(&["A man is playing a guitar.", "Someone is strumming a guitar.", "The stock market fell sharply today."]).unwrap();
    assert!((dot(&v[0], &v[1]) - 0.7165).abs() < 0.01, "{}", dot(&v[0], &v[1]));
    assert!((dot(&v[0], &v[2]) + 0.0590).abs() < 0.01, "{}", dot(&v[0], &v[2]));
}

#[test]
fn long_texts_are_cut_at_the_model_positions_and_options_apply() {
    let dir = minilm_dir();
    let long = "kernel module ".repeat(2000);
    // 10,000 tokens asked for, 512 positions in the model: cut at 512, like asking for 512.
    let unlimited = load(&dir, options(10_000)).encode(&[&long]).unwrap();
    let at_512 = load(&dir, options(512)).encode(&[&long]).unwrap();
    assert!(dot(&unlimited[0], &at_512[0]) > 0.99999);
    let at_8 = load(&dir, options(8)).encode(&[&long]).unwrap();
    assert!(dot(&at_8[0], &at_512[0]) < 0.9999, "max_tokens 8 must cut the text shorter");

    let raw = load(&dir, EncoderOptions { normalize: false, ..options(128) }).encode(&["a text"]).unwrap();
    assert!((dot(&raw[0], &raw[0]).sqrt() - 1.0).abs() > 0.01, "normalize: false keeps the pooled length");
    let cls = load(&dir, EncoderOptions { pooling: Pooling::Cls, ..options(128) }).encode(&["a text"]).unwrap();
    let mean = load(&dir, options(128)).encode(&["a text"]).unwrap();
    assert!(dot(&cls[0], &mean[0]) < 0.999, "CLS pooling is not the mean");
}

/// A copy of the model's files in a temporary directory, to damage.
fn model_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(minilm_dir().join(name), copy.path().join(name)).unwrap();
    }
    copy
}

fn load_error(dir: &Path) -> String {
    let e = SentenceEncoder::load(dir, options(128)).unwrap_err();
    assert!(matches!(e, EncoderError::MissingFile { .. } | EncoderError::BadFile { .. }), "{e:?}");
    e.to_string()
}

#[test]
fn bad_model_files_are_named() {
    let copy = model_copy();
    let dir = copy.path();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();

    std::fs::write(dir.join("config.json"), config.replace("\"hidden_size\": 384", "\"hidden_size\": 768")).unwrap();
    let e = load_error(dir);
    assert!(e.contains("model.safetensors") && e.contains("embeddings.word_embeddings.weight") && e.contains("[30522, 384]"), "{e}");

    std::fs::write(dir.join("config.json"), config.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"silu\"")).unwrap();
    let e = load_error(dir);
    assert!(e.contains("config.json") && e.contains("silu"), "{e}");
    std::fs::write(dir.join("config.json"), &config).unwrap();

    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &weights[..weights.len() / 2]).unwrap();
    let e = load_error(dir);
    assert!(e.contains("model.safetensors of the model at") && e.contains("not a safetensors file"), "{e}");

    std::fs::write(dir.join("tokenizer.json"), "{not json").unwrap();
    assert!(load_error(dir).contains("tokenizer.json of the model at"));
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let e = load_error(dir);
    assert!(e.starts_with("tokenizer.json is missing from the model at"), "{e}");
}
