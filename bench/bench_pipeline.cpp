// Where the time of `cdquant quantize` goes at real scale, per block: the capture forward, the H
// products, the solves (per linear), the output recompute and the writing; the block forward's
// GFLOP/s against the sgemm peak this program measures on the same machine; peak RSS; and
// what that implies for 7B and 70B shapes (a model: see extrapolate()).
//
//   make_random_hf --arch llama-3.2-1b --out /tmp/llama1b
//   bench_pipeline --model /tmp/llama1b --calib data/sotu-calib.txt --nsamples 16 --seqlen 512
//   bench_pipeline --model /tmp/llama1b --calib data/sotu-calib.txt --nsamples 128
//   bench_pipeline ... --nsamples 128 --seqlen 2048 --blocks 1          (one block, the others
//   extrapolated from it)
#include <fmt/core.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cdquant/forward.hpp>
#include <cdquant/output_format.hpp>
#include <cdquant/quantize_job.hpp>
#include <cdquant/rng.hpp>
#include <chrono>
#include <filesystem>
#include <map>

#include "bench_common.hpp"
#include "linalg/linalg.hpp"
#include "model/forward_blocks.hpp"

namespace {

using namespace cdq;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is KiB
}

Matrix random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  Rng rng(seed);
  Matrix m(rows, cols);
  for (float& x : m.data) x = static_cast<float>(rng.normal());
  return m;
}

// Best of `reps` runs of f, in seconds.
template <class F>
double best_of(int reps, F&& f) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, since(t0));
  }
  return best;
}

// sgemm GFLOP/s of C [m, n] = A [m, k] B^T, B [n, k]: the limit every forward product runs into.
double sgemm_gflops(int64_t m, int64_t n, int64_t k) {
  const Matrix a = random_matrix(m, k, 1), b = random_matrix(n, k, 2);
  Matrix c(m, n);
  const auto av = MatrixView{const_cast<float*>(a.data.data()), m, k, k};
  const auto bv = MatrixView{const_cast<float*>(b.data.data()), n, k, k};
  const double s = best_of(5, [&] { gemm(false, true, 1.0f, av, bv, 0.0f, view(c)); });
  return 2.0 * static_cast<double>(m * n * k) / s / 1e9;
}

// Shapes the figures are extrapolated to.
struct Shape {
  const char* name;
  int64_t dim, hidden, layers, heads, kv_heads;
};
constexpr Shape kShapes[] = {{"1B (Llama-3.2-1B)", 2048, 8192, 16, 32, 8},
                             {"7B (Llama-2-7B)", 4096, 11008, 32, 32, 32},
                             {"70B (Llama-2-70B)", 8192, 28672, 80, 64, 8}};

int64_t q_dim(const Shape& s) {
  return s.dim;
}
int64_t kv_dim(const Shape& s) {
  return s.dim / s.heads * s.kv_heads;
}

// Flops of one block forward over n windows of T tokens: the seven products and the causal
// attention (T (T + 1) / 2 query-key pairs per window and head, two products each).
double forward_flops(const Shape& s, int64_t n, int64_t T) {
  const double tokens = static_cast<double>(n * T);
  const double linear = 2.0 * tokens *
                        static_cast<double>(s.dim * (q_dim(s) + 2 * kv_dim(s)) + q_dim(s) * s.dim +
                                            3 * s.dim * s.hidden);
  const double pairs = static_cast<double>(n) * static_cast<double>(T * (T + 1) / 2);
  const double attention = 2.0 * 2.0 * pairs * static_cast<double>(s.dim / s.heads * s.heads);
  return linear + attention;
}

// Flops of the H products of a block (X^T X of the four inputs: dim, q_dim, dim, hidden; a
// symmetric product costs T d^2).
double hessian_flops(const Shape& s, int64_t tokens) {
  const auto d2 =
      static_cast<double>(2 * s.dim * s.dim + q_dim(s) * q_dim(s) + s.hidden * s.hidden);
  return static_cast<double>(tokens) * d2;
}

