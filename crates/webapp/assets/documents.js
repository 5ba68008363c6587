// The Documents page: collections (own and shared), their documents with upload and progress,
// search in a collection, and (admins) the embedding model. Names, errors and passages come from
// users' files: they only ever go through textContent.

import { h, clear, toast, confirmDialog, announce, fmtBytes, fmtInt, fmtDate } from './dom.js';
import * as api from './api.js';
import { state, isAdmin } from './state.js';
import { loadModels } from './chat.js';
import { openPassage, sourceLabel } from './sources.js';

export const ACCEPT = '.txt,.md,.markdown,.html,.htm,.pdf';
const EXTENSIONS = new Set(['txt', 'md', 'markdown', 'html', 'htm', 'pdf']);
const MAX_BYTES = 64 * 1024 * 1024;
const UNFINISHED = new Set(['queued', 'extracting', 'embedding']);
const KIND_TEXT = { text: 'Text', markdown: 'Markdown', html: 'HTML', pdf: 'PDF' };
const STATUS_TEXT = { queued: 'Queued', extracting: 'Extracting', embedding: 'Embedding', ready: 'Ready', error: 'Failed' };
const POLL_MS = 1000;

const isUnfinished = (d) => UNFINISHED.has(d?.status);
const extOf = (name) => { const m = /\.([^.]+)$/.exec(String(name)); return m ? m[1].toLowerCase() : ''; };
const plural = (n, one, many = one + 's') => `${fmtInt(n)} ${Number(n) === 1 ? one : many}`;

/** What a file picker or a drop gives that the server can take; the rest is reported. */
export function acceptable(files) {
  const ok = [];
  const refused = [];
  for (const f of files) {
    if (!EXTENSIONS.has(extOf(f.name))) refused.push(`${f.name}: not a text, Markdown, HTML or PDF file`);
    else if (f.size > MAX_BYTES) refused.push(`${f.name}: larger than 64 MB`);
    else if (f.size === 0) refused.push(`${f.name}: empty`);
    else ok.push(f);
  }
  return { ok, refused };
}

/** The page; openId: the collection opened by "#/documents/ID" (null: none). */
export async function renderDocuments(top, main, openId = null) {
  top.append(h('h1', { class: 'page-title', text: 'Documents' }));
  const page = h('div', { class: 'page documents-page' });
  main.append(page);

  const view = { alive: true, collections: [], open: null, docs: new Map(), rows: new Map(), poll: 0, uploads: [] };
  state.viewCleanup = () => {
    view.alive = false;
    clearTimeout(view.poll);
    // Uploads already sent go on; the ones still waiting are dropped.
    for (const u of view.uploads) if (!u.started) u.cancelled = true;
  };
  // A file dropped next to the drop zone must not make the browser open it.
  page.addEventListener('dragover', (e) => e.preventDefault());
  page.addEventListener('drop', (e) => e.preventDefault());

  const listBox = h('div', { class: 'collections-box' });
  const detail = h('div', { class: 'collection-detail' });
  // An open collection comes first; the list of all of them below it.
  page.append(...(openId !== null ? [detail, collectionsCard(view, listBox)] : [collectionsCard(view, listBox), detail]));
  if (isAdmin()) page.append(embeddingCard(view));

  view.refresh = () => drawCollections(view, listBox);
  await drawCollections(view, listBox);
  if (!view.alive) return;
  if (openId !== null) {
    const c = view.collections.find((x) => String(x.id) === String(openId));
    if (!c) {
      detail.append(h('div', { class: 'card empty not-found', 'data-testid': 'not-found' },
        h('p', { text: 'This collection does not exist or is not yours.' }),
        h('a', { href: '#/documents', class: 'button', text: 'All collections' })));
      return;
    }
    view.open = c;
    document.title = `${c.name} — Documents — Hearth`;
    await drawDetail(view, detail, listBox);
  }
}

// ---------------------------------------------------------------------------------------------
// Collections

function canDelete(c) {
  const me = state.me?.user;
  if (!me) return false;
  return c.owner === me.username || (c.shared && isAdmin());
}

