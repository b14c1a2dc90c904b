// download.mjs - the StreamWeightManager's (weights.mjs) network side: HTTP
// Range requests with retries, backoff, stall detection and resume
// (Fetcher); the download of a shard whose manifest lists a SHA-256 per
// block, or of one piece of it (a run of its blocks, while other Workers
// fetch the others into the same partial file), verified block by block
// with the platform's native SHA-256 (BlockLoader); and the Workers that
// run those downloads off the manager's thread (DownloadPool,
// download-worker.mjs). The same BlockLoader runs in a Worker or, where
// Workers are missing, in the manager's own thread. Plain ES module:
// browsers (pages, Workers) and Node.

import {
  WeightError, HttpError, NetworkError, IntegrityError, ManifestError, QuotaError, AbortError,
} from './store-common.mjs';
import { Sha256 } from './sha256.mjs';

const TRANSIENT_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

// ---- small helpers ---------------------------------------------------------------

// Callbacks for a signal's abort behind one listener per signal (many
// downloads share the load's signal; Node warns past 10 listeners). Returns
// the function that unsubscribes.
const abortCallbacks = new WeakMap();
export function onAbort(signal, fn) {
  if (!signal) return () => {};
  let set = abortCallbacks.get(signal);
  if (!set) {
    set = new Set();
    abortCallbacks.set(signal, set);
    signal.addEventListener('abort', () => { for (const f of [...set]) f(); }, { once: true });
  }
  set.add(fn);
  return () => set.delete(fn);
}

export const sleep = (ms, signal) => new Promise((resolve, reject) => {
  if (signal?.aborted) return reject(signal.reason);
  let off = null;
  const t = setTimeout(() => {
    off();
    resolve();
  }, ms);
  off = onAbort(signal, () => {
    clearTimeout(t);
    reject(signal.reason);
  });
});

export const isNode = () => !!globalThis.process?.versions?.node && typeof globalThis.WorkerGlobalScope === 'undefined';

// What this thread offers the stores' writers: syncHandleModes, sync access
// handles that several writers may hold on one file at once (OPFS
// 'readwrite-unsafe', Chromium 121+: the pieces of one shard are written by
// several download Workers). A download Worker reports it when it starts.
export function writeFeatures() {
  const h = globalThis.FileSystemSyncAccessHandle;
  return { syncHandleModes: typeof h === 'function' && 'mode' in h.prototype };
}

// The number of cores (1 when unknown).
export async function coreCount() {
  let cores = globalThis.navigator?.hardwareConcurrency;
  if (!cores && isNode()) cores = (await import('node:os')).availableParallelism?.();
  return cores || 1;
}

// A fetch that also reads file: URLs (Node; Range supported), so a local
// shard directory loads through the same path as a server.
export async function defaultFetch(url, init) {
  if (String(url).startsWith('file:')) {
    const { fileFetch } = await import('./store-fs.mjs');
    return fileFetch(url, init);
  }
  return globalThis.fetch(url, init);
}

