//! Hearth's model store: named models in Ollama's on-disk layout, pulled from registries,
//! imported from .gguf files or created from Modelfiles, and checked before they are loaded.
//!
//! - [`ModelName`] is a validated `[host/][namespace/]model[:tag]` (defaults
//!   `registry.ollama.ai`, `library`, `latest`); [`PullSource`] is a name or a [`GgufUrl`].
//! - [`Digest`] is a validated `sha256:<hex>`: the only way a string from a manifest becomes a
//!   file name. [`Manifest`] holds [`Layer`]s typed by [`media_type`].
//! - [`Store`] owns a root (`~/.hearth/models`, `$HEARTH_MODELS`) with `manifests/` and `blobs/`,
//!   and optionally reads an Ollama store (`~/.ollama/models`, `$OLLAMA_MODELS`) without ever
//!   writing it. [`Store::list`] gives [`ModelEntry`]s; [`Store::resolve`] turns a name into a
//!   [`ResolvedModel`] (GGUF path, template, system, params, messages); [`Store::verify`] checks
//!   the blob's digest (cached by size and mtime) and opens it with the `gguf` reader;
//!   [`Store::remove`], [`Store::copy`] and [`Store::gc`] manage what is installed.
//! - [`Store::pull`] speaks the registry protocol (manifest, then blobs by digest) with resume,
//!   bounded retries and verification, reporting [`PullEvent`]s to a [`Progress`]; options are
//!   [`PullOptions`].
//! - [`Modelfile`] parses `FROM`/`PARAMETER`/`TEMPLATE`/`SYSTEM`/`MESSAGE`/`LICENSE`;
//!   [`Store::create`] and [`Store::import`] write models from it or from a bare .gguf file.
//!
//! Every error is a [`StoreError`] naming what failed and what to do about it.
//!
//! ```
//! use store::{Modelfile, ModelName, Store};
//!
//! let name = ModelName::parse("llama3.2").unwrap();
//! assert_eq!(name.full(), "registry.ollama.ai/library/llama3.2:latest");
//! assert!(ModelName::parse("../../etc/passwd").is_err());
//!
//! let modelfile = Modelfile::parse("FROM ./model.gguf\nPARAMETER temperature 0.2\n").unwrap();
//! assert_eq!(modelfile.params["temperature"], 0.2);
//!
//! let dir = std::env::temp_dir().join(format!("hearth-store-doc-{}", std::process::id()));
//! let store = Store::new(&dir);
//! assert!(store.list().unwrap().is_empty());
//! ```

#![forbid(unsafe_code)]

mod create;
mod digest;
mod error;
mod fsx;
mod manifest;
mod modelfile;
mod name;
mod pull;
mod store;
mod verify;

pub use create::Convert;
pub use digest::Digest;
pub use error::{Result, StoreError};
pub use manifest::{
    media_type, Layer, Manifest, MAX_LAYERS, MAX_MANIFEST_BYTES, MAX_TEXT_LAYER_BYTES,
};
pub use modelfile::{Base, Modelfile};
pub use name::{GgufUrl, ModelName, PullSource, DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG};
pub use pull::{Progress, PullEvent, PullOptions};
pub use store::{GcReport, Message, ModelEntry, ResolvedModel, Source, Store};
