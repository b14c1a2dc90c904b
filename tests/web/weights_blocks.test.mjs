// weights_blocks.test.mjs - the StreamWeightManager with manifests that list
// a SHA-256 per block of each shard (what `streamllm split` writes): every
// test runs with the downloads in Workers and on the manager's thread. A
// block corrupted by the server is fetched again alone (the server's byte
// counters and Range log show it); a block that stays bad ends in an
// IntegrityError that keeps the verified blocks for a resume; an interrupted
// download resumes after its verified blocks, a damaged one among them is
// fetched again alone; a corrupted header restarts the load; the partial file
// holds only verified blocks; both paths give the sink the same byte
// stream; block lists that disagree with the shard are refused.
// Self-contained (made-up models, weights_server.mjs).
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { StreamWeightManager, openStore, parseManifest, IntegrityError, ManifestError, AbortError } from '../../web/engine/weights.mjs';
import { startServer } from './weights_server.mjs';
import { makeModel, recordingSink, sinkMatches, tempDir, blockHashes } from './weights_fixtures.mjs';

const FAST = { backoffMs: 5, maxBackoffMs: 20 };
const B = 65536; // the block size of these models (the least a manifest may have)
const HEADER = 65536; // the first bytes of each shard the manager fetches for the engine
const MODES = [['workers', { downloadWorkers: 2 }], ['in-thread', { downloadWorkers: 0 }]];

async function setup(t, opts = {}) {
  const dir = tempDir(t, 'sl-blocks-');
  const model = makeModel(path.join(dir, 'model'), { blockBytes: B, ...opts });
  const srv = await startServer({ dir: model.dir });
  t.after(() => srv.stop());
  return { dir, model, srv, cacheDir: path.join(dir, 'cache') };
}

const blobFiles = (cacheDir) => (existsSync(path.join(cacheDir, 'blobs')) ? readdirSync(path.join(cacheDir, 'blobs')).sort() : []);
const partPath = (cacheDir, key) => path.join(cacheDir, 'blobs', `${key}.part`);

// The file offsets a Range header asks for: [from, to].
const rangeOf = (e) => e.range.replace('bytes=', '').split('-').map(Number);

