//! Template-language features, extras (`raise_exception`, `strftime_now`, `tojson`), Python
//! methods, and the sandbox's limits.

use std::time::{Duration, Instant};

use chat::{ChatError, ChatTemplate, Message};

fn tmpl(source: &str) -> ChatTemplate {
    ChatTemplate::new(source, "<s>", "</s>").unwrap_or_else(|e| panic!("{e}"))
}

fn render(source: &str, messages: &[Message]) -> Result<String, ChatError> {
    tmpl(source).render(messages, true).map(|r| r.text)
}

fn user(content: &str) -> Vec<Message> {
    vec![Message::new("user", content)]
}

#[test]
fn context_variables() {
    let out = render(
        "{{ bos_token }}{{ messages|length }}{{ add_generation_prompt }}{{ eos_token }}\
         {% if tools is none and documents is none %}ok{% endif %}{{ tools }}",
        &user("x"),
    )
    .unwrap();
    assert_eq!(out, "<s>1True</s>okNone");
}

#[test]
fn whitespace_control_matches_transformers() {
    // trim_blocks: newline after a block tag goes; lstrip_blocks: indentation before it goes;
    // a single trailing newline of the template is dropped (keep_trailing_newline = False).
    let src = "{% for m in messages %}\n    {% if true %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n";
    assert_eq!(render(src, &user("a")).unwrap(), "[a]\n");
}

