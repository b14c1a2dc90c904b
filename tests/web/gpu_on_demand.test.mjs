// gpu_on_demand.test.mjs - on-demand mode of the WebGPU engine: with a GPU
// budget that holds only half the model's weights (beside its KV cache,
// activations and the rest of the plan), the leading layers stay resident and the
// others are streamed into shared buffers in every forward pass (from the
// model file, or from the StreamWeightManager's cache with the server gone),
// and the greedy tokens equal the fully resident run's. A budget too small
// even for one streamed layer is refused before any weight reaches the GPU.
// Needs the shared test data and a WebGPU adapter (SwiftShader by default);
// loud skips without them, failures under CI=true.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { requireGpu } from './gpu_env.mjs';
import { TESTDATA, requireTestdata, requireEngineWasm, ENGINE_WASM } from './refdata.mjs';
import { Engine } from '../../web/engine/engine.mjs';
import { webgpuBackend } from '../../web/engine/webgpu.mjs';
import { StreamWeightManager, openStore } from '../../web/engine/weights.mjs';
import { startServer } from './weights_server.mjs';
import { tempDir, streamllm, hasStreamllm } from './weights_fixtures.mjs';

const wasm = ENGINE_WASM;
const MODELS = path.join(TESTDATA, 'models');
const N_CTX = 128;
const N_GEN = 24;

const ready = async (t) => (await requireGpu(t)) && requireTestdata(t) && requireEngineWasm(t);

// A budget with room for half the weights of a resident plan.
const halfWeights = (plan) => plan.bytes - Math.floor(plan.by_kind.weights / 2);

// Greedy tokens after the prompt, and the context's plan and stream figures;
// afterLoad() runs between the load and the first token.
async function greedy(load, gpu, afterLoad = null) {
  const factory = await webgpuBackend(gpu);
  const engine = await Engine.create({ wasm, backend: factory });
  try {
    await load(engine);
    await afterLoad?.();
    let ids = engine.tokenize('Once upon a time');
    const out = [];
    for (let i = 0; i < N_GEN; i++) {
      const logits = await engine.eval(ids);
      let best = 0;
      for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
      out.push(best);
      ids = [best];
    }
    const { plan, streamStats } = engine.backend;
    assert.equal(factory.bridge.errors.length, 0, factory.bridge.errors[0]);
    return { out, plan, stream: { ...streamStats }, allocated: factory.bridge.stats.bufferBytes };
  } finally {
    engine.free();
  }
}

for (const model of ['stories260K.gguf', 'sv-llama-q4_k_m.gguf']) {
  test(`on demand, from the file: ${model} with room for half its weights gives the resident tokens`, async (t) => {
    if (!(await ready(t))) return;
    const file = path.join(MODELS, model);
    const load = (e) => e.load(file, { nCtx: N_CTX });
    const resident = await greedy(load, {});
    assert.equal(resident.plan.n_resident, resident.plan.n_layer);
    const budget = halfWeights(resident.plan);
    const od = await greedy(load, { budget });
    console.error(`  ${model}: resident plan ${resident.plan.bytes} bytes; budget ${budget}: plan ${od.plan.bytes}, ` +
      `${od.plan.n_resident} of ${od.plan.n_layer} layers resident, ${od.plan.stream_bytes} bytes streamed per pass, ` +
      `${od.stream.streamedLayers} layer uploads (${od.stream.streamedBytes} bytes)`);
    assert.ok(od.plan.n_resident < od.plan.n_layer, 'nothing streamed');
    assert.ok(od.plan.bytes <= budget && od.allocated <= budget, `plan ${od.plan.bytes}, allocated ${od.allocated}, budget ${budget}`);
    assert.equal(od.stream.streamedLayers, N_GEN * (od.plan.n_layer - od.plan.n_resident));
    assert.deepEqual(od.out, resident.out);
    // and without on-demand the same budget is refused
    await assert.rejects(greedy(load, { budget, onDemand: false }), /needs [\d.]+ MiB of GPU memory but the budget/);
  });
}

test('on demand through the weight manager: layers re-read from the cache with the server gone', async (t) => {
  if (!(await ready(t))) return;
  if (!hasStreamllm()) {
    if (process.env.CI === 'true') throw new Error('CI=true: build/streamllm absent');
    return t.skip('build/streamllm absent');
  }
  const dir = path.join(tempDir(t), 'shards');
  streamllm(['split', path.join(MODELS, 'sv-llama-q4_k_m.gguf'), dir, '--max-shard-size', '512K']);
  const srv = await startServer({ dir });
  const store = await openStore({ dir: path.join(tempDir(t), 'cache') });
  const FAST = { backoffMs: 5, maxBackoffMs: 20 };
  let wm = null;
  const viaManager = (e) => {
    wm = new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST });
    return e.loadStream(wm, { nCtx: N_CTX });
  };
  let stopped = false;
  try {
    const resident = await greedy(viaManager, {});
    const budget = halfWeights(resident.plan);
    // every on-demand read comes from the cache: the server is stopped after the load
    const od = await greedy(viaManager, { budget }, async () => {
      await srv.stop();
      stopped = true;
    });
    assert.ok(od.plan.n_resident < od.plan.n_layer && od.plan.bytes <= budget);
    assert.ok(wm.counters.rereadBytes >= N_GEN * od.plan.stream_bytes, `${wm.counters.rereadBytes} bytes re-read`);
    assert.deepEqual(od.out, resident.out);
  } finally {
    if (!stopped) await srv.stop();
  }
});

test('on demand: a budget too small even for one streamed layer is refused before any upload', async (t) => {
  if (!(await ready(t))) return;
  const factory = await webgpuBackend({ budget: 64 << 10 });
  const engine = await Engine.create({ wasm, backend: factory });
  await assert.rejects(engine.load(path.join(MODELS, 'sv-llama-q8_0.gguf')),
    /needs [\d.]+ MiB of GPU memory \([\d.]+ MiB with its layers streamed one at a time\) but the budget is 0\.1 MiB/);
  assert.equal(factory.bridge.stats.bufferBytes, 0);
  assert.equal(factory.bridge.stats.bytesWritten, 0);
});
