// gpu_kernels.test.mjs - every WebGPU kernel x every weight format against
// the C reference (src/gpu/ktest.c: random inputs, weights quantized by the C
// quantizer, float64 math over the dequantized weights), through engine.wasm
// and the bridge exactly as the engine runs them. Sizes include rows, columns
// and token counts that are not multiples of the workgroup or tile sizes,
// and weights split over several bindings; the f16 KV cache (shader-f16:
// the lavapipe lane) kernel by kernel and end to end. Needs a WebGPU adapter
// (Dawn: npm `webgpu`; SwiftShader by default, see gpu_env.mjs).
// $STREAMLLM_WASM selects another engine.wasm.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ENGINE_WASM, CLI, requireTestdata, readIndex, referenceCase, readF32, compareRow } from './refdata.mjs';
import { requireGpu } from './gpu_env.mjs';
import { loadEngineModule } from '../../web/engine/wasm.mjs';
import { requestDevice, createBridge, layoutsCode } from '../../web/engine/webgpu.mjs';

const wasmPath = ENGINE_WASM;

// sl_gpu_kernel, sl_gpu_epilogue and sl_type ids (src/gpu/kernels.h, src/quant/quant.h).
const K = { MATVEC: 0, MATMUL: 1, EMBED: 2, RMSNORM: 3, ROPE_Q: 4, ROPE_KV: 5, ATTN_DECODE: 6, ATTN_PREFILL: 8 };
const EPI = { NONE: 0, BIAS: 1, ADD: 2, SILU_MUL: 3 };
const TYPES = {
  F32: 0, F16: 1, BF16: 30, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, IQ4_NL: 20,
  Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14,
};
const FLOAT_TYPES = new Set(['F32', 'F16', 'BF16']);
const K_TYPES = new Set(['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K']);

// The engine module on a device: `plain` without the optional features
// (subgroups, shader-f16), to test the kernels' fallback paths too.
const contexts = {};
async function setup(plain = false) {
  if (contexts[plain]) return contexts[plain];
  const { gpu, adapter, device, info } = await requestDevice(plain ? { disableFeatures: ['subgroups', 'shader-f16'] } : {});
  const bridge = createBridge(device, { wgslLanguageFeatures: gpu.wgslLanguageFeatures });
  const mod = await loadEngineModule(wasmPath, { imports: { webgpu: bridge.imports } });
  bridge.attach(mod.memory);
  contexts[plain] = { mod, bridge, info, keep: [gpu, adapter] };
  console.error(`  adapter${plain ? ' (no optional features)' : ''}: ${info.vendor} ${info.architecture} (${info.features.join(', ')}; ` +
    `subgroup_id ${info.wgslLanguageFeatures.includes('subgroup_id')}; binding limit ${info.limits.maxStorageBufferBindingSize})`);
  return contexts[plain];
}

// Runs one kernel test; returns { nrmse, maxAbs }. kvF16: f16 K/V caches
// (ROPE_KV, ATTN_*; the device must have shader-f16).
// Weights (MATVEC, MATMUL, EMBED): raw: as stored in the file, else in the
// format's GPU layout (src/gpu/layout.h; every format that has one, also
// those the engine keeps raw by default), uploaded in pieces of `piece`
// bytes (0: whole), the last first when `reversed`; mv: mat-vec tuning
// { rows, units, minWgs }; norm: the mat-vec norms its token first.
async function ktest(kernel, { type = 0, rows = 0, cols = 0, n = 1, epi = 0, nh = 8, nkv = 2, hd = 32, nrot = hd,
  neox = false, qkNorm = false, pos0 = 0, chunk = 0, seed = 1, plain = false, kvF16 = false, raw = false, piece = 0,
  reversed = false, mv = {}, norm = false, int8 = false, mm = {} } = {}) {
  const { mod, bridge } = await setup(plain);
  const ex = mod.exports;
  const t = ex.gpu_ktest_begin(kernel, type, rows, cols, n, epi, nh, nkv, hd, nrot, neox ? 1 : 0, qkNorm ? 1 : 0, pos0,
    chunk, seed, kvF16 ? 1 : 0, layoutsCode(raw ? 'raw' : 'all'), piece, reversed ? 1 : 0, mv.rows ?? 0, mv.units ?? 0, mv.minWgs ?? 0,
    norm ? 1 : 0, int8 ? 1 : 0, mm.tokens ?? 0, mm.rows ?? 0, mm.invTokens ?? 0);
  if (t === 0) throw mod.error('gpu_ktest_begin');
  await bridge.settle();
  const nrmse = ex.gpu_ktest_end(t);
  if (nrmse < 0) throw mod.error('gpu_ktest_end');
  return { nrmse, maxAbs: ex.gpu_ktest_max_abs() };
}

