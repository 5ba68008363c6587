//! Documents for search and answers with sources: collections, their documents, the documents'
//! chunks and embeddings, and hybrid search over them.
//!
//! A [`Collection`] is a user's own, or shared with everyone. Its [`Document`]s are worked on in
//! the background (the web app extracts, chunks and embeds them); the database holds where each
//! stands ([`DocStatus`], `chunks_done` of `chunks_total`), so a restarted server can resume
//! ([`Db::unfinished_documents`]). Embeddings are stored as little-endian f32 BLOBs with the
//! model's name beside them; [`Db::hybrid_search`] fuses a brute-force cosine ranking with an
//! FTS5 bm25 ranking of the chunks' text.
//!
//! The methods on documents and chunks take no user: the web app checks first that the user may
//! read the collection ([`Db::collection`]) or change it ([`Db::may_change_collection`]).

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::search::quoted_words;
use crate::{now, text_enum, to_json, Db, Result};

/// The longest collection name, in characters.
const MAX_COLLECTION_NAME: usize = 100;
/// The longest document name, in characters (a file name).
const MAX_DOCUMENT_NAME: usize = 255;
/// How many candidates each of the two rankings of a hybrid search gives to the fusion.
const CANDIDATES: usize = 50;
/// The constant of reciprocal rank fusion: a hit at rank `r` of a ranking scores
/// `1 / (RRF_K + r)`.
const RRF_K: f64 = 60.0;
/// The most distinct words of a query that the text ranking looks for.
const MAX_QUERY_WORDS: usize = 64;

/// A named set of documents: a user's own, or shared with everyone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    pub id: i64,
    /// The owner's id (not sent: `owner` names them).
    #[serde(skip)]
    pub user_id: i64,
    pub name: String,
    pub shared: bool,
    /// The owner's username.
    pub owner: String,
    /// The model the documents are embedded with; `None` until one is.
    pub embedding_model: Option<String>,
    /// How many documents it holds.
    pub documents: u64,
    pub created_at: i64,
}

/// Where a document stands: `queued`, then `extracting` (its text), `embedding` (its chunks),
/// and `ready`; or `error` (see [`Document::error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocStatus {
    Queued,
    Extracting,
    Embedding,
    Ready,
    Error,
}
text_enum!(DocStatus {
    Queued => "queued",
    Extracting => "extracting",
    Embedding => "embedding",
    Ready => "ready",
    Error => "error",
});

/// An uploaded document of a collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: i64,
    pub collection_id: i64,
    /// The file's name.
    pub name: String,
    /// What the file holds (`text`, `markdown`, `html`, `pdf`), as the web app decided.
    pub kind: String,
    /// The uploaded file's size.
    pub bytes: u64,
    pub status: DocStatus,
    pub chunks_total: u64,
    /// How many of the chunks are embedded.
    pub chunks_done: u64,
    /// Why the work failed (with status `error`).
    pub error: Option<String>,
    pub created_at: i64,
}

/// A chunk to store with [`Db::set_chunks`]: a passage and where it is in the document (the
/// heading path "Setup › Linux" or "page 3").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewChunk {
    pub text: String,
    pub location: String,
}

/// A chunk with its document's name: a citation opened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkView {
    pub chunk_id: i64,
    pub document_id: i64,
    /// The document's name.
    pub document: String,
    pub collection_id: i64,
    pub location: String,
    pub text: String,
}

/// A result of [`Db::hybrid_search`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub chunk_id: i64,
    pub document_id: i64,
    /// The document's name.
    pub document: String,
    pub location: String,
    pub text: String,
    /// The reciprocal rank fusion score: higher is better.
    pub score: f64,
}

/// Checks a name: not blank, at most `max` characters, no control characters.
fn check_name(what: &'static str, name: &str, max: usize) -> Result<()> {
    let chars = name.chars().count();
    if name.trim().is_empty() {
        Err(invalid(what, "it is empty; give it a name"))
    } else if chars > max {
        Err(invalid(
            what,
            format!("it has {chars} characters, more than the {max} allowed"),
        ))
    } else if name.chars().any(char::is_control) {
        Err(invalid(
            what,
            "it contains a control character (e.g. a line break)",
        ))
    } else {
        Ok(())
    }
}

