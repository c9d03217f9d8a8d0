// GPTQ checkpoints as outputs: the streaming writer. The loader conventions it follows are
// listed in src/model/gptq_reader.cpp.
#include "export/gptq_writer.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/gptq_export.hpp>
#include <cdquant/half.hpp>
#include <cdquant/output_file.hpp>
#include <cdquant/safetensors.hpp>
#include <cdquant/solver.hpp>
#include <filesystem>
#include <iterator>
#include <map>
#include <span>

#include "export/hf_writer.hpp"
#include "model/gptq_config.hpp"

namespace cdq {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Rows of a [rows, ...] q/k tensor in the rotate-half order: out row j takes interleaved row
// order[j] (per head: rotate-half row i + s * half <- interleaved row 2i + s).
std::vector<int64_t> rotate_half_order(int64_t rows, int head_dim) {
  CDQ_CHECK(head_dim > 0 && head_dim % 2 == 0 && rows % head_dim == 0,
            "q/k layout: {} rows are not whole heads of {} rows", rows, head_dim);
  const int64_t half = head_dim / 2;
  std::vector<int64_t> order(static_cast<size_t>(rows));
  for (int64_t h0 = 0; h0 < rows; h0 += head_dim)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t s = 0; s < 2; ++s) order[h0 + i + s * half] = h0 + 2 * i + s;
  return order;
}

// The grid and codes with their rows (output channels) reordered: out row j = row order[j].
void permute_rows(Grid& grid, std::vector<uint8_t>& codes, const std::vector<int64_t>& order) {
  const int64_t k = grid.d_in, g = grid.n_groups;
  Grid out = grid;
  std::vector<uint8_t> c(codes.size());
  for (int64_t j = 0; j < grid.d_out; ++j) {
    const int64_t r = order[static_cast<size_t>(j)];
    std::copy_n(codes.begin() + r * k, k, c.begin() + j * k);
    for (int64_t q = 0; q < g; ++q) {
      out.scale[static_cast<size_t>(j * g + q)] = grid.scale[static_cast<size_t>(r * g + q)];
      out.bias[static_cast<size_t>(j * g + q)] = grid.bias[static_cast<size_t>(r * g + q)];
      out.zero[static_cast<size_t>(j * g + q)] = grid.zero[static_cast<size_t>(r * g + q)];
    }
  }
  grid = std::move(out);
  codes = std::move(c);
}

bool consecutive_groups(const std::vector<int32_t>& g_idx, int group_size) {
  for (size_t k = 0; k < g_idx.size(); ++k)
    if (g_idx[k] != (group_size > 0 ? static_cast<int32_t>(k / group_size) : 0)) return false;
  return true;
}

template <typename T>
std::span<const std::byte> as_bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

fs::path dir_of(const std::string& path) {
  return fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
}

// The dtype of the float tensors (GptqExportOptions::dtype).
DType float_dtype(ModelReader& source, const std::string& source_path, const std::string& name) {
  if (name == "float16") return DType::F16;
  if (name == "bfloat16") return DType::BF16;
  CDQ_CHECK(name == "auto", "GPTQ dtype '{}': expected float16, bfloat16 or auto", name);
  if (source.format() != "hf") return DType::F16;
  const SafetensorsDir st(source_path);
  const std::string w = hf_linear_prefix(0, Linear::Q) + ".weight";
  return st.contains(w) && st.info(w).dtype == DType::BF16 ? DType::BF16 : DType::F16;
}

float round_to(float v, DType t) {
  return t == DType::F16 ? fp16_to_float(float_to_fp16(v)) : bf16_to_float(float_to_bf16(v));
}

// value(r, c, 0) = W[r, c] in the stored float dtype: a linear kept float is solved on it
// (nothing to choose), so the next layers are calibrated on exactly what the file holds.
Grid kept_float_grid(const Matrix& w, DType t) {
  Grid g = make_grid_layout(w.rows, w.cols, 1, 0);
  for (size_t i = 0; i < g.bias.size(); ++i) g.bias[i] = round_to(w.data[i], t);
  return g;
}

}  // namespace

