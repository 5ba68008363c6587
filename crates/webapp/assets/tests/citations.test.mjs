import test from 'node:test';
import assert from 'node:assert/strict';
import { parse, parseInline, render, renderInto, citeSet } from '../markdown.js';
import { makeDocument, elements } from './fakedom.mjs';

const t = (text) => ({ type: 'text', text });
const cite = (n) => ({ type: 'cite', n });
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
const cites = (nodes) => [...walk(nodes)].filter((n) => n.type === 'cite').map((n) => n.n);

test('citations become cite nodes only when the message has that source', () => {
  assert.deepEqual(parse('It boots fast [1].', { cites: [1, 2] }), [p(t('It boots fast '), cite(1), t('.'))]);
  assert.deepEqual(parse('It boots fast [1].'), [p(t('It boots fast [1].'))]);
  assert.deepEqual(parse('It boots fast [1].', { cites: [] }), [p(t('It boots fast [1].'))]);
  assert.deepEqual(parse('It boots fast [1].', { cites: null }), [p(t('It boots fast [1].'))]);
  assert.deepEqual(parse('see [1][2] and [2]', { cites: [1, 2] }), [p(t('see '), cite(1), cite(2), t(' and '), cite(2))]);
  assert.deepEqual(parse('see [1, 2]', { cites: new Set([1, 2]) }), [p(t('see '), cite(1), cite(2))]);
  // Sources objects work as the list of numbers too.
  assert.deepEqual(parse('x [3]', { cites: [{ n: 3, chunk_id: 9 }] }), [p(t('x '), cite(3))]);
});

test('a citation of a number that is not a source stays text', () => {
  assert.deepEqual(parse('as said [12].', { cites: [1, 2] }), [p(t('as said [12].'))]);
  assert.deepEqual(parse('[1, 12]', { cites: [1, 2] }), [p(t('[1, 12]'))]);
  assert.deepEqual(parse('[0] [-1] [1.5] [a] []', { cites: [1] }), [p(t('[0] [-1] [1.5] [a] []'))]);
  assert.deepEqual(parse('[1]', { cites: [2] }), [p(t('[1]'))]);
});

test('links are unaffected by citations', () => {
  const nodes = parse('[x](http://example.com/) and [1](https://example.com/a) and [1]', { cites: [1] });
  assert.deepEqual(nodes, [p(
    { type: 'link', href: 'http://example.com/', children: [t('x')] },
    t(' and '),
    { type: 'link', href: 'https://example.com/a', children: [t('1')] },
    t(' and '),
    cite(1),
  )]);
  // A citation-looking link text stays a link's text, never a button inside the link.
  const inLink = parse('[[1]](https://example.com/)', { cites: [1] });
  assert.deepEqual(cites(inLink), []);
  assert.equal(inLink[0].children[0].type, 'link');
  // A refused link stays literal text, not a citation.
  assert.deepEqual(parse('[1](javascript:alert(1))', { cites: [1] }), [p(t('[1](javascript:alert(1))'))]);
  // Images are not citations.
  assert.deepEqual(cites(parse('![1] x', { cites: [1] })), []);
});

test('citations inside code spans and code blocks stay text', () => {
  assert.deepEqual(parse('`a[1]` [1]', { cites: [1] }), [p({ type: 'code', text: 'a[1]' }, t(' '), cite(1))]);
  assert.deepEqual(parse('```\nx = arr[1]\n```', { cites: [1] }), [{ type: 'code_block', lang: '', text: 'x = arr[1]', closed: true }]);
  assert.deepEqual(parse('    indented [1]', { cites: [1] }), [p(t('indented '), cite(1))]);
  assert.deepEqual(parse('\\[1] escaped', { cites: [1] }), [p(t('[1] escaped'))]);
});

test('citations in nested blocks: emphasis, lists, quotes, tables, headings', () => {
  const nodes = parse('# Title [1]\n\n- **bold [2]**\n- item [3]\n\n> quoted [1]\n\n| a | b |\n|---|---|\n| x [2] | y |', { cites: [1, 2, 3] });
  assert.deepEqual(cites(nodes).sort(), [1, 1, 2, 2, 3]);
});

test('parseInline takes the cites too; citeSet normalizes', () => {
  assert.deepEqual(parseInline('a [1]', 0, false, [1]), [t('a '), cite(1)]);
  assert.deepEqual(parseInline('a [1]'), [t('a [1]')]);
  assert.equal(citeSet([]), null);
  assert.deepEqual([...citeSet([1, '2', { n: 3 }, 0, -1, 'x', null])], [1, 2, 3]);
});

test('render: a cite is a button with data-n and its number as text, no HTML', () => {
  const doc = makeDocument();
  const frag = render(parse('Fact [2].', { cites: [2] }), doc);
  const all = [...elements(frag)];
  const btn = all.find((e) => e.tagName === 'BUTTON');
  assert.ok(btn);
  assert.equal(btn.getAttribute('class'), 'cite');
  assert.equal(btn.getAttribute('data-testid'), 'cite');
  assert.equal(btn.getAttribute('data-n'), '2');
  assert.equal(btn.getAttribute('type'), 'button');
  assert.equal(btn.textContent, '2');
  for (const e of all) for (const k of Object.keys(e.attributes)) assert.ok(!k.startsWith('on'), k);
});

test('renderInto: cites appear once the sources are known', () => {
  const doc = makeDocument();
  const box = doc.createElement('div');
  renderInto(box, 'Answer [1]', doc);
  assert.equal([...elements(box)].filter((e) => e.tagName === 'BUTTON').length, 0);
  renderInto(box, 'Answer [1]', doc, { cites: [1] });
  assert.equal([...elements(box)].filter((e) => e.tagName === 'BUTTON').length, 1);
  assert.equal(box.textContent, 'Answer 1');
});
