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
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128)
#endif
