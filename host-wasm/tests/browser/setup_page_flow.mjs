// The setup page driven in headless Chromium against a real `byok serve`, one stage per run:
//
//   node setup_page_flow.mjs STAGE '{"url": ..., "admin": ..., ...}' ARTIFACT_DIR
//
// Each stage acts as an admin would and checks what the page shows (node:assert); it prints
// one JSON line with what it saw (values the Rust test checks against the server, the axe
// results, requests to other origins, console errors). tests/tests/setup_page.rs runs the
// stages and sets up what each needs (moto's grant removed, a second key, a paused scope).
import assert from 'node:assert/strict';
import { holdRequests, openPage, overflow, text } from './setup_page_kit.mjs';

const [stage, argJson, artifacts] = process.argv.slice(2);
const arg = JSON.parse(argJson);
const STAGES = { tour, fixes, gcp, azure, keyboard, job, tree, tokenCreate, tokenRevoke, revokedElsewhere, claim };

const run = STAGES[stage];
if (!run) throw new Error(`unknown stage ${stage}; one of ${Object.keys(STAGES).join(', ')}`);
const ui = await openPage(arg.url, artifacts, arg.viewport);
let out;
try {
  out = await run(ui, arg);
} finally {
  await ui.close();
}
console.log(JSON.stringify({ ...out, foreign: ui.seen.foreign, problems: ui.seen.problems, axe: ui.seen.axe, shots: ui.seen.shots.length }));

/** Every screen once: signed out, then each section; axe and a screenshot on each. Returns
 * the overview's text and what the browser stored. */
async function tour(ui, { admin }) {
  const { page } = ui;
  await ui.load();
  await ui.axe('sign-in');
  await ui.shot('sign-in');
  await ui.signIn(admin);
  const main = await text(page, '#main');
  const stored = await traces(page);
  const wide = {};
  for (const s of ['overview', 'keys', 'add-key', 'scopes', 'tokens', 'audit']) {
    await page.click(`nav a[href="#${s}"]`);
    await ui.section(s);
    if (s === 'add-key') {
      // The grant, or why it cannot be made (a server without AWS configured says so).
      await page.fill('#key-arn', 'arn:aws:kms:eu-west-1:111122223333:alias/customer-root-key');
      await page.waitForSelector('#key-policy, #grant .error');
    }
    await ui.axe(s);
    await ui.shot(s);
    const w = await overflow(page);
    if (w.length) wide[s] = w;
  }
  return { main, stored, wide };
}

/** What loading the page costs the layout, and what it leaves behind: the cumulative layout
 * shift from navigation to sign-in, and every storage the browser offers after it. */
async function traces(page) {
  return page.evaluate(async () => ({
    cls: (await new Promise((done) => {
      new PerformanceObserver((list) => done(list.getEntries())).observe({ type: 'layout-shift', buffered: true });
      setTimeout(() => done([]), 200);
    })).filter((e) => !e.hadRecentInput).reduce((a, e) => a + e.value, 0),
    local: localStorage.length,
    session: sessionStorage.length,
    cookies: document.cookie,
    databases: (await indexedDB.databases()).length,
  }));
}

/** A malformed ARN, then a key whose grant is missing (moto's policy for byok removed): each
 * shows its fix beside what it concerns. Nothing is attached. */
