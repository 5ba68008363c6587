//! The GBNF parser: llama.cpp's grammar format.
//!
//! ```text
//! root   ::= greeting " " name       # a rule; `root` is where matching starts
//! greeting ::= "hello" | "hi"        # alternatives
//! name   ::= [A-Z] [a-z]* ("-" [A-Z] [a-z]*)?
//! digits ::= [0-9]{1,3}              # also {n}, {n,}, {,m}; and *, +, ?
//! any    ::= [^"\\\x00-\x1F] | .     # negated classes; `.` is any character
//! ```
//!
//! Literals and classes take the escapes `\n \t \r \\ \" \' \[ \] \- \^ \/`, `\xHH`, `\uHHHH` and
//! `\UHHHHHHHH` (code points, not bytes). A rule may span lines; it ends where the next
//! `name ::=` begins. `#` starts a comment to the end of the line.

use crate::ast::{Class, Expr, Rules, MAX_CHAR};
use crate::{Grammar, GrammarError};

/// At most this many bytes of GBNF text.
pub const MAX_GRAMMAR_LEN: usize = 256 * 1024;
/// The largest count a repetition `{n,m}` may give.
pub const MAX_REPEAT: u32 = 10_000;
/// At most this many parentheses inside each other.
pub const MAX_NESTING: usize = 100;

