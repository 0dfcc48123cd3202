#include "kernels/simd_target.h"

#include "kernels/simd_config.h"
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd_target.cpp"
#include "hwy/foreach_target.h"
#include "hwy/highway.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

// Which target this copy was compiled for: dispatching it tells which copy runs.
std::int64_t ActiveTarget() { return HWY_TARGET; }

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>

#include "core/error.h"

namespace piquant {

HWY_EXPORT(ActiveTarget);

namespace {

// The AVX-512 target with its VNNI kernels, as simd_targets() names it.
constexpr const char* kAvx3Vnni = "AVX3_VNNI";

// Set while "avx512" (AVX-512 without VNNI) is forced: the one part of the forced level
// that Highway's chosen target cannot hold. Process-wide, like that choice.
std::atomic<bool> g_vnni_ruled_out{false};

bool cpu_has_avx512_vnni() {
#if HWY_ARCH_X86 && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Compiled-in targets the CPU itself supports, best (lowest bit) first, ignoring any
// restriction in force.
std::vector<std::int64_t> cpu_targets() {
#if HWY_TARGETS == HWY_STATIC_TARGET
  // One target compiled (ARM builds, see simd_config.h), called directly whatever
  // Highway's run-time detection says.
  return {HWY_STATIC_TARGET};
#endif
  const std::int64_t active = HWY_DYNAMIC_DISPATCH(ActiveTarget)();
  hwy::SetSupportedTargetsForTest(0);
  const std::int64_t supported = hwy::SupportedTargets() & HWY_TARGETS;
  std::vector<std::int64_t> targets;
  for (std::int64_t t = supported; t != 0; t &= t - 1) targets.push_back(t & -t);
  // Put back a restriction that was in force.
  if (!targets.empty() && active != targets.front()) hwy::SetSupportedTargetsForTest(active);
  return targets;
}

// A level: a Highway target and, for AVX3, whether its VNNI kernels run.
struct Level {
  std::int64_t target;
  bool vnni;
  std::string name;
};

std::vector<Level> cpu_levels() {
  std::vector<Level> levels;
  for (const std::int64_t t : cpu_targets()) {
    if (t == HWY_AVX3 && cpu_has_avx512_vnni()) levels.push_back({t, true, kAvx3Vnni});
    levels.push_back({t, false, hwy::TargetName(t)});
  }
  return levels;
}

// Whether a user's name (lower case) means `level`. "scalar" is the portable baseline,
// which Highway builds as EMU128, or as SCALAR with compilers whose EMU128 it distrusts
// (GCC before 12.3).
bool names_level(const std::string& name, const Level& level) {
  if (name == "scalar") return level.target == HWY_EMU128 || level.target == HWY_SCALAR;
  if (name == "avx512") return level.target == HWY_AVX3 && !level.vnni;
  if (name == "avx512vnni") return level.vnni;
  return name == lower(level.name);
}

}  // namespace

std::vector<std::string> simd_targets() {
  std::vector<std::string> names;
  for (const Level& level : cpu_levels()) names.push_back(level.name);
  return names;
}

std::string simd_target() {
  const std::int64_t active = HWY_DYNAMIC_DISPATCH(ActiveTarget)();
  if (active == HWY_AVX3 && simd_avx512_vnni_enabled()) return kAvx3Vnni;
  return hwy::TargetName(active);
}

bool simd_avx512_vnni_enabled() {
  return cpu_has_avx512_vnni() && !g_vnni_ruled_out.load(std::memory_order_relaxed);
}

void force_simd_target(const std::string& name) {
  const std::string wanted = lower(name);
  const std::vector<Level> levels = cpu_levels();
  if (wanted.empty() || wanted == "best") {
    hwy::SetSupportedTargetsForTest(0);
    g_vnni_ruled_out.store(false, std::memory_order_relaxed);
    return;
  }
  std::string available;
  for (const Level& level : levels) {
    if (names_level(wanted, level)) {
      hwy::SetSupportedTargetsForTest(level.target);
      g_vnni_ruled_out.store(level.target == HWY_AVX3 && !level.vnni, std::memory_order_relaxed);
      return;
    }
    available += (available.empty() ? "" : ", ") + lower(level.name);
  }
  throw Error("SIMD target '" + name + "' is unknown or not supported by this CPU (available: " + available +
              "; aliases scalar, avx512, avx512vnni)");
}

void force_simd_target_from_env() {
  if (const char* value = std::getenv("PIQUANT_SIMD")) {
    try {
      force_simd_target(value);
    } catch (const Error& e) {
      throw Error(std::string("PIQUANT_SIMD: ") + e.what());
    }
  }
}

}  // namespace piquant
#endif  // HWY_ONCE
