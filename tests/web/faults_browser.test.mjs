// faults_browser.test.mjs - a tab reloaded in the middle of a download, in
// headless Chromium (playwright-core, the system's chromium), for both cache
// stores (OPFS through sync access handles in a module Worker, and the Cache
// API). Page tests/browser/weights.html, model stories260K split into small
// shards and served slowly by the fault-injecting server (weights_server.mjs)
// so that the reload lands mid-shard. The reload kills the page and its
// Worker without any abort path running (unlike an AbortController). After
// it, a load must: succeed with the same logits as Node, fetch no shard that
// was complete again, fetch of the interrupted shard at most the bytes it
// lacks (what the store kept of it, resumed; else the whole shard), and
// leave the cache valid: the model complete, its bytes exactly the shards',
// no partial download counted, and an offline reload loading from it. Once
// more with OPFS and the shards in pieces (two download Workers writing one
// partial file): the load after the reload fetches only the blocks the
// partial file lacks.
// Skips loudly without chromium, playwright-core, the test data or
// build/streamllm (fails under CI=true).
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Engine } from '../../web/engine/engine.mjs';
import { WASM, REPO } from './refdata.mjs';
import { startServer } from './weights_server.mjs';
import { browserReady, splitStories, CHROMIUM, partialFacts, refetchedGood } from './weights_fixtures.mjs';
import { planPieces } from '../../web/engine/weights.mjs';

const PROMPT = 'Once upon a time';

