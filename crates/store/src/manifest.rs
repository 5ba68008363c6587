//! The manifest: Docker's image manifest v2 shape with Ollama's layer media types.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Result, StoreError};

/// Media types of manifests and layers (facts of the protocol Ollama and Hugging Face serve).
pub mod media_type {
    /// The manifest itself, as Ollama's registry serves and stores it.
    pub const MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// The OCI equivalent, accepted when a registry answers with it.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// The config blob (JSON: format, family, layer list).
    pub const CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// The GGUF weights.
    pub const MODEL: &str = "application/vnd.ollama.image.model";
    /// A prompt template.
    pub const TEMPLATE: &str = "application/vnd.ollama.image.template";
    /// A default system message.
    pub const SYSTEM: &str = "application/vnd.ollama.image.system";
    /// Default options as a JSON object.
    pub const PARAMS: &str = "application/vnd.ollama.image.params";
    /// A license text.
    pub const LICENSE: &str = "application/vnd.ollama.image.license";
    /// Few-shot messages as a JSON array of `{role, content}`.
    pub const MESSAGES: &str = "application/vnd.ollama.image.messages";
    /// A vision projector (GGUF).
    pub const PROJECTOR: &str = "application/vnd.ollama.image.projector";
    /// A LoRA adapter.
    pub const ADAPTER: &str = "application/vnd.ollama.image.adapter";
}

/// Largest manifest accepted from a registry or read from disk.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Most layers a manifest may list.
pub const MAX_LAYERS: usize = 256;
/// Largest text layer (template, system, params, license, messages) read into memory.
pub const MAX_TEXT_LAYER_BYTES: u64 = 16 << 20;

/// One blob a manifest refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    /// What the blob is (see [`media_type`]).
    pub media_type: String,
    /// The blob's validated digest.
    pub digest: Digest,
    /// The blob's length in bytes.
    pub size: u64,
}

/// A model manifest: a config blob and the layers, each named by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`media_type::MANIFEST`] for the manifests Hearth writes.
    pub media_type: String,
    /// The config blob.
    pub config: Layer,
    /// The model, template, system, params, license… blobs.
    pub layers: Vec<Layer>,
}

/// The manifest as it comes off the wire, before any string is trusted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    config: RawLayer,
    layers: Vec<RawLayer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLayer {
    media_type: String,
    digest: String,
    size: u64,
}

impl Manifest {
    /// A manifest written by Hearth.
    pub fn new(config: Layer, layers: Vec<Layer>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: media_type::MANIFEST.to_string(),
            config,
            layers,
        }
    }

    /// Parses and validates manifest JSON; `name` is the model it belongs to, for messages. Every
    /// digest is checked by [`Digest::parse`] here, before anything can use it in a path.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Manifest> {
        let invalid = |reason: String| StoreError::ManifestInvalid {
            name: name.to_string(),
            reason,
        };
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(invalid(format!(
                "it is {} bytes (at most {MAX_MANIFEST_BYTES})",
                bytes.len()
            )));
        }
        let raw: RawManifest = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not manifest JSON: {e}")))?;
        if raw.schema_version != 2 {
            return Err(invalid(format!(
                "schemaVersion is {}, expected 2",
                raw.schema_version
            )));
        }
        if raw.layers.len() > MAX_LAYERS {
            return Err(invalid(format!(
                "it lists {} layers (at most {MAX_LAYERS})",
                raw.layers.len()
            )));
        }
        let layer = |raw: RawLayer, context: String| -> Result<Layer> {
            if raw.media_type.len() > 256 {
                return Err(invalid(format!(
                    "{context} has a media type of {} bytes",
                    raw.media_type.len()
                )));
            }
            let digest =
                Digest::parse(&raw.digest, &format!("{context} of the manifest of {name}"))?;
            let text = [
                media_type::TEMPLATE,
                media_type::SYSTEM,
                media_type::PARAMS,
                media_type::LICENSE,
                media_type::MESSAGES,
                media_type::CONFIG,
            ];
            if text.contains(&raw.media_type.as_str()) && raw.size > MAX_TEXT_LAYER_BYTES {
                return Err(invalid(format!(
                    "{context} ({}) declares {} bytes (at most {MAX_TEXT_LAYER_BYTES})",
                    raw.media_type, raw.size
                )));
            }
            Ok(Layer {
                media_type: raw.media_type,
                digest,
                size: raw.size,
            })
        };
        let config = layer(raw.config, "the config".into())?;
        let layers = raw
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| layer(l, format!("layer {}", i + 1)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Manifest {
            schema_version: raw.schema_version,
            media_type: raw.media_type,
            config,
            layers,
        })
    }

    /// The manifest as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }

    /// The first layer of a media type.
    pub fn layer(&self, media_type: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.media_type == media_type)
    }

    /// The config and every layer: all the blobs the manifest keeps alive.
    pub fn blobs(&self) -> impl Iterator<Item = &Layer> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// Total bytes of all blobs, the size `list` shows.
    pub fn total_size(&self) -> u64 {
        self.blobs().map(|l| l.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(digest: &str) -> String {
        let ok = format!("sha256:{}", "a".repeat(64));
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{ok}","size":2}},
               "layers":[{{"mediaType":"{}","digest":"{digest}","size":5}}]}}"#,
            media_type::MANIFEST,
            media_type::CONFIG,
            media_type::MODEL
        )
    }

    #[test]
    fn parses_and_round_trips() {
        let json = manifest_json(&format!("sha256:{}", "b".repeat(64)));
        let m = Manifest::parse(json.as_bytes(), "m").unwrap();
        assert_eq!(m.layer(media_type::MODEL).unwrap().size, 5);
        assert_eq!(m.total_size(), 7);
        assert_eq!(Manifest::parse(&m.to_json(), "m").unwrap(), m);
    }

    #[test]
    fn rejects_bad_digests_with_the_layer_named() {
        for bad in [
            "sha256:../../x",
            "sha256:abc",
            "sha256:../../../../../../etc/passwd",
        ] {
            let err = Manifest::parse(manifest_json(bad).as_bytes(), "m").unwrap_err();
            let StoreError::InvalidDigest { context, .. } = &err else {
                panic!("{err}")
            };
            assert!(context.contains("layer 1"), "{context}");
        }
    }

    #[test]
    fn rejects_huge_and_malformed_manifests() {
        let huge = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        assert!(matches!(
            Manifest::parse(&huge, "m"),
            Err(StoreError::ManifestInvalid { .. })
        ));
        assert!(matches!(
            Manifest::parse(b"{}", "m"),
            Err(StoreError::ManifestInvalid { .. })
        ));
        let v1 = manifest_json(&format!("sha256:{}", "b".repeat(64)))
            .replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert!(matches!(
            Manifest::parse(v1.as_bytes(), "m"),
            Err(StoreError::ManifestInvalid { .. })
        ));
    }
}
