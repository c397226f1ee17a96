/**
 * Redis keys of the privacy records, under the hash-tagged prefix the queues and the run history use
 * (`{sync.redis_prefix}`). None holds plaintext: identifiers are digests, customers 8-byte keys.
 */
const base = (redisPrefix: string) => `{${redisPrefix}}:privacy`;

export const privacyKeys = {
  /** Hash: suppression id → entry (JSON: keys and identifier digests in hex). */
  suppressions: (p: string) => `${base(p)}:suppressions`,
  /** Hash: suppression id → why and by whom it was lifted (no digests). */
  lifted: (p: string) => `${base(p)}:suppressions:lifted`,
  /** Hash: erasure id → request (JSON: when, by whom, which kinds of identifier). */
  erasures: (p: string) => `${base(p)}:erasures`,
  /** Hash: destination → receipt (JSON), per erasure. */
  receipts: (p: string, erasure: string) => `${base(p)}:receipts:${erasure}`,
  /** Sorted set of operator actions by time (ms). */
  audit: (p: string) => `${base(p)}:audit`,
};
