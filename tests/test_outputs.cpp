// The output discipline (cdquant/output_file.hpp) and the defects it fixes: outputs are built
// under fresh names and renamed whole, never written through planted links, never replace an
// input or a non-regular file, leave nothing behind on a write failure or a signal, and their
// location is checked before the run; output folders are built fresh (no stale index), and a
// GPTQ request that packs nothing is an error.
#include <fcntl.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cdquant/model.hpp>
#include <cdquant/model_writer.hpp>
#include <cdquant/output_file.hpp>
#include <cdquant/safetensors.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "export/hf_writer.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"
#include "support/hf_model.hpp"
#include "support/paths.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using ::testing::HasSubstr;
using ::testing::Not;

std::string calib_text() {
  return test::shared_dir() + "/data/tinyshakespeare.txt";
}

// stories260K and its tokenizer copied into dir, so that a test writing onto an input can
// never damage the shared copy.
std::string copy_stories(const std::string& dir) {
  fs::create_directories(dir);
  fs::copy_file(test::shared_dir() + "/models/stories260K.bin", dir + "/stories260K.bin");
  fs::copy_file(test::shared_dir() + "/models/tok512.bin", dir + "/tok512.bin");
  return dir + "/stories260K.bin";
}

// Every file under dir (recursively, links as links) with its bytes or link target.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string rel = fs::relative(e.path(), dir).string();
    if (e.is_symlink())
      out[rel] = "-> " + fs::read_symlink(e.path()).string();
    else if (e.is_regular_file())
      out[rel] = test::read_file(e.path().string());
    else
      out[rel] = e.is_directory() ? "(dir)" : "(other)";
  }
  return out;
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A quick quantize: RTN needs no calibration, GGUF without importance neither.
std::vector<std::string> quick(const std::string& model, const std::string& out,
                               const std::string& format, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"quantize", "--model",  model, "--out",  out, "--format",
                                format,     "--method", "rtn", "--bits", "4", "--quiet"};
  if (format == "gguf") a.insert(a.end(), {"--type", "Q8_0", "--no-importance"});
  if (format == "gptq") a.insert(a.end(), {"--group", "32"});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// ---- OutputFile / OutputDir ---------------------------------------------------------------------

TEST(OutputFile, BuiltUnderAFreshHiddenNameBesideTheDestinationAndRenamedWhole) {
  test::TempDir tmp;
  const std::string path = tmp.file("out.bin");
  const mode_t old_mask = ::umask(027);
  {
    OutputFile a(path), b(path);
    EXPECT_NE(a.temp_path(), b.temp_path());  // unpredictable, never the same twice
    EXPECT_EQ(fs::path(a.temp_path()).parent_path(), fs::path(path).parent_path());
    EXPECT_EQ(fs::path(a.temp_path()).filename().string()[0], '.');
    a.write("hello");
    EXPECT_FALSE(fs::exists(path));  // nothing under the final name before commit
    a.commit();
    EXPECT_EQ(test::read_file(path), "hello");
  }  // b, never committed, leaves nothing
  ::umask(old_mask);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);  // 0666 less the umask, as any new file
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"out.bin"});
}

TEST(OutputFile, ALinkAtTheDestinationIsReplacedNotWrittenThrough) {
  test::TempDir tmp;
  const std::string victim = tmp.write("victim", "precious");
  fs::create_symlink(victim, tmp.file("out.bin"));
  OutputFile out(tmp.file("out.bin"));
  out.write("new");
  out.commit();
  EXPECT_EQ(test::read_file(victim), "precious");
  EXPECT_FALSE(fs::is_symlink(tmp.file("out.bin")));
  EXPECT_EQ(test::read_file(tmp.file("out.bin")), "new");
}

TEST(OutputFile, NonRegularDestinationsAndMissingFoldersAreRefused) {
  test::TempDir tmp;
  ASSERT_EQ(::mkfifo(tmp.file("fifo").c_str(), 0600), 0);
  EXPECT_THAT(error_of([&] { OutputFile f(tmp.file("fifo")); }), HasSubstr("a FIFO"));
  fs::create_directory(tmp.file("sub"));
  EXPECT_THAT(error_of([&] { OutputFile f(tmp.file("sub")); }), HasSubstr("a folder"));
  EXPECT_THAT(error_of([&] { OutputFile f(tmp.file("missing/x.bin")); }),
              HasSubstr("does not exist"));
  EXPECT_TRUE(fs::is_fifo(tmp.file("fifo")));
}

