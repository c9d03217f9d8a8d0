#include "io/tokenizer_pretok.hpp"

#include <cdquant/error.hpp>

#include "io/tokenizer_text.hpp"

namespace cdq::tok {

namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The text as code points with their byte offsets.
struct CodePoints {
  std::vector<uint32_t> cp;
  std::vector<size_t> off;  // [n + 1]
};

CodePoints decode_all(std::string_view text) {
  CodePoints c;
  c.cp.reserve(text.size());
  c.off.reserve(text.size() + 1);
  for (size_t i = 0; i < text.size();) {
    const int len = utf8_len(text, i);
    // An invalid byte stands for itself; map it above Unicode so it classifies as punctuation.
    const bool invalid = len == 1 && static_cast<unsigned char>(text[i]) >= 0x80;
    c.cp.push_back(invalid ? 0x110000u : utf8_decode(text, i, len));
    c.off.push_back(i);
    i += len;
  }
  c.off.push_back(text.size());
  return c;
}

// Length (in code points) of the chunk starting at i.
class Splitter {
 public:
  Splitter(const std::vector<uint32_t>& cp, SplitRule rule) : cp_(cp), rule_(rule) {}

  size_t match(size_t i) const {
    if (size_t m = contraction(i)) return m;
    return rule_ == SplitRule::Gpt2 ? match_gpt2(i) : match_llama3(i);
  }

 private:
  size_t n() const { return cp_.size(); }
  bool letter(size_t i) const { return i < n() && is_letter(cp_[i]); }
  bool number(size_t i) const { return i < n() && is_number(cp_[i]); }
  bool space(size_t i) const { return i < n() && is_whitespace(cp_[i]); }
  bool other(size_t i) const { return i < n() && !letter(i) && !number(i) && !space(i); }
  bool newline(size_t i) const { return i < n() && (cp_[i] == '\r' || cp_[i] == '\n'); }
  size_t run(size_t i, bool (Splitter::*cls)(size_t) const) const {
    size_t j = i;
    while ((this->*cls)(j)) ++j;
    return j;
  }

  // 's 't 're 've 'm 'll 'd (ASCII case-insensitive for Llama 3 / Qwen2).
  size_t contraction(size_t i) const {
    if (cp_[i] != '\'' || i + 1 >= n()) return 0;
    auto lower = [&](size_t k) -> uint32_t {
      if (k >= n()) return 0;
      const uint32_t c = cp_[k];
      return rule_ != SplitRule::Gpt2 && c >= 'A' && c <= 'Z' ? c + 32 : c;
    };
    const uint32_t a = lower(i + 1), b = lower(i + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
  }

  // \s+(?!\S)|\s+ : a whitespace run, leaving its last char to the next chunk when a
  // non-space follows and the run is longer than one.
  size_t whitespace(size_t i) const {
    const size_t e = run(i, &Splitter::space);
    if (e < n() && e - i >= 2) return e - 1 - i;
    return e - i;
  }

  size_t match_gpt2(size_t i) const {
    const size_t s = cp_[i] == ' ' ? i + 1 : i;  // the optional leading space
    if (letter(s)) return run(s, &Splitter::letter) - i;
    if (number(s)) return run(s, &Splitter::number) - i;
    if (other(s)) return run(s, &Splitter::other) - i;
    if (space(i)) return whitespace(i);
    return 1;
  }

  size_t match_llama3(size_t i) const {
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (letter(i)) return run(i, &Splitter::letter) - i;
    if (!newline(i) && !number(i) && letter(i + 1)) return run(i + 1, &Splitter::letter) - i;
    // \p{N}{1,3} (Qwen2: \p{N})
    if (number(i)) {
      const size_t max_digits = rule_ == SplitRule::Qwen2 ? 1 : 3;
      size_t j = i;
      while (j - i < max_digits && number(j)) ++j;
      return j - i;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    const size_t s = cp_[i] == ' ' ? i + 1 : i;
    if (other(s)) return run(run(s, &Splitter::other), &Splitter::newline) - i;
    if (space(i)) {
      // \s*[\r\n]+ : up to the last newline of the whitespace run.
      const size_t e = run(i, &Splitter::space);
      for (size_t k = e; k > i; --k)
        if (newline(k - 1)) return k - i;
      return whitespace(i);
    }
    return 1;
  }

  const std::vector<uint32_t>& cp_;
  SplitRule rule_;
};

}  // namespace

std::string_view split_rule_regex(SplitRule rule) {
  switch (rule) {
    case SplitRule::Gpt2:
      return kGpt2Regex;
    case SplitRule::Llama3:
      return kLlama3Regex;
    case SplitRule::Qwen2:
      return kQwen2Regex;
    default:
      return {};
  }
}

SplitRule split_rule_from_regex(std::string_view regex) {
  for (SplitRule r : {SplitRule::Gpt2, SplitRule::Llama3, SplitRule::Qwen2})
    if (regex == split_rule_regex(r)) return r;
  return SplitRule::None;
}

std::string_view split_rule_gguf_name(SplitRule rule) {
  switch (rule) {
    case SplitRule::Gpt2:
      return "default";
    case SplitRule::Llama3:
      return "llama-bpe";
    case SplitRule::Qwen2:
      return "qwen2";
    default:
      fail("a byte-level BPE tokenizer needs a split rule");
  }
}

SplitRule split_rule_from_gguf_name(std::string_view name) {
  if (name == "default" || name == "gpt-2" || name == "gpt2" || name.empty())
    return SplitRule::Gpt2;
  if (name == "llama-bpe" || name == "llama3") return SplitRule::Llama3;
  if (name == "qwen2") return SplitRule::Qwen2;
  fail("unsupported byte-level pre-tokenizer '{}' (supported: default, llama-bpe, qwen2)", name);
}

std::vector<std::string_view> pretokenize(std::string_view text, SplitRule rule) {
  std::vector<std::string_view> chunks;
  if (text.empty()) return chunks;
  if (rule == SplitRule::None) return {text};
  const CodePoints c = decode_all(text);
  const Splitter splitter(c.cp, rule);
  for (size_t i = 0; i < c.cp.size();) {
    const size_t len = splitter.match(i);
    chunks.push_back(text.substr(c.off[i], c.off[i + len] - c.off[i]));
    i += len;
  }
  return chunks;
}

const std::array<uint32_t, 256>& byte_to_unicode() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t extra = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? b : 0x100 + extra++;
    }
    return t;
  }();
  return table;
}

int unicode_to_byte(uint32_t cp) {
  static const std::vector<int> inverse = [] {
    std::vector<int> inv(0x144, -1);
    for (int b = 0; b < 256; ++b) inv[byte_to_unicode()[b]] = b;
    return inv;
  }();
  return cp < inverse.size() ? inverse[cp] : -1;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) utf8_append(out, byte_to_unicode()[static_cast<unsigned char>(c)]);
  return out;
}

std::string byte_level_to_bytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const int len = utf8_len(text, i);
    const int b = len == 1 && static_cast<unsigned char>(text[i]) >= 0x80
                      ? -1
                      : unicode_to_byte(utf8_decode(text, i, len));
    if (b >= 0)
      out += static_cast<char>(b);
    else
      out.append(text.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace cdq::tok
