//! Secrets kept out of what the engine prints: passwords in URLs (catalog, database
//! sources, storage endpoints) are replaced before a URL reaches a message, a log line or a
//! listing.

/// Replace the password of a URL with `***` (`postgres://u:***@host/db`).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
