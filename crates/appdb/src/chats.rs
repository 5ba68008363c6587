//! Chats, their messages, and chat export/import.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::{json_column, now, random_hex, text_enum, to_json, Db, Result};

/// The most messages an imported chat may have.
const MAX_IMPORT_MESSAGES: usize = 10_000;
/// The largest message (and title) an import may hold, in bytes.
const MAX_IMPORT_BYTES: usize = 1_000_000;

/// A chat's generation settings; `None` leaves the model's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatSettings {
    pub system: Option<String>,
    pub temperature: Option<f64>,
    pub num_ctx: Option<u32>,
    /// Document collections whose passages the answers get (ids; ones the user may not read
    /// are skipped when answering).
    pub collections: Vec<i64>,
}

/// A conversation of one user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chat {
    pub id: String,
    pub title: String,
    pub model: String,
    pub settings: ChatSettings,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The fields of a chat to change; `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatUpdate {
    pub title: Option<String>,
    pub model: Option<String>,
    pub settings: Option<ChatSettings>,
}

/// Where a message stands: an answer is `streaming` while it is generated, then `done`,
/// `stopped` (the client went away), `error`, or `interrupted` (the server stopped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Done,
    Streaming,
    Interrupted,
    Stopped,
    Error,
}
text_enum!(MessageStatus {
    Done => "done",
    Streaming => "streaming",
    Interrupted => "interrupted",
    Stopped => "stopped",
    Error => "error",
});

/// Statistics of a generated answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageStats {
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub tokens_per_second: f64,
    pub context_used: u64,
    pub context_size: u64,
}

/// A message of a chat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub role: String,
    pub content: String,
    pub status: MessageStatus,
    pub model: Option<String>,
    pub stats: Option<MessageStats>,
    pub created_at: i64,
    /// The passages an answer was given (set by [`Db::set_message_sources`]); `null` if none.
    #[serde(default)]
    pub sources: Option<serde_json::Value>,
}

/// A message to append with [`Db::add_message`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub role: String,
    pub content: String,
    pub status: MessageStatus,
    pub model: Option<String>,
}

/// A chat as exported to (and imported from) JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatExport {
    pub title: String,
    pub model: String,
    #[serde(default)]
    pub settings: ChatSettings,
    pub messages: Vec<ExportedMessage>,
}

/// A message of a [`ChatExport`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedMessage {
    pub role: String,
    pub content: String,
    #[serde(default)]
    pub created_at: i64,
}

/// The chat as Markdown: `# title`, then each message under a bold role heading, verbatim.
pub fn export_markdown(export: &ChatExport) -> String {
    let mut out = format!("# {}\n", export.title);
    for message in &export.messages {
        let heading = match message.role.as_str() {
            "user" => "User",
            "assistant" => "Assistant",
            "system" => "System",
            other => other,
        };
        out.push_str(&format!("\n**{heading}**\n\n{}\n", message.content));
    }
    out
}

/// Checks that `role` is one a chat can hold.
fn check_role(role: &str) -> Result<()> {
    if matches!(role, "user" | "assistant" | "system") {
        Ok(())
    } else {
        Err(invalid(
            "message role",
            format!("{role:?} is not one of \"user\", \"assistant\", \"system\""),
        ))
    }
}

const CHAT_COLUMNS: &str = "id, title, model, settings, created_at, updated_at";

