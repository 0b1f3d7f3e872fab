// The setup page as `byok serve` serves it, in headless Chromium: it must load its WebAssembly
// under the page's own CSP and fetch nothing from another origin. Run by
// tests/tests/setup_page.rs with the server's URL; prints one JSON line, asserts nothing.
//
//   node host-wasm/tests/browser/setup_page_live.mjs http://127.0.0.1:PORT
import { launchChromium } from './chromium.mjs';

const base = process.argv[2];
const origin = new URL(base).origin;
const browser = await launchChromium();
const requests = [];
const problems = [];
try {
  browser.page.on('request', (r) => requests.push(r.url()));
  browser.page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  browser.page.on('pageerror', (e) => problems.push(String(e)));
  const answer = await browser.page.goto(`${base}/ui/`);
  await browser.page.waitForFunction(() => document.documentElement.dataset.ready !== undefined,
    null, { timeout: 20_000 });
  const ready = await browser.page.evaluate(() => document.documentElement.dataset.ready);
  const status = await browser.page.textContent('#status');
  console.log(JSON.stringify({
    ready: ready === 'true',
    status,
    csp: answer.headers()['content-security-policy'] ?? null,
    foreign: requests.filter((u) => new URL(u).origin !== origin),
    requests,
    problems,
  }));
} finally {
  await browser.close();
}
