// weights_heap.test.mjs - the StreamWeightManager's memory stays bounded
// whatever the model size: a 1.3 GB model synthesized by `streamllm synth`
// (Llama-3.2-1B shapes, Q8_0), served by `streamllm serve` (64 MiB shards),
// is loaded into a directory cache, then again from the cache, by a child
// process that samples process.memoryUsage() every 5 ms and every few chunks.
// The sink discards the bytes, which isolates the manager's own footprint.
// Asserted, under 64 MiB: the JS heap (heapUsed: what performance.memory
// reports in a browser) and the live heap + ArrayBuffers (sampled right
// after a forced GC, in a third load). Printed too: the raw peak of
// heapUsed + arrayBuffers, which also counts dead buffers V8 has not
// collected yet (each socket read allocates one; V8 collects them when
// external memory has grown by ~64 MiB), so it depends on the GC's timing.
// Needs build/streamllm and about 4 GB of free disk (deleted after).
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, streamllm, hasStreamllm, STREAMLLM } from './weights_fixtures.mjs';

const LIMIT = 64 * 1024 * 1024;
const WEIGHTS = new URL('../../web/engine/weights.mjs', import.meta.url).href;

// The child: loads URL into a cache at DIR three times (network, cache,
// network again with a GC before every 50 ms sample), one JSON line each.
const CHILD = `
import { StreamWeightManager, openStore } from ${JSON.stringify(WEIGHTS)};
import { rmSync } from 'node:fs';
const [url, dir] = process.argv.slice(1); // node -e SCRIPT URL DIR
let peak;
const sample = () => {
  const m = process.memoryUsage();
  peak.heap = Math.max(peak.heap, m.heapUsed);
  peak.sum = Math.max(peak.sum, m.heapUsed + m.arrayBuffers);
};
let calls = 0;
const sink = { header: () => 0, tensor: () => { if (++calls % 8 === 0) sample(); } };
for (const pass of ['network', 'cache', 'network-live']) {
  if (pass === 'network-live') rmSync(dir, { recursive: true, force: true });
  globalThis.gc();
  peak = { heap: 0, sum: 0, live: 0 };
  const timer = setInterval(sample, 5);
  const live = pass === 'network-live' && setInterval(() => {
    globalThis.gc();
    const m = process.memoryUsage();
    peak.live = Math.max(peak.live, m.heapUsed + m.arrayBuffers);
  }, 50);
  const t0 = performance.now();
  const wm = new StreamWeightManager({ url, store: await openStore({ dir }), onProgress: sample });
  await wm.load(sink);
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  clearInterval(live);
  console.log(JSON.stringify({ pass, seconds, ...peak, ...wm.counters }));
}
`;

// \`streamllm serve MODEL\` on a free port: its base URL.
async function serve(t, model, cache) {
  const proc = spawn(STREAMLLM, ['serve', model, '--port', '0', '--cache', cache], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => proc.kill('SIGTERM'));
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  const t0 = Date.now();
  for (;;) {
    const m = /^open (http:\/\/\S+)\/$/m.exec(out);
    if (m) return m[1];
    if (proc.exitCode !== null || Date.now() - t0 > 60000) throw new Error('streamllm serve did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('heap: loading a 1.3 GB model keeps the JS heap and the live heap + ArrayBuffers under 64 MiB', { timeout: 300000 }, async (t) => {
  if (!hasStreamllm()) {
    const msg = `${STREAMLLM} absent (make)`;
    if (process.env.CI === 'true') throw new Error(`CI=true: ${msg}`);
    console.error(`SKIP ${msg}`);
    t.skip(msg);
    return;
  }
  const tmp = tempDir(t, 'sl-weights-heap-');
  const gguf = path.join(tmp, 'big.gguf');
  streamllm(['synth', '--like', 'llama-3.2-1b', '--type', 'Q8_0', '-o', gguf]);
  const base = await serve(t, gguf, path.join(tmp, 'serve-cache'));
  const { models } = await (await fetch(`${base}/api/models`)).json();
  const url = new URL(models[0].manifest, base).href;
  const manifest = await (await fetch(url)).json();
  const total = manifest.shards.reduce((n, s) => n + s.bytes, 0);
  assert.ok(total > 1e9, `${total} bytes`);
  const child = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD, url, path.join(tmp, 'cache')],
    { cwd: fileURLToPath(new URL('../..', import.meta.url)) });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, err);
  const runs = out.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(runs.length, 3);
  const mib = (x) => (x / 1048576).toFixed(1);
  for (const r of runs) {
    console.error(`# ${r.pass}: ${(total / 1e9).toFixed(2)} GB in ${r.seconds.toFixed(2)} s (${(total / r.seconds / 1e9).toFixed(2)} GB/s); ` +
      `peak heapUsed ${mib(r.heap)} MiB, heapUsed + arrayBuffers ${mib(r.sum)} MiB${r.live ? `, live after GC ${mib(r.live)} MiB` : ''}`);
    assert.ok(r.heap < LIMIT, `${r.pass}: heapUsed peak ${mib(r.heap)} MiB`);
  }
  assert.ok(runs[2].live > 0 && runs[2].live < LIMIT, `live heap + ArrayBuffers peak ${mib(runs[2].live)} MiB`);
  assert.equal(runs[0].networkBytes, total);
  assert.equal(runs[1].networkBytes, 0);
  assert.equal(runs[1].cacheBytes, total);
  assert.equal(runs[2].networkBytes, total);
});
