// The setup page's session (host-wasm/web/api.js) over a fetch that answers by hand: a claim
// revokes the page's own token, and the calls still in flight with it (the job banner's, every
// second) are refused; those refusals must not sign the page out, or it would lose the new
// admin token, shown once.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Session } from '../../web/api.js';

/** A fetch whose answers the test gives: each call waits until `answer(i, status, body)`. */
function handFetch() {
  const calls = [];
  const fetch = (path, init) => new Promise((resolve) => {
    calls.push({ path, token: init.headers.authorization, resolve });
  });
  const answer = (i, status, body) => calls[i].resolve({
    ok: status < 300,
    status,
    text: async () => JSON.stringify(body),
  });
  return { calls, fetch, answer };
}

const refusal = { error: { code: 'unauthenticated', message: 'revoked' } };

test('a claim keeps the page signed in through the refusals of its old token', async () => {
  const f = handFetch();
  globalThis.fetch = f.fetch;
  const session = new Session('old');
  let signedOut = 0;
  session.onRefused = () => { signedOut += 1; };
  const claim = session.claim('/v1/orgs/o/tokens/claim');
  const banner = session.call('GET', '/v1/orgs/o/job');
  assert.equal(f.calls[1].token, 'Bearer old');
  // The claim revoked the old token: the banner's call is refused while the claim answers.
  f.answer(1, 401, refusal);
  await assert.rejects(banner, { code: 'unauthenticated' });
  assert.equal(signedOut, 0, 'a claim in flight signed the page out');
  // Sent with the old token before the switch, refused after it: no sign-out either.
  const early = session.call('GET', '/v1/orgs/o/scopes');
  f.answer(0, 201, { token: 'new', id: 't2', revoked: ['t1'] });
  assert.equal((await claim).token, 'new');
  f.answer(2, 401, refusal);
  await assert.rejects(early, { code: 'unauthenticated' });
  assert.equal(signedOut, 0, 'a refusal of the replaced token signed the page out');
  // Calls now carry the new token.
  const late = session.call('GET', '/v1/orgs/o/job');
  assert.equal(f.calls[3].token, 'Bearer new');
  f.answer(3, 200, null);
  await late;
  // The token held now, refused: that signs out, once.
  const refused = session.call('GET', '/v1/orgs/o');
  f.answer(4, 401, refusal);
  await assert.rejects(refused, { code: 'unauthenticated' });
  assert.equal(signedOut, 1);
});

test('a refused claim signs out as any refusal does', async () => {
  const f = handFetch();
  globalThis.fetch = f.fetch;
  const session = new Session('old');
  let signedOut = 0;
  session.onRefused = () => { signedOut += 1; };
  const claim = session.claim('/v1/orgs/o/tokens/claim');
  f.answer(0, 401, refusal);
  await assert.rejects(claim, { code: 'unauthenticated' });
  assert.equal(signedOut, 1);
});
