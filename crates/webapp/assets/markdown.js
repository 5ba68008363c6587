// Markdown for model output: a pure parser (parse) to a small tree, and a renderer (render,
// renderInto) that builds DOM nodes with createElement/createTextNode/textContent only.
// Untrusted text never reaches innerHTML; raw HTML is shown as text; only http(s), mailto and
// "#..." links become <a>. Partial input (streaming) always parses.

import { highlight, normalizeLang } from './highlight.js';

const MAX_DEPTH = 24; // block and inline nesting; deeper is shown as text

// ---------------------------------------------------------------------------------------------
// URLs

/**
 * The href to use for a link destination, or null when it must not become a link.
 * Allowed: http://, https://, mailto: and fragment-only "#..." URLs. Anything with whitespace,
 * control characters or another scheme (javascript:, data:, vbscript:, ...) is refused.
 */
export function safeHref(raw) {
  if (typeof raw !== 'string') return null;
  const url = raw.trim();
  if (url === '' || url.length > 8192) return null;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff<>"`\\]/.test(url)) return null;
  if (/^#/.test(url)) return url;
  if (/^https?:\/\/[^/?#@:]/i.test(url)) return url;
  if (/^mailto:[^/]/i.test(url)) return url;
  return null;
}

// ---------------------------------------------------------------------------------------------
// Block parsing

function indentWidth(line) {
  let w = 0;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (ch === ' ') w++;
    else if (ch === '\t') w += 4 - (w % 4);
    else break;
  }
  return w;
}

function stripIndent(line, n) {
  let w = 0;
  let i = 0;
  while (i < line.length && w < n) {
    const ch = line[i];
    if (ch === ' ') { w++; i++; }
    else if (ch === '\t') {
      const tw = 4 - (w % 4);
      if (w + tw > n) return ' '.repeat(w + tw - n) + line.slice(i + 1);
      w += tw; i++;
    } else break;
  }
  return line.slice(i);
}

const isBlank = (l) => /^[ \t]*$/.test(l);
const FENCE = /^( {0,3})(`{3,}|~{3,})(.*)$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*)|[ \t]*)$/;
const HR = /^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$/;
const QUOTE = /^ {0,3}>[ ]?(.*)$/;
const SETEXT1 = /^ {0,3}=+[ \t]*$/;
const SETEXT2 = /^ {0,3}-+[ \t]*$/;
const DELIM_ROW = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

function fenceOpen(line) {
  const m = FENCE.exec(line);
  if (!m) return null;
  if (m[2][0] === '`' && m[3].includes('`')) return null;
  return { indent: m[1].length, fence: m[2], info: m[3].trim() };
}

function listMarker(line, anyIndent = false) {
  const ind = indentWidth(line);
  if (ind > 3 && !anyIndent) return null;
  const s = stripIndent(line, ind);
  const m = /^([-*+]|(\d{1,9})([.)]))([ \t]+|$)/.exec(s);
  if (!m) return null;
  const marker = m[1];
  const after = s.slice(marker.length);
  const rest = after.replace(/^[ \t]+/, '');
  const spaces = m[4].replace(/\t/g, '    ').length;
  let contentIndent;
  let first;
  if (rest === '') { contentIndent = ind + marker.length + 1; first = ''; }
  else if (spaces > 4) { contentIndent = ind + marker.length + 1; first = stripIndent(after, 1); }
  else { contentIndent = ind + marker.length + spaces; first = rest; }
  return {
    indent: ind,
    ordered: m[2] !== undefined,
    start: m[2] !== undefined ? parseInt(m[2], 10) : 1,
    contentIndent,
    first,
    empty: rest === '',
  };
}

function isDelimRow(line) {
  return line !== undefined && line.includes('-') && DELIM_ROW.test(line) && (line.includes('|') || /:/.test(line));
}

/** Split a table row into raw cell texts: on "|" not escaped and not inside a code span. */
export function splitRow(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  const cells = [];
  let cur = '';
  let i = 0;
  while (i < s.length) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length) { cur += ch + s[i + 1]; i += 2; continue; }
    if (ch === '`') {
      let k = 0;
      while (s[i + k] === '`') k++;
      const run = '`'.repeat(k);
      const close = findRun(s, i + k, '`', k);
      if (close >= 0) { cur += s.slice(i, close + k); i = close + k; continue; }
      cur += run; i += k; continue;
    }
    if (ch === '|') { cells.push(cur); cur = ''; i++; continue; }
    cur += ch; i++;
  }
  if (cur.trim() !== '' || !line.trim().endsWith('|')) cells.push(cur);
  return cells.map((c) => c.trim());
}

