// cdquant quantize: GPTQ-style sequential quantization of a whole model.
#include <fmt/core.h>

#include <cdquant/output_format.hpp>
#include <cdquant/quantize_job.hpp>

#include "cli_checks.hpp"
#include "commands.hpp"
#include "solver_flags.hpp"

namespace cdq::cli {

namespace {

struct QuantizeFlags {
  QuantizeJob job;
  std::string method = std::string(default_method().name());
  SolverFlags solver;
  bool quiet = false;
  std::string allocation_error = "weight";
};

void print_progress(const LayerProgress& p) {
  const LinearResult& r = *p.result;
  fmt::print(stderr, "[{:>3}/{}] {:<18} rel.err {:.4e}  obj {:.4e}  {:6.2f}s  ETA {:.0f}s\n",
             p.done, p.total, linear_display_name(r.layer, r.linear), r.relative, r.objective,
             r.seconds, p.eta);
  for (const auto& note : r.notes) fmt::print(stderr, "          note: {}\n", note);
}

// One line per tenth of the windows (the callback comes after every decoding step).
void print_self_calibration(const SelfCalibrationProgress& p) {
  static int64_t last_tenth = -1;
  const int64_t tenth = p.windows_total > 0 ? 10 * p.windows_done / p.windows_total : 10;
  if (tenth == last_tenth) return;
  last_tenth = tenth;
  fmt::print(stderr, "self-calibration: {}/{} windows, {} tokens, {:.1f}s\n", p.windows_done,
             p.windows_total, p.tokens, p.seconds);
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto flags = std::make_shared<QuantizeFlags>();
  auto* cmd = app.add_subcommand(
      "quantize", "Quantize a whole model block by block (GPTQ-style sequential calibration)");
  cmd->add_option("--model", flags->job.model_path,
                  "Checkpoint: llama2.c .bin, HF safetensors directory, or .gguf")
      ->required();
  cmd->add_option("--calib", flags->job.calib_path,
                  "Calibration text file (UTF-8), or 'self' (the default): --nsamples windows of "
                  "--seqlen tokens the float model samples itself (temperature 1 from BOS, "
                  "seeded by --seed). Methods that read no H ignore calibration");
  cmd->add_option("--save-calib", flags->job.save_calib_path,
                  "With self-calibration: also write the sampled windows as text to this file");
  cmd->add_option("--out", flags->job.out_path, "Output checkpoint path")->required();
  cmd->add_option("--method", flags->method, "Layer solver, one of:\n" + method_help())
      ->capture_default_str();
  cmd->add_option("--tokenizer", flags->job.tokenizer_path,
                  "Tokenizer file (default: the one stored beside the model)");
  cmd->add_option("--nsamples", flags->job.nsamples, "Calibration windows")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--seqlen", flags->job.seqlen,
                  "Tokens per calibration window (default: the model's context, at most 2048)")
      ->check(kNonNegative);
  cmd->add_option("--seed", flags->job.seed, "Seed of the calibration sampling")
      ->check(kSeed)
      ->capture_default_str();
  cmd->add_flag("--true-sequential", flags->job.quant.true_sequential,
                "Refresh H after each group of linears (q/k/v, o, gate/up, down)");
  cmd->add_option("--format", flags->job.out_format,
                  "Output format, one of:\n" + output_format_help())
      ->capture_default_str();
  cmd->add_option("--type", flags->job.gguf.type,
                  "GGUF: ggml type of the linears (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, "
                  "Q2_K..Q6_K, IQ4_NL, IQ4_XS) or llama.cpp mix (Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M)")
      ->capture_default_str();
  cmd->add_option("--override", flags->job.gguf.overrides,
                  "GGUF: PATTERN=TYPE for tensors whose name matches the regex PATTERN "
                  "(e.g. 'ffn_down=Q6_K'); repeatable, the first match wins");
  cmd->add_option("--output-tensor-type", flags->job.gguf.output_type,
                  "GGUF: type of output.weight (default: Q6_K, or Q8_0; as llama.cpp)");
  cmd->add_option("--token-embedding-type", flags->job.gguf.embedding_type,
                  "GGUF: type of token_embd.weight when untied (default: the base type)");
  cmd->add_flag("!--no-importance", flags->job.gguf.importance,
                "GGUF: fit block scales with ggml's plain rule instead of weighting by diag(H)");
  cmd->add_option("--chunk-tokens", flags->job.quant.chunk_tokens,
                  "Calibration tokens per forward chunk (whole windows); under mpirun also the "
                  "unit the windows are shared out in (at most 16 shares)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--gptq-dtype", flags->job.gptq.dtype,
                  "GPTQ: dtype of the float tensors and torch_dtype (float16, bfloat16, auto: "
                  "bfloat16 for a BF16 source, else float16)")
      ->check(CLI::IsMember({"auto", "float16", "bfloat16"}))
      ->capture_default_str();
  cmd->add_flag("--gptq-v1", flags->job.gptq.v1,
                "GPTQ: write asymmetric grids as v1 'gptq' (AutoGPTQ, older vLLM) instead of "
                "gptq_v2; needs every zero point >= 1");
  cmd->add_option("--target-bpw", flags->job.allocation.target_bpw,
                  "GGUF/GPTQ: choose each linear's type (bits) to fit this many bits per weight "
                  "over the linears, least predicted KL increase (measured sensitivities)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--target-size", flags->job.allocation.target_size,
                  "GGUF/GPTQ: as --target-bpw, for a whole output of at most this many bytes")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--sensitivity", flags->job.allocation.sensitivity_path,
                  "With a size budget: JSON cache of sensitivities and candidate errors, read "
                  "when it exists, else measured and written (default: <out>.sensitivity.json)");
  cmd->add_option("--sensitivity-windows", flags->job.allocation.sensitivity.max_windows,
                  "With a size budget: calibration windows the sensitivities are measured on")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--sensitivity-levels", flags->job.allocation.sensitivity.levels,
                  "With a size budget: relative noise levels t injected per linear")
      ->capture_default_str();
  cmd->add_option("--allocation-error", flags->allocation_error,
                  "With a size budget: the error the linear model weighs, 'weight' "
                  "(|Q-W|^2/|W|^2, HIGGS) or 'objective' (L(Q)/tr(W H W^T))")
      ->check(CLI::IsMember({"weight", "objective"}))
      ->capture_default_str();
  cmd->add_flag("--quiet", flags->quiet, "No per-layer progress lines");
  add_solver_flags(cmd, flags->solver);
  cmd->callback([flags] {
    QuantizeJob job = flags->job;
    job.quant.method = parse_method(flags->method);
    job.quant.solver = flags->solver.to_options();
    job.allocation.error = flags->allocation_error == "objective" ? AllocationError::Objective
                                                                  : AllocationError::Weight;
    job.quant.comm = communicator();
    const bool lead = job.quant.comm == nullptr || job.quant.comm->rank() == 0;
    if (lead)
      job.on_warning = [](const std::string& w) { fmt::print(stderr, "warning: {}\n", w); };
    if (!flags->quiet && lead) {
      job.quant.progress = print_progress;
      job.on_note = [](const std::string& n) { fmt::print(stderr, "note: {}\n", n); };
      job.on_self_calibration = print_self_calibration;
    } else if (lead && job.allocation.active()) {  // the plan is printed even when quiet
      job.on_note = [](const std::string& n) {
        if (n.rfind("allocation plan:", 0) == 0) fmt::print(stderr, "{}\n", n);
      };
    }
    const QuantizeSummary s = run_quantize_job(job);
    if (!lead) return;
    // Where the time went (per stage, summed over blocks); under mpirun even with --quiet.
    if (job.quant.comm != nullptr || !flags->quiet)
      fmt::print(stderr,
                 "{} ranks; rank 0: forward {:.1f}s, H {:.1f}s, exchange {:.1f}s, solve "
                 "{:.1f}s, recompute {:.1f}s, write {:.1f}s, {:.1f} MB moved\n",
                 job.quant.comm ? job.quant.comm->size() : 1, s.time.forward, s.time.hessian,
                 s.time.exchange, s.time.solve, s.time.recompute, s.time.sink, s.time.bytes / 1e6);
    fmt::print(
        "quantized {} linears with {} in {:.1f}s (mean relative error {:.4e}, {:.3f} bits per "
        "weight) -> {}\n",
        s.linears, flags->method, s.seconds, s.mean_relative, s.bits_per_weight, job.out_path);
  });
}

}  // namespace cdq::cli
