// weights_pieces.test.mjs - the StreamWeightManager downloading a large
// shard with block hashes as several pieces at once (planPieces; splitBytes
// forces the cut on these small models), with the downloads in Workers and
// on the manager's thread. The test server's byte counters and Range log
// show: each byte sent once, the pieces' responses in flight together; a
// block corrupted in one piece fetched again alone; after an abort, nothing
// committed, and the next load keeps every block of the partial file that
// verifies (not only a prefix) and fetches only the others; a block that
// stays bad fails the load without committing the shard; a store that
// cannot take writers at once gets the shard whole. The rule's numbers, too.
// Made-up models and weights_server.mjs; last, the WebGPU engine (which
// pulls each file's bytes in order while the pieces push them out of order,
// rendezvous.mjs) loads stories260K in pieces with the logits of the file
// (needs the test data and a WebGPU adapter; a loud skip without).
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { StreamWeightManager, openStore, planPieces, IntegrityError, AbortError } from '../../web/engine/weights.mjs';
import { startServer } from './weights_server.mjs';
import { makeModel, recordingSink, sinkMatches, tempDir, partialFacts, refetchedGood, splitStories, hasStreamllm } from './weights_fixtures.mjs';
import { requireTestdata, WASM } from './refdata.mjs';

const FAST = { backoffMs: 5, maxBackoffMs: 20 };
const B = 65536;
const HEADER = 65536; // the first bytes of each shard the manager fetches for the engine
const SIZES = [4096, 300000, 2000000, 300000];
const BIG = 2;
// 2,000,000 bytes in pieces of about 500,000: 4 pieces, cut at multiples of
// 256 KiB (the chunk size, 4 blocks): blocks [0, 8), [8, 16), [16, 24), [24, 31)
const SPLIT = { splitBytes: 500000 };
const STARTS = [0, 8, 16, 24];
const NBLOCKS = 31;
const MODES = [['workers', { downloadWorkers: 2 }], ['in-thread', { downloadWorkers: 0 }]];

async function setup(t) {
  const dir = tempDir(t, 'sl-pieces-');
  const model = makeModel(path.join(dir, 'model'), { sizes: SIZES, blockBytes: B });
  const srv = await startServer({ dir: model.dir });
  t.after(() => srv.stop());
  const big = { ...model.shards[BIG], key: model.manifest.shards[BIG].sha256 };
  return { model, srv, big, cacheDir: path.join(dir, 'cache') };
}

const CUTS = STARTS.map((s, i) => [s, STARTS[i + 1] ?? NBLOCKS]);

test('pieces: the rule cuts only shards much larger than the rest, at block and chunk multiples', () => {
  const MB = 1e6;
  const shard = (bytes, blockBytes = 4 << 20) => ({ bytes, blockBytes });
  const opts = (workers, extra = {}) => ({ total: 766 * MB, workers, chunkBytes: 256 << 10, ...extra });
  // Llama-3.2-1B Q4_0: a 215 MB embedding among 34 MB layer shards
  assert.deepEqual(planPieces(shard(215.5 * MB), opts(6)), [[0, 13], [13, 26], [26, 39], [39, 52]]);
  assert.deepEqual(planPieces(shard(34.2 * MB), opts(6)), [[0, 9]]);
  assert.deepEqual(planPieces(shard(215.5 * MB), opts(2)), [[0, 26], [26, 52]]);
  assert.deepEqual(planPieces(shard(215.5 * MB), opts(1)), [[0, 52]], 'one Worker: nothing to share');
  assert.deepEqual(planPieces(shard(215.5 * MB), opts(6, { splitBytes: 0 })), [[0, 52]]);
  assert.deepEqual(planPieces(shard(16 << 20), { ...opts(6), total: 40 * MB }), [[0, 4]], 'no cut below 16 MiB');
  // cuts at multiples of both: 64 KiB blocks, 100,000-byte chunks -> 204.8 MB units
  assert.deepEqual(planPieces(shard(2e6, B), { total: 3e6, workers: 4, chunkBytes: 100000, splitBytes: 500000 }), [[0, 31]]);
  assert.deepEqual(planPieces(shard(2e6, B), { total: 3e6, workers: 4, chunkBytes: 256 << 10, ...SPLIT }), CUTS);
  for (const [bytes, workers] of [[215.5 * MB, 6], [4.66e9 / 12, 5], [1e9, 16]]) {
    const cuts = planPieces(shard(bytes), { total: 4.66e9, workers, chunkBytes: 256 << 10 });
    assert.equal(cuts[0][0], 0);
    assert.equal(cuts.at(-1)[1], Math.ceil(bytes / (4 << 20)));
    for (let i = 1; i < cuts.length; i++) assert.equal(cuts[i][0], cuts[i - 1][1]);
    assert.ok(cuts.length <= workers);
  }
});

