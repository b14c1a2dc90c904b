// weights.test.mjs - the StreamWeightManager (web/engine/weights.mjs) against
// the fault-injecting server (weights_server.mjs) with made-up models
// (weights_fixtures.mjs): every tensor byte arrives, parallel fetches,
// resume after a cut connection (in the same load and in a later one) with
// the server's byte counters showing nothing was fetched twice, corrupted
// shards refetched, retries and their limits, stalls, wrong Content-Length,
// Range ignored, quota, a new manifest version reusing unchanged shards and
// collecting the rest, offline loads from the cache, the cache API, on-demand
// tensor reads. Also the incremental SHA-256. Self-contained (no test data).
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Sha256, newSha256, HashPool } from '../../web/engine/sha256.mjs';
import {
  StreamWeightManager, WeightCache, openStore, parseManifest,
  HttpError, NetworkError, IntegrityError, ManifestError, QuotaError, AbortError,
} from '../../web/engine/weights.mjs';
import { startServer } from './weights_server.mjs';
import { makeModel, changeShard, recordingSink, sinkMatches, tempDir, sha256 } from './weights_fixtures.mjs';

const FAST = { backoffMs: 5, maxBackoffMs: 20 };
const HEADER = 65536; // the first bytes of each shard the manager fetches for the engine

async function setup(t, opts = {}) {
  const dir = tempDir(t);
  const model = makeModel(path.join(dir, 'model'), opts);
  const srv = await startServer({ dir: model.dir });
  t.after(() => srv.stop());
  return { dir, model, srv, cacheDir: path.join(dir, 'cache') };
}

const blobFiles = (cacheDir) => (existsSync(path.join(cacheDir, 'blobs')) ? readdirSync(path.join(cacheDir, 'blobs')).sort() : []);

// ---- SHA-256 -----------------------------------------------------------------------

test('sha256: the JS hash equals node:crypto and crypto.subtle, in any pieces', async () => {
  const rnd = (n) => crypto.randomBytes(n);
  for (let n = 0; n <= 300; n++) {
    const b = rnd(n);
    assert.equal(new Sha256().update(b).digestHex(), sha256(b), `length ${n}`);
  }
  for (let i = 0; i < 200; i++) {
    const b = rnd(1 + Math.floor(Math.random() * 5000));
    const h = new Sha256();
    for (let at = 0; at < b.length;) {
      const n = Math.min(b.length - at, Math.floor(Math.random() * 200));
      h.update(b.subarray(at, at + n));
      at += n;
    }
    const want = Buffer.from(await crypto.subtle.digest('SHA-256', b)).toString('hex');
    assert.equal(h.digestHex(), want, `random pieces of ${b.length}`);
  }
  const big = rnd(5 << 20);
  const h = new Sha256();
  for (let at = 0; at < big.length; at += 65537) h.update(big.subarray(at, at + 65537));
  assert.equal(h.digestHex(), sha256(big));
  const native = await newSha256();
  assert.equal(native.update(big).digestHex(), sha256(big));
  assert.throws(() => h.update(big), /after digest/);
});

test('sha256: the worker pool hashes in order, through a few shared slots', async () => {
  const pool = await HashPool.create(2);
  assert.ok(pool, 'workers and SharedArrayBuffer in Node');
  try {
    const inputs = [crypto.randomBytes(0), crypto.randomBytes(1), crypto.randomBytes(3 << 20), crypto.randomBytes(777777)];
    const hashers = inputs.map(() => pool.hasher({ slotBytes: 65536, slots: 2 }));
    // interleaved updates of several hashes, pieces of any size, the caller's buffer reused at once
    const scratch = new Uint8Array(300000);
    for (let at = 0; at < 3 << 20; at += 123457) {
      for (const [i, h] of hashers.entries()) {
        const piece = inputs[i].subarray(at, at + 123457);
        if (piece.length === 0) continue;
        scratch.set(piece);
        await h.update(scratch.subarray(0, piece.length));
        scratch.fill(0);
      }
    }
    for (const [i, h] of hashers.entries()) assert.equal(await h.digestHex(), sha256(inputs[i]), `input ${i}`);
  } finally {
    pool.close();
  }
});

