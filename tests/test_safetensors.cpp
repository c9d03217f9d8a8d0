// safetensors reader/writer: byte-level agreement with the format, round trips, sharding, and
// hostile files rejected with a message naming the file and the tensor.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cdquant/half.hpp>
#include <cdquant/rng.hpp>
#include <cdquant/safetensors.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "support/tmpdir.hpp"

namespace cdq {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using test::TempDir;

// A safetensors file from a header text and data bytes, built by hand from the format's
// definition (independent of the writer): u64 LE length, header, data.
std::string make_file(const std::string& header, const std::string& data, uint64_t len) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
  return out + header + data;
}
std::string make_file(const std::string& header, const std::string& data = "") {
  return make_file(header, data, header.size());
}

std::string f32_bytes(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

// The message of the Error thrown by opening the bytes as a file named `name`.
std::string open_error(const TempDir& dir, const std::string& bytes,
                       const std::string& name = "bad.safetensors") {
  const std::string path = dir.write(name, bytes);
  try {
    SafetensorsFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "opened without error: " << name;
  return "";
}

std::vector<float> random_floats(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.normal() * 3.0);
  return v;
}

TEST(Safetensors, ReadsAHandBuiltFile) {
  TempDir dir;
  // Two tensors, data of "b" first to show offsets (not header order) place the bytes.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},)"
      R"("b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})";
  const int32_t ints[2] = {-7, 123456};
  std::string data(reinterpret_cast<const char*>(ints), 8);
  data += f32_bytes({1.5f, -2.0f, 0.25f, 1e30f});
  const std::string path = dir.write("a.safetensors", make_file(header, data));

  SafetensorsFile f(path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const TensorInfo& a = f.info("a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(a.begin, 8u);
  EXPECT_EQ(a.nbytes(), 16u);
  const Matrix m = f.read_matrix("a");
  ASSERT_EQ(m.rows, 2);
  ASSERT_EQ(m.cols, 2);
  EXPECT_EQ(m.data, (std::vector<float>{1.5f, -2.0f, 0.25f, 1e30f}));
  EXPECT_EQ(f.read_i32("b"), (std::vector<int32_t>{-7, 123456}));
  EXPECT_EQ(f.bytes("b").size(), 8u);
}

TEST(Safetensors, WriterMatchesTheFormatByteForByte) {
  TempDir dir;
  SafetensorsWriter w;
  w.add_floats("z", {2}, {1.0f, 2.0f});
  w.add_ints<int32_t>("a", DType::I32, {1}, {42});
  w.set_metadata("k", "v");
  const std::string path = dir.file("w.safetensors");
  w.write(path);
  const std::string bytes = test::read_file(path);

  // Names sorted, data in name order, header padded with spaces to a multiple of 8; the
  // metadata always says "format": "pt" (transformers < 4.48.2 needs it).
  std::string header =
      R"({"__metadata__":{"format":"pt","k":"v"},"a":{"data_offsets":[0,4],"dtype":"I32","shape":[1]},)"
      R"("z":{"data_offsets":[4,12],"dtype":"F32","shape":[2]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  const int32_t v42 = 42;
  const std::string expected =
      make_file(header, std::string(reinterpret_cast<const char*>(&v42), 4) + f32_bytes({1, 2}));
  EXPECT_EQ(bytes, expected);
  EXPECT_EQ((bytes.size() - 8 - 12) % 8, 0u);
  EXPECT_TRUE(test::temporaries_in(dir.path()).empty());
}

TEST(Safetensors, RoundTripsEveryKindOfTensor) {
  TempDir dir;
  const auto v24 = random_floats(24, 1);
  const auto v6 = random_floats(6, 2);
  const auto v5 = random_floats(5, 3);
  SafetensorsWriter w;
  w.add_floats("f32.3d", {2, 3, 4}, v24);
  Matrix m6(2, 3);
  m6.data = v6;
  w.add_matrix("f16.2d", m6, DType::F16);
  w.add_floats("bf16.1d", {5}, v5, DType::BF16);
  w.add_floats("f64.1d", {5}, v5, DType::F64);
  w.add_ints<int32_t>("i32", DType::I32, {2, 2}, {1, -2, 2147483647, -2147483647 - 1});
  w.add_ints<int64_t>("i64", DType::I64, {2}, {int64_t{1} << 40, -3});
  w.add_ints<uint8_t>("u8", DType::U8, {3}, {0, 7, 255});
  w.add_floats("scalar", {}, {3.5f});
  w.add_floats("empty", {0, 4}, {});
  w.set_metadata("format", "pt");
  w.set_metadata("note", "unicode \xc3\xa9");
  const std::string path = dir.file("rt.safetensors");
  w.write(path);

  SafetensorsFile f(path);
  EXPECT_EQ(f.names().size(), 9u);
  EXPECT_EQ(f.metadata(), (Metadata{{"format", "pt"}, {"note", "unicode \xc3\xa9"}}));
  EXPECT_EQ(f.info("f32.3d").shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(f.read_floats("f32.3d"), v24);
  const Matrix h = f.read_matrix("f16.2d");
  EXPECT_EQ(f.info("f16.2d").dtype, DType::F16);
  ASSERT_EQ(h.rows, 2);
  ASSERT_EQ(h.cols, 3);
  for (size_t i = 0; i < v6.size(); ++i) EXPECT_EQ(h.data[i], fp16_to_float(float_to_fp16(v6[i])));
  const Matrix b = f.read_matrix("bf16.1d");  // 1-D reads as [1, n]
  EXPECT_EQ(b.rows, 1);
  EXPECT_EQ(b.cols, 5);
  for (size_t i = 0; i < v5.size(); ++i) EXPECT_EQ(b.data[i], bf16_to_float(float_to_bf16(v5[i])));
  EXPECT_EQ(f.read_floats("f64.1d"), v5);  // float -> double -> float is exact
  EXPECT_EQ(f.read_i32("i32"), (std::vector<int32_t>{1, -2, 2147483647, -2147483647 - 1}));
  EXPECT_EQ(f.read_i64("i64"), (std::vector<int64_t>{int64_t{1} << 40, -3}));
  const auto u8 = f.bytes("u8");
  ASSERT_EQ(u8.size(), 3u);
  EXPECT_EQ(static_cast<int>(u8[2]), 255);
  EXPECT_EQ(f.info("scalar").numel(), 1);
  EXPECT_EQ(f.read_floats("scalar"), (std::vector<float>{3.5f}));
  EXPECT_EQ(f.info("empty").numel(), 0);
  EXPECT_TRUE(f.read_floats("empty").empty());
}

TEST(Safetensors, ReadingChecksDtypeRankAndName) {
  TempDir dir;
  SafetensorsWriter w;
  w.add_floats("t3", {1, 2, 2}, {1, 2, 3, 4});
  w.add_ints<int32_t>("ints", DType::I32, {2}, {1, 2});
  const std::string path = dir.file("x.safetensors");
  w.write(path);
  SafetensorsFile f(path);
  auto msg = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(msg([&] { f.read_matrix("t3"); }), HasSubstr("3 dimensions"));
  EXPECT_THAT(msg([&] { f.read_matrix("ints"); }), HasSubstr("dtype I32"));
  EXPECT_THAT(msg([&] { f.read_i64("ints"); }), HasSubstr("expected I64"));
  const std::string missing = msg([&] { f.read_matrix("W"); });
  EXPECT_THAT(missing, HasSubstr("'W' not found"));
  EXPECT_THAT(missing, HasSubstr(path));
  EXPECT_THAT(missing, HasSubstr("ints, t3"));  // lists what the file has
}

TEST(Safetensors, FloatProducersRunLazilyAndMustMatchTheirShape) {
  TempDir dir;
  int calls = 0;
  SafetensorsWriter w;
  w.add_float_producer("lazy", {3}, [&] {
    ++calls;
    return std::vector<float>{1, 2, 3};
  });
  const auto big = random_floats(10001, 9);  // crosses the writer's conversion chunks
  w.add_float_producer(
      "big", {10001}, [&] { return big; }, DType::F16);
  EXPECT_EQ(calls, 0);  // nothing is produced before write()
  w.write(dir.file("ok.safetensors"));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(SafetensorsFile(dir.file("ok.safetensors")).read_floats("lazy"),
            (std::vector<float>{1, 2, 3}));
  const auto big_back = SafetensorsFile(dir.file("ok.safetensors")).read_floats("big");
  ASSERT_EQ(big_back.size(), big.size());
  for (size_t i = 0; i < big.size(); ++i)
    ASSERT_EQ(big_back[i], fp16_to_float(float_to_fp16(big[i]))) << i;

  // A producer that writes the wrong amount fails the write and leaves no file behind.
  SafetensorsWriter bad;
  bad.add("short", DType::F32, {4},
          [](ByteSink& s) { s.write_floats(std::vector<float>(3), DType::F32); });
  const std::string path = dir.file("bad.safetensors");
  try {
    bad.write(path);
    ADD_FAILURE() << "short producer accepted";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("'short'"));
    EXPECT_THAT(std::string(e.what()), HasSubstr("wrote 12 bytes, expected 16"));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(test::temporaries_in(dir.path()).empty());
}

TEST(Safetensors, WriterRejectsBadTensors) {
  SafetensorsWriter w;
  w.add_floats("a", {1}, {1});
  EXPECT_THROW(w.add_floats("a", {1}, {1}), Error);              // duplicate
  EXPECT_THROW(w.add_floats("__metadata__", {1}, {1}), Error);   // reserved
  EXPECT_THROW(w.add_floats("b", {2}, {1}), Error);              // wrong count
  EXPECT_THROW(w.add_floats("c", {-1}, {}), Error);              // negative dim
  EXPECT_THROW(w.add_floats("d", {1}, {1}, DType::I32), Error);  // floats as ints
  EXPECT_THROW(w.add("e", DType::U8, {int64_t{1} << 40, int64_t{1} << 40}, {}), Error);
  EXPECT_EQ(w.size(), 1u);
}

TEST(Safetensors, ShardedRoundTripOpensShardsLazily) {
  TempDir dir;
  SafetensorsWriter w;
  std::map<std::string, std::vector<float>> values;
  for (int i = 0; i < 6; ++i) {
    const std::string name = "model.layers." + std::to_string(i) + ".weight";
    values[name] = random_floats(16, 10 + i);  // 64 bytes each as F32
    w.add_floats(name, {4, 4}, values[name]);
  }
  w.set_metadata("format", "pt");
  const std::string out = dir.file("model");
  const auto files = w.write_sharded(out, 150);  // two 64-byte tensors per shard
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0], "model-00001-of-00003.safetensors");

  const json index = json::parse(test::read_file(out + "/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 6u * 64u);
  EXPECT_EQ(index["weight_map"].size(), 6u);
  EXPECT_EQ(index["weight_map"]["model.layers.5.weight"], "model-00003-of-00003.safetensors");

  SafetensorsDir d(out);
  EXPECT_TRUE(d.is_sharded());
  EXPECT_EQ(d.names().size(), 6u);
  EXPECT_EQ(d.metadata().at("total_size"), "384");
  // Shards open on first use: with shard 3 gone, tensors of shards 1-2 still read.
  std::filesystem::remove(out + "/" + files[2]);
  for (int i = 0; i < 4; ++i) {
    const std::string name = "model.layers." + std::to_string(i) + ".weight";
    EXPECT_EQ(d.read_floats(name), values[name]);
    EXPECT_EQ(d.file_for(name).metadata().at("format"), "pt");
  }
  try {
    d.read_matrix("model.layers.4.weight");
    ADD_FAILURE() << "missing shard not reported";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr(files[2]));
  }
  EXPECT_THROW(d.info("model.layers.9.weight"), Error);
}

TEST(Safetensors, OneShardIsAPlainModelFile) {
  TempDir dir;
  SafetensorsWriter w;
  w.add_floats("x", {2}, {1, 2});
  const auto files = w.write_sharded(dir.path(), 1 << 20);
  EXPECT_EQ(files, (std::vector<std::string>{"model.safetensors"}));
  EXPECT_FALSE(std::filesystem::exists(dir.file("model.safetensors.index.json")));
  SafetensorsDir d(dir.path());
  EXPECT_FALSE(d.is_sharded());
  EXPECT_EQ(d.read_floats("x"), (std::vector<float>{1, 2}));
  SafetensorsDir single(dir.file("model.safetensors"));  // a file path works too
  EXPECT_EQ(single.names(), (std::vector<std::string>{"x"}));
}

TEST(Safetensors, TensorLargerThanTheShardLimitGetsItsOwnShard) {
  TempDir dir;
  SafetensorsWriter w;
  w.add_floats("a", {1}, {1});
  w.add_floats("b", {100}, std::vector<float>(100, 2.0f));
  w.add_floats("c", {1}, {3});
  const auto files = w.write_sharded(dir.path(), 16);
  ASSERT_EQ(files.size(), 3u);
  SafetensorsDir d(dir.path());
  EXPECT_EQ(d.shard_of("b"), files[1]);
  EXPECT_EQ(d.read_floats("b"), std::vector<float>(100, 2.0f));
}

TEST(Safetensors, RejectsBadDirectories) {
  TempDir dir;
  EXPECT_THAT(
      [&] {
        try {
          SafetensorsDir d(dir.path());
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string();
      }(),
      HasSubstr("model.safetensors"));
  dir.write("model.safetensors.index.json", R"({"weight_map":{"w":"../etc/passwd"}})");
  try {
    SafetensorsDir d(dir.path());
    ADD_FAILURE() << "path escape accepted";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("not a file name"));
  }
  dir.write("model.safetensors.index.json", "{not json");
  EXPECT_THROW(SafetensorsDir{dir.path()}, Error);
  EXPECT_THROW(SafetensorsDir{dir.file("nope")}, Error);
}

// ---- hostile files: each must fail at open with a message that says what is wrong ----

TEST(SafetensorsHostile, EmptyAndTinyFiles) {
  TempDir dir;
  const std::string empty = open_error(dir, "", "empty.safetensors");
  EXPECT_THAT(empty, HasSubstr("empty.safetensors"));
  EXPECT_THAT(empty, HasSubstr("empty"));
  EXPECT_THAT(open_error(dir, "abc"), HasSubstr("too short"));
  try {
    SafetensorsFile f(dir.file("missing.safetensors"));
    ADD_FAILURE() << "missing file opened";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("missing.safetensors: cannot open"));
  }
}

