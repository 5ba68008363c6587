import test from 'node:test';
import assert from 'node:assert/strict';
import { parse, parseInline, render, renderInto, safeHref, splitRow } from '../markdown.js';
import { makeDocument, elements } from './fakedom.mjs';

const t = (text) => ({ type: 'text', text });
const p = (...children) => ({ type: 'paragraph', children });

/** All nodes in a tree, depth first. */
function* walk(nodes) {
  for (const n of nodes) {
    yield n;
    if (n.children) yield* walk(n.children);
    if (n.items) for (const it of n.items) yield* walk(it);
    if (n.header) for (const c of n.header) yield* walk(c);
    if (n.rows) for (const r of n.rows) for (const c of r) yield* walk(c);
  }
}
const links = (nodes) => [...walk(nodes)].filter((n) => n.type === 'link');

test('paragraphs, soft and hard breaks', () => {
  assert.deepEqual(parse('hello\nworld\n\nnext'), [
    p(t('hello'), { type: 'br' }, t('world')),
    p(t('next')),
  ]);
  assert.deepEqual(parse('a  \nb\\\nc'), [p(t('a'), { type: 'br' }, t('b'), { type: 'br' }, t('c'))]);
  assert.deepEqual(parse(''), []);
  assert.deepEqual(parse('\n\n  \n'), []);
});

test('ATX and setext headings', () => {
  assert.deepEqual(parse('# One\n### Three ###\n###### Six'), [
    { type: 'heading', level: 1, children: [t('One')] },
    { type: 'heading', level: 3, children: [t('Three')] },
    { type: 'heading', level: 6, children: [t('Six')] },
  ]);
  assert.deepEqual(parse('####### seven'), [p(t('####### seven'))]);
  assert.deepEqual(parse('#nospace'), [p(t('#nospace'))]);
  assert.deepEqual(parse('Title\n=====\nSub\n---'), [
    { type: 'heading', level: 1, children: [t('Title')] },
    { type: 'heading', level: 2, children: [t('Sub')] },
  ]);
});

test('emphasis, strong, code, strikethrough', () => {
  assert.deepEqual(parseInline('**b** *i* _u_ __s__ `c` ~~d~~'), [
    { type: 'strong', children: [t('b')] }, t(' '),
    { type: 'em', children: [t('i')] }, t(' '),
    { type: 'em', children: [t('u')] }, t(' '),
    { type: 'strong', children: [t('s')] }, t(' '),
    { type: 'code', text: 'c' }, t(' '),
    { type: 'del', children: [t('d')] },
  ]);
  assert.deepEqual(parseInline('***x***'), [{ type: 'strong', children: [{ type: 'em', children: [t('x')] }] }]);
  assert.deepEqual(parseInline('snake_case_name and 2 * 3 * 4'), [t('snake_case_name and 2 * 3 * 4')]);
  assert.deepEqual(parseInline('``a ` b``'), [{ type: 'code', text: 'a ` b' }]);
  assert.deepEqual(parseInline('`**not bold**`'), [{ type: 'code', text: '**not bold**' }]);
  assert.deepEqual(parseInline('\\*not em\\*'), [t('*not em*')]);
  assert.deepEqual(parseInline('**unclosed'), [t('**unclosed')]);
  assert.deepEqual(parseInline('`unclosed'), [t('`unclosed')]);
});

test('entities decode to text', () => {
  assert.deepEqual(parseInline('&lt;b&gt; &amp; &#65; &#x42; &bogus;'), [t('<b> & A B &bogus;')]);
});

test('fenced code blocks, closed and unclosed', () => {
  assert.deepEqual(parse('```python\nprint("hi")\n\nx = 1\n```\nafter'), [
    { type: 'code_block', lang: 'python', text: 'print("hi")\n\nx = 1', closed: true },
    p(t('after')),
  ]);
  assert.deepEqual(parse('~~~\nplain\n~~~'), [{ type: 'code_block', lang: '', text: 'plain', closed: true }]);
  assert.deepEqual(parse('text\n```rust\nfn main() {'), [
    p(t('text')),
    { type: 'code_block', lang: 'rust', text: 'fn main() {', closed: false },
  ]);
  assert.deepEqual(parse('````\n```\ninner\n```\n````'), [{ type: 'code_block', lang: '', text: '```\ninner\n```', closed: true }]);
  assert.deepEqual(parse('```\n\tindented\ttab\n```')[0].text, '\tindented\ttab');
  assert.deepEqual(parse('```\n<script>alert(1)</script>\n```')[0].text, '<script>alert(1)</script>');
});

