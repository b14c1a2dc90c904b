// gpu_conformance.test.mjs - `node web/cli.mjs --backend webgpu` against
// llama.cpp's reference outputs (as tests/test_conformance.c does natively):
// the logits of every position under teacher forcing for every model in
// index.tsv, also one token per step (the decode kernels: fused norm +
// Q/K/V + RoPE, gate/up, attention without merge), the exact greedy text of stories260K, and the same with every
// weight split into several bindings (a small binding limit) and with
// prompts longer than one prefill batch. Needs a WebGPU adapter (Dawn:
// npm `webgpu`; SwiftShader by default, see gpu_env.mjs).
// $STREAMLLM_WASM selects another engine.wasm.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { requireGpu } from './gpu_env.mjs';
import {
  CLI, TESTDATA, ENGINE_WASM, hasTestdata, requireTestdata, readIndex, referenceCase, compareWithReference, readF32, summaryText,
} from './refdata.mjs';
import { Engine } from '../../web/engine/engine.mjs';
import { webgpuBackend } from '../../web/engine/webgpu.mjs';

const wasmArgs = process.env.STREAMLLM_WASM ? ['--wasm', ENGINE_WASM] : [];

function runCli(args, env = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, ...wasmArgs], { encoding: 'buffer', maxBuffer: 1 << 26, env: { ...process.env, ...env } },
      (err, stdout, stderr) => resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr: stderr.toString() }));
  });
}

