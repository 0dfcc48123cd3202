// Q8 integer kernels for Q4_K, Q5_K, compiled once per SIMD target. The per-type dot
// products live in q8_dot_k32-inl.h.
#include "kernels/q8_matmul.h"

#include "kernels/simd_config.h"
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/q8_matmul_k32.cpp"
#include "hwy/foreach_target.h"
#include "hwy/highway.h"
// clang-format on
#include "kernels/q8_matmul_rows-inl.h"
#include "kernels/q8_dot_k32-inl.h"
#include "kernels/q8_dot_k_bytes_x86-inl.h"

HWY_BEFORE_NAMESPACE();
namespace piquant {
namespace HWY_NAMESPACE {

Q8MatmulRows FindQ8MatmulK32(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_K:
#if PIQUANT_HAVE_BYTE_K_KERNELS
      if (ByteKernelsSupported()) {
#if PIQUANT_BYTE_K_KERNELS_USE_VNNI
        return &TokenTilesOr<k_bytes::k_tiles::Q4K,
                             &Q8MatmulRowsLoopTwoRows<&DotQ4_KBytes<&DotQ4_K>, &DotQ4_KBytesGroup<&DotQ4_Kx4>,
                                                      kByteKernelGroup, &DotQ4_KBytes2Rows<&DotQ4_Kx4>>>;
#else
        return &TokenTilesOr<k_bytes::k_tiles::Q4K,
                             &Q8MatmulRowsLoop<&DotQ4_KBytes<&DotQ4_K>, &DotQ4_KBytesGroup<&DotQ4_Kx4>, kByteKernelGroup>>;
#endif
      }
#endif
      return &Q8MatmulRowsLoop<&DotQ4_K, &DotQ4_Kx4>;
    case GgmlType::Q5_K:
#if PIQUANT_HAVE_BYTE_K_KERNELS
      if (ByteKernelsSupported()) {
        return &TokenTilesOr<k_bytes::k_tiles::Q5K, &Q8MatmulRowsLoop<&DotQ5_KBytes<&DotQ5_K>,
                                                                      &DotQ5_KBytesGroup<&DotQ5_Kx4>, kByteKernelGroup>>;
      }
#endif
      return &Q8MatmulRowsLoop<&DotQ5_K, &DotQ5_Kx4>;
    default:
      return nullptr;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace piquant
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace piquant {

HWY_EXPORT(FindQ8MatmulK32);

Q8MatmulRows find_q8_matmul_k32(GgmlType type) { return HWY_DYNAMIC_DISPATCH(FindQ8MatmulK32)(type); }

}  // namespace piquant
#endif  // HWY_ONCE
