// The JSON vectors in workerd, Cloudflare's Workers runtime: the shared runner
// (tests/shared/vectors.mjs, the one Node and Chromium run) through both AES paths, the package
// loaded as a Worker loads it. `GET /` answers the runner's result as JSON; the test
// (tests/tests/edge_workerd.rs) asserts on it. Nothing here asserts.
import { initSync, Lease } from './pkg/byok_wasm.js';
import { sealWithWebCrypto, sealPartsWithWebCrypto, openWithWebCrypto } from './pkg/lease_client.js';
import wasm from './pkg/byok_wasm_bg.wasm';
import { runVectors } from './shared/vectors.mjs';
import single from './vectors/single.json';
import negative from './vectors/negative.json';
import armor from './vectors/armor.json';

initSync({ module: wasm });

export default {
  async fetch() {
    try {
      const result = await runVectors({ single, negative, armor },
        { Lease, sealWithWebCrypto, sealPartsWithWebCrypto, openWithWebCrypto });
      return Response.json({ ok: true, subtle: typeof crypto?.subtle?.encrypt === 'function', ...result });
    } catch (e) {
      return Response.json({ ok: false, error: String(e?.stack ?? e) }, { status: 500 });
    }
  },
};
