//! JSON schema to grammar: [`Grammar::from_json_schema`].

use crate::ast::{Class, Expr, Rules};
use crate::json::{class, digit, fraction, hex, Json};
use crate::{regex, Grammar, GrammarError, MAX_REPEAT};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Schemas nested deeper than this (objects in arrays in objects...) are refused.
pub const MAX_SCHEMA_DEPTH: usize = 64;

/// Integers (and the whole parts of bounded numbers) have at most 16 digits, as in
/// [`Grammar::json`].
const MAX_MAGNITUDE: i64 = 9_999_999_999_999_999;

/// Keywords that only annotate: they never change which values are valid.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$comment",
    "default",
    "examples",
    "example",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$schema",
    "$id",
    "id",
    "$anchor",
    "$defs",
    "definitions",
    "$vocabulary",
    "contentMediaType",
    "contentEncoding",
    "nullable",
    "discriminator",
    "strict",
];

/// Validation keywords this converter cannot enforce.
const UNSUPPORTED: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependentRequired",
    "dependencies",
    "patternProperties",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
    "$dynamicRef",
    "$recursiveRef",
    "contentSchema",
];

const OBJECT_KEYS: &[&str] = &[
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
];
const ARRAY_KEYS: &[&str] = &[
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
];
const STRING_KEYS: &[&str] = &["minLength", "maxLength", "pattern", "format"];
const NUMBER_KEYS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];

impl Grammar {
    /// The grammar of the JSON values that validate against `schema` (JSON Schema, drafts 4 to
    /// 2020-12 in the parts listed here), written compactly with bounded whitespace as in
    /// [`Grammar::json`]:
    ///
    /// - `type` (one or a list): `object`, `array`, `string`, `number`, `integer`, `boolean`,
    ///   `null`; without `type` the type follows from the keywords present, else any value.
    /// - Objects: `properties` and `required` — the required properties first, in the order of
    ///   `required`, then the optional ones (each may be left out) in the order of
    ///   `properties` (serde_json's map order: alphabetical unless its `preserve_order`
    ///   feature is on); `additionalProperties`: absent or `false` with `properties` → only
    ///   the declared properties, `true` or a schema → other keys (never a declared one)
    ///   after them; `minProperties` / `maxProperties` where the declared properties decide
    ///   them.
    /// - Arrays: `items`, `prefixItems` (and the older `items: [...]` + `additionalItems`),
    ///   `minItems`, `maxItems`.
    /// - Strings: `minLength`, `maxLength`, `format` `date`, `time`, `date-time`, `uuid` (other
    ///   formats: any string), `pattern` (a regex subset, see below).
    /// - Numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` with whole-number
    ///   bounds, exactly (no exponent then); integers also take fractional bounds.
    ///   `multipleOf` only as 1 on integers. Integers have at most 16 digits, numbers at most
    ///   15 fraction digits and a 2-digit exponent.
    /// - `enum`, `const`, `anyOf`, `oneOf` (as `anyOf`: the alternatives should not
    ///   overlap), `allOf` (merged: properties joined, `required` united, bounds tightened;
    ///   conflicting values are an error), and a schema's own keywords next to `anyOf` /
    ///   `oneOf` apply to each alternative.
    /// - `$ref` to `#`, `#/$defs/...`, `#/definitions/...` or any JSON pointer into the schema;
    ///   recursive references become recursive rules.
    ///
    /// Patterns: literals, `.`, classes and `\d \w \s` (and negations), groups, alternation,
    /// `* + ? {n} {n,} {n,m}`, `^` / `$` at the ends; unanchored patterns allow any text around
    /// the match, as JSON schema says.
    ///
    /// Annotations (`title`, `description`, `default`, `examples`...) are ignored. Keywords
    /// that would change validity but cannot be enforced (`not`, `if`, `patternProperties`,
    /// `uniqueItems: true`, `contains`, fractional number bounds, `pattern` with lengths...)
    /// are [`GrammarError::Unsupported`], naming the keyword and its JSON-pointer path, so
    /// that no output is produced that would not validate.
    pub fn from_json_schema(schema: &Value) -> Result<Grammar, GrammarError> {
        let mut c = Converter {
            root: schema,
            rules: Rules::default(),
            json: None,
            refs: HashMap::new(),
            depth: 0,
        };
        let root = c.rules.id("root");
        let body = c.schema(schema, "#")?;
        c.rules.define(root, body);
        Grammar::compile(c.rules)
    }
}

struct Converter<'a> {
    root: &'a Value,
    rules: Rules,
    json: Option<Json>,
    /// `$ref` → its rule.
    refs: HashMap<String, usize>,
    depth: usize,
}

fn schema_err(path: &str, message: impl Into<String>) -> GrammarError {
    GrammarError::Schema {
        path: path.to_string(),
        message: message.into(),
    }
}

