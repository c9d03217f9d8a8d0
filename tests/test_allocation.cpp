// Size-budget allocation: the sensitivity fit, the plan's budget, and the plan in GGUF files
// and GPTQ checkpoints (written, read back, and the GPTQ `dynamic` bits as loaders read them).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/allocation.hpp>
#include <cdquant/allocation_job.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/quantize_job.hpp>
#include <cdquant/rng.hpp>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "model/gguf_arch.hpp"
#include "model/gptq_config.hpp"
#include "model/model_hf.hpp"
#include "support/errors.hpp"
#include "support/paths.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;

Matrix random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  Rng rng(seed);
  Matrix m(rows, cols);
  for (float& v : m.data) v = static_cast<float>(rng.normal());
  return m;
}

double relative_error(const Matrix& p, const Matrix& w) {
  double d = 0.0, n = 0.0;
  for (size_t i = 0; i < w.data.size(); ++i) {
    d += std::pow(static_cast<double>(p.data[i]) - w.data[i], 2);
    n += std::pow(static_cast<double>(w.data[i]), 2);
  }
  return d / n;
}

TEST(Allocation, NoiseHasExactlyTheRelativeError) {
  const Matrix w = random_matrix(20, 30, 1);
  for (double t : {0.01, 0.1, 0.5}) {
    Matrix p = w;
    add_relative_noise(p, t, 9);
    EXPECT_NEAR(relative_error(p, w), t * t, 1e-6 * t * t);
  }
}

// A "model" whose response is linear in the relative error by construction: the fit returns
// its slope, whatever the levels.
TEST(Allocation, SensitivityFitIsExactOnALinearResponse) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    const Matrix w = random_matrix(16, 24, seed);
    const double alpha = 0.5 + static_cast<double>(seed);
    const TensorSensitivity s = fit_sensitivity(
        w, {0.02, 0.07, 0.3}, seed, [&](const Matrix& p) { return alpha * relative_error(p, w); });
    EXPECT_NEAR(s.alpha, alpha, 1e-5 * alpha);
    ASSERT_EQ(s.kl.size(), 3u);
    EXPECT_NEAR(s.kl[2], alpha * 0.09, 1e-5);
  }
  // A quadratic response is not fitted exactly: the fit is a real least-squares line.
  const Matrix w = random_matrix(8, 8, 3);
  const TensorSensitivity q = fit_sensitivity(w, {0.1, 0.2}, 3, [&](const Matrix& p) {
    const double e = relative_error(p, w);
    return e + 100.0 * e * e;
  });
  EXPECT_GT(q.alpha, 1.0 + 1e-3);
}

TEST(Allocation, FitThroughOrigin) {
  EXPECT_DOUBLE_EQ(fit_through_origin({1, 2, 3}, {2, 4, 6}), 2.0);
  EXPECT_NEAR(fit_through_origin({1, 2}, {1, 3}), 7.0 / 5.0, 1e-12);
}

// On a random model every linear matters (alpha > 0) and the KL grows with the noise.
TEST(Allocation, MeasuredSensitivityGrowsWithNoise) {
  const Model model = test::random_model(test::tiny_config(), 4);
  std::vector<std::vector<int>> windows;
  for (int i = 0; i < 3; ++i) windows.push_back(test::random_tokens(16, 40, 10 + i));
  SensitivityOptions o;
  o.levels = {0.05, 0.1, 0.2};
  const auto sens = measure_sensitivity(model, windows, o);
  ASSERT_EQ(sens.size(), 14u);
  for (const TensorSensitivity& s : sens) {
    EXPECT_GT(s.alpha, 0.0) << linear_display_name(s.layer, s.linear);
    EXPECT_LT(s.kl[0], s.kl[1]);
    EXPECT_LT(s.kl[1], s.kl[2]);
  }
}

std::vector<AllocUnit> synthetic_units(int n) {
  std::vector<AllocUnit> units;
  for (int i = 0; i < n; ++i) {
    AllocUnit u;
    u.layer = i / 7;
    u.linears = {static_cast<Linear>(i % 7)};
    u.candidates = {"big", "mid", "small"};
    u.bytes = {400, 200, 100};
    u.t2_weight = {{0.001, 0.01, 0.1}};
    u.t2_objective = {{0.002, 0.02, 0.2}};
    units.push_back(u);
  }
  return units;
}

TEST(Allocation, PlanKeepsTheBudgetAndSpendsItWhereAlphaIsLarge) {
  const auto units = synthetic_units(14);
  std::vector<TensorSensitivity> sens;
  for (int i = 0; i < 14; ++i) {
    TensorSensitivity s;
    s.layer = i / 7;
    s.linear = static_cast<Linear>(i % 7);
    s.alpha = i == 3 ? 100.0 : 1.0;
    sens.push_back(s);
  }
  const AllocationPlan p = plan_allocation(units, sens, 14 * 100 + 300, AllocationError::Weight);
  EXPECT_LE(p.bytes, p.budget);
  EXPECT_EQ(p.entries[3].candidate, "big");  // the one sensitive linear gets the bytes
  for (size_t i = 0; i < p.entries.size(); ++i)
    if (i != 3) {
      EXPECT_EQ(p.entries[i].candidate, "small");
    }
  EXPECT_NEAR(p.predicted, 100.0 * 0.001 + 13 * 0.1, 1e-12);
  EXPECT_THAT(test::error_of([&] { plan_allocation(units, sens, 1399, AllocationError::Weight); }),
              HasSubstr("below the smallest possible size"));
}

