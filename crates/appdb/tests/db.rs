//! The database through its public interface, on real files.

use std::path::Path;
use std::time::Duration;

use appdb::{
    export_markdown, ChatExport, ChatSettings, ChatUpdate, Db, DbError, ExportedMessage,
    MessageStats, MessageStatus, NewMessage, Role, Status,
};

fn message(role: &str, content: &str, status: MessageStatus) -> NewMessage {
    NewMessage {
        role: role.into(),
        content: content.into(),
        status,
        model: None,
    }
}

fn user(db: &Db, name: &str) -> i64 {
    db.create_user(name, "password1", Role::User, Status::Active)
        .unwrap()
        .id
}

/// Fails unless both full-text indexes match their tables exactly (FTS5's integrity check
/// against the external content; only valid while no message is streaming, as those are not
/// indexed).
fn assert_index_consistent(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    for table in ["messages_fts", "chats_fts"] {
        conn.execute(
            &format!("INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)"),
            [],
        )
        .unwrap_or_else(|e| panic!("{table}: {e}"));
    }
}

#[test]
fn a_fresh_file_is_created_and_reopening_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dirs/app.db");
    let (id, chat_id) = {
        let db = Db::open(&path).unwrap();
        let id = user(&db, "alice");
        let chat = db
            .create_chat(id, "Hello", "llama", &ChatSettings::default())
            .unwrap();
        db.add_message(id, &chat.id, &message("user", "hi", MessageStatus::Done))
            .unwrap()
            .unwrap();
        db.set_setting("k", "v").unwrap();
        (id, chat.id)
    };
    assert!(path.exists());
    let db = Db::open(&path).unwrap();
    assert_eq!(db.interrupted_at_open(), 0);
    assert_eq!(db.user(id).unwrap().unwrap().username, "alice");
    assert_eq!(db.chats(id).unwrap()[0].id, chat_id);
    assert_eq!(db.messages(id, &chat_id).unwrap().unwrap()[0].content, "hi");
    assert_eq!(db.setting("k").unwrap().as_deref(), Some("v"));
    let mode: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_message_left_streaming_is_interrupted_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let (me, chat_id, answer_id) = {
        let db = Db::open(&path).unwrap();
        let me = db.local_user().unwrap().id;
        let chat = db
            .create_chat(me, "t", "m", &ChatSettings::default())
            .unwrap();
        let answer = db
            .add_message(
                me,
                &chat.id,
                &message("assistant", "", MessageStatus::Streaming),
            )
            .unwrap()
            .unwrap();
        db.update_message(answer.id, "half an answ", MessageStatus::Streaming, None)
            .unwrap();
        // The server stops here: the Db is dropped mid-answer.
        (me, chat.id, answer.id)
    };
    let db = Db::open(&path).unwrap();
    assert_eq!(db.interrupted_at_open(), 1);
    let messages = db.messages(me, &chat_id).unwrap().unwrap();
    assert_eq!(messages[0].id, answer_id);
    assert_eq!(messages[0].status, MessageStatus::Interrupted);
    assert_eq!(messages[0].content, "half an answ");
    // Now it is searchable.
    assert_eq!(db.search(me, "answ").unwrap().len(), 1);
    assert_index_consistent(&path);
    drop(db);
    assert_eq!(Db::open(&path).unwrap().interrupted_at_open(), 0);
}

