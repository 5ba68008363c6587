// The Models, Machine, Usage and Settings pages.

import { h, clear, toast, confirmDialog, infoDialog, fmtBytes, fmtInt, fmt1, fmtUsd, fmtTime, fmtDate } from './dom.js';
import * as api from './api.js';
import { copyText } from './markdown.js';
import { state, isAdmin, isMulti } from './state.js';
import { loadModels, loadPresets, modelLabel } from './chat.js';

const title = (top, text) => top.append(h('h1', { class: 'page-title', text }));
const section = (heading, ...content) => h('section', { class: 'card' }, h('h2', { text: heading }), ...content);
const table = (headers, rows, attrs = {}) => h('div', { class: 'table-wrap' },
  h('table', { class: 'data', ...attrs },
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', text: x })))),
    h('tbody', {}, rows)));

// ---------------------------------------------------------------------------------------------
// Models

export async function renderModels(top, main) {
  title(top, 'Models');
  const body = h('div', { class: 'page' });
  main.append(body);
  const listBox = h('div', {});
  const details = h('div', { class: 'model-details', hidden: true, 'aria-live': 'polite' });

  if (isAdmin()) {
    const name = h('input', { id: 'pull-name', type: 'text', placeholder: 'llama3.2, qwen2.5-coder:0.5b, hf.co/USER/REPO:Q4_K_M', autocomplete: 'off', required: true });
    const btn = h('button', { type: 'submit', class: 'button primary', 'data-testid': 'pull', text: 'Pull' });
    const progress = h('progress', { class: 'pull-progress', max: '1', value: '0', hidden: true, 'aria-label': 'Download progress' });
    const status = h('p', { class: 'pull-status', 'aria-live': 'polite', 'data-testid': 'pull-status' });
    let ctrl = null;
    const form = h('form', { class: 'inline-form' },
      h('label', { class: 'field grow' }, h('span', { text: 'Pull a model' }), name), btn);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (ctrl) { ctrl.abort(); return; }
      const model = name.value.trim();
      if (!model) return;
      ctrl = new AbortController();
      btn.textContent = 'Cancel';
      btn.dataset.testid = 'pull-cancel';
      progress.hidden = false;
      progress.removeAttribute('value');
      status.textContent = 'Starting…';
      let ok = false;
      try {
        const res = await api.ollama.pull(model, ctrl.signal);
        for await (const ev of api.ndjson(res)) {
          if (ev.error) { toast(String(ev.error)); status.textContent = `Failed: ${ev.error}`; break; }
          const st = String(ev.status ?? '');
          if (ev.total) {
            progress.max = Number(ev.total);
            progress.value = Number(ev.completed) || 0;
            status.textContent = `${st} — ${fmtBytes(ev.completed || 0)} of ${fmtBytes(ev.total)} (${Math.floor(100 * (ev.completed || 0) / ev.total)}%)`;
          } else {
            progress.removeAttribute('value');
            status.textContent = st;
          }
          if (st === 'success') ok = true;
        }
      } catch (err) {
        if (err.name === 'AbortError') status.textContent = 'Cancelled.';
        else { toast(err.message); status.textContent = `Failed: ${err.message}`; }
      } finally {
        ctrl = null;
        btn.textContent = 'Pull';
        btn.dataset.testid = 'pull';
        if (ok) {
          progress.max = 1; progress.value = 1;
          status.textContent = `Pulled ${model}.`;
          name.value = '';
        }
        await refresh(true);
      }
    });
    body.append(section('Pull', form, progress, status));
  }
  body.append(section('Installed', listBox), details);

  async function refresh(force) {
    const models = await loadModels(force);
    clear(listBox);
    if (!models.length) { listBox.append(h('p', { class: 'muted', text: 'No models installed yet.' })); return; }
    const rows = models.map((m) => {
      const d = m.details || {};
      const actions = h('td', { class: 'row-actions' },
        h('button', { type: 'button', class: 'button small', 'data-testid': 'show-model', 'aria-label': `Details of ${m.name}`, text: 'Details', onclick: () => show(m.name) }));
      if (isAdmin()) {
        actions.append(h('button', {
          type: 'button', class: 'button small danger', 'data-testid': 'delete-model', 'aria-label': `Delete ${m.name}`, text: 'Delete',
          onclick: async () => {
            if (!(await confirmDialog(`Delete the model “${m.name}”? Its files are removed unless another model uses them.`, { ok: 'Delete', danger: true }))) return;
            try { await api.ollama.remove(m.name); toast(`Deleted ${m.name}`, 'info'); } catch (e) { toast(e.message); }
            await refresh(true);
          },
        }));
      }
      return h('tr', { 'data-testid': 'model-row', 'data-model': m.name },
        h('td', { class: 'mono', text: m.name }),
        h('td', { text: d.family || '—' }),
        h('td', { text: d.parameter_size || '—' }),
        h('td', { text: d.quantization_level || '—' }),
        h('td', { class: 'num', text: fmtBytes(m.size) }),
        h('td', { text: fmtTime(m.modified_at) }),
        actions);
    });
    listBox.append(table(['Name', 'Family', 'Parameters', 'Quantization', 'Size', 'Modified', ''], rows));
  }

  async function show(model) {
    details.hidden = false;
    clear(details);
    details.append(h('p', { class: 'muted', text: `Loading ${model}…` }));
    try {
      const info = await api.ollama.show(model);
      clear(details);
      const d = info.details || {};
      const license = typeof info.license === 'string' ? info.license : Array.isArray(info.license) ? info.license.join('\n') : '';
      const dl = h('dl', { class: 'kv' });
      for (const [k, v] of [['Family', d.family], ['Format', d.format], ['Parameters', d.parameter_size], ['Quantization', d.quantization_level]]) {
        if (v) dl.append(h('dt', { text: k }), h('dd', { text: String(v) }));
      }
      details.append(h('div', { class: 'card' },
        h('div', { class: 'card-head' },
          h('h2', { text: model }),
          h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close details', text: '×', onclick: () => { details.hidden = true; } })),
        dl,
        h('h3', { text: 'Parameters' }), h('pre', { class: 'block', text: info.parameters || '(none)' }),
        h('h3', { text: 'Template' }), h('pre', { class: 'block', text: info.template || '(none)' }),
        info.system ? [h('h3', { text: 'System prompt' }), h('pre', { class: 'block', text: info.system })] : null,
        h('h3', { text: 'License' }), h('pre', { class: 'block', text: license ? (license.length > 1200 ? license.slice(0, 1200) + '…' : license) : '(none)' })));
      details.scrollIntoView({ block: 'nearest' });
    } catch (e) {
      clear(details);
      details.hidden = true;
      toast(e.message);
    }
  }

  await refresh(true);
}