GptqCheckpointConfig gptq_config_for(const QuantizeOptions& options) {
  const GridSpec& g = options.solver.grid;
  GptqCheckpointConfig c;
  c.bits = g.bits;
  c.group_size = g.group_size > 0 ? g.group_size : -1;
  c.sym = g.symmetric;
  c.desc_act = options.solver.act_order && c.group_size > 0;
  c.static_groups = options.solver.static_groups;
  c.true_sequential = options.true_sequential;
  c.damp_percent = options.solver.percdamp;
  c.format = c.sym ? GptqCheckpointFormat::V1 : GptqCheckpointFormat::V2;
  c.method = std::string(options.method.name());
  return c;
}

namespace {

class GptqWriter final : public ModelWriter {
 public:
  GptqWriter(ModelReader& source, const std::string& source_path, std::string out_dir,
             const QuantizeOptions& options, uint64_t max_shard_bytes,
             const GptqExportOptions& gptq, std::string allocation)
      : source_(source),
        source_path_(source_path),
        out_dir_(std::move(out_dir)),
        config_(gptq_config_for(options)),
        dir_(out_dir_),
        dtype_(float_dtype(source, source_path, gptq.dtype)),
        side_(source, source_path, dtype_),
        allocation_(std::move(allocation)) {
    if (gptq.v1) config_.format = GptqCheckpointFormat::V1;
    const ModelConfig& c = source.config();
    bits_.resize(static_cast<size_t>(c.n_layers) * 7, config_.bits);
    for (int i = 0; i < c.n_layers; ++i)
      for (Linear l : kAllLinears) {
        SolverOptions so = options.solver;
        if (options.tune_linear) options.tune_linear(i, l, so);
        const int b = so.grid.bits;
        CDQ_CHECK(b == 2 || b == 3 || b == 4 || b == 8,
                  "GPTQ checkpoints hold 2, 3, 4 or 8 bits, not {} ({})", b,
                  hf_linear_prefix(i, l));
        bits_[static_cast<size_t>(i) * 7 + static_cast<size_t>(l)] = b;
      }
    config_.desc_act = false;  // set by finish() from the g_idx actually written
    // A fused group (q/k/v, gate/up) is packed only when all its members are, in every block.
    for (const auto& group : gptq_linear_groups()) {
      int packed_layers = 0;
      for (int i = 0; i < c.n_layers; ++i) {
        bool all = true;
        for (Linear l : group) {
          const LinearShape s = linear_shape(c, l);
          all = all && gptq_stores_packed(s.out, s.in, bits_of(i, l), config_.group_size);
        }
        packed_layers += all ? 1 : 0;
      }
      CDQ_CHECK(packed_layers == 0 || packed_layers == c.n_layers,
                "{}: the {} linears can be packed at their bits in {} of {} blocks; a checkpoint "
                "keeps a kind float in every block or in none",
                out_dir_, linear_name(group.front()), packed_layers, c.n_layers);
      const bool all = packed_layers > 0;
      for (Linear l : group) packed_[static_cast<int>(l)] = all;
      if (all) continue;
      for (Linear l : group) {
        config_.float_linears.push_back(l);
        const LinearShape sh = linear_shape(c, l);
        notes_.push_back(fmt::format(
            "{}: [{}, {}] cannot be packed at {} bits{} (with its fused group): kept {} "
            "(its float weights, not quantized; the following layers are calibrated on them)",
            hf_linear_prefix(0, l).substr(15), sh.out, sh.in, config_.bits,
            config_.group_size > 0 ? fmt::format(" in groups of {}", config_.group_size) : "",
            dtype_name(dtype_)));
      }
    }
    check_packs_something(c);
    set_dynamic_bits(c);
    std::vector<SafetensorsStreamWriter::Decl> decls;
    for (int i = 0; i < c.n_layers; ++i) {
      for (const auto& d : side_.layer(i)) decls.push_back(d);
      for (Linear l : kAllLinears) {
        const LinearShape s = linear_shape(c, l);
        const std::string p = hf_linear_prefix(i, l);
        if (!packed_[static_cast<int>(l)]) {
          decls.push_back({p + ".weight", dtype_, {s.out, s.in}});
          continue;
        }
        const int64_t groups =
            config_.group_size > 0 ? (s.in + config_.group_size - 1) / config_.group_size : 1;
        const int b = bits_of(i, l);
        decls.push_back({p + ".qweight", DType::I32, {s.in * b / 32, s.out}});
        decls.push_back({p + ".qzeros", DType::I32, {groups, s.out * b / 32}});
        decls.push_back({p + ".scales", DType::F16, {groups, s.out}});
        decls.push_back({p + ".g_idx", DType::I32, {s.in}});
      }
    }
    for (const auto& d : side_.globals()) decls.push_back(d);
    out_ = std::make_unique<SafetensorsStreamWriter>(dir_.build_path(), std::move(decls),
                                                     max_shard_bytes);
  }

