// An edge in Node against a real `byok serve` (started by tests/tests/edge_node.rs, which
// passes the server, org, scope and tokens in the environment): ciphertexts made at the edge
// open on the server and the reverse; a pause, and a token revoke, stop the edge within one
// lease TTL. Prints one JSON line of what it measured; exits non-zero on any failure.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const env = (k) => { const v = process.env[k]; assert.ok(v, `${k} is not set`); return v; };
const pkg = env('BYOK_WASM_PKG');
const { default: init, Lease } = await import(join(pkg, 'byok_wasm.js'));
const { LeaseClient } = await import(join(pkg, 'lease_client.js'));
await init({ module_or_path: readFileSync(join(pkg, 'byok_wasm_bg.wasm')) });

const server = env('BYOK_SERVER');
const org = env('BYOK_ORG');
const scope = env('BYOK_SCOPE');
const ttl = Number(env('BYOK_LEASE_TTL_MS'));
const api = async (path, token, body) => {
  const r = await fetch(`${server}/v1/orgs/${org}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const v = await r.json().catch(() => null);
  assert.ok(r.ok, `${path}: ${r.status} ${JSON.stringify(v)}`);
  return v;
};
const enc = new TextEncoder();
const dec = new TextDecoder();
const ctx = { tenant: 'acme' };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Both ways: the edge's ciphertext opens on the server, the server's at the edge.
const client = new LeaseClient({ Lease, server, org, scope, token: env('BYOK_SERVICE_TOKEN'),
  audience: 'edge-node-test' });
const atEdge = await client.encrypt(enc.encode('sealed at the edge'), ctx);
const armored = 'byok:v1:' + Buffer.from(atEdge).toString('base64url');
const opened = await api('/decrypt', env('BYOK_SERVICE_TOKEN'), { ciphertext: armored, context: ctx });
assert.equal(Buffer.from(opened.plaintext, 'base64').toString(), 'sealed at the edge');
const onServer = await api(`/scopes/${scope}/encrypt`, env('BYOK_SERVICE_TOKEN'),
  { plaintext: Buffer.from('sealed on the server').toString('base64'), context: ctx });
assert.equal(dec.decode(await client.decrypt(onServer.ciphertext, ctx)), 'sealed on the server');

// Streams: a framed ciphertext made at the edge in 10 000-byte chunks opens with the CLI (the
// test runs `byok decrypt` on BYOK_STREAM_OUT), and the CLI's (BYOK_STREAM_IN) opens here.
const pattern = (n) => Uint8Array.from({ length: n }, (_, i) => (i * 7) % 251);
async function through(bytes, stream, chunk = 10_000) {
  const source = new ReadableStream({
    start(c) {
      for (let i = 0; i < bytes.length; i += chunk) c.enqueue(bytes.slice(i, i + chunk));
      c.close();
    },
  });
  const parts = [];
  for await (const part of source.pipeThrough(stream)) parts.push(part);
  return Buffer.concat(parts);
}
const STREAMED = 300_000;
const { writeFileSync } = await import('node:fs');
const sealedStream = await through(pattern(STREAMED), await client.encryptStream(ctx));
writeFileSync(env('BYOK_STREAM_OUT'), sealedStream);
const fromCli = readFileSync(env('BYOK_STREAM_IN'));
assert.deepEqual(await through(fromCli, await client.decryptStream(ctx), 4_096), Buffer.from(pattern(STREAMED)));
await assert.rejects(through(fromCli.subarray(0, fromCli.length - 100), await client.decryptStream(ctx)),
  (e) => e.code === 'decrypt_failed', 'a stream cut short fails at its end');
await assert.rejects(through(fromCli, await client.decryptStream({ tenant: 'other' })),
  (e) => e.code === 'decrypt_failed', 'another context fails');

/** Uses `c` until it throws; returns [the error, ms from `since` to then]. */
async function useUntilRefused(c, since) {
  for (;;) {
    try {
      await c.encrypt(enc.encode('x'), ctx);
    } catch (e) {
      return [e, Date.now() - since];
    }
    await sleep(50);
  }
}

// A token revoke: the client holding a lease from that token stops within one TTL.
const second = new LeaseClient({ Lease, server, org, scope, token: env('BYOK_SECOND_TOKEN') });
await second.encrypt(enc.encode('x'), ctx);
const revokedAt = Date.now();
const r = await fetch(`${server}/v1/orgs/${org}/tokens/${env('BYOK_SECOND_TOKEN_ID')}`, {
  method: 'DELETE', headers: { authorization: `Bearer ${env('BYOK_ADMIN_TOKEN')}` },
});
assert.equal(r.status, 200);
const [revokedErr, revokedAfter] = await useUntilRefused(second, revokedAt);
assert.equal(revokedErr.code, 'edge_token_refused', String(revokedErr));
assert.ok(revokedAfter <= ttl + 500, `used ${revokedAfter} ms after the token revoke (TTL ${ttl})`);

// A pause: the client stops within one TTL, with the server's code; and stays stopped.
await client.encrypt(enc.encode('x'), ctx);
const pausedAt = Date.now();
await api(`/scopes/${scope}/pause`, env('BYOK_ADMIN_TOKEN'), {});
const [pausedErr, pausedAfter] = await useUntilRefused(client, pausedAt);
assert.equal(pausedErr.code, 'scope_paused', String(pausedErr));
assert.ok(pausedAfter <= ttl + 500, `used ${pausedAfter} ms after the pause (TTL ${ttl})`);
await assert.rejects(client.decrypt(atEdge, ctx), (e) => e.code === 'scope_paused');

console.log(JSON.stringify({ ok: true, ttl, pausedAfter, revokedAfter }));