function findRun(s, from, ch, k) {
  let i = from;
  while (i < s.length) {
    const j = s.indexOf(ch.repeat(k), i);
    if (j < 0) return -1;
    let e = j + k;
    if (s[e] === ch) { while (s[e] === ch) e++; i = e; continue; }
    if (j > 0 && s[j - 1] === ch) { i = e; continue; }
    return j;
  }
  return -1;
}

function startsBlock(l) {
  if (fenceOpen(l) || HEADING.test(l) || HR.test(l) || QUOTE.test(l)) return true;
  const lm = listMarker(l);
  return !!(lm && !lm.empty);
}

function parseAlign(cell) {
  const c = cell.trim();
  const left = c.startsWith(':');
  const right = c.endsWith(':');
  if (left && right) return 'center';
  if (right) return 'right';
  if (left) return 'left';
  return null;
}

function parseBlocks(lines, depth, cites) {
  const out = [];
  let i = 0;
  const n = lines.length;
  if (depth > MAX_DEPTH) {
    const text = lines.join('\n').trim();
    if (text) out.push({ type: 'paragraph', children: [{ type: 'text', text }] });
    return out;
  }
  while (i < n) {
    const line = lines[i];
    if (isBlank(line)) { i++; continue; }

    const f = fenceOpen(line);
    if (f) {
      const body = [];
      let closed = false;
      i++;
      while (i < n) {
        const l = lines[i];
        const c = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(l);
        if (c && c[1][0] === f.fence[0] && c[1].length >= f.fence.length) { closed = true; i++; break; }
        body.push(stripIndent(l, f.indent));
        i++;
      }
      const lang = unescapeText(f.info.split(/\s+/)[0] || '');
      out.push({ type: 'code_block', lang, text: body.join('\n'), closed });
      continue;
    }

    let m = HEADING.exec(line);
    if (m) {
      const t = (m[2] || '').replace(/(?:^|[ \t]+)#+[ \t]*$/, '').trim();
      out.push({ type: 'heading', level: m[1].length, children: parseInline(t, depth, false, cites) });
      i++;
      continue;
    }

    if (HR.test(line)) { out.push({ type: 'hr' }); i++; continue; }

    if (QUOTE.test(line)) {
      const inner = [];
      while (i < n) {
        const l = lines[i];
        const q = QUOTE.exec(l);
        if (q) { inner.push(q[1]); i++; continue; }
        if (isBlank(l)) break;
        if (inner.length && !isBlank(inner[inner.length - 1]) && !startsBlock(l)) { inner.push(l); i++; continue; }
        break;
      }
      out.push({ type: 'blockquote', children: parseBlocks(inner, depth + 1, cites) });
      continue;
    }

    const lm = listMarker(line);
    if (lm) {
      const list = { type: 'list', ordered: lm.ordered, start: lm.start, tight: true, items: [] };
      while (i < n) {
        const cur = listMarker(lines[i]);
        if (!cur || cur.ordered !== lm.ordered || HR.test(lines[i])) break;
        const itemLines = [cur.first];
        i++;
        let blankPending = false;
        while (i < n) {
          const l = lines[i];
          if (isBlank(l)) { itemLines.push(''); blankPending = true; i++; continue; }
          const ind = indentWidth(l);
          if (ind >= cur.contentIndent) {
            if (blankPending && itemLines.some((x, k) => k > 0 && isBlank(x))) list.tight = false;
            itemLines.push(stripIndent(l, cur.contentIndent));
            blankPending = false;
            i++;
            continue;
          }
          // Models often indent nested lists by fewer columns than the marker is wide.
          if (ind >= cur.indent + 2 && listMarker(l, true)) {
            itemLines.push(stripIndent(l, Math.min(ind, cur.contentIndent)));
            blankPending = false;
            i++;
            continue;
          }
          if (!blankPending && !startsBlock(l) && !listMarker(l) && !isDelimRow(lines[i + 1])) {
            itemLines.push(l.replace(/^[ \t]+/, ''));
            i++;
            continue;
          }
          break;
        }
        while (itemLines.length > 1 && isBlank(itemLines[itemLines.length - 1])) itemLines.pop();
        if (blankPending && i < n) {
          const next = listMarker(lines[i]);
          if (next && next.ordered === lm.ordered && !HR.test(lines[i])) list.tight = false;
        }
        list.items.push(parseBlocks(itemLines, depth + 1, cites));
      }
      out.push(list);
      continue;
    }

    if (line.includes('|') && isDelimRow(lines[i + 1])) {
      const header = splitRow(line);
      const delims = splitRow(lines[i + 1]);
      if (header.length === delims.length && header.length > 0) {
        const align = delims.map(parseAlign);
        const rows = [];
        i += 2;
        while (i < n && !isBlank(lines[i]) && !startsBlock(lines[i])) {
          const cells = splitRow(lines[i]);
          const row = [];
          for (let k = 0; k < header.length; k++) row.push(parseInline(cells[k] || '', depth, false, cites));
          rows.push(row);
          i++;
        }
        out.push({ type: 'table', header: header.map((c) => parseInline(c, depth, false, cites)), rows, align });
        continue;
      }
    }

    // Paragraph (or setext heading).
    const para = [line.replace(/^[ \t]+/, '')];
    i++;
    let heading = 0;
    while (i < n) {
      const l = lines[i];
      if (isBlank(l)) break;
      if (SETEXT1.test(l)) { heading = 1; i++; break; }
      if (SETEXT2.test(l)) { heading = 2; i++; break; }
      if (startsBlock(l)) break;
      if (l.includes('|') && isDelimRow(lines[i + 1])) break;
      para.push(l.replace(/^[ \t]+/, ''));
      i++;
    }
    const text = para.join('\n').replace(/[ \t]+$/, '');
    if (heading) out.push({ type: 'heading', level: heading, children: parseInline(text, depth, false, cites) });
    else out.push({ type: 'paragraph', children: parseInline(text, depth, false, cites) });
  }
  return out;
}

/**
 * Parse markdown text into a tree of plain objects.
 * @param {string} text
 * @param {{cites?: Iterable<number>}} [opts] cites: the source numbers that exist; "[n]" (and
 *   "[n, m]") in the text becomes {type: 'cite', n} only for those numbers
 */
export function parse(text, opts = {}) {
  if (typeof text !== 'string') text = String(text ?? '');
  const lines = text.replace(/\r\n?/g, '\n').replace(/\u0000/g, '\ufffd').split('\n');
  return parseBlocks(lines, 0, citeSet(opts && opts.cites));
}

/** A Set of positive integers from an iterable of numbers (or of sources with .n); null if empty. */
export function citeSet(cites) {
  if (!cites || typeof cites[Symbol.iterator] !== 'function') return null;
  const set = new Set();
  for (const c of cites) {
    const n = typeof c === 'object' && c !== null ? Number(c.n) : Number(c);
    if (Number.isInteger(n) && n > 0) set.add(n);
  }
  return set.size ? set : null;
}

const CITE = /^\[(\d{1,4}(?:[ \t]*,[ \t]*\d{1,4})*)\]/;

/** The citation numbers of "[1]" or "[1, 2]" at s[i], when every one is a source; else null. */
function citeAt(s, i, cites) {
  if (!cites) return null;
  const m = CITE.exec(s.slice(i, i + 64));
  if (!m) return null;
  const ns = m[1].split(',').map((x) => parseInt(x.trim(), 10));
  if (!ns.every((n) => cites.has(n))) return null;
  return { ns, len: m[0].length };
}

// ---------------------------------------------------------------------------------------------
// Inline parsing

const PUNCT = /[!-/:-@[-`{-~]/;
const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', copy: '\u00a9', reg: '\u00ae', hellip: '\u2026', mdash: '\u2014', ndash: '\u2013', laquo: '\u00ab', raquo: '\u00bb', times: '\u00d7', deg: '\u00b0', rarr: '\u2192', larr: '\u2190' };

function unescapeText(s) {
  return s.replace(/\\([!-/:-@[-`{-~])/g, '$1');
}

