//! How commands find models: a .gguf path, or a name in the model store (pulled first where a
//! command asks for it, and checked against its digest before it is loaded).

use anyhow::{anyhow, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use store::{Base, Modelfile, PullOptions, PullSource, ResolvedModel, Store, StoreError};

use crate::progress::PullProgress;

/// The `--models` option of the commands that use the store.
#[derive(Args)]
pub struct StoreArgs {
    /// The model store's directory (default: $HEARTH_MODELS, else ~/.hearth/models). Models in
    /// Ollama's store ($OLLAMA_MODELS, else ~/.ollama/models) are found too, and only read.
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
}

impl StoreArgs {
    /// Whether `--models` names a store: a command given one works on it, not through a server.
    pub fn explicit(&self) -> bool {
        self.models.is_some()
    }

    pub fn open(&self) -> Result<Store> {
        Ok(match &self.models {
            Some(dir) => Store::new(dir).with_ollama(Store::default_ollama_root()),
            None => Store::from_env()?,
        })
    }
}

/// What a model argument names.
pub enum ModelRef {
    /// A .gguf file.
    File(PathBuf),
    /// A model in the store, by name or by the URL it is pulled from.
    Stored(PullSource),
}

impl ModelRef {
    /// An existing file, or anything that looks like a path (`./x`, `/x`, `~/x`, `x.gguf`), is a
    /// file — the rule of a Modelfile's `FROM` — so that a mistyped path is reported missing
    /// rather than looked up on a registry; a URL or anything else is a store name.
    pub fn parse(arg: &Path) -> Result<ModelRef> {
        let text = arg.to_str();
        if let Some(url) = text.filter(|t| t.contains("://")) {
            return Ok(ModelRef::Stored(PullSource::parse(url)?));
        }
        let Some(text) = text else {
            return Ok(ModelRef::File(arg.to_path_buf()));
        };
        let from = Modelfile {
            from: text.to_string(),
            ..Modelfile::default()
        };
        Ok(match from.base(Path::new(""))? {
            Base::File(path) => ModelRef::File(path),
            Base::Model(name) => ModelRef::Stored(PullSource::Registry(name)),
        })
    }
}

/// The name a pull source is installed under.
pub fn installed_name(source: &PullSource) -> Result<store::ModelName> {
    Ok(match source {
        PullSource::Registry(name) => name.clone(),
        PullSource::Url(url) => url.default_name()?,
    })
}

/// Pulls with progress bars on standard error. When the registry cannot be reached, the error
/// also says which models are available locally.
pub fn pull(store: &Store, source: &PullSource, insecure: bool) -> Result<store::ModelName> {
    let options = PullOptions {
        insecure,
        ..PullOptions::default()
    };
    let mut progress = PullProgress::new();
    let result = store.pull(source, &options, &mut progress);
    progress.finish(result.is_ok());
    result.map_err(|e| match e {
        StoreError::Unreachable { .. } => anyhow!("{e}\n{}", local_models(store)),
        e => e.into(),
    })
}

/// "models available locally: …", or that there are none.
fn local_models(store: &Store) -> String {
    match store.list() {
        Ok(list) if list.is_empty() => format!(
            "no models are installed locally (in {})",
            store.root().display()
        ),
        Ok(list) => {
            let names: Vec<String> = list.iter().map(|m| m.name.to_string()).collect();
            format!("models available locally: {}", names.join(", "))
        }
        Err(e) => format!("(the local models cannot be listed either: {e})"),
    }
}

/// A model ready for the engine: the opened GGUF and, for a store model, its resolved layers.
pub struct Loaded {
    pub gguf: gguf::Gguf,
    pub stored: Option<ResolvedModel>,
    /// The path or name, for messages.
    pub label: String,
}

/// What [`load`] does with a store name that is not installed.
pub enum IfMissing {
    /// Fail, saying to pull it.
    Fail,
    /// Pull it first, as `ollama run` does (`insecure`: allow plain http).
    Pull { insecure: bool },
}

/// Opens a model argument for loading. A store model is pulled first if it is missing and
/// `if_missing` says so, then checked against its digest and validated ([`Store::verify`]), so a
/// corrupt or tampered blob never reaches the engine.
pub fn load(arg: &Path, store: &StoreArgs, if_missing: IfMissing) -> Result<Loaded> {
    match ModelRef::parse(arg)? {
        ModelRef::File(path) => Ok(Loaded {
            gguf: crate::open(&path)?,
            stored: None,
            label: path.display().to_string(),
        }),
        ModelRef::Stored(source) => {
            let store = store.open()?;
            let name = installed_name(&source)?;
            if let IfMissing::Pull { insecure } = if_missing {
                if !store.contains(&name)? {
                    pull(&store, &source, insecure)?;
                }
            }
            let resolved = store.resolve(&name)?;
            let gguf = store
                .verify(&resolved)
                .with_context(|| format!("cannot load {}", resolved.name))?;
            Ok(Loaded {
                gguf,
                label: resolved.name.to_string(),
                stored: Some(resolved),
            })
        }
    }
}

pub use chat::is_go_template;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_arguments_are_files_or_names() {
        let file =
            |arg: &str| matches!(ModelRef::parse(Path::new(arg)).unwrap(), ModelRef::File(_));
        assert!(file("./missing"));
        assert!(file("/no/such/model.bin"));
        assert!(file("missing.gguf"));
        assert!(!file("llama3.2"));
        assert!(!file("hf.co/user/repo:model.gguf"));
        assert!(!file("https://example.com/m.gguf"));
        assert!(ModelRef::parse(Path::new("https://example.com/m.txt")).is_err());
    }
}