const TOL = 2e-5;
function expectClose(r, what) {
  assert.ok(r.nrmse <= TOL, `${what}: nrmse ${r.nrmse} > ${TOL} (max abs error ${r.maxAbs})`);
}

// The f16 KV cache tests need shader-f16 (lavapipe has it, SwiftShader not):
// a loud skip elsewhere, also under CI=true (the lavapipe lane runs them).
async function requireF16(t) {
  if (!(await requireGpu(t))) return false;
  const { info } = await setup();
  if (info.features.includes('shader-f16')) return true;
  const msg = `the adapter (${info.vendor} ${info.architecture}) has no shader-f16; the f16 KV cache tests run on the lavapipe lane (scripts/gpu-lane.sh lavapipe)`;
  console.error(`SKIP ${msg}`);
  t.skip(msg);
  return false;
}

if (!existsSync(wasmPath)) {
  test('engine.wasm is built', () => assert.fail(`${wasmPath} is missing: run make wasm`));
} else {
  // Shapes per format: columns a multiple of the block size (ragged for the
  // float formats: not a multiple of 8, and odd for 2-byte formats).
  for (const [name, type] of Object.entries(TYPES)) {
    const cols = FLOAT_TYPES.has(name) ? [13, 100, 264] : K_TYPES.has(name) ? [256, 768] : [32, 96, 544];
    test(`mat-vec ${name}`, async (t) => {
      if (!(await requireGpu(t))) return;
      for (const c of cols)
        for (const rows of [1, 37, 130]) expectClose(await ktest(K.MATVEC, { type, rows, cols: c, n: 3 }), `${rows}x${c}`);
      expectClose(await ktest(K.MATVEC, { type, rows: 75, cols: cols[1], chunk: 16 }), 'rows in chunks of 16');
      // wide rows: more invocations per row (64 to 256), fewer rows per workgroup
      const wide = FLOAT_TYPES.has(name) ? 8203 : K_TYPES.has(name) ? 32768 : 16384;
      expectClose(await ktest(K.MATVEC, { type, rows: 9, cols: wide, n: 2 }), `9x${wide}`);
    });
    test(`mat-mul ${name}`, async (t) => {
      if (!(await requireGpu(t))) return;
      for (const c of cols)
        for (const [rows, n] of [[1, 2], [37, 5], [130, 33], [64, 70]])
          expectClose(await ktest(K.MATMUL, { type, rows, cols: c, n }), `${rows}x${c}, ${n} tokens`);
      expectClose(await ktest(K.MATMUL, { type, rows: 75, cols: cols[1], n: 9, chunk: 16 }), 'rows in chunks of 16');
    });
    test(`embedding ${name}`, async (t) => {
      if (!(await requireGpu(t))) return;
      for (const c of cols) expectClose(await ktest(K.EMBED, { type, rows: 50, cols: c, n: 6 }), `50x${c}`);
      expectClose(await ktest(K.EMBED, { type, rows: 90, cols: cols[0], n: 12, chunk: 20 }), 'rows in chunks of 20');
    });
  }

  test('mat-vec and mat-mul epilogues: bias, residual add, silu(gate) * up', async (t) => {
    if (!(await requireGpu(t))) return;
    for (const [name, epi] of Object.entries(EPI)) {
      for (const type of [TYPES.F32, TYPES.Q4_0, TYPES.Q6_K]) {
        const cols = type === TYPES.F32 ? 40 : 256;
        expectClose(await ktest(K.MATVEC, { type, rows: 45, cols, n: 2, epi }), `mat-vec ${name} type ${type}`);
        expectClose(await ktest(K.MATMUL, { type, rows: 45, cols, n: 35, epi, chunk: 20 }), `mat-mul ${name} type ${type}`);
      }
    }
  });

  // The GPU weight layouts (src/gpu/layout.h): blocks permuted per chunk on
  // upload, pieces cut anywhere (4-byte aligned) and in any order carried
  // over; every op that reads weights, against the reference and against
  // the same weights as stored (raw).
  const LAYOUT_TYPES = ['Q4_0', 'Q8_0', 'Q4_K', 'Q6_K'];
  for (const name of LAYOUT_TYPES) {
    const type = TYPES[name];
    const k = K_TYPES.has(name);
    const cols = k ? 768 : 544;
    test(`GPU layout ${name}: mat-vec, mat-mul, embedding from pieces cut anywhere`, async (t) => {
      if (!(await requireGpu(t))) return;
      for (const raw of [false, true]) expectClose(await ktest(K.MATVEC, { type, rows: 37, cols, n: 2, raw }), `mat-vec raw ${raw}`);
      for (const piece of [4, 20, 36, 1028, (1 << 20) + 4])
        for (const reversed of [false, true]) {
          const what = `pieces of ${piece}${reversed ? ', last first' : ''}`;
          expectClose(await ktest(K.MATVEC, { type, rows: 75, cols, chunk: 16, piece, reversed }), `mat-vec, chunks of 16 rows, ${what}`);
          expectClose(await ktest(K.MATVEC, { type, rows: 13, cols, piece, reversed, seed: 3 }), `mat-vec, odd rows, ${what}`);
        }
      expectClose(await ktest(K.MATMUL, { type, rows: 75, cols, n: 9, chunk: 16, piece: 20, reversed: true }), 'mat-mul, pieces of 20');
      expectClose(await ktest(K.EMBED, { type, rows: 90, cols, n: 12, chunk: 20, piece: 36 }), 'embedding, pieces of 36');
    });
    test(`GPU layout ${name}: mat-vec shapes (rows and units per invocation), normed token`, async (t) => {
      if (!(await requireGpu(t))) return;
      for (const rows of [1, 2, 3, 4])
        for (const units of [1, 2, 8])
          expectClose(await ktest(K.MATVEC, { type, rows: 43, cols, n: 2, epi: EPI.ADD, mv: { rows, units, minWgs: 1 } }),
            `${rows} rows, ${units} units per invocation`);
      // the token in workgroup memory (normed once) and, for wide rows, read from the buffer (normed on the fly)
      for (const c of [cols, k ? 32768 : 16384])
        for (const epi of [EPI.NONE, EPI.ADD])
          expectClose(await ktest(K.MATVEC, { type, rows: 21, cols: c, n: 3, epi, norm: true }), `normed, ${c} columns, epilogue ${epi}`);
      expectClose(await ktest(K.MATVEC, { type, rows: 21, cols, norm: true, plain: true }), 'normed, without subgroups');
      expectClose(await ktest(K.MATVEC, { type, rows: 21, cols, norm: true, raw: true }), 'normed, raw');
    });
  }

  // int8 tokens (dot4I8Packed) for the formats with a GPU layout: llama.cpp's arithmetic,
  // so against the float64 reference within the int8 rounding of the token
  // (about 0.4% rms), not 2e-5; a wrong element would give nrmse ~1.
  const INT8_TOL = 1e-2;
  const close = (r, what) => assert.ok(r.nrmse <= INT8_TOL, `${what}: nrmse ${r.nrmse} > ${INT8_TOL}`);
  // a device and WGSL's dot4I8Packed; without it a loud skip (a failure in CI)
  async function requireInt8Dot(t) {
    if (!(await requireGpu(t))) return false;
    const { info } = await setup();
    if (info.wgslLanguageFeatures.includes('packed_4x8_integer_dot_product')) return true;
    const msg = 'WGSL lacks packed_4x8_integer_dot_product';
    if (process.env.CI === 'true') assert.fail(msg);
    console.error(`SKIP ${msg}`);
    t.skip(msg);
    return false;
  }
  test('int8 token for Q4_0, Q8_0, Q4_K and Q6_K mat-vecs (dot4I8Packed)', async (t) => {
    if (!(await requireInt8Dot(t))) return;
    for (const type of [TYPES.Q4_0, TYPES.Q8_0, TYPES.Q4_K, TYPES.Q6_K]) {
      // blocks of 256; 16 rows: the error of a single row (one value) is too noisy a measure
      const kq = type === TYPES.Q4_K || type === TYPES.Q6_K;
      for (const [rows, cols] of kq ? [[16, 256], [37, 768], [130, 2048]] : [[1, 32], [37, 544], [130, 2048]])
        for (const norm of [false, true])
          close(await ktest(K.MATVEC, { type, rows, cols, n: 2, norm, int8: true }), `type ${type} ${rows}x${cols} norm ${norm}`);
      for (const rows of [1, 3, 4])
        close(await ktest(K.MATVEC, { type, rows: 45, cols: 256, epi: EPI.ADD, mv: { rows, units: 1, minWgs: 1 }, int8: true, piece: 20 }),
          `type ${type}, ${rows} rows per invocation`);
      close(await ktest(K.MATVEC, { type, rows: 75, cols: kq ? 512 : 544, chunk: 16, int8: true, plain: true }), `type ${type} chunks, without subgroups`);
      // wider than the f32 token can be kept in workgroup memory: int8 blocks
      // quantized from global memory (ffn_down)
      for (const norm of [false, true])
        close(await ktest(K.MATVEC, { type, rows: 9, cols: 16384, int8: true, norm }), `type ${type} 9x16384 norm ${norm}`);
      // too wide for the int8 token too: the f32 token, exact again
      expectClose(await ktest(K.MATVEC, { type, rows: 9, cols: 65536, int8: true }), `type ${type} 9x65536 (f32 token)`);
    }
  });

  // The int8 mat-mul (prefill; dot4I8Packed): tiles of 64 tokens x 64 rows
  // (and other tunings), the tokens quantized per 32 columns by each
  // workgroup; partial tiles in tokens and rows, rows in chunks, every
  // epilogue, wide rows, against the float64 reference within the int8
  // tolerance.
  test('int8 token for Q4_0, Q8_0, Q4_K and Q6_K mat-muls (dot4I8Packed)', async (t) => {
    if (!(await requireInt8Dot(t))) return;
    // other tiles: tokens x rows per workgroup, tokens per invocation (two per format)
    const tiles = [[32, 64, 2], [128, 128, 8], [64, 128, 4], [32, 128, 1]];
    for (const [k, type] of [TYPES.Q4_0, TYPES.Q8_0, TYPES.Q4_K, TYPES.Q6_K].entries()) {
      const kq = type === TYPES.Q4_K || type === TYPES.Q6_K;
      // [rows, cols, tokens, epilogue, rows per chunk]
      for (const [rows, cols, n, epi, chunk] of [[16, 256, 1, EPI.NONE, 0], [37, kq ? 512 : 288, 9, EPI.BIAS, 16],
        [150, 768, 35, EPI.ADD, 64], [200, 2048, 130, EPI.SILU_MUL, 0], [20, 8192, 5, EPI.NONE, 0]])
        close(await ktest(K.MATMUL, { type, rows, cols, n, epi, chunk, int8: true, piece: 36 }),
          `type ${type} ${rows}x${cols}, ${n} tokens, epilogue ${epi}, chunks of ${chunk || rows} rows`);
      close(await ktest(K.MATMUL, { type, rows: 75, cols: 512, n: 9, chunk: 16, int8: true, plain: true }), `type ${type} chunks of 16, without subgroups`);
      for (const [tokens, rows, invTokens] of [tiles[k], tiles[(k + 1) % 4]])
        close(await ktest(K.MATMUL, { type, rows: 135, cols: 512, n: 70, epi: EPI.ADD, int8: true, mm: { tokens, rows, invTokens } }),
          `type ${type} tile ${tokens}x${rows}, ${invTokens} tokens per invocation`);
    }
  });

  test('rmsnorm', async (t) => {
    if (!(await requireGpu(t))) return;
    for (const [cols, n] of [[8, 1], [64, 3], [300, 5], [4096, 2]]) expectClose(await ktest(K.RMSNORM, { cols, n }), `${cols} x ${n}`);
  });

  test('rope on Q and K (+ KV store): normal and neox, partial rotation, per-head norm', async (t) => {
    if (!(await requireGpu(t))) return;
    for (const kernel of [K.ROPE_Q, K.ROPE_KV]) {
      for (const neox of [false, true]) {
        for (const [hd, nrot, qkNorm] of [[8, 8, false], [64, 64, true], [128, 64, false], [96, 32, true]]) {
          const what = `${kernel === K.ROPE_Q ? 'Q' : 'KV'} ${neox ? 'neox' : 'norm'} hd ${hd} rot ${nrot} norm ${qkNorm}`;
          expectClose(await ktest(kernel, { n: 3, nh: 6, nkv: 3, hd, nrot, neox, qkNorm, pos0: 37 }), what);
        }
      }
    }
  });

  test('attention decode (split over 256-key workgroups, GQA)', async (t) => {
    if (!(await requireGpu(t))) return;
    for (const [pos0, nh, nkv, hd] of [[0, 4, 4, 8], [10, 8, 2, 64], [255, 4, 1, 32], [256, 6, 3, 128], [700, 8, 4, 64]])
      expectClose(await ktest(K.ATTN_DECODE, { pos0, nh, nkv, hd }), `pos ${pos0}, ${nh}/${nkv} heads of ${hd}`);
  });

  // tiles of 64 queries x BK keys: several query blocks, several key tiles,
  // a block that starts inside a tile; a head size the tiles do not take
  // (6: not a multiple of 4) runs the per-token kernel
  test('attention prefill (causal, GQA, online softmax over key tiles)', async (t) => {
    if (!(await requireGpu(t))) return;
    for (const [n, pos0, nh, nkv, hd] of [[1, 0, 2, 2, 8], [5, 0, 8, 2, 64], [70, 3, 4, 4, 32], [9, 130, 6, 3, 128], [3, 200, 4, 1, 256],
      [33, 0, 1, 1, 32], [40, 30, 2, 1, 32], [130, 0, 4, 2, 64], [7, 40, 4, 2, 6]])
      expectClose(await ktest(K.ATTN_PREFILL, { n, pos0, nh, nkv, hd }), `${n} tokens at ${pos0}, ${nh}/${nkv} heads of ${hd}`);
  });

  test('without subgroups and shader-f16: reductions through workgroup memory', async (t) => {
    if (!(await requireGpu(t))) return;
    const plain = true;
    for (const [type, cols] of [[TYPES.F32, 100], [TYPES.Q4_K, 512], [TYPES.Q8_0, 96]]) {
      expectClose(await ktest(K.MATVEC, { type, rows: 37, cols, n: 2, plain }), `mat-vec type ${type}`);
      expectClose(await ktest(K.MATMUL, { type, rows: 37, cols, n: 9, plain }), `mat-mul type ${type}`);
    }
    expectClose(await ktest(K.RMSNORM, { cols: 300, n: 3, plain }), 'rmsnorm');
    expectClose(await ktest(K.ROPE_KV, { n: 3, nh: 6, nkv: 3, hd: 64, nrot: 64, qkNorm: true, pos0: 5, plain }), 'rope');
    expectClose(await ktest(K.ATTN_DECODE, { pos0: 300, nh: 8, nkv: 2, hd: 64, plain }), 'attention decode');
    expectClose(await ktest(K.ATTN_PREFILL, { n: 9, pos0: 70, nh: 4, nkv: 2, hd: 32, plain }), 'attention prefill');
    assert.equal((await setup(true)).bridge.stats.subgroupPipelines, 0);
    // the other tests used subgroups where the device has them
    const { info, bridge } = await setup(false);
    if (info.features.includes('subgroups') && info.wgslLanguageFeatures.includes('subgroup_id'))
      assert.ok(bridge.stats.subgroupPipelines > 0, 'no kernel used subgroups');
  });

  // f16 K/V caches: ROPE_KV rotates in f32 and rounds once when it stores;
  // the reference rounds its K and V to f16 the same way (round to nearest
  // even), and the attention tests give kernel and reference the same
  // f16-rounded caches, so the f32 tolerance holds unchanged.
  test('f16 KV cache: rope + K/V store (normal and neox, partial rotation, per-head norm)', async (t) => {
    if (!(await requireF16(t))) return;
    for (const neox of [false, true]) {
      for (const [hd, nrot, qkNorm] of [[8, 8, false], [64, 64, true], [128, 64, false], [96, 32, true]]) {
        const what = `f16 KV ${neox ? 'neox' : 'norm'} hd ${hd} rot ${nrot} norm ${qkNorm}`;
        expectClose(await ktest(K.ROPE_KV, { n: 3, nh: 6, nkv: 3, hd, nrot, neox, qkNorm, pos0: 37, kvF16: true }), what);
      }
    }
    // an odd number of f16 values per cache (bindings padded to 4 bytes)
    expectClose(await ktest(K.ROPE_KV, { n: 3, nh: 1, nkv: 1, hd: 7, nrot: 6, pos0: 2, kvF16: true }), 'f16 KV, 1 head of 7, 5 rows');
  });

  test('f16 KV cache: attention decode and prefill read f16, accumulate in f32', async (t) => {
    if (!(await requireF16(t))) return;
    for (const [pos0, nh, nkv, hd] of [[0, 4, 4, 8], [10, 8, 2, 64], [255, 4, 1, 32], [256, 6, 3, 128], [700, 8, 4, 64]])
      expectClose(await ktest(K.ATTN_DECODE, { pos0, nh, nkv, hd, kvF16: true }), `f16 decode pos ${pos0}, ${nh}/${nkv} heads of ${hd}`);
    for (const [n, pos0, nh, nkv, hd] of [[1, 0, 2, 2, 8], [5, 0, 8, 2, 64], [70, 3, 4, 4, 32], [9, 130, 6, 3, 128], [3, 200, 4, 1, 256]])
      expectClose(await ktest(K.ATTN_PREFILL, { n, pos0, nh, nkv, hd, kvF16: true }), `f16 prefill ${n} at ${pos0}, ${nh}/${nkv} heads of ${hd}`);
  });

  test('an f16 KV cache kernel test without shader-f16 is refused', async (t) => {
    if (!(await requireGpu(t))) return;
    const { mod } = await setup(true); // no optional features
    assert.throws(() => {
      const h = mod.exports.gpu_ktest_begin(K.ROPE_KV, 0, 0, 0, 2, 0, 4, 2, 8, 8, 0, 0, 0, 0, 1, 1);
      if (!h) throw mod.error();
    }, /shader-f16/);
  });

  // End to end on stories260K: with --kv-f16 the greedy text of 32 tokens is
  // the f32-KV run's, and the logits of every position (teacher forcing over
  // the reference sequence) stay within nrmse 5e-3 of it.
  test('f16 KV cache end to end: stories260K greedy tokens and logits vs the f32 KV cache', async (t) => {
    if (!(await requireF16(t)) || !requireTestdata(t)) return;
    const entry = readIndex().find((e) => e.name === 'stories260K-f32');
    assert.ok(entry, 'stories260K-f32 is not in index.tsv');
    const dir = mkdtempSync(path.join(tmpdir(), 'sl-kv-f16-'));
    try {
      const wasmArgs = process.env.STREAMLLM_WASM ? ['--wasm', wasmPath] : [];
      const cli = (args) => new Promise((resolve) => {
        execFile(process.execPath, [CLI, ...args, ...wasmArgs], { encoding: 'buffer', maxBuffer: 1 << 26 },
          (err, stdout, stderr) => resolve({ code: err ? err.code ?? 1 : 0, stdout: stdout.toString('utf8'), stderr: stderr.toString() }));
      });
      const run = ['run', '--backend', 'webgpu', '--temp', '0', '-n', '32', '-p', 'Once upon a time', '-m', entry.model];
      const [r32, r16] = [await cli(run), await cli([...run, '--kv-f16'])];
      assert.equal(r32.code, 0, r32.stderr);
      assert.equal(r16.code, 0, r16.stderr);
      assert.match(r16.stderr, /\(webgpu, kv f16/, 'the f16 KV cache was not used');
      assert.ok(r32.stdout.length > 0);
      assert.equal(r16.stdout, r32.stdout, 'greedy text differs with the f16 KV cache');

      const c = referenceCase(entry);
      const toks = path.join(dir, 'tokens');
      writeFileSync(toks, c.tokens.join('\n') + '\n');
      const logits = ['logits', '--backend', 'webgpu', '-m', entry.model, '--tokens', toks, '-o'];
      const [l32, l16] = [await cli([...logits, path.join(dir, 'f32')]), await cli([...logits, path.join(dir, 'f16'), '--kv-f16'])];
      assert.equal(l32.code, 0, l32.stderr);
      assert.equal(l16.code, 0, l16.stderr);
      const a = readF32(path.join(dir, 'f32')), b = readF32(path.join(dir, 'f16'));
      assert.equal(a.length, c.tokens.length * c.V);
      assert.equal(b.length, a.length);
      let worst = 0, top1Bad = 0;
      for (let r = 0; r < c.tokens.length; r++) {
        const s = compareRow(b.subarray(r * c.V, (r + 1) * c.V), a.subarray(r * c.V, (r + 1) * c.V), 5e-3);
        worst = Math.max(worst, s.nrmse);
        if (!s.top1Ok) top1Bad++;
      }
      console.error(`  f16 KV cache vs f32, stories260K: ${c.tokens.length} rows, worst nrmse ${worst.toPrecision(3)}, ` +
        `top-1 mismatches ${top1Bad}; greedy 32 tokens identical`);
      assert.ok(worst <= 5e-3, `worst nrmse ${worst} > 5e-3`);
      assert.equal(top1Bad, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a kernel test with a bad shape is refused', async (t) => {
    if (!(await requireGpu(t))) return;
    const { mod } = await setup();
    // Q4_0 rows must be a multiple of 32 columns
    assert.throws(() => { const t = mod.exports.gpu_ktest_begin(K.MATVEC, TYPES.Q4_0, 4, 33, 1, 0, 8, 2, 32, 32, 0, 0, 0, 0, 1); if (!t) throw mod.error(); });
  });
}
