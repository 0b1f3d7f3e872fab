// A Cloudflare Worker that encrypts and decrypts request bodies at the edge with a byok lease:
// no round trip to byok per message, and a pause or revoke on byok stops it within one lease
// TTL. `POST /encrypt?k=v...` answers the binary ciphertext of the body under the context
// given as query parameters; `POST /decrypt?k=v...` the plaintext. Errors are JSON with the
// server's code: `{"error": {"code": "scope_paused", "message": "..."}}`.
//
// Whoever it serves decrypts the scope's ciphertexts, so it serves no one until told how its
// callers are checked (CallerGate, the wasi component's code): BYOK_EDGE_CALLER_TOKEN, a
// secret of 32+ characters its callers send as `Authorization: Bearer <token>`, or
// BYOK_EDGE_CALLERS=upstream when Cloudflare Access or a service binding checks them. With
// neither, every request is `501 not_configured` (docs/edge.md).
//
// Bindings (see config.capnp): BYOK_SERVER, BYOK_ORG, BYOK_SCOPE, BYOK_TOKEN (a service
// token; a secret binding in production), BYOK_AUDIENCE (this deployment's name),
// BYOK_EDGE_CALLER_TOKEN (a secret binding) or BYOK_EDGE_CALLERS, BYOK_EDGE_CALLER_TOKEN_NEXT
// (the token callers move to while the caller token is rotated: both are let in), and
// BYOK_ALLOW_PLAIN_HTTP=1 only for an http:// server on a private network known by name.
import { initSync, CallerGate, Lease } from './pkg/byok_wasm.js';
import { LeaseClient } from './pkg/lease_client.js';
import wasm from './pkg/byok_wasm_bg.wasm';

initSync({ module: wasm });

// One client per isolate: the lease lives in this isolate's memory only.
let client = null;
let gate = null;

// An error thrown by byok's code as the JSON answer, with core's status for its code (and,
// for a 401, core's WWW-Authenticate challenge).
function refusal(e) {
  const code = e.code ?? 'internal';
  const status = Lease.edgeStatus(code);
  const challenge = Lease.wwwAuthenticate(status);
  const headers = challenge ? { 'www-authenticate': challenge } : {};
  return Response.json({ error: { code, message: e.message } }, { status, headers });
}


export default {
  async fetch(request, env) {
    try {
      // The caller first: an unknown one learns nothing and makes no lease request.
      gate ??= new CallerGate(env.BYOK_EDGE_CALLER_TOKEN, env.BYOK_EDGE_CALLERS,
        env.BYOK_EDGE_CALLER_TOKEN_NEXT);
      gate.admit(request.headers.get('authorization'));
      client ??= new LeaseClient({
        Lease, server: env.BYOK_SERVER, org: env.BYOK_ORG, scope: env.BYOK_SCOPE,
        token: env.BYOK_TOKEN, audience: env.BYOK_AUDIENCE,
        allowPlainHttp: env.BYOK_ALLOW_PLAIN_HTTP === '1',
      });
    } catch (e) {
      // An unknown caller (`unauthenticated`), or a setting missing or refused (no caller
      // check, plain HTTP to a public host): `not_configured`.
      return refusal(e);
    }
    const url = new URL(request.url);
    if (request.method !== 'POST') return new Response('POST only\n', { status: 405 });
    // A name given twice is refused, as the server and the wasi component refuse it:
    // `Object.fromEntries` would keep the last value, `searchParams.get` the first.
    // No prototype: `__proto__` is a context key like any other here, not a setter that
    // drops it (which would seal with less context than the caller asked for).
    const context = Object.create(null);
    for (const [k, v] of url.searchParams) {
      if (Object.hasOwn(context, k)) {
        const message = `context key ${JSON.stringify(k)} is given twice; give each key once`;
        return Response.json({ error: { code: 'invalid_request', message } }, { status: 400 });
      }
      context[k] = v;
    }
    const body = new Uint8Array(await request.arrayBuffer());
    try {
      if (url.pathname === '/encrypt') return new Response(await client.encrypt(body, context));
      if (url.pathname === '/decrypt') return new Response(await client.decrypt(body, context));
      return new Response('not found\n', { status: 404 });
    } catch (e) {
      // The status for the code is core's (`ApiCode::edge_status`), as the wasi:http component's.
      return refusal(e);
    }
  },
};
