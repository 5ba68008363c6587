//! Uploaded documents for retrieval: from a file's bytes to text, to chunks to embed, and back
//! into the prompt as fenced passages.
//!
//! # Main types and functions
//!
//! * [`Kind`] — text, Markdown, HTML or PDF; [`kind_of`] tells it from the file name, the
//!   content type or the bytes themselves.
//! * [`Section`] — a stretch of text with where it is in the document (the heading path
//!   `"Install › Linux"`, or `"page 3"`); [`extract`] turns a file's bytes into sections.
//! * [`Chunk`] — about `target` tokens of one section; [`chunk`] cuts sections into
//!   overlapping chunks at paragraph, then sentence, then word boundaries.
//! * [`Passage`] — a retrieved chunk on its way into the prompt; [`fence`] writes the block of
//!   passages with fences their text cannot close, and [`DOCUMENT_RULES`] is the system-prompt
//!   sentence that goes with it.
//! * [`DocumentError`] — what can go wrong: an unsupported file, an unreadable or
//!   password-protected PDF, a document without text.
//!
//! ```
//! use documents::{chunk, extract, fence, kind_of, Kind, Passage};
//!
//! let bytes = b"# Install\n\n## Linux\n\nRun `./install.sh` as root.\n";
//! let kind = kind_of("guide.md", None, bytes).unwrap();
//! assert_eq!(kind, Kind::Markdown);
//! let sections = extract(kind, bytes).unwrap();
//! assert_eq!(sections[0].location, "Install › Linux");
//!
//! let words = |s: &str| s.split_whitespace().count();
//! let chunks = chunk(&sections, &words, 200, 40);
//! let block = fence(&[Passage { n: 1, document: "guide.md", location: &chunks[0].location, text: &chunks[0].text }]);
//! assert!(block.contains("[1] guide.md — Install › Linux"));
//! ```

mod chunking;
mod fencing;
mod html;
mod markdown;
mod pdf;

pub use chunking::{chunk, group_sections, Chunk};
pub use fencing::{fence, Passage, DOCUMENT_RULES};

use std::fmt;

/// The kinds of document that can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Text,
    Markdown,
    Html,
    Pdf,
}

impl Kind {
    /// The kind's name as the API spells it: `"text"`, `"markdown"`, `"html"` or `"pdf"`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Markdown => "markdown",
            Kind::Html => "html",
            Kind::Pdf => "pdf",
        }
    }

    fn from_extension(ext: &str) -> Option<Kind> {
        match ext.to_ascii_lowercase().as_str() {
            "txt" | "text" => Some(Kind::Text),
            "md" | "markdown" => Some(Kind::Markdown),
            "html" | "htm" => Some(Kind::Html),
            "pdf" => Some(Kind::Pdf),
            _ => None,
        }
    }

    fn from_content_type(content_type: &str) -> Option<Kind> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/plain" => Some(Kind::Text),
            "text/markdown" | "text/x-markdown" => Some(Kind::Markdown),
            "text/html" | "application/xhtml+xml" => Some(Kind::Html),
            "application/pdf" | "application/x-pdf" => Some(Kind::Pdf),
            _ => None,
        }
    }

    fn sniff(bytes: &[u8]) -> Option<Kind> {
        let start = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let start = &start[start.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
        if start.starts_with(b"%PDF-") {
            return Some(Kind::Pdf);
        }
        let lower = start[..start.len().min(14)].to_ascii_lowercase();
        if lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html") {
            return Some(Kind::Html);
        }
        // Text: valid UTF-8 without NUL bytes (UTF-16 and binary formats have them).
        if std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0) {
            return Some(Kind::Text);
        }
        None
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What can go wrong reading a document.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error(
        "cannot read {name:?}: {what}; upload plain text (.txt), Markdown (.md), HTML (.html) \
         or PDF (.pdf) instead (export other formats to one of these first)"
    )]
    Unsupported { name: String, what: String },
    #[error(
        "the PDF could not be read ({reason}); it may be damaged or not a PDF: open it in a \
         viewer and save or print it to a new PDF, then upload that"
    )]
    Pdf { reason: String },
    #[error(
        "the PDF is protected by a password; remove the protection (print or save it \
         without a password) and upload it again"
    )]
    Encrypted,
    #[error("the {kind} document has no text to index; {advice}", advice = no_text_advice(*.kind))]
    NoText { kind: Kind },
}