TEST(OutputDir, ReplacesAPreviousOutputFolderWholeAndNothingElse) {
  test::TempDir tmp;
  const std::string out = tmp.file("out");
  fs::create_directory(out);
  tmp.write("out/config.json", "{}");
  tmp.write("out/stale.safetensors.index.json", "old");
  {
    OutputDir d(out);
    EXPECT_EQ(fs::path(d.build_path()).parent_path(), fs::path(tmp.path()));
    tmp.write(fs::relative(d.build_path(), tmp.path()).string() + "/config.json", "new");
    d.commit();
  }
  EXPECT_EQ(names_in(out), std::vector<std::string>{"config.json"});  // the stale file went
  EXPECT_EQ(test::read_file(out + "/config.json"), "new");
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"out"});  // no old or temp folder

  // A folder that is not a model output, and a link to a folder, are never replaced.
  fs::create_directory(tmp.file("home"));
  tmp.write("home/notes.txt", "mine");
  EXPECT_THAT(error_of([&] { OutputDir d(tmp.file("home")); }),
              HasSubstr("does not look like a model folder"));
  fs::create_directory_symlink(out, tmp.file("link"));
  EXPECT_THAT(error_of([&] { OutputDir d(tmp.file("link")); }), HasSubstr("symbolic link"));
  {
    OutputDir d(tmp.file("never"));  // uncommitted: its temporary folder goes
  }
  EXPECT_EQ(names_in(tmp.path()), (std::vector<std::string>{"home", "link", "out"}));
}

// ---- defect 2: planted links at the old predictable temporary names -------------------------

