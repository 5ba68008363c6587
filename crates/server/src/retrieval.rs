//! Passages from an application's documents for a chat request: the `collections` extension
//! field of `/api/chat` and `/v1/chat/completions`. The server knows no documents itself; a
//! [`Retriever`] (the web app's) finds the passages the caller may read, and [`augment`] puts
//! them into the conversation: the rules into the system prompt, the fenced passages into the
//! user's last turn (untrusted text never gets the system prompt's authority). The answer
//! carries the passages as `sources`: the best ones that fit the model's context, fewer (down to
//! none) when all of them do not.

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
    /// The user's last turn rewritten with the passages before the question: `user_turns[k]`
    /// holds the first `k + 1` passages (the best first).
    pub user_turns: Vec<String>,
    /// The passages, as the answer reports them (as many as `user_turns`).
    pub sources: Vec<Value>,
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

/// The prompts to try, each with the sources it reports: `prompt` alone without `collections`;
/// with them, `prompt` with all the passages found, then with fewer, down to none (an empty
/// list of sources), for [`crate::generate::start_first_fitting`] to answer with the best
/// passages that fit the model's context.
pub async fn augment(
    state: &Arc<AppState>,
    extensions: &Extensions,
    collections: &[i64],
    prompt: Prompt,
) -> Result<Vec<(Prompt, Option<Value>)>> {
    if collections.is_empty() {
        return Ok(vec![(prompt, None)]);
    }
    let Some(retriever) = &state.retriever else {
        return Err(ServerError::BadRequest(
            "this server has no document collections: `collections` needs the web app".into(),
        ));
    };
    let Prompt::Chat {
        messages,
        system,
        template,
        tools,
    } = prompt
    else {
        return Ok(vec![(prompt, None)]);
    };
    let Some(last) = messages.iter().rposition(|m| m.role == "user") else {
        return Err(ServerError::BadRequest(
            "`collections` needs a user message to answer".into(),
        ));
    };
    let question = messages[last].content.clone();
    let Some(found) = retriever
        .retrieve(state, extensions, collections, &question)
        .await?
    else {
        let prompt = Prompt::Chat {
            messages,
            system,
            template,
            tools,
        };
        return Ok(vec![(prompt, None)]);
    };
    // The rules join the request's own system message, or the model's default.
    let mut ruled = messages.clone();
    let mut ruled_system = system.clone();
    match ruled.iter_mut().find(|m| m.role == "system") {
        Some(m) => m.content = format!("{}\n\n{}", m.content, found.rules),
        None => {
            ruled_system = Some(match ruled_system.take() {
                Some(s) => format!("{s}\n\n{}", found.rules),
                None => found.rules.clone(),
            })
        }
    }
    let mut choices = Vec::with_capacity(found.user_turns.len() + 1);
    for (k, turn) in found.user_turns.iter().enumerate().rev() {
        let mut messages = ruled.clone();
        messages[last].content = turn.clone();
        let prompt = Prompt::Chat {
            messages,
            system: ruled_system.clone(),
            template: template.clone(),
            tools: tools.clone(),
        };
        choices.push((prompt, Some(Value::from(found.sources[..=k].to_vec()))));
    }
    let prompt = Prompt::Chat {
        messages,
        system,
        template,
        tools,
    };
    choices.push((prompt, Some(Value::Array(Vec::new()))));
    Ok(choices)
}
