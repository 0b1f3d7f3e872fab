// The lease client every edge shares: it fetches a lease on one scope from `byok serve`, keeps
// it in memory only, renews it when half of the life it arrived with has passed, and stops using
// the keys as soon as a renewal is refused (scope paused or revoked, token revoked) or the lease
// ends unrenewed. So a withdrawal on the server reaches the edge within one lease TTL. After a
// refusal it asks again no sooner than `Lease.refusalRetryMs()` later, so that a resume heals
// it without a redeploy. These are core's rules (byok_core::lease::holder), read from the
// module, the same as the wasi:http component runs.
//
//   import init, { Lease } from './byok_wasm.js';
//   import { LeaseClient } from './lease_client.js';
//   await init(...);
//   const client = new LeaseClient({ Lease, server, org, scope, token });
//   const ct = await client.encrypt(bytes, { tenant: 'acme' });
//
// Errors are `ByokError`s with the server's code in `code` (`scope_paused`, `lease_expired`,
// `unauthenticated`, ...), whether the server or the wasm module raised them.

export class ByokError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ByokError';
    this.code = code;
  }
}

/** The body of a lease answer as text, refused once it is over `max` bytes (core's limit,
 * `Lease.maxDocumentLen()`): by its declared length before any of it is read, else as it
 * arrives. A broken or hostile answer cannot fill the isolate's memory, or the module's with
 * the copy `fromJson` makes. The byte buffers (they hold the lease's keys) are wiped once
 * decoded; the text cannot be, and is dropped by the caller at once. */
async function boundedText(answer, max) {
  const tooLarge = (n) => new ByokError('invalid_request',
    `the lease answer is ${n} bytes or more, over the ${max} a lease can be; is the URL byok's lease endpoint?`);
  const declared = Number(answer.headers.get('content-length') ?? 0);
  if (declared > max) {
    answer.body?.cancel().catch(() => {});
    throw tooLarge(declared);
  }
  if (!answer.body) return '';
  const reader = answer.body.getReader();
  const parts = [];
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      n += value.length;
      if (n > max) {
        reader.cancel().catch(() => {});
        throw tooLarge(n);
      }
    }
    const all = new Uint8Array(n);
    parts.reduce((at, p) => { all.set(p, at); return at + p.length; }, 0);
    try {
      return new TextDecoder().decode(all);
    } finally {
      all.fill(0);
    }
  } finally {
    for (const p of parts) p.fill(0);
  }
}

/** Whether WebCrypto's AES-GCM is there (browsers, Workers, Deno, Node 20). */
export const hasWebCrypto = () => typeof globalThis.crypto?.subtle?.encrypt === 'function';

/** Plaintexts from this size up go through WebCrypto when it is there: below it, importing a
 * key per message costs more than AES in wasm (Node 20 crosses over between 8 and 16 KiB;
 * BENCHMARKS.md). */
export const WEBCRYPTO_FROM = 16384;

async function aesKey(step, use) {
  try {
    return await crypto.subtle.importKey('raw', step.key, { name: 'AES-GCM' }, false, [use]);
  } finally {
    step.key.fill(0);
  }
}

/** The format's header length: the first bytes of a ciphertext, and of the AES additional data. */
const HEADER_LEN = 92;

/** `lease.sealStep`'s `{header, key, iv, aad}` as views of the one array `sealStepBytes`
 * returns (`key | iv | aad`, the aad starting with the header): one crossing out of wasm. */
function sealStep(lease, plaintext, context) {
  // Measured (and refused unless bytes) in wasm by the engine's accessors, as WebCrypto reads it.
  const p = lease.sealStepBytes(plaintext, context);
  return { key: p.subarray(0, 32), iv: p.subarray(32, 44), aad: p.subarray(44),
    header: p.subarray(44, 44 + HEADER_LEN) };
}

/** Seals with `lease` as `lease.encrypt` does, with AES-GCM in WebCrypto, as two parts: the
 * ciphertext is `header` then `body`, byte for byte. No copy of the body is made: hand both
 * to whatever takes a sequence (a `ReadableStream`, `new Blob([header, body])`, two writes). */
