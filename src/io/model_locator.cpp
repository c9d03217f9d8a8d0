#include <cdquant/error.hpp>
#include <cdquant/model_locator.hpp>
#include <cdquant/output_file.hpp>
#include <cstdlib>
#include <filesystem>
#include <vector>

namespace cdq {

namespace fs = std::filesystem;

namespace {

const std::vector<KnownModel>& known_models() {
  static const std::vector<KnownModel> models = {
      {"stories260K", "stories260K.bin", "tok512.bin",
       "https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin",
       "https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/tok512.bin"},
      {"babyllama-tok105", "babyllama-tok105/model5000.bin", "babyllama-tok105/tok105.bin", "", ""},
  };
  return models;
}

std::vector<fs::path> search_dirs(const std::string& exe_path) {
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("CDQUANT_MODELS"); env && *env) dirs.emplace_back(env);
  dirs.emplace_back(fs::path("..") / "shared" / "models");
  if (!exe_path.empty()) {  // build/cdquant -> <repo>/../shared/models
    std::error_code ec;
    const fs::path exe = fs::weakly_canonical(exe_path, ec);
    if (!ec) dirs.push_back(exe.parent_path().parent_path().parent_path() / "shared" / "models");
  }
  return dirs;
}

fs::path cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return fs::path(xdg) / "cdquant" / "models";
  if (const char* home = std::getenv("HOME"); home && *home)
    return fs::path(home) / ".cache" / "cdquant" / "models";
  return fs::path(".cache") / "cdquant" / "models";
}

bool have(const fs::path& dir, const KnownModel& m) {
  std::error_code ec;
  return fs::is_regular_file(dir / m.model_file, ec) &&
         fs::is_regular_file(dir / m.tokenizer_file, ec);
}

// Downloads url to dest with curl, atomically: curl fills an OutputFile's fresh temporary (a
// regular file this process created, so never a planted link), which is then renamed. False on
// any failure.
bool download(const std::string& url, const fs::path& dest) {
  std::error_code ec;
  fs::create_directories(dest.parent_path(), ec);
  try {
    OutputFile part(dest.string());
    const std::string cmd = "curl -fsSL --connect-timeout 10 --max-time 300 -o '" +
                            part.temp_path() + "' '" + url + "' 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) return false;  // the temporary goes with `part`
    part.commit();
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

const KnownModel& known_model(const std::string& name) {
  std::string names;
  for (const auto& m : known_models()) {
    if (m.name == name) return m;
    names += (names.empty() ? "" : ", ") + m.name;
  }
  fail("unknown default model '{}' (known: {}); pass a checkpoint path instead", name, names);
}

LocatedModel locate_model(const std::string& name, const std::string& exe_path) {
  const KnownModel& m = known_model(name);
  std::vector<fs::path> dirs = search_dirs(exe_path);
  dirs.push_back(cache_dir());
  for (const auto& dir : dirs)
    if (have(dir, m)) return {(dir / m.model_file).string(), (dir / m.tokenizer_file).string()};

  const fs::path cache = cache_dir();
  if (!m.model_url.empty() && download(m.model_url, cache / m.model_file) &&
      download(m.tokenizer_url, cache / m.tokenizer_file))
    return {(cache / m.model_file).string(), (cache / m.tokenizer_file).string()};

  std::string looked;
  for (const auto& dir : dirs) looked += "\n  " + dir.string();
  std::string how =
      m.model_url.empty()
          ? fmt::format("put {} and {} in a directory", m.model_file, m.tokenizer_file)
          : fmt::format("download\n  {}\n  {}\ninto a directory", m.model_url, m.tokenizer_url);
  fail(
      "model '{}' not found; looked in:{}\nand could not download it (offline?). To fix: {} "
      "and run with CDQUANT_MODELS=<that directory>, or pass --model PATH",
      name, looked, how);
}

}  // namespace cdq
