#include "engine/context_plan.h"

#include <algorithm>
#include <initializer_list>

#include "kernels/attention.h"
#include "kernels/q8_activations.h"
#include "engine/forward_blocks.h"
#include "engine/llama_context.h"

namespace piquant {

namespace {
std::uint64_t count(std::int64_t n) { return n > 0 ? static_cast<std::uint64_t>(n) : 0; }

std::uint64_t product(std::initializer_list<std::uint64_t> factors) {
  std::uint64_t out = 1;
  for (const std::uint64_t f : factors) {
    if (__builtin_mul_overflow(out, f, &out)) return UINT64_MAX;
  }
  return out;
}

std::uint64_t sum(std::initializer_list<std::uint64_t> terms) {
  std::uint64_t out = 0;
  for (const std::uint64_t t : terms) {
    if (__builtin_add_overflow(out, t, &out)) return UINT64_MAX;
  }
  return out;
}
}  // namespace

std::uint64_t ContextPlan::context_scratch_bytes() const {
  return product({sum({x, xn, q, k, v, attn, proj, work, logits}), sizeof(float)});
}

std::uint64_t ContextPlan::scratch_bytes() const { return sum({context_scratch_bytes(), q8_bytes}); }

ContextPlan plan_context(const LlamaParams& p, const ContextOptions& options, std::uint64_t threads) {
  ContextPlan plan;
  plan.n_ctx = count(options.n_ctx);
  plan.n_batch = std::min(count(options.n_batch), plan.n_ctx);
  plan.threads = threads;
  plan.mlp_tokens = count(mlp_step_tokens(static_cast<std::int64_t>(std::min<std::uint64_t>(plan.n_batch, INT64_MAX))));
  const std::uint64_t nb = plan.n_batch;
  const std::uint64_t embd = count(p.n_embd);
  const std::uint64_t q_dim = product({count(p.n_head), count(p.head_dim)});
  const std::uint64_t kv_dim = product({count(p.n_head_kv), count(p.head_dim)});
  const std::uint64_t max_ff = p.n_ff.empty() ? 0 : count(*std::max_element(p.n_ff.begin(), p.n_ff.end()));

  plan.x = product({nb, embd});
  plan.xn = plan.x;
  plan.q = product({nb, q_dim});
  plan.k = product({nb, kv_dim});
  plan.v = plan.k;
  plan.attn = plan.q;
  plan.proj = plan.x;

  plan.mlp_gate = product({plan.mlp_tokens, max_ff});
  const std::uint64_t mlp_floats = product({2, plan.mlp_gate});
  // attend() needs room for at least one query over the whole context (attention.h:
  // n_ctx scores plus a head_dim-sized part). Beyond that each thread takes an equal share
  // of the region, shared out as if the thread count were even (an odd count leaves one
  // share unused): the attention blocking was tuned with these shares, two threads per
  // n_ff-wide buffer, and larger shares only allow larger blocks of queries.
  const std::uint64_t one_query = sum({plan.n_ctx, attend_scratch_floats(1, 0, std::max<std::int64_t>(p.head_dim, 0))});
  const std::uint64_t even_threads = threads + threads % 2;
  const std::uint64_t share = even_threads > 0 ? mlp_floats / even_threads : 0;
  plan.attend_per_thread = std::max(one_query, share);
  plan.work = std::max(mlp_floats, product({threads, plan.attend_per_thread}));
  plan.logits = count(p.n_vocab);

  // The largest input a matmul quantizes: the attention's (n_batch tokens of n_embd, or of
  // q_dim for wo) or the MLP's down projection (mlp_tokens of n_ff).
  plan.q8_bytes = std::max(Q8Activations::storage_bytes(nb, std::max(embd, q_dim)),
                           Q8Activations::storage_bytes(plan.mlp_tokens, max_ff));

  plan.kv_row_bytes = ggml_nbytes(options.kv_type, kv_dim);
  plan.kv_cache_bytes = product({2, plan.kv_row_bytes, plan.n_ctx, count(p.n_layer)});
  return plan;
}

}  // namespace piquant
