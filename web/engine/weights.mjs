// weights.mjs - the StreamWeightManager: fetches a model's shards (manifest.json
// made by `streamllm split`, served by `streamllm serve` or any static host)
// or a plain .gguf URL, in parallel and resumably, verifies each shard
// (the SHA-256 of each of its blocks, or of the whole file), keeps it in a
// persistent cache (OPFS / Cache API / a directory in Node), and streams the
// bytes into the engine in bounded chunks: the whole model is never held in
// memory. The downloads run in Workers (download.mjs) where there are some.
// Plain ES module: runs in a browser Worker, a page, and Node.
//
// ---- interface -------------------------------------------------------------
//
//   import { StreamWeightManager, openStore, WeightCache } from './weights.mjs';
//
//   const wm = new StreamWeightManager({
//     url,              // manifest URL (/api/models/ID, .../manifest.json) or a plain
//                       // .gguf URL (by its extension; force with mode: 'manifest'|'gguf');
//                       // in Node also a file: URL
//     store,            // a cache store (await openStore(...)), or null: no persistence
//     fetch,            // default: fetch(), in Node node:http (file: URLs: read from disk, Node)
//     concurrency: 6,   // shards (or pieces of a large one) downloaded at once (a browser
//                       // opens at most 6 HTTP/1.1 connections per host; more would
//                       // wait, and could time out)
//     retries: 5,       // failed requests in a row (no byte received) before giving up
//     onProgress,       // (p) => {}, see below
//     modelId,          // key of the model in the cache (default: url)
//     chunkBytes,       // bytes per chunk handed to the sink / the store (256 KiB)
//     downloadWorkers,  // Workers that download, verify and store shards with block
//                       // hashes (default: cores - 1, at most concurrency; 0, a fetch
//                       // function, or a store without workerSpec(): on this thread)
//     splitBytes,       // a shard with block hashes much larger than the others is
//                       // downloaded as pieces, in parallel (null: planPieces' rule,
//                       // by the model's size and the Workers; 0: never; N: pieces
//                       // of about N bytes)
//     hashWorkers,      // shards without block hashes: Workers that compute their
//                       // SHA-256 off this thread (default: cores - 2, at most
//                       // concurrency; 0, or no SharedArrayBuffer: here)
//     stallMs, backoffMs, maxBackoffMs, integrityAttempts (3), verifyCached, gc,
//     sha256,           // plain .gguf: the file's known SHA-256 (else an ETag that is one)
//   });
//   const manifest = await wm.manifest();  // the manifest (the cached one when offline)
//   await wm.load(sink, { signal });       // headers, then every tensor's bytes
//   await wm.readTensor(name, sink);       // one tensor again, from the cache (on-demand mode)
//   await wm.readTensors(names, sink);     // several (e.g. a layer: wm.layerTensors(i))
//   wm.close();                            // closes the readers readTensor keeps open
//
//   sink (what the engine gives; engine.mjs has the CPU one):
//     header(fileIndex, bytes, fileSize) -> 0 | N   file k's first bytes, in file
//                       order: 0 accepted, N > bytes.length: give the first N bytes
//                       (the engine's model_header protocol); throw on error
//     fileCount?()   -> n      after file 0's header (plain .gguf URLs only: a split)
//     tensorTable?() -> [{ name, file, offset, bytes }]  after every header (plain
//                       .gguf URLs only; manifests carry the table)
//     begin?({ tensors })       every header given, before the first tensor byte;
//                       tensors: every tensor the manager will deliver
//     tensor(name, offset, chunk, t)  bytes [offset, offset + chunk.length) of
//                       tensor `name`; chunk is valid only until the call (or its
//                       promise) returns (the manager reuses its memory); t = { name,
//                       file, offset (in the file), bytes, type, shape }. A chunk
//                       starts and ends at the tensor's ends or at file offsets that
//                       are multiples of chunkBytes (so, GGUF tensors being 32-byte
//                       aligned, at 4-byte multiples inside the tensor), wherever a
//                       download was cut. Shards arrive `concurrency` at a time, so
//                       tensors interleave; the pieces of a large shard arrive in
//                       parallel, each in file order, so one tensor's chunks may
//                       come out of order. Chunks may arrive again (a shard that
//                       failed verification is refetched; not with block hashes,
//                       where only verified blocks reach the sink, each once);
//                       load() resolves only when every shard is verified.
//     reset?()                  start over (a header given turned out corrupted)
//     end?()
//
//   progress (at most every 100 ms, the last state always): { phase:
//     'headers'|'tensors'|'done', bytesDone, bytesTotal,
//     networkBytes, cacheBytes, speed (bytes/s), eta (s or null), offline,
//     shards: [{ file, bytes, done (bytes given to the sink), state: 'queued'|
//               'downloading'|'verifying'|'done'|'retrying'|'error',
//               source: 'network'|'cache'|null, attempts }] }
//
//   wm.counters: { networkBytes, cacheBytes, requests, retries, refetches (blocks or
//     shards fetched again), hashWorkers, downloadWorkers, splitShards (shards
//     downloaded in pieces), rereadBytes }
//   wm.offline: the manifest came from the cache (the server was unreachable)
//
//   errors (all WeightError): HttpError (status), NetworkError, IntegrityError
//     (SHA-256 mismatch of a block or shard after bounded refetches), QuotaError (needed, available),
//     ManifestError, AbortError.
//
//   cache management (WeightCache over the same store):
//     const cache = new WeightCache(store);
//     await cache.list()     -> [{ id, url, name, bytes, cachedBytes, shards, complete }]
//     await cache.usage()    -> { bytes, partialBytes, estimate: { usage, quota } | null }
//     await cache.delete(id) ; await cache.gc() ; await cache.clear() ; await cache.persist() -> bool
//
//   openStore(): OPFS in browsers (sync access handles in Workers), the Cache
//   API when OPFS is missing, null when neither; openStore({ dir }) a
//   directory in Node.
//
// ---- how a load goes ---------------------------------------------------------
// 1. The manifest (or, for a .gguf URL, the file's first bytes by Range).
// 2. Headers, in file order: each shard's first bytes (up to its first
//    tensor) come from the cache, or by a Range request whose bytes become
//    the start of the shard's partial download; the engine parses them.
// 3. Shards, `concurrency` at once: a verified shard is read from the cache.
//    A shard whose manifest lists block hashes (what `streamllm split`
//    writes) goes to a BlockLoader (download.mjs), in a download Worker when
//    there are some; one much larger than the others (planPieces) goes as
//    several pieces, runs of whole blocks, each to its own BlockLoader (and
//    Worker), all at once, writing the same partial file at their offsets
//    (where the store allows: sharedWrites()); `concurrency` counts pieces.
//    The partial download's blocks that still verify, wherever they are, are
//    replayed; only the runs of blocks between them are fetched, by Range;
//    each block is checked with the platform's SHA-256 (SubtleCrypto) before
//    it is written at its offset in the partial file and handed
//    (transferred) to this thread for the sink; a bad block is fetched
//    again alone; the partial file is renamed into place (store.commit)
//    once every block of every piece verified. Other shards (older
//    manifests, plain .gguf URLs), here: what a partial download holds is
//    replayed (hashed, handed to the sink) and the rest is fetched by Range
//    from where it stopped; every network chunk is hashed, appended to the
//    partial file and handed to the sink; at the end the SHA-256 decides:
//    the partial file is renamed into place, or discarded and the shard
//    fetched again (bounded).
// 4. The model's record (its manifest) is saved in the store, and blobs no
//    record names are deleted: a new model version keeps its unchanged shards
//    (same SHA-256, same blob) and drops the rest.

import { newSha256, Sha256, HashPool } from './sha256.mjs';
import { Fetcher, BlockLoader, DownloadPool, onAbort, coreCount, digestHex, writeFeatures } from './download.mjs';
import {
  WeightError, HttpError, NetworkError, IntegrityError, ManifestError, QuotaError, AbortError, KEY_PATTERN,
} from './store-common.mjs';

export { WeightError, HttpError, NetworkError, IntegrityError, ManifestError, QuotaError, AbortError };

