//! [`StorageUrl`]: a parsed, normalised storage location.

use std::fmt;
use std::path::{Path, PathBuf};

use object_store::path::Path as ObjectPath;
use url::Url;

use crate::error::{Error, Result};

/// Schemes jammi-db understands.
const SCHEMES: &[&str] = &["file", "memory", "s3", "s3a", "r2", "gs", "azure", "az", "abfs", "abfss"];

/// A storage location: a local path or an object-store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageUrl {
    url: Url,
}

impl StorageUrl {
    /// Parse a local path (absolute or relative to the current directory) or a URL.
    /// A trailing `/` is kept: it marks a directory (prefix).
    pub fn parse(input: &str) -> Result<Self> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid_url(input, "empty location"));
        }
        if let Some((scheme, _)) = trimmed.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if !SCHEMES.contains(&scheme.as_str()) {
                return Err(Error::invalid_url(
                    input,
                    format!("unsupported scheme '{scheme}://'; use a local path or one of file, memory, s3, r2, gs, azure"),
                ));
            }
            let url = Url::parse(trimmed).map_err(|e| Error::invalid_url(input, e.to_string()))?;
            if scheme == "file" {
                if url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
                    return Err(Error::invalid_url(input, "file:// URLs take an absolute path: file:///path/to/data"));
                }
            } else if url.host_str().is_none_or(str::is_empty) {
                return Err(Error::invalid_url(input, format!("missing bucket: write {scheme}://BUCKET/path")));
            }
            return Ok(StorageUrl { url });
        }
        Self::from_local_path(Path::new(trimmed), trimmed.ends_with('/'))
    }

    /// A `file://` URL for a local path, made absolute against the current directory.
    pub fn from_local_path(path: &Path, is_dir_hint: bool) -> Result<Self> {
        let absolute: PathBuf = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map_err(|e| Error::io(path, e))?.join(path)
        };
        let normalised = normalise(&absolute);
        let is_dir = is_dir_hint || normalised.is_dir();
        let url = if is_dir { Url::from_directory_path(&normalised) } else { Url::from_file_path(&normalised) }
            .map_err(|_| Error::invalid_url(path.display().to_string(), "not a valid local path"))?;
        Ok(StorageUrl { url })
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The scheme (`file`, `s3`, ...).
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// True for local files.
    pub fn is_local(&self) -> bool {
        self.scheme() == "file"
    }

    /// The local path of a `file://` URL.
    pub fn local_path(&self) -> Option<PathBuf> {
        self.is_local().then(|| self.url.to_file_path().ok()).flatten()
    }

    /// The bucket (host part) of an object-store URL.
    pub fn bucket(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// `scheme://bucket/`: the key under which a store is registered.
    pub fn store_root(&self) -> Url {
        let mut root = self.url.clone();
        root.set_path("/");
        root.set_query(None);
        root.set_fragment(None);
        root
    }

    /// The path inside the store.
    pub fn object_path(&self) -> Result<ObjectPath> {
        let decoded = percent_decode(self.url.path());
        ObjectPath::parse(decoded.trim_start_matches('/'))
            .map_err(|e| Error::invalid_url(self.url.as_str(), e.to_string()))
    }

    /// True when the URL ends in `/` (names a directory or prefix).
    pub fn is_dir_syntax(&self) -> bool {
        self.url.path().ends_with('/')
    }

    /// The same location, marked as a directory (trailing `/`).
    pub fn as_dir(&self) -> Self {
        let mut url = self.url.clone();
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        StorageUrl { url }
    }

    /// The last path segment (file or directory name), percent-decoded.
    pub fn last_segment(&self) -> Option<String> {
        self.url
            .path_segments()
            .and_then(|segments| segments.filter(|s| !s.is_empty()).last().map(percent_decode))
    }

    /// The URL text with any embedded password hidden.
    pub fn redacted(&self) -> String {
        crate::redact::redact_url(self.url.as_str())
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Remove `.` and `..` components without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_file_urls() {
        let u = StorageUrl::parse("/tmp/x/../data.parquet").unwrap();
        assert_eq!(u.url().as_str(), "file:///tmp/data.parquet");
        assert!(u.is_local());
        assert_eq!(u.last_segment().as_deref(), Some("data.parquet"));
        let rel = StorageUrl::parse("rel dir/").unwrap();
        assert!(rel.is_dir_syntax());
        assert_eq!(rel.last_segment().as_deref(), Some("rel dir"));
    }

    #[test]
    fn object_store_urls() {
        let u = StorageUrl::parse("s3://bucket/a/b.csv").unwrap();
        assert_eq!(u.bucket(), "bucket");
        assert_eq!(u.object_path().unwrap().as_ref(), "a/b.csv");
        assert_eq!(u.store_root().as_str(), "s3://bucket/");
        assert_eq!(u.as_dir().url().as_str(), "s3://bucket/a/b.csv/");
    }

    #[test]
    fn bad_urls_are_named() {
        for bad in ["ftp://x/y", "s3:///nobucket", "", "file://host/x"] {
            let err = StorageUrl::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid URL"), "{bad}: {err}");
        }
    }
}
