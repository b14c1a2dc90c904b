// weights_engine.test.mjs - real models through the StreamWeightManager into
// the wasm engine (CPU backend): shards made by `build/streamllm split`,
// served by the fault-injecting server and by `build/streamllm serve`, give
// the same logits, bit for bit, as the .gguf file loaded directly; an
// interrupted download resumes with the project server's access log showing
// each byte fetched once; a plain .gguf URL (header grown by Range) and a
// llama.cpp split by URL; a corrupted header restarts the load (on-demand
// mode, layers re-read from the cache: gpu_on_demand.test.mjs); `node web/cli.mjs` takes a shard
// directory and a URL as -m. Needs the shared test data and build/streamllm
// (skips loudly without them, fails under CI=true).
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { Engine } from '../../web/engine/engine.mjs';
import { StreamWeightManager, openStore } from '../../web/engine/weights.mjs';
import { WASM, TESTDATA, CLI, REPO, requireTestdata } from './refdata.mjs';
import { startServer } from './weights_server.mjs';
import { tempDir, streamllm, hasStreamllm, STREAMLLM, readJson } from './weights_fixtures.mjs';

const wasmBytes = existsSync(WASM) ? readFileSync(WASM) : null;
const MODELS = path.join(TESTDATA, 'models');
const FAST = { backoffMs: 5, maxBackoffMs: 20 };
const PROMPT = 'Once upon a time, there was a little girl';

function ready(t) {
  if (!requireTestdata(t)) return false;
  const missing = !hasStreamllm() ? STREAMLLM : !wasmBytes ? WASM : null;
  if (missing) {
    const msg = `${missing} absent (make; make wasm)`;
    if (process.env.CI === 'true') throw new Error(`CI=true: ${msg}`);
    console.error(`SKIP ${msg}`);
    t.skip(msg);
    return false;
  }
  return true;
}

const newEngine = () => Engine.create({ wasm: wasmBytes, backend: 'cpu' });

// All logits of the prompt, with the model loaded by load(engine).
async function logitsWith(load) {
  const engine = await newEngine();
  try {
    await load(engine);
    const ids = engine.tokenize(PROMPT);
    return await engine.eval(ids, { allLogits: true });
  } finally {
    engine.free();
  }
}

const direct = (file) => logitsWith((e) => e.load(file));
const bitsEqual = (a, b) => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

// Splits a test model into dir with a small shard cap (several shards).
function split(t, name, cap) {
  const dir = path.join(tempDir(t), 'shards');
  streamllm(['split', path.join(MODELS, name), dir, '--max-shard-size', cap]);
  return dir;
}

for (const [name, cap] of [['stories260K.gguf', '256K'], ['sv-llama-q4_0.gguf', '512K']]) {
  test(`engine: ${name} through the manager equals the file, bit for bit`, async (t) => {
    if (!ready(t)) return;
    const dir = split(t, name, cap);
    const manifest = readJson(path.join(dir, 'manifest.json'));
    assert.ok(manifest.shards.length >= 4, `${manifest.shards.length} shards`);
    const srv = await startServer({ dir });
    t.after(() => srv.stop());
    const want = await direct(path.join(MODELS, name));
    const cache = path.join(tempDir(t), 'cache');
    const store = await openStore({ dir: cache });
    const got = await logitsWith((e) => e.loadStream(new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST })));
    assert.ok(bitsEqual(got, want), 'network + cache write');
    const total = manifest.shards.reduce((n, s) => n + s.bytes, 0);
    assert.equal(srv.bytes(), total, 'each shard byte sent once');
    srv.reset();
    const again = await logitsWith((e) => e.loadStream(new StreamWeightManager({ url: srv.url('manifest.json'), store, ...FAST })));
    assert.ok(bitsEqual(again, want), 'from the cache');
    assert.equal(srv.bytes(), 0);
    const fromDir = await logitsWith((e) => e.loadStream(new StreamWeightManager({ url: new URL(`file://${dir}/manifest.json`).href })));
    assert.ok(bitsEqual(fromDir, want), 'from the shard directory (file: URL)');
  });
}