function collectionsCard(view, listBox) {
  const name = h('input', { id: 'collection-name', type: 'text', required: true, maxlength: '200', autocomplete: 'off', placeholder: 'e.g. Product manuals' });
  const shared = isAdmin() ? h('input', { id: 'collection-shared', type: 'checkbox' }) : null;
  const form = h('form', { class: 'inline-form', 'aria-label': 'New collection' },
    h('label', { class: 'field grow' }, h('span', { text: 'New collection' }), name),
    shared ? h('label', { class: 'check', for: 'collection-shared' }, shared, h('span', { text: 'Shared with everyone' })) : null,
    h('button', { type: 'submit', class: 'button primary', 'data-testid': 'new-collection', text: 'Create collection' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    if (!n) { name.focus(); return; }
    const body = { name: n };
    if (shared) body.shared = shared.checked;
    try {
      const res = await api.post('collections', body);
      name.value = '';
      if (shared) shared.checked = false;
      toast(`Collection “${n}” created`, 'info');
      if (res.collection && res.collection.id !== undefined) state.hooks.navigate('#/documents/' + api.enc(res.collection.id));
      else await drawCollections(view, listBox);
    } catch (err) { toast(err.message); }
  });
  return h('section', { class: 'card' },
    h('h2', { text: 'Collections' }),
    h('p', { class: 'muted', text: 'Upload documents into a collection, then attach it to a chat (the Docs button): answers search it and cite the passages they use.' }),
    form, listBox);
}

async function drawCollections(view, box) {
  let cols;
  try { cols = (await api.get('collections')).collections || []; } catch (e) {
    if (e.status !== 401) toast(e.message);
    clear(box);
    box.append(h('p', { class: 'error', text: `Could not load the collections: ${e.message}` }));
    return;
  }
  if (!view.alive) return;
  view.collections = cols;
  if (view.open) view.open = cols.find((c) => String(c.id) === String(view.open.id)) || view.open;
  clear(box);
  if (!cols.length) { box.append(h('p', { class: 'muted empty-note', text: 'No collections yet.' })); return; }
  const rows = cols.map((c) => {
    const open = view.open && String(view.open.id) === String(c.id);
    const actions = h('td', { class: 'row-actions' });
    if (!open) actions.append(h('a', { href: '#/documents/' + api.enc(c.id), class: 'button small', 'data-testid': 'open-collection', 'aria-label': `Open ${c.name}`, text: 'Open' }));
    if (canDelete(c)) {
      actions.append(h('button', {
        type: 'button', class: 'button small danger', 'data-testid': 'delete-collection', 'aria-label': `Delete collection ${c.name}`, text: 'Delete',
        onclick: async () => {
          const what = c.documents ? ` and its ${plural(c.documents, 'document')}` : '';
          if (!(await confirmDialog(`Delete the collection “${c.name}”${what}? Chats that use it stop finding its passages.`, { ok: 'Delete', danger: true, title: 'Delete collection' }))) return;
          try {
            await api.del(`collections/${api.enc(c.id)}`);
            toast(`Deleted “${c.name}”`, 'info');
          } catch (e) { toast(e.message); }
          if (open) state.hooks.navigate('#/documents');
          else await drawCollections(view, box);
        },
      }));
    }
    const tr = h('tr', { 'data-testid': 'collection-row', 'data-collection-id': c.id, class: open ? 'current' : null },
      h('td', {}, h('a', { href: '#/documents/' + api.enc(c.id), class: 'collection-link', text: String(c.name), 'aria-current': open ? 'page' : null })),
      h('td', {}, c.shared ? h('span', { class: 'badge badge-ok', text: 'shared' }) : h('span', { class: 'muted', text: 'private' })),
      h('td', { text: String(c.owner ?? '—') }),
      h('td', { class: 'num', text: fmtInt(c.documents) }),
      h('td', { class: 'mono', text: c.embedding_model || '—' }),
      h('td', { text: fmtDate(c.created_at) }),
      actions);
    return tr;
  });
  box.append(tableOf(['Name', 'Sharing', 'Owner', 'Documents', 'Embedding model', 'Created', ''], rows, 'collections'));
}

function tableOf(headers, rows, label) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'data', 'aria-label': label },
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', text: x })))),
      h('tbody', {}, rows)));
}

