//! Documents: collections of files that are extracted, chunked and embedded in the background
//! ([`documents`] does the reading, the embedding model runs through the server), searched by
//! meaning and by words at once ([`appdb::Db::hybrid_search`]), and given to a chat's answers as
//! fenced, numbered, untrusted passages ([`passages_for`]) — in the app's chats, and through the
//! chat APIs' `collections` field ([`AppRetriever`]).

use crate::auth::Caller;
use crate::error::{Result, WebError};
use crate::{Ctx, Mode, WebApp};
use appdb::{DocStatus, NewChunk};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::Extensions;
use axum::http::{header, HeaderMap};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use server::generate::{self, EmbedRequest};
use server::retrieval::{Retrieved, Retriever};
use server::scheduler::LoadRequest;
use server::AppState;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The largest file one upload may send.
pub const MAX_UPLOAD: usize = 64 << 20;
/// Tokens a chunk aims at, and how many it repeats of the one before (all-MiniLM-L6-v2 was
/// trained on 256-token inputs).
const CHUNK_TOKENS: usize = 200;
const CHUNK_OVERLAP: usize = 40;
/// Chunks embedded per request to the model: small enough that chats get the CPU in between.
const EMBED_BATCH: usize = 16;
/// Passages given to an answer.
pub const PASSAGES: usize = 5;
const EMBEDDING_MODEL_KEY: &str = "embedding_model";

/// A passage as the page and the saved answer show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Source {
    pub n: usize,
    pub chunk_id: i64,
    pub document_id: i64,
    pub document: String,
    pub location: String,
    pub text: String,
    pub score: f64,
}

/// The installed embedding models (architecture `bert`).
fn embedding_models(ctx: &Ctx) -> Vec<String> {
    let store = &ctx.server.store;
    store
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.problem.is_none())
        .filter(|m| server::ollama::details(store, &m.name)["family"] == "bert")
        .map(|m| m.name.to_string())
        .collect()
}

/// The model that embeds documents: the admin's choice, else the first installed one, which is
/// then kept as the choice — so that installing another embedding model later cannot change the
/// model queries are embedded with under documents embedded by this one (and the store's models
/// are not opened on every search).
fn embedding_model(ctx: &Ctx) -> Result<String> {
    if let Some(m) = ctx.app.db.setting(EMBEDDING_MODEL_KEY)? {
        return Ok(m);
    }
    let first = embedding_models(ctx).into_iter().next().ok_or_else(|| {
        WebError::BadRequest(
            "no embedding model is installed: import one, e.g. `hearth create minilm --from DIR` with all-MiniLM-L6-v2's Hugging Face files".into(),
        )
    })?;
    ctx.app.db.set_setting(EMBEDDING_MODEL_KEY, &first)?;
    Ok(first)
}

async fn embed(ctx: &Ctx, model: &str, inputs: Vec<String>) -> Result<Vec<Vec<f32>>> {
    let done = generate::embed(
        &ctx.server,
        EmbedRequest {
            model: model.to_string(),
            inputs,
            options: Map::new(),
            keep_alive: None,
            truncate: true,
            dimensions: None,
        },
    )
    .await?;
    Ok(done.vectors)
}

/// `GET /app/api/collections`.
pub async fn collections(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    Ok(Json(
        json!({"collections": ctx.app.db.collections(user.id)?}),
    ))
}

#[derive(Deserialize)]
pub struct NewCollection {
    name: String,
    #[serde(default)]
    shared: bool,
}

/// `POST /app/api/collections`: only admins may share one with everyone.
pub async fn create_collection(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewCollection>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    if body.shared && !caller.is_admin() {
        return Err(WebError::Forbidden(
            "only an admin can share a collection with everyone".into(),
        ));
    }
    let c = ctx
        .app
        .db
        .create_collection(user.id, body.name.trim(), body.shared)?;
    Ok(Json(json!({ "collection": c })))
}

/// `DELETE /app/api/collections/{id}`.
pub async fn delete_collection(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    if !ctx
        .app
        .db
        .delete_collection(user.id, id, caller.is_admin())?
    {
        return Err(WebError::no_such("collection"));
    }
    Ok(Json(json!({})))
}

/// A collection the caller may read, else 404.
fn readable(ctx: &Ctx, caller: &Caller, id: i64) -> Result<appdb::Collection> {
    let user = caller.user()?;
    ctx.app
        .db
        .collection(user.id, id)?
        .ok_or_else(|| WebError::no_such("collection"))
}

