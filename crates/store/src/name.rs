//! Model names (`[host/][namespace/]model[:tag]`) and pull sources (a name or a .gguf URL).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Result, StoreError};

/// The registry a name without a host refers to.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// The namespace a name without one refers to.
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag a name without one refers to.
pub const DEFAULT_TAG: &str = "latest";

/// Longest host part (a DNS name plus a port), as Ollama allows.
const MAX_HOST: usize = 350;
/// Longest namespace, model or tag part, as Ollama allows.
const MAX_PART: usize = 80;

/// Which part of a name a string is, for the validation rules and error messages.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Host,
    Namespace,
    Model,
    Tag,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Part::Host => "host",
            Part::Namespace => "namespace",
            Part::Model => "model",
            Part::Tag => "tag",
        }
    }
}

/// A fully qualified model name: host, namespace, model and tag, each validated.
///
/// Parts keep the case they were written in (Hugging Face repositories are mixed-case);
/// [`ModelName::eq_ignore_case`] compares names the way lookups do. Every part is a single safe
/// path component: it starts with a letter, digit or `_`, holds only letters, digits, `_`, `-`,
/// `.` (not in the namespace) and `:` (host only, for a port), never `..`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName {
    host: String,
    namespace: String,
    model: String,
    tag: String,
}

impl ModelName {
    /// Parses `[host/][namespace/]model[:tag]`, filling in [`DEFAULT_HOST`],
    /// [`DEFAULT_NAMESPACE`] and [`DEFAULT_TAG`].
    pub fn parse(s: &str) -> Result<ModelName> {
        let invalid = |reason: String| StoreError::InvalidName {
            name: s.chars().take(400).collect(),
            reason,
        };
        if s.len() > MAX_HOST + 3 * (MAX_PART + 1) {
            return Err(invalid(format!("it is {} bytes long", s.len())));
        }
        // The tag is after the last ':' that follows the last '/'; a ':' before it is a port.
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, DEFAULT_TAG),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (host, namespace, model) = match parts[..] {
            [model] => (DEFAULT_HOST, DEFAULT_NAMESPACE, model),
            [namespace, model] => (DEFAULT_HOST, namespace, model),
            [host, namespace, model] => (host, namespace, model),
            _ => {
                return Err(invalid(format!(
                    "it has {} '/'-separated parts (at most 3)",
                    parts.len()
                )))
            }
        };
        for (part, kind) in [
            (host, Part::Host),
            (namespace, Part::Namespace),
            (model, Part::Model),
            (tag, Part::Tag),
        ] {
            check_part(part, kind).map_err(invalid)?;
        }
        Ok(ModelName {
            host: host.to_string(),
            namespace: namespace.to_string(),
            model: model.to_string(),
            tag: tag.to_string(),
        })
    }

    /// Builds a name from parts, validating each.
    pub fn from_parts(host: &str, namespace: &str, model: &str, tag: &str) -> Result<ModelName> {
        ModelName::parse(&format!("{host}/{namespace}/{model}:{tag}"))
    }

    /// The registry host (with a port, if any).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The namespace (user or organisation).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The model (repository) name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `host/namespace/model:tag`, every part spelled out.
    pub fn full(&self) -> String {
        format!(
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
    }

    /// Whether two names are the same ignoring ASCII case, as registries and Ollama treat them.
    pub fn eq_ignore_case(&self, other: &ModelName) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
            && self.namespace.eq_ignore_ascii_case(&other.namespace)
            && self.model.eq_ignore_ascii_case(&other.model)
            && self.tag.eq_ignore_ascii_case(&other.tag)
    }

    /// The manifest's path under a store root: `manifests/<host>/<namespace>/<model>/<tag>`.
    pub(crate) fn manifest_path(&self, root: &Path) -> PathBuf {
        root.join("manifests")
            .join(&self.host)
            .join(&self.namespace)
            .join(&self.model)
            .join(&self.tag)
    }
}

