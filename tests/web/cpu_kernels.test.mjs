// cpu_kernels.test.mjs - the wasm SIMD128 CPU kernels (src/quant/quant_wasm.c,
// src/cpu/gemm_wasm.c) against the scalar reference: tests/test_cpu_kernels.c
// compiled to wasm32-wasi with clang-14 (as `make wasm` compiles the core)
// and run under node:wasi. Skipped when clang-14 is absent.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO } from './refdata.mjs';

function hasClang() {
  try {
    execFileSync('clang-14', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// The portable core as the wasm build compiles it (minus the native-only
// files) plus the wasm thread pool; model.c's file opening gets a stand-in.
function coreSources() {
  const out = [];
  for (const dir of ['util', 'gguf', 'quant', 'tokenizer', 'model', 'cpu', 'sampler']) {
    for (const f of readdirSync(path.join(REPO, 'src', dir)).sort()) {
      if (!f.endsWith('.c') || f === 'threadpool.c' || f === 'gguf_file.c') continue;
      out.push(path.join(REPO, 'src', dir, f));
    }
  }
  out.push(path.join(REPO, 'src/wasm/threadpool_wasm.c'));
  return out;
}

const dir = mkdtempSync(path.join(tmpdir(), 'sl-cpu-kernels-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('wasm SIMD128 kernels against the scalar reference (test_cpu_kernels.c in wasm)', { skip: hasClang() ? false : 'clang-14 absent' }, async () => {
  const stub = path.join(dir, 'no_files.c');
  writeFileSync(stub, '#include "gguf/gguf.h"\n' +
    'sl_gguf *sl_gguf_open_file(const char *path, sl_error *err) { (void)path; sl_err(err, "no files in this test"); return NULL; }\n');
  const wasm = path.join(dir, 'test_cpu_kernels.wasm');
  await new Promise((resolve, reject) => {
    execFile('clang-14', ['--target=wasm32-wasi', '-std=c11', '-O2', '-msimd128', '-Wall', '-Wextra', '-Werror',
      `-I${path.join(REPO, 'src')}`, `-I${path.join(REPO, 'tests')}`, path.join(REPO, 'tests/test_cpu_kernels.c'),
      ...coreSources(), stub, '-Wl,-z,stack-size=1048576', '-o', wasm], { maxBuffer: 1 << 24 },
    (err, stdout, stderr) => (err ? reject(new Error(`clang-14: ${stderr}`)) : resolve()));
  });
  // run in a child: the summary line is read from its stdout
  const runner = path.join(dir, 'run.mjs');
  writeFileSync(runner, `import { WASI } from 'node:wasi'; import { readFileSync } from 'node:fs';
    const wasi = new WASI({ version: 'preview1', args: ['test_cpu_kernels'], env: {}, returnOnExit: true });
    const m = await WebAssembly.compile(readFileSync(${JSON.stringify(wasm)}));
    const i = await WebAssembly.instantiate(m, { wasi_snapshot_preview1: wasi.wasiImport });
    process.exitCode = wasi.start(i);`);
  const child = await new Promise((resolve) => {
    execFile(process.execPath, ['--no-warnings', runner], { maxBuffer: 1 << 24 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code ?? 1 : 0, stdout: stdout.toString(), stderr: stderr.toString() }));
  });
  const out = child.stdout;
  const summary = /(\d+) passed, (\d+) failed/.exec(out);
  assert.ok(summary, `no summary line: ${out}\n${child.stderr}`);
  assert.match(out, /quant backend: simd128/);
  assert.equal(Number(summary[2]), 0, `failures:\n${child.stderr}`);
  assert.ok(Number(summary[1]) > 0);
  assert.equal(child.code, 0, child.stderr);
});
