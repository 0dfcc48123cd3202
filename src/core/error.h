#pragma once
// Errors: every failure is an exception whose message says what failed and why.
// The CLI catches them once, prints the message and exits non-zero.
#include <stdexcept>
#include <string>

namespace piquant {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file whose content is not what it must be. The message reads
// "<path>: <field>: <problem>", so a user knows which file and which part of it.
class FormatError : public Error {
 public:
  FormatError(const std::string& path, const std::string& field, const std::string& problem)
      : Error(path + ": " + field + ": " + problem), path_(path), field_(field) {}
  const std::string& path() const { return path_; }
  const std::string& field() const { return field_; }

 private:
  std::string path_;
  std::string field_;
};

// A system call failed on a file: the message names the file, the action and errno's text.
[[noreturn]] void throw_system_error(const std::string& path, const std::string& action);

}  // namespace piquant
