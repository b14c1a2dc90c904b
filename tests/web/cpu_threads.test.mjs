// cpu_threads.test.mjs - the wasm CPU backend on worker threads
// (web/engine/threads.mjs, src/wasm/threadpool_wasm.c): the workers start
// and serve the C pool (barriers included), a model gives the same logits
// on several threads as on one, and the process still exits by itself.
// Needs build/wasm/engine-mt.wasm (make wasm).
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { Engine, DEFAULT_WASM_URL } from '../../web/engine/engine.mjs';
import { TESTDATA, hasTestdata, requireTestdata, REPO } from './refdata.mjs';

const MT = path.join(REPO, 'build/wasm/engine-mt.wasm');
const skip = existsSync(MT) ? false : 'build/wasm/engine-mt.wasm absent (make wasm)';

test('worker threads start and serve the pool', { skip }, async () => {
  const e = await Engine.create({ threads: 3 });
  assert.equal(e.threads, 3, 'threads running');
  assert.equal(e.mod.exports.cpu_threads_selftest(200), 0, 'barrier phases with a wrong count');
  e.free();
});

test('one thread when threads are not asked for', async () => {
  const e = await Engine.create({});
  assert.equal(e.threads, 1);
  assert.equal(e.mod.exports.cpu_threads_selftest, undefined, 'the plain build has no threads');
  e.free();
});

test('logits on 2 threads equal those on 1', { skip }, async (t) => {
  if (!requireTestdata(t)) return;
  for (const name of ['sv-llama-q4_0', 'sv-llama-q4_k_m', 'sv-llama-q8_0', 'sv-llama-f16']) {
    const model = path.join(TESTDATA, `models/${name}.gguf`);
    const ids = Array.from({ length: 19 }, (_, i) => (i * 37 + 5) % 500);
    const run = async (threads, wasm) => {
      const e = await Engine.create({ threads, wasm });
      await e.load(model, { nCtx: 64, nBatch: 8 });
      const batched = await e.eval(ids, { allLogits: true });
      e.truncate(0);
      const steps = [];
      for (const id of ids.slice(0, 4)) steps.push(await e.eval([id]));
      e.free();
      return { batched, steps };
    };
    const one = await run(1, MT), two = await run(2, MT), plain = await run(1, DEFAULT_WASM_URL);
    assert.deepEqual(two.batched, one.batched, `${name}: batched logits differ between 1 and 2 threads`);
    assert.deepEqual(two.steps, one.steps, `${name}: decode logits differ between 1 and 2 threads`);
    assert.deepEqual(one.batched, plain.batched, `${name}: the threaded build differs from the plain one`);
  }
});

test('a process with running workers exits by itself', { skip }, async () => {
  const code = `import { Engine } from ${JSON.stringify(path.join(REPO, 'web/engine/engine.mjs'))};
    const e = await Engine.create({ threads: 2 }); console.log(e.threads);`;
  const r = await new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', code], { timeout: 30000 }, (err, stdout) => resolve({ err, stdout }));
  });
  assert.equal(r.err, null, `exit: ${r.err?.message}`);
  assert.equal(r.stdout.trim(), '2');
});
