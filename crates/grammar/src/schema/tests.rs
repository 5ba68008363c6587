use super::*;
use crate::Matcher;
use serde_json::json;
use std::sync::Arc;

fn grammar(schema: Value) -> Arc<Grammar> {
    Arc::new(Grammar::from_json_schema(&schema).unwrap_or_else(|e| panic!("{e}")))
}

fn complete(g: &Arc<Grammar>, text: &str) -> bool {
    let mut m = Matcher::new(g.clone());
    m.advance(text.as_bytes()).is_ok() && m.can_end()
}

/// A small validator for the keywords the tests use.
fn valid(s: &Value, v: &Value, root: &Value) -> bool {
    let Some(m) = s.as_object() else {
        return s != &Value::Bool(false);
    };
    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
        return valid(root.pointer(&r[1..]).unwrap(), v, root);
    }
    if let Some(t) = m.get("type") {
        let types: Vec<&str> = match t {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            t => vec![t.as_str().unwrap()],
        };
        if !types.iter().any(|t| type_matches(t, v)) {
            return false;
        }
    }
    if let Some(e) = m.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return false;
        }
    }
    if m.get("const").is_some_and(|c| c != v) {
        return false;
    }
    if let Some(a) = m.get("anyOf").and_then(Value::as_array) {
        if !a.iter().any(|s| valid(s, v, root)) {
            return false;
        }
    }
    if let Some(a) = m.get("oneOf").and_then(Value::as_array) {
        if a.iter().filter(|s| valid(s, v, root)).count() != 1 {
            return false;
        }
    }
    if let Some(a) = m.get("allOf").and_then(Value::as_array) {
        if !a.iter().all(|s| valid(s, v, root)) {
            return false;
        }
    }
    let num = |k: &str| m.get(k).and_then(Value::as_f64);
    if let Some(x) = v.as_f64() {
        if num("minimum").is_some_and(|b| x < b)
            || num("maximum").is_some_and(|b| x > b)
            || num("exclusiveMinimum").is_some_and(|b| x <= b)
            || num("exclusiveMaximum").is_some_and(|b| x >= b)
        {
            return false;
        }
    }
    if let Some(s) = v.as_str() {
        let n = s.chars().count() as f64;
        if num("minLength").is_some_and(|b| n < b) || num("maxLength").is_some_and(|b| n > b) {
            return false;
        }
    }
    if let Some(a) = v.as_array() {
        let n = a.len() as f64;
        if num("minItems").is_some_and(|b| n < b) || num("maxItems").is_some_and(|b| n > b) {
            return false;
        }
        let prefix = m
            .get("prefixItems")
            .and_then(Value::as_array)
            .map_or(&[][..], |p| p);
        for (i, x) in a.iter().enumerate() {
            let s = match prefix.get(i) {
                Some(s) => s,
                None => m.get("items").unwrap_or(&Value::Bool(true)),
            };
            if !valid(s, x, root) {
                return false;
            }
        }
    }
    if let Some(o) = v.as_object() {
        let props = m.get("properties").and_then(Value::as_object);
        for r in m
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !o.contains_key(r.as_str().unwrap()) {
                return false;
            }
        }
        for (k, x) in o {
            let s = match props.and_then(|p| p.get(k)) {
                Some(s) => s,
                None => m.get("additionalProperties").unwrap_or(&Value::Bool(true)),
            };
            if !valid(s, x, root) {
                return false;
            }
        }
    }
    true
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A random sentence of the grammar: random allowed bytes, ending when it may with growing
/// probability. Uses `accepts`, `advance`, `can_end` and `must_end` as a generation would.
fn random_sentence(g: &Arc<Grammar>, rng: &mut Rng) -> String {
    let mut m = Matcher::new(g.clone());
    let mut out = Vec::new();
    // Mostly ASCII, sometimes a multi-byte character's bytes.
    let pieces: Vec<Vec<u8>> = (0u8..128)
        .map(|b| vec![b])
        .chain(["é", "中", "😀"].iter().map(|s| s.as_bytes().to_vec()))
        .collect();
    for step in 0.. {
        if m.must_end() || (m.can_end() && rng.below(100) < 10 + step / 4) {
            break;
        }
        let ok: Vec<&Vec<u8>> = pieces.iter().filter(|p| m.accepts(p)).collect();
        assert!(
            !ok.is_empty(),
            "stuck after {:?}",
            String::from_utf8_lossy(&out)
        );
        // Prefer closing brackets and quotes as the text grows, so that sentences finish.
        let closing: Vec<&&Vec<u8>> = ok
            .iter()
            .filter(|p| matches!(p[..], [b'}'] | [b']'] | [b'"']))
            .collect();
        let pick = if !closing.is_empty() && rng.below(100) < step.min(90) {
            closing[rng.below(closing.len())]
        } else {
            ok[rng.below(ok.len())]
        };
        m.advance(pick).unwrap();
        out.extend_from_slice(pick);
        assert!(
            step < 20_000,
            "runaway: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    String::from_utf8(out).unwrap()
}

fn check_random(schema: Value, n: usize) {
    let g = grammar(schema.clone());
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..n {
        let s = random_sentence(&g, &mut rng);
        let v: Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert!(
            valid(&schema, &v, &schema),
            "{s} does not validate against {schema}"
        );
    }
}

#[test]
fn person_schema_accepts_valid_and_rejects_invalid() {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 5},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}
        },
        "required": ["name", "age"]
    });
    let g = grammar(schema);
    assert!(complete(&g, r#"{"name": "Ann", "age": 3}"#));
    assert!(complete(&g, r#"{"name":"Ann","age":-3,"tags":["a", "b"]}"#));
    assert!(complete(&g, "{\n  \"name\": \"A\\\"nn\",\n  \"age\": 0\n}"));
    for bad in [
        r#"{"age": 3, "name": "Ann"}"#,
        r#"{"name": "Annnnn", "age": 3}"#,
        r#"{"name": "Ann"}"#,
        r#"{"name": "Ann", "age": 3.5}"#,
        r#"{"name": "Ann", "age": 3, "tags": ["c"]}"#,
        r#"{"name": "Ann", "age": 3, "tags": ["a", "b", "a"]}"#,
        r#"{"name": "Ann", "age": 3, "x": 1}"#,
        r#"{"name": "Ann", "age": 03}"#,
    ] {
        assert!(!complete(&g, bad), "{bad}");
    }
}

#[test]
fn random_sentences_validate() {
    check_random(
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 8},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "score": {"type": "number", "minimum": -1, "exclusiveMaximum": 1},
                "kind": {"enum": ["cat", "dog", 3, null]},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 3},
                "ok": {"type": ["boolean", "null"]},
                "point": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string", "maxLength": 2}], "items": false},
                "c": {"const": {"a": [1, "x"]}}
            },
            "required": ["name", "kind"],
            "additionalProperties": false
        }),
        300,
    );
    // Nothing required, open objects.
    check_random(
        json!({
            "type": "object",
            "properties": {"a": {"type": "integer", "exclusiveMinimum": 5, "maximum": 12}, "b": {"type": "boolean"}},
            "additionalProperties": {"type": "integer", "minimum": -20, "maximum": -10}
        }),
        300,
    );
    check_random(
        json!({"anyOf": [{"type": "integer", "minimum": 1000, "maximum": 1234}, {"type": "string", "minLength": 2, "maxLength": 3}]}),
        200,
    );
    check_random(json!({"type": "number", "minimum": -3, "maximum": 2}), 300);
    check_random(
        json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}),
        200,
    );
    check_random(
        json!({"type": "integer", "minimum": -105, "maximum": -7}),
        200,
    );
    check_random(
        json!({"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 4}),
        100,
    );
}

#[test]
fn integer_ranges_are_exact() {
    for (lo, hi) in [
        (0, 9),
        (7, 123),
        (-105, -7),
        (-15, 20),
        (99, 101),
        (1000, 1999),
        (5, 5),
    ] {
        let g = grammar(json!({"type": "integer", "minimum": lo, "maximum": hi}));
        for x in lo - 30..=hi + 30 {
            assert_eq!(
                complete(&g, &x.to_string()),
                lo <= x && x <= hi,
                "{x} in {lo}..={hi}"
            );
        }
        assert!(!complete(&g, "-0") || lo <= 0 && 0 <= hi);
        assert!(!complete(&g, "007"));
    }
}

#[test]
fn number_bounds_are_exact() {
    let g = grammar(json!({"type": "number", "minimum": -2, "exclusiveMaximum": 3}));
    for (text, ok) in [
        ("-2", true),
        ("-2.0", true),
        ("-2.01", false),
        ("-1.99", true),
        ("-0.5", true),
        ("0", true),
        ("2.999", true),
        ("3", false),
        ("3.0", false),
        ("1e2", false),
        ("-3", false),
    ] {
        assert_eq!(complete(&g, text), ok, "{text}");
    }
    let g = grammar(json!({"type": "number", "exclusiveMinimum": 0}));
    assert!(
        !complete(&g, "0") && !complete(&g, "0.0") && complete(&g, "0.001") && !complete(&g, "-1")
    );
}

#[test]
fn refs_and_recursion() {
    let schema = json!({
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "v": {"type": "integer"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}
                },
                "required": ["v"]
            }
        },
        "$ref": "#/$defs/node"
    });
    let g = grammar(schema.clone());
    assert!(complete(
        &g,
        r#"{"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": [{"v": 4}]}]}"#
    ));
    assert!(!complete(&g, r#"{"v": 1, "kids": [{"w": 2}]}"#));
    check_random(schema, 100);
    let old = json!({"definitions": {"x": {"type": "boolean"}}, "type": "array", "items": {"$ref": "#/definitions/x"}});
    assert!(complete(&grammar(old), "[true, false]"));
    let bad = Grammar::from_json_schema(&json!({"$ref": "#/$defs/missing"})).unwrap_err();
    assert!(matches!(bad, GrammarError::Schema { .. }), "{bad}");
}

#[test]
fn all_of_merges_objects() {
    let schema = json!({
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"properties": {"b": {"type": "string", "maxLength": 2}}, "required": ["b"]}
        ]
    });
    let g = grammar(schema.clone());
    assert!(complete(&g, r#"{"a": 1, "b": "xy"}"#));
    assert!(!complete(&g, r#"{"a": 1}"#));
    check_random(schema, 50);
    let conflict = json!({"allOf": [{"type": "string"}, {"type": "integer"}]});
    assert!(Grammar::from_json_schema(&conflict).is_err());
    // A closed part keeps the other part's extra property out.
    let closed = json!({"allOf": [
        {"properties": {"a": {"type": "integer"}}, "additionalProperties": false},
        {"properties": {"b": {"type": "integer"}}, "required": ["b"]}
    ]});
    assert!(matches!(
        Grammar::from_json_schema(&closed),
        Err(GrammarError::Schema { .. })
    ));
}

#[test]
fn additional_keys_never_repeat_declared_ones() {
    let g = grammar(
        json!({"type": "object", "properties": {"ab": {"type": "integer"}}, "additionalProperties": {"type": "boolean"}}),
    );
    assert!(complete(
        &g,
        r#"{"ab": 1, "abc": true, "a": false, "b": true, "": true}"#
    ));
    assert!(!complete(&g, r#"{"ab": 1, "ab": true}"#));
    assert!(!complete(&g, r#"{"ab": true}"#));
}

#[test]
fn formats_and_patterns() {
    let g = grammar(json!({"type": "string", "format": "date-time"}));
    assert!(complete(&g, r#""2024-02-29T13:05:00Z""#));
    assert!(complete(&g, r#""2024-02-29T13:05:00.123+01:00""#));
    assert!(!complete(&g, r#""2024-13-01T00:00:00Z""#));
    let g = grammar(json!({"type": "string", "format": "uuid"}));
    assert!(complete(&g, r#""123e4567-e89b-12d3-a456-426614174000""#));
    let g = grammar(json!({"type": "string", "format": "email"}));
    assert!(complete(&g, r#""anything""#));

    let g = grammar(json!({"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}));
    assert!(
        complete(&g, r#""AB-123""#) && !complete(&g, r#""AB-12""#) && !complete(&g, r#""xAB-123""#)
    );
    // Unanchored: anything around the match.
    let g = grammar(json!({"type": "string", "pattern": "a(b|c)+"}));
    assert!(complete(&g, r#""xxabcby""#) && !complete(&g, r#""xxa""#));
    // Characters JSON must escape are escaped.
    let g = grammar(json!({"type": "string", "pattern": "^[\"\\\\\\n]x$"}));
    assert!(complete(&g, r#""\"x""#) && complete(&g, r#""\\x""#) && complete(&g, r#""\nx""#));
    assert!(!complete(&g, "\"\nx\""));
    let g = grammar(json!({"type": "string", "pattern": "^(?:[a-z]+\\.)?\\w{1,3}?\\S$"}));
    assert!(complete(&g, r#""abc.de!""#) && !complete(&g, r#""abc.de ""#));
    for p in ["(?=a)", "\\1", "a\\b", "\\p{L}", "a^b", "a{2}{3}"] {
        let e = Grammar::from_json_schema(&json!({"type": "string", "pattern": p})).unwrap_err();
        assert!(
            matches!(e, GrammarError::Unsupported { ref keyword, .. } if keyword == "pattern"),
            "{p}: {e}"
        );
    }
}

#[test]
fn unsupported_keywords_are_errors_with_their_path() {
    let e = Grammar::from_json_schema(&json!({
        "type": "object",
        "properties": {"tags": {"type": "array", "uniqueItems": true}}
    }))
    .unwrap_err();
    assert_eq!(
        e,
        GrammarError::Unsupported {
            keyword: "uniqueItems".into(),
            path: "#/properties/tags/uniqueItems".into(),
            reason: String::new()
        }
    );
    assert!(
        e.to_string().contains("#/properties/tags/uniqueItems"),
        "{e}"
    );
    for s in [
        json!({"not": {"type": "string"}}),
        json!({"type": "number", "multipleOf": 3}),
        json!({"type": "number", "minimum": 0.5}),
        json!({"type": "object", "patternProperties": {"^x": {}}}),
        json!({"type": "string", "pattern": "a", "maxLength": 3}),
        json!({"$ref": "#/$defs/a", "minimum": 3, "$defs": {"a": {"type": "integer"}}}),
        json!({"type": "object", "properties": {"a": {}}, "minProperties": 1}),
    ] {
        assert!(
            matches!(
                Grammar::from_json_schema(&s),
                Err(GrammarError::Unsupported { .. })
            ),
            "{s}"
        );
    }
    for s in [
        json!(false),
        json!({"type": "wat"}),
        json!({"type": "string", "minLength": 3, "maxLength": 2}),
        json!(3),
    ] {
        assert!(
            matches!(
                Grammar::from_json_schema(&s),
                Err(GrammarError::Schema { .. })
            ),
            "{s}"
        );
    }
}

#[test]
fn schema_grammar_round_trips_through_gbnf() {
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "n": {"type": "integer", "minimum": 1, "maximum": 31}},
        "required": ["name"]
    });
    let g = grammar(schema);
    let text = g.to_gbnf();
    let again = Arc::new(Grammar::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}")));
    for (t, ok) in [
        (r#"{"name": "x", "n": 31}"#, true),
        (r#"{"name": "x", "n": 32}"#, false),
        (r#"{"n": 1}"#, false),
    ] {
        assert_eq!(complete(&g, t), ok, "{t}");
        assert_eq!(complete(&again, t), ok, "{t}");
    }
}

#[test]
fn hostile_schemas_are_bounded() {
    let mut deep = json!({"type": "integer"});
    for _ in 0..200 {
        deep = json!({"type": "array", "items": deep});
    }
    assert!(matches!(
        Grammar::from_json_schema(&deep),
        Err(GrammarError::TooLarge { .. })
    ));
    let long = json!({"type": "string", "minLength": 1_000_000});
    assert!(matches!(
        Grammar::from_json_schema(&long),
        Err(GrammarError::TooLarge { .. })
    ));
    // A huge maxLength is kept to the repetition limit rather than refused.
    assert!(Grammar::from_json_schema(&json!({"type": "string", "maxLength": 1_000_000})).is_ok());
}
