//! One byte string for a whole tantivy index: the index's files (as its managed-file list
//! names them, plus `meta.json`), each as name and bytes, after a magic header. Unpacked
//! into a `RamDirectory`.

use std::path::{Path, PathBuf};

use tantivy::directory::{Directory, RamDirectory};

use crate::TextError;

const MAGIC: &[u8; 8] = b"JTXTIDX1";

pub(crate) fn pack(directory: &RamDirectory) -> Result<Vec<u8>, TextError> {
    let damaged = |e: &dyn std::fmt::Display| TextError::Damaged(e.to_string());
    let managed = directory.atomic_read(Path::new(".managed.json")).map_err(|e| damaged(&e))?;
    let mut names: Vec<PathBuf> = serde_json::from_slice(&managed).map_err(|e| damaged(&e))?;
    names.push(PathBuf::from(".managed.json"));
    names.sort();
    names.dedup();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for name in names {
        let bytes = match directory.atomic_read(&name) {
            Ok(bytes) => bytes,
            // The managed list may name files a merge already removed.
            Err(tantivy::directory::error::OpenReadError::FileDoesNotExist(_)) => continue,
            Err(e) => return Err(damaged(&e)),
        };
        let name = name.to_string_lossy().into_owned();
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], TextError> {
    if bytes.len() < n {
        return Err(TextError::Damaged("it ends early".into()));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

pub(crate) fn unpack(bytes: &[u8]) -> Result<RamDirectory, TextError> {
    let mut rest = bytes;
    if take(&mut rest, MAGIC.len())? != MAGIC {
        return Err(TextError::Damaged("it is not a jammi text index".into()));
    }
    let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
    let directory = RamDirectory::create();
    for _ in 0..count {
        let name_len = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
        let name = std::str::from_utf8(take(&mut rest, name_len)?).map_err(|_| TextError::Damaged("a file name is not UTF-8".into()))?.to_string();
        let len = u64::from_le_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let len = usize::try_from(len).map_err(|_| TextError::Damaged("a file is too large".into()))?;
        let data = take(&mut rest, len)?;
        if name.contains("..") || name.starts_with('/') {
            return Err(TextError::Damaged(format!("file name {name:?} is not allowed")));
        }
        directory.atomic_write(Path::new(&name), data).map_err(|e| TextError::Damaged(e.to_string()))?;
    }
    if !rest.is_empty() {
        return Err(TextError::Damaged("it has bytes after its last file".into()));
    }
    Ok(directory)
}
