/* kernels.c - WGSL kernels generated from templates (see kernels.h).
 *
 * A kernel's text is a shared prelude (step uniform, byte readers), the
 * weight format's 8-element decoder when it reads weights, and the op's body
 * with its shapes baked in as constants. Identical descriptors give identical
 * text, so the engine can share pipelines between layers. */
#include "gpu/kernels.h"

#include "gpu/layout.h"
#include "quant/quant_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- text builder -------------------------------------------------------- */

typedef struct text {
    char *s;
    size_t len, cap;
    bool oom;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    if (t->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->oom = true;
        return;
    }
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t nc = t->cap ? t->cap : 4096;
        while (nc < t->len + (size_t)n + 1) nc *= 2;
        char *ns = realloc(t->s, nc);
        if (!ns) {
            t->oom = true;
            return;
        }
        t->s = ns;
        t->cap = nc;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* A WGSL f32 literal that reads back as exactly v (v finite). */
static const char *flt(char buf[32], float v) {
    snprintf(buf, 32, "%.9gf", (double)v);
    return buf;
}

/* ---- formats ------------------------------------------------------------- */

bool sl_gpu_type_supported(sl_type t) {
    switch (t) {
    case SL_TYPE_F32: case SL_TYPE_F16: case SL_TYPE_BF16: case SL_TYPE_Q4_0: case SL_TYPE_Q4_1:
    case SL_TYPE_Q5_0: case SL_TYPE_Q5_1: case SL_TYPE_Q8_0: case SL_TYPE_Q2_K: case SL_TYPE_Q3_K:
    case SL_TYPE_Q4_K: case SL_TYPE_Q5_K: case SL_TYPE_Q6_K: case SL_TYPE_IQ4_NL:
        return true;
    default:
        return false;
    }
}

/* Helpers every decoder shares (emitted once per kernel). */
static const char *WEIGHT_COMMON =
    "struct W8 { a: vec4<f32>, b: vec4<f32> };\n"
    "const SH4 = vec4<u32>(0u, 8u, 16u, 24u);\n"
    "const SH1 = vec4<u32>(0u, 1u, 2u, 3u);\n"
    /* four byte-spaced fields of m bits at bit s of each byte of q */
    "fn bits(q: u32, s: u32, m: u32) -> vec4<f32> { return vec4<f32>((vec4<u32>(q) >> (SH4 + vec4<u32>(s))) & vec4<u32>(m)); }\n"
    "fn nib(q: u32, s: u32) -> vec4<f32> { return bits(q, s, 15u); }\n"
    /* four consecutive bits s..s+3 of q */
    "fn bit4(q: u32, s: u32) -> vec4<f32> { return vec4<f32>((vec4<u32>(q) >> (SH1 + vec4<u32>(s))) & vec4<u32>(1u)); }\n"
    "fn i8x4(q: u32) -> vec4<f32> { return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(q) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u)); }\n"
    "fn bf2(q: u32) -> vec2<f32> { return vec2<f32>(bitcast<f32>(q << 16u), bitcast<f32>(q & 0xffff0000u)); }\n";

/* Readers of the weight buffer W (array<u32>) at byte offsets; every offset
 * the decoders use for 16- and 32-bit fields is even. */
static const char *WEIGHT_READERS =
    "fn wb(o: u32) -> u32 { return (W[o >> 2u] >> ((o & 3u) << 3u)) & 0xffu; }\n"
    "fn wh(o: u32) -> u32 { return (W[o >> 2u] >> ((o & 2u) << 3u)) & 0xffffu; }\n"
    "fn ww(o: u32) -> u32 {\n"
    "  let i = o >> 2u;\n"
    "  if ((o & 2u) == 0u) { return W[i]; }\n"
    "  return (W[i] >> 16u) | (W[i + 1u] << 16u);\n"
    "}\n"
    "fn wf(o: u32) -> f32 { return unpack2x16float(wh(o)).x; }\n"
    /* the same as ww without a branch (invocations at both alignments in a subgroup) */
    "fn wu(o: u32) -> u32 {\n"
    "  let i = o >> 2u; let a = W[i]; let b = W[i + 1u];\n"
    "  return select((a >> 16u) | (b << 16u), a, (o & 2u) == 0u);\n"
    "}\n";

/* Readers of a weight buffer in a GPU layout (array<vec4<u32>>): u32 word i,
 * f16 number i. */
static const char *LAYOUT_READERS =
    "fn wd(i: u32) -> u32 { return W[i >> 2u][i & 3u]; }\n"
    "fn wdh(i: u32) -> f32 { return unpack2x16float(wd(i >> 1u))[i & 1u]; }\n";

/* fn w8(o, e) of a format in its GPU layout (gpu/layout.h): o is the byte
 * offset of the row as stored in the file (a multiple of the block size:
 * o / block bytes is the row's first block), NB the chunk's block count. */
static int put_layout_decoder_body(text *t, sl_type type) {
    put(t, "%s", LAYOUT_READERS);
    switch (type) {
    case SL_TYPE_Q4_0: /* [NB] 16 quant bytes | [NB] f16 d */
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o / 18u + (e >> 5u); let j = e & 31u;\n"
               "  let q = W[b]; let d = wdh(NB * 8u + b);\n"
               "  let k = (j & 15u) >> 2u; let s = (j >> 4u) * 4u;\n"
               "  return W8((nib(q[k], s) - 8.0) * d, (nib(q[k + 1u], s) - 8.0) * d);\n}\n");
        return 0;
    case SL_TYPE_Q8_0: /* [2][NB] 16 quant bytes | [NB] f16 d */
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o / 34u + (e >> 5u); let j = e & 31u;\n"
               "  let q = W[(j >> 4u) * NB + b]; let d = wdh(NB * 16u + b); let k = (j & 15u) >> 2u;\n"
               "  return W8(i8x4(q[k]) * d, i8x4(q[k + 1u]) * d);\n}\n");
        return 0;
    case SL_TYPE_Q4_K: /* [4][2 NB] 16 bytes of half blocks | [NB] d, dmin, scales */
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o / 144u + (e >> 8u); let j = e & 255u; let sb = j >> 5u;\n"
               "  let jj = j & 127u; let g = jj >> 6u; let l = jj & 31u; let p = 32u * g + l;\n"
               "  let q = W[(p >> 4u) * 2u * NB + 2u * b + (j >> 7u)]; let k = (p >> 2u) & 3u;\n"
               "  let S = W[NB * 8u + b];\n"
               "  let i = sb & 3u;\n"
               "  let y = (S.y >> (8u * i)) & 255u; let z = (S.z >> (8u * i)) & 255u; let w = (S.w >> (8u * i)) & 255u;\n"
               "  var sc = y & 63u; var mn = z & 63u;\n"
               "  if (sb >= 4u) { sc = (w & 15u) | ((y >> 6u) << 4u); mn = (w >> 4u) | ((z >> 6u) << 4u); }\n"
               "  let dm = unpack2x16float(S.x); let dl = dm.x * f32(sc); let ml = dm.y * f32(mn);\n"
               "  let s = ((jj >> 5u) & 1u) * 4u;\n"
               "  return W8(nib(q[k], s) * dl - ml, nib(q[k + 1u], s) * dl - ml);\n}\n");
        return 0;
    case SL_TYPE_Q6_K: /* [6][2 NB] 16 bytes of half blocks (64 ql, 32 qh) | [NB] 16 scales | [NB] f16 d */
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o / 210u + (e >> 8u); let j = e & 255u; let u = 2u * b + (j >> 7u); let nu = 2u * NB;\n"
               "  let jj = j & 127u; let k = jj >> 5u; let l = jj & 31u; let p = l + 32u * (k & 1u);\n"
               "  let ql = W[(p >> 4u) * nu + u]; let qh = W[(4u + (l >> 4u)) * nu + u];\n"
               "  let c = (p >> 2u) & 3u; let ch = (l >> 2u) & 3u;\n"
               "  let si = 8u * (j >> 7u) + (l >> 4u) + 2u * k;\n"
               "  let sv = (W[NB * 12u + b][si >> 2u] >> (8u * (si & 3u))) & 255u;\n"
               "  let dl = wdh(NB * 104u + b) * f32(bitcast<i32>(sv << 24u) >> 24u);\n"
               "  let sl = 4u * (k >> 1u); let sh = 2u * k;\n"
               "  let l0 = nib(ql[c], sl) + 16.0 * bits(qh[ch], sh, 3u) - 32.0;\n"
               "  let l1 = nib(ql[c + 1u], sl) + 16.0 * bits(qh[ch + 1u], sh, 3u) - 32.0;\n"
               "  return W8(l0 * dl, l1 * dl);\n}\n");
        return 0;
    default:
        return -1;
    }
}

/* fn w8(o, e): elements e..e+7 of the row starting at byte o (e % 8 == 0). */
static int put_decoder_body(text *t, sl_type type, uint32_t cols, const sl_gpu_layout *lay) {
    if (lay) return put_layout_decoder_body(t, type);
    put(t, "%s", WEIGHT_READERS);
    bool ragged = cols % 8 != 0; /* only float formats can have such rows */
    switch (type) {
    case SL_TYPE_F32:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let i = (o >> 2u) + e;\n"
               "  var v = W8(vec4<f32>(bitcast<f32>(W[i]), bitcast<f32>(W[i + 1u]), bitcast<f32>(W[i + 2u]), bitcast<f32>(W[i + 3u])),\n"
               "             vec4<f32>(bitcast<f32>(W[i + 4u]), bitcast<f32>(W[i + 5u]), bitcast<f32>(W[i + 6u]), bitcast<f32>(W[i + 7u])));\n");
        break;
    case SL_TYPE_F16:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let p = o + e * 2u;\n"
               "  var v = W8(vec4<f32>(unpack2x16float(ww(p)), unpack2x16float(ww(p + 4u))),\n"
               "             vec4<f32>(unpack2x16float(ww(p + 8u)), unpack2x16float(ww(p + 12u))));\n");
        break;
    case SL_TYPE_BF16:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let p = o + e * 2u;\n"
               "  var v = W8(vec4<f32>(bf2(ww(p)), bf2(ww(p + 4u))), vec4<f32>(bf2(ww(p + 8u)), bf2(ww(p + 12u))));\n");
        break;
    case SL_TYPE_Q4_0:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o + (e >> 5u) * 18u; let j = e & 31u;\n"
               "  let d = wf(b); let s = (j >> 4u) * 4u; let q = b + 2u + (j & 15u);\n"
               "  return W8((nib(ww(q), s) - 8.0) * d, (nib(ww(q + 4u), s) - 8.0) * d);\n}\n");
        return 0;
    case SL_TYPE_Q4_1:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o + (e >> 5u) * 20u; let j = e & 31u;\n"
               "  let d = wf(b); let m = wf(b + 2u); let s = (j >> 4u) * 4u; let q = b + 4u + (j & 15u);\n"
               "  return W8(nib(ww(q), s) * d + m, nib(ww(q + 4u), s) * d + m);\n}\n");
        return 0;
    case SL_TYPE_Q5_0:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o + (e >> 5u) * 22u; let j = e & 31u;\n"
               "  let d = wf(b); let qh = ww(b + 2u); let s = (j >> 4u) * 4u; let q = b + 6u + (j & 15u);\n"
               "  return W8((nib(ww(q), s) + 16.0 * bit4(qh, j) - 16.0) * d,\n"
               "            (nib(ww(q + 4u), s) + 16.0 * bit4(qh, j + 4u) - 16.0) * d);\n}\n");
        return 0;
    case SL_TYPE_Q5_1:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o + (e >> 5u) * 24u; let j = e & 31u;\n"
               "  let d = wf(b); let m = wf(b + 2u); let qh = ww(b + 4u); let s = (j >> 4u) * 4u; let q = b + 8u + (j & 15u);\n"
               "  return W8((nib(ww(q), s) + 16.0 * bit4(qh, j)) * d + m,\n"
               "            (nib(ww(q + 4u), s) + 16.0 * bit4(qh, j + 4u)) * d + m);\n}\n");
        return 0;
    case SL_TYPE_Q8_0:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o + (e >> 5u) * 34u; let j = e & 31u; let d = wf(b);\n"
               "  return W8(i8x4(ww(b + 2u + j)) * d, i8x4(ww(b + 6u + j)) * d);\n}\n");
        return 0;
    case SL_TYPE_IQ4_NL: {
        put(t, "var<private> IQ4: array<f32, 16> = array<f32, 16>(");
        for (int i = 0; i < 16; i++) put(t, "%s%d.0", i ? ", " : "", sl_iq4nl_values[i]);
        put(t, ");\n"
               "fn iq4(q: u32, s: u32) -> vec4<f32> {\n"
               "  let i = (vec4<u32>(q) >> (SH4 + vec4<u32>(s))) & vec4<u32>(15u);\n"
               "  return vec4<f32>(IQ4[i.x], IQ4[i.y], IQ4[i.z], IQ4[i.w]);\n}\n"
               "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o + (e >> 5u) * 18u; let j = e & 31u;\n"
               "  let d = wf(b); let s = (j >> 4u) * 4u; let q = b + 2u + (j & 15u);\n"
               "  return W8(iq4(ww(q), s) * d, iq4(ww(q + 4u), s) * d);\n}\n");
        return 0;
    }
    case SL_TYPE_Q2_K:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o + (e >> 8u) * 84u; let j = e & 255u;\n"
               "  let sc = wb(b + (j >> 4u));\n"
               "  let dl = wf(b + 80u) * f32(sc & 15u); let ml = wf(b + 82u) * f32(sc >> 4u);\n"
               "  let q = b + 16u + (j >> 7u) * 32u + (j & 31u); let s = ((j >> 5u) & 3u) * 2u;\n"
               "  return W8(bits(ww(q), s, 3u) * dl - ml, bits(ww(q + 4u), s, 3u) * dl - ml);\n}\n");
        return 0;
    case SL_TYPE_Q3_K:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o + (e >> 8u) * 110u; let j = e & 255u; let sb = j >> 4u;\n"
               "  let lv = wb(b + 96u + (sb & 7u));\n"
               "  let lo = select(lv >> 4u, lv & 15u, sb < 8u);\n"
               "  let hi = (wb(b + 104u + (sb & 3u)) >> ((sb >> 2u) * 2u)) & 3u;\n"
               "  let dl = wf(b + 108u) * f32(i32(lo | (hi << 4u)) - 32);\n"
               "  let l = j & 31u; let q = b + 32u + (j >> 7u) * 32u + l; let s = ((j >> 5u) & 3u) * 2u;\n"
               "  let hs = j >> 5u;\n"
               "  let l0 = bits(ww(q), s, 3u) - 4.0 * (1.0 - bits(ww(b + l), hs, 1u));\n"
               "  let l1 = bits(ww(q + 4u), s, 3u) - 4.0 * (1.0 - bits(ww(b + l + 4u), hs, 1u));\n"
               "  return W8(l0 * dl, l1 * dl);\n}\n");
        return 0;
    case SL_TYPE_Q4_K:
    case SL_TYPE_Q5_K: {
        bool q5 = type == SL_TYPE_Q5_K;
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o + (e >> 8u) * %uu; let j = e & 255u; let sb = j >> 5u;\n"
               "  var sc: u32; var mn: u32;\n"
               "  if (sb < 4u) { sc = wb(b + 4u + sb) & 63u; mn = wb(b + 8u + sb) & 63u; }\n"
               "  else { let x = wb(b + 8u + sb); sc = (x & 15u) | ((wb(b + sb) >> 6u) << 4u); mn = (x >> 4u) | ((wb(b + 4u + sb) >> 6u) << 4u); }\n"
               "  let dl = wf(b) * f32(sc); let ml = wf(b + 2u) * f32(mn);\n"
               "  let l = j & 31u; let q = b + %uu + (j >> 6u) * 32u + l; let s = ((j >> 5u) & 1u) * 4u;\n",
            q5 ? 176u : 144u, q5 ? 48u : 16u);
        if (q5)
            put(t, "  let l0 = nib(ww(q), s) + 16.0 * bits(ww(b + 16u + l), sb, 1u);\n"
                   "  let l1 = nib(ww(q + 4u), s) + 16.0 * bits(ww(b + 20u + l), sb, 1u);\n");
        else
            put(t, "  let l0 = nib(ww(q), s); let l1 = nib(ww(q + 4u), s);\n");
        put(t, "  return W8(l0 * dl - ml, l1 * dl - ml);\n}\n");
        return 0;
    }
    case SL_TYPE_Q6_K:
        put(t, "fn w8(o: u32, e: u32) -> W8 {\n"
               "  let b = o + (e >> 8u) * 210u; let j = e & 255u;\n"
               "  let h = j >> 7u; let k = (j >> 5u) & 3u; let l = j & 31u;\n"
               "  let ql = b + h * 64u + (k & 1u) * 32u + l; let qh = b + 128u + h * 32u + l;\n"
               "  let sl = (k >> 1u) * 4u; let sh = k * 2u;\n"
               "  let sv = wb(b + 192u + (j >> 4u));\n"
               "  let dl = wf(b + 208u) * f32(bitcast<i32>(sv << 24u) >> 24u);\n"
               "  let l0 = nib(ww(ql), sl) + 16.0 * bits(ww(qh), sh, 3u) - 32.0;\n"
               "  let l1 = nib(ww(ql + 4u), sl) + 16.0 * bits(ww(qh + 4u), sh, 3u) - 32.0;\n"
               "  return W8(l0 * dl, l1 * dl);\n}\n");
        return 0;
    default:
        return -1;
    }
    /* float formats: mask the elements past the end of a ragged row */
    if (ragged)
        put(t, "  let idx = vec4<u32>(e) + SH1;\n"
               "  v.a = select(vec4<f32>(0.0), v.a, idx < vec4<u32>(COLS));\n"
               "  v.b = select(vec4<f32>(0.0), v.b, idx + vec4<u32>(4u) < vec4<u32>(COLS));\n");
    put(t, "  return v;\n}\n");
    return 0;
}