const MiB = 1 << 20;
const HEADER_GUESS = MiB; // first Range of a plain .gguf: most headers fit
const HEADER_MIN = 64 * 1024; // the least header given for a shard
const MAX_MANIFEST_BYTES = 64 * MiB;
const MIN_BLOCK = 64 * 1024; // block_bytes: a power of two in [MIN_BLOCK, MAX_BLOCK] (as the C parser)
const MAX_BLOCK = 64 * MiB;

function fmtBytes(n) {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}

const isInt = (x) => Number.isSafeInteger(x) && x >= 0;

function hexOf(text) { return new Sha256().update(new TextEncoder().encode(text)).digestHex(); }

// ---- the manifest ----------------------------------------------------------------

// Checks a manifest (parsed JSON) and returns the shard list the manager
// works with; base: the manifest's URL (shard files are relative to it).
export function parseManifest(m, base) {
  const bad = (msg) => { throw new ManifestError(`manifest: ${msg}`); };
  if (!m || typeof m !== 'object' || Array.isArray(m)) bad('not a JSON object');
  if (m.format !== 'stream-llm/1') bad(`format is ${JSON.stringify(m.format)}, expected "stream-llm/1"`);
  if (!m.model || typeof m.model !== 'object') bad('no "model" object');
  if (!Array.isArray(m.shards) || m.shards.length === 0) bad('no shards');
  const baseUrl = new URL(base);
  const names = new Set();
  const files = new Set();
  const shards = m.shards.map((s, index) => {
    const where = `shard ${index}`;
    if (!s || typeof s !== 'object') bad(`${where} is not an object`);
    if (typeof s.file !== 'string' || !/^[^/\\]+$/.test(s.file) || s.file.startsWith('.')) bad(`${where}: bad file name ${JSON.stringify(s.file)}`);
    if (files.has(s.file)) bad(`${where}: file ${s.file} twice`);
    files.add(s.file);
    if (!isInt(s.bytes) || s.bytes === 0) bad(`${s.file}: bad "bytes"`);
    if (typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(s.sha256)) bad(`${s.file}: bad "sha256"`);
    let url;
    try {
      url = new URL(s.url ?? s.file, baseUrl);
    } catch {
      bad(`${s.file}: bad url ${JSON.stringify(s.url)}`);
    }
    if (url.protocol !== baseUrl.protocol && !(url.protocol === 'https:' && baseUrl.protocol === 'http:')
      && !(url.protocol === 'http:' && baseUrl.protocol === 'https:')) bad(`${s.file}: url ${url.href} is not ${baseUrl.protocol}`);
    if (!Array.isArray(s.tensors)) bad(`${s.file}: no "tensors"`);
    const tensors = s.tensors.map((t) => {
      if (!t || typeof t.name !== 'string' || t.name.length === 0) bad(`${s.file}: a tensor without a name`);
      if (names.has(t.name)) bad(`tensor ${t.name} twice`);
      names.add(t.name);
      if (!isInt(t.offset) || !isInt(t.bytes) || t.offset + t.bytes > s.bytes) bad(`${s.file}: tensor ${t.name} lies outside the file`);
      return { name: t.name, file: index, offset: t.offset, bytes: t.bytes, type: t.type, typeId: t.type_id, shape: t.shape };
    }).sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < tensors.length; i++)
      if (tensors[i].offset < tensors[i - 1].offset + tensors[i - 1].bytes) bad(`${s.file}: tensors ${tensors[i - 1].name} and ${tensors[i].name} overlap`);
    // the header: everything before the first tensor's data
    const headerBytes = tensors.length ? tensors[0].offset : s.bytes;
    if (headerBytes === 0) bad(`${s.file}: a tensor at offset 0 (no GGUF header)`);
    const layers = Array.isArray(s.layers) ? s.layers : null;
    // the SHA-256 of each block (optional; `streamllm split` writes them)
    let blockBytes = null;
    let blockSha256 = null;
    if (s.block_bytes !== undefined || s.block_sha256 !== undefined) {
      blockBytes = s.block_bytes;
      if (!isInt(blockBytes) || blockBytes < MIN_BLOCK || blockBytes > MAX_BLOCK || (blockBytes & (blockBytes - 1)) !== 0)
        bad(`${s.file}: "block_bytes" must be a power of two from ${MIN_BLOCK} to ${MAX_BLOCK}`);
      if (!Array.isArray(s.block_sha256)) bad(`${s.file}: "block_bytes" without a "block_sha256" list`);
      const want = Math.ceil(s.bytes / blockBytes);
      if (s.block_sha256.length !== want) bad(`${s.file}: ${s.block_sha256.length} block hashes, but ${s.bytes} bytes in blocks of ${blockBytes} make ${want}`);
      if (!s.block_sha256.every((h) => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h))) bad(`${s.file}: a bad "block_sha256" entry`);
      blockSha256 = s.block_sha256;
    }
    return { index, file: s.file, url: url.href, bytes: s.bytes, sha256: s.sha256, key: s.sha256, layers, tensors, headerBytes, blockBytes, blockSha256 };
  });
  return shards;
}

// ---- the manager -----------------------------------------------------------------

export class StreamWeightManager {
  constructor({
    url, manifestUrl, mode, store = null, fetch = null, concurrency = 6, retries = 5, integrityAttempts = 3,
    backoffMs = 250, maxBackoffMs = 8000, stallMs = 30000, chunkBytes = 256 * 1024, onProgress = null, modelId = null,
    verifyCached = false, sha256 = null, gc = true, hashWorkers = null, downloadWorkers = null, splitBytes = null,
  } = {}) {
    const u = url ?? manifestUrl;
    if (!u) throw new WeightError('StreamWeightManager: no url');
    this.url = new URL(String(u), globalThis.location?.href).href;
    this.mode = mode ?? (/\.gguf$/i.test(new URL(this.url).pathname) ? 'gguf' : 'manifest');
    if (this.mode !== 'manifest' && this.mode !== 'gguf') throw new WeightError(`unknown mode ${mode}`);
    this.store = store;
    this.customFetch = fetch; // a function of the caller: downloads stay on this thread
    this.concurrency = Math.max(1, concurrency | 0);
    this.retries = Math.max(0, retries | 0);
    this.integrityAttempts = Math.max(1, integrityAttempts | 0);
    this.backoffMs = backoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.stallMs = stallMs;
    this.chunkBytes = Math.max(64 * 1024, chunkBytes | 0);
    this.onProgress = onProgress;
    this.modelId = modelId ?? this.url;
    this.verifyCached = verifyCached;
    this.expectedSha256 = sha256; // plain .gguf: a known hash of the file
    this.gcAfterLoad = gc;
    // Workers that hash while this thread receives (0: hash inline; null:
    // by the number of cores, see #hasher)
    this.hashWorkers = hashWorkers;
    this.hashPool = null;
    // Workers that download shards with block hashes (0: on this thread;
    // null: by the number of cores, see #downloads)
    this.downloadWorkers = downloadWorkers;
    this.downloadPool = null;
    // pieces of a large shard downloaded in parallel (null: by planPieces'
    // rule; 0: never; N: pieces of about N bytes)
    this.splitBytes = splitBytes;
    this.offline = false; // the manifest came from the cache
    this.rawManifest = null;
    this.shards = null;
    this.readers = new Map(); // key -> reader, kept open for readTensor
    this.counters = {
      networkBytes: 0, cacheBytes: 0, requests: 0, retries: 0, refetches: 0, hashWorkers: 0, downloadWorkers: 0, splitShards: 0, rereadBytes: 0,
    };
    this.net = new Fetcher({ fetch, retries: this.retries, backoffMs, maxBackoffMs, stallMs, counters: this.counters });
    this.progress = null;
  }

  // ---- the manifest ----

