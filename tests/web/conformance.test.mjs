// conformance.test.mjs - `node web/cli.mjs` on the wasm CPU backend against
// llama.cpp's reference outputs, as tests/test_conformance.c does for the
// native CLI: the logits of every position under teacher forcing for every
// model in index.tsv, and the exact greedy text of stories260K.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CLI, TESTDATA, hasTestdata, requireTestdata, readIndex, referenceCase, compareWithReference, readF32, summaryText,
} from './refdata.mjs';

function runCli(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'buffer', maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
      resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr: stderr.toString() });
    });
  });
}

const dir = mkdtempSync(path.join(tmpdir(), 'sl-web-conformance-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

if (!hasTestdata()) {
  test('conformance reference data present', (t) => { requireTestdata(t); });
} else {
  for (const entry of readIndex()) {
    test(`wasm cpu logits ${entry.name}`, async () => {
      const c = referenceCase(entry);
      const toks = path.join(dir, `${entry.name}.tokens`);
      const out = path.join(dir, `${entry.name}.f32`);
      writeFileSync(toks, c.tokens.join('\n') + '\n');
      const r = await runCli(['logits', '--backend', 'cpu', '-m', entry.model, '--tokens', toks, '-o', out]);
      assert.equal(r.code, 0, `logits exited ${r.code}: ${r.stderr}`);
      const s = compareWithReference(c, readF32(out), entry.tol);
      console.error(`  ${entry.name.padEnd(28)} rows ${String(s.rows).padStart(3)}  worst nrmse ${s.worst.toPrecision(3)} (row ${s.worstRow})  tolerance ${entry.tol}  top-1 mismatches ${s.top1Bad}`);
      assert.ok(s.worst <= entry.tol, `${entry.name}: worst nrmse ${s.worst} > ${entry.tol} at row ${s.worstRow}`);
      assert.equal(s.top1Bad, 0, `${entry.name}: ${s.top1Bad} rows with a different top-1 token`);
    });
  }

  test('wasm cpu greedy run stories260K prints the reference text', async () => {
    const want = summaryText(path.join(TESTDATA, 'ref/stories260K-f32.summary.txt'));
    assert.ok(want, 'no text line in the summary');
    const r = await runCli(['run', '--backend', 'cpu', '--temp', '0', '-n', '64', '-p', 'Once upon a time',
      '-m', path.join(TESTDATA, 'models/stories260K.gguf')]);
    assert.equal(r.code, 0, `run exited ${r.code}: ${r.stderr}`);
    assert.equal(r.stdout.toString('utf8'), want);
    assert.match(r.stderr, /^prompt: 5 tokens, [\d.]+ tok\/s; generation: 64 tokens, [\d.]+ tok\/s/);
  });

  test('wasm cpu logits -p equals logits --tokens of the same ids', async () => {
    const model = path.join(TESTDATA, 'models/stories260K.gguf');
    const ids = readFileSync(path.join(TESTDATA, 'ref/stories260K-f32.prompt_tokens.txt'), 'utf8');
    const toks = path.join(dir, 'p.tokens');
    writeFileSync(toks, ids);
    const a = await runCli(['logits', '--backend', 'cpu', '-m', model, '-p', 'Once upon a time', '-o', path.join(dir, 'a.f32')]);
    const b = await runCli(['logits', '--backend', 'cpu', '-m', model, '--tokens', toks, '-o', path.join(dir, 'b.f32')]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.deepEqual(readFileSync(path.join(dir, 'a.f32')), readFileSync(path.join(dir, 'b.f32')));
  });
}
