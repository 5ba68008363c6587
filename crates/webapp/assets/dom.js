// Small DOM helpers. Text always goes through textContent / createTextNode.

/**
 * Create an element. attrs: class, text, dataset, on<Event> (functions), value, checked,
 * disabled, hidden, and any other attribute (set with setAttribute, so values are inert text).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
      else if (k === 'value') el.value = String(v);
      else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'selected' || k === 'required') el[k] = Boolean(v);
      else if (k === 'href' || k === 'src' || k === 'action' || k === 'formaction') {
        // Only app-internal links are built with h(); refuse anything else.
        const s = String(v);
        if (/^(#|\/(?!\/)|blob:)/.test(s)) el.setAttribute(k, s);
      } else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// ---------------------------------------------------------------------------------------------
// Toasts, live region, dialogs

let toastBox = null;
let live = null;

export function initChrome() {
  toastBox = h('div', { class: 'toasts', 'aria-label': 'Notifications' });
  live = h('div', { id: 'live', class: 'sr-only', 'aria-live': 'polite', 'aria-atomic': 'true' });
  document.body.append(toastBox, live);
}

export function toast(message, kind = 'error') {
  if (!toastBox) initChrome();
  const t = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', { class: 'toast-text', text: String(message) }));
  const close = h('button', { type: 'button', class: 'icon-button toast-close', 'aria-label': 'Dismiss', text: '×', onclick: () => t.remove() });
  t.appendChild(close);
  toastBox.appendChild(t);
  setTimeout(() => t.remove(), kind === 'error' ? 10000 : 4000);
  return t;
}

export function announce(message) {
  if (!live) initChrome();
  live.textContent = '';
  // A new text node after clearing makes screen readers announce repeats too.
  setTimeout(() => { live.textContent = message; }, 30);
}

function openDialog(dialog) {
  document.body.appendChild(dialog);
  if (typeof dialog.showModal === 'function') dialog.showModal();
  else dialog.setAttribute('open', '');
}

/** A modal confirmation. Resolves true when confirmed. */
export function confirmDialog(message, { ok = 'OK', danger = false, title = 'Please confirm' } = {}) {
  return new Promise((resolve) => {
    const titleId = 'dlg-' + Math.random().toString(36).slice(2);
    const d = h('dialog', { class: 'dialog', 'aria-labelledby': titleId, 'data-testid': 'confirm-dialog' });
    const done = (v) => { resolve(v); d.close?.(); d.remove(); };
    d.append(
      h('h2', { id: titleId, text: title }),
      h('p', { text: message }),
      h('div', { class: 'dialog-actions' },
        h('button', { type: 'button', class: 'button', 'data-testid': 'confirm-cancel', text: 'Cancel', onclick: () => done(false) }),
        h('button', { type: 'button', class: danger ? 'button danger' : 'button primary', 'data-testid': 'confirm-ok', text: ok, onclick: () => done(true) })),
    );
    d.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    openDialog(d);
    d.querySelector('[data-testid="confirm-ok"]').focus();
  });
}

/** A modal text prompt. Resolves to the string, or null when cancelled. */
export function promptDialog(title, value = '', { ok = 'Save', label = 'Name' } = {}) {
  return new Promise((resolve) => {
    const titleId = 'dlg-' + Math.random().toString(36).slice(2);
    const input = h('input', { id: 'dialog-input', type: 'text', value, 'aria-label': label, autocomplete: 'off', maxlength: '200' });
    const d = h('dialog', { class: 'dialog', 'aria-labelledby': titleId, 'data-testid': 'prompt-dialog' });
    const done = (v) => { resolve(v); d.close?.(); d.remove(); };
    const form = h('form', { method: 'dialog', onsubmit: (e) => { e.preventDefault(); done(input.value.trim() || null); } },
      h('h2', { id: titleId, text: title }),
      h('label', { class: 'field' }, h('span', { text: label }), input),
      h('div', { class: 'dialog-actions' },
        h('button', { type: 'button', class: 'button', 'data-testid': 'prompt-cancel', text: 'Cancel', onclick: () => done(null) }),
        h('button', { type: 'submit', class: 'button primary', 'data-testid': 'prompt-ok', text: ok })));
    d.appendChild(form);
    d.addEventListener('cancel', (e) => { e.preventDefault(); done(null); });
    openDialog(d);
    input.focus();
    input.select();
  });
}

/** A modal with arbitrary content and a Close button; returns the dialog. */
export function infoDialog(title, ...content) {
  const titleId = 'dlg-' + Math.random().toString(36).slice(2);
  const d = h('dialog', { class: 'dialog dialog-wide', 'aria-labelledby': titleId });
  const close = () => { d.close?.(); d.remove(); };
  d.append(
    h('div', { class: 'dialog-head' },
      h('h2', { id: titleId, text: title }),
      h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close', text: '×', onclick: close })),
    h('div', { class: 'dialog-body' }, ...content),
  );
  d.addEventListener('cancel', (e) => { e.preventDefault(); close(); });
  openDialog(d);
  return d;
}

// ---------------------------------------------------------------------------------------------
// Formatting

const nf = new Intl.NumberFormat();
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const usd = new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 4 });

export const fmtInt = (n) => nf.format(Number(n) || 0);
export const fmt1 = (n) => nf1.format(Number(n) || 0);
export const fmtUsd = (n) => usd.format(Number(n) || 0);

export function fmtBytes(n) {
  n = Number(n) || 0;
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let u = 0;
  while (n >= 1000 && u < units.length - 1) { n /= 1000; u++; }
  return `${u === 0 ? Math.round(n) : n >= 100 ? Math.round(n) : nf1.format(n)} ${units[u]}`;
}

export function fmtTime(t) {
  if (t === null || t === undefined || t === '') return '—';
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function fmtDate(t) {
  if (t === null || t === undefined || t === '') return '—';
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  if (Number.isNaN(d.getTime())) return '—';
  return d.toLocaleDateString(undefined, { dateStyle: 'medium' });
}

/** A file name from a chat title: letters, digits, dashes; never empty. */
export function fileName(title, ext) {
  const base = String(title || 'chat').normalize('NFKD').replace(/[^\w\- ]+/g, '').trim().replace(/\s+/g, '-').slice(0, 60);
  return (base || 'chat') + '.' + ext;
}

/** Download a Blob under a file name. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, class: 'sr-only' });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
