#include "core/memory_info.h"

#include <sys/vfs.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <linux/magic.h>
#include <sstream>

#include "core/error.h"
#include "core/logger.h"

namespace piquant {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// "  3145728 kB" → bytes.
std::uint64_t parse_kib(std::string_view value, const std::string& source, const std::string& key) {
  value = trim(value);
  std::string shown(1, '\'');  // built step by step: gcc 12 warns (falsely) on "'" + string
  shown.append(value);
  shown.push_back('\'');
  if (!value.ends_with("kB")) throw FormatError(source, key, shown + " is not a size in kB");
  const std::string_view digits = trim(value.substr(0, value.size() - 2));
  std::uint64_t kib = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), kib);
  if (digits.empty() || ec == std::errc::invalid_argument || end != digits.data() + digits.size()) {
    throw FormatError(source, key, shown + " is not a whole number of kB");
  }
  std::uint64_t bytes = 0;
  if (ec == std::errc::result_out_of_range || __builtin_mul_overflow(kib, std::uint64_t{1024}, &bytes)) {
    throw FormatError(source, key, shown + " is too big");
  }
  return bytes;
}

}  // namespace

MemoryInfo parse_meminfo(std::string_view text, const std::string& source) {
  std::optional<std::uint64_t> total, available;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;  // only the two keys below matter
    const std::string_view key = trim(line.substr(0, colon));
    std::optional<std::uint64_t>* slot = key == "MemTotal" ? &total : key == "MemAvailable" ? &available : nullptr;
    if (slot == nullptr) continue;
    if (slot->has_value()) throw FormatError(source, std::string(key), "appears twice");
    *slot = parse_kib(line.substr(colon + 1), source, std::string(key));
  }
  if (!total) throw FormatError(source, "MemTotal", "missing");
  if (!available) throw FormatError(source, "MemAvailable", "missing (Linux older than 3.14?)");
  return MemoryInfo{*total, *available, source};
}

std::optional<MemoryInfo> read_memory_info(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    log::debug(path, " does not exist: skipping the memory check");
    return std::nullopt;
  }
  std::ifstream in(path);
  if (!in) throw_system_error(path, "open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw_system_error(path, "read");
  return parse_meminfo(text.str(), path);
}

bool page_cache_is_reclaimable(const std::string& path) {
  struct statfs fs {};
  if (::statfs(path.c_str(), &fs) != 0) return true;
  return fs.f_type != TMPFS_MAGIC && fs.f_type != RAMFS_MAGIC;
}

std::uint64_t MemoryFit::total() const {
  std::uint64_t sum = 0;
  for (const std::uint64_t part : {weight_bytes, kv_cache_bytes, scratch_bytes}) {
    if (__builtin_add_overflow(sum, part, &sum)) return UINT64_MAX;
  }
  return sum;
}

std::string format_memory_size(std::uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  char text[64];
  if (b >= 1e9) {
    std::snprintf(text, sizeof text, "%.1f GB", b / 1e9);
  } else if (b >= 1e7) {
    std::snprintf(text, sizeof text, "%.0f MB", b / 1e6);
  } else {
    std::snprintf(text, sizeof text, "%.1f MB", b / 1e6);
  }
  return text;
}

void check_fits_in_memory(const MemoryFit& need, const MemoryInfo& have) {
  if (need.total() <= have.available_bytes) return;
  std::string parts = "weights " + format_memory_size(need.weight_bytes) + " + KV cache " + format_memory_size(need.kv_cache_bytes);
  if (need.scratch_bytes > 0) parts += " + scratch " + format_memory_size(need.scratch_bytes);
  throw Error(need.model + ": needs " + format_memory_size(need.total()) + " (" + parts + ") but only " +
              format_memory_size(have.available_bytes) + " of memory is available (MemAvailable in " + have.source +
              "); use a smaller --ctx, a smaller quantization, or --no-memory-check to try anyway");
}

ProcessMemory read_process_memory() {
  ProcessMemory m;
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    std::istringstream fields(line);
    std::string key;
    std::uint64_t kib = 0;
    fields >> key >> kib;
    if (key == "VmRSS:") m.rss = kib * 1024;
    if (key == "VmHWM:") m.peak = kib * 1024;
  }
  return m;
}

}  // namespace piquant