/* The decoder of a matrix in array `arr` as fn w8<sfx>(o, e), with its
 * readers renamed alike, so one kernel can read matrices of several formats.
 * WEIGHT_COMMON must precede it, once. */
static int put_decoder_as(text *t, sl_type type, uint32_t cols, const sl_gpu_layout *lay, const char *arr,
                          const char *sfx) {
    text body = {0};
    int rc = put_decoder_body(&body, type, cols, lay);
    if (body.oom || rc) {
        free(body.s);
        t->oom = t->oom || body.oom;
        return rc ? rc : -1;
    }
    /* identifiers of the body that name the array or its readers */
    static const char *const from[] = {"W[", "NB", "wb(", "wh(", "ww(", "wf(", "w8(", "iq4(", "wu(", "wd(", "wdh(", "IQ4"};
    const size_t n_from = sizeof from / sizeof from[0];
    for (const char *c = body.s; *c;) {
        /* the text up to the next identifier to rename goes as it is */
        size_t run = 0, k = n_from;
        for (; c[run]; run++) {
            for (k = 0; k < n_from && strncmp(c + run, from[k], strlen(from[k])); k++) {}
            if (k < n_from) break;
        }
        put(t, "%.*s", (int)run, c);
        c += run;
        if (k == n_from) break;
        if (k == 0) put(t, "%s[", arr);
        else if (k == 1) put(t, "NB%s", sfx);
        else if (k == n_from - 1) put(t, "IQ4%s", sfx);
        else put(t, "%.*s%s(", (int)strlen(from[k]) - 1, from[k], sfx);
        c += strlen(from[k]);
    }
    free(body.s);
    return 0;
}

static int put_decoder(text *t, sl_type type, uint32_t cols, const sl_gpu_layout *lay) {
    put(t, "%s", WEIGHT_COMMON);
    return put_decoder_body(t, type, cols, lay);
}

/* The layout a kernel reads a matrix of type t in (NULL: as in the file). */
static const sl_gpu_layout *kernel_layout(const sl_gpu_kernel_desc *d, sl_type t) {
    return sl_gpu_layout_for(t, d->layouts);
}

/* The element type of a weight binding. */
static const char *w_elem(const sl_gpu_layout *lay) { return lay ? "vec4<u32>" : "u32"; }

/* Activations are all in one buffer (the plan's arena), and WebGPU forbids a
 * buffer bound both read-only and writable in one dispatch: every activation
 * binding is declared read_write, even when the kernel only reads it. */

/* ---- shared pieces ------------------------------------------------------- */

/* The kernels that read or write the K/V caches; with kv_f16 these hold f16. */
static bool kv_is_f16(const sl_gpu_kernel_desc *d) {
    return d->kv_f16 &&
           (d->kernel == SL_GK_ROPE_KV || d->kernel == SL_GK_ATTN_DECODE || d->kernel == SL_GK_ATTN_PREFILL ||
            d->kernel == SL_GK_QKV);
}

/* The caches' element type, and the conversions from f32 (for storing) and
 * to f32 (for reading): empty when the caches are f32. */
static const char *kv_type(const sl_gpu_kernel_desc *d) { return kv_is_f16(d) ? "f16" : "f32"; }
static const char *kv_store(const sl_gpu_kernel_desc *d) { return kv_is_f16(d) ? "f16" : ""; }
static const char *kv_load(const sl_gpu_kernel_desc *d) { return kv_is_f16(d) ? "f32" : ""; }

static void put_prelude(text *t, const sl_gpu_kernel_desc *d) {
    /* "enable subgroups;" first: the bridge's statistics look for it there */
    if (d->subgroups) put(t, "enable subgroups;\n");
    if (kv_is_f16(d)) put(t, "enable f16;\n");
    if (d->subgroups) put(t, "var<private> g_lane: u32;\nvar<private> g_sid: u32;\nvar<private> g_nsg: u32;\nvar<private> g_sgs: u32;\n");
    put(t, "struct Step { n_tokens: u32, pos0: u32, n_kv: u32, pad: u32 };\n"
           "@group(0) @binding(0) var<uniform> step: Step;\n");
}

/* fn(lid, v): the sum or max of v over the workgroup, returned to every
 * invocation, which must all reach it (uniform control flow). With
 * subgroups: one value per subgroup in red[subgroup_id], added in a fixed
 * order (deterministic); else a tree in workgroup memory. */
static void put_reduce(text *t, const sl_gpu_kernel_desc *d, const char *fn, bool is_max) {
    const char *op = is_max ? "max(a, b)" : "a + b";
    put(t, "fn %s_op(a: f32, b: f32) -> f32 { return %s; }\n", fn, op);
    if (d->subgroups) {
        put(t, "fn %s(lid: u32, v: f32) -> f32 {\n"
               "  let s = %s(v);\n"
               "  if (g_lane == 0u) { red[g_sid] = s; }\n"
               "  workgroupBarrier();\n"
               "  var r = red[0];\n"
               "  for (var i = 1u; i < g_nsg; i++) { r = %s_op(r, red[i]); }\n"
               "  workgroupBarrier();\n"
               "  return r;\n"
               "}\n",
            fn, is_max ? "subgroupMax" : "subgroupAdd", fn);
        return;
    }
    put(t, "fn %s(lid: u32, v: f32) -> f32 {\n"
           "  red[lid] = v;\n"
           "  workgroupBarrier();\n"
           "  for (var s = WG / 2u; s > 0u; s >>= 1u) {\n"
           "    if (lid < s) { red[lid] = %s_op(red[lid], red[lid + s]); }\n"
           "    workgroupBarrier();\n"
           "  }\n"
           "  let r = red[0];\n"
           "  workgroupBarrier();\n"
           "  return r;\n"
           "}\n",
        fn, fn);
}

/* The entry point's header; with subgroups it records the invocation's
 * place for the reductions. */
static void put_main(text *t, const sl_gpu_kernel_desc *d, const char *wg_size) {
    put(t, "@compute @workgroup_size(%s)\n"
           "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,\n"
           "        @builtin(local_invocation_index) lid: u32%s) {\n",
        wg_size,
        d->subgroups ? ",\n        @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_id) sg_id: u32,\n"
                       "        @builtin(num_subgroups) sg_n: u32, @builtin(subgroup_size) sg_size: u32"
                     : "");
    if (d->subgroups) put(t, "  g_lane = sg_lane; g_sid = sg_id; g_nsg = sg_n; g_sgs = sg_size;\n");
}

/* The epilogue: writes v, the result for Y[idx] of matrix row gr. */
static void put_epilogue(text *t, sl_gpu_epilogue epi, const char *idx, const char *gr, const char *indent) {
    switch (epi) {
    case SL_EPI_NONE: put(t, "%sY[%s] = v;\n", indent, idx); break;
    case SL_EPI_BIAS: put(t, "%sY[%s] = v + A[%s];\n", indent, idx, gr); break;
    case SL_EPI_ADD: put(t, "%sY[%s] = Y[%s] + v;\n", indent, idx, idx); break;
    case SL_EPI_SILU_MUL:
        put(t, "%s{ let g = A[%s]; Y[%s] = g / (1.0 + exp(-g)) * v; }\n", indent, idx, idx);
        break;
    }
}

static void put_weight_consts(text *t, const sl_gpu_kernel_desc *d) {
    put(t, "const COLS: u32 = %uu;\nconst NROWS: u32 = %uu;\nconst ROW0: u32 = %uu;\n"
           "const ROW_BYTES: u32 = %uu;\nconst OUT_STRIDE: u32 = %uu;\n",
        d->cols, d->rows, d->row0, (uint32_t)sl_row_size(d->type, d->cols), d->out_stride);
    const sl_gpu_layout *lay = kernel_layout(d, d->type);
    if (lay) put(t, "const NB: u32 = %uu;\n", d->rows * (d->cols / lay->block_elems));
    put(t, "@group(0) @binding(1) var<storage, read> W: array<%s>;\n", w_elem(lay));
}

/* ---- ops ----------------------------------------------------------------- */

/* ---- mat-vec (decode) ---------------------------------------------------- */

/* Rows are read in units taken by consecutive invocations, so that a
 * subgroup's loads are contiguous: in a GPU layout (gpu/layout.h) a unit is
 * a block (Q4_0, Q8_0: 32 elements, one or two 16-byte words) or a half block
 * (Q4_K, Q6_K: 128 elements, 4 or 6 words), and consecutive units of a row
 * are consecutive words of the layout's word-major region. As stored in the
 * file (other formats, or not in `layouts`), a unit is 8 elements (Q6_K: 16): for
 * Q4_0, Q8_0, Q4_K and Q6_K laid out as the block stores them (Q4_0: 4
 * elements from the low nibbles of one quant word and 4 from its high
 * nibbles), for other formats 8 consecutive elements from the format's w8
 * decoder; fn udot<sfx>(ro, u, xo) is the dot product of unit u of the row
 * at byte ro with the (normed) token, whose elements e..e+3 xv(xo, e) reads.
 *
 * An invocation takes up to 4 rows (R) at once, the token's elements read
 * once for all of them: fn <name>(rb, u, xo) gives the dot products of unit
 * u of rows whose bases are rb (a row's first unit in a layout, its byte
 * offset as stored) as a vec4 (row s in component s). T invocations share
 * the units of a row; a workgroup of 256 has G = 256 / T groups of R rows. */
static uint32_t mv_unit(const sl_gpu_kernel_desc *d, sl_type type) {
    const sl_gpu_layout *lay = kernel_layout(d, type);
    if (lay) return lay->block_elems == 256 ? 128 : 32;
    return type == SL_TYPE_Q6_K ? 16 : 8;
}
static uint32_t mv_units(const sl_gpu_kernel_desc *d, sl_type type) {
    return (d->cols + mv_unit(d, type) - 1) / mv_unit(d, type);
}
/* The stride of row bases: units per row in a layout, bytes as stored. */
static uint32_t mv_row_stride(const sl_gpu_kernel_desc *d, sl_type type) {
    return kernel_layout(d, type) ? mv_units(d, type) : (uint32_t)sl_row_size(type, d->cols);
}
/* Units in flight per loop iteration (the loop unrolled): fewer for wide units. */
static uint32_t mv_unroll(const sl_gpu_kernel_desc *d, sl_type type) {
    const sl_gpu_layout *lay = kernel_layout(d, type);
    if (!lay) return 4;
    return type == SL_TYPE_Q4_0 ? 4 : type == SL_TYPE_Q6_K ? 1 : 2;
}

typedef struct mv_shape {
    uint32_t T, R, G; /* invocations per row, rows per invocation, row groups per workgroup */
    uint32_t units;   /* units of the shortest row (fused kernels: of its matrices) */
} mv_shape;

static uint32_t div_up(uint32_t a, uint32_t b) { return (a + b - 1) / b; }

/* The matrices a mat-vec kernel reads. */
static int mv_types(const sl_gpu_kernel_desc *d, sl_type types[3]) {
    types[0] = d->type;
    types[1] = d->type2;
    types[2] = d->type3;
    return d->kernel == SL_GK_QKV ? 3 : d->kernel == SL_GK_FFN_IN ? 2 : 1;
}

/* About mv_units units per invocation (default 4, 8 from 4096 columns on:
 * every workgroup prepares the whole token first, so wide rows want fewer,
 * larger workgroups: on an H200 Llama-3.1-8B decoded at 288 tokens/s, 269
 * with 4 everywhere; Llama-3.2-1B, whose 2048-column matrices lose with 8,
 * at 932 and 871) and
 * mv_rows (default 2; QKV: one rotation pair) rows; fewer rows, then more
 * invocations per row, while that leaves fewer than mv_min_wgs (default 256)
 * workgroups, so that small matrices still spread over the GPU. */
static mv_shape mv_shape_of(const sl_gpu_kernel_desc *d) {
    sl_type types[3];
    const int n = mv_types(d, types);
    uint32_t units = UINT32_MAX;
    for (int i = 0; i < n; i++) {
        uint32_t u = mv_units(d, types[i]);
        if (u < units) units = u;
    }
    const uint32_t upt = d->mv_units ? d->mv_units : d->cols >= 4096 ? 8 : 4, min_wgs = d->mv_min_wgs ? d->mv_min_wgs : 256;
    const bool qkv = d->kernel == SL_GK_QKV;
    const uint32_t rows = qkv ? (d->n_head + 2 * d->n_head_kv) * d->head_dim / 2 : d->rows;
    uint32_t R = qkv ? 1 : d->mv_rows ? (d->mv_rows < 4 ? d->mv_rows : 4) : 2, T = 1;
    while (T < 256 && 2 * T * upt <= units) T *= 2;
    while (div_up(rows ? rows : 1, (256 / T) * R) < min_wgs) {
        if (R > 1 && !d->mv_rows) R /= 2;
        else if (T < 256 && T < units) T *= 2;
        else break;
    }
    return (mv_shape){T, R, 256 / T, units};
}

static uint64_t wg_storage_cap(const sl_gpu_kernel_desc *d) { return d->max_wg_storage ? d->max_wg_storage : 16384; }

/* With subgroups, the mat-vecs number their invocations by subgroup lanes
 * (ri = subgroup * size + lane: consecutive ri share a subgroup, whatever
 * the device's order of local_invocation_index), so that where the T
 * invocations of a row group fit the smallest subgroup their partial dots
 * are summed by shuffles, without workgroup memory and barriers, and 4
 * consecutive lanes can quantize a block of the int8 token together. On an
 * H200 the two took Llama-3.1-8B Q4_0 greedy decoding from 318 to 385
 * tokens/s, Llama-3.2-1B from 1,165 to 1,380. */
static void put_mv_ri(text *t, const sl_gpu_kernel_desc *d) {
    put(t, "  let ri = %s;\n", d->subgroups ? "g_sid * g_sgs + g_lane" : "lid");
}
static bool mv_shuffle_sums(const sl_gpu_kernel_desc *d, uint32_t T) { return d->subgroups && T <= d->subgroup_min; }
static bool mv_shuffle_quant(const sl_gpu_kernel_desc *d) { return d->subgroups && d->subgroup_min >= 4; }

static bool mv_int8(const sl_gpu_kernel_desc *d);
static bool mv_x_shared(const sl_gpu_kernel_desc *d);
/* A normed kernel taking the int8 token from global memory quantizes the
 * token times the norm weight and applies the RMS scale to its dots
 * (quantization does not depend on the scale): one pass over the token, and
 * the scale's workgroup sum is the barrier before the quants are read. */
static bool mv_norm_deferred(const sl_gpu_kernel_desc *d) {
    const bool norm = d->kernel == SL_GK_QKV || d->kernel == SL_GK_FFN_IN || (d->kernel == SL_GK_MATVEC && d->norm);
    return norm && d->cols % 4 == 0 && mv_int8(d) && !mv_x_shared(d);
}

/* The token as int8 blocks (int8_dot) for the kernels' matrices in a GPU
 * layout (Q4_0, Q8_0, Q4_K, Q6_K): XQ (a byte per element), XD (scale and
 * scale * sum per 32 elements) and XH (the sums of each 16 quants, for
 * Q6_K's 16-element scales) in workgroup memory beside the reductions'
 * arrays (R4, red),
 * quantized by every workgroup from the token in global memory (or from XS
 * where that is kept too), so that it fits where the f32 token does not
 * (ffn_down: 8192 columns and more). */
static bool mv_int8_type(const sl_gpu_kernel_desc *d, sl_type t) {
    if (!d->int8_dot || !kernel_layout(d, t) || d->cols % kernel_layout(d, t)->block_elems) return false;
    return (uint64_t)d->cols + d->cols / 2 + 256 * 16 + 256 * 4 <= wg_storage_cap(d);
}
/* Whether some (any) or every (all) matrix of the kernel takes the int8 token. */
static bool mv_int8_matrices(const sl_gpu_kernel_desc *d, bool all) {
    sl_type types[3];
    const int n = mv_types(d, types);
    for (int i = 0; i < n; i++)
        if (mv_int8_type(d, types[i]) != all) return !all;
    return all;
}
static bool mv_int8(const sl_gpu_kernel_desc *d) { return mv_int8_matrices(d, false); }

/* The f32 token kept in workgroup memory (XS, normed once per workgroup):
 * when some matrix reads it (not every one takes the int8 token) and it
 * fits beside the reductions' arrays (which then reuse it) and XQ. */
static bool mv_x_shared(const sl_gpu_kernel_desc *d) {
    if (d->cols % 4 || mv_int8_matrices(d, true)) return false;
    const uint64_t xs = (uint64_t)d->cols * 4, r4 = d->cols / 4 >= 256 ? 0 : 256 * 16;
    const uint64_t xq = mv_int8(d) ? (uint64_t)d->cols + (uint64_t)d->cols / 2 : 0;
    return xs + r4 + xq + 256 * 4 <= wg_storage_cap(d);
}