for (const [mode, opt] of MODES) {
  test(`pieces (${mode}): a large shard in parallel pieces, each byte sent once; progress, counters, the cache`, async (t) => {
    const { model, srv, big, cacheDir } = await setup(t);
    // slow enough that the pieces' responses overlap
    srv.fault({ file: big.file, kind: 'slow', rate: 4 << 20, times: 1e9 });
    const store = await openStore({ dir: cacheDir });
    let last = null;
    const sink = recordingSink();
    const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store, ...SPLIT, ...opt, ...FAST, onProgress: (p) => { last = p; } });
    await wm.load(sink);
    assert.equal(sinkMatches(sink, model), true);
    assert.equal(sink.misaligned, 0);
    const total = SIZES.reduce((a, b) => a + b, 0);
    assert.equal(srv.bytes(), total, 'each byte sent once');
    assert.equal(srv.bytes(big.file), big.data.length);
    assert.deepEqual(srv.requests(big.file).map((e) => e.range).sort(), [
      `bytes=0-${HEADER - 1}`, `bytes=${HEADER}-${8 * B - 1}`, `bytes=${8 * B}-${16 * B - 1}`, `bytes=${16 * B}-${24 * B - 1}`, `bytes=${24 * B}-${big.data.length - 1}`,
    ].sort(), 'the header, then one Range per piece (the first goes on after the header)');
    assert.equal(srv.overlap(big.file), 4, 'the four pieces at once');
    assert.equal(wm.counters.networkBytes, total);
    assert.equal(wm.counters.cacheBytes, 0);
    assert.equal(wm.counters.splitShards, 1);
    assert.equal(last.phase, 'done');
    assert.equal(last.bytesDone, total);
    assert.ok(last.shards.every((s, k) => s.state === 'done' && s.done === SIZES[k] && s.source === 'network'));
    assert.ok(readFileSync(path.join(cacheDir, 'blobs', big.key)).equals(big.data), 'renamed into place whole');
    assert.ok(!existsSync(path.join(cacheDir, 'blobs', `${big.key}.part`)));
    srv.clearFaults();
    srv.reset();
    const again = recordingSink();
    await new StreamWeightManager({ url: srv.url('manifest.json'), store, ...SPLIT, ...opt, ...FAST }).load(again);
    assert.equal(sinkMatches(again, model), true);
    assert.equal(srv.bytes(), 0, 'from the cache');
  });

  test(`pieces (${mode}): without a store, each byte sent once`, async (t) => {
    const { model, srv, big } = await setup(t);
    const sink = recordingSink();
    const wm = new StreamWeightManager({ url: srv.url('manifest.json'), ...SPLIT, ...opt, ...FAST });
    await wm.load(sink);
    assert.equal(sinkMatches(sink, model), true);
    assert.equal(sink.misaligned, 0);
    assert.equal(srv.bytes(big.file), big.data.length);
    assert.equal(srv.requests(big.file).length, 5);
  });

  test(`pieces (${mode}): a block corrupted in one piece is fetched again alone`, async (t) => {
    const { model, srv, big, cacheDir } = await setup(t);
    const k = 19; // in the third piece, blocks [16, 24)
    srv.fault({ file: big.file, kind: 'corrupt', at: k * B + 1234 });
    const sink = recordingSink();
    const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store: await openStore({ dir: cacheDir }), ...SPLIT, ...opt, ...FAST });
    await wm.load(sink);
    assert.equal(sinkMatches(sink, model), true);
    assert.equal(wm.counters.refetches, 1);
    assert.equal(srv.requests(big.file).filter((e) => e.range === `bytes=${k * B}-${(k + 1) * B - 1}`).length, 1, 'the bad block alone, once more');
    assert.equal(srv.requests(big.file).length, 6);
    assert.equal(srv.bytes(big.file), big.data.length + B, 'one block more than the shard');
    assert.ok(readFileSync(path.join(cacheDir, 'blobs', big.key)).equals(big.data));
  });

  test(`pieces (${mode}): an abort commits nothing; the next load keeps every block that verifies and fetches only the others`, async (t) => {
    const { model, srv, big, cacheDir } = await setup(t);
    const store = await openStore({ dir: cacheDir });
    srv.fault({ file: big.file, kind: 'slow', rate: 1 << 20, times: 1e9 });
    const ctrl = new AbortController();
    const wm1 = new StreamWeightManager({
      url: srv.url('manifest.json'), store, ...SPLIT, ...opt, ...FAST,
      onProgress: (p) => { if (p.shards[BIG].done >= 800000) ctrl.abort(); },
    });
    await assert.rejects(wm1.load(recordingSink(), { signal: ctrl.signal }), AbortError);
    srv.clearFaults();
    await srv.idle();
    assert.equal((await store.stat(big.key)).complete, null, 'not committed');
    const part = readFileSync(path.join(cacheDir, 'blobs', `${big.key}.part`));
    const { good, missing, reused } = partialFacts(part, big.data, B, CUTS);
    // blocks kept in several pieces, with gaps between them: not a prefix
    const kept = STARTS.filter((s, i) => good.slice(s, STARTS[i + 1] ?? NBLOCKS).some(Boolean));
    assert.ok(kept.length >= 2, `verified blocks in ${kept.length} pieces: ${good.map(Number).join('')}`);
    assert.ok(good.some((g, k) => g && good.slice(0, k).includes(false)), 'a verified block after a missing one');

    srv.reset();
    const sink = recordingSink();
    const wm2 = new StreamWeightManager({ url: srv.url('manifest.json'), store, ...SPLIT, ...opt, ...FAST });
    await wm2.load(sink);
    assert.equal(sinkMatches(sink, model), true);
    assert.equal(sink.misaligned, 0);
    assert.deepEqual(refetchedGood(srv.requests(big.file), good, B), [], 'no block kept is fetched again');
    assert.equal(srv.bytes(big.file), missing - reused, `the blocks missing (${missing} bytes, ${reused} of them in the file's last bytes)`);
    const others = SIZES.reduce((a, b) => a + b, 0) - big.data.length;
    assert.equal(srv.bytes(), missing - reused, 'the other shards were complete');
    assert.equal(wm2.counters.cacheBytes, others + big.data.length - missing + reused);
    assert.ok(readFileSync(path.join(cacheDir, 'blobs', big.key)).equals(big.data));
  });

  test(`pieces (${mode}): a block that stays bad fails the load; the shard is not committed; a later load fetches what is missing`, async (t) => {
    const { model, srv, big, cacheDir } = await setup(t);
    const store = await openStore({ dir: cacheDir });
    srv.fault({ file: big.file, kind: 'corrupt', at: 26 * B + 7, times: 1e9 }); // in the last piece
    await assert.rejects(new StreamWeightManager({ url: srv.url('manifest.json'), store, ...SPLIT, ...opt, ...FAST }).load(recordingSink()),
      (e) => e instanceof IntegrityError && /block 27 of 31/.test(e.message) && /3 downloads/.test(e.message));
    srv.clearFaults();
    await srv.idle();
    assert.equal((await store.stat(big.key)).complete, null, 'not committed');
    const part = readFileSync(path.join(cacheDir, 'blobs', `${big.key}.part`));
    const { good, missing, reused } = partialFacts(part, big.data, B, CUTS);
    assert.ok(!good[26]);
    srv.reset();
    const sink = recordingSink();
    await new StreamWeightManager({ url: srv.url('manifest.json'), store, ...SPLIT, ...opt, ...FAST }).load(sink);
    assert.equal(sinkMatches(sink, model), true);
    assert.deepEqual(refetchedGood(srv.requests(big.file), good, B), [], 'no block kept is fetched again');
    assert.equal(srv.bytes(big.file), missing - reused);
  });
}

