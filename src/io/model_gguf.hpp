// The GGUF ModelReader lives with the other GGUF code (src/io/gguf_model.cpp, owned by the
// GGUF side); open_model() only needs its entry point.
#pragma once

#include <cdquant/model.hpp>

#include <memory>
#include <string>

namespace cdq {

std::unique_ptr<ModelReader> open_gguf_model(const std::string& path);

}  // namespace cdq
