// weights_ops.mjs - what the browser test of the StreamWeightManager runs in
// a module Worker (weights_worker.mjs) and in the page (weights.html): load a
// model through the manager into the wasm engine (CPU backend) from a cache
// store of a given kind, optionally aborting after some bytes, and evaluate
// logits; inspect and clear the store. Driven by tests/web/weights_browser.test.mjs.
import { Engine } from '../../web/engine/engine.mjs';
import { StreamWeightManager, WeightCache, openStore } from '../../web/engine/weights.mjs';

const stores = new Map();
async function store(kind, name) {
  const k = `${kind}:${name}`;
  if (!stores.has(k)) stores.set(k, await openStore({ kind, name }));
  return stores.get(k);
}

export const ops = {
  // { url, kind, name, abortAt: { file, done } (abort once that shard has
  // `done` bytes), prompt, splitBytes, downloadWorkers (the manager's
  // options) } -> { aborted, error, logits, counters, offline, progress }
  async load({
    url, kind, name = 'stream-llm', abortAt = null, prompt = 'Once upon a time', chunkBytes = 65536, hashWorkers = null,
    splitBytes = null, downloadWorkers = null,
  }) {
    const s = await store(kind, name);
    const engine = await Engine.create({ backend: 'cpu' });
    const ctrl = new AbortController();
    let last = null;
    const trace = [];
    const wm = new StreamWeightManager({
      url, store: s, chunkBytes, hashWorkers, splitBytes, downloadWorkers, backoffMs: 5, maxBackoffMs: 20,
      onProgress: (p) => {
        last = p;
        if (abortAt) trace.push([Math.round(performance.now()), p.shards.map((x) => x.done).join(',')]);
        if (abortAt !== null && p.shards.some((x) => x.file === abortAt.file && x.done >= abortAt.done)) ctrl.abort();
      },
    });
    try {
      await engine.loadStream(wm, { signal: ctrl.signal });
      const ids = engine.tokenize(prompt);
      const logits = await engine.eval(ids, { allLogits: true });
      return { aborted: false, logits, counters: wm.counters, offline: wm.offline, progress: last, storeKind: s.kind, sync: s.sync ?? null };
    } catch (e) {
      return { aborted: ctrl.signal.aborted, error: `${e.name}: ${e.message}`, counters: wm.counters, progress: last, trace };
    } finally {
      engine.free();
    }
  },
  // The manager alone (a sink that drops the bytes): { seconds, counters }.
  async timeLoad({ url, kind = null, name = 'stream-llm', hashWorkers = null, concurrency = 4, chunkBytes = undefined }) {
    const s = kind ? await store(kind, name) : null;
    const wm = new StreamWeightManager({ url, store: s, hashWorkers, concurrency, chunkBytes });
    const t0 = performance.now();
    await wm.load({ header: () => 0, tensor: () => {} });
    return { seconds: (performance.now() - t0) / 1000, counters: wm.counters };
  },
  async stat({ kind, name = 'stream-llm', keys }) {
    const s = await store(kind, name);
    const out = {};
    for (const k of keys) out[k] = await s.stat(k);
    return out;
  },
  // The bytes of a partial download in OPFS (KEY.part), as an array.
  async partial({ name = 'stream-llm', key }) {
    const root = await navigator.storage.getDirectory();
    const blobs = await (await root.getDirectoryHandle(name)).getDirectoryHandle('blobs');
    const file = await (await blobs.getFileHandle(`${key}.part`)).getFile();
    return Array.from(new Uint8Array(await file.arrayBuffer()));
  },
  async list({ kind, name = 'stream-llm' }) {
    const c = new WeightCache(await store(kind, name));
    return { models: await c.list(), usage: await c.usage() };
  },
  async clear({ kind, name = 'stream-llm' }) {
    await new WeightCache(await store(kind, name)).clear();
    return true;
  },
};
