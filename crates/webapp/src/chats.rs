//! Conversations: the list, each chat's messages, answers streamed from a model while they are
//! saved, search, export and import, and the saved presets ("assistants").

use crate::auth::Caller;
use crate::error::{Result, WebError};
use crate::Ctx;
use appdb::{
    Chat, ChatExport, ChatSettings, ChatUpdate, MessageStats, MessageStatus, NewMessage, NewPreset,
};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use server::generate::{self, GenerationRequest, Prompt, ToolChoice};
use server::runner::Event;
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often a streaming answer is written to the database: what a crash can lose at most.
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// `GET /app/api/chats`.
pub async fn list(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    Ok(Json(json!({"chats": ctx.app.db.chats(user.id)?})))
}

#[derive(Deserialize)]
pub struct NewChat {
    title: Option<String>,
    model: String,
    #[serde(default)]
    settings: ChatSettings,
}

/// `POST /app/api/chats`.
pub async fn create(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewChat>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    if body.model.trim().is_empty() {
        return Err(WebError::BadRequest(
            "a chat needs a model: pick one".into(),
        ));
    }
    let title = body
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("New chat");
    let chat = ctx
        .app
        .db
        .create_chat(user.id, title, body.model.trim(), &body.settings)?;
    Ok(Json(json!({ "chat": chat })))
}

fn own_chat(ctx: &Ctx, user_id: i64, id: &str) -> Result<Chat> {
    ctx.app
        .db
        .chat(user_id, id)?
        .ok_or_else(|| WebError::no_such("chat"))
}

/// `GET /app/api/chats/{id}`.
pub async fn get_one(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    let chat = own_chat(&ctx, user.id, &id)?;
    let messages = ctx.app.db.messages(user.id, &id)?.unwrap_or_default();
    Ok(Json(json!({"chat": chat, "messages": messages})))
}

/// `PATCH /app/api/chats/{id}`.
pub async fn update(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<ChatUpdate>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    if body.title.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(WebError::BadRequest(
            "a chat's title cannot be empty".into(),
        ));
    }
    let chat = ctx
        .app
        .db
        .update_chat(user.id, &id, &body)?
        .ok_or_else(|| WebError::no_such("chat"))?;
    Ok(Json(json!({ "chat": chat })))
}

