#include <algorithm>
#include <array>
#include <cctype>
#include <cdquant/error.hpp>
#include <cdquant/ggml_type.hpp>
#include <string>

namespace cdq {
namespace {

// {type, name, block_size, type_size, group_size, maxq, codebook}; sizes as ggml-common.h.
constexpr std::array<GgmlTypeTraits, 15> kTypes = {{
    {GgmlType::F32, "F32", 1, 4, 0, 0},
    {GgmlType::F16, "F16", 1, 2, 0, 0},
    {GgmlType::Q4_0, "Q4_0", 32, 18, 32, 15},
    {GgmlType::Q4_1, "Q4_1", 32, 20, 32, 15},
    {GgmlType::Q5_0, "Q5_0", 32, 22, 32, 31},
    {GgmlType::Q5_1, "Q5_1", 32, 24, 32, 31},
    {GgmlType::Q8_0, "Q8_0", 32, 34, 32, 255},
    {GgmlType::Q2_K, "Q2_K", 256, 84, 16, 3},
    {GgmlType::Q3_K, "Q3_K", 256, 110, 16, 7},
    {GgmlType::Q4_K, "Q4_K", 256, 144, 32, 15},
    {GgmlType::Q5_K, "Q5_K", 256, 176, 32, 31},
    {GgmlType::Q6_K, "Q6_K", 256, 210, 16, 63},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 18, 32, 15, true},
    {GgmlType::IQ4_XS, "IQ4_XS", 256, 136, 32, 15, true},
    {GgmlType::BF16, "BF16", 1, 2, 0, 0},
}};

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return out;
}

}  // namespace

std::span<const GgmlTypeTraits> ggml_all_types() {
  return kTypes;
}

const GgmlTypeTraits* find_ggml_traits(uint32_t id) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == id) return &t;
  return nullptr;
}

const GgmlTypeTraits& ggml_traits(GgmlType t) {
  const GgmlTypeTraits* tr = find_ggml_traits(static_cast<uint32_t>(t));
  CDQ_CHECK(tr != nullptr, "unsupported ggml type id {}", static_cast<uint32_t>(t));
  return *tr;
}

const char* ggml_type_name(GgmlType t) {
  return ggml_traits(t).name;
}

GgmlType parse_ggml_type(std::string_view name) {
  const std::string u = upper(name);
  for (const auto& t : kTypes)
    if (u == t.name) return t.type;
  std::string names;
  for (const auto& t : kTypes) names += std::string(names.empty() ? "" : ", ") + t.name;
  fail("unknown ggml type '{}' (supported: {})", name, names);
}

uint64_t ggml_row_bytes(GgmlType t, int64_t n) {
  const GgmlTypeTraits& tr = ggml_traits(t);
  CDQ_CHECK(n >= 0 && n % tr.block_size == 0,
            "{} stores whole blocks of {} weights; a row of {} does not fit", tr.name,
            tr.block_size, n);
  uint64_t bytes = 0;
  CDQ_CHECK(!__builtin_mul_overflow(static_cast<uint64_t>(n / tr.block_size),
                                    static_cast<uint64_t>(tr.type_size), &bytes),
            "a {} row of {} weights takes more than 2^64 bytes", tr.name, n);
  return bytes;
}

ActivationType ggml_vec_dot_type(GgmlType weight) {
  switch (weight) {
    case GgmlType::F32:
      return ActivationType::F32;
    case GgmlType::F16:
      return ActivationType::F16;
    case GgmlType::BF16:
      return ActivationType::BF16;
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0:
    case GgmlType::IQ4_NL:
      return ActivationType::Q8_0;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1:
      return ActivationType::Q8_1;
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::IQ4_XS:
      return ActivationType::Q8_K;
  }
  fail("unsupported ggml type id {}", static_cast<uint32_t>(weight));
}

const char* activation_type_name(ActivationType a) {
  switch (a) {
    case ActivationType::F32:
      return "F32";
    case ActivationType::F16:
      return "F16";
    case ActivationType::BF16:
      return "BF16";
    case ActivationType::Q8_0:
      return "Q8_0";
    case ActivationType::Q8_1:
      return "Q8_1";
    case ActivationType::Q8_K:
      return "Q8_K";
  }
  return "?";
}

}  // namespace cdq
