#include <unistd.h>

#include <algorithm>
#include <cdquant/calibration.hpp>
#include <cdquant/output_file.hpp>
#include <cdquant/output_format.hpp>
#include <cdquant/quantize_job.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "export/allocation_job.hpp"

namespace cdq {

namespace fs = std::filesystem;

std::vector<std::vector<int>> calibration_from_file(const std::string& text_path,
                                                    const Tokenizer& tokenizer, int nsamples,
                                                    int seqlen, uint64_t seed, int bos_id) {
  const std::string text = read_file(text_path);
  return sample_calibration_text(text, tokenizer, nsamples, seqlen, seed, true, bos_id);
}

CalibrationSource calibration_source(const QuantizeJob& job) {
  // GGUF block scales are fitted with importance diag(H) unless --no-importance: the format
  // reads H then, whatever the method does, except for HQQ's block fit, which is data-free
  // (the types it cannot serve then take ggml's plain rule). A size budget always calibrates,
  // for the sensitivities.
  const bool format_reads_h = find_output_format(job.out_format).grid == GridKind::GgmlBlock &&
                              job.gguf.importance &&
                              !uses_hqq_block_scales(job.quant.method, job.quant.solver);
  if (!format_reads_h && !needs_hessian(job.quant.method, job.quant.solver) &&
      !job.allocation.active())
    return CalibrationSource::None;
  if (job.calib_path.empty() || job.calib_path == "self") return CalibrationSource::Self;
  return CalibrationSource::Text;
}

namespace {

// An OutputFile: the file appears whole or not at all.
void save_text(const std::string& path, const std::string& text) {
  OutputFile out(path);
  out.write(text);
  out.commit();
}

// The model's own samples (temperature 1 from BOS), saved as text when asked.
std::vector<std::vector<int>> self_windows(const QuantizeJob& job, ModelReader& reader,
                                           int seqlen) {
  const auto t0 = std::chrono::steady_clock::now();
  const Model model = load_model(reader);
  auto windows = self_calibration(model, job.nsamples, seqlen, job.seed, job.on_self_calibration);
  if (job.on_note)
    job.on_note(fmt::format(
        "self-calibration: {} windows x {} tokens sampled by the model in {:.1f}s", windows.size(),
        seqlen, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
  if (!job.save_calib_path.empty()) {
    const auto tokenizer = tokenizer_for_model(job.model_path, job.tokenizer_path);
    std::string text;
    for (const auto& w : windows) text += tokenizer->decode(w) + "\n\n";
    save_text(job.save_calib_path, text);
  }
  return windows;
}

std::vector<std::vector<int>> calibration_windows(const QuantizeJob& job, ModelReader& reader,
                                                  int seqlen) {
  switch (calibration_source(job)) {
    case CalibrationSource::None:
      return {};
    case CalibrationSource::Self:
      return self_windows(job, reader, seqlen);
    case CalibrationSource::Text:
      break;
  }
  const auto tokenizer = tokenizer_for_model(job.model_path, job.tokenizer_path);
  const std::string text = read_file(job.calib_path);
  auto windows = sample_calibration_text(text, *tokenizer, job.nsamples, seqlen, job.seed, true,
                                         reader.config().bos_id);
  const std::string warning =
      degenerate_calibration_warning(measure_calibration_text(text, windows));
  if (!warning.empty() && job.on_warning) job.on_warning(job.calib_path + ": " + warning);
  return windows;
}

// The block inputs, outputs and FFN activations of every calibration token are held at once:
// at least (2 * dim + hidden) floats per token. A run that cannot fit even that is refused
// before any work, with the sizes that made it too large (instead of std::bad_alloc later).
void check_calibration_fits(const ModelConfig& c, int nsamples, int seqlen) {
  const double tokens = static_cast<double>(nsamples) * seqlen;
  const double bytes = tokens * (2.0 * c.dim + c.hidden_dim) * sizeof(float);
  const double ram = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
  CDQ_CHECK(ram <= 0 || bytes <= ram,
            "--nsamples {} x --seqlen {} = {:.0f} calibration tokens need at least {:.1f} GB "
            "of activations (dim {}, FFN {}), more than this machine's {:.1f} GB of memory: "
            "lower --nsamples or --seqlen",
            nsamples, seqlen, tokens, bytes / 1e9, c.dim, c.hidden_dim, ram / 1e9);
}

// The outputs may replace neither an input nor anything that is not an output, and their
// location must be writable: all checked before any long work.
void check_outputs(const QuantizeJob& job, OutputKind kind) {
  std::vector<RunInput> inputs = {{"--model", job.model_path}};
  if (!job.tokenizer_path.empty())
    inputs.push_back({"--tokenizer", job.tokenizer_path});
  else
    inputs.push_back({"the model's tokenizer", find_tokenizer_for(job.model_path)});
  if (!job.calib_path.empty() && job.calib_path != "self")
    inputs.push_back({"--calib", job.calib_path});
  check_output_path(job.out_path, kind, inputs);
  check_output_writable(job.out_path);
  if (job.save_calib_path.empty()) return;
  CDQ_CHECK(calibration_source(job) != CalibrationSource::Text,
            "--save-calib keeps self-calibration samples; the calibration text {} is already a "
            "file",
            job.calib_path);
  std::error_code ec;
  CDQ_CHECK(fs::weakly_canonical(fs::absolute(job.save_calib_path), ec) !=
                fs::weakly_canonical(fs::absolute(job.out_path), ec),
            "--save-calib {} and --out {} name the same path", job.save_calib_path, job.out_path);
  check_output_path(job.save_calib_path, OutputKind::File, inputs, "--save-calib");
  check_output_writable(job.save_calib_path);
}

}  // namespace

QuantizeSummary run_quantize_job(const QuantizeJob& job) {
  CDQ_CHECK(!job.out_path.empty(), "no output path given (--out)");
  const OutputFormat& format = find_output_format(job.out_format);
  check_format_holds(format, job.quant.method);
  auto reader = open_model(job.model_path);
  check_outputs(job, format.output_kind(reader->format()));
  const ModelConfig& config = reader->config();
  const int seqlen = job.seqlen > 0 ? job.seqlen : std::min(config.max_seq_len, 2048);
  CDQ_CHECK(seqlen <= config.max_seq_len, "--seqlen {} exceeds the model's context of {}", seqlen,
            config.max_seq_len);
  if (calibration_source(job) != CalibrationSource::None)
    check_calibration_fits(config, job.nsamples, seqlen);
  GgufExportOptions gguf = job.gguf;
  gguf.source_path = job.model_path;
  if (gguf.tokenizer_path.empty()) gguf.tokenizer_path = job.tokenizer_path;
  // Without calibration there is no diag(H) to weight ggml's block-scale search by.
  if (calibration_source(job) == CalibrationSource::None) gguf.importance = false;
  gguf.hqq_block_scales = uses_hqq_block_scales(job.quant.method, job.quant.solver);
  QuantizeOptions quant = job.quant;
  format.constrain(quant.solver);
  // A size budget needs the calibration first (sensitivities, candidate errors): it sets the
  // types the writer plans with.
  std::vector<std::vector<int>> windows;
  std::string allocation;
  if (job.allocation.active()) {
    windows = calibration_windows(job, *reader, seqlen);
    allocation = apply_allocation(job, *reader, windows, quant, gguf);
  }
  // The writer comes before calibration: what the format cannot store fails at once, and the
  // output (under its temporary name) exists from the start. Under MPI only rank 0 writes.
  const bool writes = quant.comm == nullptr || quant.comm->rank() == 0;
  const auto writer = writes ? format.make_writer({*reader, job.model_path, job.out_path, quant,
                                                   gguf, job.gptq, allocation})
                             : nullptr;
  // Formats that store codes fix the grids they hold (GGUF block grids) or keep float what they
  // cannot hold (GPTQ's unpackable linears); a float output (even an F32 GGUF) stores whatever
  // the solver chose.
  if (writer && (format.grid == GridKind::GgmlBlock || format.stores_codes))
    quant.choose_grid = writer->grid_chooser();
  if (writer && job.on_note)
    for (const std::string& note : writer->notes()) job.on_note(note);
  if (!job.allocation.active()) windows = calibration_windows(job, *reader, seqlen);
  const QuantizeSummary summary =
      quantize_model(*reader, windows, quant,
                     [&](int layer, BlockWeights& block, std::vector<LinearResult>& linears) {
                       for (const LinearResult& r : linears) check_format_holds(format, r);
                       writer->write_block(layer, block, linears);
                     });
  if (!writer) return summary;
  writer->finish();
  if (job.allocation.target_size > 0) {
    int64_t bytes = 0;
    if (job.out_format == "gguf") {
      bytes = static_cast<int64_t>(std::filesystem::file_size(job.out_path));
    } else {  // GPTQ: the safetensors shards
      for (const auto& e : std::filesystem::directory_iterator(job.out_path))
        if (e.path().extension() == ".safetensors") bytes += static_cast<int64_t>(e.file_size());
    }
    CDQ_CHECK(bytes <= job.allocation.target_size,
              "internal: {} has {} bytes, over the budget of {} (the size plan is wrong)",
              job.out_path, bytes, job.allocation.target_size);
  }
  return summary;
}

}  // namespace cdq
