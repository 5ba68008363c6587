// The chat view: model and preset pickers, settings, export/import, messages, composer, streaming.

import { h, clear, toast, announce, fileName, download, fmtBytes, fmtInt, fmt1 } from './dom.js';
import * as api from './api.js';
import { renderInto, copyText } from './markdown.js';
import { state, store, load } from './state.js';
import { sourcesView, validSources, openPassage } from './sources.js';

// ---------------------------------------------------------------------------------------------
// Models and presets (cached; pages that change them call with force)

export async function loadModels(force = false) {
  if (state.models && !force) return state.models;
  try {
    const res = await api.ollama.tags();
    state.models = Array.isArray(res.models) ? res.models : [];
  } catch (e) {
    if (e.status !== 401) toast(e.message);
    state.models = state.models || [];
  }
  return state.models;
}

export async function loadPresets(force = false) {
  if (state.presets && !force) return state.presets;
  try {
    const res = await api.get('presets');
    state.presets = Array.isArray(res.presets) ? res.presets : [];
  } catch (e) {
    if (e.status !== 401) toast(e.message);
    state.presets = state.presets || [];
  }
  return state.presets;
}

/** "qwen2.5-coder:0.5b — 0.5B Q4_K_M, 398 MB" */
export function modelLabel(m) {
  const d = m.details || {};
  const bits = [d.parameter_size, d.quantization_level].filter(Boolean).join(' ');
  const size = m.size ? fmtBytes(m.size) : '';
  const tail = [bits, size].filter(Boolean).join(', ');
  return tail ? `${m.name} — ${tail}` : String(m.name);
}

// "name" and "name:latest" are the same model, as Ollama names them.
const sameModel = (a, b) => a === b || `${a}:latest` === b || a === `${b}:latest`;

