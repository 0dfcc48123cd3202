#pragma once
// Helpers shared by the tests: where ../shared is, temporary folders, running the CLI.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace piquant::testing {

// The shared test-data folder: $PIQUANT_SHARED, else ../shared beside the project.
std::filesystem::path shared_dir();
bool in_ci();  // CI=true in the environment

// Path to a file under shared/. If it is missing: in CI the test fails with the path
// tried; elsewhere the test is skipped with a visible message. Use as
//   auto path = PIQUANT_SHARED_FILE("models/stories260K/stories260K.bin");
#define PIQUANT_SHARED_FILE(rel)                                                              \
  ({                                                                                          \
    const std::filesystem::path piquant_shared_path_ = ::piquant::testing::shared_dir() / (rel); \
    if (!std::filesystem::exists(piquant_shared_path_)) {                                     \
      if (::piquant::testing::in_ci()) {                                                      \
        ADD_FAILURE() << "missing test data " << piquant_shared_path_;                        \
      }                                                                                       \
      GTEST_SKIP() << "missing test data " << piquant_shared_path_ << " (set PIQUANT_SHARED)"; \
    }                                                                                         \
    piquant_shared_path_;                                                                     \
  })

// A fresh, empty folder under the build tree, removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Writes bytes to a file (for corrupt-file tables).
void write_file(const std::filesystem::path& path, const std::string& bytes);
std::string read_file(const std::filesystem::path& path);

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
// Runs a shell command line and captures its output.
CommandResult run_command(const std::string& command);
// Runs the piquant CLI built alongside the tests with the given arguments.
CommandResult run_cli(const std::string& args);

}  // namespace piquant::testing
