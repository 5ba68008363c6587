//! PDF: the text layer, one section per page.
//!
//! lopdf parses the file (filters, cross-references, empty-password encryption) and decodes
//! strings through the fonts' encodings. The walk over each page's content stream is ours: it
//! follows the text position (`Td`, `TD`, `Tm`, `T*`) to tell a new line or a paragraph (a
//! larger vertical gap) from text further along the same line, and a wide gap inside a `TJ`
//! array from kerning. Text inside form XObjects and annotations is not read.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lopdf::content::{Content, Operation};
use lopdf::{Document, Encoding, Object, ObjectId};

use crate::{DocumentError, Section};

/// A `TJ` adjustment wider than this (thousandths of an em, negative moves right) is a space.
const TJ_SPACE: f32 = 150.0;

pub(crate) fn sections(bytes: &[u8]) -> Result<Vec<Section>, DocumentError> {
    // A hostile file may find a panic in the parser; that is a bad PDF, not a crashed server.
    catch_unwind(AssertUnwindSafe(|| read(bytes))).unwrap_or_else(|_| {
        Err(DocumentError::Pdf {
            reason: "the PDF parser failed on its structure".into(),
        })
    })
}

fn read(bytes: &[u8]) -> Result<Vec<Section>, DocumentError> {
    let doc = Document::load_mem(bytes).map_err(|e| match e {
        lopdf::Error::InvalidPassword => DocumentError::Encrypted,
        e => DocumentError::Pdf {
            reason: e.to_string(),
        },
    })?;
    // Files encrypted with an empty user password are decrypted on load; what is still
    // encrypted needs a password.
    if doc.is_encrypted() {
        return Err(DocumentError::Encrypted);
    }
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(DocumentError::Pdf {
            reason: "it has no pages".into(),
        });
    }
    Ok(pages
        .into_iter()
        .map(|(n, id)| Section {
            location: format!("page {n}"),
            text: page_text(&doc, id),
        })
        .collect())
}

/// The text of one page; a page whose content cannot be decoded has none.
fn page_text(doc: &Document, page: ObjectId) -> String {
    let encodings: BTreeMap<Vec<u8>, Encoding> = doc
        .get_page_fonts(page)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, font)| font.get_font_encoding(doc).ok().map(|e| (name, e)))
        .collect();
    let Some(content) = doc
        .get_page_content(page)
        .ok()
        .and_then(|data| Content::decode(&data).ok())
    else {
        return String::new();
    };
    let mut walk = TextWalk::new(&encodings);
    for op in &content.operations {
        walk.operation(op);
    }
    let lines: Vec<String> = walk
        .out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    crate::paragraphs(&lines.join("\n"))
}

struct TextWalk<'a> {
    encodings: &'a BTreeMap<Vec<u8>, Encoding<'a>>,
    encoding: Option<&'a Encoding<'a>>,
    out: String,
    /// The text line matrix `[a b c d e f]`, the leading and the font size.
    line: [f32; 6],
    leading: f32,
    size: f32,
    /// The vertical position and text height of the last text shown, and whether the position
    /// moved since.
    last: Option<(f32, f32)>,
    moved: bool,
}

impl<'a> TextWalk<'a> {
    fn new(encodings: &'a BTreeMap<Vec<u8>, Encoding<'a>>) -> Self {
        TextWalk {
            encodings,
            encoding: None,
            out: String::new(),
            line: IDENTITY,
            leading: 0.0,
            size: 1.0,
            last: None,
            moved: false,
        }
    }

