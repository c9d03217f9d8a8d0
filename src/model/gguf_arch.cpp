// GGUF llama-family models: metadata keys (llama.cpp's gguf-py constants), the ModelReader that
// dequantizes every tensor type, and the tokenizer stored in the metadata.
#include "model/gguf_arch.hpp"

#include <fmt/ranges.h>

#include <cdquant/error.hpp>
#include <cdquant/gguf_export.hpp>
#include <filesystem>
#include <fstream>

namespace cdq {

namespace {

constexpr const char* kLinearNames[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                        "ffn_gate", "ffn_up", "ffn_down"};

std::string key(const std::string& arch, const char* suffix) {
  return arch + "." + suffix;
}

uint32_t u32(int v) {
  return static_cast<uint32_t>(v);
}

}  // namespace

std::string gguf_linear_name(int layer, Linear l) {
  return fmt::format("blk.{}.{}.weight", layer, kLinearNames[static_cast<int>(l)]);
}

std::string gguf_arch_of(const ModelConfig& config) {
  if (config.arch == "qwen2" || config.qkv_bias) return "qwen2";
  return "llama";  // llama.cpp runs Mistral checkpoints as "llama"
}

bool gguf_rotate_half(const std::string& arch) {
  return arch == "qwen2";
}

void set_gguf_model_metadata(GgufWriter& w, const ModelConfig& c, const TokenizerVocab& v,
                             const std::string& name, uint32_t file_type, bool quantized) {
  const std::string arch = gguf_arch_of(c);
  w.set("general.architecture", GgufValue::string(arch));
  w.set("general.name", GgufValue::string(name));
  w.set("general.alignment", GgufValue::scalar<uint32_t>(kGgufDefaultAlignment));
  w.set("general.file_type", GgufValue::scalar<uint32_t>(file_type));
  if (quantized) w.set("general.quantization_version", GgufValue::scalar<uint32_t>(2));
  w.set(key(arch, "vocab_size"), GgufValue::scalar(u32(c.vocab_size)));
  w.set(key(arch, "context_length"), GgufValue::scalar(u32(c.max_seq_len)));
  w.set(key(arch, "embedding_length"), GgufValue::scalar(u32(c.dim)));
  w.set(key(arch, "block_count"), GgufValue::scalar(u32(c.n_layers)));
  w.set(key(arch, "feed_forward_length"), GgufValue::scalar(u32(c.hidden_dim)));
  w.set(key(arch, "rope.dimension_count"), GgufValue::scalar(u32(c.head_dim)));
  w.set(key(arch, "rope.freq_base"), GgufValue::scalar(c.rope_theta));
  w.set(key(arch, "attention.head_count"), GgufValue::scalar(u32(c.n_heads)));
  w.set(key(arch, "attention.head_count_kv"), GgufValue::scalar(u32(c.n_kv_heads)));
  w.set(key(arch, "attention.layer_norm_rms_epsilon"), GgufValue::scalar(c.norm_eps));
  if (c.head_dim * c.n_heads != c.dim) {  // llama.cpp assumes dim / n_heads otherwise
    w.set(key(arch, "attention.key_length"), GgufValue::scalar(u32(c.head_dim)));
    w.set(key(arch, "attention.value_length"), GgufValue::scalar(u32(c.head_dim)));
  }

  CDQ_CHECK(v.model == "llama" || v.model == "gpt2",
            "GGUF export: tokenizer model '{}' is not supported (llama or gpt2)", v.model);
  CDQ_CHECK(static_cast<int>(v.tokens.size()) <= c.vocab_size,
            "GGUF export: the tokenizer has {} tokens but the model's vocabulary only {}",
            v.tokens.size(), c.vocab_size);
  // llama.cpp wants one token per embedding row: pad with unused pieces.
  std::vector<std::string> tokens = v.tokens;
  std::vector<int32_t> types = v.token_types;
  types.resize(tokens.size(), static_cast<int32_t>(TokenType::Normal));
  std::vector<float> scores = v.scores;
  for (auto i = static_cast<int>(tokens.size()); i < c.vocab_size; ++i) {
    tokens.push_back(fmt::format("[PAD{}]", i));
    types.push_back(static_cast<int32_t>(TokenType::Unused));
  }
  w.set("tokenizer.ggml.model", GgufValue::string(v.model));
  if (v.model == "gpt2")
    w.set("tokenizer.ggml.pre", GgufValue::string(v.pre.empty() ? "default" : v.pre));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
  if (v.model == "llama" || !scores.empty()) {
    scores.resize(tokens.size(), v.model == "llama" ? -1e9f : 0.0f);
    w.set("tokenizer.ggml.scores", GgufValue::array(scores));
  }
  w.set("tokenizer.ggml.token_type", GgufValue::array(types));
  if (!v.merges.empty()) w.set("tokenizer.ggml.merges", GgufValue::string_array(v.merges));
  if (v.bos_id >= 0) w.set("tokenizer.ggml.bos_token_id", GgufValue::scalar(u32(v.bos_id)));
  if (v.eos_id >= 0) w.set("tokenizer.ggml.eos_token_id", GgufValue::scalar(u32(v.eos_id)));
  if (v.unk_id >= 0) w.set("tokenizer.ggml.unknown_token_id", GgufValue::scalar(u32(v.unk_id)));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::scalar(v.add_bos));
}

