// gpu-tune.mjs - per-device tuning of the decode mat-vecs (src/gpu/kernels.h:
// rows per invocation, units of a row per invocation, the fewest workgroups
// worth fewer rows): candidate configurations are timed on the user's GPU
// with the loaded model, by greedy decoding steps (the whole step, as the
// user runs it), and the winner is kept in a cache keyed by the adapter and
// a hash of the engine's kernel texts (another build or another model shape
// is another key), so that later loads take it at once.
//
// The defaults were chosen on an H200 (src/gpu/README.md); a candidate
// replaces them only when, after two rounds over all, it is faster than
// the default by TUNE_MARGIN in each of three more timings side by side, so
// that noise does not trade a good configuration for a worse one.
// Software adapters (SwiftShader, lavapipe) are not tuned unless asked:
// their timings say nothing about a GPU.
import { EngineError } from './wasm.mjs';

const TUNE_MARGIN = 0.03;
// candidates: the default, then one change each; the best changes of
// several kinds are tried together afterwards
export const TUNING_CANDIDATES = [
  { rows: 0, units: 0, minWorkgroups: 0 },
  { rows: 0, units: 4, minWorkgroups: 0 }, { rows: 0, units: 16, minWorkgroups: 0 },
  { rows: 0, units: 0, minWorkgroups: 128 }, { rows: 0, units: 0, minWorkgroups: 512 },
  { rows: 1, units: 0, minWorkgroups: 0 }, { rows: 4, units: 0, minWorkgroups: 0 },
];
const DIMS = ['rows', 'units', 'minWorkgroups'];

const isNode = () => typeof process !== 'undefined' && !!process.versions?.node;

export function isSoftwareAdapter(info) {
  if (!info) return false;
  if (info.isFallbackAdapter) return true;
  return /swiftshader|llvmpipe|lavapipe|softpipe/i.test([info.vendor, info.architecture, info.device, info.description].join(' '));
}

// Whether option `tune` (true, 'auto', false) asks for tuning on this adapter.
export const tuningWanted = (mode, adapter) => mode === true || (mode !== false && !isSoftwareAdapter(adapter));

// Where tuning results are kept: { get(key), set(key, value) } (async).
// Node: a JSON file ($STREAMLLM_GPU_TUNING_FILE, default
// ~/.cache/stream-llm/gpu-tuning.json); browsers: the Cache API; else memory.
export async function defaultTuningCache() {
  if (isNode()) {
    const [{ readFile, writeFile, mkdir, rename }, path, os] = await Promise.all([
      import('node:fs/promises'), import('node:path'), import('node:os')]);
    const file = process.env.STREAMLLM_GPU_TUNING_FILE || path.join(os.homedir(), '.cache', 'stream-llm', 'gpu-tuning.json');
    const readAll = async () => {
      try {
        const v = JSON.parse(await readFile(file, 'utf8'));
        return v && typeof v === 'object' ? v : {};
      } catch {
        return {}; // none yet, or unreadable: tune again
      }
    };
    return {
      async get(key) { return (await readAll())[key]; },
      async set(key, value) {
        const all = await readAll();
        all[key] = value;
        await mkdir(path.dirname(file), { recursive: true });
        const tmp = `${file}.${process.pid}.tmp`;
        await writeFile(tmp, JSON.stringify(all, null, 1));
        await rename(tmp, file); // whole or not at all
      },
    };
  }
  if (typeof caches !== 'undefined') {
    const url = (key) => new URL(`/stream-llm-gpu-tuning/${encodeURIComponent(key)}`, globalThis.location?.href ?? 'https://localhost/').href;
    return {
      async get(key) {
        const r = await (await caches.open('stream-llm-gpu-tuning')).match(url(key));
        return r ? r.json() : undefined;
      },
      async set(key, value) {
        await (await caches.open('stream-llm-gpu-tuning')).put(url(key), new Response(JSON.stringify(value)));
      },
    };
  }
  return memoryTuningCache();
}

export function memoryTuningCache() {
  const m = new Map();
  return { async get(key) { return m.get(key); }, async set(key, value) { m.set(key, value); } };
}

const pick = (c) => ({ rows: c.rows ?? 0, units: c.units ?? 0, minWorkgroups: c.minWorkgroups ?? 0 });
const keyOf = (c) => JSON.stringify(pick(c));
const DEFAULT = TUNING_CANDIDATES[0];

