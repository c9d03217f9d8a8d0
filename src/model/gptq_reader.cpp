// GPTQ checkpoints: config JSON, the streaming writer and the dequantizing reader.
//
// Loader conventions followed (facts checked in the loaders' sources):
// - quantization_config in config.json (transformers' GptqHfQuantizer, vLLM's
//   get_quant_config) and the same object as quantize_config.json (GPTQModel; vLLM's
//   GPTQConfig.get_config_filenames). Required by vLLM: bits, group_size, desc_act (and sym for
//   gptq_marlin); lm_head defaults to false. transformers' GPTQConfig needs damp_percent in
//   (0, 1), so a run without damping records 0.01 there and the true value in meta.
// - checkpoint_format "gptq" (v1: qzeros hold zero - 1) for symmetric grids, "gptq_v2" (zeros
//   as they are) for asymmetric ones: v1 cannot store a zero of 0. GPTQModel converts v1 to v2
//   on load and vLLM's GPTQConfig reads checkpoint_format.
// - Linears kept float: `dynamic` negative matches "-:<regex>" (GPTQModel's format; vLLM's
//   get_dynamic_override re.match()es them against the module prefix, which for vLLM is the
//   fused qkv_proj / gate_up_proj name, so the regexes cover those too) and
//   modules_in_block_to_quantize (optimum's convert_model keeps only modules whose name ends with
//   a listed one; vLLM's is_layer_gptq_quantized flattens the nested list and requires all
//   shards of a fused layer to agree, which is why q/k/v and gate/up are kept float together).
// - vLLM's GPTQ linear method rejects an input size that is not a multiple of group_size, so
//   ragged groups are kept float too (gptq_stores_packed).
// - desc_act is true exactly when some g_idx is not the consecutive k / group_size (vLLM only
//   honours g_idx with desc_act; exllama kernels reorder by it).
// - Non-linear tensors: HF sources keep their dtype except F32, stored F16 (torch_dtype
//   float16, the activation dtype of vLLM's GPTQ kernels); float linears are F16.
#include <fmt/ranges.h>

#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/half.hpp>
#include <cdquant/safetensors.hpp>
#include <cdquant/solver.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <span>

#include "export/hf_writer.hpp"
#include "model/gptq_config.hpp"
#include "model/model_hf.hpp"

namespace cdq {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kQuantizer = "cdquant:0.1.0";

// Sequential groups of linears as GPTQ visits them; q/k/v and gate/up are also the groups vLLM
// fuses into one layer (qkv_proj, gate_up_proj).
const std::vector<std::vector<Linear>>& linear_groups() {
  static const std::vector<std::vector<Linear>> groups = {
      {Linear::Q, Linear::K, Linear::V}, {Linear::O}, {Linear::Gate, Linear::Up}, {Linear::Down}};
  return groups;
}

// "self_attn.q_proj" etc.: the name within a block.
std::string block_name(Linear l) {
  const std::string p = hf_linear_prefix(0, l);
  return p.substr(std::string("model.layers.0.").size());
}

bool contains(const std::vector<Linear>& v, Linear l) {
  return std::find(v.begin(), v.end(), l) != v.end();
}

// Negative-match regex of a float group in every block, covering vLLM's fused module name.
std::string skip_regex(const std::vector<Linear>& group) {
  const bool attn = group.front() == Linear::Q || group.front() == Linear::O;
  std::string alts;
  for (Linear l : group) {
    const std::string n = block_name(l);
    alts += (alts.empty() ? "" : "|") + n.substr(n.find('.') + 1, n.size() - n.find('.') - 6);
  }
  if (group.size() == 3) alts += "|qkv";
  if (group.size() == 2) alts += "|gate_up";
  return fmt::format("-:^model\\.layers\\.\\d+\\.{}\\.({})_proj$", attn ? "self_attn" : "mlp",
                     alts);
}

int json_int(const json& j, const char* key, const std::string& what) {
  CDQ_CHECK(j.contains(key) && j[key].is_number_integer(),
            "{}: quantization_config lacks the integer field '{}'", what, key);
  return j[key].get<int>();
}

bool json_bool(const json& j, const char* key, bool fallback, const std::string& what) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  CDQ_CHECK(j[key].is_boolean(), "{}: quantization_config field '{}' is not a boolean", what, key);
  return j[key].get<bool>();
}