  // The manifest: fetched (with retries), else the cached copy when the
  // network fails. A plain .gguf URL has none until load() read its header
  // (then this returns a synthesized one, without sha256s).
  async manifest({ signal } = {}) {
    if (this.rawManifest) return this.rawManifest;
    if (this.mode === 'gguf') return null;
    const record = this.store ? await this.store.getRecord(this.modelId) : null;
    let m;
    try {
      const res = await this.net.request(this.url, {}, signal, record ? 0 : this.retries, 'manifest');
      const len = Number(res.headers.get('content-length') ?? 0);
      if (len > MAX_MANIFEST_BYTES) throw new ManifestError(`manifest: ${fmtBytes(len)} is too large`);
      const text = await res.text();
      try {
        m = JSON.parse(text);
      } catch (e) {
        throw new ManifestError(`manifest ${this.url}: not JSON (${e.message})`);
      }
    } catch (e) {
      const offlineOk = record?.manifest && (e instanceof NetworkError || (e instanceof HttpError && e.status >= 500));
      if (!offlineOk) throw e;
      m = record.manifest;
      this.offline = true;
    }
    this.shards = parseManifest(m, this.offline && record.url ? record.url : this.url);
    this.rawManifest = m;
    return m;
  }

  // Names of a layer's tensors (on-demand mode reads a layer at a time).
  layerTensors(layer) {
    const prefix = `blk.${layer}.`;
    return this.#allTensors().filter((t) => t.name.startsWith(prefix)).map((t) => t.name);
  }