// ---- the manifest ---------------------------------------------------------------------

test('manifest: malformed ones are refused with the problem named', () => {
  const good = () => ({
    format: 'stream-llm/1', model: {},
    shards: [{ file: 'a.gguf', bytes: 100, sha256: 'a'.repeat(64), tensors: [{ name: 't', offset: 32, bytes: 16 }] }],
  });
  assert.equal(parseManifest(good(), 'http://h/m/manifest.json')[0].url, 'http://h/m/a.gguf');
  const cases = [
    [(m) => { m.format = 'x'; }, /format/],
    [(m) => { m.shards = []; }, /no shards/],
    [(m) => { m.shards[0].file = '../a.gguf'; }, /bad file name/],
    [(m) => { m.shards[0].file = 'x/a.gguf'; }, /bad file name/],
    [(m) => { m.shards[0].sha256 = 'zz'; }, /sha256/],
    [(m) => { m.shards[0].bytes = -1; }, /bytes/],
    [(m) => { m.shards[0].tensors[0].offset = 90; }, /outside/],
    [(m) => { m.shards[0].tensors.push({ name: 'u', offset: 40, bytes: 4 }); }, /overlap/],
    [(m) => { m.shards[0].tensors.push({ name: 't', offset: 60, bytes: 4 }); }, /twice/],
    [(m) => { m.shards[0].url = 'ftp://x/a'; }, /url/],
    [(m) => { m.shards[0].tensors[0].offset = 0; }, /offset 0/],
  ];
  for (const [edit, re] of cases) {
    const m = good();
    edit(m);
    assert.throws(() => parseManifest(m, 'http://h/m/manifest.json'), (e) => e instanceof ManifestError && re.test(e.message), String(edit));
  }
});

// ---- loading -------------------------------------------------------------------------

test('load: headers in order, then every tensor byte; progress ends at done', async (t) => {
  const { model, srv } = await setup(t);
  const sink = recordingSink();
  const events = [];
  const wm = new StreamWeightManager({ url: srv.url('manifest.json'), ...FAST, onProgress: (p) => events.push(p) });
  await wm.load(sink);
  assert.deepEqual(sink.headers.map((h) => [h.k, h.len, h.size]), model.manifest.shards.map((s, k) => [k, Math.min(HEADER, s.bytes), s.bytes]));
  assert.deepEqual(sink.headers.map((h) => h.sha), model.shards.map((s) => sha256(s.data.subarray(0, HEADER))));
  assert.equal(sinkMatches(sink, model), true);
  const total = model.shards.reduce((n, s) => n + s.data.length, 0);
  assert.equal(srv.bytes(), total, 'each byte sent once');
  const last = events.at(-1);
  assert.equal(last.phase, 'done');
  assert.equal(last.bytesDone, total);
  assert.equal(last.bytesTotal, total);
  assert.ok(last.shards.every((s) => s.state === 'done' && s.source === 'network'));
  assert.ok(events.some((p) => p.phase === 'headers'));
});

test('load: at most `concurrency` requests at once', async (t) => {
  const { model, srv } = await setup(t, { sizes: [2048, 200000, 200000, 200000, 200000, 200000, 200000] });
  srv.fault({ kind: 'slow', rate: 1 << 20, times: 1e9 }); // 0.2 s a shard: they overlap
  const sink = recordingSink();
  await new StreamWeightManager({ url: srv.url('manifest.json'), concurrency: 2, ...FAST }).load(sink);
  assert.equal(sinkMatches(sink, model), true);
  assert.ok(srv.maxInflight <= 2 && srv.maxInflight >= 2, `max in flight ${srv.maxInflight}`);
});

