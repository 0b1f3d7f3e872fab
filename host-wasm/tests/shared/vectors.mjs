// Why this exists: the decrypt vectors of vectors/ must run the same way in Node
// (tests/node/vectors.test.mjs) and in a real browser (tests/browser/), so the logic lives here,
// with no Node APIs (no Buffer, no node:crypto): TextEncoder, hex helpers, crypto.subtle.
//
// Each vector goes through `Lease.decrypt` (AES in wasm) and `openWithWebCrypto` (AES-GCM in
// WebCrypto): same bytes, or the same refusal with its error code. Every vector that opens is
// then sealed again through `lease.encrypt` and `sealWithWebCrypto`, and each ciphertext must
// open through the other path. Nothing throws on a mismatch: it is listed in `failures`.

/** The vector files this runs (vectors/<name>.json); datakey and framed are not edge operations. */
export const VECTOR_FILES = ['single', 'negative', 'armor'];

const CODES = {
  format: 'malformed_ciphertext',
  unsupported: 'unsupported_ciphertext',
  decrypt: 'decrypt_failed',
  wrong_key: 'decrypt_failed',
  misuse: 'invalid_request',
};

const utf8 = new TextEncoder();

export function fromHex(h) {
  if (h.length % 2 !== 0 || /[^0-9a-f]/i.test(h)) throw new Error(`not hex: ${h.slice(0, 40)}`);
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(2 * i, 2), 16);
  return out;
}

export function toHex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