fn no_text_advice(kind: Kind) -> &'static str {
    match kind {
        Kind::Pdf => {
            "its pages may be scanned images without a text layer: run it through OCR (text \
             recognition) and upload the result"
        }
        _ => "the file is empty or only markup: check that it is the file you meant to upload",
    }
}

/// Which kind of document `bytes` is: from the file name's extension (`.txt`, `.text`, `.md`,
/// `.markdown`, `.html`, `.htm`, `.pdf`, in any case), else from the content type (its
/// parameters ignored), else by sniffing the bytes (`%PDF-` is a PDF, `<html` or
/// `<!doctype html` is HTML, valid UTF-8 is text). Anything else — a `.docx`, an image, other
/// binary data — is [`DocumentError::Unsupported`].
pub fn kind_of(
    name: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<Kind, DocumentError> {
    let file = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let extension = file
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .filter(|ext| !ext.is_empty());
    if let Some(kind) = extension.and_then(Kind::from_extension) {
        return Ok(kind);
    }
    if let Some(kind) = content_type.and_then(Kind::from_content_type) {
        return Ok(kind);
    }
    if let Some(kind) = Kind::sniff(bytes) {
        return Ok(kind);
    }
    let what = match extension {
        Some(ext) => format!(
            "a .{} file is not a kind this server can index",
            ext.to_ascii_lowercase()
        ),
        None => "its content is binary, not text, Markdown, HTML or PDF".to_string(),
    };
    Err(DocumentError::Unsupported {
        name: name.to_string(),
        what,
    })
}

/// A stretch of a document's text and where it is: the heading path joined with `" › "`
/// (`"Install › Linux"`; `""` before the first heading and in plain text) or `"page N"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub location: String,
    pub text: String,
}

/// The text of a document of `kind`, in sections with where they are.
///
/// * Markdown and HTML: one section per heading block, located by the heading path (a heading
///   itself is in the location, not the text; text before any heading is located at `""`).
///   Markdown keeps its markup; HTML drops `<script>`, `<style>`, `<nav>` and other
///   boilerplate, decodes character references and keeps paragraphs and list items as lines.
/// * Text: the paragraphs, separated by one blank line, located at `""`.
/// * PDF: one section per page with text, located `"page N"`, from the text layer only.
///
/// Invalid UTF-8 in the text kinds is replaced (U+FFFD), never an error. A document without
/// any text is [`DocumentError::NoText`]; a PDF that cannot be parsed is
/// [`DocumentError::Pdf`] or [`DocumentError::Encrypted`].
pub fn extract(kind: Kind, bytes: &[u8]) -> Result<Vec<Section>, DocumentError> {
    let sections = match kind {
        Kind::Text => {
            let text = paragraphs(&decode(bytes));
            vec![Section {
                location: String::new(),
                text,
            }]
        }
        Kind::Markdown => markdown::sections(&decode(bytes)),
        Kind::Html => html::sections(&decode(bytes)),
        Kind::Pdf => pdf::sections(bytes)?,
    };
    let sections: Vec<Section> = sections
        .into_iter()
        .filter(|s| !s.text.trim().is_empty())
        .collect();
    if sections.is_empty() {
        return Err(DocumentError::NoText { kind });
    }
    Ok(sections)
}

