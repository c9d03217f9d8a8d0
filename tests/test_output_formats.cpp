// The output-format registry: names, help and errors from the table; the float output of a
// GGUF input (an F32 GGUF that reads back as the quantized model); packed formats refusing
// what they cannot store.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/gguf.hpp>
#include <cdquant/gguf_export.hpp>
#include <cdquant/model_tokenizer.hpp>
#include <cdquant/output_format.hpp>
#include <cdquant/quantize_job.hpp>
#include <numeric>

#include "support/errors.hpp"
#include "support/paths.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;

QuantizeJob small_job(const std::string& model, const std::string& out, const std::string& fmt) {
  QuantizeJob job;
  job.model_path = model;
  job.calib_path = test::shared_dir() + "/data/tinyshakespeare.txt";
  job.out_path = out;
  job.out_format = fmt;
  job.nsamples = 4;
  job.seqlen = 64;
  job.quant.method = parse_method("rtn");
  job.quant.solver.grid.bits = 4;
  job.quant.solver.grid.group_size = 32;
  return job;
}

// stories260K as an F32 GGUF (a GGUF input with the same weights and tokenizer).
std::string stories_gguf(const test::TempDir& tmp) {
  const std::string path = tmp.file("stories-f32.gguf");
  const Model m = load_model(test::stories260k_path());
  GgufExportOptions opt;
  opt.type = "F32";
  write_gguf_model(m, load_model_tokenizer(test::stories260k_path())->vocab(), path, opt);
  return path;
}

TEST(OutputFormats, TheTableNamesEveryFormat) {
  std::vector<std::string> names;
  for (const OutputFormat& f : output_formats()) {
    names.emplace_back(f.name);
    EXPECT_EQ(&find_output_format(f.name), &f);
    EXPECT_THAT(output_format_help(), HasSubstr(std::string(f.name) + " — "));
    EXPECT_NE(f.make_writer, nullptr);
    EXPECT_NE(f.open_result, nullptr);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"float", "gguf", "gptq"}));
  EXPECT_EQ(test::error_of([] { find_output_format("safetensors"); }),
            "unknown output format 'safetensors' (expected float, gguf or gptq)");
  EXPECT_TRUE(find_output_format("gguf").stores_codes);
  EXPECT_EQ(find_output_format("gguf").grid, GridKind::GgmlBlock);
  SolverOptions o;
  find_output_format("gptq").constrain(o);
  EXPECT_TRUE(o.grid.fp16_scales);
}

// The float output of a GGUF input is an F32 GGUF holding exactly the weights the float output
// of the same model as llama2.c holds (same weights, tokenizer and calibration windows).
TEST(OutputFormats, FloatOutputOfAGgufInputIsAnF32Gguf) {
  test::TempDir tmp("cdq-formats");
  const std::string gguf_in = stories_gguf(tmp);
  run_quantize_job(small_job(test::stories260k_path(), tmp.file("ref.bin"), "float"));
  run_quantize_job(small_job(gguf_in, tmp.file("out.gguf"), "float"));
  const Model ref = load_model(tmp.file("ref.bin"));
  auto reader = find_output_format("float").open_result(tmp.file("out.gguf"));
  EXPECT_EQ(reader->format(), "gguf");
  const Model got = load_model(*reader);
  const Model original = load_model(test::stories260k_path());
  for (size_t b = 0; b < ref.blocks.size(); ++b)
    for (Linear l : kAllLinears) {
      ASSERT_EQ(got.blocks[b].linear(l).data, ref.blocks[b].linear(l).data) << b;
      EXPECT_NE(got.blocks[b].linear(l).data, original.blocks[b].linear(l).data);  // quantized
    }
  const GgufSizeInfo size = gguf_size_info(tmp.file("out.gguf"));
  EXPECT_DOUBLE_EQ(size.bits_per_weight, 32.0);
}

TEST(OutputFormats, PackedFormatsRefuseCodesInATransformedBasis) {
  test::TempDir tmp("cdq-formats");
  QuantizeJob job = small_job(test::stories260k_path(), tmp.file("out.gguf"), "gguf");
  job.gguf.type = "Q8_0";
  job.quant.transform = [](int, int, int64_t d_in) {
    Matrix r(d_in, d_in);
    for (int64_t i = 0; i < d_in; ++i) r(i, d_in - 1 - i) = 1.0f;  // reversal: orthogonal
    return std::make_unique<DenseOrthogonalTransform>(std::move(r), "reversal");
  };
  EXPECT_EQ(test::error_of([&] { run_quantize_job(job); }),
            "--format gguf stores codes, but blk.0.attn_q was solved in the 'reversal' basis, "
            "which it cannot record; use --format float");
  job.out_format = "float";
  job.out_path = tmp.file("out.bin");
  EXPECT_EQ(test::error_of([&] { run_quantize_job(job); }), "(no error)");
}

TEST(OutputFormats, PackedFormatsRefuseFloatOnlyMethods) {
  EXPECT_EQ(test::error_of(
                [] { check_format_holds(find_output_format("gptq"), parse_method("easyquant")); }),
            "--format gptq cannot hold --method easyquant: it keeps outlier weights in float, "
            "which GGUF and GPTQ cannot store; use --format float");
  for (const char* m : {"higgs", "higgs-cd"})
    EXPECT_THAT(
        test::error_of([&] { check_format_holds(find_output_format("gguf"), parse_method(m)); }),
        HasSubstr("needs the online Hadamard transform at inference"));
  EXPECT_EQ(test::error_of(
                [] { check_format_holds(find_output_format("float"), parse_method("higgs-cd")); }),
            "(no error)");
  // hqq fits the block parameters of GGUF's types with mins (ggml_hqq.cpp).
  EXPECT_EQ(
      test::error_of([] { check_format_holds(find_output_format("gguf"), parse_method("hqq")); }),
      "(no error)");
}

TEST(OutputFormats, FloatOutputOfAGptqCheckpointIsAClearError) {
  test::TempDir tmp("cdq-formats");
  run_quantize_job(small_job(test::stories260k_path(), tmp.file("gptq"), "gptq"));
  EXPECT_THAT(test::error_of([&] {
                run_quantize_job(small_job(tmp.file("gptq"), tmp.file("again"), "float"));
              }),
              HasSubstr("a float checkpoint in the 'gptq' format cannot be written; use "
                        "--format gguf or gptq"));
}

}  // namespace
}  // namespace cdq
