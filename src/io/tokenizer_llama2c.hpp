// The llama2.c tokenizer .bin: int32 max_token_length, then per token f32 score, int32 length,
// bytes. Spaces are stored as ' ', bos/eos as "\n<s>\n" / "\n</s>\n" (ids 1 and 2 by
// llama2.c's convention), unknown as "<unk>" (id 0), bytes as "<0xXX>".
#pragma once

#include <cdquant/tokenizer.hpp>
#include <memory>
#include <string>
#include <string_view>

namespace cdq::tok {

// Parses the file's bytes into a GGUF-style "llama" vocabulary (spaces become "▁", bos/eos
// become "<s>" / "</s>" with the control type). `what` names the source in errors.
TokenizerVocab parse_llama2c_tokenizer(std::string_view bytes, const std::string& what);

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path);

}  // namespace cdq::tok
