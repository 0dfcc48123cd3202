#include "interop/gguf_view_comparison.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>

namespace piquant::testing {
namespace {

using nlohmann::json;

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

bool same_integer(const json& a, const json& b) {
  if (a.is_number_unsigned() && b.is_number_unsigned()) return a.get<std::uint64_t>() == b.get<std::uint64_t>();
  if (!a.is_number_unsigned() && !b.is_number_unsigned()) return a.get<std::int64_t>() == b.get<std::int64_t>();
  const json& signed_one = a.is_number_unsigned() ? b : a;
  const json& unsigned_one = a.is_number_unsigned() ? a : b;
  return signed_one.get<std::int64_t>() >= 0 &&
         static_cast<std::uint64_t>(signed_one.get<std::int64_t>()) == unsigned_one.get<std::uint64_t>();
}

// Same value, allowing for how each side spells numbers: JavaScript writes the
// float32 1e-5f as 9.999999747378752e-06 and 500000.0f as 500000, so numbers that
// are not both integers are compared at float32 precision.
bool same_value(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_number_integer() && b.is_number_integer()) return same_integer(a, b);
    return static_cast<float>(a.get<double>()) == static_cast<float>(b.get<double>());
  }
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!same_value(a[i], b[i])) return false;
    }
    return true;
  }
  return a == b;
}

std::string preview(const json& value) {
  std::string text = value.dump();
  return text.size() > 200 ? text.substr(0, 200) + "..." : text;
}

// First differing element of two arrays, to make a long-array failure readable.
std::string first_difference(const json& a, const json& b) {
  if (!a.is_array() || !b.is_array()) return "";
  if (a.size() != b.size()) return " (lengths " + std::to_string(a.size()) + " and " + std::to_string(b.size()) + ")";
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!same_value(a[i], b[i])) return " (first difference at [" + std::to_string(i) + "]: " + a[i].dump() + " vs " + b[i].dump() + ")";
  }
  return "";
}

bool same_type(const json& llama_tensor, const json& piquant_type) {
  if (piquant_type.is_number_integer()) return piquant_type == llama_tensor.at("type");
  if (piquant_type.is_string() && llama_tensor.at("type_name").is_string()) {
    return lower(piquant_type.get<std::string>()) == lower(llama_tensor.at("type_name").get<std::string>());
  }
  return false;
}

}  // namespace

void expect_same_gguf_view(const json& llama_cpp_view, const json& piquant_view) {
  ASSERT_TRUE(piquant_view.contains("metadata") && piquant_view.at("metadata").is_object())
      << "piquant inspect --json has no \"metadata\" object: " << preview(piquant_view);
  ASSERT_TRUE(piquant_view.contains("tensors") && piquant_view.at("tensors").is_array())
      << "piquant inspect --json has no \"tensors\" array: " << preview(piquant_view);
  const json& ours = piquant_view.at("metadata");
  const json& theirs = llama_cpp_view.at("metadata");

  for (const auto& [key, value] : theirs.items()) {
    if (!ours.contains(key)) {
      ADD_FAILURE() << "metadata key " << key << " = " << preview(value) << " is missing from piquant inspect";
    } else if (!same_value(value, ours.at(key))) {
      ADD_FAILURE() << "metadata key " << key << ": node-llama-cpp reads " << preview(value) << ", piquant inspect says "
                    << preview(ours.at(key)) << first_difference(value, ours.at(key));
    }
  }
  for (const auto& [key, value] : ours.items()) {
    if (!theirs.contains(key)) {
      ADD_FAILURE() << "piquant inspect lists metadata key " << key << " that node-llama-cpp does not see";
    }
  }

  if (piquant_view.contains("version")) {
    EXPECT_EQ(piquant_view.at("version"), llama_cpp_view.at("version")) << "GGUF version";
  }

  const json& our_tensors = piquant_view.at("tensors");
  const json& their_tensors = llama_cpp_view.at("tensors");
  EXPECT_EQ(our_tensors.size(), their_tensors.size()) << "tensor count";
  EXPECT_EQ(llama_cpp_view.at("tensor_count"), their_tensors.size());
  const std::size_t n = std::min(our_tensors.size(), their_tensors.size());
  for (std::size_t i = 0; i < n; ++i) {
    const json& t = their_tensors[i];
    const json& o = our_tensors[i];
    const std::string where = "tensor #" + std::to_string(i) + " (" + t.at("name").get<std::string>() + ")";
    EXPECT_EQ(o.value("name", json()), t.at("name")) << where << ": name";
    EXPECT_TRUE(same_type(t, o.value("type", json())))
        << where << ": type " << t.at("type") << " (" << t.at("type_name") << ") vs piquant " << o.value("type", json());
    if (o.contains("type_id")) {
      EXPECT_EQ(o.at("type_id"), t.at("type")) << where << ": type id";
    }
    EXPECT_TRUE(same_value(o.value("shape", json()), t.at("shape")))
        << where << ": shape " << t.at("shape") << " vs piquant " << o.value("shape", json());
    EXPECT_TRUE(same_value(o.value("offset", json()), t.at("offset")))
        << where << ": offset " << t.at("offset") << " vs piquant " << o.value("offset", json());
  }
}

}  // namespace piquant::testing
