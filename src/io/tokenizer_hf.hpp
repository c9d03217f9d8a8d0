// Hugging Face BPE tokenizers (tokenizer.json with model.type "BPE"), merged by merge rank:
//  - byte-level (GPT-2, Llama 3, Qwen2): text split by the pre-tokenizer regex, each chunk
//    mapped to the bytes-to-unicode alphabet, then BPE;
//  - SentencePiece-style (Llama 2, TinyLlama): spaces become "▁", "▁" is prepended, BPE over
//    the whole text with <0xXX> byte fallback.
// Added tokens are matched verbatim (leftmost, longest) before anything else.
// Limits: only the GPT-2 / Llama 3 / Qwen2 split regexes are known (others are rejected);
// an NFC normalizer is accepted but not applied (text is taken to be NFC); the added tokens'
// lstrip / rstrip / single_word / normalized flags are ignored; decode drops control tokens
// (HF shows them unless skip_special_tokens); byte-fallback pieces and unknown characters
// never take part in merges (HF could merge byte pieces if a merge listed them; none do).
#pragma once

#include <array>
#include <cdquant/tokenizer.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "io/tokenizer_pretok.hpp"

namespace cdq::tok {

enum class Prepend {
  None,
  Always,          // normalizer Prepend: "▁" in front of every non-empty segment
  IfMissing,       // Metaspace prepend_scheme "always": unless it already starts with "▁"
  FirstIfMissing,  // Metaspace prepend_scheme "first": only at the start of the text
};

struct HfBpeConfig {
  bool byte_level = false;  // ByteLevel pre-tokenizer (and decoder)
  SplitRule split = SplitRule::None;
  bool add_prefix_space = false;  // ByteLevel: ' ' in front of a segment not starting with one
  bool replace_space = false;     // ' ' -> "▁" (Replace normalizer or Metaspace)
  Prepend prepend = Prepend::None;
  bool split_on_space_symbol = false;  // Metaspace split: words start at each "▁"
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;  // a chunk that is itself a token is not merged (Llama 3)
};

struct HfBpeModel {
  std::vector<std::string> tokens;          // by id
  std::vector<int32_t> token_types;         // TokenType by id
  std::vector<std::pair<int, int>> merges;  // by rank: (left id, right id)
  std::vector<int> added;                   // ids matched verbatim in the text
  int bos_id = -1, eos_id = -1, unk_id = -1;
  bool add_bos = false;
};

class HfBpeTokenizer : public Tokenizer {
 public:
  HfBpeTokenizer(HfBpeModel model, HfBpeConfig config, std::string kind);

  std::vector<int> encode(std::string_view text, bool add_bos) const override;
  std::string decode(std::span<const int> ids) const override;
  int vocab_size() const override { return static_cast<int>(m_.tokens.size()); }
  TokenizerVocab vocab() const override;
  std::string kind() const override { return kind_; }

 private:
  void encode_segment(std::string_view seg, bool at_start, std::vector<int>& out) const;
  void encode_word(std::string_view word, std::vector<int>& out) const;
  // Length of the added token matching at text[pos] (and its id), 0 if none.
  size_t match_added(std::string_view text, size_t pos, int& id) const;

  HfBpeModel m_;
  HfBpeConfig cfg_;
  std::string kind_;
  std::unordered_map<std::string_view, int> lookup_;
  std::unordered_map<uint64_t, std::pair<int, int>> merge_rank_;  // (l << 32 | r) -> (rank, id)
  std::array<std::vector<int>, 256> added_by_first_byte_;         // longest first
  std::vector<bool> is_added_;
  std::vector<int> byte_ids_;  // [256]
};

// Parses tokenizer.json text (and optionally tokenizer_config.json text, for bos/eos).
std::unique_ptr<Tokenizer> parse_hf_tokenizer(std::string_view tokenizer_json,
                                              std::string_view config_json,
                                              const std::string& what);
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path);

// GGUF "gpt2" metadata -> byte-level tokenizer.
std::unique_ptr<Tokenizer> hf_tokenizer_from_gpt2_vocab(const TokenizerVocab& vocab);

}  // namespace cdq::tok
