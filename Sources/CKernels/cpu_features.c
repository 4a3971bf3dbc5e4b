// CPU feature bits for choosing OpenBLAS' kernel family (HotswapCore/BLASCoreSelection.swift).
// __builtin_cpu_supports reads cpuid and also checks xgetbv, so a feature the OS does not enable
// (no AVX-512 state saved by a hypervisor, say) is reported absent, as it must be.
#include "ckernels.h"

int hs_cpu_features(void) {
    __builtin_cpu_init();
    int bits = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) bits |= HS_CPU_AVX2_FMA;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl")) bits |= HS_CPU_AVX512;
    if ((bits & HS_CPU_AVX512) && __builtin_cpu_supports("avx512bf16")) bits |= HS_CPU_AVX512_BF16;
    if (__builtin_cpu_is("amd")) bits |= HS_CPU_VENDOR_AMD;
    if (__builtin_cpu_is("intel")) bits |= HS_CPU_VENDOR_INTEL;
    return bits;
}