#[test]
fn a_database_from_a_newer_hearth_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    drop(Db::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 1000)
        .unwrap();
    let err = Db::open(&path).err().unwrap();
    assert!(
        matches!(err, DbError::TooNew { found: 1000, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("upgrade Hearth") && text.contains("app.db"),
        "{text}"
    );
}

#[test]
fn passwords() {
    let db = Db::open_in_memory().unwrap();
    let alice = db
        .create_user("Alice", "correct horse", Role::Admin, Status::Active)
        .unwrap();
    assert_eq!(alice.username, "Alice");
    assert_eq!(db.account_count().unwrap(), 1);
    let found = db.check_password("alice", "correct horse").unwrap();
    assert_eq!(found, Some(alice.clone()), "usernames ignore case");
    assert_eq!(db.check_password("Alice", "wrong horse").unwrap(), None);
    assert_eq!(db.check_password("nobody", "correct horse").unwrap(), None);
    // The status is the caller's business.
    db.set_status(alice.id, Status::Disabled).unwrap();
    let disabled = db
        .check_password("Alice", "correct horse")
        .unwrap()
        .unwrap();
    assert_eq!(disabled.status, Status::Disabled);
    // The hash never shows.
    let json = serde_json::to_string(&disabled).unwrap();
    assert!(!json.contains("argon2"), "{json}");
}

#[test]
fn username_and_password_rules() {
    let db = Db::open_in_memory().unwrap();
    for bad in ["", "with space", "ünïcode", "semi;colon", &"a".repeat(65)] {
        let err = db
            .create_user(bad, "password1", Role::User, Status::Active)
            .unwrap_err();
        assert!(matches!(err, DbError::Invalid { .. }), "{bad:?}: {err}");
    }
    let err = db
        .create_user("bob", "short", Role::User, Status::Active)
        .unwrap_err();
    assert!(matches!(
        err,
        DbError::Invalid {
            what: "password",
            ..
        }
    ));
    db.create_user("bob.smith-2_", "password1", Role::User, Status::Pending)
        .unwrap();
    let err = db
        .create_user("BOB.Smith-2_", "password2", Role::User, Status::Active)
        .unwrap_err();
    assert!(matches!(err, DbError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("taken"));
    assert_eq!(db.users().unwrap().len(), 1);
}

#[test]
fn users_are_listed_oldest_first_without_local() {
    let db = Db::open_in_memory().unwrap();
    db.local_user().unwrap();
    let a = user(&db, "a");
    let b = user(&db, "b");
    let ids: Vec<i64> = db.users().unwrap().iter().map(|u| u.id).collect();
    assert_eq!(ids, [a, b]);
    assert_eq!(db.account_count().unwrap(), 2);
}

#[test]
fn sessions() {
    let db = Db::open_in_memory().unwrap();
    let a = user(&db, "a");
    let s = db.create_session(a, Duration::from_secs(3600)).unwrap();
    assert_eq!(s.token.len(), 64);
    assert_eq!(s.csrf.len(), 64);
    let (who, csrf) = db.session(&s.token).unwrap().unwrap();
    assert_eq!((who.id, csrf), (a, s.csrf.clone()));
    assert_eq!(db.session("not a token").unwrap(), None);

    let expired = db.create_session(a, Duration::ZERO).unwrap();
    assert_eq!(db.session(&expired.token).unwrap(), None);

    let other = db.create_session(a, Duration::from_secs(3600)).unwrap();
    db.delete_session(&s.token).unwrap();
    assert_eq!(db.session(&s.token).unwrap(), None);
    assert!(db.session(&other.token).unwrap().is_some());
    db.delete_sessions_of(a).unwrap();
    assert_eq!(db.session(&other.token).unwrap(), None);

    // Deleting the user ends their sessions.
    let again = db.create_session(a, Duration::from_secs(3600)).unwrap();
    assert!(db.delete_user(a).unwrap());
    assert_eq!(db.session(&again.token).unwrap(), None);
}

#[test]
fn api_keys() {
    let db = Db::open_in_memory().unwrap();
    let a = user(&db, "a");
    let b = user(&db, "b");
    let (key, secret) = db.create_api_key(a, "laptop").unwrap();
    assert!(
        secret.starts_with("hearth_") && secret.len() == 47,
        "{secret}"
    );
    assert!(secret[7..].bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(key.prefix, &secret[..12]);
    assert_eq!(key.last_used_at, None);
    assert_eq!(db.api_keys(a).unwrap(), vec![key.clone()]);
    assert!(db.api_keys(b).unwrap().is_empty());

    assert_eq!(db.api_key_user(&secret).unwrap().unwrap().id, a);
    assert!(db.api_keys(a).unwrap()[0].last_used_at.is_some());
    assert_eq!(db.api_key_user("hearth_nope").unwrap(), None);
    assert_eq!(db.api_key_user(&key.prefix).unwrap(), None);

    assert!(!db.revoke_api_key(b, key.id).unwrap(), "not b's key");
    assert!(db.api_key_user(&secret).unwrap().is_some());
    assert!(db.revoke_api_key(a, key.id).unwrap());
    assert_eq!(db.api_key_user(&secret).unwrap(), None);
    assert!(db.create_api_key(a, " ").is_err());
}

#[test]
fn another_users_chat_is_like_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("app.db")).unwrap();
    let a = user(&db, "a");
    let b = user(&db, "b");
    let chat = db
        .create_chat(a, "Secret plans", "m", &ChatSettings::default())
        .unwrap();
    let m = db
        .add_message(
            a,
            &chat.id,
            &message("user", "the treasure map", MessageStatus::Done),
        )
        .unwrap()
        .unwrap();

    assert!(db.chats(b).unwrap().is_empty());
    assert_eq!(db.chat(b, &chat.id).unwrap(), None);
    let update = ChatUpdate {
        title: Some("mine now".into()),
        ..ChatUpdate::default()
    };
    assert_eq!(db.update_chat(b, &chat.id, &update).unwrap(), None);
    assert_eq!(db.messages(b, &chat.id).unwrap(), None);
    assert_eq!(
        db.add_message(b, &chat.id, &message("user", "x", MessageStatus::Done))
            .unwrap(),
        None
    );
    assert!(!db.truncate_chat(b, &chat.id, m.id).unwrap());
    assert_eq!(db.export_chat(b, &chat.id).unwrap(), None);
    assert!(!db.delete_chat(b, &chat.id).unwrap());
    assert!(db.search(b, "treasure").unwrap().is_empty());
    assert!(db.search(b, "secret").unwrap().is_empty());

    // Nothing changed for a.
    assert_eq!(db.chat(a, &chat.id).unwrap().unwrap().title, "Secret plans");
    assert_eq!(db.messages(a, &chat.id).unwrap().unwrap().len(), 1);
    assert_eq!(db.search(a, "treasure").unwrap().len(), 1);
    assert_eq!(db.chat(a, "no-such-chat").unwrap(), None);
}

#[test]
fn chats_are_newest_first_and_truncate_drops_the_tail() {
    let db = Db::open_in_memory().unwrap();
    let a = user(&db, "a");
    let first = db
        .create_chat(a, "one", "m", &ChatSettings::default())
        .unwrap();
    let second = db
        .create_chat(a, "two", "m", &ChatSettings::default())
        .unwrap();
    let ids: Vec<String> = db.chats(a).unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&first.id) && ids.contains(&second.id));

    let ms: Vec<i64> = ["q1", "a1", "q2", "a2"]
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            db.add_message(a, &first.id, &message(role, text, MessageStatus::Done))
                .unwrap()
                .unwrap()
                .id
        })
        .collect();
    assert!(ms.windows(2).all(|w| w[0] < w[1]));
    assert!(db.truncate_chat(a, &first.id, ms[2]).unwrap());
    let left: Vec<String> = db
        .messages(a, &first.id)
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(left, ["q1", "a1"]);
    assert!(db.search(a, "q2").unwrap().is_empty());

    assert!(db.delete_chat(a, &second.id).unwrap());
    assert!(!db.delete_chat(a, &second.id).unwrap());
    assert_eq!(db.chats(a).unwrap().len(), 1);
}

