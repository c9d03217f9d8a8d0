// open_model: picks the reader by looking at the path (directory or file magic), and finds
// the tokenizer stored beside a checkpoint.
#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/gptq_checkpoint.hpp>
#include <cdquant/model.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "model/finite_check.hpp"
#include "model/gguf_model_reader.hpp"
#include "model/gptq_config.hpp"
#include "model/llama2c.hpp"
#include "model/model_hf.hpp"

namespace cdq {

namespace fs = std::filesystem;

namespace {

std::unique_ptr<ModelReader> open_by_format(const std::string& path) {
  std::error_code ec;
  CDQ_CHECK(fs::exists(path, ec), "{}: no such file or directory", path);
  if (fs::is_directory(path, ec)) {
    CDQ_CHECK(fs::exists(fs::path(path) / "config.json", ec),
              "{}: a directory but not an HF model (no config.json)", path);
    if (is_gptq_checkpoint(path)) return open_gptq_model(path);  // strict GPTQ validation
    return open_hf_model(path);
  }
  if (fs::path(path).extension() == ".safetensors") {
    CDQ_CHECK(fs::exists(fs::path(path).parent_path() / "config.json", ec),
              "{}: a safetensors file needs config.json beside it", path);
    if (is_gptq_checkpoint(path)) return open_gptq_model(path);
    return open_hf_model(path);
  }
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    CDQ_CHECK(in.good(), "{}: cannot open", path);
    in.read(magic, sizeof magic);
  }
  if (std::memcmp(magic, "GGUF", 4) == 0) return open_gguf_model(path);
  // No magic in the llama2.c legacy format: the reader validates the header and the size.
  return open_llama2c(path);
}

}  // namespace

std::unique_ptr<ModelReader> open_model(const std::string& path) {
  return finite_checked(open_by_format(path), path);
}

std::string find_tokenizer_for(const std::string& model_path) {
  std::error_code ec;
  const bool is_dir = fs::is_directory(model_path, ec);
  const fs::path dir = is_dir ? fs::path(model_path) : fs::path(model_path).parent_path();
  const fs::path self = is_dir ? fs::path() : fs::path(model_path).filename();
  if (!fs::is_directory(dir.empty() ? fs::path(".") : dir, ec)) return "";

  // Files named tok*.<ext> (but not the model itself), sorted for determinism.
  auto tok_star = [&](const std::string& ext) {
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(dir.empty() ? fs::path(".") : dir, ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && name.rfind("tok", 0) == 0 && e.path().extension() == ext &&
          e.path().filename() != self)
        found.push_back(e.path());
    }
    std::sort(found.begin(), found.end());
    return found;
  };
  std::vector<fs::path> candidates;
  auto add = [&](const fs::path& p) { candidates.push_back(p); };
  if (is_dir) {  // HF layout first
    add(dir / "tokenizer.json");
    add(dir / "tokenizer.model");
  }
  add(dir / "tokenizer.bin");
  for (const auto& p : tok_star(".bin")) add(p);
  add(dir / "tokenizer.model");
  for (const auto& p : tok_star(".model")) add(p);
  add(dir / "tokenizer.json");
  for (const auto& p : candidates)
    if (p.filename() != self && fs::is_regular_file(p, ec)) return p.string();
  return "";
}

}  // namespace cdq