  // Linears the format cannot pack are "solved" on their float weights (kept_float_grid); the
  // others on the solver's own grid.
  GridChooser grid_chooser() override {
    return [this](int, Linear l, const Matrix& w, const Matrix&) -> std::optional<GridConstraint> {
      if (packed_[static_cast<int>(l)]) return std::nullopt;
      return GridConstraint::kept(kept_float_grid(w, dtype_));
    };
  }
  std::vector<std::string> notes() const override { return notes_; }

  void write_block(int layer, const BlockWeights& block,
                   const std::vector<LinearResult>& linears) override {
    const ModelConfig& c = source_.config();
    CDQ_CHECK(layer == next_layer_, "{}: block {} handed over, expected block {} (layer order)",
              out_dir_, layer, next_layer_);
    check_block(block, c, layer);
    naming_output_folder(out_dir_, [&] { side_.write_layer(*out_, layer, block); });
    for (Linear l : kAllLinears) {
      const std::string p = hf_linear_prefix(layer, l);
      const bool qk = l == Linear::Q || l == Linear::K;
      if (!packed_[static_cast<int>(l)]) {
        const Matrix& w = block.linear(l);
        naming_output_folder(out_dir_, [&] {
          out_->write_floats(p + ".weight",
                             qk ? interleaved_to_rotate_half(w, c.head_dim).span() : w.span());
        });
        continue;
      }
      const auto it = std::find_if(linears.begin(), linears.end(),
                                   [&](const LinearResult& r) { return r.linear == l; });
      CDQ_CHECK(it != linears.end(), "{}: block {} came without the quantized {} linear", out_dir_,
                layer, linear_name(l));
      write_packed(p, *it, qk, bits_of(layer, l));
    }
    ++next_layer_;
  }

  void finish() override {
    CDQ_CHECK(next_layer_ == source_.config().n_layers, "{}: only {} of {} blocks were written",
              out_dir_, next_layer_, source_.config().n_layers);
    naming_output_folder(out_dir_, [&] { finish_files(); });
    dir_.commit();  // the folder appears whole: weights, config and tokenizer together
  }

 private:
  void finish_files() {
    side_.write_globals(*out_);
    out_->finish();
    json config = side_.is_hf() ? read_json_file((dir_of(source_path_) / "config.json").string())
                                : hf_config_for(source_.config(), torch_dtype());
    const json q = gptq_quantization_config(config_);
    config["quantization_config"] = q;
    config["torch_dtype"] = torch_dtype();  // the dtype of every float tensor in the files
    if (!allocation_.empty()) config[kGptqAllocationKey] = json::parse(allocation_);
    const fs::path build(dir_.build_path());
    write_json_file((build / "config.json").string(), config);
    write_json_file((build / "quantize_config.json").string(), q);
    copy_hf_side_files(source_path_, build.string());
  }

  // A "GPTQ checkpoint" without one packed linear would be an F16 model under a GPTQ config:
  // refused before any work, with the shapes that make it so.
  void check_packs_something(const ModelConfig& c) const {
    if (config_.float_linears.size() < std::size(kAllLinears)) return;
    std::vector<std::string> shapes;
    for (Linear l : kAllLinears) {
      const LinearShape s = linear_shape(c, l);
      shapes.push_back(fmt::format("{} {}x{}", linear_name(l), s.out, s.in));
    }
    fail(
        "--format gptq: no linear of this model can be packed with {} bits and --group {} "
        "(GPTQ kernels need group_size to divide in_features, and in_features * bits and "
        "out_features * bits to be multiples of 32; shapes out x in: {}); choose a group size "
        "that divides the input sizes (e.g. 32, 64, 128) or --group 0",
        config_.bits, std::max(config_.group_size, 0), fmt::join(shapes, ", "));
  }

