//! Text forms of values that several parts read: vector literals (`[0.1, 0.2]`), in
//! vector-typed columns of mutable tables and in vector search arguments.

/// Parse `[0.1, 0.2, ...]` (brackets optional).
pub fn parse_vector_text(text: &str) -> Option<Vec<f32>> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    if inner.trim().is_empty() {
        return None;
    }
    inner.split(',').map(|v| v.trim().parse::<f32>().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_text_parses_with_and_without_brackets() {
        assert_eq!(parse_vector_text("[1, -2.5]"), Some(vec![1.0, -2.5]));
        assert_eq!(parse_vector_text("1,2"), Some(vec![1.0, 2.0]));
        assert_eq!(parse_vector_text("[]"), None);
        assert_eq!(parse_vector_text("[1, x]"), None);
    }
}
