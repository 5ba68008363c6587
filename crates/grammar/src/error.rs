//! [`GrammarError`]: everything that can go wrong building a grammar or matching text with it.

/// Errors of the grammar crate. Each says what happened and, where it helps, what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The GBNF text is malformed.
    #[error(
        "grammar syntax error at line {line}, column {column}: expected {expected}, found {found}"
    )]
    Syntax {
        line: usize,
        column: usize,
        expected: String,
        found: String,
    },
    /// A rule refers to a rule that is not defined.
    #[error("grammar error at line {line}, column {column}: rule `{name}` is used but never defined; define it as `{name} ::= ...`")]
    UndefinedRule {
        name: String,
        line: usize,
        column: usize,
    },
    /// A rule is defined twice.
    #[error("grammar error at line {line}: rule `{name}` is defined again (first at line {first_line}); join the definitions with `|`")]
    DuplicateRule {
        name: String,
        line: usize,
        first_line: usize,
    },
    /// The grammar has no `root` rule, where matching starts.
    #[error("the grammar has no `root` rule: matching starts at `root ::= ...`")]
    MissingRoot,
    /// A rule can reach itself without consuming any text and keeps growing the parse stack,
    /// which would loop forever (`expr ::= expr "+" term`).
    #[error("rule `{rule}` is left-recursive (it can reach itself before matching any text); rewrite it with repetition, e.g. `expr ::= term (\"+\" term)*`")]
    LeftRecursion { rule: String },
    /// A rule can never finish matching (every alternative needs the rule itself again, or a
    /// character class that matches nothing), so generation under it could never end.
    #[error("rule `{rule}` can never finish: every way through it needs itself again or an empty character class; give it an alternative that ends")]
    NeverEnds { rule: String },
    /// The grammar (or schema) is larger than the limit allows.
    #[error("the {what} is too large: {found} > the limit of {limit}; simplify it")]
    TooLarge {
        what: &'static str,
        limit: usize,
        found: usize,
    },
    /// A JSON-schema keyword (or a form of one) that changes which values are valid but that
    /// this converter cannot enforce: rather than generate output that might not validate.
    #[error("JSON schema keyword `{keyword}` at `{path}` is not supported{}; remove it or express the constraint another way", if reason.is_empty() { String::new() } else { format!(" ({reason})") })]
    Unsupported {
        keyword: String,
        path: String,
        reason: String,
    },
    /// The JSON schema is invalid (a wrong type for a keyword, a `$ref` that does not resolve,
    /// contradictory bounds...).
    #[error("invalid JSON schema at `{path}`: {message}")]
    Schema { path: String, message: String },
    /// Text the grammar does not allow at this point was given to [`crate::Matcher::advance`].
    #[error("the grammar does not allow {text:?} here")]
    Rejected { text: String },
    /// The grammar is so ambiguous that the parse needs more simultaneous stacks than allowed.
    #[error("the grammar is too ambiguous: the text so far has more than {limit} possible parses; make its alternatives distinguishable")]
    TooAmbiguous { limit: usize },
}
