#include "io/tokenizer_hf.hpp"

#include <algorithm>
#include <cdquant/error.hpp>

#include "io/tokenizer_bpe.hpp"
#include "io/tokenizer_text.hpp"

namespace cdq::tok {

namespace {

uint64_t pair_key(int l, int r) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
}

}  // namespace

HfBpeTokenizer::HfBpeTokenizer(HfBpeModel model, HfBpeConfig config, std::string kind)
    : m_(std::move(model)), cfg_(config), kind_(std::move(kind)) {
  const int n = vocab_size();
  CDQ_CHECK(n > 0, "{}: tokenizer vocabulary is empty", kind_);
  CDQ_CHECK(m_.token_types.size() == m_.tokens.size(), "{}: {} tokens but {} token types", kind_, n,
            m_.token_types.size());
  for (int id : {m_.bos_id, m_.eos_id, m_.unk_id})
    CDQ_CHECK(id >= -1 && id < n, "{}: special token id {} is out of range [0, {})", kind_, id, n);
  bos_id = m_.bos_id;
  eos_id = m_.eos_id;
  is_added_.assign(n, false);
  for (int id : m_.added) {
    CDQ_CHECK(id >= 0 && id < n, "{}: added token id {} is out of range", kind_, id);
    CDQ_CHECK(!m_.tokens[id].empty(), "{}: added token {} is empty", kind_, id);
    is_added_[id] = true;
    added_by_first_byte_[static_cast<unsigned char>(m_.tokens[id][0])].push_back(id);
  }
  for (auto& list : added_by_first_byte_)
    std::stable_sort(list.begin(), list.end(),
                     [&](int a, int b) { return m_.tokens[a].size() > m_.tokens[b].size(); });
  byte_ids_.assign(256, -1);
  for (int i = 0; i < n; ++i) {
    lookup_.emplace(m_.tokens[i], i);  // duplicates: the first id wins
    if (m_.token_types[i] == static_cast<int32_t>(TokenType::Byte)) {
      const int b = parse_byte_piece(m_.tokens[i]);
      if (b >= 0 && byte_ids_[b] < 0) byte_ids_[b] = i;
    }
  }
  for (size_t rank = 0; rank < m_.merges.size(); ++rank) {
    const auto [l, r] = m_.merges[rank];
    CDQ_CHECK(l >= 0 && l < n && r >= 0 && r < n, "{}: merge {} refers to ids out of range", kind_,
              rank);
    auto it = lookup_.find(m_.tokens[l] + m_.tokens[r]);
    CDQ_CHECK(it != lookup_.end(), "{}: merge {} ('{} {}') gives '{}{}', which is not a token",
              kind_, rank, m_.tokens[l], m_.tokens[r], m_.tokens[l], m_.tokens[r]);
    merge_rank_.emplace(pair_key(l, r), std::pair<int, int>(static_cast<int>(rank), it->second));
  }
}

size_t HfBpeTokenizer::match_added(std::string_view text, size_t pos, int& id) const {
  for (int cand : added_by_first_byte_[static_cast<unsigned char>(text[pos])]) {
    const std::string& t = m_.tokens[cand];
    if (text.compare(pos, t.size(), t) == 0) {
      id = cand;
      return t.size();
    }
  }
  return 0;
}

std::vector<int> HfBpeTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int> out;
  if (add_bos && bos_id >= 0) out.push_back(bos_id);
  size_t seg_begin = 0;
  for (size_t pos = 0; pos < text.size();) {
    int id = -1;
    const size_t len = match_added(text, pos, id);
    if (len == 0) {
      ++pos;
      continue;
    }
    encode_segment(text.substr(seg_begin, pos - seg_begin), seg_begin == 0, out);
    out.push_back(id);
    pos += len;
    seg_begin = pos;
  }
  encode_segment(text.substr(seg_begin), seg_begin == 0, out);
  return out;
}