// ---------------------------------------------------------------------------------------------
// Machine

export async function renderMachine(top, main) {
  title(top, 'Machine');
  const body = h('div', { class: 'page machine' });
  main.append(body);
  let timer = null;
  let stopped = false;

  async function tick() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const m = await api.get('machine');
        if (!stopped) draw(m);
      } catch (e) {
        if (e.status === 401) { stopped = true; return; }
      }
    }
    if (!stopped) timer = setTimeout(tick, 2000);
  }

  function draw(m) {
    clear(body);
    const total = Number(m.memory_total) || 0;
    const avail = Number(m.memory_available) || 0;
    const used = Math.max(0, total - avail);
    const mem = h('progress', { max: String(total || 1), value: String(used), 'aria-label': 'Memory in use' });
    const feats = Array.isArray(m.features) ? m.features : [];
    const loaded = Array.isArray(m.loaded) ? m.loaded : [];
    const tp = m.throughput || {};
    body.append(
      h('div', { class: 'grid' },
        section('Memory',
          h('p', { class: 'big', 'data-testid': 'ram' }, `${fmtBytes(avail)} available`),
          mem,
          h('p', { class: 'muted', text: `${fmtBytes(used)} in use of ${fmtBytes(total)}` })),
        section('Processor',
          h('p', { class: 'big', 'data-testid': 'cpu', text: m.cpu || 'Unknown CPU' }),
          h('p', { class: 'muted', text: `${fmtInt(m.cores)} cores` }),
          h('ul', { class: 'chips', 'aria-label': 'CPU features' }, feats.map((f) => h('li', { class: 'chip', text: String(f) })))),
        section('Throughput',
          h('p', { class: 'big', 'data-testid': 'tps', text: `${fmt1(tp.tokens_per_second_1m)} tok/s` }),
          h('p', { class: 'muted', text: `over the last minute · ${fmtInt(tp.generated_tokens_total)} tokens generated in all` }))),
      section('Loaded models',
        loaded.length
          ? table(['Model', 'Memory', 'State'], loaded.map((l) => h('tr', {},
            h('td', { class: 'mono', text: l.name }),
            h('td', { class: 'num', text: fmtBytes(l.bytes) }),
            h('td', { text: l.active ? 'generating' : 'idle' }))))
          : h('p', { class: 'muted', text: 'No model is loaded.' })),
    );
  }

  state.viewCleanup = () => { stopped = true; clearTimeout(timer); };
  await tick();
}

