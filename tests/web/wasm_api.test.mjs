// wasm_api.test.mjs - engine.wasm's exports and the JS engine object: the
// module's imports, header-first loading (asking for more bytes, errors
// that name the problem), tensor-by-tensor weights, addresses above 2 GiB,
// tokenizer and sampler. Cases that need the shared reference data skip
// loudly without it (and fail under CI=true).
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadEngineModule } from '../../web/engine/wasm.mjs';
import { Engine, EngineError, bytesSource, cpuBackend } from '../../web/engine/engine.mjs';
import { WASM, TESTDATA, hasTestdata, requireTestdata, readIndex, readIds } from './refdata.mjs';

const wasmBytes = readFileSync(WASM);
const STORIES = path.join(TESTDATA, 'models/stories260K.gguf');

// ---- a minimal GGUF writer (version 3) for self-contained cases ----------------
function gguf({ kv = [], tensors = [], alignment = 32 }) {
  const parts = [];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s) => { const b = Buffer.from(s, 'utf8'); u64(b.length); parts.push(b); };
  parts.push(Buffer.from('GGUF'));
  u32(3);
  u64(tensors.length);
  u64(kv.length);
  for (const [key, value] of kv) {
    str(key);
    if (typeof value === 'string') { u32(8); str(value); } else { u32(4); u32(value); }
  }
  let offset = 0;
  for (const t of tensors) {
    str(t.name);
    u32(t.ne.length);
    for (const n of t.ne) u64(n);
    u32(0); // F32
    u64(t.offset ?? offset);
    offset += Math.ceil((t.ne.reduce((a, b) => a * b, 1) * 4) / alignment) * alignment;
  }
  let header = Buffer.concat(parts);
  const pad = (alignment - (header.length % alignment)) % alignment;
  header = Buffer.concat([header, Buffer.alloc(pad)]);
  return { bytes: Buffer.concat([header, Buffer.alloc(offset)]), headerSize: header.length };
}

async function engineModule() { return loadEngineModule(wasmBytes); }

// model_header on the first n bytes of `bytes` (copied into wasm memory).
function giveHeader(mod, m, bytes, n) {
  const p = mod.allocBytes(bytes.subarray(0, n));
  const r = mod.exports.model_header(m, p, n, bytes.length);
  mod.free(p);
  return r;
}

test('the module imports only env, webgpu and stubbed WASI functions', async () => {
  const m = await WebAssembly.compile(wasmBytes);
  for (const imp of WebAssembly.Module.imports(m))
    assert.ok(['env', 'webgpu', 'wasi_snapshot_preview1'].includes(imp.module), `unexpected import ${imp.module}.${imp.name}`);
  const names = WebAssembly.Module.exports(m).map((e) => e.name);
  for (const n of ['memory', '_initialize', 'malloc', 'free', 'error_message', 'model_header', 'model_load', 'cpu_eval', 'tokenize', 'sampler_sample'])
    assert.ok(names.includes(n), `missing export ${n}`);
});

