#pragma once
// Writes a file so that it never exists under its final name half-written: the
// bytes go to "<path>.partial", and only commit() moves them into place. A writer
// destroyed without commit() (an exception, a bug) deletes its temporary file.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace piquant {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, std::size_t n);
  void write(std::span<const std::uint8_t> bytes) { write(bytes.data(), bytes.size()); }
  void write_zeros(std::size_t n);
  // Zero bytes up to the next multiple of `alignment` (a power of two or any positive number).
  void pad_to(std::uint64_t alignment);
  std::uint64_t position() const { return position_; }

  // Flush, fsync and rename into place. After this the writer is closed.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  void flush_buffer();

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  std::uint64_t position_ = 0;
  std::vector<std::uint8_t> buffer_;
  std::size_t buffered_ = 0;
};

// A whole small file (a record, a report) written through AtomicFileWriter.
void write_file_atomic(const std::string& path, std::string_view text);

}  // namespace piquant
