//! Creating models: importing a .gguf file, and applying a [`Modelfile`] on top of a base.

use std::fs;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::io_err;
use crate::error::{Result, StoreError};
use crate::fsx::temp_sibling;
use crate::manifest::{media_type, Layer, Manifest};
use crate::modelfile::{Base, Modelfile};
use crate::name::ModelName;
use crate::store::{read_text_blob, Store};

/// A conversion of a model file for [`Store::create_converted`]: `(src, dst)`.
pub type Convert<'a> = dyn FnMut(&Path, &Path) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>
    + 'a;

/// Deletes a temporary file when dropped (it may not exist).
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

impl Store {
    /// Imports a .gguf file as model `name`, as a Modelfile holding only `FROM <path>` would.
    pub fn import(&self, name: &ModelName, path: &Path) -> Result<()> {
        self.create_from(
            name,
            &Base::File(path.to_path_buf()),
            &Modelfile::default(),
            None,
        )
    }

    /// Creates model `name` from a Modelfile; `dir` is the directory relative `FROM` paths start
    /// from (the Modelfile's own). A `FROM` file is validated with the GGUF reader before
    /// anything is written, then hard-linked into the store (copied across file systems). The
    /// Modelfile's template, system message, license and messages replace the base's; its
    /// parameters are merged over the base's.
    pub fn create(&self, name: &ModelName, modelfile: &Modelfile, dir: &Path) -> Result<()> {
        self.create_from(name, &modelfile.base(dir)?, modelfile, None)
    }

    /// [`Store::create`] with the base's weights rewritten into a new model blob (for example
    /// re-quantized): `convert(src, dst)` reads the base GGUF at `src` and writes the new one at
    /// `dst`, a temporary path inside the store (so the result is linked, not copied, into
    /// place). The new file is validated like an imported one; the base's other layers are kept.
    pub fn create_converted(
        &self,
        name: &ModelName,
        modelfile: &Modelfile,
        dir: &Path,
        convert: &mut Convert<'_>,
    ) -> Result<()> {
        self.create_from(name, &modelfile.base(dir)?, modelfile, Some(convert))
    }

    fn create_from(
        &self,
        name: &ModelName,
        base: &Base,
        m: &Modelfile,
        convert: Option<&mut Convert<'_>>,
    ) -> Result<()> {
        let gguf_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Gguf { path, source }
        };
        // A hostile or broken file is rejected before anything is written.
        if let Base::File(path) = base {
            gguf::Gguf::open(path).map_err(gguf_error(path))?;
        }
        let _lock = self.lock_shared()?;
        let converted = match (convert, base) {
            (Some(convert), base) => {
                let src = match base {
                    Base::File(path) => path.clone(),
                    Base::Model(from) => self.resolve(from)?.model_path,
                };
                fs::create_dir_all(self.root())
                    .map_err(io_err("create the directory", self.root()))?;
                let dst = temp_sibling(&self.root().join("converted.gguf"));
                // Removed whether the conversion and install succeed or not.
                let _cleanup = RemoveOnDrop(&dst);
                convert(&src, &dst).map_err(|source| StoreError::Convert {
                    name: name.to_string(),
                    source,
                })?;
                gguf::Gguf::open(&dst).map_err(gguf_error(&dst))?;
                Some(self.install_file(&dst, None, &format!("the converted {name}"))?)
            }
            (None, _) => None,
        };
        let mut layers = match base {
            Base::File(path) => {
                let (digest, size) = self.install_file(path, None, &path.display().to_string())?;
                vec![Layer {
                    media_type: media_type::MODEL.to_string(),
                    digest,
                    size,
                }]
            }
            Base::Model(from) => {
                let found = self.find(from)?.ok_or_else(|| StoreError::NotInStore {
                    name: from.to_string(),
                })?;
                let (manifest, _) = self.read_manifest(&found)?;
                self.adopt_blobs(&found, &manifest)?;
                manifest.layers
            }
        };
        if let Some((digest, size)) = converted {
            // In place, so the model layer keeps its position.
            for layer in layers
                .iter_mut()
                .filter(|l| l.media_type == media_type::MODEL)
            {
                (layer.digest, layer.size) = (digest.clone(), size);
            }
        }
        let shown = name.to_string();
        let model = layers
            .iter()
            .find(|l| l.media_type == media_type::MODEL)
            .cloned()
            .ok_or_else(|| StoreError::Unsupported {
                name: shown.clone(),
                reason: "its base has no GGUF model layer".into(),
            })?;

        if !m.params.is_empty() {
            let mut params: Map<String, Value> = match layers
                .iter()
                .find(|l| l.media_type == media_type::PARAMS)
            {
                Some(layer) => serde_json::from_str(&read_text_blob(self.root(), layer, &shown)?)
                    .map_err(|e| StoreError::ManifestInvalid {
                    name: shown.clone(),
                    reason: format!("the base's params layer is not a JSON object: {e}"),
                })?,
                None => Map::new(),
            };
            params.extend(m.params.clone());
            let bytes = serde_json::to_vec(&params).expect("JSON values always serialize");
            replace(
                &mut layers,
                media_type::PARAMS,
                vec![self.write_blob(media_type::PARAMS, &bytes)?],
            );
        }
        if let Some(template) = &m.template {
            replace(
                &mut layers,
                media_type::TEMPLATE,
                vec![self.write_blob(media_type::TEMPLATE, template.as_bytes())?],
            );
        }
        if let Some(system) = &m.system {
            replace(
                &mut layers,
                media_type::SYSTEM,
                vec![self.write_blob(media_type::SYSTEM, system.as_bytes())?],
            );
        }
        if !m.license.is_empty() {
            let licenses = m
                .license
                .iter()
                .map(|text| self.write_blob(media_type::LICENSE, text.as_bytes()))
                .collect::<Result<_>>()?;
            replace(&mut layers, media_type::LICENSE, licenses);
        }
        if !m.messages.is_empty() {
            let bytes = serde_json::to_vec(&m.messages).expect("messages always serialize");
            replace(
                &mut layers,
                media_type::MESSAGES,
                vec![self.write_blob(media_type::MESSAGES, &bytes)?],
            );
        }

        let model_path = self.blob_path(&model.digest);
        let file = gguf::Gguf::open(&model_path).map_err(gguf_error(&model_path))?;
        let config = self.write_config(&file, &layers)?;
        self.write_manifest(name, &Manifest::new(config, layers).to_json())
    }

    /// Writes the config blob for a model: the format and family (from the GGUF's
    /// architecture) and the layer digests, the fields Ollama's tools read.
    pub(crate) fn write_config(&self, file: &gguf::Gguf, layers: &[Layer]) -> Result<Layer> {
        let family = file.architecture().unwrap_or("unknown");
        let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
        let config = json!({
            "model_format": "gguf",
            "model_family": family,
            "model_families": [family],
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let bytes = serde_json::to_vec(&config).expect("JSON values always serialize");
        self.write_blob(media_type::CONFIG, &bytes)
    }
}

/// Replaces every layer of a media type by `new`.
fn replace(layers: &mut Vec<Layer>, media_type: &str, new: Vec<Layer>) {
    layers.retain(|l| l.media_type != media_type);
    layers.extend(new);
}
