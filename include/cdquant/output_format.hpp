// The output-format registry: every checkpoint format `cdquant quantize --format` can write is
// one row of one table (src/export/output_formats.cpp): its name, a one-line description, the
// grid constraint it imposes on the solver, whether it stores codes (and so cannot hold
// weights that live outside a grid), its writer factory, and the reader that reads the result
// back. The job, the CLI's help and validation all come from the table.
#pragma once

#include <cdquant/gguf_export.hpp>
#include <cdquant/gptq_export.hpp>
#include <cdquant/grid_constraint.hpp>
#include <cdquant/method.hpp>
#include <cdquant/model.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/output_file.hpp>
#include <cdquant/quantize.hpp>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace cdq {

// What a writer factory is given.
struct OutputRequest {
  ModelReader& source;
  std::string source_path;
  std::string out_path;
  const QuantizeOptions& quant;   // as the format constrained it
  const GgufExportOptions& gguf;  // types and overrides; source and tokenizer paths filled in
  const GptqExportOptions& gptq;
  std::string allocation = "";    // a size-budget allocation's plan (JSON) for the metadata
};

using WriterFactory = std::unique_ptr<ModelWriter> (*)(const OutputRequest& request);
using ResultReader = std::unique_ptr<ModelReader> (*)(const std::string& path);

struct OutputFormat {
  std::string_view name;         // what --format takes
  std::string_view description;  // one line, for --help
  // The grid the solver may choose: Free (its own integer grid, fitted from GridSpec) or
  // GgmlBlock (the writer fixes each tensor's block grid through ModelWriter::grid_chooser).
  GridKind grid;
  // How the format stores that grid, applied to the solver options before the run (GPTQ
  // checkpoints store fp16 scales, so the solver rounds its scales to fp16 as it fits them).
  void (*constrain)(SolverOptions& options);
  // Packed codes on the grid: such a format cannot hold a method's float-only weights
  // (MethodInfo::float_only_reason) nor codes solved in a transformed basis.
  bool stores_codes;
  WriterFactory make_writer;
  ResultReader open_result;
  // A file or a folder, for a source in this input format (ModelReader::format()).
  OutputKind (*output_kind)(std::string_view input_format);
};

// The rows, in table order.
std::span<const OutputFormat> output_formats();
// The row named `name`; unknown names throw an Error listing every valid one.
const OutputFormat& find_output_format(std::string_view name);
// "name — description" lines, one per row (no final newline), for --help.
std::string output_format_help();

// Throws Error, naming method and format, when the format cannot hold what the method makes.
void check_format_holds(const OutputFormat& format, Method method);
// Throws Error, naming the tensor, when a packed format is handed codes in a transformed basis.
void check_format_holds(const OutputFormat& format, const LinearResult& linear);

}  // namespace cdq
