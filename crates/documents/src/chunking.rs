//! Cutting sections into overlapping chunks of about a target number of tokens.

use crate::Section;

/// About `target` tokens of one section's text, to embed and retrieve; `location` is the
/// section's and `tokens` is `count_tokens(text)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub location: String,
    pub text: String,
    pub tokens: usize,
}

/// How strong a boundary is, from a cut inside a word to a paragraph break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Gap {
    Cut,
    Word,
    Line,
    Sentence,
    Paragraph,
}

/// A word (or a hard-cut part of one) with the boundary before it and its tokens.
struct Piece {
    start: usize,
    end: usize,
    gap: Gap,
}

/// Chunks of about `target` tokens (counted by `count_tokens`), each overlapping the previous
/// one by about `overlap` tokens (at most half the target), cut at paragraph boundaries first,
/// then sentence boundaries, then line ends, then between words, and never across sections: a
/// chunk's location is its section's. A chunk ends at a stronger boundary when one leaves it
/// at least half full, and an overlap starts at one when it keeps at least half the overlap.
/// There are no empty chunks; a word longer than the target is cut hard.
///
/// Tokens are counted word by word (each with the whitespace before it) to place the cuts, so
/// a chunk's exact count may differ a little from the sum; `Chunk::tokens` is the exact count.
pub fn chunk(
    sections: &[Section],
    count_tokens: &dyn Fn(&str) -> usize,
    target: usize,
    overlap: usize,
) -> Vec<Chunk> {
    let target = target.max(1);
    let overlap = overlap.min(target / 2);
    let mut chunks = Vec::new();
    for section in sections {
        let text = section.text.as_str();
        let (pieces, sums) = pieces(text, count_tokens, target);
        for range in cuts(&pieces, &sums, target, overlap) {
            let text = &text[pieces[range.start].start..pieces[range.end - 1].end];
            chunks.push(Chunk {
                location: section.location.clone(),
                text: text.to_string(),
                tokens: count_tokens(text),
            });
        }
    }
    chunks
}

/// The words of `text` with the boundaries between them, and the running sums of their tokens
/// (`sums[i]` is the tokens of the first `i` pieces).
fn pieces(text: &str, count: &dyn Fn(&str) -> usize, target: usize) -> (Vec<Piece>, Vec<usize>) {
    let mut pieces = Vec::new();
    let mut sums = vec![0];
    let mut push = |piece: Piece, tokens: usize| {
        sums.push(sums.last().copied().unwrap_or(0) + tokens);
        pieces.push(piece);
    };
    let mut prev_end: Option<usize> = None;
    for (start, end) in words(text) {
        let gap = match prev_end {
            None => Gap::Paragraph,
            Some(prev) => {
                let between = &text[prev..start];
                if between.matches('\n').count() >= 2 {
                    Gap::Paragraph
                } else if ends_sentence(&text[..prev]) {
                    Gap::Sentence
                } else if between.contains('\n') {
                    Gap::Line
                } else {
                    Gap::Word
                }
            }
        };
        let tokens = count(&text[prev_end.unwrap_or(start)..end]);
        if tokens <= target {
            push(Piece { start, end, gap }, tokens);
        } else {
            let mut from = start;
            let mut gap = gap;
            while from < end {
                let to = hard_cut(text, from, end, count, target);
                push(
                    Piece {
                        start: from,
                        end: to,
                        gap,
                    },
                    count(&text[from..to]),
                );
                gap = Gap::Cut;
                from = to;
            }
        }
        prev_end = Some(end);
    }
    (pieces, sums)
}

/// The byte ranges of the whitespace-separated words of `text`.
fn words(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut rest = 0;
    std::iter::from_fn(move || {
        let start = rest + text[rest..].find(|c: char| !c.is_whitespace())?;
        let end = text[start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |i| start + i);
        rest = end;
        Some((start, end))
    })
}

fn ends_sentence(text: &str) -> bool {
    let text = text.trim_end_matches(['"', '\'', ')', ']', '”', '’', '*', '_']);
    text.ends_with(['.', '!', '?', '…', '。', '！', '？'])
}

