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

Q8MatmulRows FindQ8MatmulK16(GgmlType type) {
  switch (type) {
    case GgmlType::Q2_K: return &Q8MatmulRowsLoop<&DotQ2_K, &DotQ2_Kx4>;
    case GgmlType::Q3_K:
#if PIQUANT_HAVE_BYTE_K_KERNELS
      if (ByteKernelsSupported()) {
        return &TokenTilesOr<k_bytes::k_tiles::Q3K,
                             &Q8MatmulRowsLoop<&DotQ3_KBytes<&DotQ3_K>, &DotQ3_KBytesGroup<&DotQ3_Kx4>, kByteKernelGroup>>;
      }
#endif
      return &Q8MatmulRowsLoop<&DotQ3_K, &DotQ3_Kx4>;
    case GgmlType::Q6_K:
#if PIQUANT_HAVE_BYTE_K_KERNELS
      if (ByteKernelsSupported()) {
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
        return &TokenTilesOr<k_bytes::k_tiles::Q6K,
                             &Q8MatmulRowsLoop<&DotQ6_KBytes<&DotQ6_K>, &DotQ6_KBytesGroup<&DotQ6_Kx4>, kByteKernelGroup>>;
#else
        return &TokenTilesOr<k_bytes::k_tiles::Q6K,
                             &Q8MatmulRowsLoop<&DotQ6_KBytes<&DotQ6_K>, &DotQ6_KBytesGroup<&DotQ6_Kx4>, kByteKernelGroup>>;
#endif
      }
#endif
      return &Q8MatmulRowsLoop<&DotQ6_K, &DotQ6_Kx4>;
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
