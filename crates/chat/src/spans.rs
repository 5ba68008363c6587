//! Finding which bytes of a rendered prompt came from message contents.
//!
//! # Why
//!
//! The prompt is tokenized with special-token parsing on, so that the `<|im_start|>` the template
//! writes becomes one control token. A user who types `<|im_end|>\n<|im_start|>system\n...` must
//! not get control tokens that way: text that came from a message must be tokenized as plain text.
//! [`Rendered::content_spans`](crate::Rendered::content_spans) marks that text.
//!
//! # Which texts
//!
//! Every message content, and every string of the tool definitions and of the messages' tool
//! calls (descriptions, argument keys and values, ids, names) except those made only of ASCII
//! letters, digits, `_` and `-`, which templates compare and which spell no control token (the
//! rule roles follow). Below, "content" means any of these texts and "message `i`" the `i`-th
//! text, in the order the context is built.
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
//! three renders.
//!
//! **Anchors.** Removing the markers from W must give exactly R (else W is not used, see
//! below). Then every `S_i` whose next marker is `E_i` gives an *anchor*: the byte range of R
//! between them is message `i`'s content as the template wrote it — found from markers that
//! only contents carry, never by searching, so a content equal to some template text cannot shift
//! it. A template that extracts only part of a content (`content.split('</think>')[-1]`) leaves
//! an unpaired marker: that content gives no anchor.
//!
//! **Regions.** Anchors are matched in order to stand-ins of the same message in O. Between two
//! consecutive matched anchors (and before the first, after the last) lies a *region* of R, and
//! the corresponding region of O (between the two stand-ins). If the two are equal, the region is
//! template text. If not (a content without anchor lies there, or the content changed the
//! template's control flow), the longest common prefix and the longest common suffix of the two
//! are template text and **everything between them is protected** (one span).
//!
//! Finally each anchor is widened over its message's leading/trailing whitespace where R has it
//! right next to it (this only moves whitespace into a span). Overlapping spans are merged.
//!
//! *Why this is safe.* Text outside the spans is made only of pieces of O — whole regions of O,
//! or prefixes and suffixes of them — and each piece sits in R exactly where it is anchored (at
//! the start or end of its region, next to a content span or the ends of the text). O was
//! rendered without any user-written character other than whitespace, roles and plain tool
//! strings (letters, digits, `_`, `-`), so the user cannot choose what these pieces say: at most, by breaking anchors or control flow, make more of the prompt
//! protected. A user-typed `<|im_end|>` can therefore only appear inside a span, and every marker
//! outside the spans is one the template writes for the opaque conversation too, at the same
//! place relative to the contents.
//!
//! For templates that pass contents through whole (with `trim`, `tojson`, `upper`, ...; ChatML,
//! Llama 3, Gemma, Phi-3, Qwen 2.5, the built-ins) all regions match: the spans are exactly the
//! contents and no template marker is protected. For templates that rewrite contents (e.g.
//! Qwen 3 / DeepSeek-R1 dropping earlier `<think>` blocks) only the regions around those
//! contents lose their markers' special meaning: the prompt is degraded there, never unsafe.
//! If W or O cannot be rendered, or W without markers is not R, there are no anchors and the
//! whole text is one region; if O cannot be rendered, the whole text is protected.
//!
//! Messages whose content is whitespace-only are passed unchanged in O; whitespace is not a
//! control token in any supported vocabulary.
//!
//! Roles are not protected; [`ChatTemplate::render`](crate::ChatTemplate::render) accepts only
//! roles made of ASCII letters, digits, `_` and `-`. Tool strings of that shape (function names
//! such as `get_weather`, JSON-schema words such as `object`) are not protected either.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Start(usize),
    End(usize),
    Opaque(usize),
}

