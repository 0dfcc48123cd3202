#include "quantize/byte_size.h"

#include <array>
#include <cctype>
#include <cstdio>
#include <limits>
#include <utility>

#include "core/error.h"

namespace piquant {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::uint64_t unit_multiplier(std::string_view unit, std::string_view text) {
  static const std::array<std::pair<const char*, std::uint64_t>, 9> kUnits{{
      {"b", 1},
      {"kb", 1000ull},
      {"mb", 1000ull * 1000},
      {"gb", 1000ull * 1000 * 1000},
      {"tb", 1000ull * 1000 * 1000 * 1000},
      {"kib", 1ull << 10},
      {"mib", 1ull << 20},
      {"gib", 1ull << 30},
      {"tib", 1ull << 40},
  }};
  if (unit.empty()) return 1;
  const std::string wanted = lower(unit);
  for (const auto& [name, multiplier] : kUnits) {
    if (wanted == name) return multiplier;
  }
  throw Error("size '" + std::string(text) + "': unknown unit '" + std::string(unit) +
              "' (units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
}

}  // namespace

std::uint64_t parse_byte_size(std::string_view text) {
  const auto bad = [&](const std::string& why) { return Error("size '" + std::string(text) + "': " + why); };
  std::size_t i = 0;
  // The number as an integer mantissa and a count of decimals: value = mantissa / 10^decimals.
  unsigned __int128 mantissa = 0;
  int decimals = 0;
  int digits = 0;
  bool seen_point = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.') {
      if (seen_point) throw bad("more than one decimal point");
      seen_point = true;
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(c))) break;
    if (digits >= 25) throw bad("too many digits");
    mantissa = mantissa * 10 + static_cast<unsigned>(c - '0');
    ++digits;
    if (seen_point) ++decimals;
  }
  if (digits == 0) throw bad("expected a number of bytes, or a number with a unit such as 3.5GiB");
  std::string_view unit = text.substr(i);
  if (!unit.empty() && unit.front() == ' ') {
    unit.remove_prefix(1);
    if (unit.empty()) throw bad("a space but no unit after the number");
  }
  if (!unit.empty() && !std::isalpha(static_cast<unsigned char>(unit.front()))) {
    throw bad("unexpected '" + std::string(unit) + "' after the number");
  }
  const std::uint64_t multiplier = unit_multiplier(unit, text);
  unsigned __int128 scale = 1;
  for (int d = 0; d < decimals; ++d) scale *= 10;
  // mantissa < 10^25 < 2^84 and multiplier <= 2^40: the product fits 128 bits.
  const unsigned __int128 bytes = mantissa * multiplier / scale;
  if (bytes > std::numeric_limits<std::uint64_t>::max()) throw bad("more bytes than 2^64 - 1");
  return static_cast<std::uint64_t>(bytes);
}

std::string format_byte_size(std::uint64_t bytes) {
  char text[96];
  const double b = static_cast<double>(bytes);
  if (bytes >= (1ull << 30)) {
    std::snprintf(text, sizeof text, "%llu bytes (%.3f GiB)", static_cast<unsigned long long>(bytes), b / (1ull << 30));
  } else if (bytes >= (1ull << 20)) {
    std::snprintf(text, sizeof text, "%llu bytes (%.3f MiB)", static_cast<unsigned long long>(bytes), b / (1ull << 20));
  } else {
    std::snprintf(text, sizeof text, "%llu bytes", static_cast<unsigned long long>(bytes));
  }
  return text;
}

}  // namespace piquant