test('store: verified shards only, a second load comes from the cache', async (t) => {
  const { model, srv, cacheDir } = await setup(t);
  const store = await openStore({ dir: cacheDir });
  const first = new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST });
  await first.load(recordingSink());
  assert.deepEqual(blobFiles(cacheDir), model.manifest.shards.map((s) => s.sha256).sort(), 'blobs named by sha256, no .part');
  // a first download: every byte from the network, none counted as cached
  // (the header prefixes it stored and read back are this load's own)
  assert.equal(first.counters.cacheBytes, 0);
  assert.equal(first.counters.networkBytes, model.manifest.shards.reduce((n, s) => n + s.bytes, 0));
  srv.reset();
  const sink = recordingSink();
  const events = [];
  const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST, onProgress: (p) => events.push(p) });
  await wm.load(sink);
  assert.equal(sinkMatches(sink, model), true);
  assert.equal(srv.bytes(), 0, 'no shard byte fetched again');
  assert.deepEqual(srv.log.map((e) => e.file), ['manifest.json']);
  assert.ok(events.at(-1).shards.every((s) => s.source === 'cache'));
  assert.equal(wm.counters.networkBytes, 0);
  assert.equal(wm.counters.cacheBytes, model.manifest.shards.reduce((n, s) => n + s.bytes, 0));
});

// ---- resume ---------------------------------------------------------------------------

test('resume: a connection cut mid-shard continues by Range, nothing fetched twice', async (t) => {
  const { model, srv, cacheDir } = await setup(t);
  const file = model.shards[2].file;
  srv.fault({ file, kind: 'close', at: 123457 });
  const sink = recordingSink();
  const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store: await openStore({ dir: cacheDir }), ...FAST });
  await wm.load(sink);
  assert.equal(sinkMatches(sink, model), true);
  assert.equal(srv.bytes(file), model.shards[2].data.length, 'the shard\'s bytes were sent exactly once');
  const ranges = srv.requests(file).map((e) => e.range);
  assert.deepEqual(ranges, [`bytes=0-${HEADER - 1}`, `bytes=${HEADER}-${model.shards[2].data.length - 1}`, `bytes=123457-${model.shards[2].data.length - 1}`]);
  assert.equal(wm.counters.retries, 1);
  assert.equal(sink.misaligned, 0, 'pieces at chunk boundaries despite the cut at an odd byte');
});

test('resume: a TCP reset mid-shard (no store) continues from the bytes received', async (t) => {
  const { model, srv } = await setup(t);
  const file = model.shards[3].file;
  const size = model.shards[3].data.length;
  srv.fault({ file, kind: 'reset', at: 100000 });
  const sink = recordingSink();
  await new StreamWeightManager({ url: srv.url('manifest.json'), ...FAST }).load(sink);
  assert.equal(sinkMatches(sink, model), true);
  const reqs = srv.requests(file);
  assert.equal(reqs.length, 3);
  const resumedAt = Number(/^bytes=(\d+)-/.exec(reqs[2].range)[1]);
  assert.ok(resumedAt > HEADER && resumedAt <= 100000, `resumed at ${resumedAt}`);
  // at most the bytes lost in the reset connection come twice
  assert.equal(srv.bytes(file), size + (100000 - resumedAt));
  assert.equal(sink.misaligned, 0);
});

test('resume: a later load (new manager, same cache) continues an interrupted download', async (t) => {
  const { model, srv, cacheDir } = await setup(t, { sizes: [4096, 300000, 2000000, 300000] });
  const store = await openStore({ dir: cacheDir });
  const big = model.shards[2];
  srv.fault({ file: big.file, kind: 'slow', rate: 2 << 20, times: 1e9 });
  const ctrl = new AbortController();
  const wm1 = new StreamWeightManager({
    url: srv.url('manifest.json'), store, ...FAST, concurrency: 4,
    onProgress: (p) => { if (p.shards[2].done > 700000 && p.shards[1].state === 'done' && p.shards[3].state === 'done') ctrl.abort(); },
  });
  await assert.rejects(wm1.load(recordingSink(), { signal: ctrl.signal }), AbortError);
  srv.clearFaults();
  // what the first load kept: shards 0, 1, 3 verified, shard 2 partial
  const blobs = blobFiles(cacheDir);
  assert.ok(blobs.includes(`${big.data.length ? model.manifest.shards[2].sha256 : ''}.part`), blobs.join(' '));
  for (const k of [0, 1, 3]) assert.ok(blobs.includes(model.manifest.shards[k].sha256), `shard ${k} kept`);
  const partial = statSync(path.join(cacheDir, 'blobs', `${model.manifest.shards[2].sha256}.part`)).size;
  assert.ok(partial >= 700000 && partial < big.data.length, `partial ${partial}`);

  await srv.idle();
  srv.reset();
  const sink = recordingSink();
  const wm2 = new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST });
  await wm2.load(sink);
  assert.equal(sinkMatches(sink, model), true);
  for (const k of [0, 1, 3]) assert.equal(srv.bytes(model.shards[k].file), 0, `shard ${k} not fetched again`);
  assert.deepEqual(srv.requests(big.file).map((e) => e.range), [`bytes=${partial}-${big.data.length - 1}`]);
  assert.equal(srv.bytes(big.file), big.data.length - partial, 'only the missing part of the interrupted shard');
  assert.equal(sink.misaligned, 0, `pieces aligned after resuming at ${partial}`);
  assert.deepEqual(blobFiles(cacheDir), model.manifest.shards.map((s) => s.sha256).sort());
});