// Rows of a [rows, ...] q/k tensor in the rotate-half order: out row j takes interleaved row
// order[j] (per head: rotate-half row i + s * half <- interleaved row 2i + s).
std::vector<int64_t> rotate_half_order(int64_t rows, int head_dim) {
  CDQ_CHECK(head_dim > 0 && head_dim % 2 == 0 && rows % head_dim == 0,
            "q/k layout: {} rows are not whole heads of {} rows", rows, head_dim);
  const int64_t half = head_dim / 2;
  std::vector<int64_t> order(static_cast<size_t>(rows));
  for (int64_t h0 = 0; h0 < rows; h0 += head_dim)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t s = 0; s < 2; ++s) order[h0 + i + s * half] = h0 + 2 * i + s;
  return order;
}

// The grid and codes with their rows (output channels) reordered: out row j = row order[j].
void permute_rows(Grid& grid, std::vector<uint8_t>& codes, const std::vector<int64_t>& order) {
  const int64_t k = grid.d_in, g = grid.n_groups;
  Grid out = grid;
  std::vector<uint8_t> c(codes.size());
  for (int64_t j = 0; j < grid.d_out; ++j) {
    const int64_t r = order[static_cast<size_t>(j)];
    std::copy_n(codes.begin() + r * k, k, c.begin() + j * k);
    for (int64_t q = 0; q < g; ++q) {
      out.scale[static_cast<size_t>(j * g + q)] = grid.scale[static_cast<size_t>(r * g + q)];
      out.bias[static_cast<size_t>(j * g + q)] = grid.bias[static_cast<size_t>(r * g + q)];
      out.zero[static_cast<size_t>(j * g + q)] = grid.zero[static_cast<size_t>(r * g + q)];
    }
  }
  grid = std::move(out);
  codes = std::move(c);
}

bool consecutive_groups(const std::vector<int32_t>& g_idx, int group_size) {
  for (size_t k = 0; k < g_idx.size(); ++k)
    if (g_idx[k] != (group_size > 0 ? static_cast<int32_t>(k / group_size) : 0)) return false;
  return true;
}

template <typename T>
std::span<const std::byte> as_bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

fs::path dir_of(const std::string& path) {
  return fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
}

}  // namespace

// ---- config -------------------------------------------------------------------------------------

GptqCheckpointConfig gptq_config_for(const QuantizeOptions& options) {
  const GridSpec& g = options.solver.grid;
  GptqCheckpointConfig c;
  c.bits = g.bits;
  c.group_size = g.group_size > 0 ? g.group_size : -1;
  c.sym = g.symmetric;
  c.desc_act = options.solver.act_order && c.group_size > 0;
  c.static_groups = options.solver.static_groups;
  c.true_sequential = options.true_sequential;
  c.damp_percent = options.solver.percdamp;
  c.format = c.sym ? GptqCheckpointFormat::V1 : GptqCheckpointFormat::V2;
  c.method = method_name(options.method);
  return c;
}

bool gptq_stores_packed(int64_t out_features, int64_t in_features, int bits, int group_size) {
  return gptq_packable(out_features, in_features, bits) &&
         (group_size <= 0 || in_features % group_size == 0);
}

json gptq_quantization_config(const GptqCheckpointConfig& c) {
  const bool damp_ok = c.damp_percent > 0.0 && c.damp_percent < 1.0;
  json j = {{"quant_method", "gptq"},
            {"bits", c.bits},
            {"group_size", c.group_size > 0 ? c.group_size : -1},
            {"desc_act", c.desc_act},
            {"sym", c.sym},
            {"lm_head", false},
            {"checkpoint_format", c.format == GptqCheckpointFormat::V1 ? "gptq" : "gptq_v2"},
            {"pack_dtype", "int32"},
            {"damp_percent", damp_ok ? c.damp_percent : 0.01},
            {"true_sequential", c.true_sequential},
            {"static_groups", c.static_groups},
            {"meta",
             {{"quantizer", {kQuantizer}},
              {"method", c.method},
              {"damp_percent", c.damp_percent},
              {"uri", "cdquant (RTN / GPTQ / CDQuant coordinate descent)"}}}};
  if (!c.float_linears.empty()) {
    json dynamic = json::object();
    json keep = json::array();
    for (const auto& group : linear_groups()) {
      json quantized = json::array();
      for (Linear l : group)
        if (!contains(c.float_linears, l)) quantized.push_back(block_name(l));
      if (!quantized.empty()) keep.push_back(quantized);
      if (quantized.size() < group.size()) dynamic[skip_regex(group)] = json::object();
    }
    j["dynamic"] = dynamic;
    j["modules_in_block_to_quantize"] = keep;
  }
  return j;
}

