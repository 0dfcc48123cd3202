#include "core/error.h"

#include <cerrno>
#include <cstring>

namespace piquant {

void throw_system_error(const std::string& path, const std::string& action) {
  const int err = errno;
  throw Error(path + ": cannot " + action + ": " + std::strerror(err));
}

}  // namespace piquant
