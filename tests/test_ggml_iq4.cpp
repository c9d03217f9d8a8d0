// IQ4_NL and IQ4_XS (llama.cpp's non-uniform 4-bit types): hand-worked bytes, golden hashes of
// what libggml wrote, and, when the prebuilt llama.cpp libraries are installed under .engine/
// (scripts/fetch_engine.sh or .ci/run), the shipped libggml-base itself: its quantize_iq4_nl /
// quantize_iq4_xs (with and without an imatrix), quantize_row_iq4_nl_ref and the type traits'
// to_float against cdquant's encoder and decoder, byte for byte and bit for bit.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <bit>
#include <cdquant/half.hpp>
#include <cdquant/rng.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "quant/ggml_quants.hpp"
#include "support/paths.hpp"

namespace cdq {
namespace {

constexpr int8_t kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                1,    13,   25,  38,  53,  69,  89,  113};

uint64_t fnv1a(const void* p, size_t n, uint64_t h = 0xcbf29ce484222325ULL) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ULL;
  return h;
}

uint16_t u16_at(const std::vector<uint8_t>& b, size_t off) {
  uint16_t v;
  std::memcpy(&v, b.data() + off, 2);
  return v;
}

// Rows with what the searches branch on: magnitudes over eight decades, outliers, one-signed
// and all-zero 32-weight blocks, and weights that are exact multiples of the levels. Integer
// draws and exact products only, so the matrix is the same everywhere.
Matrix iq4_matrix(int64_t rows, int64_t cols, uint64_t seed, bool zero_blocks) {
  static const float kScales[] = {1e-7f, 3e-4f, 0.01f, 0.25f, 1.0f, 40.0f};
  Rng rng(seed);
  Matrix w(rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < cols / 32; ++g) {
      const auto kind = rng.below(zero_blocks ? 7 : 6);
      const float s = kScales[rng.below(6)];
      for (int64_t i = 0; i < 32; ++i) {
        const auto k = static_cast<float>(static_cast<int64_t>(rng.below(2001)) - 1000);
        float v = k * s * 0.001f;
        if (kind == 3) v = std::fabs(v) + s * 0.5f;
        if (kind == 4) v = -std::fabs(v) - s * 0.25f;
        if (kind == 5) v = static_cast<float>(kLevels[rng.below(16)]) * s;
        if (kind == 6) v = 0.0f;
        if (rng.below(50) == 0) v *= 20.0f;
        w(r, g * 32 + i) = v;
      }
    }
  }
  return w;
}

std::vector<float> iq4_importance(int64_t cols, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> imp(static_cast<size_t>(cols));
  for (float& v : imp) v = static_cast<float>(1 + rng.below(100)) * 0.37f;
  return imp;
}

// ---- without the library ---------------------------------------------------------------

TEST(GgmlIq4, LevelsMultipleOfHalfAreExact) {
  // x = levels[j % 16] / 2: the signed max is -63.5, d = max / -127 = 0.5 (fp16 0x3800) and the
  // codes are j % 16, so the block decodes to x exactly; both rules (with and without the scale
  // search) find that d.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = 0.5f * static_cast<float>(kLevels[j % 16]);
  Matrix w(1, 32);
  w.data = x;
  for (const auto& bytes :
       {quantize_reference(GgmlType::IQ4_NL, w), quantize_row_reference(GgmlType::IQ4_NL, w)}) {
    ASSERT_EQ(bytes.size(), 18u);
    EXPECT_EQ(u16_at(bytes, 0), 0x3800);
    for (int j = 0; j < 16; ++j) EXPECT_EQ(bytes[2 + j], j | (j << 4)) << j;
    EXPECT_EQ(dequantize_tensor(GgmlType::IQ4_NL, bytes, 1, 32).data, x);
  }
}