function modelOptions(select, models, selected) {
  clear(select);
  if (!models.length) select.appendChild(h('option', { value: '', text: 'No models installed' }));
  for (const m of models) select.appendChild(h('option', { value: m.name, text: modelLabel(m) }));
  const installed = selected && models.find((m) => sameModel(m.name, selected));
  if (installed) selected = installed.name;
  else if (selected) {
    select.appendChild(h('option', { value: selected, text: `${selected} — not installed` }));
  }
  if (selected) select.value = selected;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const STATUS_TEXT = {
  interrupted: 'interrupted: the server stopped during this answer',
  stopped: 'stopped',
  error: 'error',
};

function statsText(s) {
  if (!s || typeof s !== 'object') return '';
  const parts = [];
  if (s.generated_tokens !== undefined && s.generated_tokens !== null) parts.push(`${fmtInt(s.generated_tokens)} tokens`);
  if (s.tokens_per_second) parts.push(`${fmt1(s.tokens_per_second)} tok/s`);
  if (s.context_used !== undefined && s.context_used !== null) {
    parts.push(s.context_size ? `context ${fmtInt(s.context_used)}/${fmtInt(s.context_size)}` : `context ${fmtInt(s.context_used)}`);
  }
  return parts.join(' · ');
}

export function titleFrom(text) {
  const words = String(text).trim().split(/\s+/).slice(0, 6).join(' ');
  return words.length > 80 ? words.slice(0, 79) + '…' : words || 'New chat';
}

const settingsOf = (ctx) => (ctx.chat ? ctx.chat.settings || {} : ctx.draft);

/** The collection ids attached to the chat (settings.collections). */
function attachedIds(ctx) {
  const c = settingsOf(ctx).collections;
  return Array.isArray(c) ? c.filter((x) => x !== null && x !== undefined) : [];
}

let current = null; // the chat view on screen

export function focusComposer() {
  if (current && current.prompt && current.prompt.isConnected) { current.prompt.focus(); return true; }
  return false;
}

export function stopGeneration() {
  if (state.stream) { state.stream.ctrl.abort(); return true; }
  return false;
}

// ---------------------------------------------------------------------------------------------
// The view

/**
 * Render the chat view for chatId (null: a new chat) into the top bar slot and the main area.
 */
export async function renderChat(top, main, chatId) {
  const ctx = {
    chatId,
    chat: null,
    messages: [],
    articles: new Map(),
    draft: { system: null, temperature: null, num_ctx: null },
    stick: true,
  };
  current = ctx;

  // Top bar: model, preset, settings, export, import.
  ctx.modelSelect = h('select', { id: 'model', 'aria-label': 'Model', class: 'select model-select' },
    h('option', { value: '', text: 'Loading models…' }));
  ctx.presetSelect = h('select', { id: 'preset', 'aria-label': 'Assistant preset', class: 'select preset-select' });
  ctx.settingsBtn = h('button', {
    type: 'button', class: 'icon-button', 'aria-label': 'Chat settings', title: 'Chat settings',
    'aria-expanded': 'false', 'aria-controls': 'chat-settings', 'data-testid': 'chat-settings', text: '⚙',
  });
  ctx.attachBtn = h('button', {
    type: 'button', class: 'button small attach-button', 'aria-label': 'Attach documents', title: 'Answer from documents',
    'aria-expanded': 'false', 'aria-controls': 'attach-panel', 'data-testid': 'attach', text: 'Docs',
  });
  ctx.chips = h('ul', { class: 'chips attached-chips', 'aria-label': 'Attached document collections', 'data-testid': 'attached-collections', hidden: true });
  ctx.exportMd = h('button', { type: 'button', class: 'button small', 'data-testid': 'export-md', text: 'Export .md', 'aria-label': 'Export as Markdown', disabled: !chatId });
  ctx.exportJson = h('button', { type: 'button', class: 'button small', 'data-testid': 'export-json', text: 'Export .json', 'aria-label': 'Export as JSON', disabled: !chatId });
  const fileInput = h('input', { type: 'file', accept: 'application/json,.json', class: 'sr-only', id: 'import-file', 'aria-label': 'Chat file to import', tabindex: '-1' });
  const importBtn = h('button', { type: 'button', class: 'button small', 'data-testid': 'import', text: 'Import', 'aria-label': 'Import a chat from JSON', onclick: () => fileInput.click() });
  top.append(h('div', { class: 'chat-tools' },
    ctx.modelSelect, ctx.presetSelect, ctx.settingsBtn, ctx.attachBtn, ctx.chips,
    h('span', { class: 'tool-group' }, ctx.exportMd, ctx.exportJson, importBtn, fileInput)));

  // Attach documents panel.
  ctx.attachList = h('div', { class: 'attach-list' });
  ctx.attachPanel = h('form', { id: 'attach-panel', class: 'settings-panel attach-panel', hidden: true, 'aria-label': 'Attach documents' },
    h('h2', { class: 'panel-title', text: 'Answer from documents' }),
    h('p', { class: 'muted panel-note', text: 'Answers in this chat search the checked collections and cite their passages.' }),
    ctx.attachList,
    h('div', { class: 'panel-actions' },
      h('a', { href: '#/documents', class: 'button', text: 'Manage documents' }),
      h('button', { type: 'button', class: 'button primary', 'data-testid': 'attach-close', text: 'Done', onclick: () => toggleAttach(ctx, false) })));
  ctx.collections = null;
  ctx.attachQueue = Promise.resolve();

  // Settings panel.
  ctx.system = h('textarea', { id: 'system', rows: '3', placeholder: 'You are a helpful assistant.' });
  ctx.temperature = h('input', { id: 'temperature', type: 'number', min: '0', max: '2', step: '0.05', placeholder: 'model default', inputmode: 'decimal' });
  ctx.numCtx = h('input', { id: 'num_ctx', type: 'number', min: '256', step: '256', placeholder: 'model default', inputmode: 'numeric' });
  ctx.panel = h('form', { id: 'chat-settings', class: 'settings-panel', hidden: true, 'aria-label': 'Chat settings' },
    h('label', { class: 'field', for: 'system' }, h('span', { text: 'System prompt' })), ctx.system,
    h('div', { class: 'field-row' },
      h('label', { class: 'field' }, h('span', { text: 'Temperature' }), ctx.temperature),
      h('label', { class: 'field' }, h('span', { text: 'Context length' }), ctx.numCtx)),
    h('div', { class: 'panel-actions' },
      h('button', { type: 'button', class: 'button', text: 'Close', onclick: () => togglePanel(ctx, false) }),
      h('button', { type: 'submit', class: 'button primary', 'data-testid': 'save-settings', text: 'Save settings' })));

  // Messages and composer.
  ctx.list = h('div', { class: 'messages-inner' });
  ctx.scroller = h('div', { class: 'messages', role: 'log', 'aria-label': 'Messages', 'aria-live': 'off', tabindex: '0' }, ctx.list);
  ctx.prompt = h('textarea', { id: 'prompt', 'aria-label': 'Message', rows: '1', placeholder: 'Message Hearth…', autocomplete: 'off' });
  ctx.sendBtn = h('button', { type: 'submit', class: 'send-button', 'data-testid': 'send', 'aria-label': 'Send', text: 'Send' });
  ctx.composer = h('form', { class: 'composer', 'aria-label': 'Send a message' },
    h('div', { class: 'composer-box' }, ctx.prompt, ctx.sendBtn));
  ctx.hint = h('p', { class: 'composer-hint', text: 'Answers are generated on this machine and may be wrong.' });
  main.append(h('section', { class: 'chat-view', 'aria-label': 'Chat' }, ctx.panel, ctx.attachPanel, ctx.scroller, ctx.composer, ctx.hint));

  wire(ctx, fileInput);

  // Data.
  const chatReq = chatId ? api.get(`chats/${api.enc(chatId)}`).then((r) => ({ ok: r }), (e) => ({ err: e })) : Promise.resolve(null);
  const [models, presets, chatRes] = await Promise.all([loadModels(), loadPresets(), chatReq]);
  if (current !== ctx) return;

  if (chatRes && chatRes.err) {
    const e = chatRes.err;
    if (e.status === 404 || e.status === 400 || e.status === 403) {
      clear(main);
      clear(top);
      top.append(h('h1', { class: 'page-title', text: 'Chat' }));
      main.append(h('div', { class: 'empty not-found', 'data-testid': 'not-found' },
        h('p', { text: 'This chat does not exist or is not yours.' }),
        h('a', { href: '#/', class: 'button primary', text: 'Start a new chat' })));
      document.title = 'Hearth';
    } else if (e.status !== 401) {
      toast(e.message);
    }
    return;
  }
  if (chatRes) {
    ctx.chat = chatRes.ok.chat;
    ctx.messages = Array.isArray(chatRes.ok.messages) ? chatRes.ok.messages : [];
    document.title = `${ctx.chat.title || 'Chat'} — Hearth`;
  } else {
    document.title = 'New chat — Hearth';
  }

  const wanted = ctx.chat ? ctx.chat.model : load('model');
  const selected = ctx.chat ? wanted : (models.some((m) => m.name === wanted) ? wanted : models[0]?.name || '');
  modelOptions(ctx.modelSelect, models, selected);
  presetOptions(ctx, presets);
  fillSettings(ctx);
  drawChips(ctx);
  if (attachedIds(ctx).length) loadCollections(ctx).then(() => { if (current === ctx) drawChips(ctx); });

  renderMessages(ctx);
  // Re-attach to an answer still being generated for this chat.
  const s = state.stream;
  if (s && ctx.chat && s.chatId === ctx.chat.id) {
    s.ctx = ctx;
    if (s.message) {
      const idx = ctx.messages.findIndex((m) => m.id === s.message.id);
      const live = { ...s.message, content: s.text, status: 'streaming', sources: s.sources || s.message.sources || null };
      if (idx >= 0) ctx.messages[idx] = live;
      else ctx.messages.push(live);
      renderMessages(ctx);
      const art = ctx.articles.get(s.message.id);
      s.article = art;
      s.content = art && art.querySelector('.content');
    }
  }
  setStreaming(ctx, !!(s && ctx.chat && s.chatId === ctx.chat.id));
  scrollToEnd(ctx, true);
  if (window.matchMedia('(min-width: 761px)').matches) ctx.prompt.focus();
}

function presetOptions(ctx, presets) {
  clear(ctx.presetSelect);
  ctx.presetSelect.appendChild(h('option', { value: '', text: presets.length ? 'Assistant…' : 'No assistants' }));
  for (const p of presets) ctx.presetSelect.appendChild(h('option', { value: String(p.id), text: p.name }));
  ctx.presetSelect.disabled = presets.length === 0;
}

function fillSettings(ctx) {
  const s = settingsOf(ctx);
  ctx.system.value = s.system ?? '';
  ctx.temperature.value = s.temperature ?? '';
  ctx.numCtx.value = s.num_ctx ?? '';
}

function readSettings(ctx) {
  const system = ctx.system.value.trim() ? ctx.system.value : null;
  const t = ctx.temperature.value.trim();
  const c = ctx.numCtx.value.trim();
  const temperature = t === '' || Number.isNaN(Number(t)) ? null : Number(t);
  const num_ctx = c === '' || Number.isNaN(parseInt(c, 10)) ? null : parseInt(c, 10);
  // The whole settings object: keep what this form does not edit (the attached collections).
  return { ...settingsOf(ctx), system, temperature, num_ctx };
}

// ---------------------------------------------------------------------------------------------
// Attached document collections (settings.collections)

async function loadCollections(ctx, { quiet = true } = {}) {
  try {
    const res = await api.get('collections');
    ctx.collections = Array.isArray(res.collections) ? res.collections : [];
  } catch (e) {
    if (!quiet && e.status !== 401) toast(e.message);
    if (!ctx.collections) ctx.collections = null;
  }
  return ctx.collections;
}

function collectionName(ctx, id) {
  const c = (ctx.collections || []).find((x) => String(x.id) === String(id));
  return c ? String(c.name) : `Collection ${id}`;
}

function drawChips(ctx) {
  clear(ctx.chips);
  const ids = attachedIds(ctx);
  ctx.chips.hidden = ids.length === 0;
  ctx.attachBtn.textContent = ids.length ? `Docs (${ids.length})` : 'Docs';
  ctx.attachBtn.classList.toggle('active', ids.length > 0);
  for (const id of ids) {
    const name = collectionName(ctx, id);
    ctx.chips.append(h('li', { class: 'chip attached-chip', 'data-testid': 'attached-collection', 'data-collection-id': id, title: name },
      h('span', { class: 'chip-text', text: name }),
      h('button', {
        type: 'button', class: 'chip-remove', 'data-testid': 'detach', 'aria-label': `Stop using ${name}`, text: '×',
        onclick: () => saveCollections(ctx, ids.filter((x) => String(x) !== String(id))),
      })));
  }
}

function drawAttachList(ctx) {
  clear(ctx.attachList);
  const cols = ctx.collections;
  if (cols === null) {
    ctx.attachList.append(h('p', { class: 'error', text: 'Could not load the document collections.' }));
    return;
  }
  const ids = attachedIds(ctx).map(String);
  if (!cols.length) {
    ctx.attachList.append(h('p', { class: 'muted' }, 'No document collections yet. ', h('a', { href: '#/documents', text: 'Create one on the Documents page' }), '.'));
  }
  const list = h('ul', { class: 'attach-options' });
  for (const c of cols) {
    const box = h('input', { type: 'checkbox', id: `attach-${c.id}`, value: String(c.id), checked: ids.includes(String(c.id)) });
    box.addEventListener('change', () => {
      const chosen = [...ctx.attachList.querySelectorAll('input[type="checkbox"]')].filter((b) => b.checked).map((b) => b.value);
      // Keep ids that are attached but not listed (e.g. no longer visible), then the checked ones.
      const listed = new Set(cols.map((x) => String(x.id)));
      const keep = attachedIds(ctx).filter((x) => !listed.has(String(x)));
      const next = [...keep, ...chosen.map((v) => (cols.find((x) => String(x.id) === v) || { id: v }).id)];
      saveCollections(ctx, next);
    });
    const meta = [c.shared ? 'shared' : null, `${fmtInt(c.documents)} document${Number(c.documents) === 1 ? '' : 's'}`].filter(Boolean).join(' · ');
    list.append(h('li', { 'data-testid': 'attach-option', 'data-collection-id': c.id },
      h('label', { class: 'check', for: `attach-${c.id}` }, box,
        h('span', { class: 'check-text', text: String(c.name) }),
        h('span', { class: 'muted check-meta', text: meta }))));
  }
  ctx.attachList.append(list);
  // Attached collections that are gone (deleted, or no longer shared).
  const listed = new Set(cols.map((x) => String(x.id)));
  const gone = ids.filter((x) => !listed.has(x));
  if (gone.length) {
    ctx.attachList.append(h('p', { class: 'muted' }, `${gone.length} attached collection${gone.length === 1 ? ' is' : 's are'} no longer available. `,
      h('button', { type: 'button', class: 'button small', text: 'Remove', onclick: () => saveCollections(ctx, attachedIds(ctx).filter((x) => listed.has(String(x)))) })));
  }
}

async function toggleAttach(ctx, open) {
  const show = open ?? ctx.attachPanel.hidden;
  ctx.attachPanel.hidden = !show;
  ctx.attachBtn.setAttribute('aria-expanded', String(show));
  if (!show) return;
  togglePanel(ctx, false);
  clear(ctx.attachList);
  ctx.attachList.append(h('p', { class: 'muted', text: 'Loading collections…' }));
  await loadCollections(ctx, { quiet: false });
  if (current !== ctx || ctx.attachPanel.hidden) return;
  drawAttachList(ctx);
  drawChips(ctx);
  const first = ctx.attachList.querySelector('input');
  if (first) first.focus();
}

/** Store the attached collections: PATCH the chat's whole settings, or keep them for a new chat. */
function saveCollections(ctx, ids) {
  ctx.attachQueue = ctx.attachQueue.then(async () => {
    const settings = { ...settingsOf(ctx), collections: ids };
    if (ctx.chat) {
      await patchChat(ctx, { settings });
    } else {
      ctx.draft = settings;
    }
    if (current !== ctx) return;
    drawChips(ctx);
    if (!ctx.attachPanel.hidden && ctx.collections) drawAttachList(ctx);
  });
  return ctx.attachQueue;
}

function togglePanel(ctx, open) {
  const show = open ?? ctx.panel.hidden;
  ctx.panel.hidden = !show;
  ctx.settingsBtn.setAttribute('aria-expanded', String(show));
  if (show) {
    if (ctx.attachPanel && !ctx.attachPanel.hidden) toggleAttach(ctx, false);
    ctx.system.focus();
  }
}

async function patchChat(ctx, body) {
  try {
    const res = await api.patch(`chats/${api.enc(ctx.chat.id)}`, body);
    if (res.chat) ctx.chat = res.chat;
    return true;
  } catch (e) {
    toast(e.message);
    return false;
  }
}

function wire(ctx, fileInput) {
  ctx.settingsBtn.addEventListener('click', () => togglePanel(ctx));
  ctx.attachBtn.addEventListener('click', () => toggleAttach(ctx));
  ctx.attachPanel.addEventListener('submit', (e) => { e.preventDefault(); toggleAttach(ctx, false); });
  ctx.attachPanel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.stopPropagation(); toggleAttach(ctx, false); ctx.attachBtn.focus(); } });
  ctx.panel.addEventListener('submit', async (e) => {
    e.preventDefault();
    const settings = readSettings(ctx);
    if (ctx.chat) {
      if (await patchChat(ctx, { settings })) toast('Settings saved', 'info');
    } else {
      ctx.draft = settings;
      toast('Settings kept for this new chat', 'info');
    }
    togglePanel(ctx, false);
  });

  ctx.modelSelect.addEventListener('change', () => {
    const model = ctx.modelSelect.value;
    if (model) store('model', model);
    if (ctx.chat && model) patchChat(ctx, { model });
  });

  ctx.presetSelect.addEventListener('change', async () => {
    const p = (state.presets || []).find((x) => String(x.id) === ctx.presetSelect.value);
    if (!p) return;
    const settings = { ...settingsOf(ctx), system: p.settings?.system ?? null, temperature: p.settings?.temperature ?? null, num_ctx: p.settings?.num_ctx ?? null };
    if (p.model) {
      if (![...ctx.modelSelect.options].some((o) => o.value === p.model)) {
        ctx.modelSelect.appendChild(h('option', { value: p.model, text: `${p.model} — not installed` }));
      }
      ctx.modelSelect.value = p.model;
    }
    if (ctx.chat) {
      const body = { settings };
      if (p.model) body.model = p.model;
      await patchChat(ctx, body);
    } else {
      ctx.draft = settings;
    }
    fillSettings(ctx);
    toast(`Using “${p.name}”`, 'info');
  });

  ctx.exportMd.addEventListener('click', () => exportChat(ctx, 'md'));
  ctx.exportJson.addEventListener('click', () => exportChat(ctx, 'json'));
  fileInput.addEventListener('change', async () => {
    const f = fileInput.files && fileInput.files[0];
    fileInput.value = '';
    if (!f) return;
    let data;
    try { data = JSON.parse(await f.text()); } catch { toast('That file is not valid JSON.'); return; }
    try {
      const res = await api.post('chats/import', data);
      await state.hooks.refreshChats();
      state.hooks.navigate('#/c/' + api.enc(res.chat.id));
      toast('Chat imported', 'info');
    } catch (e) {
      toast(e.message);
    }
  });

  ctx.scroller.addEventListener('scroll', () => {
    const el = ctx.scroller;
    ctx.stick = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }, { passive: true });

  const autosize = () => {
    ctx.prompt.style.height = 'auto';
    ctx.prompt.style.height = Math.min(ctx.prompt.scrollHeight, 260) + 'px';
  };
  ctx.prompt.addEventListener('input', autosize);
  ctx.prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey) {
      e.preventDefault();
      ctx.composer.requestSubmit ? ctx.composer.requestSubmit() : ctx.composer.dispatchEvent(new Event('submit', { cancelable: true }));
    }
  });
  ctx.sendBtn.addEventListener('click', (e) => {
    if (ctx.sendBtn.dataset.testid === 'stop') { e.preventDefault(); stopGeneration(); }
  });
  ctx.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    if (state.stream && ctx.chat && state.stream.chatId === ctx.chat.id) return;
    const content = ctx.prompt.value;
    if (!content.trim()) return;
    ctx.prompt.value = '';
    autosize();
    send(ctx, { content }).then((ok) => {
      if (!ok && !ctx.prompt.value) { ctx.prompt.value = content; autosize(); }
    });
  });
}