// Node's node:http as much of fetch() as the manager uses (status,
// headers, a body read in chunks or as text, abort, redirects followed as
// fetch does): in Node it costs about half the CPU time per byte of Node's
// fetch, which is what a download Worker spends its time on, and its first
// request does not wait tens of milliseconds for fetch's modules to load.
// file: URLs go to defaultFetch.
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
let agents = null;
export async function nodeHttpFetch(url, init = {}) {
  let u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return defaultFetch(url, init);
  agents ??= await (async () => {
    const [http, https] = await Promise.all([import('node:http'), import('node:https')]);
    return { 'http:': [http, new http.Agent({ keepAlive: true })], 'https:': [https, new https.Agent({ keepAlive: true })] };
  })();
  const signal = init.signal;
  if (signal?.aborted) throw new Error('aborted');
  // a plain object of headers (Headers would load fetch's modules: tens of
  // milliseconds at a Worker's start)
  const headers = { ...(init.headers ?? {}) };
  let res;
  for (let hops = 0; ; hops++) {
    const [mod, agent] = agents[u.protocol] ?? [];
    if (!mod) throw new Error(`redirected to ${u.protocol} URL ${u.href}`);
    res = await new Promise((resolve, reject) => {
      const req = mod.get(u, { agent, headers }, resolve);
      req.on('error', reject);
      const off = onAbort(signal, () => req.destroy(new Error('aborted')));
      req.on('close', off);
    });
    const location = res.headers.location;
    if (!REDIRECTS.has(res.statusCode) || !location) break;
    res.resume(); // the redirect's body is not read
    if (hops >= 20) throw new Error(`too many redirects from ${url}`);
    u = new URL(location, u);
  }
  // the body through 'data' events (cheaper than its async iterator), a few
  // chunks queued at most: the socket is paused until they are read
  const queue = [];
  let ended = false;
  let failure = null;
  let waiting = null;
  const wake = () => {
    const w = waiting;
    waiting = null;
    w?.();
  };
  res.on('data', (c) => {
    queue.push(c);
    if (queue.length >= 4) res.pause();
    wake();
  });
  res.on('end', () => {
    ended = true;
    wake();
  });
  res.on('error', (e) => {
    failure = e;
    wake();
  });
  res.on('close', () => {
    if (!ended) failure ??= new Error('connection closed');
    wake();
  });
  const read = async () => {
    for (;;) {
      if (queue.length) {
        const value = queue.shift();
        if (queue.length < 2) res.resume();
        return { done: false, value };
      }
      if (failure) throw failure;
      if (ended) return { done: true, value: undefined };
      await new Promise((r) => { waiting = r; });
    }
  };
  const cancel = async () => { res.destroy(); };
  const text = async () => {
    const parts = [];
    for (let r; !(r = await read()).done;) parts.push(r.value);
    return Buffer.concat(parts).toString('utf8');
  };
  const get = (k) => {
    const v = res.headers[k.toLowerCase()];
    return v === undefined ? null : Array.isArray(v) ? v.join(', ') : String(v);
  };
  return {
    ok: res.statusCode >= 200 && res.statusCode < 300,
    status: res.statusCode,
    headers: { get },
    body: { getReader: () => ({ read, cancel }), cancel },
    text,
  };
}

// "bytes A-B/TOTAL" -> { start, end, total (or null) }, or null.
function parseContentRange(v) {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(v ?? '');
  return m ? { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) } : null;
}

// A failure worth another try (network error, 5xx, stall).
class Transient extends Error {
  constructor(message, retryAfterMs = null) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

// ---- requests -----------------------------------------------------------------------

// HTTP for the manager: fetch with retries for transient failures, and
// Range downloads that resume where the bytes stopped. fetch: the caller's,
// else node:http in Node (nodeHttpFetch), fetch() elsewhere. counters
// (shared with the caller): requests, retries, networkBytes.
export class Fetcher {
  constructor({ fetch = null, retries = 5, backoffMs = 250, maxBackoffMs = 8000, stallMs = 30000, counters = null } = {}) {
    this.fetch = fetch ?? (isNode() ? nodeHttpFetch : defaultFetch);
    this.retries = retries;
    this.backoffMs = backoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.stallMs = stallMs;
    this.counters = counters ?? { requests: 0, retries: 0, networkBytes: 0 };
  }

  // fetch with retries for transient failures (network errors, 5xx, 429,
  // stalls): resolves to a Response with an ok status (or 206/200 for
  // ranges); permanent ones (404, ...) throw HttpError at once.
  async request(url, headers, signal, retries, what, onRetry = null) {
    for (let failures = 0; ; failures++) {
      try {
        return await this.requestOnce(url, headers, signal, what);
      } catch (e) {
        if (!(e instanceof Transient)) throw e;
        if (failures >= retries) throw this.#giveUp(e, what, failures);
        this.counters.retries++;
        onRetry?.(e);
        await this.#backoff(failures + 1, e.retryAfterMs, signal);
      }
    }
  }