GptqCheckpointConfig parse_gptq_quantization_config(const json& j, const std::string& what) {
  CDQ_CHECK(j.is_object(), "{}: quantization_config is not an object", what);
  const std::string method = j.value("quant_method", "");
  CDQ_CHECK(method == "gptq", "{}: quant_method '{}' is not supported (only gptq)", what, method);
  GptqCheckpointConfig c;
  c.bits = json_int(j, "bits", what);
  CDQ_CHECK(c.bits == 2 || c.bits == 3 || c.bits == 4 || c.bits == 8,
            "{}: GPTQ bits {} not supported (2, 3, 4 or 8)", what, c.bits);
  c.group_size = json_int(j, "group_size", what);
  CDQ_CHECK(c.group_size == -1 || c.group_size > 0,
            "{}: group_size {} is invalid (-1 or a positive number)", what, c.group_size);
  c.desc_act = json_bool(j, "desc_act", false, what);
  c.sym = json_bool(j, "sym", true, what);
  c.static_groups = json_bool(j, "static_groups", false, what);
  c.true_sequential = json_bool(j, "true_sequential", false, what);
  CDQ_CHECK(!json_bool(j, "lm_head", false, what), "{}: a quantized lm_head is not supported",
            what);
  if (j.contains("damp_percent") && j["damp_percent"].is_number())
    c.damp_percent = j["damp_percent"].get<double>();
  // GPTQModel's in-code name is "format"; the JSON field is checkpoint_format (default v1).
  const char* key = j.contains("checkpoint_format") ? "checkpoint_format" : "format";
  const std::string format =
      j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "gptq";
  CDQ_CHECK(format == "gptq" || format == "gptq_v2",
            "{}: checkpoint_format '{}' is not supported (gptq or gptq_v2)", what, format);
  c.format = format == "gptq_v2" ? GptqCheckpointFormat::V2 : GptqCheckpointFormat::V1;
  if (j.contains("meta") && j["meta"].is_object() && j["meta"].contains("method") &&
      j["meta"]["method"].is_string())
    c.method = j["meta"]["method"].get<std::string>();
  if (j.contains("modules_in_block_to_quantize") && j["modules_in_block_to_quantize"].is_array()) {
    std::vector<std::string> listed;
    for (const auto& e : j["modules_in_block_to_quantize"]) {
      if (e.is_string()) listed.push_back(e.get<std::string>());
      if (e.is_array())
        for (const auto& s : e)
          if (s.is_string()) listed.push_back(s.get<std::string>());
    }
    for (Linear l : kAllLinears)
      if (std::find(listed.begin(), listed.end(), block_name(l)) == listed.end())
        c.float_linears.push_back(l);
  }
  return c;
}

// ---- writer -------------------------------------------------------------------------------------

namespace {

class GptqWriter final : public ModelWriter {
 public:
  GptqWriter(ModelReader& source, const std::string& source_path, std::string out_dir,
             const QuantizeOptions& options, uint64_t max_shard_bytes)
      : source_(source),
        source_path_(source_path),
        out_dir_(std::move(out_dir)),
        config_(gptq_config_for(options)),
        side_(source, source_path, true) {
    const ModelConfig& c = source.config();
    CDQ_CHECK(config_.bits == 2 || config_.bits == 3 || config_.bits == 4 || config_.bits == 8,
              "GPTQ checkpoints hold 2, 3, 4 or 8 bits, not {}", config_.bits);
    config_.desc_act = false;  // set by finish() from the g_idx actually written
    // A fused group (q/k/v, gate/up) is packed only when all its members are.
    for (const auto& group : linear_groups()) {
      bool all = true;
      for (Linear l : group) {
        const LinearShape s = linear_shape(c, l);
        all = all && gptq_stores_packed(s.out, s.in, config_.bits, config_.group_size);
      }
      for (Linear l : group) packed_[static_cast<int>(l)] = all;
      if (!all)
        for (Linear l : group) config_.float_linears.push_back(l);
    }
    std::vector<SafetensorsStreamWriter::Decl> decls;
    for (int i = 0; i < c.n_layers; ++i) {
      for (const auto& d : side_.layer(i)) decls.push_back(d);
      for (Linear l : kAllLinears) {
        const LinearShape s = linear_shape(c, l);
        const std::string p = hf_linear_prefix(i, l);
        if (!packed_[static_cast<int>(l)]) {
          decls.push_back({p + ".weight", DType::F16, {s.out, s.in}});
          continue;
        }
        const int64_t groups =
            config_.group_size > 0 ? (s.in + config_.group_size - 1) / config_.group_size : 1;
        const int b = config_.bits;
        decls.push_back({p + ".qweight", DType::I32, {s.in * b / 32, s.out}});
        decls.push_back({p + ".qzeros", DType::I32, {groups, s.out * b / 32}});
        decls.push_back({p + ".scales", DType::F16, {groups, s.out}});
        decls.push_back({p + ".g_idx", DType::I32, {s.in}});
      }
    }
    for (const auto& d : side_.globals()) decls.push_back(d);
    out_ = std::make_unique<SafetensorsStreamWriter>(out_dir_, std::move(decls), max_shard_bytes);
  }