const COLLECTION_SELECT: &str = "SELECT c.id, c.user_id, c.name, c.shared, u.username,
        c.embedding_model,
        (SELECT count(*) FROM documents d WHERE d.collection_id = c.id), c.created_at
    FROM collections c JOIN users u ON u.id = c.user_id";

fn collection_row(row: &Row<'_>) -> rusqlite::Result<Collection> {
    Ok(Collection {
        id: row.get(0)?,
        user_id: row.get(1)?,
        name: row.get(2)?,
        shared: row.get(3)?,
        owner: row.get(4)?,
        embedding_model: row.get(5)?,
        documents: row.get(6)?,
        created_at: row.get(7)?,
    })
}

const DOCUMENT_COLUMNS: &str =
    "id, collection_id, name, kind, bytes, status, chunks_total, chunks_done, error, created_at";

fn document_row(row: &Row<'_>) -> rusqlite::Result<Document> {
    Ok(Document {
        id: row.get(0)?,
        collection_id: row.get(1)?,
        name: row.get(2)?,
        kind: row.get(3)?,
        bytes: row.get(4)?,
        status: row.get(5)?,
        chunks_total: row.get(6)?,
        chunks_done: row.get(7)?,
        error: row.get(8)?,
        created_at: row.get(9)?,
    })
}

/// The chunk `id` with its document's name and collection.
fn chunk_view(conn: &Connection, id: i64) -> Result<Option<ChunkView>> {
    Ok(conn
        .prepare_cached(
            "SELECT c.id, c.document_id, d.name, d.collection_id, c.location, c.text
             FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?1",
        )?
        .query_row([id], |row| {
            Ok(ChunkView {
                chunk_id: row.get(0)?,
                document_id: row.get(1)?,
                document: row.get(2)?,
                collection_id: row.get(3)?,
                location: row.get(4)?,
                text: row.get(5)?,
            })
        })
        .optional()?)
}

/// A vector as stored: its f32s little-endian.
fn to_blob(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `vector` scaled to length 1; `None` if it is empty or zero.
fn normalized(vector: &[f32]) -> Option<Vec<f64>> {
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    (norm > 0.0).then(|| vector.iter().map(|&x| f64::from(x) / norm).collect())
}

/// The cosine of the unit vector `unit` and the stored vector `blob`; `None` if their lengths
/// differ (a vector of another model under the same name) or `blob` is zero.
fn cosine(unit: &[f64], blob: &[u8]) -> Option<f64> {
    if blob.len() != unit.len() * 4 {
        return None;
    }
    let (mut dot, mut norm) = (0.0f64, 0.0f64);
    for (u, bytes) in unit.iter().zip(blob.chunks_exact(4)) {
        let x = f64::from(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        dot += u * x;
        norm += x * x;
    }
    (norm > 0.0).then(|| dot / norm.sqrt())
}

/// The FTS5 query for the words of `text`, any of which may match (distinct words, at most
/// [`MAX_QUERY_WORDS`]); `None` without words. Never FTS5 syntax from the text itself.
fn any_word_query(text: &str) -> Option<String> {
    let mut words = quoted_words(text);
    let mut seen = std::collections::HashSet::new();
    words.retain(|w| seen.insert(w.to_lowercase()));
    words.truncate(MAX_QUERY_WORDS);
    (!words.is_empty()).then(|| words.join(" OR "))
}

/// Reciprocal rank fusion of `rankings` (chunk ids, best first): each id scores the sum of
/// `1 / (60 + rank)` over the rankings it is in (rank from 1). The best `k`, ties by id.
fn fuse(rankings: &[Vec<i64>], k: usize) -> Vec<(i64, f64)> {
    let mut scores: HashMap<i64, f64> = HashMap::new();
    for ranking in rankings {
        for (rank, &id) in (1u32..).zip(ranking) {
            *scores.entry(id).or_default() += 1.0 / (RRF_K + f64::from(rank));
        }
    }
    let mut fused: Vec<(i64, f64)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused.truncate(k);
    fused
}

/// The chunks of the collections `ids` (a JSON array) embedded by `model`, best cosine with
/// `query` first (ties by id), at most [`CANDIDATES`]. Reads every vector in one query.
fn vector_ranking(conn: &Connection, ids: &str, model: &str, query: &[f32]) -> Result<Vec<i64>> {
    let Some(unit) = normalized(query) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT e.chunk_id, e.vector
         FROM documents d
         JOIN chunks c ON c.document_id = d.id
         JOIN chunk_embeddings e ON e.chunk_id = c.id
         WHERE d.collection_id IN (SELECT value FROM json_each(?1)) AND e.model = ?2",
    )?;
    let mut rows = stmt.query(params![ids, model])?;
    let mut scored = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let blob = row.get_ref(1)?.as_blob().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, e.into())
        })?;
        if let Some(score) = cosine(&unit, blob) {
            scored.push((id, score));
        }
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(scored
        .into_iter()
        .take(CANDIDATES)
        .map(|(id, _)| id)
        .collect())
}

