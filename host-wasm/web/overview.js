// The encryption overview: managed or the customer's own key, whether the vendor could decrypt
// without the customer's KMS, each key's health, and how long access lasts after a withdrawal
// (the unwrap cache TTL, the lease TTL, the outage grace) in words.
import { duration, h, when } from './dom.js';

export async function render(section, { session }) {
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
      h('dt', {}, 'Scopes'), h('dd', {}, String(org.scopes))),
    h('h3', {}, 'How long access lasts after you withdraw'),
    h('ul', { id: 'bounds' },
      h('li', {}, `Disable your key or remove byok's grant: the server stops reading your data within `,
        h('strong', {}, duration(org.unwrap_cache_ttl_ms)), ' (its unwrap cache).'),
      h('li', {}, 'Pause or revoke a scope, or revoke a token: at once on the server; edge ' +
        'deployments holding a lease stop within ', h('strong', {}, duration(org.lease_ttl_ms)),
        ' (the lease).'),
      h('li', {}, org.outage_grace_ms
        ? [`If your KMS is unreachable (an outage, not a refusal), cached keys serve up to `,
          h('strong', {}, duration(org.outage_grace_ms)), ' longer. A refusal is never graced.']
        : 'An unreachable KMS gets no grace: cached keys end at their time.')),
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
