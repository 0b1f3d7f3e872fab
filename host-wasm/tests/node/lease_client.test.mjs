// The lease client's rules, with a scripted server (a fake `fetch`) and a clock the test moves:
// it renews at half-life, keeps its lease through an outage or a 429 until it expires, and
// stops at once, wiping the lease, when a renewal is refused.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = process.env.BYOK_WASM_PKG ?? join(here, '..', '..', 'pkg');
const { default: init, Lease } = await import(join(pkg, 'byok_wasm.js'));
const { LeaseClient, openWithWebCrypto, sealWithWebCrypto, WEBCRYPTO_FROM } = await import(join(pkg, 'lease_client.js'));
await init({ module_or_path: readFileSync(join(pkg, 'byok_wasm_bg.wasm')) });

const SCOPE = 'd05d3b7582186f01f52b381653c90d31';
const KEY = Buffer.alloc(32, 7).toString('base64');
const TTL = 60_000;

/** The client's clock (starting at the module's clock, `Lease.now()`), and a server answering
 * from `script`, one entry per lease request: 'ok', 'down', an HTTP status, or an API code
 * refused with 409. Its leases end `life` ms after the client's clock (sent as the wall time
 * that is: the module's clock runs ahead of `Date.now()` once a test stepped the wall back);
 * the module checks expiry by its real clock, so moving the client's clock forward triggers
 * renewals without expiring anything. */
function setup(script, life = TTL, options = {}) {
  const clock = { t: Lease.now() };
  const ends = () => clock.t - (Lease.now() - Date.now()) + life;
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ at: clock.t, url, body: init.body, redirect: init.redirect });
    const next = script.shift();
    if (next?.late) {
      // Answers only when the test says, whatever its deadline (a runtime that ignores the
      // abort signal): a lease, after the client gave up on it.
      return new Promise((resolve) => { next.late.answer = () => resolve(new Response(JSON.stringify({
        scope: SCOPE, current_version: 1, keys: [{ version: 1, key: KEY }], expires_at: ends(),
        ttl_ms: life }), { status: 200 })); });
    }
    if (next === 'ok') {
      return new Response(JSON.stringify({ scope: SCOPE, current_version: 1,
        keys: [{ version: 1, key: KEY }], expires_at: ends(), ttl_ms: life }), { status: 200 });
    }
    if (next === 'down') throw new TypeError('connect ECONNREFUSED');
    if (next === 'lost') {
      // Never settles, deadline or not: a request whose runtime cancelled the I/O it was tied
      // to (a Worker's, when the client that started it went away).
      return new Promise(() => {});
    }
    if (next === 'stall') {
      // Headers never come; only the client's own deadline ends the wait.
      return new Promise((_, reject) => init.signal?.addEventListener('abort', () => reject(init.signal.reason)));
    }
    if (next === 'broken409') {
      // A refusal's status arrives, then the connection resets before its body.
      const body = new ReadableStream({ start(c) { c.error(new TypeError('terminated')); } });
      return new Response(body, { status: 409 });
    }
    if (next?.slow409) {
      // A refusal's status arrives; its body only when the test says.
      const body = new ReadableStream({ start(c) { next.slow409.send = () => {
        c.enqueue(new TextEncoder().encode(JSON.stringify({ error: { code: 'scope_revoked', message: 'revoked' } })));
        c.close();
      }; } });
      return new Response(body, { status: 410 });
    }
    if (next === 'no_ttl') {
      return new Response(JSON.stringify({ scope: SCOPE, current_version: 1,
        keys: [{ version: 1, key: KEY }], expires_at: ends() }), { status: 200 });
    }
    if (next?.huge) {
      // A body one byte over the limit: declared (content-length), or streamed in pieces.
      const max = Lease.maxDocumentLen();
      const piece = new Uint8Array(64 << 10).fill(0x20);
      let sent = 0;
      const body = new ReadableStream({ pull(c) {
        const n = Math.min(piece.length, max + 1 - sent);
        if (n === 0) { c.close(); return; }
        sent += n;
        next.huge.sent = sent;
        c.enqueue(piece.slice(0, n));
      } }, { highWaterMark: 0 });
      const headers = next.huge.declared ? { 'content-length': String(max + 1) } : {};
      return new Response(body, { status: 200, headers });
    }
    if (next === 'other_scope') {
      return new Response(JSON.stringify({ scope: 'aa'.repeat(16), current_version: 1,
        keys: [{ version: 1, key: KEY }], expires_at: ends(), ttl_ms: life }), { status: 200 });
    }
    if (next?.hugeError) {
      // A 503 whose body has no end: read past the limit, it is cut off.
      let sent = 0;
      const piece = new Uint8Array(64 << 10).fill(0x20);
      const body = new ReadableStream({ pull(c) {
        sent += piece.length;
        next.hugeError.sent = sent;
        c.enqueue(piece.slice());
      } }, { highWaterMark: 0 });
      return new Response(body, { status: 503 });
    }
    if (next?.bare) {
      // A proxy's answer: a status and no byok JSON.
      return new Response(next.body ?? '<html>no</html>', { status: next.bare });
    }
    if (next?.status) {
      // byok's own answer: its status and code.
      return new Response(JSON.stringify({ error: { code: next.code, message: 'refused' } }), { status: next.status });
    }
    if (typeof next === 'number') {
      return new Response(JSON.stringify({ error: { code: `http_${next}`, message: 'no' } }), { status: next });
    }
    return new Response(JSON.stringify({ error: { code: next, message: 'refused' } }), { status: 409 });
  };
  const client = new LeaseClient({ Lease, server: 'https://byok.test/', org: 'o1', scope: SCOPE,
    token: 't', audience: 'edge-a', fetch, now: () => clock.t, ...options });
  return { clock, calls, client };
}

