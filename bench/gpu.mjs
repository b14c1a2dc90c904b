#!/usr/bin/env node
// bench/gpu.mjs - speed of the WebGPU engine (Dawn in Node), in the style of
// llama-bench: ppN evaluates N tokens as one batch, tgN generates N tokens
// one at a time (each step reads its logits back, as generation does), both
// from an empty cache; one warm-up run, then -r runs, medians. tgN-greedy:
// greedy generation with the argmax on the GPU, steps in flight
// (Engine.greedySteps: only ids come back; what temperature 0 runs). Also the
// device's copy bandwidth (a WGSL vec4 copy kernel, bytes read + written)
// and the decode floor: weight bytes read per token / that bandwidth.
//
//   node bench/gpu.mjs -m MODEL [-p 512] [-n 128] [-r 5] [--wasm FILE] [--copy-mib 256] [--json] [--profile]
//                      [--layouts raw|all] [--mv ROWS,UNITS,MIN_WGS] [--no-int8]
//
// --layouts raw keeps every matrix as stored in the file, --layouts all puts
// Q4_K and Q6_K ones in their GPU layouts also without the int8 token
// (src/gpu/layout.h; default: with it); --mv tunes the mat-vec kernels (rows
// and units of a row per invocation, the fewest workgroups before fewer rows
// per invocation; 0 or empty: the default), e.g. --mv 4,4,0 or --mv ,8,.
// --no-int8: mat-vecs take the token as f32, not as int8 blocks (dot4I8Packed).
// The same come from $STREAMLLM_GPU_LAYOUT, $STREAMLLM_GPU_MV_ROWS,
// _UNITS, _MIN_WGS and $STREAMLLM_GPU_INT8=0.
//
// --json prints one JSON line (bench/gpu.sh reads it) instead of the table.
// --profile then loads the model again with GPU timestamps around each
// step's pass (timestamp-query): its GPU time per decode token against the
// wall time; and again around every dispatch: the GPU time per decode token
// by kernel (separate passes add time of their own: a breakdown, not a speed),
// for decode tokens and for a ppN batch.
import path from 'node:path';
import { Engine } from '../web/engine/engine.mjs';
import { median, benchTokens } from './lib.mjs';
import { webgpuBackend } from '../web/engine/webgpu.mjs';

const args = process.argv.slice(2);
const opt = { m: null, p: 512, n: 128, r: 5, wasm: undefined, json: false, copyMiB: 256 };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--json') { opt.json = true; continue; }
  if (a === '--profile') { opt.profile = true; continue; }
  if (a === '--no-int8') { opt.int8 = false; continue; }
  const v = args[++i];
  if (a === '-m') opt.m = v;
  else if (a === '-p') opt.p = Number(v);
  else if (a === '-n') opt.n = Number(v);
  else if (a === '-r') opt.r = Number(v);
  else if (a === '--layouts') opt.layouts = v;
  else if (a === '--wasm') opt.wasm = path.resolve(v); // relative to the working directory
  else if (a === '--copy-mib') opt.copyMiB = Number(v);
  else if (a === '--mv') {
    const [rows, units, minWorkgroups] = v.split(',').map((x) => (x ? Number(x) : undefined));
    opt.matvec = { rows, units, minWorkgroups };
  }
  else {
    console.error('usage: node bench/gpu.mjs -m MODEL [-p N] [-n N] [-r RUNS] [--wasm FILE] [--json] [--profile] [--layouts raw|all] [--mv ROWS,UNITS,MIN_WGS] [--no-int8]');
    process.exit(2);
  }
}
if (!opt.m) {
  console.error('bench/gpu.mjs: no model (-m)');
  process.exit(2);
}


