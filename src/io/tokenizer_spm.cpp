#include "io/tokenizer_spm.hpp"

#include <cdquant/error.hpp>
#include <algorithm>
#include <cmath>

#include "io/tokenizer_bpe.hpp"
#include "io/tokenizer_text.hpp"

namespace cdq::tok {

namespace {

void check_vocab(const TokenizerVocab& v) {
  const size_t n = v.tokens.size();
  CDQ_CHECK(v.model == "llama", "SentencePiece-style tokenizer: model is '{}', expected 'llama'",
            v.model);
  CDQ_CHECK(n > 0, "tokenizer vocabulary is empty");
  CDQ_CHECK(v.scores.size() == n, "tokenizer has {} tokens but {} scores", n, v.scores.size());
  CDQ_CHECK(v.token_types.size() == n, "tokenizer has {} tokens but {} token types", n,
            v.token_types.size());
  for (size_t i = 0; i < n; ++i) {
    CDQ_CHECK(v.token_types[i] >= 1 && v.token_types[i] <= 6, "token {} has invalid type {}", i,
              v.token_types[i]);
    CDQ_CHECK(std::isfinite(v.scores[i]), "token {} has a non-finite score", i);
  }
  for (int id : {v.bos_id, v.eos_id, v.unk_id})
    CDQ_CHECK(id >= -1 && id < static_cast<int>(n), "special token id {} is out of range [0, {})",
              id, n);
}

}  // namespace

SpmTokenizer::SpmTokenizer(TokenizerVocab vocab, std::string kind)
    : vocab_(std::move(vocab)), kind_(std::move(kind)) {
  check_vocab(vocab_);
  bos_id = vocab_.bos_id;
  eos_id = vocab_.eos_id;
  const int n = vocab_size();
  surface_.reserve(n);
  for (const std::string& t : vocab_.tokens) surface_.push_back(replace_all(t, kSpaceSymbol, " "));
  byte_ids_.assign(256, -1);
  for (int i = 0; i < n; ++i) {
    const auto type = static_cast<TokenType>(vocab_.token_types[i]);
    if (type == TokenType::Normal || type == TokenType::UserDefined) {
      lookup_.emplace(surface_[i], i);  // duplicates: the first id wins
      max_piece_bytes_ = std::max(max_piece_bytes_, surface_[i].size());
    } else if (type == TokenType::Byte) {
      const int b = parse_byte_piece(vocab_.tokens[i]);
      CDQ_CHECK(b >= 0, "token {} has the byte type but piece '{}' is not <0xXX>", i,
                vocab_.tokens[i]);
      if (byte_ids_[b] < 0) byte_ids_[b] = i;
    }
  }
  has_all_bytes_ = true;
  for (int id : byte_ids_) has_all_bytes_ = has_all_bytes_ && id >= 0;
}

std::vector<int> SpmTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int> out;
  if (add_bos && bos_id >= 0) out.push_back(bos_id);
  if (text.empty()) return out;
  std::string s;
  s.reserve(text.size() + 1);
  s += ' ';  // dummy prefix
  s += text;
  CDQ_CHECK(s.size() < UINT32_MAX, "text too long to tokenize ({} bytes)", s.size());

  std::vector<BpeSymbol> syms;
  syms.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const int len = utf8_len(s, i);
    auto it = lookup_.find(std::string_view(s).substr(i, len));
    syms.push_back({it == lookup_.end() ? -1 : it->second, static_cast<uint32_t>(i),
                    static_cast<uint32_t>(i + len)});
    i += len;
  }
  const std::string_view sv(s);
  bpe_merge(syms, [&](const BpeSymbol& l, const BpeSymbol& r) -> std::optional<BpeMerge> {
    if (r.end - l.begin > max_piece_bytes_) return std::nullopt;
    auto it = lookup_.find(sv.substr(l.begin, r.end - l.begin));
    if (it == lookup_.end()) return std::nullopt;
    return BpeMerge{-static_cast<double>(vocab_.scores[it->second]), it->second};
  });

  bool prev_unk = false;
  for (const BpeSymbol& sym : syms) {
    if (sym.id >= 0) {
      out.push_back(sym.id);
      prev_unk = false;
    } else if (has_all_bytes_) {
      for (uint32_t k = sym.begin; k < sym.end; ++k)
        out.push_back(byte_ids_[static_cast<unsigned char>(s[k])]);
      prev_unk = false;
    } else {
      CDQ_CHECK(vocab_.unk_id >= 0,
                "cannot tokenize '{}': not in the vocabulary, which has neither byte pieces nor "
                "<unk>",
                sv.substr(sym.begin, sym.end - sym.begin));
      if (!prev_unk) out.push_back(vocab_.unk_id);
      prev_unk = true;
    }
  }
  return out;
}

std::string SpmTokenizer::decode(std::span<const int> ids) const {
  std::string out;
  bool first = true;  // the first piece shown carries the dummy-prefix space
  for (int id : ids) {
    CDQ_CHECK(id >= 0 && id < vocab_size(), "token id {} is out of range [0, {})", id,
              vocab_size());
    const auto type = static_cast<TokenType>(vocab_.token_types[id]);
    if (type == TokenType::Control || type == TokenType::Unused) continue;
    if (type == TokenType::Unknown) {
      out += kUnkSurface;
    } else if (type == TokenType::Byte) {
      out += static_cast<char>(parse_byte_piece(vocab_.tokens[id]));
    } else {
      std::string_view piece = surface_[id];
      if (first && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
      out += piece;
    }
    first = false;
  }
  return out;
}

}  // namespace cdq::tok