// The solvers' leading cost d_in^2 (d_out + d_in), summed over a block's linears.
double solve_cost(const Shape& s) {
  const auto c = [](double out, double in) { return in * in * (out + in); };
  const auto d = static_cast<double>(s.dim), h = static_cast<double>(s.hidden);
  const auto q = static_cast<double>(q_dim(s)), kv = static_cast<double>(kv_dim(s));
  return c(q, d) + 2 * c(kv, d) + c(d, q) + 2 * c(h, d) + c(d, h);
}

double block_params(const Shape& s) {
  return static_cast<double>(s.dim * (q_dim(s) + 2 * kv_dim(s)) + q_dim(s) * s.dim +
                             3 * s.dim * s.hidden);
}

// The block forward at seqlen T on one chunk of windows: total, attention alone, products
// alone, against the measured peak.
void bench_forward(const BlockWeights& block, const ModelConfig& c, const Shape& shape, int64_t T,
                   int64_t windows, double peak) {
  const int64_t rows = T * windows;
  const Matrix x0 = random_matrix(rows, c.dim, 3);
  const double total = best_of(2, [&] {
    Matrix x = x0;
    block_forward(block, c, x, nullptr, T);
  });
  Matrix q = random_matrix(rows, c.q_dim(), 4), k = random_matrix(rows, c.kv_dim(), 5),
         v = random_matrix(rows, c.kv_dim(), 6), att(rows, c.q_dim());
  const double attention = best_of(2, [&] { causal_attention(q, k, v, T, c, att); });
  const double flops = forward_flops(shape, windows, T);
  const double att_flops = 4.0 * static_cast<double>(windows * T * (T + 1) / 2) * c.q_dim();
  fmt::print("\nBlock forward, {} windows x {} tokens ({:.2f} TFLOP):\n", windows, T, flops / 1e12);
  fmt::print("  whole block   {:8.3f} s  {:7.1f} GFLOP/s  {:.2f}x its cost at peak\n", total,
             flops / total / 1e9, total / (flops / (peak * 1e9)));
  fmt::print("  attention     {:8.3f} s  {:7.1f} GFLOP/s  ({:.0f}% of the block)\n", attention,
             att_flops / attention / 1e9, 100.0 * attention / total);
}

struct Measured {
  int blocks = 0;
  int64_t tokens = 0;
  int64_t seqlen = 0;
  QuantizeTimings time;
  double finish = 0.0;                  // the writer's finish()
  std::map<std::string, double> solve;  // per linear name ("attn_q"), summed over blocks
};

// Per-block seconds at `tokens` calibration tokens for a shape, from what was measured on the
// 1B shape: forward and H scale with their flops (times the token ratio), the solves with
// d_in^2 (d_out + d_in), writing with the parameters. A model, not a measurement.
struct Estimate {
  double forward, hessian, solve, write;
  double total() const { return forward + hessian + solve + write; }
};

Estimate extrapolate(const Measured& m, const Shape& base, const Shape& s, int64_t seqlen,
                     int64_t tokens) {
  const double nb = m.blocks;
  const double per_token = static_cast<double>(tokens) / static_cast<double>(m.tokens);
  Estimate e{};
  e.forward = (m.time.forward + m.time.recompute) / nb *
              (forward_flops(s, tokens / seqlen, seqlen) /
               forward_flops(base, m.tokens / m.seqlen, m.seqlen));
  e.hessian = m.time.hessian / nb * per_token * hessian_flops(s, 1) / hessian_flops(base, 1);
  double solve = 0.0;
  for (const auto& [name, sec] : m.solve) solve += sec;
  e.solve = solve / nb * solve_cost(s) / solve_cost(base);
  e.write = m.time.sink / nb * block_params(s) / block_params(base);
  return e;
}