fn unsupported(keyword: &str, path: &str, reason: impl Into<String>) -> GrammarError {
    GrammarError::Unsupported {
        keyword: keyword.to_string(),
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// `path/key` with `~` and `/` escaped as JSON pointer wants.
fn join(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// A rule name from free text: letters, digits and `-`.
fn rule_name(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.truncate(40);
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "value".to_string()
    } else {
        s
    }
}

/// The literal text of a JSON value, compact.
fn literal(v: &Value) -> Expr {
    Expr::Lit(serde_json::to_string(v).unwrap_or_default())
}

fn ws_lit(s: &str) -> Expr {
    Expr::lit(s)
}

/// `value` as a count (a non-negative whole number).
fn count(v: &Value, keyword: &str, path: &str) -> Result<u64, GrammarError> {
    match v.as_u64() {
        Some(n) => Ok(n),
        None => match v.as_f64() {
            Some(f) if f >= 0.0 && f.fract() == 0.0 => Ok(f.min(u64::MAX as f64) as u64),
            _ => Err(schema_err(
                &join(path, keyword),
                format!("`{keyword}` must be a non-negative integer"),
            )),
        },
    }
}

/// A bound of a number range: the value and whether it is excluded.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bound {
    v: f64,
    exclusive: bool,
}

impl<'a> Converter<'a> {
    fn j(&mut self) -> Json {
        if let Some(j) = self.json {
            return j;
        }
        let j = Json::define(&mut self.rules);
        self.json = Some(j);
        j
    }

    fn ws(&mut self) -> Expr {
        Expr::Ref(self.j().ws)
    }

    fn any(&mut self) -> Expr {
        Expr::Ref(self.j().value)
    }

    /// A rule named after `hint` whose body is `body`.
    fn rule(&mut self, hint: &str, body: Expr) -> Expr {
        // A reference or a short literal needs no rule of its own.
        if matches!(body, Expr::Ref(_)) {
            return body;
        }
        let id = self.rules.fresh(&rule_name(hint));
        self.rules.define(id, body);
        Expr::Ref(id)
    }

    fn schema(&mut self, s: &Value, path: &str) -> Result<Expr, GrammarError> {
        self.depth += 1;
        if self.depth > MAX_SCHEMA_DEPTH {
            return Err(GrammarError::TooLarge {
                what: "nesting of the JSON schema",
                limit: MAX_SCHEMA_DEPTH,
                found: self.depth,
            });
        }
        let r = match s {
            Value::Bool(true) => Ok(self.any()),
            Value::Bool(false) => Err(schema_err(path, "the schema `false` allows no value")),
            Value::Object(map) => self.object_schema(map, path),
            _ => Err(schema_err(path, "a schema must be an object or a boolean")),
        };
        self.depth -= 1;
        r
    }

    /// Resolves `$ref` (a JSON pointer into the root schema).
    fn resolve(&self, r: &str, path: &str) -> Result<&'a Value, GrammarError> {
        let root: &'a Value = self.root;
        let Some(pointer) = r.strip_prefix('#') else {
            return Err(unsupported(
                "$ref",
                path,
                format!("`{r}` is not a reference into this schema (`#/...`)"),
            ));
        };
        let decoded = percent_decode(pointer);
        root.pointer(&decoded)
            .ok_or_else(|| schema_err(path, format!("`$ref` `{r}` does not resolve")))
    }

    fn reference(&mut self, r: &str, path: &str) -> Result<Expr, GrammarError> {
        if let Some(&id) = self.refs.get(r) {
            return Ok(Expr::Ref(id));
        }
        let target = self.resolve(r, path)?;
        let hint = r.rsplit('/').next().filter(|s| !s.is_empty() && *s != "#");
        let id = self.rules.fresh(&rule_name(hint.unwrap_or("root-ref")));
        self.refs.insert(r.to_string(), id);
        let body = self.schema(target, r)?;
        self.rules.define(id, body);
        Ok(Expr::Ref(id))
    }

    fn object_schema(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
    ) -> Result<Expr, GrammarError> {
        for k in UNSUPPORTED {
            if map.contains_key(*k) {
                return Err(unsupported(k, &join(path, k), ""));
            }
        }
        if let Some(r) = map.get("$ref") {
            let Some(r) = r.as_str() else {
                return Err(schema_err(&join(path, "$ref"), "`$ref` must be a string"));
            };
            if let Some(k) = map
                .keys()
                .find(|k| *k != "$ref" && !ANNOTATIONS.contains(&k.as_str()))
            {
                return Err(unsupported(
                    k,
                    &join(path, k),
                    "next to `$ref`: wrap both in `allOf`",
                ));
            }
            return self.reference(r, path);
        }
        if let Some(all) = map.get("allOf") {
            let Some(all) = all.as_array() else {
                return Err(schema_err(&join(path, "allOf"), "`allOf` must be an array"));
            };
            let mut parts = vec![map.clone()];
            parts[0].remove("allOf");
            for (i, s) in all.iter().enumerate() {
                let p = join(&join(path, "allOf"), &i.to_string());
                parts.push(self.flatten(s, &p, 0)?);
            }
            let merged = merge_all(&parts, path)?;
            return self.object_schema(&merged, path);
        }
        for key in ["anyOf", "oneOf"] {
            let Some(alts) = map.get(key) else {
                continue;
            };
            let Some(alts) = alts.as_array().filter(|a| !a.is_empty()) else {
                return Err(schema_err(
                    &join(path, key),
                    format!("`{key}` must be a non-empty array"),
                ));
            };
            let mut rest = map.clone();
            rest.remove(key);
            let constrained = rest.keys().any(|k| !ANNOTATIONS.contains(&k.as_str()));
            let mut out = Vec::new();
            for (i, s) in alts.iter().enumerate() {
                let p = join(&join(path, key), &i.to_string());
                if constrained {
                    // The schema's own keywords apply to every alternative.
                    let flat = self.flatten(s, &p, 0)?;
                    let merged = merge_all(&[rest.clone(), flat], &p)?;
                    out.push(self.object_schema(&merged, &p)?);
                } else {
                    out.push(self.schema(s, &p)?);
                }
            }
            return Ok(Expr::alt(out));
        }
        let types = self.types(map, path)?;
        if let Some(c) = map.get("const") {
            if !types.iter().any(|t| type_matches(t, c)) {
                return Err(schema_err(path, "`const` is not of the schema's `type`"));
            }
            return Ok(literal(c));
        }
        if let Some(e) = map.get("enum") {
            let Some(values) = e.as_array() else {
                return Err(schema_err(&join(path, "enum"), "`enum` must be an array"));
            };
            let alts: Vec<Expr> = values
                .iter()
                .filter(|v| types.iter().any(|t| type_matches(t, v)))
                .map(literal)
                .collect();
            if alts.is_empty() {
                return Err(schema_err(
                    &join(path, "enum"),
                    "no value of `enum` has the schema's `type`",
                ));
            }
            return Ok(Expr::alt(alts));
        }
        let mut alts = Vec::new();
        for t in &types {
            alts.push(match t.as_str() {
                "null" => Expr::lit("null"),
                "boolean" => Expr::alt(vec![Expr::lit("true"), Expr::lit("false")]),
                "string" => self.string(map, path)?,
                "integer" => self.number(map, path, true)?,
                "number" => self.number(map, path, false)?,
                "object" => self.object(map, path)?,
                "array" => self.array(map, path)?,
                "any" => self.any(),
                other => {
                    return Err(schema_err(
                        &join(path, "type"),
                        format!("unknown type `{other}`"),
                    ))
                }
            });
        }
        Ok(Expr::alt(alts))
    }

    /// The schema at `s` as a keyword map, its `$ref`s and `allOf`s merged in (for `allOf` and
    /// the alternatives of a constrained `anyOf`).
    fn flatten(
        &self,
        s: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Map<String, Value>, GrammarError> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(unsupported(
                "$ref",
                path,
                "a recursive reference inside `allOf` or next to `anyOf`",
            ));
        }
        match s {
            Value::Bool(true) => Ok(Map::new()),
            Value::Bool(false) => Err(schema_err(path, "the schema `false` allows no value")),
            Value::Object(map) => {
                let mut map = map.clone();
                let mut parts = Vec::new();
                if let Some(r) = map.remove("$ref") {
                    let r = r
                        .as_str()
                        .ok_or_else(|| schema_err(path, "`$ref` must be a string"))?;
                    parts.push(self.flatten(self.resolve(r, path)?, r, depth + 1)?);
                }
                if let Some(all) = map.remove("allOf") {
                    let all = all
                        .as_array()
                        .ok_or_else(|| schema_err(path, "`allOf` must be an array"))?
                        .clone();
                    for (i, s) in all.iter().enumerate() {
                        let p = join(&join(path, "allOf"), &i.to_string());
                        parts.push(self.flatten(s, &p, depth + 1)?);
                    }
                }
                if parts.is_empty() {
                    return Ok(map);
                }
                parts.insert(0, map);
                merge_all(&parts, path)
            }
            _ => Err(schema_err(path, "a schema must be an object or a boolean")),
        }
    }

    /// The types the schema allows: its `type`, else those its keywords imply, else all.
    fn types(&self, map: &Map<String, Value>, path: &str) -> Result<Vec<String>, GrammarError> {
        let all = ["object", "array", "string", "number", "boolean", "null"];
        if let Some(t) = map.get("type") {
            let list: Vec<String> = match t {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        schema_err(&join(path, "type"), "`type` lists must hold strings")
                    })?,
                _ => {
                    return Err(schema_err(
                        &join(path, "type"),
                        "`type` must be a string or a list",
                    ))
                }
            };
            if list.is_empty() {
                return Err(schema_err(&join(path, "type"), "`type` is an empty list"));
            }
            // `number` covers `integer`.
            let has_number = list.iter().any(|t| t == "number");
            let mut out: Vec<String> = Vec::new();
            for t in list {
                if (t != "integer" || !has_number) && !out.contains(&t) {
                    out.push(t);
                }
            }
            return Ok(out);
        }
        if map.contains_key("const") || map.contains_key("enum") {
            return Ok(all.iter().map(|s| s.to_string()).collect());
        }
        let implied: Vec<String> = [
            ("object", OBJECT_KEYS),
            ("array", ARRAY_KEYS),
            ("string", STRING_KEYS),
            ("number", NUMBER_KEYS),
        ]
        .iter()
        .filter(|(_, keys)| keys.iter().any(|k| map.contains_key(*k)))
        .map(|(t, _)| t.to_string())
        .collect();
        if implied.is_empty() {
            return Ok(vec!["any".to_string()]);
        }
        Ok(implied)
    }

    fn string(&mut self, map: &Map<String, Value>, path: &str) -> Result<Expr, GrammarError> {
        let min = map
            .get("minLength")
            .map(|v| count(v, "minLength", path))
            .transpose()?;
        let max = map
            .get("maxLength")
            .map(|v| count(v, "maxLength", path))
            .transpose()?;
        let q = || Expr::lit("\"");
        if let (Some(a), Some(b)) = (min, max) {
            if a > b {
                return Err(schema_err(path, format!("minLength {a} > maxLength {b}")));
            }
        }
        if let Some(p) = map.get("pattern") {
            let Some(p) = p.as_str() else {
                return Err(schema_err(
                    &join(path, "pattern"),
                    "`pattern` must be a string",
                ));
            };
            if min.is_some() || max.is_some() {
                let k = if min.is_some() {
                    "minLength"
                } else {
                    "maxLength"
                };
                return Err(unsupported(
                    k,
                    &join(path, k),
                    "together with `pattern`; put the length in the pattern",
                ));
            }
            let body = regex::pattern(p)
                .map_err(|reason| unsupported("pattern", &join(path, "pattern"), reason))?;
            return Ok(Expr::seq(vec![q(), body, q()]));
        }
        let format = map.get("format").and_then(Value::as_str);
        if let Some(f) = format.and_then(format_body) {
            if min.is_some() || max.is_some() {
                let k = if min.is_some() {
                    "minLength"
                } else {
                    "maxLength"
                };
                return Err(unsupported(k, &join(path, k), "together with `format`"));
            }
            return Ok(Expr::seq(vec![q(), f, q()]));
        }
        if min.is_none() && max.is_none() {
            return Ok(Expr::Ref(self.j().string));
        }
        let min = min.unwrap_or(0);
        if min > MAX_REPEAT as u64 {
            return Err(GrammarError::TooLarge {
                what: "minLength",
                limit: MAX_REPEAT as usize,
                found: min as usize,
            });
        }
        // A longer maximum is kept to the repetition limit: still valid, only shorter.
        let max = max.map(|m| m.min(MAX_REPEAT as u64) as u32);
        let ch = Expr::Ref(self.j().char_);
        Ok(Expr::seq(vec![q(), Expr::repeat(ch, min as u32, max), q()]))
    }

    fn bound(
        &self,
        map: &Map<String, Value>,
        path: &str,
        lower: bool,
    ) -> Result<Option<Bound>, GrammarError> {
        let (key, ex_key) = if lower {
            ("minimum", "exclusiveMinimum")
        } else {
            ("maximum", "exclusiveMaximum")
        };
        let num = |k: &str, v: &Value| {
            v.as_f64()
                .ok_or_else(|| schema_err(&join(path, k), format!("`{k}` must be a number")))
        };
        let mut b = map
            .get(key)
            .map(|v| num(key, v))
            .transpose()?
            .map(|v| Bound {
                v,
                exclusive: false,
            });
        match map.get(ex_key) {
            // Draft 4: a flag on `minimum` / `maximum`.
            Some(Value::Bool(flag)) => {
                if let Some(b) = &mut b {
                    b.exclusive = *flag;
                }
            }
            Some(v) => {
                let e = Bound {
                    v: num(ex_key, v)?,
                    exclusive: true,
                };
                b = Some(match b {
                    None => e,
                    // The tighter of the two.
                    Some(b) if (lower && e.v >= b.v) || (!lower && e.v <= b.v) => e,
                    Some(b) => b,
                });
            }
            None => {}
        }
        Ok(b)
    }

    fn number(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        integer: bool,
    ) -> Result<Expr, GrammarError> {
        if let Some(m) = map.get("multipleOf") {
            let one = m.as_f64() == Some(1.0);
            if !(integer && one) {
                return Err(unsupported("multipleOf", &join(path, "multipleOf"), ""));
            }
        }
        let lo = self.bound(map, path, true)?;
        let hi = self.bound(map, path, false)?;
        if integer {
            let lo = lo.map(|b| {
                let v = if b.exclusive {
                    b.v.floor() + 1.0
                } else {
                    b.v.ceil()
                };
                v.clamp(-1e18, 1e18) as i64
            });
            let hi = hi.map(|b| {
                let v = if b.exclusive {
                    b.v.ceil() - 1.0
                } else {
                    b.v.floor()
                };
                v.clamp(-1e18, 1e18) as i64
            });
            if lo.is_none() && hi.is_none() {
                return Ok(Expr::Ref(self.j().integer));
            }
            return integer_range(lo, hi).ok_or_else(|| {
                schema_err(path, "no integer of at most 16 digits is within the bounds")
            });
        }
        if lo.is_none() && hi.is_none() {
            return Ok(Expr::Ref(self.j().number));
        }
        for (b, key) in [(lo, "minimum"), (hi, "maximum")] {
            if let Some(b) = b {
                if b.v.fract() != 0.0 || b.v.abs() > MAX_MAGNITUDE as f64 {
                    return Err(unsupported(
                        key,
                        &join(path, key),
                        "a number bound that is not a whole number of at most 16 digits",
                    ));
                }
            }
        }
        let ib = |b: Option<Bound>| b.map(|b| (b.v as i64, b.exclusive));
        number_range(ib(lo), ib(hi))
            .ok_or_else(|| schema_err(path, "no number is within the bounds"))
    }

    fn object(&mut self, map: &Map<String, Value>, path: &str) -> Result<Expr, GrammarError> {
        let empty = Map::new();
        let props = match map.get("properties") {
            None => &empty,
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err(schema_err(
                    &join(path, "properties"),
                    "`properties` must be an object",
                ))
            }
        };
        let mut required: Vec<&str> = Vec::new();
        if let Some(r) = map.get("required") {
            let list = r
                .as_array()
                .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
                .ok_or_else(|| {
                    schema_err(
                        &join(path, "required"),
                        "`required` must be a list of strings",
                    )
                })?;
            for name in list {
                if !required.contains(&name) {
                    required.push(name);
                }
            }
        }
        // Other keys: allowed when `additionalProperties` is true or a schema, or absent
        // without `properties`.
        let additional: Option<Value> = match map.get("additionalProperties") {
            Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(Value::Bool(true)),
            Some(s @ Value::Object(_)) => Some(s.clone()),
            Some(_) => {
                return Err(schema_err(
                    &join(path, "additionalProperties"),
                    "`additionalProperties` must be a boolean or a schema",
                ))
            }
            None if map.contains_key("properties") => None,
            None => Some(Value::Bool(true)),
        };
        let ws = self.ws();
        // One member: `"key" ws ":" ws value ws`.
        let member = |key: Expr, value: Expr| {
            Expr::seq(vec![
                key,
                ws.clone(),
                ws_lit(":"),
                ws.clone(),
                value,
                ws.clone(),
            ])
        };
        let mut fixed: Vec<(bool, Expr)> = Vec::new();
        for &name in &required {
            let p = join(&join(path, "properties"), name);
            let value = match props.get(name) {
                Some(s) => {
                    let e = self.schema(s, &p)?;
                    self.rule(&format!("{name}-value"), e)
                }
                None => match &additional {
                    Some(s) => self.schema(s, &join(path, "additionalProperties"))?,
                    None => {
                        return Err(schema_err(
                            &join(path, "required"),
                            format!("`{name}` is required but not allowed (not in `properties`, and no `additionalProperties`)"),
                        ))
                    }
                },
            };
            let key = Expr::lit(&serde_json::to_string(name).unwrap_or_default());
            fixed.push((true, member(key, value)));
        }
        for (name, s) in props {
            if required.contains(&name.as_str()) {
                continue;
            }
            let p = join(&join(path, "properties"), name);
            let e = self.schema(s, &p)?;
            let value = self.rule(&format!("{name}-value"), e);
            let key = Expr::lit(&serde_json::to_string(name).unwrap_or_default());
            fixed.push((false, member(key, value)));
        }
        let n_req = required.len() as u64;
        let n_all = fixed.len() as u64;
        let min_props = map
            .get("minProperties")
            .map(|v| count(v, "minProperties", path))
            .transpose()?;
        let max_props = map
            .get("maxProperties")
            .map(|v| count(v, "maxProperties", path))
            .transpose()?;
        if let Some(m) = max_props {
            if m < n_req {
                return Err(schema_err(
                    path,
                    format!("maxProperties {m} < the {n_req} required properties"),
                ));
            }
            if m < n_all {
                return Err(unsupported(
                    "maxProperties",
                    &join(path, "maxProperties"),
                    "fewer than the declared properties",
                ));
            }
        }
        if let Some(m) = min_props {
            if m > n_req {
                return Err(unsupported(
                    "minProperties",
                    &join(path, "minProperties"),
                    "more than the required properties; make them required instead",
                ));
            }
        }
        // Other members, never with a declared key.
        let extra = match &additional {
            None => None,
            Some(s) => {
                let mut names: Vec<&str> = props.keys().map(String::as_str).collect();
                names.extend(&required);
                let key = self.key_except(&names);
                let value = self.schema(s, &join(path, "additionalProperties"))?;
                let value = self.rule("additional-value", value);
                let m = member(key, value);
                let max = max_props.map(|m| (m - n_all).min(MAX_REPEAT as u64) as u32);
                Some((self.rule("additional", m), max))
            }
        };
        let comma = |m: Expr| Expr::seq(vec![ws_lit(","), ws.clone(), m]);
        // After the first member: the rest, each preceded by a comma.
        let tail = |from: usize| -> Expr {
            let mut items: Vec<Expr> = fixed[from..]
                .iter()
                .map(|(req, m)| {
                    if *req {
                        comma(m.clone())
                    } else {
                        Expr::opt(comma(m.clone()))
                    }
                })
                .collect();
            if let Some((e, max)) = &extra {
                items.push(Expr::repeat(comma(e.clone()), 0, *max));
            }
            Expr::seq(items)
        };
        let body = if n_req > 0 {
            Expr::seq(vec![fixed[0].1.clone(), tail(1)])
        } else {
            // No member is required: any one may come first.
            let mut firsts = Vec::new();
            for (i, (_, m)) in fixed.iter().enumerate() {
                let t = tail(i + 1);
                let t = self.rule(&format!("{}-rest", rule_name(path)), t);
                firsts.push(Expr::seq(vec![m.clone(), t]));
            }
            if let Some((e, max)) = &extra {
                if *max != Some(0) {
                    let more = max.map(|m| m - 1);
                    firsts.push(Expr::seq(vec![
                        e.clone(),
                        Expr::repeat(comma(e.clone()), 0, more),
                    ]));
                }
            }
            if firsts.is_empty() {
                Expr::empty()
            } else {
                Expr::opt(Expr::alt(firsts))
            }
        };
        Ok(Expr::seq(vec![ws_lit("{"), ws, body, ws_lit("}")]))
    }

    /// A JSON string that is none of `names`: written without escapes, and leaving each name's
    /// path through its characters before or after its end.
    fn key_except(&mut self, names: &[&str]) -> Expr {
        if names.is_empty() {
            return Expr::Ref(self.j().string);
        }
        // A trie of the names; names with characters that need escaping cannot be written
        // without escapes, so they need no excluding.
        #[derive(Default)]
        struct Node {
            end: bool,
            next: BTreeMap<char, usize>,
        }
        let mut nodes = vec![Node::default()];
        for name in names {
            if name.chars().any(|c| c < ' ' || c == '"' || c == '\\') {
                continue;
            }
            let mut at = 0;
            for c in name.chars() {
                at = match nodes[at].next.get(&c) {
                    Some(&n) => n,
                    None => {
                        nodes.push(Node::default());
                        let n = nodes.len() - 1;
                        nodes[at].next.insert(c, n);
                        n
                    }
                };
            }
            nodes[at].end = true;
        }
        let plain = || Class::not(&[(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C)]);
        let ids: Vec<usize> = (0..nodes.len()).map(|_| self.rules.fresh("key")).collect();
        for (i, n) in nodes.iter().enumerate() {
            let mut alts = Vec::new();
            if !n.end {
                alts.push(Expr::lit("\""));
            }
            for (&c, &child) in &n.next {
                alts.push(Expr::seq(vec![
                    Expr::Lit(c.to_string()),
                    Expr::Ref(ids[child]),
                ]));
            }
            let mut other = plain();
            other
                .ranges
                .extend(n.next.keys().map(|&c| (c as u32, c as u32)));
            alts.push(Expr::seq(vec![
                Expr::Class(other),
                Expr::star(Expr::Class(plain())),
                Expr::lit("\""),
            ]));
            self.rules.define(ids[i], Expr::alt(alts));
        }
        Expr::seq(vec![Expr::lit("\""), Expr::Ref(ids[0])])
    }

    fn array(&mut self, map: &Map<String, Value>, path: &str) -> Result<Expr, GrammarError> {
        if map.get("uniqueItems") == Some(&Value::Bool(true))
            && map
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_none_or(|m| m > 1)
        {
            return Err(unsupported("uniqueItems", &join(path, "uniqueItems"), ""));
        }
        let mut prefix: Vec<Expr> = Vec::new();
        let prefix_schemas = match (map.get("prefixItems"), map.get("items")) {
            (Some(Value::Array(p)), _) => Some((p, "prefixItems")),
            (None, Some(Value::Array(p))) => Some((p, "items")),
            (Some(_), _) => {
                return Err(schema_err(
                    &join(path, "prefixItems"),
                    "`prefixItems` must be an array",
                ))
            }
            _ => None,
        };
        if let Some((list, key)) = prefix_schemas {
            for (i, s) in list.iter().enumerate() {
                let p = join(&join(path, key), &i.to_string());
                let e = self.schema(s, &p)?;
                prefix.push(self.rule(&format!("item-{i}"), e));
            }
        }
        // The schema of the items after the prefix (`None`: no more items).
        let (rest_schema, rest_key) = match (
            prefix_schemas.map(|p| p.1),
            map.get("items"),
            map.get("additionalItems"),
        ) {
            (Some("items"), _, extra) => (
                extra.cloned().unwrap_or(Value::Bool(true)),
                "additionalItems",
            ),
            (_, items, _) => (items.cloned().unwrap_or(Value::Bool(true)), "items"),
        };
        let rest = match rest_schema {
            Value::Bool(false) => None,
            s => {
                let e = self.schema(&s, &join(path, rest_key))?;
                Some(self.rule("item", e))
            }
        };
        let min = map
            .get("minItems")
            .map(|v| count(v, "minItems", path))
            .transpose()?
            .unwrap_or(0);
        let max = map
            .get("maxItems")
            .map(|v| count(v, "maxItems", path))
            .transpose()?;
        let n = prefix.len() as u64;
        if max.is_some_and(|m| m < min) {
            return Err(schema_err(
                path,
                format!("minItems {min} > maxItems {}", max.unwrap_or(0)),
            ));
        }
        if rest.is_none() && min > n {
            return Err(schema_err(
                path,
                format!("minItems {min} > the {n} items allowed"),
            ));
        }
        if min > MAX_REPEAT as u64 + n {
            return Err(GrammarError::TooLarge {
                what: "minItems",
                limit: MAX_REPEAT as usize,
                found: min as usize,
            });
        }
        let ws = self.ws();
        let comma = |e: &Expr| Expr::seq(vec![ws_lit(","), ws.clone(), e.clone(), ws.clone()]);
        // At most this many items (`None`: no limit).
        let most = match (&rest, max) {
            (None, Some(m)) => Some(m.min(n)),
            (None, None) => Some(n),
            (Some(_), m) => m,
        };
        let fits = |i: u64| most.is_none_or(|m| i < m);
        // Items i.. after item i - 1, each after a comma, built from the end: past the prefix
        // the rest repeated as often as the bounds leave, then the prefix items, each optional
        // unless `minItems` needs it.
        let mut after = match &rest {
            Some(r) if fits(n.max(1)) => {
                let from = n.max(1);
                let a = min.saturating_sub(from) as u32;
                let b = most.map(|m| (m - from).min(MAX_REPEAT as u64) as u32);
                Expr::repeat(comma(r), a, b)
            }
            _ => Expr::empty(),
        };
        for i in (1..n).rev() {
            if !fits(i) {
                continue;
            }
            let e = Expr::seq(vec![comma(&prefix[i as usize]), after]);
            after = if i < min { e } else { Expr::opt(e) };
        }
        let first = prefix.first().or(rest.as_ref());
        let items = match first {
            Some(first) if fits(0) => {
                let e = Expr::seq(vec![first.clone(), ws.clone(), after]);
                if min >= 1 {
                    e
                } else {
                    Expr::opt(e)
                }
            }
            _ => Expr::empty(),
        };
        Ok(Expr::seq(vec![ws_lit("["), ws, items, ws_lit("]")]))
    }
}

