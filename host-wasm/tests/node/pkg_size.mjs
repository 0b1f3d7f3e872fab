// Why this exists: what a browser downloads for the package (byok_wasm_bg.wasm, byok_wasm.js,
// lease_client.js), each gzipped at level 9 as a server would, summed. Shared by size.test.mjs
// (the 300 KB budget) and tests/browser/bench.mjs (which prints it).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export const PKG_FILES = ['byok_wasm_bg.wasm', 'byok_wasm.js', 'lease_client.js'];

/** `{ files: [{file, raw, gzip}], raw, gzip }` in bytes, for the package in `pkgDir`. */
export function packageSize(pkgDir) {
  const files = PKG_FILES.map((file) => {
    const bytes = readFileSync(join(pkgDir, file));
    return { file, raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  });
  return {
    files,
    raw: files.reduce((n, f) => n + f.raw, 0),
    gzip: files.reduce((n, f) => n + f.gzip, 0),
  };
}
