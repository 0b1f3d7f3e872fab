// Why this exists: the edge budget is measured in a browser, not in Node. This runs
// bench_page.mjs in headless Chromium (same page, same run: raw WebCrypto AES-256-GCM, the
// package's WebCrypto path, its pure-wasm path), prints a Markdown table with each package path
// as a share of raw WebCrypto, the package's gzipped size, and whether the budget holds:
// bulk (64 KiB, 1 MiB) encrypt and decrypt through the package at least 50 % of raw WebCrypto,
// and under 300 KB gzipped. A report, not a test: nothing here fails on a figure.
//
//   npm ci --prefix host-wasm/tests/browser
//   node host-wasm/tests/browser/bench.mjs [--json] [--seconds=1] [--rounds=3]
import { cpus, loadavg } from 'node:os';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { serveStatic } from './server.mjs';
import { launchChromium } from './chromium.mjs';
import { packageSize } from '../node/pkg_size.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const arg = (name, dflt) => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? dflt : Number(a.split('=')[1]);
};
const json = process.argv.includes('--json');
const opts = { seconds: arg('seconds', 1), rounds: arg('rounds', 3), warmup: arg('warmup', 0.3) };
const BULK = [65536, 1 << 20];
const SIZE_BUDGET = 300 * 1024;
const SHARE_BUDGET = 0.5;

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  loadavgBefore: loadavg().map((x) => Math.round(x * 100) / 100),
  node: process.version,
};

// Which build was measured: the wasm's SHA-256 prefix and when it was built.
const wasmFile = join(root, 'host-wasm', 'pkg', 'byok_wasm_bg.wasm');
machine.wasm = `sha256 ${createHash('sha256').update(readFileSync(wasmFile)).digest('hex').slice(0, 12)}, ` +
  `built ${statSync(wasmFile).mtime.toISOString().slice(0, 16).replace('T', ' ')} UTC`;

// Sized now, beside the fingerprint: the build the page is about to load.
const pkgSize = packageSize(join(root, 'host-wasm', 'pkg'));

const server = await serveStatic(root);
const browser = await launchChromium();
let run;
try {
  await browser.page.goto(`${server.url}host-wasm/tests/browser/index.html?bench`);
  run = await browser.page.evaluate(async (o) => (await window.byokBench)(o), opts, { timeout: 0 });
} finally {
  await browser.close();
  await server.close();
}
machine.loadavgAfter = loadavg().map((x) => Math.round(x * 100) / 100);
machine.chromium = browser.version;

const MiB = 1 << 20;
const cell = (size, op, path) => run.cells.find((c) => c.size === size && c.op === op && c.path === path);
const rows = [];
for (const size of [...new Set(run.cells.map((c) => c.size))]) {
  for (const op of ['encrypt', 'decrypt']) {
    const [raw, web, wasm] = ['raw', 'webcrypto', 'wasm'].map((p) => cell(size, op, p).opsPerSec);
    // Sealing also as two parts (header, body), which skips the copy that joins them.
    const parts = cell(size, op, 'webcrypto-parts')?.opsPerSec ?? null;
    rows.push({ size, op, raw, webcrypto: web, parts, wasm, webcryptoShare: web / raw, wasmShare: wasm / raw,
      partsShare: parts === null ? null : parts / raw,
      mibps: { raw: raw * size / MiB, webcrypto: web * size / MiB, wasm: wasm * size / MiB,
        parts: parts === null ? null : parts * size / MiB } });
  }
}
// The package's bulk path is its WebCrypto path: the lease client takes it from 16 KiB up
// (WEBCRYPTO_FROM); pure wasm is far slower there.
const bulk = rows.filter((r) => BULK.includes(r.size)).map((r) => ({ size: r.size, op: r.op, share: r.webcryptoShare }));
const partsBulk = rows.filter((r) => BULK.includes(r.size)).map((r) => r.partsShare ?? r.webcryptoShare);
const budget = {
  bulkShare: { min: SHARE_BUDGET, worst: Math.min(...bulk.map((b) => b.share)), holds: bulk.every((b) => b.share >= SHARE_BUDGET) },
  bulkShareParts: { min: SHARE_BUDGET, worst: Math.min(...partsBulk), holds: partsBulk.every((x) => x >= SHARE_BUDGET) },
  size: { max: SIZE_BUDGET, gzip: pkgSize.gzip, holds: pkgSize.gzip < SIZE_BUDGET },
};

if (json) {
  console.log(JSON.stringify({ machine, opts, rows, cells: run.cells, size: pkgSize, budget }, null, 2));
} else {
  const label = (n) => (n >= MiB ? `${n / MiB} MiB` : `${n / 1024} KiB`);
  const fig = (r, path) => (r[path] === null ? '-' : r.size <= 4096
    ? `${Math.round(r[path]).toLocaleString('en-US')} ops/s`
    : `${r.mibps[path].toFixed(0)} MiB/s`);
  const pct = (x) => (x === null ? '-' : `${Math.round(x * 100)} %`);
  console.log(`${machine.chromium} (headless), Node ${machine.node}, ${machine.cpu} (${machine.cores} cores), ` +
    `load ${machine.loadavgBefore.join(' ')} before, ${machine.loadavgAfter.join(' ')} after; ` +
    `median of ${opts.rounds} rounds of >= ${opts.seconds} s each; byok_wasm_bg.wasm ${machine.wasm}.\n`);
  console.log('| size | op | raw WebCrypto | package, WebCrypto path | same, as parts | package, pure wasm | WebCrypto path / raw | parts / raw | wasm / raw |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${label(r.size)} | ${r.op} | ${fig(r, 'raw')} | ${fig(r, 'webcrypto')} | ${fig(r, 'parts')} | ${fig(r, 'wasm')} | ` +
      `${pct(r.webcryptoShare)} | ${pct(r.partsShare)} | ${pct(r.wasmShare)} |`);
  }
  console.log(`\nPackage gzipped (level 9): ${pkgSize.files.map((f) => `${f.file} ${f.gzip} B`).join(' + ')} = ` +
    `${pkgSize.gzip} B (${(pkgSize.gzip / 1024).toFixed(1)} KiB).`);
  console.log(`Budget, bulk (64 KiB, 1 MiB) >= 50 % of raw WebCrypto: ${budget.bulkShare.holds ? 'holds' : 'DOES NOT HOLD'} ` +
    `(worst ${pct(budget.bulkShare.worst)}, the WebCrypto path the lease client uses from 16 KiB).`);
  console.log(`Same budget with sealing as parts (no join copy): ${budget.bulkShareParts.holds ? 'holds' : 'DOES NOT HOLD'} ` +
    `(worst ${pct(budget.bulkShareParts.worst)}).`);
  console.log(`Budget, gzipped < 300 KB: ${budget.size.holds ? 'holds' : 'DOES NOT HOLD'} (${pkgSize.gzip} of ${SIZE_BUDGET} B).`);
}
