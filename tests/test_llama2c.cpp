// llama2.c checkpoints: the real files load with the documented shapes, write/read round trips
// are bit-exact, and malformed files are rejected with a message that says what is wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/model.hpp>
#include <cdquant/model_writer.hpp>
#include <cstring>
#include <filesystem>

#include "model/llama2c.hpp"
#include "support/errors.hpp"
#include "support/tiny_model.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using test::TempDir;
using ::testing::HasSubstr;

bool same_floats(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

bool same_matrix(const Matrix& a, const Matrix& b) {
  return a.rows == b.rows && a.cols == b.cols && same_floats(a.span(), b.span());
}

// Bit-exact equality of every tensor and every config field llama2.c stores.
void expect_same_model(const Model& a, const Model& b) {
  const ModelConfig &ca = a.config, &cb = b.config;
  EXPECT_EQ(ca.dim, cb.dim);
  EXPECT_EQ(ca.hidden_dim, cb.hidden_dim);
  EXPECT_EQ(ca.n_layers, cb.n_layers);
  EXPECT_EQ(ca.n_heads, cb.n_heads);
  EXPECT_EQ(ca.n_kv_heads, cb.n_kv_heads);
  EXPECT_EQ(ca.head_dim, cb.head_dim);
  EXPECT_EQ(ca.vocab_size, cb.vocab_size);
  EXPECT_EQ(ca.max_seq_len, cb.max_seq_len);
  EXPECT_EQ(ca.tied_embeddings, cb.tied_embeddings);
  EXPECT_TRUE(same_matrix(a.tok_embeddings, b.tok_embeddings));
  ASSERT_EQ(a.blocks.size(), b.blocks.size());
  for (size_t l = 0; l < a.blocks.size(); ++l) {
    SCOPED_TRACE(l);
    const BlockWeights &x = a.blocks[l], &y = b.blocks[l];
    EXPECT_TRUE(same_floats(x.attn_norm, y.attn_norm));
    EXPECT_TRUE(same_floats(x.ffn_norm, y.ffn_norm));
    for (Linear lin : kAllLinears) EXPECT_TRUE(same_matrix(x.linear(lin), y.linear(lin)));
  }
  EXPECT_TRUE(same_floats(a.final_norm, b.final_norm));
  EXPECT_TRUE(same_matrix(a.output, b.output));
}

using test::error_of;

std::string file_bytes(const std::string& path) {
  return test::read_file(path);
}

// A header-only file with the given fields (plus `extra_floats` zero floats).
std::string header_file(const TempDir& dir, std::array<int32_t, 7> h, size_t extra_floats = 0) {
  std::string bytes(sizeof h + 4 * extra_floats, '\0');
  std::memcpy(bytes.data(), h.data(), sizeof h);
  return dir.write("bad.bin", bytes);
}

TEST(Llama2c, StoriesHasDocumentedShape) {
  auto reader = open_model(test::stories260k_path());
  EXPECT_EQ(reader->format(), "llama2c");
  const ModelConfig& c = reader->config();
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_TRUE(c.tied_embeddings);
  const Model m = load_model(*reader);
  EXPECT_TRUE(all_finite(m.tok_embeddings.span()));
  EXPECT_TRUE(m.output.empty());
}

TEST(Llama2c, BabyLlamaHasDocumentedShape) {
  const Model m = load_model(test::babyllama_path());
  EXPECT_EQ(m.config.dim, 128);
  EXPECT_EQ(m.config.hidden_dim, 352);
  EXPECT_EQ(m.config.n_layers, 5);
  EXPECT_EQ(m.config.n_kv_heads, 4);
  EXPECT_EQ(m.config.vocab_size, 105);
  EXPECT_EQ(m.config.max_seq_len, 256);
}

TEST(Llama2c, StreamingBlocksMatchWholeLoad) {
  const Model m = load_model(test::stories260k_path());
  auto reader = open_model(test::stories260k_path());
  // Out of order on purpose: blocks are independent reads of the mapping.
  for (int l : {3, 0, 4}) {
    const BlockWeights b = reader->read_block(l);
    for (Linear lin : kAllLinears)
      EXPECT_TRUE(same_matrix(b.linear(lin), m.blocks[static_cast<size_t>(l)].linear(lin)));
  }
  EXPECT_THAT(error_of([&] { reader->read_block(5); }), HasSubstr("layer 5 out of range"));
}

TEST(Llama2c, RealModelRoundTripIsBitExact) {
  TempDir dir;
  const std::string original = test::stories260k_path();
  const Model m = load_model(original);
  const std::string out = dir.file("copy.bin");
  write_llama2c(m, out);
  expect_same_model(m, load_model(out));

  // Same size as the original, and byte-identical everywhere but the legacy RoPE tables
  // (which readers skip and which we recompute in double precision).
  const std::string a = file_bytes(original), b = file_bytes(out);
  ASSERT_EQ(a.size(), b.size());
  const ModelConfig& c = m.config;
  const size_t rope_bytes = 4 * static_cast<size_t>(c.max_seq_len) * c.head_dim;  // 2 tables
  const size_t rope_begin = a.size() - rope_bytes;  // tied: the tables end the file
  EXPECT_EQ(a.compare(0, rope_begin, b, 0, rope_begin), 0);
  // The tables themselves hold the same cos/sin values up to float rounding.
  for (size_t off = rope_begin; off < a.size(); off += 4) {
    float x, y;
    std::memcpy(&x, a.data() + off, 4);
    std::memcpy(&y, b.data() + off, 4);
    ASSERT_NEAR(x, y, 1e-4) << "at byte " << off;
  }
}

TEST(Llama2c, UntiedGqaRoundTripIsBitExact) {
  TempDir dir;
  ModelConfig c = test::tiny_config(32, 40, 3, 8, 2, 50, 16);
  c.tied_embeddings = false;
  const Model m = test::random_model(c, 7);
  const std::string out = dir.file("untied.bin");
  write_llama2c(m, out);
  // Negative vocab in the header marks the unshared classifier.
  int32_t header[7];
  std::memcpy(header, file_bytes(out).data(), sizeof header);
  EXPECT_EQ(header[5], -50);
  EXPECT_EQ(std::filesystem::file_size(out), llama2c_file_bytes(c));
  const Model back = load_model(out);
  EXPECT_FALSE(back.config.tied_embeddings);
  expect_same_model(m, back);
  EXPECT_TRUE(test::temporaries_in(dir.path()).empty());
}

TEST(Llama2c, TruncatedFileRejected) {
  TempDir dir;
  const std::string a = file_bytes(test::stories260k_path());
  const std::string path = dir.write("short.bin", a.substr(0, a.size() - 4));
  const std::string msg = error_of([&] { open_model(path); });
  EXPECT_THAT(msg, HasSubstr("size mismatch"));
  EXPECT_THAT(msg, HasSubstr(fmt::format("implies {} bytes", a.size())));
  EXPECT_THAT(msg, HasSubstr(fmt::format("file has {} bytes", a.size() - 4)));
  EXPECT_THAT(msg, HasSubstr("truncated"));
}

TEST(Llama2c, ExtendedFileRejected) {
  TempDir dir;
  const std::string a = file_bytes(test::stories260k_path());
  const std::string path = dir.write("long.bin", a + std::string(4, '\0'));
  const std::string msg = error_of([&] { open_model(path); });
  EXPECT_THAT(msg, HasSubstr("size mismatch"));
  EXPECT_THAT(msg, HasSubstr("trailing data"));
}

TEST(Llama2c, BadHeadersRejected) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { open_model(dir.write("tiny.bin", "abc")); }),
              HasSubstr("shorter than the 28-byte header"));
  EXPECT_THAT(error_of([&] {
                open_model(header_file(dir, {0, 172, 5, 8, 4, 512, 512}));
              }),
              HasSubstr("sizes must be positive"));
  EXPECT_THAT(error_of([&] {
                open_model(header_file(dir, {64, 172, -5, 8, 4, 512, 512}));
              }),
              HasSubstr("sizes must be positive"));
  EXPECT_THAT(error_of([&] {
                open_model(header_file(dir, {64, 172, 5, 8, 4, 0, 512}));
              }),
              HasSubstr("sizes must be positive"));
  EXPECT_THAT(error_of([&] {
                open_model(header_file(dir, {66, 172, 5, 8, 4, 512, 512}));
              }),
              HasSubstr("dim is not a multiple of n_heads"));
  EXPECT_THAT(error_of([&] {
                open_model(header_file(dir, {64, 172, 5, 8, 3, 512, 512}));
              }),
              HasSubstr("n_heads is not a multiple of n_kv_heads"));
  EXPECT_THAT(error_of([&] {
                open_model(header_file(dir, {72, 172, 5, 8, 4, 512, 512}));
              }),
              HasSubstr("must be even for RoPE"));
  // Text or random bytes read as a header give absurd values.
  EXPECT_THAT(error_of([&] {
                open_model(header_file(dir, {1 << 30, 172, 5, 8, 4, 512, 512}));
              }),
              HasSubstr("beyond any plausible model"));
  EXPECT_THAT(error_of([&] {
                open_model(header_file(dir, {64, 172, 5, 8, 4, 512, 1 << 30}));
              }),
              HasSubstr("beyond any plausible model"));
  // A valid header with no weights behind it.
  EXPECT_THAT(error_of([&] {
                open_model(header_file(dir, {64, 172, 5, 8, 4, 512, 512}, 10));
              }),
              HasSubstr("size mismatch"));
}

