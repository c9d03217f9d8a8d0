// Where `cdquant quantize` gets its calibration: a text file, the float model's own samples
// (no --calib, or --calib self), or nothing for a method that reads no H.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/method.hpp>
#include <cdquant/output_format.hpp>
#include <cdquant/quantize_job.hpp>
#include <cdquant/text_file.hpp>

#include "support/errors.hpp"
#include "support/paths.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;

QuantizeJob job_for(const std::string& method, const std::string& calib, const std::string& out) {
  QuantizeJob job;
  job.model_path = test::stories260k_path();
  job.calib_path = calib;
  job.out_path = out;
  job.nsamples = 8;
  job.seqlen = 128;
  job.seed = 5;
  job.quant.method = parse_method(method);
  job.quant.solver.grid.bits = 3;
  job.quant.solver.grid.group_size = 32;
  return job;
}

std::string text_calib() {
  return test::shared_dir() + "/data/tinyshakespeare.txt";
}

TEST(CalibrationSource, FollowsTheMethodsNeedForH) {
  EXPECT_EQ(calibration_source(job_for("rtn", "", "x")), CalibrationSource::None);
  EXPECT_EQ(calibration_source(job_for("rtn", text_calib(), "x")), CalibrationSource::None);
  EXPECT_EQ(calibration_source(job_for("gptq", "", "x")), CalibrationSource::Self);
  EXPECT_EQ(calibration_source(job_for("cd", "self", "x")), CalibrationSource::Self);
  EXPECT_EQ(calibration_source(job_for("cd", text_calib(), "x")), CalibrationSource::Text);
  // GGUF fits its block scales with importance diag(H): RTN into GGUF reads H too.
  QuantizeJob gguf = job_for("rtn", text_calib(), "x");
  gguf.out_format = "gguf";
  EXPECT_EQ(calibration_source(gguf), CalibrationSource::Text);
  gguf.calib_path = "";
  EXPECT_EQ(calibration_source(gguf), CalibrationSource::Self);
  gguf.gguf.importance = false;  // --no-importance: ggml's plain rule
  EXPECT_EQ(calibration_source(gguf), CalibrationSource::None);
  // HQQ's block fit is data-free: no diag(H) is read for it.
  QuantizeJob hqq = job_for("hqq", "", "x");
  hqq.out_format = "gguf";
  EXPECT_EQ(calibration_source(hqq), CalibrationSource::None);
  QuantizeJob owc = job_for("rtn", "", "x");
  owc.quant.solver.grid.search = ScaleSearch::Owc;  // RTN on the H-weighted grid reads H
  EXPECT_EQ(calibration_source(owc), CalibrationSource::Self);
}

// Min-max RTN reads no H: with or without calibration text, the same bytes.
TEST(CalibrationSource, DataFreeRtnIgnoresCalibration) {
  test::TempDir tmp("cdq-calib");
  run_quantize_job(job_for("rtn", text_calib(), tmp.file("text.bin")));
  run_quantize_job(job_for("rtn", "", tmp.file("none.bin")));
  EXPECT_EQ(test::read_file(tmp.file("text.bin")), test::read_file(tmp.file("none.bin")));
}

TEST(CalibrationSource, SelfCalibrationIsSeededAndSavable) {
  test::TempDir tmp("cdq-calib");
  QuantizeJob a = job_for("cd", "self", tmp.file("a.bin"));
  a.save_calib_path = tmp.file("samples.txt");
  int progress_calls = 0;
  a.on_self_calibration = [&](const SelfCalibrationProgress&) { ++progress_calls; };
  run_quantize_job(a);
  EXPECT_GT(progress_calls, 0);
  run_quantize_job(job_for("cd", "", tmp.file("b.bin")));  // no --calib: the same as self
  run_quantize_job(job_for("cd", text_calib(), tmp.file("text.bin")));
  EXPECT_EQ(test::read_file(tmp.file("a.bin")), test::read_file(tmp.file("b.bin")));
  EXPECT_NE(test::read_file(tmp.file("a.bin")), test::read_file(tmp.file("text.bin")));
  const std::string samples = read_file(tmp.file("samples.txt"));
  EXPECT_GT(samples.size(), 8u * 100u);  // 8 windows of 128 tokens, a few bytes per token
  QuantizeJob c = job_for("cd", "self", tmp.file("c.bin"));
  c.seed = 6;
  run_quantize_job(c);
  EXPECT_NE(test::read_file(tmp.file("a.bin")), test::read_file(tmp.file("c.bin")));
}

// Without --calib every method runs into every format that can hold it (self-calibrating where
// H is read), and the others are refused up front with the format's reason.
TEST(CalibrationSource, EveryMethodRunsWithoutCalibIntoEveryFormatThatHoldsIt) {
  test::TempDir tmp("cdq-calib");
  int ran = 0, refused = 0;
  for (const MethodInfo& row : method_table())
    for (const OutputFormat& format : output_formats()) {
      SCOPED_TRACE(std::string(row.name) + " -> " + std::string(format.name));
      QuantizeJob job = job_for(std::string(row.name), "", tmp.file("out"));
      job.out_path = tmp.file(std::string(row.name) + "." + std::string(format.name));
      job.out_format = format.name;
      job.nsamples = 2;
      job.seqlen = 32;
      job.quant.solver.grid.bits = 4;
      job.quant.solver.grid.group_size = 0;  // easyquant is per channel only
      job.gguf.type = "Q8_0";
      const std::string holds = test::error_of([&] { check_format_holds(format, Method(row)); });
      if (holds != "(no error)") {
        ++refused;
        EXPECT_EQ(test::error_of([&] { run_quantize_job(job); }), holds);
        continue;
      }
      ++ran;
      EXPECT_EQ(test::error_of([&] { run_quantize_job(job); }), "(no error)");
    }
  EXPECT_GT(ran, 0);
  EXPECT_GT(refused, 0);
}

TEST(CalibrationSource, SaveCalibNeedsSelfCalibration) {
  test::TempDir tmp("cdq-calib");
  QuantizeJob job = job_for("cd", text_calib(), tmp.file("out.bin"));
  job.save_calib_path = tmp.file("samples.txt");
  EXPECT_THAT(test::error_of([&] { run_quantize_job(job); }),
              HasSubstr("--save-calib keeps self-calibration samples"));
}

}  // namespace
}  // namespace cdq