// ---- integrity --------------------------------------------------------------------------

test('integrity: a shard served corrupted is detected, discarded and refetched', async (t) => {
  const { model, srv, cacheDir } = await setup(t);
  const k = 1;
  const file = model.shards[k].file;
  srv.fault({ file, kind: 'corrupt', at: 150000 });
  const sink = recordingSink();
  const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store: await openStore({ dir: cacheDir }), hashWorkers: 2, ...FAST });
  await wm.load(sink);
  assert.equal(wm.counters.hashWorkers, 2, 'hashed in workers');
  assert.equal(sinkMatches(sink, model), true, 'the sink ends with the right bytes');
  assert.equal(wm.counters.refetches, 1);
  // header (256) + the corrupted rest + the whole shard again from byte 0
  assert.equal(srv.bytes(file), model.shards[k].data.length * 2);
  assert.deepEqual(srv.requests(file).map((e) => e.range).slice(-1), [`bytes=0-${model.shards[k].data.length - 1}`]);
  assert.deepEqual(blobFiles(cacheDir), model.manifest.shards.map((s) => s.sha256).sort());
});

test('integrity: also with the hash on the loading thread (hashWorkers: 0)', async (t) => {
  // (the test above hashes in workers)
  const { model, srv } = await setup(t);
  srv.fault({ file: model.shards[3].file, kind: 'corrupt', at: 150000 });
  const sink = recordingSink();
  const wm = new StreamWeightManager({ url: srv.url('manifest.json'), hashWorkers: 0, ...FAST });
  await wm.load(sink);
  assert.equal(sinkMatches(sink, model), true);
  assert.equal(wm.counters.refetches, 1);
  assert.equal(wm.counters.hashWorkers, 0);
});

test('integrity: always corrupted -> IntegrityError after bounded attempts, nothing cached for it', async (t) => {
  const { model, srv, cacheDir } = await setup(t);
  const file = model.shards[2].file;
  srv.fault({ file, kind: 'corrupt', at: 4000, times: 1e9 });
  const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store: await openStore({ dir: cacheDir }), integrityAttempts: 3, ...FAST });
  await assert.rejects(wm.load(recordingSink()), (e) => e instanceof IntegrityError && e.message.includes(file) && /3 downloads/.test(e.message));
  assert.equal(srv.requests(file).filter((e) => e.range.startsWith('bytes=0-') && e.range !== `bytes=0-${HEADER - 1}`).length, 2);
  assert.ok(!blobFiles(cacheDir).some((b) => b.startsWith(model.manifest.shards[2].sha256)), 'no blob, no partial');
});

test('integrity: a corrupted header restarts the load (sink.reset), or fails without reset', async (t) => {
  const { model, srv, cacheDir } = await setup(t);
  const file = model.shards[1].file;
  srv.fault({ file, kind: 'corrupt', at: 10 });
  const sink = recordingSink({ reset: true });
  const store = await openStore({ dir: cacheDir });
  await new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST }).load(sink);
  assert.equal(sink.resets, 1);
  assert.equal(sink.headers[1].sha, sha256(model.shards[1].data.subarray(0, HEADER)), 'the right header in the end');
  assert.equal(sinkMatches(sink, model), true);

  srv.fault({ file: model.shards[2].file, kind: 'corrupt', at: 10 });
  await assert.rejects(new StreamWeightManager({ url: srv.url('manifest.json'), ...FAST }).load(recordingSink()),
    (e) => e instanceof IntegrityError && /header/.test(e.message));
});