async function fixes(ui, { admin, key_arn, org }) {
  const { page } = ui;
  const answer = await ui.load();
  await ui.signIn(admin);
  const stored = await traces(page);
  await page.click('nav a[href="#add-key"]');
  await ui.section('add-key');
  // A malformed ARN: an account of five digits. The field says which part and why, as typed.
  const bad = 'arn:aws:kms:eu-west-1:12345:key/1234abcd-12ab-34cd-56ef-1234567890ab';
  await page.fill('#key-arn', bad);
  const malformed = await text(page, '#key-arn-error');
  assert.equal(await page.getAttribute('#key-arn', 'aria-invalid'), 'true');
  assert.match(malformed, /\(invalid_request\)$/);
  assert.equal(await page.isDisabled('#validate'), true, 'nothing to validate');
  const part = await text(page, '#key-arn-parsed');
  await ui.axe('add-key-malformed');
  await ui.shot('add-key-malformed');
  // The key, typed character by character: parsed and granted as it is typed.
  await page.fill('#key-arn', '');
  await page.type('#key-arn', key_arn, { delay: 0 });
  await page.waitForSelector('#key-policy');
  assert.equal(await page.isHidden('#key-arn-error'), true);
  const parsed = {
    region: await text(page, '#key-arn-parsed [data-field="region"]'),
    account: await text(page, '#key-arn-parsed [data-field="account"]'),
    name: await text(page, '#key-arn-parsed [data-field="name"]'),
  };
  const policy = JSON.parse(await page.textContent('#key-policy'));
  const cli = await page.textContent('#key-cli');
  // Validate, with the identifier changed while the call is on its way: its answer is of the
  // key typed before, and shows nowhere (it showed under the new key).
  const hold = await holdRequests(page, '**/keys/validate');
  await page.click('#validate');
  await hold.sent();
  await page.fill('#key-arn', key_arn.replace(/:key\/.*$/, ':alias/another'));
  const answered = page.waitForResponse('**/keys/validate');
  hold.release();
  await answered;
  await page.waitForSelector('#validate:not([aria-busy])');
  const stale = await text(page, '#report');
  await hold.done();
  await page.fill('#key-arn', key_arn);
  await page.waitForSelector('#key-policy');
  // Validate: the grant is missing, so a live step fails and names its fix.
  await page.click('#validate');
  await page.waitForSelector('#report-summary');
  const failed = await page.$$eval('#report .step-fail', (els) => els.map((e) => ({
    step: e.dataset.step, fix: e.querySelector('.fix')?.textContent ?? null })));
  await ui.axe('add-key-validation-failed');
  await ui.shot('add-key-validation-failed');
  // The KMS away: not the identifier's fault, said in the result line, which takes focus.
  await ui.refuseOnce('**/keys', 'POST', 503, 'kms_unavailable', 'the KMS throttled or is down, after retries');
  await page.click('#add');
  await page.waitForSelector('#add-error');
  const away = { shown: await text(page, '#add-error'), invalid: await page.getAttribute('#key-arn', 'aria-invalid'),
    focused: await page.evaluate(() => document.activeElement?.id) };
  // Add, with the identifier changed while the call is on its way: the refusal is of the key
  // typed before, said in the result line; the new identifier is not marked, and focus stays
  // in the field being typed in.
  const adding = await holdRequests(page, '**/keys');
  await page.click('#add');
  await adding.sent();
  await page.fill('#key-arn', key_arn.replace(/:key\/.*$/, ':alias/another'));
  adding.release();
  await page.waitForFunction(() => /^The key typed before/.test(document.querySelector('#add-error')?.textContent ?? ''));
  const staleAdd = { shown: await text(page, '#add-error'), invalid: await page.getAttribute('#key-arn', 'aria-invalid'),
    focused: await page.evaluate(() => document.activeElement?.id), report: await text(page, '#report') };
  await adding.done();
  await page.fill('#key-arn', key_arn);
  await page.waitForSelector('#key-policy');
  // Add anyway: the server validates first and refuses; the report shows with the fix.
  await page.click('#add');
  await page.waitForFunction(() => /key_validation_failed/.test(document.querySelector('#report-summary')?.textContent ?? ''));
  const refused = await text(page, '#report-summary');
  await ui.shot('add-key-refused');
  return { csp: answer.headers()['content-security-policy'] ?? null, xfo: answer.headers()['x-frame-options'] ?? null,
    stored, malformed, part, parsed, policy, cli, stale, failed, away, staleAdd, refused, org };
}

/** Google Cloud KMS: the provider switched, a malformed name showing its part, then the key
 * name, service account and pool provider typed: parsed and granted in the browser (the pool
 * principal of this org, the gcloud commands); validated live; added. */