async function exportChat(ctx, format) {
  if (!ctx.chat) return;
  try {
    const q = format === 'md' ? 'markdown' : 'json';
    const res = await api.request('GET', api.appUrl(`chats/${api.enc(ctx.chat.id)}/export?format=${q}`), undefined, { raw: true });
    const data = await res.blob();
    const type = format === 'md' ? 'text/markdown;charset=utf-8' : 'application/json';
    download(new Blob([data], { type }), fileName(ctx.chat.title, format === 'md' ? 'md' : 'json'));
  } catch (e) {
    toast(e.message);
  }
}

// ---------------------------------------------------------------------------------------------
// Messages

function renderMessages(ctx) {
  clear(ctx.list);
  ctx.articles.clear();
  if (!ctx.messages.length) {
    const noModels = state.models && state.models.length === 0;
    ctx.list.append(h('div', { class: 'welcome' },
      h('img', { src: '/assets/icon.svg', alt: '', class: 'welcome-icon', width: '56', height: '56' }),
      h('h1', { text: 'How can I help?' }),
      noModels
        ? h('p', {}, 'No models are installed yet. ', h('a', { href: '#/models', text: 'Pull one on the Models page' }), '.')
        : h('p', { text: 'Everything stays on this machine.' })));
    return;
  }
  for (const m of ctx.messages) {
    const art = messageView(ctx, m);
    ctx.articles.set(m.id, art);
    ctx.list.appendChild(art);
  }
}