/* fn udot<sfx>(ro, u, xo) for a matrix of `type` in array `arr`, as stored. */
static int put_unit_dot(text *t, sl_type type, uint32_t cols, const char *arr, const char *sfx) {
    if (put_decoder_as(t, type, cols, NULL, arr, sfx)) return -1;
    switch (type) {
    case SL_TYPE_Q4_0:
        put(t, "fn udot%s(ro: u32, u: u32, xo: u32) -> f32 {\n"
               "  let blk = u >> 2u; let k = u & 3u; let b = ro + blk * 18u;\n"
               "  let q = wu%s(b + 2u + 4u * k); let e = blk * 32u + 4u * k;\n"
               "  let m = vec4<f32>(8.0);\n"
               "  return wf%s(b) * (dot(nib(q, 0u) - m, xv(xo, e)) + dot(nib(q, 4u) - m, xv(xo, e + 16u)));\n}\n",
            sfx, sfx, sfx);
        return 0;
    case SL_TYPE_Q8_0:
        put(t, "fn udot%s(ro: u32, u: u32, xo: u32) -> f32 {\n"
               "  let blk = u >> 2u; let k = u & 3u; let b = ro + blk * 34u;\n"
               "  let q = b + 2u + 8u * k; let e = blk * 32u + 8u * k;\n"
               "  return wf%s(b) * (dot(i8x4(wu%s(q)), xv(xo, e)) + dot(i8x4(wu%s(q + 4u)), xv(xo, e + 4u)));\n}\n",
            sfx, sfx, sfx, sfx);
        return 0;
    case SL_TYPE_Q4_K:
        /* quant word k of a block: group g = k / 8 of 64 elements, low
         * nibbles in sub-block 2g, high in 2g + 1 (6-bit scales and mins) */
        put(t, "fn udot%s(ro: u32, u: u32, xo: u32) -> f32 {\n"
               "  let blk = u >> 5u; let k = u & 31u; let g = k >> 3u; let b = ro + blk * 144u; let i = b >> 2u;\n"
               "  let q = %s[i + 4u + k];\n"
               "  let e = blk * 256u + g * 64u + 4u * (k & 7u);\n"
               "  let xl = xv(xo, e); let xh = xv(xo, e + 32u);\n"
               /* scales and mins of sub-blocks 2g and 2g + 1: bytes j, j + 1 of the
                * three scale words (j = 2g mod 4); the upper four sub-blocks take
                * their high bits from the top bits of the lower ones, without a branch */
               "  let sh = vec2<u32>(16u * (g & 1u), 16u * (g & 1u) + 8u);\n"
               "  let a = (vec2<u32>(%s[i + 1u]) >> sh) & vec2<u32>(255u);\n"
               "  let c = (vec2<u32>(%s[i + 2u]) >> sh) & vec2<u32>(255u);\n"
               "  let h = (vec2<u32>(%s[i + 3u]) >> sh) & vec2<u32>(255u);\n"
               "  let up = g >= 2u;\n"
               "  let sc = vec2<f32>(select(a & vec2<u32>(63u), (h & vec2<u32>(15u)) | ((a >> vec2<u32>(6u)) << vec2<u32>(4u)), up));\n"
               "  let mn = vec2<f32>(select(c & vec2<u32>(63u), (h >> vec2<u32>(4u)) | ((c >> vec2<u32>(6u)) << vec2<u32>(4u)), up));\n"
               "  let dm = unpack2x16float(%s[i]);\n"
               "  let one = vec4<f32>(1.0);\n"
               "  return dm.x * (sc.x * dot(nib(q, 0u), xl) + sc.y * dot(nib(q, 4u), xh))\n"
               "       - dm.y * (mn.x * dot(xl, one) + mn.y * dot(xh, one));\n}\n",
            sfx, arr, arr, arr, arr, arr);
        return 0;
    case SL_TYPE_Q6_K:
        /* unit k of a block: half h = k / 8, positions l..l+3 (l = 4 (k % 8)):
         * elements l, l+32, l+64, l+96 of the half, 4 each */
        put(t, "fn udot%s(ro: u32, u: u32, xo: u32) -> f32 {\n"
               "  let blk = u >> 4u; let k = u & 15u; let h = k >> 3u; let l = 4u * (k & 7u);\n"
               "  let b = ro + blk * 210u;\n"
               "  let ql0 = wu%s(b + 64u * h + l); let ql1 = wu%s(b + 64u * h + 32u + l); let qh = wu%s(b + 128u + 32u * h + l);\n"
               "  let sb = b + 192u + 8u * h + l / 16u;\n"
               "  let sv = vec4<u32>(wb%s(sb), wb%s(sb + 2u), wb%s(sb + 4u), wb%s(sb + 6u));\n"
               "  let sc = vec4<f32>(bitcast<vec4<i32>>(sv << vec4<u32>(24u)) >> vec4<u32>(24u));\n"
               "  let e = blk * 256u + 128u * h + l;\n"
               "  let m = vec4<f32>(32.0);\n"
               "  return wf%s(b + 208u) * (sc.x * dot(nib(ql0, 0u) + 16.0 * bits(qh, 0u, 3u) - m, xv(xo, e))\n"
               "       + sc.y * dot(nib(ql1, 0u) + 16.0 * bits(qh, 2u, 3u) - m, xv(xo, e + 32u))\n"
               "       + sc.z * dot(nib(ql0, 4u) + 16.0 * bits(qh, 4u, 3u) - m, xv(xo, e + 64u))\n"
               "       + sc.w * dot(nib(ql1, 4u) + 16.0 * bits(qh, 6u, 3u) - m, xv(xo, e + 96u)));\n}\n",
            sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx, sfx);
        return 0;
    default:
        put(t, "fn udot%s(ro: u32, u: u32, xo: u32) -> f32 {\n"
               "  let e = u * 8u; let w = w8%s(ro, e);\n"
               "  return dot(w.a, xv(xo, e)) + dot(w.b, xv(xo, e + 4u));\n}\n",
            sfx, sfx);
        return 0;
    }
}

/* Dot products of layout words with the token (xv), shared by the layouts'
 * unit dot products: 16 elements from the nibbles at bit s of the 16 bytes
 * of w, from its 16 int8, the token's sum over 16 elements, Q4_K's 6-bit
 * scales and mins of half block hi, and Q6_K's 4 x 16 elements of a half
 * block (a: low ql bytes, c: high ql bytes, hq: qh bytes of 16 positions). */
/* 16 int8 of a weight word times 16 of the token (the int8 mat-vecs and mat-muls) */
static const char *INT8_DOT16 =
    "fn d16(a: vec4<u32>, b: vec4<u32>) -> i32 {\n"
    "  return (dot4I8Packed(a.x, b.x) + dot4I8Packed(a.y, b.y)) + (dot4I8Packed(a.z, b.z) + dot4I8Packed(a.w, b.w));\n}\n";

static const char *LAYOUT_DOTS =
    "fn d16n(w: vec4<u32>, s: u32, xo: u32, e: u32) -> f32 {\n"
    "  return dot(nib(w.x, s), xv(xo, e)) + dot(nib(w.y, s), xv(xo, e + 4u))\n"
    "       + dot(nib(w.z, s), xv(xo, e + 8u)) + dot(nib(w.w, s), xv(xo, e + 12u));\n}\n"
    "fn d16i(w: vec4<u32>, xo: u32, e: u32) -> f32 {\n"
    "  return dot(i8x4(w.x), xv(xo, e)) + dot(i8x4(w.y), xv(xo, e + 4u))\n"
    "       + dot(i8x4(w.z), xv(xo, e + 8u)) + dot(i8x4(w.w), xv(xo, e + 12u));\n}\n"
    "fn xsum16(xo: u32, e: u32) -> f32 {\n"
    "  return dot((xv(xo, e) + xv(xo, e + 4u)) + (xv(xo, e + 8u) + xv(xo, e + 12u)), vec4<f32>(1.0));\n}\n"
    "struct SM { sc: vec4<f32>, mn: vec4<f32> };\n"
    "fn q4k_scales(S: vec4<u32>, hi: bool) -> SM {\n"
    "  let y = vec4<u32>(S.y) >> SH4; let z = vec4<u32>(S.z) >> SH4; let w = vec4<u32>(S.w) >> SH4;\n"
    "  let m6 = vec4<u32>(63u); let m4 = vec4<u32>(15u); let m2 = vec4<u32>(3u); let s4 = vec4<u32>(4u); let s6 = vec4<u32>(6u);\n"
    "  let sc = select(y & m6, (w & m4) | (((y >> s6) & m2) << s4), hi);\n"
    "  let mn = select(z & m6, ((w >> s4) & m4) | (((z >> s6) & m2) << s4), hi);\n"
    "  return SM(vec4<f32>(sc), vec4<f32>(mn));\n}\n"
    "fn q6d(a: vec4<u32>, c: vec4<u32>, hq: vec4<u32>, xo: u32, e: u32) -> vec4<f32> {\n"
    "  let m = vec4<f32>(32.0);\n"
    "  var r = vec4<f32>(0.0);\n"
    "  for (var i = 0u; i < 4u; i++) {\n"
    "    let o = e + 4u * i;\n"
    "    r += vec4<f32>(dot(nib(a[i], 0u) + 16.0 * bits(hq[i], 0u, 3u) - m, xv(xo, o)),\n"
    "                   dot(nib(c[i], 0u) + 16.0 * bits(hq[i], 2u, 3u) - m, xv(xo, o + 32u)),\n"
    "                   dot(nib(a[i], 4u) + 16.0 * bits(hq[i], 4u, 3u) - m, xv(xo, o + 64u)),\n"
    "                   dot(nib(c[i], 4u) + 16.0 * bits(hq[i], 6u, 3u) - m, xv(xo, o + 96u)));\n"
    "  }\n"
    "  return r;\n}\n";

/* The readers of a matrix in array arr (names suffixed sfx): the layout's
 * decoder, or, as stored, the decoder and fn udot<sfx>. */
static int put_matrix_readers(text *t, const sl_gpu_kernel_desc *d, sl_type type, const char *arr, const char *sfx) {
    const sl_gpu_layout *lay = kernel_layout(d, type);
    if (lay) return put_decoder_as(t, type, d->cols, lay, arr, sfx);
    return put_unit_dot(t, type, d->cols, arr, sfx);
}

/* fn name(rb, u, xo) -> vec4<f32>: unit u of n rows (n <= 4) of a matrix of
 * `type` in array arr whose readers have suffix sfx (see above). */
static void put_rows_dot(text *t, const sl_gpu_kernel_desc *d, const char *name, sl_type type, int n, const char *arr,
                         const char *sfx) {
    static const char comp[] = "xyzw";
    put(t, "fn %s(rb: vec4<u32>, u: u32, xo: u32) -> vec4<f32> {\n  var res = vec4<f32>(0.0);\n", name);
    const sl_gpu_layout *lay = kernel_layout(d, type);
    if (!lay) {
        for (int s = 0; s < n; s++) put(t, "  res.%c = udot%s(rb.%c, u, xo);\n", comp[s], sfx, comp[s]);
    } else if (mv_int8_type(d, type) && lay->block_elems == 256) {
        /* a half block: the token's int8 blocks 4u..4u+3 (8 words), their
         * scales (xdd), scales * sums (xds) and sums of 16 quants (xha, xhb) */
        put(t, "  let k = 4u * u;\n"
               "  let x0 = XQ[2u * k]; let x1 = XQ[2u * k + 1u]; let x2 = XQ[2u * k + 2u]; let x3 = XQ[2u * k + 3u];\n"
               "  let x4 = XQ[2u * k + 4u]; let x5 = XQ[2u * k + 5u]; let x6 = XQ[2u * k + 6u]; let x7 = XQ[2u * k + 7u];\n"
               "  let xd0 = XD[k]; let xd1 = XD[k + 1u]; let xd2 = XD[k + 2u]; let xd3 = XD[k + 3u];\n"
               "  let xdd = vec4<f32>(xd0.x, xd1.x, xd2.x, xd3.x);\n"
               "  let m4 = vec4<u32>(0x0f0f0f0fu); let s4 = vec4<u32>(4u);\n");
        if (type == SL_TYPE_Q4_K)
            put(t, "  let xds = vec4<f32>(xd0.y, xd1.y, xd2.y, xd3.y);\n");
        else
            put(t, "  let xh0 = XH[k]; let xh1 = XH[k + 1u]; let xh2 = XH[k + 2u]; let xh3 = XH[k + 3u];\n"
                   "  let xha = vec4<i32>(xh0.x, xh1.x, xh2.x, xh3.x); let xhb = vec4<i32>(xh0.y, xh1.y, xh2.y, xh3.y);\n"
                   "  let m2 = vec4<u32>(0x03030303u); let s2 = vec4<u32>(2u); let s6 = vec4<u32>(6u);\n");
        for (int s = 0; s < n; s++) {
            if (type == SL_TYPE_Q4_K)
                /* sub-block i of the half (32 elements, the token's block k + i): low
                 * nibbles of words 0-1 (i = 0), high (1), low of words 2-3 (2), high (3) */
                put(t, "  { let ug = rb.%c + u; let nu = 2u * NB%s; let S = %s[NB%s * 8u + (ug >> 1u)];\n"
                       "    let w0 = %s[ug]; let w1 = %s[nu + ug]; let w2 = %s[2u * nu + ug]; let w3 = %s[3u * nu + ug];\n"
                       "    let sm = q4k_scales(S, (ug & 1u) == 1u); let dm = unpack2x16float(S.x);\n"
                       "    let a = vec4<f32>(vec4<i32>(d16(w0 & m4, x0) + d16(w1 & m4, x1), d16((w0 >> s4) & m4, x2) + d16((w1 >> s4) & m4, x3),\n"
                       "                                d16(w2 & m4, x4) + d16(w3 & m4, x5), d16((w2 >> s4) & m4, x6) + d16((w3 >> s4) & m4, x7)));\n"
                       "    res.%c = dm.x * dot(sm.sc * xdd, a) - dm.y * dot(sm.mn, xds); }\n",
                    comp[s], sfx, arr, sfx, arr, arr, arr, arr, comp[s]);
            else
                /* part p of the half (32 elements at 32 p, the token's block k + p):
                 * positions 0-15 from ql words 0/2 and qh word 0, 16-31 from ql
                 * words 1/3 and qh word 1; each 16 with its own scale (sa, sb) */
                put(t, "  { let ug = rb.%c + u; let nu = 2u * NB%s; let S = %s[NB%s * 12u + (ug >> 1u)];\n"
                       "    let l0 = %s[ug]; let l1 = %s[nu + ug]; let l2 = %s[2u * nu + ug]; let l3 = %s[3u * nu + ug];\n"
                       "    let h0 = %s[4u * nu + ug]; let h1 = %s[5u * nu + ug];\n"
                       "    let hi = (ug & 1u) == 1u; let s0 = select(S.x, S.z, hi); let s1 = select(S.y, S.w, hi);\n"
                       "    let sa = bitcast<vec4<i32>>(vec4<u32>(s0 << 24u, s0 << 8u, s1 << 24u, s1 << 8u)) >> vec4<u32>(24u);\n"
                       "    let sb = bitcast<vec4<i32>>(vec4<u32>(s0 << 16u, s0, s1 << 16u, s1)) >> vec4<u32>(24u);\n"
                       "    let a = vec4<i32>(d16((l0 & m4) | ((h0 & m2) << s4), x0), d16((l2 & m4) | (((h0 >> s2) & m2) << s4), x2),\n"
                       "                      d16(((l0 >> s4) & m4) | (((h0 >> s4) & m2) << s4), x4), d16(((l2 >> s4) & m4) | (((h0 >> s6) & m2) << s4), x6));\n"
                       "    let b = vec4<i32>(d16((l1 & m4) | ((h1 & m2) << s4), x1), d16((l3 & m4) | (((h1 >> s2) & m2) << s4), x3),\n"
                       "                      d16(((l1 >> s4) & m4) | (((h1 >> s4) & m2) << s4), x5), d16(((l3 >> s4) & m4) | (((h1 >> s6) & m2) << s4), x7));\n"
                       "    let ip = sa * (a - 32 * xha) + sb * (b - 32 * xhb);\n"
                       "    res.%c = wdh%s(NB%s * 104u + (ug >> 1u)) * dot(xdd, vec4<f32>(ip)); }\n",
                    comp[s], sfx, arr, sfx, arr, arr, arr, arr, arr, arr, comp[s], sfx, sfx);
        }
    } else if (mv_int8_type(d, type)) {
        /* the token's int8 block u: 8 words of 4, its scale and sum */
        put(t, "  let xd = XD[u]; let x0 = XQ[2u * u]; let x1 = XQ[2u * u + 1u];\n");
        for (int s = 0; s < n; s++) {
            if (type == SL_TYPE_Q4_0)
                put(t, "  { let b = rb.%c + u; let q = %s[b]; let m = vec4<u32>(0x0f0f0f0fu);\n"
                       "    let lo = q & m; let hi = (q >> vec4<u32>(4u)) & m;\n"
                       "    let s = (dot4I8Packed(lo.x, x0.x) + dot4I8Packed(lo.y, x0.y)) + (dot4I8Packed(lo.z, x0.z) + dot4I8Packed(lo.w, x0.w))\n"
                       "          + (dot4I8Packed(hi.x, x1.x) + dot4I8Packed(hi.y, x1.y)) + (dot4I8Packed(hi.z, x1.z) + dot4I8Packed(hi.w, x1.w));\n"
                       "    res.%c = wdh%s(NB%s * 8u + b) * (xd.x * f32(s) - 8.0 * xd.y); }\n",
                    comp[s], arr, comp[s], sfx, sfx);
            else
                put(t, "  { let b = rb.%c + u; let q0 = %s[b]; let q1 = %s[NB%s + b];\n"
                       "    let s = (dot4I8Packed(q0.x, x0.x) + dot4I8Packed(q0.y, x0.y)) + (dot4I8Packed(q0.z, x0.z) + dot4I8Packed(q0.w, x0.w))\n"
                       "          + (dot4I8Packed(q1.x, x1.x) + dot4I8Packed(q1.y, x1.y)) + (dot4I8Packed(q1.z, x1.z) + dot4I8Packed(q1.w, x1.w));\n"
                       "    res.%c = wdh%s(NB%s * 16u + b) * xd.x * f32(s); }\n",
                    comp[s], arr, arr, sfx, comp[s], sfx, sfx);
        }
    } else if (type == SL_TYPE_Q4_0) {
        put(t, "  let e = u * 32u; let xs = xsum16(xo, e) + xsum16(xo, e + 16u);\n");
        for (int s = 0; s < n; s++)
            put(t, "  { let b = rb.%c + u; let q = %s[b];\n"
                   "    res.%c = wdh%s(NB%s * 8u + b) * (d16n(q, 0u, xo, e) + d16n(q, 4u, xo, e + 16u) - 8.0 * xs); }\n",
                comp[s], arr, comp[s], sfx, sfx);
    } else if (type == SL_TYPE_Q8_0) {
        put(t, "  let e = u * 32u;\n");
        for (int s = 0; s < n; s++)
            put(t, "  { let b = rb.%c + u; let q0 = %s[b]; let q1 = %s[NB%s + b];\n"
                   "    res.%c = wdh%s(NB%s * 16u + b) * (d16i(q0, xo, e) + d16i(q1, xo, e + 16u)); }\n",
                comp[s], arr, arr, sfx, comp[s], sfx, sfx);
    } else if (type == SL_TYPE_Q4_K) {
        put(t, "  let e = u * 128u;\n"
               "  let xs = vec4<f32>(xsum16(xo, e) + xsum16(xo, e + 16u), xsum16(xo, e + 32u) + xsum16(xo, e + 48u),\n"
               "                     xsum16(xo, e + 64u) + xsum16(xo, e + 80u), xsum16(xo, e + 96u) + xsum16(xo, e + 112u));\n");
        for (int s = 0; s < n; s++)
            put(t, "  { let ug = rb.%c + u; let nu = 2u * NB%s; let S = %s[NB%s * 8u + (ug >> 1u)];\n"
                   "    let w0 = %s[ug]; let w1 = %s[nu + ug]; let w2 = %s[2u * nu + ug]; let w3 = %s[3u * nu + ug];\n"
                   "    let sm = q4k_scales(S, (ug & 1u) == 1u); let dm = unpack2x16float(S.x);\n"
                   "    let q = vec4<f32>(d16n(w0, 0u, xo, e) + d16n(w1, 0u, xo, e + 16u), d16n(w0, 4u, xo, e + 32u) + d16n(w1, 4u, xo, e + 48u),\n"
                   "                      d16n(w2, 0u, xo, e + 64u) + d16n(w3, 0u, xo, e + 80u), d16n(w2, 4u, xo, e + 96u) + d16n(w3, 4u, xo, e + 112u));\n"
                   "    res.%c = dm.x * dot(sm.sc, q) - dm.y * dot(sm.mn, xs); }\n",
                comp[s], sfx, arr, sfx, arr, arr, arr, arr, comp[s]);
    } else { /* Q6_K */
        put(t, "  let e = u * 128u;\n");
        for (int s = 0; s < n; s++)
            put(t, "  { let ug = rb.%c + u; let nu = 2u * NB%s; let S = %s[NB%s * 12u + (ug >> 1u)];\n"
                   "    let l0 = %s[ug]; let l1 = %s[nu + ug]; let l2 = %s[2u * nu + ug]; let l3 = %s[3u * nu + ug];\n"
                   "    let h0 = %s[4u * nu + ug]; let h1 = %s[5u * nu + ug];\n"
                   "    let hi = (ug & 1u) == 1u; let s0 = select(S.x, S.z, hi); let s1 = select(S.y, S.w, hi);\n"
                   /* the half's 8 int8 scales: positions 0-15 (sa) and 16-31 (sb) of its 4 parts of 32 */
                   "    let sa = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(s0 << 24u, s0 << 8u, s1 << 24u, s1 << 8u)) >> vec4<u32>(24u));\n"
                   "    let sb = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(s0 << 16u, s0, s1 << 16u, s1)) >> vec4<u32>(24u));\n"
                   "    res.%c = wdh%s(NB%s * 104u + (ug >> 1u)) * (dot(sa, q6d(l0, l2, h0, xo, e)) + dot(sb, q6d(l1, l3, h1, xo, e + 16u))); }\n",
                comp[s], sfx, arr, sfx, arr, arr, arr, arr, arr, arr, comp[s], sfx, sfx);
    }
    put(t, "  return res%s;\n}\n", lay && mv_int8_type(d, type) && mv_norm_deferred(d) ? " * g_scale" : "");
}

