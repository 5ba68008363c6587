// Shared app state and hooks set by app.js (kept in its own module to avoid import cycles).

export const state = {
  me: null, // {mode, user, csrf, needs_admin}
  chats: [],
  models: null, // [{name, size, details}] once loaded
  presets: null,
  stream: null, // the answer being generated: {chatId, ctrl, text, message, article, content, raf}
  viewCleanup: null, // called when leaving a view
  ignoreHash: null, // a hash set by the app itself that must not rebuild the view
  hooks: {
    refreshChats: async () => {},
    navigate: (hash) => { location.hash = hash; },
  },
};

export const isAdmin = () => state.me?.user?.role === 'admin';
export const isMulti = () => state.me?.mode === 'multi';

export function store(key, value) {
  try {
    if (value === null || value === undefined) localStorage.removeItem('hearth.' + key);
    else localStorage.setItem('hearth.' + key, String(value));
  } catch { /* storage may be unavailable */ }
}

export function load(key) {
  try { return localStorage.getItem('hearth.' + key); } catch { return null; }
}
