// Hearth's web app: shell, routing, sign-in, sidebar, search, theme and keyboard shortcuts.

import { h, clear, toast, initChrome, confirmDialog, promptDialog, infoDialog } from './dom.js';
import * as api from './api.js';
import { state, store, load, isMulti } from './state.js';
import { renderChat, focusComposer, stopGeneration } from './chat.js';
import { renderModels, renderMachine, renderUsage, renderSettings } from './pages.js';
import { renderDocuments } from './documents.js';

const ui = {};

// ---------------------------------------------------------------------------------------------
// Theme

function currentTheme() {
  const t = document.documentElement.dataset.theme;
  if (t === 'dark' || t === 'light') return t;
  return window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

function applyTheme(theme) {
  if (theme === 'dark' || theme === 'light') document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  if (ui.theme) {
    const next = currentTheme() === 'dark' ? 'light' : 'dark';
    ui.theme.setAttribute('aria-label', `Switch to ${next} theme`);
    ui.theme.title = `Switch to ${next} theme`;
    ui.theme.textContent = currentTheme() === 'dark' ? '☀' : '☾';
  }
}
applyTheme(load('theme'));

// ---------------------------------------------------------------------------------------------
// Shell

function buildShell() {
  const app = document.getElementById('app');
  clear(app);
  app.className = 'app';

  ui.newChat = h('a', { href: '#/', class: 'button primary new-chat', 'data-testid': 'new-chat', text: '+ New chat' });
  ui.search = h('input', { id: 'search', type: 'search', 'aria-label': 'Search chats', placeholder: 'Search chats (Ctrl+K)', autocomplete: 'off' });
  ui.results = h('ul', { class: 'search-results', hidden: true, 'aria-label': 'Search results' });
  ui.chatList = h('ul', { class: 'chat-list' });
  ui.chatNav = h('nav', { class: 'chat-nav', 'aria-label': 'Chats' }, ui.chatList);
  const navLink = (href, testid, text) => h('a', { href, 'data-testid': testid, class: 'nav-link', text });
  ui.pageNav = h('nav', { class: 'page-nav', 'aria-label': 'Pages' },
    navLink('#/models', 'nav-models', 'Models'),
    navLink('#/documents', 'nav-documents', 'Documents'),
    navLink('#/machine', 'nav-machine', 'Machine'),
    navLink('#/usage', 'nav-usage', 'Usage'),
    navLink('#/settings', 'nav-settings', 'Settings'));
  ui.theme = h('button', { type: 'button', class: 'icon-button', 'data-testid': 'theme', onclick: toggleTheme });
  ui.userName = h('span', { class: 'user-name', 'data-testid': 'user-name' });
  ui.logout = h('button', { type: 'button', class: 'button small', 'data-testid': 'logout', text: 'Sign out', onclick: logout });
  ui.help = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Keyboard shortcuts', title: 'Keyboard shortcuts (?)', text: '?', onclick: showHelp });

  ui.sidebar = h('aside', { id: 'sidebar', class: 'sidebar', 'aria-label': 'Sidebar' },
    h('div', { class: 'brand' },
      h('img', { src: '/assets/icon.svg', alt: '', width: '28', height: '28' }),
      h('span', { text: 'Hearth' }),
      h('button', { type: 'button', class: 'icon-button drawer-close', 'aria-label': 'Close menu', text: '×', onclick: () => setDrawer(false) })),
    ui.newChat,
    h('div', { class: 'search' }, ui.search),
    ui.results,
    ui.chatNav,
    ui.pageNav,
    h('div', { class: 'sidebar-foot' }, ui.userName, h('span', { class: 'spacer' }), ui.help, ui.theme, ui.logout));

  ui.menu = h('button', { type: 'button', class: 'icon-button menu-button', 'aria-label': 'Open menu', 'aria-controls': 'sidebar', 'aria-expanded': 'false', text: '☰', onclick: () => setDrawer(true) });
  ui.topSlot = h('div', { class: 'topbar-content' });
  ui.topbar = h('header', { class: 'topbar' }, ui.menu, ui.topSlot);
  ui.view = h('div', { class: 'view' });
  ui.main = h('main', { id: 'main', class: 'main', tabindex: '-1' }, ui.topbar, ui.view);
  ui.scrim = h('div', { class: 'scrim', onclick: () => setDrawer(false) });
  ui.auth = h('main', { id: 'auth', class: 'auth', hidden: true });

  app.append(ui.sidebar, ui.scrim, ui.main, ui.auth);
  applyTheme(load('theme'));

  let timer = 0;
  ui.search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(runSearch, 200);
  });
  ui.search.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.stopPropagation(); ui.search.value = ''; runSearch(); }
    if (e.key === 'Enter') { e.preventDefault(); const first = ui.results.querySelector('button'); if (first) first.click(); }
    if (e.key === 'ArrowDown') { const first = ui.results.querySelector('button'); if (first) { e.preventDefault(); first.focus(); } }
  });
}

