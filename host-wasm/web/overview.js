// The encryption overview: managed or the customer's own key, whether the vendor could decrypt
// without the customer's KMS, whether the org was claimed from the vendor, each key's health,
// and how long access lasts after a withdrawal (the unwrap cache TTL, the lease TTL, the
// outage grace) in words, with a form to shorten the first two (never past the operator's
// ceilings).
import { ApiError } from './api.js';
import { duration, fieldMessage, h, when } from './dom.js';

export async function render(section, ctx) {
  const { session } = ctx;
  const [org, keys] = await Promise.all([
    session.call('GET', session.org()),
    session.call('GET', session.org('/keys')),
  ]);
  const byok = keys.keys.filter((k) => k.type !== 'managed');
  const enabled = byok.filter((k) => k.state !== 'disabled');
  const def = keys.keys.find((k) => k.default);
  section.append(
    h('h2', {}, 'Overview'),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Organization'), h('dd', {}, `${org.name} (${org.id})`),
      h('dt', {}, 'Encryption'),
      h('dd', { id: 'mode' }, enabled.length
        ? `Bring your own key: ${enabled.length} key${enabled.length > 1 ? 's' : ''} of yours` +
          (def ? `, default “${def.name}” (${def.id})` : '')
        : 'Managed: the vendor holds the key (no key of yours is attached)'),
      h('dt', {}, 'Can the vendor decrypt without your KMS?'),
      h('dd', { id: 'vendor-can-decrypt', class: keys.vendor_can_decrypt ? 'warning' : 'ok' },
        keys.vendor_can_decrypt
          ? 'Yes. byok keeps a copy of your root keys under its own managed key, so the vendor ' +
            'can read your data without your KMS. Attach a key of yours and disable the managed ' +
            'key to change that.'
          : 'No. Every copy of your root keys is wrapped by your KMS: without it, nothing opens.'),
      h('dt', {}, 'Claimed from the vendor?'),
      h('dd', { id: 'claimed', class: org.claimed_at == null ? 'warning' : 'ok' },
        org.claimed_at == null
          ? ['Not yet: the admin token your vendor created this org with still works. ',
            h('a', { href: '#tokens' }, 'Claim the org'), ' first.']
          : `Yes, on ${when(org.claimed_at)}.`),
      h('dt', {}, 'Scopes'), h('dd', {}, String(org.scopes))),
    h('h3', {}, 'How long access lasts after you withdraw'),
    h('ul', { id: 'bounds' },
      h('li', {}, `Disable your key or remove byok's grant: the server stops reading your data within `,
        h('strong', {}, duration(org.unwrap_cache_ttl_ms)), ' (its unwrap cache).'),
      h('li', {}, org.lease_ttl_ms
        ? ['Pause or revoke a scope, or revoke a token: at once on the server; edge ' +
          'deployments holding a lease stop within ', h('strong', {}, duration(org.lease_ttl_ms)),
          ' (the lease).']
        : 'Pause or revoke a scope, or revoke a token: at once on the server; no edge lease is ' +
          'issued (lease TTL 0), so no edge deployment holds keys.'),
      h('li', {}, org.outage_grace_ms
        ? [`If your KMS is unreachable (an outage, not a refusal), cached keys serve up to `,
          h('strong', {}, duration(org.outage_grace_ms)), ' longer. A refusal is never graced.']
        : 'An unreachable KMS gets no grace: cached keys end at their time.')),
    // Drawn aside and swapped in whole: a read that fails leaves the section as it was.
    boundsForm(org, session, async () => {
      const next = h('div', {});
      await render(next, ctx);
      section.replaceChildren(...next.childNodes);
    }),
    h('h3', {}, 'Key health'),
    byok.length
      ? h('ul', { id: 'health' }, byok.map((k) => h('li', {},
        h('strong', {}, k.name), ` (${k.id}, ${k.state}): `,
        health(k), ` · last check ${when(k.health_at, 'not yet')}`)))
      : h('p', {}, 'No key of yours yet. ', h('a', { href: '#add-key' }, 'Add one'), '.'),
  );
}