/* RMSNorm's scale of the token at float offset xo into g_scale (every
 * invocation must reach it). xs(i) reads element i. */
static void put_norm_scale(text *t, const char *xs) {
    put(t, "  var ss = 0.0;\n"
           "  for (var i = lid; i < COLS; i += WG) { let v = %s; ss += v * v; }\n"
           "  g_scale = 1.0 / sqrt(sum_wg(lid, ss) / f32(COLS) + EPS);\n",
        xs);
}

/* Constants and workgroup memory of the mat-vec kernels. */
static void put_mv_common(text *t, const sl_gpu_kernel_desc *d, const mv_shape *sh, bool xs) {
    char eps[32];
    put(t, "const COLS: u32 = %uu;\nconst EPS: f32 = %s;\nconst WG: u32 = 256u;\nconst T: u32 = %uu;\n"
           "const R: u32 = %uu;\nconst GR: u32 = %uu;\nconst RPW: u32 = GR * R;\nvar<private> g_scale: f32 = 1.0;\n"
           "var<workgroup> red: array<f32, WG>;\n",
        d->cols, flt(eps, d->eps), sh->T, sh->R, sh->G);
    if (xs) put(t, "var<workgroup> XS: array<vec4<f32>, %uu>;\n", d->cols / 4);
    if (mv_int8(d))
        put(t, "var<workgroup> XQ: array<vec4<u32>, %uu>;\nvar<workgroup> XD: array<vec2<f32>, %uu>;\n"
               "var<workgroup> XH: array<vec2<i32>, %uu>;\n%s",
            d->cols / 16, d->cols / 32, d->cols / 32, INT8_DOT16);
    /* the row sums reuse XS when it is large enough */
    if (!xs || d->cols / 4 < 256) put(t, "var<workgroup> R4: array<vec4<f32>, WG>;\n");
}

/* The token's prologue (every invocation must reach it): into XS when xs,
 * normed (norm: times the RMSNorm scale and the norm weight, gv(i) its
 * vec4 i); else, with norm, the scale into g_scale (xv applies it). Then,
 * when some matrix takes the int8 token, its blocks of 32 into XQ and XD
 * (scale, scale * sum of the quants), from XS or from global memory (normed
 * kernels: deferred, see mv_norm_deferred), 4 lanes per block where
 * subgroups allow. src(i), gv(i): WGSL expressions of vec4 i (of a variable named i); src1(i):
 * element i, for the scale without XS. */
static void put_x_prologue(text *t, const sl_gpu_kernel_desc *d, bool xs, bool norm, const char *src, const char *gv,
                           const char *src1) {
    if (xs && !norm) {
        put(t, "  for (var i = lid; i < COLS / 4u; i += WG) { XS[i] = %s; }\n  workgroupBarrier();\n", src);
    } else if (xs) {
        put(t, "  {\n    var ss = 0.0;\n"
               "    for (var i = lid; i < COLS / 4u; i += WG) { let v = %s; XS[i] = v; ss += dot(v, v); }\n"
               "    let sc = 1.0 / sqrt(sum_wg(lid, ss) / f32(COLS) + EPS);\n"
               "    for (var i = lid; i < COLS / 4u; i += WG) { XS[i] = XS[i] * sc * %s; }\n"
               "    workgroupBarrier();\n  }\n",
            src, gv);
    } else if (norm && mv_norm_deferred(d)) {
        /* below, with the quantization */
    } else if (norm && d->cols % 4 == 0) {
        put(t, "  {\n    var ss = 0.0;\n"
               "    for (var i = lid; i < COLS / 4u; i += WG) { let v = %s; ss += dot(v, v); }\n"
               "    g_scale = 1.0 / sqrt(sum_wg(lid, ss) / f32(COLS) + EPS);\n  }\n",
            src);
    } else if (norm) {
        put_norm_scale(t, src1);
    }
    if (!mv_int8(d)) return;
    const bool defer = norm && mv_norm_deferred(d);
    if (defer) put(t, "  var ss = 0.0;\n");
    if (mv_shuffle_quant(d) && !xs) {
        /* 4 consecutive lanes per block of 32, 8 elements each. The token's
         * loads of up to 8 rounds are all issued before their math (one
         * memory latency, not one per round: ffn_down's 14336 columns take 7);
         * every lane runs every round (the shuffles need them). */
        const uint32_t rounds = div_up(d->cols / 8, 256), batch = rounds < 8 ? rounds : 8;
        put(t, "  for (var b0 = 0u; b0 < %uu; b0 += %uu) {\n"
               "    var xa: array<vec4<f32>, %u>;\n",
            rounds, batch, 2 * batch);
        if (norm) put(t, "    var ga: array<vec4<f32>, %u>;\n", 2 * batch);
        put(t, "    for (var r = 0u; r < %uu; r++) {\n"
               "      let jj = min((b0 + r) * WG + ri, COLS / 8u - 1u);\n"
               "      for (var h = 0u; h < 2u; h++) {\n"
               "        let i = 2u * jj + h;\n"
               "        xa[2u * r + h] = %s;\n",
            batch, src);
        if (norm) put(t, "        ga[2u * r + h] = %s;\n", gv);
        put(t, "      }\n"
               "    }\n"
               "    for (var r = 0u; r < %uu; r++) {\n"
               "      let j = (b0 + r) * WG + ri; let ok = b0 + r < %uu && j < COLS / 8u; let jj = min(j, COLS / 8u - 1u);\n",
            batch, rounds);
        if (defer)
            put(t, "      let x0 = xa[2u * r]; let x1 = xa[2u * r + 1u];\n"
                   "      ss += select(0.0, dot(x0, x0) + dot(x1, x1), ok);\n"
                   "      let v0 = x0 * ga[2u * r]; let v1 = x1 * ga[2u * r + 1u];\n");
        else if (norm)
            put(t, "      let v0 = xa[2u * r] * g_scale * ga[2u * r]; let v1 = xa[2u * r + 1u] * g_scale * ga[2u * r + 1u];\n");
        else
            put(t, "      let v0 = xa[2u * r]; let v1 = xa[2u * r + 1u];\n");
        put(t, "      let a = max(abs(v0), abs(v1)); var amax = max(max(a.x, a.y), max(a.z, a.w));\n"
               "      amax = max(amax, subgroupShuffleXor(amax, 1u)); amax = max(amax, subgroupShuffleXor(amax, 2u));\n"
               "      let d = amax / 127.0; let id = select(0.0, 1.0 / d, d > 0.0);\n"
               "      let q0 = vec4<i32>(round(v0 * id)); let q1 = vec4<i32>(round(v1 * id));\n"
               "      let sq = q0 + q1; var s = (sq.x + sq.y) + (sq.z + sq.w);\n"
               /* s: the sum of the lane's 16 (lanes 0-1: elements 0-15, 2-3: 16-31), s2 the other 16 */
               "      s += subgroupShuffleXor(s, 1u); let s2 = subgroupShuffleXor(s, 2u);\n"
               "      let k = jj / 4u; let l = jj %% 4u;\n"
               "      if (ok) {\n"
               "        XQ[2u * k + (l >> 1u)][(2u * l) & 3u] = pack4xI8(q0);\n"
               "        XQ[2u * k + (l >> 1u)][(2u * l + 1u) & 3u] = pack4xI8(q1);\n"
               "        if (l == 0u) { XD[k] = vec2<f32>(d, d * f32(s + s2)); XH[k] = vec2<i32>(s, s2); }\n"
               "      }\n"
               "    }\n"
               "  }\n");
    } else {
        put(t, "  for (var k = lid; k < COLS / 32u; k += WG) {\n"
               "    var xb: array<vec4<f32>, 8>;\n"
               "    var amax = 0.0;\n"
               "    for (var b = 0u; b < 8u; b++) {\n"
               "      let i = 8u * k + b;\n");
        if (defer) put(t, "      let xr = %s; ss += dot(xr, xr); let v = xr * %s;\n", src, gv);
        else if (xs) put(t, "      let v = XS[i];\n");
        else if (norm) put(t, "      let v = %s * g_scale * %s;\n", src, gv);
        else put(t, "      let v = %s;\n", src);
        put(t, "      xb[b] = v; let a = abs(v); amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));\n"
               "    }\n"
               "    let d = amax / 127.0; let id = select(0.0, 1.0 / d, d > 0.0);\n"
               "    var sa = vec4<i32>(0); var sb = vec4<i32>(0);\n"
               "    for (var b = 0u; b < 8u; b++) {\n"
               "      let q = vec4<i32>(round(xb[b] * id));\n"
               "      if (b < 4u) { sa += q; } else { sb += q; }\n"
               "      XQ[2u * k + (b >> 2u)][b & 3u] = pack4xI8(q);\n"
               "    }\n"
               "    let h = vec2<i32>((sa.x + sa.y) + (sa.z + sa.w), (sb.x + sb.y) + (sb.z + sb.w));\n"
               "    XD[k] = vec2<f32>(d, d * f32(h.x + h.y));\n"
               "    XH[k] = h;\n"
               "  }\n");
    }
    /* the scale's workgroup sum has the barrier before the quants are read */
    if (defer) put(t, "  g_scale = 1.0 / sqrt(sum_wg(lid, ss) / f32(COLS) + EPS);\n");
    else put(t, "  workgroupBarrier();\n");
}

/* One loop over the units of rows for each (fn, rb, acc): acc += fn(rb, u, xo),
 * all with `units` units per row, unrolled U times: the loads of U units of
 * every row are in flight before their math (a mat-vec is bound by memory
 * latency). */
typedef struct mv_loop {
    const char *fn, *rb, *acc;
} mv_loop;

static void put_mv_loop(text *t, uint32_t units, uint32_t T, uint32_t U, int n, const mv_loop *m, const char *indent) {
    const uint32_t full = units / T, rem = units % T;
    if (full >= U) {
        put(t, "%sfor (var i = 0u; i < %uu; i += %uu) {\n", indent, full - full % U, U);
        for (uint32_t k = 0; k < U; k++) put(t, "%s  let u%u = tt + (i + %uu) * T;\n", indent, k, k);
        for (int r = 0; r < n; r++) {
            put(t, "%s  %s += ", indent, m[r].acc);
            for (uint32_t k = 0; k < U; k++) put(t, "%s%s(%s, u%u, xo)", k ? " + " : "", m[r].fn, m[r].rb, k);
            put(t, ";\n");
        }
        put(t, "%s}\n", indent);
    }
    for (uint32_t k = full - full % U; k < full; k++)
        for (int r = 0; r < n; r++) put(t, "%s%s += %s(%s, tt + %uu * T, xo);\n", indent, m[r].acc, m[r].fn, m[r].rb, k);
    if (rem)
        for (int r = 0; r < n; r++)
            put(t, "%sif (tt < %uu) { %s += %s(%s, %uu * T + tt, xo); }\n", indent, rem, m[r].acc, m[r].fn, m[r].rb,
                full);
}

/* Sums the vec4 `acc` over the T invocations of each row group into `res`
 * (valid in the group's first invocation, tt == 0); every invocation must
 * reach it. */
static void put_row_sum(text *t, const sl_gpu_kernel_desc *d, const mv_shape *sh, bool xs, const char *acc,
                        const char *res) {
    if (sh->T == 1) {
        put(t, "  let %s = %s;\n", res, acc);
        return;
    }
    if (mv_shuffle_sums(d, sh->T)) {
        put(t, "  var %s_s = %s;\n", res, acc);
        for (uint32_t s = sh->T / 2; s > 0; s /= 2) put(t, "  %s_s += subgroupShuffleXor(%s_s, %uu);\n", res, res, s);
        put(t, "  let %s = %s_s;\n", res, res);
        return;
    }
    const char *r4 = xs && d->cols / 4 >= 256 ? "XS" : "R4";
    /* XS is still being read, and R4 by an earlier sum */
    put(t, "  workgroupBarrier();\n"
           "  %s[ri] = %s;\n"
           "  workgroupBarrier();\n"
           "  for (var s = T / 2u; s > 0u; s >>= 1u) {\n"
           "    if (tt < s) { %s[ri] += %s[ri + s]; }\n"
           "    workgroupBarrier();\n"
           "  }\n"
           "  let %s = %s[ri];\n",
        r4, acc, r4, r4, res, r4);
}

/* The row groups of a workgroup: rows r0 + k GR (k < R) of group ri / T. */
static void put_mv_rows(text *t, const char *nrows) {
    put(t, "  let tt = ri %% T;\n"
           "  let r0 = (wid.x + wid.y * nwg.x) * RPW + ri / T;\n"
           "  let rows = vec4<u32>(r0, r0 + GR, r0 + 2u * GR, r0 + 3u * GR);\n"
           "  let rr = min(rows, vec4<u32>(%s - 1u));\n",
        nrows);
}

