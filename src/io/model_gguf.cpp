// GGUF files (llama.cpp) as a streaming ModelReader: architectures "llama" (Llama, Mistral)
// and "qwen2". Tensors in any block format the GGUF reader decodes come out as float32.
// llama.cpp stores llama q/k rows already interleaved (its converter permutes them); qwen2
// runs with NEOX (rotate-half) RoPE and keeps HF's order, so those rows are converted here.
#include "io/model_gguf.hpp"

#include <cdquant/error.hpp>
#include <cdquant/gguf.hpp>

namespace cdq {

namespace {

class GgufModelReader final : public ModelReader {
 public:
  explicit GgufModelReader(const std::string& path) : gguf_(path) {
    const std::string arch = gguf_.get("general.architecture").str();
    CDQ_CHECK(arch == "llama" || arch == "qwen2",
              "{}: GGUF architecture '{}' is not supported (llama, qwen2)", path, arch);
    rotate_half_ = arch == "qwen2";
    ModelConfig& c = config_;
    c.arch = arch;
    auto u = [&](const std::string& key) {
      const uint64_t v = gguf_.get(arch + "." + key).as_uint();
      CDQ_CHECK(v > 0 && v <= (uint64_t{1} << 30), "{}: {}.{} = {} is out of range", path, arch,
                key, v);
      return static_cast<int>(v);
    };
    auto f = [&](const std::string& key, double fallback) {
      const GgufValue* v = gguf_.find(arch + "." + key);
      return static_cast<float>(v != nullptr ? v->as_double() : fallback);
    };
    c.dim = u("embedding_length");
    c.hidden_dim = u("feed_forward_length");
    c.n_layers = u("block_count");
    c.n_heads = u("attention.head_count");
    c.n_kv_heads =
        gguf_.find(arch + ".attention.head_count_kv") ? u("attention.head_count_kv") : c.n_heads;
    c.head_dim =
        gguf_.find(arch + ".attention.key_length") ? u("attention.key_length") : c.dim / c.n_heads;
    c.max_seq_len = u("context_length");
    c.rope_theta = f("rope.freq_base", 10000.0);
    c.norm_eps = f("attention.layer_norm_rms_epsilon", 1e-5);
    if (gguf_.find(arch + ".rope.dimension_count"))
      CDQ_CHECK(u("rope.dimension_count") == c.head_dim,
                "{}: partial rotary embeddings (rope.dimension_count {} != head_dim {}) are not "
                "supported",
                path, u("rope.dimension_count"), c.head_dim);
    c.vocab_size = static_cast<int>(gguf_.tensor("token_embd.weight").rows());
    c.tied_embeddings = gguf_.find_tensor("output.weight") == nullptr;
    c.qkv_bias = gguf_.find_tensor("blk.0.attn_q.bias") != nullptr;
    if (const GgufValue* v = gguf_.find("tokenizer.ggml.bos_token_id"))
      c.bos_id = static_cast<int>(v->as_uint());
    if (const GgufValue* v = gguf_.find("tokenizer.ggml.eos_token_id"))
      c.eos_id = static_cast<int>(v->as_uint());
    check_config(c);
  }

  const ModelConfig& config() const override { return config_; }
  std::string format() const override { return "gguf"; }

  Matrix read_embeddings() override {
    return matrix("token_embd.weight", config_.vocab_size, config_.dim);
  }

  BlockWeights read_block(int layer) override {
    const ModelConfig& c = config_;
    CDQ_CHECK(layer >= 0 && layer < c.n_layers, "{}: layer {} out of range (n_layers {})",
              gguf_.path(), layer, c.n_layers);
    const std::string p = fmt::format("blk.{}.", layer);
    BlockWeights b;
    b.attn_norm = vec(p + "attn_norm.weight", c.dim);
    b.ffn_norm = vec(p + "ffn_norm.weight", c.dim);
    b.wq = qk(matrix(p + "attn_q.weight", c.q_dim(), c.dim));
    b.wk = qk(matrix(p + "attn_k.weight", c.kv_dim(), c.dim));
    b.wv = matrix(p + "attn_v.weight", c.kv_dim(), c.dim);
    b.wo = matrix(p + "attn_output.weight", c.dim, c.q_dim());
    b.w_gate = matrix(p + "ffn_gate.weight", c.hidden_dim, c.dim);
    b.w_up = matrix(p + "ffn_up.weight", c.hidden_dim, c.dim);
    b.w_down = matrix(p + "ffn_down.weight", c.dim, c.hidden_dim);
    if (c.qkv_bias) {
      b.bq = qk(vec(p + "attn_q.bias", c.q_dim()));
      b.bk = qk(vec(p + "attn_k.bias", c.kv_dim()));
      b.bv = vec(p + "attn_v.bias", c.kv_dim());
    }
    check_block(b, c, layer);
    return b;
  }

  std::vector<float> read_final_norm() override { return vec("output_norm.weight", config_.dim); }

  Matrix read_output() override {
    if (config_.tied_embeddings) return {};
    return matrix("output.weight", config_.vocab_size, config_.dim);
  }

 private:
  Matrix matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const GgufTensorInfo& t = gguf_.tensor(name);
    CDQ_CHECK(t.rows() == rows && t.cols() == cols,
              "{}: tensor {} is [{}, {}] (rows, cols), expected [{}, {}]", gguf_.path(), name,
              t.rows(), t.cols(), rows, cols);
    return gguf_.read_matrix(name);
  }
  std::vector<float> vec(const std::string& name, int64_t n) const {
    return std::move(matrix(name, 1, n).data);
  }
  Matrix qk(Matrix w) const {
    return rotate_half_ ? rotate_half_to_interleaved(w, config_.head_dim) : w;
  }
  std::vector<float> qk(std::vector<float> b) const {
    return rotate_half_ ? rotate_half_to_interleaved(b, config_.head_dim) : b;
  }

  GgufReader gguf_;
  ModelConfig config_;
  bool rotate_half_ = false;
};

}  // namespace

std::unique_ptr<ModelReader> open_gguf_model(const std::string& path) {
  return std::make_unique<GgufModelReader>(path);
}

}  // namespace cdq