// `streamllm serve` on a free port; resolves { base, log() (parsed access
// log lines), stop() }.
async function serve(t, model, cache) {
  const proc = spawn(STREAMLLM, ['serve', model, '--port', '0', '--cache', cache], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    if (m) {
      const log = () => err.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
      return { base: m[1], log, stop };
    }
    if (proc.exitCode !== null || Date.now() - t0 > 20000) throw new Error(`streamllm serve did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('engine: streamllm serve, interrupted load resumed; its access log shows no byte fetched twice', async (t) => {
  if (!ready(t)) return;
  const tmp = tempDir(t);
  const file = path.join(MODELS, 'sv-llama-q4_0.gguf');
  const srv = await serve(t, file, path.join(tmp, 'serve-cache'));
  const { models } = await (await fetch(`${srv.base}/api/models`)).json();
  const url = new URL(models[0].manifest, srv.base).href;
  const manifest = await (await fetch(url)).json();
  assert.ok(manifest.shards.length >= 3, `${manifest.shards.length} shards`);
  // the largest shard is interrupted at about half: the load is aborted once
  // half its bytes came off the network (the sink sees a shard only in
  // verified blocks, and this one is a single block)
  const big = manifest.shards.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const bigIndex = manifest.shards.indexOf(big);
  const store = await openStore({ dir: path.join(tmp, 'cache') });
  const ctrl = new AbortController();
  const engine1 = await newEngine();
  const sink1 = engine1.weightSink();
  engine1.model = engine1.mod.handle(engine1.ex.model_new());
  let seen = 0;
  const cutting = async (u, init) => {
    const res = await fetch(u, init);
    if (!String(u).endsWith(`/${big.file}`) || !res.body) return res;
    const body = res.body.pipeThrough(new TransformStream({
      transform(chunk, c) {
        c.enqueue(chunk);
        seen += chunk.length;
        if (seen > big.bytes / 2) ctrl.abort();
      },
    }));
    return new Response(body, { status: res.status, headers: res.headers });
  };
  const wm1 = new StreamWeightManager({ url, store, concurrency: 1, chunkBytes: 65536, fetch: cutting, ...FAST });
  await assert.rejects(wm1.load(sink1, { signal: ctrl.signal }), /aborted/);
  engine1.free();
  const partial = statSync(path.join(tmp, 'cache/blobs', `${big.sha256}.part`)).size;
  assert.ok(partial > big.bytes / 2 - 65536 && partial < big.bytes, `partial ${partial} of ${big.bytes}`);
  const done1 = manifest.shards.slice(0, bigIndex).map((s) => s.file);
  const before = srv.log().length;

  const got = await logitsWith((e) => e.loadStream(new StreamWeightManager({ url, store, ...FAST })));
  assert.ok(bitsEqual(got, await direct(file)), 'same logits as the file');
  const log2 = srv.log().slice(before).filter((l) => l.path.startsWith('/models/'));
  const sent = (f) => log2.filter((l) => l.path.endsWith(`/${f}`));
  for (const f of done1) assert.deepEqual(sent(f), [], `${f}: finished in the first load, not fetched again`);
  assert.deepEqual(sent(big.file).map((l) => [l.status, l.bytes]), [[206, big.bytes - partial]], 'only the rest of the interrupted shard');
  for (const s of manifest.shards.slice(bigIndex + 1)) {
    const header = Math.min(s.bytes, Math.max(65536, ...s.tensors.map((x) => x.offset)));
    assert.deepEqual(sent(s.file).map((l) => [l.status, l.bytes]), [[206, s.bytes - header]], `${s.file}: all but the header fetched before`);
  }
});

test('engine: a plain .gguf URL (header grown by Range) and a llama.cpp split by URL', async (t) => {
  if (!ready(t)) return;
  const srv = await startServer({ dir: MODELS });
  t.after(() => srv.stop());
  const name = 'tiny-llama3-bpe-q4_k_m.gguf';
  const store = await openStore({ dir: path.join(tempDir(t), 'cache') });
  const headers = [];
  const got = await logitsWith(async (e) => {
    const sink = e.weightSink();
    const header = sink.header;
    sink.header = (k, bytes, size) => {
      headers.push(bytes.length);
      return header(k, bytes, size);
    };
    e.weightSink = () => sink;
    await e.loadStream(new StreamWeightManager({ url: srv.url(name), store, ...FAST }));
  });
  assert.ok(headers.length >= 2 && headers[0] === 1 << 20 && headers.at(-1) > 1 << 20, `header sizes ${headers}`);
  assert.ok(bitsEqual(got, await direct(path.join(MODELS, name))));
  const size = statSync(path.join(MODELS, name)).size;
  assert.ok(srv.bytes(name) <= size + 1, `${srv.bytes(name)} bytes sent for a ${size}-byte file`);

  const splitSrv = await startServer({ dir: path.join(MODELS, 'split') });
  t.after(() => splitSrv.stop());
  const first = 'sv-llama-q8_0-00001-of-00004.gguf';
  const gotSplit = await logitsWith((e) => e.loadStream(new StreamWeightManager({ url: splitSrv.url(first), ...FAST })));
  assert.ok(bitsEqual(gotSplit, await direct(path.join(MODELS, 'split', first))));
});

test('engine: a header corrupted in transit restarts the load (reset) and ends right', async (t) => {
  if (!ready(t)) return;
  const dir = split(t, 'stories260K.gguf', '256K');
  const manifest = readJson(path.join(dir, 'manifest.json'));
  const srv = await startServer({ dir });
  t.after(() => srv.stop());
  // a byte of the first tensor inside the first 64 KiB the engine reads as
  // shard 2's header: it takes the header, the shard fails its hash, the
  // refetched header differs from what the engine got: the load starts over
  srv.fault({ file: manifest.shards[2].file, kind: 'corrupt', at: manifest.shards[2].tensors[0].offset + 100 });
  let resets = 0;
  const got = await logitsWith(async (e) => {
    const sink = e.weightSink();
    const reset = sink.reset;
    sink.reset = () => {
      resets++;
      return reset();
    };
    e.weightSink = () => sink;
    await e.loadStream(new StreamWeightManager({ url: srv.url('manifest.json'), ...FAST }));
  });
  assert.equal(resets, 1);
  assert.ok(bitsEqual(got, await direct(path.join(MODELS, 'stories260K.gguf'))));
});

test('cli: -m takes a shard directory, a manifest URL and a .gguf URL', async (t) => {
  if (!ready(t)) return;
  const dir = split(t, 'stories260K.gguf', '256K');
  const tmp = tempDir(t);
  const run = (model, out) => {
    const r = spawnSync(process.execPath, [CLI, 'logits', '-m', model, '-p', PROMPT, '-o', out, '--wasm', WASM], { cwd: REPO, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(out);
  };
  const want = run(path.join(MODELS, 'stories260K.gguf'), path.join(tmp, 'a.f32'));
  assert.ok(run(dir, path.join(tmp, 'b.f32')).equals(want), 'shard directory');
  assert.ok(run(path.join(dir, 'manifest.json'), path.join(tmp, 'c.f32')).equals(want), 'manifest.json');
  const srv = await startServer({ dir });
  t.after(() => srv.stop());
  const cli = (args) => new Promise((resolve) => {
    // not spawnSync: the server runs in this process
    const p = spawn(process.execPath, [CLI, ...args, '--wasm', WASM], { cwd: REPO });
    let err = '';
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => resolve({ code, err }));
  });
  const outUrl = path.join(tmp, 'd.f32');
  const r = await cli(['logits', '-m', srv.url('manifest.json'), '-p', PROMPT, '-o', outUrl, '--cache', path.join(tmp, 'cache')]);
  assert.equal(r.code, 0, r.err);
  assert.ok(readFileSync(outUrl).equals(want), 'manifest URL');
  assert.ok(existsSync(path.join(tmp, 'cache/blobs')), '--cache used');
  const bad = await cli(['logits', '-m', srv.url('nope.json'), '-p', 'x', '-o', path.join(tmp, 'e.f32')]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /^streamllm logits: .*HTTP 404.*\n$/);
});