function base64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export async function sha256Hex(bytes) {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A short description of bytes for a failure report: length and SHA-256 prefix. */
async function describe(bytes) {
  return `${bytes.length} B, sha256 ${(await sha256Hex(bytes)).slice(0, 16)}`;
}

/** The lease document the server would answer for a vector's key. */
export function leaseFor(Lease, v, expiresAt = Date.now() + 60_000) {
  return Lease.fromJson(JSON.stringify({
    scope: v.scope_id,
    current_version: v.key_version,
    keys: [{ version: v.key_version, key: base64(fromHex(v.key)) }],
    expires_at: expiresAt,
    ttl_ms: Math.max(0, expiresAt - Date.now()),
  }));
}

// The caller-context rules the server applies (and so the package): at most 64 pairs, keys
// up to 256 and values up to 1024 UTF-8 bytes, no `byok:` keys. The format takes more; a caller
// does not.
function callerAllows(ctx) {
  const pairs = Object.entries(ctx);
  return pairs.length <= 64 && pairs.every(([k, v]) =>
    !k.startsWith('byok:') && utf8.encode(k).length <= 256 && utf8.encode(v).length <= 1024);
}

// 'ok' with the value, or the thrown ByokError's code; anything else thrown is reported as such.
async function outcome(f) {
  try {
    return { code: 'ok', value: await f() };
  } catch (e) {
    return { code: e?.name === 'ByokError' ? e.code : `threw ${e?.name}: ${e?.message}` };
  }
}

/**
 * Runs the decrypt vectors through both AES paths, then seals across them.
 *
 * @param {Record<string, {vectors: object[]}>} files parsed vector files, by name (VECTOR_FILES)
 * @param {{Lease, sealWithWebCrypto, openWithWebCrypto}} pkg the package's exports
 * @returns {Promise<{ran: number, sealed: number,
 *   calls: {wasm: number, webcrypto: number, subtleAes: number},
 *   failures: {file: string, name: string, path: string, want: string, got: string}[]}>}
 *   `ran`: decrypt vectors run; `sealed`: of them, re-sealed through both paths; `calls`: how
 *   many operations each path was given, and how many AES calls reached `crypto.subtle`.
 */
export async function runVectors(files, pkg) {
  // AES calls that really reached WebCrypto, counted while the vectors run: a WebCrypto path
  // that quietly fell back to wasm would show here.
  const subtle = crypto.subtle;
  const counted = ['encrypt', 'decrypt'].filter((op) => !Object.hasOwn(subtle, op));
  let subtleAes = 0;
  for (const op of counted) {
    const real = subtle[op];
    subtle[op] = function (...args) {
      subtleAes++;
      return real.apply(this, args);
    };
  }
  try {
    const result = await run(files, pkg);
    result.calls.subtleAes = subtleAes;
    return result;
  } finally {
    for (const op of counted) delete subtle[op];
  }
}

async function run(files, { Lease, sealWithWebCrypto, openWithWebCrypto }) {
  const failures = [];
  const calls = { wasm: 0, webcrypto: 0 };
  let ran = 0;
  let sealed = 0;
  const fail = (file, name, path, want, got) => failures.push({ file, name, path, want, got });

  for (const file of VECTOR_FILES) {
    if (!files[file]) throw new Error(`vector file ${file}.json not given`);
    for (const v of files[file].vectors) {
      if (v.operation !== 'decrypt') continue;
      // Duplicate context keys cannot be said with an object (the API's type): nothing to run.
      const keys = (v.context_pairs ?? []).map(([k]) => k);
      if (new Set(keys).size !== keys.length) continue;
      // Some vectors give their context as pairs, unsorted: an object keeps that order, and
      // the package must sort as the format says (UTF-8 bytes).
      const ctx = v.context ?? Object.fromEntries(v.context_pairs ?? []);
      const input = v.armor ?? fromHex(v.ciphertext);
      const want = !callerAllows(ctx) ? 'invalid_request' : v.expect === 'ok' ? 'ok' : CODES[v.expect];
      const lease = leaseFor(Lease, v);
      try {
        calls.wasm++;
        const wasm = await outcome(() => lease.decrypt(input, ctx));
        calls.webcrypto++;
        const web = await outcome(() => openWithWebCrypto(lease, input, ctx));
        if (wasm.code !== want) fail(file, v.name, 'wasm', want, wasm.code);
        if (web.code !== want) fail(file, v.name, 'webcrypto', want, web.code);
        if (wasm.code === 'ok') {
          // Long plaintexts are given by their SHA-256 and length only.
          const sha = await sha256Hex(wasm.value);
          if (sha !== v.plaintext_sha256) fail(file, v.name, 'wasm', `sha256 ${v.plaintext_sha256}`, `sha256 ${sha}`);
          if (v.plaintext !== undefined && toHex(wasm.value) !== v.plaintext) {
            fail(file, v.name, 'wasm', `plaintext ${v.plaintext.slice(0, 64)}`, `plaintext ${toHex(wasm.value).slice(0, 64)}`);
          }
        }
        if (wasm.code === 'ok' && web.code === 'ok' && !sameBytes(web.value, wasm.value)) {
          fail(file, v.name, 'webcrypto', `same bytes as wasm (${await describe(wasm.value)})`, await describe(web.value));
        }
        if (wasm.code === 'ok' && want === 'ok') {
          await sealAcross(lease, wasm.value, ctx, (path, w, g) => fail(file, v.name, path, w, g));
          sealed++;
        }
      } finally {
        lease.free();
      }
      ran++;
    }
  }

  // Seals `pt` on each path and opens it on the other: the plaintext back, and ciphertexts of
  // the same length (the same format; the nonces differ).
  async function sealAcross(lease, pt, ctx, report) {
    calls.wasm++;
    const inWasm = await outcome(() => lease.encrypt(pt, ctx));
    calls.webcrypto++;
    const inWeb = await outcome(() => sealWithWebCrypto(lease, pt, ctx));
    if (inWasm.code !== 'ok') return report('seal:wasm', 'ok', inWasm.code);
    if (inWeb.code !== 'ok') return report('seal:webcrypto', 'ok', inWeb.code);
    if (inWeb.value.length !== inWasm.value.length) {
      report('seal:webcrypto', `${inWasm.value.length} B as in wasm`, `${inWeb.value.length} B`);
    }
    calls.webcrypto++;
    const a = await outcome(() => openWithWebCrypto(lease, inWasm.value, ctx));
    calls.wasm++;
    const b = await outcome(() => lease.decrypt(inWeb.value, ctx));
    for (const [path, r] of [['seal:wasm open:webcrypto', a], ['seal:webcrypto open:wasm', b]]) {
      if (r.code !== 'ok') report(path, 'ok', r.code);
      else if (!sameBytes(r.value, pt)) report(path, await describe(pt), await describe(r.value));
    }
  }

  return { ran, sealed, calls, failures };
}

/** The failures, one a line, for an assertion message. */
export function formatFailures(failures, max = 20) {
  const lines = failures.slice(0, max).map((f) => `  ${f.file}/${f.name} [${f.path}]: want ${f.want}, got ${f.got}`);
  if (failures.length > max) lines.push(`  ... and ${failures.length - max} more`);
  return lines.join('\n');
}