function decodeEntity(s, i) {
  const m = /^&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([A-Za-z]{2,8}));/.exec(s.slice(i, i + 12));
  if (!m) return null;
  let ch = null;
  if (m[1] !== undefined || m[2] !== undefined) {
    const cp = m[1] !== undefined ? parseInt(m[1], 10) : parseInt(m[2], 16);
    ch = cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : '\ufffd';
  } else if (Object.prototype.hasOwnProperty.call(ENTITIES, m[3])) {
    ch = ENTITIES[m[3]];
  }
  return ch === null ? null : { text: ch, len: m[0].length };
}

function pushText(out, text) {
  if (!text) return;
  const last = out[out.length - 1];
  if (last && last.type === 'text') last.text += text;
  else out.push({ type: 'text', text });
}

// Pre-scan: code spans (start -> end after closing run) and matching brackets.
function prescan(s) {
  const code = new Map();
  const brackets = new Map();
  const stack = [];
  const failedRun = new Map();
  let i = 0;
  while (i < s.length) {
    const ch = s[i];
    if (ch === '\\') { i += 2; continue; }
    if (ch === '`') {
      let k = 0;
      while (s[i + k] === '`') k++;
      const f = failedRun.get(k);
      const close = f !== undefined && f <= i ? -1 : findRun(s, i + k, '`', k);
      if (close >= 0) { code.set(i, close + k); i = close + k; continue; }
      if (f === undefined || f > i) failedRun.set(k, i);
      i += k;
      continue;
    }
    if (ch === '[') stack.push(i);
    else if (ch === ']' && stack.length) brackets.set(stack.pop(), i);
    i++;
  }
  return { code, brackets };
}

