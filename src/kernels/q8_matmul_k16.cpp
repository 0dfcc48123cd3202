// Q8 integer kernels for Q2_K, Q3_K, Q6_K, compiled once per SIMD target. The per-type dot
// products live in q8_dot_k16-inl.h.
#include "kernels/q8_matmul.h"

#include "kernels/simd_config.h"
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/q8_matmul_k16.cpp"
#include "hwy/foreach_target.h"
#include "hwy/highway.h"
// clang-format on
#include "kernels/q8_matmul_rows-inl.h"
#include "kernels/q8_dot_k16-inl.h"
#include "kernels/q8_dot_k_bytes_x86-inl.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

#if PIQUANT_HAVE_BYTE_K_KERNELS
// Q6_K through the byte multiply-add kernels when the activations are Q8_K (as matmul
// quantizes them for Q6_K); other activation scales take the portable kernels.
HWY_NOINLINE float DotQ6_KBytes(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) {
  if (!x.scale_per_256) return DotQ6_K(row, x, cols);
  float out;
  k_bytes::DotQ6KBytes<1>(row, &x, cols, &out);
  return out;
}

HWY_NOINLINE void DotQ6_KBytesx4(const std::uint8_t* row, const Q8Row* x, std::int64_t cols, float* out) {
  if (!(x[0].scale_per_256 && x[1].scale_per_256 && x[2].scale_per_256 && x[3].scale_per_256)) {
    DotQ6_Kx4(row, x, cols, out);
    return;
  }
  k_bytes::DotQ6KBytes<4>(row, x, cols, out);
}
#endif

Q8MatmulRows FindQ8MatmulK16(GgmlType type) {
  switch (type) {
    case GgmlType::Q2_K: return &Q8MatmulRowsLoop<&DotQ2_K, &DotQ2_Kx4>;
    case GgmlType::Q3_K: return &Q8MatmulRowsLoop<&DotQ3_K, &DotQ3_Kx4>;
#if PIQUANT_HAVE_BYTE_K_KERNELS
    case GgmlType::Q6_K: return &Q8MatmulRowsLoop<&DotQ6_KBytes, &DotQ6_KBytesx4>;
#else
    case GgmlType::Q6_K: return &Q8MatmulRowsLoop<&DotQ6_K, &DotQ6_Kx4>;
#endif
    default:
      return nullptr;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace piquant {

HWY_EXPORT(FindQ8MatmulK16);

Q8MatmulRows find_q8_matmul_k16(GgmlType type) { return HWY_DYNAMIC_DISPATCH(FindQ8MatmulK16)(type); }

}  // namespace piquant
#endif  // HWY_ONCE
