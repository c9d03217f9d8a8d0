#include <cdquant/model_writer.hpp>
#include <cdquant/output_file.hpp>

namespace cdq {

namespace {

// Small models in llama2.c format are written whole (its layout stacks each tensor kind over
// all layers, so blocks cannot simply be appended). The output file is created at once, so an
// unwritable location fails before the run, not after it.
class Llama2cFloatWriter : public InMemoryModelWriter {
 public:
  Llama2cFloatWriter(ModelReader& source, const std::string& path)
      : InMemoryModelWriter(source), out_(path) {}
  void finish() override {
    InMemoryModelWriter::finish();
    write_llama2c(model(), out_);
  }

 private:
  OutputFile out_;
};

}  // namespace

InMemoryModelWriter::InMemoryModelWriter(ModelReader& source) : source_(source) {
  model_.config = source.config();
  model_.blocks.resize(static_cast<size_t>(model_.config.n_layers));
}

void InMemoryModelWriter::write_block(int layer, const BlockWeights& block,
                                      const std::vector<LinearResult>&) {
  model_.blocks.at(static_cast<size_t>(layer)) = block;
}

void InMemoryModelWriter::finish() {
  model_.tok_embeddings = source_.read_embeddings();
  model_.final_norm = source_.read_final_norm();
  model_.output = source_.read_output();
  check_model(model_);
}

std::unique_ptr<ModelWriter> make_llama2c_float_writer(ModelReader& source,
                                                       const std::string& out_path) {
  return std::make_unique<Llama2cFloatWriter>(source, out_path);
}

}  // namespace cdq