const SPECIAL = /[\\\n`![*_~<&hH]/g;

/**
 * Parse inline markdown.
 * @param {string} s
 * @param {number} depth
 * @param {boolean} inLink links inside a link's text are shown as their text
 * @param {Set<number>|Iterable<number>|null} cites source numbers that "[n]" may cite
 */
export function parseInline(s, depth = 0, inLink = false, cites = null) {
  if (cites && !(cites instanceof Set)) cites = citeSet(cites);
  const out = [];
  if (!s) return out;
  if (depth > MAX_DEPTH) { pushText(out, s); return out; }
  const { code, brackets } = prescan(s);
  const failed = new Map(); // delimiter key -> smallest start from which no closer exists
  const n = s.length;
  let buf = '';
  const flush = () => { if (buf) { pushText(out, buf); buf = ''; } };
  let i = 0;
  const special = new RegExp(SPECIAL.source, 'g');

  while (i < n) {
    special.lastIndex = i;
    const sm = special.exec(s);
    if (!sm) { buf += s.slice(i); break; }
    if (sm.index > i) { buf += s.slice(i, sm.index); i = sm.index; }
    const ch = s[i];

    if (ch === '\\') {
      const nx = s[i + 1];
      if (nx === '\n') { buf = buf.replace(/[ \t]+$/, ''); flush(); out.push({ type: 'br' }); i += 2; while (s[i] === ' ' || s[i] === '\t') i++; continue; }
      if (nx !== undefined && PUNCT.test(nx)) { buf += nx; i += 2; continue; }
      buf += ch; i++; continue;
    }

    if (ch === '\n') {
      buf = buf.replace(/[ \t]+$/, '');
      flush();
      out.push({ type: 'br' });
      i++;
      while (s[i] === ' ' || s[i] === '\t') i++;
      continue;
    }

    if (ch === '`') {
      const end = code.get(i);
      let k = 0;
      while (s[i + k] === '`') k++;
      if (end !== undefined) {
        let t = s.slice(i + k, end - k).replace(/\n/g, ' ');
        if (t.length > 2 && t[0] === ' ' && t[t.length - 1] === ' ' && t.trim() !== '') t = t.slice(1, -1);
        flush();
        out.push({ type: 'code', text: t });
        i = end;
        continue;
      }
      buf += s.slice(i, i + k); i += k; continue;
    }

    if (ch === '[' || (ch === '!' && s[i + 1] === '[')) {
      const image = ch === '!';
      const open = image ? i + 1 : i;
      const lk = tryLink(s, open, brackets);
      if (lk) {
        const href = safeHref(lk.dest);
        if (href === null || inLink) {
          if (inLink && href !== null && !image) {
            flush();
            for (const c of parseInline(lk.text, depth + 1, true)) { if (c.type === 'text') pushText(out, c.text); else out.push(c); }
          } else {
            buf += s.slice(i, lk.end);
          }
        } else {
          flush();
          const children = image
            ? [{ type: 'text', text: unescapeText(lk.text) || href }]
            : parseInline(lk.text, depth + 1, true);
          const node = { type: 'link', href, children };
          if (image) node.image = true;
          out.push(node);
        }
        i = lk.end;
        continue;
      }
      if (!image && !inLink) {
        const c = citeAt(s, i, cites);
        if (c) {
          flush();
          for (const n of c.ns) out.push({ type: 'cite', n });
          i += c.len;
          continue;
        }
      }
      buf += image ? '![' : '['; i += image ? 2 : 1; continue;
    }

    if (ch === '*' || ch === '_' || ch === '~') {
      let k = 0;
      while (s[i + k] === ch) k++;
      const prev = i > 0 ? s[i - 1] : ' ';
      const next = s[i + k];
      const canOpen = next !== undefined && !/\s/.test(next) && !(ch === '_' && /[\p{L}\p{N}]/u.test(prev));
      let done = false;
      if (canOpen) {
        const lens = ch === '~' ? (k >= 2 ? [2] : []) : k >= 2 ? [2, 1] : [1];
        for (const len of lens) {
          const key = ch + len;
          const from = i + len;
          const f = failed.get(key);
          if (f !== undefined && from >= f) continue;
          const close = findCloser(s, from, ch, len, code);
          if (close < 0) { failed.set(key, from); continue; }
          const inner = s.slice(from, close);
          if (inner.trim() === '') continue;
          flush();
          const type = ch === '~' ? 'del' : len === 2 ? 'strong' : 'em';
          out.push({ type, children: parseInline(inner, depth + 1, inLink, cites) });
          i = close + len;
          done = true;
          break;
        }
      }
      if (!done) { buf += s.slice(i, i + k); i += k; }
      continue;
    }

    if (ch === '<') {
      const m = /^<((?:https?:\/\/|mailto:)[^\s<>]*|[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+)>/.exec(s.slice(i, i + 2100));
      if (m) {
        const dest = m[1].includes(':') ? m[1] : 'mailto:' + m[1];
        const href = safeHref(dest);
        if (href && !inLink) { flush(); out.push({ type: 'link', href, children: [{ type: 'text', text: m[1] }] }); i += m[0].length; continue; }
      }
      buf += ch; i++; continue;
    }

    if (ch === '&') {
      const e = decodeEntity(s, i);
      if (e) { buf += e.text; i += e.len; continue; }
      buf += ch; i++; continue;
    }

    if (ch === 'h' || ch === 'H') {
      const prev = i > 0 ? s[i - 1] : ' ';
      if (!inLink && !/[\p{L}\p{N}_/.:@-]/u.test(prev)) {
        const m = /^https?:\/\/[^\s<>"`]+/i.exec(s.slice(i, i + 4100));
        if (m) {
          let url = m[0];
          // Trailing punctuation is not part of a bare URL; nor an unbalanced ")".
          for (;;) {
            const last = url[url.length - 1];
            if (/[.,:;!?'"*_~\]]/.test(last)) { url = url.slice(0, -1); continue; }
            if (last === ')') {
              const opens = url.split('(').length - 1;
              const closes = url.split(')').length - 1;
              if (closes > opens) { url = url.slice(0, -1); continue; }
            }
            break;
          }
          const href = safeHref(url);
          if (href) { flush(); out.push({ type: 'link', href, children: [{ type: 'text', text: url }] }); i += url.length; continue; }
        }
      }
      buf += ch; i++; continue;
    }

    // "!" not followed by "[" (the regex matched it)
    buf += ch;
    i++;
  }
  flush();
  return out;
}

function findCloser(s, from, ch, len, code) {
  let i = from;
  const n = s.length;
  while (i < n) {
    const c = s[i];
    if (c === '\\') { i += 2; continue; }
    if (c === '`') {
      const end = code.get(i);
      if (end !== undefined) { i = end; continue; }
      i++;
      continue;
    }
    if (c === ch) {
      let k = 0;
      while (s[i + k] === ch) k++;
      const prev = s[i - 1];
      const after = s[i + k];
      const okPrev = i > from && prev !== undefined && !/\s/.test(prev);
      const okAfter = ch !== '_' || after === undefined || !/[\p{L}\p{N}]/u.test(after);
      if (k >= len && okPrev && okAfter && (ch !== '~' || k === len || k >= 2)) return i + k - len;
      i += k;
      continue;
    }
    i++;
  }
  return -1;
}

function tryLink(s, open, brackets) {
  const close = brackets.get(open);
  if (close === undefined || s[close + 1] !== '(') return null;
  const n = s.length;
  let j = close + 2;
  const skipWs = () => { while (j < n && (s[j] === ' ' || s[j] === '\t' || s[j] === '\n')) j++; };
  skipWs();
  let dest;
  if (s[j] === '<') {
    const e = s.indexOf('>', j);
    if (e < 0 || e - j > 4096) return null;
    dest = s.slice(j + 1, e);
    if (dest.includes('\n') || dest.includes('<')) return null;
    j = e + 1;
  } else {
    const st = j;
    let d = 0;
    const lim = Math.min(n, j + 2048);
    while (j < lim) {
      const c = s[j];
      if (c === '\\' && j + 1 < n) { j += 2; continue; }
      if (c <= ' ') break;
      if (c === '(') d++;
      else if (c === ')') { if (d === 0) break; d--; }
      j++;
    }
    dest = s.slice(st, j);
  }
  const beforeTitle = j;
  skipWs();
  if (j > beforeTitle && (s[j] === '"' || s[j] === "'" || s[j] === '(')) {
    const q = s[j] === '(' ? ')' : s[j];
    const e = s.indexOf(q, j + 1);
    if (e < 0 || e - j > 4096) return null;
    j = e + 1;
    skipWs();
  }
  if (s[j] !== ')') return null;
  return { text: s.slice(open + 1, close), dest: unescapeText(dest), end: j + 1 };
}

// ---------------------------------------------------------------------------------------------
// Rendering

/** Copy text to the clipboard; falls back to a hidden textarea where the Clipboard API is absent. */
export async function copyText(text, doc = globalThis.document) {
  const nav = globalThis.navigator;
  if (nav && nav.clipboard && typeof nav.clipboard.writeText === 'function') {
    try { await nav.clipboard.writeText(text); return true; } catch { /* fall back */ }
  }
  if (!doc || !doc.body || typeof doc.execCommand !== 'function') return false;
  const ta = doc.createElement('textarea');
  ta.value = text;
  ta.setAttribute('readonly', '');
  ta.className = 'offscreen';
  doc.body.appendChild(ta);
  ta.select();
  let ok = false;
  try { ok = doc.execCommand('copy'); } catch { ok = false; }
  ta.remove();
  return ok;
}

function el(doc, tag, cls) {
  const e = doc.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

function renderInlines(nodes, parent, doc) {
  for (const n of nodes) parent.appendChild(renderInline(n, doc));
}

function renderInline(n, doc) {
  switch (n.type) {
    case 'text': return doc.createTextNode(String(n.text));
    case 'br': return doc.createElement('br');
    case 'code': { const e = el(doc, 'code'); e.textContent = String(n.text); return e; }
    case 'strong': case 'em': case 'del': {
      const e = el(doc, n.type);
      renderInlines(n.children || [], e, doc);
      return e;
    }
    case 'link': {
      const href = safeHref(n.href);
      if (href === null) {
        const span = el(doc, 'span');
        renderInlines(n.children || [], span, doc);
        return span;
      }
      const a = el(doc, 'a', n.image ? 'image-link' : null);
      a.setAttribute('href', href);
      a.setAttribute('rel', 'noopener noreferrer nofollow');
      a.setAttribute('target', '_blank');
      renderInlines(n.children || [], a, doc);
      return a;
    }
    case 'cite': {
      // A citation of source n: the page opens the passage on click (event delegation).
      const num = Number(n.n);
      if (!Number.isInteger(num) || num <= 0) return doc.createTextNode('');
      const b = el(doc, 'button', 'cite');
      b.setAttribute('type', 'button');
      b.setAttribute('data-testid', 'cite');
      b.setAttribute('data-n', String(num));
      b.setAttribute('aria-label', `Source ${num}`);
      b.setAttribute('title', `Source ${num}`);
      b.textContent = String(num);
      return b;
    }
    default: return doc.createTextNode('');
  }
}

function renderCode(n, doc) {
  const wrap = el(doc, 'div', 'code-block');
  const head = el(doc, 'div', 'code-header');
  const label = el(doc, 'span', 'code-lang');
  label.textContent = n.lang ? String(n.lang) : 'text';
  const btn = el(doc, 'button', 'copy');
  btn.setAttribute('type', 'button');
  btn.setAttribute('aria-label', 'Copy code');
  btn.textContent = 'Copy';
  const text = String(n.text);
  if (typeof btn.addEventListener === 'function') {
    btn.addEventListener('click', () => {
      copyText(text, doc).then((ok) => {
        btn.textContent = ok ? 'Copied' : 'Copy failed';
        setTimeout(() => { btn.textContent = 'Copy'; }, 1500);
      });
    });
  }
  head.appendChild(label);
  head.appendChild(btn);
  const pre = el(doc, 'pre');
  const lang = normalizeLang(n.lang || '');
  const code = el(doc, 'code', /^[a-z0-9+#-]{1,20}$/.test(lang) ? 'language-' + lang.replace(/[^a-z0-9-]/g, '_') : null);
  for (const t of highlight(text, lang)) {
    if (t.cls) {
      const span = el(doc, 'span', 'tok-' + t.cls);
      span.textContent = t.text;
      code.appendChild(span);
    } else {
      code.appendChild(doc.createTextNode(t.text));
    }
  }
  pre.appendChild(code);
  wrap.appendChild(head);
  wrap.appendChild(pre);
  return wrap;
}

function renderBlock(n, doc) {
  switch (n.type) {
    case 'paragraph': { const p = el(doc, 'p'); renderInlines(n.children || [], p, doc); return p; }
    case 'heading': {
      const level = Math.min(6, Math.max(1, Number(n.level) | 0));
      const h = el(doc, 'h' + level);
      renderInlines(n.children || [], h, doc);
      return h;
    }
    case 'code_block': return renderCode(n, doc);
    case 'blockquote': {
      const q = el(doc, 'blockquote');
      for (const c of n.children || []) q.appendChild(renderBlock(c, doc));
      return q;
    }
    case 'list': {
      const l = el(doc, n.ordered ? 'ol' : 'ul');
      if (n.ordered && Number.isInteger(n.start) && n.start !== 1) l.setAttribute('start', String(n.start));
      for (const item of n.items || []) {
        const li = el(doc, 'li');
        for (const c of item) {
          if (n.tight && c.type === 'paragraph') {
            const span = el(doc, 'span', 'li-text');
            renderInlines(c.children || [], span, doc);
            li.appendChild(span);
          } else li.appendChild(renderBlock(c, doc));
        }
        l.appendChild(li);
      }
      return l;
    }
    case 'table': {
      const wrap = el(doc, 'div', 'table-wrap');
      const table = el(doc, 'table');
      const thead = el(doc, 'thead');
      const tr = el(doc, 'tr');
      const align = n.align || [];
      (n.header || []).forEach((cell, k) => {
        const th = el(doc, 'th', align[k] ? 'align-' + align[k] : null);
        renderInlines(cell, th, doc);
        tr.appendChild(th);
      });
      thead.appendChild(tr);
      table.appendChild(thead);
      const tbody = el(doc, 'tbody');
      for (const row of n.rows || []) {
        const r = el(doc, 'tr');
        row.forEach((cell, k) => {
          const td = el(doc, 'td', align[k] ? 'align-' + align[k] : null);
          renderInlines(cell, td, doc);
          r.appendChild(td);
        });
        tbody.appendChild(r);
      }
      table.appendChild(tbody);
      wrap.appendChild(table);
      return wrap;
    }
    case 'hr': return el(doc, 'hr');
    default: {
      // Inline nodes at block level (not produced by parse, but render is defensive).
      return renderInline(n, doc);
    }
  }
}

/**
 * Build DOM for parsed nodes.
 * @param {object[]} nodes from parse()
 * @param {Document} doc
 * @returns {DocumentFragment}
 */
export function render(nodes, doc = globalThis.document) {
  const frag = doc.createDocumentFragment();
  for (const n of nodes || []) frag.appendChild(renderBlock(n, doc));
  return frag;
}

const KEYS = new WeakMap();

/**
 * Render markdown text into a container, reusing the DOM of leading blocks that did not change
 * since the last call (so streaming keeps finished blocks, their selection and copy buttons).
 * opts: as for parse() ({cites}).
 */
export function renderInto(container, text, doc = globalThis.document, opts = {}) {
  const nodes = parse(text, opts);
  const keys = nodes.map((nd) => JSON.stringify(nd));
  const old = KEYS.get(container);
  let same = 0;
  if (old && old.length === container.childNodes.length) {
    while (same < keys.length && same < old.length && keys[same] === old[same]) same++;
  } else {
    while (container.firstChild) container.removeChild(container.firstChild);
  }
  while (container.childNodes.length > same) container.removeChild(container.lastChild);
  const frag = doc.createDocumentFragment();
  for (let k = same; k < nodes.length; k++) frag.appendChild(renderBlock(nodes[k], doc));
  container.appendChild(frag);
  KEYS.set(container, keys);
}
