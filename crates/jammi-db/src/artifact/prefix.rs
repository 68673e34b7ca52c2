//! Prefix layout: how caller-given segments and bundle file names become object keys.
//!
//! Every segment is encoded on its own, injectively: `A-Z a-z 0-9 _ - .` stay as they are and
//! every other byte (UTF-8) becomes `%XX`, `%` itself included. Decoding is unique, so two
//! different segments never encode to the same text, and because no encoded segment contains
//! `/` and none is empty, two different segment lists never produce the same prefix. A
//! segment made only of dots (`.`, `..`) has its dots encoded so that no file system or URL
//! normaliser can read it as "this directory" or "the parent", and a leading `_` is encoded
//! so that callers can never spell the store's own `_resume` folder.

use object_store::path::Path as ObjectPath;

use crate::error::{Error, Result};
use crate::storage::StorageUrl;
use crate::tenant::TenantId;

/// The folder, under a job's prefix, that holds its resume checkpoint.
pub(crate) const RESUME_SEGMENT: &str = "_resume";

/// The object a put writes before its data files and removes after its manifest: a prefix
/// holding it but no manifest is an unfinished put, which a delete may collect by listing.
pub(crate) const PUT_MARKER: &str = "_put";

/// The first segment of every prefix an owner writes: `tenant-<uuid>` for a tenant's
/// artifacts, `shared` for the operator's. One tenant's prefixes never lie under another's.
pub(crate) fn owner_segment(owner: Option<TenantId>) -> String {
    owner.map_or_else(|| "shared".to_string(), |t| format!("tenant-{t}"))
}

/// The segments a store bound to `owner` writes under: a tenant's start with its own
/// segment (added when the caller did not give it); the operator's are taken as given.
pub(crate) fn owned_segments<'a>(owner: Option<TenantId>, segments: &[&'a str]) -> Vec<std::borrow::Cow<'a, str>> {
    let mut out: Vec<std::borrow::Cow<'a, str>> = segments.iter().map(|s| std::borrow::Cow::Borrowed(*s)).collect();
    if owner.is_some() {
        let own = owner_segment(owner);
        if segments.first() != Some(&own.as_str()) {
            out.insert(0, std::borrow::Cow::Owned(own));
        }
    }
    out
}

/// Refuse, for a store bound to tenant `owner`, a prefix under another tenant's segment:
/// tenants read their own artifacts and shared ones, never each other's.
pub(crate) fn check_owner_reaches(owner: Option<TenantId>, prefix: &StorageUrl) -> Result<()> {
    let Some(owner) = owner else { return Ok(()) };
    let own = owner_segment(Some(owner));
    let foreign = prefix
        .url()
        .path_segments()
        .into_iter()
        .flatten()
        .find(|s| *s != own && s.strip_prefix("tenant-").is_some_and(|id| id.parse::<TenantId>().is_ok()));
    match foreign {
        Some(segment) => Err(Error::PermissionDenied {
            message: format!("artifact prefix {prefix} lies under '{segment}', another tenant's artifacts; a tenant reaches only prefixes under '{own}' and shared ones"),
        }),
        None => Ok(()),
    }
}

/// Encode one caller-given prefix segment (see the module docs). An empty segment is an
/// error naming its position, since it would silently merge two levels of the prefix.
pub fn encode_segment(segment: &str) -> Result<String> {
    if segment.is_empty() {
        return Err(Error::InvalidName {
            name: segment.to_string(),
            message: "an artifact prefix segment may not be empty; pass a non-empty job, worker or attempt id".to_string(),
        });
    }
    Ok(encode(segment, true))
}

/// Encode one component of a bundle file name. Same alphabet as segments, but a leading `_`
/// stays: names are validated by the manifest instead (`_resume` is reserved there).
pub(crate) fn encode_component(component: &str) -> String {
    encode(component, false)
}

