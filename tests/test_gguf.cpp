// GGUF files: the exact byte layout of a small file, write -> read round trips of every
// metadata type and of tensors of every ggml type, and hostile files rejected with a message.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/error.hpp>
#include <cdquant/gguf.hpp>
#include <cdquant/matrix.hpp>
#include <cdquant/rng.hpp>
#include <cstring>
#include <fstream>
#include <functional>

#include "model/gguf_arch.hpp"
#include "quant/ggml_quants.hpp"
#include "support/errors.hpp"
#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using test::TempDir;
using ::testing::HasSubstr;

using test::error_of;

// Little-endian byte builder for hand-made files.
struct Bytes {
  std::string s;
  Bytes& u32(uint32_t v) { return raw(&v, 4); }
  Bytes& u64(uint64_t v) { return raw(&v, 8); }
  Bytes& str(const std::string& v) {
    u64(v.size());
    s += v;
    return *this;
  }
  Bytes& raw(const void* p, size_t n) {
    s.append(static_cast<const char*>(p), n);
    return *this;
  }
  Bytes& pad(size_t a) {
    while (s.size() % a) s.push_back('\0');
    return *this;
  }
};

// Header of a file with the given counts.
Bytes header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  Bytes b;
  b.raw("GGUF", 4).u32(version).u64(n_tensors).u64(n_kv);
  return b;
}

// A valid file: one u32 key and one F32 tensor "t" of dims {2} at offset 0 (data 1.0, 2.0).
Bytes small_file() {
  Bytes b = header(1, 1);
  b.str("k").u32(4).u32(7);
  b.str("t").u32(1).u64(2).u32(0).u64(0);
  b.pad(32);
  const float data[2] = {1.0f, 2.0f};
  b.raw(data, 8).pad(32);
  return b;
}

std::string open_error(const TempDir& dir, const Bytes& b) {
  const std::string path = dir.write("f.gguf", b.s);
  return error_of([&] { GgufReader r(path); });
}

TEST(Gguf, WriterProducesTheExactLayout) {
  TempDir dir;
  const std::string path = dir.file("w.gguf");
  GgufWriter w(path);
  w.set("k", GgufValue::scalar<uint32_t>(7));
  w.add_tensor("t", {2}, GgmlType::F32);
  w.write_header();
  const float data[2] = {1.0f, 2.0f};
  w.write_tensor("t", {reinterpret_cast<const uint8_t*>(data), 8});
  w.finish();
  EXPECT_EQ(test::read_file(path), small_file().s);
}