/// A URI fragment with its `%XX` escapes decoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) if b[i] == b'%' => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `v` is of JSON-schema type `t` (`any`: every value).
fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "any" => true,
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => {
            v.as_i64().is_some()
                || v.as_u64().is_some()
                || v.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => false,
    }
}

/// Merges the keyword maps of `allOf`'s parts into one schema that validates what all of them
/// do: properties joined (a property in several parts gets their `allOf`), `required` united,
/// `type` intersected, bounds tightened, `additionalProperties: false` of a part keeping
/// others' properties out; other keywords must agree.
fn merge_all(parts: &[Map<String, Value>], path: &str) -> Result<Map<String, Value>, GrammarError> {
    let mut out = Map::new();
    let mut props: Vec<(String, Vec<Value>)> = Vec::new();
    let mut required: Vec<Value> = Vec::new();
    // Per part with `additionalProperties: false`, the keys it allows.
    let mut closed: Vec<HashSet<String>> = Vec::new();
    let mut extra_schema: Option<Value> = None;
    for part in parts {
        for (k, v) in part {
            match k.as_str() {
                "properties" => {
                    let Some(p) = v.as_object() else {
                        return Err(schema_err(
                            &join(path, "properties"),
                            "`properties` must be an object",
                        ));
                    };
                    for (name, s) in p {
                        match props.iter_mut().find(|(n, _)| n == name) {
                            Some((_, list)) => list.push(s.clone()),
                            None => props.push((name.clone(), vec![s.clone()])),
                        }
                    }
                }
                "required" => {
                    for r in v.as_array().into_iter().flatten() {
                        if !required.contains(r) {
                            required.push(r.clone());
                        }
                    }
                }
                "additionalProperties" => match v {
                    Value::Bool(false) => closed.push(
                        part.get("properties")
                            .and_then(Value::as_object)
                            .map(|p| p.keys().cloned().collect())
                            .unwrap_or_default(),
                    ),
                    Value::Bool(true) => {}
                    s => {
                        if extra_schema.as_ref().is_some_and(|e| e != s) {
                            return Err(unsupported(
                                "additionalProperties",
                                path,
                                "different schemas in the parts of `allOf`",
                            ));
                        }
                        extra_schema = Some(s.clone());
                    }
                },
                "type" => {
                    let as_list = |v: &Value| -> Vec<Value> {
                        match v {
                            Value::Array(a) => a.clone(),
                            v => vec![v.clone()],
                        }
                    };
                    let merged = match out.get("type") {
                        None => as_list(v),
                        Some(t) => {
                            let mine = as_list(t);
                            let theirs = as_list(v);
                            let mut both: Vec<Value> = Vec::new();
                            for a in &mine {
                                for b in &theirs {
                                    let (a, b) =
                                        (a.as_str().unwrap_or(""), b.as_str().unwrap_or(""));
                                    let t = if a == b {
                                        Some(a)
                                    } else if (a, b) == ("number", "integer")
                                        || (a, b) == ("integer", "number")
                                    {
                                        Some("integer")
                                    } else {
                                        None
                                    };
                                    if let Some(t) = t {
                                        if !both.iter().any(|x| x == t) {
                                            both.push(Value::from(t));
                                        }
                                    }
                                }
                            }
                            if both.is_empty() {
                                return Err(schema_err(
                                    path,
                                    "the parts of `allOf` have no `type` in common",
                                ));
                            }
                            both
                        }
                    };
                    out.insert("type".into(), Value::Array(merged));
                }
                "enum" => {
                    let values = v.as_array().cloned().unwrap_or_default();
                    let merged = match out.get("enum").and_then(Value::as_array) {
                        None => values,
                        Some(prev) => prev
                            .iter()
                            .filter(|x| values.contains(x))
                            .cloned()
                            .collect(),
                    };
                    out.insert("enum".into(), Value::Array(merged));
                }
                "minimum" | "minLength" | "minItems" | "minProperties" | "maximum"
                | "maxLength" | "maxItems" | "maxProperties" => {
                    let lower = k.starts_with("min");
                    let merged = match (out.get(k).and_then(Value::as_f64), v.as_f64()) {
                        (Some(a), Some(b)) => {
                            if (lower && b > a) || (!lower && b < a) {
                                v.clone()
                            } else {
                                out[k].clone()
                            }
                        }
                        _ => v.clone(),
                    };
                    out.insert(k.clone(), merged);
                }
                k if ANNOTATIONS.contains(&k) => {
                    out.entry(k.to_string()).or_insert_with(|| v.clone());
                }
                _ => match out.get(k) {
                    Some(prev) if prev != v => {
                        return Err(unsupported(
                            k,
                            &join(path, k),
                            "different values in the parts of `allOf`",
                        ));
                    }
                    _ => {
                        out.insert(k.clone(), v.clone());
                    }
                },
            }
        }
    }
    // Keys a closed part does not declare may not appear at all.
    let allowed = |name: &str| closed.iter().all(|c| c.contains(name));
    if !closed.is_empty() && extra_schema.is_some() {
        return Err(unsupported(
            "additionalProperties",
            path,
            "`false` in one part of `allOf` and a schema in another",
        ));
    }
    for r in &required {
        if let Some(name) = r.as_str() {
            if !allowed(name) {
                return Err(schema_err(
                    path,
                    format!("`allOf` requires `{name}` but a part with `additionalProperties: false` does not allow it"),
                ));
            }
        }
    }
    let has_props = !props.is_empty();
    if has_props || !closed.is_empty() {
        let mut p = Map::new();
        for (name, mut list) in props {
            if !allowed(&name) {
                continue;
            }
            let s = if list.len() == 1 {
                list.pop().unwrap_or(Value::Bool(true))
            } else {
                serde_json::json!({ "allOf": list })
            };
            p.insert(name, s);
        }
        out.insert("properties".into(), Value::Object(p));
    }
    if !required.is_empty() {
        out.insert("required".into(), Value::Array(required));
    }
    match (closed.is_empty(), extra_schema) {
        (false, _) => {
            out.insert("additionalProperties".into(), Value::Bool(false));
        }
        (true, Some(s)) => {
            out.insert("additionalProperties".into(), s);
        }
        // Parts with properties but open: other keys stay allowed.
        (true, None)
            if has_props
                && parts
                    .iter()
                    .any(|p| p.get("additionalProperties") == Some(&Value::Bool(true))) =>
        {
            out.insert("additionalProperties".into(), Value::Bool(true));
        }
        _ => {}
    }
    Ok(out)
}

