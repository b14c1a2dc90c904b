#!/usr/bin/env node
// weights_bench.mjs - load throughput of the StreamWeightManager against the
// raw throughput of the same server on loopback (curl of all shards).
//
//   node tests/web/weights_bench.mjs MODEL [-r RUNS] [-c CONCURRENCY] [--tmp DIR]
//
// MODEL (a .gguf or a shard directory) is served by `build/streamllm serve`
// on 127.0.0.1; each round measures, in this order:
//   curl-seq     curl of every shard, one after the other, to /dev/null
//   curl-par     the same, CONCURRENCY at a time (curl --parallel)
//   curl-files   curl of every shard into files (what a download that keeps the bytes costs)
//   wm-nostore   the manager, no cache, a sink that drops the bytes (fetch + SHA-256 +
//                chunking), hash workers as by default (cores - 2)
//   wm-workers   the same with SHA-256 in 4 hash workers
//   wm-store     the manager into an empty directory cache (fetch + SHA-256 + writes)
//   wm-cached    the manager again, everything from the cache
// and prints the median GB/s of each and the manager's ratios to curl.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StreamWeightManager, openStore } from '../../web/engine/weights.mjs';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args.splice(i, 2)[1] : def;
};
const runs = Number(opt('-r', 3));
const conc = Number(opt('-c', 4));
const tmpBase = opt('--tmp', tmpdir());
const model = args[0];
if (!model) {
  process.stderr.write('usage: node tests/web/weights_bench.mjs MODEL [-r RUNS] [-c CONCURRENCY] [--tmp DIR]\n');
  process.exit(2);
}
const tmp = mkdtempSync(path.join(tmpBase, 'sl-wbench-'));
const bin = path.join(REPO, process.env.STREAMLLM_BIN ?? 'build/streamllm');

const server = spawn(bin, ['serve', model, '--port', '0', '--cache', path.join(tmp, 'serve-cache')], { stdio: ['ignore', 'pipe', 'ignore'] });
let out = '';
server.stdout.on('data', (d) => { out += d; });
const cleanup = () => {
  server.kill('SIGTERM');
  rmSync(tmp, { recursive: true, force: true });
};
process.on('exit', cleanup);
let base;
for (let i = 0; !base; i++) {
  base = /^open (http:\/\/\S+)\/$/m.exec(out)?.[1];
  if (!base) {
    if (i > 600 || server.exitCode !== null) throw new Error('streamllm serve did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}
const { models } = await (await fetch(`${base}/api/models`)).json();
const url = new URL(models[0].manifest, base).href;
const manifest = await (await fetch(url)).json();
const urls = manifest.shards.map((s) => new URL(s.url, base).href);
const total = manifest.shards.reduce((n, s) => n + s.bytes, 0);
process.stderr.write(`${manifest.shards.length} shards, ${(total / 1e9).toFixed(3)} GB, concurrency ${conc}, ${runs} runs\n`);

const time = async (f) => {
  const t0 = performance.now();
  await f();
  return (performance.now() - t0) / 1000;
};
const curl = (list) => {
  const r = spawnSync('curl', ['-s', '--no-progress-meter', '--fail', ...list], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`curl failed (${r.status})`);
};
const sink = { header: () => 0, tensor: () => {} };
const wm = async (store, hashWorkers = null) => {
  const w = new StreamWeightManager({ url, store, concurrency: conc, hashWorkers });
  await w.load(sink);
  if (w.counters.networkBytes !== (store && store.cached ? 0 : total)) throw new Error(`unexpected network bytes ${w.counters.networkBytes}`);
};

const results = {};
for (let r = 0; r < runs; r++) {
  const files = path.join(tmp, `files-${r}`);
  mkdirSync(files);
  const cacheDir = path.join(tmp, `cache-${r}`);
  const m = {
    'curl-seq': () => curl(urls.flatMap((u) => ['-o', '/dev/null', u])),
    'curl-par': () => curl(['--parallel', '--parallel-max', String(conc), ...urls.flatMap((u) => ['-o', '/dev/null', u])]),
    'curl-files': () => curl(['--parallel', '--parallel-max', String(conc), ...urls.flatMap((u, i) => ['-o', path.join(files, String(i)), u])]),
    'wm-nostore': () => wm(null),
    'wm-workers': () => wm(null, 4),
    'wm-store': async () => wm(await openStore({ dir: cacheDir })),
    'wm-cached': async () => wm(Object.assign(await openStore({ dir: cacheDir }), { cached: true })),
  };
  for (const [name, f] of Object.entries(m)) (results[name] ??= []).push(await time(f));
  rmSync(files, { recursive: true, force: true });
  rmSync(cacheDir, { recursive: true, force: true });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gbps = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, total / median(v) / 1e9]));
console.log('| test | median s | GB/s |');
console.log('|---|---|---|');
for (const [k, v] of Object.entries(results)) console.log(`| ${k} | ${median(v).toFixed(3)} | ${gbps[k].toFixed(2)} |`);
console.log(`\nwm-nostore / curl-par: ${(100 * gbps['wm-nostore'] / gbps['curl-par']).toFixed(0)}%  ` +
  `wm-nostore / curl-seq: ${(100 * gbps['wm-nostore'] / gbps['curl-seq']).toFixed(0)}%  ` +
  `wm-store / curl-files: ${(100 * gbps['wm-store'] / gbps['curl-files']).toFixed(0)}%`);
process.exit(0); // the server child would keep this process alive
