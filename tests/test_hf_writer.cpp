// HF outputs: the streaming safetensors writer (declared order, shards, misuse rejected) and
// the float HF writer (a quantized HF model written block by block reads back as exactly the
// quantized model, in the source's dtypes, with every other tensor and file unchanged).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/model_writer.hpp>
#include <cdquant/quantize.hpp>
#include <cdquant/safetensors.hpp>
#include <filesystem>
#include <functional>

#include "export/hf_writer.hpp"
#include "support/errors.hpp"
#include "support/hf_model.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

namespace fs = std::filesystem;
using test::same_bits;
using ::testing::HasSubstr;

using test::error_of;

std::vector<float> iota_floats(size_t n, float start) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

// ---- SafetensorsStreamWriter -------------------------------------------------------------------

TEST(SafetensorsStream, DataFollowsDeclarationOrderAndReadsBackByName) {
  test::TempDir tmp;
  // Declared "z" before "a": the data of z comes first although the header keys are sorted.
  SafetensorsStreamWriter w(
      tmp.path(), {{"z", DType::F32, {2, 3}}, {"a", DType::F16, {4}}, {"i", DType::I32, {2}}},
      1 << 20);
  EXPECT_EQ(w.next(), "z");
  w.write_floats("z", iota_floats(6, 1.0f));
  w.write_floats("a", iota_floats(4, -2.0f));
  const std::vector<int32_t> ints = {7, -9};
  w.write_bytes("i", std::as_bytes(std::span<const int32_t>(ints)));
  EXPECT_EQ(w.next(), "");
  EXPECT_EQ(w.finish(), std::vector<std::string>{"model.safetensors"});

  SafetensorsFile f(tmp.file("model.safetensors"));
  EXPECT_EQ(f.info("z").begin, 0u);  // written first
  EXPECT_EQ(f.info("a").begin, 24u);
  EXPECT_EQ(f.info("i").begin, 32u);
  EXPECT_EQ(f.read_floats("z"), iota_floats(6, 1.0f));
  EXPECT_EQ(f.read_floats("a"), iota_floats(4, -2.0f));
  EXPECT_EQ(f.read_i32("i"), ints);
  EXPECT_EQ(f.metadata().at("format"), "pt");  // transformers < 4.48.2 refuses files without
  EXPECT_TRUE(test::temporaries_in(tmp.path()).empty());
}

TEST(SafetensorsStream, ShardsInDeclarationOrderWithAnIndex) {
  test::TempDir tmp;
  std::vector<SafetensorsStreamWriter::Decl> decls;
  for (const char* n : {"c", "b", "a", "d"}) decls.push_back({n, DType::F32, {8}});  // 32 B each
  SafetensorsStreamWriter w(tmp.path(), decls, 64);
  for (size_t i = 0; i < decls.size(); ++i)
    w.write_floats(decls[i].name, iota_floats(8, static_cast<float>(10 * i)));
  const auto files = w.finish();
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0], "model-00001-of-00002.safetensors");
  SafetensorsDir dir(tmp.path());
  EXPECT_TRUE(dir.is_sharded());
  EXPECT_EQ(dir.shard_of("c"), files[0]);
  EXPECT_EQ(dir.shard_of("b"), files[0]);
  EXPECT_EQ(dir.shard_of("a"), files[1]);
  for (const auto& file : files)
    EXPECT_EQ(SafetensorsFile(tmp.file(file)).metadata().at("format"), "pt") << file;
  for (size_t i = 0; i < decls.size(); ++i)
    EXPECT_EQ(dir.read_floats(decls[i].name), iota_floats(8, static_cast<float>(10 * i)));
}

TEST(SafetensorsStream, MisuseIsRejectedAndLeavesNoFiles) {
  test::TempDir tmp;
  {
    SafetensorsStreamWriter w(tmp.path(), {{"a", DType::F32, {2}}, {"b", DType::F32, {2}}},
                              1 << 20);
    EXPECT_THAT(error_of([&] {
                  w.write_floats("b", std::vector<float>{1.0f, 2.0f});
                }),
                HasSubstr("out of order"));
    EXPECT_THAT(error_of([&] { w.write_floats("a", std::vector<float>{1.0f}); }),
                HasSubstr("values given"));
    w.write_floats("a", std::vector<float>{1.0f, 2.0f});
    EXPECT_THAT(error_of([&] { w.finish(); }), HasSubstr("1 of 2 declared tensors"));
    EXPECT_EQ(test::temporaries_in(tmp.path()).size(), 1u);  // the shard being written
  }  // destroyed unfinished: the temporary goes
  EXPECT_TRUE(fs::is_empty(tmp.path()));
  EXPECT_THAT(error_of([&] {
                SafetensorsStreamWriter(tmp.path(),
                                        {{"a", DType::F32, {1}}, {"a", DType::F32, {1}}}, 1 << 20);
              }),
              HasSubstr("declared twice"));
}

