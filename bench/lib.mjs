// bench/lib.mjs - what the Node benchmarks (gpu.mjs, wasm.mjs) share: the
// median of runs, and the same pseudo-random prompt tokens for every run.

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// n token ids below nVocab from a fixed LCG (llama-bench feeds random tokens too).
export function benchTokens(nVocab, n) {
  const toks = [];
  let state = 12345;
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    toks.push((state >>> 8) % nVocab);
  }
  return toks;
}