  #giveUp(e, what, failures) {
    const m = /^HTTP (\d+)/.exec(e.message);
    const msg = `${what}: ${e.message}${failures ? ` (after ${failures} retries)` : ''}`;
    return m ? new HttpError(msg, Number(m[1])) : new NetworkError(msg);
  }

  async #backoff(n, retryAfterMs, signal) {
    const exp = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (n - 1));
    const ms = retryAfterMs !== null ? Math.min(retryAfterMs, 30000) : exp * (0.5 + Math.random() / 2);
    try {
      await sleep(ms, signal);
    } catch {
      throw new AbortError('load aborted');
    }
  }

  // One request: the Response, or Transient / HttpError / AbortError. The
  // response headers must come within stallMs.
  async requestOnce(url, headers, signal, what, ctrl = new AbortController()) {
    if (signal?.aborted) throw new AbortError('load aborted');
    const off = onAbort(signal, () => ctrl.abort());
    const timer = setTimeout(() => ctrl.abort(), this.stallMs);
    this.counters.requests++;
    let res;
    try {
      res = await this.fetch(url, { headers, signal: ctrl.signal, cache: 'no-store' });
    } catch (e) {
      if (signal?.aborted) throw new AbortError('load aborted');
      throw new Transient(ctrl.signal.aborted ? `no response from ${url} within ${this.stallMs} ms` : `cannot fetch ${url}: ${e.cause?.message ?? e.message}`);
    } finally {
      clearTimeout(timer);
      off();
    }
    if (res.ok) return res;
    res.body?.cancel().catch(() => {});
    if (TRANSIENT_STATUS.has(res.status) || res.status >= 500) {
      const ra = res.headers.get('retry-after');
      const raMs = ra !== null && /^\d+$/.test(ra.trim()) ? Number(ra) * 1000 : null;
      throw new Transient(`HTTP ${res.status} from ${url}`, raMs);
    }
    throw new HttpError(`${what}: HTTP ${res.status} from ${url}`, res.status);
  }

  // Fetches bytes [from, to) of a file ({ url, file, bytes (null: unknown) })
  // by Range, resuming after failures from where the bytes stopped:
  // consume(chunk, fileOffset) gets them in order (chunk is valid during the
  // call). Returns the facts of the last answer ({ size, etag } when known).
  async download(sh, from, to, consume, signal, { onRetry = null } = {}) {
    let pos = from;
    const facts = { size: null, etag: null };
    for (let failures = 0; pos < to; ) {
      const ctrl = new AbortController();
      const off = onAbort(signal, () => ctrl.abort());
      let consumerError = null;
      let progressed = false;
      try {
        const res = await this.requestOnce(sh.url, { Range: `bytes=${pos}-${to - 1}` }, signal, sh.file, ctrl);
        let skip = 0;
        if (res.status === 206) {
          const cr = parseContentRange(res.headers.get('content-range'));
          if (!cr || cr.start !== pos) {
            res.body?.cancel().catch(() => {});
            throw new Transient(`bad Content-Range ${JSON.stringify(res.headers.get('content-range'))} for bytes=${pos}-`);
          }
          if (cr.total !== null) facts.size = cr.total;
        } else {
          // 200: the server ignored Range; the body starts at byte 0
          skip = pos;
          const cl = res.headers.get('content-length');
          if (cl !== null) facts.size = Number(cl);
        }
        facts.etag = res.headers.get('etag');
        if (facts.size !== null && sh.bytes !== null && facts.size !== sh.bytes)
          throw new IntegrityError(`${sh.file}: the server has ${facts.size} bytes, the manifest says ${sh.bytes}`);
        if (!res.body) throw new Transient('a response without a body');
        const reader = res.body.getReader();
        try {
          while (pos < to) {
            const timer = setTimeout(() => ctrl.abort(), this.stallMs);
            let r;
            try {
              r = await reader.read();
            } finally {
              clearTimeout(timer);
            }
            if (r.done) break;
            let v = r.value;
            if (skip > 0) {
              const n = Math.min(skip, v.length);
              skip -= n;
              v = v.subarray(n);
            }
            if (v.length > to - pos) v = v.subarray(0, to - pos);
            if (v.length === 0) continue;
            this.counters.networkBytes += v.length;
            try {
              await consume(v, pos);
            } catch (e) {
              consumerError = e;
              throw e;
            }
            pos += v.length;
            if (!progressed) {
              progressed = true;
              failures = 0; // bytes arrived: the count of failures in a row starts over
            }
          }
        } finally {
          if (pos >= to || consumerError) reader.cancel().catch(() => {});
        }
        if (pos < to) throw new Transient(`connection closed at byte ${pos} of ${sh.file}`);
      } catch (e) {
        if (consumerError) throw consumerError;
        if (signal?.aborted) throw new AbortError('load aborted');
        let t = e;
        if (!(e instanceof Transient)) {
          if (e instanceof WeightError) throw e;
          t = new Transient(ctrl.signal.aborted ? `no bytes within ${this.stallMs} ms (stalled at byte ${pos})`
            : `${e.cause?.message ?? e.message} at byte ${pos}`);
        }
        if (failures >= this.retries) throw this.#giveUp(t, sh.file, failures);
        failures++;
        this.counters.retries++;
        onRetry?.(t);
        await this.#backoff(failures, t.retryAfterMs, signal);
      } finally {
        off();
      }
    }
    return facts;
  }
}

