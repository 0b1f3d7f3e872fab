// Why this exists: the in-page half of bench.mjs. In one page and one run it times raw WebCrypto
// AES-256-GCM (key imported once), the package's WebCrypto path (sealWithWebCrypto /
// openWithWebCrypto: per-message key derivation in wasm, importKey, AES in WebCrypto) and its
// pure-wasm path (lease.encrypt / lease.decrypt), so that the ratios compare like with like.
// Time-based: each case warms up, then runs rounds of at least `seconds`, the three paths
// interleaved round by round; the median round is kept. It reports, never asserts.

const CTX = { tenant: 'acme', table: 'notes' };

function randomBytes(n) {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

function base64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

// Ops per second of `op` over at least `seconds` (awaiting it only when it is async).
async function rate(op, isAsync, seconds) {
  const t0 = performance.now();
  let n = 0;
  let t;
  do {
    if (isAsync) await op();
    else op();
    n++;
    t = performance.now();
  } while (t - t0 < seconds * 1000);
  return n / ((t - t0) / 1000);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function same(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * @param {{Lease, sealWithWebCrypto, openWithWebCrypto}} pkg
 * @param {{sizes?: number[], seconds?: number, rounds?: number, warmup?: number}} opts
 * @returns {Promise<{cells: {size, op, path, opsPerSec, samples}[]}>}
 */
export async function runBench({ Lease, sealWithWebCrypto, sealPartsWithWebCrypto, openWithWebCrypto },
  { sizes = [1024, 65536, 1 << 20], seconds = 1, rounds = 3, warmup = 0.3 } = {}) {
  const keyBytes = randomBytes(32);
  const lease = Lease.fromJson(JSON.stringify({
    scope: '0123456789abcdef0123456789abcdef',
    current_version: 1,
    keys: [{ version: 1, key: base64(keyBytes) }],
    expires_at: Date.now() + 3_600_000,
    ttl_ms: 3_600_000,
  }));
  const rawKey = await crypto.subtle.importKey('raw', randomBytes(32), { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
  const cells = [];
  try {
    for (const size of sizes) {
      const pt = randomBytes(size);
      const rawIv = randomBytes(12);
      const rawCt = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv: rawIv }, rawKey, pt));
      const webCt = await sealWithWebCrypto(lease, pt, CTX);
      const wasmCt = lease.encrypt(pt, CTX);
      // Time nothing that does not work: each path opens its own ciphertext to the plaintext.
      const checks = [
        ['raw', new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: rawIv }, rawKey, rawCt))],
        ['webcrypto', await openWithWebCrypto(lease, webCt, CTX)],
        ['wasm', lease.decrypt(wasmCt, CTX)],
      ];
      for (const [path, back] of checks) if (!same(back, pt)) throw new Error(`${path} did not round-trip ${size} B`);

      const cases = {
        encrypt: {
          // A fresh IV per message, as any real use must.
          raw: [() => crypto.subtle.encrypt({ name: 'AES-GCM', iv: crypto.getRandomValues(new Uint8Array(12)) }, rawKey, pt), true],
          webcrypto: [() => sealWithWebCrypto(lease, pt, CTX), true],
          // The same bytes as two parts (header, body): no copy to join them.
          'webcrypto-parts': [() => sealPartsWithWebCrypto(lease, pt, CTX), true],
          wasm: [() => lease.encrypt(pt, CTX), false],
        },
        decrypt: {
          raw: [() => crypto.subtle.decrypt({ name: 'AES-GCM', iv: rawIv }, rawKey, rawCt), true],
          webcrypto: [() => openWithWebCrypto(lease, webCt, CTX), true],
          wasm: [() => lease.decrypt(wasmCt, CTX), false],
        },
      };
      for (const [op, paths] of Object.entries(cases)) {
        const samples = Object.fromEntries(Object.keys(paths).map((p) => [p, []]));
        for (const [f, isAsync] of Object.values(paths)) await rate(f, isAsync, warmup);
        for (let r = 0; r < rounds; r++) {
          for (const [path, [f, isAsync]] of Object.entries(paths)) samples[path].push(await rate(f, isAsync, seconds));
        }
        for (const [path, xs] of Object.entries(samples)) {
          cells.push({ size, op, path, opsPerSec: median(xs), samples: xs });
        }
      }
    }
  } finally {
    lease.free();
  }
  return { cells, userAgent: navigator.userAgent, crossOriginIsolated: globalThis.crossOriginIsolated };
}