// ---------------------------------------------------------------------------------------------
// Usage

export async function renderUsage(top, main) {
  title(top, 'Usage');
  const body = h('div', { class: 'page' });
  main.append(body);
  let data;
  try { data = await api.get('usage'); } catch (e) { if (e.status !== 401) toast(e.message); return; }
  draw();

  function draw() {
    clear(body);
    const rows = Array.isArray(data.rows) ? data.rows : [];
    const prices = data.prices || { input_per_million: 0, output_per_million: 0 };
    const pin = Number(prices.input_per_million) || 0;
    const pout = Number(prices.output_per_million) || 0;
    const cost = (r) => (Number(r.prompt_tokens) || 0) / 1e6 * pin + (Number(r.generated_tokens) || 0) / 1e6 * pout;
    const tot = rows.reduce((a, r) => ({
      req: a.req + (Number(r.requests) || 0), inp: a.inp + (Number(r.prompt_tokens) || 0), out: a.out + (Number(r.generated_tokens) || 0), cost: a.cost + cost(r),
    }), { req: 0, inp: 0, out: 0, cost: 0 });
    body.append(h('div', { class: 'grid' },
      section('Tokens in', h('p', { class: 'big', 'data-testid': 'total-in', text: fmtInt(tot.inp) })),
      section('Tokens out', h('p', { class: 'big', 'data-testid': 'total-out', text: fmtInt(tot.out) })),
      section('What this would have cost', h('p', { class: 'big', 'data-testid': 'total-cost', text: fmtUsd(tot.cost) }),
        h('p', { class: 'muted', text: `at ${fmtUsd(pin)} per million tokens in and ${fmtUsd(pout)} per million out` }))));
    const trs = rows.map((r) => h('tr', { 'data-testid': 'usage-row' },
      h('td', { text: r.day }), h('td', { text: r.username }), h('td', { class: 'mono', text: r.model }),
      h('td', { class: 'num', text: fmtInt(r.requests) }), h('td', { class: 'num', text: fmtInt(r.prompt_tokens) }),
      h('td', { class: 'num', text: fmtInt(r.generated_tokens) }), h('td', { class: 'num', text: fmtUsd(cost(r)) })));
    const t = table(['Day', 'User', 'Model', 'Requests', 'Tokens in', 'Tokens out', 'Cost'], trs);
    t.querySelector('table').append(h('tfoot', {}, h('tr', {},
      h('th', { scope: 'row', colspan: '3', text: 'Total' }),
      h('td', { class: 'num', text: fmtInt(tot.req) }), h('td', { class: 'num', text: fmtInt(tot.inp) }),
      h('td', { class: 'num', text: fmtInt(tot.out) }), h('td', { class: 'num', text: fmtUsd(tot.cost) }))));
    body.append(section('By day, user and model', rows.length ? t : h('p', { class: 'muted', text: 'Nothing used yet.' })));

    if (isAdmin()) {
      const inp = h('input', { id: 'price-input', type: 'number', min: '0', step: '0.01', value: String(pin), inputmode: 'decimal' });
      const out = h('input', { id: 'price-output', type: 'number', min: '0', step: '0.01', value: String(pout), inputmode: 'decimal' });
      const form = h('form', { class: 'inline-form' },
        h('label', { class: 'field' }, h('span', { text: 'USD per million tokens in' }), inp),
        h('label', { class: 'field' }, h('span', { text: 'USD per million tokens out' }), out),
        h('button', { type: 'submit', class: 'button primary', 'data-testid': 'save-prices', text: 'Save prices' }));
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        try {
          const res = await api.put('prices', { input_per_million: Number(inp.value) || 0, output_per_million: Number(out.value) || 0 });
          data.prices = res.prices || { input_per_million: Number(inp.value) || 0, output_per_million: Number(out.value) || 0 };
          toast('Prices saved', 'info');
          draw();
        } catch (err) { toast(err.message); }
      });
      body.append(section('Prices', form));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Settings: API keys, assistants (presets), users

export async function renderSettings(top, main) {
  title(top, 'Settings');
  const body = h('div', { class: 'page' });
  main.append(body);
  const keysBox = h('div', {});
  const presetsBox = h('div', {});
  const usersBox = h('div', {});
  body.append(keysSection(keysBox), presetsSection(presetsBox));
  if (isAdmin() && isMulti()) body.append(usersSection(usersBox));
  await Promise.all([drawKeys(keysBox), drawPresets(presetsBox), isAdmin() && isMulti() ? drawUsers(usersBox) : null]);
}

function keysSection(box) {
  const name = h('input', { id: 'key-name', type: 'text', required: true, placeholder: 'e.g. laptop editor', autocomplete: 'off', maxlength: '100' });
  const secretBox = h('div', { class: 'secret', hidden: true });
  const form = h('form', { class: 'inline-form' },
    h('label', { class: 'field grow' }, h('span', { text: 'New key name' }), name),
    h('button', { type: 'submit', class: 'button primary', 'data-testid': 'create-key', text: 'Create key' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!name.value.trim()) return;
    try {
      const res = await api.post('keys', { name: name.value.trim() });
      name.value = '';
      clear(secretBox);
      secretBox.hidden = false;
      const code = h('code', { class: 'mono', 'data-testid': 'new-key', text: String(res.secret) });
      const copy = h('button', { type: 'button', class: 'button small', 'data-testid': 'copy-key', 'aria-label': 'Copy key', text: 'Copy' });
      copy.addEventListener('click', async () => { copy.textContent = (await copyText(String(res.secret))) ? 'Copied' : 'Copy failed'; });
      secretBox.append(h('p', { text: 'Copy this key now: it will not be shown again.' }), h('div', { class: 'secret-row' }, code, copy),
        h('p', { class: 'muted', text: 'Use it as Authorization: Bearer KEY with the Ollama or OpenAI API.' }));
      await drawKeys(box);
    } catch (err) { toast(err.message); }
  });
  return section('API keys', h('p', { class: 'muted', text: 'Keys let programs use the API as you.' }), form, secretBox, box);
}

async function drawKeys(box) {
  let keys;
  try { keys = (await api.get('keys')).keys || []; } catch (e) { if (e.status !== 401) toast(e.message); return; }
  clear(box);
  if (!keys.length) { box.append(h('p', { class: 'muted', text: 'No API keys.' })); return; }
  box.append(table(['Name', 'Key', 'Created', 'Last used', ''], keys.map((k) => h('tr', { 'data-testid': 'key-row' },
    h('td', { text: k.name }), h('td', { class: 'mono', text: `${k.prefix}…` }),
    h('td', { text: fmtDate(k.created_at) }), h('td', { text: k.last_used_at ? fmtTime(k.last_used_at) : 'never' }),
    h('td', { class: 'row-actions' }, h('button', {
      type: 'button', class: 'button small danger', 'data-testid': 'revoke-key', 'aria-label': `Revoke key ${k.name}`, text: 'Revoke',
      onclick: async () => {
        if (!(await confirmDialog(`Revoke the key “${k.name}”? Programs using it stop working.`, { ok: 'Revoke', danger: true }))) return;
        try { await api.del(`keys/${api.enc(k.id)}`); } catch (e) { toast(e.message); }
        await drawKeys(box);
      },
    }))))));
}

function presetsSection(box) {
  return section('Assistants', h('p', { class: 'muted', text: 'Saved combinations of model, system prompt and settings, offered in the chat’s assistant picker.' }), box);
}

async function drawPresets(box, editing = null) {
  const [presets, models] = await Promise.all([loadPresets(true), loadModels()]);
  clear(box);
  if (presets.length) {
    box.append(table(['Name', 'Model', 'System prompt', 'Temperature', 'Context', ''], presets.map((p) => h('tr', { 'data-testid': 'preset-row', 'data-preset-id': p.id },
      h('td', { text: p.name }), h('td', { class: 'mono', text: p.model || 'any' }),
      h('td', { class: 'clip', text: p.settings?.system || '—' }),
      h('td', { class: 'num', text: p.settings?.temperature ?? '—' }), h('td', { class: 'num', text: p.settings?.num_ctx ?? '—' }),
      h('td', { class: 'row-actions' },
        h('button', { type: 'button', class: 'button small', 'data-testid': 'edit-preset', 'aria-label': `Edit ${p.name}`, text: 'Edit', onclick: () => drawPresets(box, p) }),
        h('button', {
          type: 'button', class: 'button small danger', 'data-testid': 'delete-preset', 'aria-label': `Delete ${p.name}`, text: 'Delete',
          onclick: async () => {
            if (!(await confirmDialog(`Delete the assistant “${p.name}”?`, { ok: 'Delete', danger: true }))) return;
            try { await api.del(`presets/${api.enc(p.id)}`); } catch (e) { toast(e.message); }
            await drawPresets(box);
          },
        }))))));
  }
  const s = editing?.settings || {};
  const name = h('input', { id: 'preset-name', type: 'text', required: true, value: editing?.name || '', maxlength: '100', autocomplete: 'off' });
  const model = h('select', { id: 'preset-model', class: 'select' }, h('option', { value: '', text: 'Any model (keep the chat’s)' }),
    models.map((m) => h('option', { value: m.name, text: modelLabel(m) })));
  if (editing?.model && !models.some((m) => m.name === editing.model)) model.append(h('option', { value: editing.model, text: `${editing.model} — not installed` }));
  model.value = editing?.model || '';
  const system = h('textarea', { id: 'preset-system', rows: '3', value: s.system || '' });
  const temp = h('input', { id: 'preset-temperature', type: 'number', min: '0', max: '2', step: '0.05', value: s.temperature ?? '', placeholder: 'model default' });
  const ctxLen = h('input', { id: 'preset-num_ctx', type: 'number', min: '256', step: '256', value: s.num_ctx ?? '', placeholder: 'model default' });
  const form = h('form', { class: 'stack-form', 'aria-label': editing ? 'Edit assistant' : 'New assistant' },
    h('h3', { text: editing ? `Edit “${editing.name}”` : 'New assistant' }),
    h('div', { class: 'field-row' },
      h('label', { class: 'field' }, h('span', { text: 'Name' }), name),
      h('label', { class: 'field' }, h('span', { text: 'Model' }), model)),
    h('label', { class: 'field' }, h('span', { text: 'System prompt' }), system),
    h('div', { class: 'field-row' },
      h('label', { class: 'field' }, h('span', { text: 'Temperature' }), temp),
      h('label', { class: 'field' }, h('span', { text: 'Context length' }), ctxLen)),
    h('div', { class: 'panel-actions' },
      editing ? h('button', { type: 'button', class: 'button', text: 'Cancel', onclick: () => drawPresets(box) }) : null,
      h('button', { type: 'submit', class: 'button primary', 'data-testid': 'save-preset', text: editing ? 'Save assistant' : 'Create assistant' })));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const payload = {
      name: name.value.trim(),
      model: model.value || null,
      settings: {
        system: system.value.trim() ? system.value : null,
        temperature: temp.value === '' ? null : Number(temp.value),
        num_ctx: ctxLen.value === '' ? null : parseInt(ctxLen.value, 10),
      },
    };
    if (!payload.name) return;
    try {
      if (editing) await api.put(`presets/${api.enc(editing.id)}`, payload);
      else await api.post('presets', payload);
      toast(editing ? 'Assistant saved' : 'Assistant created', 'info');
      await drawPresets(box);
    } catch (err) { toast(err.message); }
  });
  box.append(form);
  if (editing) name.focus();
}

