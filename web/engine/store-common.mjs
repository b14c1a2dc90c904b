// store-common.mjs - what the StreamWeightManager (weights.mjs) and its cache
// stores (store-fs.mjs, store-opfs.mjs, store-cache.mjs) share: the error
// classes and the file name of a model's record.

import { Sha256 } from './sha256.mjs';

// Every error of the manager is a WeightError; `code` says which kind.
export class WeightError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}
// The server answered with an error status (status: the HTTP status).
export class HttpError extends WeightError {
  constructor(message, status, options) {
    super(message, options);
    this.status = status;
  }
}
// The network failed (connection refused or reset, stalled) after the retries.
export class NetworkError extends WeightError {}
// A shard's bytes did not have the manifest's SHA-256 (or size), after refetching.
export class IntegrityError extends WeightError {}
// The manifest is malformed, or does not fit what the engine read.
export class ManifestError extends WeightError {}
// Storage is full: needed (bytes still to store) and available (bytes the
// store may still take), when known.
export class QuotaError extends WeightError {
  constructor(message, { needed = null, available = null, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.needed = needed;
    this.available = available;
  }
}
// load() was aborted through its signal.
export class AbortError extends WeightError {}

// The file name of a model's record: ids are URLs, so a hash of the id.
export function storeRecordName(id) {
  return `${new Sha256().update(new TextEncoder().encode(id)).digestHex().slice(0, 32)}.json`;
}

// Store keys of shards: the SHA-256 hex of the shard, or "u" + a hash of a
// URL's identity for files without a published hash (plain .gguf URLs).
export const KEY_PATTERN = /^[0-9a-z]{1,80}$/;