#[test]
fn search_finds_messages_and_titles_and_follows_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let db = Db::open(&path).unwrap();
    let a = user(&db, "a");
    let chat = db
        .create_chat(a, "Gardening tips", "m", &ChatSettings::default())
        .unwrap();
    let q = db
        .add_message(
            a,
            &chat.id,
            &message(
                "user",
                "How do I grow tomatoes on a sunny balcony in a small pot?",
                MessageStatus::Done,
            ),
        )
        .unwrap()
        .unwrap();

    let hits = db.search(a, "tomatoes").unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].chat_id, chat.id);
    assert_eq!(hits[0].title, "Gardening tips");
    assert_eq!(hits[0].message_id, Some(q.id));
    assert!(
        hits[0].snippet.contains("tomatoes"),
        "{:?}",
        hits[0].snippet
    );
    assert!(!hits[0].snippet.contains('['), "plain text");

    let hits = db.search(a, "garden").unwrap();
    assert_eq!(hits.len(), 1, "title, by prefix");
    assert_eq!(hits[0].message_id, None);
    assert_eq!(hits[0].snippet, "Gardening tips");

    assert_eq!(
        db.search(a, "grow balc").unwrap().len(),
        1,
        "AND, prefix last"
    );
    assert!(db.search(a, "grow cucumbers").unwrap().is_empty());
    assert!(
        db.search(a, "balc grow").unwrap().is_empty(),
        "only the last is a prefix"
    );

    // Any text is a query, never FTS syntax.
    for q in [
        "\"",
        "*",
        "NEAR(",
        "-",
        "",
        "   ",
        "tomatoes\"",
        "\"tomatoes",
        "NEAR(tomatoes",
        "-tomatoes",
        "tomatoes OR x",
        "a:b",
        "^tom",
        "(((",
        "tom*",
    ] {
        db.search(a, q)
            .unwrap_or_else(|e| panic!("query {q:?}: {e}"));
    }
    assert!(db
        .search(a, "\" * - NEAR(")
        .unwrap()
        .iter()
        .all(|h| h.chat_id == chat.id));
    assert!(db.search(a, "").unwrap().is_empty());
    assert!(db.search(a, "?!").unwrap().is_empty());
    assert_eq!(db.search(a, "\"tomatoes").unwrap().len(), 1);
    assert_eq!(db.search(a, "-tomatoes").unwrap().len(), 1);
    assert!(
        db.search(a, "tomatoes OR x").unwrap().is_empty(),
        "OR is a word"
    );

    // A streaming answer is indexed once it ends, then follows its updates.
    let answer = db
        .add_message(
            a,
            &chat.id,
            &message("assistant", "", MessageStatus::Streaming),
        )
        .unwrap()
        .unwrap();
    db.update_message(answer.id, "Use basil", MessageStatus::Streaming, None)
        .unwrap();
    db.update_message(
        answer.id,
        "Use basil and compost",
        MessageStatus::Done,
        None,
    )
    .unwrap();
    assert_eq!(
        db.search(a, "compost").unwrap()[0].message_id,
        Some(answer.id)
    );
    db.update_message(answer.id, "Use manure", MessageStatus::Done, None)
        .unwrap();
    assert!(db.search(a, "compost").unwrap().is_empty());
    assert_eq!(db.search(a, "manure").unwrap().len(), 1);
    assert_index_consistent(&path);

    // Renaming follows too.
    let update = ChatUpdate {
        title: Some("Balcony farming".into()),
        ..ChatUpdate::default()
    };
    db.update_chat(a, &chat.id, &update).unwrap().unwrap();
    assert!(db.search(a, "gardening").unwrap().is_empty());
    assert_eq!(db.search(a, "farming").unwrap()[0].message_id, None);
    assert_index_consistent(&path);

    // Deleting the chat empties the index.
    assert!(db.delete_chat(a, &chat.id).unwrap());
    assert!(db.search(a, "manure").unwrap().is_empty());
    assert!(db.search(a, "farming").unwrap().is_empty());
    assert_index_consistent(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    for table in ["messages_fts", "chats_fts"] {
        let n: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE {table} MATCH 'manure OR farming'"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }

    // Deleting the user empties it too.
    let other = db
        .create_chat(a, "Kept", "m", &ChatSettings::default())
        .unwrap();
    db.add_message(
        a,
        &other.id,
        &message("user", "remember me", MessageStatus::Done),
    )
    .unwrap();
    assert!(db.delete_user(a).unwrap());
    assert_index_consistent(&path);
}

#[test]
fn search_returns_at_most_50_hits() {
    let db = Db::open_in_memory().unwrap();
    let a = user(&db, "a");
    let chat = db
        .create_chat(a, "many", "m", &ChatSettings::default())
        .unwrap();
    for i in 0..60 {
        db.add_message(
            a,
            &chat.id,
            &message("user", &format!("needle number {i}"), MessageStatus::Done),
        )
        .unwrap();
    }
    assert_eq!(db.search(a, "needle").unwrap().len(), 50);
}

#[test]
fn long_messages_get_a_short_snippet() {
    let db = Db::open_in_memory().unwrap();
    let a = user(&db, "a");
    let chat = db
        .create_chat(a, "long", "m", &ChatSettings::default())
        .unwrap();
    let text = format!("{} haystack {}", "word ".repeat(100), "word ".repeat(100));
    db.add_message(a, &chat.id, &message("user", &text, MessageStatus::Done))
        .unwrap();
    let hit = &db.search(a, "haystack").unwrap()[0];
    assert!(hit.snippet.contains("haystack"));
    let words = hit.snippet.split_whitespace().count();
    assert!((8..=16).contains(&words), "{words}: {:?}", hit.snippet);
}

#[test]
fn export_import_round_trip_and_markdown() {
    let db = Db::open_in_memory().unwrap();
    let a = user(&db, "a");
    let b = user(&db, "b");
    let settings = ChatSettings {
        system: Some("Be terse.".into()),
        temperature: Some(0.3),
        num_ctx: Some(8192),
        collections: vec![7],
    };
    let chat = db.create_chat(a, "Rust Q&A", "qwen", &settings).unwrap();
    db.add_message(
        a,
        &chat.id,
        &message("system", "Be terse.", MessageStatus::Done),
    )
    .unwrap();
    db.add_message(
        a,
        &chat.id,
        &message("user", "What is `Box`?", MessageStatus::Done),
    )
    .unwrap();
    let answer = db
        .add_message(
            a,
            &chat.id,
            &message("assistant", "", MessageStatus::Streaming),
        )
        .unwrap()
        .unwrap();
    let stats = MessageStats {
        prompt_tokens: 10,
        generated_tokens: 5,
        tokens_per_second: 40.0,
        context_used: 15,
        context_size: 8192,
    };
    db.update_message(
        answer.id,
        "A heap pointer.\n\n```rust\nlet b = Box::new(1);\n```",
        MessageStatus::Done,
        Some(&stats),
    )
    .unwrap();

    let export = db.export_chat(a, &chat.id).unwrap().unwrap();
    assert_eq!(export.title, "Rust Q&A");
    assert_eq!(export.settings, settings);
    assert_eq!(export.messages.len(), 3);
    assert!(export.messages.iter().all(|m| m.created_at > 0));

    // Through JSON, as the app does, into another user's account.
    let json = serde_json::to_string(&export).unwrap();
    let parsed: ChatExport = serde_json::from_str(&json).unwrap();
    let copy = db.import_chat(b, &parsed).unwrap();
    assert_ne!(copy.id, chat.id);
    assert_eq!(
        (copy.title.as_str(), copy.model.as_str()),
        ("Rust Q&A", "qwen")
    );
    assert_eq!(copy.settings, settings);
    assert_eq!(db.export_chat(b, &copy.id).unwrap().unwrap(), export);
    let imported = db.messages(b, &copy.id).unwrap().unwrap();
    assert!(imported.iter().all(|m| m.status == MessageStatus::Done));
    assert_eq!(db.search(b, "heap").unwrap().len(), 1);

    let md = export_markdown(&export);
    assert_eq!(
        md,
        "# Rust Q&A\n\n**System**\n\nBe terse.\n\n**User**\n\nWhat is `Box`?\n\n\
         **Assistant**\n\nA heap pointer.\n\n```rust\nlet b = Box::new(1);\n```\n"
    );
}

#[test]
fn imports_are_checked() {
    let db = Db::open_in_memory().unwrap();
    let a = user(&db, "a");
    let base = ChatExport {
        title: "t".into(),
        model: "m".into(),
        settings: ChatSettings::default(),
        messages: vec![],
    };
    let one = |role: &str, content: String| ExportedMessage {
        role: role.into(),
        content,
        created_at: 0,
    };
    let cases = [
        vec![one("tool", "x".into())],
        vec![one("user", "x".repeat(1_000_001))],
        (0..10_001).map(|_| one("user", "x".into())).collect(),
    ];
    for messages in cases {
        let export = ChatExport {
            messages,
            ..base.clone()
        };
        let err = db.import_chat(a, &export).unwrap_err();
        assert!(matches!(err, DbError::Invalid { .. }), "{err}");
    }
    assert!(db.chats(a).unwrap().is_empty(), "nothing was written");
    let fine = ChatExport {
        messages: (0..10_000).map(|_| one("user", "x".into())).collect(),
        ..base
    };
    let chat = db.import_chat(a, &fine).unwrap();
    let messages = db.messages(a, &chat.id).unwrap().unwrap();
    assert_eq!(messages.len(), 10_000);
    assert_eq!(messages[0].created_at, chat.created_at, "no time: now");
}

#[test]
fn usage_is_summed_per_user_model_and_day() {
    let db = Db::open_in_memory().unwrap();
    let a = user(&db, "alice");
    let b = user(&db, "bob");
    db.record_usage(a, "llama", "2025-01-01", 10, 20).unwrap();
    db.record_usage(a, "llama", "2025-01-01", 1, 2).unwrap();
    db.record_usage(a, "llama", "2025-01-02", 5, 5).unwrap();
    db.record_usage(a, "qwen", "2025-01-01", 7, 7).unwrap();
    db.record_usage(b, "llama", "2025-01-01", 100, 200).unwrap();
    assert!(db.record_usage(a, "llama", "Jan 1", 1, 1).is_err());

    let all = db.usage(None).unwrap();
    let rows: Vec<(&str, &str, &str, u64, u64, u64)> = all
        .iter()
        .map(|r| {
            (
                r.username.as_str(),
                r.model.as_str(),
                r.day.as_str(),
                r.prompt_tokens,
                r.generated_tokens,
                r.requests,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("alice", "llama", "2025-01-02", 5, 5, 1),
            ("alice", "llama", "2025-01-01", 11, 22, 2),
            ("alice", "qwen", "2025-01-01", 7, 7, 1),
            ("bob", "llama", "2025-01-01", 100, 200, 1),
        ]
    );
    let bobs = db.usage(Some(b)).unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].username, "bob");
    assert_eq!(db.usage(Some(9999)).unwrap(), vec![]);
    assert_eq!(appdb::utc_day(1_795_219_200), "2026-11-21");
}

