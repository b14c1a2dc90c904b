#!/usr/bin/env node
// weights_bench.mjs - load throughput of the StreamWeightManager against the
// raw throughput of the same server on loopback (curl of all shards).
//
//   node tests/web/weights_bench.mjs MODEL [-r RUNS] [-c CONCURRENCY] [-w WORKERS] [-s SPLITBYTES] [--tmp DIR]
//
// MODEL (a .gguf or a shard directory) is served by `build/streamllm serve`
// on 127.0.0.1 (which splits it with block hashes); each round measures, in
// this order:
//   curl-seq     curl of every shard, one after the other, to /dev/null
//   curl-par     the same, CONCURRENCY at a time (curl --parallel)
//   curl-files   curl of every shard into files (what a download that keeps the bytes costs)
//   wm-nostore   the manager, no cache, a sink that drops the bytes (fetch + SHA-256 per
//                block + chunking) in its download Workers (-w, default min(CONCURRENCY, cores - 1));
//                large shards in pieces by the manager's rule (-s: its splitBytes, 0: never)
//   wm-inthread  the same with the downloads on the manager's thread (downloadWorkers: 0)
//   wm-store     the manager into an empty directory cache (fetch + SHA-256 + writes), Workers
//   wm-cached    the manager again, everything from the cache
// and prints the median GB/s of each and the manager's ratios to curl, with
// the machine's cores and load average (the figures depend on both).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir, availableParallelism, loadavg } from 'node:os';
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
const conc = Number(opt('-c', 6)); // the manager's default
const workersOpt = opt('-w', null);
const workers = workersOpt === null ? null : Number(workersOpt);
const splitOpt = opt('-s', null);
const splitBytes = splitOpt === null ? null : Number(splitOpt);
const tmpBase = opt('--tmp', tmpdir());
const model = args[0];
if (!model) {
  process.stderr.write('usage: node tests/web/weights_bench.mjs MODEL [-r RUNS] [-c CONCURRENCY] [-w WORKERS] [-s SPLITBYTES] [--tmp DIR]\n');
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

// seconds of wall time; for the manager also the CPU time of this process
// (all its threads: the manager's, the download Workers', libuv's) and the
// share of the wall time the manager's thread was busy
const cost = {};
const time = async (name, f) => {
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  await f();
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  (cost[name] ??= []).push({ cpu: (cpu.user + cpu.system) / 1e6, busy: performance.eventLoopUtilization(elu0).utilization });
  return s;
};
const curl = (list) => {
  const r = spawnSync('curl', ['-s', '--no-progress-meter', '--fail', ...list], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`curl failed (${r.status})`);
};
const sink = { header: () => 0, tensor: () => {} };
let usedWorkers = null;
let splitShards = null;
const wm = async (store, downloadWorkers = workers) => {
  const w = new StreamWeightManager({ url, store, concurrency: conc, downloadWorkers, splitBytes });
  await w.load(sink);
  if (w.counters.networkBytes !== (store && store.cached ? 0 : total)) throw new Error(`unexpected network bytes ${w.counters.networkBytes}`);
  if (downloadWorkers !== 0 && !(store && store.cached)) {
    usedWorkers = w.counters.downloadWorkers;
    splitShards = w.counters.splitShards;
  }
};
const load0 = loadavg();

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
    'wm-inthread': () => wm(null, 0),
    'wm-store': async () => wm(await openStore({ dir: cacheDir })),
    'wm-cached': async () => wm(Object.assign(await openStore({ dir: cacheDir }), { cached: true })),
  };
  for (const [name, f] of Object.entries(m)) (results[name] ??= []).push(await time(name, f));
  rmSync(files, { recursive: true, force: true });
  rmSync(cacheDir, { recursive: true, force: true });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gbps = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, total / median(v) / 1e9]));
console.log('| test | median s | GB/s | manager CPU s/GB | manager thread busy |');
console.log('|---|---|---|---|---|');
for (const [k, v] of Object.entries(results)) {
  const c = k.startsWith('wm-') ? cost[k] : null;
  const extra = c ? `| ${(median(c.map((x) => x.cpu)) / (total / 1e9)).toFixed(2)} | ${(100 * median(c.map((x) => x.busy))).toFixed(0)}% |` : '| | |';
  console.log(`| ${k} | ${median(v).toFixed(3)} | ${gbps[k].toFixed(2)} ${extra}`);
}
const pct = (a, b) => `${(100 * gbps[a] / gbps[b]).toFixed(0)}%`;
console.log(`\nwm-nostore / curl-par: ${pct('wm-nostore', 'curl-par')}  wm-nostore / curl-seq: ${pct('wm-nostore', 'curl-seq')}  ` +
  `wm-inthread / curl-par: ${pct('wm-inthread', 'curl-par')}  wm-store / curl-files: ${pct('wm-store', 'curl-files')}`);
console.log(`${availableParallelism()} cores, ${usedWorkers} download workers, ${splitShards} shards in pieces, concurrency ${conc}, node ${process.version}; ` +
  `load average ${load0.map((x) => x.toFixed(2)).join(' ')} before, ${loadavg().map((x) => x.toFixed(2)).join(' ')} after`);
process.exit(0); // the server child would keep this process alive
