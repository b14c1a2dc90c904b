// faults.test.mjs - what the StreamWeightManager leaves behind after a fault,
// beyond the error itself (weights.test.mjs covers the faults one by one):
// a store that fills up in the middle of a download (QuotaExceededError from
// a write while the estimate claimed room) must keep what it verified and
// what arrived of the cut shard, and once there is room again the next load
// must fetch only what is missing, deliver every tensor right and leave the
// cache valid (the model complete, exactly its bytes, no partial download,
// loadable offline). Self-contained (made-up model, weights_server.mjs).
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { StreamWeightManager, WeightCache, openStore, QuotaError } from '../../web/engine/weights.mjs';
import { startServer } from './weights_server.mjs';
import { makeModel, recordingSink, sinkMatches, tempDir } from './weights_fixtures.mjs';

const FAST = { backoffMs: 5, maxBackoffMs: 20 };

test('quota: full mid-download, then room again: only the missing bytes, every tensor right, the cache valid', async (t) => {
  const dir = tempDir(t, 'sl-faults-');
  const model = makeModel(path.join(dir, 'model'));
  const srv = await startServer({ dir: model.dir });
  t.after(() => srv.stop());
  const url = srv.url('manifest.json');
  const cacheDir = path.join(dir, 'cache');
  const sizes = model.manifest.shards.map((s) => s.bytes);
  const total = sizes.reduce((a, b) => a + b, 0);
  const keys = model.manifest.shards.map((s) => s.sha256);

  // 1. room for about half the model, but the estimate says plenty: a write fails
  const quota = Math.floor(total * 0.55);
  const full = await openStore({ dir: cacheDir, quota });
  full.estimate = async () => ({ usage: 0, quota: 1e12 });
  const err = await new StreamWeightManager({ url, store: full, ...FAST }).load(recordingSink()).catch((e) => e);
  assert.ok(err instanceof QuotaError, String(err));
  assert.match(err.message, /storage is full/);
  const kept = {};
  for (const k of keys) kept[k] = await full.stat(k);
  const complete = model.manifest.shards.filter((s) => kept[s.sha256].complete === s.bytes);
  const partial = model.manifest.shards.reduce((n, s) => n + (kept[s.sha256].complete === s.bytes ? 0 : Math.min(kept[s.sha256].partial ?? 0, s.bytes)), 0);
  const held = complete.reduce((n, s) => n + s.bytes, 0) + partial;
  // (the test store checks its quota per write, racing with parallel writes: it may overshoot a little)
  assert.ok(held > 0 && held < total, `the store holds ${held} bytes of ${total}, quota ${quota}`);
  const usage1 = await new WeightCache(full).usage();
  assert.equal(usage1.bytes, complete.reduce((n, s) => n + s.bytes, 0), 'verified bytes = the complete shards');

  // 2. room again (same folder): the load completes, fetching only what was missing
  srv.reset();
  const roomy = await openStore({ dir: cacheDir });
  const sink = recordingSink();
  const wm = new StreamWeightManager({ url, store: roomy, ...FAST });
  await wm.load(sink);
  assert.equal(sinkMatches(sink, model), true);
  for (const s of complete) assert.equal(srv.bytes(s.file), 0, `${s.file} (complete before) not fetched again`);
  assert.equal(srv.bytes(), total - held, `${srv.bytes()} bytes fetched; ${held} of ${total} were held`);

  // 3. the cache is valid: complete, exactly the shards' bytes, no partial left; offline load
  const cache = new WeightCache(roomy);
  const list = await cache.list();
  assert.equal(list.length, 1);
  assert.equal(list[0].complete, true);
  const usage = await cache.usage();
  assert.equal(usage.bytes, total);
  assert.equal(usage.partialBytes, 0);
  for (const s of model.manifest.shards) assert.equal((await roomy.stat(s.sha256)).complete, s.bytes);
  await srv.stop();
  const offline = recordingSink();
  const wm2 = new StreamWeightManager({ url, store: roomy, ...FAST });
  await wm2.load(offline);
  assert.equal(wm2.offline, true);
  assert.equal(sinkMatches(offline, model), true);
});