const dir = mkdtempSync(path.join(tmpdir(), 'sl-gpu-conformance-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function checkLogits(entry, extraArgs = [], env = {}, label = '') {
  const c = referenceCase(entry);
  const toks = path.join(dir, `${entry.name}.tokens`);
  const out = path.join(dir, `${entry.name}${label}.f32`);
  writeFileSync(toks, c.tokens.join('\n') + '\n');
  const r = await runCli(['logits', '--backend', 'webgpu', '-m', entry.model, '--tokens', toks, '-o', out, ...extraArgs], env);
  assert.equal(r.code, 0, `logits exited ${r.code}: ${r.stderr}`);
  const s = compareWithReference(c, readF32(out), entry.tol);
  console.error(`  webgpu${label} ${entry.name.padEnd(28)} rows ${String(s.rows).padStart(3)}  worst nrmse ${s.worst.toPrecision(3)} (row ${s.worstRow})  tolerance ${entry.tol}  top-1 mismatches ${s.top1Bad}`);
  assert.ok(s.worst <= entry.tol, `${entry.name}: worst nrmse ${s.worst} > ${entry.tol} at row ${s.worstRow}`);
  assert.equal(s.top1Bad, 0, `${entry.name}: ${s.top1Bad} rows with a different top-1 token`);
}

if (!hasTestdata()) {
  test('gpu conformance reference data present', (t) => { requireTestdata(t); });
} else {
  const index = readIndex();
  test('a WebGPU adapter is present', async (t) => { await requireGpu(t); });
  for (const entry of index) test(`webgpu logits ${entry.name}`, async (t) => { if (await requireGpu(t)) await checkLogits(entry); });

  // The same positions one token per step: the decode programs, not prefill.
  // One model per weight format and kernel variant (biases and NeoX RoPE:
  // qwen2; a tied head; K-quant mixes); the large-vocabulary ones add time only.
  const decodeModels = ['stories260K-f32', 'stories260K-f16', 'sv-llama-q4_0', 'sv-llama-q8_0', 'sv-llama-q6_k',
    'sv-llama-q4_k_m', 'sv-llama-tied-f32', 'sv-qwen2-f32'];
  async function checkDecode(names, backendOptions = {}, label = '') {
    const backend = await webgpuBackend(backendOptions);
    for (const entry of index.filter((e) => names.includes(e.name))) {
      const engine = await Engine.create({ wasm: ENGINE_WASM,
        backend });
      try {
        const c = referenceCase(entry);
        await engine.load(entry.model, { nCtx: c.tokens.length + 8 });
        const rows = new Float32Array(c.tokens.length * c.V);
        for (let i = 0; i < c.tokens.length; i++) rows.set(await engine.eval([c.tokens[i]]), i * c.V);
        const s = compareWithReference(c, rows, entry.tol);
        console.error(`  webgpu-decode${label} ${entry.name.padEnd(28)} rows ${String(s.rows).padStart(3)}  worst nrmse ${s.worst.toPrecision(3)} (row ${s.worstRow})  tolerance ${entry.tol}  top-1 mismatches ${s.top1Bad}`);
        assert.ok(s.worst <= entry.tol, `${entry.name}: worst nrmse ${s.worst} > ${entry.tol} at row ${s.worstRow}`);
        assert.equal(s.top1Bad, 0, `${entry.name}: ${s.top1Bad} rows with a different top-1 token`);
      } finally {
        engine.free();
      }
    }
  }
  test('webgpu decode logits, one token per step', async (t) => {
    if (await requireGpu(t)) await checkDecode(decodeModels);
  });

  // The weights as stored in the file (no GPU layouts, STREAMLLM_GPU_LAYOUT=raw);
  // the K-quant layouts the default leaves out (STREAMLLM_GPU_LAYOUT=all);
  // and f32 tokens for Q4_0/Q8_0 mat-vecs (STREAMLLM_GPU_INT8=0; the default
  // takes them as int8 where WGSL has dot4I8Packed).
  const layoutModels = ['sv-llama-q4_0', 'sv-llama-q8_0', 'sv-llama-q6_k', 'sv-llama-q4_k_m'];
  test('webgpu decode logits, weights as stored in the file (raw layout)', async (t) => {
    if (await requireGpu(t)) await checkDecode(layoutModels, { layouts: 'raw' }, '-raw');
  });
  test('webgpu decode logits, Q4_K and Q6_K matrices in their GPU layouts too', async (t) => {
    if (await requireGpu(t)) await checkDecode(['sv-llama-q6_k', 'sv-llama-q4_k_m'], { layouts: 'all' }, '-all');
  });
  test('webgpu decode logits, f32 tokens for Q4_0 and Q8_0 mat-vecs', async (t) => {
    if (await requireGpu(t)) await checkDecode(['sv-llama-q4_0', 'sv-llama-q8_0'], { int8: false }, '-f32');
  });

  test('webgpu greedy run stories260K prints the reference text', async (t) => {
    if (!(await requireGpu(t))) return;
    const want = summaryText(path.join(TESTDATA, 'ref/stories260K-f32.summary.txt'));
    assert.ok(want, 'no text line in the summary');
    const r = await runCli(['run', '--backend', 'webgpu', '--temp', '0', '-n', '64', '-p', 'Once upon a time',
      '-m', path.join(TESTDATA, 'models/stories260K.gguf')]);
    assert.equal(r.code, 0, `run exited ${r.code}: ${r.stderr}`);
    assert.equal(r.stdout.toString('utf8'), want);
    assert.match(r.stderr, /^prompt: 5 tokens, [\d.]+ tok\/s; generation: 64 tokens, [\d.]+ tok\/s \(webgpu/m);
  });

  // Every matrix in several bindings (a binding limit of 64 KiB; 1 MiB where
  // one row of logits needs more), logits in several read-backs, prompts in
  // prefill batches of 7 tokens.
  for (const [name, limit] of [['stories260K-f32', 64 << 10], ['sv-llama-q4_k_m', 64 << 10], ['sv-qwen2-f32', 64 << 10],
    ['sv-llama-q6_k', 64 << 10], ['tiny-llama3-bpe-q4_k_m', 4 << 20]]) {
    const entry = index.find((e) => e.name === name);
    if (!entry) continue;
    test(`webgpu logits ${name}, weights split over ${limit >> 10} KiB bindings, batches of 7`, async (t) => {
      if (await requireGpu(t))
        await checkLogits(entry, ['-b', '7', '--ctx', '128'], { STREAMLLM_GPU_MAX_BINDING: String(limit), STREAMLLM_GPU_N_OUT: '5' }, '-split');
    });
  }
}
