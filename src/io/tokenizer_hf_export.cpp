// A SentencePiece-style vocabulary (llama2.c's tokenizer.bin, GGUF "llama") as a Hugging Face
// tokenizer.json in Llama 2's layout: BPE with byte fallback, "▁" for spaces (normalizer
// Prepend "▁" + Replace " " -> "▁"), and merges derived from the scores as transformers'
// SentencePiece converter derives them: every split (left, right) of a piece into two pieces
// of the vocabulary is a merge, ranked by the merged piece's score, highest first (ties in
// vocabulary order, the splits of one piece by the ids of their halves). Merging by that rank
// is merging the highest-scoring pair, which is what the llama2.c / SentencePiece BPE does;
// the two can differ only where two different pieces have the same score.
#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/tokenizer.hpp>
#include <nlohmann/json.hpp>
#include <unordered_map>

namespace cdq {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

struct Merge {
  float score;
  int merged;
  int left, right;
};

std::vector<std::string> spm_merges(const TokenizerVocab& v) {
  std::unordered_map<std::string_view, int> ids;
  for (int i = 0; i < static_cast<int>(v.tokens.size()); ++i)
    if (v.token_types[static_cast<size_t>(i)] == static_cast<int32_t>(TokenType::Normal))
      ids.emplace(v.tokens[static_cast<size_t>(i)], i);
  std::vector<Merge> merges;
  for (const auto& [piece, id] : ids) {
    for (size_t cut = 1; cut < piece.size(); ++cut) {
      if ((static_cast<unsigned char>(piece[cut]) & 0xC0) == 0x80) continue;  // inside a char
      const auto l = ids.find(piece.substr(0, cut)), r = ids.find(piece.substr(cut));
      if (l != ids.end() && r != ids.end())
        merges.push_back({v.scores[static_cast<size_t>(id)], id, l->second, r->second});
    }
  }
  std::sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.merged != b.merged) return a.merged < b.merged;
    return std::pair(a.left, a.right) < std::pair(b.left, b.right);
  });
  std::vector<std::string> out;
  out.reserve(merges.size());
  for (const Merge& m : merges)
    out.push_back(v.tokens[static_cast<size_t>(m.left)] + " " +
                  v.tokens[static_cast<size_t>(m.right)]);
  return out;
}

ordered_json added_token(int id, const std::string& content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

const std::string& token_at(const TokenizerVocab& v, int id) {
  return v.tokens[static_cast<size_t>(id)];
}

}  // namespace

std::string hf_tokenizer_json(const TokenizerVocab& v) {
  CDQ_CHECK(v.model == "llama",
            "tokenizer.json export: only SentencePiece-style vocabularies (model 'llama'), got "
            "'{}'",
            v.model);
  CDQ_CHECK(v.scores.size() == v.tokens.size() && v.token_types.size() == v.tokens.size(),
            "tokenizer.json export: {} tokens with {} scores and {} types", v.tokens.size(),
            v.scores.size(), v.token_types.size());
  for (const std::string& t : v.tokens)
    CDQ_CHECK(t.find(' ') == std::string::npos,
              "tokenizer.json export: piece '{}' holds a space (merges are 'left right')", t);
  ordered_json added = ordered_json::array();
  for (int id : {v.unk_id, v.bos_id, v.eos_id})
    if (id >= 0) added.push_back(added_token(id, token_at(v, id)));
  ordered_json vocab = ordered_json::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) vocab[v.tokens[i]] = static_cast<int>(i);
  const std::string space = "\xE2\x96\x81";  // ▁
  ordered_json post = nullptr;
  if (v.add_bos && v.bos_id >= 0) {
    const std::string& bos = token_at(v, v.bos_id);
    post = {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{bos, {{"id", bos}, {"ids", {v.bos_id}}, {"tokens", {bos}}}}}}};
  }
  ordered_json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", space}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", post},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", v.unk_id >= 0 ? ordered_json(token_at(v, v.unk_id)) : ordered_json()},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", spm_merges(v)}}}};
  return j.dump(2) + "\n";
}

std::string hf_tokenizer_config_json(const TokenizerVocab& v) {
  ordered_json j = {{"tokenizer_class", "LlamaTokenizerFast"},
                    {"add_bos_token", v.add_bos && v.bos_id >= 0},
                    {"add_eos_token", false},
                    {"clean_up_tokenization_spaces", false},
                    {"legacy", true},
                    {"model_max_length", 1000000000000000019884624838656.0}};
  if (v.bos_id >= 0) j["bos_token"] = token_at(v, v.bos_id);
  if (v.eos_id >= 0) j["eos_token"] = token_at(v, v.eos_id);
  if (v.unk_id >= 0) j["unk_token"] = token_at(v, v.unk_id);
  return j.dump(2) + "\n";
}

}  // namespace cdq