impl Grammar {
    /// Parses and compiles a GBNF grammar (llama.cpp's format, see the module docs of
    /// `gbnf`): rules `name ::= ...` with `root` as the start. Syntax errors carry the line and
    /// column and say what was expected; a rule used but never defined, a missing `root`, left
    /// recursion and rules that can never finish are errors too, as are grammars over the size
    /// limits ([`MAX_GRAMMAR_LEN`], [`MAX_REPEAT`], [`MAX_NESTING`],
    /// [`crate::MAX_ELEMENTS`], [`crate::MAX_RULES`]).
    pub fn parse(gbnf: &str) -> Result<Grammar, GrammarError> {
        if gbnf.len() > MAX_GRAMMAR_LEN {
            return Err(GrammarError::TooLarge {
                what: "grammar text (bytes)",
                limit: MAX_GRAMMAR_LEN,
                found: gbnf.len(),
            });
        }
        let rules = Parser::new(gbnf).grammar()?;
        Grammar::compile(rules)
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    rules: Rules,
    /// Per rule, where it was defined and where it was first used (byte offsets).
    defined: Vec<Option<usize>>,
    used: Vec<Option<usize>>,
    depth: usize,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            pos: 0,
            rules: Rules::default(),
            defined: Vec::new(),
            used: Vec::new(),
            depth: 0,
        }
    }

    fn line_col(&self, at: usize) -> (usize, usize) {
        let before = &self.src[..at];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    fn error(&self, expected: &str) -> GrammarError {
        let (line, column) = self.line_col(self.pos);
        let found = match self.src[self.pos..].chars().next() {
            None => "the end of the grammar".to_string(),
            Some('\n') => "the end of the line".to_string(),
            Some(c) => format!("`{c}`"),
        };
        GrammarError::Syntax {
            line,
            column,
            expected: expected.to_string(),
            found,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// Skips spaces, newlines and comments.
    fn space(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'#' => {
                    self.pos = self
                        .rest()
                        .find('\n')
                        .map_or(self.src.len(), |i| self.pos + i)
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let len = self.rest().bytes().take_while(|&b| is_name_byte(b)).count();
        self.pos += len;
        (len > 0).then(|| &self.src[start..start + len])
    }

    /// Whether a rule definition (`name ::=`) starts here.
    fn at_definition(&self) -> bool {
        let rest = self.rest().as_bytes();
        let len = rest.iter().take_while(|&&b| is_name_byte(b)).count();
        if len == 0 {
            return false;
        }
        let after = &self.rest()[len..];
        after
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with("::=")
    }

    fn id(&mut self, name: &str) -> usize {
        let id = self.rules.id(name);
        if id == self.defined.len() {
            self.defined.push(None);
            self.used.push(None);
        }
        id
    }

    fn grammar(mut self) -> Result<Rules, GrammarError> {
        loop {
            self.space();
            if self.pos == self.src.len() {
                break;
            }
            let start = self.pos;
            let Some(name) = self.name() else {
                return Err(self.error("a rule name (`name ::= ...`)"));
            };
            self.space();
            if !self.rest().starts_with("::=") {
                return Err(self.error("`::=` after the rule name"));
            }
            self.pos += 3;
            let id = self.id(name);
            if let Some(first) = self.defined[id] {
                return Err(GrammarError::DuplicateRule {
                    name: name.to_string(),
                    line: self.line_col(start).0,
                    first_line: self.line_col(first).0,
                });
            }
            self.defined[id] = Some(start);
            let body = self.alternatives(false)?;
            self.rules.define(id, body);
        }
        if self.rules.root().is_none_or(|r| self.defined[r].is_none()) {
            return Err(GrammarError::MissingRoot);
        }
        let undefined = (0..self.defined.len())
            .filter(|&i| self.defined[i].is_none())
            .filter_map(|i| self.used[i].map(|at| (at, i)))
            .min();
        if let Some((at, i)) = undefined {
            let (line, column) = self.line_col(at);
            return Err(GrammarError::UndefinedRule {
                name: self.rules.names[i].clone(),
                line,
                column,
            });
        }
        Ok(self.rules)
    }

    /// `seq | seq | ...`, up to a `)` when `nested`, else up to the next rule or the end.
    fn alternatives(&mut self, nested: bool) -> Result<Expr, GrammarError> {
        let mut alts = vec![self.sequence(nested)?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            alts.push(self.sequence(nested)?);
        }
        Ok(Expr::alt(alts))
    }

    fn sequence(&mut self, nested: bool) -> Result<Expr, GrammarError> {
        let mut items = Vec::new();
        loop {
            self.space();
            match self.peek() {
                None | Some(b'|') => break,
                Some(b')') if nested => break,
                Some(b')') => return Err(self.error("an item or a new rule (unmatched `)`)")),
                _ if self.at_definition() => {
                    if nested {
                        return Err(self.error("`)` before the next rule"));
                    }
                    break;
                }
                _ => {}
            }
            let mut item = self.primary()?;
            // Repetition operators, a few in a row at most (each nests the item once more).
            for n in 0.. {
                self.space();
                let op = match self.peek() {
                    Some(b'*') => (0, None),
                    Some(b'+') => (1, None),
                    Some(b'?') => (0, Some(1)),
                    Some(b'{') => (0, Some(0)),
                    _ => break,
                };
                if n == 3 {
                    return Err(self.error("an item, not a fourth repetition operator in a row"));
                }
                let (min, max) = if self.peek() == Some(b'{') {
                    self.braces()?
                } else {
                    self.pos += 1;
                    op
                };
                item = Expr::repeat(item, min, max);
            }
            items.push(item);
        }
        Ok(Expr::seq(items))
    }

    fn primary(&mut self) -> Result<Expr, GrammarError> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let mut s = String::new();
                loop {
                    match self.peek() {
                        None | Some(b'\n') => return Err(self.error("`\"` to close the literal")),
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        _ => s.push(self.char()?),
                    }
                }
                Ok(Expr::Lit(s))
            }
            Some(b'[') => {
                self.pos += 1;
                let negated = self.peek() == Some(b'^');
                if negated {
                    self.pos += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    match self.peek() {
                        None | Some(b'\n') => {
                            return Err(self.error("`]` to close the character class"))
                        }
                        Some(b']') => {
                            self.pos += 1;
                            break;
                        }
                        _ => {}
                    }
                    let lo = self.char()? as u32;
                    let rest = self.rest().as_bytes();
                    let hi = if rest.first() == Some(&b'-') && rest.get(1) != Some(&b']') {
                        self.pos += 1;
                        if matches!(self.peek(), None | Some(b'\n')) {
                            return Err(self.error("the end of the character range"));
                        }
                        let at = self.pos;
                        let hi = self.char()? as u32;
                        if hi < lo {
                            self.pos = at;
                            return Err(self.error(&format!(
                                "a range end at or after U+{lo:04X} (ranges go low to high)"
                            )));
                        }
                        hi
                    } else {
                        lo
                    };
                    ranges.push((lo, hi));
                }
                Ok(Expr::Class(Class { ranges, negated }))
            }
            Some(b'.') => {
                self.pos += 1;
                Ok(Expr::Class(Class::any()))
            }
            Some(b'(') => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(GrammarError::TooLarge {
                        what: "nesting of parentheses",
                        limit: MAX_NESTING,
                        found: self.depth,
                    });
                }
                self.pos += 1;
                let e = self.alternatives(true)?;
                if self.peek() != Some(b')') {
                    return Err(self.error("`)` or `|`"));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(e)
            }
            Some(b) if is_name_byte(b) => {
                let at = self.pos;
                let name = self.name().unwrap_or_default();
                let id = self.id(name);
                self.used[id].get_or_insert(at);
                Ok(Expr::Ref(id))
            }
            _ => {
                Err(self
                    .error("a literal \"...\", a character class [...], a rule name, `(` or `.`"))
            }
        }
    }

    /// One character of a literal or class, escapes decoded.
    fn char(&mut self) -> Result<char, GrammarError> {
        let c = self.rest().chars().next().expect("caller checked");
        self.pos += c.len_utf8();
        if c != '\\' {
            return Ok(c);
        }
        let at = self.pos - 1;
        let Some(e) = self.rest().chars().next() else {
            return Err(self.error("an escaped character after `\\`"));
        };
        self.pos += e.len_utf8();
        let digits = match e {
            'n' => return Ok('\n'),
            't' => return Ok('\t'),
            'r' => return Ok('\r'),
            '\\' | '"' | '\'' | '[' | ']' | '-' | '^' | '/' => return Ok(e),
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => {
                self.pos -= e.len_utf8();
                return Err(self.error(
                    "an escape: \\n \\t \\r \\\\ \\\" \\' \\[ \\] \\- \\^ \\/ \\xHH \\uHHHH or \\UHHHHHHHH",
                ));
            }
        };
        let hex = self
            .rest()
            .get(..digits)
            .filter(|h| h.len() == digits && h.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(hex) = hex else {
            return Err(self.error(&format!("{digits} hexadecimal digits after \\{e}")));
        };
        let v = u32::from_str_radix(hex, 16).unwrap_or(u32::MAX);
        self.pos += digits;
        match char::from_u32(v).filter(|_| v <= MAX_CHAR) {
            Some(c) => Ok(c),
            None => {
                self.pos = at;
                Err(self.error(&format!(
                    "a Unicode scalar value (U+{v:X} is a surrogate or beyond U+10FFFF)"
                )))
            }
        }
    }

    /// `{n}`, `{n,}`, `{n,m}` or `{,m}`.
    fn braces(&mut self) -> Result<(u32, Option<u32>), GrammarError> {
        self.pos += 1;
        let number = |p: &mut Self| -> Result<Option<u32>, GrammarError> {
            p.space();
            let len = p.rest().bytes().take_while(u8::is_ascii_digit).count();
            if len == 0 {
                return Ok(None);
            }
            let v: u64 = p.rest()[..len].parse().unwrap_or(u64::MAX);
            if v > MAX_REPEAT as u64 {
                return Err(GrammarError::TooLarge {
                    what: "repetition count",
                    limit: MAX_REPEAT as usize,
                    found: v.min(usize::MAX as u64) as usize,
                });
            }
            p.pos += len;
            p.space();
            Ok(Some(v as u32))
        };
        let min = number(self)?;
        let (min, max) = if self.peek() == Some(b',') {
            self.pos += 1;
            (min.unwrap_or(0), number(self)?)
        } else {
            let Some(n) = min else {
                return Err(self.error("a repetition count: {n}, {n,}, {n,m} or {,m}"));
            };
            (n, Some(n))
        };
        if self.peek() != Some(b'}') {
            return Err(self.error("`}` to close the repetition"));
        }
        if max.is_some_and(|m| m < min) {
            return Err(self.error(&format!("a maximum at least the minimum {min} before `}}`")));
        }
        self.pos += 1;
        Ok((min, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> GrammarError {
        Grammar::parse(src).unwrap_err()
    }

    #[test]
    fn syntax_errors_say_where_and_what() {
        match err("root ::= \"a\" |\n  [b-a]") {
            GrammarError::Syntax { line, column, .. } => assert_eq!((line, column), (2, 6)),
            e => panic!("{e}"),
        }
        let e = err("root ::= \"abc");
        assert!(e.to_string().contains("line 1, column 14"), "{e}");
        assert!(e.to_string().contains("to close the literal"), "{e}");
        assert!(matches!(
            err("root ::= (\"a\""),
            GrammarError::Syntax { .. }
        ));
        assert!(matches!(
            err("root ::= \"a\"{3,2}"),
            GrammarError::Syntax { .. }
        ));
        assert!(matches!(
            err("root ::= \"\\q\""),
            GrammarError::Syntax { .. }
        ));
        assert!(matches!(
            err("root ::= \"\\uD800\""),
            GrammarError::Syntax { .. }
        ));
        assert!(matches!(err("root = \"a\""), GrammarError::Syntax { .. }));
        assert!(matches!(err("root ::= )"), GrammarError::Syntax { .. }));
        assert!(matches!(
            err("root ::= \"a\"*?+*"),
            GrammarError::Syntax { .. }
        ));
        assert!(Grammar::parse("root ::= \"a\"{2}?*").is_ok());
    }

    #[test]
    fn rule_errors() {
        assert_eq!(
            err("root ::= a b\na ::= \"x\""),
            GrammarError::UndefinedRule {
                name: "b".into(),
                line: 1,
                column: 12
            }
        );
        assert_eq!(err("a ::= \"x\""), GrammarError::MissingRoot);
        assert_eq!(err(""), GrammarError::MissingRoot);
        assert!(matches!(
            err("root ::= \"x\"\nroot ::= \"y\""),
            GrammarError::DuplicateRule {
                line: 2,
                first_line: 1,
                ..
            }
        ));
        assert!(matches!(
            err("root ::= expr\nexpr ::= expr \"+\" [0-9] | [0-9]"),
            GrammarError::LeftRecursion { .. }
        ));
        // Through a nullable prefix.
        assert!(matches!(
            err("root ::= a\na ::= b? a \"x\" | \"y\"\nb ::= \"b\""),
            GrammarError::LeftRecursion { .. }
        ));
        assert!(matches!(
            err("root ::= \"a\" | \"b\" loop\nloop ::= \"c\" loop"),
            GrammarError::NeverEnds { .. }
        ));
        assert!(matches!(
            err("root ::= [^\\x00-\\U0010FFFF]"),
            GrammarError::NeverEnds { .. }
        ));
    }

    #[test]
    fn limits_hold() {
        assert!(matches!(
            err(&format!(
                "root ::= {}",
                "\"a\" ".repeat(MAX_GRAMMAR_LEN / 4 + 1)
            )),
            GrammarError::TooLarge { .. }
        ));
        assert!(matches!(
            err("root ::= \"a\"{1,10001}"),
            GrammarError::TooLarge { .. }
        ));
        assert!(matches!(
            err(&format!(
                "root ::= {}\"a\"{}",
                "(".repeat(200),
                ")".repeat(200)
            )),
            GrammarError::TooLarge { .. }
        ));
        // Nested repetitions multiply what they match but not the compiled size.
        let g = Grammar::parse("root ::= ((\"ab\"{10000}){10000}){10000}").unwrap();
        assert!(g.rule_count() < 10);
        // Many long repetitions add up past the element limit.
        let many = (0..120)
            .map(|i| format!("r{i} ::= \"x\"{{10000}}\n"))
            .collect::<String>();
        let refs = (0..120).map(|i| format!("r{i} ")).collect::<String>();
        assert!(matches!(
            err(&format!("root ::= {refs}\n{many}")),
            GrammarError::TooLarge { .. }
        ));
    }

    #[test]
    fn multi_line_rules_comments_and_round_trip() {
        let src = r#"
# a comment
root ::= "{" ws
    (pair ("," ws pair)*)?   # pairs
  "}"
pair ::= [a-z]+ ":" ws ( "1" | "2" )
ws ::= [ \t\n]{0,3}
"#;
        let g = Grammar::parse(src).unwrap();
        let again = Grammar::parse(&g.to_gbnf()).unwrap();
        assert_eq!(g.to_gbnf(), again.to_gbnf());
    }

    /// Random text made of GBNF's pieces never panics the parser, and whatever parses can be
    /// matched.
    #[test]
    fn random_text_never_panics() {
        let pieces = [
            "root",
            " ::= ",
            "a",
            "b",
            "::=",
            "\"x\"",
            "\"",
            "[",
            "]",
            "^",
            "-",
            "(",
            ")",
            "|",
            "*",
            "+",
            "?",
            "{",
            "}",
            "2",
            ",",
            "\n",
            " ",
            "#",
            ".",
            "\\",
            "\\x4",
            "\\u00e9",
            "é",
            "\\U0001F600",
            "a-b",
            "\n root ::= ",
        ];
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut parsed = 0;
        for _ in 0..20_000 {
            let len = 1 + next(12);
            let mut text = String::from("root ::= ");
            for _ in 0..len {
                text.push_str(pieces[next(pieces.len())]);
            }
            if let Ok(g) = Grammar::parse(&text) {
                parsed += 1;
                let m = crate::Matcher::new(std::sync::Arc::new(g));
                for b in [b"x".as_slice(), b"a", "é".as_bytes(), b"\n"] {
                    let _ = m.accepts(b);
                }
                let _ = m.can_end();
            }
        }
        assert!(parsed > 100, "{parsed}");
    }
}
