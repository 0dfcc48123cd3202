// quantize -> dequantize on Gaussian rows: RMSE bounds per type, the searched encoding never
// worse than round-to-nearest under its weights, and size/input checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <random>
#include <vector>

#include "core/error.h"
#include "formats/ggml_type.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "support/test_support.h"

namespace piquant {
namespace {

constexpr int kRows = 8;
constexpr int kRowLength = 1024;

struct TypeCase {
  GgmlType type;
  // Upper RMSE bound on N(0, 1) data for searched quantization: about the uniform-noise
  // estimate step / sqrt(12) (step ≈ block range / levels, ~20% higher for the K-quants'
  // quantized scales), set ~20% above what the encoder measured when written.
  double max_rmse;
};

const TypeCase kCases[] = {
    {GgmlType::Q8_0, 0.006}, {GgmlType::Q4_0, 0.095}, {GgmlType::Q4_1, 0.085}, {GgmlType::Q5_0, 0.048},
    {GgmlType::Q5_1, 0.042}, {GgmlType::Q6_K, 0.021}, {GgmlType::Q4_K, 0.085}, {GgmlType::Q5_K, 0.042},
    {GgmlType::Q3_K, 0.175}, {GgmlType::Q2_K, 0.32},
};

std::vector<float> gaussian(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<float> roundtrip(GgmlType type, const float* x, int n, const float* importance, bool rtn) {
  std::vector<std::uint8_t> bytes(ggml_nbytes(type, static_cast<std::uint64_t>(n)));
  if (rtn) {
    quantize_row_rtn(type, x, n, bytes.data());
  } else {
    quantize_row(type, x, n, importance, bytes.data());
  }
  std::vector<float> y(static_cast<std::size_t>(n));
  dequantize_row(type, bytes.data(), y.data(), n);
  return y;
}

double weighted_sq_error(const float* x, const float* w, const std::vector<float>& y) {
  double e = 0.0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    const double d = static_cast<double>(x[i]) - y[i];
    e += (w ? w[i] : 1.0) * d * d;
  }
  return e;
}

class QuantizeRoundTrip : public ::testing::TestWithParam<TypeCase> {};

TEST_P(QuantizeRoundTrip, RmseWithinBoundAndSearchNeverWorseThanRtn) {
  const TypeCase c = GetParam();
  const auto data = gaussian(static_cast<std::size_t>(kRows) * kRowLength, 1234);
  // Importance unrelated to the data, as an imatrix would be.
  std::mt19937 rng(99);
  std::uniform_real_distribution<float> imp_dist(0.1f, 4.0f);
  std::vector<float> importance(data.size());
  for (auto& v : importance) v = imp_dist(rng);

  double se_search = 0.0, se_rtn = 0.0;
  for (int r = 0; r < kRows; ++r) {
    const float* x = data.data() + static_cast<std::size_t>(r) * kRowLength;
    const float* imp = importance.data() + static_cast<std::size_t>(r) * kRowLength;
    const auto rtn = roundtrip(c.type, x, kRowLength, nullptr, true);
    const auto searched = roundtrip(c.type, x, kRowLength, nullptr, false);
    se_search += weighted_sq_error(x, nullptr, searched);
    se_rtn += weighted_sq_error(x, nullptr, rtn);

    std::vector<float> w(kRowLength);
    default_quant_weights(c.type, x, kRowLength, w.data());
    EXPECT_LE(weighted_sq_error(x, w.data(), searched), weighted_sq_error(x, w.data(), rtn)) << "row " << r;

    const auto with_importance = roundtrip(c.type, x, kRowLength, imp, false);
    std::vector<float> iw(kRowLength);
    importance_quant_weights(c.type, x, kRowLength, imp, iw.data());
    EXPECT_LE(weighted_sq_error(x, iw.data(), with_importance), weighted_sq_error(x, iw.data(), rtn)) << "row " << r;
  }
  const double n = static_cast<double>(kRows) * kRowLength;
  const double rmse_search = std::sqrt(se_search / n);
  const double rmse_rtn = std::sqrt(se_rtn / n);
  std::cout << "[ rmse ] " << ggml_type_name(c.type) << " search " << rmse_search << " rtn " << rmse_rtn << "\n";
  EXPECT_LT(rmse_search, c.max_rmse);
  EXPECT_LT(rmse_rtn, c.max_rmse * 1.25);
  EXPECT_LT(rmse_search, rmse_rtn);  // the search must actually buy something
  EXPECT_GT(rmse_search, 0.0);
}

// The importance weighting by its definition: importance · sqrt(f · mean(x²) + x²), the mean
// over each 256-element super-block (K types) or the whole row (legacy types).
TEST(ImportanceQuantWeights, VarianceFloorPerTypeAndSpan) {
  const int n = 512;
  const auto x = gaussian(n, 77);
  std::vector<float> imp(n);
  for (int i = 0; i < n; ++i) imp[static_cast<std::size_t>(i)] = 0.5f + static_cast<float>(i % 7);
  const auto mean_sq = [&](int begin, int count) {
    double s = 0;
    for (int i = begin; i < begin + count; ++i) s += static_cast<double>(x[static_cast<std::size_t>(i)]) * x[static_cast<std::size_t>(i)];
    return s / count;
  };
  struct Case { GgmlType type; double factor; int span; };  // span 0: the importance as it is
  for (const Case c : {Case{GgmlType::Q2_K, 1, 256}, Case{GgmlType::Q3_K, 2, 256}, Case{GgmlType::Q4_K, 2, 256},
                       Case{GgmlType::Q5_K, 2, 256}, Case{GgmlType::Q6_K, 0, 0}, Case{GgmlType::Q8_0, 0, 0},
                       Case{GgmlType::Q4_0, 1, n}, Case{GgmlType::Q5_1, 1, n}}) {
    std::vector<float> w(n);
    importance_quant_weights(c.type, x.data(), n, imp.data(), w.data());
    for (int i = 0; i < n; ++i) {
      const double xi = x[static_cast<std::size_t>(i)];
      const double expected = c.span == 0 ? imp[static_cast<std::size_t>(i)]
                                          : imp[static_cast<std::size_t>(i)] *
                                                std::sqrt(c.factor * mean_sq(i / c.span * c.span, c.span) + xi * xi);
      ASSERT_NEAR(w[static_cast<std::size_t>(i)], expected, 1e-6 * expected) << ggml_type_name(c.type) << " element " << i;
    }
  }
}

TEST_P(QuantizeRoundTrip, ZeroRowStaysZero) {
  const GgmlType type = GetParam().type;
  const int n = static_cast<int>(ggml_type_info(type).block_size) * 2;
  const std::vector<float> zeros(static_cast<std::size_t>(n), 0.0f);
  for (const bool rtn : {false, true}) {
    const auto y = roundtrip(type, zeros.data(), n, nullptr, rtn);
    for (int i = 0; i < n; ++i) EXPECT_EQ(y[i], 0.0f) << i;
  }
}

TEST_P(QuantizeRoundTrip, RejectsPartialBlocksAndBadInput) {
  const GgmlType type = GetParam().type;
  const int block = static_cast<int>(ggml_type_info(type).block_size);
  std::vector<float> x(static_cast<std::size_t>(block) * 2, 1.0f);
  std::vector<std::uint8_t> out(ggml_nbytes(type, x.size()));
  EXPECT_THROW(quantize_row(type, x.data(), block + 1, nullptr, out.data()), Error);
  EXPECT_THROW(quantize_row_rtn(type, x.data(), block - 16, out.data()), Error);
  EXPECT_THROW(dequantize_row(type, out.data(), x.data(), block + 16), Error);
  EXPECT_THROW(quantize_row(type, x.data(), -block, nullptr, out.data()), Error);
  x[3] = std::nanf("");
  EXPECT_THROW(quantize_row(type, x.data(), block, nullptr, out.data()), Error);
  x[3] = 1.0e30f;  // no f16 scale can reach it
  EXPECT_THROW(quantize_row(type, x.data(), block, nullptr, out.data()), Error);
  EXPECT_THROW(quantize_row_rtn(type, x.data(), block, out.data()), Error);
  x[3] = 1.0f;
  std::vector<float> imp(x.size(), 1.0f);
  imp[5] = -1.0f;
  EXPECT_THROW(quantize_row(type, x.data(), block, imp.data(), out.data()), Error);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantizeRoundTrip, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<TypeCase>& info) { return ggml_type_name(info.param.type); });

TEST(QuantizeErrors, MessageNamesTypeAndSizes) {
  std::vector<float> x(300, 1.0f);
  std::vector<std::uint8_t> out(1024);
  try {
    quantize_row(GgmlType::Q4_K, x.data(), 300, nullptr, out.data());
    FAIL() << "expected Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("q4_K"), std::string::npos) << msg;
    EXPECT_NE(msg.find("300"), std::string::npos) << msg;
    EXPECT_NE(msg.find("256"), std::string::npos) << msg;
  }
}

TEST(QuantizeErrors, UnsupportedTypes) {
  std::vector<float> x(256, 1.0f);
  std::vector<std::uint8_t> out(1024);
  EXPECT_FALSE(quantize_supports(GgmlType::Q8_K));
  EXPECT_FALSE(quantize_supports(GgmlType::F32));
  EXPECT_THROW(quantize_row(GgmlType::Q8_K, x.data(), 256, nullptr, out.data()), Error);
  EXPECT_THROW(dequantize_row(GgmlType::Q8_1, out.data(), x.data(), 32), Error);
}

// Q8_0 of values that are exact multiples of a power-of-two scale comes back exactly.
TEST(QuantizeExact, Q8_0RepresentableValues) {
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[static_cast<std::size_t>(i)] = 0.25f * static_cast<float>(i * 4 - 127);
  x[0] = -0.25f * 127.0f;
  for (const bool rtn : {false, true}) {
    const auto y = roundtrip(GgmlType::Q8_0, x.data(), 32, nullptr, rtn);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(y[static_cast<std::size_t>(i)], x[static_cast<std::size_t>(i)]) << i;
  }
}

}  // namespace
}  // namespace piquant