/// Where to cut `text[from..end]` (one word): the longest prefix of at least one character
/// within `target` tokens.
fn hard_cut(
    text: &str,
    from: usize,
    end: usize,
    count: &dyn Fn(&str) -> usize,
    target: usize,
) -> usize {
    let next = |i: usize| i + text[i..].chars().next().map_or(1, char::len_utf8);
    let floor = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let fits = |to: usize| count(&text[from..to]) <= target;
    // `lo` is taken (one character at least), `hi` is too long: search between them.
    let mut lo = next(from);
    let mut hi = end;
    if fits(hi) {
        return hi;
    }
    while next(lo) < hi {
        let mid = floor(lo + (hi - lo) / 2).max(next(lo));
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The chunks as ranges of pieces.
fn cuts(
    pieces: &[Piece],
    sums: &[usize],
    target: usize,
    overlap: usize,
) -> Vec<std::ops::Range<usize>> {
    let n = pieces.len();
    // The furthest end from `start` within the target (one piece at least).
    let reach = |start: usize| {
        (sums.partition_point(|&s| s <= sums[start] + target) - 1)
            .max(start + 1)
            .min(n)
    };
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut prev_end = 0;
    while start < n {
        let max_end = reach(start);
        let end = if max_end == n {
            n
        } else {
            best_end(
                pieces,
                sums,
                start,
                prev_end.max(start) + 1,
                max_end,
                target,
            )
        };
        ranges.push(start..end);
        if end == n {
            break;
        }
        let mut next = overlap_start(pieces, sums, start, end, overlap);
        if reach(next) <= end {
            // The overlap and the next piece do not fit together: no overlap this time.
            next = end;
        }
        prev_end = end;
        start = next;
    }
    ranges
}

/// The end in `lowest..=max_end` at the strongest boundary that leaves the chunk at least
/// half full, the latest of those; else `max_end`.
fn best_end(
    pieces: &[Piece],
    sums: &[usize],
    start: usize,
    lowest: usize,
    max_end: usize,
    target: usize,
) -> usize {
    for level in [Gap::Paragraph, Gap::Sentence, Gap::Line] {
        for end in (lowest..=max_end).rev() {
            if sums[end] - sums[start] < target / 2 {
                break;
            }
            if pieces[end].gap >= level {
                return end;
            }
        }
    }
    max_end
}

/// Where the chunk after `start..end` starts: the earliest piece whose tail up to `end` is
/// within `overlap` tokens, moved later to the strongest boundary that keeps half of it.
fn overlap_start(
    pieces: &[Piece],
    sums: &[usize],
    start: usize,
    end: usize,
    overlap: usize,
) -> usize {
    if overlap == 0 {
        return end;
    }
    let earliest = sums
        .partition_point(|&s| s + overlap < sums[end])
        .clamp(start + 1, end);
    for level in [Gap::Paragraph, Gap::Sentence, Gap::Line] {
        for from in earliest..end {
            if sums[end] - sums[from] < overlap.div_ceil(2) {
                break;
            }
            if pieces[from].gap >= level {
                return from;
            }
        }
    }
    earliest
}

/// The sections with each one's own heading as its first line, and neighbours that fit in one
/// chunk of `target` tokens together joined under the headings they share (sections with no
/// heading in common stay apart): run before [`chunk`], a short section with many subheadings is
/// not cut into one-paragraph pieces that each lack the context a question names.
pub fn group_sections(
    sections: &[Section],
    count: &dyn Fn(&str) -> usize,
    target: usize,
) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for s in sections {
        let heading = s.location.rsplit(" › ").next().unwrap_or("");
        let text = match heading.is_empty() {
            true => s.text.clone(),
            false => format!("{heading}\n\n{}", s.text),
        };
        if let Some(last) = out.last_mut() {
            let shared = shared_headings(&last.location, &s.location);
            // Unrelated sections stay apart, so a citation can still say where it is.
            let related = !shared.is_empty() || (last.location.is_empty() && s.location.is_empty());
            let joined = format!("{}\n\n{text}", last.text);
            if related && count(&joined) <= target {
                last.text = joined;
                last.location = shared;
                continue;
            }
        }
        out.push(Section {
            location: s.location.clone(),
            text,
        });
    }
    out
}

/// The headings two locations share ("A › B" and "A › C" share "A").
fn shared_headings(a: &str, b: &str) -> String {
    a.split(" › ")
        .zip(b.split(" › "))
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect::<Vec<_>>()
        .join(" › ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn section(location: &str, text: &str) -> Section {
        Section {
            location: location.into(),
            text: text.into(),
        }
    }

    /// Numbered words `w0 w1 ...` in sentences of `per_sentence` words and paragraphs of
    /// `per_paragraph` sentences.
    fn numbered(count: usize, per_sentence: usize, per_paragraph: usize) -> String {
        let mut text = String::new();
        for i in 0..count {
            text.push_str(&format!("w{i}"));
            if i + 1 == count {
                break;
            }
            let sentence_end = per_sentence > 0 && (i + 1) % per_sentence == 0;
            if sentence_end {
                text.push('.');
            }
            let paragraph_end =
                sentence_end && per_paragraph > 0 && (i + 1) % (per_sentence * per_paragraph) == 0;
            text.push_str(if paragraph_end { "\n\n" } else { " " });
        }
        text
    }

    /// The word numbers a chunk covers.
    fn span(chunk: &Chunk) -> (usize, usize) {
        let num = |w: &str| {
            w.trim_start_matches('w')
                .trim_end_matches('.')
                .parse::<usize>()
                .unwrap()
        };
        let ws: Vec<&str> = chunk.text.split_whitespace().collect();
        (num(ws[0]), num(ws[ws.len() - 1]))
    }

    #[test]
    fn short_sections_are_one_chunk_each_with_their_location() {
        let sections = [
            section("Install", "  Run the installer.\n\nThen restart.  "),
            section("", "   \n\n "),
            section("Install › Linux", "Use apt."),
        ];
        let chunks = chunk(&sections, &words, 100, 20);
        assert_eq!(
            chunks,
            [
                Chunk {
                    location: "Install".into(),
                    text: "Run the installer.\n\nThen restart.".into(),
                    tokens: 5
                },
                Chunk {
                    location: "Install › Linux".into(),
                    text: "Use apt.".into(),
                    tokens: 2
                },
            ]
        );
        assert!(chunk(&[], &words, 100, 20).is_empty());
    }

    #[test]
    fn plain_words_cut_at_the_target_with_the_overlap() {
        let sections = [section("", &numbered(100, 0, 0))];
        let chunks = chunk(&sections, &words, 30, 5);
        let spans: Vec<_> = chunks.iter().map(span).collect();
        assert_eq!(spans, [(0, 29), (25, 54), (50, 79), (75, 99)]);
        assert!(chunks
            .iter()
            .all(|c| c.tokens == words(&c.text) && c.tokens <= 30));
    }

    #[test]
    fn paragraph_boundaries_come_first() {
        // Paragraphs of 30 words (3 sentences of 10): with a target of 50 each chunk is one
        // paragraph, not 50 words across two.
        let sections = [section("Doc", &numbered(120, 10, 3))];
        let chunks = chunk(&sections, &words, 50, 0);
        let spans: Vec<_> = chunks.iter().map(span).collect();
        assert_eq!(spans, [(0, 29), (30, 59), (60, 89), (90, 119)]);
        assert!(chunks
            .iter()
            .all(|c| !c.text.contains("\n\n") && c.text.ends_with(['.', '9'])));
    }

    #[test]
    fn then_sentence_boundaries_and_an_overlap_from_a_sentence_start() {
        // One paragraph of 8-word sentences; target 20, overlap 8.
        let sections = [section("", &numbered(64, 8, 0))];
        let chunks = chunk(&sections, &words, 20, 8);
        let spans: Vec<_> = chunks.iter().map(span).collect();
        assert_eq!(
            spans,
            [
                (0, 15),
                (8, 23),
                (16, 31),
                (24, 39),
                (32, 47),
                (40, 55),
                (48, 63)
            ]
        );
        for pair in chunks.windows(2) {
            assert!(pair[0].text.ends_with('.'), "{:?}", pair[0].text);
            // The next chunk starts with the previous one's last sentence.
            let first_sentence = pair[1].text.split_inclusive('.').next().unwrap();
            assert!(pair[0].text.ends_with(first_sentence), "{pair:?}");
        }
    }

    #[test]
    fn sizes_and_overlaps_stay_near_the_asked_ones() {
        let sections = [
            section("a", &numbered(1000, 7, 4)),
            section("b", &numbered(333, 0, 0)),
        ];
        let chunks = chunk(&sections, &words, 64, 16);
        for c in &chunks {
            assert!(c.tokens > 0 && c.tokens <= 64, "{c:?}");
        }
        for pair in chunks.windows(2).filter(|p| p[0].location == p[1].location) {
            assert!(pair[0].tokens >= 32, "{:?}", pair[0]);
            let ((a0, a1), (b0, b1)) = (span(&pair[0]), span(&pair[1]));
            assert!(b0 > a0 && b1 > a1, "{pair:?}");
            let shared = a1 + 1 - b0;
            assert!((8..=16).contains(&shared), "overlap {shared}: {pair:?}");
        }
        // Every word is in some chunk of its own section, and no chunk spans sections.
        let b: Vec<_> = chunks
            .iter()
            .filter(|c| c.location == "b")
            .map(span)
            .collect();
        assert_eq!((b[0].0, b[b.len() - 1].1), (0, 332));
        assert!(b.windows(2).all(|p| p[1].0 <= p[0].1 + 1));
    }

    #[test]
    fn line_ends_before_words() {
        let text = (0..12)
            .map(|i| format!("- item {i} has four"))
            .collect::<Vec<_>>()
            .join("\n");
        let chunks = chunk(&[section("", &text)], &words, 10, 0);
        assert!(
            chunks
                .iter()
                .all(|c| c.text.starts_with("- item") && c.text.ends_with("four")),
            "{chunks:?}"
        );
        assert_eq!(chunks.len(), 6);
    }

    #[test]
    fn long_words_are_cut_hard() {
        // A counter that sees every character as a token (as a real tokenizer sees base64).
        let chars = |s: &str| s.chars().filter(|c| !c.is_whitespace()).count();
        let text = format!("ab {} cd", "x".repeat(25));
        let chunks = chunk(&[section("", &text)], &chars, 10, 0);
        let texts: Vec<_> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["ab", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxx cd"]);
        let chunks = chunk(&[section("", "ééééééééééé abc")], &chars, 4, 0);
        let texts: Vec<_> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["éééé", "éééé", "ééé", "abc"]);
        assert!(chunks.iter().all(|c| c.tokens > 0 && c.tokens <= 4));
    }

    #[test]
    fn degenerate_targets_and_overlaps() {
        let sections = [section("", &numbered(10, 0, 0))];
        let one = chunk(&sections, &words, 0, 5);
        assert_eq!(one.len(), 10);
        let big_overlap = chunk(&sections, &words, 4, 100);
        assert!(big_overlap.iter().all(|c| c.tokens <= 4));
        assert_eq!(span(big_overlap.last().unwrap()).1, 9);
    }

    #[test]
    fn small_neighbour_sections_share_a_chunk_under_their_shared_headings() {
        let words = |t: &str| t.split_whitespace().count();
        let got = group_sections(
            &[
                section("Loaf", "A country loaf."),
                section("Loaf › Mixing", "Mix at 75% hydration."),
                section(
                    "Loaf › Baking",
                    "Bake at 240 degrees for forty minutes in all.",
                ),
                section("Kombucha", "Ferment at 24 degrees."),
            ],
            &words,
            16,
        );
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|s| (s.location.as_str(), s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Loaf",
                    "Loaf\n\nA country loaf.\n\nMixing\n\nMix at 75% hydration."
                ),
                (
                    "Loaf › Baking",
                    "Baking\n\nBake at 240 degrees for forty minutes in all."
                ),
                ("Kombucha", "Kombucha\n\nFerment at 24 degrees."),
            ]
        );
        assert_eq!(shared_headings("A › B", "A › C"), "A");
        assert_eq!(shared_headings("", "A"), "");
    }
}
