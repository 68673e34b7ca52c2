//! A search's audit record and its canonical text — the exact bytes that are signed
//! (`docs/formats.md` writes the form down with test vectors).
//!
//! Compact JSON, fields in this fixed order:
//! `{"v":1,"tenant":…,"seq":…,"query_id":…,"time":…,"kind":…,"model":…,"lineage":…,"results":…,"key_version":…,"prev":…}`.
//! Inside `lineage`, object keys are sorted (bytewise) at every depth. Numbers are written
//! as the shortest text that reads back to the same value (scores as 32-bit floats).

use serde_json::Value;

/// Most bytes of a record's lineage; longer string values are replaced by their digest.
pub const MAX_LINEAGE_BYTES: usize = 4096;

/// The current record layout.
pub const RECORD_VERSION: u32 = 1;

/// One audited search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRecord {
    /// The tenant whose chain it is in (`""`: the shared chain).
    pub tenant: String,
    /// Position in the tenant's chain, from 1.
    pub seq: u64,
    /// The search's id (UUID).
    pub query_id: String,
    /// When it ran: RFC 3339, whole seconds, UTC.
    pub time: String,
    /// `vector`, `text` or `hybrid`.
    pub kind: String,
    /// The model that embedded the query (name, version), if one did.
    pub model: Option<(String, String)>,
    /// What was asked: table, filter, k, ef, fusion, the query (or its digest).
    pub lineage: Value,
    /// The results in order: (id, score or distance).
    pub results: Vec<(Value, f32)>,
    /// The key version that signs it.
    pub key_version: u32,
    /// The previous record's signature in the chain (`""` for the first).
    pub prev: String,
}

impl SearchRecord {
    /// The canonical text: what is signed and stored.
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(256 + self.results.len() * 24);
        out.push_str("{\"v\":");
        out.push_str(&RECORD_VERSION.to_string());
        out.push_str(",\"tenant\":");
        write_string(&mut out, &self.tenant);
        out.push_str(",\"seq\":");
        out.push_str(&self.seq.to_string());
        out.push_str(",\"query_id\":");
        write_string(&mut out, &self.query_id);
        out.push_str(",\"time\":");
        write_string(&mut out, &self.time);
        out.push_str(",\"kind\":");
        write_string(&mut out, &self.kind);
        out.push_str(",\"model\":");
        match &self.model {
            None => out.push_str("null"),
            Some((name, version)) => {
                out.push_str("{\"name\":");
                write_string(&mut out, name);
                out.push_str(",\"version\":");
                write_string(&mut out, version);
                out.push('}');
            }
        }
        out.push_str(",\"lineage\":");
        write_sorted(&mut out, &self.lineage);
        out.push_str(",\"results\":[");
        for (i, (id, score)) in self.results.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            write_sorted(&mut out, id);
            out.push(',');
            write_f32(&mut out, *score);
            out.push(']');
        }
        out.push_str("],\"key_version\":");
        out.push_str(&self.key_version.to_string());
        out.push_str(",\"prev\":");
        write_string(&mut out, &self.prev);
        out.push('}');
        out
    }

    /// Read a canonical text back (for showing and verifying records).
    pub fn parse(text: &str) -> Option<SearchRecord> {
        let v: Value = serde_json::from_str(text).ok()?;
        let model = match &v["model"] {
            Value::Null => None,
            m => Some((m["name"].as_str()?.to_string(), m["version"].as_str()?.to_string())),
        };
        let results = v["results"].as_array()?.iter().map(|r| Some((r.get(0)?.clone(), r.get(1)?.as_f64()? as f32))).collect::<Option<Vec<_>>>()?;
        Some(SearchRecord {
            tenant: v["tenant"].as_str()?.to_string(),
            seq: v["seq"].as_u64()?,
            query_id: v["query_id"].as_str()?.to_string(),
            time: v["time"].as_str()?.to_string(),
            kind: v["kind"].as_str()?.to_string(),
            model,
            lineage: v["lineage"].clone(),
            results,
            key_version: u32::try_from(v["key_version"].as_u64()?).ok()?,
            prev: v["prev"].as_str()?.to_string(),
        })
    }
}