function messageView(ctx, msg) {
  const role = msg.role === 'user' || msg.role === 'system' ? msg.role : 'assistant';
  const status = ['done', 'streaming', 'interrupted', 'stopped', 'error'].includes(msg.status) ? msg.status : 'done';
  const art = h('article', {
    class: 'message', 'data-role': role, 'data-status': status,
    'data-message-id': msg.id ?? '',
    'aria-label': role === 'user' ? 'You said' : role === 'system' ? 'System message' : 'Answer',
  });
  const author = role === 'user' ? 'You' : role === 'system' ? 'System' : (msg.model || ctx.chat?.model || 'Assistant');
  const head = h('div', { class: 'message-head' }, h('span', { class: 'author', text: author }));
  if (STATUS_TEXT[status]) head.append(h('span', { class: `badge badge-${status}`, text: STATUS_TEXT[status] }));
  const content = h('div', { class: 'content' });
  const sources = role === 'assistant' ? validSources(msg.sources) : null;
  if (role === 'assistant') {
    try { renderInto(content, msg.content || '', undefined, { cites: sources }); } catch { content.textContent = msg.content || ''; }
  } else {
    content.textContent = msg.content || '';
  }
  art.append(head, content);
  if (role === 'assistant') {
    if (sources) {
      art.append(sourcesView(sources));
      ART_SOURCES.set(art, sources);
      art.addEventListener('click', onSourceClick);
    }
    const st = statsText(msg.stats);
    art.append(h('div', { class: 'stats', text: st, hidden: !st }));
  }
  art.append(h('div', { class: 'actions' }));
  fillActions(ctx, msg, art);
  return art;
}

