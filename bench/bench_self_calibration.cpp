// Self-calibration benchmark: nsamples windows sampled from each model, with the one-sequence
// Decoder (window after window) and with self_calibration's BatchDecoder at several batch
// sizes. Prints seconds, sampled tokens per second, the speed-up over the Decoder loop, and
// how many windows are the Decoder loop's (every window draws from its own stream, whatever
// decodes it, so all but the rare window where a draw landed within float rounding of a
// boundary of the cumulative distribution and one token flipped).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cdquant/decoder.hpp>
#include <cdquant/self_calibration.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace {

using Windows = std::vector<std::vector<int>>;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The windows of self_calibration, one token per Decoder step: the loop a caller would write
// without the batched decoder.
Windows decoder_loop(const cdq::Model& m, int nsamples, int seqlen, uint64_t seed) {
  const cdq::ModelConfig& c = m.config;
  cdq::Decoder dec(m);
  Windows out;
  for (int i = 0; i < nsamples; ++i) {
    cdq::Rng rng = cdq::self_calibration_rng(seed, i);
    dec.reset();
    std::vector<int> w = {c.bos_id};
    std::span<const float> logits = dec.step(c.bos_id);
    while (static_cast<int>(w.size()) < seqlen) {
      int next = cdq::sample_softmax(logits, rng);
      if (next == c.eos_id || next == c.bos_id) {
        next = c.bos_id;
        dec.reset();
      }
      w.push_back(next);
      if (static_cast<int>(w.size()) < seqlen) logits = dec.step(next);
    }
    out.push_back(std::move(w));
  }
  return out;
}

int same(const Windows& a, const Windows& b) {
  int n = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) n += a[i] == b[i];
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cdquant self-calibration benchmark (one-sequence Decoder vs BatchDecoder)"};
  std::string models =
      "../shared/models/stories260K.bin:512,../shared/models/babyllama-tok105/model5000.bin:256";
  std::string batches = "1,16,64,128,0";
  int nsamples = 128;
  int threads = 0;
  uint64_t seed = 1;
  bool skip_decoder = false;
  app.add_option("--models", models, "comma-separated PATH:SEQLEN (paths from the repo root)");
  app.add_option("--batches", batches,
                 "comma-separated batch sizes for self_calibration (0: its automatic choice)");
  app.add_option("--samples", nsamples, "windows per model");
  app.add_option("--threads", threads, "threads (0: OpenMP default)");
  app.add_option("--seed", seed, "sampling seed");
  app.add_flag("--skip-decoder", skip_decoder, "leave out the one-sequence Decoder loop");
  CLI11_PARSE(app, argc, argv);

  try {
    cdq::bench::set_threads(threads);
    fmt::print("{:>16} {:>7} {:>6} {:>14} {:>8} {:>9} {:>11} {:>8} {:>16}\n", "model", "samples",
               "seqlen", "decoder", "batch", "seconds", "tokens/s", "speedup", "same as Decoder");
    for (const auto& spec : cdq::bench::split(models, ',')) {
      const auto colon = spec.rfind(':');
      CDQ_CHECK(colon != std::string::npos, "model '{}' must look like PATH:SEQLEN", spec);
      const std::string path = spec.substr(0, colon);
      const int seqlen = std::stoi(spec.substr(colon + 1));
      const cdq::Model m = cdq::load_model(path);
      std::string name = path.substr(path.find_last_of('/') + 1);
      name = name.substr(0, name.find('.'));
      // Every window holds seqlen tokens, of which seqlen - 1 were decoded and sampled.
      const double tokens = static_cast<double>(nsamples) * (seqlen - 1);
      Windows reference;
      double reference_s = 0.0;
      if (!skip_decoder) {
        const auto t0 = std::chrono::steady_clock::now();
        reference = decoder_loop(m, nsamples, seqlen, seed);
        reference_s = seconds_since(t0);
        fmt::print("{:>16} {:>7} {:>6} {:>14} {:>8} {:>9.3f} {:>11.0f} {:>8} {:>16}\n", name,
                   nsamples, seqlen, "Decoder", 1, reference_s, tokens / reference_s, "1.0x", "-");
      }
      for (const auto& b : cdq::bench::split(batches, ',')) {
        const int batch = std::stoi(b);
        const auto t0 = std::chrono::steady_clock::now();
        const Windows w = cdq::self_calibration(m, nsamples, seqlen, seed, {}, batch);
        const double s = seconds_since(t0);
        const std::string shown =
            batch > 0
                ? std::to_string(batch)
                : fmt::format("auto {}", cdq::self_calibration_batch(m.config, nsamples, seqlen));
        fmt::print("{:>16} {:>7} {:>6} {:>14} {:>8} {:>9.3f} {:>11.0f} {:>8} {:>16}\n", name,
                   nsamples, seqlen, "BatchDecoder", shown, s, tokens / s,
                   skip_decoder ? "-" : fmt::format("{:.1f}x", reference_s / s),
                   skip_decoder ? "-" : fmt::format("{}/{}", same(w, reference), nsamples));
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
