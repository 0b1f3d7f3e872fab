// Why this exists: the browser tests and the benchmark drive Debian's Chromium
// (/usr/bin/chromium) with playwright-core, never a downloaded browser, with the same flags and a
// fresh profile each time. One place for that, and for the error when Chromium is missing.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM = '/usr/bin/chromium';

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Launches headless Chromium with an empty profile: `{ page, version, close }`. Logs the page's console
 * errors and uncaught exceptions to stderr, so a broken page says why. */
export async function launchChromium() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run scripts/lib/chromium.sh's ensure_chromium ` +
      `(bash -c '. scripts/lib/chromium.sh && ensure_chromium')`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Error(`playwright-core is not installed: run npm ci --prefix host-wasm/tests/browser (${e.message})`);
  }
  const profile = mkdtempSync(join(tmpdir(), 'byok-chromium-'));
  let context;
  try {
    // Playwright takes the profile as userDataDir (it refuses --user-data-dir in args) and
    // passes it to Chromium as --user-data-dir.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  const page = context.pages()[0] ?? await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') process.stderr.write(`[page console ${m.type()}] ${m.text()}\n`); });
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
  // The full version (the user agent says only 156.0.0.0).
  let version = 'unknown';
  try {
    const cdp = await context.newCDPSession(page);
    version = (await cdp.send('Browser.getVersion')).product;
    await cdp.detach();
  } catch { /* not needed to run */ }
  return {
    page,
    version,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