TEST(Gguf, EveryMetadataTypeRoundTrips) {
  TempDir dir;
  const std::string path = dir.file("kv.gguf");
  std::vector<std::pair<std::string, GgufValue>> kv = {
      {"u8", GgufValue::scalar<uint8_t>(200)},
      {"i8", GgufValue::scalar<int8_t>(-100)},
      {"u16", GgufValue::scalar<uint16_t>(60000)},
      {"i16", GgufValue::scalar<int16_t>(-30000)},
      {"u32", GgufValue::scalar<uint32_t>(4000000000u)},
      {"i32", GgufValue::scalar<int32_t>(-2000000000)},
      {"f32", GgufValue::scalar<float>(1.5e-3f)},
      {"bool", GgufValue::scalar<bool>(true)},
      {"string", GgufValue::string("llama \xF0\x9F\xA6\x99")},
      {"empty string", GgufValue::string("")},
      {"u64", GgufValue::scalar<uint64_t>(1ULL << 60)},
      {"i64", GgufValue::scalar<int64_t>(-(1LL << 60))},
      {"f64", GgufValue::scalar<double>(-2.718281828459045)},
      {"a.u8", GgufValue::array(std::vector<uint8_t>{1, 2, 255})},
      {"a.i8", GgufValue::array(std::vector<int8_t>{-1, 5})},
      {"a.u16", GgufValue::array(std::vector<uint16_t>{65535})},
      {"a.i16", GgufValue::array(std::vector<int16_t>{-2, 3})},
      {"a.u32", GgufValue::array(std::vector<uint32_t>{7, 8, 9})},
      {"a.i32", GgufValue::array(std::vector<int32_t>{-7, 3, 6})},
      {"a.f32", GgufValue::array(std::vector<float>{0.5f, -1.0f})},
      {"a.bool", GgufValue::array(std::vector<bool>{true, false, true})},
      {"a.string", GgufValue::string_array({"<s>", "", "\xE2\x96\x81the"})},
      {"a.u64", GgufValue::array(std::vector<uint64_t>{1ULL << 40})},
      {"a.i64", GgufValue::array(std::vector<int64_t>{-5})},
      {"a.f64", GgufValue::array(std::vector<double>{1e300, -0.0})},
      {"a.empty", GgufValue::array(std::vector<float>{})},
  };
  GgufWriter w(path);
  for (const auto& [k, v] : kv) w.set(k, v);
  w.write_header();
  w.finish();

  GgufReader r(path);
  EXPECT_EQ(r.version(), 3u);
  EXPECT_TRUE(r.tensors().empty());
  ASSERT_EQ(r.metadata().size(), kv.size());
  for (size_t i = 0; i < kv.size(); ++i) {
    EXPECT_EQ(r.metadata()[i].first, kv[i].first);
    EXPECT_TRUE(r.metadata()[i].second == kv[i].second) << kv[i].first;
  }
  EXPECT_EQ(r.get("i16").get<int16_t>(), -30000);
  EXPECT_EQ(r.get("u32").as_uint(), 4000000000u);
  EXPECT_EQ(r.get("f64").get<double>(), -2.718281828459045);
  EXPECT_EQ(r.get("a.string").str_array()[2], "\xE2\x96\x81the");
  EXPECT_EQ(r.get("a.bool").get_array<bool>(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(r.get("a.i32").get_array<int32_t>(), (std::vector<int32_t>{-7, 3, 6}));
  EXPECT_THAT(error_of([&] { r.get("u8").get<uint32_t>(); }), HasSubstr("is u8, expected u32"));
  EXPECT_THAT(error_of([&] { r.get("i8").as_uint(); }), HasSubstr("negative"));
  EXPECT_THAT(error_of([&] { r.get("nope"); }), HasSubstr("'nope' is missing"));
}

TEST(Gguf, TensorsOfEveryTypeRoundTrip) {
  for (uint32_t alignment : {32u, 64u}) {
    TempDir dir;
    const std::string path = dir.file("t.gguf");
    Rng rng(alignment);
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<Matrix> weights;
    GgufWriter w(path);
    if (alignment != 32) w.set("general.alignment", GgufValue::scalar<uint32_t>(alignment));
    w.set("general.architecture", GgufValue::string("llama"));
    for (const auto& t : ggml_all_types()) {
      Matrix m(3, 512);
      for (float& v : m.data) v = static_cast<float>(rng.normal());
      bytes.push_back(quantize_reference(t.type, m));
      weights.push_back(m);
      // ggml order: {cols, rows}; a 3-d shape for one of them
      std::vector<uint64_t> dims = {512, 3};
      if (t.type == GgmlType::Q8_0) dims = {512, 3, 1};
      w.add_tensor(fmt::format("blk.0.{}.weight", t.name), dims, t.type);
    }
    w.write_header();
    for (size_t i = 0; i < bytes.size(); ++i) w.write_tensor(w.tensors()[i].name, bytes[i]);
    w.finish();

    GgufReader r(path);
    EXPECT_EQ(r.alignment(), alignment);
    EXPECT_EQ(r.data_offset() % alignment, 0u);
    ASSERT_EQ(r.tensors().size(), ggml_all_types().size());
    for (size_t i = 0; i < bytes.size(); ++i) {
      const GgufTensorInfo& t = r.tensors()[i];
      const GgmlType type = ggml_all_types()[i].type;
      EXPECT_EQ(t.type, type);
      EXPECT_EQ(t.offset % alignment, 0u);
      EXPECT_EQ(t.cols(), 512);
      EXPECT_EQ(t.rows(), 3);
      const auto got = r.tensor_bytes(t);
      EXPECT_TRUE(std::equal(got.begin(), got.end(), bytes[i].begin(), bytes[i].end())) << t.name;
      EXPECT_EQ(gguf_read_matrix(r, t.name).data, dequantize_tensor(type, bytes[i], 3, 512).data);
    }
    // back to back in order, each padded: ggml's layout
    for (size_t i = 1; i < r.tensors().size(); ++i) {
      const GgufTensorInfo& prev = r.tensors()[i - 1];
      EXPECT_EQ(r.tensors()[i].offset,
                (prev.offset + prev.n_bytes() + alignment - 1) / alignment * alignment);
    }
  }
}

TEST(Gguf, WriterMisuseIsRejected) {
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  {
    GgufWriter w(path);
    w.set("a", GgufValue::scalar<uint8_t>(1));
    EXPECT_THAT(error_of([&] { w.set("a", GgufValue::scalar<uint8_t>(2)); }),
                HasSubstr("duplicate key 'a'"));
    EXPECT_THAT(error_of([&] { w.set("general.alignment", GgufValue::scalar<uint32_t>(48)); }),
                HasSubstr("not a power of two"));
    EXPECT_THAT(error_of([&] { w.add_tensor(std::string(64, 'x'), {32}, GgmlType::F32); }),
                HasSubstr("1 to 63 bytes"));
    EXPECT_THAT(error_of([&] { w.add_tensor("q", {100, 2}, GgmlType::Q4_K); }), HasSubstr("256"));
    EXPECT_THAT(error_of([&] {
                  w.add_tensor("q", {32, 1, 1, 1, 1}, GgmlType::F32);
                }),
                HasSubstr("1 to 4 dimensions"));
    w.add_tensor("x", {32}, GgmlType::Q8_0);
    w.add_tensor("y", {4}, GgmlType::F32);
    EXPECT_THAT(error_of([&] { w.add_tensor("x", {32}, GgmlType::F32); }),
                HasSubstr("duplicate tensor name"));
    w.write_header();
    EXPECT_THAT(error_of([&] { w.write_tensor("y", std::vector<uint8_t>(16)); }),
                HasSubstr("'y' written where 'x' was declared next"));
    EXPECT_THAT(error_of([&] { w.write_tensor("x", std::vector<uint8_t>(33)); }),
                HasSubstr("has 33 bytes, declared 34"));
    w.write_tensor("x", std::vector<uint8_t>(34));
    EXPECT_THAT(error_of([&] { w.finish(); }), HasSubstr("1 of 2 tensors written"));
  }
  // an unfinished writer leaves nothing behind
  EXPECT_FALSE(std::ifstream(path).good());
  EXPECT_TRUE(test::temporaries_in(dir.path()).empty());
}

TEST(Gguf, HostileHeadersAreRejected) {
  TempDir dir;
  Bytes bad_magic = small_file();
  bad_magic.s[0] = 'X';
  EXPECT_THAT(open_error(dir, bad_magic), HasSubstr("bad magic"));
  EXPECT_THAT(open_error(dir, header(0, 0, 1)), HasSubstr("unsupported version 1"));
  EXPECT_THAT(open_error(dir, header(0, 0, 4)), HasSubstr("unsupported version 4"));
  EXPECT_THAT(open_error(dir, header(1ULL << 60, 0)), HasSubstr("tensor count"));
  EXPECT_THAT(open_error(dir, header(0, ~0ULL)), HasSubstr("metadata count"));
  EXPECT_THAT(open_error(dir, Bytes{"GGU"}), HasSubstr("magic needs 4 bytes"));
  // key length past the end
  Bytes b = header(0, 1);
  b.u64(1ULL << 62).raw("abcdefghijklmnop", 16);
  EXPECT_THAT(open_error(dir, b), HasSubstr("key claims"));
  // string value length past the end
  b = header(0, 1);
  b.str("k").u32(8).u64(1000).raw("abc", 3);
  EXPECT_THAT(open_error(dir, b), HasSubstr("string value claims 1000 bytes"));
  // array length past the end, for numbers and for strings
  b = header(0, 1);
  b.str("k").u32(9).u32(6).u64(1ULL << 61);
  EXPECT_THAT(open_error(dir, b), HasSubstr("array length"));
  b = header(0, 1);
  b.str("k").u32(9).u32(8).u64(1ULL << 40).str("x");
  EXPECT_THAT(open_error(dir, b), HasSubstr("string array length"));
  // unknown value types, nested arrays, duplicate keys, bad alignment
  b = header(0, 1);
  b.str("k").u32(13).u32(0);
  EXPECT_THAT(open_error(dir, b), HasSubstr("unknown value type 13"));
  b = header(0, 1);
  b.str("k").u32(9).u32(9).u64(0);
  EXPECT_THAT(open_error(dir, b), HasSubstr("nested arrays"));
  b = header(0, 2);
  b.str("k").u32(4).u32(1).str("k").u32(4).u32(2);
  EXPECT_THAT(open_error(dir, b), HasSubstr("duplicate key 'k'"));
  b = header(0, 1);
  b.str("general.alignment").u32(4).u32(24);
  EXPECT_THAT(open_error(dir, b), HasSubstr("not a power of two"));
  b = header(0, 1);
  b.str("general.alignment").u32(10).u64(32);
  EXPECT_THAT(open_error(dir, b), HasSubstr("general.alignment is u64"));
}

// A file with one tensor info written by hand; data section of data_bytes zeros.
Bytes one_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                 uint64_t offset, size_t data_bytes) {
  Bytes b = header(1, 0);
  b.str(name).u32(static_cast<uint32_t>(dims.size()));
  for (uint64_t d : dims) b.u64(d);
  b.u32(type).u64(offset).pad(32);
  b.s.append(data_bytes, '\0');
  return b;
}

TEST(Gguf, HostileTensorInfosAreRejected) {
  TempDir dir;
  EXPECT_EQ(open_error(dir, one_tensor("t", {32}, 8, 0, 34)), "(no error)");
  EXPECT_THAT(open_error(dir, one_tensor("t", {32}, 19, 0, 64)),
              HasSubstr("unsupported ggml type id 19"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {32}, 4, 0, 64)), HasSubstr("type id 4"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {1, 1, 1, 1, 1}, 0, 0, 64)),
              HasSubstr("5 dimensions"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {}, 0, 0, 64)), HasSubstr("0 dimensions"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {1ULL << 32, 1ULL << 32}, 0, 0, 64)),
              HasSubstr("element count overflows"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {1ULL << 63}, 0, 0, 64)),
              HasSubstr("element count overflows"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {4, 0}, 0, 0, 64)), HasSubstr("zero dimension"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {100}, 12, 0, 4096)),
              HasSubstr("not a multiple of the Q4_K block size 256"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {4}, 0, 16, 64)),
              HasSubstr("not a multiple of the alignment 32"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {32}, 8, 32, 40)), HasSubstr("runs past the end"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {32}, 8, 0, 20)), HasSubstr("20-byte data section"));
  EXPECT_THAT(open_error(dir, one_tensor("t", {1ULL << 40, 1ULL << 20}, 0, 0, 64)),
              HasSubstr("does not fit"));
  // tensor infos past the end of the file; no data section at all
  Bytes cut = one_tensor("t", {32}, 8, 0, 34);
  cut.s.resize(40);
  EXPECT_THAT(open_error(dir, cut), HasSubstr("invalid GGUF file"));
  // duplicate names and overlapping tensors
  Bytes b = header(2, 0);
  b.str("t").u32(1).u64(8).u32(0).u64(0);
  b.str("t").u32(1).u64(8).u32(0).u64(32);
  b.pad(32).s.append(64, '\0');
  EXPECT_THAT(open_error(dir, b), HasSubstr("duplicate tensor name 't'"));
  b = header(2, 0);
  b.str("a").u32(1).u64(16).u32(0).u64(0);
  b.str("b").u32(1).u64(8).u32(0).u64(32);
  b.pad(32).s.append(96, '\0');
  EXPECT_THAT(open_error(dir, b), HasSubstr("tensors 'a' and 'b' overlap"));
}