  #allTensors() {
    if (!this.shards) throw new WeightError('no manifest yet: call manifest() or load() first');
    return this.shards.flatMap((s) => s.tensors);
  }

  // ---- progress ----

  #initProgress() {
    const total = this.shards.reduce((n, s) => n + s.bytes, 0);
    this.progress = {
      phase: 'headers', bytesDone: 0, bytesTotal: total, networkBytes: 0, cacheBytes: 0, speed: 0, eta: null,
      offline: this.offline,
      shards: this.shards.map((s) => ({ file: s.file, bytes: s.bytes, done: 0, state: 'queued', source: null, attempts: 0 })),
    };
    this.samples = [];
    this.lastEmit = 0;
    this.trailing = null;
  }

  #emit(force = false) {
    const p = this.progress;
    if (!p) return;
    const now = performance.now();
    p.bytesDone = p.shards.reduce((n, s) => n + s.done, 0);
    p.networkBytes = this.counters.networkBytes;
    p.cacheBytes = this.counters.cacheBytes;
    this.samples.push([now, p.bytesDone]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 2000) this.samples.shift();
    const [t0, b0] = this.samples[0];
    if (now - t0 > 50) p.speed = ((p.bytesDone - b0) * 1000) / (now - t0);
    p.eta = p.speed > 0 ? (p.bytesTotal - p.bytesDone) / p.speed : null;
    if (!this.onProgress) return;
    if (!force && now - this.lastEmit < 100) {
      // at most one event per 100 ms, but the last change is never lost
      this.trailing ??= setTimeout(() => {
        this.trailing = null;
        this.#emit(true);
      }, 100 - (now - this.lastEmit));
      return;
    }
    clearTimeout(this.trailing);
    this.trailing = null;
    this.lastEmit = now;
    try {
      this.onProgress({ ...p, shards: p.shards.map((s) => ({ ...s })) });
    } catch {
      // a failing progress callback must not break the load
    }
  }

  // ---- loading ----

  // Loads the model into sink (see the interface above). Resolves when every
  // shard was verified and every tensor byte given.
  async load(sink, { signal } = {}) {
    for (let restart = 0; ; restart++) {
      try {
        return await this.#loadOnce(sink, signal);
      } catch (e) {
        if (!(e instanceof HeaderChanged) || restart >= 1 || typeof sink.reset !== 'function') {
          if (e instanceof HeaderChanged) throw new IntegrityError(e.message);
          throw e;
        }
        await sink.reset();
      }
    }
  }

  async #loadOnce(sink, signal) {
    const ctrl = new AbortController(); // the first failure stops the other downloads
    const off = onAbort(signal, () => ctrl.abort());
    try {
      if (this.mode === 'manifest') {
        await this.manifest({ signal });
        this.#initProgress();
        this.#emit(true);
        // before any byte: the manifest has every size
        if ((await this.#checkQuota()) !== 0) this.#prestartDownloads();
        await this.#recordPending();
        await this.#headers(sink, ctrl.signal);
      } else {
        await this.#ggufHeaders(sink, ctrl.signal);
        await this.#checkQuota();
      }
      this.progress.phase = 'tensors';
      await sink.begin?.({ tensors: this.#allTensors() });
      // shards, and the pieces of the large ones: `concurrency` at once
      const items = await this.#plan();
      try {
        await this.#pool(items, this.concurrency, (it) => (it.cut ? this.#loadPiece(it, sink, ctrl.signal) : this.#loadShard(it.sh, sink, ctrl.signal)), ctrl);
      } finally {
        for (const it of items) it.download?.release?.(); // a shard whose pieces did not all run
      }
      if (signal?.aborted) throw new AbortError('load aborted');
      await sink.end?.();
      await this.#recordComplete();
      this.progress.phase = 'done';
      this.#emit(true);
    } catch (e) {
      if (signal?.aborted && !(e instanceof AbortError)) throw new AbortError('load aborted', { cause: e });
      throw e;
    } finally {
      off();
      const pool = this.hashPool;
      this.hashPool = null;
      if (pool) (await pool)?.close();
      const downloads = this.downloadPool;
      this.downloadPool = null;
      if (downloads) (await downloads)?.close();
    }
  }

  // The hash workers, started when the first shard comes from the network.
  // By default one per core beyond two (this thread; the network stack,
  // server or GPU), at most one per concurrent shard: on a machine with
  // fewer cores, workers would only take turns with this thread.
  async #hasher() {
    if (this.hashWorkers === null) this.hashWorkers = Math.max(0, Math.min(this.concurrency, (await coreCount()) - 2));
    if (this.hashWorkers > 0) {
      this.hashPool ??= HashPool.create(Math.min(this.hashWorkers, this.shards.length)).then((pool) => {
        this.counters.hashWorkers = pool ? pool.workers.length : 0;
        return pool;
      });
    }
    return this.hashPool ? this.hashPool.then((pool) => pool?.hasher({ slotBytes: this.chunkBytes }) ?? newSha256()) : newSha256();
  }

  // Runs fn over items, n at a time; the first error aborts the rest.
  async #pool(items, n, fn, ctrl) {
    let next = 0;
    let error = null;
    const worker = async () => {
      while (next < items.length && error === null) {
        const item = items[next++];
        try {
          await fn(item);
        } catch (e) {
          if (error === null) {
            error = e;
            ctrl.abort();
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
    if (error) throw error;
  }

  // ---- headers ----

  // The first n bytes of a shard: from its verified blob, else from (or
  // into) its partial download (#partialPrefix), else (no store) from the
  // network into sh.prefix, which the data phase continues from.
  async #prefix(sh, n, signal) {
    const st = this.store ? await this.store.stat(sh.key) : null;
    if (st?.complete === sh.bytes) {
      const r = await this.store.openReader(sh.key);
      try {
        const out = new Uint8Array(n);
        if ((await r.readInto(0, out)) !== n) throw new WeightError(`${sh.file}: cached copy too short`);
        return { bytes: out, verified: true };
      } finally {
        await r.close();
      }
    }
    if (this.store && !sh.prefix) {
      const got = await this.#locked(sh.key, () => this.#partialPrefix(sh, n, signal));
      if (got) return got;
    }
    const have = sh.prefix ?? new Uint8Array(0);
    if (have.length < n) {
      const out = new Uint8Array(n);
      out.set(have);
      await this.net.download(sh, have.length, n, (chunk, at) => out.set(chunk, at), signal);
      sh.prefix = out;
    }
    return { bytes: sh.prefix.subarray(0, n), verified: false };
  }

  // The first n bytes of a shard from its partial download: what the file
  // holds, then the rest from the network, appended to it (read back
  // unverified; checked with the shard later). A shard with block hashes:
  // verified when the blocks that hold them are in the file and verify;
  // null when the file holds more than block 0 but not it whole (holes
  // that pieces have not written yet, or damage: the header comes into
  // memory, block 0 is fetched whole later).
  async #partialPrefix(sh, n, signal) {
    const w = await this.store.openWriter(sh.key);
    try {
      if (w.size > sh.bytes) await w.truncate(0);
      const B = sh.blockBytes;
      if (B) {
        const upTo = Math.min(sh.bytes, Math.ceil(n / B) * B);
        if (w.size >= upTo) {
          const out = new Uint8Array(upTo);
          let ok = (await w.readInto(0, out)) === upTo;
          for (let k = 0; ok && k * B < upTo; k++) ok = (await digestHex(out.subarray(k * B, Math.min(upTo, (k + 1) * B)))) === sh.blockSha256[k];
          if (ok) return { bytes: out.subarray(0, n), verified: true };
        }
        if (w.size >= B) return null;
      }
      // never read back what this writer wrote (not visible before close
      // in some stores)
      const out = new Uint8Array(n);
      const have = Math.min(w.size, n);
      if (have > 0 && (await w.readInto(0, out.subarray(0, have))) !== have) throw new WeightError(`${sh.file}: partial download unreadable`);
      if (w.size < n) {
        // these bytes come from the network now: they do not count as cached later
        sh.fetched = { from: w.size, to: n };
        await this.net.download(sh, w.size, n, async (chunk, at) => {
          out.set(chunk, at);
          await this.#write(w, chunk);
        }, signal);
      }
      return { bytes: out, verified: false };
    } finally {
      await w.close();
    }
  }

  // Gives one shard's header to the sink, growing it while the engine asks.
  async #giveHeader(sink, sh, first, signal) {
    let got = first;
    let n = got.bytes.length;
    for (;;) {
      const r = await sink.header(sh.index, got.bytes, sh.bytes);
      if (r === 0 || r === undefined) break;
      if (!(r > n && r <= sh.bytes)) throw new ManifestError(`${sh.file}: the engine asked for ${r} header bytes of ${sh.bytes}`);
      n = r;
      got = await this.#prefix(sh, n, signal);
    }
    // what was given unverified is checked against the verified shard later
    sh.givenHeader = got.verified ? null : await headerParts(got.bytes, sh.blockBytes);
  }

  async #headers(sink, signal) {
    // prefetch up to `concurrency` headers ahead, give them in order
    const started = new Map();
    const start = (k) => {
      if (k < this.shards.length && !started.has(k)) {
        // the engine reads headers in pieces of up to 64 KiB (a larger
        // first piece saves it asking again; the bytes are kept anyway)
        const sh = this.shards[k];
        const p = this.#prefix(sh, Math.min(sh.bytes, Math.max(sh.headerBytes, HEADER_MIN)), signal);
        p.catch(() => {});
        started.set(k, p);
      }
    };
    for (let k = 0; k < this.shards.length; k++) {
      for (let j = k; j < k + this.concurrency; j++) start(j);
      await this.#giveHeader(sink, this.shards[k], await started.get(k), signal);
      started.delete(k);
    }
  }

  // ---- a plain .gguf URL (or a llama.cpp split by URL) ----

  async #ggufHeaders(sink, signal) {
    const first = await this.#ggufFile(0, this.url, signal);
    this.shards = [first];
    this.#initProgress();
    this.progress.phase = 'headers';
    this.#emit(true);
    await this.#giveHeader(sink, first, await this.#prefix(first, Math.min(first.bytes, HEADER_GUESS), signal), signal);
    const count = sink.fileCount ? await sink.fileCount() : 1;
    if (!(Number.isInteger(count) && count >= 1)) throw new ManifestError(`${this.url}: bad file count ${count}`);
    if (count > 1) {
      const m = /^(.*)-00001-of-(\d{5})\.gguf$/.exec(new URL(this.url).pathname);
      if (!m || Number(m[2]) !== count) throw new ManifestError(`${this.url} is the first of ${count} split parts but is not named NAME-00001-of-${String(count).padStart(5, '0')}.gguf`);
      const pad = (x) => String(x).padStart(5, '0');
      for (let k = 1; k < count; k++) {
        const u = new URL(this.url);
        u.pathname = `${m[1]}-${pad(k + 1)}-of-${pad(count)}.gguf`;
        const sh = await this.#ggufFile(k, u.href, signal);
        this.shards.push(sh);
        this.#initProgress();
        await this.#giveHeader(sink, sh, await this.#prefix(sh, Math.min(sh.bytes, HEADER_GUESS), signal), signal);
      }
    }
    if (typeof sink.tensorTable !== 'function') throw new WeightError('a plain .gguf URL needs sink.tensorTable()');
    const table = await sink.tensorTable();
    for (const sh of this.shards) sh.tensors = [];
    for (const t of table) {
      const sh = this.shards[t.file];
      if (!sh || !isInt(t.offset) || !isInt(t.bytes) || t.offset + t.bytes > sh.bytes) throw new ManifestError(`tensor ${t.name} lies outside its file`);
      sh.tensors.push({ name: t.name, file: t.file, offset: t.offset, bytes: t.bytes, type: t.type, shape: t.shape });
    }
    for (const sh of this.shards) sh.tensors.sort((a, b) => a.offset - b.offset);
    this.rawManifest = {
      format: 'stream-llm/1',
      model: { name: new URL(this.url).pathname.split('/').pop() },
      source: 'gguf',
      shards: this.shards.map((s) => ({
        file: s.file, url: s.url, bytes: s.bytes, sha256: s.sha256, key: s.key,
        tensors: s.tensors.map((t) => ({ name: t.name, offset: t.offset, bytes: t.bytes })),
      })),
    };
    this.#initProgress();
    await this.#recordPending();
  }

  // The facts of file k of a plain GGUF: its size (and ETag) from a first
  // Range request; its cache key from the URL, size and ETag. A known
  // SHA-256 (the sha256 option for file 0, or an ETag that is one, as Hugging
  // Face and streamllm serve send) makes it verifiable. Offline: the
  // record of an earlier load of the same URL.
  async #ggufFile(k, url, signal) {
    const file = new URL(url).pathname.split('/').pop();
    const sh = { index: k, file, url, bytes: null, sha256: null, key: null, tensors: [], headerBytes: null };
    let facts;
    try {
      facts = await this.net.download(sh, 0, 1, () => {}, signal);
    } catch (e) {
      if (!(e instanceof NetworkError || (e instanceof HttpError && e.status >= 500)) || !this.store) throw e;
      const rec = await this.store.getRecord(this.modelId);
      const known = rec?.manifest?.shards?.[k];
      if (!known || known.url !== url) throw e;
      this.offline = true;
      return { ...sh, bytes: known.bytes, sha256: known.sha256, key: known.key };
    }
    if (facts.size === null) throw new HttpError(`${file}: the server gave no size (no Content-Range)`, 0);
    sh.bytes = facts.size;
    const etag = (facts.etag ?? '').replace(/^W\//, '').replace(/"/g, '');
    if (k === 0 && this.expectedSha256) sh.sha256 = this.expectedSha256.toLowerCase();
    else if (/^[0-9a-f]{64}$/i.test(etag)) sh.sha256 = etag.toLowerCase();
    sh.key = sh.sha256 ?? `u${hexOf(`${url}\n${sh.bytes}\n${etag}`).slice(0, 48)}`;
    return sh;
  }

  // ---- one shard's tensors ----

  // A shard without block hashes (one item of the load's pool).
  async #loadShard(sh, sink, signal) {
    const ps = this.progress.shards[sh.index];
    const run = async () => {
      if (!(await this.#cached(sh, sink, ps, signal))) await this.#fromNetwork(sh, sink, ps, signal);
    };
    await (this.store ? this.#locked(sh.key, run) : run());
  }

  // The shard from the cache when the store has it whole: true. Checked
  // under the blob's lock (another tab may have just finished it); a blob
  // of the wrong size is deleted.
  async #cached(sh, sink, ps, signal) {
    if (!this.store) return false;
    const st = await this.store.stat(sh.key);
    if (st.complete === sh.bytes) return this.#fromCache(sh, sink, ps, signal);
    if (st.complete !== null) await this.store.delete(sh.key); // wrong size: not this shard
    return false;
  }

  // Streams a verified blob to the sink. false: it was found damaged
  // (verifyCached) and deleted; the network path takes over.
  async #fromCache(sh, sink, ps, signal) {
    ps.state = 'downloading';
    ps.source = 'cache';
    const r = await this.store.openReader(sh.key);
    const hash = this.verifyCached ? await newSha256() : null;
    try {
      // reads of at least 1 MiB (a multiple of chunkBytes, so pieces stay
      // aligned): storage APIs pay per call (OPFS reads 2x faster than 256 KiB)
      const readBytes = this.chunkBytes * Math.ceil(MiB / this.chunkBytes);
      const buf = new Uint8Array(Math.min(readBytes, sh.bytes));
      for (let pos = 0; pos < sh.bytes;) {
        if (signal.aborted) throw new AbortError('load aborted');
        const n = Math.min(buf.length, sh.bytes - pos);
        const chunk = buf.subarray(0, n);
        if ((await r.readInto(pos, chunk)) !== n) throw new WeightError(`${sh.file}: cached copy too short`);
        hash?.update(chunk);
        await this.#dispatch(sh, sink, pos, chunk);
        pos += n;
        this.counters.cacheBytes += n;
        ps.done = pos;
        this.#emit();
      }
    } finally {
      await r.close();
    }
    if (hash && hash.digestHex() !== sh.sha256) {
      await this.store.delete(sh.key);
      ps.done = 0;
      return false;
    }
    ps.state = 'done';
    this.#emit();
    return true;
  }

  // ---- shards with block hashes, in pieces ----

  // The load's items: a shard without block hashes is one; one with them
  // is one piece or several (planPieces), which download in parallel, each
  // an item of its own. A shard is split only where its pieces can be
  // written at once (a store whose sharedWrites() says so, given what the
  // download Workers or this thread offer) and when the cache does not hold
  // it whole already.
  async #plan() {
    const items = [];
    const workers = await this.#workerCount();
    const total = this.shards.reduce((n, s) => n + s.bytes, 0);
    let shared = this.store ? null : true; // (no store: nothing to write)
    for (const sh of this.shards) {
      if (!sh.blockSha256) {
        items.push({ sh });
        continue;
      }
      let cuts = planPieces(sh, { total, workers, chunkBytes: this.chunkBytes, splitBytes: this.splitBytes });
      if (cuts.length > 1 && this.store) {
        if ((await this.store.stat(sh.key)).complete === sh.bytes) cuts = [[0, sh.blockSha256.length]];
        else {
          shared ??= !!this.store.sharedWrites?.((await this.#downloads())?.features ?? writeFeatures());
          if (!shared) cuts = [[0, sh.blockSha256.length]];
        }
      }
      if (cuts.length > 1) this.counters.splitShards++;
      // what the pieces of one shard share (see #loadPiece)
      const download = { sh, pieces: cuts.length, left: cuts.length, running: 0, ready: null, release: null };
      for (const cut of cuts) items.push({ sh, cut, download });
    }
    return items;
  }

  // One piece of a shard with block hashes (or the whole shard): a
  // BlockLoader (download.mjs) fetches, verifies and stores its blocks, in a
  // download Worker when there are some (else here); this thread only hands
  // the verified blocks to the sink, cut at chunkBytes boundaries. The first
  // piece to start takes the blob's lock and looks in the cache once more
  // (#startBlocks); the last one to end renames the partial file into place
  // (no whole-file hash: the manifest names every block's hash), checks the
  // header the engine was given, and lets the lock go. A piece that fails
  // fails the load (the other pieces are aborted); what verified stays in
  // the partial file for a resume.
  async #loadPiece({ sh, cut, download: d }, sink, signal) {
    const ps = this.progress.shards[sh.index];
    d.ready ??= this.#startBlocks(d, sink, ps, signal);
    if (!(await d.ready)) return; // it came from the cache
    // (after a piece failed: the lock may be let go already)
    if (d.failed || signal.aborted) throw new AbortError('load aborted');
    d.running++;
    try {
      try {
        await this.#runPiece(sh, cut, d, sink, ps, signal);
      } catch (e) {
        d.failed = true;
        ps.state = 'error';
        this.#emit(true);
        throw await this.#quotaError(e);
      } finally {
        d.running--;
      }
      if (--d.left > 0) return;
      if (this.store) await this.store.commit(sh.key);
      if (d.headerDamaged)
        throw new HeaderChanged(`${sh.file}: the header given to the engine was damaged (the verified shard differs)`);
      ps.state = 'done';
      this.#emit();
    } finally {
      if (d.left === 0 || (d.failed && d.running === 0)) d.release?.();
    }
  }

  // The start of a shard's download by pieces: the blob's lock held (kept
  // until the last piece ends), the cache checked again. Resolves to false
  // when the shard came from the cache, else true, with d.known: the bytes
  // its partial file holds now, which the pieces check again (the file is
  // not theirs to cut: a file longer than the shard is deleted here).
  async #startBlocks(d, sink, ps, signal) {
    const { sh } = d;
    if (this.store) {
      d.release = await this.#hold(sh.key);
      if (await this.#cached(sh, sink, ps, signal)) {
        d.release();
        return false;
      }
      let st = await this.store.stat(sh.key);
      if (st.partial > sh.bytes) {
        await this.store.delete(sh.key);
        st = await this.store.stat(sh.key);
      }
      d.known = st.partial;
    }
    ps.source = 'network';
    ps.state = 'downloading';
    ps.attempts = 1;
    ps.done = 0;
    return true;
  }

  async #runPiece(sh, [first, end], d, sink, ps, signal) {
    const parts = sh.givenHeader?.parts;
    // each piece's blocks arrive in order: its own aligner (pieces start at
    // chunkBytes multiples, see planPieces)
    const align = new ChunkAligner(this.chunkBytes, sh.bytes, (chunk, at) => this.#dispatch(sh, sink, at, chunk));
    const block = async (u8, at, fromStore) => {
      // (blocks that hold what the engine was given unverified: compared)
      const part = parts?.find((x) => x.at === at);
      if (part && (await newSha256()).update(u8.subarray(0, part.length)).digestHex() !== part.sha256) d.headerDamaged = true;
      // bytes from the partial file, but not those this load fetched moments ago (the header)
      const f = sh.fetched;
      const fresh = f ? Math.max(0, Math.min(at + fromStore, f.to) - Math.max(at, f.from)) : 0;
      this.counters.cacheBytes += fromStore - fresh;
      await align.push(u8, at);
      ps.done += u8.length;
      ps.state = 'downloading';
      this.#emit();
    };
    const onRetry = () => {
      ps.state = 'retrying';
      this.#emit(true);
    };
    // the bytes fetched for the engine without a place in the partial file
    // (sh.prefix) start the first piece's download
    const prefix = first === 0 ? sh.prefix : null;
    if (first === 0) sh.prefix = null;
    const job = {
      file: sh.file, url: sh.url, bytes: sh.bytes, key: sh.key, blockBytes: sh.blockBytes, blockSha256: sh.blockSha256,
      first, end, known: d.known ?? 0, shared: d.pieces > 1,
      prefix: prefix ? { at: 0, bytes: prefix } : null,
    };
    const pool = await this.#downloads();
    if (pool) {
      const options = {
        store: this.store ? this.store.workerSpec() : null, retries: this.retries, backoffMs: this.backoffMs,
        maxBackoffMs: this.maxBackoffMs, stallMs: this.stallMs, integrityAttempts: this.integrityAttempts,
      };
      const counters = (delta) => { for (const k of Object.keys(delta)) this.counters[k] += delta[k]; };
      await pool.run(job, options, { block, counters, retry: onRetry }, signal);
    } else {
      // the same loader on this thread; blocks reach the sink in order
      let queue = Promise.resolve();
      let sinkError = null;
      const deliver = (u8, at, fromStore) => {
        const p = queue.then(() => {
          if (sinkError) throw sinkError;
          return block(u8, at, fromStore);
        });
        queue = p.then(() => {}, (e) => { sinkError ??= e; });
        return p.then(() => u8.buffer);
      };
      // (fewer block buffers than in a Worker: these are this thread's memory)
      const loader = new BlockLoader(this.net, { store: this.store, integrityAttempts: this.integrityAttempts, onRetry, slotBytes: 8 << 20 });
      await loader.run(job, deliver, signal);
      await queue;
      if (sinkError) throw sinkError;
    }
    await align.flush();
  }

  // The download Workers to use (0: downloads on this thread): by default
  // one per core beyond the one this thread needs, at most `concurrency`.
  // None with a fetch function of the caller or a store that cannot be
  // opened in a Worker.
  async #workerCount() {
    if (this.customFetch || (this.store && !this.store.workerSpec?.())) return 0;
    if (this.downloadWorkers === null) this.downloadWorkers = Math.max(0, Math.min(this.concurrency, (await coreCount()) - 1));
    return Math.max(0, this.downloadWorkers);
  }

  // The download Workers, started when the first shard with block hashes
  // comes from the network (or before, see #prestartDownloads), at most one
  // per piece the load may have.
  async #downloads() {
    const workers = await this.#workerCount();
    if (workers === 0) return null;
    if (!this.downloadPool) {
      const total = this.shards.reduce((n, s) => n + s.bytes, 0);
      const pieces = this.shards.reduce((n, s) => n + (s.blockSha256
        ? planPieces(s, { total, workers, chunkBytes: this.chunkBytes, splitBytes: this.splitBytes }).length : 0), 0);
      this.downloadPool = DownloadPool.create(Math.min(workers, pieces)).then((pool) => {
        this.counters.downloadWorkers = pool ? pool.workers.length : 0;
        return pool;
      });
    }
    return this.downloadPool;
  }

  // Starts the download Workers while the headers are fetched (a Worker
  // takes tens of milliseconds to start; a small model's whole download
  // takes a few hundred).
  #prestartDownloads() {
    if (this.shards.some((s) => s.blockSha256)) this.#downloads().catch(() => {});
  }

  async #fromNetwork(sh, sink, ps, signal) {
    ps.source = 'network';
    let lastError = null;
    for (let attempt = 1; attempt <= this.integrityAttempts; attempt++) {
      ps.attempts = attempt;
      ps.state = 'downloading';
      ps.done = 0;
      const hash = await this.#hasher();
      const headerHash = sh.givenHeader ? await newSha256() : null;
      const w = this.store ? await this.store.openWriter(sh.key) : null;
      let pos = 0;
      let stored = 0; // bytes the partial file holds already
      // the bytes so far: hash them and hand their tensors over; the header
      // region is also hashed apart, to compare with what the engine got
      // (returns { hashed }: with hash workers, a promise after which the
      // chunk's memory may be reused)
      const take = async (chunk, at) => {
        const hashed = hash.update(chunk);
        if (hashed?.then) hashed.catch(() => {}); // awaited by the caller; never unhandled
        if (headerHash && at < sh.givenHeader.bytes) headerHash.update(chunk.subarray(0, Math.min(chunk.length, sh.givenHeader.bytes - at)));
        await this.#dispatch(sh, sink, at, chunk);
        ps.done = at + chunk.length;
        this.#emit();
        return { hashed };
      };
      const keep = async (chunk, at) => {
        if (w && at + chunk.length > stored) await this.#write(w, chunk.subarray(Math.max(0, stored - at)));
      };
      // chunks reach the sink at file offsets that are multiples of
      // chunkBytes (or tensor ends), wherever a download stopped: the GPU
      // takes 4-byte-aligned pieces
      const stage = new Stager(this.chunkBytes, async (chunk, at) => {
        const { hashed } = await take(chunk, at);
        await keep(chunk, at);
        await hashed;
      });
      try {
        if (w) {
          if (w.size > sh.bytes) await w.truncate(0);
          stored = w.size;
          pos = await this.#replay(sh, w, take, stage, signal);
        } else if (sh.prefix) {
          const aligned = sh.prefix.length - (sh.prefix.length % this.chunkBytes);
          if (aligned > 0) await (await take(sh.prefix.subarray(0, aligned), 0)).hashed;
          await stage.push(sh.prefix.subarray(aligned), aligned);
          pos = sh.prefix.length;
          sh.prefix = null;
        }
        if (pos < sh.bytes) {
          await this.net.download(sh, pos, sh.bytes, (chunk, at) => stage.push(chunk, at), signal, {
            onRetry: () => {
              ps.state = 'retrying';
              this.#emit(true);
            },
          });
        }
        await stage.flush();
        ps.state = 'verifying';
        const got = await hash.digestHex();
        if (sh.sha256 === null || got === sh.sha256) {
          if (w) await w.commit();
          if (headerHash && headerHash.digestHex() !== sh.givenHeader.parts[0].sha256)
            throw new HeaderChanged(`${sh.file}: the header given to the engine was damaged (the verified shard differs)`);
          ps.state = 'done';
          this.#emit();
          return;
        }
        lastError = `SHA-256 ${got}, expected ${sh.sha256}`;
        this.counters.refetches++;
        if (w) await w.discard();
      } catch (e) {
        if (w) {
          // keep what arrived for a later resume (bytes still in the stage too)
          await stage.salvage(keep).catch(() => {});
          await w.close().catch(() => {});
        }
        ps.state = 'error';
        this.#emit(true);
        throw e;
      }
    }
    ps.state = 'error';
    this.#emit(true);
    throw new IntegrityError(`${sh.file}: ${lastError} (${this.integrityAttempts} downloads); the server's copy is damaged`);
  }

  // The partial download's bytes: whole chunks through take(), the rest
  // (up to the next chunk boundary) into the stage. Returns their count.
  async #replay(sh, w, take, stage, signal) {
    const n = w.size;
    const aligned = n - (n % this.chunkBytes);
    const buf = new Uint8Array(Math.min(this.chunkBytes, Math.max(n, 1)));
    for (let pos = 0; pos < n;) {
      if (signal.aborted) throw new AbortError('load aborted');
      const chunk = buf.subarray(0, Math.min(buf.length, (pos < aligned ? aligned : n) - pos));
      if ((await w.readInto(pos, chunk)) !== chunk.length) throw new WeightError(`${sh.file}: partial download unreadable`);
      // bytes this load fetched moments ago (the header prefix) are not from the cache
      const f = sh.fetched;
      const fresh = f ? Math.max(0, Math.min(pos + chunk.length, f.to) - Math.max(pos, f.from)) : 0;
      this.counters.cacheBytes += chunk.length - fresh;
      if (pos < aligned) await (await take(chunk, pos)).hashed;
      else await stage.push(chunk, pos);
      pos += chunk.length;
    }
    return n;
  }

  // Appends to a partial download; a full store becomes a QuotaError that
  // says how much the model still needs.
  async #write(w, chunk) {
    try {
      await w.write(chunk);
    } catch (e) {
      throw await this.#quotaError(e);
    }
  }

  // A store's "full" (QuotaError, QuotaExceededError) as a QuotaError that
  // says how much the model still needs; other errors as they are.
  async #quotaError(e) {
    if (!(e instanceof QuotaError || e?.name === 'QuotaExceededError' || e?.name === 'QuotaError')) return e;
    const needed = (await this.#needed().catch(() => null)) ?? null;
    return new QuotaError(`storage is full${needed === null ? '' : `: ${fmtBytes(needed)} more needed for the model`}`, { needed, cause: e });
  }

  // Bytes of the model the store does not hold yet.
  async #needed() {
    let needed = 0;
    for (const sh of this.shards) {
      const st = await this.store.stat(sh.key);
      if (st.complete !== sh.bytes) needed += sh.bytes - Math.min(st.partial, sh.bytes);
    }
    return needed;
  }

  // Hands the tensors' parts inside file bytes [at, at + chunk.length) to the sink.
  async #dispatch(sh, sink, at, chunk) {
    const ts = sh.tensors;
    const end = at + chunk.length;
    let lo = 0;
    let hi = ts.length;
    while (lo < hi) { // first tensor that ends after `at`
      const mid = (lo + hi) >> 1;
      if (ts[mid].offset + ts[mid].bytes <= at) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < ts.length && ts[i].offset < end; i++) {
      const t = ts[i];
      const a = Math.max(at, t.offset);
      const b = Math.min(end, t.offset + t.bytes);
      if (a < b) {
        const r = sink.tensor(t.name, a - t.offset, chunk.subarray(a - at, b - at), t);
        if (r && typeof r.then === 'function') await r;
      }
    }
  }

  // ---- quota, records, locks ----

  // Resolves to the bytes the load will fetch (null without a store).
  async #checkQuota() {
    if (!this.store) return null;
    const needed = await this.#needed();
    if (needed === 0) return 0;
    const est = await this.store.estimate?.();
    if (!est || !Number.isFinite(est.quota)) return needed;
    const available = Math.max(0, est.quota - est.usage);
    if (needed > available)
      throw new QuotaError(`not enough storage for the model: ${fmtBytes(needed)} needed, ${fmtBytes(available)} available`, { needed, available });
    return needed;
  }

  // The record names the keys being downloaded (pending), so that another
  // model's garbage collection keeps them for a later resume.
  async #recordPending() {
    if (!this.store) return;
    const rec = (await this.store.getRecord(this.modelId)) ?? { id: this.modelId };
    const keys = this.shards.map((s) => s.key);
    if (rec.manifest && sameKeys(rec.keys, keys)) return;
    rec.pending = keys;
    rec.url ??= this.url;
    rec.name ??= this.rawManifest?.model?.name ?? null;
    rec.bytes ??= this.shards.reduce((n, s) => n + s.bytes, 0);
    await this.store.putRecord(this.modelId, rec);
  }

  async #recordComplete() {
    if (!this.store) return;
    const m = this.rawManifest;
    const rec = {
      id: this.modelId,
      url: this.url,
      name: m.model?.name ?? null,
      arch: m.model?.arch ?? null,
      quant: m.model?.quant ?? null,
      bytes: this.shards.reduce((n, s) => n + s.bytes, 0),
      keys: this.shards.map((s) => s.key),
      manifest: m,
      time: Date.now(),
    };
    await this.store.putRecord(this.modelId, rec);
    if (this.gcAfterLoad) await new WeightCache(this.store).gc();
  }

  // Runs fn holding the Web Lock of a blob (browsers): two tabs never write
  // the same partial file; the second finds the shard done. Node: no locks.
  async #locked(key, fn) {
    const release = await this.#hold(key);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  // Takes the Web Lock of a blob; resolves to the function that lets it go
  // (which may be called again; Node: no locks, a no-op).
  async #hold(key) {
    const locks = globalThis.navigator?.locks;
    if (!locks) return () => {};
    return new Promise((granted, refused) => {
      locks.request(`stream-llm-blob-${key}`, () => new Promise((release) => granted(release))).catch(refused);
    });
  }

  // ---- on-demand reads ----

  // Streams one tensor's bytes to sink.tensor() again: from the cached
  // shard, or (no cache) by Range from the network. For on-demand mode:
  // layers that do not fit the GPU budget are read per forward pass.
  async readTensor(name, sink, { signal } = {}) {
    return this.readTensors([name], sink, { signal });
  }

  async readTensors(names, sink, { signal } = {}) {
    const all = new Map(this.#allTensors().map((t) => [t.name, t]));
    let buf = null; // one per call: calls may overlap
    for (const name of names) {
      const t = all.get(name);
      if (!t) throw new WeightError(`no tensor ${name} in the model`);
      const sh = this.shards[t.file];
      const r = await this.#reader(sh);
      if (r) {
        buf ??= new Uint8Array(this.chunkBytes);
        for (let off = 0; off < t.bytes;) {
          const chunk = buf.subarray(0, Math.min(buf.length, t.bytes - off));
          if ((await r.readInto(t.offset + off, chunk)) !== chunk.length) throw new WeightError(`${sh.file}: cached copy too short`);
          const x = sink.tensor(t.name, off, chunk, t);
          if (x && typeof x.then === 'function') await x;
          off += chunk.length;
        }
      } else {
        let off = 0;
        const stage = new Stager(this.chunkBytes, async (chunk) => {
          const x = sink.tensor(t.name, off, chunk, t);
          if (x && typeof x.then === 'function') await x;
          off += chunk.length;
        });
        await this.net.download(sh, t.offset, t.offset + t.bytes, (chunk, at) => stage.push(chunk, at), signal);
        await stage.flush();
      }
    }
  }

  // File k of the model (shard k) as a byte source { name, size,
  // readInto(offset, dest), close() }: from the cached shard, or by Range
  // from the network without one. The WebGPU backend reads on-demand
  // layers through it in every forward pass.
  fileSource(k) {
    if (!this.shards?.[k]) throw new WeightError(`no file ${k + 1} in the model`);
    const sh = this.shards[k];
    return {
      name: sh.file,
      size: sh.bytes,
      readInto: async (offset, dest) => {
        const r = await this.#reader(sh);
        if (r) {
          if ((await r.readInto(offset, dest)) !== dest.length) throw new WeightError(`${sh.file}: cached copy too short`);
        } else {
          await this.net.download(sh, offset, offset + dest.length, (chunk, at) => dest.set(chunk, at - offset));
        }
        this.counters.rereadBytes += dest.length;
        return dest.length;
      },
      close: () => {},
    };
  }

  async #reader(sh) {
    if (!this.store) return null;
    let r = this.readers.get(sh.key);
    if (r) return r;
    const st = await this.store.stat(sh.key);
    if (st.complete !== sh.bytes) return null;
    r = await this.store.openReader(sh.key);
    this.readers.set(sh.key, r);
    return r;
  }

  close() {
    for (const r of this.readers.values()) r.close();
    this.readers.clear();
  }
}

