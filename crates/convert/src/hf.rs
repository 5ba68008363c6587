//! The JSON files of a Hugging Face model directory: `config.json` and friends.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::io_err;
use crate::ConvertError;

/// Reads and parses the JSON file at `path`; a missing file is [`ConvertError::MissingFile`].
pub(crate) fn read_json(path: &Path) -> Result<Value, ConvertError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ConvertError::MissingFile {
            path: path.to_owned(),
        },
        _ => io_err("read", path)(e),
    })?;
    serde_json::from_str(&text).map_err(|source| ConvertError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Reads the JSON file at `path` if it exists.
pub(crate) fn read_json_if_present(path: &Path) -> Result<Option<Value>, ConvertError> {
    match read_json(path) {
        Err(ConvertError::MissingFile { .. }) => Ok(None),
        other => other.map(Some),
    }
}

/// `config.json`: the model's hyper-parameters, read by key as the architecture tables ask,
/// with the defaults transformers assumes for keys a file leaves out.
pub(crate) struct Config {
    path: PathBuf,
    json: Map<String, Value>,
    /// Keys set by [`Config::default`] rather than by the file.
    defaulted: HashSet<String>,
}

impl Config {
    /// Reads `dir/config.json`.
    pub(crate) fn read(dir: &Path) -> Result<Config, ConvertError> {
        let path = dir.join("config.json");
        match read_json(&path)? {
            Value::Object(json) => Ok(Config {
                path,
                json,
                defaulted: HashSet::new(),
            }),
            _ => Err(ConvertError::BadKey {
                path,
                key: "(top level)".into(),
                expected: "a JSON object",
            }),
        }
    }

    /// [`ConvertError::BadKey`] for `key` of this file.
    pub(crate) fn bad(&self, key: &str, expected: &'static str) -> ConvertError {
        ConvertError::BadKey {
            path: self.path.clone(),
            key: key.to_owned(),
            expected,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The value of `key` unless it is missing or null.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    /// Whether config.json itself gives `key` (not null, not a default).
    pub(crate) fn given(&self, key: &str) -> bool {
        self.get(key).is_some() && !self.defaulted.contains(key)
    }

    /// Sets `key` to `value` where config.json leaves it out (or null).
    pub(crate) fn default(&mut self, key: &str, value: impl Into<Value>) {
        if self.get(key).is_none() {
            self.json.insert(key.to_owned(), value.into());
            self.defaulted.insert(key.to_owned());
        }
    }

    /// A positive integer; `a*b` is the product of the keys `a` and `b`.
    pub(crate) fn u64(&self, key: &str) -> Result<u64, ConvertError> {
        if let Some((a, b)) = key.split_once('*') {
            return self
                .u64(a)?
                .checked_mul(self.u64(b)?)
                .ok_or_else(|| self.bad(key, "a product below 2^64"));
        }
        self.json
            .get(key)
            .and_then(Value::as_u64)
            .filter(|&v| v > 0)
            .ok_or_else(|| self.bad(key, "a positive integer"))
    }

    /// A positive integer that fits in the `u32` GGUF metadata llama.cpp reads.
    pub(crate) fn u32(&self, key: &str) -> Result<u32, ConvertError> {
        u32::try_from(self.u64(key)?).map_err(|_| self.bad(key, "an integer below 2^32"))
    }

    /// A finite number.
    pub(crate) fn f64(&self, key: &str) -> Result<f64, ConvertError> {
        self.json
            .get(key)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.bad(key, "a number"))
    }

    /// A boolean, `default` when missing or null.
    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, ConvertError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(key, "true or false")),
        }
    }

    /// The `architectures` list (model class names such as `BertModel`).
    pub(crate) fn architectures(&self) -> Result<Vec<String>, ConvertError> {
        let list = self
            .json
            .get("architectures")
            .and_then(Value::as_array)
            .ok_or_else(|| self.bad("architectures", "a list of model class names"))?;
        list.iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.bad("architectures", "a list of model class names"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), text).unwrap();
        let c = Config::read(dir.path()).unwrap();
        (dir, c)
    }

    #[test]
    fn typed_keys() {
        let (_d, c) = config(
            r#"{"architectures": ["BertModel"], "hidden_size": 384, "layer_norm_eps": 1e-12,
                "zero": 0, "big": 5000000000}"#,
        );
        assert_eq!(c.architectures().unwrap(), ["BertModel"]);
        assert_eq!(c.u32("hidden_size").unwrap(), 384);
        assert_eq!(c.f64("layer_norm_eps").unwrap(), 1e-12);
        for key in ["zero", "missing", "layer_norm_eps"] {
            let e = c.u64(key).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("positive integer"), "{e}");
        }
        assert!(c.u32("big").unwrap_err().to_string().contains("2^32"));
        assert_eq!(c.u64("hidden_size*hidden_size").unwrap(), 384 * 384);
        assert!(c.u64("hidden_size*zero").is_err());
        assert!(c.u64("big*big").unwrap_err().to_string().contains("2^64"));
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let (_d, mut c) = config(r#"{"heads": 8, "head_dim": null, "tied": true, "odd": 1}"#);
        c.default("heads", 4);
        c.default("head_dim", 64);
        c.default("kv_heads", 2);
        assert_eq!(c.u64("heads").unwrap(), 8);
        assert_eq!(c.u64("head_dim").unwrap(), 64);
        assert_eq!(c.u64("kv_heads").unwrap(), 2);
        assert!(c.given("heads") && !c.given("head_dim") && !c.given("kv_heads"));
        assert!(!c.given("missing") && c.get("missing").is_none());
        assert!(c.bool("tied", false).unwrap());
        assert!(c.bool("missing", true).unwrap());
        assert!(c
            .bool("odd", false)
            .unwrap_err()
            .to_string()
            .contains("true or false"));
    }

    #[test]
    fn missing_and_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = Config::read(dir.path()).err().unwrap();
        assert!(matches!(&e, ConvertError::MissingFile { path } if path.ends_with("config.json")));
        assert_eq!(
            read_json_if_present(&dir.path().join("x.json")).unwrap(),
            None
        );
        std::fs::write(dir.path().join("config.json"), "{").unwrap();
        let e = Config::read(dir.path()).err().unwrap();
        assert!(matches!(e, ConvertError::Json { .. }), "{e}");
        std::fs::write(dir.path().join("config.json"), "[]").unwrap();
        let e = Config::read(dir.path()).err().unwrap();
        assert!(matches!(e, ConvertError::BadKey { .. }), "{e}");
        let (_d, c) = config(r#"{"architectures": "BertModel"}"#);
        assert!(c.architectures().is_err());
    }
}
