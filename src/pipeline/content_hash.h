#pragma once
// Content fingerprints of a pipeline's inputs (FNV-1a 64 over the bytes; a folder: over
// its files' relative names and contents in name order), cached in the run folder by
// path, size and modification time so a 16 GB checkpoint is read once, not every run.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace piquant {

std::string hex64(std::uint64_t value);
std::uint64_t hash_text(const std::string& text);
std::uint64_t hash_path_contents(const std::string& path);  // a file or a folder

class InputHashCache {
 public:
  explicit InputHashCache(std::string cache_file);
  std::string hash(const std::string& path);  // hex; reads the file only when it changed
  void save() const;                          // atomically

 private:
  std::string file_;
  nlohmann::json entries_ = nlohmann::json::object();
};

}  // namespace piquant