QuantizeJob budget_job(const std::string& format, const std::string& out) {
  QuantizeJob job;
  job.model_path = test::stories260k_path();
  job.calib_path = "self";
  job.out_path = out;
  job.out_format = format;
  job.nsamples = 4;
  job.seqlen = 64;
  job.quant.method = parse_method("rtn");
  job.quant.solver.grid.bits = 4;
  job.quant.solver.grid.group_size = 32;
  job.allocation.sensitivity.levels = {0.05, 0.1};
  return job;
}

TEST(Allocation, GgufPlanSurvivesTheFileAndFitsTheSize) {
  test::TempDir tmp("cdq-alloc");
  QuantizeJob job = budget_job("gguf", tmp.file("a.gguf"));
  job.allocation.target_size = 300'000;  // between uniform Q4_0 (258,592) and Q8_0 (344,352)
  run_quantize_job(job);
  EXPECT_LE(std::filesystem::file_size(job.out_path), 300'000u);
  EXPECT_TRUE(std::filesystem::exists(tmp.file("a.gguf.sensitivity.json")));
  const nlohmann::json plan = read_allocation(job.out_path);
  ASSERT_TRUE(plan.is_object());
  EXPECT_EQ(plan["target_size"], 300'000);
  const GgufReader file(job.out_path);
  int checked = 0, types = 0;
  std::set<std::string> seen;
  for (const auto& e : plan["tensors"]) {
    const std::string name = e[0].get<std::string>() + ".weight";
    EXPECT_EQ(ggml_type_name(file.tensor(name).type), e[1].get<std::string>()) << name;
    seen.insert(e[1].get<std::string>());
    ++checked;
  }
  EXPECT_EQ(checked, 35);
  types = static_cast<int>(seen.size());
  EXPECT_GE(types, 2);  // a real mix, not one type everywhere
  // A second budget reuses the cache and a smaller one gives a smaller file.
  QuantizeJob small = job;
  small.out_path = tmp.file("b.gguf");
  small.allocation.target_size = 270'000;
  small.allocation.sensitivity_path = tmp.file("a.gguf.sensitivity.json");
  run_quantize_job(small);
  EXPECT_LE(std::filesystem::file_size(small.out_path), 270'000u);
  EXPECT_LT(read_allocation(small.out_path)["linear_bytes"].get<int64_t>(),
            plan["linear_bytes"].get<int64_t>());
  // Below the smallest file the job says so.
  QuantizeJob tiny = small;
  tiny.out_path = tmp.file("c.gguf");
  tiny.allocation.target_size = 150'000;
  EXPECT_THAT(test::error_of([&] { run_quantize_job(tiny); }), HasSubstr("below the"));
}

TEST(Allocation, GptqDynamicGivesEachModuleItsBits) {
  GptqCheckpointConfig c;
  c.bits = 4;
  c.dynamic_bits = {{gptq_group_override(1, {Linear::Q, Linear::K, Linear::V}), 8},
                    {gptq_group_override(10, {Linear::Down}), 2}};
  const GptqCheckpointConfig back =
      parse_gptq_quantization_config(gptq_quantization_config(c), "test");
  ASSERT_EQ(back.dynamic_bits.size(), 2u);
  EXPECT_EQ(gptq_module_bits(back, "model.layers.1.self_attn.q_proj"), 8);
  EXPECT_EQ(gptq_module_bits(back, "model.layers.1.self_attn.qkv_proj"), 8);  // vLLM's fused
  EXPECT_EQ(gptq_module_bits(back, "model.layers.1.self_attn.o_proj"), 4);
  EXPECT_EQ(gptq_module_bits(back, "model.layers.11.self_attn.q_proj"), 4);  // not layer 1
  EXPECT_EQ(gptq_module_bits(back, "model.layers.10.mlp.down_proj"), 2);
  EXPECT_EQ(gptq_module_bits(back, "model.layers.1.mlp.down_proj"), 4);
}

TEST(Allocation, GptqPlanSurvivesTheCheckpointAndItsDynamicBits) {
  test::TempDir tmp("cdq-alloc");
  QuantizeJob job = budget_job("gptq", tmp.file("out"));
  job.allocation.target_bpw = 9.5;  // between 8.56 (attention at 2 bits) and 10.61 (at 8)
  run_quantize_job(job);
  const nlohmann::json plan = read_allocation(job.out_path);
  ASSERT_TRUE(plan.is_object());
  const nlohmann::json cfg = nlohmann::json::parse(test::read_file(tmp.file("out/config.json")));
  const GptqCheckpointConfig q = parse_gptq_quantization_config(cfg["quantization_config"], "t");
  int packed = 0;
  std::set<int> bits;
  for (const auto& e : plan["tensors"]) {
    const std::string type = e[1];
    if (type == "F16") continue;
    const std::string name = e[0];  // blk.3.attn_q
    const int layer = std::stoi(name.substr(4, name.find('.', 4) - 4));
    const std::string kind = name.substr(name.find('.', 4) + 1);
    Linear l = Linear::Q;
    for (Linear x : kAllLinears)
      if (linear_display_name(layer, x) == name) l = x;
    (void)kind;
    const int b = std::stoi(type.substr(3));
    EXPECT_EQ(gptq_module_bits(q, hf_linear_prefix(layer, l)), b) << name;
    bits.insert(b);
    ++packed;
  }
  EXPECT_GT(packed, 0);
  EXPECT_GE(bits.size(), 2u);  // mixed bits, so `dynamic` carries some
  // The checkpoint reads back (each module unpacked at its own bits).
  const Model m = load_model(job.out_path);
  EXPECT_EQ(m.config.n_layers, 5);
}

}  // namespace
}  // namespace cdq
