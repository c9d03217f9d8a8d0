// HF model directories as outputs: side tensors, config files and the float writer.
//
// Streaming choice: SafetensorsStreamWriter declares every output tensor before the first
// block arrives (shapes and dtypes are known from the config and the source), so each file's
// header is final and its data can be appended block by block in layer order; tensors outside
// the blocks go last. Offsets follow that writing order, not name order: safetensors only
// requires non-overlapping regions (the reference loader sorts by offset), and HF loads by name.
#include "export/hf_writer.hpp"

#include <cdquant/error.hpp>
#include <cdquant/model_tokenizer.hpp>
#include <cdquant/output_file.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>
#include <charconv>
#include <filesystem>
#include <map>

namespace cdq {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Layer of "model.layers.{i}.…", or -1.
int layer_of(const std::string& name) {
  static constexpr std::string_view kPrefix = "model.layers.";
  if (name.rfind(kPrefix, 0) != 0) return -1;
  const char* begin = name.data() + kPrefix.size();
  const char* end = name.data() + name.size();
  int layer = -1;
  const auto [ptr, ec] = std::from_chars(begin, end, layer);
  if (ec != std::errc() || ptr == begin || ptr == end || *ptr != '.') return -1;
  return layer;
}

bool is_gptq_tensor(const std::string& name) {
  for (const char* suffix : {".qweight", ".qzeros", ".scales", ".g_idx"}) {
    const std::string_view s(suffix);
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0)
      return true;
  }
  return false;
}

void write_text_file(const fs::path& path, const std::string& text) {
  OutputFile out(path.string());
  out.write(text);
  out.commit();
}

fs::path source_dir(const std::string& source_path) {
  return fs::is_directory(source_path) ? fs::path(source_path)
                                       : fs::path(source_path).parent_path();
}

}  // namespace

json hf_config_for(const ModelConfig& c, const std::string& torch_dtype) {
  const char* arch = c.arch == "qwen2"     ? "Qwen2ForCausalLM"
                     : c.arch == "mistral" ? "MistralForCausalLM"
                                           : "LlamaForCausalLM";
  return {{"architectures", {arch}},
          {"model_type", c.arch},
          {"hidden_size", c.dim},
          {"intermediate_size", c.hidden_dim},
          {"num_hidden_layers", c.n_layers},
          {"num_attention_heads", c.n_heads},
          {"num_key_value_heads", c.n_kv_heads},
          {"head_dim", c.head_dim},
          {"vocab_size", c.vocab_size},
          {"max_position_embeddings", c.max_seq_len},
          {"rope_theta", c.rope_theta},
          {"rms_norm_eps", c.norm_eps},
          {"tie_word_embeddings", c.tied_embeddings},
          {"bos_token_id", c.bos_id},
          {"eos_token_id", c.eos_id},
          {"hidden_act", "silu"},
          {"attention_bias", false},
          {"torch_dtype", torch_dtype}};
}

void copy_hf_side_files(const std::string& source_path, const std::string& out_dir) {
  std::error_code ec;
  if (fs::is_directory(source_path, ec) || fs::path(source_path).extension() == ".safetensors") {
    const fs::path dir = source_dir(source_path);
    for (const char* name :
         {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
          "added_tokens.json", "generation_config.json"}) {
      if (fs::is_regular_file(dir / name, ec))
        copy_to_output((dir / name).string(), (fs::path(out_dir) / name).string());
    }
    return;
  }
  // llama2.c / GGUF: keep the tokenizer beside the model usable by cdquant (find_tokenizer_for).
  const std::string tok = find_tokenizer_for(source_path);
  const std::string ext = tok.empty() ? "" : fs::path(tok).extension().string();
  if (ext == ".bin" || ext == ".model")
    copy_to_output(tok, (fs::path(out_dir) / ("tokenizer" + ext)).string());
  // ... and one HF clients load: a SentencePiece-style vocabulary (llama2.c's tokenizer.bin, a
  // GGUF "llama" vocabulary) as tokenizer.json. A .model file is what HF's slow Llama tokenizer
  // reads itself; a GGUF "gpt2" vocabulary is not converted (yet).
  std::unique_ptr<Tokenizer> t;
  if (ext == ".bin")
    t = load_tokenizer(tok);
  else if (fs::path(source_path).extension() == ".gguf")
    t = load_model_tokenizer(source_path);
  if (!t || t->vocab().model != "llama") return;
  const TokenizerVocab v = t->vocab();
  write_text_file(fs::path(out_dir) / "tokenizer.json", hf_tokenizer_json(v));
  write_text_file(fs::path(out_dir) / "tokenizer_config.json", hf_tokenizer_config_json(v));
}