/** A key's health in words: `ok`, or what failed. */
export function health(k) {
  if (k.outage_grace) return h('span', { class: 'warning' }, `KMS unreachable: serving cached keys until ${when(k.outage_grace.grace_until)}`);
  if (!k.health) return h('span', {}, 'not checked yet');
  if (k.health === 'ok') return h('span', { class: 'ok' }, 'healthy');
  return h('span', { class: 'error' }, `${k.health}${k.health_detail ? `: ${k.health_detail}` : ''}`);
}

/** Shortens (or loosens back) the unwrap cache TTL and the lease TTL, in seconds, up to the
 * ceilings the operator created the org with. `redraw` shows the overview as it is then. */
function boundsForm(org, session, redraw) {
  const field = (id, ms, max) => h('input', {
    id, type: 'number', inputmode: 'numeric', min: 0, max: Math.floor(max / 1000), step: 1,
    value: Math.floor(ms / 1000), required: true, 'aria-describedby': `${id}-max`,
  });
  const cache = field('ttl-cache', org.unwrap_cache_ttl_ms, org.max_unwrap_cache_ttl_ms);
  const lease = field('ttl-lease', org.lease_ttl_ms, org.max_lease_ttl_ms);
  const msgs = { cache: fieldMessage(cache), lease: fieldMessage(lease) };
  const live = h('div', { id: 'bounds-live', role: 'status', 'aria-live': 'polite' });
  const seconds = (input, msg, max) => {
    const v = input.value.trim();
    if (!/^\d+$/.test(v)) {
      msg.show('Whole seconds, 0 or more.');
      return null;
    }
    const ms = Number(v) * 1000;
    if (ms > max) {
      msg.show(`At most ${Math.floor(max / 1000)} s: the most your operator allows.`);
      return null;
    }
    return ms;
  };
  return h('form', { id: 'bounds-form', novalidate: true, on: { submit: async (e) => {
    e.preventDefault();
    msgs.cache.clear();
    msgs.lease.clear();
    live.textContent = '';
    const c = seconds(cache, msgs.cache, org.max_unwrap_cache_ttl_ms);
    const l = seconds(lease, msgs.lease, org.max_lease_ttl_ms);
    if (c == null || l == null) {
      (c == null ? cache : lease).focus();
      return;
    }
    try {
      await session.call('PATCH', session.org(), { unwrap_cache_ttl_ms: c, lease_ttl_ms: l });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
      live.className = 'error';
      live.textContent = err instanceof ApiError ? err.text : String(err);
      return;
    }
    try {
      await redraw();
    } catch (err) {
      if (err instanceof ApiError && err.code === 'unauthenticated') throw err;
      live.className = 'error';
      live.textContent = `Saved, but the overview could not be read again: ${err instanceof ApiError ? err.text : err}`;
      return;
    }
    document.querySelector('#bounds-form button[type="submit"]')?.focus();
    document.getElementById('bounds-live').textContent =
      `Saved: the server's unwrap cache now keeps keys ${duration(c)}; ` +
      (l ? `new leases last ${duration(l)}.` : 'no new lease is issued.') +
      ' Leases already issued keep their end.';
  } } },
  h('h3', {}, 'Shorten the bounds'),
  h('p', {}, 'Lower is stricter: 0 s asks your KMS on every use and issues no edge leases. ' +
    'Your operator set the most each may be.'),
  h('label', { for: 'ttl-cache' }, 'Unwrap cache (seconds)'), cache,
  h('p', { class: 'hint', id: 'ttl-cache-max' }, `At most ${duration(org.max_unwrap_cache_ttl_ms)}.`), msgs.cache.el,
  h('label', { for: 'ttl-lease' }, 'Edge lease (seconds)'), lease,
  h('p', { class: 'hint', id: 'ttl-lease-max' }, `At most ${duration(org.max_lease_ttl_ms)}.`), msgs.lease.el,
  h('p', {}, h('button', { type: 'submit' }, 'Save the bounds')), live);
}