// ---------------------------------------------------------------------------------------------
// One collection: upload, documents, search

async function drawDetail(view, box, listBox) {
  const c = view.open;
  clear(box);
  const input = h('input', { type: 'file', id: 'upload-file', multiple: true, accept: ACCEPT, class: 'file-input', 'aria-label': 'Files to upload' });
  const drop = h('div', { class: 'dropzone', 'data-testid': 'drop-zone' },
    h('p', { class: 'dropzone-text', text: 'Drop files here, or' }),
    h('label', { class: 'button', for: 'upload-file', text: 'Choose files…' }),
    input,
    h('p', { class: 'muted dropzone-note', text: 'Text, Markdown, HTML and PDF, up to 64 MB each.' }));
  const uploads = h('ul', { class: 'uploads', 'aria-label': 'Uploads', 'aria-live': 'polite' });
  const docsBox = h('div', { class: 'documents-box' });

  const queue = (files) => {
    const { ok, refused } = acceptable([...files]);
    for (const r of refused) toast(`Not uploaded: ${r}`);
    for (const f of ok) enqueue(view, c, f, uploads, docsBox, listBox);
  };
  input.addEventListener('change', () => {
    const files = [...(input.files || [])];
    input.value = '';
    queue(files);
  });
  let depth = 0;
  drop.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; drop.classList.add('dragging'); });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy'; });
  drop.addEventListener('dragleave', () => { depth = Math.max(0, depth - 1); if (!depth) drop.classList.remove('dragging'); });
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    e.stopPropagation();
    depth = 0;
    drop.classList.remove('dragging');
    if (e.dataTransfer && e.dataTransfer.files) queue(e.dataTransfer.files);
  });

  const meta = [
    c.shared ? 'Shared with everyone' : 'Private',
    c.owner ? `owner ${c.owner}` : null,
    c.embedding_model ? `embedded with ${c.embedding_model}` : null,
  ].filter(Boolean).join(' · ');
  box.append(h('section', { class: 'card', 'data-testid': 'collection', 'data-collection-id': c.id, 'aria-labelledby': 'collection-title' },
    h('div', { class: 'card-head' },
      h('h2', { id: 'collection-title', text: String(c.name) }),
      h('a', { href: '#/documents', class: 'icon-button', 'aria-label': 'Close the collection', title: 'Close', text: '×' })),
    h('p', { class: 'muted', text: meta }),
    drop, uploads, docsBox,
    searchForm(c)));
  view.refresh = () => { drawCollections(view, listBox); loadDocuments(view, docsBox, listBox); };
  await loadDocuments(view, docsBox, listBox);
}

async function loadDocuments(view, box, listBox) {
  const c = view.open;
  let docs;
  try { docs = (await api.get(`collections/${api.enc(c.id)}/documents`)).documents || []; } catch (e) {
    if (!view.alive) return;
    if (e.status !== 401) toast(e.message);
    clear(box);
    box.append(h('p', { class: 'error', text: `Could not load the documents: ${e.message}` }));
    return;
  }
  if (!view.alive) return;
  view.docs.clear();
  for (const d of docs) view.docs.set(String(d.id), d);
  drawDocuments(view, box, listBox);
}

function drawDocuments(view, box, listBox) {
  clear(box);
  view.rows.clear();
  const docs = [...view.docs.values()];
  if (!docs.length) {
    box.append(h('p', { class: 'muted empty-note', 'data-testid': 'no-documents', text: 'No documents in this collection yet.' }));
    return;
  }
  const tbody = h('tbody', {});
  for (const d of docs) {
    const tr = documentRow(view, d, box, listBox);
    view.rows.set(String(d.id), tr);
    tbody.append(tr);
  }
  box.append(h('div', { class: 'table-wrap' },
    h('table', { class: 'data documents', 'aria-label': 'Documents' },
      h('thead', {}, h('tr', {}, ['Name', 'Kind', 'Size', 'Status', 'Added', ''].map((x) => h('th', { scope: 'col', text: x })))),
      tbody)));
  schedulePoll(view, box, listBox);
}

