#!/usr/bin/env python3
"""check_quant_layouts.py - checks our quant block layouts against gguf-py.

Compares sl_dequantize_row (through tools/quant_oracle_driver.c) with gguf-py's
dequantize on random blocks (random bytes, sane f16 scales) and on blocks our
quantizer made, for every type; and our quantizer with gguf-py's for the
types gguf-py can quantize. Prints the max difference per type and exits 1 if
any exceeds the tolerance. Not run in CI (it needs numpy and gguf-py).

usage: check_quant_layouts.py GGUF_PY_DIR [--cc CC] [--golden]
  GGUF_PY_DIR  the gguf-py directory of a llama.cpp checkout (holds gguf/)
  --golden     also print the golden values embedded in tests/test_quant.c
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ4_NL"]
BLOCK = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20),
         "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34), "Q8_1": (32, 36),
         "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176),
         "Q6_K": (256, 210), "Q8_K": (256, 292), "IQ4_NL": (32, 18)}


def build_driver(tmp, cc):
    exe = os.path.join(tmp, "quant_oracle_driver")
    srcs = [os.path.join(ROOT, "tools", "quant_oracle_driver.c"), os.path.join(ROOT, "src", "util", "common.c")]
    qdir = os.path.join(ROOT, "src", "quant")
    srcs += [os.path.join(qdir, f) for f in sorted(os.listdir(qdir)) if f.endswith(".c")]
    subprocess.run([cc, "-std=c11", "-O2", "-D_DEFAULT_SOURCE", "-I" + os.path.join(ROOT, "src"), *srcs, "-lm", "-o", exe],
                   check=True)
    return exe


def own_dequantize(name, raw):
    """Formats gguf-py cannot dequantize (activation-only), from ggml-common.h."""
    if name == "Q8_1":  # half d, half s, int8 qs[32]
        blocks = raw.reshape(-1, 36)
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        qs = blocks[:, 4:].copy().view(np.int8).astype(np.float32)
        return (d * qs).reshape(-1)
    if name == "Q8_K":  # float d, int8 qs[256], int16 bsums[16]
        blocks = raw.reshape(-1, 292)
        d = blocks[:, 0:4].copy().view(np.float32)
        qs = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (d * qs).reshape(-1)
    raise KeyError(name)


def reference_dequantize(gguf, name, raw):
    if name in ("Q8_1", "Q8_K"):
        return own_dequantize(name, raw), "own numpy"
    qtype = getattr(gguf.GGMLQuantizationType, name)
    if name == "F32":
        return raw.view(np.float32).copy(), "numpy"
    if name == "F16":
        return raw.view(np.float16).astype(np.float32), "numpy"
    return gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(-1), "gguf-py"


def check_bsums(raw):
    blocks = raw.reshape(-1, 292)
    qs = blocks[:, 4:260].copy().view(np.int8).astype(np.int32).reshape(-1, 16, 16).sum(axis=2)
    bsums = blocks[:, 260:].copy().view(np.int16).astype(np.int32)
    return int(np.abs(qs - bsums).max())


def max_rel(a, b):
    scale = max(float(np.abs(b).max()), 1e-30)
    return float(np.abs(a - b).max()) / scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf_py")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--golden", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.gguf_py))
    import gguf  # noqa: E402
    import gguf.quants  # noqa: E402

    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_driver(tmp, args.cc)
        blocks_path, floats_path = os.path.join(tmp, "b.bin"), os.path.join(tmp, "f.bin")

        print("%-7s %-10s %12s %12s %12s   %s" % ("type", "oracle", "random", "quantized", "requant", "notes"))
        for name in TYPES:
            bs, ts = BLOCK[name]
            nblocks = 4096 if bs > 1 else 65536
            results = {}
            notes = []
            for mode in ("random", "quantized"):
                subprocess.run([exe, mode, name, str(nblocks), "12345", blocks_path, floats_path], check=True)
                raw = np.fromfile(blocks_path, dtype=np.uint8)
                ours = np.fromfile(floats_path, dtype=np.float32)
                assert raw.size == nblocks * ts, (name, raw.size)
                ref, oracle = reference_dequantize(gguf, name, raw)
                results[mode] = max_rel(ours, ref)
                if name == "Q8_K" and mode == "quantized":  # random bytes have random bsums
                    bsum_err = check_bsums(raw)
                    failed |= bsum_err != 0
                    notes.append("bsums max err %d" % bsum_err)
            # Quantizer comparison where gguf-py has one: same input, compare dequantized results.
            requant = "-"
            qtype = getattr(gguf.GGMLQuantizationType, name)
            if name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "BF16"):
                rng = np.random.default_rng(7)
                x = rng.standard_normal(nblocks * bs).astype(np.float32)
                x.tofile(floats_path)
                subprocess.run([exe, "quantize", name, floats_path, blocks_path], check=True)
                ours_q = np.fromfile(blocks_path, dtype=np.uint8)
                theirs_q = gguf.quants.quantize(x, qtype).reshape(-1)
                diff_blocks = int((ours_q.reshape(-1, ts) != theirs_q.reshape(-1, ts)).any(axis=1).sum())
                a = gguf.quants.dequantize(ours_q, qtype).reshape(-1)
                b = gguf.quants.dequantize(theirs_q, qtype).reshape(-1)
                requant = "%.3g" % max_rel(a, b)
                notes.append("quantizer: %d/%d blocks differ from gguf-py" % (diff_blocks, nblocks))
            tol = 1e-6
            bad = results["random"] > tol or results["quantized"] > tol
            failed |= bad
            print("%-7s %-10s %12.3g %12.3g %12s   %s%s" % (name, oracle, results["random"], results["quantized"], requant,
                                                         "; ".join(notes), "  <-- FAIL" if bad else ""))

        if args.golden:
            print("\n/* golden values: random blocks, seed 99, 2 blocks (or 64 elements) per type */")
            for name in TYPES:
                bs, ts = BLOCK[name]
                nblocks = 2 if bs > 1 else 64
                subprocess.run([exe, "random", name, str(nblocks), "99", blocks_path, floats_path], check=True)
                raw = np.fromfile(blocks_path, dtype=np.uint8)
                ref, _ = reference_dequantize(gguf, name, raw)
                n = ref.size
                picks = [0, 1, n // 7, n // 3, n // 2, n - 5, n - 1]
                vals = ", ".join("%.9g" % ref[i] for i in picks)
                print('    {SL_TYPE_%s, %.17g, {%s}},' % (name, float(np.sum(ref.astype(np.float64))), vals))
    print("FAILED" if failed else "all layouts agree")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
