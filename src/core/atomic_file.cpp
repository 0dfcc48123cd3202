#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/error.h"

namespace piquant {
namespace {
constexpr std::size_t kBufferBytes = 4u << 20;
}

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)), temp_path_(path_ + ".partial") {
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_system_error(temp_path_, "create");
  buffer_.resize(kBufferBytes);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(temp_path_.c_str());
  }
}

void AtomicFileWriter::flush_buffer() {
  std::size_t done = 0;
  while (done < buffered_) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffered_ - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_system_error(temp_path_, "write");
    }
    done += static_cast<std::size_t>(n);
  }
  buffered_ = 0;
}

void AtomicFileWriter::write(const void* data, std::size_t n) {
  if (fd_ < 0) throw Error(path_ + ": write after commit");
  const auto* bytes = static_cast<const std::uint8_t*>(data);
  position_ += n;
  while (n > 0) {
    const std::size_t take = std::min(n, buffer_.size() - buffered_);
    std::memcpy(buffer_.data() + buffered_, bytes, take);
    buffered_ += take;
    bytes += take;
    n -= take;
    if (buffered_ == buffer_.size()) flush_buffer();
  }
}

void AtomicFileWriter::write_zeros(std::size_t n) {
  static const std::uint8_t zeros[4096] = {};
  while (n > 0) {
    const std::size_t take = std::min(n, sizeof zeros);
    write(zeros, take);
    n -= take;
  }
}

void AtomicFileWriter::pad_to(std::uint64_t alignment) {
  if (alignment == 0) return;
  const std::uint64_t rem = position_ % alignment;
  if (rem != 0) write_zeros(static_cast<std::size_t>(alignment - rem));
}

void AtomicFileWriter::commit() {
  if (fd_ < 0) throw Error(path_ + ": commit twice");
  flush_buffer();
  if (::fsync(fd_) != 0) throw_system_error(temp_path_, "fsync");
  if (::close(fd_) != 0) {
    fd_ = -1;
    ::unlink(temp_path_.c_str());
    throw_system_error(temp_path_, "close");
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp_path_.c_str());
    errno = err;
    throw_system_error(path_, "rename " + temp_path_ + " to");
  }
}

void write_file_atomic(const std::string& path, std::string_view text) {
  AtomicFileWriter out(path);
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace piquant
