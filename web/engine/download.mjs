// download.mjs - the StreamWeightManager's (weights.mjs) network side: HTTP
// Range requests with retries, backoff, stall detection and resume
// (Fetcher); the download of a shard whose manifest lists a SHA-256 per
// block, verified block by block with the platform's native SHA-256
// (BlockLoader); and the Workers that run those downloads off the
// manager's thread (DownloadPool, download-worker.mjs). The same
// BlockLoader runs in a Worker or, where Workers are missing, in the
// manager's own thread. Plain ES module: browsers (pages, Workers) and Node.

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
// http: no SubtleCrypto).
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
// (job.blockBytes each, the last one shorter). A block is trusted only once
// its digest matches: then it is appended to the store's partial file (when
// there is a store) and handed to deliver(bytes, fileOffset, fromStore) in
// file order (fromStore: how many of its first bytes were read from the
// partial file), which resolves to the block's buffer once the receiver is
// done with it (memory is reused: at most `slots` blocks are in flight). A
// bad block is fetched again alone by Range (integrityAttempts downloads in
// all, then IntegrityError) while the response it came in goes on. A
// partial file from an earlier load keeps its blocks that still verify and
// the bytes after them (the start of the next block, checked once that block
// is complete); the download resumes there. When the download stops short,
// what arrived of the block being filled is appended for the next resume.
// When every block has verified the partial file is renamed into place: the
// manifest, which names every block's hash, is what is trusted, so the
// whole-file SHA-256 is not computed again.
//
// slotBytes: the memory the block buffers may take (at least two blocks).
// job: { file, url, bytes, key, blockBytes, blockSha256: [hex], prefix:
// { at, bytes } | null (bytes of the file the manager already fetched,
// used when the download starts there) }. counters: networkBytes,
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
    const end = (k) => Math.min(job.bytes, (k + 1) * B);
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
    const hand = (u8, at, fromStore) => {
      deliver(u8, at, fromStore).then(release, fail);
    };
    // an abort also wakes a wait for a buffer (the receiver may keep them)
    const off = onAbort(signal, () => fail(new AbortError('load aborted')));
    // w: the partial file; stored: the bytes it holds (blocks are appended in order)
    const st = { w: this.store ? await this.store.openWriter(job.key) : null, stored: 0 };
    const { w } = st;
    let chain = Promise.resolve();
    let cur = null; // the block being filled: { buf, k, fill, fromStore }
    try {
      let next = 0; // the first block not yet delivered
      if (w) {
        if (w.size > job.bytes) await w.truncate(0);
        st.stored = w.size;
        // the partial file's whole blocks, each checked again (the file may
        // come from an older version of the manager, or be damaged)
        let bad = false;
        for (let k = 0; end(k) <= st.stored && k < nBlocks && !bad; k++) {
          if (signal?.aborted) throw new AbortError('load aborted');
          const buf = await acquire();
          const u8 = new Uint8Array(buf, 0, end(k) - k * B);
          bad = (await w.readInto(k * B, u8)) !== u8.length || (await digestHex(u8)) !== job.blockSha256[k];
          if (bad) {
            release(buf);
          } else {
            hand(u8, k * B, u8.length);
            next = k + 1;
          }
        }
        // what follows: the start of block `next`, unless a block was bad
        const tail = st.stored - next * B;
        if (tail > 0 && !bad) {
          cur = { buf: await acquire(), k: next, fill: tail, fromStore: tail };
          bad = (await w.readInto(next * B, new Uint8Array(cur.buf, 0, tail))) !== tail;
          if (bad) {
            release(cur.buf);
            cur = null;
          }
        }
        if (bad) {
          await w.truncate(next * B);
          st.stored = next * B;
        }
      }
      if (next < nBlocks) {
        let pos = next * B + (cur ? cur.fill : 0);
        const consume = async (chunk, at) => {
          if (failed) throw failed;
          for (let i = 0; i < chunk.length;) {
            if (!cur) {
              const k = Math.floor(at / B);
              cur = { buf: await acquire(), k, fill: at - k * B, fromStore: 0 };
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
              chain = chain.then(() => this.#finish(job, sh, st, done, hand, signal));
              chain.catch(fail);
            }
          }
        };
        const p = job.prefix;
        if (p && p.at === pos && p.bytes.length > 0) {
          const bytes = p.bytes.subarray(0, Math.min(p.bytes.length, job.bytes - pos));
          await consume(bytes, pos);
          pos += bytes.length;
        }
        if (pos < job.bytes) await this.fetcher.download(sh, pos, job.bytes, consume, signal, { onRetry: this.onRetry });
        await chain;
        if (failed) throw failed;
      }
      if (w) await w.commit();
      off();
    } catch (e) {
      off();
      fail(e);
      await chain.catch(() => {});
      if (w) {
        // what arrived of the block being filled, after every block before
        // it: kept (unverified, like any partial file) for the next resume
        const have = cur ? st.stored - cur.k * B : -1;
        if (cur && have >= 0 && have < cur.fill) await w.write(new Uint8Array(cur.buf, have, cur.fill - have)).catch(() => {});
        if (w.size === 0) await w.discard().catch(() => {});
        else await w.close().catch(() => {});
      }
      throw e;
    }
  }

  // A filled block: verified (else fetched again alone), stored, handed over.
  async #finish(job, sh, st, block, hand, signal) {
    const B = job.blockBytes;
    const from = block.k * B;
    const to = Math.min(job.bytes, from + B);
    const u8 = new Uint8Array(block.buf, 0, to - from);
    const want = job.blockSha256[block.k];
    let fromStore = block.fromStore;
    for (let attempt = 1; ; attempt++) {
      const got = await digestHex(u8);
      if (got === want) break;
      const where = `${job.file}: block ${block.k + 1} of ${job.blockSha256.length} (bytes ${from}-${to - 1})`;
      if (attempt >= this.integrityAttempts)
        throw new IntegrityError(`${where}: SHA-256 ${got}, expected ${want} (${attempt} downloads); the server's copy is damaged`);
      this.counters.refetches = (this.counters.refetches ?? 0) + 1;
      if (st.w && st.stored > from) {
        // part of it came from the partial file: those bytes go too
        await st.w.truncate(from);
        st.stored = from;
      }
      fromStore = 0;
      await this.fetcher.download(sh, from, to, (chunk, at) => { u8.set(chunk, at - from); }, signal, { onRetry: this.onRetry });
    }
    if (st.w && to > st.stored) {
      await st.w.write(u8.subarray(Math.max(0, st.stored - from)));
      st.stored = to;
    }
    hand(u8, from, fromStore);
  }
}

// ---- Workers ------------------------------------------------------------------------

// Starts a module Worker (browsers) or a worker_thread (Node) running the
// module at url, which posts { ready: true } once listening. Resolves to
// { post(msg, transfer), terminate(), busy(bool) } once ready; onMessage
// gets every later message; onError a failure of the worker.
export async function spawnWorker(url, onMessage, onError) {
  let ready;
  const started = new Promise((resolve, reject) => { ready = { resolve, reject }; });
  const fail = (e) => {
    const err = e instanceof Error ? e : new Error(`worker: ${e?.message ?? e}`);
    ready.reject(err);
    onError(err);
  };
  const receive = (m) => {
    if (m?.ready) ready.resolve();
    else onMessage(m);
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

// The download Workers (download-worker.mjs): each runs whole shards
// (BlockLoader), fetching, hashing and storing there; this thread gets the
// verified blocks (transferred, not copied) and gives each buffer back when
// the sink is done with it, which bounds the memory in flight.
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
    return pool;
  }

  constructor() {
    this.workers = [];
    this.jobs = new Map(); // id -> { worker, handlers, queue, resolve, reject }
    this.ids = 0;
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
