#!/usr/bin/env node
// cli.mjs - `node web/cli.mjs run|logits ...`: the native CLI's `run` and
// `logits` (same arguments, same output and file formats; see
// src/cli/cli_run.c) on the wasm engine, with the backend chosen by
// --backend cpu|webgpu, plus --adapter-info (the WebGPU adapter's facts).

import { writeFile, readFile, stat } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { Engine, EngineError, webgpuBackend } from './engine/engine.mjs';
import { StreamWeightManager, openStore, WeightError } from './engine/weights.mjs';

// The backend when --backend is not given: becomes webgpu once that
// backend passes the conformance tests.
const DEFAULT_BACKEND = 'cpu';

const USAGE = `usage: node web/cli.mjs COMMAND [options]

commands:
  run      -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P]
           [--repeat-penalty R] [--repeat-last-n N] [--frequency-penalty F]
           [--presence-penalty P] [--seed S] [-t THREADS] [--ctx N]
           [--chat [--system TEXT] [--chat-template NAME]]
  logits   -m MODEL (-p PROMPT | --tokens FILE) -o OUT.f32 [-t THREADS] [--ctx N]
  --adapter-info                        the WebGPU adapter (also with a command)

common options:
  --backend cpu|webgpu   where the model runs (default ${DEFAULT_BACKEND})
  --wasm FILE            engine.wasm to load (default build/wasm/engine.wasm)
  --cache DIR            keep downloaded shards in DIR (resumable, reused, offline)
  --gpu-budget BYTES     GPU memory the WebGPU plan may use (K, M, G suffixes); a model
                         over it keeps the layers that fit resident and streams the
                         others from its files or the cache in every pass (slower)
  --kv-f16               WebGPU: keep the KV cache in f16 (half the memory) when the
                         adapter has shader-f16 (default f32, as llama.cpp's references)

MODEL is a .gguf file, the first file of a llama.cpp split (*-00001-of-0000N.gguf),
a shard directory made by "streamllm split" or its manifest.json, or an http(s)
URL of a manifest (e.g. http://HOST/api/models/ID) or of a .gguf file; shards and
URLs load through the StreamWeightManager (SHA-256 checked, web/engine/weights.mjs).
`;

class UsageError extends Error {}

// Option table, as in src/cli/main.c: names, whether it takes a value, and
// how the value is parsed (int/float ranges as there).
const OPTS = [
  { key: 'model', names: ['-m', '--model'] },
  { key: 'prompt', names: ['-p', '--prompt'] },
  { key: 'nPredict', names: ['-n', '--n-predict'], int: [-1, 1 << 24] },
  { key: 'threads', names: ['-t', '--threads'], int: [1, 1024] },
  { key: 'nCtx', names: ['--ctx', '-c', '--ctx-size'], int: [1, 1 << 24] },
  { key: 'nBatch', names: ['-b', '--batch-size'], int: [1, 1 << 16] },
  { key: 'temp', names: ['--temp'], float: [-1e9, 1e9] },
  { key: 'topK', names: ['--top-k'], int: [-1, 1 << 24] },
  { key: 'topP', names: ['--top-p'], float: [0, 1] },
  { key: 'minP', names: ['--min-p'], float: [0, 1] },
  { key: 'seed', names: ['--seed', '-s'], seed: true },
  { key: 'repeatPenalty', names: ['--repeat-penalty'], float: [0, 100] },
  { key: 'repeatLastN', names: ['--repeat-last-n'], int: [-1, 1 << 24] },
  { key: 'frequencyPenalty', names: ['--frequency-penalty'], float: [-100, 100] },
  { key: 'presencePenalty', names: ['--presence-penalty'], float: [-100, 100] },
  { key: 'tokens', names: ['--tokens'] },
  { key: 'out', names: ['-o', '--output'] },
  { key: 'chat', names: ['--chat'], flag: true },
  { key: 'chatTemplate', names: ['--chat-template'] },
  { key: 'system', names: ['--system'] },
  { key: 'special', names: ['--special'], flag: true },
  { key: 'backend', names: ['--backend'] },
  { key: 'wasm', names: ['--wasm'] },
  { key: 'cache', names: ['--cache'] },
  { key: 'adapterInfo', names: ['--adapter-info'], flag: true },
  { key: 'gpuBudget', names: ['--gpu-budget'], bytes: true },
  { key: 'kvF16', names: ['--kv-f16'], flag: true },
  { key: 'verbose', names: ['-v', '--verbose'], flag: true },
];

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const d = OPTS.find((x) => x.names.includes(a));
    if (!d) {
      if (a.startsWith('-') && a.length > 1) throw new UsageError(`unknown option '${a}' (see 'node web/cli.mjs --help')`);
      if (o.text !== undefined) throw new UsageError(`unexpected argument '${a}'`);
      o.text = a; // one positional argument is taken (and unused), as natively
      continue;
    }
    if (d.flag) {
      o[d.key] = true;
      continue;
    }
    if (i + 1 >= argv.length) throw new UsageError(`option ${a} needs a value`);
    const v = argv[++i];
    if (d.int) {
      const [lo, hi] = d.int;
      if (!/^[+-]?\d+$/.test(v.trim()) || Number(v) < lo || Number(v) > hi) throw new UsageError(`${a} expects an integer in [${lo}, ${hi}], got '${v}'`);
      o[d.key] = Number(v);
    } else if (d.float) {
      const [lo, hi] = d.float;
      const x = Number(v);
      if (v.trim() === '' || !(x >= lo && x <= hi)) throw new UsageError(`${a} expects a number in [${fmtG(lo)}, ${fmtG(hi)}], got '${v}'`);
      o[d.key] = x;
    } else if (d.bytes) {
      const m = /^(\d+(?:\.\d+)?)([KMG]i?B?)?$/i.exec(v.trim());
      if (!m) throw new UsageError(`${a} expects a size in bytes (e.g. 512M, 2G), got '${v}'`);
      const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[(m[2] ?? '').charAt(0).toUpperCase()];
      o[d.key] = Math.floor(Number(m[1]) * unit);
    } else if (d.seed) {
      if (!/^\d+$/.test(v) || BigInt(v) >= 1n << 64n) throw new UsageError(`${a} expects a non-negative integer, got '${v}'`);
      o[d.key] = BigInt(v);
    } else {
      o[d.key] = v;
    }
  }
  if (o.chatTemplate) o.chat = true;
  if (o.backend !== undefined && o.backend !== 'cpu' && o.backend !== 'webgpu') throw new UsageError(`--backend expects cpu or webgpu, got '${o.backend}'`);
  return o;
}

