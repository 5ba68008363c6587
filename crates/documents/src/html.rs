//! HTML: the text a reader sees, one section per heading block.
//!
//! html5ever's tokenizer does the hard parts (character references, raw text in `<script>` and
//! `<style>`, comments); this walk over its tokens decides what is text. Boilerplate elements
//! are skipped with what is inside them, block elements become line and paragraph breaks,
//! list items become `- ` or `1. ` lines, and other whitespace collapses as a browser shows it.

use std::cell::RefCell;

use html5ever::tokenizer::{
    states::RawKind, BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer,
    TokenizerOpts,
};

use crate::markdown::{collapse_spaces, HeadingPath};
use crate::Section;

/// Elements skipped whole: scripts, styles, navigation and other page furniture.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "title", "nav", "aside", "svg", "math", "iframe",
    "object", "canvas", "select", "button",
];
/// Skipped too, except inside `<article>` or `<main>` (where they belong to the text).
const SKIPPED_OUTSIDE_ARTICLE: &[&str] = &["header", "footer"];
/// Elements that start and end a paragraph.
const PARAGRAPHS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "table",
    "ul",
    "ol",
    "dl",
    "figure",
    "address",
    "details",
    "form",
    "fieldset",
    "hr",
    "body",
    "header",
    "footer",
];
/// Elements that start and end a line.
const LINES: &[&str] = &[
    "li",
    "br",
    "tr",
    "dt",
    "dd",
    "summary",
    "figcaption",
    "caption",
    "option",
    "legend",
];

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Break {
    Space,
    Line,
    Paragraph,
}

#[derive(Default)]
struct Walk {
    sections: Vec<Section>,
    path: HeadingPath,
    text: String,
    pending: Option<Break>,
    /// The heading being read: its level and text.
    heading: Option<(u8, String)>,
    /// The element being skipped, and how deep inside nested ones of its name.
    skipping: Option<(String, usize)>,
    /// Depth inside `<pre>` (whitespace kept) and `<article>`/`<main>`.
    pre: usize,
    article: usize,
    /// Open lists: the next number of an `<ol>`, `None` for a `<ul>`.
    lists: Vec<Option<u32>>,
    /// A list item's marker, written before its first text.
    marker: Option<String>,
}

impl Walk {
    fn brk(&mut self, b: Break) {
        if let Some((_, title)) = self.heading.as_mut() {
            title.push(' ');
            return;
        }
        if self.text.is_empty() {
            return;
        }
        self.pending = Some(self.pending.map_or(b, |p| if b > p { b } else { p }));
    }

    fn write(&mut self, chars: &str) {
        if let Some((_, title)) = self.heading.as_mut() {
            title.push_str(chars);
            return;
        }
        if self.pre > 0 {
            self.flush_pending();
            self.text.push_str(chars);
            return;
        }
        let mut words = chars.split_whitespace().peekable();
        if chars.starts_with(char::is_whitespace) {
            self.brk(Break::Space);
        }
        while let Some(word) = words.next() {
            self.flush_pending();
            self.text.push_str(word);
            if words.peek().is_some() {
                self.pending = Some(Break::Space);
            }
        }
        if chars.ends_with(char::is_whitespace) && !chars.trim().is_empty() {
            self.brk(Break::Space);
        }
    }

    fn flush_pending(&mut self) {
        if let Some(b) = self.pending.take() {
            if !self.text.is_empty() {
                self.text.push_str(match b {
                    Break::Space => " ",
                    Break::Line => "\n",
                    Break::Paragraph => "\n\n",
                });
            }
        }
        if let Some(marker) = self.marker.take() {
            self.text.push_str(&marker);
        }
    }

    fn finish_section(&mut self) {
        let text = std::mem::take(&mut self.text);
        self.pending = None;
        self.marker = None;
        let text = text
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n");
        let text = crate::paragraphs(&text);
        if !text.is_empty() {
            self.sections.push(Section {
                location: self.path.location(),
                text,
            });
        }
    }

