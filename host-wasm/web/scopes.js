// The scope tree: expand and collapse, each scope's own state and its effective one with the
// scope that decides it named; pause, resume, and revoke (which asks for the scope id typed
// back and says that it is final). A pause or revoke cascades to everything below.
import { ApiError } from './api.js';
import { fieldFault, fieldMessage, fill, h, once, showError, uid } from './dom.js';

export async function render(section, { session }) {
  const live = h('div', { id: 'scopes-live', role: 'status', 'aria-live': 'polite' });
  const treeBox = h('div', {});
  section.append(h('h2', {}, 'Scopes'),
    h('p', {}, 'Pausing a scope stops every use of its keys and its subtree\'s until you resume it; ' +
      'nothing is deleted. Revoking destroys the keys for good.'),
    live, treeBox);
  const open = new Set();

  // Each draw's turn: an answer older than the newest draw asked for is dropped (a read sent
  // before a pause, answered after it, must not show the scope active again).
  let drawn = 0;
  async function draw(focusId) {
    const turn = ++drawn;
    const scopes = await session.call('GET', session.org('/scopes'));
    if (turn !== drawn) return;
    const byId = new Map(scopes.map((s) => [s.id, s]));
    const children = new Map();
    for (const s of scopes) {
      if (s.parent && byId.has(s.parent)) {
        if (!children.has(s.parent)) children.set(s.parent, []);
        children.get(s.parent).push(s);
      }
    }
    const roots = scopes.filter((s) => !s.parent || !byId.has(s.parent));
    if (open.size === 0) for (const r of roots) open.add(r.id);
    const nameOf = (id) => byId.get(id)?.name ?? id;
    const node = (s) => {
      const kids = children.get(s.id) ?? [];
      const listId = `children-${s.id}`;
      const expanded = open.has(s.id);
      const toggle = kids.length
        ? h('button', { type: 'button', class: 'disclosure', 'aria-expanded': String(expanded), 'aria-controls': listId,
          'aria-label': `${expanded ? 'Collapse' : 'Expand'} ${s.name} (${kids.length} below)`,
          on: { click: () => { if (open.has(s.id)) open.delete(s.id); else open.add(s.id); draw(s.id); } } },
        expanded ? '▾' : '▸')
        : h('span', { class: 'disclosure-spacer', 'aria-hidden': 'true' });
      const effective = s.effective === 'active'
        ? 'active'
        : `${s.effective}${s.effective_by && s.effective_by !== s.id ? ` (by ${nameOf(s.effective_by)})` : ''}`;
      const actions = h('span', { class: 'actions' });
      const panel = h('div', { class: 'panel', hidden: true });
      if (s.state === 'active' && s.effective !== 'revoked') {
        actions.append(h('button', { type: 'button', class: 'secondary', on: { click: () => act(s, 'pause') } }, `Pause ${s.name}`));
      }
      if (s.state === 'paused') {
        actions.append(h('button', { type: 'button', on: { click: () => act(s, 'resume') } }, `Resume ${s.name}`));
      }
      if (s.state !== 'revoked') {
        actions.append(h('button', { type: 'button', class: 'danger', 'aria-expanded': 'false', on: { click: (e) => {
          const b = e.currentTarget;
          const show = b.getAttribute('aria-expanded') !== 'true';
          b.setAttribute('aria-expanded', String(show));
          panel.hidden = !show;
          if (show) {
            revokeForm(s, panel);
            panel.querySelector('input').focus();
          }
        } } }, `Revoke ${s.name}…`));
      }
      return h('li', { 'data-scope': s.id },
        h('div', { class: 'scope-row' }, toggle,
          h('span', { class: 'scope-name' }, s.name),
          h('span', { class: 'mono scope-id' }, s.id),
          h('span', { class: `badge state-${s.state}`, 'data-state': s.state }, s.state),
          h('span', { class: `effective state-${s.effective}`, 'data-effective': s.effective }, `effective: ${effective}`),
          actions),
        panel,
        kids.length ? h('ul', { id: listId, hidden: !expanded }, kids.map(node)) : null);
    };
    fill(treeBox, h('ul', { class: 'tree', 'aria-label': 'Scope tree' }, roots.map(node)));
    if (focusId) treeBox.querySelector(`[data-scope="${CSS.escape(focusId)}"] button`)?.focus();
  }

  // One pause or resume at a time: a double-click on Pause sent a second pause, whose
  // refusal replaced the first one's success.
  let acting = false;
  async function act(s, action) {
    if (acting) return;
    acting = true;
    try {
      live.className = '';
      try {
        await session.call('POST', session.org(`/scopes/${s.id}/${action}`), {});
        live.textContent = action === 'pause'
          ? `${s.name} is paused, and everything under it.`
          : `${s.name} is resumed (a paused scope above it still applies).`;
      } catch (e) {
        if (e instanceof ApiError && e.code === 'unauthenticated') throw e;
        showError(live, e);
      }
      await draw(s.id);
    } finally {
      acting = false;
    }
  }

  function revokeForm(s, panel) {
    const id = uid('confirm');
    const input = h('input', { id, autocomplete: 'off', spellcheck: 'false', class: 'mono', 'aria-describedby': `${id}-hint` });
    const msg = fieldMessage(input);
    const submit = h('button', { type: 'submit', class: 'danger' }, `Revoke ${s.name} for good`);
    // Sent once: a second Enter while the revoke is on its way would answer `scope_revoked`
    // beside the field, over a revoke that succeeded.
    fill(panel, h('form', { class: 'inline', novalidate: true, on: { submit: (e) => {
      e.preventDefault();
      return once(submit, async () => {
        msg.clear();
        // The server checks the confirmation (and answers with its code beside the field).
        try {
          await session.call('POST', session.org(`/scopes/${s.id}/revoke`), { confirm: input.value.trim() });
        } catch (err) {
          if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
          // A confirmation typed wrong beside the field; anything else (the scope revoked
          // meanwhile, byok away) in the section's message.
          if (fieldFault(err, ['confirmation_mismatch', 'invalid_request'])) {
            msg.show(err.text);
            input.focus();
          } else {
            showError(live, err);
          }
          return;
        }
        live.className = '';
        live.textContent = `${s.name} is revoked, with everything under it. Its keys are destroyed.`;
        await draw(s.id);
      });
    } } },
    h('p', { class: 'warning', id: `${id}-hint` }, `Revoking ${s.name} is final: its keys and every key below it are destroyed, ` +
      'and nothing encrypted under them can ever be read again, by you or the vendor.'),
    h('label', { for: id }, `Type the scope id ${s.id} to confirm`), input, msg.el,
    submit));
  }

  await draw();
}