static void gen_matvec(text *t, const sl_gpu_kernel_desc *d) {
    const mv_shape sh = mv_shape_of(d);
    const sl_gpu_layout *lay = kernel_layout(d, d->type);
    const bool x4 = d->cols % 4 == 0, xs = mv_x_shared(d);
    put(t, "const NROWS: u32 = %uu;\nconst ROW0: u32 = %uu;\nconst RB: u32 = %uu;\nconst OUT_STRIDE: u32 = %uu;\n",
        d->rows, d->row0, mv_row_stride(d, d->type), d->out_stride);
    if (lay) put(t, "const NB: u32 = %uu;\n", d->rows * (d->cols / lay->block_elems));
    put_mv_common(t, d, &sh, xs);
    /* tokens of 4-aligned length are read as vec4 */
    const char *xt = x4 ? "vec4<f32>" : "f32";
    put(t, "@group(0) @binding(1) var<storage, read> W: array<%s>;\n"
           "@group(0) @binding(2) var<storage, read_write> X: array<%s>;\n"
           "@group(0) @binding(3) var<storage, read_write> Y: array<f32>;\n",
        w_elem(lay), xt);
    if (d->epilogue == SL_EPI_BIAS || d->epilogue == SL_EPI_SILU_MUL)
        put(t, "@group(0) @binding(4) var<storage, read_write> A: array<f32>;\n");
    if (d->norm) put(t, "@group(0) @binding(4) var<storage, read> G: array<%s>;\n", xt);
    put_reduce(t, d, "sum_wg", false);
    put(t, "%s", WEIGHT_COMMON);
    /* xv(xo, e): elements e..e+3 of the token at float offset xo, normed */
    if (xs) {
        put(t, "fn xv(xo: u32, e: u32) -> vec4<f32> { return XS[e >> 2u]; }\n");
    } else if (x4) {
        put(t, "fn xv(xo: u32, e: u32) -> vec4<f32> { return X[(xo + e) >> 2u]%s; }\n",
            d->norm ? " * g_scale * G[e >> 2u]" : "");
    } else {
        put(t, "fn xe(xo: u32, e: u32) -> f32 { if (e >= COLS) { return 0.0; } return X[xo + e]%s; }\n"
               "fn xv(xo: u32, e: u32) -> vec4<f32> { return vec4<f32>(xe(xo, e), xe(xo, e + 1u), xe(xo, e + 2u), xe(xo, e + 3u)); }\n",
            d->norm ? " * g_scale * G[e]" : "");
    }
    if (lay) put(t, "%s", LAYOUT_DOTS);
    if (put_matrix_readers(t, d, d->type, "W", "")) t->oom = true;
    put_rows_dot(t, d, "rdot", d->type, (int)sh.R, "W", "");
    put_main(t, d, "WG");
    put_mv_ri(t, d);
    put(t, "  let xo = (step.n_tokens - 1u) * COLS;\n");
    put_x_prologue(t, d, xs, d->norm, "X[(xo >> 2u) + i]", "G[i]", x4 ? "X[(xo + i) >> 2u][i & 3u]" : "X[xo + i]");
    put_mv_rows(t, "NROWS");
    put(t, "  let rb = rr * RB;\n  var acc = vec4<f32>(0.0);\n");
    const mv_loop loop = {"rdot", "rb", "acc"};
    put_mv_loop(t, mv_units(d, d->type), sh.T, mv_unroll(d, d->type), 1, &loop, "  ");
    put_row_sum(t, d, &sh, xs, "acc", "res");
    put(t, "  if (tt == 0u) {\n");
    for (uint32_t k = 0; k < sh.R; k++) {
        char idx[32];
        snprintf(idx, sizeof idx, "ROW0 + rows[%uu]", k);
        put(t, "    if (rows[%uu] < NROWS) {\n      let v = res[%uu];\n", k, k);
        put_epilogue(t, d->epilogue, idx, idx, "      ");
        put(t, "    }\n");
    }
    put(t, "  }\n}\n");
}

/* The fused kernels bind the arena (ACT) and the vectors (VEC) whole, as
 * vec4 (offsets are multiples of 4 floats); the token is normed once per
 * workgroup into XS, or, where it does not fit, on the fly. */
static void put_fused_head(text *t, const sl_gpu_kernel_desc *d, const mv_shape *sh, bool xs) {
    put(t, "const X_OFF: u32 = %uu;\nconst Y_OFF: u32 = %uu;\nconst G_OFF: u32 = %uu;\n", d->x_off, d->y_off, d->g_off);
    put_mv_common(t, d, sh, xs);
    put(t, "@group(0) @binding(1) var<storage, read_write> ACT: array<vec4<f32>>;\n"
           "@group(0) @binding(2) var<storage, read> VEC: array<vec4<f32>>;\n");
    put_reduce(t, d, "sum_wg", false);
    put(t, "%s", WEIGHT_COMMON);
    if (xs) put(t, "fn xv(xo: u32, e: u32) -> vec4<f32> { return XS[e >> 2u]; }\n");
    else put(t, "fn xv(xo: u32, e: u32) -> vec4<f32> { return ACT[(xo + e) >> 2u] * g_scale * VEC[(G_OFF + e) >> 2u]; }\n");
    put(t, "fn act_set(i: u32, v: f32) { ACT[i >> 2u][i & 3u] = v; }\n"
           "fn vec1(i: u32) -> f32 { return VEC[i >> 2u][i & 3u]; }\n");
    sl_type types[3];
    const int n = mv_types(d, types);
    for (int i = 0; i < n; i++)
        if (kernel_layout(d, types[i])) {
            put(t, "%s", LAYOUT_DOTS);
            break;
        }
}

static void put_fused_norm(text *t, const sl_gpu_kernel_desc *d, bool xs) {
    put_x_prologue(t, d, xs, true, "ACT[(xo >> 2u) + i]", "VEC[(G_OFF >> 2u) + i]", "ACT[(xo + i) >> 2u][i & 3u]");
}

/* The constants of one matrix of a fused kernel: its row stride RB<sfx>,
 * and NB<sfx> (its blocks) in a layout. */
static void put_matrix_consts(text *t, const sl_gpu_kernel_desc *d, sl_type type, uint32_t rows, const char *sfx) {
    const sl_gpu_layout *lay = kernel_layout(d, type);
    put(t, "const RB%s: u32 = %uu;\n", sfx, mv_row_stride(d, type));
    if (lay) put(t, "const NB%s: u32 = %uu;\n", sfx, rows * (d->cols / lay->block_elems));
}

/* Decode: RMSNorm, then R gate and up rows per row group (the token read
 * once for both), silu(gate) * up into the arena. */
static void gen_ffn_in(text *t, const sl_gpu_kernel_desc *d) {
    const mv_shape sh = mv_shape_of(d);
    const bool xs = mv_x_shared(d);
    put_fused_head(t, d, &sh, xs);
    put(t, "const NROWS: u32 = %uu;\n", d->rows);
    put_matrix_consts(t, d, d->type, d->rows, "_1");
    put_matrix_consts(t, d, d->type2, d->rows, "_2");
    put(t, "@group(0) @binding(3) var<storage, read> W1: array<%s>;\n"
           "@group(0) @binding(4) var<storage, read> W2: array<%s>;\n",
        w_elem(kernel_layout(d, d->type)), w_elem(kernel_layout(d, d->type2)));
    if (put_matrix_readers(t, d, d->type, "W1", "_1") || put_matrix_readers(t, d, d->type2, "W2", "_2")) t->oom = true;
    put_rows_dot(t, d, "rdot_1", d->type, (int)sh.R, "W1", "_1");
    put_rows_dot(t, d, "rdot_2", d->type2, (int)sh.R, "W2", "_2");
    put_main(t, d, "WG");
    put_mv_ri(t, d);
    put(t, "  let xo = X_OFF + (step.n_tokens - 1u) * COLS;\n");
    put_fused_norm(t, d, xs);
    put_mv_rows(t, "NROWS");
    put(t, "  let rb1 = rr * RB_1; let rb2 = rr * RB_2;\n"
           "  var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0);\n");
    const mv_loop loops[2] = {{"rdot_1", "rb1", "acc0"}, {"rdot_2", "rb2", "acc1"}};
    const uint32_t u1 = mv_units(d, d->type), u2 = mv_units(d, d->type2), un1 = mv_unroll(d, d->type),
                   un2 = mv_unroll(d, d->type2);
    if (u1 == u2) {
        put_mv_loop(t, u1, sh.T, un1 < un2 ? un1 : un2, 2, loops, "  ");
    } else {
        put_mv_loop(t, u1, sh.T, un1, 1, loops, "  ");
        put_mv_loop(t, u2, sh.T, un2, 1, loops + 1, "  ");
    }
    /* both sums at once when they fit one vec4 */
    if (sh.R <= 2) {
        put_row_sum(t, d, &sh, xs, "vec4<f32>(acc0.xy, acc1.xy)", "res");
        put(t, "  let gate = res.xy; let up = res.zw;\n");
    } else {
        put_row_sum(t, d, &sh, xs, "acc0", "gate");
        put_row_sum(t, d, &sh, xs, "acc1", "up");
    }
    put(t, "  if (tt == 0u) {\n");
    for (uint32_t k = 0; k < sh.R; k++)
        put(t, "    if (rows[%uu] < NROWS) { let g = gate[%uu]; act_set(Y_OFF + rows[%uu], g / (1.0 + exp(-g)) * up[%uu]); }\n",
            k, k, k, k);
    put(t, "  }\n}\n");
}

/* Decode: RMSNorm, the Q, K and V rows of one rotation pair per row group
 * (both rows from the token read once), biases, RoPE on Q and K, Q into the
 * arena, K and V into the caches at the step's position. Needs n_rot ==
 * head_dim and no per-head norm (else the separate kernels run). */
static void gen_qkv(text *t, const sl_gpu_kernel_desc *d) {
    const mv_shape sh = mv_shape_of(d);
    const bool xs = mv_x_shared(d);
    put_fused_head(t, d, &sh, xs);
    const uint32_t qd = d->n_head * d->head_dim, kd = d->n_head_kv * d->head_dim;
    put(t, "const NH: u32 = %uu;\nconst NKV: u32 = %uu;\nconst HD: u32 = %uu;\nconst HALF: u32 = %uu;\n"
           "const NQ: u32 = NH * HD;\nconst KD: u32 = NKV * HD;\nconst NPAIR: u32 = (NQ + 2u * KD) / 2u;\n"
           "const BQ: u32 = %uu;\nconst BK: u32 = %uu;\nconst BV: u32 = %uu;\n"
           "@group(0) @binding(3) var<storage, read> WQ: array<%s>;\n"
           "@group(0) @binding(4) var<storage, read> WK: array<%s>;\n"
           "@group(0) @binding(5) var<storage, read> WV: array<%s>;\n"
           "@group(0) @binding(6) var<storage, read_write> KC: array<%s>;\n"
           "@group(0) @binding(7) var<storage, read_write> VC: array<%s>;\n"
           "@group(0) @binding(8) var<storage, read> ROPE: array<f32>;\n",
        d->n_head, d->n_head_kv, d->head_dim, d->head_dim / 2, d->bias_off[0], d->bias_off[1], d->bias_off[2],
        w_elem(kernel_layout(d, d->type)), w_elem(kernel_layout(d, d->type2)), w_elem(kernel_layout(d, d->type3)),
        kv_type(d), kv_type(d));
    put_matrix_consts(t, d, d->type, qd, "_q");
    put_matrix_consts(t, d, d->type2, kd, "_k");
    put_matrix_consts(t, d, d->type3, kd, "_v");
    if (put_matrix_readers(t, d, d->type, "WQ", "_q") || put_matrix_readers(t, d, d->type2, "WK", "_k") ||
        put_matrix_readers(t, d, d->type3, "WV", "_v"))
        t->oom = true;
    put_rows_dot(t, d, "rdot_q", d->type, 2, "WQ", "_q");
    put_rows_dot(t, d, "rdot_k", d->type2, 2, "WK", "_k");
    put_rows_dot(t, d, "rdot_v", d->type3, 2, "WV", "_v");
    put_main(t, d, "WG");
    put_mv_ri(t, d);
    put(t, "  let xo = X_OFF + (step.n_tokens - 1u) * COLS;\n"
           "  let pos = step.pos0 + step.n_tokens - 1u;\n");
    put_fused_norm(t, d, xs);
    /* pair p: matrix m (0 Q, 1 K, 2 V), rows a and b of it (a rotation pair) */
    put(t, "  let tt = ri %% T;\n"
           "  let p0 = (wid.x + wid.y * nwg.x) * GR + ri / T;\n"
           "  let p = min(p0, NPAIR - 1u);\n"
           "  var m = 0u; var lp = p;\n"
           "  if (p >= NQ / 2u + KD / 2u) { m = 2u; lp = p - NQ / 2u - KD / 2u; }\n"
           "  else if (p >= NQ / 2u) { m = 1u; lp = p - NQ / 2u; }\n"
           "  let h = lp / HALF; let i = lp %% HALF;\n");
    if (d->rope_kind == SL_ROPE_NORM) put(t, "  let a = h * HD + 2u * i; let b = a + 1u;\n");
    else put(t, "  let a = h * HD + i; let b = a + HALF;\n");
    put(t, "  var acc = vec4<f32>(0.0);\n");
    static const char *const m_sfx[3] = {"_q", "_k", "_v"};
    const sl_type m_type[3] = {d->type, d->type2, d->type3};
    for (int mi = 0; mi < 3; mi++) {
        char fn[16], rb[64];
        snprintf(fn, sizeof fn, "rdot%s", m_sfx[mi]);
        snprintf(rb, sizeof rb, "vec4<u32>(a * RB%s, b * RB%s, 0u, 0u)", m_sfx[mi], m_sfx[mi]);
        const mv_loop loop = {fn, "rb", "acc"};
        put(t, "  %sif (m == %du) {\n    let rb = %s;\n", mi ? "else " : "", mi, rb);
        put_mv_loop(t, mv_units(d, m_type[mi]), sh.T, mv_unroll(d, m_type[mi]), 1, &loop, "    ");
        put(t, "  }\n");
    }
    put_row_sum(t, d, &sh, xs, "acc", "res");
    put(t, "  if (tt == 0u && p0 < NPAIR) {\n"
           "    var x0 = res.x; var x1 = res.y;\n");
    if (d->has_bias)
        put(t, "    let bo = select(select(BQ, BK, m == 1u), BV, m == 2u);\n"
               "    x0 += vec1(bo + a); x1 += vec1(bo + b);\n");
    put(t, "    if (m < 2u) {\n"
           "      let cs = ROPE[(pos * HALF + i) * 2u]; let sn = ROPE[(pos * HALF + i) * 2u + 1u];\n"
           "      let y0 = x0 * cs - x1 * sn; let y1 = x0 * sn + x1 * cs;\n"
           "      if (m == 0u) { act_set(Y_OFF + a, y0); act_set(Y_OFF + b, y1); }\n"
           "      else { KC[pos * KD + a] = %s(y0); KC[pos * KD + b] = %s(y1); }\n"
           "    } else {\n"
           "      VC[pos * KD + a] = %s(x0); VC[pos * KD + b] = %s(x1);\n"
           "    }\n"
           "  }\n}\n",
        kv_store(d), kv_store(d), kv_store(d), kv_store(d));
}

/* Tiles of TM tokens x TN rows, TK columns at a time; 256 invocations, each
 * 2 tokens x 4 rows. Tiles in workgroup memory are padded against bank
 * conflicts. */
static void gen_matmul(text *t, const sl_gpu_kernel_desc *d) {
    put_weight_consts(t, d);
    put(t, "const TM: u32 = 32u;\nconst TN: u32 = 64u;\nconst TK: u32 = 32u;\nconst TKP: u32 = 33u;\n"
           "@group(0) @binding(2) var<storage, read_write> X: array<%s>;\n"
           "@group(0) @binding(3) var<storage, read_write> Y: array<f32>;\n",
        d->cols % 4 == 0 ? "vec4<f32>" : "f32");
    if (d->epilogue == SL_EPI_BIAS || d->epilogue == SL_EPI_SILU_MUL)
        put(t, "@group(0) @binding(4) var<storage, read_write> A: array<f32>;\n");
    put(t, "var<workgroup> Xs: array<f32, 1056>;\n" /* TM * TKP */
           "var<workgroup> Ws: array<f32, 2112>;\n"); /* TN * TKP */
    put_decoder(t, d->type, d->cols, kernel_layout(d, d->type));
    put_main(t, d, "256");
    put(t, "  let n = step.n_tokens;\n"
           "  let r0 = wid.x * TN; let t0 = wid.y * TM;\n"
           "  if (t0 >= n) { return; }\n"
           "  let tx = lid & 15u; let ty = lid >> 4u;\n"
           "  let wr = lid >> 2u; let wk = (lid & 3u) * 8u;\n"
           "  let xt = lid >> 3u; let xk = (lid & 7u) * 4u;\n"
           "  let xi = t0 + xt;\n"
           /* acc0, acc1: tokens 2ty and 2ty+1 x rows tx, tx+16, tx+32, tx+48 */
           "  var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0);\n"
           "  for (var k0 = 0u; k0 < COLS; k0 += TK) {\n"
           "    var w = W8(vec4<f32>(0.0), vec4<f32>(0.0));\n"
           "    if (r0 + wr < NROWS && k0 + wk < COLS) { w = w8((r0 + wr) * ROW_BYTES, k0 + wk); }\n"
           "    let ws = wr * TKP + wk;\n"
           "    Ws[ws] = w.a.x; Ws[ws + 1u] = w.a.y; Ws[ws + 2u] = w.a.z; Ws[ws + 3u] = w.a.w;\n"
           "    Ws[ws + 4u] = w.b.x; Ws[ws + 5u] = w.b.y; Ws[ws + 6u] = w.b.z; Ws[ws + 7u] = w.b.w;\n"
           "    let k = k0 + xk;\n"
           "    var xv = vec4<f32>(0.0);\n"
           "    if (xi < n) {\n"
           "      let xo = xi * COLS + k;\n");
    if (d->cols % 4)
        put(t, "      xv = select(vec4<f32>(0.0), vec4<f32>(X[xo], X[xo + 1u], X[xo + 2u], X[xo + 3u]),\n"
               "                  vec4<u32>(k) + SH1 < vec4<u32>(COLS));\n");
    else
        put(t, "      if (k < COLS) { xv = X[xo >> 2u]; }\n");
    put(t, "    }\n"
           "    let xs = xt * TKP + xk;\n"
           "    Xs[xs] = xv.x; Xs[xs + 1u] = xv.y; Xs[xs + 2u] = xv.z; Xs[xs + 3u] = xv.w;\n"
           "    workgroupBarrier();\n"
           "    let x0o = (ty * 2u) * TKP; let x1o = x0o + TKP; let wo = tx * TKP;\n"
           "    for (var kk = 0u; kk < TK; kk++) {\n"
           "      let wv = vec4<f32>(Ws[wo + kk], Ws[wo + 16u * TKP + kk], Ws[wo + 32u * TKP + kk], Ws[wo + 48u * TKP + kk]);\n"
           "      acc0 += Xs[x0o + kk] * wv;\n"
           "      acc1 += Xs[x1o + kk] * wv;\n"
           "    }\n"
           "    workgroupBarrier();\n"
           "  }\n");
    /* the 8 results, unrolled: token 2ty+i, row tx+16j */
    static const char *const comp = "xyzw";
    for (int i = 0; i < 2; i++) {
        put(t, "  if (t0 + ty * 2u + %du < n) {\n    let tt = t0 + ty * 2u + %du;\n", i, i);
        for (int j = 0; j < 4; j++) {
            put(t, "    if (r0 + tx + %du < NROWS) {\n      let r = r0 + tx + %du;\n      let v = acc%d.%c;\n"
                   "      let idx = tt * OUT_STRIDE + ROW0 + r;\n",
                16 * j, 16 * j, i, comp[j]);
            put_epilogue(t, d->epilogue, "idx", "ROW0 + r", "      ");
            put(t, "    }\n");
        }
        put(t, "  }\n");
    }
    put(t, "}\n");
}

