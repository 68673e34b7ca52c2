//! Names of sources and tables.

use crate::error::{Error, Result};
use crate::names::RESERVED_CATALOGS;

/// A source name must be a plain lower-case SQL identifier, so that `NAME.public.T` works
/// without quoting, and must not be one of the reserved catalog names.
pub fn validate_source_name(name: &str) -> Result<()> {
    let invalid = |message: &str| Err(Error::InvalidName { name: name.to_string(), message: message.to_string() });
    if name.is_empty() {
        return invalid("a source name cannot be empty");
    }
    if name.len() > 63 {
        return invalid("a source name has at most 63 characters");
    }
    let mut chars = name.chars();
    let first = chars.next().unwrap_or_default();
    if !(first.is_ascii_lowercase() || first == '_') {
        return invalid("a source name starts with a lower-case letter or '_' (e.g. sales_2024)");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return invalid("a source name uses only lower-case letters, digits and '_' (e.g. sales_2024)");
    }
    if RESERVED_CATALOGS.contains(&name) {
        return invalid("this name is reserved by jammi-db; pick another");
    }
    Ok(())
}

/// Turn a file stem or directory name into a table name: lower case, and every character
/// that is not a letter, digit or `_` becomes `_` (`Sales 2024-Q1` → `sales_2024_q1`).
pub fn table_name_from(stem: &str) -> String {
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names() {
        assert!(validate_source_name("sales_2024").is_ok());
        for bad in ["", "Sales", "1x", "a-b", "mutable", "vectors", "topics", "a b"] {
            assert!(validate_source_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_names() {
        assert_eq!(table_name_from("Sales 2024-Q1"), "sales_2024_q1");
        assert_eq!(table_name_from("2024"), "_2024");
    }
}
