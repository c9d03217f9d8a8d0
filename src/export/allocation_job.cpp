// Size-budget allocation for GGUF files and GPTQ checkpoints: each format's candidates (GGUF:
// every type cdquant writes whose blocks the rows fill, F16 always; GPTQ: 2/3/4/8 bits with the
// job's group where the format packs the linear, shared by the q/k/v and gate/up that loaders
// fuse, else F16), their bytes, how each is solved, the budget and the cache.
#include "export/allocation_job.hpp"

#include <algorithm>
#include <cdquant/allocation_job.hpp>
#include <cdquant/error.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/gguf_export.hpp>
#include <cdquant/gptq_export.hpp>
#include <cdquant/model_tokenizer.hpp>
#include <cdquant/output_format.hpp>
#include <filesystem>

#include "export/gptq_writer.hpp"
#include "io/json_file.hpp"
#include "model/gguf_arch.hpp"
#include "model/gptq_config.hpp"

namespace cdq {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr uint64_t kAlign = kGgufDefaultAlignment;

uint64_t align_up(uint64_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

// The GGUF candidates, densest first (F32 and BF16 are left out: F16 already loses ~nothing).
constexpr GgmlType kGgufCandidates[] = {
    GgmlType::F16,  GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q5_K, GgmlType::Q5_1, GgmlType::Q5_0,
    GgmlType::Q4_K, GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q3_K, GgmlType::Q2_K};
constexpr int kGptqBits[] = {8, 4, 3, 2};

struct Units {
  std::vector<AllocUnit> units;
  CandidateSetupFn setup;
  std::string error_key;  // what the candidate errors depend on, for the cache
};

Units gguf_units(const ModelConfig& c, const QuantizeOptions& quant, bool importance) {
  Units u;
  for (int i = 0; i < c.n_layers; ++i)
    for (Linear l : kAllLinears) {
      AllocUnit a;
      a.layer = i;
      a.linears = {l};
      const LinearShape s = linear_shape(c, l);
      for (GgmlType t : kGgufCandidates) {
        if (s.in % ggml_traits(t).block_size != 0) continue;  // llama.cpp would fall back
        a.candidates.emplace_back(ggml_type_name(t));
        a.bytes.push_back(
            static_cast<int64_t>(align_up(static_cast<uint64_t>(s.out) * ggml_row_bytes(t, s.in))));
      }
      u.units.push_back(std::move(a));
    }
  const SolverOptions base = quant.solver;
  u.setup = [base, importance](int, Linear, const std::string& cand, const Matrix& w,
                               const Matrix& h) {
    return CandidateSetup{base, gguf_type_grid(parse_ggml_type(cand), w, h, importance)};
  };
  u.error_key = fmt::format("gguf|{}|importance={}", quant.method.name(), importance);
  return u;
}

int64_t gptq_linear_bytes(const LinearShape& s, int bits, int group_size) {
  const int64_t groups = group_size > 0 ? (s.in + group_size - 1) / group_size : 1;
  return s.in * bits / 32 * s.out * 4 + groups * (s.out * bits / 32) * 4 + groups * s.out * 2 +
         s.in * 4;
}

Units gptq_units(const ModelConfig& c, const QuantizeOptions& quant) {
  Units u;
  const GptqCheckpointConfig cfg = gptq_config_for(quant);
  for (int i = 0; i < c.n_layers; ++i)
    for (const auto& group : gptq_linear_groups()) {
      AllocUnit a;
      a.layer = i;
      a.linears = group;
      for (int b : kGptqBits) {
        bool packed = true;
        int64_t bytes = 0;
        for (Linear l : group) {
          const LinearShape s = linear_shape(c, l);
          packed = packed && gptq_stores_packed(s.out, s.in, b, cfg.group_size);
          bytes += gptq_linear_bytes(s, b, cfg.group_size);
        }
        if (!packed) continue;
        a.candidates.push_back(fmt::format("int{}", b));
        a.bytes.push_back(bytes);
      }
      if (a.candidates.empty()) {  // stored F16 (quantized at the job's bits, as without a budget)
        int64_t bytes = 0;
        for (Linear l : group) bytes += linear_shape(c, l).out * linear_shape(c, l).in * 2;
        a.candidates.emplace_back("F16");
        a.bytes.push_back(bytes);
      }
      u.units.push_back(std::move(a));
    }
  // F16 units are still solved at the job's bits (and stored dequantized), as without a budget.
  const SolverOptions base = quant.solver;
  u.setup = [base](int, Linear, const std::string& cand, const Matrix&, const Matrix&) {
    CandidateSetup s{base, std::nullopt};
    if (cand != "F16") s.solver.grid.bits = std::stoi(cand.substr(3));
    return s;
  };
  u.error_key = fmt::format("gptq|{}|bits-group={}|sym={}|act_order={}", quant.method.name(),
                            cfg.group_size, cfg.sym, quant.solver.act_order);
  return u;
}

std::string sensitivity_path_of(const QuantizeJob& job) {
  if (!job.allocation.sensitivity_path.empty()) return job.allocation.sensitivity_path;
  std::string out = job.out_path;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out + ".sensitivity.json";
}

std::string unit_tensor(const AllocUnit& u, size_t m) {
  return linear_display_name(u.layer, u.linears[m]);
}

// The cached sensitivities, when the file has every linear of the model.
std::optional<std::vector<TensorSensitivity>> cached_sensitivity(const json& cache,
                                                                 const ModelConfig& c) {
  if (!cache.contains("tensors") || !cache["tensors"].is_object()) return std::nullopt;
  std::vector<TensorSensitivity> out;
  for (int i = 0; i < c.n_layers; ++i)
    for (Linear l : kAllLinears) {
      const std::string name = linear_display_name(i, l);
      if (!cache["tensors"].contains(name)) return std::nullopt;
      const json& t = cache["tensors"][name];
      TensorSensitivity s;
      s.layer = i;
      s.linear = l;
      s.alpha = t.at("alpha").get<double>();
      s.t = t.at("t").get<std::vector<double>>();
      s.kl = t.at("kl").get<std::vector<double>>();
      out.push_back(std::move(s));
    }
  return out;
}

// Fills the units' errors from the cache; false when some candidate is missing.
bool cached_errors(const json& cache, const std::string& key, std::vector<AllocUnit>& units) {
  if (!cache.contains("errors") || !cache["errors"].contains(key)) return false;
  const json& e = cache["errors"][key];
  for (AllocUnit& u : units) {
    u.t2_weight.assign(u.linears.size(), std::vector<double>(u.candidates.size()));
    u.t2_objective = u.t2_weight;
    for (size_t m = 0; m < u.linears.size(); ++m) {
      const std::string name = unit_tensor(u, m);
      if (!e.contains(name)) return false;
      for (size_t c = 0; c < u.candidates.size(); ++c) {
        if (!e[name].contains(u.candidates[c])) return false;
        u.t2_weight[m][c] = e[name][u.candidates[c]].at(0).get<double>();
        u.t2_objective[m][c] = e[name][u.candidates[c]].at(1).get<double>();
      }
    }
  }
  return true;
}

void store(json& cache, const std::vector<TensorSensitivity>& sens, const SensitivityOptions& o,
           size_t windows, size_t seqlen) {
  cache["version"] = 1;
  cache["levels"] = o.levels;
  cache["windows"] = std::min(windows, static_cast<size_t>(o.max_windows));
  cache["seqlen"] = seqlen;
  for (const TensorSensitivity& s : sens)
    cache["tensors"][linear_display_name(s.layer, s.linear)] = {
        {"alpha", s.alpha}, {"t", s.t}, {"kl", s.kl}};
}

void store(json& cache, const std::string& key, const std::vector<AllocUnit>& units) {
  json& e = cache["errors"][key];
  for (const AllocUnit& u : units)
    for (size_t m = 0; m < u.linears.size(); ++m)
      for (size_t c = 0; c < u.candidates.size(); ++c)
        e[unit_tensor(u, m)][u.candidates[c]] = {u.t2_weight[m][c], u.t2_objective[m][c]};
}

int64_t linear_weights(const ModelConfig& c) {
  int64_t n = 0;
  for (Linear l : kAllLinears) n += linear_shape(c, l).out * linear_shape(c, l).in;
  return n * c.n_layers;
}

// 4 significant digits: the plan is metadata inside a file whose size is budgeted.
double rounded(double v) {
  return std::stod(fmt::format("{:.3e}", v));
}

json plan_json(const QuantizeJob& job, const AllocationPlan& plan, const ModelConfig& c) {
  json tensors = json::array();  // [name, type, predicted KL increase] per linear
  for (const AllocationEntry& e : plan.entries)
    for (size_t m = 0; m < e.linears.size(); ++m)
      tensors.push_back(json::array({linear_display_name(e.layer, e.linears[m]), e.candidate,
                                     rounded(e.member_predicted[m])}));
  json j = {{"version", 1},
            {"method", std::string(job.quant.method.name())},
            {"budget_bytes", plan.budget},
            {"linear_bytes", plan.bytes},
            {"linear_weights", linear_weights(c)},
            {"predicted_kl", rounded(plan.predicted)},
            {"error", plan.error == AllocationError::Weight ? "weight" : "objective"},
            {"exact", plan.exact},
            {"tensors", tensors}};
  if (job.allocation.target_bpw > 0) j["target_bpw"] = rounded(job.allocation.target_bpw);
  if (job.allocation.target_size > 0) j["target_size"] = job.allocation.target_size;
  return j;
}

// The plan's JSON at its longest: every unit at its longest name and largest size, the numbers
// at their widest, so that a header sized with it is never too small.
std::string longest_plan_json(const QuantizeJob& job, const std::vector<AllocUnit>& units,
                              const ModelConfig& c) {
  AllocationPlan p;
  p.budget = p.bytes = std::numeric_limits<int64_t>::max();
  p.predicted = -1.234e-300;
  for (const AllocUnit& u : units) {
    AllocationEntry e;
    e.layer = u.layer;
    e.linears = u.linears;
    for (const std::string& c : u.candidates)
      if (c.size() > e.candidate.size()) e.candidate = c;
    e.member_predicted.assign(u.linears.size(), -1.234e-300);
    p.entries.push_back(std::move(e));
  }
  QuantizeJob j = job;
  j.allocation.target_bpw = -1.234e-300;
  j.allocation.target_size = std::numeric_limits<int64_t>::max();
  return plan_json(j, p, c).dump();
}

// Bytes the linears may take: from --target-bpw directly; from --target-size, less what the
// rest of the file takes.
int64_t linear_budget(const QuantizeJob& job, ModelReader& reader, const Units& u,
                      const GgufExportOptions& gguf) {
  const AllocationRequest& a = job.allocation;
  const ModelConfig& c = reader.config();
  if (a.target_bpw > 0.0)
    return static_cast<int64_t>(a.target_bpw * static_cast<double>(linear_weights(c)) / 8.0);
  if (job.out_format == "gguf") {
    GgufExportOptions g = gguf;
    int64_t linears = 0;
    for (const AllocUnit& x : u.units) {
      g.tensor_types[gguf_linear_name(x.layer, x.linears[0])] = parse_ggml_type(x.candidates[0]);
      linears += x.bytes[0];
    }
    g.allocation = longest_plan_json(job, u.units, c);
    const auto tokenizer = load_model_tokenizer(gguf.source_path, gguf.tokenizer_path);
    const auto file = static_cast<int64_t>(gguf_file_bytes(c, tokenizer->vocab(), job.out_path, g));
    return a.target_size - (file - linears);
  }
  // GPTQ: the safetensors other than the linears: embeddings (and an untied head) and norms in
  // F16, and a header of at most 144 bytes per tensor (a name of ~40 characters, dtype, shape,
  // offsets; checked against the written shards by run_quantize_job).
  int64_t rest = static_cast<int64_t>(c.vocab_size) * c.dim * 2 * (c.tied_embeddings ? 1 : 2) +
                 (2 * c.n_layers + 1) * static_cast<int64_t>(c.dim) * 2;
  if (c.qkv_bias)
    rest += c.n_layers * (linear_shape(c, Linear::Q).out + 2 * linear_shape(c, Linear::K).out) * 2;
  rest += 144 * (c.n_layers * (4 * 7 + 2) + 4) + 1024;
  return a.target_size - rest;
}

}  // namespace

std::string apply_allocation(const QuantizeJob& job, ModelReader& reader,
                             const std::vector<std::vector<int>>& windows, QuantizeOptions& quant,
                             GgufExportOptions& gguf) {
  const AllocationRequest& a = job.allocation;
  CDQ_CHECK(job.out_format == "gguf" || job.out_format == "gptq",
            "--target-bpw / --target-size allocate GGUF types or GPTQ bits: use --format gguf or "
            "--format gptq, not {}",
            job.out_format);
  CDQ_CHECK(!(a.target_bpw > 0.0 && a.target_size > 0),
            "give --target-bpw or --target-size, not both");
  CDQ_CHECK(gguf.overrides.empty(), "--override cannot be combined with a size budget");
  CDQ_CHECK(!windows.empty(),
            "a size budget needs calibration windows (text or self-generated) for the "
            "sensitivities");
  const ModelConfig& c = reader.config();
  const auto note = [&](const std::string& s) {
    if (job.on_note) job.on_note(s);
  };
  Units u = job.out_format == "gguf" ? gguf_units(c, quant, gguf.importance) : gptq_units(c, quant);
  const int64_t budget = linear_budget(job, reader, u, gguf);
  int64_t smallest = 0;
  for (const AllocUnit& x : u.units) smallest += *std::min_element(x.bytes.begin(), x.bytes.end());
  CDQ_CHECK(budget >= smallest,
            "the size budget leaves {} bytes for the linears, below the {} bytes they take at "
            "their smallest candidates{}",
            budget, smallest, a.target_size > 0 ? " (the rest of the file counted)" : "");

  const std::string cache_path = sensitivity_path_of(job);
  json cache = fs::exists(cache_path) ? read_json_file(cache_path) : json::object();
  bool dirty = false;
  const Model model = load_model(reader);
  auto sens = cached_sensitivity(cache, c);
  if (sens) {
    note(fmt::format("sensitivity: read from {}", cache_path));
  } else {
    SensitivityOptions so = a.sensitivity;
    if (!so.progress) so.progress = note;
    sens = measure_sensitivity(model, windows, so);
    store(cache, *sens, so, windows.size(), windows.front().size());
    dirty = true;
  }
  if (cached_errors(cache, u.error_key, u.units)) {
    note(fmt::format("candidate errors: read from {}", cache_path));
  } else {
    measure_candidate_errors(model, windows, quant.method, u.setup, u.units, note);
    store(cache, u.error_key, u.units);
    dirty = true;
  }
  if (dirty) {
    write_json_file(cache_path, cache);
    note(fmt::format("sensitivity and candidate errors written to {}", cache_path));
  }

  const AllocationPlan plan = plan_allocation(u.units, *sens, budget, a.error);
  note("allocation plan:\n" + format_allocation_plan(plan));
  const std::string text = plan_json(job, plan, c).dump();
  if (job.out_format == "gguf") {
    for (const AllocationEntry& e : plan.entries)
      gguf.tensor_types[gguf_linear_name(e.layer, e.linears[0])] = parse_ggml_type(e.candidate);
    gguf.allocation = text;
  } else {
    std::vector<int> bits(static_cast<size_t>(c.n_layers) * 7, quant.solver.grid.bits);
    for (const AllocationEntry& e : plan.entries)
      if (e.candidate != "F16")
        for (Linear l : e.linears)
          bits[static_cast<size_t>(e.layer) * 7 + static_cast<size_t>(l)] =
              std::stoi(e.candidate.substr(3));
    quant.tune_linear = [bits](int layer, Linear l, SolverOptions& o) {
      o.grid.bits = bits[static_cast<size_t>(layer) * 7 + static_cast<size_t>(l)];
    };
  }
  return text;
}

json read_allocation(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path cfg = fs::path(path) / "config.json";
    CDQ_CHECK(fs::is_regular_file(cfg, ec), "{}: no config.json", path);
    const json j = read_json_file(cfg.string());
    return j.contains(kGptqAllocationKey) ? j[kGptqAllocationKey] : json();
  }
  CDQ_CHECK(is_gguf_file(path), "{}: neither a GGUF file nor a GPTQ directory", path);
  const GgufReader r(path);
  const GgufValue* v = r.find(kGgufAllocationKey);
  if (v == nullptr) return json();
  try {
    return json::parse(v->str());
  } catch (const json::exception& e) {
    fail("{}: {} is not JSON: {}", path, kGgufAllocationKey, e.what());
  }
}

}  // namespace cdq