TEST(SafetensorsHostile, HeaderLengthBeyondTheFile) {
  TempDir dir;
  const std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_THAT(open_error(dir, make_file(h, f32_bytes({1}), h.size() + 100)), HasSubstr("exceeds"));
  EXPECT_THAT(open_error(dir, make_file(h, f32_bytes({1}), ~uint64_t{0})), HasSubstr("exceeds"));
}

TEST(SafetensorsHostile, EveryTruncationIsRejected) {
  TempDir dir;
  SafetensorsWriter w;
  w.add_floats("a", {3}, {1, 2, 3});
  w.add_ints<int32_t>("b", DType::I32, {2}, {4, 5});
  const std::string path = dir.file("full.safetensors");
  w.write(path);
  const std::string full = test::read_file(path);
  for (size_t n = 0; n < full.size(); ++n) {
    const std::string cut = dir.write("cut.safetensors", full.substr(0, n));
    EXPECT_THROW(SafetensorsFile{cut}, Error) << "length " << n;
  }
  EXPECT_THAT(open_error(dir, full.substr(0, full.size() - 1)), HasSubstr("truncated"));
}

TEST(SafetensorsHostile, OffsetsPastTheEndOverlappingOrReversed) {
  TempDir dir;
  const std::string data = f32_bytes({1, 2});
  auto file = [&](const std::string& entries) { return make_file("{" + entries + "}", data); };
  std::string m = open_error(dir, file(R"("w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})"));
  EXPECT_THAT(m, HasSubstr("tensor 'w'"));
  EXPECT_THAT(m, HasSubstr("bad.safetensors"));
  EXPECT_THAT(m, HasSubstr("past the data section"));
  m = open_error(dir, file(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})"));
  EXPECT_THAT(m, HasSubstr("overlap"));
  m = open_error(dir, file(R"("a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]})"));
  EXPECT_THAT(m, HasSubstr("end before"));
  m = open_error(dir, file(R"("a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]})"));
  EXPECT_THAT(m, HasSubstr("needs 12"));
  m = open_error(dir, file(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[-4,4]})"));
  EXPECT_THAT(m, HasSubstr("non-negative"));
  m = open_error(dir, file(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0]})"));
  EXPECT_THAT(m, HasSubstr("[begin, end]"));
}

