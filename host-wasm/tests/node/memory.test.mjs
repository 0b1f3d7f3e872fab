// The module in little memory. wasm32 gives a module 4 GiB at most, a browser tab or an isolate
// often far less, and an allocation that fails aborts the module in the middle of a call: the
// lease it was made on stays borrowed, so that its `free()` can no longer wipe its keys, and
// every later call on it throws. Here the shipped module runs with its memory capped at 64 MiB
// (its memory section's maximum rewritten): what the caller hands in is measured before it is
// copied, every copy's allocation is fallible, and a call that does not fit is refused with
// `too_large` or `invalid_request`, the lease still working after it.
//
//   node --test host-wasm/tests/node/   (after scripts/build-wasm.sh; BYOK_WASM_PKG overrides)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = process.env.BYOK_WASM_PKG ?? join(here, '..', '..', 'pkg');
const { default: init, Lease } = await import(join(pkg, 'byok_wasm.js'));

const MIB = 1 << 20;
const CAP = 64 * MIB;

/** An unsigned LEB128. */
function leb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** Reads the unsigned LEB128 at `at`: [value, next offset]. */
function readLeb(bytes, at) {
  let n = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[at++];
    n += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(b & 0x80)) return [n, at];
  }
}

/** `wasm` with its one memory's maximum set to `max` bytes (its minimum kept). */
function capMemory(wasm, max) {
  const parts = [wasm.subarray(0, 8)];
  let at = 8;
  let capped = false;
  while (at < wasm.length) {
    const id = wasm[at];
    const [size, body] = readLeb(wasm, at + 1);
    const end = body + size;
    if (id === 5) {
      const [count, limits] = readLeb(wasm, body);
      assert.equal(count, 1, 'one memory');
      assert.equal(wasm[limits], 0, 'a memory without a maximum');
      const [min] = readLeb(wasm, limits + 1);
      const payload = [1, 1, ...leb(min), ...leb(max / 65536)];
      parts.push(Uint8Array.of(5, ...leb(payload.length), ...payload));
      capped = true;
    } else {
      parts.push(wasm.subarray(at, end));
    }
    at = end;
  }
  assert.ok(capped, 'the module defines its memory');
  return Buffer.concat(parts);
}

const exports = await init({
  module_or_path: capMemory(readFileSync(join(pkg, 'byok_wasm_bg.wasm')), CAP),
});

const lease = Lease.fromJson(JSON.stringify({
  scope: 'd05d3b7582186f01f52b381653c90d31',
  current_version: 1,
  keys: [{ version: 1, key: Buffer.alloc(32, 7).toString('base64') }],
  expires_at: Date.now() + 600_000,
  ttl_ms: 600_000,
}));

function refusal(f) {
  try {
    f();
  } catch (e) {
    assert.equal(e.name, 'ByokError', String(e));
    return e;
  }
  assert.fail('not refused');
}

/** The lease still seals and opens: no call was left half done on it. */
function stillWorks() {
  const small = new TextEncoder().encode('still here');
  assert.deepEqual(lease.decrypt(lease.encrypt(small, { t: '1' }), { t: '1' }), small);
}

test('the memory is capped as the test means', () => {
  assert.throws(() => exports.memory.grow(CAP / 65536), RangeError);
});

test('a ciphertext as text is copied in and opened in memory reserved fallibly', () => {
  // 20 MiB sealed, armored (27 MiB of text) and opened: each step's copies fit in 64 MiB, as
  // long as no copy is made twice. Before, the armor was built twice (74 MiB: an abort).
  // First in this file: the larger tests below leave the heap in pieces.
  const plaintext = new Uint8Array(20 * MIB).fill(0x33);
  const text = lease.encryptArmored(plaintext, { t: 'armored' });
  assert.ok(text.startsWith('byok:v1:'));
  const back = lease.decrypt(text, { t: 'armored' });
  assert.equal(back.length, plaintext.length);
  assert.ok(back.every((b) => b === 0x33));
  // Too large for this memory, under the one-call limit: refused, not an abort.
  assert.equal(refusal(() => lease.encryptArmored(new Uint8Array(30 * MIB), undefined)).code, 'too_large');
  const long = 'byok:v1:' + 'A'.repeat(60 * MIB);
  assert.equal(refusal(() => lease.decrypt(long, undefined)).code, 'too_large');
  // Text that is not ASCII is refused as core refuses it: by its prefix, else as not base64.
  for (const [odd, ascii] of [['byoké', 'byok!'], ['byok:vé', 'byok:v!'], ['byok:v1:AAé', 'byok:v1:AA!']]) {
    const e = refusal(() => lease.decrypt(odd, undefined));
    assert.equal(e.code, 'malformed_ciphertext');
    assert.equal(e.message, refusal(() => lease.decrypt(ascii, undefined)).message, odd);
  }
  stillWorks();
});

