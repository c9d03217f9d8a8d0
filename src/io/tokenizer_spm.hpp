// SentencePiece-style BPE by piece scores: the llama2.c tokenizer and GGUF "llama" vocabularies.
#pragma once

#include <cdquant/tokenizer.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cdq::tok {

// Encoding (llama2.c run.c / llama.cpp SPM): put a dummy-prefix space in front of non-empty
// text, split it into UTF-8 characters, then repeatedly merge the adjacent pair whose
// concatenation is a normal (or user-defined) piece with the highest score, leftmost first.
// Characters left outside the vocabulary become their <0xXX> byte pieces when the vocabulary
// has them all, else <unk> (a run of unknown characters gives one <unk>, as SentencePiece).
// The whole text is merged at once (O(n log n)), so no chunking changes the result.
// Not done (unlike libsentencepiece): collapsing repeated spaces, normalization rules.
class SpmTokenizer : public Tokenizer {
 public:
  // vocab.model must be "llama"; pieces use "▁" for a space.
  SpmTokenizer(TokenizerVocab vocab, std::string kind);

  std::vector<int> encode(std::string_view text, bool add_bos) const override;
  std::string decode(std::span<const int> ids) const override;
  int vocab_size() const override { return static_cast<int>(vocab_.tokens.size()); }
  TokenizerVocab vocab() const override { return vocab_; }
  std::string kind() const override { return kind_; }

 private:
  TokenizerVocab vocab_;
  std::string kind_;
  std::vector<std::string> surface_;                  // pieces with "▁" replaced by ' '
  std::unordered_map<std::string_view, int> lookup_;  // mergeable pieces by surface text
  std::vector<int> byte_ids_;                         // [256]; -1 where missing
  bool has_all_bytes_ = false;
  size_t max_piece_bytes_ = 0;  // longer concatenations cannot be pieces: skip the lookup
};

}  // namespace cdq::tok