export async function sealPartsWithWebCrypto(lease, plaintext, context) {
  const step = sealStep(lease, plaintext, context);
  const key = await aesKey(step, 'encrypt');
  const body = new Uint8Array(await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: step.iv, additionalData: step.aad, tagLength: 128 }, key, plaintext));
  return { header: step.header, body };
}

/** Seals with `lease` as `lease.encrypt` does, byte for byte, with AES-GCM in WebCrypto. Joining
 * header and body copies the body once (in Chromium that copy costs about as much as the AES
 * of a 64 KiB message: BENCHMARKS.md); `sealPartsWithWebCrypto` avoids it. */
export async function sealWithWebCrypto(lease, plaintext, context) {
  const step = sealStep(lease, plaintext, context);
  const key = await aesKey(step, 'encrypt');
  const sealed = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: step.iv, additionalData: step.aad, tagLength: 128 }, key, plaintext);
  const h = step.header.length;
  const n = sealed.byteLength;
  if (typeof sealed.transfer === 'function') {
    // Grow WebCrypto's own buffer (the allocator may extend it in place) and move the body
    // up within it, instead of a fresh allocation and a copy across.
    const out = new Uint8Array(sealed.transfer(n + h));
    out.copyWithin(h, 0, n);
    out.set(step.header, 0);
    return out;
  }
  const out = new Uint8Array(h + n);
  out.set(step.header);
  out.set(new Uint8Array(sealed), h);
  return out;
}

/** Opens with `lease` as `lease.decrypt` does (same checks, same codes), with AES-GCM in
 * WebCrypto. */
export async function openWithWebCrypto(lease, ciphertext, context) {
  const step = lease.openStep(ciphertext, context);
  // Text was decoded in wasm (`step.body`); bytes are viewed in place, never copied. A view
  // that cannot be made (not a typed array) must not leave the message key unwiped.
  let body;
  try {
    body = step.body ?? ciphertext.subarray(step.header.length);
  } catch (e) {
    step.key.fill(0);
    throw e;
  }
  const key = await aesKey(step, 'decrypt');
  try {
    return new Uint8Array(await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: step.iv, additionalData: step.aad, tagLength: 128 }, key, body));
  } catch {
    throw new ByokError('decrypt_failed',
      'decryption failed: wrong key or encryption context, or the ciphertext was modified');
  }
}

/** A TransformStream over a wasm StreamSealer or StreamOpener, open in `streams` (its
 * client's): its keys (a copy of the lease's) are wiped when the stream ends, fails or is
 * cancelled, and when the client's renewal is refused, after which it fails with that refusal.
 * Also when the lease it was opened on expires (in `msLeft` ms), used or not:
 * a stream abandoned by its caller (a request aborted mid-pipe, in a runtime whose transform
 * streams have no `cancel`) would otherwise keep its keys while the client renews. */
function transform(inner, streams, msLeft) {
  let freed = false;
  let ended = null;
  let timer;
  const free = () => {
    if (!freed) { freed = true; clearTimeout(timer); streams.delete(open); freeQuietly(inner); }
  };
  const open = { end(err) { ended = err; free(); } };
  streams.add(open);
  timer = setTimeout(() => open.end(expiredError()), Math.max(0, msLeft) + 5);
  timer?.unref?.();
  const rethrow = (e) => { free(); throw e; };
  return new TransformStream({
    transform(chunk, controller) {
      if (ended) throw ended;
      let out;
      try { out = inner.push(chunk); } catch (e) { rethrow(e); }
      if (out.length) controller.enqueue(out);
    },
    flush(controller) {
      if (ended) throw ended;
      let out;
      try { out = inner.finish(); } catch (e) { rethrow(e); }
      free();
      if (out.length) controller.enqueue(out);
    },
    cancel: free,
  });
}

/** Frees a wasm object (wiping its keys). A second free, or one the module refuses, must not
 * stop what called it (a refusal ending every stream): nothing more can be done from JS then. */
function freeQuietly(object) {
  try { object.free(); } catch { /* already freed */ }
}

const expiredError = () => new ByokError('lease_expired', 'the lease expired and could not be renewed');

/** An abort signal after `ms`, where the runtime has `AbortSignal.timeout`. */
const timeout = (ms) => (typeof AbortSignal?.timeout === 'function' ? AbortSignal.timeout(ms) : undefined);