/* ---- mat-mul with the int8 token (prefill) ------------------------------- */

/* Matrices in a GPU layout, with int8_dot: a workgroup computes a tile of BM
 * tokens x BN rows, 32 columns (one int8 block of the token) per step. Each
 * step the workgroup loads the tile's weights as int8 words (Q4_0 and Q6_K
 * with their offsets -8 and -32 folded in; Q4_K's nibbles as they are) with
 * one or two scales per row (Q4_0, Q8_0: d; Q4_K: d * scale and dmin * min
 * of the sub-block; Q6_K: d * scale of each 16), and quantizes the tile's
 * tokens: XP invocations per token each load 32 / XP floats, their largest
 * magnitudes meet in workgroup memory, and each packs its part as int8 with
 * the block's scale (and, for Q4_K's mins, sums its quants: the mins take
 * the sum of the quantized token, as llama.cpp's Q8_1, whose rounding
 * errors then cancel those of the scaled quants: with the sum of the floats
 * the error was twice as large). Then every invocation
 * computes TM tokens x TN rows (tokens tq + i NTT, rows tr + j NTR: a
 * subgroup's rows are consecutive, its tokens few, so the tile reads are
 * conflict-free or broadcast) with dot4I8Packed, f32 accumulation per
 * block. Tiles are rows of 3 vec4 (2 used: an odd stride spreads 16-byte
 * reads over the banks). Workgroup memory: (BN + BM) x 48 bytes of quants,
 * BN x 8 + BM x 4 of scales, 256 x 8 for the quantization's reductions. */
typedef struct mm_shape {
    uint32_t BM, BN;   /* tokens and rows per workgroup */
    uint32_t TM, TN;   /* tokens and rows per invocation */
    uint32_t NTT, NTR; /* invocations along tokens and rows (NTT x NTR = 256) */
} mm_shape;

#define MM_DEFAULT_TOKENS 64u
#define MM_DEFAULT_ROWS 64u
#define MM_DEFAULT_INV_TOKENS 2u
#define MM_WG 256u
#define MM_MAX_RESULTS 64u

static uint64_t mm_int8_bytes(uint32_t BM, uint32_t BN) {
    return (uint64_t)(BM + BN) * 48 + (uint64_t)BN * 8 + (uint64_t)BM * 4 + MM_WG * 8;
}

bool sl_gpu_matmul_tuning_ok(uint32_t tokens, uint32_t rows, uint32_t inv_tokens, uint32_t max_wg_storage) {
    if (!tokens && !rows && !inv_tokens) return true;
    const uint32_t BM = tokens ? tokens : MM_DEFAULT_TOKENS, BN = rows ? rows : MM_DEFAULT_ROWS,
                   TM = inv_tokens ? inv_tokens : MM_DEFAULT_INV_TOKENS;
    if ((BM != 32 && BM != 64 && BM != 128 && BM != 256) || BN % 16 || BN == 0 || BN > 256 || BM % TM) return false;
    const uint32_t NTT = BM / TM;
    if (NTT == 0 || MM_WG % NTT || BN % (MM_WG / NTT)) return false;
    const uint32_t TN = BN / (MM_WG / NTT);
    const uint64_t cap = max_wg_storage ? max_wg_storage : 16384;
    return TM * TN <= MM_MAX_RESULTS && mm_int8_bytes(BM, BN) <= cap;
}

/* Whether the mat-mul takes the int8 token (as decode's mat-vecs do). */
static bool mm_int8(const sl_gpu_kernel_desc *d) {
    const sl_gpu_layout *lay = kernel_layout(d, d->type);
    return d->kernel == SL_GK_MATMUL && d->int8_dot && lay && d->cols % lay->block_elems == 0;
}

static mm_shape mm_shape_of(const sl_gpu_kernel_desc *d) {
    if (!mm_int8(d)) return (mm_shape){32, 64, 2, 4, 16, 16}; /* the f32 kernel's */
    uint32_t BM = MM_DEFAULT_TOKENS, BN = MM_DEFAULT_ROWS, TM = MM_DEFAULT_INV_TOKENS;
    if (sl_gpu_matmul_tuning_ok(d->mm_tokens, d->mm_rows, d->mm_inv_tokens, d->max_wg_storage)) {
        if (d->mm_tokens) BM = d->mm_tokens;
        if (d->mm_rows) BN = d->mm_rows;
        if (d->mm_inv_tokens) TM = d->mm_inv_tokens;
    }
    const uint32_t NTT = BM / TM, NTR = MM_WG / NTT;
    return (mm_shape){BM, BN, TM, BN / NTR, NTT, NTR};
}

/* The tile loader of one row's step: wa, wb (elements 0-15, 16-31 of the
 * 32 as int8 words) and ws (scales) of row r, block of 32 kb. */
static void put_mm_weight_loader(text *t, sl_type type) {
    put(t, "      let m4 = vec4<u32>(0x0f0f0f0fu);\n");
    switch (type) {
    case SL_TYPE_Q4_0: /* nibble q - 8 as int8: (q + 0x78) ^ 0x80 per byte */
        put(t, "      let b = r * NBR + kb; let q = W[b];\n"
               "      let o8 = vec4<u32>(0x78787878u); let s8 = vec4<u32>(0x80808080u);\n"
               "      wa = ((q & m4) + o8) ^ s8; wb = (((q >> vec4<u32>(4u)) & m4) + o8) ^ s8;\n"
               "      ws = vec2<f32>(wdh(NB * 8u + b), 0.0);\n");
        break;
    case SL_TYPE_Q8_0:
        put(t, "      let b = r * NBR + kb;\n"
               "      wa = W[b]; wb = W[NB + b]; ws = vec2<f32>(wdh(NB * 16u + b), 0.0);\n");
        break;
    case SL_TYPE_Q4_K: /* sub-block i of half h: low nibbles of words 0-1 (i = 0), high (1), of words 2-3 (2, 3) */
        put(t, "      let blk = r * NBR + (kb >> 3u); let sub = kb & 7u; let i = sub & 3u;\n"
               "      let nu = 2u * NB; let wo = (i >> 1u) * 2u * nu + 2u * blk + (sub >> 2u);\n"
               "      let sh = vec4<u32>((i & 1u) * 4u);\n"
               "      wa = (W[wo] >> sh) & m4; wb = (W[wo + nu] >> sh) & m4;\n"
               "      let S = W[NB * 8u + blk];\n"
               "      let y = (S.y >> (8u * i)) & 255u; let z = (S.z >> (8u * i)) & 255u; let w = (S.w >> (8u * i)) & 255u;\n"
               "      var sc = y & 63u; var mn = z & 63u;\n"
               "      if (sub >= 4u) { sc = (w & 15u) | ((y >> 6u) << 4u); mn = (w >> 4u) | ((z >> 6u) << 4u); }\n"
               "      let dm = unpack2x16float(S.x); ws = vec2<f32>(dm.x * f32(sc), dm.y * f32(mn));\n");
        break;
    case SL_TYPE_Q6_K:
        /* part p of half h: positions 0-15 from ql word 2 (p & 1) and qh word 0,
         * 16-31 from ql word 2 (p & 1) + 1 and qh word 1; 6 bits - 32 as int8:
         * (q + 0x60) ^ 0x80 per byte; scales 8h + 2p and 8h + 2p + 1 */
        put(t, "      let blk = r * NBR + (kb >> 3u); let sub = kb & 7u; let p = sub & 3u;\n"
               "      let nu = 2u * NB; let ug = 2u * blk + (sub >> 2u); let lo = 2u * (p & 1u) * nu + ug;\n"
               "      let sl = vec4<u32>((p >> 1u) * 4u); let sq = vec4<u32>(2u * p); let m2 = vec4<u32>(0x03030303u);\n"
               "      let s4 = vec4<u32>(4u); let o8 = vec4<u32>(0x60606060u); let s8 = vec4<u32>(0x80808080u);\n"
               "      wa = ((((W[lo] >> sl) & m4) | (((W[4u * nu + ug] >> sq) & m2) << s4)) + o8) ^ s8;\n"
               "      wb = ((((W[lo + nu] >> sl) & m4) | (((W[5u * nu + ug] >> sq) & m2) << s4)) + o8) ^ s8;\n"
               "      let si = 8u * (sub >> 2u) + 2u * p;\n"
               "      let sv = W[NB * 12u + blk][si >> 2u] >> (8u * (si & 3u));\n"
               "      ws = wdh(NB * 104u + blk) * vec2<f32>(f32(bitcast<i32>(sv << 24u) >> 24u), f32(bitcast<i32>(sv << 16u) >> 24u));\n");
        break;
    default: break;
    }
}

static void gen_matmul_int8(text *t, const sl_gpu_kernel_desc *d) {
    const mm_shape sh = mm_shape_of(d);
    const sl_gpu_layout *lay = kernel_layout(d, d->type);
    const uint32_t XP = MM_WG / sh.BM, WPJ = 8 / XP; /* parts per token, words (of 4 int8) per part */
    put_weight_consts(t, d);
    put(t, "const NBR: u32 = %uu;\nconst NKB: u32 = %uu;\nconst BM: u32 = %uu;\nconst BN: u32 = %uu;\n"
           "const NTT: u32 = %uu;\nconst NTR: u32 = %uu;\nconst XP: u32 = %uu;\nconst WPJ: u32 = %uu;\n"
           "@group(0) @binding(2) var<storage, read_write> X: array<vec4<f32>>;\n"
           "@group(0) @binding(3) var<storage, read_write> Y: array<f32>;\n",
        d->cols / lay->block_elems, d->cols / 32, sh.BM, sh.BN, sh.NTT, sh.NTR, XP, WPJ);
    if (d->epilogue == SL_EPI_BIAS || d->epilogue == SL_EPI_SILU_MUL)
        put(t, "@group(0) @binding(4) var<storage, read_write> A: array<f32>;\n");
    put(t, "var<workgroup> WQ: array<vec4<u32>, %uu>;\n" /* BN x 3 */
           "var<workgroup> XQ: array<vec4<u32>, %uu>;\n" /* BM x 3 */
           "var<workgroup> WSC: array<vec2<f32>, BN>;\n"
           "var<workgroup> XD: array<f32, BM>;\n"     /* the token block's scale */
           "var<workgroup> XA: array<f32, %uu>;\n"     /* each part's largest magnitude */
           "var<workgroup> XI: array<i32, %uu>;\n"     /* each part's sum of quants (Q4_K) */
           "%s%s",
        sh.BN * 3, sh.BM * 3, MM_WG, MM_WG, LAYOUT_READERS, INT8_DOT16);
    put_main(t, d, "256");
    put(t, "  let n = step.n_tokens;\n"
           "  let r0 = wid.x * BN; let t0 = wid.y * BM;\n"
           "  if (t0 >= n) { return; }\n"
           "  let xt = lid / XP; let xp = lid %% XP; let tok = t0 + xt;\n"
           "  let tr = lid %% NTR; let tq = lid / NTR;\n");
    for (uint32_t i = 0; i < sh.TM; i++)
        for (uint32_t j = 0; j < sh.TN; j++) put(t, "  var c%u_%u = 0.0;\n", i, j);
    put(t, "  for (var kb = 0u; kb < NKB; kb++) {\n");
    /* the step's weights: row lid of the tile */
    put(t, "    %s{\n"
           "      let r = r0 + lid; var wa = vec4<u32>(0u); var wb = vec4<u32>(0u); var ws = vec2<f32>(0.0);\n"
           "      if (r < NROWS) {\n",
        sh.BN < MM_WG ? "if (lid < BN) " : "");
    put_mm_weight_loader(t, d->type);
    put(t, "      }\n"
           "      WQ[lid * 3u] = wa; WQ[lid * 3u + 1u] = wb; WSC[lid] = ws;\n"
           "    }\n");
    /* the step's tokens: part xp of token xt, 32 / XP floats */
    for (uint32_t w = 0; w < WPJ; w++) put(t, "    var xf%u = vec4<f32>(0.0);\n", w);
    put(t, "    if (tok < n) {\n      let xo = tok * (COLS / 4u) + kb * 8u + xp * WPJ;\n");
    for (uint32_t w = 0; w < WPJ; w++) put(t, "      xf%u = X[xo + %uu];\n", w, w);
    put(t, "    }\n    var xm = abs(xf0);\n");
    for (uint32_t w = 1; w < WPJ; w++) put(t, "    xm = max(xm, abs(xf%u));\n", w);
    put(t, "    XA[lid] = max(max(xm.x, xm.y), max(xm.z, xm.w));\n"
           "    workgroupBarrier();\n"
           "    {\n"
           "      var am = XA[xt * XP];\n");
    for (uint32_t k = 1; k < XP; k++) put(t, "      am = max(am, XA[xt * XP + %uu]);\n", k);
    put(t, "      let dx = am / 127.0; let id = select(0.0, 1.0 / dx, dx > 0.0);\n"
           "      var qs = vec4<i32>(0);\n");
    for (uint32_t w = 0; w < WPJ; w++)
        put(t, "      { let wi = xp * WPJ + %uu; let q = vec4<i32>(round(xf%u * id)); qs += q;\n"
               "        XQ[xt * 3u + (wi >> 2u)][wi & 3u] = pack4xI8(q); }\n",
            w, w);
    put(t, "      XI[lid] = (qs.x + qs.y) + (qs.z + qs.w);\n"
           "      if (xp == 0u) { XD[xt] = dx; }\n"
           "    }\n"
           "    workgroupBarrier();\n");
    /* the products: TM tokens x TN rows */
    for (uint32_t i = 0; i < sh.TM; i++) {
        put(t, "    let xa%u = XQ[(tq + %uu) * 3u]; let xb%u = XQ[(tq + %uu) * 3u + 1u]; let xd%u = XD[tq + %uu];\n", i,
            i * sh.NTT, i, i * sh.NTT, i, i * sh.NTT);
        if (d->type == SL_TYPE_Q4_K) {
            /* the scale times the sum of the block's quants */
            put(t, "    let xs%u = xd%u * f32(XI[(tq + %uu) * XP]", i, i, i * sh.NTT);
            for (uint32_t k = 1; k < XP; k++) put(t, " + XI[(tq + %uu) * XP + %uu]", i * sh.NTT, k);
            put(t, ");\n");
        }
    }
    for (uint32_t j = 0; j < sh.TN; j++) {
        put(t, "    {\n      let wo = (tr + %uu) * 3u; let wa = WQ[wo]; let wb = WQ[wo + 1u]; let ws = WSC[tr + %uu];\n",
            j * sh.NTR, j * sh.NTR);
        for (uint32_t i = 0; i < sh.TM; i++) {
            if (d->type == SL_TYPE_Q6_K)
                put(t, "      c%u_%u += (ws.x * f32(d16(wa, xa%u)) + ws.y * f32(d16(wb, xb%u))) * xd%u;\n", i, j, i, i, i);
            else if (d->type == SL_TYPE_Q4_K)
                put(t, "      c%u_%u += f32(d16(wa, xa%u) + d16(wb, xb%u)) * (ws.x * xd%u) - ws.y * xs%u;\n", i, j, i, i,
                    i, i);
            else
                put(t, "      c%u_%u += f32(d16(wa, xa%u) + d16(wb, xb%u)) * (ws.x * xd%u);\n", i, j, i, i, i);
        }
        put(t, "    }\n");
    }
    put(t, "    workgroupBarrier();\n  }\n");
    for (uint32_t i = 0; i < sh.TM; i++) {
        put(t, "  {\n    let tt = t0 + tq + %uu;\n    if (tt < n) {\n", i * sh.NTT);
        for (uint32_t j = 0; j < sh.TN; j++) {
            put(t, "      { let r = r0 + tr + %uu; let v = c%u_%u;\n        if (r < NROWS) {\n"
                   "          let idx = tt * OUT_STRIDE + ROW0 + r;\n",
                j * sh.NTR, i, j);
            put_epilogue(t, d->epilogue, "idx", "ROW0 + r", "          ");
            put(t, "        }\n      }\n");
        }
        put(t, "    }\n  }\n");
    }
    put(t, "}\n");
}

static void gen_embed(text *t, const sl_gpu_kernel_desc *d) {
    put_weight_consts(t, d);
    put(t, "@group(0) @binding(2) var<storage, read> TOK: array<u32>;\n"
           "@group(0) @binding(3) var<storage, read_write> Y: array<f32>;\n");
    put_decoder(t, d->type, d->cols, kernel_layout(d, d->type));
    put_main(t, d, "64");
    put(t, "  let tt = wid.y;\n"
           "  if (tt >= step.n_tokens) { return; }\n"
           "  let id = TOK[tt];\n"
           "  if (id < ROW0 || id >= ROW0 + NROWS) { return; }\n"
           "  let e = (wid.x * 64u + lid) * 8u;\n"
           "  if (e >= COLS) { return; }\n"
           "  let w = w8((id - ROW0) * ROW_BYTES, e);\n"
           "  var vals = array<f32, 8>(w.a.x, w.a.y, w.a.z, w.a.w, w.b.x, w.b.y, w.b.z, w.b.w);\n"
           "  for (var k = 0u; k < 8u; k++) {\n"
           "    if (e + k < COLS) { Y[tt * COLS + e + k] = vals[k]; }\n"
           "  }\n}\n");
}

