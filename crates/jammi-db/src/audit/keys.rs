//! Audit keys: a 32-byte master key per key version from a [`KeyStore`], a per-tenant key
//! derived from it with HKDF-SHA256, and HMAC-SHA256 signatures. Key bytes never leave this
//! module: they are not `Debug`, not in errors, not in logs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// HKDF `info` for search records (the key's purpose and format version).
pub const SEARCH_KEY_INFO: &[u8] = b"jammi-audit-search-v1";

/// A master key: 32 bytes.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// A key from 64 hexadecimal characters; `source` names where they came from (never
    /// the characters themselves) for the error.
    pub fn from_hex(text: &str, source: &str) -> Result<Self> {
        let text = text.trim();
        let bytes = hex::decode(text).map_err(|_| Error::invalid("audit key", format!("{source} does not hold a key: give 64 hexadecimal characters (32 bytes)")))?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| Error::invalid("audit key", format!("{source} holds {} bytes; an audit key is 32 bytes (64 hexadecimal characters)", b.len())))?;
        Ok(MasterKey(key))
    }

    /// The key of `tenant`: HKDF-SHA256 with the tenant id's bytes as salt, this key as input
    /// key material and `info`.
    pub fn derive(&self, tenant: &str, info: &[u8]) -> TenantKey {
        let hkdf = hkdf::Hkdf::<Sha256>::new(Some(tenant.as_bytes()), &self.0);
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8,160-byte limit: this cannot fail.
        hkdf.expand(info, &mut out).expect("32 bytes of HKDF-SHA256 output");
        TenantKey(out)
    }
}

/// A tenant's derived signing key.
#[derive(Clone)]
pub struct TenantKey([u8; 32]);

impl std::fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantKey(…)")
    }
}

impl TenantKey {
    /// HMAC-SHA256 of `message`, lower-case hex.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.mac(message).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is this key's signature of `message`, compared in constant
    /// time.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(message).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    fn mac(&self, message: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(message);
        mac
    }
}

/// Where master keys come from. A KMS integration implements this; the engine asks for the
/// current version when it signs and for any version when it verifies.
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// The version new records are signed with.
    fn current_version(&self) -> u32;
    /// The master key of `version` (old versions stay available so old records verify).
    fn key(&self, version: u32) -> Result<MasterKey>;
}

/// The key file a server uses when no key is configured: `<data_dir>/audit.key`, created
/// with a fresh random key (readable by its owner only) the first time.
pub fn local_key_file(data_dir: &std::path::Path) -> Result<PathBuf> {
    let path = data_dir.join("audit.key");
    if path.exists() {
        return Ok(path);
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| Error::invalid("audit key", format!("no random source for a new audit key ({e}); set JAMMI_AUDIT_KEY")))?;
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(&path) {
        Ok(file) => file,
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(path),
        Err(e) => return Err(Error::io(&path, e)),
    };
    use std::io::Write;
    file.write_all(format!("1={}\n", hex::encode(key)).as_bytes()).and_then(|_| file.sync_all()).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// Keys held in memory: version → key.
#[derive(Debug, Clone)]
pub struct StaticKeys {
    keys: BTreeMap<u32, MasterKey>,
    current: u32,
}

impl StaticKeys {
    /// One key, version 1.
    pub fn single(key: MasterKey) -> Self {
        StaticKeys { keys: BTreeMap::from([(1, key)]), current: 1 }
    }

    /// Every version given; the highest signs.
    pub fn versions(keys: BTreeMap<u32, MasterKey>) -> Result<Self> {
        let current = *keys.keys().next_back().ok_or_else(|| Error::invalid("audit key", "no audit key is configured"))?;
        Ok(StaticKeys { keys, current })
    }

    /// Keys from the environment: `VAR` is version 1, and `VAR_V2`, `VAR_V3`, … later
    /// versions (the highest signs).
    pub fn from_env(var: &str) -> Result<Self> {
        let mut keys = BTreeMap::new();
        if let Ok(text) = std::env::var(var) {
            keys.insert(1, MasterKey::from_hex(&text, &format!("environment variable {var}"))?);
        }
        for (name, value) in std::env::vars() {
            if let Some(version) = name.strip_prefix(&format!("{var}_V")).and_then(|v| v.parse::<u32>().ok()) {
                keys.insert(version, MasterKey::from_hex(&value, &format!("environment variable {name}"))?);
            }
        }
        if keys.is_empty() {
            return Err(Error::invalid("audit key", format!("auditing is on but environment variable {var} is not set; set it to 64 hexadecimal characters (e.g. from `openssl rand -hex 32`), or set [audit] key_file")));
        }
        Self::versions(keys)
    }

    /// Keys from a file: one `VERSION=HEX` per line (or a single line of hex: version 1).
    pub fn from_file(path: &PathBuf) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let source = format!("audit key file {}", path.display());
        let mut keys = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            match line.split_once('=') {
                Some((version, hex)) => {
                    let version: u32 = version.trim().parse().map_err(|_| Error::invalid("audit key", format!("{source}: '{}' is not a key version", version.trim())))?;
                    keys.insert(version, MasterKey::from_hex(hex, &source)?);
                }
                None => {
                    keys.insert(1, MasterKey::from_hex(line, &source)?);
                }
            }
        }
        Self::versions(keys)
    }
}

impl KeyStore for StaticKeys {
    fn current_version(&self) -> u32 {
        self.current
    }

    fn key(&self, version: u32) -> Result<MasterKey> {
        self.keys.get(&version).cloned().ok_or_else(|| Error::invalid("audit key", format!("audit key version {version} is not configured; records it signed cannot be verified without it")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_matches_rfc_5869_test_case_1() {
        // RFC 5869 A.1 with a 22-byte IKM; our keys are 32 bytes, so check the primitive the
        // way `derive` calls it.
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        hkdf::Hkdf::<Sha256>::new(Some(&salt), &ikm).expand(&info, &mut okm).unwrap();
        assert_eq!(hex::encode(okm), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let key = b"Jefe";
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac.finalize().into_bytes()), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn tenants_get_different_keys_and_keys_never_print() {
        let master = MasterKey::from_hex(&"11".repeat(32), "test").unwrap();
        let a = master.derive("tenant-a", SEARCH_KEY_INFO);
        let b = master.derive("tenant-b", SEARCH_KEY_INFO);
        let signature = a.sign(b"record");
        assert!(a.verify(b"record", &signature));
        assert!(!b.verify(b"record", &signature), "another tenant's key does not verify");
        assert!(!a.verify(b"record!", &signature));
        assert!(!a.verify(b"record", "not hex"));
        assert_eq!(format!("{master:?} {a:?}"), "MasterKey(…) TenantKey(…)");
        let e = MasterKey::from_hex("abcd", "environment variable K").unwrap_err().to_string();
        assert!(e.contains("2 bytes") && !e.contains("abcd"), "{e}");
        assert!(MasterKey::from_hex(&"zz".repeat(32), "x").is_err());
    }
}
