// GGUF files as a ModelReader (see model_gguf.cpp for the supported architectures).
#pragma once

#include <cdquant/model.hpp>
#include <memory>
#include <string>

namespace cdq {

std::unique_ptr<ModelReader> open_gguf_model(const std::string& path);

}  // namespace cdq
