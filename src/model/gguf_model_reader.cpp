// GGUF llama-family models as a ModelReader that dequantizes every tensor type, and the
// tokenizer stored in a GGUF file's metadata.
#include "model/gguf_model_reader.hpp"

#include <fmt/ranges.h>

#include <cdquant/error.hpp>

#include "model/gguf_arch.hpp"

namespace cdq {

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
    c.n_kv_heads = file_.find(gguf_key(arch, "attention.head_count_kv"))
                       ? num("attention.head_count_kv")
                       : c.n_heads;
    c.max_seq_len = num("context_length");
    CDQ_CHECK(c.n_heads > 0, "{}: {}.attention.head_count is 0", path, arch);
    c.head_dim = file_.find(gguf_key(arch, "attention.key_length")) ? num("attention.key_length")
                                                                    : c.dim / c.n_heads;
    if (file_.find(gguf_key(arch, "attention.value_length")))
      CDQ_CHECK(num("attention.value_length") == c.head_dim,
                "{}: value_length {} differs from key_length {} (not supported)", path,
                num("attention.value_length"), c.head_dim);
    if (file_.find(gguf_key(arch, "rope.dimension_count")))
      CDQ_CHECK(num("rope.dimension_count") == c.head_dim,
                "{}: partial rotary embeddings (rope.dimension_count {} < head size {}) are not "
                "supported",
                path, num("rope.dimension_count"), c.head_dim);
    if (const GgufValue* t = file_.find(gguf_key(arch, "rope.freq_base")))
      c.rope_theta = static_cast<float>(t->as_double());
    c.norm_eps = static_cast<float>(
        file_.get(gguf_key(arch, "attention.layer_norm_rms_epsilon")).as_double());
    const GgufTensorInfo& emb = file_.tensor("token_embd.weight");
    CDQ_CHECK(emb.dims.size() == 2 && emb.dims[0] == static_cast<uint64_t>(c.dim),
              "{}: token_embd.weight must have {} columns (embedding_length), got shape {}", path,
              c.dim, shape(emb));
    c.vocab_size = static_cast<int>(emb.dims[1]);
    if (const GgufValue* v = file_.find(gguf_key(arch, "vocab_size")))
      CDQ_CHECK(v->as_uint() == emb.dims[1], "{}: {}.vocab_size {} but token_embd has {} rows",
                path, arch, v->as_uint(), emb.dims[1]);
    c.tied_embeddings = file_.find_tensor("output.weight") == nullptr;
    c.qkv_bias = file_.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.bos_id = token_id("tokenizer.ggml.bos_token_id", c.bos_id);
    c.eos_id = token_id("tokenizer.ggml.eos_token_id", c.eos_id);
    // Every block has at least nine tensors: a block_count beyond what the file holds is
    // refused here, before anything is sized by it.
    const std::string last = fmt::format("blk.{}.attn_norm.weight", c.n_layers - 1);
    CDQ_CHECK(c.n_layers >= 1 && file_.tensors().size() / 9 >= static_cast<size_t>(c.n_layers) &&
                  file_.find_tensor(last) != nullptr,
              "{}: {}.block_count is {} but the file holds {} tensors{}", path, arch, c.n_layers,
              file_.tensors().size(),
              c.n_layers >= 1 && file_.find_tensor(last) == nullptr ? " and no " + last : "");
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
      b.stored[static_cast<size_t>(l)] = file_.tensor(gguf_linear_name(layer, l)).type;
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

  GgmlType classifier_type() const override {
    return file_.tensor(config_.tied_embeddings ? "token_embd.weight" : "output.weight").type;
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
    const std::string k = gguf_key(arch_, suffix);
    const GgufValue* v = file_.find(k);
    CDQ_CHECK(v != nullptr, "{}: the GGUF key '{}' is missing", file_.path(), k);
    CDQ_CHECK(!v->is_array(), "{}: '{}' is an array (per-layer values are not supported)",
              file_.path(), k);
    const uint64_t x = v->as_uint();
    CDQ_CHECK(x <= (1u << 30), "{}: '{}' = {} is out of range", file_.path(), k, x);
    return static_cast<int>(x);
  }
  // A token id key, if present: below the vocabulary (the embedding's rows).
  int token_id(const char* key, int fallback) const {
    const GgufValue* v = file_.find(key);
    if (v == nullptr) return fallback;
    const uint64_t id = v->as_uint();
    CDQ_CHECK(id < static_cast<uint64_t>(config_.vocab_size),
              "{}: {} = {} is outside the vocabulary [0, {})", file_.path(), key, id,
              config_.vocab_size);
    return static_cast<int>(id);
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
    return gguf_read_matrix(file_, name);
  }
  std::vector<float> vec(const std::string& name, int64_t n) const {
    const GgufTensorInfo& t = file_.tensor(name);
    CDQ_CHECK(t.n_elements() == static_cast<uint64_t>(n) && t.dims[0] == static_cast<uint64_t>(n),
              "{}: tensor '{}' has shape {} but the config implies [{}]", file_.path(), name,
              shape(t), n);
    return gguf_read_matrix(file_, name).data;
  }

  GgufReader file_;
  std::string arch_ = "llama";
  ModelConfig config_;
};

}  // namespace

std::unique_ptr<ModelReader> open_gguf_model(const std::string& path) {
  return std::make_unique<GgufModelReader>(path);
}

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path) {
  const GgufReader r(path);
  return tokenizer_from_vocab(read_gguf_vocab(r));
}

}  // namespace cdq
