// The ggml type of every tensor of a GGUF export, following llama.cpp's llama-quantize
// (src/llama-quant.cpp, llama_tensor_get_type) for dense llama models:
//  - a plain type puts every linear in that type; a K mix raises some tensors:
//      attn_v:      Q3_K_M: Q5_K in layers 0-1 else Q4_K; Q3_K_L: Q5_K;
//                   Q4_K_M / Q5_K_M: Q6_K where use_more_bits; Q4_K_S: Q5_K in layers 0-3
//      ffn_down:    Q3_K_M: Q5_K below n/16 else Q4_K; Q3_K_L: Q5_K;
//                   Q4_K_M / Q5_K_M: Q6_K where use_more_bits; Q4_K_S: Q5_K below n/8
//      attn_output: Q3_K_M: Q4_K; Q3_K_L: Q5_K
//    with use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2.
//  - output.weight (and token_embd when tied, since it is then the classifier): Q6_K, or Q8_0
//    for a Q8_0 base or when the row is not a multiple of the base type's block; token_embd
//    untied: the base type. Float bases (F32/F16/BF16) keep every tensor in that type.
//  - IQ4_NL / IQ4_XS (llama.cpp's ftypes of those names): attn_v in Q5_K when n_head / n_kv_head
//    >= 4, ffn_down of layers below n/8 in Q5_K when there is no imatrix (--no-importance).
//  - rows that do not fill the type's blocks fall back as llama.cpp does (tensor_type_fallback):
//    Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K / Q3_K -> Q4_0, IQ4_XS -> IQ4_NL, then F16
//    when not even a multiple of 32.
// Not modelled: llama.cpp's special cases for 70B (attn_v) and mixture-of-experts models, and
// its Q2_K / IQ mixes (--type Q2_K is plain Q2_K).
#include <cdquant/gguf_export.hpp>
#include <regex>

#include "model/gguf_arch.hpp"