// A header that reached the engine unverified turned out different from the
// verified shard: the load starts over (sink.reset) once.
class HeaderChanged extends Error {}

function sameKeys(a, b) { return Array.isArray(a) && a.length === b.length && a.every((k, i) => k === b[i]); }

// What the engine was given of a shard's first bytes before they were
// verified: { bytes, parts: [{ at, length, sha256 }] }, the SHA-256 of the
// bytes given in each block (blockBytes; null: one part), compared with the
// verified bytes of that block when it arrives, in whatever order.
async function headerParts(bytes, blockBytes) {
  const parts = [];
  const step = blockBytes ?? bytes.length;
  for (let at = 0; at < bytes.length; at += step) {
    const part = bytes.subarray(at, Math.min(bytes.length, at + step));
    parts.push({ at, length: part.length, sha256: (await newSha256()).update(part).digestHex() });
  }
  return { bytes: bytes.length, parts };
}

const gcd = (a, b) => (b === 0 ? a : gcd(b, a % b));

// The pieces of a shard with block hashes, downloaded in parallel (each by
// its own Range requests in its own Worker job): [[firstBlock, endBlock], ...],
// one piece for a shard that is not split. The rule (splitBytes null): with
// `workers` download Workers sharing `total` bytes, one Worker streams a
// shard at a fraction of the rate of all of them (its CPU: HTTP, SHA-256,
// store writes), so a shard much larger than the others (e.g. Llama-3.2-1B's
// 215 MB token embedding among 34 MB layer shards) would finish long after
// them. A shard larger than total / (2 x workers) bytes (half a Worker's
// share; at least MIN_PIECE: a Range request and a Worker job cost little,
// but not nothing) is cut into pieces no larger than that, at most one per
// Worker: then no piece keeps a Worker busy much after the others.
// splitBytes 0: never split; N: pieces of at most about N bytes (tests).
// Cuts fall on multiples of both the block and chunkBytes (the sink's
// pieces end at chunkBytes multiples), so a shard too small for two such
// units is not split.
const MIN_PIECE = 16 * MiB;
export function planPieces(sh, { total, workers, chunkBytes, splitBytes = null }) {
  const n = Math.ceil(sh.bytes / sh.blockBytes);
  const whole = [[0, n]];
  let pieces;
  if (splitBytes === 0 || (splitBytes === null && workers < 2)) return whole;
  if (splitBytes === null) pieces = Math.min(workers, Math.ceil(sh.bytes / Math.max(MIN_PIECE, total / (2 * workers))));
  else pieces = Math.ceil(sh.bytes / splitBytes);
  const unit = (sh.blockBytes / gcd(sh.blockBytes, chunkBytes)) * chunkBytes; // lcm, in bytes
  const units = Math.ceil(sh.bytes / unit);
  pieces = Math.min(pieces, units);
  if (!(pieces >= 2)) return whole;
  const blocksPerUnit = unit / sh.blockBytes;
  const cut = (i) => Math.min(n, Math.floor((i * units) / pieces) * blocksPerUnit);
  return Array.from({ length: pieces }, (_, i) => [cut(i), cut(i + 1)]);
}

