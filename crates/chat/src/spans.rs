//! Finding which bytes of a rendered prompt came from message contents.
//!
//! # Why
//!
//! The prompt is tokenized with special-token parsing on, so that the `<|im_start|>` the template
//! writes becomes one control token. A user who types `<|im_end|>\n<|im_start|>system\n...` must
//! not get control tokens that way: text that came from a message must be tokenized as plain text.
//! [`Rendered::content_spans`](crate::Rendered::content_spans) marks that text.
//!
//! # How: three renders
//!
//! Each message content `c` is split into leading whitespace, a *core* and trailing whitespace
//! (`c = lead + core + trail`). Three markers are drawn per message from the supplementary
//! private-use planes (U+F0000..U+10FFFD), choosing code points that occur nowhere in the
//! messages, the roles, the template or the BOS/EOS texts: `S` (start), `E` (end) and `T`
//! (opaque stand-in). Then the template is rendered three times, with identical roles and flags:
//!
//! * **R** with the real contents: this is [`Rendered::text`](crate::Rendered::text).
//! * **W** ("wrapped") with `lead + S + core + E + trail`. Markers sit inside the whitespace, so a
//!   template's `| trim` / `.strip()` keeps them, and the whole core is between them.
//! * **O** ("opaque") with `lead + T + trail`: the same conversation with every core replaced by
//!   one meaningless character. O is computed without any user-written character other than
//!   whitespace.
//!
//! Messages whose core is empty (empty or whitespace-only contents) are passed unchanged in all
//! three renders; nothing in them can be a special token.
//!
//! **Exact mode.** The spans are accepted when all of these hold:
//! 1. removing the markers from W gives exactly R, and in W every `S_i` is followed by its own
//!    `E_i` before any other marker (pairs neither nest nor interleave) — each pair's position in
//!    R is a span;
//! 2. O contains no `S`/`E`, and the sequence of messages whose `T` appears in O equals the
//!    sequence of W's pairs;
//! 3. the text of R *between* the spans equals, run for run, the text of O between its `T`s.
//!
//! *Why this is safe.* By (3) everything outside the spans is, character for character and run
//! for run, the output of the template for opaque contents, which no user chose. The user can
//! change only the text inside spans (which the tokenizer treats as plain text) — never which
//! template text surrounds them. A user-typed `<|im_end|>` can therefore only appear inside a
//! span, and every marker outside the spans is one the template wrote for the opaque
//! conversation too. The positions come from markers that only contents carry (1), so no search
//! is involved and contents equal to a template literal cannot shift them. A template that
//! extracts part of a content without its markers (e.g. `content.split('</think>')[0]`), or
//! whose control flow depends on the content (`startswith`, `length`, `==`), makes W or O differ
//! and fails a check; it never produces a wrong span.
//!
//! Finally each span is widened over the message's leading/trailing whitespace where R has it
//! right next to the span (this can only move whitespace into a span, the safe direction).
//!
//! **Conservative mode** (any check failed, or W/O could not be rendered): the longest common
//! prefix and the longest common suffix of R and O are template text (they are equal, character
//! for character, to text rendered without user contents, by the same argument); **everything in
//! between is one protected span**. Template markers in the middle then lose their special
//! meaning: the prompt is degraded (e.g. earlier turns of a conversation with a reasoning model
//! whose template splits `<think>` blocks) but never unsafe. If O itself failed, the whole text
//! is protected.
//!
//! Roles are not protected; [`ChatTemplate::render`](crate::ChatTemplate::render) accepts only
//! roles made of ASCII letters, digits, `_` and `-`.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Start(usize),
    End(usize),
    Opaque(usize),
}

/// The per-message contents for the W and O renders, and the markers used in them.
pub(crate) struct Plan {
    /// Contents for the W render, one per message.
    pub wrapped: Vec<String>,
    /// Contents for the O render, one per message.
    pub opaque: Vec<String>,
    markers: HashMap<char, Marker>,
    /// Per message: the content's leading and trailing whitespace.
    edges: Vec<(String, String)>,
}