TEST(Llama2c, WriterRejectsWhatLlama2cCannotHold) {
  TempDir dir;
  ModelConfig c = test::tiny_config();
  c.qkv_bias = true;
  EXPECT_THAT(error_of([&] { write_llama2c(test::random_model(c, 1), dir.file("a.bin")); }),
              HasSubstr("biases"));
  c = test::tiny_config();
  c.rope_theta = 1e6f;
  EXPECT_THAT(error_of([&] { write_llama2c(test::random_model(c, 1), dir.file("b.bin")); }),
              HasSubstr("rope_theta"));
  Model bad = test::random_model(test::tiny_config(), 1);
  bad.blocks[1].w_up = Matrix(3, 3);
  EXPECT_THAT(error_of([&] { write_llama2c(bad, dir.file("c.bin")); }), HasSubstr("blocks.1.w_up"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("c.bin")));
}

TEST(OpenModel, ReportsMissingAndUnknownPaths) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { open_model(dir.file("nope.bin")); }), HasSubstr("no such file"));
  EXPECT_THAT(error_of([&] { open_model(dir.path()); }), HasSubstr("no config.json"));
}

TEST(OpenModel, FindsTokenizerBesideModel) {
  EXPECT_EQ(std::filesystem::path(find_tokenizer_for(test::stories260k_path())).filename(),
            "tok512.bin");
  EXPECT_EQ(std::filesystem::path(find_tokenizer_for(test::babyllama_path())).filename(),
            "tok105.bin");
  TempDir dir;
  const std::string lonely = dir.write("model.bin", "x");
  EXPECT_EQ(find_tokenizer_for(lonely), "");
}

}  // namespace
}  // namespace cdq
