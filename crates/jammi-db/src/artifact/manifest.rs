//! `manifest.json`: the list of a bundle's files with their sizes and SHA-256 digests.
//!
//! ```json
//! {"format": 1, "files": [{"name": "config.json", "size": 312, "sha256": "9f86d0…"}]}
//! ```
//!
//! `files` is sorted by name. The manifest is written last, so its presence is what makes a
//! prefix complete; a reader that meets a `format` it does not know refuses the bundle
//! rather than guess.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::artifact::prefix::{PUT_MARKER, RESUME_SEGMENT};
use crate::error::{Error, Result};

/// The manifest's object name inside a prefix.
pub const MANIFEST_NAME: &str = "manifest.json";

/// The manifest format this version writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Name inside the bundle; `/` separates sub-folders.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

/// The parsed `manifest.json` of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// Files, sorted by name, names unique.
    pub files: Vec<ManifestEntry>,
}

impl Manifest {
    /// A manifest over `files`: validated (see [`validate_name`]), sorted by name.
    pub fn new(mut files: Vec<ManifestEntry>) -> Result<Self> {
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest { format: MANIFEST_FORMAT, files };
        manifest.validate()?;
        Ok(manifest)
    }

    /// Parse and validate the bytes of `manifest.json`; `location` names it in errors.
    pub fn parse(bytes: &[u8], location: &str) -> Result<Self> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::Artifact {
            prefix: location.to_string(),
            message: format!("{MANIFEST_NAME} is not a valid manifest ({e}); the prefix is damaged, delete it and put the bundle again"),
        })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(Error::Artifact {
                prefix: location.to_string(),
                message: format!(
                    "{MANIFEST_NAME} has format {} but this jammi-db reads format {MANIFEST_FORMAT}; upgrade jammi-db to read it",
                    manifest.format
                ),
            });
        }
        manifest.validate().map_err(|e| Error::Artifact { prefix: location.to_string(), message: format!("{MANIFEST_NAME}: {e}") })?;
        Ok(manifest)
    }

    /// The JSON bytes written to `manifest.json`.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&ManifestEntry> {
        self.files.binary_search_by(|e| e.name.as_str().cmp(name)).ok().map(|i| &self.files[i])
    }

    /// Total size of the bundle's files in bytes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Lower-case hex SHA-256 over the sorted (name, sha256) pairs: the identity of the
    /// content, used to name cache directories. Each name is length-prefixed so that no two
    /// different lists hash the same bytes.
    pub fn content_key(&self) -> String {
        let mut hasher = Sha256::new();
        for file in &self.files {
            hasher.update((file.name.len() as u64).to_le_bytes());
            hasher.update(file.name.as_bytes());
            hasher.update(file.sha256.as_bytes());
        }
        hex(&hasher.finalize())
    }

    fn validate(&self) -> Result<()> {
        for pair in self.files.windows(2) {
            if pair[0].name >= pair[1].name {
                let message = if pair[0].name == pair[1].name {
                    "appears twice in the bundle; give every file a distinct name"
                } else {
                    "is out of order: manifest files must be sorted by name"
                };
                return Err(Error::InvalidName { name: pair[1].name.clone(), message: message.to_string() });
            }
        }
        for file in &self.files {
            validate_name(&file.name)?;
            if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(Error::InvalidName {
                    name: file.name.clone(),
                    message: format!("sha256 '{}' is not 64 lower-case hex digits", file.sha256),
                });
            }
        }
        Ok(())
    }
}

/// Check a bundle file name: relative, `/`-separated, no empty, `.` or `..` component, no
/// control characters, and not one of the store's reserved names (`manifest.json` and
/// `_put` at the top, anything under `_resume/`).
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |message: &str| Err(Error::InvalidName { name: name.to_string(), message: message.to_string() });
    if name.is_empty() {
        return bad("a bundle file name may not be empty");
    }
    if name.starts_with('/') {
        return bad("bundle file names are relative; drop the leading '/'");
    }
    if name.chars().any(char::is_control) {
        return bad("bundle file names may not contain control characters");
    }
    for component in name.split('/') {
        match component {
            "" => return bad("empty path component ('//' or a trailing '/'); name the file inside the folder"),
            "." | ".." => return bad("'.' and '..' are not allowed in bundle file names"),
            _ => {}
        }
    }
    if name == MANIFEST_NAME || name == PUT_MARKER {
        return bad("'manifest.json' and '_put' are written by the artifact store itself; rename the file");
    }
    if name.split('/').next() == Some(RESUME_SEGMENT) {
        return bad("'_resume/' is reserved for resume checkpoints; rename the folder");
    }
    Ok(())
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> ManifestEntry {
        ManifestEntry { name: name.to_string(), size: 1, sha256: "0".repeat(64) }
    }

    #[test]
    fn names_are_validated() {
        for bad in ["", "/abs", "a//b", "a/", "../x", "a/./b", "manifest.json", "_put", "_resume/x", "a\nb"] {
            assert!(validate_name(bad).is_err(), "{bad} accepted");
        }
        for good in ["config.json", "sub/dir/weights.bin", "sub/manifest.json", "a b.txt", "_x"] {
            validate_name(good).unwrap();
        }
    }

    #[test]
    fn manifests_sort_refuse_duplicates_and_round_trip() {
        let m = Manifest::new(vec![entry("b"), entry("a")]).unwrap();
        assert_eq!(m.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert!(Manifest::new(vec![entry("a"), entry("a")]).is_err());
        assert_eq!(Manifest::parse(&m.to_json(), "x").unwrap(), m);
        let future = br#"{"format": 2, "files": []}"#;
        assert!(Manifest::parse(future, "x").unwrap_err().to_string().contains("format 2"));
        assert_ne!(m.content_key(), Manifest::new(vec![entry("a")]).unwrap().content_key());
    }
}
