// A real OpenID Connect issuer for keyhold's interoperability test: panva's oidc-provider
// (pinned in package-lock.json), served over HTTPS on a loopback port.
//
//   node oidc-provider.mjs --cert CRT --key KEY --port-file FILE --clients-file FILE [--resource URN]
//                          [--accounts-file FILE]
//
// --clients-file is JSON: [{"client_id": "<guid>", "client_secret": "..."}, ...]. Each client
// may use only the client_credentials grant (client_secret_basic or client_secret_post). A
// client_credentials access token carries sub = client_id (oidc-provider's own rule for tokens
// without an end-user), so the test names each client by the user GUID it stands for, as a
// Bitwarden API key stands for one user.
//
// The resource server --resource (default urn:keyhold; the default resource when a token
// request names none) gets JWT access tokens signed RS256 with scope limited to "api", and
// extraTokenClaims adds amr ["external"] as Bitwarden's identity server does for SSO users.
// --accounts-file (the web console suite, tests/integration/test_console.py) adds people who
// sign in through a login form: JSON {"<username>": {"password": "...", "claims": {...}}}. The
// form is at /interaction/<uid> (fields username and password, button "Sign in"); consent is
// given at once. Their access tokens (authorization code grant) carry sub = the username and
// the account's claims (a role, say). Browser clients register themselves then through
// dynamic registration (POST /reg), so that a redirect URI can name a port chosen after this
// server started; the registered client_id is the client_name sent, so that keyholdd's
// configuration can name it before the registration.
//
// The issuer is https://127.0.0.1:<port>; the port is chosen by the kernel and written,
// decimal plus newline, to --port-file (atomically) once the server accepts connections.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    'port-file': { type: 'string' },
    'clients-file': { type: 'string' },
    resource: { type: 'string', default: 'urn:keyhold' },
    'accounts-file': { type: 'string' },
  },
});
for (const name of ['cert', 'key', 'port-file', 'clients-file']) {
  if (!args[name]) {
    console.error(`server.mjs: --${name} is required`);
    process.exit(2);
  }
}

const clients = JSON.parse(fs.readFileSync(args['clients-file'], 'utf8')).map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
  scope: 'api',
}));

const accounts = args['accounts-file']
  ? JSON.parse(fs.readFileSync(args['accounts-file'], 'utf8')) : {};

async function findAccount(_ctx, id) {
  const a = Object.hasOwn(accounts, id) ? accounts[id] : null;
  return a && { accountId: id, claims: async () => ({ sub: id, ...a.claims }) };
}

const escapeHtml = (t) => String(t).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, message) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body><h1>Sign in</h1>${message ? `<p role="alert">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Username <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button></form></body></html>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 65536) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

// The login form, and consent given at once (the test's users trust every client).
async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session } = details;
  if (prompt.name === 'login') {
    if (req.method === 'GET') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(loginPage(uid));
      return;
    }
    const form = await readForm(req);
    const a = accounts[form.get('username')];
    if (!Object.hasOwn(accounts, form.get('username') ?? '') || a.password !== form.get('password')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(loginPage(uid, 'Wrong username or password.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: form.get('username') } },
      { mergeWithLastSubmission: false });
    return;
  }
  const grant = details.grantId ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } },
    { mergeWithLastSubmission: true });
}

// A fresh RS256 signing key for this run; oidc-provider takes private JWKs and publishes the
// public halves at its jwks_uri.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }), kid: 'oidc-provider-rs256', alg: 'RS256', use: 'sig',
};

const resource = args.resource;
const server = https.createServer({
  cert: fs.readFileSync(args.cert),
  key: fs.readFileSync(args.key),
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `https://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingJwk] },
    scopes: ['api'],
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    findAccount,
    interactions: { url: async (_ctx, i) => `/interaction/${i.uid}` },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true, idFactory: (ctx) => ctx.oidc.body.client_name },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          if (indicator !== resource) {
            throw new Provider.errors.InvalidTarget();
          }
          return {
            scope: 'api',
            audience: resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 600,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: async (_ctx, token) => ({
      amr: ['external'],
      ...(token.accountId && Object.hasOwn(accounts, token.accountId)
        ? accounts[token.accountId].claims : {}),
    }),
  });
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (!req.url.startsWith('/interaction/')) {
      callback(req, res);
      return;
    }
    interaction(provider, req, res).catch((err) => {
      console.error('interaction failed:', err);
      res.writeHead(400, { 'Content-Type': 'text/plain' });
      res.end(String(err.message));
    });
  });

  const portFile = args['port-file'];
  fs.writeFileSync(`${portFile}.tmp`, `${port}\n`);
  fs.renameSync(`${portFile}.tmp`, portFile);
  console.log(`oidc-provider listening: ${issuer}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