for (const [mode, opt] of MODES) {
  test(`blocks (${mode}): a clean load; the partial file only ever holds verified blocks`, async (t) => {
    const { model, srv, cacheDir } = await setup(t);
    const store = await openStore({ dir: cacheDir });
    const sink = recordingSink();
    const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store, ...opt, ...FAST });
    await wm.load(sink);
    assert.equal(sinkMatches(sink, model), true);
    assert.equal(sink.misaligned, 0);
    const total = model.shards.reduce((n, s) => n + s.data.length, 0);
    assert.equal(srv.bytes(), total, 'each byte sent once (the header bytes are not fetched again)');
    assert.equal(wm.counters.networkBytes, total);
    assert.equal(wm.counters.cacheBytes, 0);
    assert.equal(wm.counters.hashWorkers, 0, 'no whole-file hash');
    assert.equal(wm.counters.downloadWorkers, opt.downloadWorkers);
    assert.deepEqual(blobFiles(cacheDir), model.manifest.shards.map((s) => s.sha256).sort(), 'every shard renamed into place');
    for (const s of model.shards) assert.ok(readFileSync(path.join(cacheDir, 'blobs', model.manifest.shards[model.shards.indexOf(s)].sha256)).equals(s.data));
    srv.reset();
    const again = recordingSink();
    await new StreamWeightManager({ url: srv.url('manifest.json'), store, ...opt, ...FAST }).load(again);
    assert.equal(sinkMatches(again, model), true);
    assert.equal(srv.bytes(), 0, 'from the cache');
  });

  test(`blocks (${mode}): a block corrupted by the server is fetched again alone`, async (t) => {
    const { model, srv, cacheDir } = await setup(t);
    const k = 2;
    const { file, data } = model.shards[k];
    const at = 200000; // in block 3: [196608, 262144)
    srv.fault({ file, kind: 'corrupt', at });
    const sink = recordingSink();
    const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store: await openStore({ dir: cacheDir }), ...opt, ...FAST });
    await wm.load(sink);
    assert.equal(sinkMatches(sink, model), true, 'the sink gets only verified bytes');
    assert.equal(wm.counters.refetches, 1);
    const block = Math.floor(at / B);
    assert.deepEqual(srv.requests(file).map((e) => e.range), [
      `bytes=0-${HEADER - 1}`, `bytes=${HEADER}-${data.length - 1}`, `bytes=${block * B}-${(block + 1) * B - 1}`,
    ], 'the response goes on; the bad block alone is asked for again');
    assert.equal(srv.bytes(file), data.length + B, 'one block more than the shard');
    for (const s of model.shards) if (s.file !== file) assert.equal(srv.bytes(s.file), s.data.length);
    assert.equal(sink.misaligned, 0);
    assert.ok(readFileSync(path.join(cacheDir, 'blobs', model.manifest.shards[k].sha256)).equals(data), 'the stored shard is right');
  });

  test(`blocks (${mode}): a block always bad -> IntegrityError; the verified blocks before it stay for a resume`, async (t) => {
    const { model, srv, cacheDir } = await setup(t);
    const k = 2;
    const { file, data } = model.shards[k];
    const key = model.manifest.shards[k].sha256;
    srv.fault({ file, kind: 'corrupt', at: 200000, times: 1e9 });
    const store = await openStore({ dir: cacheDir });
    const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store, integrityAttempts: 3, ...opt, ...FAST });
    await assert.rejects(wm.load(recordingSink()),
      (e) => e instanceof IntegrityError && e.message.includes(file) && /block 4 of 8/.test(e.message) && /3 downloads/.test(e.message));
    assert.equal(srv.requests(file).filter((e) => e.range === `bytes=${3 * B}-${4 * B - 1}`).length, 2, 'two more downloads of the block');
    assert.ok(!blobFiles(cacheDir).includes(key), 'not renamed into place');
    assert.equal(statSync(partPath(cacheDir, key)).size, 3 * B, 'blocks 1-3, verified, kept');
    assert.ok(readFileSync(partPath(cacheDir, key)).equals(data.subarray(0, 3 * B)));

    srv.clearFaults();
    await srv.idle();
    srv.reset();
    const sink = recordingSink();
    await new StreamWeightManager({ url: srv.url('manifest.json'), store, ...opt, ...FAST }).load(sink);
    assert.equal(sinkMatches(sink, model), true);
    assert.deepEqual(srv.requests(file).map((e) => e.range), [`bytes=${3 * B}-${data.length - 1}`], 'resumed after the verified blocks');
    assert.equal(srv.bytes(file), data.length - 3 * B);
    assert.equal(sink.misaligned, 0);
  });

  test(`blocks (${mode}): an interrupted download resumes after its verified blocks; a damaged one is fetched again`, async (t) => {
    const { model, srv, cacheDir } = await setup(t, { sizes: [4096, 300000, 2000000, 300000] });
    const store = await openStore({ dir: cacheDir });
    const k = 2;
    const { file, data } = model.shards[k];
    const key = model.manifest.shards[k].sha256;
    srv.fault({ file, kind: 'slow', rate: 2 << 20, times: 1e9 });
    const ctrl = new AbortController();
    const wm1 = new StreamWeightManager({
      url: srv.url('manifest.json'), store, ...opt, ...FAST,
      onProgress: (p) => { if (p.shards[k].done > 700000 && p.shards[1].state === 'done' && p.shards[3].state === 'done') ctrl.abort(); },
    });
    await assert.rejects(wm1.load(recordingSink(), { signal: ctrl.signal }), AbortError);
    srv.clearFaults();
    await srv.idle();
    // verified blocks, then what arrived of the next one (checked when it is complete)
    const partial = statSync(partPath(cacheDir, key)).size;
    assert.ok(partial >= 700000 && partial < data.length, `partial ${partial}`);
    assert.ok(readFileSync(partPath(cacheDir, key)).equals(data.subarray(0, partial)), 'exactly the shard\'s first bytes');

    // a later load: only the rest of that shard
    const copy = readFileSync(partPath(cacheDir, key));
    srv.reset();
    const sink = recordingSink();
    const wm2 = new StreamWeightManager({ url: srv.url('manifest.json'), store, ...opt, ...FAST });
    await wm2.load(sink);
    assert.equal(sinkMatches(sink, model), true);
    for (const j of [0, 1, 3]) assert.equal(srv.bytes(model.shards[j].file), 0, `shard ${j} not fetched again`);
    assert.deepEqual(srv.requests(file).map((e) => e.range), [`bytes=${partial}-${data.length - 1}`]);
    assert.equal(srv.bytes(file), data.length - partial);
    assert.equal(wm2.counters.cacheBytes, model.shards.reduce((n, s, j) => n + (j === k ? partial : s.data.length), 0));
    assert.equal(sink.misaligned, 0);

    // the same partial file with block 3 damaged on disk: that block alone is
    // fetched again, every other block it holds is kept, then the rest
    const keyBlob = path.join(cacheDir, 'blobs', key);
    const damaged = Buffer.from(copy);
    damaged[2 * B + 5] ^= 1;
    writeFileSync(partPath(cacheDir, key), damaged);
    const { rmSync } = await import('node:fs');
    rmSync(keyBlob);
    srv.reset();
    const sink3 = recordingSink();
    await new StreamWeightManager({ url: srv.url('manifest.json'), store, ...opt, ...FAST }).load(sink3);
    assert.equal(sinkMatches(sink3, model), true);
    assert.deepEqual(srv.requests(file).map((e) => e.range), [`bytes=${2 * B}-${3 * B - 1}`, `bytes=${partial}-${data.length - 1}`]);
    assert.ok(readFileSync(keyBlob).equals(data));
  });

  test(`blocks (${mode}): a partial file whose unfinished block is damaged: that block is fetched again alone`, async (t) => {
    const { model, srv, cacheDir } = await setup(t);
    const k = 2;
    const { file, data } = model.shards[k];
    const key = model.manifest.shards[k].sha256;
    // 2 blocks and 1000 bytes of the third, one of them wrong
    const part = Buffer.from(data.subarray(0, 2 * B + 1000));
    part[2 * B + 500] ^= 0x40;
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path.join(cacheDir, 'blobs'), { recursive: true });
    writeFileSync(partPath(cacheDir, key), part);
    const sink = recordingSink();
    const wm = new StreamWeightManager({ url: srv.url('manifest.json'), store: await openStore({ dir: cacheDir }), ...opt, ...FAST });
    await wm.load(sink);
    assert.equal(sinkMatches(sink, model), true);
    assert.equal(wm.counters.refetches, 1);
    assert.deepEqual(srv.requests(file).map((e) => e.range), [`bytes=${2 * B + 1000}-${data.length - 1}`, `bytes=${2 * B}-${3 * B - 1}`]);
    assert.ok(readFileSync(path.join(cacheDir, 'blobs', key)).equals(data));
    assert.equal(wm.counters.cacheBytes, 2 * B, 'the verified blocks of the partial file count as cached; its damaged tail, fetched again, not');
  });

  test(`blocks (${mode}): a corrupted header restarts the load (sink.reset)`, async (t) => {
    const { model, srv, cacheDir } = await setup(t);
    srv.fault({ file: model.shards[1].file, kind: 'corrupt', at: 10 });
    const sink = recordingSink({ reset: true });
    await new StreamWeightManager({ url: srv.url('manifest.json'), store: await openStore({ dir: cacheDir }), ...opt, ...FAST }).load(sink);
    assert.equal(sink.resets, 1);
    assert.equal(sinkMatches(sink, model), true);
    srv.fault({ file: model.shards[2].file, kind: 'corrupt', at: 10 });
    await assert.rejects(new StreamWeightManager({ url: srv.url('manifest.json'), ...opt, ...FAST }).load(recordingSink()),
      (e) => e instanceof IntegrityError && /header/.test(e.message));
  });

  test(`blocks (${mode}): cut, reset and stalled connections, 503s, and chunkBytes that are not a multiple of the block`, async (t) => {
    const { model, srv } = await setup(t);
    srv.fault({ file: model.shards[2].file, kind: 'close', at: 123457 });
    srv.fault({ file: model.shards[1].file, kind: 'reset', at: 100001 });
    srv.fault({ file: model.shards[3].file, kind: 'stall', at: 150000 });
    srv.fault({ file: model.shards[0].file, kind: 'status', status: 503, retryAfter: 0, times: 2 });
    const chunkBytes = 100000;
    const sink = recordingSink({ chunkBytes });
    const wm = new StreamWeightManager({ url: srv.url('manifest.json'), chunkBytes, stallMs: 300, ...opt, ...FAST });
    await wm.load(sink);
    assert.equal(sinkMatches(sink, model), true);
    assert.equal(sink.misaligned, 0, 'pieces end at multiples of chunkBytes');
    assert.equal(srv.requests(model.shards[2].file).at(-1).range, `bytes=123457-${model.shards[2].data.length - 1}`);
    assert.equal(srv.requests(model.shards[3].file).at(-1).range, `bytes=150000-${model.shards[3].data.length - 1}`);
    assert.equal(wm.counters.retries, 5, 'two 503s, a cut, a reset, a stall');
  });
}