const pt = new TextEncoder().encode('x');

test('it renews at half-life, not before', async () => {
  const { clock, calls, client } = setup(['ok', 'ok']);
  await client.encrypt(pt);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url, `https://byok.test/v1/orgs/o1/scopes/${SCOPE}/lease`);
  assert.deepEqual(JSON.parse(calls[0].body), { audience: 'edge-a' });
  clock.t += TTL / 2 - 1;
  await client.encrypt(pt);
  assert.equal(calls.length, 1, 'not yet');
  clock.t += 1;
  await client.encrypt(pt);
  assert.equal(calls.length, 2, 'renewed at half-life');
});

test('a burst of messages shares one lease request', async () => {
  const { calls, client } = setup(['ok', 'ok']);
  const cts = await Promise.all(Array.from({ length: 20 }, () => client.encrypt(pt)));
  assert.equal(cts.length, 20);
  assert.equal(calls.length, 1);
});

test('an outage or a 429 keeps the lease until it expires; then lease_expired', async () => {
  // Leases that live 400 ms of real time (the module checks expiry by its own clock).
  const { clock, calls, client } = setup(['ok', 'down', 429, 503, 503], 400);
  await client.encrypt(pt);
  clock.t += TTL; // past the renewal point: every use asks again
  await client.encrypt(pt); // down: kept
  await client.encrypt(pt); // 429: kept
  await client.encrypt(pt); // 503: kept
  assert.equal(calls.length, 4);
  await new Promise((r) => setTimeout(r, 450));
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'lease_expired');
  assert.equal(client.current, null, 'the expired lease was dropped');
});

test('a refused renewal wipes the lease at once; it asks again only after the retry interval', async () => {
  const { clock, calls, client } = setup(['ok', 'scope_paused', 'scope_paused', 'down', 'ok']);
  const ct = await client.encrypt(pt);
  clock.t += TTL / 2;
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'scope_paused');
  assert.equal(client.current, null, 'the lease was dropped');
  // Refused: no further request before the retry interval, every call refused with the same
  // code, old ciphertexts too.
  const retry = Lease.refusalRetryMs();
  assert.equal(retry, 5000);
  clock.t += retry - 1;
  await assert.rejects(client.decrypt(ct), (e) => e.code === 'scope_paused');
  assert.equal(calls.length, 2);
  clock.t += 1;
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'scope_paused');
  assert.equal(calls.length, 3, 'asked again once, still paused');
  clock.t += retry;
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'scope_paused', 'byok away: the refusal stands');
  assert.equal(calls.length, 4);
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'scope_paused');
  assert.equal(calls.length, 4, 'and no request before the next interval');
  clock.t += retry;
  assert.deepEqual(await client.decrypt(ct), pt, 'resumed: a new lease opens the old ciphertext');
  assert.equal(calls.length, 5);
});