const ART_SOURCES = new WeakMap();

/** A click on a citation [n] or a source of an answer opens that passage. */
function onSourceClick(e) {
  const art = e.currentTarget;
  const btn = e.target instanceof Element ? e.target.closest('button.cite, button[data-testid="source"]') : null;
  if (!btn || !art.contains(btn)) return;
  const n = Number(btn.dataset.n);
  const src = (ART_SOURCES.get(art) || []).find((s) => Number(s.n) === n);
  if (!src) return;
  e.preventDefault();
  openPassage(src);
}

function refreshActions(ctx) {
  for (const m of ctx.messages) {
    const art = ctx.articles.get(m.id);
    if (art) fillActions(ctx, m, art);
  }
}

function fillActions(ctx, msg, art) {
  const box = art.querySelector('.actions');
  if (!box) return;
  clear(box);
  const busy = !!state.stream;
  if (msg.role === 'system') return;
  if (msg.status === 'streaming' && busy) return;
  const copy = h('button', { type: 'button', class: 'action', 'data-testid': 'copy-message', 'aria-label': 'Copy message', text: 'Copy' });
  copy.addEventListener('click', async () => {
    const ok = await copyText(msg.content || '');
    copy.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
  });
  box.append(copy);
  if (busy) return;
  if (msg.role === 'user') {
    box.append(h('button', { type: 'button', class: 'action', 'data-testid': 'edit', 'aria-label': 'Edit message', text: 'Edit', onclick: () => startEdit(ctx, msg, art) }));
  } else {
    const last = [...ctx.messages].reverse().find((m) => m.role === 'assistant');
    if (last && last.id === msg.id) {
      box.append(h('button', { type: 'button', class: 'action', 'data-testid': 'regenerate', 'aria-label': 'Regenerate answer', text: 'Regenerate', onclick: () => send(ctx, { regenerate: true }) }));
    }
  }
}

