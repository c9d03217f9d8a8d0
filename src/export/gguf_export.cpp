// GgufModelWriter: streams a llama-family model into a GGUF file while quantize_model solves it.
// Every tensor is declared up front (sizes follow from the plan), so the header is written at
// once and the data follows in declaration order: token_embd (from the source, at
// construction), each block as the quantizer finishes it, then output_norm and output.
//
// A quantized linear's grid is its type's block scales (choose_block_scales, with importance
// diag(H) when asked), so any solver picks codes that decode exactly to what ggml decodes; the
// QuantizedBlocks wait in `pending` until the block is written with pack_codes. Every type's
// block scale d is a free fp16 multiplier of its sub-block scales: the CD family refits it
// along with the codes and the writer stores the result's scales (take_scales). A linear that
// falls back to a float type gets a degenerate grid (one column per group, maxq 0, bias = the
// weight rounded to that type), so the solvers leave it as the rounded weight.
#include <algorithm>
#include <cdquant/gguf.hpp>
#include <cdquant/gguf_export.hpp>
#include <cdquant/half.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "model/gguf_arch.hpp"
#include "quant/ggml_quants.hpp"

namespace cdq {

namespace {

float round_to_float_type(float v, GgmlType t) {
  if (t == GgmlType::F16) return fp16_to_float(float_to_fp16(v));
  if (t == GgmlType::BF16) return bf16_to_float(float_to_bf16(v));
  return v;
}

// value(r, c, 0) = W[r, c] rounded to the float type t.
Grid float_grid(const Matrix& w, GgmlType t) {
  Grid g = make_grid_layout(w.rows, w.cols, 1, 0);
  for (size_t i = 0; i < g.bias.size(); ++i) g.bias[i] = round_to_float_type(w.data[i], t);
  return g;
}

// q/k rows in the file's order (rotate-half for qwen2); rows are independent in every ggml
// type, so permuting packed rows is permuting the weights.
std::vector<uint8_t> permute_rows(const std::vector<uint8_t>& bytes, int64_t rows, int head_dim) {
  const size_t row_bytes = bytes.size() / static_cast<size_t>(rows);
  Matrix idx(rows, 1);
  for (int64_t r = 0; r < rows; ++r) idx(r, 0) = static_cast<float>(r);
  const Matrix order = interleaved_to_rotate_half(idx, head_dim);  // order[r] = source row
  std::vector<uint8_t> out(bytes.size());
  for (int64_t r = 0; r < rows; ++r) {
    const auto src = static_cast<size_t>(order(r, 0));
    std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(src * row_bytes), row_bytes,
                out.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(r) * row_bytes));
  }
  return out;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

// general.name comes from the input, never the output's file name (so the same run written
// under two names gives the same bytes): a GGUF input's own general.name, else the input's stem
// (a file's name without its extension, a folder's name), else "model".
std::string default_name(const std::string& source_path) {
  namespace fs = std::filesystem;
  if (source_path.empty()) return "model";
  std::error_code ec;
  if (fs::is_regular_file(source_path, ec)) {
    char magic[4] = {};
    std::FILE* f = std::fopen(source_path.c_str(), "rb");
    const bool gguf =
        f != nullptr && std::fread(magic, 1, 4, f) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
    if (f != nullptr) std::fclose(f);
    if (gguf) {
      const GgufReader in(source_path);
      const GgufValue* v = in.find("general.name");
      if (v != nullptr && v->type() == GgufType::String && !v->str().empty()) return v->str();
    }
  }
  fs::path p(source_path);
  if (!p.has_filename()) p = p.parent_path();  // "dir/" names dir
  const std::string stem = p.stem().string();
  return stem.empty() || stem == "." || stem == ".." ? "model" : stem;
}

// The type's block scales for w: ggml's search weighted by diag(H) when asked.
QuantizedBlocks block_scales(GgmlType t, const Matrix& w, const Matrix& h, bool importance) {
  std::vector<float> imp;
  if (importance) imp = ggml_importance(h);
  return choose_block_scales(w, t, imp.empty() ? nullptr : imp.data());
}

// The block grid of qb with its free fp16 multipliers d (the CD family refits them).
GridConstraint block_constraint(const QuantizedBlocks& qb, GgmlType t) {
  const SubScaleRange range = ggml_sub_scale_range(t);
  return GridConstraint::ggml_block(qb.to_grid(), qb.group_sub_scales(),
                                    static_cast<int>(qb.groups_per_block()), range.lo, range.hi);
}

}  // namespace