export class LeaseClient {
  /**
   * @param {object} o
   * @param {typeof import('./byok_wasm.js').Lease} o.Lease the wasm module's Lease class
   * @param {string} o.server byok's base URL
   * @param {string} o.org the org id
   * @param {string} o.scope the scope to lease (not the org scope)
   * @param {string} o.token a service token of the org
   * @param {string} [o.audience] who the leases are for (this edge deployment), logged with each
   * @param {typeof fetch} [o.fetch] the fetch to use (default: the global one, called unbound as
   *   Workers require)
   * @param {() => number} [o.now] the clock, ms since the epoch (default: the module's,
   *   `Lease.now`, by which leases expire: `Date.now()` kept from running back)
   * @param {number} [o.timeoutMs] how long a lease request may take, answer included, before it
   *   counts as byok unreachable (default 10 s)
   * @param {boolean} [o.allowPlainHttp] allow an `http://` server on any host (a private network
   *   known by name); without it `http://` reaches only loopback and private addresses, since
   *   the token and the scope's keys would cross in cleartext
   */
  constructor({ Lease, server, org, scope, token, audience, fetch = (...a) => globalThis.fetch(...a), now = () => Lease.now(), timeoutMs = 10_000, allowPlainHttp = false }) {
    // Core's rules, as the wasi component applies them: `not_configured` for a setting unset,
    // a server URL that would carry the token in cleartext, or an org or scope not an id.
    this.url = Lease.leaseUrl(server, allowPlainHttp, org, scope);
    if (typeof token !== 'string' || token === '') {
      throw new ByokError('not_configured', 'the service token is not set');
    }
    this.Lease = Lease;
    this.scope = scope;
    this.token = token;
    this.body = JSON.stringify(audience === undefined ? {} : { audience });
    this.fetch = fetch;
    this.now = now;
    this.timeoutMs = timeoutMs;
    this.current = null; // { lease, renewAt }
    this.refused = null; // { err, retryAt }: the refusal standing, and when to ask again
    this.inflight = null; // the lease request in flight, shared by every caller
    this.streams = new Set(); // the streams open, each with its own key
    this.expiryTimer = undefined; // wipes the lease when it expires unused (`armExpiry`)
    this.lapsed = null; // the lease_expired error of a lease that timer wiped, until a new one
    this.asks = 0; // lease requests started, numbered
    this.endedAt = 0; // the number of the last request started before the last refusal
  }

  /** Asks the server for a lease; a refusal drops the lease held at once. Calls made while a
   * request is in flight share it: a burst of messages (or the renewal point reached by many
   * at once) costs byok one lease request, not one per message. */
  renew() {
    if (!this.inflight) {
      const asking = this.ask().finally(() => { if (this.inflight === asking) this.inflight = null; });
      this.inflight = asking;
    }
    const shared = this.inflight;
    // Each caller waits at most a little over the request's own deadline. A runtime may tie
    // the request to the I/O of the caller that started it (a Worker's request, cancelled when
    // its client goes): then it may never settle, and without this every caller after would
    // wait on it for good.
    let timer;
    const bounded = new Promise((_, reject) => {
      timer = setTimeout(() => {
        if (this.inflight === shared) this.inflight = null;
        reject(new ByokError('unreachable', `byok did not answer the lease request within ${this.timeoutMs} ms`));
      }, this.timeoutMs + 1000);
      timer?.unref?.();
    });
    return Promise.race([shared, bounded]).finally(() => clearTimeout(timer));
  }