// ---- HfSideTensors ------------------------------------------------------------------------------

HfSideTensors::HfSideTensors(ModelReader& source, const std::string& source_path,
                             std::optional<DType> float_store)
    : source_(source), float_store_(float_store) {
  const ModelConfig& c = source.config();
  layers_.resize(static_cast<size_t>(c.n_layers));
  const DType store = float_store.value_or(DType::F32);
  if (source.format() != "hf") {  // the Llama tensors, made from the reader
    for (auto& l : layers_) {
      l.push_back({"input_layernorm.weight", store, {c.dim}});
      l.push_back({"post_attention_layernorm.weight", store, {c.dim}});
      if (c.qkv_bias) {
        l.push_back({"self_attn.q_proj.bias", store, {c.q_dim()}});
        l.push_back({"self_attn.k_proj.bias", store, {c.kv_dim()}});
        l.push_back({"self_attn.v_proj.bias", store, {c.kv_dim()}});
      }
    }
    for (int i = 0; i < c.n_layers; ++i)
      for (auto& d : layers_[static_cast<size_t>(i)])
        d.name = fmt::format("model.layers.{}.{}", i, d.name);
    globals_.push_back({"model.embed_tokens.weight", store, {c.vocab_size, c.dim}});
    globals_.push_back({"model.norm.weight", store, {c.dim}});
    if (!c.tied_embeddings) globals_.push_back({"lm_head.weight", store, {c.vocab_size, c.dim}});
    return;
  }
  st_ = std::make_unique<SafetensorsDir>(source_path);
  std::map<std::string, bool> linear_weights;  // the names the writers replace
  for (int i = 0; i < c.n_layers; ++i)
    for (Linear l : kAllLinears) linear_weights[hf_linear_prefix(i, l) + ".weight"] = true;
  for (const std::string& name : st_->names()) {
    CDQ_CHECK(!is_gptq_tensor(name),
              "{}: the source is a GPTQ checkpoint ({}); writing it again as an HF output is not "
              "supported",
              source_path, name);
    if (linear_weights.contains(name)) continue;
    const TensorInfo& info = st_->info(name);
    const DType dtype = float_store && is_float_dtype(info.dtype) ? *float_store : info.dtype;
    const int layer = layer_of(name);
    Decl d{name, dtype, info.shape};
    if (layer >= 0 && layer < c.n_layers)
      layers_[static_cast<size_t>(layer)].push_back(std::move(d));
    else
      globals_.push_back(std::move(d));
  }
  for (const auto& [name, _] : linear_weights) {
    CDQ_CHECK(st_->contains(name), "{}: tensor {} is missing", source_path, name);
    CDQ_CHECK(is_float_dtype(st_->info(name).dtype), "{}: {} has dtype {}, expected a float type",
              source_path, name, dtype_name(st_->info(name).dtype));
  }
}

HfSideTensors::~HfSideTensors() = default;

DType HfSideTensors::linear_dtype(int layer, Linear l) const {
  if (!st_) return DType::F32;
  return st_->info(hf_linear_prefix(layer, l) + ".weight").dtype;
}

void HfSideTensors::write_one(SafetensorsStreamWriter& out, const Decl& d) const {
  if (d.dtype == st_->info(d.name).dtype) return out.write_bytes(d.name, st_->bytes(d.name));
  out.write_floats(d.name, st_->read_floats(d.name));  // to float_store
}

void HfSideTensors::write_layer(SafetensorsStreamWriter& out, int l,
                                const BlockWeights& block) const {
  if (st_) {
    for (const Decl& d : layer(l)) write_one(out, d);
    return;
  }
  const int head_dim = source_.config().head_dim;
  for (const Decl& d : layer(l)) {
    const std::string_view suffix = std::string_view(d.name).substr(d.name.find('.', 13) + 1);
    if (suffix == "input_layernorm.weight") out.write_floats(d.name, block.attn_norm);
    if (suffix == "post_attention_layernorm.weight") out.write_floats(d.name, block.ffn_norm);
    if (suffix == "self_attn.q_proj.bias")
      out.write_floats(d.name, interleaved_to_rotate_half(block.bq, head_dim));
    if (suffix == "self_attn.k_proj.bias")
      out.write_floats(d.name, interleaved_to_rotate_half(block.bk, head_dim));
    if (suffix == "self_attn.v_proj.bias") out.write_floats(d.name, block.bv);
  }
}