function toggleTheme() {
  const next = currentTheme() === 'dark' ? 'light' : 'dark';
  store('theme', next);
  applyTheme(next);
}

function setDrawer(open) {
  document.body.classList.toggle('drawer-open', open);
  ui.menu.setAttribute('aria-expanded', String(open));
  if (open) ui.newChat.focus();
}

function showChrome(signedIn) {
  ui.sidebar.hidden = !signedIn;
  ui.main.hidden = !signedIn;
  ui.scrim.hidden = !signedIn;
  ui.auth.hidden = signedIn;
  const user = state.me?.user;
  ui.userName.textContent = user ? user.username : '';
  ui.logout.hidden = !isMulti();
  ui.userName.hidden = !isMulti();
}

// ---------------------------------------------------------------------------------------------
// Chats list and search

async function refreshChats() {
  if (!state.me?.user) return;
  try {
    const res = await api.get('chats');
    state.chats = Array.isArray(res.chats) ? res.chats : [];
  } catch (e) {
    if (e.status !== 401) toast(e.message);
    return;
  }
  drawChatList();
}

function activeChatId() {
  const m = /^#\/c\/(.+)$/.exec(location.hash);
  if (!m) return null;
  try { return decodeURIComponent(m[1]); } catch { return null; }
}

function drawChatList() {
  clear(ui.chatList);
  const active = activeChatId();
  if (!state.chats.length) {
    ui.chatList.append(h('li', { class: 'muted empty-list', text: 'No chats yet' }));
    return;
  }
  for (const c of state.chats) {
    const titleText = c.title || 'Untitled chat';
    const link = h('a', { href: '#/c/' + api.enc(c.id), class: 'chat-link', text: titleText, title: titleText });
    if (c.id === active) link.setAttribute('aria-current', 'page');
    const rename = h('button', {
      type: 'button', class: 'icon-button small', 'data-testid': 'rename-chat', 'aria-label': `Rename chat ${titleText}`, title: 'Rename', text: '✎',
      onclick: async () => {
        const name = await promptDialog('Rename chat', c.title || '', { ok: 'Rename', label: 'Title' });
        if (name === null) return;
        try { await api.patch(`chats/${api.enc(c.id)}`, { title: name }); } catch (e) { toast(e.message); }
        await refreshChats();
      },
    });
    const del = h('button', {
      type: 'button', class: 'icon-button small danger', 'data-testid': 'delete-chat', 'aria-label': `Delete chat ${titleText}`, title: 'Delete', text: '✕',
      onclick: async () => {
        if (!(await confirmDialog(`Delete “${titleText}”? This cannot be undone.`, { ok: 'Delete', danger: true, title: 'Delete chat' }))) return;
        try {
          await api.del(`chats/${api.enc(c.id)}`);
          if (activeChatId() === c.id) { stopGeneration(); location.hash = '#/'; }
        } catch (e) { toast(e.message); }
        await refreshChats();
      },
    });
    ui.chatList.append(h('li', { class: 'chat-item', 'data-testid': 'chat-item', 'data-chat-id': c.id },
      link, h('span', { class: 'chat-actions' }, rename, del)));
  }
}

