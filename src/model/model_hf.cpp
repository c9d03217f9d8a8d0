// HF safetensors model directories as a streaming ModelReader.
#include "model/model_hf.hpp"

#include <cdquant/error.hpp>
#include <filesystem>

#include "io/json_file.hpp"

namespace cdq {

namespace fs = std::filesystem;

namespace {

constexpr const char* kHfLinearNames[] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

int get_int(const nlohmann::json& j, const char* key, const std::string& what) {
  CDQ_CHECK(j.contains(key) && j[key].is_number_integer(),
            "{}: config.json lacks the integer field '{}'", what, key);
  const int64_t v = j[key].get<int64_t>();
  CDQ_CHECK(v > 0 && v <= (int64_t{1} << 30), "{}: config.json field '{}' = {} is out of range",
            what, key, v);
  return static_cast<int>(v);
}

int get_int_or(const nlohmann::json& j, const char* key, int fallback, const std::string& what) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  return get_int(j, key, what);
}

double get_num_or(const nlohmann::json& j, const char* key, double fallback,
                  const std::string& what) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  CDQ_CHECK(j[key].is_number(), "{}: config.json field '{}' is not a number", what, key);
  return j[key].get<double>();
}

// bos/eos ids may be an int, a list (first is used) or null; an id must lie in [0, vocab_size).
int token_id(const nlohmann::json& j, const char* key, int fallback, int vocab_size,
             const std::string& what) {
  if (!j.contains(key)) return fallback;
  const auto& v = j[key];
  const nlohmann::json* id = nullptr;
  if (v.is_number_integer()) id = &v;
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) id = &v[0];
  if (id == nullptr) return fallback;
  const bool in_range = id->is_number_unsigned()
                            ? id->get<uint64_t>() < static_cast<uint64_t>(vocab_size)
                            : id->get<int64_t>() >= 0 && id->get<int64_t>() < vocab_size;
  CDQ_CHECK(in_range, "{}: config.json {} {} is outside the vocabulary [0, {})", what, key,
            id->dump(), vocab_size);
  return static_cast<int>(id->get<int64_t>());
}

std::string architecture(const nlohmann::json& j, const std::string& what) {
  std::string name;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    name = j["architectures"][0].get<std::string>();
  const std::string type = j.contains("model_type") && j["model_type"].is_string()
                               ? j["model_type"].get<std::string>()
                               : "";
  if (name == "LlamaForCausalLM" || type == "llama") return "llama";
  if (name == "MistralForCausalLM" || type == "mistral") return "mistral";
  if (name == "Qwen2ForCausalLM" || type == "qwen2") return "qwen2";
  fail(
      "{}: unsupported architecture '{}' (model_type '{}'); supported: LlamaForCausalLM, "
      "MistralForCausalLM, Qwen2ForCausalLM",
      what, name, type);
}

}  // namespace

std::string hf_linear_prefix(int layer, Linear l) {
  return fmt::format("model.layers.{}.{}", layer, kHfLinearNames[static_cast<int>(l)]);
}

HfModelReader::HfModelReader(const std::string& path, const Hooks& hooks) : path_(path) {
  const fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
  const std::string cfg_path = (dir / "config.json").string();
  const nlohmann::json j = read_json_file(cfg_path);
  config_ = hf_model_config(j, cfg_path);
  if (hooks.on_config) hooks.on_config(j, cfg_path);
  st_ = std::make_unique<SafetensorsDir>(path);
  if (!j.contains("tie_word_embeddings"))  // not stated: tied exactly when lm_head is absent
    config_.tied_embeddings = !st_->contains("lm_head.weight");
  // Every block has at least nine tensors: a num_hidden_layers beyond what the files hold is
  // refused here, before anything is sized by it.
  const std::string last =
      fmt::format("model.layers.{}.input_layernorm.weight", config_.n_layers - 1);
  CDQ_CHECK(st_->names().size() / 9 >= static_cast<size_t>(config_.n_layers) && st_->contains(last),
            "{}: num_hidden_layers is {} but the checkpoint holds {} tensors{}", path,
            config_.n_layers, st_->names().size(), st_->contains(last) ? "" : " and no " + last);
  if (hooks.on_tensors) hooks.on_tensors(*st_);
  if (!config_.tied_embeddings)
    CDQ_CHECK(st_->contains("lm_head.weight"),
              "{}: tie_word_embeddings is false but lm_head.weight is missing", path);
}

