// store-cache.mjs - the StreamWeightManager's cache in the Cache API, for
// browsers without OPFS (the store interface is described in
// store-opfs.mjs). The Cache API keeps whole responses and cannot append or
// rename, so a shard is kept as segments:
//   .../seg/KEY/I      segment I of the shard's bytes (SEGMENT bytes, the last shorter)
//   .../len/KEY/I      its length, written once the segment is stored whole
//   .../blob/KEY       the index {bytes, segments}: written only after the
//                      shard's SHA-256 was checked. Without it the segments
//                      are a partial download, never a cached shard.
//   .../rec/ID         a model's record
// Each segment is written by one streaming cache.put(), so no more than a
// few chunks are in memory; a download resumes from the last whole segment.
// Writers append only (writeAt at their end): a shard is never written by
// several Workers at once here (sharedWrites() is false; the manager does
// not split shards into pieces for this store).

import { storeRecordName } from './store-common.mjs';

const SEGMENT = 8 << 20;
const BASE = 'https://stream-llm.cache/';

export class CacheStore {
  static async open(name = 'stream-llm', { segmentBytes = SEGMENT } = {}) {
    const store = new CacheStore();
    store.kind = 'cache';
    store.name = name;
    store.cache = await caches.open(name);
    store.segmentBytes = segmentBytes;
    return store;
  }

  workerSpec() { return { kind: 'cache', name: this.name, segmentBytes: this.segmentBytes }; }

  sharedWrites() { return false; }

  #url(kind, key, i = null) { return `${BASE}${kind}/${key}${i === null ? '' : `/${i}`}`; }

