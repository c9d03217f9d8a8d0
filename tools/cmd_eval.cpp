// cdquant eval: perplexity of a model on a text, and KL / top-1 agreement against a second
// (quantized) model on the same windows.
#include <fmt/core.h>
#include <unistd.h>

#include <cdquant/eval.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/model.hpp>
#include <cdquant/model_tokenizer.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli_checks.hpp"
#include "commands.hpp"

namespace cdq::cli {

namespace {

struct EvalFlags {
  std::string model, text, tokenizer, quantized;
  int ctx = 0;
  int max_windows = 0;
  bool no_bos = false;
  bool json = false;
  bool quiet = false;
  bool exact_activations = false;
};

// A \r-updated line on a terminal; otherwise a line about every 10% of a long run.
std::function<void(int, int)> progress_printer(bool quiet) {
  if (quiet) return {};
  const bool tty = isatty(fileno(stderr)) != 0;
  return [tty](int done, int total) {
    if (tty) {
      fmt::print(stderr, "\reval: window {}/{}", done, total);
      if (done == total) fmt::print(stderr, "\n");
    } else if (total >= 20 && done % ((total + 9) / 10) == 0) {
      fmt::print(stderr, "eval: window {}/{}\n", done, total);
    }
    std::fflush(stderr);
  };
}

void run_eval(const EvalFlags& f) {
  // The tokenizer: --tokenizer, the one inside a GGUF model, or the one beside the model.
  const std::string tok_path = !f.tokenizer.empty()    ? f.tokenizer
                               : is_gguf_file(f.model) ? f.model
                                                       : find_tokenizer_for(f.model);
  const auto tokenizer = load_model_tokenizer(f.model, f.tokenizer);
  Model model = load_model(f.model);
  check_tokenizer_fits(*tokenizer, model.config, tok_path);
  Model quantized;
  if (!f.quantized.empty()) quantized = load_model(f.quantized);
  use_engine_activations(model, !f.exact_activations);
  use_engine_activations(quantized, !f.exact_activations);

  // With BOS prepended to every window the stream itself carries none; otherwise the text
  // is one document starting with BOS.
  const bool prepend_bos = !f.no_bos && tokenizer->bos_id >= 0;
  const std::vector<int> stream = tokenizer->encode(read_file(f.text), !prepend_bos);

  EvalOptions opt;
  opt.ctx = f.ctx;
  opt.max_windows = f.max_windows;
  opt.prepend_bos = prepend_bos;
  opt.bos_id = tokenizer->bos_id;
  opt.progress = progress_printer(f.quiet || f.json);
  const EvalResult r = evaluate(model, stream, opt, f.quantized.empty() ? nullptr : &quantized);

  if (f.json) {
    nlohmann::ordered_json j;
    j["model"] = f.model;
    j["text"] = f.text;
    j["tokenizer"] = tok_path;
    j["tokens"] = stream.size();
    j["ctx"] = r.ctx;
    j["prepend_bos"] = prepend_bos;
    j["windows"] = r.windows;
    j["scored"] = r.scored;
    j["nll"] = r.nll;
    j["nll_se"] = r.nll_se;
    j["ppl"] = r.ppl;
    j["entropy"] = r.entropy;
    j["activations"] = f.exact_activations ? "exact" : "engine";
    if (r.compared) {
      j["quantized"] = {{"path", f.quantized},
                        {"nll", r.nll_other},
                        {"nll_se", r.nll_other_se},
                        {"ppl", r.ppl_other},
                        {"entropy", r.entropy_other},
                        {"ln_ppl_ratio", r.nll_other - r.nll},
                        {"ln_ppl_ratio_se", r.ln_ppl_ratio_se},
                        {"kl", r.kl},
                        {"kl_se", r.kl_se},
                        {"top1", r.top1}};
    }
    fmt::print("{}\n", j.dump());
    return;
  }
  // +- is one standard error, from the spread over windows; ppl's by the delta method.
  std::string line = fmt::format(
      "ppl {:.4f} +- {:.4f} (nll {:.5f}, entropy {:.5f} nats/token) over {} windows x {} "
      "tokens, {} scored",
      r.ppl, r.ppl * r.nll_se, r.nll, r.entropy, r.windows, r.ctx, r.scored);
  if (r.compared)
    line += fmt::format(
        " | quantized ppl {:.4f} (entropy {:.5f}), ln(ppl ratio) {:+.5f} +- {:.5f}, KL {:.6f} "
        "+- {:.6f}, top-1 {:.4f}",
        r.ppl_other, r.entropy_other, r.nll_other - r.nll, r.ln_ppl_ratio_se, r.kl, r.kl_se,
        r.top1);
  fmt::print("{}\n", line);
}

}  // namespace

void register_eval(CLI::App& app) {
  auto f = std::make_shared<EvalFlags>();
  auto* cmd = app.add_subcommand(
      "eval", "Perplexity on a text; with --quantized also KL(P_model || P_quantized), top-1");
  cmd->add_option("--model", f->model, "Checkpoint: llama2.c .bin, HF directory, or .gguf")
      ->required();
  cmd->add_option("--text", f->text, "Evaluation text file (UTF-8)")->required();
  cmd->add_option("--tokenizer", f->tokenizer,
                  "Tokenizer file (default: the one stored beside the model)");
  cmd->add_option("--ctx", f->ctx, "Tokens per window (default: the model's context, at most 2048)")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--max-windows", f->max_windows, "Evaluate at most this many windows")
      ->check(kNonNegative);
  cmd->add_option("--quantized", f->quantized,
                  "Second checkpoint compared against --model on the same windows");
  cmd->add_flag("--no-bos", f->no_bos,
                "Do not put BOS in front of every window (score positions 1.. of each)");
  cmd->add_flag("--exact-activations", f->exact_activations,
                "Multiply GGUF weights with float activations (default: round them as llama.cpp's "
                "CPU kernels do: Q8_0 / Q8_1 / Q8_K before quantized weights, F16 before F16)");
  cmd->add_flag("--json", f->json, "Print one JSON object instead of the summary line");
  cmd->add_flag("--quiet", f->quiet, "No progress on stderr");
  cmd->callback([f] { run_eval(*f); });
}

}  // namespace cdq::cli
