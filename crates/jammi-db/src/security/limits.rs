//! Bounds on every input a client controls. Going past one is a clean error naming the
//! argument and the limit (the server answers HTTP 400, SQLSTATE 22023 or Flight
//! `InvalidArgument`), checked before anything is allocated for it.

use crate::error::{Error, Result};

/// Largest `k` of one vector search.
pub const MAX_K: usize = 10_000;
/// Longest text query (bytes); the model truncates to its token limit anyway.
pub const MAX_QUERY_TEXT_BYTES: usize = 64 * 1024;
/// Largest search beam width (`ef`) of one vector search.
pub const MAX_EF: usize = 10_000;
/// Longest filter predicate (vector search, topic subscriptions), in bytes.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;
/// Deepest nesting of a filter predicate (parentheses, operators).
pub const MAX_FILTER_DEPTH: usize = 64;
/// Most dimensions of a vector table.
pub const MAX_DIMENSIONS: usize = 65_536;
/// Most query vectors in one batch search.
pub const MAX_BATCH_QUERIES: usize = 100_000;
/// Result rows one batched search may ask for (the sum of its requests' `k`).
pub const MAX_BATCH_RESULT_ROWS: usize = 10_000_000;
/// Largest topic event (its JSON form), in bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// Longest line of an NDJSON input, in bytes.
pub const MAX_NDJSON_LINE_BYTES: usize = 1 << 20;

/// Most bytes of rows `CREATE TABLE vectors.public.T … AS SELECT` collects (they are held
/// in memory while embedded and written); larger tables come from `jammi vectors import` of
/// a file or follow a mutable table.
pub const MAX_QUERY_IMPORT_BYTES: usize = 256 << 20;

/// Most offsets acknowledged in one call (`Topics::ack`, `POST /v1/topics/{name}/ack`).
pub const MAX_ACK_OFFSETS: usize = 10_000;

/// `argument` = `value` must be at most `limit`.
pub fn at_most(argument: &str, value: usize, limit: usize) -> Result<()> {
    if value <= limit {
        Ok(())
    } else {
        Err(Error::LimitExceeded { argument: argument.to_string(), value: value.to_string(), limit: limit.to_string() })
    }
}

/// A filter predicate: at most [`MAX_FILTER_BYTES`] long and [`MAX_FILTER_DEPTH`] deep
/// (counted on its brackets before it is parsed, so a deep one never reaches the parser).
pub fn check_filter(argument: &str, filter: &str) -> Result<()> {
    at_most(&format!("{argument} (bytes)"), filter.len(), MAX_FILTER_BYTES)?;
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for c in filter.chars() {
        match c {
            '(' | '[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    at_most(&format!("{argument} (nesting depth)"), deepest, MAX_FILTER_DEPTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_argument() {
        let err = at_most("k", 10_001, MAX_K).unwrap_err().to_string();
        assert!(err.contains("'k'") && err.contains("10001") && err.contains("10000"), "{err}");
        assert!(check_filter("filter", &"(".repeat(65)).unwrap_err().to_string().contains("nesting depth"));
        assert!(check_filter("filter", &"a".repeat(MAX_FILTER_BYTES + 1)).unwrap_err().to_string().contains("bytes"));
        assert!(check_filter("filter", "(a = 1) AND (b IN (1, 2))").is_ok());
    }
}
