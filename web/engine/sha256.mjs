// sha256.mjs - incremental SHA-256 (FIPS 180-4) for hashing a shard while it
// streams in, for shards whose manifest has no block hashes (older
// manifests, plain .gguf URLs; shards with block hashes are checked block by
// block with SubtleCrypto, see download.mjs). SubtleCrypto only digests a
// whole buffer at once, which would mean holding a whole shard in memory;
// this one takes the bytes in any pieces. In Node, newSha256() uses node:crypto's native hash instead (same
// results, several times faster); the JS one is what browsers run.

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const INIT = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

// The hash state: eight words, a 64-byte block buffer, the message length.
export class Sha256 {
  constructor() {
    this.h = new Int32Array(INIT);
    this.w = new Int32Array(64);
    this.block = new Uint8Array(64);
    this.blockLen = 0;
    this.length = 0; // bytes so far (exact to 2^53)
    this.finished = false;
  }

  // Compresses the 64-byte blocks of buf starting at pos, n of them.
  #compress(buf, pos, n) {
    const w = this.w;
    const h = this.h;
    let h0 = h[0], h1 = h[1], h2 = h[2], h3 = h[3], h4 = h[4], h5 = h[5], h6 = h[6], h7 = h[7];
    for (let blk = 0; blk < n; blk++, pos += 64) {
      for (let i = 0; i < 16; i++) {
        const j = pos + 4 * i;
        w[i] = (buf[j] << 24) | (buf[j + 1] << 16) | (buf[j + 2] << 8) | buf[j + 3];
      }
      for (let i = 16; i < 64; i++) {
        const x = w[i - 15];
        const y = w[i - 2];
        const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
      }
      let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, hh = h7;
      for (let i = 0; i < 64; i++) {
        const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const ch = g ^ (e & (f ^ g));
        const t1 = (hh + S1 + ch + K[i] + w[i]) | 0;
        const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const maj = (a & b) | (c & (a | b));
        const t2 = (S0 + maj) | 0;
        hh = g;
        g = f;
        f = e;
        e = (d + t1) | 0;
        d = c;
        c = b;
        b = a;
        a = (t1 + t2) | 0;
      }
      h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
      h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + hh) | 0;
    }
    h[0] = h0; h[1] = h1; h[2] = h2; h[3] = h3; h[4] = h4; h[5] = h5; h[6] = h6; h[7] = h7;
  }

  // Adds bytes (a Uint8Array). Returns this.
  update(data) {
    if (this.finished) throw new Error('sha256: update after digest');
    let pos = 0;
    const len = data.length;
    this.length += len;
    if (this.blockLen > 0) {
      const take = Math.min(64 - this.blockLen, len);
      this.block.set(data.subarray(0, take), this.blockLen);
      this.blockLen += take;
      pos = take;
      if (this.blockLen < 64) return this;
      this.#compress(this.block, 0, 1);
      this.blockLen = 0;
    }
    const whole = Math.floor((len - pos) / 64);
    if (whole > 0) {
      this.#compress(data, pos, whole);
      pos += whole * 64;
    }
    if (pos < len) {
      this.block.set(data.subarray(pos), 0);
      this.blockLen = len - pos;
    }
    return this;
  }

  // The digest as 32 bytes; the hash cannot be updated afterwards.
  digest() {
    if (this.finished) throw new Error('sha256: digest twice');
    const bitsHi = Math.floor(this.length / 0x20000000); // length * 8 / 2^32
    const bitsLo = (this.length * 8) >>> 0;
    const pad = new Uint8Array(((this.blockLen + 9 + 63) & ~63) - this.blockLen);
    pad[0] = 0x80;
    const n = pad.length;
    pad[n - 8] = bitsHi >>> 24; pad[n - 7] = bitsHi >>> 16; pad[n - 6] = bitsHi >>> 8; pad[n - 5] = bitsHi;
    pad[n - 4] = bitsLo >>> 24; pad[n - 3] = bitsLo >>> 16; pad[n - 2] = bitsLo >>> 8; pad[n - 1] = bitsLo;
    const len = this.length;
    this.update(pad);
    this.length = len;
    this.finished = true;
    const out = new Uint8Array(32);
    for (let i = 0; i < 8; i++) {
      out[4 * i] = this.h[i] >>> 24;
      out[4 * i + 1] = this.h[i] >>> 16;
      out[4 * i + 2] = this.h[i] >>> 8;
      out[4 * i + 3] = this.h[i];
    }
    return out;
  }

  digestHex() { return toHex(this.digest()); }
}

export function toHex(bytes) {
  let s = '';
  for (const b of bytes) s += (b < 16 ? '0' : '') + b.toString(16);
  return s;
}