TEST(GgmlIq4, XsSubScalesAndNibbles) {
  // Sub-block j of 32 is levels * (j + 1): ggml's d = -max_scale / 32 with max_scale the
  // largest sub-block scale (8 for j = 7), so d = -0.25 (0xB400) and sub-scale j gets
  // ls - 32 = -4 (j + 1): the 6-bit fields hold 28 - 4j, low nibbles in scales_l, top bits
  // in scales_h.
  Matrix w(1, 256);
  for (int e = 0; e < 256; ++e)
    w(0, e) = static_cast<float>(kLevels[e % 16]) * static_cast<float>(e / 32 + 1);
  const auto b = quantize_reference(GgmlType::IQ4_XS, w);
  ASSERT_EQ(b.size(), 136u);
  EXPECT_EQ(u16_at(b, 0), 0xB400);
  const uint16_t scales_h = u16_at(b, 2);
  for (int j = 0; j < 8; ++j) {
    const int want = 28 - 4 * j;
    const int ls = ((b[4 + j / 2] >> (4 * (j % 2))) & 0xF) | (((scales_h >> (2 * j)) & 3) << 4);
    EXPECT_EQ(ls, want) << j;
  }
  EXPECT_EQ(dequantize_tensor(GgmlType::IQ4_XS, b, 1, 256).data, w.data);
}

// ---- the shipped libggml ---------------------------------------------------------------

// ggml.h's struct ggml_type_traits (v0.5.0), as far as to_float.
struct TypeTraitsAbi {
  const char* type_name;
  int64_t blck_size;
  int64_t blck_size_interleave;
  size_t type_size;
  bool is_quantized;
  void (*to_float)(const void*, float*, int64_t);
  void (*from_float_ref)(const float*, void*, int64_t);
};

class Libggml {
 public:
  Libggml() {
    const std::string path = test::engine_lib_dir() + "/libggml-base.so";
    if (!std::filesystem::exists(path)) {
      why_ = "no " + path + " (bash scripts/fetch_engine.sh installs the prebuilt llama.cpp)";
      return;
    }
    handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
      why_ = std::string("dlopen failed: ") + dlerror();
      return;
    }
    traits_ = reinterpret_cast<const TypeTraitsAbi* (*)(int)>(sym("ggml_get_type_traits"));
    quantize_nl_ = reinterpret_cast<Quantize>(sym("quantize_iq4_nl"));
    quantize_xs_ = reinterpret_cast<Quantize>(sym("quantize_iq4_xs"));
    row_ref_nl_ = reinterpret_cast<RowRef>(sym("quantize_row_iq4_nl_ref"));
    if (!traits_ || !quantize_nl_ || !quantize_xs_ || !row_ref_nl_) why_ = "missing symbols";
  }
  ~Libggml() {
    if (handle_) dlclose(handle_);
  }
  const std::string& why_not() const { return why_; }

  std::vector<uint8_t> quantize(GgmlType t, const Matrix& w, const float* imp) const {
    std::vector<uint8_t> out(ggml_row_bytes(t, w.cols) * static_cast<uint64_t>(w.rows));
    const Quantize q = t == GgmlType::IQ4_NL ? quantize_nl_ : quantize_xs_;
    q(w.data.data(), out.data(), w.rows, w.cols, imp);
    return out;
  }
  std::vector<uint8_t> row_ref(GgmlType t, const Matrix& w) const {
    std::vector<uint8_t> out(ggml_row_bytes(t, w.cols) * static_cast<uint64_t>(w.rows));
    const uint64_t rb = ggml_row_bytes(t, w.cols);
    for (int64_t r = 0; r < w.rows; ++r) {
      if (t == GgmlType::IQ4_NL)
        row_ref_nl_(w.row(r), out.data() + r * rb, w.cols);
      else
        traits_(static_cast<int>(t))->from_float_ref(w.row(r), out.data() + r * rb, w.cols);
    }
    return out;
  }
  Matrix to_float(GgmlType t, const std::vector<uint8_t>& bytes, int64_t rows, int64_t cols) const {
    Matrix m(rows, cols);
    traits_(static_cast<int>(t))->to_float(bytes.data(), m.data.data(), rows * cols);
    return m;
  }
  const TypeTraitsAbi* traits(GgmlType t) const { return traits_(static_cast<int>(t)); }

 private:
  using Quantize = size_t (*)(const float*, void*, int64_t, int64_t, const float*);
  using RowRef = void (*)(const float*, void*, int64_t);
  void* sym(const char* name) { return dlsym(handle_, name); }
  void* handle_ = nullptr;
  std::string why_;
  const TypeTraitsAbi* (*traits_)(int) = nullptr;
  Quantize quantize_nl_ = nullptr, quantize_xs_ = nullptr;
  RowRef row_ref_nl_ = nullptr;
};