async function gcp(ui, { admin, key, sa, pool }) {
  const { page } = ui;
  await ui.load();
  await ui.signIn(admin);
  await page.click('nav a[href="#add-key"]');
  await ui.section('add-key');
  await page.check('#provider-gcp');
  assert.equal(await page.isVisible('#gcp-steps'), true);
  assert.equal(await page.isHidden('#aws-steps'), true);
  // A project id is six characters at least: the field says so as it is typed.
  await page.fill('#key-arn', 'projects/x/locations/europe-west1/keyRings/byok/cryptoKeys/root');
  const malformed = await text(page, '#key-arn-error');
  assert.match(malformed, /\(invalid_request\)$/);
  await page.fill('#key-arn', `${key}/cryptoKeyVersions/1`);
  await page.fill('#role-arn', sa);
  await page.fill('#audience', pool);
  await page.waitForSelector('#trust-policy');
  const parsed = {
    project: await text(page, '#key-arn-parsed [data-field="project"]'),
    location: await text(page, '#key-arn-parsed [data-field="location"]'),
    name: await text(page, '#key-arn-parsed [data-field="name"]'),
  };
  const bindings = JSON.parse(await page.textContent('#key-policy'));
  const trust = JSON.parse(await page.textContent('#trust-policy'));
  const cli = await page.textContent('#key-cli');
  await ui.axe('add-key-gcp');
  await ui.shot('add-key-gcp');
  await page.click('#validate');
  await page.waitForSelector('#report-summary');
  const summary = await text(page, '#report-summary');
  await page.click('#add');
  await page.waitForSelector('#make-default');
  const result = await text(page, '#add-result');
  await ui.shot('add-key-gcp-added');
  const provider = await providerShown(ui);
  return { malformed, parsed, bindings, trust, cli, summary, result, provider };
}

/** The Provider cell of `cmk:1` in the key list. */
async function providerShown(ui) {
  await ui.page.click('nav a[href="#keys"]');
  await ui.section('keys');
  return text(ui.page, 'tr[data-key="cmk:1"] td[data-label="Provider"]');
}

/** Azure Key Vault: the provider switched, a URL whose host is not a vault refused with its
 * part, then the key URL and the app's client id typed: parsed and granted in the browser (the
 * federated credential for this org, the role on the key, the az commands); validated live,
 * with the tenant learned from the vault's challenge; added. */
async function azure(ui, { admin, key, app }) {
  const { page } = ui;
  await ui.load();
  await ui.signIn(admin);
  await page.click('nav a[href="#add-key"]');
  await ui.section('add-key');
  await page.check('#provider-azure');
  assert.equal(await page.isVisible('#azure-steps'), true);
  assert.equal(await page.isHidden('#gcp-steps'), true);
  assert.equal(await text(page, 'label[for="key-arn"]'), 'Key URL');
  await page.fill('#key-arn', 'https://acme.vault.azure.net.evil.example/keys/root');
  const malformed = await text(page, '#key-arn-error');
  assert.match(malformed, /\(invalid_request\)$/);
  await page.fill('#key-arn', key);
  await page.fill('#role-arn', app);
  await page.waitForSelector('#trust-policy');
  const parsed = {
    vault: await text(page, '#key-arn-parsed [data-field="vault"]'),
    cloud: await text(page, '#key-arn-parsed [data-field="cloud"]'),
    name: await text(page, '#key-arn-parsed [data-field="name"]'),
    algorithm: await text(page, '#key-arn-parsed [data-field="algorithm"]'),
  };
  const assignment = JSON.parse(await page.textContent('#key-policy'));
  const credential = JSON.parse(await page.textContent('#trust-policy'));
  const cli = await page.textContent('#key-cli');
  await ui.axe('add-key-azure');
  await ui.shot('add-key-azure');
  await page.click('#validate');
  await page.waitForSelector('#report-summary');
  const summary = await text(page, '#report-summary');
  await page.click('#add');
  await page.waitForSelector('#make-default');
  const result = await text(page, '#add-result');
  const provider = await providerShown(ui);
  return { malformed, parsed, assignment, credential, cli, summary, result, provider };
}

/** The add-key flow with the keyboard only: sign in, reach "Add a key", paste, validate, add,
 * make it the default. No click. */
