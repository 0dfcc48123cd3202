#pragma once
// The one piece of global state: where log lines go and how chatty they are.
#include <sstream>
#include <string>

namespace piquant::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3, Quiet = 4 };

void set_level(Level level);
Level level();
void write(Level level, const std::string& message);

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <class... Args> void debug(const Args&... a) { if (level() <= Level::Debug) write(Level::Debug, concat(a...)); }
template <class... Args> void info(const Args&... a) { if (level() <= Level::Info) write(Level::Info, concat(a...)); }
template <class... Args> void warn(const Args&... a) { if (level() <= Level::Warn) write(Level::Warn, concat(a...)); }
template <class... Args> void error(const Args&... a) { if (level() <= Level::Error) write(Level::Error, concat(a...)); }

}  // namespace piquant::log
