// refdata.mjs - the shared llama.cpp reference data for the node tests
// ($STREAMLLM_TESTDATA, default ../shared/testdata; see its README) and the
// comparison rule of tests/test_conformance.c: per row, nrmse within the
// model's tolerance, and the same top-1 token wherever the reference's
// top-1 margin exceeds 8 x tolerance x rms(ref).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const TESTDATA = path.resolve(process.env.STREAMLLM_TESTDATA || '../shared/testdata');
export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const WASM = path.join(REPO, 'build/wasm/engine.wasm');
// The engine under test: $STREAMLLM_WASM, else the build's.
export const ENGINE_WASM = process.env.STREAMLLM_WASM ? path.resolve(process.env.STREAMLLM_WASM) : WASM;
export const CLI = path.join(REPO, 'web/cli.mjs');

export const hasTestdata = () => existsSync(path.join(TESTDATA, 'index.tsv'));
export const mustHaveTestdata = () => process.env.CI === 'true';

// Skips (loudly) or, under CI=true, fails when the reference data is absent.
export function requireTestdata(t) {
  if (hasTestdata()) return true;
  const msg = `reference data absent at ${TESTDATA} (set STREAMLLM_TESTDATA)`;
  if (mustHaveTestdata()) throw new Error(`CI=true: ${msg}`);
  console.error(`SKIP ${msg}`);
  t.skip(msg);
  return false;
}

// The engine under test built: true; else a loud skip (a failure under CI=true).
export function requireEngineWasm(t) {
  if (existsSync(ENGINE_WASM)) return true;
  const msg = `${ENGINE_WASM} absent (make wasm)`;
  if (process.env.CI === 'true') throw new Error(`CI=true: ${msg}`);
  console.error(`SKIP ${msg}`);
  t.skip(msg);
  return false;
}

// [{ model, ref, tol }] from index.tsv (paths absolute).
export function readIndex() {
  return readFileSync(path.join(TESTDATA, 'index.tsv'), 'utf8').split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split('\t'))
    .filter((f) => f.length >= 3)
    .map(([model, ref, tol]) => ({ model: path.join(TESTDATA, model), ref: path.join(TESTDATA, ref), name: path.basename(ref), tol: Number(tol) }));
}

// Token ids, one per line (gen_tokens.txt: the id before a tab).
export const readIds = (file) => readFileSync(file, 'utf8').split('\n').filter((l) => l.length).map((l) => parseInt(l, 10));

export function readF32(file) {
  const b = readFileSync(file);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

export function compareRow(ours, ref, tol) {
  const V = ref.length;
  let se = 0, sr = 0, bestO = 0, bestR = 0, secondR = 1;
  for (let j = 0; j < V; j++) {
    const d = ours[j] - ref[j];
    se += d * d;
    sr += ref[j] * ref[j];
    if (ours[j] > ours[bestO]) bestO = j;
  }
  if (ref[1] > ref[0]) { bestR = 1; secondR = 0; }
  for (let j = 2; j < V; j++) {
    if (ref[j] > ref[bestR]) { secondR = bestR; bestR = j; } else if (ref[j] > ref[secondR]) secondR = j;
  }
  const rms = Math.sqrt(sr / V);
  const margin = ref[bestR] - ref[secondR];
  return { nrmse: Math.sqrt(se / V) / rms, top1Ok: margin > 8 * tol * rms ? bestO === bestR : true };
}

// The reference's teacher-forcing sequence and expected rows: prompt rows,
// then gen rows 1..n_gen-1; plus gen row 0 (= the last prompt row).
export function referenceCase({ ref }) {
  const prompt = readIds(`${ref}.prompt_tokens.txt`);
  const gen = readIds(`${ref}.gen_tokens.txt`);
  const pref = readF32(`${ref}.prompt_logits.f32`);
  const gref = readF32(`${ref}.gen_logits.f32`);
  const V = pref.length / prompt.length;
  return { prompt, gen, V, tokens: [...prompt, ...gen.slice(0, -1)], pref, gref };
}

// Compares [rows][V] logits with the reference; returns { worst, worstRow, top1Bad, rows }.
export function compareWithReference(c, ours, tol) {
  const { prompt, gen, V, pref, gref } = c;
  const rows = prompt.length + gen.length - 1;
  if (ours.length !== rows * V) throw new Error(`got ${ours.length} floats, expected ${rows} x ${V}`);
  let worst = 0, worstRow = -1, top1Bad = 0;
  const check = (r, ref) => {
    const s = compareRow(ours.subarray(r * V, (r + 1) * V), ref, tol);
    if (s.nrmse > worst) { worst = s.nrmse; worstRow = r; }
    if (!s.top1Ok) top1Bad++;
  };
  for (let r = 0; r < rows; r++) check(r, r < prompt.length ? pref.subarray(r * V, (r + 1) * V) : gref.subarray((r - prompt.length + 1) * V, (r - prompt.length + 2) * V));
  check(prompt.length - 1, gref.subarray(0, V));
  return { worst, worstRow, top1Bad, rows };
}

// The "text:" line of a summary, unescaped (\n, \t, \", \\).
export function summaryText(file) {
  const s = readFileSync(file, 'utf8');
  const i = s.indexOf('\ntext: "');
  if (i < 0) return null;
  const body = s.slice(i + 8, s.lastIndexOf('"'));
  return body.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
}
