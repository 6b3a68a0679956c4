/**
 * Drives a running server through the generated client, the way a web or Node app would:
 * register, log in, read and update the account, refresh the tokens, log out, list users as
 * an admin, give the new user a role that lets it list users and take it away again, meet the
 * documented errors (401, 403, 409, 422) as typed values, and trade a sign-in's one-time code
 * the way a frontend's callback page does after a provider (OpenID Connect) sign-in.
 *
 *   API_URL=http://127.0.0.1:8000 ADMIN_EMAIL=... ADMIN_PASSWORD=... npm run flow
 *
 * tests/clients runs it against a live server; it exits non-zero on the first surprise.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { client } from '../src/client/client.gen.js';
import {
  authLogin,
  authLogout,
  authRefresh,
  authRegister,
  type ErrorMessage,
  rolesAssignRoles,
  rolesCreateRole,
  rolesDeleteRole,
  rolesListPermissions,
  type HttpValidationError,
  oidcExchange,
  oidcListProviders,
  type TokenPair,
  usersListUsers,
  usersReadMe,
  usersUpdateMe,
} from '../src/client/index.js';

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** The body of a 2xx answer, typed by the client; anything else fails the flow. */
function ok<T>(step: string, result: { data?: T; error?: unknown; response: Response }): T {
  assert.ok(
    result.response.ok && result.data !== undefined,
    `${step}: ${result.response.status} ${JSON.stringify(result.error)}`,
  );
  return result.data;
}

/** The body of an expected error: each operation types its errors as a union of the
 * documented bodies, told apart here by their shape. */
function failed<E>(step: string, status: number, result: { error?: E; response: Response }): E {
  assert.equal(result.response.status, status, `${step}: expected ${status}`);
  assert.ok(result.error !== undefined, `${step}: no error body`);
  return result.error;
}

function isMessage(error: ErrorMessage | HttpValidationError): error is ErrorMessage {
  return typeof error.detail === 'string';
}

// Every call below reads the access token from here: what an app keeps after logging in.
let tokens: TokenPair | undefined;

async function logIn(username: string, password: string): Promise<TokenPair> {
  tokens = ok('login', await authLogin({ body: { username, password } }));
  return tokens;
}

async function main(): Promise<void> {
  client.setConfig({ baseUrl: setting('API_URL'), auth: () => tokens?.access_token });
  const email = `ts-${randomUUID()}@Example.com`;
  const password = 'correct-horse-battery';

  const user = ok('register', await authRegister({ body: { name: 'Ada', email, password } }));
  assert.equal(user.email, email.toLowerCase());
  assert.equal(user.is_superuser, false);
  assert.deepEqual([user.roles, user.permissions], [['member'], []]);

  // Documented errors arrive typed: 409 and 401 as ErrorMessage, 422 as HttpValidationError.
  const taken = failed(
    'register twice',
    409,
    await authRegister({ body: { name: 'Ada', email, password } }),
  );
  assert.ok(isMessage(taken));
  assert.match(taken.detail, /already exists/);
  const invalid = failed(
    'short password',
    422,
    await authRegister({ body: { name: 'Ada', email: `x-${email}`, password: 'short' } }),
  );
  assert.ok(!isMessage(invalid));
  assert.deepEqual(invalid.detail?.[0]?.loc, ['body', 'password']);
  const anonymous = await usersReadMe();
  const unauthenticated = failed('me without a token', 401, anonymous);
  assert.ok(isMessage(unauthenticated));
  assert.equal(unauthenticated.detail, 'Not authenticated');
  assert.equal(anonymous.response.headers.get('www-authenticate'), 'Bearer');

  const first = await logIn(email, password);
  assert.equal(first.token_type, 'bearer');
  assert.equal(ok('me', await usersReadMe()).id, user.id);
  const renamed = ok('update me', await usersUpdateMe({ body: { name: 'Ada Lovelace' } }));
  assert.equal(renamed.name, 'Ada Lovelace');

  // Refresh: a new pair, the old refresh token spent. Keep the new one, as an app must.
  tokens = ok('refresh', await authRefresh({ body: { refresh_token: first.refresh_token } }));
  assert.notEqual(tokens.refresh_token, first.refresh_token);
  assert.equal(ok('me after refresh', await usersReadMe()).name, 'Ada Lovelace');
  const forbidden = failed('list as a user', 403, await usersListUsers());
  assert.ok(isMessage(forbidden));
  assert.equal(forbidden.detail, 'Not enough privileges');

  const session = tokens.refresh_token;
  const loggedOut = await authLogout({ body: { refresh_token: session } });
  assert.equal(loggedOut.response.status, 204, 'logout');
  failed('refresh after logout', 401, await authRefresh({ body: { refresh_token: session } }));

  await logIn(setting('ADMIN_EMAIL'), setting('ADMIN_PASSWORD'));
  const page = ok('admin list', await usersListUsers({ query: { limit: 100 } }));
  assert.ok(page.total >= 2, `total ${page.total}`);
  assert.ok(page.items.some((listed) => listed.id === user.id), 'the new user is listed');

  // Roles: what the installed features let an admin hand out, a role that grants one of
  // them, given to the new user and taken back (its holders lose it at once).
  const permissions = ok('permissions', await rolesListPermissions());
  assert.ok(permissions.some((declared) => declared.name === 'users:read'));
  const readers = ok(
    'create role',
    await rolesCreateRole({
      body: { name: `readers-${randomUUID().slice(0, 8)}`, permissions: ['users:read'] },
    }),
  );
  const held = ok(
    'assign roles',
    await rolesAssignRoles({
      path: { user_id: user.id },
      body: { roles: ['member', readers.name] },
    }),
  );
  assert.deepEqual(held.permissions, ['users:read']);
  const admin = tokens;
  await logIn(email, password);
  ok('list as a reader', await usersListUsers({ query: { limit: 1 } }));
  const reader = tokens;
  tokens = admin;
  const deleted = await rolesDeleteRole({ path: { role_id: readers.id } });
  assert.equal(deleted.response.status, 204, 'delete role');
  tokens = reader;
  failed('list after the role is gone', 403, await usersListUsers());

  // Sign-in through an OpenID Connect provider (docs/oidc.md): the buttons come from the
  // provider list; each makes a PKCE verifier, keeps it, and navigates the browser to
  // /auth/oidc/<name>/authorize?redirect_uri=...&code_challenge=<S256>&code_challenge_method=S256;
  // the page at redirect_uri reads `code` from its URL and trades it, once, with the verifier.
  const providers = ok('oidc providers', await oidcListProviders());
  assert.ok(Array.isArray(providers));
  const verifier = Buffer.from(crypto.getRandomValues(new Uint8Array(48))).toString('base64url');
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  const authorize = new URL('/api/v1/auth/oidc/example/authorize', 'https://api.example');
  authorize.search = new URLSearchParams({
    redirect_uri: 'https://app.example/auth/callback',
    code_challenge: Buffer.from(digest).toString('base64url'),
    code_challenge_method: 'S256',
  }).toString();
  assert.equal(authorize.searchParams.get('code_challenge')?.length, 43);
  const code = new URL('https://app.example/auth/callback?code=not-a-real-code').searchParams;
  const traded = await oidcExchange({
    body: { code: code.get('code') ?? '', code_verifier: verifier },
  });
  if (traded.data) tokens = traded.data; // a real code signs in: a session like any other
  const refused = failed('exchange a made-up code', 400, traded);
  assert.ok(isMessage(refused));
  assert.equal(refused.detail, 'Invalid, expired or already used code');

  console.log(`typescript client flow: ${page.items.length} users listed, all steps passed`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
