// The setup page's budgets (BENCHMARKS.md), in headless Chromium against a running `byok serve`:
//   - weight: every file the page loads across all its sections, gzipped (-9) one by one;
//   - navigation to interactive (the `byok-interactive` mark: wasm compiled, sign-in enabled),
//     with the browser cache disabled, over BYOK_BENCH_LOADS loads;
//   - identifier parse to render while typing: for each prefix of a few identifiers, from the
//     input event to the parsed view laid out (parse in wasm, DOM, layout), and the wasm parse
//     alone.
//
//   node host-wasm/tests/browser/bench_setup_page.mjs http://127.0.0.1:PORT ADMIN_TOKEN
// (scripts/bench-setup-page.sh starts a server and runs it.)
import { gzipSync } from 'node:zlib';
import { launchChromium } from './chromium.mjs';

const [base, admin] = process.argv.slice(2);
const LOADS = Number(process.env.BYOK_BENCH_LOADS ?? 30);
const browser = await launchChromium();
const { page } = browser;
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const r2 = (x) => Math.round(x * 100) / 100;
try {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });

  // Weight: one tour of every section, each file counted once.
  const files = new Map();
  page.on('response', async (r) => {
    const u = new URL(r.url());
    if (!u.pathname.startsWith('/ui/') || r.status() !== 200) return;
    try { files.set(u.pathname, await r.body()); } catch { /* redirects have no body */ }
  });
  await page.goto(`${base}/ui/`);
  await page.waitForFunction(() => document.documentElement.dataset.ready === 'true');
  await page.fill('#token', admin);
  await page.press('#token', 'Enter');
  for (const s of ['overview', 'keys', 'add-key', 'scopes', 'tokens', 'audit']) {
    await page.evaluate((n) => { location.hash = `#${n}`; }, s);
    await page.waitForFunction((n) => document.documentElement.dataset.section === n, s);
  }
  const weight = [...files].map(([path, body]) => ({ path, bytes: body.length, gzip: gzipSync(body, { level: 9 }).length }))
    .sort((a, b) => b.gzip - a.gzip);
  const total = weight.reduce((a, f) => ({ bytes: a.bytes + f.bytes, gzip: a.gzip + f.gzip }), { bytes: 0, gzip: 0 });

  // Navigation to interactive, cache disabled.
  const tti = [];
  for (let i = 0; i < LOADS; i += 1) {
    await page.goto(`${base}/ui/?${i}`);
    await page.waitForFunction(() => document.documentElement.dataset.ready === 'true');
    tti.push(await page.evaluate(() => performance.getEntriesByName('byok-interactive')[0].startTime));
  }

  // Typing: sign in, open "Add a key", then every prefix of each identifier as a keystroke.
  await page.fill('#token', admin);
  await page.press('#token', 'Enter');
  await page.evaluate(() => { location.hash = '#add-key'; });
  await page.waitForFunction(() => document.documentElement.dataset.section === 'add-key');
  const typing = await page.evaluate(async () => {
    const ids = [
      'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
      'arn:aws:kms:us-gov-west-1:111122223333:alias/customer-root',
      'arn:aws:kms:eu-west-1:12345:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    ];
    const field = document.getElementById('key-arn');
    const parsed = document.getElementById('key-arn-parsed');
    const render = [];
    for (let round = 0; round < 5; round += 1) {
      for (const id of ids) {
        for (let n = 1; n <= id.length; n += 1) {
          field.value = id.slice(0, n);
          const t0 = performance.now();
          field.dispatchEvent(new Event('input'));
          void parsed.offsetHeight; // layout
          render.push(performance.now() - t0);
        }
      }
      // Let the grant's first fetch settle outside the timed part.
      await new Promise((r) => setTimeout(r, 50));
    }
    const { parseKeyArn } = await import('./pkg/byok_wasm.js');
    const t0 = performance.now();
    const N = 20000;
    for (let i = 0; i < N; i += 1) parseKeyArn(ids[0]);
    return { render, parseUs: ((performance.now() - t0) / N) * 1000, keystrokes: render.length };
  });
  console.log(JSON.stringify({
    chromium: browser.version,
    weight: { total, files: weight },
    interactive_ms: { loads: LOADS, min: r2(Math.min(...tti)), p50: r2(pct(tti, 0.5)), p95: r2(pct(tti, 0.95)), max: r2(Math.max(...tti)) },
    typing_ms: { keystrokes: typing.keystrokes, p50: r2(pct(typing.render, 0.5)), p95: r2(pct(typing.render, 0.95)),
      p99: r2(pct(typing.render, 0.99)), max: r2(Math.max(...typing.render)) },
    wasm_parse_us: r2(typing.parseUs),
  }, null, 2));
} finally {
  await browser.close();
}
