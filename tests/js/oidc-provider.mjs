// A real OpenID Connect issuer for keyhold's interoperability test: panva's oidc-provider
// (pinned in package-lock.json), served over HTTPS on a loopback port.
//
//   node oidc-provider.mjs --cert CRT --key KEY --port-file FILE --clients-file FILE [--resource URN]
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
    features: {
      devInteractions: { enabled: false },
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
    extraTokenClaims: async () => ({ amr: ['external'] }),
  });
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
  server.on('request', provider.callback());

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
