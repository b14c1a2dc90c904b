// api_rendezvous.test.mjs - pushed tensor chunks meeting pulled reads
// (web/engine/rendezvous.mjs), which is how the weight manager feeds the
// WebGPU backend: every byte arrives where it is read, whatever the chunk
// sizes on either side; skipped tensors are let go; files download in
// parallel while the reader takes them in order, holding at most one chunk
// per file; the pieces of one file may arrive out of order; a failure on
// either side ends the other; bytes given again after they were taken are an
// error. Then the real thing: createEngine on the
// WebGPU backend (Dawn, SwiftShader) loading through the weight manager.
import test from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TensorRendezvous } from '../../web/engine/rendezvous.mjs';
import { TESTDATA, REPO, requireTestdata, summaryText } from './refdata.mjs';

// A deterministic pseudo-random stream.
function rng(seed) {
  let x = seed >>> 0;
  return () => {
    x = (x * 1664525 + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

// Files of tensors [{ offset, bytes }] (a gap before each: headers, padding).
function layout(rand, nFiles) {
  return Array.from({ length: nFiles }, () => {
    const tensors = [];
    let at = 100 + Math.floor(rand() * 300);
    const n = 3 + Math.floor(rand() * 6);
    for (let i = 0; i < n; i++) {
      const bytes = 1 + Math.floor(rand() * 5000);
      tensors.push({ offset: at, bytes });
      at += bytes + Math.floor(rand() * 64);
    }
    return { size: at, tensors };
  });
}
const byteAt = (k, pos) => (k * 31 + pos * 7) & 255;

test('rendezvous: parallel pushes, ordered pulls, skipped tensors, bounded in-flight chunks', async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const rand = rng(seed);
    const files = layout(rand, 1 + Math.floor(rand() * 4));
    const rv = new TensorRendezvous();
    let inFlight = 0;
    let maxInFlight = 0;
    // producers: one per file, all at once, chunks of random size
    const producers = files.map(async (f, k) => {
      for (const t of f.tensors) {
        for (let off = 0; off < t.bytes;) {
          const n = Math.min(t.bytes - off, 1 + Math.floor(rand() * 1500));
          const chunk = Uint8Array.from({ length: n }, (_, i) => byteAt(k, t.offset + off + i));
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await rv.push(k, t.offset + off, chunk);
          inFlight--;
          chunk.fill(0); // the chunk is the producer's again
          off += n;
        }
      }
    });
    // the puller: file by file, some tensors skipped, pieces of random size
    const puller = (async () => {
      let checked = 0;
      for (let k = 0; k < files.length; k++) {
        for (const t of files[k].tensors) {
          if (rand() < 0.25) continue;
          for (let off = 0; off < t.bytes;) {
            const n = Math.min(t.bytes - off, 1 + Math.floor(rand() * 2500));
            const dest = new Uint8Array(n);
            await rv.readInto(k, t.offset + off, dest);
            for (let i = 0; i < n; i++) assert.equal(dest[i], byteAt(k, t.offset + off + i), `seed ${seed} file ${k} at ${t.offset + off + i}`);
            checked += n;
            off += n;
          }
        }
      }
      rv.close();
      return checked;
    })();
    await Promise.all([...producers, puller]);
    assert.ok(maxInFlight <= files.length, `seed ${seed}: ${maxInFlight} chunks held for ${files.length} files`);
  }
});

test('rendezvous: failures reach the other side; bytes again after being taken are refused', async () => {
  const a = new TensorRendezvous();
  const reading = a.readInto(0, 10, new Uint8Array(5));
  a.fail(new Error('download broke'));
  await assert.rejects(reading, /download broke/);
  await assert.rejects(a.push(0, 10, new Uint8Array(5)), /download broke/);

  const b = new TensorRendezvous();
  const pushed = b.push(1, 0, new Uint8Array(8));
  b.fail(new Error('GPU out of memory'));
  await assert.rejects(pushed, /GPU out of memory/);

  const c = new TensorRendezvous();
  const p1 = c.push(0, 0, Uint8Array.of(1, 2, 3, 4));
  const d = new Uint8Array(4);
  await c.readInto(0, 0, d);
  await p1;
  assert.deepEqual([...d], [1, 2, 3, 4]);
  await assert.rejects(c.push(0, 0, Uint8Array.of(9, 9, 9, 9)), (e) => e.name === 'IntegrityError');
  await assert.rejects(c.readInto(0, 0, new Uint8Array(1)), /out of order/);
  // the puller done: a read of bytes that never come fails, pushes pass
  c.close();
  await c.push(0, 100, new Uint8Array(3));
  await assert.rejects(c.readInto(0, 200, new Uint8Array(1)), /never arrived/);
});

test('rendezvous: the pieces of one file arrive in parallel; bytes the puller skipped may come after it passed', async () => {
  const rv = new TensorRendezvous();
  const bytes = (from, n) => Uint8Array.from({ length: n }, (_, i) => byteAt(0, from + i));
  // the second piece of file 0 ([1000, 2000)) arrives first, then the first piece's start
  const second = rv.push(0, 1000, bytes(1000, 1000));
  const first = rv.push(0, 0, bytes(0, 500));
  const a = new Uint8Array(500);
  await rv.readInto(0, 0, a);
  await first;
  // the puller skips [500, 1000) (a tensor it does not take)
  const b = new Uint8Array(1000);
  await rv.readInto(0, 1000, b);
  await second;
  assert.deepEqual([...a, ...b], [...bytes(0, 500), ...bytes(1000, 1000)]);
  // the skipped bytes, when the first piece gets there: let go, not taken for a repeat
  await rv.push(0, 500, bytes(500, 500));
  // bytes given a second time are still refused
  await assert.rejects(rv.push(0, 600, bytes(600, 100)), (e) => e.name === 'IntegrityError');
  await assert.rejects(rv.push(0, 1500, bytes(1500, 10)), (e) => e.name === 'IntegrityError');
});

test('rendezvous: createEngine on WebGPU (Dawn) loads through the weight manager', async (t) => {
  if (!requireTestdata(t)) return;
  const { requireGpu } = await import('./gpu_env.mjs');
  if (!(await requireGpu(t))) return;
  const { createEngine } = await import('../../web/stream-llm.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'sl-rv-'));
  mkdirSync(path.join(dir, 'models'));
  copyFileSync(path.join(TESTDATA, 'models/stories260K.gguf'), path.join(dir, 'models/stories260K.gguf'));
  const bin = path.resolve(REPO, process.env.STREAMLLM_BIN || 'build/streamllm');
  const child = spawn(bin, ['serve', '--models', path.join(dir, 'models'), '--cache', path.join(dir, 'cache'), '--port', '0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const url = await new Promise((resolve, reject) => {
      let out = '';
      child.on('exit', (code) => reject(new Error(`serve exited ${code}`)));
      child.stdout.on('data', (d) => {
        out += d;
        const m = /^open (http:\/\/\S+)\/$/m.exec(out);
        if (m) resolve(m[1]);
      });
    });
    const engine = await createEngine({ model: `${url}/api/models/stories260k`, backend: 'webgpu', store: { dir: path.join(dir, 'store') } });
    try {
      const info = await engine.info();
      assert.equal(info.backend, 'webgpu');
      assert.ok(info.adapter, 'adapter facts');
      assert.ok(info.memory.gpuPlanBytes > 0);
      const r = await engine.completions.create({ prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
      const want = summaryText(path.join(TESTDATA, 'ref/stories260K-f32.summary.txt'));
      assert.equal(r.usage.completion_tokens, 8);
      assert.ok(r.choices[0].text.length > 10 && want.startsWith(r.choices[0].text), JSON.stringify(r.choices[0].text));
    } finally {
      await engine.unload();
    }
  } finally {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
