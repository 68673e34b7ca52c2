//! Text forms of values that several parts read: vector literals (`[0.1, 0.2]`), in
//! vector-typed columns of mutable tables and in vector search arguments.

/// Parse `[0.1, 0.2, ...]` (brackets optional).
pub fn parse_vector_text(text: &str) -> Option<Vec<f32>> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    if inner.trim().is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(memchr::memchr_iter(b',', inner.as_bytes()).count() + 1);
    for number in inner.split(',') {
        let number = number.trim();
        // lexical's reader is about twice as fast as the standard library's on these short
        // decimals and rounds the same; anything it refuses gets the standard reading.
        out.push(lexical_core::parse::<f32>(number.as_bytes()).ok().or_else(|| number.parse::<f32>().ok())?);
    }
    Some(out)
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
        assert_eq!(parse_vector_text("[1e-3, -0.5E2, +2, .5, 3., inf]"), Some(vec![0.001, -50.0, 2.0, 0.5, 3.0, f32::INFINITY]));
        // Correctly rounded, as the standard reader.
        for text in ["0.1", "0.0123456789", "-1.17549435e-38", "3.4028235e38", "0.30000001192092896"] {
            assert_eq!(parse_vector_text(text), Some(vec![text.parse::<f32>().unwrap()]), "{text}");
        }
    }
}