test('a refused renewal ends the streams already open, both ways, and wipes their keys', async () => {
  const { clock, client } = setup(['ok', 'scope_revoked']);
  const sealing = await client.encryptStream();
  const opening = await client.decryptStream();
  const [seal, open] = [sealing.writable.getWriter(), opening.writable.getWriter()];
  const [sealed, opened] = [sealing.readable.getReader(), opening.readable.getReader()];
  // A TransformStream runs a write only while its output is being read: keep a read pending
  // (its failure, once the stream errors, is expected).
  const pull = (reader) => { const r = reader.read(); r.catch(() => {}); return r; };
  const header = pull(sealed);
  await seal.write(new Uint8Array(70_000)); // a header and a whole frame come out
  assert.ok((await header).value.length > 0, 'the sealing stream works before the refusal');
  pull(sealed);
  pull(opened);
  await open.write(new Uint8Array(10)); // the opener starts (a header's first bytes)
  assert.equal(client.streams.size, 2);
  clock.t += TTL / 2;
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'scope_revoked');
  assert.equal(client.streams.size, 0, 'both streams ended at the refusal');
  // Their next write fails with the refusal, long before their copy of the lease expires.
  await assert.rejects(seal.write(pt), (e) => e.code === 'scope_revoked');
  await assert.rejects(open.write(pt), (e) => e.code === 'scope_revoked');
});

test('a refusal whose body breaks off is a refusal still', async () => {
  const { clock, client } = setup(['ok', 'broken409']);
  await client.encrypt(pt);
  clock.t += TTL / 2;
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'invalid_request');
  assert.equal(client.current, null, 'the lease was dropped');
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'invalid_request', 'and the refusal stands');
});

test('a lease request that stalls ends at the client\'s deadline, as byok unreachable', { timeout: 5000 }, async () => {
  const { clock, calls, client } = setup(['ok', 'stall', 'stall', 'stall'], TTL, { timeoutMs: 50 });
  // Node does not wait for `AbortSignal.timeout`'s timer (a real socket would keep it busy).
  const alive = setInterval(() => {}, 1000);
  after(() => clearInterval(alive));
  await client.encrypt(pt);
  clock.t += TTL / 2;
  // Past the renewal point, byok not answering: the held lease serves once the wait ends.
  const ct = await client.encrypt(pt);
  assert.equal(calls.length, 2);
  assert.deepEqual(await client.decrypt(ct), pt);
  // With no lease at all, the caller gets `unreachable`, not a wait without end.
  client.drop();
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'unreachable');
});

test('bad input is refused with invalid_request, and a refusal still ends everything after it', async () => {
  const { clock, client } = setup(['ok', 'scope_paused']);
  await client.encrypt(pt);
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const bad = [
    () => client.encrypt('text'),
    () => client.encrypt(42),
    () => client.decrypt(-1),
    () => client.decrypt(10n),
    () => client.encrypt(pt, { get tenant() { throw new Error('a getter throws'); } }),
    () => client.encrypt(pt, revoked.proxy),
    () => client.encrypt(pt, { tenant: 7 }),
    () => client.encrypt(pt, 'tenant'),
  ];
  for (const call of bad) {
    await assert.rejects(call(), (e) => e.code === 'invalid_request', String(call));
  }
  // An ArrayBuffer is bytes too.
  const ct = await client.encrypt(pt.buffer.slice(0));
  assert.deepEqual(await client.decrypt(ct), pt);
  const stream = await client.encryptStream();
  const writer = stream.writable.getWriter();
  stream.readable.getReader().read().catch(() => {});
  await assert.rejects(writer.write('text'), (e) => e.code === 'invalid_request');
  // None of it left the lease unusable or unfreeable: the refusal wipes it and ends the rest.
  clock.t += TTL / 2;
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'scope_paused');
  assert.equal(client.current, null);
  assert.equal(client.streams.size, 0);
});