// printf's %g for the range bounds in messages (1e+09 as C prints it).
function fmtG(x) {
  return Math.abs(x) >= 1e6 ? x.toExponential().replace(/e([+-])(\d)$/, 'e$10$2') : String(x);
}

async function openEngine(o, nNeeded = 0) {
  const gpu = o.gpuBudget !== undefined ? { budget: o.gpuBudget } : {};
  if (o.kvF16) gpu.kvF16 = true;
  const engine = await Engine.create({ wasm: o.wasm ? new URL(o.wasm, `file://${process.cwd()}/`) : undefined, backend: o.backend ?? DEFAULT_BACKEND, gpu });
  // the context as the native CLI sizes it: --ctx, else min(n_ctx_train,
  // 4096), grown to a sequence known up front
  try {
    const opts = { nCtx: o.nCtx ?? 0, minCtx: nNeeded, nBatch: o.nBatch ?? 0 };
    const url = await streamedModelUrl(o.model);
    if (url === null) {
      await engine.load(o.model, opts);
    } else {
      const store = o.cache ? await openStore({ dir: o.cache }) : null;
      await engine.loadStream(new StreamWeightManager({ url, store }), opts);
    }
  } catch (e) {
    engine.free();
    throw e;
  }
  return engine;
}

// The URL the StreamWeightManager loads MODEL from, or null for a file
// the engine reads directly: an http(s)/file URL as is, a shard directory
// as its manifest.json, a manifest.json path as a file: URL.
async function streamedModelUrl(model) {
  if (/^(https?|file):/i.test(model)) return model;
  let st = null;
  try {
    st = await stat(model);
  } catch {
    return null; // the file path's error comes from the engine
  }
  if (st.isDirectory()) return pathToFileURL(`${model.replace(/\/+$/, '')}/manifest.json`).href;
  if (/(^|\/)manifest\.json$/.test(model)) return pathToFileURL(model).href;
  return null;
}

async function cmdRun(o) {
  if (!o.model) throw new UsageError('no model given (-m MODEL)');
  if (o.prompt === undefined) throw new UsageError('no prompt given (-p PROMPT)');
  const nPredict = o.nPredict === undefined || o.nPredict < 0 ? 128 : o.nPredict;
  const engine = await openEngine(o);
  try {
    const text = o.chat ? engine.chatPrompt(o.prompt, { system: o.system ?? null, template: o.chatTemplate ?? null }) : o.prompt;
    const ids = engine.tokenize(text, { addSpecial: true, parseSpecial: true });
    if (ids.length === 0) throw new EngineError('the prompt has no tokens');
    if (ids.length + nPredict > engine.nCtx())
      throw new EngineError(`prompt (${ids.length} tokens) + ${nPredict} to generate exceed the context of ${engine.nCtx()} tokens (use --ctx)`);
    const sampling = {};
    for (const k of ['temp', 'topK', 'topP', 'minP', 'repeatPenalty', 'repeatLastN', 'frequencyPenalty', 'presencePenalty', 'seed'])
      if (o[k] !== undefined) sampling[k] = o[k];
    const stats = {};
    for await (const t of engine.generate(ids, { nPredict, sampling, renderSpecial: !!o.special, stats }))
      if (t.bytes.length) process.stdout.write(t.bytes);
    if (process.stdout.isTTY) process.stdout.write('\n');
    const nGen = stats.nGen ?? 0;
    process.stderr.write(`prompt: ${ids.length} tokens, ${(ids.length / stats.promptSeconds).toFixed(2)} tok/s; ` +
      `generation: ${nGen} tokens, ${(nGen > 1 ? (nGen - 1) / stats.genSeconds : 0).toFixed(2)} tok/s (${backendNote(engine, o)})\n`);
  } finally {
    engine.free();
  }
}