  void write_block(int layer, const BlockWeights& block,
                   const std::vector<LinearResult>& linears) override {
    const ModelConfig& c = source_.config();
    CDQ_CHECK(layer == next_layer_, "{}: block {} handed over, expected block {} (layer order)",
              out_dir_, layer, next_layer_);
    check_block(block, c, layer);
    side_.write_layer(*out_, layer, block);
    for (Linear l : kAllLinears) {
      const std::string p = hf_linear_prefix(layer, l);
      const bool qk = l == Linear::Q || l == Linear::K;
      if (!packed_[static_cast<int>(l)]) {
        const Matrix& w = block.linear(l);
        out_->write_floats(p + ".weight",
                           qk ? interleaved_to_rotate_half(w, c.head_dim).span() : w.span());
        continue;
      }
      const auto it = std::find_if(linears.begin(), linears.end(),
                                   [&](const LinearResult& r) { return r.linear == l; });
      CDQ_CHECK(it != linears.end(), "{}: block {} came without the quantized {} linear", out_dir_,
                layer, linear_name(l));
      write_packed(p, *it, qk);
    }
    ++next_layer_;
  }

  void finish() override {
    CDQ_CHECK(next_layer_ == source_.config().n_layers, "{}: only {} of {} blocks were written",
              out_dir_, next_layer_, source_.config().n_layers);
    side_.write_globals(*out_);
    out_->finish();
    json config = side_.is_hf() ? read_json_file((dir_of(source_path_) / "config.json").string())
                                : hf_config_for(source_.config(), "float16");
    const json q = gptq_quantization_config(config_);
    config["quantization_config"] = q;
    config["torch_dtype"] = "float16";
    write_json_file((fs::path(out_dir_) / "config.json").string(), config);
    write_json_file((fs::path(out_dir_) / "quantize_config.json").string(), q);
    copy_hf_side_files(source_path_, out_dir_);
  }

 private:
  void write_packed(const std::string& p, const LinearResult& r, bool qk) {
    const ModelConfig& c = source_.config();
    CDQ_CHECK(r.grid.is_integer_grid(),
              "{}: GPTQ checkpoints need integer grids with zero points ({} has none)", out_dir_,
              p);
    CDQ_CHECK(r.grid.maxq == (1 << config_.bits) - 1,
              "{}: {} was quantized with maxq {}, the checkpoint holds {} bits", out_dir_, p,
              r.grid.maxq, config_.bits);
    const int64_t groups =
        config_.group_size > 0 ? (r.grid.d_in + config_.group_size - 1) / config_.group_size : 1;
    CDQ_CHECK(r.grid.n_groups == groups, "{}: {} has {} groups, group_size {} needs {}", out_dir_,
              p, r.grid.n_groups, config_.group_size, groups);
    Grid grid = r.grid;
    std::vector<uint8_t> codes = r.codes;
    if (qk) permute_rows(grid, codes, rotate_half_order(grid.d_out, c.head_dim));
    if (!consecutive_groups(grid.g_idx, config_.group_size)) config_.desc_act = true;
    const GptqLinear t = pack_gptq_linear(grid, codes, config_.bits, config_.format);
    out_->write_bytes(p + ".qweight", as_bytes_of(t.qweight));
    out_->write_bytes(p + ".qzeros", as_bytes_of(t.qzeros));
    out_->write_bytes(p + ".scales", as_bytes_of(t.scales));
    out_->write_bytes(p + ".g_idx", as_bytes_of(t.g_idx));
  }