test('blockquotes, nested and lazy', () => {
  assert.deepEqual(parse('> a\n> > b\n\n> c\nlazy'), [
    { type: 'blockquote', children: [p(t('a')), { type: 'blockquote', children: [p(t('b'))] }] },
    { type: 'blockquote', children: [p(t('c'), { type: 'br' }, t('lazy'))] },
  ]);
});

test('lists: bullets, ordered with start, nested, loose', () => {
  assert.deepEqual(parse('- a\n* b\n+ c'), [{
    type: 'list', ordered: false, start: 1, tight: true,
    items: [[p(t('a'))], [p(t('b'))], [p(t('c'))]],
  }]);
  assert.deepEqual(parse('3. x\n4. y'), [{ type: 'list', ordered: true, start: 3, tight: true, items: [[p(t('x'))], [p(t('y'))]] }]);
  const nested = parse('1. Foo\n   - bar\n   - baz\n2. Qux');
  assert.equal(nested.length, 1);
  assert.equal(nested[0].items.length, 2);
  assert.equal(nested[0].items[0][1].type, 'list');
  assert.equal(nested[0].items[0][1].items.length, 2);
  // Models often indent nested lists by two spaces under "1.".
  const lenient = parse('1. Foo\n  - bar\n2. Qux');
  assert.equal(lenient[0].items.length, 2);
  assert.equal(lenient[0].items[0][1].type, 'list');
  const loose = parse('- a\n\n- b');
  assert.equal(loose[0].tight, false);
  assert.equal(loose[0].items.length, 2);
  const withCode = parse('1. Run:\n   ```sh\n   ls\n   ```\n2. Done');
  assert.deepEqual(withCode[0].items[0][1], { type: 'code_block', lang: 'sh', text: 'ls', closed: true });
  assert.equal(withCode[0].items.length, 2);
  assert.deepEqual(parse('Steps:\n1. one'), [p(t('Steps:')), { type: 'list', ordered: true, start: 1, tight: true, items: [[p(t('one'))]] }]);
});

test('horizontal rules', () => {
  assert.deepEqual(parse('---\n***\n_ _ _'), [{ type: 'hr' }, { type: 'hr' }, { type: 'hr' }]);
  assert.deepEqual(parse('* * *'), [{ type: 'hr' }]);
});

test('tables with alignment, pipes in code and escaped pipes', () => {
  const doc = parse('| Name | Qty | Note |\n|:-----|----:|:----:|\n| a | 1 | `x|y` |\n| b \\| c | 2 |\n\nafter');
  assert.equal(doc.length, 2);
  const tb = doc[0];
  assert.equal(tb.type, 'table');
  assert.deepEqual(tb.align, ['left', 'right', 'center']);
  assert.deepEqual(tb.header, [[t('Name')], [t('Qty')], [t('Note')]]);
  assert.deepEqual(tb.rows[0], [[t('a')], [t('1')], [{ type: 'code', text: 'x|y' }]]);
  assert.deepEqual(tb.rows[1], [[t('b | c')], [t('2')], []]);
  assert.deepEqual(splitRow('a|b'), ['a', 'b']);
  // A table without its delimiter row yet (streaming) is a paragraph.
  assert.equal(parse('| a | b |')[0].type, 'paragraph');
});