test('bytes are read by the engine, never by the caller\'s code or its claimed length', async () => {
  const { clock, client } = setup(['ok', 'scope_paused']);
  const lease = await client.lease();
  const four = new Uint8Array([1, 2, 3, 4]);
  const claiming = (length) => Object.defineProperty(four.slice(), 'length', length);
  // An own `length` is not believed, nor run: the four bytes are sealed, no more and no fewer
  // (a larger claim once sealed bytes of the module's memory; a smaller one threw inside it).
  for (const length of [{ value: 1000 }, { value: 1 }, { get() { throw new Error('a getter'); } }]) {
    assert.deepEqual(lease.decrypt(lease.encrypt(claiming(length))), four, JSON.stringify(length));
  }
  const ct = lease.encrypt(pt);
  const step = lease.openStep(Object.defineProperty(ct.slice(), 'length', { value: 10 }));
  assert.equal(step.header.length, 92, 'the header was cut at the claimed length');
  const gone = new ArrayBuffer(8);
  structuredClone(gone, { transfer: [gone] });
  const goneView = new Uint8Array(8);
  structuredClone(goneView.buffer, { transfer: [goneView.buffer] });
  const bad = {
    proxy: new Proxy(pt, {}),
    'proxy whose prototype trap throws': new Proxy(pt, { getPrototypeOf() { throw new Error('trap'); } }),
    'proxy of a buffer': new Proxy(pt.buffer, {}),
    'detached buffer': gone,
    'view of a detached buffer': goneView,
    Uint16Array: new Uint16Array(4),
    DataView: new DataView(new ArrayBuffer(4)),
  };
  const refused = (e) => e.name === 'ByokError' && e.code === 'invalid_request';
  for (const [name, value] of Object.entries(bad)) {
    assert.throws(() => lease.encrypt(value), refused, `encrypt: ${name}`);
    assert.throws(() => lease.decrypt(value), refused, `decrypt: ${name}`);
    assert.throws(() => lease.openStep(value), refused, `openStep: ${name}`);
    // A view of a detached buffer measures 0 bytes, and seals as empty.
    if (name !== 'view of a detached buffer') {
      assert.throws(() => lease.sealStepBytes(value), refused, `sealStepBytes: ${name}`);
    }
    const sealer = lease.sealStream();
    assert.throws(() => sealer.push(value), refused, `sealStream: ${name}`);
    sealer.free();
    const opener = lease.openStream();
    assert.throws(() => opener.push(value), refused, `openStream: ${name}`);
    opener.free();
  }
  // None of it left the lease borrowed: it still works, and a refusal still wipes it.
  assert.deepEqual(lease.decrypt(lease.encrypt(pt)), pt);
  clock.t += TTL / 2;
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'scope_paused');
  assert.equal(client.current, null);
});

test('a lease that expires unrenewed ends the streams open on it', async () => {
  const { clock, client } = setup(['ok', 'down'], 300);
  const sealing = await client.encryptStream();
  sealing.readable.getReader().read().catch(() => {});
  assert.equal(client.streams.size, 1);
  clock.t += TTL;
  await new Promise((r) => setTimeout(r, 350));
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'lease_expired');
  assert.equal(client.streams.size, 0, 'the stream outlived the lease in the client');
  await assert.rejects(sealing.writable.getWriter().write(pt), (e) => e.code === 'lease_expired');
});

test('an unused lease is wiped when it expires, with the streams open on it', async () => {
  const { client } = setup(['ok'], 300);
  const sealing = await client.encryptStream();
  sealing.readable.getReader().read().catch(() => {});
  assert.notEqual(client.current, null);
  // Nothing calls the client; the timer keeps this test's process alive meanwhile.
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(client.current, null, 'the expired lease was still held');
  assert.equal(client.streams.size, 0, 'the stream outlived the lease');
  await assert.rejects(sealing.writable.getWriter().write(pt), (e) => e.code === 'lease_expired');
});

test('a lease freed behind the client\'s back does not break its expiry timer', async () => {
  const { client } = setup(['ok'], 200);
  (await client.lease()).free();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(client.current, null);
});