fn encode(text: &str, escape_leading_underscore: bool) -> String {
    let only_dots = text.bytes().all(|b| b == b'.');
    let mut out = String::with_capacity(text.len());
    for (i, b) in text.bytes().enumerate() {
        let keep = match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => true,
            b'_' => !(i == 0 && escape_leading_underscore),
            b'.' => !only_dots,
            _ => false,
        };
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The relative key of a (validated) bundle file name: each `/`-separated component
/// encoded, joined with `/`.
pub(crate) fn encode_name(name: &str) -> String {
    name.split('/').map(encode_component).collect::<Vec<_>>().join("/")
}

/// The prefix URL for `segments` under `root`: `root/<seg1>/<seg2>/.../` with each segment
/// encoded. The URL spells each `%` of the encoding as `%25`, so that reading the URL back
/// ([`StorageUrl::object_path`] decodes once) yields exactly the encoded key.
pub fn prefix_url(root: &StorageUrl, segments: &[&str]) -> Result<StorageUrl> {
    if segments.is_empty() {
        return Err(Error::InvalidName {
            name: String::new(),
            message: "an artifact prefix needs at least one segment (e.g. job, worker, attempt)".to_string(),
        });
    }
    let encoded = segments.iter().map(|s| encode_segment(s)).collect::<Result<Vec<_>>>()?;
    let mut url = root.as_dir().url().clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url.path_segments_mut().map_err(|_| Error::invalid_url(root.url().as_str(), "cannot hold an artifact prefix"))?;
        // `as_dir` left an empty last segment (the trailing `/`); replace it.
        path.pop_if_empty();
        // `push` percent-encodes `%` (and nothing our alphabet keeps), hence the `%25`.
        path.extend(encoded.iter().map(String::as_str));
        path.push("");
    }
    StorageUrl::parse(url.as_str())
}

/// The checkpoint prefix of a job: the job's prefix plus the reserved `_resume` folder.
pub(crate) fn checkpoint_url(root: &StorageUrl, job_segments: &[&str]) -> Result<StorageUrl> {
    let job = prefix_url(root, job_segments)?;
    let mut url = job.url().clone();
    url.path_segments_mut()
        .map_err(|_| Error::invalid_url(root.url().as_str(), "cannot hold an artifact prefix"))?
        .pop_if_empty()
        .push(RESUME_SEGMENT)
        .push("");
    StorageUrl::parse(url.as_str())
}

/// The object key of a prefix (no trailing `/`; empty for a bucket root).
pub(crate) fn prefix_key(prefix: &StorageUrl) -> Result<ObjectPath> {
    prefix.object_path()
}

/// The object key of `relative` (an encoded name, or `manifest.json`) under `prefix`.
pub(crate) fn child_key(prefix: &ObjectPath, relative: &str) -> Result<ObjectPath> {
    let text = if prefix.as_ref().is_empty() { relative.to_string() } else { format!("{}/{relative}", prefix.as_ref()) };
    ObjectPath::parse(&text).map_err(|e| Error::invalid_url(text.clone(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_plain_names_and_escapes_the_rest() {
        assert_eq!(encode_segment("job-42_a.b").unwrap(), "job-42_a.b");
        assert_eq!(encode_segment("../x").unwrap(), "..%2Fx");
        assert_eq!(encode_segment("a/b").unwrap(), "a%2Fb");
        assert_eq!(encode_segment("a\\b").unwrap(), "a%5Cb");
        assert_eq!(encode_segment("c:d").unwrap(), "c%3Ad");
        assert_eq!(encode_segment("a b").unwrap(), "a%20b");
        assert_eq!(encode_segment("%").unwrap(), "%25");
        assert_eq!(encode_segment(".").unwrap(), "%2E");
        assert_eq!(encode_segment("..").unwrap(), "%2E%2E");
        assert_eq!(encode_segment("_resume").unwrap(), "%5Fresume");
        assert_eq!(encode_segment("é").unwrap(), "%C3%A9");
        assert!(encode_segment("").is_err());
    }

    #[test]
    fn prefix_urls_round_trip_to_the_encoded_key() {
        let root = StorageUrl::parse("s3://bucket/models").unwrap();
        let prefix = prefix_url(&root, &["a/b", "c d", "%2F"]).unwrap();
        assert_eq!(prefix.url().as_str(), "s3://bucket/models/a%252Fb/c%2520d/%25252F/");
        assert_eq!(prefix_key(&prefix).unwrap().as_ref(), "models/a%2Fb/c%20d/%252F");
        let resume = checkpoint_url(&root, &["job"]).unwrap();
        assert_eq!(prefix_key(&resume).unwrap().as_ref(), "models/job/_resume");
    }
}