fn chat_row(row: &Row<'_>) -> rusqlite::Result<Chat> {
    Ok(Chat {
        id: row.get(0)?,
        title: row.get(1)?,
        model: row.get(2)?,
        settings: json_column(row, 3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

const MESSAGE_COLUMNS: &str = "id, role, content, status, model, stats, created_at, sources";

fn message_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    // Stats are only shown: unreadable ones (none are written) must not make the chat unreadable.
    let stats = row
        .get::<_, Option<String>>(5)?
        .and_then(|text| serde_json::from_str(&text).ok());
    // The same for sources.
    let sources = row
        .get::<_, Option<String>>(7)?
        .and_then(|text| serde_json::from_str(&text).ok());
    Ok(Message {
        id: row.get(0)?,
        role: row.get(1)?,
        content: row.get(2)?,
        status: row.get(3)?,
        model: row.get(4)?,
        stats,
        created_at: row.get(6)?,
        sources,
    })
}

/// The chat `chat_id` if it belongs to `user_id`.
fn owned_chat(conn: &Connection, user_id: i64, chat_id: &str) -> Result<Option<Chat>> {
    Ok(conn
        .query_row(
            &format!("SELECT {CHAT_COLUMNS} FROM chats WHERE id = ?1 AND user_id = ?2"),
            params![chat_id, user_id],
            chat_row,
        )
        .optional()?)
}

/// Inserts a chat with a new unguessable id.
fn insert_chat(
    conn: &Connection,
    user_id: i64,
    title: &str,
    model: &str,
    settings: &ChatSettings,
) -> Result<Chat> {
    let created = now();
    Ok(conn.query_row(
        &format!(
            "INSERT INTO chats (id, user_id, title, model, settings, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING {CHAT_COLUMNS}"
        ),
        params![
            random_hex(8)?,
            user_id,
            title,
            model,
            to_json("chat settings", settings)?,
            created
        ],
        chat_row,
    )?)
}

impl Db {
    /// Starts a chat of `user_id`.
    pub fn create_chat(
        &self,
        user_id: i64,
        title: &str,
        model: &str,
        settings: &ChatSettings,
    ) -> Result<Chat> {
        insert_chat(&self.conn(), user_id, title, model, settings)
    }

    /// The chats of `user_id`, most recently updated first.
    pub fn chats(&self, user_id: i64) -> Result<Vec<Chat>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {CHAT_COLUMNS} FROM chats WHERE user_id = ?1 ORDER BY updated_at DESC, id"
        ))?;
        let chats = stmt
            .query_map([user_id], chat_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(chats)
    }

    /// The chat, if it is `user_id`'s.
    pub fn chat(&self, user_id: i64, chat_id: &str) -> Result<Option<Chat>> {
        owned_chat(&self.conn(), user_id, chat_id)
    }

    /// Changes the given fields of the chat; `None` if it is not `user_id`'s.
    pub fn update_chat(
        &self,
        user_id: i64,
        chat_id: &str,
        update: &ChatUpdate,
    ) -> Result<Option<Chat>> {
        let settings = update
            .settings
            .as_ref()
            .map(|s| to_json("chat settings", s))
            .transpose()?;
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "UPDATE chats SET title = coalesce(?1, title), model = coalesce(?2, model),
                     settings = coalesce(?3, settings), updated_at = ?4
                     WHERE id = ?5 AND user_id = ?6 RETURNING {CHAT_COLUMNS}"
                ),
                params![
                    update.title,
                    update.model,
                    settings,
                    now(),
                    chat_id,
                    user_id
                ],
                chat_row,
            )
            .optional()?)
    }

    /// Deletes the chat and its messages; false if it is not `user_id`'s.
    pub fn delete_chat(&self, user_id: i64, chat_id: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM chats WHERE id = ?1 AND user_id = ?2",
            params![chat_id, user_id],
        )? > 0)
    }

    /// The chat's messages in order; `None` if it is not `user_id`'s.
    pub fn messages(&self, user_id: i64, chat_id: &str) -> Result<Option<Vec<Message>>> {
        let conn = self.conn();
        if owned_chat(&conn, user_id, chat_id)?.is_none() {
            return Ok(None);
        }
        let mut stmt = conn.prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ?1 ORDER BY id"
        ))?;
        let messages = stmt
            .query_map([chat_id], message_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(messages))
    }

    /// Appends a message (role `user`, `assistant` or `system`) and bumps the chat's
    /// `updated_at`; `None` if the chat is not `user_id`'s.
    pub fn add_message(
        &self,
        user_id: i64,
        chat_id: &str,
        new: &NewMessage,
    ) -> Result<Option<Message>> {
        check_role(&new.role)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let created = now();
        let bumped = tx.execute(
            "UPDATE chats SET updated_at = ?1 WHERE id = ?2 AND user_id = ?3",
            params![created, chat_id, user_id],
        )?;
        if bumped == 0 {
            return Ok(None);
        }
        let message = tx.query_row(
            &format!(
                "INSERT INTO messages (chat_id, role, content, status, model, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING {MESSAGE_COLUMNS}"
            ),
            params![
                chat_id,
                new.role,
                new.content,
                new.status,
                new.model,
                created
            ],
            message_row,
        )?;
        tx.commit()?;
        Ok(Some(message))
    }

    /// Sets the content, status and stats of a message: the progress of a streaming answer.
    /// A message that is gone (its chat was deleted meanwhile) is no error.
    pub fn update_message(
        &self,
        message_id: i64,
        content: &str,
        status: MessageStatus,
        stats: Option<&MessageStats>,
    ) -> Result<()> {
        let stats = stats
            .map(|s| {
                // JSON has no NaN or infinity (serde_json writes null, which would not read back
                // as a number): a zero-length generation's rate is stored as 0.
                let rate = s.tokens_per_second;
                let stats = MessageStats {
                    tokens_per_second: if rate.is_finite() { rate } else { 0.0 },
                    ..s.clone()
                };
                to_json("message stats", &stats)
            })
            .transpose()?;
        // Called a few times a second while an answer streams: keep the statement prepared.
        self.conn()
            .prepare_cached(
                "UPDATE messages SET content = ?1, status = ?2, stats = ?3 WHERE id = ?4",
            )?
            .execute(params![content, status, stats, message_id])?;
        Ok(())
    }

    /// Attaches the sources an answer was given (any JSON, kept as it is; `null` removes them)
    /// to a message. A message that is gone is no error.
    pub fn set_message_sources(&self, message_id: i64, sources: &serde_json::Value) -> Result<()> {
        let sources = if sources.is_null() {
            None
        } else {
            Some(to_json("message sources", sources)?)
        };
        self.conn().execute(
            "UPDATE messages SET sources = ?1 WHERE id = ?2",
            params![sources, message_id],
        )?;
        Ok(())
    }

    /// Deletes message `from` and all later messages of the chat (to edit and resend, or to
    /// regenerate); false if the chat is not `user_id`'s.
    pub fn truncate_chat(&self, user_id: i64, chat_id: &str, from: i64) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let bumped = tx.execute(
            "UPDATE chats SET updated_at = ?1 WHERE id = ?2 AND user_id = ?3",
            params![now(), chat_id, user_id],
        )?;
        if bumped == 0 {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM messages WHERE chat_id = ?1 AND id >= ?2",
            params![chat_id, from],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// The chat with all its messages, for download; `None` if it is not `user_id`'s.
    pub fn export_chat(&self, user_id: i64, chat_id: &str) -> Result<Option<ChatExport>> {
        let conn = self.conn();
        let Some(chat) = owned_chat(&conn, user_id, chat_id)? else {
            return Ok(None);
        };
        let mut stmt = conn.prepare(
            "SELECT role, content, created_at FROM messages WHERE chat_id = ?1 ORDER BY id",
        )?;
        let messages = stmt
            .query_map([chat_id], |row| {
                Ok(ExportedMessage {
                    role: row.get(0)?,
                    content: row.get(1)?,
                    created_at: row.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(ChatExport {
            title: chat.title,
            model: chat.model,
            settings: chat.settings,
            messages,
        }))
    }

    /// A new chat of `user_id` made from an export. Roles must be `user`, `assistant` or
    /// `system`; at most 10 000 messages of at most 1 MB each. Messages without a time get now.
    pub fn import_chat(&self, user_id: i64, export: &ChatExport) -> Result<Chat> {
        if export.messages.len() > MAX_IMPORT_MESSAGES {
            return Err(invalid(
                "chat import",
                format!(
                    "it has {} messages, more than the {MAX_IMPORT_MESSAGES} allowed",
                    export.messages.len()
                ),
            ));
        }
        if export.title.len() > MAX_IMPORT_BYTES {
            return Err(invalid("chat import", "its title is larger than 1 MB"));
        }
        for (i, message) in export.messages.iter().enumerate() {
            check_role(&message.role)?;
            if message.content.len() > MAX_IMPORT_BYTES {
                return Err(invalid(
                    "chat import",
                    format!("message {} is larger than 1 MB", i + 1),
                ));
            }
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let chat = insert_chat(&tx, user_id, &export.title, &export.model, &export.settings)?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO messages (chat_id, role, content, status, model, created_at)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
            )?;
            for message in &export.messages {
                let created = if message.created_at > 0 {
                    message.created_at
                } else {
                    chat.created_at
                };
                insert.execute(params![
                    chat.id,
                    message.role,
                    message.content,
                    MessageStatus::Done,
                    created
                ])?;
            }
        }
        tx.commit()?;
        Ok(chat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_message(content: &str) -> NewMessage {
        NewMessage {
            role: "user".into(),
            content: content.into(),
            status: MessageStatus::Done,
            model: None,
        }
    }

    #[test]
    fn messages_round_trip_with_stats() {
        let db = Db::open_in_memory().unwrap();
        let me = db.local_user().unwrap().id;
        let chat = db
            .create_chat(me, "t", "m", &ChatSettings::default())
            .unwrap();
        db.add_message(me, &chat.id, &user_message("hi")).unwrap();
        let answer = db
            .add_message(
                me,
                &chat.id,
                &NewMessage {
                    role: "assistant".into(),
                    content: String::new(),
                    status: MessageStatus::Streaming,
                    model: Some("m".into()),
                },
            )
            .unwrap()
            .unwrap();
        let stats = MessageStats {
            prompt_tokens: 3,
            generated_tokens: 2,
            tokens_per_second: 12.5,
            context_used: 5,
            context_size: 4096,
        };
        db.update_message(answer.id, "hello", MessageStatus::Done, Some(&stats))
            .unwrap();
        let messages = db.messages(me, &chat.id).unwrap().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].content, "hi");
        assert_eq!(messages[1].content, "hello");
        assert_eq!(messages[1].status, MessageStatus::Done);
        assert_eq!(messages[1].stats, Some(stats.clone()));
        assert_eq!(messages[1].model.as_deref(), Some("m"));
        let nan = MessageStats {
            tokens_per_second: f64::NAN,
            ..stats.clone()
        };
        db.update_message(answer.id, "hello", MessageStatus::Done, Some(&nan))
            .unwrap();
        let messages = db.messages(me, &chat.id).unwrap().unwrap();
        assert_eq!(messages[1].stats.as_ref().unwrap().tokens_per_second, 0.0);
        // A message whose chat is gone is no error.
        db.update_message(9999, "x", MessageStatus::Done, None)
            .unwrap();
    }

    #[test]
    fn bad_roles_are_refused() {
        let db = Db::open_in_memory().unwrap();
        let me = db.local_user().unwrap().id;
        let chat = db
            .create_chat(me, "t", "m", &ChatSettings::default())
            .unwrap();
        let mut m = user_message("x");
        m.role = "tool".into();
        assert!(matches!(
            db.add_message(me, &chat.id, &m),
            Err(crate::DbError::Invalid { .. })
        ));
    }

    #[test]
    fn update_changes_only_given_fields() {
        let db = Db::open_in_memory().unwrap();
        let me = db.local_user().unwrap().id;
        let settings = ChatSettings {
            system: Some("be brief".into()),
            temperature: Some(0.5),
            num_ctx: Some(2048),
            collections: vec![3, 1],
        };
        let chat = db.create_chat(me, "old", "m1", &settings).unwrap();
        assert_eq!(chat.id.len(), 16);
        assert_eq!(db.chat(me, &chat.id).unwrap().unwrap().settings, settings);
        let renamed = db
            .update_chat(
                me,
                &chat.id,
                &ChatUpdate {
                    title: Some("new".into()),
                    ..ChatUpdate::default()
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(renamed.title, "new");
        assert_eq!(renamed.model, "m1");
        assert_eq!(renamed.settings, settings);
        let moved = db
            .update_chat(
                me,
                &chat.id,
                &ChatUpdate {
                    model: Some("m2".into()),
                    settings: Some(ChatSettings::default()),
                    ..ChatUpdate::default()
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!((moved.title.as_str(), moved.model.as_str()), ("new", "m2"));
        assert_eq!(moved.settings, ChatSettings::default());
    }

    #[test]
    fn settings_json_accepts_missing_fields() {
        let s: ChatSettings = serde_json::from_str(r#"{"temperature": 0.2}"#).unwrap();
        assert_eq!(s.temperature, Some(0.2));
        assert_eq!(s.system, None);
        let e: ChatExport = serde_json::from_str(
            r#"{"title":"t","model":"m","messages":[{"role":"user","content":"c"}]}"#,
        )
        .unwrap();
        assert_eq!(e.settings, ChatSettings::default());
        assert_eq!(e.messages[0].created_at, 0);
    }

    #[test]
    fn statuses_serialize_lowercase() {
        assert_eq!(
            serde_json::to_string(&MessageStatus::Interrupted).unwrap(),
            "\"interrupted\""
        );
        for s in [
            MessageStatus::Done,
            MessageStatus::Streaming,
            MessageStatus::Interrupted,
            MessageStatus::Stopped,
            MessageStatus::Error,
        ] {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(MessageStatus::parse("Done"), None);
    }
}