test('a 401 after a token revoke is a refusal too; a 429 or 5xx is not', async () => {
  const { clock, calls, client } = setup(['ok', { status: 401, code: 'unauthenticated' }]);
  await client.encrypt(pt);
  clock.t += TTL / 2;
  // byok refused the edge's own token: not the caller's 401 (which would ask it to log in).
  const refused = (e) => e.code === 'edge_token_refused' && Lease.edgeStatus(e.code) === 502
    && Lease.wwwAuthenticate(Lease.edgeStatus(e.code)) === undefined
    && e.message.startsWith('byok refused this edge\'s own service token (401: refused)');
  await assert.rejects(client.encrypt(pt), refused);
  await assert.rejects(client.encrypt(pt), refused);
  assert.equal(calls.length, 2);
  assert.deepEqual([400, 401, 403, 404, 408, 409, 410, 429, 500, 503].map((s) => Lease.isRefusal(s)),
    [true, true, true, true, false, true, true, false, false, false]);
});

test('the edge status of a code is core\'s', () => {
  assert.deepEqual(['scope_paused', 'scope_revoked', 'unauthenticated', 'lease_expired',
    'unreachable', 'decrypt_failed', 'no_such_code'].map((c) => Lease.edgeStatus(c)),
  [409, 410, 401, 503, 503, 400, 500]);
  // A 401 names its challenge (core's), no other status does.
  assert.deepEqual([401, 403, 503].map((s) => Lease.wwwAuthenticate(s)),
    ['Bearer realm="byok"', undefined, undefined]);
});

test('a wall clock stepped back after a lease arrived does not stretch it', async () => {
  const realNow = Date.now;
  const received = realNow();
  const doc = { scope: SCOPE, current_version: 1, keys: [{ version: 1, key: KEY }],
    expires_at: received + 60_000, ttl_ms: 300 };
  const lease = Lease.fromJson(JSON.stringify(doc), received);
  assert.equal(lease.expired, false);
  // NTP steps the host's clock back ten minutes; the lease's 300 ms still end on time.
  Date.now = () => realNow() - 600_000;
  try {
    await new Promise((r) => setTimeout(r, 350));
    assert.equal(lease.expired, true, 'the step back stretched the lease');
    assert.throws(() => lease.encrypt(pt), (e) => e.code === 'lease_expired');
  } finally {
    Date.now = realNow;
    lease.free();
  }
});

test('after the wall clock was stepped back past a TTL, new leases still last their TTL', async () => {
  const realNow = Date.now;
  // NTP steps the host's clock back ten minutes, and it stays there. The module's clock keeps
  // running on (the step does not stretch a lease), ten minutes ahead of the wall from now on.
  Date.now = () => realNow() - 600_000;
  try {
    Lease.now(); // the module reads the stepped wall
    // A server whose clock agrees with the stepped wall issues a 60 s lease: it lasts 60 s,
    // not zero (read against the module's clock, `expires_at` was ten minutes past).
    const doc = { scope: SCOPE, current_version: 1, keys: [{ version: 1, key: KEY }],
      expires_at: Date.now() + 60_000, ttl_ms: 60_000 };
    const lease = Lease.fromJson(JSON.stringify(doc));
    try {
      assert.equal(lease.expired, false, 'the lease arrived expired');
      const left = lease.expiresAt - Lease.now();
      assert.ok(left > 59_000 && left <= 60_000, `${left} ms left of a 60 s lease`);
      assert.equal(lease.decrypt(lease.encrypt(pt)).length, 1);
    } finally {
      lease.free();
    }
  } finally {
    Date.now = realNow;
  }
});

test('a refusal wipes the lease before its body arrives, and takes its code from the body', async () => {
  const slow = { slow409: {} };
  const { clock, client } = setup(['ok', slow]);
  await client.encrypt(pt);
  const stream = await client.encryptStream();
  clock.t += TTL / 2;
  const refused = client.encrypt(pt);
  refused.catch(() => {});
  // The status is in, the body is not: the keys are gone already, the stream's too.
  for (let i = 0; i < 200 && client.current !== null; i++) await new Promise((r) => setTimeout(r, 1));
  assert.equal(client.current, null, 'the lease waited for the refusal\'s body');
  assert.equal(client.streams.size, 0, 'the open stream kept its keys');
  slow.slow409.send();
  await assert.rejects(refused, (e) => e.code === 'scope_revoked' && e.message === 'revoked');
  // A TransformStream runs a write only while its output is being read.
  stream.readable.getReader().read().catch(() => {});
  await assert.rejects(stream.writable.getWriter().write(pt), (e) => e.code === 'scope_revoked');
});

