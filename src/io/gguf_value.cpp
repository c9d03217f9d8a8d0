#include <cdquant/error.hpp>
#include <cdquant/gguf.hpp>

#include "io/gguf_internal.hpp"

namespace cdq {

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8:
      return "u8";
    case GgufType::I8:
      return "i8";
    case GgufType::U16:
      return "u16";
    case GgufType::I16:
      return "i16";
    case GgufType::U32:
      return "u32";
    case GgufType::I32:
      return "i32";
    case GgufType::F32:
      return "f32";
    case GgufType::Bool:
      return "bool";
    case GgufType::String:
      return "string";
    case GgufType::Array:
      return "array";
    case GgufType::U64:
      return "u64";
    case GgufType::I64:
      return "i64";
    case GgufType::F64:
      return "f64";
  }
  return "?";
}

GgufValue GgufValue::string(std::string s) {
  GgufValue g;
  g.type_ = GgufType::String;
  g.strings_.push_back(std::move(s));
  return g;
}

GgufValue GgufValue::array(const std::vector<bool>& v) {
  GgufValue g;
  g.type_ = GgufType::Array;
  g.elem_ = GgufType::Bool;
  for (bool b : v) g.raw_.push_back(b ? 1 : 0);
  return g;
}

GgufValue GgufValue::string_array(std::vector<std::string> v) {
  GgufValue g;
  g.type_ = GgufType::Array;
  g.elem_ = GgufType::String;
  g.strings_ = std::move(v);
  return g;
}

GgufValue GgufValue::from_raw(GgufType type, GgufType elem, std::vector<uint8_t> raw,
                              std::vector<std::string> strings) {
  GgufValue g;
  g.type_ = type;
  g.elem_ = elem;
  g.raw_ = std::move(raw);
  g.strings_ = std::move(strings);
  return g;
}

namespace gguf {
bool known_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::F64);
}

size_t fixed_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::Bool:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    default:
      return 0;
  }
}
}  // namespace gguf

uint64_t GgufValue::size() const {
  if (!is_array()) return 1;
  if (elem_ == GgufType::String) return strings_.size();
  return raw_.size() / gguf::fixed_size(elem_);
}

void GgufValue::check_type(GgufType want, bool array) const {
  const bool ok = array ? (is_array() && elem_ == want) : (type_ == want);
  if (ok) return;
  const std::string have =
      is_array() ? fmt::format("array of {}", gguf_type_name(elem_)) : gguf_type_name(type_);
  fail("GGUF value is {}, expected {}{}", have, array ? "array of " : "", gguf_type_name(want));
}

const std::string& GgufValue::str() const {
  check_type(GgufType::String, false);
  return strings_.front();
}

const std::vector<std::string>& GgufValue::str_array() const {
  check_type(GgufType::String, true);
  return strings_;
}

uint64_t GgufValue::as_uint() const {
  int64_t s = 0;
  switch (type_) {
    case GgufType::U8:
      return get<uint8_t>();
    case GgufType::U16:
      return get<uint16_t>();
    case GgufType::U32:
      return get<uint32_t>();
    case GgufType::U64:
      return get<uint64_t>();
    case GgufType::I8:
      s = get<int8_t>();
      break;
    case GgufType::I16:
      s = get<int16_t>();
      break;
    case GgufType::I32:
      s = get<int32_t>();
      break;
    case GgufType::I64:
      s = get<int64_t>();
      break;
    default:
      fail("GGUF value is {}, expected an integer", gguf_type_name(type_));
  }
  CDQ_CHECK(s >= 0, "GGUF value {} is negative, expected a count", s);
  return static_cast<uint64_t>(s);
}

double GgufValue::as_double() const {
  switch (type_) {
    case GgufType::F32:
      return get<float>();
    case GgufType::F64:
      return get<double>();
    case GgufType::I8:
      return get<int8_t>();
    case GgufType::I16:
      return get<int16_t>();
    case GgufType::I32:
      return get<int32_t>();
    case GgufType::I64:
      return static_cast<double>(get<int64_t>());
    default:
      return static_cast<double>(as_uint());
  }
}

uint64_t GgufTensorInfo::n_elements() const {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;  // the reader rejects products past INT64_MAX
  return n;
}

uint64_t GgufTensorInfo::n_bytes() const {
  uint64_t bytes = 0;
  CDQ_CHECK(
      !__builtin_mul_overflow(ggml_row_bytes(type, cols()), static_cast<uint64_t>(rows()), &bytes),
      "GGUF tensor '{}' takes more than 2^64 bytes", name);
  return bytes;
}

int64_t GgufTensorInfo::rows() const {
  uint64_t n = 1;
  for (size_t i = 1; i < dims.size(); ++i) n *= dims[i];
  return static_cast<int64_t>(n);
}

}  // namespace cdq
