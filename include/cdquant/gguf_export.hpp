// GGUF llama-family models (llama.cpp's format) as outputs: the per-tensor type plan (single
// types and llama.cpp's K-quant mixes, overrides, fallbacks) and a streaming model writer whose
// quantized tensors carry exactly the codes a solver chose. Reading them back: open_model().
//
// Layout facts (llama.cpp's convert_hf_to_gguf / llama-model-loader): arch "llama" stores q/k
// rows in the interleaved RoPE order cdquant uses internally; arch "qwen2" (NEOX rope) stores
// them in the rotate-half order, so they are permuted on write and read. Mistral models are
// written as "llama". output.weight is absent when the classifier is tied to token_embd.
#pragma once

#include <cdquant/ggml_type.hpp>
#include <cdquant/grid_constraint.hpp>
#include <cdquant/model.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/quantize.hpp>
#include <cdquant/tokenizer.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace cdq {

struct GgufExportOptions {
  // A ggml type name (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K .. Q6_K, IQ4_NL,
  // IQ4_XS): every linear in that type (IQ4: but for llama.cpp's raises of those ftypes,
  // gguf_plan.cpp); or a llama.cpp mix (Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M)
  // that raises some attn_v / attn_output / ffn_down tensors as llama-quantize does.
  std::string type = "Q4_K_M";
  // "REGEX=TYPE": tensors whose GGUF name (blk.3.ffn_down.weight, output.weight,
  // token_embd.weight) matches REGEX (std::regex_search) get TYPE; the first match wins.
  std::vector<std::string> overrides;
  std::string output_type;     // output.weight (or a tied token_embd); "": the mix rule
  std::string embedding_type;  // token_embd.weight when untied; "": the mix rule
  // Block scales fitted with importance diag(H) (ggml's imatrix search) instead of the type's
  // plain rule. Codes are then chosen by the solver on those scales either way.
  bool importance = true;
  // Block parameters of the types with mins (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) fitted by HQQ's lp
  // fit (choose_block_scales_hqq) instead of ggml's rule: set for the hqq start, --scales hqq
  // and --cd-init hqq (uses_hqq_block_scales). The other types have no zero point to fit and
  // keep ggml's rule (a note says which).
  bool hqq_block_scales = false;
  // The tokenizer written into the file (the "gguf" output format): tokenizer_path, else the one
  // inside / beside the source model at source_path (load_model_tokenizer).
  std::string tokenizer_path;
  std::string source_path;
  // general.name; "": the input's (a GGUF source's general.name, else source_path's stem, else
  // "model"), never the output's file name.
  std::string name;
  // Linears by exact GGUF tensor name (blk.3.attn_q.weight) -> type, in place of the --type mix
  // (a size-budget allocation; --override still wins, the fallbacks still apply).
  std::map<std::string, GgmlType> tensor_types;
  // Stored as the metadata string kGgufAllocationKey when not empty (the allocation plan, JSON).
  std::string allocation;
};

// The metadata key of a size-budget allocation's plan (a JSON string).
inline constexpr const char* kGgufAllocationKey = "cdquant.allocation";

// The type of every tensor of a model. Norms and biases are always F32.
class GgufPlan {
 public:
  GgufPlan(const ModelConfig& config, const GgufExportOptions& options);

  GgmlType linear(int layer, Linear l) const;
  GgmlType embeddings() const { return embeddings_; }
  GgmlType output() const { return output_; }        // also the tied token_embd's type
  uint32_t file_type() const { return file_type_; }  // llama.cpp's LLAMA_FTYPE
  bool any_quantized() const;
  // One line per tensor whose type was changed by a fallback or an override.
  const std::vector<std::string>& notes() const { return notes_; }
  // The note of one linear ("" when none).
  std::string note(int layer, Linear l) const;

 private:
  ModelConfig config_;
  std::vector<GgmlType> linears_;  // [n_layers * 7]
  std::vector<std::string> linear_notes_;
  GgmlType embeddings_ = GgmlType::F32;
  GgmlType output_ = GgmlType::F32;
  uint32_t file_type_ = 0;
  std::vector<std::string> notes_;
};

// Writes a model to GGUF as it comes out of quantize_model: grid_chooser() fixes each linear's
// grid to its ggml type's block scales (kept until the block is written), write_block packs
// the solver's codes. Blocks with no LinearResults (whole-model conversion) are quantized with
// ggml's reference rule. token_embd is written at construction, output at finish().
class GgufModelWriter : public ModelWriter {
 public:
  GgufModelWriter(ModelReader& source, const std::string& out_path, const TokenizerVocab& vocab,
                  const GgufExportOptions& options);
  ~GgufModelWriter() override;
  GridChooser grid_chooser() override;
  void write_block(int layer, const BlockWeights& block,
                   const std::vector<LinearResult>& linears) override;
  void finish() override;
  const GgufPlan& plan() const;
  // The plan's notes, and which tensors HQQ's block fit (hqq_block_scales) cannot serve.
  std::vector<std::string> notes() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  friend uint64_t gguf_file_bytes(const ModelConfig&, const TokenizerVocab&, const std::string&,
                                  const GgufExportOptions&);
};

// Bytes of the file a GgufModelWriter with these options would write (nothing is written).
uint64_t gguf_file_bytes(const ModelConfig& config, const TokenizerVocab& vocab,
                         const std::string& out_path, const GgufExportOptions& options);

// The grid a linear of type t is solved on in a GGUF file: the type's block scales (with
// importance diag(H) when asked), or for float types the weights rounded to that type.
GridConstraint gguf_type_grid(GgmlType t, const Matrix& w, const Matrix& h, bool importance);

// Whole in-memory model to GGUF with ggml's reference quantizers (no calibration).
void write_gguf_model(const Model& model, const TokenizerVocab& vocab, const std::string& path,
                      const GgufExportOptions& options);

}  // namespace cdq