async function keyboard(ui, { admin, key_arn }) {
  const { page } = ui;
  await ui.load();
  const presses = {};
  presses.token = await ui.tabTo('#token');
  await page.keyboard.type(admin);
  await page.keyboard.press('Enter');
  await ui.section('overview');
  presses.nav = await ui.tabTo('nav a[href="#add-key"]');
  await page.keyboard.press('Enter');
  await ui.section('add-key');
  presses.name = await ui.tabTo('#key-name');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('prod');
  presses.arn = await ui.tabTo('#key-arn');
  await page.keyboard.type(key_arn);
  await page.waitForSelector('#key-policy');
  presses.copy = await ui.tabTo('#grant button');
  await ui.axe('add-key-parsed');
  await ui.shot('add-key-parsed');
  presses.validate = await ui.tabTo('#validate');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#report-summary');
  const summary = await text(page, '#report-summary');
  const steps = await page.$$eval('#report .steps li', (els) => els.map((e) => [e.dataset.step, e.className]));
  await ui.axe('add-key-validated');
  await ui.shot('add-key-validated');
  presses.add = await ui.tabTo('#add');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement?.id === 'make-default', null, { timeout: 15_000 });
  const attached = await text(page, '#add-result');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /is the default/.test(document.querySelector('#add-result')?.textContent ?? ''));
  const result = await text(page, '#add-result');
  await ui.shot('add-key-default');
  // The keys list and the overview say so too.
  presses.keys = await ui.tabTo('#add-result a[href="#keys"]');
  await page.keyboard.press('Enter');
  await ui.section('keys');
  const row = await text(page, '#keys-table tr[data-key="cmk:1"]');
  await ui.axe('keys');
  await ui.shot('keys');
  return { presses, summary, steps, attached, result, row };
}

/** A retirement waits on a paused thread: the banner says so from sign-in on; resuming the
 * thread from the tree lets the job finish and the banner goes; then the first key is
 * disabled with re-encryption to the second. */
async function job(ui, { admin, team, thread }) {
  const { page } = ui;
  await ui.load();
  await ui.signIn(admin);
  await page.waitForFunction(() => /waiting on paused scope/i.test(document.querySelector('#job')?.textContent ?? ''));
  const waiting = await text(page, '#job');
  const progress = await page.$eval('#job progress', (p) => [p.value, p.max]);
  await ui.axe('job-banner');
  await ui.shot('job-banner-waiting');
  // Resume the thread from the tree: the job continues and the banner goes.
  await page.click('nav a[href="#scopes"]');
  await ui.section('scopes');
  await page.click(`[data-scope="${team}"] > .scope-row button.disclosure`);
  await page.click(`[data-scope="${thread}"] > .scope-row button:has-text("Resume")`);
  await page.waitForFunction(() => document.querySelector('#job')?.dataset.running === 'false', null, { timeout: 20_000 });
  const after = await text(page, '#job');
  await page.click('nav a[href="#keys"]');
  await ui.section('keys');
  // Check the first key now: the table is drawn again with the health recorded, and the
  // report shows in that key's row as drawn now (not in a row a redraw replaced).
  await page.click('#keys-table tr[data-key="cmk:1"] button[data-check]');
  const report = '#keys-table tr[data-key="cmk:1"] + tr:not([hidden]) td.panel p';
  await page.waitForSelector(report);
  const checked = await text(page, report);
  // Disable the first key, re-encrypting to the second.
  await page.click('#keys-table tr[data-key="cmk:1"] button:has-text("Disable")');
  await page.selectOption('#keys-table select[name="target"]', 'cmk:2');
  await ui.axe('keys-disable');
  await ui.shot('keys-disable-form');
  await page.click('#keys-table button[type="submit"]');
  await page.waitForSelector('#keys-table tr[data-key="cmk:1"] .state-disabled');
  const live = await text(page, '#keys-live');
  // The form is gone with the redraw; focus is in the key's row, not at the page's start.
  const focusAfterDisable = await page.evaluate(() => document.activeElement?.closest('tr')?.dataset.key ?? document.activeElement?.tagName);
  const rows = {
    first: await text(page, '#keys-table tr[data-key="cmk:1"]'),
    second: await text(page, '#keys-table tr[data-key="cmk:2"]'),
  };
  await ui.shot('keys-disabled');
  // Disable all: the consequence is spelled out before, and the vendor can decrypt after.
  await page.click('#disable-all summary');
  const consequence = await text(page, '#disable-all .warning');
  await ui.axe('keys-disable-all');
  await ui.shot('keys-disable-all');
  await page.click('#disable-all button');
  await page.waitForSelector('#keys-table tr[data-key="cmk:2"] .state-disabled');
  const vendor = await text(page, '#keys-vendor');
  // Its button is gone (no key of the customer's left to disable): focus on what happened.
  const focusAfterAll = await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
  await ui.shot('keys-all-disabled');
  return { waiting, progress, after, checked, live, focusAfterDisable, rows, consequence, vendor, focusAfterAll };
}