test('pieces: a store whose writers cannot share a file gets the shard whole', async (t) => {
  const { model, srv, big, cacheDir } = await setup(t);
  const store = await openStore({ dir: cacheDir });
  store.sharedWrites = () => false; // as the Cache API store, or OPFS without 'readwrite-unsafe'
  const sink = recordingSink();
  await new StreamWeightManager({ url: srv.url('manifest.json'), store, ...SPLIT, downloadWorkers: 2, ...FAST }).load(sink);
  assert.equal(sinkMatches(sink, model), true);
  assert.deepEqual(srv.requests(big.file).map((e) => e.range), [`bytes=0-${HEADER - 1}`, `bytes=${HEADER}-${big.data.length - 1}`]);
});

test('pieces: the WebGPU engine loads stories260K whose shards come in pieces, with the logits of the file', async (t) => {
  if (!requireTestdata(t) || !hasStreamllm()) return;
  const { requireGpu } = await import('./gpu_env.mjs');
  if (!(await requireGpu(t))) return;
  const { Engine } = await import('../../web/engine/engine.mjs');
  const { webgpuBackend } = await import('../../web/engine/webgpu.mjs');
  const { model, shards } = splitStories(t, 'sl-pieces-gpu-', { blockBytes: B });
  const srv = await startServer({ dir: shards });
  t.after(() => srv.stop());
  const logits = async (load) => {
    const engine = await Engine.create({ wasm: readFileSync(WASM), backend: await webgpuBackend({}) });
    try {
      await load(engine);
      return Array.from(new Uint32Array((await engine.eval(engine.tokenize('Once upon a time'), { allLogits: true })).buffer));
    } finally {
      engine.free();
    }
  };
  const want = await logits((e) => e.load(model));
  let wm = null;
  const got = await logits((e) => e.loadStream(wm = new StreamWeightManager({ url: srv.url('manifest.json'), splitBytes: B, downloadWorkers: 2, chunkBytes: B, ...FAST })));
  assert.ok(wm.counters.splitShards >= 3, `${wm.counters.splitShards} shards in pieces`);
  assert.deepEqual(got, want);
});