// ---- shards verified block by block -------------------------------------------------

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

// SHA-256 of bytes as hex: the platform's native digest (SubtleCrypto:
// browsers in secure contexts, Node), else the JS one (a page on plain
// http: no SubtleCrypto). SubtleCrypto hashes off the calling thread (Node:
// its thread pool), which a download Worker needs: node:crypto's hash, fed
// as the bytes arrive, costs ~0.1 s/GB less CPU (no copy of the block), but
// on the Worker's own thread, and one Worker streamed the 1B model's shards
// slower with it (1.54 s instead of 1.31 s, median of 9, 2 cores).
export async function digestHex(u8) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return new Sha256().update(u8).digestHex();
  const d = new Uint8Array(await subtle.digest('SHA-256', u8));
  let s = '';
  for (let i = 0; i < d.length; i++) s += HEX[d[i]];
  return s;
}

// Block buffers in flight per shard: enough to keep the network, the hash
// and the receiver busy at once, few enough that memory stays bounded
// (budget: the bytes they may take together).
export function blockSlots(blockBytes, budget = 12 << 20) { return Math.max(2, Math.min(4, Math.floor(budget / blockBytes))); }

// Downloads one shard whose manifest lists the SHA-256 of each block
// (job.blockBytes each, the last one shorter), or one piece of it: the
// blocks [job.first, job.end), which other pieces' downloads (in other
// Workers) complement. A block is trusted only once its digest matches:
// then it is written at its offset in the store's partial file (when there
// is a store) and handed to deliver(bytes, fileOffset, fromStore) in file
// order (fromStore: how many of its first bytes were read from the partial
// file), which resolves to the block's buffer once the receiver is done with
// it (memory is reused: at most `slots` blocks are in flight). A bad block
// is fetched again alone by Range (integrityAttempts downloads in all, then
// IntegrityError) while the response it came in goes on.
//
// Resume: the partial file's blocks below job.known (its size when the
// shard's download started) are checked again (the file may be damaged, or
// hold holes where another piece had not written yet); each one that still
// verifies is kept, and only the runs of blocks between them are fetched.
// When the file ends inside a block, its bytes there (what arrived of that
// block before an interruption) start that block, checked once it is
// complete. When a piece stops short, what arrived of the block being filled
// is written too, for the next resume. A store whose writers only append
// (the Cache API) cuts the file at its first bad block instead.
//
// The loader does not commit: the caller renames the partial file into
// place (store.commit) once every piece succeeded. The manifest, which
// names every block's hash, is what is trusted, so the whole-file SHA-256 is
// not computed.
//
// slotBytes: the memory the block buffers may take (at least two blocks).
// job: { file, url, bytes, key, blockBytes, blockSha256: [hex], first, end
// (blocks; default: all), known (bytes of the partial file to check;
// default: its size), shared (other pieces write the same partial file at
// once), prefix: { at, bytes } | null (bytes of the file the manager already
// fetched, used when a fetch starts there) }. counters: networkBytes,
// requests, retries (through the fetcher), refetches.
export class BlockLoader {
  constructor(fetcher, { store = null, integrityAttempts = 3, onRetry = null, slotBytes = 12 << 20 } = {}) {
    this.fetcher = fetcher;
    this.slotBytes = slotBytes;
    this.counters = fetcher.counters;
    this.store = store;
    this.integrityAttempts = Math.max(1, integrityAttempts);
    this.onRetry = onRetry;
  }