void HfSideTensors::write_globals(SafetensorsStreamWriter& out) const {
  for (const Decl& d : globals_) {
    if (st_) {
      write_one(out, d);
    } else if (d.name == "model.embed_tokens.weight") {
      out.write_floats(d.name, source_.read_embeddings().span());
    } else if (d.name == "model.norm.weight") {
      out.write_floats(d.name, source_.read_final_norm());
    } else {
      out.write_floats(d.name, source_.read_output().span());
    }
  }
}

// ---- the float writer ---------------------------------------------------------------------------

namespace {

class HfFloatWriter final : public ModelWriter {
 public:
  HfFloatWriter(ModelReader& source, const std::string& source_path, std::string out_dir,
                uint64_t max_shard_bytes)
      : source_(source),
        source_path_(source_path),
        out_dir_(std::move(out_dir)),
        dir_(out_dir_),
        side_(source, source_path, std::nullopt) {
    const ModelConfig& c = source.config();
    std::vector<SafetensorsStreamWriter::Decl> decls;
    for (int i = 0; i < c.n_layers; ++i) {
      for (const auto& d : side_.layer(i)) decls.push_back(d);
      for (Linear l : kAllLinears) {
        const LinearShape s = linear_shape(c, l);
        decls.push_back(
            {hf_linear_prefix(i, l) + ".weight", side_.linear_dtype(i, l), {s.out, s.in}});
      }
    }
    for (const auto& d : side_.globals()) decls.push_back(d);
    out_ = std::make_unique<SafetensorsStreamWriter>(dir_.build_path(), std::move(decls),
                                                     max_shard_bytes);
  }

  void write_block(int layer, const BlockWeights& block,
                   const std::vector<LinearResult>&) override {
    const ModelConfig& c = source_.config();
    CDQ_CHECK(layer == next_layer_, "{}: block {} handed over, expected block {} (layer order)",
              out_dir_, layer, next_layer_);
    check_block(block, c, layer);
    naming_output_folder(out_dir_, [&] {
      side_.write_layer(*out_, layer, block);
      for (Linear l : kAllLinears) {
        const std::string name = hf_linear_prefix(layer, l) + ".weight";
        if (l == Linear::Q || l == Linear::K)
          out_->write_floats(name, interleaved_to_rotate_half(block.linear(l), c.head_dim).span());
        else
          out_->write_floats(name, block.linear(l).span());
      }
    });
    ++next_layer_;
  }

  void finish() override {
    CDQ_CHECK(next_layer_ == source_.config().n_layers, "{}: only {} of {} blocks were written",
              out_dir_, next_layer_, source_.config().n_layers);
    naming_output_folder(out_dir_, [&] {
      side_.write_globals(*out_);
      out_->finish();
      const fs::path dir = source_dir(source_path_);
      copy_to_output((dir / "config.json").string(),
                     (fs::path(dir_.build_path()) / "config.json").string());
      copy_hf_side_files(source_path_, dir_.build_path());
    });
    dir_.commit();  // the folder appears whole: weights, config and tokenizer together
  }

 private:
  ModelReader& source_;
  std::string source_path_;
  std::string out_dir_;
  OutputDir dir_;  // built in a temporary folder, renamed to out_dir_ by finish()
  HfSideTensors side_;
  std::unique_ptr<SafetensorsStreamWriter> out_;
  int next_layer_ = 0;
};

}  // namespace

std::unique_ptr<ModelWriter> make_hf_float_writer(ModelReader& source,
                                                  const std::string& source_path,
                                                  const std::string& out_dir,
                                                  uint64_t max_shard_bytes) {
  CDQ_CHECK(source.format() == "hf", "the float HF writer needs an HF source, got '{}'",
            source.format());
  CDQ_CHECK(!source_path.empty(), "the float HF writer needs the source's path");
  check_output_path(out_dir, OutputKind::Folder, {{"the source", source_path}});
  return std::make_unique<HfFloatWriter>(source, source_path, out_dir, max_shard_bytes);
}

}  // namespace cdq
