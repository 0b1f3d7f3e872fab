// The org's keys: name, provider, identifier, default, state, health, last check; make one
// the default, disable one with a re-encryption target, enable one again, check them now, or
// disable them all (back to the managed key, with what that means spelled out). A job started
// here shows in the banner; the list reads itself again when it ends.
import { ApiError } from './api.js';
import { fieldFault, fieldMessage, fill, h, once, showError, uid, when } from './dom.js';
import { health } from './overview.js';
import { stepsList } from './steps.js';

/** Who holds each kind of key, as the list names it: on a page whose job is to say who can
 * decrypt, a customer's key is never called the vendor's. */
const PROVIDERS = {
  aws: 'AWS KMS',
  gcp: 'Google Cloud KMS',
  azure: 'Azure Key Vault',
  managed: 'Managed by the vendor',
};

export async function render(section, ctx) {
  const { session, banner } = ctx;
  // Focusable (not in the Tab order): where focus goes after an action whose control is gone.
  const live = h('div', { id: 'keys-live', role: 'status', 'aria-live': 'polite', tabindex: -1 });
  const body = h('div', {});
  section.append(
    h('h2', {}, 'Keys'),
    h('p', {}, 'The keys that hold copies of your root keys. New data is wrapped under the default; ' +
      'disabling a key re-encrypts its copies to the key you choose, then destroys them.'),
    live, body);

  const say = (text) => { live.textContent = text; };
  // One action at a time: a second press (a double-click on Make default, Disable all) while
  // the first is on its way sends nothing, and its answer cannot replace the first's message.
  let acting = false;
  // `focus` names the control pressed (its `data-focus`) and `key` its key: where focus goes
  // back after the redraw (see `draw`).
  const act = async (label, fn, focus, key) => {
    if (acting) return;
    acting = true;
    try {
      say('');
      try {
        await fn();
        say(label);
      } catch (e) {
        if (e instanceof ApiError && e.code === 'unauthenticated') throw e;
        say(`${e instanceof ApiError ? e.text : e}`);
        live.className = 'error';
        return;
      }
      live.className = '';
      banner?.refresh();
      await draw(undefined, { focus, key });
    } finally {
      acting = false;
    }
  };

  // A redraw replaces the table, and the control focused in it: focus would fall to the
  // page's start, and a keyboard or screen-reader user lose their place. `draw` puts it back on
  // that control as drawn now, else in its key's row, else on the message saying what
  // happened; unless the admin has moved it out of the table meanwhile.
  function placeOf(el) {
    if (!el || !body.contains(el)) return null;
    const row = el.closest('tr');
    return { focus: el.closest('[data-focus]')?.dataset.focus, key: row?.dataset.key ?? row?.dataset.panelOf };
  }
  function refocus({ focus, key }) {
    const now = document.activeElement;
    if (now && now !== document.body && now.isConnected) return;
    const again = focus && body.querySelector(`[data-focus="${CSS.escape(focus)}"]`);
    const row = key && body.querySelector(`tr[data-key="${CSS.escape(key)}"] button`);
    (again || row || live).focus();
  }

  // Each draw's turn: an answer older than the newest draw asked for is dropped, so a slow
  // read cannot put back a state (a key healthy) that a newer one (its denial) replaced.
  let drawn = 0;
  // `place`: where focus goes after it (`refocus`), for an action whose control is gone
  // already (a form's button disabled while sending); else where focus was in the table.
  async function draw(list, place) {
    const turn = ++drawn;
    const view = list ?? await session.call('GET', session.org('/keys'));
    if (turn !== drawn) return;
    const back = place ?? placeOf(document.activeElement);
    const ready = view.keys.filter((k) => k.state === 'ready');
    const rows = view.keys.map((k) => {
      const actions = h('td', { 'data-label': 'Actions', class: 'actions' });
      const panel = h('td', { colspan: 8, class: 'panel' });
      const panelRow = h('tr', { hidden: true, 'data-panel-of': k.id }, panel);
      if (!k.default && k.state === 'ready') {
        actions.append(h('button', { type: 'button', 'data-focus': `default:${k.id}`, on: { click: () => act(`${k.name} is now the default.`,
          () => session.call('POST', session.org(`/keys/${k.id}/default`)), `default:${k.id}`, k.id) } }, `Make “${k.name}” default`));
      }
      if (k.state === 'disabled') {
        actions.append(h('button', { type: 'button', class: 'secondary', 'data-focus': `enable:${k.id}`, on: { click: () => act(`${k.name} is enabled again; its copies are being wrapped.`,
          () => session.call('POST', session.org(`/keys/${k.id}/enable`)), `enable:${k.id}`, k.id) } }, `Enable “${k.name}”`));
      } else {
        const targets = ready.filter((t) => t.id !== k.id);
        actions.append(h('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false', 'data-focus': `disable:${k.id}`,
          on: { click: (e) => toggle(e.currentTarget, panelRow, () => disableForm(k, targets, panel)) } },
        `Disable “${k.name}”…`));
      }
      if (k.type !== 'managed') {
        actions.append(h('button', { type: 'button', class: 'secondary', 'data-check': k.id, 'data-focus': `check:${k.id}`, on: { click: async (e) => {
          const button = e.currentTarget;
          button.disabled = true;
          let shown;
          try {
            const report = await session.call('POST', session.org(`/keys/${k.id}/validate`));
            shown = [h('p', {}, report.ok ? `“${k.name}” passed every check.` : `“${k.name}” failed a check:`),
              stepsList(report.steps)];
          } catch (err) {
            if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
            shown = [h('p', { class: 'error' }, err instanceof ApiError ? err.text : String(err))];
          }
          button.disabled = false;
          // The whole table again (the health this check recorded, on every row), then the
          // report in this key's row as drawn now: a draw meanwhile replaced the old one.
          try {
            await draw();
          } catch (err) {
            if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
          }
          const now = body.querySelector(`tr[data-key="${CSS.escape(k.id)}"]`);
          const report = now?.nextElementSibling;
          if (!report) return;
          report.hidden = false;
          fill(report.querySelector('td.panel'), ...shown);
          now.querySelector('button[data-check]')?.focus();
        } } }, `Check “${k.name}” now`));
      }
      const row = h('tr', { 'data-key': k.id },
        h('th', { scope: 'row', 'data-label': 'Name' }, k.name),
        h('td', { 'data-label': 'Provider' }, PROVIDERS[k.type] ?? k.type),
        h('td', { 'data-label': 'Identifier', class: 'mono' }, k.key_pasted ?? k.key ?? k.id),
        h('td', { 'data-label': 'Default' }, k.default ? 'Default' : '—'),
        h('td', { 'data-label': 'State', class: `nowrap state-${k.state}` }, k.state),
        h('td', { 'data-label': 'Health', class: 'health' }, k.type === 'managed' ? 'held by the vendor' : [health(k), ` · ${when(k.health_at, 'not yet')}`]),
        h('td', { 'data-label': 'Id', class: 'mono nowrap' }, k.id),
        actions);
      return [row, panelRow];
    });
    const byok = view.keys.some((k) => k.type !== 'managed' && k.state !== 'disabled');
    fill(body,
      h('p', { class: view.vendor_can_decrypt ? 'warning' : 'ok', id: 'keys-vendor' },
        view.vendor_can_decrypt
          ? 'The vendor can decrypt your data without your KMS (the managed key holds a copy).'
          : 'The vendor cannot decrypt your data without your KMS.'),
      h('div', { class: 'table-wrap' }, h('table', { id: 'keys-table' },
        h('caption', {}, 'Your keys'),
        h('thead', {}, h('tr', {}, ['Name', 'Provider', 'Identifier', 'Default', 'State', 'Health · last check', 'Id', 'Actions']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows))),
      h('p', { class: 'toolbar' },
        h('a', { href: '#add-key', class: 'button' }, 'Add a key'),
        h('button', { type: 'button', class: 'secondary', 'data-focus': 'check-all', on: { click: () => act('Checked every key.', async () => {
          await draw(await session.call('POST', session.org('/keys/check')));
        }, 'check-all') } }, 'Check all keys now')),
      byok ? disableAll() : null);
    if (back) refocus(back);
  }

  function toggle(button, panelRow, build) {
    const open = button.getAttribute('aria-expanded') !== 'true';
    button.setAttribute('aria-expanded', String(open));
    panelRow.hidden = !open;
    if (open) {
      build();
      panelRow.querySelector('select, input, button')?.focus();
    }
  }

  function disableForm(k, targets, panel) {
    const id = uid('target');
    if (!targets.length) {
      fill(panel, h('p', { class: 'error' }, `No other key is ready to take “${k.name}”'s copies: add or enable one first.`));
      return;
    }
    const select = h('select', { id, name: 'target' },
      targets.map((t) => h('option', { value: t.id, selected: t.default }, `${t.name} (${t.id})`)));
    const msg = fieldMessage(select);
    const submit = h('button', { type: 'submit' }, `Disable “${k.name}”`);
    fill(panel, h('form', { class: 'inline', on: { submit: (e) => {
      e.preventDefault();
      return once(submit, async () => {
        msg.clear();
        live.className = '';
        say('');
        try {
          await session.call('POST', session.org(`/keys/${k.id}/disable`), { target: select.value });
        } catch (err) {
          if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
          // The target's fault beside the list; anything else (a job running, the KMS or
          // byok away) in the section's message, the list not marked invalid.
          if (fieldFault(err, ['invalid_request', 'not_found', 'key_not_ready'])) {
            msg.show(err.text);
            select.focus();
          } else {
            showError(live, err);
          }
          return;
        }
        say(`“${k.name}” is disabled; its copies are re-encrypted to ${select.value}.`);
        banner?.refresh();
        await draw(undefined, { key: k.id });
      });
    } } },
    h('label', { for: id }, `Re-encrypt “${k.name}”'s copies to`), select, msg.el,
    h('p', { class: 'hint' }, k.type === 'managed'
      ? 'Once the managed key is disabled, the vendor can no longer decrypt your data without your KMS.'
      : `“${k.name}” will no longer be used; data stays readable through the key you choose.`),
    submit));
  }

  function disableAll() {
    const details = h('details', { id: 'disable-all' },
      h('summary', {}, 'Disable all your keys…'),
      h('p', { class: 'warning' }, 'This falls back to the vendor-managed key: every copy of your root keys is ' +
        're-encrypted under the vendor\'s key, and then the vendor can decrypt your data without your ' +
        'KMS. Disabling your key in KMS will no longer cut access.'),
      h('button', { type: 'button', class: 'danger', on: { click: () => act('Every key of yours is disabled; the managed key holds the copies.',
        () => session.call('POST', session.org('/keys/disable-all')), 'disable-all') } }, 'Disable all and use the managed key'));
    return details;
  }

  banner?.onEnd(() => { if (section.isConnected) draw(); });
  await draw();
}