// Reads only the first `blocks` blocks (the model as if it had no more).
class FirstBlocks final : public ModelReader {
 public:
  FirstBlocks(std::unique_ptr<ModelReader> r, int blocks) : r_(std::move(r)), c_(r_->config()) {
    c_.n_layers = std::min(c_.n_layers, blocks);
  }
  const ModelConfig& config() const override { return c_; }
  Matrix read_embeddings() override { return r_->read_embeddings(); }
  BlockWeights read_block(int layer) override { return r_->read_block(layer); }
  std::vector<float> read_final_norm() override { return r_->read_final_norm(); }
  Matrix read_output() override { return r_->read_output(); }
  std::string format() const override { return r_->format(); }

 private:
  std::unique_ptr<ModelReader> r_;
  ModelConfig c_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Per-block time of the quantize pipeline, the forward against the sgemm peak"};
  std::string model, calib, method = "gptq", format = "gptq", out = "/tmp/cdq-bench-pipeline";
  int nsamples = 16, seqlen = 512, blocks = 2, bits = 4, group = 128, threads = 0;
  int forward_seqlen = 2048, forward_windows = 2;
  app.add_option("--model", model, "HF checkpoint (make_random_hf --arch llama-3.2-1b)")
      ->required();
  app.add_option("--calib", calib, "Calibration text")->required();
  app.add_option("--nsamples", nsamples)->capture_default_str();
  app.add_option("--seqlen", seqlen)->capture_default_str();
  app.add_option("--blocks", blocks, "Blocks to quantize (the rest is extrapolated)")
      ->capture_default_str();
  app.add_option("--method", method)->capture_default_str();
  app.add_option("--format", format)->capture_default_str();
  app.add_option("--bits", bits)->capture_default_str();
  app.add_option("--group", group)->capture_default_str();
  app.add_option("--out", out, "Scratch output (removed afterwards)")->capture_default_str();
  app.add_option("--forward-seqlen", forward_seqlen, "Window length of the forward benchmark")
      ->capture_default_str();
  app.add_option("--forward-windows", forward_windows)->capture_default_str();
  app.add_option("--threads", threads, "OpenMP threads (0: the default)");
  CLI11_PARSE(app, argc, argv);
  bench::set_threads(threads);

  auto reader = std::make_unique<FirstBlocks>(open_model(model), blocks);
  const ModelConfig& c = reader->config();
  const Shape base{"measured", c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads};
  fmt::print("model {}: dim {}, hidden {}, {} heads / {} kv heads; threads {}\n", model, c.dim,
             c.hidden_dim, c.n_heads, c.n_kv_heads, omp_get_max_threads());

  // The limit: sgemm at the shape of the block's largest product, and square.
  const double peak_ffn = sgemm_gflops(4096, c.hidden_dim, c.dim);
  const double peak_sq = sgemm_gflops(2048, 2048, 2048);
  double peak = std::max(peak_ffn, peak_sq);  // measured again at the end: the best of both
  fmt::print("sgemm peak: {:.1f} GFLOP/s (4096 x {} x {}), {:.1f} GFLOP/s (2048^3)\n", peak_ffn,
             c.hidden_dim, c.dim, peak_sq);

  {
    const BlockWeights b0 = reader->read_block(0);
    bench_forward(b0, c, base, forward_seqlen, forward_windows, peak);
  }

