// The org's tokens: list (never the secret), create (the token shown once, with a copy
// button), revoke (its next request gets 401), and the claim: a new admin token with every
// other admin token revoked, the one the vendor handed over included. Revoking the token this
// page signed in with signs the page out; a claim carries the page on with the new token.
import { ApiError } from './api.js';
import { copyButton, errorLine, fieldFault, fieldMessage, fill, h, once, twoPress, when } from './dom.js';

const EXPIRIES = [['', 'Never'], [String(86_400), '1 day'], [String(30 * 86_400), '30 days'],
  [String(90 * 86_400), '90 days'], [String(365 * 86_400), '1 year']];

export async function render(section, { session, showWho }) {
  const live = h('div', { id: 'tokens-live', role: 'status', 'aria-live': 'polite', tabindex: -1 });
  const claimBox = await claimSection(session, showWho, () => draw());
  const list = h('div', {});
  const created = h('div', { id: 'token-created' });
  const name = h('input', { id: 'token-name', autocomplete: 'off', maxlength: 64, required: true });
  const role = h('select', { id: 'token-role' }, ['service', 'auditor', 'admin'].map((r) => h('option', { value: r }, r)));
  const expiry = h('select', { id: 'token-expiry' }, EXPIRIES.map(([v, l]) => h('option', { value: v }, l)));
  const nameMsg = fieldMessage(name);

  const submit = h('button', { type: 'submit' }, 'Create token');
  const form = h('form', { id: 'token-form', novalidate: true, on: { submit: (e) => {
    e.preventDefault();
    // Once: a second Enter while the first is on its way would make a second token, whose
    // secret replaced the first one's (shown once).
    return once(submit, create);
  } } },
  h('label', { for: 'token-name' }, 'Name (what it is for)'), name, nameMsg.el,
  h('label', { for: 'token-role' }, 'Role'), role,
  h('label', { for: 'token-expiry' }, 'Expires'), expiry,
  h('p', {}, submit));

  async function create() {
    nameMsg.clear();
    fill(created);
    const label = name.value.trim();
    let t;
    try {
      t = await session.call('POST', session.org('/tokens'), {
        name: label, role: role.value, expires_in_s: expiry.value ? Number(expiry.value) : null,
      });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
      // A name refused beside its field; anything else (the token quota, byok away) above
      // the form, the name not marked invalid.
      if (fieldFault(err)) {
        nameMsg.show(err.text);
        name.focus();
      } else {
        fill(created, errorLine('token-error', err));
      }
      return;
    }
    const secret = h('input', { id: 'new-token', readonly: true, class: 'mono', value: t.token, 'aria-describedby': 'new-token-hint' });
    fill(created, h('div', { class: 'banner' },
      h('label', { for: 'new-token' }, `New ${t.role} token “${label}” (${t.id})`), secret,
      copyButton('Copy the token', () => t.token, secret),
      h('p', { class: 'warning', id: 'new-token-hint' }, 'Store it now: it is shown once. byok keeps only its hash.'),
      h('button', { type: 'button', class: 'secondary', on: { click: () => fill(created) } }, 'Done, hide it')));
    secret.focus();
    secret.select();
    name.value = '';
    await draw();
  }

  async function draw() {
    const tokens = await session.call('GET', session.org('/tokens'));
    fill(list, h('div', { class: 'table-wrap' }, h('table', { id: 'tokens-table' },
      h('caption', {}, 'Tokens of this org'),
      h('thead', {}, h('tr', {}, ['Name', 'Role', 'Id', 'Created', 'Last used', 'Expires', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, tokens.map((t) => h('tr', { 'data-token': t.id },
        h('th', { scope: 'row', 'data-label': 'Name' }, t.name, t.id === session.who.token_id ? ' (this page)' : ''),
        h('td', { 'data-label': 'Role' }, t.role),
        h('td', { 'data-label': 'Id', class: 'mono nowrap' }, t.id),
        h('td', { 'data-label': 'Created' }, when(t.created_at)),
        h('td', { 'data-label': 'Last used' }, when(t.last_used_at)),
        h('td', { 'data-label': 'Expires' }, when(t.expires_at)),
        h('td', { 'data-label': 'Actions' }, revokeButton(t))))))));
  }

  function revokeButton(t) {
    const armed = () => {
      live.className = '';
      live.textContent = `Press again to revoke “${t.name}”: its next request gets 401.`;
    };
    const disarmed = () => { live.textContent = ''; };
    return twoPress({}, `Revoke “${t.name}”`, `Confirm: revoke “${t.name}”`, armed, async () => {
      try {
        await session.call('DELETE', session.org(`/tokens/${t.id}`));
      } catch (err) {
        if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
        live.className = 'error';
        live.textContent = err instanceof ApiError ? err.text : String(err);
        return;
      }
      live.className = '';
      live.textContent = `“${t.name}” (${t.id}) is revoked.`;
      if (t.id === session.who.token_id) {
        document.getElementById('sign-out').click();
        return;
      }
      await draw();
      // The message, not the next row's revoke button: a press meant for this one must not
      // arm another.
      live.focus();
    }, disarmed);
  }

  section.append(h('h2', {}, 'Tokens'), claimBox, live, h('h3', {}, 'Create a token'), form, created, list);
  await draw();
}

/** The claim: whether the org was claimed, and a two-press button that claims it. `redraw`
 * lists the tokens again after it. */
async function claimSection(session, showWho, redraw) {
  const org = await session.call('GET', session.org());
  const state = h('p', { id: 'claim-state', class: org.claimed_at == null ? 'warning' : 'ok' },
    org.claimed_at == null
      ? 'Not claimed yet: the admin token your vendor created this org with, and any made with it, still work.'
      : `Claimed on ${when(org.claimed_at)}: only admin tokens made since then work.`);
  const live = h('div', { id: 'claim-live', role: 'status', 'aria-live': 'polite' });
  const shown = h('div', { id: 'claim-token' });
  const armed = () => {
    live.className = '';
    live.textContent = 'Press again to claim: every admin token stops working, this page’s included; the page carries on with the new one.';
  };
  // Sent once (the button is disabled until the answer): a second claim, sent with the token
  // the first revokes, is refused as unauthenticated, which signed the page out and lost the
  // new admin token, shown once, with every other admin token revoked.
  const button = twoPress({ id: 'claim' }, 'Claim the org', 'Confirm: claim the org', armed, async () => {
    let t;
    try {
      t = await session.claim(session.org('/tokens/claim'));
    } catch (err) {
      if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
      live.className = 'error';
      live.textContent = err instanceof ApiError ? err.text : String(err);
      return;
    }
    const secret = h('input', { id: 'claimed-token', readonly: true, class: 'mono', value: t.token, 'aria-describedby': 'claimed-token-hint' });
    fill(shown, h('div', { class: 'banner' },
      h('label', { for: 'claimed-token' }, `Your new admin token (${t.id})`), secret,
      copyButton('Copy the token', () => t.token, secret),
      h('p', { class: 'warning', id: 'claimed-token-hint' }, 'Store it now: it is shown once. byok keeps only its hash.'),
      h('button', { type: 'button', class: 'secondary', on: { click: () => fill(shown) } }, 'Done, hide it')));
    // The page's token was revoked with the others: it carries on with the new one.
    try {
      await session.adopt(t.token);
    } catch (err) {
      live.className = 'error';
      live.textContent = `Claimed, but the page could not sign in with the new token: ${err instanceof ApiError ? err.text : err}. Copy it and sign in again.`;
      return;
    }
    showWho();
    live.className = '';
    const row = t.receipt ? ` The receipt is row ${t.receipt.entry.seq} of the audit log.` : '';
    live.textContent = `The org is claimed: ${t.revoked.length} admin token${t.revoked.length === 1 ? '' : 's'} revoked.${row}`;
    state.className = 'ok';
    state.textContent = 'Claimed just now: only the admin token below works.';
    secret.focus();
    secret.select();
    await redraw();
  }, () => { live.textContent = ''; });
  return h('div', { id: 'claim-box' },
    h('h3', {}, 'Claim the org'),
    state,
    h('p', {}, 'Your vendor created this org and handed you its first admin token: they have seen it. ' +
      'Claiming makes a new admin token and revokes every other one, this page’s included. ' +
      'Service and auditor tokens keep working.'),
    h('p', {}, button), live, shown);
}