test('a plaintext that fits once is sealed with one copy in memory, and opens', () => {
  // 40 MiB: the copy sealed in place fits in 64 MiB; a second copy would not.
  const plaintext = new Uint8Array(40 * MIB).fill(0x5a);
  const ct = lease.encrypt(plaintext, { t: 'big' });
  assert.equal(ct.length, plaintext.length + 108);
  const back = lease.decrypt(ct, { t: 'big' });
  assert.equal(back.length, plaintext.length);
  assert.ok(back.every((b) => b === 0x5a));
  stillWorks();
});

test('a plaintext that does not fit is refused as too large, and the lease goes on', () => {
  const e = refusal(() => lease.encrypt(new Uint8Array(100 * MIB), undefined));
  assert.equal(e.code, 'too_large');
  assert.match(e.message, /stream/);
  stillWorks();
});

test('a ciphertext that does not fit is refused as too large, bytes or text', () => {
  assert.equal(refusal(() => lease.decrypt(new Uint8Array(100 * MIB), undefined)).code, 'too_large');
  // Text over the one-call limit is refused by its length, never copied in.
  const text = 'byok:v1:' + 'A'.repeat(350 * MIB);
  assert.equal(refusal(() => lease.decrypt(text, undefined)).code, 'too_large');
  stillWorks();
});

test('a huge context value or key is refused as core refuses a long one, unread', () => {
  const huge = 'v'.repeat(100 * MIB);
  const longValue = refusal(() => lease.encrypt(new Uint8Array(1), { t: huge }));
  assert.equal(longValue.code, 'invalid_request');
  assert.equal(longValue.message, 'context keys are at most 256 bytes and values 1024');
  const longKey = refusal(() => lease.encrypt(new Uint8Array(1), { [huge]: 'v' }));
  assert.equal(longKey.message, longValue.message);
  stillWorks();
});

test('a lease document too large to be one is refused by its length, unread', () => {
  const e = refusal(() => Lease.fromJson(' '.repeat(100 * MIB)));
  assert.equal(e.code, 'invalid_request');
  assert.match(e.message, /over the 1048576 a lease can be/);
  assert.equal(refusal(() => Lease.fromJson(42)).code, 'invalid_request');
  stillWorks();
});

test('a context of very many pairs is refused at the first one over the limit', () => {
  const many = Object.fromEntries(Array.from({ length: 2_000_000 }, (_, i) => [`k${i}`, 'v'.repeat(64)]));
  const e = refusal(() => lease.encrypt(new Uint8Array(1), many));
  assert.equal(e.code, 'invalid_request');
  assert.equal(e.message, 'context has more than 64 entries');
  stillWorks();
});

test('a stream opened from one large chunk holds back only its header', () => {
  // 22 MiB of ciphertext in one chunk: its copy and its plaintext fit; a second copy of it,
  // held back while the header was read, did not (an abort, the lease left borrowed).
  const sealer = lease.sealStream(undefined);
  const parts = [];
  for (let i = 0; i < 22; i++) parts.push(sealer.push(new Uint8Array(MIB).fill(i)));
  parts.push(sealer.finish());
  sealer.free();
  const ct = Buffer.concat(parts);
  assert.ok(ct.length > 22 * MIB);
  const opener = lease.openStream(undefined);
  const first = opener.push(ct);
  const last = opener.finish();
  opener.free();
  assert.equal(first.length + last.length, 22 * MIB);
  assert.equal(first[5 * MIB], 5);
  stillWorks();
});

test('a stream chunk that does not fit is refused as too large, and the lease goes on', () => {
  const sealer = lease.sealStream(undefined);
  // Its copy does not fit; then its copy fits, but not the frames sealed from it as well.
  assert.equal(refusal(() => sealer.push(new Uint8Array(100 * MIB))).code, 'too_large');
  assert.equal(refusal(() => sealer.push(new Uint8Array(40 * MIB))).code, 'too_large');
  // The refused chunks were not taken: the stream goes on with smaller ones.
  const first = sealer.push(new Uint8Array(1000).fill(1));
  const last = sealer.finish();
  const opener = lease.openStream(undefined);
  const back = [...opener.push(first), ...opener.push(last), ...opener.finish()];
  assert.deepEqual(Uint8Array.from(back), new Uint8Array(1000).fill(1));
  opener.free();
  sealer.free();
  stillWorks();
  lease.free();
});