// Tunes the decode mat-vecs of engine (an Engine with a loaded model on the
// WebGPU backend). mode: true (always), 'auto' (not on software adapters),
// false (never). Returns { source: 'cache'|'measured'|'skipped', tuning,
// reason?, ms, key, timings? } and leaves the engine with that tuning and an
// empty context.
export async function tuneDecode(engine, { mode = 'auto', cache = null, steps = 0, log = null } = {}) {
  const t0 = performance.now();
  const b = engine.backend;
  const done = (o) => ({ ...o, ms: performance.now() - t0 });
  const adapter = engine.factory.adapterInfo?.() ?? null;
  if (mode === false) return done({ source: 'skipped', reason: 'not asked', tuning: null });
  if (!b?.setMatvecTuning || !b.greedy) return done({ source: 'skipped', reason: 'no greedy decoding on the GPU (the model is not resident)', tuning: null });
  if (!tuningWanted(mode, adapter)) return done({ source: 'skipped', reason: 'software adapter', tuning: null });
  if (engine.nPast() !== 0) throw new EngineError('GPU tuning needs an empty context');
  // the ids after the first SKIP of a run come at the GPU's pace (the queue
  // of steps in flight grows by one per id; the first wait for its latency)
  const SKIP = Math.min(b.greedySlots ?? 2, 9) + 1;
  if (engine.nCtx() - 2 < SKIP + 4) return done({ source: 'skipped', reason: 'the context is too short to time decoding', tuning: null });
  cache ??= await defaultTuningCache();
  const a = adapter ?? {};
  const key = `${a.vendor}|${a.architecture}|${a.device}|${a.description}|${b.kernelsHash}`;
  const known = await cache.get(key);
  if (known && DIMS.every((k) => Number.isInteger(known[k]) && known[k] >= 0)) {
    await b.prepareMatvecTunings?.([pick(known)]);
    b.setMatvecTuning(pick(known));
    return done({ source: 'cache', tuning: pick(known), key });
  }

  // seconds per token of greedy decoding under tuning c, from an empty
  // context: between the SKIP-th id and the last of n
  const token = Math.min(1, engine.info.n_vocab - 1);
  const time = async (c, n) => {
    const a0 = performance.now();
    b.setMatvecTuning(c); // (a candidate the device refuses throws; the engine keeps the one before)
    const a1 = performance.now();
    for await (const id of engine.greedySteps(token, 2)) void id; // programs recorded
    engine.truncate(0);
    const at = [];
    for await (const id of engine.greedySteps(token, n)) {
      void id;
      at.push(performance.now());
    }
    engine.truncate(0);
    const s = (at[n - 1] - at[SKIP]) / 1000 / (n - 1 - SKIP);
    log?.(`tune ${JSON.stringify(c)}: set ${(a1 - a0).toFixed(0)} ms, ${n} steps, ${(s * 1e6).toFixed(0)} us per token`);
    return s;
  };
  // compiled ahead, all at once (one after another they took seconds each)
  await b.prepareMatvecTunings?.(TUNING_CANDIDATES);
  // the GPU kept busy for a while first (its clocks come up; the first
  // timings after a load were up to 3x slow), and enough steps per timing
  // for ~50 ms of steady decoding
  const cap = engine.nCtx() - 2; // steps that fit the context
  let n = Math.min(cap, Math.max(steps, SKIP + 4));
  if (!(steps > 0)) {
    const probe = await time(DEFAULT, Math.min(cap, SKIP + 16));
    n = Math.min(cap, SKIP + Math.max(16, Math.min(96, Math.ceil(0.05 / Math.max(probe, 1e-6)))));
    for (let left = Math.min(1000, Math.ceil(0.3 / Math.max(probe, 1e-6))); left > 0; left -= cap)
      await time(DEFAULT, Math.min(cap, Math.max(left, SKIP + 4)));
  }
  const timings = new Map(); // keyOf(candidate) -> its best seconds per token
  // one timing of c, kept in `timings` when its best
  const measure = async (c) => {
    const s = await time(c, n);
    timings.set(keyOf(c), Math.min(s, timings.get(keyOf(c)) ?? Infinity));
    return s;
  };
  // two rounds over the candidates
  for (let r = 0; r < 2; r++) for (const c of TUNING_CANDIDATES) await measure(c);
  // the best change of each kind, together
  const base = timings.get(keyOf(DEFAULT));
  const combo = pick(DEFAULT);
  let changes = 0;
  for (const d of DIMS) {
    const wins = TUNING_CANDIDATES.filter((c) => c[d] !== 0 && timings.get(keyOf(c)) < base * (1 - TUNE_MARGIN));
    if (!wins.length) continue;
    combo[d] = wins.reduce((x, y) => (timings.get(keyOf(y)) < timings.get(keyOf(x)) ? y : x))[d];
    changes++;
  }
  if (changes > 1) {
    await b.prepareMatvecTunings?.([combo]);
    await measure(combo);
    await measure(combo);
  }
  // the leader against the default, in turn, three times more: kept only if
  // it beats the default by the margin every time (a noisy timing can make
  // any candidate look best once; on an H200 none beats the defaults)
  const leader = JSON.parse([...timings].reduce((x, y) => (y[1] < x[1] ? y : x))[0]);
  let wins = 0;
  if (keyOf(leader) !== keyOf(DEFAULT)) {
    for (let r = 0; r < 3; r++) {
      const d = await measure(DEFAULT), l = await measure(leader);
      if (l < d * (1 - TUNE_MARGIN)) wins++;
      else break;
    }
  }
  const chosen = wins === 3 ? leader : pick(DEFAULT);
  b.setMatvecTuning(chosen);
  await cache.set(key, { ...chosen, tokensPerSecond: 1 / timings.get(keyOf(chosen)), defaultTokensPerSecond: 1 / timings.get(keyOf(DEFAULT)), at: new Date().toISOString() });
  return done({ source: 'measured', tuning: chosen, key, steps: n,
    timings: Object.fromEntries([...timings].map(([k, s]) => [k, 1 / s])) });
}