test('links, autolinks and images', () => {
  assert.deepEqual(parseInline('[site](https://example.com/a_(b) "title")'), [
    { type: 'link', href: 'https://example.com/a_(b)', children: [t('site')] },
  ]);
  assert.deepEqual(parseInline('[**b**](http://x.y)'), [
    { type: 'link', href: 'http://x.y', children: [{ type: 'strong', children: [t('b')] }] },
  ]);
  assert.deepEqual(parseInline('mail [me](mailto:a@b.c) or <https://x.y/z> or <a@b.cd>'), [
    t('mail '), { type: 'link', href: 'mailto:a@b.c', children: [t('me')] },
    t(' or '), { type: 'link', href: 'https://x.y/z', children: [t('https://x.y/z')] },
    t(' or '), { type: 'link', href: 'mailto:a@b.cd', children: [t('a@b.cd')] },
  ]);
  assert.deepEqual(parseInline('see https://example.com/x. Then (https://a.b/c)'), [
    t('see '), { type: 'link', href: 'https://example.com/x', children: [t('https://example.com/x')] },
    t('. Then ('), { type: 'link', href: 'https://a.b/c', children: [t('https://a.b/c')] }, t(')'),
  ]);
  assert.deepEqual(parseInline('[top](#intro)'), [{ type: 'link', href: '#intro', children: [t('top')] }]);
  assert.deepEqual(parseInline('![a cat](https://x.y/cat.png)'), [
    { type: 'link', href: 'https://x.y/cat.png', children: [t('a cat')], image: true },
  ]);
  assert.deepEqual(parseInline('[a [nested](http://n.n) b](http://o.o)'), [
    { type: 'link', href: 'http://o.o', children: [t('a nested b')] },
  ]);
  assert.deepEqual(parseInline('[not a link] and [x]'), [t('[not a link] and [x]')]);
  assert.deepEqual(parseInline('[rel](/relative/path)'), [t('[rel](/relative/path)')]);
});

test('safeHref allows only http(s), mailto and fragments', () => {
  for (const ok of ['http://a.b', 'https://a.b/c?d=e#f', 'HTTPS://A.B', 'mailto:x@y.z', '#frag', '  https://a.b  ']) {
    assert.notEqual(safeHref(ok), null, ok);
  }
  for (const bad of ['javascript:alert(1)', ' JaVaScRiPt:alert(1)', 'java\nscript:alert(1)', 'java\tscript:x',
    'data:text/html,<script>alert(1)</script>', 'vbscript:msgbox(1)', 'jav&#x61;script:alert(1)',
    'javascript&colon;alert(1)', '\u0000javascript:alert(1)', 'https:alert(1)', 'http:/x', '//evil.com',
    '/relative', 'file:///etc/passwd', 'https://a.b/"onmouseover="x', 'https://a b', '', null, undefined, 42]) {
    assert.equal(safeHref(bad), null, String(bad));
  }
});

const NASTY = [
  '<img src=x onerror=alert(1)>',
  '<script>alert(1)</script>',
  '<a href="javascript:alert(1)">x</a>',
  '[x](javascript:alert(1))',
  '[x]( JaVaScRiPt:alert(1))',
  '[x](java\nscript:alert(1))',
  '[x](\tjavascript:alert(1))',
  '[x](data:text/html,<script>alert(1)</script>)',
  '[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
  '[x](vbscript:msgbox(1))',
  '[x](jav&#x61;script:alert(1))',
  '[x](javascript&colon;alert(1))',
  '[x](<javascript:alert(1)>)',
  '[x](javascript:alert(1) "title")',
  '[x](\\javascript:alert(1))',
  '[x](&#106;avascript:alert(1))',
  '![x](javascript:alert(1))',
  '![x](data:image/svg+xml,<svg onload=alert(1)>)',
  '<javascript:alert(1)>',
  '<data:text/html,x>',
  'javascript:alert(1)',
  '[x](https://ok.example/"onclick="alert(1))',
  '[a](https://a.b)[b](javascript:x)',
  '**[x](javascript:alert(1))**',
  '> [x](javascript:alert(1))',
  '- [x](javascript:alert(1))',
  '| a |\n|---|\n| [x](javascript:alert(1)) |',
  '```" onmouseover="alert(1)\ncode\n```',
  '```<img src=x onerror=alert(1)>\ncode\n```',
  '# <svg onload=alert(1)>',
  '`<script>alert(1)</script>`',
  '[<img src=x onerror=alert(1)>](https://ok.example)',
  '<https://ok.example/" onclick="x>',
  'https://ok.example/<script>',
];