  async run(job, deliver, signal) {
    const sh = { url: job.url, file: job.file, bytes: job.bytes };
    const B = job.blockBytes;
    const nBlocks = Math.ceil(job.bytes / B);
    if (job.blockSha256.length !== nBlocks) throw new ManifestError(`${job.file}: ${job.blockSha256.length} block hashes for ${nBlocks} blocks`);
    const first = job.first ?? 0;
    const last = job.end ?? nBlocks;
    if (!(first >= 0 && first < last && last <= nBlocks)) throw new WeightError(`${job.file}: bad piece [${first}, ${last}) of ${nBlocks} blocks`);
    const end = (k) => Math.min(job.bytes, (k + 1) * B);
    if (signal?.aborted) throw new AbortError('load aborted'); // (onAbort would not fire)
    const slots = blockSlots(B, this.slotBytes);
    // the block buffers: taken, handed over, given back
    const free = [];
    let made = 0;
    let wake = null;
    let failed = null;
    const fail = (e) => {
      failed ??= e;
      wake?.();
    };
    const acquire = async () => {
      for (;;) {
        if (failed) throw failed;
        if (free.length) return free.pop();
        if (made < slots) {
          made++;
          return new ArrayBuffer(B);
        }
        await new Promise((r) => { wake = r; });
        wake = null;
      }
    };
    const release = (buf) => {
      free.push(buf);
      wake?.();
    };
    // next: the first block not yet handed over (the blocks before it are in the file)
    const st = { w: null, next: first };
    const hand = (u8, k, fromStore) => {
      st.next = k + 1;
      deliver(u8, k * B, fromStore).then(release, fail);
    };
    // an abort also wakes a wait for a buffer (the receiver may keep them)
    const off = onAbort(signal, () => fail(new AbortError('load aborted')));
    let chain = Promise.resolve();
    let cur = null; // the block being filled: { buf, k, fill, fromStore }
    try {
      st.w = this.store ? await this.store.openWriter(job.key, { shared: !!job.shared }) : null;
      const { w } = st;
      let known = w ? Math.min(job.known ?? w.size, w.size) : 0;
      if (known > job.bytes) {
        await w.truncate(0); // not this shard's bytes (the caller clears such a file before pieces share it)
        known = 0;
      }
      // block k from the partial file into buf: true when it verifies
      const check = async (k, buf) => {
        const u8 = new Uint8Array(buf, 0, end(k) - k * B);
        return (await w.readInto(k * B, u8)) === u8.length && (await digestHex(u8)) === job.blockSha256[k];
      };
      const held = (k) => w && end(k) <= known; // the partial file may hold block k
      // blocks [k, j) fetched, verified, stored and handed over in order
      const fetchRun = async (k, j) => {
        let pos = k * B;
        if (w && pos < known && known < end(k)) {
          // the file ends inside block k: what arrived of it before
          cur = { buf: await acquire(), k, fill: known - pos, fromStore: known - pos };
          if ((await w.readInto(pos, new Uint8Array(cur.buf, 0, cur.fill))) === cur.fill) {
            pos = known;
          } else {
            release(cur.buf);
            cur = null;
          }
        }
        const consume = async (chunk, at) => {
          if (failed) throw failed;
          for (let i = 0; i < chunk.length;) {
            if (!cur) {
              const b = Math.floor(at / B);
              cur = { buf: await acquire(), k: b, fill: at - b * B, fromStore: 0 };
            }
            const blockEnd = end(cur.k);
            const n = Math.min(blockEnd - (cur.k * B + cur.fill), chunk.length - i);
            new Uint8Array(cur.buf, cur.fill, n).set(chunk.subarray(i, i + n));
            cur.fill += n;
            i += n;
            at += n;
            if (cur.k * B + cur.fill === blockEnd) {
              const done = cur;
              cur = null;
              chain = chain.then(() => this.#finish(job, sh, w, done, hand, signal));
              chain.catch(fail);
            }
          }
        };
        const p = job.prefix;
        if (p && p.at === pos && p.bytes.length > 0) {
          const bytes = p.bytes.subarray(0, Math.min(p.bytes.length, end(j - 1) - pos));
          await consume(bytes, pos);
          pos += bytes.length;
        }
        if (pos < end(j - 1)) await this.fetcher.download(sh, pos, end(j - 1), consume, signal, { onRetry: this.onRetry });
        await chain;
        if (failed) throw failed;
      };
      for (let k = first; k < last;) {
        if (failed) throw failed;
        if (held(k)) {
          const buf = await acquire();
          if (await check(k, buf)) {
            hand(new Uint8Array(buf, 0, end(k) - k * B), k, end(k) - k * B);
            k++;
            continue;
          }
          release(buf);
          if (!w.positional) {
            // an appending store keeps the blocks before the bad one only
            await w.truncate(k * B);
            known = k * B;
          }
        }
        // fetch up to the next block the file holds intact (checked here,
        // and again when it is handed over: one block more hashed per run)
        let j = k + 1;
        if (w) {
          const buf = await acquire();
          try {
            while (j < last && !(held(j) && (await check(j, buf)))) j++;
          } finally {
            release(buf);
          }
        } else {
          j = last;
        }
        await fetchRun(k, j);
        k = j;
      }
      off();
      if (w) await w.close();
    } catch (e) {
      off();
      fail(e);
      await chain.catch(() => {});
      const { w } = st;
      if (w) {
        // what arrived of the block being filled, when every block before it
        // in this piece is in the file: kept (unverified, like any partial
        // file's end) for the next resume
        if (cur && st.next === cur.k && cur.fill > cur.fromStore)
          await w.writeAt(cur.k * B + cur.fromStore, new Uint8Array(cur.buf, cur.fromStore, cur.fill - cur.fromStore)).catch(() => {});
        if (w.size === 0 && !job.shared) await w.discard().catch(() => {});
        else await w.close().catch(() => {});
      }
      throw e;
    }
  }

  // A filled block: verified (else fetched again alone), stored, handed over.
  async #finish(job, sh, w, block, hand, signal) {
    const B = job.blockBytes;
    const from = block.k * B;
    const to = Math.min(job.bytes, from + B);
    const u8 = new Uint8Array(block.buf, 0, to - from);
    const want = job.blockSha256[block.k];
    let { fromStore } = block; // its first bytes, in the file already
    for (let attempt = 1; ; attempt++) {
      const got = await digestHex(u8);
      if (got === want) break;
      const where = `${job.file}: block ${block.k + 1} of ${job.blockSha256.length} (bytes ${from}-${to - 1})`;
      if (attempt >= this.integrityAttempts)
        throw new IntegrityError(`${where}: SHA-256 ${got}, expected ${want} (${attempt} downloads); the server's copy is damaged`);
      this.counters.refetches = (this.counters.refetches ?? 0) + 1;
      // part of it came from the partial file: an appending store drops those bytes
      if (w && fromStore > 0 && !w.positional) await w.truncate(from);
      fromStore = 0;
      await this.fetcher.download(sh, from, to, (chunk, at) => { u8.set(chunk, at - from); }, signal, { onRetry: this.onRetry });
    }
    if (w) await w.writeAt(from + fromStore, u8.subarray(fromStore));
    hand(u8, block.k, fromStore);
  }
}