// Copy bandwidth: a grid-stride vec4<f32> copy between two buffers of up to
// 256 MiB (within the device's limits), timed over many dispatches.
async function copyBandwidth(device) {
  const bytes = Math.min(opt.copyMiB * 2 ** 20, device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize) & ~15;
  const usage = GPUBufferUsage.STORAGE;
  const a = device.createBuffer({ size: bytes, usage });
  const b = device.createBuffer({ size: bytes, usage });
  const module = device.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
  let stride = n.x * 256u;
  for (var i = g.x; i < arrayLength(&src); i += stride) { dst[i] = src[i]; }
}`,
  });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bg = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: a } }, { binding: 1, resource: { buffer: b } }] });
  const run = async (k) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg);
    for (let i = 0; i < k; i++) pass.dispatchWorkgroups(Math.min(65535, Math.ceil(bytes / 16 / 256)));
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  // dispatches per timed run: about 50 ms of copying (1 on slow software GPUs)
  let t0 = performance.now();
  await run(1);
  const k = Math.max(1, Math.min(50, Math.round(0.05 / ((performance.now() - t0) / 1000))));
  const rates = [];
  for (let r = 0; r < 5; r++) {
    t0 = performance.now();
    await run(k);
    rates.push((2 * bytes * k) / ((performance.now() - t0) / 1000));
  }
  a.destroy();
  b.destroy();
  return median(rates);
}

// engine options from the command line (else from the environment)
const engineOptions = {};
if (opt.layouts) engineOptions.layouts = opt.layouts;
if (opt.matvec) engineOptions.matvec = opt.matvec;
if (opt.int8 === false) engineOptions.int8 = false;
const factory = await webgpuBackend(engineOptions);
const engine = await Engine.create({ wasm: opt.wasm, backend: factory });
const info = await engine.load(opt.m, { nCtx: opt.p + opt.n + 8, nBatch: Math.min(Math.max(opt.p, 1), 512) });
const plan = engine.backend.plan;
const V = info.n_vocab;
// the per-device tuning at load (gpu-tune.mjs; $STREAMLLM_GPU_TUNE)
const tuning = engine.gpuTuning;
const toks = benchTokens(V, Math.max(opt.p, opt.n));

// host time spent recording and submitting dispatches, and copying the
// logits out of the mapped read-back, per token of the last tg run
let encodeUsPerToken = null, readUsPerToken = null;
async function once(tg, n) {
  engine.truncate(0);
  const { stats } = engine.backend.bridge;
  const e0 = stats.encodeMs, r0 = stats.readMs;
  const t0 = performance.now();
  if (tg) for (let i = 0; i < n; i++) await engine.step([toks[i]]);
  else await engine.step(toks.slice(0, n));
  const s = (performance.now() - t0) / 1000;
  if (tg) {
    encodeUsPerToken = ((stats.encodeMs - e0) * 1000) / n;
    readUsPerToken = ((stats.readMs - r0) * 1000) / n;
  }
  return n / s;
}

// greedy generation with the argmax on the GPU, a step ahead
// (Engine.greedySteps): only the ids come back, not the logits
async function onceGreedy(n) {
  engine.truncate(0);
  const t0 = performance.now();
  let k = 0;
  for await (const id of engine.greedySteps(toks[0], n)) k += id >= 0;
  if (k !== n) throw new Error(`greedy: ${k} of ${n} ids`);
  return n / ((performance.now() - t0) / 1000);
}

const results = {};
let lastDispatches = null;
for (const [name, run, n] of [[`pp${opt.p}`, (k) => once(false, k), opt.p], [`tg${opt.n}`, (k) => once(true, k), opt.n],
  [`tg${opt.n}-greedy`, onceGreedy, engine.backend.greedy ? opt.n : 0]]) {
  if (n <= 0) continue;
  process.stderr.write(`${name}...\n`);
  await run(n); // warm-up: kernels compiled, programs recorded
  const runs = [];
  for (let r = 0; r < opt.r; r++) runs.push(await run(n));
  results[name] = { median: median(runs), runs };
  if (name === `tg${opt.n}`) lastDispatches = engine.backend.lastDispatches?.() ?? null;
}
const bandwidth = await copyBandwidth(factory.device);
// weights a decode step reads: every matrix the plan holds (an untied
// embedding counts too, though a step reads only its rows: the floor errs low)
const weightBytes = plan.by_kind.weights;
const tgName = `tg${opt.n}`;
const floorTps = bandwidth / weightBytes;
const adapter = factory.adapterInfo();
engine.free();

// GPU time per decode token by kernel, and of the whole step (its one pass)
// against the wall time of a step
async function profileRun(mode) {
  const pf = await webgpuBackend({ ...engineOptions, profile: mode });
  if (!pf.device.features.has('timestamp-query')) return null;
  const pe = await Engine.create({ wasm: opt.wasm, backend: pf });
  await pe.load(opt.m, { nCtx: opt.p + opt.n + 8, nBatch: Math.min(Math.max(opt.p, 1), 512) });
  const { stats } = pe.backend.bridge;
  pe.truncate(0);
  await pe.step(toks.slice(0, 1)); // compile and record
  for (const k of Object.keys(stats.kernels)) delete stats.kernels[k];
  const d0 = stats.dispatches;
  const t0 = performance.now();
  for (let i = 0; i < opt.n; i++) await pe.step([toks[i]]);
  const wallMs = (performance.now() - t0) / opt.n;
  await pe.backend.bridge.settle();
  const byKernel = (runs) => Object.entries(stats.kernels).map(([label, v]) => ({ label, usPerToken: v.ns / 1e3 / runs, perToken: v.count / runs }))
    .sort((a, b) => b.usPerToken - a.usPerToken);
  const kernels = byKernel(opt.n);
  const decode = { wallMsPerToken: wallMs, dispatchesPerToken: (stats.dispatches - d0) / opt.n,
    gpuUsPerToken: kernels.reduce((n, k) => n + k.usPerToken, 0), kernels };
  // the same for a ppN batch (per batch, not per token)
  let prefill = null;
  if (opt.p > 0) {
    pe.truncate(0);
    await pe.step(toks.slice(0, opt.p)); // compile and record
    await pe.backend.bridge.settle();
    for (const k of Object.keys(stats.kernels)) delete stats.kernels[k];
    const pruns = 3;
    const p0 = performance.now();
    for (let r = 0; r < pruns; r++) {
      pe.truncate(0);
      await pe.step(toks.slice(0, opt.p));
    }
    const pWallMs = (performance.now() - p0) / pruns;
    await pe.backend.bridge.settle();
    const pk = byKernel(pruns);
    prefill = { wallMs: pWallMs, gpuUs: pk.reduce((n, k) => n + k.usPerToken, 0), kernels: pk };
  }
  pe.free();
  return { ...decode, prefill };
}
let profile = null;
if (opt.profile) {
  const step = await profileRun('step');
  profile = step ? { ...(await profileRun(true)), stepGpuUsPerToken: step.gpuUsPerToken, stepWallMsPerToken: step.wallMsPerToken }
    : { error: 'the device has no timestamp-query' };
}

const out = {
  model: opt.m, adapter: `${adapter.vendor} ${adapter.architecture} ${adapter.description}`.trim(),
  int8: factory.options.int8 !== false,
  layout: factory.options.layouts ?? 'fast',
  matvec: factory.options.matvec ?? {},
  tuning: tuning ? { source: tuning.source, reason: tuning.reason, tuning: tuning.tuning, ms: tuning.ms, timings: tuning.timings } : null,
  firstChunk: factory.options.firstChunk ?? 4,
  results, bandwidth, weightBytes, floorTps, encodeUsPerToken, readUsPerToken,
  dispatchesPerToken: lastDispatches,
  ofFloor: results[tgName] ? results[tgName].median / floorTps : null,
  profile,
};
if (opt.json) {
  console.log(JSON.stringify(out));
} else {
  const mv = Object.entries(out.matvec).filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => `${k} ${v}`).join(', ');
  console.log(`model ${opt.m}; adapter ${out.adapter}; layouts ${out.layout}; mat-vec ${mv || 'defaults'}${out.int8 ? ', int8 token' : ''}`);
  const tu = out.tuning;
  if (tu) {
    const what = tu.tuning ? Object.entries(tu.tuning).map(([k, v]) => `${k} ${v || 'default'}`).join(', ') : '';
    console.log(`mat-vec tuning at load: ${tu.source}${tu.reason ? ` (${tu.reason})` : ''}${what ? `: ${what}` : ''} in ${(tu.ms / 1000).toFixed(2)} s`);
  }
  console.log('| test | t/s (median) | runs |');
  console.log('|---|---|---|');
  for (const [k, v] of Object.entries(results)) console.log(`| ${k} | ${v.median.toFixed(1)} | ${v.runs.map((x) => x.toFixed(1)).join(' ')} |`);
  console.log(`copy bandwidth ${(bandwidth / 1e9).toPrecision(3)} GB/s; weights ${(weightBytes / 2 ** 20).toFixed(0)} MiB per token; ` +
    `decode floor ${floorTps.toFixed(0)} t/s${out.ofFloor !== null ? `; ${tgName} at ${(100 * out.ofFloor).toFixed(1)}% of it` : ''}`);
  if (encodeUsPerToken !== null)
    console.log(`decode: ${lastDispatches ?? '?'} dispatches per token; host recording + submitting ${encodeUsPerToken.toFixed(0)} us, ` +
      `copying the logits ${readUsPerToken.toFixed(0)} us per token`);
  if (profile?.error) console.log(`profile: ${profile.error}`);
  else if (profile) {
    console.log(`\n${tgName}, one pass per step: ${profile.stepGpuUsPerToken.toFixed(0)} us of GPU time, ` +
      `${(profile.stepWallMsPerToken * 1e3).toFixed(0)} us wall per token`);
    console.log(`profile of ${tgName} (one pass per dispatch): ${profile.dispatchesPerToken} dispatches, ` +
      `${profile.gpuUsPerToken.toFixed(0)} us of kernels, ${(profile.wallMsPerToken * 1e3).toFixed(0)} us wall per token`);
    console.log('| kernel | us per token | dispatches per token | share |');
    console.log('|---|---|---|---|');
    for (const k of profile.kernels) console.log(`| ${k.label} | ${k.usPerToken.toFixed(1)} | ${k.perToken} | ${(100 * k.usPerToken / profile.gpuUsPerToken).toFixed(1)}% |`);
    const pf = profile.prefill;
    if (pf) {
      console.log(`\nprofile of pp${opt.p} (one pass per dispatch): ${(pf.gpuUs / 1e3).toFixed(2)} ms of kernels, ${pf.wallMs.toFixed(2)} ms wall per batch`);
      console.log('| kernel | us per batch | dispatches per batch | share |');
      console.log('|---|---|---|---|');
      for (const k of pf.kernels) console.log(`| ${k.label} | ${k.usPerToken.toFixed(1)} | ${k.perToken} | ${(100 * k.usPerToken / pf.gpuUs).toFixed(1)}% |`);
    }
  }
}
process.exit(0);