for (const [mode, opt] of MODES) {
  test(`blocks (${mode}): redirects are followed, for the manifest and for each shard's Ranges`, async (t) => {
    const { model, srv } = await setup(t);
    srv.fault({ file: 'manifest.json', kind: 'redirect', status: 302 });
    srv.fault({ file: null, kind: 'redirect', status: 307, times: 1000 });
    const sink = recordingSink();
    const wm = new StreamWeightManager({ url: srv.url('manifest.json'), ...opt, ...FAST });
    await wm.load(sink);
    assert.equal(sinkMatches(sink, model), true);
    for (const sh of model.shards) {
      const log = srv.log.filter((e) => e.file === sh.file);
      assert.ok(log.some((e) => e.status === 307), `${sh.file} was redirected`);
      assert.equal(log.filter((e) => e.status !== 307).reduce((n, e) => n + e.bytes, 0), sh.data.length, `${sh.file}: each byte once, from /cdn/`);
    }
  });
}

// Every sink call as [tensor, offset, length, sha256 of the bytes].
function tracingSink() {
  const calls = [];
  return {
    calls,
    header: () => 0,
    tensor(name, offset, chunk) {
      calls.push([name, offset, chunk.length, crypto.createHash('sha256').update(chunk).digest('hex')]);
    },
  };
}