function usersSection(box) {
  const username = h('input', { id: 'new-username', type: 'text', required: true, autocomplete: 'off', maxlength: '64' });
  const password = h('input', { id: 'new-password', type: 'password', required: true, autocomplete: 'new-password' });
  const role = h('select', { id: 'new-role', class: 'select' }, h('option', { value: 'user', text: 'User' }), h('option', { value: 'admin', text: 'Administrator' }));
  const form = h('form', { class: 'inline-form' },
    h('label', { class: 'field' }, h('span', { text: 'Username' }), username),
    h('label', { class: 'field' }, h('span', { text: 'Password' }), password),
    h('label', { class: 'field' }, h('span', { text: 'Role' }), role),
    h('button', { type: 'submit', class: 'button primary', 'data-testid': 'create-user', text: 'Create user' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api.post('users', { username: username.value.trim(), password: password.value, role: role.value });
      username.value = ''; password.value = '';
      toast('User created', 'info');
      await drawUsers(box);
    } catch (err) { toast(err.message); }
  });
  return section('Users', box, h('h3', { text: 'Create a user' }), form);
}

async function drawUsers(box) {
  let users;
  try { users = (await api.get('users')).users || []; } catch (e) { if (e.status !== 401) toast(e.message); return; }
  clear(box);
  const me = state.me?.user;
  const act = (u, body, label, testid, danger = false) => h('button', {
    type: 'button', class: danger ? 'button small danger' : 'button small', 'data-testid': testid, 'aria-label': `${label}: ${u.username}`, text: label,
    onclick: async () => {
      try { await api.patch(`users/${api.enc(u.id)}`, body); } catch (e) { toast(e.message); }
      await drawUsers(box);
    },
  });
  const rows = users.map((u) => {
    const self = me && me.id === u.id;
    const actions = h('td', { class: 'row-actions' });
    if (u.status === 'pending') actions.append(act(u, { status: 'active' }, 'Approve', 'approve'));
    if (!self) {
      if (u.status === 'active') actions.append(act(u, { status: 'disabled' }, 'Disable', 'disable'));
      if (u.status === 'disabled') actions.append(act(u, { status: 'active' }, 'Enable', 'enable'));
      if (u.role === 'user') actions.append(act(u, { role: 'admin' }, 'Make admin', 'make-admin'));
      else actions.append(act(u, { role: 'user' }, 'Make user', 'make-user'));
      actions.append(h('button', {
        type: 'button', class: 'button small danger', 'data-testid': 'delete-user', 'aria-label': `Delete user ${u.username}`, text: 'Delete',
        onclick: async () => {
          if (!(await confirmDialog(`Delete the user “${u.username}” and their chats?`, { ok: 'Delete', danger: true }))) return;
          try { await api.del(`users/${api.enc(u.id)}`); } catch (e) { toast(e.message); }
          await drawUsers(box);
        },
      }));
    }
    return h('tr', { 'data-testid': 'user-row', 'data-username': u.username, 'data-status': u.status },
      h('td', {}, u.username, self ? h('span', { class: 'muted', text: ' (you)' }) : null),
      h('td', { text: u.role === 'admin' ? 'Administrator' : 'User' }),
      h('td', {}, h('span', { class: `badge badge-${u.status === 'pending' ? 'pending' : u.status === 'disabled' ? 'stopped' : 'ok'}`, text: u.status })),
      h('td', { text: fmtDate(u.created_at) }),
      actions);
  });
  box.append(table(['Username', 'Role', 'Status', 'Created', ''], rows));
}

export { infoDialog };