/// Checks one part against Ollama's character set and length rules (plus: never `..`).
fn check_part(s: &str, kind: Part) -> std::result::Result<(), String> {
    let label = kind.label();
    let max = if kind == Part::Host {
        MAX_HOST
    } else {
        MAX_PART
    };
    let Some(first) = s.chars().next() else {
        return Err(format!("the {label} is empty"));
    };
    if s.len() > max {
        return Err(format!(
            "the {label} is {} bytes long (at most {max})",
            s.len()
        ));
    }
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(format!(
            "the {label} {s:?} must start with a letter, digit or '_'"
        ));
    }
    if s.contains("..") {
        return Err(format!("the {label} {s:?} contains \"..\""));
    }
    for c in s.chars() {
        let ok = c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-')
            || (c == '.' && kind != Part::Namespace)
            || (c == ':' && kind == Part::Host);
        if !ok {
            return Err(format!("the {label} {s:?} contains {c:?}"));
        }
    }
    Ok(())
}

impl fmt::Display for ModelName {
    /// The shortest form that parses back to the same name, as `list` shows it:
    /// `llama3.2:latest`, `user/model:tag`, `hf.co/user/repo:Q4_K_M`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host != DEFAULT_HOST {
            write!(f, "{}/{}/", self.host, self.namespace)?;
        } else if self.namespace != DEFAULT_NAMESPACE {
            write!(f, "{}/", self.namespace)?;
        }
        write!(f, "{}:{}", self.model, self.tag)
    }
}

impl FromStr for ModelName {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<ModelName> {
        ModelName::parse(s)
    }
}

/// The address of a single .gguf file to pull without a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufUrl {
    url: String,
    https: bool,
    host: String,
    /// The last path component, `….gguf`.
    file: String,
}

impl GgufUrl {
    /// Parses `http(s)://host[:port]/…/file.gguf[?query]`. Credentials in the URL are refused
    /// (they would end up in logs and error messages).
    pub fn parse(url: &str) -> Result<GgufUrl> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: url.chars().take(400).collect(),
            reason: reason.into(),
        };
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(invalid("it does not start with https:// or http://"));
        };
        let (authority, path) =
            rest.split_at(rest.find('/').ok_or_else(|| invalid("it has no path"))?);
        if authority.contains('@') {
            return Err(invalid("credentials in the URL are not supported"));
        }
        check_part(authority, Part::Host).map_err(|reason| invalid(&reason))?;
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let file = path.rsplit('/').next().unwrap_or_default();
        let ext = file.len().checked_sub(5).and_then(|i| file.get(i..));
        if file.len() <= 5 || !ext.is_some_and(|ext| ext.eq_ignore_ascii_case(".gguf")) {
            return Err(invalid("the path does not end in a .gguf file name"));
        }
        if url.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(invalid("it contains spaces or control characters"));
        }
        Ok(GgufUrl {
            url: url.to_string(),
            https,
            host: authority.to_string(),
            file: file.to_string(),
        })
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Whether it is https (plain http needs the insecure opt-in).
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host (with port) the file is fetched from.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The file name (`….gguf`), the label progress reports use.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// The name a pulled file gets unless the caller chooses one: `<host>/url/<file stem>:latest`,
    /// with characters a name cannot hold replaced by `-`.
    pub fn default_name(&self) -> Result<ModelName> {
        let mut model: String = self.file[..self.file.len() - 5]
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .take(MAX_PART)
            .collect();
        while model.contains("..") {
            model = model.replace("..", ".");
        }
        if !model.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            model.insert(0, '_');
            model.truncate(MAX_PART);
        }
        ModelName::from_parts(&self.host, "url", &model, DEFAULT_TAG)
    }
}

impl fmt::Display for GgufUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// What `pull` fetches: a registry model (Ollama's registry, Hugging Face's `hf.co`, or any
/// registry speaking the same protocol) or one .gguf file by URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullSource {
    /// A model on a registry.
    Registry(ModelName),
    /// A .gguf file by URL.
    Url(GgufUrl),
}

impl PullSource {
    /// A string with a scheme is a URL, anything else a model name.
    pub fn parse(s: &str) -> Result<PullSource> {
        if s.contains("://") {
            GgufUrl::parse(s).map(PullSource::Url)
        } else {
            ModelName::parse(s).map(PullSource::Registry)
        }
    }
}