async function until(cond, what, timeoutMs = 60000) {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('browser: a tab reloaded mid-download resumes, and leaves the cache valid (OPFS, Cache API)', { timeout: 240000 }, async (t) => {
  const chromium = await browserReady(t, 'faults_browser');
  if (!chromium) return;
  const { model, shards, manifest } = splitStories(t, 'sl-faults-browser-', { blockBytes: 65536 });
  const total = manifest.shards.reduce((n, s) => n + s.bytes, 0);
  const big = manifest.shards.reduce((a, b) => (b.bytes > a.bytes ? b : a));

  const engine = await Engine.create({ wasm: readFileSync(WASM), backend: 'cpu' });
  await engine.load(model);
  const want = Array.from(new Uint32Array((await engine.eval(engine.tokenize(PROMPT), { allLogits: true })).buffer));
  engine.free();

  // the page from one server, the model from another (stopped at the end: offline)
  const app = await startServer({ dir: shards, root: REPO });
  t.after(() => app.stop());
  const models = await startServer({ dir: shards });
  t.after(() => models.stop());
  const url = models.url('manifest.json');

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
  const ready = () => page.waitForFunction(() => document.getElementById('status').textContent === 'ready');
  const call = (where, op, args) => page.evaluate(async ([w, o, a]) => {
    const r = await window[w](o, a);
    if (r && r.logits) r.logits = Array.from(new Uint32Array(r.logits.buffer, r.logits.byteOffset, r.logits.length));
    return r;
  }, [where, op, args]);
  await page.goto(`${app.base}/tests/browser/weights.html`);
  await ready();

  const keys = manifest.shards.map((s) => s.sha256);
  const B = 65536;
  const SPLIT = { splitBytes: B, downloadWorkers: 2 };
  const cuts = planPieces({ bytes: big.bytes, blockBytes: B }, { total, workers: 2, chunkBytes: B, splitBytes: B });
  assert.deepEqual(cuts, [[0, 1], [1, 2], [2, 3]], 'the largest shard: three blocks, a piece each');
  const runs = [['opfs', 'reload-opfs', {}], ['cache', 'reload-cache', {}], ['opfs', 'reload-pieces', SPLIT]];
  for (const [kind, name, options] of runs) {
    models.reset();
    let pending;
    if (options.splitBytes) {
      // 1. in pieces: the answer for block 1 stalls, block 2 arrives whole
      // (and is written); the tab reloads then: a verified block after a
      // missing one
      const at = B + 30000;
      models.fault({ file: big.file, kind: 'stall', at });
      pending = call('worker', 'load', { url, kind, name, ...options }).catch((e) => ({ gone: String(e) }));
      await until(() => models.bytes(big.file) >= at + big.bytes - 2 * B, `blocks 0 and 2 of ${big.file}`);
      await new Promise((r) => setTimeout(r, 300));
    } else {
      // 1. a load whose largest shard comes slowly; the tab reloads when half of it was sent
      models.fault({ file: big.file, kind: 'slow', rate: 100000, times: 1e9 });
      pending = call('worker', 'load', { url, kind, name, ...options }).catch((e) => ({ gone: String(e) }));
      await until(() => models.bytes(big.file) >= big.bytes / 2, `half of ${big.file}`);
    }
    await page.reload();
    await ready();
    const cut = await pending;
    assert.ok(cut.gone || cut.error, `${kind}: the load did not finish before the reload`);
    models.clearFaults();
    await models.idle();

    // 2. what the store kept
    const st = await call('worker', 'stat', { kind, name, keys });
    const doneBefore = manifest.shards.filter((s) => st[s.sha256].complete === s.bytes);
    const partial = Math.min(st[big.sha256].partial ?? 0, big.bytes);
    // in pieces: the blocks of the partial file that verify, wherever they are
    const facts = options.splitBytes
      ? partialFacts(Buffer.from(await call('worker', 'partial', { name, key: big.sha256 })), readFileSync(path.join(shards, big.file)), B, cuts) : null;
    assert.notEqual(st[big.sha256].complete, big.bytes, `${kind}: the slow shard was not complete`);
    assert.ok(doneBefore.length >= 1, `${kind}: some shards were complete before the reload: ${JSON.stringify(st)}`);

    // 3. the load again: right, and only what was missing
    models.reset();
    const r = await call('worker', 'load', { url, kind, name, ...options });
    assert.equal(r.error, undefined, `${name}: ${r.error}`);
    assert.deepEqual(r.logits, want, `${name}: same logits as Node`);
    for (const s of doneBefore) assert.equal(models.bytes(s.file), 0, `${name}: ${s.file} not fetched again`);
    if (options.splitBytes) {
      assert.deepEqual(facts?.good, [true, false, true], `${name}: blocks 0 and 2 kept, block 1 missing`);
      assert.deepEqual(refetchedGood(models.requests(big.file), facts.good, B), [], `${name}: no block kept fetched again`);
      assert.equal(models.bytes(big.file), facts.missing - facts.reused, `${name}: the blocks missing (${facts.good.map(Number).join('')})`);
    } else {
      assert.equal(models.bytes(big.file), big.bytes - partial,
        `${name}: the interrupted shard: ${models.bytes(big.file)} bytes fetched, ${partial} of ${big.bytes} were kept`);
    }
    assert.ok(models.bytes() <= total, `${kind}: ${models.bytes()} bytes fetched for ${total}`);
    t.diagnostic(`${name}: reload after ${cut.gone ? 'the page went away' : cut.error}; ${doneBefore.length} of ` +
      `${manifest.shards.length} shards kept, ${facts ? `blocks ${facts.good.map(Number).join('')} (1: verified)` : `${partial} of ${big.bytes} bytes`} of the cut one kept and resumed`);

    // 4. the cache is valid: complete, exactly the shards' bytes, no partial left over
    const list = await call('worker', 'list', { kind, name });
    assert.equal(list.models.length, 1, `${kind}: one model`);
    assert.equal(list.models[0].complete, true, `${kind}: complete`);
    assert.equal(list.usage.bytes, total, `${kind}: the shards' bytes`);
    assert.equal(list.usage.partialBytes, 0, `${kind}: no partial download left`);
    const after = await call('worker', 'stat', { kind, name, keys });
    for (const s of manifest.shards) assert.equal(after[s.sha256].complete, s.bytes, `${kind}: ${s.file} stored whole`);
  }

  // 5. offline: the model server gone, a reload loads both from their caches
  await models.stop();
  await page.reload();
  await ready();
  for (const [kind, name] of runs) {
    const r = await call('worker', 'load', { url, kind, name });
    assert.equal(r.error, undefined, `${name} offline: ${r.error}`);
    assert.equal(r.offline, true, `${name}: offline`);
    assert.equal(r.counters.networkBytes, 0);
    assert.deepEqual(r.logits, want, `${name} offline: same logits`);
  }
  assert.deepEqual(errors, []);
});
