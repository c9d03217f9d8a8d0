// SentencePiece .model files through libsentencepiece: encodes and decodes exactly as
// SentencePiece does (its normalizer included: e.g. repeated spaces collapse).
#pragma once

#include <cdquant/tokenizer.hpp>
#include <memory>
#include <string>

namespace cdq::tok {

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path);

}  // namespace cdq::tok