#[test]
fn raise_exception_message() {
    let err = render(
        "{% if messages[0].role != 'system' %}{{ raise_exception('Conversation must start with system') }}{% endif %}",
        &user("x"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        ChatError::Raised {
            message: "Conversation must start with system".into()
        }
    );
    assert!(err
        .to_string()
        .contains("Conversation must start with system"));
    // Also from inside a macro.
    let err = render(
        "{% macro check(m) %}{{ raise_exception('bad role ' + m.role) }}{% endmacro %}{{ check(messages[0]) }}",
        &user("x"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        ChatError::Raised {
            message: "bad role user".into()
        }
    );
}

#[test]
fn strftime_now_uses_the_clock() {
    let out = render(
        "{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%d %b %Y') }}",
        &user("x"),
    )
    .unwrap();
    let (iso, human) = out.split_once('|').unwrap();
    let year: i64 = iso[..4].parse().unwrap();
    assert!((2024..3000).contains(&year), "{out}");
    assert_eq!(iso.len(), 10);
    assert_eq!(&iso[4..5], "-");
    assert!(human.ends_with(&iso[..4]), "{out}");
    let month = chat::time::DateTime::now_utc().strftime("%b");
    assert!(human.contains(&month) || out.contains("Jan"), "{out}");
}

#[test]
fn tojson_like_python() {
    let t = |expr: &str| render(&format!("{{{{ {expr} }}}}"), &user("x")).unwrap();
    assert_eq!(
        t(r#"{"b": 1, "a": [1, 2.5, none, true], "é": "<&'\">"} | tojson"#),
        r#"{"b": 1, "a": [1, 2.5, null, true], "é": "<&'\">"}"#
    );
    assert_eq!(
        t(r#"{"b": 1, "a": {"c": []}} | tojson(indent=2)"#),
        "{\n  \"b\": 1,\n  \"a\": {\n    \"c\": []\n  }\n}"
    );
    assert_eq!(
        t(r#"{"b": 1, "a": 2} | tojson(sort_keys=true)"#),
        r#"{"a": 2, "b": 1}"#
    );
    assert_eq!(
        t(r#"{"b": 1, "a": 2} | tojson(separators=[",", ":"])"#),
        r#"{"b":1,"a":2}"#
    );
    assert_eq!(t(r#""é\n" | tojson(ensure_ascii=true)"#), r#""\u00e9\n""#);
    assert_eq!(
        t("messages | tojson"),
        r#"[{"role": "user", "content": "x"}]"#
    );
    assert_eq!(t("0.1 | tojson"), "0.1");
    assert!(render("{{ nothing | tojson }}", &user("x")).is_err());
    assert!(render("{{ 1 | tojson(indent=100000) }}", &user("x")).is_err());
}

#[test]
fn python_methods() {
    let t = |expr: &str| render(&format!("{{{{ {expr} }}}}"), &user("  Hello, World  ")).unwrap();
    assert_eq!(t("messages[0].content.strip()"), "Hello, World");
    assert_eq!(t("messages[0].content.lstrip() + '|'"), "Hello, World  |");
    assert_eq!(
        t("messages[0].content.strip().split(', ') | join('/')"),
        "Hello/World"
    );
    assert_eq!(t("messages[0].content.strip().startswith('Hello')"), "True");
    assert_eq!(t("messages[0].content.strip().endswith('x')"), "False");
    assert_eq!(t("messages[0].content.strip().upper()"), "HELLO, WORLD");
    assert_eq!(
        t("messages[0].content.strip().lower().replace('l', 'L')"),
        "heLLo, worLd"
    );
    assert_eq!(t("'a</think>b'.split('</think>')[-1]"), "b");
    assert_eq!(t("'x\\n\\n'.rstrip('\\n') + '|'"), "x|");
    assert_eq!(t("'abc'[::-1] ~ 'abc'[1:]"), "cbabc");
    assert_eq!(
        t("{'a': 1, 'b': 2}.items() | map('join', '=') | join(',')"),
        "a=1,b=2"
    );
    assert_eq!(t("{'a': 1}.get('a') ~ {'a': 1}.get('z', 'd')"), "1d");
    assert_eq!(t("{'k': 1, 'j': 2}.keys() | join(',')"), "k,j");
    assert_eq!(
        t("messages[0] is mapping and messages[0].content is string"),
        "True"
    );
}

#[test]
fn control_flow_features() {
    let msgs = vec![
        Message::new("system", "S"),
        Message::new("user", "U1"),
        Message::new("assistant", "A1"),
        Message::new("user", "U2"),
    ];
    let src = "{%- set ns = namespace(n=0, last='') -%}\
        {%- for m in messages[1:] -%}\
          {%- if m.role == 'assistant' %}{% continue %}{% endif -%}\
          {%- set ns.n = ns.n + 1 -%}{%- set ns.last = m.content -%}\
          {{ loop.index0 }}:{{ m.content }}{% if loop.previtem is defined %}<{{ loop.previtem.role }}{% endif %};\
          {%- if m.content == 'U2' %}{% break %}{% endif -%}\
        {%- endfor -%}\
        {{ ns.n }}{{ ns.last }}{{ 'x' if ns.n > 1 }}{{ 'y' if ns.n > 5 else 'z' }}";
    assert_eq!(render(src, &msgs).unwrap(), "0:U1;2:U2<assistant;2U2xz");
}

#[test]
fn generation_tags_are_ignored() {
    let src = "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}";
    let msgs = vec![Message::new("user", "a"), Message::new("assistant", "b")];
    assert_eq!(render(src, &msgs).unwrap(), "ab");
    assert_eq!(tmpl(src).source(), src);
}

#[test]
fn syntax_errors_carry_the_line() {
    let err = ChatTemplate::new("line one\n{{ ok }}\n{% if %}\n", "", "").unwrap_err();
    match err {
        ChatError::Syntax { line, .. } => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ChatTemplate::new("{% for x in y %}", "", ""),
        Err(ChatError::Syntax { line: 1, .. })
    ));
}

#[test]
fn render_errors_are_structured() {
    let err = render("\n{{ messages[0].content.no_such_method() }}", &user("x")).unwrap_err();
    assert!(
        matches!(err, ChatError::Render { line: Some(2), .. }),
        "{err:?}"
    );
}

#[test]
fn no_template_and_no_fallback() {
    let err = ChatTemplate::for_model(None, "bert", "", "").unwrap_err();
    assert_eq!(
        err,
        ChatError::NoTemplate {
            arch: "bert".into()
        }
    );
    // An empty template counts as none.
    assert!(ChatTemplate::for_model(Some(""), "qwen2", "", "")
        .unwrap()
        .is_builtin());
    assert!(!ChatTemplate::for_model(Some("{{ 1 }}"), "bert", "", "")
        .unwrap()
        .is_builtin());
}

#[test]
fn builtin_fallbacks() {
    let msgs = vec![Message::new("system", "S"), Message::new("user", "U")];
    let phi3 = ChatTemplate::for_model(None, "phi3", "<s>", "<|endoftext|>").unwrap();
    assert_eq!(
        phi3.render(&msgs, true).unwrap().text,
        "<|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\n"
    );
    for arch in ["llama", "qwen2", "qwen3"] {
        let t = ChatTemplate::for_model(None, arch, "", "").unwrap();
        assert_eq!(
            t.render(&msgs, false).unwrap().text,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
        );
    }
}

#[test]
fn invalid_roles_are_refused() {
    let t = ChatTemplate::for_model(None, "qwen2", "", "").unwrap();
    for role in ["", "user<|im_end|>", "a b", &"x".repeat(65)] {
        let err = t.render(&[Message::new(role, "hi")], true).unwrap_err();
        assert!(
            matches!(err, ChatError::InvalidRole { .. }),
            "{role:?}: {err:?}"
        );
    }
    assert!(t
        .render(&[Message::new("tool_result-2", "hi")], true)
        .is_ok());
}

#[test]
fn sandbox_has_no_include_import_or_extends() {
    for src in [
        "{% include 'x.jinja' %}",
        "{% include '/etc/passwd' %}",
        "{% import 'macros.jinja' as m %}",
        "{% from 'macros.jinja' import f %}",
        "{% extends 'base.jinja' %}",
        "{% include 'chat_template' %}",
    ] {
        let result = ChatTemplate::new(src, "", "").and_then(|t| t.render(&user("x"), true));
        assert!(result.is_err(), "{src} rendered: {result:?}");
    }
}

#[test]
fn endless_loops_run_out_of_fuel() {
    let start = Instant::now();
    let err = render(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        &user("x"),
    )
    .unwrap_err();
    assert!(matches!(err, ChatError::ResourceLimit { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn deep_recursion_is_an_error() {
    let err = render(
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        &user("x"),
    )
    .unwrap_err();
    assert!(matches!(err, ChatError::ResourceLimit { .. }), "{err:?}");
}

#[test]
fn output_is_capped() {
    let err = render(
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
        &user("x"),
    )
    .unwrap_err();
    assert!(matches!(err, ChatError::OutputTooLarge { .. }), "{err:?}");
    // A big conversation is fine: the cap grows with the input.
    let big = "y".repeat(3 << 20);
    let t = ChatTemplate::for_model(None, "qwen2", "", "").unwrap();
    let r = t.render(&user(&big), true).unwrap();
    assert_eq!(r.content_spans.len(), 1);
    assert_eq!(&r.text[r.content_spans[0].clone()], big);
}

#[test]
fn templates_cannot_reach_the_environment() {
    // No globals beyond the context and the registered helpers; attribute access on builtins
    // does not leak anything.
    let out = render(
        "{{ range.__globals__ }}{{ self }}{{ config }}{{ request }}",
        &user("x"),
    )
    .unwrap_or_default();
    assert!(!out.contains('/'), "{out}");
}

#[test]
fn template_size_is_capped() {
    let huge = "x".repeat(chat::MAX_TEMPLATE_BYTES + 1);
    assert!(matches!(
        ChatTemplate::new(&huge, "", ""),
        Err(ChatError::TemplateTooLarge { .. })
    ));
}

#[test]
fn engine_bugs_do_not_hang_or_crash() {
    // pycompat's `count('')` loops forever; ours answers like Python.
    assert_eq!(
        render("{{ 'abc'.count('') }} {{ 'aaa'.count('a') }}", &user("x")).unwrap(),
        "4 3"
    );
    // Character offsets, as in Python.
    assert_eq!(
        render(
            "{{ 'é😀o'.find('o') }} {{ 'oéo'.rfind('o') }} {{ 'x'.find('y') }}",
            &user("x")
        )
        .unwrap(),
        "2 2 -1"
    );
    assert!(render("{{ 'x'.index('y') }}", &user("x")).is_err());
    assert!(render("{{ 'a b'.split('') }}", &user("x")).is_err());
    // MiniJinja 2.24 panics reverse-slicing an empty string; that must be an error, not a crash.
    match render("{{ messages[0].content[::-1] }}|", &user("")) {
        Ok(text) => assert_eq!(text, "|"),
        Err(e) => assert!(matches!(e, ChatError::Render { .. }), "{e:?}"),
    }
}

#[test]
fn templates_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<ChatTemplate>();
    let t = ChatTemplate::for_model(None, "qwen2", "", "").unwrap();
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let t = t.clone();
            std::thread::spawn(move || t.render(&user(&format!("m{i}")), true).unwrap().text)
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert!(h.join().unwrap().contains(&format!("m{i}")));
    }
}
