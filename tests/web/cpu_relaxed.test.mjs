// cpu_relaxed.test.mjs - the relaxed-SIMD builds of the engine
// (build/wasm/engine-relaxed[-mt].wasm, clang-16 -mrelaxed-simd: int8 dot
// products in src/cpu/gemm_wasm.c) give the same logits as the SIMD128
// build, bit for bit (their integer sums are exact), on every quantized
// shared model, batched and one token at a time, on 1 and 2 threads; so
// they meet the references wherever the SIMD128 build does
// (conformance.test.mjs). Skipped when the relaxed builds are absent (make
// wasm without clang-16).
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import v8 from 'node:v8';
import path from 'node:path';
import { Engine } from '../../web/engine/engine.mjs';
import { TESTDATA, requireTestdata, REPO } from './refdata.mjs';

// Relaxed SIMD is on in Chrome >= 114, behind a flag in Node 20.
v8.setFlagsFromString('--experimental-wasm-relaxed-simd');

const RELAXED = path.join(REPO, 'build/wasm/engine-relaxed.wasm');
const RELAXED_MT = path.join(REPO, 'build/wasm/engine-relaxed-mt.wasm');
/* a path, not the default URL: the page's loader may pick the relaxed build for that */
const SIMD128 = path.join(REPO, 'build/wasm/engine.wasm');
const skip = [RELAXED, RELAXED_MT, SIMD128].every(existsSync) ? false : 'relaxed-SIMD builds absent (make wasm with clang-16)';

test('relaxed-SIMD logits equal the SIMD128 build\'s', { skip }, async (t) => {
  if (!requireTestdata(t)) return;
  const ids = Array.from({ length: 21 }, (_, i) => (i * 41 + 7) % 500);
  const run = async (model, threads, wasm, wasmMt) => {
    const e = await Engine.create({ threads, wasm, wasmMt });
    assert.equal(e.threads, threads);
    await e.load(model, { nCtx: 64, nBatch: 16 });
    const batched = await e.eval(ids, { allLogits: true });
    e.truncate(0);
    const steps = [];
    for (const id of ids.slice(0, 4)) steps.push(await e.eval([id]));
    e.free();
    return { batched, steps };
  };
  for (const name of ['sv-llama-q4_0', 'sv-llama-q4_k_m', 'sv-llama-q6_k', 'sv-llama-q8_0', 'tiny-llama3-bpe-q4_k_m']) {
    const model = path.join(TESTDATA, `models/${name}.gguf`);
    const plain = await run(model, 1, SIMD128);
    const relaxed = await run(model, 1, RELAXED);
    assert.deepEqual(relaxed.batched, plain.batched, `${name}: batched logits differ from the SIMD128 build`);
    assert.deepEqual(relaxed.steps, plain.steps, `${name}: decode logits differ from the SIMD128 build`);
    const relaxed2 = await run(model, 2, RELAXED, RELAXED_MT);
    assert.deepEqual(relaxed2.batched, plain.batched, `${name}: batched logits on 2 threads differ`);
    assert.deepEqual(relaxed2.steps, plain.steps, `${name}: decode logits on 2 threads differ`);
  }
});
