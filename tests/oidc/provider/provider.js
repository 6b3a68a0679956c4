// A real OpenID Connect provider for the OIDC tests: panva's oidc-provider (a certified
// implementation), with its own signing key, static clients and a sign-in step a test drives
// over plain HTTP. It serves on 127.0.0.1:$PORT, its issuer is http://127.0.0.1:$PORT.
//
// Environment:
//   PORT     the port to listen on
//   CLIENTS  JSON list of {client_id, client_secret, redirect_uris}
//
// The sign-in step: the authorization endpoint sends the browser to /interaction/<uid>; the
// test posts the account it wants to be to /interaction/<uid>/login (form fields `sub`,
// `email`, `email_verified` "true"/"false" or absent, `name`, and `tamper`), or gives up at
// /interaction/<uid>/abort. Consent is granted with the sign-in.
//
// `tamper` makes this provider misbehave for that account: the ID token its token endpoint
// returns is re-signed with one thing wrong, as a compromised or misconfigured provider (or
// an attacker replaying another client's token) would send it:
//   other_key    signed by another key under the real key's `kid`
//   unknown_kid  signed by another key under a `kid` the JWKS does not list
//   wrong_aud    issued for another client
//   wrong_iss    issued by another issuer
//   expired      expired five minutes ago
//   wrong_nonce  carrying a nonce the client never sent
//
// GET /_test/stats answers how many times the JWKS was fetched, for the cache's tests.

import http from 'node:http';
import { randomUUID } from 'node:crypto';

import Provider from 'oidc-provider';
import { SignJWT, exportJWK, generateKeyPair, importJWK } from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.CLIENTS || '[]');

async function signingKey(kid) {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}

const realKey = await signingKey(`key-${randomUUID()}`);
const otherKey = await signingKey('other');

// Accounts exist once a test signs in as them: sub -> {email, email_verified, name, tamper}.
const accounts = new Map();
let jwksFetches = 0;

const provider = new Provider(issuer, {
  clients: clients.map((client) => ({
    ...client,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: { keys: [realKey] },
  cookies: { keys: [randomUUID()] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // The claims of the granted scopes go into the ID token as well, as Google, Entra ID and
  // Keycloak put them.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, sub) {
    const account = accounts.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        const claims = { sub, name: account.name };
        if (account.email) claims.email = account.email;
        if (account.email_verified !== undefined) claims.email_verified = account.email_verified;
        return claims;
      },
    };
  },
});

function decodePayload(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
}

async function tampered(idToken, mode) {
  const claims = decodePayload(idToken);
  const now = Math.floor(Date.now() / 1000);
  let key = realKey;
  let kid = realKey.kid;
  switch (mode) {
    case 'other_key': key = otherKey; break;
    case 'unknown_kid': key = otherKey; kid = `rotated-${randomUUID()}`; break;
    case 'wrong_aud': claims.aud = 'someone-else'; break;
    case 'wrong_iss': claims.iss = 'https://impostor.example'; break;
    case 'expired': claims.iat = now - 900; claims.exp = now - 300; break;
    case 'wrong_nonce': claims.nonce = 'not-the-nonce-that-was-sent'; break;
    default: throw new Error(`unknown tamper mode ${mode}`);
  }
  const { kid: _kid, alg: _alg, use: _use, ...material } = key;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid })
    .sign(await importJWK(material, 'RS256'));
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/jwks') jwksFetches += 1;
  await next();
  if (ctx.path === '/token' && ctx.body && ctx.body.id_token) {
    const { sub } = decodePayload(ctx.body.id_token);
    const mode = accounts.get(sub)?.tamper;
    if (mode) ctx.body = { ...ctx.body, id_token: await tampered(ctx.body.id_token, mode) };
  }
});

function formFields(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
    req.on('error', reject);
  });
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'GET' && !action) {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<form method="post" action="/interaction/${uid}/login">` +
      '<input name="sub"><input name="email"><button>Sign in</button></form>');
    return;
  }
  if (req.method === 'POST' && action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'The user gave up',
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    const fields = await formFields(req);
    const verified = { true: true, false: false }[fields.email_verified];
    accounts.set(fields.sub, {
      email: fields.email || undefined,
      email_verified: verified,
      name: fields.name || 'Someone',
      tamper: fields.tamper || undefined,
    });
    const grant = new provider.Grant({ accountId: fields.sub, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      login: { accountId: fields.sub },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    return;
  }
  res.writeHead(405).end();
}

const handle = provider.callback();
const server = http.createServer(async (req, res) => {
  try {
    const path = new URL(req.url, issuer).pathname;
    if (path === '/_test/stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jwks_fetches: jwksFetches }));
      return;
    }
    const found = path.match(/^\/interaction\/([^/]+)(?:\/(login|abort))?$/);
    if (found) {
      await interaction(req, res, found[1], found[2]);
      return;
    }
    handle(req, res);
  } catch (error) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(error));
  }
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on ${issuer}\n`);
});
