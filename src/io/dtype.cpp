// safetensors dtype names and element sizes.
#include <cdquant/safetensors.hpp>

namespace cdq {

namespace {

struct DTypeRow {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::I64, "I64", 8},   {DType::I32, "I32", 4},         {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},     {DType::U64, "U64", 8},         {DType::U32, "U32", 4},
    {DType::U16, "U16", 2},   {DType::U8, "U8", 1},           {DType::Bool, "BOOL", 1},
};

const DTypeRow& row_of(DType d) {
  for (const auto& r : kDTypes)
    if (r.dtype == d) return r;
  CDQ_ASSERT(false);
  return kDTypes[0];
}

}  // namespace

DType parse_dtype(std::string_view name) {
  for (const auto& r : kDTypes)
    if (name == r.name) return r.dtype;
  fail(
      "unknown dtype '{}' (supported: F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, "
      "I8, U64, U32, U16, U8, BOOL)",
      name);
}

const char* dtype_name(DType d) {
  return row_of(d).name;
}
size_t dtype_size(DType d) {
  return row_of(d).size;
}

bool is_float_dtype(DType d) {
  return d == DType::F32 || d == DType::F16 || d == DType::BF16 || d == DType::F64;
}

}  // namespace cdq
