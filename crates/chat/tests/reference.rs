//! Acceptance tests: the renders of `testdata/reference/chat-templates.json` (Python Jinja2 as
//! transformers configures it) must be reproduced exactly, and content spans must cover every
//! message content while leaving the template's markers outside.

use chat::{ChatTemplate, Message, Rendered};
use serde_json::Value;

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/reference/chat-templates.json"
    );
    let text = std::fs::read_to_string(path).expect("read chat-templates.json");
    serde_json::from_str(&text).expect("parse chat-templates.json")
}

fn arch_of(model: &str) -> &'static str {
    match model {
        "smollm2" => "llama",
        "gemma3" => "gemma3",
        "qwen2.5-coder" => "qwen2",
        other => panic!("unknown reference model {other}"),
    }
}

fn template_of(model: &str, entry: &Value) -> ChatTemplate {
    ChatTemplate::for_model(
        entry["template"].as_str(),
        arch_of(model),
        entry["bos_token"].as_str().unwrap(),
        entry["eos_token"].as_str().unwrap(),
    )
    .unwrap_or_else(|e| panic!("{model}: {e}"))
}

fn messages_of(render: &Value) -> Vec<Message> {
    render["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

/// Every content's (trimmed) text lies inside one span, and the spans are well-formed.
fn assert_contents_in_spans(r: &Rendered, messages: &[Message]) {
    let mut prev_end = 0;
    for s in &r.content_spans {
        assert!(
            s.start < s.end && s.start >= prev_end && s.end <= r.text.len(),
            "{:?}",
            r.content_spans
        );
        assert!(r.text.is_char_boundary(s.start) && r.text.is_char_boundary(s.end));
        prev_end = s.end;
    }
    for m in messages {
        let core = m.content.trim();
        if core.is_empty() {
            continue;
        }
        assert!(
            r.content_spans
                .iter()
                .any(|s| r.text[s.clone()].contains(core)),
            "content {core:?} not inside a span of {:?}: {:?}",
            r.text,
            r.content_spans
        );
    }
}

/// No occurrence of `marker` written by the template (i.e. outside the contents) lies in a span.
fn assert_marker_outside(r: &Rendered, marker: &str) {
    for (at, _) in r.text.match_indices(marker) {
        let inside = r
            .content_spans
            .iter()
            .any(|s| at < s.end && s.start < at + marker.len());
        assert!(
            !inside,
            "template marker {marker:?} at {at} inside a span: {:?} {:?}",
            r.text, r.content_spans
        );
    }
}

#[test]
fn reference_renders_match_exactly() {
    let reference = reference();
    let mut checked = 0;
    for (model, entry) in reference.as_object().unwrap() {
        let tmpl = template_of(model, entry);
        assert_eq!(tmpl.is_builtin(), entry["template"].is_null(), "{model}");
        for render in entry["renders"].as_array().unwrap() {
            let messages = messages_of(render);
            let add = render["add_generation_prompt"].as_bool().unwrap();
            let r = tmpl
                .render(&messages, add)
                .unwrap_or_else(|e| panic!("{model}: {e}"));
            assert_eq!(r.text, render["rendered"].as_str().unwrap(), "{model}");
            assert_contents_in_spans(&r, &messages);
            for marker in [
                "<|im_start|>",
                "<|im_end|>",
                "<start_of_turn>",
                "<end_of_turn>",
            ] {
                assert_marker_outside(&r, marker);
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} reference renders");
}

#[test]
fn gemma3_builtin_format() {
    let reference = reference();
    let tmpl = template_of("gemma3", &reference["gemma3"]);
    let msgs = [
        Message::new("system", "  You are terse.\n"),
        Message::new("user", " Hi "),
        Message::new("assistant", "Hello!"),
        Message::new("user", "Name a prime."),
    ];
    let r = tmpl.render(&msgs, true).unwrap();
    assert_eq!(
        r.text,
        "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n\
         <start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\nName a prime.<end_of_turn>\n\
         <start_of_turn>model\n"
    );
    assert_contents_in_spans(&r, &msgs);
    assert_marker_outside(&r, "<start_of_turn>");
    assert_marker_outside(&r, "<end_of_turn>");
    let r = tmpl
        .render(&[Message::new("user", "Hello!")], false)
        .unwrap();
    assert_eq!(r.text, "<start_of_turn>user\nHello!<end_of_turn>\n");
}
