// attend()'s log-sum-exp output and attend_backward(): the double-precision
// reference::attend_backward against central finite differences of reference::attend in
// double (a few causal tokens, head_dim 8, two query heads over one KV head), then the float
// kernel, fed by the float forward's out and lse, against that reference on every SIMD
// target, within an error bound stated below.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"
#include "gradient_check.h"
#include "kernel_test_support.h"
#include "kernels/attention.h"

namespace piquant {
namespace {

using namespace kernel_test;

// Causal self-attention of one KV head: n_tokens new tokens after `past` cached ones, each
// token with `group` query heads; query b = t·group + h sees past + t + 1 keys. Key/value
// rows hold 3 heads (the one under test in the middle) and gradient rows are wider still
// with the head at an odd offset, so the kernel must follow both strides.
template <class T>
struct Problem {
  std::int64_t head_dim, n_tokens, group, past;
  std::vector<T> q, k, v, dout;  // q and dout: n_q rows of head_dim
  std::vector<std::int64_t> n_visible;

  std::int64_t n_q() const { return n_tokens * group; }
  std::int64_t n_rows() const { return past + n_tokens; }
  std::size_t stride() const { return static_cast<std::size_t>(3 * head_dim); }
  std::size_t grad_stride() const { return static_cast<std::size_t>(2 * head_dim + 3); }
  static constexpr std::size_t kGradOffset = 1;
  std::size_t dim() const { return static_cast<std::size_t>(head_dim); }
  T* row(std::vector<T>& m, std::int64_t b) const { return m.data() + static_cast<std::size_t>(b) * dim(); }
  const T* row(const std::vector<T>& m, std::int64_t b) const { return m.data() + static_cast<std::size_t>(b) * dim(); }
  const T* k_head() const { return k.data() + dim(); }
  const T* v_head() const { return v.data() + dim(); }
  // Element i of key/value row j, and the index of gradient row j's element i.
  T k_at(std::int64_t j, std::size_t i) const { return k_head()[static_cast<std::size_t>(j) * stride() + i]; }
  T v_at(std::int64_t j, std::size_t i) const { return v_head()[static_cast<std::size_t>(j) * stride() + i]; }
  std::size_t grad_index(std::int64_t j, std::size_t i) const {
    return static_cast<std::size_t>(j) * grad_stride() + kGradOffset + i;
  }
  std::size_t grad_size() const { return static_cast<std::size_t>(n_rows()) * grad_stride(); }
};

template <class T>
Problem<T> make_problem(std::int64_t head_dim, std::int64_t n_tokens, std::int64_t group, std::int64_t past, std::mt19937& rng) {
  Problem<T> p{head_dim, n_tokens, group, past, {}, {}, {}, {}, {}};
  const auto draw = [&](std::size_t n, double lo, double hi) {
    std::vector<T> out(n);
    std::uniform_real_distribution<double> dist(lo, hi);
    for (T& x : out) x = static_cast<T>(dist(rng));
    return out;
  };
  p.q = draw(static_cast<std::size_t>(p.n_q()) * p.dim(), -2, 2);
  p.dout = draw(static_cast<std::size_t>(p.n_q()) * p.dim(), -1, 1);
  p.k = draw(static_cast<std::size_t>(p.n_rows()) * p.stride(), -2, 2);
  p.v = draw(static_cast<std::size_t>(p.n_rows()) * p.stride(), -2, 2);
  for (std::int64_t t = 0; t < n_tokens; ++t)
    for (std::int64_t h = 0; h < group; ++h) p.n_visible.push_back(past + t + 1);
  return p;
}

template <class T>
std::vector<const T*> row_pointers(const Problem<T>& p, const std::vector<T>& m) {
  std::vector<const T*> rows;
  for (std::int64_t b = 0; b < p.n_q(); ++b) rows.push_back(p.row(m, b));
  return rows;
}

template <class T>
std::vector<T*> row_pointers(const Problem<T>& p, std::vector<T>& m) {
  std::vector<T*> rows;
  for (std::int64_t b = 0; b < p.n_q(); ++b) rows.push_back(p.row(m, b));
  return rows;
}

TEST(AttentionBackward, ReferenceMatchesFiniteDifferences) {
  std::mt19937 rng(140);
  for (const std::int64_t n_tokens : {3, 4, 5}) {
    SCOPED_TRACE(std::to_string(n_tokens) + " tokens");
    Problem<double> p = make_problem<double>(8, n_tokens, 2, 0, rng);
    const double scale = 1.0 / std::sqrt(8.0);
    std::vector<double> dq(p.q.size()), dk(p.grad_size(), 0.0), dv(p.grad_size(), 0.0), out(p.q.size());
    const std::vector<const double*> q_rows = row_pointers(p, std::as_const(p.q)), dout_rows = row_pointers(p, std::as_const(p.dout));
    const std::vector<double*> dq_rows = row_pointers(p, dq), out_rows = row_pointers(p, out);
    reference::attend_backward(q_rows.data(), p.n_visible.data(), p.n_q(), p.k_head(), p.v_head(), p.stride(), p.head_dim,
                               scale, dout_rows.data(), dq_rows.data(), dk.data() + Problem<double>::kGradOffset,
                               dv.data() + Problem<double>::kGradOffset, p.grad_stride());
    const auto loss = [&] {
      reference::attend(q_rows.data(), p.n_visible.data(), p.n_q(), p.k_head(), p.v_head(), p.stride(), p.head_dim, scale,
                        out_rows.data());
      return dot(p.dout, out);
    };
    for (std::size_t e = 0; e < p.q.size(); ++e)
      ASSERT_NEAR(central_difference(p.q, e, loss), dq[e], finite_difference_tolerance(dq[e])) << "q element " << e;
    for (std::int64_t j = 0; j < p.n_rows(); ++j)
      for (std::size_t i = 0; i < p.dim(); ++i) {
        const std::size_t at = static_cast<std::size_t>(j) * p.stride() + p.dim() + i;  // the middle head
        const double gk = dk[p.grad_index(j, i)], gv = dv[p.grad_index(j, i)];
        ASSERT_NEAR(central_difference(p.k, at, loss), gk, finite_difference_tolerance(gk)) << "k row " << j << " i " << i;
        ASSERT_NEAR(central_difference(p.v, at, loss), gv, finite_difference_tolerance(gv)) << "v row " << j << " i " << i;
      }
    // The first key is seen by every query: its gradients are not all zero.
    EXPECT_NE(dk[p.grad_index(0, 0)], 0.0);
    EXPECT_NE(dv[p.grad_index(0, 0)], 0.0);
  }
}

// attend() over an F32 cache holding the problem's rows: out and lse, one row per query.
void run_forward(const Problem<float>& p, float scale, std::vector<float>& out, std::vector<float>& lse) {
  const std::vector<const float*> q_rows = row_pointers(p, p.q);
  out.assign(p.q.size(), 0.0f);
  lse.assign(static_cast<std::size_t>(p.n_q()), std::nanf(""));
  const std::vector<float*> out_rows = row_pointers(p, out);
  std::vector<float> scratch(attend_scratch_floats(p.n_q(), p.n_rows(), p.head_dim));
  attend(q_rows.data(), p.n_visible.data(), p.n_q(), p.k_head(), p.v_head(), p.stride() * sizeof(float), GgmlType::F32,
         p.head_dim, scale, scratch.data(), scratch.size(), out_rows.data(), lse.data());
}

// The backward's error bound, per output element, to first order in u = 2^-24. For query b
// seeing n keys, with A = scale·max_j Σ_i |q_i·k_ji| (bounding every |score|) and D = head_dim:
// - scores are off by δ ≤ (D + 9)·u·A (attention_test.cpp); lse by δ, the softmax sum's
//   (n/16 + 10)·u and its own rounding (A + ln n)·u; score − lse rounds once more,
//   ≤ (2A + ln n)·u; so P_j = exp(score − lse) is off relatively by
//   e_P ≤ 1.1·(2δ/u + n/16 + 10 + 3A + 2·ln n)·u + 2u (exp within 2u);
// - dout·v_j and dout·out are chains of D fused multiply-adds, (D + 8)·u of Σ|terms|, and
//   the forward's out is off by attention_test's bound K_out·u·max_j |v_ji|;
// - dS_j = P_j·(dout·v_j − dout·out) then carries P_j·(e_P + 2u)·|difference| plus P_j times
//   the two dot products' errors;
// - dq, dk, dv are sums of m terms (added to what dk, dv held): m·u of |initial| + Σ|terms|,
//   each term also carrying its factor's error (and one rounding of scale·dS).
struct Bounds {
  std::vector<double> dq, dk, dv;  // indexed like the gradients
};

Bounds error_bounds(const Problem<float>& p, double scale, const std::vector<double>& dk0, const std::vector<double>& dv0) {
  const double u = kFloatRoundoff, d = static_cast<double>(p.head_dim);
  Bounds bounds{std::vector<double>(p.q.size(), 0.0), std::vector<double>(p.grad_size(), 0.0),
                std::vector<double>(p.grad_size(), 0.0)};
  std::vector<double> dk_terms(p.grad_size(), 0.0), dv_terms(p.grad_size(), 0.0);
  std::vector<std::int64_t> terms(static_cast<std::size_t>(p.n_rows()), 0);  // queries seeing each key
  for (std::int64_t b = 0; b < p.n_q(); ++b) {
    const std::int64_t n = p.n_visible[static_cast<std::size_t>(b)];
    const float* q = p.row(p.q, b);
    const float* g = p.row(p.dout, b);
    // Exact scores, probabilities and output, in double.
    std::vector<double> s(static_cast<std::size_t>(n)), prob(s.size()), out(p.dim(), 0.0), v_max(p.dim(), 0.0);
    double a = 0, max = -1e300, sum = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      double dot_qk = 0, abs_qk = 0;
      for (std::size_t i = 0; i < p.dim(); ++i) {
        dot_qk += q[i] * static_cast<double>(p.k_at(j, i));
        abs_qk += std::abs(q[i] * static_cast<double>(p.k_at(j, i)));
      }
      s[static_cast<std::size_t>(j)] = scale * dot_qk;
      a = std::max(a, scale * abs_qk);
      max = std::max(max, s[static_cast<std::size_t>(j)]);
    }
    for (std::size_t j = 0; j < s.size(); ++j) sum += (prob[j] = std::exp(s[j] - max));
    for (std::size_t j = 0; j < s.size(); ++j) {
      prob[j] /= sum;
      for (std::size_t i = 0; i < p.dim(); ++i) {
        out[i] += prob[j] * p.v_at(static_cast<std::int64_t>(j), i);
        v_max[i] = std::max(v_max[i], std::abs(static_cast<double>(p.v_at(static_cast<std::int64_t>(j), i))));
      }
    }
    const double nd = static_cast<double>(n), log_n = std::log(nd);
    const double e_p = (1.1 * (2 * (d + 9) * a + nd / 16 + 10 + 3 * a + 2 * log_n) + 2) * u;
    const double k_out = 2.1 * (d + 9) * a + 14.0 + nd / 16.0 + 2.0 * a + nd + 1.0;  // attention_test's bound on out
    double delta = 0, delta_error = 0;
    for (std::size_t i = 0; i < p.dim(); ++i) {
      delta += g[i] * out[i];
      delta_error += (d + 8) * u * std::abs(g[i] * out[i]) + std::abs(g[i]) * k_out * u * v_max[i];
    }
    for (std::int64_t j = 0; j < n; ++j) {
      double dp = 0, dp_abs = 0;
      for (std::size_t i = 0; i < p.dim(); ++i) {
        dp += g[i] * static_cast<double>(p.v_at(j, i));
        dp_abs += std::abs(g[i] * static_cast<double>(p.v_at(j, i)));
      }
      const double pj = prob[static_cast<std::size_t>(j)], ds = std::abs(pj * (dp - delta));
      const double ds_error = pj * ((e_p + 2 * u) * std::abs(dp - delta) + (d + 8) * u * dp_abs + delta_error);
      ++terms[static_cast<std::size_t>(j)];
      for (std::size_t i = 0; i < p.dim(); ++i) {
        const std::size_t gi = p.grad_index(j, i);
        bounds.dq[static_cast<std::size_t>(b) * p.dim() + i] +=
            scale * (ds_error + (nd + 2) * u * ds) * std::abs(static_cast<double>(p.k_at(j, i)));
        bounds.dk[gi] += scale * (ds_error + 2 * u * ds) * std::abs(q[i]);
        dk_terms[gi] += scale * ds * std::abs(q[i]);
        bounds.dv[gi] += e_p * pj * std::abs(g[i]);
        dv_terms[gi] += pj * std::abs(g[i]);
      }
    }
  }
  for (std::int64_t j = 0; j < p.n_rows(); ++j)
    for (std::size_t i = 0; i < p.dim(); ++i) {
      const std::size_t gi = p.grad_index(j, i);
      const double m = static_cast<double>(terms[static_cast<std::size_t>(j)]);
      bounds.dk[gi] += m * u * (std::abs(dk0[gi]) + dk_terms[gi]);
      bounds.dv[gi] += m * u * (std::abs(dv0[gi]) + dv_terms[gi]);
    }
  return bounds;
}

struct Shape {
  std::int64_t head_dim, n_tokens, group, past;
};

TEST(AttentionBackward, MatchesReferenceOnEverySimdTarget) {
  std::mt19937 rng(141);
  // Tiny causal blocks; head sizes off every vector width; more keys than a forward chunk
  // (16 rows); a cached prefix; a group of 4.
  const Shape shapes[] = {{8, 3, 2, 0}, {8, 5, 2, 0}, {40, 7, 4, 3}, {64, 20, 2, 0}, {128, 6, 1, 10}, {3, 4, 2, 1}};
  for (const Shape& shape : shapes) {
    SCOPED_TRACE("head_dim " + std::to_string(shape.head_dim) + ", " + std::to_string(shape.n_tokens) + " tokens, group " +
                 std::to_string(shape.group) + ", past " + std::to_string(shape.past));
    const Problem<float> p = make_problem<float>(shape.head_dim, shape.n_tokens, shape.group, shape.past, rng);
    const float scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
    // dk, dv are added to: start from values (and sentinels outside the head that must stay).
    const std::vector<float> dk0 = random_floats(p.grad_size(), rng, -1, 1), dv0 = random_floats(p.grad_size(), rng, -1, 1);

    // The reference from the same float inputs, in double.
    Problem<double> pd{p.head_dim, p.n_tokens, p.group, p.past, to_double(p.q), to_double(p.k), to_double(p.v),
                       to_double(p.dout), p.n_visible};
    std::vector<double> dq_ref(p.q.size()), dk_ref = to_double(dk0), dv_ref = to_double(dv0);
    {
      const std::vector<const double*> q_rows = row_pointers(pd, std::as_const(pd.q)), g_rows = row_pointers(pd, std::as_const(pd.dout));
      const std::vector<double*> dq_rows = row_pointers(pd, dq_ref);
      reference::attend_backward(q_rows.data(), pd.n_visible.data(), pd.n_q(), pd.k_head(), pd.v_head(), pd.stride(),
                                 pd.head_dim, scale, g_rows.data(), dq_rows.data(), dk_ref.data() + Problem<float>::kGradOffset,
                                 dv_ref.data() + Problem<float>::kGradOffset, pd.grad_stride());
    }
    const Bounds bounds = error_bounds(p, scale, to_double(dk0), to_double(dv0));

    for_each_simd_target([&] {
      std::vector<float> out, lse;
      run_forward(p, scale, out, lse);
      std::vector<float> dq(p.q.size(), std::nanf("")), dk = dk0, dv = dv0;  // dq is written, not read
      const std::vector<const float*> q_rows = row_pointers(p, p.q), g_rows = row_pointers(p, p.dout);
      const std::vector<const float*> out_rows = row_pointers(p, std::as_const(out));
      const std::vector<float*> dq_rows = row_pointers(p, dq);
      attend_backward(q_rows.data(), p.n_visible.data(), p.n_q(), p.k_head(), p.v_head(), p.stride(), p.head_dim, scale,
                      out_rows.data(), g_rows.data(), lse.data(), dq_rows.data(), dk.data() + Problem<float>::kGradOffset,
                      dv.data() + Problem<float>::kGradOffset, p.grad_stride());
      for (std::size_t e = 0; e < dq.size(); ++e) ASSERT_NEAR(dq[e], dq_ref[e], bounds.dq[e]) << "dq element " << e;
      for (std::size_t e = 0; e < dk.size(); ++e) {
        const std::size_t column = e % p.grad_stride();
        if (column < Problem<float>::kGradOffset || column >= Problem<float>::kGradOffset + p.dim()) {
          ASSERT_EQ(dk[e], dk0[e]) << "dk outside the head, element " << e;
          ASSERT_EQ(dv[e], dv0[e]) << "dv outside the head, element " << e;
          continue;
        }
        ASSERT_NEAR(dk[e], dk_ref[e], bounds.dk[e]) << "dk element " << e;
        ASSERT_NEAR(dv[e], dv_ref[e], bounds.dv[e]) << "dv element " << e;
      }
    });
  }
}

TEST(AttentionBackward, LseIsTheLogSumExpOfTheScores) {
  std::mt19937 rng(142);
  for (const GgmlType type : kKernelTypes) {
    for (const std::int64_t head_dim : {8, 40, 128}) {
      SCOPED_TRACE(ggml_type_name(type) + ", head_dim " + std::to_string(head_dim));
      const Problem<float> p = make_problem<float>(head_dim, 24, 2, 5, rng);
      const std::vector<std::uint8_t> k = encode(p.k, type), v = encode(p.v, type);
      const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      const std::size_t stride_bytes = p.stride() * element_bytes(type);
      const std::uint8_t* k_head = k.data() + p.dim() * element_bytes(type);
      const std::uint8_t* v_head = v.data() + p.dim() * element_bytes(type);
      for_each_simd_target([&] {
        const std::vector<const float*> q_rows = row_pointers(p, p.q);
        std::vector<float> out(p.q.size()), plain(p.q.size()), lse(static_cast<std::size_t>(p.n_q()), std::nanf(""));
        std::vector<float> scratch(attend_scratch_floats(p.n_q(), p.n_rows(), head_dim));
        const std::vector<float*> out_rows = row_pointers(p, out), plain_rows = row_pointers(p, plain);
        attend(q_rows.data(), p.n_visible.data(), p.n_q(), k_head, v_head, stride_bytes, type, head_dim, scale, scratch.data(),
               scratch.size(), out_rows.data(), lse.data());
        attend(q_rows.data(), p.n_visible.data(), p.n_q(), k_head, v_head, stride_bytes, type, head_dim, scale, scratch.data(),
               scratch.size(), plain_rows.data());
        EXPECT_EQ(out, plain);  // asking for lse changes no output bit
        for (std::int64_t b = 0; b < p.n_q(); ++b) {
          const float* q = p.row(p.q, b);
          const std::int64_t n = p.n_visible[static_cast<std::size_t>(b)];
          std::vector<double> s;
          double a = 0;
          for (std::int64_t j = 0; j < n; ++j) {
            double dot_qk = 0, abs_qk = 0;
            for (std::size_t i = 0; i < p.dim(); ++i) {
              const double kv = decode(k_head + static_cast<std::size_t>(j) * stride_bytes, type, i);
              dot_qk += q[i] * kv;
              abs_qk += std::abs(q[i] * kv);
            }
            s.push_back(scale * dot_qk);
            a = std::max(a, scale * abs_qk);
          }
          const double max = *std::max_element(s.begin(), s.end());
          double sum = 0;
          for (const double x : s) sum += std::exp(x - max);
          const double expected = max + std::log(sum), nd = static_cast<double>(n);
          // Scores off by (D + 9)·u·A (attention_test.cpp), which shifts the log-sum-exp as
          // much; the sum of n exps (n/16 + 10)·u relatively, its log as much absolutely;
          // the rounding to float (|lse| ≤ A + ln n).
          const double bound =
              ((static_cast<double>(head_dim) + 9) * a + nd / 16 + 10 + a + std::log(nd) + 1) * kFloatRoundoff;
          ASSERT_NEAR(lse[static_cast<std::size_t>(b)], expected, bound) << "query " << b;
        }
      });
    }
  }
}

TEST(AttentionBackward, BadArgumentsAreErrors) {
  const float row[4] = {1, 2, 3, 4};
  float grad[4] = {}, dq_row[4] = {};
  const float* q[1] = {row};
  const float* out[1] = {row};
  float* dq[1] = {dq_row};
  const float lse[1] = {0.0f};
  const std::int64_t one = 1, zero = 0;
  const auto call = [&](const std::int64_t* n_visible, std::size_t stride, std::size_t grad_stride, const float* lse_ptr) {
    attend_backward(q, n_visible, 1, row, row, stride, 4, 0.5f, out, q, lse_ptr, dq, grad, grad, grad_stride);
  };
  EXPECT_NO_THROW(call(&one, 4, 4, lse));
  EXPECT_THROW(call(&zero, 4, 4, lse), Error);     // a query that sees no key
  EXPECT_THROW(call(&one, 3, 4, lse), Error);      // row stride shorter than a head
  EXPECT_THROW(call(&one, 4, 3, lse), Error);      // gradient row stride likewise
  EXPECT_THROW(call(&one, 4, 4, nullptr), Error);  // no log-sum-exp
  EXPECT_THROW(attend_backward(q, &one, -1, row, row, 4, 4, 0.5f, out, q, lse, dq, grad, grad, 4), Error);
  EXPECT_NO_THROW(attend_backward(nullptr, nullptr, 0, row, row, 4, 4, 0.5f, nullptr, nullptr, nullptr, nullptr, grad, grad, 4));
}

}  // namespace
}  // namespace piquant
