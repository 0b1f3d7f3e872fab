// Types of lease_client.js (hand-written: wasm-bindgen types the wasm module only).
import type { Lease } from './byok_wasm.js';

/** An error with the server's API code (`scope_paused`, `lease_expired`, `unreachable`, ...). */
export class ByokError extends Error {
  constructor(code: string, message: string);
  readonly name: 'ByokError';
  readonly code: string;
}

/** Whether WebCrypto's AES-GCM is there. */
export function hasWebCrypto(): boolean;
/** Plaintexts from this size up go through WebCrypto when it is there. */
export const WEBCRYPTO_FROM: number;
/** Seals as `lease.encrypt` does, byte for byte, with AES-GCM in WebCrypto. */
export function sealWithWebCrypto(lease: Lease, plaintext: Uint8Array,
  context?: Record<string, string>): Promise<Uint8Array>;
/** The same ciphertext as two parts, `header` then `body`, with no copy of the body. */
export function sealPartsWithWebCrypto(lease: Lease, plaintext: Uint8Array,
  context?: Record<string, string>): Promise<{ header: Uint8Array; body: Uint8Array }>;
/** Opens as `lease.decrypt` does (same checks, same codes), with AES-GCM in WebCrypto. */
export function openWithWebCrypto(lease: Lease, ciphertext: Uint8Array | string,
  context?: Record<string, string>): Promise<Uint8Array>;

export interface LeaseClientOptions {
  /** The wasm module's `Lease` class. */
  Lease: typeof Lease;
  /** byok's base URL. */
  server: string;
  /** The org id. */
  org: string;
  /** The scope to lease (not the org scope). */
  scope: string;
  /** A service token of the org. */
  token: string;
  /** Who the leases are for (this edge deployment), logged with each. */
  audience?: string;
  /** The fetch to use (default: the global one, called unbound). */
  fetch?: typeof fetch;
  /** The clock, ms since the epoch (default: the module's, `Lease.now`, by which leases expire). */
  now?: () => number;
  /** Allow an `http://` server on any host (a private network known by name); without it
   * `http://` reaches only loopback and private addresses. */
  allowPlainHttp?: boolean;
  /** How long a lease request may take, answer included, before it counts as byok unreachable
   * (default 10 000 ms). */
  timeoutMs?: number;
}

/** Holds one scope's lease in memory, renews it at half-life, stops at once when a renewal is
 * refused, and asks again `Lease.refusalRetryMs()` after a refusal. */
export class LeaseClient {
  constructor(options: LeaseClientOptions);
  /** Asks for a lease now; a refusal wipes the lease held at once. */
  renew(): Promise<Lease>;
  /** A live lease: the one held, renewed first when due. */
  lease(): Promise<Lease>;
  /** Encrypts with `context`: the binary ciphertext. */
  encrypt(plaintext: Uint8Array, context?: Record<string, string>): Promise<Uint8Array>;
  /** A TransformStream encrypting what is piped through it (framed format, any length). */
  encryptStream(context?: Record<string, string>): Promise<TransformStream<Uint8Array, Uint8Array>>;
  /** A TransformStream decrypting a framed ciphertext; each frame verified before it is output. */
  decryptStream(context?: Record<string, string>): Promise<TransformStream<Uint8Array, Uint8Array>>;
  /** Decrypts bytes or `byok:v1:` text with `context`. */
  decrypt(ciphertext: Uint8Array | string, context?: Record<string, string>): Promise<Uint8Array>;
  /** Forgets the lease held (its keys are wiped). */
  drop(): void;
}