/** The tree at 360 px: collapse and expand, pause a team (its thread shows paused by it), a
 * wrong confirmation refused beside its field, then a revoke typed back. */
async function tree(ui, { admin, team_a, thread, team_b }) {
  const { page } = ui;
  await ui.load();
  await ui.signIn(admin);
  // A row shown as a card at 360 px still hides when `hidden` (a key's closed panel).
  await page.click('nav a[href="#keys"]');
  await ui.section('keys');
  const shown = await page.$$eval('#keys-table tr[hidden]',
    (rows) => rows.map((r) => getComputedStyle(r).display));
  assert.ok(shown.length > 0, 'no closed panel row');
  assert.deepEqual([...new Set(shown)], ['none'], 'a hidden row shows at 360 px');
  await page.click('nav a[href="#scopes"]');
  await ui.section('scopes');
  const toggle = `[data-scope="${team_a}"] > .scope-row button.disclosure`;
  const child = `[data-scope="${thread}"]`;
  assert.equal(await page.isHidden(child), true, 'collapsed below the first level');
  await page.click(toggle);
  await page.waitForSelector(child);
  assert.equal(await page.getAttribute(toggle, 'aria-expanded'), 'true');
  await page.click(`[data-scope="${team_a}"] > .scope-row button:has-text("Pause")`);
  await page.waitForSelector(`${child} [data-effective="paused"]`);
  const paused = { team: await text(page, `[data-scope="${team_a}"] > .scope-row`), thread: await text(page, `${child} > .scope-row`),
    live: await text(page, '#scopes-live') };
  await ui.axe('scopes-paused');
  await ui.shot('scopes-paused-360');
  const width = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  // Revoke team-b: a wrong confirmation is refused by the server, beside the field.
  await page.click(`[data-scope="${team_b}"] > .scope-row button:has-text("Revoke")`);
  const input = `[data-scope="${team_b}"] form input`;
  await page.fill(input, team_a);
  await page.press(input, 'Enter');
  await page.waitForSelector(`[data-scope="${team_b}"] .field-error:not([hidden])`);
  const wrong = await text(page, `[data-scope="${team_b}"] .field-error`);
  const warning = await text(page, `[data-scope="${team_b}"] form .warning`);
  await ui.axe('scopes-revoke');
  await ui.shot('scopes-revoke-360');
  // The revoke held on its way and counted: Enter pressed again meanwhile sends nothing (a
  // second revoke answered `scope_revoked` over the first's success).
  const hold = await holdRequests(page, '**/revoke');
  await page.fill(input, team_b);
  await page.press(input, 'Enter');
  await hold.sent();
  await page.press(input, 'Enter');
  hold.release();
  await page.waitForSelector(`[data-scope="${team_b}"] [data-state="revoked"]`);
  await hold.done();
  const revokes = hold.count();
  const revoked = await text(page, `[data-scope="${team_b}"] > .scope-row`);
  await ui.shot('scopes-revoked-360');
  return { paused, width, wrong, warning, revokes, revoked };
}

