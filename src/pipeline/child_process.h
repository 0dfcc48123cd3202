#pragma once
// Runs one `piquant` subcommand as a child process: its stdout and stderr go to files, and
// it dies with its parent (PR_SET_PDEATHSIG), so a pipeline killed with kill -9 leaves no
// stage running behind it to race the rerun.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace piquant {

struct ChildResult {
  int exit_code = 0;   // the child's exit status, or 128 + signal when a signal ended it
  double seconds = 0;  // wall time
  std::uint64_t peak_rss_bytes = 0;  // the child's maximum resident set (getrusage's ru_maxrss)
};

// `poll` is called about every 200 ms while the child runs (progress display).
ChildResult run_child(const std::vector<std::string>& argv, const std::string& stdout_path, const std::string& stderr_path,
                      const std::function<void()>& poll = {});

// The path of the running executable (/proc/self/exe), to start the stages' subcommands.
std::string current_executable();

// The last non-empty line of a text file ("" when none), to quote a failed stage's error.
std::string last_line_of(const std::string& path);

}  // namespace piquant