  async ask() {
    // Bounded, answer included: a server that stalls must hold neither the callers waiting on
    // this renewal nor, past its end, the lease's keys for longer than this.
    const signal = timeout(this.timeoutMs);
    const unreachable = (e) => new ByokError('unreachable', `cannot reach byok: ${e.message}`);
    // The lease's life is counted from when it was asked for: an answer slow to come cannot
    // stretch it.
    const asked = this.now();
    const number = ++this.asks;
    let answer;
    try {
      answer = await this.fetch(this.url, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
        body: this.body,
        signal,
        // A redirect is not followed: it could lead the token, and the keys answered, to a
        // plain-HTTP or other host (the CLI and the wasi component refuse them too). 'manual',
        // as workerd takes no 'error': the redirect comes back as an answer, refused below.
        redirect: 'manual',
      });
    } catch (e) {
      // The server is unreachable: the lease held stays usable until it expires.
      throw unreachable(e);
    }
    if (answer.type === 'opaqueredirect' || (answer.status >= 300 && answer.status < 400) || answer.status === 0) {
      // Not byok's answer, nor its refusal: as if byok could not be reached, so the lease held
      // serves on until it expires.
      throw new ByokError('unreachable', `byok's lease answer is a redirect (${answer.status}), which is not followed`);
    }
    if (!answer.ok) {
      // Decided by the status, before the body is read: a refusal is the server saying no, so
      // the keys go now, however long its body takes to come (or if it never does). A 429 or
      // 5xx is not a refusal of the grant; the lease held lasts until it expires.
      // Named by its status until its body (if byok's) names it: a proxy's 503 is an outage.
      const code = this.Lease.answerCode(answer.status);
      const err = new ByokError(code, this.Lease.answerMessage(answer.status, code));
      if (this.Lease.isRefusal(answer.status)) this.end(err);
      // The body then names the refusal: the streams ended above hold this same error.
      // Bounded as a lease is: an error answer of gigabytes must not fill the isolate.
      const text = await boundedText(answer, this.Lease.maxDocumentLen()).catch(() => '');
      let body = {};
      try { body = JSON.parse(text); } catch { /* not JSON */ }
      // byok refusing this edge's own token is `edge_token_refused`, not the caller's 401.
      const said = (v) => (typeof v === 'string' ? v : undefined);
      err.code = this.Lease.answerCode(answer.status, said(body?.error?.code));
      err.message = this.Lease.answerMessage(answer.status, err.code, said(body?.error?.message));
      throw err;
    }
    // An answer that is no lease (too large, not a lease document, another scope's) is not the
    // caller's fault, nor a refusal: as if byok could not be reached, so the lease held (if
    // any) serves on until it expires, and the caller is told to retry (503), as the wasi
    // component tells it.
    const unusable = (why) => new ByokError('unreachable', `byok's lease answer is not usable: ${why}`);
    let text;
    try {
      text = await boundedText(answer, this.Lease.maxDocumentLen());
    } catch (e) {
      if (e instanceof ByokError) throw unusable(e.message);
      throw unreachable(e);
    }
    const received = asked;
    let lease;
    try {
      lease = this.Lease.fromJson(text, received);
    } catch (e) {
      throw unusable(e.message);
    }
    const scope = lease.scope;
    if (scope !== this.scope.toLowerCase()) {
      // Another scope's keys (a proxy that mixed answers up, a server bug): data sealed with
      // them would sit under a scope whose pause or revoke this edge's owner does not watch.
      freeQuietly(lease);
      throw unusable(`the lease is for scope ${scope}, not ${this.scope}`);
    }
    if (number !== this.asks || number <= this.endedAt) {
      // A request given up on (its deadline passed, and a newer one was made) answered after
      // all: a refusal or a newer lease came meanwhile and stands; this older answer must not
      // bring keys back.
      freeQuietly(lease);
      throw unusable('a newer lease request or a refusal replaced this answer');
    }
    this.drop();
    this.refused = null;
    this.current = { lease, renewAt: lease.renewAt(received) };
    this.lapsed = null;
    this.armExpiry();
    return lease;
  }

  /** Wipes the lease, and ends the streams open on it, when it expires, also if nothing uses
   * the client then (an idle isolate would otherwise keep the keys until its next call). Best
   * effort: a runtime that suspends idle timers wipes at the next use instead. The timer never
   * keeps a Node process alive. */
  armExpiry() {
    clearTimeout(this.expiryTimer);
    const c = this.current;
    if (!c) return;
    const wait = Math.max(0, this.msLeft(c.lease)) + 5;
    this.expiryTimer = setTimeout(() => {
      if (this.current !== c) return;
      let live = false;
      // A lease freed behind the client's back throws here: take it as ended (a throw from a
      // timer would end a Node process).
      try { live = !c.lease.expired; } catch { /* freed */ }
      if (live) { this.armExpiry(); return; }
      const err = expiredError();
      this.drop();
      this.endStreams(err);
      this.lapsed = err;
    }, wait);
    this.expiryTimer?.unref?.();
  }

  /** How long `lease` has left, by the module's clock (which decides `expired`). */
  msLeft(lease) {
    return lease.expiresAt - this.Lease.now();
  }

  /** A live lease: the one held, renewed first when due. */
  async lease() {
    if (this.refused) {
      if (this.now() < this.refused.retryAt) throw this.refused.err;
      try {
        return await this.renew();
      } catch (e) {
        // Still refused, or byok is away: the refusal stands either way.
        if (this.refused) this.refused.retryAt = this.now() + this.Lease.refusalRetryMs();
        throw this.refused?.err ?? e;
      }
    }
    const c = this.current;
    if (c === null) {
      try {
        return await this.renew();
      } catch (e) {
        // The lease held expired unused (and was wiped then): as if found expired now.
        throw (this.lapsed && !this.refused) ? this.lapsed : e;
      }
    }
    if (this.now() >= c.renewAt) {
      try {
        return await this.renew();
      } catch (e) {
        if (this.refused) throw e;
        // Not a refusal (unreachable, busy): keep the held lease while it lives.
      }
      // The renewal may have outlasted the lease: its expiry timer wiped it meanwhile.
      if (this.current !== c) throw this.lapsed ?? expiredError();
    }
    if (c.lease.expired) {
      // Every stream open on it (or on an earlier lease) has ended too: their keys go now.
      const err = expiredError();
      this.drop();
      this.endStreams(err);
      throw err;
    }
    return c.lease;
  }

  /** Encrypts `plaintext` (Uint8Array) with `context`: the binary ciphertext. Large ones go
   * through WebCrypto where it exists; the bytes are the same either way. */
  async encrypt(plaintext, context) {
    const lease = await this.lease();
    // The length only picks the path; each checks the value is bytes before it is read.
    return plaintext?.length >= WEBCRYPTO_FROM && hasWebCrypto()
      ? sealWithWebCrypto(lease, plaintext, context)
      : lease.encrypt(plaintext, context);
  }

  /** Decrypts `ciphertext` (Uint8Array or `byok:v1:` text) with `context`. */
  async decrypt(ciphertext, context) {
    const lease = await this.lease();
    return ciphertext?.length >= WEBCRYPTO_FROM && hasWebCrypto() && typeof ciphertext !== 'string'
      ? openWithWebCrypto(lease, ciphertext, context)
      : lease.decrypt(ciphertext, context);
  }

  /** A `TransformStream` that encrypts the bytes piped through it with `context`, in the
   * framed format (constant memory, any length; opens on the server and with `byok decrypt`).
   * It uses the lease live now, and fails with `lease_expired` if the stream outlasts it. */
  async encryptStream(context) {
    const lease = await this.lease();
    return transform(lease.sealStream(context), this.streams, this.msLeft(lease));
  }

  /** A `TransformStream` that decrypts a framed ciphertext piped through it: each frame's
   * plaintext comes out only after its tag verified, and a stream cut short errors at the end. */
  async decryptStream(context) {
    const lease = await this.lease();
    return transform(lease.openStream(context), this.streams, this.msLeft(lease));
  }

  /** Forgets the lease held (its keys are wiped in the wasm module). */
  drop() {
    const c = this.current;
    this.current = null;
    clearTimeout(this.expiryTimer);
    if (c) freeQuietly(c.lease);
  }

  /** Ends every open stream with `err`, wiping its keys. */
  endStreams(err) {
    for (const open of [...this.streams]) open.end(err);
  }

  /** A refusal: the lease held is wiped now, with every open stream's copy of its keys (the
   * stream then fails with `err`), and every use fails with `err` until a renewal (no sooner
   * than `Lease.refusalRetryMs()` from now) succeeds. */
  end(err) {
    // Every request started so far answers too late to undo this (`ask`).
    this.endedAt = this.asks;
    this.refused = { err, retryAt: this.now() + this.Lease.refusalRetryMs() };
    this.drop();
    this.endStreams(err);
  }
}
