/* The kernels compiled once per instruction set, and the run-time choice.
 *
 * x86-64 with GCC or Clang: three copies, AVX-512 (F/DQ/BW/VL + FMA), AVX2 + FMA,
 * and the x86-64 baseline (SSE2); the best one the CPU supports is chosen at
 * import (__builtin_cpu_supports).  One wheel is therefore fast on every x86-64
 * CPU.  Any other platform (aarch64, …) gets one copy for its default target.
 * The vector code (64-byte GCC/Clang vector extensions) is the same in every copy;
 * only FMA contraction can change the last bits between copies (as NumPy's own
 * SIMD paths do), never between threads or runs on one machine.
 */
#include "ck_isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CK_X86 1
#ifdef __MMX__
/* setup.py compiles with -mno-mmx: GCC may move 8-byte vectors through the MMX
 * registers, which alias the x87 stack and, without an `emms`, leave it full, so
 * that later long double arithmetic in the process (NumPy's float formatting,
 * for one) returns NaN */
#error "build with -mno-mmx"
#endif
#include <immintrin.h>

#define VW 8
#define KSUF _avx512
#define KATTR __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,bmi,bmi2,popcnt,prefer-vector-width=512")))
#include "ck_kern.h"
#undef KSUF
#undef KATTR
#undef VW

#define VW 4
#define KSUF _avx2
#define KATTR __attribute__((target("avx2,fma,bmi,bmi2,popcnt")))
#include "ck_kern.h"
#undef KSUF
#undef KATTR
#undef VW
#endif

#define VW 2
#define KSUF _base
#define KATTR
#include "ck_kern.h"
#undef KSUF
#undef KATTR
#undef VW

const ck_isa_t *ck_select_isa(const char **name)
{
#ifdef CK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma")) {
        *name = "avx512";
        return &ck_isa_avx512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *name = "avx2";
        return &ck_isa_avx2;
    }
    *name = "x86-64";
    return &ck_isa_base;
#else
    *name = "generic";
    return &ck_isa_base;
#endif
}

/* every copy, for the tests: the same results on one machine whichever is used
 * (up to FMA contraction) */
const ck_isa_t *ck_isa_by_name(const char *name)
{
#ifdef CK_X86
    __builtin_cpu_init();
    if (!strcmp(name, "avx512") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return &ck_isa_avx512;
    if (!strcmp(name, "avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &ck_isa_avx2;
    if (!strcmp(name, "x86-64"))
        return &ck_isa_base;
#else
    if (!strcmp(name, "generic"))
        return &ck_isa_base;
#endif
    return NULL;
}