  // The pipeline, with the job's own pieces and the stage timings of quantize_model.
  QuantizeJob job;
  job.model_path = model;
  job.out_path = out;
  job.out_format = format;
  job.nsamples = nsamples;
  job.seqlen = seqlen;
  job.quant.method = parse_method(method);
  job.quant.solver.grid.bits = bits;
  job.quant.solver.grid.group_size = group;
  const auto tokenizer = tokenizer_for_model(model, "");
  const auto windows =
      calibration_from_file(calib, *tokenizer, nsamples, seqlen, job.seed, c.bos_id);
  const OutputFormat& fmt_out = find_output_format(format);
  QuantizeOptions quant = job.quant;
  fmt_out.constrain(quant.solver);
  GgufExportOptions gguf;
  gguf.source_path = model;
  const GptqExportOptions gptq;
  auto writer = fmt_out.make_writer({*reader, model, out, quant, gguf, gptq});
  if (fmt_out.grid == GridKind::GgmlBlock) quant.choose_grid = writer->grid_chooser();
  Measured m;
  m.blocks = c.n_layers;
  m.tokens = static_cast<int64_t>(nsamples) * seqlen;
  m.seqlen = seqlen;
  quant.progress = [&](const LayerProgress& p) {
    const std::string name = linear_display_name(0, p.result->linear).substr(6);
    m.solve[name] += p.result->seconds;
    fmt::print(stderr, "  [{}/{}] {} {:.1f}s\n", p.done, p.total,
               linear_display_name(p.result->layer, p.result->linear), p.result->seconds);
  };
  const auto t0 = Clock::now();
  const QuantizeSummary s =
      quantize_model(*reader, windows, quant,
                     [&](int layer, BlockWeights& block, std::vector<LinearResult>& linears) {
                       writer->write_block(layer, block, linears);
                     });
  const auto tf = Clock::now();
  writer->finish();
  m.finish = since(tf);
  const double wall = since(t0);
  m.time = s.time;
  std::filesystem::remove_all(out);

  const double peak_after = sgemm_gflops(4096, c.hidden_dim, c.dim);
  fmt::print("sgemm peak again after the pipeline: {:.1f} GFLOP/s\n", peak_after);
  peak = std::max(peak, peak_after);
  const double nb = m.blocks;
  double solve_total = 0.0;
  for (const auto& [name, sec] : m.solve) solve_total += sec;
  const double fwd_flops = forward_flops(base, nsamples, seqlen);
  fmt::print("\nPipeline: {} x {} tokens, {} {}-bit g{}, {} format, {} block(s); per block:\n",
             nsamples, seqlen, method, bits, group, format, m.blocks);
  fmt::print("  capture forward   {:9.2f} s  {:7.1f} GFLOP/s (peak {:.1f})\n", m.time.forward / nb,
             fwd_flops / (m.time.forward / nb) / 1e9, peak);
  fmt::print("  H accumulation    {:9.2f} s  {:7.1f} GFLOP/s\n", m.time.hessian / nb,
             hessian_flops(base, m.tokens) / (m.time.hessian / nb) / 1e9);
  fmt::print("  solves            {:9.2f} s\n", solve_total / nb);
  for (const auto& [name, sec] : m.solve) fmt::print("    {:<12}    {:9.2f} s\n", name, sec / nb);
  fmt::print("  output recompute  {:9.2f} s  {:7.1f} GFLOP/s\n", m.time.recompute / nb,
             fwd_flops / (m.time.recompute / nb) / 1e9);
  fmt::print("  writing           {:9.2f} s  (+ {:.1f} s finish)\n", m.time.sink / nb, m.finish);
  fmt::print("  wall {:.1f} s for {} block(s); peak RSS {:.2f} GiB\n", wall, m.blocks,
             peak_rss_gib());

  // What this implies at 128 x 2048 tokens for the three shapes (the forward at the measured
  // GFLOP/s, so with attention's share at 2048 tokens if measured at 2048).
  fmt::print("\nModel (extrapolated from the per-block figures above, not measured):\n");
  for (const auto& [len, tokens] :
       {std::pair<int64_t, int64_t>{seqlen, m.tokens}, {2048, 128 * 2048}}) {
    for (const Shape& sh : kShapes) {
      const Estimate e = extrapolate(m, base, sh, len, tokens);
      fmt::print(
          "  {:<18} {:>7} tokens: {:8.1f} s/block (forward {:.0f}, H {:.0f}, solve {:.0f}, "
          "write {:.1f}) -> {:.2f} h for {} blocks\n",
          sh.name, tokens, e.total(), e.forward, e.hessian, e.solve, e.write,
          e.total() * static_cast<double>(sh.layers) / 3600.0, sh.layers);
    }
  }
  return 0;
}