// ---- HTTP failures --------------------------------------------------------------------------

test('retries: 500 and 503 (Retry-After) are retried; a 404 fails at once; the limit holds', async (t) => {
  const { model, srv } = await setup(t);
  srv.fault({ file: model.shards[1].file, kind: 'status', status: 500, times: 2 });
  srv.fault({ file: model.shards[2].file, kind: 'status', status: 503, retryAfter: 0 });
  srv.fault({ file: 'manifest.json', kind: 'status', status: 502 });
  const sink = recordingSink();
  const wm = new StreamWeightManager({ url: srv.url('manifest.json'), ...FAST });
  await wm.load(sink);
  assert.equal(sinkMatches(sink, model), true);
  assert.equal(wm.counters.retries, 4);

  srv.fault({ file: model.shards[3].file, kind: 'status', status: 404 });
  const t0 = performance.now();
  await assert.rejects(new StreamWeightManager({ url: srv.url('manifest.json'), retries: 5, backoffMs: 1000 }).load(recordingSink()),
    (e) => e instanceof HttpError && e.status === 404 && e.message.includes(model.shards[3].file));
  assert.ok(performance.now() - t0 < 900, 'no backoff for a 404');

  srv.reset();
  srv.fault({ file: model.shards[2].file, kind: 'status', status: 500, times: 1e9 });
  await assert.rejects(new StreamWeightManager({ url: srv.url('manifest.json'), retries: 3, ...FAST }).load(recordingSink()),
    (e) => e instanceof HttpError && e.status === 500 && /after 3 retries/.test(e.message));
  assert.equal(srv.requests(model.shards[2].file).length, 4);
});

test('retries: a refused connection gives a NetworkError after the retries', async (t) => {
  const { srv } = await setup(t);
  const url = srv.url('manifest.json');
  await srv.stop();
  await assert.rejects(new StreamWeightManager({ url, retries: 2, ...FAST }).load(recordingSink()),
    (e) => e instanceof NetworkError && /after 2 retries/.test(e.message));
});

test('stall: a response that stops sending is abandoned after stallMs and resumed', async (t) => {
  const { model, srv } = await setup(t);
  const file = model.shards[2].file;
  srv.fault({ file, kind: 'stall', at: 150000 });
  const sink = recordingSink();
  const wm = new StreamWeightManager({ url: srv.url('manifest.json'), stallMs: 300, ...FAST });
  await wm.load(sink);
  assert.equal(sinkMatches(sink, model), true);
  assert.equal(srv.requests(file).at(-1).range, `bytes=150000-${model.shards[2].data.length - 1}`);
});

test('wrong Content-Length (too long or too short) and Range ignored still give the right bytes', async (t) => {
  const { model, srv } = await setup(t);
  const [a, b, c] = [model.shards[1], model.shards[2], model.shards[3]];
  srv.fault({ file: a.file, kind: 'length', declared: a.data.length + 1000 });
  srv.fault({ file: b.file, kind: 'length', declared: 1000 });
  srv.fault({ file: c.file, kind: 'close', at: 50000 });
  srv.fault({ file: c.file, kind: 'norange', times: 3 });
  const sink = recordingSink();
  await new StreamWeightManager({ url: srv.url('manifest.json'), ...FAST }).load(sink);
  assert.equal(sinkMatches(sink, model), true);
});

// ---- storage ----------------------------------------------------------------------------