test('a lease answer without ttl_ms, or over the limit, is not taken (unreachable, 503); a held lease stays', async () => {
  const first = async (answer) => {
    const { client } = setup([answer]);
    const err = await client.encrypt(pt).catch((e) => e);
    assert.equal(client.current, null);
    return err;
  };
  const noTtl = await first('no_ttl');
  assert.equal(noTtl.code, 'unreachable');
  assert.equal(Lease.edgeStatus(noTtl.code), 503);
  assert.match(noTtl.message, /missing field `ttl_ms`/);
  const max = Lease.maxDocumentLen();
  assert.equal(max, 1 << 20);
  const declared = { declared: true };
  const streamed = {};
  for (const huge of [declared, streamed]) {
    const err = await first({ huge });
    assert.equal(err.code, 'unreachable');
    assert.ok(err.message.includes(`${max + 1} bytes`), err.message);
  }
  assert.ok(!declared.sent, 'a declared length over the limit is refused before the body is read');
  assert.equal(streamed.sent, max + 1, 'the streamed answer was read to one byte past the limit');
  // As a renewal: not a refusal of the grant, so the lease held serves on until it expires.
  const { clock, calls, client } = setup(['ok', { huge: {} }, 'down']);
  const ct = await client.encrypt(pt);
  const held = client.current;
  clock.t += TTL / 2;
  await client.encrypt(pt);
  assert.equal(calls.length, 2, 'renewal asked');
  assert.equal(client.current, held);
  assert.equal((await client.decrypt(ct)).length, 1);
  assert.equal(calls.length, 3);
});

test('a lease of another scope is not taken', async () => {
  const { client } = setup(['other_scope']);
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'unreachable' && /not d05d/.test(e.message));
  assert.equal(client.current, null);
});

test('a message key is wiped when the ciphertext cannot be viewed', async () => {
  const doc = { scope: SCOPE, current_version: 1, keys: [{ version: 1, key: KEY }],
    expires_at: Date.now() + 60_000, ttl_ms: 60_000 };
  const lease = Lease.fromJson(JSON.stringify(doc));
  try {
    const ct = lease.encrypt(new Uint8Array(100));
    let step;
    const openStep = lease.openStep.bind(lease);
    lease.openStep = (...a) => { step = openStep(...a); return step; };
    // An ArrayBuffer: the module reads it, but it has no `subarray`.
    await assert.rejects(openWithWebCrypto(lease, ct.buffer.slice(ct.byteOffset, ct.byteOffset + ct.length)), TypeError);
    assert.ok(step, 'openStep ran');
    assert.ok(step.key.every((b) => b === 0), 'the message key was left in memory');
  } finally {
    lease.free();
  }
});

test('a stream left open is wiped when its lease expires, though the client renewed since', async () => {
  // Leases of 400 ms of real time; the second is asked with the client's clock ten minutes on,
  // so it lives that long and the client's own expiry timer never ends the first's streams.
  const { clock, client } = setup(['ok', 'ok'], 400);
  const abandoned = await client.encryptStream();
  assert.ok(abandoned, 'a stream, never written or read');
  assert.equal(client.streams.size, 1);
  clock.t += 600_000;
  await client.encrypt(pt); // renewed
  assert.notEqual(client.current, null);
  await new Promise((r) => setTimeout(r, 450));
  assert.equal(client.streams.size, 0, 'the abandoned stream kept its keys past its lease');
  assert.notEqual(client.current, null, 'the renewed lease lives on');
});

