// OIDC sign-in for the console: authorization code with PKCE (S256) as a public client,
// docs/console.md. The access token lives in this module's memory only; a reload signs in
// again (silently while the identity provider's own session lasts). The PKCE verifier and
// state survive the redirect round trip in sessionStorage and are removed on return.
const PENDING = 'keyhold-console-login';

let token = null;      // {access, expiresAt (ms)}
let discovery = null;

function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString() {
  return b64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function discover(issuer) {
  if (discovery) return discovery;
  const url = issuer.replace(/\/$/, '') + '/.well-known/openid-configuration';
  let r;
  try {
    r = await fetch(url, { headers: { Accept: 'application/json' } });
  } catch (e) {
    throw new Error(`The identity provider ${issuer} cannot be reached (${e.message}).`);
  }
  if (!r.ok) throw new Error(`The identity provider's discovery document answered ${r.status}.`);
  discovery = await r.json();
  return discovery;
}

// The console's own URL without query and fragment: the redirect URI to register.
export function redirectUri() {
  return location.origin + location.pathname.replace(/[^/]*$/, '');
}

export function accessToken() {
  if (token && Date.now() < token.expiresAt) return token.access;
  token = null;
  return null;
}

export function expiresAt() {
  return token ? token.expiresAt : 0;
}

export function forget() {
  token = null;
}

// Sends the browser to the identity provider; `back` is the hash route to return to.
export async function login(cfg, back) {
  const d = await discover(cfg.issuer);
  const verifier = randomString();
  const state = randomString();
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, back }));
  const q = new URLSearchParams({
    response_type: 'code', client_id: cfg.client_id, redirect_uri: redirectUri(),
    scope: 'openid', state, code_challenge: challenge, code_challenge_method: 'S256',
  });
  if (cfg.audience) {
    // RFC 8707 resource indicator; Auth0 names it audience. Other providers ignore both.
    q.set('resource', cfg.audience);
    q.set('audience', cfg.audience);
  }
  location.assign(`${d.authorization_endpoint}?${q}`);
}

// Completes a sign-in when the URL carries the provider's answer. Returns the hash route to
// go back to, or null when this load is no redirect back.
export async function completeLogin(cfg) {
  const q = new URLSearchParams(location.search);
  if (!q.has('code') && !q.has('error')) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  // the code is single-use and must not stay in the address bar or the history
  history.replaceState(null, '', redirectUri() + (pending?.back || '#/keys'));
  if (q.has('error')) {
    throw new Error(`Sign-in failed: ${q.get('error_description') || q.get('error')}`);
  }
  if (!pending || q.get('state') !== pending.state) {
    throw new Error('Sign-in failed: the answer does not belong to a sign-in started here.');
  }
  const d = await discover(cfg.issuer);
  const body = new URLSearchParams({
    grant_type: 'authorization_code', code: q.get('code'), redirect_uri: redirectUri(),
    client_id: cfg.client_id, code_verifier: pending.verifier,
  });
  if (cfg.audience) body.set('resource', cfg.audience);
  const r = await fetch(d.token_endpoint, {
    method: 'POST', body, headers: { Accept: 'application/json' },
  });
  const t = await r.json().catch(() => ({}));
  if (!r.ok || !t.access_token) {
    throw new Error(`Sign-in failed at the token endpoint: ${t.error_description || t.error || r.status}`);
  }
  // a minute early, so that no call starts with a token about to expire
  const life = Math.max(Number(t.expires_in) || 300, 60);
  token = { access: t.access_token, expiresAt: Date.now() + (life - 30) * 1000 };
  return pending.back || '#/keys';
}

// The name to show for the signed-in admin, from the token's claims (not verified here:
// keyholdd verifies the token on every call).
export function tokenName() {
  try {
    const claims = JSON.parse(atob(token.access.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return claims.preferred_username || claims.email || claims.name || claims.sub || '';
  } catch {
    return '';
  }
}

export function endSessionEndpoint() {
  return discovery?.end_session_endpoint || null;
}
