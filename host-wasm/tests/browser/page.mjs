// Why this exists: the module script of index.html. It loads the package as a browser does
// (ES modules, `init()` fetching the wasm beside byok_wasm.js), then either runs the vectors of
// vectors/ through both AES paths (tests/shared/vectors.mjs) and sets `window.byokResult`, or,
// with `?bench`, sets `window.byokBench` for bench.mjs. Nothing here is timed or asserted: the
// Node side reads the result and asserts.
import init, { Lease } from '../../pkg/byok_wasm.js';
import { sealWithWebCrypto, sealPartsWithWebCrypto, openWithWebCrypto } from '../../pkg/lease_client.js';
import { runVectors, VECTOR_FILES, leaseFor } from '../shared/vectors.mjs';

const pkg = { Lease, sealWithWebCrypto, sealPartsWithWebCrypto, openWithWebCrypto };

async function fetchJson(path) {
  const r = await fetch(new URL(path, import.meta.url));
  if (!r.ok) throw new Error(`GET ${path}: ${r.status}`);
  return r.json();
}

// One ciphertext sealed with the lease, one bit flipped: both paths must refuse it with
// `decrypt_failed`, the server's code.
async function tampered(v) {
  const lease = leaseFor(Lease, v);
  const ctx = { tenant: 'acme' };
  const code = async (f) => {
    try {
      await f();
      return 'ok';
    } catch (e) {
      return e?.name === 'ByokError' ? e.code : `threw ${e?.name}: ${e?.message}`;
    }
  };
  try {
    const ct = lease.encrypt(new TextEncoder().encode('a browser tampered with this'), ctx);
    ct[ct.length - 1] ^= 1;
    return {
      wasm: await code(() => lease.decrypt(ct, ctx)),
      webcrypto: await code(() => openWithWebCrypto(lease, ct, ctx)),
    };
  } finally {
    lease.free();
  }
}

async function vectors() {
  const env = {
    subtle: typeof globalThis.crypto?.subtle?.encrypt === 'function',
    secureContext: globalThis.isSecureContext,
    userAgent: navigator.userAgent,
  };
  await init();
  const files = Object.fromEntries(await Promise.all(
    VECTOR_FILES.map(async (f) => [f, await fetchJson(`../../../vectors/${f}.json`)])));
  return { env, vectors: await runVectors(files, pkg), tampered: await tampered(files.single.vectors[0]) };
}

async function bench() {
  await init();
  const { runBench } = await import('./bench_page.mjs');
  return (opts) => runBench(pkg, opts);
}

const out = document.getElementById('out');
if (new URLSearchParams(location.search).has('bench')) {
  window.byokBench = bench().catch((e) => { out.textContent = `error: ${e?.stack ?? e}`; throw e; });
  out.textContent = 'benchmark ready';
} else {
  window.byokResult = vectors().then(
    (r) => { out.textContent = JSON.stringify(r, null, 2); return { ok: true, ...r }; },
    (e) => { out.textContent = `error: ${e?.stack ?? e}`; return { ok: false, error: String(e?.stack ?? e) }; });
}