function statusCell(d) {
  const status = STATUS_TEXT[d.status] ? d.status : 'queued';
  const cell = h('td', { class: 'doc-status' });
  const badgeCls = status === 'ready' ? 'badge-ok' : status === 'error' ? 'badge-error' : 'badge-pending';
  cell.append(h('span', { class: `badge ${badgeCls}`, 'data-testid': 'document-status', text: STATUS_TEXT[status] }));
  if (isUnfinished(d)) {
    const total = Number(d.chunks_total) || 0;
    const done = Math.min(total, Number(d.chunks_done) || 0);
    const bar = h('progress', { class: 'doc-progress', max: String(total || 1), 'aria-label': `Progress of ${d.name}`, 'data-testid': 'document-progress' });
    if (status === 'embedding' && total > 0) bar.value = done;
    else bar.removeAttribute('value'); // indeterminate until the chunks are known
    cell.append(bar);
    cell.append(h('span', { class: 'doc-progress-text muted', text: total > 0 ? `${fmtInt(done)} of ${plural(total, 'chunk')}` : status === 'queued' ? 'waiting' : 'reading the file' }));
  } else if (status === 'ready' && Number(d.chunks_total)) {
    cell.append(h('span', { class: 'doc-progress-text muted', text: plural(d.chunks_total, 'chunk') }));
  }
  if (status === 'error') {
    cell.append(h('p', { class: 'error doc-error', 'data-testid': 'document-error', text: d.error ? String(d.error) : 'The document could not be read.' }));
  }
  return cell;
}

function documentRow(view, d, box, listBox) {
  const name = String(d.name ?? '');
  return h('tr', { 'data-testid': 'document-row', 'data-document-id': d.id, 'data-status': d.status },
    h('td', { class: 'doc-name', title: name, text: name }),
    h('td', { text: KIND_TEXT[d.kind] || String(d.kind ?? '—') }),
    h('td', { class: 'num', text: fmtBytes(d.bytes) }),
    statusCell(d),
    h('td', { text: fmtDate(d.created_at) }),
    h('td', { class: 'row-actions' }, h('button', {
      type: 'button', class: 'button small danger', 'data-testid': 'delete-document', 'aria-label': `Delete document ${name}`, text: 'Delete',
      onclick: async () => {
        if (!(await confirmDialog(`Delete the document “${name}”? Its passages are no longer found.`, { ok: 'Delete', danger: true, title: 'Delete document' }))) return;
        try {
          await api.del(`documents/${api.enc(d.id)}`);
          view.docs.delete(String(d.id));
        } catch (e) {
          toast(e.message);
          if (e.status === 404) view.docs.delete(String(d.id));
        }
        if (!view.alive) return;
        drawDocuments(view, box, listBox);
        drawCollections(view, listBox);
      },
    })));
}

/** Replace one document's row in place (or redraw all when the table is not there yet). */
function updateDocument(view, d, box, listBox) {
  const key = String(d.id);
  view.docs.set(key, d);
  const old = view.rows.get(key);
  if (!old || !old.isConnected) { drawDocuments(view, box, listBox); return; }
  const tr = documentRow(view, d, box, listBox);
  old.replaceWith(tr);
  view.rows.set(key, tr);
}

function schedulePoll(view, box, listBox) {
  if (view.poll || !view.alive) return;
  if (![...view.docs.values()].some(isUnfinished)) return;
  view.poll = setTimeout(() => poll(view, box, listBox), POLL_MS);
}

async function poll(view, box, listBox) {
  view.poll = 0;
  if (!view.alive) return;
  const pending = [...view.docs.values()].filter(isUnfinished);
  let finished = 0;
  await Promise.all(pending.map(async (d) => {
    try {
      const res = await api.get(`documents/${api.enc(d.id)}`);
      if (!view.alive || !res.document) return;
      const nd = res.document;
      if (!view.docs.has(String(d.id))) return; // deleted meanwhile
      if (JSON.stringify(nd) !== JSON.stringify(d)) updateDocument(view, nd, box, listBox);
      if (!isUnfinished(nd)) {
        finished++;
        announce(nd.status === 'ready' ? `${nd.name} is ready` : `${nd.name} failed`);
      }
    } catch (e) {
      if (!view.alive) return;
      if (e.status === 404) { view.docs.delete(String(d.id)); drawDocuments(view, box, listBox); }
      if (e.status === 401) view.alive = false;
    }
  }));
  if (!view.alive) return;
  if (finished) drawCollections(view, listBox);
  schedulePoll(view, box, listBox);
}

