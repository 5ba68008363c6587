//! JSON's building blocks as grammar rules, and [`Grammar::json`].
//!
//! Whitespace between tokens is bounded (one space, or a newline and up to 20 spaces or tabs of
//! indentation), and so are numbers (16 integer digits, 15 fraction digits, a 2-digit
//! exponent): a small model left free to write whitespace or digits can loop on them until the
//! token limit. `\u` escapes exclude the surrogate range (a lone surrogate is invalid JSON for
//! strict parsers; other characters are written as themselves).

use crate::ast::{Class, Expr, Rules};
use crate::{Grammar, GrammarError};

/// The rules of JSON values, defined in a [`Rules`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Json {
    pub ws: usize,
    pub char_: usize,
    pub string: usize,
    pub number: usize,
    pub integer: usize,
    pub value: usize,
    pub object: usize,
    pub array: usize,
}

pub(crate) fn class(ranges: &[(char, char)]) -> Expr {
    Expr::Class(Class::of(
        &ranges
            .iter()
            .map(|&(a, b)| (a as u32, b as u32))
            .collect::<Vec<_>>(),
    ))
}

pub(crate) fn digit() -> Expr {
    class(&[('0', '9')])
}

pub(crate) fn hex() -> Expr {
    class(&[('0', '9'), ('a', 'f'), ('A', 'F')])
}

/// A character of a JSON string as written inside the quotes: anything but `"`, `\` and
/// control characters, or an escape.
pub(crate) fn string_char() -> Expr {
    let hex4 = Expr::alt(vec![
        Expr::seq(vec![
            class(&[('0', '9'), ('a', 'c'), ('A', 'C')]),
            Expr::repeat(hex(), 3, Some(3)),
        ]),
        Expr::seq(vec![
            class(&[('d', 'd'), ('D', 'D')]),
            class(&[('0', '7')]),
            Expr::repeat(hex(), 2, Some(2)),
        ]),
        Expr::seq(vec![
            class(&[('e', 'f'), ('E', 'F')]),
            Expr::repeat(hex(), 3, Some(3)),
        ]),
    ]);
    Expr::alt(vec![
        Expr::Class(Class::not(&[
            (0, 0x1F),
            ('"' as u32, '"' as u32),
            ('\\' as u32, '\\' as u32),
        ])),
        Expr::seq(vec![
            Expr::lit("\\"),
            Expr::alt(vec![
                Expr::Class(Class::of(
                    &"\"\\/bfnrt"
                        .chars()
                        .map(|c| (c as u32, c as u32))
                        .collect::<Vec<_>>(),
                )),
                Expr::seq(vec![Expr::lit("u"), hex4]),
            ]),
        ]),
    ])
}

/// `-? (0 | [1-9] [0-9]{0,15})`.
pub(crate) fn integer_body() -> Expr {
    Expr::seq(vec![
        Expr::opt(Expr::lit("-")),
        Expr::alt(vec![
            Expr::lit("0"),
            Expr::seq(vec![
                class(&[('1', '9')]),
                Expr::repeat(digit(), 0, Some(15)),
            ]),
        ]),
    ])
}

/// `("." [0-9]{1,15})?`
pub(crate) fn fraction() -> Expr {
    Expr::opt(Expr::seq(vec![
        Expr::lit("."),
        Expr::repeat(digit(), 1, Some(15)),
    ]))
}

