#pragma once
// Software prefetch for decode's weight streams. Decode reads every weight byte once,
// straight from DRAM, and the hardware prefetchers alone leave the core waiting on most
// lines: measured on a 2-core Xeon (seed-shape Q4_K_M, 2 threads), decode reached 66% of
// the machine's read bandwidth without this and 95% with it. Each 1-token kernel asks
// for the lines of the block this far ahead as it starts a block: spread over the
// blocks, the requests keep a steady number of lines in flight (a burst of a whole row's
// lines at once measured 20% slower). Rows of a GGUF tensor are contiguous, so "ahead"
// runs on into the next rows; a prefetch past the end of the data is only a hint and
// never faults.
#include <cstddef>
#include <cstdint>

namespace piquant {

inline constexpr std::size_t kDecodePrefetchBytes = 4096;  // 2-16 KiB measured alike

// Always inlined: GCC treats a function that only prefetches as free of side effects
// (pure) and deletes its calls once it stops inlining it (seen with GCC 12 at -O3).
template <std::size_t kBlockBytes>
[[gnu::always_inline]] inline void prefetch_for_decode(const std::uint8_t* block) {
  for (std::size_t o = 0; o < kBlockBytes; o += 64) __builtin_prefetch(block + kDecodePrefetchBytes + o, 0, 3);
}

}  // namespace piquant
