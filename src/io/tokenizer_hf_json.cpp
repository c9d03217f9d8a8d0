// tokenizer.json -> HfBpeTokenizer, and GGUF "gpt2" metadata -> HfBpeTokenizer.
#include <cdquant/error.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/json_limits.hpp"
#include "io/tokenizer_hf.hpp"
#include "io/tokenizer_text.hpp"

namespace cdq::tok {

namespace {

using nlohmann::json;

std::string json_type(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : std::string("?");
}

// Real tokenizers nest "Sequence" once or twice; the limit keeps the recursion below shallow
// whatever the file says (the whole document's nesting is bounded too: kTokenizerJsonLimits).
constexpr int kMaxSequenceDepth = 8;
const JsonLimits kTokenizerJsonLimits{.max_depth = 64};

// The steps of a normalizer / pre-tokenizer / post-processor, flattening "Sequence".
void collect_steps(const json& j, const char* list_key, const std::string& what, int depth,
                   std::vector<const json*>& out) {
  if (j.is_null()) return;
  if (json_type(j) != "Sequence") {
    out.push_back(&j);
    return;
  }
  CDQ_CHECK(depth < kMaxSequenceDepth, "{}: '{}' Sequence nested deeper than {} levels", what,
            list_key, kMaxSequenceDepth);
  for (const json& s : j.at(list_key)) collect_steps(s, list_key, what, depth + 1, out);
}

std::vector<const json*> steps(const json& j, const char* list_key, const std::string& what) {
  std::vector<const json*> out;
  collect_steps(j, list_key, what, 0, out);
  return out;
}

// A token id: an integer in [0, 2^24) (a float or a huge value would not convert to int).
int token_id(const json& id, const std::string& piece, const std::string& what) {
  constexpr int64_t kMaxId = int64_t{1} << 24;
  CDQ_CHECK(id.is_number_integer(), "{}: token '{}' has id {}, not an integer", what, piece,
            id.dump());
  const bool in_range = id.is_number_unsigned()
                            ? id.get<uint64_t>() < uint64_t{kMaxId}
                            : id.get<int64_t>() >= 0 && id.get<int64_t>() < kMaxId;
  CDQ_CHECK(in_range, "{}: token '{}' has id {} out of range [0, {})", what, piece, id.dump(),
            kMaxId);
  return static_cast<int>(id.get<int64_t>());
}

void apply_normalizer(const json& norm, HfBpeConfig& cfg, const std::string& what) {
  for (const json* step : steps(norm, "normalizers", what)) {
    const json& s = *step;
    const std::string type = json_type(s);
    if (type == "Prepend") {
      CDQ_CHECK(s.value("prepend", "") == kSpaceSymbol,
                "{}: Prepend normalizer with '{}' is not supported (only \"▁\")", what,
                s.value("prepend", ""));
      cfg.prepend = Prepend::Always;
    } else if (type == "Replace") {
      const json& pat = s.at("pattern");
      CDQ_CHECK(
          pat.contains("String") && pat["String"] == " " && s.value("content", "") == kSpaceSymbol,
          "{}: only the Replace normalizer ' ' -> \"▁\" is supported, got {}", what, s.dump());
      cfg.replace_space = true;
    } else if (type == "NFC") {
      // Accepted without effect: the text is taken to be NFC already (most text is).
    } else {
      fail("{}: normalizer '{}' is not supported (supported: Prepend, Replace, NFC)", what, type);
    }
  }
}

void apply_pre_tokenizer(const json& pre, HfBpeConfig& cfg, const std::string& what) {
  for (const json* step : steps(pre, "pretokenizers", what)) {
    const json& s = *step;
    const std::string type = json_type(s);
    if (type == "ByteLevel") {
      cfg.byte_level = true;
      cfg.add_prefix_space = s.value("add_prefix_space", false);
      if (s.value("use_regex", true)) {
        CDQ_CHECK(cfg.split == SplitRule::None,
                  "{}: ByteLevel with use_regex after a Split is not supported", what);
        cfg.split = SplitRule::Gpt2;
      }
    } else if (type == "Split") {
      const json& pat = s.at("pattern");
      // Gemma 3: Split on the string " " after the normalizer replaced every space by "▁"
      // (pre-tokenizers see the normalized text): nothing is left to split on.
      if (pat.contains("String") && pat["String"] == " " && cfg.replace_space && !cfg.byte_level &&
          !s.value("invert", false))
        continue;
      CDQ_CHECK(pat.contains("Regex"), "{}: Split pre-tokenizer without a Regex pattern", what);
      const std::string regex = pat["Regex"].get<std::string>();
      const SplitRule rule = split_rule_from_regex(regex);
      CDQ_CHECK(rule != SplitRule::None,
                "{}: Split regex is not one of the known GPT-2 / Llama 3 / Qwen2 patterns: {}",
                what, regex);
      CDQ_CHECK(s.value("behavior", "Isolated") == "Isolated" && !s.value("invert", false),
                "{}: Split pre-tokenizer must be Isolated and not inverted", what);
      CDQ_CHECK(!cfg.byte_level, "{}: Split after ByteLevel is not supported", what);
      cfg.split = rule;
    } else if (type == "Metaspace") {
      CDQ_CHECK(s.value("replacement", std::string(kSpaceSymbol)) == kSpaceSymbol,
                "{}: Metaspace replacement must be \"▁\"", what);
      cfg.replace_space = true;
      std::string scheme = s.value("prepend_scheme", "");
      if (scheme.empty()) scheme = s.value("add_prefix_space", true) ? "always" : "never";
      if (scheme == "always")
        cfg.prepend = Prepend::IfMissing;
      else if (scheme == "first")
        cfg.prepend = Prepend::FirstIfMissing;
      else
        CDQ_CHECK(scheme == "never", "{}: Metaspace prepend_scheme '{}'", what, scheme);
      cfg.split_on_space_symbol = s.value("split", true);
    } else {
      fail("{}: pre-tokenizer '{}' is not supported (supported: ByteLevel, Split, Metaspace)", what,
           type);
    }
  }
}

// The special token a TemplateProcessing post-processor puts first ("<s>"), if any.
std::string template_bos(const json& post, const std::string& what) {
  for (const json* step : steps(post, "processors", what)) {
    const json& s = *step;
    if (json_type(s) != "TemplateProcessing" || !s.contains("single")) continue;
    const json& single = s["single"];
    if (single.is_array() && !single.empty() && single[0].contains("SpecialToken"))
      return single[0]["SpecialToken"].value("id", "");
  }
  return {};
}

std::string token_content(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content")) return j["content"].get<std::string>();
  return {};
}

std::pair<std::string, std::string> parse_merge(const json& m, size_t rank,
                                                const std::string& what) {
  if (m.is_array()) {
    CDQ_CHECK(m.size() == 2, "{}: merge {} is not a pair", what, rank);
    return {m[0].get<std::string>(), m[1].get<std::string>()};
  }
  const std::string s = m.get<std::string>();
  const size_t space = s.find(' ');
  CDQ_CHECK(space != std::string::npos && space > 0 && space + 1 < s.size() &&
                s.find(' ', space + 1) == std::string::npos,
            "{}: merge {} '{}' is not 'left right'", what, rank, s);
  return {s.substr(0, space), s.substr(space + 1)};
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CDQ_CHECK(in.good(), "cannot open '{}'", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::unique_ptr<Tokenizer> parse_hf_tokenizer(std::string_view tokenizer_json,
                                              std::string_view config_json,
                                              const std::string& what) {
  const json j = parse_json_text(tokenizer_json, what, kTokenizerJsonLimits);
  try {
    CDQ_CHECK(j.is_object() && j.contains("model"), "{}: no 'model' in tokenizer.json", what);
    const json& model = j["model"];
    const std::string type = model.value("type", "BPE");
    CDQ_CHECK(type == "BPE", "{}: tokenizer model '{}' is not supported (only BPE)", what, type);
    CDQ_CHECK(model.value("dropout", json()).is_null() || model["dropout"].get<double>() == 0.0,
              "{}: BPE dropout is not supported", what);
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      CDQ_CHECK(model.value(key, json()).is_null() || model[key].get<std::string>().empty(),
                "{}: BPE {} is not supported", what, key);

    HfBpeConfig cfg;
    cfg.byte_fallback = model.value("byte_fallback", false);
    cfg.fuse_unk = model.value("fuse_unk", false);
    cfg.ignore_merges = model.value("ignore_merges", false);
    apply_normalizer(j.value("normalizer", json()), cfg, what);
    apply_pre_tokenizer(j.value("pre_tokenizer", json()), cfg, what);
    const bool sp_style = cfg.replace_space || cfg.prepend != Prepend::None;
    CDQ_CHECK(cfg.byte_level != sp_style,
              "{}: neither byte-level (ByteLevel) nor SentencePiece-style (\"▁\" for spaces): "
              "this BPE variant is not supported",
              what);

    // Tokens: the model vocabulary plus the added tokens.
    HfBpeModel m;
    std::vector<std::pair<int, std::string>> entries;
    for (const auto& [piece, id] : model.at("vocab").items())
      entries.emplace_back(token_id(id, piece, what), piece);
    std::vector<std::pair<int, bool>> added;  // (id, special)
    for (const json& a : j.value("added_tokens", json::array())) {
      const std::string content = a.at("content").get<std::string>();
      const int id = token_id(a.at("id"), content, what);
      entries.emplace_back(id, content);
      added.emplace_back(id, a.value("special", false));
    }
    int n = 0;
    for (const auto& [id, piece] : entries) n = std::max(n, id + 1);
    // Ids are dense in real files; holes become placeholder tokens, so a few tokens with huge
    // ids would make a vocabulary of millions from a tiny file. At most half may be holes.
    const uint64_t max_n = 2 * static_cast<uint64_t>(entries.size()) + 1024;
    CDQ_CHECK(static_cast<uint64_t>(n) <= max_n,
              "{}: token ids reach {} but only {} tokens are defined (a vocabulary mostly of "
              "holes; at most {} ids for {} tokens)",
              what, n - 1, entries.size(), max_n, entries.size());
    m.tokens.assign(n, {});
    m.token_types.assign(n, static_cast<int32_t>(TokenType::Normal));
    std::vector<bool> seen(n, false);
    for (const auto& [id, piece] : entries) {
      m.tokens[id] = piece;  // an added token overrides the vocab entry with its id
      seen[id] = true;
    }
    for (int i = 0; i < n; ++i) {
      if (!seen[i]) {  // a hole in the id range: keep ids dense with an unused placeholder
        m.tokens[i] = fmt::format("<unused_{}>", i);
        m.token_types[i] = static_cast<int32_t>(TokenType::Unused);
      } else if (cfg.byte_fallback && parse_byte_piece(m.tokens[i]) >= 0) {
        m.token_types[i] = static_cast<int32_t>(TokenType::Byte);
      }
    }
    auto find_id = [&](const std::string& piece) {
      for (int i = n - 1; i >= 0; --i)  // added tokens sit late; prefer them
        if (m.tokens[i] == piece) return i;
      return -1;
    };
    const json unk = model.value("unk_token", json());
    if (unk.is_string()) {
      m.unk_id = find_id(unk.get<std::string>());
      CDQ_CHECK(m.unk_id >= 0, "{}: unk_token '{}' is not a token", what, unk.get<std::string>());
    }
    for (auto [id, special] : added) {
      m.added.push_back(id);
      if (id == m.unk_id) continue;
      m.token_types[id] =
          static_cast<int32_t>(special ? TokenType::Control : TokenType::UserDefined);
    }
    if (m.unk_id >= 0) m.token_types[m.unk_id] = static_cast<int32_t>(TokenType::Unknown);

    // Merges by rank.
    std::unordered_map<std::string_view, int> ids;
    for (int i = 0; i < n; ++i) ids.emplace(m.tokens[i], i);
    const json& merges = model.value("merges", json::array());
    m.merges.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const auto [l, rt] = parse_merge(merges[r], r, what);
      auto li = ids.find(l), ri = ids.find(rt);
      CDQ_CHECK(li != ids.end() && ri != ids.end(), "{}: merge {} '{} {}' uses unknown tokens",
                what, r, l, rt);
      m.merges.emplace_back(li->second, ri->second);
    }

    // bos / eos: tokenizer_config.json first, then the post-processor template, then names.
    std::string bos_name = template_bos(j.value("post_processor", json()), what);
    m.add_bos = !bos_name.empty();
    std::string eos_name;
    bool no_bos = false;  // tokenizer_config.json says "bos_token": null (Qwen2)
    if (!config_json.empty()) {
      const json c =
          parse_json_text(config_json, what + " (tokenizer_config.json)", kTokenizerJsonLimits);
      no_bos = c.contains("bos_token") && c["bos_token"].is_null();
      if (c.contains("bos_token") && !token_content(c["bos_token"]).empty())
        bos_name = token_content(c["bos_token"]);
      if (c.contains("eos_token")) eos_name = token_content(c["eos_token"]);
      if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean())
        m.add_bos = c["add_bos_token"].get<bool>();
    }
    for (const char* name : {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<|endoftext|>"})
      if (bos_name.empty() && !no_bos && find_id(name) >= 0) bos_name = name;
    for (const char* name : {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>"})
      if (eos_name.empty() && find_id(name) >= 0) eos_name = name;
    if (!bos_name.empty()) m.bos_id = find_id(bos_name);
    if (!eos_name.empty()) m.eos_id = find_id(eos_name);

    return std::make_unique<HfBpeTokenizer>(
        std::move(m), cfg, cfg.byte_level ? "hf-bpe-bytelevel" : "hf-bpe-sentencepiece");
  } catch (const json::exception& e) {
    fail("{}: malformed tokenizer.json: {}", what, e.what());
  }
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path file = path;
  if (fs::is_directory(file)) file /= "tokenizer.json";
  const fs::path config = file.parent_path() / "tokenizer_config.json";
  const std::string config_text = fs::exists(config) ? read_text(config.string()) : "";
  return parse_hf_tokenizer(read_text(file.string()), config_text, file.string());
}

std::unique_ptr<Tokenizer> hf_tokenizer_from_gpt2_vocab(const TokenizerVocab& v) {
  CDQ_CHECK(v.model == "gpt2", "byte-level tokenizer: model is '{}', expected 'gpt2'", v.model);
  const int n = static_cast<int>(v.tokens.size());
  CDQ_CHECK(v.token_types.empty() || static_cast<int>(v.token_types.size()) == n,
            "tokenizer has {} tokens but {} token types", n, v.token_types.size());
  HfBpeConfig cfg;
  cfg.byte_level = true;
  cfg.split = split_rule_from_gguf_name(v.pre);
  cfg.ignore_merges = cfg.split == SplitRule::Llama3;
  HfBpeModel m;
  m.tokens = v.tokens;
  m.token_types = v.token_types;
  if (m.token_types.empty()) m.token_types.assign(n, static_cast<int32_t>(TokenType::Normal));
  for (int i = 0; i < n; ++i) {
    const auto t = static_cast<TokenType>(m.token_types[i]);
    CDQ_CHECK(m.token_types[i] >= 1 && m.token_types[i] <= 6, "token {} has invalid type {}", i,
              m.token_types[i]);
    if (t == TokenType::Control || t == TokenType::UserDefined) m.added.push_back(i);
  }
  std::unordered_map<std::string_view, int> ids;
  for (int i = 0; i < n; ++i) ids.emplace(m.tokens[i], i);
  for (size_t r = 0; r < v.merges.size(); ++r) {
    const auto [l, rt] = parse_merge(json(v.merges[r]), r, "gguf tokenizer");
    auto li = ids.find(l), ri = ids.find(rt);
    CDQ_CHECK(li != ids.end() && ri != ids.end(), "merge {} '{}' uses unknown tokens", r,
              v.merges[r]);
    m.merges.emplace_back(li->second, ri->second);
  }
  m.bos_id = v.bos_id;
  m.eos_id = v.eos_id;
  m.unk_id = v.unk_id;
  m.add_bos = v.add_bos;
  return std::make_unique<HfBpeTokenizer>(std::move(m), cfg, "gguf-gpt2");
}

}  // namespace cdq::tok