// Node's native hash behind the same interface.
class NodeSha256 {
  constructor(createHash) { this.h = createHash('sha256'); }
  update(data) {
    this.h.update(data);
    return this;
  }
  digest() { return new Uint8Array(this.h.digest()); }
  digestHex() { return this.h.digest('hex'); }
}

let nodeCreateHash; // undefined: not looked for yet; null: not in Node

// A new incremental hash: { update(u8), digestHex() }. Native in Node,
// the JS Sha256 elsewhere (or always, with { js: true }).
export async function newSha256({ js = false } = {}) {
  if (!js) {
    if (nodeCreateHash === undefined) {
      nodeCreateHash = null;
      if (globalThis.process?.versions?.node) {
        try {
          nodeCreateHash = (await import('node:crypto')).createHash;
        } catch {
          nodeCreateHash = null;
        }
      }
    }
    if (nodeCreateHash) return new NodeSha256(nodeCreateHash);
  }
  return new Sha256();
}

// ---- hashing off the calling thread ---------------------------------------
// A pool of Workers (sha256-worker.mjs) that hash while the calling thread
// goes on receiving and storing: hashing is the largest cost of a verified
// download (the JS hash runs at ~250 MB/s). Bytes reach a worker through a
// few SharedArrayBuffer slots per hash; each hash is bound to one worker,
// so its bytes are hashed in order.

export class HashPool {
  // n workers, or null where Workers or shareable memory are missing (a
  // page that is not cross-origin isolated): then hash inline.
  static async create(n) {
    if (!(n >= 1) || typeof SharedArrayBuffer === 'undefined' || globalThis.crossOriginIsolated === false) return null;
    const { spawnWorker, isNode } = await import('./download.mjs'); // (a static import would be a cycle)
    if (!isNode() && typeof Worker === 'undefined') return null;
    const url = new URL('./sha256-worker.mjs', import.meta.url);
    const workers = [];
    try {
      for (let i = 0; i < n; i++) {
        const w = { pending: new Map(), handle: null };
        const fail = (e) => {
          for (const p of w.pending.values()) p.reject(e);
          w.pending.clear();
        };
        w.handle = await spawnWorker(url, (m) => {
          const p = w.pending.get(m.seq);
          if (!p) return;
          w.pending.delete(m.seq);
          if (w.pending.size === 0) w.handle.busy(false); // an idle pool does not keep Node running
          if (m.error) p.reject(new Error(`hash worker: ${m.error}`));
          else p.resolve(m);
        }, (e) => fail(new Error(`hash worker: ${e.message}`)));
        workers.push(w);
      }
    } catch {
      for (const w of workers) w.handle.terminate();
      return null;
    }
    return new HashPool(workers);
  }

  constructor(workers) {
    this.workers = workers;
    this.next = 0;
    this.ids = 0;
    this.seq = 0;
  }

  request(w, msg) {
    msg.seq = ++this.seq;
    return new Promise((resolve, reject) => {
      w.pending.set(msg.seq, { resolve, reject });
      w.handle.busy(true);
      w.handle.post(msg);
    });
  }

  // A new hash: update(u8) copies the bytes into one of `slots` shared
  // buffers of `slotBytes` and resolves once u8 may be reused (at once,
  // unless every slot is still being hashed); digestHex() is async. The
  // caller's memory is never shared, so it can go anywhere afterwards.
  hasher({ slotBytes = 256 * 1024, slots = 3 } = {}) {
    const w = this.workers[this.next++ % this.workers.length];
    const id = ++this.ids;
    const pool = this;
    const free = [];
    let made = 0;
    let waiting = null; // resolves when a slot is freed
    let error = null;
    let last = Promise.resolve();
    const release = (slot) => {
      free.push(slot);
      const wake = waiting;
      waiting = null;
      wake?.();
    };
    const slot = async () => {
      for (;;) {
        if (error) throw error;
        if (free.length) return free.pop();
        if (made < slots) {
          made++;
          return new Uint8Array(new SharedArrayBuffer(slotBytes));
        }
        await new Promise((r) => { waiting = r; });
      }
    };
    return {
      pooled: true,
      async update(u8) {
        for (let off = 0; off < u8.length; off += slotBytes) {
          const part = u8.subarray(off, Math.min(u8.length, off + slotBytes));
          const s = await slot();
          s.set(part);
          last = pool.request(w, { op: 'update', id, buf: s.buffer, offset: 0, length: part.length })
            .then(() => release(s), (e) => {
              error ??= e;
              release(s);
            });
        }
      },
      async digestHex() {
        await last;
        if (error) throw error;
        return (await pool.request(w, { op: 'digest', id })).hex;
      },
    };
  }

  close() {
    for (const w of this.workers) w.handle.terminate();
    this.workers = [];
  }
}
