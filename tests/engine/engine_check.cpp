// engine_check: runs a GGUF file cdquant wrote through the real llama.cpp (the prebuilt
// libllama / libggml that scripts/fetch_engine.sh puts in .engine/) and compares, piece by
// piece, with what cdquant computes for the same file:
//   load     llama.cpp loads it and logs no warning or error (its log callback is captured);
//   tokens   llama_tokenize of a text equals cdquant's GGUF tokenizer on it;
//   tensors  every tensor decoded by ggml (ggml_get_type_traits(type)->to_float) equals
//            cdquant's GGUF reader bit for bit;
//   logits   llama.cpp's logits on one window (one thread, F32 KV cache, no flash attention)
//            equal cdquant's engine-faithful forward (use_engine_activations) to a tolerance.
// Prints one JSON object with the figures; exit status 0 when every check passes, 1 when one
// fails, 2 on a usage or file error.
//
// The logits tolerance. Both sides evaluate the same graph on the same weights with the same
// activation rounding, so they differ by float32 rounding (summation order in the dot products,
// RMSNorm, RoPE, softmax): a random walk through n_layers blocks of dot products of length ~dim,
//   noise = 64 * n_layers * 2^-24 * sqrt(dim) * max |logit|
// (64 for the accumulation constant; F32 files agree to ~1e-3 of this). A float difference of
// relative size u moves an activation across a Q8 rounding boundary with probability about
// 2 * 127 * u per value, so over the ~10^5 rounding decisions of a window a few codes flip; each
// flip moves one activation by a whole step, as large as the typical rounding error itself, and
// in a model of dim 64 it changes the logits by as much as the rounding does. After the first
// flip the two sides are two equally faithful samples of the rounding, not the same numbers.
// So the check is, for files with rounded activations (E = max |engine - exact| above noise):
//   - reported: how many positions agree within noise before the first flip (where every
//     product is modelled exactly, all of them until a flip);
//   - with --reference (the float model), the KL divergence that llama.cpp's logits have from
//     it equals the engine-faithful one to 15% (flips are zero-mean: they move the KL of a
//     window by a few percent), and when the float-activation KL is further from llama.cpp's
//     than that, the engine-faithful one is the closer;
// and for files without (F32 weights), every logit agrees within noise.
#include <fmt/core.h>

#include <algorithm>
#include <cdquant/error.hpp>
#include <cdquant/forward.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/model.hpp>
#include <cdquant/text_file.hpp>
#include <cdquant/tokenizer.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"
#include "model/gguf_arch.hpp"
#include "model/gguf_model_reader.hpp"
#include "model/log_softmax.hpp"

namespace {

using nlohmann::ordered_json;

struct Options {
  std::string gguf;
  std::string text;
  size_t text_bytes = 6000;          // the first this many bytes of the text, cut at a line end
  int ctx = 64;                      // logits window (BOS + ctx - 1 tokens), at most context_length
  std::string reference;             // a float GGUF of the same model: KL of each side against it
  std::vector<std::string> allowed;  // load warnings containing one of these are reported only
};

// Load problems other than the allowed ones.
ordered_json failing(const std::vector<std::string>& problems, const Options& o) {
  ordered_json out = ordered_json::array();
  for (const std::string& p : problems) {
    bool allowed = false;
    for (const std::string& a : o.allowed) allowed = allowed || p.find(a) != std::string::npos;
    if (!allowed) out.push_back(p);
  }
  return out;
}

// Everything llama.cpp / ggml log at WARN or ERROR (a CONT line continues the last level).
struct LogCapture {
  std::vector<std::string> problems;
  ggml_log_level last = GGML_LOG_LEVEL_INFO;
  bool echo = false;
};

void log_callback(ggml_log_level level, const char* text, void* user) {
  auto* cap = static_cast<LogCapture*>(user);
  if (level != GGML_LOG_LEVEL_CONT) cap->last = level;
  if (cap->echo) std::fputs(text, stderr);
  if (cap->last != GGML_LOG_LEVEL_WARN && cap->last != GGML_LOG_LEVEL_ERROR) return;
  std::string line(text);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  if (level == GGML_LOG_LEVEL_CONT && !cap->problems.empty())
    cap->problems.back() += line;
  else
    cap->problems.push_back(line);
}

std::string text_prefix(const Options& o) {
  std::string t = cdq::read_file(o.text);
  if (t.size() > o.text_bytes) {
    const size_t nl = t.rfind('\n', o.text_bytes);
    t.resize(nl != std::string::npos && nl > 0 ? nl + 1 : o.text_bytes);
  }
  return t;
}

std::vector<int> llama_tokens(const llama_vocab* vocab, const std::string& text) {
  std::vector<llama_token> out(text.size() + 16);
  int n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), out.data(),
                         static_cast<int32_t>(out.size()), false, false);
  if (n < 0) {
    out.resize(static_cast<size_t>(-n));
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), out.data(),
                       static_cast<int32_t>(out.size()), false, false);
  }
  CDQ_CHECK(n >= 0, "llama_tokenize failed");
  return {out.begin(), out.begin() + n};
}