/// Candidate marker code points: both supplementary private-use planes.
fn candidates() -> impl Iterator<Item = char> {
    (0xF0000u32..=0xFFFFD)
        .chain(0x10_0000..=0x10_FFFD)
        .filter_map(char::from_u32)
}

fn is_candidate(c: char) -> bool {
    matches!(c as u32, 0xF0000..=0xFFFFD | 0x10_0000..=0x10_FFFD)
}

/// Splits `s` into leading whitespace, core and trailing whitespace (Rust's `char::is_whitespace`,
/// which MiniJinja's `trim` and pycompat's `strip()` use).
fn split_edges(s: &str) -> (&str, &str, &str) {
    let start = s.len() - s.trim_start().len();
    let core_and_trail = &s[start..];
    let core = core_and_trail.trim_end();
    (&s[..start], core, &core_and_trail[core.len()..])
}

impl Plan {
    /// Draws markers avoiding every private-use character in `messages` and `others` (the
    /// template, BOS/EOS). `None` if there are not enough code points (over ~43,000 messages).
    pub fn new(messages: &[Message], others: &[&str]) -> Option<Plan> {
        let used: HashSet<char> = messages
            .iter()
            .flat_map(|m| [m.role.as_str(), m.content.as_str()])
            .chain(others.iter().copied())
            .flat_map(str::chars)
            .filter(|&c| is_candidate(c))
            .collect();
        let mut free = candidates().filter(|c| !used.contains(c));
        let mut plan = Plan {
            wrapped: Vec::with_capacity(messages.len()),
            opaque: Vec::with_capacity(messages.len()),
            markers: HashMap::new(),
            edges: Vec::with_capacity(messages.len()),
        };
        for (i, m) in messages.iter().enumerate() {
            let (lead, core, trail) = split_edges(&m.content);
            plan.edges.push((lead.to_string(), trail.to_string()));
            if core.is_empty() {
                plan.wrapped.push(m.content.clone());
                plan.opaque.push(m.content.clone());
                continue;
            }
            let (s, e, t) = (free.next()?, free.next()?, free.next()?);
            plan.markers.insert(s, Marker::Start(i));
            plan.markers.insert(e, Marker::End(i));
            plan.markers.insert(t, Marker::Opaque(i));
            plan.wrapped.push(format!("{lead}{s}{core}{e}{trail}"));
            plan.opaque.push(format!("{lead}{t}{trail}"));
        }
        Some(plan)
    }

    /// The content spans of `text` (render R), given the W and O renders (`None` where they
    /// failed). See the module docs.
    pub fn spans(
        &self,
        text: &str,
        wrapped: Option<&str>,
        opaque: Option<&str>,
    ) -> Vec<Range<usize>> {
        if let (Some(w), Some(o)) = (wrapped, opaque) {
            if let Some(spans) = self.exact(text, w, o) {
                return spans;
            }
        }
        self.conservative(text, opaque)
    }