/// Bytes as text: invalid UTF-8 replaced, a byte-order mark dropped, line ends made `\n`.
fn decode(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Lines without trailing blanks, runs of blank lines made one, no blank lines at either end.
fn paragraphs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank = true;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names() {
        let names: Vec<_> = [Kind::Text, Kind::Markdown, Kind::Html, Kind::Pdf]
            .iter()
            .map(|k| k.name())
            .collect();
        assert_eq!(names, ["text", "markdown", "html", "pdf"]);
        assert_eq!(Kind::Pdf.to_string(), "pdf");
    }

    #[test]
    fn kind_from_extension_first() {
        assert_eq!(kind_of("a.TXT", None, b"").unwrap(), Kind::Text);
        assert_eq!(kind_of("notes.text", None, b"").unwrap(), Kind::Text);
        assert_eq!(
            kind_of("README.Md", Some("application/pdf"), b"%PDF-1.4").unwrap(),
            Kind::Markdown
        );
        assert_eq!(kind_of("x.markdown", None, b"").unwrap(), Kind::Markdown);
        assert_eq!(kind_of("dir/page.HTM", None, b"").unwrap(), Kind::Html);
        assert_eq!(kind_of("page.html", None, b"hello").unwrap(), Kind::Html);
        assert_eq!(
            kind_of("C:\\docs\\paper.PDF", None, b"").unwrap(),
            Kind::Pdf
        );
    }

    #[test]
    fn kind_from_content_type_then_sniffing() {
        assert_eq!(
            kind_of("upload", Some("text/markdown; charset=utf-8"), b"# hi").unwrap(),
            Kind::Markdown
        );
        assert_eq!(
            kind_of("upload", Some("Text/HTML"), b"hi").unwrap(),
            Kind::Html
        );
        assert_eq!(
            kind_of("upload", Some("application/pdf"), b"").unwrap(),
            Kind::Pdf
        );
        assert_eq!(
            kind_of("upload", Some("text/plain"), b"").unwrap(),
            Kind::Text
        );
        // An unknown content type falls through to the bytes.
        assert_eq!(
            kind_of("scan", Some("application/octet-stream"), b"%PDF-1.7\n").unwrap(),
            Kind::Pdf
        );
        assert_eq!(
            kind_of("page", None, b"\xEF\xBB\xBF  <!DOCTYPE HTML><p>x").unwrap(),
            Kind::Html
        );
        assert_eq!(
            kind_of("page", None, b"<html lang=en>").unwrap(),
            Kind::Html
        );
        assert_eq!(
            kind_of("data.csv", None, "a,b\n1,2 – ok\n".as_bytes()).unwrap(),
            Kind::Text
        );
        assert_eq!(kind_of("noext", None, b"").unwrap(), Kind::Text);
        assert_eq!(
            kind_of("notes", None, b"About the %PDF-1.7 header").unwrap(),
            Kind::Text
        );
    }

    #[test]
    fn unsupported_kinds_name_the_file_and_the_kinds() {
        let docx = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xdf\xa4\xd2";
        let err = kind_of("report.docx", Some("application/octet-stream"), docx).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DocumentError::Unsupported { .. }));
        assert!(
            msg.contains("\"report.docx\"") && msg.contains(".docx file"),
            "{msg}"
        );
        assert!(
            msg.contains(".txt")
                && msg.contains(".md")
                && msg.contains(".html")
                && msg.contains(".pdf"),
            "{msg}"
        );
        let err = kind_of("blob", None, &[0xff, 0xd8, 0xff, 0xe0, 0, 0x10]).unwrap_err();
        assert!(err.to_string().contains("binary"), "{err}");
        // UTF-16 text has NUL bytes: not taken for UTF-8 text.
        assert!(kind_of("u16", None, b"h\0i\0").is_err());
    }

    #[test]
    fn text_paragraphs_and_lossy_utf8() {
        let bytes =
            b"\xEF\xBB\xBFFirst line\r\nsame paragraph   \r\n\r\n\r\n\r\nSecond \xff paragraph\n\n";
        let sections = extract(Kind::Text, bytes).unwrap();
        assert_eq!(
            sections,
            [Section {
                location: String::new(),
                text: "First line\nsame paragraph\n\nSecond \u{FFFD} paragraph".into()
            }]
        );
    }

    #[test]
    fn empty_documents_have_no_text() {
        for kind in [Kind::Text, Kind::Markdown, Kind::Html] {
            let err = extract(kind, b" \n\n ").unwrap_err();
            assert!(
                matches!(err, DocumentError::NoText { kind: k } if k == kind),
                "{err}"
            );
        }
        let err = extract(Kind::Html, b"<html><script>var x = 1;</script></html>").unwrap_err();
        assert!(err.to_string().contains("no text"), "{err}");
    }
}