// Gathers small network chunks into chunkBytes pieces (fewer, larger store
// writes and sink calls); two buffers, so that one fills while the other's
// write is in flight.
class Stager {
  constructor(size, out) {
    this.bufs = [new Uint8Array(size), new Uint8Array(size)];
    this.cur = 0;
    this.fill = 0;
    this.start = 0;
    this.out = out;
    this.inflight = null;
  }

  // Adds bytes at file offset `at` (right after the previous ones); emits
  // whenever the bytes reach a multiple of the chunk size.
  async push(chunk, at) {
    if (this.fill === 0) this.start = at;
    const size = this.bufs[0].length;
    let pos = 0;
    while (pos < chunk.length) {
      const room = size - ((this.start + this.fill) % size);
      const n = Math.min(room, chunk.length - pos);
      this.bufs[this.cur].set(chunk.subarray(pos, pos + n), this.fill);
      this.fill += n;
      pos += n;
      if ((this.start + this.fill) % size === 0) {
        await this.#emit();
        this.start = at + pos;
      }
    }
  }

  async #emit() {
    const buf = this.bufs[this.cur];
    const n = this.fill;
    const at = this.start;
    if (this.inflight) await this.inflight; // the other buffer is free again
    this.inflight = this.out(buf.subarray(0, n), at);
    this.cur ^= 1;
    this.fill = 0;
    // surface a failure at the next push rather than as an unhandled rejection
    this.inflight.catch(() => {});
  }

  async flush() {
    if (this.fill > 0) await this.#emit();
    if (this.inflight) await this.inflight;
    this.inflight = null;
  }

  // After a failure: waits for the write in flight and, when it succeeded,
  // passes the bytes not yet emitted to write(chunk, at), so that the
  // partial file keeps every byte received, without a gap.
  async salvage(write) {
    if (this.inflight) await this.inflight;
    this.inflight = null;
    if (this.fill > 0) await write(this.bufs[this.cur].subarray(0, this.fill), this.start);
    this.fill = 0;
  }
}

