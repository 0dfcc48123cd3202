#include "core/logger.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace piquant::log {
namespace {
std::atomic<Level> g_level{Level::Info};
std::mutex g_mutex;
}  // namespace

void set_level(Level level) { g_level = level; }
Level level() { return g_level; }

void write(Level level, const std::string& message) {
  static const char* const prefixes[] = {"debug: ", "", "warning: ", "error: ", ""};
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "%s%s\n", prefixes[static_cast<int>(level)], message.c_str());
}

}  // namespace piquant::log
