// Weight transforms: a per-linear change of basis applied before the solver sees the layer
// problem. With an orthogonal R [d_in, d_in] the solver quantizes
//     W' = W R^T [d_out, d_in]  against  H' = R H R^T [d_in, d_in],
// and since (Q' - W') H' (Q' - W')^T = (Q' R - W) H (Q' R - W)^T, the layer objective of the
// codes in the rotated basis is the objective of Q = Q' R in the model's own basis. Rotations
// spread outliers so that a uniform grid fits better (QuIP#, QuaRot, HIGGS); the identity is
// the default. What an output format must do with the result is export_needs():
//   Nothing: the codes are the model's own weights (identity);
//   Undo:    the dequantized weights go back through undo() (float outputs fold R away);
//            a packed format stores codes in the rotated basis, so it could only hold them
//            with an engine that applies R online at inference, and refuses them.
#pragma once

#include <cdquant/matrix.hpp>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace cdq {

enum class TransformExport { Nothing, Undo };

class LinearTransform {
 public:
  virtual ~LinearTransform() = default;
  virtual std::string name() const = 0;
  virtual TransformExport export_needs() const = 0;
  // W [d_out, d_in] -> W R^T and H [d_in, d_in] -> R H R^T, in place.
  virtual void apply(Matrix& w, Matrix& h) const = 0;
  // Q' [d_out, d_in] (the rotated basis) -> Q' R (the model's basis), in place.
  virtual void undo(Matrix& q) const = 0;
};

// R = I: apply and undo leave their arguments untouched.
class IdentityTransform final : public LinearTransform {
 public:
  std::string name() const override { return "identity"; }
  TransformExport export_needs() const override { return TransformExport::Nothing; }
  void apply(Matrix&, Matrix&) const override {}
  void undo(Matrix&) const override {}
};

// A dense orthogonal R [d_in, d_in] (checked orthogonal to n * eps at construction). The
// reference every fast rotation is tested against.
class DenseOrthogonalTransform final : public LinearTransform {
 public:
  DenseOrthogonalTransform(Matrix r, std::string name);
  std::string name() const override { return name_; }
  TransformExport export_needs() const override { return TransformExport::Undo; }
  void apply(Matrix& w, Matrix& h) const override;
  void undo(Matrix& q) const override;
  const Matrix& matrix() const { return r_; }

 private:
  Matrix r_;  // [d_in, d_in]
  std::string name_;
};

// The transform of one linear, by block index, the linear's index within its block and its
// input width d_in. Called once per linear as the quantizer reaches it.
using TransformFactory =
    std::function<std::unique_ptr<LinearTransform>(int layer, int linear, int64_t d_in)>;

// One registry row per transform that `--transform NAME` can name.
struct TransformInfo {
  const char* name;
  const char* description;
  TransformFactory (*make)();
};

std::span<const TransformInfo> transform_registry();
// The factory of a registered transform; throws Error listing the known names.
TransformFactory make_transform(std::string_view name);

}  // namespace cdq