impl Json {
    /// Defines the JSON rules in `rules` (under these names, or fresh ones if taken).
    pub(crate) fn define(rules: &mut Rules) -> Json {
        let j = Json {
            ws: rules.fresh("ws"),
            char_: rules.fresh("char"),
            string: rules.fresh("string"),
            number: rules.fresh("number"),
            integer: rules.fresh("integer"),
            value: rules.fresh("value"),
            object: rules.fresh("object"),
            array: rules.fresh("array"),
        };
        let ws = || Expr::Ref(j.ws);
        rules.define(
            j.ws,
            Expr::opt(Expr::alt(vec![
                Expr::lit(" "),
                Expr::seq(vec![
                    Expr::lit("\n"),
                    Expr::repeat(class(&[(' ', ' '), ('\t', '\t')]), 0, Some(20)),
                ]),
            ])),
        );
        rules.define(j.char_, string_char());
        rules.define(
            j.string,
            Expr::seq(vec![
                Expr::lit("\""),
                Expr::star(Expr::Ref(j.char_)),
                Expr::lit("\""),
            ]),
        );
        rules.define(j.integer, integer_body());
        rules.define(
            j.number,
            Expr::seq(vec![
                Expr::Ref(j.integer),
                fraction(),
                Expr::opt(Expr::seq(vec![
                    class(&[('e', 'e'), ('E', 'E')]),
                    Expr::opt(class(&[('-', '-'), ('+', '+')])),
                    Expr::repeat(digit(), 1, Some(2)),
                ])),
            ]),
        );
        rules.define(
            j.value,
            Expr::alt(vec![
                Expr::Ref(j.object),
                Expr::Ref(j.array),
                Expr::Ref(j.string),
                Expr::Ref(j.number),
                Expr::lit("true"),
                Expr::lit("false"),
                Expr::lit("null"),
            ]),
        );
        let member = Expr::seq(vec![
            Expr::Ref(j.string),
            ws(),
            Expr::lit(":"),
            ws(),
            Expr::Ref(j.value),
            ws(),
        ]);
        rules.define(
            j.object,
            Expr::seq(vec![
                Expr::lit("{"),
                ws(),
                Expr::opt(Expr::seq(vec![
                    member.clone(),
                    Expr::star(Expr::seq(vec![Expr::lit(","), ws(), member])),
                ])),
                Expr::lit("}"),
            ]),
        );
        let item = Expr::seq(vec![Expr::Ref(j.value), ws()]);
        rules.define(
            j.array,
            Expr::seq(vec![
                Expr::lit("["),
                ws(),
                Expr::opt(Expr::seq(vec![
                    item.clone(),
                    Expr::star(Expr::seq(vec![Expr::lit(","), ws(), item])),
                ])),
                Expr::lit("]"),
            ]),
        );
        j
    }
}

impl Grammar {
    /// Any JSON object (what Ollama's `format: "json"` and OpenAI's
    /// `response_format: {"type": "json_object"}` ask for): `root ::= object`, no whitespace
    /// before or after it, bounded whitespace inside (see the module docs of `json`).
    pub fn json() -> Grammar {
        Self::json_rules().expect("the JSON grammar compiles")
    }

    fn json_rules() -> Result<Grammar, GrammarError> {
        let mut rules = Rules::default();
        let root = rules.id("root");
        let j = Json::define(&mut rules);
        rules.define(root, Expr::Ref(j.object));
        Grammar::compile(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Matcher;
    use std::sync::Arc;

    fn complete(g: &Arc<Grammar>, text: &str) -> bool {
        let mut m = Matcher::new(g.clone());
        m.advance(text.as_bytes()).is_ok() && m.can_end()
    }

    #[test]
    fn json_grammar_takes_objects_only() {
        let g = Arc::new(Grammar::json());
        for ok in [
            r#"{}"#,
            r#"{"a": 1}"#,
            "{\n  \"a\": [1, 2.5, -3e10, true, null, \"x\\n\\u00e9é\"],\n  \"b\": {\"c\": {}}\n}",
            r#"{"a":[]}"#,
        ] {
            assert!(complete(&g, ok), "{ok}");
            serde_json::from_str::<serde_json::Value>(ok).unwrap();
        }
        for bad in [
            "[]",
            "1",
            " {}",
            "{} ",
            r#"{"a": 01}"#,
            r#"{"a": "\ud800"}"#,
            "{\"a\": \"\u{1}\"}",
            r#"{"a":  1}"#,
            "{\n                      \"a\": 1}",
            r#"{"a": 1e400}"#,
        ] {
            assert!(!complete(&g, bad), "{bad:?}");
        }
        let mut m = Matcher::new(g.clone());
        m.advance(b"{\"a\": {}}").unwrap();
        assert!(m.must_end());
    }

    #[test]
    fn json_grammar_round_trips_through_gbnf() {
        let g = Grammar::json();
        let text = g.to_gbnf();
        assert!(text.starts_with("root ::= object\n"), "{text}");
        let again = Arc::new(Grammar::parse(&text).unwrap());
        assert!(complete(&again, r#"{"k": [1, {"x": "y"}]}"#));
        assert!(!complete(&again, r#"{"k" 1}"#));
    }
}
