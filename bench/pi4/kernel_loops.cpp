// The decode kernels of every quantized weight type, one function each
// (piq_row_<type>: one weight row against one token's Q8 activations, cols at run time,
// exactly as decode calls them), compiled for AArch64 NEON, and a driver that calls each
// on rows of two lengths between calls of piq_trace_mark(). kernel_cycles.sh runs the
// driver under qemu-user to record the instructions each call executed (this resolves
// the kernels' loops and branches) and hands those instruction traces to llvm-mca; the
// difference of the two lengths gives the cycles of one block.
//
// The kernel code is the real one: the -inl.h headers included as the kernel .cpp files
// include them, for Highway's static target only. The data drives the branches the way
// decode does: K-quant activations have one scale per 256 columns (Q8_K), f16 scales are
// normal numbers.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "kernels/simd_config.h"
#include "hwy/highway.h"
#include "kernels/q8_dot_legacy-inl.h"
#include "kernels/q8_dot_k32-inl.h"
#include "kernels/q8_dot_k16-inl.h"
#include "formats/ggml_type.h"
#include "kernels/q8_activations.h"

#if !HWY_ARCH_ARM_A64 || HWY_TARGET != HWY_NEON
#error "kernel_loops.cpp measures the AArch64 NEON kernels: compile with aarch64-linux-gnu-g++ -mcpu=cortex-a72"
#endif

// Inside Highway's target region like the kernels' own callers (GCC would refuse to
// inline their vector code into functions compiled with other target options).
HWY_BEFORE_NAMESPACE();

namespace kn = piquant::HWY_NAMESPACE;
using piquant::Q8Row;

#define PIQ_ROW(type, dot)                                                                              \
  extern "C" HWY_NOINLINE float piq_row_##type(const std::uint8_t* row, const Q8Row& x, std::int64_t cols) { \
    return dot(row, x, cols);                                                                           \
  }

PIQ_ROW(Q8_0, kn::DotQ8_0)
PIQ_ROW(Q4_0, kn::DotQ4_0)
PIQ_ROW(Q4_1, kn::DotQ4_1)
PIQ_ROW(Q5_0, kn::DotQ5_0)
PIQ_ROW(Q5_1, kn::DotQ5_1)
PIQ_ROW(Q4_K, kn::DotQ4_K)
PIQ_ROW(Q5_K, kn::DotQ5_K)
PIQ_ROW(Q2_K, kn::DotQ2_K)
PIQ_ROW(Q3_K, kn::DotQ3_K)
PIQ_ROW(Q6_K, kn::DotQ6_K)

HWY_AFTER_NAMESPACE();

// Its calls split the trace: kernel_cycles.sh cuts the instruction trace at this address.
extern "C" __attribute__((noinline)) void piq_trace_mark() { asm volatile("" ::: "memory"); }

namespace {

using RowFn = float (*)(const std::uint8_t*, const Q8Row&, std::int64_t);

struct Kernel {
  const char* name;
  piquant::GgmlType type;
  RowFn fn;
};

// Deterministic bytes (a small LCG): codes and scales vary, nothing depends on luck.
std::uint8_t next_byte(std::uint32_t& state) {
  state = state * 1664525u + 1013904223u;
  return static_cast<std::uint8_t>(state >> 24);
}

}  // namespace

int main(int argc, char** argv) {
  // Usage: kernel_loops N1 N2 [TYPE...]: each kernel on rows of N1, then N2 blocks.
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s N1 N2 [TYPE...]\n", argv[0]);
    return 2;
  }
  const std::int64_t n1 = std::atoll(argv[1]), n2 = std::atoll(argv[2]);
  using piquant::GgmlType;
  const Kernel kernels[] = {
      {"Q8_0", GgmlType::Q8_0, piq_row_Q8_0}, {"Q4_0", GgmlType::Q4_0, piq_row_Q4_0},
      {"Q4_1", GgmlType::Q4_1, piq_row_Q4_1}, {"Q5_0", GgmlType::Q5_0, piq_row_Q5_0},
      {"Q5_1", GgmlType::Q5_1, piq_row_Q5_1}, {"Q4_K", GgmlType::Q4_K, piq_row_Q4_K},
      {"Q5_K", GgmlType::Q5_K, piq_row_Q5_K}, {"Q2_K", GgmlType::Q2_K, piq_row_Q2_K},
      {"Q3_K", GgmlType::Q3_K, piq_row_Q3_K}, {"Q6_K", GgmlType::Q6_K, piq_row_Q6_K},
  };
  const std::int64_t max_blocks = n1 > n2 ? n1 : n2;
  const std::int64_t cols = max_blocks * 256;
  std::uint32_t state = 12345;
  std::vector<float> activations(cols);
  for (auto& a : activations) a = (static_cast<float>(next_byte(state)) - 127.5f) / 64.0f;
  std::vector<std::uint8_t> row(max_blocks * 210 * 8 + 64);
  for (auto& b : row) b = next_byte(state);

  // The activations as decode quantizes them for each scheme, before any trace mark.
  piquant::Q8Activations acts[3];
  for (const auto blocks : {piquant::Q8Blocks::Q8_0, piquant::Q8Blocks::Q8_1, piquant::Q8Blocks::Q8_K}) {
    acts[static_cast<int>(blocks)].quantize(activations.data(), 1, cols, blocks);
  }

  float checksum = 0.0f;
  for (const Kernel& k : kernels) {
    bool wanted = argc == 3;
    for (int a = 3; a < argc; ++a) wanted = wanted || std::string_view(argv[a]) == k.name;
    if (!wanted) continue;
    const auto& info = piquant::ggml_type_info(k.type);
    const std::int64_t block_weights = info.block_size, block_bytes = info.block_bytes;
    const Q8Row x = acts[static_cast<int>(piquant::q8_blocks_for(k.type))].token(0);
    // Every block's f16 scales (and K mins) normal: 0x3c00 = 1.0 at the block's start
    // (d; for Q4_K/Q5_K/Q2_K also dmin, Q6_K/Q3_K keep d at the end).
    const std::int64_t blocks = max_blocks * 256 / block_weights;
    for (std::int64_t b = 0; b < blocks; ++b) {
      std::uint8_t* p = row.data() + b * block_bytes;
      const std::uint16_t one = 0x3c00;
      if (block_weights == 32) {
        std::memcpy(p, &one, 2);
        if (k.fn == piq_row_Q4_1 || k.fn == piq_row_Q5_1) std::memcpy(p + 2, &one, 2);
      } else if (k.fn == piq_row_Q6_K || k.fn == piq_row_Q3_K) {
        std::memcpy(p + block_bytes - 2, &one, 2);
      } else if (k.fn == piq_row_Q2_K) {
        std::memcpy(p + 80, &one, 2);
        std::memcpy(p + 82, &one, 2);
      } else {
        std::memcpy(p, &one, 2);
        std::memcpy(p + 2, &one, 2);
      }
    }
    const std::int64_t unit = block_weights == 32 ? 8 : 1;  // legacy rows in blocks of 32
    std::printf("%s %lld %lld\n", k.name, static_cast<long long>(n1 * unit), static_cast<long long>(n2 * unit));
    piq_trace_mark();
    checksum += k.fn(row.data(), x, n1 * unit * block_weights);
    piq_trace_mark();
    checksum += k.fn(row.data(), x, n2 * unit * block_weights);
    piq_trace_mark();
  }
  std::fprintf(stderr, "checksum %g\n", static_cast<double>(checksum));
  return 0;
}
