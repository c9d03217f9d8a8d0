// GGUF llama-family conventions: metadata keys (llama.cpp's gguf-py constants), tensor names,
// the tokenizer stored in the metadata, and tensors decoded to float.
#include "model/gguf_arch.hpp"

#include <fmt/ranges.h>

#include <cdquant/error.hpp>

#include "quant/ggml_quants.hpp"

namespace cdq {

namespace {

constexpr const char* kLinearNames[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                        "ffn_gate", "ffn_up", "ffn_down"};

uint32_t u32(int v) {
  return static_cast<uint32_t>(v);
}

}  // namespace

std::string gguf_key(const std::string& arch, const char* suffix) {
  return arch + "." + suffix;
}

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
                             const std::string& name, uint32_t file_type) {
  const std::string arch = gguf_arch_of(c);
  w.set("general.architecture", GgufValue::string(arch));
  w.set("general.name", GgufValue::string(name));
  w.set("general.alignment", GgufValue::scalar<uint32_t>(kGgufDefaultAlignment));
  w.set("general.file_type", GgufValue::scalar<uint32_t>(file_type));
  // llama.cpp writes the block-format version into every file, float ones included.
  w.set("general.quantization_version", GgufValue::scalar<uint32_t>(2));
  w.set(gguf_key(arch, "vocab_size"), GgufValue::scalar(u32(c.vocab_size)));
  w.set(gguf_key(arch, "context_length"), GgufValue::scalar(u32(c.max_seq_len)));
  w.set(gguf_key(arch, "embedding_length"), GgufValue::scalar(u32(c.dim)));
  w.set(gguf_key(arch, "block_count"), GgufValue::scalar(u32(c.n_layers)));
  w.set(gguf_key(arch, "feed_forward_length"), GgufValue::scalar(u32(c.hidden_dim)));
  w.set(gguf_key(arch, "rope.dimension_count"), GgufValue::scalar(u32(c.head_dim)));
  w.set(gguf_key(arch, "rope.freq_base"), GgufValue::scalar(c.rope_theta));
  w.set(gguf_key(arch, "attention.head_count"), GgufValue::scalar(u32(c.n_heads)));
  w.set(gguf_key(arch, "attention.head_count_kv"), GgufValue::scalar(u32(c.n_kv_heads)));
  w.set(gguf_key(arch, "attention.layer_norm_rms_epsilon"), GgufValue::scalar(c.norm_eps));
  if (c.head_dim * c.n_heads != c.dim) {  // llama.cpp assumes dim / n_heads otherwise
    w.set(gguf_key(arch, "attention.key_length"), GgufValue::scalar(u32(c.head_dim)));
    w.set(gguf_key(arch, "attention.value_length"), GgufValue::scalar(u32(c.head_dim)));
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
  // llama.cpp refuses a gpt2 vocabulary without the merges key, even when there are none.
  if (v.model == "gpt2" || !v.merges.empty())
    w.set("tokenizer.ggml.merges", GgufValue::string_array(v.merges));
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

Matrix gguf_read_matrix(const GgufReader& r, std::string_view name) {
  const GgufTensorInfo& t = r.tensor(name);
  Matrix m = dequantize_tensor(t.type, r.tensor_bytes(t), t.rows(), t.cols());
  r.drop_tensor_pages(t);  // streaming: RSS at one block
  return m;
}

}  // namespace cdq