TokenizerVocab read_gguf_vocab(const GgufReader& r) {
  TokenizerVocab v;
  CDQ_CHECK(r.find("tokenizer.ggml.model") != nullptr,
            "{}: no tokenizer in the file (tokenizer.ggml.model is missing): pass --tokenizer",
            r.path());
  v.model = r.get("tokenizer.ggml.model").str();
  CDQ_CHECK(v.model == "llama" || v.model == "gpt2",
            "{}: tokenizer.ggml.model '{}' is not supported (llama or gpt2)", r.path(), v.model);
  if (const GgufValue* p = r.find("tokenizer.ggml.pre")) v.pre = p->str();
  v.tokens = r.get("tokenizer.ggml.tokens").str_array();
  if (const GgufValue* s = r.find("tokenizer.ggml.scores")) v.scores = s->get_array<float>();
  if (const GgufValue* t = r.find("tokenizer.ggml.token_type"))
    v.token_types = t->get_array<int32_t>();
  if (const GgufValue* m = r.find("tokenizer.ggml.merges")) v.merges = m->str_array();
  const auto id = [&](const char* k) {
    const GgufValue* p = r.find(k);
    return p ? static_cast<int>(p->as_uint()) : -1;
  };
  v.bos_id = id("tokenizer.ggml.bos_token_id");
  v.eos_id = id("tokenizer.ggml.eos_token_id");
  v.unk_id = id("tokenizer.ggml.unknown_token_id");
  if (const GgufValue* b = r.find("tokenizer.ggml.add_bos_token")) v.add_bos = b->get<bool>();
  const size_t n = v.tokens.size();
  CDQ_CHECK(v.scores.empty() || v.scores.size() == n,
            "{}: tokenizer.ggml.scores has {} entries for {} tokens", r.path(), v.scores.size(), n);
  CDQ_CHECK(v.token_types.empty() || v.token_types.size() == n,
            "{}: tokenizer.ggml.token_type has {} entries for {} tokens", r.path(),
            v.token_types.size(), n);
  return v;
}

