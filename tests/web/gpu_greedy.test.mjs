// gpu_greedy.test.mjs - greedy decoding with the argmax on the GPU
// (Engine.greedySteps, src/gpu/gpu.h): the same ids as the argmax of the
// logits read back after each step; a consumer that stops early leaves the
// context as step() after every id but the last (the step in flight is
// dropped), and greedy runs again from there; a model streamed on demand
// does not offer it. Needs the shared test data and a WebGPU adapter
// (SwiftShader by default); loud skips without them, failures under CI=true.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { requireGpu } from './gpu_env.mjs';
import { TESTDATA, requireTestdata, requireEngineWasm, ENGINE_WASM } from './refdata.mjs';
import { Engine } from '../../web/engine/engine.mjs';
import { webgpuBackend } from '../../web/engine/webgpu.mjs';

const wasm = ENGINE_WASM;
const MODELS = path.join(TESTDATA, 'models');
const N_GEN = 24;

const ready = async (t) => (await requireGpu(t)) && requireTestdata(t) && requireEngineWasm(t);

async function open(model, gpu = {}) {
  const factory = await webgpuBackend(gpu);
  const engine = await Engine.create({ wasm, backend: factory });
  await engine.load(path.join(MODELS, model), { nCtx: 128 });
  return { engine, factory };
}

const argmax = (v) => {
  let best = 0;
  for (let j = 1; j < v.length; j++) if (v[j] > v[best]) best = j;
  return best;
};

// n ids after the prompt by the logits' argmax on the host
async function hostGreedy(engine, ids, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const best = argmax(await engine.eval(ids));
    out.push(best);
    ids = [best];
  }
  return out;
}

for (const model of ['stories260K.gguf', 'sv-llama-q4_k_m.gguf']) {
  test(`greedy on the GPU: ${model} gives the host argmax's ids; stopping early keeps the context right`, async (t) => {
    if (!(await ready(t))) return;
    const { engine, factory } = await open(model);
    try {
      assert.ok(engine.backend.greedy, 'a resident model offers greedy decoding on the GPU');
      assert.ok(engine.gpuGreedy({ temp: 0 }) && !engine.gpuGreedy({ temp: 0.8 }) && !engine.gpuGreedy({ temp: 0, repeatPenalty: 1.1 }));
      const prompt = engine.tokenize('Once upon a time');
      const want = await hostGreedy(engine, prompt, N_GEN);

      // the first id from the prompt's logits, the rest on the GPU
      engine.truncate(0);
      const first = argmax(await engine.eval(prompt));
      const got = [first];
      for await (const id of engine.greedySteps(first, N_GEN - 1)) got.push(id);
      assert.deepEqual(got, want);
      // every id but the last was evaluated
      assert.equal(engine.nPast(), prompt.length + N_GEN - 1);

      // stop after 5 ids (a step in flight is dropped), go on from there
      engine.truncate(0);
      const again = [argmax(await engine.eval(prompt))];
      for await (const id of engine.greedySteps(again[0], N_GEN)) {
        again.push(id);
        if (again.length === 6) break;
      }
      assert.equal(engine.nPast(), prompt.length + 5, 'the context holds the prompt and the first 5 ids');
      for await (const id of engine.greedySteps(again[5], N_GEN - 6)) again.push(id);
      assert.deepEqual(again, want, 'greedy goes on where it stopped');
      // and the logits path after it agrees
      engine.truncate(prompt.length + 3);
      assert.equal(argmax(await engine.eval([want[3]])), want[4]);
      assert.equal(factory.bridge.errors.length, 0, factory.bridge.errors[0]);
    } finally {
      engine.free();
    }
  });
}

test('greedy on the GPU: generate() at temperature 0 gives the host argmax text', async (t) => {
  if (!(await ready(t))) return;
  const { engine } = await open('stories260K.gguf');
  try {
    const prompt = engine.tokenize('Once upon a time');
    const want = await hostGreedy(engine, prompt, N_GEN);
    engine.truncate(0);
    const got = [];
    for await (const tok of engine.generate(prompt, { nPredict: N_GEN, sampling: { temp: 0 } })) if (tok.id >= 0) got.push(tok.id);
    const eog = want.findIndex((id) => engine.isEog(id));
    assert.deepEqual(got, eog < 0 ? want : want.slice(0, eog));
  } finally {
    engine.free();
  }
});

test('greedy on the GPU: not offered when layers are streamed on demand', async (t) => {
  if (!(await ready(t))) return;
  const probe = await open('stories260K.gguf');
  const { plan } = probe.engine.backend;
  probe.engine.free();
  const { engine } = await open('stories260K.gguf', { budget: plan.bytes - Math.floor(plan.by_kind.weights / 2) });
  try {
    assert.ok(!engine.backend.greedy);
    assert.ok(!engine.gpuGreedy({ temp: 0 }));
  } finally {
    engine.free();
  }
});
