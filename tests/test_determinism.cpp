// Output bytes depend on the input and the flags only: not on the thread count (OpenMP's and
// OpenBLAS's), and not on the output's file name. Runs the CLI as a user would, on stories260K
// with self-calibration (the model's own samples, then H, CD and the writers), small settings.
#include <gtest/gtest.h>

#include <cdquant/gguf.hpp>
#include <string>
#include <vector>

#include "support/cli.hpp"
#include "support/paths.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

// cdquant quantize with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = threads; the output's bytes.
std::string quantize_bytes(const std::vector<std::string>& flags, const std::string& out,
                           int threads) {
  std::vector<std::string> args{"OMP_NUM_THREADS=" + std::to_string(threads),
                                "OPENBLAS_NUM_THREADS=" + std::to_string(threads),
                                test::cli_path(),
                                "quantize",
                                "--model",
                                test::stories260k_path(),
                                "--out",
                                out,
                                "--nsamples",
                                "32",
                                "--seqlen",
                                "64",
                                "--quiet"};
  args.insert(args.end(), flags.begin(), flags.end());
  const auto r = test::run_program("/usr/bin/env", args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return test::read_file(out);
}

// Index of the first byte where a and b differ (a.size() when one is a prefix of the other).
size_t first_difference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

struct QuantizeRun {
  const char* name;
  std::vector<std::string> flags;
  const char* ext;
};

const std::vector<QuantizeRun>& runs() {
  static const std::vector<QuantizeRun> r = {
      {"float CD 3-bit g32",
       {"--format", "float", "--method", "cd", "--bits", "3", "--group", "32"},
       ".bin"},
      {"GGUF Q4_K CD", {"--format", "gguf", "--type", "Q4_K", "--method", "cd"}, ".gguf"},
      {"GGUF Q3_K GPTQ", {"--format", "gguf", "--type", "Q3_K", "--method", "gptq"}, ".gguf"},
  };
  return r;
}

// The defect: 48,493 floats of the float CD output and 23 GGUF tensors differed between 1 and 2
// threads (OpenBLAS's threaded LAPACK and products, and a self-calibration batch chosen from
// the thread count). 3 threads split rows and tiles unevenly.
TEST(Determinism, OutputBytesDoNotDependOnTheThreadCount) {
  test::TempDir tmp("cdq-threads");
  for (const QuantizeRun& run : runs()) {
    const std::string one = quantize_bytes(run.flags, tmp.file(std::string("t1") + run.ext), 1);
    ASSERT_GT(one.size(), 1000u) << run.name;
    for (int threads : {2, 3}) {
      const std::string many =
          quantize_bytes(run.flags, tmp.file("t" + std::to_string(threads) + run.ext), threads);
      EXPECT_EQ(one.size(), many.size()) << run.name << ", " << threads << " threads";
      EXPECT_TRUE(one == many) << run.name << ": 1 and " << threads
                               << " threads differ first at byte " << first_difference(one, many);
    }
  }
}

// general.name used to be the output's stem, so the same run under two names differed.
TEST(Determinism, OutputBytesDoNotDependOnTheOutputName) {
  test::TempDir tmp("cdq-names");
  const std::vector<std::string> flags{"--format", "gguf", "--type", "Q4_0", "--method", "rtn"};
  const std::string a = quantize_bytes(flags, tmp.file("first.gguf"), 2);
  const std::string b = quantize_bytes(flags, tmp.file("another-name.gguf"), 2);
  EXPECT_TRUE(a == b) << "first difference at byte " << first_difference(a, b);
  // The name is the input's stem.
  const GgufReader in(tmp.file("first.gguf"));
  EXPECT_EQ(in.get("general.name").str(), "stories260K");

  const std::vector<std::string> fl{"--format", "float", "--method", "rtn", "--bits", "4"};
  EXPECT_TRUE(quantize_bytes(fl, tmp.file("x.bin"), 2) == quantize_bytes(fl, tmp.file("y.bin"), 2));
}

// A GGUF input keeps its own general.name through a GGUF output.
TEST(Determinism, AGgufInputKeepsItsName) {
  test::TempDir tmp("cdq-gguf-name");
  const std::vector<std::string> flags{"--format", "gguf", "--type", "Q8_0", "--method", "rtn"};
  quantize_bytes(flags, tmp.file("first.gguf"), 1);
  const auto r = test::run_cli({"quantize", "--model", tmp.file("first.gguf"), "--out",
                                tmp.file("second.gguf"), "--format", "gguf", "--type", "Q8_0",
                                "--method", "rtn", "--nsamples", "4", "--seqlen", "32", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(GgufReader(tmp.file("second.gguf")).get("general.name").str(), "stories260K");
}

}  // namespace
}  // namespace cdq
