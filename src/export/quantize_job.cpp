#include <algorithm>
#include <cdquant/calibration.hpp>
#include <cdquant/output_format.hpp>
#include <cdquant/quantize_job.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>

namespace cdq {

std::vector<std::vector<int>> calibration_from_file(const std::string& text_path,
                                                    const Tokenizer& tokenizer, int nsamples,
                                                    int seqlen, uint64_t seed, int bos_id) {
  const std::string text = read_file(text_path);
  return sample_calibration_text(text, tokenizer, nsamples, seqlen, seed, true, bos_id);
}

QuantizeSummary run_quantize_job(const QuantizeJob& job) {
  CDQ_CHECK(!job.out_path.empty(), "no output path given (--out)");
  const OutputFormat& format = find_output_format(job.out_format);
  check_format_holds(format, job.quant.method);
  auto reader = open_model(job.model_path);
  const ModelConfig& config = reader->config();
  const int seqlen = job.seqlen > 0 ? job.seqlen : std::min(config.max_seq_len, 2048);
  CDQ_CHECK(seqlen <= config.max_seq_len, "--seqlen {} exceeds the model's context of {}", seqlen,
            config.max_seq_len);
  const auto tokenizer = tokenizer_for_model(job.model_path, job.tokenizer_path);
  const auto windows = calibration_from_file(job.calib_path, *tokenizer, job.nsamples, seqlen,
                                             job.seed, config.bos_id);
  GgufExportOptions gguf = job.gguf;
  gguf.source_path = job.model_path;
  if (gguf.tokenizer_path.empty()) gguf.tokenizer_path = job.tokenizer_path;
  QuantizeOptions quant = job.quant;
  format.constrain(quant.solver);
  const auto writer = format.make_writer({*reader, job.model_path, job.out_path, quant, gguf});
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
  return summary;
}

}  // namespace cdq
