// Hugging Face model directories as outputs: the float writer (dequantized weights in the
// source's own dtypes) and the pieces the GPTQ writer shares with it. Outputs stream: every
// tensor is declared up front (SafetensorsStreamWriter), each block's tensors are written when
// the quantizer hands the block over, and the tensors outside the blocks (embeddings, final
// norm, classifier) are copied from the source at the end, so no more than one block and one
// source tensor are in memory at once.
#pragma once

#include <cdquant/error.hpp>
#include <cdquant/model.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/safetensors.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "io/json_file.hpp"
#include "model/model_hf.hpp"

namespace cdq {

// Runs f, whose files go into the output's temporary folder: an Error from there is rethrown
// naming the output folder the user asked for.
template <typename F>
void naming_output_folder(const std::string& out_dir, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    fail("{}: {}", out_dir, e.what());
  }
}

// Largest shard of an HF output (decimal, as HF's "2GB"); a bigger tensor gets its own shard.
constexpr uint64_t kHfShardBytes = 2'000'000'000;

// config.json for a model read from a non-HF source (llama2.c, GGUF): Llama/Mistral/Qwen2
// fields that the HF reader and transformers need.
nlohmann::json hf_config_for(const ModelConfig& c, const std::string& torch_dtype);

// Copies tokenizer.json, tokenizer_config.json, tokenizer.model, special_tokens_map.json,
// added_tokens.json and generation_config.json from src_dir when present. For a non-HF source
// (src_dir is a file) the tokenizer stored beside it is copied as tokenizer.bin / .model, and a
// SentencePiece-style vocabulary (llama2.c .bin, GGUF "llama") is also written as
// tokenizer.json + tokenizer_config.json (hf_tokenizer_json).
void copy_hf_side_files(const std::string& source_path, const std::string& out_dir);

// The tensors of an HF output other than the seven linears of each block. For an HF source:
// every tensor of its safetensors except those linears (extra tensors included), bytes as
// stored, or converted to float_store. For other sources: the Llama tensors made
// from the reader (globals) and from each block (norms, biases in the rotate-half layout), F32
// or F16.
class HfSideTensors {
 public:
  // float_store: the dtype every float tensor is stored in (GPTQ outputs); nullopt: an HF
  // source's own dtypes, F32 for other sources (float outputs).
  HfSideTensors(ModelReader& source, const std::string& source_path,
                std::optional<DType> float_store);
  ~HfSideTensors();

  using Decl = SafetensorsStreamWriter::Decl;
  const std::vector<Decl>& layer(int l) const { return layers_.at(static_cast<size_t>(l)); }
  const std::vector<Decl>& globals() const { return globals_; }
  // The source's dtype of a linear's weight (F32 for non-HF sources).
  DType linear_dtype(int layer, Linear l) const;
  bool is_hf() const { return st_ != nullptr; }

  void write_layer(SafetensorsStreamWriter& out, int l, const BlockWeights& block) const;
  void write_globals(SafetensorsStreamWriter& out) const;

 private:
  void write_one(SafetensorsStreamWriter& out, const Decl& d) const;

  ModelReader& source_;
  std::optional<DType> float_store_;
  std::unique_ptr<SafetensorsDir> st_;  // HF sources only
  std::vector<std::vector<Decl>> layers_;
  std::vector<Decl> globals_;
};

// Float HF output of an HF source: config.json and tokenizer files copied unchanged, linears
// replaced by the dequantized weights (q/k rows back in the rotate-half layout) in the source's
// dtype, every other tensor copied byte for byte.
std::unique_ptr<ModelWriter> make_hf_float_writer(ModelReader& source,
                                                  const std::string& source_path,
                                                  const std::string& out_dir,
                                                  uint64_t max_shard_bytes = kHfShardBytes);

}  // namespace cdq