    fn tag(&mut self, tag: &Tag) -> TokenSinkResult<()> {
        let name: &str = &tag.name;
        let start = tag.kind == TagKind::StartTag;
        if let Some((skipped, depth)) = self.skipping.as_mut() {
            // An element left open ends with the body at the latest.
            if !start && matches!(name, "body" | "html") {
                self.skipping = None;
            } else if name == skipped.as_str() && !tag.self_closing {
                if start {
                    *depth += 1;
                } else if *depth == 0 {
                    self.skipping = None;
                } else {
                    *depth -= 1;
                }
            }
            return raw_kind(name, start);
        }
        let skipped = SKIPPED.contains(&name)
            || (self.article == 0 && SKIPPED_OUTSIDE_ARTICLE.contains(&name));
        if start && skipped && !tag.self_closing {
            let block = PARAGRAPHS.contains(&name) || matches!(name, "nav" | "aside");
            self.brk(if block {
                Break::Paragraph
            } else {
                Break::Space
            });
            self.skipping = Some((name.to_string(), 0));
            return raw_kind(name, start);
        }
        if let Some(level) = heading_level(name) {
            if start && self.heading.is_none() {
                self.finish_section();
                self.heading = Some((level, String::new()));
            } else if !start {
                if let Some((level, title)) = self.heading.take() {
                    self.path.enter(level, &collapse_spaces(&title));
                }
            }
            return TokenSinkResult::Continue;
        }
        match (name, start) {
            ("article" | "main", true) => self.article += 1,
            ("article" | "main", false) => self.article = self.article.saturating_sub(1),
            ("pre", true) => self.pre += 1,
            ("pre", false) => self.pre = self.pre.saturating_sub(1),
            ("ul", true) => self.lists.push(None),
            ("ol", true) => {
                let first = tag
                    .attrs
                    .iter()
                    .find(|a| &*a.name.local == "start")
                    .and_then(|a| a.value.trim().parse().ok());
                self.lists.push(Some(first.unwrap_or(1)));
            }
            ("ul" | "ol", false) => {
                self.lists.pop();
            }
            ("li", true) => {
                self.marker = Some(match self.lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("{}. ", *n - 1)
                    }
                    _ => "- ".to_string(),
                });
            }
            ("td" | "th", true) => self.brk(Break::Space),
            ("img", true) => {
                if let Some(alt) = tag.attrs.iter().find(|a| &*a.name.local == "alt") {
                    let alt = alt.value.to_string();
                    self.write(&alt);
                }
            }
            _ => {}
        }
        if PARAGRAPHS.contains(&name) {
            self.brk(Break::Paragraph);
        } else if LINES.contains(&name) {
            self.brk(Break::Line);
        }
        raw_kind(name, start)
    }
}

/// How the tokenizer reads what follows a start tag, as a browser's tree builder tells it.
fn raw_kind(name: &str, start: bool) -> TokenSinkResult<()> {
    if !start {
        return TokenSinkResult::Continue;
    }
    match name {
        "script" => TokenSinkResult::RawData(RawKind::ScriptData),
        "style" | "xmp" | "iframe" | "noembed" | "noframes" | "noscript" => {
            TokenSinkResult::RawData(RawKind::Rawtext)
        }
        "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
        "plaintext" => TokenSinkResult::Plaintext,
        _ => TokenSinkResult::Continue,
    }
}

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

struct Sink(RefCell<Walk>);

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut walk = self.0.borrow_mut();
        match token {
            Token::TagToken(tag) => walk.tag(&tag),
            Token::CharacterTokens(chars) if walk.skipping.is_none() => {
                walk.write(&chars);
                TokenSinkResult::Continue
            }
            _ => TokenSinkResult::Continue,
        }
    }
}

pub(crate) fn sections(source: &str) -> Vec<Section> {
    let tokenizer = Tokenizer::new(
        Sink(RefCell::new(Walk::default())),
        TokenizerOpts::default(),
    );
    let input = BufferQueue::default();
    input.push_back(source.into());
    // The sink never asks to stop for a script, so one feed reads everything.
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let mut walk = tokenizer.sink.0.take();
    if let Some((level, title)) = walk.heading.take() {
        walk.path.enter(level, &title);
    }
    walk.finish_section();
    walk.sections
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(source: &str) -> Vec<(String, String)> {
        sections(source)
            .into_iter()
            .map(|s| (s.location, s.text))
            .collect()
    }

    #[test]
    fn headings_paragraphs_lists_and_entities() {
        let html = r#"<!DOCTYPE html><html><head><title>Site &amp; more</title>
            <style>p { color: red }</style><script>if (a < b) { document.write("<h1>no</h1>") }</script></head>
            <body><nav><ul><li>Home</li><li>About</li></ul></nav>
            <header><h1>Banner</h1></header>
            <p>Before   any
               heading.</p>
            <main><h1>Install &amp; run</h1><p>Fish &amp; chips &copy; 2024&nbsp;&mdash; &#x263A; &lt;tag&gt;</p>
            <h2>Linux</h2><ol><li>Download<li>Run <b>install</b>.sh</ol>
            <ul><li>one</li><li>two<br>lines</li></ul><p>After<!-- a comment -->wards</p>
            <h2>Mac<span>OS</span> and<br>BSD</h2><pre>  keep
    indentation</pre><table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>
            <footer>Main's own footer</footer></main>
            <footer>Copyright junk</footer><aside>Ads</aside><button>Menu</button></body></html>"#;
        assert_eq!(
            located(html),
            [
                ("".into(), "Before any heading.".into()),
                (
                    "Install & run".into(),
                    "Fish & chips © 2024 — ☺ <tag>".into()
                ),
                (
                    "Install & run › Linux".into(),
                    "1. Download\n2. Run install.sh\n\n- one\n- two\nlines\n\nAfterwards".into()
                ),
                (
                    "Install & run › MacOS and BSD".into(),
                    "  keep\n    indentation\n\na b\nc d\n\nMain's own footer".into()
                ),
            ]
        );
    }

    #[test]
    fn unclosed_skipped_elements_and_nesting() {
        assert_eq!(
            located("<p>Keep<nav><nav>x</nav>still nav</nav>kept too<p>and <script>x</script>this"),
            [("".into(), "Keep\n\nkept too\n\nand this".into())]
        );
        assert_eq!(
            located("<h3>Only a heading</h3>"),
            Vec::<(String, String)>::new()
        );
    }
}
