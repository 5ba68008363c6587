//! Collections, documents, chunks, embeddings and hybrid search through the public interface.

use std::path::Path;

use appdb::{
    ChatSettings, Db, DbError, DocStatus, Document, MessageStatus, NewChunk, NewMessage, Role,
    Status,
};

fn user(db: &Db, name: &str, role: Role) -> i64 {
    db.create_user(name, "password1", role, Status::Active)
        .unwrap()
        .id
}

fn chunks(texts: &[&str]) -> Vec<NewChunk> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| NewChunk {
            text: (*text).into(),
            location: format!("page {}", i + 1),
        })
        .collect()
}

/// A document of `collection` holding `texts` as chunks, each embedded by `model` with the
/// vector beside it; returns the document and its chunk ids in order.
fn embedded(
    db: &Db,
    collection: i64,
    name: &str,
    model: &str,
    items: &[(&str, [f32; 4])],
) -> (Document, Vec<i64>) {
    let doc = db.add_document(collection, name, "text", 100).unwrap();
    let texts: Vec<&str> = items.iter().map(|(t, _)| *t).collect();
    db.set_chunks(doc.id, &chunks(&texts)).unwrap();
    let ids: Vec<i64> = db
        .chunks_to_embed(doc.id, model, 1000)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let vectors: Vec<(i64, Vec<f32>)> = ids
        .iter()
        .zip(items)
        .map(|(&id, (_, v))| (id, v.to_vec()))
        .collect();
    db.set_embeddings(model, &vectors).unwrap();
    db.set_document_status(doc.id, DocStatus::Ready, None)
        .unwrap();
    (db.document(doc.id).unwrap().unwrap(), ids)
}

/// Fails unless the chunks' full-text index matches the table exactly.
fn assert_index_consistent(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute(
        "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)",
        [],
    )
    .unwrap();
}

