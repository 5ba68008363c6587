//! Passages from an application's documents for a chat request: the `collections` extension
//! field of `/api/chat` and `/v1/chat/completions`. The server knows no documents itself; a
//! [`Retriever`] (the web app's) finds the passages the caller may read, and [`augment`] puts
//! them into the conversation: the rules into the system prompt, the fenced passages into the
//! user's last turn (untrusted text never gets the system prompt's authority). The answer
//! carries the passages as `sources`.

use crate::error::{Result, ServerError};
use crate::generate::Prompt;
use crate::AppState;
use axum::http::Extensions;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What retrieval adds to a conversation.
pub struct Retrieved {
    /// Rules for answering from documents, added to the system prompt.
    pub rules: String,
    /// The user's last turn rewritten with the passages before the question.
    pub user_turn: String,
    /// The passages, as the answer reports them.
    pub sources: Value,
}

/// Finds passages in document collections for a question.
pub trait Retriever: Send + Sync {
    /// Passages of `collections` (those the caller, known from the request's `extensions`,
    /// may read) for `question`; `None` when nothing is found.
    fn retrieve<'a>(
        &'a self,
        state: &'a Arc<AppState>,
        extensions: &'a Extensions,
        collections: &'a [i64],
        question: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<Retrieved>>> + Send + 'a>>;
}

/// Adds passages from `collections` to a chat prompt; the sources to report, if any.
pub async fn augment(
    state: &Arc<AppState>,
    extensions: &Extensions,
    collections: &[i64],
    prompt: &mut Prompt,
) -> Result<Option<Value>> {
    if collections.is_empty() {
        return Ok(None);
    }
    let Some(retriever) = &state.retriever else {
        return Err(ServerError::BadRequest(
            "this server has no document collections: `collections` needs the web app".into(),
        ));
    };
    let Prompt::Chat {
        messages, system, ..
    } = prompt
    else {
        return Ok(None);
    };
    let Some(last) = messages.iter_mut().rev().find(|m| m.role == "user") else {
        return Err(ServerError::BadRequest(
            "`collections` needs a user message to answer".into(),
        ));
    };
    let question = last.content.clone();
    let Some(found) = retriever
        .retrieve(state, extensions, collections, &question)
        .await?
    else {
        return Ok(None);
    };
    last.content = found.user_turn;
    // The rules join the request's own system message, or the model's default.
    match messages.iter_mut().find(|m| m.role == "system") {
        Some(m) => m.content = format!("{}\n\n{}", m.content, found.rules),
        None => {
            *system = Some(match system.take() {
                Some(s) => format!("{s}\n\n{}", found.rules),
                None => found.rules,
            })
        }
    }
    Ok(Some(found.sources))
}