function startEdit(ctx, msg, art) {
  const content = art.querySelector('.content');
  const actions = art.querySelector('.actions');
  const ta = h('textarea', { class: 'edit-box', 'aria-label': 'Edit message', value: msg.content || '', rows: '4' });
  const box = h('div', { class: 'edit' }, ta);
  const restore = () => { box.replaceWith(content); actions.hidden = false; };
  box.append(h('div', { class: 'edit-actions' },
    h('button', { type: 'button', class: 'button', 'data-testid': 'cancel-edit', text: 'Cancel', onclick: restore }),
    h('button', {
      type: 'button', class: 'button primary', 'data-testid': 'save-edit', text: 'Save & send',
      onclick: () => {
        const text = ta.value;
        if (!text.trim()) return;
        send(ctx, { content: text, edit: msg.id });
      },
    })));
  ta.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.stopPropagation(); restore(); } });
  content.replaceWith(box);
  actions.hidden = true;
  ta.focus();
}

function upsertMessage(ctx, msg) {
  const idx = ctx.messages.findIndex((m) => m.id === msg.id);
  if (ctx.messages.length === 0) clear(ctx.list);
  const art = messageView(ctx, msg);
  if (idx >= 0) {
    ctx.messages[idx] = msg;
    const old = ctx.articles.get(msg.id);
    if (old && old.isConnected) old.replaceWith(art);
    else ctx.list.appendChild(art);
  } else {
    ctx.messages.push(msg);
    ctx.list.appendChild(art);
  }
  ctx.articles.set(msg.id, art);
  return art;
}