/// The grammar of a `format`, between the quotes; `None` for formats taken as any string.
fn format_body(format: &str) -> Option<Expr> {
    let d = digit;
    let two = |a: (char, char), b: (char, char)| Expr::seq(vec![class(&[a]), class(&[b])]);
    let date = || {
        Expr::seq(vec![
            Expr::repeat(d(), 4, Some(4)),
            Expr::lit("-"),
            Expr::alt(vec![
                two(('0', '0'), ('1', '9')),
                two(('1', '1'), ('0', '2')),
            ]),
            Expr::lit("-"),
            Expr::alt(vec![
                two(('0', '0'), ('1', '9')),
                two(('1', '2'), ('0', '9')),
                two(('3', '3'), ('0', '1')),
            ]),
        ])
    };
    let hour = || {
        Expr::alt(vec![
            two(('0', '1'), ('0', '9')),
            two(('2', '2'), ('0', '3')),
        ])
    };
    let minute = || two(('0', '5'), ('0', '9'));
    let time = || {
        Expr::seq(vec![
            hour(),
            Expr::lit(":"),
            minute(),
            Expr::lit(":"),
            minute(),
            Expr::opt(Expr::seq(vec![
                Expr::lit("."),
                Expr::repeat(d(), 1, Some(6)),
            ])),
            Expr::alt(vec![
                Expr::lit("Z"),
                Expr::seq(vec![
                    class(&[('+', '+'), ('-', '-')]),
                    hour(),
                    Expr::lit(":"),
                    minute(),
                ]),
            ]),
        ])
    };
    Some(match format {
        "date" => date(),
        "time" => time(),
        "date-time" => Expr::seq(vec![date(), Expr::lit("T"), time()]),
        "uuid" => {
            let h = |n| Expr::repeat(hex(), n, Some(n));
            Expr::seq(vec![
                h(8),
                Expr::lit("-"),
                h(4),
                Expr::lit("-"),
                h(4),
                Expr::lit("-"),
                h(4),
                Expr::lit("-"),
                h(12),
            ])
        }
        _ => return None,
    })
}

