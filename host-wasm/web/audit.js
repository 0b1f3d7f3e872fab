// The org's audit log: the newest events, filtered by type, scope or token; and the chain
// verified by the server, with the result (the first broken row and why, if any).
import { ApiError } from './api.js';
import { errorLine, fieldFault, fieldMessage, fill, h, when } from './dom.js';

const LIMIT = 50;

export async function render(section, { session }) {
  const kind = h('input', { id: 'audit-kind', autocomplete: 'off', placeholder: 'scope_paused', list: 'audit-kinds' });
  const scope = h('input', { id: 'audit-scope', autocomplete: 'off', class: 'mono', placeholder: '32 hex digits' });
  const actor = h('input', { id: 'audit-actor', autocomplete: 'off', class: 'mono', placeholder: '16 hex digits' });
  const msgs = { kind: fieldMessage(kind), scope: fieldMessage(scope), actor: fieldMessage(actor) };
  const rows = h('div', {});
  const verdict = h('div', { id: 'audit-verdict', role: 'status', 'aria-live': 'polite' });

  // Each draw's turn: the answer to an older filter (sent before the admin changed it and
  // pressed Enter again, answered after) is dropped, not shown under the new one.
  let drawn = 0;
  async function draw() {
    const turn = ++drawn;
    for (const m of Object.values(msgs)) m.clear();
    const q = new URLSearchParams({ newest: 'true', limit: String(LIMIT) });
    if (kind.value.trim()) q.set('kind', kind.value.trim());
    if (scope.value.trim()) q.set('scope', scope.value.trim());
    if (actor.value.trim()) q.set('actor', actor.value.trim());
    let events;
    try {
      events = await session.call('GET', session.org(`/audit?${q}`));
    } catch (e) {
      if (!(e instanceof ApiError) || e.code === 'unauthenticated') throw e;
      if (turn !== drawn) return;
      // A filter refused beside its field; anything else (a rate limit, byok away) where the
      // events go, no filter marked invalid.
      if (!fieldFault(e)) {
        fill(rows, errorLine('audit-error', e));
        return;
      }
      const field = /actor/.test(e.message) ? 'actor' : /scope/.test(e.message) ? 'scope' : 'kind';
      msgs[field].show(e.text);
      return;
    }
    if (turn !== drawn) return;
    fill(rows, events.length
      ? h('div', { class: 'table-wrap' }, h('table', { id: 'audit-table' },
        h('caption', {}, `The newest ${events.length} event${events.length === 1 ? '' : 's'}, newest first`),
        h('thead', {}, h('tr', {}, ['#', 'When', 'Event', 'Scope', 'Token', 'Details'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, events.map((r) => {
          const { type, scope: sc, actor: who, ...rest } = r.event;
          return h('tr', {},
            h('td', { 'data-label': '#' }, String(r.seq)),
            h('td', { 'data-label': 'When' }, when(r.at)),
            h('th', { scope: 'row', 'data-label': 'Event' }, type),
            h('td', { 'data-label': 'Scope', class: 'mono' }, sc ?? rest.subject?.scope ?? '—'),
            h('td', { 'data-label': 'Token', class: 'mono' }, who?.token ? `${who.name ?? ''} ${who.token}`.trim() : '—'),
            h('td', { 'data-label': 'Details', class: 'mono details' }, JSON.stringify(rest)));
        }))))
      : h('p', {}, 'No event matches.'));
  }

  const filter = h('form', { id: 'audit-filter', novalidate: true, on: { submit: (e) => { e.preventDefault(); draw(); } } },
    h('fieldset', {}, h('legend', {}, 'Filter'),
      h('label', { for: 'audit-kind' }, 'Event type'), kind, msgs.kind.el,
      h('datalist', { id: 'audit-kinds' }, ['scope_paused', 'scope_resumed', 'scope_revoked', 'key_attached', 'key_disabled', 'key_enabled', 'default_key_changed',
        'token_created', 'token_revoked', 'lease_issued', 'scope_used', 'kms_call', 'key_validation', 'credential_exchange'].map((k) => h('option', { value: k }))),
      h('label', { for: 'audit-scope' }, 'Scope id'), scope, msgs.scope.el,
      h('label', { for: 'audit-actor' }, 'Token id'), actor, msgs.actor.el,
      h('p', {}, h('button', { type: 'submit' }, 'Show events'))));

  const verify = h('button', { type: 'button', id: 'audit-verify', class: 'secondary', on: { click: async () => {
    verify.disabled = true;
    verdict.className = '';
    verdict.textContent = 'Verifying the chain…';
    try {
      const v = await session.call('GET', session.org('/audit/verify'));
      verdict.className = v.ok ? 'ok' : 'error';
      verdict.textContent = v.ok
        ? `Verified: ${v.checked} rows, every link of the chain intact.`
        : `Broken at row ${v.first_broken}: ${v.reason} (${v.checked} rows checked).`;
    } catch (e) {
      if (e instanceof ApiError && e.code === 'unauthenticated') throw e;
      verdict.className = 'error';
      verdict.textContent = e instanceof ApiError ? e.text : String(e);
    } finally {
      verify.disabled = false;
    }
  } } }, 'Verify the chain');

  section.append(h('h2', {}, 'Audit'), filter, h('p', {}, verify), verdict, rows);
  await draw();
}
