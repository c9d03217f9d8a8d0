#include <cdquant/gptq_format.hpp>
#include <cdquant/half.hpp>

namespace cdq {

std::vector<uint32_t> pack_bit_stream(const uint32_t* codes, int64_t count, int bits) {
  CDQ_ASSERT(bits >= 1 && bits <= 8);
  std::vector<uint32_t> words(static_cast<size_t>((count * bits + 31) / 32), 0u);
  const uint32_t mask = (1u << bits) - 1u;
  for (int64_t k = 0; k < count; ++k) {
    const uint64_t bit = static_cast<uint64_t>(k) * static_cast<uint64_t>(bits);
    const uint64_t v = static_cast<uint64_t>(codes[k] & mask) << (bit % 32);
    words[bit / 32] |= static_cast<uint32_t>(v);
    if ((bit % 32) + bits > 32) words[bit / 32 + 1] |= static_cast<uint32_t>(v >> 32);
  }
  return words;
}

std::vector<uint32_t> unpack_bit_stream(const uint32_t* words, int64_t count, int bits) {
  CDQ_ASSERT(bits >= 1 && bits <= 8);
  std::vector<uint32_t> codes(static_cast<size_t>(count));
  const uint64_t mask = (1u << bits) - 1u;
  for (int64_t k = 0; k < count; ++k) {
    const uint64_t bit = static_cast<uint64_t>(k) * static_cast<uint64_t>(bits);
    uint64_t v = words[bit / 32];
    if ((bit % 32) + bits > 32) v |= static_cast<uint64_t>(words[bit / 32 + 1]) << 32;
    codes[static_cast<size_t>(k)] = static_cast<uint32_t>((v >> (bit % 32)) & mask);
  }
  return codes;
}

bool gptq_packable(int64_t out_features, int64_t in_features, int bits) {
  return bits >= 2 && bits <= 8 && (in_features * bits) % 32 == 0 &&
         (out_features * bits) % 32 == 0;
}

namespace {

int32_t stored_zero(int32_t zero, GptqCheckpointFormat format) {
  return format == GptqCheckpointFormat::V1 ? zero - 1 : zero;
}

// v1 kernels add 1 to the stored value without masking, so a zero of 0 cannot be stored.
int32_t loaded_zero(uint32_t stored, GptqCheckpointFormat format) {
  return format == GptqCheckpointFormat::V1 ? static_cast<int32_t>(stored) + 1
                                            : static_cast<int32_t>(stored);
}

}  // namespace

GptqLinear pack_gptq_linear(const Grid& grid, const std::vector<uint8_t>& codes, int bits,
                            GptqCheckpointFormat format) {
  const int64_t n_out = grid.d_out, k_in = grid.d_in;
  CDQ_CHECK(grid.is_integer_grid(), "GPTQ checkpoints need an integer grid with zero points");
  CDQ_CHECK(grid.maxq == (1 << bits) - 1, "grid has maxq {} but {} bits were asked", grid.maxq,
            bits);
  CDQ_CHECK(gptq_packable(n_out, k_in, bits),
            "a [{}, {}] linear cannot be packed at {} bits: in and out features times bits "
            "must be multiples of 32",
            n_out, k_in, bits);
  CDQ_ASSERT(codes.size() == static_cast<size_t>(n_out * k_in));
  GptqLinear t;
  t.bits = bits;
  t.in_features = k_in;
  t.out_features = n_out;
  t.n_groups = grid.n_groups;
  t.g_idx = grid.g_idx;

  const int64_t k_words = k_in * bits / 32;
  t.qweight.assign(static_cast<size_t>(k_words * n_out), 0);
  std::vector<uint32_t> column(static_cast<size_t>(k_in));
  for (int64_t n = 0; n < n_out; ++n) {  // each output channel's codes are a stream along K
    for (int64_t k = 0; k < k_in; ++k) column[k] = codes[static_cast<size_t>(n * k_in + k)];
    const auto words = pack_bit_stream(column.data(), k_in, bits);
    for (int64_t w = 0; w < k_words; ++w)
      t.qweight[static_cast<size_t>(w * n_out + n)] = static_cast<int32_t>(words[w]);
  }

  const int64_t n_words = n_out * bits / 32;
  t.qzeros.assign(static_cast<size_t>(grid.n_groups * n_words), 0);
  t.scales.assign(static_cast<size_t>(grid.n_groups * n_out), 0);
  std::vector<uint32_t> zeros(static_cast<size_t>(n_out));
  const uint32_t mask = (1u << bits) - 1u;
  for (int g = 0; g < grid.n_groups; ++g) {
    for (int64_t n = 0; n < n_out; ++n) {
      const size_t at = grid.at(n, g);
      CDQ_CHECK(format == GptqCheckpointFormat::V2 || grid.zero[at] >= 1,
                "zero point {} (row {}, group {}) cannot be stored in the v1 'gptq' format "
                "(it stores zero - 1); use gptq_v2 for asymmetric grids (drop --gptq-v1)",
                grid.zero[at], n, g);
      zeros[n] = static_cast<uint32_t>(stored_zero(grid.zero[at], format)) & mask;
      t.scales[static_cast<size_t>(g * n_out + n)] = float_to_fp16(grid.scale[at]);
    }
    const auto words = pack_bit_stream(zeros.data(), n_out, bits);
    for (int64_t w = 0; w < n_words; ++w)
      t.qzeros[static_cast<size_t>(g * n_words + w)] = static_cast<int32_t>(words[w]);
  }
  return t;
}

UnpackedGptq unpack_gptq_linear(const GptqLinear& t, GptqCheckpointFormat format) {
  const int64_t n_out = t.out_features, k_in = t.in_features;
  const int bits = t.bits;
  CDQ_CHECK(gptq_packable(n_out, k_in, bits),
            "GPTQ tensors of shape [{}, {}] at {} bits are invalid", n_out, k_in, bits);
  const int64_t k_words = k_in * bits / 32, n_words = n_out * bits / 32;
  CDQ_CHECK(t.qweight.size() == static_cast<size_t>(k_words * n_out),
            "qweight has {} words, expected {}", t.qweight.size(), k_words * n_out);
  CDQ_CHECK(t.n_groups > 0 && t.qzeros.size() == static_cast<size_t>(t.n_groups * n_words),
            "qzeros has {} words, expected {}", t.qzeros.size(), t.n_groups * n_words);
  CDQ_CHECK(t.scales.size() == static_cast<size_t>(t.n_groups * n_out),
            "scales has {} entries, expected {}", t.scales.size(), t.n_groups * n_out);
  CDQ_CHECK(t.g_idx.size() == static_cast<size_t>(k_in), "g_idx has {} entries, expected {}",
            t.g_idx.size(), k_in);
  for (int32_t g : t.g_idx)
    CDQ_CHECK(g >= 0 && g < t.n_groups, "g_idx entry {} is outside [0, {})", g, t.n_groups);

  UnpackedGptq out;
  Grid& grid = out.grid;
  grid.d_out = n_out;
  grid.d_in = k_in;
  grid.n_groups = t.n_groups;
  grid.maxq = (1 << bits) - 1;
  grid.g_idx = t.g_idx;
  grid.scale.resize(static_cast<size_t>(n_out * t.n_groups));
  grid.bias.resize(grid.scale.size());
  grid.zero.resize(grid.scale.size());
  std::vector<uint32_t> words(static_cast<size_t>(n_words));
  for (int g = 0; g < t.n_groups; ++g) {
    for (int64_t w = 0; w < n_words; ++w)
      words[w] = static_cast<uint32_t>(t.qzeros[static_cast<size_t>(g * n_words + w)]);
    const auto zeros = unpack_bit_stream(words.data(), n_out, bits);
    for (int64_t n = 0; n < n_out; ++n) {
      const size_t at = grid.at(n, g);
      grid.scale[at] = fp16_to_float(t.scales[static_cast<size_t>(g * n_out + n)]);
      grid.zero[at] = loaded_zero(zeros[n], format);
      grid.bias[at] = -grid.scale[at] * static_cast<float>(grid.zero[at]);
    }
  }
  out.codes.resize(static_cast<size_t>(n_out * k_in));
  std::vector<uint32_t> column(static_cast<size_t>(k_words));
  for (int64_t n = 0; n < n_out; ++n) {
    for (int64_t w = 0; w < k_words; ++w)
      column[w] = static_cast<uint32_t>(t.qweight[static_cast<size_t>(w * n_out + n)]);
    const auto codes = unpack_bit_stream(column.data(), k_in, bits);
    for (int64_t k = 0; k < k_in; ++k)
      out.codes[static_cast<size_t>(n * k_in + k)] = static_cast<uint8_t>(codes[k]);
  }
  return out;
}

Matrix dequantize_gptq_linear(const GptqLinear& t, GptqCheckpointFormat format) {
  const UnpackedGptq u = unpack_gptq_linear(t, format);
  return dequantize(u.grid, u.codes);
}

}  // namespace cdq
