#include "io/tokenizer_llama2c.hpp"

#include <cdquant/error.hpp>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "io/tokenizer_spm.hpp"
#include "io/tokenizer_text.hpp"

namespace cdq::tok {

namespace {

constexpr int32_t kMaxPieceLength = 1 << 16;  // far above any real tokenizer

template <typename T>
T read_le(std::string_view bytes, size_t pos) {
  T v;
  std::memcpy(&v, bytes.data() + pos, sizeof(T));
  return v;
}

TokenType piece_type(std::string_view piece, int id) {
  if (parse_byte_piece(piece) >= 0) return TokenType::Byte;
  if (id == 0 && piece == "<unk>") return TokenType::Unknown;
  if ((id == 1 && (piece == "\n<s>\n" || piece == "<s>")) ||
      (id == 2 && (piece == "\n</s>\n" || piece == "</s>")))
    return TokenType::Control;
  return TokenType::Normal;
}

}  // namespace

TokenizerVocab parse_llama2c_tokenizer(std::string_view bytes, const std::string& what) {
  CDQ_CHECK(bytes.size() >= 4, "{}: llama2.c tokenizer is too short ({} bytes)", what,
            bytes.size());
  const auto max_len = read_le<int32_t>(bytes, 0);
  CDQ_CHECK(max_len > 0 && max_len <= kMaxPieceLength,
            "{}: not a llama2.c tokenizer: max_token_length {} is not in [1, {}]", what, max_len,
            kMaxPieceLength);
  TokenizerVocab v;
  v.model = "llama";
  size_t pos = 4;
  while (pos < bytes.size()) {
    const int id = static_cast<int>(v.tokens.size());
    CDQ_CHECK(bytes.size() - pos >= 8,
              "{}: llama2.c tokenizer truncated in the header of token {} at byte {} ({} bytes "
              "left, 8 needed)",
              what, id, pos, bytes.size() - pos);
    const auto score = read_le<float>(bytes, pos);
    const auto len = read_le<int32_t>(bytes, pos + 4);
    pos += 8;
    CDQ_CHECK(std::isfinite(score), "{}: token {} has a non-finite score", what, id);
    CDQ_CHECK(len >= 0 && len <= max_len,
              "{}: token {} has length {}, outside [0, max_token_length = {}]", what, id, len,
              max_len);
    CDQ_CHECK(bytes.size() - pos >= static_cast<size_t>(len),
              "{}: llama2.c tokenizer truncated in token {}: {} bytes needed, {} left", what, id,
              len, bytes.size() - pos);
    const std::string_view piece = bytes.substr(pos, len);
    pos += len;
    const TokenType type = piece_type(piece, id);
    std::string name(piece);
    if (type == TokenType::Control)
      name = id == 1 ? "<s>" : "</s>";
    else if (type == TokenType::Normal)
      name = replace_all(piece, " ", kSpaceSymbol);
    v.tokens.push_back(std::move(name));
    v.scores.push_back(score);
    v.token_types.push_back(static_cast<int32_t>(type));
  }
  CDQ_CHECK(!v.tokens.empty(), "{}: llama2.c tokenizer has no tokens", what);
  const int n = static_cast<int>(v.tokens.size());
  v.unk_id = v.token_types[0] == static_cast<int32_t>(TokenType::Unknown) ? 0 : -1;
  v.bos_id = n > 1 && v.tokens[1] == "<s>" ? 1 : -1;
  v.eos_id = n > 2 && v.tokens[2] == "</s>" ? 2 : -1;
  v.add_bos = true;
  return v;
}

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CDQ_CHECK(in.good(), "cannot open tokenizer '{}'", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  return std::make_unique<SpmTokenizer>(parse_llama2c_tokenizer(bytes, path), "llama2c");
}

}  // namespace cdq::tok