Matrix HfModelReader::read_embeddings() {
  return read_matrix("model.embed_tokens.weight", config_.vocab_size, config_.dim);
}

BlockWeights HfModelReader::read_block(int layer) {
  const ModelConfig& c = config_;
  CDQ_CHECK(layer >= 0 && layer < c.n_layers, "{}: layer {} out of range (n_layers {})", path_,
            layer, c.n_layers);
  const std::string p = fmt::format("model.layers.{}.", layer);
  BlockWeights b;
  b.attn_norm = st_->read_floats(p + "input_layernorm.weight");
  b.ffn_norm = st_->read_floats(p + "post_attention_layernorm.weight");
  for (Linear l : kAllLinears) {
    Matrix w = read_linear(layer, l);
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

std::vector<float> HfModelReader::read_final_norm() {
  auto v = st_->read_floats("model.norm.weight");
  CDQ_CHECK(static_cast<int64_t>(v.size()) == config_.dim,
            "{}: model.norm.weight has {} values, expected {}", path_, v.size(), config_.dim);
  return v;
}

Matrix HfModelReader::read_output() {
  if (config_.tied_embeddings) return {};
  return read_matrix("lm_head.weight", config_.vocab_size, config_.dim);
}

Matrix HfModelReader::read_linear(int layer, Linear l) const {
  const std::string prefix = hf_linear_prefix(layer, l);
  if (st_->contains(prefix + ".weight")) return st_->read_matrix(prefix + ".weight");
  CDQ_CHECK(!st_->contains(prefix + ".qweight"),
            "{}: {} is GPTQ-packed but config.json has no quantization_config with "
            "quant_method 'gptq'",
            path_, prefix);
  fail("{}: tensor {}.weight is missing", path_, prefix);
}

Matrix HfModelReader::read_matrix(const std::string& name, int64_t rows, int64_t cols) const {
  Matrix m = st_->read_matrix(name);
  CDQ_CHECK(m.rows == rows && m.cols == cols, "{}: {} has shape [{}, {}], expected [{}, {}]", path_,
            name, m.rows, m.cols, rows, cols);
  return m;
}

ModelConfig hf_model_config(const nlohmann::json& j, const std::string& what) {
  CDQ_CHECK(j.is_object(), "{}: config.json is not a JSON object", what);
  ModelConfig c;
  c.arch = architecture(j, what);
  c.dim = get_int(j, "hidden_size", what);
  c.hidden_dim = get_int(j, "intermediate_size", what);
  c.n_layers = get_int(j, "num_hidden_layers", what);
  c.n_heads = get_int(j, "num_attention_heads", what);
  c.n_kv_heads = get_int_or(j, "num_key_value_heads", c.n_heads, what);
  CDQ_CHECK(c.dim % c.n_heads == 0 || (j.contains("head_dim") && !j["head_dim"].is_null()),
            "{}: hidden_size {} is not a multiple of num_attention_heads {} and no head_dim", what,
            c.dim, c.n_heads);
  c.head_dim = get_int_or(j, "head_dim", c.dim / c.n_heads, what);
  c.vocab_size = get_int(j, "vocab_size", what);
  c.max_seq_len = get_int_or(j, "max_position_embeddings", 2048, what);
  c.rope_theta = static_cast<float>(get_num_or(j, "rope_theta", 10000.0, what));
  c.norm_eps = static_cast<float>(get_num_or(j, "rms_norm_eps", 1e-6, what));
  c.tied_embeddings = j.value("tie_word_embeddings", false);
  c.qkv_bias = c.arch == "qwen2";
  c.bos_id = token_id(j, "bos_token_id", c.bos_id, c.vocab_size, what);
  c.eos_id = token_id(j, "eos_token_id", c.eos_id, c.vocab_size, what);
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const auto& rs = j["rope_scaling"];
    const std::string type = rs.is_object() ? rs.value("rope_type", rs.value("type", "?")) : "?";
    CDQ_CHECK(type == "default", "{}: rope_scaling of type '{}' is not supported", what, type);
  }
  CDQ_CHECK(!j.value("attention_bias", false) && !j.value("mlp_bias", false),
            "{}: attention_bias / mlp_bias models are not supported", what);
  const std::string act = j.value("hidden_act", "silu");
  CDQ_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (silu only)", what, act);
  check_config(c);
  return c;
}

std::unique_ptr<ModelReader> open_hf_model(const std::string& path) {
  return std::make_unique<HfModelReader>(path);
}

}  // namespace cdq