// ---- Workers ------------------------------------------------------------------------

// Starts a module Worker (browsers) or a worker_thread (Node) running the
// module at url, which posts { ready: true, features? } once listening.
// Resolves to { post(msg, transfer), terminate(), busy(bool), features }
// once ready; onMessage gets every later message; onError a failure of the
// worker.
export async function spawnWorker(url, onMessage, onError) {
  let ready;
  let features = null;
  const started = new Promise((resolve, reject) => { ready = { resolve, reject }; });
  const fail = (e) => {
    const err = e instanceof Error ? e : new Error(`worker: ${e?.message ?? e}`);
    ready.reject(err);
    onError(err);
  };
  const receive = (m) => {
    if (m?.ready) {
      features = m.features ?? null;
      ready.resolve();
    } else {
      onMessage(m);
    }
  };
  let handle;
  if (isNode()) {
    const { Worker } = await import('node:worker_threads');
    // not the parent's --input-type, --eval ...: the worker is a module file;
    // and none at all where Node refuses some for workers (V8 flags such as
    // --expose-gc, which apply to the whole process anyway)
    const execArgv = process.execArgv.filter((a) => !/^--(input-type|eval|print)\b|^-[ep]$/.test(a));
    let w;
    try {
      w = new Worker(url, { execArgv });
    } catch (e) {
      if (e?.code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw e;
      w = new Worker(url, { execArgv: [] });
    }
    w.on('message', receive);
    w.on('error', fail);
    w.unref(); // an idle worker does not keep Node running
    handle = {
      post: (m, transfer) => w.postMessage(m, transfer),
      terminate: () => w.terminate(),
      busy: (b) => (b ? w.ref() : w.unref()),
    };
  } else {
    const w = new Worker(url, { type: 'module' });
    w.onmessage = ({ data }) => receive(data);
    w.onerror = (e) => {
      e.preventDefault?.();
      fail(e);
    };
    handle = { post: (m, transfer) => w.postMessage(m, transfer), terminate: () => w.terminate(), busy: () => {} };
  }
  const timer = setTimeout(() => fail(new Error('worker did not start')), 10000);
  try {
    await started;
  } catch (e) {
    handle.terminate();
    throw e;
  } finally {
    clearTimeout(timer);
  }
  handle.features = features;
  return handle;
}

// Errors cross the Worker boundary as { name, message, status, needed,
// available } and become the same classes again.
const ERRORS = { WeightError, HttpError, NetworkError, IntegrityError, ManifestError, QuotaError, AbortError };
export function errorToMessage(e) {
  return { name: e?.name ?? 'Error', message: e?.message ?? String(e), status: e?.status ?? null, needed: e?.needed ?? null, available: e?.available ?? null };
}
export function errorFromMessage(m) {
  if (m.name === 'HttpError') return new HttpError(m.message, m.status);
  if (m.name === 'QuotaError') return new QuotaError(m.message, { needed: m.needed, available: m.available });
  const C = ERRORS[m.name];
  if (C) return new C(m.message);
  const e = new Error(m.message);
  e.name = m.name; // e.g. QuotaExceededError from a store
  return e;
}

// The download Workers (download-worker.mjs): each runs BlockLoader jobs
// (whole shards, or pieces of one), fetching, hashing and storing there;
// this thread gets the verified blocks (transferred, not copied) and gives
// each buffer back when the sink is done with it, which bounds the memory
// in flight. features: what the Workers offer the stores (writeFeatures()).
export class DownloadPool {
  // n workers, or null where Workers cannot start (then the caller runs
  // the same downloads in its own thread).
  static async create(n) {
    if (!(n >= 1)) return null;
    if (!isNode() && typeof Worker === 'undefined') return null;
    const pool = new DownloadPool();
    const url = new URL('./download-worker.mjs', import.meta.url);
    try {
      pool.workers = await Promise.all(Array.from({ length: n }, async () => {
        const entry = { load: 0, handle: null };
        entry.handle = await spawnWorker(url, (m) => pool.#receive(m), (e) => pool.#crashed(entry, e));
        return entry;
      }));
    } catch {
      pool.close();
      return null;
    }
    pool.features = pool.workers[0].handle.features;
    return pool;
  }

  constructor() {
    this.workers = [];
    this.jobs = new Map(); // id -> { worker, handlers, queue, resolve, reject }
    this.ids = 0;
    this.features = null;
  }

  // Runs a BlockLoader job on the least busy worker. options: { store
  // (openStore() arguments, or null), retries, backoffMs, maxBackoffMs,
  // stallMs, integrityAttempts }. handlers: block(u8, at, fromStore) ->
  // promise (the bytes are valid until it settles), counters(delta), retry().
  run(job, options, handlers, signal) {
    const entry = this.workers.reduce((a, b) => (b.load < a.load ? b : a));
    const id = ++this.ids;
    return new Promise((resolve, reject) => {
      const j = { entry, handlers, queue: Promise.resolve(), resolve, reject, off: null, stopped: null };
      this.jobs.set(id, j);
      entry.load++;
      entry.handle.busy(true);
      j.off = onAbort(signal, () => this.#stop(id, new AbortError('load aborted')));
      entry.handle.post({ op: 'run', id, job, options });
    });
  }

  // Asks the worker to stop the job; it ends (with `error`) when the worker
  // says it stopped, so that its partial file is closed by then.
  #stop(id, error) {
    const j = this.jobs.get(id);
    if (!j || j.stopped) return;
    j.stopped = error;
    j.entry.handle.post({ op: 'abort', id });
  }

  #end(id, error) {
    const j = this.jobs.get(id);
    if (!j) return;
    this.jobs.delete(id);
    j.off?.();
    j.entry.load--;
    if (j.entry.load === 0) j.entry.handle.busy(false);
    error = j.stopped ?? error;
    if (error) j.reject(error);
    else j.resolve();
  }

  #receive(m) {
    const j = this.jobs.get(m.id);
    if (!j) return;
    if (m.counters) j.handlers.counters(m.counters);
    if (m.type === 'block') {
      // in order, one at a time; the buffer goes back once the sink is done
      j.queue = j.queue.then(async () => {
        if (j.stopped) return;
        await j.handlers.block(new Uint8Array(m.buf, 0, m.length), m.at, m.fromStore);
        j.entry.handle.post({ op: 'free', id: m.id, buf: m.buf }, [m.buf]);
      }).catch((e) => this.#stop(m.id, e));
    } else if (m.type === 'retry') {
      j.handlers.retry?.();
    } else if (m.type === 'done' || m.type === 'error') {
      // after the blocks before it reached the sink
      j.queue.then(() => this.#end(m.id, m.type === 'error' ? errorFromMessage(m.error) : null));
    }
  }

  #crashed(entry, e) {
    for (const [id, j] of this.jobs) if (j.entry === entry) this.#end(id, new WeightError(`download worker failed: ${e.message}`));
  }

  close() {
    for (const w of this.workers) w.handle?.terminate();
    this.workers = [];
  }
}
