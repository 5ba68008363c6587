// A small, pure syntax highlighter: highlight(code, lang) -> [{text, cls}].
// cls is one of "keyword", "string", "comment", "number", "function" or null (plain).
// Concatenating the texts always gives back the input exactly. No DOM, no HTML.

const C_NUM = String.raw`\b(?:0[xX][0-9a-fA-F_']+|0[bB][01_']+|0[oO][0-7_]+|\d[\d_']*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)[A-Za-z0-9_]*`;
const DQ = String.raw`"(?:[^"\\\n]|\\[\s\S])*"?`;
const SQ = String.raw`'(?:[^'\\\n]|\\[\s\S])*'?`;
const LINE_C = String.raw`\/\/[^\n]*`;
const BLOCK_C = String.raw`\/\*[\s\S]*?(?:\*\/|$)`;
const HASH_C = String.raw`#[^\n]*`;
const IDENT = String.raw`[A-Za-z_$][\w$]*`;

const words = (s) => new Set(s.split(/\s+/).filter(Boolean));

const JS_KW = words(`break case catch class const continue debugger default delete do else export extends
  finally for function if import in instanceof let new return super switch this throw try typeof var void
  while with yield async await of static get set true false null undefined NaN Infinity
  interface type enum implements private public protected readonly declare namespace abstract as keyof
  any unknown never number string boolean symbol bigint object is satisfies from`);
const PY_KW = words(`False None True and as assert async await break class continue def del elif else
  except finally for from global if import in is lambda nonlocal not or pass raise return try while with
  yield match case self print`);
const RUST_KW = words(`as async await break const continue crate dyn else enum extern false fn for if impl
  in let loop match mod move mut pub ref return self Self static struct super trait true type unsafe use
  where while union box i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize f32 f64 bool char str String
  Vec Option Result Some None Ok Err Box`);
const C_KW = words(`auto break case char const continue default do double else enum extern float for goto
  if inline int long register restrict return short signed sizeof static struct switch typedef union
  unsigned void volatile while bool true false NULL nullptr class namespace template typename public
  private protected virtual override final new delete this operator using try catch throw const_cast
  static_cast dynamic_cast reinterpret_cast constexpr noexcept explicit friend mutable std size_t
  uint8_t uint16_t uint32_t uint64_t int8_t int16_t int32_t int64_t`);
const GO_KW = words(`break case chan const continue default defer else fallthrough for func go goto if
  import interface map package range return select struct switch type var true false nil iota bool byte
  rune string int int8 int16 int32 int64 uint uint8 uint16 uint32 uint64 float32 float64 error any`);
const JAVA_KW = words(`abstract assert boolean break byte case catch char class const continue default do
  double else enum extends final finally float for goto if implements import instanceof int interface long
  native new package private protected public return short static strictfp super switch synchronized this
  throw throws transient try void volatile while var record true false null String`);
const SH_KW = words(`if then else elif fi for while until do done case esac in function return exit
  local export readonly declare set unset shift break continue source alias echo cd sudo`);
const SQL_KW = words(`select from where and or not insert into values update set delete create table drop
  alter add column index primary key foreign references join inner left right outer full on as group by
  order having limit offset distinct union all exists in is null like between case when then else end
  begin commit rollback transaction view if default unique check constraint integer int text varchar char
  real float boolean date timestamp count sum avg min max asc desc with returning true false`);
const JSON_KW = words(`true false null`);

function lang(spec) {
  const parts = spec.parts;
  const re = new RegExp(parts.map((p) => '(' + p[1] + ')').join('|'), spec.flags || 'g');
  return { re, kinds: parts.map((p) => p[0]), keywords: spec.keywords, ci: !!spec.ci, fnAfter: spec.fnAfter };
}

