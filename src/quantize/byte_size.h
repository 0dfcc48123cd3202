#pragma once
// Sizes as people write them on a command line: "3758096384", "3.5GiB", "4.3 GB".
#include <cstdint>
#include <string>
#include <string_view>

namespace piquant {

// Parses a non-negative decimal number (digits, at most one '.') with an optional unit,
// case-insensitive, optionally after one space: B, KB, MB, GB, TB (powers of 1000) or
// KiB, MiB, GiB, TiB (powers of 1024); no unit means bytes. The value is computed
// exactly in integers and rounded down to a whole byte (a budget is never exceeded by
// rounding). Throws Error quoting `text` on anything else or a value above 2^64 - 1.
std::uint64_t parse_byte_size(std::string_view text);

// "3758096384 bytes (3.500 GiB)": the exact count and a readable binary-unit figure.
std::string format_byte_size(std::uint64_t bytes);

}  // namespace piquant
