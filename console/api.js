// The admin API (docs/admin-api.md) with the admin's bearer token. Errors carry the server's
// {message, code} so that pages show what keyholdd said.
import { accessToken } from './oidc.js';

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || '';
    this.body = body;
  }
}

// The tenant's base path: "/" or "/t/{tenant}/", where the console itself is served.
export const base = location.pathname.replace(/console\/[^/]*$/, '');

export async function call(method, path, body) {
  const t = accessToken();
  if (!t) throw new ApiError(401, { message: 'Your session has expired: sign in again.', code: 'expired' });
  const init = { method, headers: { Authorization: `Bearer ${t}`, Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path.startsWith('/') ? path : base + path, init);
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text.slice(0, 200) };
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return { status: r.status, data };
}

export const get = (p) => call('GET', p).then((r) => r.data);
export const post = (p, b) => call('POST', p, b).then((r) => r.data);