const JS = lang({
  keywords: JS_KW,
  parts: [
    ['comment', LINE_C], ['comment', BLOCK_C],
    ['string', '`(?:[^`\\\\]|\\\\[\\s\\S])*`?'], ['string', DQ], ['string', SQ],
    ['number', C_NUM], ['ident', IDENT],
  ],
});
const PY = lang({
  keywords: PY_KW,
  parts: [
    ['comment', HASH_C],
    ['string', String.raw`(?:[rRbBuUfF]{1,2})?(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$))`],
    ['string', String.raw`(?:[rRbBuUfF]{1,2})?(?:` + DQ + '|' + SQ + ')'],
    ['function', String.raw`@[A-Za-z_][\w.]*`],
    ['number', C_NUM], ['ident', String.raw`[A-Za-z_]\w*`],
  ],
});
const RUST = lang({
  keywords: RUST_KW,
  parts: [
    ['comment', LINE_C], ['comment', BLOCK_C],
    ['string', String.raw`b?r(?:###"[\s\S]*?(?:"###|$)|##"[\s\S]*?(?:"##|$)|#"[\s\S]*?(?:"#|$)|"[^"]*"?)`],
    ['string', String.raw`b?"(?:[^"\\]|\\[\s\S])*"?`],
    ['string', String.raw`b?'(?:[^'\\\n]|\\[^\n]{1,10}?)'`],
    ['plain', String.raw`'[A-Za-z_]\w*`],
    ['function', String.raw`[A-Za-z_]\w*!`],
    ['keyword', String.raw`#!?\[[^\]\n]*\]?`],
    ['number', C_NUM], ['ident', String.raw`[A-Za-z_]\w*`],
  ],
});
const C = lang({
  keywords: C_KW,
  parts: [
    ['comment', LINE_C], ['comment', BLOCK_C],
    ['keyword', String.raw`(?:^|(?<=\n))[ \t]*#[ \t]*[A-Za-z]+`],
    ['string', String.raw`<[\w./-]+\.h(?:pp)?>`],
    ['string', DQ], ['string', SQ],
    ['number', C_NUM], ['ident', String.raw`[A-Za-z_]\w*`],
  ],
});
const GO = lang({
  keywords: GO_KW,
  parts: [
    ['comment', LINE_C], ['comment', BLOCK_C],
    ['string', '`[^`]*`?'], ['string', DQ], ['string', SQ],
    ['number', C_NUM], ['ident', String.raw`[A-Za-z_]\w*`],
  ],
});
const JAVA = lang({
  keywords: JAVA_KW,
  parts: [
    ['comment', LINE_C], ['comment', BLOCK_C],
    ['string', String.raw`"""[\s\S]*?(?:"""|$)`],
    ['string', DQ], ['string', SQ],
    ['function', String.raw`@[A-Za-z_]\w*`],
    ['number', C_NUM], ['ident', String.raw`[A-Za-z_$][\w$]*`],
  ],
});
const SH = lang({
  keywords: SH_KW,
  parts: [
    ['comment', String.raw`(?:^|(?<=[\s;]))#[^\n]*`],
    ['string', String.raw`"(?:[^"\\]|\\[\s\S])*"?`],
    ['string', String.raw`'[^']*'?`],
    ['function', String.raw`\$\{[^}\n]*\}?|\$[A-Za-z_]\w*|\$[0-9#?@$*!-]`],
    ['number', String.raw`\b\d+\b`],
    ['ident', String.raw`[A-Za-z_][\w-]*`],
  ],
});
const SQL = lang({
  keywords: SQL_KW,
  ci: true,
  parts: [
    ['comment', String.raw`--[^\n]*`], ['comment', BLOCK_C],
    ['string', String.raw`'(?:[^']|'')*'?`],
    ['string', String.raw`"[^"\n]*"?`],
    ['number', String.raw`\b\d+(?:\.\d+)?\b`],
    ['ident', String.raw`[A-Za-z_]\w*`],
  ],
});
const JSON_L = lang({
  keywords: JSON_KW,
  parts: [
    ['comment', LINE_C], ['comment', BLOCK_C],
    ['string', DQ],
    ['number', String.raw`-?\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b`],
    ['ident', String.raw`[A-Za-z_]\w*`],
  ],
});
const TOML = lang({
  keywords: words('true false null yes no on off'),
  parts: [
    ['comment', HASH_C],
    ['keyword', String.raw`(?:^|(?<=\n))[ \t]*\[[^\]\n]*\]+`],
    ['string', String.raw`"""[\s\S]*?(?:"""|$)`],
    ['string', DQ], ['string', SQ],
    ['number', String.raw`-?\b\d+(?:\.\d+)?\b`],
    ['ident', String.raw`[A-Za-z_][\w-]*`],
  ],
});

const HTML = 'html';

const ALIASES = {
  js: JS, javascript: JS, jsx: JS, mjs: JS, cjs: JS, ts: JS, typescript: JS, tsx: JS, node: JS,
  py: PY, python: PY, python3: PY, py3: PY,
  rs: RUST, rust: RUST,
  c: C, h: C, cpp: C, 'c++': C, cc: C, cxx: C, hpp: C, hh: C, cuda: C, cu: C, objc: C,
  go: GO, golang: GO,
  java: JAVA, kotlin: JAVA, kt: JAVA, scala: JAVA, cs: JAVA, csharp: JAVA, 'c#': JAVA,
  bash: SH, sh: SH, shell: SH, zsh: SH, console: SH, shellscript: SH, ksh: SH, fish: SH, dockerfile: SH, docker: SH, makefile: SH, make: SH,
  sql: SQL, postgres: SQL, postgresql: SQL, mysql: SQL, sqlite: SQL, plsql: SQL,
  json: JSON_L, jsonc: JSON_L, json5: JSON_L, jsonl: JSON_L, ndjson: JSON_L,
  toml: TOML, ini: TOML, yaml: TOML, yml: TOML, conf: TOML, cfg: TOML,
  html: HTML, xml: HTML, svg: HTML, xhtml: HTML, htm: HTML, vue: HTML, svelte: HTML,
};

