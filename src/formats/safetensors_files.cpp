// A safetensors checkpoint: one file, or shards tied together by an index JSON
// that must agree exactly with what the shards hold.
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/safetensors.h"

namespace piquant {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

std::string weight_map_field(const std::string& tensor) { return "weight_map['" + tensor + "']"; }

// A shard must sit beside the index: a plain relative name without "..".
bool is_plain_relative(const std::string& name) {
  if (name.empty()) return false;
  const fs::path p(name);
  if (p.is_absolute()) return false;
  for (const auto& part : p) {
    if (part == "..") return false;
  }
  return true;
}

// weight_map of an index file: tensor name -> shard file name.
std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw_system_error(index_path, "open");
  std::stringstream text;
  text << in.rdbuf();
  json index;
  try {
    index = json::parse(text.str());
  } catch (const json::exception& e) {
    throw FormatError(index_path, "JSON", std::string("not valid JSON: ") + e.what());
  }
  if (!index.is_object()) throw FormatError(index_path, "JSON", "not a JSON object");
  const auto map = index.find("weight_map");
  if (map == index.end()) throw FormatError(index_path, "weight_map", "missing");
  if (!map->is_object()) throw FormatError(index_path, "weight_map", "not an object");
  std::map<std::string, std::string> weight_map;
  for (const auto& [tensor, shard] : map->items()) {
    if (!shard.is_string()) throw FormatError(index_path, weight_map_field(tensor), "shard name is not a string");
    const auto name = shard.get<std::string>();
    if (!is_plain_relative(name)) {
      throw FormatError(index_path, weight_map_field(tensor), "shard name '" + name + "' is not a file beside the index");
    }
    weight_map[tensor] = name;
  }
  if (weight_map.empty()) throw FormatError(index_path, "weight_map", "lists no tensors");
  return weight_map;
}

}  // namespace

SafetensorsFiles::SafetensorsFiles(const std::string& path) : path_(path) {
  std::error_code ec;
  std::string index_path;
  std::string single_path;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(fs::path(path) / kIndexName, ec)) {
      index_path = (fs::path(path) / kIndexName).string();
    } else if (fs::exists(fs::path(path) / kSingleName, ec)) {
      single_path = (fs::path(path) / kSingleName).string();
    } else {
      throw Error(path + ": neither " + kIndexName + " nor " + kSingleName + " is in this folder");
    }
  } else if (!fs::exists(path, ec)) {
    throw Error(path + ": no such file or folder");
  } else if (path.ends_with(".index.json")) {
    index_path = path;
  } else {
    single_path = path;
  }

  if (!single_path.empty()) {
    shards_.push_back(std::make_unique<SafetensorsFile>(single_path));
  } else {
    const auto weight_map = read_weight_map(index_path);
    const fs::path dir = fs::path(index_path).parent_path();
    // Shards in name order (they are numbered), each opened once.
    std::map<std::string, std::string> first_tensor_of_shard;
    for (const auto& [tensor, shard] : weight_map) first_tensor_of_shard.emplace(shard, tensor);
    for (const auto& [shard, tensor] : first_tensor_of_shard) {
      const fs::path shard_path = dir / shard;
      if (!fs::is_regular_file(shard_path, ec)) {
        throw FormatError(index_path, weight_map_field(tensor), "shard file '" + shard + "' does not exist");
      }
      shards_.push_back(std::make_unique<SafetensorsFile>(shard_path.string()));
      // Every tensor of the shard must be listed, and listed for this shard.
      for (const auto& t : shards_.back()->tensors()) {
        const auto listed = weight_map.find(t.name);
        if (listed == weight_map.end()) {
          throw FormatError(index_path, "weight_map",
                            "tensor '" + t.name + "' of shard '" + shard + "' is not listed");
        }
        if (listed->second != shard) {
          throw FormatError(index_path, weight_map_field(t.name),
                            "names shard '" + listed->second + "' but shard '" + shard + "' holds the tensor");
        }
      }
    }
    // And every listed tensor must be in the shard the index names.
    for (const auto& [tensor, shard] : weight_map) {
      const auto shard_index = std::distance(first_tensor_of_shard.begin(), first_tensor_of_shard.find(shard));
      if (shards_[static_cast<std::size_t>(shard_index)]->find(tensor) == nullptr) {
        throw FormatError(index_path, weight_map_field(tensor), "tensor is not in shard '" + shard + "'");
      }
    }
  }

  for (std::size_t s = 0; s < shards_.size(); ++s) {
    const auto& tensors = shards_[s]->tensors();
    for (std::size_t t = 0; t < tensors.size(); ++t) {
      if (!index_.emplace(tensors[t].name, std::make_pair(s, t)).second) {
        throw FormatError(path_, "tensor '" + tensors[t].name + "'", "appears in more than one shard");
      }
      names_.push_back(tensors[t].name);
    }
  }
}

const SafeTensor* SafetensorsFiles::find(std::string_view name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) return nullptr;
  return &shards_[it->second.first]->tensors()[it->second.second];
}

const SafeTensor& SafetensorsFiles::tensor(std::string_view name) const {
  const SafeTensor* t = find(name);
  if (t == nullptr) throw FormatError(path_, "tensor '" + std::string(name) + "'", "not in the checkpoint");
  return *t;
}

const MappedFile& SafetensorsFiles::file_of(const SafeTensor& tensor) const {
  const auto it = index_.find(tensor.name);
  if (it != index_.end() && shards_[it->second.first]->path() == tensor.file) return shards_[it->second.first]->file();
  throw Error(path_ + ": tensor '" + tensor.name + "' does not belong to this checkpoint");
}

std::uint64_t SafetensorsFiles::total_bytes() const {
  std::uint64_t total = 0;
  for (const auto& shard : shards_) {
    for (const auto& t : shard->tensors()) total += t.data.size();
  }
  return total;
}

}  // namespace piquant