static void gen_rmsnorm(text *t, const sl_gpu_kernel_desc *d) {
    char eps[32];
    put(t, "const N: u32 = %uu;\nconst EPS: f32 = %s;\nconst WG: u32 = 256u;\n"
           "@group(0) @binding(1) var<storage, read_write> X: array<f32>;\n"
           "@group(0) @binding(2) var<storage, read_write> Y: array<f32>;\n"
           "@group(0) @binding(3) var<storage, read> G: array<f32>;\n"
           "var<workgroup> red: array<f32, WG>;\n",
        d->n, flt(eps, d->eps));
    put_reduce(t, d, "sum_wg", false);
    put_main(t, d, "WG");
    put(t, "  let tt = wid.x;\n"
           "  if (tt >= step.n_tokens) { return; }\n"
           "  let o = tt * N;\n"
           "  var ss = 0.0;\n"
           "  for (var i = lid; i < N; i += WG) { let v = X[o + i]; ss += v * v; }\n"
           "  let total = sum_wg(lid, ss);\n"
           "  let scale = 1.0 / sqrt(total / f32(N) + EPS);\n"
           "  for (var i = lid; i < N; i += WG) { Y[o + i] = X[o + i] * scale * G[i]; }\n"
           "}\n");
}

/* RoPE pair i of a head: the two element indexes it rotates. */
static void put_rope_pair(text *t, sl_rope_kind kind) {
    if (kind == SL_ROPE_NORM) put(t, "    let a = 2u * i; let b = 2u * i + 1u;\n");
    else put(t, "    let a = i; let b = i + HALF;\n");
}

static void put_head_consts(text *t, const sl_gpu_kernel_desc *d) {
    char eps[32];
    put(t, "const NH: u32 = %uu;\nconst NKV: u32 = %uu;\nconst HD: u32 = %uu;\nconst NROT: u32 = %uu;\n"
           "const HALF: u32 = %uu;\nconst EPS: f32 = %s;\nconst WG: u32 = 64u;\n",
        d->n_head, d->n_head_kv, d->head_dim, d->n_rot, d->n_rot / 2, flt(eps, d->eps));
}

static void gen_rope(text *t, const sl_gpu_kernel_desc *d, bool is_q) {
    put_head_consts(t, d);
    if (is_q)
        put(t, "@group(0) @binding(1) var<storage, read_write> S: array<f32>;\n"
               "@group(0) @binding(2) var<storage, read> ROPE: array<f32>;\n");
    else
        put(t, "@group(0) @binding(1) var<storage, read_write> S: array<f32>;\n"
               "@group(0) @binding(2) var<storage, read_write> V: array<f32>;\n"
               "@group(0) @binding(3) var<storage, read_write> KC: array<%s>;\n"
               "@group(0) @binding(4) var<storage, read_write> VC: array<%s>;\n"
               "@group(0) @binding(5) var<storage, read> ROPE: array<f32>;\n",
            kv_type(d), kv_type(d));
    if (d->qk_norm) put(t, "@group(0) @binding(%d) var<storage, read> NW: array<f32>;\n", is_q ? 3 : 6);
    put(t, "var<workgroup> red: array<f32, WG>;\n");
    put_reduce(t, d, "sum_wg", false);
    put_main(t, d, "WG");
    put(t, "  let tt = wid.y; let h = wid.x;\n"
           "  if (tt >= step.n_tokens) { return; }\n"
           "  let pos = step.pos0 + tt;\n"
           "  let src = tt * (%s * HD) + h * HD;\n",
        is_q ? "NH" : "NKV");
    if (!is_q) put(t, "  let dst = pos * (NKV * HD) + h * HD;\n");
    if (d->qk_norm)
        put(t, "  var ss = 0.0;\n"
               "  for (var i = lid; i < HD; i += WG) { let v = S[src + i]; ss += v * v; }\n"
               "  let scale = 1.0 / sqrt(sum_wg(lid, ss) / f32(HD) + EPS);\n");
    /* value of element k of the head after the optional norm */
    const char *val_a = d->qk_norm ? "S[src + a] * scale * NW[a]" : "S[src + a]";
    const char *val_b = d->qk_norm ? "S[src + b] * scale * NW[b]" : "S[src + b]";
    put(t, "  for (var i = lid; i < HALF; i += WG) {\n");
    put_rope_pair(t, d->rope_kind);
    /* K is rotated in f32 and rounded once, when stored (f16 caches) */
    const char *cv = is_q ? "" : kv_store(d);
    put(t, "    let cs = ROPE[(pos * HALF + i) * 2u]; let sn = ROPE[(pos * HALF + i) * 2u + 1u];\n"
           "    let x0 = %s; let x1 = %s;\n"
           "    %s[%s + a] = %s(x0 * cs - x1 * sn);\n"
           "    %s[%s + b] = %s(x0 * sn + x1 * cs);\n"
           "  }\n",
        val_a, val_b, is_q ? "S" : "KC", is_q ? "src" : "dst", cv, is_q ? "S" : "KC", is_q ? "src" : "dst", cv);
    /* dimensions past n_rot: normed (if so) and, for K, copied */
    if (d->n_rot < d->head_dim && (d->qk_norm || !is_q)) {
        put(t, "  for (var a = NROT + lid; a < HD; a += WG) { %s[%s + a] = %s(%s); }\n", is_q ? "S" : "KC",
            is_q ? "src" : "dst", cv, val_a);
    }
    if (!is_q) put(t, "  for (var k = lid; k < HD; k += WG) { VC[dst + k] = %s(V[src + k]); }\n", cv);
    put(t, "}\n");
}

static void put_attn_consts(text *t, const sl_gpu_kernel_desc *d, uint32_t wg) {
    char sc[32];
    put(t, "const NH: u32 = %uu;\nconst NKV: u32 = %uu;\nconst HD: u32 = %uu;\nconst GQA: u32 = %uu;\n"
           "const KD: u32 = %uu;\nconst SCALE: f32 = %s;\nconst WG: u32 = %uu;\n"
           "const KS: u32 = %uu;\nconst NSPLIT: u32 = %uu;\n",
        d->n_head, d->n_head_kv, d->head_dim, d->n_head / d->n_head_kv, d->n_head_kv * d->head_dim,
        flt(sc, 1.0f / sqrtf((float)d->head_dim)), wg, d->keys_per_split ? d->keys_per_split : 1,
        d->n_splits ? d->n_splits : 1);
}

/* Decode attention reads K and V as vec4 when a head's size allows. */
static bool attn_decode_v4(const sl_gpu_kernel_desc *d) { return d->head_dim % 4 == 0 && d->head_dim / 4 <= 128; }

/* Decode: scores of one split of keys, softmax within it, weighted sum of V:
 * partials for the merge, or, with attn_direct (a single split), the
 * output itself. With vec4 access (attn_decode_v4), the weighted sum runs on
 * G = WG / (HD/4) groups of keys at once, each invocation 4 dimensions of
 * every G-th key, 4 keys per loop step: their loads in flight together (one
 * key at a time, each step waited for its load: the kernel was bound by
 * that latency, 22 us per layer of Llama-3.1-8B on an H200). */
static void gen_attn_decode(text *t, const sl_gpu_kernel_desc *d) {
    const bool v4 = attn_decode_v4(d);
    put_attn_consts(t, d, v4 ? 256 : 64);
    const char *kt = kv_type(d);
    put(t, "@group(0) @binding(1) var<storage, read_write> Q: array<f32>;\n"
           "@group(0) @binding(2) var<storage, read> KC: array<%s%s%s>;\n"
           "@group(0) @binding(3) var<storage, read> VC: array<%s%s%s>;\n"
           "@group(0) @binding(4) var<storage, read_write> P: array<f32>;\n"
           "var<workgroup> red: array<f32, WG>;\n"
           "var<workgroup> qs: array<f32, HD>;\n"
           "var<workgroup> sc: array<f32, KS>;\n",
        v4 ? "vec4<" : "", kt, v4 ? ">" : "", v4 ? "vec4<" : "", kt, v4 ? ">" : "");
    if (v4) put(t, "const D4: u32 = HD / 4u;\nconst G: u32 = WG / D4;\nvar<workgroup> pv: array<vec4<f32>, WG>;\n");
    put_reduce(t, d, "sum_wg", false);
    put_reduce(t, d, "max_wg", true);
    put_main(t, d, "WG");
    put(t, "  let h = wid.x; let sp = wid.y;\n"
           "  let nkv = step.n_kv;\n"
           "  let s0 = sp * KS;\n"
           "  if (s0 >= nkv) { return; }\n"
           "  let s1 = min(nkv, s0 + KS);\n"
           "  let kvo = (h / GQA) * HD;\n"
           "  for (var k = lid; k < HD; k += WG) { qs[k] = Q[h * HD + k]; }\n"
           "  workgroupBarrier();\n"
           "  var mx = -3.0e38;\n"
           "  for (var s = s0 + lid; s < s1; s += WG) {\n"
           "    var dt = 0.0;\n");
    if (v4)
        put(t, "    let kb = (s * KD + kvo) / 4u;\n"
               "    for (var k = 0u; k < D4; k++) {\n"
               "      dt += dot(vec4<f32>(qs[4u * k], qs[4u * k + 1u], qs[4u * k + 2u], qs[4u * k + 3u]), vec4<f32>(KC[kb + k]));\n"
               "    }\n");
    else put(t, "    for (var k = 0u; k < HD; k++) { dt += qs[k] * %s(KC[s * KD + kvo + k]); }\n", kv_load(d));
    put(t, "    let v = dt * SCALE;\n"
           "    sc[s - s0] = v;\n"
           "    mx = max(mx, v);\n"
           "  }\n"
           "  let m = max_wg(lid, mx);\n"
           "  var sm = 0.0;\n"
           "  for (var s = s0 + lid; s < s1; s += WG) { let p = exp(sc[s - s0] - m); sc[s - s0] = p; sm += p; }\n"
           "  let l = sum_wg(lid, sm);\n"
           "  let po = (h * NSPLIT + sp) * (HD + 2u);\n");
    /* out(k, v): dimension k of the result */
    const char *out = d->attn_direct ? "P[h * HD + %s] = %s / l;" : "P[po + 2u + %s] = %s;";
    if (v4) {
        put(t, "  let g = lid / D4; let dd = lid %% D4;\n"
               "  var acc = vec4<f32>(0.0);\n"
               "  if (g < G) {\n"
               "    let vo = kvo / 4u + dd;\n"
               "    var s = s0 + g;\n"
               "    for (; s + 3u * G < s1; s += 4u * G) {\n"
               "      let v0 = vec4<f32>(VC[s * (KD / 4u) + vo]); let v1 = vec4<f32>(VC[(s + G) * (KD / 4u) + vo]);\n"
               "      let v2 = vec4<f32>(VC[(s + 2u * G) * (KD / 4u) + vo]); let v3 = vec4<f32>(VC[(s + 3u * G) * (KD / 4u) + vo]);\n"
               "      acc += (sc[s - s0] * v0 + sc[s + G - s0] * v1) + (sc[s + 2u * G - s0] * v2 + sc[s + 3u * G - s0] * v3);\n"
               "    }\n"
               "    for (; s < s1; s += G) { acc += sc[s - s0] * vec4<f32>(VC[s * (KD / 4u) + vo]); }\n"
               "  }\n"
               "  pv[lid] = acc;\n"
               "  workgroupBarrier();\n"
               "  if (lid < D4) {\n"
               "    var a = pv[lid];\n"
               "    for (var j = 1u; j < G; j++) { a += pv[j * D4 + lid]; }\n");
        for (int c = 0; c < 4; c++) {
            char kx[32], vx[16];
            snprintf(kx, sizeof kx, "4u * lid + %du", c);
            snprintf(vx, sizeof vx, "a.%c", "xyzw"[c]);
            put(t, "    ");
            put(t, out, kx, vx);
            put(t, "\n");
        }
        put(t, "  }\n");
    } else {
        put(t, "  for (var k = lid; k < HD; k += WG) {\n"
               "    var acc = 0.0;\n"
               "    for (var s = s0; s < s1; s++) { acc += sc[s - s0] * %s(VC[s * KD + kvo + k]); }\n"
               "    ",
            kv_load(d));
        put(t, out, "k", "acc");
        put(t, "\n  }\n");
    }
    if (!d->attn_direct) put(t, "  if (lid == 0u) { P[po] = m; P[po + 1u] = l; }\n");
    put(t, "}\n");
}

static void gen_attn_merge(text *t, const sl_gpu_kernel_desc *d) {
    put_attn_consts(t, d, 64);
    put(t, "@group(0) @binding(1) var<storage, read_write> P: array<f32>;\n"
           "@group(0) @binding(2) var<storage, read_write> O: array<f32>;\n");
    put_main(t, d, "WG");
    put(t, "  let h = wid.x;\n"
           "  let ns = (step.n_kv + KS - 1u) / KS;\n"
           "  var m = -3.0e38;\n"
           "  for (var sp = 0u; sp < ns; sp++) { m = max(m, P[(h * NSPLIT + sp) * (HD + 2u)]); }\n"
           "  var l = 0.0;\n"
           "  for (var sp = 0u; sp < ns; sp++) {\n"
           "    let po = (h * NSPLIT + sp) * (HD + 2u);\n"
           "    l += P[po + 1u] * exp(P[po] - m);\n"
           "  }\n"
           "  for (var k = lid; k < HD; k += WG) {\n"
           "    var acc = 0.0;\n"
           "    for (var sp = 0u; sp < ns; sp++) {\n"
           "      let po = (h * NSPLIT + sp) * (HD + 2u);\n"
           "      acc += P[po + 2u + k] * exp(P[po] - m);\n"
           "    }\n"
           "    O[h * HD + k] = acc / l;\n"
           "  }\n"
           "}\n");
}

/* Prefill: one workgroup per (head, token); keys in chunks of WG with an
 * online softmax; each invocation keeps ceil(HD / WG) output dimensions. */
/* Prefill attention in tiles (attn_prefill_tiled): a workgroup takes
 * PQ = 64 queries of one head and goes over their keys BK at a time, each
 * key's K and V loaded once into workgroup memory for all 64 (one
 * workgroup per query read every key from memory for itself: Llama-3.2-1B's
 * pp512 spent 21 of its 96 ms there on an H200; with tiles of 32 queries
 * 7.1 ms, of 64 5.5). Invocation lid scores query lid / 4 against keys
 * lid % 4, + 4, ... of the tile, the query in registers; then the 4
 * invocations of a query each keep a quarter of its output dimensions,
 * and all 4 the same online-softmax state (max m, sum l). The tile's K or
 * V (BK x HD floats) and its scores (PQ x BK) fill at most 8 KiB each, so
 * the kernel fits the core 16 KiB of workgroup memory. */
#define ATTN_TPQ 4u             /* invocations per query */
#define ATTN_PQ (256 / ATTN_TPQ) /* queries per workgroup */
static uint32_t attn_prefill_bk(const sl_gpu_kernel_desc *d) {
    const uint32_t bk = 2048 / d->head_dim, cap = 2048 / ATTN_PQ;
    return bk > cap ? cap : bk;
}
static bool attn_prefill_tiled(const sl_gpu_kernel_desc *d) {
    return d->head_dim % 4 == 0 && d->head_dim <= 256;
}

