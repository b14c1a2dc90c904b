// weights_fixtures.mjs - made-up models and sinks for the StreamWeightManager
// tests: shard files of random bytes with a manifest that places tensors in
// them (the manager never parses GGUF: the engine does), and a sink that
// reassembles every tensor so a test can compare it with the files; what a
// partial download of a shard in pieces holds (which blocks a resume must
// fetch); and what the headless-Chromium tests share (requirements, a split
// stories260K).
import { mkdirSync, writeFileSync, mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { REPO, WASM, TESTDATA, hasTestdata } from './refdata.mjs';

export const STREAMLLM = process.env.STREAMLLM_BIN ? path.resolve(REPO, process.env.STREAMLLM_BIN) : path.join(REPO, 'build/streamllm');
export const hasStreamllm = () => existsSync(STREAMLLM);

export function tempDir(t, prefix = 'sl-weights-') {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// A deterministic byte generator (xorshift), so a model is the same every run.
function fill(buf, seed) {
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < buf.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf[i] = x & 255;
  }
  return buf;
}

export const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

// The SHA-256 of each blockBytes block of data (the last one shorter), as
// `streamllm split` lists them.
export function blockHashes(data, blockBytes) {
  const out = [];
  for (let at = 0; at < data.length; at += blockBytes) out.push(sha256(data.subarray(at, at + blockBytes)));
  return out;
}

// Writes a made-up model into dir: shards of the given sizes, each a
// `header` bytes prefix then tensors of `perShard` equal parts (32-byte
// gaps between them), plus manifest.json (with block hashes when
// blockBytes is set). Returns { manifest, shards: [{ file, data }],
// tensors: Map name -> { file, offset, bytes } }.
export function makeModel(dir, { sizes = [4096, 300000, 500000, 200000], header = 256, perShard = 3, seed = 1, name = 'fake', blockBytes = null } = {}) {
  mkdirSync(dir, { recursive: true });
  const shards = [];
  const tensors = new Map();
  const mshards = sizes.map((size, k) => {
    const data = fill(Buffer.alloc(size), seed * 1000 + k);
    const file = `${name}-${String(k + 1).padStart(5, '0')}-of-${String(sizes.length).padStart(5, '0')}.gguf`;
    writeFileSync(path.join(dir, file), data);
    shards.push({ file, data });
    const room = size - header;
    const each = Math.floor((room - 32 * perShard) / perShard);
    const ts = [];
    for (let i = 0; i < perShard && each > 0; i++) {
      const t = { name: `blk.${k}.t${i}.weight`, type: 'F32', type_id: 0, shape: [each], offset: header + i * (each + 32), bytes: each };
      ts.push(t);
      tensors.set(t.name, { file: k, offset: t.offset, bytes: t.bytes });
    }
    const blocks = blockBytes ? { block_bytes: blockBytes, block_sha256: blockHashes(data, blockBytes) } : {};
    return { file, bytes: size, sha256: sha256(data), ...blocks, layers: [k, k], tensors: ts };
  });
  const manifest = { format: 'stream-llm/1', model: { name, arch: 'llama' }, plan: { bytes: 0 }, shards: mshards };
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  return { dir, manifest, shards, tensors };
}

// The same model with shard k's bytes changed (a new version of one layer):
// a new file and sha256 in the manifest, the other shards untouched.
export function changeShard(model, dir, k) {
  mkdirSync(dir, { recursive: true });
  const manifest = JSON.parse(JSON.stringify(model.manifest));
  const shards = model.shards.map((s, i) => {
    const data = i === k ? Buffer.from(s.data) : s.data;
    if (i === k) data[data.length - 1] ^= 0x55;
    const file = i === k ? `v2-${s.file}` : s.file;
    writeFileSync(path.join(dir, file), data);
    manifest.shards[i].file = file;
    manifest.shards[i].sha256 = sha256(data);
    if (manifest.shards[i].block_bytes) manifest.shards[i].block_sha256 = blockHashes(data, manifest.shards[i].block_bytes);
    return { file, data };
  });
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  return { dir, manifest, shards, tensors: model.tensors };
}

// A sink that keeps each tensor's bytes and the headers it was given.
// misaligned counts pieces that start or end inside a tensor at a file
// offset that is not a multiple of chunkBytes (the manager's promise).
export function recordingSink({ headerAsk = null, reset = false, chunkBytes = 256 * 1024 } = {}) {
  const sink = {
    misaligned: 0,
    headers: [],
    tensors: new Map(),
    calls: 0,
    resets: 0,
    began: null,
    header(k, bytes, size) {
      sink.headers.push({ k, len: bytes.length, size, sha: sha256(bytes) });
      if (headerAsk && headerAsk[k] && bytes.length < headerAsk[k]) return headerAsk[k];
      return 0;
    },
    begin({ tensors }) {
      sink.began = tensors.length;
      for (const t of tensors) sink.tensors.set(t.name, Buffer.alloc(t.bytes));
    },
    tensor(name, offset, chunk, t) {
      sink.calls++;
      const b = sink.tensors.get(name);
      if (!b) throw new Error(`unknown tensor ${name}`);
      if (offset + chunk.length > b.length) throw new Error(`tensor ${name}: out of range`);
      const start = t.offset + offset;
      const end = start + chunk.length;
      if ((offset !== 0 && start % chunkBytes !== 0) || (offset + chunk.length !== t.bytes && end % chunkBytes !== 0)) sink.misaligned++;
      b.set(chunk, offset);
    },
  };
  if (reset) {
    sink.reset = () => {
      sink.resets++;
      sink.headers = [];
      sink.tensors = new Map();
    };
  }
  return sink;
}

// True when every tensor the sink holds equals the model's bytes.
export function sinkMatches(sink, model) {
  if (sink.tensors.size !== model.tensors.size) return `sink has ${sink.tensors.size} tensors, model ${model.tensors.size}`;
  for (const [name, t] of model.tensors) {
    const want = model.shards[t.file].data.subarray(t.offset, t.offset + t.bytes);
    const got = sink.tensors.get(name);
    if (!got || !got.equals(want)) return `tensor ${name} differs`;
  }
  return true;
}

// What a partial download of a shard with block hashes holds (part: its
// bytes; data: the shard's; cuts: its pieces, planPieces()): good[k], the
// blocks that verify; missing, the bytes of the others; reused, the file's
// last bytes when it ends inside a block that a resume's fetch starts with
// (a piece's first block, or one after a verified block): they start that
// block. A resume fetches missing - reused bytes of the shard.
export function partialFacts(part, data, blockBytes, cuts) {
  const n = Math.ceil(data.length / blockBytes);
  const end = (k) => Math.min(data.length, (k + 1) * blockBytes);
  const good = [];
  for (let k = 0; k < n; k++) good.push(end(k) <= part.length && part.subarray(k * blockBytes, end(k)).equals(data.subarray(k * blockBytes, end(k))));
  let missing = 0;
  for (let k = 0; k < n; k++) if (!good[k]) missing += end(k) - k * blockBytes;
  const hd = Math.floor(part.length / blockBytes);
  const tail = part.length - hd * blockBytes;
  const starts = cuts.map((c) => c[0]);
  const reused = tail > 0 && hd < n && !good[hd] && (starts.includes(hd) || good[hd - 1])
    && part.subarray(hd * blockBytes).equals(data.subarray(hd * blockBytes, part.length)) ? tail : 0;
  return { good, missing, reused };
}

// The Range requests of a log ({ range: 'bytes=A-B' }) that ask for bytes
// of a block marked good: [] when none does.
export function refetchedGood(log, good, blockBytes) {
  const out = [];
  for (const e of log) {
    const [from, to] = e.range.replace('bytes=', '').split('-').map(Number);
    for (let k = Math.floor(from / blockBytes); k * blockBytes <= to; k++) if (good[k]) out.push(`${e.range}: block ${k}`);
  }
  return out;
}

// Runs build/streamllm; throws with its stderr on failure.
export function streamllm(args) {
  const r = spawnSync(STREAMLLM, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`streamllm ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
}

export function readJson(file) { return JSON.parse(readFileSync(file, 'utf8')); }

// ---- headless Chromium tests -------------------------------------------------

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// playwright-core's chromium when everything a browser test needs is here
// (playwright-core, chromium, the test data, build/streamllm, engine.wasm);
// else null after a loud skip (a failure under CI=true) naming what is absent.
export async function browserReady(t, name) {
  let chromium = null;
  try {
    chromium = (await import('playwright-core')).chromium;
  } catch {
    chromium = null;
  }
  const missing = !chromium ? 'playwright-core (npm install)' : !existsSync(CHROMIUM) ? CHROMIUM
    : !hasTestdata() ? `test data at ${TESTDATA}` : !hasStreamllm() ? STREAMLLM : !existsSync(WASM) ? WASM : null;
  if (!missing) return chromium;
  const msg = `${missing} absent`;
  if (process.env.CI === 'true') throw new Error(`CI=true: ${msg}`);
  console.error(`SKIP ${name}: ${msg}`);
  t.skip(msg);
  return null;
}

// stories260K split into small shards in a temporary folder:
// { tmp, model, shards (the folder), manifest }. blockBytes: the manifest's
// block hashes redone for blocks of that size (split's 4 MiB blocks hold
// each of these shards whole: a download cannot stop inside one).
export function splitStories(t, prefix, { blockBytes = null } = {}) {
  const tmp = tempDir(t, prefix);
  const model = path.join(TESTDATA, 'models/stories260K.gguf');
  const shards = path.join(tmp, 'shards');
  streamllm(['split', model, shards, '--max-shard-size', '256K']);
  const file = path.join(shards, 'manifest.json');
  const manifest = readJson(file);
  if (blockBytes) {
    for (const s of manifest.shards) {
      s.block_bytes = blockBytes;
      s.block_sha256 = blockHashes(readFileSync(path.join(shards, s.file)), blockBytes);
    }
    writeFileSync(file, JSON.stringify(manifest, null, 1));
  }
  return { tmp, model, shards, manifest };
}
