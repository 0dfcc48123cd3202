#pragma once
// A read-only file descriptor, closed on every way out; open failures throw Error
// naming the path.
#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "core/error.h"

namespace piquant {

class OpenFile {
 public:
  explicit OpenFile(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) throw_system_error(path, "open");
  }
  ~OpenFile() { ::close(fd_); }
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

}  // namespace piquant
