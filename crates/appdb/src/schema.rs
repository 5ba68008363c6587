//! The schema, as a list of migration steps.
//!
//! `PRAGMA user_version` counts the steps applied. A step is never edited once released: a schema
//! change is a new step appended to [`MIGRATIONS`], so every database walks the same path.

use std::path::Path;

use rusqlite::Connection;

use crate::{DbError, Result};

/// The migration steps, applied in order, each in its own transaction.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The first schema.
///
/// Full-text search uses two external-content FTS5 tables kept right by triggers. Messages
/// are indexed only when not `streaming`: a streaming answer is rewritten a few times a second,
/// and re-indexing its whole text each time would make long answers slow; it is indexed once it
/// ends (done, stopped, error, or interrupted at the next start). Chats get an integer `seq`
/// because an FTS5 external content table needs a stable integer rowid (an implicit rowid may be
/// renumbered by VACUUM).
const V1: &str = r#"
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT,
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX api_keys_user ON api_keys(user_id);

CREATE TABLE chats (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    model TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX chats_user ON chats(user_id, updated_at);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id TEXT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL,
    model TEXT,
    stats TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX messages_chat ON messages(chat_id, id);
CREATE INDEX messages_streaming ON messages(id) WHERE status = 'streaming';

CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.status <> 'streaming' BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN old.status <> 'streaming' BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
-- One trigger, so that the old text is always removed before the new one is added.
CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, status ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content)
        SELECT 'delete', old.id, old.content WHERE old.status <> 'streaming';
    INSERT INTO messages_fts(rowid, content)
        SELECT new.id, new.content WHERE new.status <> 'streaming';
END;

CREATE VIRTUAL TABLE chats_fts USING fts5(title, content='chats', content_rowid='seq');
CREATE TRIGGER chats_fts_insert AFTER INSERT ON chats BEGIN
    INSERT INTO chats_fts(rowid, title) VALUES (new.seq, new.title);
END;
CREATE TRIGGER chats_fts_delete AFTER DELETE ON chats BEGIN
    INSERT INTO chats_fts(chats_fts, rowid, title) VALUES ('delete', old.seq, old.title);
END;
CREATE TRIGGER chats_fts_update AFTER UPDATE OF title ON chats BEGIN
    INSERT INTO chats_fts(chats_fts, rowid, title) VALUES ('delete', old.seq, old.title);
    INSERT INTO chats_fts(rowid, title) VALUES (new.seq, new.title);
END;

CREATE TABLE presets (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    model TEXT,
    settings TEXT NOT NULL
);
CREATE INDEX presets_user ON presets(user_id);

CREATE TABLE usage (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    day TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    generated_tokens INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (user_id, model, day)
);
CREATE INDEX usage_day ON usage(day);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// Documents for search and answers with sources (retrieval-augmented generation).
///
/// A collection belongs to a user (deleted with them) and holds documents, which hold chunks:
/// the passages that are embedded and searched. Embeddings live in their own table, one per
/// chunk, with the model's name beside the vector (little-endian f32), so a change of embedding
/// model drops the stale ones in one statement and chunk rows stay small for the text search.
/// `chunks_fts` is an external-content FTS5 index of the chunks' text, kept right by triggers
/// (deletes cascade from users, collections and documents, and fire them). The Porter stemmer
/// lets "installing" find "install". Ids are AUTOINCREMENT, never reused: background work on a
/// deleted document, or a saved answer's citation of a deleted chunk, must not land on a newer
/// one. Messages get the sources their answer was given (JSON).
const V2: &str = r#"
ALTER TABLE messages ADD COLUMN sources TEXT;

CREATE TABLE collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    shared INTEGER NOT NULL,
    embedding_model TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX collections_user ON collections(user_id);

CREATE TABLE documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    status TEXT NOT NULL,
    chunks_total INTEGER NOT NULL DEFAULT 0,
    chunks_done INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX documents_collection ON documents(collection_id);
CREATE INDEX documents_unfinished ON documents(id)
    WHERE status IN ('queued', 'extracting', 'embedding');

CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    location TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX chunks_document ON chunks(document_id);

CREATE TABLE chunk_embeddings (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    vector BLOB NOT NULL
);

CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='porter unicode61'
);
CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
"#;

/// Brings the schema of `conn` (the database at `path`, for messages) up to date.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    migrate_with(conn, path, MIGRATIONS)
}

fn migrate_with(conn: &mut Connection, path: &Path, steps: &[&str]) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = steps.len() as i64;
    if version > supported {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    for (done, step) in steps.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", done as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn steps_apply_in_order_and_only_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        let steps = ["CREATE TABLE a (x)", "INSERT INTO a VALUES (1)"];
        migrate_with(&mut conn, Path::new("t.db"), &steps[..1]).unwrap();
        assert_eq!(version(&conn), 1);
        migrate_with(&mut conn, Path::new("t.db"), &steps).unwrap();
        migrate_with(&mut conn, Path::new("t.db"), &steps).unwrap();
        assert_eq!(version(&conn), 2);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM a", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn a_failing_step_leaves_the_version_before_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        let steps = ["CREATE TABLE a (x)", "CREATE TABLE b (y); NOT SQL"];
        assert!(migrate_with(&mut conn, Path::new("t.db"), &steps).is_err());
        assert_eq!(version(&conn), 1);
        let b: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(b, 0, "the failed step was rolled back");
    }

    #[test]
    fn v2_keeps_the_messages_of_a_v1_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        migrate_with(&mut conn, Path::new("t.db"), &MIGRATIONS[..1]).unwrap();
        conn.execute_batch(
            "INSERT INTO users VALUES (1, 'a', NULL, 'admin', 'active', 0);
             INSERT INTO chats VALUES (1, 'c', 1, 't', 'm', '{}', 0, 0);
             INSERT INTO messages (chat_id, role, content, status, created_at)
                 VALUES ('c', 'user', 'hello there', 'done', 0);",
        )
        .unwrap();
        migrate(&mut conn, Path::new("t.db")).unwrap();
        assert_eq!(version(&conn), MIGRATIONS.len() as i64);
        let (content, sources): (String, Option<String>) = conn
            .query_row("SELECT content, sources FROM messages", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((content.as_str(), sources), ("hello there", None));
        conn.execute_batch(
            "INSERT INTO collections (user_id, name, shared, created_at) VALUES (1, 'c', 0, 0);
             INSERT INTO documents (collection_id, name, kind, bytes, status, created_at)
                 VALUES (1, 'd', 'text', 1, 'queued', 0);
             INSERT INTO chunks (document_id, location, text) VALUES (1, '', 'hello chunk');
             DELETE FROM users;",
        )
        .unwrap();
        let left: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM chunks) + (SELECT count(*) FROM messages)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "deleting the user cascades");
    }

    #[test]
    fn a_newer_version_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let err = migrate(&mut conn, Path::new("x.db")).unwrap_err();
        assert!(matches!(err, DbError::TooNew { found: 99, .. }), "{err}");
        assert!(err.to_string().contains("upgrade Hearth"));
    }
}