test('a message too large for one call is refused before any copy, and the lease still frees', () => {
  const doc = { scope: SCOPE, current_version: 1, keys: [{ version: 1, key: KEY }],
    expires_at: Date.now() + 60_000, ttl_ms: 60_000 };
  const lease = Lease.fromJson(JSON.stringify(doc));
  const big = new Uint8Array((256 << 20) + 1);
  assert.throws(() => lease.encrypt(big), (e) => e.code === 'too_large' && /as a stream/.test(e.message));
  assert.throws(() => lease.decrypt(big), (e) => e.code === 'too_large');
  // The module did not abort: the lease works and frees (wiping its keys).
  assert.equal(lease.decrypt(lease.encrypt(pt)).length, 1);
  lease.free();
});

test('an answer without byok\'s JSON is named by its status: a bare 403 a refusal, a 503 an outage', async () => {
  const { clock, client } = setup(['ok', { bare: 503 }, { bare: 403 }]);
  await client.encrypt(pt);
  clock.t += TTL / 2;
  await client.encrypt(pt); // 503: an outage, the lease kept
  assert.notEqual(client.current, null);
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'forbidden' && Lease.edgeStatus(e.code) === 403);
  assert.equal(client.current, null, 'a refusal drops the lease');
  assert.deepEqual([401, 404, 408, 500, 502].map((s) => Lease.answerCode(s)),
    ['edge_token_refused', 'not_found', 'request_timeout', 'unreachable', 'unreachable']);
  // A code byok names is kept, one this build does not know is named by the status.
  assert.deepEqual([[409, 'scope_paused'], [409, 'from_a_newer_byok'], [401, 'unauthenticated']]
    .map(([s, c]) => Lease.answerCode(s, c)), ['scope_paused', 'invalid_request', 'edge_token_refused']);
});

test('an error answer is read no further than a lease could be', async () => {
  const hugeError = {};
  const { client } = setup([{ hugeError }]);
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'unreachable');
  const max = Lease.maxDocumentLen();
  assert.ok(hugeError.sent > max && hugeError.sent <= max + (128 << 10),
    `read ${hugeError.sent} bytes of an endless error body`);
});

test('what is not bytes is refused at every size, also where WebCrypto seals', async () => {
  const { client } = setup(['ok']);
  const big = WEBCRYPTO_FROM + 1;
  const refused = (e) => e.name === 'ByokError' && e.code === 'invalid_request';
  for (const [name, value] of Object.entries({
    'a long string': 'x'.repeat(big),
    'a long array': Array.from({ length: big }, () => 1),
    'a long Uint16Array': new Uint16Array(big),
    null: null,
    undefined,
  })) {
    await assert.rejects(client.encrypt(value), refused, `encrypt: ${name}`);
    await assert.rejects(sealWithWebCrypto(await client.lease(), value), refused, `sealWithWebCrypto: ${name}`);
  }
  await assert.rejects(client.decrypt(null), refused, 'decrypt: null');
  // Bytes at that size still go through.
  const pt = new Uint8Array(big).fill(7);
  assert.deepEqual(await client.decrypt(await client.encrypt(pt)), pt);
});

test('a refusal whose body is JSON but not an object is named by its status', async () => {
  const { clock, client } = setup(['ok', { bare: 410, body: 'null' }]);
  await client.encrypt(pt);
  clock.t += TTL / 2;
  await assert.rejects(client.encrypt(pt),
    (e) => e.code === 'scope_revoked' && e.message === 'byok refused the lease (410)');
  assert.equal(client.current, null, 'a refusal drops the lease');
});

test('a renewal that outlasts the lease ends in lease_expired, not a freed lease read', { timeout: 5000 }, async () => {
  // The lease lives 150 ms of real time; its renewal stalls until the 400 ms deadline.
  const { clock, client } = setup(['ok', 'stall'], 150, { timeoutMs: 400 });
  // Node does not wait for `AbortSignal.timeout`'s timer (a real socket would keep it busy).
  const alive = setInterval(() => {}, 1000);
  after(() => clearInterval(alive));
  await client.encrypt(pt);
  clock.t += TTL;
  await assert.rejects(client.encrypt(pt), (e) => e.code === 'lease_expired');
  assert.equal(client.current, null);
});

test('the client\'s clock is the module\'s: a wall clock stepped back does not move it back', async () => {
  const real = Date.now;
  Lease.now(); // the module has read the clock
  try {
    Date.now = () => real() - 5_000;
    const { client } = setup([], TTL, { now: undefined });
    assert.ok(client.now() >= real() - 100, `${client.now()} vs ${real()}`);
  } finally {
    Date.now = real;
  }
});