fn count(path: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn collections_are_own_or_shared() {
    let db = Db::open_in_memory().unwrap();
    let alice = user(&db, "alice", Role::User);
    let bob = user(&db, "bob", Role::User);
    let mine = db.create_collection(alice, " Notes ", false).unwrap();
    assert_eq!(mine.name, "Notes");
    assert_eq!((mine.owner.as_str(), mine.user_id), ("alice", alice));
    assert_eq!((mine.shared, mine.documents), (false, 0));
    assert_eq!(mine.embedding_model, None);
    let private = db.create_collection(bob, "Bob's", false).unwrap();
    let shared = db.create_collection(bob, "Handbook", true).unwrap();

    let names = |user: i64| -> Vec<String> {
        db.collections(user)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect()
    };
    // Newest first (same second: the later id first).
    assert_eq!(names(alice), ["Handbook", "Notes"]);
    assert_eq!(names(bob), ["Handbook", "Bob's"]);

    assert_eq!(db.collection(alice, mine.id).unwrap(), Some(mine.clone()));
    let seen = db.collection(alice, shared.id).unwrap().unwrap();
    assert_eq!((seen.owner.as_str(), seen.shared), ("bob", true));
    assert_eq!(db.collection(alice, private.id).unwrap(), None);
    assert_eq!(db.collection(bob, mine.id).unwrap(), None);
    assert_eq!(db.collection(alice, 9999).unwrap(), None);

    db.add_document(mine.id, "a.txt", "text", 5).unwrap();
    db.add_document(mine.id, "b.md", "markdown", 7).unwrap();
    assert_eq!(db.collection(alice, mine.id).unwrap().unwrap().documents, 2);

    let json = serde_json::to_value(&seen).unwrap();
    assert_eq!(json["owner"], "bob");
    assert_eq!(json["embedding_model"], serde_json::Value::Null);
    assert!(json.get("user_id").is_none(), "{json}");

    for bad in ["", "   ", "a\nb"] {
        let err = db.create_collection(alice, bad, false).unwrap_err();
        assert!(matches!(err, DbError::Invalid { .. }), "{bad:?}: {err}");
    }
    assert!(db.create_collection(alice, &"é".repeat(100), false).is_ok());
    let err = db
        .create_collection(alice, &"x".repeat(101), false)
        .unwrap_err();
    assert!(err.to_string().contains("101 characters"), "{err}");
}

#[test]
fn only_owners_and_admins_for_shared_ones_change_collections() {
    let db = Db::open_in_memory().unwrap();
    let alice = user(&db, "alice", Role::User);
    let bob = user(&db, "bob", Role::User);
    let admin = user(&db, "root", Role::Admin);
    let private = db.create_collection(bob, "private", false).unwrap().id;
    let shared = db.create_collection(bob, "shared", true).unwrap().id;

    assert!(db.may_change_collection(bob, private, false).unwrap());
    assert!(db.may_change_collection(bob, shared, false).unwrap());
    assert!(!db.may_change_collection(alice, private, false).unwrap());
    assert!(!db.may_change_collection(alice, shared, false).unwrap());
    assert!(db.may_change_collection(admin, shared, true).unwrap());
    assert!(!db.may_change_collection(admin, private, true).unwrap());
    assert!(!db.may_change_collection(bob, 9999, true).unwrap());

    assert!(!db.delete_collection(alice, shared, false).unwrap());
    assert!(!db.delete_collection(admin, private, true).unwrap());
    assert!(db.delete_collection(admin, shared, true).unwrap());
    assert!(!db.delete_collection(bob, shared, false).unwrap(), "gone");
    assert!(db.delete_collection(bob, private, false).unwrap());
    assert!(db.collections(bob).unwrap().is_empty());
}

#[test]
fn deletes_cascade_to_documents_chunks_and_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let db = Db::open(&path).unwrap();
    let alice = user(&db, "alice", Role::User);
    let c1 = db.create_collection(alice, "one", false).unwrap().id;
    let c2 = db.create_collection(alice, "two", true).unwrap().id;
    let v = [1.0, 0.0, 0.0, 0.0];
    let (d1, ids1) = embedded(&db, c1, "d1", "m", &[("zebra alpha", v), ("zebra beta", v)]);
    let (_, ids2) = embedded(&db, c1, "d2", "m", &[("zebra gamma", v)]);
    let (_, ids3) = embedded(&db, c2, "d3", "m", &[("zebra delta", v)]);
    let found = |cs: &[i64]| -> Vec<i64> {
        db.hybrid_search(cs, "m", &v, "zebra", 10)
            .unwrap()
            .into_iter()
            .map(|h| h.chunk_id)
            .collect()
    };
    assert_eq!(found(&[c1, c2]).len(), 4);
    assert_index_consistent(&path);

    assert!(db.delete_document(d1.id).unwrap());
    assert!(!db.delete_document(d1.id).unwrap());
    assert_eq!(db.document(d1.id).unwrap(), None);
    assert_eq!(db.chunk(ids1[0]).unwrap(), None);
    assert_eq!(found(&[c1, c2]), [ids2[0], ids3[0]]);
    assert_index_consistent(&path);

    assert!(db.delete_collection(alice, c1, false).unwrap());
    assert_eq!(db.chunk(ids2[0]).unwrap(), None);
    assert_eq!(found(&[c1, c2]), [ids3[0]]);
    assert_index_consistent(&path);

    // Deleting the user takes their collections, shared ones too.
    assert!(db.delete_user(alice).unwrap());
    assert!(found(&[c1, c2]).is_empty());
    for table in ["collections", "documents", "chunks", "chunk_embeddings"] {
        assert_eq!(count(&path, table), 0, "{table}");
    }
    assert_index_consistent(&path);
}