  ModelReader& source_;
  std::string source_path_;
  std::string out_dir_;
  GptqCheckpointConfig config_;
  HfSideTensors side_;
  bool packed_[7] = {};
  std::unique_ptr<SafetensorsStreamWriter> out_;
  int next_layer_ = 0;
};

}  // namespace

std::unique_ptr<ModelWriter> make_gptq_writer(ModelReader& source, const std::string& source_path,
                                              const std::string& out_dir,
                                              const QuantizeOptions& options,
                                              uint64_t max_shard_bytes) {
  std::error_code ec;
  CDQ_CHECK(!fs::exists(out_dir, ec) || fs::is_directory(out_dir, ec),
            "{}: exists and is not a directory", out_dir);
  if (source.format() == "hf")
    CDQ_CHECK(fs::weakly_canonical(out_dir, ec) != fs::weakly_canonical(dir_of(source_path), ec),
              "{}: the output directory is the source directory", out_dir);
  return std::make_unique<GptqWriter>(source, source_path, out_dir, options, max_shard_bytes);
}

// ---- reader -------------------------------------------------------------------------------------

bool is_gptq_checkpoint(const std::string& path) {
  std::error_code ec;
  const bool dir = fs::is_directory(path, ec);
  if (!dir && fs::path(path).extension() != ".safetensors") return false;
  const fs::path cfg = (dir ? fs::path(path) : fs::path(path).parent_path()) / "config.json";
  if (!fs::is_regular_file(cfg, ec)) return false;
  try {
    const json j = read_json_file(cfg.string());
    return j.is_object() && j.contains("quantization_config") &&
           j["quantization_config"].is_object() &&
           j["quantization_config"].value("quant_method", "") == "gptq";
  } catch (const std::exception&) {
    return false;
  }
}

Matrix read_gptq_linear(const SafetensorsDir& st, const std::string& prefix,
                        const GptqCheckpointConfig& config, int64_t out, int64_t in) {
  const std::string where = st.path();
  const int b = config.bits;
  CDQ_CHECK(gptq_packable(out, in, b), "{}: {} is [{}, {}], which cannot be packed at {} bits",
            where, prefix, out, in, b);
  const int64_t groups =
      config.group_size > 0 ? (in + config.group_size - 1) / config.group_size : 1;
  auto expect = [&](const std::string& suffix, DType dtype, std::vector<int64_t> shape) {
    const std::string name = prefix + suffix;
    CDQ_CHECK(st.contains(name), "{}: {} is missing (GPTQ linear {} needs qweight, qzeros, scales)",
              where, name, prefix);
    const TensorInfo& info = st.info(name);
    CDQ_CHECK(info.dtype == dtype && info.shape == shape,
              "{}: {} is {} [{}], expected {} [{}] ({} bits, group_size {})", where, name,
              dtype_name(info.dtype), fmt::join(info.shape, ", "), dtype_name(dtype),
              fmt::join(shape, ", "), b, config.group_size);
    return name;
  };
  GptqLinear t;
  t.bits = b;
  t.in_features = in;
  t.out_features = out;
  t.n_groups = static_cast<int>(groups);
  // Every tensor is checked before any is read (a missing one is named as such).
  const std::string qweight = expect(".qweight", DType::I32, {in * b / 32, out});
  const std::string qzeros = expect(".qzeros", DType::I32, {groups, out * b / 32});
  const std::string scales = expect(".scales", DType::F16, {groups, out});
  t.qweight = st.file_for(qweight).read_i32(qweight);
  t.qzeros = st.file_for(qzeros).read_i32(qzeros);
  const auto sbytes = st.bytes(scales);
  t.scales.resize(static_cast<size_t>(groups * out));
  std::memcpy(t.scales.data(), sbytes.data(), t.scales.size() * 2);
  for (size_t i = 0; i < t.scales.size(); ++i)
    CDQ_CHECK(std::isfinite(fp16_to_float(t.scales[i])), "{}: {}.scales holds a non-finite value",
              where, prefix);
  if (st.contains(prefix + ".g_idx")) {
    const std::string g_idx = expect(".g_idx", DType::I32, {in});
    t.g_idx = st.file_for(g_idx).read_i32(g_idx);
    for (size_t k = 0; k < t.g_idx.size(); ++k)
      CDQ_CHECK(t.g_idx[k] >= 0 && t.g_idx[k] < groups,
                "{}: {}.g_idx[{}] = {} is outside [0, {}) (group_size {})", where, prefix, k,
                t.g_idx[k], groups, config.group_size);
  } else {  // no g_idx: consecutive groups
    t.g_idx.resize(static_cast<size_t>(in));
    for (int64_t k = 0; k < in; ++k)
      t.g_idx[static_cast<size_t>(k)] =
          config.group_size > 0 ? static_cast<int32_t>(k / config.group_size) : 0;
  }
  return dequantize_gptq_linear(t, config.format);
}

