// The output-format registry (cdquant/output_format.hpp): one row per --format, and the float
// writers by input format. The only place that names formats.
#include <fmt/format.h>

#include <cdquant/error.hpp>
#include <cdquant/gptq_export.hpp>
#include <cdquant/model_tokenizer.hpp>
#include <cdquant/output_format.hpp>
#include <string>

#include "export/hf_writer.hpp"

namespace cdq {

namespace {

void no_constraint(SolverOptions&) {}
// GPTQ checkpoints store scales as fp16: fitted scales are rounded as they are chosen, so the
// checkpoint reproduces the solver's grid exactly.
void fp16_scales(SolverOptions& o) {
  o.grid.fp16_scales = true;
}

std::unique_ptr<ModelWriter> gguf_writer(const OutputRequest& r, const GgufExportOptions& opt) {
  const auto tokenizer = load_model_tokenizer(opt.source_path, opt.tokenizer_path);
  return std::make_unique<GgufModelWriter>(r.source, r.out_path, tokenizer->vocab(), opt);
}

std::unique_ptr<ModelWriter> make_gguf(const OutputRequest& r) {
  return gguf_writer(r, r.gguf);
}

std::unique_ptr<ModelWriter> make_gptq(const OutputRequest& r) {
  return make_gptq_writer(r.source, r.source_path, r.out_path, r.quant, kHfShardBytes, r.gptq,
                          r.allocation);
}

// Float outputs keep the input's own format.
struct FloatWriter {
  std::string_view input_format;  // ModelReader::format()
  WriterFactory make;
};

// A GGUF input gives an F32 GGUF (F16 or BF16 when --type names one): every tensor a float
// type, so no block grid is fixed and the dequantized weights are stored as they are.
std::unique_ptr<ModelWriter> float_gguf(const OutputRequest& r) {
  GgufExportOptions opt = r.gguf;
  if (opt.type != "F16" && opt.type != "BF16") opt.type = "F32";
  opt.overrides.clear();
  opt.output_type.clear();
  opt.embedding_type.clear();
  return gguf_writer(r, opt);
}

constexpr FloatWriter kFloatWriters[] = {
    {"llama2c",
     [](const OutputRequest& r) { return make_llama2c_float_writer(r.source, r.out_path); }},
    {"hf",
     [](const OutputRequest& r) {
       return make_hf_float_writer(r.source, r.source_path, r.out_path);
     }},
    {"gguf", float_gguf},
};

std::unique_ptr<ModelWriter> make_float(const OutputRequest& r) {
  const std::string in = r.source.format();
  for (const FloatWriter& w : kFloatWriters)
    if (in == w.input_format) return w.make(r);
  fail("{}: a float checkpoint in the '{}' format cannot be written; use --format gguf or gptq",
       r.source_path, in);
}

OutputKind one_file(std::string_view) {
  return OutputKind::File;
}
OutputKind one_folder(std::string_view) {
  return OutputKind::Folder;
}
OutputKind like_the_input(std::string_view input_format) {
  return input_format == "hf" ? OutputKind::Folder : OutputKind::File;
}

constexpr OutputFormat kFormats[] = {
    {"float",
     "dequantized weights in the input's own format (llama2.c .bin, HF safetensors directory in "
     "the source's dtypes, or an F32/F16 GGUF for a GGUF input)",
     GridKind::Free, no_constraint, false, make_float, open_model, like_the_input},
    {"gguf",
     "llama.cpp GGUF file in ggml block types (--type, --override); the codes are chosen by "
     "--method on each type's block grid",
     GridKind::GgmlBlock, no_constraint, true, make_gguf, open_model, one_file},
    {"gptq",
     "HF GPTQ checkpoint directory (2/3/4/8 bits, fp16 scales) for vLLM, transformers and "
     "GPTQModel",
     GridKind::Free, fp16_scales, true, make_gptq, open_model, one_folder},
};

}  // namespace

std::span<const OutputFormat> output_formats() {
  return kFormats;
}

const OutputFormat& find_output_format(std::string_view name) {
  std::vector<std::string> names;
  for (const OutputFormat& f : kFormats) {
    if (name == f.name) return f;
    names.emplace_back(f.name);
  }
  fail("unknown output format '{}' (expected {})", name, method_list(names));
}

std::string output_format_help() {
  std::string out;
  for (const OutputFormat& f : kFormats)
    out += fmt::format("{}{} — {}", out.empty() ? "" : "\n", f.name, f.description);
  return out;
}

void check_format_holds(const OutputFormat& format, Method method) {
  const char* why = method.info().float_only_reason;
  CDQ_CHECK(!format.stores_codes || why == nullptr,
            "--format {} cannot hold --method {}: it {}; use --format float", format.name,
            method.name(), why);
  CDQ_CHECK(supports(method, format.grid), "--method {} cannot solve on the grids of --format {}",
            method.name(), format.name);
}

void check_format_holds(const OutputFormat& format, const LinearResult& linear) {
  CDQ_CHECK(!format.stores_codes || linear.transform_export == TransformExport::Nothing,
            "--format {} stores codes, but {} was solved in the '{}' basis, which it cannot "
            "record; use --format float",
            format.name, linear_display_name(linear.layer, linear.linear), linear.transform);
}

}  // namespace cdq
