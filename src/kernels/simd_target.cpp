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
#include <cctype>
#include <cstdlib>

#include "core/error.h"

namespace piquant {

HWY_EXPORT(ActiveTarget);

namespace {

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

// Whether a user's name (lower case) means Highway's target `target`. "scalar" is the
// portable baseline, which Highway builds as EMU128, or as SCALAR with compilers whose
// EMU128 it distrusts (GCC before 12.3).
bool names_target(const std::string& name, std::int64_t target) {
  const std::string target_name = lower(hwy::TargetName(target));
  if (name == "scalar") return target == HWY_EMU128 || target == HWY_SCALAR;
  if (name == "avx512") return target == HWY_AVX3;
  return name == target_name;
}

}  // namespace

std::vector<std::string> simd_targets() {
  std::vector<std::string> names;
  for (const std::int64_t t : cpu_targets()) names.emplace_back(hwy::TargetName(t));
  return names;
}

std::string simd_target() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(ActiveTarget)()); }

void force_simd_target(const std::string& name) {
  const std::string wanted = lower(name);
  const std::vector<std::int64_t> targets = cpu_targets();
  if (wanted.empty() || wanted == "best") {
    hwy::SetSupportedTargetsForTest(0);
    return;
  }
  std::string available;
  for (const std::int64_t t : targets) {
    if (names_target(wanted, t)) {
      hwy::SetSupportedTargetsForTest(t);
      return;
    }
    available += (available.empty() ? "" : ", ") + lower(hwy::TargetName(t));
  }
  throw Error("SIMD target '" + name + "' is unknown or not supported by this CPU (available: " + available +
              "; aliases scalar, avx512)");
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
