// finite_checked: the decorator open_model puts around every reader.
#include "model/finite_check.hpp"

#include <cdquant/error.hpp>
#include <cmath>

namespace cdq {

namespace {

const char* const kLinearTensorNames[] = {"wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"};

class FiniteCheckedReader final : public ModelReader {
 public:
  FiniteCheckedReader(std::unique_ptr<ModelReader> inner, std::string path)
      : inner_(std::move(inner)), path_(std::move(path)) {}

  const ModelConfig& config() const override { return inner_->config(); }
  std::string format() const override { return inner_->format(); }

  Matrix read_embeddings() override {
    Matrix m = inner_->read_embeddings();
    check_finite_tensor(m.span(), m.cols, "tok_embeddings", path_);
    return m;
  }
  BlockWeights read_block(int layer) override {
    BlockWeights b = inner_->read_block(layer);
    const std::string p = fmt::format("blocks.{}.", layer);
    check_finite_tensor(b.attn_norm, 0, p + "attn_norm", path_);
    check_finite_tensor(b.ffn_norm, 0, p + "ffn_norm", path_);
    for (Linear l : kAllLinears) {
      const Matrix& w = b.linear(l);
      check_finite_tensor(w.span(), w.cols, p + kLinearTensorNames[static_cast<int>(l)], path_);
    }
    check_finite_tensor(b.bq, 0, p + "bq", path_);
    check_finite_tensor(b.bk, 0, p + "bk", path_);
    check_finite_tensor(b.bv, 0, p + "bv", path_);
    return b;
  }
  std::vector<float> read_final_norm() override {
    std::vector<float> v = inner_->read_final_norm();
    check_finite_tensor(v, 0, "final_norm", path_);
    return v;
  }
  Matrix read_output() override {
    Matrix m = inner_->read_output();
    check_finite_tensor(m.span(), m.cols, "output", path_);
    return m;
  }

 private:
  std::unique_ptr<ModelReader> inner_;
  std::string path_;
};

}  // namespace

void check_finite_tensor(std::span<const float> values, int64_t cols, const std::string& name,
                         const std::string& path) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isfinite(values[i])) continue;
    const std::string at = cols > 0 ? fmt::format("[{}, {}]", i / static_cast<size_t>(cols),
                                                  i % static_cast<size_t>(cols))
                                    : fmt::format("[{}]", i);
    fail("{}: tensor {} has a non-finite value ({} at {}): the checkpoint is damaged", path, name,
         values[i], at);
  }
}

std::unique_ptr<ModelReader> finite_checked(std::unique_ptr<ModelReader> inner, std::string path) {
  return std::make_unique<FiniteCheckedReader>(std::move(inner), std::move(path));
}

}  // namespace cdq