/** Creates a service token from the page: shown once, with a copy button. */
async function tokenCreate(ui, { admin }) {
  const { page } = ui;
  await ui.load();
  // byok away at sign-in: said in the status line, the token field not marked invalid.
  await ui.refuseOnce('**/v1/whoami', 'GET', 503, 'database_unavailable', "byok's database is unreachable");
  await page.fill('#token', admin);
  await page.press('#token', 'Enter');
  await page.waitForFunction(() => /database_unavailable/.test(document.querySelector('#status')?.textContent ?? ''));
  const away = { status: await text(page, '#status'), invalid: await page.getAttribute('#token', 'aria-invalid'),
    beside: await text(page, '#token-error') };
  // Enter pressed again while the token is being checked: one sign-in (two started two
  // sessions, each with its job banner polling).
  const hold = await holdRequests(page, '**/v1/whoami');
  await page.press('#token', 'Enter');
  await hold.sent();
  await page.press('#token', 'Enter');
  hold.release();
  await ui.section('overview');
  await hold.done();
  const signIns = hold.count();
  await page.click('nav a[href="#tokens"]');
  await ui.section('tokens');
  // No name: the server's refusal beside the name field.
  await page.click('#token-form button[type="submit"]');
  await page.waitForSelector('#token-name-error:not([hidden])');
  const noName = await text(page, '#token-name-error');
  // The org's token quota reached: not the name's fault, said above the form.
  await ui.refuseOnce('**/tokens', 'POST', 409, 'token_quota', 'the org holds 100 tokens, the most allowed');
  await page.fill('#token-name', 'one-too-many');
  await page.click('#token-form button[type="submit"]');
  await page.waitForSelector('#token-error');
  const quota = { shown: await text(page, '#token-error'), invalid: await page.getAttribute('#token-name', 'aria-invalid'),
    beside: await text(page, '#token-name-error') };
  await page.fill('#token-name', 'ci');
  await page.selectOption('#token-role', 'service');
  await page.click('#token-form button[type="submit"]');
  await page.waitForSelector('#new-token');
  const token = await page.inputValue('#new-token');
  // The list is fetched again after the token is shown: wait for its row, not just the token.
  await page.waitForFunction(() => [...document.querySelectorAll('#tokens-table tbody th')].some((th) => th.textContent === 'ci'));
  const listed = await text(page, '#tokens-table');
  await ui.axe('tokens-created');
  await ui.shot('tokens-created');
  return { away, signIns, noName, quota, token, listed };
}


/** Revokes token `name` from the page, then reads the audit log there: the revocation is the
 * newest event, and the chain verifies. */
/** The page's token revoked elsewhere (another admin, through the API) while the page is open:
 * the next button pressed gets 401, and the page signs out to its sign-in form, whatever
 * section it was on. */
async function revokedElsewhere(ui, { admin, other, tokenId, org, url }) {
  const { page } = ui;
  await ui.load();
  await ui.signIn(admin);
  await page.click('nav a[href="#keys"]');
  await ui.section('keys');
  const revoked = await fetch(`${url}/v1/orgs/${org}/tokens/${tokenId}`, {
    method: 'DELETE', headers: { authorization: `Bearer ${other}` },
  });
  assert.equal(revoked.status, 200);
  await page.click('text=Check all keys now');
  await page.waitForSelector('#sign-in-form', { state: 'visible' });
  const signedOut = await page.isHidden('#nav');
  await ui.axe('signed-out');
  await ui.shot('signed-out');
  return { signedOut };
}