// ---- the float HF writer -----------------------------------------------------------------------

struct HfCase {
  DType dtype;
  bool tied;
  uint64_t shard_bytes;  // 0: one file
};

class HfFloatWriterTest : public ::testing::TestWithParam<HfCase> {};

// Quantizes an HF model with RTN into the float HF writer and an in-memory copy: the output
// reads back (through the HF reader) as the in-memory quantized model with its linears rounded
// to the source dtype, and everything else is the source's own bytes.
TEST_P(HfFloatWriterTest, QuantizedModelReadsBackExactly) {
  const HfCase p = GetParam();
  test::TempDir tmp;
  ModelConfig c = test::tiny_config(32, 48, 2, 4, 2, 50, 32);
  c.tied_embeddings = p.tied;
  const std::string src = tmp.file("src"), out = tmp.file("out");
  test::write_hf_model(test::random_model(c, 11), src, p.dtype, p.shard_bytes);
  auto reader = open_model(src);
  ASSERT_EQ(reader->format(), "hf");

  auto writer =
      make_hf_float_writer(*reader, src, out, p.shard_bytes > 0 ? p.shard_bytes : 1 << 30);
  InMemoryModelWriter memory(*reader);
  QuantizeOptions opts;
  opts.method = parse_method("rtn");
  opts.solver.grid.bits = 3;
  opts.solver.grid.group_size = 16;
  quantize_model(*reader, test::random_windows(c.vocab_size, 2, 8, 5), opts,
                 [&](int layer, BlockWeights& block, std::vector<LinearResult>& linears) {
                   writer->write_block(layer, block, linears);
                   memory.write_block(layer, block, linears);
                 });
  writer->finish();
  memory.finish();

  const Model back = load_model(out);
  const Model& want = memory.model();
  for (int l = 0; l < c.n_layers; ++l)
    for (Linear lin : kAllLinears)
      EXPECT_TRUE(same_bits(back.blocks[l].linear(lin).span(),
                            test::rounded_to(want.blocks[l].linear(lin), p.dtype).span()))
          << "layer " << l << " " << linear_name(lin);

  // Everything that is not a linear: the source's bytes, in the source's dtype.
  const SafetensorsDir a(src), b(out);
  EXPECT_EQ(a.names(), b.names());
  for (const auto& name : a.names()) {
    EXPECT_EQ(a.info(name).dtype, b.info(name).dtype) << name;
    EXPECT_EQ(a.info(name).shape, b.info(name).shape) << name;
    if (name.find("_proj.weight") != std::string::npos) continue;
    const auto x = a.bytes(name), y = b.bytes(name);
    EXPECT_TRUE(x.size() == y.size() &&
                (x.empty() || std::memcmp(x.data(), y.data(), x.size()) == 0))
        << name;
  }
  EXPECT_EQ(test::read_file(src + "/config.json"), test::read_file(out + "/config.json"));
  EXPECT_EQ(test::read_file(src + "/tokenizer_config.json"),
            test::read_file(out + "/tokenizer_config.json"));
  EXPECT_EQ(b.is_sharded(), p.shard_bytes > 0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, HfFloatWriterTest,
                         ::testing::Values(HfCase{DType::F32, true, 0},
                                           HfCase{DType::F16, false, 0},
                                           HfCase{DType::BF16, true, 0},
                                           HfCase{DType::F32, false, 6000}));

TEST(HfFloatWriter, BlocksOutOfOrderOrMissingAreRejected) {
  test::TempDir tmp;
  const ModelConfig c = test::tiny_config();
  const Model m = test::random_model(c, 3);
  test::write_hf_model(m, tmp.file("src"));
  auto reader = open_model(tmp.file("src"));
  {
    auto w = make_hf_float_writer(*reader, tmp.file("src"), tmp.file("out"));
    EXPECT_THAT(error_of([&] { w->write_block(1, m.blocks[1], {}); }),
                HasSubstr("expected block 0"));
    w->write_block(0, m.blocks[0], {});
    EXPECT_THAT(error_of([&] { w->finish(); }), HasSubstr("only 1 of 2 blocks"));
  }
  EXPECT_FALSE(fs::exists(tmp.file("out/model.safetensors")));
  EXPECT_THAT(error_of([&] { make_hf_float_writer(*reader, tmp.file("src"), tmp.file("src")); }),
              HasSubstr("is the input"));
}

}  // namespace
}  // namespace cdq
