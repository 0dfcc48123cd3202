// Cross-check against an independent numpy reading of ggml's documented layouts (written
// in the vectorised reshape style of llama.cpp's gguf-py, not per element like the C++):
// random block bytes (with finite f16 scales) are decoded by both and must agree.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "formats/ggml_type.h"
#include "quant/dequantize.h"
#include "support/test_support.h"

namespace piquant {
namespace {

constexpr const char* kNumpyDequantizer = R"PY(
import sys
import numpy as np

out_dir = sys.argv[1]
rng = np.random.default_rng(20240601)
N_BLOCKS = 24

def halves(n):
    return rng.uniform(-2.0, 2.0, size=(n, 1)).astype(np.float16)

def put_half(raw, offset, h):
    raw[:, offset:offset + 2] = h.view(np.uint8).reshape(-1, 2)

def f32(a):
    return a.astype(np.float32)

def q5_0(raw):
    d = f32(raw[:, 0:2].copy().view(np.float16))
    qh = raw[:, 2:6].copy().view('<u4')
    qs = raw[:, 6:22]
    low = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)
    high = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32)
    return d * f32((low | (high << 4)) - 16)

def q2_k(raw):
    n = raw.shape[0]
    sc, qs = raw[:, :16], raw[:, 16:80]
    d = f32(raw[:, 80:82].copy().view(np.float16))
    dmin = f32(raw[:, 82:84].copy().view(np.float16))
    q = np.stack([(qs.reshape(n, 2, 32) >> (2 * j)) & 3 for j in range(4)], axis=2).reshape(n, 256)
    return (d * f32(sc & 0x0F)).repeat(16, axis=1) * f32(q) - (dmin * f32(sc >> 4)).repeat(16, axis=1)

def q3_k(raw):
    n = raw.shape[0]
    hmask, qs, sc, d = raw[:, :32], raw[:, 32:96], raw[:, 96:108], raw[:, 108:110]
    d = f32(d.copy().view(np.float16))
    low = np.concatenate([sc[:, :8] & 0x0F, sc[:, :8] >> 4], axis=1).astype(np.int32)
    high = np.concatenate([(sc[:, 8:12] >> s) & 3 for s in (0, 2, 4, 6)], axis=1).astype(np.int32)
    scales = f32((low | (high << 4)) - 32)
    q2 = np.stack([(qs.reshape(n, 2, 32) >> (2 * j)) & 3 for j in range(4)], axis=2).reshape(n, 256)
    hb = np.stack([(hmask >> b) & 1 for b in range(8)], axis=1).reshape(n, 256)
    q = f32(q2.astype(np.int32) | (hb.astype(np.int32) << 2)) - 4
    return (d * scales).repeat(16, axis=1) * q

def k4_scales(s):
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return f32(sc), f32(mn)

def q4_k(raw):
    n = raw.shape[0]
    d = f32(raw[:, 0:2].copy().view(np.float16))
    dmin = f32(raw[:, 2:4].copy().view(np.float16))
    sc, mn = k4_scales(raw[:, 4:16])
    qs = raw[:, 16:144].reshape(n, 4, 1, 32)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 256)
    return (d * sc).repeat(32, axis=1) * f32(q) - (dmin * mn).repeat(32, axis=1)

def q5_k(raw):
    n = raw.shape[0]
    d = f32(raw[:, 0:2].copy().view(np.float16))
    dmin = f32(raw[:, 2:4].copy().view(np.float16))
    sc, mn = k4_scales(raw[:, 4:16])
    qh = raw[:, 16:48]
    qs = raw[:, 48:176].reshape(n, 4, 1, 32)
    low = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 256).astype(np.int32)
    high = np.stack([(qh >> b) & 1 for b in range(8)], axis=1).reshape(n, 256).astype(np.int32)
    return (d * sc).repeat(32, axis=1) * f32(low | (high << 4)) - (dmin * mn).repeat(32, axis=1)

def q6_k(raw):
    n = raw.shape[0]
    ql, qh = raw[:, :128].reshape(n, 2, 1, 64), raw[:, 128:192].reshape(n, 2, 32)
    scales = f32(raw[:, 192:208].copy().view(np.int8))
    d = f32(raw[:, 208:210].copy().view(np.float16))
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=2).reshape(n, 2, 4, 32).astype(np.int32)
    high = np.stack([(qh >> (2 * k)) & 3 for k in range(4)], axis=2).astype(np.int32)
    q = f32((low | (high << 4)).reshape(n, 256) - 32)
    return (d * scales).repeat(16, axis=1) * q

# name, bytes per block, f16 field offsets, decoder
TYPES = [("q5_0", 22, [0], q5_0), ("q2_K", 84, [80, 82], q2_k), ("q3_K", 110, [108], q3_k), ("q4_K", 144, [0, 2], q4_k),
         ("q5_K", 176, [0, 2], q5_k), ("q6_K", 210, [208], q6_k)]
for name, size, half_offsets, decode in TYPES:
    raw = rng.integers(0, 256, size=(N_BLOCKS, size), dtype=np.uint8)
    for off in half_offsets:
        put_half(raw, off, halves(N_BLOCKS))
    raw.tofile(f"{out_dir}/{name}.bin")
    decode(raw).astype('<f4').tofile(f"{out_dir}/{name}.f32")
)PY";

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

TEST(DequantizeNumpy, MatchesIndependentNumpyDecoder) {
  if (testing::run_command("/usr/bin/python3 -c 'import numpy' 2>&1").exit_code != 0) {
    if (testing::in_ci()) ADD_FAILURE() << "/usr/bin/python3 with numpy is required in CI";
    GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  }
  testing::TempDir dir;
  testing::write_file(dir / "dequant.py", kNumpyDequantizer);
  const auto result =
      testing::run_command("/usr/bin/python3 '" + (dir / "dequant.py").string() + "' '" + dir.path().string() + "' 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;

  const std::pair<const char*, GgmlType> types[] = {
      {"q5_0", GgmlType::Q5_0}, {"q2_K", GgmlType::Q2_K}, {"q3_K", GgmlType::Q3_K}, {"q4_K", GgmlType::Q4_K},
      {"q5_K", GgmlType::Q5_K}, {"q6_K", GgmlType::Q6_K}};
  for (const auto& [name, type] : types) {
    SCOPED_TRACE(name);
    const auto blocks = bytes_of(testing::read_file(dir / (std::string(name) + ".bin")));
    const std::string expected_bytes = testing::read_file(dir / (std::string(name) + ".f32"));
    const GgmlTypeInfo& info = ggml_type_info(type);
    ASSERT_EQ(blocks.size() % info.block_bytes, 0u);
    const std::int64_t n = static_cast<std::int64_t>(blocks.size() / info.block_bytes * info.block_size);
    ASSERT_EQ(expected_bytes.size(), static_cast<std::size_t>(n) * sizeof(float));
    std::vector<float> expected(static_cast<std::size_t>(n));
    std::memcpy(expected.data(), expected_bytes.data(), expected_bytes.size());

    std::vector<float> actual(static_cast<std::size_t>(n));
    dequantize_row(type, blocks.data(), actual.data(), n);
    int mismatches = 0;
    for (std::int64_t i = 0; i < n && mismatches < 10; ++i) {
      const float e = expected[static_cast<std::size_t>(i)], a = actual[static_cast<std::size_t>(i)];
      if (std::fabs(e - a) > 1e-5f * std::max(1.0f, std::fabs(e))) {
        ++mismatches;
        ADD_FAILURE() << "element " << i << ": numpy " << e << ", piquant " << a;
      }
    }
  }
}

}  // namespace
}  // namespace piquant
