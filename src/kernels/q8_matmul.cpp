#include "kernels/q8_matmul.h"

namespace piquant {

Q8MatmulRows find_q8_matmul(GgmlType type) {
  if (Q8MatmulRows k = find_q8_matmul_legacy(type)) return k;
  if (Q8MatmulRows k = find_q8_matmul_k32(type)) return k;
  return find_q8_matmul_k16(type);
}

}  // namespace piquant
