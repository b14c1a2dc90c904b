// rendezvous.mjs - joins the two directions weights travel in: the
// StreamWeightManager (weights.mjs) pushes each tensor's bytes in chunks
// (sink.tensor), while a backend that places weights itself (the WebGPU
// backend's load/newContext, src/wasm/README.md "The JS backend contract")
// pulls them through byte sources (readInto(offset, dest)). Each pushed
// chunk waits (its promise stays pending) until the puller has copied it, so
// nothing is buffered beyond the chunks in flight, one per shard being
// downloaded, and the download is held back while the backend is busy.
//
// Assumptions, true of both sides: the manager gives each file's tensor
// bytes in increasing offsets within each piece of the file (files, and the
// pieces of a large file, in parallel); the puller reads tensor ranges of
// file 0, then file 1, ..., each in increasing offsets, and may skip tensors
// (then their chunks are let go as it moves past them, or as they arrive
// after it did).

import { EngineError } from './wasm.mjs';

// Adds bytes [from, to) to a file's pushed ranges (sorted, disjoint, merged
// when they touch: about one per piece of the file). True when some of them
// were there already.
function markPushed(ranges, from, to) {
  let i = 0;
  while (i < ranges.length && ranges[i][1] < from) i++;
  let j = i;
  let again = false;
  let lo = from;
  let hi = to;
  for (; j < ranges.length && ranges[j][0] <= to; j++) {
    if (ranges[j][0] < to && ranges[j][1] > from) again = true;
    lo = Math.min(lo, ranges[j][0]);
    hi = Math.max(hi, ranges[j][1]);
  }
  ranges.splice(i, j - i, [lo, hi]);
  return again;
}

export class TensorRendezvous {
  constructor() {
    this.files = new Map(); // file -> { chunks: [{ pos, chunk, release }], pushed: [[from, to]] }
    this.readFile = 0;      // the file the puller reads now
    this.readPos = 0;       // where in it
    this.waiter = null;     // wakes the puller when chunks arrive
    this.error = null;
    this.closed = false;
  }

  #file(k) {
    let f = this.files.get(k);
    if (!f) {
      f = { chunks: [], pushed: [] };
      this.files.set(k, f);
    }
    return f;
  }

  #wake() {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  // Producer: bytes at pos of file k. Resolves once the puller copied them
  // (or went past them); rejects when the rendezvous failed.
  push(k, pos, chunk) {
    if (this.error) return Promise.reject(this.error);
    const f = this.#file(k);
    const again = markPushed(f.pushed, pos, pos + chunk.length);
    if (this.closed || k < this.readFile || (k === this.readFile && pos + chunk.length <= this.readPos)) {
      if (again) {
        // bytes given again (a shard refetched after a failed check), but
        // the backend took the first ones already
        return Promise.reject(Object.assign(new EngineError(`file ${k + 1}: bytes at ${pos} arrived again after the backend had taken them; load the model again`), { name: 'IntegrityError' }));
      }
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      f.chunks.push({ pos, chunk, release: resolve, fail: reject });
      this.#wake();
    });
  }

  // Lets go of every chunk before (k, pos).
  #advance(k, pos) {
    for (const [j, f] of this.files) {
      if (j > k) continue;
      f.chunks = f.chunks.filter((c) => {
        if (j < k || c.pos + c.chunk.length <= pos) {
          c.release();
          return false;
        }
        return true;
      });
    }
    this.readFile = k;
    this.readPos = pos;
  }

  // Puller: fills dest with bytes [offset, offset + dest.length) of file k.
  async readInto(k, offset, dest) {
    if (k < this.readFile || (k === this.readFile && offset < this.readPos))
      throw new EngineError(`weights read out of order (file ${k + 1} at ${offset} after file ${this.readFile + 1} at ${this.readPos})`);
    this.#advance(k, offset);
    const f = this.#file(k);
    for (let filled = 0; filled < dest.length;) {
      if (this.error) throw this.error;
      const want = offset + filled;
      const c = f.chunks.find((x) => x.pos <= want && want < x.pos + x.chunk.length);
      if (!c) {
        if (this.closed) throw new EngineError(`file ${k + 1}: bytes at ${want} never arrived`);
        await new Promise((r) => { this.waiter = r; });
        continue;
      }
      const n = Math.min(c.pos + c.chunk.length - want, dest.length - filled);
      dest.set(c.chunk.subarray(want - c.pos, want - c.pos + n), filled);
      filled += n;
      this.readPos = want + n;
      if (this.readPos >= c.pos + c.chunk.length) {
        f.chunks.splice(f.chunks.indexOf(c), 1);
        c.release();
      }
    }
  }

  // A byte source (engine.mjs's contract) for file k of `size` bytes.
  source(k, size, name) {
    return { name, size, readInto: (offset, dest) => this.readInto(k, offset, dest) };
  }

  // Either side failed: the other stops waiting.
  fail(error) {
    if (this.error) return;
    this.error = error;
    for (const f of this.files.values()) for (const c of f.chunks.splice(0)) c.fail(error);
    this.#wake();
  }

  // The puller is done: later chunks pass straight through; a puller still
  // waiting learns that no more bytes come.
  close() {
    this.closed = true;
    for (const f of this.files.values()) for (const c of f.chunks.splice(0)) c.release();
    this.#wake();
  }
}