#[test]
fn backup_copies_and_refuses_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("app.db")).unwrap();
    let a = user(&db, "a");
    let chat = db
        .create_chat(a, "Backed up", "m", &ChatSettings::default())
        .unwrap();
    db.add_message(
        a,
        &chat.id,
        &message("user", "keep this", MessageStatus::Done),
    )
    .unwrap();

    let dest = dir.path().join("backup.db");
    db.backup(&dest).unwrap();
    let copy = Db::open(&dest).unwrap();
    assert_eq!(copy.chats(a).unwrap(), db.chats(a).unwrap());
    assert_eq!(copy.search(a, "keep").unwrap().len(), 1);
    assert_eq!(copy.search(a, "backed").unwrap().len(), 1);
    drop(copy);
    assert_index_consistent(&dest);

    let err = db.backup(&dest).unwrap_err();
    assert!(matches!(err, DbError::BackupExists { .. }), "{err}");
    assert!(err.to_string().contains("backup.db"), "{err}");
}

#[test]
fn one_db_serves_many_threads() {
    let db = std::sync::Arc::new(Db::open_in_memory().unwrap());
    let a = user(&db, "a");
    let chat = db
        .create_chat(a, "t", "m", &ChatSettings::default())
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            let chat_id = chat.id.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let text = format!("thread {t} message {i}");
                    db.add_message(a, &chat_id, &message("user", &text, MessageStatus::Done))
                        .unwrap()
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(db.messages(a, &chat.id).unwrap().unwrap().len(), 100);
}

#[test]
fn backup_of_a_file_in_use_leaves_its_streaming_answer_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let db = Db::open(&path).unwrap();
    let a = user(&db, "a");
    let chat = db
        .create_chat(a, "Live", "m", &ChatSettings::default())
        .unwrap();
    let answer = db
        .add_message(
            a,
            &chat.id,
            &message("assistant", "half an ans", MessageStatus::Streaming),
        )
        .unwrap()
        .unwrap();
    let dest = dir.path().join("copy.db");
    Db::backup_file(&path, &dest).unwrap();
    // The live database still streams; the copy, opened later, shows the answer interrupted.
    let live = db.messages(a, &chat.id).unwrap().unwrap();
    assert_eq!(live[0].status, MessageStatus::Streaming);
    let copy = Db::open(&dest).unwrap();
    assert_eq!(copy.interrupted_at_open(), 1);
    let kept = copy.messages(a, &chat.id).unwrap().unwrap();
    assert_eq!(
        (kept[0].id, kept[0].content.as_str()),
        (answer.id, "half an ans")
    );
    assert!(matches!(
        Db::backup_file(&path, &dest).unwrap_err(),
        DbError::BackupExists { .. }
    ));
}
