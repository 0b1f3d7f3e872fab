// The key-setup page: sign-in, the section router and the job banner. Each section lives in
// its own module (overview, keys, add_key, scopes, tokens, audit) and renders into <main>;
// the identifier parsing, the grant and the offline validation run in the wasm package, by
// the same core the server runs.
import { ApiError, Session } from './api.js';
import { fieldFault, fieldMessage, fill, h, once, showError } from './dom.js';
import { JobBanner } from './job.js';

const SECTIONS = {
  overview: () => import('./overview.js'),
  keys: () => import('./keys.js'),
  'add-key': () => import('./add_key.js'),
  scopes: () => import('./scopes.js'),
  tokens: () => import('./tokens.js'),
  audit: () => import('./audit.js'),
};

const main = document.getElementById('main');
const status = document.getElementById('status');
const nav = document.getElementById('nav');
const form = document.getElementById('sign-in-form');
const tokenField = document.getElementById('token');
const tokenError = fieldMessage(tokenField);
tokenField.after(tokenError.el);

let wasm = null;
let session = null;
let banner = null;

try {
  wasm = await import('./pkg/byok_wasm.js');
  await wasm.default();
  status.textContent = 'Ready.';
  document.getElementById('sign-in-button').disabled = false;
  document.documentElement.dataset.ready = 'true';
  performance.mark('byok-interactive'); // scripts/bench-setup-page.sh reads it
} catch (e) {
  status.className = 'status error';
  status.textContent = 'The page could not load its WebAssembly package: ' +
    'the server was built without it (run scripts/build-wasm.sh, then rebuild byok).';
  document.documentElement.dataset.ready = 'false';
  console.error(e);
}

const signInButton = document.getElementById('sign-in-button');
form.addEventListener('submit', (event) => {
  event.preventDefault();
  // Once: a second Enter while the token is being checked would sign in twice (two sessions,
  // two job banners polling). After sign-in the form is gone from the page.
  if (session) return;
  return once(signInButton, signIn);
});

async function signIn() {
  tokenError.clear();
  status.classList.remove('error');
  status.textContent = 'Ready.';
  const candidate = new Session(tokenField.value.trim());
  try {
    await candidate.signIn();
  } catch (e) {
    // A refused token is the field's fault; the server away or a rate limit is not.
    if (fieldFault(e, ['unauthenticated', 'forbidden', 'invalid_request'])) tokenError.show(e.text);
    else showError(status, e);
    tokenField.focus();
    return;
  }
  tokenField.value = '';
  session = candidate;
  // A 401 from any call, a button's or the job banner's too, signs the page out.
  session.onRefused = () => signOut('the token was refused');
  showWho();
  nav.hidden = false;
  banner = new JobBanner(document.getElementById('job'), session);
  if (!location.hash || location.hash === '#main') location.hash = '#overview';
  else route();
}

/** The header's line: the org and the token the page holds (another after a claim). */
function showWho() {
  document.getElementById('who').textContent =
    `Org ${session.who.org} · token “${session.who.name}”`;
}

document.getElementById('sign-out').addEventListener('click', signOut);

/** Ends the session: the token leaves memory, the page goes back to its sign-in form. A
 * revoked or expired token (401 on any call) ends it the same way. */
function signOut(reason) {
  session?.end();
  session = null;
  banner?.stop();
  banner = null;
  nav.hidden = true;
  document.getElementById('who').textContent = '';
  location.hash = '';
  location.reload();
  if (typeof reason === 'string') console.info(reason);
}

window.addEventListener('hashchange', route);

// A button's handler that meets a 401 passes it on; the session has signed the page out
// already (`onRefused`), so that rejection is handled, not an error.
window.addEventListener('unhandledrejection', (event) => {
  if (event.reason instanceof ApiError && event.reason.code === 'unauthenticated') event.preventDefault();
});

async function route() {
  if (!session) return;
  const name = location.hash.slice(1);
  const load = SECTIONS[name];
  if (!load) return;
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === `#${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const section = h('section', { 'aria-busy': 'true' });
  fill(main, section);
  try {
    const module = await load();
    await module.render(section, { session, wasm, banner, showWho, go: (to) => { location.hash = `#${to}`; } });
  } catch (e) {
    if (e instanceof ApiError && e.code === 'unauthenticated') {
      signOut('the token was refused');
      return;
    }
    section.append(h('p', { class: 'error', role: 'alert' },
      `This section could not load: ${e instanceof ApiError ? e.text : e}`));
  }
  section.removeAttribute('aria-busy');
  // Move focus to the section's heading, so that a screen reader announces where it is.
  const heading = section.querySelector('h2');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
  document.documentElement.dataset.section = name;
}