test('blocks: Workers and the manager\'s thread give the sink the same byte stream', async (t) => {
  const { srv } = await setup(t, { sizes: [4096, 300000, 700000, 200000, 450000] });
  const run = async (downloadWorkers, concurrency) => {
    const sink = tracingSink();
    await new StreamWeightManager({ url: srv.url('manifest.json'), downloadWorkers, concurrency, ...FAST }).load(sink);
    return sink.calls;
  };
  // one shard at a time: the very same sequence of calls
  assert.deepEqual(await run(2, 1), await run(0, 1));
  // several at once: shards interleave, each tensor's calls are the same
  const perTensor = (calls) => [...calls].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
  assert.deepEqual(perTensor(await run(2, 4)), perTensor(await run(0, 4)));
});

test('blocks: manifests whose block lists disagree with the shard are refused', () => {
  const good = () => ({
    format: 'stream-llm/1', model: {},
    shards: [{
      file: 'a.gguf', bytes: 200000, sha256: 'a'.repeat(64), block_bytes: B, block_sha256: ['b'.repeat(64), 'c'.repeat(64), 'd'.repeat(64), 'e'.repeat(64)],
      tensors: [{ name: 't', offset: 32, bytes: 16 }],
    }],
  });
  const ok = parseManifest(good(), 'http://h/m/manifest.json')[0];
  assert.equal(ok.blockBytes, B);
  assert.equal(ok.blockSha256.length, 4);
  const old = good();
  delete old.shards[0].block_bytes;
  delete old.shards[0].block_sha256;
  assert.equal(parseManifest(old, 'http://h/m/manifest.json')[0].blockSha256, null, 'a manifest without block hashes stays valid');
  const cases = [
    [(m) => { m.shards[0].block_sha256.pop(); }, /3 block hashes, but 200000 bytes in blocks of 65536 make 4/],
    [(m) => { m.shards[0].block_sha256.push('f'.repeat(64)); }, /5 block hashes/],
    [(m) => { m.shards[0].block_bytes = 65537; }, /power of two/],
    [(m) => { m.shards[0].block_bytes = 32768; }, /power of two/],
    [(m) => { m.shards[0].block_bytes = 128 << 20; }, /power of two/],
    [(m) => { delete m.shards[0].block_bytes; }, /power of two/],
    [(m) => { delete m.shards[0].block_sha256; }, /without a "block_sha256"/],
    [(m) => { m.shards[0].block_sha256[2] = 'X'.repeat(64); }, /block_sha256/],
  ];
  for (const [edit, re] of cases) {
    const m = good();
    edit(m);
    assert.throws(() => parseManifest(m, 'http://h/m/manifest.json'), (e) => e instanceof ManifestError && re.test(e.message), String(edit));
  }
  assert.deepEqual(blockHashes(Buffer.alloc(B + 1), B).length, 2);
});