  async #json(url) {
    const r = await this.cache.match(url);
    return r ? r.json() : null;
  }

  // Lengths of the whole segments 0..n-1 of a key (stops at the first gap).
  async #segments(key) {
    const out = [];
    for (let i = 0; ; i++) {
      const r = await this.cache.match(this.#url('len', key, i));
      if (!r) return out;
      out.push(Number(await r.text()));
    }
  }

  async stat(key) {
    const index = await this.#json(this.#url('blob', key));
    if (index) return { complete: index.bytes, partial: 0 };
    const segs = await this.#segments(key);
    return { complete: null, partial: segs.reduce((a, b) => a + b, 0) };
  }

  // Reads across segments; each segment's Blob is kept (Blobs of cached
  // responses are handles to the disk, not copies in memory).
  #rangeReader(key, lengths) {
    const blobs = new Map();
    const starts = [];
    let at = 0;
    for (const n of lengths) {
      starts.push(at);
      at += n;
    }
    const size = at;
    const blobOf = async (i) => {
      if (!blobs.has(i)) {
        const r = await this.cache.match(this.#url('seg', key, i));
        if (!r) throw new Error(`segment ${i} of ${key} is missing`);
        blobs.set(i, await r.blob());
      }
      return blobs.get(i);
    };
    return {
      size,
      async readInto(offset, dest) {
        let done = 0;
        let i = starts.findLastIndex((s) => s <= offset);
        while (done < dest.length && i >= 0 && i < lengths.length) {
          const from = offset + done - starts[i];
          const n = Math.min(lengths[i] - from, dest.length - done);
          const buf = new Uint8Array(await (await blobOf(i)).slice(from, from + n).arrayBuffer());
          dest.set(buf, done);
          done += buf.length;
          if (buf.length < n) break;
          i++;
        }
        return done;
      },
      close: async () => blobs.clear(),
    };
  }

  async openReader(key) {
    const index = await this.#json(this.#url('blob', key));
    if (!index) throw new Error(`no cached blob ${key}`);
    return this.#rangeReader(key, await this.#segments(key));
  }

  async openWriter(key) {
    const store = this;
    let lengths = await this.#segments(key);
    let committed = lengths.reduce((a, b) => a + b, 0);
    let reader = this.#rangeReader(key, lengths);
    // the segment being written: a stream whose put() stores it when closed
    let seg = null;
    const startSegment = () => {
      let controller;
      let pulled = null;
      const stream = new ReadableStream({
        start(c) { controller = c; },
        pull() {
          pulled?.();
          pulled = null;
        },
      }, { highWaterMark: 4 });
      const i = lengths.length;
      const put = store.cache.put(store.#url('seg', key, i), new Response(stream));
      put.catch(() => {});
      seg = {
        i, bytes: 0, put, controller,
        // resolves when the stream wants more (bounded memory)
        room: () => (controller.desiredSize > 0 ? null : new Promise((r) => { pulled = r; })),
      };
    };
    const endSegment = async () => {
      if (!seg) return;
      const s = seg;
      seg = null;
      s.controller.close();
      await s.put;
      await store.cache.put(store.#url('len', key, s.i), new Response(String(s.bytes)));
      lengths = [...lengths, s.bytes];
      committed += s.bytes;
    };
    return {
      positional: false,
      get size() { return committed + (seg ? seg.bytes : 0); },
      readInto: (offset, dest) => reader.readInto(offset, dest),
      async writeAt(offset, u8) {
        if (offset !== this.size) throw new Error(`the Cache API store appends only (a write at ${offset}, its end is ${this.size})`);
        return this.write(u8);
      },
      async write(u8) {
        let done = 0;
        while (done < u8.length) {
          if (!seg) startSegment();
          const n = Math.min(store.segmentBytes - seg.bytes, u8.length - done);
          seg.controller.enqueue(u8.slice(done, done + n)); // a copy: the caller reuses u8
          seg.bytes += n;
          done += n;
          const wait = seg.room();
          if (wait) await Promise.race([wait, seg.put]);
          if (seg.bytes === store.segmentBytes) await endSegment();
        }
      },
      // Keeps the first n bytes: the segments below n, the one holding n cut
      // short (written again from its own Blob, which is on disk).
      async truncate(n) {
        if (n === 0) {
          await this.discard();
          lengths = [];
          committed = 0;
          reader = store.#rangeReader(key, lengths);
          return;
        }
        await endSegment();
        if (n >= committed) return;
        let i = 0;
        let at = 0;
        while (at + lengths[i] <= n) at += lengths[i++];
        // the lengths from segment i on go first: a crash leaves a shorter
        // partial download, never a length that disagrees with its segment
        for (let j = i; j < lengths.length; j++) await store.cache.delete(store.#url('len', key, j));
        for (let j = i + 1; j < lengths.length; j++) await store.cache.delete(store.#url('seg', key, j));
        const kept = lengths.slice(0, i);
        if (n > at) {
          const r = await store.cache.match(store.#url('seg', key, i));
          const head = (await r.blob()).slice(0, n - at);
          await store.cache.put(store.#url('seg', key, i), new Response(head));
          await store.cache.put(store.#url('len', key, i), new Response(String(n - at)));
          kept.push(n - at);
        } else {
          await store.cache.delete(store.#url('seg', key, i));
        }
        lengths = kept;
        committed = n;
        reader = store.#rangeReader(key, lengths);
      },
      async commit() {
        await endSegment();
        await store.#putIndex(key, lengths);
      },
      async discard() {
        if (seg) {
          seg.controller.error(new Error('discarded'));
          seg = null;
        }
        await store.delete(key);
      },
      close: endSegment, // keeps what arrived: a later load resumes after it
    };
  }

  // The segments stored become the shard (every writer of it closed).
  async commit(key) { await this.#putIndex(key, await this.#segments(key)); }

  async #putIndex(key, lengths) {
    const bytes = lengths.reduce((a, b) => a + b, 0);
    await this.cache.put(this.#url('blob', key), new Response(JSON.stringify({ bytes, segments: lengths.length })));
  }

  async delete(key) {
    await this.cache.delete(this.#url('blob', key));
    for (const req of await this.cache.keys()) {
      const u = req.url;
      if (u.startsWith(this.#url('seg', key) + '/') || u.startsWith(this.#url('len', key) + '/')) await this.cache.delete(req);
    }
  }

  async blobs() {
    const complete = new Map();
    const partial = new Map();
    for (const req of await this.cache.keys()) {
      const m = /^https:\/\/stream-llm\.cache\/(blob|len)\/([^/]+)(?:\/\d+)?$/.exec(req.url);
      if (!m) continue;
      const r = await this.cache.match(req);
      if (m[1] === 'blob') complete.set(m[2], (await r.json()).bytes);
      else partial.set(m[2], (partial.get(m[2]) ?? 0) + Number(await r.text()));
    }
    const out = [];
    for (const [key, bytes] of complete) out.push({ key, bytes, complete: true });
    for (const [key, bytes] of partial) if (!complete.has(key)) out.push({ key, bytes, complete: false });
    return out;
  }

  async getRecord(id) { return this.#json(this.#url('rec', storeRecordName(id))); }

  async putRecord(id, record) {
    await this.cache.put(this.#url('rec', storeRecordName(id)), new Response(JSON.stringify(record), { headers: { 'Content-Type': 'application/json' } }));
  }

  async deleteRecord(id) { await this.cache.delete(this.#url('rec', storeRecordName(id))); }

  async records() {
    const out = [];
    for (const req of await this.cache.keys()) {
      if (!req.url.startsWith(`${BASE}rec/`)) continue;
      try {
        out.push(await (await this.cache.match(req)).json());
      } catch {
        // damaged: not listed
      }
    }
    return out;
  }

  async estimate() { return navigator.storage?.estimate ? navigator.storage.estimate() : null; }

  async persist() { return navigator.storage?.persist ? navigator.storage.persist() : false; }
}
