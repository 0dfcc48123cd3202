#pragma once
// A file written atomically (AtomicFileWriter) that ends with a checksum: the FNV-1a 64
// (core/fnv1a.h) of every byte before it, as a little-endian u64 — the trailer of the
// saved-logits and teacher top-k files.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/atomic_file.h"
#include "core/fnv1a.h"

namespace piquant {

class ChecksummedWriter {
 public:
  explicit ChecksummedWriter(std::string path) : out_(std::move(path)) {}
  void write(const void* data, std::size_t n);  // counted in the checksum
  std::uint64_t position() const { return out_.position(); }
  const std::string& path() const { return out_.path(); }
  // Appends the checksum and moves the file to its final name.
  void commit();

 private:
  AtomicFileWriter out_;
  std::uint64_t hash_ = kFnv1aOffset;
};

// Whether the last 8 of `size` bytes are the checksum of the bytes before them.
bool checksum_trailer_matches(const std::uint8_t* data, std::size_t size);

}  // namespace piquant
