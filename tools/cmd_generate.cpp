// cdquant generate: sample text from a model (float or quantized) with a KV cache, e.g. to read
// what a quantized file says, or to draw in-domain text from a model whose training text is
// out of reach.
#include <fmt/core.h>
#include <fmt/os.h>

#include <cdquant/model.hpp>
#include <cdquant/model_tokenizer.hpp>
#include <cdquant/output_file.hpp>
#include <cdquant/sampling.hpp>
#include <cdquant/tokenizer.hpp>
#include <cstdio>

#include "cli_checks.hpp"
#include "commands.hpp"

namespace cdq::cli {

namespace {

struct GenerateFlags {
  std::string model, tokenizer, prompt, out;
  int samples = 1;
  uint64_t seed = 0;
  bool quiet = false;
  SampleOptions sampling;
};

void run_generate(const GenerateFlags& f) {
  validate(f.sampling);
  std::unique_ptr<OutputFile> out;  // appears whole when every sample is written
  if (!f.out.empty()) {
    check_output_path(
        f.out, OutputKind::File,
        {{"--model", f.model},
         {"the tokenizer", f.tokenizer.empty() ? find_tokenizer_for(f.model) : f.tokenizer}});
    out = std::make_unique<OutputFile>(f.out);
  }
  const Model model = load_model(f.model);
  const auto tokenizer = load_model_tokenizer(f.model, f.tokenizer);
  check_tokenizer_fits(*tokenizer, model.config, f.model);
  const std::vector<int> prompt = tokenizer->encode(f.prompt, true);
  CDQ_CHECK(!prompt.empty(), "generate: empty prompt and the tokenizer has no BOS to start from");
  SampleOptions opt = f.sampling;
  for (int id : {tokenizer->bos_id, tokenizer->eos_id})
    if (id >= 0) opt.stop_ids.push_back(id);

  Decoder decoder(model);
  Rng rng(f.seed);
  size_t n_tokens = 0;
  for (int s = 0; s < f.samples; ++s) {
    const std::vector<int> ids = generate(decoder, prompt, opt, rng);
    n_tokens += ids.size();
    std::vector<int> all(prompt);
    all.insert(all.end(), ids.begin(), ids.end());
    // One sample per paragraph: text, then a blank line.
    const std::string text = fmt::format("{}\n\n", tokenizer->decode(all));
    if (out)
      out->write(text);
    else
      fmt::print(stdout, "{}", text);
    if (!f.quiet && !f.out.empty() && ((s + 1) % 50 == 0 || s + 1 == f.samples))
      fmt::print(stderr, "generate: {}/{} samples, {} tokens\n", s + 1, f.samples, n_tokens);
  }
  if (out) out->commit();
}

}  // namespace

void register_generate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  auto* cmd = app.add_subcommand(
      "generate",
      "Sample text from a model (llama2.c .bin, HF directory or .gguf, quantized or not). Each "
      "sample starts from BOS + --prompt and ends at BOS/EOS or --max-tokens; samples are "
      "printed one per paragraph. The same --seed gives the same text (up to float rounding "
      "differences between CPUs).");
  cmd->add_option("--model", f->model, "Checkpoint: llama2.c .bin, HF directory, or .gguf")
      ->required();
  cmd->add_option("--tokenizer", f->tokenizer,
                  "Tokenizer file (default: the one inside or beside the model)");
  cmd->add_option("--prompt", f->prompt, "Text every sample continues (default: none)");
  cmd->add_option("--samples", f->samples, "Number of independent samples")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--max-tokens", f->sampling.max_tokens,
                  "New tokens per sample at most (the model's context also bounds it)")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--temperature", f->sampling.temperature,
                  "Softmax temperature; 1 draws from the model's own distribution, 0 is greedy")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--top-p", f->sampling.top_p,
                  "Nucleus sampling: draw among the most likely tokens holding this much mass")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--seed", f->seed, "Seed of the sampling")->check(kSeed)->capture_default_str();
  cmd->add_option("--out", f->out, "Write the samples to this file instead of stdout");
  cmd->add_flag("--quiet", f->quiet, "No progress on stderr");
  cmd->callback([f] { run_generate(*f); });
}

}  // namespace cdq::cli