struct GgufModelWriter::Impl {
  Impl(ModelReader& src, const std::string& out_path, const GgufExportOptions& opt)
      : path(out_path),
        source(src),
        config(src.config()),
        options(opt),
        plan(config, opt),
        arch(gguf_arch_of(config)),
        out(out_path) {}

  std::string path;
  const TokenizerVocab* vocab = nullptr;
  ModelReader& source;
  ModelConfig config;
  GgufExportOptions options;
  GgufPlan plan;
  std::string arch;
  GgufWriter out;
  std::map<std::pair<int, int>, QuantizedBlocks> pending;  // (layer, linear) -> block scales
  int next_layer = 0;

  void declare() {
    const auto d = static_cast<uint64_t>(config.dim);
    const auto v = static_cast<uint64_t>(config.vocab_size);
    out.add_tensor("token_embd.weight", {d, v}, plan.embeddings());
    for (int i = 0; i < config.n_layers; ++i) {
      const std::string p = fmt::format("blk.{}.", i);
      out.add_tensor(p + "attn_norm.weight", {d}, GgmlType::F32);
      for (Linear l : kAllLinears) {
        const LinearShape s = linear_shape(config, l);  // GGUF lists dims innermost first
        const auto rows = static_cast<uint64_t>(s.out), cols = static_cast<uint64_t>(s.in);
        out.add_tensor(gguf_linear_name(i, l), {cols, rows}, plan.linear(i, l));
        if (config.qkv_bias && (l == Linear::Q || l == Linear::K || l == Linear::V))
          out.add_tensor(bias_name(i, l), {rows}, GgmlType::F32);
        if (l == Linear::O) out.add_tensor(p + "ffn_norm.weight", {d}, GgmlType::F32);
      }
    }
    out.add_tensor("output_norm.weight", {d}, GgmlType::F32);
    if (!config.tied_embeddings) out.add_tensor("output.weight", {d, v}, plan.output());
  }

  static std::string bias_name(int layer, Linear l) {
    const char* n = l == Linear::Q ? "attn_q" : l == Linear::K ? "attn_k" : "attn_v";
    return fmt::format("blk.{}.{}.bias", layer, n);
  }
  bool permuted(Linear l) const {
    return gguf_rotate_half(arch) && (l == Linear::Q || l == Linear::K);
  }

  // The type's block scales as the grid to solve on; the free fp16 d of Q4_0/Q5_0/Q8_0 may be
  // refitted by the solver (linear_bytes stores the result's scales).
  std::optional<GridConstraint> choose(int layer, Linear l, const Matrix& w, const Matrix& h) {
    const GgmlType t = plan.linear(layer, l);
    if (!ggml_traits(t).quantized()) return GridConstraint::kept(float_grid(w, t));
    QuantizedBlocks qb = options.hqq_block_scales && ggml_has_min(t)
                             ? choose_block_scales_hqq(w, t)
                             : block_scales(t, w, h, options.importance);
    GridConstraint g = block_constraint(qb, t);
    g.rule_codes = std::move(qb.codes);  // RTN's codes; other solvers' codes replace them
    pending[{layer, static_cast<int>(l)}] = std::move(qb);
    return g;
  }

