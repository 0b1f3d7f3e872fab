// The JS package, black box, in Node: every decrypt vector of vectors/ through `Lease.decrypt`
// and the WebCrypto path (bytes and `byok:v1:` text), byte for byte, each refusal with the
// server's error code, then sealed across the two paths (tests/shared/vectors.mjs, which the
// browser test runs too); and the lease rules (expiry, scope, context) with their codes.
//
//   node --test host-wasm/tests/node/   (after scripts/build-wasm.sh; BYOK_WASM_PKG overrides)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const pkg = process.env.BYOK_WASM_PKG ?? join(root, 'host-wasm', 'pkg');
const { default: init, Lease } = await import(join(pkg, 'byok_wasm.js'));
const { sealWithWebCrypto, openWithWebCrypto } = await import(join(pkg, 'lease_client.js'));
await init({ module_or_path: readFileSync(join(pkg, 'byok_wasm_bg.wasm')) });

const { runVectors, formatFailures, leaseFor: leaseWith, VECTOR_FILES } =
  await import(join(here, '..', 'shared', 'vectors.mjs'));
const leaseFor = (v, expiresAt) => leaseWith(Lease, v, expiresAt);

function thrownCode(f) {
  try {
    f();
  } catch (e) {
    assert.equal(e.name, 'ByokError', String(e));
    return e.code;
  }
  return 'ok';
}

async function thrownCodeAsync(f) {
  try {
    await f();
  } catch (e) {
    assert.equal(e.name, 'ByokError', String(e));
    return e.code;
  }
  return 'ok';
}

// The vector logic is tests/shared/vectors.mjs, which the browser test runs too.
test('every decrypt vector opens or is refused with its code, in wasm and via WebCrypto', async () => {
  const files = Object.fromEntries(VECTOR_FILES.map((f) =>
    [f, JSON.parse(readFileSync(join(root, 'vectors', `${f}.json`), 'utf8'))]));
  const { ran, sealed, calls, failures } = await runVectors(files, { Lease, sealWithWebCrypto, openWithWebCrypto });
  assert.equal(failures.length, 0, `${failures.length} vector check(s) failed:\n${formatFailures(failures)}`);
  assert.ok(ran >= 90, `only ${ran} vectors ran`);
  // Both AES paths took every vector, and every vector that opens was sealed across them.
  // Each vector sealed across made 3 AES calls in WebCrypto (open it, seal, open wasm's).
  assert.ok(calls.wasm >= ran && calls.webcrypto >= ran && calls.subtleAes >= 3 * sealed,
    `paths exercised: ${JSON.stringify(calls)}`);
  assert.ok(sealed >= 20, `only ${sealed} vectors sealed across the paths`);
});

test('a lease encrypts and decrypts until it expires, then throws lease_expired', () => {
  const v = JSON.parse(readFileSync(join(root, 'vectors', 'single.json'), 'utf8')).vectors[0];
  const live = leaseFor(v);
  const ctx = { tenant: 'acme' };
  const ct = live.encrypt(new TextEncoder().encode('hello edge'), ctx);
  assert.equal(new TextDecoder().decode(live.decrypt(ct, ctx)), 'hello edge');
  const text = live.encryptArmored(new TextEncoder().encode('armored'), ctx);
  assert.ok(text.startsWith('byok:v1:'));
  assert.equal(new TextDecoder().decode(live.decrypt(text, ctx)), 'armored');
  assert.equal(thrownCode(() => live.decrypt(ct, { tenant: 'other' })), 'decrypt_failed');
  assert.equal(thrownCode(() => live.encrypt(new Uint8Array(1), { 'byok:purpose': 'x' })), 'invalid_request');
  assert.equal(thrownCode(() => live.encrypt(new Uint8Array(1), { n: 1 })), 'invalid_request');
  assert.equal(live.scope, v.scope_id);
  assert.equal(live.expired, false);
  const ended = leaseFor(v, Date.now() - 1);
  assert.equal(ended.expired, true);
  assert.equal(thrownCode(() => ended.encrypt(new Uint8Array(1), ctx)), 'lease_expired');
  assert.equal(thrownCode(() => ended.decrypt(ct, ctx)), 'lease_expired');
  assert.equal(thrownCode(() => Lease.fromJson('{}')), 'invalid_request');
});

test('WebCrypto and wasm make ciphertexts each other opens, of every size', async () => {
  const v = JSON.parse(readFileSync(join(root, 'vectors', 'single.json'), 'utf8')).vectors[0];
  const lease = leaseFor(v);
  const ctx = { tenant: 'acme', table: 'notes' };
  for (const n of [0, 1, 15, 16, 17, 4095, 4096, 65536, 1 << 20]) {
    const pt = new Uint8Array(n).map((_, i) => i * 7);
    const sealedInWasm = lease.encrypt(pt, ctx);
    const sealedInWebCrypto = await sealWithWebCrypto(lease, pt, ctx);
    assert.equal(sealedInWebCrypto.length, sealedInWasm.length, `${n}`);
    assert.deepEqual(Buffer.from(await openWithWebCrypto(lease, sealedInWasm, ctx)), Buffer.from(pt));
    assert.deepEqual(Buffer.from(lease.decrypt(sealedInWebCrypto, ctx)), Buffer.from(pt));
    // A flipped bit anywhere fails through both.
    const bad = sealedInWebCrypto.slice();
    bad[bad.length - 1] ^= 1;
    assert.equal(await thrownCodeAsync(() => openWithWebCrypto(lease, bad, ctx)), 'decrypt_failed');
    assert.equal(thrownCode(() => lease.decrypt(bad, ctx)), 'decrypt_failed');
  }
  // A step hands out a real key (the caller imports it, then wipes its copy), and the header
  // its ciphertext starts with.
  const step = lease.sealStep(1, ctx);
  assert.equal(step.key.length, 32);
  assert.ok(step.key.some((b) => b !== 0));
  assert.equal(step.header.length, 92);
});