void HfBpeTokenizer::encode_segment(std::string_view seg, bool at_start,
                                    std::vector<int>& out) const {
  if (seg.empty()) return;
  if (cfg_.byte_level) {
    std::string prefixed;
    if (cfg_.add_prefix_space && seg[0] != ' ') {
      prefixed.reserve(seg.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(seg);
      seg = prefixed;
    }
    for (std::string_view chunk : pretokenize(seg, cfg_.split))
      encode_word(bytes_to_byte_level(chunk), out);
    return;
  }
  std::string norm = cfg_.replace_space ? replace_all(seg, " ", kSpaceSymbol) : std::string(seg);
  const bool starts = norm.starts_with(kSpaceSymbol);
  if (cfg_.prepend == Prepend::Always || (cfg_.prepend == Prepend::IfMissing && !starts) ||
      (cfg_.prepend == Prepend::FirstIfMissing && !starts && at_start))
    norm.insert(0, kSpaceSymbol);
  if (!cfg_.split_on_space_symbol) {
    encode_word(norm, out);
    return;
  }
  const std::string_view sv(norm);
  size_t begin = 0;
  for (size_t hit = sv.find(kSpaceSymbol, 1); hit != std::string_view::npos;
       hit = sv.find(kSpaceSymbol, hit + 1)) {
    encode_word(sv.substr(begin, hit - begin), out);
    begin = hit;
  }
  encode_word(sv.substr(begin), out);
}

void HfBpeTokenizer::encode_word(std::string_view word, std::vector<int>& out) const {
  if (word.empty()) return;
  if (cfg_.ignore_merges) {
    auto it = lookup_.find(word);
    if (it != lookup_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  CDQ_CHECK(word.size() < UINT32_MAX, "text too long to tokenize ({} bytes)", word.size());
  std::vector<BpeSymbol> syms;
  syms.reserve(word.size());
  for (size_t i = 0; i < word.size();) {
    const int len = utf8_len(word, i);
    auto it = lookup_.find(word.substr(i, len));
    syms.push_back({it == lookup_.end() ? -1 : it->second, static_cast<uint32_t>(i),
                    static_cast<uint32_t>(i + len)});
    i += len;
  }
  bpe_merge(syms, [&](const BpeSymbol& l, const BpeSymbol& r) -> std::optional<BpeMerge> {
    if (l.id < 0 || r.id < 0) return std::nullopt;
    auto it = merge_rank_.find(pair_key(l.id, r.id));
    if (it == merge_rank_.end()) return std::nullopt;
    return BpeMerge{static_cast<double>(it->second.first), it->second.second};
  });
  bool prev_unk = false;
  for (const BpeSymbol& sym : syms) {
    if (sym.id >= 0) {
      out.push_back(sym.id);
      prev_unk = false;
      continue;
    }
    const std::string_view piece = word.substr(sym.begin, sym.end - sym.begin);
    if (cfg_.byte_fallback && std::all_of(piece.begin(), piece.end(), [&](char c) {
          return byte_ids_[static_cast<unsigned char>(c)] >= 0;
        })) {
      for (char c : piece) out.push_back(byte_ids_[static_cast<unsigned char>(c)]);
      prev_unk = false;
      continue;
    }
    CDQ_CHECK(m_.unk_id >= 0, "cannot tokenize '{}': not in the vocabulary and no unk token",
              cfg_.byte_level ? byte_level_to_bytes(piece) : std::string(piece));
    if (!(cfg_.fuse_unk && prev_unk)) out.push_back(m_.unk_id);
    prev_unk = true;
  }
}

std::string HfBpeTokenizer::decode(std::span<const int> ids) const {
  std::string out;
  std::string pending;  // byte-level text not yet mapped back to bytes
  bool first = true;    // the first piece shown carries the prepended "▁"
  auto flush = [&] {
    out += byte_level_to_bytes(pending);
    pending.clear();
  };
  for (int id : ids) {
    CDQ_CHECK(id >= 0 && id < vocab_size(), "token id {} is out of range [0, {})", id,
              vocab_size());
    const auto type = static_cast<TokenType>(m_.token_types[id]);
    if (type == TokenType::Control || type == TokenType::Unused) continue;
    const bool is_first = first;
    first = false;
    if (type == TokenType::Unknown) {
      flush();
      out += kUnkSurface;
    } else if (cfg_.byte_level) {
      if (is_added_[id]) {
        flush();
        out += m_.tokens[id];
      } else {
        pending += m_.tokens[id];
      }
    } else if (type == TokenType::Byte) {
      out += static_cast<char>(parse_byte_piece(m_.tokens[id]));
    } else {
      // HF's decoder maps "▁" to " " in every token it shows, added ones included (Gemma 3's
      // added whitespace-run tokens "▁▁", "▁▁▁", ...).
      std::string piece = replace_all(m_.tokens[id], kSpaceSymbol, " ");
      if (is_first && cfg_.prepend != Prepend::None && piece.starts_with(' ')) piece.erase(0, 1);
      out += piece;
    }
  }
  flush();
  return out;
}

TokenizerVocab HfBpeTokenizer::vocab() const {
  TokenizerVocab v;
  const int n = vocab_size();
  v.tokens = m_.tokens;
  v.token_types = m_.token_types;
  v.bos_id = m_.bos_id;
  v.eos_id = m_.eos_id;
  v.unk_id = m_.unk_id;
  v.add_bos = m_.add_bos;
  if (cfg_.byte_level) {
    v.model = "gpt2";
    v.pre = std::string(split_rule_gguf_name(cfg_.split));
    v.merges.reserve(m_.merges.size());
    for (auto [l, r] : m_.merges) v.merges.push_back(m_.tokens[l] + " " + m_.tokens[r]);
    return v;
  }
  // SentencePiece style: score = -rank of the first merge producing the token, so merging by
  // score replays the merge order; tokens no merge produces rank after all merges.
  v.model = "llama";
  const double n_merges = static_cast<double>(m_.merges.size());
  v.scores.resize(n);
  for (int i = 0; i < n; ++i) v.scores[i] = static_cast<float>(-(n_merges + i));
  std::vector<bool> produced(n, false);
  for (size_t rank = 0; rank < m_.merges.size(); ++rank) {
    const int id = merge_rank_.at(pair_key(m_.merges[rank].first, m_.merges[rank].second)).second;
    if (!produced[id]) v.scores[id] = -static_cast<float>(rank);
    produced[id] = true;
  }
  return v;
}

}  // namespace cdq::tok
