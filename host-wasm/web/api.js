// The page's one way to the server: same origin only (the CSP allows nothing else), the
// admin's token in memory only, and every refusal thrown as an `ApiError` with the server's
// code, so that each screen can show it beside the field it concerns.

/** A refusal from the server: its `code` (`invalid_request`, `key_validation_failed`, ...),
 * message, HTTP status, details (a validation report) and request id. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = body?.error ?? {};
    super(e.message ?? `the server answered ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = e.code ?? (status === 0 ? 'unreachable' : 'unexpected_answer');
    this.details = e.details ?? null;
    this.requestId = e.request_id ?? null;
  }

  /** `message (code)`: what the page shows. */
  get text() {
    return `${this.message} (${this.code})`;
  }
}

/** A session: one org admin's token, held by this object only. Nothing of it is written to
 * storage or cookies; closing or reloading the tab ends it. */
export class Session {
  #token;
  /** Set while a claim revokes the held token: refusals of calls still sent with it then do
   * not sign the page out (it would lose the new token, shown once). */
  #replacing = false;

  constructor(token) {
    this.#token = token;
    /** Filled by `signIn`: `{ org, role, token_id, name }`. */
    this.who = null;
    /** Called once when a call is refused as unauthenticated (the token revoked or expired),
     * wherever the call was made: a button's handler as much as a section loading. */
    this.onRefused = null;
  }

  /** Checks the token (`GET /v1/whoami`). Only an org admin token may use the page. */
  async signIn() {
    const who = await this.call('GET', '/v1/whoami');
    if (who.role !== 'admin' || !who.org) {
      throw new ApiError(403, { error: {
        code: 'forbidden',
        message: `this is ${who.role === 'operator' ? 'an operator' : `a ${who.role}`} token; the page needs an org admin token`,
      } });
    }
    this.who = who;
    return who;
  }

  /** Takes `token` instead of the one held, after a claim revoked the held one: checked as at
   * sign-in, and kept only if it is an admin token of the same org. */
  async adopt(token) {
    const next = new Session(token);
    const who = await next.signIn();
    if (who.org !== this.who?.org) throw new ApiError(403, { error: { code: 'forbidden', message: 'the new token is of another org' } });
    this.#token = token;
    this.who = who;
    return who;
  }

  /** Claims the org (`POST path`): every admin token is revoked, the held one included, and
   * the answer holds the new one, taken at once (then checked with `adopt`). Calls in flight
   * with the held token are refused meanwhile; those refusals do not sign out. A refusal of
   * the claim itself does, as any other. */
  async claim(path) {
    // One at a time: a second claim would go with the token the first revokes, and its 401
    // would sign the page out, losing the new token the first one brings.
    if (this.#replacing) throw new Error('a claim is already on its way');
    this.#replacing = true;
    let t;
    try {
      t = await this.call('POST', path, {});
    } catch (err) {
      this.#replacing = false;
      if (err instanceof ApiError && err.status === 401) this.refused(err);
      throw err;
    }
    this.#replacing = false;
    // An answer without a token (a proxy's page) is no claim byok answered.
    if (typeof t?.token !== 'string') throw new Error('the answer to the claim holds no token: is this byok?');
    this.#token = t.token;
    return t;
  }

  /** Signs out once: the token was refused as unauthenticated. */
  refused(error) {
    if (!this.onRefused) return;
    const refused = this.onRefused;
    this.onRefused = null;
    refused(error);
  }

  /** Forgets the token. */
  end() {
    this.#token = null;
    this.who = null;
  }

  /** `/v1/orgs/{org}` + `rest`. */
  org(rest = '') {
    return `/v1/orgs/${this.who.org}${rest}`;
  }

  /** Calls the API: the parsed JSON answer, or an `ApiError`. */
  async call(method, path, body) {
    if (!this.#token) throw new ApiError(401, { error: { code: 'unauthenticated', message: 'signed out' } });
    const sent = this.#token;
    const init = {
      method,
      headers: { authorization: `Bearer ${sent}` },
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let answer;
    try {
      answer = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { error: { code: 'unreachable', message: `the server could not be reached (${e.message})` } });
    }
    const text = await answer.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!answer.ok) {
      const error = new ApiError(answer.status, json);
      // Only the token held now signs out when refused: not one a claim is replacing, nor
      // one it has replaced already (a call sent before the switch, answered after).
      if (answer.status === 401 && sent === this.#token && !this.#replacing) this.refused(error);
      throw error;
    }
    return json;
  }
}