  int bits_of(int layer, Linear l) const {
    return bits_[static_cast<size_t>(layer) * 7 + static_cast<size_t>(l)];
  }

  // The most common bits of the packed groups become `bits`; every other group gets a dynamic
  // override naming its block (groups share bits: vLLM fuses q/k/v and gate/up).
  void set_dynamic_bits(const ModelConfig& c) {
    std::map<int, int> count;
    for (int i = 0; i < c.n_layers; ++i)
      for (const auto& group : gptq_linear_groups())
        if (packed_[static_cast<int>(group.front())]) {
          for (Linear l : group)
            CDQ_CHECK(bits_of(i, l) == bits_of(i, group.front()),
                      "{}: {} and {} of block {} differ in bits; loaders fuse them", out_dir_,
                      linear_name(group.front()), linear_name(l), i);
          ++count[bits_of(i, group.front())];
        }
    if (count.empty()) return;
    int base = config_.bits;
    for (const auto& [b, n] : count)
      if (n > count[base]) base = b;
    config_.bits = base;
    for (int i = 0; i < c.n_layers; ++i)
      for (const auto& group : gptq_linear_groups())
        if (packed_[static_cast<int>(group.front())] && bits_of(i, group.front()) != base)
          config_.dynamic_bits.emplace_back(gptq_group_override(i, group),
                                            bits_of(i, group.front()));
  }

  void write_packed(const std::string& p, const LinearResult& r, bool qk, int bits) {
    const ModelConfig& c = source_.config();
    CDQ_CHECK(r.grid.is_integer_grid(),
              "{}: GPTQ checkpoints need integer grids with zero points ({} has none)", out_dir_,
              p);
    CDQ_CHECK(r.grid.maxq == (1 << bits) - 1,
              "{}: {} was quantized with maxq {}, the checkpoint holds {} bits", out_dir_, p,
              r.grid.maxq, bits);
    const int64_t groups =
        config_.group_size > 0 ? (r.grid.d_in + config_.group_size - 1) / config_.group_size : 1;
    CDQ_CHECK(r.grid.n_groups == groups, "{}: {} has {} groups, group_size {} needs {}", out_dir_,
              p, r.grid.n_groups, config_.group_size, groups);
    Grid grid = r.grid;
    std::vector<uint8_t> codes = r.codes;
    if (qk) permute_rows(grid, codes, rotate_half_order(grid.d_out, c.head_dim));
    if (!consecutive_groups(grid.g_idx, config_.group_size)) config_.desc_act = true;
    const GptqLinear t = pack_gptq_linear(grid, codes, bits, config_.format);
    naming_output_folder(out_dir_, [&] {
      out_->write_bytes(p + ".qweight", as_bytes_of(t.qweight));
      out_->write_bytes(p + ".qzeros", as_bytes_of(t.qzeros));
      out_->write_bytes(p + ".scales", as_bytes_of(t.scales));
      out_->write_bytes(p + ".g_idx", as_bytes_of(t.g_idx));
    });
  }

  const char* torch_dtype() const { return dtype_ == DType::BF16 ? "bfloat16" : "float16"; }

  ModelReader& source_;
  std::string source_path_;
  std::string out_dir_;
  GptqCheckpointConfig config_;
  OutputDir dir_;  // built in a temporary folder, renamed to out_dir_ by finish()
  DType dtype_;
  HfSideTensors side_;
  std::vector<std::string> notes_;
  std::string allocation_;  // the allocation plan (JSON), or ""
  std::vector<int> bits_;   // [n_layers * 7] bits of every linear
  bool packed_[7] = {};
  std::unique_ptr<SafetensorsStreamWriter> out_;
  int next_layer_ = 0;
};

}  // namespace

std::unique_ptr<ModelWriter> make_gptq_writer(ModelReader& source, const std::string& source_path,
                                              const std::string& out_dir,
                                              const QuantizeOptions& options,
                                              uint64_t max_shard_bytes,
                                              const GptqExportOptions& gptq,
                                              const std::string& allocation) {
  check_output_path(out_dir, OutputKind::Folder, {{"the source", source_path}});
  return std::make_unique<GptqWriter>(source, source_path, out_dir, options, max_shard_bytes, gptq,
                                      allocation);
}

}  // namespace cdq