namespace {

class GptqReader final : public ModelReader {
 public:
  explicit GptqReader(const std::string& path) : path_(path) {
    const std::string cfg_path = (dir_of(path) / "config.json").string();
    const json j = read_json_file(cfg_path);
    config_ = hf_model_config(j, cfg_path);
    CDQ_CHECK(j.contains("quantization_config"), "{}: no quantization_config", cfg_path);
    quant_ = parse_gptq_quantization_config(j["quantization_config"], cfg_path);
    st_ = std::make_unique<SafetensorsDir>(path);
    if (!j.contains("tie_word_embeddings"))
      config_.tied_embeddings = !st_->contains("lm_head.weight");
    CDQ_CHECK(!st_->contains("lm_head.qweight"), "{}: a quantized lm_head is not supported", path);
    if (!config_.tied_embeddings)
      CDQ_CHECK(st_->contains("lm_head.weight"),
                "{}: tie_word_embeddings is false but lm_head.weight is missing", path);
  }

  const ModelConfig& config() const override { return config_; }
  std::string format() const override { return "gptq"; }

  Matrix read_embeddings() override {
    return matrix("model.embed_tokens.weight", config_.vocab_size, config_.dim);
  }

  BlockWeights read_block(int layer) override {
    const ModelConfig& c = config_;
    CDQ_CHECK(layer >= 0 && layer < c.n_layers, "{}: layer {} out of range (n_layers {})", path_,
              layer, c.n_layers);
    const std::string p = fmt::format("model.layers.{}.", layer);
    BlockWeights b;
    b.attn_norm = st_->read_floats(p + "input_layernorm.weight");
    b.ffn_norm = st_->read_floats(p + "post_attention_layernorm.weight");
    for (Linear l : kAllLinears) {
      Matrix w = linear(layer, l);
      if (l == Linear::Q || l == Linear::K) w = rotate_half_to_interleaved(w, c.head_dim);
      b.linear(l) = std::move(w);
    }
    if (c.qkv_bias) {
      b.bq = rotate_half_to_interleaved(st_->read_floats(p + "self_attn.q_proj.bias"), c.head_dim);
      b.bk = rotate_half_to_interleaved(st_->read_floats(p + "self_attn.k_proj.bias"), c.head_dim);
      b.bv = st_->read_floats(p + "self_attn.v_proj.bias");
    }
    check_block(b, c, layer);
    return b;
  }

  std::vector<float> read_final_norm() override {
    auto v = st_->read_floats("model.norm.weight");
    CDQ_CHECK(static_cast<int64_t>(v.size()) == config_.dim,
              "{}: model.norm.weight has {} values, expected {}", path_, v.size(), config_.dim);
    return v;
  }

  Matrix read_output() override {
    if (config_.tied_embeddings) return {};
    return matrix("lm_head.weight", config_.vocab_size, config_.dim);
  }

 private:
  Matrix matrix(const std::string& name, int64_t rows, int64_t cols) const {
    Matrix m = st_->read_matrix(name);
    CDQ_CHECK(m.rows == rows && m.cols == cols, "{}: {} has shape [{}, {}], expected [{}, {}]",
              path_, name, m.rows, m.cols, rows, cols);
    return m;
  }

  // [out, in] in the checkpoint's (HF) row order: packed, or float when kept unquantized.
  Matrix linear(int layer, Linear l) const {
    const std::string p = hf_linear_prefix(layer, l);
    const LinearShape s = linear_shape(config_, l);
    if (st_->contains(p + ".qweight")) return read_gptq_linear(*st_, p, quant_, s.out, s.in);
    CDQ_CHECK(st_->contains(p + ".weight"), "{}: {} has neither qweight nor weight", path_, p);
    return matrix(p + ".weight", s.out, s.in);
  }

  std::string path_;
  ModelConfig config_;
  GptqCheckpointConfig quant_;
  std::unique_ptr<SafetensorsDir> st_;
};

}  // namespace

std::unique_ptr<ModelReader> open_gptq_model(const std::string& path) {
  return std::make_unique<GptqReader>(path);
}

}  // namespace cdq