/// Decimal digits of `n` (at least one).
fn digits(n: i64) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// The integers `lo..=hi` (either open), written without leading zeros, at most 16 digits;
/// `None` if there is none.
fn integer_range(lo: Option<i64>, hi: Option<i64>) -> Option<Expr> {
    let lo = lo.unwrap_or(-MAX_MAGNITUDE).max(-MAX_MAGNITUDE);
    let hi = hi.unwrap_or(MAX_MAGNITUDE).min(MAX_MAGNITUDE);
    if lo > hi {
        return None;
    }
    let mut alts = Vec::new();
    if lo < 0 {
        let top = hi.min(-1);
        alts.push(Expr::seq(vec![Expr::lit("-"), natural_range(-top, -lo)]));
    }
    if hi >= 0 {
        alts.push(natural_range(lo.max(0), hi));
    }
    Some(Expr::alt(alts))
}

/// The naturals `a..=b` (`0 <= a <= b`), without leading zeros.
fn natural_range(a: i64, b: i64) -> Expr {
    let (da, db) = (digits(a).len(), digits(b).len());
    if da == db {
        return same_length(&digits(a), &digits(b));
    }
    let mut alts = vec![same_length(&digits(a), &vec![b'9'; da])];
    for k in da + 1..db {
        alts.push(Expr::seq(vec![
            class(&[('1', '9')]),
            Expr::repeat(digit(), k as u32 - 1, Some(k as u32 - 1)),
        ]));
    }
    let mut low = vec![b'0'; db];
    low[0] = b'1';
    alts.push(same_length(&low, &digits(b)));
    Expr::alt(alts)
}

