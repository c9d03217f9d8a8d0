// Llama-family transformer weights in memory. Internal RoPE convention: llama2.c / GGUF
// interleaved pairs (2i, 2i+1); HF checkpoints are converted on load by permuting q/k rows.
#pragma once

#include <array>
#include <cdquant/ggml_type.hpp>
#include <cdquant/matrix.hpp>
#include <memory>
#include <string>
#include <vector>

namespace cdq {

struct ModelConfig {
  std::string arch = "llama";  // llama, mistral, qwen2 (all run as the Llama graph)
  int dim = 0;                 // hidden size
  int hidden_dim = 0;          // FFN inner size
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;  // usually dim / n_heads
  int vocab_size = 0;
  int max_seq_len = 0;
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  bool tied_embeddings = true;  // classifier shares the token embedding
  bool qkv_bias = false;        // Qwen2
  int bos_id = 1;
  int eos_id = 2;

  int kv_dim() const { return n_kv_heads * head_dim; }
  int q_dim() const { return n_heads * head_dim; }
};

// The seven linears of a block, in the order GPTQ visits them.
enum class Linear { Q, K, V, O, Gate, Up, Down };
constexpr Linear kAllLinears[] = {Linear::Q,    Linear::K,  Linear::V,   Linear::O,
                                  Linear::Gate, Linear::Up, Linear::Down};
const char* linear_name(Linear l);  // "q", "k", "v", "o", "gate", "up", "down"

// [out, in] of a linear under a config.
struct LinearShape {
  int64_t out = 0;
  int64_t in = 0;
};
LinearShape linear_shape(const ModelConfig& c, Linear l);

struct BlockWeights {
  std::vector<float> attn_norm;   // [dim]
  Matrix wq;                      // [q_dim, dim]
  Matrix wk;                      // [kv_dim, dim]
  Matrix wv;                      // [kv_dim, dim]
  Matrix wo;                      // [dim, q_dim]
  std::vector<float> bq, bk, bv;  // [q_dim], [kv_dim], [kv_dim]; empty unless qkv_bias
  std::vector<float> ffn_norm;    // [dim]
  Matrix w_gate;                  // [hidden, dim]   (llama2.c w1)
  Matrix w_up;                    // [hidden, dim]   (llama2.c w3)
  Matrix w_down;                  // [dim, hidden]   (llama2.c w2)
  // Per linear (kAllLinears order): the ggml type its weights were stored in (F32 unless read
  // from GGUF), and what the forward pass rounds its input activations to before the product
  // (F32: not at all; set by use_engine_activations).
  std::array<GgmlType, 7> stored{};
  std::array<ActivationType, 7> act{};

  Matrix& linear(Linear l);
  const Matrix& linear(Linear l) const;
};

struct Model {
  ModelConfig config;
  Matrix tok_embeddings;                       // [vocab, dim]
  std::vector<BlockWeights> blocks;            // [n_layers]
  std::vector<float> final_norm;               // [dim]
  Matrix output;                               // [vocab, dim]; empty when tied_embeddings
  GgmlType classifier_stored = GgmlType::F32;  // as BlockWeights::stored, for classifier()
  ActivationType classifier_act = ActivationType::F32;

  const Matrix& classifier() const { return config.tied_embeddings ? tok_embeddings : output; }
};

// Streaming access to a checkpoint: big models are quantized block by block, so readers give
// one block at a time (memory-mapped underneath) instead of the whole model.
class ModelReader {
 public:
  virtual ~ModelReader() = default;
  virtual const ModelConfig& config() const = 0;
  virtual Matrix read_embeddings() = 0;  // [vocab, dim]
  virtual BlockWeights read_block(int layer) = 0;
  virtual std::vector<float> read_final_norm() = 0;  // [dim]
  virtual Matrix read_output() = 0;                  // [vocab, dim]; empty when tied
  virtual std::string format() const = 0;            // "llama2c", "hf", "gguf"
  // The ggml type the classifier is stored in (the token embedding's when tied); F32 for
  // formats other than GGUF.
  virtual GgmlType classifier_type() const { return GgmlType::F32; }
};

// Opens a checkpoint by sniffing its format: a llama2.c .bin, an HF directory (config.json +
// safetensors), or a .gguf file.
std::unique_ptr<ModelReader> open_model(const std::string& path);

// Reads every block (small models, tests, evaluation).
Model load_model(ModelReader& reader);
Model load_model(const std::string& path);

// Checks that the config is sane and every tensor has the shape the config implies. Throws
// Error naming the first offending tensor.
void check_config(const ModelConfig& config);
void check_block(const BlockWeights& block, const ModelConfig& config, int layer);
void check_model(const Model& model);

// q/k row layouts. HF (and GGUF qwen2) store each head's rows in the rotate-half order (pairs
// (i, i + head_dim/2)); internally rows are interleaved (pairs (2i, 2i+1)). Per head:
// interleaved row 2i <- rotate-half row i, interleaved row 2i+1 <- rotate-half row
// i + head_dim/2. Rows must be a multiple of head_dim. Biases use the same maps.
Matrix rotate_half_to_interleaved(const Matrix& w, int head_dim);
Matrix interleaved_to_rotate_half(const Matrix& w, int head_dim);
std::vector<float> rotate_half_to_interleaved(const std::vector<float>& b, int head_dim);
std::vector<float> interleaved_to_rotate_half(const std::vector<float>& b, int head_dim);

// A tokenizer file stored beside a checkpoint (tok512.bin, tokenizer.bin, tok*.bin,
// tokenizer.model, tokenizer.json, tok*.model; for a directory, inside it); "" when none.
std::string find_tokenizer_for(const std::string& model_path);

}  // namespace cdq