test('a lease request that never settles holds no caller past its deadline, nor the next', { timeout: 5000 }, async () => {
  const { clock, calls, client } = setup(['ok', 'lost', 'ok'], TTL, { timeoutMs: 50 });
  const alive = setInterval(() => {}, 1000);
  after(() => clearInterval(alive));
  await client.encrypt(pt);
  clock.t += TTL / 2;
  // Past the renewal point; the renewal is lost: the held lease serves once the wait ends.
  await client.encrypt(pt);
  assert.equal(calls.length, 2);
  // The next caller asks anew instead of waiting on the lost request.
  await client.encrypt(pt);
  assert.equal(calls.length, 3);
});

test('a lease answered after a newer refusal does not bring the keys back', { timeout: 5000 }, async () => {
  const late = {};
  const { clock, calls, client } = setup(['ok', { late }, 'scope_paused'], TTL, { timeoutMs: 50 });
  const alive = setInterval(() => {}, 1000);
  after(() => clearInterval(alive));
  await client.encrypt(pt);
  clock.t += TTL / 2;
  // The renewal is given up on at its deadline; the held lease serves.
  await client.encrypt(pt);
  // The next one is refused: the keys go.
  await assert.rejects(client.renew(), { code: 'scope_paused' });
  await assert.rejects(client.encrypt(pt), { code: 'scope_paused' });
  // The request given up on answers now, with a lease: it is not taken.
  late.answer();
  await new Promise((r) => setTimeout(r, 20));
  await assert.rejects(client.encrypt(pt), { code: 'scope_paused' });
  assert.equal(client.current, null);
  assert.equal(calls.length, 3);
  // Redirects are never followed: they could carry the token and the keys elsewhere.
  assert.ok(calls.every((c) => c.redirect === 'manual'), JSON.stringify(calls));
});

test('a redirect is not followed, nor taken for a refusal: the held lease serves on', async () => {
  const { clock, calls, client } = setup(['ok', { bare: 307, body: '' }, 'ok']);
  await client.encrypt(pt);
  clock.t += TTL / 2;
  // The renewal answers a redirect: unreachable, and the lease held still serves.
  await assert.rejects(client.renew(), { code: 'unreachable' });
  await client.encrypt(pt);
  assert.equal(calls.length, 3);
});

test('the server is reached over https, or plain http to a private address only', () => {
  const make = (server, allowPlainHttp) => new LeaseClient({ Lease, server, org: 'o1', scope: SCOPE,
    token: 't', fetch: async () => { throw new Error('no call'); }, allowPlainHttp });
  for (const ok of ['https://byok.example.com', 'http://127.0.0.1:8080', 'http://10.1.2.3', 'http://[::1]:9']) {
    make(ok, false);
  }
  for (const plain of ['http://byok.example.com', 'http://8.8.8.8']) {
    assert.throws(() => make(plain, false), (e) => e.code === 'not_configured' && /cleartext/.test(e.message));
    make(plain, true);
  }
  assert.throws(() => make('ftp://byok.example.com', true), (e) => e.code === 'not_configured');
});

test('a setting unset, or an org or scope that is not an id, is not_configured before any call', () => {
  const base = { Lease, server: 'https://byok.example.com', org: 'o1', scope: SCOPE, token: 't',
    fetch: async () => { throw new Error('no call'); } };
  const cases = [
    [{ server: undefined }, /server URL is not set/],
    [{ server: '' }, /server URL is not set/],
    [{ org: undefined }, /the org is not set/],
    [{ scope: '' }, /the scope is not set/],
    [{ scope: '../../tokens' }, /the scope is not set, or not an id/],
    [{ org: 'o1?x=' }, /the org is not set, or not an id/],
    [{ token: undefined }, /service token is not set/],
    [{ token: '' }, /service token is not set/],
  ];
  for (const [unset, message] of cases) {
    assert.throws(() => new LeaseClient({ ...base, ...unset }),
      (e) => e.code === 'not_configured' && message.test(e.message), JSON.stringify(unset));
  }
});