test('XSS: dangerous links never become link nodes', () => {
  for (const s of NASTY) {
    for (const l of links(parse(s))) {
      assert.notEqual(safeHref(l.href), null, `${JSON.stringify(s)} gave href ${l.href}`);
      assert.match(l.href, /^(https?:\/\/|mailto:|#)/i);
      assert.doesNotMatch(l.href, /javascript|data:|vbscript|["<>\s]/i, s);
    }
  }
  assert.deepEqual(links(parse('[x](javascript:alert(1))')), []);
  assert.deepEqual(links(parse('[x]( JaVaScRiPt:alert(1))')), []);
  assert.deepEqual(links(parse('[x](java\nscript:alert(1))')), []);
  assert.deepEqual(links(parse('[x](data:text/html,<b>hi</b>)')), []);
  assert.deepEqual(links(parse('![x](javascript:alert(1))')), []);
  assert.equal(links(parse('[x](https://example.com)')).length, 1);
  assert.equal(links(parse('[x](http://example.com)')).length, 1);
});

test('XSS: raw HTML stays literal text', () => {
  assert.deepEqual(parse('<img src=x onerror=alert(1)>'), [p(t('<img src=x onerror=alert(1)>'))]);
  assert.deepEqual(parse('<script>alert(1)</script>'), [p(t('<script>alert(1)</script>'))]);
});

function checkDom(root) {
  const allowedTags = new Set(['P', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'STRONG', 'EM', 'DEL', 'CODE', 'PRE', 'A', 'BR',
    'UL', 'OL', 'LI', 'BLOCKQUOTE', 'TABLE', 'THEAD', 'TBODY', 'TR', 'TH', 'TD', 'HR', 'DIV', 'SPAN', 'BUTTON']);
  for (const e of elements(root)) {
    assert.ok(allowedTags.has(e.tagName), `unexpected tag ${e.tagName}`);
    for (const [k, v] of Object.entries(e.attributes)) {
      assert.ok(!k.startsWith('on'), `event attribute ${k}`);
      assert.ok(['href', 'rel', 'target', 'class', 'start', 'type', 'aria-label'].includes(k), `unexpected attribute ${k}`);
      if (k === 'href') {
        assert.match(v, /^(https?:\/\/|mailto:|#)/i, v);
        assert.equal(safeHref(v), v);
      }
      if (k === 'class') assert.match(v, /^[a-z0-9_ -]*$/, `class ${v}`);
    }
    if (e.tagName === 'A') {
      assert.equal(e.attributes.rel, 'noopener noreferrer nofollow');
      assert.equal(e.attributes.target, '_blank');
    }
  }
}

test('render: no event attributes and only safe hrefs over nasty inputs', () => {
  const doc = makeDocument();
  const all = NASTY.join('\n\n');
  for (const s of [...NASTY, all]) {
    const frag = render(parse(s), doc);
    checkDom(frag);
  }
  // Render also refuses unsafe hrefs in hand-made trees.
  const frag = render([p({ type: 'link', href: 'javascript:alert(1)', children: [t('x')] })], doc);
  checkDom(frag);
  assert.equal([...elements(frag)].filter((e) => e.tagName === 'A').length, 0);
});

test('render: structure of a document', () => {
  const doc = makeDocument();
  const frag = render(parse('# T\n\n- a\n- **b**\n\n```js\nlet x = 1;\n```\n\n[l](https://e.x)'), doc);
  const tags = [...elements(frag)].map((e) => e.tagName);
  assert.deepEqual(tags.slice(0, 1), ['H1']);
  assert.ok(tags.includes('UL') && tags.includes('LI') && tags.includes('STRONG'));
  assert.ok(tags.includes('PRE') && tags.includes('CODE') && tags.includes('A'));
  const btn = [...elements(frag)].find((e) => e.tagName === 'BUTTON');
  assert.equal(btn.attributes.class, 'copy');
  assert.equal(btn.attributes['aria-label'], 'Copy code');
  assert.equal(btn.textContent, 'Copy');
  assert.ok(btn.listeners.click && btn.listeners.click.length === 1);
  const lang = [...elements(frag)].find((e) => e.attributes.class === 'code-lang');
  assert.equal(lang.textContent, 'js');
  const kw = [...elements(frag)].find((e) => e.attributes.class === 'tok-keyword');
  assert.equal(kw.textContent, 'let');
  const code = [...elements(frag)].find((e) => e.tagName === 'PRE');
  assert.equal(code.textContent, 'let x = 1;');
  const ol = [...elements(render(parse('5. five'), doc))].find((e) => e.tagName === 'OL');
  assert.equal(ol.attributes.start, '5');
});

test('render: copy button writes the code to the clipboard', async () => {
  const doc = makeDocument();
  const written = [];
  const prev = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  Object.defineProperty(globalThis, 'navigator', { value: { clipboard: { writeText: async (s) => { written.push(s); } } }, configurable: true });
  try {
    const frag = render(parse('```\necho hi\n```'), doc);
    const btn = [...elements(frag)].find((e) => e.tagName === 'BUTTON');
    btn.listeners.click[0]();
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(written, ['echo hi']);
    assert.equal(btn.textContent, 'Copied');
  } finally {
    if (prev) Object.defineProperty(globalThis, 'navigator', prev);
    else delete globalThis.navigator;
  }
});

const STREAM_DOC = `# Title with **bold**

Intro with [a link](https://example.com) and \`code\` and ~~old~~ text.

1. First
   - nested *item*
2. Second

> quote
> > nested

| a | b |
|---|:-:|
| 1 | 2 |

\`\`\`python
def f(x):
    return "s" # c
\`\`\`

---
Final ![img](https://x.y/i.png) <img src=x onerror=alert(1)> [bad](javascript:alert(1)) https://bare.example/x.`;

test('streaming: every prefix parses and renders safely; unclosed fence is a code block', () => {
  const doc = makeDocument();
  for (let k = 0; k <= STREAM_DOC.length; k++) {
    const nodes = parse(STREAM_DOC.slice(0, k));
    checkDom(render(nodes, doc));
  }
  const mid = STREAM_DOC.slice(0, STREAM_DOC.indexOf('return'));
  const last = parse(mid).at(-1);
  assert.equal(last.type, 'code_block');
  assert.equal(last.lang, 'python');
  assert.equal(last.closed, false);
});

test('renderInto reuses unchanged leading blocks', () => {
  const doc = makeDocument();
  const box = doc.createElement('div');
  renderInto(box, 'para one\n\npara', doc);
  const first = box.childNodes[0];
  assert.equal(box.childNodes.length, 2);
  renderInto(box, 'para one\n\npara two', doc);
  assert.equal(box.childNodes[0], first);
  assert.equal(box.childNodes[1].textContent, 'para two');
  renderInto(box, 'changed', doc);
  assert.equal(box.childNodes.length, 1);
  assert.equal(box.textContent, 'changed');
});

test('robust on pathological input and fast on long answers', () => {
  const doc = makeDocument();
  for (const s of ['>'.repeat(5000) + ' deep', '['.repeat(5000), '*'.repeat(5000) + 'x', '`'.repeat(3000),
    '- '.repeat(2000) + 'x', ' '.repeat(100) + '- x', '_a'.repeat(3000), '![['.repeat(2000), '**a'.repeat(3000),
    '\u0000\u2028\ud800', '|'.repeat(1000) + '\n|' + '---|'.repeat(300)]) {
    checkDom(render(parse(s), doc));
  }
  const para = 'The **quick** brown fox jumps over the `lazy` dog, see [docs](https://e.x/d) and *more* words here. ';
  const long = Array.from({ length: 60 }, (_, k) => (k % 5 === 0 ? '```js\nconst x = ' + k + ';\nfunction f() { return "s"; }\n```\n' : '') + para.repeat(6)).join('\n\n');
  assert.ok(long.split(/\s+/).length > 5000);
  const t0 = performance.now();
  for (let k = 0; k < 5; k++) render(parse(long), doc);
  const per = (performance.now() - t0) / 5;
  assert.ok(per < 100, `parse+render of a 5000-word answer took ${per.toFixed(1)} ms`);
});