    fn operation(&mut self, op: &'a Operation) {
        let num = |i: usize| {
            op.operands
                .get(i)
                .and_then(|o| o.as_float().ok())
                .unwrap_or(0.0)
        };
        match op.operator.as_str() {
            "BT" => self.set_line(IDENTITY),
            "Tf" => {
                self.encoding = op
                    .operands
                    .first()
                    .and_then(|o| o.as_name().ok())
                    .and_then(|n| self.encodings.get(n));
                self.size = num(1);
            }
            "TL" => self.leading = num(0),
            "Td" => self.translate(num(0), num(1)),
            "TD" => {
                self.leading = -num(1);
                self.translate(num(0), num(1));
            }
            "Tm" => self.set_line([num(0), num(1), num(2), num(3), num(4), num(5)]),
            "T*" => self.translate(0.0, -self.leading),
            "Tj" => self.show_operand(op.operands.first()),
            "'" => {
                self.translate(0.0, -self.leading);
                self.show_operand(op.operands.first());
            }
            "\"" => {
                self.translate(0.0, -self.leading);
                self.show_operand(op.operands.get(2));
            }
            "TJ" => {
                for item in op
                    .operands
                    .first()
                    .and_then(|o| o.as_array().ok())
                    .into_iter()
                    .flatten()
                {
                    match item {
                        Object::String(..) => self.show_operand(Some(item)),
                        Object::Integer(_) | Object::Real(_)
                            if item.as_float().unwrap_or(0.0) < -TJ_SPACE =>
                        {
                            self.space();
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn set_line(&mut self, matrix: [f32; 6]) {
        self.line = matrix;
        self.moved = true;
    }

    fn translate(&mut self, tx: f32, ty: f32) {
        let [a, b, c, d, e, f] = self.line;
        self.set_line([a, b, c, d, tx * a + ty * c + e, tx * b + ty * d + f]);
    }

    fn space(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with(char::is_whitespace) {
            self.out.push(' ');
        }
    }

    fn show_operand(&mut self, operand: Option<&Object>) {
        let Some(Object::String(bytes, _)) = operand else {
            return;
        };
        let text = match self.encoding {
            Some(encoding) => encoding.bytes_to_string(bytes).unwrap_or_default(),
            // No usable font: printable ASCII is still worth keeping.
            None if bytes.iter().all(|b| (0x20..0x7f).contains(b)) => {
                bytes.iter().map(|&b| b as char).collect()
            }
            None => String::new(),
        };
        let text: String = text
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .collect();
        if text.is_empty() {
            return;
        }
        if self.moved {
            self.moved = false;
            let y = self.line[5];
            let height = (self.size * self.line[3])
                .abs()
                .max(self.size * self.line[1].abs())
                .max(0.01);
            if let Some((last_y, last_height)) = self.last {
                let gap = (y - last_y).abs();
                let height = height.max(last_height);
                if gap < 0.3 * height {
                    self.space();
                } else if gap <= 1.6 * height {
                    self.out.push('\n');
                } else {
                    self.out.push_str("\n\n");
                }
            }
            self.last = Some((y, height));
        }
        self.out.push_str(&text);
    }
}

const IDENTITY: [f32; 6] = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::{dictionary, Stream};

    /// A PDF with one page per content stream, in Helvetica as `/F1`.
    fn pdf(pages: &[Vec<u8>]) -> Vec<u8> {
        save(document(pages))
    }

    fn save(mut doc: Document) -> Vec<u8> {
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    fn document(pages: &[Vec<u8>]) -> Document {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding",
        });
        let resources_id =
            doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
        let kids: Vec<Object> = pages
            .iter()
            .map(|content| {
                let content_id = doc.add_object(Stream::new(dictionary! {}, content.clone()));
                doc.add_object(dictionary! {
                    "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
                })
                .into()
            })
            .collect();
        let count = kids.len() as i64;
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources_id,
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog_id);
        doc
    }

    /// A page's content stream with lines at 14-point steps, a blank line leaving a wider gap.
    fn lines(lines: &[&str]) -> Vec<u8> {
        let mut content = String::from("BT /F1 12 Tf 14 TL 72 770 Td\n");
        for line in lines {
            if line.is_empty() {
                content.push_str("0 -14 Td\n");
            } else {
                content.push_str(&format!(
                    "({}) Tj T*\n",
                    line.replace('(', "\\(").replace(')', "\\)")
                ));
            }
        }
        content.push_str("ET\n");
        // Latin-1 bytes, as WinAnsiEncoding reads them.
        content.chars().map(|c| u8::try_from(c).unwrap()).collect()
    }

    #[test]
    fn pages_lines_and_paragraphs() {
        let bytes = pdf(&[
            lines(&[
                "Hearth runs models (locally).",
                "Second line of the paragraph.",
                "",
                "A new paragraph.",
            ]),
            lines(&["Page two says caf\u{e9}."]),
        ]);
        let sections = extract_pdf(&bytes);
        // The same with compressed (FlateDecode) content streams.
        let mut doc = Document::load_mem(&bytes).unwrap();
        doc.compress();
        assert_eq!(extract_pdf(&save(doc)), sections);
        assert_eq!(
            sections,
            [
                ("page 1".to_string(), "Hearth runs models (locally).\nSecond line of the paragraph.\n\nA new paragraph.".into()),
                ("page 2".to_string(), "Page two says caf\u{e9}.".into()),
            ]
        );
    }

    fn extract_pdf(bytes: &[u8]) -> Vec<(String, String)> {
        crate::extract(crate::Kind::Pdf, bytes)
            .unwrap()
            .into_iter()
            .map(|s| (s.location, s.text))
            .collect()
    }

    #[test]
    fn positioning_kerning_and_matrices() {
        // Words placed one by one on a line, a TJ with kerning and word gaps, text placed with
        // Tm at a scaled matrix (size 1 font), and the ' operator.
        let content = b"BT /F1 10 Tf 50 700 Td (Left) Tj 40 0 Td (right) Tj ET\n\
            BT /F1 10 Tf 50 688 Td [(Ke) 30 (rning) -20 (ok) -300 (spaced)] TJ ET\n\
            BT /F1 1 Tf 12 0 0 12 50 640 Tm (Scaled) Tj 12 0 0 12 50 626 Tm (next) Tj 1.2 TL (third) ' ET\n\
            0 0 m 100 100 l S\n";
        let bytes = pdf(&[content.to_vec()]);
        assert_eq!(
            extract_pdf(&bytes),
            [(
                "page 1".to_string(),
                "Left right\nKerningok spaced\n\nScaled\nnext\nthird".to_string()
            )]
        );
    }

    #[test]
    fn no_text_layer_is_no_text() {
        let drawing = b"q 0.5 g 10 10 200 300 re f Q\n0 0 m 595 842 l S\n".to_vec();
        let err = crate::extract(crate::Kind::Pdf, &pdf(&[drawing.clone(), drawing])).unwrap_err();
        assert!(
            matches!(
                err,
                DocumentError::NoText {
                    kind: crate::Kind::Pdf
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("scanned images"), "{err}");
    }

    #[test]
    fn encrypted_files() {
        let encrypted = |user_password: &str| {
            let mut doc = document(&[lines(&["Secret plans."])]);
            let id = Object::string_literal(b"0123456789abcdef".to_vec());
            doc.trailer.set("ID", vec![id.clone(), id]);
            let version = lopdf::EncryptionVersion::V2 {
                document: &doc,
                owner_password: "owner",
                user_password,
                key_length: 128,
                permissions: lopdf::Permissions::all(),
            };
            let state = lopdf::EncryptionState::try_from(version).unwrap();
            doc.encrypt(&state).unwrap();
            save(doc)
        };
        // Without a user password it opens for everyone; with one, it cannot be read.
        assert_eq!(
            extract_pdf(&encrypted("")),
            [("page 1".to_string(), "Secret plans.".to_string())]
        );
        let err = crate::extract(crate::Kind::Pdf, &encrypted("secret")).unwrap_err();
        assert!(matches!(err, DocumentError::Encrypted), "{err}");
        assert!(err.to_string().contains("password"), "{err}");
    }

    #[test]
    fn broken_files_are_pdf_errors() {
        for bytes in [
            &b"%PDF-1.4\nnot really a pdf"[..],
            b"",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer",
        ] {
            let err = crate::extract(crate::Kind::Pdf, bytes).unwrap_err();
            assert!(matches!(err, DocumentError::Pdf { .. }), "{err}");
            assert!(
                err.to_string().contains("save or print it to a new PDF"),
                "{err}"
            );
        }
    }

    /// About 20 MB of PDF: 470 pages of 500 lines each, uncompressed; then its chunks.
    #[test]
    #[ignore = "a timing: cargo test -p documents --release -- --ignored --nocapture"]
    fn large_pdf_extraction_time() {
        let line =
            "The quick brown fox jumps over the lazy dog while the server keeps serving chat 0123.";
        let page: Vec<&str> = (0..500)
            .map(|i| if i % 10 == 9 { "" } else { line })
            .collect();
        let pages: Vec<Vec<u8>> = (0..470).map(|_| lines(&page)).collect();
        let bytes = pdf(&pages);
        let started = std::time::Instant::now();
        let sections = crate::extract(crate::Kind::Pdf, &bytes).unwrap();
        let elapsed = started.elapsed();
        let chars: usize = sections.iter().map(|s| s.text.len()).sum();
        println!(
            "{:.1} MB, {} pages, {} MB of text in {:.2?}",
            bytes.len() as f64 / 1e6,
            sections.len(),
            chars / 1_000_000,
            elapsed
        );
        assert_eq!(sections.len(), 470);
        assert!(elapsed.as_secs() < 60);
        let started = std::time::Instant::now();
        let chunks = crate::chunk(&sections, &|s: &str| s.split_whitespace().count(), 256, 32);
        println!(
            "{} chunks of 256 words in {:.2?}",
            chunks.len(),
            started.elapsed()
        );
    }
}