test('quota: not enough room is reported before downloading, with what is needed', async (t) => {
  const { model, srv, cacheDir } = await setup(t);
  const total = model.shards.reduce((n, s) => n + s.data.length, 0);
  const store = await openStore({ dir: cacheDir, quota: total - 1000 });
  const err = await new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST }).load(recordingSink()).catch((e) => e);
  assert.ok(err instanceof QuotaError, String(err));
  assert.equal(err.needed, total);
  assert.equal(err.available, total - 1000);
  assert.match(err.message, /needed/);
  assert.equal(srv.bytes(), 0, 'not a byte fetched');
  // a store that claims room but fills up: QuotaError from the write, with what is needed
  const liar = await openStore({ dir: `${cacheDir}-2`, quota: 100000 });
  liar.estimate = async () => ({ usage: 0, quota: 1e12 });
  const err2 = await new StreamWeightManager({ url: srv.url('manifest.json'), store: liar, ...FAST }).load(recordingSink()).catch((e) => e);
  assert.ok(err2 instanceof QuotaError, String(err2));
  assert.ok(err2.needed > 0 && err2.needed <= total, `needed ${err2.needed}`);
});

test('new manifest version: unchanged shards reused by sha256, orphans collected', async (t) => {
  const { dir, model, srv, cacheDir } = await setup(t);
  const store = await openStore({ dir: cacheDir });
  const url = srv.url('manifest.json');
  await new StreamWeightManager({ url, store, ...FAST }).load(recordingSink());
  const v2 = changeShard(model, path.join(dir, 'v2'), 2);
  srv.setDir(v2.dir);
  srv.reset();
  const sink = recordingSink();
  await new StreamWeightManager({ url, store, ...FAST }).load(sink);
  assert.equal(sinkMatches(sink, v2), true);
  assert.equal(srv.bytes(), v2.shards[2].data.length, 'only the changed shard downloaded');
  assert.deepEqual(srv.log.filter((e) => e.bytes > 0).map((e) => e.file).filter((f) => f !== 'manifest.json'), [v2.shards[2].file, v2.shards[2].file]);
  assert.deepEqual(blobFiles(cacheDir), v2.manifest.shards.map((s) => s.sha256).sort(), 'the old version of shard 2 is gone');
  const list = await new WeightCache(store).list();
  assert.equal(list.length, 1);
  assert.equal(list[0].complete, true);
});

test('gc keeps the partial download of another model; delete frees a model', async (t) => {
  const { dir, model, srv, cacheDir } = await setup(t);
  const store = await openStore({ dir: cacheDir });
  // model B: interrupted at its second shard
  const other = makeModel(path.join(dir, 'b'), { seed: 7, name: 'other', sizes: [2048, 400000] });
  const srvB = await startServer({ dir: other.dir });
  t.after(() => srvB.stop());
  srvB.fault({ file: other.shards[1].file, kind: 'close', at: 100000 });
  await assert.rejects(new StreamWeightManager({ url: srvB.url('manifest.json'), store, retries: 0, ...FAST }).load(recordingSink()), NetworkError);
  const partialB = `${other.manifest.shards[1].sha256}.part`;
  assert.ok(blobFiles(cacheDir).includes(partialB));
  // model A loads completely and collects garbage: B's partial stays
  await new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST }).load(recordingSink());
  assert.ok(blobFiles(cacheDir).includes(partialB), 'pending download kept');
  const cache = new WeightCache(store);
  const list = await cache.list();
  assert.deepEqual(list.map((m) => [m.name, m.complete]).sort(), [['fake', true], ['other', false]]);
  const usage = await cache.usage();
  assert.equal(usage.bytes, model.shards.reduce((n, s) => n + s.data.length, 0) + 2048);
  assert.ok(usage.partialBytes >= 100000);
  assert.ok(usage.estimate.quota > usage.estimate.usage);
  await cache.delete(srv.url('manifest.json'));
  assert.deepEqual(blobFiles(cacheDir).sort(), [other.manifest.shards[0].sha256, partialB].sort());
  await cache.clear();
  assert.deepEqual(blobFiles(cacheDir), []);
  assert.equal(await cache.persist(), true);
});

