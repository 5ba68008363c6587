import test from 'node:test';
import assert from 'node:assert/strict';
import { highlight, knownLang } from '../highlight.js';

const CLASSES = new Set(['keyword', 'string', 'comment', 'number', 'function', null]);
const of = (toks, cls) => toks.filter((x) => x.cls === cls).map((x) => x.text);

const SAMPLES = {
  python: 'import os\n@decorator\ndef f(x: int) -> str:\n    """doc"""\n    return f"{x}" + \'s\'  # comment\nprint(0x1F, 3.5e-2, None)',
  js: 'const x = `t ${y}`; // c\n/* block */ function g(a) { return a ?? "s" + 10n; }\nclass A extends B {}',
  ts: 'interface P { name: string }\nlet n: number = 5;',
  rust: 'fn main() -> Result<(), Box<dyn Error>> {\n    let s: &\'static str = r#"raw "q""#;\n    println!("{}", 42u32); // c\n    let c = \'x\';\n}\n#[derive(Debug)]\nstruct S<\'a> { r: &\'a str }',
  c: '#include <stdio.h>\nint main(void) { printf("%d\\n", 1); /* c */ return 0; }',
  cpp: 'std::vector<int> v; auto x = nullptr; // c',
  go: 'package main\nfunc main() { s := `raw`; fmt.Println("x", 1) }',
  java: '@Override\npublic static void main(String[] args) { System.out.println("hi"); }',
  bash: '#!/bin/bash\nif [ -n "$HOME" ]; then echo ${PATH} \'lit\'; fi # c\napt-get install -y x',
  json: '{"a": 1, "b": [true, false, null], "c": -2.5e3}',
  html: '<!DOCTYPE html>\n<div class="a" id=\'b\' hidden>text &amp; more<!-- c --></div>',
  xml: '<?xml version="1.0"?><root><![CDATA[x]]></root>',
  sql: "SELECT name, COUNT(*) FROM users WHERE id = 'x''y' -- c\nGROUP BY name;",
};

test('tokens concatenate back to the input, with known classes', () => {
  for (const [lang, code] of Object.entries(SAMPLES)) {
    const toks = highlight(code, lang);
    assert.equal(toks.map((x) => x.text).join(''), code, lang);
    for (const x of toks) {
      assert.ok(CLASSES.has(x.cls), `${lang}: class ${x.cls}`);
      assert.ok(x.text.length > 0, lang);
    }
  }
});

test('every prefix of every sample tokenizes losslessly (streaming)', () => {
  for (const [lang, code] of Object.entries(SAMPLES)) {
    for (let k = 0; k <= code.length; k++) {
      const s = code.slice(0, k);
      assert.equal(highlight(s, lang).map((x) => x.text).join(''), s);
    }
  }
});

test('python', () => {
  const toks = highlight(SAMPLES.python, 'python');
  assert.ok(of(toks, 'keyword').includes('def'));
  assert.ok(of(toks, 'keyword').includes('return'));
  assert.ok(of(toks, 'function').includes('f'));
  assert.ok(of(toks, 'function').includes('@decorator'));
  assert.ok(of(toks, 'string').includes('"""doc"""'));
  assert.ok(of(toks, 'string').includes('f"{x}"'));
  assert.ok(of(toks, 'comment').includes('# comment'));
  assert.ok(of(toks, 'number').includes('0x1F'));
  assert.ok(of(toks, 'number').includes('3.5e-2'));
});

test('javascript and typescript', () => {
  const toks = highlight(SAMPLES.js, 'javascript');
  assert.ok(of(toks, 'string').includes('`t ${y}`'));
  assert.ok(of(toks, 'comment').includes('// c'));
  assert.ok(of(toks, 'comment').includes('/* block */'));
  assert.ok(of(toks, 'keyword').includes('function'));
  assert.ok(of(toks, 'function').includes('g'));
  assert.ok(of(highlight(SAMPLES.ts, 'ts'), 'keyword').includes('interface'));
  assert.deepEqual(highlight('x', 'JS'), [{ text: 'x', cls: null }]);
});