TEST(Gguf, EveryTruncationAndByteFlipFailsCleanly) {
  // Any prefix of a valid file, and any single corrupted byte, gives either a valid reader or an
  // Error: never a crash, a hang or another exception type.
  TempDir dir;
  GgufWriter w(dir.file("v.gguf"));
  w.set("general.architecture", GgufValue::string("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array({"a", "bc", "def"}));
  w.set("tokenizer.ggml.scores", GgufValue::array(std::vector<float>{0, -1, -2}));
  w.add_tensor("x", {32, 2}, GgmlType::Q8_0);
  w.add_tensor("y", {256}, GgmlType::Q4_K);
  w.write_header();
  w.write_tensor("x", std::vector<uint8_t>(68, 1));
  w.write_tensor("y", std::vector<uint8_t>(144, 2));
  w.finish();
  const std::string good = test::read_file(dir.file("v.gguf"));
  int counter = 0;
  const auto try_open = [&](const std::string& bytes) {
    const std::string path = dir.write(fmt::format("c{}.gguf", counter++), bytes);
    try {
      GgufReader r(path);
      for (const auto& t : r.tensors()) (void)gguf_read_matrix(r, t.name);
      return true;
    } catch (const Error&) {
      return false;
    }
  };
  EXPECT_TRUE(try_open(good));
  // Every prefix through the tensor infos, then a stride through the data section (all of it
  // fails the same size check); the last tensor ends 16 bytes (padding) before the file does.
  const size_t data_offset = GgufReader(dir.file("v.gguf")).data_offset();
  for (size_t n = 0; n + 16 < good.size(); n += n <= data_offset ? 1 : 13)
    EXPECT_FALSE(try_open(good.substr(0, n))) << n;
  Rng rng(1);
  for (size_t i = 0; i < data_offset; ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ (1 + rng.below(255)));
    try_open(bad);  // either outcome; what matters is that it returns
  }
}

}  // namespace
}  // namespace cdq
