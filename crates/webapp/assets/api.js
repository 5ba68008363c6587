// Fetch helpers for the app's API (/app/api/...) and the Ollama API (/api/...).
// Every request is same-origin with credentials; state-changing ones carry X-CSRF-Token.

let csrf = null;
let onUnauthorized = null;

export function setCsrf(token) { csrf = typeof token === 'string' ? token : null; }
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

const APP = '/app/api/';
/** URL of an app API route; path pieces that come from data must already be encoded. */
export const appUrl = (path) => APP + path;
export const enc = (s) => encodeURIComponent(String(s));

async function errorFrom(res) {
  let message = `${res.status} ${res.statusText || 'error'}`.trim();
  try {
    const body = await res.json();
    if (body && typeof body.error === 'string' && body.error) message = body.error;
  } catch { /* not JSON */ }
  return new ApiError(res.status, message, res.headers.get('Retry-After'));
}

/**
 * Make a request. Returns the Response when opts.raw, else the parsed JSON body ({} when empty).
 * Throws ApiError for non-2xx answers (after calling the 401 handler).
 */
export async function request(method, url, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
    signal: opts.signal,
  });
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 401 && onUnauthorized && !opts.noAuthRedirect) onUnauthorized(err);
    throw err;
  }
  if (opts.raw) return res;
  const text = await res.text();
  if (!text) return {};
  try { return JSON.parse(text); } catch { throw new ApiError(res.status, 'The server sent an answer that is not JSON'); }
}

export const get = (path, opts) => request('GET', appUrl(path), undefined, opts);
export const post = (path, body = {}, opts) => request('POST', appUrl(path), body, opts);
export const put = (path, body = {}, opts) => request('PUT', appUrl(path), body, opts);
export const patch = (path, body = {}, opts) => request('PATCH', appUrl(path), body, opts);
export const del = (path, opts) => request('DELETE', appUrl(path), undefined, opts);

/**
 * POST a file's raw bytes with XMLHttpRequest, so that the upload reports progress.
 * onProgress(loaded, total) is called as the body goes out. Resolves to the parsed JSON answer;
 * rejects with ApiError (status 0 for a network failure, 'AbortError' name when aborted).
 * Returns {promise, abort}.
 */
export function upload(path, file, { onProgress } = {}) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('POST', appUrl(path));
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.setRequestHeader('Content-Type', (file && file.type) || 'application/octet-stream');
    if (csrf) xhr.setRequestHeader('X-CSRF-Token', csrf);
    xhr.responseType = 'text';
    if (onProgress) {
      xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : (file && file.size) || 0);
    }
    xhr.onload = () => {
      let body = null;
      try { body = xhr.responseText ? JSON.parse(xhr.responseText) : {}; } catch { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) {
        if (body === null) reject(new ApiError(xhr.status, 'The server sent an answer that is not JSON'));
        else resolve(body);
        return;
      }
      const message = body && typeof body.error === 'string' && body.error
        ? body.error
        : xhr.status === 413 ? 'The file is too large.' : `${xhr.status} ${xhr.statusText || 'error'}`.trim();
      const err = new ApiError(xhr.status, message, xhr.getResponseHeader('Retry-After'));
      if (xhr.status === 401 && onUnauthorized) onUnauthorized(err);
      reject(err);
    };
    xhr.onerror = () => reject(new ApiError(0, 'The upload failed (network error).'));
    xhr.onabort = () => { const e = new ApiError(0, 'Upload cancelled'); e.name = 'AbortError'; reject(e); };
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

/** Ollama API helpers. */
export const ollama = {
  tags: () => request('GET', '/api/tags'),
  show: (model) => request('POST', '/api/show', { model }),
  ps: () => request('GET', '/api/ps'),
  remove: (model) => request('DELETE', '/api/delete', { model }),
  pull: (model, signal) => request('POST', '/api/pull', { model, stream: true }, { raw: true, signal }),
};

/**
 * Read a response body as NDJSON, yielding one parsed object per non-empty line.
 * Lines that are not JSON are skipped.
 */
export async function* ndjson(res) {
  if (!res.body || typeof res.body.getReader !== 'function') {
    const text = await res.text();
    for (const line of text.split('\n')) {
      const obj = parseLine(line);
      if (obj) yield obj;
    }
    return;
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const obj = parseLine(line);
        if (obj) yield obj;
      }
    }
    buf += decoder.decode();
    const obj = parseLine(buf);
    if (obj) yield obj;
  } finally {
    try { reader.releaseLock(); } catch { /* already released */ }
  }
}

function parseLine(line) {
  const s = line.trim();
  if (!s) return null;
  try {
    const v = JSON.parse(s);
    return v && typeof v === 'object' ? v : null;
  } catch {
    return null;
  }
}