function removeFrom(ctx, index) {
  for (const m of ctx.messages.slice(index)) {
    const art = ctx.articles.get(m.id);
    if (art) art.remove();
    ctx.articles.delete(m.id);
  }
  ctx.messages = ctx.messages.slice(0, index);
}

function scrollToEnd(ctx, force = false) {
  if (force || ctx.stick) ctx.scroller.scrollTop = ctx.scroller.scrollHeight;
}

function setStreaming(ctx, on) {
  const b = ctx.sendBtn;
  if (!b) return;
  if (on) {
    b.type = 'button';
    b.dataset.testid = 'stop';
    b.setAttribute('aria-label', 'Stop generating');
    b.textContent = 'Stop';
    b.classList.add('stop');
  } else {
    b.type = 'submit';
    b.dataset.testid = 'send';
    b.setAttribute('aria-label', 'Send');
    b.textContent = 'Send';
    b.classList.remove('stop');
  }
}

function scheduleRender(stream) {
  if (stream.raf) return;
  stream.raf = requestAnimationFrame(() => {
    stream.raf = 0;
    paint(stream);
  });
}

function paint(stream) {
  if (!stream.content || !stream.content.isConnected) return;
  try { renderInto(stream.content, stream.text, undefined, { cites: validSources(stream.sources) }); } catch { stream.content.textContent = stream.text; }
  scrollToEnd(stream.ctx);
}

function finalize(stream, msg) {
  if (stream.raf) { cancelAnimationFrame(stream.raf); stream.raf = 0; }
  const ctx = stream.ctx;
  const art = upsertMessage(ctx, msg);
  stream.article = art;
  scrollToEnd(ctx);
}

async function reload(ctx) {
  if (!ctx.chat || current !== ctx) return;
  try {
    const res = await api.get(`chats/${api.enc(ctx.chat.id)}`);
    ctx.chat = res.chat;
    ctx.messages = res.messages || [];
    renderMessages(ctx);
  } catch { /* keep what is shown */ }
}

