// Q8 integer kernels for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, compiled once per SIMD target. The per-type dot
// products live in q8_dot_legacy-inl.h.
#include "kernels/q8_matmul.h"

#include "kernels/simd_config.h"
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/q8_matmul_legacy.cpp"
#include "hwy/foreach_target.h"
#include "hwy/highway.h"
// clang-format on
#include "kernels/q8_matmul_rows-inl.h"
#include "kernels/q8_dot_legacy-inl.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

Q8MatmulRows FindQ8MatmulLegacy(GgmlType type) {
  switch (type) {
    case GgmlType::Q8_0: return &Q8MatmulRowsLoop<&DotQ8_0, &DotQ8_0x4>;
    case GgmlType::Q4_0: return &Q8MatmulRowsLoop<&DotQ4_0, &DotQ4_0x4>;
    case GgmlType::Q4_1: return &Q8MatmulRowsLoop<&DotQ4_1, &DotQ4_1x4>;
    case GgmlType::Q5_0: return &Q8MatmulRowsLoop<&DotQ5_0, &DotQ5_0x4>;
    case GgmlType::Q5_1: return &Q8MatmulRowsLoop<&DotQ5_1, &DotQ5_1x4>;
    default:
      return nullptr;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace piquant {

HWY_EXPORT(FindQ8MatmulLegacy);

Q8MatmulRows find_q8_matmul_legacy(GgmlType type) { return HWY_DYNAMIC_DISPATCH(FindQ8MatmulLegacy)(type); }

}  // namespace piquant
#endif  // HWY_ONCE
