#pragma once
// The Highway targets piquant's kernels are compiled for. Every kernel translation unit
// includes this before any Highway header, so all dispatch tables agree on the targets
// (simd_target.cpp reports and forces targets through one of them).
//
// Left out on purpose:
// - SSSE3: x86 machines with SSSE3 but no SSE4.1 are rare; they run the portable baseline, and
//   every extra target costs compile time for each kernel.
// - SVE/SVE2: the register tiles keep vectors in small arrays, which sizeless SVE types
//   cannot be. ARM boards (Raspberry Pi 4/5) run NEON.
//
// 64-bit ARM: Highway 1.0's run-time dispatch compiles its NEON target with "+crypto"
// and selects it only on CPUs with AES, which the Raspberry Pi 4's Cortex-A72 lacks
// (it would run the scalar fallback). ARM builds therefore compile the one target the
// compiler flags give (NEON with -mcpu=cortex-a72) and call it directly.
#if defined(__aarch64__)
#ifndef TOOLCHAIN_MISS_SYS_AUXV_H
#define TOOLCHAIN_MISS_SYS_AUXV_H  // Highway: no run-time dispatch, so no "+crypto" pragma
#endif
#ifndef HWY_COMPILE_ONLY_STATIC
#define HWY_COMPILE_ONLY_STATIC
#endif
#endif

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128)
#endif
