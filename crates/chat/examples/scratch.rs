use chat::{ChatTemplate, Message};
fn main() {
    let u = vec![Message::new("user", "x")];
    for src in [
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% include 'chat_template' %}",
        "{% extends 'x' %}",
        "\n{{ messages[0].content.foo() }}",
        "{{ messages[0].content ~ 1 }}{{ x.y }}",
    ] {
        let t = std::time::Instant::now();
        let r = ChatTemplate::new(src, "", "").and_then(|t| t.render(&u, true));
        println!("{:?} {:?}", r.map(|r| r.text), t.elapsed());
    }
}
