// weights_browser.test.mjs - the StreamWeightManager in headless Chromium
// (playwright-core, the system's chromium; see ../shared/docs/testing.md),
// page tests/browser/weights.html served cross-origin isolated by the test
// server (weights_server.mjs, which also serves the engine's modules and
// engine.wasm): stories260K from `build/streamllm serve` (CORS for the page)
// loads in a module Worker through OPFS (sync access handles) with the same
// logits as Node; after the server is stopped, a reload of the page loads it
// again offline from OPFS. A download interrupted in the browser resumes with
// the server's byte counters showing nothing fetched twice (OPFS and the
// Cache API). Shards in pieces (OPFS, two download Workers writing one
// partial file at once through 'readwrite-unsafe' sync handles): each byte
// sent once; an abort mid-pieces commits nothing, and the next load fetches
// only the blocks the partial file lacks; the Cache API store gets shards
// whole. The Cache API store, and OPFS from the page (createWritable), also
// load and reload offline. Skips loudly without chromium, playwright-core, the test data or
// build/streamllm (fails under CI=true).
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Engine } from '../../web/engine/engine.mjs';
import { WASM, REPO } from './refdata.mjs';
import { startServer } from './weights_server.mjs';
import { STREAMLLM, browserReady, splitStories, CHROMIUM, partialFacts, refetchedGood } from './weights_fixtures.mjs';
import { planPieces } from '../../web/engine/weights.mjs';

const PROMPT = 'Once upon a time';

