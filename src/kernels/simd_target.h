#pragma once
// The SIMD instruction set the kernels run on. Highway picks the best one this CPU has at
// run time; tests and benchmarks restrict it to one target to compare every target with
// the scalar reference, and PIQUANT_SIMD lets a user rule out a misbehaving one.
#include <string>
#include <vector>

namespace piquant {

// Targets compiled in and supported by this CPU, best first, as Highway names them
// ("AVX3", "AVX2", "SSE4" and the portable baseline "EMU128" or, built by GCC < 12.3,
// "SCALAR" on x86; "NEON" on ARM, where NEON is the baseline).
std::vector<std::string> simd_targets();

// The target the kernels dispatch to now.
std::string simd_target();

// Restricts dispatch to one target, by Highway's name or an alias (scalar, sse4, avx2,
// avx512, neon), case-insensitive; "" or "best" lifts the restriction. Throws Error for
// a name that is unknown or that this CPU cannot run. Process-wide (Highway keeps one
// chosen target): call it while no kernel is running.
void force_simd_target(const std::string& name);

// Applies $PIQUANT_SIMD (same names as force_simd_target) when it is set.
void force_simd_target_from_env();

}  // namespace piquant