/// Digit strings of one length from `a` to `b` (`a <= b`).
fn same_length(a: &[u8], b: &[u8]) -> Expr {
    let n = a.len();
    if n == 0 {
        return Expr::empty();
    }
    let digit_class = |x: u8, y: u8| {
        if x == y {
            Expr::Lit((x as char).to_string())
        } else {
            class(&[(x as char, y as char)])
        }
    };
    let any = |k: usize| Expr::repeat(digit(), k as u32, Some(k as u32));
    if a[0] == b[0] {
        return Expr::seq(vec![digit_class(a[0], a[0]), same_length(&a[1..], &b[1..])]);
    }
    let low_full = a[1..].iter().all(|&c| c == b'0');
    let high_full = b[1..].iter().all(|&c| c == b'9');
    let mut alts = Vec::new();
    let mut mid_lo = a[0] + 1;
    let mut mid_hi = b[0] - 1;
    if low_full {
        mid_lo = a[0];
    } else {
        alts.push(Expr::seq(vec![
            digit_class(a[0], a[0]),
            same_length(&a[1..], &vec![b'9'; n - 1]),
        ]));
    }
    if high_full {
        mid_hi = b[0];
    }
    if mid_lo <= mid_hi {
        alts.push(Expr::seq(vec![digit_class(mid_lo, mid_hi), any(n - 1)]));
    }
    if !high_full {
        alts.push(Expr::seq(vec![
            digit_class(b[0], b[0]),
            same_length(&vec![b'0'; n - 1], &b[1..]),
        ]));
    }
    Expr::alt(alts)
}