impl FromStr for PullSource {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<PullSource> {
        PullSource::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (String, String, String, String) {
        let n = ModelName::parse(s).unwrap();
        (
            n.host().into(),
            n.namespace().into(),
            n.model().into(),
            n.tag().into(),
        )
    }

    #[test]
    fn defaults_fill_missing_parts() {
        let p = |a: &str, b: &str, c: &str, d: &str| {
            (a.to_string(), b.to_string(), c.to_string(), d.to_string())
        };
        assert_eq!(
            parts("llama3.2"),
            p(DEFAULT_HOST, "library", "llama3.2", "latest")
        );
        assert_eq!(
            parts("llama3.2:1b"),
            p(DEFAULT_HOST, "library", "llama3.2", "1b")
        );
        assert_eq!(parts("me/mine:v1"), p(DEFAULT_HOST, "me", "mine", "v1"));
        assert_eq!(
            parts("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
            p("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M")
        );
        assert_eq!(
            parts("127.0.0.1:8080/ns/m"),
            p("127.0.0.1:8080", "ns", "m", "latest")
        );
        assert_eq!(
            parts("localhost:5000/ns/m:t"),
            p("localhost:5000", "ns", "m", "t")
        );
    }

    #[test]
    fn display_is_the_shortest_form_and_round_trips() {
        for (input, shown) in [
            ("llama3.2", "llama3.2:latest"),
            ("registry.ollama.ai/library/qwen2:0.5b", "qwen2:0.5b"),
            ("me/mine", "me/mine:latest"),
            ("hf.co/u/r:Q8_0", "hf.co/u/r:Q8_0"),
        ] {
            let n = ModelName::parse(input).unwrap();
            assert_eq!(n.to_string(), shown);
            assert_eq!(ModelName::parse(shown).unwrap(), n);
        }
    }

    #[test]
    fn rejects_traversal_empty_parts_bad_characters_and_lengths() {
        let long_model = "m".repeat(81);
        let long_host = format!("{}/ns/m", "h".repeat(351));
        for bad in [
            "",
            ":tag",
            "model:",
            "/model",
            "ns//model",
            "a/b/c/d",
            "../x",
            "..",
            "ns/..",
            "ns/a..b",
            "x/y/.hidden",
            "model:../x",
            "model:a/b",
            "na.me/model",
            "mod el",
            "mod\nel",
            "mo\\del",
            "-model",
            ".model",
            "host:1/ns:2/m",
            &long_model,
            &long_host,
            "h/n/m:t:u",
        ] {
            let err = ModelName::parse(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidName { .. }),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(ModelName::parse(&"m".repeat(80)).unwrap().model().len(), 80);
    }

    #[test]
    fn every_part_is_a_single_path_component() {
        let n = ModelName::parse("h.co:1/ns/m.v2:t").unwrap();
        let path = n.manifest_path(Path::new("/root"));
        assert_eq!(path, Path::new("/root/manifests/h.co:1/ns/m.v2/t"));
    }

    #[test]
    fn urls_become_url_sources_with_a_default_name() {
        let PullSource::Url(u) =
            PullSource::parse("https://example.com/a/b/My%20Model+v1.Q4_K_M.gguf?download=1")
                .unwrap()
        else {
            panic!("a URL parsed as a name")
        };
        assert!(u.is_https());
        assert_eq!(
            u.default_name().unwrap().to_string(),
            "example.com/url/My-20Model-v1.Q4_K_M:latest"
        );
        let plain = GgufUrl::parse("http://127.0.0.1:9/x.GGUF").unwrap();
        assert!(!plain.is_https());
        for bad in [
            "ftp://x/y.gguf",
            "https://x",
            "https://x/y.bin",
            "https://u:p@x/y.gguf",
            "https://../y.gguf",
        ] {
            assert!(
                matches!(GgufUrl::parse(bad), Err(StoreError::InvalidUrl { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            PullSource::parse("qwen2:0.5b").unwrap(),
            PullSource::Registry(_)
        ));
    }
}
