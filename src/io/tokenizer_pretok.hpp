// Pre-tokenization for byte-level BPE: the split rules of the GPT-2, Llama 3 and Qwen2 regexes,
// written out by hand (std::regex has no Unicode classes), and GPT-2's bytes-to-unicode map.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cdq::tok {

bool is_letter(uint32_t cp);      // \p{L}
bool is_number(uint32_t cp);      // \p{N}
bool is_whitespace(uint32_t cp);  // \s (Unicode White_Space)

enum class SplitRule {
  None,    // the text is one chunk
  Gpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  Llama3,  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
           //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  Qwen2,   // as Llama3 but \p{N} (single digits)
};

// The regex source (as written in tokenizer.json) of each rule, and back (None if unknown).
std::string_view split_rule_regex(SplitRule rule);
SplitRule split_rule_from_regex(std::string_view regex);
// GGUF tokenizer.ggml.pre names: "default", "llama-bpe", "qwen2" (and back; throws if unknown).
std::string_view split_rule_gguf_name(SplitRule rule);
SplitRule split_rule_from_gguf_name(std::string_view name);

// The chunks of `text` (views into it, in order, covering it) that the regex finds.
// Invalid UTF-8 bytes count as punctuation.
std::vector<std::string_view> pretokenize(std::string_view text, SplitRule rule);

// GPT-2 bytes_to_unicode: printable bytes map to themselves, the others to U+0100 + k.
const std::array<uint32_t, 256>& byte_to_unicode();
int unicode_to_byte(uint32_t cp);  // inverse; -1 when cp is not in the map
// The byte-level alphabet string of raw bytes, and back (chars outside the alphabet are kept).
std::string bytes_to_byte_level(std::string_view bytes);
std::string byte_level_to_bytes(std::string_view text);

}  // namespace cdq::tok