fn write_string(out: &mut String, s: &str) {
    // serde_json's string escaping: `"` `\` and control characters; everything else as is.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

fn write_f32(out: &mut String, value: f32) {
    if value.is_finite() {
        out.push_str(&serde_json::to_string(&value).unwrap_or_else(|_| "null".into()));
    } else {
        out.push_str("null");
    }
}

/// `value` as compact JSON with object keys sorted at every depth.
pub fn write_sorted(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_sorted(out, &map[key.as_str()]);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(out, item);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A query vector as the lineage holds it — exactly what [`capped`] makes of it as a JSON
/// array (so the same digest), without building that array: up to 64 items as they are,
/// more as `{"items": n, "sha256": …}` of their canonical text.
pub fn vector_lineage(vector: &[f32]) -> Value {
    if vector.len() <= 64 {
        return Value::Array(vector.iter().map(|v| Value::from(*v)).collect());
    }
    let mut text = Vec::with_capacity(vector.len() * 12 + 2);
    text.push(b'[');
    for (i, v) in vector.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        // As a JSON number holds an f32: its f64 value, shortest form; null if not finite.
        if v.is_finite() {
            let _ = serde_json::to_writer(&mut text, &(f64::from(*v)));
        } else {
            text.extend_from_slice(b"null");
        }
    }
    text.push(b']');
    serde_json::json!({"sha256": crate::vector::files::sha256_hex(&text), "items": vector.len()})
}

/// `lineage` within [`MAX_LINEAGE_BYTES`]: string values longer than 256 bytes (a long query,
/// a vector's text) become `{"sha256": …, "bytes": n}`, and if it is still too long, the
/// whole lineage becomes its digest.
pub fn capped(lineage: Value) -> Value {
    fn shrink(value: Value) -> Value {
        match value {
            Value::String(s) if s.len() > 256 => serde_json::json!({"sha256": crate::vector::files::sha256_hex(s.as_bytes()), "bytes": s.len()}),
            Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, shrink(v))).collect()),
            Value::Array(items) if items.len() > 64 => {
                let mut text = String::new();
                write_sorted(&mut text, &Value::Array(items.clone()));
                serde_json::json!({"sha256": crate::vector::files::sha256_hex(text.as_bytes()), "items": items.len()})
            }
            other => other,
        }
    }
    let small = shrink(lineage);
    let mut text = String::new();
    write_sorted(&mut text, &small);
    if text.len() <= MAX_LINEAGE_BYTES {
        small
    } else {
        serde_json::json!({"sha256": crate::vector::files::sha256_hex(text.as_bytes()), "bytes": text.len()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn example() -> SearchRecord {
        SearchRecord {
            tenant: "3f2b8c1e-0000-4000-8000-000000000001".into(),
            seq: 7,
            query_id: "0b6f3a52-9c1d-4e8a-9f00-5a7d2c4e1b90".into(),
            time: "2026-12-05T14:30:00Z".into(),
            kind: "hybrid".into(),
            model: Some(("minilm".into(), "v1".into())),
            lineage: json!({"table": "docs", "k": 2, "filter": "lang = 'en'", "text": "zstd \"fast\"", "fusion": {"weights": [0.5, 0.5], "fusion": "weighted"}}),
            results: vec![(json!(42), 0.8125), (json!("pkg-é"), 0.1)],
            key_version: 1,
            prev: "ab".repeat(32),
        }
    }

    /// The test vector of docs/formats.md: if this changes, every stored signature breaks.
    #[test]
    fn the_canonical_form_is_byte_for_byte_the_documented_one() {
        let expected = concat!(
            r#"{"v":1,"tenant":"3f2b8c1e-0000-4000-8000-000000000001","seq":7,"query_id":"0b6f3a52-9c1d-4e8a-9f00-5a7d2c4e1b90","#,
            r#""time":"2026-12-05T14:30:00Z","kind":"hybrid","model":{"name":"minilm","version":"v1"},"#,
            r#""lineage":{"filter":"lang = 'en'","fusion":{"fusion":"weighted","weights":[0.5,0.5]},"k":2,"table":"docs","text":"zstd \"fast\""},"#,
            r#""results":[[42,0.8125],["pkg-é",0.1]],"key_version":1,"prev":"abababababababababababababababababababababababababababababababab"}"#
        );
        assert_eq!(example().canonical(), expected);
        assert_eq!(SearchRecord::parse(expected).unwrap(), example());
        // The signature of the test vector with the documented test key.
        let master = super::super::keys::MasterKey::from_hex(&format!("{}01", "00".repeat(31)), "test").unwrap();
        let key = master.derive(&example().tenant, super::super::keys::SEARCH_KEY_INFO);
        assert_eq!(key.sign(expected.as_bytes()), "5c014bc194214bba8d252f02c871ea08a86bb700a6a08f4c9de54d6e6801ae40");
    }

    #[test]
    fn lineage_is_capped() {
        let long = "x".repeat(10_000);
        let short = capped(json!({"text": long, "k": 3}));
        assert_eq!(short["k"], 3);
        assert_eq!(short["text"]["bytes"], 10_000);
        // The direct form of a vector is what capping its array gives, digest and all.
        for vector in [vec![0.1f32, -2.5, 3.0], (0..384).map(|i| (i as f32).sin() / 7.0).collect::<Vec<f32>>(), vec![1e-30f32; 65]] {
            assert_eq!(vector_lineage(&vector), capped(json!({"v": vector}))["v"], "{} items", vector.len());
        }
        let many: Vec<f32> = (0..384).map(|i| i as f32).collect();
        let short = capped(json!({"vector": many}));
        assert_eq!(short["vector"]["items"], 384);
        let mut text = String::new();
        write_sorted(&mut text, &short);
        assert!(text.len() < 200, "{text}");
    }
}