namespace cdq {

namespace {

enum class Mix { None, Q3KS, Q3KM, Q3KL, Q4KS, Q4KM, Q5KS, Q5KM };

struct Spec {
  GgmlType base = GgmlType::F32;
  Mix mix = Mix::None;
  uint32_t file_type = 0;  // LLAMA_FTYPE
};

struct MixName {
  const char* name;
  Mix mix;
  GgmlType base;
  uint32_t file_type;
};
constexpr MixName kMixes[] = {
    {"Q3_K_S", Mix::Q3KS, GgmlType::Q3_K, 11}, {"Q3_K_M", Mix::Q3KM, GgmlType::Q3_K, 12},
    {"Q3_K_L", Mix::Q3KL, GgmlType::Q3_K, 13}, {"Q4_K_S", Mix::Q4KS, GgmlType::Q4_K, 14},
    {"Q4_K_M", Mix::Q4KM, GgmlType::Q4_K, 15}, {"Q5_K_S", Mix::Q5KS, GgmlType::Q5_K, 16},
    {"Q5_K_M", Mix::Q5KM, GgmlType::Q5_K, 17},
};

// LLAMA_FTYPE of a plain type: the K types as llama.cpp names a file whose tensors are mostly
// of that type (llama_model_loader's guess: Q3_K -> Q3_K_M, Q4_K -> Q4_K_M, Q5_K -> Q5_K_M), so
// that a plain --type Q4_K is not announced as "Q4_K - Small", a mix it did not apply.
uint32_t plain_file_type(GgmlType t) {
  switch (t) {
    case GgmlType::F32:
      return 0;
    case GgmlType::F16:
      return 1;
    case GgmlType::Q4_0:
      return 2;
    case GgmlType::Q4_1:
      return 3;
    case GgmlType::Q8_0:
      return 7;
    case GgmlType::Q5_0:
      return 8;
    case GgmlType::Q5_1:
      return 9;
    case GgmlType::Q2_K:
      return 10;
    case GgmlType::Q3_K:
      return 12;  // Q3_K_M
    case GgmlType::Q4_K:
      return 15;  // Q4_K_M
    case GgmlType::Q5_K:
      return 17;  // Q5_K_M
    case GgmlType::Q6_K:
      return 18;
    case GgmlType::IQ4_NL:
      return 25;
    case GgmlType::IQ4_XS:
      return 30;
    case GgmlType::BF16:
      return 32;
  }
  return 0;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

Spec parse_spec(std::string_view name) {
  const std::string u = upper(name);
  for (const MixName& m : kMixes)
    if (u == m.name) return {m.base, m.mix, m.file_type};
  try {
    const GgmlType t = parse_ggml_type(name);
    return {t, Mix::None, plain_file_type(t)};
  } catch (const Error&) {
    fail(
        "unknown GGUF type '{}' (types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, "
        "Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS; mixes: Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, "
        "Q5_K_S, Q5_K_M)",
        name);
  }
}

bool use_more_bits(int i, int n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// llama.cpp's IQ4_NL / IQ4_XS ftypes raise attn_v for wide GQA and, without an imatrix, the
// first eighth of ffn_down (llama_tensor_get_type_impl).
GgmlType iq4_type(const Spec& s, int i, int n, Linear l, int n_gqa, bool importance) {
  if (l == Linear::V && n_gqa >= 4) return GgmlType::Q5_K;
  if (l == Linear::Down && i < n / 8 && !importance) return GgmlType::Q5_K;
  return s.base;
}

// The mix's type of one linear before fallbacks.
GgmlType mix_type(const Spec& s, int i, int n, Linear l, int n_gqa, bool importance) {
  const GgmlType base = s.base;
  if (ggml_traits(base).codebook) return iq4_type(s, i, n, l, n_gqa, importance);
  switch (l) {
    case Linear::V:
      if (s.mix == Mix::Q3KM) return i < 2 ? GgmlType::Q5_K : GgmlType::Q4_K;
      if (s.mix == Mix::Q3KL) return GgmlType::Q5_K;
      if ((s.mix == Mix::Q4KM || s.mix == Mix::Q5KM) && use_more_bits(i, n)) return GgmlType::Q6_K;
      if (s.mix == Mix::Q4KS && i < 4) return GgmlType::Q5_K;
      return base;
    case Linear::Down:
      if (s.mix == Mix::Q3KM) return i < n / 16 ? GgmlType::Q5_K : GgmlType::Q4_K;
      if (s.mix == Mix::Q3KL) return GgmlType::Q5_K;
      if ((s.mix == Mix::Q4KM || s.mix == Mix::Q5KM) && use_more_bits(i, n)) return GgmlType::Q6_K;
      if (s.mix == Mix::Q4KS && i < n / 8) return GgmlType::Q5_K;
      return base;
    case Linear::O:
      if (s.mix == Mix::Q3KM) return GgmlType::Q4_K;
      if (s.mix == Mix::Q3KL) return GgmlType::Q5_K;
      return base;
    default:
      return base;
  }
}

struct Override {
  std::regex pattern;
  std::string text;
  GgmlType type;
};

std::vector<Override> parse_overrides(const std::vector<std::string>& specs) {
  std::vector<Override> out;
  for (const std::string& s : specs) {
    const size_t eq = s.rfind('=');
    CDQ_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < s.size(),
              "--override '{}': expected PATTERN=TYPE (e.g. 'ffn_down=Q6_K')", s);
    const std::string pat = s.substr(0, eq);
    try {
      out.push_back({std::regex(pat), pat, parse_ggml_type(s.substr(eq + 1))});
    } catch (const std::regex_error& e) {
      fail("--override '{}': bad regular expression '{}': {}", s, pat, e.what());
    }
  }
  return out;
}

// Applies the first matching override, then the block-size fallback; notes any change.
GgmlType finalize(GgmlType t, const std::string& name, int64_t cols,
                  const std::vector<Override>& overrides, std::string& note) {
  for (const Override& o : overrides) {
    if (std::regex_search(name, o.pattern)) {
      if (o.type != t)
        note = fmt::format("{}: {} by --override '{}'", name, ggml_type_name(o.type), o.text);
      t = o.type;
      break;
    }
  }
  const GgmlTypeTraits& tr = ggml_traits(t);
  if (cols % tr.block_size == 0) return t;
  GgmlType f = GgmlType::F16;
  switch (t) {
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
      f = GgmlType::Q4_0;
      break;
    case GgmlType::Q4_K:
      f = GgmlType::Q5_0;
      break;
    case GgmlType::Q5_K:
      f = GgmlType::Q5_1;
      break;
    case GgmlType::Q6_K:
      f = GgmlType::Q8_0;
      break;
    case GgmlType::IQ4_XS:
      f = GgmlType::IQ4_NL;
      break;
    default:
      break;
  }
  if (cols % ggml_traits(f).block_size != 0) f = GgmlType::F16;
  note = fmt::format("{}: rows of {} weights are not a multiple of {} ({} blocks): using {}", name,
                     cols, tr.block_size, tr.name, ggml_type_name(f));
  return f;
}

}  // namespace

GgufPlan::GgufPlan(const ModelConfig& config, const GgufExportOptions& options) : config_(config) {
  const Spec spec = parse_spec(options.type);
  const auto overrides = parse_overrides(options.overrides);
  file_type_ = spec.file_type;
  const bool quantized = ggml_traits(spec.base).quantized();
  const int n = config.n_layers;
  const int n_gqa = config.n_kv_heads > 0 ? config.n_heads / config.n_kv_heads : 1;
  linears_.resize(static_cast<size_t>(n) * 7);
  linear_notes_.resize(linears_.size());
  const auto record = [&](const std::string& note) {
    if (!note.empty()) notes_.push_back(note);
  };
  for (int i = 0; i < n; ++i) {
    for (Linear l : kAllLinears) {
      const size_t k = static_cast<size_t>(i) * 7 + static_cast<size_t>(l);
      const auto chosen = options.tensor_types.find(gguf_linear_name(i, l));
      const GgmlType t = chosen != options.tensor_types.end()
                             ? chosen->second
                         : quantized ? mix_type(spec, i, n, l, n_gqa, options.importance)
                                     : spec.base;
      const int64_t cols = (l == Linear::O)      ? config.q_dim()
                           : (l == Linear::Down) ? config.hidden_dim
                                                 : config.dim;
      linears_[k] = finalize(t, gguf_linear_name(i, l), cols, overrides, linear_notes_[k]);
      record(linear_notes_[k]);
    }
  }
  // Classifier (output.weight, or token_embd when tied).
  GgmlType out = spec.base;
  if (!options.output_type.empty()) {
    out = parse_ggml_type(options.output_type);
  } else if (quantized) {
    if (config.dim % ggml_traits(spec.base).block_size != 0 || spec.base == GgmlType::Q8_0)
      out = GgmlType::Q8_0;
    else
      out = GgmlType::Q6_K;
  }
  std::string note;
  output_ = finalize(out, config.tied_embeddings ? "token_embd.weight" : "output.weight",
                     config.dim, overrides, note);
  record(note);
  if (config.tied_embeddings) {
    embeddings_ = output_;
  } else {
    const GgmlType e =
        options.embedding_type.empty() ? spec.base : parse_ggml_type(options.embedding_type);
    note.clear();
    embeddings_ = finalize(e, "token_embd.weight", config.dim, overrides, note);
    record(note);
  }
}

GgmlType GgufPlan::linear(int layer, Linear l) const {
  CDQ_ASSERT(layer >= 0 && layer < config_.n_layers);
  return linears_[static_cast<size_t>(layer) * 7 + static_cast<size_t>(l)];
}

std::string GgufPlan::note(int layer, Linear l) const {
  return linear_notes_[static_cast<size_t>(layer) * 7 + static_cast<size_t>(l)];
}

bool GgufPlan::any_quantized() const {
  for (GgmlType t : linears_)
    if (ggml_traits(t).quantized()) return true;
  return ggml_traits(embeddings_).quantized() || ggml_traits(output_).quantized();
}

}  // namespace cdq
