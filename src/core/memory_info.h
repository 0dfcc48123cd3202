#pragma once
// How much memory the machine has left, and whether a model and its context fit in
// it: a run that does not fit would page weights in and out of the disk for every
// token (or be killed), so it is refused up front with a message saying what to change.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace piquant {

struct MemoryInfo {
  std::uint64_t total_bytes = 0;      // MemTotal
  std::uint64_t available_bytes = 0;  // MemAvailable: what can be allocated without swapping
  std::string source = "/proc/meminfo";
};

// Parses the text of /proc/meminfo ("MemAvailable:   3145728 kB" lines). Throws
// FormatError(source, key, problem) when MemTotal or MemAvailable is missing, repeated,
// not a whole number of kB, or too big.
MemoryInfo parse_meminfo(std::string_view text, const std::string& source = "/proc/meminfo");

// The machine's memory; std::nullopt where `path` does not exist (not Linux), so the
// caller can skip its check. Throws Error when it exists but cannot be read or parsed.
std::optional<MemoryInfo> read_memory_info(const std::string& path = "/proc/meminfo");

// Whether the page cache holding this file counts in MemAvailable: true for files on
// disks, false on tmpfs/ramfs, whose pages cannot be dropped and re-read.
bool page_cache_is_reclaimable(const std::string& path);

// What a model run will add to the memory in use.
struct MemoryFit {
  std::string model;               // named in the message
  std::uint64_t weight_bytes = 0;  // weights that must come into memory
  std::uint64_t kv_cache_bytes = 0;
  std::uint64_t scratch_bytes = 0;  // activations and logits
  std::uint64_t total() const;      // saturates instead of overflowing
};

// Throws Error when need.total() > have.available_bytes, with a message naming the
// model, the sizes, where the available figure came from, and what to change.
void check_fits_in_memory(const MemoryFit& need, const MemoryInfo& have);

// VmRSS and VmHWM (the peak) of this process, in bytes (0 where /proc is unavailable).
// Mapped file pages that are resident count too.
struct ProcessMemory {
  std::uint64_t rss = 0;
  std::uint64_t peak = 0;
};
ProcessMemory read_process_memory();

// "4.6 GB", "312 MB", "12.5 MB" (decimal units, like the sizes in file managers).
std::string format_memory_size(std::uint64_t bytes);

}  // namespace piquant
