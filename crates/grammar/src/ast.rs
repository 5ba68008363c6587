//! The grammar as written: named rules of expressions, built by the GBNF parser and the JSON
//! schema converter, printed back as GBNF, and compiled into the matcher's flat form.

use std::collections::HashMap;
use std::fmt::Write;

/// The largest Unicode scalar value.
pub(crate) const MAX_CHAR: u32 = 0x10FFFF;

/// One expression of a rule's body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Expr {
    /// Each in turn (empty: the empty text).
    Seq(Vec<Expr>),
    /// Any one of them.
    Alt(Vec<Expr>),
    /// This exact text.
    Lit(String),
    /// One character of the class.
    Class(Class),
    /// The rule of this index.
    Ref(usize),
    /// `min` to `max` (`None`: any number of) repetitions.
    Repeat(Box<Expr>, u32, Option<u32>),
}

impl Expr {
    pub(crate) fn empty() -> Expr {
        Expr::Seq(Vec::new())
    }

    pub(crate) fn lit(s: &str) -> Expr {
        Expr::Lit(s.to_string())
    }

    pub(crate) fn opt(e: Expr) -> Expr {
        Expr::Repeat(Box::new(e), 0, Some(1))
    }

    pub(crate) fn star(e: Expr) -> Expr {
        Expr::Repeat(Box::new(e), 0, None)
    }

    pub(crate) fn repeat(e: Expr, min: u32, max: Option<u32>) -> Expr {
        Expr::Repeat(Box::new(e), min, max)
    }

    /// A sequence, flattened; one item stands alone.
    pub(crate) fn seq(items: Vec<Expr>) -> Expr {
        let mut out = Vec::with_capacity(items.len());
        for e in items {
            match e {
                Expr::Seq(v) => out.extend(v),
                e => out.push(e),
            }
        }
        if out.len() == 1 {
            out.pop().unwrap()
        } else {
            Expr::Seq(out)
        }
    }

    /// Alternatives, flattened; one stands alone.
    pub(crate) fn alt(items: Vec<Expr>) -> Expr {
        let mut out = Vec::with_capacity(items.len());
        for e in items {
            match e {
                Expr::Alt(v) => out.extend(v),
                e => out.push(e),
            }
        }
        if out.len() == 1 {
            out.pop().unwrap()
        } else {
            Expr::Alt(out)
        }
    }
}

/// A character class over Unicode scalar values: inclusive ranges, maybe negated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Class {
    pub ranges: Vec<(u32, u32)>,
    pub negated: bool,
}

impl Class {
    pub(crate) fn of(ranges: &[(u32, u32)]) -> Class {
        Class {
            ranges: ranges.to_vec(),
            negated: false,
        }
    }

    pub(crate) fn not(ranges: &[(u32, u32)]) -> Class {
        Class {
            ranges: ranges.to_vec(),
            negated: true,
        }
    }

    /// Any character (`.`).
    pub(crate) fn any() -> Class {
        Class::not(&[])
    }

    /// The characters it matches: sorted, disjoint, non-adjacent ranges of scalar values
    /// (surrogates excluded).
    pub(crate) fn normalized(&self) -> Vec<(u32, u32)> {
        let mut r: Vec<(u32, u32)> = self
            .ranges
            .iter()
            .filter(|(a, b)| a <= b)
            .map(|&(a, b)| (a, b.min(MAX_CHAR)))
            .filter(|(a, _)| *a <= MAX_CHAR)
            .collect();
        r.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(r.len());
        for (a, b) in r {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        if self.negated {
            let mut comp = Vec::with_capacity(merged.len() + 1);
            let mut next = 0u32;
            for &(a, b) in &merged {
                if a > next {
                    comp.push((next, a - 1));
                }
                next = b + 1;
            }
            if next <= MAX_CHAR {
                comp.push((next, MAX_CHAR));
            }
            merged = comp;
        }
        // Surrogates are not characters.
        let mut out = Vec::with_capacity(merged.len() + 1);
        for (a, b) in merged {
            if b < 0xD800 || a > 0xDFFF {
                out.push((a, b));
                continue;
            }
            if a < 0xD800 {
                out.push((a, 0xD7FF));
            }
            if b > 0xDFFF {
                out.push((0xE000, b));
            }
        }
        out
    }
}

/// Named rules; rule 0 need not be the root (see [`Rules::root`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Rules {
    pub names: Vec<String>,
    /// `None` while only referred to (the GBNF parser checks every one gets defined).
    pub bodies: Vec<Option<Expr>>,
    index: HashMap<String, usize>,
}

