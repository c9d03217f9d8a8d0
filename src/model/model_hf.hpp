// Hugging Face model directories (config.json + safetensors, sharded or not) as a ModelReader.
// Llama, Mistral and Qwen2 architectures. q/k rows (and Qwen2 q/k biases) are converted from
// HF's rotate-half layout to the interleaved layout on read. GPTQ checkpoints are read by a
// reader derived from this one (gptq_reader.cpp) that replaces only how a linear is read.
#pragma once

#include <cdquant/model.hpp>
#include <cdquant/safetensors.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace cdq {

// "model.layers.3.self_attn.q_proj" (no ".weight" suffix).
std::string hf_linear_prefix(int layer, Linear l);

// Reads the hyper-parameters of config.json. Throws Error naming `what` and the field.
ModelConfig hf_model_config(const nlohmann::json& config, const std::string& what);

// Opens an HF model directory (or a single .safetensors file with config.json beside it).
std::unique_ptr<ModelReader> open_hf_model(const std::string& path);

class HfModelReader : public ModelReader {
 public:
  // What a derived reader checks while the checkpoint is opened: on_config right after
  // config.json is parsed (cfg_path: that file), on_tensors once the safetensors are open and
  // before lm_head is checked.
  struct Hooks {
    std::function<void(const nlohmann::json& config, const std::string& cfg_path)> on_config;
    std::function<void(const SafetensorsDir& st)> on_tensors;
  };

  explicit HfModelReader(const std::string& path, const Hooks& hooks = {});

  const ModelConfig& config() const override { return config_; }
  std::string format() const override { return "hf"; }
  Matrix read_embeddings() override;
  BlockWeights read_block(int layer) override;
  std::vector<float> read_final_norm() override;
  Matrix read_output() override;

 protected:
  // One linear as [out, in] in the checkpoint's (HF) row order: prefix.weight. GPTQ-packed
  // checkpoints (qweight ...) are read by the GPTQ reader (open_model picks it from
  // quantization_config).
  virtual Matrix read_linear(int layer, Linear l) const;
  // A float tensor of the checkpoint, checked to be [rows, cols].
  Matrix read_matrix(const std::string& name, int64_t rows, int64_t cols) const;

  const std::string& path() const { return path_; }
  const SafetensorsDir& tensors() const { return *st_; }

 private:
  std::string path_;
  ModelConfig config_;
  std::unique_ptr<SafetensorsDir> st_;
};

}  // namespace cdq