test('header first: asks for more bytes until the header is complete', async () => {
  const mod = await engineModule();
  const ex = mod.exports;
  const big = 'x'.repeat(200000); // a 200 KB key/value pushes the header past 128 KiB
  const { bytes, headerSize } = gguf({ kv: [['general.alignment', 64], ['pad', big]], tensors: [{ name: 'a', ne: [16, 3] }, { name: 'b', ne: [8] }], alignment: 64 });
  const m = mod.handle(ex.model_new());
  assert.equal(giveHeader(mod, m, bytes, 10), 65536);
  assert.equal(giveHeader(mod, m, bytes, 65536), 131072);
  assert.equal(giveHeader(mod, m, bytes, 131072), bytes.length); // doubling, capped at the file size
  assert.equal(ex.model_n_files_given(m), 0);
  assert.equal(giveHeader(mod, m, bytes, bytes.length), 0);
  assert.equal(ex.model_n_files(m), 1);
  assert.equal(ex.model_n_tensors(m), 2);
  assert.equal(mod.string(ex.model_tensor_name(m, 1)), 'b');
  assert.equal(ex.model_tensor_offset(m, 0), headerSize);
  assert.equal(ex.model_tensor_offset(m, 1), headerSize + 192);
  assert.equal(ex.model_tensor_bytes(m, 0), 192);
  assert.equal(ex.model_tensor_type(m, 1), 0);
  assert.equal(ex.model_tensor_file(m, 1), 0);
  // a second file of a model that has one
  assert.equal(giveHeader(mod, m, bytes, bytes.length), -1);
  assert.match(mod.error().message, /all 1 files of the model were given already/);
  // weights in place, but no architecture: model_load says what is missing
  assert.equal(ex.cpu_weights_alloc(m), 0);
  assert.equal(ex.cpu_tensor_dest(m, 1) - ex.cpu_file_dest(m, 0), headerSize + 192);
  assert.equal(ex.model_load(m, 0), -1);
  assert.match(mod.error().message, /missing general\.architecture/);
  ex.model_free(m);
});

test('header errors name the problem', async () => {
  const mod = await engineModule();
  const ex = mod.exports;
  const m = mod.handle(ex.model_new());
  const notGguf = Buffer.from('GGML this is not a gguf file at all');
  assert.equal(giveHeader(mod, m, notGguf, notGguf.length), -1);
  assert.match(mod.error().message, /not a GGUF file \(bad magic\)/);
  // the whole file given and still no complete header: truncated
  const { bytes } = gguf({ kv: [['general.name', 'abc']], tensors: [{ name: 'a', ne: [4] }] });
  const cut = bytes.subarray(0, 40);
  assert.equal(giveHeader(mod, m, cut, cut.length), -1);
  assert.match(mod.error().message, /truncated|runs past the end/);
  // a tensor whose data runs past the end of the file
  const past = gguf({ tensors: [{ name: 'far.weight', ne: [4], offset: 4096 }] }).bytes;
  assert.equal(giveHeader(mod, m, past, past.length), -1);
  assert.match(mod.error().message, /tensor 'far\.weight' .* runs past the end of file 1/);
  // nothing was accepted: a good file is still taken
  assert.equal(giveHeader(mod, m, bytes, bytes.length), 0);
  assert.equal(ex.model_n_files_given(m), 1);
  // out of order calls
  assert.equal(ex.cpu_new(m, 0, 0), 0);
  assert.match(mod.error().message, /no model loaded/);
  ex.model_free(m);
});

test('sampler parameters by name; unknown names are errors', async () => {
  const mod = await engineModule();
  const ex = mod.exports;
  const p = mod.handle(ex.sampler_params());
  const set = (k, v) => { const s = mod.allocString(k); const r = ex.sampler_param_set(p, s.ptr, v); mod.free(s.ptr); return r; };
  assert.equal(set('temp', 0), 0);
  assert.equal(set('top_k', 1.5), -1);
  assert.equal(set('no_such', 1), -1);
  assert.match(mod.error().message, /sampler parameter 'no_such' is unknown/);
  const s = mod.handle(ex.sampler_new(p, 4));
  const logits = mod.alloc(16);
  mod.f32(logits, 4).set([0.5, 3, -1, 2]);
  assert.equal(ex.sampler_sample(s, logits), 1); // greedy
  ex.sampler_free(s);
  mod.free(p);
  mod.free(logits);
});

