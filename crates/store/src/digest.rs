//! Content digests: the only way a string from a manifest becomes part of a file path.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{io_err, Result, StoreError};

/// Longest slice of a rejected digest that an error message repeats.
const SHOWN_CHARS: usize = 100;

/// A validated `sha256:<64 lowercase hex>` digest.
///
/// The only constructors are [`Digest::parse`], which checks the exact format, and hashing, so a
/// `Digest` can be turned into a file name (`sha256-<hex>`) without any path traversal risk — the
/// hole behind CVE-2024-37032 in Ollama.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex digits>`; `context` says where the string came from, for
    /// the error message (e.g. "layer 2 of the manifest of llama3:latest").
    pub fn parse(s: &str, context: &str) -> Result<Digest> {
        let reject = |reason: String| StoreError::InvalidDigest {
            digest: s.chars().take(SHOWN_CHARS).collect(),
            context: context.to_string(),
            reason,
        };
        let Some(hex) = s.strip_prefix("sha256:") else {
            return Err(reject("it does not start with \"sha256:\"".into()));
        };
        if hex.len() != 64 {
            return Err(reject(format!(
                "it has {} characters after \"sha256:\" instead of 64",
                hex.len()
            )));
        }
        if let Some(c) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(reject(format!("{c:?} is not a lowercase hex digit")));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of a byte string.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// Hashes a whole file, returning its digest and length.
    pub fn of_file(path: &Path) -> Result<(Digest, u64)> {
        let mut file = File::open(path).map_err(io_err("open", path))?;
        let mut hasher = Sha256::new();
        let len = hash_reader(&mut file, &mut hasher).map_err(io_err("read", path))?;
        Ok((Digest::from_hasher(hasher), len))
    }

    /// Finishes a running hash.
    pub(crate) fn from_hasher(hasher: Sha256) -> Digest {
        let hex = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Digest { hex }
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, the short id `list` shows (as Ollama does).
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// The blob's file name in a store: `sha256-<hex>` (a colon is not portable in file names).
    pub fn file_name(&self) -> String {
        format!("sha256-{}", self.hex)
    }

    /// The digest a blob file name stands for, if it is exactly `sha256-<hex>`.
    pub(crate) fn from_file_name(name: &str) -> Option<Digest> {
        let hex = name.strip_prefix("sha256-")?;
        Digest::parse(&format!("sha256:{hex}"), "a blob file name").ok()
    }
}

/// Feeds everything `reader` yields into `hasher`; returns the byte count.
pub(crate) fn hash_reader(reader: &mut impl Read, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_input_hashes_to_the_known_digest() {
        assert_eq!(Digest::of_bytes(b"").hex(), HEX);
    }

    #[test]
    fn accepts_exactly_sha256_and_64_lowercase_hex() {
        let d = Digest::parse(&format!("sha256:{HEX}"), "test").unwrap();
        assert_eq!(d.file_name(), format!("sha256-{HEX}"));
        assert_eq!(d.short(), &HEX[..12]);
        assert_eq!(Digest::from_file_name(&d.file_name()), Some(d));
    }

    #[test]
    fn rejects_traversal_wrong_length_case_and_prefix() {
        let upper = format!("sha256:{}", HEX.to_uppercase());
        let long = format!("sha256:{HEX}0");
        let dash = format!("sha256-{HEX}");
        let evil = format!("sha256:../../{}", &HEX[..58]);
        for bad in [
            "sha256:../../x",
            "sha256:",
            "",
            "md5:abc",
            &upper,
            &long,
            &dash,
            &evil,
        ] {
            let err = Digest::parse(bad, "layer 1").unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidDigest { .. }),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            Digest::from_file_name(&format!("sha256-{HEX}-partial")),
            None
        );
    }

    #[test]
    fn error_repeats_at_most_a_bounded_prefix() {
        let huge = format!("sha256:{}", "x".repeat(1 << 20));
        let msg = Digest::parse(&huge, "layer 1").unwrap_err().to_string();
        assert!(msg.len() < 1000, "{}", msg.len());
    }
}
