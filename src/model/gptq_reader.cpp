// GPTQ checkpoints: config JSON and the dequantizing reader (the writer:
// src/export/gptq_writer.cpp).
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
#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>
#include <span>

#include "io/json_file.hpp"
#include "model/gptq_config.hpp"
#include "model/model_hf.hpp"

namespace cdq {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kQuantizer = "cdquant:0.1.0";

// "self_attn.q_proj" etc.: the name within a block.
std::string block_name(Linear l) {
  const std::string p = hf_linear_prefix(0, l);
  return p.substr(std::string("model.layers.0.").size());
}

bool contains(const std::vector<Linear>& v, Linear l) {
  return std::find(v.begin(), v.end(), l) != v.end();
}

// Alternatives of a group's module names ("q|k|v|qkv") and the block part they live in.
std::string group_alternatives(const std::vector<Linear>& group) {
  std::string alts;
  for (Linear l : group) {
    const std::string n = block_name(l);
    // Two appends rather than "|" + substr: GCC 12 warns (-Wrestrict) on that falsely.
    if (!alts.empty()) alts += '|';
    alts += n.substr(n.find('.') + 1, n.size() - n.find('.') - 6);
  }
  if (group.size() == 3) alts += "|qkv";
  if (group.size() == 2) alts += "|gate_up";
  return alts;
}

const char* group_part(const std::vector<Linear>& group) {
  return group.front() == Linear::Q || group.front() == Linear::O ? "self_attn" : "mlp";
}

// Negative-match regex of a float group in every block, covering vLLM's fused module name.
std::string skip_regex(const std::vector<Linear>& group) {
  return fmt::format("-:^model\\.layers\\.\\d+\\.{}\\.({})_proj$", group_part(group),
                     group_alternatives(group));
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

}  // namespace

// Sequential groups of linears as GPTQ visits them; q/k/v and gate/up are also the groups vLLM
// fuses into one layer (qkv_proj, gate_up_proj).
const std::vector<std::vector<Linear>>& gptq_linear_groups() {
  static const std::vector<std::vector<Linear>> groups = {
      {Linear::Q, Linear::K, Linear::V}, {Linear::O}, {Linear::Gate, Linear::Up}, {Linear::Down}};
  return groups;
}

// ---- config -------------------------------------------------------------------------------------

std::string gptq_group_override(int layer, const std::vector<Linear>& group) {
  return fmt::format("+:^model\\.layers\\.{}\\.{}\\.({})_proj$", layer, group_part(group),
                     group_alternatives(group));
}

int gptq_module_bits(const GptqCheckpointConfig& c, const std::string& module) {
  for (const auto& [pattern, bits] : c.dynamic_bits) {
    const std::regex re(pattern.substr(2));
    if (std::regex_search(module, re, std::regex_constants::match_continuous)) return bits;
  }
  return c.bits;
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
  json dynamic = json::object();
  for (const auto& [pattern, bits] : c.dynamic_bits) dynamic[pattern] = {{"bits", bits}};
  if (!c.float_linears.empty()) {
    json keep = json::array();
    for (const auto& group : gptq_linear_groups()) {
      json quantized = json::array();
      for (Linear l : group)
        if (!contains(c.float_linears, l)) quantized.push_back(block_name(l));
      if (!quantized.empty()) keep.push_back(quantized);
      if (quantized.size() < group.size()) dynamic[skip_regex(group)] = json::object();
    }
    j["modules_in_block_to_quantize"] = keep;
  }
  if (!dynamic.empty()) j["dynamic"] = dynamic;
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
  // Positive dynamic overrides with bits, in the object's order (GPTQModel / vLLM try them so).
  if (j.contains("dynamic") && j["dynamic"].is_object()) {
    for (const auto& [key, value] : j["dynamic"].items()) {
      if (key.rfind("+:", 0) != 0 || !value.is_object() || !value.contains("bits")) continue;
      CDQ_CHECK(value["bits"].is_number_integer(), "{}: dynamic '{}' has non-integer bits", what,
                key);
      const int b = value["bits"].get<int>();
      CDQ_CHECK(b == 2 || b == 3 || b == 4 || b == 8,
                "{}: dynamic '{}': GPTQ bits {} not supported (2, 3, 4 or 8)", what, key, b);
      try {
        (void)std::regex(key.substr(2));
      } catch (const std::regex_error& e) {
        fail("{}: dynamic '{}' is not a regular expression: {}", what, key, e.what());
      }
      c.dynamic_bits.emplace_back(key, b);
    }
  }
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

// An HF reader whose linears may be GPTQ-packed; everything else is read as HF.
class GptqReader final : public HfModelReader {
 public:
  explicit GptqReader(const std::string& path)
      : GptqReader(path, std::make_unique<GptqCheckpointConfig>()) {}

  std::string format() const override { return "gptq"; }

 private:
  // quant: filled by the hooks while the base class opens the checkpoint.
  GptqReader(const std::string& path, std::unique_ptr<GptqCheckpointConfig> quant)
      : HfModelReader(path, hooks(path, *quant)), quant_(std::move(*quant)) {}

  static Hooks hooks(const std::string& path, GptqCheckpointConfig& quant) {
    Hooks h;
    h.on_config = [&quant](const json& j, const std::string& cfg_path) {
      CDQ_CHECK(j.contains("quantization_config"), "{}: no quantization_config", cfg_path);
      quant = parse_gptq_quantization_config(j["quantization_config"], cfg_path);
    };
    h.on_tensors = [path](const SafetensorsDir& st) {
      CDQ_CHECK(!st.contains("lm_head.qweight"), "{}: a quantized lm_head is not supported", path);
    };
    return h;
  }

  // [out, in] in the checkpoint's (HF) row order: packed, or float when kept unquantized.
  Matrix read_linear(int layer, Linear l) const override {
    const std::string p = hf_linear_prefix(layer, l);
    const LinearShape s = linear_shape(config(), l);
    if (tensors().contains(p + ".qweight")) {
      GptqCheckpointConfig c = quant_;
      c.bits = gptq_module_bits(quant_, p);
      return read_gptq_linear(tensors(), p, c, s.out, s.in);
    }
    CDQ_CHECK(tensors().contains(p + ".weight"), "{}: {} has neither qweight nor weight", path(),
              p);
    return read_matrix(p + ".weight", s.out, s.in);
  }

  GptqCheckpointConfig quant_;
};

}  // namespace

std::unique_ptr<ModelReader> open_gptq_model(const std::string& path) {
  return std::make_unique<GptqReader>(path);
}

}  // namespace cdq
