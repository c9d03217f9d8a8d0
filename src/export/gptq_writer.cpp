// GPTQ checkpoints as outputs: the streaming writer. The loader conventions it follows are
// listed in src/model/gptq_reader.cpp.
#include "export/gptq_writer.hpp"

#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/gptq_export.hpp>
#include <cdquant/half.hpp>
#include <cdquant/safetensors.hpp>
#include <cdquant/solver.hpp>
#include <filesystem>
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
             const QuantizeOptions& options, uint64_t max_shard_bytes, std::string allocation)
      : source_(source),
        source_path_(source_path),
        out_dir_(std::move(out_dir)),
        config_(gptq_config_for(options)),
        side_(source, source_path, true),
        allocation_(std::move(allocation)) {
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
      if (!all)
        for (Linear l : group) config_.float_linears.push_back(l);
    }
    set_dynamic_bits(c);
    std::vector<SafetensorsStreamWriter::Decl> decls;
    for (int i = 0; i < c.n_layers; ++i) {
      for (const auto& d : side_.layer(i)) decls.push_back(d);
      for (Linear l : kAllLinears) {
        const LinearShape s = linear_shape(c, l);
        const std::string p = hf_linear_prefix(i, l);
        if (!packed_[static_cast<int>(l)]) {
          decls.push_back({p + ".weight", DType::F16, {s.out, s.in}});
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
    out_ = std::make_unique<SafetensorsStreamWriter>(out_dir_, std::move(decls), max_shard_bytes);
  }

  void write_block(int layer, const BlockWeights& block,
                   const std::vector<LinearResult>& linears) override {
    const ModelConfig& c = source_.config();
    CDQ_CHECK(layer == next_layer_, "{}: block {} handed over, expected block {} (layer order)",
              out_dir_, layer, next_layer_);
    check_block(block, c, layer);
    side_.write_layer(*out_, layer, block);
    for (Linear l : kAllLinears) {
      const std::string p = hf_linear_prefix(layer, l);
      const bool qk = l == Linear::Q || l == Linear::K;
      if (!packed_[static_cast<int>(l)]) {
        const Matrix& w = block.linear(l);
        out_->write_floats(p + ".weight",
                           qk ? interleaved_to_rotate_half(w, c.head_dim).span() : w.span());
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
    side_.write_globals(*out_);
    out_->finish();
    json config = side_.is_hf() ? read_json_file((dir_of(source_path_) / "config.json").string())
                                : hf_config_for(source_.config(), "float16");
    const json q = gptq_quantization_config(config_);
    config["quantization_config"] = q;
    config["torch_dtype"] = "float16";
    if (!allocation_.empty()) config[kGptqAllocationKey] = json::parse(allocation_);
    write_json_file((fs::path(out_dir_) / "config.json").string(), config);
    write_json_file((fs::path(out_dir_) / "quantize_config.json").string(), q);
    copy_hf_side_files(source_path_, out_dir_);
  }

 private:
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
    out_->write_bytes(p + ".qweight", as_bytes_of(t.qweight));
    out_->write_bytes(p + ".qzeros", as_bytes_of(t.qzeros));
    out_->write_bytes(p + ".scales", as_bytes_of(t.scales));
    out_->write_bytes(p + ".g_idx", as_bytes_of(t.g_idx));
  }

  ModelReader& source_;
  std::string source_path_;
  std::string out_dir_;
  GptqCheckpointConfig config_;
  HfSideTensors side_;
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
                                              const std::string& allocation) {
  std::error_code ec;
  CDQ_CHECK(!fs::exists(out_dir, ec) || fs::is_directory(out_dir, ec),
            "{}: exists and is not a directory", out_dir);
  if (source.format() == "hf")
    CDQ_CHECK(fs::weakly_canonical(out_dir, ec) != fs::weakly_canonical(dir_of(source_path), ec),
              "{}: the output directory is the source directory", out_dir);
  return std::make_unique<GptqWriter>(source, source_path, out_dir, options, max_shard_bytes,
                                      allocation);
}

}  // namespace cdq