static void gen_attn_prefill_tiled(text *t, const sl_gpu_kernel_desc *d) {
    put_attn_consts(t, d, 256);
    const uint32_t hd4 = d->head_dim / 4;
    put(t, "const PQ: u32 = %uu;\nconst TPQ: u32 = %uu;\nconst BK: u32 = %uu;\nconst HD4: u32 = %uu;\nconst DPT: u32 = %uu;\n"
           "@group(0) @binding(1) var<storage, read_write> Q: array<f32>;\n"
           "@group(0) @binding(2) var<storage, read> KC: array<%s>;\n"
           "@group(0) @binding(3) var<storage, read> VC: array<%s>;\n"
           "@group(0) @binding(4) var<storage, read_write> O: array<f32>;\n"
           /* the tile's K, then its V: [BK][HD4] */
           "var<workgroup> KV: array<vec4<f32>, %uu>;\n"
           /* scores [PQ][BK] */
           "var<workgroup> S: array<f32, %uu>;\n",
        ATTN_PQ, ATTN_TPQ, attn_prefill_bk(d), hd4, (hd4 + ATTN_TPQ - 1) / ATTN_TPQ, kv_type(d), kv_type(d),
        attn_prefill_bk(d) * hd4, ATTN_PQ * attn_prefill_bk(d));
    /* key s's vec4 j of K or V, zero past the block's last key */
    put(t, "fn load_tile(lid: u32, k0: u32, nkb: u32, kvo: u32, v: bool) {\n"
           "  for (var i = lid; i < BK * HD4; i += WG) {\n"
           "    let s = k0 + i / HD4; let e = s * KD + kvo + 4u * (i %% HD4);\n"
           "    var x = vec4<f32>(0.0);\n"
           "    if (s < nkb) {\n"
           "      if (v) { x = vec4<f32>(%s(VC[e]), %s(VC[e + 1u]), %s(VC[e + 2u]), %s(VC[e + 3u])); }\n"
           "      else { x = vec4<f32>(%s(KC[e]), %s(KC[e + 1u]), %s(KC[e + 2u]), %s(KC[e + 3u])); }\n"
           "    }\n"
           "    KV[i] = x;\n"
           "  }\n"
           "}\n",
        kv_load(d), kv_load(d), kv_load(d), kv_load(d), kv_load(d), kv_load(d), kv_load(d), kv_load(d));
    put_main(t, d, "WG");
    put(t, "  let h = wid.x; let t0 = wid.y * PQ;\n"
           "  let q = lid / TPQ; let part = lid %% TPQ;\n"
           "  let tq = t0 + q;\n"
           "  let valid = tq < step.n_tokens;\n"
           /* query tq sees keys 0..pos0 + tq; the block's last query, keys < nkb */
           "  let qp = step.pos0 + tq;\n"
           "  let nkb = step.pos0 + min(t0 + PQ, step.n_tokens);\n"
           "  let kvo = (h / GQA) * HD;\n"
           "  let qo = min(tq, step.n_tokens - 1u) * (NH * HD) + h * HD;\n"
           "  var m = -3.0e38;\n"
           "  var l = 0.0;\n"
           "  var acc: array<vec4<f32>, DPT>;\n"
           /* the query in registers (read once, not once per tile) */
           "  var qr: array<vec4<f32>, HD4>;\n"
           "  for (var j = 0u; j < HD4; j++) { let e = qo + 4u * j; qr[j] = vec4<f32>(Q[e], Q[e + 1u], Q[e + 2u], Q[e + 3u]); }\n"
           "  for (var k0 = 0u; k0 < nkb; k0 += BK) {\n"
           "    load_tile(lid, k0, nkb, kvo, false);\n"
           "    workgroupBarrier();\n"
           /* initialized here: a declaration without one was not zeroed again
            * in each iteration on SwiftShader */
           "    var sc = array<f32, BK / TPQ>();\n"
           "    for (var j = 0u; j < HD4; j++) {\n"
           "      let qv = qr[j];\n"
           "      for (var i = 0u; i < BK / TPQ; i++) { sc[i] += dot(qv, KV[(part + TPQ * i) * HD4 + j]); }\n"
           "    }\n"
           "    for (var i = 0u; i < BK / TPQ; i++) {\n"
           "      let s = k0 + part + TPQ * i;\n"
           "      S[q * BK + part + TPQ * i] = select(-3.0e38, sc[i] * SCALE, s <= qp);\n"
           "    }\n"
           "    workgroupBarrier();\n"
           "    load_tile(lid, k0, nkb, kvo, true);\n"
           "    workgroupBarrier();\n"
           "    var mt = m;\n"
           "    for (var j = 0u; j < BK; j++) { mt = max(mt, S[q * BK + j]); }\n"
           "    let alpha = exp(m - mt);\n"
           "    l *= alpha;\n"
           "    for (var c = 0u; c < DPT; c++) { acc[c] *= alpha; }\n"
           "    for (var j = 0u; j < BK; j++) {\n"
           "      let sj = S[q * BK + j];\n"
           "      let p = select(0.0, exp(sj - mt), sj > -1.0e38);\n"
           "      l += p;\n"
           "      for (var c = 0u; c < DPT; c++) {\n"
           "        let d4 = part + TPQ * c;\n"
           "        if (d4 < HD4) { acc[c] += p * KV[j * HD4 + d4]; }\n"
           "      }\n"
           "    }\n"
           "    m = mt;\n"
           "    workgroupBarrier();\n"
           "  }\n"
           "  if (valid) {\n"
           "    for (var c = 0u; c < DPT; c++) {\n"
           "      let d4 = part + TPQ * c;\n"
           "      if (d4 < HD4) {\n"
           "        let r = acc[c] / l; let e = qo + 4u * d4;\n"
           "        O[e] = r.x; O[e + 1u] = r.y; O[e + 2u] = r.z; O[e + 3u] = r.w;\n"
           "      }\n"
           "    }\n"
           "  }\n"
           "}\n");
}

/* Prefill attention for head sizes the tiles do not take: a workgroup per
 * (head, token), online softmax over 64-key chunks. */
static void gen_attn_prefill(text *t, const sl_gpu_kernel_desc *d) {
    put_attn_consts(t, d, 64);
    uint32_t dpt = (d->head_dim + 63) / 64;
    put(t, "const DPT: u32 = %uu;\n"
           "@group(0) @binding(1) var<storage, read_write> Q: array<f32>;\n"
           "@group(0) @binding(2) var<storage, read> KC: array<%s>;\n"
           "@group(0) @binding(3) var<storage, read> VC: array<%s>;\n"
           "@group(0) @binding(4) var<storage, read_write> O: array<f32>;\n"
           "var<workgroup> red: array<f32, WG>;\n"
           "var<workgroup> qs: array<f32, HD>;\n"
           "var<workgroup> pk: array<f32, WG>;\n",
        dpt, kv_type(d), kv_type(d));
    put_reduce(t, d, "sum_wg", false);
    put_reduce(t, d, "max_wg", true);
    put_main(t, d, "WG");
    put(t, "  let h = wid.x; let tt = wid.y;\n"
           "  if (tt >= step.n_tokens) { return; }\n"
           "  let nk = step.pos0 + tt + 1u;\n"
           "  let kvo = (h / GQA) * HD;\n"
           "  let qo = tt * (NH * HD) + h * HD;\n"
           "  for (var k = lid; k < HD; k += WG) { qs[k] = Q[qo + k]; }\n"
           "  workgroupBarrier();\n"
           "  var m = -3.0e38;\n"
           "  var l = 0.0;\n"
           "  var acc: array<f32, DPT>;\n"
           "  for (var c0 = 0u; c0 < nk; c0 += WG) {\n"
           "    let s = c0 + lid;\n"
           "    var v = -3.0e38;\n"
           "    if (s < nk) {\n"
           "      var dt = 0.0;\n"
           "      for (var k = 0u; k < HD; k++) { dt += qs[k] * %s(KC[s * KD + kvo + k]); }\n"
           "      v = dt * SCALE;\n"
           "    }\n"
           "    let nm = max(m, max_wg(lid, v));\n"
           "    var p = 0.0;\n"
           "    if (s < nk) { p = exp(v - nm); }\n"
           "    pk[lid] = p;\n"
           "    let cs = sum_wg(lid, p);\n"
           "    let alpha = exp(m - nm);\n"
           "    l = l * alpha + cs;\n"
           "    let cn = min(WG, nk - c0);\n"
           "    for (var i = 0u; i < DPT; i++) {\n"
           "      let k = lid + i * WG;\n"
           "      if (k < HD) {\n"
           "        var a = acc[i] * alpha;\n"
           "        for (var j = 0u; j < cn; j++) { a += pk[j] * %s(VC[(c0 + j) * KD + kvo + k]); }\n"
           "        acc[i] = a;\n"
           "      }\n"
           "    }\n"
           "    m = nm;\n"
           "    workgroupBarrier();\n"
           "  }\n"
           "  for (var i = 0u; i < DPT; i++) {\n"
           "    let k = lid + i * WG;\n"
           "    if (k < HD) { O[qo + k] = acc[i] / l; }\n"
           "  }\n"
           "}\n",
        kv_load(d), kv_load(d));
}

/* ---- entry points -------------------------------------------------------- */

/* ---- greedy sampling ------------------------------------------------------ */

/* The argmax of the logits in two dispatches (one workgroup could not keep
 * enough loads in flight for 128K logits): the largest of each ARGMAX_CHUNK,
 * then of those. Ties and NaN as the CPU sampler: the lowest id wins, NaN
 * never does (no number at all: id 0). */
#define ARGMAX_CHUNK 4096u

uint32_t sl_gpu_argmax_parts(uint32_t n_logits) { return div_up(n_logits, ARGMAX_CHUNK); }

/* Each invocation's best (m, mi) into the workgroup's best, in bv[0], bi[0]. */
static void put_argmax_reduce(text *t) {
    put(t, "  bv[lid] = m; bi[lid] = mi;\n"
           "  workgroupBarrier();\n"
           "  for (var s = WG / 2u; s > 0u; s >>= 1u) {\n"
           "    if (lid < s) {\n"
           "      let ov = bv[lid + s]; let oi = bi[lid + s];\n"
           "      if (ov > bv[lid] || (ov == bv[lid] && oi < bi[lid])) { bv[lid] = ov; bi[lid] = oi; }\n"
           "    }\n"
           "    workgroupBarrier();\n"
           "  }\n");
}

static void gen_argmax(text *t, const sl_gpu_kernel_desc *d, bool final) {
    put(t, "const N: u32 = %uu;\nconst WG: u32 = 256u;\nconst NONE: u32 = 0xffffffffu;\n"
           "var<workgroup> bv: array<f32, WG>;\nvar<workgroup> bi: array<u32, WG>;\n",
        d->n);
    if (!final)
        put(t, "const CH: u32 = %uu;\n"
               "@group(0) @binding(1) var<storage, read> L: array<f32>;\n"
               "@group(0) @binding(2) var<storage, read_write> P: array<vec2<u32>>;\n",
            ARGMAX_CHUNK);
    else
        put(t, "@group(0) @binding(1) var<storage, read> P: array<vec2<u32>>;\n"
               "@group(0) @binding(2) var<storage, read_write> T: array<u32>;\n");
    put_main(t, d, "WG");
    /* (the step uniform is bound to every kernel: used, so 'auto' layouts keep it) */
    put(t, "  _ = step.n_tokens;\n  var m = -3.0e38; var mi = NONE;\n");
    if (!final)
        /* ids rise with k: the first of equal values stays */
        put(t, "  let base = wid.x * CH;\n"
               "  for (var k = 0u; k < CH / WG; k++) {\n"
               "    let i = base + k * WG + lid;\n"
               "    if (i < N) { let v = L[i]; if (v > m) { m = v; mi = i; } }\n"
               "  }\n");
    else
        put(t, "  for (var i = lid; i < N; i += WG) {\n"
               "    let p = P[i]; let v = bitcast<f32>(p.x);\n"
               "    if (p.y != NONE && (v > m || (v == m && p.y < mi))) { m = v; mi = p.y; }\n"
               "  }\n");
    put_argmax_reduce(t);
    if (!final) put(t, "  if (lid == 0u) { P[wid.x] = vec2<u32>(bitcast<u32>(bv[0]), bi[0]); }\n}\n");
    else put(t, "  if (lid == 0u) { T[0] = select(bi[0], 0u, bi[0] == NONE); }\n}\n");
}

char *sl_gpu_kernel_wgsl(const sl_gpu_kernel_desc *d, sl_error *err) {
    bool weights = d->kernel == SL_GK_MATVEC || d->kernel == SL_GK_MATMUL || d->kernel == SL_GK_EMBED ||
                   d->kernel == SL_GK_QKV || d->kernel == SL_GK_FFN_IN;
    /* the formats of the matrices the kernel reads */
    sl_type types[3] = {d->type, d->type2, d->type3};
    int n_types = d->kernel == SL_GK_QKV ? 3 : d->kernel == SL_GK_FFN_IN ? 2 : 1;
    for (int i = 0; weights && i < n_types; i++) {
        const sl_type_info *ti = sl_type_get(types[i]);
        if (!ti || !sl_gpu_type_supported(types[i])) {
            sl_err(err, "no WebGPU kernel for type %s", sl_type_name(types[i]) ? sl_type_name(types[i]) : "?");
            return NULL;
        }
        if (d->cols == 0 || (d->rows == 0 && d->kernel != SL_GK_QKV) || d->cols % (uint32_t)ti->block_size) {
            sl_err(err, "bad kernel shape: %u rows of %u %s elements", d->rows, d->cols, ti->name);
            return NULL;
        }
    }
    if (d->norm && (d->kernel != SL_GK_MATVEC || d->epilogue == SL_EPI_BIAS || d->epilogue == SL_EPI_SILU_MUL)) {
        sl_err(err, "bad kernel: a normed mat-vec has no bias or gate input");
        return NULL;
    }
    bool heads = (d->kernel >= SL_GK_ROPE_Q && d->kernel <= SL_GK_ATTN_PREFILL) || d->kernel == SL_GK_QKV;
    if (heads && (d->n_head == 0 || d->n_head_kv == 0 || d->n_head % d->n_head_kv || d->head_dim == 0 ||
                  d->n_rot > d->head_dim || d->n_rot % 2)) {
        sl_err(err, "bad attention shape: %u heads, %u kv heads, head size %u, %u rotated", d->n_head, d->n_head_kv,
               d->head_dim, d->n_rot);
        return NULL;
    }
    if (((d->kernel == SL_GK_RMSNORM || d->kernel == SL_GK_ARGMAX_PART || d->kernel == SL_GK_ARGMAX_FINAL) && d->n == 0) ||
        d->kernel < 0 || d->kernel >= SL_GK_COUNT) {
        sl_err(err, "bad kernel %d", (int)d->kernel);
        return NULL;
    }
    text t = {0};
    put_prelude(&t, d);
    /* the second line names the kernel: profilers group timings by it */
    static const char *const kernel_names[SL_GK_COUNT] = {"matvec",      "matmul",     "embed",       "rmsnorm",
                                                          "rope_q",      "rope_kv",    "attn_decode", "attn_merge",
                                                          "attn_prefill", "qkv",       "ffn_in",
                                                          "argmax_part", "argmax_final"};
    static const char *const epilogue_names[] = {"", "+bias", "+add", "+silu_mul"};
    put(&t, "// stream-llm WebGPU kernel: %s", kernel_names[d->kernel]);
    if (weights) put(&t, " %s%s%s", sl_type_name(d->type), epilogue_names[d->epilogue], d->norm ? "+norm" : "");
    put(&t, " (generated by src/gpu/kernels.c)\n");
    switch (d->kernel) {
    case SL_GK_MATVEC: gen_matvec(&t, d); break;
    case SL_GK_MATMUL:
        if (mm_int8(d)) gen_matmul_int8(&t, d);
        else gen_matmul(&t, d);
        break;
    case SL_GK_EMBED: gen_embed(&t, d); break;
    case SL_GK_RMSNORM: gen_rmsnorm(&t, d); break;
    case SL_GK_ROPE_Q: gen_rope(&t, d, true); break;
    case SL_GK_ROPE_KV: gen_rope(&t, d, false); break;
    case SL_GK_ATTN_DECODE: gen_attn_decode(&t, d); break;
    case SL_GK_ATTN_MERGE: gen_attn_merge(&t, d); break;
    case SL_GK_ATTN_PREFILL:
        if (attn_prefill_tiled(d)) gen_attn_prefill_tiled(&t, d);
        else gen_attn_prefill(&t, d);
        break;
    case SL_GK_QKV: gen_qkv(&t, d); break;
    case SL_GK_FFN_IN: gen_ffn_in(&t, d); break;
    case SL_GK_ARGMAX_PART: gen_argmax(&t, d, false); break;
    case SL_GK_ARGMAX_FINAL: gen_argmax(&t, d, true); break;
    default: break;
    }
    if (t.oom) {
        free(t.s);
        sl_err(err, "out of memory generating a kernel");
        return NULL;
    }
    return t.s;
}

int sl_gpu_kernel_n_bindings(const sl_gpu_kernel_desc *d) {
    switch (d->kernel) {
    case SL_GK_MATVEC:
    case SL_GK_MATMUL: return d->epilogue == SL_EPI_BIAS || d->epilogue == SL_EPI_SILU_MUL || d->norm ? 5 : 4;
    case SL_GK_EMBED: return 4;
    case SL_GK_RMSNORM: return 4;
    case SL_GK_ROPE_Q: return d->qk_norm ? 4 : 3;
    case SL_GK_ROPE_KV: return d->qk_norm ? 7 : 6;
    case SL_GK_ATTN_DECODE: return 5;
    case SL_GK_ATTN_MERGE: return 3;
    case SL_GK_ATTN_PREFILL: return 5;
    case SL_GK_QKV: return 9;
    case SL_GK_FFN_IN: return 5;
    case SL_GK_ARGMAX_PART:
    case SL_GK_ARGMAX_FINAL: return 3;
    default: return 0;
    }
}

void sl_gpu_kernel_grid(const sl_gpu_kernel_desc *d, uint32_t n_tokens, uint32_t n_splits, uint32_t max_per_dim,
                        uint32_t grid[3]) {
    grid[0] = grid[1] = grid[2] = 1;
    if (n_tokens == 0) n_tokens = 1;
    switch (d->kernel) {
    case SL_GK_MATVEC:
    case SL_GK_FFN_IN:
    case SL_GK_QKV: {
        /* G row groups of R rows per workgroup; QKV's groups are rotation pairs */
        const mv_shape sh = mv_shape_of(d);
        uint32_t rows = d->kernel == SL_GK_QKV ? (d->n_head + 2 * d->n_head_kv) * d->head_dim / 2 : d->rows;
        uint32_t wgs = div_up(rows, sh.G * sh.R);
        grid[0] = wgs < max_per_dim ? wgs : max_per_dim;
        grid[1] = div_up(wgs, grid[0]);
        break;
    }
    case SL_GK_MATMUL: {
        const mm_shape sh = mm_shape_of(d);
        grid[0] = div_up(d->rows, sh.BN);
        grid[1] = div_up(n_tokens, sh.BM);
        break;
    }
    case SL_GK_EMBED:
        grid[0] = div_up(div_up(d->cols, 8), 64);
        grid[1] = n_tokens;
        break;
    case SL_GK_RMSNORM: grid[0] = n_tokens; break;
    case SL_GK_ARGMAX_PART: grid[0] = sl_gpu_argmax_parts(d->n); break;
    case SL_GK_ROPE_Q:
        grid[0] = d->n_head;
        grid[1] = n_tokens;
        break;
    case SL_GK_ROPE_KV:
        grid[0] = d->n_head_kv;
        grid[1] = n_tokens;
        break;
    case SL_GK_ATTN_DECODE:
        grid[0] = d->n_head;
        grid[1] = n_splits ? n_splits : 1;
        break;
    case SL_GK_ATTN_MERGE: grid[0] = d->n_head; break;
    case SL_GK_ATTN_PREFILL:
        grid[0] = d->n_head;
        grid[1] = attn_prefill_tiled(d) ? div_up(n_tokens, ATTN_PQ) : n_tokens;
        break;
    default: break;
    }
}
