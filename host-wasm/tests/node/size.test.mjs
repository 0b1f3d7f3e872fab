// Why this exists: the edge budget says the package a browser downloads (wasm + byok_wasm.js +
// lease_client.js, gzipped level 9) stays under 300 KB. A size, not a timing: it cannot flake.
//
//   node --test host-wasm/tests/node/   (after scripts/build-wasm.sh; BYOK_WASM_PKG overrides)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { packageSize } from './pkg_size.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = process.env.BYOK_WASM_PKG ?? join(here, '..', '..', 'pkg');
const BUDGET = 300 * 1024;

test('the package is under 300 KB gzipped (wasm + byok_wasm.js + lease_client.js)', () => {
  const size = packageSize(pkg);
  const detail = size.files.map((f) => `${f.file} ${f.gzip} B`).join(', ');
  assert.ok(size.gzip < BUDGET, `${size.gzip} B gzipped (${detail}) is over the budget of ${BUDGET} B`);
  // A wasm file that is there but empty or truncated would pass the budget: it must not.
  assert.ok(size.files[0].raw > 10_000, `${size.files[0].file} is only ${size.files[0].raw} B: not a build`);
});