namespace {

class GgufModelReader final : public ModelReader {
 public:
  explicit GgufModelReader(const std::string& path) : file_(path) {
    const std::string arch = str("general.architecture");
    CDQ_CHECK(arch == "llama" || arch == "qwen2",
              "{}: GGUF architecture '{}' is not supported (llama or qwen2)", path, arch);
    arch_ = arch;
    ModelConfig& c = config_;
    c.arch = arch;
    c.dim = num("embedding_length");
    c.n_layers = num("block_count");
    c.hidden_dim = num("feed_forward_length");
    c.n_heads = num("attention.head_count");
    c.n_kv_heads = file_.find(key(arch, "attention.head_count_kv")) ? num("attention.head_count_kv")
                                                                    : c.n_heads;
    c.max_seq_len = num("context_length");
    CDQ_CHECK(c.n_heads > 0, "{}: {}.attention.head_count is 0", path, arch);
    c.head_dim = file_.find(key(arch, "attention.key_length")) ? num("attention.key_length")
                                                               : c.dim / c.n_heads;
    if (file_.find(key(arch, "attention.value_length")))
      CDQ_CHECK(num("attention.value_length") == c.head_dim,
                "{}: value_length {} differs from key_length {} (not supported)", path,
                num("attention.value_length"), c.head_dim);
    if (file_.find(key(arch, "rope.dimension_count")))
      CDQ_CHECK(num("rope.dimension_count") == c.head_dim,
                "{}: partial rotary embeddings (rope.dimension_count {} < head size {}) are not "
                "supported",
                path, num("rope.dimension_count"), c.head_dim);
    if (const GgufValue* t = file_.find(key(arch, "rope.freq_base")))
      c.rope_theta = static_cast<float>(t->as_double());
    c.norm_eps =
        static_cast<float>(file_.get(key(arch, "attention.layer_norm_rms_epsilon")).as_double());
    const GgufTensorInfo& emb = file_.tensor("token_embd.weight");
    CDQ_CHECK(emb.dims.size() == 2 && emb.dims[0] == static_cast<uint64_t>(c.dim),
              "{}: token_embd.weight must have {} columns (embedding_length), got shape {}", path,
              c.dim, shape(emb));
    c.vocab_size = static_cast<int>(emb.dims[1]);
    if (const GgufValue* v = file_.find(key(arch, "vocab_size")))
      CDQ_CHECK(v->as_uint() == emb.dims[1], "{}: {}.vocab_size {} but token_embd has {} rows",
                path, arch, v->as_uint(), emb.dims[1]);
    c.tied_embeddings = file_.find_tensor("output.weight") == nullptr;
    c.qkv_bias = file_.find_tensor("blk.0.attn_q.bias") != nullptr;
    if (const GgufValue* b = file_.find("tokenizer.ggml.bos_token_id"))
      c.bos_id = static_cast<int>(b->as_uint());
    if (const GgufValue* e = file_.find("tokenizer.ggml.eos_token_id"))
      c.eos_id = static_cast<int>(e->as_uint());
    try {
      check_config(c);
    } catch (const Error& e) {
      fail("{}: {}", path, e.what());
    }
  }

  const ModelConfig& config() const override { return config_; }
  std::string format() const override { return "gguf"; }

  Matrix read_embeddings() override {
    return weight("token_embd.weight", config_.vocab_size, config_.dim);
  }

  BlockWeights read_block(int layer) override {
    const ModelConfig& c = config_;
    CDQ_CHECK(layer >= 0 && layer < c.n_layers, "{}: layer {} out of range (block_count {})",
              file_.path(), layer, c.n_layers);
    const std::string p = fmt::format("blk.{}.", layer);
    BlockWeights b;
    b.attn_norm = vec(p + "attn_norm.weight", c.dim);
    b.ffn_norm = vec(p + "ffn_norm.weight", c.dim);
    for (Linear l : kAllLinears) {
      const auto [rows, cols] = linear_shape(config_, l);
      b.linear(l) = weight(gguf_linear_name(layer, l), rows, cols);
    }
    if (c.qkv_bias) {
      b.bq = vec(p + "attn_q.bias", c.q_dim());
      b.bk = vec(p + "attn_k.bias", c.kv_dim());
      b.bv = vec(p + "attn_v.bias", c.kv_dim());
    }
    if (gguf_rotate_half(arch_)) {
      b.wq = rotate_half_to_interleaved(b.wq, c.head_dim);
      b.wk = rotate_half_to_interleaved(b.wk, c.head_dim);
      if (c.qkv_bias) {
        b.bq = rotate_half_to_interleaved(b.bq, c.head_dim);
        b.bk = rotate_half_to_interleaved(b.bk, c.head_dim);
      }
    }
    return b;
  }

  std::vector<float> read_final_norm() override { return vec("output_norm.weight", config_.dim); }

  Matrix read_output() override {
    if (config_.tied_embeddings) return {};
    return weight("output.weight", config_.vocab_size, config_.dim);
  }

