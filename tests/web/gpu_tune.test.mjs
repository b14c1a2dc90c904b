// gpu_tune.test.mjs - per-device tuning of the decode mat-vecs
// (web/engine/gpu-tune.mjs) on a model synthesized here: asked for, the
// candidates are timed and the winner kept in the cache; a second load takes
// it from there without timing anything; the tuned engine still matches the
// CPU engine; another model shape has other kernels (another key); 'auto' leaves software adapters (the CI's SwiftShader and
// lavapipe) alone; a tuning fixed by the options is not touched.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { requireGpu, gpuInfo } from './gpu_env.mjs';
import { ENGINE_WASM, requireEngineWasm } from './refdata.mjs';
import { streamllm, tempDir } from './weights_fixtures.mjs';
import { Engine } from '../../web/engine/engine.mjs';
import { webgpuBackend } from '../../web/engine/webgpu.mjs';
import { memoryTuningCache, isSoftwareAdapter } from '../../web/engine/gpu-tune.mjs';

const wasm = ENGINE_WASM;

function synth(t, type) {
  const file = path.join(tempDir(t, 'sl-gpu-tune-'), `tiny-${type}.gguf`);
  streamllm(['synth', '--like', 'tiny', '--type', type, '-o', file]);
  return file;
}

async function open(model, gpu) {
  const engine = await Engine.create({ wasm, backend: await webgpuBackend(gpu) });
  await engine.load(model, { nCtx: 64 });
  return engine;
}

const nrmse = (a, b) => {
  let d = 0, r = 0;
  for (let i = 0; i < a.length; i++) { d += (a[i] - b[i]) ** 2; r += b[i] ** 2; }
  return Math.sqrt(d / r);
};

test('tuning on the device: measured once, then taken from the cache; the tuned kernels still compute the model', async (t) => {
  if (!(await requireGpu(t)) || !requireEngineWasm(t)) return;
  const model = synth(t, 'Q4_0');
  const cache = memoryTuningCache();
  const e1 = await open(model, { tune: true, tuneCache: cache, tuneSteps: 4 });
  let tuned;
  try {
    const g = e1.gpuTuning;
    assert.equal(g.source, 'measured', JSON.stringify(g));
    assert.ok(Object.keys(g.timings).length >= 7, 'the default and one change of each kind at least');
    for (const k of ['rows', 'units', 'minWorkgroups']) assert.ok(Number.isInteger(g.tuning[k]) && g.tuning[k] >= 0);
    assert.equal(e1.nPast(), 0, 'the context is left empty');
    tuned = g.tuning;
    assert.deepEqual({ ...(await cache.get(g.key)), tokensPerSecond: 0, defaultTokensPerSecond: 0, at: '' },
      { ...tuned, tokensPerSecond: 0, defaultTokensPerSecond: 0, at: '' });
    // decode with the tuned kernels against the CPU engine
    const cpu = await Engine.create({ wasm });
    await cpu.load(model, { nCtx: 64 });
    try {
      const prompt = [1, 7, 42, 99, 3];
      await e1.eval(prompt.slice(0, -1));
      await cpu.eval(prompt.slice(0, -1));
      const g1 = Float32Array.from(await e1.eval(prompt.slice(-1)));
      const c1 = Float32Array.from(await cpu.eval(prompt.slice(-1)));
      const err = nrmse(g1, c1);
      assert.ok(err < 0.02, `decode logits nrmse ${err} against the CPU`);
    } finally {
      cpu.free();
    }
  } finally {
    e1.free();
  }
  const e2 = await open(model, { tune: true, tuneCache: cache, tuneSteps: 4 });
  const hash = e2.backend.kernelsHash;
  try {
    assert.equal(e2.gpuTuning.source, 'cache');
    assert.deepEqual(e2.gpuTuning.tuning, tuned);
    assert.equal(e2.gpuTuning.timings, undefined, 'nothing timed');
  } finally {
    e2.free();
  }
  // another model shape: other kernels, another key
  const other = await open(synth(t, 'Q8_0'), { tune: false });
  try {
    assert.notEqual(other.backend.kernelsHash, hash);
  } finally {
    other.free();
  }
});

test("'auto' tunes hardware adapters only; a tuning fixed by the options is left alone", async (t) => {
  if (!(await requireGpu(t)) || !requireEngineWasm(t)) return;
  const model = synth(t, 'Q4_0');
  const cache = memoryTuningCache();
  const auto = await open(model, { tune: 'auto', tuneCache: cache });
  try {
    if (isSoftwareAdapter(await gpuInfo())) assert.deepEqual([auto.gpuTuning.source, auto.gpuTuning.reason], ['skipped', 'software adapter']);
    else assert.ok(['measured', 'cache'].includes(auto.gpuTuning.source));
  } finally {
    auto.free();
  }
  const fixed = await open(model, { tune: true, tuneCache: cache, matvec: { rows: 2 } });
  try {
    assert.equal(fixed.gpuTuning, null);
  } finally {
    fixed.free();
  }
  const off = await open(model, { tune: false, tuneCache: cache });
  try {
    assert.equal(off.gpuTuning.source, 'skipped');
  } finally {
    off.free();
  }
});
