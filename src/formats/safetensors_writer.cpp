// Streaming, sharded safetensors writer. Every shard stays under its temporary name
// until finish(), which commits the shards and then the index, so a checkpoint
// that was not finished never appears.
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/safetensors.h"

namespace piquant {
namespace {

using nlohmann::json;
constexpr std::size_t kNoShard = static_cast<std::size_t>(-1);

std::string shard_file_name(const std::string& base, std::size_t shard, std::size_t count) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu.safetensors", shard + 1, count);
  return base + buf;
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(std::string dir, std::uint64_t max_shard_bytes, std::string base)
    : dir_(std::move(dir)), max_shard_bytes_(max_shard_bytes), base_(std::move(base)) {
  if (max_shard_bytes_ == 0) throw Error(dir_ + ": safetensors shard size limit must be positive");
  if (base_.empty() || base_.find('/') != std::string::npos) {
    throw Error(dir_ + ": safetensors base name '" + base_ + "' must be a plain file name");
  }
}

// Unique pointers delete the temporary files of a writer that never finished.
SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  if (planned_) throw Error(dir_ + ": safetensors metadata '" + key + "' set after writing began");
  metadata_[key] = value;
}

void SafetensorsWriter::add(const std::string& name, SafeDtype dtype, std::vector<std::int64_t> shape) {
  if (planned_) throw Error(dir_ + ": tensor '" + name + "' added after writing began");
  if (name.empty() || name == "__metadata__") throw Error(dir_ + ": invalid safetensors tensor name '" + name + "'");
  for (const auto& t : tensors_) {
    if (t.name == name) throw Error(dir_ + ": tensor '" + name + "' added twice");
  }
  std::uint64_t bytes = safe_dtype_bytes(dtype);
  for (const auto dim : shape) {
    if (dim < 0) throw Error(dir_ + ": tensor '" + name + "' has a negative dimension");
    if (__builtin_mul_overflow(bytes, static_cast<std::uint64_t>(dim), &bytes)) {
      throw Error(dir_ + ": tensor '" + name + "' is too large");
    }
  }
  tensors_.push_back(Planned{name, dtype, std::move(shape), bytes, 0, 0});
}

void SafetensorsWriter::plan() {
  planned_ = true;
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw Error(dir_ + ": cannot create folder: " + ec.message());

  // Fill shards in order; a tensor larger than the limit gets a shard of its own.
  std::size_t shard = 0;
  std::uint64_t used = 0;
  for (auto& t : tensors_) {
    if (used > 0 && t.bytes > max_shard_bytes_ - std::min(used, max_shard_bytes_)) {
      ++shard;
      used = 0;
    }
    t.shard = shard;
    t.offset = used;
    used += t.bytes;
  }
  const std::size_t count = shard + 1;
  shard_names_.clear();
  for (std::size_t s = 0; s < count; ++s) {
    shard_names_.push_back(count == 1 ? base_ + ".safetensors" : shard_file_name(base_, s, count));
  }
  current_ = 0;
  written_ = 0;
  while (current_ < tensors_.size() && tensors_[current_].bytes == 0) ++current_;
}

void SafetensorsWriter::open_shard(std::size_t shard) {
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  for (const auto& t : tensors_) {
    if (t.shard != shard) continue;
    header[t.name] = {{"dtype", safe_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {t.offset, t.offset + t.bytes}}};
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t length = text.size();

  if (out_) complete_shards_.push_back(std::move(out_));
  out_ = std::make_unique<AtomicFileWriter>((std::filesystem::path(dir_) / shard_names_[shard]).string());
  out_->write(&length, sizeof length);
  out_->write(text.data(), text.size());
  open_shard_ = shard;
}

void SafetensorsWriter::write(std::span<const std::uint8_t> bytes) {
  if (finished_) throw Error(dir_ + ": safetensors write after finish");
  if (!planned_) plan();
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    if (current_ >= tensors_.size()) {
      throw Error(dir_ + ": " + std::to_string(bytes.size() - pos) + " bytes written past the last tensor added");
    }
    const Planned& t = tensors_[current_];
    while (open_shard_ == kNoShard || open_shard_ < t.shard) open_shard(open_shard_ == kNoShard ? 0 : open_shard_ + 1);
    const std::uint64_t take = std::min<std::uint64_t>(bytes.size() - pos, t.bytes - written_);
    out_->write(bytes.data() + pos, static_cast<std::size_t>(take));
    pos += static_cast<std::size_t>(take);
    written_ += take;
    if (written_ == t.bytes) {
      written_ = 0;
      ++current_;
      while (current_ < tensors_.size() && tensors_[current_].bytes == 0) ++current_;
    }
  }
}

void SafetensorsWriter::finish() {
  if (finished_) throw Error(dir_ + ": safetensors finish called twice");
  if (!planned_) plan();
  if (current_ < tensors_.size()) {
    const Planned& t = tensors_[current_];
    throw Error(dir_ + ": tensor '" + t.name + "' got " + std::to_string(written_) + " of its " +
                std::to_string(t.bytes) + " bytes before finish");
  }
  // Shards holding only empty tensors were never opened by write().
  while (open_shard_ == kNoShard || open_shard_ + 1 < shard_names_.size()) {
    open_shard(open_shard_ == kNoShard ? 0 : open_shard_ + 1);
  }
  complete_shards_.push_back(std::move(out_));
  for (auto& shard : complete_shards_) shard->commit();
  complete_shards_.clear();

  if (shard_names_.size() > 1) {
    std::uint64_t total = 0;
    json weight_map = json::object();
    for (const auto& t : tensors_) {
      total += t.bytes;
      weight_map[t.name] = shard_names_[t.shard];
    }
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    const std::string text = index.dump(2) + "\n";
    AtomicFileWriter out((std::filesystem::path(dir_) / (base_ + ".safetensors.index.json")).string());
    out.write(text.data(), text.size());
    out.commit();
  }
  finished_ = true;
}

std::vector<std::string> SafetensorsWriter::files() const {
  std::vector<std::string> files;
  if (!finished_) return files;
  for (const auto& name : shard_names_) files.push_back((std::filesystem::path(dir_) / name).string());
  if (shard_names_.size() > 1) files.push_back((std::filesystem::path(dir_) / (base_ + ".safetensors.index.json")).string());
  return files;
}

}  // namespace piquant
