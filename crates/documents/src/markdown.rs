//! Markdown: one section per heading block. The parser only finds the headings (ATX and
//! setext, never a `#` line inside a code block); the text between them is the source as
//! written.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::{paragraphs, Section};

/// A heading path: the open headings, outermost first, with their levels.
#[derive(Default)]
pub(crate) struct HeadingPath(Vec<(u8, String)>);

impl HeadingPath {
    /// A heading of `level` (1 to 6) closes the headings at its level and below it.
    pub(crate) fn enter(&mut self, level: u8, title: &str) {
        while self.0.last().is_some_and(|(l, _)| *l >= level) {
            self.0.pop();
        }
        self.0.push((level, collapse_spaces(title)));
    }

    pub(crate) fn location(&self) -> String {
        let titles: Vec<&str> = self
            .0
            .iter()
            .map(|(_, t)| t.as_str())
            .filter(|t| !t.is_empty())
            .collect();
        titles.join(" › ")
    }
}

pub(crate) fn collapse_spaces(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn sections(source: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut path = HeadingPath::default();
    // Where the current section's text starts, and the heading being read.
    let mut body_start = 0;
    let mut heading: Option<(u8, String)> = None;
    let parser = Parser::new_ext(
        source,
        Options::ENABLE_YAML_STYLE_METADATA_BLOCKS | Options::ENABLE_TABLES,
    );
    for (event, range) in parser.into_offset_iter() {
        match event {
            Event::Start(Tag::MetadataBlock(_)) => {
                push(&mut sections, &path, &source[body_start..range.start]);
                body_start = range.end;
            }
            Event::Start(Tag::Heading { level, .. }) => {
                push(&mut sections, &path, &source[body_start..range.start]);
                heading = Some((level as u8, String::new()));
                body_start = range.end;
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, title)) = heading.take() {
                    path.enter(level, &title);
                }
                body_start = range.end.max(body_start);
            }
            Event::Text(text) | Event::Code(text) | Event::InlineHtml(text) => {
                if let Some((_, title)) = heading.as_mut() {
                    title.push_str(&text);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some((_, title)) = heading.as_mut() {
                    title.push(' ');
                }
            }
            _ => {}
        }
    }
    push(
        &mut sections,
        &path,
        &source[body_start.min(source.len())..],
    );
    sections
}

fn push(sections: &mut Vec<Section>, path: &HeadingPath, text: &str) {
    let text = paragraphs(text);
    if !text.is_empty() {
        sections.push(Section {
            location: path.location(),
            text,
        });
    }
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
    fn heading_blocks_with_paths() {
        let source = "Intro text.\n\n# Install\n\nGet it.\n\n## Linux\n\nRun `./install.sh`.\n\n\
                      ### Fedora\nUse dnf.\n\n## macOS *(beta)*\n\n- brew install\n- done\n\n# Use\n\nStart it.\n";
        assert_eq!(
            located(source),
            [
                ("".into(), "Intro text.".into()),
                ("Install".into(), "Get it.".into()),
                ("Install › Linux".into(), "Run `./install.sh`.".into()),
                ("Install › Linux › Fedora".into(), "Use dnf.".into()),
                (
                    "Install › macOS (beta)".into(),
                    "- brew install\n- done".into()
                ),
                ("Use".into(), "Start it.".into()),
            ]
        );
    }

    #[test]
    fn setext_headings_code_blocks_and_front_matter() {
        let source = "---\ntitle: x\n---\n\nSetup\n=====\n\nStep one.\n\n```sh\n# not a heading\nmake\n```\n\n\
                      Details\n-------\nMore.\n";
        assert_eq!(
            located(source),
            [
                (
                    "Setup".into(),
                    "Step one.\n\n```sh\n# not a heading\nmake\n```".into()
                ),
                ("Setup › Details".into(), "More.".into()),
            ]
        );
    }

    #[test]
    fn skipped_levels_and_empty_headings() {
        let source = "### Deep\n\nA.\n\n# Top\n\n#\n\nB.\n\n## Sub\n";
        assert_eq!(
            located(source),
            [("Deep".into(), "A.".into()), ("".into(), "B.".into())]
        );
    }
}