test('rust: raw strings, macros, chars vs lifetimes', () => {
  const toks = highlight(SAMPLES.rust, 'rust');
  assert.ok(of(toks, 'string').includes('r#"raw "q""#'));
  assert.ok(of(toks, 'function').includes('println!'));
  assert.ok(of(toks, 'string').includes("'x'"));
  assert.ok(!of(toks, 'string').some((s) => s.startsWith("'static") || s.startsWith("'a")));
  assert.ok(of(toks, 'number').includes('42u32'));
  assert.ok(of(toks, 'keyword').includes('fn'));
});

test('c, go, java', () => {
  const c = highlight(SAMPLES.c, 'c');
  assert.ok(of(c, 'keyword').includes('#include'));
  assert.ok(of(c, 'string').includes('<stdio.h>'));
  assert.ok(of(c, 'function').includes('printf'));
  assert.ok(of(highlight(SAMPLES.cpp, 'cpp'), 'keyword').includes('nullptr'));
  const go = highlight(SAMPLES.go, 'go');
  assert.ok(of(go, 'keyword').includes('func'));
  assert.ok(of(go, 'string').includes('`raw`'));
  const java = highlight(SAMPLES.java, 'java');
  assert.ok(of(java, 'keyword').includes('public'));
  assert.ok(of(java, 'function').includes('@Override'));
});

test('bash, json, sql', () => {
  const sh = highlight(SAMPLES.bash, 'sh');
  assert.ok(of(sh, 'comment').includes('#!/bin/bash'));
  assert.ok(of(sh, 'comment').includes('# c'));
  assert.ok(of(sh, 'keyword').includes('if'));
  assert.ok(of(sh, 'string').includes('"$HOME"'));
  assert.ok(of(sh, 'function').includes('${PATH}'));
  const json = highlight(SAMPLES.json, 'json');
  assert.deepEqual(of(json, 'keyword'), ['true', 'false', 'null']);
  assert.ok(of(json, 'string').includes('"a"'));
  assert.ok(of(json, 'number').includes('-2.5e3'));
  const sql = highlight(SAMPLES.sql, 'sql');
  assert.ok(of(sql, 'keyword').includes('SELECT'));
  assert.ok(of(sql, 'string').includes("'x''y'"));
  assert.ok(of(sql, 'comment').includes('-- c'));
});

test('html and xml', () => {
  const toks = highlight(SAMPLES.html, 'html');
  assert.ok(of(toks, 'keyword').includes('div'));
  assert.ok(of(toks, 'function').includes('class'));
  assert.ok(of(toks, 'string').includes('"a"'));
  assert.ok(of(toks, 'comment').includes('<!-- c -->'));
  const xml = highlight(SAMPLES.xml, 'xml');
  assert.ok(of(xml, 'comment').includes('<![CDATA[x]]>'));
});

test('unclosed strings and comments run to the end', () => {
  assert.deepEqual(highlight('/* open', 'c'), [{ text: '/* open', cls: 'comment' }]);
  assert.deepEqual(highlight('"abc', 'js'), [{ text: '"abc', cls: 'string' }]);
  assert.deepEqual(highlight('x = """doc', 'python').at(-1), { text: '"""doc', cls: 'string' });
});

test('unknown language is one plain token; empty code is empty', () => {
  assert.deepEqual(highlight('a <b> "c"', 'brainfuck'), [{ text: 'a <b> "c"', cls: null }]);
  assert.deepEqual(highlight('x', ''), [{ text: 'x', cls: null }]);
  assert.deepEqual(highlight('x', undefined), [{ text: 'x', cls: null }]);
  assert.deepEqual(highlight('', 'js'), []);
  assert.equal(knownLang('Python'), true);
  assert.equal(knownLang('cobol'), false);
});

test('fast on a large block', () => {
  const code = 'function f(a, b) { return a + "s" + 1.5; } // comment\n'.repeat(4000);
  const t0 = performance.now();
  const toks = highlight(code, 'js');
  assert.ok(performance.now() - t0 < 500);
  assert.equal(toks.map((x) => x.text).join(''), code);
});
