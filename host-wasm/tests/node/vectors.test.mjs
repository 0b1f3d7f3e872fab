// The JS package, black box, in Node: every decrypt vector of vectors/ through `Lease.decrypt`
// (bytes and `byok:v1:` text), byte for byte, each refusal with the server's error code; and
// the lease rules (expiry, scope, context) with their codes.
//
//   node --test host-wasm/tests/node/   (after scripts/build-wasm.sh; BYOK_WASM_PKG overrides)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { createHash } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const pkg = process.env.BYOK_WASM_PKG ?? join(root, 'host-wasm', 'pkg');
const { default: init, Lease } = await import(join(pkg, 'byok_wasm.js'));
const { sealWithWebCrypto, openWithWebCrypto } = await import(join(pkg, 'lease_client.js'));
await init({ module_or_path: readFileSync(join(pkg, 'byok_wasm_bg.wasm')) });

const hex = (h) => Uint8Array.from(Buffer.from(h, 'hex'));
const b64 = (h) => Buffer.from(h, 'hex').toString('base64');
const CODES = {
  format: 'malformed_ciphertext',
  unsupported: 'unsupported_ciphertext',
  decrypt: 'decrypt_failed',
  wrong_key: 'decrypt_failed',
  misuse: 'invalid_request',
};

// The caller-context rules the server applies (and so the package): at most 64 pairs, keys
// up to 256 and values up to 1024 UTF-8 bytes, no `byok:` keys. The format takes more; a caller
// does not.
function callerAllows(ctx) {
  const pairs = Object.entries(ctx);
  return pairs.length <= 64 && pairs.every(([k, v]) =>
    !k.startsWith('byok:') && Buffer.byteLength(k) <= 256 && Buffer.byteLength(v) <= 1024);
}

function leaseFor(v, expiresAt = Date.now() + 60_000) {
  return Lease.fromJson(JSON.stringify({
    scope: v.scope_id,
    current_version: v.key_version,
    keys: [{ version: v.key_version, key: b64(v.key) }],
    expires_at: expiresAt,
  }));
}

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

test('every decrypt vector opens or is refused with its code, in wasm and via WebCrypto', async () => {
  let ran = 0;
  for (const file of ['single', 'negative', 'armor']) {
    const { vectors } = JSON.parse(readFileSync(join(root, 'vectors', `${file}.json`), 'utf8'));
    for (const v of vectors) {
      if (v.operation !== 'decrypt') continue;
      // Duplicate context keys cannot be said with an object (the API's type): nothing to run.
      const keys = (v.context_pairs ?? []).map(([k]) => k);
      if (new Set(keys).size !== keys.length) continue;
      const lease = leaseFor(v);
      const input = v.armor ?? hex(v.ciphertext);
      let out;
      // Some vectors give their context as pairs, unsorted: an object keeps that order, and
      // the package must sort as the format says (UTF-8 bytes).
      const ctx = v.context ?? Object.fromEntries(v.context_pairs ?? []);
      const code = thrownCode(() => { out = lease.decrypt(input, ctx); });
      // The same through WebCrypto's AES-GCM: same code, same bytes.
      let viaWebCrypto;
      const webCode = await thrownCodeAsync(async () => {
        viaWebCrypto = await openWithWebCrypto(lease, input, ctx);
      });
      assert.equal(webCode, code, `${file}/${v.name} via WebCrypto`);
      if (code === 'ok') assert.deepEqual(Buffer.from(viaWebCrypto), Buffer.from(out));
      const want = !callerAllows(ctx) ? 'invalid_request' : v.expect === 'ok' ? 'ok' : CODES[v.expect];
      assert.equal(code, want, `${file}/${v.name}`);
      if (want === 'ok') {
        // Long plaintexts are given by their SHA-256 and length only.
        const sha = createHash('sha256').update(out).digest('hex');
        assert.equal(sha, v.plaintext_sha256, `${file}/${v.name}`);
        if (v.plaintext !== undefined) assert.equal(Buffer.from(out).toString('hex'), v.plaintext);
      }
      lease.free();
      ran++;
    }
  }
  assert.ok(ran >= 90, `only ${ran} vectors ran`);
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
