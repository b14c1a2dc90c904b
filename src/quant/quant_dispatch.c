/* quant_dispatch.c - the public row functions: argument checks, and the choice
 * (once, by CPU features) between the scalar kernels and the SIMD ones. Each
 * kernel family is a table (quant_impl.h); a missing entry falls back to the
 * scalar kernel. x86-64: AVX2 and AVX-512 (quant_x86.c); wasm: SIMD128
 * (quant_wasm.c). Other architectures add a level and a table here (e.g.
 * under #if defined(__ARM_NEON)). */
#include <math.h>
#include <stdatomic.h>

#include "quant/quant_impl.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* Kernel families by level: higher is faster, each needs the CPU features of
 * the ones below it. wasm has one SIMD level, fixed at compile time. */
enum { LEVEL_UNKNOWN = -1, LEVEL_SCALAR = 0, LEVEL_AVX2 = 1, LEVEL_AVX512 = 2, LEVEL_SIMD128 = 1 };
#if defined(__x86_64__)
static const char *const level_names[] = {"scalar", "avx2", "avx512"};
#elif defined(__wasm_simd128__)
static const char *const level_names[] = {"scalar", "simd128"};
#else
static const char *const level_names[] = {"scalar"};
#endif
#define TOP_LEVEL ((int)(sizeof level_names / sizeof level_names[0]) - 1)

static atomic_int detected_level = LEVEL_UNKNOWN;
static atomic_bool force_scalar = false;
static atomic_int level_cap = TOP_LEVEL; /* sl_quant_set_backend's choice */

static int detect_level(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    unsigned eax, ebx, ecx, edx;
    /* F16C is not a __builtin_cpu_supports name in every compiler: ask cpuid. */
    bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) {
        return LEVEL_AVX512;
    }
    if (avx2) return LEVEL_AVX2;
#elif defined(__wasm_simd128__)
    return LEVEL_SIMD128;
#endif
    return LEVEL_SCALAR;
}

static int cpu_level(void) {
    int level = atomic_load_explicit(&detected_level, memory_order_relaxed);
    if (level == LEVEL_UNKNOWN) {
        level = detect_level();
        atomic_store_explicit(&detected_level, level, memory_order_relaxed);
    }
    return level;
}

static int current_level(void) {
    if (atomic_load_explicit(&force_scalar, memory_order_relaxed)) return LEVEL_SCALAR;
    int level = cpu_level(), cap = atomic_load_explicit(&level_cap, memory_order_relaxed);
    return level < cap ? level : cap;
}

static const sl_kernel_table *fast_table(void) {
    switch (current_level()) {
#if defined(__x86_64__)
    case LEVEL_AVX512: return &sl_kernels_avx512;
    case LEVEL_AVX2: return &sl_kernels_avx2;
#elif defined(__wasm_simd128__)
    case LEVEL_SIMD128: return &sl_kernels_simd128;
#endif
    default: return NULL;
    }
}

const char *sl_quant_backend(void) { return level_names[current_level()]; }

void sl_quant_force_scalar(bool on) { atomic_store(&force_scalar, on); }

int sl_quant_set_backend(const char *name) {
    int want = -1;
    if (name == NULL || strcmp(name, "auto") == 0) {
        want = TOP_LEVEL;
    } else {
        for (int l = 0; l <= TOP_LEVEL; l++)
            if (strcmp(name, level_names[l]) == 0) want = l;
        if (want < 0 || cpu_level() < want) return -1;
    }
    atomic_store(&level_cap, want);
    return 0;
}

/* The block size of a supported type when n is a valid element count, else 0. */
static int valid_count(sl_type type, int64_t n) {
    const sl_type_info *info = sl_type_get((int)type);
    if (info == NULL || n < 0 || n % info->block_size != 0) return 0;
    return info->block_size;
}

void sl_dequantize_row(sl_type type, const void *src, float *dst, int64_t n) {
    if (!valid_count(type, n)) {
        for (int64_t i = 0; i < n; i++) dst[i] = NAN;
        return;
    }
    const sl_kernel_table *fast = fast_table();
    sl_dequantize_fn fn = fast && fast->dequantize[type] ? fast->dequantize[type] : sl_kernels_ref.dequantize[type];
    fn(src, dst, n);
}

size_t sl_quantize_row(sl_type type, const float *src, void *dst, int64_t n) {
    if (!valid_count(type, n)) return 0;
    const sl_kernel_table *fast = fast_table();
    sl_quantize_fn fn = fast && fast->quantize[type] ? fast->quantize[type] : sl_kernels_ref.quantize[type];
    fn(src, dst, n);
    return sl_row_size(type, n);
}

/* The dot kernel of a supported type. */
static sl_vec_dot_fn dot_kernel(sl_type type) {
    const sl_kernel_table *fast = fast_table();
    return fast && fast->vec_dot[type] ? fast->vec_dot[type] : sl_kernels_ref.vec_dot[type];
}

sl_vec_dot_fn sl_vec_dot_kernel(sl_type type) {
    return sl_type_get((int)type) ? dot_kernel(type) : NULL;
}

float sl_vec_dot(sl_type type, int64_t n, const void *w, const void *act) {
    if (!valid_count(type, n)) return NAN;
    return dot_kernel(type)(n, w, act);
}

void sl_vec_dot_multi(sl_type type, int64_t n, const void *w, const void *act, size_t act_stride,
                      int64_t n_act, float *out, int64_t out_stride) {
    if (!valid_count(type, n)) {
        for (int64_t j = 0; j < n_act; j++) out[j * out_stride] = NAN;
        return;
    }
    const sl_kernel_table *fast = fast_table();
    sl_vec_dot_group_fn group = fast ? fast->vec_dot_group[type] : NULL;
    sl_vec_dot_fn single = dot_kernel(type);
    const char *a = act;
    int64_t j = 0;
    if (group) {
        for (; j + SL_DOT_GROUP <= n_act; j += SL_DOT_GROUP) {
            const void *acts[SL_DOT_GROUP];
            float res[SL_DOT_GROUP];
            for (int k = 0; k < SL_DOT_GROUP; k++) acts[k] = a + (size_t)(j + k) * act_stride;
            group(n, w, acts, res);
            for (int k = 0; k < SL_DOT_GROUP; k++) out[(j + k) * out_stride] = res[k];
        }
    }
    for (; j < n_act; j++) out[j * out_stride] = single(n, w, a + (size_t)j * act_stride);
}

float sl_vec_dot_ref(sl_type type, int64_t n, const void *w, const void *act) {
    if (!valid_count(type, n)) return NAN;
    return sl_kernels_ref.vec_dot[type](n, w, act);
}