/** Normalise a fence's info word ("Python", "{.rust}", "language-js") to a key. */
export function normalizeLang(lang) {
  if (typeof lang !== 'string') return '';
  let l = lang.trim().toLowerCase();
  l = l.replace(/^\{?\.?/, '').replace(/\}$/, '').replace(/^language-/, '');
  return l;
}

/** True when highlight() knows the language. */
export function knownLang(lang) {
  return Object.prototype.hasOwnProperty.call(ALIASES, normalizeLang(lang));
}

function push(out, text, cls) {
  if (!text) return;
  const last = out[out.length - 1];
  if (last && last.cls === cls) last.text += text;
  else out.push({ text, cls });
}

function tokenizeWith(def, code) {
  const out = [];
  const re = new RegExp(def.re.source, def.re.flags);
  let pos = 0;
  let m;
  while ((m = re.exec(code)) !== null) {
    if (m[0] === '') { re.lastIndex++; continue; }
    if (m.index > pos) push(out, code.slice(pos, m.index), null);
    let kind = 'plain';
    for (let g = 1; g < m.length; g++) {
      if (m[g] !== undefined) { kind = def.kinds[g - 1]; break; }
    }
    const text = m[0];
    let cls = null;
    if (kind === 'ident') {
      const key = def.ci ? text.toLowerCase() : text;
      if (def.keywords.has(key)) cls = 'keyword';
      else {
        let j = re.lastIndex;
        while (j < code.length && (code[j] === ' ' || code[j] === '\t')) j++;
        if (code[j] === '(') cls = 'function';
      }
    } else if (kind !== 'plain') {
      cls = kind;
    }
    push(out, text, cls);
    pos = re.lastIndex;
  }
  if (pos < code.length) push(out, code.slice(pos), null);
  return out;
}

const TAG_RE = /<!--[\s\S]*?(?:-->|$)|<!\[CDATA\[[\s\S]*?(?:\]\]>|$)|<[!?]?\/?[A-Za-z][^<>]*>?|&#?\w+;/g;
const ATTR_RE = /([^\s=<>/"']+)|("[^"]*"?|'[^']*'?)/g;

function tokenizeHtml(code) {
  const out = [];
  let pos = 0;
  let m;
  const re = new RegExp(TAG_RE.source, 'g');
  while ((m = re.exec(code)) !== null) {
    if (m[0] === '') { re.lastIndex++; continue; }
    if (m.index > pos) push(out, code.slice(pos, m.index), null);
    const t = m[0];
    if (t.startsWith('<!--') || t.startsWith('<![CDATA[')) push(out, t, 'comment');
    else if (t[0] === '&') push(out, t, 'number');
    else {
      const nm = /^<[!?]?\/?[A-Za-z][\w:.-]*/.exec(t);
      push(out, nm[0].slice(0, 1), null);
      push(out, nm[0].slice(1), 'keyword');
      const rest = t.slice(nm[0].length);
      let p = 0;
      let a;
      const ar = new RegExp(ATTR_RE.source, 'g');
      while ((a = ar.exec(rest)) !== null) {
        if (a.index > p) push(out, rest.slice(p, a.index), null);
        push(out, a[0], a[1] !== undefined ? 'function' : 'string');
        p = ar.lastIndex;
      }
      if (p < rest.length) push(out, rest.slice(p), null);
    }
    pos = re.lastIndex;
  }
  if (pos < code.length) push(out, code.slice(pos), null);
  return out;
}

/**
 * Tokenize `code` for `lang`. Unknown languages give one plain token.
 * @param {string} code
 * @param {string} lang
 * @returns {{text: string, cls: string|null}[]}
 */
export function highlight(code, lang) {
  code = typeof code === 'string' ? code : String(code ?? '');
  if (code === '') return [];
  const key = normalizeLang(lang);
  const def = Object.prototype.hasOwnProperty.call(ALIASES, key) ? ALIASES[key] : null;
  // Very large blocks are shown plain: highlighting is a nicety, not worth a slow page.
  if (!def || code.length > 200000) return [{ text: code, cls: null }];
  try {
    return def === HTML ? tokenizeHtml(code) : tokenizeWith(def, code);
  } catch {
    return [{ text: code, cls: null }];
  }
}