let searchSeq = 0;
async function runSearch() {
  const q = ui.search.value.trim();
  const seq = ++searchSeq;
  if (!q) {
    ui.results.hidden = true;
    clear(ui.results);
    ui.chatNav.hidden = false;
    return;
  }
  let hits;
  try { hits = (await api.get('search?q=' + api.enc(q))).hits || []; } catch (e) { if (e.status !== 401) toast(e.message); return; }
  if (seq !== searchSeq) return;
  clear(ui.results);
  ui.results.hidden = false;
  ui.chatNav.hidden = true;
  if (!hits.length) { ui.results.append(h('li', { class: 'muted empty-list', text: 'No matches' })); return; }
  for (const hit of hits) {
    ui.results.append(h('li', {}, h('button', {
      type: 'button', class: 'search-hit', 'data-testid': 'search-hit', 'data-chat-id': hit.chat_id,
      onclick: () => {
        ui.search.value = '';
        runSearch();
        setDrawer(false);
        location.hash = '#/c/' + api.enc(hit.chat_id);
      },
    }, h('span', { class: 'hit-title', text: hit.title || 'Untitled chat' }), h('span', { class: 'hit-snippet', text: hit.snippet || '' }))));
  }
}

// ---------------------------------------------------------------------------------------------
// Sign-in

async function loadMe() {
  const me = await api.request('GET', api.appUrl('me'), undefined, { noAuthRedirect: true });
  state.me = me;
  api.setCsrf(me.csrf);
  return me;
}

function renderAuth(message) {
  showChrome(false);
  clear(ui.auth);
  document.title = 'Sign in — Hearth';
  const me = state.me || {};
  const status = h('div', { class: 'auth-status', 'aria-live': 'polite' });
  if (message === 'pending') status.append(pendingNote());

  const lu = h('input', { id: 'login-username', type: 'text', autocomplete: 'username', required: true, autocapitalize: 'none' });
  const lp = h('input', { id: 'login-password', type: 'password', autocomplete: 'current-password', required: true });
  const login = h('form', { class: 'card auth-form', 'aria-labelledby': 'login-title' },
    h('h2', { id: 'login-title', text: 'Sign in' }),
    h('label', { class: 'field' }, h('span', { text: 'Username' }), lu),
    h('label', { class: 'field' }, h('span', { text: 'Password' }), lp),
    h('button', { type: 'submit', class: 'button primary', 'data-testid': 'login', text: 'Sign in' }));
  login.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(status);
    try {
      const res = await api.request('POST', api.appUrl('login'), { username: lu.value.trim(), password: lp.value }, { noAuthRedirect: true });
      if (res.csrf) api.setCsrf(res.csrf);
      await signedIn();
    } catch (err) {
      if (err.status === 403 && /pending|approv/i.test(err.message)) status.append(pendingNote());
      else if (err.status === 429) status.append(h('p', { class: 'error', role: 'alert', text: err.retryAfter ? `Too many attempts. Try again in ${err.retryAfter} seconds.` : err.message }));
      else status.append(h('p', { class: 'error', role: 'alert', text: err.status === 401 ? 'Wrong username or password.' : err.message }));
    }
  });

  const su = h('input', { id: 'signup-username', type: 'text', autocomplete: 'username', required: true, autocapitalize: 'none' });
  const sp = h('input', { id: 'signup-password', type: 'password', autocomplete: 'new-password', required: true });
  const signup = h('form', { class: 'card auth-form', 'aria-labelledby': 'signup-title' },
    h('h2', { id: 'signup-title', text: 'Create an account' }),
    h('p', { class: 'muted', 'data-testid': 'signup-note', text: me.needs_admin
      ? 'No account exists yet: the first account becomes the administrator.'
      : 'New accounts wait for an administrator’s approval.' }),
    h('label', { class: 'field' }, h('span', { text: 'Username' }), su),
    h('label', { class: 'field' }, h('span', { text: 'Password' }), sp),
    h('button', { type: 'submit', class: 'button', 'data-testid': 'signup', text: 'Create account' }));
  signup.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(status);
    try {
      const res = await api.request('POST', api.appUrl('signup'), { username: su.value.trim(), password: sp.value }, { noAuthRedirect: true });
      if (res.user && res.user.status === 'active') await signedIn();
      else { status.append(pendingNote()); su.value = ''; sp.value = ''; }
    } catch (err) {
      status.append(h('p', { class: 'error', role: 'alert', text: err.message }));
    }
  });

  ui.auth.append(h('div', { class: 'auth-inner' },
    h('div', { class: 'brand auth-brand' }, h('img', { src: '/assets/icon.svg', alt: '', width: '40', height: '40' }), h('h1', { text: 'Hearth' })),
    status,
    h('div', { class: 'auth-forms' }, login, signup)));
  (me.needs_admin ? su : lu).focus();
}