ordered_json compare_tokens(const std::vector<int>& ours, const std::vector<int>& theirs) {
  const size_t n = std::min(ours.size(), theirs.size());
  size_t first = 0;
  while (first < n && ours[first] == theirs[first]) ++first;
  ordered_json j;
  j["cdquant"] = ours.size();
  j["llama"] = theirs.size();
  j["equal"] = ours == theirs;
  if (ours != theirs) {
    j["first_difference"] = first;
    j["cdquant_there"] = first < ours.size() ? ours[first] : -1;
    j["llama_there"] = first < theirs.size() ? theirs[first] : -1;
  }
  return j;
}

// ggml's decode of every tensor against cdquant's reader, bit for bit.
ordered_json compare_tensors(const std::string& path) {
  ggml_context* gctx = nullptr;
  gguf_init_params params{};
  params.no_alloc = false;
  params.ctx = &gctx;
  gguf_context* g = gguf_init_from_file(path.c_str(), params);
  CDQ_CHECK(g != nullptr && gctx != nullptr, "{}: ggml's gguf_init_from_file failed", path);
  const cdq::GgufReader reader(path);
  ordered_json j;
  int64_t n_tensors = 0, n_equal = 0, n_values = 0;
  ordered_json bad = ordered_json::array();
  std::vector<std::string> types;
  for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
    const char* name = gguf_get_tensor_name(g, i);
    const ggml_tensor* t = ggml_get_tensor(gctx, name);
    const int64_t n = ggml_nelements(t);
    std::vector<float> theirs(static_cast<size_t>(n));
    if (t->type == GGML_TYPE_F32)
      std::memcpy(theirs.data(), t->data, static_cast<size_t>(n) * sizeof(float));
    else
      ggml_get_type_traits(t->type)->to_float(t->data, theirs.data(), n);
    const cdq::Matrix ours = cdq::gguf_read_matrix(reader, name);
    const bool same = ours.size() == n && std::memcmp(ours.data.data(), theirs.data(),
                                                      theirs.size() * sizeof(float)) == 0;
    ++n_tensors;
    n_values += n;
    if (same)
      ++n_equal;
    else
      bad.push_back(name);
    const std::string tn = ggml_type_name(t->type);
    if (std::find(types.begin(), types.end(), tn) == types.end()) types.push_back(tn);
  }
  gguf_free(g);
  ggml_free(gctx);
  j["compared"] = n_tensors;
  j["equal"] = n_equal;
  j["values"] = n_values;
  j["types"] = types;
  if (!bad.empty()) j["different"] = bad;
  return j;
}

// llama.cpp's logits [T, vocab] for one window, computed on one thread.
std::vector<float> llama_logits(llama_model* model, const std::vector<int>& window) {
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(window.size());
  cp.n_batch = cp.n_ubatch = cp.n_ctx;
  cp.n_threads = cp.n_threads_batch = 1;  // ggml spin-waits: 2 threads on 2 busy cores crawl
  cp.type_k = cp.type_v = GGML_TYPE_F32;  // the weight products are the subject, not the cache
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  cp.no_perf = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  CDQ_CHECK(ctx != nullptr, "llama_init_from_model failed");
  const int n = static_cast<int>(window.size());
  llama_batch b = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; ++i) {
    b.token[i] = window[static_cast<size_t>(i)];
    b.pos[i] = i;
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = 1;
  }
  b.n_tokens = n;
  const int rc = llama_decode(ctx, b);
  CDQ_CHECK(rc == 0, "llama_decode failed ({})", rc);
  const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::vector<float> out(static_cast<size_t>(n) * static_cast<size_t>(vocab));
  for (int i = 0; i < n; ++i)
    std::copy_n(llama_get_logits_ith(ctx, i), vocab,
                out.begin() + static_cast<ptrdiff_t>(i) * vocab);
  llama_batch_free(b);
  llama_free(ctx);
  return out;
}