async function serve(t, model, cache, cors) {
  const proc = spawn(STREAMLLM, ['serve', model, '--port', '0', '--cache', cache, '--cors', cors], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; });
  const stop = () => new Promise((resolve) => {
    if (proc.exitCode !== null) return resolve();
    proc.once('exit', resolve);
    proc.kill('SIGTERM');
  });
  t.after(stop);
  const t0 = Date.now();
  for (;;) {
    const m = /^open (http:\/\/\S+)\/$/m.exec(out);
    if (m) return { base: m[1], stop };
    if (proc.exitCode !== null || Date.now() - t0 > 20000) throw new Error(`streamllm serve did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('browser: OPFS in a Worker, offline reload; resume; Cache API and page OPFS', { timeout: 240000 }, async (t) => {
  const chromium = await browserReady(t, 'weights_browser');
  if (!chromium) return;
  // (64 KiB blocks, so that an interrupted shard keeps verified blocks)
  const { tmp, model, shards, manifest } = splitStories(t, 'sl-weights-browser-', { blockBytes: 65536 });

  // the expected logits, from Node
  const engine = await Engine.create({ wasm: readFileSync(WASM), backend: 'cpu' });
  await engine.load(model);
  const want = Array.from(new Uint32Array((await engine.eval(engine.tokenize(PROMPT), { allLogits: true })).buffer));
  engine.free();

  // the app (and a fault-injecting model server at /m/), the project's server, a third one
  const app = await startServer({ dir: shards, root: REPO });
  t.after(() => app.stop());
  const srv = await serve(t, model, path.join(tmp, 'serve-cache'), app.base);
  const { models } = await (await fetch(`${srv.base}/api/models`)).json();
  const serveUrl = new URL(models[0].manifest, srv.base).href;
  const served = await (await fetch(serveUrl)).json();
  const servedTotal = served.shards.reduce((n, s) => n + s.bytes, 0);
  const other = await startServer({ dir: shards });
  t.after(() => other.stop());

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  const page = await browser.newPage();
  page.setDefaultTimeout(60000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const open = async () => {
    await page.goto(`${app.base}/tests/browser/weights.html`);
    await page.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  };
  // runs an op in the Worker or the page; logits come back as their bits
  const call = (where, op, args) => page.evaluate(async ([w, o, a]) => {
    const r = await window[w](o, a);
    if (r && r.logits) r.logits = Array.from(new Uint32Array(r.logits.buffer, r.logits.byteOffset, r.logits.length));
    return r;
  }, [where, op, args]);

  await open();
  assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'the page is cross-origin isolated');

  // 1. OPFS in the Worker, from streamllm serve
  const r1 = await call('worker', 'load', { url: serveUrl, kind: 'opfs', hashWorkers: 2 });
  assert.equal(r1.error, undefined, r1.error);
  assert.equal(r1.storeKind, 'opfs');
  assert.equal(r1.sync, true, 'sync access handles in the Worker');
  assert.deepEqual(r1.logits, want, 'same logits as Node');
  assert.equal(r1.counters.networkBytes, servedTotal);
  assert.ok(r1.counters.downloadWorkers > 0, 'downloads in download Workers (nested Workers; SHA-256 per block by SubtleCrypto)');
  assert.equal(r1.counters.hashWorkers, 0, 'no whole-file hash: the manifest lists a SHA-256 per block');
  assert.ok(r1.progress.shards.every((s) => s.state === 'done' && s.source === 'network'));
  const list = await call('worker', 'list', { kind: 'opfs' });
  assert.equal(list.models.length, 1);
  assert.equal(list.models[0].complete, true);
  assert.equal(list.usage.bytes, servedTotal);
  assert.ok(list.usage.estimate.quota > 0);

  // 2. the server stopped, the page reloaded: offline from OPFS
  await srv.stop();
  await page.reload();
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  const r2 = await call('worker', 'load', { url: serveUrl, kind: 'opfs' });
  assert.equal(r2.error, undefined, r2.error);
  assert.equal(r2.offline, true);
  assert.equal(r2.counters.networkBytes, 0);
  assert.deepEqual(r2.logits, want, 'offline: same logits');
  assert.ok(r2.progress.shards.every((s) => s.source === 'cache'));

  // 3. an interrupted download resumes (the app server's counters)
  const big = manifest.shards.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  app.fault({ file: big.file, kind: 'slow', rate: 100000, times: 1e9 });
  const total = manifest.shards.reduce((n, s) => n + s.bytes, 0);
  const r3 = await call('worker', 'load', { url: app.url('manifest.json'), kind: 'opfs', name: 'resume', abortAt: { file: big.file, done: big.bytes / 2 } });
  assert.equal(r3.aborted, true, r3.error);
  app.clearFaults();
  const st = await call('worker', 'stat', { kind: 'opfs', name: 'resume', keys: manifest.shards.map((s) => s.sha256) });
  const partial = st[big.sha256].partial;
  assert.ok(partial > 0 && partial < big.bytes, `partial ${partial} of ${big.bytes}: ${JSON.stringify(st)} ${JSON.stringify(await call('worker', 'list', { kind: 'opfs', name: 'resume' }))} ${JSON.stringify(r3.trace)}`);
  const doneBefore = manifest.shards.filter((s) => st[s.sha256].complete === s.bytes);
  await app.idle();
  app.reset();
  const r4 = await call('worker', 'load', { url: app.url('manifest.json'), kind: 'opfs', name: 'resume' });
  assert.equal(r4.error, undefined, r4.error);
  assert.deepEqual(r4.logits, want);
  assert.equal(app.bytes(big.file), big.bytes - partial, 'only the rest of the interrupted shard');
  for (const s of doneBefore) assert.equal(app.bytes(s.file), 0, `${s.file} not fetched again`);
  assert.ok(doneBefore.length >= 1);

  // 4. shards in pieces, OPFS: two download Workers write one partial file
  // at once; each byte once; an abort mid-pieces commits nothing; the next
  // load fetches only the blocks missing
  const B = 65536;
  const SPLIT = { splitBytes: B, downloadWorkers: 2 };
  const cuts = planPieces({ bytes: big.bytes, blockBytes: B }, { total, workers: 2, chunkBytes: B, splitBytes: B });
  assert.ok(cuts.length >= 3, `${cuts.length} pieces`);
  const bigData = readFileSync(path.join(shards, big.file));
  await app.idle();
  app.reset();
  const p1 = await call('worker', 'load', { url: app.url('manifest.json'), kind: 'opfs', name: 'pieces', ...SPLIT });
  assert.equal(p1.error, undefined, p1.error);
  assert.deepEqual(p1.logits, want, 'pieces: same logits');
  assert.equal(p1.counters.downloadWorkers, 2);
  assert.equal(app.bytes(), total, 'pieces: each byte sent once');
  // the first piece is block 0: the header's bytes, fetched for the engine
  assert.deepEqual(app.requests(big.file).map((e) => e.range).sort(),
    [`bytes=0-${B - 1}`, ...cuts.slice(1).map(([a, b]) => `bytes=${a * B}-${Math.min(big.bytes, b * B) - 1}`)].sort());
  app.fault({ file: big.file, kind: 'slow', rate: 100000, times: 1e9 });
  const p2 = await call('worker', 'load', { url: app.url('manifest.json'), kind: 'opfs', name: 'pieces-resume', ...SPLIT, abortAt: { file: big.file, done: big.bytes / 2 } });
  assert.equal(p2.aborted, true, p2.error);
  app.clearFaults();
  await app.idle();
  const pst = await call('worker', 'stat', { kind: 'opfs', name: 'pieces-resume', keys: [big.sha256] });
  assert.equal(pst[big.sha256].complete, null, 'pieces: nothing committed by the abort');
  const part = Buffer.from(await call('worker', 'partial', { name: 'pieces-resume', key: big.sha256 }));
  const { good, missing, reused } = partialFacts(part, bigData, B, cuts);
  assert.ok(good.filter(Boolean).length >= 2, `verified blocks kept: ${good.map(Number).join('')}`);
  app.reset();
  const p3 = await call('worker', 'load', { url: app.url('manifest.json'), kind: 'opfs', name: 'pieces-resume', ...SPLIT });
  assert.equal(p3.error, undefined, p3.error);
  assert.deepEqual(p3.logits, want);
  assert.deepEqual(refetchedGood(app.requests(big.file), good, B), [], 'pieces: no block kept is fetched again');
  assert.equal(app.bytes(big.file), missing - reused, `pieces: the blocks missing only (${good.map(Number).join('')}, ${part.length} bytes kept)`);

  // 5. the Cache API store (Worker): an interrupted download resumes there
  // too; then a full load, OPFS from the page, and both offline
  other.fault({ file: big.file, kind: 'slow', rate: 100000, times: 1e9 });
  const c1 = await call('worker', 'load', { url: other.url('manifest.json'), kind: 'cache', name: 'cache-resume', abortAt: { file: big.file, done: big.bytes / 2 } });
  assert.equal(c1.aborted, true, c1.error);
  other.clearFaults();
  const cst = await call('worker', 'stat', { kind: 'cache', name: 'cache-resume', keys: [big.sha256] });
  const cpartial = cst[big.sha256].partial;
  assert.ok(cpartial > 0 && cpartial < big.bytes, `Cache API partial ${cpartial} of ${big.bytes}`);
  await other.idle();
  other.reset();
  const c2 = await call('worker', 'load', { url: other.url('manifest.json'), kind: 'cache', name: 'cache-resume' });
  assert.equal(c2.error, undefined, c2.error);
  assert.deepEqual(c2.logits, want);
  assert.equal(other.bytes(big.file), big.bytes - cpartial, 'Cache API: only the rest of the interrupted shard');
  other.reset();
  const r5 = await call('worker', 'load', { url: other.url('manifest.json'), kind: 'cache', ...SPLIT });
  assert.equal(r5.error, undefined, r5.error);
  assert.equal(r5.storeKind, 'cache');
  assert.deepEqual(r5.logits, want);
  assert.deepEqual(other.requests(big.file).map((e) => e.range), [`bytes=0-${B - 1}`, `bytes=${B}-${big.bytes - 1}`], 'the Cache API store: shards whole');
  const r6 = await call('page', 'load', { url: other.url('manifest.json'), kind: 'opfs', name: 'page' });
  assert.equal(r6.error, undefined, r6.error);
  assert.equal(r6.sync, false, 'the page writes through createWritable');
  assert.deepEqual(r6.logits, want);
  await other.stop();
  await page.reload();
  await page.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  const r7 = await call('worker', 'load', { url: other.url('manifest.json'), kind: 'cache' });
  assert.equal(r7.error, undefined, r7.error);
  assert.equal(r7.offline, true);
  assert.deepEqual(r7.logits, want);
  const r8 = await call('page', 'load', { url: other.url('manifest.json'), kind: 'opfs', name: 'page' });
  assert.equal(r8.error, undefined, r8.error);
  assert.equal(r8.offline, true);
  assert.deepEqual(r8.logits, want);
  const cacheList = await call('worker', 'list', { kind: 'cache' });
  assert.equal(cacheList.models[0].complete, true);
  assert.equal(cacheList.usage.bytes, total);

  await page.screenshot({ path: path.join(REPO, 'build/test-logs/weights_browser.png') }).catch(() => {});
  assert.deepEqual(errors, []);
});
