// Every tensor a model reader returns checked finite: a NaN or Inf in an embedding or a norm
// passes through quantization untouched and makes perplexity "nan" and generation garbage, so
// open_model wraps its readers in this check, which names the file and the tensor.
#pragma once

#include <cdquant/model.hpp>
#include <memory>
#include <span>
#include <string>

namespace cdq {

// Throws Error "{path}: tensor {name} has a non-finite value (... at [r, c])" for the first
// NaN or Inf of values (a [rows, cols] tensor stored row-major; cols 0: a vector).
void check_finite_tensor(std::span<const float> values, int64_t cols, const std::string& name,
                         const std::string& path);

// A reader that checks every tensor `inner` returns (internal names: tok_embeddings,
// blocks.3.wq, blocks.3.attn_norm, final_norm, output).
std::unique_ptr<ModelReader> finite_checked(std::unique_ptr<ModelReader> inner, std::string path);

}  // namespace cdq
