#pragma once
// The SIMD code path the kernels run on. Highway picks the best target this CPU has at
// run time; tests and benchmarks restrict it to one target to compare every target with
// the scalar reference, and PIQUANT_SIMD lets a user rule out a misbehaving one or run,
// on one machine, exactly what a machine with a lesser CPU would run.
//
// Every choice of code that depends on the CPU goes through this: Highway's target, and
// on x86 whether the AVX-512 target's integer kernels use AVX512-VNNI (they need it, and
// without it the AVX-512 target runs the portable Q8 kernels). So the levels are, on x86,
//   scalar < sse4 < avx2 < avx512 (AVX3: AVX-512 without VNNI) < avx512vnni (AVX3_VNNI)
// and forcing one runs what a CPU whose best level it is runs, bit for bit.
#include <string>
#include <vector>

namespace piquant {

// Levels compiled in and supported by this CPU, best first: Highway's target names
// ("AVX3", "AVX2", "SSE4" and the portable baseline "EMU128" or, built by GCC < 12.3,
// "SCALAR" on x86; "NEON" on ARM, where NEON is the baseline), with "AVX3_VNNI" before
// "AVX3" where the CPU has AVX512-VNNI.
std::vector<std::string> simd_targets();

// The level the kernels dispatch to now (one of simd_targets()).
std::string simd_target();

// Restricts dispatch to one level, by its name or an alias (scalar, sse4, avx2, avx512,
// avx512vnni, neon), case-insensitive; "" or "best" lifts the restriction. Throws Error
// for a name that is unknown or that this CPU cannot run. Process-wide (like Highway's
// chosen target, which it sets): call it while no kernel is running.
void force_simd_target(const std::string& name);

// Applies $PIQUANT_SIMD (same names as force_simd_target) when it is set.
void force_simd_target_from_env();

// For the kernels: whether the AVX-512 target may use its AVX512-VNNI kernels now (the
// CPU has VNNI and the level in force is not "avx512"). False off x86.
bool simd_avx512_vnni_enabled();

}  // namespace piquant
