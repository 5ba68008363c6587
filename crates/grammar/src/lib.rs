//! Grammar-constrained decoding: the text a model generates is kept to a formal grammar by
//! masking, at every step, the tokens that would leave it.
//!
//! - [`Grammar`]: compiled rules, immutable and `Send + Sync`, shared through an `Arc`. Built
//!   from llama.cpp's GBNF ([`Grammar::parse`]), as "any JSON object" ([`Grammar::json`],
//!   Ollama's `format: "json"`, OpenAI's `json_object`), or from a JSON schema
//!   ([`Grammar::from_json_schema`], Ollama's `format: {schema}`, OpenAI's `json_schema`).
//!   [`Grammar::to_gbnf`] prints it back as GBNF.
//! - [`Vocabulary`]: a model's tokens as bytes (`None` for control tokens), built once per
//!   model, laid out as a byte trie for masking.
//! - [`Matcher`]: one generation's parse state. [`Matcher::accepts`] checks a token's bytes
//!   (microseconds), [`Matcher::allowed`] masks a whole vocabulary (about a millisecond for
//!   150k tokens once its states are cached), [`Matcher::advance`] appends the chosen token,
//!   [`Matcher::can_end`] / [`Matcher::must_end`] say whether end-of-generation may / must come.
//! - [`GrammarError`]: every failure, with the facts (line and column, keyword and schema path,
//!   the limit exceeded).
//!
//! ```
//! use grammar::{Grammar, Matcher, Vocabulary};
//! use std::sync::Arc;
//!
//! let grammar = Arc::new(Grammar::parse(r#"root ::= "yes" | "no""#).unwrap());
//! let vocab = Vocabulary::new(vec![Some(b"y".to_vec()), Some(b"es".to_vec()), Some(b"x".to_vec()), None]);
//! let mut m = Matcher::new(grammar);
//! let mut mask = Vec::new();
//! m.allowed(&vocab, &mut mask);
//! assert_eq!(mask, [true, false, false, false]);
//! m.advance(b"y").unwrap();
//! m.advance(b"es").unwrap();
//! assert!(m.can_end() && m.must_end());
//! ```
//!
//! Everything is matched on bytes: literals and character classes (over Unicode scalar values)
//! are compiled to UTF-8 byte sequences, so tokens that split a character are handled. The
//! matcher is a set of pushdown stacks, hash-consed and interned into states whose byte
//! transitions are cached (a lazily built DFA), so a repeated state costs one table lookup per
//! byte. Hostile grammars are bounded: text size, rule and element counts, repetition counts,
//! nesting, and the number of simultaneous parse stacks ([`MAX_STACKS`]).

mod ast;
mod compile;
mod error;
mod gbnf;
mod json;
mod matcher;
mod regex;
mod schema;
mod utf8;
mod vocab;

pub use compile::{Grammar, MAX_ELEMENTS, MAX_RULES};
pub use error::GrammarError;
pub use gbnf::{MAX_GRAMMAR_LEN, MAX_NESTING, MAX_REPEAT};
pub use matcher::{Matcher, MAX_STACKS};
pub use schema::MAX_SCHEMA_DEPTH;
pub use vocab::Vocabulary;
