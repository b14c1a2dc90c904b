// api_ring.test.mjs - the SharedArrayBuffer token ring (web/engine/ring.mjs):
// wrap-around, a writer in another thread pushing far more than the ring
// holds while this thread drains it with changed()/read() (bytes in order,
// the writer blocked while full), the token counter, and a cancel that
// frees a blocked writer.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { TokenRing } from '../../web/engine/ring.mjs';

const RING_URL = new URL('../../web/engine/ring.mjs', import.meta.url).href;

test('ring: capacity rounds up to a power of two; wrap-around keeps bytes in order', () => {
  const ring = TokenRing.create(1000);
  assert.equal(ring.capacity, 1024);
  assert.equal(ring.read(), null);
  const a = Uint8Array.from({ length: 700 }, (_, i) => i & 255);
  const b = Uint8Array.from({ length: 700 }, (_, i) => (i * 7) & 255);
  assert.equal(ring.write(a), true);
  assert.deepEqual(ring.read(), a);
  assert.equal(ring.write(b), true); // crosses the end of the buffer
  assert.deepEqual(ring.read(), b);
  ring.begin();
  ring.addTokens(3);
  assert.equal(ring.tokens(), 3);
  assert.throws(() => new TokenRing(new SharedArrayBuffer(32 + 1000)), RangeError);
});

// A writer thread: `total` bytes (byte i = i mod 251) in pieces of `piece`.
function writer(sab, total, piece, id = 1) {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.url).then(({ TokenRing }) => {
      const ring = new TokenRing(workerData.sab);
      ring.begin();
      let ok = true;
      for (let at = 0; at < workerData.total && ok; at += workerData.piece) {
        const n = Math.min(workerData.piece, workerData.total - at);
        const bytes = Uint8Array.from({ length: n }, (_, i) => (at + i) % 251);
        ok = ring.write(bytes, () => ring.cancelled(workerData.id), 20);
        ring.addTokens(1);
      }
      parentPort.postMessage({ ok });
    });`;
  const w = new Worker(code, { eval: true, workerData: { sab, total, piece, id, url: RING_URL } });
  return new Promise((resolve, reject) => {
    w.once('message', (m) => resolve(m));
    w.once('error', reject);
  });
}

test('ring: a writer thread pushes 256 KiB through 1 KiB; the reader drains without blocking', async () => {
  const ring = TokenRing.create(1024);
  const total = 256 * 1024;
  const done = writer(ring.sab, total, 300);
  let got = 0;
  let bad = -1;
  let seen = ring.signal();
  while (got < total) {
    await ring.changed(seen, 200);
    seen = ring.signal();
    const b = ring.read();
    if (!b) continue;
    for (let i = 0; i < b.length && bad < 0; i++) if (b[i] !== (got + i) % 251) bad = got + i;
    got += b.length;
  }
  assert.equal(bad, -1, `byte ${bad} out of order`);
  assert.equal(got, total);
  assert.deepEqual(await done, { ok: true });
  assert.equal(ring.tokens(), Math.ceil(total / 300));
});

test('ring: cancel frees a writer blocked on a full ring', async () => {
  const ring = TokenRing.create(1024);
  const done = writer(ring.sab, 8192, 4096, 7);
  // nobody reads: the writer fills the ring and waits
  await new Promise((r) => setTimeout(r, 100));
  ring.cancel(7);
  assert.deepEqual(await done, { ok: false });
});