/// `DELETE /app/api/chats/{id}`.
pub async fn delete(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    if !ctx.app.db.delete_chat(user.id, &id)? {
        return Err(WebError::no_such("chat"));
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct Send {
    content: Option<String>,
    #[serde(default)]
    regenerate: bool,
    /// Replace this user message (and everything after it) with `content`.
    edit: Option<i64>,
}

fn ndjson(value: &Value) -> Result<String, Infallible> {
    Ok(format!("{value}\n"))
}

/// `POST /app/api/chats/{id}/messages`: saves the user's message, then streams the model's
/// answer as NDJSON while saving it every [`SAVE_EVERY`]. If the client goes away the answer
/// stops and is kept as `stopped`; if the server dies the next start marks it `interrupted`.
pub async fn send(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<Send>,
) -> Result<Response> {
    let user = caller.user()?.clone();
    let db = &ctx.app.db;
    let chat = own_chat(&ctx, user.id, &id)?;
    let history = db.messages(user.id, &id)?.unwrap_or_default();
    let (tx, rx) = mpsc::channel(64);
    if body.regenerate {
        let last = history
            .last()
            .filter(|m| m.role == "assistant")
            .ok_or_else(|| {
                WebError::BadRequest(
                    "nothing to regenerate: the chat does not end with an answer".into(),
                )
            })?;
        db.truncate_chat(user.id, &id, last.id)?;
    } else {
        let content = body
            .content
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| WebError::BadRequest("the message is empty".into()))?;
        if let Some(edit) = body.edit {
            history
                .iter()
                .find(|m| m.id == edit && m.role == "user")
                .ok_or_else(|| WebError::no_such("message"))?;
            db.truncate_chat(user.id, &id, edit)?;
        }
        let message = db
            .add_message(
                user.id,
                &id,
                &NewMessage {
                    role: "user".into(),
                    content,
                    status: MessageStatus::Done,
                    model: None,
                },
            )?
            .ok_or_else(|| WebError::no_such("chat"))?;
        let _ = tx.try_send(ndjson(&json!({"type": "user", "message": message})));
    }
    let messages: Vec<chat::Message> = db
        .messages(user.id, &id)?
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !m.content.is_empty())
        .map(|m| chat::Message::new(m.role, m.content))
        .collect();
    let assistant = db
        .add_message(
            user.id,
            &id,
            &NewMessage {
                role: "assistant".into(),
                content: String::new(),
                status: MessageStatus::Streaming,
                model: Some(chat.model.clone()),
            },
        )?
        .ok_or_else(|| WebError::no_such("chat"))?;
    let _ = tx.try_send(ndjson(&json!({"type": "assistant", "message": assistant})));
    tokio::spawn(answer(
        ctx.clone(),
        user.id,
        chat,
        assistant.id,
        messages,
        tx,
    ));
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

/// The request options a chat's settings make.
fn options(settings: &ChatSettings) -> Map<String, Value> {
    let mut options = Map::new();
    if let Some(t) = settings.temperature {
        options.insert("temperature".into(), json!(t));
    }
    if let Some(n) = settings.num_ctx {
        options.insert("num_ctx".into(), json!(n));
    }
    options
}

/// Runs the answer and writes it to the database and to `tx` as it comes.
async fn answer(
    ctx: Ctx,
    user_id: i64,
    chat: Chat,
    message_id: i64,
    messages: Vec<chat::Message>,
    tx: mpsc::Sender<Result<String, Infallible>>,
) {
    let db = ctx.app.db.clone();
    let fail = |text: &str, error: String| {
        if let Err(e) = db.update_message(message_id, text, MessageStatus::Error, None) {
            eprintln!("warning: cannot save message {message_id}: {e}");
        }
        ndjson(&json!({"type": "error", "error": error}))
    };
    let mut system = chat
        .settings
        .system
        .clone()
        .filter(|s| !s.trim().is_empty());
    // Attached documents: the rules join the system prompt, the passages (untrusted) go in the
    // user's turn before the question, and the answer keeps them as its sources.
    let question = messages
        .last()
        .map(|m| m.content.clone())
        .unwrap_or_default();
    let sources = match crate::docs::passages_for(
        &ctx,
        user_id,
        &chat.settings.collections,
        &question,
        crate::docs::PASSAGES,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            let _ = tx
                .send(fail("", format!("searching the documents failed: {e}")))
                .await;
            return;
        }
    };
    if !sources.is_empty() {
        system = Some(match system {
            Some(s) => format!("{s}\n\n{}", documents::DOCUMENT_RULES),
            None => documents::DOCUMENT_RULES.to_string(),
        });
    }
    // The best passages that fit the context: fewer, down to none, while the prompt is too long.
    let prompts = (0..=sources.len())
        .rev()
        .map(|used| {
            let mut messages = messages.clone();
            if used > 0 {
                if let Some(last) = messages.last_mut() {
                    last.content = crate::docs::with_passages(&question, &sources[..used]);
                }
            }
            let prompt = Prompt::Chat {
                messages,
                system: system.clone(),
                template: None,
                tools: None,
            };
            (prompt, Some(json!(sources[..used])))
        })
        .collect();
    let request = |prompt| GenerationRequest {
        model: chat.model.clone(),
        prompt,
        options: options(&chat.settings),
        keep_alive: None,
        truncate: true,
        logprobs: None,
        grammar: None,
        tool_choice: ToolChoice::Auto,
    };
    let mut started = match generate::start_first_fitting(&ctx.server, prompts, request).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(fail("", e.to_string())).await;
            return;
        }
    };
    if let Some(sources) = started.sources.take().filter(|s| s != &json!([])) {
        if let Err(e) = db.set_message_sources(message_id, &sources) {
            eprintln!("warning: cannot save the sources of message {message_id}: {e}");
        }
        let _ = tx
            .send(ndjson(&json!({"type": "sources", "sources": sources})))
            .await;
    }
    let mut text = String::new();
    let mut saved = Instant::now();
    let mut ttft = None;
    loop {
        match started.events.recv().await {
            Some(Event::Text(piece, _)) => {
                ttft.get_or_insert_with(|| started.started.elapsed());
                text.push_str(&piece);
                let line = ndjson(&json!({"type": "token", "text": piece}));
                if tx.send(line).await.is_err() {
                    // The reader is gone (stop button, closed tab): dropping the events
                    // stops the slot at its next token.
                    drop(started);
                    if let Err(e) =
                        db.update_message(message_id, &text, MessageStatus::Stopped, None)
                    {
                        eprintln!("warning: cannot save message {message_id}: {e}");
                    }
                    return;
                }
                if saved.elapsed() >= SAVE_EVERY {
                    saved = Instant::now();
                    if let Err(e) =
                        db.update_message(message_id, &text, MessageStatus::Streaming, None)
                    {
                        eprintln!("warning: cannot save message {message_id}: {e}");
                    }
                }
            }
            Some(Event::Done(stats)) => {
                started.record(&ctx.server, &stats, ttft);
                let secs = stats.generation_time.as_secs_f64();
                let generated = stats.generated_tokens as u64;
                let summary = MessageStats {
                    prompt_tokens: started.prompt_tokens as u64,
                    generated_tokens: generated,
                    tokens_per_second: if secs > 0.0 {
                        generated as f64 / secs
                    } else {
                        0.0
                    },
                    // The last token generated into a full context never enters it.
                    context_used: (started.prompt_tokens as u64 + generated)
                        .min(started.n_ctx as u64),
                    context_size: started.n_ctx as u64,
                };
                let saved = db
                    .update_message(message_id, &text, MessageStatus::Done, Some(&summary))
                    .and_then(|()| {
                        db.record_usage(
                            user_id,
                            &started.model_name,
                            &appdb::utc_day(crate::unix_now()),
                            summary.prompt_tokens,
                            generated,
                        )
                    })
                    .and_then(|()| db.messages(user_id, &chat.id));
                let line = match saved {
                    Ok(all) => {
                        let message = all
                            .unwrap_or_default()
                            .into_iter()
                            .find(|m| m.id == message_id);
                        ndjson(&json!({"type": "done", "message": message}))
                    }
                    Err(e) => ndjson(
                        &json!({"type": "error", "error": format!("the answer could not be saved: {e}")}),
                    ),
                };
                let _ = tx.send(line).await;
                return;
            }
            Some(Event::Failed(e)) => {
                let _ = tx.send(fail(&text, e.to_string())).await;
                return;
            }
            None => {
                let _ = tx
                    .send(fail(&text, "the generation ended without a result".into()))
                    .await;
                return;
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
}

/// A file name for a download: the title's letters, digits and dashes.
fn file_name(title: &str, extension: &str) -> String {
    let stem: String = title
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect();
    let stem = stem.trim_matches('-');
    format!(
        "{}.{extension}",
        if stem.is_empty() { "chat" } else { stem }
    )
}

/// `GET /app/api/chats/{id}/export?format=json|markdown`.
pub async fn export(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Result<Response> {
    let user = caller.user()?;
    let export = ctx
        .app
        .db
        .export_chat(user.id, &id)?
        .ok_or_else(|| WebError::no_such("chat"))?;
    let (body, kind, ext) = match query.format.as_deref().unwrap_or("json") {
        "json" => (
            serde_json::to_string_pretty(&export).map_err(|e| {
                server::ServerError::Internal(format!("cannot write the export: {e}"))
            })?,
            "application/json",
            "json",
        ),
        "markdown" | "md" => (
            appdb::export_markdown(&export),
            "text/markdown; charset=utf-8",
            "md",
        ),
        other => {
            return Err(WebError::BadRequest(format!(
                "unknown export format {other:?}: use json or markdown"
            )))
        }
    };
    let disposition = format!("attachment; filename=\"{}\"", file_name(&export.title, ext));
    let mut response = ([(header::CONTENT_TYPE, kind)], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `POST /app/api/chats/import`: a chat exported as JSON becomes a new chat.
pub async fn import(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<ChatExport>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    let chat = ctx.app.db.import_chat(user.id, &body)?;
    Ok(Json(json!({ "chat": chat })))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// `GET /app/api/search?q=...`: the user's own chats only.
pub async fn search(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<SearchQuery>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    Ok(Json(json!({"hits": ctx.app.db.search(user.id, &query.q)?})))
}

/// `GET /app/api/presets`.
pub async fn presets(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    Ok(Json(json!({"presets": ctx.app.db.presets(user.id)?})))
}

/// `POST /app/api/presets`.
pub async fn create_preset(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewPreset>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    Ok(Json(
        json!({"preset": ctx.app.db.create_preset(user.id, &body)?}),
    ))
}

/// `PUT /app/api/presets/{id}`.
pub async fn update_preset(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Json(body): Json<NewPreset>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    let preset = ctx
        .app
        .db
        .update_preset(user.id, id, &body)?
        .ok_or_else(|| WebError::no_such("preset"))?;
    Ok(Json(json!({ "preset": preset })))
}

/// `DELETE /app/api/presets/{id}`.
pub async fn delete_preset(
    State(ctx): State<Ctx>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<Json<Value>> {
    let user = caller.user()?;
    if !ctx.app.db.delete_preset(user.id, id)? {
        return Err(WebError::no_such("preset"));
    }
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_tame() {
        assert_eq!(file_name("Rust: lifetimes?", "md"), "Rust--lifetimes.md");
        assert_eq!(file_name("../../etc/passwd", "json"), "etc-passwd.json");
        assert_eq!(file_name("\"; x=\u{1F600}", "json"), "x.json");
        assert_eq!(file_name("", "md"), "chat.md");
    }

    #[test]
    fn settings_become_options() {
        let o = options(&ChatSettings {
            system: Some("x".into()),
            temperature: Some(0.5),
            num_ctx: Some(2048),
            collections: vec![1],
        });
        assert_eq!(
            Value::Object(o),
            json!({"temperature": 0.5, "num_ctx": 2048})
        );
    }
}