/**
 * Send a message ({content}), regenerate ({regenerate: true}) or edit ({content, edit: id}).
 * Resolves false when nothing was sent (so the composer can keep the text).
 */
async function send(ctx, body) {
  if (state.stream) {
    toast('An answer is still being generated: wait for it or stop it.');
    return false;
  }
  if (!ctx.chat) {
    const model = ctx.modelSelect.value;
    if (!model) { toast('Choose a model first (install one on the Models page).'); return false; }
    try {
      const res = await api.post('chats', { title: titleFrom(body.content || ''), model, settings: ctx.draft });
      ctx.chat = res.chat;
    } catch (e) {
      toast(e.message);
      return false;
    }
    const hash = '#/c/' + api.enc(ctx.chat.id);
    state.ignoreHash = hash;
    location.hash = hash;
    ctx.exportMd.disabled = false;
    ctx.exportJson.disabled = false;
    document.title = `${ctx.chat.title || 'Chat'} — Hearth`;
    state.hooks.refreshChats();
  }

  if (body.regenerate) {
    let idx = -1;
    for (let k = ctx.messages.length - 1; k >= 0; k--) if (ctx.messages[k].role === 'assistant') { idx = k; break; }
    if (idx >= 0) removeFrom(ctx, idx);
  } else if (body.edit !== undefined) {
    const idx = ctx.messages.findIndex((m) => m.id === body.edit);
    if (idx >= 0) removeFrom(ctx, idx);
  }

  const stream = { chatId: ctx.chat.id, ctrl: new AbortController(), text: '', message: null, sources: null, article: null, content: null, raf: 0, ctx };
  // The message as it stands, with the sources sent before the answer.
  const live = (extra) => ({ ...stream.message, sources: stream.sources || stream.message?.sources || null, ...extra });
  state.stream = stream;
  setStreaming(ctx, true);
  refreshActions(ctx);
  ctx.stick = true;
  let finished = false;
  let failed = false;
  try {
    const res = await api.request('POST', api.appUrl(`chats/${api.enc(ctx.chat.id)}/messages`), body, { raw: true, signal: stream.ctrl.signal });
    for await (const ev of api.ndjson(res)) {
      const c = stream.ctx;
      if (ev.type === 'user' && ev.message) {
        upsertMessage(c, ev.message);
        scrollToEnd(c, true);
      } else if (ev.type === 'sources') {
        stream.sources = validSources(ev.sources);
        if (stream.message) {
          if (stream.raf) { cancelAnimationFrame(stream.raf); stream.raf = 0; }
          const art = upsertMessage(c, live({ content: stream.text, status: 'streaming' }));
          stream.article = art;
          stream.content = art.querySelector('.content');
          scrollToEnd(c);
        }
      } else if (ev.type === 'assistant' && ev.message) {
        stream.message = ev.message;
        stream.text = ev.message.content || '';
        const art = upsertMessage(c, live({ status: 'streaming' }));
        stream.article = art;
        stream.content = art.querySelector('.content');
        scrollToEnd(c);
      } else if (ev.type === 'token') {
        stream.text += typeof ev.text === 'string' ? ev.text : '';
        scheduleRender(stream);
      } else if (ev.type === 'done' && ev.message) {
        finished = true;
        stream.message = ev.message;
        finalize(stream, { ...ev.message, sources: ev.message.sources || stream.sources || null });
      } else if (ev.type === 'error') {
        finished = true;
        toast(typeof ev.error === 'string' ? ev.error : 'The answer failed.');
        if (stream.message) finalize(stream, live({ content: stream.text, status: 'error' }));
      }
    }
    if (!finished && stream.message) {
      finalize(stream, live({ content: stream.text, status: 'interrupted' }));
    }
  } catch (e) {
    if (e && e.name === 'AbortError') {
      if (stream.message) finalize(stream, live({ content: stream.text, status: 'stopped' }));
    } else {
      failed = true;
      toast(e && e.message ? e.message : 'The request failed.');
      if (stream.message) finalize(stream, live({ content: stream.text, status: 'error' }));
    }
  } finally {
    if (stream.raf) cancelAnimationFrame(stream.raf);
    state.stream = null;
    const c = stream.ctx;
    setStreaming(c, false);
    refreshActions(c);
    announce('Answer finished');
    state.hooks.refreshChats();
    if (failed && !stream.message) await reload(c);
  }
  return true;
}