/** Upload files one at a time; each shows its own progress bar until the server has it. */
function enqueue(view, c, file, list, box, listBox) {
  const bar = h('progress', { class: 'upload-progress', max: String(file.size || 1), value: '0', 'aria-label': `Upload of ${file.name}` });
  const text = h('span', { class: 'upload-text muted', text: 'waiting' });
  const cancel = h('button', { type: 'button', class: 'icon-button small', 'data-testid': 'cancel-upload', 'aria-label': `Cancel the upload of ${file.name}`, text: '×' });
  const li = h('li', { class: 'upload', 'data-testid': 'upload' },
    h('span', { class: 'upload-name', title: file.name, text: file.name }), bar, text, cancel);
  list.append(li);
  const u = { file, li, started: false, cancelled: false, abort: null };
  cancel.addEventListener('click', () => {
    if (u.abort) u.abort();
    else { u.cancelled = true; li.remove(); view.uploads = view.uploads.filter((x) => x !== u); }
  });
  view.uploads.push(u);
  if (!view.uploading) runUploads(view, c, box, listBox);
}

async function runUploads(view, c, box, listBox) {
  view.uploading = true;
  try {
    while (view.uploads.length) {
      const u = view.uploads.shift();
      if (u.cancelled) continue;
      u.started = true;
      const bar = u.li.querySelector('progress');
      const text = u.li.querySelector('.upload-text');
      text.textContent = '0%';
      const path = `collections/${api.enc(c.id)}/documents?name=${encodeURIComponent(u.file.name)}`;
      const req = api.upload(path, u.file, {
        onProgress: (loaded, total) => {
          bar.max = total || 1;
          bar.value = loaded;
          const pct = total ? Math.floor(100 * loaded / total) : 0;
          text.textContent = loaded >= total && total ? 'processing…' : `${pct}% of ${fmtBytes(total)}`;
        },
      });
      u.abort = req.abort;
      try {
        const res = await req.promise;
        u.li.remove();
        if (view.alive && res.document) {
          view.docs.set(String(res.document.id), res.document);
          drawDocuments(view, box, listBox);
          drawCollections(view, listBox);
        }
      } catch (e) {
        if (e.name === 'AbortError') { u.li.remove(); continue; }
        u.li.classList.add('failed');
        bar.remove();
        text.className = 'upload-text error';
        text.textContent = e.message;
        const btn = u.li.querySelector('[data-testid="cancel-upload"]');
        if (btn) {
          const dismiss = h('button', { type: 'button', class: 'icon-button small', 'data-testid': 'dismiss-upload', 'aria-label': `Dismiss ${u.file.name}`, text: '×', onclick: () => u.li.remove() });
          btn.replaceWith(dismiss);
        }
        if (e.status === 401) break;
      }
    }
  } finally {
    view.uploading = false;
  }
}

