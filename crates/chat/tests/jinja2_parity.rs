//! Parity with Python Jinja2 as transformers configures it: `tests/data/jinja2-renders.json` holds
//! Jinja2's renders (made by `tests/data/gen_jinja2.py`) of the templates in
//! `tests/data/jinja2-templates.json` — written in the style of the Llama 3, Gemma, Qwen 3,
//! Mistral and Phi-3 templates, plus one exercising many language features — for several
//! conversations, including adversarial and empty contents.

use chat::{ChatError, ChatTemplate, Message};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

#[test]
fn renders_match_python_jinja2() {
    let templates = load("jinja2-templates.json");
    let renders = load("jinja2-renders.json");
    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, source) in templates.as_object().unwrap() {
        let tmpl = ChatTemplate::new(source.as_str().unwrap(), "<s>", "</s>")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for case in renders[name].as_array().unwrap() {
            let messages: Vec<Message> = case["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| Message::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
                .collect();
            let add = case["add_generation_prompt"].as_bool().unwrap();
            let got = tmpl.render(&messages, add);
            match (&got, case.get("rendered"), case.get("error")) {
                (Ok(r), Some(want), _) if r.text == want.as_str().unwrap() => {}
                (Err(ChatError::Raised { message }), _, Some(want))
                    if message == want.as_str().unwrap() => {}
                _ => failures.push(format!(
                    "{name} add={add} {messages:?}\n  got:  {:?}\n  want: {:?}",
                    got.map(|r| r.text),
                    case.get("rendered").or(case.get("error"))
                )),
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 90);
}