#[test]
fn chunks_are_embedded_in_batches_with_progress() {
    let db = Db::open_in_memory().unwrap();
    let alice = user(&db, "alice", Role::User);
    let c = db.create_collection(alice, "c", false).unwrap().id;
    let doc = db.add_document(c, "guide.md", "markdown", 1234).unwrap();
    assert_eq!(doc.status, DocStatus::Queued);
    assert_eq!(
        (doc.name.as_str(), doc.kind.as_str(), doc.bytes),
        ("guide.md", "markdown", 1234)
    );
    assert_eq!(
        (doc.chunks_total, doc.chunks_done, doc.error.clone()),
        (0, 0, None)
    );

    db.set_chunks(doc.id, &chunks(&["one", "two", "three", "four", "five"]))
        .unwrap();
    let doc = db.document(doc.id).unwrap().unwrap();
    assert_eq!((doc.chunks_total, doc.chunks_done), (5, 0));

    let first = db.chunks_to_embed(doc.id, "m1", 2).unwrap();
    let texts: Vec<&str> = first.iter().map(|(_, c)| c.text.as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
    let view = db.chunk(first[1].0).unwrap().unwrap();
    assert_eq!(
        (view.document.as_str(), view.location.as_str()),
        ("guide.md", "page 2")
    );
    assert_eq!((view.document_id, view.collection_id), (doc.id, c));

    let batch: Vec<(i64, Vec<f32>)> = first.iter().map(|(id, _)| (*id, vec![1.0, 2.0])).collect();
    db.set_embeddings("m1", &batch).unwrap();
    assert_eq!(db.document(doc.id).unwrap().unwrap().chunks_done, 2);
    // Storing them again (a retried batch) counts nothing twice; a gone chunk is skipped.
    let mut again = batch.clone();
    again.push((99_999, vec![1.0, 2.0]));
    db.set_embeddings("m1", &again).unwrap();
    assert_eq!(db.document(doc.id).unwrap().unwrap().chunks_done, 2);
    assert_eq!(
        db.collection(alice, c)
            .unwrap()
            .unwrap()
            .embedding_model
            .as_deref(),
        Some("m1")
    );

    let rest = db.chunks_to_embed(doc.id, "m1", 10).unwrap();
    let texts: Vec<&str> = rest.iter().map(|(_, c)| c.text.as_str()).collect();
    assert_eq!(texts, ["three", "four", "five"]);
    assert_eq!(db.chunks_to_embed(doc.id, "m2", 10).unwrap().len(), 5);

    for bad in [vec![], vec![1.0, f32::NAN], vec![f32::INFINITY]] {
        let err = db.set_embeddings("m1", &[(rest[0].0, bad)]).unwrap_err();
        assert!(matches!(err, DbError::Invalid { .. }), "{err}");
    }
    let batch: Vec<(i64, Vec<f32>)> = rest.iter().map(|(id, _)| (*id, vec![0.5, 0.5])).collect();
    db.set_embeddings("m1", &batch).unwrap();
    assert_eq!(db.document(doc.id).unwrap().unwrap().chunks_done, 5);
    assert!(db.chunks_to_embed(doc.id, "m1", 10).unwrap().is_empty());

    // New chunks replace the old ones and their embeddings.
    db.set_chunks(doc.id, &chunks(&["a", "b", "c"])).unwrap();
    let doc2 = db.document(doc.id).unwrap().unwrap();
    assert_eq!((doc2.chunks_total, doc2.chunks_done), (3, 0));
    assert_eq!(db.chunk(first[0].0).unwrap(), None);
    assert_eq!(db.chunks_to_embed(doc.id, "m1", 10).unwrap().len(), 3);

    // Work on a document deleted meanwhile is no error.
    assert!(db.delete_document(doc.id).unwrap());
    db.set_chunks(doc.id, &chunks(&["x"])).unwrap();
    db.set_document_status(doc.id, DocStatus::Ready, None)
        .unwrap();
    db.set_embeddings("m1", &batch).unwrap();
    assert_eq!(db.document(doc.id).unwrap(), None);

    let err = db.add_document(9999, "x.txt", "text", 1).unwrap_err();
    assert!(matches!(err, DbError::Invalid { .. }), "{err}");
    assert!(db.add_document(c, "", "text", 1).is_err());
}

#[test]
fn statuses_and_unfinished_documents() {
    let db = Db::open_in_memory().unwrap();
    let alice = user(&db, "alice", Role::User);
    let c = db.create_collection(alice, "c", false).unwrap().id;
    let mut ids = Vec::new();
    for status in [
        DocStatus::Queued,
        DocStatus::Extracting,
        DocStatus::Embedding,
        DocStatus::Ready,
        DocStatus::Error,
    ] {
        let doc = db.add_document(c, "f.pdf", "pdf", 1).unwrap();
        let error = (status == DocStatus::Error).then_some("not a PDF");
        db.set_document_status(doc.id, status, error).unwrap();
        ids.push(doc.id);
    }
    let unfinished: Vec<i64> = db
        .unfinished_documents()
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(unfinished, ids[..3]);
    let failed = db.document(ids[4]).unwrap().unwrap();
    assert_eq!(failed.status, DocStatus::Error);
    assert_eq!(failed.error.as_deref(), Some("not a PDF"));
    let json = serde_json::to_value(&failed).unwrap();
    assert_eq!(json["status"], "error");
    assert_eq!(json["error"], "not a PDF");

    // Newest first (same second: the later id first).
    let listed: Vec<i64> = db.documents(c).unwrap().iter().map(|d| d.id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    // Retrying clears the error.
    db.set_document_status(ids[4], DocStatus::Queued, None)
        .unwrap();
    assert_eq!(db.document(ids[4]).unwrap().unwrap().error, None);
    assert_eq!(db.unfinished_documents().unwrap().len(), 4);
}

#[test]
fn a_new_embedding_model_resets_the_others() {
    let db = Db::open_in_memory().unwrap();
    let alice = user(&db, "alice", Role::User);
    let c1 = db.create_collection(alice, "c1", false).unwrap().id;
    let c2 = db.create_collection(alice, "c2", false).unwrap().id;
    let empty = db.create_collection(alice, "empty", false).unwrap().id;
    let v = [1.0, 0.0, 0.0, 0.0];
    let (d1, _) = embedded(&db, c1, "d1", "old", &[("a", v), ("b", v)]);
    let (d2, _) = embedded(&db, c2, "d2", "old", &[("c", v)]);
    let (d3, _) = embedded(&db, c2, "d3", "new", &[("d", v), ("e", v)]);
    let (d4, _) = embedded(&db, c2, "d4", "new", &[("f", v)]);
    // d4 is half embedded by each.
    db.set_chunks(d4.id, &chunks(&["f", "g"])).unwrap();
    let todo = db.chunks_to_embed(d4.id, "new", 10).unwrap();
    db.set_embeddings("new", &[(todo[0].0, v.to_vec())])
        .unwrap();
    db.set_embeddings("old", &[(todo[1].0, v.to_vec())])
        .unwrap();
    db.set_document_status(d4.id, DocStatus::Ready, None)
        .unwrap();

    assert_eq!(
        db.reset_embeddings_not_of("new").unwrap(),
        [d1.id, d2.id, d4.id]
    );
    for (doc, done) in [(&d1, 0), (&d2, 0), (&d4, 1)] {
        let doc = db.document(doc.id).unwrap().unwrap();
        assert_eq!(doc.status, DocStatus::Embedding, "{}", doc.name);
        assert_eq!(doc.chunks_done, done, "{}", doc.name);
    }
    let d3 = db.document(d3.id).unwrap().unwrap();
    assert_eq!((d3.status, d3.chunks_done), (DocStatus::Ready, 2));
    assert_eq!(db.chunks_to_embed(d1.id, "new", 10).unwrap().len(), 2);
    assert_eq!(db.chunks_to_embed(d4.id, "new", 10).unwrap().len(), 1);
    assert_eq!(db.unfinished_documents().unwrap().len(), 3);
    for c in [c1, c2, empty] {
        let collection = db.collection(alice, c).unwrap().unwrap();
        assert_eq!(collection.embedding_model.as_deref(), Some("new"));
    }
    // Old vectors are no longer found by either model's search.
    let hits = db.hybrid_search(&[c1], "old", &v, "", 10).unwrap();
    assert!(hits.is_empty(), "{hits:?}");
    assert!(db.reset_embeddings_not_of("new").unwrap().is_empty());
}

#[test]
fn hybrid_search_fuses_words_and_vectors() {
    let db = Db::open_in_memory().unwrap();
    let alice = user(&db, "alice", Role::User);
    let bob = user(&db, "bob", Role::User);
    let c = db.create_collection(alice, "c", false).unwrap().id;
    let other = db.create_collection(bob, "other", false).unwrap().id;
    let query = [1.0, 0.0, 0.0, 0.0];
    let (doc, ids) = embedded(
        &db,
        c,
        "guide.md",
        "m",
        &[
            // Words only: far from the query's vector.
            (
                "the quick brown fox jumps over the lazy dog",
                [0.0, 0.0, 0.0, 1.0],
            ),
            // Vector only: no word of the query.
            ("llamas graze on the high plateau", [0.8, 0.6, 0.0, 0.0]),
            // Both.
            ("a fox jumps", [1.0, 0.0, 0.0, 0.1]),
            // Neither: opposite vector, other words.
            ("nothing to see", [-1.0, 0.0, 0.0, 0.0]),
        ],
    );
    let (words, vector, both, neither) = (ids[0], ids[1], ids[2], ids[3]);
    // The best match of all, in a collection not searched.
    let (_, foreign) = embedded(&db, other, "secret.txt", "m", &[("fox jumps", query)]);

    let hits = db
        .hybrid_search(&[c], "m", &query, "fox jumps", 10)
        .unwrap();
    let found: Vec<i64> = hits.iter().map(|h| h.chunk_id).collect();
    assert_eq!(found[0], both, "{hits:#?}");
    assert!(
        found.contains(&words) && found.contains(&vector),
        "{found:?}"
    );
    assert_eq!(*found.last().unwrap(), neither, "{found:?}");
    assert!(!found.contains(&foreign[0]));
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "{hits:#?}"
    );
    // Vector rank 1 + text rank 1 (a short chunk with both words beats a long one).
    assert!(
        (hits[0].score - 2.0 / 61.0).abs() < 1e-12,
        "{}",
        hits[0].score
    );
    assert_eq!(hits[0].document_id, doc.id);
    assert_eq!(hits[0].document, "guide.md");
    assert_eq!(hits[0].location, "page 3");
    assert_eq!(hits[0].text, "a fox jumps");
    // The words-only chunk (text rank 2, vector rank 3) beats the vector-only one (rank 2).
    let rank = |id| found.iter().position(|&f| f == id).unwrap();
    assert!(rank(words) < rank(vector), "{found:?}");

    // k limits; both collections find the foreign chunk too.
    assert_eq!(
        db.hybrid_search(&[c], "m", &query, "fox", 2).unwrap().len(),
        2
    );
    assert!(db
        .hybrid_search(&[c], "m", &query, "fox", 0)
        .unwrap()
        .is_empty());
    assert!(db
        .hybrid_search(&[], "m", &query, "fox", 5)
        .unwrap()
        .is_empty());
    let all = db
        .hybrid_search(&[c, other], "m", &query, "fox jumps", 10)
        .unwrap();
    assert!(all.iter().any(|h| h.chunk_id == foreign[0]));

    // Words alone (another model's name, or no vector) and the vector alone both work.
    for (model, vector) in [
        ("other-model", &query[..]),
        ("m", &[][..]),
        ("m", &[0.0; 4][..]),
    ] {
        let found: Vec<i64> = db
            .hybrid_search(&[c], model, vector, "fox", 10)
            .unwrap()
            .iter()
            .map(|h| h.chunk_id)
            .collect();
        assert_eq!(found.len(), 2, "{model} {vector:?}: {found:?}");
        assert!(found.contains(&words) && found.contains(&both));
    }
    let by_vector = db.hybrid_search(&[c], "m", &query, "", 10).unwrap();
    let order: Vec<i64> = by_vector.iter().map(|h| h.chunk_id).collect();
    assert_eq!(order, [both, vector, words, neither]);
    // The stemmer: "jumping" finds "jumps".
    let stemmed = db.hybrid_search(&[c], "x", &[], "JUMPING", 10).unwrap();
    assert_eq!(stemmed.len(), 2, "{stemmed:#?}");

    // Text that would be FTS5 syntax is only words.
    for text in [
        "\"",
        "fox\"",
        "*",
        "fox*",
        "NEAR(fox jumps",
        "NEAR(",
        "-fox",
        "- -",
        "text:fox",
        ":",
        "fox OR",
        "AND NOT",
        "(fox",
        "^fox",
        "{text}: fox",
        "",
        "\u{0}",
    ] {
        db.hybrid_search(&[c], "m", &query, text, 10)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
    let quoted = db
        .hybrid_search(&[c], "x", &[], "\"fox\" -llamas*", 10)
        .unwrap();
    let found: Vec<i64> = quoted.iter().map(|h| h.chunk_id).collect();
    assert!(
        found.contains(&vector) && found.contains(&both),
        "{found:?}"
    );
}

#[test]
fn messages_keep_their_sources() {
    let db = Db::open_in_memory().unwrap();
    let me = db.local_user().unwrap().id;
    let chat = db
        .create_chat(me, "t", "m", &ChatSettings::default())
        .unwrap();
    let answer = db
        .add_message(
            me,
            &chat.id,
            &NewMessage {
                role: "assistant".into(),
                content: "It is [1].".into(),
                status: MessageStatus::Done,
                model: Some("m".into()),
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(answer.sources, None);
    let sources = serde_json::json!([{
        "n": 1, "chunk_id": 4, "document_id": 2, "document": "guide.md",
        "location": "Setup › Linux", "text": "Run it.", "score": 0.0325
    }]);
    db.set_message_sources(answer.id, &sources).unwrap();
    let messages = db.messages(me, &chat.id).unwrap().unwrap();
    assert_eq!(messages[0].sources.as_ref(), Some(&sources));
    let json = serde_json::to_value(&messages[0]).unwrap();
    assert_eq!(json["sources"], sources);

    db.set_message_sources(answer.id, &serde_json::Value::Null)
        .unwrap();
    let messages = db.messages(me, &chat.id).unwrap().unwrap();
    assert_eq!(messages[0].sources, None);
    assert_eq!(
        serde_json::to_value(&messages[0]).unwrap()["sources"],
        serde_json::Value::Null
    );
    // A message that is gone is no error.
    db.set_message_sources(9999, &sources).unwrap();
}
