#include "prune/width_plan.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <numeric>
#include <queue>

#include "core/error.h"

namespace piquant {
namespace {

// The widths a layer may take: multiples of align in [min, width], and width itself.
struct LayerWidths {
  std::int64_t min = 0;
  std::int64_t full = 0;
  std::int64_t align = 1;

  // The allowed width nearest to `want` (ties go up).
  std::int64_t nearest(double want) const {
    if (want >= static_cast<double>(full)) return full;
    const auto down = static_cast<std::int64_t>(std::floor(want / static_cast<double>(align))) * align;
    std::int64_t best = std::clamp<std::int64_t>(down, min, full);
    const std::int64_t up = std::min(down + align, full);
    if (std::abs(static_cast<double>(up) - want) <= std::abs(static_cast<double>(best) - want)) best = std::max(up, min);
    return std::clamp<std::int64_t>(best, min, full);
  }
  // The allowed width after `w` (w < full).
  std::int64_t next(std::int64_t w) const { return std::min((w / align + 1) * align, full); }
};

// Neuron indices of one layer, best first (ties: lower index first).
std::vector<std::int64_t> ranked(const std::vector<double>& scores) {
  std::vector<std::int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return scores[static_cast<std::size_t>(a)] > scores[static_cast<std::size_t>(b)];
  });
  return order;
}

LlamaParams with_widths(const LlamaParams& params, const std::vector<std::int64_t>& widths, const WidthPlanOptions& o) {
  LlamaParams out = params;
  out.n_ff = widths;
  if (o.bias_compensation) {
    out.ffn_down_bias.assign(static_cast<std::size_t>(params.n_layer), false);
    for (std::int64_t l = 0; l < params.n_layer; ++l) {
      const bool pruned = l >= o.first_layer && l <= o.last_layer && widths[static_cast<std::size_t>(l)] < params.n_ff[static_cast<std::size_t>(l)];
      out.ffn_down_bias[static_cast<std::size_t>(l)] = params.has_ffn_down_bias(l) || pruned;
    }
  }
  return out;
}

std::string describe(const WidthTarget& t) {
  if (t.ratio) return "removing " + std::to_string(*t.ratio * 100) + "% of the neurons";
  if (t.params) return std::to_string(*t.params) + " parameters";
  return std::to_string(*t.bytes) + " bytes";
}

}  // namespace

WidthAllocation parse_width_allocation(const std::string& name) {
  if (name == "uniform") return WidthAllocation::Uniform;
  if (name == "global") return WidthAllocation::Global;
  throw Error("unknown allocation '" + name + "' (known: uniform, global)");
}

std::string width_allocation_name(WidthAllocation allocation) {
  return allocation == WidthAllocation::Uniform ? "uniform" : "global";
}

std::pair<std::int64_t, std::int64_t> parse_layer_range(const std::string& spec, std::int64_t n_layer) {
  if (spec.empty()) return {0, n_layer - 1};
  const auto parse = [&](std::string_view s) {
    std::int64_t v = -1;
    const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || v < 0) {
      throw Error("--layers '" + spec + "': expected FIRST-LAST or one layer, e.g. 4-27");
    }
    return v;
  };
  const std::string_view sv(spec);
  const std::size_t dash = sv.find('-');
  const std::int64_t first = parse(sv.substr(0, dash));
  const std::int64_t last = dash == std::string_view::npos ? first : parse(sv.substr(dash + 1));
  if (first > last || last >= n_layer) {
    throw Error("--layers '" + spec + "': the model has layers 0-" + std::to_string(n_layer - 1));
  }
  return {first, last};
}