// Cuts the verified spans of one shard, which arrive in file order, into
// the pieces the sink gets: each ends at a multiple of chunkBytes or at the
// file's end. Spans that already end there pass without a copy (blocks are
// powers of two, so with the defaults every one does); the tail of one that
// does not is carried (copied, less than chunkBytes) into the next piece.
class ChunkAligner {
  constructor(chunkBytes, size, out) {
    this.chunkBytes = chunkBytes;
    this.size = size;
    this.out = out;
    this.carry = null;
    this.carryAt = 0;
    this.carryLen = 0;
  }

  async push(u8, at) {
    let pos = 0;
    if (this.carryLen > 0) {
      const start = this.carryAt;
      const boundary = Math.min(this.size, (Math.floor(start / this.chunkBytes) + 1) * this.chunkBytes);
      pos = Math.min(boundary - (start + this.carryLen), u8.length);
      this.carry.set(u8.subarray(0, pos), this.carryLen);
      this.carryLen += pos;
      if (start + this.carryLen < boundary) return;
      this.carryLen = 0;
      await this.out(this.carry.subarray(0, boundary - start), start);
    }
    const end = at + u8.length;
    const cut = end === this.size ? end : end - (end % this.chunkBytes);
    if (cut > at + pos) await this.out(u8.subarray(pos, cut - at), at + pos);
    if (cut < end) {
      const from = Math.max(cut, at + pos);
      this.carry ??= new Uint8Array(this.chunkBytes);
      this.carry.set(u8.subarray(from - at), 0);
      this.carryAt = from;
      this.carryLen = end - from;
    }
  }