/// A collection the caller may change (add or delete documents), else 404 or 403.
fn changeable(ctx: &Ctx, caller: &Caller, id: i64) -> Result<()> {
    readable(ctx, caller, id)?;
    let user = caller.user()?;
    if !ctx
        .app
        .db
        .may_change_collection(user.id, id, caller.is_admin())?
    {
        return Err(WebError::Forbidden(
            "this collection is shared: only an admin can change it".into(),
        ));
    }
    Ok(())
}

/// `GET /app/api/collections/{id}/documents`.
pub async fn documents(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>> {
    readable(&ctx, &caller, id)?;
    Ok(Json(json!({"documents": ctx.app.db.documents(id)?})))
}

#[derive(Deserialize)]
pub struct UploadQuery {
    name: String,
}

/// `POST /app/api/collections/{id}/documents?name=FILE`: the body is the file. Answers at once;
/// reading and embedding go on in the background, one document at a time.
pub async fn upload(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>> {
    changeable(&ctx, &caller, id)?;
    let name = query.name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(WebError::BadRequest(
            "a document needs a file name of 1 to 255 characters (?name=...)".into(),
        ));
    }
    if body.is_empty() {
        return Err(WebError::BadRequest(format!("{name} is empty")));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let kind = documents::kind_of(name, content_type, &body)
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let model = embedding_model(&ctx)?;
    let doc = ctx
        .app
        .db
        .add_document(id, name, kind.name(), body.len() as u64)?;
    tokio::spawn(process(ctx.clone(), doc.id, kind, body, model));
    Ok(Json(json!({ "document": doc })))
}

/// Reads, chunks and embeds a document, recording progress; a failure is kept on the document.
async fn process(ctx: Ctx, id: i64, kind: documents::Kind, bytes: Bytes, model: String) {
    let jobs = ctx.app.jobs.clone();
    let _turn = jobs.acquire().await;
    if let Err(e) = read_and_chunk(&ctx, id, kind, bytes, &model).await {
        fail(&ctx, id, &e.to_string());
        return;
    }
    embed_document(&ctx, id, &model).await;
}

fn fail(ctx: &Ctx, id: i64, why: &str) {
    if let Err(e) = ctx
        .app
        .db
        .set_document_status(id, DocStatus::Error, Some(why))
    {
        eprintln!("warning: cannot record that document {id} failed ({why}): {e}");
    }
}

async fn read_and_chunk(
    ctx: &Ctx,
    id: i64,
    kind: documents::Kind,
    bytes: Bytes,
    model: &str,
) -> Result<()> {
    let db = &ctx.app.db;
    db.set_document_status(id, DocStatus::Extracting, None)?;
    // The embedding model's tokenizer measures the chunks.
    let lease = ctx
        .server
        .scheduler
        .acquire(
            LoadRequest {
                model: model.to_string(),
                n_ctx: None,
            },
            None,
        )
        .await?;
    let chunks = tokio::task::spawn_blocking(move || {
        let sections = documents::extract(kind, &bytes)?;
        let tokenizer = &lease.model().model.tokenizer;
        let target = CHUNK_TOKENS.min(lease.n_ctx().saturating_sub(2)).max(16);
        let count = |t: &str| tokenizer.encode(t, false, false).len();
        let sections = documents::group_sections(&sections, &count, target);
        Ok::<_, documents::DocumentError>(documents::chunk(
            &sections,
            &count,
            target,
            CHUNK_OVERLAP.min(target / 4),
        ))
    })
    .await
    .map_err(|e| server::ServerError::Internal(format!("reading the document failed: {e}")))?
    .map_err(|e| WebError::BadRequest(e.to_string()))?;
    if chunks.is_empty() {
        return Err(WebError::BadRequest(
            "the document holds no text to search".into(),
        ));
    }
    let chunks: Vec<NewChunk> = chunks
        .into_iter()
        .map(|c| NewChunk {
            text: c.text,
            location: c.location,
        })
        .collect();
    db.set_chunks(id, &chunks)?;
    db.set_document_status(id, DocStatus::Embedding, None)?;
    Ok(())
}

/// Embeds the document's chunks that lack `model`'s embedding, a batch at a time.
async fn embed_document(ctx: &Ctx, id: i64, model: &str) {
    let db = &ctx.app.db;
    loop {
        let batch = match db.chunks_to_embed(id, model, EMBED_BATCH) {
            Ok(b) => b,
            Err(e) => return fail(ctx, id, &e.to_string()),
        };
        if batch.is_empty() {
            if let Err(e) = db.set_document_status(id, DocStatus::Ready, None) {
                eprintln!("warning: cannot mark document {id} ready: {e}");
            }
            return;
        }
        // Each chunk is embedded with its document's name and headings: a question often names
        // what a section is about in words that only the heading has.
        let Some(doc) = db.document(id).ok().flatten() else {
            return; // deleted meanwhile
        };
        let title = doc
            .name
            .rsplit_once('.')
            .map_or(doc.name.as_str(), |(stem, _)| stem);
        let (ids, texts): (Vec<i64>, Vec<String>) = batch
            .into_iter()
            .map(|(chunk, c)| match c.location.is_empty() {
                true => (chunk, format!("{title}\n{}", c.text)),
                false => (chunk, format!("{title} › {}\n{}", c.location, c.text)),
            })
            .unzip();
        let vectors = match embed(ctx, model, texts).await {
            Ok(v) => v,
            Err(e) => return fail(ctx, id, &format!("embedding with {model} failed: {e}")),
        };
        let items: Vec<(i64, Vec<f32>)> = ids.into_iter().zip(vectors).collect();
        if let Err(e) = db.set_embeddings(model, &items) {
            return fail(ctx, id, &e.to_string());
        }
    }
}

/// At start: documents whose embedding a stopped server left unfinished are finished; those it
/// was still reading (the file is not kept) are marked failed.
pub fn resume(ctx: &Ctx) {
    let unfinished = match ctx.app.db.unfinished_documents() {
        Ok(u) => u,
        Err(e) => return eprintln!("warning: cannot list unfinished documents: {e}"),
    };
    for doc in unfinished {
        if doc.status != DocStatus::Embedding {
            fail(
                ctx,
                doc.id,
                "the server stopped while reading this file: upload it again",
            );
            continue;
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let Ok(model) = embedding_model(&ctx) else {
                return fail(&ctx, doc.id, "no embedding model is installed");
            };
            let jobs = ctx.app.jobs.clone();
            let _turn = jobs.acquire().await;
            embed_document(&ctx, doc.id, &model).await;
        });
    }
}

/// The document if the caller may read its collection.
fn readable_document(ctx: &Ctx, caller: &Caller, id: i64) -> Result<appdb::Document> {
    let doc = ctx
        .app
        .db
        .document(id)?
        .ok_or_else(|| WebError::no_such("document"))?;
    readable(ctx, caller, doc.collection_id).map_err(|_| WebError::no_such("document"))?;
    Ok(doc)
}

/// `GET /app/api/documents/{id}`.
pub async fn document(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>> {
    Ok(Json(
        json!({"document": readable_document(&ctx, &caller, id)?}),
    ))
}

/// `DELETE /app/api/documents/{id}`.
pub async fn delete_document(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>> {
    let doc = readable_document(&ctx, &caller, id)?;
    changeable(&ctx, &caller, doc.collection_id)?;
    ctx.app.db.delete_document(id)?;
    Ok(Json(json!({})))
}

/// `GET /app/api/chunks/{id}`: a cited passage.
pub async fn chunk(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>> {
    let chunk = ctx
        .app
        .db
        .chunk(id)?
        .ok_or_else(|| WebError::no_such("passage"))?;
    readable(&ctx, &caller, chunk.collection_id).map_err(|_| WebError::no_such("passage"))?;
    Ok(Json(json!(chunk)))
}

/// The best passages of `collections` (those the caller may read) for `query`, numbered from 1.
pub async fn passages_for(
    ctx: &Ctx,
    user_id: i64,
    collections: &[i64],
    query: &str,
    k: usize,
) -> Result<Vec<Source>> {
    let mut visible = Vec::new();
    for &id in collections {
        if ctx.app.db.collection(user_id, id)?.is_some() {
            visible.push(id);
        }
    }
    if visible.is_empty() || query.trim().is_empty() {
        return Ok(Vec::new());
    }
    let model = embedding_model(ctx)?;
    let query_vector = embed(ctx, &model, vec![query.to_string()])
        .await?
        .pop()
        .unwrap_or_default();
    let hits = ctx
        .app
        .db
        .hybrid_search(&visible, &model, &query_vector, query, k)?;
    Ok(hits
        .into_iter()
        .enumerate()
        .map(|(i, h)| Source {
            n: i + 1,
            chunk_id: h.chunk_id,
            document_id: h.document_id,
            document: h.document,
            location: h.location,
            text: h.text,
            score: h.score,
        })
        .collect())
}

/// The user's turn with the passages before the question: untrusted text stays in the user's
/// turn (never the system prompt), fenced and labelled.
pub fn with_passages(question: &str, sources: &[Source]) -> String {
    let passages: Vec<documents::Passage<'_>> = sources
        .iter()
        .map(|s| documents::Passage {
            n: s.n,
            document: &s.document,
            location: &s.location,
            text: &s.text,
        })
        .collect();
    format!("{}\n\nQuestion: {question}", documents::fence(&passages))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// `GET /app/api/collections/{id}/search?q=...`.
pub async fn search(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Query(query): Query<SearchQuery>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    readable(&ctx, &caller, id)?;
    let hits = passages_for(&ctx, user.id, &[id], &query.q, 10).await?;
    Ok(Json(json!({ "hits": hits })))
}

/// `GET /app/api/embedding-model`.
pub async fn get_embedding_model(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    caller.user()?;
    let model = embedding_model(&ctx).ok();
    Ok(Json(
        json!({"model": model, "installed": embedding_models(&ctx)}),
    ))
}

#[derive(Deserialize)]
pub struct ModelChoice {
    model: String,
}

/// `PUT /app/api/embedding-model` (admin): every document is embedded again with the new model.
pub async fn set_embedding_model(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<ModelChoice>,
) -> Result<Json<Value>> {
    caller.admin()?;
    let installed = embedding_models(&ctx);
    let model = body.model.trim();
    if !installed.iter().any(|m| m == model) {
        return Err(WebError::BadRequest(format!(
            "{model} is not an installed embedding model; installed: {}",
            if installed.is_empty() {
                "none".to_string()
            } else {
                installed.join(", ")
            }
        )));
    }
    ctx.app.db.set_setting(EMBEDDING_MODEL_KEY, model)?;
    for id in ctx.app.db.reset_embeddings_not_of(model)? {
        let (ctx, model) = (ctx.clone(), model.to_string());
        tokio::spawn(async move {
            let jobs = ctx.app.jobs.clone();
            let _turn = jobs.acquire().await;
            embed_document(&ctx, id, &model).await;
        });
    }
    Ok(Json(json!({"model": model, "installed": installed})))
}

/// Passages of `collections` for `question`, with the rules and the user's turn rewritten with
/// the first 1, 2, ... of them (the best first); `None` when no collection is attached or nothing
/// is found.
pub async fn retrieve_for(
    ctx: &Ctx,
    user_id: i64,
    collections: &[i64],
    question: &str,
) -> Result<Option<Retrieved>> {
    if collections.is_empty() {
        return Ok(None);
    }
    let sources = passages_for(ctx, user_id, collections, question, PASSAGES).await?;
    if sources.is_empty() {
        return Ok(None);
    }
    Ok(Some(Retrieved {
        rules: documents::DOCUMENT_RULES.to_string(),
        user_turns: (1..=sources.len())
            .map(|k| with_passages(question, &sources[..k]))
            .collect(),
        sources: sources.iter().map(|s| json!(s)).collect(),
    }))
}

/// The web app as the server's [`Retriever`]: passages of the collections the caller may read,
/// for the `collections` field of the chat APIs.
pub struct AppRetriever(pub Arc<WebApp>);

impl Retriever for AppRetriever {
    fn retrieve<'a>(
        &'a self,
        state: &'a Arc<AppState>,
        extensions: &'a Extensions,
        collections: &'a [i64],
        question: &'a str,
    ) -> Pin<Box<dyn Future<Output = server::Result<Option<Retrieved>>> + Send + 'a>> {
        Box::pin(async move {
            let ctx = Ctx {
                app: self.0.clone(),
                server: state.clone(),
            };
            let user = extensions.get::<Caller>().and_then(|c| c.user().ok());
            let user_id = match (user, ctx.app.mode) {
                (Some(user), _) => user.id,
                // One person on loopback: the API's caller is that person.
                (None, Mode::Single) => ctx.app.db.local_user().map_err(WebError::from)?.id,
                (None, Mode::Multi) => return Err(WebError::Unauthorized.into()),
            };
            Ok(retrieve_for(&ctx, user_id, collections, question).await?)
        })
    }
}