test('CPU engine: whole file, tensor by tensor, and above 2 GiB give the same logits', async (t) => {
  if (!requireTestdata(t)) return;
  const ids = [1, 403, 407, 261, 378];
  const whole = await Engine.create({ wasm: wasmBytes });
  await whole.load(STORIES);
  const want = await whole.eval(ids, { allLogits: true });
  whole.free();

  // weights written tensor by tensor at cpu_tensor_dest (as the shard loader will)
  const cpu = cpuBackend();
  const byTensor = {
    ...cpu,
    async load({ mod, model, sources, name }) {
      const ex = mod.exports;
      mod.status(ex.cpu_weights_alloc(model));
      const n = mod.status(ex.model_n_tensors(model));
      for (let i = 0; i < n; i++) {
        const dest = mod.handle(ex.cpu_tensor_dest(model, i));
        const bytes = ex.model_tensor_bytes(model, i);
        await sources[ex.model_tensor_file(model, i)].readInto(ex.model_tensor_offset(model, i), new Uint8Array(mod.memory.buffer, dest, bytes));
      }
      const nm = mod.allocString(name);
      mod.status(ex.model_load(model, nm.ptr));
      mod.free(nm.ptr);
    },
  };
  const e2 = await Engine.create({ wasm: wasmBytes, backend: byTensor });
  await e2.load(STORIES);
  assert.deepEqual(await e2.eval(ids, { allLogits: true }), want);
  e2.free();

  // everything above 2 GiB: addresses arrive as negative i32 in JS
  const e3 = await Engine.create({ wasm: wasmBytes });
  // (one malloc stays below 2 GiB in wasi-libc: two blocks of 1 GiB)
  const holes = [e3.mod.alloc(2 ** 30), e3.mod.alloc(2 ** 30)];
  await e3.load(readFileSync(STORIES), { name: 'stories' });
  assert.ok(e3.ex.cpu_file_dest(e3.model, 0) < 0, 'the weights should lie above 2 GiB');
  assert.deepEqual(await e3.eval(ids, { allLogits: true }), want);
  assert.equal(e3.info.name, 'llama');
  for (const h of holes) e3.mod.free(h);
  e3.free();
});

test('tokenize matches the reference prompt tokens of every model', async (t) => {
  if (!requireTestdata(t)) return;
  const seen = new Set();
  for (const entry of readIndex()) {
    if (seen.has(entry.model)) continue;
    seen.add(entry.model);
    const e = await Engine.create({ wasm: wasmBytes });
    await e.load(entry.model);
    const prompt = JSON.parse(/^prompt: (".*")$/m.exec(readFileSync(`${entry.ref}.summary.txt`, 'utf8'))[1]);
    assert.deepEqual([...e.tokenize(prompt)], readIds(`${entry.ref}.prompt_tokens.txt`), entry.name);
    e.free();
  }
});

test('a split given as bytes (no part()) and a later part given first are errors', async (t) => {
  if (!requireTestdata(t)) return;
  const dir = path.join(TESTDATA, 'models/split');
  const e = await Engine.create({ wasm: wasmBytes });
  await assert.rejects(e.load(readFileSync(path.join(dir, 'sv-llama-q8_0-00001-of-00004.gguf'))), /first of 4 split parts/);
  const e2 = await Engine.create({ wasm: wasmBytes });
  await assert.rejects(e2.load(bytesSource(readFileSync(path.join(dir, 'sv-llama-q8_0-00002-of-00004.gguf')))),
    (err) => err instanceof EngineError && /part 2 of 4 of a split: give part 1 first/.test(err.message));
});

test('generate: same seed, same text; greedy stops at n', async (t) => {
  if (!requireTestdata(t)) return;
  const e = await Engine.create({ wasm: wasmBytes });
  await e.load(STORIES);
  const gen = async (sampling, nPredict) => {
    e.truncate(0);
    const out = [];
    for await (const tok of e.generate(e.tokenize('Once upon a time'), { nPredict, sampling })) if (tok.id >= 0) out.push(tok.id);
    return out;
  };
  const a = await gen({ temp: 0.9, seed: 42n }, 20);
  assert.equal(a.length, 20);
  assert.deepEqual(await gen({ temp: 0.9, seed: 42 }, 20), a);
  assert.notDeepEqual(await gen({ temp: 0.9, seed: 2n ** 40n + 42n }, 20), a);
  assert.equal((await gen({ temp: 0 }, 7)).length, 7);
  e.free();
});
