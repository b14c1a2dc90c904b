#!/usr/bin/env node
// bench/wasm.mjs - CPU speed of the wasm engine under Node, in the style of
// `streamllm bench`: ppN evaluates N tokens as one batch, tgN N tokens one at
// a time, both from an empty cache; each test runs once to warm up, then -r
// times, and the table shows the median.
//
//   node bench/wasm.mjs -m MODEL [-p 64] [-n 32] [-r 5] [-t THREADS] [--simd auto|simd128|relaxed]
//                       [--wasm FILE] [--wasm-mt FILE]
//
// -t > 1 runs the engine on a pool of worker threads sharing its memory
// (the threaded build, build/wasm/engine-mt.wasm, or --wasm-mt) when that
// build exists. --simd: which build of the engine (default auto: the
// relaxed-SIMD one, build/wasm/engine-relaxed[-mt].wasm, where it is built
// and this Node runs relaxed SIMD; --wasm/--wasm-mt name files instead).
import { existsSync } from 'node:fs';
import v8 from 'node:v8';
import { Engine } from '../web/engine/engine.mjs';
import { median, benchTokens } from './lib.mjs';
import { relaxedSimdSupported, DEFAULT_WASM_RELAXED_URL, DEFAULT_WASM_RELAXED_MT_URL } from '../web/engine/wasm.mjs';

// Relaxed SIMD is on in Chrome >= 114, behind a flag in Node 20.
v8.setFlagsFromString('--experimental-wasm-relaxed-simd');

const args = process.argv.slice(2);
const opt = { m: null, p: 64, n: 32, r: 5, t: 1, simd: 'auto', wasm: undefined, wasmMt: undefined };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const v = args[++i];
  if (a === '-m') opt.m = v;
  else if (a === '-p') opt.p = Number(v);
  else if (a === '-n') opt.n = Number(v);
  else if (a === '-r') opt.r = Number(v);
  else if (a === '-t') opt.t = Number(v);
  else if (a === '--wasm') opt.wasm = v;
  else if (a === '--wasm-mt') opt.wasmMt = v;
  else if (a === '--simd' && ['auto', 'simd128', 'relaxed'].includes(v)) opt.simd = v;
  else {
    console.error('usage: node bench/wasm.mjs -m MODEL [-p N] [-n N] [-r RUNS] [-t THREADS] [--simd auto|simd128|relaxed] [--wasm FILE] [--wasm-mt FILE]');
    process.exit(2);
  }
}
if (!opt.m) {
  console.error('bench/wasm.mjs: no model (-m)');
  process.exit(2);
}


const relaxedBuild = [DEFAULT_WASM_RELAXED_URL.pathname, DEFAULT_WASM_RELAXED_MT_URL.pathname];
let build = opt.wasm ? 'given' : 'simd128';
if (!opt.wasm && opt.simd !== 'simd128') {
  const usable = relaxedSimdSupported() && relaxedBuild.every((f) => existsSync(f));
  if (!usable && opt.simd === 'relaxed') {
    console.error('bench/wasm.mjs: no relaxed-SIMD build (make wasm with clang-16) or this Node has no relaxed SIMD');
    process.exit(2);
  }
  if (usable) [opt.wasm, opt.wasmMt, build] = [...relaxedBuild, 'relaxed'];
}

const engine = await Engine.create({ wasm: opt.wasm, wasmMt: opt.wasmMt, backend: 'cpu', threads: opt.t });
const info = await engine.load(opt.m, { nCtx: Math.max(opt.p, opt.n, 1), nBatch: Math.max(opt.p, 1) });
const V = info.n_vocab;
const toks = benchTokens(V, Math.max(opt.p, opt.n));

// One timed run: tokens/s (wall clock) and CPU milliseconds per token (all
// threads of the process; with one thread, a figure that other load on the
// machine hardly changes).
async function once(tg, n) {
  engine.truncate(0);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  if (tg) for (let i = 0; i < n; i++) await engine.step([toks[i]]);
  else await engine.step(toks.slice(0, n));
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { tps: n / wall, cpuMs: (c.user + c.system) / 1000 / n };
}

const threads = engine.threads ?? 1;
console.log('| model | quant | backend | threads | test | t/s | CPU ms/token |');
console.log('| --- | --- | --- | ---: | ---: | ---: | ---: |');
for (const tg of [false, true]) {
  const n = tg ? opt.n : opt.p;
  if (n <= 0) continue;
  await once(tg, n);
  const runs = [];
  for (let r = 0; r < opt.r; r++) runs.push(await once(tg, n));
  console.log(`| ${info.name} | ${info.quant} | wasm cpu (${build}) | ${threads} | ${tg ? 'tg' : 'pp'}${n} | ` +
    `${median(runs.map((r) => r.tps)).toFixed(2)} | ${median(runs.map((r) => r.cpuMs)).toFixed(1)} |`);
}
engine.free();