/// The chunks of the collections `ids` (a JSON array) that match the FTS5 query `fts`, best
/// bm25 first (ties by id), at most [`CANDIDATES`].
fn text_ranking(conn: &Connection, ids: &str, fts: &str) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.id
         FROM chunks_fts
         JOIN chunks c ON c.id = chunks_fts.rowid
         JOIN documents d ON d.id = c.document_id
         WHERE chunks_fts MATCH ?1 AND d.collection_id IN (SELECT value FROM json_each(?2))
         ORDER BY bm25(chunks_fts), c.id
         LIMIT ?3",
    )?;
    let ranking = stmt
        .query_map(params![fts, ids, CANDIDATES as i64], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ranking)
}

impl Db {
    /// A new collection of `user_id`; `name` is 1 to 100 characters. Whether a user may share
    /// one (only admins) is the web app's rule.
    pub fn create_collection(&self, user_id: i64, name: &str, shared: bool) -> Result<Collection> {
        check_name("collection name", name, MAX_COLLECTION_NAME)?;
        let conn = self.conn();
        let id: i64 = conn.query_row(
            "INSERT INTO collections (user_id, name, shared, created_at)
             VALUES (?1, ?2, ?3, ?4) RETURNING id",
            params![user_id, name.trim(), shared, now()],
            |row| row.get(0),
        )?;
        Ok(conn.query_row(
            &format!("{COLLECTION_SELECT} WHERE c.id = ?1"),
            [id],
            collection_row,
        )?)
    }

