// cpu_kernels.test.mjs - the wasm SIMD128 CPU kernels (src/quant/quant_wasm.c,
// src/cpu/gemm_wasm.c) against the scalar reference: tests/test_cpu_kernels.c
// compiled to wasm32-wasi with clang-14 (as `make wasm` compiles the core),
// and with clang-16 -mrelaxed-simd (as the relaxed build does), and run
// under node:wasi. Each is skipped when its compiler is absent.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REPO } from './refdata.mjs';

function has(cc) {
  try {
    execFileSync(cc, ['--version'], { stdio: 'ignore' });
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

// Compiles test_cpu_kernels.c with the core for wasm32-wasi, then runs it in
// a child Node with each of V8's two compilers (they have had different
// bugs in SIMD code: see src/cpu/gemm_wasm.c); returns the last stdout
// after checking each run's summary.
async function buildAndRun(name, cc, ccFlags, nodeFlags) {
  const stub = path.join(dir, 'no_files.c');
  writeFileSync(stub, '#include "gguf/gguf.h"\n' +
    'sl_gguf *sl_gguf_open_file(const char *path, sl_error *err) { (void)path; sl_err(err, "no files in this test"); return NULL; }\n');
  const wasm = path.join(dir, `${name}.wasm`);
  await new Promise((resolve, reject) => {
    execFile(cc, ['--target=wasm32-wasi', '-std=c11', '-O2', '-msimd128', ...ccFlags, '-Wall', '-Wextra', '-Werror',
      `-I${path.join(REPO, 'src')}`, `-I${path.join(REPO, 'tests')}`, path.join(REPO, 'tests/test_cpu_kernels.c'),
      ...coreSources(), stub, '-Wl,-z,stack-size=1048576', '-o', wasm], { maxBuffer: 1 << 24 },
    (err, stdout, stderr) => (err ? reject(new Error(`${cc}: ${stderr}`)) : resolve()));
  });
  const runner = path.join(dir, `${name}.mjs`);
  writeFileSync(runner, `import { WASI } from 'node:wasi'; import { readFileSync } from 'node:fs';
    const wasi = new WASI({ version: 'preview1', args: ['test_cpu_kernels'], env: {}, returnOnExit: true });
    const m = await WebAssembly.compile(readFileSync(${JSON.stringify(wasm)}));
    const i = await WebAssembly.instantiate(m, { wasi_snapshot_preview1: wasi.wasiImport });
    process.exitCode = wasi.start(i);`);
  let out = '';
  for (const tier of ['--liftoff-only', '--no-liftoff']) {
    // in a child: the summary line is read from its stdout
    const child = await new Promise((resolve) => {
      execFile(process.execPath, ['--no-warnings', ...nodeFlags, tier, runner], { maxBuffer: 1 << 24 }, (err, stdout, stderr) =>
        resolve({ code: err ? err.code ?? 1 : 0, stdout: stdout.toString(), stderr: stderr.toString() }));
    });
    out = child.stdout;
    const summary = /(\d+) passed, (\d+) failed/.exec(out);
    assert.ok(summary, `${tier}: no summary line: ${out}\n${child.stderr}`);
    assert.equal(Number(summary[2]), 0, `${tier}: failures:\n${child.stderr}`);
    assert.ok(Number(summary[1]) > 0);
    assert.equal(child.code, 0, child.stderr);
  }
  return out;
}

test('wasm SIMD128 kernels against the scalar reference (test_cpu_kernels.c in wasm)', { skip: has('clang-14') ? false : 'clang-14 absent' }, async () => {
  const out = await buildAndRun('simd128', 'clang-14', [], []);
  assert.match(out, /quant backend: simd128/);
  assert.match(out, /gemm kernels: simd128\n/);
});

// The relaxed-SIMD build (engine-relaxed.wasm): clang-16, and Node 20 needs
// a flag for the instructions (Chrome >= 114 has them on).
test('wasm relaxed-SIMD kernels against the scalar reference', { skip: has('clang-16') ? false : 'clang-16 absent (apt-get install clang-16 lld-16 libclang-rt-16-dev-wasm32)' }, async () => {
  const out = await buildAndRun('relaxed', 'clang-16', ['-mrelaxed-simd'], ['--experimental-wasm-relaxed-simd']);
  assert.match(out, /quant backend: simd128/);
  assert.match(out, /gemm kernels: simd128-relaxed\n/);
});
