// SafetensorsDir: a model as one file or as shards listed by model.safetensors.index.json.
#include <cdquant/safetensors.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/json_limits.hpp"

namespace cdq {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

json read_index(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CDQ_CHECK(in.good(), "{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const json index = parse_json_text(ss.str(), path);
  CDQ_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
            "{}: expected an object with a 'weight_map' object", path);
  return index;
}

// A shard must be a plain file name beside the index: never a path that leaves the directory.
void check_shard_name(const std::string& index_path, const std::string& tensor,
                      const std::string& shard) {
  CDQ_CHECK(!shard.empty() && shard.find('/') == std::string::npos && shard != "." && shard != "..",
            "{}: tensor '{}' maps to '{}', which is not a file name in the directory", index_path,
            tensor, shard);
}

}  // namespace

SafetensorsDir::SafetensorsDir(const std::string& path) : path_(path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  CDQ_CHECK(!ec && fs::exists(status), "{}: no such file or directory", path);
  std::string single;
  if (fs::is_directory(status)) {
    dir_ = path;
    const std::string index_path = (fs::path(path) / kIndexName).string();
    if (fs::exists(index_path)) {
      const json index = read_index(index_path);
      for (const auto& [tensor, shard] : index["weight_map"].items()) {
        CDQ_CHECK(shard.is_string(), "{}: weight_map['{}'] must be a file name", index_path,
                  tensor);
        check_shard_name(index_path, tensor, shard.get<std::string>());
        weight_map_.emplace(tensor, shard.get<std::string>());
      }
      // Both an index and a single file: one of them may be left from an earlier run into
      // the same folder. Only an index that lists the single file itself is unambiguous.
      if (fs::exists(fs::path(path) / kSingleName))
        for (const auto& [tensor, shard] : weight_map_)
          CDQ_CHECK(shard == kSingleName,
                    "{}: holds both {} and {}, and the index maps '{}' to {}: one of them is "
                    "stale (left from another run); remove it",
                    path, kSingleName, kIndexName, tensor, shard);
      if (index.contains("metadata") && index["metadata"].is_object())
        for (const auto& [k, v] : index["metadata"].items())
          metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
      sharded_ = true;
      return;
    }
    CDQ_CHECK(fs::exists(fs::path(path) / kSingleName), "{}: holds neither {} nor {}", path,
              kIndexName, kSingleName);
    single = kSingleName;
  } else {
    dir_ = fs::path(path).parent_path().string();
    single = fs::path(path).filename().string();
  }
  // One file: open it now and list its tensors.
  auto file = std::make_unique<SafetensorsFile>((fs::path(dir_) / single).string());
  for (const auto& name : file->names()) weight_map_.emplace(name, single);
  metadata_ = file->metadata();
  open_.emplace(single, std::move(file));
}

SafetensorsDir::~SafetensorsDir() = default;

std::vector<std::string> SafetensorsDir::names() const {
  std::vector<std::string> out;
  out.reserve(weight_map_.size());
  for (const auto& [name, _] : weight_map_) out.push_back(name);
  return out;
}

bool SafetensorsDir::contains(std::string_view name) const {
  return weight_map_.contains(name);
}

std::string SafetensorsDir::shard_of(std::string_view name) const {
  const auto it = weight_map_.find(name);
  CDQ_CHECK(it != weight_map_.end(), "{}: tensor '{}' not found ({} tensors)", path_, name,
            weight_map_.size());
  return it->second;
}

const SafetensorsFile& SafetensorsDir::file_for(std::string_view name) const {
  const std::string shard = shard_of(name);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = open_.find(shard);
  if (it == open_.end()) {
    auto file = std::make_unique<SafetensorsFile>((fs::path(dir_) / shard).string());
    it = open_.emplace(shard, std::move(file)).first;
  }
  const SafetensorsFile& f = *it->second;
  CDQ_CHECK(f.contains(name), "{}: the index maps tensor '{}' to {}, which does not hold it", path_,
            name, shard);
  return f;
}

}  // namespace cdq