const Libggml& libggml() {
  static const Libggml lib;
  return lib;
}

#define REQUIRE_LIBGGML()                                                \
  if (!libggml().why_not().empty()) GTEST_SKIP() << libggml().why_not(); \
  static_assert(true)

// FNV-1a of the bytes libggml-base (node-llama-cpp 3.22.1's, llama.cpp of its bundle) wrote
// for iq4_matrix(4, 512, 7, true): quantize_iq4_nl / quantize_iq4_xs without and with
// iq4_importance(512, 9); and quantize_row_iq4_nl_ref of iq4_matrix(4, 512, 8, false).
struct Golden {
  GgmlType type;
  uint64_t plain;
  uint64_t imatrix;
};
const Golden kGolden[] = {
    {GgmlType::IQ4_NL, 0x791731e54be5a40fULL, 0xa5780f5219021c01ULL},
    {GgmlType::IQ4_XS, 0x2d4749b92dcae4beULL, 0xdcdfb3e83af33c23ULL},
};
constexpr uint64_t kGoldenNlRowRef = 0x4bdd72333e779cd5ULL;

TEST(GgmlIq4, BytesMatchGgml) {
  const Matrix w = iq4_matrix(4, 512, 7, true);
  const std::vector<float> imp = iq4_importance(512, 9);
  for (const Golden& g : kGolden) {
    const auto plain = quantize_reference(g.type, w);
    const auto im = quantize_reference(g.type, w, imp.data());
    EXPECT_EQ(fnv1a(plain.data(), plain.size()), g.plain) << ggml_type_name(g.type);
    EXPECT_EQ(fnv1a(im.data(), im.size()), g.imatrix) << ggml_type_name(g.type);
  }
  const Matrix w_ref = iq4_matrix(4, 512, 8, false);
  const auto ref = quantize_row_reference(GgmlType::IQ4_NL, w_ref);
  EXPECT_EQ(fnv1a(ref.data(), ref.size()), kGoldenNlRowRef);
  if (!libggml().why_not().empty()) return;  // the library wrote these hashes; check it still does
  for (const Golden& g : kGolden) {
    const auto plain = libggml().quantize(g.type, w, nullptr);
    const auto im = libggml().quantize(g.type, w, imp.data());
    EXPECT_EQ(fnv1a(plain.data(), plain.size()), g.plain) << "libggml " << ggml_type_name(g.type);
    EXPECT_EQ(fnv1a(im.data(), im.size()), g.imatrix) << "libggml " << ggml_type_name(g.type);
  }
  const auto lib_ref = libggml().row_ref(GgmlType::IQ4_NL, w_ref);
  EXPECT_EQ(fnv1a(lib_ref.data(), lib_ref.size()), kGoldenNlRowRef) << "libggml";
}

size_t first_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i] != b[i]) return i;
  return a.size() == b.size() ? SIZE_MAX : std::min(a.size(), b.size());
}