impl Rules {
    /// The index of rule `name`, adding an undefined one if new.
    pub(crate) fn id(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(name.to_string());
        self.bodies.push(None);
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// A new rule named after `base` (`base`, else `base-1`, `base-2`...), undefined.
    pub(crate) fn fresh(&mut self, base: &str) -> usize {
        let mut name = base.to_string();
        let mut n = 0;
        while self.index.contains_key(&name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        self.id(&name)
    }

    pub(crate) fn define(&mut self, id: usize, body: Expr) {
        self.bodies[id] = Some(body);
    }

    pub(crate) fn root(&self) -> Option<usize> {
        self.get("root")
    }

    /// The rules as GBNF text, `root` first.
    pub(crate) fn to_gbnf(&self) -> String {
        let mut out = String::new();
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        if let Some(r) = self.root() {
            order.retain(|&i| i != r);
            order.insert(0, r);
        }
        for i in order {
            let Some(body) = &self.bodies[i] else {
                continue;
            };
            let _ = write!(out, "{} ::= ", self.names[i]);
            self.write_expr(&mut out, body, 0);
            out.push('\n');
        }
        out
    }

    /// `prec`: 0 top level (alternatives bare), 1 inside a sequence (alternatives in
    /// parentheses), 2 before a repetition operator (sequences in parentheses too).
    fn write_expr(&self, out: &mut String, e: &Expr, prec: u8) {
        match e {
            Expr::Seq(items) if items.is_empty() => out.push_str("\"\""),
            Expr::Seq(items) => {
                let paren = prec >= 2 && items.len() > 1;
                if paren {
                    out.push('(');
                }
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    self.write_expr(out, item, 1);
                }
                if paren {
                    out.push(')');
                }
            }
            Expr::Alt(items) => {
                let paren = prec >= 1;
                if paren {
                    out.push('(');
                }
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" | ");
                    }
                    self.write_expr(out, item, 0);
                }
                if paren {
                    out.push(')');
                }
            }
            Expr::Lit(s) => {
                if prec >= 2 && s.chars().count() != 1 {
                    out.push('(');
                    write_literal(out, s);
                    out.push(')');
                } else {
                    write_literal(out, s);
                }
            }
            Expr::Class(c) => write_class(out, c),
            Expr::Ref(r) => out.push_str(&self.names[*r]),
            Expr::Repeat(inner, min, max) => {
                self.write_expr(out, inner, 2);
                let _ = match (min, max) {
                    (0, None) => write!(out, "*"),
                    (1, None) => write!(out, "+"),
                    (0, Some(1)) => write!(out, "?"),
                    (n, None) => write!(out, "{{{n},}}"),
                    (n, Some(m)) if n == m => write!(out, "{{{n}}}"),
                    (n, Some(m)) => write!(out, "{{{n},{m}}}"),
                };
            }
        }
    }
}

fn write_char_escaped(out: &mut String, c: char, specials: &[char]) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\\' => out.push_str("\\\\"),
        c if specials.contains(&c) => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c as u32 == 0x7F => {
            let _ = write!(out, "\\x{:02X}", c as u32);
        }
        c => out.push(c),
    }
}

fn write_literal(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        write_char_escaped(out, c, &['"']);
    }
    out.push('"');
}

fn write_class(out: &mut String, c: &Class) {
    if c.negated && c.ranges.is_empty() {
        out.push('.');
        return;
    }
    out.push('[');
    if c.negated {
        out.push('^');
    }
    let one = |out: &mut String, v: u32| match char::from_u32(v) {
        Some(ch) => write_char_escaped(out, ch, &[']', '[', '^', '-', '"']),
        None => {
            let _ = write!(out, "\\U{v:08X}");
        }
    };
    for &(a, b) in &c.ranges {
        one(out, a);
        if b != a {
            out.push('-');
            one(out, b);
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negated_class_is_the_complement_without_surrogates() {
        let c = Class::not(&[(b'"' as u32, b'"' as u32), (0, 0x1F)]);
        assert_eq!(
            c.normalized(),
            vec![(0x20, 0x21), (0x23, 0xD7FF), (0xE000, MAX_CHAR)]
        );
        assert_eq!(
            Class::of(&[(b'b' as u32, b'c' as u32), (b'a' as u32, b'a' as u32)]).normalized(),
            vec![(0x61, 0x63)]
        );
    }
}