  void declare_all() {
    set_gguf_model_metadata(out, config, *vocab,
                            options.name.empty() ? default_name(options.source_path) : options.name,
                            plan.file_type());
    if (!options.allocation.empty())
      out.set(kGgufAllocationKey, GgufValue::string(options.allocation));
    declare();
  }
  // Bytes of one linear: the solver's codes on the pending block scales, or (no result: a
  // whole-model conversion) ggml's reference quantization of the weights.
  std::vector<uint8_t> linear_bytes(int layer, Linear l, const Matrix& w, const LinearResult* r) {
    const GgmlType t = plan.linear(layer, l);
    std::vector<uint8_t> bytes;
    const auto it = pending.find({layer, static_cast<int>(l)});
    if (r != nullptr && ggml_traits(t).quantized()) {
      CDQ_CHECK(it != pending.end(),
                "GGUF writer: {} was not solved on its {} grid (grid chooser not used?)",
                gguf_linear_name(layer, l), ggml_type_name(t));
      it->second.take_scales(r->grid,
                             r->sub_scale.empty() ? it->second.group_sub_scales() : r->sub_scale);
      bytes = pack_codes(it->second, r->codes);
    } else {
      // Float types: the block already holds the rounded weights (solved on float_grid).
      bytes = quantize_reference(t, w);
    }
    if (it != pending.end()) pending.erase(it);
    return permuted(l) ? permute_rows(bytes, w.rows, config.head_dim) : bytes;
  }
};

GgufModelWriter::GgufModelWriter(ModelReader& source, const std::string& out_path,
                                 const TokenizerVocab& vocab, const GgufExportOptions& options)
    : impl_(std::make_unique<Impl>(source, out_path, options)) {
  Impl& m = *impl_;
  m.vocab = &vocab;
  m.declare_all();
  m.out.write_header();
  const Matrix emb = source.read_embeddings();  // [vocab, dim]
  m.out.write_tensor("token_embd.weight", quantize_reference(m.plan.embeddings(), emb));
}

GgufModelWriter::~GgufModelWriter() = default;

const GgufPlan& GgufModelWriter::plan() const {
  return impl_->plan;
}

std::vector<std::string> GgufModelWriter::notes() const {
  const Impl& m = *impl_;
  std::vector<std::string> out = m.plan.notes();
  if (!m.options.hqq_block_scales) return out;
  std::vector<GgmlType> symmetric;
  for (int i = 0; i < m.config.n_layers; ++i)
    for (Linear l : kAllLinears) {
      const GgmlType t = m.plan.linear(i, l);
      if (ggml_traits(t).quantized() && !ggml_has_min(t) &&
          std::find(symmetric.begin(), symmetric.end(), t) == symmetric.end())
        symmetric.push_back(t);
    }
  if (symmetric.empty()) return out;
  std::string names;
  for (GgmlType t : symmetric)
    names += fmt::format("{}{}", names.empty() ? "" : ", ", ggml_type_name(t));
  out.push_back(fmt::format(
      "hqq: {} {} no mins (symmetric blocks), so HQQ has no zero point to fit there: those "
      "tensors take ggml's own block scales; HQQ fits the blocks of Q4_1, Q5_1, Q2_K, Q4_K and "
      "Q5_K",
      names, symmetric.size() == 1 ? "has" : "have"));
  return out;
}

GridChooser GgufModelWriter::grid_chooser() {
  Impl* m = impl_.get();
  return [m](int layer, Linear l, const Matrix& w, const Matrix& h) {
    return m->choose(layer, l, w, h);
  };
}

