// The console's shell: configuration, sign-in, and the hash routes (#/keys, #/approvals,
// #/devices?member=..., #/audit, #/health). Every page is a client of the admin API.
import * as oidc from './oidc.js';
import { get, ApiError } from './api.js';
import { h, setMain, showError } from './ui.js';
import { pages } from './pages.js';

let cfg = null;
let expiryTimer = null;

function signInPage(message) {
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  const button = h('button', { type: 'button', class: 'primary', id: 'login' }, 'Sign in');
  button.addEventListener('click', () => {
    oidc.login(cfg, location.hash || '#/keys').catch(showError);
  });
  setMain(h('h1', {}, 'keyhold console'), message ? h('p', { class: 'notice' }, message) : null,
    h('p', {}, `Sign in as an administrator of tenant ${cfg.tenant} at ${cfg.issuer}.`), button);
  button.focus();
}

function notAdminPage(e) {
  setMain(h('h1', { id: 'not-admin' }, 'Not an administrator'),
    h('p', {}, 'You signed in, but keyhold does not count this account as an administrator of ',
      h('strong', {}, cfg.tenant), ': its token matches none of the tenant\'s ',
      h('code', {}, 'admins'), ' rules.'),
    h('p', { class: 'notice' }, e.message),
    h('p', {}, 'Sign out and sign in with an administrator account, or ask the operator to add yours.'));
}

function logout() {
  oidc.forget();
  clearTimeout(expiryTimer);
  showError(null);
  signInPage('You are signed out of the console.');
}

async function route() {
  showError(null);
  if (!oidc.accessToken()) {
    signInPage();
    return;
  }
  const [path, query] = (location.hash.replace(/^#/, '') || '/keys').split('?');
  const name = path.replace(/^\//, '') || 'keys';
  const page = pages[name];
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!page) {
    setMain(h('h1', {}, 'No such page'), h('p', {}, h('a', { href: '#/keys' }, 'Keys')));
    return;
  }
  document.title = `${page.title} · keyhold console`;
  try {
    await page.render(new URLSearchParams(query || ''), cfg);
  } catch (e) {
    handle(e);
  }
}

// An error of the API anywhere: an expired or refused token signs in again, not_admin gets its
// page, anything else shows the server's message.
export function handle(e) {
  if (e instanceof ApiError && e.status === 401) {
    oidc.forget();
    signInPage(e.code === 'expired' ? e.message : `Sign in again: ${e.message}`);
  } else if (e instanceof ApiError && e.code === 'not_admin') {
    notAdminPage(e);
  } else {
    showError(e);
  }
}
window.addEventListener('keyhold-error', (ev) => handle(ev.detail));

function signedIn() {
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
  document.getElementById('who').textContent = oidc.tokenName();
  clearTimeout(expiryTimer);
  expiryTimer = setTimeout(() => {
    oidc.forget();
    signInPage('Your session has expired: sign in again.');
  }, Math.max(oidc.expiresAt() - Date.now(), 0));
}

async function start() {
  document.getElementById('logout').addEventListener('click', logout);
  const r = await fetch('config.json', { headers: { Accept: 'application/json' } });
  cfg = await r.json();
  document.getElementById('tenant').textContent = `tenant ${cfg.tenant}`;
  if (!cfg.issuer || !cfg.client_id) {
    setMain(h('h1', {}, 'The console is not configured'),
      h('p', {}, 'Set ', h('code', {}, 'console_client_id'), ` in [tenant.${cfg.tenant}] of keyhold.conf `
        + 'and register that public client at the identity provider (docs/console.md).'));
    return;
  }
  let back = null;
  try {
    back = await oidc.completeLogin(cfg);
  } catch (e) {
    signInPage(e.message);
    return;
  }
  if (back !== null || oidc.accessToken()) {
    signedIn();
    try {
      await get('admin/keys');  // is this token an admin of the tenant?
    } catch (e) {
      handle(e);
      if (e instanceof ApiError && e.code === 'not_admin') return;
    }
  }
  window.addEventListener('hashchange', route);
  await route();
}

start().catch(showError);