    /// The user's own collections and every shared one, newest first.
    pub fn collections(&self, user_id: i64) -> Result<Vec<Collection>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{COLLECTION_SELECT} WHERE c.user_id = ?1 OR c.shared
             ORDER BY c.created_at DESC, c.id DESC"
        ))?;
        let collections = stmt
            .query_map([user_id], collection_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(collections)
    }

    /// A collection the user may read (their own or a shared one); `None` otherwise.
    pub fn collection(&self, user_id: i64, id: i64) -> Result<Option<Collection>> {
        Ok(self
            .conn()
            .query_row(
                &format!("{COLLECTION_SELECT} WHERE c.id = ?1 AND (c.user_id = ?2 OR c.shared)"),
                params![id, user_id],
                collection_row,
            )
            .optional()?)
    }

    /// Deletes a collection with its documents, chunks and embeddings. Only its owner may, or
    /// an admin (`is_admin`) a shared one; false otherwise, or if there is no such collection.
    pub fn delete_collection(&self, user_id: i64, id: i64, is_admin: bool) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM collections WHERE id = ?1 AND (user_id = ?2 OR (?3 AND shared))",
            params![id, user_id, is_admin],
        )? > 0)
    }

    /// Whether the user may change the collection (add and delete documents): its owner, or an
    /// admin (`is_admin`) for a shared one.
    pub fn may_change_collection(&self, user_id: i64, id: i64, is_admin: bool) -> Result<bool> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM collections
                            WHERE id = ?1 AND (user_id = ?2 OR (?3 AND shared)))",
            params![id, user_id, is_admin],
            |row| row.get(0),
        )?)
    }

    /// Adds a document (`name` 1 to 255 characters) to the collection, `queued` with no chunks.
    /// An unknown collection is [`crate::DbError::Invalid`].
    pub fn add_document(
        &self,
        collection_id: i64,
        name: &str,
        kind: &str,
        bytes: u64,
    ) -> Result<Document> {
        check_name("document name", name, MAX_DOCUMENT_NAME)?;
        let bytes = i64::try_from(bytes)
            .map_err(|_| invalid("document", format!("a size of {bytes} bytes is too large")))?;
        self.conn()
            .query_row(
                &format!(
                    "INSERT INTO documents (collection_id, name, kind, bytes, status, created_at)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6
                     WHERE EXISTS (SELECT 1 FROM collections WHERE id = ?1)
                     RETURNING {DOCUMENT_COLUMNS}"
                ),
                params![
                    collection_id,
                    name.trim(),
                    kind,
                    bytes,
                    DocStatus::Queued,
                    now()
                ],
                document_row,
            )
            .optional()?
            .ok_or_else(|| {
                invalid(
                    "document",
                    format!("collection {collection_id} does not exist (was it deleted?)"),
                )
            })
    }

    /// The document `id`.
    pub fn document(&self, id: i64) -> Result<Option<Document>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?1"),
                [id],
                document_row,
            )
            .optional()?)
    }

    /// The collection's documents, newest first.
    pub fn documents(&self, collection_id: i64) -> Result<Vec<Document>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE collection_id = ?1
             ORDER BY created_at DESC, id DESC"
        ))?;
        let documents = stmt
            .query_map([collection_id], document_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(documents)
    }

    /// Deletes the document with its chunks and embeddings; false if there is none.
    pub fn delete_document(&self, id: i64) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM documents WHERE id = ?1", [id])?
            > 0)
    }

    /// Sets where the document stands, and its error (`None` clears it). A document that is
    /// gone (deleted while it was worked on) is no error.
    pub fn set_document_status(
        &self,
        id: i64,
        status: DocStatus,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE documents SET status = ?1, error = ?2 WHERE id = ?3",
            params![status, error, id],
        )?;
        Ok(())
    }

    /// Stores the document's chunks in order (replacing any it had, with their embeddings),
    /// sets `chunks_total` to their number and `chunks_done` to 0. A document that is gone is
    /// no error (nothing is stored).
    pub fn set_chunks(&self, document_id: i64, chunks: &[NewChunk]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let found = tx.execute(
            "UPDATE documents SET chunks_total = ?1, chunks_done = 0 WHERE id = ?2",
            params![chunks.len() as i64, document_id],
        )?;
        if found == 0 {
            return Ok(());
        }
        tx.execute("DELETE FROM chunks WHERE document_id = ?1", [document_id])?;
        {
            let mut insert =
                tx.prepare("INSERT INTO chunks (document_id, location, text) VALUES (?1, ?2, ?3)")?;
            for chunk in chunks {
                insert.execute(params![document_id, chunk.location, chunk.text])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` of the document's chunks without an embedding from `model`, as (id, chunk),
    /// in order.
    pub fn chunks_to_embed(
        &self,
        document_id: i64,
        model: &str,
        limit: usize,
    ) -> Result<Vec<(i64, NewChunk)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.text, c.location FROM chunks c
             LEFT JOIN chunk_embeddings e ON e.chunk_id = c.id AND e.model = ?2
             WHERE c.document_id = ?1 AND e.chunk_id IS NULL
             ORDER BY c.id LIMIT ?3",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let chunks = stmt
            .query_map(params![document_id, model, limit], |row| {
                let chunk = NewChunk {
                    text: row.get(1)?,
                    location: row.get(2)?,
                };
                Ok((row.get(0)?, chunk))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(chunks)
    }

    /// Stores embeddings of chunks by `model` (replacing what a chunk had), in one transaction:
    /// bumps `chunks_done` of their documents by the chunks newly embedded by `model`, and
    /// records `model` as their collections' `embedding_model`. Chunks that are gone (their
    /// document was deleted or re-chunked meanwhile) are skipped. Vectors must be non-empty and
    /// finite.
    pub fn set_embeddings(&self, model: &str, items: &[(i64, Vec<f32>)]) -> Result<()> {
        for (chunk_id, vector) in items {
            if vector.is_empty() {
                return Err(invalid(
                    "embedding",
                    format!("the vector of chunk {chunk_id} is empty"),
                ));
            }
            if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
                return Err(invalid(
                    "embedding",
                    format!(
                        "the vector of chunk {chunk_id} has {} at index {i}",
                        vector[i]
                    ),
                ));
            }
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut find = tx.prepare_cached(
                "SELECT c.document_id, e.model IS ?2 FROM chunks c
                 LEFT JOIN chunk_embeddings e ON e.chunk_id = c.id WHERE c.id = ?1",
            )?;
            let mut store = tx.prepare_cached(
                "INSERT INTO chunk_embeddings (chunk_id, model, vector) VALUES (?1, ?2, ?3)
                 ON CONFLICT (chunk_id) DO UPDATE SET model = excluded.model,
                                                      vector = excluded.vector",
            )?;
            // Per document touched, how many of its chunks are newly embedded by `model`.
            let mut new_per_document: BTreeMap<i64, i64> = BTreeMap::new();
            for (chunk_id, vector) in items {
                let found = find
                    .query_row(params![chunk_id, model], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?))
                    })
                    .optional()?;
                let Some((document_id, had)) = found else {
                    continue;
                };
                store.execute(params![chunk_id, model, to_blob(vector)])?;
                *new_per_document.entry(document_id).or_default() += i64::from(!had);
            }
            let mut bump = tx.prepare_cached(
                "UPDATE documents SET chunks_done = min(chunks_total, chunks_done + ?1)
                 WHERE id = ?2",
            )?;
            let mut record = tx.prepare_cached(
                "UPDATE collections SET embedding_model = ?1
                 WHERE id = (SELECT collection_id FROM documents WHERE id = ?2)
                   AND embedding_model IS NOT ?1",
            )?;
            for (document_id, new) in new_per_document {
                if new > 0 {
                    bump.execute(params![new, document_id])?;
                }
                record.execute(params![model, document_id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The chunk `id` with its document's name and collection (a citation opened).
    pub fn chunk(&self, id: i64) -> Result<Option<ChunkView>> {
        chunk_view(&self.conn(), id)
    }

    /// The documents not finished (`queued`, `extracting`, `embedding`), oldest first: what a
    /// restarted server resumes.
    pub fn unfinished_documents(&self) -> Result<Vec<Document>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents
             WHERE status IN ('queued', 'extracting', 'embedding') ORDER BY id"
        ))?;
        let documents = stmt
            .query_map([], document_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(documents)
    }

    /// After the embedding model changed to `model`: every chunk embedded by another model
    /// loses its embedding, and its documents go back to `embedding` (error cleared) with
    /// `chunks_done` recounted. Records `model` as every collection's `embedding_model`.
    /// Returns those documents' ids, in order.
    pub fn reset_embeddings_not_of(&self, model: &str) -> Result<Vec<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare(
                "SELECT DISTINCT c.document_id FROM chunk_embeddings e
                 JOIN chunks c ON c.id = e.chunk_id
                 WHERE e.model <> ?1 ORDER BY c.document_id",
            )?;
            let ids = stmt
                .query_map([model], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            ids
        };
        tx.execute("DELETE FROM chunk_embeddings WHERE model <> ?1", [model])?;
        tx.execute(
            "UPDATE documents SET status = ?1, error = NULL,
                 chunks_done = (SELECT count(*) FROM chunks c
                                JOIN chunk_embeddings e ON e.chunk_id = c.id
                                WHERE c.document_id = documents.id)
             WHERE id IN (SELECT value FROM json_each(?2))",
            params![DocStatus::Embedding, to_json("document ids", &ids)?],
        )?;
        tx.execute(
            "UPDATE collections SET embedding_model = ?1 WHERE embedding_model IS NOT ?1",
            [model],
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// Hybrid search over the chunks of `collections`, best first (at most `k`).
    ///
    /// Two rankings of at most 50 chunks each: the cosine of `query_embedding` with every chunk
    /// embedded by `model` (computed here over the stored vectors; a vector of another length is
    /// skipped, and an empty or zero query gives no ranking), and FTS5's bm25 over the chunks'
    /// text for any of the words of `query_text` (each word quoted, so no text is FTS5 syntax).
    /// They are fused by reciprocal rank fusion: a chunk scores the sum of `1 / (60 + rank)`
    /// over the rankings it is in (rank from 1); ties go to the lower chunk id.
    pub fn hybrid_search(
        &self,
        collections: &[i64],
        model: &str,
        query_embedding: &[f32],
        query_text: &str,
        k: usize,
    ) -> Result<Vec<Hit>> {
        if collections.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let ids = to_json("collection ids", &collections)?;
        let conn = self.conn();
        let mut rankings = vec![vector_ranking(&conn, &ids, model, query_embedding)?];
        if let Some(fts) = any_word_query(query_text) {
            rankings.push(text_ranking(&conn, &ids, &fts)?);
        }
        let mut hits = Vec::new();
        for (chunk_id, score) in fuse(&rankings, k) {
            // Read under the same lock as the rankings: the chunk is there.
            if let Some(view) = chunk_view(&conn, chunk_id)? {
                hits.push(Hit {
                    chunk_id,
                    document_id: view.document_id,
                    document: view.document,
                    location: view.location,
                    text: view.text,
                    score,
                });
            }
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialize_lowercase() {
        for s in [
            DocStatus::Queued,
            DocStatus::Extracting,
            DocStatus::Embedding,
            DocStatus::Ready,
            DocStatus::Error,
        ] {
            assert_eq!(DocStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(DocStatus::parse("Ready"), None);
    }

    #[test]
    fn cosine_of_stored_vectors() {
        let unit = normalized(&[3.0, 4.0]).unwrap();
        assert!((unit[0] - 0.6).abs() < 1e-12 && (unit[1] - 0.8).abs() < 1e-12);
        let same = cosine(&unit, &to_blob(&[6.0, 8.0])).unwrap();
        assert!((same - 1.0).abs() < 1e-9, "{same}");
        let opposite = cosine(&unit, &to_blob(&[-3.0, -4.0])).unwrap();
        assert!((opposite + 1.0).abs() < 1e-9, "{opposite}");
        let orthogonal = cosine(&unit, &to_blob(&[4.0, -3.0])).unwrap();
        assert!(orthogonal.abs() < 1e-9, "{orthogonal}");
        assert_eq!(cosine(&unit, &to_blob(&[1.0, 2.0, 3.0])), None);
        assert_eq!(cosine(&unit, &to_blob(&[0.0, 0.0])), None);
        assert_eq!(normalized(&[]), None);
        assert_eq!(normalized(&[0.0, 0.0]), None);
        assert_eq!(to_blob(&[1.0]), 1.0f32.to_le_bytes().to_vec());
    }

    #[test]
    fn text_queries_or_distinct_quoted_words() {
        assert_eq!(
            any_word_query("install Linux install").as_deref(),
            Some("\"install\" OR \"Linux\"")
        );
        assert_eq!(
            any_word_query("a\"b NEAR( -x y:z *").as_deref(),
            Some("\"a\"\"b\" OR \"NEAR(\" OR \"-x\" OR \"y:z\"")
        );
        assert_eq!(any_word_query(" * - \" : "), None);
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        let query = any_word_query(&many).unwrap();
        assert_eq!(query.matches(" OR ").count(), MAX_QUERY_WORDS - 1);
    }

    #[test]
    fn fusion_sums_reciprocal_ranks_and_breaks_ties_by_id() {
        let fused = fuse(&[vec![7, 3, 5], vec![3, 9]], 10);
        let ids: Vec<i64> = fused.iter().map(|h| h.0).collect();
        // 3: 1/62 + 1/61; 7: 1/61; 9: 1/62; 5: 1/63.
        assert_eq!(ids, [3, 7, 9, 5]);
        assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert_eq!(fused[1].1, 1.0 / 61.0);
        // Equal scores: the lower id first.
        let tied = fuse(&[vec![8], vec![4]], 10);
        assert_eq!(tied, [(4, 1.0 / 61.0), (8, 1.0 / 61.0)]);
        assert_eq!(fuse(&[vec![1, 2, 3]], 2).len(), 2);
        assert!(fuse(&[], 5).is_empty());
    }
}