/// Numbers from `lo` to `hi` (whole-number bounds, each maybe exclusive or open), written as
/// `-? integer ("." digits)?`.
fn number_range(lo: Option<(i64, bool)>, hi: Option<(i64, bool)>) -> Option<Expr> {
    let mut alts = Vec::new();
    // Zero and the positive numbers.
    if hi.is_none_or(|(h, _)| h >= 0) {
        let nlo = match lo {
            Some((l, ex)) if l >= 0 => (l, ex),
            _ => (0, false),
        };
        if let Some(e) = nonneg_decimal(nlo, hi) {
            alts.push(e);
        }
    }
    // The negative numbers: "-" and a magnitude above 0 (and above -hi when hi < 0).
    if lo.is_none_or(|(l, _)| l < 0) {
        let mlo = match hi {
            Some((h, ex)) if h < 0 => (-h, ex),
            _ => (0, true),
        };
        let mhi = lo.map(|(l, ex)| (-l, ex));
        if let Some(e) = nonneg_decimal(mlo, mhi) {
            alts.push(Expr::seq(vec![Expr::lit("-"), e]));
        }
    }
    (!alts.is_empty()).then(|| Expr::alt(alts))
}

/// Non-negative decimals `I(.F)?` from `lo` to `hi` (`0 <= lo`; `hi` open or `>= lo`).
fn nonneg_decimal((lo, lo_ex): (i64, bool), hi: Option<(i64, bool)>) -> Option<Expr> {
    // A fraction that is not all zeros, and one that is.
    let nonzero = || {
        Expr::seq(vec![
            Expr::lit("."),
            Expr::repeat(Expr::lit("0"), 0, Some(14)),
            class(&[('1', '9')]),
            Expr::repeat(digit(), 0, Some(14)),
        ])
    };
    let zeros = || {
        Expr::opt(Expr::seq(vec![
            Expr::lit("."),
            Expr::repeat(Expr::lit("0"), 1, Some(15)),
        ]))
    };
    let lit = |n: i64| Expr::Lit(n.to_string());
    let mut alts = Vec::new();
    match hi {
        Some((h, h_ex)) if h <= lo => {
            if h == lo && !lo_ex && !h_ex {
                alts.push(Expr::seq(vec![lit(lo), zeros()]));
            }
        }
        _ => {
            // The whole part at the lower bound.
            alts.push(if lo_ex {
                Expr::seq(vec![lit(lo), nonzero()])
            } else {
                Expr::seq(vec![lit(lo), fraction()])
            });
            // Whole parts strictly between the bounds take any fraction.
            let top = hi.map(|(h, _)| h - 1);
            if top.is_none_or(|t| t > lo) && lo < MAX_MAGNITUDE {
                if let Some(mid) = integer_range(Some(lo + 1), top) {
                    alts.push(Expr::seq(vec![mid, fraction()]));
                }
            }
            // The upper bound itself, when included.
            if let Some((h, false)) = hi {
                alts.push(Expr::seq(vec![lit(h), zeros()]));
            }
        }
    }
    (!alts.is_empty()).then(|| Expr::alt(alts))
}

#[cfg(test)]
mod tests;
