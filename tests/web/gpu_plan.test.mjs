// gpu_plan.test.mjs - the static memory plan against what the bridge really
// allocates on a WebGPU device (within 5%; in fact exactly), buffers given
// back when the engine is freed, and the budget refused before any weight
// reaches the GPU. $STREAMLLM_WASM selects another engine.wasm.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { requireGpu } from './gpu_env.mjs';
import { TESTDATA, hasTestdata, requireTestdata, ENGINE_WASM } from './refdata.mjs';
import { Engine } from '../../web/engine/engine.mjs';
import { webgpuBackend } from '../../web/engine/webgpu.mjs';

const wasm = ENGINE_WASM;
const MODELS = ['stories260K.gguf', 'sv-llama-q4_k_m.gguf', 'sv-qwen2-f32.gguf', 'tiny-llama3-bpe-q4_k_m.gguf'];

async function open(model, options = {}, loadOptions = {}) {
  const factory = await webgpuBackend(options);
  const engine = await Engine.create({ wasm, backend: factory });
  await engine.load(path.join(TESTDATA, 'models', model), loadOptions);
  return { engine, factory };
}

for (const model of MODELS) {
  test(`plan total vs allocated bytes: ${model}`, async (t) => {
    if (!(await requireGpu(t)) || !requireTestdata(t)) return;
    const small = model.startsWith('tiny-llama3') ? 4 << 20 : 64 << 10; // tiny-llama3: a logits row is 501 KiB
    for (const [label, options, loadOptions] of [['default', {}, {}], [`split ${small >> 10} KiB, ctx 128`, { maxBinding: small }, { nCtx: 128 }]]) {
      const { engine, factory } = await open(model, options, loadOptions);
      const { stats } = factory.bridge;
      const plan = engine.backend.plan;
      const ratio = stats.bufferBytes / plan.bytes;
      console.error(`  ${model} (${label}): plan ${plan.bytes} bytes in ${plan.buffers} buffers, allocated ${stats.bufferBytes} in ${stats.buffers} (ratio ${ratio.toFixed(4)})`);
      assert.ok(Math.abs(ratio - 1) <= 0.05, `allocated ${stats.bufferBytes} vs plan ${plan.bytes}`);
      assert.equal(stats.buffers, plan.buffers);
      const logits = await engine.eval([1, 2, 3], { allLogits: false });
      assert.equal(logits.length, engine.nVocab);
      assert.ok(logits.every(Number.isFinite));
      engine.free();
      assert.equal(stats.bufferBytes, 0, 'buffers left after free');
      assert.equal(factory.bridge.errors.length, 0, factory.bridge.errors[0]);
    }
  });
}

test('a plan over the budget is refused before any weight is uploaded', async (t) => {
  if (!(await requireGpu(t)) || !hasTestdata()) return requireTestdata(t);
  const factory = await webgpuBackend({ budget: 1 << 20, onDemand: false });
  const engine = await Engine.create({ wasm, backend: factory });
  await assert.rejects(engine.load(path.join(TESTDATA, 'models/sv-llama-q8_0.gguf')),
    /needs [\d.]+ MiB of GPU memory but the budget is 1\.0 MiB/);
  assert.equal(factory.bridge.stats.bufferBytes, 0);
  assert.equal(factory.bridge.stats.bytesWritten, 0);
});
