// Tokenizers: text <-> token ids for the models cdquant reads.
//
// Kinds:
//  - llama2.c tokenizer .bin and GGUF "llama" vocabularies: SentencePiece-style BPE that merges
//    the adjacent pair whose concatenation has the highest score (byte fallback <0xXX>).
//  - SentencePiece .model files, through libsentencepiece (exactly what SentencePiece does,
//    including its whitespace normalization).
//  - Hugging Face tokenizer.json with a BPE model: byte-level BPE (GPT-2, Llama 3, Qwen2)
//    and SentencePiece-style BPE (Llama 2, TinyLlama), merged by merge rank.
// A TokenizerVocab carries what a GGUF file stores about a tokenizer, so a GGUF writer can
// save any tokenizer (vocab()) and a GGUF reader can rebuild it (tokenizer_from_vocab()).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cdq {

// GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  Normal = 1,
  Unknown = 2,
  Control = 3,      // bos, eos and other special tokens: never produced from text, decode to ""
  UserDefined = 4,  // added tokens matched verbatim in the text
  Unused = 5,
  Byte = 6,  // <0xXX> byte-fallback pieces
};

struct TokenizerVocab {
  // "llama": SentencePiece-style pieces ("▁" stands for a space), merged by score.
  // "gpt2": byte-level BPE (pieces are in the GPT-2 bytes-to-unicode alphabet) with merges.
  std::string model = "llama";
  // gpt2 only, the pre-tokenizer split rules (tokenizer.ggml.pre): "default" (GPT-2 regex),
  // "llama-bpe" (Llama 3 regex), "qwen2" (Qwen2 regex).
  std::string pre;
  std::vector<std::string> tokens;
  std::vector<float> scores;         // llama: one per token; gpt2: empty
  std::vector<int32_t> token_types;  // TokenType values, one per token
  std::vector<std::string> merges;   // gpt2: "left right" in rank order; llama: empty
  int bos_id = -1;                   // -1: none
  int eos_id = -1;
  int unk_id = -1;
  bool add_bos = true;  // whether the model expects BOS in front of a prompt
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text` (UTF-8), with bos_id in front when add_bos and bos_id >= 0.
  virtual std::vector<int> encode(std::string_view text, bool add_bos) const = 0;
  // Text of `ids`. Control tokens (bos, eos, ...) decode to nothing, an unknown token to
  // " ⁇ ", byte tokens to their bytes; for the SentencePiece-style kinds, one leading space
  // of the first piece shown (the dummy prefix that encoding added) is dropped, as llama2.c
  // and HF's decoders do, so text that starts with spaces round-trips. SentencePiece .model files
  // decode exactly as libsentencepiece does instead (all leading whitespace pieces dropped, the
  // model's own unk_surface). Ids out of range are an Error.
  virtual std::string decode(std::span<const int> ids) const = 0;
  virtual int vocab_size() const = 0;
  // What a GGUF file needs to carry this tokenizer.
  virtual TokenizerVocab vocab() const = 0;
  // "llama2c", "sentencepiece", "hf-bpe-bytelevel", "hf-bpe-sentencepiece", "gguf-llama",
  // "gguf-gpt2" (where the tokenizer came from).
  virtual std::string kind() const = 0;

  int bos_id = -1;  // -1: none
  int eos_id = -1;
};

// Loads a tokenizer file, recognising it by content and name: a llama2.c tokenizer .bin,
// a SentencePiece .model, a Hugging Face tokenizer.json, or a directory holding a
// tokenizer.json (and optionally tokenizer_config.json for bos/eos) or tokenizer.model.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Rebuilds a tokenizer from GGUF-style metadata (model "llama" or "gpt2").
std::unique_ptr<Tokenizer> tokenizer_from_vocab(const TokenizerVocab& vocab);

// A SentencePiece-style vocabulary (model "llama": llama2.c, GGUF) as a Hugging Face
// tokenizer.json (Llama 2's layout: BPE with byte fallback, merges ranked by the merged piece's
// score, as transformers converts SentencePiece models) and its tokenizer_config.json, so that
// HF clients can load a checkpoint written from such a source.
std::string hf_tokenizer_json(const TokenizerVocab& vocab);
std::string hf_tokenizer_config_json(const TokenizerVocab& vocab);

}  // namespace cdq
