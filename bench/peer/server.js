// node oidc-provider as bench/compare.sh's peer: in memory, on Keyport's
// paths (so the same wrk scripts drive both), with
//   - `kp`: a public device-flow client (device code and refresh grants,
//     refresh tokens rotated on every use),
//   - `bench-cc`: a confidential client whose client_credentials access
//     tokens are EdDSA JWTs for https://api.example.com.
// The store is an unbounded in-memory map (the package's own memory adapter
// keeps only 1,000 entries, fewer than the poll scenario's pending codes).
// GET /bench/fixtures?refresh=N answers N refresh tokens and one access
// token, minted through the provider's own models as a device login would
// leave them; it is for the bench's set-up, never measured.
//
// Usage: node server.js PORT   (loopback only)

import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const port = Number(process.argv[2] || 18191);
const issuer = `http://127.0.0.1:${port}`;
const API = 'https://api.example.com';
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** The interface the memory adapter expects of its LRU, without a bound. */
class ExpiringMap {
  #map = new Map();

  get(key) {
    const entry = this.#map.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.#map.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key, value, options) {
    const expiresAt = options?.maxAge ? Date.now() + options.maxAge : Infinity;
    this.#map.set(key, { value, expiresAt });
  }

  delete(key) {
    this.#map.delete(key);
  }
}

const store = new ExpiringMap();

function jwk(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: randomBytes(8).toString('hex') };
}

const ccSecret = process.env.PEER_CC_SECRET || randomBytes(24).toString('base64url');

const provider = new Provider(issuer, {
  adapter: (model) => new MemoryAdapter(model, store),
  jwks: { keys: [jwk('rsa', { modulusLength: 2048 }, 'RS256'), jwk('ed25519', {}, 'EdDSA')] },
  clients: [
    {
      client_id: 'kp',
      token_endpoint_auth_method: 'none',
      grant_types: [DEVICE_GRANT, 'refresh_token'],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'bench-cc',
      client_secret: ccSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'api:read',
    },
  ],
  scopes: ['openid', 'offline_access', 'api:read'],
  routes: {
    device_authorization: '/oauth/device_authorization',
    token: '/oauth/token',
    userinfo: '/oauth/userinfo',
    introspection: '/oauth/introspect',
    jwks: '/oauth/jwks',
    code_verification: '/device',
  },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client) => (client.clientId === 'bench-cc' ? API : undefined),
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api:read',
        audience: API,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 900,
        jwt: { sign: { alg: 'EdDSA' } },
      }),
    },
  },
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token')
    && code.scopes.has('offline_access'),
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: 'demo@example.com' }),
  }),
  ttl: { AccessToken: 900, DeviceCode: 900, RefreshToken: 30 * 24 * 3600, Grant: 30 * 24 * 3600 },
});

/** N refresh tokens and one access token, as a device login leaves them. */
async function fixtures(count) {
  const client = await provider.Client.find('kp');
  const scope = 'openid offline_access';
  const refresh = [];
  let access;
  for (let i = 0; i < count; i += 1) {
    const accountId = `user-${i}`;
    const grant = new provider.Grant({ accountId, clientId: 'kp' });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const now = Math.floor(Date.now() / 1000);
    const token = new provider.RefreshToken({
      accountId, client, grantId, scope, gty: DEVICE_GRANT, authTime: now, iat: now,
    });
    refresh.push(await token.save());
    if (!access) {
      access = await new provider.AccessToken({
        accountId, client, grantId, scope, gty: DEVICE_GRANT,
      }).save();
    }
  }
  return { refresh, access, cc_authorization: `Basic ${Buffer.from(`bench-cc:${ccSecret}`).toString('base64')}` };
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/bench/fixtures') {
    ctx.body = await fixtures(Number(ctx.query.refresh || 0));
    return;
  }
  if (ctx.path === '/readyz') {
    ctx.body = 'ok';
    return;
  }
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  process.stderr.write(`oidc-provider ${issuer} ready\n`);
});