function searchForm(c) {
  const q = h('input', { id: 'collection-search', type: 'search', autocomplete: 'off', placeholder: 'Find passages by meaning…', 'aria-label': `Search ${c.name}` });
  const results = h('div', { class: 'collection-hits', 'data-testid': 'collection-hits', 'aria-live': 'polite' });
  const form = h('form', { class: 'inline-form search-form', role: 'search' },
    h('label', { class: 'field grow' }, h('span', { text: 'Search this collection' }), q),
    h('button', { type: 'submit', class: 'button', 'data-testid': 'collection-search-go', text: 'Search' }));
  let seq = 0;
  let timer = 0;
  const run = async () => {
    clearTimeout(timer);
    const text = q.value.trim();
    const my = ++seq;
    if (!text) { clear(results); return; }
    let hits;
    try { hits = (await api.get(`collections/${api.enc(c.id)}/search?q=${api.enc(text)}`)).hits || []; } catch (e) {
      if (my !== seq) return;
      clear(results);
      if (e.status !== 401) results.append(h('p', { class: 'error', text: e.message }));
      return;
    }
    if (my !== seq) return;
    clear(results);
    if (!hits.length) { results.append(h('p', { class: 'muted', text: 'No matching passages.' })); return; }
    results.append(h('ol', { class: 'hits' }, hits.map((hit) => h('li', { class: 'hit', 'data-testid': 'collection-hit', 'data-chunk-id': hit.chunk_id ?? '' },
      h('button', { type: 'button', class: 'hit-source', title: 'Show the whole passage', onclick: () => openPassage({ ...hit, n: undefined }) },
        h('span', { class: 'hit-label', text: sourceLabel(hit) }),
        typeof hit.score === 'number' ? h('span', { class: 'hit-score muted', text: `score ${hit.score.toFixed(2)}` }) : null),
      h('p', { class: 'hit-text', text: String(hit.text ?? '') })))));
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); run(); });
  q.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(run, 400); });
  return h('div', { class: 'collection-search' }, h('h3', { text: 'Search' }), form, results);
}

// ---------------------------------------------------------------------------------------------
// Embedding model (admins)

function embeddingCard(view) {
  const select = h('select', { id: 'embedding-model', class: 'select', 'aria-label': 'Embedding model', disabled: true },
    h('option', { value: '', text: 'Loading…' }));
  const note = h('p', { class: 'muted', 'aria-live': 'polite' });
  const card = h('section', { class: 'card' },
    h('h2', { text: 'Embedding model' }),
    h('p', { class: 'muted', text: 'The model that turns passages and questions into vectors (a BERT model such as all-MiniLM). Changing it re-embeds every document.' }),
    h('label', { class: 'field' }, h('span', { text: 'Model' }), select),
    note);
  let current = null;

  const fill = (model, installed, models) => {
    current = model ?? null;
    clear(select);
    // "name" and "name:latest" are one model: list it once, as the current value spells it.
    const byKey = new Map();
    const key = (n) => String(n).replace(/:latest$/, '');
    const add = (n, prefer = false) => { if (n && (prefer || !byKey.has(key(n)))) byKey.set(key(n), String(n)); };
    for (const m of models) {
      const d = m.details || {};
      const fams = [d.family, ...(Array.isArray(d.families) ? d.families : [])].map((x) => String(x || '').toLowerCase());
      if (fams.includes('bert')) add(m.name);
    }
    for (const n of Array.isArray(installed) ? installed : []) add(n);
    if (current) add(current, true);
    const names = new Set(byKey.values());
    if (!current) select.append(h('option', { value: '', text: names.size ? 'None: choose a model' : 'No embedding model installed' }));
    for (const n of [...names].sort()) select.append(h('option', { value: n, text: n }));
    select.value = current || '';
    select.disabled = names.size === 0;
    clear(note);
    if (!names.size) note.append('Install a BERT embedding model first (', h('a', { href: '#/models', text: 'Models' }), ').');
  };

  (async () => {
    try {
      const [res, models] = await Promise.all([api.get('embedding-model'), loadModels(true)]);
      if (view.alive) fill(res.model, res.installed, models);
    } catch (e) {
      if (!view.alive) return;
      clear(select);
      select.append(h('option', { value: '', text: 'Unavailable' }));
      note.textContent = e.status === 401 ? '' : `Could not load the embedding model: ${e.message}`;
    }
  })();

  select.addEventListener('change', async () => {
    const model = select.value;
    if (!model || model === current) return;
    select.disabled = true;
    try {
      const res = await api.put('embedding-model', { model });
      current = res.model ?? model;
      toast(`Embedding model set to ${current}; documents are being embedded again.`, 'info');
      if (view.alive) {
        fill(current, res.installed, state.models || []);
        if (view.refresh) view.refresh();
      }
    } catch (e) {
      toast(e.message);
      select.value = current || '';
    } finally {
      select.disabled = select.options.length === 0 || (select.options.length === 1 && !select.options[0].value);
    }
  });
  return card;
}
