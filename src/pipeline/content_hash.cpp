#include "pipeline/content_hash.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fnv1a.h"

namespace piquant {
namespace fs = std::filesystem;

std::string hex64(std::uint64_t value) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(value));
  return buf;
}

std::uint64_t hash_text(const std::string& text) { return fnv1a64(kFnv1aOffset, text.data(), text.size()); }

namespace {

std::uint64_t hash_file_into(std::uint64_t h, const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot read it to fingerprint it");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h = fnv1a64(h, buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  return h;
}

}  // namespace

std::uint64_t hash_path_contents(const std::string& path) {
  if (!fs::is_directory(path)) return hash_file_into(kFnv1aOffset, path);
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(path)) {
    if (e.is_regular_file()) files.push_back(fs::relative(e.path(), path));
  }
  std::sort(files.begin(), files.end());
  std::uint64_t h = kFnv1aOffset;
  for (const auto& f : files) {
    const std::string name = f.generic_string();
    h = fnv1a64(h, name.c_str(), name.size() + 1);
    h = hash_file_into(h, fs::path(path) / f);
  }
  return h;
}

InputHashCache::InputHashCache(std::string cache_file) : file_(std::move(cache_file)) {
  std::ifstream in(file_);
  if (!in) return;
  try {
    entries_ = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    entries_ = nlohmann::json::object();  // a damaged cache only costs a re-read
  }
  if (!entries_.is_object()) entries_ = nlohmann::json::object();
}

std::string InputHashCache::hash(const std::string& path) {
  // Size and mtime of every file under the path: any change means re-reading.
  std::uint64_t stamp = kFnv1aOffset;
  const auto add_stamp = [&](const fs::path& p) {
    const std::uint64_t size = fs::file_size(p);
    const auto mtime = fs::last_write_time(p).time_since_epoch().count();
    stamp = fnv1a64(stamp, &size, sizeof size);
    stamp = fnv1a64(stamp, &mtime, sizeof mtime);
  };
  if (fs::is_directory(path)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(path)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) add_stamp(f);
  } else {
    add_stamp(path);
  }
  const std::string key = fs::absolute(path).lexically_normal().string();
  if (entries_.contains(key) && entries_[key].value("stamp", "") == hex64(stamp)) return entries_[key].value("hash", "");
  const std::string h = hex64(hash_path_contents(path));
  entries_[key] = {{"stamp", hex64(stamp)}, {"hash", h}};
  return h;
}

void InputHashCache::save() const {
  write_file_atomic(file_, entries_.dump(2) + "\n");
}

}  // namespace piquant
