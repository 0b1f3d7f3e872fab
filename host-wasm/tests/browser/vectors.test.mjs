// Why this exists: the JS package must work in a real browser, not only in Node. This loads
// host-wasm/pkg in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) from
// a static server on 127.0.0.1, and checks there what tests/node/vectors.test.mjs checks in
// Node: every decrypt vector through `Lease.decrypt` and through WebCrypto's AES-GCM, each
// refusal with its code, and seals across the two paths (tests/shared/vectors.mjs).
//
//   npm ci --prefix host-wasm/tests/browser
//   node --test host-wasm/tests/browser/        (after scripts/build-wasm.sh)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { request } from 'node:http';
import { serveStatic } from './server.mjs';
import { launchChromium } from './chromium.mjs';
import { formatFailures } from '../shared/vectors.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
let server;
let browser;
let result;

before(async () => {
  server = await serveStatic(root);
  browser = await launchChromium();
  const url = `${server.url}host-wasm/tests/browser/index.html`;
  await browser.page.goto(url);
  // A wait, not a timed assertion: the vectors take well under a second.
  result = await browser.page.evaluate(() => window.byokResult, undefined, { timeout: 120_000 });
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test('the page loaded the package, with WebCrypto there', () => {
  assert.ok(result.ok, `the page failed: ${result.error}`);
  assert.equal(result.env.subtle, true, `no crypto.subtle in the page (${result.env.userAgent})`);
  assert.equal(result.env.secureContext, true, 'the page is not a secure context');
  assert.match(result.env.userAgent, /HeadlessChrome\//);
});

test('every decrypt vector opens or is refused with its code, in wasm and via WebCrypto, in Chromium', () => {
  const { ran, sealed, calls, failures } = result.vectors;
  assert.equal(failures.length, 0, `${failures.length} vector check(s) failed in Chromium:\n${formatFailures(failures)}`);
  assert.ok(ran >= 90, `only ${ran} vectors ran`);
  assert.ok(sealed >= 20, `only ${sealed} vectors sealed across the paths`);
  // Both paths took every vector; WebCrypto's AES really ran (3 calls per vector sealed across).
  assert.ok(calls.wasm >= ran, `the wasm path took ${calls.wasm} operations for ${ran} vectors`);
  assert.ok(calls.webcrypto >= ran, `the WebCrypto path took ${calls.webcrypto} operations for ${ran} vectors`);
  assert.ok(calls.subtleAes >= 3 * sealed, `only ${calls.subtleAes} AES calls reached crypto.subtle`);
});

test('a tampered ciphertext is refused with decrypt_failed on both paths, in Chromium', () => {
  assert.deepEqual(result.tampered, { wasm: 'decrypt_failed', webcrypto: 'decrypt_failed' });
});

// The raw request line, as a hostile client would send it (fetch would normalise the path).
function rawGet(base, path, method = 'GET') {
  return new Promise((ok, fail) => {
    const { hostname, port } = new URL(base);
    request({ hostname, port, path, method }, (res) => {
      res.resume();
      res.on('end', () => ok({ status: res.statusCode, type: res.headers['content-type'] }));
    }).on('error', fail).end();
  });
}

test('the static server serves wasm as application/wasm, nothing outside the repo, only GET', async () => {
  const wasm = await rawGet(server.url, '/host-wasm/pkg/byok_wasm_bg.wasm');
  assert.deepEqual(wasm, { status: 200, type: 'application/wasm' });
  for (const path of ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/..%2f..%2fetc%2fpasswd',
    '/host-wasm/..%5c..%5cetc/passwd', '/.git/config', '/vectors/%00']) {
    assert.equal((await rawGet(server.url, path)).status, 403, path);
  }
  assert.equal((await rawGet(server.url, '/README.md', 'POST')).status, 405);
  assert.equal((await rawGet(server.url, '/README.md', 'PUT')).status, 405);
});
