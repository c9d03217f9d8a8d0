#include "io/tokenizer_sentencepiece.hpp"

#include <sentencepiece_processor.h>

#include <cdquant/error.hpp>

namespace cdq::tok {

namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) {
    const auto status = sp_.Load(path);
    CDQ_CHECK(status.ok(), "cannot load SentencePiece model '{}': {}", path, status.ToString());
    CDQ_CHECK(sp_.GetPieceSize() > 0, "SentencePiece model '{}' has no pieces", path);
    bos_id = sp_.bos_id();
    eos_id = sp_.eos_id();
  }

  std::vector<int> encode(std::string_view text, bool add_bos) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    CDQ_CHECK(status.ok(), "SentencePiece encode failed: {}", status.ToString());
    if (add_bos && bos_id >= 0) ids.insert(ids.begin(), bos_id);
    return ids;
  }

  std::string decode(std::span<const int> ids) const override {
    for (int id : ids)
      CDQ_CHECK(id >= 0 && id < vocab_size(), "token id {} is out of range [0, {})", id,
                vocab_size());
    std::string text;
    const auto status = sp_.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
    CDQ_CHECK(status.ok(), "SentencePiece decode failed: {}", status.ToString());
    return text;
  }

  int vocab_size() const override { return sp_.GetPieceSize(); }

  // Scores and types as SentencePiece reports them. tokenizer_from_vocab() of this runs the
  // score-merging BPE, which equals SentencePiece on BPE models up to its normalizer.
  TokenizerVocab vocab() const override {
    TokenizerVocab v;
    v.model = "llama";
    const int n = vocab_size();
    for (int i = 0; i < n; ++i) {
      v.tokens.push_back(sp_.IdToPiece(i));
      v.scores.push_back(sp_.GetScore(i));
      TokenType type = TokenType::Normal;
      if (sp_.IsUnknown(i))
        type = TokenType::Unknown;
      else if (sp_.IsControl(i))
        type = TokenType::Control;
      else if (sp_.IsByte(i))
        type = TokenType::Byte;
      else if (sp_.IsUnused(i))
        type = TokenType::Unused;
      v.token_types.push_back(static_cast<int32_t>(type));
    }
    v.bos_id = bos_id;
    v.eos_id = eos_id;
    v.unk_id = sp_.unk_id();
    v.add_bos = true;
    return v;
  }

  std::string kind() const override { return "sentencepiece"; }

 private:
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

}  // namespace cdq::tok
