#include "core/checksummed_writer.h"

#include <cstring>

#include "core/fnv1a.h"

namespace piquant {

void ChecksummedWriter::write(const void* data, std::size_t n) {
  hash_ = fnv1a64(hash_, data, n);
  out_.write(data, n);
}

void ChecksummedWriter::commit() {
  const std::uint64_t checksum = hash_;
  out_.write(&checksum, sizeof checksum);
  out_.commit();
}

bool checksum_trailer_matches(const std::uint8_t* data, std::size_t size) {
  if (size < 8) return false;
  std::uint64_t stored = 0;
  std::memcpy(&stored, data + size - 8, sizeof stored);
  return fnv1a64(kFnv1aOffset, data, size - 8) == stored;
}

}  // namespace piquant