async function tokenRevoke(ui, { admin, name }) {
  const { page } = ui;
  await ui.load();
  await ui.signIn(admin);
  await page.click('nav a[href="#tokens"]');
  await ui.section('tokens');
  const button = `#tokens-table tr:has(th:text-is("${name}")) button`;
  // A double-click is one press: it arms the button, and revokes nothing. Its two clicks are
  // dispatched on the button itself (its label grows when armed, so a pointer's second click
  // may land beside it).
  await page.focus(button);
  await page.$eval(button, (b) => {
    for (const detail of [1, 2]) b.dispatchEvent(new MouseEvent('click', { bubbles: true, detail }));
  });
  const armedByDouble = await text(page, '#tokens-live');
  const listedAfterDouble = await page.locator(button).count();
  await page.click(button);
  await page.waitForFunction((n) => ![...document.querySelectorAll('#tokens-table tbody th')].some((th) => th.textContent === n), name);
  const live = await text(page, '#tokens-live');
  await ui.shot('tokens-revoked');
  await page.click('nav a[href="#audit"]');
  await ui.section('audit');
  await page.fill('#audit-kind', 'token_revoked');
  await page.press('#audit-kind', 'Enter');
  await page.waitForFunction(() => /token_revoked/.test(document.querySelector('#audit-table tbody')?.textContent ?? ''));
  const newest = await text(page, '#audit-table tbody tr');
  await page.click('#audit-verify');
  await page.waitForFunction(() => /^(Verified|Broken)/.test(document.querySelector('#audit-verdict')?.textContent ?? ''));
  const verdict = await text(page, '#audit-verdict');
  await page.fill('#audit-actor', 'zz');
  await page.press('#audit-actor', 'Enter');
  await page.waitForSelector('#audit-actor-error:not([hidden])');
  const badActor = await text(page, '#audit-actor-error');
  await ui.axe('audit');
  await ui.shot('audit');
  return { armedByDouble, listedAfterDouble, live, newest, verdict, badActor };
}

/** The customer's first steps: the overview says the org is not claimed; the bounds are
 * shortened (past the operator's ceiling first: refused beside the field); then the org is
 * claimed from the tokens section, and the page carries on with the new token. */
async function claim(ui, { admin, cacheSeconds, leaseSeconds }) {
  const { page } = ui;
  await ui.load();
  await ui.signIn(admin);
  const notYet = await text(page, '#claimed');
  const whoBefore = await text(page, '#who');
  await page.fill('#ttl-cache', '999999');
  await page.press('#ttl-cache', 'Enter');
  await page.waitForSelector('#ttl-cache-error:not([hidden])');
  const tooLong = await text(page, '#ttl-cache-error');
  await page.fill('#ttl-cache', String(cacheSeconds));
  await page.fill('#ttl-lease', String(leaseSeconds));
  await page.click('#bounds-form button[type="submit"]');
  await page.waitForFunction(() => /^Saved/.test(document.querySelector('#bounds-live')?.textContent ?? ''));
  const saved = await text(page, '#bounds-live');
  const bounds = await text(page, '#bounds');
  await ui.axe('overview-bounds');
  await ui.shot('overview-bounds');
  await page.click('nav a[href="#tokens"]');
  await ui.section('tokens');
  const unclaimed = await text(page, '#claim-state');
  // The claim is held on its way, and counted.
  const hold = await holdRequests(page, '**/tokens/claim');
  await page.click('#claim');
  const confirm = await text(page, '#claim-live');
  // Confirmed by a double-click's first click, then pressed twice more while the claim is on
  // its way: one claim is sent (a second, with the token the first revokes, signed the page out
  // and lost the new token).
  await page.dblclick('#claim');
  await hold.sent();
  await page.evaluate(() => {
    const claim = document.getElementById('claim');
    for (let i = 0; i < 2; i++) claim.dispatchEvent(new MouseEvent('click', { bubbles: true, detail: 1 }));
  });
  hold.release();
  await page.waitForSelector('#claimed-token');
  await hold.done();
  const claims = hold.count();
  const token = await page.inputValue('#claimed-token');
  await page.waitForFunction(() => /^The org is claimed/.test(document.querySelector('#claim-live')?.textContent ?? ''));
  const live = await text(page, '#claim-live');
  await ui.axe('tokens-claimed');
  await ui.shot('tokens-claimed');
  // The page works on, with the new token.
  await page.click('nav a[href="#overview"]');
  await ui.section('overview');
  const claimed = await text(page, '#claimed');
  const whoAfter = await text(page, '#who');
  return { notYet, whoBefore, tooLong, saved, bounds, unclaimed, confirm, claims, token, live, claimed, whoAfter };
}
