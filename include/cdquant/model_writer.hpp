// Output of the quantization pipeline: receives the model block by block, in the order the
// quantizer finishes them, and writes a checkpoint.
#pragma once

#include <cdquant/model.hpp>
#include <cdquant/quantize.hpp>
#include <memory>
#include <string>
#include <vector>

namespace cdq {

class ModelWriter {
 public:
  virtual ~ModelWriter() = default;
  // block: weights with every linear already replaced by its dequantized values.
  virtual void write_block(int layer, const BlockWeights& block,
                           const std::vector<LinearResult>& linears) = 0;
  // Writes what is left (embeddings, norms, classifier from the source) and closes the file.
  virtual void finish() = 0;
  // The grid each linear must be solved on when the format fixes it (GGUF block types); empty:
  // the solver's own grid. Pass it as QuantizeOptions::choose_grid.
  virtual GridChooser grid_chooser() { return {}; }
};

struct GgufExportOptions;

// Output formats: "float" writes the dequantized weights as float32 in the input's own format
// (llama2.c .bin, HF safetensors directory or GGUF); "gguf" writes a llama.cpp GGUF file in the
// block types of `gguf` (cdquant/gguf_export.hpp; required for "gguf").
std::unique_ptr<ModelWriter> make_model_writer(ModelReader& source, const std::string& out_path,
                                               const std::string& format,
                                               const GgufExportOptions* gguf = nullptr);

// Writes a float32 llama2.c checkpoint (legacy header, negative vocab when the classifier is
// not tied). Rejects models llama2.c cannot express: biases, head_dim * n_heads != dim,
// rope_theta != 10000, norm_eps != 1e-5.
void write_llama2c(const Model& model, const std::string& path);

// Collects every block into an in-memory Model (tests, evaluation, the demo).
class InMemoryModelWriter : public ModelWriter {
 public:
  explicit InMemoryModelWriter(ModelReader& source);
  void write_block(int layer, const BlockWeights& block,
                   const std::vector<LinearResult>& linears) override;
  void finish() override;
  Model& model() { return model_; }

 private:
  ModelReader& source_;
  Model model_;
};

}  // namespace cdq