  async flush() {
    if (this.carryLen > 0) await this.out(this.carry.subarray(0, this.carryLen), this.carryAt);
    this.carryLen = 0;
  }
}

// ---- the cache ---------------------------------------------------------------------

// What a store holds: models (records) and shard blobs; garbage collection.
export class WeightCache {
  constructor(store) {
    if (!store) throw new WeightError('WeightCache: no store');
    this.store = store;
  }

  // The cached models: [{ id, url, name, arch, quant, bytes, cachedBytes, shards, complete }].
  async list() {
    const blobs = new Map();
    for (const b of await this.store.blobs()) if (b.complete) blobs.set(b.key, b.bytes);
    const out = [];
    for (const r of await this.store.records()) {
      const keys = r.keys ?? r.pending ?? [];
      let cached = 0;
      for (const k of keys) cached += blobs.get(k) ?? 0;
      out.push({
        id: r.id, url: r.url ?? null, name: r.name ?? null, arch: r.arch ?? null, quant: r.quant ?? null,
        bytes: r.bytes ?? 0, cachedBytes: cached, shards: keys.length,
        complete: keys.length > 0 && keys.every((k) => blobs.has(k)), downloading: Array.isArray(r.pending),
      });
    }
    return out.sort((a, b) => String(a.id).localeCompare(String(b.id)));
  }

  // { bytes (verified shards), partialBytes (downloads in progress), estimate }.
  async usage() {
    let bytes = 0;
    let partialBytes = 0;
    for (const b of await this.store.blobs()) {
      if (b.complete) bytes += b.bytes;
      else partialBytes += b.bytes;
    }
    let estimate = null;
    try {
      estimate = (await this.store.estimate?.()) ?? null;
    } catch {
      estimate = null;
    }
    return { bytes, partialBytes, estimate };
  }

  // Forgets a model and frees the shards no other model uses.
  async delete(id) {
    await this.store.deleteRecord(id);
    return this.gc();
  }

  async clear() {
    for (const r of await this.store.records()) await this.store.deleteRecord(r.id);
    return this.gc();
  }

  // Deletes every blob (verified or partial) that no record names, except
  // those another tab is writing right now. Returns the keys deleted.
  async gc() {
    const keep = new Set();
    for (const r of await this.store.records()) {
      for (const k of r.keys ?? []) keep.add(k);
      for (const k of r.pending ?? []) keep.add(k);
    }
    const gone = [];
    for (const b of await this.store.blobs()) {
      if (keep.has(b.key) || !KEY_PATTERN.test(b.key)) continue;
      const del = async () => {
        await this.store.delete(b.key);
        gone.push(b.key);
      };
      const locks = globalThis.navigator?.locks;
      if (locks) await locks.request(`stream-llm-blob-${b.key}`, { ifAvailable: true }, (lock) => (lock ? del() : null));
      else await del();
    }
    return [...new Set(gone)];
  }

  async persist() { return this.store.persist ? this.store.persist() : false; }
}

// ---- stores ------------------------------------------------------------------------

// The default store: in Node a directory (dir required); in browsers OPFS,
// else the Cache API, else null (no persistence). name: the folder (OPFS)
// or cache (Cache API) the store lives in.
export async function openStore({ dir = null, name = 'stream-llm', kind = null, ...options } = {}) {
  if (dir !== null || kind === 'fs') {
    const { FsStore } = await import('./store-fs.mjs');
    return new FsStore(dir, options);
  }
  if ((kind === null || kind === 'opfs') && globalThis.navigator?.storage?.getDirectory) {
    const { OpfsStore } = await import('./store-opfs.mjs');
    try {
      return await OpfsStore.open(name, options);
    } catch (e) {
      if (kind === 'opfs') throw e;
    }
  }
  if ((kind === null || kind === 'cache') && globalThis.caches) {
    const { CacheStore } = await import('./store-cache.mjs');
    return CacheStore.open(name, options);
  }
  if (kind !== null) throw new WeightError(`no ${kind} storage here`);
  return null;
}