 private:
  std::string str(const char* k) const {
    const GgufValue* v = file_.find(k);
    CDQ_CHECK(v != nullptr, "{}: not a GGUF model: the key '{}' is missing", file_.path(), k);
    CDQ_CHECK(v->type() == GgufType::String, "{}: '{}' must be a string", file_.path(), k);
    return v->str();
  }
  int num(const char* suffix) const {
    const std::string k = key(arch_, suffix);
    const GgufValue* v = file_.find(k);
    CDQ_CHECK(v != nullptr, "{}: the GGUF key '{}' is missing", file_.path(), k);
    CDQ_CHECK(!v->is_array(), "{}: '{}' is an array (per-layer values are not supported)",
              file_.path(), k);
    const uint64_t x = v->as_uint();
    CDQ_CHECK(x <= (1u << 30), "{}: '{}' = {} is out of range", file_.path(), k, x);
    return static_cast<int>(x);
  }
  static std::string shape(const GgufTensorInfo& t) {
    return fmt::format("[{}]", fmt::join(t.dims, ", "));
  }
  // [rows, cols] weight: GGUF dims {cols, rows}.
  Matrix weight(const std::string& name, int64_t rows, int64_t cols) const {
    const GgufTensorInfo& t = file_.tensor(name);
    CDQ_CHECK(t.dims.size() == 2 && t.dims[0] == static_cast<uint64_t>(cols) &&
                  t.dims[1] == static_cast<uint64_t>(rows),
              "{}: tensor '{}' has shape {} but the config implies [{}, {}] (ggml order)",
              file_.path(), name, shape(t), cols, rows);
    return file_.read_matrix(name);
  }
  std::vector<float> vec(const std::string& name, int64_t n) const {
    const GgufTensorInfo& t = file_.tensor(name);
    CDQ_CHECK(t.n_elements() == static_cast<uint64_t>(n) && t.dims[0] == static_cast<uint64_t>(n),
              "{}: tensor '{}' has shape {} but the config implies [{}]", file_.path(), name,
              shape(t), n);
    return file_.read_matrix(name).data;
  }

  GgufReader file_;
  std::string arch_ = "llama";
  ModelConfig config_;
};

}  // namespace

bool is_gguf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string_view(magic, 4) == "GGUF";
}

std::unique_ptr<ModelReader> open_gguf_model(const std::string& path) {
  return std::make_unique<GgufModelReader>(path);
}

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path) {
  const GgufReader r(path);
  return tokenizer_from_vocab(read_gguf_vocab(r));
}

std::unique_ptr<Tokenizer> load_model_tokenizer(const std::string& model_path,
                                                const std::string& tokenizer_path) {
  if (!tokenizer_path.empty()) return load_tokenizer(tokenizer_path);
  std::error_code ec;
  if (std::filesystem::is_regular_file(model_path, ec) && is_gguf_file(model_path))
    return load_gguf_tokenizer(model_path);
  const std::string found = find_tokenizer_for(model_path);
  CDQ_CHECK(!found.empty(),
            "{}: no tokenizer found beside the model (looked for tokenizer.json, "
            "tokenizer.model, tokenizer.bin, tok*.bin, tok*.model): pass --tokenizer",
            model_path);
  return load_tokenizer(found);
}

void check_tokenizer_fits(const Tokenizer& tokenizer, const ModelConfig& config,
                          const std::string& tokenizer_name) {
  CDQ_CHECK(tokenizer.vocab_size() <= config.vocab_size,
            "{}: tokenizer has {} tokens but the model only {}", tokenizer_name,
            tokenizer.vocab_size(), config.vocab_size);
}

GgufSizeInfo gguf_size_info(const std::string& path) {
  const GgufReader r(path);
  GgufSizeInfo s;
  s.file_bytes = std::filesystem::file_size(path);
  uint64_t bytes = 0, linear_bytes = 0;
  for (const GgufTensorInfo& t : r.tensors()) {
    s.weights += t.n_elements();
    bytes += t.n_bytes();
    if (t.name.rfind("blk.", 0) == 0 && t.dims.size() == 2) {
      s.linear_weights += t.n_elements();
      linear_bytes += t.n_bytes();
    }
  }
  if (s.weights) s.bits_per_weight = 8.0 * static_cast<double>(bytes) / s.weights;
  if (s.linear_weights)
    s.linear_bits_per_weight = 8.0 * static_cast<double>(linear_bytes) / s.linear_weights;
  return s;
}

}  // namespace cdq
