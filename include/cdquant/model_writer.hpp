// Output of the quantization pipeline: receives the model block by block, in the order the
// quantizer finishes them, and writes a checkpoint.
#pragma once

#include <cdquant/model.hpp>
#include <cdquant/quantize.hpp>
#include <memory>
#include <string>
#include <vector>

namespace cdq {

class OutputFile;  // cdquant/output_file.hpp

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
  // What the user should know about the output before the run (e.g. GGUF type fallbacks).
  virtual std::vector<std::string> notes() const { return {}; }
};

// The float llama2.c writer: the whole model is kept until finish() (llama2.c stacks each tensor
// kind over all layers, so blocks cannot simply be appended).
std::unique_ptr<ModelWriter> make_llama2c_float_writer(ModelReader& source,
                                                       const std::string& out_path);

// Writes a float32 llama2.c checkpoint (legacy header, negative vocab when the classifier is
// not tied). Rejects models llama2.c cannot express: biases, head_dim * n_heads != dim,
// rope_theta != 10000, norm_eps != 1e-5.
void write_llama2c(const Model& model, const std::string& path);
// The same into an output created earlier (commits it).
void write_llama2c(const Model& model, OutputFile& out);

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