double max_abs_diff(std::span<const float> a, std::span<const float> b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}

double rms_diff(std::span<const float> a, std::span<const float> b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  return std::sqrt(s / static_cast<double>(std::max<size_t>(1, a.size())));
}

double max_abs(std::span<const float> a) {
  double m = 0.0;
  for (float v : a) m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

// Mean over rows of KL(P_ref || P_x), logits [T, vocab] row after row.
double mean_kl(const cdq::Matrix& ref, std::span<const float> x) {
  double total = 0.0;
  for (int64_t t = 0; t < ref.rows; ++t) {
    const std::vector<double> lp = cdq::log_softmax_row(ref.row(t), ref.cols);
    const std::vector<double> lq = cdq::log_softmax_row(x.data() + t * ref.cols, ref.cols);
    for (size_t j = 0; j < lp.size(); ++j) total += std::exp(lp[j]) * (lp[j] - lq[j]);
  }
  return total / static_cast<double>(ref.rows);
}

ordered_json compare_logits(llama_model* lm, const std::string& path,
                            const std::vector<int>& window, const std::string& reference) {
  cdq::Model m = cdq::load_model(path);
  cdq::use_engine_activations(m, true);
  const cdq::Matrix engine = cdq::forward_logits(m, window);
  cdq::use_engine_activations(m, false);
  const cdq::Matrix exact = cdq::forward_logits(m, window);
  const std::vector<float> theirs = llama_logits(lm, window);
  CDQ_CHECK(theirs.size() == engine.data.size(), "vocabulary sizes differ");
  if (std::getenv("CDQ_ENGINE_DEBUG") != nullptr) {
    const int64_t V = engine.cols;
    for (int64_t t = 0; t < engine.rows; ++t) {
      const std::span<const float> a(theirs.data() + t * V, static_cast<size_t>(V));
      fmt::print(stderr, "pos {:3d}: llama-engine {:.5f} llama-exact {:.5f} engine-exact {:.5f}\n",
                 t, max_abs_diff(a, {engine.row(t), static_cast<size_t>(V)}),
                 max_abs_diff(a, {exact.row(t), static_cast<size_t>(V)}),
                 max_abs_diff({engine.row(t), static_cast<size_t>(V)},
                              {exact.row(t), static_cast<size_t>(V)}));
    }
    for (const auto& b : m.blocks)
      for (size_t i = 0; i < 7; ++i)
        fmt::print(stderr, "{}:{} ", cdq::ggml_type_name(b.stored[i]),
                   cdq::activation_type_name(b.act[i]));
    fmt::print(stderr, "classifier {}\n", cdq::ggml_type_name(m.classifier_stored));
  }
  const double e = max_abs_diff(engine.data, exact.data);
  const double d_engine = max_abs_diff(theirs, engine.data);
  const double d_exact = max_abs_diff(theirs, exact.data);
  const double scale = max_abs(engine.data);
  const cdq::ModelConfig& c = m.config;
  const double noise = 64.0 * c.n_layers * std::ldexp(1.0, -24) * std::sqrt(double(c.dim)) * scale;
  ordered_json j;
  j["window"] = window.size();
  j["max_abs_logit"] = scale;
  j["max_diff_engine"] = d_engine;
  j["max_diff_exact"] = d_exact;
  j["engine_vs_exact"] = e;
  j["rms_diff_engine"] = rms_diff(theirs, engine.data);
  j["rms_diff_exact"] = rms_diff(theirs, exact.data);
  j["rms_engine_vs_exact"] = rms_diff(engine.data, exact.data);
  // Positions up to the first one where the two sides differ beyond float noise: before any
  // rounding decision flips, they must agree that closely.
  const int64_t V = engine.cols;
  int64_t agree = 0;
  while (agree < engine.rows && max_abs_diff({theirs.data() + agree * V, static_cast<size_t>(V)},
                                             {engine.row(agree), static_cast<size_t>(V)}) <= noise)
    ++agree;
  j["positions_within_noise"] = agree;
  j["noise"] = noise;
  // Required only where every product is modelled exactly: not with F16 / BF16 weights (on
  // CPUs with AVX512-FP16, ggml's vec_dot_f16 accumulates in half precision whenever tinyBLAS
  // does not take the product), nor with Q4_1 / Q5_1 (Q8_1's fp16 block sums).
  bool modelled = true;
  const auto exact_kind = [](cdq::ActivationType a) {
    return a == cdq::ActivationType::F32 || a == cdq::ActivationType::Q8_0 ||
           a == cdq::ActivationType::Q8_K;
  };
  for (const cdq::BlockWeights& b : m.blocks)
    for (cdq::GgmlType t : b.stored) modelled = modelled && exact_kind(cdq::ggml_vec_dot_type(t));
  modelled = modelled && exact_kind(cdq::ggml_vec_dot_type(m.classifier_stored));
  j["fully_modelled"] = modelled;
  // Reported, not required: whether a flip comes before the first position depends on this
  // CPU's float rounding (about one chance in five per file on these models).
  bool ok = e <= noise ? d_engine <= noise : true;
  if (!reference.empty()) {
    const cdq::Model r = cdq::load_model(reference);
    const cdq::Matrix ref = cdq::forward_logits(r, window);
    const double kl_llama = mean_kl(ref, theirs), kl_engine = mean_kl(ref, engine.data),
                 kl_exact = mean_kl(ref, exact.data);
    j["kl_llama"] = kl_llama;
    j["kl_engine"] = kl_engine;
    j["kl_exact"] = kl_exact;
    const double gap = std::fabs(kl_engine - kl_llama), gap_exact = std::fabs(kl_exact - kl_llama);
    ok = ok && gap <= 0.15 * kl_llama + 1e-7 && (gap_exact <= 0.15 * kl_llama || gap < gap_exact);
  }
  j["ok"] = ok;
  return j;
}

ordered_json check(const Options& o, LogCapture& cap) {
  ordered_json j;
  j["file"] = o.gguf;
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  if (std::getenv("CDQ_NO_REPACK") != nullptr) mp.use_extra_bufts = false;
  llama_model* lm = llama_model_load_from_file(o.gguf.c_str(), mp);
  j["load_problems"] = cap.problems;
  CDQ_CHECK(lm != nullptr, "llama.cpp could not load {}", o.gguf);
  cap.problems.clear();
  const std::string text = text_prefix(o);
  const auto tok = cdq::load_gguf_tokenizer(o.gguf);
  const std::vector<int> ours = tok->encode(text, false);
  j["tokens"] = compare_tokens(ours, llama_tokens(llama_model_get_vocab(lm), text));
  j["tensors"] = compare_tensors(o.gguf);
  const int n_ctx_train = llama_model_n_ctx_train(lm);
  const size_t w = static_cast<size_t>(std::min(o.ctx, n_ctx_train));
  std::vector<int> window{tok->bos_id >= 0 ? tok->bos_id : 0};
  for (size_t i = 0; i < ours.size() && window.size() < w; ++i) window.push_back(ours[i]);
  j["logits"] = compare_logits(lm, o.gguf, window, o.reference);
  j["run_problems"] = cap.problems;
  llama_model_free(lm);
  j["ok"] = failing(j["load_problems"], o).empty() && j["tokens"]["equal"].get<bool>() &&
            j["tensors"]["equal"] == j["tensors"]["compared"] && j["logits"]["ok"].get<bool>();
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bool echo = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw cdq::Error(fmt::format("{} needs a value", a));
      return argv[++i];
    };
    try {
      if (a == "--text")
        o.text = next();
      else if (a == "--text-bytes")
        o.text_bytes = std::stoul(next());
      else if (a == "--ctx")
        o.ctx = std::stoi(next());
      else if (a == "--reference")
        o.reference = next();
      else if (a == "--allow-warning")
        o.allowed.push_back(next());
      else if (a == "--verbose")
        echo = true;
      else if (o.gguf.empty())
        o.gguf = a;
      else
        throw cdq::Error("unexpected argument " + a);
    } catch (const std::exception& e) {
      fmt::print(stderr, "engine_check: {}\n", e.what());
      return 2;
    }
  }
  if (o.gguf.empty() || o.text.empty()) {
    fmt::print(stderr, "usage: engine_check FILE.gguf --text TEXT [--text-bytes N] [--ctx N]\n");
    return 2;
  }
  LogCapture cap;
  cap.echo = echo;
  llama_log_set(log_callback, &cap);
  ggml_backend_load_all_from_path(CDQ_ENGINE_LIB_DIR);
  llama_backend_init();
  try {
    const ordered_json j = check(o, cap);
    fmt::print("{}\n", j.dump());
    return j["ok"].get<bool>() ? 0 : 1;
  } catch (const std::exception& e) {
    ordered_json j;
    j["file"] = o.gguf;
    j["error"] = e.what();
    j["problems"] = cap.problems;
    j["ok"] = false;
    fmt::print("{}\n", j.dump());
    return 2;
  }
}
