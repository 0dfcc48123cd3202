#include <algorithm>

#include "core/error.h"
#include "prune/importance.h"

namespace piquant {
namespace {

struct CriterionName {
  PruneCriterion criterion;
  const char* name;
};
constexpr CriterionName kCriteria[] = {{PruneCriterion::Magnitude, "magnitude"},
                                       {PruneCriterion::Wanda, "wanda"},
                                       {PruneCriterion::Activation, "activation"},
                                       {PruneCriterion::Flap, "flap"},
                                       {PruneCriterion::Taylor, "taylor"}};

}  // namespace

std::vector<std::string> prune_criterion_names() {
  std::vector<std::string> out;
  for (const auto& c : kCriteria) out.emplace_back(c.name);
  return out;
}

PruneCriterion parse_prune_criterion(const std::string& name) {
  for (const auto& c : kCriteria) {
    if (name == c.name) return c.criterion;
  }
  std::string known;
  for (const auto& n : prune_criterion_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown pruning criterion '" + name + "' (known: " + known + ")");
}

std::string prune_criterion_name(PruneCriterion criterion) {
  for (const auto& c : kCriteria) {
    if (c.criterion == criterion) return c.name;
  }
  throw Error("unknown pruning criterion");
}

bool prune_criterion_needs_calibration(PruneCriterion criterion) { return criterion != PruneCriterion::Magnitude; }

}  // namespace piquant