void GgufModelWriter::write_block(int layer, const BlockWeights& block,
                                  const std::vector<LinearResult>& linears) {
  Impl& m = *impl_;
  CDQ_CHECK(layer == m.next_layer, "GGUF writer: block {} arrived, expected block {}", layer,
            m.next_layer);
  check_block(block, m.config, layer);
  const std::string p = fmt::format("blk.{}.", layer);
  m.out.write_tensor(p + "attn_norm.weight", f32_bytes(block.attn_norm));
  for (Linear l : kAllLinears) {
    const LinearResult* r = nullptr;
    for (const LinearResult& x : linears)
      if (x.linear == l) r = &x;
    m.out.write_tensor(gguf_linear_name(layer, l), m.linear_bytes(layer, l, block.linear(l), r));
    if (m.config.qkv_bias && (l == Linear::Q || l == Linear::K || l == Linear::V)) {
      const std::vector<float>& b = l == Linear::Q   ? block.bq
                                    : l == Linear::K ? block.bk
                                                     : block.bv;
      m.out.write_tensor(
          Impl::bias_name(layer, l),
          f32_bytes(m.permuted(l) ? interleaved_to_rotate_half(b, m.config.head_dim) : b));
    }
    if (l == Linear::O) m.out.write_tensor(p + "ffn_norm.weight", f32_bytes(block.ffn_norm));
  }
  ++m.next_layer;
}

void GgufModelWriter::finish() {
  Impl& m = *impl_;
  CDQ_CHECK(m.next_layer == m.config.n_layers, "GGUF writer: finished after {} of {} blocks",
            m.next_layer, m.config.n_layers);
  m.out.write_tensor("output_norm.weight", f32_bytes(m.source.read_final_norm()));
  if (!m.config.tied_embeddings)
    m.out.write_tensor("output.weight",
                       quantize_reference(m.plan.output(), m.source.read_output()));
  m.out.finish();
}

namespace {

// Reads nothing: the planned size needs only the config.
class ConfigOnlyReader final : public ModelReader {
 public:
  explicit ConfigOnlyReader(const ModelConfig& c) : c_(c) {}
  const ModelConfig& config() const override { return c_; }
  Matrix read_embeddings() override { fail("GGUF size planning reads no tensors"); }
  BlockWeights read_block(int) override { fail("GGUF size planning reads no tensors"); }
  std::vector<float> read_final_norm() override { fail("GGUF size planning reads no tensors"); }
  Matrix read_output() override { fail("GGUF size planning reads no tensors"); }
  std::string format() const override { return "config"; }

 private:
  const ModelConfig& c_;
};

}  // namespace

uint64_t gguf_file_bytes(const ModelConfig& config, const TokenizerVocab& vocab,
                         const std::string& out_path, const GgufExportOptions& options) {
  ConfigOnlyReader reader(config);
  GgufModelWriter::Impl m(reader, out_path, options);  // opens nothing until write_header
  m.vocab = &vocab;
  m.declare_all();
  return m.out.file_bytes();
}

GridConstraint gguf_type_grid(GgmlType t, const Matrix& w, const Matrix& h, bool importance) {
  if (!ggml_traits(t).quantized()) return GridConstraint::kept(float_grid(w, t));
  return block_constraint(block_scales(t, w, h, importance), t);
}

namespace {

// A Model in memory as a ModelReader (whole-model conversion).
class InMemoryReader final : public ModelReader {
 public:
  explicit InMemoryReader(const Model& m) : m_(m) {}
  const ModelConfig& config() const override { return m_.config; }
  Matrix read_embeddings() override { return m_.tok_embeddings; }
  BlockWeights read_block(int layer) override { return m_.blocks.at(static_cast<size_t>(layer)); }
  std::vector<float> read_final_norm() override { return m_.final_norm; }
  Matrix read_output() override { return m_.output; }
  std::string format() const override { return "memory"; }

 private:
  const Model& m_;
};

}  // namespace

void write_gguf_model(const Model& model, const TokenizerVocab& vocab, const std::string& path,
                      const GgufExportOptions& options) {
  check_model(model);
  InMemoryReader reader(model);
  GgufModelWriter writer(reader, path, vocab, options);
  for (int i = 0; i < model.config.n_layers; ++i)
    writer.write_block(i, model.blocks[static_cast<size_t>(i)], {});
  writer.finish();
}

}  // namespace cdq
