//! Full-text search over a user's messages and chat titles (SQLite FTS5).

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::{Db, Result};

/// The most hits a search returns.
const MAX_HITS: i64 = 50;

/// A search result: a message (`message_id`) or a chat's title (`message_id: None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub chat_id: String,
    pub title: String,
    pub message_id: Option<i64>,
    /// Plain text: about 12 words around the match.
    pub snippet: String,
}

/// The FTS5 query for what a user typed, or `None` if it has no word to look for.
///
/// The user's text is never FTS5 syntax (a stray `"`, `*`, `NEAR(` or `-` would be an error or
/// an operator): every whitespace-separated word becomes a quoted phrase, all of them must
/// match, and the last is a prefix, so results follow the typing. FTS5's tokenizer splits a
/// phrase like `foo-bar` into its words itself. Words of ASCII punctuation alone are dropped:
/// as phrases they would be empty.
fn fts_query(text: &str) -> Option<String> {
    let mut query = quoted_words(text);
    let last = query.last_mut()?;
    last.push('*');
    Some(query.join(" "))
}

/// The words of `text` (split at whitespace) as FTS5 phrases: each in double quotes, a `"`
/// inside doubled, words of ASCII punctuation alone dropped. Whatever the text, none is FTS5
/// syntax.
pub(crate) fn quoted_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.chars().any(|c| c.is_alphanumeric() || !c.is_ascii()))
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect()
}

impl Db {
    /// Searches the messages and chat titles of `user_id` (best first, at most 50 hits). Any
    /// text is a valid query; one without words finds nothing. Messages are found once they are
    /// no longer streaming.
    pub fn search(&self, user_id: i64, query: &str) -> Result<Vec<SearchHit>> {
        let Some(fts) = fts_query(query) else {
            return Ok(Vec::new());
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.title, m.id, snippet(messages_fts, 0, '', '', '…', 12),
                    bm25(messages_fts) AS rank
             FROM messages_fts
             JOIN messages m ON m.id = messages_fts.rowid
             JOIN chats c ON c.id = m.chat_id
             WHERE messages_fts MATCH ?1 AND c.user_id = ?2
             UNION ALL
             SELECT c.id, c.title, NULL, snippet(chats_fts, 0, '', '', '…', 12),
                    bm25(chats_fts) AS rank
             FROM chats_fts
             JOIN chats c ON c.seq = chats_fts.rowid
             WHERE chats_fts MATCH ?1 AND c.user_id = ?2
             ORDER BY rank LIMIT ?3",
        )?;
        let hits = stmt
            .query_map(params![fts, user_id, MAX_HITS], |row| {
                Ok(SearchHit {
                    chat_id: row.get(0)?,
                    title: row.get(1)?,
                    message_id: row.get(2)?,
                    snippet: row.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_quoted_phrases_with_a_prefix_last() {
        assert_eq!(fts_query("hello").as_deref(), Some("\"hello\"*"));
        assert_eq!(
            fts_query("  rust  borrow\tcheck ").as_deref(),
            Some("\"rust\" \"borrow\" \"check\"*")
        );
        assert_eq!(
            fts_query("say \"hi NEAR(x -y").as_deref(),
            Some("\"say\" \"\"\"hi\" \"NEAR(x\" \"-y\"*")
        );
        assert_eq!(fts_query("a * - \" ").as_deref(), Some("\"a\"*"));
    }

    #[test]
    fn wordless_queries_are_none() {
        for q in ["", "   ", "\"", "*", "- -- ()", "\"\" * :^"] {
            assert_eq!(fts_query(q), None, "{q:?}");
        }
    }
}