TEST(SafetensorsHostile, AbsurdShapesOverflowInsteadOfAllocating) {
  TempDir dir;
  // 2^21 cubed * 4 bytes wraps 64 bits; a wrapped product could otherwise match [0, 0].
  std::string m = open_error(
      dir,
      make_file(R"({"a":{"dtype":"F32","shape":[2097152,2097152,2097152],"data_offsets":[0,0]}})"));
  EXPECT_THAT(m, HasSubstr("overflows"));
  EXPECT_THAT(m, HasSubstr("tensor 'a'"));
  m = open_error(
      dir,
      make_file(R"({"a":{"dtype":"U8","shape":[4611686018427387904,4],"data_offsets":[0,0]}})"));
  EXPECT_THAT(m, HasSubstr("overflows"));
  m = open_error(dir, make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})"));
  EXPECT_THAT(m, HasSubstr("non-negative"));
  m = open_error(dir, make_file(R"({"a":{"dtype":"F32","shape":[1e30],"data_offsets":[0,0]}})"));
  EXPECT_THAT(m, HasSubstr("non-negative integer"));
  m = open_error(
      dir, make_file(R"({"a":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,0]}})"));
  EXPECT_THAT(m, HasSubstr("needs 4000000000000"));
}

TEST(SafetensorsHostile, BadJsonUnknownDtypeDuplicatesAndMetadata) {
  TempDir dir;
  EXPECT_THAT(open_error(dir, make_file(R"({"a":{"dtype":"F32",)")), HasSubstr("not valid JSON"));
  EXPECT_THAT(open_error(dir, make_file("[1,2]")), HasSubstr("must be a JSON object"));
  std::string m = open_error(
      dir, make_file(R"({"w":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", f32_bytes({1})));
  EXPECT_THAT(m, HasSubstr("tensor 'w'"));
  EXPECT_THAT(m, HasSubstr("unknown dtype 'F17'"));
  m = open_error(dir, make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                f32_bytes({1, 2})));
  EXPECT_THAT(m, HasSubstr("duplicate tensor name 'w'"));
  m = open_error(dir, make_file(R"({"__metadata__":{"n":3}})"));
  EXPECT_THAT(m, HasSubstr("__metadata__"));
  m = open_error(dir, make_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", f32_bytes({1})));
  EXPECT_THAT(m, HasSubstr("'dtype'"));
  // Keys repeated inside different entries (dtype, shape, w) are not duplicate tensor names.
  EXPECT_NO_THROW(SafetensorsFile{dir.write(
      "ok.safetensors",
      make_file(R"({"__metadata__":{"w":"1"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                f32_bytes({1, 2})))});
}

TEST(SafetensorsHostile, RandomCorruptionNeverCrashes) {
  TempDir dir;
  SafetensorsWriter w;
  w.add_floats("alpha", {2, 3}, random_floats(6, 5), DType::BF16);
  w.add_ints<int32_t>("beta", DType::I32, {3}, {1, 2, 3});
  w.set_metadata("k", "v");
  const std::string path = dir.file("ok.safetensors");
  w.write(path);
  const std::string good = test::read_file(path);
  Rng rng(7);
  int opened = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(rng.below(3));
    for (int k = 0; k < flips; ++k) {
      // Mostly the header, where the structure lives; digits make plausible numbers.
      const size_t at = rng.below(std::min<uint64_t>(bad.size(), 8 + 120));
      bad[at] =
          rng.below(2) ? static_cast<char>('0' + rng.below(10)) : static_cast<char>(rng.below(256));
    }
    const std::string p = dir.write("fuzz.safetensors", bad);
    try {
      SafetensorsFile f(p);
      ++opened;
      for (const auto& name : f.names()) {
        const TensorInfo& t = f.info(name);
        EXPECT_LE(t.end, bad.size());  // everything it hands out lies inside the file
        if (is_float_dtype(t.dtype)) f.read_floats(name);
        (void)f.bytes(name);
      }
    } catch (const Error&) {
    }
  }
  EXPECT_GT(opened, 0);  // some flips land in data bytes and leave a valid file
}

}  // namespace
}  // namespace cdq
