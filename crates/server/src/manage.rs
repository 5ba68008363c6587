//! Model management over HTTP: `/api/pull` (registry or URL, with streamed progress) and
//! `/api/create` (Ollama's JSON create onto [`store::Modelfile`], optionally re-quantized).
//! Both run on a blocking thread and report progress as NDJSON `{"status": ...}` lines, ending in
//! `{"status": "success"}` or `{"error": "..."}`.

use crate::error::{Result, ServerError};
use crate::ollama::Body;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Base, Message, Modelfile, PullEvent, PullOptions, PullSource};
use tokio::sync::mpsc;

/// Blob progress lines are sent at most this often per blob (besides the last one).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `work` on a blocking thread with a `report` for status lines, and answers with the
/// lines as they come (`stream`) or with the last one.
async fn run_with_progress(
    stream: bool,
    work: impl FnOnce(&mut dyn FnMut(Value)) -> Result<()> + Send + 'static,
) -> Result<Response> {
    let (tx, mut rx) = mpsc::channel::<Value>(64);
    let task = tokio::task::spawn_blocking(move || {
        // A client that went away no longer reads the lines; the work still finishes.
        let mut report = |v: Value| {
            let _ = tx.blocking_send(v);
        };
        let result = work(&mut report);
        report(match &result {
            Ok(()) => json!({"status": "success"}),
            Err(e) => json!({"error": e.to_string()}),
        });
        result
    });
    if stream {
        let (out, body_rx) =
            mpsc::channel::<std::result::Result<String, std::convert::Infallible>>(64);
        tokio::spawn(async move {
            while let Some(v) = rx.recv().await {
                if out.send(Ok(format!("{v}\n"))).await.is_err() {
                    break;
                }
            }
        });
        let body =
            axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(body_rx));
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response());
    }
    while rx.recv().await.is_some() {}
    task.await
        .map_err(|e| ServerError::Internal(e.to_string()))??;
    Ok(Json(json!({"status": "success"})).into_response())
}

#[derive(Deserialize)]
pub struct PullRequest {
    #[serde(alias = "name")]
    model: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    stream: Option<bool>,
}

pub async fn pull(
    State(state): State<Arc<AppState>>,
    Body(req): Body<PullRequest>,
) -> Result<Response> {
    let source = PullSource::parse(&req.model)
        .map_err(|e| ServerError::BadRequest(format!("cannot pull {:?}: {e}", req.model)))?;
    let store = state.store.clone();
    let options = PullOptions {
        insecure: req.insecure,
        ..PullOptions::default()
    };
    run_with_progress(req.stream.unwrap_or(true), move |report| {
        let mut last: HashMap<String, Instant> = HashMap::new();
        let mut progress = |event: &PullEvent<'_>| match event {
            PullEvent::Manifest { .. } => report(json!({"status": "pulling manifest"})),
            PullEvent::Blob {
                id,
                completed,
                total,
                ..
            } => {
                let now = Instant::now();
                let finished = Some(*completed) == *total;
                let due = last
                    .get(*id)
                    .is_none_or(|t| now.duration_since(*t) >= PROGRESS_INTERVAL);
                if due || finished {
                    last.insert(id.to_string(), now);
                    let short = id.strip_prefix("sha256:").unwrap_or(id);
                    report(json!({
                        "status": format!("pulling {}", &short[..short.len().min(12)]),
                        "digest": id,
                        "total": total,
                        "completed": completed,
                    }));
                }
            }
            PullEvent::Retry { id, reason, .. } => {
                report(json!({"status": format!("retrying {id}: {reason}")}))
            }
            PullEvent::Verifying { .. } => report(json!({"status": "verifying sha256 digest"})),
            PullEvent::WritingManifest { .. } => report(json!({"status": "writing manifest"})),
            _ => {}
        };
        store.pull(&source, &options, &mut progress)?;
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
pub struct CreateRequest {
    #[serde(alias = "name")]
    model: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    files: Option<Map<String, Value>>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    license: Option<Value>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    quantize: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

impl CreateRequest {
    /// The Modelfile this request describes. `from` must name a model in the store: a server
    /// does not read paths on its own disk for remote callers (use `hearth create` there).
    fn modelfile(&self) -> Result<Modelfile> {
        if self.files.as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(ServerError::BadRequest(
                "files (uploaded blobs) are not supported yet: create from a model in the store with \"from\", or run `hearth create` on the server".into(),
            ));
        }
        let from = self
            .from
            .clone()
            .filter(|f| !f.trim().is_empty())
            .ok_or_else(|| {
                ServerError::BadRequest("\"from\" is required: the model to start from".into())
            })?;
        let modelfile = Modelfile {
            from,
            params: self.parameters.clone().unwrap_or_default(),
            template: self.template.clone(),
            system: self.system.clone(),
            license: match &self.license {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| ServerError::BadRequest("license must be text".into()))?,
                Some(_) => return Err(ServerError::BadRequest("license must be text".into())),
            },
            messages: self.messages.clone().unwrap_or_default(),
        };
        if let Base::File(path) = modelfile.base(Path::new(""))? {
            return Err(ServerError::BadRequest(format!(
                "\"from\" must name a model in the store, not a file ({}): run `hearth create` on the server to import files",
                path.display()
            )));
        }
        if let Some(t) = &modelfile.template {
            if !chat::is_go_template(t) {
                chat::ChatTemplate::new(t, "", "").map_err(|e| {
                    ServerError::BadRequest(format!(
                        "template is not a valid Jinja chat template: {e}"
                    ))
                })?;
            }
        }
        Ok(modelfile)
    }
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Body(req): Body<CreateRequest>,
) -> Result<Response> {
    let name = crate::runner::parse_name(&req.model)?;
    let modelfile = req.modelfile()?;
    let target = req
        .quantize
        .as_deref()
        .filter(|q| !q.is_empty())
        .map(|q| {
            q.parse::<quantize::Target>()
                .map_err(|e| ServerError::BadRequest(e.to_string()))
        })
        .transpose()?;
    let store = state.store.clone();
    run_with_progress(req.stream.unwrap_or(true), move |report| {
        report(json!({"status": format!("creating {name} from {}", modelfile.from)}));
        match target {
            None => store.create(&name, &modelfile, Path::new(""))?,
            Some(target) => {
                report(json!({"status": format!("quantizing to {}", target.name())}));
                let mut convert = |src: &Path, dst: &Path| {
                    quantize::quantize_file(src, dst, target, &mut |_| {})
                        .map(drop)
                        .map_err(Into::into)
                };
                store.create_converted(&name, &modelfile, Path::new(""), &mut convert)?
            }
        }
        report(json!({"status": "writing manifest"}));
        Ok(())
    })
    .await
}
