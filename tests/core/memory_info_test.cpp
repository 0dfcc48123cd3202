// /proc/meminfo parsing and the "does the model fit" rule, on fixed numbers.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "core/memory_info.h"
#include "support/test_support.h"

namespace piquant {
namespace {

// The start of a real /proc/meminfo (Linux 6.1, aarch64, 8 GB Raspberry Pi 4).
constexpr const char* kPiMeminfo =
    "MemTotal:        7998548 kB\n"
    "MemFree:         5123456 kB\n"
    "MemAvailable:    6912340 kB\n"
    "Buffers:           45678 kB\n"
    "Cached:          1789012 kB\n"
    "SwapCached:            0 kB\n"
    "HugePages_Total:       0\n"
    "Hugepagesize:       2048 kB\n";

std::string error_of(const std::string& text) {
  try {
    parse_meminfo(text, "fake/meminfo");
  } catch (const FormatError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(MemInfo, ParsesTotalAndAvailableInBytes) {
  const MemoryInfo info = parse_meminfo(kPiMeminfo);
  EXPECT_EQ(info.total_bytes, 7998548ull * 1024);
  EXPECT_EQ(info.available_bytes, 6912340ull * 1024);
  EXPECT_EQ(info.source, "/proc/meminfo");
  // Order, tabs, CRLF and a missing final newline do not matter.
  const MemoryInfo other = parse_meminfo("MemAvailable:\t12 kB\r\nMemTotal: 34 kB", "x");
  EXPECT_EQ(other.available_bytes, 12u * 1024);
  EXPECT_EQ(other.total_bytes, 34u * 1024);
}

TEST(MemInfo, MalformedTextNamesTheKeyAndProblem) {
  const struct {
    const char* text;
    const char* expected;
  } cases[] = {
      {"", "fake/meminfo: MemTotal: missing"},
      {"MemTotal: 10 kB\n", "fake/meminfo: MemAvailable: missing"},
      {"MemTotal: 10 kB\nMemAvailable: lots kB\n", "MemAvailable: 'lots kB' is not a whole number of kB"},
      {"MemTotal: 10 kB\nMemAvailable: 10\n", "MemAvailable: '10' is not a size in kB"},
      {"MemTotal: 10 kB\nMemAvailable: -5 kB\n", "MemAvailable: '-5 kB' is not a whole number"},
      {"MemTotal: 10 kB\nMemAvailable: 1.5 kB\n", "MemAvailable: '1.5 kB' is not a whole number"},
      {"MemTotal: kB\nMemAvailable: 5 kB\n", "MemTotal: 'kB' is not a whole number"},
      {"MemTotal: 10 kB\nMemAvailable: 99999999999999999999 kB\n", "MemAvailable: '99999999999999999999 kB' is too big"},
      {"MemTotal: 10 kB\nMemAvailable: 18014398509481984 kB\n", "is too big"},  // 2^54 kB overflows in bytes
      {"MemTotal: 10 kB\nMemTotal: 10 kB\nMemAvailable: 5 kB\n", "MemTotal: appears twice"},
  };
  for (const auto& c : cases) {
    const std::string message = error_of(c.text);
    EXPECT_NE(message.find(c.expected), std::string::npos) << "text: " << c.text << "\nmessage: " << message;
  }
  // Lines it does not need may be anything.
  EXPECT_EQ(parse_meminfo("garbage\nMemTotal: 1 kB\nWeird: ???\nMemAvailable: 2 kB\n").available_bytes, 2048u);
}

TEST(MemInfo, ReadsAFileOrReportsItsAbsence) {
  testing::TempDir dir;
  EXPECT_FALSE(read_memory_info((dir / "none").string()).has_value());
  testing::write_file(dir / "meminfo", kPiMeminfo);
  const auto info = read_memory_info((dir / "meminfo").string());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->available_bytes, 6912340ull * 1024);
  EXPECT_EQ(info->source, (dir / "meminfo").string());
  testing::write_file(dir / "bad", "MemTotal: 1 kB\n");
  EXPECT_THROW(read_memory_info((dir / "bad").string()), FormatError);
}

TEST(MemInfo, ThisMachineHasSaneNumbers) {
  const auto info = read_memory_info();
  if (!info) GTEST_SKIP() << "no /proc/meminfo";
  EXPECT_GT(info->total_bytes, 0u);
  EXPECT_LE(info->available_bytes, info->total_bytes);
}

TEST(MemoryFit, RefusesOnlyAboveWhatIsAvailable) {
  MemoryInfo have;
  have.available_bytes = 3'100'000'000;
  MemoryFit need;
  need.model = "model.gguf";
  need.weight_bytes = 2'800'000'000;
  need.kv_cache_bytes = 200'000'000;
  need.scratch_bytes = 100'000'000;
  EXPECT_EQ(need.total(), 3'100'000'000u);
  EXPECT_NO_THROW(check_fits_in_memory(need, have));  // exactly fits
  need.scratch_bytes += 1;
  EXPECT_THROW(check_fits_in_memory(need, have), Error);
}

TEST(MemoryFit, MessageNamesSizesSourceAndRemedies) {
  MemoryInfo have;
  have.available_bytes = 3'100'000'000;
  MemoryFit need;
  need.model = "model.gguf";
  need.weight_bytes = 4'300'000'000;
  need.kv_cache_bytes = 300'000'000;
  try {
    check_fits_in_memory(need, have);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "model.gguf: needs 4.6 GB (weights 4.3 GB + KV cache 300 MB) but only 3.1 GB of memory is available "
                 "(MemAvailable in /proc/meminfo); use a smaller --ctx, a smaller quantization, or --no-memory-check "
                 "to try anyway");
  }
}

TEST(MemoryFit, TotalSaturatesInsteadOfWrapping) {
  MemoryFit need;
  need.weight_bytes = UINT64_MAX - 5;
  need.kv_cache_bytes = 10;
  EXPECT_EQ(need.total(), UINT64_MAX);
  MemoryInfo have;
  have.available_bytes = UINT64_MAX - 1;
  EXPECT_THROW(check_fits_in_memory(need, have), Error);
}

TEST(MemoryFit, SizesReadWell) {
  EXPECT_EQ(format_memory_size(4'284'000'000), "4.3 GB");
  EXPECT_EQ(format_memory_size(312'400'000), "312 MB");
  EXPECT_EQ(format_memory_size(2'450'000), "2.5 MB");
  EXPECT_EQ(format_memory_size(0), "0.0 MB");
}

TEST(MemoryFit, TmpfsPagesAreNotReclaimableCache) {
  // Found independently of statfs: /dev/shm as a tmpfs mount point in the mount table.
  const std::string mounts = testing::read_file("/proc/self/mounts");
  if (mounts.find(" /dev/shm tmpfs ") == std::string::npos) GTEST_SKIP() << "/dev/shm is not a tmpfs mount here";
  EXPECT_FALSE(page_cache_is_reclaimable("/dev/shm"));
  EXPECT_TRUE(page_cache_is_reclaimable("/no/such/path"));  // unknown: counted like a disk file
}

}  // namespace
}  // namespace piquant
