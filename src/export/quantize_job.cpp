#include <algorithm>
#include <cdquant/calibration.hpp>
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

std::vector<std::vector<int>> calibration_from_file(const std::string& text_path,
                                                    const Tokenizer& tokenizer, int nsamples,
                                                    int seqlen, uint64_t seed, int bos_id) {
  const std::string text = read_file(text_path);
  return sample_calibration_text(text, tokenizer, nsamples, seqlen, seed, true, bos_id);
}

CalibrationSource calibration_source(const QuantizeJob& job) {
  // GGUF block scales are fitted with importance diag(H) unless --no-importance: the format
  // reads H then, whatever the method does.
  const bool format_reads_h =
      find_output_format(job.out_format).grid == GridKind::GgmlBlock && job.gguf.importance;
  if (!format_reads_h && !needs_hessian(job.quant.method, job.quant.solver) &&
      !job.allocation.active())
    return CalibrationSource::None;
  if (job.calib_path.empty() || job.calib_path == "self") return CalibrationSource::Self;
  return CalibrationSource::Text;
}

namespace {

// Written under a temporary name and renamed, so the file appears whole or not at all.
void save_text(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    CDQ_CHECK(out.good(), "{}: cannot be written", path);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    CDQ_CHECK(!out.fail(), "{}: writing failed (disk full?)", path);
  }
  CDQ_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "{}: cannot be written", path);
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
  CDQ_CHECK(job.save_calib_path.empty(),
            "--save-calib keeps self-calibration samples; the "
            "calibration text {} is already a file",
            job.calib_path);
  const auto tokenizer = tokenizer_for_model(job.model_path, job.tokenizer_path);
  return calibration_from_file(job.calib_path, *tokenizer, job.nsamples, seqlen, job.seed,
                               reader.config().bos_id);
}

}  // namespace

QuantizeSummary run_quantize_job(const QuantizeJob& job) {
  CDQ_CHECK(!job.out_path.empty(), "no output path given (--out)");
  const OutputFormat& format = find_output_format(job.out_format);
  check_format_holds(format, job.quant.method);
  auto reader = open_model(job.model_path);
  const ModelConfig& config = reader->config();
  const int seqlen = job.seqlen > 0 ? job.seqlen : std::min(config.max_seq_len, 2048);
  CDQ_CHECK(seqlen <= config.max_seq_len, "--seqlen {} exceeds the model's context of {}", seqlen,
            config.max_seq_len);
  const auto windows = calibration_windows(job, *reader, seqlen);
  GgufExportOptions gguf = job.gguf;
  gguf.source_path = job.model_path;
  if (gguf.tokenizer_path.empty()) gguf.tokenizer_path = job.tokenizer_path;
  // Without calibration there is no diag(H) to weight ggml's block-scale search by.
  if (windows.empty()) gguf.importance = false;
  QuantizeOptions quant = job.quant;
  format.constrain(quant.solver);
  std::string allocation;
  if (job.allocation.active()) allocation = apply_allocation(job, *reader, windows, quant, gguf);
  const auto writer =
      format.make_writer({*reader, job.model_path, job.out_path, quant, gguf, allocation});
  if (format.grid == GridKind::GgmlBlock) quant.choose_grid = writer->grid_chooser();
  if (job.on_note)
    for (const std::string& note : writer->notes()) job.on_note(note);
  const QuantizeSummary summary =
      quantize_model(*reader, windows, quant,
                     [&](int layer, BlockWeights& block, std::vector<LinearResult>& linears) {
                       for (const LinearResult& r : linears) check_format_holds(format, r);
                       writer->write_block(layer, block, linears);
                     });
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