TEST(GgmlIq4Engine, TraitsAreTheTypesSizes) {
  REQUIRE_LIBGGML();
  for (GgmlType t : {GgmlType::IQ4_NL, GgmlType::IQ4_XS}) {
    const TypeTraitsAbi* tr = libggml().traits(t);
    EXPECT_STREQ(tr->type_name, t == GgmlType::IQ4_NL ? "iq4_nl" : "iq4_xs");
    EXPECT_EQ(tr->blck_size, ggml_traits(t).block_size);
    EXPECT_EQ(tr->type_size, static_cast<size_t>(ggml_traits(t).type_size));
    EXPECT_TRUE(tr->is_quantized);
  }
}

TEST(GgmlIq4Engine, QuantizersMatchTheLibraryByteForByte) {
  REQUIRE_LIBGGML();
  for (uint64_t seed : {7u, 21u, 33u}) {
    const Matrix w = iq4_matrix(6, 1024, seed, true);
    const std::vector<float> imp = iq4_importance(1024, seed + 2);
    for (GgmlType t : {GgmlType::IQ4_NL, GgmlType::IQ4_XS}) {
      const auto plain = quantize_reference(t, w);
      const auto im = quantize_reference(t, w, imp.data());
      EXPECT_EQ(first_difference(plain, libggml().quantize(t, w, nullptr)), SIZE_MAX)
          << ggml_type_name(t) << " seed " << seed;
      EXPECT_EQ(first_difference(im, libggml().quantize(t, w, imp.data())), SIZE_MAX)
          << ggml_type_name(t) << " imatrix, seed " << seed;
      // quantize_row_*_ref: IQ4_XS's is quantize_iq4_xs; IQ4_NL's skips the scale search
      const auto ref = quantize_row_reference(t, iq4_matrix(6, 1024, seed + 1, false));
      EXPECT_EQ(first_difference(ref, libggml().row_ref(t, iq4_matrix(6, 1024, seed + 1, false))),
                SIZE_MAX)
          << ggml_type_name(t) << " row ref, seed " << seed;
    }
  }
}

TEST(GgmlIq4Engine, RowRefOfZeroBlocksDecodesToZero) {
  // ggml's quantize_row_iq4_nl_ref leaves the codes of an all-zero block as its scratch array
  // held them: only the decoded values can be compared there (d = 0: every weight 0).
  REQUIRE_LIBGGML();
  const Matrix w = iq4_matrix(4, 512, 5, true);
  const auto ours = quantize_row_reference(GgmlType::IQ4_NL, w);
  const auto theirs = libggml().row_ref(GgmlType::IQ4_NL, w);
  EXPECT_EQ(dequantize_tensor(GgmlType::IQ4_NL, ours, 4, 512).data,
            libggml().to_float(GgmlType::IQ4_NL, theirs, 4, 512).data);
}

TEST(GgmlIq4Engine, DecoderMatchesToFloatBitForBit) {
  REQUIRE_LIBGGML();
  for (GgmlType t : {GgmlType::IQ4_NL, GgmlType::IQ4_XS}) {
    Rng rng(11);
    const int64_t rows = 8, cols = 1024;
    std::vector<uint8_t> bytes(ggml_row_bytes(t, cols) * rows);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng.below(256));
    const Matrix ours = dequantize_tensor(t, bytes, rows, cols);
    const Matrix theirs = libggml().to_float(t, bytes, rows, cols);
    int64_t mismatches = 0;
    for (size_t i = 0; i < ours.data.size(); ++i) {
      const float a = ours.data[i], b = theirs.data[i];
      const bool same =
          std::isnan(a) ? std::isnan(b) : std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
      mismatches += !same;
    }
    EXPECT_EQ(mismatches, 0) << ggml_type_name(t);
    // and the quantizer's own bytes decode the same through both
    const Matrix w = iq4_matrix(rows, cols, 3, true);
    const auto q = quantize_reference(t, w);
    EXPECT_EQ(dequantize_tensor(t, q, rows, cols).data, libggml().to_float(t, q, rows, cols).data)
        << ggml_type_name(t);
  }
}

}  // namespace
}  // namespace cdq