function pendingNote() {
  return h('p', { class: 'notice', 'data-testid': 'pending', role: 'status', text: 'Your account is waiting for an administrator’s approval.' });
}

async function signedIn() {
  await loadMe();
  state.models = null;
  state.presets = null;
  if (!state.me.user) { renderAuth(); return; }
  showChrome(true);
  await refreshChats();
  if (location.hash === '#/login' || location.hash === '') location.hash = '#/';
  else route();
}

async function logout() {
  stopGeneration();
  try { await api.post('logout'); } catch { /* signed out anyway */ }
  state.chats = [];
  try { await loadMe(); } catch { /* shown below */ }
  location.hash = '#/login';
}

function onUnauthorized() {
  if (state.me) state.me.user = null;
  if (location.hash !== '#/login') location.hash = '#/login';
  else renderAuth();
}

// ---------------------------------------------------------------------------------------------
// Routing

async function route() {
  const hash = location.hash || '#/';
  if (state.ignoreHash && hash === state.ignoreHash) {
    state.ignoreHash = null;
    drawChatList();
    return;
  }
  state.ignoreHash = null;
  if (state.viewCleanup) { try { state.viewCleanup(); } catch { /* ignore */ } state.viewCleanup = null; }
  document.querySelectorAll('dialog').forEach((d) => { d.close?.(); d.remove(); });

  const signedInNow = !!state.me?.user;
  if (!signedInNow) {
    if (hash !== '#/login') { location.hash = '#/login'; return; }
    renderAuth();
    return;
  }
  if (hash === '#/login') { location.hash = '#/'; return; }

  showChrome(true);
  setDrawer(false);
  clear(ui.topSlot);
  clear(ui.view);
  ui.view.className = 'view';
  drawChatList();
  for (const a of ui.pageNav.querySelectorAll('a')) {
    const href = a.getAttribute('href');
    if (href === hash || hash.startsWith(href + '/')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }

  let m;
  try {
    if (hash === '#/' || hash === '#') {
      ui.view.classList.add('view-chat');
      await renderChat(ui.topSlot, ui.view, null);
    } else if ((m = /^#\/c\/(.+)$/.exec(hash))) {
      let id;
      try { id = decodeURIComponent(m[1]); } catch { id = m[1]; }
      ui.view.classList.add('view-chat');
      await renderChat(ui.topSlot, ui.view, id);
    } else if (hash === '#/models') {
      document.title = 'Models — Hearth';
      await renderModels(ui.topSlot, ui.view);
    } else if (hash === '#/documents' || (m = /^#\/documents\/([^/]+)$/.exec(hash))) {
      document.title = 'Documents — Hearth';
      let id = null;
      if (m) { try { id = decodeURIComponent(m[1]); } catch { id = m[1]; } }
      await renderDocuments(ui.topSlot, ui.view, id);
    } else if (hash === '#/machine') {
      document.title = 'Machine — Hearth';
      await renderMachine(ui.topSlot, ui.view);
    } else if (hash === '#/usage') {
      document.title = 'Usage — Hearth';
      await renderUsage(ui.topSlot, ui.view);
    } else if (hash === '#/settings') {
      document.title = 'Settings — Hearth';
      await renderSettings(ui.topSlot, ui.view);
    } else {
      ui.topSlot.append(h('h1', { class: 'page-title', text: 'Not found' }));
      ui.view.append(h('div', { class: 'empty' }, h('p', { text: 'There is no such page.' }), h('a', { href: '#/', class: 'button primary', text: 'Start a new chat' })));
    }
  } catch (e) {
    toast(e && e.message ? e.message : String(e));
  }
}

// ---------------------------------------------------------------------------------------------
// Keyboard shortcuts

const SHORTCUTS = [
  ['Ctrl/⌘ + K', 'Search chats'],
  ['Ctrl/⌘ + Shift + O', 'New chat'],
  ['/', 'Focus the message box'],
  ['Enter', 'Send the message'],
  ['Shift + Enter', 'New line'],
  ['Esc', 'Stop generating, close dialogs'],
  ['?', 'This help'],
];

function showHelp() {
  if (document.querySelector('dialog[data-testid="help"]')) return;
  const d = infoDialog('Keyboard shortcuts', h('table', { class: 'data shortcuts' },
    h('tbody', {}, SHORTCUTS.map(([k, what]) => h('tr', {}, h('th', { scope: 'row' }, h('kbd', { text: k })), h('td', { text: what }))))));
  d.dataset.testid = 'help';
}

function typing(el) {
  if (!el) return false;
  const tag = el.tagName;
  return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || el.isContentEditable;
}

function onKey(e) {
  const mod = e.ctrlKey || e.metaKey;
  if (mod && !e.shiftKey && (e.key === 'k' || e.key === 'K')) {
    if (ui.sidebar.hidden) return;
    e.preventDefault();
    if (window.matchMedia('(max-width: 760px)').matches) setDrawer(true);
    ui.search.focus();
    ui.search.select();
    return;
  }
  if (mod && e.shiftKey && (e.key === 'o' || e.key === 'O')) {
    if (ui.sidebar.hidden) return;
    e.preventDefault();
    if (location.hash === '#/' || location.hash === '') route();
    else location.hash = '#/';
    return;
  }
  if (e.key === 'Escape') {
    if (document.querySelector('dialog[open]')) return; // the dialog closes itself
    if (stopGeneration()) { e.preventDefault(); return; }
    if (document.body.classList.contains('drawer-open')) { setDrawer(false); ui.menu.focus(); }
    return;
  }
  if (mod || e.altKey || typing(document.activeElement) || document.querySelector('dialog[open]')) return;
  if (e.key === '/') {
    if (focusComposer()) e.preventDefault();
  } else if (e.key === '?') {
    e.preventDefault();
    showHelp();
  }
}

// ---------------------------------------------------------------------------------------------
// Start

async function start() {
  initChrome();
  buildShell();
  state.hooks.refreshChats = refreshChats;
  state.hooks.navigate = (hash) => { location.hash = hash; };
  api.setUnauthorizedHandler(onUnauthorized);
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', onKey);
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener?.('change', () => applyTheme(load('theme')));

  try {
    await loadMe();
  } catch (e) {
    showChrome(false);
    clear(ui.auth);
    ui.auth.append(h('div', { class: 'auth-inner' }, h('h1', { text: 'Hearth' }),
      h('p', { class: 'error', role: 'alert', text: `Could not reach the server: ${e.message}` }),
      h('button', { type: 'button', class: 'button primary', text: 'Try again', onclick: () => location.reload() })));
    return;
  }
  if (state.me.user) {
    showChrome(true);
    refreshChats();
  }
  route();
}

start();
