// Sources of an answer and passages of documents: the "Sources" list under an answer and the
// passage dialog that a citation, a source or a search hit opens. All text is untrusted (it comes
// from uploaded documents): it only ever goes through textContent.

import { h, clear } from './dom.js';
import * as api from './api.js';

/** "Manual.pdf — page 3", or just the document's name when there is no location. */
export function sourceLabel(s) {
  const doc = String(s?.document ?? 'Unknown document');
  const loc = s?.location ? String(s.location) : '';
  return loc ? `${doc} — ${loc}` : doc;
}

/** The sources that can be shown: an array of objects with a positive integer n. */
export function validSources(sources) {
  if (!Array.isArray(sources)) return null;
  const ok = sources.filter((s) => s && typeof s === 'object' && Number.isInteger(Number(s.n)) && Number(s.n) > 0);
  return ok.length ? ok : null;
}

/** The "Sources" list: numbered buttons "[n] document — location" that open the passage. */
export function sourcesView(sources) {
  const list = h('ol', { class: 'source-list' });
  for (const s of sources) {
    list.append(h('li', {},
      h('button', {
        type: 'button', class: 'source', 'data-testid': 'source', 'data-chunk-id': s.chunk_id ?? '', 'data-n': s.n,
        title: 'Show the passage',
      },
      h('span', { class: 'source-n', text: `[${s.n}]` }), ' ',
      h('span', { class: 'source-label', text: sourceLabel(s) }))));
  }
  return h('section', { class: 'sources', 'data-testid': 'sources', 'aria-label': 'Sources' },
    h('h3', { class: 'sources-title', text: 'Sources' }), list);
}

/**
 * Open the passage dialog for a source (or a search hit): its document and location and the
 * passage's text, then the full chunk from GET chunks/{chunk_id} when it arrives.
 */
export function openPassage(source) {
  document.querySelectorAll('dialog[data-testid="passage"]').forEach((d) => { d.close?.(); d.remove(); });
  const titleId = 'dlg-' + Math.random().toString(36).slice(2);
  const d = h('dialog', { class: 'dialog dialog-wide passage-dialog', 'aria-labelledby': titleId, 'data-testid': 'passage' });
  const close = () => { d.close?.(); d.remove(); };
  const heading = h('h2', { id: titleId, class: 'passage-document', 'data-testid': 'passage-document' });
  const location = h('p', { class: 'passage-location muted', 'data-testid': 'passage-location' });
  const text = h('div', { class: 'passage-text', 'data-testid': 'passage-text', tabindex: '0' });
  const note = h('p', { class: 'passage-note muted', 'aria-live': 'polite' });
  const fill = (s) => {
    const n = Number(source?.n);
    heading.textContent = (Number.isInteger(n) && n > 0 ? `[${n}] ` : '') + String(s?.document ?? 'Unknown document');
    location.textContent = s?.location ? String(s.location) : '';
    location.hidden = !s?.location;
    text.textContent = typeof s?.text === 'string' ? s.text : '';
  };
  fill(source);
  d.append(
    h('div', { class: 'dialog-head' },
      heading,
      h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close', 'data-testid': 'passage-close', text: '×', onclick: close })),
    h('div', { class: 'dialog-body' }, location, text, note),
  );
  d.addEventListener('cancel', (e) => { e.preventDefault(); close(); });
  d.addEventListener('click', (e) => { if (e.target === d) close(); });
  document.body.appendChild(d);
  if (typeof d.showModal === 'function') d.showModal();
  else d.setAttribute('open', '');

  const id = source?.chunk_id;
  if (id !== undefined && id !== null && id !== '') {
    if (!text.textContent) note.textContent = 'Loading the passage…';
    api.get(`chunks/${api.enc(id)}`).then((c) => {
      if (!d.isConnected || !c || typeof c !== 'object') return;
      fill({ document: c.document ?? source.document, location: c.location ?? source.location, text: typeof c.text === 'string' ? c.text : source.text });
      clear(note);
    }, (e) => {
      if (!d.isConnected) return;
      note.textContent = e.status === 404
        ? 'The document of this passage is no longer there.'
        : text.textContent ? '' : `Could not load the passage: ${e.message}`;
    });
  }
  return d;
}