test('offline: with the server gone the model loads from the cache', async (t) => {
  const { model, srv, cacheDir } = await setup(t);
  const store = await openStore({ dir: cacheDir });
  const url = srv.url('manifest.json');
  await new StreamWeightManager({ url, store, ...FAST }).load(recordingSink());
  await srv.stop();
  const sink = recordingSink();
  const wm = new StreamWeightManager({ url, store, ...FAST });
  await wm.load(sink);
  assert.equal(sinkMatches(sink, model), true);
  assert.equal(wm.offline, true);
  assert.equal(wm.counters.networkBytes, 0);
  assert.deepEqual(await wm.manifest(), model.manifest);
});

test('abort: load() rejects with AbortError and keeps what arrived', async (t) => {
  const { model, srv, cacheDir } = await setup(t);
  srv.fault({ kind: 'slow', rate: 1 << 20, times: 1e9 });
  const ctrl = new AbortController();
  setTimeout(() => ctrl.abort(), 150);
  const store = await openStore({ dir: cacheDir });
  await assert.rejects(new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST }).load(recordingSink(), { signal: ctrl.signal }), AbortError);
  const kept = blobFiles(cacheDir).filter((b) => b.endsWith('.part'));
  assert.ok(kept.length > 0, 'partial downloads kept');
  srv.clearFaults();
  const sink = recordingSink();
  await new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST }).load(sink);
  assert.equal(sinkMatches(sink, model), true);
});

// ---- on-demand reads, plain files, local directories --------------------------------------

test('readTensor: a tensor again from the cache, or by Range without one', async (t) => {
  const { model, srv, cacheDir } = await setup(t);
  const store = await openStore({ dir: cacheDir });
  for (const st of [store, null]) {
    const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store: st, chunkBytes: 65536, ...FAST });
    await wm.load(recordingSink());
    srv.reset();
    const sink = recordingSink();
    sink.begin({ tensors: [...model.tensors].map(([name, x]) => ({ name, bytes: x.bytes })) });
    const names = wm.layerTensors(2);
    assert.deepEqual(names, ['blk.2.t0.weight', 'blk.2.t1.weight', 'blk.2.t2.weight']);
    await wm.readTensors(names, sink);
    for (const name of names) {
      const x = model.tensors.get(name);
      assert.ok(sink.tensors.get(name).equals(model.shards[x.file].data.subarray(x.offset, x.offset + x.bytes)), name);
    }
    assert.equal(srv.bytes(), st ? 0 : names.reduce((n, name) => n + model.tensors.get(name).bytes, 0));
    wm.close();
  }
});

test('plain file: a .gguf URL by Range, the header grown on request, cached by its ETag hash', async (t) => {
  const { model, srv, cacheDir } = await setup(t, { sizes: [3 << 20], header: 1536 * 1024, perShard: 2 });
  const file = model.shards[0].file;
  const table = [...model.tensors].map(([name, x]) => ({ name, ...x }));
  const mk = () => Object.assign(recordingSink({ headerAsk: { 0: 1536 * 1024 } }), { fileCount: () => 1, tensorTable: () => table });
  const store = await openStore({ dir: cacheDir });
  const sink = mk();
  await new StreamWeightManager({ url: srv.url(file), store, ...FAST }).load(sink);
  assert.deepEqual(sink.headers.map((h) => h.len), [1 << 20, 1536 * 1024]);
  assert.equal(sinkMatches(sink, model), true);
  assert.equal(srv.bytes(file), model.shards[0].data.length + 1, 'each byte once (+1: the size probe)');
  assert.deepEqual(blobFiles(cacheDir), [model.manifest.shards[0].sha256], 'the ETag is a SHA-256: verified and keyed by it');
  srv.reset();
  const again = mk();
  await new StreamWeightManager({ url: srv.url(file), store, ...FAST }).load(again);
  assert.equal(sinkMatches(again, model), true);
  assert.equal(srv.bytes(file), 1, 'from the cache');
});

test('local directory: a file: URL of manifest.json loads without a server', async (t) => {
  const { model } = await setup(t);
  const sink = recordingSink();
  await new StreamWeightManager({ url: pathToFileURL(path.join(model.dir, 'manifest.json')).href }).load(sink);
  assert.equal(sinkMatches(sink, model), true);
  await assert.rejects(new StreamWeightManager({ url: pathToFileURL(path.join(model.dir, 'nope.json')).href }).load(sink), HttpError);
});
