// What the setup page's browser tests share: sign in the way an admin does, check a screen
// with axe-core (no serious or critical violation), save a screenshot as a test artifact, move
// by keyboard only, and watch for requests to other origins and console errors.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { launchChromium } from './chromium.mjs';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** A Chromium page on the setup page at `base` (the server's URL), recording what it fetches
 * and what it logs. `artifacts` is where screenshots go. */
export async function openPage(base, artifacts, { width = 1280, height = 900 } = {}) {
  const browser = await launchChromium();
  const page = browser.page;
  await page.setViewportSize({ width, height });
  const origin = new URL(base).origin;
  const seen = { requests: [], foreign: [], problems: [], axe: {}, shots: [] };
  // URLs a test answered itself with a refusal (`refuseOnce`): their failed loads are no problem.
  const staged = new Set();
  // Every request is intercepted: one to another origin is recorded and never leaves.
  await page.route(() => true, (route) => {
    const url = route.request().url();
    seen.requests.push(url);
    if (new URL(url).origin !== origin) {
      seen.foreign.push(url);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  // A refusal the page shows (a 4xx it asked for, or 501 from a server without AWS configured)
  // is logged by Chromium as a failed load: not a problem, nor one the test staged. Anything
  // else logged as an error is.
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const failed = /^Failed to load resource: the server responded with a status of (\d+) /.exec(m.text());
    if (failed && (/^(4\d\d|501)$/.test(failed[1]) || staged.has(m.location().url))) return;
    seen.problems.push(m.text());
  });
  page.on('pageerror', (e) => seen.problems.push(String(e)));
  mkdirSync(artifacts, { recursive: true });
  let shot = 0;
  return {
    page,
    seen,
    version: browser.version,
    close: () => browser.close(),
    /** Loads the page and waits until its wasm is ready; returns the navigation's answer. */
    async load() {
      const answer = await page.goto(`${base}/ui/`);
      await page.waitForFunction(() => document.documentElement.dataset.ready !== undefined, null, { timeout: 20_000 });
      assert.equal(await page.evaluate(() => document.documentElement.dataset.ready), 'true', 'the wasm package loads');
      return answer;
    },
    /** Signs in with `token` (typed, then Enter) and waits for the overview. */
    async signIn(token) {
      await page.fill('#token', token);
      await page.press('#token', 'Enter');
      await section('overview');
    },
    /** Waits until section `name` has rendered. */
    section,
    /** Answers the next `method` request to `pattern` with refusal `code` (HTTP `status`) as
     * byok words one, instead of sending it: for refusals a test cannot cause for real (the
     * database away, a quota of a hundred reached). Later requests go on to the server. */
    async refuseOnce(pattern, method, status, code, message) {
      let done = false;
      await page.route(pattern, (route) => {
        if (done || route.request().method() !== method) return route.fallback();
        done = true;
        staged.add(route.request().url());
        return route.fulfill({ status, contentType: 'application/json',
          body: JSON.stringify({ error: { code, message, request_id: 'test' } }) });
      });
    },
    /** Runs axe-core on the page as it is; records and returns the serious or critical
     * violations (`[]` when clean). */
    async axe(screen) {
      await page.evaluate(AXE);
      const result = await page.evaluate(async () => {
        // eslint-disable-next-line no-undef
        const r = await axe.run(document, { resultTypes: ['violations'] });
        return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
          nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
      });
      const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      seen.axe[screen] = bad;
      return bad;
    },
    /** Saves a full-page screenshot `NN-name.png` in the artifacts directory. */
    async shot(name) {
      shot += 1;
      const file = join(artifacts, `${String(shot).padStart(2, '0')}-${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      seen.shots.push(file);
    },
    /** Presses Tab until `selector` has focus (at most `max` times): proves it is reachable by
     * keyboard. Returns how many presses it took. */
    async tabTo(selector, max = 80) {
      for (let i = 1; i <= max; i += 1) {
        await page.keyboard.press('Tab');
        if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return i;
      }
      throw new Error(`${selector} is not reachable with Tab in ${max} presses`);
    },
  };

  async function section(name) {
    await page.waitForFunction((n) => document.documentElement.dataset.section === n
      && !document.querySelector('main section[aria-busy]'), name, { timeout: 15_000 });
  }
}

/** What does not fit the viewport's width: the page itself, or a table that would need
 * scrolling sideways (code blocks may scroll: a policy is wide JSON). `[]` when everything fits. */
export async function overflow(page) {
  return page.evaluate(() => {
    const wide = [];
    const root = document.documentElement;
    if (root.scrollWidth > window.innerWidth) wide.push(`page ${root.scrollWidth}px`);
    for (const el of document.querySelectorAll('.table-wrap, main section, nav, header')) {
      if (el.scrollWidth > el.clientWidth + 1) wide.push(`${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}.${el.className} ${el.scrollWidth}px`);
    }
    return wide;
  });
}

/** The text of `selector`, whitespace collapsed. */
export async function text(page, selector) {
  return (await page.textContent(selector))?.replace(/\s+/g, ' ').trim() ?? null;
}

/** Holds `page`'s requests to `pattern` on their way until `release()`, and counts them:
 * `sent()` waits for the first; `count()` says how many came; `done()` stops holding. What a
 * test needs to press a button again while its call is in flight, deterministically. */
export async function holdRequests(page, pattern) {
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  let n = 0;
  await page.route(pattern, async (route) => {
    n += 1;
    await held;
    await route.continue();
  });
  return {
    count: () => n,
    async sent() {
      while (n < 1) await new Promise((resolve) => setTimeout(resolve, 10));
    },
    release,
    done: () => page.unroute(pattern),
  };
}
