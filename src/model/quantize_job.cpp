#include <algorithm>
#include <cdquant/calibration.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/quantize_job.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>

namespace cdq {

std::vector<int> tokenize_file(const std::string& text_path, const std::string& model_path,
                               const std::string& tokenizer_path) {
  std::string tok_path = tokenizer_path.empty() ? find_tokenizer_for(model_path) : tokenizer_path;
  CDQ_CHECK(!tok_path.empty(),
            "no tokenizer found beside {} (looked for tokenizer.json, tokenizer.model, "
            "tokenizer.bin, tok*.bin, tok*.model): pass --tokenizer",
            model_path);
  const auto tokenizer = load_tokenizer(tok_path);
  return tokenizer->encode(read_file(text_path), false);
}

QuantizeSummary run_quantize_job(const QuantizeJob& job) {
  CDQ_CHECK(!job.out_path.empty(), "no output path given (--out)");
  auto reader = open_model(job.model_path);
  const ModelConfig& config = reader->config();
  const int seqlen = job.seqlen > 0 ? job.seqlen : std::min(config.max_seq_len, 2048);
  CDQ_CHECK(seqlen <= config.max_seq_len, "--seqlen {} exceeds the model's context of {}", seqlen,
            config.max_seq_len);
  const std::vector<int> stream = tokenize_file(job.calib_path, job.model_path, job.tokenizer_path);
  const auto windows =
      sample_calibration_windows(stream, job.nsamples, seqlen, job.seed, true, config.bos_id);
  auto writer = make_model_writer(*reader, job.out_path, job.out_format);
  const QuantizeSummary summary =
      quantize_model(*reader, windows, job.quant,
                     [&](int layer, BlockWeights& block, std::vector<LinearResult>& linears) {
                       writer->write_block(layer, block, linears);
                     });
  writer->finish();
  return summary;
}

}  // namespace cdq