TEST(Outputs, PlantedLinksAtTheOldTemporaryNamesAreNotFollowed) {
  test::TempDir tmp;
  const std::string model = copy_stories(tmp.file("in"));
  const std::string victim = tmp.write("victim", "precious");
  const std::string out = tmp.file("out");
  fs::create_directory(out);
  // The names main wrote through: X.gguf.tmp, X.bin.partial, dir/config.json.tmp, and side files
  // copied onto whatever is at dir/tokenizer.bin.
  for (const char* name : {"q.gguf.tmp", "q.bin.partial", "calib.txt.partial"})
    fs::create_symlink(victim, out + "/" + name);
  fs::create_directory(out + "/g");
  tmp.write("out/g/config.json", "{}");  // a previous output, so it may be replaced
  for (const char* name :
       {"config.json.tmp", "quantize_config.json.tmp", "model.safetensors.tmp", "tokenizer.bin"})
    fs::create_symlink(victim, out + "/g/" + name);

  auto r = test::run_cli(quick(model, out + "/q.gguf", "gguf"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli({"quantize", "--model", model, "--out", out + "/q.bin", "--method", "gptq",
                     "--calib", "self", "--nsamples", "2", "--seqlen", "16", "--save-calib",
                     out + "/calib.txt", "--quiet"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli(quick(model, out + "/g", "gptq"));
  EXPECT_EQ(r.exit_code, 0) << r.err;

  EXPECT_EQ(test::read_file(victim), "precious");
  for (const char* name : {"q.gguf.tmp", "q.bin.partial", "calib.txt.partial"})
    EXPECT_TRUE(fs::is_symlink(out + "/" + name)) << name;  // left alone, never opened
  EXPECT_FALSE(fs::is_symlink(out + "/g/tokenizer.bin"));   // the folder was built fresh
  EXPECT_GT(fs::file_size(out + "/g/tokenizer.bin"), 100u);
  EXPECT_GT(fs::file_size(out + "/q.gguf"), 1000u);
  EXPECT_GT(fs::file_size(out + "/calib.txt"), 10u);
}

// ---- defect 3: --out (or --save-calib) equal to an input ------------------------------------

TEST(Outputs, OutEqualToAnInputIsRefusedNamingBothAndTheInputIsKept) {
  test::TempDir tmp;
  const std::string model = copy_stories(tmp.file("in"));
  const std::string tok = tmp.file("in/tok512.bin");
  const std::string calib = tmp.file("in/calib.txt");
  fs::copy_file(calib_text(), calib);
  ASSERT_EQ(test::run_cli(quick(model, tmp.file("in/m.gguf"), "gguf")).exit_code, 0);
  ASSERT_EQ(test::run_cli(quick(model, tmp.file("in/g"), "gptq")).exit_code, 0);
  const Model hf = test::random_model(test::tiny_config(), 5);
  test::write_hf_model(hf, tmp.file("in/hf"));
  fs::create_hard_link(model, tmp.file("in/hard.bin"));
  const auto before = snapshot(tmp.file("in"));

  struct Case {
    std::vector<std::string> args;
    std::string input;  // named in the message
    std::string why;
  };
  const std::string gguf = tmp.file("in/m.gguf"), gptq = tmp.file("in/g"),
                    hfdir = tmp.file("in/hf");
  const std::vector<Case> cases = {
      {quick(model, model, "float"), model, "is the input"},
      {quick(model, tmp.file("in/../in/./stories260K.bin"), "float"), model, "is the input"},
      {quick(model, tmp.file("in/hard.bin"), "float"), model, "is the input"},  // same inode
      {quick(model, tok, "float"), tok, "is the input"},
      {quick(gguf, gguf, "gguf"), gguf, "is the input"},
      {quick(gguf, gguf, "float"), gguf, "is the input"},
      {quick(gptq, gptq, "gptq"), gptq, "is the input"},
      {quick(hfdir, hfdir + "/model.safetensors", "float"), hfdir, "lies inside the input"},
      {quick(hfdir, hfdir + "/model.safetensors", "gguf", {"--tokenizer", tok}), hfdir,
       "lies inside the input"},
      {quick(hfdir, hfdir, "float"), hfdir, "is the input"},
      {quick(model, tmp.file("in"), "gptq"), model, "contains the input"},
      {{"quantize", "--model", model, "--calib", calib, "--out", calib, "--method", "gptq",
        "--quiet"},
       calib,
       "is the input"},
      {{"quantize", "--model", model, "--out", tmp.file("o.bin"), "--method", "gptq", "--nsamples",
        "2", "--seqlen", "16", "--save-calib", model, "--quiet"},
       model,
       "is the input"},
      {{"quantize", "--model", model, "--out", tmp.file("o.bin"), "--method", "gptq", "--nsamples",
        "2", "--seqlen", "16", "--save-calib", tok, "--quiet"},
       tok,
       "is the input"},
  };
  for (const Case& c : cases) {
    const auto r = test::run_cli(c.args);
    EXPECT_NE(r.exit_code, 0) << fmt::format("{}", fmt::join(c.args, " "));
    EXPECT_THAT(r.err, HasSubstr(c.why)) << fmt::format("{}", fmt::join(c.args, " "));
    EXPECT_THAT(r.err, HasSubstr(c.input));
  }
  EXPECT_TRUE(snapshot(tmp.file("in")) == before);  // every input byte-identical
  EXPECT_FALSE(fs::exists(tmp.file("o.bin")));
}

// ---- defect 4: non-regular outputs ----------------------------------------------------------

TEST(Outputs, NonRegularOutIsRefusedAndLeftAsItIs) {
  test::TempDir tmp;
  const std::string model = copy_stories(tmp.file("in"));
  ASSERT_EQ(::mkfifo(tmp.file("fifo").c_str(), 0600), 0);
  // A character device like /dev/null (1, 3), made here so that a regression could never
  // replace the machine's own /dev/null; skipped where mknod is not permitted.
  const bool have_dev = ::mknod(tmp.file("null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0;
  fs::create_directory(tmp.file("dir"));
  tmp.write("plain", "x");
  struct Case {
    std::string out, format, why;
  };
  std::vector<Case> cases = {{tmp.file("fifo"), "float", "a FIFO"},
                             {tmp.file("fifo"), "gguf", "a FIFO"},
                             {tmp.file("fifo"), "gptq", "not a folder"},
                             {tmp.file("dir"), "float", "a folder"},
                             {tmp.file("plain"), "gptq", "not a folder"}};
  if (have_dev) {
    cases.push_back({tmp.file("null"), "float", "a character device"});
    cases.push_back({tmp.file("null"), "gguf", "a character device"});
  }
  for (const Case& c : cases) {
    const auto r = test::run_cli(quick(model, c.out, c.format));
    EXPECT_NE(r.exit_code, 0) << c.out << " " << c.format;
    EXPECT_THAT(r.err, HasSubstr(c.why)) << c.out << " " << c.format;
    EXPECT_THAT(r.err, HasSubstr(c.out));
  }
  EXPECT_TRUE(fs::is_fifo(tmp.file("fifo")));
  if (have_dev) {
    EXPECT_TRUE(fs::is_character_file(tmp.file("null")));
  }
  EXPECT_TRUE(fs::is_empty(tmp.file("dir")));
  EXPECT_EQ(test::read_file(tmp.file("plain")), "x");
  std::vector<std::string> expected = {"dir", "fifo", "in", "plain"};
  if (have_dev) expected.insert(expected.begin() + 3, "null");
  EXPECT_EQ(names_in(tmp.path()), expected);
}

// ---- defect 5: a stale index in the output folder ---------------------------------------------

TEST(Outputs, AStaleIndexInTheOutputFolderCannotWin) {
  test::TempDir tmp;
  const ModelConfig c = test::tiny_config();
  const Model src = test::random_model(c, 3);
  test::write_hf_model(src, tmp.file("src"));
  auto reader = open_model(tmp.file("src"));
  auto write = [&](const Model& blocks, uint64_t shard_bytes) {
    auto w = make_hf_float_writer(*reader, tmp.file("src"), tmp.file("out"), shard_bytes);
    for (int i = 0; i < c.n_layers; ++i) w->write_block(i, blocks.blocks[i], {});
    w->finish();
  };
  const Model first = test::random_model(c, 7), second = test::random_model(c, 8);
  write(first, 6000);  // sharded: an index and shards
  ASSERT_TRUE(fs::exists(tmp.file("out/model.safetensors.index.json")));
  write(second, 1 << 30);  // one file into the same folder
  EXPECT_FALSE(fs::exists(tmp.file("out/model.safetensors.index.json")));
  const Model back = load_model(tmp.file("out"));
  EXPECT_TRUE(test::same_bits(back.blocks[1].w_up.span(), second.blocks[1].w_up.span()));

  // A folder holding both (made by hand): ambiguous unless the index lists the single file.
  fs::copy_file(tmp.file("src/model.safetensors"),
                tmp.file("out/model-00001-of-00001.safetensors"));
  auto index_to = [&](const std::string& shard) {
    nlohmann::json map = nlohmann::json::object();
    for (const std::string& name : SafetensorsFile(tmp.file("out/model.safetensors")).names())
      map[name] = shard;
    tmp.write("out/model.safetensors.index.json", nlohmann::json{{"weight_map", map}}.dump());
  };
  index_to("model-00001-of-00001.safetensors");
  EXPECT_THAT(error_of([&] { load_model(tmp.file("out")); }), HasSubstr("stale"));
  index_to("model.safetensors");
  EXPECT_TRUE(test::same_bits(load_model(tmp.file("out")).blocks[1].w_up.span(),
                              second.blocks[1].w_up.span()));
}

// ---- defect 8: output folders are atomic ------------------------------------------------------

TEST(Outputs, FailedFolderRunsLeaveNoFolder) {
  test::TempDir tmp;
  const ModelConfig c = test::tiny_config();
  const Model m = test::random_model(c, 3);
  test::write_hf_model(m, tmp.file("src"));
  auto reader = open_model(tmp.file("src"));
  {
    auto w = make_hf_float_writer(*reader, tmp.file("src"), tmp.file("out"));
    w->write_block(0, m.blocks[0], {});
  }  // abandoned after one block
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"src"});
}

// ---- defects 8 and 13: a write failure in the middle of an output -------------------------------

TEST(Outputs, AWriteFailureMidOutputLeavesThePreviousOutputAndNoTemporaries) {
  test::TempDir tmp;
  const std::string model = copy_stories(tmp.file("in"));
  // A model whose tokenizer.bin (only copied by a GPTQ run, never parsed) is larger than the
  // file size limit, so that the failure comes after the weights and config are written.
  fs::create_directory(tmp.file("in2"));
  fs::copy_file(model, tmp.file("in2/stories260K.bin"));
  tmp.write("in2/tokenizer.bin", std::string(2 << 20, 'x'));
  const std::string out = tmp.file("out");
  fs::create_directory(out);
  tmp.write("out/q.gguf", "old gguf");
  tmp.write("out/q.bin", "old bin");
  fs::create_directory(out + "/g");
  tmp.write("out/g/config.json", "old config");
  const auto before = snapshot(out);
  struct Case {
    std::string model, out, format;
    uint64_t limit;
  };
  for (const Case& c :
       std::vector<Case>{{model, out + "/q.gguf", "gguf", 32 << 10},
                         {model, out + "/q.bin", "float", 32 << 10},
                         {model, out + "/g", "gptq", 32 << 10},
                         {tmp.file("in2/stories260K.bin"), out + "/g", "gptq", 1 << 20}}) {
    const auto r = test::run_cli(quick(c.model, c.out, c.format), test::CliLimits{c.limit});
    EXPECT_NE(r.exit_code, 0) << c.format;
    EXPECT_THAT(r.err, HasSubstr("write failed")) << c.format;
    EXPECT_THAT(r.err, HasSubstr(c.out)) << c.format;
    EXPECT_TRUE(snapshot(out) == before) << c.format;  // old outputs kept, nothing added
  }
}

// ---- defect 12: SIGINT / SIGTERM ----------------------------------------------------------------

TEST(Outputs, ASignalDuringARunLeavesNoTemporaries) {
  test::TempDir tmp;
  const std::string model = copy_stories(tmp.file("in"));
  for (const auto& [sig, format] :
       std::vector<std::pair<int, std::string>>{{SIGTERM, "gguf"}, {SIGINT, "gptq"}}) {
    test::TempDir out_dir("cdq-signal");
    const std::string out = out_dir.file(format == "gguf" ? "q.gguf" : "g");
    // Self-calibration of many windows: long enough to be interrupted once the output exists.
    std::vector<std::string> args = {
        "quantize", "--model", model,  "--out",      out,     "--format", format, "--method",
        "gptq",     "--calib", "self", "--nsamples", "20000", "--seqlen", "64",   "--quiet"};
    args.insert(args.end(),
                {format == "gguf" ? "--type" : "--group", format == "gguf" ? "Q8_0" : "32"});
    test::CliProcess p(args);
    bool seen = false;
    for (int i = 0; i < 12000 && !seen && p.running(); ++i) {  // up to 2 minutes
      seen = !fs::is_empty(out_dir.path());
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(seen) << "the output never appeared: " << p.err_so_far();
    p.signal(sig);
    const auto r = p.wait();
    EXPECT_EQ(r.exit_code, 128 + sig) << r.err;
    EXPECT_TRUE(fs::is_empty(out_dir.path()))
        << fmt::format("{}", fmt::join(names_in(out_dir.path()), " "));
  }
}

// ---- defect 9: a GPTQ request that packs nothing ------------------------------------------------

TEST(Outputs, GptqGroupThatPacksNoLinearIsAnErrorBeforeAnyWork) {
  test::TempDir tmp;
  const std::string model = copy_stories(tmp.file("in"));
  for (const char* group : {"7", "100000"}) {
    const auto r = test::run_cli({"quantize", "--model", model, "--out", tmp.file("g"), "--format",
                                  "gptq", "--method", "gptq", "--group", group, "--calib", "self",
                                  "--nsamples", "4", "--seqlen", "32"});
    EXPECT_NE(r.exit_code, 0) << group;
    EXPECT_THAT(r.err, HasSubstr(fmt::format("--group {}", group)));
    EXPECT_THAT(r.err, HasSubstr("no linear of this model can be packed"));
    EXPECT_THAT(r.err, Not(HasSubstr("self-calibration")));  // before any work
    EXPECT_THAT(r.out, Not(HasSubstr("quantized")));
    EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"in"});
  }
  // Some linears packed, some not (172 inputs of w_down are no multiple of 32): stated.
  const auto r = test::run_cli({"quantize", "--model", model, "--out", tmp.file("g"), "--format",
                                "gptq", "--method", "rtn", "--group", "32"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot be packed at 4 bits"));
}

// ---- defect 13: an unwritable output location -----------------------------------------------

TEST(Outputs, AnUnwritableOutputLocationIsReportedBeforeTheRun) {
  test::TempDir tmp;
  const std::string model = copy_stories(tmp.file("in"));
  tmp.write("file", "x");
  for (const std::string& out :
       {tmp.file("missing/q.bin"), tmp.file("file/q.bin"), std::string("/proc/cdq-q.bin")}) {
    const auto r = test::run_cli({"quantize", "--model", model, "--out", out, "--method", "gptq",
                                  "--calib", calib_text(), "--nsamples", "4", "--seqlen", "32"});
    EXPECT_NE(r.exit_code, 0) << out;
    EXPECT_THAT(r.err, HasSubstr(out));
    EXPECT_THAT(r.err, Not(HasSubstr("[  1/"))) << out;  // no layer was quantized
  }
}

}  // namespace
}  // namespace cdq