function backendNote(engine, o) {
  if (engine.backendName === 'cpu') return `wasm cpu, 1 thread${o.threads > 1 ? `; -t ${o.threads} ignored` : ''}`;
  const plan = engine.backend?.plan;
  // --kv-f16 is a request: say whether the device took it
  const kv = o.kvF16 ? `, kv ${plan?.kv_f16 ? 'f16' : 'f32 (no shader-f16)'}` : '';
  if (plan && plan.n_resident < plan.n_layer) return `${engine.backendName}${kv}, on demand: ${plan.n_resident} of ${plan.n_layer} layers resident`;
  return `${engine.backendName}${kv}`;
}

// Whitespace-separated non-negative token ids, as the native --tokens reads them.
async function readTokenFile(path) {
  let text;
  try {
    text = await readFile(path, 'latin1');
  } catch (e) {
    throw new EngineError(`cannot open ${path}: ${e.code === 'ENOENT' ? 'No such file or directory' : e.message}`);
  }
  const words = text.split(/[ \t\n\r]+/).filter((w) => w.length);
  const ids = new Int32Array(words.length);
  words.forEach((w, i) => {
    if (!/^[+]?\d+$/.test(w) || Number(w) > 2147483647) throw new EngineError(`${path}: token ${i + 1} is not a non-negative integer`);
    ids[i] = Number(w);
  });
  if (ids.length === 0) throw new EngineError(`${path} holds no token ids`);
  return ids;
}

async function cmdLogits(o) {
  if (!o.model) throw new UsageError('no model given (-m MODEL)');
  if ((o.prompt === undefined) === (o.tokens === undefined)) throw new UsageError('give either -p PROMPT or --tokens FILE');
  if (!o.out) throw new UsageError('no output file given (-o OUT.f32)');
  const fileIds = o.tokens !== undefined ? await readTokenFile(o.tokens) : null;
  const engine = await openEngine(o, fileIds ? fileIds.length : 0);
  try {
    const ids = fileIds ?? engine.tokenize(o.prompt, { addSpecial: true, parseSpecial: true });
    if (ids.length === 0) throw new EngineError('the prompt has no tokens');
    if (ids.length > engine.nCtx()) throw new EngineError(`${ids.length} tokens exceed the context of ${engine.nCtx()} tokens (use --ctx)`);
    const logits = await engine.eval(ids, { allLogits: true });
    try {
      await writeFile(o.out, new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
    } catch (e) {
      throw new EngineError(`cannot create ${o.out}: ${e.message}`);
    }
    process.stderr.write(`wrote ${ids.length} x ${engine.nVocab} logits to ${o.out}\n`);
  } finally {
    engine.free();
  }
}

async function adapterInfo() {
  const factory = await webgpuBackend();
  if (typeof factory.adapterInfo !== 'function') throw new EngineError('the WebGPU backend has no adapterInfo()');
  const info = await factory.adapterInfo();
  // Dawn crashed at exit (NVIDIA Vulkan) when the process ended right after
  // creating a device: let the device go and Dawn's threads settle first
  factory.device?.destroy?.();
  await factory.device?.lost;
  await new Promise((r) => setTimeout(r, 100));
  process.stdout.write(typeof info === 'string' ? `${info}\n` : `${JSON.stringify(info, null, 2)}\n`);
}

async function main(argv) {
  if (argv.length === 0 || ['-h', '--help', 'help'].includes(argv[0])) {
    (argv.length === 0 ? process.stderr : process.stdout).write(USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  const cmd = argv[0].startsWith('-') ? null : argv[0];
  if (cmd !== null && cmd !== 'run' && cmd !== 'logits') {
    process.stderr.write(`streamllm: unknown command '${cmd}'\n${USAGE}`);
    return 2;
  }
  const name = cmd ?? 'adapter-info';
  let o;
  try {
    o = parseArgs(cmd ? argv.slice(1) : argv);
    if (o.adapterInfo) await adapterInfo();
    if (cmd === 'run') await cmdRun(o);
    else if (cmd === 'logits') await cmdLogits(o);
    else if (!o.adapterInfo) throw new UsageError('no command given (run, logits or --adapter-info)');
    return 0;
  } catch (e) {
    const msg = String(e instanceof EngineError || e instanceof UsageError || e instanceof WeightError ? e.message : e.stack ?? e).replace(/\n/g, ' ');
    process.stderr.write(`streamllm ${name}: ${msg}\n`);
    return e instanceof UsageError ? 2 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