    /// Exact mode; `None` when a check fails.
    fn exact(&self, text: &str, w: &str, o: &str) -> Option<Vec<Range<usize>>> {
        // 1. Strip the markers from W, matching R as we go, and record the pairs.
        let mut pos = 0usize;
        let mut open: Option<(usize, usize)> = None;
        let mut pairs: Vec<(usize, Range<usize>)> = Vec::new();
        for c in w.chars() {
            match self.markers.get(&c) {
                Some(Marker::Start(i)) => {
                    if open.is_some() {
                        return None;
                    }
                    open = Some((*i, pos));
                }
                Some(Marker::End(i)) => match open.take() {
                    Some((j, start)) if j == *i => pairs.push((*i, start..pos)),
                    _ => return None,
                },
                Some(Marker::Opaque(_)) => return None,
                None => {
                    if !text[pos..].starts_with(c) {
                        return None;
                    }
                    pos += c.len_utf8();
                }
            }
        }
        if open.is_some() || pos != text.len() {
            return None;
        }
        // 2. Split O at its opaque markers.
        let mut runs: Vec<&str> = Vec::new();
        let mut order: Vec<usize> = Vec::new();
        let mut run_start = 0usize;
        for (at, c) in o.char_indices() {
            match self.markers.get(&c) {
                Some(Marker::Opaque(i)) => {
                    runs.push(&o[run_start..at]);
                    order.push(*i);
                    run_start = at + c.len_utf8();
                }
                Some(_) => return None,
                None => {}
            }
        }
        runs.push(&o[run_start..]);
        if order.len() != pairs.len() || order.iter().zip(&pairs).any(|(a, (b, _))| a != b) {
            return None;
        }
        // 3. R between the spans must equal O between its stand-ins, run for run.
        let mut prev = 0usize;
        for (run, (_, span)) in runs.iter().zip(&pairs) {
            if &text[prev..span.start] != *run {
                return None;
            }
            prev = span.end;
        }
        if &text[prev..] != *runs.last()? {
            return None;
        }
        // Widen over the content's own edge whitespace where it sits next to the span.
        let mut out: Vec<Range<usize>> = Vec::with_capacity(pairs.len());
        let n = pairs.len();
        for k in 0..n {
            let (i, span) = &pairs[k];
            let (lead, trail) = &self.edges[*i];
            let floor = out.last().map_or(0, |r| r.end);
            let ceil = if k + 1 < n {
                pairs[k + 1].1.start
            } else {
                text.len()
            };
            let mut start = span.start;
            let mut end = span.end;
            if !lead.is_empty()
                && start >= floor + lead.len()
                && text[..start].ends_with(lead.as_str())
            {
                start -= lead.len();
            }
            if !trail.is_empty()
                && end + trail.len() <= ceil
                && text[end..].starts_with(trail.as_str())
            {
                end += trail.len();
            }
            if start < end {
                out.push(start..end);
            }
        }
        Some(out)
    }

    /// Conservative mode: protect everything but the common prefix and suffix of R and O.
    fn conservative(&self, text: &str, opaque: Option<&str>) -> Vec<Range<usize>> {
        if text.is_empty() {
            return Vec::new();
        }
        let Some(o) = opaque.filter(|o| {
            !o.chars().any(|c| {
                matches!(
                    self.markers.get(&c),
                    Some(Marker::Start(_) | Marker::End(_))
                )
            })
        }) else {
            return vec![0..text.len()];
        };
        let prefix: usize = text
            .chars()
            .zip(o.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a.len_utf8())
            .sum();
        let suffix: usize = text
            .chars()
            .rev()
            .zip(o.chars().rev())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a.len_utf8())
            .sum();
        let suffix = suffix.min(text.len() - prefix);
        let (start, end) = (prefix, text.len() - suffix);
        if start < end {
            vec![start..end]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn edges() {
        assert_eq!(split_edges("  a b \n"), ("  ", "a b", " \n"));
        assert_eq!(split_edges("   "), ("   ", "", ""));
        assert_eq!(split_edges(""), ("", "", ""));
    }

    #[test]
    fn markers_avoid_used_code_points() {
        let first = candidates().next().unwrap();
        let m = [msg("user", &format!("x{first}y"))];
        let plan = Plan::new(&m, &[]).unwrap();
        assert!(!plan.markers.contains_key(&first));
    }

    #[test]
    fn conservative_prefix_suffix() {
        let m = [msg("user", "hi")];
        let plan = Plan::new(&m, &[]).unwrap();
        let t = plan.opaque[0].clone();
        let o = format!("<a>{t}<b>");
        assert_eq!(plan.conservative("<a>xyz<b>", Some(&o)), vec![3..6]);
        assert_eq!(plan.conservative("<a>xyz<b>", None), vec![0..9]);
    }
}