std::int64_t parse_param_count(const std::string& spec) {
  double scale = 1;
  std::string number = spec;
  if (!number.empty()) {
    switch (std::tolower(static_cast<unsigned char>(number.back()))) {
      case 'k': scale = 1e3; break;
      case 'm': scale = 1e6; break;
      case 'b': case 'g': scale = 1e9; break;
      default: break;
    }
    if (scale != 1) number.pop_back();
  }
  double value = -1;
  const auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || ec != std::errc() || ptr != number.data() + number.size() || !(value > 0)) {
    throw Error("parameter count '" + spec + "': expected a positive number, optionally with k, M or B (e.g. 6.97B)");
  }
  return static_cast<std::int64_t>(std::llround(value * scale));
}

WidthPlan plan_widths(const LlamaParams& params, const std::vector<std::vector<double>>& scores,
                      const WidthTarget& target, const WidthPlanOptions& options_in) {
  WidthPlanOptions o = options_in;
  if (o.last_layer < 0) o.last_layer = params.n_layer - 1;
  if (o.first_layer < 0 || o.first_layer > o.last_layer || o.last_layer >= params.n_layer) {
    throw Error("layer range " + std::to_string(o.first_layer) + "-" + std::to_string(o.last_layer) + " is outside the model's 0-" +
                std::to_string(params.n_layer - 1));
  }
  if (o.align < 1) throw Error("--align must be at least 1");
  if (o.min_width == 0) o.min_width = o.align;
  if (o.min_width < 1) throw Error("--min-width must be at least 1");
  const int n_targets = int(target.ratio.has_value()) + int(target.params.has_value()) + int(target.bytes.has_value());
  if (n_targets != 1) throw Error("give exactly one pruning target (a ratio, a parameter count or a size)");
  if (target.ratio && !(*target.ratio >= 0 && *target.ratio < 1)) {
    throw Error("--ratio " + std::to_string(*target.ratio) + " is outside [0, 1)");
  }
  if (target.bytes && !target.bytes_of) throw Error("a size target needs a way to count bytes");
  if (static_cast<std::int64_t>(scores.size()) != params.n_layer) throw Error("importance scores: one list per layer expected");

  const auto first = static_cast<std::size_t>(o.first_layer), last = static_cast<std::size_t>(o.last_layer);
  std::vector<LayerWidths> allowed(params.n_ff.size());
  std::vector<std::vector<std::int64_t>> order(params.n_ff.size());
  for (std::size_t l = first; l <= last; ++l) {
    const std::int64_t full = params.n_ff[l];
    if (static_cast<std::int64_t>(scores[l].size()) != full) {
      throw Error("importance scores of layer " + std::to_string(l) + ": " + std::to_string(scores[l].size()) + " for " +
                  std::to_string(full) + " neurons");
    }
    allowed[l] = LayerWidths{std::min(o.min_width, full), full, o.align};
    order[l] = ranked(scores[l]);
  }

  std::vector<std::int64_t> widths = params.n_ff;
  const auto fits = [&](const std::vector<std::int64_t>& w) {
    const LlamaParams p = with_widths(params, w, o);
    if (target.params) return p.n_params() <= *target.params;
    return target.bytes_of(p) <= *target.bytes;
  };
  const auto uniform_widths = [&](double keep_share) {
    std::vector<std::int64_t> w = params.n_ff;
    for (std::size_t l = first; l <= last; ++l) w[l] = allowed[l].nearest(keep_share * static_cast<double>(params.n_ff[l]));
    return w;
  };

  if (o.allocation == WidthAllocation::Uniform) {
    if (target.ratio) {
      widths = uniform_widths(1.0 - *target.ratio);
    } else {
      if (!fits(uniform_widths(0))) {
        throw Error("cannot reach " + describe(target) + ": even the minimum widths (" + std::to_string(o.min_width) +
                    ") in layers " + std::to_string(first) + "-" + std::to_string(last) + " give more");
      }
      double lo = 0, hi = 1;  // fits(lo) holds; find the largest share that fits
      if (fits(uniform_widths(1))) lo = 1;
      for (int i = 0; i < 60 && lo < hi; ++i) {
        const double mid = 0.5 * (lo + hi);
        (fits(uniform_widths(mid)) ? lo : hi) = mid;
      }
      widths = uniform_widths(lo);
    }
  } else {
    // Global: every layer starts at its minimum; chunks go to the best next chunk.
    std::vector<double> layer_mean(params.n_ff.size(), 1.0);
    for (std::size_t l = first; l <= last; ++l) {
      widths[l] = allowed[l].min;
      const double sum = std::accumulate(scores[l].begin(), scores[l].end(), 0.0);
      if (sum > 0) layer_mean[l] = sum / static_cast<double>(scores[l].size());
    }
    std::int64_t keep_budget = -1;  // ratio: neurons the range may keep
    if (target.ratio) {
      std::int64_t total = 0;
      for (std::size_t l = first; l <= last; ++l) total += params.n_ff[l];
      keep_budget = static_cast<std::int64_t>(std::llround((1.0 - *target.ratio) * static_cast<double>(total)));
    }
    std::int64_t kept_total = 0;
    for (std::size_t l = first; l <= last; ++l) kept_total += widths[l];
    if (target.ratio ? kept_total > keep_budget : !fits(widths)) {
      throw Error("cannot reach " + describe(target) + " with a minimum width of " + std::to_string(o.min_width) +
                  " per layer in layers " + std::to_string(first) + "-" + std::to_string(last));
    }
    const auto chunk_score = [&](std::size_t l) {
      const std::int64_t from = widths[l], to = allowed[l].next(from);
      double sum = 0;
      for (std::int64_t i = from; i < to; ++i) sum += scores[l][static_cast<std::size_t>(order[l][static_cast<std::size_t>(i)])];
      return sum / static_cast<double>(to - from) / layer_mean[l];
    };
    using Entry = std::pair<double, std::int64_t>;  // (score, -layer): ties go to the lower layer
    std::priority_queue<Entry> queue;
    for (std::size_t l = first; l <= last; ++l) {
      if (widths[l] < allowed[l].full) queue.emplace(chunk_score(l), -static_cast<std::int64_t>(l));
    }
    while (!queue.empty()) {
      const auto l = static_cast<std::size_t>(-queue.top().second);
      queue.pop();
      const std::int64_t grown = allowed[l].next(widths[l]);
      std::vector<std::int64_t> trial = widths;
      trial[l] = grown;
      const bool ok = target.ratio ? kept_total + (grown - widths[l]) <= keep_budget : fits(trial);
      if (!ok) continue;  // this layer's next chunk does not fit; smaller chunks of others may
      kept_total += grown - widths[l];
      widths[l] = grown;
      if (widths[l] < allowed[l].full) queue.emplace(chunk_score(l), -static_cast<std::int64_t>(l));
    }
  }

  WidthPlan plan;
  plan.params = with_widths(params, widths, o);
  plan.first_layer = o.first_layer;
  plan.last_layer = o.last_layer;
  plan.kept.resize(params.n_ff.size());
  plan.removed_importance_share.assign(params.n_ff.size(), 0.0);
  for (std::size_t l = 0; l < params.n_ff.size(); ++l) {
    auto& kept = plan.kept[l];
    if (l < first || l > last) {
      kept.resize(static_cast<std::size_t>(params.n_ff[l]));
      std::iota(kept.begin(), kept.end(), 0);
      continue;
    }
    kept.assign(order[l].begin(), order[l].begin() + widths[l]);
    std::sort(kept.begin(), kept.end());
    const double total = std::accumulate(scores[l].begin(), scores[l].end(), 0.0);
    double kept_score = 0;
    for (const auto i : kept) kept_score += scores[l][static_cast<std::size_t>(i)];
    plan.removed_importance_share[l] = total > 0 ? (total - kept_score) / total : 0.0;
  }
  plan.params.validate("the pruned model");
  return plan;
}

}  // namespace piquant