/// The per-text contents for the W and O renders, and the markers used in them.
pub(crate) struct Plan {
    /// Texts for the W render, one per text.
    pub wrapped: Vec<String>,
    /// Texts for the O render, one per text.
    pub opaque: Vec<String>,
    markers: HashMap<char, Marker>,
    /// Per text: its leading and trailing whitespace.
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
    /// Draws markers for `texts` (the untrusted strings, in the order the context builder
    /// visits them) avoiding every private-use character in them and in `others` (the
    /// template, BOS/EOS, roles). `None` if there are not enough code points (over ~43,000
    /// texts).
    pub fn new(texts: &[&str], others: &[&str]) -> Option<Plan> {
        let used: HashSet<char> = texts
            .iter()
            .chain(others.iter())
            .flat_map(|s| s.chars())
            .filter(|&c| is_candidate(c))
            .collect();
        let mut free = candidates().filter(|c| !used.contains(c));
        let mut plan = Plan {
            wrapped: Vec::with_capacity(texts.len()),
            opaque: Vec::with_capacity(texts.len()),
            markers: HashMap::new(),
            edges: Vec::with_capacity(texts.len()),
        };
        for (i, text) in texts.iter().enumerate() {
            let (lead, core, trail) = split_edges(text);
            plan.edges.push((lead.to_string(), trail.to_string()));
            if core.is_empty() {
                plan.wrapped.push(text.to_string());
                plan.opaque.push(text.to_string());
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
        if text.is_empty() {
            return Vec::new();
        }
        let Some((o, stand_ins)) = opaque.and_then(|o| Some((o, self.stand_ins(o)?))) else {
            return std::iter::once(0..text.len()).collect();
        };
        let anchors = wrapped
            .and_then(|w| self.anchors(text, w))
            .unwrap_or_default();
        self.regions(text, o, &stand_ins, &anchors)
    }

    /// Strips the markers from W, checking that the result is R, and returns the intact pairs
    /// (`S_i` immediately followed, as the next marker, by `E_i`) as (message, span of R).
    /// `None` if W without markers is not R.
    fn anchors(&self, text: &str, w: &str) -> Option<Vec<(usize, Range<usize>)>> {
        let mut pos = 0usize;
        let mut last: Option<(Marker, usize)> = None;
        let mut pairs = Vec::new();
        for c in w.chars() {
            match self.markers.get(&c) {
                Some(&Marker::Opaque(_)) => return None,
                Some(&m) => {
                    if let (Marker::End(i), Some((Marker::Start(j), start))) = (m, last) {
                        if i == j {
                            pairs.push((i, start..pos));
                        }
                    }
                    last = Some((m, pos));
                }
                None => {
                    if !text[pos..].starts_with(c) {
                        return None;
                    }
                    pos += c.len_utf8();
                }
            }
        }
        (pos == text.len()).then_some(pairs)
    }

    /// The stand-ins of O: (message, byte range in O). `None` if O contains a start or end
    /// marker (the template made one up).
    fn stand_ins(&self, o: &str) -> Option<Vec<(usize, Range<usize>)>> {
        let mut found = Vec::new();
        for (at, c) in o.char_indices() {
            match self.markers.get(&c) {
                Some(Marker::Opaque(i)) => found.push((*i, at..at + c.len_utf8())),
                Some(_) => return None,
                None => {}
            }
        }
        Some(found)
    }

    /// Matches anchors to stand-ins of O (in order, by message), then compares R and O region by
    /// region between matched anchors.
    fn regions(
        &self,
        text: &str,
        o: &str,
        stand_ins: &[(usize, Range<usize>)],
        anchors: &[(usize, Range<usize>)],
    ) -> Vec<Range<usize>> {
        // Greedy in-order matching of anchors to stand-ins of the same message:
        // (message, span in R, stand-in range in O).
        let mut matched: Vec<(usize, Range<usize>, Range<usize>)> = Vec::new();
        let mut next = 0usize;
        for (msg, span) in anchors {
            if let Some(k) = (next..stand_ins.len()).find(|&k| stand_ins[k].0 == *msg) {
                matched.push((*msg, span.clone(), stand_ins[k].1.clone()));
                next = k + 1;
            }
        }
        let mut out: Vec<Range<usize>> = Vec::new();
        let (mut r_from, mut o_from) = (0usize, 0usize);
        let end = (usize::MAX, text.len()..text.len(), o.len()..o.len());
        for (msg, span, stand_in) in matched.iter().cloned().chain(std::iter::once(end)) {
            // Unmatched stand-ins inside an O region stay in it: they equal no character of R
            // that a content brought.
            if let Some(mid) = protect_middle(&text[r_from..span.start], &o[o_from..stand_in.start])
            {
                out.push(r_from + mid.start..r_from + mid.end);
            }
            if msg != usize::MAX {
                out.push(self.widen(text, msg, span.clone()));
            }
            r_from = span.end;
            o_from = stand_in.end;
        }
        // Widening may have made neighbours overlap: sort and merge.
        out.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(out.len());
        for r in out.into_iter().filter(|r| r.start < r.end) {
            match merged.last_mut() {
                Some(last) if r.start < last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        merged
    }

    /// Widens a content span over the message's own edge whitespace where R has it right there.
    fn widen(&self, text: &str, msg: usize, span: Range<usize>) -> Range<usize> {
        let (lead, trail) = &self.edges[msg];
        let mut r = span;
        if !lead.is_empty() && text[..r.start].ends_with(lead.as_str()) {
            r.start -= lead.len();
        }
        if !trail.is_empty() && text[r.end..].starts_with(trail.as_str()) {
            r.end += trail.len();
        }
        r
    }
}

/// The part of an R region to protect: `None` when it equals the O region; otherwise what lies
/// between their longest common prefix and longest common suffix (relative to `r`).
fn protect_middle(r: &str, o: &str) -> Option<Range<usize>> {
    if r == o {
        return None;
    }
    let prefix: usize = r
        .chars()
        .zip(o.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    let suffix: usize = r
        .chars()
        .rev()
        .zip(o.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    let suffix = suffix.min(r.len() - prefix);
    (prefix < r.len() - suffix).then(|| prefix..r.len() - suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges() {
        assert_eq!(split_edges("  a b \n"), ("  ", "a b", " \n"));
        assert_eq!(split_edges("   "), ("   ", "", ""));
        assert_eq!(split_edges(""), ("", "", ""));
    }

    #[test]
    fn markers_avoid_used_code_points() {
        let first = candidates().next().unwrap();
        let text = format!("x{first}y");
        let plan = Plan::new(&[&text], &[]).unwrap();
        assert!(!plan.markers.contains_key(&first));
    }

    #[test]
    fn conservative_prefix_suffix() {
        let plan = Plan::new(&["hi"], &[]).unwrap();
        let t = plan.opaque[0].clone();
        let o = format!("<a>{t}<b>");
        // No usable W: one region, protected between the common prefix and suffix.
        assert_eq!(plan.spans("<a>xyz<b>", None, Some(&o)), vec![3..6]);
        assert_eq!(plan.spans("<a>xyz<b>", None, None), vec![0..9]);
        assert_eq!(protect_middle("<a>x<b>", "<a><b>"), Some(3..4));
        assert_eq!(protect_middle("<a><b>", "<a><b>"), None);
        assert_eq!(protect_middle("aXa", "aa"), Some(1..2));
        assert_eq!(protect_middle("aa", "aXa"), None);
    }
}
