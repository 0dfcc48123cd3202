#pragma once
// `piquant bench` results as a Markdown table (like llama-bench's), one JSON object or
// CSV with one row per measurement.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "speed/memory_bandwidth.h"
#include "speed/speed_bench.h"

namespace piquant::cli {

std::string bench_markdown(const SpeedBenchReport& report);
nlohmann::json bench_json(const SpeedBenchReport& report);
std::string bench_csv(const SpeedBenchReport& report);

// The read-bandwidth table of `piquant bench --bandwidth` in format md, json or csv.
std::string bandwidth_output(const std::vector<BandwidthSample>& table, std::uint64_t buffer_bytes,
                             const std::string& format);

}  // namespace piquant::cli
